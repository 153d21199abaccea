"""Many processes under ``torchrun``: who am I, the process group, and each rank's shard.

``torchrun --nproc_per_node N -m convscope train ... --engine torch`` starts N processes with
the environment variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; :func:`detect` reads them (None when they are absent: one process).

Sharding keeps one process's arithmetic. Every rank computes the same global order of the
epoch (:func:`convscope.train.batch_indices`, a function of the seed and the epoch); a global
batch B of size |B| is cut into W contiguous pieces, rank r taking piece r
(:func:`shard`, ``numpy.array_split``: sizes differ by at most one when W does not divide a
short last batch). Each rank back-propagates

    L_r = (W / |B|) · Σ_{n in piece r} ℓ_n

and DistributedDataParallel averages the gradients over the W ranks, so every rank applies

    (1/W) · Σ_r ∇L_r = (1/|B|) · Σ_{n in B} ∇ℓ_n = ∇ mean_{n in B} ℓ_n,

the gradient one process computes for the whole batch. The loss and correct counts shown and
saved are summed over the ranks the same way (one ``all_reduce``), so every rank sees the same
loss and a NaN stops them all at the same step.
"""
from __future__ import annotations

import datetime
import os
import signal
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from ..errors import ConvscopeError

#: Seconds a collective waits for a silent peer before giving up (CONVSCOPE_DIST_TIMEOUT overrides).
DEFAULT_TIMEOUT = 300


class PeerLost(ConvscopeError):
    """Another process of the distributed run stopped; this one stops without saving."""


@dataclass
class World:
    rank: int
    size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def detect(environ=None) -> Optional[World]:
    """The torchrun world from the environment, or None for a single process."""
    environ = os.environ if environ is None else environ
    if "WORLD_SIZE" not in environ and "RANK" not in environ:
        return None
    values = {}
    for key, default in (("RANK", None), ("WORLD_SIZE", None), ("LOCAL_RANK", "0")):
        text = environ.get(key, default)
        try:
            values[key] = int(text)
        except (TypeError, ValueError):
            raise ConvscopeError(f"the environment variable {key} must be a whole number under torchrun, got "
                                 f"{text!r}") from None
    rank, size, local = values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"]
    if size < 1 or not 0 <= rank < size or local < 0:
        raise ConvscopeError(f"the torchrun environment is inconsistent: RANK={rank}, WORLD_SIZE={size}, "
                             f"LOCAL_RANK={local}")
    return World(rank, size, local)


def check_batch(batch_size: int, world: Optional[World]) -> None:
    """The global batch (--batch-size) must split evenly over the processes."""
    if world is not None and batch_size % world.size:
        lower = max(world.size, batch_size // world.size * world.size)
        raise ConvscopeError(f"--batch-size {batch_size} is the global batch and must be divisible by the "
                             f"{world.size} processes (world size); use --batch-size {lower} or "
                             f"{lower + world.size}")


def shard(idx: np.ndarray, world: Optional[World]) -> np.ndarray:
    """This rank's contiguous piece of the global batch ``idx``."""
    if world is None:
        return idx
    return np.array_split(idx, world.size)[world.rank]


def timeout_seconds() -> int:
    text = os.environ.get("CONVSCOPE_DIST_TIMEOUT", str(DEFAULT_TIMEOUT))
    try:
        seconds = int(text)
    except ValueError:
        raise ConvscopeError(f"CONVSCOPE_DIST_TIMEOUT must be whole seconds, got {text!r}") from None
    if seconds < 1:
        raise ConvscopeError(f"CONVSCOPE_DIST_TIMEOUT must be at least 1 second, got {seconds}")
    return seconds


def init(torch, world: World, device_type: str) -> None:
    """Join the process group: nccl on CUDA, gloo on the CPU, with a finite timeout so a
    silent peer ends in an error instead of a hang. torchrun stops the others (SIGTERM) when
    one process dies; that becomes :class:`PeerLost` here too."""
    dist = torch.distributed
    if not dist.is_available():
        raise ConvscopeError("this PyTorch build has no torch.distributed; install a build with it")
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        try:
            dist.init_process_group(backend=backend, rank=world.rank, world_size=world.size,
                                    timeout=datetime.timedelta(seconds=timeout_seconds()))
        except (RuntimeError, ValueError) as error:
            raise ConvscopeError(f"could not join the distributed run as rank {world.rank} of {world.size} "
                                 f"({backend}): {_first_line(error)}") from None
    _state["previous"] = signal.signal(signal.SIGTERM, _terminated)
    _state["stopping"] = False


#: SIGTERM handling while in a process group: the handler that was there before, and whether
#: this process is already stopping (torchrun may signal again while the one line is printed).
_state = {"previous": None, "stopping": False}


def _terminated(signum, frame):
    if _state["stopping"]:
        return  # already on the way out: let the one line be printed
    _state["stopping"] = True
    raise PeerLost("stopped by torchrun because another process of the distributed run failed")


def lost(detail: str) -> PeerLost:
    """The error for a collective that failed because a peer went away; from now on a SIGTERM
    from torchrun is ignored so this process can say so in one line and exit."""
    _state["stopping"] = True
    return PeerLost(f"another process of the distributed run stopped during a step ({detail})")


def all_sum(torch, values: List[float], device) -> List[float]:
    """Sums of ``values`` over every rank (one all_reduce, float64)."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(tensor)
    return [float(v) for v in tensor.tolist()]


def close(torch) -> None:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except (RuntimeError, ValueError):  # a broken group: nothing left to release cleanly
            pass
    if signal.getsignal(signal.SIGTERM) is _terminated and not _state["stopping"]:
        signal.signal(signal.SIGTERM, _state["previous"] or signal.SIG_DFL)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__
