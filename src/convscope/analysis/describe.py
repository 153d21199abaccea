"""Short human names for layers and axes, shared by explanations, diagnostics and tables."""
from __future__ import annotations

from typing import Tuple

from ..layers.base import _compact


def call_text(layer) -> str:
    """A layer as it would be written in the one-line text form: ``maxpool2d(3, stride=2)``.

    Required arguments are positional, the rest appear only when they differ from the default.
    Containers are named by type alone.
    """
    if layer.children():
        return layer.type_name
    try:
        config = layer._non_default_config()
    except (AttributeError, TypeError):
        return layer.type_name
    args = []
    for name, (value, positional) in config.items():
        text = repr(_compact(value))
        args.append(text if positional else f"{name}={text}")
    return f"{layer.type_name}({', '.join(args)})" if args else layer.type_name


def axis_names(spatial_axes: int) -> Tuple[str, ...]:
    """Symbols for spatial axes: ('H', 'W') for images, ('L',) for sequences."""
    if spatial_axes == 1:
        return ("L",)
    if spatial_axes == 2:
        return ("H", "W")
    if spatial_axes == 3:
        return ("D", "H", "W")
    return tuple(f"n{i}" for i in range(spatial_axes))
