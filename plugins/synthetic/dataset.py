"""The synthetic benchmark and training splits (``synthetic``, ``synthetic-train``).

Why: the default ``fiqabench run`` must work offline, so the benchmark is generated, not
downloaded. The split layout follows the embedded-world pilot:

- ``synthetic`` (the default test benchmark): 100 identities x 10 images; half the images of
  every identity degraded with one of seven types (assigned in equal numbers), severity
  ``s ~ U(0, 1]``; all 4,500 mated pairs and 100,000 sampled non-mated pairs;
- ``synthetic-train``: 2,000 other identities x 12 clean images, for training the FR model and
  the DifFIQA DDPM (which add their own degradations).

Identities of different splits come from different seed streams (split code in every seed), so
they are disjoint. Everything about a sample (identity, view, degradation draws) is seeded from
``(WORLD_SEED, seed option, split code, identity, image, purpose)``: a sample's pixels never
depend on which other samples were rendered, or in which order.

Images are rendered lazily, on the first :meth:`SyntheticDataset.read_images` that asks for
them, and kept in memory (1,000 images of 32 x 32 px are 3 MB).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from fiqabench.api import Comparisons, SampleTable, Templates
from fiqabench.errors import ConfigError

from . import _detmath as dm
from . import degrade as deg
from . import render
from ._meta import GENERATOR_VERSION

__all__ = ["SPLITS", "SplitSpec", "SyntheticDataset", "WORLD_SEED", "build_test", "build_train"]

#: Root of every seed of the synthetic world (an arbitrary fixed integer).
WORLD_SEED = 20230926

# Purposes mixed into seeds, so the draws of one sample never collide with another's.
_IDENTITY, _VIEW, _DEGRADE, _PLAN, _PAIRS = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class SplitSpec:
    """The shape of one split; every field is part of the manifest digest."""

    name: str
    code: int  # seed-stream code: splits never share identities
    prefix: str  # subject id prefix
    identities: int
    images_per_identity: int
    degraded_fraction: float
    max_severity: float
    non_mated: int
    seed: int = 0


#: The registered splits with their default sizes.
SPLITS: dict[str, SplitSpec] = {
    "synthetic": SplitSpec("synthetic", 1, "id", 100, 10, 0.5, 1.0, 100_000),
    "synthetic-train": SplitSpec("synthetic-train", 2, "tr", 2000, 12, 0.0, 1.0, 100_000),
}


def _positive(name: str, value: Any, minimum: int = 1) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"dataset option {name}={value!r}: expected an integer") from None
    if number < minimum:
        raise ConfigError(f"dataset option {name}={value!r}: must be at least {minimum}")
    return number


def _fraction(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"dataset option {name}={value!r}: expected a number") from None
    if not 0.0 <= number <= 1.0:
        raise ConfigError(f"dataset option {name}={value!r}: must be in [0, 1]")
    return number


def spec_from_options(split: str, options: Mapping[str, Any]) -> SplitSpec:
    """The split's default :class:`SplitSpec` overridden by user options (validated)."""
    if split not in SPLITS:
        raise ConfigError(f"unknown synthetic split {split!r}: expected one of {', '.join(SPLITS)}")
    base = SPLITS[split]
    known = {"identities", "images_per_identity", "non_mated", "seed", "degraded_fraction", "max_severity"}
    unknown = set(options) - known
    if unknown:
        raise ConfigError(f"dataset {split!r} has no option(s) {', '.join(sorted(unknown))}")

    def pick(key: str) -> Any:
        value = options.get(key)
        return getattr(base, key) if value is None else value

    return SplitSpec(
        name=base.name,
        code=base.code,
        prefix=base.prefix,
        identities=_positive("identities", pick("identities"), 2),
        images_per_identity=_positive("images_per_identity", pick("images_per_identity"), 2),
        degraded_fraction=_fraction("degraded_fraction", pick("degraded_fraction")),
        max_severity=_fraction("max_severity", pick("max_severity")),
        non_mated=_positive("non_mated", pick("non_mated"), 0),
        seed=_positive("seed", pick("seed"), 0),
    )


@lru_cache(maxsize=8192)
def identity_params(seed: int, code: int, identity: int) -> render.Identity:
    """The parameters of one identity (cached: they are reused by every image)."""
    return render.sample_identity(dm.rng_for(WORLD_SEED, seed, code, identity, _IDENTITY))


def view_params(seed: int, code: int, identity: int, image: int) -> render.View:
    """The nuisance variation of one image."""
    return render.sample_view(dm.rng_for(WORLD_SEED, seed, code, identity, image, _VIEW), identity_params(seed, code, identity))


def render_sample(
    seed: int, code: int, identity: int, image: int, degradation: str = "none", severity: float = 0.0
) -> np.ndarray:
    """Render one sample, degraded as given; the single place that turns a plan row into pixels.

    Pose is applied in the renderer, the other types to the rendered pixels; both draw their
    random parts from the sample's own degradation seed.
    """
    ident = identity_params(seed, code, identity)
    view = view_params(seed, code, identity, image)
    if degradation == "none" or severity <= 0.0:
        return render.render(ident, view)
    rng = dm.rng_for(WORLD_SEED, seed, code, identity, image, _DEGRADE)
    if degradation == "pose":
        yaw, pitch = deg.pose_angles(severity, rng, view.yaw, view.pitch)
        return render.render(ident, render.with_pose(view, yaw, pitch))
    return deg.degrade(render.render(ident, view), degradation, severity, rng)


class SyntheticDataset:
    """A split of the synthetic world, implementing :class:`fiqabench.api.Dataset`."""

    domain = "synthetic"

    def __init__(self, spec: SplitSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.version = GENERATOR_VERSION
        n_id, n_img = spec.identities, spec.images_per_identity
        self.identity_index = np.repeat(np.arange(n_id), n_img)
        self.image_index = np.tile(np.arange(n_img), n_id)
        self.degradation, self.severity = self._plan()
        self._images = np.zeros((len(self), render.IMAGE_SIZE, render.IMAGE_SIZE, 3), dtype=np.uint8)
        self._rendered = np.zeros(len(self), dtype=bool)
        self._samples: SampleTable | None = None
        self._comparisons: Comparisons | None = None
        self._digest: str | None = None

    def __len__(self) -> int:
        return self.spec.identities * self.spec.images_per_identity

    # -- the plan: which image is degraded, how, how much ------------------------------------
    def _plan(self) -> tuple[list[str], np.ndarray]:
        spec = self.spec
        n_img = spec.images_per_identity
        per_identity = int(round(spec.degraded_fraction * n_img))
        degraded: list[int] = []
        for i in range(spec.identities):
            order = np.argsort(dm.rng_for(WORLD_SEED, spec.seed, spec.code, i, _PLAN).random(n_img), kind="stable")
            degraded.extend(i * n_img + int(j) for j in sorted(order[:per_identity]))
        rng = dm.rng_for(WORLD_SEED, spec.seed, spec.code, _PLAN)
        # Equal numbers of each type (up to one), in a seeded random order.
        kinds = [deg.DEGRADATIONS[t % len(deg.DEGRADATIONS)] for t in range(len(degraded))]
        order = np.argsort(rng.random(len(kinds)), kind="stable")
        # 1 - U[0, 1) lies in (0, 1]: a degraded image never has severity exactly 0.
        severities = (1.0 - rng.random(len(kinds))) * spec.max_severity
        degradation = ["none"] * len(self)
        severity = np.zeros(len(self), dtype=np.float64)
        for slot, sample in enumerate(degraded):
            if spec.max_severity <= 0.0:
                break
            degradation[sample] = kinds[int(order[slot])]
            severity[sample] = float(severities[slot])
        return degradation, severity

    # -- Dataset protocol ----------------------------------------------------------------------
    def subject(self, identity: int) -> str:
        return f"{self.spec.prefix}{identity:04d}"

    def samples(self) -> SampleTable:
        if self._samples is None:
            ids, subjects, metadata = [], [], []
            for k in range(len(self)):
                i, j = int(self.identity_index[k]), int(self.image_index[k])
                subject = self.subject(i)
                ids.append(f"{subject}/img{j:02d}")
                subjects.append(subject)
                metadata.append(
                    {
                        "identity": subject,
                        "degradation": self.degradation[k],
                        "severity": float(self.severity[k]),
                    }
                )
            self._samples = SampleTable(ids=tuple(ids), subjects=tuple(subjects), metadata=tuple(metadata))
        return self._samples

    def comparisons(self) -> Comparisons:
        if self._comparisons is None:
            self._comparisons = self._make_comparisons()
        return self._comparisons

    def templates(self) -> Templates | None:
        return None

    def read_images(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 RGB ``(len(indices), 32, 32, 3)``; renders what is not rendered yet."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise ConfigError(f"{self.name}: sample index out of range 0..{len(self) - 1}")
        for k in idx[~self._rendered[idx]]:
            k = int(k)
            if not self._rendered[k]:
                self._images[k] = self.render_index(k)
                self._rendered[k] = True
        return self._images[idx].copy()

    def render_index(self, k: int, degradation: str | None = None, severity: float | None = None) -> np.ndarray:
        """Render sample ``k`` (optionally with another degradation: used by calibration)."""
        spec = self.spec
        return render_sample(
            spec.seed,
            spec.code,
            int(self.identity_index[k]),
            int(self.image_index[k]),
            self.degradation[k] if degradation is None else degradation,
            float(self.severity[k]) if severity is None else severity,
        )

    def manifest_digest(self) -> str:
        """sha256 of the generator version, constants, split shape, samples and protocol."""
        if self._digest is None:
            digest = hashlib.sha256()
            header = {
                "generator": GENERATOR_VERSION,
                "version": self.version,
                "image_size": render.IMAGE_SIZE,
                "supersample": render.SUPERSAMPLE,
                "world_seed": WORLD_SEED,
                "calibration": deg.CALIBRATION,
                "spec": asdict(self.spec),
            }
            digest.update(json.dumps(header, sort_keys=True).encode())
            table = self.samples()
            digest.update(json.dumps([table.ids, table.subjects, list(table.metadata)], sort_keys=True).encode())
            comp = self.comparisons()
            for array in (comp.a, comp.b, comp.mated):
                digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
            self._digest = digest.hexdigest()
        return self._digest

    # -- comparisons -----------------------------------------------------------------------------
    def _make_comparisons(self) -> Comparisons:
        spec = self.spec
        n_img = spec.images_per_identity
        ia, ib = np.triu_indices(n_img, k=1)
        starts = np.arange(spec.identities)[:, None] * n_img
        mated_a = (starts + ia[None, :]).reshape(-1)
        mated_b = (starts + ib[None, :]).reshape(-1)
        non_a, non_b = self._non_mated_pairs()
        a = np.concatenate([mated_a, non_a]).astype(np.int64)
        b = np.concatenate([mated_b, non_b]).astype(np.int64)
        mated = np.concatenate([np.ones(mated_a.size, bool), np.zeros(non_a.size, bool)])
        return Comparisons(a=a, b=b, mated=mated)

    def _non_mated_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """``non_mated`` distinct pairs (a < b) of different identities, uniformly at random."""
        spec = self.spec
        n = len(self)
        n_img = spec.images_per_identity
        total = n * (n - 1) // 2 - spec.identities * n_img * (n_img - 1) // 2
        want = min(spec.non_mated, total)
        rng = dm.rng_for(WORLD_SEED, spec.seed, spec.code, _PAIRS)
        if want == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        if total <= 4 * want:
            a, b = np.triu_indices(n, k=1)
            keep = self.identity_index[a] != self.identity_index[b]
            a, b = a[keep], b[keep]
            chosen = np.sort(np.argsort(rng.random(a.size), kind="stable")[:want])
            return a[chosen].astype(np.int64), b[chosen].astype(np.int64)
        # Rejection sampling: draw pairs, drop same-identity ones and repeats (first draw wins).
        seen: set[int] = set()
        out: list[int] = []
        while len(out) < want:
            draw = np.floor(rng.random((2, 2 * want)) * n).astype(np.int64)
            lo, hi = np.minimum(draw[0], draw[1]), np.maximum(draw[0], draw[1])
            ok = self.identity_index[lo] != self.identity_index[hi]
            for key in (lo[ok] * n + hi[ok]).tolist():
                if key not in seen:
                    seen.add(key)
                    out.append(key)
                    if len(out) == want:
                        break
        keys = np.sort(np.asarray(out, dtype=np.int64))
        return keys // n, keys % n


def build(split: str, options: Mapping[str, Any] | None = None) -> SyntheticDataset:
    """A split by name with options (``identities``, ``images_per_identity``, ``non_mated``, ...)."""
    return SyntheticDataset(spec_from_options(split, dict(options or {})))


def build_test(*, options: Mapping[str, Any], device: Any = None) -> SyntheticDataset:
    """Factory registered as ``synthetic`` (``device`` is unused: rendering runs in numpy)."""
    return build("synthetic", options)


def build_train(*, options: Mapping[str, Any], device: Any = None) -> SyntheticDataset:
    """Factory registered as ``synthetic-train``."""
    return build("synthetic-train", options)
