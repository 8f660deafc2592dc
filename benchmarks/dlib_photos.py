"""Lay out the face photographs that the ``face_recognition`` 1.3.0 sdist ships, for the dlib tests.

Registry packages with real photographs of the same person taken more than once are rare:
``face_recognition`` 1.3.0 (MIT, A. Geitgey) ships ``tests/test_images`` in its source
distribution (not in its wheel): three different photographs of Barack Obama and one of Joe
Biden (plus a duplicate and two crops, which are left out). This script downloads that sdist
with pip (a developer step, like installing an extra; nothing in fiqabench downloads at run
time) and writes them in the ``folder`` dataset layout, one sub-folder per identity:

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
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
