"""Shared pieces of the hostile-input suite (issue 14).

Every case asserts four things: the exit code, exactly one stderr line starting with
``convscope``, no traceback, and the files afterwards (:func:`snapshot` of the folder before
and after: nothing lost, nothing half-written, nothing outside the named outputs touched).

Cases that could eat memory run in a subprocess under ``RLIMIT_AS`` (:func:`run_limited`), so a
regression fails with MemoryError instead of swapping the machine: the baseline (importing
NumPy, SciPy's BLAS, Pillow and convscope, then a small training run) needs well under 1 GiB of
address space here; :data:`MEMORY_LIMIT` (3 GiB) leaves room for the 1 GiB decoding budget
(limits.MAX_DECODED_BYTES) on top.
"""
from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys

import numpy as np
import pytest

import convscope
from convscope.cli import main
from convscope.train import preprocessing
from convscope.train.checkpoint import META_KEY, save_checkpoint

TINY = "conv2d(2, 3, padding=1) -> relu -> flatten -> linear(10)"
SRC = os.path.dirname(os.path.dirname(convscope.__file__))
MEMORY_LIMIT = 3 << 30


def snapshot(folder) -> dict:
    """{relative path: sha256 or 'link->target' or 'dir'} of everything under ``folder``."""
    state = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            full = os.path.join(root, name)
            key = os.path.relpath(full, folder)
            if os.path.islink(full):
                state[key] = "link->" + os.readlink(full)
            elif os.path.isdir(full):
                state[key] = "dir"
            elif os.path.isfile(full):
                with open(full, "rb") as handle:
                    state[key] = hashlib.sha256(handle.read()).hexdigest()
            else:
                state[key] = "special"
    return state


def one_line(rc, err, expected_rc=2) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert rc == expected_rc, (rc, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("convscope"), err
    return lines[0]


def fails(capsys, folder, *argv, rc=2) -> str:
    """Run the CLI in-process; expect exit ``rc``, one stderr line, no traceback, and ``folder``
    exactly as before. Returns the line."""
    before = snapshot(folder)
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    line = one_line(code, err, rc)
    assert snapshot(folder) == before, "files changed by a refused command"
    return line


def _limit():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def env():
    environment = dict(os.environ, PYTHONPATH=SRC, MPLBACKEND="Agg", OMP_NUM_THREADS="1",
                       OPENBLAS_NUM_THREADS="1")
    return environment


def run_limited(*argv, timeout=120, cwd=None):
    """``python -m convscope ARGV`` under RLIMIT_AS = MEMORY_LIMIT; (returncode, stdout, stderr)."""
    done = subprocess.run([sys.executable, "-m", "convscope", *map(str, argv)], capture_output=True, text=True,
                          preexec_fn=_limit, env=env(), timeout=timeout, cwd=cwd)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="session")
def good_ckpt(tmp_path_factory):
    """A valid 1×8×8 checkpoint (digits preprocessing): (bytes, arrays, meta)."""
    from convscope.spec import parse_text

    model = parse_text(TINY)
    model.build((1, 8, 8), seed=0)
    prep = preprocessing.make(1, (8, 8), (0.0, 16.0), invert=False)
    path = tmp_path_factory.mktemp("ckpt") / "model.npz"
    save_checkpoint(path, model, preprocessing=prep, class_names=[str(i) for i in range(10)])
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    return path.read_bytes(), arrays, json.loads(str(arrays[META_KEY]))


@pytest.fixture
def ckpt(tmp_path, good_ckpt):
    """A fresh copy of the valid checkpoint in this test's folder."""
    path = tmp_path / "model.npz"
    path.write_bytes(good_ckpt[0])
    return path


def write_ckpt(path, arrays, meta=None, **changes):
    """Write a checkpoint from ``arrays`` with its description replaced/edited."""
    arrays = dict(arrays)
    meta = dict(json.loads(str(arrays[META_KEY])) if meta is None else meta)
    meta.update(changes)
    arrays[META_KEY] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    return path


@pytest.fixture
def png(tmp_path):
    """A small 8-bit PNG digit-like drawing in this test's folder."""
    from PIL import Image

    path = tmp_path / "digit.png"
    image = np.full((28, 28), 255, np.uint8)
    image[6:22, 12:16] = 0
    Image.fromarray(image).save(path)
    return path
