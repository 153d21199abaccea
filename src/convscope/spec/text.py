"""The one-line text form: ``"conv2d(32, 5, padding=2) -> relu -> maxpool2d(2) -> flatten -> linear(10)"``.

Each step is a layer type, optionally called with literal arguments. It is parsed with
:mod:`ast` and only literals are accepted (numbers, strings, lists, tuples, booleans, None,
and nested spec dicts for container arguments): nothing in the text is ever evaluated.
"""
from __future__ import annotations

import ast
import inspect

from ..errors import ConvscopeError
from ..layers.registry import LAYER_TYPES
from .document import _suggest, from_spec


def _short(text: str, limit: int = 80) -> str:
    """A step as quoted in messages: at most ``limit`` characters, so a hostile 10,000-character
    step gives a readable line."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text):,} characters)"


def _literal(node: ast.AST, step: str):
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


def parse_text(text: str, input_shape=None):
    """Parse the one-line form into an unbuilt Sequential (see module docstring)."""
    if not isinstance(text, str) or not text.strip():
        raise ConvscopeError("the model text is empty; write e.g. 'conv2d(8, 3) -> relu -> flatten -> linear(10)'")
    from .. import limits
    limits.check("the model text's length", len(text), "MAX_TEXT_FORM_CHARS", "characters")
    entries = [_parse_step(step, i) for i, step in enumerate(text.split("->"))]
    spec = {"layers": entries}
    if input_shape is not None:
        spec["input"] = list(input_shape)
    return from_spec(spec)


def looks_like_text_form(text: str) -> bool:
    """True when a MODEL argument is the one-line form rather than a name or path."""
    return "->" in text or "(" in text
