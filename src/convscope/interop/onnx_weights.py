"""An ONNX file's weights read once, straight into the arrays the parameters will train.

``onnx.load`` hands the whole file to protobuf, which copies every initializer's ``raw_data``
into memory of its own; ``numpy_helper.to_array`` copies those bytes again into a read-only
array, and a trainable parameter needs a third, writable copy. For a 500 MB file the copies cost
twice what reading the file does. Here instead:

1. the file is read once into one writable buffer (``np.uint8``, its size checked first);
2. a walk over protobuf's wire format (https://protobuf.dev/programming-guides/encoding/) finds
   where each of ``graph.initializer``'s ``raw_data`` lies in it, and copies everything else (the
   nodes, names, shapes: kilobytes) into a second, small message that protobuf parses;
3. each initializer becomes a view of the buffer, moved left by at most ``itemsize - 1`` bytes in
   place (over its own field header) so that it is aligned for its element type.

A file whose wire format the walk does not expect (groups, a second ``graph`` field, two
``raw_data`` in one tensor, a length past its message's end) is read the ordinary way instead:
the fast path is an optimisation, never a second definition of what a valid file is.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import sys
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import ConvscopeError

#: Element types whose raw bytes are a plain little-endian numpy array (the others, packed
#: 4-bit and float8 types, bfloat16, strings, go through ``numpy_helper.to_array``).
_PLAIN_TYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32,
                7: np.int64, 9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64}

Span = Tuple[int, int]  # (offset, length) of one initializer's raw_data in the file


class _NotPlain(Exception):
    """The walk met wire data it does not handle; the file is read the ordinary way."""


def read_buffer(path: str, what: str, budget_name: str) -> np.ndarray:
    """The bytes of the regular file ``path`` as one writable ``uint8`` array, its size checked
    against ``limits.<budget_name>`` before anything is allocated.

    The memory is an anonymous mapping rather than ``np.empty``: NumPy asks the kernel for huge
    pages on large arrays, and where transparent huge pages are defragmented on demand (the
    common ``defrag=madvise``) the first write into a 553 MB ``np.empty`` array took 0.95 to
    2.2 s, against 0.5 s into plain pages."""
    from .. import limits
    from ..files import open_regular

    with open_regular(path, what) as handle:
        size = os.fstat(handle.fileno()).st_size
        limits.check(f"{path}: the {what}'s size", size, budget_name, "bytes")
        buffer = _fresh_bytes(size)
        done = _read_into(handle, buffer)
    return buffer[:done]


def _fresh_bytes(size: int) -> np.ndarray:
    """``size`` writable uninitialised bytes; large ones an anonymous mapping (see read_buffer)."""
    return np.frombuffer(mmap.mmap(-1, size), np.uint8) if size >= 1 << 20 else np.empty(size, np.uint8)


def _read_into(handle, buffer: np.ndarray) -> int:
    """Fill ``buffer`` (bytes) from ``handle``'s position; the count read (less at the end of the file)."""
    view, done = memoryview(buffer).cast("B"), 0
    while done < view.nbytes:
        got = handle.readinto(view[done:])
        if not got:
            break
        done += got
    return done


def read_external(onnx, proto, folder: str, path: str, decoded: Dict[int, np.ndarray]) -> None:
    """Initializers kept in files beside the model (``data_location = EXTERNAL``; their
    locations, offsets and lengths checked before, by ``onnx_checks.check_model``; nothing to do
    for a model without any): those of a
    plain element type are read straight into a fresh array each, added to ``decoded``; the
    others are loaded into the proto by onnx's helper. A 2.6 GB RegNet-Y 128GF took 25 s through
    the helper alone (its bytes copied into the proto, out again, and once more to be writable)."""
    from ..files import open_regular
    from .onnx_checks import declared_bytes

    handles = {}
    try:
        for index, tensor in enumerate(proto.graph.initializer):
            if tensor.data_location != onnx.TensorProto.EXTERNAL:
                continue
            info = {entry.key: entry.value for entry in tensor.external_data}
            size = declared_bytes(onnx, tensor)
            dtype = _PLAIN_TYPES.get(tensor.data_type)
            if dtype is None or sys.byteorder != "little" or int(info.get("length", size) or size) != size:
                onnx.external_data_helper.load_external_data_for_tensor(tensor, folder)
                continue
            location = info["location"]
            if location not in handles:
                handles[location] = open_regular(os.path.join(folder, location), "external data file")
            handle = handles[location]
            handle.seek(int(info.get("offset", 0) or 0))
            values = _fresh_bytes(size)
            if _read_into(handle, values) != size:
                raise ConvscopeError(f"{path}: initializer {tensor.name!r} reads past the end of {location!r}")
            decoded[index] = values.view(dtype).reshape(tuple(tensor.dims))
    except ConvscopeError:
        raise
    except Exception as error:  # OSError, or the onnx helper's own refusals
        raise ConvscopeError(f"{path}: its external data cannot be read ({type(error).__name__})") from None
    finally:
        for handle in handles.values():
            handle.close()


def _varint(data: memoryview, pos: int, end: int) -> Tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _NotPlain
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _fields(data: memoryview, start: int, end: int):
    """(field number, wire type, field start, value start, field end) of each field of the
    message in ``data[start:end]``."""
    pos = start
    while pos < end:
        head = pos
        key, pos = _varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, after = _varint(data, pos, end)
        elif wire == 1:
            after = pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos, end)
            after = pos + length
        elif wire == 5:
            after = pos + 4
        else:  # 3 and 4: groups, unused by ONNX
            raise _NotPlain
        if after > end:
            raise _NotPlain
        yield number, wire, head, pos, after
        pos = after


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


def split(data: memoryview, numbers: Dict[str, int]) -> Tuple[bytes, List[Optional[Span]]]:
    """(the model without its initializers' raw_data, each initializer's span in ``data`` or
    None). ``numbers``: the field numbers of ModelProto.graph, GraphProto.initializer and
    TensorProto.raw_data."""
    spans: List[Optional[Span]] = []
    out, graphs = bytearray(), 0
    for number, wire, head, start, end in _fields(data, 0, len(data)):
        if number == numbers["graph"] and wire == 2:
            graphs += 1
            out += _length_delimited(number, _graph(data, start, end, numbers, spans))
        else:
            out += data[head:end]
    if graphs > 1:  # protobuf merges repeated message fields; not worth following here
        raise _NotPlain
    return bytes(out), spans


def _graph(data, start, end, numbers, spans) -> bytes:
    out = bytearray()
    for number, wire, head, value, after in _fields(data, start, end):
        if number == numbers["initializer"] and wire == 2:
            out += _length_delimited(number, _tensor(data, value, after, numbers, spans))
        else:
            out += data[head:after]
    return bytes(out)


def _tensor(data, start, end, numbers, spans) -> bytes:
    out, span = bytearray(), None
    for number, wire, head, value, after in _fields(data, start, end):
        if number == numbers["raw_data"] and wire == 2:
            if span is not None:
                raise _NotPlain
            span = (value, after - value)
        else:
            out += data[head:after]
    spans.append(span)
    return bytes(out)


def load(onnx, path: str, budget_name: str):
    """(ModelProto, {initializer index: array}) for the file at ``path``. The arrays are
    writable, aligned views of one buffer holding the file; initializers missing from the dict
    (external data, packed element types, or every one when the walk gave up) are left in the
    proto for ``numpy_helper``. Raises ConvscopeError when the bytes are not a model."""
    buffer = read_buffer(path, "ONNX file", budget_name)
    data = memoryview(buffer)
    numbers = {"graph": onnx.ModelProto.DESCRIPTOR.fields_by_name["graph"].number,
               "initializer": onnx.GraphProto.DESCRIPTOR.fields_by_name["initializer"].number,
               "raw_data": onnx.TensorProto.DESCRIPTOR.fields_by_name["raw_data"].number}
    try:
        rest, spans = split(data, numbers)
        proto = _parse(onnx, rest, path)
        if len(spans) != len(proto.graph.initializer):
            raise _NotPlain
    except _NotPlain:
        return _parse(onnx, buffer.tobytes(), path), {}
    return proto, _arrays(onnx, proto, buffer, spans)


def _parse(onnx, raw: bytes, path: str):
    try:
        return onnx.load_model_from_string(raw)
    except Exception as error:  # protobuf's DecodeError and friends: the bytes are not a model
        raise ConvscopeError(f"{path} is not an ONNX model: it does not parse as one "
                             f"({type(error).__name__}); give a .onnx file such as to_onnx writes") from None


def _arrays(onnx, proto, buffer: np.ndarray, spans: List[Optional[Span]]) -> Dict[int, np.ndarray]:
    """Views of ``buffer`` for the initializers with plain element types; the others get their
    raw_data back in the proto. Spans are visited in file order so that moving one left for
    alignment only ever overwrites field headers already copied out by :func:`split`."""
    from .onnx_checks import declared_bytes

    arrays: Dict[int, np.ndarray] = {}
    base, free_from = buffer.ctypes.data, 0  # bytes below free_from may hold data still needed
    order = sorted((s[0], i) for i, s in enumerate(spans) if s is not None)
    for offset, index in order:
        tensor = proto.graph.initializer[index]
        length = spans[index][1]
        dtype = _PLAIN_TYPES.get(tensor.data_type)
        if dtype is None or sys.byteorder != "little" or length != declared_bytes(onnx, tensor):
            tensor.raw_data = buffer[offset:offset + length].tobytes()  # numpy_helper decides, and words errors
            free_from = offset + length
            continue
        itemsize = np.dtype(dtype).itemsize
        shift = (base + offset) % itemsize
        if shift <= offset - free_from:
            if shift:
                ctypes.memmove(base + offset - shift, base + offset, length)
            start = offset - shift
            array = buffer[start:start + length].view(dtype)
        else:  # no room to move it (only where two tiny tensors sit back to back): a copy
            array = buffer[offset:offset + length].copy().view(dtype)
        arrays[index] = array.reshape(tuple(tensor.dims))
        free_from = offset + length
    return arrays
