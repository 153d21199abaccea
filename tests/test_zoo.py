"""The zoo: published totals exactly, published MACs within 1 %, specs that build and run.

Oracles: torchvision's model cards (parameters exact; "GFLOPS", which are multiply-
accumulates, within 1 %) and LeNet-5's common modern form, counted by hand:
(1·5·5 + 1)·6 + (6·5·5 + 1)·16 + (400 + 1)·120 + (120 + 1)·84 + (84 + 1)·10 = 61,706.
"""
import numpy as np
import pytest

import convscope as cs
from convscope.errors import ConvscopeError

# name: (input, total parameters, GMACs) as published by torchvision's model cards.
PUBLISHED = {
    "alexnet": ((3, 224, 224), 61_100_840, 0.714),
    "vgg16": ((3, 224, 224), 138_357_544, 15.47),
    "googlenet": ((3, 224, 224), 6_624_904, 1.50),
    "resnet18": ((3, 224, 224), 11_689_512, 1.81),
}


def test_names_lists_the_required_architectures():
    assert set(cs.zoo.names()) >= {"lenet5", "alexnet", "vgg16", "googlenet", "resnet18"}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_totals_equal_torchvision_and_macs_within_one_percent(name):
    shape, params, gmacs = PUBLISHED[name]
    spec = cs.zoo.spec(name)
    assert tuple(spec["input"]) == shape and "torchvision" in spec["source"]
    report = cs.analyze(cs.zoo.load(name))
    assert report.input == shape
    assert report.total_params == params
    assert report.output == (1000,)
    assert abs(report.total_macs / 1e9 - gmacs) <= 0.01 * gmacs


def test_lenet5_modern_form_has_61706_parameters_and_runs():
    spec = cs.zoo.spec("lenet5")
    assert spec["input"] == [1, 32, 32] and "LeCun" in spec["source"] and "61,706" in spec["source"]
    model = cs.zoo.load("lenet5").build(seed=0)
    assert sum(p.size for p in model.parameters()) == 61_706
    y = model.forward(np.zeros((2, 1, 32, 32), np.float32))
    assert y.shape == (2, 10)
    report = cs.analyze(model)
    assert [r.output_shape for r in report.layers if r.type == "maxpool2d"] == [(6, 14, 14), (16, 5, 5)]


def test_resnet18_built_parameters_equal_the_analysis():
    model = cs.zoo.load("resnet18").build(seed=0)
    assert sum(p.size for p in model.parameters()) == 11_689_512
    # Running statistics are buffers, not parameters (torchvision's count excludes them too).
    assert any(name.endswith("running_mean") for name, _ in model.named_buffers())
    report = cs.analyze(model)
    downsample = report.row("8.shortcut.0")  # layer2's first block: conv1x1, stride 2
    assert downsample.param_shapes["weight"] == (128, 64, 1, 1) and downsample.output_shape == (128, 28, 28)
    # The last residual stage sees 435×435 input pixels (the commonly quoted ResNet-18 field).
    assert report.row("19").field.size == (435, 435)


def test_googlenet_follows_torchvision_basicconv_and_branches():
    spec = cs.zoo.spec("googlenet")
    first_conv, first_bn = spec["layers"][0], spec["layers"][1]
    assert first_conv["bias"] is False and first_bn["eps"] == 0.001
    report = cs.analyze(cs.zoo.load("googlenet"))
    inception_3a = report.row("11")
    assert inception_3a.type == "concat" and inception_3a.output_shape == (256, 28, 28)
    assert report.row("11.branches.2.3").param_shapes["weight"] == (32, 16, 3, 3)  # the "5×5" is 3×3
    assert report.row("11.branches.3.0").type == "maxpool2d"
    assert not any(r.type == "linear" for r in report.layers[:-1])  # no auxiliary heads


def test_spec_returns_a_fresh_copy_and_load_is_unbuilt():
    spec = cs.zoo.spec("alexnet")
    spec["layers"].clear()
    assert cs.zoo.spec("alexnet")["layers"]
    model = cs.zoo.load("alexnet")
    assert not model.built and model.declared_input == (3, 224, 224)


def test_unknown_name_suggests():
    with pytest.raises(ConvscopeError, match=r"unknown zoo model 'resnet19' \(did you mean 'resnet18'\?\)"):
        cs.zoo.spec("resnet19")


def test_alexnet2012_is_the_papers_network_with_the_seeds_numbers():
    """Krizhevsky et al. 2012 as seeds 003 (CS231n's parameter sharing) and 004 (the 9,216 -> 4,096
    layer) count it: conv1 (3·11·11 + 1)·96 = 34,944 (34,848 weights + 96 biases), 105,705,600
    without sharing (55·55·96 = 290,400 neurons × 364); 256×13×13 -> maxpool 3/2 -> 256×6×6 =
    9,216 -> 4,096 with (9,216 + 1)·4,096 = 37,752,832; total 60,965,224 (the per-layer sum in the
    module docstring)."""
    spec = cs.zoo.spec("alexnet2012")
    assert spec["input"] == [3, 227, 227] and "Krizhevsky" in spec["source"] and "2012" in spec["source"]
    assert "64 filters" in spec["source"] and "no LRN" in spec["source"]  # how torchvision's differs
    report = cs.analyze(cs.zoo.load("alexnet2012"))
    assert report.total_params == 60_965_224 and report.output == (1000,)
    conv1 = report.row("0")
    assert (conv1.output_shape, conv1.weights, conv1.biases, conv1.params) == ((96, 55, 55), 34_848, 96, 34_944)
    assert [r.type for r in report.layers[1:4]] == ["relu", "local_response_norm", "maxpool2d"]
    assert [report.row(i).layer.groups for i in ("4", "8", "10", "12")] == [2, 1, 2, 2]
    assert report.row("4").weights == 256 * 48 * 5 * 5  # each conv2 filter sees its own GPU's 48 channels
    assert report.row("12").output_shape == (256, 13, 13) and report.row("14").output_shape == (256, 6, 6)
    fc6 = report.row("17")
    assert fc6.input_shape == (9216,) and fc6.output_shape == (4096,) and fc6.params == 37_752_832


def test_alexnet2012_explain_shows_seeds_003_and_004(capsys):
    from convscope.cli import main
    assert main(["summary", "alexnet2012", "--explain"]) == 0
    out = capsys.readouterr().out
    assert "weights = C_out·C_in·k_h·k_w = 96·3·11·11 = 34,848" in out
    assert "params = (C_in·k_h·k_w + 1)·C_out = (3·11·11 + 1)·96 = 34,944" in out
    assert "= 290,400·364 = 105,705,600" in out  # seed 003: without parameter sharing
    assert "flatten 256×6×6 = 9,216" in out  # seed 004
    assert "params = (in + 1)·out = (9,216 + 1)·4,096 = 37,752,832" in out
