"""Fit the ArcFace-112 -> dlib-150-chip similarity and measure what the mapping costs.

    python benchmarks/dlib_photos.py            # once: the photographs (face_recognition sdist)
    OMP_NUM_THREADS=1 python benchmarks/dlib_chip_mapping.py [PHOTOS]

For every photograph: dlib HOG detection + 68 landmarks; (a) dlib's own chip,
``get_face_chip(img, shape, 150, 0.25)``, embedded by the torch port with ``crop=dlib-chip``
(what dlib itself computes, to 1e-6); (b) the ArcFace 112 crop (``warp_to_arcface`` on the five
ArcFace points) embedded with ``crop=arcface``, i.e. mapped onto the chip by
``ARCFACE112_TO_CHIP150``. Prints the fitted constant (least squares over all faces: ArcFace
template -> where dlib's chip puts each face's five ArcFace points), then per route the
same-person and different-person Euclidean distances (dlib's threshold is 0.6) and the
separation margin (smallest different-person minus largest same-person distance), and the drift
|a - b| per image.
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


def load_photos(root: Path) -> list[tuple[str, str, np.ndarray]]:
    out = []
    for path in sorted(root.glob("*/*.jpg")):
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

    # The constant: template points -> each face's ArcFace points as placed on its dlib chip.
    src = np.concatenate([chip.ARCFACE_TEMPLATE_112] * len(faces))
    dst = np.concatenate([f["l5"] @ f["to_chip"][:, :2].T + f["to_chip"][:, 2] for f in faces])
    fitted = chip.fit_similarity(src, dst)
    resid = np.linalg.norm(src @ fitted[:, :2].T + fitted[:, 2] - dst, axis=1)
    print("ARCFACE112_TO_CHIP150 (fitted on", len(faces), "faces):")
    print(np.array2string(fitted, precision=6, separator=", "))
    print(f"point residual in chip pixels: mean {resid.mean():.2f}, max {resid.max():.2f}")
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

    # The same mapping with a zero border instead of the replicated one the model uses.
    crops01 = torch.from_numpy(np.stack([f["crop"] for f in faces])).permute(0, 3, 1, 2).float() / 255.0
    zero_chips = chip.warp_affine(crops01, chip.ARCFACE112_TO_CHIP150, (150, 150), padding_mode="zeros")
    with torch.inference_mode():
        emb_zero = chips_model.forward(chips_model.to_input_space(zero_chips)).numpy()
    routes = (("dlib chip (dlib's own route)", emb_chip), ("ArcFace 112 crop mapped to chip", emb_arc),
              ("same mapping, zero border", emb_zero))
    for label, emb in routes:
        same, diff = [], []
        for i, j in itertools.combinations(range(len(faces)), 2):
            d = float(np.linalg.norm(emb[i] - emb[j]))
            (same if faces[i]["ident"] == faces[j]["ident"] else diff).append(d)
        print(f"{label}: same-person {np.round(sorted(same), 3).tolist()}, different {np.round(sorted(diff), 3).tolist()}, "
              f"margin {min(diff) - max(same):.3f}")
    drift = np.linalg.norm(emb_chip - emb_arc, axis=1)
    for f, d in zip(faces, drift):
        print(f"  drift {f['ident']}/{f['name']}: {d:.3f}")
    print(f"drift |chip - mapped crop| per image: mean {drift.mean():.3f}, max {drift.max():.3f} (dlib threshold 0.6)")
    zdrift = np.linalg.norm(emb_chip - emb_zero, axis=1)
    print(f"drift with a zero border: mean {zdrift.mean():.3f}, max {zdrift.max():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
