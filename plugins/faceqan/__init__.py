"""FaceQAN (Babnik, Peer, Štruc, ICPR 2022): registration only.

The method lives in :mod:`fiqabench_plugins.faceqan.method`.
"""

from __future__ import annotations

from typing import Any

from fiqabench import hookimpl
from fiqabench.api import Option
from fiqabench.options import integer

VERSION = "1"


_positive_int = integer(min=1)


def _copies(text: str) -> int:
    value = int(text)
    if value < 2:
        raise ValueError(f"expected at least 2 copies (the official code asserts k > 1), got {text!r}")
    return value


def _epsilon(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise ValueError(f"expected epsilon in (0, 1) (as the official code asserts), got {text!r}")
    return value


OPTIONS: dict[str, Option] = {
    "k": Option(10, "adversarial examples per image (paper §3; official default 10)", _copies),
    "l": Option(5, "BIM iterations (paper §3; official default 5)", _positive_int),
    "eps": Option(1e-3, "uniform-noise spread and BIM step on the [0, 1] image (official 0.001)", _epsilon),
    "p": Option(5, "exponent of the final score (official default 5)", _positive_int),
    "batch_images": Option(
        16, "images whose k copies go through the model together", _positive_int, affects_result=False
    ),
}


@hookimpl
def fiqabench_register_fiqa_methods(register: Any) -> None:
    register(
        "faceqan",
        "fiqabench_plugins.faceqan.method:FaceQAN",
        version=VERSION,
        summary="Adversarial-noise robustness of the embedding (k = 10 BIM runs of l = 5 steps) x flip symmetry",
        reference="Babnik, Peer, Štruc: FaceQAN, ICPR 2022 (§3); LSIbabnikz/FaceQAN",
        display_name="FaceQAN",
        needs_fr_model="gradients",
        higher_is_better=True,
        options=OPTIONS,
        cost_ms_per_image=35.0,  # about 140x one SynthArcFace forward pass (benchmarks/baselines_speed.md)
    )
