"""How convscope writes a derivation, shared by the analysis (``summary --explain``) and the
traces (``convscope trace``): equation lines and titled sections of them.

An equation line states a number as symbols, then the same with values put in, then the
result: ``params = (C_in·k_h·k_w + 1)·C_out = (3·5·5 + 1)·32 = 2,432`` or, in a trace,
``y[0] = x[0]·w[0] + x[1]·w[1] + b = 1·0.3 + 2·0.5 + 0 = 1.3``. A section is a ``(title,
lines)`` pair; a block of sections renders as each title, then its lines indented.
"""
from __future__ import annotations

from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

from .errors import format_count

#: One titled group of derivation lines.
Section = Tuple[str, List[str]]


def equation(*sides: str) -> str:
    """The sides joined by `` = ``, each side that merely repeats the next one left out (so
    ``weights = 16`` rather than ``weights = 16 = 16``)."""
    kept = [side for side, after in zip(sides, list(sides[1:]) + [None]) if side != after]
    return " = ".join(kept)


def term_equation(result_name: str, symbols: Sequence[str], values: str, result: str) -> str:
    """A trace line: ``name = s₁ + s₂ + … = values = result`` (``values`` already joined)."""
    return f"{result_name} = {' + '.join(symbols)} = {values} = {result}"


def count_equation(symbols: str, values: str, result: int, rule: Optional[int] = None) -> str:
    """``symbols = values = result`` for a count; when the layer's own rule gives another
    number, the rule's number wins and the line says so."""
    if rule is not None and rule != result:
        return f"{symbols} = {format_count(rule)} (the layer's rule; the formula gives {format_count(result)})"
    return equation(symbols, values, format_count(result))


def section_rows(sections: Iterable[Section], indent: str = "  ", gap: bool = True) -> Iterator[Tuple[str, str]]:
    """The rows of rendered sections as ``(kind, text)``: ``("title", title)``, then
    ``("line", indent + line)`` per line, and ``("gap", "")`` between sections when ``gap``.
    Sections without lines are left out. Plain text and rich output both walk these rows."""
    first = True
    for title, lines in sections:
        if not lines:
            continue
        if gap and not first:
            yield "gap", ""
        first = False
        yield "title", title
        for line in lines:
            yield "line", f"{indent}{line}"


def render_sections(sections: Iterable[Section], indent: str = "  ", gap: bool = True) -> str:
    """Sections as plain text (see :func:`section_rows`)."""
    return "\n".join(text for _, text in section_rows(sections, indent, gap))
