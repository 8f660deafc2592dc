"""The real FR models: checkpoints in each project's own key layout, and ONNX conversion.

Each layout test writes a random-weight iResNet-18 checkpoint whose keys are spelled out here from
the official code's module tree (not taken from the plugin's module), loads it through the
registered factory, and compares the embedding of a fixed uint8 image with a functional
re-statement of that project's network and preprocessing written in this file.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fiqabench.errors import ConfigError, InputFormatError, MissingArtifactError

STAGES18 = (2, 2, 2, 2)
WIDTHS = (64, 128, 256, 512)
EMB = 64  # a small embedding keeps the checkpoint small; the loaders read it from the fc weight


# -- official key layouts, written from the projects' module trees ---------------------------------


def _bn(prefix: str, c: int, affine: bool = True) -> dict[str, tuple[int, ...]]:
    keys = {f"{prefix}running_mean": (c,), f"{prefix}running_var": (c,), f"{prefix}num_batches_tracked": ()}
    if affine:
        keys.update({f"{prefix}weight": (c,), f"{prefix}bias": (c,)})
    return keys


def arcface_torch_keys(stages=STAGES18, emb=EMB) -> dict[str, tuple[int, ...]]:
    """insightface arcface_torch ``IResNet``: conv1/bn1/prelu, then
    layerN.i.{bn1,conv1,bn2,prelu,conv2,bn3,downsample}, bn2, fc, features."""
    k: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 3, 3), **_bn("bn1.", 64), "prelu.weight": (64,)}
    cin = 64
    for s, (n, cout) in enumerate(zip(stages, WIDTHS), start=1):
        for b in range(n):
            p = f"layer{s}.{b}."
            c_in = cin if b == 0 else cout
            k.update(_bn(p + "bn1.", c_in))
            k[p + "conv1.weight"] = (cout, c_in, 3, 3)
            k.update(_bn(p + "bn2.", cout))
            k[p + "prelu.weight"] = (cout,)
            k[p + "conv2.weight"] = (cout, cout, 3, 3)
            k.update(_bn(p + "bn3.", cout))
            if b == 0:
                k[p + "downsample.0.weight"] = (cout, c_in, 1, 1)
                k.update(_bn(p + "downsample.1.", cout))
        cin = cout
    k.update(_bn("bn2.", 512))
    k.update({"fc.weight": (emb, 512 * 49), "fc.bias": (emb,)})
    k.update(_bn("features.", emb))
    return k


def evolve_keys(adaface: bool, stages=STAGES18, emb=EMB) -> dict[str, tuple[int, ...]]:
    """AdaFace ``net.Backbone`` / face.evoLVe ``model_irse.Backbone`` (``bottleneck_IR``)."""
    k: dict[str, tuple[int, ...]] = {"input_layer.0.weight": (64, 3, 3, 3), **_bn("input_layer.1.", 64)}
    k["input_layer.2.weight"] = (64,)
    cin, i = 64, 0
    for n, cout in zip(stages, WIDTHS):
        for b in range(n):
            p = f"body.{i}."
            c_in = cin if b == 0 else cout
            if c_in != cout:
                k[p + "shortcut_layer.0.weight"] = (cout, c_in, 1, 1)
                k.update(_bn(p + "shortcut_layer.1.", cout))
            k.update(_bn(p + "res_layer.0.", c_in))
            k[p + "res_layer.1.weight"] = (cout, c_in, 3, 3)
            if adaface:
                k.update(_bn(p + "res_layer.2.", cout))
                k[p + "res_layer.3.weight"] = (cout,)
                k[p + "res_layer.4.weight"] = (cout, cout, 3, 3)
                k.update(_bn(p + "res_layer.5.", cout))
            else:
                k[p + "res_layer.2.weight"] = (cout,)
                k[p + "res_layer.3.weight"] = (cout, cout, 3, 3)
                k.update(_bn(p + "res_layer.4.", cout))
            i += 1
        cin = cout
    k.update(_bn("output_layer.0.", 512))
    k.update({"output_layer.3.weight": (emb, 512 * 49), "output_layer.3.bias": (emb,)})
    k.update(_bn("output_layer.4.", emb, affine=False))
    return k


def random_state(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Every parameter random (also BN statistics), scaled so activations stay O(1)."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith(("running_mean", "bias")):
            state[key] = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1 and key[: -len("weight")] + "running_mean" not in shapes:
            state[key] = 0.25 * torch.rand(shape, generator=g)  # PReLU slopes (no BN statistics beside)
        elif len(shape) == 1:
            state[key] = torch.rand(shape, generator=g) + 0.5  # BN scales
        else:
            fan_in = int(np.prod(shape[1:]))
            state[key] = torch.randn(shape, generator=g) / np.sqrt(fan_in)
    return state


# -- functional re-statements of the three networks ------------------------------------------------


def _f_bn(x, s, p):
    return F.batch_norm(
        x,
        s[p + "running_mean"],
        s[p + "running_var"],
        s.get(p + "weight"),
        s.get(p + "bias"),
        False,
        0.0,
        1e-5,
    )


def _f_prelu(x, w):
    return torch.where(x > 0, x, x * w.view(1, -1, *([1] * (x.ndim - 2))))


def arcface_torch_forward(s, x, stages=STAGES18):
    x = _f_prelu(_f_bn(F.conv2d(x, s["conv1.weight"], padding=1), s, "bn1."), s["prelu.weight"])
    for st, n in enumerate(stages, start=1):
        for b in range(n):
            p = f"layer{st}.{b}."
            stride = 2 if b == 0 else 1
            out = F.conv2d(_f_bn(x, s, p + "bn1."), s[p + "conv1.weight"], padding=1)
            out = _f_prelu(_f_bn(out, s, p + "bn2."), s[p + "prelu.weight"])
            out = _f_bn(F.conv2d(out, s[p + "conv2.weight"], stride=stride, padding=1), s, p + "bn3.")
            short = (
                _f_bn(F.conv2d(x, s[p + "downsample.0.weight"], stride=stride), s, p + "downsample.1.")
                if b == 0
                else x
            )
            x = out + short
    x = _f_bn(x, s, "bn2.").flatten(1)
    return _f_bn(x @ s["fc.weight"].T + s["fc.bias"], s, "features.")


def evolve_forward(s, x, adaface: bool, stages=STAGES18):
    x = _f_prelu(
        _f_bn(F.conv2d(x, s["input_layer.0.weight"], padding=1), s, "input_layer.1."),
        s["input_layer.2.weight"],
    )
    i = 0
    for n in stages:
        for b in range(n):
            p = f"body.{i}."
            stride = 2 if b == 0 else 1
            r = F.conv2d(_f_bn(x, s, p + "res_layer.0."), s[p + "res_layer.1.weight"], padding=1)
            if adaface:
                r = _f_prelu(_f_bn(r, s, p + "res_layer.2."), s[p + "res_layer.3.weight"])
                r = _f_bn(
                    F.conv2d(r, s[p + "res_layer.4.weight"], stride=stride, padding=1), s, p + "res_layer.5."
                )
            else:
                r = _f_prelu(r, s[p + "res_layer.2.weight"])
                r = _f_bn(
                    F.conv2d(r, s[p + "res_layer.3.weight"], stride=stride, padding=1), s, p + "res_layer.4."
                )
            if p + "shortcut_layer.0.weight" in s:
                short = _f_bn(
                    F.conv2d(x, s[p + "shortcut_layer.0.weight"], stride=stride), s, p + "shortcut_layer.1."
                )
            else:  # MaxPool2d(1, stride)
                short = x[:, :, ::stride, ::stride]
            x = r + short
            i += 1
    x = _f_bn(x, s, "output_layer.0.").flatten(1)
    return _f_bn(x @ s["output_layer.3.weight"].T + s["output_layer.3.bias"], s, "output_layer.4.")


def fixed_images(n: int = 2) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, size=(n, 112, 112, 3), dtype=np.uint8)


def to_input(images: np.ndarray, bgr: bool) -> torch.Tensor:
    """The projects' own preprocessing: ((x / 255) - 0.5) / 0.5 in RGB, or BGR for AdaFace."""
    x = images[..., ::-1] if bgr else images
    x = (x.astype(np.float64) / 255.0 - 0.5) / 0.5
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).float()


def _install_fake_lightning(monkeypatch: pytest.MonkeyPatch) -> type:
    """A module path ``pytorch_lightning.utilities.parsing.AttributeDict``, as Lightning pickles it."""
    root = types.ModuleType("pytorch_lightning")
    utilities = types.ModuleType("pytorch_lightning.utilities")
    parsing = types.ModuleType("pytorch_lightning.utilities.parsing")

    class AttributeDict(dict):
        pass

    AttributeDict.__module__ = "pytorch_lightning.utilities.parsing"
    AttributeDict.__qualname__ = "AttributeDict"
    parsing.AttributeDict = AttributeDict  # type: ignore[attr-defined]
    for mod in (root, utilities, parsing):
        monkeypatch.setitem(sys.modules, mod.__name__, mod)
    return AttributeDict


def write_checkpoint(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict]:
    if name in ("arcface", "cosface"):
        state = random_state(arcface_torch_keys(), seed=1)
        path = tmp_path / "backbone.pth"
        torch.save(state, path)  # arcface_torch: torch.save(backbone.module.state_dict(), ...)
    elif name == "curricularface":
        state = random_state(evolve_keys(adaface=False), seed=2)
        path = tmp_path / "Backbone_IR_18_Epoch_24_checkpoint.pth"
        torch.save(state, path)
    else:
        state = random_state(evolve_keys(adaface=True), seed=3)
        path = tmp_path / "adaface_ir18.ckpt"
        with monkeypatch.context() as patch:
            attribute_dict = _install_fake_lightning(patch)
            lightning = {f"model.{k}": v for k, v in state.items()}
            lightning["head.kernel"] = torch.randn(EMB, 10)  # the AdaFace margin head's class centres
            torch.save(
                {
                    "epoch": 25,
                    "global_step": 1000,
                    "pytorch-lightning_version": "1.8.6",
                    "state_dict": lightning,
                    "hyper_parameters": attribute_dict(arch="ir_18", head="adaface", m=0.4, h=0.333),
                    "lr_schedulers": [{"milestones": collections.Counter({12: 1, 20: 1}), "gamma": 0.1}],
                    "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]}],
                },
                path,
            )
    return path, state


def reference(name: str, state: dict, images: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        if name in ("arcface", "cosface"):
            return arcface_torch_forward(state, to_input(images, bgr=False))
        if name == "curricularface":
            return evolve_forward(state, to_input(images, bgr=False), adaface=False)
        return evolve_forward(state, to_input(images, bgr=True), adaface=True)


def _registry():
    from fiqabench.plugins import get_plugin_manager
    from fiqabench.registry import Registry

    return Registry(get_plugin_manager(entry_points=False, builtins=("fiqabench_plugins.fr_models",)))


# -- tests -----------------------------------------------------------------------------------------


def test_registration_imports_neither_numpy_nor_torch() -> None:
    code = (
        "import sys, fiqabench_plugins.fr_models as s; print('numpy' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_registered_without_weights_names_the_option() -> None:
    reg = _registry()
    for name in ("arcface", "cosface", "adaface", "curricularface", "onnx"):
        entry = reg.get("fr_model", name)
        assert entry.domain == "aligned-112-face"
        reason = entry.unavailable_reason()
        assert reason == f"needs its weights: set --fr-option {name}:weights=PATH"
        assert entry.options["weights"].is_path
    assert reg.get("fr_model", "arcface").options["arch"].default == "iresnet100"
    missing = reg.get("fr_model", "adaface").unavailable_reason({"weights": "/nonexistent/x.ckpt"})
    assert missing is not None and "/nonexistent/x.ckpt" in missing and "\n" not in missing


def test_capabilities_follow_the_dropout_of_each_project() -> None:
    reg = _registry()
    caps = {
        name: reg.get("fr_model", name).capabilities
        for name in ("arcface", "adaface", "curricularface")
    }
    # arcface_torch releases train with dropout p = 0: no dropout to sample unless the user asks.
    assert not caps["arcface"]({"dropout": 0.0}).has_dropout
    assert caps["arcface"]({"dropout": 0.2}).has_dropout
    assert caps["adaface"]({"dropout": 0.4}).has_dropout and caps["curricularface"]({}).has_dropout
    assert all(c({}).has_trunk_head and c({}).differentiable for c in caps.values())


@pytest.mark.parametrize("name", ["arcface", "adaface", "curricularface"])
def test_official_layout_loads_strictly_and_matches_a_functional_restatement(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fiqabench_plugins.fr_models import model as fr_model
    from fiqabench_plugins.fr_models.checkpoints import read_checkpoint, state_dict_for

    torch.manual_seed(0)
    path, state = write_checkpoint(name, tmp_path, monkeypatch)
    # Every key of the official layout is consumed and nothing else is expected.
    layout = {"arcface": "arcface_torch", "cosface": "arcface_torch"}.get(name, name)
    loaded = state_dict_for(layout, read_checkpoint(path), path)
    from fiqabench_plugins.fr_models.checkpoints import build_network

    net = build_network(layout, "iresnet18", embedding_size=EMB, dropout=0.0)
    result = net.load_state_dict(loaded, strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == []

    fr = getattr(fr_model, f"build_{name}")(options={"weights": str(path), "arch": "iresnet18"}, device="cpu")
    assert fr.embedding_size == EMB and fr.input_space.size == (112, 112)
    images = fixed_images(1)
    got = torch.from_numpy(fr.embed(images))
    want = reference(name, state, images)
    scale = max(1.0, float(want.abs().max()))
    assert float((got - want).abs().max()) <= 1e-5 * scale
    # trunk/head split gives the same embedding; the head's dropout is what SER-FIQ samples.
    with torch.no_grad():
        feats = fr.trunk(fr.preprocess(images))
        assert feats.shape == (1, 512, 7, 7)
        assert float((fr.head(feats) - got).abs().max()) <= 1e-5 * scale
        assert fr.capabilities.has_dropout == (name in ("adaface", "curricularface"))
        if fr.capabilities.has_dropout:
            assert not torch.allclose(fr.head(feats, dropout=True), got)


def test_cosface_is_the_arcface_torch_layout_and_input_space() -> None:
    from fiqabench_plugins.fr_models import CONFIGS
    from fiqabench_plugins.fr_models.model import INPUT_SPACES

    assert CONFIGS["cosface"]["layout"] == CONFIGS["arcface"]["layout"] == "arcface_torch"
    assert INPUT_SPACES["cosface"] == INPUT_SPACES["arcface"]
    assert INPUT_SPACES["arcface"].channel_order == "RGB" and INPUT_SPACES["adaface"].channel_order == "BGR"
    assert INPUT_SPACES["curricularface"].channel_order == "RGB"
    assert all(
        s.mean == (0.5,) * 3 and s.std == (0.5,) * 3 and s.size == (112, 112) for s in INPUT_SPACES.values()
    )


def test_wrong_arch_and_wrong_layout_are_one_line_errors(tmp_path: Path) -> None:
    from fiqabench_plugins.fr_models.model import build_arcface, build_curricularface

    path = tmp_path / "backbone.pth"
    torch.save(random_state(arcface_torch_keys(), seed=4), path)
    with pytest.raises(ConfigError) as wrong_arch:
        build_arcface(options={"weights": str(path), "arch": "iresnet34"})
    message = str(wrong_arch.value)
    assert "\n" not in message and "missing key" in message and "arcface_torch iresnet18" in message
    with pytest.raises(ConfigError, match="looks like arcface_torch iresnet18"):
        build_curricularface(options={"weights": str(path), "arch": "iresnet18"})
    with pytest.raises(MissingArtifactError, match="curricularface:weights=PATH"):
        build_curricularface(options={})


def test_unsafe_pickle_is_refused_in_one_line(tmp_path: Path) -> None:
    from fiqabench_plugins.fr_models.model import build_cosface

    path = tmp_path / "evil.pth"
    torch.save({"state": collections.defaultdict(int)}, path)  # a global the safe unpickler refuses
    with pytest.raises(InputFormatError) as info:
        build_cosface(options={"weights": str(path), "arch": "iresnet18"})
    assert "\n" not in str(info.value) and "weights_only" in str(info.value)


def test_iresnet_builder_has_the_arcface_torch_layout_and_sizes() -> None:
    from fiqabench_plugins.fr_models.iresnet import iresnet

    for arch, stages in [("iresnet18", (2, 2, 2, 2)), ("iresnet34", (3, 4, 6, 3))]:
        net = iresnet(arch)
        shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        assert shapes == arcface_torch_keys(stages, emb=512)
    with torch.device("meta"):  # iResNet-50/100 without allocating their weights
        for arch, stages in [("iresnet50", (3, 4, 14, 3)), ("r100", (3, 13, 30, 3))]:
            net = iresnet(arch, dropout=0.0)
            assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == arcface_torch_keys(
                stages, emb=512
            )
    assert isinstance(iresnet("iresnet18", dropout=0.3).dropout, torch.nn.Dropout)


# -- ONNX ------------------------------------------------------------------------------------------


def _small_iresnet() -> torch.nn.Module:
    """An iResNet-style network with tiny widths (the ONNX test's torch reference)."""
    from fiqabench_plugins.fr_models.iresnet import IResNet

    net = IResNet((1, 2, 1, 1), widths=(8, 8, 16, 16, 32), embedding_size=16).eval()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for key, tensor in net.state_dict().items():
            # Random everywhere: the legacy exporter folds identical constants into Identity nodes.
            if key.endswith("num_batches_tracked"):
                continue
            if key.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=g) + 0.5)
            else:
                tensor.copy_(0.3 * torch.randn(tensor.shape, generator=g))
    return net


def _export(net: torch.nn.Module, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(
            net,
            torch.zeros(1, 3, 112, 112),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["input.1"],
            output_names=["embedding"],
            dynamic_axes={"input.1": {0: "None"}},
        )


def test_onnx_export_converts_matches_torch_and_gives_true_gradients(tmp_path: Path) -> None:
    import onnx
    from fiqabench_plugins.fr_models.model import build_onnx
    from fiqabench_plugins.fr_models.onnx_convert import convert

    net = _small_iresnet()
    path = tmp_path / "r_tiny.onnx"
    _export(net, path)
    onnx.checker.check_model(onnx.load(str(path)))
    x = torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    graph = convert(path)
    with torch.no_grad():
        assert float((graph(x) - net(x)).abs().max()) <= 1e-4

    # Gradients w.r.t. the input: equal to torch's, and to central finite differences (float64).
    xr = x[:1].clone().requires_grad_(True)
    w = torch.randn(16, generator=torch.Generator().manual_seed(1))
    (graph(xr) @ w).sum().backward()
    xt = x[:1].clone().requires_grad_(True)
    (net(xt) @ w).sum().backward()
    assert torch.allclose(xr.grad, xt.grad, rtol=1e-3, atol=1e-5 * float(xt.grad.abs().max()))
    g64 = graph.double()
    x64 = x[:1].double().requires_grad_(True)
    w64 = w.double()
    (g64(x64) @ w64).sum().backward()
    rng = torch.Generator().manual_seed(2)
    eps = 1e-7  # small: PReLU kinks crossed by the step would bias a larger one
    for _ in range(2):
        v = torch.randn(x64.shape, generator=rng, dtype=torch.float64)
        with torch.no_grad():
            fd = ((g64(x64 + eps * v) @ w64).sum() - (g64(x64 - eps * v) @ w64).sum()) / (2 * eps)
        analytic = (x64.grad * v).sum()
        assert abs(float(fd - analytic)) <= 1e-6 * max(1.0, abs(float(analytic)))

    # Through the registered factory: insightface defaults (RGB, (x - 127.5) / 127.5).
    fr = build_onnx(options={"weights": str(path)})
    images = fixed_images(2)
    with torch.no_grad():
        want = net(to_input(images, bgr=False))
    assert float((torch.from_numpy(fr.embed(images)) - want).abs().max()) <= 1e-4
    assert fr.capabilities.differentiable and not fr.capabilities.has_dropout


def _node_graph(path: Path, nodes, inits, out_shape) -> None:
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    Path(path).write_bytes(model.SerializeToString())


def test_onnx_built_in_normalisation_and_shape_ops(tmp_path: Path) -> None:
    """An MXNet-style graph: Sub/Mul normalisation, MaxPool, Transpose, Shape-Gather-Concat-Reshape,
    MatMul."""
    from fiqabench_plugins.fr_models.onnx_convert import convert
    from onnx import helper

    rng = np.random.default_rng(0)
    inits = {
        "mean": np.array(127.5, np.float32),
        "scale": np.array(0.0078125, np.float32),
        "w": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
        "slope": rng.uniform(0, 0.3, size=(4,)).astype(np.float32),
        "zero": np.array([0], np.int64),
        "minus1": np.array([-1], np.int64),
        "proj": rng.normal(size=(64, 5)).astype(np.float32),
        "div": np.array(2.0, np.float32),
    }
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["a"], name="_minusscalar0"),
        helper.make_node("Mul", ["a", "scale"], ["b"], name="_mulscalar0"),
        helper.make_node("Conv", ["b", "w"], ["c"], name="conv0", pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("PRelu", ["c", "slope"], ["d"], name="relu0"),
        helper.make_node("MaxPool", ["d"], ["e"], name="pool0", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Transpose", ["e"], ["f"], name="t0", perm=[0, 2, 3, 1]),
        helper.make_node("Shape", ["f"], ["s"], name="shape0"),
        helper.make_node("Gather", ["s", "zero"], ["n"], name="gather0", axis=0),
        helper.make_node("Concat", ["n", "minus1"], ["shape"], name="concat0", axis=0),
        helper.make_node("Reshape", ["f", "shape"], ["g"], name="reshape0"),
        helper.make_node("MatMul", ["g", "proj"], ["h"], name="fc0"),
        helper.make_node("Div", ["h", "div"], ["y"], name="div0"),
    ]
    path = tmp_path / "mx.onnx"
    _node_graph(path, nodes, inits, ["N", 5])
    x = torch.from_numpy(rng.uniform(0, 255, size=(2, 3, 8, 8)).astype(np.float32))
    # The same network, restated with torch functions.
    t = {k: torch.from_numpy(v) for k, v in inits.items()}
    c = F.conv2d((x - 127.5) * 0.0078125, t["w"], padding=1)
    d = torch.where(c > 0, c, c * t["slope"].view(1, -1, 1, 1))
    want = F.max_pool2d(d, 2).permute(0, 2, 3, 1).reshape(2, -1) @ t["proj"] / 2.0
    with torch.no_grad():
        got = convert(path)(x)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-5)


def test_onnx_unsupported_operator_is_named(tmp_path: Path) -> None:
    from fiqabench_plugins.fr_models.onnx_convert import convert
    from onnx import helper

    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="r"),
        helper.make_node("LpNormalization", ["a"], ["y"], name="l2norm_1", axis=1, p=2),
    ]
    path = tmp_path / "bad.onnx"
    _node_graph(path, nodes, {}, ["N", 3, 8, 8])
    with pytest.raises(ConfigError) as info:
        convert(path)
    message = str(info.value)
    assert "\n" not in message and "LpNormalization" in message and "'l2norm_1'" in message
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all \x00\xff")
    with pytest.raises(InputFormatError):
        convert(tmp_path / "junk.onnx")


@pytest.mark.slow  # two CLI processes: about 25 s on the shared 2-core VM
def test_cli_run_with_a_real_layout_checkpoint(tmp_path: Path) -> None:
    """The registered model runs end to end through ``fiqabench run`` (resized synthetic crops)."""
    from tests.conftest import load_json, run_cli

    weights = tmp_path / "backbone.pth"
    torch.save(random_state(arcface_torch_keys(), seed=6), weights)
    common = [
        "run",
        "--datasets",
        "synthetic",
        "--dataset-option",
        "synthetic:identities=10",
        "--dataset-option",
        "synthetic:images_per_identity=3",
        "--dataset-option",
        "synthetic:non_mated=1000",
        "--fmr",
        "1e-2",
        "--methods",
        "random",
        "--fr-models",
        "arcface",
        "--allow-domain-mismatch",
        "--cache-dir",
        str(tmp_path / "cache"),
        "-q",
    ]
    missing = run_cli(*common, "--output", str(tmp_path / "none"))
    assert missing.returncode == 2
    assert (
        "set --fr-option arcface:weights=PATH" in missing.stderr
        and len(missing.stderr.strip().splitlines()) == 1
    )
    done = run_cli(
        *common,
        "--output",
        str(tmp_path / "out"),
        "--fr-option",
        f"arcface:weights={weights}",
        "--fr-option",
        "arcface:arch=iresnet18",
    )
    assert done.returncode == 0, done.stderr
    results = load_json(tmp_path / "out" / "results.json")
    assert {row["fr_model"] for row in results["results"]} == {"arcface"}


def test_onnx_pooling_gemm_and_constant_ops(tmp_path: Path) -> None:
    """MobileFaceNet-style tail: pools, Squeeze, Gemm(transB, alpha, beta), BN on (N, C), Constant, Clip."""
    from fiqabench_plugins.fr_models.onnx_convert import convert
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(1)
    inits = {
        "gw": rng.normal(size=(6, 3)).astype(np.float32),
        "gb": rng.normal(size=(6,)).astype(np.float32),
        "axes": np.array([2, 3], np.int64),
        "bn_s": rng.uniform(0.5, 1.5, size=(6,)).astype(np.float32),
        "bn_b": rng.normal(size=(6,)).astype(np.float32),
        "bn_m": rng.normal(size=(6,)).astype(np.float32),
        "bn_v": rng.uniform(0.5, 1.5, size=(6,)).astype(np.float32),
        "lo": np.array(-0.5, np.float32),
    }
    hi = numpy_helper.from_array(np.array(0.7, np.float32), "hi_value")
    nodes = [
        helper.make_node(
            "AveragePool", ["x"], ["a"], name="avg", kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Relu", ["a"], ["b"], name="relu"),
        helper.make_node("GlobalAveragePool", ["b"], ["c"], name="gap"),
        helper.make_node("Squeeze", ["c", "axes"], ["d"], name="sq"),
        helper.make_node("Gemm", ["d", "gw", "gb"], ["e"], name="gemm", transB=1, alpha=0.5, beta=2.0),
        helper.make_node(
            "BatchNormalization", ["e", "bn_s", "bn_b", "bn_m", "bn_v"], ["f"], name="bn", epsilon=1e-3
        ),
        helper.make_node("Constant", [], ["hi"], name="const", value=hi),
        helper.make_node("Clip", ["f", "lo", "hi"], ["g"], name="clip"),
        helper.make_node("Identity", ["g"], ["y"], name="id"),
    ]
    path = tmp_path / "tail.onnx"
    _node_graph(path, nodes, inits, ["N", 6])
    x = torch.from_numpy(rng.normal(size=(2, 3, 8, 8)).astype(np.float32))
    t = {k: torch.from_numpy(v) for k, v in inits.items()}
    a = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)  # ONNX's default: padding not counted
    d = torch.relu(a).mean(dim=(2, 3))
    e = 0.5 * d @ t["gw"].T + 2.0 * t["gb"]
    f = (e - t["bn_m"]) / torch.sqrt(t["bn_v"] + 1e-3) * t["bn_s"] + t["bn_b"]
    want = f.clamp(-0.5, 0.7)
    with torch.no_grad():
        got = convert(path)(x)
    assert torch.allclose(got, want, atol=1e-5)


def test_state_dict_unwrapping_of_each_project() -> None:
    from fiqabench_plugins.fr_models.checkpoints import state_dict_for

    w = torch.ones(2, dtype=torch.float16)
    # arcface_torch resumable checkpoint; DataParallel prefix; half precision -> float32.
    got = state_dict_for("arcface_torch", {"state_dict_backbone": {"module.fc.bias": w}, "epoch": 3}, "c.pt")
    assert list(got) == ["fc.bias"] and got["fc.bias"].dtype == torch.float32
    # AdaFace Lightning: model.* kept without prefix, head.* dropped, anything else reported later.
    got = state_dict_for("adaface", {"state_dict": {"model.a": w, "head.kernel": w, "other.b": w}}, "a.ckpt")
    assert sorted(got) == ["a", "other.b"]
    assert list(state_dict_for("curricularface", {"body.0.x": w}, "b.pth")) == ["body.0.x"]
    with pytest.raises(InputFormatError, match="not a tensor"):
        state_dict_for("curricularface", {"body.0.x": [1, 2]}, "b.pth")


def test_fp16_flag_follows_arcface_torch_on_cpu() -> None:
    """arcface_torch's fp16 wraps the trunk in CUDA autocast only: on CPU tensors nothing changes."""
    from fiqabench_plugins.fr_models.iresnet import IResNet

    torch.manual_seed(0)
    a = IResNet((1, 1, 1, 1), widths=(8, 8, 8, 16, 16), embedding_size=8).eval()
    b = IResNet((1, 1, 1, 1), widths=(8, 8, 8, 16, 16), embedding_size=8, fp16=True).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_junk_bytes_and_a_saved_list_are_refused_in_one_line(tmp_path: Path) -> None:
    from fiqabench.errors import InputFormatError
    from fiqabench_plugins.fr_models.checkpoints import read_checkpoint, state_dict_for

    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"junk")
    with pytest.raises(InputFormatError, match="junk.pth: not readable with torch.load"):
        read_checkpoint(junk)
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(InputFormatError, match="list.pth: expected a state dict .* found list"):
        state_dict_for("arcface_torch", read_checkpoint(listed), listed)
