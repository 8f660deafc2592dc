"""Real FR models: the iResNet family of four papers, and any ONNX model. Registration only.

Registers ``arcface``, ``cosface`` (insightface arcface_torch layout), ``adaface`` (AdaFace
layout) and ``curricularface`` (face.evoLVe / CurricularFace layout), each an iResNet-18/34/50/100
loaded from a user-supplied checkpoint, and ``onnx`` (any ONNX FR model, converted to torch by
:mod:`.onnx_convert`). No weights are shipped or downloaded: the released ones are for
non-commercial research only, so each model needs ``weights=PATH``. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fiqabench import Option, hookimpl
from fiqabench.api import FRCapabilities

#: The domain of all five: 112 x 112 crops aligned to the insightface five-point template.
DOMAIN = "aligned-112-face"

ONNX_VERSION = "1"

ARCH_CHOICES = ("iresnet18", "iresnet34", "iresnet50", "iresnet100")

#: One entry per registered iResNet FR model. ``dropout`` is the p of the layer before the FC in
#: the released training configs: 0 in arcface_torch (``IResNet(dropout=0)``), 0.4 in the AdaFace
#: and face.evoLVe ``output_layer``.
CONFIGS: dict[str, dict[str, Any]] = {
    "arcface": {
        "layout": "arcface_torch",
        "channel_order": "RGB",
        "dropout": 0.0,
        "version": "1",
        "display_name": "ArcFace",
        "summary": "ArcFace iResNet (insightface arcface_torch backbone.pth, e.g. ms1mv3_arcface_r100_fp16)",
        "reference": "Deng et al., ArcFace: Additive Angular Margin Loss for Deep Face Recognition, "
        "CVPR 2019; "
        "deepinsight/insightface recognition/arcface_torch",
        "weights_help": "insightface arcface_torch backbone.pth (or checkpoint_gpu_0.pt)",
    },
    "cosface": {
        "layout": "arcface_torch",
        "channel_order": "RGB",
        "dropout": 0.0,
        "version": "1",
        "display_name": "CosFace",
        "summary": "CosFace iResNet (insightface arcface_torch backbone.pth, "
        "e.g. glint360k_cosface_r100_fp16_0.1)",
        "reference": "Wang et al., CosFace: Large Margin Cosine Loss for Deep Face Recognition, CVPR 2018; "
        "deepinsight/insightface recognition/arcface_torch",
        "weights_help": "insightface arcface_torch backbone.pth (or checkpoint_gpu_0.pt)",
    },
    "adaface": {
        "layout": "adaface",
        "channel_order": "BGR",
        "dropout": 0.4,
        "version": "1",
        "display_name": "AdaFace",
        "summary": "AdaFace IR (mk-minchul/AdaFace Lightning .ckpt, e.g. adaface_ir101_webface12m.ckpt; "
        "BGR input)",
        "reference": "Kim et al., AdaFace: Quality Adaptive Margin for Face Recognition, CVPR 2022; "
        "mk-minchul/AdaFace",
        "weights_help": "AdaFace Lightning .ckpt (or its state dict saved alone)",
    },
    "curricularface": {
        "layout": "curricularface",
        "channel_order": "RGB",
        "dropout": 0.4,
        "version": "1",
        "display_name": "CurricularFace",
        "summary": "CurricularFace IR (HuangYG123/CurricularFace Backbone_IR_101 .pth, face.evoLVe layout)",
        "reference": "Huang et al., CurricularFace: Adaptive Curriculum Learning Loss for Deep Face "
        "Recognition, "
        "CVPR 2020; HuangYG123/CurricularFace",
        "weights_help": "CurricularFace backbone .pth (face.evoLVe IR layout)",
    },
}


def capabilities_for(name: str) -> Callable[[Mapping[str, Any]], FRCapabilities]:
    """Capabilities from options: a head with dropout only where its p is above zero."""
    default = CONFIGS[name]["dropout"]

    def capabilities(options: Mapping[str, Any]) -> FRCapabilities:
        dropout = options.get("dropout")
        p = float(default if dropout is None else dropout)
        return FRCapabilities(
            differentiable=True, has_dropout=p > 0, has_trunk_head=True, unnormalised_embedding=True
        )

    return capabilities


def parse_dropout(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {value}")
    return value


def parse_triplet(text: str) -> tuple[float, float, float]:
    """``"0.5"`` or ``"0.5,0.5,0.5"`` -> three floats (one per channel, in the model's order)."""
    parts = [part for part in str(text).replace(" ", "").split(",") if part]
    values = tuple(float(part) for part in parts)
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise ValueError(f"expected one or three comma-separated numbers, got {text!r}")
    return values  # type: ignore[return-value]


def parse_size(text: str) -> tuple[int, int]:
    """``"112"`` or ``"112x112"`` (height x width) -> (height, width)."""
    parts = str(text).lower().replace(",", "x").split("x")
    values = tuple(int(part) for part in parts if part.strip())
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) <= 0:
        raise ValueError(f"expected a size like 112 or 112x112, got {text!r}")
    return values  # type: ignore[return-value]


def _availability(name: str) -> Callable[[Mapping[str, Any]], str | None]:
    def available(options: Mapping[str, Any]) -> str | None:
        weights = options.get("weights")
        if not weights:
            return f"needs its weights: set --fr-option {name}:weights=PATH"
        if not Path(weights).expanduser().is_file():
            return f"weights file {weights} does not exist (option {name}:weights)"
        return None

    return available


def _iresnet_options(name: str) -> dict[str, Option]:
    config = CONFIGS[name]
    return {
        "weights": Option(None, f"path to the {config['weights_help']} (required)", is_path=True),
        "arch": Option("iresnet100", "depth of the checkpoint's iResNet", choices=ARCH_CHOICES),
        "dropout": Option(
            config["dropout"],
            f"p of the dropout before the FC layer, sampled only by methods that ask for it (SER-FIQ); "
            f"{config['dropout']} is the released training value"
            + ("; p > 0 here is outside what the model was trained with" if config["dropout"] == 0 else ""),
            parse_dropout,
        ),
        "batch_size": Option(64, "images per forward pass", int, affects_result=False),
    }


@hookimpl
def fiqabench_register_fr_models(register: Callable[..., None]) -> None:
    for name, config in CONFIGS.items():
        register(
            name,
            f"fiqabench_plugins.fr_models.model:build_{name}",
            version=config["version"],
            summary=config["summary"],
            domain=DOMAIN,
            display_name=config["display_name"],
            reference=config["reference"],
            options=_iresnet_options(name),
            availability=_availability(name),
            capabilities=capabilities_for(name),
        )
    register(
        "onnx",
        "fiqabench_plugins.fr_models.model:build_onnx",
        version=ONNX_VERSION,
        summary="Any ONNX FR model, converted to a differentiable torch module (no onnxruntime needed)",
        domain=DOMAIN,
        display_name="ONNX",
        reference="ONNX operator set (onnx.ai); insightface model-zoo conventions for the defaults",
        options={
            "weights": Option(None, "path to the .onnx file (required)", is_path=True),
            "size": Option((112, 112), "input size HxW (or one number)", parse_size),
            "channel_order": Option(
                "RGB", "channel order the network expects", str.upper, choices=("RGB", "BGR")
            ),
            "mean": Option(
                (0.5, 0.5, 0.5),
                "per-channel mean on the [0, 1] scale, in the network's channel order (insightface: 0.5); "
                "models with built-in normalisation (MXNet exports with Sub/Mul nodes) take "
                "mean=0 std=0.00392156862745098",
                parse_triplet,
            ),
            "std": Option(
                (0.5, 0.5, 0.5), "per-channel std on the [0, 1] scale (insightface: 0.5)", parse_triplet
            ),
            "batch_size": Option(64, "images per forward pass", int, affects_result=False),
        },
        availability=_availability("onnx"),
        capabilities=FRCapabilities(
            differentiable=True, has_dropout=False, has_trunk_head=False, unnormalised_embedding=True
        ),
    )
