"""What every real-benchmark reader shares: image decoding, alignment, the Dataset protocol.

A reader parses its protocol into an :class:`ImageProtocol` (relative image paths, subjects,
comparison indices, folds, where each image was named); :class:`ImageDataset` then

- checks that every image exists before any model runs (the count and the first few missing
  are named with the protocol line that refers to the first, see
  :func:`.protocol.missing_images_error`);
- decodes images with Pillow (any mode converted to RGB), optionally in a thread pool (Pillow
  releases the GIL while decoding), and aligns them to 112 x 112 (:class:`Alignment`);
- digests the protocol files, the parsed protocol and the alignment into ``manifest_digest``.

Alignment (each labelled, ``ImageDataset.alignment`` is recorded with results):

- ``none``: the images are aligned crops already (XQLFW, CALFW/CPLFW ``aligned images``,
  ``.bin`` files); a crop that is not 112 x 112 is resized to it as the FIQA repositories do
  (eDifFIQA, FaceQAN: ``Resize(112, 112)``).
- ``landmarks``: five points per image from a file (IJB-C's ``*_name_5pts_score.txt``, or the
  user's ``landmarks=FILE``), warped onto the ArcFace template (:mod:`.align`).
- ``fixed``: no landmarks: the faces of the dataset are centred (LFW's 250 x 250 images were
  cut around a Viola-Jones detection enlarged 2.2 times), so the central square of side
  ``crop_fraction x min(H, W)`` is taken as the ArcFace crop and resized to 112. This only
  approximates the template (no rotation, average scale); results carry the label
  ``fixed(crop_fraction=...)`` so they are never mistaken for landmark alignment.
- ``dlib``: five landmarks from dlib's detector (the ``folder`` dataset), detected once per
  image when the dataset is built, before any model runs. An image without a face (or, under
  ``multiple=refuse``, with several) keeps the ``fixed`` crop: it stays in the protocol, since
  dropping it would remove exactly the images a FIQA method should rank lowest and change the
  user's pair list; the images are counted, the first few named in a warning, and all recorded
  in :meth:`ImageDataset.details` (what ArcFace's LFW preparation does: centre crop when the
  detector fails).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fiqabench.api import Comparisons, SampleTable, Templates
from fiqabench.errors import ConfigError, InputFormatError, MissingArtifactError

from .align import arcface_template, pil_affine, similarity_transform, similarity_transforms
from .protocol import ProtocolFile, duplicate_pair_rows, find_missing, missing_images_error

__all__ = [
    "ALIGNED_DOMAIN",
    "Alignment",
    "ImageDataset",
    "ImageProtocol",
    "READER_VERSION",
    "decode_image",
    "read_landmarks_file",
    "require_root",
]

log = logging.getLogger("fiqabench.datasets")

#: The domain of every dataset here: RGB uint8 crops aligned to the ArcFace 112 x 112 template.
ALIGNED_DOMAIN = "aligned-112-face"
#: Version of the readers' shared behaviour (decoding, alignment); in every manifest digest.
READER_VERSION = "1"
SIZE = 112


def require_root(name: str, options: Mapping[str, Any], layout: str) -> Path:
    """The ``root`` option as a folder, or a MissingArtifactError naming the option and layout."""
    root = options.get("root")
    if not root:
        raise MissingArtifactError(
            f"dataset {name!r} needs its files: pass --dataset-option {name}:root=DIR, where DIR holds {layout}"
        )
    path = Path(str(root)).expanduser()
    if not path.is_dir():
        raise MissingArtifactError(
            f"dataset {name!r}: root {path} is not a folder; it should hold {layout}"
        )
    return path


def open_rgb(path: Path | str) -> Any:
    """Decode any Pillow-readable image to an RGB Pillow image; failures name the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return image if image.mode == "RGB" else image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise InputFormatError(path, None, None, f"unreadable image: {exc}") from None


def open_rgb_bytes(data: bytes, where: str) -> Any:
    """:func:`open_rgb` for an encoded image held in memory (``.bin`` files)."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image if image.mode == "RGB" else image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise InputFormatError(where, None, None, f"unreadable image: {exc}") from None


def decode_image(path: Path | str) -> np.ndarray:
    """Decode any Pillow-readable image to uint8 RGB ``(H, W, 3)``; failures name the file."""
    return np.asarray(open_rgb(path))


def read_landmarks_file(path: Path | str, ids: Sequence[str], *, with_score: bool | None = None) -> np.ndarray:
    """Five landmarks per sample from ``path``: lines ``ID x1 y1 x2 y2 x3 y3 x4 y4 x5 y5 [score]``.

    ``ID`` is the sample id as the dataset names it (a relative image path); points are in pixels
    of the original image in the order left eye, right eye, nose, left mouth corner, right mouth
    corner (insightface's order, the order of IJB-C's landmark files). Samples without a line
    get NaN (the dataset refuses them, naming the first).
    """
    protocol = ProtocolFile(path, "landmarks file")
    index = {sample: i for i, sample in enumerate(ids)}
    out = np.full((len(ids), 5, 2), np.nan)
    seen: dict[int, int] = {}
    for line, tokens in protocol.rows():
        protocol.columns(line, tokens, (11, 12), "image id, 10 coordinates, optional score")
        sample = tokens[0]
        if sample not in index:
            continue  # a landmark file may cover more images than the protocol uses
        k = index[sample]
        if k in seen:
            raise protocol.error(line, f"second line for {sample} (first on line {seen[k]})")
        seen[k] = line
        values = [protocol.number(line, t, f"coordinate {j + 1}") for j, t in enumerate(tokens[1:11])]
        out[k] = np.asarray(values).reshape(5, 2)
    del with_score
    return out


@dataclass(frozen=True)
class Alignment:
    """How raw images become 112 x 112 ArcFace crops (see the module docstring)."""

    mode: str  # none | fixed | landmarks | dlib
    crop_fraction: float = 0.55
    landmarks: np.ndarray | None = None  # (n, 5, 2) for mode "landmarks"
    source: str = ""  # where the landmarks come from (label only)
    #: mode "dlib": dlib's detector (hog | cnn) and the rule for several faces (largest | refuse)
    detector: str = "hog"
    multiple: str = "largest"
    #: (n, 2, 3) similarity per image, computed once from ``landmarks`` (NaN: degenerate points).
    matrices: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.landmarks is not None and self.matrices is None:
            object.__setattr__(self, "matrices", similarity_transforms(self.landmarks, arcface_template(SIZE)))

    def label(self) -> str:
        if self.mode == "fixed":
            return f"fixed(crop_fraction={self.crop_fraction:g})"
        if self.mode == "landmarks":
            return f"landmarks({self.source})" if self.source else "landmarks"
        if self.mode == "dlib":
            return f"dlib({self.detector}, {self.multiple}; fallback fixed, crop_fraction={self.crop_fraction:g})"
        return "none"

    def fixed_box(self, height: int, width: int) -> tuple[float, float, float, float]:
        side = self.crop_fraction * min(height, width)
        cx, cy = width / 2.0, height / 2.0
        return (cx - side / 2.0, cy - side / 2.0, cx + side / 2.0, cy + side / 2.0)

    def apply(self, image: Any, index: int, points: np.ndarray | None = None) -> np.ndarray:
        """Pillow RGB image -> uint8 ``(112, 112, 3)``; ``points``: detected landmarks (dlib)."""
        from PIL import Image

        bilinear = Image.Resampling.BILINEAR
        if self.mode == "none":
            if image.size == (SIZE, SIZE):
                return np.asarray(image)
            return np.asarray(image.resize((SIZE, SIZE), bilinear))
        matrix = None
        if self.mode == "landmarks" and self.matrices is not None:
            matrix = self.matrices[index]
            if not np.isfinite(matrix).all():
                raise ValueError("the five landmarks are degenerate (not finite, or all at one point)")
        elif self.mode == "dlib" and points is not None:
            matrix = similarity_transform(points, arcface_template(SIZE))
        if matrix is not None:
            return np.asarray(pil_affine(image, matrix, (SIZE, SIZE)))
        width, height = image.size
        return np.asarray(image.resize((SIZE, SIZE), bilinear, box=self.fixed_box(height, width)))

    def digest_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"mode": self.mode, "label": self.label()}
        if self.mode in {"fixed", "dlib"}:
            payload["crop_fraction"] = self.crop_fraction
        if self.mode == "dlib":
            payload["detector"], payload["multiple"] = self.detector, self.multiple
        if self.landmarks is not None:
            payload["landmarks"] = hashlib.sha256(np.ascontiguousarray(self.landmarks, np.float64).tobytes()).hexdigest()
        return payload


@dataclass
class ImageProtocol:
    """A parsed protocol: what a reader hands to :class:`ImageDataset`."""

    rel_paths: list[str]  # per sample, relative to the image folder (also the sample ids)
    subjects: list[str]
    a: np.ndarray
    b: np.ndarray
    mated: np.ndarray
    where: Sequence[tuple[ProtocolFile, int]]  # per sample: the protocol line that first names it
    files: list[ProtocolFile]
    folds: np.ndarray | None = None  # per comparison (pair datasets' 10-fold protocols)
    ids: list[str] | None = None  # sample ids if not the relative paths
    templates: Templates | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # more digest input (options that shape the protocol)


def alignment_from_options(
    name: str,
    options: Mapping[str, Any],
    ids: Sequence[str],
    *,
    aligned: bool,
    default_fraction: float,
) -> Alignment:
    """The ``align`` / ``landmarks`` / ``crop_fraction`` options resolved into an :class:`Alignment`.

    ``align=auto`` picks ``none`` for datasets of aligned crops, else ``landmarks`` when a file
    is given, else ``fixed``.
    """
    mode = str(options.get("align") or "auto")
    landmarks_path = options.get("landmarks")
    fraction = options.get("crop_fraction")
    fraction = default_fraction if fraction in (None, "") else float(fraction)
    if not 0.05 <= fraction <= 1.0:
        raise ConfigError(f"dataset {name!r}: crop_fraction={fraction} must be in [0.05, 1]")
    if mode == "auto":
        mode = "landmarks" if landmarks_path else ("none" if aligned else "fixed")
    if mode == "landmarks":
        if not landmarks_path:
            raise ConfigError(
                f"dataset {name!r}: align=landmarks needs --dataset-option {name}:landmarks=FILE "
                "(lines: image-id x1 y1 ... x5 y5)"
            )
        points = read_landmarks_file(landmarks_path, ids)
        lacking = np.flatnonzero(~np.isfinite(points).all(axis=(1, 2)))
        if lacking.size:
            raise InputFormatError(
                landmarks_path, None, None,
                f"no landmarks for {lacking.size} of {len(ids)} images, e.g. {ids[int(lacking[0])]}",
            )
        return Alignment("landmarks", fraction, points, source=Path(str(landmarks_path)).name)
    if mode not in {"none", "fixed", "dlib"}:
        raise ConfigError(f"dataset {name!r}: align={mode!r}; expected auto, none, fixed, landmarks or dlib")
    if mode == "dlib":
        detector, multiple = str(options.get("detector") or "hog"), str(options.get("multiple") or "largest")
        if detector not in ("hog", "cnn"):
            raise ConfigError(f"dataset {name!r}: detector={detector!r}; expected hog or cnn")
        if multiple not in ("largest", "refuse"):
            raise ConfigError(f"dataset {name!r}: multiple={multiple!r}; expected largest or refuse")
        return Alignment(mode, fraction, detector=detector, multiple=multiple)
    return Alignment(mode, fraction)


class LineOf:
    """``where[i]`` for readers whose sample ``i`` is on a known line of one file (IJB-C):
    avoids a 469,375-entry list of tuples."""

    def __init__(self, protocol: ProtocolFile) -> None:
        self.protocol = protocol
        self._lines: np.ndarray | None = None  # computed on the first error only

    def __getitem__(self, i: int) -> tuple[ProtocolFile, int]:
        if self._lines is None:
            self._lines = self.protocol.line_numbers()
        return self.protocol, int(self._lines[i])


class SampleIndex:
    """Samples met while reading a pair list: each image once, with the line that first names it."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.rel_paths: list[str] = []
        self.subjects: list[str] = []
        self.where: list[tuple[ProtocolFile, int]] = []

    def add(self, rel_path: str, subject: str, protocol: ProtocolFile, line: int) -> int:
        k = self.index.get(rel_path)
        if k is None:
            k = self.index[rel_path] = len(self.rel_paths)
            self.rel_paths.append(rel_path)
            self.subjects.append(subject)
            self.where.append((protocol, line))
        elif self.subjects[k] != subject:
            raise protocol.error(line, f"{rel_path} is named as subject {subject!r} here but {self.subjects[k]!r} on line {self.where[k][1]}")
        return k


class PairList:
    """Pairs met while reading a pair list, with their lines (for duplicate errors)."""

    def __init__(self) -> None:
        self.a: list[int] = []
        self.b: list[int] = []
        self.mated: list[bool] = []
        self.folds: list[int] = []
        self.where: list[tuple[ProtocolFile, int]] = []

    def add(self, a: int, b: int, mated: bool, fold: int, protocol: ProtocolFile, line: int) -> None:
        if a == b:
            raise protocol.error(line, "a pair of an image with itself")
        self.a.append(a)
        self.b.append(b)
        self.mated.append(bool(mated))
        self.folds.append(int(fold))
        self.where.append((protocol, line))

    def arrays(self, allow_duplicates: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        a = np.asarray(self.a, dtype=np.int64)
        b = np.asarray(self.b, dtype=np.int64)
        if not allow_duplicates:
            repeats = duplicate_pair_rows(a, b)
            if repeats.size:
                k = int(repeats[0])
                lo, hi = min(a[k], b[k]), max(a[k], b[k])
                first = next(i for i in range(k) if min(a[i], b[i]) == lo and max(a[i], b[i]) == hi)
                protocol, line = self.where[k]
                first_protocol, first_line = self.where[first]
                where = f"line {first_line}" if first_protocol is protocol else f"{first_protocol.path}:{first_line}"
                raise protocol.error(
                    line,
                    f"duplicate pair: the same two images as {where} ({repeats.size} duplicate(s) in all; "
                    "allow_duplicates=true keeps them)",
                )
        return a, b, np.asarray(self.mated, dtype=bool), np.asarray(self.folds, dtype=np.int64)


class ImageDataset:
    """A benchmark of image files with a parsed protocol; implements :class:`fiqabench.api.Dataset`."""

    domain = ALIGNED_DOMAIN

    def __init__(
        self,
        *,
        name: str,
        version: str,
        image_root: Path,
        protocol: ImageProtocol,
        alignment: Alignment,
        workers: int = 1,
        check_images: bool = True,
    ) -> None:
        self.name = name
        self.version = version
        self.image_root = Path(image_root)
        self.protocol = protocol
        self.alignment_spec = alignment
        #: Label of the alignment, for the results file.
        self.alignment = alignment.label()
        self.workers = max(1, int(workers))
        self._ids = tuple(protocol.ids if protocol.ids is not None else protocol.rel_paths)
        self._paths = [os.path.join(self.image_root, p) for p in protocol.rel_paths]
        self._digest: str | None = None
        self._samples: SampleTable | None = None
        #: ``align=dlib``: five landmarks per image (NaN: none kept) and faces found, from
        #: :meth:`detect_faces`, run once (at build) so no method or worker detects again.
        self._points: np.ndarray | None = None
        self._face_counts: np.ndarray | None = None
        #: Images that keep the fixed crop (no face, or several under ``multiple=refuse``).
        self.detection_failures: list[str] = []
        if check_images:
            self.check_images()

    # -- checks -------------------------------------------------------------------------------
    def check_images(self) -> None:
        """Raise, before any model runs, if an image is missing (count + first few named)."""
        missing, dirs = find_missing(self._paths)
        if missing or dirs:
            raise missing_images_error(self.image_root, self.protocol.rel_paths, missing, dirs, self.protocol.where)

    # -- Dataset protocol ---------------------------------------------------------------------
    def samples(self) -> SampleTable:
        if self._samples is None:  # built once: IJB-C's table has 469,375 rows
            self._samples = SampleTable(ids=self._ids, subjects=tuple(self.protocol.subjects))
        return self._samples

    def comparisons(self) -> Comparisons:
        p = self.protocol
        return Comparisons(a=p.a, b=p.b, mated=p.mated)

    def templates(self) -> Templates | None:
        return self.protocol.templates

    def folds(self) -> np.ndarray | None:
        """Fold index (0-based) of each comparison for 10-fold verification accuracy, or None."""
        return self.protocol.folds

    def read_images(self, indices: Sequence[int]) -> np.ndarray:
        idx = [int(i) for i in np.asarray(indices, dtype=np.int64).reshape(-1)]
        n = len(self._paths)
        for i in idx:
            if not 0 <= i < n:
                raise ConfigError(f"{self.name}: sample index {i} out of range 0..{n - 1}")
        out = np.empty((len(idx), SIZE, SIZE, 3), dtype=np.uint8)
        if self.workers > 1 and len(idx) > 1:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(idx))) as pool:
                for slot, crop in enumerate(pool.map(self.load, idx)):
                    out[slot] = crop
        else:
            for slot, i in enumerate(idx):
                out[slot] = self.load(i)
        return out

    def open(self, index: int) -> Any:
        """The raw image of sample ``index`` as an RGB Pillow image (before alignment)."""
        return open_rgb(self._paths[index])

    def decode(self, index: int) -> np.ndarray:
        """The raw image of sample ``index`` as uint8 RGB (before alignment)."""
        return np.asarray(self.open(index))

    def load(self, index: int) -> np.ndarray:
        """One aligned crop."""
        image = self.open(index)
        points = None
        if self.alignment_spec.mode == "dlib":
            found = self.landmarks_detected()[index]
            points = found if np.isfinite(found).all() else None
        try:
            return self.alignment_spec.apply(image, index, points)
        except ValueError as exc:  # degenerate landmarks
            raise InputFormatError(self._paths[index], None, None, f"cannot align: {exc}") from None

    def landmarks_detected(self) -> np.ndarray:
        """``align=dlib``: ``(n, 5, 2)`` detected landmarks, NaN where the fixed crop is kept."""
        if self._points is None:
            self.detect_faces()
        return self._points  # type: ignore[return-value]

    def detect_faces(self) -> None:
        """``align=dlib``: detect every image's face once (threads: dlib's detectors are
        per-thread in :mod:`fiqabench_plugins.dlib.detect`), then warn about the images that keep
        the fixed crop, naming the first few."""
        from fiqabench_plugins.dlib.detect import detect_landmarks5

        spec = self.alignment_spec
        n = len(self._paths)
        points = np.full((n, 5, 2), np.nan)
        counts = np.zeros(n, dtype=np.int64)

        def detect(i: int) -> tuple[np.ndarray | None, int]:
            found, count = detect_landmarks5(np.asarray(self.open(i)), detector=spec.detector, multiple=spec.multiple)
            return found, int(count)

        with ThreadPoolExecutor(max_workers=max(1, min(self.workers, n))) as pool:
            for i, (found, count) in enumerate(pool.map(detect, range(n))):
                counts[i] = count
                if found is not None:
                    points[i] = np.asarray(found, dtype=np.float64)
        self._points, self._face_counts = points, counts
        kept_fixed = ~np.isfinite(points).all(axis=(1, 2))
        self.detection_failures = [self._ids[i] for i in np.flatnonzero(kept_fixed)]
        summary = self.detection_summary()
        if summary["no_face"] or summary["several_faces_refused"]:
            parts = []
            if summary["no_face"]:
                parts.append(f"no face in {summary['no_face']} (e.g. {', '.join(summary['no_face_examples'][:5])})")
            if summary["several_faces_refused"]:
                parts.append(f"several faces in {summary['several_faces_refused']} under multiple=refuse "
                             f"(e.g. {', '.join(summary['several_faces_examples'][:5])})")
            log.warning("%s: dlib found %s of %d images; they keep the fixed centre crop (crop_fraction=%g) "
                        "and stay in the protocol", self.name, " and ".join(parts), n, spec.crop_fraction)

    def detection_summary(self, examples: int = 20) -> dict[str, Any]:
        """``align=dlib``: how detection went (counts, and the first ``examples`` ids of each kind)."""
        self.landmarks_detected()
        counts: np.ndarray = self._face_counts  # type: ignore[assignment]
        ids = self._ids
        none = np.flatnonzero(counts == 0)
        several = np.flatnonzero(counts > 1)
        refused = several if self.alignment_spec.multiple == "refuse" else several[:0]
        return {
            "detector": self.alignment_spec.detector,
            "multiple": self.alignment_spec.multiple,
            "images": int(counts.size),
            "no_face": int(none.size),
            "several_faces_refused": int(refused.size),
            "several_faces_kept_largest": int(several.size - refused.size),
            "kept_fixed_crop": len(self.detection_failures),
            "no_face_examples": [ids[i] for i in none[:examples]],
            "several_faces_examples": [ids[i] for i in several[:examples]],
        }

    def details(self) -> dict[str, Any]:
        """How the dataset was read, for ``results.json`` (``components.datasets[name].details``)."""
        out: dict[str, Any] = {"alignment": self.alignment, "samples": len(self._ids),
                               "comparisons": int(len(self.protocol.a))}
        source = getattr(self, "subjects_source", None) or self.protocol.extra.get("subjects_source")
        if source:
            out["subjects_source"] = source
        if self.alignment_spec.mode == "dlib":
            out["detection"] = self.detection_summary()
            out["detection_failures"] = list(self.detection_failures)
        return out

    def manifest_digest(self) -> str:
        """sha256 of reader version, protocol files' bytes, parsed protocol and alignment."""
        if self._digest is None:
            p = self.protocol
            digest = hashlib.sha256()
            header = {
                "dataset": self.name,
                "version": self.version,
                "reader": READER_VERSION,
                "files": [[f.path.name, f.sha256] for f in p.files],
                "alignment": self.alignment_spec.digest_payload(),
                "extra": p.extra,
            }
            digest.update(json.dumps(header, sort_keys=True, default=str).encode())
            digest.update(json.dumps([list(self._ids), list(p.subjects)]).encode())
            for array in (p.a, p.b, p.mated):
                digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
            if p.templates is not None:
                t = p.templates
                digest.update(json.dumps(list(t.ids)).encode())
                for array in (t.sample_template, t.media_ids):
                    digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
                if t.detector_scores is not None:
                    digest.update(np.ascontiguousarray(t.detector_scores, dtype=np.float64).tobytes())
            self._digest = digest.hexdigest()
        return self._digest


def all_pairs(subjects: Sequence[str], non_mated: int | None, seed: int, *, limit: int = 50_000_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every mated pair plus ``non_mated`` non-mated pairs drawn uniformly without repeats
    (``None``: every non-mated pair), as sorted ``(a, b, mated)`` with ``a < b``.

    The draw is seeded by ``seed`` alone, so the protocol of a folder never changes between
    runs. Pair counts above ``limit`` are refused rather than exhausting memory (Adience has
    about 350 M non-mated pairs).
    """
    codes = np.unique(np.asarray(subjects), return_inverse=True)[1].reshape(-1).astype(np.int64)
    n = codes.size
    order = np.argsort(codes, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(codes[order])) + 1) if n else []
    mated_a: list[np.ndarray] = []
    mated_b: list[np.ndarray] = []
    for members in groups:
        if members.size > 1:
            i, j = np.triu_indices(members.size, k=1)
            mated_a.append(members[i])
            mated_b.append(members[j])
    ma = np.concatenate(mated_a) if mated_a else np.zeros(0, np.int64)
    mb = np.concatenate(mated_b) if mated_b else np.zeros(0, np.int64)
    ma, mb = np.minimum(ma, mb), np.maximum(ma, mb)
    total_non = n * (n - 1) // 2 - ma.size
    want = total_non if non_mated is None else min(int(non_mated), total_non)
    if ma.size + want > limit:
        raise ConfigError(
            f"{ma.size + want:,} comparisons exceed the limit of {limit:,}: set non_mated=N to sample fewer"
        )
    if want == 0:
        na = nb = np.zeros(0, np.int64)
    elif want == total_non or total_non <= 4 * want:
        a, b = np.triu_indices(n, k=1)
        keep = codes[a] != codes[b]
        a, b = a[keep], b[keep]
        if want < a.size:
            chosen = np.sort(np.random.default_rng(seed).permutation(a.size)[:want])
            a, b = a[chosen], b[chosen]
        na, nb = a.astype(np.int64), b.astype(np.int64)
    else:
        rng = np.random.default_rng(seed)
        keys = np.zeros(0, np.int64)
        while True:
            draw = rng.integers(0, n, size=(2, 2 * want + 16))
            lo, hi = np.minimum(draw[0], draw[1]), np.maximum(draw[0], draw[1])
            ok = codes[lo] != codes[hi]
            keys = np.concatenate([keys, lo[ok] * n + hi[ok]])
            unique, first = np.unique(keys, return_index=True)
            if unique.size >= want:
                keys = keys[np.sort(first)][:want]  # the first `want` distinct draws
                break
            keys = keys[np.sort(first)]
        keys = np.sort(keys)
        na, nb = keys // n, keys % n
    a = np.concatenate([ma, na]).astype(np.int64)
    b = np.concatenate([mb, nb]).astype(np.int64)
    mated = np.concatenate([np.ones(ma.size, bool), np.zeros(na.size, bool)])
    return a, b, mated


def parse_non_mated(name: str, value: Any) -> int | None:
    """``non_mated``: a count, or ``all``."""
    if value is None or str(value).strip().lower() == "all":
        return None
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"dataset {name!r}: non_mated={value!r}; expected a count or 'all'") from None
    if count < 0:
        raise ConfigError(f"dataset {name!r}: non_mated={value!r} must be at least 0")
    return count
