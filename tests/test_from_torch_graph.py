"""from_torch of modules with their own forward (torch.fx): functions and methods, shared and
reused modules, the way back out (to_torch, ONNX Runtime), fine-tuning from the command line,
and bad input. PyTorch (float64 autograd) and ONNX Runtime are the oracles."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import convscope as cs
from convscope.cli import main
from convscope.errors import ConvscopeError
from torchvision_import import import_torchvision
from oracle import assert_matches_torch

tv = import_torchvision()


class Scaled(nn.Module):
    """ConvNeXt's way: a parameter of the block multiplied in (read as a layer_scale node "block")."""

    def __init__(self):
        super().__init__()
        self.layer_scale = nn.Parameter(torch.linspace(0.5, 1.5, 8).reshape(8, 1, 1))

    def forward(self, x):
        return self.layer_scale * F.hardswish(x)


class Functions(nn.Module):
    """Every function and method the importer maps, each where a CNN uses it."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.shared = nn.Conv2d(4, 4, 1)           # called on both halves: one set of parameters
        self.act = nn.ReLU()                        # called on two shapes: a new node each time
        self.fc1, self.fc2 = nn.Conv2d(8, 2, 1), nn.Conv2d(2, 8, 1)
        self.head = nn.Linear(8 * 2 * 2, 5)
        self.block = Scaled()

    def forward(self, x):
        x = F.relu(self.stem(x))
        a, b = x.chunk(2, dim=1)
        a, b = self.act(self.shared(a)), F.silu(self.shared(b))
        x = torch.cat([b, a], 1)                                     # 8×8×8
        n, c, h, w = x.size()                                        # channel shuffle, torchvision's way
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, -1, h, w)
        gate = torch.sigmoid(self.fc2(self.act(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        x = x * gate + x                                             # operator.mul, operator.add
        x = self.block(x)
        p, q = torch.split(x, [3, 5], dim=1)
        x = torch.cat([F.gelu(p), q], dim=1)
        x = F.avg_pool2d(F.max_pool2d(x, 2, ceil_mode=True), 2)      # 8×2×2
        y = x.permute(0, 2, 3, 1).mean(dim=-1, keepdim=True)         # 2×2×1: mean over channels
        x = x + y.permute(0, 3, 1, 2)
        x = F.dropout(torch.flatten(x, 1), 0.0, self.training)
        return self.head(x.reshape(x.shape[0], -1))


def test_functions_and_methods_match_torch_autograd_in_float64():
    torch.manual_seed(0)
    module = Functions().double()
    model = cs.interop.from_torch(module, (3, 8, 8))
    assert sorted(model.state_dict()) == sorted(module.state_dict())  # shared conv listed once
    types = [node.layer.type_name for node in model.nodes]
    for expected in ("chunk", "cat", "reshape", "transpose", "mean", "permute", "mul", "add", "split",
                     "layer_scale", "sigmoid", "hardswish", "silu", "gelu", "adaptive_avgpool2d", "maxpool2d",
                     "avgpool2d", "flatten", "dropout"):
        assert expected in types, expected
    assert types.count("relu") == 3  # F.relu once, the one ReLU module on two shapes (4×8×8, 2×1×1)
    assert_matches_torch(model, module, (3, 8, 8), batch=2, seed=1, train=True)


def test_plain_sequential_keeps_its_sequential_form():
    module = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    model = cs.interop.from_torch(module, (1, 6, 6))
    assert model.type_name == "sequential" and list(model.state_dict()) == list(module.state_dict())


# ----- back out ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "densenet121", "shufflenet_v2_x0_5",
                                  "convnext_tiny", "efficientnet_b0"])
def test_torch_to_convscope_to_torch_and_onnx_runtime(name, tmp_path):
    ort = pytest.importorskip("onnxruntime")  # a core test dependency (the test extra installs it)
    from test_from_torch_models import build
    module = build(name)
    model = cs.interop.from_torch(module, (3, 32, 32))
    x = torch.randn((2, 3, 32, 32), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = module(x).numpy()
        back = cs.interop.to_torch(model).eval()(x).numpy()
    scale = np.abs(expected).max()
    assert np.abs(back - expected).max() <= 1e-4 * scale  # float32: only the summation order differs
    path = cs.interop.to_onnx(model, str(tmp_path / f"{name}.onnx"))
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert np.abs(got - expected).max() <= 1e-4 * scale
    assert (got.argmax(1) == expected.argmax(1)).all()


# ----- fine-tuning from the command line ----------------------------------------------------------

def test_imported_torchvision_model_fine_tunes_with_convscope_train(tmp_path):
    """shufflenet_v2_x0_5 with a one-channel stem and 10 classes, read at digits' 1×8×8, saved as
    a checkpoint and trained one epoch by ``convscope train``: the run's checkpoint keeps torch's
    state-dict names and every parameter moved (the stem and the classifier included)."""
    torch.manual_seed(0)
    module = tv.models.shufflenet_v2_x0_5(weights=None, num_classes=10)
    module.conv1[0] = nn.Conv2d(1, 24, 3, 2, 1, bias=False)
    model = cs.interop.from_torch(module.eval(), (1, 8, 8))
    start = tmp_path / "imported.npz"
    cs.train.checkpoint.save_checkpoint(start, model, input_shape=(1, 8, 8))
    out = tmp_path / "run"
    assert main(["train", str(start), "--data", "digits", "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    trained = cs.train.checkpoint.load_checkpoint(out / "model.npz").model
    assert sorted(trained.state_dict()) == sorted(module.state_dict())
    moved = [k for k, v in trained.state_dict().items() if not np.array_equal(v, model.state_dict()[k])]
    assert "conv1.0.weight" in moved and "fc.weight" in moved
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 1 and np.isfinite(history[0]["train_loss"]), history


# ----- bad input ---------------------------------------------------------------------------------

def one_line(call, *args):
    with pytest.raises(ConvscopeError) as info:
        call(*args)
    message = str(info.value)
    assert "\n" not in message and len(message) < 1000
    return message


class Branchy(nn.Module):
    def forward(self, x):
        return x if x.mean() > 0 else -x


class Sorting(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return torch.abs(self.conv(x))


class Elu(nn.Module):
    def __init__(self):
        super().__init__()
        self.act = nn.ELU()

    def forward(self, x):
        return self.act(x)


def test_a_forward_neither_fx_nor_export_can_trace_suggests_onnx():
    # a branch on a value (not a shape): torch.export cannot decide it at export time either
    message = one_line(cs.interop.from_torch, Branchy(), (3, 4, 4))
    assert "torch.fx cannot trace the forward of Branchy" in message
    assert "neither can torch.export" in message and "from_onnx" in message and "dynamo=False" in message


# ----- the torch.export fallback -------------------------------------------------------------------

class ShapeBranch(nn.Module):
    """A forward torch.fx cannot trace (``if`` on a shape): torch.export decides the branch for the
    input shape. Modules (conv, batch norm, relu called twice, linear) and functions (F.relu,
    torch.cat, +, a sigmoid gate multiply, chunk, a channel shuffle, mean, max pool, flatten)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.ReLU()
        self.gate = nn.Conv2d(8, 8, 1)
        self.head = nn.Linear(8 * 2 * 2 + 8, 5)

    def forward(self, x):
        if x.shape[-1] > 12:  # large inputs are pooled first
            x = F.max_pool2d(x, 2)
        x = self.act(self.bn(self.conv(x)))
        a, b = x.chunk(2, dim=1)
        x = torch.cat([F.relu(b), self.act(a)], 1)
        n, c, h, w = x.shape
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        x = x * torch.sigmoid(self.gate(x.mean((2, 3), keepdim=True))) + x
        pooled = torch.flatten(F.adaptive_avg_pool2d(x, 2), 1)
        return self.head(torch.cat([pooled, x.mean(dim=(2, 3))], 1))


@pytest.mark.parametrize("size", [8, 16])
def test_a_forward_fx_cannot_trace_comes_in_through_torch_export(size):
    with pytest.raises(Exception):  # the premise: torch.fx refuses the shape branch
        torch.fx.symbolic_trace(ShapeBranch())
    torch.manual_seed(0)
    module = ShapeBranch().double()
    with torch.no_grad():
        module.bn.running_mean.uniform_(-0.5, 0.5)
        module.bn.running_var.uniform_(0.5, 2.0)
        module.bn.weight.uniform_(0.5, 1.5)
    model = cs.interop.from_torch(module, (3, size, size))
    assert list(model.state_dict()) == list(module.state_dict())  # torch's names, in running order
    for key, value in module.state_dict().items():
        assert np.array_equal(model.state_dict()[key], value.numpy()), key
    types = [node.layer.type_name for node in model.nodes]
    assert types.count("maxpool2d") == (size > 12)  # the branch taken for this input shape
    for expected in ("conv2d", "batchnorm2d", "chunk", "cat", "reshape", "transpose", "mul", "sigmoid",
                     "add", "mean", "adaptive_avgpool2d", "flatten", "linear"):
        assert expected in types, expected
    assert types.count("relu") == 3  # the ReLU module twice, F.relu once
    # eval (running statistics) and training (batch statistics): forward, dL/dx and every gradient
    # equal torch autograd in float64 within 1e-9 (a fresh pair for each: torch accumulates .grad)
    assert_matches_torch(model, copy.deepcopy(module), (3, size, size), batch=2, seed=1, train=False)
    model = cs.interop.from_torch(module, (3, size, size))
    assert_matches_torch(model, module, (3, size, size), batch=3, seed=2, train=True)


def test_an_unsupported_operator_through_torch_export_names_the_aten_op():
    class AbsBranch(ShapeBranch):
        def forward(self, x):
            if x.shape[-1] > 12:
                x = F.max_pool2d(x, 2)
            return torch.abs(self.conv(x))

    message = one_line(cs.interop.from_torch, AbsBranch(), (3, 8, 8))
    assert message.startswith("node 'abs_1' (operator aten.abs.default) has no convscope counterpart; "
                              "nearest supported: "), message


def test_an_unsupported_function_names_itself_the_node_and_the_nearest_op():
    message = one_line(cs.interop.from_torch, Sorting(), (3, 6, 6))  # fx names the node abs_1
    assert message.startswith("node 'abs_1' (function abs) has no convscope counterpart; nearest supported: ")
    message = one_line(cs.interop.from_torch, Elu(), (3, 6, 6))  # not a known leaf: traced to F.elu
    # the module it was traced through is named too
    assert message.startswith("node 'elu' (function elu in module act (ELU)) has no convscope counterpart; "
                              "nearest supported: relu ")  # difflib's pick


def test_other_bad_forwards():
    class TwoOut(nn.Module):
        def forward(self, x):
            return x.chunk(2, 1)

    class BatchMean(nn.Module):
        def forward(self, x):
            return x - x.mean(0)

    class Scalar(nn.Module):
        def forward(self, x):
            return F.relu(x) + 1.0

    assert "must return one tensor" in one_line(cs.interop.from_torch, TwoOut(), (4, 2, 2))
    assert "mixes a tensor with a constant" in one_line(cs.interop.from_torch, Scalar(), (4, 2, 2))
    assert "node 'mean'" in one_line(cs.interop.from_torch, BatchMean(), (4, 2, 2))
    # 3 input channels expected, 5 given: torch's own error, in one line
    assert "does not run on input_shape 5×2×2" in one_line(cs.interop.from_torch, Sorting(), (5, 2, 2))
