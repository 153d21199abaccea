"""Analysis over graphs: per-node rows, and peak live activation memory for any model.

Rows of a :class:`~convscope.layers.graph.Graph` are its nodes in running (topological)
order, named by their node names (dotted names pass through: ``layer1.0.conv1``), nested
containers below them as usual. A merge node's receptive field is the union of its inputs'
fields (the widest path wins); a multi-output node's row shows its first piece as the output
shape, lists every piece in ``branch_shapes`` and counts the memory of all of them.

Peak live memory (inference)
----------------------------
Running the nodes in order, a tensor is alive from the node that makes it until its last
consumer has run (the model input from the start; the output to the end). While a node runs,
its inputs and its output are alive together with everything made earlier and still needed.
``peak = max over nodes of the elements alive while it runs`` (times itemsize and batch).
Inside a node, containers recurse: a Sequential's peak is the largest input-plus-output of
its layers; a Concat holds its input and the finished branches' outputs while the next branch
runs, then the joined result; a Residual holds the body's output while the shortcut runs.
Today's ``activation_bytes`` (every intermediate output summed) is the memory a training
step keeps for backward; the peak is what inference needs.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

from ..errors import ConvscopeError
from ..layers.base import Layer
from ..shapes import prod
from .receptive import Field, union

Shape = Tuple[int, ...]


def _arity(layer) -> object:
    return getattr(layer, "arity", 1)


def _multi(layer) -> bool:
    return bool(getattr(layer, "multi_output", False))


def _own_ops(row, layer, shapes: Sequence[Shape], out: Shape) -> None:
    """A merge's other-op counts depend on how many inputs it has (other_ops sees one shape)."""
    if not hasattr(layer, "other_ops_multi"):
        return  # single-input layers: counting already asked their other_ops
    ops = layer.other_ops_multi(list(shapes), out)
    ops = {k: int(v) for k, v in ops.items() if v}
    if "bias_adds" in row.other_ops:
        ops.setdefault("bias_adds", row.other_ops["bias_adds"])
    row.other_ops = ops


def walk_graph(walker, graph, name: str, depth: int, shape: Shape, fld: Field, history, own_row: bool = True):
    """Rows for ``graph`` (its own container row when ``own_row``) and its nodes; returns
    (output shape, output field) as :meth:`_Walker.walk` does."""
    from .report import Row

    shapes = graph.tensor_shapes(shape)  # one-line errors naming the node
    row = None
    first = len(walker.rows)
    if own_row:
        row = Row(name, graph.type_name, depth, True, shape, shapes[graph.outputs[0]], layer=graph, field_in=fld)
        walker.rows.append(row)
        first = len(walker.rows)
    inner_depth = depth + 1 if own_row else depth
    fields: Dict[str, Field] = {"input": fld}
    for node in graph.order:
        path = f"{name}.{node.name}" if name else node.name
        ins = [shapes[r] for r in node.inputs]
        in_fields = [fields[r] for r in node.inputs]
        layer = node.layer
        if _arity(layer) is None or _multi(layer):
            outs = graph.node_outputs(node, ins)
            out_field = union(in_fields)
            pieces = list(outs.values())
            node_row = Row(path, getattr(layer, "spec_type", layer.type_name), inner_depth, False, ins[0], pieces[0],
                           layer=layer, window=None, field_in=in_fields[0], field=out_field)
            walker._count(node_row, layer, ins[0], pieces[0])
            node_row.memory_bytes = sum(prod(p) for p in pieces) * walker.itemsize * walker.batch_size
            if len(pieces) > 1 or len(ins) > 1:
                node_row.branch_shapes = list(ins) if len(ins) > 1 else pieces
            _own_ops(node_row, layer, ins, pieces[0])
            walker.rows.append(node_row)
            history.append((path, layer, ins[0], pieces[0]))
            for ref in outs:
                fields[ref] = out_field
            continue
        start = len(walker.rows)
        out, out_field = walker.walk(layer, path, inner_depth, ins[0], in_fields[0], history)
        if len(walker.rows) > start and not walker.rows[start].container:
            _own_ops(walker.rows[start], layer, ins, out)
        fields[node.name] = out_field
    out_name = graph.outputs[0]
    out, out_field = shapes[out_name], fields[out_name]
    if row is not None:
        row.output_shape, row.field = out, out_field
        walker._count(row, graph, shape, out)
        inner = walker.rows[first:]
        row.subtree_params = sum(r.params for r in inner if r.shared_with is None)
        row.subtree_macs = sum(r.macs for r in inner)
        history.append((name, graph, shape, out))
    return out, out_field


# ----- peak live memory ---------------------------------------------------------------------

def peak_elements(layer: Layer, in_shapes: Sequence[Shape]) -> Tuple[int, int]:
    """(peak elements alive while ``layer`` runs, including its inputs and output; elements
    of its output) for one sample."""
    kind = layer.type_name
    if kind == "graph":
        return _graph_peak(layer, in_shapes[0])
    if kind == "sequential":
        shape, peak = tuple(in_shapes[0]), prod(in_shapes[0])
        for _, child in layer.children():
            child_peak, _ = peak_elements(child, [shape])
            peak = max(peak, child_peak)
            shape = child.output_shape(shape)
        return peak, prod(shape)
    if kind == "concat" and layer.children():
        x = prod(in_shapes[0])
        done, peak = 0, x
        for _, branch in layer.children():
            branch_peak, branch_out = peak_elements(branch, in_shapes)
            peak = max(peak, done + branch_peak)
            done += branch_out
        out = prod(layer.output_shape(in_shapes[0]))
        return max(peak, x + done + out), out
    if kind == "residual":
        x = prod(in_shapes[0])
        body_peak, body_out = peak_elements(layer.body, in_shapes)
        if layer.shortcut is not None:
            short_peak, short_out = peak_elements(layer.shortcut, in_shapes)
        else:
            short_peak, short_out = x, 0
        return max(body_peak, body_out + short_peak, x + body_out + short_out + body_out), body_out
    if _multi(layer):
        outs = sum(prod(s) for s in layer.output_shapes(in_shapes[0]))
        return sum(prod(s) for s in in_shapes) + outs, outs
    if _arity(layer) is None:
        out = prod(layer.output_shape_multi(list(in_shapes)))
    else:
        out = prod(layer.output_shape(in_shapes[0]))
    return sum(prod(s) for s in in_shapes) + out, out


def _graph_peak(graph, input_shape: Shape) -> Tuple[int, int]:
    shapes = graph.tensor_shapes(input_shape)
    readers = graph.consumers()
    left = {ref: len(users) for ref, users in readers.items()}
    output = graph.outputs[0]
    live: Dict[str, int] = {"input": prod(input_shape)}
    peak = live["input"]
    for node in graph.order:
        ins = [shapes[r] for r in node.inputs]
        node_peak, _ = peak_elements(node.layer, ins)
        mine = set(node.inputs)
        others = sum(n for ref, n in live.items() if ref not in mine)
        peak = max(peak, others + node_peak)
        for ref, shape in graph.node_outputs(node, ins).items():
            live[ref] = prod(shape)
        for ref in node.inputs:
            left[ref] -= 1
            if left[ref] == 0 and ref != output:
                live.pop(ref, None)
        for ref in list(live):  # pieces nobody reads are freed at once
            if ref != output and ref not in readers and ref != "input":
                live.pop(ref)
    return peak, prod(shapes[output])


def peak_activation_bytes(model: Layer, input_shape: Shape, itemsize: int, batch_size: int) -> int:
    """Peak bytes of activations alive at once during inference (the input included)."""
    try:
        peak, _ = peak_elements(model, [tuple(input_shape)])
    except ConvscopeError:
        raise
    return peak * itemsize * batch_size
