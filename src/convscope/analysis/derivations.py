"""Derivations: every number of a report row written as symbols, then values, then result.

``params = (C_in·k_h·k_w + 1)·C_out = (3·5·5 + 1)·32 = 2,432``
``H_out = ⌊(H_in + 2·p − k)/s⌋ + 1 = ⌊(227 + 2·0 − 11)/4⌋ + 1 = 55``
``flatten 256×6×6 = 9,216``; ``params = (in + 1)·out = (9,216 + 1)·4,096 = 37,752,832``

Output sizes come from :func:`convscope.shapes.conv_output_size` (the one rule); the values in
each formula are read from the layer's own shapes (weight shape, input and output shape), and
each result is checked against the layer's rule, so an explanation can never disagree with
the count it explains. Notation: C_in/C_out channels, G groups, k kernel, s stride,
p padding (p_lo before, p_hi after), d dilation, H/W (or L) spatial sizes, in/out features.
"""
from __future__ import annotations

from typing import List, Optional

from ..equations import count_equation as eq  # re-exported: layer modules derive with it
from ..equations import equation
from ..errors import format_count as fc
from ..errors import format_shape
from ..shapes import adaptive_window, conv_output_size, prod, resolve_padding
from .describe import axis_names
from .receptive import derivation as field_derivation



def derive(row) -> List[str]:
    """All derivation lines of a report row."""
    lines: List[str] = []
    lines.extend(_shape_lines(row))
    lines.extend(_param_lines(row))
    lines.extend(_mac_lines(row))
    lines.extend(_other_lines(row))
    if row.shared_with is not None:
        lines.append(f"shared: the same layer object as {row.shared_with}, so its "
                     f"{fc(row.params)} parameters are counted once, there")
    lines.append(_memory_line(row))
    field_line = _field_line(row)
    if field_line:
        lines.append(field_line)
    return lines


# ----- shapes -----------------------------------------------------------------------------

def _multi_shape_lines(row, layer, x, y) -> List[str]:
    """Merges and splits explain their shape from every input (or every piece)."""
    multi_out = getattr(layer, "multi_output", False)
    ins = [x] if multi_out or not row.branch_shapes else list(row.branch_shapes)
    outs = list(row.branch_shapes) if multi_out and row.branch_shapes else [y]
    return layer.shape_derivation_multi(ins, outs)


def _shape_lines(row) -> List[str]:
    x, y = tuple(row.input_shape), tuple(row.output_shape)
    if row.layer is not None and hasattr(row.layer, "shape_derivation_multi") and not row.container:
        return _multi_shape_lines(row, row.layer, x, y)
    lines = row.layer.shape_derivation(x, y) if row.layer is not None else None
    if lines is not None:
        return list(lines)
    if x == y:
        return [f"shape unchanged: {format_shape(y)} ({row.type} acts on each element)"]
    return [f"{format_shape(x)} → {format_shape(y)}"]


def window_shape_lines(layer, x, y, window, pooling: bool = False) -> List[str]:
    """Output-size lines of a sliding-window layer (convolutions, pooling): per spatial axis
    ``⌊(n_in + 2·p − k)/s⌋ + 1`` with its values, then the output shape."""
    x, y = tuple(x), tuple(y)
    kernel = tuple(k for k, _s, _p, _d in window)
    dilation = tuple(d for _k, _s, _p, d in window)
    try:
        pads = resolve_padding(getattr(layer, "padding", 0), kernel, dilation)
    except Exception:  # an unusual padding attribute: fall back to the window's own
        pads = tuple((p, p) for _k, _s, p, _d in window)
    ceil_mode = bool(getattr(layer, "ceil_mode", False))
    names = axis_names(len(window))
    per_axis = []
    for i, ((k, s, p_lo, d), (_lo, p_hi)) in enumerate(zip(window, pads)):
        n, sym = x[1 + i], names[i]
        out = conv_output_size(n, k, s, p_lo, p_hi, d, ceil_mode)
        per_axis.append((sym, _size_formula(sym, n, k, s, p_lo, p_hi, d, ceil_mode, out, y[1 + i])))
    lines = []
    # One line for H and W when they only differ by name ("H_out = W_out = ...").
    generic = {text.replace(f"{sym}_in", "n_in") for sym, text in per_axis}
    if len(generic) == 1 and len(per_axis) > 1:
        syms = " = ".join(f"{sym}_out" for sym, _ in per_axis)
        lines.append(f"{syms} = {per_axis[0][1]}")
    else:
        lines.extend(f"{sym}_out = {text}" for sym, text in per_axis)
    lines.append(f"output = C_out×{'×'.join(f'{s}_out' for s in names)} = {format_shape(y)}"
                 if not pooling
                 else f"output = C×{'×'.join(f'{s}_out' for s in names)} = {format_shape(y)} "
                      f"(pooling keeps the {y[0]} channels)")
    return lines


def _size_formula(sym, n, k, s, p_lo, p_hi, d, ceil_mode, out, rule) -> str:
    lo, hi = ("⌈", "⌉") if ceil_mode else ("⌊", "⌋")
    if d == 1 and p_lo == p_hi:
        text = (f"{lo}({sym}_in + 2·p − k)/s{hi} + 1 = {lo}({fc(n)} + 2·{p_lo} − {k})/{s}{hi} + 1")
    else:
        text = (f"{lo}({sym}_in + p_lo + p_hi − d·(k − 1) − 1)/s{hi} + 1 = "
                f"{lo}({fc(n)} + {p_lo} + {p_hi} − {d}·({k} − 1) − 1)/{s}{hi} + 1")
    if ceil_mode:
        span = n + p_lo + p_hi - d * (k - 1) - 1
        if -(-span // s) + 1 != out:
            text += " − 1 (the last window would start in the padding, so it is dropped)"
    if out != rule:
        return f"{text} = {rule} (the layer's rule)"
    return f"{text} = {out}"


def adaptive_lines(x, y) -> List[str]:
    names = axis_names(len(x) - 1)
    lines = []
    for sym, n, m in zip(names, x[1:], y[1:]):
        sizes = sorted({end - start for start, end in (adaptive_window(i, n, m) for i in range(m))})
        lines.append(f"{sym}_out = output_size = {m}: cell i averages [⌊i·{sym}_in/{sym}_out⌋, "
                     f"⌈(i+1)·{sym}_in/{sym}_out⌉) = windows of {' or '.join(map(str, sizes))} "
                     f"of the {n} inputs" + (" (an identity here)" if n == m else ""))
    return lines


# ----- parameters -------------------------------------------------------------------------

def _param_lines(row) -> List[str]:
    if row.container:
        return [f"params = 0 of its own; its layers hold {fc(row.subtree_params)}"]
    lines: List[str] = []
    if not row.param_shapes:
        lines.append(f"params = 0 ({row.type} learns nothing)")
    else:
        declared = row.layer.param_derivation(row) if row.layer is not None else None
        lines.extend(_generic_params(row) if declared is None else declared)
    if row.buffer_shapes:
        parts = " + ".join(f"{name} {fc(prod(s))}" for name, s in row.buffer_shapes.items())
        lines.append(f"buffers = {parts} = {fc(row.buffers)} (running statistics: kept, not learned, "
                     "not in params)")
    return lines


def kernel_symbols(nk: int) -> List[str]:
    return ["k"] if nk == 1 else [f"k_{s.lower()}" for s in axis_names(nk)]


def _generic_params(row) -> List[str]:
    parts = [f"{name} {format_shape(s)} = {fc(prod(s))}" for name, s in row.param_shapes.items()]
    return [f"params = {' + '.join(parts)} → {fc(row.params)}"]


# ----- operations -------------------------------------------------------------------------

def _mac_lines(row) -> List[str]:
    if not row.macs:
        return []
    declared = row.layer.mac_derivation(row) if row.layer is not None else None
    if declared is not None:
        return list(declared)
    return [f"MACs = {fc(row.macs)} (the layer's rule){flops(row.macs)}"]


def flops(macs: int) -> str:
    """`` (= 2·MACs FLOPs)`` appended to a MAC line."""
    return f" (= {fc(2 * macs)} FLOPs)"


def _other_lines(row) -> List[str]:
    lines = []
    y = tuple(row.output_shape)
    n_out = prod(y)
    for category, value in row.other_ops.items():
        if category == "bias_adds":
            shape = format_shape(y) if len(y) > 1 else fc(value)  # a 1-D shape is the count itself
            lines.append(equation("bias adds = one per output", shape, fc(value)) + " (not MACs)")
        elif category == "pooling" and getattr(row.layer, "window_op", None) and isinstance(row.window, tuple) \
                and value == n_out * prod(k for k, _s, _p, _d in row.window):
            kernel = "·".join(str(k) for k, _s, _p, _d in row.window)
            verb = row.layer.window_op
            lines.append(f"pooling = window·outputs = {kernel}·{format_shape(y).replace('×', '·')} = "
                         f"{fc(value)} {verb}")
        elif category == "activations":
            per = value // n_out if n_out else 0
            lines.append(f"activation ops = {per} per element · {fc(n_out)} elements = {fc(value)}")
        else:
            lines.append(f"{category.replace('_', ' ')} = {fc(value)} (see convscope.analysis.counting)")
    return lines


def _memory_line(row) -> str:
    pieces = row.branch_shapes if getattr(row.layer, "multi_output", False) else [row.output_shape]
    count = sum(prod(s) for s in pieces)  # a split's row holds every piece
    per_element = row.memory_bytes // count if count else 0  # itemsize × batch size
    return f"memory = output elements·bytes each = {fc(count)}·{per_element} = {fc(row.memory_bytes)} bytes"


def _field_line(row) -> Optional[str]:
    if row.field is None:
        return None
    if row.container:
        f = row.field
        if f.is_global:
            return "receptive field: the whole input"
        return (f"receptive field: union of the branches = {format_shape(f.size)}, "
                f"start {list(f.start)}, stride {list(f.jump)}")
    if isinstance(row.window, str) or (row.field.is_global and row.field_in is not None
                                       and not row.field_in.is_global):
        return "receptive field: the whole input (every output sees every input position)"
    names = axis_names(len(row.field.size)) if row.field.size else ()
    return field_derivation(row.field_in, row.window, names) if row.field_in is not None else None
