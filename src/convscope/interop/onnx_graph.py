"""ONNX -> cs.Graph: read any graph of supported nodes, node by node.

:func:`.onnx_import.from_onnx` first tries the structural reader (chains, concats, residuals
-> a Sequential); files that are not built that way come here and become a
:class:`~convscope.layers.graph.Graph` whose nodes are named after the ONNX weights
(``features.0.weight`` -> node ``features.0``), so state-dict keys equal torch's.

One pass over the nodes in file order (ONNX requires a topological order):

* nodes whose inputs are all constants (``Shape`` of an activation included) are folded
  (:mod:`.onnx_fold`);
* multi-node patterns are recognised first (:mod:`.onnx_patterns`: GELU spelled with Erf,
  x·sigmoid(x), x·hardsigmoid(x), a LayerNorm spelled with ReduceMean/Sub/Pow/Sqrt/Div);
* every other node becomes one layer (or a Pad and a layer, for a convolution with uneven
  pads): the structural reader's converters for Conv, Gemm, pools, norms, activations ...,
  plus Concat (any axis) -> cat, Add/Mul of activations -> add/mul, Mul/Div by a
  per-channel or scalar constant -> layer_scale, MatMul + Add -> linear, Transpose ->
  permute, Reshape/Squeeze/Unsqueeze -> flatten or reshape, Split/Slice -> split pieces,
  Pad -> pad, ReduceMean -> mean, HardSigmoid/HardSwish/Gelu/LayerNormalization -> their
  layers; Identity and Dropout disappear.
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Tuple

import numpy as np

from .. import layers as L
from ..errors import ConvscopeError, format_shape
from ..layers.base import Layer
from ..shapes import prod
from . import onnx_fold, onnx_patterns
from .onnx_import import MAX_ELEMENTS, _check_size, _Reader, _flatten_for, _float, one_to_one
from .onnx_checks import constant_value

_ALIASES = ("Identity", "Dropout")


class GraphReader(_Reader):
    """Reads ``proto`` into (nodes, output name); :meth:`read` does the work."""

    def __init__(self, proto, onnx, path: str, consts: Dict[str, np.ndarray]):  # pylint: disable=super-init-not-called
        self.onnx, self.path = onnx, path
        graph = proto.graph
        self.opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=1)
        self.consts = consts  # {initializer name: checked array} (onnx_checks.initializer_values)
        self.graph = graph
        self.nodes, self.shape_nodes, self.visited, self.weights = [], {}, set(), []
        self.consumers: Dict[str, list] = {}  # the structural helpers' look-ahead stays off
        self.producer: Dict[str, int] = {}
        inputs = [i for i in graph.input if i.name not in self.consts]
        if len(inputs) != 1 or len(graph.output) != 1:
            raise ConvscopeError(f"{path} has {len(inputs)} inputs and {len(graph.output)} outputs; convscope "
                                 "reads models with one input and one output")
        self.input, self.output = inputs[0], graph.output[0].name
        dims = inputs[0].type.tensor_type.shape.dim
        self.export_batch = dims[0].dim_value if dims and dims[0].HasField("dim_value") else None
        self.acts: Dict[str, Tuple[str, tuple]] = {}  # ONNX value -> (graph input name, per-sample shape)
        self.records: List[list] = []  # [name, layer, inputs]
        self.by_name: Dict[str, list] = {}
        self.uses: Dict[str, int] = {}
        for node in graph.node:
            for name in node.input:
                self.uses[name] = self.uses.get(name, 0) + 1
        self._refuse_unknown_ops(graph)
        #: ONNX value -> activation it flattens with the batch (Reshape to [-1]; see _g_merged)
        self.merged: Dict[str, str] = {}
        self.folded_bn = 0  # parameters of batch norms the exporter folded away (see notes)

    # ----- records --------------------------------------------------------------------------
    def _node_name(self, node, hint: Optional[str] = None) -> str:
        base = None
        if hint and hint.endswith(".weight"):
            base = hint[: -len(".weight")]
        if not base:
            base = re.sub(r"[/:]+", ".", node.name or node.op_type).strip(".") or node.op_type
        if base == "input":
            base = "input_"
        name, k = base, 1
        while name in self.by_name:
            k += 1
            name = f"{base}_{k}"
        return name

    def add(self, node, layer: Layer, inputs: List[str], out: str, hint: Optional[str] = None, weights=None) -> str:
        name = self._node_name(node, hint)
        shapes = [self.acts[i][1] for i in inputs]
        sources = [self.acts[i][0] for i in inputs]
        try:
            if out is None:
                shape = None
            elif layer.arity == 1:
                shape = tuple(layer.output_shape(shapes[0]))
            else:
                shape = tuple(layer.output_shape_multi(shapes))
        except ConvscopeError as error:
            raise self.fail(node, f"becomes {layer!r}, which does not fit its input "
                                  f"{', '.join(format_shape(s) for s in shapes)}: {error}") from None
        record = [name, layer, sources]
        self.records.append(record)
        self.by_name[name] = record
        if weights:
            self.weights.append((layer, {k: v for k, v in weights.items() if v is not None}))
        if out is not None:
            _check_size(self.path, f"{self.name(node)}'s output", shape)
            self.acts[out] = (name, shape)
        return name

    # ----- the pass ---------------------------------------------------------------------------
    def read(self, shape) -> Tuple[List[list], str]:
        _check_size(self.path, f"the input {self.input.name!r}", shape)
        self.acts[self.input.name] = ("input", tuple(shape))
        nodes = list(self.graph.node)
        for node in nodes:  # patterns look ahead at constants written later in the file
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                self.consts[node.output[0]] = self._constant(node)
        skip = set()
        for index, node in enumerate(nodes):
            if index in skip:
                continue
            op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
            if op == "Constant":
                self.consts[node.output[0]] = self._constant(node)
                continue
            live = [n for n in node.input if n and n not in self.consts]
            if op == "Shape" and live and live[0] in self.acts:
                attrs = self.attrs(node)
                full = np.array((onnx_fold.PROBE_BATCH,) + self.acts[live[0]][1], dtype=np.int64)
                self.consts[node.output[0]] = full[attrs.get("start", 0):attrs.get("end", len(full))]
                continue
            if not live:
                args = [self.consts[n] if n else None for n in node.input]
                value = onnx_fold.fold(op, args, self.attrs(node))
                if value is None:
                    raise self.unsupported(node, op)
                self.consts[node.output[0]] = value
                continue
            merged = [n for n in live if n in self.merged]
            if merged:
                self._g_merged(node, op, merged[0])
                continue
            missing = [n for n in live if n not in self.acts]
            if missing:
                raise self.fail(node, f"reads {missing[0]!r}, which no node before it computes")
            match = onnx_patterns.match(self, nodes, index)
            if match is not None:
                used, layer, source, out = match[:4]
                skip.update(used)
                hint = next((n for i in used for n in nodes[i].input if n.endswith(".weight")), None)
                self.add(node, layer, [source], out, hint=hint, weights=match[4] if len(match) > 4 else None)
                continue
            self.convert(node, op, live)
        if self.output not in self.acts:
            raise ConvscopeError(f"{self.path}: the output {self.output!r} does not depend on the input")
        return self.records, self.acts[self.output][0]

    def _constant(self, node):
        return constant_value(self.onnx, node, lambda: f"{self.path}: {self.name(node)}")

    def _refuse_unknown_ops(self, graph) -> None:
        """All operators no reader knows, in one line: counted, the first node named, the
        nearest supported operator for each."""
        from .onnx_import import supported_ops
        import collections
        import difflib
        known = supported_ops()
        counts, first = collections.Counter(), None
        for node in graph.node:
            op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
            if op not in known:
                counts[op] += 1
                first = first or node
        if counts:
            listed = ", ".join(f"{op} ({n})" if n > 1 else op for op, n in sorted(counts.items()))
            nearest = "; ".join(f"{op} -> {(difflib.get_close_matches(op, known, n=1, cutoff=0.0) or ['none'])[0]}"
                                for op in sorted(counts))
            raise ConvscopeError(f"{self.path} uses operators convscope cannot read: {listed} (first: "
                                 f"{self.name(first)}; nearest supported: {nearest}); supported: {', '.join(known)}")

    def unsupported(self, node, op: str) -> ConvscopeError:
        from .onnx_import import supported_ops
        import difflib
        known = supported_ops()
        near = difflib.get_close_matches(op, known, n=1, cutoff=0.0)
        return ConvscopeError(f"{self.path}: {self.name(node)} uses operator {op}, which convscope cannot read "
                              f"(nearest supported: {near[0] if near else 'none'}); supported: {', '.join(known)}")

    # ----- one node ---------------------------------------------------------------------------
    def convert(self, node, op: str, live: List[str]) -> None:
        shape = self.acts[live[0]][1]
        out = node.output[0]
        if op in _ALIASES:
            if op == "Dropout":
                self._op_Dropout(node, live[0], "", shape)  # refuses training mode
            self.acts[out] = self.acts[live[0]]
            return
        handler = getattr(self, f"_g_{op}", None)
        if handler is not None:
            handler(node, live, shape)
            return
        structural = getattr(self, f"_op_{op}", None) or self._one_to_one(op)
        if structural is None or op in ("Add", "Einsum", "Reshape", "MatMul"):
            raise self.unsupported(node, op)
        if len(live) != 1 or node.input[0] != live[0]:
            raise self.fail(node, f"reads the activations in an unexpected way (inputs {list(node.input)})")
        before = len(self.weights)
        result = structural(node, live[0], "", shape)
        layer = result[0] if isinstance(result, tuple) else result
        weights = self.weights[before:]
        del self.weights[before:]
        hint = node.input[1] if len(node.input) > 1 and node.input[1] in self.consts else None
        self.add(node, layer, live, out, hint=hint, weights=weights[0][1] if weights else None)

    def _op_Conv(self, node, tensor, stop, shape):
        attrs = self.attrs(node)
        pads = list(attrs.get("pads", []))
        n = len(pads) // 2
        if pads and pads[:n] != pads[n:] and attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"):
            raise _UnevenPads(pads)
        return super()._op_Conv(node, tensor, stop, shape)

    def _g_Conv(self, node, live, shape):
        try:
            layer = self._op_Conv(node, live[0], "", shape)
            source = live[0]
        except _UnevenPads as uneven:
            n = len(uneven.pads) // 2
            lo, hi = uneven.pads[:n], uneven.pads[n:]
            torch_pad = [v for axis in reversed(range(n)) for v in (lo[axis] - min(lo[axis], hi[axis]),
                                                                    hi[axis] - min(lo[axis], hi[axis]))]
            pad_out = f"{node.output[0]}::pad"
            self.add(node, L.Pad(torch_pad), live, pad_out, hint=None)
            even = [min(a, b) for a, b in zip(lo, hi)]
            del node.attribute[[a.name for a in node.attribute].index("pads")]
            node.attribute.append(self.onnx.helper.make_attribute("pads", even + even))
            layer, source = self._op_Conv(node, pad_out, "", self.acts[pad_out][1]), pad_out
        weights = self.weights.pop()[1]
        self.add(node, layer, [source], node.output[0], hint=node.input[1], weights=weights)

    def _g_Gemm(self, node, live, shape):
        layer = self._op_Gemm(node, live[0], "", shape)
        self.add(node, layer, live, node.output[0], hint=node.input[1], weights=self.weights.pop()[1])

    def _g_MatMul(self, node, live, shape):
        first, second = list(node.input)
        if first != live[0] or len(live) != 1 or self.consts[second].ndim != 2:
            raise self.fail(node, "is not x·W with a constant 2-D W (a linear layer); convscope has no other MatMul")
        weight = self.consts[second].T
        layer = L.Linear(int(weight.shape[0]), bias=False, in_features=int(weight.shape[1]) if len(shape) > 1 else None)
        self.add(node, layer, live, node.output[0], hint=second, weights={"weight": weight})

    def _binary(self, node, live, shape, cls):
        out = node.output[0]
        if len(live) == 2:
            self.add(node, cls(), live, out)
            return True
        other = [n for n in node.input if n != live[0]]
        if len(other) != 1:
            self.add(node, cls(), [live[0], live[0]], out)
            return True
        return False

    def _g_Add(self, node, live, shape):
        if self._binary(node, live, shape, L.Add):
            return
        const = np.asarray(self.consts[[n for n in node.input if n != live[0]][0]])
        name = self.acts[live[0]][0]
        record = self.by_name.get(name)
        layer = record[1] if record else None
        if isinstance(layer, L.Linear) and not layer.bias and self.uses.get(live[0], 0) == 1 \
                and const.size == layer.out_features:
            weights = next(w for l, w in self.weights if l is layer)
            record[1] = new = L.Linear(layer.out_features, bias=True, in_features=layer.in_features)
            self.weights = [(new if l is layer else l, w) for l, w in self.weights]
            weights["bias"] = const.reshape(-1)
            self.acts[node.output[0]] = self.acts[live[0]]
            del new  # the record holds it
            return
        raise self.fail(node, f"adds a constant of shape {const.shape} that does not follow a MatMul; "
                              "convscope has no layer that adds a constant")

    def _scale(self, node, live, shape, const, why: str):
        const = np.asarray(const, dtype=np.float64)
        while const.ndim > len(shape) and const.shape[0] == 1:
            const = const[0]
        per_channel = (shape[0],) + (1,) * (len(shape) - 1)
        if const.ndim <= len(shape) and const.size in (1, shape[0]) and \
                (const.size == 1 or const.shape[-len(shape):] == per_channel[-const.ndim:] and
                 const.ndim == len(shape)):
            gamma = np.broadcast_to(const.reshape(-1)[0] if const.size == 1 else const.reshape(per_channel),
                                    per_channel).copy()
            self.add(node, L.LayerScale(), live, node.output[0], weights={"layer_scale": gamma.astype(np.float32)})
            return
        raise self.fail(node, f"{why} by a constant of shape {const.shape}; convscope reads a scalar or "
                              f"per-channel {per_channel} factor (as layer_scale)")

    def _g_Mul(self, node, live, shape):
        if not self._binary(node, live, shape, L.Mul):
            self._scale(node, live, shape, self.consts[[n for n in node.input if n != live[0]][0]], "multiplies")

    def _g_Div(self, node, live, shape):
        if node.input[0] != live[0] or len(live) != 1:
            raise self.fail(node, "divides by the activations; convscope has no such layer")
        self._scale(node, live, shape, 1.0 / np.asarray(self.consts[node.input[1]], dtype=np.float64), "divides")

    def _g_Concat(self, node, live, shape):
        if len(live) != len([n for n in node.input if n]):
            raise self.fail(node, "joins activations with constants; convscope joins activations only")
        axis = int(self.attrs(node).get("axis", 1))
        if axis == 0 or axis == -(len(shape) + 1):
            raise self.fail(node, "joins along the batch axis; convscope joins along other axes only")
        self.add(node, L.Cat(dim=axis), list(node.input), node.output[0])

    def _g_Reshape(self, node, live, shape):
        target = [int(v) for v in np.asarray(self.const(node, 1, "target shape")).reshape(-1)]
        allowzero = self.attrs(node).get("allowzero", 0)
        if target == [-1]:  # batch and sample in one axis: only a Gather may follow (_g_merged)
            self.merged[node.output[0]] = live[0]
            return
        if not target or target[0] not in (0, -1, onnx_fold.PROBE_BATCH, self.export_batch) \
                or (allowzero and 0 in target):
            raise self.fail(node, f"reshapes to {target}; convscope keeps the batch as the first axis")
        rest = [shape[i - 1] if v == 0 and i - 1 < len(shape) else v for i, v in enumerate(target) if i > 0]
        if target[0] == -1:
            if -1 in rest:
                raise self.fail(node, f"reshapes to {target}: two entries are inferred (-1)")
        try:
            out = tuple(L.Reshape(rest).output_shape(shape))
        except ConvscopeError as error:
            raise self.fail(node, str(error)) from None
        self._view(node, live, shape, out)

    def _g_merged(self, node, op: str, flat: str) -> None:
        """A node reading ``flat`` = Reshape(x, [-1]), the whole batch as one axis. torch's
        dynamo exporter writes ``as_strided`` that way: Gather(flat, indices, axis=0) with
        constant indices of shape (N_export, *out). Read when every sample takes the same
        positions of its own values (indices[b] − b·S equal for all b, within [0, S), S the
        per-sample size): in order, a reshape to ``out``; in the order of a permutation of
        x's axes, a permute; otherwise refused."""
        source = self.merged[flat]
        shape = self.acts[source][1]
        size = prod(shape)
        why = "flattens the batch into its other axes (Reshape to [-1])"
        indices = self.consts.get(node.input[1]) if op == "Gather" and len(node.input) > 1 else None
        if indices is None or node.input[0] != flat or int(self.attrs(node).get("axis", 0)) != 0:
            raise self.fail(node, f"reads a tensor that {why}; convscope reads that only as as_strided "
                                  "(a Gather of constant positions) and keeps the batch as the first axis")
        indices = np.asarray(indices, dtype=np.int64)
        batch = self.export_batch
        if indices.ndim < 2 or batch is None or indices.shape[0] != batch:
            raise self.fail(node, f"gathers positions of shape {indices.shape} from a tensor that {why}; convscope "
                                  f"reads one row of positions per sample of the exported batch ({batch})")
        own = indices - (np.arange(batch) * size).reshape((batch,) + (1,) * (indices.ndim - 1))
        if (own != own[:1]).any() or own.min() < 0 or own.max() >= size:
            raise self.fail(node, f"gathers positions that mix samples from a tensor that {why}; "
                                  "convscope keeps each sample's values to itself")
        own, out = own[0], tuple(int(n) for n in indices.shape[1:])
        if np.array_equal(own.reshape(-1), np.arange(size)):
            self._view(node, [source], shape, out)
            return
        import itertools
        order = np.arange(size).reshape(shape)
        for perm in itertools.permutations(range(len(shape))):
            if order.transpose(perm).shape == out and np.array_equal(order.transpose(perm), own):
                self.add(node, L.Permute([0] + [p + 1 for p in perm]), [source], node.output[0])
                return
        raise self.fail(node, f"gathers positions from a tensor that {why} in an order that is neither a "
                              "reshape nor a permutation of its axes; convscope has no general gather")

    def _view(self, node, live, shape, out):
        if tuple(out) == tuple(shape):
            self.acts[node.output[0]] = self.acts[live[0]]
            return
        layer = _flatten_for(tuple(shape), tuple(out)) or L.Reshape(list(out))
        self.add(node, layer, live, node.output[0])

    def _g_Squeeze(self, node, live, shape):
        axes = onnx_fold._axes(self.attrs(node), [self.consts.get(n) for n in node.input], 1)
        rank = len(shape) + 1
        axes = set(range(1, rank)) if axes is None else {a % rank for a in axes}
        if 0 in axes:
            raise self.fail(node, "squeezes the batch axis")
        self._view(node, live, shape, tuple(n for i, n in enumerate(shape) if i + 1 not in axes or n != 1))

    def _g_Unsqueeze(self, node, live, shape):
        axes = onnx_fold._axes(self.attrs(node), [self.consts.get(n) for n in node.input], 1)
        rank = len(shape) + 1 + len(axes)
        out = [None] + list(shape)
        for axis in sorted(a % rank for a in axes):
            if axis == 0:
                raise self.fail(node, "inserts an axis before the batch")
            out.insert(axis, 1)
        self._view(node, live, shape, tuple(out[1:]))

    def _g_Flatten(self, node, live, shape):
        self.add(node, self._op_Flatten(node, live[0], "", shape), live, node.output[0])

    def _g_Transpose(self, node, live, shape):
        perm = list(self.attrs(node).get("perm", reversed(range(len(shape) + 1))))
        if perm[0] != 0:
            raise self.fail(node, f"permutes the batch axis (perm {perm}); convscope keeps it first")
        self.add(node, L.Permute(perm), live, node.output[0])

    def _g_Split(self, node, live, shape):
        attrs = self.attrs(node)
        axis = int(attrs.get("axis", 0))
        rank = len(shape) + 1
        if axis % rank == 0:
            raise self.fail(node, "splits the batch axis")
        sizes = attrs.get("split")
        if sizes is None and len(node.input) > 1 and node.input[1]:
            sizes = self.const(node, 1, "split sizes")
        n = shape[axis % rank - 1]
        if sizes is None:
            parts = int(attrs.get("num_outputs", len(node.output)))
            step = -(-n // parts)
            sizes = [min(step, n - s) for s in range(0, n, step)]
        sizes = [int(s) for s in np.asarray(sizes).reshape(-1)]
        name = self.add(node, L.Split(sizes, dim=axis), live, None)
        self._pieces(name, list(node.output), L.Split(sizes, dim=axis), shape)

    def _pieces(self, name, outputs, layer, shape):
        shapes = layer.output_shapes(shape) if hasattr(layer, "output_shapes") else None
        axis = layer._axis(shape)
        sizes = layer.sizes(shape)
        for i, out in enumerate(outputs):
            if out:
                piece = list(shape)
                piece[axis - 1] = sizes[i]
                self.acts[out] = (f"{name}:{i}", tuple(piece))
        del shapes

    def _g_Slice(self, node, live, shape):
        starts, ends = (np.asarray(self.const(node, i, w)).reshape(-1) for i, w in ((1, "starts"), (2, "ends")))
        axes = self.const(node, 3, "axes", optional=True)
        steps = self.const(node, 4, "steps", optional=True)
        axes = list(range(len(starts))) if axes is None else [int(a) for a in np.asarray(axes).reshape(-1)]
        steps = [1] * len(starts) if steps is None else [int(s) for s in np.asarray(steps).reshape(-1)]
        rank = len(shape) + 1
        cuts = [(a % rank, s, e) for a, s, e, st in zip(axes, starts, ends, steps)]
        effective = []
        for (axis, start, end), step in zip(cuts, steps):
            n = shape[axis - 1] if axis else None
            lo, hi, st = slice(int(start), int(end), step).indices(n if n else 1)
            if axis == 0:
                if lo == 0 and st == 1:
                    continue
                raise self.fail(node, "slices the batch axis")
            if st != 1:
                raise self.fail(node, f"slices with step {step}; convscope reads contiguous slices only")
            if (lo, hi) != (0, n):
                effective.append((axis, lo, hi, n))
        if not effective:
            self.acts[node.output[0]] = self.acts[live[0]]
            return
        if len(effective) > 1:
            raise self.fail(node, "slices several axes at once; convscope reads one")
        axis, lo, hi, n = effective[0]
        sizes = [s for s in (lo, hi - lo, n - hi) if s]
        index = 1 if lo else 0
        layer = L.Split(sizes, dim=axis)
        name = self.add(node, layer, live, None)
        self.acts[node.output[0]] = (f"{name}:{index}", tuple(n if i + 1 != axis else hi - lo
                                                          for i, n in enumerate(shape)))

    def _g_Pad(self, node, live, shape):
        attrs = self.attrs(node)
        mode = attrs.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode != "constant":
            raise self.fail(node, f"pads in mode {mode!r}; convscope pads with a constant")
        pads = attrs.get("pads")
        if pads is None:
            pads = self.const(node, 1, "pads")
        pads = [int(v) for v in np.asarray(pads).reshape(-1)]
        value = self.const(node, 2, "value", optional=True) if "pads" not in attrs else attrs.get("value", 0.0)
        value = 0.0 if value is None or np.size(value) == 0 else float(np.asarray(value).reshape(-1)[0])
        rank = len(shape) + 1
        axes = self.const(node, 3, "axes", optional=True) if len(node.input) > 3 else None
        axes = list(range(rank)) if axes is None else [int(a) % rank for a in np.asarray(axes).reshape(-1)]
        k = len(axes)
        widths = {axis: (pads[i], pads[i + k]) for i, axis in enumerate(axes)}
        if widths.get(0, (0, 0)) != (0, 0):
            raise self.fail(node, "pads the batch axis")
        last = max([a for a, w in widths.items() if w != (0, 0)], default=0)
        if not last:
            self.acts[node.output[0]] = self.acts[live[0]]
            return
        torch_pad = [v for axis in range(rank - 1, 0, -1) for v in widths.get(axis, (0, 0))]
        self.add(node, L.Pad(torch_pad, value=value), live, node.output[0])

    def _g_ReduceMean(self, node, live, shape):
        attrs = self.attrs(node)
        axes = onnx_fold._axes(attrs, [self.consts.get(n) for n in node.input], 1)
        rank = len(shape) + 1
        if axes is None:
            raise self.fail(node, "averages over every axis, batch included; convscope keeps the batch")
        if any(a % rank == 0 for a in axes):
            raise self.fail(node, "averages over the batch axis")
        self.add(node, L.Mean(axes, keepdim=bool(attrs.get("keepdims", 1))), live, node.output[0])

    def _g_HardSigmoid(self, node, live, shape):
        attrs = self.attrs(node)
        if not (np.isclose(attrs.get("alpha", 0.2), 1 / 6) and np.isclose(attrs.get("beta", 0.5), 0.5)):
            raise self.fail(node, f"has alpha {attrs.get('alpha', 0.2)} and beta {attrs.get('beta', 0.5)}; "
                                  "convscope's hardsigmoid is PyTorch's (alpha 1/6, beta 0.5)")
        self.add(node, L.Hardsigmoid(), live, node.output[0])

    def _g_Gelu(self, node, live, shape):
        approximate = self.attrs(node).get("approximate", b"none")
        approximate = approximate.decode() if isinstance(approximate, bytes) else approximate
        self.add(node, L.GELU(approximate=approximate), live, node.output[0])

    def _g_LayerNormalization(self, node, live, shape):
        attrs = self.attrs(node)
        axis = int(attrs.get("axis", -1))
        rank = len(shape) + 1
        axis %= rank
        if axis == 0:
            raise self.fail(node, "normalises over the batch axis")
        self.only_first_output(node)
        normalized = list(shape[axis - 1:])
        scale = self.const(node, 1, "scale")
        bias = self.const(node, 2, "bias", optional=True)
        layer = L.LayerNorm(normalized, eps=_float(attrs.get("epsilon", 1e-5)), bias=bias is not None)
        self.add(node, layer, live, node.output[0], hint=node.input[1],
                 weights={"weight": np.broadcast_to(scale, normalized).copy(),
                          "bias": None if bias is None else np.broadcast_to(bias, normalized).copy()})

    def _g_HardSwish(self, node, live, shape):
        self.add(node, L.Hardswish(), live, node.output[0])

    def _g_BatchNormalization(self, node, live, shape):
        layer = self._op_BatchNormalization(node, live[0], "", shape)
        self.add(node, layer, live, node.output[0], hint=node.input[1], weights=self.weights.pop()[1])


class _UnevenPads(Exception):
    def __init__(self, pads):
        super().__init__(pads)
        self.pads = list(pads)


__all__ = ["GraphReader", "MAX_ELEMENTS"]
del one_to_one
