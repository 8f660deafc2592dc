"""Small trees that imitate each real benchmark's layout, written at test time.

Images are tiny smooth JPEGs (so decoding is real but fast); each writer returns the numbers
a correct reader must find (samples, comparisons, mated).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

SIDE = 24


def image(seed: int, size: tuple[int, int] = (SIDE, SIDE)) -> np.ndarray:
    h, w = size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    rng = np.random.default_rng(seed)
    fx, fy, phase = rng.uniform(0.1, 0.5), rng.uniform(0.1, 0.5), rng.uniform(0, 6)
    base = 127.5 + 100 * np.sin(fx * xs + phase) * np.cos(fy * ys)
    return np.clip(np.stack([base, 255 - base, np.full_like(base, 40.0 + seed % 200)], -1), 0, 255).astype(np.uint8)


def write_image(path: Path, seed: int, size: tuple[int, int] = (SIDE, SIDE)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image(seed, size)).save(path, quality=95)


def jpeg_bytes(seed: int, size: tuple[int, int] = (SIDE, SIDE)) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(image(seed, size)).save(out, format="JPEG", quality=95)
    return out.getvalue()


# -- LFW / XQLFW -----------------------------------------------------------------------------------
PEOPLE = ["Ann_A", "Bob_B", "Cy_C", "Di_D", "Ed_E"]


def lfw_lines(folds: int = 2, per_fold: int = 2) -> list[str]:
    """A View-2-style pair list: each fold ``per_fold`` mated then ``per_fold`` non-mated lines."""
    lines = [f"{folds}\t{per_fold}"]
    k = 0
    for _ in range(folds):
        for _ in range(per_fold):
            name = PEOPLE[k % len(PEOPLE)]
            lines.append(f"{name}\t{1 + k % 2}\t{3 + k // len(PEOPLE)}")
            k += 1
        for j in range(per_fold):
            p, q = PEOPLE[(k + j) % len(PEOPLE)], PEOPLE[(k + j + 1) % len(PEOPLE)]
            lines.append(f"{p}\t{1 + j}\t{q}\t{2 + (k % 2)}")
        k += 1
    return lines


def lfw_images(lines: list[str]) -> set[str]:
    out = set()
    for text in lines[1:]:
        t = text.split()
        if len(t) == 3:
            out |= {f"{t[0]}/{t[0]}_{int(t[1]):04d}.jpg", f"{t[0]}/{t[0]}_{int(t[2]):04d}.jpg"}
        else:
            out |= {f"{t[0]}/{t[0]}_{int(t[1]):04d}.jpg", f"{t[2]}/{t[2]}_{int(t[3]):04d}.jpg"}
    return out


def make_lfw(root: Path, folder: str = "lfw", pairs_name: str = "pairs.txt", size: tuple[int, int] = (50, 50)) -> dict:
    lines = lfw_lines()
    root.mkdir(parents=True, exist_ok=True)
    (root / pairs_name).write_text("\n".join(lines) + "\n")
    images = sorted(lfw_images(lines))
    for i, rel in enumerate(images):
        write_image(root / folder / rel, i, size)
    return {"samples": len(images), "comparisons": len(lines) - 1, "mated": sum(len(t.split()) == 3 for t in lines[1:]),
            "pairs": root / pairs_name, "images": images}


def make_xqlfw(root: Path) -> dict:
    return make_lfw(root, folder="xqlfw_aligned_112", pairs_name="xqlfw_pairs.txt", size=(112, 112))


# -- CALFW / CPLFW -------------------------------------------------------------------------------
def make_calfw(root: Path, pair_name: str = "pairs_CALFW.txt", pad: bool = True) -> dict:
    fmt = (lambda n, i: f"{n}_{i:04d}.jpg") if pad else (lambda n, i: f"{n}_{i}.jpg")
    mated = [(fmt("Ann_A", 1), fmt("Ann_A", 2), 1), (fmt("Bob_B", 1), fmt("Bob_B", 2), 2), (fmt("Cy_C", 1), fmt("Cy_C", 3), 2)]
    non = [(fmt("Ann_A", 1), fmt("Bob_B", 2), 0), (fmt("Cy_C", 1), fmt("Di_D", 1), 0)]
    lines = []
    for a, b, t in mated + non:
        lines += [f"{a} {t}", f"{b} {t}"]
    root.mkdir(parents=True, exist_ok=True)
    (root / pair_name).write_text("\n".join(lines) + "\n")
    images = sorted({x for a, b, _ in mated + non for x in (a, b)})
    for i, rel in enumerate(images):
        write_image(root / "aligned images" / rel, i, (112, 112))
    return {"samples": len(images), "comparisons": 5, "mated": 3, "pairs": root / pair_name, "images": images}


# -- CFP -----------------------------------------------------------------------------------------
def make_cfp(root: Path) -> dict:
    """3 subjects x 2 frontal + 1 profile; FP: folds 01, 02; FF: folds 01, 02."""
    protocol = root / "Protocol"
    f_lines, p_lines = [], []
    for s in range(1, 4):
        for k in range(1, 3):
            f_lines.append(f"{len(f_lines) + 1} ../Data/Images/{s:03d}/frontal/{k:02d}.jpg")
        p_lines.append(f"{len(p_lines) + 1} ../Data/Images/{s:03d}/profile/01.jpg")
    protocol.mkdir(parents=True, exist_ok=True)
    (protocol / "Pair_list_F.txt").write_text("\n".join(f_lines) + "\n")
    (protocol / "Pair_list_P.txt").write_text("\n".join(p_lines) + "\n")
    # FP: frontal i (1..6, subject (i+1)//2) vs profile j (subject j)
    fp = {"01": (["1,1", "3,2"], ["1,2"]), "02": (["6,3"], ["4,1", "5,1"])}
    ff = {"01": (["1,2"], ["1,3"]), "02": (["3,4", "5,6"], ["2,6"])}
    for split, table in (("FP", fp), ("FF", ff)):
        for fold, (same, diff) in table.items():
            d = protocol / "Split" / split / fold
            d.mkdir(parents=True, exist_ok=True)
            (d / "same.txt").write_text("\n".join(same) + "\n")
            (d / "diff.txt").write_text("\n".join(diff) + "\n")
    for i, text in enumerate(f_lines + p_lines):
        rel = text.split()[1].replace("../", "")
        write_image(root / rel, i, (60, 60))
    return {
        # FP uses frontal 1, 3, 4, 5, 6 and all 3 profiles; FF uses the 6 frontal images.
        "FP": {"samples": 8, "comparisons": 6, "mated": 3},
        "FF": {"samples": 6, "comparisons": 5, "mated": 3},
    }


# -- Adience -------------------------------------------------------------------------------------
ADIENCE_HEADER = "user_id\toriginal_image\tface_id\tage\tgender\tx\ty\tdx\tdy\ttilt_ang\tfiducial_yaw_angle\tfiducial_score"


def make_adience(root: Path) -> dict:
    """Users u1 (faces 1, 2) and u2 (face 1): identities u1/1 (3 images), u1/2 (2), u2/1 (2)."""
    rows = [("u1", "a.jpg", 1), ("u1", "b.jpg", 1), ("u1", "c.jpg", 1), ("u1", "a.jpg", 2), ("u1", "d.jpg", 2),
            ("u2", "e.jpg", 1), ("u2", "f.jpg", 1)]
    root.mkdir(parents=True, exist_ok=True)
    per_fold = [rows[0:2], rows[2:3], rows[3:5], rows[5:6], rows[6:7]]
    for k, chunk in enumerate(per_fold):
        body = [f"{u}\t{img}\t{f}\t(25, 32)\tf\t1\t2\t3\t4\t0\t0\t55" for u, img, f in chunk]
        (root / f"fold_{k}_data.txt").write_text("\n".join([ADIENCE_HEADER, *body]) + "\n")
    for i, (u, img, f) in enumerate(rows):
        write_image(root / "aligned" / u / f"landmark_aligned_face.{f}.{img}", i, (80, 80))
    n = len(rows)
    mated = 3 + 1 + 1
    return {"samples": n, "comparisons": n * (n - 1) // 2, "mated": mated}


# -- IJB-C / IJB-B -------------------------------------------------------------------------------
def make_ijb(root: Path, prefix: str = "ijbc", with_1n: bool = True) -> dict:
    """6 templates of 2 subjects; 12 loose crops with landmarks; 7 template pairs, 3 mated."""
    from fiqabench_plugins.datasets.align import ARCFACE_TEMPLATE_112

    meta = root / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    template_subject = {101: 1, 102: 1, 103: 1, 201: 2, 202: 2, 203: 2}
    tid_lines, lmk_lines = [], []
    rng = np.random.default_rng(0)
    n = 0
    for tid, subject in template_subject.items():
        for k in range(2):
            n += 1
            media = tid * 10 + (0 if k < 1 else 1)
            tid_lines.append(f"{n}.jpg {tid} {media}")
            scale = rng.uniform(0.9, 1.1)
            pts = ARCFACE_TEMPLATE_112 * scale + rng.uniform(-3, 3, size=2) + 10
            coords = " ".join(f"{v:.3f}" for v in pts.reshape(-1))
            lmk_lines.append(f"{n}.jpg {coords} {0.5 + 0.49 * (n % 2):.3f}")
            write_image(root / "loose_crop" / f"{n}.jpg", 1000 * subject + n, (140, 140))
    pairs = [(101, 102, 1), (101, 103, 1), (201, 202, 1), (101, 201, 0), (102, 202, 0), (103, 203, 0), (102, 203, 0)]
    (meta / f"{prefix}_face_tid_mid.txt").write_text("\n".join(tid_lines) + "\n")
    (meta / f"{prefix}_name_5pts_score.txt").write_text("\n".join(lmk_lines) + "\n")
    (meta / f"{prefix}_template_pair_label.txt").write_text("\n".join(f"{a} {b} {m}" for a, b, m in pairs) + "\n")
    if with_1n:
        gallery = ["TEMPLATE_ID,SUBJECT_ID,FILENAME"] + [f"{t},{s},img/{t}.jpg" for t, s in list(template_subject.items())[:3]]
        probe = ["TEMPLATE_ID,SUBJECT_ID,FILENAME"] + [f"{t},{s},img/{t}.jpg" for t, s in list(template_subject.items())[3:]]
        (meta / f"{prefix}_1N_gallery_G1.csv").write_text("\n".join(gallery) + "\n")
        (meta / f"{prefix}_1N_probe_mixed.csv").write_text("\n".join(probe) + "\n")
    return {"samples": n, "templates": 6, "comparisons": len(pairs), "mated": 3}


# -- insightface .bin ------------------------------------------------------------------------------
def make_bin(path: Path, pairs: int = 20, protocol: int = 2) -> dict:
    issame = [i % 2 == 0 for i in range(pairs)]
    bins = [jpeg_bytes(i, (112, 112)) for i in range(2 * pairs)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps((bins, issame), protocol=protocol))
    return {"samples": 2 * pairs, "comparisons": pairs, "mated": sum(issame)}


# -- folder ----------------------------------------------------------------------------------------
def make_folder(root: Path, identities: int = 3, per_identity: int = 3, size: tuple[int, int] = (112, 112)) -> dict:
    k = 0
    for i in range(identities):
        for j in range(per_identity):
            write_image(root / f"person{i}" / f"img{j}.jpg", k, size)
            k += 1
    (root / "README.txt").write_text("not an identity")
    n = identities * per_identity
    mated = identities * per_identity * (per_identity - 1) // 2
    return {"samples": n, "comparisons": n * (n - 1) // 2, "mated": mated}
