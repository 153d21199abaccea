"""Reusable work buffers for hot paths.

glibc's malloc hands large blocks back to the operating system on free, so a NumPy loop
that allocates the same big temporary every call pays page faults each time (1.6–2.8×
slower in our measurements). Ops ask :func:`workspace` for a named buffer instead; it is
allocated once per (name, shape, dtype) and reused. Buffers are scratch: an op must not
return one to its caller or keep one in a cache past the next call with the same name.

The pool keeps at most :data:`MAX_BYTES` alive, dropping the least recently used buffers
first, so a deep network with many distinct shapes cannot hoard memory. It is one pool per
process and not locked: run models in separate processes, not in threads of one process
(BLAS already uses the cores).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Tuple

import numpy as np

#: Upper bound on the bytes the pool keeps between calls (a buffer larger than this is
#: still handed out, but not kept).
MAX_BYTES = 256 << 20

_BUFFERS: "OrderedDict[Tuple[str, Tuple[int, ...], str], np.ndarray]" = OrderedDict()
_bytes = 0


def workspace(name: str, shape, dtype) -> np.ndarray:
    """An uninitialised array of ``shape`` and ``dtype``, reused across calls with the same name."""
    global _bytes
    key = (name, tuple(int(s) for s in shape), np.dtype(dtype).str)
    buffer = _BUFFERS.get(key)
    if buffer is not None:
        _BUFFERS.move_to_end(key)
        return buffer
    buffer = np.empty(key[1], dtype=dtype)
    if buffer.nbytes > MAX_BYTES:
        return buffer
    _BUFFERS[key] = buffer
    _bytes += buffer.nbytes
    while _bytes > MAX_BYTES:
        _, evicted = _BUFFERS.popitem(last=False)
        _bytes -= evicted.nbytes
    return buffer


def pooled_bytes() -> int:
    """Bytes the pool currently keeps alive."""
    return _bytes


def clear() -> None:
    """Release every pooled buffer."""
    global _bytes
    _BUFFERS.clear()
    _bytes = 0
