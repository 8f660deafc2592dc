"""Geometry between photographs, ArcFace-aligned crops and dlib's 150x150 face chips.

Coordinates are pixel centres (pixel ``(x, y)`` covers ``[x - 0.5, x + 0.5]``), as in dlib and in
the ArcFace template. Transforms are 2x3 affine matrices mapping ``[x, y, 1]`` forward.

How an ArcFace-aligned crop is mapped onto dlib's chip (``ARCFACE112_TO_CHIP150``): both are
similarity transforms of the photograph fixed by landmarks (the crop by five points onto the
ArcFace template, the chip by dlib's fit of 33 of the 68 points to its mean face), so for each
face the crop maps onto its chip by the similarity ``chip o crop^-1``. That similarity varies a
little from face to face; the constant is its mean over real faces, the least-squares fixed
similarity over the crop's pixels. ``benchmarks/dlib_chip_mapping.py`` reproduces the constant
and measures what the mapping costs in accuracy (``benchmarks/dlib_port.md``). Chip pixels that
fall outside the 112 crop (its bottom rows) are zero, like the crop's own border.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

# the ArcFace/InsightFace 112x112 five-point template, the one the datasets align to
from fiqabench_plugins.datasets.align import ARCFACE_TEMPLATE_112

__all__ = [
    "ARCFACE112_TO_CHIP150",
    "ARCFACE_TEMPLATE_112",
    "CHIP_PADDING",
    "CHIP_SIZE",
    "chip_details_to_affine",
    "compose_affine",
    "fit_similarity",
    "invert_affine",
    "warp_affine",
]

#: dlib's descriptor chip: ``get_face_chip(img, shape, size=150, padding=0.25)``.
CHIP_SIZE = 150
CHIP_PADDING = 0.25

#: ArcFace 112 crop -> dlib 150 chip: the mean of 10 faces' exact crop -> chip similarities
#: (benchmarks/dlib_chip_mapping.py prints it; photographs of benchmarks/dlib_photos.py).
ARCFACE112_TO_CHIP150 = np.array(
    [
        [1.541996, 0.029074, -14.187820],
        [-0.029074, 1.541996, -34.300730],
    ],
    dtype=np.float64,
)


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` to ``dst``.

    Umeyama (1991), "Least-squares estimation of transformation parameters between two point
    patterns", eq. (40)-(42), without reflection. Returns a 2x3 matrix.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"expected two (N, 2) point arrays with N >= 2, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    rot = u @ np.diag(sign) @ vt
    var_s = (s**2).sum() / len(src)
    scale = (sig * sign).sum() / var_s
    out = np.zeros((2, 3))
    out[:, :2] = scale * rot
    out[:, 2] = mu_d - scale * rot @ mu_s
    return out


def invert_affine(m: np.ndarray) -> np.ndarray:
    full = np.vstack([np.asarray(m, np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def compose_affine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a`` after ``b`` (both 2x3)."""
    fa = np.vstack([a, [0.0, 0.0, 1.0]])
    fb = np.vstack([b, [0.0, 0.0, 1.0]])
    return (fa @ fb)[:2]


def chip_details_to_affine(rect: tuple[float, float, float, float], angle: float, rows: int, cols: int) -> np.ndarray:
    """Image -> chip transform of a dlib ``chip_details`` (``rect`` = left, top, right, bottom).

    As ``get_mapping_to_chip`` (dlib ``image_transforms/interpolation.h``): the rect's top-left,
    top-right and bottom-right corners, rotated by ``angle`` about the rect centre, go to chip
    pixels (0, 0), (cols-1, 0), (cols-1, rows-1).
    """
    left, top, right, bottom = rect
    cx, cy = (left + right) / 2.0, (top + bottom) / 2.0
    c, s = math.cos(angle), math.sin(angle)

    def rot(x: float, y: float) -> tuple[float, float]:
        dx, dy = x - cx, y - cy
        return cx + c * dx - s * dy, cy + s * dx + c * dy

    src = np.array([rot(left, top), rot(right, top), rot(right, bottom)])
    dst = np.array([[0.0, 0.0], [cols - 1.0, 0.0], [cols - 1.0, rows - 1.0]])
    # Three point pairs fix an affine map exactly.
    a = np.hstack([src, np.ones((3, 1))])
    return np.linalg.solve(a, dst).T


def _normaliser(size_hw: tuple[int, int]) -> np.ndarray:
    """Pixel-centre coordinates -> grid_sample's [-1, 1] (align_corners=False)."""
    h, w = size_hw
    return np.array([[2.0 / w, 0.0, 1.0 / w - 1.0], [0.0, 2.0 / h, 1.0 / h - 1.0]])


def warp_affine(
    images: torch.Tensor, forward: np.ndarray, out_size: tuple[int, int], *, padding_mode: str = "border"
) -> torch.Tensor:
    """Warp float ``(N, C, H, W)`` images by the 2x3 map ``forward`` (input -> output pixels).

    Bilinear and differentiable (``grid_sample``); ``forward`` may be one matrix or ``(N, 2, 3)``.
    """
    forward = np.asarray(forward, np.float64)
    mats = forward[None] if forward.ndim == 2 else forward
    in_size = (images.shape[2], images.shape[3])
    to_in = _normaliser(in_size)
    from_out = invert_affine(_normaliser(out_size))
    thetas = np.stack([compose_affine(to_in, compose_affine(invert_affine(m), from_out)) for m in mats])
    theta = torch.as_tensor(thetas, dtype=images.dtype, device=images.device)
    if theta.shape[0] == 1 and images.shape[0] != 1:
        theta = theta.expand(images.shape[0], 2, 3)
    grid = F.affine_grid(theta, [images.shape[0], images.shape[1], *out_size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
