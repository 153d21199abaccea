"""Linear (fully connected) trace: every output is a weighted sum of every input.

Notation (one sample): x has n_in values, W is n_out×n_in (PyTorch's layout), b has n_out.

Forward:   ``y[o] = Σ_i x[i]·w[o,i] + b[o]``
Backward:  ``dW[o,i] = x[i]·dy[o]`` (one term: a dense weight is used once per sample, unlike a
conv weight), ``db[o] = dy[o]``, ``dx[i] = Σ_o w[o,i]·dy[o]``.

Every number printed is the engine's (:class:`convscope.layers.Linear` in float64).
"""
from __future__ import annotations

import numpy as np

from ..equations import equation, term_equation
from ..errors import ConvscopeError, format_shape
from . import engine
from .result import Trace
from .values import factor, index, join_sum, number, parse_bias, parse_values


def trace_linear(x, w, b=None, dy=None) -> Trace:
    """Trace a linear layer. ``x``: n_in values; ``w``: n_out×n_in (or n_in values for one
    output); ``b``: None or n_out values; ``dy``: None or n_out values."""
    kind = "linear"
    x = parse_values(x, "--x")
    w = parse_values(w, "--w")
    if x.ndim != 1:
        raise ConvscopeError(f"{kind}: --x must be a flat list of the input values, got shape "
                             f"{format_shape(x.shape)}; flatten it first")
    n_in = x.size
    if w.ndim == 1:
        w = w[None]
    if w.ndim != 2 or w.shape[1] != n_in:
        raise ConvscopeError(f"{kind}: --w must have shape n_out×{n_in} (one row of {n_in} weights per "
                             f"output, as --x has {n_in} values), got {format_shape(w.shape)}")
    n_out = w.shape[0]
    bias = parse_bias(b, n_out, kind, "output")
    dy_full = None
    if dy is not None:
        dy_full = parse_values(dy, "--dy").reshape(-1)
        if dy_full.size != n_out:
            raise ConvscopeError(f"{kind}: --dy has {dy_full.size} values but y has {n_out} (one per row "
                                 f"of --w); give {n_out} values")

    from .. import layers
    params = {"weight": w} if bias is None else {"weight": w, "bias": bias}
    layer = layers.Linear(n_out, bias=bias is not None, in_features=n_in)
    y, grads, dx = engine.run(layer, x, params, dy_full)

    setup = [f"{kind}: x has {n_in} values, w {format_shape(w.shape)} (n_out×n_in), "
             + ("b has " + str(n_out) + " values" if bias is not None else "no bias")]
    forward = ["y[o] = Σ_i x[i]·w[o,i]" + (" + b[o]" if bias is not None else "")]
    ours_y = w @ x + (bias if bias is not None else 0.0)
    for o in range(n_out):
        syms = [f"{index('x', (i,))}·{index('w', (o, i))}" for i in range(n_in)]
        vals = [f"{factor(x[i])}·{factor(w[o, i])}" for i in range(n_in)]
        if bias is not None:
            syms.append(index("b", (o,)))
            vals.append(number(bias[o]))
        forward.append(term_equation(index('y', (o,)), syms, join_sum(vals), number(y[o])))
    engine.agree("y", ours_y, y)
    result = Trace(kind, y=y)
    sections = [("setup", setup), ("forward", forward)]
    if dy_full is not None:
        dw = grads["weight"]
        weights = ["dW[o,i] = x[i]·dy[o]  (each dense weight is used once per sample: one term)"]
        for o in range(n_out):
            for i in range(n_in):
                weights.append(equation(index('dW', (o, i)), f"{index('x', (i,))}·{index('dy', (o,))}",
                                        f"{factor(x[i])}·{factor(dy_full[o])}", number(dw[o, i])))
        engine.agree("dW", np.outer(dy_full, x), dw)
        sections.append(("backward: weight gradients", weights))
        result.dw = dw
        if bias is not None:
            db = grads["bias"]
            sections.append(("backward: bias gradients", ["db[o] = dy[o]"] + [
                equation(index('db', (o,)), index('dy', (o,)), number(db[o])) for o in range(n_out)]))
            engine.agree("db", dy_full, db)
            result.db = db
        inputs = ["dx[i] = Σ_o w[o,i]·dy[o]"]
        for i in range(n_in):
            syms = [f"{index('w', (o, i))}·{index('dy', (o,))}" for o in range(n_out)]
            vals = [f"{factor(w[o, i])}·{factor(dy_full[o])}" for o in range(n_out)]
            inputs.append(term_equation(index('dx', (i,)), syms, join_sum(vals), number(dx[i])))
        engine.agree("dx", w.T @ dy_full, dx)
        sections.append(("backward: input gradients", inputs))
        result.dx = dx
    result.sections = sections
    return result
