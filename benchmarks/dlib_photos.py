"""Lay out face photographs that registry packages ship, for the dlib tests and benchmarks.

Registry packages with real photographs of the same person taken more than once are rare:
``face_recognition`` 1.3.0 (MIT, A. Geitgey) ships ``tests/test_images`` in its source
distribution (not in its wheel): three different photographs of Barack Obama and one of Joe
Biden (plus a duplicate and two crops, which are left out). The ``insightface`` 2.1 wheel ships
``data/images/t1.jpg``, a group photograph of six other people; with dlib installed, each of
its faces is cut out (the detection box enlarged 2.5x) as an identity of its own. This script
downloads both with pip (a developer step, like installing an extra; nothing in fiqabench
downloads at run time) and writes them in the ``folder`` dataset layout, one sub-folder per
identity:

    python benchmarks/dlib_photos.py [DEST]      # DEST defaults to .scratch/face-photos

``tests/test_dlib.py`` and ``benchmarks/dlib_chip_mapping.py`` read DEST (or
``$FIQABENCH_FACE_PHOTOS``) and skip with this command when it is absent.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST = "face_recognition==1.3.0"
GROUP_WHEEL = "insightface==2.1"
GROUP_MEMBER = "insightface/data/images/t1.jpg"
#: The group photograph's detection boxes are enlarged this much around their centre.
GROUP_CONTEXT = 2.5
#: member name in the sdist -> identity/file in DEST
PHOTOS = {
    "obama.jpg": "obama/obama.jpg",
    "obama2.jpg": "obama/obama2.jpg",
    "obama3.jpg": "obama/obama3.jpg",
    "biden.jpg": "biden/biden.jpg",
}
DEFAULT_DEST = Path(__file__).resolve().parents[1] / ".scratch" / "face-photos"


def main(argv: list[str]) -> int:
    dest = Path(argv[0]) if argv else DEFAULT_DEST
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
             SDIST, "-d", tmp],
            check=True,
        )
        (archive,) = Path(tmp).glob("face_recognition-*.tar.gz")
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                name = Path(member.name).name
                if member.isfile() and Path(member.name).parent.name == "test_images" and name in PHOTOS:
                    out = dest / PHOTOS[name]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
    missing = [p for p in PHOTOS.values() if not (dest / p).is_file()]
    if missing:
        print(f"{archive.name}: missing {', '.join(missing)}", file=sys.stderr)
        return 1
    print(f"wrote {len(PHOTOS)} photographs under {dest}")
    return split_group(dest)


def split_group(dest: Path) -> int:
    """Cut the six faces of insightface's t1.jpg into t1-<k>/t1-<k>.jpg (needs the dlib extra)."""
    import io
    import zipfile

    try:
        import dlib
        import numpy as np
        from PIL import Image
    except ImportError:
        print("dlib is not installed (pip install 'fiqabench[dlib]'): the group photograph is left out")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
             GROUP_WHEEL, "-d", tmp],
            check=True,
        )
        (wheel,) = Path(tmp).glob("insightface-*.whl")
        with zipfile.ZipFile(wheel) as zf:
            image = Image.open(io.BytesIO(zf.read(GROUP_MEMBER))).convert("RGB")
    pixels = np.asarray(image)
    boxes = sorted(dlib.get_frontal_face_detector()(pixels, 1), key=lambda r: r.left())
    for k, box in enumerate(boxes, 1):
        cx, cy = (box.left() + box.right()) / 2, (box.top() + box.bottom()) / 2
        half = GROUP_CONTEXT * max(box.width(), box.height()) / 2
        crop = image.crop((round(cx - half), round(cy - half), round(cx + half), round(cy + half)))
        out = dest / f"t1-{k}" / f"t1-{k}.jpg"
        out.parent.mkdir(parents=True, exist_ok=True)
        crop.save(out, quality=95)
    print(f"wrote {len(boxes)} faces of the group photograph under {dest}")
    return 0 if len(boxes) == 6 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
