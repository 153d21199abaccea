"""`show curves` (issue 15 point 3): the trainer's best epoch (ties!), several runs, a
learning-rate panel, whole-number epoch ticks and a mark where a run resumed."""
import json

import numpy as np
import pytest

import convscope as cs
from convscope.cli import main
from convscope.viz.curves import best_epoch, curves

TINY = "conv2d(4, 3, padding=1) -> relu -> maxpool2d(2) -> flatten -> linear(10)"


def _rows(accuracies, losses, lrs=None):
    lrs = lrs or [0.01] * len(accuracies)
    return [{"epoch": i + 1, "train_loss": 1.0, "train_accuracy": 0.5, "val_loss": l, "val_accuracy": a,
             "lr": r, "seconds": 1.0} for i, (a, l, r) in enumerate(zip(accuracies, losses, lrs))]


def test_best_epoch_breaks_ties_by_validation_loss_like_the_trainer():
    # epochs 6 and 8 share the top accuracy 0.97; epoch 8 has the lower validation loss (0.10 < 0.12),
    # so the trainer's model.npz holds epoch 8 (the first maximum would wrongly say 6)
    accuracies = [0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.96, 0.97, 0.96]
    losses = [1.0, 0.8, 0.5, 0.3, 0.2, 0.12, 0.15, 0.10, 0.11]
    rows = _rows(accuracies, losses)
    assert best_epoch(rows)[0] == 8
    from convscope.train.trainer import _best_so_far
    assert _best_so_far(rows)[0] == 8
    fig = curves(rows)
    assert "best validation accuracy 0.97 at epoch 8" in fig._suptitle.get_text()
    star = fig.axes[1].collections[0].get_offsets()
    assert star.tolist() == [[8.0, 0.97]]


def test_learning_rate_panel_and_whole_epoch_ticks():
    lrs = [0.01 * (1 + np.cos(np.pi * e / 5)) / 2 for e in range(5)]
    fig = curves(_rows([0.5, 0.6, 0.7, 0.8, 0.9], [1, 0.8, 0.6, 0.4, 0.2], lrs))
    lr_axis = fig.axes[2]
    assert lr_axis.get_ylabel() == "learning rate"
    assert list(lr_axis.get_lines()[0].get_ydata()) == lrs
    fig.canvas.draw()
    for ax in fig.axes[:3]:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks  # no epoch 2.5


def test_old_history_without_lr_still_draws():
    rows = [{k: v for k, v in r.items() if k != "lr"} for r in _rows([0.5, 0.6], [1.0, 0.9])]
    fig = curves(rows)
    assert not fig.axes[2].get_lines() and "no learning rate recorded" in fig.axes[2].texts[0].get_text()


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Run a: 2 epochs, then resumed to 3. Run b: 3 epochs straight, a higher lr."""
    full = cs.train.load_data("digits")
    small = cs.train.from_arrays(full.train.x[:200], full.train.y[:200], full.class_names,
                                 full.preprocessing, name="digits-200", val_fraction=0.25)
    root = tmp_path_factory.mktemp("curves")
    kw = dict(batch_size=32, progress=False)
    cs.train.fit(cs.parse_text(TINY), small, epochs=2, lr=0.01, out=root / "a", **kw)
    cs.train.fit(None, small, epochs=3, out=root / "a", resume=True, **kw)
    cs.train.fit(cs.parse_text(TINY), small, epochs=3, lr=0.02, out=root / "b", **kw)
    return root


def test_a_resume_is_recorded_and_marked(two_runs):
    meta, _ = cs.train.checkpoint.read_checkpoint(str(two_runs / "a" / "last.npz"))
    assert meta["training"]["resumed_at"] == [2]  # resumed after epoch 2
    history = json.loads((two_runs / "a" / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3] and "resumed" not in history[-1]
    fig = curves(two_runs / "a")
    marks = [c for c in fig.axes[0].collections if c.get_label() == "resumed"]
    assert len(marks) == 1 and marks[0].get_segments()[0][0][0] == 2.5


def test_several_runs_on_one_figure(two_runs, tmp_path):
    fig = curves([two_runs / "a", two_runs / "b"])
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == ["a train", "a validation", "b train", "b validation"]
    assert [line.get_label() for line in fig.axes[2].get_lines()] == ["a learning rate", "b learning rate"]
    assert fig.axes[2].get_lines()[1].get_ydata()[0] == 0.02  # b's first epoch ran at its own lr
    out = tmp_path / "both.png"
    assert main(["show", "curves", str(two_runs / "a"), str(two_runs / "b"), "-o", str(out)]) == 0
    assert out.stat().st_size > 1000
