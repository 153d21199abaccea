"""`convscope export CK --train-script`: a stand-alone train.py that reproduces the training.

Oracle: convscope's own run. The script runs with convscope made unimportable and, from the
same initial weights, data order, optimizer and schedule, gives the run's history: in float64
every loss within 1e-9. Hostile class and file names come back out of the script as the same
strings and never run.
"""
import ast
import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import convscope as cs  # noqa: E402
from convscope.cli import main  # noqa: E402

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")

# A finder that refuses convscope: the script must not need it.
RUNNER = ("import runpy, sys\n"
          "class Block:\n"
          "    def find_spec(self, name, path=None, target=None):\n"
          "        if name.split('.')[0] == 'convscope': raise ImportError('convscope is not installed here')\n"
          "sys.meta_path.insert(0, Block())\n"
          "sys.argv = sys.argv[1:]\n"
          "runpy.run_path(sys.argv[0], run_name='__main__')\n")


def _run_script(script, *args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)
    return subprocess.run([sys.executable, "-c", RUNNER, str(script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_script_reproduces_the_run_without_convscope(tmp_path):
    run = tmp_path / "run"
    result = cs.train.fit(None, "digits", epochs=2, optimizer="sgd", nesterov=True, weight_decay=1e-4,
                          lr=0.05, dtype=np.float64, out=run, progress=False)
    assert main(["export", str(run / "last.npz"), "--train-script", "-o", str(tmp_path)]) == 0
    script = tmp_path / "train.py"
    assert (tmp_path / "train_data.npz").exists()
    imported = set()
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported <= {"argparse", "json", "math", "os", "sys", "time", "numpy", "torch"}, imported
    done = _run_script(script, "--device", "cpu", "--out", str(tmp_path / "t.pt"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("epoch ") == 2
    history = json.loads((tmp_path / "t_history.json").read_text())
    for ours, theirs in zip(result.history, history):
        assert ours["lr"] == theirs["lr"] and ours["val_accuracy"] == theirs["val_accuracy"]
        assert abs(ours["train_loss"] - theirs["train_loss"]) < 1e-9
        assert abs(ours["val_loss"] - theirs["val_loss"]) < 1e-9
    trained = torch.load(tmp_path / "t.pt", weights_only=True)
    for name, value in result.model.state_dict().items():
        np.testing.assert_allclose(trained[name].numpy(), value, rtol=0, atol=1e-9, err_msg=name)


PAYLOADS = [
    'c"""; __import__("os").system("touch PWNED"); """',
    "c'''; __import__('os').system('touch PWNED'); '''",
    'c"; __import__("os").system("touch PWNED"); "',
    "c\n__import__('os').system('touch PWNED')\n",
]


def test_hostile_names_cannot_inject_code(tmp_path):
    digits = cs.train.load_data("digits")
    names = PAYLOADS + [f"digit {i}" for i in range(len(PAYLOADS), 10)]
    data_file = tmp_path / "d\"'''; __import__('os').system('touch PWNED') #.npz"
    np.savez(data_file, x=digits.train.x[:120], y=digits.train.y[:120], class_names=np.array(names))
    work = tmp_path / "work"
    work.mkdir()
    cs.train.fit(None, str(data_file), epochs=1, out=work / "run", progress=False)
    assert main(["export", str(work / "run" / "model.npz"), "--train-script", "-o", str(work / "t.py")]) == 0
    code = (work / "t.py").read_text()
    tree = ast.parse(code)
    constants = {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
                 if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                 and node.targets[0].id in ("CLASS_NAMES", "DATA_NAME")}
    assert constants == {"CLASS_NAMES": names, "DATA_NAME": str(data_file)}
    # Nothing runs at import but definitions; running the script trains and creates no marker.
    assert [n for n in tree.body if isinstance(n, ast.Expr) and not isinstance(n.value, ast.Constant)] == []
    done = _run_script(work / "t.py", "--device", "cpu", "--epochs", "1", "--out", str(work / "t.pt"), cwd=work)
    assert done.returncode == 0, done.stderr
    assert not (work / "PWNED").exists() and not (tmp_path / "PWNED").exists()


def test_train_script_bad_input(tmp_path, capsys):
    model = cs.parse_text("conv2d(2, 3) -> flatten -> linear(10)").build((1, 8, 8))
    bare = cs.train.save_checkpoint(tmp_path / "bare.npz", model)
    assert main(["export", bare, "--train-script", "-o", str(tmp_path / "t.py")]) == 2
    assert "has no training record" in capsys.readouterr().err
    assert main(["export", bare, "--train-script", "-o", str(tmp_path / "t.txt")]) == 2
    assert "a .py file or an existing folder" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["bare.npz"]
