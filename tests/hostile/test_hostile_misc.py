"""Command-line numbers and small files that asked for unbounded work: epochs, traces,
history.json. Each is one line and exit 2 naming its budget, the folder untouched."""
from __future__ import annotations

import pytest

from conftest import fails


@pytest.mark.parametrize("option, value", [("--epochs", 10 ** 30), ("--epochs", 1_000_001), ("--warmup", 10 ** 30)])
def test_unbounded_epochs(tmp_path, capsys, option, value):
    line = fails(capsys, tmp_path, "train", "--out", tmp_path / "run", option, value, "--quiet")
    assert "limits.MAX_EPOCHS" in line


def values(n):
    return ",".join(["1"] * n)


@pytest.mark.parametrize("argv, words", [
    (["conv1d", "--x", values(20_000), "--w", values(10_000)], "limits.MAX_TRACE_VALUES"),
    (["conv1d", "--x", values(4_000), "--w", values(100)], "limits.MAX_TRACE_TERMS"),
    (["linear", "--x", values(4_000), "--w", f"4000x100:{values(400_000)}"], "limits.MAX_TRACE_CHARS"),
    (["conv2d", "--x", f"60x60:{values(3600)}", "--w", f"60x60:{values(3600)}", "--padding", "30"],
     "limits.MAX_TRACE_TERMS"),
    (["maxpool2d", "--x", f"60x60:{values(3600)}", "--kernel-size", "60", "--stride", "1", "--padding", "30"],
     "limits.MAX_TRACE_TERMS"),
    (["conv1d", "--x", "[" * 5000 + "1" + "]" * 5000, "--w", "1"], "nested list"),
    (["conv1d", "--x", "9" * 5000, "--w", "1"], "finite number|could not read"),
])
def test_traces_a_person_cannot_read(tmp_path, capsys, argv, words):
    line = fails(capsys, tmp_path, "trace", *argv)
    assert any(word in line for word in words.split("|")), line


@pytest.mark.parametrize("content, words", [
    ("[" * 100_000 + "]" * 100_000, "limits.MAX_SPEC_DEPTH"),
    ("[" * 100 + "]" * 100, "limits.MAX_SPEC_DEPTH"),
    ('[{"epoch": 1, "train_loss": ' + "9" * 5000 + "}]", "thousands of digits"),
    ('[{"epoch": ' + "9" * 400 + ', "train_loss": 1}]', "epoch must be a finite number"),
    ('[{"epoch": NaN, "train_loss": 1}]', "epoch must be a finite number"),
    ("[]", "holds no epochs"),
    ('{"a": 1}', "holds no epochs"),
    ("\xff\xfe", "not valid JSON"),
])
def test_hostile_history_files(tmp_path, capsys, content, words):
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.json").write_text(content, encoding="latin-1")
    assert words in fails(capsys, tmp_path, "show", "curves", run, "-o", tmp_path / "c.png")


def test_history_larger_than_its_budget(tmp_path, capsys, monkeypatch):
    from convscope import limits

    monkeypatch.setattr(limits, "MAX_SPEC_BYTES", 1000)
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.json").write_text('[{"epoch": 1, "train_loss": 1.0}' + " " * 2000 + "]")
    assert "limits.MAX_SPEC_BYTES" in fails(capsys, tmp_path, "show", "curves", run, "-o", tmp_path / "c.png")
