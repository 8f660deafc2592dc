"""A reader for dlib's DNN serialization (``dlib_face_recognition_resnet_model_v1.dat``).

dlib writes a network recursively (``dlib/dnn/core.h``): the loss layer first, then one version
number per nested ``add_layer``, then, innermost first, the input layer and each computational
layer's own record, so the records appear in forward order. Tag and skip layers carry no record.
Between two records sit per-layer training state (multipliers, empty gradient tensors, bools)
that inference does not need; the reader walks the file record by record, parses the fields it
needs exactly, and checks that the bytes it skips between records are short.

Primitive encodings (``dlib/serialize.h``, ``dlib/dnn/tensor.h``):

- integer: a header byte, low nibble = number of little-endian value bytes, bit 7 = negative;
- string: an integer length, then the bytes;
- float/double: mantissa (integer) and base-2 exponent (integer);
- tensor: version (2), n, k, nr, nc, then ``n*k*nr*nc`` little-endian float32 values;
- alias_tensor (a view into a params tensor): version (1), n, k, nr, nc.

Only numpy is imported here (no torch), so the parser can be tested and reused on its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fiqabench.errors import InputFormatError

__all__ = ["DatRecord", "KNOWN_LAYERS", "read_dat", "parse_dat"]

#: Layer record names this reader understands, with dlib's own spelling and version suffix.
KNOWN_LAYERS = (
    "loss_metric_2",
    "input_rgb_image_sized",
    "con_4",
    "affine_",
    "bn_con",
    "relu_",
    "max_pool_2",
    "avg_pool_2",
    "add_prev_",
    "fc_2",
)

#: What a layer record's name looks like: a one-byte length, then a lowercase identifier.
_NAME = re.compile(rb"\x01([\x04-\x1f])([a-z][a-z0-9_]{3,30})")

#: Most bytes of training state allowed between two records (measured: 50-100 in the real file).
_MAX_GAP = 4096


@dataclass
class DatRecord:
    """One layer record: its dlib name, parsed fields and float32 arrays."""

    kind: str
    offset: int
    fields: dict[str, Any] = field(default_factory=dict)


class _Reader:
    def __init__(self, data: bytes, path: str) -> None:
        self.data = data
        self.pos = 0
        self.path = path

    def fail(self, message: str) -> InputFormatError:
        return InputFormatError(self.path, None, f"byte {self.pos}", message)

    def integer(self) -> int:
        if self.pos >= len(self.data):
            raise self.fail("unexpected end of file")
        header = self.data[self.pos]
        size = header & 0x0F
        if size > 8 or header & 0x70:
            raise self.fail(f"not a dlib integer (header byte 0x{header:02x})")
        end = self.pos + 1 + size
        if end > len(self.data):
            raise self.fail("unexpected end of file in an integer")
        value = int.from_bytes(self.data[self.pos + 1 : end], "little")
        self.pos = end
        return -value if header & 0x80 else value

    def real(self) -> float:
        mantissa = self.integer()
        exponent = self.integer()
        return float(mantissa) * 2.0**exponent

    def string(self) -> str:
        length = self.integer()
        if length < 0 or self.pos + length > len(self.data):
            raise self.fail(f"bad string length {length}")
        text = self.data[self.pos : self.pos + length]
        self.pos += length
        try:
            return text.decode("ascii")
        except UnicodeDecodeError as exc:
            raise self.fail("a layer name is not ASCII") from exc

    def tensor(self) -> np.ndarray:
        version = self.integer()
        if version != 2:
            raise self.fail(f"unsupported tensor version {version} (expected 2)")
        shape = tuple(self.integer() for _ in range(4))
        if any(s < 0 for s in shape):
            raise self.fail(f"negative tensor shape {shape}")
        count = int(np.prod(shape))
        end = self.pos + 4 * count
        if end > len(self.data):
            raise self.fail(f"tensor of shape {shape} runs past the end of the file")
        values = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.pos).reshape(shape)
        self.pos = end
        return values.astype(np.float32)

    def alias(self) -> tuple[int, int, int, int]:
        version = self.integer()
        if version != 1:
            raise self.fail(f"unsupported alias_tensor version {version} (expected 1)")
        return tuple(self.integer() for _ in range(4))  # type: ignore[return-value]

    def find_record(self, window: int) -> tuple[str, int] | None:
        """The next known layer record (a length-prefixed known name) within ``window`` bytes."""
        best: tuple[int, str] | None = None
        end = min(len(self.data), self.pos + window + 32)
        for name in KNOWN_LAYERS:
            needle = bytes([0x01, len(name)]) + name.encode()
            at = self.data.find(needle, self.pos, end)
            if at >= 0 and (best is None or at < best[0]):
                best = (at, name)
        stop = best[0] if best else end
        # A layer this reader does not know must not be skipped as if it were training state.
        for match in _NAME.finditer(self.data, self.pos, stop):
            if len(match.group(2)) == match.group(1)[0] and match.group(2).decode() not in KNOWN_LAYERS:
                self.pos = match.start()
                raise self.fail(f"unsupported layer record {match.group(2).decode()!r}")
        if best is None:
            return None
        at, name = best
        self.pos = at
        return name, at


def _parse_record(r: _Reader, kind: str) -> dict[str, Any]:
    f: dict[str, Any] = {}
    if kind == "loss_metric_2":
        f["margin"] = r.real()
        f["dist_thresh"] = r.real()
    elif kind == "input_rgb_image_sized":
        f["avg"] = (r.real(), r.real(), r.real())
        f["nr"], f["nc"] = r.integer(), r.integer()
    elif kind == "con_4":
        params = r.tensor()
        f["num_filters"], f["nr"], f["nc"] = r.integer(), r.integer(), r.integer()
        f["stride"] = (r.integer(), r.integer())
        f["padding"] = (r.integer(), r.integer())
        filters = r.alias()
        biases = r.alias()
        n, k, nr, nc = filters
        if (n, nr, nc) != (f["num_filters"], f["nr"], f["nc"]) or biases != (1, n, 1, 1):
            raise r.fail(f"con_4: filter shape {filters} / bias shape {biases} disagree with the header")
        if params.size != n * k * nr * nc + n:
            raise r.fail(f"con_4: {params.size} parameters, expected {n * k * nr * nc + n}")
        flat = params.reshape(-1)
        f["weight"] = flat[: n * k * nr * nc].reshape(n, k, nr, nc)
        f["bias"] = flat[n * k * nr * nc :]
    elif kind in {"affine_", "bn_con"}:
        if kind == "bn_con":
            raise r.fail("bn_con records (a network saved in training mode) are not supported")
        params = r.tensor()
        gamma = r.alias()
        beta = r.alias()
        f["mode"] = r.integer()
        channels = gamma[1] * gamma[2] * gamma[3]
        if gamma != beta or params.size != 2 * channels:
            raise r.fail(f"affine_: gamma {gamma} / beta {beta} disagree with {params.size} parameters")
        flat = params.reshape(-1)
        f["gamma"], f["beta"] = flat[:channels], flat[channels:]
    elif kind in {"max_pool_2", "avg_pool_2"}:
        f["nr"], f["nc"] = r.integer(), r.integer()
        f["stride"] = (r.integer(), r.integer())
        f["padding"] = (r.integer(), r.integer())
    elif kind == "fc_2":
        f["num_outputs"], f["num_inputs"] = r.integer(), r.integer()
        params = r.tensor()
        weights = r.alias()
        biases = r.alias()
        f["bias_mode"] = r.integer()  # dlib's FC_HAS_BIAS = 0, FC_NO_BIAS = 1
        n_in, n_out = f["num_inputs"], f["num_outputs"]
        has_bias = f["bias_mode"] == 0
        if weights != (n_in, n_out, 1, 1) or params.size != n_in * n_out + (n_out if has_bias else 0):
            raise r.fail(f"fc_2: weights {weights}, {params.size} parameters, expected {n_in}x{n_out}")
        # dlib stores fc weights as (inputs x outputs): the layer computes x @ W (+ b).
        flat = params.reshape(-1)
        f["weight"] = flat[: n_in * n_out].reshape(n_in, n_out)
        f["bias"] = flat[n_in * n_out :] if has_bias else None
    # relu_ and add_prev_ carry nothing inference needs (add_prev_'s tag is fixed by the block).
    return f


def parse_dat(data: bytes, path: str = "<bytes>") -> list[DatRecord]:
    """Parse a serialized dlib network into its layer records, in forward order."""
    r = _Reader(data, path)
    # The file opens with the loss layer's version number, then its name.
    try:
        version = r.integer()
        name = r.string()
    except InputFormatError:
        version, name = -1, ""
    if version != 1 or name != "loss_metric_2":
        raise InputFormatError(
            path, None, "byte 0", "not a dlib metric-learning network (expected a 'loss_metric_2' header)"
        )
    records = [DatRecord("loss_metric_2", 2, _parse_record(r, "loss_metric_2"))]
    while True:
        # The first gap holds one add_layer version per layer; later gaps hold training state.
        found = r.find_record(_MAX_GAP if len(records) > 1 else 64 * 1024)
        if found is None:
            break
        kind, at = found
        r.string()
        records.append(DatRecord(kind, at, _parse_record(r, kind)))
    if len(data) - r.pos > _MAX_GAP:
        raise InputFormatError(path, None, f"byte {r.pos}", f"{len(data) - r.pos} unparsed bytes at the end")
    return records


def read_dat(path: str | Path) -> list[DatRecord]:
    """Read and parse a ``.dat`` network file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputFormatError(path, None, None, f"cannot read the file ({exc.strerror})") from exc
    return parse_dat(data, str(path))
