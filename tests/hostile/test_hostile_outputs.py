"""-o never writes over an input, through a symbolic link, or over a file convscope did not
write unless --force; a refused write leaves every file as it was; generated code never runs a
user's string (class names, layer names, file names) and carries only finite numbers."""
from __future__ import annotations

import ast
import os

import numpy as np
import pytest

from convscope.cli import main

from conftest import fails, one_line, snapshot, write_ckpt

pytest.importorskip("onnx")


def test_export_over_its_own_checkpoint(tmp_path, capsys, ckpt):
    link = tmp_path / "ck.onnx"
    os.link(ckpt, link)  # the same file under an .onnx name: `export ck.onnx -o ck.onnx`
    assert "one of this command's inputs" in fails(capsys, tmp_path, "export", link, "-o", link)


def test_featuremaps_over_the_input_image(tmp_path, capsys, ckpt, png):
    assert "one of this command's inputs" in fails(capsys, tmp_path, "show", "featuremaps", ckpt, png, "-o", png)


@pytest.mark.parametrize("command", ["export-pt", "export-onnx", "filters", "featuremaps", "architecture", "curves"])
def test_foreign_file_is_not_overwritten_without_force(tmp_path, capsys, ckpt, png, command):
    # `export CK -o train.pt` silently replaced an existing train.py.
    names = {"export-pt": "train.pt", "export-onnx": "net.onnx", "filters": "f.png", "featuremaps": "m.png",
             "architecture": "a.svg", "curves": "c.png"}
    target = tmp_path / names[command]
    victim = target.with_suffix(".py") if command == "export-pt" else target
    victim.write_text("# my own work\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.json").write_text('[{"epoch": 1, "train_loss": 1.0, "val_loss": 1.1}]')
    argv = {"export-pt": ["export", ckpt, "-o", target], "export-onnx": ["export", ckpt, "-o", target],
            "filters": ["show", "filters", ckpt, "-o", target],
            "featuremaps": ["show", "featuremaps", ckpt, png, "-o", target],
            "architecture": ["show", "architecture", "lenet5", "-o", target],
            "curves": ["show", "curves", run, "-o", target]}[command]
    assert "--force" in fails(capsys, tmp_path, *argv)
    if command == "export-pt":
        pytest.importorskip("torch")
    assert main([*map(str, argv), "--force"]) == 0
    capsys.readouterr()
    assert victim.read_bytes() != b"# my own work\n"
    # What convscope wrote, it may write again without --force.
    assert main(list(map(str, argv))) == 0


@pytest.mark.parametrize("command", ["export-onnx", "filters", "architecture"])
def test_output_through_a_symlink_is_refused(tmp_path, capsys, ckpt, command):
    target = tmp_path / "elsewhere.bin"
    target.write_bytes(b"precious")
    suffix = {"export-onnx": ".onnx", "filters": ".png", "architecture": ".svg"}[command]
    link = tmp_path / f"link{suffix}"
    os.symlink(target, link)
    argv = {"export-onnx": ["export", ckpt, "-o", link], "filters": ["show", "filters", ckpt, "-o", link],
            "architecture": ["show", "architecture", "lenet5", "-o", link]}[command]
    assert "symbolic link" in fails(capsys, tmp_path, *argv)
    assert "symbolic link" in fails(capsys, tmp_path, *argv, "--force")


@pytest.mark.parametrize("kind", ["fifo", "dangling-link"])
def test_output_onto_special_files(tmp_path, capsys, ckpt, kind):
    target = tmp_path / "out.png"
    if kind == "fifo":
        os.mkfifo(target)
    else:
        os.symlink(tmp_path / "missing.png", target)
    fails(capsys, tmp_path, "show", "filters", ckpt, "-o", target, "--force")


HOSTILE_NAMES = ['"""; __import__("os").system("touch PWNED"); """', "'''\nimport os; os.system('touch PWNED')\n",
                 "\\", "[/a]", "x\x00y", "\u202e evil", "${HOME}", "\nprint('PWNED')\n#"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_class_names_in_generated_code(tmp_path, capsys, good_ckpt, name):
    torch = pytest.importorskip("torch")  # noqa: F841
    arrays, meta = good_ckpt[1], good_ckpt[2]
    path = write_ckpt(tmp_path / "m.npz", arrays, meta, class_names=[name] + [str(i) for i in range(1, 10)])
    assert main(["export", str(path), "-o", str(tmp_path / "net.pt")]) == 0
    capsys.readouterr()
    code = (tmp_path / "net.py").read_text()
    tree = ast.parse(code)
    assert not [n for n in tree.body if isinstance(n, ast.Expr) and not isinstance(n.value, ast.Constant)]
    namespace = {}
    exec(compile(tree, "net.py", "exec"), namespace)  # importing it runs nothing of the name
    assert not (tmp_path / "PWNED").exists() and not os.path.exists("PWNED")


@pytest.mark.parametrize("name", ["[/a]", "[bold]x", "[link=http://x]y[/link]"])
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_rich_markup_in_class_and_file_names(tmp_path, capsys, good_ckpt, monkeypatch, name, command):
    # MarkupError in predict and evaluate for a class name "[/a]" or a file "[/x].png".
    from PIL import Image

    arrays, meta = good_ckpt[1], good_ckpt[2]
    path = write_ckpt(tmp_path / "m.npz", arrays, meta, class_names=[name] * 10,
                      training={"data": "digits"})
    monkeypatch.chdir(tmp_path)
    os.makedirs("[", exist_ok=True)
    Image.new("L", (8, 8), 0).save("[/x].png")
    argv = ["predict", "m.npz", "[/x].png"] if command == "predict" else ["evaluate", "m.npz"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert name[:6] in captured.out  # printed as text (a long name may wrap in the table)


def test_infinite_eps_cannot_reach_generated_code(tmp_path, capsys, good_ckpt):
    # A batch norm eps of Infinity was accepted and net.py failed with NameError: inf.
    meta = dict(good_ckpt[2])
    spec = {"layers": [{"type": "batchnorm2d", "eps": float("inf")}] + meta["spec"]["layers"]}
    path = write_ckpt(tmp_path / "m.npz", good_ckpt[1], meta, spec=spec)
    assert "eps must be a positive number" in fails(capsys, tmp_path, "export", path, "-o", tmp_path / "net.pt")


def test_refused_export_leaves_no_partial_pair(tmp_path, capsys, ckpt):
    pytest.importorskip("torch")
    (tmp_path / "net.py").write_text("# mine\n")
    fails(capsys, tmp_path, "export", ckpt, "-o", tmp_path / "net.pt")
    assert not (tmp_path / "net.pt").exists()
