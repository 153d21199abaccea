"""Hostile specs: YAML alias bombs, nesting, oversized documents, layer counts, the text form,
non-finite and huge numbers, markup in names. Each is one line and exit 2, the folder untouched.
Expected messages name the budget (limits.*) that refused them."""
from __future__ import annotations

import json

import pytest

from convscope.cli import main

from conftest import fails


def laughs(levels: int, fan: int) -> str:
    """A 'billion laughs' YAML: each anchor holds ``fan`` aliases of the previous one."""
    lines = ["a0: &a0 [{type: relu}]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fan) + "]")
    lines.append(f"layers: *a{levels}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("levels, fan", [(6, 10), (9, 10), (20, 2), (40, 2), (3, 100), (2, 1000)])
def test_yaml_alias_bombs(tmp_path, capsys, levels, fan):
    # 6 levels of 10 expand to 10**6 layers from 595 bytes (3.9 GB and 103 s before); 9 levels to 10**9.
    path = tmp_path / "laughs.yaml"
    path.write_text(laughs(levels, fan))
    line = fails(capsys, tmp_path, "summary", path, "--input", "4")
    assert "limits.MAX_YAML_NODES" in line or "limits.MAX_YAML_ALIASES" in line


def test_a_few_yaml_aliases_are_fine(tmp_path, capsys):
    path = tmp_path / "shared.yaml"
    path.write_text("notes: {block: &b {type: sequential, layers: [{type: linear, out_features: 4}, {type: relu}]}}\n"
                    "layers: [*b, *b]\n")
    assert main(["summary", str(path), "--input", "4", "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["layers"]) == 6  # two sequentials of two layers


@pytest.mark.parametrize("count", [10_001, 100_000])
def test_too_many_layers(tmp_path, capsys, count):
    path = tmp_path / "many.json"
    path.write_text(json.dumps({"input": [4], "layers": [{"type": "relu"}] * count}))
    assert "limits.MAX_LAYERS" in fails(capsys, tmp_path, "summary", path)


def test_sixteen_megabyte_spec_is_refused_by_size(tmp_path, capsys):
    path = tmp_path / "huge.json"
    path.write_text('{"layers": [' + ", ".join(['{"type": "relu"}'] * 1_100_000) + "]}")
    assert "limits.MAX_SPEC_BYTES" in fails(capsys, tmp_path, "summary", path, "--input", "4")


@pytest.mark.parametrize("depth", [65, 500, 5_000, 200_000])
@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_deeply_nested_specs(tmp_path, capsys, depth, suffix):
    path = tmp_path / f"deep{suffix}"
    path.write_text('{"layers": [' + '{"type": "sequential", "layers": [' * depth + "]}" * depth + "]}")
    assert "limits.MAX_SPEC_DEPTH" in fails(capsys, tmp_path, "summary", path, "--input", "4")


@pytest.mark.parametrize("entry, words", [
    ('{"type": "batchnorm2d", "eps": Infinity}', "eps must be a positive number"),
    ('{"type": "batchnorm2d", "eps": NaN}', "eps must be a positive number"),
    ('{"type": "batchnorm2d", "momentum": NaN}', "momentum must be a number"),
    ('{"type": "batchnorm2d", "momentum": Infinity}', "momentum must be a number"),
    ('{"type": "leaky_relu", "negative_slope": -Infinity}', "negative_slope must be a finite number"),
    ('{"type": "dropout", "p": NaN}', "p"),
    ('{"type": "local_response_norm", "size": 2, "alpha": Infinity}', "alpha must be a finite number"),
    ('{"type": "local_response_norm", "size": 2, "k": NaN}', "k must be a positive number"),
    ('{"type": "conv2d", "out_channels": 1e30, "kernel_size": 3}', "out_channels"),
    ('{"type": "conv2d", "out_channels": 4, "kernel_size": 1e400}', "kernel_size"),
    ('{"type": "linear", "out_features": -1}', "out_features"),
    ('{"type": "linear", "out_features": true}', "out_features"),
    ('{"type": "linear", "out_features": "10"}', "out_features"),
    ('{"type": "nope"}', "unknown layer type"),
    ('{"type": ["relu"]}', "unknown layer type"),
    ('{"type": "relu", "inplace": true}', "unknown key"),
    ('"relu"', "expected an object"),
    ('{"type": "concat", "branches": []}', "non-empty list"),
    ('{"type": "residual"}', "needs a 'body'"),
])
def test_bad_layer_entries(tmp_path, capsys, entry, words):
    path = tmp_path / "spec.json"
    path.write_text('{"input": [3, 8, 8], "layers": [' + entry + "]}")
    for command in (["summary", path], ["show", "architecture", path, "-o", tmp_path / "a.svg"]):
        assert words in fails(capsys, tmp_path, *command)


@pytest.mark.parametrize("channels", ["10**30", "2**62", "10**12"])
def test_huge_channel_counts_in_train(tmp_path, capsys, channels):
    # out_channels 10**30 reached NumPy ("Maximum allowed dimension exceeded") in train.
    spec = tmp_path / "huge.json"
    spec.write_text('{"layers": [{"type": "conv2d", "out_channels": ' + str(eval(channels)) +
                    ', "kernel_size": 3}, {"type": "flatten"}, {"type": "linear", "out_features": 10}]}')
    assert "limits.MAX_TENSOR_VALUES" in fails(capsys, tmp_path, "train", spec, "--out", tmp_path / "run",
                                               "--epochs", "1", "--quiet")


@pytest.mark.parametrize("text, words", [
    ("relu(" + "+".join(["1"] * 30_000) + ")", "limits.MAX_TEXT_FORM_CHARS"),
    ("relu(" + "-" * 100_000 + "1)", "limits.MAX_TEXT_FORM_CHARS"),
    ("relu(" + "-" * 5_000 + "1)", "nested too deeply|literals"),
    ("relu(" + "+".join(["1"] * 3_000) + ")", "literals"),
    ("linear(" + "(" * 3000 + "1" + ")" * 3000 + ")", "nested too deeply|literals|not a layer call"),
    ("conv2d(8, 3) -> " * 2000 + "relu", "limits.MAX_TEXT_FORM_CHARS"),
    ("linear(__import__('os').system('touch PWNED'))", "literals"),
    ("linear(10, **{'a': 1})", "not allowed"),
    ("linear(10)[0]", "not a layer call"),
    ("lambda: 1", "unknown model"),
])
def test_hostile_text_forms(tmp_path, capsys, text, words):
    line = fails(capsys, tmp_path, "summary", text, "--input", "4")
    assert any(word in line for word in words.split("|")), line


@pytest.mark.parametrize("name", ["[/y].json", "[bold red]x[/].json", "[link=file:///etc/passwd]a[/link].json"])
def test_rich_markup_in_spec_names(tmp_path, capsys, monkeypatch, name):
    path = tmp_path / name  # "[/y].json" is the file "y].json" in a folder named "["
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"input": [4], "layers": [{"type": "relu"}]}')
    monkeypatch.chdir(tmp_path)
    assert main(["summary", name]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and name in captured.out


def test_a_spec_that_holds_itself_from_python():
    import convscope as cs

    spec = {"layers": []}
    spec["layers"].append(spec)
    with pytest.raises(cs.ConvscopeError, match="limits.MAX_SPEC_DEPTH"):
        cs.from_spec(spec)


@pytest.mark.parametrize("content", [b"\xff\xfe\x00\x00garbage", b"{\"layers\": [\x00]}", b"PK\x03\x04junk"])
def test_binary_spec_files(tmp_path, capsys, content):
    path = tmp_path / "spec.json"
    path.write_bytes(content)
    fails(capsys, tmp_path, "summary", path, "--input", "4")
