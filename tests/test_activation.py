"""Activations, softmax and dropout: against torch.nn (float64, 1e-9), finite differences,
PyTorch's derivative at the kinks, and dropout's statistics."""
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import convscope as cs
from convscope.errors import ConvscopeError
from convscope.layers import Dropout, LeakyReLU, Linear, ReLU, ReLU6, Sigmoid, Softmax, Tanh
from convscope.ops.dropout import dropout_backward, dropout_forward
from oracle import assert_matches_torch

FAST = settings(max_examples=20, deadline=None)

PAIRS = {
    "relu": (ReLU, torch.nn.ReLU),
    "relu6": (ReLU6, torch.nn.ReLU6),
    "leaky_relu": (LeakyReLU, torch.nn.LeakyReLU),
    "leaky_relu_0.2": (lambda: LeakyReLU(0.2), lambda: torch.nn.LeakyReLU(0.2)),
    "sigmoid": (Sigmoid, torch.nn.Sigmoid),
    "tanh": (Tanh, torch.nn.Tanh),
    "softmax": (Softmax, lambda: torch.nn.Softmax(dim=1)),
}

shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)


@pytest.mark.parametrize("name", sorted(PAIRS))
@FAST
@given(shape=shapes, batch=st.integers(1, 3), scale=st.sampled_from([1.0, 5.0]), seed=st.integers(0, 2 ** 16))
def test_matches_torch(name, shape, batch, scale, seed):
    ours, theirs = PAIRS[name]
    # scale 5 pushes values past relu6's upper kink at 6 and into sigmoid/tanh saturation.
    x = scale * np.random.default_rng(seed).standard_normal((batch,) + shape)
    assert_matches_torch(ours(), theirs(), shape, batch=batch, seed=seed, x=x)


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_gradcheck(name):
    x = 3 * np.random.default_rng(2).standard_normal((2, 3, 4))
    x[np.abs(x) < 1e-3] = 0.5          # keep finite differences away from the kinks at 0 ...
    x[np.abs(x - 6) < 1e-3] = 5.5      # ... and relu6's at 6
    cs.gradcheck(PAIRS[name][0](), x)


@pytest.mark.parametrize("name", ["relu", "relu6", "leaky_relu"])
def test_gradient_at_the_kinks_is_pytorchs(name):
    # PyTorch: relu'(0) = 0, relu6'(0) = relu6'(6) = 0, leaky_relu'(0) = negative_slope.
    x = np.array([[0.0, -0.0, 6.0, -1.0, 1.0, 7.0]])
    ours, theirs = PAIRS[name]
    assert_matches_torch(ours(), theirs(), (6,), x=x, rtol=0, atol=0)
    layer = ours().build((6,), dtype=np.float64)
    layer.forward(x)
    expected = {"relu": [0, 0, 1, 0, 1, 1], "relu6": [0, 0, 0, 0, 1, 0],
                "leaky_relu": [0.01, 0.01, 1, 0.01, 1, 1]}[name]
    np.testing.assert_array_equal(layer.backward(np.ones_like(x))[0], expected)


def test_sigmoid_and_softmax_are_stable_for_huge_inputs():
    # sigmoid(±1000) = 1 and 0 without overflow warnings; softmax([1000, 1000, -1000]) = [½, ½, 0].
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = Sigmoid().build((3,), dtype=np.float64).forward(np.array([[-1000.0, 0.0, 1000.0]]))
        p = Softmax().build((3,), dtype=np.float64).forward(np.array([[1000.0, 1000.0, -1000.0]]))
    np.testing.assert_array_equal(s, [[0.0, 0.5, 1.0]])
    np.testing.assert_array_equal(p, [[0.5, 0.5, 0.0]])


@pytest.mark.parametrize("dim", [1, 2, 3, -1, -2])
def test_softmax_any_dim_matches_torch(dim):
    assert_matches_torch(Softmax(dim), torch.nn.Softmax(dim=dim), (3, 2, 4), batch=2, seed=dim + 10)


def test_softmax_rows_sum_to_one():
    y = Softmax().build((7,), dtype=np.float64).forward(np.random.default_rng(0).standard_normal((5, 7)))
    np.testing.assert_allclose(y.sum(axis=1), np.ones(5), rtol=0, atol=1e-15)


def test_softmax_dim_validation():
    with pytest.raises(ConvscopeError, match="mix the samples"):
        Softmax(0)
    with pytest.raises(ConvscopeError, match=r"softmax dim=3 is not an axis of a batch of shape \(N, 10\); choose an axis from 1 to 1"):
        Softmax(3).build((10,))
    with pytest.raises(ConvscopeError, match="dim must be an integer"):
        Softmax(1.0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "0.1", True])
def test_leaky_relu_slope_validation(bad):
    with pytest.raises(ConvscopeError, match="negative_slope"):
        LeakyReLU(bad)


def test_float32_stays_float32():
    for name, (ours, _) in PAIRS.items():
        layer = ours().build((3, 4))
        y = layer.forward(np.ones((2, 3, 4), dtype=np.float32))
        assert y.dtype == np.float32, name
        assert layer.backward(np.ones_like(y)).dtype == np.float32, name


def test_spec_entries():
    assert LeakyReLU(0.2).spec_entry() == {"type": "leaky_relu", "negative_slope": 0.2}
    assert Softmax(-1).spec_entry() == {"type": "softmax", "dim": -1}
    assert Dropout(0.25).spec_entry() == {"type": "dropout", "p": 0.25}
    assert ReLU().spec_entry() == {"type": "relu"} and Dropout().spec_entry() == {"type": "dropout"}
    text = cs.parse_text("relu -> relu6 -> leaky_relu(0.1) -> sigmoid -> tanh -> softmax(dim=-1) -> dropout(0.3)")
    assert [type(l) for l in text.layers] == [ReLU, ReLU6, LeakyReLU, Sigmoid, Tanh, Softmax, Dropout]


# ----- dropout ----------------------------------------------------------------------------------

def _dropout(p, shape=(1000,), seed=0):
    return Dropout(p).build(shape, seed=seed, dtype=np.float64)


def test_dropout_p0_is_identity_in_training():
    x = np.random.default_rng(0).standard_normal((3, 1000))
    layer = _dropout(0.0)
    np.testing.assert_array_equal(layer.forward(x, train=True), x)
    dy = np.random.default_rng(1).standard_normal(x.shape)
    np.testing.assert_array_equal(layer.backward(dy), dy)


def test_dropout_is_identity_at_inference():
    x = np.random.default_rng(0).standard_normal((3, 1000))
    layer = _dropout(0.5)
    np.testing.assert_array_equal(layer.forward(x, train=False), x)
    np.testing.assert_array_equal(layer.backward(2 * x), 2 * x)
    cs.gradcheck(_dropout(0.5, shape=(4,)), x[:, :4])  # inference path vs finite differences


def test_dropout_preserves_the_mean_in_training():
    # x = 1 everywhere, p = 0.5, n = 200,000 values: each y is 0 or 2, mean 1, variance 1,
    # so the sample mean has standard deviation 1/sqrt(n) ≈ 0.0022; allow 6σ = 0.0134.
    # The dropped fraction has σ = sqrt(p(1-p)/n) ≈ 0.0011; allow 6σ = 0.0067.
    n, p = 200_000, 0.5
    y = _dropout(p, shape=(n // 2,)).forward(np.ones((2, n // 2)), train=True)
    assert set(np.unique(y)) <= {0.0, 2.0}
    assert abs(y.mean() - 1.0) < 6 / np.sqrt(n)
    assert abs((y == 0).mean() - p) < 6 * np.sqrt(p * (1 - p) / n)


def test_dropout_backward_uses_forwards_mask_and_scale_exactly():
    p = 0.3
    rng = np.random.default_rng(5)
    x = rng.uniform(0.5, 1.5, size=(4, 1000))  # never 0, so y == 0 marks exactly the dropped values
    layer = _dropout(p)
    y = layer.forward(x, train=True)
    kept = y != 0
    assert 0 < kept.mean() < 1
    scale = 1.0 / (1.0 - p)
    np.testing.assert_array_equal(y, np.where(kept, x * scale, 0.0))
    dy = rng.standard_normal(x.shape)
    np.testing.assert_array_equal(layer.backward(dy), np.where(kept, dy * scale, 0.0))
    # The next forward draws a new mask.
    assert not np.array_equal(layer.forward(x, train=True) != 0, kept)


def test_dropout_same_seed_same_mask():
    x = np.ones((2, 1000))
    a = _dropout(0.5, seed=11).forward(x, train=True)
    b = _dropout(0.5, seed=11).forward(x, train=True)
    c = _dropout(0.5, seed=12).forward(x, train=True)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Inside a model too: the same build seed gives the same training outputs.
    outs = []
    for _ in range(2):
        model = cs.Sequential([Linear(50), Dropout(0.5), ReLU()]).build((8,), seed=3, dtype=np.float64)
        outs.append(model.forward(np.ones((2, 8)), train=True))
    np.testing.assert_array_equal(outs[0], outs[1])
    assert model.has_train_mode


def test_dropout_op_gradcheck_with_a_fixed_mask():
    # A fresh Generator with the same seed on every call gives the same mask, so the training
    # path is a fixed linear map that finite differences can check.
    x = np.random.default_rng(0).standard_normal((3, 5))

    def fn(a):
        return dropout_forward(a, 0.4, np.random.default_rng(9))[0]

    def grad(dy, a):
        return (dropout_backward(dy, dropout_forward(a, 0.4, np.random.default_rng(9))[1]),)

    cs.gradcheck(fn, [x], grad)


def test_dropout_p1_drops_everything_like_torch():
    x = np.random.default_rng(0).standard_normal((2, 6))
    layer = _dropout(1.0, shape=(6,))
    y = layer.forward(x, train=True)
    np.testing.assert_array_equal(y, torch.nn.functional.dropout(torch.from_numpy(x), p=1.0).numpy())
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), np.zeros_like(x))


@pytest.mark.parametrize("bad", [-0.1, 1.5, True, "0.5", float("nan")])
def test_dropout_p_validation(bad):
    with pytest.raises(ConvscopeError, match="between 0 and 1"):
        Dropout(bad)


def test_backward_before_forward_is_an_error():
    with pytest.raises(ConvscopeError, match="backward called before forward"):
        _dropout(0.5).backward(np.ones((1, 1000)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("compiled", [True, False])
def test_large_relu_with_nan_inf_and_signed_zeros_matches_torch(dtype, compiled, monkeypatch):
    # 2×8×40×40 = 25,600 values (> kernels.MIN_ELEMENTWISE): numba's one-pass forward and
    # select when installed, the NumPy passes otherwise. PyTorch: relu(NaN) = NaN and its
    # gradient passes; an inf gradient at an inactive position gives 0, not NaN (a select,
    # not a multiply); x = ±0 is inactive.
    from convscope.ops import activations, kernels
    if compiled:
        pytest.importorskip("numba")
        kernels.load()
    else:
        monkeypatch.setattr(kernels, "AVAILABLE", False)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 8, 40, 40)).astype(dtype)
    x.flat[::17] = np.nan
    x.flat[1::19] = 0.0
    x.flat[2::23] = -0.0
    x.flat[3::29] = -np.inf
    assert x.size >= kernels.MIN_ELEMENTWISE
    y, active = activations.relu_forward(x)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.relu(tx)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    dy = rng.standard_normal(x.shape).astype(dtype)
    dy.flat[::5] = np.inf
    ty.backward(torch.tensor(dy))
    np.testing.assert_array_equal(activations.relu_backward(dy, active), tx.grad.numpy())
