"""BSRGAN-style random degradation d(.) for DifFIQA's extended DDPM training (paper §3.3).

The paper degrades each training image with the BSRGAN model (Zhang et al., ICCV 2021) and
trains the DDPM to restore it. The official code (``diffiqa/bsrgan/degrade.py``, research note
``diffiqa.md`` §3.2) does, per training image:

- ``auto_degrade`` (L611-622): resize to 512x512 (bilinear), ``degradation_bsrgan(sf=4)``, round
  to uint8; applied once, then again with p = 0.2 and a third time with p = 0.01, each on the
  previous output (``diff_dataset.py`` L34-40), then resized to the training size;
- ``degradation_bsrgan`` (L431-518): with p = 0.25 halve the image first (``sf`` becomes 2); then
  a random order of seven ops with downsample2 forced before downsample3: two blurs (each: p = 0.5
  anisotropic Gaussian, kernel ``2 randint(2, 11) + 3``, eigenvalues ``U[0, 4 + sf]``, else
  isotropic with ``sigma ~ U[0, 2 + 0.2 sf]``; ``add_blur`` L334-345), downsample2 (p = 0.75 a
  resize by ``1 / U[1, 2 sf]`` with a random interpolation, else a shifted 25x25 Gaussian and
  decimation by ``sf``), downsample3 (resize to 1/sf of the size seen by downsample2, so the
  output is always 512/4 = 128 px), Gaussian noise (level ``randint(2, 25) / 255``: colour
  p = 0.4, grey p = 0.4, else 3-channel correlated "sensor-like" noise with a random covariance;
  L362-376), JPEG with p = 0.9 (quality ``randint(30, 95)``) and the camera-ISP op, which never
  runs (no ISP model is passed); finally one more JPEG, always.

Faithful choices and substitutions (stated, because bit-exact reproduction is impossible without
OpenCV and the original RNG streams):

- OpenCV interpolations {1 linear, 2 cubic, 3 area} become torch ``bilinear``/``bicubic``
  (no antialiasing, half-pixel centres, like ``cv2.resize``) and ``area`` (box averaging; when
  enlarging, bilinear, as OpenCV's INTER_AREA does); MATLAB ``imresize_np`` becomes torch
  bicubic with antialiasing; ``interp2d`` in ``shift_pixel`` becomes linear interpolation clipped
  at the borders (the note's porting advice); JPEG is Pillow's encoder (4:2:0, like OpenCV's
  default); randomness comes from one ``numpy.random.Generator``.
- **Scale.** The official pipeline works at 512 px for 112 px training images. For the embedded
  world (32-48 px) that is far too slow, so :func:`degrade_lq` works at ``work_size`` (default
  ``4 x`` the training size: 128 px at 32 px) and multiplies every length defined in 512-px
  pixels -- the two blur kernels' sizes and standard deviations -- by ``work_size / 512``
  (variances by its square). Ratios (down-sampling factors, the decimation kernel, which is tied
  to ``sf``), noise levels and JPEG qualities are scale-free and unchanged. The output of one
  pass is ``work_size / 4`` px (= the training size at the default), as 128 px is for 112 px.

Two preprocessing paths use it (``diffiqa-ddpm`` option ``preprocessing``):

- **official** (:func:`official_training_pair`; the default for ``unet_config=official``): what
  ``DiffDataset.__getitem__`` does (``diff_dataset.py`` L29-50). The *original* image (any size)
  is flipped first (p = 0.5, the same flip for both outputs); the clean image is that resized to
  the training size (PIL bilinear, antialiased, as ``T.Resize`` on a PIL image); the degraded one
  is ``auto_degrade`` at the official 512 px working size with unscaled kernels (128 px out; the
  p = 0.2 and p = 0.01 extra passes each start again from 512 px), then resized 128 -> 112 px with
  PIL bilinear, antialiased.
- **embedded** (the default for ``unet_config=embedded``; the shipped weights were trained so):
  the image is first resized to the training size (32 px), degraded at ``degrade_scale x`` that
  size (128 px) with kernels scaled by ``work_size / 512``, so one pass already returns the
  training size and there is no final resize; the flip is drawn afterwards in the training loop
  (from the run's generator) and applied to the clean and the degraded image alike.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage
from scipy.linalg import orth

__all__ = [
    "anisotropic_gaussian", "auto_degrade", "degradation_bsrgan", "degrade_lq", "fspecial_gaussian",
    "official_training_pair", "resize_antialiased",
]

#: The official ``auto_degrade`` working size (``degrade.py`` L614).
OFFICIAL_WORK_SIZE = 512


# ------------------------------------------------------------------------------------------------
# kernels
# ------------------------------------------------------------------------------------------------


def fspecial_gaussian(size: int, sigma: float) -> np.ndarray:
    """MATLAB ``fspecial('gaussian', size, sigma)`` (``degrade.py`` L187-198)."""
    sigma = max(float(sigma), 1e-6)
    half = (size - 1.0) / 2.0
    x, y = np.meshgrid(np.arange(-half, half + 1), np.arange(-half, half + 1))
    h = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    h[h < np.finfo(float).eps * h.max()] = 0
    total = h.sum()
    return h / total if total != 0 else h


def anisotropic_gaussian(size: int, theta: float, l1: float, l2: float) -> np.ndarray:
    """Gaussian kernel with covariance ``V diag(l1, l2) V^-1``, ``V`` a rotation by ``theta``
    (``anisotropic_Gaussian``/``gm_blur_kernel``, ``degrade.py`` L62-93), evaluated analytically."""
    v = np.array([math.cos(theta), math.sin(theta)])
    rot = np.array([[v[0], v[1]], [v[1], -v[0]]])
    cov = rot @ np.diag([max(l1, 1e-6), max(l2, 1e-6)]) @ np.linalg.inv(rot)
    inv = np.linalg.inv(cov)
    center = size / 2.0 + 0.5
    coords = np.arange(size) - center + 1
    cx, cy = np.meshgrid(coords, coords)
    pts = np.stack([cx, cy], axis=-1)
    k = np.exp(-0.5 * np.einsum("...i,ij,...j->...", pts, inv, pts))
    return k / k.sum()


def _odd_size(size: float) -> int:
    return max(3, int(2 * round((size - 1) / 2) + 1))


def _convolve(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Per-channel convolution with mirror borders, i.e. ``ndimage.convolve(img, k[..., None],
    mode='mirror')`` (odd kernels); computed with torch (much faster for the 25x25 kernel)."""
    kh, kw = kernel.shape
    ph, pw = kh // 2, kw // 2
    if ph >= img.shape[0] or pw >= img.shape[1]:
        return ndimage.convolve(img, kernel[:, :, None], mode="mirror")
    x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1)[None].contiguous()
    x = F.pad(x, (pw, pw, ph, ph), mode="reflect")  # == ndimage 'mirror'
    weight = torch.from_numpy(np.ascontiguousarray(kernel[::-1, ::-1], dtype=np.float32))
    weight = weight[None, None].expand(img.shape[2], 1, kh, kw).contiguous()
    y = F.conv2d(x, weight, groups=img.shape[2])
    return y[0].permute(1, 2, 0).numpy()


def _shift_kernel(k: np.ndarray, sf: int) -> np.ndarray:
    """``shift_pixel(k, sf)`` (L96-122): sample at ``(x + (sf-1)/2, y + (sf-1)/2)``, clipped, linear."""
    h, w = k.shape
    shift = (sf - 1) * 0.5
    ys = np.clip(np.arange(h) + shift, 0, h - 1)
    xs = np.clip(np.arange(w) + shift, 0, w - 1)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return ndimage.map_coordinates(k, [yy, xx], order=1, mode="nearest")


# ------------------------------------------------------------------------------------------------
# resizing and JPEG
# ------------------------------------------------------------------------------------------------


def _resize(img: np.ndarray, width: int, height: int, interpolation: int) -> np.ndarray:
    """``cv2.resize`` with interpolation 1 (linear), 2 (cubic) or 3 (area), via torch."""
    width, height = max(1, width), max(1, height)
    x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1)[None]
    shrinking = width < img.shape[1] or height < img.shape[0]
    if interpolation == 3 and shrinking:
        y = F.interpolate(x, size=(height, width), mode="area")
    elif interpolation == 2:
        y = F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False)
    else:
        y = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
    return y[0].permute(1, 2, 0).numpy()


def _imresize_matlab(img: np.ndarray, scale: float) -> np.ndarray:
    """``util.imresize_np(img, scale, True)``: bicubic with antialiasing."""
    x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1)[None]
    size = (max(1, int(math.ceil(img.shape[0] * scale))), max(1, int(math.ceil(img.shape[1] * scale))))
    y = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
    return y[0].permute(1, 2, 0).numpy()


def _to_uint8(img: np.ndarray) -> np.ndarray:
    """``util.single2uint``: clip, x255, round."""
    return np.uint8((np.clip(img, 0, 1) * 255.0).round())


def _jpeg(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``add_JPEG_noise`` (L394-401): quality ``randint(30, 95)``, here with Pillow."""
    quality = int(rng.integers(30, 96))
    buffer = io.BytesIO()
    Image.fromarray(_to_uint8(img)).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32) / 255.0


# ------------------------------------------------------------------------------------------------
# the degradation ops
# ------------------------------------------------------------------------------------------------


def _add_blur(img: np.ndarray, sf: int, rng: np.random.Generator, kscale: float) -> np.ndarray:
    """``add_blur`` (L334-345) with lengths scaled by ``kscale`` (variances by its square)."""
    wd2 = 4.0 + sf
    wd = 2.0 + 0.2 * sf
    if rng.random() < 0.5:
        l1 = wd2 * rng.random()
        l2 = wd2 * rng.random()
        size = 2 * int(rng.integers(2, 12)) + 3
        theta = rng.random() * np.pi
        k = anisotropic_gaussian(_odd_size(size * kscale), theta, l1 * kscale**2, l2 * kscale**2)
    else:
        size = 2 * int(rng.integers(2, 12)) + 3
        k = fspecial_gaussian(_odd_size(size * kscale), wd * rng.random() * kscale)
    return _convolve(img, k)


def _add_gaussian_noise(img: np.ndarray, rng: np.random.Generator, level1: int = 2, level2: int = 25) -> np.ndarray:
    """``add_Gaussian_noise`` (L362-376): colour (p 0.4), grey (p 0.4) or correlated (p 0.2)."""
    level = int(rng.integers(level1, level2 + 1))
    r = rng.random()
    if r > 0.6:
        img = img + rng.normal(0, level / 255.0, img.shape).astype(np.float32)
    elif r < 0.4:
        img = img + rng.normal(0, level / 255.0, (*img.shape[:2], 1)).astype(np.float32)
    else:
        big = level2 / 255.0
        d = np.diag(rng.random(3))
        u = orth(rng.random((3, 3)))
        cov = np.abs(big**2 * (u.T @ d @ u))
        noise = rng.multivariate_normal([0.0, 0.0, 0.0], cov, img.shape[:2], check_valid="ignore")
        img = img + noise.astype(np.float32)
    return np.clip(img, 0.0, 1.0)


def degradation_bsrgan(img: np.ndarray, rng: np.random.Generator, sf: int = 4, kscale: float = 1.0) -> np.ndarray:
    """``degradation_bsrgan`` (L431-518) on a float32 ``HxWx3`` image in ``[0, 1]``.

    Returns the low-quality image of size ``(H / sf, W / sf)``. ``kscale`` scales the blur
    kernels (1 at the official 512 px working size).
    """
    jpeg_prob, scale2_prob = 0.9, 0.25
    h1, w1 = img.shape[:2]
    img = img.copy()[: h1 - h1 % sf, : w1 - w1 % sf, ...]  # mod crop
    if sf == 4 and rng.random() < scale2_prob:  # downsample1
        if rng.random() < 0.5:
            img = _resize(img, img.shape[1] // 2, img.shape[0] // 2, int(rng.choice([1, 2, 3])))
        else:
            img = _imresize_matlab(img, 0.5)
        img = np.clip(img, 0.0, 1.0)
        sf = 2
    order = list(rng.permutation(7))
    i2, i3 = order.index(2), order.index(3)
    if i2 > i3:  # keep downsample3 after downsample2
        order[i2], order[i3] = order[i3], order[i2]
    a, b = img.shape[1], img.shape[0]
    for op in order:
        if op in (0, 1):
            img = _add_blur(img, sf, rng, kscale)
        elif op == 2:
            a, b = img.shape[1], img.shape[0]
            if rng.random() < 0.75:
                sf1 = rng.uniform(1, 2 * sf)
                img = _resize(img, int(1 / sf1 * img.shape[1]), int(1 / sf1 * img.shape[0]), int(rng.choice([1, 2, 3])))
            else:
                k = fspecial_gaussian(25, rng.uniform(0.1, 0.6 * sf))
                k = _shift_kernel(k, sf)
                k = k / k.sum()
                img = _convolve(img, k)[0::sf, 0::sf, ...]
            img = np.clip(img, 0.0, 1.0)
        elif op == 3:
            img = _resize(img, int(1 / sf * a), int(1 / sf * b), int(rng.choice([1, 2, 3])))
            img = np.clip(img, 0.0, 1.0)
        elif op == 4:
            img = _add_gaussian_noise(img, rng)
        elif op == 5:
            if rng.random() < jpeg_prob:
                img = _jpeg(img, rng)
        # op 6: camera ISP noise -- never runs in the official code (isp_model is None)
    return _jpeg(img, rng)  # final JPEG, always (L513)


def auto_degrade(
    image: np.ndarray, rng: np.random.Generator, work_size: int = OFFICIAL_WORK_SIZE, trace: dict | None = None
) -> np.ndarray:
    """``auto_degrade`` (L611-622): uint8 ``HxWx3`` -> resize to ``work_size`` (bilinear, no
    antialiasing, as ``cv2.resize``) -> BSRGAN with ``sf = 4`` -> uint8 ``(work_size / 4)`` px.
    Kernels scale by ``work_size / 512``. ``trace`` (tests) collects the working image and the
    output of each pass under ``"work"`` and ``"passes"``."""
    x = _resize(image.astype(np.float32), work_size, work_size, 1) / 255.0
    lq = _to_uint8(
        degradation_bsrgan(np.clip(x, 0, 1).astype(np.float32), rng, sf=4, kscale=work_size / OFFICIAL_WORK_SIZE)
    )
    if trace is not None:
        trace.setdefault("work", []).append(x)
        trace.setdefault("passes", []).append(lq)
    return lq


def resize_antialiased(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``HxWx3`` -> ``size x size``: PIL bilinear, which widens its filter when shrinking
    (antialiasing), as torchvision's ``T.Resize`` on a PIL image does."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((size, size), Image.BILINEAR))


def degrade_lq(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    out_size: int,
    work_size: int | None = None,
    trace: dict | None = None,
) -> np.ndarray:
    """The low-quality training input (``diff_dataset.py`` L34-40): ``auto_degrade`` once, again
    with p = 0.2 and a third time with p = 0.01, then resized to ``out_size`` (bilinear with
    antialiasing, as torchvision's ``Resize`` on PIL images). uint8 in, uint8 out.

    ``work_size`` defaults to ``4 * out_size``.
    """
    work = work_size or 4 * out_size
    lq = auto_degrade(image, rng, work, trace)
    for p in (0.2, 0.01):
        if rng.random() < p:
            lq = auto_degrade(lq, rng, work, trace)
    return resize_antialiased(lq, out_size)


def official_training_pair(
    image: np.ndarray, rng: np.random.Generator, *, size: int = 112, trace: dict | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One ``(clean, degraded)`` training pair as ``DiffDataset.__getitem__`` makes it
    (``diff_dataset.py`` L45-50): flip the original (p = 0.5) *before* anything else, clean =
    resize to ``size``, degraded = :func:`degrade_lq` at the official 512 px working size (one pass
    returns 128 px), resized to ``size``. uint8 ``HxWx3`` of any size in, two uint8
    ``size x size x 3`` out. ``trace`` (tests) also gets ``"flipped"`` and ``"input"``, the image
    the degradation started from."""
    flipped = bool(rng.random() < 0.5)
    if flipped:
        image = image[:, ::-1]
    image = np.ascontiguousarray(image)
    if trace is not None:
        trace["flipped"], trace["input"] = flipped, image
    clean = resize_antialiased(image, size)
    return clean, degrade_lq(image, rng, out_size=size, work_size=OFFICIAL_WORK_SIZE, trace=trace)
