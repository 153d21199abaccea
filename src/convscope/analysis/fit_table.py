"""The summary table fitted to a terminal's width without ever cutting a number.

rich shrinks a table that is too wide by cutting cells to "…", which turns 23,296 into
"23,2…". Instead, the table is made narrower in this stated order, stopping at the first step
that fits the console's width:

1. every column, exact numbers (23,296);
2. numbers in compact units: 23.3 K, 70.3 M, 1.18 G (three significant digits);
3. drop "Receptive field"; 4. drop "Other ops"; 5. drop "Memory"; 6. drop "Weights" and "Biases";
7. let "Type" wrap between words and "Layer" (dotted names) anywhere (numbers and shapes never wrap).

Anything dropped or abbreviated is named in a one-line note that says how to see it all:
``--format json`` or ``--format markdown`` (exact values, every column) or a terminal at
least as wide as the full table.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from . import format as fmt

DROP_ORDER = (("Receptive field",), ("Other ops",), ("Memory",), ("Weights", "Biases"))
WRAPPABLE = ("Layer", "Type")


def compact(n: int) -> str:
    """23,296 -> '23.3 K', 70,276,000 -> '70.3 M', 999 -> '999' (three significant digits)."""
    n = int(n)
    if abs(n) < 1000:
        return f"{n}"
    units = (("K", 10 ** 3), ("M", 10 ** 6), ("G", 10 ** 9), ("T", 10 ** 12))
    for i, (unit, size) in enumerate(units):
        text = f"{n / size:.3g}"
        if float(text) < 1000 or i == len(units) - 1:  # 999,950 rounds to 1e+03 K: say 1 M
            return f"{text} {unit}"
    return f"{n:,}"


def _rows(report, counter) -> List[List[str]]:
    rows = [fmt._cells(row, counter) for row in report.layers]
    return rows + [fmt._total_cells(report, counter)]


def _table(report, title: str, rows: List[List[str]], keep: List[int], widths: Optional[Dict[str, int]] = None):
    """The table with columns ``keep``; ``widths`` fixes the width of wrapping columns."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    # Every cell is Text, never markup: layer names and titles come from users' files ("[/x]").
    table = Table(title=Text(title) if title else None, box=box.SIMPLE_HEAD, show_footer=False)
    for i in keep:
        header = fmt.HEADERS[i]
        fixed = (widths or {}).get(header)
        whole = max(len(header), *(len(r[i]) for r in rows))
        table.add_column(header, justify="right" if header in fmt.NUMERIC else "left",
                         no_wrap=fixed is None, overflow="fold" if fixed else "ellipsis",
                         width=fixed, min_width=None if fixed else whole)
    body, total = rows[:-1], rows[-1]
    for layer_row, cells in zip(report.layers, body):
        table.add_row(*(Text(cells[i]) for i in keep), style="dim" if layer_row.container else None)
    table.add_section()
    table.add_row(*(Text(total[i]) for i in keep), style="bold")
    return table


def _wrap_widths(console, report, title, rows, keep, width) -> Dict[str, int]:
    """Widths for Layer and Type that make the table ``width`` wide: Type keeps its longest
    word when it can (``eps=0.001`` stays whole), Layer (dotted names) takes the rest."""
    natural = {h: max(len(h), *(len(r[fmt.HEADERS.index(h)]) for r in rows)) for h in WRAPPABLE}
    spare = width - (_width(console, _table(report, title, rows, keep)) - sum(natural.values()))
    type_width = min(natural["Type"], _longest_word(rows, fmt.HEADERS.index("Type")), max(8, spare - 8))
    return {"Type": max(4, type_width), "Layer": max(4, spare - type_width)}


def _longest_word(rows, i) -> int:
    """A wrapped column still keeps each word (``eps=0.001``, ``11.branches.0.0``) whole."""
    return max(len(w) for r in rows for w in (r[i].split() or [""]))


def _width(console, table) -> int:
    from rich.measure import Measurement

    return Measurement.get(console, console.options.update(width=10 ** 6), table).maximum


def fit_table(report, console, title: str = "") -> Tuple[object, Optional[str]]:
    """(rich Table no wider than ``console.width`` whose numbers are all whole, note or None)."""
    width = console.width
    exact = _rows(report, fmt.fc)
    everything = list(range(len(fmt.HEADERS)))
    full = _table(report, title, exact, everything)
    full_width = _width(console, full)
    if full_width <= width:
        return full, None
    short = _rows(report, compact)
    keep = list(everything)
    dropped: List[str] = []
    steps = [()] + list(DROP_ORDER)
    for names in steps:
        for name in names:
            keep.remove(fmt.HEADERS.index(name))
            dropped.append(name)
        table = _table(report, title, short, keep)
        if _width(console, table) <= width:
            return table, _note(dropped, full_width, wrapped=False)
    table = _table(report, title, short, keep, _wrap_widths(console, report, title, short, keep, width))
    return table, _note(dropped, full_width, wrapped=True)


def _note(dropped: List[str], full_width: int, wrapped: bool) -> str:
    parts = ["numbers in K/M/G"]
    if dropped:
        parts.append("left out: " + ", ".join(dropped))
    if wrapped:
        parts.append("names wrapped")
    return f"({'; '.join(parts)}; all, exact: --format json|markdown or {full_width}+ columns)"
