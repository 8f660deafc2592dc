"""Registration of the ``brightness`` FIQA method (kept import-light: no numpy here)."""

from __future__ import annotations

from fiqabench import Option, hookimpl


@hookimpl
def fiqabench_register_fiqa_methods(register):  # type: ignore[no-untyped-def]
    register(
        "brightness",
        "fiqabench_brightness.method:ExposureQuality",
        version="0.1.0",
        summary="Quality = closeness of the mean luminance to a target (exposure heuristic)",
        reference="example plugin; cf. ISO/IEC 29794-5 illumination measures",
        display_name="Exposure",
        needs_fr_model="none",
        options={"target": Option(0.5, "ideal mean luminance in [0, 1]", parse=float)},
    )
