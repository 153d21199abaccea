"""What a forward pass costs besides multiply-accumulates ("other ops"), per sample.

The contract counts MACs of convolutions and linear layers only (``C_out·H_out·W_out·
(C_in/groups)·k_h·k_w`` and ``in·out``; 1 MAC = 2 FLOPs). Everything else is reported apart,
in these categories, so it can be added or left out knowingly:

* ``bias_adds``: one add per output element of a layer with MACs and a bias.
* ``pooling``: one compare (max) or add (average) per input element a window visits,
  summed over all output elements (padding positions of a window included); adaptive and
  global pooling use their exact cell sizes.
* ``activations``: one op per element (relu, relu6, leaky_relu, sigmoid, tanh); softmax
  three (exp, sum, divide).
* ``normalization``: batch norm at inference is a scale and a shift, 2 per element; local
  response norm ``size`` multiply-adds for the sum of squares plus 2 (power, divide).
* ``elementwise_adds``: a residual's add, one per output element.

Dropout, flatten and concat cost nothing at inference.
"""
from __future__ import annotations

from typing import Dict, Sequence

from ..shapes import prod

CATEGORIES = ("bias_adds", "pooling", "activations", "normalization", "elementwise_adds")


def other_ops(layer, input_shape: Sequence[int], output_shape: Sequence[int],
              macs: int, param_shapes: Dict[str, tuple]) -> Dict[str, int]:
    """Non-MAC operations of one layer for one sample, by category (zeros left out): the bias
    adds of a layer with MACs and a bias, then what the layer declares
    (:meth:`convscope.layers.Layer.other_ops`)."""
    ops: Dict[str, int] = {}
    if macs and "bias" in param_shapes:
        ops["bias_adds"] = prod(output_shape)
    for category, value in layer.other_ops(tuple(input_shape), tuple(output_shape)).items():
        ops[category] = ops.get(category, 0) + int(value)
    return {k: v for k, v in ops.items() if v}
