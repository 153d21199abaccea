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

from ..shapes import adaptive_window, prod

CATEGORIES = ("bias_adds", "pooling", "activations", "normalization", "elementwise_adds")

_ELEMENTWISE = {"relu": 1, "relu6": 1, "leaky_relu": 1, "sigmoid": 1, "tanh": 1, "softmax": 3}


def other_ops(layer, input_shape: Sequence[int], output_shape: Sequence[int],
              macs: int, param_shapes: Dict[str, tuple]) -> Dict[str, int]:
    """Non-MAC operations of one layer for one sample, by category (zeros left out)."""
    kind = layer.type_name
    n_out = prod(output_shape)
    ops: Dict[str, int] = {}
    if macs and "bias" in param_shapes:
        ops["bias_adds"] = n_out
    if kind in _ELEMENTWISE:
        ops["activations"] = _ELEMENTWISE[kind] * n_out
    elif kind.startswith("batchnorm"):
        ops["normalization"] = 2 * n_out
    elif kind == "local_response_norm":
        ops["normalization"] = (int(getattr(layer, "size", 1)) + 2) * n_out
    elif kind == "residual":
        ops["elementwise_adds"] = n_out
    elif "pool" in kind:
        ops["pooling"] = _pooling_ops(layer, input_shape, output_shape)
    return {k: v for k, v in ops.items() if v}


def _pooling_ops(layer, input_shape, output_shape) -> int:
    """Window elements visited, summed over every output element."""
    channels = int(output_shape[0])
    spatial_in = [int(n) for n in input_shape[1:]]
    spatial_out = [int(n) for n in output_shape[1:]]
    window = layer.window(tuple(input_shape))
    if isinstance(window, tuple) and len(window) == len(spatial_out) and "adaptive" not in layer.type_name:
        return channels * prod(spatial_out) * prod(k for k, _s, _p, _d in window)
    if len(spatial_out) != len(spatial_in):  # global pooling that drops the spatial axes
        return prod(input_shape)
    # Adaptive: cell i spans [floor(i·n/m), ceil((i+1)·n/m)); separable, so per-axis sums multiply.
    total = channels
    for n, m in zip(spatial_in, spatial_out):
        total *= sum(end - start for start, end in (adaptive_window(i, n, m) for i in range(m)))
    return total
