"""The JSON spec (dict <-> model) and the one-line text form.

``from_spec({"input": [1, 8, 8], "layers": [{"type": "conv2d", "out_channels": 8, ...}]})``
returns an unbuilt :class:`~convscope.layers.Sequential` (a ``{"type": "graph", "nodes": [...],
"outputs": [...]}`` document a :class:`~convscope.layers.Graph`); ``model.spec()`` goes back.
Errors name the path inside the document, e.g.
``layers[3].branches[1][0]: unknown key 'kernal_size' (did you mean 'kernel_size'?)``.
"""
from .document import from_spec, layer_from_entry, to_spec
from .text import parse_text

__all__ = ["from_spec", "to_spec", "layer_from_entry", "parse_text"]
