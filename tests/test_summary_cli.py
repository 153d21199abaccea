"""`convscope summary`: every kind of MODEL, the three formats, and one-line errors (exit 2).

Oracles: the contract's JSON keys, torchvision's AlexNet total (61,100,840), seed 004's
(9,216 + 1)·4,096 = 37,752,832, and the rule that bad input never prints a traceback.
"""
import json
import subprocess
import sys

import numpy as np
import pytest

import convscope as cs
from convscope.cli import main

TEXT = "conv2d(8, 3, padding=1) -> relu -> maxpool2d(2) -> flatten -> linear(10)"
# (1·3·3 + 1)·8 + (8·4·4 + 1)·10 = 80 + 1,290 on a 1×8×8 input.
TEXT_PARAMS = 1370


def run(capsys, *argv):
    code = main(["summary", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_has_the_contract_keys(capsys):
    code, out, err = run(capsys, "alexnet", "--format", "json")
    assert code == 0 and err == ""
    data = json.loads(out)
    for key in ("total_params", "trainable_params", "total_macs", "input", "output", "layers"):
        assert key in data
    assert data["total_params"] == data["trainable_params"] == 61_100_840
    assert data["input"] == [3, 224, 224] and data["output"] == [1000]
    for row in data["layers"]:
        for key in ("name", "type", "output_shape", "weights", "biases", "params", "macs"):
            assert key in row
    assert sum(r["params"] for r in data["layers"]) == data["total_params"]
    assert data["total_macs"] == sum(r["macs"] for r in data["layers"])
    assert "1 MAC = 2 FLOPs" in data["counting"]


def test_json_nested_rows_use_dotted_names(capsys):
    code, out, _ = run(capsys, "googlenet", "--format", "json")
    rows = {r["name"]: r for r in json.loads(out)["layers"]}
    assert code == 0
    assert rows["11.branches.1.3"]["type"] == "conv2d" and rows["11.branches.1.3"]["output_shape"] == [128, 28, 28]
    assert rows["11"]["subtree_params"] == sum(r["params"] for n, r in rows.items() if n.startswith("11."))


def test_table_has_totals_and_thousands_separators(capsys):
    code, out, _ = run(capsys, "alexnet")
    assert code == 0
    assert "Total" in out and "61,100,840" in out and "37,752,832" in out
    assert "714,188,480" in out  # total MACs, 0.714 GMACs


def test_markdown_table(capsys):
    code, out, _ = run(capsys, TEXT, "--input", "1x8x8", "--format", "markdown")
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| Layer"))
    assert lines[header + 1].startswith("|---")
    assert any(line.startswith("| **Total**") and "**1,370**" in line for line in lines)


def test_explain_shows_derivations(capsys):
    code, out, _ = run(capsys, "alexnet", "--explain")
    assert code == 0
    assert "flatten 256×6×6 = 9,216" in out
    assert "params = (in + 1)·out = (9,216 + 1)·4,096 = 37,752,832" in out
    code, out, _ = run(capsys, "alexnet", "--explain", "--format", "json")
    rows = {r["name"]: r for r in json.loads(out)["layers"]}
    assert "H_out = W_out = ⌊(H_in + 2·p − k)/s⌋ + 1 = ⌊(224 + 2·2 − 11)/4⌋ + 1 = 55" in rows["0"]["explain"]


def test_input_overrides_the_declared_shape(capsys):
    code, out, _ = run(capsys, "lenet5", "--input", "1x36x36", "--format", "json")
    data = json.loads(out)
    assert code == 0 and data["input"] == [1, 36, 36]
    # 36 → conv 32 → pool 16 → conv 12 → pool 6: flatten gives 16·6·6 = 576 inputs instead of 400.
    assert data["total_params"] == 61_706 + (16 * 6 * 6 - 400) * 120


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_spec_files(tmp_path, capsys, suffix):
    spec = {"input": [1, 8, 8], "layers": cs.parse_text(TEXT).spec()["layers"]}
    path = tmp_path / f"net{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(spec))
    else:
        import yaml
        path.write_text(yaml.safe_dump(spec))
    code, out, _ = run(capsys, str(path), "--format", "json")
    assert code == 0 and json.loads(out)["total_params"] == TEXT_PARAMS


def test_checkpoint(tmp_path, capsys):
    from convscope.train.checkpoint import save_checkpoint
    model = cs.parse_text(TEXT).build((1, 8, 8), seed=0)
    path = save_checkpoint(tmp_path / "model.npz", model, input_shape=(1, 8, 8))
    code, out, _ = run(capsys, str(path), "--format", "json")
    data = json.loads(out)
    assert code == 0 and data["total_params"] == TEXT_PARAMS and data["input"] == [1, 8, 8]


def _bad_files(tmp_path):
    rng = np.random.default_rng(0)
    files = {}
    files["random.json"] = rng.integers(0, 256, 512, dtype=np.uint8).tobytes()
    files["broken.json"] = b'{"layers": [{"type": "conv2d", "out_channels": 8,'
    files["typo.json"] = json.dumps({"input": [1, 8, 8], "layers": [
        {"type": "conv2d", "out_channels": 8, "kernal_size": 3}]}).encode()
    files["unknown.json"] = json.dumps({"layers": [{"type": "conv2", "out_channels": 8}]}).encode()
    files["stride0.json"] = json.dumps({"input": [1, 8, 8], "layers": [
        {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "stride": 0}]}).encode()
    files["negative.json"] = json.dumps({"input": [1, 8, 8], "layers": [
        {"type": "conv2d", "out_channels": -8, "kernel_size": 3}]}).encode()
    files["fraction.json"] = json.dumps({"input": [1, 8, 8], "layers": [
        {"type": "conv2d", "out_channels": 8, "kernel_size": 2.5}]}).encode()
    files["list.json"] = b"[1, 2, 3]"
    files["broken.yaml"] = b"layers: [ {type: conv2d\n  - : :"
    files["random.npz"] = rng.integers(0, 256, 512, dtype=np.uint8).tobytes()
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return files


BAD_ARGUMENTS = [
    (["missing.json"], "no such file"),
    (["alexnett"], "did you mean 'alexnet'"),
    (["os.system('ls')"], "is not a layer call"),
    (["conv2d(8, 3).weight -> relu"], "is not a layer call"),
    (["conv2d(8, __import__('os'))"], "must be literals"),
    (["conv2d(8, 3) -> evil(1)"], "unknown layer type 'evil'"),
    (["conv2d(8, 3) -> reluu"], "did you mean 'relu'"),
    (["conv2d(8, 3)"], "does not say its input size"),
    (["conv2d(8, 3)", "--input", "3x224"], "conv2d expects a per-sample input"),
    (["alexnet", "--input", "3x2.5x224"], "--input must be positive integers"),  # 3xAx224: A is now a name (issue 15.8)
    (["alexnet", "--input", "3x0x224"], "--input sizes must be positive"),
    (["alexnet", "--input", "3x32x32"], "window"),
    (["conv2d(8, 3, stride=0)", "--input", "1x8x8"], "stride must be positive"),
    (["conv2d(8, 20)", "--input", "1x8x8"], "does not fit its padded input"),
]
BAD_FILES = [
    ("random.json", "is not a text spec"),
    ("broken.json", "is not valid JSON"),
    ("typo.json", "unknown key 'kernal_size' (did you mean 'kernel_size'?)"),
    ("unknown.json", "unknown layer type 'conv2' (did you mean 'conv2d'?)"),
    ("stride0.json", "stride must be positive"),
    ("negative.json", "out_channels must be a positive integer"),
    ("fraction.json", "kernel_size"),
    ("list.json", "layers"),
    ("broken.yaml", "is not valid YAML"),
    ("random.npz", "checkpoint"),
]


def _assert_one_line_error(code, out, err, needle):
    assert code == 2, err
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("convscope: error: "), err
    assert "Traceback" not in err
    assert needle in err, err


@pytest.mark.parametrize("argv,needle", BAD_ARGUMENTS)
def test_bad_arguments_give_one_line_and_exit_2(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    _assert_one_line_error(code, out, err, needle)


@pytest.mark.parametrize("name,needle", BAD_FILES)
def test_bad_files_give_one_line_and_exit_2(tmp_path, capsys, name, needle):
    _bad_files(tmp_path)
    code, out, err = run(capsys, str(tmp_path / name), "--input", "1x8x8")
    _assert_one_line_error(code, out, err, needle)


def test_text_form_is_never_evaluated(tmp_path, capsys):
    marker = tmp_path / "pwned"
    code, out, err = run(capsys, f"relu -> conv2d(open({str(marker)!r}, 'w'))", "--input", "1x8x8")
    _assert_one_line_error(code, out, err, "must be literals")
    assert not marker.exists()


def test_real_process_bad_input_and_piped_table(tmp_path):
    _bad_files(tmp_path)
    bad = subprocess.run([sys.executable, "-m", "convscope.cli", "summary", str(tmp_path / "random.json")],
                         capture_output=True, text=True, timeout=120)
    _assert_one_line_error(bad.returncode, bad.stdout, bad.stderr, "is not a text spec")
    good = subprocess.run([sys.executable, "-m", "convscope.cli", "summary", "lenet5"],
                          capture_output=True, text=True, timeout=120)
    assert good.returncode == 0 and "\x1b[" not in good.stdout  # piped: plain text, no colour codes
    assert "61,706" in good.stdout
