"""``convscope trace conv1d|conv2d|maxpool2d|linear|relu|avgpool2d|batchnorm2d|softmax_ce|dropout``: forward and backward of one layer on
values given on the command line, written as sums term by term.

    convscope trace conv1d --x 1,2,3 --w 0.3,0.5 --b 0 --dy -0.1,0.2
    convscope trace conv2d --x 3x3:1,2,3,4,5,6,7,8,9 --w [[1,0],[0,-1]] --padding 1 --stride 2
    convscope trace maxpool2d --x [[1,3],[4,2]] --kernel-size 2 --dy [[1]]
    convscope trace linear --x 1,2 --w [[1,-1],[0.5,2]] --b 0,1 --dy 1,-1 --format json
    convscope trace relu --x 1,-2,0 --dy 1,1,1
    convscope trace avgpool2d --x [[1,2],[3,4]] --kernel-size 2 --dy [[1]]
    convscope trace batchnorm2d --x 2x1x1x2:1,2,3,5 --dy 2x1x1x2:1,0,0,-1 [--eval]
    convscope trace softmax_ce --x 1,2,3 --label 2
    convscope trace dropout --x 1,2,3,4 --p 0.5 --seed 0 --dy 1,1,1,1

Values: ``1,2,3`` (flat), ``[[1,2],[3,4]]`` (nested) or ``2x2:1,2,3,4`` (shape and values).
"""
from __future__ import annotations

import json
import re

from ..equations import section_rows
from ..errors import ConvscopeError
from ..i18n import add_argument as add_lang_argument

KINDS = ("conv1d", "conv2d", "maxpool2d", "linear", "relu", "avgpool2d", "batchnorm2d", "softmax_ce", "dropout")
MORE = KINDS[4:]  # traced by convscope.trace.more


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "trace", help="forward and backward of one layer, term by term",
        description="Print a layer's forward and backward pass as sums, term by term, with the "
                    "engine's numbers. Values: 1,2,3 or [[1,2],[3,4]] or 2x2:1,2,3,4.")
    parser.add_argument("kind", choices=KINDS, metavar="{" + ",".join(KINDS) + "}",
                        help="the layer to trace")
    parser.add_argument("--x", required=True, help="input values (one sample, no batch axis)")
    parser.add_argument("--w", help="weights (conv: k, k_h×k_w or C_out×C_in×kernel; linear: n_out×n_in)")
    parser.add_argument("--b", help="biases, one per filter or output (omit for no bias)")
    parser.add_argument("--dy", help="upstream gradient dL/dy, shaped like y (omit for forward only)")
    parser.add_argument("--kernel-size", help="maxpool2d window, e.g. 2 or 2,3")
    parser.add_argument("--stride", help="e.g. 2 or 2,1 (maxpool2d: default the kernel size)")
    parser.add_argument("--padding", default="0", help="e.g. 1, 1,0, same or valid (conv)")
    parser.add_argument("--dilation", default="1", help="e.g. 2 or 1,2")
    parser.add_argument("--ceil-mode", action="store_true", help="maxpool2d: round the output size up")
    parser.add_argument("--label", type=int, help="softmax_ce: the true class index")
    parser.add_argument("--p", type=float, default=0.5, help="dropout: probability of zeroing (default 0.5)")
    parser.add_argument("--seed", type=int, default=0, help="dropout: build seed of the mask (default 0)")
    parser.add_argument("--eval", action="store_true",
                        help="batchnorm2d: inference mode (running statistics) instead of training")
    parser.add_argument("--eps", type=float, default=1e-5, help="batchnorm2d: ε (default 1e-5)")
    parser.add_argument("--running-mean", help="batchnorm2d --eval: one per channel (default 0)")
    parser.add_argument("--running-var", help="batchnorm2d --eval: one per channel (default 1)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    add_lang_argument(parser)
    # argparse takes "-0.1,0.2" for an option because only plain numbers such as -0.1 count
    # as negative values; widen that test so `--dy -0.1,0.2` works (`--dy=-0.1,0.2` always does).
    parser._negative_number_matcher = re.compile(r"^-[\d.]")
    parser.set_defaults(handler=run)


#: Largest stride, padding, dilation or kernel size a trace accepts.
MAX_SIZE = 1000


def _ints(text, option: str, allow_words=()):
    """'2' -> 2, '2,1' -> (2, 1); words such as 'same' pass through."""
    if text is None:
        return None
    text = str(text).strip()
    if text in allow_words:
        return text
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        words = f", {' or '.join(allow_words)}" if allow_words else ""
        raise ConvscopeError(f"{option} must be an integer or integers separated by commas{words}, "
                             f"got {text!r}") from None
    if any(v > MAX_SIZE for v in values):
        # A trace prints every term; a huge padding or stride would only allocate and print zeros.
        raise ConvscopeError(f"{option} {text} is too large for a trace (at most {MAX_SIZE:,}); traces "
                             "show small worked examples")
    return values[0] if len(values) == 1 else values


def _check_terms(args) -> None:
    """Bound the terms a trace would print (``limits.MAX_TRACE_TERMS``) before computing it:
    every output sums at most one weight (or window cell) per padded input value."""
    import numpy as np

    from .. import limits
    from ..trace.values import parse_values

    x = parse_values(args.x, "--x")
    pad = _ints(args.padding, "--padding", ("same", "valid"))
    n = 1 if args.kind in ("conv1d", "linear") else 2
    spatial = x.shape[-n:] if x.ndim >= n else x.shape
    pads = (0,) * n if isinstance(pad, str) else pad if isinstance(pad, tuple) else (pad,) * n
    padded = x.size // max(1, int(np.prod(spatial)))
    for size, p in zip(spatial, tuple(pads) + (0,) * n):
        padded *= int(size) + 2 * int(p)
    per_output = parse_values(args.w, "--w").size if args.w is not None else 1
    if args.kind == "maxpool2d" and args.kernel_size is not None:
        k = _ints(args.kernel_size, "--kernel-size")
        per_output = k * k if isinstance(k, int) else k[0] * k[-1]
    limits.check("the terms this trace would print", padded * per_output, "MAX_TRACE_TERMS")


def build_trace(args):
    from ..trace import trace_conv1d, trace_conv2d, trace_linear, trace_maxpool2d
    kind = args.kind
    if kind in MORE:  # one printed term per value: the text budget of parse_values bounds them
        return _build_more(args)
    _check_terms(args)
    stride = _ints(args.stride, "--stride")
    dilation = _ints(args.dilation, "--dilation")
    if kind == "maxpool2d":
        if args.w is not None or args.b is not None:
            raise ConvscopeError("maxpool2d has no weights or bias; drop --w/--b and give --kernel-size")
        if args.kernel_size is None:
            raise ConvscopeError("maxpool2d needs --kernel-size, e.g. --kernel-size 2")
        return trace_maxpool2d(args.x, _ints(args.kernel_size, "--kernel-size"), dy=args.dy, stride=stride,
                               padding=_ints(args.padding, "--padding"), dilation=dilation,
                               ceil_mode=args.ceil_mode)
    if args.w is None:
        raise ConvscopeError(f"{kind} needs weights: give --w, e.g. --w 0.3,0.5")
    if args.kernel_size is not None or args.ceil_mode:
        raise ConvscopeError(f"--kernel-size and --ceil-mode are for maxpool2d; {kind} takes its kernel "
                             "size from --w")
    if kind == "linear":
        if args.stride is not None or args.padding != "0" or args.dilation != "1":
            raise ConvscopeError("linear has no stride, padding or dilation; drop those options")
        return trace_linear(args.x, args.w, b=args.b, dy=args.dy)
    fn = trace_conv1d if kind == "conv1d" else trace_conv2d
    return fn(args.x, args.w, b=args.b, dy=args.dy, stride=1 if stride is None else stride,
              padding=_ints(args.padding, "--padding", ("same", "valid")), dilation=dilation)


def _build_more(args):
    from ..trace import more

    kind = args.kind
    if kind == "relu":
        return more.trace_relu(args.x, dy=args.dy)
    if kind == "dropout":
        return more.trace_dropout(args.x, args.p, dy=args.dy, seed=args.seed)
    if kind == "softmax_ce":
        if args.label is None:
            raise ConvscopeError("softmax_ce needs the true class: --label K")
        return more.trace_softmax_cross_entropy(args.x, args.label)
    if kind == "avgpool2d":
        if args.kernel_size is None:
            raise ConvscopeError("avgpool2d needs --kernel-size, e.g. --kernel-size 2")
        return more.trace_avgpool2d(args.x, _ints(args.kernel_size, "--kernel-size"), dy=args.dy,
                                    stride=_ints(args.stride, "--stride"), padding=_ints(args.padding, "--padding"))
    return more.trace_batchnorm2d(args.x, gamma=args.w, beta=args.b, dy=args.dy, train=not args.eval,
                                  eps=args.eps, running_mean=args.running_mean, running_var=args.running_var)


def run(args) -> int:
    from ..i18n import choose, translate
    choose(getattr(args, "lang", None))
    result = build_trace(args)
    if args.format == "json":
        print(json.dumps(result.to_json(), ensure_ascii=False))
        return 0
    from rich.console import Console
    console = Console(highlight=False, soft_wrap=True)
    for kind, text in section_rows(result.sections):
        if kind == "gap":
            console.print()
        else:
            console.print(translate(text), style="bold" if kind == "title" else None, markup=False)
    return 0
