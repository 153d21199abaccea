"""Gating activations of modern CNNs: :class:`Hardsigmoid`, :class:`Hardswish` (MobileNetV3),
:class:`SiLU` (EfficientNet) and :class:`GELU` (ConvNeXt), each as ``torch.nn``'s.

No parameters; input ``(N, *)``, output the same shape. Forward and backward equations are
in :mod:`convscope.ops.activations`. Each class declares its whole type here (issue 11's
protocol): diagram family, other-op count, torch counterpart, ONNX nodes (opset 17) and
examples for the conformance suite.

Other ops per output element (category ``activations``): hardsigmoid 1 (a clipped affine),
hardswish 2 (that and a multiply), silu 2 (a sigmoid and a multiply), gelu 2 (erf or tanh,
and a multiply).
"""
from __future__ import annotations

from typing import ClassVar, Dict, List, Optional, Tuple

import numpy as np

from ..errors import ConvscopeError
from ..ops import activations as act
from ..shapes import prod
from .activation import _Elementwise
from .base import Shape
from .registry import register

__all__ = ["Hardsigmoid", "Hardswish", "SiLU", "GELU"]


def _prefix(path: str) -> str:
    return f"{path}." if path else ""


class _Gate(_Elementwise):
    """What the four share: family, other ops, torch description, examples."""

    family: ClassVar[str] = "activation"
    torch_class: ClassVar[Optional[str]] = None
    onnx_op: ClassVar[Optional[str]] = None
    #: Other ops per output element (category "activations").
    ops_per_element: ClassVar[int] = 1
    #: The op pair, from :mod:`convscope.ops.activations`.
    forward_op = staticmethod(act.hardsigmoid_forward)
    backward_op = staticmethod(act.hardsigmoid_backward)

    def _op_forward(self, x):
        return self.forward_op(x)

    def _op_backward(self, dy, cache):
        return self.backward_op(dy, cache)

    def other_ops(self, input_shape: Shape, output_shape: Shape) -> Dict[str, int]:
        return {"activations": self.ops_per_element * prod(output_shape)}

    def window(self, input_shape: Shape):
        return None

    def torch_desc(self, path: str):
        from ..interop.torch_export import TorchDesc
        return TorchDesc(self.torch_class, dict(self.config()))

    @classmethod
    def examples(cls) -> List[Tuple["_Gate", Tuple[int, ...]]]:
        return [(cls(), (3, 5, 4)), (cls(), (7,))]


@register
class Hardsigmoid(_Gate):
    """``y = relu6(x + 3) / 6``: 0 below −3, 1 above 3, linear between (``nn.Hardsigmoid``)."""

    type_name = "hardsigmoid"
    torch_class = "Hardsigmoid"
    torch_tolerance = 1e-7  # torch's backward uses 1/6 rounded to float32; ours is exact
    # ONNX HardSigmoid defaults to alpha 0.2, so an imported node maps here only with alpha = 1/6.
    onnx_op = None

    forward_op = staticmethod(act.hardsigmoid_forward)
    backward_op = staticmethod(act.hardsigmoid_backward)

    def to_onnx(self, g, inputs: List[str], path: str) -> List[str]:
        return [g.node("HardSigmoid", inputs[:1], path, alpha=1.0 / 6.0, beta=0.5)]


@register
class Hardswish(_Gate):
    """``y = x·relu6(x + 3) / 6`` (``nn.Hardswish``)."""

    type_name = "hardswish"
    torch_class = "Hardswish"
    onnx_op = "HardSwish"
    ops_per_element = 2

    forward_op = staticmethod(act.hardswish_forward)
    backward_op = staticmethod(act.hardswish_backward)

    def to_onnx(self, g, inputs: List[str], path: str) -> List[str]:
        return [g.node("HardSwish", inputs[:1], path)]


@register
class SiLU(_Gate):
    """``y = x·σ(x)``, also called swish (``nn.SiLU``)."""

    type_name = "silu"
    torch_class = "SiLU"
    ops_per_element = 2

    forward_op = staticmethod(act.silu_forward)
    backward_op = staticmethod(act.silu_backward)

    def to_onnx(self, g, inputs: List[str], path: str) -> List[str]:
        x = inputs[0]
        return [g.node("Mul", [x, g.node("Sigmoid", [x], path)], path)]


@register
class GELU(_Gate):
    """``y = x·Φ(x)`` with Φ the standard normal CDF (``approximate="none"``, the exact erf
    form) or its tanh approximation (``approximate="tanh"``), as ``nn.GELU``."""

    type_name = "gelu"
    torch_class = "GELU"
    ops_per_element = 2

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ConvscopeError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def _op_forward(self, x):
        return act.gelu_forward(x, self.approximate)

    def _op_backward(self, dy, cache):
        return act.gelu_backward(dy, cache)

    def to_onnx(self, g, inputs: List[str], path: str) -> List[str]:
        # ONNX's own Gelu arrives only in opset 20; opset 17 spells the formula out.
        x, p = inputs[0], _prefix(path)
        half_x = g.node("Mul", [x, g.const(f"{p}half", 0.5)], path)
        if self.approximate == "tanh":
            cube = g.node("Mul", [x, g.node("Mul", [x, x], path)], path)
            inner = g.node("Add", [x, g.node("Mul", [cube, g.const(f"{p}c", act._GELU_C)], path)], path)
            gate = g.node("Tanh", [g.node("Mul", [inner, g.const(f"{p}sqrt_2_over_pi", act._SQRT_2_OVER_PI)],
                                          path)], path)
        else:
            gate = g.node("Erf", [g.node("Mul", [x, g.const(f"{p}inv_sqrt2", 1 / np.sqrt(2))], path)], path)
        return [g.node("Mul", [half_x, g.node("Add", [gate, g.const(f"{p}one", 1.0)], path)], path)]

    @classmethod
    def examples(cls):
        return [(cls(), (3, 5, 4)), (cls(approximate="tanh"), (3, 5, 4)), (cls("tanh"), (7,))]
