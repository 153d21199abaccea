"""Normalisation layers: :class:`BatchNorm1d`, :class:`BatchNorm2d` and :class:`LocalResponseNorm`.

Batch norm holds two kinds of state, as in PyTorch: Parameters ``weight`` (γ, ones) and
``bias`` (β, zeros) that are learned, and buffers ``running_mean``, ``running_var`` and
``num_batches_tracked`` that are running statistics, reported apart from the parameters.
The maths lives in :mod:`convscope.ops.norm`.
"""
from __future__ import annotations

import numbers
from typing import Dict, Optional

import numpy as np

from ..errors import ConvscopeError, format_count, format_shape
from ..ops import norm as ops
from ..shapes import prod
from .base import Layer, Shape, keeps_caches
from .registry import register

__all__ = ["BatchNorm1d", "BatchNorm2d", "LocalResponseNorm"]


def _positive_number(value, name: str, type_name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < float("inf"):
        raise ConvscopeError(f"{type_name}: {name} must be a positive number, and finite, got {value!r}")
    return float(value)


def _flag(value, name: str, type_name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ConvscopeError(f"{type_name}: {name} must be true or false, got {value!r}")
    return bool(value)


class _BatchNorm(Layer):
    """Shared by BatchNorm1d and BatchNorm2d; they differ only in the input ranks they accept.

    Input: ``(N, C, *S)``. Output: same shape.
    Parameters (when ``affine``): ``weight`` (C,) initialised to ones, ``bias`` (C,) zeros.
    Buffers (when ``track_running_stats``): ``running_mean`` (C,) zeros, ``running_var`` (C,)
    ones, in the layer's dtype, and ``num_batches_tracked`` () int64 zero.

    ``forward(x, train=True)`` normalises with the batch's statistics and updates the
    running ones in place; ``train=False`` uses the running statistics (or, without
    ``track_running_stats``, the batch's, as PyTorch does).
    """

    has_train_mode = True
    family = "norm"
    #: Accepted per-sample ranks (channels included) and how to write them in messages.
    _ranks: Dict[int, str] = {}

    def __init__(self, num_features: Optional[int] = None, eps: float = 1e-5,
                 momentum: Optional[float] = 0.1, affine: bool = True, track_running_stats: bool = True):
        super().__init__()
        name = self.type_name
        if num_features is not None and (isinstance(num_features, bool) or not isinstance(num_features, int)
                                         or num_features < 1):
            raise ConvscopeError(f"{name}: num_features must be a positive integer (or omitted to take "
                                 f"the input's channels), got {num_features!r}")
        if momentum is not None and (isinstance(momentum, bool) or not isinstance(momentum, numbers.Real)
                                     or not 0 <= momentum <= 1):
            raise ConvscopeError(f"{name}: momentum must be a number from 0 to 1, or None for a "
                                 f"cumulative average, got {momentum!r}")
        self.num_features = num_features
        self.eps = _positive_number(eps, "eps", name)
        self.momentum = None if momentum is None else float(momentum)
        self.affine = _flag(affine, "affine", name)
        self.track_running_stats = _flag(track_running_stats, "track_running_stats", name)

    # ----- declarations ---------------------------------------------------------------------
    def other_ops(self, input_shape, output_shape):
        return {"normalization": 2 * prod(output_shape)}  # at inference a scale and a shift

    def shape_derivation(self, input_shape, output_shape):
        return [f"shape unchanged: {format_shape(output_shape)}"]

    def param_derivation(self, row):
        from ..analysis.derivations import eq
        c = row.param_shapes["weight"][0]
        return [eq("params = 2·C", f"2·{format_count(c)}", 2 * c, row.params) +
                " (a scale γ and a shift β per channel)"]

    def torch_desc(self, path):
        from ..interop.torch_export import TorchDesc
        return TorchDesc(self.torch_class, {"num_features": self.input_shape[0], "eps": self.eps,
                                            "momentum": self.momentum, "affine": self.affine,
                                            "track_running_stats": self.track_running_stats})

    @classmethod
    def from_torch_module(cls, module, path, input_shape, reader=None):
        return cls(eps=module.eps, momentum=module.momentum, affine=module.affine,
                   track_running_stats=module.track_running_stats)

    def to_onnx(self, g, inputs, path):
        """BatchNormalization with the running statistics (the inference form; ONNX momentum =
        1 − convscope momentum)."""
        if not self.track_running_stats:
            raise g.refuse(path, self, "with track_running_stats=False it normalises with each batch's own "
                                       "statistics even at inference, which ONNX BatchNormalization cannot; "
                                       "train with track_running_stats=True")
        channels = self.input_shape[0]
        params = dict(self.named_parameters())
        buffers = dict(self.named_buffers())
        scale = params["weight"].value if self.affine else np.ones(channels)
        shift = params["bias"].value if self.affine else np.zeros(channels)
        args = [inputs[0], g.const(g.name(path, "weight"), scale), g.const(g.name(path, "bias"), shift),
                g.const(g.name(path, "running_mean"), buffers["running_mean"]),
                g.const(g.name(path, "running_var"), buffers["running_var"])]
        momentum = 0.1 if self.momentum is None else self.momentum
        return [g.node("BatchNormalization", args, path, epsilon=self.eps, momentum=1.0 - momentum)]

    # ----- shape rules ----------------------------------------------------------------------
    def output_shape(self, input_shape: Shape) -> Shape:
        shape = tuple(input_shape)
        if len(shape) not in self._ranks:
            expected = " or ".join(self._ranks.values())
            raise ConvscopeError(f"{self.type_name} expects a per-sample input of shape {expected}, "
                                 f"got {format_shape(shape)}; {self._rank_hint}")
        if self.num_features is not None and shape[0] != self.num_features:
            raise ConvscopeError(f"{self.type_name} expects {self.num_features} channels "
                                 f"(num_features={self.num_features}), got {shape[0]} in an input of "
                                 f"{format_shape(shape)}; set num_features={shape[0]} or leave it out")
        return shape

    @classmethod
    def symbolic_counts(cls, args, input_shape):
        """Shape kept; scale and shift of C channels each, C possibly a sympy symbol
        (convscope.analysis.symbolic)."""
        from ..analysis.symbolic import Counts
        layer = cls(**args)  # its arguments are numbers or flags: validate them
        c = tuple(input_shape)[0]
        return Counts(tuple(input_shape), weights=(c,) if layer.affine else None,
                      biases=(c,) if layer.affine else None)

    def param_shapes(self, input_shape: Shape) -> Dict[str, Shape]:
        channels = input_shape[0]
        return {"weight": (channels,), "bias": (channels,)} if self.affine else {}

    def buffer_shapes(self, input_shape: Shape) -> Dict[str, Shape]:
        if not self.track_running_stats:
            return {}
        channels = input_shape[0]
        return {"running_mean": (channels,), "running_var": (channels,), "num_batches_tracked": ()}

    # ----- state ----------------------------------------------------------------------------
    def init_parameters(self, input_shape: Shape, rng: np.random.Generator) -> Dict[str, np.ndarray]:
        # γ = 1, β = 0: the layer starts as the plain standardisation (Ioffe & Szegedy 2015).
        shapes = self.param_shapes(input_shape)
        return {"weight": np.ones(shapes["weight"]), "bias": np.zeros(shapes["bias"])} if shapes else {}

    def init_buffers(self, input_shape: Shape) -> Dict[str, np.ndarray]:
        shapes = self.buffer_shapes(input_shape)
        if not shapes:
            return {}
        return {"running_mean": np.zeros(shapes["running_mean"], dtype=self.dtype),
                "running_var": np.ones(shapes["running_var"], dtype=self.dtype),
                "num_batches_tracked": np.zeros((), dtype=np.int64)}

    # ----- running --------------------------------------------------------------------------
    def inference_step(self, x_shape):
        if not self.track_running_stats:
            return None  # batch statistics even at inference: forward's path
        params, buffers, eps = self._params, self._buffers, self.eps

        def run(x):
            weight, bias = (params["weight"].value, params["bias"].value) if self.affine else (None, None)
            return ops.batch_norm_inference(x, weight, bias, buffers["running_mean"], buffers["running_var"], eps)
        return run

    def _forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        channels = self.input_shape[0]
        if x.shape[1] != channels:
            raise ConvscopeError(f"{self.type_name} was built for {channels} channels, got {x.shape[1]} "
                                 f"in an input of shape {x.shape}; rebuild the model for this input")
        weight = self._params["weight"].value if self.affine else None
        bias = self._params["bias"].value if self.affine else None
        tracking = self.track_running_stats
        use_batch = train or not tracking
        if not use_batch and not keeps_caches(train):
            y = ops.batch_norm_inference(x, weight, bias, self._buffers["running_mean"],
                                         self._buffers["running_var"], self.eps)
            self._out_shape = y.shape
            return y
        y, cache = ops.batch_norm_forward(
            x, weight, bias,
            self._buffers["running_mean"] if tracking else None,
            self._buffers["running_var"] if tracking else None,
            training=use_batch, eps=self.eps)
        if train and tracking:
            self._update_running(cache)
        self._cache = cache
        self._out_shape = y.shape
        return y

    def _update_running(self, cache: Dict) -> None:
        tracked = self._buffers["num_batches_tracked"]
        tracked += 1  # in place: the 0-d int64 array stays the same object
        factor = 1.0 / float(tracked) if self.momentum is None else self.momentum
        mean, var = ops.running_stats_update(self._buffers["running_mean"], self._buffers["running_var"],
                                             cache["mean"], cache["var"], cache["count"], factor)
        np.copyto(self._buffers["running_mean"], mean, casting="unsafe")
        np.copyto(self._buffers["running_var"], var, casting="unsafe")

    def _backward(self, dy: np.ndarray) -> np.ndarray:
        dx, d_weight, d_bias = ops.batch_norm_backward(dy, self._cache)
        if self.affine:
            self._params["weight"].grad[...] = d_weight
            self._params["bias"].grad[...] = d_bias
        return dx


@register
class BatchNorm1d(_BatchNorm):
    """Batch normalisation over the batch (and length) of each channel.

    Input: ``(N, C)`` or ``(N, C, L)``. Output: same shape. See :class:`_BatchNorm` for the
    parameters, buffers and modes; equations in :func:`convscope.ops.norm.batch_norm_forward`.
    """

    type_name = "batchnorm1d"
    torch_class = "BatchNorm1d"

    @classmethod
    def examples(cls):
        return [(cls(), (3, 5)), (cls(eps=1e-3, momentum=0.2, affine=False), (4, 2)),
                (cls(momentum=None), (2, 6))]
    _ranks = {1: "(C,)", 2: "(C, L)"}
    _rank_hint = "use batchnorm2d for images (C, H, W)"


@register
class BatchNorm2d(_BatchNorm):
    """Batch normalisation over the batch and spatial positions of each channel.

    Input: ``(N, C, H, W)``. Output: same shape. See :class:`_BatchNorm` for the parameters,
    buffers and modes; equations in :func:`convscope.ops.norm.batch_norm_forward`.
    """

    type_name = "batchnorm2d"
    torch_class = "BatchNorm2d"

    @classmethod
    def examples(cls):
        return [(cls(), (3, 4, 5)), (cls(3, eps=1e-3, momentum=0.3), (3, 2, 3))]
    _ranks = {3: "(C, H, W)"}
    _rank_hint = "use batchnorm1d for (C,) or (C, L) inputs"


@register
class LocalResponseNorm(Layer):
    """Local response normalisation across neighbouring channels (AlexNet's LRN).

    ``b_c = a_c · (k + α/n · Σ_{c'} a_{c'}²)^(−β)`` with the window ``c' = c − ⌊n/2⌋ … c + ⌊(n−1)/2⌋``
    clipped to the valid channels, n = ``size`` (PyTorch's convention, α divided by n).

    Input: ``(N, C, *S)`` with at least one spatial axis (e.g. NCL or NCHW). Output: same
    shape. No parameters.
    """

    type_name = "local_response_norm"
    family = "norm"
    torch_class = "LocalResponseNorm"

    @classmethod
    def examples(cls):
        return [(cls(3), (5, 3, 3)), (cls(5, alpha=0.5, beta=0.6, k=2.0), (7, 2, 3))]

    def other_ops(self, input_shape, output_shape):
        # ``size`` multiply-adds for the sum of squares, then a power and a divide.
        return {"normalization": (int(self.size) + 2) * prod(output_shape)}

    def shape_derivation(self, input_shape, output_shape):
        return [f"shape unchanged: {format_shape(output_shape)}"]

    def to_onnx(self, g, inputs, path):
        if self.size % 2 == 0:
            raise g.refuse(path, self, f"ONNX LRN centres an even window ({self.size} channels) one channel "
                                       "later than PyTorch and convscope do, so the outputs would differ; use an "
                                       "odd size")
        if len(self.input_shape) != 3:
            raise g.refuse(path, self, f"ONNX Runtime's LRN takes (N, C, H, W) inputs only, this one is "
                                       f"(N, {', '.join(map(str, self.input_shape))}); use it on image feature maps "
                                       "or export with to_torch")
        return [g.node("LRN", list(inputs), path, size=self.size, alpha=self.alpha, beta=self.beta, bias=self.k)]

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        super().__init__()
        name = self.type_name
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConvscopeError(f"{name}: size must be a positive integer (channels in the window), "
                                 f"got {size!r}")
        for arg, value in (("alpha", alpha), ("beta", beta)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
                raise ConvscopeError(f"{name}: {arg} must be a finite number, got {value!r}")
        self.size = size
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.k = _positive_number(k, "k", name)

    def output_shape(self, input_shape: Shape) -> Shape:
        shape = tuple(input_shape)
        if len(shape) < 2:
            raise ConvscopeError(f"{self.type_name} expects a per-sample input of shape (C, L) or "
                                 f"(C, H, W), got {format_shape(shape)}; apply it before flatten")
        return shape

    def _forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        y, cache = ops.lrn_forward(x, self.size, self.alpha, self.beta, self.k)
        self._cache = cache
        self._out_shape = y.shape
        return y

    def _backward(self, dy: np.ndarray) -> np.ndarray:
        return ops.lrn_backward(dy, self._cache)
