"""from_torch of every CNN classifier in torchvision.models (ViT, Swin and MaxViT aside), against
PyTorch as the oracle.

Each model is built with ``weights=None`` (nothing is downloaded), its batch norms given
non-identity statistics and affine parameters (:func:`randomise_norms`), in eval mode. Expected:
the state dict's keys and values equal torch's exactly (they are copied), parameters and MACs
equal torch's (MACs: fvcore's conv+linear count by forward hooks), the float32 outputs within 1e-4
of torch's relative to the largest logit (the issue's bound; measured errors are ~1e-6, float32
rounding in a different summation order; for the few ill-conditioned deep nets see the test) and
the same top-1 class per sample. docs/torchvision-torch.md records a run of all 68
(scripts/torchvision_torch_table.py); by default one model per family runs.
Six models are also checked in float64 at batch 2: in eval mode every gradient equals torch
autograd within 1e-9; in training mode within torch's own rounding spread (see that test).

Input 64×64 keeps the suite fast on two cores (inception_v3 needs 75×75, its minimum); models
over 60 M parameters are marked ``slow``.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import convscope as cs
from torchvision_import import import_torchvision
from oracle import assert_matches_torch
from onnx_models import ALL_CLASSIFIERS

tv = import_torchvision()

#: torchvision 0.28's CNN classifiers (one list, shared with the ONNX table).
MODELS = ALL_CLASSIFIERS
#: Over 60 M parameters: marked slow (CI still runs them).
SLOW = {
    "alexnet", "convnext_base", "convnext_large", "efficientnet_b7", "efficientnet_v2_l",
    "regnet_x_32gf", "regnet_y_128gf", "regnet_y_16gf", "regnet_y_32gf", "resnet152",
    "resnext101_32x8d", "resnext101_64x4d", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16",
    "vgg16_bn", "vgg19", "vgg19_bn", "wide_resnet101_2", "wide_resnet50_2",
}


def size_of(name):
    return 75 if name == "inception_v3" else 64


def build(name, seed=0):
    """torchvision's model with weights=None (aux classifiers off: their parameters are unused in
    eval), norms randomised, eval mode."""
    torch.manual_seed(seed)
    kwargs = {"aux_logits": False, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
    module = getattr(tv.models, name)(weights=None, **kwargs)
    randomise_norms(module, seed)
    return module.eval()


#: Samples the running statistics are measured on (see randomise_norms).
CALIBRATION_BATCH = int(os.environ.get("CONVSCOPE_CALIBRATION_BATCH", "4"))


def randomise_norms(module, seed):
    """Batch-norm γ ~ U(0.5, 1.5), β ~ N(0, 0.1²); running statistics measured on a random batch
    (so activations keep their scale through deep stacks) then perturbed a little: mean + σ·N(0, 0.05²),
    var · U(0.9, 1.1) (larger perturbations compound over EfficientNet's 49 norms until torch's own
    float32 output is 1e-3 away from its float64 one). Layer-norm affine parameters and ConvNeXt's layer_scale (1e-6 at init, which
    would hide its blocks) are randomised too."""
    gen = torch.Generator().manual_seed(seed)
    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm)) and m.weight is not None:
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.normal_(0.0, 0.1, generator=gen)
        for name, p in module.named_parameters():
            if name.endswith("layer_scale"):
                p.uniform_(0.5, 1.5, generator=gen)
        if norms:
            momenta = [m.momentum for m in norms]
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # cumulative: the running statistics become this batch's
            module.eval()
            for m in norms:  # only the norms in training mode: no dropout or stochastic depth
                m.train()
            size = 75 if hasattr(module, "Mixed_5b") else 64
            module(torch.randn((CALIBRATION_BATCH, 3, size, size), generator=gen))
            for m, momentum in zip(norms, momenta):
                m.momentum = momentum
                m.running_mean.add_(torch.randn(m.running_mean.shape, generator=gen) * 0.05 * m.running_var.sqrt())
                m.running_var.mul_(torch.rand(m.running_var.shape, generator=gen) * 0.2 + 0.9)
                m.num_batches_tracked.fill_(3)


def test_the_list_is_torchvisions_cnn_classifiers():
    listed = [m for m in tv.models.list_models(module=tv.models) if not m.startswith(("vit_", "swin_", "maxvit_"))]
    assert sorted(listed) == sorted(MODELS)  # 68 in torchvision 0.28


#: Run by default: one model per family, the smallest (CI time). All 68 were run through
#: ``measure`` by scripts/torchvision_torch_table.py and are recorded in docs/torchvision-torch.md;
#: the big ones (AlexNet, VGG, Wide ResNet, ResNeXt: over 25 M parameters, the operations of
#: resnet18) and the larger variants of each family run with CONVSCOPE_ALL_TORCHVISION=1.
DEFAULT = {"resnet18", "mobilenet_v2", "mobilenet_v3_small", "mnasnet0_5", "squeezenet1_1",
           "shufflenet_v2_x0_5", "regnet_x_400mf", "regnet_y_400mf", "efficientnet_b0", "densenet121",
           "efficientnet_v2_s", "convnext_tiny", "googlenet", "inception_v3"}
EVERYTHING = os.environ.get("CONVSCOPE_ALL_TORCHVISION") == "1"


def _case(name):
    marks = [pytest.mark.slow] if name in SLOW else []
    if name not in DEFAULT:
        marks.append(pytest.mark.skipif(not EVERYTHING, reason="a larger member of a family run by default; "
                                        "its full-run result is in docs/torchvision-torch.md "
                                        "(CONVSCOPE_ALL_TORCHVISION=1 runs every model)"))
    return pytest.param(name, marks=marks)


def measure(name, seed=0):
    """Convert ``name`` and compare it with torch: a dict of what the test checks and the table
    (docs/torchvision-torch.md) records. ``rel_error``: max |ours - torch| over the largest |logit|
    (float32, batch 2); ``spread``: the std of the two samples' logit difference on that scale;
    ``torch_own``: torch's float32 output against its float64 output on the
    same scale (how ill-conditioned the net is); ``f64_error``: ours against torch's float64
    output (measured only where ``rel_error`` exceeds 1e-4); ``f64_exact``: where ``torch_own``
    exceeds 1e-2, the model converted in float64 against torch's float64 output (and ``top1_equal``
    is then float64's), and ``torch_self64``: torch's float64 output against itself computed in
    other summation orders (two batches of one, channels-last, both)."""
    import time
    from onnx_models import conv_linear_macs
    module = build(name, seed)
    size = size_of(name)
    start = time.perf_counter()
    model = cs.interop.from_torch(module, (3, size, size))
    seconds = time.perf_counter() - start
    ours, theirs = model.state_dict(), module.state_dict()
    x = torch.randn((2, 3, size, size), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = module(x).numpy()
    got = model.forward(x.numpy())
    scale = float(np.abs(expected).max())
    out = {
        "name": name, "seconds": seconds, "size": size,
        "keys_equal": sorted(ours) == sorted(theirs),
        "values_equal": all(key in ours and np.array_equal(ours[key], value.numpy()) for key, value in theirs.items()),
        "params": sum(p.value.size for p in model.parameters()),
        "torch_params": sum(p.numel() for p in module.parameters()),
        "macs": cs.analyze(model, (3, size, size)).total_macs,
        "hook_macs": conv_linear_macs(module, x[:1]),
        "dtype_shape": (str(got.dtype), got.shape, expected.shape),
        "scale": scale, "spread": float(np.std(expected[0] - expected[1])) / scale,
        "rel_error": float(np.abs(got - expected).max()) / scale,
        "top1_equal": bool((got.argmax(1) == expected.argmax(1)).all()),
        "torch_own": None, "f64_error": None,
    }
    out["f64_exact"] = None
    if out["rel_error"] > 1e-4:
        with torch.no_grad():
            exact = module.double()(x.double()).numpy()
        out["torch_own"] = float(np.abs(expected - exact).max()) / scale
        out["f64_error"] = float(np.abs(got - exact).max()) / scale
        if out["torch_own"] > 1e-2:  # float32 decides nothing here: compare the conversion in float64
            ours64 = cs.interop.from_torch(module, (3, size, size)).forward(x.double().numpy())
            out["f64_exact"] = float(np.abs(ours64 - exact).max()) / float(np.abs(exact).max())
            out["top1_equal"] = bool((ours64.argmax(1) == exact.argmax(1)).all())
            with torch.no_grad():  # torch against itself in float64, summing in other orders
                split = torch.cat([module(x[:1].double()), module(x[1:].double())]).numpy()
                module.to(memory_format=torch.channels_last)
                xl = x.double().to(memory_format=torch.channels_last)
                last = module(xl).numpy()
                last_split = torch.cat([module(xl[:1]), module(xl[1:])]).numpy()
                module.to(memory_format=torch.contiguous_format)
            out["torch_self64"] = float(max(np.abs(other - exact).max() for other in (split, last, last_split))
                                        / np.abs(exact).max())
    return out


@pytest.mark.parametrize("name", [_case(n) for n in MODELS])
def test_torchvision_model_converts_exactly(name):
    m = measure(name)
    assert m["keys_equal"] and m["values_equal"]  # the same names, the values copied exactly
    assert m["params"] == m["torch_params"]
    assert m["macs"] == m["hook_macs"]  # fvcore's conv+linear count, by forward hooks on torch's modules
    assert m["dtype_shape"] == ("float32", (2, 1000), (2, 1000))
    assert m["spread"] > 1e-3  # the input matters (the net did not collapse to one output)
    # Where random statistics make a deep net ill-conditioned (EfficientNet-B1+'s residual streams
    # reach logits in the hundreds), torch's own float32 output is over 1e-4 from its float64 one;
    # then ours must be no further from torch's float64 output than 4× torch's float32 is (the same
    # order: both are float32 roundings, amplified alike).
    # Where torch's own float32 output is over 1e-2 from its float64 one (EfficientNet-B5/B6 with
    # these statistics: 40-60 %, logits ~1e5), float32 top-1 is not determined even for torch; then
    # the conversion is checked in float64 instead: within 1e-6 of torch's float64 output (measured
    # 7.7e-9 on B5) with the same top-1, or within 4× torch's own float64 spread where torch
    # disagrees with itself in float64 when it sums in another order (a batch split, channels-last:
    # EfficientNet-B7 1.3e-5, EfficientNet-V2-L 0.40 with these statistics).
    if m["f64_exact"] is not None:
        assert m["f64_exact"] <= max(1e-6, 4 * m.get("torch_self64", 0.0)), m
    elif m["rel_error"] > 1e-4:
        assert m["f64_error"] <= max(1e-4, 4 * m["torch_own"]), m
    assert m["top1_equal"]


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "efficientnet_b0", "densenet121",
                                  "convnext_tiny", "shufflenet_v2_x1_0"])
def test_imported_model_backward_equals_torch_autograd_in_float64(name):
    """Eval mode (running statistics): dL/dx and every parameter gradient within 1e-9. Training
    mode is the next test: batch statistics over two values per channel make some true gradients
    zero, so there the bound is torch's own rounding spread. PyTorch's hardsigmoid backward
    multiplies by the float32 constant 1.0f/6.0f even in float64 (3e-8 relative per gate, ~1e-6
    after mobilenet_v3's nine gates; see test_gating_norm), so after the import the oracle's
    hardsigmoids compute relu6(x + 3) / 6, whose float64 autograd uses the exact 1/6."""
    module = build(name).double()
    model = cs.interop.from_torch(module, (3, 32, 32))
    assert all(p.value.dtype == np.float64 for p in model.parameters())
    for m in module.modules():
        if isinstance(m, torch.nn.Hardsigmoid):
            m.forward = lambda x: torch.nn.functional.relu6(x + 3.0) / 6.0
    assert_matches_torch(model, module, (3, 32, 32), batch=2, seed=2, train=False)


# ----- training mode: gradients against torch's own rounding spread ---------------------------------

class _ReorderedBatchNorm(torch.nn.Module):
    """F.batch_norm in training mode written out: (x − mean) / sqrt(var + eps)·γ + β with the
    biased batch variance, autograd through these ops. The same function as torch's fused kernel,
    other summation and rounding orders: the two differ only by float64 round-off."""

    def __init__(self, bn):
        super().__init__()
        self.bn = bn

    def forward(self, x):
        mean = x.mean((0, 2, 3), keepdim=True)
        var = ((x - mean) ** 2).mean((0, 2, 3), keepdim=True)
        return (x - mean) / torch.sqrt(var + self.bn.eps) * self.bn.weight[:, None, None] + self.bn.bias[:, None, None]


def _torch_gradients(module, x, dy):
    """{"out", "dx", parameter name: gradient} of ``module`` (training mode) at ``x``."""
    module.zero_grad(set_to_none=True)
    tx = torch.tensor(x, requires_grad=True)
    y = module(tx)
    y.backward(torch.from_numpy(dy))
    out = {"out": y.detach().numpy(), "dx": tx.grad.numpy()}
    for name, p in module.named_parameters():
        out[name.replace(".bn.weight", ".weight").replace(".bn.bias", ".bias")] = p.grad.numpy()
    return out


def _deterministic(module):
    """Dropout and stochastic depth off (their draws are the engines' own), and the exact-1/6
    hardsigmoid (see the eval test above)."""
    for m in module.modules():
        if isinstance(m, torch.nn.Dropout) or type(m).__name__ == "StochasticDepth":
            m.p = 0.0
        if isinstance(m, torch.nn.Hardsigmoid):
            m.forward = lambda x: torch.nn.functional.relu6(x + 3.0) / 6.0


TRAIN_DEFAULT = {"resnet18", "mobilenet_v3_small"}


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=[] if n in TRAIN_DEFAULT else [pytest.mark.skipif(
        not EVERYTHING, reason="float64 training-mode comparison of a larger net (measured: see the "
        "docstring); set CONVSCOPE_ALL_TORCHVISION=1")])
    for n in ["resnet18", "mobilenet_v3_small", "efficientnet_b0", "densenet121", "convnext_tiny",
              "shufflenet_v2_x1_0"]])
def test_training_mode_gradients_are_within_torchs_own_rounding_spread(name):
    """Training mode (batch statistics), float64, batch 2 at 32×32: the last stages are 1×1, so
    many batch norms normalise two values per channel (resnet18 5 of 20, mobilenet_v3_small 9 of
    34, efficientnet_b0 15 of 49, densenet121 33 of 121). There the output is ±γ + β whatever the
    input, so every gradient that flows back through such a norm is zero in exact arithmetic and
    what either engine computes is round-off; a tensor whose true gradient is (nearly) zero gets
    relative errors of order 1 in torch against itself. The same holds at any input size for a
    batch-norm bias that reaches a training-mode batch norm through linear operations only (an
    inverted residual's projection bias -> add -> 1×1 conv -> batch norm; ShuffleNet's branch1):
    the next norm subtracts the shift, so its true gradient is zero too (mobilenet_v3_small and
    efficientnet_b0 stay at relative error ~2 at 64×64, where resnet18 and densenet121 drop to
    5e-14 and 2e-12). So the oracle is torch's own spread: the
    same module with every batch norm written out (:class:`_ReorderedBatchNorm`, an equivalent
    formula in another order). Per tensor (output, dL/dx, each parameter gradient),
    |ours − torch| ≤ 10 × max(|torch reordered − torch|, 1e-9·max|torch|).
    Measured (max over tensors of |ours − torch| / that bound without the 10): resnet18 0.31,
    mobilenet_v3_small 1.5, efficientnet_b0 1.5, densenet121 2.4, shufflenet_v2_x1_0 8.9 (on
    stage4.0.branch1.1.bias, true gradient zero: noise against noise) (largest relative errors
    ours vs torch 3e-10, 1.8, 1.9, 3e-9, 6.5; torch reordered vs torch 1.5e-10, 2.2, 2.0, 3.4e-9,
    2.5): ours is
    as far from torch as torch is from itself. convnext_tiny has no batch norm (layer norms, per
    sample): there ours equals torch within 6e-15 relative in training mode too, so the 1e-9 floor
    is what it meets. A formula difference would not hide in the factor 10: an unbiased variance at
    two values per channel is off by a factor 2, a misplaced eps by ~eps/var on every tensor.
    Dropout and stochastic depth are switched off (p = 0): their masks are each engine's own draws."""
    import copy
    module = build(name).double()
    _deterministic(module)
    model = cs.interop.from_torch(module, (3, 32, 32))
    module.train()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 32, 32))
    y = model.forward(x, train=True)
    dy = rng.standard_normal(y.shape)
    ours = {"out": y, "dx": model.backward(dy), **{n: p.grad for n, p in model.named_parameters()}}
    reordered = copy.deepcopy(module)
    for parent in list(reordered.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.BatchNorm2d):
                setattr(parent, child_name, _ReorderedBatchNorm(child))
    theirs = _torch_gradients(module, x, dy)
    spread = _torch_gradients(reordered, x, dy)
    assert sorted(ours) == sorted(theirs) == sorted(spread)
    for key, value in theirs.items():
        bound = 10 * max(np.abs(spread[key] - value).max(), 1e-9 * np.abs(value).max())
        assert np.abs(ours[key] - value).max() <= bound, key
