"""Degradations of the synthetic world, each with a recorded severity ``s`` in [0, 1].

Seven types, as in the embedded-world pilot: ``blur``, ``downscale`` (down-up resampling),
``noise``, ``jpeg`` (8x8 block-DCT quantisation with the JPEG tables), ``occlusion`` (a patch over
the face), ``exposure`` (over or under) and ``pose``. Pose is *rendered*: it raises the yaw (and a
little pitch) of the :class:`~.render.View`, so the face really turns; see :func:`pose_angles`.

Severity is calibrated across types: a type's physical strength is ``K * s`` with the constant
``K`` of :data:`CALIBRATION`, chosen so that about 50 % of mated pairs with a clean partner fail
at ``s = 0.7`` (threshold at FMR 1e-3 of the whole benchmark, SynthArcFace). Without that, the
pilot measured a mid-severity pose failing 80 % of pairs while the strongest blur failed 11 %, and
``-severity`` stopped being a good oracle.

Like the renderer, everything here is IEEE-exact arithmetic in a fixed order (separable filters
are explicit weighted sums of shifted arrays, never BLAS, whose summation order depends on the
machine), and randomness comes only from the generator passed in.
"""

from __future__ import annotations

import math

import numpy as np

from fiqabench.errors import ConfigError

from . import _detmath as dm

__all__ = [
    "CALIBRATION",
    "DEGRADATIONS",
    "POST_DEGRADATIONS",
    "degrade",
    "pose_angles",
    "strength",
]

#: Every degradation type, in the order used to assign them to benchmark images.
DEGRADATIONS: tuple[str, ...] = ("blur", "downscale", "noise", "jpeg", "occlusion", "exposure", "pose")

#: The types applied to a rendered image (pose is a renderer parameter instead).
POST_DEGRADATIONS: tuple[str, ...] = tuple(d for d in DEGRADATIONS if d != "pose")

#: Calibration constants K: strength = K * severity, in the unit named after each key.
#:
#: How they were measured (``benchmarks/embedded_world.py --calibrate``): on the world of seed 1
#: (the reported benchmark is seed 0), 200 identities x 6 clean images; images 0 and 1 of each
#: identity are degraded at s = 0.7 with 7 strengths per type on a log grid (K x 2^-1.5 .. x 2^1.5)
#: and compared with the 4 clean images 2-5 (1,600 mated pairs per point) at the FMR 1e-3
#: threshold of the full seed-1 benchmark; K is interpolated in log K where the FNMR crosses 50 %.
#: The FR model's augmentation uses these constants, so calibration and training were iterated:
#: physical guesses -> SynthArcFace v0 -> calibration (2 rounds; the second moved K by < 4 %) ->
#: v1 -> calibration -> the values below -> the shipped model. A further round with the shipped
#: model asked for changes of -5 % to +17 % (exposure-under most) and found 39-57 % FNMR at
#: s = 0.7 with these values on seed 1; on seed 0 the check gives 36-53 %
#: (benchmarks/embedded_world.md), a seed-to-seed spread of about 5 points, so we stopped there.
CALIBRATION: dict[str, float] = {
    "blur": 3.91,  # Gaussian sigma in output pixels
    "downscale": 5.18,  # size reduction factor minus one (image shrunk by 1 + K s, then enlarged)
    "noise": 66.3,  # Gaussian sigma in grey levels (0-255)
    "jpeg": 8.34,  # multiplier of the JPEG quantisation tables (1 = quality 50, 10 = quality 5)
    "occlusion": 0.916,  # occluded fraction of the face box (capped at 0.95)
    "exposure_over": 5.17,  # extra gain (image multiplied by 1 + K s, then clipped)
    "exposure_under": 41.1,  # attenuation (image divided by 1 + K s, then quantised)
    "pose": 70.0,  # added yaw in degrees (pitch gets a quarter of it; yaw capped at 85)
}

#: The face box in crop coordinates (fractions of the side, from the top-left): where an
#: occluding patch is centred. It spans brows to chin and cheek to cheek.
FACE_BOX = (0.18, 0.22, 0.82, 0.92)  # left, top, right, bottom

# Standard JPEG quantisation tables (ITU-T T.81 Annex K), luminance and chrominance.
_Q_LUMA = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.float32,
)
_Q_CHROMA = np.full((8, 8), 99, dtype=np.float32)
_Q_CHROMA[:4, :4] = np.array(
    [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]], dtype=np.float32
)


def _dct_matrix() -> np.ndarray:
    """Orthonormal 8-point DCT-II matrix from deterministic cosines."""
    m = np.empty((8, 8), dtype=np.float64)
    for k in range(8):
        scale = math.sqrt(0.125) if k == 0 else 0.5
        for n in range(8):
            m[k, n] = scale * dm.cos(math.pi * (2 * n + 1) * k / 16.0)
    return m.astype(np.float32)


_DCT = _dct_matrix()


def _check(kind: str, severity: float) -> None:
    if kind not in DEGRADATIONS:
        raise ConfigError(f"unknown degradation {kind!r}: expected one of {', '.join(DEGRADATIONS)}")
    if not 0.0 <= severity <= 1.0:
        raise ConfigError(f"degradation severity must be in [0, 1], got {severity}")


def strength(kind: str, severity: float, *, direction: str = "over") -> float:
    """The physical strength ``K * s`` of a degradation (see :data:`CALIBRATION` for units)."""
    _check(kind, severity)
    key = f"exposure_{direction}" if kind == "exposure" else kind
    return CALIBRATION[key] * float(severity)


def _mix_rows(x: np.ndarray, index: np.ndarray, weight: np.ndarray, axis: int) -> np.ndarray:
    """out[i] = sum_k weight[i, k] * x[index[i, k]] along ``axis``, summed in a fixed k order."""
    shape = [1] * x.ndim
    shape[axis] = index.shape[0]
    out = np.take(x, index[:, 0], axis=axis) * weight[:, 0].reshape(shape)
    for k in range(1, index.shape[1]):
        out = out + np.take(x, index[:, k], axis=axis) * weight[:, k].reshape(shape)
    return out


def _gaussian_taps(sigma: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    radius = max(1, int(math.ceil(3.0 * sigma)))
    offsets = list(range(-radius, radius + 1))
    w = [dm.exp(-0.5 * (o / sigma) * (o / sigma)) for o in offsets]  # no pow(): libm-free
    total = sum(w)
    w = [v / total for v in w]
    index = np.clip(np.arange(n)[:, None] + np.asarray(offsets)[None, :], 0, n - 1)
    weight = np.broadcast_to(np.asarray(w, dtype=np.float32), index.shape)
    return index, np.ascontiguousarray(weight)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    if sigma < 0.05:
        return img
    h, w = img.shape[:2]
    index, weight = _gaussian_taps(sigma, h)
    out = _mix_rows(img, index, weight, 0)
    index, weight = _gaussian_taps(sigma, w)
    return _mix_rows(out, index, weight, 1)


def _area_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Box-filter (area) resampling from ``n_in`` to ``n_out < n_in`` pixels."""
    scale = n_in / n_out
    width = int(math.ceil(scale)) + 1
    index = np.zeros((n_out, width), dtype=np.int64)
    weight = np.zeros((n_out, width), dtype=np.float32)
    for i in range(n_out):
        lo, hi = i * scale, (i + 1) * scale
        first = int(math.floor(lo))
        for k in range(width):
            j = first + k
            overlap = max(0.0, min(hi, j + 1) - max(lo, j)) if j < n_in else 0.0
            index[i, k] = min(j, n_in - 1)
            weight[i, k] = overlap / scale
    return index, weight


def _linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear resampling (half-pixel centres) from ``n_in`` to ``n_out`` pixels."""
    index = np.zeros((n_out, 2), dtype=np.int64)
    weight = np.zeros((n_out, 2), dtype=np.float32)
    for i in range(n_out):
        pos = (i + 0.5) * n_in / n_out - 0.5
        left = int(math.floor(pos))
        frac = pos - left
        index[i] = (min(max(left, 0), n_in - 1), min(max(left + 1, 0), n_in - 1))
        weight[i] = (1.0 - frac, frac)
    return index, weight


def _downscale(img: np.ndarray, factor: float) -> np.ndarray:
    h, w = img.shape[:2]
    small_h = max(2, int(round(h / factor)))
    small_w = max(2, int(round(w / factor)))
    if small_h >= h and small_w >= w:
        return img
    small = _mix_rows(img, *_area_taps(h, small_h), 0)
    small = _mix_rows(small, *_area_taps(w, small_w), 1)
    # Quantise the small image as a real low-resolution capture would be.
    small = np.clip(np.rint(small), 0.0, 255.0)
    big = _mix_rows(small, *_linear_taps(small_h, h), 0)
    return _mix_rows(big, *_linear_taps(small_w, w), 1)


def _noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    u = rng.random((4,) + img.shape, dtype=np.float32)
    z = (u[0] + u[1] + u[2] + u[3] - np.float32(2.0)) * np.float32(1.7320508)
    return img + z * np.float32(sigma)


def _blockwise(x: np.ndarray, left: np.ndarray, transpose: bool) -> np.ndarray:
    """``M B M^T`` for every 8x8 block ``B`` (``M^T B M`` with ``transpose``), as fixed-order sums."""
    m = left.T if transpose else left
    h, w = x.shape
    blocks = x.reshape(h // 8, 8, w // 8, 8)  # (block row, r, block column, c)
    tmp = np.zeros_like(blocks)
    for k in range(8):  # tmp[u, c] = sum_k m[u, k] B[k, c]
        tmp += m[:, k][None, :, None, None] * blocks[:, k : k + 1, :, :]
    out = np.zeros_like(blocks)
    for k in range(8):  # out[u, v] = sum_k tmp[u, k] m[v, k]
        out += tmp[:, :, :, k : k + 1] * m[:, k][None, None, None, :]
    return out.reshape(h, w)


def _jpeg(img: np.ndarray, scale: float) -> np.ndarray:
    if scale <= 0.0:
        return img
    h, w = img.shape[:2]
    ph, pw = (-h) % 8, (-w) % 8
    x = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="edge") if (ph or pw) else img
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    # JFIF YCbCr, centred on 0 for the DCT.
    y = np.float32(0.299) * r + np.float32(0.587) * g + np.float32(0.114) * b - np.float32(128.0)
    cb = np.float32(-0.168736) * r - np.float32(0.331264) * g + np.float32(0.5) * b
    cr = np.float32(0.5) * r - np.float32(0.418688) * g - np.float32(0.081312) * b
    planes = []
    for plane, table in ((y, _Q_LUMA), (cb, _Q_CHROMA), (cr, _Q_CHROMA)):
        q = np.maximum(np.floor(table * np.float32(scale) + np.float32(0.5)), np.float32(1.0))
        tiled = np.tile(q, (plane.shape[0] // 8, plane.shape[1] // 8))
        coef = _blockwise(plane, _DCT, transpose=False)
        coef = np.rint(coef / tiled) * tiled
        planes.append(_blockwise(coef, _DCT, transpose=True))
    y, cb, cr = planes
    y = y + np.float32(128.0)
    out = np.stack(
        [
            y + np.float32(1.402) * cr,
            y - np.float32(0.344136) * cb - np.float32(0.714136) * cr,
            y + np.float32(1.772) * cb,
        ],
        axis=-1,
    )
    return out[:h, :w]


def _coverage(n: int, lo: float, hi: float) -> np.ndarray:
    """Fraction of each of ``n`` unit pixels inside [lo, hi] (pixel units): anti-aliased edges."""
    edges = np.arange(n, dtype=np.float64)
    return np.clip(np.minimum(edges + 1.0, hi) - np.maximum(edges, lo), 0.0, 1.0).astype(np.float32)


def _occlusion(img: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    if fraction <= 0.0:
        return img
    h, w = img.shape[:2]
    left, top, right, bottom = FACE_BOX
    box_w, box_h = (right - left) * w, (bottom - top) * h
    area = min(fraction, 0.95) * box_w * box_h
    aspect = dm.exp(dm.uniform(rng, -0.7, 0.7))  # width / height in [0.5, 2]
    pw = min(math.sqrt(area * aspect), box_w)
    ph = min(area / pw, box_h)
    cx = dm.uniform(rng, left * w + pw / 2, right * w - pw / 2) if box_w > pw else (left + right) / 2 * w
    cy = dm.uniform(rng, top * h + ph / 2, bottom * h - ph / 2) if box_h > ph else (top + bottom) / 2 * h
    mask = _coverage(h, cy - ph / 2, cy + ph / 2)[:, None] * _coverage(w, cx - pw / 2, cx + pw / 2)[None, :]
    base = np.asarray([dm.uniform(rng, 0.0, 255.0) for _ in range(3)], dtype=np.float32)
    other = np.asarray([dm.uniform(rng, 0.0, 255.0) for _ in range(3)], dtype=np.float32)
    ramp = (np.arange(h, dtype=np.float32) / np.float32(max(h - 1, 1)))[:, None, None]
    patch = base + (other - base) * ramp * np.float32(0.4)
    return img + (patch - img) * mask[..., None]


def degrade(
    image: np.ndarray, kind: str, severity: float, rng: np.random.Generator, *, direction: str | None = None
) -> np.ndarray:
    """Apply a post-rendering degradation to a uint8 RGB image ``(H, W, 3)``; returns uint8.

    ``rng`` supplies the random parts (noise, patch placement and colour, exposure direction);
    seed it from the sample so the result does not depend on processing order. ``direction``
    (``"over"``/``"under"``) forces the exposure direction (calibration); by default it is drawn.
    """
    _check(kind, severity)
    if direction not in (None, "over", "under"):
        raise ConfigError(f"exposure direction must be 'over' or 'under', got {direction!r}")
    if kind == "pose":
        raise ConfigError("pose is rendered, not applied to pixels: use pose_angles() with the renderer")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ConfigError(f"expected a uint8 RGB image (H, W, 3), got {image.dtype} {image.shape}")
    x = image.astype(np.float32)
    s = float(severity)
    if kind == "blur":
        x = _blur(x, strength(kind, s))
    elif kind == "downscale":
        x = _downscale(x, 1.0 + strength(kind, s))
    elif kind == "noise":
        x = _noise(x, strength(kind, s), rng)
    elif kind == "jpeg":
        x = _jpeg(x, strength(kind, s))
    elif kind == "occlusion":
        x = _occlusion(x, strength(kind, s), rng)
    elif kind == "exposure":
        over = rng.random() < 0.5
        if direction is not None:
            over = direction == "over"
        if over:
            x = x * np.float32(1.0 + strength(kind, s, direction="over"))
        else:
            x = np.clip(np.rint(x * np.float32(1.0 / (1.0 + strength(kind, s, direction="under")))), 0.0, 255.0)
    return np.clip(np.rint(x), 0.0, 255.0).astype(np.uint8)


def pose_angles(severity: float, rng: np.random.Generator, yaw: float, pitch: float) -> tuple[float, float]:
    """Yaw and pitch (radians) of a view degraded by pose: yaw grows by ``K s`` degrees towards a
    random side (capped at 85 degrees) and pitch by a quarter of that, up or down."""
    _check("pose", severity)
    extra = strength("pose", severity) * math.pi / 180.0
    side = 1.0 if rng.random() < 0.5 else -1.0
    tilt = 1.0 if rng.random() < 0.5 else -1.0
    limit = 85.0 * math.pi / 180.0
    new_yaw = max(-limit, min(limit, yaw + side * extra))
    new_pitch = max(-limit / 2, min(limit / 2, pitch + tilt * 0.25 * extra))
    return new_yaw, new_pitch
