"""Helpers for the torchvision-through-ONNX tests: importing torchvision beside the CPU
torch, building the models (weights=None, eval, randomised batch-norm statistics), exporting
them once per session with either torch exporter, and the fvcore-style MAC oracle."""
from __future__ import annotations

import os
import warnings

import numpy as np

from torchvision_import import import_torchvision


#: torchvision 0.28's CNN classifiers, all 68 (ViT, Swin and MaxViT aside); the test
#: test_from_torch_models.test_the_list_is_torchvisions_cnn_classifiers checks the list against
#: torchvision.models.list_models.
ALL_CLASSIFIERS = [
    "alexnet", "convnext_base", "convnext_large", "convnext_small", "convnext_tiny", "densenet121",
    "densenet161", "densenet169", "densenet201", "efficientnet_b0", "efficientnet_b1",
    "efficientnet_b2", "efficientnet_b3", "efficientnet_b4", "efficientnet_b5", "efficientnet_b6",
    "efficientnet_b7", "efficientnet_v2_l", "efficientnet_v2_m", "efficientnet_v2_s", "googlenet",
    "inception_v3", "mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3", "mobilenet_v2",
    "mobilenet_v3_large", "mobilenet_v3_small", "regnet_x_16gf", "regnet_x_1_6gf", "regnet_x_32gf",
    "regnet_x_3_2gf", "regnet_x_400mf", "regnet_x_800mf", "regnet_x_8gf", "regnet_y_128gf",
    "regnet_y_16gf", "regnet_y_1_6gf", "regnet_y_32gf", "regnet_y_3_2gf", "regnet_y_400mf",
    "regnet_y_800mf", "regnet_y_8gf", "resnet101", "resnet152", "resnet18", "resnet34", "resnet50",
    "resnext101_32x8d", "resnext101_64x4d", "resnext50_32x4d", "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0", "squeezenet1_0", "squeezenet1_1",
    "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
    "wide_resnet101_2", "wide_resnet50_2",
]

#: Every CNN classifier family of torchvision.models (its smallest variant; ViT, Swin, MaxViT
#: aside): the ones the test suite exports; scripts/torchvision_onnx_table.py runs them all.
MODELS = ["alexnet", "convnext_tiny", "densenet121", "efficientnet_b0", "efficientnet_v2_s", "googlenet",
          "inception_v3", "mnasnet0_5", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small",
          "regnet_x_400mf", "regnet_y_400mf", "resnet18", "resnet50", "resnext50_32x4d",
          "shufflenet_v2_x0_5", "squeezenet1_0", "squeezenet1_1", "vgg11", "wide_resnet50_2"]

#: Input sizes: small for speed; AlexNet and VGG need 224 (the TorchScript exporter reads their
#: adaptive pool to 6×6 / 7×7 only when the size divides), Inception-v3 needs at least 75.
SIZES = {"alexnet": 224, "inception_v3": 75, **{n: 224 for n in ALL_CLASSIFIERS if n.startswith("vgg")}}


def build(name: str):
    """(module in eval mode with randomised batch-norm statistics, input tensor of batch 1)."""
    import torch
    models = import_torchvision().models
    extra = {"aux_logits": False} if name in ("googlenet", "inception_v3") else {}
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = getattr(models, name)(weights=None, **extra).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
    size = SIZES.get(name, 64)
    return module, torch.randn(1, 3, size, size, generator=g)


#: The exporters every model goes through: torch's TorchScript exporter with and without
#: constant folding (its default opset) and the default (dynamo) exporter.
EXPORTERS = ("torchscript", "torchscript-nofold", "dynamo")


def export(module, x, path: str, exporter: str) -> str:
    """``exporter``: "torchscript" (constant folding on), "torchscript-nofold" or "dynamo",
    optionally with "-opsetN" appended (e.g. "torchscript-opset13"; default: the exporter's)."""
    import torch
    base, _, opset = exporter.partition("-opset")
    opset = int(opset) if opset else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if base == "dynamo":
            torch.onnx.export(module, (x,), path, dynamo=True, verbose=False, opset_version=opset)
        elif base in ("torchscript", "torchscript-nofold"):
            torch.onnx.export(module, (x,), path, dynamo=False, do_constant_folding=base == "torchscript",
                              opset_version=opset)
        else:
            raise ValueError(f"unknown exporter {exporter!r}")
    return path


def measure(module, x, path: str) -> dict:
    """Import ``path`` with from_onnx and compare with the torch module (the oracle), returning
    {model, seconds, error (max |ours − torch| / max |torch|), top1 (equal), params_file,
    params_torch, params_note, params_own_biases, macs, macs_hook, note}."""
    import time

    import torch

    import convscope as cs
    start = time.perf_counter()
    model = cs.interop.from_onnx(path)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        expected = module(x).numpy()
    got = model.forward(x.numpy(), train=False)
    report = cs.analyze(model, tuple(x.shape[1:]))
    return {"model": model, "seconds": seconds,
            "error": float(np.abs(got - expected).max() / np.abs(expected).max()),
            "top1": got.argmax(axis=1).tolist() == expected.argmax(axis=1).tolist(),
            "params_file": sum(p.value.size for p in model.parameters()),
            "params_torch": sum(p.numel() for p in module.parameters()),
            "params_note": model.import_folded_params, "params_report": report.total_params,
            "params_own_biases": model.import_folded_own_biases,
            "macs": report.total_macs, "macs_hook": conv_linear_macs(module, x), "note": model.import_note}


def params_accounted(r: dict) -> bool:
    """The file's parameters plus those the folding note accounts for are torch's: exactly, or
    with the folded convolutions' own biases (which the file cannot record) added."""
    low = r["params_file"] + r["params_note"]
    return r["params_torch"] in (low, low + r.get("params_own_biases", 0))


def conv_linear_macs(module, x) -> int:
    """fvcore's conv+linear count, measured with forward hooks: a convolution
    C_out·H_out·W_out·(C_in/groups)·k_h·k_w, a linear layer in·out per row."""
    import torch
    total = [0]

    def conv(m, inputs, output):
        total[0] += int(np.prod(output.shape[1:])) * (m.in_channels // m.groups) * int(np.prod(m.kernel_size))

    def linear(m, inputs, output):
        total[0] += int(np.prod(output.shape[1:-1], dtype=np.int64)) * m.in_features * m.out_features

    hooks = [m.register_forward_hook(conv if isinstance(m, torch.nn.modules.conv._ConvNd) else linear)
             for m in module.modules() if isinstance(m, (torch.nn.modules.conv._ConvNd, torch.nn.Linear))]
    with torch.no_grad():
        module(x)
    for h in hooks:
        h.remove()
    return total[0]


def cache_dir(factory) -> str:
    return os.fspath(factory.mktemp("onnx_models"))
