"""The Python API under misuse: each mistake is a ConvscopeError naming the parameter or input
(never AttributeError, numpy's ValueError or a silent broadcast)."""
from __future__ import annotations

import numpy as np
import pytest

import convscope as cs
from convscope.train import fit


def built():
    model = cs.parse_text("conv2d(2, 3) -> relu -> flatten -> linear(3)")
    return model.build((1, 5, 5), seed=0)


def test_training_forward_on_an_empty_batch():
    model = built()
    with pytest.raises(cs.ConvscopeError, match="empty batch"):
        model.forward(np.zeros((0, 1, 5, 5), np.float32), train=True)
    assert model.forward(np.zeros((0, 1, 5, 5), np.float32)).shape == (0, 3)  # inference on nothing is fine


@pytest.mark.parametrize("replacement", [np.zeros(1, np.float32), np.zeros((2, 1), np.float32),
                                         np.zeros(2, np.complex64), np.zeros(2, np.int64), "ab"])
def test_replacing_a_parameter_with_another_shape_or_dtype(replacement):
    # A bias replaced by shape (1,) broadcast silently; an optimizer step then raised numpy's ValueError.
    bias = built().parameters()[1]
    with pytest.raises(cs.ConvscopeError, match="'0.bias' must stay"):
        bias.value = replacement


def test_replacing_a_parameter_with_an_equal_shape_works():
    model = built()
    model.parameters()[1].value = np.ones(2, np.float32)
    assert model.state_dict()["0.bias"].tolist() == [1.0, 1.0]


@pytest.mark.parametrize("dtype", ["U1", "S1", object, np.complex128])
def test_load_state_dict_with_non_numbers(dtype):
    model = built()
    state = {k: np.zeros(v.shape, dtype=dtype) for k, v in model.state_dict().items()}
    with pytest.raises(cs.ConvscopeError, match="state dict entry '0.weight' holds"):
        model.load_state_dict(state)


@pytest.mark.parametrize("x, y", [([[[1.0, 2.0]], [[1.0]]], [0, 1]), ([[1, 2], [3]], [0, 1])])
def test_fit_with_ragged_lists(x, y):
    with pytest.raises(cs.ConvscopeError, match="ragged"):
        fit(None, (x, y), epochs=1, progress=False)


@pytest.mark.parametrize("build", [lambda s: s["layers"].append(s),
                                   lambda s: s["layers"].append({"type": "sequential", "layers": s["layers"]})])
def test_self_referencing_specs(build):
    spec = {"layers": [{"type": "relu"}]}
    build(spec)
    with pytest.raises(cs.ConvscopeError, match="limits.MAX_SPEC_DEPTH"):
        cs.from_spec(spec)


@pytest.mark.parametrize("layer, words", [
    (lambda: cs.layers.BatchNorm2d(eps=float("inf")), "eps"),
    (lambda: cs.layers.BatchNorm2d(eps=float("nan")), "eps"),
    (lambda: cs.layers.BatchNorm2d(momentum=float("nan")), "momentum"),
    (lambda: cs.layers.LocalResponseNorm(2, alpha=float("inf")), "alpha"),
    (lambda: cs.layers.LocalResponseNorm(2, beta=float("-inf")), "beta"),
    (lambda: cs.layers.LeakyReLU(float("nan")), "negative_slope"),
])
def test_non_finite_constructor_arguments(layer, words):
    with pytest.raises(cs.ConvscopeError, match=words):
        layer()


def test_huge_layer_is_refused_before_allocating():
    model = cs.parse_text("flatten -> linear(100000000000)")
    with pytest.raises(cs.ConvscopeError, match="limits.MAX_TENSOR_VALUES"):
        model.build((64,))
