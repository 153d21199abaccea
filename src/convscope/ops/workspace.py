"""Reusable work buffers for hot paths.

glibc's malloc hands large blocks back to the operating system on free, so a NumPy loop
that allocates the same big temporary every call pays page faults each time (1.6–2.8×
slower in our measurements). Ops ask :func:`workspace` for a named buffer instead; it is
allocated once per (name, shape, dtype) and reused. Buffers are scratch: an op must not
return one to its caller or keep one in a cache past the next call with the same name.
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

_BUFFERS: Dict[Tuple[str, Tuple[int, ...], str], np.ndarray] = {}
_MAX_BUFFERS = 64


def workspace(name: str, shape, dtype) -> np.ndarray:
    """An uninitialised array of ``shape`` and ``dtype``, reused across calls with the same name."""
    key = (name, tuple(int(s) for s in shape), np.dtype(dtype).str)
    buffer = _BUFFERS.get(key)
    if buffer is None:
        if len(_BUFFERS) >= _MAX_BUFFERS:
            _BUFFERS.clear()  # shapes keep changing: do not hoard memory
        buffer = np.empty(key[1], dtype=dtype)
        _BUFFERS[key] = buffer
    return buffer


def clear() -> None:
    """Release every cached buffer."""
    _BUFFERS.clear()
