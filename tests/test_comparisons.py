"""Comparison scores, IJB-C template pooling and the grouped-GEMM template pair scorer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fiqabench.errors import MetricInputError
from fiqabench.metrics.comparisons import (
    PoolingRecord,
    cosine_scores,
    pool_templates,
    template_pair_scores,
)

# --------------------------------------------------------------------------------------------
# cosine_scores
# --------------------------------------------------------------------------------------------


def test_cosine_hand_vectors() -> None:
    emb = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, -2.0], [-3.0, 0.0, 0.0]])
    scores = cosine_scores(emb, [0, 0, 1, 0, 2], [1, 2, 1, 3, 2])
    expected = [1 / math.sqrt(2), 0.0, 1.0, -1.0, 1.0]
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-15)
    assert scores.dtype == np.float64


def test_cosine_float32_input_accumulates_in_float64() -> None:
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((50, 512)).astype(np.float32)
    a, b = rng.integers(0, 50, 300), rng.integers(0, 50, 300)
    e64 = emb.astype(np.float64)
    exact = np.einsum("ij,ij->i", e64[a], e64[b]) / (
        np.linalg.norm(e64[a], axis=1) * np.linalg.norm(e64[b], axis=1)
    )
    # Chunk boundaries (block=7) must not change anything.
    np.testing.assert_allclose(cosine_scores(emb, a, b, block=7), exact, rtol=0, atol=1e-14)


def test_cosine_ignores_bad_rows_no_pair_uses() -> None:
    emb = np.array([[1.0, 0.0], [np.nan, 0.0], [0.0, 0.0], [0.0, 1.0]])
    assert cosine_scores(emb, [0], [3]).tolist() == [0.0]
    assert cosine_scores(emb, [], []).shape == (0,)


@pytest.mark.parametrize(
    ("emb", "a", "b", "message"),
    [
        ([[1.0, 0.0], [np.nan, 1.0]], [0], [1], "contain NaN or inf: rows 1"),
        ([[1.0, 0.0], [np.inf, 1.0]], [1], [0], "contain NaN or inf: rows 1"),
        ([[1.0, 0.0], [0.0, 0.0]], [0], [1], "zero norm"),
        ([[1.0, 0.0], [0.0, 1.0]], [0, 2], [1, 1], r"a: 1 index\(es\) out of range \[0, 2\): a\[1\] = 2"),
        ([[1.0, 0.0], [0.0, 1.0]], [0], [-1], r"b\[0\] = -1"),
        ([[1.0, 0.0], [0.0, 1.0]], [0, 1], [1], "a and b differ in length: 2 vs 1"),
        ([[1.0, 0.0], [0.0, 1.0]], [0.0], [1], "expected integer indices"),
        ([1.0, 0.0], [0], [0], "expected a 2-D array"),
        ([[1, 0], [0, 1]], [0], [1], "expected floating-point features"),
    ],
)
def test_cosine_errors(emb: object, a: object, b: object, message: str) -> None:
    with pytest.raises(MetricInputError, match=message):
        cosine_scores(emb, a, b)


# --------------------------------------------------------------------------------------------
# pool_templates on a hand-built 2-template example
# --------------------------------------------------------------------------------------------

# Template 0: sample 0 (media 10, a still), samples 1 and 2 (media 20, two video frames).
# Template 1: samples 3 and 4 (both media 10: the same media id in another template is another
# media) and sample 5 (media 30). Sample 6 is in no template (-1) and holds NaN: it must be ignored.
EMB = np.array(
    [
        [2.0, 0.0],
        [0.0, 1.0],
        [0.0, 3.0],
        [3.0, 4.0],
        [1.0, 0.0],
        [0.0, 2.0],
        [np.nan, np.nan],
    ]
)
FLIP = np.array(
    [
        [0.0, 2.0],
        [0.0, 1.0],
        [4.0, 0.0],
        [0.0, 0.0],
        [1.0, 0.0],
        [0.0, 1.0],
        [np.nan, np.nan],
    ]
)
TEMPLATE = np.array([0, 0, 0, 1, 1, 1, -1])
MEDIA = np.array([10, 20, 20, 10, 10, 30, 99])
DET = np.array([0.5, 1.0, 0.25, 1.0, 2.0, 0.5, 1.0])


def _unit(v: list[float]) -> list[float]:
    x = np.asarray(v, dtype=np.float64)
    return (x / np.linalg.norm(x)).tolist()


def test_pool_raw_norm_no_flip_no_detector() -> None:
    feats, record = pool_templates(EMB, TEMPLATE, MEDIA, detector_score=False)
    # T0: (2,0) + mean((0,1),(0,3)) = (2,2). T1: mean((3,4),(1,0)) + (0,2) = (2,2)+(0,2) = (2,4).
    np.testing.assert_allclose(feats, [_unit([2, 2]), _unit([2, 4])], atol=1e-7)
    assert feats.dtype == np.float32 and feats.shape == (2, 2)
    assert record == PoolingRecord(flip=False, norm_score=True, detector_score=False)


def test_pool_l2_normalised_images() -> None:
    feats, record = pool_templates(EMB, TEMPLATE, MEDIA, norm_score=False, detector_score=False)
    # Unit images. T0: (1,0) + mean((0,1),(0,1)) = (1,1). T1: mean((.6,.8),(1,0)) + (0,1) = (.8,1.4).
    np.testing.assert_allclose(feats, [_unit([1, 1]), _unit([0.8, 1.4])], atol=1e-7)
    assert record.as_dict() == {
        "flip": False,
        "norm_score": False,
        "detector_score": False,
        "rule": "insightface-ijbc",
    }


def test_pool_detector_weighting() -> None:
    feats, record = pool_templates(EMB, TEMPLATE, MEDIA, detector_scores=DET)
    # T0: 0.5*(2,0) + mean(1.0*(0,1), 0.25*(0,3)) = (1,0) + (0,0.875) = (1, 0.875).
    # T1: mean(1*(3,4), 2*(1,0)) + 0.5*(0,2) = (2.5,2) + (0,1) = (2.5, 3).
    np.testing.assert_allclose(feats, [_unit([1, 0.875]), _unit([2.5, 3])], atol=1e-7)
    assert record.detector_score and record.norm_score and not record.flip


def test_pool_flip_sum_then_normalise_then_weight() -> None:
    feats, record = pool_templates(
        EMB, TEMPLATE, MEDIA, flip_embeddings=FLIP, detector_scores=DET, norm_score=False
    )
    # Image features emb + flip: (2,2), (0,2), (4,3), (3,4), (2,0), (0,3); L2-normalised:
    # (1,1)/r2, (0,1), (.8,.6), (.6,.8), (1,0), (0,1); times detector 0.5, 1, .25, 1, 2, .5.
    r2 = math.sqrt(2)
    t0 = np.array([0.5 / r2, 0.5 / r2]) + (np.array([0.0, 1.0]) + np.array([0.2, 0.15])) / 2
    t1 = (np.array([0.6, 0.8]) + np.array([2.0, 0.0])) / 2 + np.array([0.0, 0.5])
    np.testing.assert_allclose(feats, [_unit(t0.tolist()), _unit(t1.tolist())], atol=1e-7)
    assert record == PoolingRecord(flip=True, norm_score=False, detector_score=True)


def test_pool_flip_raw_norm() -> None:
    feats, _ = pool_templates(EMB, TEMPLATE, MEDIA, flip_embeddings=FLIP, detector_score=False)
    # T0: (2,2) + mean((0,2),(4,3)) = (4, 4.5). T1: mean((3,4),(2,0)) + (0,3) = (2.5, 5).
    np.testing.assert_allclose(feats, [_unit([4, 4.5]), _unit([2.5, 5])], atol=1e-7)


def _pool_loop(emb: np.ndarray, tmpl: np.ndarray, media: np.ndarray, det: np.ndarray) -> np.ndarray:
    """insightface's loop (image2template_feature) restated, for the randomised comparison."""
    feats = emb / np.linalg.norm(emb, axis=1, keepdims=True) * det[:, None]
    out = np.zeros((tmpl.max() + 1, emb.shape[1]))
    for t in np.unique(tmpl[tmpl >= 0]):
        idx = np.flatnonzero(tmpl == t)
        medias = [feats[idx[media[idx] == m]].mean(axis=0) for m in np.unique(media[idx])]
        out[t] = np.sum(medias, axis=0)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_pool_matches_insightface_loop_on_random_data() -> None:
    rng = np.random.default_rng(5)
    n = 20_000  # more than one pooling chunk, so chunk boundaries are exercised
    emb = rng.standard_normal((n, 16)).astype(np.float32)
    tmpl = rng.integers(-1, 400, n)
    tmpl[:400] = np.arange(400)  # every template has a sample
    media = rng.integers(0, 6, n)
    det = rng.uniform(0.1, 1.0, n)
    order = rng.permutation(n)  # samples need not be sorted by template
    feats, _ = pool_templates(emb[order], tmpl[order], media[order], detector_scores=det[order], norm_score=False)
    np.testing.assert_allclose(feats, _pool_loop(emb.astype(np.float64), tmpl, media, det), atol=2e-6)


def test_pool_string_media_ids() -> None:
    feats, _ = pool_templates(EMB[:6], TEMPLATE[:6], np.array(["x", "v", "v", "x", "x", "y"]), detector_score=False)
    np.testing.assert_allclose(feats, [_unit([2, 2]), _unit([2, 4])], atol=1e-7)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"detector_score": True}, "detector_score=True needs detector_scores"),
        ({"detector_score": False, "n_templates": 3}, r"1 template\(s\) have no samples: templates 2"),
        ({"detector_score": False, "n_templates": 1}, "template index 1 out of range"),
        ({"detector_scores": np.zeros(7)}, "pool to zero"),
        ({"detector_scores": np.full(7, np.nan)}, "detector_scores: NaN or inf"),
        ({"detector_scores": np.ones(3)}, r"detector_scores: expected shape \(7,\)"),
        ({"detector_score": False, "flip_embeddings": np.ones((7, 3))}, "flip_embeddings: shape"),
    ],
)
def test_pool_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(MetricInputError, match=message):
        pool_templates(EMB, TEMPLATE, MEDIA, **kwargs)  # type: ignore[arg-type]


def test_pool_errors_on_samples() -> None:
    bad = EMB.copy()
    bad[4, 1] = np.nan
    with pytest.raises(MetricInputError, match="embeddings: NaN or inf in samples 4"):
        pool_templates(bad, TEMPLATE, MEDIA, detector_score=False)
    zero = EMB.copy()
    zero[1] = 0.0
    with pytest.raises(MetricInputError, match="zero-norm image feature"):
        pool_templates(zero, TEMPLATE, MEDIA, detector_score=False, norm_score=False)
    with pytest.raises(MetricInputError, match="sample_template: expected shape"):
        pool_templates(EMB, TEMPLATE[:3], MEDIA, detector_score=False)
    with pytest.raises(MetricInputError, match="negative template index other than -1"):
        pool_templates(EMB, np.array([0, 0, 0, 1, 1, 1, -2]), MEDIA, detector_score=False)


# --------------------------------------------------------------------------------------------
# template_pair_scores
# --------------------------------------------------------------------------------------------


def _naive_pair_scores(features: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    return np.einsum("ij,ij->i", unit[a], unit[b])


@pytest.mark.parametrize("layout", ["uniform", "gallery-probe", "grouped-by-a", "self-pairs"])
@pytest.mark.parametrize("block", [1, 7, 64, 2048])
def test_template_pairs_equal_naive(layout: str, block: int) -> None:
    rng = np.random.default_rng([len(layout), block])  # deterministic per case
    n, dim, n_pairs = 300, 24, 5_000
    features = rng.standard_normal((n, dim)) * rng.uniform(0.5, 3.0, (n, 1))  # not unit length
    if layout == "uniform":  # unsorted pairs over all templates
        a, b = rng.integers(0, n, n_pairs), rng.integers(0, n, n_pairs)
    elif layout == "gallery-probe":  # scattered first templates: blocks gather rows and columns
        gallery = rng.choice(n, 40, replace=False)
        a, b = rng.choice(gallery, n_pairs), rng.integers(0, n, n_pairs)
    elif layout == "grouped-by-a":  # as the IJB-C pair file, with unsigned 32-bit indices
        a = np.sort(rng.integers(0, n, n_pairs)).astype(np.uint32)
        b = rng.integers(0, n, n_pairs).astype(np.uint32)
    else:
        a = rng.integers(0, n, n_pairs)
        b = a.copy()
    scores = template_pair_scores(features, a, b, block=block)
    assert scores.dtype == np.float32 and scores.shape == (n_pairs,)
    np.testing.assert_allclose(scores, _naive_pair_scores(features, a, b), rtol=0, atol=2e-6)


def test_template_pairs_symmetric_and_order_free() -> None:
    rng = np.random.default_rng(11)
    features = rng.standard_normal((50, 8)).astype(np.float32)
    a, b = rng.integers(0, 50, 400), rng.integers(0, 50, 400)
    forward = template_pair_scores(features, a, b, block=8)
    np.testing.assert_array_equal(template_pair_scores(features, b, a, block=8), forward)
    perm = rng.permutation(400)
    np.testing.assert_array_equal(template_pair_scores(features, a[perm], b[perm], block=8), forward[perm])


def test_template_pairs_unused_bad_rows_and_empty() -> None:
    features = np.array([[1.0, 0.0], [np.nan, 0.0], [0.0, 0.0], [0.6, 0.8]])
    np.testing.assert_allclose(template_pair_scores(features, [0, 3], [3, 3]), [0.6, 1.0], atol=1e-7)
    assert template_pair_scores(features, np.array([], dtype=int), np.array([], dtype=int)).shape == (0,)


@pytest.mark.parametrize(
    ("features", "a", "b", "message"),
    [
        ([[1.0, 0.0], [np.nan, 1.0]], [0], [1], "template_features: 1 row.*NaN or inf: rows 1"),
        ([[1.0, 0.0], [0.0, 0.0]], [1], [0], "zero norm"),
        ([[1.0, 0.0], [0.0, 1.0]], [0], [5], r"b\[0\] = 5"),
        ([[1.0, 0.0], [0.0, 1.0]], [0, 1], [1, 0, 0], "differ in length: 2 vs 3"),
        ([[1.0, 0.0], [0.0, 1.0]], [0], [1.5], "expected integer indices"),
    ],
)
def test_template_pairs_errors(features: object, a: object, b: object, message: str) -> None:
    with pytest.raises(MetricInputError, match=message):
        template_pair_scores(features, a, b)


def test_template_pairs_bad_block() -> None:
    with pytest.raises(MetricInputError, match="block must be a positive number"):
        template_pair_scores([[1.0, 0.0]], [0], [0], block=0)
