"""The one-line text form: ``"conv2d(32, 5, padding=2) -> relu -> maxpool2d(2) -> flatten -> linear(10)"``.

Each step is a layer type, optionally called with literal arguments. It is parsed with
:mod:`ast` and only literals are accepted (numbers, strings, lists, tuples, booleans, None,
and nested spec dicts for container arguments): nothing in the text is ever evaluated.

A plain name where a size goes (``conv2d(k1, 3) -> conv2d(k2, 5)``) is a *symbol*: it is kept
as a :class:`Symbol` marker, never looked up. :func:`parse_entries` returns such entries for
the symbolic analysis (:mod:`convscope.analysis.symbolic`); :func:`parse_text`, which builds a
numeric model, refuses them with the hint to bind them (``--set k1=32``).
"""
from __future__ import annotations

import ast
import inspect
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Set

from ..errors import ConvscopeError
from ..layers.registry import LAYER_TYPES
from .document import _suggest, from_spec


@dataclass(frozen=True)
class Symbol:
    """A size written as a name in the text form (``k1`` in ``conv2d(k1, 3)``)."""

    name: str

    def __str__(self) -> str:
        return self.name


_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


def check_symbol_name(name: str, where: str) -> str:
    """Symbols are plain ASCII identifiers starting with a letter (``k1``, ``C``, ``n_out``)."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ConvscopeError(f"{where}: symbol names are plain identifiers such as k1 or C, got {name!r}")
    return name


def _short(text: str, limit: int = 80) -> str:
    """A step as quoted in messages: at most ``limit`` characters, so a hostile 10,000-character
    step gives a readable line."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text):,} characters)"


def _literal(node: ast.AST, step: str):
    if isinstance(node, ast.Name):
        return Symbol(check_symbol_name(node.id, _short(step)))
    if isinstance(node, (ast.List, ast.Tuple)) and any(isinstance(e, ast.Name) for e in node.elts):
        return [_literal(e, step) for e in node.elts]
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ConvscopeError(f"{_short(step)}: arguments must be literals such as 5, [3, 3] or 'same', "
                             f"got {_short(ast.unparse(node))}") from None


def _parse_step(step: str, index: int) -> dict:
    text = step.strip()
    if not text:
        raise ConvscopeError(f"step {index + 1} is empty; write steps like 'conv2d(8, 3) -> relu'")
    try:
        node = ast.parse(text, mode="eval").body
    except (RecursionError, MemoryError):  # CPython's parser gives up on very deep expressions
        raise ConvscopeError(f"step {index + 1} is nested too deeply to be a layer call such as "
                             "conv2d(8, 3); arguments must be plain literals") from None
    except SyntaxError:
        raise ConvscopeError(f"step {index + 1} {_short(text)} is not a layer call such as conv2d(8, 3)") from None
    if isinstance(node, ast.Name):
        name, args, keywords = node.id, [], []
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name, args, keywords = node.func.id, node.args, node.keywords
    else:
        raise ConvscopeError(f"step {index + 1} {_short(text)} is not a layer call such as conv2d(8, 3)")
    if name not in LAYER_TYPES:
        raise ConvscopeError(f"step {index + 1}: unknown layer type {name!r}{_suggest(name, LAYER_TYPES)}")
    entry = {"type": name}
    params = [p for p in list(inspect.signature(LAYER_TYPES[name].__init__).parameters.values())[1:]]
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(isinstance(a, ast.Starred) for a in args) or any(k.arg is None for k in keywords):
        raise ConvscopeError(f"step {index + 1} {_short(text)}: * and ** are not allowed")
    if len(args) > len(positional):
        raise ConvscopeError(f"step {index + 1} {_short(text)}: {name} takes at most {len(positional)} "
                             f"positional arguments ({', '.join(positional)}), got {len(args)}")
    for pname, arg in zip(positional, args):
        entry[pname] = _literal(arg, text)
    for kw in keywords:
        if kw.arg in entry:
            raise ConvscopeError(f"step {index + 1} {_short(text)}: {kw.arg} given twice")
        entry[kw.arg] = _literal(kw.value, text)
    return entry


def parse_entries(text: str) -> List[dict]:
    """The text form's spec entries, sizes written as names kept as :class:`Symbol` markers."""
    if not isinstance(text, str) or not text.strip():
        raise ConvscopeError("the model text is empty; write e.g. 'conv2d(8, 3) -> relu -> flatten -> linear(10)'")
    from .. import limits
    limits.check("the model text's length", len(text), "MAX_TEXT_FORM_CHARS", "characters")
    return [_parse_step(step, i) for i, step in enumerate(text.split("->"))]


def symbols_in(value) -> Set[str]:
    """Names of the symbols anywhere in entries (dicts, lists, markers)."""
    if isinstance(value, Symbol):
        return {value.name}
    if isinstance(value, dict):
        return set().union(set(), *(symbols_in(v) for v in value.values()))
    if isinstance(value, (list, tuple)):
        return set().union(set(), *(symbols_in(v) for v in value))
    return set()


def bind(value, values: Dict[str, object]):
    """A copy of entries with every bound symbol replaced by its value (others kept)."""
    if isinstance(value, Symbol):
        return values.get(value.name, value)
    if isinstance(value, dict):
        return {k: bind(v, values) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [bind(v, values) for v in value]
    return value


def parse_text(text: str, input_shape=None, values: Optional[Dict[str, int]] = None):
    """Parse the one-line form into an unbuilt Sequential (see module docstring); symbols must
    all be bound by ``values``."""
    entries = bind(parse_entries(text), values or {})
    free = sorted(symbols_in(entries))
    if free:
        raise ConvscopeError(f"{', '.join(free)} {'is a name' if len(free) == 1 else 'are names'}, not "
                             f"numbers: sizes written as names are symbols for `convscope summary` (which "
                             f"prints formulas); give values with --set {free[0]}=32, or write numbers "
                             "(strings need quotes: padding='same')")
    spec = {"layers": entries}
    if input_shape is not None:
        spec["input"] = list(input_shape)
    return from_spec(spec)


def looks_like_text_form(text: str) -> bool:
    """True when a MODEL argument is the one-line form rather than a name or path."""
    return "->" in text or "(" in text
