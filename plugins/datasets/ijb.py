"""IJB-C and IJB-B 1:1 verification in the insightface layout, with templates.

Files under ``root`` (``research/ecosystem.md`` 4.8; insightface
``recognition/arcface_torch/eval_ijbc.py``), ``P`` = ``ijbc`` or ``ijbb``:

- ``loose_crop/<n>.jpg``: loose face crops (not aligned);
- ``meta/P_face_tid_mid.txt``: ``image template_id media_id`` per image (469,375 for IJB-C);
- ``meta/P_name_5pts_score.txt``: ``image x1 y1 ... x5 y5 score`` in the same order: five
  landmarks in pixels of the loose crop (left eye, right eye, nose, mouth corners) and the
  detector's faceness score;
- ``meta/P_template_pair_label.txt``: ``template_id template_id label`` (15,658,489 pairs of
  which 19,557 mated for IJB-C; 8,010,270 of which 10,270 for IJB-B);
- optional 1:N metadata ``P_1N_*.csv`` (in ``meta/`` or ``root``; comma-separated, header,
  columns TEMPLATE_ID, SUBJECT_ID first): gives each template its subject, so uncertainty
  estimates can resample subjects. Without it every template is its own pseudo-subject
  (``subjects_source`` says which).

Each image is aligned by the similarity from its five landmarks onto the ArcFace template
(:mod:`.align`), as the insightface evaluation does. :class:`~fiqabench.api.Templates` carries the
template of each image, its media id (frames of one video share it) and the detector score,
which the engine's insightface pooling uses (:func:`fiqabench.metrics.comparisons.pool_templates`).
Comparisons index templates.

The three meta files are parsed by pandas' C reader (IJB-C in a few seconds, see
``benchmarks/dataset_readers.md``); any malformed line is then named by a line-by-line pass.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fiqabench.api import Templates

from .base import Alignment, ImageDataset, ImageProtocol, LineOf, require_root
from .protocol import ProtocolFile, check_dir, duplicate_pair_rows

__all__ = ["build_ijbb", "build_ijbc", "parse_ijb"]

VERSION = "1"
_COORDS = [f"{axis}{k}" for k in range(1, 6) for axis in ("x", "y")]


def _layout(prefix: str) -> str:
    return (f"loose_crop/<n>.jpg and meta/{prefix}_face_tid_mid.txt, meta/{prefix}_name_5pts_score.txt, "
            f"meta/{prefix}_template_pair_label.txt")


def _line_of(protocol: ProtocolFile, row: int) -> int:
    return int(protocol.line_numbers()[row])


def _template_index(template_ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Index of each wanted id in the sorted ``template_ids`` (-1: unknown).

    A lookup table when the ids are small integers (IJB-C's are below 200,000): a gather is
    about 40 times faster than 15.7 M binary searches.
    """
    low, high = int(min(template_ids[0], wanted.min())), int(max(template_ids[-1], wanted.max()))
    if low >= 0 and high < 50_000_000:
        table = np.full(high + 1, -1, dtype=np.int64)
        table[template_ids] = np.arange(template_ids.size)
        return table[wanted]
    pos = np.minimum(np.searchsorted(template_ids, wanted), template_ids.size - 1)
    return np.where(template_ids[pos] == wanted, pos, -1).astype(np.int64)


def read_subjects(paths: list[Path]) -> tuple[dict[int, str], list[ProtocolFile]]:
    """template id -> subject id from 1:N CSV files (header; TEMPLATE_ID, SUBJECT_ID first)."""
    mapping: dict[int, tuple[str, ProtocolFile, int]] = {}
    files = []
    for path in paths:
        protocol = ProtocolFile(path, "1:N metadata file")
        files.append(protocol)
        lines = protocol.lines()
        header_line, header = next(lines, (1, ""))
        names = [h.strip().upper() for h in next(csv.reader([header]), [])]
        if names[:2] != ["TEMPLATE_ID", "SUBJECT_ID"]:
            raise protocol.error(header_line, f"expected a header starting TEMPLATE_ID,SUBJECT_ID, found {header[:60]!r}")
        for line, text in lines:
            if not text.strip():
                continue
            row = next(csv.reader([text]))
            if len(row) < 2:
                raise protocol.error(line, f"expected at least 2 comma-separated columns, found {len(row)}")
            tid = protocol.integer(line, row[0].strip(), "TEMPLATE_ID")
            subject = protocol.integer(line, row[1].strip(), "SUBJECT_ID")
            known = mapping.get(tid)
            if known is not None and known[0] != str(subject):
                raise protocol.error(line, f"template {tid} has subject {subject} here but {known[0]} at "
                                     f"{known[1].path.name}:{known[2]}")
            mapping.setdefault(tid, (str(subject), protocol, line))
    return {tid: v[0] for tid, v in mapping.items()}, files


def parse_ijb(root: Path, prefix: str, *, allow_duplicates: bool = False) -> tuple[ImageProtocol, np.ndarray, str]:
    """The protocol, the (n, 5, 2) landmarks and where subjects came from."""
    meta = check_dir(root / "meta", f"{prefix} meta folder")
    tid_file = ProtocolFile(meta / f"{prefix}_face_tid_mid.txt", "image-template-media list")
    lmk_file = ProtocolFile(meta / f"{prefix}_name_5pts_score.txt", "landmark and score list")
    pair_file = ProtocolFile(meta / f"{prefix}_template_pair_label.txt", "template pair list")

    tids = tid_file.numeric_table(["image", "template_id", "media_id"], ["s", "i", "i"])
    names = tids["image"]
    if names.size == 0:
        raise tid_file.error(None, "no images listed")
    order = np.argsort(names, kind="stable")
    repeat = np.flatnonzero(names[order][1:] == names[order][:-1])
    if repeat.size:
        row = int(max(order[repeat[0]], order[repeat[0] + 1]))
        raise tid_file.error(_line_of(tid_file, row), f"image {names[row]} is listed twice")

    lmk = lmk_file.numeric_table(["image", *_COORDS, "score"], ["s"] + ["f"] * 11)
    if lmk["image"].size != names.size:
        raise lmk_file.error(None, f"{lmk['image'].size} lines, but {tid_file.path.name} lists {names.size} images")
    mismatch = np.flatnonzero(lmk["image"] != names)
    if mismatch.size:
        row = int(mismatch[0])
        raise lmk_file.error(_line_of(lmk_file, row), f"image {lmk['image'][row]} where {tid_file.path.name} "
                             f"line {_line_of(tid_file, row)} lists {names[row]} (the files must list images in the same order)")
    landmarks = np.stack([lmk[c] for c in _COORDS], axis=1).reshape(-1, 5, 2)
    scores = lmk["score"]

    template_ids, sample_template = np.unique(tids["template_id"], return_inverse=True)
    sample_template = sample_template.reshape(-1).astype(np.int64)

    pairs = pair_file.numeric_table(["template_a", "template_b", "label"], ["i", "i", "i"])
    labels = pairs["label"]
    bad = np.flatnonzero((labels != 0) & (labels != 1))
    if bad.size:
        row = int(bad[0])
        raise pair_file.error(_line_of(pair_file, row), f"expected 1 or 0 (mated or not), found {labels[row]}", "label")
    sides = []
    for field in ("template_a", "template_b"):
        index = _template_index(template_ids, pairs[field])
        unknown = np.flatnonzero(index < 0)
        if unknown.size:
            row = int(unknown[0])
            raise pair_file.error(_line_of(pair_file, row), f"template {pairs[field][row]} has no image in "
                                  f"{tid_file.path.name} ({unknown.size} such pair(s))", field)
        # int32 halves the largest array of the protocol (2 x 15.7 M indices: 125 MiB saved).
        sides.append(index.astype(np.int32) if template_ids.size < 2**31 else index)
    a, b = sides
    same = np.flatnonzero(a == b)
    if same.size:
        row = int(same[0])
        raise pair_file.error(_line_of(pair_file, row), f"template {template_ids[a[row]]} compared with itself")
    if not allow_duplicates:
        repeats = duplicate_pair_rows(a, b)
        if repeats.size:
            row = int(repeats[0])
            raise pair_file.error(_line_of(pair_file, row), f"duplicate pair: templates {template_ids[a[row]]} and "
                                  f"{template_ids[b[row]]} are compared earlier too ({repeats.size} duplicate(s) in all; "
                                  "allow_duplicates=true keeps them)")

    # Parsed and checked: keep only the digests of the two big files (images are named via tid_file).
    lmk_file.release()
    pair_file.release()

    csv_paths = sorted({p for d in (meta, root) for p in d.glob(f"{prefix}_1N_*.csv") if p.is_file()})
    files = [tid_file, lmk_file, pair_file]
    if csv_paths:
        subject_of, csv_files = read_subjects(csv_paths)
        files.extend(csv_files)
        template_subject = [subject_of.get(int(t), f"t{int(t)}") for t in template_ids]
        source = "1:N metadata (" + ", ".join(p.name for p in csv_paths) + ")"
    else:
        template_subject = [f"t{int(t)}" for t in template_ids]
        source = "templates (no 1:N metadata: every template is its own subject)"
    subjects_arr = np.asarray(template_subject, dtype=object)[sample_template]

    templates = Templates(
        ids=tuple(str(int(t)) for t in template_ids),
        sample_template=sample_template,
        media_ids=tids["media_id"],
        detector_scores=scores,
        quality_rule="min",
    )
    rel_paths = names.tolist()
    protocol = ImageProtocol(
        rel_paths=rel_paths, subjects=subjects_arr.tolist(), a=a, b=b, mated=labels.astype(bool),
        where=LineOf(tid_file), files=files, folds=None, templates=templates,
        extra={"subjects_source": source},
    )
    return protocol, landmarks, source


def _build(name: str, prefix: str, options: Mapping[str, Any]) -> ImageDataset:
    root = require_root(name, options, _layout(prefix))
    protocol, landmarks, source = parse_ijb(root, prefix, allow_duplicates=bool(options.get("allow_duplicates", False)))
    image_root = check_dir(root / "loose_crop", f"{name} image folder")
    alignment = Alignment("landmarks", landmarks=landmarks, source=f"{prefix}_name_5pts_score.txt")
    dataset = ImageDataset(name=name, version=VERSION, image_root=image_root, protocol=protocol,
                           alignment=alignment, workers=int(options.get("workers") or 1))
    dataset.subjects_source = source  # type: ignore[attr-defined]
    return dataset


def build_ijbc(*, options: Mapping[str, Any], device: Any = None) -> ImageDataset:
    """Factory of ``ijbc``."""
    return _build("ijbc", "ijbc", options)


def build_ijbb(*, options: Mapping[str, Any], device: Any = None) -> ImageDataset:
    """Factory of ``ijbb``."""
    return _build("ijbb", "ijbb", options)
