"""DistributedDataParallel under torchrun: 2 processes, gloo, on 127.0.0.1 only.

Oracle: one process with the same global batch. Each rank trains on its half of every global
batch and DDP averages the gradients (see convscope.train.distributed for why that equals the
one-process gradient), so after one epoch in float64 the parameters agree within 1e-6.
Also: only rank 0 writes and prints; a rank killed mid-epoch stops the other with one line and
leaves the last complete checkpoint, which resumes.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():  # pragma: no cover
    pytest.skip("this torch build has no torch.distributed", allow_module_level=True)

import convscope as cs  # noqa: E402
from convscope.train.checkpoint import load_checkpoint  # noqa: E402

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
TORCHRUN = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args, cwd, **popen):
    command = [TORCHRUN, "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port",
               str(_free_port()), "-m", "convscope", "train", *args]
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1")
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen)


def _files(root):
    return sorted(os.path.relpath(os.path.join(folder, name), root)
                  for folder, _, names in os.walk(root) for name in names)


def test_two_processes_equal_one_process_after_an_epoch(tmp_path):
    args = ["--engine", "torch", "--device", "cpu", "--dtype", "float64", "--epochs", "1", "--batch-size",
            "32", "--optimizer", "sgd", "--nesterov", "--weight-decay", "0.0001", "--lr", "0.05"]
    work = tmp_path / "work"
    work.mkdir()
    process = _torchrun(args + ["--out", str(work / "ddp")], cwd=work)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    # Only rank 0 printed (one epoch line, one summary) and wrote (three files, nothing else).
    assert stdout.count("epoch 1/1") == 1 and stdout.count("best validation accuracy") == 1, stdout
    assert _files(work) == ["ddp/history.json", "ddp/last.npz", "ddp/model.npz"]

    data = cs.train.load_data("digits")
    one = cs.train.fit(None, data, epochs=1, batch_size=32, optimizer="sgd", nesterov=True, weight_decay=1e-4,
                       lr=0.05, progress=False, dtype=np.float64, engine="torch", device="cpu",
                       out=tmp_path / "one")
    ddp = load_checkpoint(work / "ddp" / "last.npz")
    single = one.model.state_dict()
    assert ddp.model.dtype == np.float64 and list(ddp.model.state_dict()) == list(single)
    moved = 0.0
    for name, value in ddp.model.state_dict().items():
        np.testing.assert_allclose(value, single[name], rtol=0, atol=1e-6, err_msg=name)
        moved = max(moved, float(np.abs(value - cs.train.default_model(data).build(
            data.input_shape, seed=0, dtype=np.float64).state_dict()[name]).max()))
    assert moved > 1e-3  # an epoch of 41 steps did change the weights: the comparison has content
    for key, value in load_checkpoint(tmp_path / "one" / "last.npz").optimizer_state["arrays"].items():
        np.testing.assert_allclose(ddp.optimizer_state["arrays"][key], value, rtol=0, atol=1e-6, err_msg=key)
    history = json.loads((work / "ddp" / "history.json").read_text())
    assert abs(history[0]["train_loss"] - one.history[0]["train_loss"]) < 1e-9
    assert history[0]["val_accuracy"] == one.history[0]["val_accuracy"]


def _pid_of_rank(rank: int, marker: str):
    """The pid of the worker with RANK=rank whose command line names our (unique) run folder."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read()
            with open(f"/proc/{entry}/environ", "rb") as handle:
                environ = handle.read().split(b"\0")
        except OSError:
            continue
        if marker.encode() in cmdline and f"RANK={rank}".encode() in environ and b"-m\0convscope" in cmdline:
            return int(entry)
    return None


def test_a_killed_rank_stops_the_other_with_one_line_and_the_checkpoint_stays(tmp_path):
    out = tmp_path / "killed-run"
    process = _torchrun(["--engine", "torch", "--device", "cpu", "--epochs", "30", "--batch-size", "8",
                         "--out", str(out)], cwd=tmp_path)
    last = out / "last.npz"
    deadline = time.monotonic() + 300
    while not last.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert last.exists(), process.communicate()[1]
    victim = _pid_of_rank(1, str(out))
    assert victim is not None
    os.kill(victim, signal.SIGKILL)  # mid-epoch 2 (or later): epoch 1's checkpoint is complete
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode != 0
    ours = [line for line in (stdout + stderr).splitlines() if line.startswith("convscope:")]
    assert len(ours) == 1, stdout + stderr
    assert "another process of the distributed run" in ours[0] and "is kept; continue with --resume" in ours[0]
    assert "Traceback" not in stdout and all(not line.startswith("  File") for line in stdout.splitlines())
    saved = load_checkpoint(last)
    epochs = [row["epoch"] for row in json.loads((out / "history.json").read_text())]
    assert saved.epoch == epochs[-1] < 30 and saved.meta["training"]["partial"] is None
    assert sorted(n for n in os.listdir(out) if not n.startswith(".")) == ["history.json", "last.npz", "model.npz"]
    # ... and it resumes (here on one process, one more epoch).
    result = cs.train.fit(None, "digits", epochs=saved.epoch + 1, out=out, resume=True, progress=False,
                          engine="torch", device="cpu")
    assert [row["epoch"] for row in result.history] == list(range(1, saved.epoch + 2))


def test_world_size_that_does_not_divide_the_batch_under_torchrun(tmp_path):
    process = _torchrun(["--engine", "torch", "--device", "cpu", "--batch-size", "33", "--out",
                         str(tmp_path / "run")], cwd=tmp_path)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode != 0
    ours = [line for line in (stdout + stderr).splitlines() if line.startswith("convscope:")]
    assert ours == ["convscope: error: --batch-size 33 is the global batch and must be divisible by the 2 "
                    "processes (world size); use --batch-size 32 or 34"]
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("rank, expected", [("0", ["convscope: interrupted"]), ("1", [])])
def test_only_rank_0_says_interrupted_when_torchrun_stops_the_ranks(tmp_path, rank, expected):
    """torchrun stops the other ranks with SIGTERM once one exits (the batch-size error above:
    a rank still starting would otherwise add "interrupted" beside rank 0's error). A rank
    other than 0 stops silently with 143; rank 0 says it, whether the signal comes while
    Python imports or once the command runs. The process group is never reached: MASTER_PORT
    names a closed port, and the signal comes within a second."""
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1", WORLD_SIZE="2", RANK=rank, LOCAL_RANK=rank,
               MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    for delay in (0.3, 1.5):
        process = subprocess.Popen([sys.executable, "-m", "convscope", "train", "--engine", "torch", "--device",
                                    "cpu", "--out", str(tmp_path / "run")], cwd=tmp_path, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 143, stderr
        assert [line for line in (stdout + stderr).splitlines() if line.startswith("convscope:")] == expected
        assert "Traceback" not in stderr
