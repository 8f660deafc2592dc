"""A procedural face renderer in numpy: seeded, deterministic, small enough for CPU.

Why: fiqabench must run offline with no real face data, yet FIQA only means something when the
images have an identity that survives nuisance variation and degradations that destroy it. This
module draws a miniature of that world:

- an :class:`Identity` is a vector of about 45 scalars: head shape (ellipsoid axes, jaw and
  crown taper), continuous skin tone, hair colour, volume, length, hairline and fringe (8 % bald),
  eye spacing/height/size/lids/iris colour, brows (height, length, thickness, arch), nose (length,
  width, protrusion, nostrils), mouth (height, width, lips), ears, glasses (25 %), beard (18 %);
- a :class:`View` is the per-image variation: in-plane rotation, scale and shift, small yaw and
  pitch, expression (smile, mouth opening, brow raise, blinks, gaze), lighting (ambient level,
  direction, colour, gain), background and clothing colours.

Identities are left-right symmetric on purpose (no moles, equal brows): the embedded-world pilot
found that built-in asymmetries turn flip agreement into a free quality oracle. Asymmetry comes
only from the view (pose, light, gaze).

Rendering is a 2.5-D ray cast: each pixel's orthographic ray is intersected with the head (and
hair) ellipsoid turned by yaw and pitch, so pose is geometric, not a post-process: the far eye
foreshortens, the nose shifts by its protrusion, ears hide behind the head. Facial features are
analytic shapes in the head's surface coordinates with soft (smoothstep) edges, evaluated on a
2x supersampled grid and box-averaged, so sub-pixel shifts change images smoothly.

Determinism: all randomness comes from :func:`fiqabench_plugins.synthetic._detmath.rng_for`
(PCG64 from stable integer keys) and all per-pixel maths is IEEE-exact float32 arithmetic and
``sqrt`` (see :mod:`._detmath`), so a seed gives the same bytes on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from . import _detmath as dm
from ._meta import GENERATOR_VERSION

__all__ = [
    "GENERATOR_VERSION",
    "IMAGE_SIZE",
    "SUPERSAMPLE",
    "Identity",
    "View",
    "render",
    "sample_identity",
    "sample_view",
]

#: Output resolution (pixels, square), chosen by measurement (benchmarks/embedded_world.md): at
#: 32 px DifFIQA's UNet costs about 1.0 ms per image-call (batch 64, 2 threads), so 120 calls per
#: image fit its 6-minute budget; at 48 px the same UNet cost 8.9 ms (cache effects), 1,000+ s.
IMAGE_SIZE = 32

#: Supersampling factor: render at 2x and box-average, the cheapest anti-aliasing that keeps
#: sub-pixel motion smooth (the pilot's choice; 3x costs about 2.2x the time).
SUPERSAMPLE = 2

#: Vertical position of the head centre in the crop ([-1, 1], y up): eyes land about 40 % from
#: the top, like an aligned face crop.
HEAD_CENTRE_Y = 0.06

_DEG = 0.017453292519943295

# Skin anchors from light to dark (linear interpolation along a continuous tone in [0, 1]).
_SKIN = ((0.96, 0.80, 0.69), (0.87, 0.67, 0.53), (0.70, 0.50, 0.36), (0.50, 0.33, 0.22), (0.30, 0.19, 0.13))
# Hair colours: black, dark brown, brown, blond, red, grey; drawn with these weights.
_HAIR = ((0.07, 0.06, 0.06), (0.20, 0.13, 0.09), (0.38, 0.25, 0.15), (0.78, 0.64, 0.40), (0.58, 0.26, 0.12), (0.62, 0.61, 0.60))
_HAIR_W = (0.30, 0.25, 0.18, 0.12, 0.07, 0.08)
# Iris colours: brown, dark brown, blue, green, grey, hazel.
_IRIS = ((0.36, 0.22, 0.12), (0.18, 0.11, 0.07), (0.30, 0.45, 0.65), (0.32, 0.48, 0.30), (0.45, 0.48, 0.50), (0.50, 0.38, 0.18))
_IRIS_W = (0.35, 0.25, 0.15, 0.08, 0.07, 0.10)
# Glasses frame colours: black, brown, metal, red.
_FRAME = ((0.05, 0.05, 0.06), (0.30, 0.18, 0.10), (0.70, 0.70, 0.72), (0.55, 0.10, 0.12))


@dataclass(frozen=True)
class Identity:
    """Everything that stays fixed for one person (lengths in units of the half-crop)."""

    head_a: float  # half width
    head_b: float  # half height
    head_c: float  # half depth
    jaw_taper: float  # how much the lower face narrows
    jaw_start: float  # normalised height where the narrowing starts
    crown_taper: float  # narrowing towards the top of the head
    skin: tuple[float, float, float]
    blush: float
    hair: tuple[float, float, float]
    bald: bool
    hairline: float  # v of the hairline at the centre
    hair_recess: float  # temples recede by this much
    fringe: float  # fringe depth in the middle
    hair_volume: float  # thickness of the hair shell
    hair_bottom: float  # lowest v reached by the hair shell (long hair: low)
    hair_freq: float  # strand texture frequency
    eye_dx: float
    eye_y: float
    eye_rx: float
    eye_ry: float
    iris_r: float
    iris: tuple[float, float, float]
    socket: float  # darkness around the eyes
    brow_dy: float
    brow_len: float
    brow_th: float
    brow_arch: float
    brow_dx: float
    brow_dark: float
    nose_y: float  # nose tip height
    nose_w: float
    nose_len: float
    nose_out: float  # protrusion (drives the shift under yaw)
    nostril: float
    mouth_y: float
    mouth_w: float
    lip_up: float
    lip_lo: float
    lip_red: float
    ear_v: float
    ear_rx: float
    ear_ry: float
    glasses: bool
    glasses_square: bool
    glasses_w: float
    glasses_h: float
    glasses_th: float
    frame: tuple[float, float, float]
    beard: int  # 0 none, 1 stubble, 2 moustache, 3 goatee, 4 full
    beard_density: float


@dataclass(frozen=True)
class View:
    """Everything that changes from one image of a person to the next."""

    roll: float  # radians, in-plane
    scale: float
    shift_x: float
    shift_y: float
    yaw: float  # radians; the pose degradation raises it
    pitch: float
    smile: float
    mouth_open: float
    brow_raise: float
    eye_open: float
    gaze_x: float
    gaze_y: float
    light_az: float
    light_el: float
    ambient: float
    gain: float
    tint: tuple[float, float, float]
    background: tuple[float, float, float]
    background2: tuple[float, float, float]
    bg_angle: float
    clothes: tuple[float, float, float]
    glasses_on: bool
    hair_jitter: float
    texture_seed: int


def _mix(a: tuple[float, ...], b: tuple[float, ...], t: float) -> tuple[float, float, float]:
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t)


def _jitter(rng: np.random.Generator, colour: tuple[float, ...], sd: float) -> tuple[float, float, float]:
    return tuple(min(1.0, max(0.0, c + dm.gauss(rng, sd))) for c in colour)  # type: ignore[return-value]


def sample_identity(rng: np.random.Generator) -> Identity:
    """Draw one identity. The order of draws is part of the generator version."""
    u = dm.uniform
    tone = u(rng, 0.0, 1.0) * (len(_SKIN) - 1)
    k = min(int(tone), len(_SKIN) - 2)
    skin = _jitter(rng, _mix(_SKIN[k], _SKIN[k + 1], tone - k), 0.018)
    hair_kind = dm.choice(rng, _HAIR_W)
    hair = _jitter(rng, _HAIR[hair_kind], 0.03)
    bald = rng.random() < 0.08
    length = dm.choice(rng, (0.45, 0.35, 0.20))  # short, medium, long
    hair_bottom = (u(rng, 0.05, 0.25), u(rng, -0.35, -0.10), u(rng, -1.3, -0.8))[length]
    fringe = u(rng, 0.05, 0.30) if rng.random() < 0.3 else 0.0
    iris = _jitter(rng, _IRIS[dm.choice(rng, _IRIS_W)], 0.03)
    glasses = bool(rng.random() < 0.25)
    beard_draw = rng.random()
    beard = 0 if beard_draw >= 0.18 else 1 + min(3, int(beard_draw / 0.18 * 4))
    return Identity(
        head_a=u(rng, 0.60, 0.72),
        head_b=u(rng, 0.84, 0.98),
        head_c=u(rng, 0.62, 0.76),
        jaw_taper=u(rng, 0.05, 0.45),
        jaw_start=u(rng, -0.05, 0.35),
        crown_taper=u(rng, 0.0, 0.25),
        skin=skin,
        blush=u(rng, 0.0, 0.12),
        hair=hair,
        bald=bool(bald),
        hairline=u(rng, 0.48, 0.68),
        hair_recess=u(rng, 0.0, 0.18),
        fringe=fringe,
        hair_volume=u(rng, 0.03, 0.15),
        hair_bottom=hair_bottom,
        hair_freq=u(rng, 25.0, 60.0),
        eye_dx=u(rng, 0.20, 0.27),
        eye_y=u(rng, 0.0, 0.12),
        eye_rx=u(rng, 0.075, 0.100),
        eye_ry=u(rng, 0.032, 0.052),
        iris_r=u(rng, 0.50, 0.70),
        iris=iris,
        socket=u(rng, 0.0, 0.22),
        brow_dy=u(rng, 0.07, 0.12),
        brow_len=u(rng, 0.09, 0.14),
        brow_th=u(rng, 0.018, 0.042),
        brow_arch=u(rng, -0.01, 0.03),
        brow_dx=u(rng, -0.02, 0.025),
        brow_dark=u(rng, 0.45, 0.95),
        nose_y=u(rng, -0.30, -0.17),
        nose_w=u(rng, 0.055, 0.10),
        nose_len=u(rng, 0.16, 0.30),
        nose_out=u(rng, 0.10, 0.22),
        nostril=u(rng, 0.5, 1.0),
        mouth_y=u(rng, -0.53, -0.40),
        mouth_w=u(rng, 0.14, 0.22),
        lip_up=u(rng, 0.012, 0.032),
        lip_lo=u(rng, 0.018, 0.045),
        lip_red=u(rng, 0.15, 0.6),
        ear_v=u(rng, -0.08, 0.08),
        ear_rx=u(rng, 0.07, 0.10),
        ear_ry=u(rng, 0.12, 0.18),
        glasses=glasses,
        glasses_square=bool(rng.random() < 0.5),
        glasses_w=u(rng, 0.105, 0.14),
        glasses_h=u(rng, 0.07, 0.10),
        glasses_th=u(rng, 0.012, 0.024),
        frame=_FRAME[dm.choice(rng, (0.5, 0.2, 0.2, 0.1))],
        beard=beard,
        beard_density=u(rng, 0.5, 1.0),
    )


def _glasses_on(rng: np.random.Generator, identity: Identity) -> bool:
    """Glasses wearers always wear them. The draw that used to take them off in 8 % of images is
    kept, so every later parameter of the view keeps its value: taking them off was the main
    source of clean false non-matches (identity change, not image quality)."""
    if identity.glasses:
        rng.random()
    return identity.glasses


def _square(x: float) -> float:
    return x * x


def sample_view(rng: np.random.Generator, identity: Identity) -> View:
    """Draw the nuisance variation of one image of ``identity``."""
    u = dm.uniform
    g = dm.gauss
    blink = rng.random() < 0.07
    open_mouth = rng.random() < 0.3

    def colour(lo: float, hi: float) -> tuple[float, float, float]:
        return (u(rng, lo, hi), u(rng, lo, hi), u(rng, lo, hi))

    return View(
        roll=g(rng, 4.0 * _DEG),
        scale=1.0 + g(rng, 0.04),
        shift_x=g(rng, 0.03),
        shift_y=g(rng, 0.03),
        yaw=g(rng, 7.0 * _DEG),
        pitch=g(rng, 5.0 * _DEG),
        smile=_square(u(rng, 0.0, 1.0)),  # a multiply, not pow(): libm-free
        mouth_open=u(rng, 0.01, 0.06) if open_mouth else 0.0,
        brow_raise=g(rng, 0.012),
        eye_open=u(rng, 0.05, 0.2) if blink else u(rng, 0.8, 1.1),
        gaze_x=g(rng, 0.012),
        gaze_y=g(rng, 0.006),
        light_az=u(rng, -50.0, 50.0) * _DEG,
        light_el=u(rng, -10.0, 45.0) * _DEG,
        ambient=u(rng, 0.35, 0.65),
        gain=u(rng, 0.85, 1.12),
        tint=(1.0 + g(rng, 0.04), 1.0 + g(rng, 0.03), 1.0 + g(rng, 0.05)),
        background=colour(0.05, 0.95),
        background2=colour(0.05, 0.95),
        bg_angle=u(rng, 0.0, 6.283185307179586),
        clothes=colour(0.05, 0.9),
        glasses_on=_glasses_on(rng, identity),
        hair_jitter=g(rng, 0.015),
        texture_seed=int(rng.integers(0, 2**31 - 1)),
    )


def with_pose(view: View, yaw: float, pitch: float) -> View:
    """The same view turned to ``yaw``/``pitch`` (radians): pose is a renderer parameter."""
    return replace(view, yaw=yaw, pitch=pitch)


def identity_vector(identity: Identity) -> np.ndarray:
    """The identity as a flat float vector (for tests and for measuring identity distances)."""
    values: list[float] = []
    for f in fields(identity):
        value = getattr(identity, f.name)
        if isinstance(value, tuple):
            values.extend(float(v) for v in value)
        else:
            values.append(float(value))
    return np.asarray(values, dtype=np.float64)


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

_F = np.float32


def _ellipse(du: np.ndarray, dv: np.ndarray, soft: float) -> np.ndarray:
    """Soft inside-mask of the unit ellipse for normalised offsets (edge width ``soft``)."""
    r = du * du + dv * dv
    return dm.smoothstep(1.0 + soft, 1.0 - soft, r)


def _band(x: np.ndarray, half: float, soft: float) -> np.ndarray:
    """Soft mask of |x| < half."""
    ax = np.abs(x)
    return dm.smoothstep(half + soft, half - soft, ax)


def _over(base: np.ndarray, colour: tuple[float, float, float] | np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Alpha-composite ``colour`` (RGB triple or (H, W, 3) array) over ``base`` in place."""
    a = alpha[..., None]
    if isinstance(colour, tuple):
        colour = np.asarray(colour, dtype=_F)
    base += (colour - base) * a
    return base


def _rotation(yaw: float, pitch: float) -> tuple[tuple[float, float, float], ...]:
    """R = Ry(yaw) @ Rx(pitch), as nested tuples of Python floats (deterministic sin/cos)."""
    cy, sy = dm.cos(yaw), dm.sin(yaw)
    cp, sp = dm.cos(pitch), dm.sin(pitch)
    # Ry = [[cy,0,sy],[0,1,0],[-sy,0,cy]];  Rx = [[1,0,0],[0,cp,-sp],[0,sp,cp]]
    return (
        (cy, sy * sp, sy * cp),
        (0.0, cp, -sp),
        (-sy, cy * sp, cy * cp),
    )


def _cast(
    X: np.ndarray,
    Y: np.ndarray,
    R: tuple[tuple[float, float, float], ...],
    axes: tuple[float, float, float],
    taper: tuple[float, float, float, float] | None,
    edge: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Intersect orthographic rays (camera looks down -z) with an ellipsoid turned by ``R``.

    Returns the soft coverage and the head-frame surface point (u, v, w) and the camera-frame
    normal's components packed as ``(alpha, u, v, w, lambert_basis)`` where the last item is the
    stacked normal ``(3, H, W)``. ``taper = (a_jaw, jaw_start, a_crown, b)`` narrows the
    ellipsoid as a function of height (jaw and crown shapes).
    """
    a, b, c = axes
    # Head frame = R^T camera frame. Ray: p = (X, Y, 0) + t (0, 0, -1).
    q = [R[0][i] * X + R[1][i] * Y for i in range(3)]
    e = [-R[2][i] for i in range(3)]
    if taper is not None:
        jaw, start, crown, bb = taper
        vn = q[1] * _F(1.0 / bb)
        low = np.maximum(-vn - _F(start), 0.0) * _F(1.0 / (1.0 - start))
        high = np.maximum(vn - _F(0.3), 0.0) * _F(1.0 / 0.7)
        f = _F(1.0) - _F(jaw) * low * low - _F(crown) * high * high
        f = np.maximum(f, _F(0.2))
        inv_f = _F(1.0) / f
        qu = q[0] * inv_f
        eu = e[0] * inv_f
    else:
        f = None
        qu = q[0]
        eu = _F(e[0])
    ia, ib, ic = 1.0 / (a * a), 1.0 / (b * b), 1.0 / (c * c)
    A = eu * eu * _F(ia) + _F(e[1] * e[1] * ib + e[2] * e[2] * ic)
    B = eu * qu * _F(ia) + q[1] * _F(e[1] * ib) + q[2] * _F(e[2] * ic)  # half of the usual B
    C = qu * qu * _F(ia) + q[1] * q[1] * _F(ib) + q[2] * q[2] * _F(ic) - _F(1.0)
    disc = B * B - A * C  # quarter discriminant
    # disc / A ~ (1 - rho^2) for a unit sphere: about twice the distance to the silhouette.
    k = disc / A
    alpha = dm.smoothstep(0.0, edge, k)
    t = (-B - np.sqrt(np.maximum(disc, 0.0))) / A
    hu = qu + t * eu
    hv = q[1] + t * _F(e[1])
    hw = q[2] + t * _F(e[2])
    # Normal of the (tapered) ellipsoid, rotated back to the camera frame.
    nu, nv, nw = hu * _F(ia), hv * _F(ib), hw * _F(ic)
    inv = _F(1.0) / np.sqrt(nu * nu + nv * nv + nw * nw + _F(1e-12))
    nu, nv, nw = nu * inv, nv * inv, nw * inv
    normal = np.stack([R[i][0] * nu + R[i][1] * nv + R[i][2] * nw for i in range(3)])
    u = hu * f if f is not None else hu
    return alpha, u, hv, hw, normal


def _light_dir(view: View) -> tuple[float, float, float]:
    ce, se = dm.cos(view.light_el), dm.sin(view.light_el)
    ca, sa = dm.cos(view.light_az), dm.sin(view.light_az)
    return (ce * sa, se, ce * ca)


def _tri(x: np.ndarray) -> np.ndarray:
    """Triangle wave in [-1, 1] with period 1 (a cheap, exact stand-in for a sinusoid)."""
    return np.abs(_F(4.0) * (x - np.floor(x + _F(0.5)))) - _F(1.0)


def _ears(
    ident: Identity, vw: View, X: np.ndarray, Y: np.ndarray, R: tuple[tuple[float, float, float], ...], tint: np.ndarray
) -> list[tuple[bool, np.ndarray, np.ndarray]]:
    """Ear layers ``(facing_camera, colour image, alpha)``; long hair hides them."""
    if (not ident.bald) and ident.hair_bottom < -0.3:
        return []
    layers = []
    for side in (-1.0, 1.0):
        ex, ey, ez = side * ident.head_a * 0.97, ident.ear_v, -0.12 * ident.head_c
        cx = R[0][0] * ex + R[0][1] * ey + R[0][2] * ez
        cy = R[1][0] * ex + R[1][1] * ey + R[1][2] * ez
        facing_z = R[2][0] * side  # camera z of the ear's outward normal
        widen = 1.0 + 1.2 * max(0.0, facing_z)
        du = (X - _F(cx)) * _F(1.0 / (ident.ear_rx * widen))
        dv = (Y - _F(cy)) * _F(1.0 / ident.ear_ry)
        ear = _ellipse(du, dv, 0.15)
        inner = _ellipse(du * _F(1.8), dv * _F(1.5), 0.3)
        col = np.asarray(ident.skin, dtype=_F) * _F(0.55 + 0.35 * vw.ambient) * tint
        colour = np.broadcast_to(col, X.shape + (3,)) * (_F(1.0) - _F(0.25 * 0.7) * inner[..., None])
        layers.append((facing_z > 0.25, colour, ear))
    return layers


def render(identity: Identity, view: View, size: int = IMAGE_SIZE) -> np.ndarray:
    """Render one image: uint8 RGB ``(size, size, 3)``."""
    n = size * SUPERSAMPLE
    px = _F(2.0 / n)  # one supersampled pixel in crop units
    coords = ((np.arange(n, dtype=_F) + _F(0.5)) * px - _F(1.0)).astype(_F)
    x = coords[None, :].repeat(n, 0)
    y = -coords[:, None].repeat(n, 1)
    ident, vw = identity, view
    tex_rng = dm.rng_for(vw.texture_seed, 7)

    # Image-level similarity transform (camera roll, scale, shift) into head-centred coordinates.
    cr, sr = dm.cos(vw.roll), dm.sin(vw.roll)
    inv_s = 1.0 / vw.scale
    x0 = x - _F(vw.shift_x)
    y0 = y - _F(vw.shift_y + HEAD_CENTRE_Y)
    X = (x0 * _F(cr) + y0 * _F(sr)) * _F(inv_s)
    Y = (y0 * _F(cr) - x0 * _F(sr)) * _F(inv_s)
    edge = float(px) * 3.0 * inv_s  # silhouette softness ~1.5 output pixels

    L = _light_dir(vw)
    tint = np.asarray(vw.tint, dtype=_F)

    # ---- background: two colours along a random direction --------------------------------
    ca, sa = dm.cos(vw.bg_angle), dm.sin(vw.bg_angle)
    tb = np.clip(_F(0.5) + _F(0.35) * (x * _F(ca) + y * _F(sa)), 0.0, 1.0)
    img = np.empty((n, n, 3), dtype=_F)
    for ch in range(3):
        img[..., ch] = _F(vw.background[ch]) + (_F(vw.background2[ch]) - _F(vw.background[ch])) * tb

    # ---- neck, then clothes over it (camera space: the torso does not follow the head's yaw) ----
    neck_w = ident.head_a * 0.42
    neck = _band(X, neck_w, 0.03) * dm.smoothstep(0.25, 0.35, -Y)
    neck_col = np.asarray(ident.skin, dtype=_F) * _F(0.55 + 0.3 * vw.ambient) * tint
    _over(img, neck_col, neck)
    yb = y - _F(vw.shift_y)
    xb = x - _F(vw.shift_x)
    shoulder = dm.smoothstep(-0.02, 0.02, _F(-0.74) - _F(0.3) * xb * xb - yb)
    neckline = _ellipse(xb * _F(1.0 / (neck_w * 1.25)), (yb + _F(0.76)) * _F(1.0 / 0.14), 0.2)
    shade_c = _F(0.7) + _F(0.3) * np.clip(_F(1.0) - np.abs(xb), 0.0, 1.0)
    _over(img, np.asarray(vw.clothes, dtype=_F) * shade_c[..., None], shoulder * (_F(1.0) - neckline))

    R = _rotation(vw.yaw, vw.pitch)

    # ---- hair shell (behind the head) ----------------------------------------------------------
    if not ident.bald:
        hv_pad = ident.hair_volume * (1.0 + vw.hair_jitter)
        h_axes = (ident.head_a + hv_pad, ident.head_b + hv_pad * 1.3, ident.head_c + hv_pad)
        h_alpha, hu, hv, hw, hn = _cast(X, Y - _F(hv_pad * 0.3), R, h_axes, None, edge)
        region = dm.smoothstep(ident.hair_bottom - 0.04, ident.hair_bottom + 0.04, hv)
        # Long hair hangs: below the ears it only exists behind/at the sides of the face.
        region = region * np.maximum(dm.smoothstep(-0.05, 0.05, hv - _F(0.1)), dm.smoothstep(0.2, 0.5, np.abs(hu) * _F(1.0 / ident.head_a)))
        lam = np.maximum(hn[0] * _F(L[0]) + hn[1] * _F(L[1]) + hn[2] * _F(L[2]), 0.0)
        strands = _F(1.0) + _F(0.10) * _tri(np.abs(hu) * _F(ident.hair_freq) + hv * _F(3.0))
        shade = (_F(vw.ambient) + _F(1.0 - vw.ambient) * lam) * strands
        hair_col = np.asarray(ident.hair, dtype=_F) * shade[..., None] * tint
        _over(img, hair_col, h_alpha * region)

    # ---- ears: behind the head unless turned towards the camera ------------------------------
    ear_layers = _ears(ident, vw, X, Y, R, tint)
    for facing, ear_col, ear_alpha in ear_layers:
        if not facing:
            _over(img, ear_col, ear_alpha)

    # ---- the head ------------------------------------------------------------------------------
    axes = (ident.head_a, ident.head_b, ident.head_c)
    alpha, u, v, w, normal = _cast(X, Y, R, axes, (ident.jaw_taper, ident.jaw_start, ident.crown_taper, ident.head_b), edge)
    au = np.abs(u)
    skin = np.asarray(ident.skin, dtype=_F)
    face = np.empty((n, n, 3), dtype=_F)
    face[...] = skin

    # cheeks
    blush = _ellipse((au - _F(ident.eye_dx + 0.02)) * _F(1 / 0.11), (v - _F(ident.nose_y + 0.02)) * _F(1 / 0.08), 0.8)
    _over(face, (skin[0] * 1.0 + 0.05, skin[1] * 0.82, skin[2] * 0.82), blush * _F(ident.blush * 3.0))

    # eye sockets (darker skin around the eyes)
    sock = _ellipse((au - _F(ident.eye_dx)) * _F(1.0 / (ident.eye_rx * 1.7)), (v - _F(ident.eye_y + 0.01)) * _F(1.0 / (ident.eye_ry * 2.8)), 0.6)
    _over(face, tuple(float(s) * 0.72 for s in skin), sock * _F(ident.socket))

    # beard
    if ident.beard:
        stubble = tex_rng.random((n, n), dtype=np.float32)
        beard_col = np.asarray(ident.hair, dtype=_F) * _F(0.9)
        lower = dm.smoothstep(-0.03, 0.03, _F(ident.nose_y - 0.04) - v)
        lip_zone = _ellipse(u * _F(1.0 / (ident.mouth_w * 1.05)), (v - _F(ident.mouth_y)) * _F(1.0 / 0.05), 0.3)
        moustache = _band(v - _F((ident.nose_y + ident.mouth_y) * 0.5 - 0.005), 0.035, 0.015) * _band(u, ident.mouth_w * 1.1, 0.03)
        chin = _ellipse(u * _F(1.0 / (ident.mouth_w * 0.9)), (v - _F(ident.mouth_y - 0.16)) * _F(1.0 / 0.16), 0.3)
        if ident.beard == 1:
            mask = lower * _F(0.35)
        elif ident.beard == 2:
            mask = moustache
        elif ident.beard == 3:
            mask = np.maximum(moustache, chin)
        else:
            mask = lower * _F(0.95)
        mask = mask * (_F(1.0) - lip_zone * _F(0.9)) * _F(ident.beard_density)
        mask = mask * (_F(0.65) + _F(0.35) * stubble)
        _over(face, beard_col, mask)

    # nose: lookup coordinates shifted by the protrusion under yaw/pitch
    prof = np.clip((_F(ident.nose_y + ident.nose_len) - v) * _F(1.0 / ident.nose_len), 0.0, 1.0)
    t_yaw = dm.sin(vw.yaw) / max(dm.cos(vw.yaw), 0.2)
    t_pitch = dm.sin(vw.pitch) / max(dm.cos(vw.pitch), 0.2)
    un = u - _F(ident.nose_out * t_yaw) * prof
    vn = v + _F(ident.nose_out * t_pitch) * prof
    ridge_zone = dm.smoothstep(ident.nose_y - 0.01, ident.nose_y + 0.04, vn) * dm.smoothstep(
        ident.nose_y + ident.nose_len + 0.02, ident.nose_y + ident.nose_len - 0.05, vn
    )
    sides = _band(np.abs(un) - _F(ident.nose_w * 0.75), 0.012, 0.012) * ridge_zone * dm.smoothstep(
        ident.nose_y + ident.nose_len * 0.9, ident.nose_y + ident.nose_len * 0.3, vn
    )
    light_side = _F(0.5) + _F(0.5) * np.sign(un) * _F(L[0])
    _over(face, tuple(float(s) * 0.70 for s in skin), sides * _F(0.55) * (_F(1.2) - light_side))
    tip = _ellipse(un * _F(1.0 / (ident.nose_w * 0.8)), (vn - _F(ident.nose_y + 0.01)) * _F(1.0 / 0.045), 0.5)
    _over(face, tuple(min(1.0, float(s) * 1.08 + 0.02) for s in skin), tip * _F(0.5))
    for side in (-1.0, 1.0):
        nos = _ellipse((un - _F(side * ident.nose_w * 0.55)) * _F(1.0 / (0.028 * ident.nostril + 0.01)), (vn - _F(ident.nose_y - 0.02)) * _F(1.0 / 0.017), 0.3)
        _over(face, tuple(float(s) * 0.35 for s in skin), nos * _F(0.85))

    # mouth: a lip line bent by the smile, lips above and below, an opening between them
    mw = ident.mouth_w * (1.0 + 0.12 * vw.smile)
    um = u * _F(1.0 / mw)
    across = np.clip(_F(1.0) - um * um, 0.0, 1.0)
    line = _F(ident.mouth_y) + _F(0.045 * vw.smile) * (um * um) - _F(0.01 * vw.smile)
    gap = _F(vw.mouth_open * 0.5)
    dv_m = v - line
    lip_col = (min(1.0, skin[0] * 0.85 + 0.12 * ident.lip_red), skin[1] * (0.62 - 0.2 * ident.lip_red), skin[2] * (0.65 - 0.2 * ident.lip_red))
    upper = dm.smoothstep(-0.006, 0.004, dv_m - gap) * dm.smoothstep(0.006, -0.004, dv_m - gap - _F(ident.lip_up) * across)
    lower = dm.smoothstep(0.006, -0.004, dv_m + gap) * dm.smoothstep(-0.006, 0.004, dv_m + gap + _F(ident.lip_lo) * across)
    in_w = dm.smoothstep(1.02, 0.96, np.abs(um))
    _over(face, lip_col, np.maximum(upper, lower) * in_w)
    opening = _band(dv_m, float(vw.mouth_open * 0.5) + 0.002, 0.004) * in_w * across
    _over(face, (0.16, 0.05, 0.05), opening * _F(0.95))
    if vw.mouth_open > 0:
        teeth = opening * dm.smoothstep(-0.002, 0.004, dv_m - gap * _F(0.2)) * _band(um, 0.7, 0.1)
        _over(face, (0.85, 0.84, 0.78), teeth * _F(0.9))
    _over(face, (0.25, 0.1, 0.1), _band(dv_m, 0.0025, 0.003) * in_w * _F(0.6 - 0.5 * min(1.0, vw.mouth_open * 40)))

    # eyes (mirrored: |u| gives both sides from one definition)
    eye_du = (au - _F(ident.eye_dx)) * _F(1.0 / ident.eye_rx)
    eye_across = np.clip(_F(1.0) - eye_du * eye_du, 0.0, 1.0)
    ey = _F(ident.eye_y)
    lid_up = ey + _F(ident.eye_ry * vw.eye_open) * eye_across
    lid_lo = ey - _F(ident.eye_ry * 0.75 * min(1.0, vw.eye_open + 0.2)) * eye_across
    soft = 0.006
    sclera = dm.smoothstep(-soft, soft, lid_up - v) * dm.smoothstep(-soft, soft, v - lid_lo) * dm.smoothstep(1.0, 0.9, np.abs(eye_du))
    _over(face, (0.93, 0.91, 0.88), sclera)
    # gaze moves both irises the same way in image terms (u, not |u|)
    iris_r = ident.eye_ry * 1.9 * ident.iris_r
    side = np.sign(u)
    di_u = (u - side * _F(ident.eye_dx) - _F(vw.gaze_x)) * _F(1.0 / iris_r)
    di_v = (v - ey - _F(vw.gaze_y)) * _F(1.0 / iris_r)
    iris = _ellipse(di_u, di_v, 0.15) * sclera
    _over(face, ident.iris, iris)
    pupil = _ellipse(di_u * _F(2.4), di_v * _F(2.4), 0.3) * sclera
    _over(face, (0.03, 0.03, 0.04), pupil)
    lash = _band(v - lid_up - _F(0.004), 0.006, 0.006) * dm.smoothstep(1.15, 0.95, np.abs(eye_du))
    _over(face, (0.08, 0.06, 0.06), lash * _F(0.9))

    # brows (symmetric: no built-in asymmetry)
    bc = ident.eye_dx + ident.brow_dx
    bu = (au - _F(bc)) * _F(1.0 / ident.brow_len)
    b_line = _F(ident.eye_y + ident.brow_dy + vw.brow_raise) + _F(ident.brow_arch) * (_F(1.0) - bu * bu)
    b_th = _F(ident.brow_th * 0.5) * (_F(1.0) - _F(0.35) * np.clip(bu, -1.0, 1.0))
    brow = dm.smoothstep(0.004, -0.004, np.abs(v - b_line) - b_th) * dm.smoothstep(1.05, 0.9, np.abs(bu))
    brow_col = tuple(float(h) * ident.brow_dark + float(s) * 0.35 * (1 - ident.brow_dark) for h, s in zip(ident.hair, skin))
    _over(face, brow_col, brow * _F(0.95))

    # scalp hair on the head surface (above the hairline), with a fringe
    if not ident.bald:
        un_h = u * _F(1.0 / ident.head_a)
        hl = _F(ident.hairline + vw.hair_jitter) + _F(ident.hair_recess) * un_h * un_h - _F(ident.fringe) * np.clip(_F(1.0) - un_h * un_h * _F(2.0), 0.0, 1.0)
        scalp = dm.smoothstep(-0.02, 0.02, v - hl)
        sideburn = _band(au - _F(ident.head_a * 0.93), 0.06, 0.03) * dm.smoothstep(-0.03, 0.03, v - _F(ident.ear_v + 0.05))
        # the back and sides of the head (seen under strong yaw) are hair down to the ears or
        # to the hair's length
        side_low = ident.ear_v + 0.10 if ident.hair_bottom > 0.0 else max(ident.hair_bottom, -0.6)
        back = dm.smoothstep(0.45, 0.2, w * _F(1.0 / ident.head_c)) * dm.smoothstep(-0.03, 0.03, v - _F(side_low))
        sideburn = np.maximum(sideburn, back)
        strands = _F(1.0) + _F(0.10) * _tri(au * _F(ident.hair_freq) + v * _F(3.0))
        hair_col = np.asarray(ident.hair, dtype=_F)[None, None, :] * strands[..., None]
        _over(face, hair_col, np.maximum(scalp, sideburn))

    # glasses (frames follow the face surface)
    if vw.glasses_on:
        gdu = (au - _F(ident.eye_dx)) * _F(1.0 / ident.glasses_w)
        gdv = (v - _F(ident.eye_y + 0.01)) * _F(1.0 / ident.glasses_h)
        if ident.glasses_square:
            r2 = gdu * gdu
            s2 = gdv * gdv
            r = np.sqrt(np.sqrt(r2 * r2 + s2 * s2))
        else:
            r = np.sqrt(gdu * gdu + gdv * gdv)
        th = _F(ident.glasses_th / ident.glasses_h)
        ring = dm.smoothstep(0.0, 0.15, th - np.abs(r - _F(1.0)))
        lens = dm.smoothstep(1.02, 0.95, r)
        _over(face, (0.75, 0.80, 0.85), lens * _F(0.12))
        bridge = _band(v - _F(ident.eye_y + 0.03), ident.glasses_th * 0.6, 0.004) * _band(u, ident.eye_dx - ident.glasses_w + 0.01, 0.004)
        temple = _band(v - _F(ident.eye_y + 0.03), ident.glasses_th * 0.6, 0.004) * dm.smoothstep(
            ident.eye_dx + ident.glasses_w * 0.95, ident.eye_dx + ident.glasses_w * 1.05, au
        )
        _over(face, ident.frame, np.maximum(np.maximum(ring, bridge), temple))

    # lighting: ambient + Lambert on the ellipsoid normal, then colour tint
    lam = np.maximum(normal[0] * _F(L[0]) + normal[1] * _F(L[1]) + normal[2] * _F(L[2]), 0.0)
    shade = _F(vw.ambient) + _F(1.0 - vw.ambient) * _F(1.1) * lam
    face *= shade[..., None]
    face *= tint
    _over(img, face, alpha)
    for facing, ear_col, ear_alpha in ear_layers:
        if facing:
            _over(img, ear_col, ear_alpha)

    img *= _F(vw.gain)
    # 2x2 box average in a fixed order, then round to uint8.
    s = SUPERSAMPLE
    acc = np.zeros((size, size, 3), dtype=_F)
    for i in range(s):
        for j in range(s):
            acc += img[i::s, j::s]
    acc *= _F(255.0 / (s * s))
    return np.clip(np.rint(acc), 0.0, 255.0).astype(np.uint8)
