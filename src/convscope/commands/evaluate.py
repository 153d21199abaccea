"""``convscope evaluate CHECKPOINT [--data digits|PATH] [--format table|json]``.

Runs the checkpoint on the data's test split (for digits: the fixed seed-0, 20 % split) and
reports accuracy, mean cross-entropy loss and the number of samples, the confusion matrix
(rows: true class, columns: predicted class) and per-class precision and recall. ``--data``
defaults to the data the checkpoint was trained on. JSON: ``{"accuracy", "loss", "samples",
"class_names", "confusion_matrix", "precision", "recall"}`` (precision/recall lists in class
order, null for a class never predicted / absent from the split).
"""
from __future__ import annotations

import json


def register(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help="accuracy, loss and confusion matrix on the test split",
                                   description="Evaluate a checkpoint on the test split of a data set.")
    parser.add_argument("checkpoint", metavar="CHECKPOINT",
                        help="a .npz checkpoint (e.g. runs/digits/model.npz)")
    parser.add_argument("--data", default=None,
                        help="'digits' or a data path (default: the data the checkpoint was trained on)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--resize", metavar="HxW", default=None,
                        help="resize the data's images (default: as the checkpoint's training did)")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=None,
                        help="convert the data's images to 1 or 3 channels (default: as in training)")
    parser.add_argument("--batch-size", type=int, default=256, help="samples per forward pass (default 256)")
    parser.set_defaults(handler=run)


def evaluate_checkpoint(checkpoint_path: str, data_source=None, batch_size: int = 256, resize=None,
                        channels=None) -> dict:
    """{"accuracy", "loss", "samples", "confusion_matrix", "class_names"} on the test split."""
    from ..errors import ConvscopeError, format_shape
    from ..train import load_data, preprocessing
    from ..train.metrics import confusion_matrix, precision_recall
    from ..train.trainer import check_model_fits, evaluate_arrays

    if batch_size < 1:
        raise ConvscopeError(f"--batch-size must be at least 1, got {batch_size}")
    from .resolve import load_model_file
    ckpt = load_model_file(checkpoint_path)
    source = data_source or (ckpt.meta.get("training") or {}).get("data")
    if not source:
        raise ConvscopeError(f"{checkpoint_path} does not record its data set; give --data digits or a path")
    data = _transformed(load_data(source), ckpt.preprocessing, resize, channels)
    if tuple(data.input_shape) != tuple(ckpt.input_shape):
        raise ConvscopeError(f"{checkpoint_path} takes {format_shape(ckpt.input_shape)} inputs but "
                             f"{data.name} has {format_shape(data.input_shape)} images; evaluate on the "
                             "data it was trained for")
    check_model_fits(ckpt.model, data)
    prep = ckpt.preprocessing or data.preprocessing
    x = preprocessing.normalize(data.test.x, prep, dtype=ckpt.model.dtype)
    loss, accuracy, logits = evaluate_arrays(ckpt.model, x, data.test.y, batch_size=batch_size)
    k = max(data.num_classes, logits.shape[1])
    names = list(ckpt.class_names or data.class_names)
    names += [str(i) for i in range(len(names), k)]
    matrix = confusion_matrix(data.test.y, logits.argmax(axis=1), k)
    precision, recall = precision_recall(matrix)
    return {"accuracy": accuracy, "loss": loss, "samples": len(data.test),
            "confusion_matrix": matrix.tolist(), "precision": precision, "recall": recall,
            "class_names": names[:k], "data": data.name}


def _transformed(data, prep, resize, channels):
    """The data as the checkpoint's training saw it: resized and converted as its preprocessing
    records (``source``: the data set's own form), unless --resize/--channels say otherwise."""
    from ..train import transform

    if resize is None and channels is None and prep and prep.get("source"):
        source = prep["source"]
        if tuple(data.input_shape) == (int(source["channels"]), *map(int, source["size"])):
            resize, channels = tuple(prep["size"]), int(prep["channels"])
    return transform.apply(data, resize, channels)


def run(args) -> int:
    from ..train.transform import parse_size
    result = evaluate_checkpoint(args.checkpoint, args.data, args.batch_size, parse_size(args.resize),
                                 args.channels)
    if args.format == "json":
        keys = ("accuracy", "loss", "samples", "class_names", "confusion_matrix", "precision", "recall")
        print(json.dumps({key: result[key] for key in keys}))
        return 0
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 200), color_system=None)
    console.print(f"{args.checkpoint} on the test split of {result['data']}: accuracy "
                  f"{100 * result['accuracy']:.2f}%, loss {result['loss']:.4f}, "
                  f"{result['samples']:,} samples",
                  markup=False, highlight=False, soft_wrap=True)
    table = Table(title="confusion matrix (rows: true class, columns: predicted class)")
    table.add_column("true \\ predicted", style="bold")
    for name in result["class_names"]:
        table.add_column(Text(name), justify="right")  # Text: class names are not markup
    for name, row in zip(result["class_names"], result["confusion_matrix"]):
        table.add_row(Text(name), *[str(v) if v else "·" for v in row])
    console.print(table)
    return 0
