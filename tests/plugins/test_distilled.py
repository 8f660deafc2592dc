"""DifFIQA(R) and eDifFIQA: losses by hand, identity centres, the trainers (resume, CLI), the methods."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fiqabench.errors import ConfigError, InputFormatError
from fiqabench.labels import read_labels, write_labels
from fiqabench.plugins import get_plugin_manager
from fiqabench.registry import Registry

from ..conftest import run_cli

losses = pytest.importorskip("fiqabench_plugins.distilled.losses")


def test_l1_and_representation_consistency_by_hand() -> None:
    p, q = torch.tensor([0.2, 0.9, 0.5]), torch.tensor([0.0, 1.0, 0.5])
    assert float(losses.l1(p, q)) == pytest.approx((0.2 + 0.1 + 0.0) / 3)
    f = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    e = torch.tensor([[0.0, 2.0], [3.0, 3.0]])
    # cos = 0 and 1 -> mean(1 - cos) = 0.5
    assert float(losses.representation_consistency(f, e)) == pytest.approx(0.5)


def test_label_optimisation_and_the_ediffiqa_total_by_hand() -> None:
    f = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    c = torch.tensor([[1.0, 1.0], [-1.0, 0.0], [0.0, 5.0]])  # cos = 1/sqrt(2), -1, 1
    q = torch.tensor([0.9, 0.4, 0.3])
    a = torch.tensor([1 - 1 / math.sqrt(2), 2.0, 0.0])
    expected = (q - 0.5 * a).clamp(0, 1)  # 0.7536, clamp(-0.6) = 0, 0.3
    assert losses.optimised_labels(q, f, c).tolist() == pytest.approx(expected.tolist())
    assert expected.tolist()[1] == 0.0
    p = torch.tensor([0.5, 0.1, 0.3])
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # cos(f, e) = 1, 0, 1 -> L_rc = 1/3
    l_q = (p - expected).abs().mean()
    total = losses.ediffiqa_loss(p, f, e, q, c, theta=0.5, epsilon=0.5)
    assert float(total) == pytest.approx(0.5 * (1 / 3) + 0.5 * float(l_q))
    # validation: plain labels, same theta
    val = losses.ediffiqa_loss(p, f, e, q, None, theta=0.5)
    assert float(val) == pytest.approx(0.5 * (1 / 3) + 0.5 * float((p - q).abs().mean()))
    # the correction carries no gradient to the features
    f_grad = f.clone().requires_grad_(True)
    losses.optimised_labels(q, f_grad, c).sum()
    assert not losses.optimised_labels(q, f_grad, c).requires_grad


def test_identity_centres_follow_prepare_data() -> None:
    from fiqabench_plugins.distilled.train import identity_centres

    scores = np.array([0.9, 0.8, 0.1, 0.95, 0.2, 0.3, 0.7, 0.6, 0.5, 0.4])
    identities = np.array(["a", "a", "a", "b", "b", "b", "c", "c", "c", "c"])
    embeddings = np.arange(20, dtype=np.float32).reshape(10, 2)
    # descending: .95 .9 .8 .7 .6 .5 ...; top_fraction 0.4 -> tau = descending[int(0.4 * 10)] = 0.6
    keep, centres = identity_centres(scores, identities, embeddings, top_fraction=0.4, min_images=2)
    assert sorted(centres) == ["a", "c"]  # a: .9 .8; b: .95 only; c: .7 .6
    assert centres["a"].tolist() == embeddings[[0, 1]].mean(0).tolist()
    assert centres["c"].tolist() == embeddings[[6, 7]].mean(0).tolist()
    assert keep.tolist() == [True] * 3 + [False] * 3 + [True] * 4


# -- training ----------------------------------------------------------------------------------
def _registry() -> Registry:
    return Registry(get_plugin_manager(entry_points=False))


DATASET_OPTIONS = {"identities": 4, "images_per_identity": 6, "degraded_fraction": 0.5}


def _tiny_labels(folder: Path, method: str = "severity@test", shift: float = 0.0, **dataset_options: object) -> Path:
    """Labels from the synthetic severities (a stand-in for DifFIQA scores: the trainer only reads
    the scores) plus ``shift``, on a 24-image degraded split (``dataset_options`` change it, e.g.
    ``seed=1``)."""
    reg = _registry()
    spec = reg.get("dataset", "synthetic-train")
    options = spec.resolve_options({**DATASET_OPTIONS, **dataset_options})
    dataset = spec.build(options, "cpu", resolved=True)
    samples = dataset.samples()
    scores = np.array([1.0 - float(m["severity"]) for m in samples.metadata]) + np.linspace(0, 0.01, len(samples))
    scores += shift
    return write_labels(folder, samples=samples.ids, identities=samples.subjects, scores=scores, provenance={
        "method": {"name": method},
        "quality_fr_model_name": "synthetic-arcface",
        "dataset": {"name": "synthetic-train", "spec": dataset.name, "options": options,
                    "manifest": dataset.manifest_digest()},
    })


def _train(kind: str, labels: Path, output: Path, progress=None, **extra):  # type: ignore[no-untyped-def]
    reg = _registry()
    entry = reg.get("trainer", kind)
    given = {"epochs": 2, "batch_size": 8, "checkpoint_steps": 1, **extra}
    label_set = read_labels(labels)
    dataset = reg.get("dataset", "synthetic-train").build(DATASET_OPTIONS, "cpu")
    fr = reg.get("fr_model", "synthetic-arcface").build({}, "cpu")
    return entry.load()(options=entry.resolve_options(given), device="cpu", output=output, progress=progress,
                        labels=label_set, dataset=dataset, fr_model=fr)


class _Interrupt(Exception):
    pass


#: The embedded recipe's departures from the official one (cosine learning rates, mirrored
#: images, rank targets): a resumed run must land on the same weights with them too.
EMBEDDED_DEPARTURES = {"lr_schedule": "cosine", "hflip": True, "label_normalisation": "rank"}


@pytest.mark.parametrize("recipe", ["official", "embedded"])
@pytest.mark.parametrize("kind", ["diffiqa-r", "ediffiqa"])
def test_trainer_resumes_mid_epoch_to_the_same_weights(tmp_path: Path, kind: str, recipe: str) -> None:
    from safetensors.torch import load_file

    labels = _tiny_labels(tmp_path / "labels")
    extra = {"min_images": 2} if kind == "ediffiqa" else {}
    if recipe == "embedded":
        extra.update(EMBEDDED_DEPARTURES)
    straight = _train(kind, labels, tmp_path / "straight.safetensors", **extra)

    class Bar:
        def __init__(self, total: int, desc: str) -> None:
            self.desc, self.seen = desc, 0

        def update(self, n: int) -> None:
            if self.desc.startswith("train"):
                self.seen += n
                if self.seen > 3:  # in epoch 2 (2-3 steps per epoch), after a checkpoint
                    raise _Interrupt

        def close(self) -> None:
            pass

    resumed = tmp_path / "resumed.safetensors"
    with pytest.raises(_Interrupt):
        _train(kind, labels, resumed, progress=Bar, **extra)
    assert not resumed.exists() and resumed.with_name(resumed.name + ".ckpt").is_file()
    _train(kind, labels, resumed, **extra)
    a, b = load_file(str(straight)), load_file(str(resumed))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    with pytest.raises(ConfigError, match="other options"):
        _train(kind, labels, resumed, lr_head=1e-2, **extra)


@pytest.mark.parametrize("kind", ["diffiqa-r", "ediffiqa"])
def test_each_embedded_departure_changes_the_trained_weights(tmp_path: Path, kind: str) -> None:
    """None of the three options is a no-op: each alone moves the weights away from the official run."""
    from safetensors.torch import load_file

    labels = _tiny_labels(tmp_path / "labels")
    extra = {"min_images": 2} if kind == "ediffiqa" else {}
    official = load_file(str(_train(kind, labels, tmp_path / "official.safetensors", **extra)))
    for key, value in EMBEDDED_DEPARTURES.items():
        other = load_file(str(_train(kind, labels, tmp_path / f"{key}.safetensors", **{**extra, key: value})))
        assert any(not torch.equal(official[k], other[k]) for k in official), key


def test_rank_targets_are_the_label_quantiles(tmp_path: Path) -> None:
    from fiqabench_plugins.distilled.train import TrainingSet, diffiqa_r_items

    labels = read_labels(_tiny_labels(tmp_path / "labels"))
    train_set = TrainingSet(labels, None)  # the items need the scores only
    items = diffiqa_r_items(train_set, "rank")
    order = np.argsort(labels.scores, kind="stable")
    assert items.labels[order].tolist() == pytest.approx(np.linspace(0.0, 1.0, len(order)).tolist())
    assert items.validation.tolist() == diffiqa_r_items(train_set).validation.tolist()


def test_ediffiqa_refuses_when_no_identity_has_enough_top_images(tmp_path: Path) -> None:
    labels = _tiny_labels(tmp_path / "labels")
    with pytest.raises(ConfigError, match="min_images=10 .* lower --option min_images"):
        _train("ediffiqa", labels, tmp_path / "w.safetensors")


def test_train_cli_takes_labels_and_the_method_loads_the_result(tmp_path: Path) -> None:
    labels = _tiny_labels(tmp_path / "labels")
    out = tmp_path / "diffiqa-r.safetensors"
    done = run_cli("train", "diffiqa-r", "--labels", str(labels), "--option", "epochs=1", "--option", "batch_size=8",
                   "--output", str(out), "-q")
    assert done.returncode == 0, done.stderr
    reg = _registry()
    method = reg.get("method", "diffiqa-r").build({"weights": str(out)}, "cpu")
    dataset = reg.get("dataset", "synthetic").build({"identities": 2}, "cpu")
    from fiqabench.api import SampleBatch

    images = dataset.read_images(list(range(6)))
    scores = method.score(SampleBatch(ids=tuple("abcdef"), images=images, metadata=({},) * 6,
                                      seeds=np.zeros(6, np.int64)), fr_model=None)
    assert scores.shape == (6,) and np.isfinite(scores).all()
    # an eDifFIQA method refuses DifFIQA(R) weights, naming the file
    with pytest.raises(InputFormatError, match="holds a DifFIQA\\(R\\) network, not eDifFIQA"):
        reg.get("method", "ediffiqa").build({"weights": str(out)}, "cpu")
    # labels of a dataset that changed are refused
    wrong = run_cli("train", "diffiqa-r", "--labels", str(labels), "--dataset-option", "seed=1",
                    "--output", str(tmp_path / "x.safetensors"), "-q")
    assert wrong.returncode == 2 and "has changed since the labels were computed" in wrong.stderr


def test_ediffiqa_named_configurations_train_their_backbones(tmp_path: Path) -> None:
    """variant=T trains a MobileFaceNet on 112 px input (random init as the official config, or a
    pretrained state dict) against the frozen FR model's 512-d embeddings; S/M/L check that the FR
    model is their iResNet; every mismatch is one line."""
    from safetensors.torch import load_file

    from fiqabench_plugins.distilled.method import read_metadata
    from fiqabench_plugins.distilled.mobilefacenet import MobileFaceNet

    from .test_fr_models import arcface_torch_keys, random_state

    labels = read_labels(_tiny_labels(tmp_path / "labels"))
    checkpoint = tmp_path / "r18.pth"
    torch.save(random_state(arcface_torch_keys(emb=512), seed=3), checkpoint)  # CosFace's 512-d, as the official
    reg = _registry()
    fr = reg.get("fr_model", "cosface").build({"weights": str(checkpoint), "arch": "iresnet18"}, "cpu")
    dataset = reg.get("dataset", "synthetic-train").build(DATASET_OPTIONS, "cpu")
    entry = reg.get("trainer", "ediffiqa")

    def train(out: Path, **given: object) -> Path:
        options = entry.resolve_options({"batch_size": 12, "min_images": 2, **given})
        return entry.load()(options=options, device="cpu", output=out, progress=None, labels=labels, dataset=dataset,
                            fr_model=fr)

    torch.manual_seed(7)
    pretrained = tmp_path / "mobilefacenet.pth"
    torch.save(MobileFaceNet(512).state_dict(), pretrained)
    tiny = train(tmp_path / "t.safetensors", variant="T")
    warm = train(tmp_path / "t-warm.safetensors", variant="T", backbone_weights=str(pretrained))
    meta = read_metadata(tiny)
    assert meta["arch"] == "mobilefacenet" and json.loads(meta["input_space"])["size"] == [112, 112]
    stem = "base_model.conv1.conv.weight"  # not among the last 100 tensors: never stepped
    assert torch.equal(load_file(str(warm))[stem], torch.load(pretrained, weights_only=True)["conv1.conv.weight"])
    assert not torch.equal(load_file(str(tiny))[stem], load_file(str(warm))[stem])
    method = reg.get("method", "ediffiqa").build({"weights": str(tiny), "variant": "T"}, "cpu")
    assert method.input_space.size == (112, 112)
    assert read_metadata(train(tmp_path / "s.safetensors", variant="S"))["arch"] == "iresnet18"

    with pytest.raises(ConfigError, match="variant=M fine-tunes eDifFIQA's iresnet50, but FR model .* is iresnet18"):
        train(tmp_path / "m.safetensors", variant="M")
    with pytest.raises(ConfigError, match="backbone_weights initialise eDifFIQA\\(T\\)'s MobileFaceNet; variant=S"):
        train(tmp_path / "s2.safetensors", variant="S", backbone_weights=str(pretrained))
    with pytest.raises(InputFormatError, match="r18.pth.*not a MobileFaceNet state dict"):
        train(tmp_path / "bad.safetensors", variant="T", backbone_weights=str(checkpoint))
    synth = reg.get("fr_model", "synthetic-arcface").build({}, "cpu")
    with pytest.raises(ConfigError, match="variant=T: .* embeds to 128"):
        entry.load()(options=entry.resolve_options({"variant": "T"}), device="cpu", output=tmp_path / "x.safetensors",
                     progress=None, labels=labels, dataset=dataset, fr_model=synth)


def _two_folders(tmp_path: Path) -> tuple[Path, Path]:
    """Two label folders of one teacher over two worlds of training identities (seed 0 and 1); the
    second one's scores shifted by less than a step between the first one's, so none tie."""
    return _tiny_labels(tmp_path / "a"), _tiny_labels(tmp_path / "b", shift=1e-4, seed=1)


def test_several_label_folders_are_one_training_set(tmp_path: Path) -> None:
    """Rows of the union read their images from their own dataset; normalisation and the
    validation split are those of the concatenated scores, not of each folder; identities of two
    datasets never merge (both worlds name an identity "0000"-like)."""
    from fiqabench_plugins.distilled.train import TrainingSet, diffiqa_r_items, ediffiqa_items

    reg = _registry()
    a, b = (read_labels(folder) for folder in _two_folders(tmp_path))
    datasets = tuple(reg.get("dataset", "synthetic-train").build({**DATASET_OPTIONS, **extra}, "cpu")
                     for extra in ({}, {"seed": 1}))
    union = TrainingSet((a, b), datasets)
    assert len(union) == len(a) + len(b) == 48
    rows = np.array([30, 2, 47, 24, 0])  # both folders, out of order
    expected = [datasets[0].read_images([int(a.index[r])]) if r < 24
                else datasets[1].read_images([int(b.index[r - 24])]) for r in rows]
    assert np.array_equal(union.read_images(rows), np.concatenate(expected))
    assert not np.array_equal(union.read_images(np.array([0])), union.read_images(np.array([24])))

    scores = np.concatenate([a.scores, b.scores])
    items = diffiqa_r_items(union, "rank")
    ranks = np.argsort(np.argsort(scores, kind="stable"), kind="stable")
    assert items.labels.tolist() == pytest.approx((ranks / 47).tolist())
    assert items.validation.tolist() == (ranks % 10 == 0).tolist()
    assert diffiqa_r_items(union).labels.tolist() == pytest.approx(
        ((scores - scores.min()) / (scores.max() - scores.min())).tolist())

    assert set(a.identities) == set(b.identities)  # same names in both worlds ...
    assert len(set(union.identities)) == 2 * len(set(a.identities))  # ... kept apart
    embeddings = np.random.default_rng(0).normal(size=(48, 4)).astype(np.float32)
    kept = ediffiqa_items(union, embeddings, top_fraction=0.5, min_images=2)
    alone = ediffiqa_items(TrainingSet(a, datasets[0]), embeddings[:24], top_fraction=0.5, min_images=2)
    assert set(kept.index.tolist()) != set(alone.index.tolist())  # tau is the union's


def test_train_cli_takes_several_label_folders(tmp_path: Path) -> None:
    from fiqabench_plugins.distilled.method import read_metadata

    a, b = _two_folders(tmp_path)
    for kind, extra, n_items in (("diffiqa-r", [], 48), ("ediffiqa", ["--option", "min_images=2"], None)):
        out = tmp_path / f"{kind}.safetensors"
        done = run_cli("train", kind, "--labels", str(a), "--labels", str(b), "--option", "epochs=1",
                       "--option", "batch_size=8", *extra, "--output", str(out), "-q")
        assert done.returncode == 0, done.stderr
        meta = read_metadata(out)
        recorded = json.loads(meta["labels"])
        assert recorded["sha256"] == [read_labels(x).provenance["labels_sha256"] for x in (a, b)]
        assert recorded["dataset"] == [read_labels(x).dataset["spec"] for x in (a, b)]
        assert recorded["n_train"] + recorded["n_validation"] == recorded["n_items"] == (n_items or recorded["n_items"])
        assert json.loads(meta["config"])["labels_sha256"] == recorded["sha256"]
    # a checkpoint of one folder is not resumed by a run on two
    single = tmp_path / "one.safetensors"
    assert run_cli("train", "diffiqa-r", "--labels", str(a), "--option", "epochs=1", "--option", "batch_size=8",
                   "--output", str(single), "-q").returncode == 0
    single.unlink()
    again = run_cli("train", "diffiqa-r", "--labels", str(a), "--labels", str(b), "--option", "epochs=1",
                    "--option", "batch_size=8", "--output", str(single), "-q")
    assert again.returncode == 2 and "other options or labels" in again.stderr


def test_label_folders_that_are_not_one_training_set_are_refused(tmp_path: Path) -> None:
    a, b = _two_folders(tmp_path)
    other_teacher = _tiny_labels(tmp_path / "c", method="other@test", seed=2)
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("labels.csv", "provenance.json"):
        (copy / name).write_bytes((a / name).read_bytes())
    relabelled = _tiny_labels(tmp_path / "d", shift=5e-5)  # other scores of a's images (seed 0 again)
    for folders, fragment in (
        ((a, other_teacher), f"--labels {other_teacher}: labelling method and options"),
        ((a, b, copy), f"--labels {copy}: are the same labels as {a}"),
        ((a, relabelled), f"--labels {relabelled}: label the same dataset as {a}"),
    ):
        args = [x for folder in folders for x in ("--labels", str(folder))]
        done = run_cli("train", "diffiqa-r", *args, "--output", str(tmp_path / "w.safetensors"), "-q")
        assert done.returncode == 2 and fragment in done.stderr, (folders, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["diffiqa-r", "ediffiqa"])
def test_shipped_embedded_weights_load_and_score(name: str) -> None:
    reg = _registry()
    entry = reg.get("method", name)
    if entry.unavailable_reason(entry.resolve_options({})):
        pytest.fail(entry.unavailable_reason(entry.resolve_options({})))
    method = entry.build({}, "cpu")
    dataset = reg.get("dataset", "synthetic").build({"identities": 2}, "cpu")
    from fiqabench.api import SampleBatch

    images = dataset.read_images(list(range(20)))
    scores = method.score(SampleBatch(ids=tuple(str(i) for i in range(20)), images=images, metadata=({},) * 20,
                                      seeds=np.zeros(20, np.int64)), fr_model=None)
    assert scores.shape == (20,) and np.isfinite(scores).all() and scores.std() > 0


def test_methods_score_with_official_files_through_the_registry(tmp_path: Path) -> None:
    """``weights=diffiqa(r).pth arch=...`` and ``weights=ediffiqa.onnx variant=T``: the method's
    score is the network's raw prediction on the official input (112 px RGB in [-1, 1])."""
    from fiqabench.api import SampleBatch
    from fiqabench.fr import rgb_uint8_to_unit, to_input_space
    from fiqabench_plugins.distilled.method import OFFICIAL_INPUT_SPACE
    from fiqabench_plugins.distilled.networks import build_network

    torch.manual_seed(0)
    reg = _registry()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 112, 112, 3), dtype=np.uint8)
    batch = SampleBatch(ids=("a", "b", "c"), images=images, metadata=({},) * 3, seeds=np.zeros(3, np.int64))
    x = to_input_space(rgb_uint8_to_unit(images), OFFICIAL_INPUT_SPACE)

    net = build_network("diffiqa-r", "iresnet18").eval()
    torch.save(net.state_dict(), tmp_path / "diffiqa(r).pth")
    entry = reg.get("method", "diffiqa-r")
    options = entry.resolve_options({"weights": str(tmp_path / "diffiqa(r).pth"), "arch": "iresnet18"})
    assert entry.domains_for(options) == ("aligned-112-face",)
    scores = entry.build(options, "cpu", resolved=True).score(batch, fr_model=None)
    with torch.no_grad():
        assert scores.tolist() == pytest.approx(net(x)[1].double().tolist(), abs=1e-5)

    tiny = build_network("ediffiqa", "mobilefacenet").eval()

    class Released(torch.nn.Module):  # the released graph: return_feat=0, output (N, 1)
        def __init__(self) -> None:
            super().__init__()
            self.net = tiny

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return self.net(image)[1][:, None]

    torch.onnx.export(Released().eval(), (torch.zeros(1, 3, 112, 112),), str(tmp_path / "ediffiqa_tiny.onnx"), dynamo=False,
                      opset_version=11, input_names=["input"], dynamic_axes={"input": {0: "n"}})
    entry = reg.get("method", "ediffiqa")
    options = entry.resolve_options({"weights": str(tmp_path / "ediffiqa_tiny.onnx"), "variant": "T"})
    scores = entry.build(options, "cpu", resolved=True).score(batch, fr_model=None)
    with torch.no_grad():
        assert scores.tolist() == pytest.approx(tiny(x)[1].double().tolist(), abs=1e-4)
    # official weights with the embedded arch: refused, naming the option
    with pytest.raises(ConfigError, match="official weights need arch=iresnet100"):
        reg.get("method", "diffiqa-r").build({"weights": str(tmp_path / "diffiqa(r).pth")}, "cpu")


def test_distilling_onto_an_iresnet_fr_model_keeps_the_official_layout(tmp_path: Path) -> None:
    """``--fr-model cosface`` (an arcface_torch iResNet-18 checkpoint): the trained file holds the
    official DifFIQA(R) keys (``base.conv1.weight``, ``linear.weight``), its frozen last BatchNorm
    scale is not trained, and the method loads it with ``arch=iresnet18`` on the 112 px input space."""
    from safetensors.torch import load_file

    from .test_fr_models import arcface_torch_keys, random_state

    labels = _tiny_labels(tmp_path / "labels")
    checkpoint = tmp_path / "backbone.pth"
    original = random_state(arcface_torch_keys(), seed=3)
    torch.save(original, checkpoint)
    reg = _registry()
    fr = reg.get("fr_model", "cosface").build({"weights": str(checkpoint), "arch": "iresnet18"}, "cpu")
    entry = reg.get("trainer", "diffiqa-r")
    out = tmp_path / "r18.safetensors"
    dataset = reg.get("dataset", "synthetic-train").build(DATASET_OPTIONS, "cpu")
    entry.load()(options=entry.resolve_options({"batch_size": 12}), device="cpu", output=out, progress=None,
                 labels=read_labels(labels), dataset=dataset, fr_model=fr)
    state = load_file(str(out))
    assert "base.conv1.weight" in state and "linear.weight" in state
    assert torch.equal(state["base.features.weight"], original["features.weight"])  # frozen, as arcface_torch's
    assert not torch.equal(state["base.fc.weight"], original["fc.weight"])  # in the last 100 tensors: trained
    method = reg.get("method", "diffiqa-r").build({"weights": str(out), "arch": "iresnet18"}, "cpu")
    assert method.input_space.size == (112, 112)
    with pytest.raises(ConfigError, match="iresnet18 backbone, but arch names embedded"):
        reg.get("method", "diffiqa-r").build({"weights": str(out)}, "cpu")
