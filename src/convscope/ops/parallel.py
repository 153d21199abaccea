"""Both cores for memory-bound element-wise work: split the batch axis over a small thread pool.

NumPy releases the GIL inside ufunc loops on large arrays, so two threads each running the
same element-wise passes over half of the batch run at the same time. BLAS already uses every
core for the matrix products; this is for the passes between them (batch-norm backward, ...).

:func:`over_batch` calls ``work(start, stop)`` on disjoint sample ranges covering ``0..n``:
one range per thread of :func:`convscope.threads.run_split`'s pool (the calling thread takes the
first), each thread walking its range in
chunks of about :data:`CHUNK_VALUES` values so that a chunk's temporaries stay in cache. The
thread count is :func:`convscope.threads.cheap_num_threads`'s (what ``cs.set_num_threads`` set);
below :data:`MIN_VALUES` values everything runs on the calling thread. ``work`` must write only
to its own range (the results are then the same whatever the split).
"""
from __future__ import annotations

from typing import Callable

from ..threads import run_split

#: Below this many values a pass is too short for a second thread to pay off.
MIN_VALUES = 1 << 18
#: Values per chunk: temporaries of 4 × 64 K float32 stay within a core's L2 cache.
CHUNK_VALUES = 1 << 16


def over_batch(work: Callable[[int, int], None], n: int, values_per_sample: int) -> None:
    """Run ``work(start, stop)`` over sample ranges covering ``0..n`` (see the module notes)."""
    if n <= 0:
        return
    per_chunk = max(1, CHUNK_VALUES // max(values_per_sample, 1))

    def walk(lo: int, hi: int) -> None:
        for start in range(lo, hi, per_chunk):
            work(start, min(start + per_chunk, hi))

    if n * values_per_sample < MIN_VALUES:
        walk(0, n)
    else:
        run_split(walk, n)
