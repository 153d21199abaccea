"""Classification metrics.

Notation
--------
N samples, K classes, z logits ``(N, K)``, t true labels, ŷ = argmax_k z[n, k] predictions.

    accuracy        = (1/N) · Σ_n [ŷ_n = t_n]
    confusion[i, j] = #{n : t_n = i and ŷ_n = j}      (rows: truth, columns: prediction)

so the diagonal holds the correct predictions and ``confusion.sum() == N``.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConvscopeError
from ..ops.activations import softmax as _softmax


def predictions(logits) -> np.ndarray:
    """Index of the largest logit per row (ties go to the lowest index, as numpy.argmax)."""
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise ConvscopeError(f"predictions need logits of shape (N, classes), got {logits.shape}")
    return logits.argmax(axis=1)


def accuracy(logits, labels) -> float:
    """Fraction of rows whose largest logit is at the true label."""
    labels = np.asarray(labels)
    pred = predictions(logits)
    if pred.shape != labels.shape:
        raise ConvscopeError(f"accuracy needs one label per row ({pred.shape[0]}), got labels of "
                             f"shape {labels.shape}")
    return float(np.mean(pred == labels)) if labels.size else 0.0


def confusion_matrix(labels, predicted, num_classes: int) -> np.ndarray:
    """``(K, K)`` int64 counts: row = true class, column = predicted class."""
    labels, predicted = np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    if labels.shape != predicted.shape:
        raise ConvscopeError(f"confusion matrix needs equal-length labels and predictions, got "
                             f"{labels.shape} and {predicted.shape}")
    for name, values in (("labels", labels), ("predictions", predicted)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ConvscopeError(f"confusion matrix {name} must be in 0..{num_classes - 1}, got "
                                 f"{int(values.min())}..{int(values.max())}")
    flat = np.bincount(labels * num_classes + predicted, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def softmax(logits) -> np.ndarray:
    """Row-wise softmax in float64 (:func:`convscope.ops.activations.softmax`: shifted by the
    row maximum so exp never overflows)."""
    return _softmax(np.asarray(logits, dtype=np.float64), axis=1)


def precision_recall(matrix: np.ndarray):
    """Per class c of a confusion matrix M (rows true, columns predicted):
    precision_c = M[c, c] / Σ_r M[r, c], recall_c = M[c, c] / Σ_k M[c, k]; None where the
    denominator is 0 (never predicted / absent)."""
    matrix = np.asarray(matrix)
    hits = np.diag(matrix)
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = [float(h / p) if p else None for h, p in zip(hits, predicted)]
    recall = [float(h / a) if a else None for h, a in zip(hits, actual)]
    return precision, recall
