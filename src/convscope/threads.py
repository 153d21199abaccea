"""Thread control for the BLAS library NumPy uses.

convscope's fast paths spend their time in BLAS matrix products, whose thread pool sizes
itself from OMP_NUM_THREADS (and friends) at start-up. :func:`set_num_threads` changes it
at run time through threadpoolctl, so benchmarks and users can pin a thread count.
"""
from __future__ import annotations

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
