"""One unit of one layer: its receptive field and the computation that produced it.

A *unit* is one number of a layer's output for the current input: ``(c, i, j)`` of a
(C, H, W) output, ``(c, i)`` of (C, L), ``(k,)`` of a flat vector.

Receptive field (from the analysis, :mod:`convscope.analysis.receptive`): the row's field
has size r, jump j and start a per axis, so unit position i sees input pixels
``[a + i·j, a + i·j + r − 1]`` (possibly partly in padding); a global field is the whole input.

Computation, term by term, with the trace modules (:mod:`convscope.trace`) and so with the
engine's own numbers:

* conv1d / conv2d: ``y[o,i,j] = Σ_c Σ_u,v x[c, i·s + u·d − p, j·s + v·d − p]·w[o,c,u,v] + b[o]``
  over the channels of o's group. Taps that fall in zero padding add nothing, so the trace
  is run on the in-image part of the window (the offsets are printed), with filter o's
  matching part of the kernel: a convolution with a 1×1 output whose value is the unit's;
* maxpool1d / maxpool2d: the window's in-image values and the winner;
* linear: ``y[o] = Σ_i x[i]·w[o,i] + b[o]``;
* any other layer: its input values at the unit and the forward's value.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConvscopeError, format_shape
from ..trace.values import number
from .walk import leaf_conv_weight

MAX_TERMS = 20_000   # a unit whose sum has more terms than this is summarised, not traced


def check_unit(shape: Sequence[int], unit: Sequence[int], layer: str) -> Tuple[int, ...]:
    """``unit`` as a tuple of ints inside ``shape`` (one sample's output shape)."""
    unit = tuple(int(u) for u in unit)
    if len(unit) != len(shape):
        raise ConvscopeError(f"layer {layer} outputs {format_shape(shape)}: a unit needs {len(shape)} "
                             f"indices, got {len(unit)}")
    for axis, (u, n) in enumerate(zip(unit, shape)):
        if not 0 <= u < n:
            raise ConvscopeError(f"layer {layer}: index {u} on axis {axis} is outside 0..{n - 1} "
                                 f"(output {format_shape(shape)})")
    return unit


def field_of(row, unit: Tuple[int, ...], input_shape: Sequence[int]) -> Dict:
    """The unit's receptive field on the input: ``{"start", "size", "global"}`` per spatial
    axis, in input pixels (start may be negative and start + size may pass the edge:
    that part is padding)."""
    spatial = [int(n) for n in input_shape[1:]]
    fld = row.field
    position = unit[1:] if len(row.output_shape) == len(input_shape) else None
    if fld is None or fld.is_global or position is None:
        return {"start": [0] * len(spatial), "size": spatial, "global": True}
    start = [a + p * j for a, p, j in zip(fld.start, position, fld.jump)]
    return {"start": start, "size": list(fld.size), "global": False}


def _taps(p: int, k: int, s: int, lo: int, d: int, n: int) -> Tuple[int, int, int]:
    """In-image kernel offsets of output position ``p`` along one axis: (first offset,
    count, first input index)."""
    inside = [a for a in range(k) if 0 <= p * s + a * d - lo < n]
    if not inside:
        return 0, 0, 0
    return inside[0], len(inside), p * s + inside[0] * d - lo


def _window(row, x: np.ndarray, position: Tuple[int, ...]):
    """Per-axis slices of the in-image window of ``position`` and the kernel offsets kept."""
    window = row.window
    slices, kernel, notes = [], [], []
    for axis, ((k, s, lo, d), p) in enumerate(zip(window, position)):
        first, count, start = _taps(p, k, s, lo, d, x.shape[1 + axis])
        if count == 0:
            return None, None, None
        slices.append(slice(start, start + d * (count - 1) + 1))
        kernel.append(slice(first, first + count))
        notes.append((start, first, count, k, d))
    return tuple(slices), tuple(kernel), notes


def _window_lines(notes, channels: str) -> List[str]:
    axes = "HW" if len(notes) == 2 else "L"
    parts, clipped = [], False
    for (start, first, count, k, d), name in zip(notes, axes):
        step = f" every {d}" if d > 1 else ""
        parts.append(f"{name} {start}..{start + d * (count - 1)}{step}")
        clipped = clipped or count < k
    lines = [f"the window reads input {channels}, {', '.join(parts)}; below, x[...] is indexed "
             "from the window's first pixel"]
    if clipped:
        lines.append("part of the window lies in padding, which reads 0 (max pooling: −∞) and "
                     "adds nothing: those taps are left out")
    return lines


def compute(row, x_in, y: np.ndarray, unit: Tuple[int, ...]) -> Dict:
    """``{"value", "sum", "lines", "terms", "kind"}`` for ``unit`` of the layer in ``row``
    whose input for this sample was ``x_in`` (no batch axis; a list for merge nodes) and
    output ``y``. ``value`` is the forward's number, ``sum`` the trace's (float64)."""
    from .. import trace

    value = float(y[unit])
    layer, kind = row.layer, row.type
    weight, bias = leaf_conv_weight(layer)
    out = {"value": value, "sum": None, "lines": [], "terms": 0, "kind": kind, "traced": False}
    if isinstance(x_in, (list, tuple)):
        return _merge(out, x_in, unit, kind, y)
    x = np.asarray(x_in, dtype=np.float64)

    if kind in ("conv1d", "conv2d") and weight is not None and isinstance(row.window, tuple):
        o, position = unit[0], unit[1:]
        groups = int(getattr(layer, "groups", 1))
        per_group_in = x.shape[0] // groups
        group = o // (weight.shape[0] // groups)
        c0 = group * per_group_in
        slices, kernel, notes = _window(row, x, position)
        b = None if bias is None else [float(bias[o])]
        if slices is None:
            out.update(sum=float(b[0]) if b else 0.0, lines=[
                "the whole window lies in padding (reads 0), so the unit is its bias alone"])
            return out
        x_win = x[(slice(c0, c0 + per_group_in),) + slices]
        w_win = np.asarray(weight, dtype=np.float64)[(slice(o, o + 1), slice(None)) + kernel]
        terms = int(w_win.size)
        channels = f"channels {c0}..{c0 + per_group_in - 1}" + (f" (group {group})" if groups > 1 else "")
        if terms > MAX_TERMS:
            return _summarised(out, x_win, w_win, b, terms)
        fn = trace.trace_conv2d if kind == "conv2d" else trace.trace_conv1d
        dilation = tuple(n[4] for n in notes)
        result = fn(x_win, w_win, b=b, dilation=dilation)
        lines = [f"filter {o}: w[0,c,…] is w[{o},c,…] of the layer (kernel offsets from "
                 f"{', '.join(str(k.start) for k in kernel)})"] + _window_lines(notes, channels)
        return _traced(out, result, lines, terms)

    if kind in ("maxpool1d", "maxpool2d") and isinstance(row.window, tuple):
        c, position = unit[0], unit[1:]
        slices, kernel, notes = _window(row, x, position)
        if slices is None:
            return out
        x_win = x[(slice(c, c + 1),) + slices]
        counts = tuple(n[2] for n in notes)
        dilation = tuple(n[4] for n in notes)
        if kind == "maxpool1d":
            x_win = x_win[:, None, :]
            counts, dilation = (1,) + counts, (1,) + dilation
        result = trace.trace_maxpool2d(x_win, counts, stride=1, dilation=dilation)
        return _traced(out, result, _window_lines(notes, f"channel {c}"), int(np.prod(counts)))

    if kind == "linear" and weight is not None and x.ndim == 1:
        o = unit[0]
        w_row = np.asarray(weight, dtype=np.float64)[o:o + 1]
        b = None if bias is None else [float(bias[o])]
        if w_row.size > MAX_TERMS:
            return _summarised(out, x, w_row, b, int(w_row.size))
        result = trace.trace_linear(x, w_row, b=b)
        return _traced(out, result, [f"output {o}: w[0,i] is row {o} of the layer's weight"],
                       int(w_row.size))

    if x.shape == y.shape:  # position-wise: activations, normalisation, dropout ...
        out["lines"] = [f"{kind} works position by position: y{list(unit)} = {kind}(x{list(unit)}) = "
                        f"{kind}({number(x[unit])}) = {number(value)}"]
        out["terms"] = 1
        return out
    out["lines"] = [f"{kind}: y{list(unit)} = {number(value)} (the engine's forward); this layer type "
                    "has no term-by-term trace"]
    return out


def _traced(out: Dict, result, lines: List[str], terms: int) -> Dict:
    out["sum"] = float(np.asarray(result.y).reshape(-1)[0])
    out["lines"] = lines + [line for title, body in result.sections if title == "forward"
                            for line in body]
    out["terms"] = terms
    out["traced"] = True
    return out


def _summarised(out: Dict, x_win, w_win, b, terms: int) -> Dict:
    total = float(np.sum(x_win[None] * w_win)) + (b[0] if b else 0.0)
    out["sum"] = total
    out["terms"] = terms
    out["lines"] = [f"{terms:,} products (too many to list): Σ x·w" + (f" + b = {number(total - b[0])} + "
                    f"{number(b[0])}" if b else "") + f" = {number(total)}"]
    return out


def _merge(out: Dict, inputs, unit, kind: str, y) -> Dict:
    values = []
    for x in inputs:
        x = np.asarray(x, dtype=np.float64)
        values.append(number(x[unit]) if x.shape == y.shape else "…")
    out["lines"] = [f"{kind} of {len(inputs)} inputs at {list(unit)}: {kind}({', '.join(values)}) = "
                    f"{number(out['value'])}"]
    return out


def kernel_gradient(layer, x_in: np.ndarray, unit: Tuple[int, ...], upstream: float) -> Optional[Dict]:
    """dL/dW contributed by one unit of a conv or linear layer: the layer's own backward run
    on ``x_in`` (one sample) with dL/dy equal to ``upstream`` at the unit and 0 elsewhere.
    For a conv unit this is ``upstream × window`` (the window × the delta term of the shared
    weight's sum). Returns the filter's (C_in/g, k...) slice, or None for layers without
    weights."""
    weight, _ = leaf_conv_weight(layer)
    if weight is None or layer.type_name not in ("conv1d", "conv2d", "linear"):
        return None
    x = np.asarray(x_in)[None].astype(layer.dtype)
    y = layer.forward(x, train=True)
    dy = np.zeros_like(y)
    dy[(0,) + tuple(unit)] = upstream
    layer.backward(dy)
    grad = np.asarray(layer._params["weight"].grad[unit[0]], dtype=np.float64)
    return {"shape": list(grad.shape), "values": grad}
