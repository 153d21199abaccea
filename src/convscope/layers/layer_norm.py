"""Layer normalisation: :class:`LayerNorm` over the trailing axes (``torch.nn.LayerNorm``) and
:class:`LayerNorm2d` over the channel axis of NCHW (ConvNeXt's ``LayerNorm2d``).

Statistics are per sample (never per batch), so training and inference compute the same
thing and there are no running buffers. Equations in :func:`convscope.ops.norm.layer_norm_forward`.
Parameters, when ``elementwise_affine``: ``weight`` γ (ones) and ``bias`` β (zeros), named as
torch's, in the normalised shape ((C,) for LayerNorm2d).

Other ops per output element (category ``normalization``): 4 for the statistics and the
standardisation (mean, centre, variance, divide), plus 1 for γ and 1 for β when present.
"""
from __future__ import annotations

import numbers
from typing import ClassVar, Dict, List, Optional, Tuple, Union

import numpy as np

from ..errors import ConvscopeError, format_shape
from ..ops import norm as ops
from ..shapes import prod
from .base import Layer, Shape
from .norm import _flag, _positive_number
from .registry import register

__all__ = ["LayerNorm", "LayerNorm2d"]


def _prefix(path: str) -> str:
    return f"{path}." if path else ""


class _LayerNormBase(Layer):
    family: ClassVar[str] = "norm"
    onnx_op: ClassVar[Optional[str]] = None

    def _init_common(self, eps, elementwise_affine, bias) -> None:
        owner = self.type_name
        self.eps = _positive_number(eps, "eps", owner)
        self.elementwise_affine = _flag(elementwise_affine, "elementwise_affine", owner)
        self.bias = _flag(bias, "bias", owner)

    def _affine_shapes(self, shape: Shape) -> Dict[str, Shape]:
        if not self.elementwise_affine:
            return {}
        return {"weight": shape, "bias": shape} if self.bias else {"weight": shape}

    def init_parameters(self, input_shape: Shape, rng: np.random.Generator) -> Dict[str, np.ndarray]:
        # γ = 1, β = 0, as torch: the layer starts as the plain standardisation.
        return {name: (np.ones if name == "weight" else np.zeros)(shape)
                for name, shape in self.param_shapes(input_shape).items()}

    def other_ops(self, input_shape: Shape, output_shape: Shape) -> Dict[str, int]:
        per_element = 4 + len(self.param_shapes(input_shape))
        return {"normalization": per_element * prod(output_shape)}

    def _affine(self, shape) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
        weight = self._params["weight"].value.reshape(shape) if "weight" in self._params else None
        bias = self._params["bias"].value.reshape(shape) if "bias" in self._params else None
        return weight, bias

    def _run(self, x: np.ndarray, axes, shape) -> np.ndarray:
        weight, bias = self._affine(shape)
        y, self._cache = ops.layer_norm_forward(x, weight, bias, axes, self.eps)
        self._out_shape = y.shape
        return y

    def _backward(self, dy: np.ndarray) -> np.ndarray:
        dx, d_weight, d_bias = ops.layer_norm_backward(dy, self._cache)
        if d_weight is not None:
            self._params["weight"].grad[...] = d_weight.reshape(self._params["weight"].shape)
        if d_bias is not None:
            self._params["bias"].grad[...] = d_bias.reshape(self._params["bias"].shape)
        return dx

    def _onnx_affine(self, g, path: str, shape) -> List[str]:
        """LayerNormalization's scale (required: ones without γ) and optional bias inputs."""
        params, p = dict(self._params), _prefix(path)
        scale = params["weight"].value if "weight" in params else np.ones(shape)
        inputs = [g.const(f"{p}weight", scale)]
        if "bias" in params:
            inputs.append(g.const(f"{p}bias", params["bias"].value))
        return inputs


@register
class LayerNorm(_LayerNormBase):
    """Normalise each sample over its last ``len(normalized_shape)`` axes, as
    ``torch.nn.LayerNorm(normalized_shape, eps=1e-5, elementwise_affine=True, bias=True)``.

    Input ``(N, *, *normalized_shape)``; output the same shape. ``normalized_shape`` is an int
    (the last axis) or a list (the trailing axes, e.g. ``[C, H, W]`` for the whole sample).
    """

    type_name = "layer_norm"
    torch_class = "LayerNorm"
    # ONNX LayerNormalization gives an axis, not sizes: importing it needs the input shape,
    # so it is no one-to-one mapping (None), unlike torch's module (see from_torch).
    onnx_op = None

    def __init__(self, normalized_shape: Union[int, List[int]], eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True):
        super().__init__()
        owner = self.type_name
        sizes = [normalized_shape] if isinstance(normalized_shape, numbers.Integral) else normalized_shape
        try:
            sizes = list(sizes)
        except TypeError:
            sizes = None
        if not sizes or any(isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1 for n in sizes):
            raise ConvscopeError(f"{owner}: normalized_shape must be a positive integer or a list of them "
                                 f"(the trailing sizes to normalise over), got {normalized_shape!r}")
        # An int stays an int; a list stays a list (a tuple (4, 4) would be written as 4 in specs).
        self.normalized_shape = int(normalized_shape) if isinstance(normalized_shape, numbers.Integral) \
            else [int(n) for n in sizes]
        self._init_common(eps, elementwise_affine, bias)

    def shape_tuple(self) -> Tuple[int, ...]:
        n = self.normalized_shape
        return (n,) if isinstance(n, int) else tuple(n)

    def output_shape(self, input_shape: Shape) -> Shape:
        shape, norm = tuple(input_shape), self.shape_tuple()
        if len(shape) < len(norm) or shape[len(shape) - len(norm):] != norm:
            raise ConvscopeError(
                f"{self.type_name}: normalized_shape {format_shape(norm)} must equal the trailing sizes of "
                f"the input, got {format_shape(shape)}; use normalized_shape="
                f"{shape[-1] if len(norm) == 1 else list(shape[-len(norm):])} or layer_norm2d for channels")
        return shape

    def param_shapes(self, input_shape: Shape) -> Dict[str, Shape]:
        self.output_shape(input_shape)
        return self._affine_shapes(self.shape_tuple())

    def window(self, input_shape: Shape):
        # Normalising along a spatial axis makes every output depend on that whole axis.
        return "global" if len(tuple(input_shape)) > 1 else None

    def _forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        k = len(self.shape_tuple())
        return self._run(x, tuple(range(x.ndim - k, x.ndim)), self.shape_tuple())

    @classmethod
    def from_torch_module(cls, module, path, input_shape, reader=None):
        return cls(list(module.normalized_shape), eps=module.eps, elementwise_affine=module.elementwise_affine,
                   bias=getattr(module, "bias", None) is not None)

    def torch_desc(self, path: str):
        from ..interop.torch_export import TorchDesc
        return TorchDesc("LayerNorm", {"normalized_shape": self.shape_tuple(), "eps": self.eps,
                                       "elementwise_affine": self.elementwise_affine, "bias": self.bias})

    @classmethod
    def from_torch(cls, module) -> "LayerNorm":
        """The layer for a ``torch.nn.LayerNorm`` (whose ``bias`` attribute is a tensor or None,
        not the constructor's flag); weights are copied by state dict, names being equal."""
        shape = [int(n) for n in module.normalized_shape]
        return cls(shape[0] if len(shape) == 1 else shape, eps=float(module.eps),
                   elementwise_affine=bool(module.elementwise_affine), bias=module.bias is not None)

    def to_onnx(self, g, inputs: List[str], path: str) -> List[str]:
        return [g.node("LayerNormalization", [inputs[0], *self._onnx_affine(g, path, self.shape_tuple())], path,
                       axis=-len(self.shape_tuple()), epsilon=self.eps)]

    @classmethod
    def examples(cls):
        return [(cls(6), (3, 4, 6)), (cls([4, 6], eps=1e-6, bias=False), (3, 4, 6)),
                (cls(5, elementwise_affine=False), (5,))]


@register
class LayerNorm2d(_LayerNormBase):
    """Normalise each position of each sample over its channels, as ConvNeXt's LayerNorm2d
    (``nn.LayerNorm(C)`` applied with the channel axis moved last).

    Input ``(N, C, *S)`` (e.g. NCHW); output the same shape. ``num_features`` (C) is inferred
    unless given; ConvNeXt uses ``eps=1e-6``.
    """

    type_name = "layer_norm2d"
    torch_module_names = ("torchvision.models.convnext.LayerNorm2d",)

    def __init__(self, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True,
                 num_features: Optional[int] = None):
        super().__init__()
        self._init_common(eps, elementwise_affine, bias)
        if num_features is not None and (isinstance(num_features, bool) or not isinstance(num_features, int)
                                         or num_features < 1):
            raise ConvscopeError(f"{self.type_name}: num_features must be a positive integer, got {num_features!r}")
        self.num_features = num_features

    def output_shape(self, input_shape: Shape) -> Shape:
        shape = tuple(input_shape)
        if len(shape) < 2:
            raise ConvscopeError(f"{self.type_name} expects a per-sample input (C, H, W) (or (C, L)), got "
                                 f"{format_shape(shape)}; use layer_norm for vectors")
        if self.num_features is not None and shape[0] != self.num_features:
            raise ConvscopeError(f"{self.type_name} was given num_features={self.num_features} but the input "
                                 f"{format_shape(shape)} has {shape[0]} channels; fix num_features or leave it out")
        return shape

    def param_shapes(self, input_shape: Shape) -> Dict[str, Shape]:
        return self._affine_shapes((self.output_shape(input_shape)[0],))

    def _forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        return self._run(x, (1,), (1, x.shape[1]) + (1,) * (x.ndim - 2))

    @classmethod
    def from_torch_module(cls, module, path, input_shape, reader=None):
        return cls(eps=module.eps, elementwise_affine=module.elementwise_affine,
                   bias=getattr(module, "bias", None) is not None, num_features=module.normalized_shape[0])

    def torch_desc(self, path: str):
        from ..interop.torch_export import TorchDesc
        return TorchDesc("LayerNorm2d", {"num_features": self.input_shape[0], "eps": self.eps,
                                         "elementwise_affine": self.elementwise_affine, "bias": self.bias},
                         custom=True)

    def to_onnx(self, g, inputs: List[str], path: str) -> List[str]:
        rank = len(self.input_shape) + 1
        last = g.node("Transpose", inputs[:1], path, perm=[0, *range(2, rank), 1])
        y = g.node("LayerNormalization", [last, *self._onnx_affine(g, path, (self.input_shape[0],))], path,
                   axis=-1, epsilon=self.eps)
        return [g.node("Transpose", [y], path, perm=[0, rank - 1, *range(1, rank - 1)])]

    @classmethod
    def examples(cls):
        return [(cls(), (4, 5, 3)), (cls(eps=1e-6, bias=False), (3, 4, 4)), (cls(elementwise_affine=False), (3, 7))]
