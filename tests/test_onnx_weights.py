"""Reading an ONNX file's weights without copies (interop/onnx_weights.py): the arrays equal
``onnx.numpy_helper.to_array`` on ``onnx.load``'s proto (the oracle) for every element type,
size and position in the file, are writable and aligned, and no two parameters share memory;
files the wire walk does not expect are read the ordinary way with protobuf's own meaning."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import convscope as cs  # noqa: E402
from convscope.interop import onnx_weights  # noqa: E402

#: numpy types the ONNX files may hold as raw_data, with bfloat16 (packed, so numpy_helper's path).
DTYPES = [np.float32, np.float16, np.float64, np.int8, np.uint8, np.int16, np.int32, np.int64, np.bool_]


def model_with(initializers, nodes=(), inputs=None, outputs=None):
    graph = helper.make_graph(list(nodes), "g",
                              inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                              outputs or [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def oracle(path):
    """{name: array} as onnx itself reads the file."""
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def ours(path):
    proto, decoded = onnx_weights.load(onnx, str(path), "MAX_MODEL_BYTES")
    return proto, {t.name: decoded[i] if i in decoded else numpy_helper.to_array(t)
                   for i, t in enumerate(proto.graph.initializer)}


tensors = st.lists(st.tuples(st.sampled_from(DTYPES), st.lists(st.integers(0, 7), min_size=0, max_size=3),
                             st.integers(0, 20)), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=tensors)
def test_every_initializer_equals_onnx_own_reading(tmp_path, specs):
    """Random element types, shapes (empty and zero-sized ones included) and name lengths (which
    move each tensor's data to a different alignment in the file)."""
    rng = np.random.default_rng(len(specs))
    initializers = []
    for k, (dtype, shape, pad) in enumerate(specs):
        values = (rng.standard_normal(shape) * 100).astype(dtype)
        initializers.append(numpy_helper.from_array(values, name=f"t{k}" + "_" * pad))
    path = tmp_path / "m.onnx"
    path.write_bytes(model_with(initializers).SerializeToString())
    expected = oracle(path)
    _, got = ours(path)
    assert list(got) == list(expected)
    for name, value in expected.items():
        assert got[name].dtype == value.dtype and got[name].shape == value.shape, name
        np.testing.assert_array_equal(got[name], value)
        if got[name].size:
            assert got[name].flags.aligned and got[name].flags.writeable, name


def test_packed_and_external_types_go_through_numpy_helper(tmp_path):
    bf16 = helper.make_tensor("b", TensorProto.BFLOAT16, [3], [1.0, 2.5, -3.0])
    plain = numpy_helper.from_array(np.arange(5, dtype=np.float32), name="f")
    path = tmp_path / "m.onnx"
    path.write_bytes(model_with([bf16, plain]).SerializeToString())
    proto, decoded = onnx_weights.load(onnx, str(path), "MAX_MODEL_BYTES")
    assert set(decoded) == {1}  # the float32 tensor only; bfloat16 got its raw_data back
    np.testing.assert_array_equal(numpy_helper.to_array(proto.graph.initializer[0]),
                                  numpy_helper.to_array(bf16))


def _field(number, payload: bytes) -> bytes:
    return onnx_weights._encode_varint(number << 3 | 2) + onnx_weights._encode_varint(len(payload)) + payload


def test_a_tensor_with_two_raw_data_fields_keeps_protobufs_meaning(tmp_path):
    """Protobuf keeps the last of a repeated scalar field; the walk gives up on such a tensor and
    the file is read the ordinary way, so the value is the last one, as onnx.load says."""
    tensor = numpy_helper.from_array(np.zeros(2, np.float32), name="w")
    tensor_bytes = tensor.SerializeToString() + _field(9, np.array([7.0, 8.0], np.float32).tobytes())
    model = model_with([])
    graph_bytes = model.graph.SerializeToString() + _field(5, tensor_bytes)
    model.ClearField("graph")
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString() + _field(7, graph_bytes))
    expected = oracle(path)
    np.testing.assert_array_equal(expected["w"], [7.0, 8.0])
    _, got = ours(path)
    np.testing.assert_array_equal(got["w"], [7.0, 8.0])


def test_two_graph_fields_are_merged_as_protobuf_merges_them(tmp_path):
    first = model_with([numpy_helper.from_array(np.ones(3, np.float32), name="a")])
    second = helper.make_graph([], "", [], [], initializer=[numpy_helper.from_array(np.full(2, 5, np.int64), name="b")])
    path = tmp_path / "m.onnx"
    path.write_bytes(first.SerializeToString() + _field(7, second.SerializeToString()))
    expected = oracle(path)
    assert list(expected) == ["a", "b"]
    _, got = ours(path)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])


@pytest.mark.parametrize("content", [b"\x3b\x00", b"\x0a\xff\xff\xff\xff\x0f", b"\x3a\x05\x2a\x10"])
def test_bytes_the_walk_cannot_follow_are_not_a_model(tmp_path, content):
    """A group tag, a length past the end, a graph whose initializer runs past its graph: the
    same one-line refusal as protobuf's own parse gives."""
    path = tmp_path / "m.onnx"
    path.write_bytes(content)
    with pytest.raises(cs.ConvscopeError, match="not an ONNX model"):
        cs.interop.from_onnx(path)


def test_imported_parameters_are_views_of_one_read_and_never_share_memory(tmp_path):
    """Two convolutions use the same weight initializer: each parameter gets memory of its own
    (training one must not move the other), and the weights are not copied out of the file."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 1, 3, 3)).astype(np.float32), name="w")
    w2 = numpy_helper.from_array(np.random.default_rng(1).standard_normal((4, 4, 3, 3)).astype(np.float32), name="w2")
    nodes = [helper.make_node("Conv", ["x", "w"], ["h"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["h", "w2"], ["h2"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["h2", "w2"], ["y"], pads=[1, 1, 1, 1])]
    path = tmp_path / "m.onnx"
    path.write_bytes(model_with([w, w2], nodes).SerializeToString())
    model = cs.interop.from_onnx(path)
    values = [p.value for p in model.parameters()]
    assert len(values) == 3
    for i, a in enumerate(values):
        assert a.flags.writeable and a.flags.aligned
        for b in values[i + 1:]:
            assert not np.shares_memory(a, b)
    file_size = path.stat().st_size
    owners = []
    for v in values:
        while isinstance(v.base, np.ndarray):
            v = v.base
        owners.append(v)
    # the first two are views of the file's bytes; the third user of w2 got its own copy
    assert [o.nbytes == file_size for o in owners] == [True, True, False]
    np.testing.assert_array_equal(values[1], values[2])


def test_external_data_is_read_straight_into_arrays(tmp_path):
    """A model saved with its tensors in a file beside it (torch does so past 2 GB): every
    initializer equals onnx's own reading (onnx.load with its external data), packed types
    included, and a model reads to the same outputs as the same model saved in one file."""
    rng = np.random.default_rng(5)
    w = numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), name="w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), name="b")
    extra = [numpy_helper.from_array(np.arange(7, dtype=np.int64), name="i"),
             helper.make_tensor("bf", TensorProto.BFLOAT16, [3], [1.0, 2.5, -3.0]),
             numpy_helper.from_array(rng.standard_normal((5, 3)).astype(np.float64), name="d")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])]
    inline = tmp_path / "inline.onnx"
    inline.write_bytes(model_with([w, b], nodes).SerializeToString())
    folder = tmp_path / "external"
    folder.mkdir()
    outside = folder / "m.onnx"
    onnx.save_model(model_with([w, b] + extra, nodes), str(outside), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="m.data", size_threshold=0)
    assert (folder / "m.data").stat().st_size > 0
    expected = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(outside)).graph.initializer}
    from convscope.interop.onnx_import import _load
    _, got = _load(str(outside), onnx)
    assert list(got) == list(expected)
    for name, value in expected.items():
        assert got[name].dtype == value.dtype, name
        np.testing.assert_array_equal(got[name], value)
    x = rng.standard_normal((2, 1, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(cs.interop.from_onnx(inline).forward(x), cs.interop.from_onnx(outside).forward(x))
