"""Convolution traces: forward and backward of conv1d/conv2d written out term by term.

Notation (one sample): C_in input channels, C_out filters, spatial input size n per axis,
kernel k, stride s, dilation d, padding p_lo/p_hi, output size
``n_out = ⌊(n + p_lo + p_hi − d·(k − 1) − 1)/s⌋ + 1`` (:func:`convscope.shapes.conv_output_size`).
The window of output position i reads input position ``t = i·s + a·d − p_lo`` for kernel
offset a (per axis); a position outside ``[0, n)`` is padding and reads 0.

Forward:   ``y[o,i] = Σ_c Σ_a x[c, i·s + a·d − p_lo]·w[o,c,a] + b[o]``
Backward:  ``dW[o,c,a] = Σ_i x[c, i·s + a·d − p_lo]·dy[o,i]`` (a shared weight's gradient
sums over every position that used it; seed 002), ``db[o] = Σ_i dy[o,i]``,
``dx[c,t] = Σ_{(o,i,a): i·s + a·d − p_lo = t} w[o,c,a]·dy[o,i]``.

All lines come from these index sets; every number printed is the engine's
(:class:`convscope.layers.Conv1d` / ``Conv2d`` in float64), checked against the sums.
"""
from __future__ import annotations

import itertools
from typing import Dict, List, Tuple

import numpy as np

from ..equations import term_equation
from ..errors import ConvscopeError, format_shape
from ..shapes import as_tuple, conv_output_size, resolve_padding
from . import engine
from .result import Trace
from .values import MINUS, factor, index, join_sum, number, parse_bias, parse_values

_AXES = {1: ("L",), 2: ("H", "W")}
_OFFSETS = {1: ("a",), 2: ("u", "v")}  # not "b": that is the bias
_POSITIONS = {1: ("i",), 2: ("i", "j")}


def trace_conv1d(x, w, b=None, dy=None, stride=1, padding=0, dilation=1) -> Trace:
    """Trace a 1-D convolution. ``x``: L values or C_in×L; ``w``: k values or C_out×C_in×k;
    ``b``: None (no bias) or C_out values; ``dy``: None (forward only) or the output's shape.
    Values may be arrays, lists or command-line text (see :mod:`convscope.trace.values`)."""
    return _trace_conv(1, x, w, b, dy, stride, padding, dilation)


def trace_conv2d(x, w, b=None, dy=None, stride=1, padding=0, dilation=1) -> Trace:
    """Trace a 2-D convolution. ``x``: H×W or C_in×H×W; ``w``: k_h×k_w or C_out×C_in×k_h×k_w;
    ``b``, ``dy`` as for :func:`trace_conv1d`."""
    return _trace_conv(2, x, w, b, dy, stride, padding, dilation)


class _Names:
    """Index names in the user's own layout: channel axes only where the user gave them."""

    def __init__(self, x_has_c: bool, w_full: bool):
        self.x_has_c, self.w_full = x_has_c, w_full

    def x(self, c, t):
        return index("x", ((c,) if self.x_has_c else ()) + tuple(t))

    def w(self, o, c, a):
        return index("w", ((o, c) if self.w_full else ()) + tuple(a))

    def dw(self, o, c, a):
        return index("dW", ((o, c) if self.w_full else ()) + tuple(a))

    def y(self, o, i, prefix="y"):
        return index(prefix, ((o,) if self.w_full else ()) + tuple(i))

    def b(self, o, prefix="b"):
        return index(prefix, (o,)) if self.w_full else prefix

    def dx(self, c, t):
        return index("dx", ((c,) if self.x_has_c else ()) + tuple(t))


def _layout(ndim: int, x, w, b):
    x = parse_values(x, "--x")
    w = parse_values(w, "--w")
    kind = f"conv{ndim}d"
    spatial = "L" if ndim == 1 else "H×W"
    if x.ndim == ndim:
        x_has_c, x_full = False, x[None]
    elif x.ndim == ndim + 1:
        x_has_c, x_full = True, x
    else:
        raise ConvscopeError(f"{kind}: --x must have shape {spatial} or C_in×{spatial}, got "
                             f"{format_shape(x.shape)}; write 2-D values as [[1,2],[3,4]] or 2x2:1,2,3,4")
    c_in = x_full.shape[0]
    if w.ndim == ndim:
        if c_in != 1:
            raise ConvscopeError(f"{kind}: --w of shape {format_shape(w.shape)} fits one input channel, "
                                 f"but --x has {c_in} channels; give --w as C_out×{c_in}×"
                                 f"{format_shape(w.shape)}")
        w_full_given, w_full = False, w[None, None]
    elif w.ndim == ndim + 2:
        w_full_given, w_full = True, w
        if w.shape[1] != c_in:
            raise ConvscopeError(f"{kind}: --w has {w.shape[1]} input channels (shape "
                                 f"{format_shape(w.shape)}), but --x has {c_in}; make them equal")
    else:
        kernel = "k" if ndim == 1 else "k_h×k_w"
        raise ConvscopeError(f"{kind}: --w must have shape {kernel} or C_out×C_in×{kernel}, got "
                             f"{format_shape(w.shape)}")
    c_out = w_full.shape[0]
    bias = parse_bias(b, c_out, kind, "filter")
    return x_full, w_full, bias, _Names(x_has_c, w_full_given)


def _out_sizes(kind, ndim, n, k, s, d, pads) -> Tuple[Tuple[int, ...], List[str]]:
    sizes, lines = [], []
    for ax in range(ndim):
        (lo, hi) = pads[ax]
        out = conv_output_size(n[ax], k[ax], s[ax], lo, hi, d[ax])
        name = _AXES[ndim][ax]
        lines.append(f"{name}_out = ⌊({name} + p_lo + p_hi {MINUS} d·(k {MINUS} 1) {MINUS} 1)/s⌋ + 1 = "
                     f"⌊({n[ax]} + {lo} + {hi} {MINUS} {d[ax]}·({k[ax]} {MINUS} 1) {MINUS} 1)/{s[ax]}⌋ + 1 "
                     f"= {out}")
        if out < 1:
            raise ConvscopeError(
                f"{kind}: the kernel spans {d[ax] * (k[ax] - 1) + 1} positions along {name} "
                f"(k={k[ax]}, dilation={d[ax]}) but the padded input has only {n[ax] + lo + hi}; "
                "use a smaller kernel or dilation, or more padding")
        sizes.append(out)
    return tuple(sizes), lines


def _position_formula(ndim, s, d, pads) -> str:
    """``i·s + a·d − p_lo`` per axis with the numbers put in: "2i + a − 1"."""
    parts = []
    for ax in range(ndim):
        i, a = _POSITIONS[ndim][ax], _OFFSETS[ndim][ax]
        text = (i if s[ax] == 1 else f"{s[ax]}{i}") + " + " + (a if d[ax] == 1 else f"{d[ax]}{a}")
        if pads[ax][0]:
            text += f" {MINUS} {pads[ax][0]}"
        parts.append(text)
    return ", ".join(parts)


class _Window:
    """The index sets of one traced convolution and how its lines name them.

    ``reads(i, a)`` is the input position output ``i`` reads at kernel offset ``a`` (None
    for padding); ``positions`` and ``offsets`` are every output position and kernel offset."""

    def __init__(self, ndim, n, k, s, d, pads, out, names: _Names, c_in: int, c_out: int):
        self.ndim, self.n, self.s, self.d, self.pads = ndim, n, s, d, pads
        self.names, self.c_in, self.c_out = names, c_in, c_out
        self.positions = list(itertools.product(*(range(o) for o in out)))
        self.offsets = list(itertools.product(*(range(kk) for kk in k)))
        # The general equations use the same index names as the lines below them.
        self.pos = _position_formula(ndim, s, d, pads)
        self.i_sym = ",".join(_POSITIONS[ndim])
        self.a_sym = ",".join(_OFFSETS[ndim])
        self.xc = "c, " if names.x_has_c else ""
        self.oc = "o,c," if names.w_full else ""
        self.o_ = "o," if names.w_full else ""

    def reads(self, i, a):
        t = tuple(i[ax] * self.s[ax] + a[ax] * self.d[ax] - self.pads[ax][0] for ax in range(self.ndim))
        return t if all(0 <= t[ax] < self.n[ax] for ax in range(self.ndim)) else None

    def x_read(self, x_full, c, i, a):
        """(name, value) of the input value a window term reads: ``pad`` and 0 for padding."""
        t = self.reads(i, a)
        return (self.names.x(c, t), x_full[(c,) + t]) if t is not None else ("pad", 0.0)


def _parse_dy(kind, ndim, dy, c_out, out, names, size_lines):
    if dy is None:
        return None
    dy_given = parse_values(dy, "--dy")
    expected = (c_out,) + out
    if dy_given.size != int(np.prod(expected)) or dy_given.ndim not in (ndim, ndim + 1) or \
            dy_given.shape[-ndim:] != out:
        where = f"{c_out}×{format_shape(out)}" if c_out > 1 or names.w_full else format_shape(out)
        raise ConvscopeError(f"{kind}: --dy has shape {format_shape(dy_given.shape)} but the output y "
                             f"has shape {where} ({'; '.join(l.split(' = ')[0] + ' = ' + str(o) for l, o in zip(size_lines, out))}); "
                             f"give one dy per output value")
    return dy_given.reshape(expected)


def _trace_conv(ndim, x, w, b, dy, stride, padding, dilation) -> Trace:
    kind = f"conv{ndim}d"
    x_full, w_full, bias, names = _layout(ndim, x, w, b)
    c_in, n = x_full.shape[0], x_full.shape[1:]
    c_out, k = w_full.shape[0], w_full.shape[2:]
    s = as_tuple(stride, ndim, "--stride")
    d = as_tuple(dilation, ndim, "--dilation")
    pads = resolve_padding(padding, k, d, "--padding")
    out, size_lines = _out_sizes(kind, ndim, n, k, s, d, pads)
    dy_full = _parse_dy(kind, ndim, dy, c_out, out, names, size_lines)
    win = _Window(ndim, n, k, s, d, pads, out, names, c_in, c_out)

    # The engine's numbers (what the trace prints), computed by the real layer in float64.
    from .. import layers
    layer_cls = layers.Conv1d if ndim == 1 else layers.Conv2d
    layer = layer_cls(c_out, tuple(k), stride=s, padding=padding if isinstance(padding, str) else
                      tuple(p[0] for p in pads), dilation=d, bias=bias is not None, in_channels=c_in)
    params = {"weight": w_full}
    if bias is not None:
        params["bias"] = bias
    y, grads, dx = engine.run(layer, x_full, params, dy_full)

    sections = [("setup", _setup_lines(kind, win, x_full, w_full, size_lines)),
                ("forward", _forward_lines(win, x_full, w_full, bias, y))]
    result = Trace(kind, y=_shaped(y, names.w_full))
    if dy_full is None:
        result.sections = sections
        return result
    sections.append(("backward: weight gradients", _weight_lines(win, x_full, dy_full, grads["weight"])))
    if bias is not None:
        sections.append(("backward: bias gradients", _bias_lines(win, dy_full, grads["bias"])))
        result.db = grads["bias"]
    sections.append(("backward: input gradients", _input_lines(win, w_full, dy_full, dx)))
    result.dw = grads["weight"] if names.w_full else grads["weight"][0, 0]
    result.dx = dx if names.x_has_c else dx[0]
    result.sections = sections
    return result


def _setup_lines(kind, win: _Window, x_full, w_full, size_lines) -> List[str]:
    pads, ndim = win.pads, win.ndim
    pad_note = _pair([str(lo) if lo == hi else f"{lo}+{hi}" for lo, hi in pads])
    setup = [f"{kind}: x {format_shape(x_full.shape)} (C_in×{'×'.join(_AXES[ndim])}), "
             f"w {format_shape(w_full.shape)} (C_out×C_in×kernel), stride {_pair(win.s)}, "
             f"padding {pad_note}, dilation {_pair(win.d)}"] + size_lines
    if any(lo or hi for lo, hi in pads):
        setup.append("padding reads 0: a term that reads it is written pad·w and adds nothing")
    setup.append(f"window: output [{win.i_sym}] at kernel offset [{win.a_sym}] reads x[{win.pos}]")
    return setup


def _forward_lines(win: _Window, x_full, w_full, bias, y) -> List[str]:
    """``y[o,i] = Σ_c Σ_a x[c, i·s + a·d − p]·w[o,c,a] + b[o]``, every term written out."""
    names = win.names
    bias_sym = ("b[o]" if names.w_full else "b") if bias is not None else ""
    c_sum = "Σ_c " if win.c_in > 1 else ""
    lines = [f"y[{win.o_}{win.i_sym}] = {c_sum}Σ_{win.a_sym} x[{win.xc}{win.pos}]·w[{win.oc}{win.a_sym}]"
             + (f" + {bias_sym}" if bias_sym else "")]
    ours = np.zeros_like(y)
    for o in range(win.c_out):
        for i in win.positions:
            syms, vals, total = [], [], 0.0
            for c in range(win.c_in):
                for a in win.offsets:
                    x_name, xv = win.x_read(x_full, c, i, a)
                    wv = w_full[(o, c) + a]
                    syms.append(f"{x_name}·{names.w(o, c, a)}")
                    vals.append(f"{factor(xv)}·{factor(wv)}")
                    total += xv * wv
            if bias is not None:
                syms.append(names.b(o))
                vals.append(number(bias[o]))
                total += bias[o]
            ours[(o,) + i] = total
            lines.append(term_equation(names.y(o, i), syms, join_sum(vals), number(y[(o,) + i])))
    engine.agree("y", ours, y)
    return lines


def _weight_lines(win: _Window, x_full, dy_full, dw) -> List[str]:
    """``dW[o,c,a] = Σ_i x[c, i·s + a·d − p]·dy[o,i]``: a shared weight sums over every position."""
    names = win.names
    lines = [f"dW[{win.oc}{win.a_sym}] = Σ_{win.i_sym} x[{win.xc}{win.pos}]·dy[{win.o_}{win.i_sym}]  "
             f"(w[{win.oc}{win.a_sym}] is shared by every output position, so its gradient sums over all of them)"]
    ours = np.zeros_like(dw)
    for o in range(win.c_out):
        for c in range(win.c_in):
            for a in win.offsets:
                syms, vals, total = [], [], 0.0
                for i in win.positions:
                    x_name, xv = win.x_read(x_full, c, i, a)
                    gv = dy_full[(o,) + i]
                    syms.append(f"{x_name}·{names.y(o, i, 'dy')}")
                    vals.append(f"{factor(xv)}·{factor(gv)}")
                    total += xv * gv
                ours[(o, c) + a] = total
                lines.append(term_equation(names.dw(o, c, a), syms, join_sum(vals), number(dw[(o, c) + a])))
    engine.agree("dW", ours, dw)
    return lines


def _bias_lines(win: _Window, dy_full, db) -> List[str]:
    """``db[o] = Σ_i dy[o,i]``."""
    names = win.names
    bias_sym = "b[o]" if names.w_full else "b"
    lines = [f"d{bias_sym} = Σ_{win.i_sym} dy[{win.o_}{win.i_sym}]"]
    for o in range(win.c_out):
        syms = [names.y(o, i, "dy") for i in win.positions]
        vals = [number(dy_full[(o,) + i]) for i in win.positions]
        lines.append(term_equation(names.b(o, "db"), syms, join_sum(vals), number(db[o])))
    engine.agree("db", dy_full.reshape(win.c_out, -1).sum(axis=1), db)
    return lines


def _input_lines(win: _Window, w_full, dy_full, dx) -> List[str]:
    """``dx[c,t] = Σ over the (o, i, a) whose window reads x[c,t] of w[o,c,a]·dy[o,i]``."""
    names, ndim = win.names, win.ndim
    users: Dict[Tuple[int, ...], List[Tuple[int, Tuple[int, ...], Tuple[int, ...]]]] = {}
    for o in range(win.c_out):
        for i in win.positions:
            for a in win.offsets:
                t = win.reads(i, a)
                if t is not None:
                    users.setdefault(t, []).append((o, i, a))
    t_sym = ",".join("t" + str(ax + 1) for ax in range(ndim)) if ndim > 1 else "t"
    over = ", ".join((["o"] if names.w_full else []) + [win.i_sym, win.a_sym])
    lines = [f"dx[{win.xc}{t_sym}] = Σ over ({over}) whose window reads x[{win.xc}{t_sym}] of "
             f"w[{win.oc}{win.a_sym}]·dy[{win.o_}{win.i_sym}]"]
    ours = np.zeros_like(dx)
    for c in range(win.c_in):
        for t in itertools.product(*(range(m) for m in win.n)):
            uses = users.get(t, [])
            if not uses:
                lines.append(f"{names.dx(c, t)} = 0  (no window reads {names.x(c, t)})")
                continue
            syms = [f"{names.w(o, c, a)}·{names.y(o, i, 'dy')}" for o, i, a in uses]
            vals = [f"{factor(w_full[(o, c) + a])}·{factor(dy_full[(o,) + i])}" for o, i, a in uses]
            ours[(c,) + t] = sum(w_full[(o, c) + a] * dy_full[(o,) + i] for o, i, a in uses)
            lines.append(term_equation(names.dx(c, t), syms, join_sum(vals), number(dx[(c,) + t])))
    engine.agree("dx", ours, dx)
    return lines


def _shaped(y: np.ndarray, with_channels: bool) -> np.ndarray:
    return y if with_channels else y[0]


def _pair(values) -> str:
    """(2, 2) -> "2", (2, 1) -> "2×1"."""
    values = [str(v) for v in values]
    return values[0] if len(set(values)) == 1 else "×".join(values)
