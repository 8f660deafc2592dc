"""DifFIQA(R) / eDifFIQA networks, their official checkpoint layouts and the eDifFIQA(T) ONNX route.

Official weights cannot be downloaded here: every checkpoint is a random-weight network the test
writes in the official layout. Expected key names, shapes and parameter counts are written out
from reading the official code (``DifFIQA/diffiqa(r)/utils.py``, ``eDifFIQA/model/*.py``) and the
figures of the research notes (``diffiqa.md`` 6 and 7.1).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from fiqabench.errors import ConfigError, InputFormatError, MissingArtifactError
from fiqabench_plugins.distilled.networks import (
    EDIFFIQA_VARIANTS,
    DifFIQARNet,
    EDifFIQANet,
    backbone_parameters,
    build_backbone,
    build_network,
    head_parameters,
    load_official,
    load_onnx,
)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared
    yield
    torch.set_num_threads(threads)


def _side(arch: str) -> int:
    return 32 if arch == "embedded" else 112


def _randomised(net: nn.Module, side: int, seed: int) -> nn.Module:
    """Random BN affine parameters, PReLU slopes and head weights, then BN running statistics set
    from one batch (momentum 1), so that outputs differ between inputs through a deep network."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in net.named_parameters():
            module = net.get_submodule(name.rsplit(".", 1)[0])
            if isinstance(module, nn.PReLU):
                tensor.uniform_(0.0, 0.3, generator=g)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm) and name.endswith("bias"):
                tensor.normal_(0.0, 0.1, generator=g)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm) and not name.endswith("features.weight"):
                tensor.uniform_(0.5, 1.5, generator=g)  # features.weight: the official iResNet keeps it at 1
        head = net.linear if isinstance(net, DifFIQARNet) else net.mlp
        for tensor in head.parameters():
            tensor.copy_(torch.randn(tensor.shape, generator=g) / tensor.shape[-1] ** 0.5)
        norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for m in norms:
            m.momentum = 1.0
        net.train()
        net(torch.randn(6, 3, side, side, generator=g))
        for m in norms:
            m.momentum = 0.1
    return net.eval()


def _images(side: int, n: int = 3, seed: int = 99) -> torch.Tensor:
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _one_line(info: pytest.ExceptionInfo, path: Path) -> str:
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


# --------------------------------------------------------------------------------------------
# Official layouts
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "arch"),
    [("diffiqa-r", "iresnet18"), ("ediffiqa", "iresnet18"), ("ediffiqa", "mobilefacenet"), ("diffiqa-r", "embedded")],
)
def test_official_layout_loads_to_equal_outputs(tmp_path: Path, kind: str, arch: str) -> None:
    net = _randomised(build_network(kind, arch), _side(arch), seed=1)
    path = tmp_path / "model.pth"
    torch.save(net.state_dict(), path)
    loaded = load_official(kind, arch, path)
    assert type(loaded) is type(net) and not loaded.training
    x = _images(_side(arch))
    with torch.no_grad():
        want, got = net(x), loaded(x)
    d = 512 if arch != "embedded" else 128
    assert want[0].shape == (3, d) and want[1].shape == (3,)
    assert float(want[1].std()) > 1e-3  # qualities differ between images: the comparison can fail
    for a, b in zip(want, got):
        assert float((a - b).abs().max()) <= 1e-6


def test_state_dict_wrapper_module_prefix_and_half_precision_are_accepted(tmp_path: Path) -> None:
    net = _randomised(build_network("ediffiqa", "mobilefacenet"), 112, seed=2)
    state = net.state_dict()
    path = tmp_path / "wrapped.pth"
    # a training checkpoint: other entries beside "state_dict" are ignored
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    x = _images(112)
    with torch.no_grad():
        assert float((load_official("ediffiqa", "mobilefacenet", path)(x)[1] - net(x)[1]).abs().max()) <= 1e-6
    half = tmp_path / "half.pth"
    torch.save({k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}, half)
    loaded = load_official("ediffiqa", "mobilefacenet", half)
    assert loaded.mlp.l1.weight.dtype == torch.float32
    # files saved before torch 0.4.1 have no BatchNorm step counters
    old = tmp_path / "old.pth"
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, old)
    with torch.no_grad():
        assert float((load_official("ediffiqa", "mobilefacenet", old)(x)[1] - net(x)[1]).abs().max()) <= 1e-6


def _skeleton(net: nn.Module) -> dict[str, torch.Tensor]:
    """A network's keys with one-element tensors: enough for the layout checks, which run first."""
    return {key: torch.zeros(1) for key in net.state_dict()}


def test_wrong_layouts_give_one_line_errors_naming_the_file(tmp_path: Path) -> None:
    t = build_network("ediffiqa", "mobilefacenet")
    path = tmp_path / "ediffiqaT.pth"
    torch.save(t.state_dict(), path)

    with pytest.raises(InputFormatError) as info:
        load_official("diffiqa-r", "mobilefacenet", path)
    assert "has keys base_model.* and mlp.*: an eDifFIQA checkpoint, not DifFIQA(R)" in _one_line(info, path)

    with pytest.raises(InputFormatError) as info:
        load_official("ediffiqa", "iresnet18", path)
    assert "eDifFIQA checkpoint whose backbone is mobilefacenet, not iresnet18" in _one_line(info, path)

    # an iResNet-100 DifFIQA(R) file (keys only; the block count names the depth) read as iresnet50
    with torch.device("meta"):
        r100 = build_network("diffiqa-r", "iresnet100")
    big = tmp_path / "diffiqa(r).pth"
    torch.save(_skeleton(r100), big)
    with pytest.raises(InputFormatError) as info:
        load_official("diffiqa-r", "iresnet50", big)
    assert "has keys base.* and linear.*: a DifFIQA(R) checkpoint whose backbone is iresnet100, not iresnet50" in (
        _one_line(info, big)
    )
    with pytest.raises(InputFormatError) as info:
        load_official("ediffiqa", "iresnet100", big)
    assert "a DifFIQA(R) checkpoint, not eDifFIQA" in _one_line(info, big)

    # a bare FR backbone (r100.pth, the CosFace weights.pth) is not a distilled checkpoint
    bare = tmp_path / "r18.pth"
    torch.save(_skeleton(build_backbone("iresnet18")[0]), bare)
    with pytest.raises(InputFormatError) as info:
        load_official("diffiqa-r", "iresnet18", bare)
    assert "bare iresnet18 backbone without a quality head" in _one_line(info, bare)

    # right layout, wrong shapes: the first mismatching key with both shapes
    state = t.state_dict()
    state["mlp.l1.weight"] = torch.zeros(256, 512)
    odd = tmp_path / "odd.pth"
    torch.save(state, odd)
    with pytest.raises(InputFormatError) as info:
        load_official("ediffiqa", "mobilefacenet", odd)
    assert "mlp.l1.weight is (256, 512), expected (1024, 512)" in _one_line(info, odd)

    for name, content in [("list.pth", [1, 2, 3]), ("foreign.pth", {"weights": torch.zeros(2), "name": "x"}),
                          ("other.pth", {"encoder.w": torch.zeros(2), "decoder.w": torch.zeros(2)})]:
        bad = tmp_path / name
        torch.save(content, bad)
        with pytest.raises(InputFormatError) as info:
            load_official("diffiqa-r", "iresnet100", bad)
        _one_line(info, bad)
    assert "has keys decoder.*, encoder.*, not a DifFIQA(R) checkpoint" in str(info.value)

    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"junk")  # the weights-only unpickler fails with struct.error here
    with pytest.raises(InputFormatError) as info:
        load_official("diffiqa-r", "iresnet100", junk)
    _one_line(info, junk)
    with pytest.raises(MissingArtifactError):
        load_official("diffiqa-r", "iresnet100", tmp_path / "absent.pth")
    with pytest.raises(ConfigError):
        build_network("diffiqa", "iresnet100")
    with pytest.raises(ConfigError):
        load_official("ediffiqa", "iresnet34", path)


def test_iresnet100_layouts_keys_sizes_and_last_100_tensors() -> None:
    """Counted on the meta device: nothing is allocated or run."""
    with torch.device("meta"):
        r = build_network("diffiqa-r", "iresnet100")
        e = build_network("ediffiqa", EDIFFIQA_VARIANTS["L"])
    keys = list(r.state_dict())
    assert keys[:2] == ["base.conv1.weight", "base.bn1.weight"]
    assert keys[-2:] == ["linear.weight", "linear.bias"]
    for key in ("base.layer3.29.bn3.bias", "base.layer4.2.conv2.weight", "base.fc.weight", "base.features.running_var"):
        assert key in keys
    assert "base.layer3.30.bn1.weight" not in keys and "base.layer4.3.bn1.weight" not in keys
    assert r.state_dict()["base.fc.weight"].shape == (512, 512 * 7 * 7)
    assert [k for k in e.state_dict() if k.startswith("mlp.")] == ["mlp.l1.weight", "mlp.l1.bias", "mlp.l2.weight", "mlp.l2.bias"]
    assert {k.replace("base_model.", "base.", 1) for k in e.state_dict() if k.startswith("base_model.")} == {
        k for k in keys if k.startswith("base.")
    }
    # parameter counts of the research notes: 65,156,160 backbone; heads 513 and 526,337
    assert sum(p.numel() for p in r.base.parameters()) == 65_156_160
    assert sum(p.numel() for p in head_parameters(r)) == 513
    assert sum(p.numel() for p in head_parameters(e)) == 526_337
    # the optimiser's backbone group: the last 100 tensors start at layer3.22.bn3.bias, 34.2 M
    # parameters of which fc holds 12.85 M; the frozen features.weight is counted among them
    names = {id(p): n for n, p in r.base.named_parameters()}
    last = backbone_parameters(r, last=100)
    assert len(last) == 100 and names[id(last[0])] == "layer3.22.bn3.bias"
    assert sum(p.numel() for p in last) == 34_236_416 and r.base.fc.weight.numel() + 512 == 12_845_568
    assert names[id(last[-2])] == "features.weight" and not last[-2].requires_grad
    assert len(backbone_parameters(r)) == 463
    assert head_parameters(r)[0] is r.linear.weight


@pytest.mark.parametrize(
    ("variant", "params", "first"),
    [("M", 43_590_848, "layer3.6.bn3.bias"), ("S", 24_025_600, "conv1.weight"), ("T", 1_200_512, "conv_4.model.0.project.bn.weight")],
)
def test_ediffiqa_variants_backbone_sizes_and_optimised_tensors(variant: str, params: int, first: str) -> None:
    with torch.device("meta"):
        net = build_network("ediffiqa", EDIFFIQA_VARIANTS[variant])
    assert sum(p.numel() for p in net.base_model.parameters()) == params  # research notes 7.1
    names = {id(p): n for n, p in net.base_model.named_parameters()}
    assert names[id(backbone_parameters(net, last=100)[0])] == first


def test_mobilefacenet_keys_size_and_normalised_output() -> None:
    net, size = build_backbone("mobilefacenet")
    assert size == 512
    state = net.state_dict()
    # written out from eDifFIQA model/mobilenet.py (Conv_block: conv/bn/prelu, Linear_block: conv/bn,
    # Depth_Wise: conv/conv_dw/project, Residual: model.<i>; expanded widths 128/256/512)
    shapes = {
        "conv1.conv.weight": (64, 3, 3, 3),
        "conv1.prelu.weight": (64,),
        "conv2_dw.conv.weight": (64, 1, 3, 3),
        "conv_23.conv.conv.weight": (128, 64, 1, 1),
        "conv_23.conv_dw.conv.weight": (128, 1, 3, 3),
        "conv_23.project.conv.weight": (64, 128, 1, 1),
        "conv_3.model.3.project.bn.running_var": (64,),
        "conv_34.conv_dw.prelu.weight": (256,),
        "conv_34.project.conv.weight": (128, 256, 1, 1),
        "conv_4.model.5.conv.conv.weight": (256, 128, 1, 1),
        "conv_45.conv_dw.conv.weight": (512, 1, 3, 3),
        "conv_5.model.1.conv_dw.bn.weight": (256,),
        "conv_6_sep.conv.weight": (512, 128, 1, 1),
        "conv_6_dw.conv.weight": (512, 1, 7, 7),
        "conv_6_dw.bn.bias": (512,),
        "linear.weight": (512, 512),
        "bn.running_mean": (512,),
    }
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key
    assert "linear.bias" not in state and "conv_3.model.4.conv.conv.weight" not in state
    assert "conv_4.model.6.conv.conv.weight" not in state and "conv_5.model.2.conv.conv.weight" not in state
    assert len(state) == 333  # also checked against the official class, run outside the repository
    assert sum(p.numel() for p in net.parameters()) == 1_200_512  # "1.20M" (research notes 7.1)
    net = _randomised(EDifFIQANet(net, size), 112, seed=3).base_model
    with torch.no_grad():
        out = net(_images(112))
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-6)


def test_embedded_backbone_is_deterministic_in_train_mode() -> None:
    from fiqabench_plugins.synthetic.model import SynthFRNet

    assert any(isinstance(m, nn.Dropout) and m.p > 0 for m in SynthFRNet().modules())  # the FR model samples it
    net, size = build_backbone("embedded")
    assert size == 128 and all(m.p == 0 for m in net.modules() if isinstance(m, nn.Dropout))
    net.train()
    x = _images(32, n=4)
    with torch.no_grad():
        a, b = net(x), net(x)
    assert a.shape == (4, 128) and torch.equal(a, b)
    # and its keys are SynthArcFace's, so the embedded FR model's weights initialise it
    assert set(net.state_dict()) == set(SynthFRNet().state_dict())


# --------------------------------------------------------------------------------------------
# eDifFIQA(T) through ONNX
# --------------------------------------------------------------------------------------------


class _Quality(nn.Module):
    """What OpenCV's file computes: images -> (N, 1) quality (eDifFIQA with return_feat = 0)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[1][:, None]


def _export(module: nn.Module, path: Path, opset: int, *, dynamic: bool = True, shape=(1, 3, 112, 112)) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(
            module.eval(), torch.zeros(shape), str(path), dynamo=False, opset_version=opset,
            input_names=["input"], output_names=["output"],
            dynamic_axes={"input": {0: "N"}, "output": {0: "N"}} if dynamic else None,
        )


@pytest.mark.parametrize(("opset", "ops"), [(11, {"Erf", "ReduceL2"}), (18, {"Erf", "ReduceL2"}), (20, {"Gelu", "ReduceL2"})])
def test_exported_ediffiqa_t_converts_and_matches_torch(tmp_path: Path, opset: int, ops: set[str]) -> None:
    import onnx

    net = _randomised(build_network("ediffiqa", "mobilefacenet"), 112, seed=4)
    path = tmp_path / f"ediffiqa_t_{opset}.onnx"
    _export(_Quality(net), path, opset)
    assert ops <= {node.op_type for node in onnx.load(str(path)).graph.node}
    converted = load_onnx(path)
    assert not converted.single
    x = _images(112, n=3)
    with torch.no_grad():
        want, got = net(x)[1], converted(x)
    assert got.shape == (3,) and float(want.std()) > 1e-3
    assert float((got - want).abs().max()) <= 1e-4


class _FixedBatch(nn.Module):
    """A head that flattens with ``view(x.size(0), -1)`` (the official MobileFaceNet's Flatten),
    which a static export turns into a Reshape to a fixed batch of one."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 8, 8)
        self.fc = nn.Linear(4 * 14 * 14, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.fc(x.view(x.size(0), -1))


def test_onnx_with_a_fixed_batch_runs_one_image_at_a_time(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = _FixedBatch().eval()
    path = tmp_path / "static.onnx"
    _export(module, path, 17, dynamic=False)
    converted = load_onnx(path)
    assert converted.single
    x = _images(112, n=3)
    with torch.no_grad():
        assert float((converted(x) - module(x)[:, 0]).abs().max()) <= 1e-5
    # a graph that is no quality model (an embedding) is refused in one line
    emb = tmp_path / "embedding.onnx"
    _export(nn.Sequential(nn.Conv2d(3, 2, 8, 8), nn.Flatten()), emb, 17)
    with pytest.raises(ConfigError) as info:
        load_onnx(emb)
    assert "(N,) qualities" in _one_line(info, emb)


@pytest.mark.parametrize("opset", [11, 18])
def test_converter_normalisation_and_activation_ops(tmp_path: Path, opset: int) -> None:
    """The ops other exports of the same network may use: F.normalize (ReduceL2, Clip, Expand),
    a hand-written norm (Pow, ReduceSum, Sqrt), tanh-GELU, mean, max and min."""
    import torch.nn.functional as F
    from fiqabench_plugins.fr_models.onnx_convert import convert

    class Ops(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = F.normalize(x, dim=1)
            b = x / x.pow(2).sum(1, keepdim=True).sqrt()
            c = F.gelu(x, approximate="tanh") + x.mean(1, keepdim=True)
            d = torch.maximum(x, a) - torch.minimum(b, c) + x.sum(dim=(0, 1), keepdim=True)
            return torch.cat([a, b, c, d], 1)

    path = tmp_path / f"ops_{opset}.onnx"
    _export(Ops(), path, opset, shape=(2, 8))
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(5))
    graph = convert(path)
    with torch.no_grad():
        assert float((graph(x) - Ops()(x)).abs().max()) <= 1e-5
