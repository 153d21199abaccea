"""Analysis: walk a model over an input shape and explain every number.

``cs.analyze(model, (3, 224, 224))`` returns a :class:`Report` with per-layer rows (output
shape, weights, biases, params, buffers, MACs, other ops, activation memory, receptive field)
and totals; no weight is allocated. How the pieces connect:

* :mod:`.report`: the walk (containers included) and the Row/Report data,
* :mod:`.counting`: operations that are not MACs (bias adds, pooling, activations, ...),
* :mod:`.receptive`: receptive-field size, stride (jump) and start,
* :mod:`.derivations`: derivations, symbols then values (``(3·5·5 + 1)·32 = 2,432``),
* :mod:`.diagnose`: shape errors naming the layer, expected vs got, where it came from, a fix,
* :mod:`.format`: rich table, plain text, Markdown and JSON.
"""
from .diagnose import ShapeMismatch
from .format import markdown, plain_table, rich_table, to_json
from .receptive import Field
from .report import COUNTING_NOTE, Report, Row, analyze, check


def explain(model, input_shape=None, **kwargs) -> str:
    """Derivations of every number of ``analyze(model, input_shape)``, as text."""
    return analyze(model, input_shape, **kwargs).explain()


__all__ = ["analyze", "explain", "Report", "Row", "Field", "ShapeMismatch", "check",
           "markdown", "plain_table", "rich_table", "to_json", "COUNTING_NOTE"]
