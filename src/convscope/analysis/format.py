"""A report as a rich table, plain text, Markdown, JSON, or derivations.

Table columns: layer (dotted name, indented by depth), type, output shape, weights, biases,
params, MACs, other ops, activation memory, receptive field (size and stride ``11×11 s4``).
A container's row shows its subtree's params and MACs in parentheses (its own are zero), so
the columns still add up to the totals row.
"""
from __future__ import annotations

import io
import json
from typing import List

from ..equations import render_sections
from ..errors import format_count as fc
from ..errors import format_shape
from .describe import call_text

HEADERS = ["Layer", "Type", "Output shape", "Weights", "Biases", "Params", "MACs", "Other ops",
           "Memory", "Receptive field"]
NUMERIC = {"Weights", "Biases", "Params", "MACs", "Other ops", "Memory"}


def human_bytes(n: int) -> str:
    """1,161,600 -> '1.16 MB' (decimal units, like the published model cards)."""
    for unit, size in (("GB", 10 ** 9), ("MB", 10 ** 6), ("kB", 10 ** 3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def _field_cell(field) -> str:
    if field is None:
        return ""
    if field.is_global:
        return "all"
    if not field.size:
        return "—"
    return f"{format_shape(field.size)} s{format_shape(sorted(set(field.jump)))}"


def _cells(row) -> List[str]:
    name = "  " * row.depth + (row.name or row.type)
    if row.container:
        counts = ["", "", f"({fc(row.subtree_params)})", f"({fc(row.subtree_macs)})"]
    else:
        counts = [fc(row.weights), fc(row.biases), fc(row.params), fc(row.macs)]
    other = sum(row.other_ops.values())
    shared = " (shared)" if row.shared_with else ""
    return [name, call_text(row.layer) + shared if row.layer is not None else row.type,
            format_shape(row.output_shape), *counts, fc(other) if other else "",
            human_bytes(row.memory_bytes), _field_cell(row.field)]


def _total_cells(report) -> List[str]:
    return ["Total", "", format_shape(report.output), fc(report.total_weights), fc(report.total_biases),
            fc(report.total_params), fc(report.total_macs), fc(report.total_other_ops),
            human_bytes(report.activation_bytes), _field_cell(report.field)]


def footer_lines(report) -> List[str]:
    """The totals and the counting convention, under every table."""
    other = ", ".join(f"{k.replace('_', ' ')} {fc(v)}" for k, v in report.other_ops.items() if v) or "none"
    return [
        f"Input: {format_shape(report.input)} ({report.dtype}, batch {report.batch_size}); "
        f"output: {format_shape(report.output)}",
        f"Params: {fc(report.total_params)} (weights {fc(report.total_weights)}, biases "
        f"{fc(report.total_biases)}; trainable {fc(report.trainable_params)}, non-trainable "
        f"{fc(report.non_trainable_params)}); buffers {fc(report.total_buffers)} (running statistics, "
        "not learned)",
        f"MACs: {fc(report.total_macs)} = {report.total_macs / 1e9:.3f} GMACs = "
        f"{report.total_flops / 1e9:.3f} GFLOPs (1 MAC = 2 FLOPs; conv and linear only)",
        f"Other ops (not in MACs): {other}",
        f"Memory: input {human_bytes(report.input_bytes)}, activations "
        f"{human_bytes(report.activation_bytes)} (peak live in inference "
        f"{human_bytes(report.peak_activation_bytes)}), params {human_bytes(report.param_bytes)}, "
        f"buffers {human_bytes(report.buffer_bytes)}",
    ]


def rich_table(report, title: str = ""):
    """A :class:`rich.table.Table` (aligned columns, thousands separators, totals row)."""
    from rich import box
    from rich.table import Table

    from rich.text import Text

    # Every cell is Text, never markup: layer names and titles come from users' files ("[/x]").
    table = Table(title=Text(title) if title else None, box=box.SIMPLE_HEAD, show_footer=False)
    for header in HEADERS:
        table.add_column(header, justify="right" if header in NUMERIC else "left", no_wrap=True)
    for row in report.layers:
        table.add_row(*map(Text, _cells(row)), style="dim" if row.container else None)
    table.add_section()
    table.add_row(*map(Text, _total_cells(report)), style="bold")
    return table


def print_table(report, console, title: str = "", explain: bool = False) -> None:
    console.print(rich_table(report, title))
    for line in footer_lines(report):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    if explain:
        console.print()
        console.print(explain_text(report), highlight=False, markup=False, soft_wrap=True)


def plain_table(report, title: str = "", explain: bool = False) -> str:
    """The table as plain text (no colour), wide enough not to wrap."""
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, width=240, color_system=None, force_terminal=False)
    print_table(report, console, title, explain)
    return buffer.getvalue()


def markdown(report, title: str = "", explain: bool = False) -> str:
    """A GitHub-flavoured Markdown table plus totals, ready to paste into a README."""
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [f"### {title}", ""] if title else []
    lines.append("| " + " | ".join(HEADERS) + " |")
    lines.append("|" + "|".join("---:" if h in NUMERIC else "---" for h in HEADERS) + "|")
    for row in report.layers:
        cells = _cells(row)
        cells[0] = "&nbsp;" * (2 * row.depth) + f"`{row.name}`"
        cells[1] = f"`{cells[1]}`"
        lines.append("| " + " | ".join(esc(c) for c in cells) + " |")
    total = [f"**{c}**" if c else "" for c in _total_cells(report)]
    lines.append("| " + " | ".join(esc(c) for c in total) + " |")
    lines.append("")
    lines.extend(f"- {esc(line)}" for line in footer_lines(report))
    if explain:
        lines += ["", "#### Derivations", ""]
        for row in report.layers:
            lines.append(f"- `{row.name}` {esc(call_text(row.layer))} → {format_shape(row.output_shape)}")
            lines.extend(f"  - {esc(line)}" for line in row.explain())
    return "\n".join(lines) + "\n"


def to_json(report, explain: bool = False) -> str:
    return json.dumps(report.to_dict(explain=explain), indent=2, ensure_ascii=False)


def explain_text(report) -> str:
    """Every row's derivations, one block per layer, then the totals."""
    out = []
    for row in report.layers:
        indent = "  " * row.depth
        heading = f"{indent}{row.name} {call_text(row.layer)} → {format_shape(row.output_shape)}"
        out.append(render_sections([(heading, row.explain())], indent=f"{indent}    ", gap=False))
    counted = [r for r in report.layers if r.params and r.shared_with is None]
    if len(counted) > 1:
        terms = " + ".join(fc(r.params) for r in counted)
        if len(counted) > 12:
            terms = " + ".join(fc(r.params) for r in counted[:6]) + " + … + " + \
                    " + ".join(fc(r.params) for r in counted[-3:])
        out.append(f"total params = Σ params = {terms} = {fc(report.total_params)}")
    out.append(f"total MACs = Σ MACs = {fc(report.total_macs)} (= {fc(report.total_flops)} FLOPs)")
    return "\n".join(out)
