"""Fully connected (dense) layer maths: an affine map over the last axis.

Notation
--------
N     batch size; ``*`` any extra leading axes (PyTorch's ``(N, *, in)``)
I, O  input and output features (``in_features``, ``out_features``)
x     input ``(N, *, I)``;  W weight ``(O, I)``;  b bias ``(O,)``;  y output ``(N, *, O)``

Forward
    y[..., o] = Σ_i x[..., i]·W[o, i] + b[o]                      (y = x·Wᵀ + b)

Backward, for an upstream gradient dy = dL/dy of shape ``(N, *, O)``
    dx = dy·W                                                      ``(N, *, I)``
    dW = Σ_rows dyᵀ·x   (rows = every leading position, N·Π*)      ``(O, I)``
    db = Σ_rows dy                                                 ``(O,)``

The weight is shared by every row, so its gradient is the sum over rows of the outer
product dy_row ⊗ x_row — the same "sum over every place the weight was used" as in a
convolution, written as one matrix product.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np


def linear_forward(x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray] = None
                   ) -> Tuple[np.ndarray, tuple]:
    """``y = x·Wᵀ + b`` over the last axis. Returns ``(y, cache)`` for :func:`linear_backward`."""
    y = x @ weight.T
    if bias is not None:
        y += bias
    return y, (x, weight, bias is not None)


def linear_backward(dy: np.ndarray, cache: tuple) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Gradients ``(dx, dW, db)`` of a linear map; ``db`` is ``None`` without a bias."""
    x, weight, has_bias = cache
    rows_dy = dy.reshape(-1, dy.shape[-1])   # (rows, O)
    rows_x = x.reshape(-1, x.shape[-1])      # (rows, I)
    dx = dy @ weight
    dw = rows_dy.T @ rows_x
    db = rows_dy.sum(axis=0) if has_bias else None
    return dx, dw, db
