"""``convscope summary`` with sizes written as names: ``'conv2d(k1, 3) -> conv2d(k2, 5)'``,
``--input Cx32x32``, ``--set k1=32,k2=64``.

With names left free, summary prints formulas (:mod:`convscope.analysis.symbolic`): per layer
the output shape, weights, biases, params and MACs as written, then each total as written,
expanded and factored. Once every name has a value, the bound model goes through the ordinary
numeric summary, followed by the formulas with their values (the JSON form gains a
``symbolic`` object), so the numbers always come from the numeric engine.
"""
from __future__ import annotations

import json
import os
import re
import sys
from typing import Dict, Optional, Tuple

from ..errors import ConvscopeError


def _input_has_names(text: Optional[str]) -> bool:
    if not text:
        return False
    parts = [p for p in re.split(r"\s*[x×,]\s*|\s+", text.strip().strip("[]()")) if p]
    # Only when every part is a number or a plain name: anything else ("2.5") is left to the
    # numeric parser, whose error says what a shape looks like.
    return all(re.fullmatch(r"\d+|[A-Za-z][A-Za-z0-9_]*", p) for p in parts) and \
        any(not p.isdigit() for p in parts)


def plan(args) -> Optional[Tuple[list, tuple, Dict[str, int]]]:
    """(entries, input shape, values) when the command involves names, else None (the
    ordinary path). Errors for --set names the model does not have."""
    from ..analysis.symbolic import parse_bindings, parse_shape
    from ..spec.text import looks_like_text_form, parse_entries, symbols_in
    from .resolve import resolve

    values = parse_bindings(getattr(args, "set", None))
    names_in_input = _input_has_names(args.input)
    entries = None
    if looks_like_text_form(args.model) and not os.path.exists(args.model) and not args.model.strip().endswith(
            (".json", ".yaml", ".yml", ".npz", ".onnx")):
        entries = parse_entries(args.model)
    if entries is None or not (symbols_in(entries) or names_in_input):
        if not names_in_input:
            if values:
                raise ConvscopeError(f"--set {', '.join(values)}: the model has no sizes written as names; "
                                     "write them as names such as conv2d(k1, 3) or --input Cx32x32")
            return None
        found = resolve(args.model, None)
        spec = found.model.spec()
        if "layers" not in spec or spec.get("type", "sequential") != "sequential":
            raise ConvscopeError(f"{found.label}: an input with names needs a sequential model")
        entries = spec["layers"]
    shape = parse_shape(args.input) if args.input else None
    if shape is None:
        raise ConvscopeError("sizes written as names need --input, such as --input Cx32x32 or 1x28x28")
    known = symbols_in(entries) | {str(v) for v in shape if not isinstance(v, int)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConvscopeError(f"--set {', '.join(unknown)}: no such name in the model or --input "
                             f"(its names: {', '.join(sorted(known))})")
    return entries, shape, values


def run(args, entries, shape, values, render_numeric) -> int:
    """Print the symbolic summary; ``render_numeric(model, input_shape, label, extra)`` prints
    the ordinary summary of the bound model when every name has a value."""
    from ..analysis.symbolic import analyze_symbolic, evaluate, to_dict
    from ..spec import from_spec
    from ..spec.text import bind

    report = analyze_symbolic(entries, shape)
    free = sorted(set(report.symbols()) - set(values))
    label = args.model.strip()
    if not free:
        bound_shape = tuple(int(evaluate(v, values)) for v in report.input)
        model = from_spec({"layers": bind(entries, values)})
        return render_numeric(model, bound_shape, label, report)
    if args.format == "json":
        sys.stdout.write(json.dumps(to_dict(report, values), ensure_ascii=False) + "\n")
        return 0
    sys.stdout.write(text(report, label, values, explain=args.explain, markdown=args.format == "markdown"))
    return 0


def text(report, label: str, values: Dict[str, int], explain: bool = False, markdown: bool = False) -> str:
    """The formulas as a table (plain or Markdown) plus the totals."""
    from ..analysis.symbolic import row_cells, show_shape, total_lines
    from ..i18n import _

    names = {"weights": _("weights"), "biases": _("biases"), "params": _("params"), "macs": _("MACs")}
    headers = [_("Layer"), _("Type"), _("Output shape"), _("Weights"), _("Biases"), _("Params"), _("MACs")]
    rows = [[r.name, r.label, *row_cells(r)] for r in report.rows]
    title = f"{label} on {show_shape(report.input)}"
    legend = _("sizes as names: {names}").format(names=", ".join(report.symbols()))
    lines = []
    if markdown:
        lines += [f"### {title}", "", f"_{legend}_", "", "| " + " | ".join(headers) + " |",
                  "|" + "|".join("---" for _h in headers) + "|"]
        lines += ["| " + " | ".join(f"`{c}`" for c in row) + " |" for row in rows]
        lines += [""] + [f"- {line}" for line in total_lines(report, values, names)]
    else:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        lines += [title, legend, ""]
        lines.append("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
        lines.append("")
        lines += total_lines(report, values, names)
    if explain:
        lines.append("")
        for r in report.rows:
            c = r.counts
            lines.append(f"{r.name} {r.label} → {show_shape(c.output_shape)}")
            cells = row_cells(r)
            for word, cell in zip(("weights", "biases", "params", "macs"), cells[1:]):
                if cell != "0":
                    lines.append(f"    {names[word]} = {cell}")
    return "\n".join(lines) + "\n"
