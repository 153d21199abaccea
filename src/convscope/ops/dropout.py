"""Inverted dropout, and stochastic depth (dropout of whole samples).

Notation
--------
x input (any shape), p drop probability, m a mask with m = 1 with probability 1 − p
(independently per element) and 0 otherwise; s = 1 / (1 − p) the keep scale (0 when p = 1).

Forward (training)
    y = x · m · s             so that E[y] = x: the expected activation is unchanged
Forward (inference)
    y = x                     (no scaling needed at test time; that is what "inverted" means)
Backward
    dx = dy · m · s           with the SAME mask as the forward pass (training);  dx = dy (inference)

The cache is the single array ``m·s`` (or ``None`` for the identity), so backward costs one
multiplication and never draws new random numbers.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np


def dropout_forward(x: np.ndarray, p: float, rng: np.random.Generator, train: bool = True
                    ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Drop each element with probability ``p`` and scale survivors by 1/(1 − p) when
    ``train``; the identity otherwise. Returns ``(y, cache)``; the mask comes from ``rng``."""
    if not train or p == 0:
        return x, None
    if p >= 1:
        # PyTorch returns zeros for p = 1; 1/(1 − p) would be infinite.
        return np.zeros_like(x), np.zeros_like(x)
    # Uniforms in the input's precision: float32 draws are half the work of float64 ones,
    # and 2^-24 resolution is far finer than any keep probability needs.
    dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    keep = rng.random(x.shape, dtype=dtype) < dtype.type(1.0 - p)
    scaled_mask = np.multiply(keep, x.dtype.type(1.0 / (1.0 - p)), dtype=x.dtype)
    return np.multiply(x, scaled_mask, dtype=x.dtype), scaled_mask


def dropout_backward(dy: np.ndarray, scaled_mask: Optional[np.ndarray]) -> np.ndarray:
    """``dx = dy · m · s`` with the forward pass's mask (``dy`` itself for the identity)."""
    if scaled_mask is None:
        return dy
    return dy * scaled_mask


def stochastic_depth_forward(x: np.ndarray, p: float, mode: str, rng: np.random.Generator, train: bool = True
                             ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """torchvision.ops.stochastic_depth: in training, keep the whole input of a sample
    (``mode="row"``: one draw per sample) or of the batch (``"batch"``: one draw) with
    probability 1 − p and scale it by 1/(1 − p); zero it otherwise. The identity in eval or
    for p = 0; all zeros for p = 1 (nothing survives, nothing to divide by).

    ``y = x · m · s`` with m of shape (N, 1, ..., 1) or (1, ..., 1); backward is
    :func:`dropout_backward` with the same ``m·s``. Returns ``(y, m·s or None)``."""
    if not train or p == 0:
        return x, None
    survival = 1.0 - p
    shape = (x.shape[0],) + (1,) * (x.ndim - 1) if mode == "row" else (1,) * x.ndim
    keep = rng.random(shape) < survival
    scale = 1.0 / survival if survival > 0 else 0.0
    scaled_mask = (keep * scale).astype(x.dtype)
    return x * scaled_mask, scaled_mask
