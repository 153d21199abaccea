"""Fully connected layer: :class:`Linear`.

Every output unit is connected to every input value of one row, so a 256×6×6 feature map
must be flattened to 9,216 values first (seed 004: AlexNet's first dense layer then holds
(9,216 + 1)·4,096 = 37,752,832 parameters).
"""
from __future__ import annotations

import numbers

import numpy as np

from ..errors import ConvscopeError, format_count, format_shape
from ..ops.workspace import step_buffer
from ..ops.linear import linear_backward_into, linear_forward
from ..shapes import prod
from .base import Layer, Shape
from .registry import register

__all__ = ["Linear"]


def _positive_int(value, name: str, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1:
        return int(value)
    raise ConvscopeError(f"{name} must be a positive integer, got {value!r}")


@register
class Linear(Layer):
    """Affine map over the last axis: ``y = x·Wᵀ + b``.

    Shape
        Input ``(N, in_features)``, or ``(N, *, in_features)`` as in PyTorch (the map is
        applied to every leading position). Output ``(N, out_features)`` / ``(N, *, out_features)``.
    Attributes
        ``weight`` ``(out_features, in_features)``, ``bias`` ``(out_features,)``; both drawn
        from U(±1/sqrt(in_features)), PyTorch's default.
    Counting
        ``params = (in + 1)·out`` (``in·out`` without bias); ``macs = in·out`` per row.

    ``in_features`` is inferred from a 1-D per-sample input when not given. A multi-axis
    input (such as a conv feature map) is an error unless ``in_features`` names its last
    axis, because forgetting ``flatten`` is the usual cause; the error says so.
    """

    type_name = "linear"
    family = "linear"
    torch_class = "Linear"

    @classmethod
    def examples(cls):
        return [(cls(3), (5,)), (cls(4, bias=False), (6,)), (cls(2, in_features=3), (2, 4, 3))]

    # ----- declarations ---------------------------------------------------------------------
    def other_ops(self, input_shape, output_shape):
        return {}  # MACs, and the bias adds counted generically

    def shape_derivation(self, input_shape, output_shape):
        x, y = tuple(input_shape), tuple(output_shape)
        return [f"output = out_features = {format_count(y[-1])}"
                + (f", per position of {format_shape(x[:-1])}" if len(x) > 1 else "")]

    def param_derivation(self, row):
        from ..analysis.derivations import eq
        fc = format_count
        out_f, in_f = row.param_shapes["weight"]
        lines = [eq("weights = in·out", f"{fc(in_f)}·{fc(out_f)}", in_f * out_f, row.weights)]
        if "bias" in row.param_shapes:
            lines.append(eq("biases = out", fc(out_f), out_f, row.biases))
            lines.append(eq("params = (in + 1)·out", f"({fc(in_f)} + 1)·{fc(out_f)}", (in_f + 1) * out_f,
                            row.params))
        else:
            lines.append(f"params = weights = {fc(row.params)} (bias=False)")
        return lines

    def mac_derivation(self, row):
        from ..analysis.derivations import eq, flops
        fc = format_count
        out_f, in_f = row.param_shapes["weight"]
        rows = prod(tuple(row.input_shape)[:-1])
        if rows == 1:
            return [eq("MACs = in·out", f"{fc(in_f)}·{fc(out_f)}", in_f * out_f, row.macs) + flops(row.macs)]
        return [eq("MACs = positions·in·out", f"{fc(rows)}·{fc(in_f)}·{fc(out_f)}", rows * in_f * out_f,
                   row.macs) + flops(row.macs)]

    @classmethod
    def symbolic_counts(cls, args, input_shape):
        """The rules above for sizes that may be sympy symbols (convscope.analysis.symbolic):
        weights out·in, MACs positions·in·out."""
        from ..analysis.symbolic import Counts
        x = tuple(input_shape)
        out_f, in_f = args["out_features"], x[-1]
        return Counts((*x[:-1], out_f), weights=(out_f, in_f), biases=(out_f,) if args["bias"] else None,
                      macs=(*x[:-1], in_f, out_f))

    def torch_desc(self, path):
        from ..interop.torch_export import TorchDesc
        return TorchDesc(self.torch_class, {"in_features": self.features_in(self.input_shape),
                                            "out_features": self.out_features, "bias": self.bias})

    @classmethod
    def from_torch_module(cls, module, path, input_shape, reader=None):
        # On a (C, ..., F) input convscope's linear wants in_features named (forgetting flatten is
        # the usual mistake there); on a vector it is inferred, as in convscope's own specs.
        return cls(module.out_features, bias=module.bias is not None,
                   in_features=module.in_features if len(input_shape) > 1 else None)

    def to_onnx(self, g, inputs, path):
        """Gemm(transB=1) on (N, F); MatMul with the weight's transpose, then Add, on (N, *, F)."""
        params = dict(self.named_parameters())
        weight = params["weight"].value
        if len(self.input_shape) == 1:
            args = [inputs[0], g.const(g.name(path, "weight"), weight)]
            if self.bias:
                args.append(g.const(g.name(path, "bias"), params["bias"].value))
            return [g.node("Gemm", args, path, transB=1)]
        y = g.node("MatMul", [inputs[0], g.const(g.name(path, "weight_t"), weight.T)], path)
        if self.bias:
            y = g.node("Add", [y, g.const(g.name(path, "bias"), params["bias"].value)], path)
        return [y]

    def __init__(self, out_features: int, bias: bool = True, in_features: int | None = None):
        super().__init__()
        self.out_features = _positive_int(out_features, "out_features")
        if not isinstance(bias, (bool, np.bool_)):
            raise ConvscopeError(f"bias must be True or False, got {bias!r}")
        self.bias = bool(bias)
        self.in_features = _positive_int(in_features, "in_features", allow_none=True)

    # ----- shape rules ----------------------------------------------------------------------
    def features_in(self, input_shape: Shape) -> int:
        """The input size this layer would have on ``input_shape``; raises a guiding error
        when the input cannot feed it."""
        shape = tuple(int(s) for s in input_shape)
        last, values = shape[-1], prod(shape)
        expected = self.in_features
        if expected is None:
            if len(shape) > 1:
                raise ConvscopeError(
                    f"linear got a {format_shape(shape)} input, not a vector; add flatten before "
                    f"linear to use all {format_count(values)} values, or set in_features={last} to "
                    "apply it along the last axis only")
            return last
        if last == expected:
            return expected
        if len(shape) == 1:
            raise ConvscopeError(
                f"linear expects {format_count(expected)} inputs, got {format_count(last)}; change "
                f"the layers before it to give {format_count(expected)} values, or set "
                f"in_features={last}")
        if values == expected:
            raise ConvscopeError(
                f"linear expects {format_count(expected)} inputs, got a {format_shape(shape)} input "
                f"({format_count(values)} values, not flattened); add flatten before linear")
        raise ConvscopeError(
            f"linear expects {format_count(expected)} inputs, got {format_count(values)} "
            f"({format_shape(shape)}, not flattened); add flatten before linear, then make the "
            f"layers before it give {format_count(expected)} values or set in_features={values}")

    def output_shape(self, input_shape: Shape) -> Shape:
        self.features_in(input_shape)
        return tuple(input_shape[:-1]) + (self.out_features,)

    def param_shapes(self, input_shape: Shape):
        shapes = {"weight": (self.out_features, self.features_in(input_shape))}
        if self.bias:
            shapes["bias"] = (self.out_features,)
        return shapes

    def fan_in(self, input_shape: Shape) -> int:
        return self.features_in(input_shape)

    def macs(self, input_shape: Shape) -> int:
        rows = prod(input_shape[:-1])
        return rows * self.features_in(input_shape) * self.out_features

    def window(self, input_shape: Shape):
        """``"global"`` for a vector input. For ``(C, *S)`` inputs the last axis is mixed
        entirely (a window as wide as the axis) and the other spatial axes position-wise."""
        if len(input_shape) == 1:
            return "global"
        spatial = tuple(input_shape[1:])
        return tuple((1, 1, 0, 1) for _ in spatial[:-1]) + ((int(spatial[-1]), 1, 0, 1),)

    # ----- running --------------------------------------------------------------------------
    def _check_input(self, x) -> np.ndarray:
        x = super()._check_input(x)
        built_in = self._params["weight"].value.shape[1]
        if x.shape[-1] != built_in:
            raise ConvscopeError(
                f"linear expects {format_count(built_in)} inputs (it was built for them), got "
                f"{format_count(x.shape[-1])}; build the model again for the new input shape")
        return x

    def inference_step(self, x_shape):
        weight, bias = self._params["weight"], self._params["bias"] if self.bias else None
        y = step_buffer((int(np.prod(x_shape[:-1])), weight.value.shape[0]), self.dtype)  # rewritten by every call
        return lambda x: linear_forward(x, weight.value, bias.value if bias is not None else None, y)[0]

    def _forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        bias = self._params["bias"].value if self.bias else None
        y, self._cache = linear_forward(x, self._params["weight"].value, bias)
        self._out_shape = y.shape
        return y

    def _backward(self, dy: np.ndarray) -> np.ndarray:
        bias_grad = self._params["bias"].grad if self.bias else None
        return linear_backward_into(dy, self._cache, self._params["weight"].grad, bias_grad)
