"""Traces of relu, dropout, avgpool2d, batchnorm2d (training and inference) and softmax with
cross-entropy: forward and backward term by term, every number the engine's own (float64).

Notation: x input, y output, dy = dL/dy given, dx = dL/dx.

* relu:        ``y[t] = max(x[t], 0)``; ``dx[t] = dy[t]·1[x[t] > 0]``.
* dropout:     ``y[t] = x[t]·m[t]/(1 − p)`` with the engine's mask m (seeded); ``dx[t] = dy[t]·m[t]/(1 − p)``.
* avgpool2d:   ``y[c,i,j] = (1/(k_h·k_w))·Σ_window x`` (padding counts as 0 in the divisor, PyTorch's
  default); ``dx[c,t] = Σ_{windows containing t} dy[c,i,j]/(k_h·k_w)``.
* batchnorm2d (training, over the m = N·H·W values of each channel c):
  ``μ_c = Σx/m``, ``σ²_c = Σ(x − μ_c)²/m``, ``x̂ = (x − μ_c)/√(σ²_c + ε)``, ``y = γ_c·x̂ + β_c``;
  ``dβ_c = Σ dy``, ``dγ_c = Σ dy·x̂``, ``dx = γ_c/√(σ²_c + ε)·(dy − dβ_c/m − x̂·dγ_c/m)``.
  Inference uses the running mean and variance instead: ``dx = γ_c·dy/√(var_c + ε)``.
* softmax + cross-entropy (one sample, K logits z, label t):
  ``p_k = e^(z_k − max z)/Σ_j e^(z_j − max z)``, ``L = −log p_t``, ``dz_k = p_k − 1[k = t]``.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from ..equations import equation
from ..errors import ConvscopeError, format_shape
from . import engine
from .result import Trace
from .values import MINUS, factor, index, join_sum, number, parse_values


def _cells(shape):
    return list(itertools.product(*(range(s) for s in shape)))


def _dy(dy, shape, kind):
    if dy is None:
        return None
    dy = parse_values(dy, "--dy")
    if dy.shape != tuple(shape):
        raise ConvscopeError(f"{kind}: --dy has shape {format_shape(dy.shape)} but y has shape "
                             f"{format_shape(shape)}; give one dy per output value")
    return dy


def trace_relu(x, dy=None) -> Trace:
    """ReLU on any shape of values."""
    from ..layers import ReLU

    x = parse_values(x, "--x")
    dy = _dy(dy, x.shape, "relu")
    y, _, dx = engine.run(ReLU(), x, {}, dy)
    forward = ["y[t] = max(x[t], 0)"]
    forward += [equation(index("y", t), f"max({index('x', t)}, 0)", f"max({number(x[t])}, 0)", number(y[t]))
                for t in _cells(x.shape)]
    engine.agree("y", np.maximum(x, 0), y)
    sections = [("setup", [f"relu: x {format_shape(x.shape)}"]), ("forward", forward)]
    result = Trace("relu", y=y)
    if dy is not None:
        backward = ["dx[t] = dy[t]·1[x[t] > 0] (the gradient at exactly 0 is 0, as in PyTorch)"]
        backward += [equation(index("dx", t), f"{index('dy', t)}·1[{index('x', t)} > 0]",
                              f"{factor(dy[t])}·{int(x[t] > 0)}", number(dx[t])) for t in _cells(x.shape)]
        engine.agree("dx", dy * (x > 0), dx)
        sections.append(("backward: input gradients", backward))
        result.dx = dx
    result.sections = sections
    return result


def trace_dropout(x, p: float, dy=None, seed: int = 0) -> Trace:
    """Inverted dropout in training mode; the mask is the engine's, drawn from ``seed``."""
    from ..layers import Dropout

    x = parse_values(x, "--x")
    layer = Dropout(p)
    dy = _dy(dy, x.shape, "dropout")
    layer.build(x.shape, seed=int(seed), dtype=np.float64)
    y = layer.forward(x[None], train=True)[0]
    mask = layer._cache[0]
    mask = np.ones_like(x) if mask is None else np.broadcast_to(np.asarray(mask)[0], x.shape)
    keep = 1.0 - layer.p
    scale = 0.0 if keep == 0 else 1.0 / keep
    setup = [f"dropout: x {format_shape(x.shape)}, p = {number(layer.p)}, seed {seed}; mask m from the engine "
             f"(1 = kept), kept values scaled by 1/(1 {MINUS} p) = {number(scale)}"]
    forward = ["y[t] = x[t]·m[t]/(1 − p)"]
    forward += [equation(index("y", t), f"{index('x', t)}·{index('m', t)}/(1 {MINUS} p)",
                         f"{factor(x[t])}·{int(mask[t] != 0)}·{number(scale)}", number(y[t]))
                for t in _cells(x.shape)]
    engine.agree("y", x * (mask != 0) * scale, y)
    sections = [("setup", setup), ("forward", forward)]
    result = Trace("dropout", y=y)
    if dy is not None:
        dx = layer.backward(dy[None])[0]
        backward = ["dx[t] = dy[t]·m[t]/(1 − p) (the same mask)"]
        backward += [equation(index("dx", t), f"{index('dy', t)}·{index('m', t)}/(1 {MINUS} p)",
                              f"{factor(dy[t])}·{int(mask[t] != 0)}·{number(scale)}", number(dx[t]))
                     for t in _cells(x.shape)]
        engine.agree("dx", dy * (mask != 0) * scale, dx)
        sections.append(("backward: input gradients", backward))
        result.dx = dx
    result.sections = sections
    return result


def _over(terms: str, count: int, area: int) -> str:
    return f"({terms})/{area}" if count > 1 else f"{terms}/{area}"


def trace_avgpool2d(x, kernel_size, dy=None, stride=None, padding=0) -> Trace:
    """2-D average pooling of C×H×W (or H×W) values; padding counts in the divisor."""
    from ..layers import AvgPool2d
    from ..shapes import as_tuple, conv_output_size

    x = parse_values(x, "--x")
    if x.ndim not in (2, 3):
        raise ConvscopeError(f"avgpool2d: --x must have shape H×W or C×H×W, got {format_shape(x.shape)}")
    has_c = x.ndim == 3
    xf = x if has_c else x[None]
    k = as_tuple(kernel_size, 2, "--kernel-size")
    s = as_tuple(stride if stride is not None else k, 2, "--stride")
    p = as_tuple(padding, 2, "--padding", minimum=0)
    n = xf.shape[1:]
    out = tuple(conv_output_size(n[a], k[a], s[a], p[a], p[a], 1) for a in range(2))
    if min(out) < 1:
        raise ConvscopeError(f"avgpool2d: a {k[0]}×{k[1]} window does not fit the padded {n[0]}×{n[1]} input")
    dyf = _dy(dy, xf.shape[:1] + out if has_c else out, "avgpool2d")
    dyf = None if dyf is None else (dyf if has_c else dyf[None])
    y, _, dx = engine.run(AvgPool2d(k, stride=s, padding=p), xf, {}, dyf)
    area = k[0] * k[1]
    name = (lambda pre, c, pos: index(pre, ((c,) if has_c else ()) + tuple(pos)))
    reads = {}
    forward = [f"y[c,i,j] = (1/(k_h·k_w))·Σ over the window of x = Σ/{area} (padding adds 0 and counts)"]
    ours = np.zeros_like(y)
    for c in range(xf.shape[0]):
        for i in _cells(out):
            inside = [t for t in ((i[0] * s[0] + u - p[0], i[1] * s[1] + v - p[1])
                                  for u in range(k[0]) for v in range(k[1])) if 0 <= t[0] < n[0] and 0 <= t[1] < n[1]]
            reads[(c,) + i] = inside
            ours[(c,) + i] = sum(xf[(c,) + t] for t in inside) / area
            forward.append(equation(name("y", c, i), f"({' + '.join(name('x', c, t) for t in inside)})/{area}",
                                    f"({join_sum([number(xf[(c,) + t]) for t in inside])})/{area}",
                                    number(y[(c,) + i])))
    engine.agree("y", ours, y)
    sections = [("setup", [f"avgpool2d: x {format_shape(xf.shape)} (C×H×W), kernel {k[0]}×{k[1]}, stride "
                           f"{s[0]}×{s[1]}, padding {p[0]}×{p[1]}; y {format_shape((xf.shape[0],) + out)}"]),
                ("forward", forward)]
    result = Trace("avgpool2d", y=y if has_c else y[0])
    if dyf is not None:
        backward = [f"dx[c,t] = Σ over the windows that read x[c,t] of dy[c,i,j]/{area}"]
        ours_dx = np.zeros_like(dx)
        for c in range(xf.shape[0]):
            for t in _cells(n):
                users = [i for i in _cells(out) if t in reads[(c,) + i]]
                ours_dx[(c,) + t] = sum(dyf[(c,) + i] for i in users) / area
                if not users:
                    backward.append(f"{name('dx', c, t)} = 0  (no window reads it)")
                    continue
                backward.append(equation(name("dx", c, t), _over(" + ".join(name("dy", c, i) for i in users),
                                                                 len(users), area),
                                         _over(join_sum([number(dyf[(c,) + i]) for i in users]), len(users), area),
                                         number(dx[(c,) + t])))
        engine.agree("dx", ours_dx, dx)
        sections.append(("backward: input gradients", backward))
        result.dx = dx if has_c else dx[0]
    result.sections = sections
    return result


def trace_batchnorm2d(x, gamma=None, beta=None, dy=None, train: bool = True, eps: float = 1e-5,
                      running_mean=None, running_var=None) -> Trace:
    """Batch norm of N×C×H×W values (C×H×W = one sample): per-channel statistics in training,
    the running ones (default 0 and 1) at inference."""
    from ..layers import BatchNorm2d

    x = parse_values(x, "--x")
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ConvscopeError(f"batchnorm2d: --x must have shape N×C×H×W or C×H×W, got {format_shape(x.shape)}")
    n_, c_, h_, w_ = x.shape
    m = n_ * h_ * w_

    def per_channel(values, default, option):
        if values is None:
            return np.full(c_, float(default))
        v = parse_values(values, option).reshape(-1)
        if v.size != c_:
            raise ConvscopeError(f"batchnorm2d: {option} needs one value per channel ({c_}), got {v.size}")
        return v

    g, b = per_channel(gamma, 1, "--w"), per_channel(beta, 0, "--b")
    rm, rv = per_channel(running_mean, 0, "--running-mean"), per_channel(running_var, 1, "--running-var")
    if train and m < 2:
        raise ConvscopeError("batchnorm2d in training needs more than one value per channel (N·H·W > 1)")
    dyv = _dy(dy, x.shape if dy is None or parse_values(dy, "--dy").ndim == 4 else x.shape[1:], "batchnorm2d")
    if dyv is not None and dyv.ndim == 3:
        dyv = dyv[None]
    layer = BatchNorm2d(eps=eps)
    layer.build(x.shape[1:], seed=0, dtype=np.float64)
    layer.load_state_dict(dict(layer.state_dict(), weight=g, bias=b, running_mean=rm, running_var=rv))
    y = layer.forward(x, train=bool(train))
    cells = list(itertools.product(range(n_), range(h_), range(w_)))
    setup = [f"batchnorm2d ({'training: batch statistics' if train else 'inference: running statistics'}): "
             f"x {format_shape(x.shape)} (N×C×H×W), ε = {number(eps)}, m = N·H·W = {m} values per channel"]
    forward, mus, invs, xhat = [], np.zeros(c_), np.zeros(c_), np.zeros_like(x)
    for c in range(c_):
        vals = [x[i, c, a, bb] for i, a, bb in cells]
        if train:
            mu = sum(vals) / m
            var = sum((v - mu) ** 2 for v in vals) / m
            forward.append(equation(f"μ[{c}] = Σ x[:,{c}]/m", f"({join_sum([number(v) for v in vals])})/{m}",
                                    number(mu)))
            forward.append(equation(f"σ²[{c}] = Σ (x − μ[{c}])²/m",
                                    f"({' + '.join(f'({number(v)} {MINUS} {number(mu)})²' for v in vals)})/{m}",
                                    number(var)))
        else:
            mu, var = rm[c], rv[c]
            forward.append(f"μ[{c}] = running_mean[{c}] = {number(mu)}, σ²[{c}] = running_var[{c}] = {number(var)}")
        inv = 1.0 / math.sqrt(var + eps)
        mus[c], invs[c] = mu, inv
        for i, a, bb in cells:
            t = (i, c, a, bb)
            xhat[t] = (x[t] - mu) * inv
            forward.append(equation(index("y", t), f"γ[{c}]·({index('x', t)} − μ[{c}])/√(σ²[{c}] + ε) + β[{c}]",
                                    f"{factor(g[c])}·({number(x[t])} {MINUS} {factor(mu)})/√({number(var)} + "
                                    f"{number(eps)}) + {factor(b[c])}", number(y[t])))
    engine.agree("y", g[None, :, None, None] * xhat + b[None, :, None, None], y)
    sections = [("setup", setup), ("forward", forward)]
    result = Trace("batchnorm2d", y=y)
    if dyv is not None:
        dx = layer.backward(dyv)
        grads = {name: p.grad.copy() for name, p in layer.named_parameters()}
        back_p, back_x = [], []
        ours_dx = np.zeros_like(x)
        for c in range(c_):
            dys = [dyv[(i, c, a, bb)] for i, a, bb in cells]
            dbeta = sum(dys)
            dgamma = sum(dyv[(i, c, a, bb)] * xhat[(i, c, a, bb)] for i, a, bb in cells)
            back_p.append(equation(f"dβ[{c}] = Σ dy[:,{c}]", join_sum([number(v) for v in dys]), number(grads["bias"][c])))
            back_p.append(equation(f"dγ[{c}] = Σ dy[:,{c}]·x̂[:,{c}]",
                                   join_sum([f"{factor(dyv[(i, c, a, bb)])}·{factor(xhat[(i, c, a, bb)])}"
                                             for i, a, bb in cells]), number(grads["weight"][c])))
            engine.agree(f"dβ[{c}]", dbeta, grads["bias"][c])
            engine.agree(f"dγ[{c}]", dgamma, grads["weight"][c])
            for i, a, bb in cells:
                t = (i, c, a, bb)
                if train:
                    ours_dx[t] = g[c] * invs[c] * (dyv[t] - dbeta / m - xhat[t] * dgamma / m)
                    back_x.append(equation(index("dx", t), f"γ[{c}]/√(σ²[{c}] + ε)·({index('dy', t)} − dβ[{c}]/m − "
                                           f"x̂·dγ[{c}]/m)", f"{factor(g[c])}·{number(invs[c])}·({number(dyv[t])} "
                                           f"{MINUS} {factor(dbeta)}/{m} {MINUS} {factor(xhat[t])}·{factor(dgamma)}/{m})",
                                           number(dx[t])))
                else:
                    ours_dx[t] = g[c] * invs[c] * dyv[t]
                    back_x.append(equation(index("dx", t), f"γ[{c}]·{index('dy', t)}/√(var[{c}] + ε)",
                                           f"{factor(g[c])}·{factor(dyv[t])}·{number(invs[c])}", number(dx[t])))
        engine.agree("dx", ours_dx, dx)
        sections += [("backward: parameter gradients", back_p), ("backward: input gradients", back_x)]
        result.dw, result.db, result.dx = grads["weight"], grads["bias"], dx
    result.sections = sections
    return result


def trace_softmax_cross_entropy(z, label: int) -> Trace:
    """Softmax of one sample's K logits and its cross-entropy against ``label``; backward is
    dL/dz (the loss is the end of the chain, so no dy)."""
    from ..ops.losses import softmax_cross_entropy

    z = parse_values(z, "--x").reshape(-1)
    k = z.size
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= int(label) < k:
        raise ConvscopeError(f"softmax_ce: --label must be a class index from 0 to {k - 1}, got {label!r}")
    t = int(label)
    loss, dz = softmax_cross_entropy(z[None], np.array([t]))
    dz = dz[0]
    top = float(z.max())
    exps = np.exp(z - top)
    total = float(exps.sum())
    probs = exps / total
    forward = [f"max z = {number(top)} (subtracted so no exponential overflows; p is unchanged)"]
    forward += [equation(f"e[{j}] = exp(z[{j}] − max z)", f"exp({number(z[j])} {MINUS} {factor(top)})",
                         number(exps[j])) for j in range(k)]
    forward.append(equation("S = Σ e", join_sum([number(v) for v in exps]), number(total)))
    forward += [equation(f"p[{j}] = e[{j}]/S", f"{number(exps[j])}/{number(total)}", number(probs[j]))
                for j in range(k)]
    forward.append(equation(f"L = −log p[{t}]", f"−log {number(probs[t])}", number(loss)))
    engine.agree("L", -math.log(probs[t]), loss)
    backward = [f"dz[k] = p[k] − 1[k = {t}]"]
    backward += [equation(f"dz[{j}]", f"p[{j}] − {int(j == t)}", f"{number(probs[j])} {MINUS} {int(j == t)}",
                          number(dz[j])) for j in range(k)]
    engine.agree("dz", probs - (np.arange(k) == t), dz)
    result = Trace("softmax_ce", y=np.array(loss), dx=dz)
    result.sections = [("setup", [f"softmax + cross-entropy: z {k} logits, label {t}"]), ("forward", forward),
                       ("backward: logit gradients", backward)]
    return result
