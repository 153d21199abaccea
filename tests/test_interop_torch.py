"""convscope <-> PyTorch (convscope.interop.to_torch / from_torch) and `convscope export -o net.pt`.

Oracle: PyTorch itself, in float64, within 1e-9 (relative and absolute). State dicts must be
equal name for name and value for value; outputs equal in eval and train mode.
"""
from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import convscope as cs
from convscope import ConvscopeError
from convscope import layers as L
from convscope.interop.torch_modules import Concat as TorchConcat, Residual as TorchResidual

TOL = 1e-9


# ----- model generators, shared with test_interop_onnx.py --------------------------------------

def random_block(rng, channels: int):
    """One random branched block keeping the spatial size; returns (layers, output channels)."""
    kind = rng.integers(0, 4)
    width = int(rng.integers(2, 5))
    if kind == 0:  # residual, identity shortcut, batch norm inside
        return [cs.Residual([L.Conv2d(channels, 3, padding=1), L.BatchNorm2d(), L.ReLU(),
                             L.Conv2d(channels, 3, padding="same")])], channels
    if kind == 1:  # residual with a projection shortcut
        return [cs.Residual([L.Conv2d(width, 3, padding=1, bias=False), L.BatchNorm2d()],
                            [L.Conv2d(width, 1, bias=False), L.BatchNorm2d()]), L.ReLU()], width
    if kind == 2:  # inception-like concat, one branch a pool, nested residual in another
        branches = [[L.Conv2d(width, 1), L.ReLU()],
                    [L.MaxPool2d(3, stride=1, padding=1), L.Conv2d(2, 1)],
                    [cs.Residual([L.Conv2d(channels, 3, padding=1, groups=channels)]), L.BatchNorm2d()]]
        return [cs.Concat(branches)], width + 2 + channels
    return [L.Conv2d(width, 3, padding=2, dilation=2), L.BatchNorm2d(momentum=None), L.LeakyReLU(0.1)], width


def random_model(seed: int, input_shape=(3, 8, 8)):
    """A random branched CNN ending in global pooling (or flatten) and linear layers."""
    rng = np.random.default_rng(seed)
    layers, channels = [L.Conv2d(4, 3, padding=1), L.BatchNorm2d(), L.ReLU()], 4
    for _ in range(int(rng.integers(2, 4))):
        block, channels = random_block(rng, channels)
        layers += block
    if rng.integers(0, 2):
        layers += [L.AvgPool2d(2), L.Flatten(), L.Linear(6), L.Tanh(), L.Linear(3)]
    else:
        layers += [L.GlobalAvgPool(), L.Linear(3), L.Sigmoid()]
    return cs.Sequential(layers, input_shape=input_shape)


def every_layer_2d():
    """Every 2-D layer type convscope has (dropout with p=0 so train mode stays deterministic)."""
    return cs.Sequential([
        L.Conv2d(6, 3, stride=1, padding=1, groups=3), L.BatchNorm2d(), L.ReLU6(),
        L.LocalResponseNorm(3, alpha=0.01, beta=0.5, k=2.0),
        L.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
        L.LocallyConnected2d(4, 2, padding=1),
        L.AvgPool2d(2, stride=1, padding=1, ceil_mode=True, count_include_pad=False),
        L.AdaptiveAvgPool2d((3, 2)), L.Dropout(0.0),
        L.Flatten(2), L.Linear(5, in_features=6), L.Softmax(dim=-1), L.Flatten(),
        L.BatchNorm1d(), L.Sigmoid(), L.Linear(4, bias=False),
    ], input_shape=(3, 9, 9))


def every_layer_1d():
    return cs.Sequential([
        L.Conv1d(4, 3, padding=1), L.BatchNorm1d(), L.Tanh(), L.MaxPool1d(2, ceil_mode=True),
        L.Conv1d(4, 2, dilation=2, groups=2), L.AvgPool1d(2, stride=1, padding=1),
        cs.Concat([[L.Conv1d(2, 1)], []]), L.GlobalAvgPool(), L.Linear(3),
    ], input_shape=(2, 11))


def trained(model, seed=0, dtype=np.float64, batch=4, steps=3):
    """Build ``model`` and run a few training-mode forwards so batch norm's running
    statistics and num_batches_tracked are no longer their initial values."""
    model.build(seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 100)
    for _ in range(steps):
        model.forward(rng.standard_normal((batch,) + model.input_shape).astype(dtype), train=True)
    return model


# ----- to_torch --------------------------------------------------------------------------------

def assert_same_state(ours: dict, theirs: dict):
    assert list(ours) == list(theirs)  # same names, in PyTorch's order
    for name, value in ours.items():
        np.testing.assert_array_equal(value, theirs[name].numpy(), err_msg=name)


def assert_same_outputs(model, module, seed=1, batch=3):
    x = np.random.default_rng(seed).standard_normal((batch,) + model.input_shape)
    module.eval()
    np.testing.assert_allclose(module(torch.from_numpy(x)).detach().numpy(), model.forward(x),
                               rtol=TOL, atol=TOL, err_msg="eval")
    module.train()
    np.testing.assert_allclose(module(torch.from_numpy(x)).detach().numpy(), model.forward(x, train=True),
                               rtol=TOL, atol=TOL, err_msg="train")
    # train mode updated the running statistics on both sides in the same way
    for name, value in module.state_dict().items():
        np.testing.assert_allclose(value.numpy(), model.state_dict()[name], rtol=TOL, atol=TOL, err_msg=name)


@pytest.mark.parametrize("seed", range(6))
def test_random_branched_model_round_trips_through_torch(seed):
    model = trained(random_model(seed), seed=seed)
    module = cs.interop.to_torch(model)
    # The same structure: nn.Sequential with Concat/Residual modules at the same paths.
    assert isinstance(module, nn.Sequential) and len(module) == len(model.layers)
    assert_same_state(model.state_dict(), module.state_dict())
    assert any(k.endswith("num_batches_tracked") and int(v) == 3 for k, v in module.state_dict().items())
    assert_same_outputs(model, module)
    back = cs.interop.from_torch(module, model.input_shape)
    assert back.spec() == model.spec()
    assert_same_state(back.state_dict(), module.state_dict())
    x = np.random.default_rng(5).standard_normal((2,) + model.input_shape)
    np.testing.assert_allclose(back.forward(x), model.forward(x), rtol=TOL, atol=TOL)


@pytest.mark.parametrize("make", [every_layer_2d, every_layer_1d])
def test_every_layer_type_converts_both_ways(make):
    model = trained(make())
    module = cs.interop.to_torch(model)
    assert_same_state(model.state_dict(), module.state_dict())
    assert_same_outputs(model, module)
    back = cs.interop.from_torch(module, model.input_shape)
    assert back.spec() == model.spec()
    assert_same_state(back.state_dict(), module.state_dict())


def test_float32_model_gives_a_float32_module():
    model = trained(random_model(1), dtype=np.float32)
    module = cs.interop.to_torch(model).eval()
    assert next(module.parameters()).dtype == torch.float32
    x = np.random.default_rng(0).standard_normal((2,) + model.input_shape).astype(np.float32)
    np.testing.assert_allclose(module(torch.from_numpy(x)).detach().numpy(), model.forward(x), rtol=1e-5, atol=1e-6)
    assert cs.interop.from_torch(module, model.input_shape).dtype == np.float32


def test_resnet18_zoo_model_in_torch():
    """torchvision's resnet18 has 11,689,512 parameters (torchvision.models docs); the zoo
    model converted to torch must have exactly as many and compute the same outputs."""
    model = cs.zoo.load("resnet18").build((3, 64, 64), seed=0, dtype=np.float64)
    module = cs.interop.to_torch(model).eval()
    assert sum(p.numel() for p in module.parameters()) == 11_689_512
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64))
    np.testing.assert_allclose(module(torch.from_numpy(x)).detach().numpy(), model.forward(x), rtol=TOL, atol=TOL)


# ----- from_torch on hand-built torch models ---------------------------------------------------

def test_from_torch_hand_built_model():
    torch.manual_seed(0)
    module = nn.Sequential(
        nn.Conv2d(3, 6, 3, stride=2, padding=1, groups=3, bias=False), nn.BatchNorm2d(6), nn.ReLU(inplace=True),
        nn.Sequential(nn.Conv2d(6, 8, (3, 1), dilation=(1, 2), padding=(1, 0)), nn.LeakyReLU(0.3)),
        nn.MaxPool2d(2, ceil_mode=True), nn.LocalResponseNorm(3),
        nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False, divisor_override=None),
        nn.AdaptiveAvgPool2d((2, 3)), nn.Flatten(), nn.Dropout(0.25), nn.Linear(48, 10), nn.Softmax(dim=1),
    ).double()
    module.train()
    for _ in range(2):
        module(torch.randn(4, 3, 13, 11, dtype=torch.float64))
    model = cs.interop.from_torch(module, (3, 13, 11))
    assert [layer.type_name for layer in model.layers] == [
        "conv2d", "batchnorm2d", "relu", "sequential", "maxpool2d", "local_response_norm", "avgpool2d",
        "adaptive_avgpool2d", "flatten", "dropout", "linear", "softmax"]
    assert model.layers[4].stride is None  # torch's stride=kernel_size default reads back as the default
    assert_same_state(model.state_dict(), module.state_dict())
    assert int(model.state_dict()["1.num_batches_tracked"]) == 2
    module.eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 13, 11))
    np.testing.assert_allclose(model.forward(x), module(torch.from_numpy(x)).detach().numpy(), rtol=TOL, atol=TOL)


def test_from_torch_reads_concat_and_residual_modules():
    torch.manual_seed(1)
    module = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        TorchResidual(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())),
        TorchConcat([nn.Sequential(nn.Conv2d(4, 2, 1)), nn.Sequential()]),
        nn.Flatten(), nn.Linear(6 * 5 * 5, 2),
    ).double().eval()
    model = cs.interop.from_torch(module, (1, 5, 5))
    assert [layer.type_name for layer in model.layers] == ["conv2d", "residual", "concat", "flatten", "linear"]
    x = np.random.default_rng(0).standard_normal((2, 1, 5, 5))
    np.testing.assert_allclose(model.forward(x), module(torch.from_numpy(x)).detach().numpy(), rtol=TOL, atol=TOL)


# ----- bad input -------------------------------------------------------------------------------

def one_line_error(call, *args):
    with pytest.raises(ConvscopeError) as info:
        call(*args)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_from_torch_names_the_unsupported_module_and_its_path():
    # Mish has no convscope layer (GELU, which this test used before, is supported now)
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.ReLU(), nn.Mish()), nn.Flatten())
    message = one_line_error(cs.interop.from_torch, module, (3, 8, 8))
    assert "module 1.1 " in message and "torch.nn.modules.activation.Mish" in message


def test_from_torch_refuses_other_modules_and_bad_settings():
    class Net(nn.Module):  # data-dependent control flow: torch.fx cannot trace it
        def forward(self, x):
            return x if x.sum() > 0 else -x
    assert "torch.fx cannot trace" in one_line_error(cs.interop.from_torch, Net(), (3, 8, 8))
    assert "padding_mode" in one_line_error(cs.interop.from_torch,
                                            nn.Sequential(nn.Conv2d(3, 4, 3, padding_mode="reflect")), (3, 8, 8))
    assert "dim=None" in one_line_error(cs.interop.from_torch, nn.Sequential(nn.Softmax()), (3,))
    assert "return_indices" in one_line_error(cs.interop.from_torch,
                                              nn.Sequential(nn.MaxPool2d(2, return_indices=True)), (3, 8, 8))
    assert "Sequential" in one_line_error(cs.interop.from_torch, nn.Sequential(TorchResidual(nn.ReLU())), (3, 8, 8))


def test_from_torch_shape_mismatch_names_the_entry():
    # The torch conv expects 3 channels; the input shape says 1: the linear sizes disagree too.
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    message = one_line_error(cs.interop.from_torch, module, (1, 8, 8))
    assert "0.weight" in message and "(4, 3, 3, 3)" in message and "1×8×8" in message
    message = one_line_error(cs.interop.from_torch, module, (3, 9, 9))
    assert "2.weight" in message


def test_to_torch_needs_a_built_convscope_model():
    assert "build" in one_line_error(cs.interop.to_torch, random_model(0))
    assert "convscope model" in one_line_error(cs.interop.to_torch, nn.ReLU())


def test_missing_torch_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    model = trained(random_model(0))
    for call, args in ((cs.interop.to_torch, (model,)), (cs.interop.from_torch, (None, (3, 8, 8)))):
        message = one_line_error(call, *args)
        assert "pip install 'convscope[torch]'" in message


def test_convscope_imports_without_torch_and_onnx():
    code = ("import sys\n"
            "for name in ('torch', 'onnx', 'onnxruntime'): sys.modules[name] = None\n"
            "import convscope as cs, convscope.interop, convscope.commands.export\n"
            "m = cs.Sequential([cs.layers.Linear(2)]).build((3,))\n"
            "try:\n    cs.interop.to_onnx(m, 'x.onnx')\n"
            "except cs.ConvscopeError as e:\n    print(e)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "pip install 'convscope[onnx]'" in result.stdout


# ----- convscope export -o net.pt --------------------------------------------------------------

def _import_file(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_export_pt_writes_state_dict_and_module_code(tmp_path, capsys):
    from convscope.cli import main
    from convscope.train.checkpoint import save_checkpoint

    model = trained(every_layer_2d(), dtype=np.float32)
    checkpoint = save_checkpoint(tmp_path / "model.npz", model)
    assert main(["export", str(checkpoint), "-o", str(tmp_path / "net.pt")]) == 0
    assert "net.py" in capsys.readouterr().out

    code = (tmp_path / "net.py").read_text()
    imported = {alias.name.split(".")[0] for node in ast.walk(ast.parse(code))
                if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module)])}
    assert imported == {"os", "torch"}  # runs without convscope

    generated = _import_file(tmp_path / "net.py", "exported_net")
    state = torch.load(tmp_path / "net.pt", weights_only=True)  # tensors only, no pickled objects
    assert_same_state(model.state_dict(), state)
    module = generated.build_model()
    module.load_state_dict(state)
    module.eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 9)).astype(np.float32)
    np.testing.assert_allclose(module(torch.from_numpy(x)).detach().numpy(), model.forward(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(generated.load().eval()(torch.from_numpy(x)).detach().numpy(),
                               model.forward(x), rtol=1e-5, atol=1e-6)

    # training continues under torch: one SGD step changes the weights and lowers nothing else
    module.train()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    before = module[0].weight.detach().clone()
    module(torch.from_numpy(x)).square().sum().backward()
    optimizer.step()
    assert not torch.equal(before, module[0].weight)


def test_export_cli_bad_input(tmp_path, capsys):
    from convscope.cli import main
    from convscope.train.checkpoint import save_checkpoint

    checkpoint = save_checkpoint(tmp_path / "model.npz", trained(random_model(0), dtype=np.float32))
    cases = [([str(checkpoint), "-o", str(tmp_path / "net.txt")], ".onnx or .pt"),
             ([str(tmp_path / "missing.npz"), "-o", str(tmp_path / "net.pt")], "not found"),
             ([str(checkpoint), "-o", str(tmp_path / "no" / "net.pt")], "does not exist")]
    for argv, expected in cases:
        assert main(["export", *argv]) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1
