"""The torch modules convscope layers need that ``torch.nn`` lacks.

Each class is self-contained (it uses only ``torch``, ``nn`` and ``F``): :mod:`.codegen`
copies their source into the file written next to a ``.pt`` export, so that file runs
without convscope. State-dict names equal convscope's: ``branches.<i>.<j>.weight``,
``body.<j>.weight``, ``shortcut.<j>.weight``, ``weight``/``bias``.

This module imports torch at the top; :mod:`convscope.interop` imports it lazily.
"""
import torch
from torch import nn
import torch.nn.functional as F


class Concat(nn.Module):
    """Run every branch on the same input and join the outputs on the channel axis:
    ``y = cat(branch_0(x), ..., branch_{B-1}(x), dim=1)``."""

    def __init__(self, branches):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class Residual(nn.Module):
    """``y = body(x) + shortcut(x)``, or ``body(x) + x`` when ``shortcut`` is None."""

    def __init__(self, body, shortcut=None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x):
        return self.body(x) + (x if self.shortcut is None else self.shortcut(x))


class GlobalAvgPool(nn.Module):
    """Mean over every spatial axis: (N, C, *S) -> (N, C)."""

    def forward(self, x):
        return x.mean(dim=tuple(range(2, x.dim())))


class LocallyConnected2d(nn.Module):
    """A convolution without weight sharing: output unit (o, i, j) has its own filter.

    Notation: x (N, C, H, W); padding (p_top, p_bottom, p_left, p_right); stride s;
    H_out×W_out positions, P = H_out·W_out; K = C·k_h·k_w.
    weight (C_out, H_out, W_out, C, k_h, k_w), bias (C_out, H_out, W_out).

    Forward: unfold the padded input into cols (N, K, P) (channel-major windows, positions
    row-major, the weight's own order), then
    ``y[n, o, p] = Σ_k cols[n, k, p] · weight[o, p, k] + bias[o, p]``, reshaped to
    (N, C_out, H_out, W_out). Backward is autograd's.

    ``padding`` is an int, a pair, "valid" or "same" (stride 1; the odd pixel after).
    """

    def __init__(self, in_channels, out_channels, input_size, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
        self.in_channels, self.out_channels = in_channels, out_channels
        self.input_size, self.kernel_size, self.stride = pair(input_size), pair(kernel_size), pair(stride)
        self.padding = padding if isinstance(padding, str) else pair(padding)
        if padding == "valid":
            pads = ((0, 0), (0, 0))
        elif padding == "same":
            pads = tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in self.kernel_size)
        else:
            pads = tuple((p, p) for p in self.padding)
        self.pads = pads
        self.output_size = tuple((n + lo + hi - k) // s + 1 for n, (lo, hi), k, s
                                 in zip(self.input_size, pads, self.kernel_size, self.stride))
        h_out, w_out = self.output_size
        k_h, k_w = self.kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, h_out, w_out, in_channels, k_h, k_w))
        self.bias = nn.Parameter(torch.empty(out_channels, h_out, w_out)) if bias else None
        bound = 1.0 / (in_channels * k_h * k_w) ** 0.5
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)
            if self.bias is not None:
                self.bias.uniform_(-bound, bound)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, input_size={self.input_size}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"bias={self.bias is not None}")

    def forward(self, x):
        (top, bottom), (left, right) = self.pads
        x = F.pad(x, (left, right, top, bottom))
        cols = F.unfold(x, self.kernel_size, stride=self.stride)  # (N, K, P)
        positions = self.output_size[0] * self.output_size[1]
        weight = self.weight.reshape(self.out_channels, positions, -1)  # (C_out, P, K)
        y = torch.einsum("nkp,opk->nop", cols, weight).reshape(x.shape[0], self.out_channels, *self.output_size)
        return y if self.bias is None else y + self.bias


class LayerNorm2d(nn.LayerNorm):
    """Layer norm over the channels of (N, C, *S), as torchvision's ConvNeXt LayerNorm2d: the
    channel axis moved last, ``nn.LayerNorm(C)``, moved back. Parameters ``weight``, ``bias`` (C,)."""

    def __init__(self, num_features, eps=1e-5, elementwise_affine=True, bias=True):
        super().__init__(num_features, eps=eps, elementwise_affine=elementwise_affine, bias=bias)

    def forward(self, x):
        y = F.layer_norm(x.movedim(1, -1), self.normalized_shape, self.weight, self.bias, self.eps)
        return y.movedim(-1, 1)


class LayerScale(nn.Module):
    """``y = layer_scale · x`` with ``layer_scale`` (C, 1, ..., 1), torchvision CNBlock's parameter."""

    def __init__(self, num_features, spatial_dims=2, init_value=1e-6):
        super().__init__()
        self.layer_scale = nn.Parameter(torch.ones((num_features,) + (1,) * spatial_dims) * init_value)

    def forward(self, x):
        return self.layer_scale * x


class StochasticDepth(nn.Module):
    """torchvision.ops.StochasticDepth: in training, zero a sample's input (``"row"``) or the
    batch's (``"batch"``) with probability p and scale the rest by 1/(1 − p); else the identity."""

    def __init__(self, p, mode="row"):
        super().__init__()
        self.p, self.mode = p, mode

    def extra_repr(self):
        return f"p={self.p}, mode={self.mode}"

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        size = [x.shape[0]] + [1] * (x.dim() - 1) if self.mode == "row" else [1] * x.dim()
        noise = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(survival)
        if survival > 0.0:
            noise.div_(survival)
        return x * noise


CUSTOM = {cls.__name__: cls for cls in (Concat, Residual, GlobalAvgPool, LocallyConnected2d, LayerNorm2d,
                                        LayerScale, StochasticDepth)}
