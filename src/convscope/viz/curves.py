"""Training curves: loss and accuracy per epoch, training and validation, from history.json.

``history.json`` (written by ``convscope train --out DIR``) is a list of rows with ``epoch``,
``train_loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy`` and ``seconds``. A missing
or null value (no validation split, say) leaves that point out of its curve.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Sequence, Union

from ..errors import ConvscopeError
from ..limits import is_finite_number

SERIES = (("loss", "train_loss", "val_loss"), ("accuracy", "train_accuracy", "val_accuracy"))


def read_history(path) -> List[Dict]:
    """Rows of ``history.json`` from a run folder or the file itself, checked."""
    path = os.fspath(path)
    file = os.path.join(path, "history.json") if os.path.isdir(path) else path
    if not os.path.exists(file):
        where = f"no history.json in {path}" if os.path.isdir(path) else f"{path} does not exist"
        raise ConvscopeError(f"{where}; give the folder a run wrote with `convscope train --out DIR`")
    from ..files import read_regular
    from ..spec.document import check_document

    raw = read_regular(file, "history file", "MAX_SPEC_BYTES")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConvscopeError(f"{file} is not valid JSON ({error}); it should be the history a "
                             "training run wrote") from None
    except RecursionError:
        from .. import limits
        raise limits.too_deep(file) from None
    except ValueError:  # an integer beyond Python's 4,300-digit conversion limit
        raise ConvscopeError(f"{file} holds a number with thousands of digits; it should be the history a "
                             "training run wrote") from None
    try:
        check_document(data, file, count_layers=False)
    except ConvscopeError as error:
        raise ConvscopeError(f"{error}; it should be the history a training run wrote") from None
    if isinstance(data, dict) and isinstance(data.get("history"), list):
        data = data["history"]
    return check_history(data, file)


def check_history(rows, where: str = "history") -> List[Dict]:
    if not isinstance(rows, list) or not rows:
        raise ConvscopeError(f"{where} holds no epochs; expected a list of rows such as "
                             '{"epoch": 1, "train_loss": 0.5, ...}')
    from .. import limits

    limits.check(f"{where}: the number of epoch rows", len(rows), "MAX_HISTORY_ROWS")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or "epoch" not in row or "train_loss" not in row:
            raise ConvscopeError(f"{where}: row {i} is not an epoch row with 'epoch' and 'train_loss' "
                                 f"(got {str(row)[:60]})")
        if not limits.is_finite_number(row["epoch"]):
            raise ConvscopeError(f"{where}: row {i}'s epoch must be a finite number, got {str(row['epoch'])[:40]}")
    return rows


def _points(rows: Sequence[Dict], key: str):
    xs, ys = [], []
    for row in rows:
        value = row.get(key)
        if is_finite_number(value):
            xs.append(row["epoch"])
            ys.append(float(value))
    return xs, ys


def curves(history: Union[str, os.PathLike, Sequence[Dict]], title: str = None):
    """Figure with two panels: loss per epoch and accuracy per epoch, train and validation.

    ``history`` is a run folder, a ``history.json`` path, or the list of rows itself.
    """
    from matplotlib.figure import Figure

    if isinstance(history, (str, os.PathLike)):
        name = os.path.basename(os.path.normpath(os.fspath(history)))
        rows = read_history(history)
    else:
        name = "run"
        rows = check_history(list(history))
    fig = Figure(figsize=(10, 4.2), dpi=100, layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, (label, train_key, val_key) in zip(axes, SERIES):
        drawn = False
        for key, style, what in ((train_key, "-o", "train"), (val_key, "-s", "validation")):
            xs, ys = _points(rows, key)
            if xs:
                ax.plot(xs, ys, style, markersize=3.5, label=what)
                drawn = True
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(f"{label} per epoch")
        ax.grid(True, alpha=0.3)
        if drawn:
            ax.legend()
        else:
            ax.text(0.5, 0.5, f"no {label} recorded", ha="center", va="center", transform=ax.transAxes)
    best = _points(rows, "val_accuracy")
    summary = f"{len(rows)} epochs"
    if best[1]:
        i = max(range(len(best[1])), key=best[1].__getitem__)
        summary += f", best validation accuracy {best[1][i]:.4g} at epoch {best[0][i]}"
    fig.suptitle(title or f"training curves of {name}: {summary}")
    return fig
