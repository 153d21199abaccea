"""The README is true on a fresh machine (issue 15 point 2).

Runs every ``convscope`` line of every ```bash block of README.md, top to bottom, in a fresh
temporary folder holding a copy of ``examples/`` (what a fresh clone has), and asserts exit
code 0 for each. Lines ending in ``# [not run: reason]`` are skipped with that reason (a
server, data or hardware the machine may not have); ``convscope explore`` always counts as
"starts a server". Then the numbers the README states:

* the main job's last line, quoted in the README, against what the command prints: test
  accuracy within ±0.6 points (two of 359 images), best validation accuracy within ±0.7 (one
  of 144), and ``evaluate``'s loss within ±0.01 of the stated one. The README states the
  figures for two OpenBLAS kernels (SkylakeX, which NumPy picks on the machine the README was
  written on, and Haswell, which ``OPENBLAS_CORETYPE=Haswell`` forces); the test compares
  with the figures of the kernel that runs (threadpoolctl reports it);
* every row of "The questions it answers": its command is run and each `quoted` piece of the
  answer must appear in the output;
* outputs stay under ``runs/`` (nothing written next to the README).
"""
import re
import shlex
import shutil
from pathlib import Path

import pytest

from convscope.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SKIP = re.compile(r"#[^#]*\[not run: ([^\]]+)\]\s*$")
NUMBER = r"(\d+(?:\.\d+)?)"


def openblas_kernel():
    """The OpenBLAS kernel family NumPy runs ('SkylakeX', 'Haswell', ...), or None."""
    from threadpoolctl import threadpool_info
    return next((info.get("architecture") for info in threadpool_info()
                 if info.get("internal_api") == "openblas"), None)


def readme_commands():
    """(line, skip reason or None) for every convscope line of the bash blocks, in order;
    lines continued with a backslash are joined first."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if not line.startswith("convscope "):
                continue
            skip = SKIP.search(line)
            reason = skip.group(1) if skip else ("starts a server" if line.startswith("convscope explore") else None)
            found.append((line, reason))
    return found


def table_rows():
    """(command, [quoted pieces of the answer]) of the seed questions' table."""
    section = README.split("## The questions it answers", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) == 3 and cells[1].startswith("`convscope "):
            rows.append((cells[1].strip("`"), re.findall(r"`([^`]+)`", cells[2])))
    return rows


def run_line(line, capsys):
    argv = shlex.split(line, comments=True)
    assert argv[0] == "convscope"
    code = main(argv[1:])
    out, err = capsys.readouterr()
    assert code == 0, f"{line}\nexit {code}\n{err[-2000:]}"
    return out


@pytest.fixture
def fresh_clone(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "C.UTF-8")
    return tmp_path


def test_the_readme_lists_its_commands_and_marks_the_ones_it_cannot_run():
    commands = readme_commands()
    assert commands[0][0] == "convscope train --data digits --out runs/digits"  # the main job comes first
    assert sum(reason is None for _, reason in commands) >= 20
    skipped = [reason for _, reason in commands if reason]
    assert any("MNIST" in r for r in skipped) and any("server" in r for r in skipped)
    assert len(table_rows()) == 5


def test_every_readme_command_runs_top_to_bottom_and_says_what_the_readme_says(fresh_clone, capsys):
    outputs = {}
    for line, reason in readme_commands():
        if reason is None:
            outputs.setdefault(line, run_line(line, capsys))
    # The main job's headline, as quoted in the README.
    quoted = re.search(rf"best validation accuracy {NUMBER}% at epoch (\d+); test accuracy of "
                       rf"runs/digits/model.npz: {NUMBER}% \((\d+) samples\)", README)
    assert quoted, "the README quotes the main job's last line"
    stated_val, stated_epoch, stated_test, stated_n = quoted.groups()
    printed = re.search(rf"best validation accuracy {NUMBER}% at epoch (\d+); test accuracy of "
                        rf"runs/digits/model.npz: {NUMBER}% \((\d+) samples\)",
                        outputs["convscope train --data digits --out runs/digits"])
    assert printed, outputs["convscope train --data digits --out runs/digits"][-500:]
    val, epoch, test, n = printed.groups()
    assert n == stated_n == "359"
    assert f"**{stated_test} % test accuracy**" in README and f"best validation epoch {stated_epoch}" in README
    stated_loss = re.search(rf"test loss {NUMBER}", README).group(1)
    if openblas_kernel() == "Haswell":
        stated_test, stated_loss, stated_epoch = re.search(
            rf"`OPENBLAS_CORETYPE=Haswell` the same command ends at\s+{NUMBER} % \(test loss {NUMBER}, best\s+"
            rf"validation epoch (\d+)\)", README).groups()
    assert abs(float(test) - float(stated_test)) <= 0.6, (test, stated_test)
    assert abs(float(val) - float(stated_val)) <= 0.7, (val, stated_val)
    # evaluate runs before the resume, so it sees the main job's model.npz.
    evaluate = next(out for line, out in outputs.items() if line.startswith("convscope evaluate runs/digits/model.npz"))
    acc, loss = re.search(rf"accuracy {NUMBER}%, loss {NUMBER}", evaluate).groups()
    assert acc == test and abs(float(loss) - float(stated_loss)) <= 0.01, (acc, loss)
    assert '"label": 3' in next(out for line, out in outputs.items() if line.startswith("convscope predict"))
    # Everything written lives under runs/.
    assert sorted(p.name for p in fresh_clone.iterdir()) == ["examples", "runs"]
    assert (fresh_clone / "runs" / "digits" / "model.npz").is_file() and (fresh_clone / "runs" / "net.onnx").is_file()


@pytest.mark.parametrize("command,pieces", table_rows(), ids=[f"seed00{i}" for i in range(len(table_rows()))])
def test_the_seed_questions_table_is_what_the_commands_print(fresh_clone, capsys, command, pieces):
    out = run_line(command, capsys)
    assert pieces
    for piece in pieces:
        assert piece in out, (command, piece)
