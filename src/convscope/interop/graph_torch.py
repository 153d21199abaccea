"""Exchange hooks for graphs and the merge/shape layers: torch descriptions, module
instantiation, generated code, ONNX nodes. No torch import at module level.

A Graph becomes :class:`.graph_modules.Graph` (``TorchDesc("Graph", {"names", "modules",
"inputs", "output"})``, ``modules[i]`` a TorchDesc or, for a node reusing another node's
layer, that node's name); merge and shape layers become the small modules of
:mod:`.graph_modules` or ``nn.Identity`` / ``nn.ChannelShuffle``.
"""
from __future__ import annotations

from typing import List

from .torch_export import TorchDesc

#: Classes of :mod:`.graph_modules`, in the order generated code defines them.
MODULE_NAMES = ["Graph", "Add", "Mul", "Cat", "Split", "Chunk", "Reshape", "Permute", "Pad", "Mean"]


def graph_desc(graph, path: str) -> TorchDesc:
    from .torch_export import describe
    names, modules, inputs = [], [], []
    for node in graph.nodes:
        first = graph.shares(node)
        names.append(node.name)
        modules.append(first if first is not None
                       else describe(node.layer, f"{path}.{node.name}" if path != "model" else node.name))
        inputs.append(list(node.inputs))
    return TorchDesc("Graph", {"names": names, "modules": modules, "inputs": inputs,
                               "output": graph.outputs[0]}, custom=True)


def merge_desc(layer) -> TorchDesc:
    kind = {"add": "Add", "mul": "Mul", "cat": "Cat"}[layer.type_name]
    return TorchDesc(kind, {"dim": layer.dim} if kind == "Cat" else {}, custom=True)


def shape_desc(layer) -> TorchDesc:
    kind = layer.type_name
    if kind == "identity":
        return TorchDesc("Identity")
    if kind == "channel_shuffle":
        return TorchDesc("ChannelShuffle", {"groups": layer.groups})
    if kind in ("permute", "transpose"):
        return TorchDesc("Permute", {"dims": list(layer._perm(layer.input_shape))}, custom=True)
    if kind == "reshape":
        return TorchDesc("Reshape", {"shape": list(layer.shape)}, custom=True)
    if kind == "pad":
        return TorchDesc("Pad", {"pad": list(layer.pad), "value": layer.value}, custom=True)
    if kind == "mean":
        return TorchDesc("Mean", {"dim": list(layer.dim), "keepdim": layer.keepdim}, custom=True)
    if kind == "split":
        sizes = layer.split_size_or_sections
        return TorchDesc("Split", {"split_size_or_sections": list(sizes) if isinstance(sizes, tuple) else sizes,
                                   "dim": layer.dim}, custom=True)
    if kind == "chunk":
        return TorchDesc("Chunk", {"chunks": layer.chunks, "dim": layer.dim}, custom=True)
    raise KeyError(kind)


def instantiate(desc: TorchDesc, torch, instantiate_any):
    """The torch module for a description of ours (``instantiate_any`` builds nested ones)."""
    from . import graph_modules
    if desc.kind == "Graph":
        args = desc.args
        modules = [m if isinstance(m, str) else instantiate_any(m, torch) for m in args["modules"]]
        return graph_modules.Graph(list(zip(args["names"], modules, args["inputs"])), args["output"])
    return graph_modules.CUSTOM[desc.kind](**desc.args)


def render_graph(desc: TorchDesc, depth: int, render, literal, indent: str) -> str:
    """``Graph([(name, module, inputs), ...], output)`` as source; every name through ``literal``."""
    inner = indent * (depth + 1)
    items = []
    for name, module, inputs in zip(desc.args["names"], desc.args["modules"], desc.args["inputs"]):
        text = literal(module) if isinstance(module, str) else render(module, depth + 1)
        items.append(f"{inner}({literal(name)}, {text}, {literal(list(inputs))}),\n")
    return "Graph([\n" + "".join(items) + indent * depth + f"], {literal(desc.args['output'])})"


def graph_to_onnx(graph, g, inputs: List[str], path: str, emit) -> List[str]:
    """ONNX nodes of every graph node in running order; ``emit(g, layer, x, path)`` emits
    layers without a ``to_onnx`` hook of their own."""
    values = {"input": inputs[0]}
    prefix = f"{path}." if path else ""
    for node in graph.order:
        xs = [values[r] for r in node.inputs]
        layer, where = node.layer, f"{prefix}{node.name}"
        if getattr(layer, "multi_output", False):
            for i, name in enumerate(layer.to_onnx(g, xs, where)):
                values[f"{node.name}:{i}"] = name
        elif getattr(layer, "arity", 1) is None:
            values[node.name] = layer.to_onnx(g, xs, where)[0]
        else:
            values[node.name] = emit(g, layer, xs[0], where)
    return [values[graph.outputs[0]]]
