"""``convscope show architecture|filters|featuremaps|curves``: pictures, written to -o.

    convscope show architecture MODEL [--input 3x224x224] [--expand|--stages] -o net.svg
    convscope show filters CHECKPOINT [--layer NAME] -o filters.png
    convscope show featuremaps CHECKPOINT IMAGE [--layer NAME] -o maps.png
    convscope show curves RUN_DIR [RUN_DIR ...] -o curves.png

``.svg`` architecture diagrams are plain SVG text; everything else (and ``.png``/``.pdf``
diagrams) is drawn with matplotlib's Agg canvas, so no display is needed.
"""
from __future__ import annotations

import os

from ..errors import ConvscopeError
from ..files import check_output


def register(subparsers) -> None:
    parser = subparsers.add_parser("show", help="draw a diagram, filters, feature maps or training curves",
                                   description="Draw pictures of a model, a checkpoint or a training run.")
    kinds = parser.add_subparsers(dest="picture", metavar="PICTURE", parser_class=type(parser))
    kinds.required = True

    arch = kinds.add_parser("architecture", help="block diagram of a model (SVG or PNG)")
    arch.add_argument("model", metavar="MODEL", help="zoo name, spec file, checkpoint or text form")
    arch.add_argument("--input", metavar="CxHxW", help="per-sample input shape, e.g. 3x224x224")
    detail = arch.add_mutually_exclusive_group()
    detail.add_argument("--expand", action="store_true",
                        help="one box per layer, even for deep nets")
    detail.add_argument("--stages", action="store_true",
                        help="fold activations, norms and dropout into the box before them")
    arch.add_argument("-o", "--output", default="net.svg", help="file to write: .svg, .png or .pdf")
    arch.add_argument("--force", action="store_true",
                        help="overwrite -o even if it is a file convscope did not write")
    arch.set_defaults(handler=run_architecture)

    filt = kinds.add_parser("filters", help="learned kernels of a conv layer")
    filt.add_argument("checkpoint", metavar="CHECKPOINT")
    filt.add_argument("--layer", metavar="NAME", help="dotted layer name (default: the first conv layer)")
    filt.add_argument("-o", "--output", default="filters.png", help="file to write: .png, .svg or .pdf")
    filt.add_argument("--force", action="store_true",
                        help="overwrite -o even if it is a file convscope did not write")
    filt.set_defaults(handler=run_filters)

    maps = kinds.add_parser("featuremaps", help="a layer's activation maps for one image")
    maps.add_argument("checkpoint", metavar="CHECKPOINT")
    maps.add_argument("image", metavar="IMAGE")
    maps.add_argument("--layer", metavar="NAME", help="dotted layer name (default: the first conv layer)")
    maps.add_argument("-o", "--output", default="maps.png", help="file to write: .png, .svg or .pdf")
    maps.add_argument("--force", action="store_true",
                        help="overwrite -o even if it is a file convscope did not write")
    maps.set_defaults(handler=run_featuremaps)

    curv = kinds.add_parser("curves", help="loss and accuracy per epoch from history.json")
    curv.add_argument("run_dir", metavar="RUN_DIR", nargs="+",
                      help="folder(s) written by `convscope train --out`; several runs share one figure")
    curv.add_argument("-o", "--output", default="curves.png", help="file to write: .png, .svg or .pdf")
    curv.add_argument("--force", action="store_true",
                        help="overwrite -o even if it is a file convscope did not write")
    curv.set_defaults(handler=run_curves)


def _done(path: str, what: str) -> int:
    print(f"wrote {what} to {path}")
    return 0


def _check_output(path: str, allowed=(".png", ".svg", ".pdf"), inputs=(), force=False) -> str:
    """Checked before any work: the suffix, and files.check_output (inputs, links, --force)."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in allowed:
        raise ConvscopeError(f"-o must end in {', '.join(allowed)}, got {path!r}")
    check_output(path, inputs, force)
    return path


def _load(path: str):
    from .resolve import load_model_file
    if not os.path.exists(path):
        raise ConvscopeError(f"checkpoint not found: {path}; give the model.npz a training run wrote "
                             "or an .onnx model")
    return load_model_file(path)


def run_architecture(args) -> int:
    from .resolve import resolve
    from ..viz import save_architecture

    path = _check_output(args.output, inputs=[args.model] if os.path.exists(args.model) else [],
                         force=args.force)
    found = resolve(args.model, args.input)
    if found.input_shape is None:
        raise ConvscopeError(f"{found.label!r} does not say its input size; add --input such as --input 3x32x32")
    detail = "layers" if args.expand else "stages" if args.stages else "auto"
    save_architecture(found.model, found.input_shape, path, detail=detail, name=found.label)
    return _done(path, f"the architecture of {found.label}")


def run_filters(args) -> int:
    from ..viz import filters, save_figure

    path = _check_output(args.output, inputs=[args.checkpoint], force=args.force)
    checkpoint = _load(args.checkpoint)
    save_figure(filters(checkpoint, args.layer), path, [args.checkpoint], args.force)
    return _done(path, "filters")


def run_featuremaps(args) -> int:
    from ..viz import featuremaps, save_figure

    path = _check_output(args.output, inputs=[args.checkpoint, args.image], force=args.force)
    checkpoint = _load(args.checkpoint)
    save_figure(featuremaps(checkpoint, args.image, args.layer), path, [args.checkpoint, args.image], args.force)
    return _done(path, "feature maps")


def run_curves(args) -> int:
    from ..viz import curves, save_figure

    runs = args.run_dir
    histories = [os.path.join(r, "history.json") if os.path.isdir(r) else r for r in runs]
    path = _check_output(args.output, inputs=histories, force=args.force)
    save_figure(curves(runs[0] if len(runs) == 1 else runs), path, histories, args.force)
    return _done(path, "training curves")
