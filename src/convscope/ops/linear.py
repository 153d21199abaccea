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


def linear_forward(x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray] = None,
                   out: Optional[np.ndarray] = None) -> Tuple[np.ndarray, tuple]:
    """``y = x·Wᵀ + b`` over the last axis. Returns ``(y, cache)`` for :func:`linear_backward`.

    Every leading position is a row of one GEMM ``(rows, I)·(I, O)``: Wᵀ is a transposed view
    (BLAS reads it as is) and the bias is added in place, so nothing else is copied. ``out``:
    a C-contiguous (rows, O) array to write y into, else y is fresh."""
    rows = x.reshape(-1, x.shape[-1])
    y = np.matmul(rows, weight.T, out=out)
    if bias is not None:
        np.add(y, bias, out=y)
    return y.reshape(x.shape[:-1] + (weight.shape[0],)), (x, weight, bias is not None)


def linear_backward(dy: np.ndarray, cache: tuple) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Gradients ``(dx, dW, db)`` of a linear map; ``db`` is ``None`` without a bias."""
    x, weight, has_bias = cache
    dy = np.asarray(dy)
    dw = np.empty(weight.shape, np.result_type(dy, x))
    db = np.empty(dy.shape[-1], dy.dtype) if has_bias else None
    dx = linear_backward_into(dy, cache, dw, db)
    return dx, dw, db


def linear_backward_into(dy: np.ndarray, cache: tuple, weight_grad: np.ndarray,
                         bias_grad: Optional[np.ndarray] = None) -> np.ndarray:
    """:func:`linear_backward` writing dW into ``weight_grad`` and db into ``bias_grad``
    (overwritten, e.g. the Parameters' ``grad`` arrays) straight from the GEMM and the sum;
    returns dx."""
    x, weight, has_bias = cache
    rows_dy = dy.reshape(-1, dy.shape[-1])   # (rows, O)
    rows_x = x.reshape(-1, x.shape[-1])      # (rows, I)
    dx = np.matmul(rows_dy, weight).reshape(x.shape[:-1] + (weight.shape[1],))
    _matmul_into(rows_dy.T, rows_x, weight_grad)
    if has_bias and bias_grad is not None:
        if bias_grad.dtype == rows_dy.dtype:
            np.sum(rows_dy, axis=0, out=bias_grad)
        else:
            bias_grad[...] = rows_dy.sum(axis=0)
    return dx


def _matmul_into(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    if out.flags.c_contiguous and out.dtype == np.result_type(a, b):
        np.matmul(a, b, out=out)
    else:
        out[...] = a @ b
