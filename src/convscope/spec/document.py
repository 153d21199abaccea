"""Spec dict -> layers, with errors that name where in the document the problem is."""
from __future__ import annotations

import difflib
import inspect
import math
from typing import Any, List

from ..errors import ConvscopeError
from ..layers.base import Layer, _check_shape
from ..layers.containers import Sequential
from ..layers.registry import LAYER_TYPES


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _layer_list(value: Any, path: str) -> List[Layer]:
    if not isinstance(value, list):
        raise ConvscopeError(f"{path}: expected a list of layers, got {type(value).__name__}")
    return [layer_from_entry(entry, f"{path}[{i}]") for i, entry in enumerate(value)]


class EntryParser:
    """What a layer class's :meth:`~convscope.layers.Layer.from_spec_entry` may use: read
    nested layer lists, check keys, and build from the constructor's keyword arguments."""

    @staticmethod
    def layers(value: Any, path: str) -> List[Layer]:
        """A list of layer entries at ``path`` (a container's ``layers``, ``body``, a branch)."""
        return _layer_list(value, path)

    @staticmethod
    def check_keys(kwargs: dict, allowed: set, path: str) -> None:
        _check_keys(kwargs, allowed, path)

    @staticmethod
    def construct(cls, kwargs: dict, path: str) -> Layer:
        """``cls(**kwargs)`` after checking the keys against the constructor's arguments."""
        signature = inspect.signature(cls.__init__)
        names = [n for n in list(signature.parameters)[1:]]
        _check_keys(kwargs, set(names), path)
        missing = [n for n in names if signature.parameters[n].default is inspect.Parameter.empty
                   and n not in kwargs]
        if missing:
            raise ConvscopeError(f"{path}: {cls.type_name} needs {', '.join(repr(m) for m in missing)}")
        return cls(**kwargs)


def layer_from_entry(entry: Any, path: str = "layers[0]") -> Layer:
    """Build one (unbuilt) layer from its spec entry ``{"type": ..., **kwargs}``; the layer's
    class reads its own keys (:meth:`~convscope.layers.Layer.from_spec_entry`)."""
    if not isinstance(entry, dict):
        raise ConvscopeError(f"{path}: expected an object with a 'type', got {entry!r}")
    if "type" not in entry:
        raise ConvscopeError(f"{path}: missing 'type' (one of {', '.join(sorted(LAYER_TYPES))})")
    kind = entry["type"]
    if not isinstance(kind, str) or kind not in LAYER_TYPES:
        raise ConvscopeError(f"{path}: unknown layer type {kind!r}{_suggest(str(kind), LAYER_TYPES)}")
    kwargs = {k: v for k, v in entry.items() if k != "type"}
    if kind == "concat" and "branches" not in kwargs:  # the merge node (a graph's concat), not the container
        from .graph import merge_concat
        return merge_concat(kwargs, path)
    try:
        return LAYER_TYPES[kind].from_spec_entry(kwargs, path, EntryParser)
    except ConvscopeError as error:
        if str(error).startswith(path):  # already names where it is
            raise
        raise ConvscopeError(f"{path}: {error}") from None
    except TypeError as error:  # a value of a type the constructor cannot use
        raise ConvscopeError(f"{path}: {error}") from None


def _check_keys(kwargs: dict, allowed: set, path: str) -> None:
    for key in kwargs:
        if key not in allowed:
            raise ConvscopeError(f"{path}: unknown key {key!r}{_suggest(key, allowed)}")


def check_document(value: Any, where: str = "spec", count_layers: bool = True) -> None:
    """Walk a JSON-like document without recursion: nesting at most ``limits.MAX_SPEC_DEPTH``
    and at most ``limits.MAX_LAYERS`` layer entries. A document that contains itself (possible
    from Python) has unbounded depth and is refused the same way."""
    from .. import limits

    stack, layers = [(value, 0)], 0
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if count_layers and "type" in item:
                layers += 1
                if layers > limits.MAX_LAYERS:
                    raise limits.exceeded(f"{where}: the number of layers", layers, "MAX_LAYERS")
            children = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth >= limits.MAX_SPEC_DEPTH:
            raise limits.exceeded(f"{where}: the nesting depth", depth + 1, "MAX_SPEC_DEPTH", "levels")
        stack.extend((child, depth + 1) for child in children)


def from_spec(spec: Any) -> Layer:
    """Model from a spec document ``{"input": [C, H, W] (optional), "layers": [...]}`` (a
    Sequential) or ``{"input"?, "type": "graph", "nodes": [...], "outputs": [...]}`` (a Graph).

    A bare list of layer entries is accepted too. The model is unbuilt; when the spec has an
    ``input``, ``model.build()`` needs no argument.
    """
    check_document(spec)
    if isinstance(spec, list):
        spec = {"layers": spec}
    if not isinstance(spec, dict):
        raise ConvscopeError(f"a spec must be an object with 'layers', got {type(spec).__name__}")
    if spec.get("type") == "graph":
        return _graph_document(spec)
    _check_keys(spec, {"input", "layers", "name", "source", "notes"}, "spec")
    if "layers" not in spec:
        raise ConvscopeError("spec: missing 'layers' (a list of layer objects)")
    layers = _layer_list(spec["layers"], "layers")
    shape = None
    if spec.get("input") is not None:
        _check_input_values(spec["input"])
        try:
            shape = _check_shape(spec["input"])
        except ConvscopeError as error:
            raise ConvscopeError(f"input: {error}") from None
    return Sequential(layers, input_shape=shape)


def _input_shape(spec: dict):
    if spec.get("input") is None:
        return None
    _check_input_values(spec["input"])
    try:
        return _check_shape(spec["input"])
    except ConvscopeError as error:
        raise ConvscopeError(f"input: {error}") from None


def _graph_document(spec: dict):
    """``{"input"?, "type": "graph", "nodes": [...], "outputs": [...]}`` -> an unbuilt Graph."""
    from .graph import graph_from_entry
    _check_keys(spec, {"input", "type", "nodes", "outputs", "name", "source", "notes"}, "spec")
    kwargs = {k: spec[k] for k in ("nodes", "outputs") if k in spec}
    return graph_from_entry(kwargs, "", layer_from_entry, input_shape=_input_shape(spec))


def _check_input_values(value: Any) -> None:
    """Reject what int() would silently accept or crash on: booleans, inf, NaN, nested lists."""
    if isinstance(value, (list, tuple)) and all(
            isinstance(v, int) and not isinstance(v, bool)
            or isinstance(v, float) and math.isfinite(v) for v in value):
        return
    raise ConvscopeError(f"input: expected a list of positive integers such as [3, 32, 32], got "
                         f"{str(value)[:80]}")


def to_spec(model: Layer) -> dict:
    """Spec document for a model (a Sequential gives ``{"input"?, "layers"}``)."""
    if model.is_chain or model.type_name == "graph":  # both are whole documents
        return model.spec()
    return {"layers": [model.spec_entry()]}
