"""A hostile user's command line: every bad input is ONE stderr line and exit code 2, never a
traceback, and nothing already on disk is lost (contract "Bad input" of issues 4, 5, 7 and 8).

Each test here is a regression for a case that once escaped as a traceback, a multi-line
message, exit code 0, or a half-written file. Checkpoints are made with ``save_checkpoint`` on
tiny models (no training) except for the resume cases, which train one epoch on 40 samples.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from convscope.cli import main
from convscope.train.checkpoint import META_KEY, save_checkpoint
from convscope.train import preprocessing

TINY = "conv2d(2, 3, padding=1) -> relu -> flatten -> linear(10)"


def fails(capsys, *argv) -> str:
    """Run the CLI; expect exit 2 and exactly one stderr line without a traceback; return it."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert rc == 2, (rc, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("convscope")
    return lines[0]


@pytest.fixture
def ckpt(tmp_path):
    """A valid 1×8×8 checkpoint (digits preprocessing) and its arrays, for editing."""
    from convscope.spec import parse_text

    model = parse_text(TINY)
    model.build((1, 8, 8), seed=0)
    prep = preprocessing.make(1, (8, 8), (0.0, 16.0), invert=False)
    path = tmp_path / "model.npz"
    save_checkpoint(path, model, preprocessing=prep, class_names=[str(i) for i in range(10)])
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    return path, arrays


def edited(tmp_path, arrays, name, **changes):
    """A copy of the checkpoint whose JSON description has ``changes`` applied."""
    meta = json.loads(str(arrays[META_KEY]))
    meta.update(changes)
    out = dict(arrays, **{META_KEY: np.array(json.dumps(meta))})
    path = tmp_path / f"{name}.npz"
    np.savez(path, **out)
    return path


# --- --input: a typo is never silently a different shape -------------------------------------

@pytest.mark.parametrize("text", ["3x", "x3", "3x224x224x", "3xx4"])
def test_malformed_input_shape_is_refused(capsys, text):
    # "3x" used to be read as the 1-axis shape (3,), "3x224x224x" as 3×224×224.
    assert "--input must be positive integers" in fails(capsys, "summary", "conv2d(3, 3)", "--input", text)


def test_unicode_times_sign_is_accepted(capsys):
    # 3×224×224 is how convscope itself prints shapes, so it is accepted as input.
    assert main(["summary", "conv2d(3, 3)", "--input", "3×8×8", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["input"] == [3, 8, 8]


# --- spec files -----------------------------------------------------------------------------

def test_spec_with_a_5000_digit_number(tmp_path, capsys):
    # json.loads raised Python's ValueError "Exceeds the limit (4300 digits)".
    path = tmp_path / "big.json"
    path.write_text('{"layers": [{"type": "linear", "out_features": ' + "9" * 5000 + "}]}")
    assert "thousands of digits" in fails(capsys, "summary", path, "--input", "4")


def test_yaml_with_a_5000_digit_number(tmp_path, capsys):
    path = tmp_path / "big.yaml"
    path.write_text("layers: [{type: linear, out_features: " + "9" * 5000 + "}]\n")
    assert "thousands of digits" in fails(capsys, "summary", path, "--input", "4")


@pytest.mark.parametrize("value", ["[1, 1e400, 8]", "[true, 8, 8]", "[[1], 8, 8]"])
def test_spec_input_of_wrong_types(tmp_path, capsys, value):
    # 1e400 is inf in JSON: int(inf) raised OverflowError; true was read as 1.
    path = tmp_path / "spec.json"
    path.write_text('{"input": ' + value + ', "layers": [{"type": "relu"}]}')
    assert "input: expected a list of positive integers" in fails(capsys, "summary", path)


def test_yaml_python_tags_are_refused(tmp_path, capsys):
    path = tmp_path / "evil.yaml"
    path.write_text('!!python/object/apply:os.system ["echo PWNED"]\n')
    assert "not valid YAML" in fails(capsys, "summary", path)


# --- edited checkpoints: refused before anything large is allocated ---------------------------

@pytest.mark.parametrize("change, words", [
    ({"version": [1]}, "version must be an integer"),
    ({"version": "abc"}, "version must be an integer"),
    ({"spec": "hello"}, "'spec' must be an object"),
    ({"input_shape": "abc"}, "'input_shape' must be a list"),
    ({"dtype": "int8"}, "dtype must be 'float32' or 'float64'"),
    ({"class_names": 5}, "'class_names' must be a list"),
    ({"class_names": [1, 2]}, "class_names must be strings"),
    ({"epoch": "x"}, "'epoch' must be an integer"),
    ({"optimizer": "x"}, "'optimizer' must be an object"),
    ({"training": "x"}, "'training' must be an object"),
])
def test_checkpoint_description_of_wrong_types(tmp_path, capsys, ckpt, change, words):
    path = edited(tmp_path, ckpt[1], "bad", **change)
    for command in (["summary", path], ["predict", path, path]):
        assert words in fails(capsys, *command)


def test_checkpoint_spec_edited_to_a_trillion_channels(tmp_path, capsys, ckpt):
    # Building it asked NumPy for 65 TiB (a MemoryError traceback); now the sizes are compared first.
    meta = json.loads(str(ckpt[1][META_KEY]))
    meta["spec"]["layers"][0]["out_channels"] = 10 ** 12
    path = edited(tmp_path, ckpt[1], "huge", spec=meta["spec"])
    assert "the file holds only" in fails(capsys, "summary", path)


def test_checkpoint_input_edited_to_be_huge(tmp_path, capsys, ckpt):
    path = edited(tmp_path, ckpt[1], "huge_input", input_shape=[1, 10 ** 6, 10 ** 6])
    assert "the file holds only" in fails(capsys, "predict", path, path)


def test_checkpoint_with_bad_preprocessing_names_the_file(tmp_path, capsys, ckpt):
    meta = json.loads(str(ckpt[1][META_KEY]))
    path = edited(tmp_path, ckpt[1], "prep", preprocessing=dict(meta["preprocessing"], size=[0, 0]))
    assert str(path) in fails(capsys, "summary", path)


def test_checkpoint_with_a_pickled_array_is_refused(tmp_path, capsys, ckpt):
    arrays = dict(ckpt[1], **{"0.weight": np.array([{"a": 1}], dtype=object)})
    path = tmp_path / "pickled.npz"
    np.savez(path, **arrays)
    assert "pickled" in fails(capsys, "summary", path)


# --- training -------------------------------------------------------------------------------

def test_labels_with_a_huge_class_index(tmp_path, capsys):
    # One label of 10**12 made the default model's last layer 10**12 wide: MemoryError.
    data = tmp_path / "data.npz"
    np.savez(data, x=np.zeros((20, 1, 8, 8)), y=np.full(20, 10 ** 12))
    assert "at most 100,000" in fails(capsys, "train", "--data", data, "--out", tmp_path / "run", "--epochs", "1")
    assert not (tmp_path / "run").exists()


def test_model_too_large_for_memory_is_one_line(tmp_path, capsys):
    line = fails(capsys, "train", "flatten -> linear(100000000000)", "--out", tmp_path / "run", "--epochs", "1",
                 "--quiet")
    # Issue 14: refused by the tensor budget before allocating (it was a MemoryError caught late).
    assert "limits.MAX_TENSOR_VALUES" in line


def test_huge_learning_rate_diverges_in_one_line(tmp_path, capsys):
    # NumPy's RuntimeWarnings (two lines each) used to precede the message, and the suggested
    # lower rate was "--lr inf" because the schedule overflowed.
    line = fails(capsys, "train", "--out", tmp_path / "run", "--epochs", "1", "--lr", "1e308", "--quiet")
    assert "--lr 0.001" in line


def test_out_below_a_file(tmp_path, capsys):
    # os.makedirs raised NotADirectoryError, which the CLI did not catch.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert "Not a directory" in fails(capsys, "train", "--out", blocker / "run", "--epochs", "1", "--quiet")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A real run folder: one epoch of the tiny model on 40 random 1×8×8 samples."""
    root = tmp_path_factory.mktemp("run")
    data = root / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.random((40, 1, 8, 8)).astype(np.float32), y=np.arange(40) % 10)
    assert main(["train", TINY, "--data", str(data), "--out", str(root / "run"), "--epochs", "1",
                 "--quiet"]) == 0
    return root / "run", data


@pytest.mark.parametrize("training", [
    {"history": [{"epoch": "x"}], "partial": "p", "schedule": "q", "optimizer": 5},
    "data-as-a-string-in-training-optimizer",
])
def test_resume_from_a_damaged_training_record(tmp_path, capsys, run_dir, training):
    run, data = run_dir
    copy = tmp_path / "run"
    copy.mkdir()
    for name in os.listdir(run):
        (copy / name).write_bytes((run / name).read_bytes())
    with np.load(run / "last.npz", allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(str(arrays[META_KEY]))
    if isinstance(training, str):  # a well-typed record whose optimizer entry is a string
        meta["training"]["optimizer"] = training
    else:
        meta["training"] = training
    arrays[META_KEY] = np.array(json.dumps(meta))
    np.savez(copy / "last.npz", **arrays)
    before = {name: (copy / name).read_bytes() for name in os.listdir(copy)}
    line = fails(capsys, "train", "--data", data, "--out", copy, "--epochs", "3", "--resume", "--quiet")
    assert "training record" in line and "is damaged" in line
    assert {name: (copy / name).read_bytes() for name in os.listdir(copy)} == before  # nothing lost


def test_resume_asking_for_no_more_epochs_keeps_its_message(capsys, run_dir):
    # The "already has N epochs" sentence (a ConvscopeError) must not be re-worded as damage.
    run, data = run_dir
    assert "already has 1 epochs" in fails(capsys, "train", "--data", data, "--out", run, "--epochs", "1",
                                           "--resume", "--quiet")


# --- pictures and exports: -o naming a folder -----------------------------------------------

def test_show_to_a_folder_named_like_a_picture(tmp_path, capsys, ckpt):
    # Used to report "Is a directory: .../.dir.png.tmp1234.png" (the temporary file's name).
    target = tmp_path / "dir.png"
    target.mkdir()
    assert "it is a folder" in fails(capsys, "show", "filters", ckpt[0], "-o", target)
    target_svg = tmp_path / "dir.svg"
    target_svg.mkdir()
    assert "it is a folder" in fails(capsys, "show", "architecture", "lenet5", "-o", target_svg)
    assert not [n for n in os.listdir(tmp_path) if ".tmp" in n]  # no temporary file left behind


@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
def test_export_to_a_folder(tmp_path, capsys, ckpt, suffix):
    # .pt raised torch's multi-line RuntimeError "[enforce fail at inline_container.cc]".
    target = tmp_path / f"dir{suffix}"
    target.mkdir()
    assert "it is a folder" in fails(capsys, "export", ckpt[0], "-o", target)


def test_export_onnx_is_written_atomically(tmp_path, capsys, ckpt):
    pytest.importorskip("onnx")
    out = tmp_path / "net.onnx"
    assert main(["export", str(ckpt[0]), "-o", str(out)]) == 0
    assert out.stat().st_size > 0
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


# --- images and traces ----------------------------------------------------------------------

def test_predict_on_a_very_large_image_prints_no_warning(tmp_path, capsys, ckpt):
    # 10,000×10,000 is above Pillow's warning threshold: a multi-line DecompressionBombWarning.
    from PIL import Image

    path = tmp_path / "big.png"
    Image.new("1", (10_000, 10_000), 0).save(path)
    assert main(["predict", str(ckpt[0]), str(path), "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert json.loads(captured.out)[0]["file"] == str(path)


def test_trace_with_a_huge_padding(capsys):
    # --padding 100000000 allocated and would print 10^8 terms (MemoryError).
    assert "too large for a trace" in fails(capsys, "trace", "conv1d", "--x", "1,2,3", "--w", "0.3,0.5",
                                            "--padding", "100000000")
