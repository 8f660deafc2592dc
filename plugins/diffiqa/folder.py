"""Training data for ``diffiqa-ddpm`` beyond the in-memory pool: a folder of face crops, and the
streaming loader that degrades afresh every epoch (``pool_copies=0``), as the official dataset
class does (``diff_dataset.py`` L34-50: a new degradation each time an image is drawn).

Reproducibility does not depend on the number of worker processes: the image order of epoch ``e``
is a permutation drawn from ``(seed, e)`` alone, and the degradation of image ``i`` in epoch ``e``
from ``numpy.random.default_rng([seed, e, i])``. A run resumed at step ``s`` restarts the loader
at sample ``s * batch_size`` of that sequence, so it continues bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from fiqabench.files import folder_digest
from fiqabench.errors import ConfigError, InputFormatError, MissingArtifactError

from .degrade import degrade_lq, official_training_pair

__all__ = [
    "ArraySource", "EpochBatches", "FolderSource", "ReadFailure", "StreamingPairs", "epoch_permutation", "list_images",
    "next_pair", "pair_loader",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def list_images(root: Path) -> list[Path]:
    """Every image file below ``root`` (recursively), in a fixed sorted order."""
    root = Path(root)
    if not root.exists():
        raise MissingArtifactError(f"diffiqa-ddpm: image folder {root} does not exist")
    if not root.is_dir():
        raise ConfigError(f"diffiqa-ddpm: option images={root} is not a folder")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ConfigError(f"diffiqa-ddpm: no images ({', '.join(IMAGE_SUFFIXES)}) below {root}")
    return files


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[0] == size and image.shape[1] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


class FolderSource:
    """Image ``i`` of a folder as uint8 RGB ``(size, size, 3)`` (bilinear, like the official
    ``T.Resize``), or as stored when ``size`` is None; read on demand, so a CelebA-sized folder is
    never held in memory."""

    def __init__(self, root: Path, size: int | None) -> None:
        self.root = Path(root)
        self.files = list_images(self.root)
        self.size = size

    def at_original_size(self) -> FolderSource:
        """The same files, read as stored (the official preprocessing degrades the original)."""
        source = FolderSource.__new__(FolderSource)
        source.root, source.files, source.size = self.root, list(self.files), None
        return source

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> np.ndarray:
        path = self.files[index]
        try:
            with Image.open(path) as handle:
                image = np.asarray(handle.convert("RGB"))
        except (OSError, UnidentifiedImageError) as exc:
            raise InputFormatError(path, None, None, f"cannot read the image ({exc})") from exc
        return image if self.size is None else _resize(image, self.size)

    def digest(self) -> str:
        """The folder and its images' relative paths, sizes and modification times."""
        return f"folder:{self.root.resolve()}:{folder_digest(self.root, self.files)[:16]}"


class ArraySource:
    """In-memory uint8 images ``(N, H, W, 3)`` already at the DDPM size."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.images[index]


@dataclass(frozen=True)
class ReadFailure:
    """An unreadable image, carried out of a loader worker as data: re-raised in the main process
    as :class:`InputFormatError` (worker exceptions reach the main process reformatted)."""

    path: str
    message: str


class StreamingPairs(torch.utils.data.Dataset):
    """Item ``(epoch, i)``: the clean image ``i`` and a fresh degraded copy for that epoch.

    With ``official_size`` set, the source holds original images and each item is
    :func:`~.degrade.official_training_pair` at that size (flip first, 512 px degradation, both
    resized); otherwise the source is at the training size already and only the degraded copy is
    made here (embedded preprocessing: the training loop flips)."""

    def __init__(
        self, source: Sequence[np.ndarray], *, seed: int, work_size: int, official_size: int | None = None
    ) -> None:
        self.source = source
        self.seed = seed
        self.work_size = work_size
        self.official_size = official_size

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: tuple[int, int]) -> tuple[np.ndarray, np.ndarray] | ReadFailure:
        epoch, index = key
        try:
            clean = np.ascontiguousarray(self.source[index])
        except InputFormatError as exc:
            return ReadFailure(exc.path, exc.message)
        rng = np.random.default_rng([self.seed, epoch, index])
        if self.official_size is not None:
            return official_training_pair(clean, rng, size=self.official_size)
        return clean, degrade_lq(clean, rng, out_size=clean.shape[0], work_size=self.work_size)


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The image order of one epoch, from ``(seed, epoch)`` only."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(2, np.uint64)
    gen = torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))
    return torch.randperm(n, generator=gen)


class EpochBatches(torch.utils.data.Sampler):
    """Batches of ``(epoch, index)`` keys from sample ``start`` of the endless epoch sequence
    (a batch may span two epochs, like the in-memory loop)."""

    def __init__(self, n: int, *, batch_size: int, seed: int, start: int, batches: int) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start, self.batches = start, batches

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        position = self.start
        perm_epoch, perm = -1, torch.empty(0, dtype=torch.long)
        for _ in range(self.batches):
            keys = []
            for _ in range(self.batch_size):
                epoch, offset = divmod(position, self.n)
                if epoch != perm_epoch:
                    perm_epoch, perm = epoch, epoch_permutation(self.n, self.seed, epoch)
                keys.append((epoch, int(perm[offset])))
                position += 1
            yield keys


def _collate(
    items: list[tuple[np.ndarray, np.ndarray] | ReadFailure],
) -> tuple[torch.Tensor, torch.Tensor] | ReadFailure:
    for item in items:
        if isinstance(item, ReadFailure):
            return item
    clean = torch.from_numpy(np.stack([c for c, _ in items]))
    degraded = torch.from_numpy(np.stack([d for _, d in items]))
    return clean, degraded


def next_pair(batches: Iterator[tuple[torch.Tensor, torch.Tensor] | ReadFailure]) -> tuple[torch.Tensor, torch.Tensor]:
    """The next ``(clean, degraded)`` batch; an unreadable image raises here, naming the file."""
    item = next(batches)
    if isinstance(item, ReadFailure):
        raise InputFormatError(item.path, None, None, item.message)
    return item


def pair_loader(
    source: Sequence[np.ndarray], *, batch_size: int, seed: int, work_size: int, start_step: int, steps: int,
    workers: int, official_size: int | None = None,
) -> torch.utils.data.DataLoader:
    """uint8 ``(clean, degraded)`` batches for optimizer steps ``start_step .. steps - 1``."""
    return torch.utils.data.DataLoader(
        StreamingPairs(source, seed=seed, work_size=work_size, official_size=official_size),
        batch_sampler=EpochBatches(len(source), batch_size=batch_size, seed=seed,
                                   start=start_step * batch_size, batches=max(0, steps - start_step)),
        num_workers=workers,
        collate_fn=_collate,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
    )
