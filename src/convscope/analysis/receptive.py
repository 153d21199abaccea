"""Receptive fields: which input pixels can influence one output position.

Notation
--------
Per spatial axis, after some layers:
r   field size (input pixels spanned by one output position),
j   jump (input pixels between neighbouring output positions, the product of strides),
a   start (first input pixel seen by output position 0; negative means it lies in padding).
A sliding window with kernel k, stride s, padding before p and dilation d turns (r, j, a) into

    r' = r + d·(k − 1)·j        j' = j·s        a' = a − p·j

so output position i of the layer sees input pixels [a' + i·j', a' + i·j' + r' − 1].
Position-wise layers (activations, batch norm) keep the field; global layers (flatten,
linear, global pooling) see the whole input. Branches are joined by taking, per axis, the
smallest start and the largest end: a concat's field is its widest branch, a residual's the
union of body and shortcut.

The size is the bounding span: a dilated kernel has holes inside it, and pixels past the
image edge (padding) are counted, as is usual when quoting receptive fields (ResNet-18: 435).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple


@dataclass(frozen=True)
class Field:
    """Receptive field of one output position along every spatial axis of the input."""

    size: Tuple[int, ...]
    jump: Tuple[int, ...]
    start: Tuple[int, ...]
    is_global: bool = False

    @classmethod
    def of_input(cls, input_shape: Sequence[int]) -> "Field":
        """A pixel sees itself: size 1, jump 1, start 0 on every spatial axis (C is not spatial)."""
        axes = len(input_shape) - 1
        return cls((1,) * axes, (1,) * axes, (0,) * axes)

    def whole(self, input_shape: Sequence[int]) -> "Field":
        """The field of a global layer: the entire (unpadded) input."""
        spatial = tuple(int(n) for n in input_shape[1:])
        return Field(spatial, self.jump, (0,) * len(spatial), True)

    def slide(self, window) -> "Field":
        """Field after a sliding window ``((k, s, p_lo, d), ...)`` per spatial axis."""
        if self.is_global:
            return self
        size, jump, start = [], [], []
        for r, j, a, (k, s, p, d) in zip(self.size, self.jump, self.start, window):
            size.append(r + d * (k - 1) * j)
            jump.append(j * s)
            start.append(a - p * j)
        return Field(tuple(size), tuple(jump), tuple(start))

    def end(self) -> Tuple[int, ...]:
        """Last input pixel seen by output position 0."""
        return tuple(a + r - 1 for a, r in zip(self.start, self.size))

    def as_dict(self) -> dict:
        return {"size": list(self.size), "stride": None if self.is_global else list(self.jump),
                "start": list(self.start), "global": self.is_global}


def after(field: Field, window, network_input: Sequence[int]) -> Field:
    """Field after a layer whose :meth:`Layer.window` returned ``window``."""
    if window is None:
        return field
    if isinstance(window, str):
        if window != "global":
            raise ValueError(f"unknown window kind {window!r}")
        return field.whole(network_input)
    return field.slide(window)


def union(fields: Sequence[Field]) -> Field:
    """Fields of parallel branches joined: per axis, smallest start to largest end."""
    fields = [f for f in fields if f is not None]
    if any(f.is_global for f in fields):
        return next(f for f in fields if f.is_global)
    first = fields[0]
    starts = tuple(min(f.start[i] for f in fields) for i in range(len(first.start)))
    ends = tuple(max(f.end()[i] for f in fields) for i in range(len(first.start)))
    jumps = tuple(max(f.jump[i] for f in fields) for i in range(len(first.start)))
    return Field(tuple(e - a + 1 for a, e in zip(starts, ends)), jumps, starts)


def derivation(before: Field, window, axis_names: Sequence[str]) -> Optional[str]:
    """``r = r_in + d·(k − 1)·j_in = ...`` for a sliding window; one line when every axis agrees."""
    if window is None or isinstance(window, str) or before.is_global:
        return None
    new = before.slide(window)
    lines = []
    for axis, ((k, s, p, d), r, j, a) in enumerate(zip(window, before.size, before.jump, before.start)):
        lines.append(f"r = r_in + d·(k − 1)·j_in = {r} + {d}·({k} − 1)·{j} = {new.size[axis]}, "
                     f"j = j_in·s = {j}·{s} = {new.jump[axis]}, "
                     f"start = start_in − p·j_in = {a} − {p}·{j} = {new.start[axis]}")
    if len(set(lines)) == 1:
        return "receptive field: " + lines[0]
    return "receptive field: " + "; ".join(f"{name}: {line}" for name, line in zip(axis_names, lines))
