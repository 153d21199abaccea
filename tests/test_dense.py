"""Linear: against torch.nn.Linear (float64, 1e-9), finite differences, and seed 004's
AlexNet numbers (256×6×6 = 9,216 inputs -> 4,096 outputs)."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import convscope as cs
from convscope.errors import ConvscopeError
from convscope.layers import Flatten, Linear, ReLU
from convscope.ops.linear import linear_backward, linear_forward
from oracle import assert_matches_torch

FAST = settings(max_examples=25, deadline=None)


@FAST
@given(batch=st.integers(1, 3), n_in=st.integers(1, 7), n_out=st.integers(1, 6), bias=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_linear_matches_torch(batch, n_in, n_out, bias, seed):
    layer = Linear(n_out, bias=bias)
    assert_matches_torch(layer, torch.nn.Linear(n_in, n_out, bias=bias), (n_in,), batch=batch, seed=seed)


@FAST
@given(batch=st.integers(1, 3), lead=st.lists(st.integers(1, 3), min_size=1, max_size=2),
       n_in=st.integers(1, 5), n_out=st.integers(1, 4), seed=st.integers(0, 2 ** 16))
def test_linear_with_extra_leading_axes_matches_torch(batch, lead, n_in, n_out, seed):
    # PyTorch applies nn.Linear to every leading position of (N, *, in); dW and db sum over them.
    shape = tuple(lead) + (n_in,)
    layer = Linear(n_out, in_features=n_in)
    assert_matches_torch(layer, torch.nn.Linear(n_in, n_out), shape, batch=batch, seed=seed)


@pytest.mark.parametrize("shape,bias", [((5,), True), ((5,), False), ((2, 3, 4), True)])
def test_linear_gradcheck(shape, bias):
    layer = Linear(3, bias=bias, in_features=shape[-1])
    x = np.random.default_rng(1).standard_normal((2,) + shape)
    report = cs.gradcheck(layer, x)
    assert set(report) == {"x", "weight"} | ({"bias"} if bias else set())


def test_linear_ops_by_hand():
    # x = [1, 2], W = [[1, 0], [0.5, -1]], b = [0.1, 0.2]: y = [1.1, 0.5 - 2 + 0.2] = [1.1, -1.3].
    x = np.array([[1.0, 2.0]])
    w = np.array([[1.0, 0.0], [0.5, -1.0]])
    b = np.array([0.1, 0.2])
    y, cache = linear_forward(x, w, b)
    np.testing.assert_allclose(y, [[1.1, -1.3]], rtol=0, atol=1e-15)
    dx, dw, db = linear_backward(np.array([[1.0, 2.0]]), cache)
    # dx = dy·W = [1 + 1, 0 - 2]; dW = dyᵀ·x = [[1, 2], [2, 4]]; db = dy.
    np.testing.assert_allclose(dx, [[2.0, -2.0]])
    np.testing.assert_allclose(dw, [[1.0, 2.0], [2.0, 4.0]])
    np.testing.assert_allclose(db, [1.0, 2.0])


def test_seed_004_alexnet_fc6_parameter_count():
    # Seed 004: the 256×6×6 pooled map flattens to 9,216; fc6 holds (9,216 + 1)·4,096 = 37,752,832.
    flat = Flatten().output_shape((256, 6, 6))
    assert flat == (9216,)
    fc6 = Linear(4096)
    shapes = fc6.param_shapes(flat)
    assert shapes == {"weight": (4096, 9216), "bias": (4096,)}
    weights, biases = 4096 * 9216, 4096
    assert (weights, biases) == (37_748_736, 4_096)
    assert sum(int(np.prod(s)) for s in shapes.values()) == (9216 + 1) * 4096 == 37_752_832
    assert fc6.macs(flat) == 9216 * 4096 == 37_748_736
    assert fc6.fan_in(flat) == 9216
    assert fc6.output_shape(flat) == (4096,)
    assert fc6.window(flat) == "global"


def test_seed_004_error_reads_as_in_design():
    # DESIGN.md: "linear expects 43,264 inputs, got 9,216" (256×13×13 expected, 256×6×6 given).
    with pytest.raises(ConvscopeError) as info:
        Linear(4096, in_features=43264).output_shape((9216,))
    message = str(info.value)
    assert message.startswith("linear expects 43,264 inputs, got 9,216")
    assert "\n" not in message
    # Inside a model the error names the layer and is raised before any weight is allocated.
    model = cs.Sequential([Flatten(), Linear(4096, in_features=43264)])
    with pytest.raises(ConvscopeError, match="linear expects 43,264 inputs, got 9,216"):
        model.build((256, 6, 6))
    assert not model.layers[1]._params


def test_unflattened_input_suggests_flatten():
    # in_features matches 256·6·6 = 9,216 but the input was not flattened.
    with pytest.raises(ConvscopeError, match="add flatten before linear") as info:
        Linear(4096, in_features=9216).output_shape((256, 6, 6))
    assert "256×6×6" in str(info.value)
    # Wrong size AND not flattened: still the DESIGN wording, plus the flatten hint.
    with pytest.raises(ConvscopeError, match="linear expects 43,264 inputs, got 9,216.*add flatten"):
        Linear(4096, in_features=43264).output_shape((256, 6, 6))
    # Inferring in_features from a feature map is the forgotten-flatten mistake.
    with pytest.raises(ConvscopeError, match="add flatten before linear to use all 9,216 values"):
        cs.Sequential([Linear(4096)]).build((256, 6, 6))


def test_in_features_inferred_and_rebuild_needed_for_new_size():
    layer = Linear(3).build((5,), dtype=np.float64)
    assert layer._params["weight"].shape == (3, 5)
    assert layer.in_features is None  # the spec stays as written: "linear(3)"
    assert layer.spec_entry() == {"type": "linear", "out_features": 3}
    with pytest.raises(ConvscopeError, match="linear expects 5 inputs .* got 4"):
        layer.forward(np.ones((2, 4)))


def test_default_init_bound_is_one_over_sqrt_fan_in():
    # PyTorch's default: U(±1/sqrt(in)); with in = 400 the bound is 0.05, and among 20,000
    # uniform draws the largest |w| lies within 0.1 % of it (P(miss) ≈ e^-20).
    layer = Linear(50).build((400,), seed=3, dtype=np.float64)
    for p in layer.parameters():
        assert np.abs(p.value).max() <= 0.05
    assert np.abs(layer._params["weight"].value).max() > 0.05 * 0.999


def test_macs_and_window_with_leading_axes():
    # (3, 2, 4) input, 4 -> 5: 3·2 rows × 4·5 = 120 MACs; last axis mixed whole, H position-wise.
    layer = Linear(5, in_features=4)
    assert layer.macs((3, 2, 4)) == 120
    assert layer.output_shape((3, 2, 4)) == (3, 2, 5)
    assert layer.window((3, 2, 4)) == ((1, 1, 0, 1), (4, 1, 0, 1))


@pytest.mark.parametrize("kwargs,match", [
    ({"out_features": 0}, "out_features must be a positive integer"),
    ({"out_features": 2.5}, "out_features must be a positive integer"),
    ({"out_features": True}, "out_features must be a positive integer"),
    ({"out_features": 3, "bias": "yes"}, "bias must be True or False"),
    ({"out_features": 3, "in_features": -1}, "in_features must be a positive integer"),
])
def test_constructor_validation(kwargs, match):
    with pytest.raises(ConvscopeError, match=match):
        Linear(**kwargs)


def test_spec_round_trip():
    layer = Linear(10, bias=False, in_features=20)
    entry = layer.spec_entry()
    assert entry == {"type": "linear", "out_features": 10, "bias": False, "in_features": 20}
    again = cs.from_spec([entry]).layers[0]
    assert (again.out_features, again.bias, again.in_features) == (10, False, 20)
    assert repr(layer) == "Linear(10, bias=False, in_features=20)"


def test_float32_stays_float32():
    layer = Linear(3).build((4,), seed=0)
    y = layer.forward(np.ones((2, 4), dtype=np.float32), train=True)
    dx = layer.backward(np.ones_like(y))
    assert y.dtype == dx.dtype == layer._params["weight"].grad.dtype == np.float32


def test_sequential_linear_relu_linear_matches_torch():
    # End to end: names follow PyTorch's nn.Sequential, ReLU keeps its index 1.
    model = cs.Sequential([Linear(8), ReLU(), Linear(3)])
    model.build((5,), seed=4, dtype=np.float64)
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    for batch in (1, 4):  # a fresh torch module each time: torch accumulates .grad
        torch_model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        assert_matches_torch(model, torch_model, (5,), batch=batch, seed=batch)
