"""Checks on an ONNX file before convscope trusts it: attributes of the expected type (a
missing required one named), initializers whose declared size fits the budget and whose data
are really there, external data inside the model's folder. The importer's converters read
attributes through :class:`Attrs` and nothing else, so every malformed node is one sentence.
"""
from __future__ import annotations

import os
from typing import Callable, Dict, Optional

import numpy as np

from .. import limits
from ..errors import ConvscopeError

# AttributeProto types (onnx.AttributeProto.AttributeType) of the attributes the importer reads.
FLOAT, INT, STRING, TENSOR, FLOATS, INTS = 1, 2, 3, 4, 6, 7
_TYPE_NAMES = {FLOAT: "a float", INT: "an integer", STRING: "a string", TENSOR: "a tensor", FLOATS: "floats",
               INTS: "integers"}
EXPECTED = {"kernel_shape": INTS, "strides": INTS, "pads": INTS, "dilations": INTS, "axes": INTS,
            "group": INT, "axis": INT, "ceil_mode": INT, "count_include_pad": INT, "storage_order": INT,
            "size": INT, "transA": INT, "transB": INT, "allowzero": INT, "training_mode": INT, "start": INT,
            "end": INT, "alpha": FLOAT, "beta": FLOAT, "bias": FLOAT, "epsilon": FLOAT, "momentum": FLOAT,
            "ratio": FLOAT, "min": FLOAT, "max": FLOAT, "auto_pad": STRING, "equation": STRING}
#: Largest kernel, stride, pad, dilation, group or size an attribute may hold.
MAX_ATTRIBUTE_INT = 1 << 20


class Attrs(dict):
    """A node's attributes, type-checked on reading; ``attrs["name"]`` on a missing required
    attribute is a ConvscopeError naming the node and the attribute (not a KeyError)."""

    def __init__(self, values: Dict, describe: Callable[[], str]):
        super().__init__(values)
        self._describe = describe

    def __missing__(self, key):
        raise ConvscopeError(f"{self._describe()} has no {key!r} attribute, which it needs")


def read_attrs(onnx, node, describe: Callable[[], str]) -> Attrs:
    """Every attribute of ``node`` as a Python value, each of the type ONNX defines for it."""
    values = {}
    for attribute in node.attribute:
        expected = EXPECTED.get(attribute.name)
        if expected is not None and attribute.type != expected:
            raise ConvscopeError(f"{describe()}: attribute {attribute.name!r} must be {_TYPE_NAMES[expected]}, "
                                 f"got {_TYPE_NAMES.get(attribute.type, f'type {attribute.type}')}")
        try:
            value = onnx.helper.get_attribute_value(attribute)
        except Exception as error:  # an attribute with no value set, or of an unknown type
            raise ConvscopeError(f"{describe()}: attribute {attribute.name!r} is unreadable "
                                 f"({str(error)[:80] or type(error).__name__})") from None
        if expected in (INT, INTS):
            numbers = [value] if expected == INT else list(value)
            if any(abs(v) > MAX_ATTRIBUTE_INT for v in numbers):
                raise ConvscopeError(f"{describe()}: attribute {attribute.name!r} = {str(value)[:60]} is out of "
                                     f"range (at most {MAX_ATTRIBUTE_INT:,})")
        if expected == FLOAT and not np.isfinite(value):
            raise ConvscopeError(f"{describe()}: attribute {attribute.name!r} is {value}, not a finite number")
        if attribute.type == onnx.AttributeProto.TENSOR:  # checked and decoded, as initializers are
            value = tensor_array(onnx, value, f"{describe()}: attribute {attribute.name!r}")
        values[attribute.name] = value
    return Attrs(values, describe)


def constant_value(onnx, node, describe: Callable[[], str]) -> np.ndarray:
    """The value of a Constant node (``value`` tensor, or a ``value_float(s)``/``value_int(s)``)."""
    if not node.attribute:
        raise ConvscopeError(f"{describe()} has no value attribute")
    attribute = node.attribute[0]
    if attribute.name == "value":
        return tensor_array(onnx, attribute.t, f"{describe()}'s value")
    try:
        return np.asarray(onnx.helper.get_attribute_value(attribute))
    except Exception as error:
        raise ConvscopeError(f"{describe()}: its {attribute.name!r} is unreadable ({str(error)[:80]})") from None


def declared_bytes(onnx, tensor) -> int:
    """Bytes a TensorProto's dims and type promise (Python integers: no overflow)."""
    values = 1
    for d in tensor.dims:
        if d < 0:
            raise ConvscopeError(f"initializer {tensor.name!r} has a negative dimension {d}")
        values *= int(d)
    try:
        itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    except Exception:
        raise ConvscopeError(f"initializer {tensor.name!r} has an unknown element type {tensor.data_type}") from None
    return values * itemsize


def tensor_array(onnx, tensor, what: str, decoded: Optional[np.ndarray] = None) -> np.ndarray:
    """``numpy_helper.to_array`` after checking that the data the dims promise are there
    (``decoded``: the tensor's values already read from the file, see :mod:`.onnx_weights`)."""
    size = declared_bytes(onnx, tensor)
    limits.check(f"{what} ({tensor.name!r})'s declared size", size, "MAX_DECODED_BYTES", "bytes")
    if decoded is not None:
        array = decoded
    else:
        try:
            array = onnx.numpy_helper.to_array(tensor)
        except Exception as error:  # raw_data shorter than declared, a mistyped field, ...
            raise ConvscopeError(f"{what} {tensor.name!r} does not hold the {size:,} bytes its shape "
                                 f"{list(tensor.dims)} declares ({str(error).splitlines()[0][:80] if str(error) else type(error).__name__})") from None
    if array.dtype.kind == "f" and not all_finite(array):
        raise ConvscopeError(f"{what} {tensor.name!r} holds NaN or infinite values")
    return array


def all_finite(array: np.ndarray) -> bool:
    """No NaN or infinity in ``array``. A float64 sum is finite exactly when every value is (a NaN
    or an infinity makes it NaN or infinite; float32 or float16 values cannot overflow it) and
    needs no temporary the size of the array; only a float64 array whose finite values overflow
    the sum is checked value by value."""
    with np.errstate(over="ignore", invalid="ignore"):  # inf − inf is the answer here, not a warning
        if np.isfinite(np.sum(array, dtype=np.float64)):
            return True
    return array.dtype == np.float64 and bool(np.all(np.isfinite(array)))


def initializer_values(onnx, proto, path: str, decoded: Dict[int, np.ndarray]) -> Dict[str, np.ndarray]:
    """{name: checked array} of ``proto.graph.initializer``; ``decoded``: {index: values already
    read from the file} (:func:`.onnx_weights.load`)."""
    return {t.name: tensor_array(onnx, t, f"{path}: initializer", decoded.get(i))
            for i, t in enumerate(proto.graph.initializer)}


def check_text(proto, path: str) -> None:
    """Every name the importer reads is text. Protobuf hands a string field whose bytes are not
    UTF-8 over as ``bytes`` (ONNX is proto2, which does not validate them): a damaged file."""
    graph = proto.graph
    fields = [graph.name]
    for node in graph.node:
        fields += [node.op_type, node.domain, node.name, *node.input, *node.output]
        fields += [a.name for a in node.attribute]
    for group in (graph.initializer, graph.input, graph.output, graph.value_info):
        fields += [item.name for item in group]
    fields += [p.key for p in proto.metadata_props] + [p.value for p in proto.metadata_props]
    fields += [o.domain for o in proto.opset_import]
    if any(not isinstance(field, str) for field in fields):
        raise ConvscopeError(f"{path} is not an ONNX model: some of its names are not UTF-8 text (the file is "
                             "damaged); give a .onnx file such as to_onnx writes")
    for index, node in enumerate(graph.node):
        if not node.output or not node.output[0]:
            raise ConvscopeError(f"{path}: node {node.name or index!r} ({node.op_type}) has no output; the file is "
                                 "damaged or was written by hand")


def check_model(onnx, proto, path: str) -> None:
    """Declared sizes of every initializer (each within ``limits.MAX_DECODED_BYTES``, in total
    within ``limits.MAX_MODEL_BYTES``) and
    external data references (inside the model's folder, regular files, long enough), before
    any tensor is decoded or any external file is read."""
    folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    total = 0
    for tensor in proto.graph.initializer:
        size = declared_bytes(onnx, tensor)
        limits.check(f"{path}: initializer {tensor.name!r}'s declared size", size, "MAX_DECODED_BYTES", "bytes")
        total += size
        limits.check(f"{path}: its initializers' declared size", total, "MAX_MODEL_BYTES", "bytes")
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        target = os.path.realpath(os.path.join(folder, location))
        if not location or os.path.isabs(location) or os.path.commonpath([folder, target]) != folder:
            raise ConvscopeError(f"{path}: initializer {tensor.name!r} keeps its data in {location!r}, which "
                                 "points outside the model's folder; convscope reads external data only "
                                 "from files beside the model")
        from ..files import require_regular
        require_regular(target, "external data file")
        try:
            offset, length = int(info.get("offset", 0)), int(info.get("length", declared_bytes(onnx, tensor)))
        except ValueError:
            raise ConvscopeError(f"{path}: initializer {tensor.name!r} has a malformed offset or length") from None
        if os.path.getsize(target) < offset + length or length < declared_bytes(onnx, tensor):
            raise ConvscopeError(f"{path}: initializer {tensor.name!r} declares {declared_bytes(onnx, tensor):,} "
                                 f"bytes in {location!r} but that file is smaller; it is truncated")
