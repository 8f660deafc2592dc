"""Real-benchmark readers on small trees that imitate each layout (written at test time)."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from fiqabench.api import Dataset
from fiqabench.cli import main as cli_main
from fiqabench.errors import ConfigError, InputFormatError, MissingArtifactError
from fiqabench_plugins import datasets as reg
from fiqabench_plugins.datasets import adience, base, calfw, cfp, folder, ijb, insightface_bin, lfw
from tests.plugins import dataset_layouts as L

BUILDERS = {
    "lfw": (lfw.build_lfw, L.make_lfw),
    "xqlfw": (lfw.build_xqlfw, L.make_xqlfw),
    "calfw": (calfw.build_calfw, L.make_calfw),
    "cplfw": (calfw.build_cplfw, lambda root: L.make_calfw(root, "pairs_CPLFW.txt", pad=False)),
    "adience": (adience.build_adience, L.make_adience),
    "ijbc": (ijb.build_ijbc, L.make_ijb),
    "ijbb": (ijb.build_ijbb, lambda root: L.make_ijb(root, "ijbb", with_1n=False)),
    "folder": (folder.build_folder, L.make_folder),
}


def _build(name: str, root: Path, **options):
    return BUILDERS[name][0](options={"root": str(root), "workers": 1, **options})


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_layouts_parse_to_the_right_counts(tmp_path: Path, name: str) -> None:
    expected = BUILDERS[name][1](tmp_path / name)
    ds = _build(name, tmp_path / name)
    assert isinstance(ds, Dataset)
    assert ds.domain == "aligned-112-face" == reg.ALIGNED_DOMAIN == base.ALIGNED_DOMAIN
    samples, comp = ds.samples(), ds.comparisons()
    assert len(samples) == expected["samples"]
    assert len(comp) == expected["comparisons"]
    assert int(comp.mated.sum()) == expected["mated"]
    if ds.templates() is None:  # mated flags agree with subjects
        subj = np.asarray(samples.subjects)
        assert np.array_equal(subj[comp.a] == subj[comp.b], comp.mated)
    crops = ds.read_images([0, len(samples) - 1])
    assert crops.shape == (2, 112, 112, 3) and crops.dtype == np.uint8
    assert len(ds.manifest_digest()) == 64


def test_cfp_protocols(tmp_path: Path) -> None:
    expected = L.make_cfp(tmp_path)
    for build, split in ((cfp.build_cfp_fp, "FP"), (cfp.build_cfp_ff, "FF")):
        ds = build(options={"root": str(tmp_path), "workers": 1})
        comp = ds.comparisons()
        assert (len(ds.samples()), len(comp), int(comp.mated.sum())) == tuple(expected[split].values())
        assert set(ds.folds().tolist()) == {0, 1}
        assert ds.alignment == "fixed(crop_fraction=0.7)"
    fp = cfp.build_cfp_fp(options={"root": str(tmp_path)})
    assert fp.samples().ids[:2] == ("Data/Images/001/frontal/01.jpg", "Data/Images/001/profile/01.jpg")
    assert fp.samples().subjects[:2] == ("001", "001")


def test_lfw_folds_subjects_and_layouts(tmp_path: Path) -> None:
    L.make_lfw(tmp_path / "plain")
    ds = _build("lfw", tmp_path / "plain")
    assert ds.folds().tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert ds.comparisons().mated.tolist() == [True, True, False, False] * 2
    assert ds.samples().ids[0] == "Ann_A/Ann_A_0001.jpg" and ds.samples().subjects[0] == "Ann_A"
    assert ds.alignment == "fixed(crop_fraction=0.55)"
    # Deep-funneled layout is found by images=auto, and is another manifest (other pixels).
    L.make_lfw(tmp_path / "deep", folder="lfw-deepfunneled")
    deep = _build("lfw", tmp_path / "deep")
    assert deep.image_root.name == "lfw-deepfunneled"
    assert deep.manifest_digest() != ds.manifest_digest()
    # The digest covers the protocol file: one changed byte (a number) changes it.
    pairs = tmp_path / "plain" / "pairs.txt"
    pairs.write_text(pairs.read_text().replace("Ann_A\t1\t3", "Ann_A\t1\t4", 1))
    L.write_image(tmp_path / "plain" / "lfw" / "Ann_A" / "Ann_A_0004.jpg", 99, (50, 50))
    assert _build("lfw", tmp_path / "plain").manifest_digest() != ds.manifest_digest()


def test_fixed_crop_is_the_central_square(tmp_path: Path) -> None:
    L.make_lfw(tmp_path, size=(200, 200))
    ds = _build("lfw", tmp_path, crop_fraction=0.56)
    raw = ds.decode(0)
    crop = ds.read_images([0])[0]
    from PIL import Image

    expected = np.asarray(Image.fromarray(raw[44:156, 44:156]))  # 0.56 * 200 = 112: no resampling
    assert np.abs(crop.astype(int) - expected.astype(int)).max() <= 1


def test_landmarks_file_aligns(tmp_path: Path) -> None:
    from fiqabench_plugins.datasets.align import ARCFACE_TEMPLATE_112

    info = L.make_lfw(tmp_path, size=(112, 112))
    lines = [f"{rel} " + " ".join(f"{v:.4f}" for v in ARCFACE_TEMPLATE_112.reshape(-1)) for rel in info["images"]]
    (tmp_path / "lm.txt").write_text("\n".join(lines) + "\n")
    ds = _build("lfw", tmp_path, landmarks=str(tmp_path / "lm.txt"))
    assert ds.alignment == "landmarks(lm.txt)"
    # Landmarks on the template itself: the warp is the identity.
    assert np.abs(ds.read_images([0])[0].astype(int) - ds.decode(0).astype(int)).max() <= 1
    (tmp_path / "lm.txt").write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(InputFormatError, match="no landmarks for 1 of"):
        _build("lfw", tmp_path, landmarks=str(tmp_path / "lm.txt"))


def test_ijbc_templates_and_subjects(tmp_path: Path) -> None:
    L.make_ijb(tmp_path)
    ds = _build("ijbc", tmp_path)
    t = ds.templates()
    assert t.ids == ("101", "102", "103", "201", "202", "203")
    assert t.sample_template.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert t.media_ids.tolist()[:4] == [1010, 1011, 1020, 1021]
    assert t.detector_scores[0] == pytest.approx(0.99) and t.detector_scores[1] == pytest.approx(0.5)
    comp = ds.comparisons()
    assert comp.a.tolist() == [0, 0, 3, 0, 1, 2, 1] and comp.b.tolist() == [1, 2, 4, 3, 4, 5, 5]
    assert set(ds.samples().subjects[:6]) == {"1"} and "1:N metadata" in ds.subjects_source
    no_1n = tmp_path / "no1n"
    L.make_ijb(no_1n, with_1n=False)
    ds2 = _build("ijbc", no_1n)
    assert ds2.samples().subjects[:3] == ("t101", "t101", "t102") and "no 1:N" in ds2.subjects_source
    # The crop is the loose crop warped by its five landmarks.
    from fiqabench_plugins.datasets.align import warp_to_arcface

    raw = ds.decode(0)
    expected = warp_to_arcface(raw, ds.alignment_spec.landmarks[0]).astype(int)
    assert np.abs(ds.read_images([0])[0].astype(int) - expected).max() <= 1  # batched vs single estimate


def test_adience_identity_and_sampling(tmp_path: Path) -> None:
    L.make_adience(tmp_path)
    ds = _build("adience", tmp_path, non_mated="4", seed=3)
    comp = ds.comparisons()
    assert int(comp.mated.sum()) == 5 and int((~comp.mated).sum()) == 4
    # (user_id, face_id) separates u1's two faces, which face_id alone would not from u2's face 1.
    assert ds.samples().subjects[:5] == ("u1/1", "u1/1", "u1/1", "u1/2", "u1/2")
    again = _build("adience", tmp_path, non_mated="4", seed=3).comparisons()
    other = _build("adience", tmp_path, non_mated="4", seed=4).comparisons()
    assert np.array_equal(again.a, comp.a) and np.array_equal(again.b, comp.b)
    assert not (np.array_equal(other.a, comp.a) and np.array_equal(other.b, comp.b))


def test_all_pairs_sampling_is_seeded_distinct_and_non_mated() -> None:
    subjects = [f"s{i // 4}" for i in range(400)]
    a, b, mated = base.all_pairs(subjects, 5000, seed=1)
    assert int(mated.sum()) == 100 * 6 and int((~mated).sum()) == 5000
    na, nb = a[~mated], b[~mated]
    assert (na < nb).all() and len(set(zip(na.tolist(), nb.tolist()))) == 5000
    assert all(subjects[x] != subjects[y] for x, y in zip(na[:500], nb[:500]))
    a2, b2, _ = base.all_pairs(subjects, 5000, seed=1)
    assert np.array_equal(a, a2) and np.array_equal(b, b2)
    with pytest.raises(ConfigError, match="non_mated=N"):
        base.all_pairs(subjects, None, seed=0, limit=1000)


def test_folder_pair_list_and_align_options(tmp_path: Path) -> None:
    L.make_folder(tmp_path / "f", size=(90, 90))
    (tmp_path / "pairs.txt").write_text("person0/img0.jpg person0/img1.jpg 1\nperson0/img0.jpg person1/img0.jpg 0\n")
    ds = _build("folder", tmp_path / "f", pairs=str(tmp_path / "pairs.txt"))
    assert ds.comparisons().a.tolist() == [0, 0] and ds.comparisons().mated.tolist() == [True, False]
    assert ds.alignment == "none" and ds.read_images([0]).shape == (1, 112, 112, 3)  # resized
    assert _build("folder", tmp_path / "f", align="fixed").alignment == "fixed(crop_fraction=0.55)"
    reason = folder.dlib_unavailable_reason()
    if reason is not None:  # the dlib extra is not installed here: the option says how to get it
        assert "pip install 'fiqabench[dlib]'" in reason
        with pytest.raises(ConfigError, match="align=dlib needs"):
            _build("folder", tmp_path / "f", align="dlib")
        avail = reg._root_reason("folder")({"root": str(tmp_path / "f"), "align": "dlib"})
        assert avail == reason


def test_folder_dlib_alignment_with_a_stub_detector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    from fiqabench_plugins.datasets.align import ARCFACE_TEMPLATE_112

    calls = []

    def detect_landmarks5(image, detector="hog", multiple="largest"):
        calls.append((image.shape, detector, multiple))
        return (None, 0) if len(calls) == 2 else (ARCFACE_TEMPLATE_112 * 0.8 + 5, 1)

    package = types.ModuleType("fiqabench_plugins.dlib")
    package.detection_unavailable = lambda: None
    module = types.ModuleType("fiqabench_plugins.dlib.detect")
    module.detect_landmarks5 = detect_landmarks5
    monkeypatch.setitem(sys.modules, "fiqabench_plugins.dlib", package)
    monkeypatch.setitem(sys.modules, "fiqabench_plugins.dlib.detect", module)
    L.make_folder(tmp_path, size=(100, 100))
    ds = _build("folder", tmp_path, align="dlib")
    assert ds.alignment.startswith("dlib")
    crops = ds.read_images([0, 1])
    assert crops.shape == (2, 112, 112, 3)
    assert calls[0] == ((100, 100, 3), "hog", "largest")
    assert ds.detection_failures == ["person0/img1.jpg"]


def test_missing_root_is_refused_naming_option_and_layout(tmp_path: Path) -> None:
    for name in reg.LAYOUTS:
        reason = reg._root_reason(name)({})
        assert f"--dataset-option {name}:root=" in reason and reg.LAYOUTS[name] in reason
        assert "not a folder" in reg._root_reason(name)({"root": str(tmp_path / "nope")}) or name == "insightface-bin"
    with pytest.raises(MissingArtifactError, match="lfw:root=DIR"):
        lfw.build_lfw(options={})


# -- insightface .bin: the restricted unpickler ----------------------------------------------------
def test_bin_file_and_folder(tmp_path: Path) -> None:
    expected = L.make_bin(tmp_path / "cfp_fp.bin")
    L.make_bin(tmp_path / "py3.bin", protocol=4)
    ds = insightface_bin.build_insightface_bin(options={"root": str(tmp_path / "cfp_fp.bin")})
    comp = ds.comparisons()
    assert (len(ds.samples()), len(comp), int(comp.mated.sum())) == (expected["samples"], expected["comparisons"], expected["mated"])
    assert comp.a.tolist()[:2] == [0, 2] and comp.b.tolist()[:2] == [1, 3]
    assert ds.folds().tolist() == [i * 10 // 20 for i in range(20)]
    assert ds.samples().ids[0] == "cfp_fp/00000"
    crop = ds.read_images([3])[0]
    assert np.abs(crop.astype(int) - L.image(3, (112, 112)).astype(int)).mean() < 3  # JPEG round trip, RGB order
    by_name = insightface_bin.build_insightface_bin(options={"root": str(tmp_path), "name": "py3"})
    assert len(by_name.comparisons()) == 20
    with pytest.raises(ConfigError, match="found: cfp_fp, py3"):
        insightface_bin.build_insightface_bin(options={"root": str(tmp_path)})


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_bin_malicious_pickle_is_rejected_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.bin"
    evil.write_bytes(pickle.dumps(([_Exploit(marker)], [True]), protocol=2))
    assert b"system" in evil.read_bytes()
    with pytest.raises(InputFormatError, match=r"evil\.bin: not a valid .bin validation file: global (posix|nt)\.system is not allowed"):
        insightface_bin.load_bin(evil)
    assert not marker.exists()
    # The file really calls os.system when unpickled (checked without running it).
    import pickletools

    opcodes = [(op.name, arg) for op, arg, _ in pickletools.genops(evil.read_bytes())]
    assert any(name == "GLOBAL" and str(arg).endswith("system") for name, arg in opcodes), opcodes


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (pickle.dumps(([b"x"], [True])), "1 images for 1 pairs"),
        (pickle.dumps(([b"x", 3], [True])), "bins[1]"),
        (pickle.dumps(([b"x", b"y"], ["yes"])), "issame_list[0]"),
        (pickle.dumps({"a": 1}), "expected a pickled pair"),
        (pickle.dumps(([b"x", b"y"], [True]))[:-5], "not a valid .bin"),
        (pickle.dumps((np.zeros(3, dtype=np.float64), [True])), "numpy dtype 'f8' is not allowed"),
    ],
)
def test_bin_malformed(tmp_path: Path, payload: bytes, fragment: str) -> None:
    path = tmp_path / "bad.bin"
    path.write_bytes(payload)
    with pytest.raises(InputFormatError) as info:
        insightface_bin.load_bin(path)
    assert fragment in str(info.value) and str(path) in str(info.value)


def test_bin_accepts_numpy_uint8_and_bool_arrays(tmp_path: Path) -> None:
    bins = [np.frombuffer(L.jpeg_bytes(i, (112, 112)), dtype=np.uint8) for i in range(4)]
    path = tmp_path / "np.bin"
    path.write_bytes(pickle.dumps((bins, np.array([True, False])), protocol=2))
    images, issame, _ = insightface_bin.load_bin(path)
    assert issame.tolist() == [True, False] and images[0] == bins[0].tobytes()


# -- malformed variants through the CLI: one line with file and line, exit 2, cache untouched -------
def _lfw_tree(root: Path) -> Path:
    L.make_lfw(root)
    return root / "pairs.txt"


def _edit_line(path: Path, lineno: int, new: str | None) -> None:
    lines = path.read_text().split("\n")
    if new is None:
        del lines[lineno - 1]
    else:
        lines[lineno - 1] = new
    path.write_text("\n".join(lines))


def _truncate(path: Path) -> None:
    text = path.read_text().rstrip("\n")
    path.write_text(text[: text.rfind("\t")])  # the last line loses its last field


def _lfw_cases():
    return [
        ("truncated", lambda r: _truncate(r / "pairs.txt"), "pairs.txt:9: image number: expected an integer, found 'Cy_C'"),
        ("columns", lambda r: _edit_line(r / "pairs.txt", 2, "Ann_A\t1\t3\t4\t5"), "pairs.txt:2: expected 3 or 4 columns"),
        ("non-numeric", lambda r: _edit_line(r / "pairs.txt", 3, "Bob_B\ttwo\t3"), "pairs.txt:3: image number: expected an integer"),
        ("missing image", lambda r: os.remove(r / "lfw" / "Bob_B" / "Bob_B_0003.jpg"), "pairs.txt:3: image Bob_B/Bob_B_0003.jpg not found"),
        ("duplicate", lambda r: _edit_line(r / "pairs.txt", 3, "Ann_A\t3\t1"), "pairs.txt:3: duplicate pair: the same two images as line 2"),
        ("directory", lambda r: (os.remove(r / "pairs.txt"), (r / "pairs.txt").mkdir()), "pairs.txt: pair list is a directory"),
        ("image directory", lambda r: (os.remove(r / "lfw/Ann_A/Ann_A_0001.jpg"), (r / "lfw/Ann_A/Ann_A_0001.jpg").mkdir()),
         "pairs.txt:2: image Ann_A/Ann_A_0001.jpg is a directory"),
        ("header", lambda r: _edit_line(r / "pairs.txt", 1, "3\t2"), "pairs.txt: the header promises 3 folds"),
    ]


def _run_cli_in_process(capsys: pytest.CaptureFixture, args: list[str]) -> tuple[int, str]:
    code = cli_main(args)
    err = capsys.readouterr().err
    return code, err


def _assert_cli_error(tmp_path: Path, capsys: pytest.CaptureFixture, dataset: str, root: Path, fragment: str,
                      extra: tuple[str, ...] = ()) -> None:
    cache = tmp_path / "cache"
    code, err = _run_cli_in_process(capsys, [
        "run", "--datasets", dataset, "--methods", "random", "--fr-models", "synthetic-arcface",
        "--allow-domain-mismatch", "--dataset-option", f"{dataset}:root={root}", *extra,
        "--output", str(tmp_path / "out"), "--cache-dir", str(cache), "-q",
    ])
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert fragment in lines[0], lines[0]
    # The cache is untouched: datasets are parsed before the cache folder is created.
    assert not cache.exists(), sorted(p.name for p in cache.rglob("*"))


@pytest.mark.parametrize("case", _lfw_cases(), ids=lambda c: c[0])
def test_lfw_malformed_variants_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture, case) -> None:
    _name, mutate, fragment = case
    root = tmp_path / "lfw"
    _lfw_tree(root)
    mutate(root)
    _assert_cli_error(tmp_path, capsys, "lfw", root, fragment)


def _calfw_cases():
    f = "pairs_CALFW.txt"
    return [
        ("truncated", lambda r: _edit_line(r / f, 10, None) or _edit_line(r / f, 10, None), f"{f}:9: the last pair has only one line"),
        ("columns", lambda r: _edit_line(r / f, 1, "Ann_A_0001.jpg 1 x"), f"{f}:1: expected 2 columns"),
        ("non-numeric", lambda r: _edit_line(r / f, 2, "Ann_A_0002.jpg one"), f"{f}:2: fold token: expected an integer"),
        ("missing image", lambda r: os.remove(r / "aligned images" / "Cy_C_0003.jpg"), f"{f}:6: image Cy_C_0003.jpg not found"),
        ("duplicate", lambda r: (_edit_line(r / f, 3, "Ann_A_0002.jpg 2"), _edit_line(r / f, 4, "Ann_A_0001.jpg 2")),
         f"{f}:4: duplicate pair: the same two images as line 2"),
        ("directory", lambda r: (os.remove(r / f), (r / f).mkdir()), f"{f}: pair list is a directory"),
        ("mismatched tokens", lambda r: _edit_line(r / f, 2, "Ann_A_0002.jpg 3"), f"{f}:2: token 3 differs from 1 on line 1"),
    ]


@pytest.mark.parametrize("case", _calfw_cases(), ids=lambda c: c[0])
def test_calfw_malformed_variants_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture, case) -> None:
    _name, mutate, fragment = case
    root = tmp_path / "calfw"
    L.make_calfw(root)
    mutate(root)
    _assert_cli_error(tmp_path, capsys, "calfw", root, fragment)


def _cfp_cases():
    fl, same = "Pair_list_F.txt", "Split/FP/01/same.txt"
    return [
        ("truncated", lambda r: (r / "Protocol" / same).write_text("1,1\n3"), f"{same}:2: expected 2 columns"),
        ("columns", lambda r: _edit_line(r / "Protocol" / fl, 2, "2 ../Data/Images/001/frontal/02.jpg extra"), f"{fl}:2: expected 2 columns"),
        ("non-numeric", lambda r: (r / "Protocol" / same).write_text("1,x\n"), f"{same}:1: second index: expected an integer"),
        ("missing image", lambda r: os.remove(r / "Data/Images/002/profile/01.jpg"), f"{same}:2: image Data/Images/002/profile/01.jpg not found"),
        ("duplicate", lambda r: (r / "Protocol" / same).write_text("1,1\n1,1\n"), f"{same}:2: duplicate pair"),
        ("directory", lambda r: (os.remove(r / "Protocol" / same), (r / "Protocol" / same).mkdir()), f"{same}: cfp-fp fold list is a directory"),
        ("unknown index", lambda r: (r / "Protocol" / same).write_text("99,1\n"), f"{same}:1: frontal index 99 is not in"),
    ]


@pytest.mark.parametrize("case", _cfp_cases(), ids=lambda c: c[0])
def test_cfp_malformed_variants_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture, case) -> None:
    _name, mutate, fragment = case
    L.make_cfp(tmp_path / "cfp")
    mutate(tmp_path / "cfp")
    _assert_cli_error(tmp_path, capsys, "cfp-fp", tmp_path / "cfp", fragment)


def _adience_cases():
    f = "fold_1_data.txt"
    return [
        ("truncated", lambda r: (r / f).write_text(L.ADIENCE_HEADER + "\nu1\tc.jpg"), f"{f}:2: expected 12 tab-separated columns"),
        ("columns", lambda r: _edit_line(r / f, 2, "u1\tc.jpg\t1"), f"{f}:2: expected 12 tab-separated columns"),
        ("non-numeric", lambda r: _edit_line(r / f, 2, "u1\tc.jpg\tone\t(25, 32)\tf\t1\t2\t3\t4\t0\t0\t55"), f"{f}:2: face_id: expected an integer"),
        ("missing image", lambda r: os.remove(r / "aligned/u1/landmark_aligned_face.1.c.jpg"), f"{f}:2: image aligned/u1/landmark_aligned_face.1.c.jpg not found"),
        ("duplicate", lambda r: (r / f).write_text((r / "fold_0_data.txt").read_text()), f"{f}:2: face aligned/u1/landmark_aligned_face.1.a.jpg already listed at fold_0_data.txt:2"),
        ("directory", lambda r: (os.remove(r / f), (r / f).mkdir()), f"{f}: Adience fold file is a directory"),
        ("header", lambda r: (r / f).write_text("user\tfile\n"), f"{f}:1: header lacks column(s) user_id, original_image, face_id"),
    ]


@pytest.mark.parametrize("case", _adience_cases(), ids=lambda c: c[0])
def test_adience_malformed_variants_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture, case) -> None:
    _name, mutate, fragment = case
    L.make_adience(tmp_path / "ad")
    mutate(tmp_path / "ad")
    _assert_cli_error(tmp_path, capsys, "adience", tmp_path / "ad", fragment)


def _ijb_cases():
    tid, lmk, pairs = "ijbc_face_tid_mid.txt", "ijbc_name_5pts_score.txt", "ijbc_template_pair_label.txt"
    m = lambda r, n: r / "meta" / n  # noqa: E731
    return [
        ("truncated", lambda r: m(r, pairs).write_text(m(r, pairs).read_text().rstrip("\n")[:-2]), f"{pairs}:7: expected 3 columns"),
        ("columns", lambda r: _edit_line(m(r, tid), 3, "3.jpg 102"), f"{tid}:3: expected 3 columns"),
        ("non-numeric", lambda r: _edit_line(m(r, lmk), 4, "4.jpg 1 2 3 4 5 6 7 8 9 ten 0.9"), f"{lmk}:4: y5: expected a number"),
        ("missing image", lambda r: os.remove(r / "loose_crop" / "5.jpg"), f"{tid}:5: image 5.jpg not found"),
        ("duplicate", lambda r: m(r, pairs).write_text(m(r, pairs).read_text() + "102 101 1\n"), f"{pairs}:8: duplicate pair: templates 102 and 101"),
        ("directory", lambda r: (os.remove(m(r, lmk)), m(r, lmk).mkdir()), f"{lmk}: landmark and score list is a directory"),
        ("label", lambda r: _edit_line(m(r, pairs), 2, "101 103 2"), f"{pairs}:2: label: expected 1 or 0"),
        ("unknown template", lambda r: _edit_line(m(r, pairs), 3, "201 999 0"), f"{pairs}:3: template_b: template 999 has no image"),
        ("order", lambda r: _edit_line(m(r, lmk), 2, "9.jpg 1 2 3 4 5 6 7 8 9 10 0.9"), f"{lmk}:2: image 9.jpg where"),
        ("1:N", lambda r: m(r, "ijbc_1N_probe_mixed.csv").write_text("TEMPLATE_ID,SUBJECT_ID\n201,x\n"), "ijbc_1N_probe_mixed.csv:2: SUBJECT_ID: expected an integer"),
    ]


@pytest.mark.parametrize("case", _ijb_cases(), ids=lambda c: c[0])
def test_ijbc_malformed_variants_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture, case) -> None:
    _name, mutate, fragment = case
    L.make_ijb(tmp_path / "ijbc")
    mutate(tmp_path / "ijbc")
    _assert_cli_error(tmp_path, capsys, "ijbc", tmp_path / "ijbc", fragment)


def _folder_cases():
    return [
        ("truncated", "person0/img0.jpg person0/img1.jpg 1\nperson0/img0.jpg person1/img0.jpg", "pairs.txt:2: expected 3 columns"),
        ("columns", "person0/img0.jpg person0/img1.jpg 1 1\n", "pairs.txt:1: expected 3 columns"),
        ("non-numeric", "person0/img0.jpg person0/img1.jpg yes\n", "pairs.txt:1: mated: expected 1 or 0"),
        ("missing image", "person0/img0.jpg person0/img7.jpg 1\n", "pairs.txt:1: b: no image person0/img7.jpg"),
        ("duplicate", "person0/img0.jpg person0/img1.jpg 1\nperson0/img1.jpg person0/img0.jpg 1\n", "pairs.txt:2: duplicate pair"),
        ("wrong flag", "person0/img0.jpg person1/img1.jpg 1\n", "pairs.txt:1: mated=1 but the identities are"),
    ]


@pytest.mark.parametrize("case", _folder_cases(), ids=lambda c: c[0])
def test_folder_malformed_variants_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture, case) -> None:
    _name, text, fragment = case
    L.make_folder(tmp_path / "f")
    (tmp_path / "pairs.txt").write_text(text)
    _assert_cli_error(tmp_path, capsys, "folder", tmp_path / "f", fragment,
                      extra=("--dataset-option", f"folder:pairs={tmp_path / 'pairs.txt'}"))


def test_folder_pairs_given_as_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    L.make_folder(tmp_path / "f")
    (tmp_path / "pairs.txt").mkdir()
    _assert_cli_error(tmp_path, capsys, "folder", tmp_path / "f", "pairs.txt: pair list is a directory",
                      extra=("--dataset-option", f"folder:pairs={tmp_path / 'pairs.txt'}"))


def test_bin_malformed_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "lfw.bin").write_bytes(pickle.dumps(([b"x"], [True, False])))
    _assert_cli_error(tmp_path, capsys, "insightface-bin", tmp_path / "lfw.bin", "lfw.bin: 1 images for 2 pairs")
    shutil.rmtree(tmp_path / "out", ignore_errors=True)
    (tmp_path / "dir.bin").mkdir()
    _assert_cli_error(tmp_path, capsys, "insightface-bin", tmp_path / "dir.bin", "choose a file with")


def test_missing_root_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, err = _run_cli_in_process(capsys, ["run", "--datasets", "ijbc", "--methods", "random", "--output",
                                             str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "-q"])
    assert code == 2
    assert "dataset 'ijbc' is unavailable: set --dataset-option ijbc:root=DIR, where DIR holds loose_crop/" in err
    assert not (tmp_path / "cache").exists()


# -- IJB-C end to end through `fiqabench run` with a toy FR model ---------------------------------
TOY_ALIGNED = '''
from fiqabench import FRCapabilities, hookimpl


def build(*, options, device):
    """8 x 8 block means of the 112 px crop, randomly projected: enough to tell the toy images apart."""
    import torch
    from torch import nn

    from fiqabench import InputSpace
    from fiqabench.fr import TorchFRModel

    torch.manual_seed(5)
    trunk = nn.Sequential(nn.AvgPool2d(14), nn.Flatten(), nn.Linear(8 * 8 * 3, 16, bias=False))
    return TorchFRModel(name="toy-aligned", version="1", domain="aligned-112-face",
                        input_space=InputSpace(size=(112, 112)), embedding_size=16, trunk=trunk,
                        head=nn.Identity(), weights_digest="toy", device=device)


@hookimpl
def fiqabench_register_fr_models(register):
    register("toy-aligned", build, version="1", summary="toy FR on aligned 112 px crops",
             domain="aligned-112-face",
             capabilities=FRCapabilities(differentiable=True, has_dropout=False, has_trunk_head=True))
'''


def test_ijbc_template_path_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import json

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "toy_aligned.py").write_text(TOY_ALIGNED)
    L.make_ijb(tmp_path / "IJBC")
    args = ["run", "--plugins-dir", str(plugins), "--datasets", "ijbc", "--dataset-option",
            f"ijbc:root={tmp_path / 'IJBC'}", "--dataset-option", "ijbc:workers=2", "--fr-models", "toy-aligned",
            "--methods", "random", "--output", str(tmp_path / "out"),
            "--cache-dir", str(tmp_path / "cache"), "-q", "--formats", "csv", "--discard-limits", "0.3", "--fmr", "0.25"]
    code, err = _run_cli_in_process(capsys, args)
    assert code == 0, err
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    (protocol,) = doc["protocols"]
    assert protocol["dataset"] == "ijbc" and protocol["n_mated"] == 3 and protocol["n_non_mated"] == 4
    assert protocol["template_pooling"]["detector_score"] is True and protocol["template_pooling"]["flip"] is True
    (row,) = doc["results"]
    assert row["template_quality_rule"] == "min" and row["dataset"] == "ijbc"
    # Qualities are per image (12), comparisons per template (7).
    qualities = (tmp_path / "out" / "qualities.csv").read_text().strip().splitlines()
    assert len(qualities) == 1 + 12
    # A second run is served from the cache (same manifest) and gives the same figures.
    args[args.index("--output") + 1] = str(tmp_path / "out2")
    code, err = _run_cli_in_process(capsys, args)
    assert code == 0, err
    doc2 = json.loads((tmp_path / "out2" / "results.json").read_text())
    assert doc2["results"][0]["pauc"] == row["pauc"] and doc2["protocols"][0]["threshold"] == protocol["threshold"]


def test_calfw_folds_from_tokens_and_from_blocks(tmp_path: Path) -> None:
    L.make_calfw(tmp_path / "a")
    ds = _build("calfw", tmp_path / "a")
    # Mated tokens 1, 2, 2 -> folds 0, 1, 1; two non-mated pairs -> blocks 0 and 5.
    assert ds.folds().tolist() == [0, 1, 1, 0, 5]
    lines = []
    names = [f"P{i}_A" for i in range(12)]
    for i in range(10):
        lines += [f"{names[i]}_1.jpg 1", f"{names[i]}_2.jpg 1"]
    for i in range(10):
        lines += [f"{names[i]}_1.jpg 0", f"{names[i + 1]}_2.jpg 0"]
    root = tmp_path / "b"
    root.mkdir()
    (root / "pairs_CPLFW.txt").write_text("\n".join(lines) + "\n")
    for text in lines:
        L.write_image(root / "aligned images" / text.split()[0], 0, (112, 112))
    folds = _build("cplfw", root).folds().tolist()
    assert folds == list(range(10)) * 1 + list(range(10))
