"""CR-FIQA and MagFace: losses on hand-computed values, trainers (shared synthetic-fr machinery),
methods and FR models (conformance), official-checkpoint loaders (random weights, official layout)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fiqabench.errors import ConfigError, InputFormatError, MissingArtifactError
from fiqabench.testing import check_fr_model, check_method, make_batch
from fiqabench_plugins.cr_fiqa.nets import CRFIQAObjective, certainty_ratio, class_centre_similarities
from fiqabench_plugins.cr_fiqa.official import read_checkpoint, split_wrapped
from fiqabench_plugins.magface.nets import MagFaceObjective, feasibility_bound, magnitude_margin, regulariser

CENTRES = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])


def _ce(logits: list[float], target: int) -> float:
    return -logits[target] + math.log(sum(math.exp(v) for v in logits))


# -- CR-FIQA -----------------------------------------------------------------------------------


def test_certainty_ratio_on_hand_computed_values() -> None:
    e = torch.tensor([[0.6, 0.8], [-3.0, 0.0]])  # cosines (0.6, 0.8, -0.6) and (-1, 0, 1)
    ccs, nnccs = class_centre_similarities(e, CENTRES, torch.tensor([0, 2]))
    assert ccs.tolist() == pytest.approx([0.6, 1.0])
    assert nnccs.tolist() == pytest.approx([0.8, 0.0], abs=1e-6)  # own class excluded (set to -1e-12)
    assert certainty_ratio(ccs, nnccs).tolist() == pytest.approx([0.6 / 1.8, 1.0 / 1.0], rel=1e-6)
    assert certainty_ratio(ccs[:1], nnccs[:1], "code").tolist() == pytest.approx([0.75])


def test_cr_fiqa_loss_on_hand_computed_values() -> None:
    obj = CRFIQAObjective(3, scale=32.0, margin=0.35)
    obj.arc.weight = torch.nn.Parameter(CENTRES.clone())  # 2-d embeddings for hand computation
    e = torch.tensor([[0.6, 0.8]])
    qs = torch.tensor([[0.5]])
    loss, logits = obj.loss((e, qs), torch.tensor([0]))
    target = math.cos(math.acos(0.6) + 0.35)
    expected_logits = [32 * target, 32 * 0.8, 32 * -0.6]
    assert logits[0].tolist() == pytest.approx(expected_logits, rel=1e-5)
    d = abs(0.5 - 0.6 / 1.8)  # SmoothL1 with beta 0.5: 0.5 d^2 / beta below beta
    expected = _ce(expected_logits, 0) + 10.0 * 0.5 * d * d / 0.5
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    far = obj.loss((e, torch.tensor([[2.0]])), torch.tensor([0]))[0]  # |d| > beta: d - beta / 2
    assert far.item() == pytest.approx(_ce(expected_logits, 0) + 10.0 * (2.0 - 0.6 / 1.8 - 0.25), rel=1e-5)


# -- MagFace -----------------------------------------------------------------------------------


def test_magface_margin_regulariser_and_bound() -> None:
    assert magnitude_margin(torch.tensor([10.0, 60.0, 110.0])).tolist() == pytest.approx([0.45, 0.625, 0.8])
    assert regulariser(torch.tensor([110.0])).item() == pytest.approx(2 / 110)
    # run/trainer.py: min lambda_g = s k u_a^2 l_a^2 / (u_a^2 - l_a^2), k = 0.35 / 100
    assert feasibility_bound(64.0) == pytest.approx(64 * 0.0035 * 12100 * 100 / 12000)


def test_magface_loss_on_hand_computed_values() -> None:
    obj = MagFaceObjective(3, scale=32.0)
    obj.weight = torch.nn.Parameter(CENTRES.clone())
    e = torch.tensor([[36.0, 48.0], [1.8, 2.4]])  # magnitudes 60 and 3 (clamped to l_a = 10)
    loss, logits = obj.loss(e, torch.tensor([0, 0]))
    rows = []
    for a in (60.0, 10.0):
        m = (0.8 - 0.45) / 100 * (a - 10) + 0.45
        rows.append([32 * math.cos(math.acos(0.6) + m), 32 * 0.8, 32 * -0.6])
    assert logits.tolist() == [pytest.approx(r, rel=1e-5) for r in rows]
    g = ((1 / 60 + 60 / 12100) + (1 / 10 + 10 / 12100)) / 2
    expected = (_ce(rows[0], 0) + _ce(rows[1], 0)) / 2 + 35.0 * g
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # easy margin (release default): no margin where cos <= 0
    _, easy = obj.loss(torch.tensor([[-36.0, 48.0]]), torch.tensor([0]))
    assert easy[0, 0].item() == pytest.approx(32 * -0.6, rel=1e-5)


# -- trainers, methods, FR models --------------------------------------------------------------

TINY = {"epochs": "1", "batch_size": "64"}
TINY_SPLIT = {"identities": 20, "images_per_identity": 6}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from fiqabench.plugins import get_plugin_manager
    from fiqabench.registry import Registry

    reg = Registry(get_plugin_manager(entry_points=False))
    out = {}
    for name in ("cr-fiqa", "magface"):
        entry = reg.get("trainer", name)
        path = tmp_path_factory.mktemp(name) / f"{name}.safetensors"
        split = reg.get("dataset", "synthetic-train").build(TINY_SPLIT, "cpu")
        entry.load()(options=entry.resolve_options(TINY), device="cpu", output=path, progress=None, dataset=split)
        out[name] = path
    return out


def test_trainers_write_loadable_weights_and_resume(trained: dict[str, Path]) -> None:
    from safetensors import safe_open

    with safe_open(str(trained["cr-fiqa"]), framework="pt") as f:
        assert "qs.weight" in f.keys() and f.metadata()["format"] == "fiqabench cr-fiqa embedded 1"
    with safe_open(str(trained["magface"]), framework="pt") as f:
        assert "qs.weight" not in f.keys() and '"trainer": "magface"' in f.metadata()["config"]
    assert trained["cr-fiqa"].with_name("cr-fiqa.safetensors.ckpt").is_file()


def test_trainer_options_are_checked() -> None:
    from fiqabench_plugins.magface.train import train as train_magface

    from fiqabench.plugins import get_plugin_manager
    from fiqabench.registry import Registry

    reg = Registry(get_plugin_manager(entry_points=False))
    opts = reg.get("trainer", "magface").resolve_options({"lambda_g": "5"})
    with pytest.raises(ConfigError, match="below the bound"):
        train_magface(options=opts, output=Path("/nonexistent/x.safetensors"))


def test_cr_fiqa_method_and_backbone_conform(trained: dict[str, Path]) -> None:
    from fiqabench_plugins.cr_fiqa.model import CRFIQA, build_fr_model

    method = CRFIQA(options={"weights": str(trained["cr-fiqa"])}, device="cpu")
    scores = check_method(method, make_batch(6))
    fr = build_fr_model(options={"weights": str(trained["cr-fiqa"])}, device="cpu")
    check_fr_model(fr, make_batch(4).images)
    with torch.inference_mode():
        x = fr.preprocess(make_batch(6).images)
        assert np.allclose(scores, method.qs(fr.forward(x))[:, 0].numpy(), atol=1e-6)
    with pytest.raises(MissingArtifactError):
        CRFIQA(options={"weights": "/nonexistent.safetensors"}, device="cpu")
    with pytest.raises(ConfigError, match=r"not a CR-FIQA \(embedded\) weight file"):
        CRFIQA(options={"weights": str(trained["magface"])}, device="cpu")


def test_magface_method_is_the_norm_of_its_fr_model(trained: dict[str, Path]) -> None:
    from fiqabench_plugins.magface.model import MagFace, build_fr_model

    scores = check_method(MagFace(options={"weights": str(trained["magface"])}, device="cpu"), make_batch(6))
    fr = build_fr_model(options={"weights": str(trained["magface"])}, device="cpu")
    emb = check_fr_model(fr, make_batch(6).images)
    assert np.allclose(scores, np.linalg.norm(emb.astype(np.float64), axis=1), rtol=1e-5)


def test_shipped_weights_are_registered_and_available() -> None:
    from fiqabench.plugins import get_plugin_manager
    from fiqabench.registry import Registry

    reg = Registry(get_plugin_manager(entry_points=False))
    for kind, name in [("method", "cr-fiqa"), ("method", "magface"), ("fr_model", "synthetic-cr-fiqa"), ("fr_model", "synthetic-magface")]:
        assert reg.get(kind, name).unavailable_reason() is None, name
    for name in ("cr-fiqa", "magface"):
        entry = reg.get("fr_model", name)
        assert entry.domain == "aligned-112-face" and entry.capabilities.has_trunk_head
        assert "weights=PATH" in (entry.unavailable_reason() or "")
        assert reg.get("method", name).needs_fr_model == "none"
        assert reg.get("method", name).cost_ms_per_image > 0
    assert reg.get("fr_model", "cr-fiqa").capabilities.has_dropout  # trained with dropout 0.4
    assert not reg.get("fr_model", "magface").capabilities.has_dropout  # Dropout2d: not modelled


# -- official checkpoints ----------------------------------------------------------------------


def test_checkpoint_reading_and_magface_unwrapping(tmp_path: Path) -> None:
    t = torch.zeros(2)
    wrapped = {"epoch": 25, "arch": "iresnet100", "state_dict": {
        "module.features.conv1.weight": t, "module.features.features.weight": t, "module.fc.weight": t}}
    path = tmp_path / "magface_epoch_00025.pth"
    torch.save(wrapped, path)
    backbone, rest = split_wrapped(read_checkpoint(path))
    assert sorted(backbone) == ["conv1.weight", "features.weight"] and sorted(rest) == ["fc.weight"]
    plain = {"conv1.weight": t, "features.weight": t, "qs.weight": t}
    assert split_wrapped(plain) == (plain, {})
    ddp_inside = {"features.module.conv1.weight": t, "features.module.fc.weight": t, "fc.weight": t}
    assert sorted(split_wrapped(ddp_inside)[0]) == ["conv1.weight", "fc.weight"]
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputFormatError, match="bad.pth"):
        read_checkpoint(bad)
    with pytest.raises(MissingArtifactError):
        read_checkpoint(tmp_path / "missing.pth")


HAVE_IRESNET = importlib.util.find_spec("fiqabench_plugins.fr_models") is not None and (
    importlib.util.find_spec("fiqabench_plugins.fr_models.iresnet") is not None
)
needs_iresnet = pytest.mark.skipif(
    not HAVE_IRESNET, reason="fiqabench_plugins.fr_models.iresnet (the FR-models plugin) is not installed"
)


@needs_iresnet
def test_official_cr_fiqa_checkpoint_loads(tmp_path: Path) -> None:
    from fiqabench_plugins.fr_models.iresnet import iresnet

    from fiqabench_plugins.cr_fiqa.model import CRFIQA, build_official_fr_model

    torch.manual_seed(0)
    net = iresnet("iresnet50", embedding_size=512, dropout=0.4).eval()
    qs = torch.nn.Linear(512, 1)
    state = {**net.state_dict(), "qs.weight": qs.weight.data, "qs.bias": qs.bias.data}
    path = tmp_path / "32572backbone.pth"
    torch.save(state, path)
    opts = {"weights": str(path), "arch": "iresnet50", "batch_size": 2}
    method = CRFIQA(options=opts, device="cpu")
    batch = make_batch(2, size=112)
    x = (torch.from_numpy(batch.images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5  # RGB, [-1, 1]
    with torch.inference_mode():
        expected = qs(net(x))[:, 0].numpy()
    assert np.allclose(method.score(batch), expected, atol=1e-4)
    fr = build_official_fr_model(options=opts, device="cpu")
    assert fr.capabilities.has_dropout and fr.domain == "aligned-112-face"
    with pytest.raises(ConfigError, match="iresnet100"):
        CRFIQA(options={**opts, "arch": "iresnet100"}, device="cpu")


@needs_iresnet
def test_official_magface_checkpoint_loads(tmp_path: Path) -> None:
    from fiqabench_plugins.fr_models.iresnet import iresnet

    from fiqabench_plugins.magface.model import MagFace

    torch.manual_seed(0)
    net = iresnet("iresnet18", embedding_size=512).eval()
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eps = 2e-5
            module.running_var.uniform_(0.5, 2.0)
    state = {f"module.features.{k}": v for k, v in net.state_dict().items()}
    state["module.fc.weight"] = torch.randn(512, 10)  # MagLinear centres, dropped
    path = tmp_path / "magface_iresnet18.pth"
    torch.save({"epoch": 1, "arch": "iresnet18", "state_dict": state}, path)
    batch = make_batch(2, size=112)
    x = torch.from_numpy(batch.images[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255  # BGR, [0, 1]
    with torch.inference_mode():
        expected = torch.linalg.vector_norm(net(x), dim=1).numpy()
    got = MagFace(options={"weights": str(path), "arch": "iresnet18", "batch_size": 2}, device="cpu").score(batch)
    assert np.allclose(got, expected, rtol=1e-4)
