"""Element-wise activations (:class:`ReLU`, :class:`ReLU6`, :class:`LeakyReLU`,
:class:`Sigmoid`, :class:`Tanh`), :class:`Softmax` and :class:`Dropout`.

None of them has parameters and each keeps the input's shape:
Input ``(N, *)``, Output ``(N, *)``. The maths (forward and backward equations) lives in
:mod:`convscope.ops.activations` and :mod:`convscope.ops.dropout`.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..errors import ConvscopeError, format_shape
from ..ops.workspace import step_buffer
from ..ops import activations as act
from ..ops.dropout import dropout_backward, dropout_forward
from ..shapes import prod
from .base import Layer, Shape, keeps_caches
from .registry import register

__all__ = ["ReLU", "ReLU6", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "Dropout"]


class _Elementwise(Layer):
    """Shape-preserving layer whose maths is a pair of ops ``(forward, backward)``."""

    family = "activation"
    #: Operations per output element, counted as "activations" (analysis.counting).
    ops_per_element = 1

    def other_ops(self, input_shape: Shape, output_shape: Shape):
        return {"activations": self.ops_per_element * prod(output_shape)}

    @classmethod
    def examples(cls):
        return [(cls(), (3, 4, 5)), (cls(), (6,))]

    def output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def _op_forward(self, x):
        raise NotImplementedError

    def _op_backward(self, dy, cache):
        raise NotImplementedError

    def _op_inference(self, x):
        """The output alone, for a pass that keeps nothing for backward; default: the forward's."""
        return self._op_forward(x)[0]

    def inference_step(self, x_shape):
        return self._op_inference

    def _forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        if keeps_caches(train):
            y, self._cache = self._op_forward(x)
        else:
            y = self._op_inference(x)
        self._out_shape = y.shape
        return y

    def _backward(self, dy: np.ndarray) -> np.ndarray:
        return self._op_backward(dy, self._cache)


@register
class ReLU(_Elementwise):
    """``y = max(x, 0)``; the gradient at exactly 0 is 0, as in PyTorch."""

    type_name = "relu"
    torch_class = "ReLU"
    onnx_op = "Relu"

    def _op_forward(self, x):
        return act.relu_forward(x)

    def _op_inference(self, x):
        return act.relu(x)

    def inference_step(self, x_shape):
        y = step_buffer(x_shape, self.dtype)  # rewritten by every call of the plan
        return lambda x: act.relu(x, y)

    def _op_backward(self, dy, cache):
        return act.relu_backward(dy, cache, self.workspace)


@register
class ReLU6(_Elementwise):
    """``y = min(max(x, 0), 6)``; the gradient is 1 strictly between 0 and 6, else 0."""

    type_name = "relu6"
    torch_class = "ReLU6"

    def to_onnx(self, g, inputs, path):
        return [g.node("Clip", [inputs[0], g.const(g.name(path, "min"), 0.0), g.const(g.name(path, "max"), 6.0)],
                       path)]

    def _op_forward(self, x):
        return act.relu6_forward(x)

    def _op_inference(self, x):
        return act.relu6(x)

    def _op_backward(self, dy, cache):
        return act.relu6_backward(dy, cache, self.workspace)


@register
class LeakyReLU(_Elementwise):
    """``y = x`` for x > 0, ``negative_slope·x`` otherwise (PyTorch's default slope 0.01)."""

    type_name = "leaky_relu"
    torch_class = "LeakyReLU"

    @classmethod
    def examples(cls):
        return [(cls(), (3, 4, 5)), (cls(0.2), (6,))]

    def to_onnx(self, g, inputs, path):
        return [g.node("LeakyRelu", list(inputs), path, alpha=self.negative_slope)]

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        if (not isinstance(negative_slope, numbers.Real) or isinstance(negative_slope, bool)
                or not np.isfinite(negative_slope)):
            raise ConvscopeError(f"negative_slope must be a finite number such as 0.01, got {negative_slope!r}")
        self.negative_slope = float(negative_slope)

    def _op_forward(self, x):
        return act.leaky_relu_forward(x, self.negative_slope)

    def _op_backward(self, dy, cache):
        return act.leaky_relu_backward(dy, cache)


@register
class Sigmoid(_Elementwise):
    """``y = 1 / (1 + e^(−x))``, computed without overflow for large |x|."""

    type_name = "sigmoid"
    torch_class = "Sigmoid"
    onnx_op = "Sigmoid"

    def _op_forward(self, x):
        return act.sigmoid_forward(x)

    def _op_backward(self, dy, cache):
        return act.sigmoid_backward(dy, cache)


@register
class Tanh(_Elementwise):
    """``y = tanh(x)``."""

    type_name = "tanh"
    torch_class = "Tanh"
    onnx_op = "Tanh"

    def _op_forward(self, x):
        return act.tanh_forward(x)

    def _op_backward(self, dy, cache):
        return act.tanh_backward(dy, cache)


@register
class Softmax(_Elementwise):
    """Softmax along ``dim`` of the batched array (``dim=1``: the channels / classes, as
    ``torch.nn.Softmax(dim=1)``); negative values count from the end. The batch axis is not
    allowed: it would mix samples.

    For training a classifier, end the model with linear and use
    ``CrossEntropyLoss`` on its logits instead: it includes the softmax, more stably.
    """

    type_name = "softmax"
    torch_class = "Softmax"
    ops_per_element = 3  # exp, sum, divide

    @classmethod
    def examples(cls):
        return [(cls(), (4, 3, 2)), (cls(-1), (3, 5)), (cls(2), (2, 3, 4))]

    @classmethod
    def from_torch_module(cls, module, path, input_shape, reader=None):
        if module.dim is None:
            raise ConvscopeError(f"module {path} (Softmax) has dim=None (an implicit axis); give it an explicit "
                                 "dim such as nn.Softmax(dim=1)")
        return cls(module.dim)

    def shape_derivation(self, input_shape, output_shape):
        return [f"shape unchanged: {format_shape(output_shape)}"]

    def to_onnx(self, g, inputs, path):  # negative axes count from the end in ONNX too
        return [g.node("Softmax", list(inputs), path, axis=self.dim)]

    def __init__(self, dim: int = 1):
        super().__init__()
        if not isinstance(dim, numbers.Integral) or isinstance(dim, bool):
            raise ConvscopeError(f"dim must be an integer axis such as 1 or -1, got {dim!r}")
        if dim == 0:
            raise ConvscopeError("softmax over dim=0 would mix the samples of a batch; use dim=1 "
                                 "(classes or channels)")
        self.dim = int(dim)

    def axis(self, input_shape: Shape) -> int:
        """``dim`` as a non-negative axis of the batched array."""
        rank = len(input_shape) + 1
        axis = self.dim + rank if self.dim < 0 else self.dim
        if not 1 <= axis < rank:
            raise ConvscopeError(f"softmax dim={self.dim} is not an axis of a batch of shape "
                                 f"(N, {', '.join(map(str, input_shape))}); choose an axis from 1 to {rank - 1}")
        return axis

    def output_shape(self, input_shape: Shape) -> Shape:
        self.axis(input_shape)
        return tuple(input_shape)

    def _op_forward(self, x):
        return act.softmax_forward(x, self.axis(x.shape[1:]))

    def _op_backward(self, dy, cache):
        return act.softmax_backward(dy, cache)


@register
class Dropout(Layer):
    """Inverted dropout: in training, zero each value with probability ``p`` and scale the
    rest by 1/(1 − p) so the expected value is unchanged; at inference, the identity.

    Backward reuses the mask of the last forward pass. The mask's random numbers come from
    a Generator this layer takes from the build seed, so a given seed gives the same masks.
    """

    type_name = "dropout"
    has_train_mode = True
    random_in_training = True
    family = "shape"
    diagram_fold = True
    torch_class = "Dropout"

    @classmethod
    def examples(cls):
        return [(cls(), (3, 4, 5)), (cls(0.25), (6,))]

    def other_ops(self, input_shape, output_shape):
        return {}  # the identity at inference

    def to_onnx(self, g, inputs, path):
        return [g.node("Dropout", [inputs[0], g.const(g.name(path, "ratio"), self.p)], path)]

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not isinstance(p, numbers.Real) or isinstance(p, bool) or not 0 <= p <= 1:
            raise ConvscopeError(f"dropout probability p must be between 0 and 1, got {p!r}")
        self.p = float(p)
        self.rng: np.random.Generator | None = None

    def output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def _build(self, input_shape, rng, dtype):
        output = super()._build(input_shape, rng, dtype)
        # One draw from the build rng seeds this layer's own stream: same build seed, same masks.
        self.rng = np.random.default_rng(int(rng.integers(0, 2 ** 63)))
        return output

    def inference_step(self, x_shape):
        return lambda x: x  # dropout_forward's identity at inference

    def _forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        y, mask = dropout_forward(x, self.p, self.rng, train)
        self._cache = (mask,)  # a tuple, so the identity (mask None) still counts as a forward
        self._out_shape = y.shape
        return y

    def _backward(self, dy: np.ndarray) -> np.ndarray:
        return dropout_backward(dy, self._cache[0])
