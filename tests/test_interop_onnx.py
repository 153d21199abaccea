"""convscope <-> ONNX (convscope.interop.to_onnx / from_onnx) and `convscope export -o net.onnx`.

Oracles: ONNX Runtime running the exported graph must give convscope's outputs within
1e-5 relative (float32; 1e-6 absolute for values near zero); graphs exported by PyTorch's
own ONNX exporter must read back to PyTorch's outputs within the same tolerance.
"""
from __future__ import annotations

import io
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import convscope as cs
from convscope import ConvscopeError
from convscope import layers as L
from convscope.interop.torch_modules import Concat as TorchConcat, Residual as TorchResidual
from test_interop_torch import every_layer_1d, every_layer_2d, one_line_error, random_model, trained

RTOL, ATOL = 1e-5, 1e-6


def run_onnx(path, x):
    options = ort.SessionOptions()
    options.log_severity_level = 3  # ONNX's shape inference predicts ceil-mode pools one too large; ORT computes right
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def without_cumulative_momentum(spec):
    """ONNX's momentum is a number: batch norm's momentum=None (a cumulative average, used
    only in training) reads back as the default 0.1."""
    if isinstance(spec, dict):
        return {k: without_cumulative_momentum(v) for k, v in spec.items() if not (k == "momentum" and v is None)}
    if isinstance(spec, list):
        return [without_cumulative_momentum(v) for v in spec]
    return spec


def check_round_trip(model, tmp_path, batches=(1, 3)):
    path = cs.interop.to_onnx(model, tmp_path / "net.onnx")
    proto = onnx.load(path)
    onnx.checker.check_model(proto)
    assert proto.opset_import[0].version >= 17
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"  # dynamic batch
    rng = np.random.default_rng(7)
    for batch in batches:
        x = rng.standard_normal((batch,) + model.input_shape).astype(np.float32)
        np.testing.assert_allclose(run_onnx(path, x), model.forward(x), rtol=RTOL, atol=ATOL)
    back = cs.interop.from_onnx(path)
    assert back.spec() == without_cumulative_momentum(model.spec())
    x = rng.standard_normal((2,) + model.input_shape).astype(np.float32)
    np.testing.assert_allclose(back.forward(x), model.forward(x), rtol=RTOL, atol=ATOL)
    return back


@pytest.mark.parametrize("seed", range(6))
def test_random_branched_model_round_trips_through_onnx(seed, tmp_path):
    model = trained(random_model(seed), seed=seed, dtype=np.float32)
    back = check_round_trip(model, tmp_path)
    for name, value in back.state_dict().items():
        if not name.endswith("num_batches_tracked"):  # ONNX keeps no count of batches
            np.testing.assert_array_equal(value, model.state_dict()[name], err_msg=name)


@pytest.mark.parametrize("make", [every_layer_2d, every_layer_1d])
def test_every_layer_type_round_trips_through_onnx(make, tmp_path):
    """Includes locally_connected2d (unfold Conv + Einsum), an adaptive pool to 3×2 from
    a size it does not divide (averaging matrices), a partial flatten (Reshape) and a
    linear on a (C, F) input (MatMul + Add)."""
    check_round_trip(trained(make(), dtype=np.float32), tmp_path)


def test_float64_model_is_exported_in_float32(tmp_path):
    model = trained(random_model(2), dtype=np.float64)
    path = cs.interop.to_onnx(model, tmp_path / "net.onnx")
    assert onnx.load(path).graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8))
    np.testing.assert_allclose(run_onnx(path, x.astype(np.float32)), model.forward(x), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("layer, expected", [
    (L.AvgPool2d(2, divisor_override=3), "divisor_override"),
    (L.LocalResponseNorm(4), "even"),
    (L.BatchNorm2d(track_running_stats=False), "track_running_stats"),
])
def test_layers_onnx_cannot_express_are_refused_clearly(layer, expected, tmp_path):
    model = cs.Sequential([L.Conv2d(4, 3), layer]).build((3, 8, 8))
    message = one_line_error(cs.interop.to_onnx, model, tmp_path / "net.onnx")
    assert "layer 1 " in message and expected in message
    assert not (tmp_path / "net.onnx").exists()


# ----- graphs written by torch.onnx.export -----------------------------------------------------

def torch_export(module, x, path, dynamic=True):
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript exporter (dynamo=False) needs only the onnx package, no onnxscript.
        torch.onnx.export(module, (x,), buffer, dynamo=False, opset_version=17, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}} if dynamic else None)
    path.write_bytes(buffer.getvalue())
    return path


def test_from_onnx_reads_torch_exported_branched_model(tmp_path):
    torch.manual_seed(0)
    module = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        TorchResidual(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))),
        TorchResidual(nn.Sequential(nn.Conv2d(8, 4, 3, stride=2, padding=1)), nn.Sequential(nn.Conv2d(8, 4, 1, stride=2))),
        TorchConcat([nn.Sequential(nn.Conv2d(4, 4, 1)), nn.Sequential(nn.AvgPool2d(3, 1, 1), nn.Conv2d(4, 2, 1))]),
        nn.MaxPool2d(2, ceil_mode=True), nn.ReLU6(), nn.Dropout(0.3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(6, 5), nn.LeakyReLU(0.2), nn.Linear(5, 3), nn.Softmax(dim=1))
    module.train()
    for _ in range(3):
        module(torch.randn(4, 3, 9, 9))
    module.eval()
    x = torch.randn(2, 3, 9, 9)
    model = cs.interop.from_onnx(torch_export(module, x, tmp_path / "torch.onnx"))
    # torch folds eval-mode batch norm into the convolution before it
    assert [layer.type_name for layer in model.layers] == [
        "conv2d", "relu", "residual", "residual", "concat", "maxpool2d", "relu6", "global_avgpool",
        "linear", "leaky_relu", "linear", "softmax"]
    np.testing.assert_allclose(model.forward(x.numpy()), module(x).detach().numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("dynamic", [True, False])
def test_from_onnx_reads_view_flatten(dynamic, tmp_path):
    """x.view(x.size(0), -1) exports as Shape/Gather/Unsqueeze/Concat/Reshape with a dynamic
    batch, or as a Reshape to the constant [2, -1] with the example's batch baked in."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 4, 3), nn.Linear(4 * 6 * 6, 2)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).view(x.size(0), -1))

    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(2, 1, 8, 8)
    model = cs.interop.from_onnx(torch_export(net, x, tmp_path / "view.onnx", dynamic))
    assert [layer.type_name for layer in model.layers] == ["conv2d", "relu", "flatten", "linear"]
    np.testing.assert_allclose(model.forward(x.numpy()), net(x).detach().numpy(), rtol=RTOL, atol=ATOL)


def make_graph(path, nodes, initializers, in_shape, out_shape, opset=17):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *in_shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", *out_shape])],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.save(model, path)
    return path


def test_from_onnx_reads_hand_built_batchnorm_matmul_reshape_graph(tmp_path):
    """BatchNormalization (which torch's exporter folds away), MatMul + Add as a linear
    layer and Reshape to [-1, 32] as a flatten; ONNX Runtime is the oracle."""
    rng = np.random.default_rng(0)
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    weights = {"w": f32(2, 3, 3, 3), "scale": f32(2), "shift": f32(2), "mean": f32(2),
               "var": np.abs(f32(2)) + 0.5, "shape": np.array([-1, 32], np.int64), "m": f32(32, 4), "b": f32(4)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "scale", "shift", "mean", "var"], ["n"], epsilon=1e-3,
                              momentum=0.8),
             helper.make_node("Relu", ["n"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Reshape", ["p", "shape"], ["f"]),
             helper.make_node("MatMul", ["f", "m"], ["mm"]),
             helper.make_node("Add", ["mm", "b"], ["y"])]
    path = make_graph(tmp_path / "bn.onnx", nodes, weights, (3, 8, 8), (4,))
    model = cs.interop.from_onnx(path)
    assert model.spec()["layers"][1] == {"type": "batchnorm2d", "eps": 0.001, "momentum": 0.2}
    x = rng.standard_normal((3, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(model.forward(x), run_onnx(path, x), rtol=RTOL, atol=ATOL)


# ----- bad input -------------------------------------------------------------------------------

def test_from_onnx_lists_unsupported_operators(tmp_path):
    # Celu and Selu have no convscope layer (Gelu and HardSwish, which this test used before
    # issue 12, are read now); the message lists both, counted, and the supported ops
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"), helper.make_node("Celu", ["c"], ["g"], name="celu1"),
             helper.make_node("Selu", ["g"], ["h"]), helper.make_node("Celu", ["h"], ["y"])]
    path = make_graph(tmp_path / "celu.onnx", nodes, {"w": np.ones((2, 1, 1, 1), np.float32)}, (1, 4, 4),
                      (2, 4, 4), opset=20)
    message = one_line_error(cs.interop.from_onnx, path)
    assert "Celu (2), Selu" in message and "Conv" in message
    assert "'celu1'" in message and "nearest supported: " in message


def test_from_onnx_reads_graphs_that_are_not_blocks_as_a_graph(tmp_path):
    # a = relu(x) feeds both additions: y = (a + sigmoid(x)) + a is no chain of concat/residual
    # blocks; before issue 12 it was refused, now it is a cs.Graph computing 2·relu(x) + sigmoid(x)
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Sigmoid", ["x"], ["b"]),
             helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Add", ["s", "a"], ["y"])]
    path = make_graph(tmp_path / "braid.onnx", nodes, {}, (3,), (3,))
    model = cs.interop.from_onnx(path)
    assert isinstance(model, cs.Graph)
    x = np.array([[-2.0, 0.5, 3.0]], np.float32)
    np.testing.assert_allclose(model.forward(x, train=False), 2 * np.maximum(x, 0) + 1 / (1 + np.exp(-x)),
                               rtol=1e-6)


@pytest.mark.parametrize("content, expected", [
    (b"this is a text file, not a model\n", "not an ONNX model"),
    (b"", "not an ONNX model"),
    (b"PK\x03\x04garbage", "not an ONNX model"),
])
def test_from_onnx_files_that_are_not_onnx(content, expected, tmp_path):
    path = tmp_path / "net.onnx"
    path.write_bytes(content)
    assert expected in one_line_error(cs.interop.from_onnx, path)
    assert "not found" in one_line_error(cs.interop.from_onnx, tmp_path / "missing.onnx")


def test_from_onnx_needs_input_shape_for_symbolic_sizes(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "H", "W"])])
    path = tmp_path / "dyn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert "input_shape" in one_line_error(cs.interop.from_onnx, path)
    model = cs.interop.from_onnx(path, input_shape=(3, 5, 5))
    assert model.input_shape == (3, 5, 5) and model.spec()["layers"] == [{"type": "relu"}]
    assert "does not match" in one_line_error(cs.interop.from_onnx, path, (4, 5, 5))


def test_to_onnx_needs_a_built_model(tmp_path):
    assert "build" in one_line_error(cs.interop.to_onnx, random_model(0), tmp_path / "net.onnx")


def test_missing_onnx_says_which_extra_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)
    model = trained(random_model(0), dtype=np.float32)
    for call, args in ((cs.interop.to_onnx, (model, tmp_path / "n.onnx")), (cs.interop.from_onnx, (tmp_path / "n",))):
        assert "pip install 'convscope[onnx]'" in one_line_error(call, *args)


# ----- convscope export -o net.onnx ------------------------------------------------------------

def test_export_onnx_from_checkpoint(tmp_path, capsys):
    from convscope.cli import main
    from convscope.train.checkpoint import save_checkpoint

    model = trained(random_model(3), dtype=np.float32)
    checkpoint = save_checkpoint(tmp_path / "model.npz", model)
    assert main(["export", str(checkpoint), "-o", str(tmp_path / "net.onnx")]) == 0
    assert "net.onnx" in capsys.readouterr().out
    x = np.random.default_rng(0).standard_normal((5, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(tmp_path / "net.onnx", x), model.forward(x), rtol=RTOL, atol=ATOL)
