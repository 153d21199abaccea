"""Small helpers that write spec entries, so each architecture reads like its paper's table."""
from __future__ import annotations

from typing import List, Optional


def conv(out_channels: int, kernel_size, stride=1, padding=0, bias: bool = True, groups: int = 1) -> dict:
    entry = {"type": "conv2d", "out_channels": out_channels, "kernel_size": kernel_size}
    if stride != 1:
        entry["stride"] = stride
    if padding != 0:
        entry["padding"] = padding
    if groups != 1:
        entry["groups"] = groups
    if not bias:
        entry["bias"] = False
    return entry


def relu() -> dict:
    return {"type": "relu"}


def maxpool(kernel_size, stride=None, padding=0, ceil_mode: bool = False) -> dict:
    entry = {"type": "maxpool2d", "kernel_size": kernel_size}
    if stride is not None:
        entry["stride"] = stride
    if padding:
        entry["padding"] = padding
    if ceil_mode:
        entry["ceil_mode"] = True
    return entry


def batchnorm(eps: float = 1e-5) -> dict:
    entry = {"type": "batchnorm2d"}
    if eps != 1e-5:
        entry["eps"] = eps
    return entry


def lrn(size: int, alpha: float, beta: float, k: float) -> dict:
    """Local response normalisation; ``alpha`` in PyTorch's convention (divided by ``size``)."""
    return {"type": "local_response_norm", "size": size, "alpha": alpha, "beta": beta, "k": k}


def linear(out_features: int) -> dict:
    return {"type": "linear", "out_features": out_features}


def dropout(p: float = 0.5) -> dict:
    return {"type": "dropout"} if p == 0.5 else {"type": "dropout", "p": p}


def flatten() -> dict:
    return {"type": "flatten"}


def adaptive_avgpool(output_size) -> dict:
    return {"type": "adaptive_avgpool2d", "output_size": output_size}


def conv_bn_relu(out_channels: int, kernel_size, stride=1, padding=0, eps: float = 1e-5,
                 activation: bool = True) -> List[dict]:
    """conv (no bias: batch norm's shift replaces it) + batch norm (+ relu)."""
    layers = [conv(out_channels, kernel_size, stride, padding, bias=False), batchnorm(eps)]
    return layers + [relu()] if activation else layers


def residual(body: List[dict], shortcut: Optional[List[dict]] = None) -> dict:
    entry = {"type": "residual", "body": body}
    if shortcut:
        entry["shortcut"] = shortcut
    return entry


def concat(*branches: List[dict]) -> dict:
    return {"type": "concat", "branches": [list(b) for b in branches]}
