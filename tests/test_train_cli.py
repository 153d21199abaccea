"""`convscope train / evaluate / predict` end to end (one short digits run shared by the file)
and every bad input: one line on stderr, non-zero exit, nothing in --out changed."""
import json
import os
import signal

import numpy as np
import pytest
from PIL import Image

import convscope as cs
from convscope.cli import main
from convscope.train import trainer as T


def _snapshot(folder):
    return {n: open(os.path.join(folder, n), "rb").read() for n in sorted(os.listdir(folder))}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """Two epochs of the default digits model: the real command, as a user runs it."""
    out = tmp_path_factory.mktemp("runs") / "digits"
    assert main(["train", "--data", "digits", "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    return out


def _digit_png(folder, index, digit):
    """A test-split digit drawn as a person would: 10× larger, dark ink on white, RGB."""
    pixels = 255 - np.kron(digit, np.ones((10, 10))) * 255 / 16
    path = folder / f"digit{index}.png"
    Image.fromarray(pixels.astype(np.uint8), "L").convert("RGB").save(path)
    return path


def _one_error_line(capsys):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("convscope: error: ") and "Traceback" not in err
    return err


def test_train_writes_the_run(run_dir):
    assert sorted(os.listdir(run_dir)) == ["history.json", "last.npz", "model.npz"]
    history = json.loads((run_dir / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]


def test_evaluate_json_and_table(run_dir, capsys):
    assert main(["evaluate", str(run_dir / "model.npz"), "--data", "digits", "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"accuracy", "loss", "samples"} <= set(result)  # the contract; issue 15 adds the confusion matrix
    assert result["samples"] == 359  # round(0.2 · 1,797): the held-out test split
    # Two epochs of the default CNN already classify most digits (chance is 10 %).
    assert 0.5 < result["accuracy"] <= 1 and result["loss"] > 0
    assert main(["evaluate", str(run_dir / "model.npz")]) == 0  # --data defaults to the run's
    table = capsys.readouterr().out
    assert "confusion matrix" in table and f"{100 * result['accuracy']:.2f}%" in table


def test_predict_images_of_any_size_and_colour(run_dir, tmp_path, capsys):
    test = cs.train.load_data("digits").test
    paths = [_digit_png(tmp_path, i, test.x[i, 0]) for i in range(20)]
    assert main(["predict", str(run_dir / "model.npz"), *map(str, paths), "--format", "json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in results] == list(map(str, paths))
    assert all(set(r) >= {"file", "label", "probability"} and 0 < r["probability"] <= 1 for r in results)
    correct = sum(r["label"] == int(y) for r, y in zip(results, test.y[:20]))
    assert correct >= 10  # the image path works: far above chance (2 of 20) after two epochs
    assert main(["predict", str(run_dir / "model.npz"), str(paths[0])]) == 0
    assert "digit0.png" in capsys.readouterr().out


def test_interrupt_saves_and_exits_130_with_one_line(tmp_path, capsys, monkeypatch):
    real_update = T.Reporter.update
    calls = {"n": 0}

    def update(self, *args):
        calls["n"] += 1
        if calls["n"] == 3:
            signal.raise_signal(signal.SIGINT)
        real_update(self, *args)

    monkeypatch.setattr(T.Reporter, "update", update)
    assert main(["train", "--epochs", "1", "--out", str(tmp_path / "r"), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted at epoch 1, batch 4" in err and "--resume" in err
    assert (tmp_path / "r" / "last.npz").exists()


@pytest.mark.parametrize("argv,message", [
    (["train", "--data", "digitz"], "unknown data set 'digitz'"),
    (["train", "--data", "missing/file.npz"], "data not found"),
    (["train", "--lr", "0"], "--lr must be greater than 0"),
    (["train", "--lr", "-0.5"], "--lr must be greater than 0"),
    (["train", "--epochs", "0"], "--epochs must be at least 1"),
    (["train", "lenet5"], "expects 1×32×32 inputs but digits has 1×8×8 images"),
    (["train", "conv2d(4, 3) -> flatten -> linear(3)"], "the model has 3 outputs"),
    (["train", "--resume"], "does not exist; train without --resume first"),
])
def test_train_bad_input(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert main(argv + ["--out", str(out), "--quiet"]) == 2
    assert message in _one_error_line(capsys)
    assert not out.exists()


def test_train_refuses_to_touch_an_existing_run(run_dir, capsys):
    before = _snapshot(run_dir)
    assert main(["train", "--out", str(run_dir), "--quiet"]) == 2
    assert "already holds a run" in _one_error_line(capsys)
    assert main(["train", "conv2d(2, 3) -> relu -> flatten -> linear(10)", "--out", str(run_dir),
                 "--epochs", "3", "--resume", "--quiet"]) == 2
    assert "holds another model" in _one_error_line(capsys)
    assert _snapshot(run_dir) == before


def test_resume_of_a_corrupt_last_checkpoint(tmp_path, capsys):
    (tmp_path / "last.npz").write_bytes(b"PK\x03\x04 truncated")
    assert main(["train", "--out", str(tmp_path), "--epochs", "3", "--resume", "--quiet"]) == 2
    assert "not a convscope checkpoint" in _one_error_line(capsys)
    assert (tmp_path / "last.npz").read_bytes() == b"PK\x03\x04 truncated"


def test_evaluate_and_predict_bad_input(run_dir, tmp_path, capsys):
    (tmp_path / "junk.npz").write_bytes(b"definitely not a checkpoint")
    assert main(["evaluate", str(tmp_path / "junk.npz"), "--data", "digits"]) == 2
    assert "not a convscope checkpoint" in _one_error_line(capsys)
    assert main(["evaluate", str(tmp_path / "none.npz")]) == 2
    assert "checkpoint not found" in _one_error_line(capsys)
    images = np.zeros((10, 3, 5, 5), np.uint8)
    np.savez(tmp_path / "rgb.npz", x=images, y=np.arange(10))
    assert main(["evaluate", str(run_dir / "model.npz"), "--data", str(tmp_path / "rgb.npz")]) == 2
    assert "takes 1×8×8 inputs but" in _one_error_line(capsys)
    np.savez(tmp_path / "many.npz", x=np.zeros((20, 1, 8, 8)), y=np.arange(20) % 12)
    assert main(["evaluate", str(run_dir / "model.npz"), "--data", str(tmp_path / "many.npz")]) == 2
    assert "go up to 11" in _one_error_line(capsys)
    (tmp_path / "note.png").write_text("not an image")
    assert main(["predict", str(run_dir / "model.npz"), str(tmp_path / "note.png")]) == 2
    assert "not a readable image" in _one_error_line(capsys)
    assert main(["predict", str(run_dir / "model.npz"), str(tmp_path / "missing.png")]) == 2
    assert "image not found" in _one_error_line(capsys)
