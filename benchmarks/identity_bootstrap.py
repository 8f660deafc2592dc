"""Shared analysis of embedded-benchmark runs (used by ``diffiqa_ablation.py`` and
``baselines_quality.py``): qualities from a run directory, Spearman per degradation type, and the
paired cluster bootstrap over identities.

Not a script; the benchmarks import it (``python benchmarks/<script>.py`` puts this folder on the
path).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["identity_bootstrap", "load_qualities", "per_type_table"]


def load_qualities(run_dir: Path, method: str, ids: tuple[str, ...]) -> np.ndarray:
    """One method's qualities on ``synthetic`` from ``qualities.csv``, in the order of ``ids``."""
    import pandas as pd

    frame = pd.read_csv(run_dir / "qualities.csv")
    frame = frame[(frame["dataset"] == "synthetic") & (frame["method"] == method)].set_index("sample")
    return frame["quality"].reindex(list(ids)).to_numpy(dtype=float)


def per_type_table(run_dir: Path, methods: Sequence[str] = ("diffiqa", "random")) -> str:
    """Spearman(q, -severity) per degradation type, from a run directory's ``qualities.csv``;
    rows sorted by the first method's correlation."""
    import pandas as pd
    from scipy.stats import spearmanr

    from fiqabench_plugins.synthetic.dataset import build

    table = build("synthetic", {}).samples()
    meta = pd.DataFrame({"sample": table.ids,
                         "degradation": [m["degradation"] for m in table.metadata],
                         "severity": [m["severity"] for m in table.metadata]})
    qualities = pd.read_csv(run_dir / "qualities.csv")
    wide = qualities[qualities["dataset"] == "synthetic"].pivot(index="sample", columns="method", values="quality")
    frame = meta.merge(wide, left_on="sample", right_index=True)
    methods = [m for m in methods if m in frame]
    lines = ["| degradation | images | " + " | ".join(f"Spearman {m}" for m in methods) + " |",
             "|---|---|" + "---|" * len(methods)]
    degraded = frame[frame["degradation"] != "none"]
    groups = sorted(degraded.groupby("degradation"), key=lambda g: -spearmanr(g[1][methods[0]], -g[1]["severity"])[0])
    for name, group in [*groups, ("all degraded", degraded), ("all images", frame)]:
        rhos = [spearmanr(group[m], -group["severity"])[0] for m in methods]
        lines.append(f"| {name} | {len(group)} | " + " | ".join(f"{r:.2f}" for r in rhos) + " |")
    return "\n".join(lines)


def identity_bootstrap(
    variants: Mapping[str, tuple[Path, str]], reference: str, replicates: int, limit: float = 0.3
) -> str:
    """pAUC@``limit`` of every variant (label -> (run directory, method)) and its difference to
    ``reference``, with 95 % percentile intervals from a cluster bootstrap over the benchmark's
    identities: each replicate draws the 100 identities with replacement and keeps their mated
    comparisons; the threshold stays the one fixed from all non-mated comparisons (the
    protocol's), and all variants see the same draws, so the differences are paired. The
    evaluation FR model is SynthArcFace (shipped weights)."""
    from fiqabench.metrics.comparisons import cosine_scores
    from fiqabench.metrics.edc import edc, fmr_threshold, pair_quality, pauc
    from fiqabench_plugins.synthetic.dataset import build
    from fiqabench_plugins.synthetic.model import build as build_fr

    data = build("synthetic", {})
    table, comps = data.samples(), data.comparisons()
    embeddings = build_fr(options={}).embed(data.read_images(list(range(len(table)))))
    scores = cosine_scores(embeddings, comps.a, comps.b)
    mated = np.asarray(comps.mated, dtype=bool)
    threshold = fmr_threshold(scores[~mated], 1e-3)
    a, b, s = np.asarray(comps.a)[mated], np.asarray(comps.b)[mated], scores[mated]
    _, group_of_pair = np.unique(np.asarray(table.subjects)[a], return_inverse=True)
    groups = [np.flatnonzero(group_of_pair == g) for g in range(group_of_pair.max() + 1)]
    qualities = {label: load_qualities(run_dir, method, table.ids) for label, (run_dir, method) in variants.items()}

    def pauc_at(label: str, pairs: np.ndarray) -> float:
        q = qualities[label]
        curve = edc(mated_scores=s[pairs], mated_pair_quality=pair_quality(q[a[pairs]], q[b[pairs]]), threshold=threshold)
        return pauc(curve, limit)

    everything = np.arange(len(s))
    point = {label: pauc_at(label, everything) for label in variants}
    rng = np.random.default_rng(0)
    values: dict[str, list[float]] = {label: [] for label in variants}
    diffs: dict[str, list[float]] = {label: [] for label in variants}
    for _ in range(replicates):
        pairs = np.concatenate([groups[g] for g in rng.integers(0, len(groups), len(groups))])
        ref = pauc_at(reference, pairs)
        for label in variants:
            value = ref if label == reference else pauc_at(label, pairs)
            values[label].append(value)
            diffs[label].append(value - ref)
    tag = format(limit, "g")
    lines = [f"| variant | pAUC@{tag} (95 % CI) | minus {reference} (95 % CI) | replicates worse than {reference} |",
             "|---|---|---|---|"]
    for label in variants:
        lo, hi = np.percentile(values[label], [2.5, 97.5])
        dlo, dhi = np.percentile(diffs[label], [2.5, 97.5])
        worse = float(np.mean(np.asarray(diffs[label]) > 0))
        diff_text = "-" if label == reference else f"{point[label] - point[reference]:+.3f} ({dlo:+.3f}, {dhi:+.3f})"
        worse_text = "-" if label == reference else f"{100 * worse:.1f} %"
        lines.append(f"| {label} | {point[label]:.3f} ({lo:.3f}, {hi:.3f}) | {diff_text} | {worse_text} |")
    return "\n".join(lines)
