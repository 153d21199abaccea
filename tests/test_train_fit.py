"""The training loop: it learns, it resumes exactly, it stops safely, and it refuses bad input
before writing anything. Small data (a digits subset) and a tiny model keep this file fast."""
import json
import os
import signal

import numpy as np
import pytest

import convscope as cs
from convscope import ConvscopeError
from convscope.train import trainer as T
from convscope.train.checkpoint import load_checkpoint, read_checkpoint

TINY = "conv2d(4, 3, padding=1) -> relu -> maxpool2d(2) -> flatten -> dropout(0.2) -> linear(10)"


@pytest.fixture(scope="module")
def small():
    """300 digits split 60/20/20 (seed 0): enough to learn something in a few epochs."""
    full = cs.train.load_data("digits")
    return cs.train.from_arrays(full.train.x[:300], full.train.y[:300], full.class_names, full.preprocessing,
                                name="digits-300", test_fraction=0.2, val_fraction=0.25)


def _fit(small, out=None, epochs=3, model=None, **kw):
    return cs.train.fit(model if model is not None else cs.parse_text(TINY), small, epochs=epochs,
                        batch_size=kw.pop("batch_size", 16), lr=kw.pop("lr", 0.01), out=out,
                        progress=kw.pop("progress", False), **kw)


def _snapshot(folder):
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


def _without_time(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def test_short_training_lowers_the_loss(small):
    result = _fit(small, epochs=3)
    losses = [row["train_loss"] for row in result.history]
    # An untrained 10-way classifier starts near ln(10) = 2.30; three epochs must go well below.
    assert losses[0] < 2.4 and losses[-1] < 0.8 * losses[0]
    assert result.history[-1]["val_loss"] < np.log(10)
    assert [row["epoch"] for row in result.history] == [1, 2, 3]


def test_files_written_and_best_model_is_the_best_epoch(small, tmp_path):
    result = _fit(small, out=tmp_path, epochs=3)
    assert sorted(os.listdir(tmp_path)) == ["history.json", "last.npz", "model.npz"]
    history = json.loads((tmp_path / "history.json").read_text())
    assert _without_time(history) == _without_time(result.history)
    assert set(history[0]) >= {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"}
    best = load_checkpoint(tmp_path / "model.npz")
    assert best.epoch == result.best_epoch
    assert best.preprocessing == small.preprocessing and best.class_names == small.class_names
    accuracies = [row["val_accuracy"] for row in history]
    assert result.best_val_accuracy == max(accuracies)
    last = load_checkpoint(tmp_path / "last.npz")
    assert last.epoch == 3 and last.optimizer_state["type"] == "adam"
    for name, value in result.model.state_dict().items():
        np.testing.assert_array_equal(last.model.state_dict()[name], value)


def test_resume_equals_an_uninterrupted_run(small, tmp_path):
    # A constant or step schedule does not depend on the total, so 2 + 2 epochs equal 4 (a cosine
    # schedule is stretched to the new total instead; Ctrl-C resumption is exact for it, below).
    settings = dict(optimizer="sgd", lr=0.05, nesterov=True, schedule="step", step_size=1)
    straight = _fit(small, out=tmp_path / "a", epochs=4, **settings)
    _fit(small, out=tmp_path / "b", epochs=2, **settings)
    # Settings are the checkpoint's; only the total number of epochs changes.
    resumed = cs.train.fit(None, small, epochs=4, out=tmp_path / "b", resume=True, progress=False)
    assert _without_time(resumed.history) == _without_time(straight.history)
    for name, value in straight.model.state_dict().items():
        np.testing.assert_array_equal(resumed.model.state_dict()[name], value)
    assert _without_time(json.loads((tmp_path / "b" / "history.json").read_text())) == \
        _without_time(straight.history)


def test_ctrl_c_saves_mid_epoch_and_resume_continues_exactly(small, tmp_path, monkeypatch):
    straight = _fit(small, out=tmp_path / "a", epochs=2)
    calls = {"n": 0}
    real_update = T.Reporter.update

    def update(self, *args):
        calls["n"] += 1
        if calls["n"] == 15:  # batch 15 of 12 per epoch: epoch 2, batch 3
            signal.raise_signal(signal.SIGINT)
        real_update(self, *args)

    monkeypatch.setattr(T.Reporter, "update", update)
    with pytest.raises(T.TrainingInterrupted, match="epoch 2, batch 4 of 12; saved to"):
        _fit(small, out=tmp_path / "b", epochs=2)
    monkeypatch.setattr(T.Reporter, "update", real_update)
    meta, _ = read_checkpoint(tmp_path / "b" / "last.npz")
    assert meta["epoch"] == 1 and meta["training"]["partial"]["batch"] == 3
    resumed = cs.train.fit(None, small, epochs=2, out=tmp_path / "b", resume=True, progress=False)
    assert _without_time(resumed.history) == _without_time(straight.history)
    for name, value in straight.model.state_dict().items():
        np.testing.assert_array_equal(resumed.model.state_dict()[name], value)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_nan_loss_stops_with_epoch_and_batch_and_keeps_the_checkpoint(small, tmp_path, monkeypatch):
    from convscope.ops import losses

    real = losses.softmax_cross_entropy
    calls = {"n": 0}

    def poisoned(logits, labels):
        calls["n"] += 1
        loss, grad = real(logits, labels)
        # Epoch 1 makes 12 training calls and 1 validation call, so call 18 is epoch 2, batch 5.
        return (float("nan") if calls["n"] == 12 + 1 + 5 else loss), grad

    monkeypatch.setattr(losses, "softmax_cross_entropy", poisoned)
    with pytest.raises(T.TrainingDiverged) as error:
        _fit(small, out=tmp_path, epochs=3)
    message = str(error.value)
    # Epoch 2's cosine rate is 0.01·(1 + cos(π/3))/2 = 0.0075; the advice is a tenth of it.
    assert "NaN at epoch 2, batch 5 of 12" in message and "--lr 0.00075" in message and "\n" not in message
    assert "last.npz (epoch 1), is kept" in message
    history = json.loads((tmp_path / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1]
    last = load_checkpoint(tmp_path / "last.npz")
    assert last.epoch == 1 and last.meta["training"]["partial"] is None
    assert sorted(os.listdir(tmp_path)) == ["history.json", "last.npz", "model.npz"]  # no temp files


@pytest.mark.parametrize("kwargs,message", [
    ({"epochs": 0}, "epochs must be a whole number of at least 1"),
    ({"lr": 0.0}, "learning rate must be a number greater than 0"),
    ({"lr": -0.1}, "learning rate must be a number greater than 0"),
    ({"batch_size": 0}, "batch size must be a whole number of at least 1"),
    ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'"),
    ({"model": "conv2d(4, 3) -> flatten -> linear(5)"}, r"go up to 9 \(10 classes\) but the model has 5 outputs"),
    ({"model": "conv2d(4, 3)"}, "end it with flatten and linear"),
    ({"model": "conv2d(4, 9)"}, "does not fit digits-300's 1×8×8 images"),
])
def test_bad_arguments_change_nothing(small, tmp_path, kwargs, message):
    _fit(small, out=tmp_path, epochs=1)
    before = _snapshot(tmp_path)
    model = kwargs.pop("model", None)
    with pytest.raises(ConvscopeError, match=message):
        _fit(small, out=tmp_path, model=cs.parse_text(model) if model else None, overwrite=True,
             **{"epochs": 2, **kwargs})
    assert _snapshot(tmp_path) == before


def test_model_built_for_other_images_is_refused(small):
    model = cs.parse_text(TINY).build((1, 16, 16))
    with pytest.raises(ConvscopeError, match="built for 1×16×16 inputs but digits-300 has 1×8×8 images"):
        _fit(small, model=model)
    declared = cs.zoo.load("lenet5")
    with pytest.raises(ConvscopeError, match="expects 1×32×32 inputs"):
        _fit(small, model=declared)


def test_existing_run_and_resume_mistakes(small, tmp_path):
    _fit(small, out=tmp_path, epochs=2)
    before = _snapshot(tmp_path)
    with pytest.raises(ConvscopeError, match="already holds a run .*--resume"):
        _fit(small, out=tmp_path, epochs=2)
    with pytest.raises(ConvscopeError, match="already has 2 epochs; ask for more"):
        cs.train.fit(None, small, epochs=2, out=tmp_path, resume=True, progress=False)
    with pytest.raises(ConvscopeError, match="holds another model"):
        cs.train.fit(cs.parse_text("conv2d(2, 3) -> relu -> flatten -> linear(10)"), small, epochs=3,
                     out=tmp_path, resume=True, progress=False)
    with pytest.raises(ConvscopeError, match="does not exist; train without --resume first"):
        cs.train.fit(None, small, epochs=3, out=tmp_path / "new", resume=True, progress=False)
    assert _snapshot(tmp_path) == before
    assert not (tmp_path / "new").exists()


def test_plain_progress_is_one_line_per_epoch(small, capsys):
    _fit(small, epochs=2, progress=True)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2  train loss") and "samples/s" in lines[0]
