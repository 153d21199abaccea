"""Run one engine layer in float64 on one sample, so a trace reports the engine's numbers.

The trace derives every number again from its index sets and :func:`agree` checks the two
match; a mismatch is a bug in one of them, never a user error.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np


def run(layer, x: np.ndarray, params: Dict[str, np.ndarray], dy: Optional[np.ndarray]
        ) -> Tuple[np.ndarray, Dict[str, np.ndarray], Optional[np.ndarray]]:
    """Forward ``x`` (one sample, no batch axis) through ``layer`` with ``params`` loaded;
    if ``dy`` is given, run backward too. Returns ``(y, {param name: grad}, dx)`` without the
    batch axis."""
    layer.build(x.shape, seed=0, dtype=np.float64)
    if params:
        layer.load_state_dict({k: np.asarray(v, dtype=np.float64) for k, v in params.items()})
    y = layer.forward(x[None].astype(np.float64), train=True)[0]
    if dy is None:
        return y, {}, None
    dx = layer.backward(np.asarray(dy, dtype=np.float64)[None])[0]
    grads = {name: p.grad.copy() for name, p in layer.named_parameters()}
    return y, grads, dx


def agree(what: str, ours: np.ndarray, engine: np.ndarray) -> None:
    """Raise if the trace's own sums differ from the engine's result (beyond rounding)."""
    ours, engine = np.asarray(ours, dtype=np.float64), np.asarray(engine, dtype=np.float64)
    if ours.shape != engine.shape:
        raise RuntimeError(f"trace bug: {what} has shape {ours.shape} in the trace but "
                           f"{engine.shape} in the engine")
    scale = max(1.0, float(np.max(np.abs(engine), initial=0.0)))
    if not np.allclose(ours, engine, rtol=1e-9, atol=1e-12 * scale):
        raise RuntimeError(f"trace bug: the trace's {what} {ours.tolist()} differs from the "
                           f"engine's {engine.tolist()}")
