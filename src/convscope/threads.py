"""Thread control for the BLAS library NumPy uses.

convscope's fast paths spend their time in BLAS matrix products, whose thread pool sizes
itself from OMP_NUM_THREADS (and friends) at start-up. :func:`set_num_threads` changes it
at run time through threadpoolctl, so benchmarks and users can pin a thread count.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Sequence

from threadpoolctl import threadpool_info, threadpool_limits

from .errors import ConvscopeError

_limits = None  # kept alive: threadpoolctl restores the old limit when this is collected
_known = None   # the count last set or read, for callers that ask often (cheap_num_threads)


def set_num_threads(n: int) -> None:
    """Use ``n`` BLAS threads for NumPy's matrix products (like torch.set_num_threads)."""
    global _limits, _known
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConvscopeError(f"set_num_threads needs a positive integer, got {n!r}")
    _limits = threadpool_limits(limits=n, user_api="blas")
    _known = n


def get_num_threads() -> int:
    """Threads of the first BLAS pool NumPy loaded (1 if none is found)."""
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    return int(pools[0]["num_threads"]) if pools else 1


def cheap_num_threads() -> int:
    """:func:`get_num_threads` without asking threadpoolctl again (about 1 ms a call): the
    count :func:`set_num_threads` last set, else the one read the first time."""
    global _known
    if _known is None:
        _known = get_num_threads()
    return _known


# ----- a small pool for work that releases the GIL (compiled loops, large NumPy passes) --------

_pool: List[ThreadPoolExecutor] = []


def run_split(task: Callable[[int, int], object], total: int, min_part: int = 1) -> None:
    """Run ``task(start, stop)`` over ``range(total)`` cut into one part per thread of
    :func:`cheap_num_threads` (at least ``min_part`` items each), the parts in parallel on a
    thread pool (idle threads sleep, unlike OpenMP's spinning ones, so they never compete
    with BLAS's threads); the calling thread takes the first part. ``task`` must write only
    to its own part, and must release the GIL to gain anything (numba's nogil loops, large
    NumPy operations)."""
    parts = max(1, min(cheap_num_threads(), total // max(min_part, 1)))
    if parts == 1:
        task(0, total)
        return
    if not _pool or _pool[0]._max_workers < parts - 1:
        if _pool:
            _pool.pop().shutdown(wait=False)
        _pool.append(ThreadPoolExecutor(max_workers=parts - 1, thread_name_prefix="convscope"))
    bounds = [total * i // parts for i in range(parts + 1)]
    futures = [_pool[0].submit(task, bounds[i], bounds[i + 1]) for i in range(1, parts)]
    task(bounds[0], bounds[1])
    for future in futures:
        future.result()
