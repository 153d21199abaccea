"""The shape rules, in one place.

Layers, the analyser, explanations and error messages all call these functions; none of
them re-derives the output-size formula.

Notation: n input size along one axis, k kernel size, s stride, d dilation,
p_lo / p_hi padding before / after (usually equal).
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple, Union

from .errors import ConvscopeError

IntOrSeq = Union[int, Sequence[int]]


def as_tuple(value: IntOrSeq, ndim: int, name: str, *, minimum: int = 1) -> Tuple[int, ...]:
    """Normalise an int or a sequence to a tuple of ``ndim`` ints, each ``>= minimum``.

    ``as_tuple(5, 2, "kernel_size") == (5, 5)``; errors name the argument and value.
    """
    if isinstance(value, bool):
        raise ConvscopeError(f"{name} must be an integer or a list of {ndim} integers, got {value!r}")
    if isinstance(value, int):
        values = (value,) * ndim
    elif isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        values = tuple(value)
        if len(values) == 1 and ndim > 1:
            values = values * ndim
        if len(values) != ndim:
            raise ConvscopeError(f"{name} must have {ndim} values, got {list(value)}")
    else:
        raise ConvscopeError(f"{name} must be an integer or a list of {ndim} integers, got {value!r}")
    for v in values:
        if v < minimum:
            kind = "positive" if minimum == 1 else f">= {minimum}"
            raise ConvscopeError(f"{name} must be {kind}, got {value!r}")
    return values


def conv_output_size(n: int, k: int, s: int = 1, p_lo: int = 0, p_hi: int | None = None,
                     d: int = 1, ceil_mode: bool = False) -> int:
    """Output length of a sliding window (convolution or pooling) along one axis.

    ``out = floor((n + p_lo + p_hi - d·(k - 1) - 1) / s) + 1`` (``ceil`` in ceil mode).

    In ceil mode, as in PyTorch, a last window that would start inside the right padding is
    dropped: if ``(out - 1)·s >= n + p_lo`` then ``out -= 1``. May return 0 or a negative
    number when the window does not fit; callers turn that into an error with context.
    """
    if p_hi is None:
        p_hi = p_lo
    span = n + p_lo + p_hi - d * (k - 1) - 1
    if span < 0 and not ceil_mode:
        return 0  # the (dilated) window is larger than the padded input
    # In ceil mode PyTorch keeps one window that overhangs the padded input by less than s.
    if ceil_mode:
        out = -(-span // s) + 1
        if (out - 1) * s >= n + p_lo:
            out -= 1
    else:
        out = span // s + 1
    return out


def same_padding(k: int, d: int = 1) -> Tuple[int, int]:
    """Padding (before, after) that keeps the size at stride 1: total ``d·(k-1)``, extra after.

    This is PyTorch's ``padding="same"`` rule (the odd pixel goes to the end).
    """
    total = d * (k - 1)
    return total // 2, total - total // 2


def resolve_padding(padding, kernel: Sequence[int], dilation: Sequence[int], name: str = "padding"
                    ) -> Tuple[Tuple[int, int], ...]:
    """Turn a padding argument (int, list, "same", "valid") into (before, after) pairs per axis."""
    ndim = len(kernel)
    if isinstance(padding, str):
        if padding == "valid":
            return tuple((0, 0) for _ in range(ndim))
        if padding == "same":
            return tuple(same_padding(k, d) for k, d in zip(kernel, dilation))
        raise ConvscopeError(f"{name} must be an integer, a list, 'same' or 'valid', got {padding!r}")
    pads = as_tuple(padding, ndim, name, minimum=0)
    return tuple((p, p) for p in pads)


def adaptive_window(i: int, n_in: int, n_out: int) -> Tuple[int, int]:
    """Start and end of output cell ``i`` of an adaptive pool: [floor(i·n/m), ceil((i+1)·n/m))."""
    return (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)


def prod(values) -> int:
    """Product of ints (1 for an empty sequence)."""
    return int(math.prod(int(v) for v in values))
