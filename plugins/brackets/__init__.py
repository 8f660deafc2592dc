"""The brackets of every benchmark: ``oracle`` (knows the ground truth) and ``random``, and two
trivial references a FIQA method must beat to mean anything: ``sharpness`` (variance of the
Laplacian of the grey image) and ``embedding-norm`` (the quality FR model's embedding norm).

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
    register(
        "sharpness",
        "fiqabench_plugins.brackets.methods:Sharpness",
        version="1",
        summary="Variance of the Laplacian of the grey image (a trivial image statistic; reference floor)",
        reference="Pech-Pacheco et al., ICPR 2000 (variance of the Laplacian); fiqabench reference method",
        display_name="Sharpness",
        needs_fr_model="none",
        cost_ms_per_image=0.02,
    )
    register(
        "embedding-norm",
        "fiqabench_plugins.brackets.methods:EmbeddingNorm",
        version="1",
        summary="Norm of the quality FR model's unnormalised embedding (what MagFace trains for; reference floor)",
        reference="fiqabench reference method (cf. MagFace, AdaFace: the feature norm as a quality proxy)",
        display_name="Embedding norm",
        needs_fr_model="embeddings",
        cost_ms_per_image=0.3,
    )
