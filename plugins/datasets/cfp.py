"""CFP (Celebrities in Frontal-Profile): the ``cfp-fp`` and ``cfp-ff`` protocols.

Layout under ``root`` (the ``cfp-dataset`` folder; ``research/ecosystem.md`` 4.4):
``Protocol/Pair_list_F.txt`` and ``Pair_list_P.txt`` (lines ``index path``, the path relative to
``Protocol/``, e.g. ``1 ../Data/Images/001/frontal/01.jpg``) and
``Protocol/Split/{FP,FF}/01..10/{same,diff}.txt`` (lines ``i,j``: ``i`` indexes the frontal list,
``j`` the profile list for FP, the frontal list again for FF). Fold ``k`` is folder ``k``;
``same`` pairs are mated. The subject is the folder above ``frontal``/``profile`` (001..500).

CFP's images are loose crops with the face centred; without ``landmarks=FILE`` they get the
labelled ``fixed`` crop.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

from fiqabench.errors import MissingArtifactError

from .base import ImageDataset, ImageProtocol, PairList, SampleIndex, alignment_from_options, require_root
from .protocol import ProtocolFile, check_dir

__all__ = ["build_cfp_ff", "build_cfp_fp"]

VERSION = "1"
LAYOUT = "Protocol/Pair_list_{F,P}.txt, Protocol/Split/{FP,FF}/01..10/{same,diff}.txt and Data/Images/"
#: CFP's crops hold the face with a wide margin; an approximation, labelled.
CFP_CROP_FRACTION = 0.7


def _pair_list(protocol: ProtocolFile) -> dict[int, tuple[str, str, int]]:
    """index -> (path relative to root, subject, line)."""
    out: dict[int, tuple[str, str, int]] = {}
    for line, tokens in protocol.rows():
        protocol.columns(line, tokens, (2,), "index, image path relative to Protocol/")
        index = protocol.integer(line, tokens[0], "index", 1)
        if index in out:
            raise protocol.error(line, f"index {index} already given on line {out[index][2]}", "index")
        rel = posixpath.normpath(posixpath.join("Protocol", tokens[1].replace("\\", "/")))
        parts = rel.split("/")
        if rel.startswith("..") or len(parts) < 3:
            raise protocol.error(line, f"path {tokens[1]!r} does not lead to Data/Images/<id>/<pose>/<file>", "path")
        out[index] = (rel, parts[-3], line)
    if not out:
        raise protocol.error(None, "empty image list")
    return out


def _build(name: str, split: str, options: Mapping[str, Any]) -> ImageDataset:
    root = require_root(name, options, LAYOUT)
    protocol_dir = check_dir(root / "Protocol", f"{name} Protocol folder")
    frontal_file = ProtocolFile(protocol_dir / "Pair_list_F.txt", "frontal image list")
    frontal = _pair_list(frontal_file)
    if split == "FP":
        second_file = ProtocolFile(protocol_dir / "Pair_list_P.txt", "profile image list")
        second = _pair_list(second_file)
    else:
        second_file, second = frontal_file, frontal
    split_dir = check_dir(protocol_dir / "Split" / split, f"{name} split folder")
    samples, pairs = SampleIndex(), PairList()
    files = [frontal_file] + ([second_file] if second_file is not frontal_file else [])
    folds = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if not folds:
        raise MissingArtifactError(f"{split_dir}: no fold folders 01..10 found")
    for fold_index, fold in enumerate(folds):
        for kind, mated in (("same", True), ("diff", False)):
            protocol = ProtocolFile(split_dir / fold / f"{kind}.txt", f"{name} fold list")
            files.append(protocol)
            for line, tokens in protocol.rows(sep=","):
                protocol.columns(line, tokens, (2,), "i,j")
                i = protocol.integer(line, tokens[0], "frontal index", 1)
                j = protocol.integer(line, tokens[1], "second index", 1)
                if i not in frontal:
                    raise protocol.error(line, f"frontal index {i} is not in {frontal_file.path.name}")
                if j not in second:
                    raise protocol.error(line, f"index {j} is not in {second_file.path.name}")
                rel_a, subj_a, _ = frontal[i]
                rel_b, subj_b, _ = second[j]
                if (subj_a == subj_b) != mated:
                    raise protocol.error(line, f"a {'mated' if mated else 'non-mated'} pair of subjects {subj_a} and {subj_b}")
                a = samples.add(rel_a, subj_a, protocol, line)
                b = samples.add(rel_b, subj_b, protocol, line)
                pairs.add(a, b, mated, fold_index, protocol, line)
    a, b, mated_arr, fold_arr = pairs.arrays(bool(options.get("allow_duplicates", False)))
    parsed = ImageProtocol(
        rel_paths=samples.rel_paths, subjects=samples.subjects, a=a, b=b, mated=mated_arr,
        where=samples.where, files=files, folds=fold_arr, extra={"split": split, "folds": folds},
    )
    alignment = alignment_from_options(name, options, samples.rel_paths, aligned=False, default_fraction=CFP_CROP_FRACTION)
    return ImageDataset(name=name, version=VERSION, image_root=root, protocol=parsed, alignment=alignment,
                        workers=int(options.get("workers") or 1))


def build_cfp_fp(*, options: Mapping[str, Any], device: Any = None) -> ImageDataset:
    """Factory of ``cfp-fp`` (frontal-profile, 10 x 700 pairs)."""
    return _build("cfp-fp", "FP", options)


def build_cfp_ff(*, options: Mapping[str, Any], device: Any = None) -> ImageDataset:
    """Factory of ``cfp-ff`` (frontal-frontal, 10 x 700 pairs)."""
    return _build("cfp-ff", "FF", options)
