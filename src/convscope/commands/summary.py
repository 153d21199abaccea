"""``convscope summary MODEL [--input 3x224x224] [--explain] [--format table|json|markdown]``.

MODEL is a zoo name, a spec file (.json/.yaml), a checkpoint (.npz) or the one-line text form
(see :mod:`convscope.commands.resolve`). The table (rich on a terminal, plain when piped) has a
row per layer, nested layers with dotted names, and a totals row; ``json`` prints the
contract's object (``total_params``, ``trainable_params``, ``total_macs``, ``input``,
``output``, ``layers`` ...); ``markdown`` pastes into a README. ``--explain`` adds every
number's derivation (in JSON: an ``explain`` list per row).
"""
from __future__ import annotations

import sys

from ..errors import ConvscopeError, format_shape
from ..i18n import add_argument as add_lang_argument


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "summary", help="per-layer shapes, weights, biases, MACs, memory and receptive fields",
        description="Analyse a model without allocating weights: shapes, parameters (weights and "
                    "biases apart), MACs (1 MAC = 2 FLOPs; conv and linear only), other ops, "
                    "activation memory and receptive fields.")
    parser.add_argument("model", metavar="MODEL",
                        help="zoo name, .json/.yaml spec, .npz checkpoint, or text form such as "
                             "'conv2d(8, 3) -> relu -> flatten -> linear(10)'")
    parser.add_argument("--input", metavar="CxHxW", default=None,
                        help="per-sample input shape such as 3x224x224 (default: the model's own)")
    parser.add_argument("--explain", action="store_true", help="show how every number is derived")
    parser.add_argument("--format", choices=("table", "json", "markdown"), default="table",
                        help="output format (default: table)")
    parser.add_argument("--set", metavar="NAME=N,...", default=None,
                        help="values for sizes written as names, e.g. 'conv2d(k1, 3) -> conv2d(k2, 5)' "
                             "--input Cx32x32 --set k1=32,k2=64,C=3 (without it: formulas)")
    add_lang_argument(parser)
    parser.set_defaults(handler=run)


def run(args) -> int:
    from ..i18n import choose as choose_language
    from . import symbols
    from .resolve import resolve

    choose_language(getattr(args, "lang", None))
    planned = symbols.plan(args)
    if planned is not None:  # sizes written as names (seed 001's k1, k2)
        return symbols.run(args, *planned,
                           render_numeric=lambda model, shape, label, sym: _render(args, model, shape, label, sym))
    found = resolve(args.model, args.input)
    if found.input_shape is None:
        raise ConvscopeError(f"{found.label!r} does not say its input size; add --input such as "
                             "--input 3x32x32")
    return _render(args, found.model, found.input_shape, found.label)


def _render(args, model, input_shape, label, symbolic=None) -> int:
    """Print the numeric summary; ``symbolic`` (a bound SymbolicReport) adds its formulas."""
    import json

    from ..analysis import analyze, markdown, to_json
    from ..analysis.format import print_table
    from ..i18n import TranslatingConsole, translate

    try:
        report = analyze(model, input_shape)
    except RecursionError:
        raise ConvscopeError(f"{label}: containers are nested too deeply to analyse") from None
    except ConvscopeError as error:
        from ..analysis.smallest import hint
        raise ConvscopeError(f"{error}{hint(model, input_shape)}") from None
    title = f"{label} on {format_shape(report.input)}"
    values = getattr(args, "set", None)
    if args.format == "json":
        text = to_json(report, explain=args.explain)
        if symbolic is not None:
            from ..analysis.symbolic import parse_bindings, to_dict
            document = json.loads(text)
            document["symbolic"] = to_dict(symbolic, parse_bindings(values))
            text = json.dumps(document, ensure_ascii=False)
        sys.stdout.write(text + "\n")
    elif args.format == "markdown":
        sys.stdout.write(translate(markdown(report, title, explain=args.explain)))
        if symbolic is not None:
            sys.stdout.write(_formulas(symbolic, values, "- "))
    else:
        from rich.console import Console

        console = Console()
        if not console.is_terminal:
            # Piped: plain text, wide enough that columns are never squeezed.
            console = Console(width=max(console.width, 200), color_system=None)
        console = TranslatingConsole(console)  # --lang: headers, footers and derivations
        print_table(report, console, title, explain=args.explain)
        if symbolic is not None:
            console.print(_formulas(symbolic, values, ""), highlight=False, markup=False, soft_wrap=True, end="")
    note = getattr(model, "import_note", None)  # an ONNX file whose exporter folded parameters
    if note and args.format != "json":
        sys.stdout.write(note + "\n")
    return 0


def _formulas(symbolic, values_text, bullet: str) -> str:
    """The bound model's totals as formulas, then their values (from the formulas: the table
    above has the numeric engine's, and the test checks they agree)."""
    from ..analysis.symbolic import parse_bindings, total_lines
    from ..i18n import _

    names = {"weights": _("weights"), "biases": _("biases"), "params": _("params"), "macs": _("MACs")}
    values = parse_bindings(values_text)
    lines = total_lines(symbolic, values, names)
    head = _("with {values}:").format(values=", ".join(f"{k}={v}" for k, v in values.items()))
    return "\n" + head + "\n" + "".join(f"{bullet}{line}\n" for line in lines)
