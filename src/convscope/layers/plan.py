"""Inference plans: a chain of layers run for one input shape with nothing decided twice.

An inference pass through ``Layer.forward`` checks its input, works out output sizes and
chooses a convolution path in every layer on every call; at batch 1 those checks cost more
than the arithmetic (LeNet-5: 0.31 ms a call, of which the numbers take 0.12). A plan asks each
layer once, for the exact input shape, for its :meth:`~convscope.layers.base.Layer.inference_step`
(the same arithmetic with the checks done) and runs the steps in order; a layer without a step
is called through its ``forward``. Steps write their outputs into buffers of their own, made
with the plan and rewritten by every call (a fresh 1 MB array each call costs page faults:
LeNet-5 at batch 64 took 5.4 ms a pass where its steps alone took 3.2); the plan returns a copy
of the last one. Plans are kept per model for the last few input shapes and
dtypes, and made again when the model is rebuilt or the default convolution path changes.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from ..ops.conv import get_default_path
from ..ops.workspace import PLAN_BUFFERS

#: Input shapes (with dtype and convolution path) whose plans a model keeps.
MAX_PLANS = 4

Step = Callable[[np.ndarray], np.ndarray]


def descendants(layer) -> List:
    """Every layer below ``layer`` (children, their children, ...), in order."""
    found = []
    for _, child in layer.children():
        found.append(child)
        found.extend(descendants(child))
    return found


def chain_step(layers, x_shape: Tuple[int, ...]) -> Step:
    """One step running ``layers`` in sequence on batches of shape ``x_shape``."""
    steps: List[Step] = []
    shape = tuple(x_shape)
    for layer in layers:
        step = layer.inference_step(shape)
        if step is None:
            step = _forward_of(layer)
        steps.append(step)
        shape = (shape[0],) + tuple(layer.output_shape(shape[1:]))

    def run(x: np.ndarray) -> np.ndarray:
        for step in steps:
            x = step(x)
        return x
    return run


def _forward_of(layer) -> Step:
    return lambda x: layer.forward(x, False)


def plan_for(model, x: np.ndarray) -> Optional[Step]:
    """The model's plan for inputs shaped and typed like ``x``, made on first use; None while
    some layer below the model has its ``forward`` replaced on the instance (a wrapper that
    records or changes what the layer computes, as the explorer's are): the pass must then go
    through every ``forward``. Running a plan leaves every layer below the model without a
    backward cache, as an inference pass through ``forward`` does (a cache left by an earlier
    training pass is dropped)."""
    plans: Optional[Dict[tuple, "_Plan"]] = model.__dict__.get("_plans")
    if plans is None:
        plans = model.__dict__["_plans"] = {}
    key = (x.shape, x.dtype.str, get_default_path())
    plan = plans.get(key)
    if plan is None:
        if len(plans) >= MAX_PLANS:
            plans.clear()
        buffers: List[np.ndarray] = []
        token = PLAN_BUFFERS.set(buffers)
        try:
            step = model.inference_step(x.shape)
        finally:
            PLAN_BUFFERS.reset(token)
        plan = plans[key] = _Plan(step, descendants(model), buffers)
    for layer in plan.layers:   # a plain loop: any() over a generator costs 2 µs more here
        if "forward" in layer.__dict__:
            return None
    return plan.run


class _Plan:
    __slots__ = ("step", "layers", "buffers")

    def __init__(self, step: Step, layers: List, buffers: List[np.ndarray]):
        self.step, self.layers, self.buffers = step, layers, buffers

    def run(self, x: np.ndarray) -> np.ndarray:
        y = self.step(x).copy()  # the steps' buffers are rewritten by the next call
        for layer in self.layers:
            layer._cache = None
        return y


def plan_bytes(model) -> int:
    """Bytes of the buffers the model's plans keep between calls."""
    return sum(b.nbytes for plan in model.__dict__.get("_plans", {}).values() for b in plan.buffers)


def forget_plans(model) -> None:
    """Drop the model's plans (after a rebuild: shapes, buffers and parameters are new)."""
    model.__dict__.pop("_plans", None)
