"""--engine torch: the same training with PyTorch doing the arithmetic.

Oracle: convscope's own engine, whose layers and optimizers are themselves tested against
PyTorch in float64. Here the whole loop is compared: in float64 the per-step losses of the two
engines agree within 1e-9 (20 steps, same spec, data order and optimizer), checkpoints
written by either engine resume on the other, and bad input is one line with exit 2.
"""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import convscope as cs  # noqa: E402
from convscope.train import trainer as T  # noqa: E402
from convscope.train.checkpoint import load_checkpoint, read_checkpoint  # noqa: E402
from convscope.train.engine import NumpyEngine  # noqa: E402
from convscope.train.optim import make_optimizer  # noqa: E402
from convscope.train.torch_engine import TorchEngine  # noqa: E402

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")

#: A ResNet-style net: stem conv + batch norm, an identity residual block, a strided block
#: with a 1×1 projection shortcut, global average pooling, linear.
RESNET = {"layers": [
    {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1, "bias": False},
    {"type": "batchnorm2d"}, {"type": "relu"},
    {"type": "residual", "body": [
        {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1, "bias": False},
        {"type": "batchnorm2d"}, {"type": "relu"},
        {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1, "bias": False},
        {"type": "batchnorm2d"}]},
    {"type": "relu"},
    {"type": "residual", "body": [
        {"type": "conv2d", "out_channels": 16, "kernel_size": 3, "stride": 2, "padding": 1, "bias": False},
        {"type": "batchnorm2d"}, {"type": "relu"},
        {"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1, "bias": False},
        {"type": "batchnorm2d"}],
     "shortcut": [{"type": "conv2d", "out_channels": 16, "kernel_size": 1, "stride": 2, "bias": False},
                  {"type": "batchnorm2d"}]},
    {"type": "relu"}, {"type": "global_avgpool"}, {"type": "linear", "out_features": 10}]}


@pytest.fixture(autouse=True)
def one_torch_thread():
    # The machine is shared: torch's OpenMP threads spin against other processes; one is faster.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits():
    return cs.train.load_data("digits")


@pytest.fixture(scope="module")
def small(digits):
    return cs.train.from_arrays(digits.train.x[:256], digits.train.y[:256], digits.class_names,
                                digits.preprocessing, name="digits-256", test_fraction=0.2, val_fraction=0.25)


def _model(which, data):
    if which == "digits":
        return T.default_model(data)
    return cs.from_spec(RESNET)


@pytest.mark.parametrize("which,optimizer,options", [
    ("digits", "sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
    ("digits", "adamw", {"weight_decay": 0.05}),
    ("resnet", "adam", {"weight_decay": 1e-4}),
    ("resnet", "sgd", {"momentum": 0.9}),
])
def test_first_20_steps_equal_convscope_in_float64(digits, which, optimizer, options):
    """Same spec, same initial weights, same batches (batch_indices, seed 0), same optimizer:
    every one of the first 20 losses agrees within 1e-9, the rate changes at step 10 (as a
    schedule would between epochs), and afterwards weights, batch-norm running statistics and
    optimizer state agree within 1e-9 too."""
    prep = digits.preprocessing
    x = cs.train.preprocessing.normalize(digits.train.x, prep, dtype=np.float64)
    y = digits.train.y
    ours = _model(which, digits).build(digits.input_shape, seed=1, dtype=np.float64)
    theirs = cs.from_spec(ours.spec()).build(digits.input_shape, seed=99, dtype=np.float64)
    theirs.load_state_dict(ours.state_dict())
    lr = 0.05 if optimizer == "sgd" else 0.01
    a = NumpyEngine(ours, make_optimizer(optimizer, ours.parameters(), lr, **options), x, y)
    b = TorchEngine(torch, theirs, make_optimizer(optimizer, theirs.parameters(), lr, **options), x, y, "cpu")
    batches = cs.train.batch_indices(len(y), 32, 0, 0)[:20]
    losses = []
    for step, idx in enumerate(batches):
        if step == 10:
            a.lr = b.lr = 0.4 * lr
        (la, ca), (lb, cb) = a.forward(idx), b.forward(idx)
        a.step()
        b.step()
        losses.append((la, lb))
        assert ca == cb
    diffs = [abs(la - lb) for la, lb in losses]
    assert max(diffs) < 1e-9, diffs
    # and it is learning, so the comparison is not of constants
    assert np.mean([la for la, _ in losses[-5:]]) < np.mean([la for la, _ in losses[:5]])
    b.sync()
    mine, yours = ours.state_dict(), theirs.state_dict()
    assert list(mine) == list(yours)
    for name in mine:
        np.testing.assert_allclose(yours[name], mine[name], rtol=0, atol=1e-9, err_msg=name)
    if which == "resnet":
        assert int(yours["1.num_batches_tracked"]) == 20
        assert np.abs(mine["1.running_var"] - 1).max() > 1e-3  # the statistics did move
    sa, sb = a.optimizer.state_dict(), b.optimizer.state_dict()
    assert sa["steps"] == sb["steps"] == 20 and sorted(sa["arrays"]) == sorted(sb["arrays"])
    for key, value in sa["arrays"].items():
        np.testing.assert_allclose(sb["arrays"][key], value, rtol=1e-9, atol=1e-12, err_msg=key)


def _fit(data, engine, out, epochs, model=None, **kw):
    return cs.train.fit(model if model is not None else cs.from_spec(RESNET), data, epochs=epochs,
                        batch_size=kw.pop("batch_size", 16), lr=kw.pop("lr", 0.01), out=out,
                        progress=False, dtype=np.float64, engine=engine, device="cpu", **kw)


def _rows(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def _close_history(a, b, tol=1e-9):
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert ra["epoch"] == rb["epoch"] and ra["lr"] == rb["lr"]
        for key in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
            assert abs(ra[key] - rb[key]) < tol, (key, ra, rb)


@pytest.mark.parametrize("first,second", [("convscope", "torch"), ("torch", "convscope")])
def test_a_checkpoint_resumes_on_the_other_engine(small, tmp_path, first, second):
    """1 epoch on one engine, resumed to 3 on the other, equals 3 epochs on convscope's engine
    (float64, within 1e-9): weights, batch-norm statistics, momentum and history."""
    settings = dict(optimizer="sgd", nesterov=True, weight_decay=1e-4, schedule="step", step_size=1)
    straight = _fit(small, "convscope", tmp_path / "a", 3, **settings)
    _fit(small, first, tmp_path / "b", 1, **settings)
    resumed = cs.train.fit(None, small, epochs=3, out=tmp_path / "b", resume=True, progress=False,
                           engine=second, device="cpu")
    _close_history(resumed.history, straight.history)
    _close_history(json.loads((tmp_path / "b" / "history.json").read_text()), straight.history)
    a, b = load_checkpoint(tmp_path / "a" / "last.npz"), load_checkpoint(tmp_path / "b" / "last.npz")
    for name, value in a.model.state_dict().items():
        np.testing.assert_allclose(b.model.state_dict()[name], value, rtol=0, atol=1e-9, err_msg=name)
    for key, value in a.optimizer_state["arrays"].items():
        np.testing.assert_allclose(b.optimizer_state["arrays"][key], value, rtol=0, atol=1e-9, err_msg=key)
    assert b.optimizer_state["steps"] == a.optimizer_state["steps"]


def test_torch_run_folder_evaluates_and_predicts_with_convscope(small, tmp_path, capsys):
    from convscope.cli import main

    result = _fit(small, "torch", tmp_path, 2, model=T.default_model(small))
    assert sorted(os.listdir(tmp_path)) == ["history.json", "last.npz", "model.npz"]
    best = load_checkpoint(tmp_path / "model.npz")
    assert best.epoch == result.best_epoch and best.model.dtype == np.float64
    x = cs.train.preprocessing.normalize(small.val.x, best.preprocessing, dtype=np.float64)
    _, accuracy, _ = T.evaluate_arrays(best.model, x, small.val.y)
    # convscope's forward on the torch-trained weights reproduces the accuracy torch measured.
    assert accuracy == result.history[best.epoch - 1]["val_accuracy"]
    assert main(["evaluate", str(tmp_path / "model.npz"), "--data", "digits", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == 359


def test_ctrl_c_on_torch_resumes_exactly_on_convscope(small, tmp_path, monkeypatch):
    straight = _fit(small, "convscope", tmp_path / "a", 2)
    calls = {"n": 0}
    real_update = T.Reporter.update

    def update(self, *args):
        calls["n"] += 1
        if calls["n"] == 15:  # 10 batches per epoch: epoch 2, batch 5
            signal.raise_signal(signal.SIGINT)
        real_update(self, *args)

    monkeypatch.setattr(T.Reporter, "update", update)
    with pytest.raises(T.TrainingInterrupted, match="epoch 2, batch 6 of 10; saved to"):
        _fit(small, "torch", tmp_path / "b", 2)
    monkeypatch.setattr(T.Reporter, "update", real_update)
    meta, _ = read_checkpoint(tmp_path / "b" / "last.npz")
    assert meta["epoch"] == 1 and meta["training"]["partial"]["batch"] == 5
    resumed = cs.train.fit(None, small, epochs=2, out=tmp_path / "b", resume=True, progress=False)
    _close_history(resumed.history, straight.history)


def test_nan_on_torch_stops_and_keeps_the_last_good_checkpoint(small, tmp_path, monkeypatch):
    real = TorchEngine.forward
    calls = {"n": 0}

    def poisoned(self, idx, position=(0, 0, 0)):
        calls["n"] += 1
        loss, hits = real(self, idx, position)
        return (float("nan") if calls["n"] == 10 + 3 else loss), hits  # epoch 2, batch 3

    monkeypatch.setattr(TorchEngine, "forward", poisoned)
    with pytest.raises(T.TrainingDiverged) as error:
        _fit(small, "torch", tmp_path, 3, model=T.default_model(small))
    message = str(error.value)
    assert "NaN at epoch 2, batch 3 of 10" in message and "last.npz (epoch 1), is kept" in message
    assert "\n" not in message
    last = load_checkpoint(tmp_path / "last.npz")
    assert last.epoch == 1 and last.meta["training"]["partial"] is None
    assert sorted(os.listdir(tmp_path)) == ["history.json", "last.npz", "model.npz"]


def _cli(args, env=None, code=None):
    prelude = code or ""
    script = (f"import sys\n{prelude}\nfrom convscope.cli import main\nsys.exit(main({args!r}))")
    environment = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment,
                          timeout=300)


@pytest.mark.parametrize("case", ["no torch", "no cuda", "world size"])
def test_bad_input_is_one_line_exit_2_and_no_file(tmp_path, case):
    out = tmp_path / "run"
    args = ["train", "--engine", "torch", "--epochs", "1", "--out", str(out)]
    env, code = None, None
    if case == "no torch":
        # A finder that refuses torch: `import torch` raises ImportError, as when it is not installed.
        code = ("class Block:\n    def find_spec(self, name, path=None, target=None):\n"
                "        if name.split('.')[0] == 'torch': raise ImportError('blocked')\n"
                "sys.meta_path.insert(0, Block())")
        expected = "pip install 'convscope[torch]'"
    elif case == "no cuda":
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA, so --device cuda is valid here")
        args += ["--device", "cuda"]
        expected = "CUDA is not available"
    else:
        env = {"RANK": "0", "WORLD_SIZE": "3", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": "29999"}
        expected = "--batch-size 32 is the global batch and must be divisible by the 3 processes"
    done = _cli(args, env, code)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and expected in done.stderr, done.stderr
    assert done.stderr.startswith("convscope: error: ")
    assert not out.exists() and os.listdir(tmp_path) == []


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="no GPU: torch.cuda.is_available() is False on this machine, so the CUDA "
                           "accuracy check cannot run (it is never faked)")
def test_digits_on_cuda_reaches_convscope_accuracy_within_half_a_point(digits, tmp_path):
    """Same run (default CNN, Adam, cosine, 20 epochs, seed 0) on convscope's engine and on
    cuda: the test accuracies of the best models differ by at most 0.5 points."""
    accuracies = []
    for engine, device in (("convscope", None), ("torch", "cuda")):
        cs.train.fit(None, digits, epochs=20, out=tmp_path / engine, progress=False, engine=engine, device=device)
        best = load_checkpoint(tmp_path / engine / "model.npz")
        x = cs.train.preprocessing.normalize(digits.test.x, best.preprocessing, dtype=best.model.dtype)
        accuracies.append(T.evaluate_arrays(best.model, x, digits.test.y)[1])
    assert abs(accuracies[0] - accuracies[1]) <= 0.005, accuracies


def test_dropout_on_torch_is_seeded_per_step_so_resume_repeats_it(small, tmp_path):
    """Dropout masks come from torch's generator seeded by (seed, epoch, batch): 1 epoch then a
    resume to 2 equals 2 straight epochs (within 1e-12), while another seed gives other losses."""
    tiny = "conv2d(4, 3, padding=1) -> relu -> flatten -> dropout(0.5) -> linear(10)"
    kw = dict(optimizer="adam", schedule="constant")
    straight = _fit(small, "torch", tmp_path / "a", 2, model=cs.parse_text(tiny), **kw)
    _fit(small, "torch", tmp_path / "b", 1, model=cs.parse_text(tiny), **kw)
    resumed = cs.train.fit(None, small, epochs=2, out=tmp_path / "b", resume=True, progress=False,
                           engine="torch", device="cpu")
    _close_history(resumed.history, straight.history, tol=1e-12)
    other = _fit(small, "torch", tmp_path / "c", 1, model=cs.parse_text(tiny), seed=1, **kw)
    assert abs(other.history[0]["train_loss"] - straight.history[0]["train_loss"]) > 1e-6
