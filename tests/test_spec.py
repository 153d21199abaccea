"""Spec documents and the one-line text form: round trips, errors with paths, no evaluation."""
import json

import numpy as np
import pytest

import convscope as cs
from convscope.errors import ConvscopeError

SPEC = {"input": [3, 32, 32],
        "layers": [
            {"type": "conv2d", "out_channels": 8, "kernel_size": 5, "padding": 2},
            {"type": "relu"},
            {"type": "concat", "branches": [
                [{"type": "conv2d", "out_channels": 4, "kernel_size": 1}],
                [{"type": "maxpool2d", "kernel_size": 3, "stride": 1, "padding": 1}]]},
            {"type": "residual", "body": [{"type": "conv2d", "out_channels": 12, "kernel_size": 3, "padding": 1},
                                          {"type": "batchnorm2d"}]},
            {"type": "maxpool2d", "kernel_size": 2},
            {"type": "flatten"},
            {"type": "linear", "out_features": 10},
        ]}


def test_spec_round_trip_is_identity():
    model = cs.from_spec(SPEC)
    assert model.spec() == SPEC  # the contract: from_spec and model.spec() invert each other
    assert cs.spec.to_spec(model) == SPEC
    again = cs.from_spec(json.loads(json.dumps(cs.spec.to_spec(model))))
    assert cs.spec.to_spec(again) == SPEC


def test_spec_model_builds_and_names_follow_pytorch():
    model = cs.from_spec(SPEC).build(seed=0)
    names = [p.name for p in model.parameters()]
    # Concat at index 2 holds branches; residual at index 3 holds body; linear at index 6.
    assert "2.branches.0.0.weight" in names
    assert "3.body.0.weight" in names and "3.body.1.weight" in names
    assert names[-2:] == ["6.weight", "6.bias"]
    assert "3.body.1.running_mean" in model.state_dict()
    y = model.forward(np.zeros((2, 3, 32, 32), np.float32))
    assert y.shape == (2, 10)


def test_unknown_key_names_its_path_and_suggests():
    bad = json.loads(json.dumps(SPEC))
    bad["layers"][2]["branches"][1][0]["kernal_size"] = bad["layers"][2]["branches"][1][0].pop("kernel_size")
    with pytest.raises(ConvscopeError) as info:
        cs.from_spec(bad)
    # issue 15 point 5 deliberately adds the list of valid keys after the hint
    assert str(info.value) == ("layers[2].branches[1][0]: unknown key 'kernal_size' "
                               "(did you mean 'kernel_size'?); valid keys: kernel_size, stride, padding, "
                               "dilation, ceil_mode (see docs/spec.md)")  # a maxpool2d entry


def test_unknown_type_suggests():
    with pytest.raises(ConvscopeError, match=r"layers\[0\]: unknown layer type 'conv2' \(did you mean 'conv2d'"):
        cs.from_spec({"layers": [{"type": "conv2"}]})


def test_missing_required_argument():
    with pytest.raises(ConvscopeError, match=r"layers\[0\]: conv2d needs 'out_channels'"):
        cs.from_spec({"layers": [{"type": "conv2d", "kernel_size": 3}]})


def test_bad_values_are_errors_with_paths():
    with pytest.raises(ConvscopeError, match=r"layers\[0\]: .*kernel_size"):
        cs.from_spec({"layers": [{"type": "conv2d", "out_channels": 4, "kernel_size": -3}]})
    with pytest.raises(ConvscopeError, match="input"):
        cs.from_spec({"input": [3, 0, 32], "layers": []})
    with pytest.raises(ConvscopeError):
        cs.from_spec("not a spec")


def test_text_form_equals_spec():
    model = cs.parse_text("conv2d(32, 5, padding=2) -> relu -> maxpool2d(2) -> flatten -> linear(10)",
                          input_shape=(3, 32, 32))
    assert cs.spec.to_spec(model) == {
        "input": [3, 32, 32],
        "layers": [{"type": "conv2d", "out_channels": 32, "kernel_size": 5, "padding": 2}, {"type": "relu"},
                   {"type": "maxpool2d", "kernel_size": 2}, {"type": "flatten"},
                   {"type": "linear", "out_features": 10}]}
    # Seed 000: (3·5·5 + 1)·32 = 2,432 parameters in the conv layer.
    model.build()
    assert sum(p.size for p in model.parameters() if p.name.startswith("0.")) == 2432


@pytest.mark.parametrize("text", [
    "__import__('os').system('echo hacked')",
    "conv2d(__import__('os'))",
    "conv2d(8, 3).weight",
    "conv2d(8, open('x'))",
    "conv2d(8, 3 + 1)",
    "os.system('ls')",
    "lambda: 1",
    "conv2d(*[8, 3])",
])
def test_text_form_never_evaluates(text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConvscopeError):
        cs.parse_text(text)
    assert not (tmp_path / "x").exists()


def test_text_form_errors_are_one_line():
    for text in ["", "conv2d(8, 3) -> ", "conv2d(8, 3, 1, 0, 1, 1, True, 3, 99)", "relu(", "linnear(10)"]:
        with pytest.raises(ConvscopeError) as info:
            cs.parse_text(text)
        assert "\n" not in str(info.value)


def test_repr_shows_only_non_defaults():
    assert repr(cs.layers.Conv2d(32, 5, padding=2)) == "Conv2d(32, kernel_size=5, padding=2)"
    assert repr(cs.layers.ReLU()) == "ReLU()"


@pytest.mark.parametrize("shape", [(3, True, 8), (3, 8.0, 8), (3, float("inf"), 8), (), (3, 0, 8), "3x8x8"])
def test_build_rejects_shapes_that_are_not_positive_integers(shape):
    # Booleans and floats are not sizes, even when int() would accept them.
    with pytest.raises(ConvscopeError, match="positive integers"):
        cs.Sequential([cs.layers.ReLU()]).build(shape)
