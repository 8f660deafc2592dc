"""The networks of DifFIQA(R) and eDifFIQA and the loaders of their released weights.

Both methods distil DifFIQA's quality labels into one forward pass of an FR backbone with a small
regression head (Babnik et al., "DifFIQA: face image quality assessment using denoising diffusion
probabilistic models", IJCB 2023, section 3.6; eDifFIQA, IEEE T-BIOM 2024). The module structure is
the official code's, so the released state dicts load strictly (research notes ``diffiqa.md`` 6, 7.1):

- :class:`DifFIQARNet` -- ``DifFIQA/diffiqa(r)/utils.py`` ``construct_full_model``: a
  ``torch.nn.Sequential`` of ``base`` (the CosFace iResNet-100) and ``linear`` (``Linear(512, 1)``),
  so the keys of ``diffiqa(r).pth`` are ``base.*`` and ``linear.{weight,bias}``;
- :class:`EDifFIQANet` -- ``eDifFIQA/model/ediffiqa.py``: attributes ``base_model`` and ``mlp``, the
  head ``model/mlp.py`` ``Linear(512, 1024) -> GELU -> Linear(1024, 1)`` (keys ``mlp.l1.*``,
  ``mlp.l2.*``), so the keys of ``ediffiqa{T,S,M,L}.pth`` are ``base_model.*`` and ``mlp.*``.

Both ``forward`` return ``(features, prediction)``: the backbone's raw output (N, d), which
eDifFIQA's representation-consistency loss compares with the frozen FR embedding, and the
quality (N,), higher = better, the raw head output (not clipped), as the official inference saves it.

Backbones (:func:`build_backbone`): the arcface_torch iResNets of ``fiqabench_plugins.fr_models``
(output *not* normalised, as in the official code; ``features.weight`` fixed at 1 and frozen as the
official iResNet does), the eDifFIQA(T) :class:`~.mobilefacenet.MobileFaceNet` (L2-normalised
output), and the embedded world's SynthArcFace network with its head dropout off.

The optimiser's two groups (official ``construct_optimizer``): :func:`head_parameters` at lr 1e-3
and ``backbone_parameters(net, last=100)`` at lr 1e-4 -- the last 100 parameter *tensors* of the
backbone in registration order, frozen ones included in the count (research notes 6 and 9.12).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fiqabench.errors import ConfigError, InputFormatError

__all__ = [
    "ARCHS",
    "DISPLAY_NAMES",
    "EDIFFIQA_VARIANTS",
    "HIDDEN_SIZE",
    "KINDS",
    "MLP",
    "OPENCV_ZOO_ONNX",
    "DifFIQARNet",
    "EDifFIQANet",
    "OnnxQualityNet",
    "assemble",
    "backbone_arch",
    "backbone_parameters",
    "build_backbone",
    "build_network",
    "head_parameters",
    "load_official",
    "load_onnx",
]

ARCHS = ("embedded", "iresnet18", "iresnet50", "iresnet100", "mobilefacenet")
#: eDifFIQA's named configurations (``configs/ediffiqa{T,S,M,L}_config.yaml``; research notes 7.1).
EDIFFIQA_VARIANTS = {"T": "mobilefacenet", "S": "iresnet18", "M": "iresnet50", "L": "iresnet100"}
KINDS = ("diffiqa-r", "ediffiqa")
DISPLAY_NAMES = {"diffiqa-r": "DifFIQA(R)", "ediffiqa": "eDifFIQA"}
_ARTICLES = {"diffiqa-r": "a", "ediffiqa": "an"}
#: Hidden width of eDifFIQA's MLP head (``model/mlp.py`` default, ``hidden_dim: 1024`` in every config).
HIDDEN_SIZE = 1024
#: Embedding size of the official iResNet / MobileFaceNet backbones.
EMBEDDING_SIZE = 512
#: Input side of the official networks (112 x 112 aligned crops; the embedded one takes 32 x 32).
OFFICIAL_SIZE = 112

#: The released eDifFIQA(T) ONNX file (opencv/opencv_zoo
#: ``models/face_image_quality_assessment_ediffiqa``, Git LFS pointer): name, sha256, bytes.
OPENCV_ZOO_ONNX = (
    "ediffiqa_tiny_jun2024.onnx",
    "9426c899cc0f01665240cb7d9e7f98e18e24e456c178326c771a43da289bfc6a",
    7_272_678,
)

#: Top-level key prefixes of each official full state dict.
_PREFIXES = {"diffiqa-r": ("base", "linear"), "ediffiqa": ("base_model", "mlp")}


def _check(kind: str | None = None, arch: str | None = None) -> None:
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"unknown distilled network kind {kind!r}; expected one of {', '.join(KINDS)}")
    if arch is not None and arch not in ARCHS:
        raise ConfigError(f"unknown backbone arch {arch!r}; expected one of {', '.join(ARCHS)}")


def build_backbone(arch: str, feature_size: int | None = None) -> tuple[nn.Module, int]:
    """(backbone, feature size d): ``(N, 3, H, W)`` RGB in [-1, 1] -> ``(N, d)`` raw features.

    ``iresnet18/50/100``: the arcface_torch iResNet, 112 px, d = 512, unnormalised output, dropout 0;
    ``mobilefacenet``: 112 px, d = 512, L2-normalised output; ``embedded``: SynthArcFace
    (``fiqabench_plugins.synthetic.model.SynthFRNet``), 32 px, d = 128, with the head dropout set
    to p = 0 so the distilled backbone is deterministic in train() mode like the iResNets.
    """
    _check(arch=arch)
    if arch == "embedded":
        from fiqabench_plugins.synthetic.model import EMBEDDING_SIZE as SYNTH_SIZE
        from fiqabench_plugins.synthetic.model import SynthFRNet

        net = SynthFRNet()
        for module in net.modules():
            if isinstance(module, nn.Dropout):
                module.p = 0.0
        return net, SYNTH_SIZE
    if arch == "mobilefacenet":
        from .mobilefacenet import MobileFaceNet

        return MobileFaceNet(EMBEDDING_SIZE), EMBEDDING_SIZE
    from fiqabench_plugins.fr_models.iresnet import iresnet

    # every released iResNet embeds to 512; a network distilled here from another FR model may not
    size = int(feature_size or EMBEDDING_SIZE)
    net = iresnet(arch, embedding_size=size, dropout=0.0)
    # Official iresnet.py: the output BatchNorm1d's scale is fixed at 1 and never trained.
    nn.init.constant_(net.features.weight, 1.0)
    net.features.weight.requires_grad_(False)
    return net, size


class DifFIQARNet(nn.Sequential):
    """DifFIQA(R) (paper section 3.6): backbone ``base`` + ``linear`` = ``Linear(d, 1)``."""

    def __init__(self, backbone: nn.Module, feature_size: int) -> None:
        super().__init__(OrderedDict([("base", backbone), ("linear", nn.Linear(feature_size, 1))]))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        features = self.base(x)
        return features, self.linear(features)[:, 0]


class MLP(nn.Module):
    """eDifFIQA's quality head: ``l1`` Linear(d, 1024) -> ``ac`` GELU (exact, erf form) -> ``l2``
    Linear(1024, 1)."""

    def __init__(self, in_dim: int = EMBEDDING_SIZE, hidden_dim: int = HIDDEN_SIZE, out_dim: int = 1) -> None:
        super().__init__()
        self.l1 = nn.Linear(in_dim, hidden_dim)
        self.ac = nn.GELU()
        self.l2 = nn.Linear(hidden_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(self.ac(self.l1(x)))


class EDifFIQANet(nn.Module):
    """eDifFIQA: backbone ``base_model`` + :class:`MLP` head ``mlp``."""

    def __init__(self, backbone: nn.Module, feature_size: int) -> None:
        super().__init__()
        self.base_model = backbone
        self.mlp = MLP(feature_size, HIDDEN_SIZE, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.base_model(x)
        return features, self.mlp(features)[:, 0]


def build_network(kind: str, arch: str) -> DifFIQARNet | EDifFIQANet:
    """A freshly initialised ``diffiqa-r`` or ``ediffiqa`` network on ``arch``."""
    _check(kind, arch)
    backbone, size = build_backbone(arch)
    return assemble(kind, backbone, size)


def assemble(kind: str, backbone: nn.Module, feature_size: int) -> DifFIQARNet | EDifFIQANet:
    """A ``kind`` network around a given backbone (the trainers' copy of an FR model's network)."""
    _check(kind)
    return DifFIQARNet(backbone, feature_size) if kind == "diffiqa-r" else EDifFIQANet(backbone, feature_size)


def backbone_arch(backbone: nn.Module) -> str:
    """The :data:`ARCHS` name of a backbone module, from its parameter names."""
    return _backbone_arch(set(backbone.state_dict()))


def _parts(net: nn.Module) -> tuple[nn.Module, nn.Module]:
    if isinstance(net, DifFIQARNet):
        return net.base, net.linear
    if isinstance(net, EDifFIQANet):
        return net.base_model, net.mlp
    raise TypeError(f"expected a DifFIQARNet or EDifFIQANet, got {type(net).__name__}")


def head_parameters(net: nn.Module) -> list[nn.Parameter]:
    """The head's parameters (the optimiser group at lr 1e-3)."""
    return list(_parts(net)[1].parameters())


def backbone_parameters(net: nn.Module, last: int | None = None) -> list[nn.Parameter]:
    """The backbone's parameters in registration order; ``last=100`` keeps the last 100 tensors as
    the official ``construct_optimizer`` does (``list(params)[-limit:]``: frozen ones count)."""
    params = list(_parts(net)[0].parameters())
    return params if last is None else params[-last:]


# --------------------------------------------------------------------------------------------
# Official checkpoints
# --------------------------------------------------------------------------------------------


def _backbone_arch(keys: set[str]) -> str:
    """The backbone a set of (prefix-free) state-dict keys belongs to, for error messages."""
    from fiqabench_plugins.fr_models.iresnet import ARCHS as IRESNET_BLOCKS

    if "layer1.0.bn1.weight" in keys:
        # the four depths have different block counts, so the count names the depth
        blocks = len({".".join(key.split(".")[:2]) for key in keys if key.startswith("layer")})
        by_blocks = {sum(layers): name for name, layers in IRESNET_BLOCKS.items()}
        return by_blocks.get(blocks, f"an iResNet of {blocks} blocks")
    if "conv_23.conv_dw.conv.weight" in keys:
        return "mobilefacenet"
    if "trunk.0.weight" in keys and "head.2.weight" in keys:
        return "embedded"
    return "unknown"


def _layout(state: Mapping[str, Any]) -> tuple[str | None, str, str]:
    """(kind or None, backbone, what the file looks like in words)."""
    tops = sorted({key.split(".", 1)[0] for key in state})
    for kind, (base, head) in _PREFIXES.items():
        if tops == sorted((base, head)):
            arch = _backbone_arch({key[len(base) + 1 :] for key in state if key.startswith(base + ".")})
            what = f"{_ARTICLES[kind]} {DISPLAY_NAMES[kind]} checkpoint"
            return kind, arch, f"has keys {base}.* and {head}.*: {what}"
    arch = _backbone_arch(set(state))
    if arch != "unknown":
        return None, arch, f"has the keys of a bare {arch} backbone without a quality head: an FR backbone"
    shown = ", ".join(f"{top}.*" for top in tops[:4]) + (", ..." if len(tops) > 4 else "")
    return None, arch, f"has keys {shown or '(none)'}"


def load_official(kind: str, arch: str, path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The official full state dict (``diffiqa(r).pth``; ``ediffiqa{T,S,M,L}.pth``) as a network in
    eval mode, every key matched (strict).

    Read with ``torch.load(weights_only=True)`` (no code in the file runs); a ``{"state_dict": ...}``
    wrapper and a DataParallel ``module.`` prefix are accepted, half-precision tensors become
    float32. A missing file raises :class:`~fiqabench.errors.MissingArtifactError`; a file of
    another kind, another backbone or no state dict at all one line naming the file and what it
    looks like (:class:`~fiqabench.errors.InputFormatError`).
    """
    # CR-FIQA's reader: weights-only load, {"state_dict": ...} unwrapped, "module." stripped,
    # tensors only, every failure one line naming the file
    from fiqabench_plugins.cr_fiqa.official import read_checkpoint
    from fiqabench_plugins.fr_models.checkpoints import state_dict_mismatch

    _check(kind, arch)
    path = Path(path)
    state = {key: value.float() if value.is_floating_point() else value
             for key, value in read_checkpoint(path).items()}
    found, found_arch, description = _layout(state)
    name = DISPLAY_NAMES[kind]
    if found != kind:
        what = name if found is not None else f"{_ARTICLES[kind]} {name} checkpoint"
        raise InputFormatError(path, None, None, f"{description}, not {what}")
    if found_arch != arch:
        raise InputFormatError(path, None, None, f"{description} whose backbone is {found_arch}, not {arch}")
    with torch.device("meta"):  # no time spent initialising weights the file replaces
        net = build_network(kind, arch)
    expected = net.state_dict()
    for key in expected:
        # BatchNorm's step counter (absent from files saved before torch 0.4.1) is never used here
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.tensor(0, dtype=torch.long)
    mismatch = state_dict_mismatch(expected, state)
    if mismatch:
        raise InputFormatError(path, None, None, f"not {_ARTICLES[kind]} {name} {arch} checkpoint: {mismatch}")
    net.load_state_dict(state, strict=True, assign=True)
    return net.to(device).eval()


# --------------------------------------------------------------------------------------------
# eDifFIQA(T) as OpenCV's model zoo ships it
# --------------------------------------------------------------------------------------------


class OnnxQualityNet(nn.Module):
    """A converted quality ONNX graph: ``(N, 3, 112, 112)`` -> ``(N,)`` quality.

    A graph whose batch size was fixed at export (it runs one sample but not two) is run one
    sample at a time.
    """

    def __init__(self, graph: nn.Module, path: Path, *, single: bool) -> None:
        super().__init__()
        self.graph = graph
        self.path = str(path)
        self.single = single

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        out = self.graph(x)
        if out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]
        if out.ndim != 1 or out.shape[0] != x.shape[0]:
            raise ConfigError(
                f"{self.path}: the ONNX output for {x.shape[0]} image(s) has shape {tuple(out.shape)};"
                " a quality model gives (N, 1) or (N,)"
            )
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.single and x.shape[0] != 1:
            return torch.cat([self._run(x[i : i + 1]) for i in range(x.shape[0])])
        return self._run(x)


def load_onnx(path: str | Path, device: str | torch.device = "cpu") -> OnnxQualityNet:
    """eDifFIQA(T) as OpenCV's model zoo distributes it (``ediffiqa_tiny_jun2024.onnx``, see
    :data:`OPENCV_ZOO_ONNX`): input ``(N, 3, 112, 112)`` RGB, ``(x / 255 - 0.5) / 0.5``; output
    ``(N, 1)`` quality (OpenCV zoo ``ediffiqa.py``; research notes 7.6), returned as ``(N,)``.

    The graph runs in torch through ``fiqabench_plugins.fr_models.onnx_convert.convert``. Its
    operator set was checked on eDifFIQA(T) networks exported here by ``torch.onnx.export``
    (legacy exporter, opsets 11, 18 and 20: GELU as Erf or Gelu, the L2 norm as ReduceL2); the
    released file could not be obtained here (a Git LFS object), so *its* operator set is
    unverified: an operator the converter lacks is refused with one line naming it and the node.
    The graph is probed once with a zero batch of two; a graph exported with its batch size fixed
    at one (common for OpenCV's zoo) fails that and then runs one image at a time.
    """
    from fiqabench_plugins.fr_models.onnx_convert import convert

    path = Path(path)
    graph = convert(path).to(device)
    probe = torch.zeros(2, 3, OFFICIAL_SIZE, OFFICIAL_SIZE, device=device)
    failure = ""
    for single in (False, True):
        net = OnnxQualityNet(graph, path, single=single)
        try:
            with torch.no_grad():
                net(probe)
        except (RuntimeError, IndexError, ConfigError) as exc:  # e.g. a batch size fixed in a Reshape
            failure = failure or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            continue
        return net.eval()
    raise ConfigError(
        f"{path}: the ONNX graph does not map (N, 3, 112, 112) images to (N,) qualities ({failure})"
    )
