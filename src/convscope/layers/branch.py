"""What ConvNeXt-style blocks put at the end of a residual branch: :class:`LayerScale`
(a learned per-channel scale) and :class:`StochasticDepth` (drop the whole branch of a sample).

Both keep the input's shape: input ``(N, C, *S)``, output the same.
"""
from __future__ import annotations

import numbers
from typing import ClassVar, Dict, List, Optional

import numpy as np

from ..errors import ConvscopeError, format_shape
from ..ops.dropout import dropout_backward, stochastic_depth_forward
from ..ops.norm import channel_scale_backward, channel_scale_forward
from ..shapes import prod
from .base import Layer, Shape
from .registry import register

__all__ = ["LayerScale", "StochasticDepth"]


@register
class LayerScale(Layer):
    """``y[n, c, ...] = γ[c]·x[n, c, ...]``, a learned scale per channel (Touvron et al. 2021's
    layer scale, as in ConvNeXt).

    Parameter ``layer_scale`` γ of shape (C, 1, ..., 1) (one 1 per spatial axis), named and
    shaped as torchvision's ConvNeXt ``CNBlock.layer_scale`` so state dicts map one to one;
    initialised to ``init_value`` (ConvNeXt: 1e-6). ``num_features`` (C) is inferred unless given.
    Other ops: one multiply per output element (category ``normalization``).
    """

    type_name = "layer_scale"
    family: ClassVar[str] = "norm"
    torch_class: ClassVar[Optional[str]] = None
    onnx_op: ClassVar[Optional[str]] = None

    def __init__(self, init_value: float = 1e-6, num_features: Optional[int] = None):
        super().__init__()
        if isinstance(init_value, bool) or not isinstance(init_value, numbers.Real) or not np.isfinite(init_value):
            raise ConvscopeError(f"{self.type_name}: init_value must be a finite number such as 1e-6, "
                                 f"got {init_value!r}")
        if num_features is not None and (isinstance(num_features, bool) or not isinstance(num_features, int)
                                         or num_features < 1):
            raise ConvscopeError(f"{self.type_name}: num_features must be a positive integer, got {num_features!r}")
        self.init_value = float(init_value)
        self.num_features = num_features

    def output_shape(self, input_shape: Shape) -> Shape:
        shape = tuple(input_shape)
        if self.num_features is not None and shape[0] != self.num_features:
            raise ConvscopeError(f"{self.type_name} was given num_features={self.num_features} but the input "
                                 f"{format_shape(shape)} has {shape[0]} channels; fix num_features or leave it out")
        return shape

    def param_shapes(self, input_shape: Shape) -> Dict[str, Shape]:
        shape = self.output_shape(input_shape)
        return {"layer_scale": (shape[0],) + (1,) * (len(shape) - 1)}

    def init_parameters(self, input_shape: Shape, rng: np.random.Generator) -> Dict[str, np.ndarray]:
        return {"layer_scale": np.full(self.param_shapes(input_shape)["layer_scale"], self.init_value)}

    def other_ops(self, input_shape: Shape, output_shape: Shape) -> Dict[str, int]:
        return {"normalization": prod(output_shape)}

    def window(self, input_shape: Shape):
        return None

    def _forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        y, self._cache = channel_scale_forward(x, self._params["layer_scale"].value)
        self._out_shape = y.shape
        return y

    def _backward(self, dy: np.ndarray) -> np.ndarray:
        dx, d_gamma = channel_scale_backward(dy, self._cache)
        self._params["layer_scale"].grad[...] = d_gamma
        return dx

    def torch_desc(self, path: str):
        from ..interop.torch_export import TorchDesc
        return TorchDesc("LayerScale", {"num_features": self.input_shape[0], "spatial_dims": len(self.input_shape) - 1,
                                        "init_value": self.init_value}, custom=True)

    def to_onnx(self, g, inputs: List[str], path: str) -> List[str]:
        name = f"{path}.layer_scale" if path else "layer_scale"
        return [g.node("Mul", [inputs[0], g.const(name, self._params["layer_scale"].value)], path)]

    @classmethod
    def examples(cls):
        return [(cls(), (4, 5, 3)), (cls(init_value=0.5), (3, 6)), (cls(2.0), (5,))]


@register
class StochasticDepth(Layer):
    """``torchvision.ops.StochasticDepth(p, mode)``: in training, zero a sample's whole input
    (``mode="row"``: each sample on its own draw; ``"batch"``: one draw for the batch) with
    probability ``p`` and scale the survivors by 1/(1 − p); the identity at inference.

    The draws come from a Generator this layer takes from the build seed (same seed, same
    drops); backward reuses the forward's mask. ``mode`` defaults to "row" (ConvNeXt's;
    torchvision requires it). No parameters; no other ops at inference.
    """

    type_name = "stochastic_depth"
    has_train_mode = True
    random_in_training = True
    family: ClassVar[str] = "shape"   # the identity at inference, like dropout
    diagram_fold: ClassVar[bool] = True  # drawn folded into the layer before it, like dropout
    torch_class: ClassVar[Optional[str]] = None
    torch_module_names = ("torchvision.ops.stochastic_depth.StochasticDepth",)
    onnx_op: ClassVar[Optional[str]] = None

    def __init__(self, p: float, mode: str = "row"):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p <= 1:
            raise ConvscopeError(f"{self.type_name}: drop probability p must be between 0 and 1, got {p!r}")
        if mode not in ("row", "batch"):
            raise ConvscopeError(f"{self.type_name}: mode must be 'row' or 'batch', got {mode!r}")
        self.p = float(p)
        self.mode = mode
        self.rng: Optional[np.random.Generator] = None

    def output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def other_ops(self, input_shape: Shape, output_shape: Shape) -> Dict[str, int]:
        return {}

    def window(self, input_shape: Shape):
        return None

    def _build(self, input_shape, rng, dtype):
        output = super()._build(input_shape, rng, dtype)
        # One draw from the build rng seeds this layer's own stream: same build seed, same drops.
        self.rng = np.random.default_rng(int(rng.integers(0, 2 ** 63)))
        return output

    def _forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        y, mask = stochastic_depth_forward(x, self.p, self.mode, self.rng, train)
        self._cache = (mask,)  # a tuple, so the identity (mask None) still counts as a forward
        self._out_shape = y.shape
        return y

    def _backward(self, dy: np.ndarray) -> np.ndarray:
        return dropout_backward(dy, self._cache[0])

    def torch_desc(self, path: str):
        from ..interop.torch_export import TorchDesc
        return TorchDesc("StochasticDepth", {"p": self.p, "mode": self.mode}, custom=True)

    def to_onnx(self, g, inputs: List[str], path: str) -> List[str]:
        return [g.node("Identity", inputs[:1], path)]   # the inference form

    @classmethod
    def examples(cls):
        return [(cls(0.2), (3, 4, 4)), (cls(0.5, mode="batch"), (6,))]
