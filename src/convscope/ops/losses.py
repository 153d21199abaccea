"""Loss functions (mean reduction, as PyTorch's defaults) and a small stateful Loss API.

Notation
--------
N batch size, K classes, z logits ``(N, K)``, t integer labels ``(N,)`` in [0, K),
p = softmax(z) along the class axis, ŷ prediction and y target (equal shapes, M elements).

Softmax cross-entropy
    L = (1/N)·Σ_n −log p[n, t_n] = (1/N)·Σ_n (logsumexp(z_n) − z[n, t_n])
    dL/dz = (p − onehot(t)) / N
  The log-sum-exp form never takes the log of an underflowed 0, so large logits are safe.

Mean squared error
    L = (1/M)·Σ (ŷ − y)²
    dL/dŷ = 2·(ŷ − y) / M

Functions return ``(loss as a Python float, gradient with the prediction's dtype)``. The
classes keep the gradient of the last ``forward`` so a training loop can write
``loss = criterion.forward(logits, labels); model.backward(criterion.backward())``.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ..errors import ConvscopeError, format_count
from .activations import log_softmax


def _as_float_array(name: str, value) -> np.ndarray:
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.floating):
        raise ConvscopeError(f"{name} must be a floating-point array, got dtype {array.dtype}; "
                             f"convert it with .astype(np.float32)")
    return array


def _check_labels(labels, n: int, k: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ConvscopeError(f"cross-entropy expects one label per sample, shape ({n},), got shape "
                             f"{labels.shape}; pass class indices, not one-hot rows")
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise ConvscopeError("cross-entropy expects whole-number class indices, got fractional or "
                                 "non-finite labels; pass integer class indices such as 0, 1, 2")
        labels = labels.astype(np.int64)
    elif labels.dtype.kind not in "iu":
        raise ConvscopeError(f"cross-entropy expects integer class indices, got dtype {labels.dtype}; "
                             "convert the labels with .astype(np.int64)")
    if labels.size:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= k:
            bad = low if low < 0 else high
            raise ConvscopeError(f"cross-entropy labels must be in [0, {k - 1}] for {format_count(k)} "
                                 f"classes, got {bad}; give the model's last layer as many outputs as "
                                 "there are classes, or remap the labels")
    return labels.astype(np.int64, copy=False)


def softmax_cross_entropy(logits, labels) -> Tuple[float, np.ndarray]:
    """Mean cross-entropy of ``softmax(logits)`` against integer ``labels``, and dL/dlogits.

    Equals ``torch.nn.functional.cross_entropy(logits, labels)`` (mean reduction).
    """
    logits = _as_float_array("logits", logits)
    if logits.ndim != 2:
        raise ConvscopeError(f"cross-entropy expects logits of shape (N, classes), got shape "
                             f"{logits.shape}; add flatten and a linear layer with one output per class")
    n, k = logits.shape
    if n == 0:
        raise ConvscopeError("cross-entropy needs at least one sample, got an empty batch")
    labels = _check_labels(labels, n, k)
    # Computed in float64: the batch is small next to the model, and it keeps the loss exact.
    log_p = log_softmax(logits.astype(np.float64), axis=1)
    rows = np.arange(n)
    loss = -float(np.mean(log_p[rows, labels]))
    grad = np.exp(log_p)
    grad[rows, labels] -= 1.0
    grad /= n
    return loss, grad.astype(logits.dtype, copy=False)


def mse(pred, target) -> Tuple[float, np.ndarray]:
    """Mean squared error and dL/dpred. Equals ``torch.nn.functional.mse_loss`` (mean)."""
    pred = _as_float_array("prediction", pred)
    target = np.asarray(target)
    if target.dtype.kind not in "biuf":
        raise ConvscopeError(f"mse expects a numeric target, got dtype {target.dtype}; "
                             "convert it with .astype(np.float32)")
    if pred.shape != target.shape:
        raise ConvscopeError(f"mse expects a target of the prediction's shape {pred.shape}, got "
                             f"{target.shape}; reshape the target (no broadcasting is done)")
    if pred.size == 0:
        raise ConvscopeError("mse needs at least one value, got empty arrays")
    diff = pred.astype(np.float64) - target.astype(np.float64)
    loss = float(np.mean(diff * diff))
    grad = (2.0 / diff.size) * diff
    return loss, grad.astype(pred.dtype, copy=False)


class Loss:
    """A loss with memory of its last call: ``forward(pred, target) -> float`` then
    ``backward() -> dL/dpred``. Subclasses set ``name`` and ``_compute``."""

    name = ""

    def __init__(self):
        self._grad: Optional[np.ndarray] = None

    def _compute(self, pred, target) -> Tuple[float, np.ndarray]:
        raise NotImplementedError

    def forward(self, pred, target) -> float:
        loss, self._grad = self._compute(pred, target)
        return loss

    __call__ = forward

    def backward(self) -> np.ndarray:
        """dL/dpred of the last ``forward`` (mean reduction)."""
        if self._grad is None:
            raise ConvscopeError(f"{self.name}: backward called before forward; call "
                                 "loss.forward(prediction, target) first")
        return self._grad

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy on raw logits ``(N, K)`` with integer labels ``(N,)``: the
    model's last layer should NOT apply softmax (as in ``torch.nn.CrossEntropyLoss``)."""

    name = "cross_entropy"

    def _compute(self, pred, target):
        return softmax_cross_entropy(pred, target)


class MSELoss(Loss):
    """Mean squared error between equal-shaped prediction and target."""

    name = "mse"

    def _compute(self, pred, target):
        return mse(pred, target)


LOSSES = {"cross_entropy": CrossEntropyLoss, "mse": MSELoss}


def get_loss(name: str) -> Loss:
    """A fresh loss by name: ``"cross_entropy"`` or ``"mse"``."""
    try:
        return LOSSES[name]()
    except KeyError:
        raise ConvscopeError(f"unknown loss {name!r}; choose one of {', '.join(sorted(LOSSES))}") from None
