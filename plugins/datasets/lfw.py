"""LFW (View 2 ``pairs.txt``, plain and deep-funneled layouts) and XQLFW (the same pair format).

Format (LFW README; ``research/ecosystem.md`` 4.1 and 4.6): a header ``folds<TAB>n`` (View 2:
``10 300``; View 1 files have a single number, one fold), then for each fold ``n`` mated lines
``name i j`` and ``n`` non-mated lines ``name1 i name2 j``, tab- or space-separated; image ``i`` of
``name`` is ``<name>/<name>_<i:04d>.jpg``. Folds are the contiguous blocks of ``2 n`` lines.

Layouts under ``root``: LFW: ``pairs.txt`` and one image folder, ``lfw/`` (the original
250 x 250 images), ``lfw-deepfunneled/`` or ``lfw_funneled/`` (``images`` chooses; ``auto``
takes the first present). XQLFW: ``xqlfw_pairs.txt`` and ``xqlfw_aligned_112/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .base import (
    ImageDataset,
    ImageProtocol,
    PairList,
    SampleIndex,
    alignment_from_options,
    require_root,
)
from .protocol import ProtocolFile, check_dir

__all__ = ["LFW_IMAGE_FOLDERS", "build_lfw", "build_xqlfw", "parse_lfw_pairs"]

VERSION = "1"
#: Image folders tried in order by ``images=auto``.
LFW_IMAGE_FOLDERS = ("lfw", "lfw-deepfunneled", "lfw_deepfunneled", "lfw_funneled", "lfw-funneled")
LFW_LAYOUT = "pairs.txt and lfw/<Name>/<Name>_0001.jpg (or lfw-deepfunneled/...)"
XQLFW_LAYOUT = "xqlfw_pairs.txt and xqlfw_aligned_112/<Name>/<Name>_0001.jpg"
#: The ArcFace crop approximated on LFW's 250 x 250 images: the central 55 %. LFW images are
#: the Viola-Jones box enlarged 2.2 times (LFW technical report 07-49, section 3), so the box is
#: the central 45 %; the ArcFace crop reaches a little beyond the box. An approximation, labelled.
LFW_CROP_FRACTION = 0.55


def image_name(name: str, number: int) -> str:
    return f"{name}/{name}_{number:04d}.jpg"


def parse_lfw_pairs(protocol: ProtocolFile) -> tuple[SampleIndex, PairList]:
    """Samples and pairs of an LFW-format pair file (checked against its header)."""
    rows = protocol.rows()
    try:
        header_line, header = next(rows)
    except StopIteration:
        raise protocol.error(None, "empty pair file; expected a header such as '10 300'") from None
    if len(header) == 2:
        folds = protocol.integer(header_line, header[0], "number of folds", 1)
        per_fold = protocol.integer(header_line, header[1], "pairs per fold and class", 1)
    elif len(header) == 1:
        folds, per_fold = 1, protocol.integer(header_line, header[0], "pairs per class", 1)
    else:
        raise protocol.error(header_line, f"expected a header 'folds pairs' such as '10 300', found {len(header)} columns")
    samples, pairs = SampleIndex(), PairList()
    count = 0
    block = 2 * per_fold
    for line, tokens in rows:
        protocol.columns(line, tokens, (3, 4), "mated: name i j; non-mated: name1 i name2 j")
        fold = count // block
        if fold >= folds:
            raise protocol.error(line, f"more pair lines than the header's {folds} x {block}")
        if len(tokens) == 3:
            name, i, j = tokens
            first = (name, protocol.integer(line, i, "image number", 1))
            second = (name, protocol.integer(line, j, "image number", 1))
            mated = True
        else:
            first = (tokens[0], protocol.integer(line, tokens[1], "first image number", 1))
            second = (tokens[2], protocol.integer(line, tokens[3], "second image number", 1))
            mated = False
            if tokens[0] == tokens[2]:
                raise protocol.error(line, f"a non-mated pair of one person ({tokens[0]})")
        a = samples.add(image_name(*first), first[0], protocol, line)
        b = samples.add(image_name(*second), second[0], protocol, line)
        pairs.add(a, b, mated, fold, protocol, line)
        count += 1
    if count != folds * block:
        raise protocol.error(
            None, f"the header promises {folds} folds x {block} pairs = {folds * block}, but the file has "
            f"{count} pair lines (truncated copy?)"
        )
    return samples, pairs


def _image_folder(root: Path, choice: str, name: str) -> Path:
    if choice and choice != "auto":
        return check_dir(root / choice, f"{name} image folder (option images)")
    for candidate in LFW_IMAGE_FOLDERS:
        if (root / candidate).is_dir():
            return root / candidate
    # The person folders may sit next to pairs.txt; if not, the image check names what is missing.
    return root


def _build(name: str, root: Path, pairs_file: Path, image_root: Path, options: Mapping[str, Any], *, aligned: bool) -> ImageDataset:
    protocol = ProtocolFile(pairs_file, "pair list")
    samples, pairs = parse_lfw_pairs(protocol)
    a, b, mated, folds = pairs.arrays(bool(options.get("allow_duplicates", False)))
    parsed = ImageProtocol(
        rel_paths=samples.rel_paths, subjects=samples.subjects, a=a, b=b, mated=mated,
        where=samples.where, files=[protocol], folds=folds,
        extra={"image_folder": image_root.name},
    )
    alignment = alignment_from_options(
        name, options, samples.rel_paths, aligned=aligned, default_fraction=LFW_CROP_FRACTION
    )
    return ImageDataset(
        name=name, version=VERSION, image_root=image_root, protocol=parsed, alignment=alignment,
        workers=int(options.get("workers") or 1),
    )


def build_lfw(*, options: Mapping[str, Any], device: Any = None) -> ImageDataset:
    """Factory of ``lfw``: View 2 of LFW from ``root`` (see the module docstring)."""
    root = require_root("lfw", options, LFW_LAYOUT)
    image_root = _image_folder(root, str(options.get("images") or "auto"), "lfw")
    pairs_file = root / str(options.get("pairs") or "pairs.txt")
    return _build("lfw", root, pairs_file, image_root, options, aligned=False)


def build_xqlfw(*, options: Mapping[str, Any], device: Any = None) -> ImageDataset:
    """Factory of ``xqlfw``: XQLFW's aligned 112 x 112 images with its LFW-format pair list."""
    root = require_root("xqlfw", options, XQLFW_LAYOUT)
    image_root = check_dir(root / str(options.get("images") or "xqlfw_aligned_112"), "xqlfw image folder")
    pairs_file = root / str(options.get("pairs") or "xqlfw_pairs.txt")
    return _build("xqlfw", root, pairs_file, image_root, options, aligned=True)

