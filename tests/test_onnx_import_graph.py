"""from_onnx as a graph reader (issue 12): operators torch's exporters write, folding of shape
arithmetic, the CLI's .onnx MODEL, and bad input. ONNX Runtime is the oracle for outputs."""
from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import convscope as cs
from convscope import ConvscopeError
from test_interop_onnx import make_graph
from test_interop_torch import one_line_error


def ort_run(path, x):
    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_shape_arithmetic_is_folded_and_operators_read(tmp_path):
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape (torch's x.view(x.size(0), 4, -1)),
    Transpose, Pad, Sub/Div/Pow/Sqrt/ReduceMean (a layer norm spelled out, axes as an input),
    Slice, Split, Concat on the last axis, HardSigmoid·x, Squeeze/Unsqueeze, MatMul + Add."""
    rng = np.random.default_rng(0)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    i64 = lambda *v: np.array(v, np.int64)  # noqa: E731  (1-D)
    consts = {"zero": np.int64(0), "four": np.int64(4), "minus": np.int64(-1), "axes0": i64(0), "last": i64(-1),
              "two": np.float32(2.0), "eps": np.float32(1e-5), "gamma": f32(6), "beta": f32(6),
              "pads": i64(0, 1, 0, 0, 0, 2), "s0": i64(1), "e0": i64(3), "ax": i64(2),
              "sizes": i64(2, 4), "w": f32(6, 5), "b": f32(5), "ax1": i64(1)}
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["n"]),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
        helper.make_node("Unsqueeze", ["four", "axes0"], ["four1"]),
        helper.make_node("Unsqueeze", ["minus", "axes0"], ["minus1"]),
        helper.make_node("Concat", ["n1", "four1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["r"]),              # (4, 6)
        helper.make_node("ReduceMean", ["r", "last"], ["mu"], keepdims=1),
        helper.make_node("Sub", ["r", "mu"], ["d"]),
        helper.make_node("Pow", ["d", "two"], ["d2"]),
        helper.make_node("ReduceMean", ["d2", "last"], ["var"], keepdims=1),
        helper.make_node("Add", ["var", "eps"], ["ve"]),
        helper.make_node("Sqrt", ["ve"], ["sd"]),
        helper.make_node("Div", ["d", "sd"], ["z"]),
        helper.make_node("Mul", ["z", "gamma"], ["zg"]),
        helper.make_node("Add", ["zg", "beta"], ["ln"]),
        helper.make_node("Transpose", ["ln"], ["t"], perm=[0, 2, 1]),    # (6, 4)
        helper.make_node("Pad", ["t", "pads"], ["p"], mode="constant"),  # (7, 6)
        helper.make_node("Slice", ["p", "s0", "e0", "ax"], ["sl"]),      # (7, 2)
        helper.make_node("Split", ["p", "sizes"], ["a", "c"], axis=2),   # (7, 2), (7, 4)
        helper.make_node("Concat", ["c", "sl", "a"], ["cat"], axis=-1),  # (7, 8)
        helper.make_node("HardSigmoid", ["cat"], ["hs"], alpha=1 / 6, beta=0.5),
        helper.make_node("Mul", ["cat", "hs"], ["hw"]),
        helper.make_node("Unsqueeze", ["hw", "ax1"], ["u"]),             # (1, 7, 8)
        helper.make_node("Squeeze", ["u", "ax1"], ["q"]),                # (7, 8)
        helper.make_node("Transpose", ["q"], ["qt"], perm=[0, 2, 1]),    # (8, 7)
        helper.make_node("Slice", ["qt", "s0", "e0", "ax"], ["y0"]),     # (8, 2)
        helper.make_node("Flatten", ["y0"], ["y"], axis=1),              # (16,)
    ]
    consts["w"] = f32(16, 3)
    path = make_graph(tmp_path / "ops.onnx", nodes, consts, (2, 3, 4), (16,), opset=18)
    model = cs.interop.from_onnx(path)
    assert isinstance(model, cs.Graph)
    types = {layer.type_name for _, layer in model.children()}
    assert {"layer_norm", "permute", "pad", "split", "cat", "hardswish"} <= types
    x = rng.standard_normal((3, 2, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(model.forward(x, train=False), ort_run(path, x), rtol=1e-5, atol=1e-5)


def test_unsupported_operator_names_the_node_and_the_nearest_supported_op(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Selu", ["r"], ["y"], name="act7")]
    path = make_graph(tmp_path / "selu.onnx", nodes, {}, (3,), (3,))
    message = one_line_error(cs.interop.from_onnx, path)
    assert "Selu" in message and "'act7'" in message and "nearest supported: Selu -> " in message


def test_external_data_outside_the_models_folder_is_refused(tmp_path):
    inner = tmp_path / "model"
    inner.mkdir()
    (tmp_path / "secret.bin").write_bytes(np.ones(4, np.float32).tobytes())
    weight = numpy_helper.from_array(np.ones((4,), np.float32), "w")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", "16")):
        weight.external_data.add(key=key, value=value)
    nodes = [helper.make_node("Mul", ["x", "w"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], initializer=[weight])
    path = inner / "net.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    message = one_line_error(cs.interop.from_onnx, path)
    assert "outside the model's folder" in message and "../secret.bin" in message


def test_an_input_too_large_for_memory_is_refused_before_allocating(tmp_path):
    # 1×500,000,000×1×1 float32 is 2 GB per sample; the file itself is ~130 bytes
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 500_000_000, 1, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 500_000_000, 1, 1])])
    path = tmp_path / "huge.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert os.path.getsize(path) < 200
    message = one_line_error(cs.interop.from_onnx, path)
    assert "500,000,000" in message and "refused before allocating" in message


@pytest.mark.parametrize("attribute, expected", [
    # The typed attribute reader (interop/onnx_checks.py) names the attribute and what it must be:
    # a strides "ab" must not be read as (97, 98).
    (helper.make_attribute("strides", "ab"), "attribute 'strides' must be integers, got a string"),
    (helper.make_attribute("group", [1, 2]), "attribute 'group' must be"),
])
def test_mistyped_attributes_are_refused(tmp_path, attribute, expected):
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv1")
    node.attribute.append(attribute)
    path = make_graph(tmp_path / "bad.onnx", [node], {"w": np.ones((2, 1, 1, 1), np.float32)}, (1, 4, 4), (2, 4, 4))
    message = one_line_error(cs.interop.from_onnx, path)
    assert expected in message and "'conv1'" in message


def test_cli_commands_take_an_onnx_model(tmp_path, capsys):
    from convscope.cli import main
    model = cs.from_spec({"input": [1, 8, 8], "layers": [
        {"type": "conv2d", "out_channels": 4, "kernel_size": 3}, {"type": "relu"}, {"type": "flatten"},
        {"type": "linear", "out_features": 10}]})
    model.build((1, 8, 8), seed=0)
    path = os.fspath(tmp_path / "net.onnx")
    cs.interop.to_onnx(model, path)
    assert main(["summary", path]) == 0
    assert "1,490" in capsys.readouterr().out  # (1·3·3 + 1)·4 + (4·6·6 + 1)·10 = 40 + 1,450
    assert main(["export", path, "-o", os.fspath(tmp_path / "again.onnx")]) == 0
    assert main(["show", "architecture", path, "-o", os.fspath(tmp_path / "net.svg")]) == 0
    assert main(["show", "filters", path, "-o", os.fspath(tmp_path / "f.png")]) == 0
    assert main(["evaluate", path, "--data", "digits", "--format", "json"]) == 0
    (tmp_path / "not-a-model.bin").write_bytes(b"\x00\x01\x02\xff")
    assert main(["summary", os.fspath(tmp_path / "not-a-model.bin")]) == 2
    assert ".onnx model" in capsys.readouterr().err


def _as_strided_graph(path, positions):
    """x (2, 3, 2, 2) -> Reshape [-1] -> Gather(positions, axis 0) -> Flatten: how torch's dynamo
    exporter writes aten.as_strided (ConvNeXt's pooled features), at an exported batch of 2."""
    nodes = [helper.make_node("Reshape", ["x", "flat"], ["f"]),
             helper.make_node("Gather", ["f", "positions"], ["g"], axis=0),
             helper.make_node("Flatten", ["g"], ["y"], axis=1)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 12])],
        initializer=[numpy_helper.from_array(np.array([-1], np.int64), "flat"),
                     numpy_helper.from_array(positions.astype(np.int64), "positions")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return os.fspath(path)


@pytest.mark.parametrize("perm", [(0, 1, 2), (1, 2, 0)])
def test_as_strided_as_reshape_and_gather_is_a_view_of_each_sample(tmp_path, perm):
    # each sample b takes positions b·12 + (its own 3×2×2 values in the order of perm):
    # in order a reshape, permuted (1, 2, 0) a permute to (2, 2, 3); ONNX Runtime is the oracle
    own = np.arange(12).reshape(3, 2, 2).transpose(perm)
    path = _as_strided_graph(tmp_path / "strided.onnx", np.stack([own, own + 12]))
    model = cs.interop.from_onnx(path)
    types = {layer.type_name for _, layer in model.children()} if isinstance(model, cs.Graph) else set()
    assert ("permute" in types) == (perm != (0, 1, 2))
    x = np.random.default_rng(0).standard_normal((2, 3, 2, 2)).astype(np.float32)
    np.testing.assert_array_equal(model.forward(x, train=False), ort_run(path, x))


def test_as_strided_that_mixes_samples_is_refused(tmp_path):
    own = np.arange(12).reshape(3, 2, 2)
    path = _as_strided_graph(tmp_path / "mixed.onnx", np.stack([own, own]))  # sample 1 reads sample 0
    message = one_line_error(cs.interop.from_onnx, path)
    assert "mix samples" in message and "Gather" in message


def _fx_node(call: str):
    node = helper.make_node(*call[0], name=call[1])
    entry = node.metadata_props.add()
    entry.key, entry.value = "pkg.torch.onnx.fx_node", call[2]
    return node


def test_dynamo_note_counts_only_biases_the_module_had(tmp_path):
    # torch's dynamo exporter leaves out all-zero biases; a module without a bias looks the same
    # in the graph, and only the recorded aten call tells them apart (DenseNet's bias-free convs
    # were counted as dropped: 2,752 too many). Here: a conv without bias, a linear with a zero
    # one (its 3 biases are the only parameters the note may count).
    nodes = [
        _fx_node((("Conv", ["x", "conv.weight"], ["c"]), "node_Conv_0",
                  "%conv2d : [num_users=1] = call_function[target=torch.ops.aten.conv2d.default](args = "
                  "(%x, %p_conv_weight, None, [1, 1], [1, 1]), kwargs = {})")),
        helper.make_node("Flatten", ["c"], ["f"], name="node_Flatten_1", axis=1),
        _fx_node((("Gemm", ["f", "fc.weight"], ["y"]), "node_Gemm_2",
                  "%linear : [num_users=1] = call_function[target=torch.ops.aten.linear.default](args = "
                  "(%view, %p_fc_weight, %p_fc_bias), kwargs = {})")),
    ]
    nodes[2].attribute.append(helper.make_attribute("transB", 1))
    rng = np.random.default_rng(0)
    path = make_graph(tmp_path / "dynamo.onnx", nodes, {"conv.weight": rng.standard_normal((2, 1, 3, 3)).astype(
        np.float32), "fc.weight": rng.standard_normal((3, 8)).astype(np.float32)}, (1, 4, 4), (3,))
    model = cs.interop.from_onnx(path)
    assert model.import_folded_params == 3
    assert "all-zero biases of 1 convolution/linear layer (3 parameters fewer)" in model.import_note
