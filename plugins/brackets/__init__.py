"""The brackets of every benchmark: ``oracle`` (knows the ground truth) and ``random``.

Registration only; the methods live in :mod:`fiqabench_plugins.brackets.methods`.
"""

from __future__ import annotations

from fiqabench import Option, hookimpl


@hookimpl
def fiqabench_register_fiqa_methods(register) -> None:  # type: ignore[no-untyped-def]
    register(
        "oracle",
        "fiqabench_plugins.brackets.methods:Oracle",
        version="1",
        summary="Quality = minus the recorded degradation severity (an upper bracket; synthetic data only)",
        reference="fiqabench embedded benchmark",
        display_name="Oracle",
        needs_fr_model="none",
        domains=("synthetic",),
    )
    register(
        "random",
        "fiqabench_plugins.brackets.methods:RandomQuality",
        version="1",
        summary="Uniform random quality from the per-sample seed (the no-information bracket)",
        reference="fiqabench",
        display_name="Random",
        needs_fr_model="none",
        options={"distribution": Option("uniform", "uniform or normal", choices=("uniform", "normal"))},
    )
