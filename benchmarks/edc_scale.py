"""EDC, pAUC and template pair scoring at IJB-C scale, on synthetic data.

Run: ``.venv/bin/python benchmarks/edc_scale.py [--repeats 5] [--seed 0] [--skip-erc] [--pooling]``

Data (synthetic, sized like IJB-C 1:1 in the insightface layout, ``research/ecosystem.md`` 4.8):

- 23,124 templates x 512 dims, float32, unit length. Each template belongs to one of 3,531
  subjects: feature = subject centre + noise of a per-template scale, so mated scores spread and
  some fall below the FMR = 1e-3 threshold.
- 19,557 mated pairs (two templates of one subject) and 15,638,932 non-mated pairs (uniformly
  random templates of different subjects), concatenated and sorted stably by first template, as
  the IJB-C pair file is grouped by ``tid1``. First and second templates range over all 23,124
  templates, which is the worst case for the grouped scorer (every block needs every column).
- 12 FIQA methods: one quality per template (the "sample" of a template comparison), random with
  an increasing share of the template's noise scale (method 0 is pure noise); pair quality = min.

Printed (times are medians over ``--repeats`` runs; the machine is shared, so expect noise):

- the FMR = 1e-3 threshold over the 15.6 M non-mated scores, once (shared by all methods);
- EDC + pAUC@0.2 + pAUC@0.3 per method after the shared threshold (pair quality included),
  median and max over the 12 methods, split into its edc and pauc parts, and again with
  OpenBLAS limited to one thread (``pauc`` uses ``np.dot``, a BLAS call);
- template pair scoring of all 15,658,489 pairs vs the reference row-blocked float32 GEMM
  (blocks of 2,048 templates of the template matrix with itself, no pair lookup), with the ratio;
- peak extra memory of both, measured two ways: ``tracemalloc`` peak (numpy buffers are traced;
  OpenBLAS's own work buffers are not) and the rise of the process's peak RSS (``VmHWM`` after
  resetting it through ``/proc/self/clear_refs``; includes everything, Linux only);
- the legacy recomputed-threshold ERC for one method (``fiqabench.metrics.erc``; ``--skip-erc``);
- with ``--pooling``, ``pool_templates`` on 469,375 images + flips x 512 (IJB-C's image count).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fiqabench.metrics.comparisons import cosine_scores, pool_templates, template_pair_scores  # noqa: E402
from fiqabench.metrics.edc import edc, fmr_threshold, pair_quality, pauc  # noqa: E402

N_TEMPLATES = 23_124
DIM = 512
N_SUBJECTS = 3_531
N_MATED = 19_557
N_NON_MATED = 15_638_932
N_METHODS = 12
REFERENCE_BLOCK = 2_048
MIB = 1 << 20


def make_data(seed: int) -> dict[str, Any]:
    """Synthetic IJB-C-sized templates, pairs and per-template qualities."""
    rng = np.random.default_rng(seed)
    subject = rng.integers(0, N_SUBJECTS, size=N_TEMPLATES)
    centres = rng.standard_normal((N_SUBJECTS, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    # Noise norm ~ scale: mated cosine ~ 1 / sqrt((1 + s_a^2)(1 + s_b^2)); a lognormal scale puts
    # a few percent of mated pairs below the threshold at FMR 1e-3.
    scale = np.exp(rng.normal(0.0, 0.55, size=N_TEMPLATES)).astype(np.float32)
    features = centres[subject] + rng.standard_normal((N_TEMPLATES, DIM), dtype=np.float32) * (
        scale[:, None] / np.sqrt(DIM, dtype=np.float32)
    )
    features /= np.linalg.norm(features, axis=1, keepdims=True)

    # Mated: a template and another template of the same subject.
    by_subject = np.argsort(subject, kind="stable")
    counts = np.bincount(subject, minlength=N_SUBJECTS)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    position = np.empty(N_TEMPLATES, dtype=np.int64)
    position[by_subject] = np.arange(N_TEMPLATES) - starts[subject[by_subject]]
    eligible = np.flatnonzero(counts[subject] >= 2)
    ma = rng.choice(eligible, size=N_MATED)
    c = counts[subject[ma]]
    offset = (position[ma] + 1 + rng.integers(0, c - 1)) % c
    mb = by_subject[starts[subject[ma]] + offset]

    # Non-mated: uniform over templates of different subjects (redraw the few collisions).
    na = rng.integers(0, N_TEMPLATES, size=N_NON_MATED, dtype=np.int32)
    nb = rng.integers(0, N_TEMPLATES, size=N_NON_MATED, dtype=np.int32)
    clash = np.flatnonzero(subject[na] == subject[nb])
    while clash.size:
        nb[clash] = rng.integers(0, N_TEMPLATES, size=clash.size, dtype=np.int32)
        clash = clash[subject[na[clash]] == subject[nb[clash]]]

    a = np.concatenate((ma.astype(np.int32), na))
    b = np.concatenate((mb.astype(np.int32), nb))
    mated = np.zeros(a.size, dtype=bool)
    mated[:N_MATED] = True
    del na, nb
    group = np.argsort(a, kind="stable")  # grouped by first template, like ijbc_template_pair_label.txt
    a, b, mated = a[group], b[group], mated[group]
    del group

    weights = np.linspace(0.0, 2.0, N_METHODS)
    signal = -np.log(scale.astype(np.float64))
    qualities = [w * signal + rng.standard_normal(N_TEMPLATES) for w in weights]
    return {"features": features, "a": a, "b": b, "mated": mated, "qualities": qualities}


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time of ``repeats`` calls and the last result."""
    times = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def reference_gemm(features: np.ndarray, *, reuse_buffer: bool) -> None:
    """Row-blocked float32 GEMM of the template matrix with itself (blocks of 2,048 rows)."""
    n = features.shape[0]
    buffer = np.empty((REFERENCE_BLOCK, n), dtype=np.float32) if reuse_buffer else None
    for start in range(0, n, REFERENCE_BLOCK):
        rows = features[start : start + REFERENCE_BLOCK]
        if buffer is None:
            rows @ features.T
        else:
            np.matmul(rows, features.T, out=buffer[: rows.shape[0]])


def _vm_hwm_bytes() -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def peak_extra_memory(fn: Callable[[], Any]) -> tuple[float, float | None]:
    """(tracemalloc peak above the start, rise of peak RSS above the RSS at the start), in MiB.

    The result of ``fn`` is kept until both are read, so it counts as extra memory.
    """
    rss: float | None = None
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # resets VmHWM to the current RSS
        base = _vm_hwm_bytes()
    except OSError:
        base = None
    result = fn()
    if base is not None:
        peak = _vm_hwm_bytes()
        rss = (peak - base) / MIB if peak is not None else None
    del result
    tracemalloc.start()
    tracemalloc.reset_peak()
    start, _ = tracemalloc.get_traced_memory()
    result = fn()
    _, peak_traced = tracemalloc.get_traced_memory()
    del result
    tracemalloc.stop()
    return (peak_traced - start) / MIB, rss


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _blas_name() -> str:
    try:
        config = np.show_config(mode="dicts")  # numpy >= 1.25
        blas = config["Build Dependencies"]["blas"]
        return f"BLAS {blas['name']} {blas.get('version', '')}".strip()
    except Exception:  # the layout of show_config is not an API; the name is only informative
        return "BLAS unknown"


def time_pooling(repeats: int, seed: int) -> None:
    """pool_templates at IJB-C size: 469,375 images (+ flips) x 512 into 23,124 templates."""
    rng = np.random.default_rng(seed)
    n_images = 469_375
    emb = rng.standard_normal((n_images, DIM), dtype=np.float32)
    flip = rng.standard_normal((n_images, DIM), dtype=np.float32)
    template = np.sort(np.concatenate((np.arange(N_TEMPLATES), rng.integers(0, N_TEMPLATES, n_images - N_TEMPLATES))))
    media = rng.integers(0, 200_000, n_images)
    det = rng.uniform(0.0, 1.0, n_images).astype(np.float32)
    call = lambda: pool_templates(emb, template, media, flip_embeddings=flip, detector_scores=det)  # noqa: E731
    seconds, _ = timed(call, repeats)
    traced, rss = peak_extra_memory(call)
    rss_text = f"{rss:.1f} MiB" if rss is not None else "n/a"
    print(
        f"\npool_templates, {n_images:,} images + flips x {DIM} -> {N_TEMPLATES:,} templates: {seconds:.2f} s; "
        f"peak extra memory tracemalloc {traced:.1f} MiB, peak-RSS rise {rss_text}"
    )


def _openblas_thread_control() -> tuple[Callable[[int], None] | None, Callable[[], int] | None]:
    """Setter and getter of OpenBLAS's thread count for the library numpy loaded (best effort).

    threadpoolctl is not a dependency; the wheel's OpenBLAS exports the calls under prefixed names.
    """
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line})
    except OSError:
        return None, None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for suffix in ("64_", "_64_", ""):
            for prefix in ("scipy_openblas", "openblas"):
                setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                if setter is not None and getter is not None:
                    setter.argtypes, setter.restype = [ctypes.c_int], None
                    getter.argtypes, getter.restype = [], ctypes.c_int
                    return setter, getter
    return None, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-erc", action="store_true", help="skip the legacy ERC timing")
    parser.add_argument("--pooling", action="store_true", help="also time pool_templates at IJB-C size (+2 GiB)")
    args = parser.parse_args(argv)

    print(f"machine: {platform.machine()}, {os.cpu_count()} logical CPUs, {_cpu_model()}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, {_blas_name()}")
    print(f"load average at start (other users of the machine): {os.getloadavg()[0]:.2f}")
    overall = start = time.perf_counter()
    data = make_data(args.seed)
    features, a, b, mated = data["features"], data["a"], data["b"], data["mated"]
    print(
        f"data: {features.shape[0]:,} templates x {features.shape[1]}, {a.size:,} pairs "
        f"({int(mated.sum()):,} mated), generated in {time.perf_counter() - start:.1f} s"
    )

    # --- pair scoring -------------------------------------------------------------------
    # Interleaved rounds, rotating the order, so load from other users of the machine hits the
    # three contenders alike; the ratio is also taken per round.
    contenders: dict[str, Callable[[], Any]] = {
        "ours": lambda: template_pair_scores(features, a, b),
        "ref_alloc": lambda: reference_gemm(features, reuse_buffer=False),
        "ref_buf": lambda: reference_gemm(features, reuse_buffer=True),
    }
    runs: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    scores = None
    for r in range(args.repeats):
        for name in names[r % 3 :] + names[: r % 3]:
            seconds, result = timed(contenders[name], 1)
            runs[name].append(seconds)
            if name == "ours":
                scores = result
    ratios = [o / min(x, y) for o, x, y in zip(runs["ours"], runs["ref_alloc"], runs["ref_buf"])]
    t_ours = statistics.median(runs["ours"])
    t_ref_alloc = statistics.median(runs["ref_alloc"])
    t_ref_buf = statistics.median(runs["ref_buf"])
    t_ref = min(t_ref_alloc, t_ref_buf)
    check = np.random.default_rng(1).choice(a.size, size=200_000, replace=False)
    exact = cosine_scores(features, a[check], b[check])
    max_err = float(np.abs(scores[check] - exact).max())
    mem_ours = peak_extra_memory(lambda: template_pair_scores(features, a, b))
    mem_ref = peak_extra_memory(lambda: reference_gemm(features, reuse_buffer=True))
    mem_ref_alloc = peak_extra_memory(lambda: reference_gemm(features, reuse_buffer=False))

    print("\npair scoring, all pairs (median of {} runs):".format(args.repeats))
    print(f"  template_pair_scores             {t_ours:7.3f} s")
    print(f"  reference GEMM, fresh blocks     {t_ref_alloc:7.3f} s")
    print(f"  reference GEMM, reused buffer    {t_ref_buf:7.3f} s")
    print(f"  ratio of medians, ours / faster reference   {t_ours / t_ref:6.3f}  (target <= 1.2)")
    print(f"  per-round ratios ours / faster reference    {' '.join(f'{x:.2f}' for x in ratios)}")
    print("  runs (s): " + "; ".join(f"{k} " + " ".join(f"{x:.2f}" for x in v) for k, v in runs.items()))
    print(f"  max |ours - float64 cosine| on 200,000 pairs: {max_err:.2e}")

    def mem(label: str, values: tuple[float, float | None]) -> None:
        rss = f"{values[1]:7.1f} MiB" if values[1] is not None else "    n/a"
        print(f"  {label:32s} tracemalloc {values[0]:7.1f} MiB   peak-RSS rise {rss}")

    print("peak extra memory (result included):")
    mem("template_pair_scores", mem_ours)
    mem("reference GEMM, reused buffer", mem_ref)
    mem("reference GEMM, fresh blocks", mem_ref_alloc)

    # --- threshold and EDC --------------------------------------------------------------
    mated_scores = scores[mated].astype(np.float64)
    non_mated_scores = scores[~mated].astype(np.float64)
    ma, mb = a[mated], b[mated]
    del scores
    t_threshold, threshold = timed(lambda: fmr_threshold(non_mated_scores, 1e-3), args.repeats)
    fnmr0 = float(np.mean(mated_scores < threshold))

    def edc_only(q: np.ndarray) -> Any:
        return edc(mated_scores=mated_scores, mated_pair_quality=pair_quality(q[ma], q[mb]), threshold=threshold)

    def one_method(q: np.ndarray) -> tuple[float, float]:
        curve = edc_only(q)
        return pauc(curve, 0.2), pauc(curve, 0.3)

    def per_method_times() -> tuple[list[float], list[float], list[float], list[tuple[float, float]]]:
        whole, edc_part, pauc_part, values = [], [], [], []
        for q in data["qualities"]:
            seconds, result = timed(lambda q=q: one_method(q), args.repeats)
            whole.append(seconds)
            values.append(result)
            edc_part.append(timed(lambda q=q: edc_only(q), args.repeats)[0])
            curve = edc_only(q)
            pauc_part.append(timed(lambda: (pauc(curve, 0.2), pauc(curve, 0.3)), args.repeats)[0])
        return whole, edc_part, pauc_part, values

    per_method, edc_part, pauc_part, paucs = per_method_times()
    median_ms = statistics.median(per_method) * 1e3
    total = t_threshold + sum(per_method)
    print(f"\nthreshold at FMR 1e-3 over {non_mated_scores.size:,} non-mated scores (once): {t_threshold * 1e3:7.1f} ms")
    print(f"  threshold {threshold:.6f}, FNMR(0) {fnmr0:.4f}")
    print(
        f"EDC + pAUC@0.2 + pAUC@0.3 per method (median of {N_METHODS}): {median_ms:6.2f} ms "
        f"(max {max(per_method) * 1e3:.2f} ms; target < 20 ms)"
    )
    print(
        f"  of which pair quality + edc {statistics.median(edc_part) * 1e3:.2f} ms, "
        f"2 x pauc {statistics.median(pauc_part) * 1e3:.2f} ms (medians)"
    )
    print(f"total for {N_METHODS} methods incl. the shared threshold: {total * 1e3:7.1f} ms")
    set_threads, get_threads = _openblas_thread_control()
    if set_threads is not None and get_threads is not None:
        # pauc's np.dot is a BLAS ddot, which OpenBLAS splits over its threads for long vectors;
        # waking a second thread on a contended core can cost a scheduler tick per call.
        before = get_threads()
        set_threads(1)
        try:
            per_method_1, edc_1, pauc_1, _ = per_method_times()
        finally:
            set_threads(before)
        print(
            f"same with OpenBLAS at 1 thread (was {before}): {statistics.median(per_method_1) * 1e3:.2f} ms "
            f"(max {max(per_method_1) * 1e3:.2f} ms; edc {statistics.median(edc_1) * 1e3:.2f} ms, "
            f"2 x pauc {statistics.median(pauc_1) * 1e3:.2f} ms)"
        )
    print("normalised pAUC@0.2 / @0.3 by method (quality signal share 0 -> 2):")
    print("  " + "  ".join(f"{p2:.3f}/{p3:.3f}" for p2, p3 in paucs))

    # --- legacy ERC ---------------------------------------------------------------------
    if not args.skip_erc:
        from fiqabench.metrics.erc import erc_auc, erc_recomputed

        q = data["qualities"][-1]
        nma, nmb = a[~mated], b[~mated]
        nm_quality = pair_quality(q[nma], q[nmb])
        del nma, nmb
        m_quality = pair_quality(q[ma], q[mb])
        start = time.perf_counter()
        curve = erc_recomputed(
            mated_scores=mated_scores,
            mated_pair_quality=m_quality,
            non_mated_scores=non_mated_scores,
            non_mated_pair_quality=nm_quality,
        )
        t_erc = time.perf_counter() - start
        print(
            f"\nlegacy ERC (recomputed threshold, 20-point grid), one method: {t_erc:.2f} s; "
            f"AUC@0.2 {erc_auc(curve, 0.2):.3f}, @0.3 {erc_auc(curve, 0.3):.3f}"
        )
    if args.pooling:
        del data, features, a, b, mated, mated_scores, non_mated_scores
        time_pooling(args.repeats, args.seed)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}; benchmark wall time {time.perf_counter() - overall:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
