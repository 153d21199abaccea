"""Walk a model over an input shape and count everything, without allocating a weight.

Only the layers' shape rules are called (:meth:`Layer.output_shape`, ``param_shapes``,
``buffer_shapes``, ``macs``, ``window``, ``children``), so analysing VGG-16 or a
1,000-layer net costs microseconds per layer and no memory for parameters.

Notation
--------
For a layer with per-sample input shape ``x`` and output shape ``y``:
``weights`` = elements of every learned array except biases, ``biases`` = elements of the
``bias`` arrays, ``params = weights + biases``, ``buffers`` = running statistics (not
learned, reported apart), ``macs`` per the contract (conv and linear; 1 MAC = 2 FLOPs),
``other_ops`` see :mod:`convscope.analysis.counting`, ``memory_bytes = |y|·itemsize·batch``.

Rows are listed depth first: a container (sequential, concat, residual) gets its own row,
followed by its layers with dotted names as in the state dict (``3.branches.1.0``). A
container's own counts are its own (zero parameters; a residual's adds); its subtree's
totals are in ``subtree_params`` and ``subtree_macs``. Summing ``params`` over all rows gives
``total_params``: every parameter is counted once, even when one layer object is used twice
(the repeat row says ``shared_with``).
"""
from __future__ import annotations

from dataclasses import dataclass, field as dataclass_field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConvscopeError
from ..layers.base import Layer, _check_shape
from ..shapes import prod
from . import counting, diagnose
from .receptive import Field, after, union

Shape = Tuple[int, ...]

#: How the counts are defined; printed under tables and included in the JSON.
COUNTING_NOTE = ("1 MAC = 2 FLOPs; MACs count conv (C_out·H_out·W_out·(C_in/groups)·k_h·k_w) and "
                 "linear (in·out) only; bias adds, pooling, activations, normalization and "
                 "residual adds are counted separately as other ops")


@dataclass
class Row:
    """One layer (or container) of a report; counts are per sample and the layer's own."""

    name: str
    type: str
    depth: int
    container: bool
    input_shape: Shape
    output_shape: Shape
    weights: int = 0
    biases: int = 0
    buffers: int = 0
    macs: int = 0
    other_ops: Dict[str, int] = dataclass_field(default_factory=dict)
    memory_bytes: int = 0
    field: Optional[Field] = None
    trainable: bool = True
    shared_with: Optional[str] = None
    subtree_params: int = 0
    subtree_macs: int = 0
    # What the explanation needs; not part of the JSON.
    layer: Optional[Layer] = dataclass_field(default=None, repr=False)
    param_shapes: Dict[str, Shape] = dataclass_field(default_factory=dict, repr=False)
    buffer_shapes: Dict[str, Shape] = dataclass_field(default_factory=dict, repr=False)
    window: object = dataclass_field(default=None, repr=False)
    field_in: Optional[Field] = dataclass_field(default=None, repr=False)
    branch_shapes: List[Shape] = dataclass_field(default_factory=list, repr=False)

    @property
    def params(self) -> int:
        return self.weights + self.biases

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def receptive_field(self) -> Optional[dict]:
        return self.field.as_dict() if self.field is not None else None

    def explain(self) -> List[str]:
        """Derivations of this row's numbers, symbols then values."""
        from .derivations import derive
        return derive(self)

    def to_dict(self, explain: bool = False) -> dict:
        out = {"name": self.name, "type": self.type, "depth": self.depth,
               "container": self.container, "input_shape": list(self.input_shape),
               "output_shape": list(self.output_shape), "weights": self.weights,
               "biases": self.biases, "params": self.params, "trainable": self.trainable,
               "buffers": self.buffers, "macs": self.macs, "flops": self.flops,
               "other_ops": dict(self.other_ops), "memory_bytes": self.memory_bytes,
               "receptive_field": self.receptive_field}
        if self.container:
            out["subtree_params"] = self.subtree_params
            out["subtree_macs"] = self.subtree_macs
        if self.shared_with is not None:
            out["shared_with"] = self.shared_with
        if explain:
            out["explain"] = self.explain()
        return out


@dataclass
class Report:
    """Everything :func:`analyze` found. Counts are per sample unless a field says bytes."""

    input: Shape
    output: Shape
    layers: List[Row]
    dtype: str
    batch_size: int
    field: Optional[Field] = None

    # ----- totals (each parameter once) ---------------------------------------------------
    def _counted(self) -> List[Row]:
        return [r for r in self.layers if r.shared_with is None]

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self._counted())

    @property
    def trainable_params(self) -> int:
        return sum(r.params for r in self._counted() if r.trainable)

    @property
    def non_trainable_params(self) -> int:
        return self.total_params - self.trainable_params

    @property
    def total_weights(self) -> int:
        return sum(r.weights for r in self._counted())

    @property
    def total_biases(self) -> int:
        return sum(r.biases for r in self._counted())

    @property
    def total_buffers(self) -> int:
        return sum(r.buffers for r in self._counted())

    @property
    def total_macs(self) -> int:
        return sum(r.macs for r in self.layers)

    @property
    def total_flops(self) -> int:
        return 2 * self.total_macs

    @property
    def other_ops(self) -> Dict[str, int]:
        totals = {k: 0 for k in counting.CATEGORIES}
        for r in self.layers:
            for k, v in r.other_ops.items():
                totals[k] = totals.get(k, 0) + v
        return totals

    @property
    def total_other_ops(self) -> int:
        return sum(self.other_ops.values())

    # ----- memory -------------------------------------------------------------------------
    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    @property
    def input_bytes(self) -> int:
        return prod(self.input) * self.itemsize * self.batch_size

    @property
    def activation_bytes(self) -> int:
        """Bytes of every intermediate output (a sequential's output is its last layer's)."""
        return sum(r.memory_bytes for r in self.layers if not (r.layer is not None and r.layer.is_chain))

    @property
    def param_bytes(self) -> int:
        return self.total_params * self.itemsize

    @property
    def buffer_bytes(self) -> int:
        return self.total_buffers * self.itemsize

    # ----- access and output --------------------------------------------------------------
    @property
    def rows(self) -> List[Row]:
        return self.layers

    @property
    def receptive_field(self) -> Optional[dict]:
        return self.field.as_dict() if self.field is not None else None

    def row(self, name: str) -> Row:
        for r in self.layers:
            if r.name == name:
                return r
        names = [r.name for r in self.layers]
        raise ConvscopeError(f"no layer named {name!r} in this report; names are "
                             f"{', '.join(names[:8])}{' ...' if len(names) > 8 else ''}")

    def explain(self) -> str:
        """Every row's derivations as text, one block per layer."""
        from .format import explain_text
        return explain_text(self)

    def to_dict(self, explain: bool = False) -> dict:
        """The summary's JSON object (the command line's ``--format json``)."""
        return {
            "input": list(self.input), "output": list(self.output),
            "total_params": self.total_params, "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params,
            "total_weights": self.total_weights, "total_biases": self.total_biases,
            "buffers": self.total_buffers, "total_macs": self.total_macs,
            "total_flops": self.total_flops, "other_ops": self.other_ops,
            "total_other_ops": self.total_other_ops,
            "memory": {"dtype": self.dtype, "batch_size": self.batch_size,
                       "input_bytes": self.input_bytes, "activation_bytes": self.activation_bytes,
                       "param_bytes": self.param_bytes, "buffer_bytes": self.buffer_bytes},
            "receptive_field": self.receptive_field,
            "counting": COUNTING_NOTE,
            "layers": [r.to_dict(explain=explain) for r in self.layers],
        }

    def __str__(self) -> str:
        from .format import plain_table
        return plain_table(self)


# ----- the walk ---------------------------------------------------------------------------

History = List[Tuple[str, Layer, Shape, Shape]]


class _Walker:
    def __init__(self, input_shape: Shape, itemsize: int, batch_size: int):
        self.input_shape = input_shape
        self.itemsize = itemsize
        self.batch_size = batch_size
        self.rows: List[Row] = []
        self.seen: Dict[int, str] = {}

    def walk(self, layer: Layer, name: str, depth: int, shape: Shape, fld: Field,
             history: History) -> Tuple[Shape, Field]:
        if layer.children():
            return self._container(layer, name, depth, shape, fld, history)
        return self._leaf(layer, name, depth, shape, fld, history)

    def _chain(self, children, prefix: str, depth: int, shape: Shape, fld: Field, history: History):
        for child_name, child in children:
            shape, fld = self.walk(child, f"{prefix}{child_name}", depth, shape, fld, history)
        return shape, fld

    def _container(self, layer, name, depth, shape, fld, history):
        row = Row(name, layer.type_name, depth, True, shape, shape, layer=layer, field_in=fld)
        self.rows.append(row)
        first = len(self.rows)
        if layer.is_chain:
            out, out_field = self._chain(layer.children(), f"{name}.", depth + 1, shape, fld, history)
        else:
            results = []
            for child_name, child in layer.children():
                branch_history = list(history)
                prefix = f"{name}.{child_name}"
                if child.is_chain:  # a branch's list of layers: no row of its own
                    results.append(self._chain(child.children(), f"{prefix}.", depth + 1, shape, fld,
                                               branch_history))
                else:
                    results.append(self.walk(child, prefix, depth + 1, shape, fld, branch_history))
            row.branch_shapes = [s for s, _ in results]
            fields = [f for _, f in results]
            if layer.passes_input:
                fields.append(fld)  # identity shortcut: the input itself joins the output
            try:
                out = tuple(int(n) for n in layer.output_shape(shape))
            except ConvscopeError as error:
                raise diagnose.failure(name, layer, shape, error, history) from None
            out_field = union(fields)
            history.append((name, layer, shape, out))
        row.output_shape = out
        row.field = out_field
        self._count(row, layer, shape, out)
        inner = self.rows[first:]
        row.subtree_params = row.params + sum(r.params for r in inner if r.shared_with is None)
        row.subtree_macs = row.macs + sum(r.macs for r in inner)
        return out, out_field

    def _leaf(self, layer, name, depth, shape, fld, history):
        try:
            out = tuple(int(n) for n in layer.output_shape(shape))
            window = layer.window(shape)
        except ConvscopeError as error:
            raise diagnose.failure(name, layer, shape, error, history) from None
        new_field = after(fld, window, self.input_shape)
        row = Row(name, layer.type_name, depth, False, shape, out, layer=layer, window=window,
                  field_in=fld, field=new_field)
        self._count(row, layer, shape, out)
        self.rows.append(row)
        history.append((name, layer, shape, out))
        return out, new_field

    def _count(self, row: Row, layer: Layer, shape: Shape, out: Shape) -> None:
        row.param_shapes = {k: tuple(v) for k, v in layer.param_shapes(shape).items()}
        row.buffer_shapes = {k: tuple(v) for k, v in layer.buffer_shapes(shape).items()}
        row.biases = sum(prod(s) for k, s in row.param_shapes.items() if _is_bias(k))
        row.weights = sum(prod(s) for k, s in row.param_shapes.items() if not _is_bias(k))
        row.buffers = sum(prod(s) for s in row.buffer_shapes.values())
        row.macs = int(layer.macs(shape))
        row.other_ops = counting.other_ops(layer, shape, out, row.macs, row.param_shapes)
        row.memory_bytes = prod(out) * self.itemsize * self.batch_size
        row.trainable = bool(getattr(layer, "trainable", True))
        if row.params and not row.container:
            if id(layer) in self.seen:
                row.shared_with = self.seen[id(layer)]
            else:
                self.seen[id(layer)] = row.name


def _is_bias(name: str) -> bool:
    return name == "bias" or name.endswith(".bias") or name.endswith("_bias")


def analyze(model: Layer, input_shape: Optional[Sequence[int]] = None, *, dtype=np.float32,
            batch_size: int = 1) -> Report:
    """Per-layer shapes, weights, biases, MACs, other ops, memory and receptive fields.

    ``input_shape`` is per sample, e.g. ``(3, 224, 224)``; it defaults to the model's declared
    input. Works before ``build``: no parameter is allocated. A shape that does not fit raises
    :class:`~convscope.analysis.diagnose.ShapeMismatch` naming the layer, the expected and
    actual sizes, the layers that produced them, and a fix.
    """
    if not isinstance(model, Layer):
        raise ConvscopeError(f"analyze expects a convscope model or layer, got {type(model).__name__}; "
                             "build one with cs.Sequential([...]) or cs.from_spec(spec)")
    if input_shape is None:
        input_shape = getattr(model, "input_shape", None) or getattr(model, "declared_input", None)
        if input_shape is None:
            raise ConvscopeError("analyze needs the per-sample input shape, e.g. "
                                 "cs.analyze(model, (3, 224, 224))")
    shape = _check_shape(input_shape)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConvscopeError(f"batch_size must be a positive integer, got {batch_size!r}")
    try:
        itemsize = np.dtype(dtype).itemsize
    except TypeError:
        raise ConvscopeError(f"dtype must be a NumPy dtype such as 'float32', got {dtype!r}") from None
    walker = _Walker(shape, itemsize, int(batch_size))
    fld = Field.of_input(shape)
    history: History = []
    if model.is_chain:
        out, fld = walker._chain(model.children(), "", 0, shape, fld, history)
    else:
        out, fld = walker.walk(model, model.type_name, 0, shape, fld, history)
    return Report(shape, out, walker.rows, np.dtype(dtype).name, int(batch_size), fld)


def check(model, input_shape) -> List[str]:
    """Problems with ``model`` on ``input_shape`` as sentences (empty when it fits); each is
    :mod:`.diagnose`'s sentence for the first layer that cannot take its input."""
    try:
        analyze(model, input_shape)
    except ConvscopeError as error:
        return [str(error)]
    return []
