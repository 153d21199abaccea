"""Max-pooling trace: each output is the largest input of its window, and backward routes
each output's gradient to that one input.

Notation (one sample): C channels, H×W input, kernel k_h×k_w, stride s, padding p (read as
−∞, so never the maximum), dilation d, output size by :func:`convscope.shapes.conv_output_size`.

Forward:   ``y[c,i,j] = max_{u,v} x[c, i·s_h + u·d_h − p_h, j·s_w + v·d_w − p_w]``; the winner is
the first maximum in row-major window order (PyTorch's rule on ties).
Backward:  ``dx[c,t] = Σ_{(i,j) whose winner is t} dy[c,i,j]``; an input that wins no window
gets 0. There are no weights, so no dW or db.

Every number printed is the engine's (:class:`convscope.layers.MaxPool2d` in float64).
"""
from __future__ import annotations

import itertools

import numpy as np

from ..equations import equation
from ..errors import ConvscopeError, format_shape
from ..shapes import as_tuple, conv_output_size
from . import engine
from .conv import _pair
from .result import Trace
from .values import MINUS, index, join_sum, number, parse_values


def trace_maxpool2d(x, kernel_size, dy=None, stride=None, padding=0, dilation=1, ceil_mode=False) -> Trace:
    """Trace 2-D max pooling. ``x``: H×W or C×H×W; ``dy``: None or the output's shape."""
    kind = "maxpool2d"
    x = parse_values(x, "--x")
    if x.ndim == 2:
        has_c, x_full = False, x[None]
    elif x.ndim == 3:
        has_c, x_full = True, x
    else:
        raise ConvscopeError(f"{kind}: --x must have shape H×W or C×H×W, got {format_shape(x.shape)}; "
                             "write it as [[1,2],[3,4]] or 2x2:1,2,3,4")
    channels, n = x_full.shape[0], x_full.shape[1:]
    k = as_tuple(kernel_size, 2, "--kernel-size")
    s = as_tuple(stride if stride is not None else k, 2, "--stride")
    p = as_tuple(padding, 2, "--padding", minimum=0)
    d = as_tuple(dilation, 2, "--dilation")
    from .. import layers
    layer = layers.MaxPool2d(k, stride=s, padding=p, dilation=d, ceil_mode=bool(ceil_mode))

    out, size_lines = [], []
    for ax, name in enumerate(("H", "W")):
        size = conv_output_size(n[ax], k[ax], s[ax], p[ax], p[ax], d[ax], ceil_mode=bool(ceil_mode))
        floor = "⌈" if ceil_mode else "⌊"
        close = "⌉" if ceil_mode else "⌋"
        size_lines.append(f"{name}_out = {floor}({name} + 2p {MINUS} d·(k {MINUS} 1) {MINUS} 1)/s{close} + 1 = "
                          f"{floor}({n[ax]} + 2·{p[ax]} {MINUS} {d[ax]}·({k[ax]} {MINUS} 1) {MINUS} 1)/{s[ax]}{close} + 1 = {size}")
        if size < 1:
            raise ConvscopeError(f"{kind}: the window spans {d[ax] * (k[ax] - 1) + 1} positions along {name} "
                                 f"but the padded input has only {n[ax] + 2 * p[ax]}; use a smaller kernel "
                                 "or more padding")
        out.append(size)
    out = tuple(out)

    dy_full = None
    if dy is not None:
        dy_given = parse_values(dy, "--dy")
        if dy_given.ndim not in (2, 3) or dy_given.shape[-2:] != out or dy_given.size != channels * out[0] * out[1]:
            shape = format_shape((channels,) + out) if has_c else format_shape(out)
            raise ConvscopeError(f"{kind}: --dy has shape {format_shape(dy_given.shape)} but the output y has "
                                 f"shape {shape} (H_out = {out[0]}, W_out = {out[1]}); give one dy per output value")
        dy_full = dy_given.reshape((channels,) + out)

    y, _, dx = engine.run(layer, x_full, {}, dy_full)

    def name(prefix, c, pos):
        return index(prefix, ((c,) if has_c else ()) + tuple(pos))

    positions = list(itertools.product(range(out[0]), range(out[1])))
    offsets = list(itertools.product(range(k[0]), range(k[1])))
    setup = [f"{kind}: x {format_shape(x_full.shape)} (C×H×W), kernel {_pair(k)}, stride {_pair(s)}, "
             f"padding {_pair(p)}, dilation {_pair(d)}" + (", ceil mode" if ceil_mode else "")] + size_lines
    if any(p) or ceil_mode:
        setup.append(f"padding reads {MINUS}∞, so it never wins and is left out of the lists below")
    c_ = "c," if has_c else ""
    forward = [f"y[{c_}i,j] = max over the window of x; the winner is the first maximum (PyTorch's rule)"]
    winners = {}
    ours_y = np.zeros_like(y)
    for c in range(channels):
        for i in positions:
            reads = []
            for a in offsets:
                t = tuple(i[ax] * s[ax] + a[ax] * d[ax] - p[ax] for ax in range(2))
                if all(0 <= t[ax] < n[ax] for ax in range(2)):
                    reads.append(t)
            best = reads[0]
            for t in reads[1:]:
                if x_full[(c,) + t] > x_full[(c,) + best]:
                    best = t
            winners[(c,) + i] = best
            ours_y[(c,) + i] = x_full[(c,) + best]
            forward.append(equation(name('y', c, i), f"max({', '.join(name('x', c, t) for t in reads)})",
                                    f"max({', '.join(number(x_full[(c,) + t]) for t in reads)})",
                                    number(y[(c,) + i])) + f"  ← {name('x', c, best)}")
    engine.agree("y", ours_y, y)
    result = Trace(kind, y=y if has_c else y[0])
    sections = [("setup", setup), ("forward", forward)]
    if dy_full is not None:
        routed = {}
        for key, best in winners.items():
            routed.setdefault((key[0],) + best, []).append(key[1:])
        backward = [f"dx[{c_}t] = Σ dy[{c_}i,j] over the windows whose maximum was x[{c_}t]; "
                    "0 where an input wins no window"]
        ours_dx = np.zeros_like(dx)
        for c in range(channels):
            for t in itertools.product(range(n[0]), range(n[1])):
                wins = routed.get((c,) + t, [])
                if not wins:
                    backward.append(f"{name('dx', c, t)} = 0  ({name('x', c, t)} is the maximum of no window)")
                    continue
                ours_dx[(c,) + t] = sum(dy_full[(c,) + i] for i in wins)
                values = join_sum([number(dy_full[(c,) + i]) for i in wins]) if len(wins) > 1 else None
                backward.append(equation(name('dx', c, t), ' + '.join(name('dy', c, i) for i in wins),
                                         *([values] if values else []), number(dx[(c,) + t])))
        engine.agree("dx", ours_dx, dx)
        sections.append(("backward: input gradients", backward))
        result.dx = dx if has_c else dx[0]
    result.sections = sections
    return result
