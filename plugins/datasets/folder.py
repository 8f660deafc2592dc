"""``folder``: any folder of face images, one sub-folder per identity.

Samples are the image files (``.jpg .jpeg .png .bmp .tif .tiff .webp``, any case) of each
sub-folder of ``root``, sorted; a sample's id is ``<identity>/<file name>``, its subject the
sub-folder name. Files directly in ``root`` or deeper than one level are ignored (and counted
in the log), so a README next to the identities does no harm.

Comparisons: with ``pairs=FILE``, one pair per line ``a b mated`` (ids as above, ``mated`` 1 or
0); otherwise every mated pair plus ``non_mated`` non-mated pairs drawn with ``seed`` (``all``:
every one).

Alignment (``align``): ``none`` (aligned crops; resized to 112 if they are not 112 x 112),
``fixed`` (the central ``crop_fraction`` square), ``landmarks`` (``landmarks=FILE``) or ``dlib``
(five landmarks from ``fiqabench_plugins.dlib.detect``: ``detector`` hog or cnn, ``multiple``
largest or refuse). With ``dlib`` every image is detected once when the dataset is built,
before any model runs; an image without a face (or with several under ``multiple=refuse``)
keeps the fixed crop and stays in the protocol, counted, named in a warning and recorded in the
results (see :mod:`.base`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from fiqabench.errors import ConfigError, InputFormatError

from .base import (
    ImageDataset,
    ImageProtocol,
    PairList,
    alignment_from_options,
    all_pairs,
    parse_non_mated,
    require_root,
)
from .protocol import ProtocolFile

__all__ = ["IMAGE_EXTENSIONS", "build_folder", "dlib_unavailable_reason"]

log = logging.getLogger("fiqabench.datasets")

VERSION = "1"
LAYOUT = "one sub-folder per identity: <identity>/<image>.jpg"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_NON_MATED = 1_000_000
DLIB_MODULE = "fiqabench_plugins.dlib.detect"


def dlib_unavailable_reason() -> str | None:
    """Why ``align=dlib`` cannot run here (with the install command), or None.

    Asks the dlib plugin (:func:`fiqabench_plugins.dlib.detection_unavailable`: dlib and its model
    files, found without importing dlib), so listing stays light.
    """
    try:
        from fiqabench_plugins.dlib import detection_unavailable
    except Exception as exc:  # the dlib plugin package itself is missing or broken
        return (f"align=dlib needs the dlib plugin ({DLIB_MODULE}), which cannot be imported: "
                f"{type(exc).__name__}: {exc}; use align=none, fixed or landmarks")
    reason = detection_unavailable()
    return None if reason is None else f"align=dlib {reason}"


def _scan(root) -> tuple[list[str], list[str], int]:
    rel_paths: list[str] = []
    subjects: list[str] = []
    ignored = 0
    with os.scandir(root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        if not entry.is_dir():
            ignored += 1
            continue
        with os.scandir(entry.path) as it:
            files = sorted(it, key=lambda e: e.name)
        for f in files:
            if f.is_file() and f.name.lower().endswith(IMAGE_EXTENSIONS):
                rel_paths.append(f"{entry.name}/{f.name}")
                subjects.append(entry.name)
            else:
                ignored += 1
    return rel_paths, subjects, ignored


def build_folder(*, options: Mapping[str, Any], device: Any = None) -> ImageDataset:
    """Factory of ``folder``."""
    root = require_root("folder", options, LAYOUT)
    rel_paths, subjects, ignored = _scan(root)
    if not rel_paths:
        raise InputFormatError(root, None, None, f"no images ({', '.join(IMAGE_EXTENSIONS)}) in sub-folders; expected {LAYOUT}")
    if ignored:
        log.info("folder %s: %d entries that are not images in identity folders were ignored", root, ignored)
    files: list[ProtocolFile] = []
    index = {p: i for i, p in enumerate(rel_paths)}
    where: list[tuple[ProtocolFile | None, int]] = [(None, 0)] * len(rel_paths)
    pairs_option = options.get("pairs")
    extra: dict[str, Any] = {}
    if pairs_option:
        protocol = ProtocolFile(pairs_option, "pair list")
        files.append(protocol)
        pairs = PairList()
        for line, tokens in protocol.rows():
            protocol.columns(line, tokens, (3,), "a b mated")
            ids = []
            for field, token in (("a", tokens[0]), ("b", tokens[1])):
                if token not in index:
                    raise protocol.error(line, f"no image {token} under {root} (ids are <identity>/<file>)", field)
                ids.append(index[token])
            mated = protocol.label(line, tokens[2], "mated")
            if (subjects[ids[0]] == subjects[ids[1]]) != mated:
                raise protocol.error(line, f"mated={tokens[2]} but the identities are {subjects[ids[0]]} and {subjects[ids[1]]}")
            pairs.add(ids[0], ids[1], mated, 0, protocol, line)
        a, b, mated_arr, _ = pairs.arrays(bool(options.get("allow_duplicates", False)))
        if a.size == 0:
            raise protocol.error(None, "no pairs")
    else:
        non_mated = parse_non_mated("folder", options.get("non_mated", DEFAULT_NON_MATED))
        seed = int(options.get("seed") or 0)
        a, b, mated_arr = all_pairs(subjects, non_mated, seed)
        extra = {"non_mated": non_mated, "seed": seed}
    align = str(options.get("align") or "none")
    if align == "dlib":
        reason = dlib_unavailable_reason()
        if reason:
            raise ConfigError(f"dataset 'folder': {reason}")
    if align == "auto":
        align = "none"
    alignment = alignment_from_options(
        "folder", {**options, "align": align}, rel_paths, aligned=True, default_fraction=0.55
    )
    # The listing is the protocol: digest the file names with the rest (done by ImageDataset).
    parsed = ImageProtocol(
        rel_paths=rel_paths, subjects=subjects, a=a, b=b, mated=mated_arr,
        where=where, files=files, folds=None, extra=extra,  # type: ignore[arg-type]
    )
    dataset = ImageDataset(name="folder", version=VERSION, image_root=root, protocol=parsed, alignment=alignment,
                           workers=int(options.get("workers") or 1), check_images=False)
    if alignment.mode == "dlib":
        dataset.detect_faces()  # once, now: failures are listed before any model runs
    return dataset
