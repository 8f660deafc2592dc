"""Tests of the embedded synthetic world: renderer, degradations, splits, FR model, trainer."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fiqabench.api import Dataset, FaceRecognitionModel
from fiqabench.errors import ConfigError, MissingArtifactError
from fiqabench_plugins.synthetic import dataset as ds_mod
from fiqabench_plugins.synthetic import degrade as deg
from fiqabench_plugins.synthetic import render
from fiqabench_plugins.synthetic._detmath import rng_for
from fiqabench_plugins.synthetic._meta import DEFAULT_WEIGHTS

SMALL = {"identities": 6, "images_per_identity": 4, "non_mated": 50}


@pytest.fixture(scope="module")
def test_split() -> ds_mod.SyntheticDataset:
    return ds_mod.build("synthetic", {})


# -- registration ------------------------------------------------------------------------------


def test_registration_imports_neither_numpy_nor_torch() -> None:
    code = (
        "import sys, fiqabench_plugins.synthetic as s; "
        "print('numpy' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_components_are_registered() -> None:
    from fiqabench.plugins import get_plugin_manager
    from fiqabench.registry import Registry

    reg = Registry(get_plugin_manager(entry_points=False, builtins=("fiqabench_plugins.synthetic",)))
    test = reg.get("dataset", "synthetic")
    assert test.default_fr_model == "synthetic-arcface"
    assert test.domain == "synthetic"
    assert reg.get("dataset", "synthetic-train").domain == "synthetic"
    fr = reg.get("fr_model", "synthetic-arcface")
    assert fr.label == "SynthArcFace" and fr.domain == "synthetic"
    assert fr.unavailable_reason() is None  # the weights ship with fiqabench
    assert reg.get("trainer", "synthetic-fr").options["batch_size"].default == 256


def test_registered_defaults_are_the_splits_and_an_explicit_default_keeps_the_cache_key() -> None:
    from fiqabench.plugins import get_plugin_manager
    from fiqabench.registry import Registry
    from fiqabench.cache import cache_key
    from fiqabench.plan import resolve_component as _resolve
    from fiqabench_plugins.synthetic import SPLIT_DEFAULTS

    for split, defaults in SPLIT_DEFAULTS.items():
        spec = ds_mod.SPLITS[split]
        assert defaults == {key: getattr(spec, key) for key in defaults}, split
    reg = Registry(get_plugin_manager(entry_points=False, builtins=("fiqabench_plugins.synthetic",)))
    implicit = _resolve(reg, "dataset", "synthetic", {})
    explicit = _resolve(reg, "dataset", "synthetic", {"seed": "0", "identities": "100"})
    assert cache_key(implicit.fingerprint()) == cache_key(explicit.fingerprint())
    assert cache_key(_resolve(reg, "dataset", "synthetic", {"seed": "1"}).fingerprint()) != cache_key(
        implicit.fingerprint()
    )


def test_corrupt_fr_weights_are_named(tmp_path: Path) -> None:
    from fiqabench.errors import InputFormatError
    from fiqabench_plugins.synthetic.model import load_network

    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    with pytest.raises(InputFormatError, match="bad.safetensors: not a readable safetensors file"):
        load_network(bad)


# -- renderer ----------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes() -> None:
    a = ds_mod.render_sample(0, 1, 3, 2)
    ds_mod.identity_params.cache_clear()
    b = ds_mod.render_sample(0, 1, 3, 2)
    assert a.dtype == np.uint8 and a.shape == (render.IMAGE_SIZE, render.IMAGE_SIZE, 3)
    assert a.tobytes() == b.tobytes()


#: sha256 prefixes of frozen samples of the default benchmark (generator 1.1.0), one per
#: degradation type, and of three training images. Derived once with
#: ``hashlib.sha256(ds.read_images([k]).tobytes())``; they pin "same seed, same bytes on any
#: machine" (the renderer and degradations use only IEEE-exact arithmetic). A change here means the
#: world changed: bump GENERATOR_VERSION and re-derive them.
GOLDEN = {
    0: "2d5d03df39c411b28dfc",  # clean
    1: "320fb2f05de03edc5ec1",  # occlusion
    4: "a15804bfec9e3006133e",  # pose
    5: "d70f3cd1242fc7a156a4",  # jpeg
    10: "6641f005326ba1368608",  # blur
    17: "a7d6665824e52d3a4e29",  # exposure
    23: "1fd5153a3cb3098fefaa",  # noise
    37: "a72dbe8f84a3e461cef2",  # downscale
}
GOLDEN_TRAIN = "948e7d2518563fee39dc"  # synthetic-train samples 0, 1, 23999
GOLDEN_MANIFEST = "5673234763a3e838eaef1a626591dbd0ad918520d2ee928146d618589075e298"


def test_frozen_world_bytes(test_split: ds_mod.SyntheticDataset) -> None:
    assert test_split.version == "1.1.0"
    for k, prefix in GOLDEN.items():
        image = test_split.read_images([k])
        assert hashlib.sha256(image.tobytes()).hexdigest()[:20] == prefix, (k, test_split.samples().metadata[k])
    train = ds_mod.build("synthetic-train", {})
    assert hashlib.sha256(train.read_images([0, 1, 23999]).tobytes()).hexdigest()[:20] == GOLDEN_TRAIN
    assert test_split.manifest_digest() == GOLDEN_MANIFEST


def test_different_identities_and_views_differ() -> None:
    base = ds_mod.render_sample(0, 1, 0, 0)
    other_view = ds_mod.render_sample(0, 1, 0, 1)
    other_id = ds_mod.render_sample(0, 1, 1, 0)
    assert not np.array_equal(base, other_view)
    assert not np.array_equal(base, other_id)
    assert np.abs(base.astype(int) - other_id.astype(int)).mean() > 5


def test_identities_are_symmetric() -> None:
    """No built-in asymmetry: a frontal, evenly lit face is its own mirror image."""
    from dataclasses import replace

    i = next(i for i in range(50) if ds_mod.identity_params(0, 1, i).beard == 0)  # stubble is random
    ident = ds_mod.identity_params(0, 1, i)
    view = replace(
        ds_mod.view_params(0, 1, i, 0), roll=0.0, yaw=0.0, shift_x=0.0, gaze_x=0.0, light_az=0.0, bg_angle=1.5707963267948966
    )
    img = render.render(ident, view).astype(int)
    assert np.abs(img - img[:, ::-1]).max() <= 2


def test_detmath_matches_libm() -> None:
    from fiqabench_plugins.synthetic import _detmath as dm

    for x in (-3.0, -0.4, 0.0, 0.3, 1.7, 6.0):
        assert abs(dm.sin(x) - np.sin(x)) < 1e-14
        assert abs(dm.cos(x) - np.cos(x)) < 1e-14
        assert abs(dm.exp(x) - np.exp(x)) < 1e-12 * np.exp(x)


# -- degradations ------------------------------------------------------------------------------


def test_zero_severity_is_identity_and_degradations_change_pixels() -> None:
    img = ds_mod.render_sample(0, 1, 2, 0)
    for kind in deg.POST_DEGRADATIONS:
        assert np.array_equal(deg.degrade(img, kind, 0.0, rng_for(1)), img), kind
        out = deg.degrade(img, kind, 0.8, rng_for(1))
        assert out.dtype == np.uint8 and out.shape == img.shape
        assert np.abs(out.astype(int) - img.astype(int)).mean() > 2, kind


def test_degradations_are_deterministic() -> None:
    img = ds_mod.render_sample(0, 1, 2, 0)
    for kind in deg.POST_DEGRADATIONS:
        a = deg.degrade(img, kind, 0.5, rng_for(9, 9))
        b = deg.degrade(img, kind, 0.5, rng_for(9, 9))
        assert a.tobytes() == b.tobytes(), kind


def test_degrade_rejects_bad_input() -> None:
    img = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ConfigError, match="unknown degradation"):
        deg.degrade(img, "sepia", 0.5, rng_for(1))
    with pytest.raises(ConfigError, match=r"severity must be in \[0, 1\]"):
        deg.degrade(img, "blur", 1.5, rng_for(1))
    with pytest.raises(ConfigError, match="pose is rendered"):
        deg.degrade(img, "pose", 0.5, rng_for(1))
    with pytest.raises(ConfigError, match="uint8 RGB"):
        deg.degrade(img.astype(np.float32), "blur", 0.5, rng_for(1))


def test_calibration_covers_every_type() -> None:
    keys = set(deg.CALIBRATION)
    for kind in deg.DEGRADATIONS:
        assert kind in keys or f"{kind}_over" in keys
    assert all(value > 0 for value in deg.CALIBRATION.values())


# -- splits and protocol -----------------------------------------------------------------------


def test_default_protocol_counts(test_split: ds_mod.SyntheticDataset) -> None:
    samples = test_split.samples()
    comp = test_split.comparisons()
    assert len(samples) == 1000 and len(set(samples.subjects)) == 100
    assert int(comp.mated.sum()) == 4500 and int((~comp.mated).sum()) == 100_000
    subjects = np.asarray(samples.subjects)
    assert np.all(subjects[comp.a[comp.mated]] == subjects[comp.b[comp.mated]])
    assert np.all(subjects[comp.a[~comp.mated]] != subjects[comp.b[~comp.mated]])
    assert np.all(comp.a < comp.b)
    keys = comp.a * len(samples) + comp.b
    assert np.unique(keys).size == keys.size
    assert samples.ids[42] == "id0004/img02"
    assert test_split.templates() is None
    assert test_split.domain == "synthetic" and test_split.version == ds_mod.GENERATOR_VERSION


def test_metadata_and_degradation_plan(test_split: ds_mod.SyntheticDataset) -> None:
    samples = test_split.samples()
    kinds: dict[str, int] = {}
    for meta, subject in zip(samples.metadata, samples.subjects):
        assert {"severity", "degradation", "identity"} <= set(meta)
        assert meta["identity"] == subject
        assert (meta["severity"] == 0.0) == (meta["degradation"] == "none")
        assert 0.0 <= meta["severity"] <= 1.0
        kinds[meta["degradation"]] = kinds.get(meta["degradation"], 0) + 1
    assert kinds.pop("none") == 500
    assert set(kinds) == set(deg.DEGRADATIONS)
    assert max(kinds.values()) - min(kinds.values()) <= 1
    per_identity = np.asarray([m["degradation"] != "none" for m in samples.metadata]).reshape(100, 10).sum(1)
    assert np.all(per_identity == 5)


def test_split_identities_are_disjoint() -> None:
    test = ds_mod.build("synthetic", SMALL)
    train = ds_mod.build("synthetic-train", SMALL)
    assert not set(test.samples().subjects) & set(train.samples().subjects)
    assert all(m["severity"] == 0.0 and m["degradation"] == "none" for m in train.samples().metadata)
    vectors_test = [render.identity_vector(ds_mod.identity_params(0, 1, i)) for i in range(6)]
    vectors_train = [render.identity_vector(ds_mod.identity_params(0, 2, i)) for i in range(6)]
    for a in vectors_test:
        for b in vectors_train:
            assert not np.allclose(a, b)


def test_train_split_defaults() -> None:
    train = ds_mod.build("synthetic-train", {})
    assert len(train) == 24_000
    assert train.samples().ids[0] == "tr0000/img00"


def test_manifest_digest_is_stable_and_versioned(monkeypatch: pytest.MonkeyPatch) -> None:
    first = ds_mod.build("synthetic", SMALL).manifest_digest()
    assert first == ds_mod.build("synthetic", SMALL).manifest_digest()
    assert first != ds_mod.build("synthetic", {**SMALL, "seed": 1}).manifest_digest()
    assert first != ds_mod.build("synthetic", {**SMALL, "non_mated": 40}).manifest_digest()
    monkeypatch.setattr(ds_mod, "GENERATOR_VERSION", "0.0.0-test")
    changed = ds_mod.build("synthetic", SMALL)
    assert changed.version == "0.0.0-test"
    assert changed.manifest_digest() != first


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="identities"):
        ds_mod.build("synthetic", {"identities": 1})
    with pytest.raises(ConfigError, match="degraded_fraction"):
        ds_mod.build("synthetic", {"degraded_fraction": 2})
    with pytest.raises(ConfigError, match="no option"):
        ds_mod.build("synthetic", {"colour": 1})


def test_read_images_is_lazy_and_well_formed() -> None:
    small = ds_mod.build("synthetic", SMALL)
    assert isinstance(small, Dataset)
    images = small.read_images([3, 0, 3])
    assert images.dtype == np.uint8 and images.shape == (3, render.IMAGE_SIZE, render.IMAGE_SIZE, 3)
    assert np.array_equal(images[0], images[2])
    assert int(small._rendered.sum()) == 2
    # A sample's pixels do not depend on what else was rendered, or in which order.
    again = ds_mod.build("synthetic", SMALL).read_images([0])
    assert np.array_equal(again[0], images[1])
    with pytest.raises(ConfigError, match="out of range"):
        small.read_images([len(small)])


def test_degraded_samples_render_with_their_degradation() -> None:
    small = ds_mod.build("synthetic", SMALL)
    meta = small.samples().metadata
    k = next(i for i, m in enumerate(meta) if m["degradation"] not in ("none", "pose"))
    degraded = small.read_images([k])[0]
    clean = small.render_index(k, "none", 0.0)
    assert not np.array_equal(degraded, clean)


# -- FR model ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fr_model() -> FaceRecognitionModel:
    from fiqabench_plugins.synthetic.model import build

    return build(options={"weights": None}, device="cpu")


def test_fr_model_contract(fr_model: FaceRecognitionModel) -> None:
    assert isinstance(fr_model, FaceRecognitionModel)
    assert fr_model.domain == "synthetic" and fr_model.embedding_size == 128
    assert fr_model.capabilities.has_dropout and fr_model.capabilities.has_trunk_head
    assert fr_model.weights_digest == hashlib.sha256(DEFAULT_WEIGHTS.read_bytes()).hexdigest()
    images = ds_mod.build("synthetic", SMALL).read_images([0, 1])
    x = fr_model.preprocess(images)
    assert tuple(x.shape) == (2, 3, render.IMAGE_SIZE, render.IMAGE_SIZE)
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    big = fr_model.to_input_space(torch.rand(2, 3, 64, 64))
    assert tuple(big.shape) == (2, 3, render.IMAGE_SIZE, render.IMAGE_SIZE)
    emb = fr_model.embed(images)
    assert emb.shape == (2, 128) and emb.dtype == np.float32
    features = fr_model.trunk(x)
    torch.manual_seed(0)
    a = fr_model.head(features, dropout=True)
    b = fr_model.head(features, dropout=True)
    assert not torch.equal(a, b)  # the dropout layer is live for SER-FIQ
    assert torch.allclose(fr_model.head(features), fr_model.forward(x))


def test_fr_model_separates_identities(fr_model: FaceRecognitionModel) -> None:
    clean = ds_mod.build("synthetic", {"identities": 8, "images_per_identity": 4, "degraded_fraction": 0, "non_mated": 10})
    emb = fr_model.embed(clean.read_images(range(len(clean))))
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = emb @ emb.T
    same = clean.identity_index[:, None] == clean.identity_index[None, :]
    off_diagonal = ~np.eye(len(clean), dtype=bool)
    mated = sim[same & off_diagonal]
    non_mated = sim[~same]
    assert mated.mean() > non_mated.mean() + 0.3
    assert np.median(mated) > np.quantile(non_mated, 0.99)


def test_missing_weights_say_how_to_produce_them(tmp_path: Path) -> None:
    from fiqabench_plugins.synthetic import _weights_available
    from fiqabench_plugins.synthetic.model import build

    missing = tmp_path / "nope.safetensors"
    with pytest.raises(MissingArtifactError, match="fiqabench train synthetic-fr --output"):
        build(options={"weights": str(missing)}, device="cpu")
    reason = _weights_available({"weights": str(missing)})
    assert reason is not None and "fiqabench train synthetic-fr" in reason


def test_foreign_weight_file_is_a_config_error(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from fiqabench_plugins.synthetic.model import build

    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, str(path))
    with pytest.raises(ConfigError, match="not a SynthArcFace weight file"):
        build(options={"weights": str(path)}, device="cpu")


# -- trainer -----------------------------------------------------------------------------------


class _Interrupt(Exception):
    pass


def _tiny_options(**extra: object) -> dict[str, object]:
    from fiqabench.plugins import get_plugin_manager
    from fiqabench.registry import Registry

    reg = Registry(get_plugin_manager(entry_points=False, builtins=("fiqabench_plugins.synthetic",)))
    given = {"epochs": 2, "batch_size": 8, "num_threads": 1, **extra}
    return reg.get("trainer", "synthetic-fr").resolve_options(given)


def _tiny_split() -> ds_mod.SyntheticDataset:
    return ds_mod.build("synthetic-train", {"identities": 4, "images_per_identity": 4})


def test_trainer_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from fiqabench_plugins.synthetic.model import load_network
    from fiqabench_plugins.synthetic.train import train

    options = _tiny_options()
    straight = train(options=options, dataset=_tiny_split(), device="cpu", output=tmp_path / "straight.safetensors", progress=None)

    class Bar:
        def __init__(self, total: int, desc: str) -> None:
            self.desc = desc

        def update(self, n: int) -> None:
            if self.desc.startswith("train"):
                self.seen = getattr(self, "seen", 0) + n
                if self.seen > 2:  # 16 images / batch 8 = 2 steps per epoch: stop in epoch 2
                    raise _Interrupt

        def close(self) -> None:
            pass

    resumed_path = tmp_path / "resumed.safetensors"
    with pytest.raises(_Interrupt):
        train(options=options, dataset=_tiny_split(), device="cpu", output=resumed_path, progress=Bar)
    assert not resumed_path.exists() and (tmp_path / "resumed.safetensors.ckpt").is_file()
    epochs_run: list[int] = []

    def counting(total: int, desc: str) -> Bar:
        if desc.startswith("train"):
            epochs_run.append(total)
        return type("B", (), {"update": lambda self, n: None, "close": lambda self: None})()

    train(options=options, dataset=_tiny_split(), device="cpu", output=resumed_path, progress=counting)
    assert epochs_run == [2]  # only the second epoch (2 steps) was left
    a, b = load_file(str(straight)), load_file(str(resumed_path))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-5), key
    load_network(resumed_path)  # the output is a loadable SynthArcFace file

    with pytest.raises(ConfigError, match="other options"):
        train(options=_tiny_options(lr=1e-3), dataset=_tiny_split(), device="cpu", output=resumed_path, progress=None)


# -- fiqabench.testing conformance ---------------------------------------------------------------


def test_conformance_checks(fr_model: FaceRecognitionModel) -> None:
    from fiqabench.testing import check_dataset, check_fr_model

    small = ds_mod.build("synthetic", SMALL)
    check_dataset(small)
    check_dataset(ds_mod.build("synthetic-train", SMALL))
    check_fr_model(fr_model, small.read_images(range(6)))
