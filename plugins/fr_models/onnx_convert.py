"""A small ONNX -> torch converter for face-recognition networks, so gradients flow through them.

:func:`convert` reads an ONNX file with the ``onnx`` package and returns an :class:`OnnxModule`: an
``nn.Module`` that keeps the graph's initializers as buffers and runs the nodes, in the file's
(topological) order, as torch functions. Every operator follows its definition in the ONNX
operator reference (onnx.ai, default domain); the supported set is what iResNet / MobileFaceNet
style FR networks exported by torch, MXNet or insightface contain:

Conv, BatchNormalization (inference form), PRelu, Relu, LeakyRelu, Sigmoid, Tanh, Clip, Add, Sub,
Mul, Div, Gemm, MatMul, Flatten, Reshape, Squeeze, Unsqueeze, Transpose, Concat, Shape, Gather,
Cast, MaxPool, AveragePool, GlobalAveragePool, Constant, Identity, Dropout (inference: identity);
and, for quality heads and L2-normalised embeddings (eDifFIQA(T): GELU exports as Erf-based ops
or, from opset 20, Gelu; ``torch.norm`` as ReduceL2; ``F.normalize`` adds Expand), Erf, Gelu,
Sqrt, Pow, Max, Min, Expand, ReduceL2, ReduceSum, ReduceMean (axes as an attribute or, from
opset 13/18, as an input).

Any other operator is refused when the file is converted, with one line naming the operator and
the node. No ONNX Runtime fallback is offered: a black box would not give the input gradients
that FaceQAN-style methods need.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fiqabench.errors import ConfigError, InputFormatError, MissingArtifactError

__all__ = ["SUPPORTED_OPS", "OnnxModule", "convert"]

Op = Callable[..., Any]


def _pads(pads: Sequence[int] | None, spatial: int) -> tuple[list[int], bool]:
    """ONNX pads ``[x1_begin, x2_begin, ..., x1_end, x2_end]`` -> (symmetric pads, is_symmetric)."""
    pads = list(pads or [0] * (2 * spatial))
    begin, end = pads[:spatial], pads[spatial:]
    return begin, begin == end


def _torch_pad(pads: Sequence[int], spatial: int) -> list[int]:
    """ONNX pads -> ``F.pad``'s order (last dimension first, begin/end pairs)."""
    out: list[int] = []
    for dim in reversed(range(spatial)):
        out += [pads[dim], pads[dim + spatial]]
    return out


def _check_auto_pad(attrs: dict[str, Any], node: str) -> None:
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto not in ("NOTSET", "VALID"):
        raise ConfigError(
            f"ONNX node {node!r}: auto_pad={auto} is not supported; re-export with explicit pads"
        )


def _conv(attrs: dict[str, Any], node: str) -> Op:
    _check_auto_pad(attrs, node)
    strides, dilations, group = attrs.get("strides"), attrs.get("dilations"), int(attrs.get("group", 1))

    def run(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        spatial = x.ndim - 2
        begin, symmetric = _pads(attrs.get("pads"), spatial)
        if not symmetric:
            x, begin = F.pad(x, _torch_pad(attrs["pads"], spatial)), [0] * spatial
        conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[spatial]
        return conv(x, w, b, strides or 1, begin, dilations or 1, group)

    return run


def _pool(kind: str, attrs: dict[str, Any], node: str) -> Op:
    _check_auto_pad(attrs, node)
    kernel = list(attrs["kernel_shape"])
    strides = list(attrs.get("strides") or [1] * len(kernel))
    ceil = bool(attrs.get("ceil_mode", 0))
    if attrs.get("dilations") and any(d != 1 for d in attrs["dilations"]):
        raise ConfigError(f"ONNX node {node!r}: {kind} with dilations is not supported")
    count_pad = bool(attrs.get("count_include_pad", 0))

    def run(x: torch.Tensor) -> torch.Tensor:
        spatial = x.ndim - 2
        begin, symmetric = _pads(attrs.get("pads"), spatial)
        if not symmetric:
            raise ConfigError(f"ONNX node {node!r}: {kind} with asymmetric pads is not supported")
        if kind == "MaxPool":
            pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[spatial]
            return pool(x, kernel, strides, begin, 1, ceil)
        pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[spatial]
        return pool(x, kernel, strides, begin, ceil, count_pad)

    return run


def _batch_norm(attrs: dict[str, Any], node: str) -> Op:
    eps = float(attrs.get("epsilon", 1e-5))

    def run(x, scale, bias, mean, var):  # type: ignore[no-untyped-def]
        # Inference form: y = scale * (x - mean) / sqrt(var + eps) + bias, over axis 1.
        return F.batch_norm(x, mean, var, scale, bias, training=False, eps=eps)

    return run


def _prelu(attrs: dict[str, Any], node: str) -> Op:
    def run(x: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
        # ONNX broadcasts slope numpy-style; MXNet exports a 1-D per-channel slope, which only
        # means "per channel" (axis 1) for 4-D inputs.
        if slope.ndim == 1 and x.ndim > 2 and slope.numel() == x.shape[1] and slope.numel() != x.shape[-1]:
            slope = slope.reshape(-1, *([1] * (x.ndim - 2)))
        return torch.where(x >= 0, x, x * slope)

    return run


def _gemm(attrs: dict[str, Any], node: str) -> Op:
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    trans_a, trans_b = bool(attrs.get("transA", 0)), bool(attrs.get("transB", 0))

    def run(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        y = (a.t() if trans_a else a) @ (b.t() if trans_b else b)
        if alpha != 1.0:
            y = alpha * y
        if c is not None:
            y = y + (beta * c if beta != 1.0 else c)
        return y

    return run


def _flatten(attrs: dict[str, Any], node: str) -> Op:
    axis = int(attrs.get("axis", 1))

    def run(x: torch.Tensor) -> torch.Tensor:
        a = axis if axis >= 0 else axis + x.ndim
        outer = int(np.prod(x.shape[:a])) if a else 1
        return x.reshape(outer, -1)

    return run


def _reshape(attrs: dict[str, Any], node: str) -> Op:
    allowzero = bool(attrs.get("allowzero", 0))

    def run(x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        dims = [int(v) for v in shape.tolist()]
        if not allowzero:  # 0 copies the input's dimension at that index
            dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
        return x.reshape(dims)

    return run


def _axes(attrs: dict[str, Any], given: torch.Tensor | None) -> list[int] | None:
    if given is not None:
        return [int(v) for v in given.tolist()]
    return list(attrs["axes"]) if "axes" in attrs else None


def _squeeze(attrs: dict[str, Any], node: str) -> Op:
    def run(x: torch.Tensor, axes: torch.Tensor | None = None) -> torch.Tensor:
        dims = _axes(attrs, axes)
        if dims is None:
            return x.squeeze()
        return x.squeeze(tuple(d % x.ndim for d in dims))

    return run


def _unsqueeze(attrs: dict[str, Any], node: str) -> Op:
    def run(x: torch.Tensor, axes: torch.Tensor | None = None) -> torch.Tensor:
        dims = _axes(attrs, axes) or []
        rank = x.ndim + len(dims)
        for d in sorted(d % rank for d in dims):
            x = x.unsqueeze(d)
        return x

    return run


def _gather(attrs: dict[str, Any], node: str) -> Op:
    axis = int(attrs.get("axis", 0))

    def run(x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        a = axis % x.ndim
        idx = indices.long()
        idx = torch.where(idx < 0, idx + x.shape[a], idx)
        out = x.index_select(a, idx.reshape(-1))
        return out.reshape(*x.shape[:a], *indices.shape, *x.shape[a + 1 :])

    return run


def _clip(attrs: dict[str, Any], node: str) -> Op:
    def run(x: torch.Tensor, lo: torch.Tensor | None = None, hi: torch.Tensor | None = None) -> torch.Tensor:
        lo_v = lo if lo is not None else attrs.get("min")
        hi_v = hi if hi is not None else attrs.get("max")
        return torch.clamp(x, lo_v, hi_v)

    return run


_ONNX_DTYPES = {
    1: torch.float32,
    6: torch.int32,
    7: torch.int64,
    9: torch.bool,
    10: torch.float16,
    11: torch.float64,
}


def _cast(attrs: dict[str, Any], node: str) -> Op:
    to = int(attrs["to"])
    if to not in _ONNX_DTYPES:
        raise ConfigError(f"ONNX node {node!r}: Cast to ONNX type {to} is not supported")

    def run(x: torch.Tensor) -> torch.Tensor:
        return x.to(_ONNX_DTYPES[to])

    return run


def _reduce(kind: str, attrs: dict[str, Any], node: str) -> Op:
    keepdims = bool(attrs.get("keepdims", 1))
    noop = bool(attrs.get("noop_with_empty_axes", 0))

    def run(x: torch.Tensor, axes: torch.Tensor | None = None) -> torch.Tensor:
        dims = _axes(attrs, axes)
        if not dims:  # no axes: every axis, unless noop_with_empty_axes makes it the identity
            if noop:
                return x
            dims = list(range(x.ndim))
        dims = [d % x.ndim for d in dims]
        if kind == "ReduceL2":
            return torch.linalg.vector_norm(x, 2, dim=dims, keepdim=keepdims)
        if kind == "ReduceSum":
            return torch.sum(x, dim=dims, keepdim=keepdims)
        return torch.mean(x, dim=dims, keepdim=keepdims)

    return run


def _gelu(attrs: dict[str, Any], node: str) -> Op:
    approximate = attrs.get("approximate", b"none")
    approximate = approximate.decode() if isinstance(approximate, bytes) else str(approximate)
    if approximate not in ("none", "tanh"):
        raise ConfigError(f"ONNX node {node!r}: Gelu approximate={approximate} is not supported")
    return lambda x: F.gelu(x, approximate=approximate)


def _expand(attrs: dict[str, Any], node: str) -> Op:
    def run(x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        # numpy-style broadcast of the input and the shape (either may have the larger rank)
        return x.expand(torch.broadcast_shapes(tuple(x.shape), tuple(int(v) for v in shape.tolist())))

    return run


def _variadic(fn: Op) -> Callable[[dict[str, Any], str], Op]:
    def run(*xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = fn(out, x)
        return out

    return lambda attrs, node: run


def _simple(fn: Op) -> Callable[[dict[str, Any], str], Op]:
    return lambda attrs, node: fn


#: ONNX operator -> builder ``(attributes, node name) -> function of the node's inputs``.
_BUILDERS: dict[str, Callable[[dict[str, Any], str], Op]] = {
    "Conv": _conv,
    "BatchNormalization": _batch_norm,
    "PRelu": _prelu,
    "Relu": _simple(torch.relu),
    "LeakyRelu": lambda attrs, node: lambda x: F.leaky_relu(x, float(attrs.get("alpha", 0.01))),
    "Sigmoid": _simple(torch.sigmoid),
    "Tanh": _simple(torch.tanh),
    "Clip": _clip,
    "Add": _simple(torch.add),
    "Sub": _simple(torch.sub),
    "Mul": _simple(torch.mul),
    "Div": _simple(torch.div),
    "Gemm": _gemm,
    "MatMul": _simple(torch.matmul),
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Transpose": lambda attrs, node: (
        lambda x: x.permute(*attrs["perm"]) if "perm" in attrs else x.permute(*reversed(range(x.ndim)))
    ),
    "Concat": lambda attrs, node: lambda *xs: torch.cat(xs, int(attrs["axis"])),
    "Shape": lambda attrs, node: lambda x: torch.tensor(x.shape, dtype=torch.int64, device=x.device),
    "Gather": _gather,
    "Cast": _cast,
    "MaxPool": lambda attrs, node: _pool("MaxPool", attrs, node),
    "AveragePool": lambda attrs, node: _pool("AveragePool", attrs, node),
    "GlobalAveragePool": _simple(lambda x: x.mean(dim=tuple(range(2, x.ndim)), keepdim=True)),
    "Identity": _simple(lambda x: x),
    "Dropout": _simple(lambda x, *rest: x),
    "Erf": _simple(torch.erf),
    "Gelu": _gelu,
    "Sqrt": _simple(torch.sqrt),
    "Pow": _simple(lambda x, y: torch.pow(x, y).to(x.dtype)),  # the output has the base's type
    "Max": _variadic(torch.maximum),
    "Min": _variadic(torch.minimum),
    "Expand": _expand,
    "ReduceL2": lambda attrs, node: _reduce("ReduceL2", attrs, node),
    "ReduceSum": lambda attrs, node: _reduce("ReduceSum", attrs, node),
    "ReduceMean": lambda attrs, node: _reduce("ReduceMean", attrs, node),
}

SUPPORTED_OPS: tuple[str, ...] = tuple(sorted([*_BUILDERS, "Constant"]))


class OnnxModule(nn.Module):
    """An ONNX graph as a torch module (initializers are buffers: ``.to(device)`` moves them)."""

    def __init__(
        self,
        *,
        input_name: str,
        output_name: str,
        tensors: dict[str, torch.Tensor],
        nodes: list[tuple[str, Op, list[str], list[str]]],
    ) -> None:
        super().__init__()
        self.input_name = input_name
        self.output_name = output_name
        # Buffer names cannot hold the '.' or ':' of ONNX names; map each to a plain one.
        self._slots: dict[str, str] = {}
        for index, (name, tensor) in enumerate(tensors.items()):
            slot = f"c{index}"
            self.register_buffer(slot, tensor)
            self._slots[name] = slot
        self._nodes = nodes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, torch.Tensor | None] = {
            name: getattr(self, slot) for name, slot in self._slots.items()
        }
        values[self.input_name] = x
        values[""] = None  # an omitted optional input
        for _, fn, inputs, outputs in self._nodes:
            result = fn(*[values[name] for name in inputs])
            if len(outputs) == 1 or not isinstance(result, (tuple, list)):
                values[outputs[0]] = result
            else:
                values.update(zip(outputs, result))
        return values[self.output_name]  # type: ignore[return-value]  # produced: checked in convert()


def _attributes(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {attr.name: helper.get_attribute_value(attr) for attr in node.attribute}


def _array(tensor: Any) -> torch.Tensor:
    from onnx import numpy_helper

    return torch.from_numpy(np.array(numpy_helper.to_array(tensor), copy=True))


def convert(path: str | Path) -> OnnxModule:
    """Read ``path`` and return the equivalent torch module in eval mode.

    Raises a one-line :class:`~fiqabench.errors.ConfigError` naming the first unsupported operator
    and its node, and :class:`~fiqabench.errors.InputFormatError` for a file ``onnx`` cannot read.
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise MissingArtifactError(f"ONNX file {path} does not exist")
    try:
        model = onnx.load(str(path))  # external-data sidecars (model.onnx.data) load from its folder
    except Exception as exc:  # protobuf's DecodeError and friends
        raise InputFormatError(
            path, None, None, f"not a readable ONNX model ({type(exc).__name__}: {exc})"
        ) from exc
    graph = model.graph
    for node in graph.node:
        if node.domain not in ("", "ai.onnx"):
            raise ConfigError(
                f"{path}: ONNX operator {node.domain}.{node.op_type} (node {node.name!r}) is outside the "
                "default"
                " domain; the built-in converter cannot run it"
            )
        if node.op_type not in _BUILDERS and node.op_type != "Constant":
            raise ConfigError(
                f"{path}: ONNX operator {node.op_type} (node {node.name!r}) is not supported by the built-in"
                f" converter (supported: {', '.join(SUPPORTED_OPS)})"
            )

    tensors: dict[str, torch.Tensor] = {init.name: _array(init) for init in graph.initializer}
    inputs = [value.name for value in graph.input if value.name not in tensors]
    if len(inputs) != 1:
        raise ConfigError(
            f"{path}: expected an ONNX model with one image input, found {len(inputs)}: {inputs}"
        )
    if not graph.output:
        raise ConfigError(f"{path}: the ONNX graph has no output")

    nodes: list[tuple[str, Op, list[str], list[str]]] = []
    for index, node in enumerate(graph.node):
        name = node.name or f"#{index}"
        attrs = _attributes(node)
        if node.op_type == "Constant":
            if "value" not in attrs:
                raise ConfigError(
                    f"{path}: ONNX Constant node {name!r} without a 'value' tensor is not supported"
                )
            tensors[node.output[0]] = _array(attrs["value"])
            continue
        try:
            fn = _BUILDERS[node.op_type](attrs, name)
        except KeyError as exc:
            raise InputFormatError(
                path, None, f"node {name!r}", f"{node.op_type} lacks attribute {exc}"
            ) from exc
        nodes.append((name, fn, list(node.input), list(node.output)))

    produced = {inputs[0], *tensors, *(out for *_, outs in nodes for out in outs)}
    output = graph.output[0].name
    if output not in produced:
        raise ConfigError(f"{path}: the ONNX graph's output {output!r} is produced by no node")
    missing = sorted({name for *_, ins, _ in nodes for name in ins if name and name not in produced})
    if missing:
        raise ConfigError(f"{path}: ONNX node inputs {missing[:3]} are produced by no node or initializer")
    return OnnxModule(input_name=inputs[0], output_name=output, tensors=tensors, nodes=nodes).eval()
