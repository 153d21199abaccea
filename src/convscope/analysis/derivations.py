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

from ..errors import format_count as fc
from ..errors import format_shape
from ..shapes import adaptive_window, conv_output_size, prod, resolve_padding
from .describe import axis_names
from .receptive import derivation as field_derivation

_CONV = {"conv1d", "conv2d"}


def _eq(symbols: str, values: str, result: int, rule: Optional[int] = None) -> str:
    """``symbols = values = result``; when the layer's rule disagrees its number wins, flagged."""
    if rule is not None and rule != result:
        return f"{symbols} = {fc(rule)} (the layer's rule; the formula gives {fc(result)})"
    if values == fc(result):
        return f"{symbols} = {values}"
    return f"{symbols} = {values} = {fc(result)}"


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

def _declared_shape_lines(row, layer, x, y) -> Optional[List[str]]:
    """The layer's own explanation (``shape_derivation``; merges and splits see every shape)."""
    if row.container or layer is None:
        return None
    if hasattr(layer, "shape_derivation_multi"):
        multi_out = getattr(layer, "multi_output", False)
        ins = [x] if multi_out or not row.branch_shapes else list(row.branch_shapes)
        outs = list(row.branch_shapes) if multi_out and row.branch_shapes else [y]
        return layer.shape_derivation_multi(ins, outs)
    if hasattr(layer, "shape_derivation"):
        return layer.shape_derivation(x, y)
    return None


def _shape_lines(row) -> List[str]:
    kind, layer = row.type, row.layer
    x, y = tuple(row.input_shape), tuple(row.output_shape)
    own = _declared_shape_lines(row, layer, x, y)
    if own:
        return own
    if kind in _CONV or kind == "locally_connected2d" or (
            "pool" in kind and "adaptive" not in kind and isinstance(row.window, tuple)):
        return _window_shape_lines(row)
    if kind.startswith("adaptive"):
        return _adaptive_lines(x, y)
    if kind == "global_avgpool":
        return [f"output C = {y[0]}: each channel's mean over {format_shape(x[1:])} = "
                f"{fc(prod(x[1:]))} positions"]
    if kind == "flatten":
        return [f"flatten {format_shape(x)} = {fc(prod(x))}" if len(y) == 1 else
                f"flatten {format_shape(x)} → {format_shape(y)} (count unchanged: {fc(prod(y))})"]
    if kind == "linear":
        return [f"output = out_features = {fc(y[-1])}" + (f", per position of {format_shape(x[:-1])}"
                                                          if len(x) > 1 else "")]
    if kind == "concat":
        channels = [s[0] for s in row.branch_shapes]
        return [f"C_out = Σ branch channels = {' + '.join(fc(c) for c in channels)} = {fc(y[0])}; "
                f"every branch gives {format_shape(y[1:]) or 'the same size'}, joined on channels"]
    if kind == "residual":
        shortcut = "identity" if getattr(layer, "shortcut", None) is None else "shortcut(x)"
        return [f"y = body(x) + {shortcut}: {format_shape(y)} + {format_shape(y)} → {format_shape(y)}"]
    if kind == "sequential":
        return [f"a chain of {len(layer.children())} layers: {format_shape(x)} → {format_shape(y)}"]
    if x == y:
        return [f"shape unchanged: {format_shape(y)} ({kind} acts on each element)"
                if kind not in ("batchnorm1d", "batchnorm2d", "local_response_norm", "softmax")
                else f"shape unchanged: {format_shape(y)}"]
    return [f"{format_shape(x)} → {format_shape(y)}"]


def _window_shape_lines(row) -> List[str]:
    layer = row.layer
    x, y = tuple(row.input_shape), tuple(row.output_shape)
    window = row.window
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
                 if row.type in _CONV or row.type == "locally_connected2d"
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


def _adaptive_lines(x, y) -> List[str]:
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
    kind = row.type
    if row.container:
        return [f"params = 0 of its own; its layers hold {fc(row.subtree_params)}"]
    shapes = row.param_shapes
    lines: List[str] = []
    if not shapes:
        lines.append(f"params = 0 ({kind} learns nothing)")
    elif kind in _CONV:
        lines.extend(_conv_params(row))
    elif kind == "locally_connected2d":
        lines.extend(_local_params(row))
    elif kind == "linear":
        lines.extend(_linear_params(row))
    elif kind.startswith("batchnorm"):
        c = shapes["weight"][0]
        lines.append(_eq("params = 2·C", f"2·{fc(c)}", 2 * c, row.params) +
                     " (a scale γ and a shift β per channel)")
    else:
        lines.extend(_generic_params(row))
    if row.buffer_shapes:
        parts = " + ".join(f"{name} {fc(prod(s))}" for name, s in row.buffer_shapes.items())
        lines.append(f"buffers = {parts} = {fc(row.buffers)} (running statistics: kept, not learned, "
                     "not in params)")
    return lines


def _kernel_symbols(nk: int) -> List[str]:
    return ["k"] if nk == 1 else [f"k_{s.lower()}" for s in axis_names(nk)]


def _conv_params(row) -> List[str]:
    w = row.param_shapes["weight"]
    c_out, c_per_group, kernel = w[0], w[1], w[2:]
    c_in, groups = row.input_shape[0], getattr(row.layer, "groups", 1)
    ks = _kernel_symbols(len(kernel))
    k_sym, k_val = "·".join(ks), "·".join(str(k) for k in kernel)
    cin_sym = "C_in" if groups == 1 else "(C_in/G)"
    cin_val = f"{c_in}" if groups == 1 else f"({c_in}/{groups})"
    weights = c_out * c_per_group * prod(kernel)
    lines = [_eq(f"weights = C_out·{cin_sym}·{k_sym}", f"{c_out}·{cin_val}·{k_val}", weights, row.weights)]
    if "bias" in row.param_shapes:
        lines.append(_eq("biases = C_out", f"{c_out}", c_out, row.biases) + " (one per filter, shared by "
                     "every position and every input channel)")
        lines.append(_eq(f"params = ({cin_sym}·{k_sym} + 1)·C_out", f"({cin_val}·{k_val} + 1)·{c_out}",
                         (c_per_group * prod(kernel) + 1) * c_out, row.params))
    else:
        lines.append(f"params = weights = {fc(row.params)} (bias=False)")
    return lines


def _local_params(row) -> List[str]:
    w = row.param_shapes["weight"]
    c_out, spatial = w[0], w[1:3]
    c_in, kernel = w[3], w[4:]
    h, wd = spatial
    kh, kw = kernel
    bias = 1 if "bias" in row.param_shapes else 0
    per_unit = c_in * kh * kw + bias
    units = c_out * h * wd
    unit_sym = "C_in·k_h·k_w + 1" if bias else "C_in·k_h·k_w"
    unit_val = f"{c_in}·{kh}·{kw} + 1" if bias else f"{c_in}·{kh}·{kw}"
    shared = (c_in * kh * kw + bias) * c_out
    lines = [
        _eq(f"params = C_out·H_out·W_out·({unit_sym})", f"{c_out}·{h}·{wd}·({unit_val})",
            units * per_unit, row.params),
        f"no weight sharing: each of the C_out·H_out·W_out = {c_out}·{h}·{wd} = {fc(units)} output "
        f"units has its own {unit_sym} = {fc(per_unit)} parameters "
        f"({'weights and a bias' if bias else 'weights'}): {fc(units)}·{fc(per_unit)} = {fc(units * per_unit)}",
        f"a conv2d of the same shape shares one filter per output channel across all "
        f"H_out·W_out = {h}·{wd} = {fc(h * wd)} positions: ({unit_sym})·C_out = ({unit_val})·{c_out} = "
        f"{fc(shared)}, {fc(h * wd)}× fewer",
    ]
    return lines


def _linear_params(row) -> List[str]:
    out_f, in_f = row.param_shapes["weight"]
    lines = [_eq("weights = in·out", f"{fc(in_f)}·{fc(out_f)}", in_f * out_f, row.weights)]
    if "bias" in row.param_shapes:
        lines.append(_eq("biases = out", fc(out_f), out_f, row.biases))
        lines.append(_eq("params = (in + 1)·out", f"({fc(in_f)} + 1)·{fc(out_f)}", (in_f + 1) * out_f,
                         row.params))
    else:
        lines.append(f"params = weights = {fc(row.params)} (bias=False)")
    return lines


def _generic_params(row) -> List[str]:
    parts = [f"{name} {format_shape(s)} = {fc(prod(s))}" for name, s in row.param_shapes.items()]
    return [f"params = {' + '.join(parts)} → {fc(row.params)}"]


# ----- operations -------------------------------------------------------------------------

def _mac_lines(row) -> List[str]:
    if not row.macs:
        return []
    kind, x, y = row.type, tuple(row.input_shape), tuple(row.output_shape)
    flops = f" (= {fc(2 * row.macs)} FLOPs)"
    if kind in _CONV or kind == "locally_connected2d":
        groups = getattr(row.layer, "groups", 1)
        kernel = tuple(k for k, _s, _p, _d in row.window)
        ks = _kernel_symbols(len(kernel))
        names = axis_names(len(kernel))
        cin_sym = "C_in" if groups == 1 else "(C_in/G)"
        cin_val = f"{x[0]}" if groups == 1 else f"({x[0]}/{groups})"
        value = prod(y) * (x[0] // groups) * prod(kernel)
        return [_eq(f"MACs = C_out·{'·'.join(f'{n}_out' for n in names)}·{cin_sym}·{'·'.join(ks)}",
                    "·".join([fc(v) for v in y] + [cin_val] + [str(k) for k in kernel]),
                    value, row.macs) + flops]
    if kind == "linear":
        out_f, in_f = row.param_shapes["weight"]
        rows = prod(x[:-1])
        if rows == 1:
            return [_eq("MACs = in·out", f"{fc(in_f)}·{fc(out_f)}", in_f * out_f, row.macs) + flops]
        return [_eq("MACs = positions·in·out", f"{fc(rows)}·{fc(in_f)}·{fc(out_f)}", rows * in_f * out_f,
                    row.macs) + flops]
    return [f"MACs = {fc(row.macs)} (the layer's rule){flops}"]


def _other_lines(row) -> List[str]:
    lines = []
    y = tuple(row.output_shape)
    n_out = prod(y)
    for category, value in row.other_ops.items():
        if category == "bias_adds":
            lines.append(f"bias adds = one per output = {format_shape(y)} = {fc(value)} (not MACs)")
        elif category == "pooling" and isinstance(row.window, tuple) and "adaptive" not in row.type \
                and value == n_out * prod(k for k, _s, _p, _d in row.window):
            kernel = "·".join(str(k) for k, _s, _p, _d in row.window)
            verb = "compares" if row.type.startswith("max") else "adds"
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
