"""Graph specs: ``{"type": "graph", "nodes": [{"name", "type", ..., "inputs"}], "outputs": [...]}``.

A node entry is a layer entry (any type, containers included) plus ``name`` and ``inputs``;
a node that reuses another node's layer (shared parameters) is ``{"name", "shares", "inputs"}``.
Errors name the path in the document (``layers[2].nodes[3]`` or ``nodes[3]``) and the node.
"""
from __future__ import annotations

from typing import Any, Callable

from ..errors import ConvscopeError
from ..layers.graph import Graph
from ..layers.merge import Cat

_NODE_KEYS = {"name", "inputs", "shares"}


def graph_from_entry(kwargs: dict, path: str, layer_from_entry: Callable, input_shape=None) -> Graph:
    """A Graph from an entry's keys (without ``type``); ``path`` prefixes error messages."""
    prefix = f"{path}." if path else ""
    for key in kwargs:
        if key not in ("nodes", "outputs"):
            raise ConvscopeError(f"{path or 'spec'}: unknown key {key!r} (a graph has 'nodes' and 'outputs')")
    nodes, outputs = kwargs.get("nodes"), kwargs.get("outputs")
    if not isinstance(nodes, list) or not nodes:
        raise ConvscopeError(f"{prefix}nodes: expected a non-empty list of node objects")
    if outputs is None:
        raise ConvscopeError(f"{path or 'spec'}: a graph needs 'outputs', e.g. [\"{_name(nodes[-1])}\"]")
    layers, built = {}, []
    for i, entry in enumerate(nodes):
        where = f"{prefix}nodes[{i}]"
        if not isinstance(entry, dict):
            raise ConvscopeError(f"{where}: expected an object with 'name', 'type' and 'inputs', got {entry!r:.60}")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise ConvscopeError(f"{where}: every node needs a 'name' (a non-empty string)")
        if "inputs" not in entry:
            raise ConvscopeError(f"{where} (node {name!r}): missing 'inputs' (e.g. [\"input\"])")
        if "shares" in entry:
            extra = set(entry) - _NODE_KEYS
            if extra:
                raise ConvscopeError(f"{where} (node {name!r}): a node with 'shares' takes no layer keys, "
                                     f"got {sorted(extra)[0]!r}")
            if entry["shares"] not in layers:
                raise ConvscopeError(f"{where} (node {name!r}): shares {entry['shares']!r}, which is not an "
                                     "earlier node with a layer")
            layer = layers[entry["shares"]]
        else:
            layer = layer_from_entry({k: v for k, v in entry.items() if k not in _NODE_KEYS}, where)
        layers.setdefault(name, layer)
        built.append((name, layer, entry["inputs"]))
    try:
        return Graph(built, outputs, input_shape=input_shape)
    except ConvscopeError as error:
        raise ConvscopeError(f"{path + ': ' if path else ''}{error}") from None


def _name(entry: Any) -> str:
    return entry.get("name", "out") if isinstance(entry, dict) else "out"


def merge_concat(kwargs: dict, path: str):
    """``{"type": "concat"}`` without ``branches``: the merge layer (a graph node joining its inputs)."""
    allowed = {"dim"}
    for key in kwargs:
        if key not in allowed:
            raise ConvscopeError(f"{path}: unknown key {key!r} (a concat node takes 'dim'; a concat "
                                 "container takes 'branches')")
    try:
        return Cat(**kwargs)
    except ConvscopeError as error:
        raise ConvscopeError(f"{path}: {error}") from None
