"""Multi-node ONNX patterns that are one convscope layer.

Exporters spell some layers as several nodes; :func:`match` recognises them, starting at the
pattern's first node in file order, so the importer makes one layer instead of refusing the
constant arithmetic in between:

=====================================================  ============================
x·sigmoid(x)                                           silu
x·HardSigmoid(x) (alpha 1/6, beta 0.5)                 hardswish
0.5·x·(1 + erf(x/√2)) (Div or Mul, either order)        gelu
(x − mean)/sqrt(var + eps)·γ + β over the last axes    layer_norm (γ, β optional)
 (ReduceMean, Sub, Pow 2, ReduceMean, Add, Sqrt, Div)
=====================================================  ============================

Every intermediate value must be used only inside the pattern.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import functools

import numpy as np

from .. import layers as L


def _scalar(reader, name: str) -> Optional[float]:
    value = reader.consts.get(name)
    if value is None or np.size(value) != 1:
        return None
    return float(np.asarray(value).reshape(-1)[0])


class _View:
    """Consumers of each value over the node list (built once per reader)."""

    def __init__(self, reader, nodes):
        self.reader, self.nodes = reader, nodes
        self.users: Dict[str, List[int]] = {}
        for i, node in enumerate(nodes):
            for name in dict.fromkeys(node.input):
                self.users.setdefault(name, []).append(i)

    def only(self, value: str, op: str) -> Optional[int]:
        """The one node reading ``value``, if it is an ``op`` and the value is not the output."""
        users = self.users.get(value, [])
        if len(users) != 1 or value == self.reader.output or self.nodes[users[0]].op_type != op:
            return None
        return users[0]

    def other(self, index: int, value: str) -> Optional[str]:
        inputs = list(self.nodes[index].input)
        if len(inputs) != 2 or value not in inputs:
            return None
        rest = [n for n in inputs if n != value]
        return rest[0] if rest else value


def _view(reader, nodes) -> _View:
    if getattr(reader, "_pattern_view", None) is None:
        reader._pattern_view = _View(reader, nodes)
    return reader._pattern_view


_UNARY = {
    "Erf": lambda v, k: _erf(v[0]),
    "Tanh": lambda v, k: np.tanh(v[0]),
    "Sigmoid": lambda v, k: 1 / (1 + np.exp(-v[0])),
    "Sqrt": lambda v, k: np.sqrt(np.abs(v[0])),
    "Neg": lambda v, k: -v[0],
    "Relu": lambda v, k: np.maximum(v[0], 0),
    "HardSigmoid": lambda v, k: np.clip(k.get("alpha", 0.2) * v[0] + k.get("beta", 0.5), 0, 1),
    "Mul": lambda v, k: v[0] * v[1],
    "Add": lambda v, k: v[0] + v[1],
    "Sub": lambda v, k: v[0] - v[1],
    "Div": lambda v, k: v[0] / v[1],
    "Pow": lambda v, k: np.power(v[0], v[1]),
}

_PROBE = np.linspace(-7.0, 7.0, 281)


def _erf(v):
    import math
    return np.array([math.erf(float(t)) for t in np.ravel(v)]).reshape(np.shape(v))


@functools.lru_cache(maxsize=1)
def _candidates():
    x = _PROBE
    gelu = 0.5 * x * (1 + _erf(x / np.sqrt(2)))
    gelu_tanh = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    return [(gelu, lambda: L.GELU()), (gelu_tanh, lambda: L.GELU(approximate="tanh")),
            (x / (1 + np.exp(-x)), lambda: L.SiLU()), (x * np.clip(x / 6 + 0.5, 0, 1), lambda: L.Hardswish())]


def _elementwise(view, index: int, x: str):
    """The largest run of scalar element-wise nodes from ``nodes[index]`` on ``x`` with one
    output value that computes one of the gate functions (checked on a probe grid)."""
    reader, nodes = view.reader, view.nodes
    values = {x: _PROBE}
    region: List[int] = []
    best = None
    for j in range(index, min(len(nodes), index + 24)):
        node = nodes[j]
        names = [n for n in node.input if n]
        if node.op_type not in _UNARY or len(node.output) != 1 or not names \
                or not any(n in values for n in names) \
                or not all(n in values or _scalar(reader, n) is not None for n in names):
            if j == index:
                return None
            continue
        args = [values[n] if n in values else _scalar(reader, n) for n in names]
        with np.errstate(all="ignore"):
            values[node.output[0]] = np.asarray(_UNARY[node.op_type](args, reader.attrs(node)), dtype=np.float64)
        region.append(j)
        inside = set(region)
        escaping = [nodes[i].output[0] for i in region
                    if nodes[i].output[0] == reader.output
                    or any(u not in inside for u in view.users.get(nodes[i].output[0], []))]
        if len(region) < 2 or len(escaping) != 1 or escaping[0] != node.output[0]:
            continue
        for expected, make in _candidates():
            if np.allclose(values[node.output[0]], expected, rtol=1e-5, atol=1e-6):
                best = (list(region), make(), x, node.output[0])
    return best


def _layer_norm(view, index, x, shape):
    reader, nodes = view.reader, view.nodes
    first = nodes[index]
    axes = _axes(reader, first)
    if axes is None or list(first.input)[0] != x:
        return None
    rank = len(shape) + 1
    axes = sorted(a % rank for a in axes)
    if axes != list(range(rank - len(axes), rank)) or 0 in axes:
        return None
    sub = view.only(first.output[0], "Sub")
    if sub is None or list(nodes[sub].input) != [x, first.output[0]]:
        return None
    d = nodes[sub].output[0]
    users = view.users.get(d, [])
    if len(users) != 2:
        return None
    pow_, div = sorted(users, key=lambda i: nodes[i].op_type != "Pow")
    if nodes[pow_].op_type != "Pow" or nodes[div].op_type != "Div" or _scalar(reader, nodes[pow_].input[1]) != 2:
        return None
    mean2 = view.only(nodes[pow_].output[0], "ReduceMean")
    if mean2 is None or sorted(a % rank for a in (_axes(reader, nodes[mean2]) or [])) != axes:
        return None
    add = view.only(nodes[mean2].output[0], "Add")
    eps = None if add is None else _scalar(reader, view.other(add, nodes[mean2].output[0]))
    sqrt = None if add is None else view.only(nodes[add].output[0], "Sqrt")
    if eps is None or sqrt is None or list(nodes[div].input) != [d, nodes[sqrt].output[0]]:
        return None
    used, out = [index, sub, pow_, mean2, add, sqrt, div], nodes[div].output[0]
    normalized = list(shape[axes[0] - 1:])
    weights = {}
    for op, key in (("Mul", "weight"), ("Add", "bias")):
        step = view.only(out, op)
        const = None if step is None else reader.consts.get(view.other(step, out))
        if const is None or np.size(const) not in (1, int(np.prod(normalized))):
            break
        weights[key] = np.broadcast_to(np.asarray(const, np.float32), normalized).copy()
        used.append(step)
        out = nodes[step].output[0]
    layer = L.LayerNorm(normalized, eps=float(str(np.float32(eps))), elementwise_affine="weight" in weights,
                        bias="bias" in weights)
    return used, layer, x, out, weights


def _axes(reader, node):
    attrs = reader.attrs(node)
    if "axes" in attrs:
        return list(attrs["axes"])
    if len(node.input) > 1 and node.input[1] in reader.consts:
        return [int(a) for a in np.asarray(reader.consts[node.input[1]]).reshape(-1)]
    return None


def match(reader, nodes, index: int):
    """(node indices used, layer, input value, output value[, weights]) for a pattern starting
    at ``nodes[index]``, or None."""
    view = _view(reader, nodes)
    node = nodes[index]
    live = [n for n in node.input if n and n in reader.acts]
    if not live:
        return None
    x = live[0]
    op = node.op_type
    if op in _UNARY:
        found = _elementwise(view, index, x)
        if found is not None:
            return found
    if op == "ReduceMean":
        return _layer_norm(view, index, x, reader.acts[x][1])
    return None
