"""Exchange hooks for graphs and the merge/shape layers: torch descriptions and ONNX nodes.
No torch import here.

A Graph becomes :class:`.torch_modules.Graph` (``modules`` at ``paths``, one per layer object,
and the ``wiring`` of every node); merge and shape layers become the small modules of
:mod:`.torch_modules` or ``nn.Identity`` / ``nn.ChannelShuffle``.
"""
from __future__ import annotations

from typing import List

from .torch_export import TorchDesc, describe


def graph_desc(graph, path: str) -> TorchDesc:
    modules, paths, wiring = [], [], []
    for node in graph.nodes:
        first = graph.shares(node)
        if first is None:
            modules.append(describe(node.layer, f"{path}.{node.name}" if path not in ("", "model") else node.name))
            paths.append(node.name)
        wiring.append([node.name, first or node.name, list(node.inputs)])
    return TorchDesc("Graph", {"modules": modules, "paths": paths, "wiring": wiring,
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


def graph_to_onnx(graph, g, inputs: List[str], path: str) -> List[str]:
    """ONNX nodes of every graph node in running order (each layer's own ``to_onnx``)."""
    values = {"input": inputs[0]}
    prefix = f"{path}." if path else ""
    for node in graph.order:
        outs = node.layer.to_onnx(g, [values[r] for r in node.inputs], f"{prefix}{node.name}")
        if getattr(node.layer, "multi_output", False):
            values.update({f"{node.name}:{i}": name for i, name in enumerate(outs)})
        else:
            values[node.name] = outs[0]
    return [values[graph.outputs[0]]]
