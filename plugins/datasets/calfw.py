"""CALFW and CPLFW: two consecutive lines of ``pairs_CALFW.txt`` / ``pairs_CPLFW.txt`` form a pair.

Format (``research/ecosystem.md`` 4.3): each line is ``<image file> <token>``; a pair is lines
``2k+1`` and ``2k+2``; token ``0`` marks a non-mated pair, any other value a mated pair, whose
value is its fold (1..10). Non-mated lines do not name their fold: the ``k``-th non-mated pair
is put in fold ``k * 10 // n_non_mated`` (contiguous blocks, as the ``.bin`` files order them);
this is an assumption, documented in the README. A copy whose mated pairs all carry one token
(some CPLFW copies use 1/0) gets contiguous blocks for its mated pairs as well. CALFW names images ``<Name>_<%04d>.jpg``,
CPLFW ``<Name>_<k>.jpg``; the subject is the name before the last underscore.

Layout under ``root``: the pair file and ``aligned images/`` (with the space; ``images``
chooses another folder). The aligned images are used as they are (resized to 112 if they are
not 112 x 112); pass ``landmarks=FILE`` to align from five points instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


from fiqabench.errors import MissingArtifactError

from .base import ImageDataset, ImageProtocol, PairList, SampleIndex, alignment_from_options, require_root
from .protocol import ProtocolFile, check_dir

__all__ = ["build_calfw", "build_cplfw", "parse_two_line_pairs"]

VERSION = "1"
N_FOLDS = 10
IMAGE_FOLDERS = ("aligned images", "aligned_images", "images")


def parse_two_line_pairs(protocol: ProtocolFile) -> tuple[SampleIndex, PairList]:
    samples, pairs = SampleIndex(), PairList()
    pending: tuple[int, str, str] | None = None
    collected: list[tuple[int, int, int, bool, int]] = []
    for line, tokens in protocol.rows():
        protocol.columns(line, tokens, (2,), "image file, fold token (0 = non-mated)")
        name, token = tokens
        protocol.integer(line, token, "fold token", 0)
        if "_" not in name:
            raise protocol.error(line, f"image name {name!r} is not <Name>_<number>.<ext>", "image")
        if pending is None:
            pending = (line, name, token)
            continue
        first_line, first_name, first_token = pending
        pending = None
        if token != first_token:
            raise protocol.error(line, f"token {token} differs from {first_token} on line {first_line}: "
                                 "the two lines of a pair must carry the same token")
        a = samples.add(first_name, first_name.rsplit("_", 1)[0], protocol, first_line)
        b = samples.add(name, name.rsplit("_", 1)[0], protocol, line)
        fold = int(token)
        mated = fold != 0
        if mated and fold > N_FOLDS:
            raise protocol.error(line, f"fold token {fold} is not in 1..{N_FOLDS}", "fold token")
        same = samples.subjects[a] == samples.subjects[b]
        if same != mated:
            kind = "mated" if mated else "non-mated"
            raise protocol.error(line, f"a {kind} pair of {samples.subjects[a]} and {samples.subjects[b]}")
        collected.append((a, b, fold, mated, line))
    if pending is not None:
        raise protocol.error(pending[0], "the last pair has only one line (truncated file?)")
    n_non = sum(1 for c in collected if not c[3])
    mated_tokens = {c[2] for c in collected if c[3]}
    n_mated = len(collected) - n_non
    # Copies that mark every mated pair with the same token (1) carry no folds: use blocks too.
    blocks = len(mated_tokens) == 1 and n_mated >= N_FOLDS
    k_non = k_mated = 0
    for a, b, fold, mated, line in collected:
        if mated and not blocks:
            fold_index = fold - 1
        elif mated:
            fold_index = k_mated * N_FOLDS // n_mated
            k_mated += 1
        else:
            fold_index = k_non * N_FOLDS // max(n_non, 1)
            k_non += 1
        pairs.add(a, b, mated, fold_index, protocol, line)
    return samples, pairs


def _build(name: str, pair_name: str, options: Mapping[str, Any]) -> ImageDataset:
    layout = f"{pair_name} and 'aligned images/<Name>_0001.jpg'"
    root = require_root(name, options, layout)
    choice = str(options.get("images") or "auto")
    if choice == "auto":
        found = [root / c for c in IMAGE_FOLDERS if (root / c).is_dir()]
        if not found:
            raise MissingArtifactError(
                f"dataset {name!r}: no image folder under {root}; expected one of "
                f"{', '.join(repr(c) for c in IMAGE_FOLDERS)} (or set --dataset-option {name}:images=FOLDER)"
            )
        image_root = found[0]
    else:
        image_root = check_dir(root / choice, f"{name} image folder (option images)")
    protocol = ProtocolFile(root / str(options.get("pairs") or pair_name), "pair list")
    samples, pairs = parse_two_line_pairs(protocol)
    a, b, mated, folds = pairs.arrays(bool(options.get("allow_duplicates", False)))
    parsed = ImageProtocol(
        rel_paths=samples.rel_paths, subjects=samples.subjects, a=a, b=b, mated=mated,
        where=samples.where, files=[protocol], folds=folds, extra={"image_folder": image_root.name},
    )
    alignment = alignment_from_options(name, options, samples.rel_paths, aligned=True, default_fraction=0.55)
    return ImageDataset(name=name, version=VERSION, image_root=image_root, protocol=parsed,
                        alignment=alignment, workers=int(options.get("workers") or 1))


def build_calfw(*, options: Mapping[str, Any], device: Any = None) -> ImageDataset:
    """Factory of ``calfw``."""
    return _build("calfw", "pairs_CALFW.txt", options)


def build_cplfw(*, options: Mapping[str, Any], device: Any = None) -> ImageDataset:
    """Factory of ``cplfw``."""
    return _build("cplfw", "pairs_CPLFW.txt", options)


