"""LocallyConnected2d (unshared convolution) against oracles: a PyTorch construction from
``unfold`` + ``einsum`` in float64 (1e-9), finite differences, the convolution it becomes when
every position holds the same filter, and seed 003's parameter count."""
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import convscope as cs
from convscope.ops.local import locally_connected2d_backward, locally_connected2d_forward
from convscope.shapes import resolve_padding

TOL = 1e-9


def torch_locally_connected(x, w, b, stride, pads):
    """Oracle: y[n, o, p] = Σ_k unfold(xpad)[n, k, p] · w[o, p, k] (+ b[o, p])."""
    (top, bottom), (left, right) = pads
    c_out, h_out, w_out = w.shape[:3]
    cols = F.unfold(F.pad(x, (left, right, top, bottom)), kernel_size=tuple(w.shape[4:]), stride=stride)
    y = torch.einsum("nkp,opk->nop", cols, w.reshape(c_out, h_out * w_out, -1))
    y = y.reshape(x.shape[0], c_out, h_out, w_out)
    return y + b if b is not None else y


def check_against_torch(layer, input_shape, batch, seed):
    rng = np.random.default_rng(seed)
    layer.build(input_shape, seed=seed, dtype=np.float64)
    x = rng.standard_normal((batch, *input_shape))
    y = layer.forward(x, train=True)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    params = {p.name: p for p in layer.parameters()}
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(params["weight"].value, requires_grad=True)
    tb = torch.tensor(params["bias"].value, requires_grad=True) if layer.bias else None
    pads = resolve_padding(layer.padding, layer.kernel_size, (1, 1))
    ty = torch_locally_connected(tx, tw, tb, layer.stride, pads)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=TOL, atol=TOL, err_msg="forward")
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=TOL, atol=TOL, err_msg="dL/dx")
    np.testing.assert_allclose(params["weight"].grad, tw.grad.numpy(), rtol=TOL, atol=TOL, err_msg="dL/dweight")
    if layer.bias:
        np.testing.assert_allclose(params["bias"].grad, tb.grad.numpy(), rtol=TOL, atol=TOL, err_msg="dL/dbias")
    else:
        assert set(params) == {"weight"}
    return y


@pytest.mark.parametrize("c_out, kernel, stride, padding, input_shape, batch, bias", [
    (3, 3, 1, 0, (2, 6, 5), 2, True),
    (2, (2, 3), (2, 1), 1, (3, 7, 6), 1, True),         # non-square kernel and stride, batch 1
    (4, 2, 3, 2, (1, 5, 5), 3, False),                  # stride > kernel, padding = kernel
    (2, 4, 1, "same", (2, 5, 4), 2, True),              # even kernel: 1 before, 2 after
    (3, 1, 2, 0, (2, 5, 5), 2, True),                   # 1×1 windows
])
def test_matches_torch_unfold_oracle(c_out, kernel, stride, padding, input_shape, batch, bias):
    layer = cs.layers.LocallyConnected2d(c_out, kernel, stride=stride, padding=padding, bias=bias)
    y = check_against_torch(layer, input_shape, batch, seed=5)
    assert y.shape == (batch, *layer.output_shape(input_shape))


@settings(max_examples=20, deadline=None)
@given(c_in=st.integers(1, 3), c_out=st.integers(1, 3), k=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       s=st.tuples(st.integers(1, 4), st.integers(1, 4)), p=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       extra=st.tuples(st.integers(0, 4), st.integers(0, 4)), batch=st.integers(1, 3),
       bias=st.booleans(), seed=st.integers(0, 2**16))
def test_matches_torch_random(c_in, c_out, k, s, p, extra, batch, bias, seed):
    spatial = tuple(max(1, kk - 2 * pp) + e for kk, pp, e in zip(k, p, extra))
    layer = cs.layers.LocallyConnected2d(c_out, list(k), stride=list(s), padding=list(p), bias=bias)
    check_against_torch(layer, (c_in, *spatial), batch, seed)


def test_equals_convolution_when_every_position_shares_one_filter():
    # Copy a conv filter and bias into every output position: the outputs and dx coincide,
    # and the conv's dW is the sum of the per-position dW (that is what sharing means).
    rng = np.random.default_rng(2)
    conv = cs.layers.Conv2d(3, 3, stride=2, padding=1).build((2, 7, 6), seed=1, dtype=np.float64)
    local = cs.layers.LocallyConnected2d(3, 3, stride=2, padding=1).build((2, 7, 6), dtype=np.float64)
    h_out, w_out = conv.output_shape((2, 7, 6))[1:]
    weight, bias = conv.state_dict()["weight"], conv.state_dict()["bias"]
    local.load_state_dict({
        "weight": np.broadcast_to(weight[:, None, None], (3, h_out, w_out, 2, 3, 3)).copy(),
        "bias": np.broadcast_to(bias[:, None, None], (3, h_out, w_out)).copy()})
    x = rng.standard_normal((2, 2, 7, 6))
    dy = rng.standard_normal((2, 3, h_out, w_out))
    np.testing.assert_allclose(local.forward(x), conv.forward(x), rtol=TOL, atol=TOL)
    np.testing.assert_allclose(local.backward(dy), conv.backward(dy), rtol=TOL, atol=TOL)
    grads = {p.name: p.grad for p in local.parameters()}
    conv_grads = {p.name: p.grad for p in conv.parameters()}
    np.testing.assert_allclose(grads["weight"].sum(axis=(1, 2)), conv_grads["weight"], rtol=TOL, atol=TOL)
    np.testing.assert_allclose(grads["bias"].sum(axis=(1, 2)), conv_grads["bias"], rtol=TOL, atol=TOL)


@pytest.mark.parametrize("layer, shape", [
    (cs.layers.LocallyConnected2d(2, 3, stride=2, padding=1), (2, 5, 4)),
    (cs.layers.LocallyConnected2d(3, (2, 1), bias=False), (1, 4, 3)),
])
def test_gradcheck(layer, shape):
    report = cs.gradcheck(layer, np.random.default_rng(0).standard_normal((2, *shape)))
    assert max(report.values()) < 1e-6


def test_seed003_parameter_count_without_sharing():
    # 55×55×96 outputs, each with 11×11×3 weights and 1 bias: 290,400 × 364 = 105,705,600,
    # against 96 × 364 = 34,944 when the 55×55 positions share (seed 003). Shapes only:
    # the weight would be 105,415,200 floats, so nothing is allocated here.
    local = cs.layers.LocallyConnected2d(96, 11, stride=4)
    shapes = local.param_shapes((3, 227, 227))
    assert shapes == {"weight": (96, 55, 55, 3, 11, 11), "bias": (96, 55, 55)}
    assert sum(int(np.prod(s)) for s in shapes.values()) == 105_705_600
    shared = cs.layers.Conv2d(96, 11, stride=4).param_shapes((3, 227, 227))
    assert sum(int(np.prod(s)) for s in shared.values()) == 34_944
    # MACs are the convolution's count: 96·55·55·3·11·11 = 105,415,200 either way.
    assert local.macs((3, 227, 227)) == cs.layers.Conv2d(96, 11, stride=4).macs((3, 227, 227)) == 105_415_200
    assert local.fan_in((3, 227, 227)) == 363
    assert local.window((3, 227, 227)) == ((11, 4, 0, 1), (11, 4, 0, 1))
    assert not local.built


def test_float32_stays_float32():
    layer = cs.layers.LocallyConnected2d(2, 3).build((2, 5, 5), seed=0, dtype=np.float32)
    y = layer.forward(np.ones((2, 2, 5, 5), np.float32), train=True)
    dx = layer.backward(np.ones_like(y))
    assert y.dtype == dx.dtype == np.float32
    assert all(p.grad.dtype == np.float32 for p in layer.parameters())
    w = np.ones((2, 3, 3, 2, 3, 3), np.float32)
    y2, cache = locally_connected2d_forward(np.ones((1, 2, 5, 5), np.float32), w)
    dx2, dw2, db2 = locally_connected2d_backward(np.ones_like(y2), cache)
    assert y2.dtype == dx2.dtype == dw2.dtype == np.float32 and db2 is None


def test_same_seed_same_weights():
    a = cs.layers.LocallyConnected2d(2, 3).build((1, 6, 6), seed=4).state_dict()
    b = cs.layers.LocallyConnected2d(2, 3).build((1, 6, 6), seed=4).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("make, message", [
    (lambda: cs.layers.LocallyConnected2d(0, 3), "out_channels must be a positive integer, got 0"),
    (lambda: cs.layers.LocallyConnected2d(2, -3), "kernel_size must be positive, got -3"),
    (lambda: cs.layers.LocallyConnected2d(2, 3, stride=2, padding="same"), "padding='same' needs stride 1"),
    (lambda: cs.layers.LocallyConnected2d(2, 3).output_shape((3, 2, 9)),
     "spans 3 along height but the padded input has only 2 (2 + padding 0 + 0), 1 too many"),
    (lambda: cs.layers.LocallyConnected2d(2, 3, in_channels=1).output_shape((3, 9, 9)),
     "in_channels=1 but the input 3×9×9 has 3 channels"),
])
def test_errors(make, message):
    with pytest.raises(cs.ConvscopeError, match=re.escape(message)):
        make()


def test_input_must_keep_the_built_size():
    # Unshared weights exist per output position, so a different spatial size cannot run.
    layer = cs.layers.LocallyConnected2d(2, 3).build((1, 6, 6))
    with pytest.raises(cs.ConvscopeError, match=re.escape("built for inputs of shape 1×6×6, got 1×7×7")):
        layer.forward(np.ones((1, 1, 7, 7), np.float32))
    with pytest.raises(cs.ConvscopeError, match="floating-point"):
        layer.forward(np.ones((1, 1, 6, 6), dtype=np.int32))
