"""Both cores for memory-bound element-wise work: split the batch axis over a small thread pool.

NumPy releases the GIL inside ufunc loops on large arrays, so two threads each running the
same element-wise passes over half of the batch run at the same time. BLAS already uses every
core for the matrix products; this is for the passes between them (batch-norm backward, ...).

:func:`over_batch` calls ``work(start, stop)`` on disjoint sample ranges covering ``0..n``:
one range per thread (the calling thread takes the first), each thread walking its range in
chunks of about :data:`CHUNK_VALUES` values so that a chunk's temporaries stay in cache. The
thread count is :func:`convscope.threads.cheap_num_threads`'s (what ``cs.set_num_threads`` set);
below :data:`MIN_VALUES` values everything runs on the calling thread. ``work`` must write only
to its own range (the results are then the same whatever the split).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional

#: Below this many values a pass is too short for a second thread to pay off.
MIN_VALUES = 1 << 18
#: Values per chunk: temporaries of 4 × 64 K float32 stay within a core's L2 cache.
CHUNK_VALUES = 1 << 16

_pool: Optional[ThreadPoolExecutor] = None
_pool_size = 0


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    if _pool is None or _pool_size != workers:
        if _pool is not None:
            _pool.shutdown(wait=True)
        _pool, _pool_size = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="convscope"), workers
    return _pool


def _threads() -> int:
    from ..threads import cheap_num_threads
    return max(1, cheap_num_threads())


def over_batch(work: Callable[[int, int], None], n: int, values_per_sample: int) -> None:
    """Run ``work(start, stop)`` over sample ranges covering ``0..n`` (see the module notes)."""
    if n <= 0:
        return
    per_chunk = max(1, CHUNK_VALUES // max(values_per_sample, 1))
    threads = min(_threads(), n) if n * values_per_sample >= MIN_VALUES else 1

    def walk(lo: int, hi: int) -> None:
        for start in range(lo, hi, per_chunk):
            work(start, min(start + per_chunk, hi))

    if threads == 1:
        walk(0, n)
        return
    bounds = [n * t // threads for t in range(threads + 1)]
    futures = [_executor(threads - 1).submit(walk, bounds[t], bounds[t + 1]) for t in range(1, threads)]
    walk(bounds[0], bounds[1])
    for future in futures:
        future.result()
