"""Training curves: loss and accuracy per epoch, training and validation, from history.json.

``history.json`` (written by ``convscope train --out DIR``) is a list of rows with ``epoch``,
``train_loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy``, ``lr`` and ``seconds``
(older files lack ``lr``: that panel then says so). Where a run was resumed is read from its
``last.npz`` (``resumed_at`` in the training record). A missing
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


def best_epoch(rows: Sequence[Dict]):
    """(epoch, row) that ``model.npz`` holds: the trainer's own rule (highest validation accuracy,
    ties broken by the lower validation loss; training figures without a validation split)."""
    from ..train.trainer import _score

    best = None
    for row in rows:
        try:
            score = _score(row)
            if best is None or score > best[0]:
                best = (score, row)
        except (TypeError, KeyError):  # an old or partial row without the figures: not a candidate
            continue
    return (best[1]["epoch"], best[1]) if best else (None, None)


def resumed_at(run_dir) -> List[int]:
    """Epochs completed when each resume of the run began, from ``last.npz``'s training record
    (``resumed_at``; runs from before that field, or without last.npz, have none)."""
    from ..train.checkpoint import read_checkpoint

    last = os.path.join(os.fspath(run_dir), "last.npz")
    if not os.path.isfile(last):
        return []
    try:
        meta, _ = read_checkpoint(last)
        return [int(e) for e in (meta.get("training") or {}).get("resumed_at", [])]
    except (ConvscopeError, TypeError, ValueError):
        return []  # a damaged last.npz does not stop the picture of history.json


def _load(history, index: int):
    """(name, rows, resumed_at) of one run."""
    if isinstance(history, (str, os.PathLike)):
        path = os.fspath(history)
        return (os.path.basename(os.path.normpath(path)), read_history(path),
                resumed_at(path) if os.path.isdir(path) else [])
    return f"run {index + 1}" if index else "run", check_history(list(history)), []


def curves(history: Union[str, os.PathLike, Sequence[Dict], Sequence[Union[str, os.PathLike]]],
           title: str = None):
    """Figure with three panels: loss, accuracy and learning rate per epoch.

    ``history`` is a run folder, a ``history.json`` path, the list of rows itself, or a list of
    run folders / paths (several runs on one figure, one colour each: training solid,
    validation dashed). Each run's best epoch, by the rule the trainer uses for ``model.npz``,
    is starred on its accuracy curve; where a run was resumed (after epoch e) gets a dotted
    vertical mark at e + 0.5. Epoch ticks are whole numbers.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    several = (isinstance(history, (list, tuple)) and history
               and all(isinstance(h, (str, os.PathLike)) for h in history))
    runs = [_load(h, i) for i, h in enumerate(history)] if several else [_load(history, 0)]
    fig = Figure(figsize=(14, 4.2), dpi=100, layout="constrained")
    axes = fig.subplots(1, 3)
    colours = [f"C{i % 10}" for i in range(len(runs))]
    summaries = []
    for (name, rows, resumes), colour in zip(runs, colours):
        prefix = f"{name} " if len(runs) > 1 else ""
        for ax, (label, train_key, val_key) in zip(axes, SERIES):
            for key, style, what in ((train_key, "-o", "train"), (val_key, "--s", "validation")):
                xs, ys = _points(rows, key)
                if xs:
                    ax.plot(xs, ys, style if len(runs) > 1 else style.replace("--", "-"), markersize=3.5,
                            label=prefix + what, color=colour if len(runs) > 1 else None)
        xs, ys = _points(rows, "lr")
        if xs:
            axes[2].plot(xs, ys, "-o", markersize=3.5, label=prefix + "learning rate",
                         color=colour if len(runs) > 1 else None)
        epoch, row = best_epoch(rows)
        if epoch is not None:
            key = "val_accuracy" if row.get("val_accuracy") is not None else "train_accuracy"
            axes[1].scatter([epoch], [row[key]], marker="*", s=160, color=colour, zorder=5,
                            label=f"{prefix}best (model.npz)")
            what = "validation" if key == "val_accuracy" else "training"
            summaries.append(f"{prefix}best {what} accuracy {row[key]:.4g} at epoch {epoch}")
        for at in resumes:  # between the last saved epoch and the first resumed one
            for ax in axes:
                ax.vlines([at + 0.5], 0, 1, transform=ax.get_xaxis_transform(), colors=colour,
                          linestyles="dotted", label=f"{prefix}resumed" if ax is axes[0] else None)
    for ax, label in zip(axes, ("loss", "accuracy", "learning rate")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(f"{label} per epoch")
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, f"no {label} recorded", ha="center", va="center", transform=ax.transAxes)
    epochs = ", ".join(f"{len(rows)}" for _, rows, _ in runs)
    if len(runs) == 1:
        head = f"training curves of {runs[0][0]}: {epochs} epochs"
    else:
        head = f"training curves of {', '.join(n for n, _, _ in runs)} ({epochs} epochs)"
    fig.suptitle(title or "; ".join([head] + summaries))
    return fig
