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
    parser.set_defaults(handler=run)


def run(args) -> int:
    from ..analysis import analyze, markdown, to_json
    from ..analysis.format import print_table
    from .resolve import resolve

    found = resolve(args.model, args.input)
    if found.input_shape is None:
        raise ConvscopeError(f"{found.label!r} does not say its input size; add --input such as "
                             "--input 3x32x32")
    try:
        report = analyze(found.model, found.input_shape)
    except RecursionError:
        raise ConvscopeError(f"{found.label}: containers are nested too deeply to analyse") from None
    title = f"{found.label} on {format_shape(report.input)}"
    if args.format == "json":
        sys.stdout.write(to_json(report, explain=args.explain) + "\n")
    elif args.format == "markdown":
        sys.stdout.write(markdown(report, title, explain=args.explain))
    else:
        from rich.console import Console

        console = Console()
        if not console.is_terminal:
            # Piped: plain text, wide enough that columns are never squeezed.
            console = Console(width=max(console.width, 200), color_system=None)
        print_table(report, console, title, explain=args.explain)
    note = getattr(found.model, "import_note", None)
    if note and args.format != "json":
        sys.stdout.write(note + "\n")
    return 0
