"""Walking a model for the explorer: every layer's input and output for one batch.

This is the only module of the explorer that knows how models are put together, and it
knows little: the analysis report lists every layer (containers included) with its dotted
name, and a layer's output is whatever its ``forward`` returned. :func:`record` temporarily
wraps the ``forward`` (and ``forward_multi``, for merge nodes of a graph) of every layer of
the report on the *instance*, so any container that calls its children (Sequential, Concat,
Residual, Graph) is recorded without being special-cased here; :func:`record_backward` does
the same for ``backward`` (dL/dy at each layer's output).

A layer object used twice (shared weights) has one row per use; its calls are matched to its
rows in the report's order, which is the order a forward pass meets them.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Dict, List, Tuple

import numpy as np

from ..layers.base import Layer


def layer_rows(report) -> Dict[int, List[str]]:
    """``id(layer)`` -> the dotted names of its rows in the report, in order."""
    names: Dict[int, List[str]] = {}
    for row in report.layers:
        if row.layer is not None:
            names.setdefault(id(row.layer), []).append(row.name)
    return names


@contextmanager
def _wrapped(report, methods: Tuple[str, ...], make_wrapper):
    """Wrap ``methods`` of every layer in ``report`` on the instance; restore them after."""
    owners = layer_rows(report)
    layers = {id(r.layer): r.layer for r in report.layers if r.layer is not None}
    patched: List[Tuple[Layer, str]] = []
    counters = {key: 0 for key in owners}
    try:
        for key, layer in layers.items():
            for method in methods:
                original = getattr(layer, method, None)
                if original is None or method in vars(layer):
                    continue
                setattr(layer, method, make_wrapper(original, owners[key], counters, key))
                patched.append((layer, method))
        yield
    finally:
        for layer, method in patched:
            vars(layer).pop(method, None)


def _next_name(names: List[str], counters: Dict[int, int], key: int) -> str:
    index = counters[key]
    counters[key] = index + 1
    return names[index % len(names)]


def record(model: Layer, report, x: np.ndarray, train: bool = False):
    """Run ``model.forward(x)`` and return ``(y, inputs, outputs)``: dicts from each row's
    dotted name to the arrays its layer received and returned (a merge node's input is a
    list of arrays)."""
    inputs: Dict[str, object] = {}
    outputs: Dict[str, np.ndarray] = {}

    def make_wrapper(original, names, counters, key):
        def wrapper(value, *args, **kwargs):
            name = _next_name(names, counters, key)
            inputs[name] = value
            out = original(value, *args, **kwargs)
            outputs[name] = out
            return out
        return wrapper

    with _wrapped(report, ("forward", "forward_multi"), make_wrapper):
        y = model.forward(x, train=train)
    return y, inputs, outputs


def record_backward(model: Layer, report, dy: np.ndarray):
    """Run ``model.backward(dy)`` after a forward; return ``(dx, grads_out)`` where
    ``grads_out[name]`` is dL/dy at that row's output. Rows of a shared layer are matched in
    reverse report order, the order backward meets them."""
    grads: Dict[str, np.ndarray] = {}

    def make_wrapper(original, names, counters, key):
        backwards = list(reversed(names))

        def wrapper(value, *args, **kwargs):
            grads[_next_name(backwards, counters, key)] = value
            return original(value, *args, **kwargs)
        return wrapper

    with _wrapped(report, ("backward", "backward_multi"), make_wrapper):
        dx = model.backward(dy)
    return dx, grads


def leaf_conv_weight(layer: Layer):
    """The layer's ``weight`` and ``bias`` arrays (None when it has none)."""
    params = getattr(layer, "_params", {}) or {}
    w = params.get("weight")
    b = params.get("bias")
    return (None if w is None else w.value), (None if b is None else b.value)
