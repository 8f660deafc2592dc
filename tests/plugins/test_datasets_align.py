"""The five-point ArcFace alignment: transform estimate and warp."""

from __future__ import annotations

import numpy as np
import pytest

from fiqabench_plugins.datasets.align import (
    ARCFACE_TEMPLATE_112,
    apply_transform,
    arcface_template,
    similarity_transform,
    similarity_transforms,
    warp_affine,
    warp_affine_reference,
    warp_to_arcface,
)


def _similarity(scale: float, angle_deg: float, tx: float, ty: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.hstack([scale * rot, [[tx], [ty]]])


def test_template_is_insightface_arcface_dst() -> None:
    # Values of insightface face_align.arcface_dst, typed from the source note.
    assert ARCFACE_TEMPLATE_112.tolist() == [
        [38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]
    ]
    with pytest.raises(ValueError):
        ARCFACE_TEMPLATE_112[0, 0] = 0.0  # read-only: nobody can corrupt it for the others


def test_known_transform_recovered_exactly() -> None:
    truth = _similarity(1.7, 23.0, -12.5, 40.25)
    src = np.random.default_rng(0).uniform(0, 200, size=(5, 2))
    dst = apply_transform(truth, src)
    np.testing.assert_allclose(similarity_transform(src, dst), truth, atol=1e-10)
    # And onto the template: the estimated map sends the landmarks onto it exactly when they are
    # a similarity image of it.
    inverse = np.linalg.inv(np.vstack([truth, [0, 0, 1]]))[:2]
    landmarks = apply_transform(inverse, ARCFACE_TEMPLATE_112)
    np.testing.assert_allclose(apply_transform(similarity_transform(landmarks, ARCFACE_TEMPLATE_112), landmarks),
                               ARCFACE_TEMPLATE_112, atol=1e-9)


def test_least_squares_solution_for_noisy_points() -> None:
    # Hand-computed: a unit square and the same square with corner (1, 1) moved to (2, 2).
    # Centroids (0.5, 0.5) and (0.75, 0.75); the rotation is 0 by symmetry about the diagonal;
    # centred dot products 0.75 + 0.5 + 1.25 + 0.5 = 3, centred source variance 4 * 0.5 = 2, so
    # scale 1.5 and translation 0.75 - 1.5 * 0.5 = 0.
    src = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    dst = src.copy()
    dst[2] = [2.0, 2.0]
    m = similarity_transform(src, dst)
    np.testing.assert_allclose(m, [[1.5, 0.0, 0.0], [0.0, 1.5, 0.0]], atol=1e-12)


def test_reflection_is_never_returned() -> None:
    src = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [3.0, 1.0], [1.0, 1.0]])
    mirrored = src * [-1.0, 1.0]
    m = similarity_transform(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0


@pytest.mark.parametrize("bad", [np.zeros((5, 2)), np.full((5, 2), np.nan), np.zeros((4, 3))])
def test_degenerate_landmarks_are_refused(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        warp_to_arcface(np.zeros((50, 50, 3), np.uint8), bad)


def test_identity_warp_keeps_pixels_and_zero_border() -> None:
    img = np.random.default_rng(1).integers(0, 256, size=(6, 7, 3), dtype=np.uint8)
    out = warp_affine_reference(img, np.array([[1.0, 0, 0], [0, 1.0, 0]]), (8, 9))
    assert np.array_equal(out[:6, :7], img)
    assert not out[6:].any() and not out[:, 7:].any()
    # A half-pixel shift averages neighbours (bilinear): hand-computed on one row.
    row = np.array([[[0, 0, 0], [100, 100, 100], [200, 200, 200]]], dtype=np.uint8)
    shifted = warp_affine_reference(row, np.array([[1.0, 0, -0.5], [0, 1.0, 0]]), (1, 2))
    assert shifted[0, :, 0].tolist() == [50, 150]
    assert np.array_equal(warp_affine(img, np.array([[1.0, 0, 0], [0, 1.0, 0]]), (6, 7)), img)
    assert warp_affine(row, np.array([[1.0, 0, -0.5], [0, 1.0, 0]]), (1, 2))[0, :, 0].tolist() == [50, 150]


def test_pillow_warp_matches_the_reference_inside_the_source() -> None:
    img = _smooth_image(250, 250)
    matrix = similarity_transform(apply_transform(_similarity(1.9, 10.0, 30.0, 40.0), ARCFACE_TEMPLATE_112),
                                  ARCFACE_TEMPLATE_112)
    fast = warp_affine(img, matrix, (112, 112)).astype(int)
    ref = warp_affine_reference(img, matrix, (112, 112)).astype(int)
    inv = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))
    ys, xs = np.mgrid[0:112, 0:112]
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    inside = (sx >= 1) & (sx <= 248) & (sy >= 1) & (sy <= 248)
    assert inside.mean() > 0.8  # the case reaches outside the photo, so both regions are covered
    assert np.abs(fast - ref).max(-1)[inside].max() <= 1


def _smooth_image(h: int, w: int) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127.5 + 100 * np.sin(xs / 9.0) * np.cos(ys / 13.0)
    g = 127.5 + 100 * np.cos((xs + ys) / 17.0)
    b = 127.5 + 60 * np.sin(ys / 7.0)
    return np.clip(np.stack([r, g, b], -1), 0, 255).round().astype(np.uint8)


def test_warp_by_known_similarity_is_undone() -> None:
    # A 112 px "aligned" image is placed into a larger photo by a known similarity (rotated,
    # scaled, shifted); its landmarks are the template mapped the same way. Aligning the photo
    # from those landmarks must give the original crop back (up to interpolation on a smooth image).
    crop = _smooth_image(112, 112)
    forward = _similarity(1.6, -17.0, 40.0, 70.0)  # keeps the whole crop inside the photo
    photo = warp_affine_reference(crop, forward, (320, 320))
    landmarks = apply_transform(forward, ARCFACE_TEMPLATE_112)
    back = warp_to_arcface(photo, landmarks)
    assert back.shape == (112, 112, 3) and back.dtype == np.uint8
    inner = (slice(4, -4), slice(4, -4))  # the border row/column falls between pixels
    err = np.abs(back[inner].astype(int) - crop[inner].astype(int))
    assert err.mean() < 0.75 and err.max() <= 2  # two roundings to uint8
    # A wrong landmark order (eyes swapped) does not come back: the test can fail.
    swapped = landmarks[[1, 0, 2, 4, 3]]
    bad = warp_to_arcface(photo, swapped)
    assert np.abs(bad[inner].astype(int) - crop[inner].astype(int)).mean() > 10


def test_other_sizes_follow_insightface_estimate_norm() -> None:
    np.testing.assert_allclose(arcface_template(224), ARCFACE_TEMPLATE_112 * 2)
    t128 = arcface_template(128)
    np.testing.assert_allclose(t128 - ARCFACE_TEMPLATE_112, [[8.0, 0.0]] * 5)
    img = _smooth_image(200, 200)
    lm = apply_transform(_similarity(1.2, 5.0, 10.0, 20.0), ARCFACE_TEMPLATE_112)
    assert warp_to_arcface(img, lm, size=224).shape == (224, 224, 3)


def test_batched_transforms_equal_the_single_ones() -> None:
    rng = np.random.default_rng(3)
    src = rng.uniform(0, 200, size=(50, 5, 2))
    src[7] = 0.0  # degenerate: NaN row
    src[8, 2, 0] = np.nan
    src[9] = src[9] * [-1.0, 1.0]  # mirrored set: the reflection guard must act the same
    batched = similarity_transforms(src, ARCFACE_TEMPLATE_112)
    for i in range(50):
        if i in (7, 8):
            assert np.isnan(batched[i]).all()
        else:
            np.testing.assert_allclose(batched[i], similarity_transform(src[i], ARCFACE_TEMPLATE_112), atol=1e-10)
