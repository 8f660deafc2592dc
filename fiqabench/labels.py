"""Quality labels for distillation (DifFIQA(R), eDifFIQA): the file format and its two rules.

``fiqabench label`` computes a method's scores over a training set as an engine task (kind
``label``, cached exactly like a ``quality`` task, so a run and a label job never compute the same
scores twice) and writes them here as a folder of plain data::

    LABELS/labels.csv        index,sample,identity,score,label,split  (one row per image)
    LABELS/provenance.json   method, FR model, options, dataset and its manifest, seed, versions,
                             the normalisation, the split rule, and the sha256 of labels.csv

``score`` is the raw method score, ``label`` its min-max normalisation to [0, 1] over the file
(DifFIQA(R) ``dataset.py`` L55-57), ``split`` is ``validation`` for every 10th image in ascending
score order and ``train`` otherwise (``dataset.py`` L60-62; research notes section 6). Trainers
that keep a subset (eDifFIQA drops identities) re-apply both rules to what they keep, as the
official code does, with :func:`min_max` and :func:`validation_mask`; trainers given several
folders (:func:`check_joinable`) apply them over the union.

Both files are written atomically, ``labels.csv`` first; ``provenance.json`` names its digest, so a
half-written or edited folder is refused when read. Nothing here imports torch.
"""

from __future__ import annotations

import csv
import io
import json
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fiqabench import __version__
from fiqabench.errors import ConfigError, InputFormatError, MissingArtifactError
from fiqabench.files import atomic_write_text, file_digest

FORMAT = "fiqabench-labels"
FORMAT_VERSION = 1
CSV_NAME = "labels.csv"
PROVENANCE_NAME = "provenance.json"
COLUMNS = ("index", "sample", "identity", "score", "label", "split")
#: The official validation split: every 10th item of the score-sorted list (1 / 0.1).
VALIDATION_EVERY = 10


def score_order(scores: np.ndarray) -> np.ndarray:
    """Indices in ascending score order, ties in input order (the official code sorts a dict's
    items by score with Python's stable sort)."""
    return np.argsort(np.asarray(scores, dtype=np.float64), kind="stable")


def min_max(scores: np.ndarray) -> np.ndarray:
    """Min-max normalisation to [0, 1] (all-equal scores: all 0, the official division would be 0/0).

    >>> min_max(np.array([2.0, 4.0, 3.0])).tolist()
    [0.0, 1.0, 0.5]
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return scores.copy()
    lo, hi = float(scores.min()), float(scores.max())
    if hi == lo:
        return np.zeros_like(scores)
    return (scores - lo) / (hi - lo)


def quantiles(scores: np.ndarray) -> np.ndarray:
    """Rank normalisation to [0, 1]: ``(rank - 1) / (N - 1)`` with tied scores sharing their mean
    rank, so the lowest score maps to 0 and the highest to 1 as with :func:`min_max`, but equal
    steps in label order are equal steps in value (a training target for rank agreement).

    >>> quantiles(np.array([2.0, 40.0, 3.0, 3.0])).tolist()
    [0.0, 1.0, 0.5, 0.5]
    """
    from scipy.stats import rankdata

    scores = np.asarray(scores, dtype=np.float64)
    if scores.size < 2:
        return np.zeros_like(scores)
    return (rankdata(scores, method="average") - 1.0) / (scores.size - 1)


#: Label normalisations a trainer can ask for by name: the official min-max, or ranks.
NORMALISATIONS = {"min-max": min_max, "rank": quantiles}


def validation_mask(scores: np.ndarray, every: int = VALIDATION_EVERY) -> np.ndarray:
    """True for every ``every``-th image in ascending score order, starting with the lowest.

    >>> validation_mask(np.array([5.0, 1.0, 3.0]), every=2).tolist()
    [True, True, False]
    """
    order = score_order(scores)
    mask = np.zeros(len(order), dtype=bool)
    mask[order[::every]] = True
    return mask


@dataclass(frozen=True)
class Labels:
    """A label file read back: arrays in index order plus its provenance."""

    folder: Path
    index: np.ndarray  # sample index in the dataset
    samples: tuple[str, ...]
    identities: tuple[str, ...]
    scores: np.ndarray  # raw method scores
    labels: np.ndarray  # min-max normalised over the file
    validation: np.ndarray  # bool
    provenance: Mapping[str, Any]

    def __len__(self) -> int:
        return len(self.index)

    @property
    def dataset(self) -> Mapping[str, Any]:
        """``{"name", "options", "manifest"}`` of the dataset the labels were computed on."""
        return self.provenance["dataset"]


def _csv_text(index: np.ndarray, samples: Sequence[str], identities: Sequence[str], scores: np.ndarray) -> str:
    labels = min_max(scores)
    validation = validation_mask(scores)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row, i in enumerate(index):
        # repr of a float64 round-trips exactly and does not depend on the platform
        writer.writerow([int(i), samples[row], identities[row], repr(float(scores[row])),
                         repr(float(labels[row])), "validation" if validation[row] else "train"])
    return buffer.getvalue()


def write_labels(
    folder: str | Path,
    *,
    samples: Sequence[str],
    identities: Sequence[str],
    scores: np.ndarray,
    provenance: Mapping[str, Any],
) -> Path:
    """Write ``folder/labels.csv`` then ``folder/provenance.json`` (both atomic). Images whose score
    is NaN (a method failure under ``--on-failure lowest``) are left out and counted."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--output {folder}: exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    scores = np.asarray(scores, dtype=np.float64)
    if not (len(samples) == len(identities) == len(scores)):
        raise ValueError("samples, identities and scores differ in length")
    keep = np.flatnonzero(np.isfinite(scores))
    text = _csv_text(keep, [samples[i] for i in keep], [identities[i] for i in keep], scores[keep])
    csv_path = folder / CSV_NAME
    atomic_write_text(csv_path, text)
    kept = scores[keep]
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **provenance,
        "n_images": int(len(scores)),
        "n_labels": int(len(keep)),
        "n_failed": int(len(scores) - len(keep)),
        "score_min": float(kept.min()) if len(kept) else None,
        "score_max": float(kept.max()) if len(kept) else None,
        "normalisation": "min-max to [0, 1] over the labels of this file (DifFIQA(R) dataset.py L55-57)",
        "split": f"validation = every {VALIDATION_EVERY}th image in ascending score order, ties in index order "
                 "(DifFIQA(R) dataset.py L60-62)",
        "versions": {"fiqabench": __version__, "numpy": np.__version__, "python": platform.python_version(),
                     **dict(provenance.get("versions", {}))},
        "labels_sha256": file_digest(csv_path),
    }
    atomic_write_text(folder / PROVENANCE_NAME, json.dumps(document, indent=2, sort_keys=True) + "\n")
    return folder


def read_labels(path: str | Path) -> Labels:
    """Read a label folder (or its ``provenance.json`` / ``labels.csv``); every problem names the
    file, and the line for a bad row."""
    path = Path(path).expanduser()
    folder = path.parent if path.name in (CSV_NAME, PROVENANCE_NAME) else path
    prov_path, csv_path = folder / PROVENANCE_NAME, folder / CSV_NAME
    if not prov_path.is_file():
        raise MissingArtifactError(
            f"labels {folder}: no {PROVENANCE_NAME} (write labels with `fiqabench label ... --output {folder}`)"
        )
    try:
        provenance = json.loads(prov_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFormatError(prov_path, None, None, f"not readable JSON ({exc})") from None
    if not isinstance(provenance, dict) or provenance.get("format") != FORMAT:
        raise InputFormatError(prov_path, None, "format", f"not a {FORMAT} file")
    if provenance.get("format_version") != FORMAT_VERSION:
        raise InputFormatError(prov_path, None, "format_version",
                               f"version {provenance.get('format_version')!r}, this fiqabench reads {FORMAT_VERSION}")
    for name in ("dataset", "labels_sha256", "method"):
        if name not in provenance:
            raise InputFormatError(prov_path, None, name, "missing")
    if not csv_path.is_file():
        raise MissingArtifactError(f"labels {folder}: {CSV_NAME} is missing")
    if file_digest(csv_path) != provenance["labels_sha256"]:
        raise InputFormatError(csv_path, None, None,
                               f"does not match the sha256 in {PROVENANCE_NAME} (edited, or from another label job)")
    index, samples, identities, scores, labels, validation = [], [], [], [], [], []
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if tuple(header or ()) != COLUMNS:
            raise InputFormatError(csv_path, 1, None, f"header must be {','.join(COLUMNS)}")
        for line, row in enumerate(reader, start=2):
            if len(row) != len(COLUMNS):
                raise InputFormatError(csv_path, line, None, f"{len(row)} fields, expected {len(COLUMNS)}")
            try:
                index.append(int(row[0]))
                scores.append(float(row[3]))
                labels.append(float(row[4]))
            except ValueError as exc:
                raise InputFormatError(csv_path, line, None, f"not a number ({exc})") from None
            if row[5] not in ("train", "validation"):
                raise InputFormatError(csv_path, line, "split", f"{row[5]!r} is not train or validation")
            samples.append(row[1])
            identities.append(row[2])
            validation.append(row[5] == "validation")
    return Labels(folder, np.asarray(index, dtype=np.int64), tuple(samples), tuple(identities),
                  np.asarray(scores), np.asarray(labels), np.asarray(validation, dtype=bool), provenance)


def check_joinable(label_sets: Sequence[Labels]) -> None:
    """Several label folders can train one network only if they are one label distribution: the
    same labelling method with the same options and the same FR model, and no image twice (the
    same folder, or two folders of the same dataset). The error names the folder at fault."""
    first = label_sets[0]
    for name, key in (("labelling method and options", "method"), ("FR model", "quality_fr_model")):
        for other in label_sets[1:]:
            if other.provenance.get(key) != first.provenance.get(key):
                raise ConfigError(
                    f"--labels {other.folder}: {name} {json.dumps(other.provenance.get(key), sort_keys=True)} differ"
                    f" from those of {first.folder} ({json.dumps(first.provenance.get(key), sort_keys=True)});"
                    " labels of different teachers are not one training set"
                )
    seen: dict[tuple[str, str], Path] = {}
    for label_set in label_sets:
        for what, value in (("labels", label_set.provenance["labels_sha256"]),
                            ("dataset", str(label_set.dataset.get("manifest")))):
            if (what, value) in seen:
                reason = "are the same labels as" if what == "labels" else "label the same dataset as"
                raise ConfigError(f"--labels {label_set.folder}: {reason} {seen[(what, value)]} (each image would"
                                  " count twice)")
            seen[(what, value)] = label_set.folder
