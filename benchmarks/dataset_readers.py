"""Speed of the real-benchmark readers (issue 10): images/s against decoding alone, and the IJB-C
protocol at full size (parse time and memory).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/dataset_readers.py [--rounds 5] [--images 400]
        [--workers 1,4] [--skip-protocol] [--skip-readers] [--tmp /tmp/fiqabench-readers]

Part 1, readers: synthetic trees in the LFW layout (250 x 250 JPEGs, fixed crop), the XQLFW
layout (112 x 112 crops, nothing to align) and the IJB-C layout (loose crops of 150 x 180 with
five landmarks, similarity warp) are written under ``--tmp``. Each round times, interleaved,
(a) decoding alone: Pillow open + RGB + numpy of every image, with the same thread pool the
reader uses, (b) decoding plus the dataset's alignment called directly, and (c) the dataset's
``read_images`` in batches of 64 (the runner's default ``--batch-size``). Printed: medians over
rounds and the medians of the per-round ratios.

Part 2, protocol: IJB-C's three meta files at their real sizes (469,375 image lines, 15,658,489
pair lines of which 19,557 mated; template and media structure drawn at random) and 469,375
empty loose-crop files are written under ``--tmp``; then ``ijb.parse_ijb`` (all checks,
duplicates included) is timed, the image-existence scan separately, and the peak memory of the
parse (tracemalloc) and the size of what the dataset keeps are printed. Parse times are given as
wall time and as the process's CPU time: on a shared machine the CPU time is the better guide
to what an idle machine would take.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fiqabench_plugins.datasets import ijb, lfw  # noqa: E402
from fiqabench_plugins.datasets.align import ARCFACE_TEMPLATE_112  # noqa: E402
from fiqabench_plugins.datasets.base import decode_image, open_rgb  # noqa: E402
from fiqabench_plugins.datasets.protocol import find_missing  # noqa: E402

IJBC_IMAGES = 469_375
IJBC_PAIRS = 15_658_489
IJBC_MATED = 19_557
IJBC_TEMPLATES = 23_124
BATCH = 64


def _photo(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    f = rng.uniform(0.02, 0.2, size=3)
    img = 127 + 100 * np.sin(f[0] * xs + f[1] * ys)[..., None] * np.cos(f[2] * ys)[..., None]
    img = img + rng.normal(0, 12, size=(h, w, 3))  # texture, so JPEG sizes are realistic
    return np.clip(img, 0, 255).astype(np.uint8)


def write_lfw_tree(root: Path, n_images: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    people = n_images // 4
    lines = []
    for p in range(people):
        name = f"Person_{p:04d}"
        for k in range(1, 5):
            path = root / "lfw" / name / f"{name}_{k:04d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_photo(rng, 250, 250)).save(path, quality=90)
    per_fold = people // 10 or 1
    for fold in range(10):
        for j in range(per_fold):
            p = (fold * per_fold + j) % people
            lines.append(f"Person_{p:04d}\t1\t{2 + j % 3}")
        for j in range(per_fold):
            p = (fold * per_fold + j) % people
            q = (p + 1) % people  # p is distinct across folds, so no pair repeats
            lines.append(f"Person_{p:04d}\t{1 + fold % 4}\tPerson_{q:04d}\t{1 + j % 4}")
    (root / "pairs.txt").write_text(f"10\t{per_fold}\n" + "\n".join(lines) + "\n")


def write_ijb_tree(root: Path, n_images: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "loose_crop").mkdir(parents=True, exist_ok=True)
    tid, lmk = [], []
    for i in range(1, n_images + 1):
        Image.fromarray(_photo(rng, 180, 150)).save(root / "loose_crop" / f"{i}.jpg", quality=90)
        t = 1 + (i - 1) // 4
        tid.append(f"{i}.jpg {t} {t * 10}")
        pts = ARCFACE_TEMPLATE_112 * rng.uniform(1.0, 1.3) + rng.uniform(5, 20, size=2)
        lmk.append(f"{i}.jpg " + " ".join(f"{v:.3f}" for v in pts.reshape(-1)) + " 0.99")
    n_t = n_images // 4
    pairs = [f"{a} {b} {int((a + b) % 7 == 0)}" for a in range(1, n_t + 1) for b in range(a + 1, n_t + 1)]
    (root / "meta" / "ijbc_face_tid_mid.txt").write_text("\n".join(tid) + "\n")
    (root / "meta" / "ijbc_name_5pts_score.txt").write_text("\n".join(lmk) + "\n")
    (root / "meta" / "ijbc_template_pair_label.txt").write_text("\n".join(pairs) + "\n")


def _pool_map(fn, items: list, workers: int) -> None:
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            for start in range(0, len(items), BATCH):
                list(pool.map(fn, items[start : start + BATCH]))
    else:
        for item in items:
            fn(item)


def _read_all(ds, n: int) -> None:
    for start in range(0, n, BATCH):
        ds.read_images(range(start, min(n, start + BATCH)))


def write_xqlfw_tree(root: Path, n_images: int) -> None:
    """The LFW tree's protocol over 112 x 112 crops (XQLFW layout): nothing to align."""
    from PIL import Image

    write_lfw_tree(root / "src", n_images)
    (root / "src" / "pairs.txt").rename(root / "xqlfw_pairs.txt")
    for path in sorted((root / "src" / "lfw").rglob("*.jpg")):
        out = root / "xqlfw_aligned_112" / path.relative_to(root / "src" / "lfw")
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.open(path).resize((112, 112)).save(out, quality=90)
    shutil.rmtree(root / "src")


def bench_readers(tmp: Path, n_images: int, rounds: int, workers_list: list[int]) -> None:
    roots = {"lfw": tmp / "lfw", "xqlfw": tmp / "xqlfw", "ijbc": tmp / "ijbc-small"}
    if not (roots["lfw"] / "pairs.txt").exists():
        write_lfw_tree(roots["lfw"], n_images)
    if not (roots["xqlfw"] / "xqlfw_pairs.txt").exists():
        write_xqlfw_tree(roots["xqlfw"], n_images)
    if not (roots["ijbc"] / "meta" / "ijbc_template_pair_label.txt").exists():
        write_ijb_tree(roots["ijbc"], n_images)
    builders = {"lfw": lfw.build_lfw, "xqlfw": lfw.build_xqlfw, "ijbc": ijb.build_ijbc}
    print("readers: median over rounds of ms per image; ratios are medians of per-round ratios")
    print("  decode = Pillow open + RGB + numpy; +align = decode and the dataset's alignment called directly;")
    print("  reader = Dataset.read_images in batches of 64 (what the runner calls)")
    for workers in workers_list:
        datasets = {k: builders[k](options={"root": str(roots[k]), "workers": workers}) for k in builders}
        kinds = ("decode", "align", "reader")
        times: dict[tuple[str, str], list[float]] = {(k, m): [] for k in datasets for m in kinds}
        for _ in range(rounds):
            for name, ds in datasets.items():
                n = len(ds.samples())
                paths = ds._paths
                spec = ds.alignment_spec
                t0 = time.perf_counter()
                _pool_map(decode_image, paths, workers)
                t1 = time.perf_counter()
                _pool_map(lambda i: spec.apply(open_rgb(paths[i]), i), list(range(n)), workers)
                t2 = time.perf_counter()
                _read_all(ds, n)
                t3 = time.perf_counter()
                for kind, dt in zip(kinds, (t1 - t0, t2 - t1, t3 - t2)):
                    times[(name, kind)].append(dt / n)
        for name, ds in datasets.items():
            n = len(ds.samples())
            med = {k: statistics.median(times[(name, k)]) * 1e3 for k in kinds}
            r_dec = statistics.median(r / d for r, d in zip(times[(name, "reader")], times[(name, "decode")]))
            r_al = statistics.median(r / a for r, a in zip(times[(name, "reader")], times[(name, "align")]))
            print(f"  {name:5s} workers={workers} images={n} [{ds.alignment}]: decode {med['decode']:.2f} ms "
                  f"({1e3 / med['decode']:,.0f} img/s), +align {med['align']:.2f} ms, reader {med['reader']:.2f} ms "
                  f"({1e3 / med['reader']:,.0f} img/s); reader/decode {r_dec:.3f}, reader/(decode+align) {r_al:.3f}")


def write_full_ijbc(root: Path) -> None:
    import pandas as pd

    rng = np.random.default_rng(2)
    meta = root / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    # Templates of 1..40 images; each image in one template; medias group frames.
    template = np.sort(rng.integers(0, IJBC_TEMPLATES, size=IJBC_IMAGES))
    template[:IJBC_TEMPLATES] = np.arange(IJBC_TEMPLATES)  # every template has an image
    template = np.sort(template) + 1
    media = template * 10 + rng.integers(0, 3, size=IJBC_IMAGES)
    names = np.char.add(np.arange(1, IJBC_IMAGES + 1).astype(str), ".jpg")
    pd.DataFrame({"n": names, "t": template, "m": media}).to_csv(meta / "ijbc_face_tid_mid.txt", sep=" ", header=False, index=False)
    pts = ARCFACE_TEMPLATE_112.reshape(1, -1) + rng.uniform(0, 30, size=(IJBC_IMAGES, 1))
    frame = pd.DataFrame(np.round(pts, 3), columns=[f"c{k}" for k in range(10)])
    frame.insert(0, "n", names)
    frame["s"] = np.round(rng.uniform(0.1, 1.0, size=IJBC_IMAGES), 3)
    frame.to_csv(meta / "ijbc_name_5pts_score.txt", sep=" ", header=False, index=False)
    # Distinct template pairs (a < b): distinct indices into the upper triangle, mapped to rows.
    t = IJBC_TEMPLATES
    total = t * (t - 1) // 2
    idx = np.unique(rng.integers(0, total, size=int(IJBC_PAIRS * 1.1)))
    rng.shuffle(idx)
    idx = idx[:IJBC_PAIRS]

    def before(row: np.ndarray) -> np.ndarray:  # pairs in rows 0 .. row-1
        return row * t - row * (row + 1) // 2

    a = np.floor(((2 * t - 1) - np.sqrt((2.0 * t - 1) ** 2 - 8.0 * idx)) / 2).astype(np.int64)
    a -= before(a) > idx  # float rounding: at most one row off either way
    a += before(a + 1) <= idx
    b = idx - before(a) + a + 1
    assert (a < b).all() and (b < t).all() and idx.size == IJBC_PAIRS
    a, b = a + 1, b + 1
    label = np.zeros(a.size, dtype=np.int64)
    label[rng.choice(a.size, IJBC_MATED, replace=False)] = 1
    pd.DataFrame({"a": a, "b": b, "l": label}).to_csv(meta / "ijbc_template_pair_label.txt", sep=" ", header=False, index=False)
    crops = root / "loose_crop"
    crops.mkdir(exist_ok=True)
    for name in names.tolist():
        open(crops / name, "wb").close()


def bench_protocol(tmp: Path, rounds: int) -> None:
    root = tmp / "IJBC-full"
    if not (root / "meta" / "ijbc_template_pair_label.txt").exists():
        t0 = time.perf_counter()
        write_full_ijbc(root)
        print(f"protocol: wrote synthetic full-size IJB-C meta files in {time.perf_counter() - t0:.0f} s")
    sizes = {p.name: p.stat().st_size for p in (root / "meta").iterdir()}
    print("protocol: file sizes " + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sorted(sizes.items())))
    parse_times, cpu_times, scan_times = [], [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        c0 = time.process_time()
        protocol, landmarks, _ = ijb.parse_ijb(root, "ijbc")
        cpu_times.append(time.process_time() - c0)
        t1 = time.perf_counter()
        paths = [os.path.join(root, "loose_crop", p) for p in protocol.rel_paths]
        missing, dirs = find_missing(paths)
        t2 = time.perf_counter()
        assert not missing and not dirs
        parse_times.append(t1 - t0)
        scan_times.append(t2 - t1)
        del protocol, landmarks, paths
    print(f"protocol: parse_ijb median {statistics.median(parse_times):.2f} s wall, "
          f"{statistics.median(cpu_times):.2f} s CPU over {rounds} rounds "
          f"(wall: {', '.join(f'{t:.2f}' for t in parse_times)}); image-existence scan median "
          f"{statistics.median(scan_times):.2f} s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    tracemalloc.start()
    protocol, landmarks, _ = ijb.parse_ijb(root, "ijbc")
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(protocol.a) == IJBC_PAIRS and int(protocol.mated.sum()) == IJBC_MATED
    t = protocol.templates
    arrays = {
        "comparisons a, b (template indices), mated (bool)": protocol.a.nbytes + protocol.b.nbytes + protocol.mated.nbytes,
        "landmarks (float64)": landmarks.nbytes,
        "templates: sample_template, media_ids, detector_scores": t.sample_template.nbytes + t.media_ids.nbytes
        + t.detector_scores.nbytes,
    }
    strings = sum(sys.getsizeof(s) for s in protocol.rel_paths) + sys.getsizeof(protocol.rel_paths)
    subjects = sum(sys.getsizeof(s) for s in set(protocol.subjects)) + sys.getsizeof(protocol.subjects)
    protocol_bytes = sum(len(f.data) for f in protocol.files)
    print(f"protocol: {len(protocol.rel_paths):,} images, {len(t.ids):,} templates, {len(protocol.a):,} pairs, "
          f"{int(protocol.mated.sum()):,} mated")
    print(f"protocol: tracemalloc peak during parse {peak / 2**20:.0f} MiB, held after {current / 2**20:.0f} MiB "
          f"(of which raw file bytes kept for the digest/errors {protocol_bytes / 2**20:.0f} MiB)")
    for k, v in arrays.items():
        print(f"  {k}: {v / 2**20:.1f} MiB")
    print(f"  image names (str list): {strings / 2**20:.1f} MiB; subject list: {subjects / 2**20:.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--workers", default="1,4")
    parser.add_argument("--tmp", default="/tmp/fiqabench-readers")
    parser.add_argument("--skip-readers", action="store_true")
    parser.add_argument("--skip-protocol", action="store_true")
    parser.add_argument("--clean", action="store_true", help="delete --tmp afterwards")
    args = parser.parse_args()
    tmp = Path(args.tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    print(f"host cores: {os.cpu_count()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"load average {os.getloadavg()[0]:.1f} (the machine is shared)")
    if not args.skip_readers:
        bench_readers(tmp, args.images, args.rounds, [int(w) for w in args.workers.split(",")])
    if not args.skip_protocol:
        bench_protocol(tmp, max(1, min(args.rounds, 3)))
    if args.clean:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
