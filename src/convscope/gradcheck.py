"""Finite-difference gradient checking, for our tests and for users' own layers.

For a layer with output y = f(x; θ), pick a random upstream gradient g and the scalar
L = Σ y·g. Backward gives dL/dx and dL/dθ; central differences give
dL/dv ≈ (L(v + ε) − L(v − ε)) / 2ε for every entry v. Both must agree to
|analytic − numeric| <= atol + rtol·|numeric|. Run it in float64.
"""
from __future__ import annotations

from typing import Callable, Dict, Sequence, Union

import numpy as np

from .errors import ConvscopeError
from .layers.base import Layer


def _numeric_grad(loss: Callable[[], float], array: np.ndarray, eps: float) -> np.ndarray:
    grad = np.zeros(array.shape, dtype=np.float64)
    flat = array.reshape(-1)  # a view: writes go to the live array
    g = grad.reshape(-1)
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        up = loss()
        flat[i] = original - eps
        down = loss()
        flat[i] = original
        g[i] = (up - down) / (2 * eps)
    return grad


def _compare(name: str, analytic: np.ndarray, numeric: np.ndarray, atol: float, rtol: float) -> float:
    analytic = np.asarray(analytic, dtype=np.float64)
    if analytic.shape != numeric.shape:
        raise ConvscopeError(f"gradcheck: {name} has shape {analytic.shape}, expected {numeric.shape}")
    error = np.abs(analytic - numeric)
    bad = error > atol + rtol * np.abs(numeric)
    if bad.any():
        i = np.unravel_index(np.argmax(error), error.shape)
        raise ConvscopeError(f"gradcheck: {name} differs from finite differences at index {tuple(int(v) for v in i)}: "
                             f"analytic {analytic[i]:.6g}, numeric {numeric[i]:.6g}")
    return float(error.max()) if error.size else 0.0


def gradcheck(fn_or_layer: Union[Layer, Callable], inputs: Union[np.ndarray, Sequence[np.ndarray]],
              backward: Callable | None = None, *, eps: float = 1e-6, atol: float = 1e-6,
              rtol: float = 1e-5, seed: int = 0, train: bool = False) -> Dict[str, float]:
    """Check analytic gradients against central finite differences.

    * ``gradcheck(layer, x)``: ``layer`` is built (on ``x.shape[1:]`` in float64 if it is not
      yet); checks dL/dx and every Parameter.grad. ``train`` is passed to forward (a layer
      whose training forward is random, such as dropout, must fix its randomness first).
    * ``gradcheck(fn, inputs, backward)``: ``fn(*inputs) -> y`` and
      ``backward(dy, *inputs) -> tuple of dL/d(input)`` for plain functions.

    Returns ``{name: max abs error}``; raises :class:`ConvscopeError` naming the first
    entry that disagrees.
    """
    rng = np.random.default_rng(seed)
    if isinstance(fn_or_layer, Layer):
        layer = fn_or_layer
        x = np.array(inputs[0] if isinstance(inputs, (list, tuple)) else inputs, dtype=np.float64)
        if not layer.built:
            layer.build(x.shape[1:], seed=seed, dtype=np.float64)
        if layer.dtype != np.float64:
            raise ConvscopeError("gradcheck needs a float64 layer: build it with dtype=np.float64")
        y = layer.forward(x, train=train)
        g = rng.standard_normal(y.shape)

        def loss() -> float:
            return float(np.sum(layer.forward(x, train=train) * g))

        layer.forward(x, train=train)
        dx = layer.backward(g)
        analytic = {"x": dx, **{p.name: p.grad.copy() for p in layer.parameters()}}
        report = {"x": _compare("dL/dx", dx, _numeric_grad(loss, x, eps), atol, rtol)}
        for p in layer.parameters():
            numeric = _numeric_grad(loss, p.value, eps)
            report[p.name] = _compare(f"dL/d{p.name}", analytic[p.name], numeric, atol, rtol)
        return report

    if backward is None:
        raise ConvscopeError("gradcheck(fn, inputs) needs backward(dy, *inputs) for a plain function")
    arrays = [np.array(a, dtype=np.float64) for a in (inputs if isinstance(inputs, (list, tuple)) else [inputs])]
    y = np.asarray(fn_or_layer(*arrays))
    g = rng.standard_normal(y.shape)
    grads = backward(g, *arrays)
    if not isinstance(grads, (list, tuple)):
        grads = (grads,)
    report = {}
    for i, (array, grad) in enumerate(zip(arrays, grads)):
        numeric = _numeric_grad(lambda: float(np.sum(fn_or_layer(*arrays) * g)), array, eps)
        report[f"input{i}"] = _compare(f"dL/d(input {i})", grad, numeric, atol, rtol)
    return report
