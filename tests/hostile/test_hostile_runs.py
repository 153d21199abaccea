"""Run folders under faults: concurrent runs, --overwrite, SIGTERM, Ctrl-C during start-up, and
SIGKILL at 20 random (seeded) moments. Oracle for "from one run": every epoch row carries its
measured seconds, so rows of two runs never compare equal; history.json and model.npz must hold
a prefix of last.npz's own history."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from convscope.cli import main
from convscope.train import runlock
from convscope.train.checkpoint import read_checkpoint

from conftest import TINY, env, fails, one_line

KILLS = 20


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "small.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.random((300, 1, 8, 8)).astype(np.float32), y=np.arange(300) % 10)
    return path


def convscope(*argv, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "convscope", *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env(), **kwargs)


def check_run(run) -> dict:
    """Every file complete and from one run; returns {name: history rows}."""
    names = set(os.listdir(run)) if os.path.isdir(run) else set()
    leftovers = {n for n in names if n.endswith(".tmp")}
    assert names - leftovers <= {"model.npz", "last.npz", "history.json"}, names
    assert all(n.startswith((".model.npz.", ".last.npz.", ".history.json.")) for n in leftovers)
    rows = {}
    for name in ("model.npz", "last.npz"):
        if name in names:
            meta, _ = read_checkpoint(os.path.join(run, name))  # complete: the CRCs and schema check
            rows[name] = meta["training"]["history"]
    if "history.json" in names:
        with open(os.path.join(run, "history.json")) as handle:
            rows["history.json"] = json.load(handle)
    if "last.npz" in rows:
        last = rows["last.npz"]
        for other in ("model.npz", "history.json"):
            if other in rows:
                assert rows[other] == last[:len(rows[other])], f"{other} is from another run than last.npz"
                assert len(last) - len(rows[other]) <= (1 if other == "history.json" else len(last))
    elif "history.json" in rows:
        assert "model.npz" not in rows or rows["model.npz"] == rows["history.json"][:len(rows["model.npz"])]
    return rows


def test_sigkill_at_twenty_random_moments(tmp_path, data):
    run = tmp_path / "run"
    rng = random.Random(14)
    for i in range(KILLS):
        resume = (run / "last.npz").exists() and i % 5 != 4  # every fifth start is --overwrite
        argv = (["train", "--resume"] if resume else ["train", TINY, "--overwrite"])
        process = convscope(*argv, "--data", data, "--out", run, "--epochs", 10_000, "--quiet")
        time.sleep(rng.uniform(0.3, 1.6))
        process.kill()
        process.communicate()
        check_run(run)
    rows = check_run(run)
    done = len(rows["last.npz"]) if "last.npz" in rows else 0
    args = ["train", "--resume"] if done else ["train", TINY, "--overwrite"]
    final = convscope(*args, "--data", data, "--out", run, "--epochs", done + 1, "--quiet")
    out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err
    rows = check_run(run)
    assert len(rows["last.npz"]) == done + 1 and rows["history.json"] == rows["last.npz"]
    assert not [n for n in os.listdir(run) if n.endswith(".tmp")]


def test_sigterm_saves_and_exits_143(tmp_path, data):
    run = tmp_path / "run"
    process = convscope("train", TINY, "--data", data, "--out", run, "--epochs", 10_000)
    process.stdout.readline()  # the first epoch's line: training is under way
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    line = one_line(process.returncode, err, 143)
    assert "interrupted at epoch" in line and "--resume" in line
    meta, _ = read_checkpoint(run / "last.npz")
    assert meta["training"]["partial"] is not None or meta["epoch"] >= 1
    assert main(["train", "--data", str(data), "--out", str(run), "--epochs", str(meta["epoch"] + 1), "--resume",
                 "--quiet"]) == 0


@pytest.mark.parametrize("seed", range(6))
def test_interrupt_during_start_up_is_quiet(seed):
    # Ctrl-C 0.15 s after start printed a KeyboardInterrupt traceback from the imports. The
    # launcher says when Python's own start-up is over ("R"); convscope's code runs from there.
    code = ("import os, sys, runpy; os.write(1, b'R'); sys.argv = ['-m'] + sys.argv[1:]; "
            "runpy.run_module('convscope', run_name='__main__')")
    process = subprocess.Popen([sys.executable, "-c", code, "summary", "lenet5"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env())
    assert process.stdout.read(1) == b"R"
    time.sleep(random.Random(seed).uniform(0.0, 0.5))
    signum = signal.SIGINT if seed % 2 else signal.SIGTERM
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    if process.returncode in (0, -signum):
        # The command had finished before the signal (its last line printed; a signal during the
        # interpreter's own shutdown, after convscope's code, ends it the default way).
        assert err == b"" and b"MACs:" in out, (process.returncode, err)
        return
    assert one_line(process.returncode, err.decode(), 128 + signum) == "convscope: interrupted"


@pytest.fixture
def finished_run(tmp_path, data):
    run = tmp_path / "run"
    assert main(["train", TINY, "--data", str(data), "--out", str(run), "--epochs", "1", "--quiet"]) == 0
    return run


@pytest.mark.parametrize("argv", [["--resume", "--epochs", "3"], ["--overwrite", "--epochs", "1"]])
def test_second_run_on_a_locked_folder_is_refused(tmp_path, capsys, data, finished_run, argv):
    # Two `convscope train --out SAME` at once both exited 0 and left files from both runs.
    lock = runlock.take(str(finished_run))
    try:
        model = [] if "--resume" in argv else [TINY]
        line = fails(capsys, tmp_path, "train", *model, "--data", data, "--out", finished_run, "--quiet", *argv)
        assert "in use by another convscope train" in line
    finally:
        lock.release()
    assert main(["train", *([] if "--resume" in argv else [TINY]), "--data", str(data), "--out", str(finished_run),
                 "--quiet", *argv]) == 0


def test_lock_is_released_when_the_holder_dies(tmp_path, data, finished_run, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, fcntl, os, time; fd = os.open(sys.argv[1], "
                               "os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); "
                               "time.sleep(60)", str(finished_run)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    assert "in use" in fails(capsys, tmp_path, "train", "--resume", "--data", data, "--out", finished_run,
                             "--epochs", "2", "--quiet")
    holder.kill()
    holder.wait()
    assert main(["train", "--resume", "--data", str(data), "--out", str(finished_run), "--epochs", "2",
                 "--quiet"]) == 0


@pytest.mark.parametrize("removed", [0, 1, 2, 3])
def test_overwrite_order_never_mixes(tmp_path, finished_run, removed):
    # What a SIGKILL after each removal step of --overwrite leaves: always files of one run.
    for name in runlock.OVERWRITE_ORDER[:removed]:
        os.unlink(finished_run / name)
    rows = check_run(finished_run)
    assert ("last.npz" in rows) == (removed == 0)
