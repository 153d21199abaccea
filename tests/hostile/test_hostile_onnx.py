"""Malformed ONNX files: missing or mistyped attributes, missing data, huge declared
initializers, external data outside the model's folder. Each is one line naming the node or
initializer (ConvscopeError from from_onnx), never a KeyError/IndexError/ValueError, and never
an allocation of what a header merely declares."""
from __future__ import annotations

import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

import convscope as cs  # noqa: E402
from convscope import limits  # noqa: E402


def model_file(tmp_path, nodes, initializers=(), shape=(1, 1, 8, 8), out_shape=None, name="m.onnx"):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                              initializer=list(initializers))
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / name
    path.write_bytes(proto.SerializeToString())
    return path


def weight(name="w", shape=(2, 1, 3, 3)):
    return helper.make_tensor(name, TensorProto.FLOAT, shape, np.zeros(shape, np.float32).ravel().tolist())


NODES = {
    "maxpool-no-kernel": ([helper.make_node("MaxPool", ["x"], ["y"])], [], "'kernel_shape'"),
    "lrn-no-size": ([helper.make_node("LRN", ["x"], ["y"])], [], "'size'"),
    "constant-no-value": ([helper.make_node("Constant", [], ["c"]), helper.make_node("Relu", ["x"], ["y"])], [],
                          "no value attribute"),
    "maxpool-float-kernel": ([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2.0, 2.0])], [],
                             "must be integers"),
    "maxpool-string-pads": ([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], pads="0")], [],
                            "must be integers"),
    "maxpool-huge-kernel": ([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[1 << 40, 2])], [],
                            "out of range"),
    "conv-group-float": ([helper.make_node("Conv", ["x", "w"], ["y"], group=1.5)], [weight()], "must be an integer"),
    "conv-group-zero": ([helper.make_node("Conv", ["x", "w"], ["y"], group=0)], [weight()], "group"),
    "leaky-alpha-inf": ([helper.make_node("LeakyRelu", ["x"], ["y"], alpha=float("inf"))], [], "not a finite number"),
    "bn-eps-nan": ([helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], epsilon=float("nan"))],
                   [weight(n, (1,)) for n in "sbmv"], "not a finite number"),
    "lrn-size-string": ([helper.make_node("LRN", ["x"], ["y"], size="5")], [], "must be an integer"),
    "softmax-axis-float": ([helper.make_node("Softmax", ["x"], ["y"], axis=1.0)], [], "must be an integer"),
    "conv-missing-weight": ([helper.make_node("Conv", ["x", "nope"], ["y"])], [], ""),
    "gemm-transB-float": ([helper.make_node("Flatten", ["x"], ["f"]),
                           helper.make_node("Gemm", ["f", "w"], ["y"], transB=1.5)], [weight("w", (3, 64))],
                          "must be an integer"),
}


@pytest.mark.parametrize("case", sorted(NODES))
def test_malformed_nodes(tmp_path, case):
    nodes, inits, words = NODES[case]
    path = model_file(tmp_path, nodes, inits)
    with pytest.raises(cs.ConvscopeError, match=None) as caught:
        cs.interop.from_onnx(path)
    message = str(caught.value)
    assert "\n" not in message and words in message, message


def raw_tensor(name, dims, raw: bytes):
    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(dims))
    tensor.raw_data = raw
    return tensor


@pytest.mark.parametrize("dims, raw, words", [
    ((2, 1, 3, 3), b"\x00" * 8, "does not hold"),
    ((2, 1, 3, 3), b"", "does not hold"),
    ((10 ** 6, 10 ** 6, 3, 3), b"", "limits.MAX_DECODED_BYTES"),
    ((1 << 31, 1 << 31), b"\x00" * 4, "limits.MAX_DECODED_BYTES"),
    ((2, 1, 3, 3), np.full(18, np.nan, np.float32).tobytes(), "NaN or infinite"),
])
def test_initializer_data(tmp_path, dims, raw, words):
    path = model_file(tmp_path, [helper.make_node("Conv", ["x", "w"], ["y"])], [raw_tensor("w", dims, raw)])
    with pytest.raises(cs.ConvscopeError, match=words.replace(".", r"\.")):
        cs.interop.from_onnx(path)


def external(tmp_path, location, length=None, write=True, size=18 * 4):
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2, 1, 3, 3])
    tensor.data_location = TensorProto.EXTERNAL
    entries = {"location": location, "offset": "0", "length": str(length if length is not None else 72)}
    for key, value in entries.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    if write and not os.path.isabs(location) and ".." not in location:
        (tmp_path / location).write_bytes(b"\x00" * size)
    return tensor


@pytest.mark.parametrize("location, size, words", [
    ("../outside.bin", 72, "points outside the model's folder"),
    ("/etc/passwd", 72, "points outside the model's folder"),
    ("sub/../../x.bin", 72, "points outside the model's folder"),
    ("w.bin", 16, "smaller"),
    ("missing.bin", None, "not found"),
])
def test_external_data(tmp_path, location, size, words):
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "outside.bin").write_bytes(b"\x00" * 72)
    tensor = external(folder, location, write=size is not None, size=size or 0)
    path = model_file(folder, [helper.make_node("Conv", ["x", "w"], ["y"])], [tensor])
    with pytest.raises(cs.ConvscopeError, match=words):
        cs.interop.from_onnx(path)


def test_external_data_through_a_link_outside(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "secret.bin").write_bytes(b"\x00" * 72)
    os.symlink(tmp_path / "secret.bin", folder / "w.bin")
    path = model_file(folder, [helper.make_node("Conv", ["x", "w"], ["y"])], [external(folder, "w.bin", write=False)])
    with pytest.raises(cs.ConvscopeError, match="points outside the model's folder"):
        cs.interop.from_onnx(path)


def test_external_data_on_a_device(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    os.symlink("/dev/zero", folder / "w.bin")
    path = model_file(folder, [helper.make_node("Conv", ["x", "w"], ["y"])], [external(folder, "w.bin", write=False)])
    with pytest.raises(cs.ConvscopeError):
        cs.interop.from_onnx(path)


def test_onnx_file_larger_than_the_budget_is_refused_by_size(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "MAX_MODEL_BYTES", 1024)  # the file holds 16·5·5·4 = 1,600 bytes of weights
    path = model_file(tmp_path, [helper.make_node("Conv", ["x", "w"], ["y"])], [weight("w", (16, 1, 5, 5))])
    with pytest.raises(cs.ConvscopeError, match="limits.MAX_MODEL_BYTES"):
        cs.interop.from_onnx(path)


@pytest.mark.parametrize("content", [b"", b"\x00" * 10, b"garbage that is not protobuf \xff\xff", b"\x08\x07"])
def test_not_onnx(tmp_path, content):
    (tmp_path / "m.onnx").write_bytes(content)
    with pytest.raises(cs.ConvscopeError, match="not an ONNX model"):
        cs.interop.from_onnx(tmp_path / "m.onnx")


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def _small_model_bytes() -> bytes:
    rng = np.random.default_rng(0)
    w = onnx.numpy_helper.from_array(rng.standard_normal((2, 1, 3, 3)).astype(np.float32), name="w")
    b = onnx.numpy_helper.from_array(rng.standard_normal(2).astype(np.float32), name="b")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w", "b"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
                              "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[w, b])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


_GOOD = _small_model_bytes()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, len(_GOOD) - 1), st.integers(0, 255)), min_size=1, max_size=4),
       cut=st.integers(0, len(_GOOD)))
def test_damaged_bytes_load_or_give_one_line(tmp_path, edits, cut):
    """The wire-format walk of onnx_weights and everything after it, on a small model with a
    few bytes changed and maybe cut short: the file is read (the damage hit a name or a weight)
    or refused with one line; no other exception escapes."""
    data = bytearray(_GOOD)
    for position, value in edits:
        data[position] = value
    path = tmp_path / "m.onnx"
    path.write_bytes(bytes(data[:cut]))
    try:
        cs.interop.from_onnx(path)
    except cs.ConvscopeError as error:
        assert "\n" not in str(error)


def test_a_name_with_a_newline_stays_one_line(tmp_path):
    """A damaged byte turned an operator's name into "\\nelu": the refusal quotes it escaped."""
    path = model_file(tmp_path, [helper.make_node("\nelu", ["x"], ["y"])])
    with pytest.raises(cs.ConvscopeError) as caught:
        cs.interop.from_onnx(path)
    assert "\n" not in str(caught.value) and "\\nelu" in str(caught.value)


def test_names_that_are_not_utf8_are_refused(tmp_path):
    data = _GOOD.replace(b"Relu", b"R\xffelu"[:4])
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    with pytest.raises(cs.ConvscopeError, match="not UTF-8 text"):
        cs.interop.from_onnx(path)


def test_a_node_without_outputs_is_refused(tmp_path):
    path = model_file(tmp_path, [helper.make_node("Conv", ["x", "w"], [])], [weight()])
    with pytest.raises(cs.ConvscopeError, match="has no output"):
        cs.interop.from_onnx(path)
