"""Finding a layer by its dotted name (the names the analysis and state dict use)."""
from __future__ import annotations

from typing import List, Tuple

from ..errors import ConvscopeError
from ..layers.base import Layer


def model_of(source) -> Layer:
    """A built model from a model or a loaded checkpoint (anything with ``.model``)."""
    model = getattr(source, "model", source)
    if not isinstance(model, Layer):
        raise ConvscopeError(f"expected a convscope model or checkpoint, got {type(source).__name__}")
    if not model.built:
        raise ConvscopeError("the model is not built; call model.build(input_shape) or load a checkpoint")
    return model


def named_layers(model: Layer, prefix: str = "") -> List[Tuple[str, Layer]]:
    """Every layer below ``model`` with its dotted name, depth first, containers included;
    a branch's own list (``3.branches.1``) is skipped like in the analysis."""
    out = []
    for name, child in model.children():
        full = f"{prefix}{name}"
        if not _is_branch_list(model, child):
            out.append((full, child))
        out.extend(named_layers(child, f"{full}."))
    return out


def _is_branch_list(parent: Layer, child: Layer) -> bool:
    """A chain holding one branch of a forking container (a concat's branch, a residual's body)."""
    return child.is_chain and not parent.is_chain


def describe_choices(pairs) -> str:
    shown = [f"{n} ({l.type_name})" for n, l in pairs]
    if len(shown) > 30:
        shown = shown[:30] + [f"... {len(pairs) - 30} more"]
    return ", ".join(shown)


def find_layer(model: Layer, name: str, choices: List[Tuple[str, Layer]], what: str) -> Layer:
    """The layer called ``name`` among ``choices``; errors list the valid names."""
    for n, layer in choices:
        if n == str(name):
            return layer
    everything = dict(named_layers(model))
    if str(name) in everything:
        layer = everything[str(name)]
        raise ConvscopeError(f"layer {name} is {layer.type_name}, which has no {what}; choose one of: "
                             f"{describe_choices(choices)}")
    raise ConvscopeError(f"unknown layer {name!r}; valid layers for {what}: {describe_choices(choices)}")
