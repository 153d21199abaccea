"""``convscope predict CHECKPOINT IMAGE... [--format table|json]``.

Each image (PNG/JPEG of any size and colour) goes through the checkpoint's preprocessing (for
digits: grayscale, dark-on-light drawings inverted to the data set's light-on-dark, cropped to
the ink, resized to 8×8 by area averaging, scaled to 0–16) and then the model; the label with
the highest softmax probability is reported. JSON: ``[{"file", "label", "probability"}, ...]``
where ``label`` is the class index for data sets whose classes are their own numbers (digits,
MNIST) and the class name otherwise (image folders, CIFAR-10); ``class_name`` and ``index`` are
always included as well.
"""
from __future__ import annotations

import json


def register(subparsers) -> None:
    parser = subparsers.add_parser("predict", help="classify images with a checkpoint",
                                   description="Classify PNG/JPEG images with a trained checkpoint.")
    parser.add_argument("checkpoint", metavar="CHECKPOINT",
                        help="a .npz checkpoint (e.g. runs/digits/model.npz)")
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="PNG or JPEG files, any size or colour")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--top-k", type=int, default=1, metavar="K",
                        help="also list the K most probable classes per image (JSON: a 'top' list)")
    parser.add_argument("--resize", metavar="HxW", default=None,
                        help="size images are resized to (default and normally: the checkpoint's own)")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=None,
                        help="1 (gray) or 3 (RGB) (default and normally: the checkpoint's own)")
    parser.set_defaults(handler=run)


def predict_files(checkpoint_path: str, images, top_k: int = 1, resize=None, channels=None) -> list:
    """One dict per image: file, label, class_name, index, probability; with ``top_k`` > 1 also
    ``top``: the ``top_k`` most probable classes, each {label, class_name, index, probability}."""
    from ..errors import ConvscopeError, format_shape
    from ..train import preprocessing
    from ..train.metrics import softmax

    from .resolve import load_model_file
    ckpt = load_model_file(checkpoint_path)
    prep = ckpt.preprocessing
    if prep is None:
        raise ConvscopeError(f"{checkpoint_path} has no preprocessing, so images cannot be converted for it; "
                             "use a checkpoint written by convscope train")
    if top_k < 1:
        raise ConvscopeError(f"--top-k must be at least 1, got {top_k}")
    prep = _override(prep, resize, channels)
    if preprocessing.input_shape(prep) != tuple(ckpt.input_shape):
        made = format_shape(preprocessing.input_shape(prep))
        raise ConvscopeError(f"{checkpoint_path}: its preprocessing gives {made} images but its model "
                             f"takes {format_shape(ckpt.input_shape)}; the checkpoint is inconsistent")
    x = preprocessing.load_images(images, prep, dtype=ckpt.model.dtype)
    probabilities = softmax(ckpt.model.forward(x, train=False))
    names = list(ckpt.class_names or [])
    numeric = all(name == str(i) for i, name in enumerate(names))
    results = []
    def entry(row, index):
        name = names[index] if index < len(names) else str(index)
        return {"label": index if numeric else name, "class_name": name, "index": index,
                "probability": float(row[index])}

    for path, row in zip(images, probabilities):
        item = {"file": str(path), **entry(row, int(row.argmax()))}
        if top_k > 1:
            order = sorted(range(len(row)), key=lambda i: (-row[i], i))[:top_k]  # ties: lower index first
            item["top"] = [entry(row, i) for i in order]
        results.append(item)
    return results


def _override(prep, resize, channels):
    """The checkpoint's preprocessing with another size or channel count (its model must take it)."""
    if resize is None and channels is None:
        return prep
    out = dict(prep)
    if resize is not None:
        out["size"] = [int(v) for v in resize]
    if channels is not None and channels != prep["channels"]:
        out.update(channels=channels, mean=[sum(prep["mean"]) / len(prep["mean"])] * channels,
                   std=[sum(prep["std"]) / len(prep["std"])] * channels)
    return out


def run(args) -> int:
    from ..train.transform import parse_size
    results = predict_files(args.checkpoint, args.images, args.top_k, parse_size(args.resize), args.channels)
    if args.format == "json":
        print(json.dumps(results))
        return 0
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 200), color_system=None)
    table = Table(title=Text(f"predictions of {args.checkpoint}"))  # Text: file names are not markup
    table.add_column("file")
    table.add_column("label", justify="right")
    table.add_column("probability", justify="right")
    if args.top_k > 1:
        table.add_column(f"top {args.top_k}")
    for item in results:
        cells = [Text(item["file"]), Text(item["class_name"]), f"{100 * item['probability']:.1f}%"]
        if "top" in item:
            cells.append(Text(", ".join(f"{t['class_name']} {100 * t['probability']:.1f}%" for t in item["top"])))
        table.add_row(*cells)
    console.print(table)
    return 0
