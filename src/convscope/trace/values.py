"""Reading numbers from the command line and writing them back as people read them.

Three ways to give an array:

* ``1,2,3``: a flat list (1-D);
* ``[[1,2],[3,4]]``: nested lists (any rank, rectangular);
* ``2x2:1,2,3,4``: a shape, a colon, then the values in row-major order.

Numbers in explanation lines use up to 6 significant digits and a real minus sign, and a
negative factor is wrapped in parentheses: ``1·(−0.1)``. Numbers in JSON are rounded to 12
significant digits, which hides float64 noise (0.30000000000000004 -> 0.3) and nothing else.
"""
from __future__ import annotations

import ast
import math
from typing import Optional

import numpy as np

from ..errors import ConvscopeError

MINUS = "\u2212"


def parse_values(text, name: str) -> np.ndarray:
    """Parse ``text`` (see the module docstring) into a float64 array; ``name`` is the option
    (``"--x"``) used in error messages. Arrays and lists pass through, checked the same way.
    Text holds at most ``limits.MAX_TRACE_VALUES`` values (a trace typed on a command line is
    read by a person); arrays from a program (the explorer traces a unit of a real layer, 4,608
    terms for ResNet-18's last conv) are already in memory and bounded by their caller."""
    from .. import limits

    if not isinstance(text, str):
        return _parse_values(text, name)
    # Checked on the text first, so nothing large is ever parsed.
    limits.check(f"{name}'s length", len(text), "MAX_TRACE_CHARS", "characters")
    array = _parse_values(text, name)
    limits.check(f"{name}: the number of values (a trace is for reading)", array.size, "MAX_TRACE_VALUES")
    return array


def _parse_values(text, name: str) -> np.ndarray:
    if isinstance(text, np.ndarray) or isinstance(text, (list, tuple, int, float)):
        return _as_array(text, name, repr(text))
    if not isinstance(text, str) or not text.strip():
        raise ConvscopeError(f"{name} is empty; give numbers separated by commas, e.g. {name} 1,2,3")
    source = text.strip().replace(MINUS, "-")
    if source.startswith("["):
        try:
            nested = ast.literal_eval(source)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise ConvscopeError(f"{name} {text!r} is not a nested list of numbers; "
                                 f"write it like [[1,2],[3,4]]") from None
        return _as_array(nested, name, text)
    if ":" in source:
        shape_text, _, values_text = source.partition(":")
        try:
            shape = tuple(int(s) for s in shape_text.lower().replace("×", "x").split("x"))
        except ValueError:
            raise ConvscopeError(f"{name} {text!r}: the part before ':' must be a shape such as 2x3") from None
        if any(s < 1 for s in shape):
            raise ConvscopeError(f"{name} {text!r}: shape sizes must be positive, got {shape_text}")
        flat = _flat_numbers(values_text, name, text)
        if len(flat) != math.prod(shape):
            raise ConvscopeError(f"{name} {text!r}: shape {shape_text} needs {math.prod(shape)} values, "
                                 f"got {len(flat)}")
        return np.array(flat, dtype=np.float64).reshape(shape)
    return np.array(_flat_numbers(source, name, text), dtype=np.float64)


def parse_bias(text, count: int, kind: str, per: str) -> Optional[np.ndarray]:
    """``--b`` as a flat array of ``count`` values (None when not given); ``per`` names what
    each bias belongs to in the error ("filter", "output")."""
    if text is None:
        return None
    bias = parse_values(text, "--b").reshape(-1)
    if bias.size != count:
        values = f"{bias.size} value" + ("" if bias.size == 1 else "s")
        owners = f"is 1 {per}" if count == 1 else f"are {count} {per}s"
        raise ConvscopeError(f"{kind}: --b has {values} but there {owners}; give one bias per {per} ({count})")
    return bias


def _flat_numbers(source: str, name: str, text: str):
    values = []
    for part in source.split(","):
        part = part.strip()
        try:
            value = float(part)
        except ValueError:
            raise ConvscopeError(f"{name} {text!r}: could not read {part!r} as a number; give numbers "
                                 f"separated by commas, e.g. {name} 1,2,3") from None
        if not math.isfinite(value):
            raise ConvscopeError(f"{name} {text!r}: {part!r} is not a finite number")
        values.append(value)
    return values


def _as_array(nested, name: str, text: str) -> np.ndarray:
    if isinstance(nested, (int, float)) and not isinstance(nested, bool):
        nested = [nested]
    try:
        array = np.array(nested, dtype=np.float64)
    except (ValueError, TypeError):
        raise ConvscopeError(f"{name} {text!r}: rows must all have the same length and hold only "
                             f"numbers, e.g. [[1,2],[3,4]]") from None
    if array.size == 0:
        raise ConvscopeError(f"{name} is empty; give at least one number")
    if not np.all(np.isfinite(array)):
        raise ConvscopeError(f"{name} {text!r}: every value must be a finite number")
    return array


def number(value: float) -> str:
    """6 significant digits, integers without a decimal point, a real minus sign: −0.1, 2, 1.3."""
    value = float(value)
    if value == 0:
        return "0"
    return f"{value:.6g}".replace("-", MINUS)


def factor(value: float) -> str:
    """A number as a factor of a product: negative numbers get parentheses, 1·(−0.1)."""
    text = number(value)
    return f"({text})" if text.startswith(MINUS) else text


def json_number(value: float) -> float:
    """Rounded to 12 significant digits (see the module docstring)."""
    return float(f"{float(value):.12g}")


def json_array(array: Optional[np.ndarray]):
    if array is None:
        return None
    return np.vectorize(json_number, otypes=[float])(np.asarray(array, dtype=np.float64)).tolist()


def index(name: str, idx) -> str:
    """``index("x", (0, 2)) == "x[0,2]"``; an empty index gives the bare name."""
    idx = tuple(int(i) for i in idx)
    return f"{name}[{','.join(str(i) for i in idx)}]" if idx else name


def join_sum(parts) -> str:
    """``a + b + c`` where a later negative value is parenthesised: 0.1 + (−0.2)."""
    out = []
    for i, part in enumerate(parts):
        out.append(part if i == 0 or not part.startswith(MINUS) else f"({part})")
    return " + ".join(out)
