"""Reusable work buffers for hot paths, owned by a layer (or a model), never by the process.

glibc's malloc hands large blocks back to the operating system on free, so a NumPy loop
that allocates the same big temporary every call pays page faults each time (1.6–2.8×
slower in our measurements). An op that is given a :class:`Workspace` asks it for named
scratch buffers instead; each is allocated once per (name, shape, dtype) and reused. An op
called without one allocates fresh arrays (correct, just slower).

Rules that keep this safe:

* Buffers are scratch. An op never returns one, nor a view of one, to its caller: what it
  returns is always a fresh array (:func:`fresh_copy` for crops of a padded buffer, since
  ``np.ascontiguousarray`` returns the very same memory when the crop happens to be
  contiguous, e.g. padding along H only at batch 1).
* Each layer owns its workspace (``Layer.workspace``) and passes it to its ops, so a buffer
  an op keeps in its cache for backward cannot be overwritten by another layer's forward.
  The layers of one model share a :class:`Budget`: at most :data:`MAX_BYTES` stay alive
  between calls over the whole model, least recently used first out.
* Not locked: one model is used by one thread at a time (BLAS already uses the cores).
* Scratch that never outlives one op call (the backward pass's transforms, say) comes from
  :func:`transient` instead. Every layer's forward and backward opens a
  :func:`transient_scope`; inside one, transients are regions of the model's one arena (its
  :class:`Budget`'s), used as a stack and freed when the scope ends, so the model keeps only
  its deepest stack of live scratch (ops open inner scopes where a phase's scratch dies
  early). Outside any scope (an op called directly with a workspace) a transient is one
  flat buffer per name for the whole budget.
"""
from __future__ import annotations

import contextlib
import contextvars
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import numpy as np

#: Arena regions start on this byte boundary (a cache line; every dtype's alignment).
_ALIGN = 64
#: Default cap of the bytes a :class:`Budget` keeps between calls (a buffer larger than the
#: cap is still handed out, but not kept).
MAX_BYTES = 256 << 20

_Key = Tuple[str, Tuple[int, ...], str]


class Budget:
    """A byte cap shared by several workspaces (the layers of one model); when the kept buffers
    exceed it, the least recently used ones, in any of the workspaces, are dropped."""

    def __init__(self, max_bytes: Optional[int] = None):
        self.max_bytes = MAX_BYTES if max_bytes is None else int(max_bytes)
        self.bytes = 0
        self._order: "OrderedDict[Tuple[int, _Key], Tuple[Workspace, int]]" = OrderedDict()
        self._transient: Dict[Tuple[str, str], np.ndarray] = {}
        self._transient_view: Optional["Workspace"] = None
        self._arena: Optional[np.ndarray] = None      # see transient_scope
        self._top = 0                                   # bytes of the arena in use
        self._high = 0                                  # the deepest stack seen, in bytes
        self._scopes: List[Dict[Tuple[str, str], np.ndarray]] = []

    def _touch(self, ws: "Workspace", key: _Key) -> None:
        self._order.move_to_end((id(ws), key))

    def _add(self, ws: "Workspace", key: _Key, nbytes: int) -> None:
        self._order[(id(ws), key)] = (ws, nbytes)
        self.bytes += nbytes
        while self.bytes > self.max_bytes and self._order:
            (_, old_key), (owner, size) = self._order.popitem(last=False)
            del owner._buffers[old_key]
            self.bytes -= size

    def transient(self, name: str, shape, dtype) -> np.ndarray:
        """An uninitialised ``shape`` array for scratch that dies with the current op call.

        Inside a :meth:`transient_scope` (every layer's forward and backward opens one): a
        region of the budget's arena, the same region for the same name and dtype within the
        scope, freed when the scope ends. Outside any scope: a view of this budget's flat
        buffer ``name`` (grown when too small; one per name and dtype for every workspace
        under this budget)."""
        shape = tuple(int(s) for s in shape)
        size = int(np.prod(shape))
        key = (name, np.dtype(dtype).str)
        if self._scopes:
            return self._arena_region(key, size, np.dtype(dtype))[:size].reshape(shape)
        flat = self._transient.get(key)
        if flat is None or flat.size < size:
            flat = np.empty(size, dtype=dtype)
            if flat.nbytes <= self.max_bytes:
                self._transient[key] = flat
        return flat[:size].reshape(shape)

    # The arena: one flat byte buffer used as a stack. A scope remembers the stack's top when
    # it opens and restores it when it closes, so nested scopes (a model's forward around its
    # layers', an op's phases) free their regions in reverse order of allocation, and the
    # arena only needs the deepest stack of live transients, not one buffer per name (which
    # kept 335 MB alive for ResNet-18 at batch 32 against a deepest stack of about 120 MB).

    def transient_scope(self) -> "_Scope":
        """``with budget.transient_scope():`` frees the transients requested inside the block
        when it ends (see :meth:`transient`)."""
        return _Scope(self)

    def _grow_arena(self) -> None:
        """Between outermost scopes nothing is live: the arena grows to the deepest stack seen
        so far (a request that did not fit was given an array of its own meanwhile)."""
        size = min(self._high, self.max_bytes)
        _raise_malloc_threshold()
        self._arena = None
        self._arena = np.empty(size, np.uint8)

    def _arena_region(self, key, size: int, dtype: np.dtype) -> np.ndarray:
        """A flat ``size``-element region for ``key`` in the innermost scope."""
        regions = self._scopes[-1]
        region = regions.get(key)
        if region is not None and region.size >= size:
            return region
        start = -(-self._top // _ALIGN) * _ALIGN
        end = start + size * dtype.itemsize
        # The stack top is advanced even for a region that does not fit (it gets an array of
        # its own), so _high is the arena size that would have held everything.
        self._top = end
        self._high = max(self._high, end)
        if self._arena is not None and end <= self._arena.nbytes:
            region = self._arena[start:end].view(dtype)
        else:
            region = np.empty(size, dtype)
        regions[key] = region
        return region

    def arena_bytes(self) -> int:
        """Bytes the transient arena keeps allocated between calls."""
        return 0 if self._arena is None else self._arena.nbytes

    def _forget(self, ws: "Workspace", key: _Key) -> None:
        _, size = self._order.pop((id(ws), key))
        self.bytes -= size


#: glibc's largest dynamic mmap threshold (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit systems).
_GLIBC_MMAP_THRESHOLD_MAX = 32 << 20
_threshold_raised = False


def _raise_malloc_threshold() -> None:
    """Free one 32 MiB block, once per process (when the first arena is made).

    glibc's malloc serves blocks above its mmap threshold (128 KiB at start) with freshly
    mapped pages, unmapped again on free, and gives the top of its heap back to the system
    once more than the trim threshold is free there; either way an array allocated on every
    call pays a page fault per 4 KiB each time. Freeing a mapped block raises the mmap
    threshold to that block's size (at most 32 MiB) and the trim threshold to twice it: glibc's
    own rule, which a program that frees a 32 MiB array triggers anyway. Layer outputs and
    gradients then come from the heap and are reused. LeNet-5's training step at batch 64 had
    1,187 page faults per step (1.2 MB outputs) and ran 1.3× slower without it; freeing a
    block the size of its arena (1.9 MB) was not enough, because a step frees more than twice
    that at the top of the heap. Elsewhere than glibc this is one plain allocation."""
    global _threshold_raised
    if not _threshold_raised:
        _threshold_raised = True
        # (a block's chunk carries a header, so a block of exactly the maximum would exceed it)
        np.empty(_GLIBC_MMAP_THRESHOLD_MAX - (64 << 10), np.uint8)


class _Scope:
    """The context manager of :meth:`Budget.transient_scope` (a class: entered on every layer
    call, where a generator-based one cost several times more)."""

    __slots__ = ("budget", "top")

    def __init__(self, budget: Budget):
        self.budget = budget

    def __enter__(self) -> None:
        budget = self.budget
        if not budget._scopes and budget._high > (0 if budget._arena is None else budget._arena.nbytes):
            budget._grow_arena()
        self.top = budget._top
        budget._scopes.append({})

    def __exit__(self, *exc) -> bool:
        self.budget._scopes.pop()
        self.budget._top = self.top
        return False


class Workspace:
    """Named scratch arrays reused across calls; see the module notes for the rules."""

    def __init__(self, budget: Optional[Budget] = None):
        self.budget = Budget() if budget is None else budget
        self._buffers: Dict[_Key, np.ndarray] = {}

    def get(self, name: str, shape, dtype) -> np.ndarray:
        """An uninitialised array of ``shape`` and ``dtype``, the same one on every call with the
        same name, shape and dtype (unless the budget dropped it meanwhile)."""
        key = (name, tuple(int(s) for s in shape), np.dtype(dtype).str)
        buffer = self._buffers.get(key)
        if buffer is not None:
            self.budget._touch(self, key)
            return buffer
        buffer = np.empty(key[1], dtype=dtype)
        if buffer.nbytes <= self.budget.max_bytes:
            self._buffers[key] = buffer
            self.budget._add(self, key, buffer.nbytes)
        return buffer

    def reuse(self, name: str, shape, dtype) -> Tuple[np.ndarray, bool]:
        """``(array, kept)``: :meth:`get`'s array, and whether it is the very array an earlier
        call returned (so it still holds what was written into it), not a new one."""
        key = (name, tuple(int(s) for s in shape), np.dtype(dtype).str)
        kept = key in self._buffers
        return self.get(name, shape, dtype), kept

    def transient_view(self) -> "Workspace":
        """A workspace under the same budget whose every buffer is :func:`transient`: for
        handing to an op whose scratch must not outlive the call (one per budget)."""
        view = self.budget._transient_view
        if view is None:
            view = self.budget._transient_view = _TransientWorkspace(self.budget)
        return view

    def kept_bytes(self) -> int:
        """Bytes this workspace keeps alive."""
        return sum(b.nbytes for b in self._buffers.values())

    def clear(self) -> None:
        """Release every buffer of this workspace."""
        for key in list(self._buffers):
            self.budget._forget(self, key)
        self._buffers.clear()


class _TransientWorkspace(Workspace):
    """Every buffer it hands out is the budget's transient buffer of that name."""

    def get(self, name: str, shape, dtype) -> np.ndarray:
        return self.budget.transient(name, shape, dtype)


def scratch(ws: Optional[Workspace], name: str, shape, dtype) -> np.ndarray:
    """``ws.get(name, shape, dtype)``, or a fresh uninitialised array without a workspace."""
    if ws is None:
        return np.empty(tuple(int(s) for s in shape), dtype=dtype)
    return ws.get(name, shape, dtype)


def transient(ws: Optional[Workspace], name: str, shape, dtype) -> np.ndarray:
    """Scratch for use within one op call only (never kept in a cache, never returned): the
    model-wide buffer ``name`` of ``ws``'s budget, or a fresh array without a workspace."""
    if ws is None:
        return np.empty(tuple(int(s) for s in shape), dtype=dtype)
    return ws.budget.transient(name, shape, dtype)


def transient_scope(ws: Optional[Workspace]):
    """``with transient_scope(ws):`` frees the transients requested inside the block when it
    ends (:meth:`Budget.transient_scope`); does nothing without a workspace."""
    return contextlib.nullcontext() if ws is None else ws.budget.transient_scope()


def fresh_copy(view: np.ndarray) -> np.ndarray:
    """A new C-contiguous array with ``view``'s values, never sharing its memory (unlike
    ``np.ascontiguousarray``, which returns ``view`` itself when it is already contiguous)."""
    return np.array(view, order="C", copy=True)


#: While an inference plan is being made (layers/plan.py): the list that collects every buffer
#: its steps allocate, so the plan can say how much memory it keeps.
PLAN_BUFFERS: "contextvars.ContextVar[Optional[List[np.ndarray]]]" = contextvars.ContextVar(
    "convscope_plan_buffers", default=None)


def step_buffer(shape, dtype) -> np.ndarray:
    """An uninitialised array an inference-plan step keeps and rewrites on every call
    (:meth:`convscope.layers.base.Layer.inference_step`), counted by the plan being made."""
    buffer = np.empty(tuple(int(s) for s in shape), dtype)
    collected = PLAN_BUFFERS.get()
    if collected is not None:
        collected.append(buffer)
    return buffer
