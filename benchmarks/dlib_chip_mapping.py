"""Fit the ArcFace-112 -> dlib-150-chip similarity and measure what the mapping costs.

    python benchmarks/dlib_photos.py            # once: the photographs (face_recognition sdist)
    OMP_NUM_THREADS=1 python benchmarks/dlib_chip_mapping.py [PHOTOS]

For every photograph: dlib HOG detection + 68 landmarks; (a) dlib's own chip,
``get_face_chip(img, shape, 150, 0.25)``, embedded by the torch port with ``crop=dlib-chip``
(what dlib itself computes, to 1e-6); (b) the ArcFace 112 crop (``warp_to_arcface`` on the five
ArcFace points) embedded with ``crop=arcface``, i.e. mapped onto the chip by
``ARCFACE112_TO_CHIP150``. Prints the fitted constant (the mean of the faces' exact crop -> chip
similarities), then per route the largest same-person and smallest different-person Euclidean
distances (dlib's threshold is 0.6), the separation margin (their difference), and the drift
|route - dlib's chip| of each image's descriptor.
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

#: The constant computed the same way from the 4 photographs of the face_recognition sdist alone
#: (this script on a folder holding only obama/ and biden/): how much it moves with the sample.
FOUR_FACES = [[1.534495, -0.007863, -11.838340], [0.007863, 1.534495, -35.188490]]


def load_photos(root: Path) -> list[tuple[str, str, np.ndarray]]:
    out = []
    for path in sorted(root.glob("*/*.jpg")):  # one face per photograph, one folder per person
        out.append((path.parent.name, path.name, np.asarray(Image.open(path).convert("RGB"))))
    return out


def main(argv: list[str]) -> int:
    torch.set_num_threads(1)
    import dlib

    from fiqabench_plugins.datasets.align import warp_to_arcface
    from fiqabench_plugins.dlib import chip
    from fiqabench_plugins.dlib._meta import default_weights
    from fiqabench_plugins.dlib.detect import detect_shape68, landmarks5_from_68
    from fiqabench_plugins.dlib.model import build

    root = Path(argv[0]) if argv else Path(os.environ.get("FIQABENCH_FACE_PHOTOS", ROOT / ".scratch" / "face-photos"))
    photos = load_photos(root)
    if not photos:
        print(f"no photographs under {root}: run python benchmarks/dlib_photos.py", file=sys.stderr)
        return 1
    faces = []
    for ident, name, img in photos:
        shape, count = detect_shape68(img)
        if shape is None:
            print(f"{ident}/{name}: {count} faces, skipped")
            continue
        pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], np.float64)
        l5 = landmarks5_from_68(pts)
        det = dlib.get_face_chip_details(shape, chip.CHIP_SIZE, chip.CHIP_PADDING)
        r = det.rect
        to_chip = chip.chip_details_to_affine((r.left(), r.top(), r.right(), r.bottom()), det.angle, det.rows, det.cols)
        dlib_chip = np.asarray(dlib.get_face_chip(img, shape, chip.CHIP_SIZE, chip.CHIP_PADDING))
        faces.append(dict(ident=ident, name=name, l5=l5, to_chip=to_chip, chip=dlib_chip, crop=warp_to_arcface(img, l5)))

    # Each face's exact crop -> chip similarity: its dlib chip transform after the inverse of its
    # ArcFace alignment. The constant is their mean, which is the least-squares fixed similarity
    # over any set of crop pixels (the normal equations give mean(M_f)).
    exact = np.stack([
        chip.compose_affine(f["to_chip"], chip.invert_affine(chip.fit_similarity(f["l5"], chip.ARCFACE_TEMPLATE_112)))
        for f in faces
    ])
    fitted = exact.mean(0)
    corners = np.array([[0.0, 0.0, 1.0], [111.0, 0.0, 1.0], [0.0, 111.0, 1.0], [111.0, 111.0, 1.0], [55.5, 55.5, 1.0]])
    spread = np.linalg.norm(np.einsum("fij,pj->fpi", exact, corners) - corners @ fitted.T, axis=2)
    print(f"ARCFACE112_TO_CHIP150 = mean of {len(faces)} faces' exact crop -> chip similarities:")
    print(np.array2string(fitted, precision=6, separator=", "))
    print(f"per-face departure from it at the crop's corners and centre, in chip pixels: "
          f"mean {spread.mean():.2f}, max {spread.max():.2f}")
    # The naive alternative, not used: template points -> the faces' five points on their chips.
    src = np.concatenate([chip.ARCFACE_TEMPLATE_112] * len(faces))
    dst = np.concatenate([f["l5"] @ f["to_chip"][:, :2].T + f["to_chip"][:, 2] for f in faces])
    five_point = chip.fit_similarity(src, dst)
    print("five-point fit (not used: the crop's landmarks are not on the template):")
    print(np.array2string(five_point, precision=6, separator=", "))
    print("in use:", np.array2string(chip.ARCFACE112_TO_CHIP150, precision=6, separator=", "))

    # Check chip_details_to_affine against dlib's own chip: warp with it, compare pixels.
    f0 = faces[0]
    img0 = next(p[2] for p in photos if p[0] == f0["ident"] and p[1] == f0["name"])
    x = torch.from_numpy(img0.copy()).permute(2, 0, 1)[None].float()
    ours = chip.warp_affine(x, f0["to_chip"], (150, 150))[0].permute(1, 2, 0).numpy()
    print(f"chip_details_to_affine check: mean |ours - dlib chip| = {np.abs(ours - f0['chip']).mean():.2f} grey levels")

    chips_model = build(options={"crop": "dlib-chip"}, device="cpu")
    arc_model = build(options={"crop": "arcface"}, device="cpu")
    emb_chip = chips_model.embed(np.stack([f["chip"] for f in faces]))
    emb_arc = arc_model.embed(np.stack([f["crop"] for f in faces]))
    rec = dlib.face_recognition_model_v1(default_weights())
    emb_dlib = np.array([np.array(rec.compute_face_descriptor(f["chip"])) for f in faces])
    print(f"torch port vs dlib on the chips: max |diff| = {np.abs(emb_chip - emb_dlib).max():.2e}")

    crops01 = torch.from_numpy(np.stack([f["crop"] for f in faces])).permute(0, 3, 1, 2).float() / 255.0

    def mapped(forward: np.ndarray, padding: str) -> np.ndarray:
        with torch.inference_mode():
            chips = chip.warp_affine(crops01, forward, (150, 150), padding_mode=padding)
            return chips_model.forward(chips_model.to_input_space(chips)).numpy()

    routes = (
        ("dlib's own chip (= dlib)", emb_chip),
        ("ArcFace crop, the model's mapping (crop=arcface)", emb_arc),
        ("  same, border replicated instead of zero", mapped(chip.ARCFACE112_TO_CHIP150, "border")),
        ("  same, with the constant of 4 faces (Obama, Biden) only", mapped(np.array(FOUR_FACES), "zeros")),
        ("  five-point fit instead", mapped(five_point, "zeros")),
        ("ArcFace crop, each face's exact mapping (lower bound)", mapped(exact, "zeros")),
    )
    print("| route | largest same-person | smallest 3 different-person | margin | drift from dlib's chip, mean / max |")
    print("|---|---|---|---|---|")
    for label, emb in routes:
        same, diff = [], []
        for i, j in itertools.combinations(range(len(faces)), 2):
            d = float(np.linalg.norm(emb[i] - emb[j]))
            (same if faces[i]["ident"] == faces[j]["ident"] else diff).append(d)
        drift = np.linalg.norm(emb - emb_chip, axis=1)
        print(f"| {label} | {max(same):.3f} | {', '.join(f'{d:.3f}' for d in sorted(diff)[:3])} | "
              f"{min(diff) - max(same):.3f} | {drift.mean():.3f} / {drift.max():.3f} |")
    print(f"({len(faces)} faces, {len(same)} same-person and {len(diff)} different-person pairs; "
          "Euclidean descriptor distances, dlib's same-person threshold 0.6)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
