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
    parser.set_defaults(handler=run)


def predict_files(checkpoint_path: str, images) -> list:
    """One dict per image: file, label, class_name, index, probability."""
    from ..errors import ConvscopeError, format_shape
    from ..train import preprocessing
    from ..train.metrics import softmax

    from .resolve import load_model_file
    ckpt = load_model_file(checkpoint_path)
    prep = ckpt.preprocessing
    if prep is None:
        raise ConvscopeError(f"{checkpoint_path} has no preprocessing, so images cannot be converted for it; "
                             "use a checkpoint written by convscope train")
    if preprocessing.input_shape(prep) != tuple(ckpt.input_shape):
        made = format_shape(preprocessing.input_shape(prep))
        raise ConvscopeError(f"{checkpoint_path}: its preprocessing gives {made} images but its model "
                             f"takes {format_shape(ckpt.input_shape)}; the checkpoint is inconsistent")
    x = preprocessing.load_images(images, prep, dtype=ckpt.model.dtype)
    probabilities = softmax(ckpt.model.forward(x, train=False))
    names = list(ckpt.class_names or [])
    numeric = all(name == str(i) for i, name in enumerate(names))
    results = []
    for path, row in zip(images, probabilities):
        index = int(row.argmax())
        name = names[index] if index < len(names) else str(index)
        results.append({"file": str(path), "label": index if numeric else name, "class_name": name,
                        "index": index, "probability": float(row[index])})
    return results


def run(args) -> int:
    results = predict_files(args.checkpoint, args.images)
    if args.format == "json":
        print(json.dumps(results))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 200), color_system=None)
    table = Table(title=f"predictions of {args.checkpoint}")
    table.add_column("file")
    table.add_column("label", justify="right")
    table.add_column("probability", justify="right")
    for item in results:
        table.add_row(item["file"], item["class_name"], f"{100 * item['probability']:.1f}%")
    console.print(table)
    return 0
