"""Real benchmark datasets read in their native layouts: registration only.

Registers ``lfw``, ``xqlfw``, ``calfw``, ``cplfw``, ``cfp-fp``, ``cfp-ff``, ``adience``, ``ijbc``,
``ijbb``, ``insightface-bin`` and ``folder``. Each takes its location as the option ``root``; a
dataset given without it is refused before any work (its availability names the option and the
layout). The readers (:mod:`.lfw`, :mod:`.calfw`, :mod:`.cfp`, :mod:`.adience`, :mod:`.ijb`,
:mod:`.insightface_bin`, :mod:`.folder`, sharing :mod:`.protocol` and :mod:`.base`) import numpy
and Pillow only when a dataset is built.

:data:`DATA_ROOT_FOLDERS` names the folder each dataset expects under a common data root (for
``--data-root DIR``: ``root = DIR / DATA_ROOT_FOLDERS[name]`` when ``root`` is not given).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fiqabench import Option, hookimpl
from fiqabench.api import parse_bool

__all__ = ["ALIGNED_DOMAIN", "DATA_ROOT_FOLDERS", "LAYOUTS", "LEAKAGE", "PAPER_FR_MODELS"]

#: The domain of every dataset here (kept equal to ``base.ALIGNED_DOMAIN`` by a test).
ALIGNED_DOMAIN = "aligned-112-face"

#: The evaluation FR models of the DifFIQA paper (§4.1); a dataset here is evaluated with the first
#: of them whose weights are given, unless ``--fr-models`` names others.
PAPER_FR_MODELS = ("arcface", "cosface", "adaface", "curricularface")

#: Folder name of each dataset under a data root (README table "Real benchmarks").
DATA_ROOT_FOLDERS: dict[str, str] = {
    "lfw": "lfw",
    "xqlfw": "xqlfw",
    "calfw": "calfw",
    "cplfw": "cplfw",
    "cfp-fp": "cfp-dataset",
    "cfp-ff": "cfp-dataset",
    "adience": "adience",
    "ijbc": "IJBC",
    "ijbb": "IJBB",
    "insightface-bin": "faces_emore",
}

#: What ``root`` must hold, per dataset (also in the missing-root message and the README).
LAYOUTS: dict[str, str] = {
    "lfw": "pairs.txt and lfw/<Name>/<Name>_0001.jpg (or lfw-deepfunneled/, lfw_funneled/)",
    "xqlfw": "xqlfw_pairs.txt and xqlfw_aligned_112/<Name>/<Name>_0001.jpg",
    "calfw": "pairs_CALFW.txt and 'aligned images'/<Name>_0001.jpg",
    "cplfw": "pairs_CPLFW.txt and 'aligned images'/<Name>_1.jpg",
    "cfp-fp": "Protocol/Pair_list_{F,P}.txt, Protocol/Split/FP/01..10/{same,diff}.txt and Data/Images/",
    "cfp-ff": "Protocol/Pair_list_F.txt, Protocol/Split/FF/01..10/{same,diff}.txt and Data/Images/",
    "adience": "fold_0_data.txt .. fold_4_data.txt and aligned/<user_id>/landmark_aligned_face.<face_id>.<image>",
    "ijbc": "loose_crop/<n>.jpg and meta/ijbc_face_tid_mid.txt, ijbc_name_5pts_score.txt, ijbc_template_pair_label.txt",
    "ijbb": "loose_crop/<n>.jpg and meta/ijbb_face_tid_mid.txt, ijbb_name_5pts_score.txt, ijbb_template_pair_label.txt",
    "insightface-bin": "a .bin file (lfw.bin, cfp_fp.bin, ...), or a folder of them with the option name",
    "folder": "one sub-folder per identity: <identity>/<image>.jpg",
}

#: (method, dataset) pairs that a report must mark as leakage: XQLFW's images were selected with
#: SER-FIQ quality scores (Knoche et al., Cross-Quality LFW, FG 2021), so SER-FIQ is not judged
#: fairly on it (issue 10; the DifFIQA paper marks it). Registered as each dataset's ``leakage``
#: (:class:`fiqabench.registry.DatasetSpec`), which puts it on the result rows and in the tables.
LEAKAGE: dict[tuple[str, str], str] = {
    ("ser-fiq", "xqlfw"): "XQLFW was built by selecting images with SER-FIQ quality scores",
}

_MODULE = "fiqabench_plugins.datasets"


def _leakage(dataset: str) -> dict[str, str]:
    return {method: reason for (method, name), reason in LEAKAGE.items() if name == dataset}


def _root_reason(name: str) -> Callable[[Mapping[str, Any]], str | None]:
    def availability(options: Mapping[str, Any]) -> str | None:
        root = options.get("root")
        if not root:
            return f"set --dataset-option {name}:root=DIR, where DIR holds {LAYOUTS[name]}"
        path = Path(str(root)).expanduser()
        if name == "insightface-bin":
            if not (path.is_file() or path.is_dir()):
                return f"root {path} does not exist; it should be {LAYOUTS[name]}"
            return None
        if not path.is_dir():
            return f"root {path} is not a folder; it should hold {LAYOUTS[name]}"
        if name == "folder" and options.get("align") == "dlib":
            from .folder import dlib_unavailable_reason

            return dlib_unavailable_reason()
        return None

    return availability


def _root_option(name: str) -> Option:
    folder = DATA_ROOT_FOLDERS.get(name)
    hint = f" (under a data root: {folder}/)" if folder else ""
    return Option(None, f"the dataset's folder{hint}: {LAYOUTS[name]}")


def _workers() -> Option:
    return Option(4, "threads decoding images (Pillow releases the GIL while decoding)", int, affects_result=False)


def _duplicates() -> Option:
    return Option(False, "keep pairs listed twice (default: a duplicate pair is an error)", parse_bool)


def _alignment(choices: tuple[str, ...], crop_fraction: float, default: str = "auto") -> dict[str, Option]:
    return {
        "align": Option(default, "alignment to the ArcFace 112x112 template: auto (landmarks if given, else "
                        "none for aligned crops, fixed otherwise), " + ", ".join(c for c in choices if c != "auto"),
                        choices=choices),
        "landmarks": Option(None, "file of five landmarks per image: 'id x1 y1 ... x5 y5' (ids as the reader "
                            "names samples)", is_path=True),
        "crop_fraction": Option(crop_fraction, "align=fixed: side of the central square taken as the ArcFace crop, "
                                "as a fraction of the image's shorter side", float),
    }


def _detection() -> dict[str, Option]:
    # Whether align=dlib can run here is said in the option's help, so `fiqabench list datasets`
    # shows it (with the install command) before anyone tries; a run refuses it the same way.
    from fiqabench_plugins.dlib import detection_unavailable

    reason = detection_unavailable()
    state = "available here" if reason is None else f"UNAVAILABLE here: {reason}"
    return {
        "detector": Option("hog", f"align=dlib ({state}): dlib's HOG detector, or its CNN detector (slower, finds "
                           "more profile and small faces)", choices=("hog", "cnn")),
        "multiple": Option("largest", "align=dlib: an image with several faces keeps the largest, or (refuse) "
                           "keeps the fixed crop and is listed like an image without a face",
                           choices=("largest", "refuse")),
    }


def _non_mated() -> dict[str, Option]:
    return {
        "non_mated": Option("1000000", "non-mated pairs drawn at random (a count, or all)"),
        "seed": Option(0, "seed of the non-mated draw", int),
    }


def _with_data_root_folder(register: Callable[..., None]) -> Callable[..., None]:
    """``register`` that declares each dataset's folder under ``--data-root`` (DATA_ROOT_FOLDERS)."""

    def register_dataset(name: str, target: str, **fields: Any) -> None:
        register(name, target, data_root_folder=DATA_ROOT_FOLDERS.get(name), **fields)

    return register_dataset


@hookimpl
def fiqabench_register_datasets(register: Callable[..., None]) -> None:
    register = _with_data_root_folder(register)
    pair_common = {"workers": _workers(), "allow_duplicates": _duplicates()}
    common = dict(domain=ALIGNED_DOMAIN, version="1", default_fr_model=PAPER_FR_MODELS)
    register(
        "lfw", f"{_MODULE}.lfw:build_lfw", **common,
        summary="LFW View 2: 6,000 pairs in 10 folds (pairs.txt; plain or deep-funneled images)",
        display_name="LFW", reference="Huang et al., LFW, UMass TR 07-49, 2007",
        options={"root": _root_option("lfw"),
                 "images": Option("auto", "image folder under root: auto, lfw, lfw-deepfunneled, lfw_funneled"),
                 "pairs": Option("pairs.txt", "pair list under root"),
                 **_alignment(("auto", "fixed", "landmarks"), 0.55), **pair_common},
        availability=_root_reason("lfw"),
    )
    register(
        "xqlfw", f"{_MODULE}.lfw:build_xqlfw", **common,
        summary="XQLFW: LFW pairs with cross-quality images, aligned 112x112",
        display_name="XQLFW", reference="Knoche et al., Cross-Quality LFW, FG 2021", leakage=_leakage("xqlfw"),
        options={"root": _root_option("xqlfw"),
                 "images": Option("xqlfw_aligned_112", "image folder under root"),
                 "pairs": Option("xqlfw_pairs.txt", "pair list under root"),
                 **_alignment(("auto", "none", "fixed", "landmarks"), 0.55), **pair_common},
        availability=_root_reason("xqlfw"),
    )
    for name, title, ref, pairs in (
        ("calfw", "CALFW: cross-age LFW, 6,000 pairs", "Zheng et al., CALFW, arXiv:1708.08197, 2017", "pairs_CALFW.txt"),
        ("cplfw", "CPLFW: cross-pose LFW, 6,000 pairs", "Zheng and Deng, CPLFW, BUPT TR 18-01, 2018", "pairs_CPLFW.txt"),
    ):
        register(
            name, f"{_MODULE}.calfw:build_{name}", **common, summary=title, display_name=name.upper(), reference=ref,
            options={"root": _root_option(name),
                     "images": Option("auto", "image folder under root: auto ('aligned images', images)"),
                     "pairs": Option(pairs, "pair list under root"),
                     **_alignment(("auto", "none", "fixed", "landmarks"), 0.55), **pair_common},
            availability=_root_reason(name),
        )
    for name, title in (("cfp-fp", "CFP frontal-profile: 7,000 pairs in 10 folds"),
                        ("cfp-ff", "CFP frontal-frontal: 7,000 pairs in 10 folds")):
        register(
            name, f"{_MODULE}.cfp:build_{name.replace('-', '_')}", **common, summary=title,
            display_name=name.upper(), reference="Sengupta et al., Frontal to profile face verification in the wild, WACV 2016",
            options={"root": _root_option(name), **_alignment(("auto", "fixed", "landmarks"), 0.7), **pair_common},
            availability=_root_reason(name),
        )
    register(
        "adience", f"{_MODULE}.adience:build_adience", **common,
        summary="Adience: all pairs of 26,580 faces, identity = (user_id, face_id), non-mated pairs sampled",
        display_name="Adience", reference="Eidinger et al., Age and gender estimation of unfiltered faces, TIFS 2014",
        options={"root": _root_option("adience"),
                 "images": Option("aligned", "aligned (landmark_aligned_face) or faces (coarse_tilt_aligned_face)",
                                  choices=("aligned", "faces")),
                 **_non_mated(), **_alignment(("auto", "fixed", "landmarks"), 0.6), "workers": _workers()},
        availability=_root_reason("adience"),
    )
    for name, title, ref in (
        ("ijbc", "IJB-C 1:1 templates: 469,375 images, 15,658,489 template pairs (19,557 mated)",
         "Maze et al., IARPA Janus Benchmark-C, ICB 2018"),
        ("ijbb", "IJB-B 1:1 templates: 227,630 images, 8,010,270 template pairs (10,270 mated)",
         "Whitelam et al., IARPA Janus Benchmark-B, CVPRW 2017"),
    ):
        register(
            name, f"{_MODULE}.ijb:build_{name}", **common, summary=title, display_name=name.upper().replace("IJB", "IJB-"),
            reference=ref, options={"root": _root_option(name), **pair_common},
            availability=_root_reason(name),
        )
    register(
        "insightface-bin", f"{_MODULE}.insightface_bin:build_insightface_bin", **common,
        summary="InsightFace validation .bin files (lfw, cfp_fp, agedb_30, calfw, cplfw, ...), read without running pickles",
        display_name="InsightFace .bin", reference="insightface recognition/arcface_torch/eval/verification.py",
        options={"root": _root_option("insightface-bin"),
                 "name": Option(None, "file name (lfw, cfp_fp, agedb_30, ...) when root is a folder"),
                 "workers": _workers()},
        availability=_root_reason("insightface-bin"),
    )
    register(
        "folder", f"{_MODULE}.folder:build_folder", **common,
        summary="Any folder of face images, one sub-folder per identity (optional pair list)",
        display_name="Folder", reference="fiqabench",
        options={"root": _root_option("folder"),
                 "pairs": Option(None, "pair list 'a b mated' (ids <identity>/<file>); default: all pairs",
                                 is_path=True),
                 **_non_mated(), **_alignment(("none", "fixed", "landmarks", "dlib"), 0.55, default="none"),
                 **_detection(), **pair_common},
        availability=_root_reason("folder"),
    )
