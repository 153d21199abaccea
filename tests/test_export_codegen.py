"""The generated net.py of `convscope export -o net.pt` never runs a user's string as code.

Oracle: Python itself. A file name or class name that tries to close the docstring or a
string literal must come back out of the generated module as the same string (SOURCE,
WEIGHTS_FILE), and importing the module must not create the marker file its payload names.
"""
from __future__ import annotations

import ast
import importlib.util
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import convscope as cs
from convscope import layers as L
from convscope.interop.codegen import literal, module_source
from convscope.interop.torch_export import describe
from convscope.train.checkpoint import save_checkpoint

PAYLOADS = [
    'm"""; __import__("os").system("touch {marker}"); """',
    "m'''; __import__('os').system('touch {marker}'); '''",
    'm"; __import__("os").system("touch {marker}"); "',
    "m\\\"\"\"; __import__('os').system('touch {marker}') #",
    "m\n__import__('os').system('touch {marker}')\n",
]


def small_model():
    model = cs.Sequential([L.Conv2d(2, 3), L.ReLU(), L.Flatten(), L.Linear(3)])
    return model.build((1, 5, 5), seed=0)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_hostile_names_stay_strings_in_generated_code(tmp_path, payload):
    marker = tmp_path / "PWNED"
    name = payload.format(marker=marker)
    code = module_source(describe(small_model()), input_shape=(1, 5, 5), dtype="float32",
                         weights_file=name + ".pt", source=name + ".npz", version="0.1.0")
    tree = ast.parse(code)  # valid Python
    constants = {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
                 if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                 and node.targets[0].id in ("SOURCE", "WEIGHTS_FILE")}
    assert constants == {"SOURCE": name + ".npz", "WEIGHTS_FILE": name + ".pt"}
    # Every top-level call in the module is a definition or an import: nothing runs on import.
    calls = [node for node in tree.body if isinstance(node, ast.Expr) and not isinstance(node.value, ast.Constant)]
    assert calls == []
    path = tmp_path / "net.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location("hostile_net", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert not marker.exists()
    assert module.SOURCE == name + ".npz"


def test_export_cli_with_a_hostile_checkpoint_name(tmp_path):
    marker = tmp_path / "PWNED"
    # A file name cannot hold '/', so the payload names the marker relative to tmp_path (the cwd).
    name = 'm"""; __import__("os").system("touch PWNED"); """'
    checkpoint = tmp_path / (name + ".npz")
    save_checkpoint(checkpoint, small_model(), input_shape=(1, 5, 5))
    out = tmp_path / "net.pt"
    result = subprocess.run([sys.executable, "-m", "convscope", "export", str(checkpoint), "-o", str(out)],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = subprocess.run([sys.executable, "-c", "import net; m = net.load(); print(net.SOURCE)"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == name + ".npz"
    assert not marker.exists()


@pytest.mark.parametrize("value, expected", [
    (float("inf"), math.inf), (-math.inf, -math.inf), (1e-5, 1e-5), ((1, 2), (1, 2)), ((3,), (3,)),
    ([1, "a"], [1, "a"]), (None, None), (True, True)])
def test_literal_round_trips_through_eval(value, expected):
    assert eval(literal(value), {"__builtins__": {"float": float}}) == expected


def test_literal_writes_nan_as_a_call_not_a_name():
    assert math.isnan(eval(literal(float("nan")), {"__builtins__": {"float": float}}))


def test_literal_refuses_objects_it_cannot_write():
    with pytest.raises(TypeError):
        literal(object())
    with pytest.raises(TypeError):
        literal(np.zeros(2))
