"""Reading ``.npz`` archives from users safely: the zip directory and every member's ``.npy``
header are inspected BEFORE anything is decompressed, so a small file that declares gigabytes,
an encrypted or oddly compressed member, or a pickled object array is refused with one line.
Then ``numpy.load(allow_pickle=False)`` reads what passed."""
from __future__ import annotations

import os
import zipfile
from typing import Dict, Tuple

import numpy as np

from . import limits
from .errors import ConvscopeError
from .files import open_regular


class Pickled(ConvscopeError):
    """A member is an object array (numpy would unpickle it)."""


def inspect_npz(path: str) -> Dict[str, Tuple[tuple, np.dtype]]:
    """{array name: (shape, dtype)} from the headers alone; total declared size within
    ``limits.MAX_DECODED_BYTES``."""
    total, found = 0, {}
    with open_regular(path, ".npz file") as handle, zipfile.ZipFile(handle) as archive:
        for info in archive.infolist():
            if info.flag_bits & 0x1:
                raise ConvscopeError(f"member {info.filename!r} is encrypted")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ConvscopeError(f"member {info.filename!r} uses compression method {info.compress_type}; "
                                     "numpy writes stored or deflated members only")
            if not info.filename.endswith(".npy"):
                raise ConvscopeError(f"member {info.filename!r} is not an .npy array")
            total += info.file_size
            limits.check("its arrays' declared size", total, "MAX_DECODED_BYTES", "bytes")
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(member, max_header_size=10000)
            name = info.filename[:-4]
            values = int(np.prod(shape, dtype=object)) if shape else 1
            limits.check(f"array {name!r}'s declared size", values * dtype.itemsize, "MAX_DECODED_BYTES",
                         "bytes")
            if dtype.hasobject:
                raise Pickled(name)
            found[name] = (tuple(shape), dtype)
    return found


def load_npz_arrays(path: str, what: str, check=None) -> Dict[str, np.ndarray]:
    """Inspect, call ``check(headers)`` (may raise ConvscopeError), then load every array.
    Every failure is one ConvscopeError naming ``path``; ``what`` names the kind of file."""
    path = os.fspath(path)
    with open_regular(path, what) as handle:
        magic = handle.read(4)
    if magic != b"PK\x03\x04":
        kind = "an empty file" if not magic else "not an .npz archive (no zip signature)"
        raise ConvscopeError(f"{path} is not a {what}: it is {kind}")
    try:
        headers = inspect_npz(path)
        if check is not None:
            check(headers)
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except MemoryError:
        raise
    except Pickled:
        raise ConvscopeError(f"{path} holds pickled objects; convscope never loads those, so it is not a "
                             f"{what} (save plain numeric arrays)") from None
    except ConvscopeError as error:
        raise ConvscopeError(f"{path} is not a usable {what}: {error}") from None
    except Exception as error:  # zip, zlib, npy-header and CRC errors of a damaged file, whatever their type
        if "pickle" in str(error):
            raise ConvscopeError(f"{path} holds pickled objects; convscope never loads those, so it is "
                                 f"not a {what}") from None
        detail = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
        raise ConvscopeError(f"{path} is not a {what}: it is truncated or corrupt, or not an .npz archive "
                             f"({detail})") from None
