"""``insightface-bin``: the InsightFace validation files (lfw.bin, cfp_fp.bin, agedb_30.bin, ...).

Format (``research/ecosystem.md`` 4.2; insightface ``recognition/arcface_torch/eval/
verification.py::load_bin``): a pickle of ``(bins, issame_list)``, written by Python 2: ``bins``
holds ``2 N`` encoded images (JPEG; already aligned 112 x 112 crops), ``issame_list`` ``N``
booleans; pair ``i`` is ``(bins[2i], bins[2i+1])`` and the folds are 10 contiguous blocks.

Pickles can run any code while loading, so the file is read by :class:`RestrictedUnpickler`:
it builds only the containers the format uses (tuple, list, bytes, str, int, bool, None) and
refuses every global except those that build bytes (``_codecs.encode``, which Python 3 uses to
pickle bytes at protocol 2) and plain numpy arrays of ``uint8``/``bool`` (some conversions store
``bins`` or ``issame_list`` that way), each checked before anything is returned. A file naming any
other global is refused before that global is even looked up.

The ``.bin`` files carry no identities: each mated pair's two images share a pseudo-subject
``pair<i>``, a non-mated pair's get ``pair<i>a`` and ``pair<i>b`` (one person may appear in
several pairs; uncertainty estimates that resample subjects treat those pairs as independent).
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fiqabench.errors import ConfigError, InputFormatError, MissingArtifactError

from .base import Alignment, ImageDataset, ImageProtocol, open_rgb_bytes
from .protocol import ProtocolFile, check_file

__all__ = ["RestrictedUnpickler", "build_insightface_bin", "load_bin", "KNOWN_NAMES"]

VERSION = "1"
N_FOLDS = 10
#: Standard file names and their pair counts (``research/ecosystem.md`` 4.2).
KNOWN_NAMES = {"lfw": 6000, "cfp_fp": 7000, "cfp_ff": 7000, "agedb_30": 6000, "calfw": 6000, "cplfw": 6000,
               "vgg2_fp": 5000}
LAYOUT = "a .bin file (lfw.bin, cfp_fp.bin, ...) or a folder of them plus --dataset-option insightface-bin:name=NAME"


def _codecs_encode(text: Any, encoding: str = "utf-8") -> bytes:
    # Python 3 pickles bytes at protocol 2 as _codecs.encode(str, 'latin1'); only that is allowed.
    if not isinstance(text, str) or encoding not in {"latin1", "latin-1"}:
        raise pickle.UnpicklingError("_codecs.encode is allowed only as (str, 'latin1')")
    return text.encode("latin1")


def _reconstruct(cls: Any, shape: Any, dtype: Any) -> np.ndarray:
    if cls is not np.ndarray:
        raise pickle.UnpicklingError("numpy _reconstruct is allowed only for numpy.ndarray")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _dtype(name: Any, align: Any = False, copy: Any = False) -> np.dtype:
    if name not in {"u1", "b1", "?", "uint8", "bool"}:
        raise pickle.UnpicklingError(f"numpy dtype {name!r} is not allowed (only uint8 and bool)")
    return np.dtype(name)


def _scalar(dtype: Any, data: Any) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.kind not in "bu" or not isinstance(data, bytes):
        raise pickle.UnpicklingError("numpy scalars are allowed only for uint8 and bool")
    return np.frombuffer(data, dtype=dtype)[0].item()


_ALLOWED = {
    ("_codecs", "encode"): _codecs_encode,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "scalar"): _scalar,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals of :data:`_ALLOWED` (see the module docstring)."""

    def find_class(self, module: str, name: str) -> Any:
        target = _ALLOWED.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a .bin file")
        return target

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed in a .bin file")


def _as_bytes_list(bins: Any, where: Path) -> list[bytes]:
    if not isinstance(bins, (list, tuple)):
        raise InputFormatError(where, None, "bins", f"expected a list of encoded images, found {type(bins).__name__}")
    out = []
    for i, item in enumerate(bins):
        if isinstance(item, (bytes, bytearray)):
            out.append(bytes(item))
        elif isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.ndim == 1:
            out.append(item.tobytes())
        else:
            raise InputFormatError(where, None, f"bins[{i}]", f"expected encoded image bytes, found {type(item).__name__}")
    return out


def _as_bool_array(issame: Any, where: Path) -> np.ndarray:
    if isinstance(issame, np.ndarray):
        if issame.dtype.kind not in "bu" or issame.ndim != 1:
            raise InputFormatError(where, None, "issame_list", f"expected booleans, found an array of {issame.dtype}")
        values = issame.tolist()
    elif isinstance(issame, (list, tuple)):
        values = list(issame)
    else:
        raise InputFormatError(where, None, "issame_list", f"expected a list of booleans, found {type(issame).__name__}")
    for i, v in enumerate(values):
        if not isinstance(v, (bool, int)) or v not in (0, 1):
            raise InputFormatError(where, None, f"issame_list[{i}]", f"expected a boolean, found {v!r}")
    return np.asarray(values, dtype=bool)


def load_bin(path: Path) -> tuple[list[bytes], np.ndarray, ProtocolFile]:
    """``(encoded images, issame, the file)`` from a ``.bin`` file, safely; the returned
    :class:`ProtocolFile` keeps the digest, not the bytes (the images hold those)."""
    source = ProtocolFile(path, ".bin validation file")
    data, source.data = source.data, b""
    result: Any = None
    for encoding in ("ASCII", "bytes"):  # Python 2 str: text first, bytes on failure (as load_bin)
        try:
            result = RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()
            break
        except UnicodeDecodeError:
            continue
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
                OverflowError, MemoryError) as exc:
            raise InputFormatError(path, None, None, f"not a valid .bin validation file: {exc}") from None
    if not isinstance(result, tuple) or len(result) != 2:
        raise InputFormatError(path, None, None, "expected a pickled pair (bins, issame_list)")
    bins = _as_bytes_list(result[0], path)
    issame = _as_bool_array(result[1], path)
    if len(bins) != 2 * issame.size:
        raise InputFormatError(path, None, None, f"{len(bins)} images for {issame.size} pairs; expected {2 * issame.size}")
    if issame.size == 0:
        raise InputFormatError(path, None, None, "no pairs")
    return bins, issame, source


def _resolve(options: Mapping[str, Any]) -> tuple[Path, str]:
    root = options.get("root")
    if not root:
        raise MissingArtifactError(f"dataset 'insightface-bin' needs its file: pass --dataset-option "
                                   f"insightface-bin:root=PATH, where PATH is {LAYOUT}")
    path = Path(str(root)).expanduser()
    name = str(options.get("name") or "")
    if path.is_dir():
        if not name:
            found = ", ".join(sorted(p.stem for p in path.glob("*.bin"))) or "none"
            raise ConfigError(f"dataset 'insightface-bin': root {path} is a folder; choose a file with "
                              f"--dataset-option insightface-bin:name=NAME (found: {found})")
        path = path / (name if name.endswith(".bin") else f"{name}.bin")
    check_file(path, ".bin validation file")
    return path, name or path.stem


class BinDataset(ImageDataset):
    """The images live in memory, decoded from the ``.bin`` file on demand."""

    def __init__(self, *, path: Path, label: str, bins: Sequence[bytes], protocol: ImageProtocol, workers: int) -> None:
        self._bins = bins
        self._bin_path = path
        super().__init__(name="insightface-bin", version=VERSION, image_root=path.parent, protocol=protocol,
                         alignment=Alignment("none"), workers=workers, check_images=False)
        self.bin_name = label

    def open(self, index: int) -> Any:
        return open_rgb_bytes(self._bins[index], f"{self._bin_path}[image {index}]")


def build_insightface_bin(*, options: Mapping[str, Any], device: Any = None) -> BinDataset:
    """Factory of ``insightface-bin``."""
    path, label = _resolve(options)
    bins, issame, source = load_bin(path)
    n = issame.size
    a = np.arange(n, dtype=np.int64) * 2
    b = a + 1
    ids = [f"{label}/{i:05d}" for i in range(2 * n)]
    subjects = []
    for i, same in enumerate(issame.tolist()):
        subjects += [f"pair{i}", f"pair{i}"] if same else [f"pair{i}a", f"pair{i}b"]
    folds = np.arange(n, dtype=np.int64) * N_FOLDS // n
    protocol = ImageProtocol(rel_paths=ids, subjects=subjects, a=a, b=b, mated=issame, where=[], files=[source],
                             folds=folds, extra={"name": label})
    return BinDataset(path=path, label=label, bins=bins, protocol=protocol, workers=int(options.get("workers") or 1))
