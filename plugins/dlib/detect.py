"""Face detection and ArcFace five-point landmarks with dlib (the ``dlib`` extra).

Route: dlib's detector (HOG + linear SVM, ``get_frontal_face_detector``, or the MMOD CNN
``mmod_human_face_detector.dat``) finds the faces; dlib's 68-point shape predictor (Kazemi &
Sullivan 2014, trained on iBUG 300-W) places the iBUG-68 landmarks; the five ArcFace points are
read off them: eye centres = mean of points 36-41 and 42-47, nose tip = 30, mouth corners = 48
and 54 (0-based iBUG indices), the mapping insightface uses for 68-point landmarks. dlib's
5-point model is not used: its points are the two corners of each eye and the base of the nose
(below the nose tip), so it has no mouth corners and no nose tip, and a fixed mapping from it to
the ArcFace points would have to be learnt.

Licence note: the 68-point model was trained on iBUG 300-W, whose terms exclude commercial use;
the detectors and the ResNet are public domain.

"Left eye" is the eye on the left of the image (the subject's right eye), as in the ArcFace
template. Images are RGB ``uint8`` ``(H, W, 3)``.
"""

from __future__ import annotations

import functools
import threading
from typing import Literal

import numpy as np

from fiqabench.errors import ConfigError, MissingArtifactError

from ._meta import LANDMARKS68_FILE, MMOD_FILE, dlib_missing, models_dir

__all__ = ["detect_landmarks5", "detect_shape68", "landmarks5_from_68"]

Detector = Literal["hog", "cnn"]
Multiple = Literal["largest", "refuse"]

#: HOG/CNN detector upsampling: one pyramid-up halves the smallest face found (HOG window 80 px).
UPSAMPLE = 1


def _dlib():
    # Checked at call time, not import time: pytest's --doctest-modules imports every module,
    # with or without the extra. Availability for listings: fiqabench_plugins.dlib.detection_unavailable.
    reason = dlib_missing()
    if reason is not None:
        raise MissingArtifactError(f"dlib face detection {reason}")
    import dlib

    return dlib


# Datasets decode and align images in worker threads, and sharing one dlib detector between
# threads crashed the process (segmentation fault, measured with the folder dataset's 4
# workers). Each thread gets its own detector (small: HOG 0.75 s to load, MMOD 0.7 MB); the
# 68-point predictor (100 MB, 1-3 ms per face) is shared behind a lock.
_local = threading.local()
_predictor_lock = threading.Lock()


def _detector(kind: str):
    cache = _local.__dict__.setdefault("detectors", {})
    if kind not in cache:
        dlib = _dlib()
        if kind == "hog":
            cache[kind] = dlib.get_frontal_face_detector()
        else:
            cache[kind] = dlib.cnn_face_detection_model_v1(str(models_dir() / MMOD_FILE))
    return cache[kind]


@functools.lru_cache(maxsize=None)
def _predictor():
    dlib = _dlib()
    return dlib.shape_predictor(str(models_dir() / LANDMARKS68_FILE))


def _check(image: np.ndarray, detector: str, multiple: str) -> None:
    if detector not in ("hog", "cnn"):
        raise ConfigError(f"detector must be 'hog' or 'cnn', got {detector!r}")
    if multiple not in ("largest", "refuse"):
        raise ConfigError(f"multiple must be 'largest' or 'refuse', got {multiple!r}")
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ConfigError(f"expected an RGB uint8 image (H, W, 3), got {getattr(image, 'dtype', type(image))} {shape}")


def detect_shape68(image_rgb_uint8: np.ndarray, *, detector: Detector = "hog", multiple: Multiple = "largest"):
    """dlib ``full_object_detection`` (68 points) of the chosen face, or None; and the face count.

    ``multiple="largest"`` keeps the face with the largest detection box; ``"refuse"`` returns
    None when there is more than one face. The count is always the number of faces detected.
    """
    _check(image_rgb_uint8, detector, multiple)
    image = np.ascontiguousarray(image_rgb_uint8)
    found = _detector(detector)(image, UPSAMPLE)
    rects = [d.rect for d in found] if detector == "cnn" else list(found)
    if not rects or (multiple == "refuse" and len(rects) > 1):
        return None, len(rects)
    rect = max(rects, key=lambda r: (r.width() * r.height(), -r.top(), -r.left()))
    predictor = _predictor()
    with _predictor_lock:
        shape = predictor(image, rect)
    return shape, len(rects)


def landmarks5_from_68(points68: np.ndarray) -> np.ndarray:
    """iBUG 68 points ``(68, 2)`` -> ArcFace five points ``(5, 2)`` (see the module docstring)."""
    p = np.asarray(points68, np.float64)
    if p.shape != (68, 2):
        raise ConfigError(f"expected 68 landmarks of shape (68, 2), got {p.shape}")
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])


def detect_landmarks5(
    image_rgb_uint8: np.ndarray, *, detector: Detector = "hog", multiple: Multiple = "largest"
) -> tuple[np.ndarray | None, int]:
    """Five ArcFace landmarks ``(5, 2)`` (x, y) of the chosen face, or None; and the face count.

    Order: left eye centre, right eye centre, nose tip, left mouth corner, right mouth corner.
    None means no face (count 0) or, with ``multiple="refuse"``, several faces (count > 1): the
    caller lists such images, it never drops them silently.
    """
    shape, count = detect_shape68(image_rgb_uint8, detector=detector, multiple=multiple)
    if shape is None:
        return None, count
    points = np.array([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)], np.float64)
    return landmarks5_from_68(points), count
