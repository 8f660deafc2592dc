"""Adience: the five ``fold_{0..4}_data.txt`` files, all pairs of their faces.

Format (``research/ecosystem.md`` 4.7): tab-separated with a header naming at least
``user_id``, ``original_image`` and ``face_id``. A face is
``faces/<user_id>/coarse_tilt_aligned_face.<face_id>.<original_image>`` or (``images=aligned``,
the default) ``aligned/<user_id>/landmark_aligned_face.<face_id>.<original_image>``.

Adience has no verification protocol. As in the FIQA papers (SER-FIQ, CR-FIQA's
``extract_adience.py``) every pair of faces is compared; the identity is ``(user_id, face_id)``
(CR-FIQA uses ``face_id`` alone, which merges different people of different albums). All mated
pairs are kept and ``non_mated`` non-mated pairs are drawn with ``seed`` (``all``: every one,
about 350 M for the full set, refused above 50 M comparisons).

The crops hold the face with a wide margin; without ``landmarks=FILE`` they get the labelled
``fixed`` crop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


from .base import (
    ImageDataset,
    ImageProtocol,
    SampleIndex,
    alignment_from_options,
    all_pairs,
    parse_non_mated,
    require_root,
)
from .protocol import ProtocolFile

__all__ = ["build_adience"]

VERSION = "1"
LAYOUT = "fold_0_data.txt .. fold_4_data.txt and aligned/<user_id>/landmark_aligned_face.<face_id>.<image> (or faces/)"
PREFIX = {"aligned": "landmark_aligned_face", "faces": "coarse_tilt_aligned_face"}
#: Adience's crops: the face fills about the central 60 %; an approximation, labelled.
ADIENCE_CROP_FRACTION = 0.6
DEFAULT_NON_MATED = 1_000_000


def parse_folds(files: list[ProtocolFile], folder: str) -> SampleIndex:
    samples = SampleIndex()
    prefix = PREFIX[folder]
    for protocol in files:
        rows = protocol.lines()
        header_line, header_text = next(rows, (1, ""))
        header = [h.strip() for h in header_text.split("\t")]
        needed = ("user_id", "original_image", "face_id")
        lacking = [h for h in needed if h not in header]
        if lacking:
            raise protocol.error(header_line, f"header lacks column(s) {', '.join(lacking)}; expected a tab-separated "
                                 "header starting user_id original_image face_id")
        cols = [header.index(h) for h in needed]
        for line, text in rows:
            if not text.strip():
                continue
            tokens = text.split("\t")
            if len(tokens) != len(header):
                raise protocol.error(line, f"expected {len(header)} tab-separated columns (as the header), found {len(tokens)}")
            user, image, face = (tokens[c].strip() for c in cols)
            protocol.integer(line, face, "face_id", 0)
            if not user or not image:
                raise protocol.error(line, "empty user_id or original_image")
            rel = f"{folder}/{user}/{prefix}.{face}.{image}"
            before = len(samples.rel_paths)
            samples.add(rel, f"{user}/{face}", protocol, line)
            if len(samples.rel_paths) == before:
                first = samples.where[samples.index[rel]]
                raise protocol.error(line, f"face {rel} already listed at {first[0].path.name}:{first[1]}")
    return samples


def build_adience(*, options: Mapping[str, Any], device: Any = None) -> ImageDataset:
    """Factory of ``adience``."""
    root = require_root("adience", options, LAYOUT)
    folder = str(options.get("images") or "aligned")
    if folder not in PREFIX:
        from fiqabench.errors import ConfigError

        raise ConfigError(f"dataset 'adience': images={folder!r}; expected aligned or faces")
    files = [ProtocolFile(root / f"fold_{k}_data.txt", "Adience fold file") for k in range(5)]
    samples = parse_folds(files, folder)
    non_mated = parse_non_mated("adience", options.get("non_mated", DEFAULT_NON_MATED))
    seed = int(options.get("seed") or 0)
    a, b, mated = all_pairs(samples.subjects, non_mated, seed)
    parsed = ImageProtocol(
        rel_paths=samples.rel_paths, subjects=samples.subjects, a=a, b=b, mated=mated,
        where=samples.where, files=files, folds=None,
        extra={"images": folder, "non_mated": non_mated, "seed": seed},
    )
    alignment = alignment_from_options("adience", options, samples.rel_paths, aligned=False,
                                       default_fraction=ADIENCE_CROP_FRACTION)
    return ImageDataset(name="adience", version=VERSION, image_root=root, protocol=parsed, alignment=alignment,
                        workers=int(options.get("workers") or 1))


