"""SER-FIQ (Terhörst, Kolf, Damer, Kirchbuchner, Kuijper, CVPR 2020): registration only.

The method lives in :mod:`fiqabench_plugins.ser_fiq.method`.
"""

from __future__ import annotations

from typing import Any

from fiqabench import hookimpl
from fiqabench.api import Option, parse_bool
from fiqabench.options import integer

VERSION = "1"


_positive_int = integer(min=1)


def _passes(text: str) -> int:
    value = int(text)
    if value < 2:
        raise ValueError(f"expected at least 2 passes (pairwise distances), got {text!r}")
    return value


def _rate(text: str) -> float | None:
    if text.strip().lower() in {"", "none", "model"}:
        return None
    value = float(text)
    if not 0.0 < value < 1.0:
        raise ValueError(f"expected a dropout rate in (0, 1), got {text!r}")
    return value


OPTIONS: dict[str, Option] = {
    "m": Option(100, "stochastic forward passes (paper §3.2; official code T = 100)", _passes),
    "rescale": Option(
        False,
        "apply the official code's normalisation 1 / (1 + exp(-alpha (q - r))) (added to the release in 2021;"
        " monotone, so pAUC does not change)",
        parse_bool,
    ),
    "alpha": Option(130.0, "rescale slope (official: 130)", float),
    "r": Option(0.88, "rescale centre (official: 0.88)", float),
    "dropout_rate": Option(
        None,
        "DEPARTURE from the paper: insert dropout at this rate before the head of an FR model that has no"
        " dropout layer (default: use the model's own dropout; models without one are refused)",
        _rate,
    ),
    "batch_images": Option(
        4, "images whose m passes go through the head together (small: the m x features stay in cache)",
        _positive_int, affects_result=False
    ),
}


@hookimpl
def fiqabench_register_fiqa_methods(register: Any) -> None:
    register(
        "ser-fiq",
        "fiqabench_plugins.ser_fiq.method:SERFIQ",
        version=VERSION,
        summary="Embedding robustness under m = 100 dropout passes (trunk once, head m times)",
        reference="Terhörst et al.: SER-FIQ, CVPR 2020 (§3); pterhoer/FaceImageQuality",
        display_name="SER-FIQ",
        # the model's own dropout in its head; with dropout_rate (a departure) only the trunk/head split
        needs_fr_model=lambda options: "backbone" if options.get("dropout_rate") else "dropout",
        higher_is_better=True,
        options=OPTIONS,
        cost_ms_per_image=1.5,  # about 6x one SynthArcFace forward pass (benchmarks/baselines_speed.md)
    )
