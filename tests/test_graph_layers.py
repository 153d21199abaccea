"""Merge and shape layers against PyTorch (float64, hypothesis-randomised shapes) and
against finite differences. Each case compares forward, and the gradient of every input for
a random upstream gradient, to 1e-12 (these layers only move, add, multiply or average)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import convscope as cs  # noqa: E402
from convscope import layers as L  # noqa: E402
from convscope.errors import ConvscopeError  # noqa: E402

TOL = 1e-12
SETTINGS = settings(max_examples=25, deadline=None)


def run_multi(layer, arrays, seed=0):
    """Our forward and input gradients for a merge layer, and torch's for ``fn``."""
    layer._build_multi([a.shape[1:] for a in arrays], None, np.float64)
    y = layer.forward_multi(arrays, train=True)
    dy = np.random.default_rng(seed).standard_normal(y.shape)
    return y, dy, layer.backward_multi(dy)


def torch_grads(fn, arrays, dy):
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*ts)
    out.backward(torch.from_numpy(dy))
    return out.detach().numpy(), [t.grad.numpy() for t in ts]


def check_multi(layer, fn, arrays):
    y, dy, dxs = run_multi(layer, arrays)
    ty, tdx = torch_grads(fn, arrays, dy)
    np.testing.assert_allclose(y, ty, rtol=TOL, atol=TOL)
    for ours, theirs in zip(dxs, tdx):
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=TOL, atol=TOL)


def check_single(layer, fn, x):
    layer.build(x.shape[1:], dtype=np.float64)
    y = layer.forward(x, train=True)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    dx = layer.backward(dy)
    ty, (tdx,) = torch_grads(fn, [x], dy)
    np.testing.assert_allclose(y, ty, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(dx, tdx, rtol=TOL, atol=TOL)
    cs.gradcheck(layer, x)


def broadcastable(draw, shape):
    """A shape that broadcasts against ``shape``: some axes set to 1, maybe fewer leading axes."""
    drop = draw(st.integers(0, len(shape) - 1))
    out = [1 if draw(st.booleans()) else n for n in shape[drop:]]
    return tuple(out)


@st.composite
def broadcast_pair(draw):
    batch = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    other = broadcastable(draw, shape)
    rng = np.random.default_rng(draw(st.integers(0, 99)))
    a = rng.standard_normal((batch,) + shape)
    b = rng.standard_normal((batch,) + other) if len(other) == len(shape) else rng.standard_normal(other)
    swap = draw(st.booleans())
    return (b, a) if swap and b.ndim == a.ndim else (a, b)


@SETTINGS
@given(broadcast_pair())
def test_add_and_mul_broadcast_like_torch(pair):
    """The gradient of a broadcast input is dL/dy summed over the stretched axes."""
    a, b = pair
    if b.ndim != a.ndim:  # the per-sample layers keep the batch axis on every input
        b = b.reshape((1,) * (a.ndim - b.ndim) + b.shape).repeat(a.shape[0], axis=0)
    check_multi(L.Add(), lambda x, y: x + y, [a, b])
    check_multi(L.Mul(), lambda x, y: x * y, [a, b])


def test_mul_gate_times_feature_map():
    """The squeeze-and-excitation case: an N×C×1×1 gate times N×C×H×W; the gate's gradient is
    Σ_{h,w} dy·x per channel."""
    rng = np.random.default_rng(0)
    x, gate = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 1, 1))
    _, dy, (dx, dgate) = run_multi(L.Mul(), [x, gate])
    np.testing.assert_allclose(dgate, (dy * x).sum(axis=(2, 3), keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(dx, dy * gate, rtol=1e-12)


def test_add_three_inputs_with_repeats():
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal((2, 3, 2)) for _ in range(3)]
    check_multi(L.Add(), lambda a, b, c: a + b + c, xs)
    check_multi(L.Mul(), lambda a, b, c: a * b * c, xs)


@SETTINGS
@given(st.integers(1, 3), st.lists(st.integers(1, 4), min_size=2, max_size=4), st.integers(-3, 3),
       st.integers(0, 99))
def test_cat_like_torch(batch, sizes, dim, seed):
    rank = 3  # per-sample (C, H, W)
    if dim == 0:
        dim = 1
    axis = dim + rank + 1 if dim < 0 else dim
    rng = np.random.default_rng(seed)
    base = [3, 2, 4]
    arrays = []
    for n in sizes:
        shape = list(base)
        shape[axis - 1] = n
        arrays.append(rng.standard_normal([batch] + shape))
    check_multi(L.Cat(dim=dim), lambda *ts: torch.cat(ts, dim=dim), arrays)


@SETTINGS
@given(st.integers(1, 3), st.integers(1, 7), st.integers(1, 4), st.sampled_from([1, 2, -1]), st.integers(0, 99))
def test_split_and_chunk_like_torch(batch, n, size, dim, seed):
    """Every piece used with its own weight, so each piece's gradient is checked."""
    shape = [n, 3, 2] if dim == 1 else ([3, n, 2] if dim == 2 else [3, 2, n])
    x = np.random.default_rng(seed).standard_normal([batch] + shape)
    for layer, fn in ((L.Split(size, dim=dim), lambda t: torch.split(t, size, dim=dim)),
                      (L.Chunk(size, dim=dim), lambda t: torch.chunk(t, size, dim=dim))):
        layer._build(tuple(shape), None, np.float64)
        pieces = layer.forward_outputs(x)
        tx = torch.tensor(x, requires_grad=True)
        tpieces = fn(tx)
        assert len(pieces) == len(tpieces)
        rng = np.random.default_rng(seed + 1)
        dys = [rng.standard_normal(p.shape) for p in pieces]
        dys[0] = None  # an unused piece: zero gradient
        total = sum((tp * torch.from_numpy(d)).sum() for tp, d in zip(tpieces, dys) if d is not None)
        for p, tp in zip(pieces, tpieces):
            np.testing.assert_array_equal(p, tp.detach().numpy())
        dx = layer.backward_outputs(dys)
        if isinstance(total, torch.Tensor):
            total.backward()
            np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=TOL, atol=TOL)
        else:
            assert not dx.any()


@SETTINGS
@given(st.integers(1, 3), st.permutations([1, 2, 3]), st.integers(0, 99))
def test_permute_and_transpose_like_torch(batch, perm, seed):
    x = np.random.default_rng(seed).standard_normal((batch, 2, 3, 4))
    dims = [0] + list(perm)
    check_single(L.Permute(dims), lambda t: t.permute(*dims), x)
    check_single(L.Transpose(perm[0], -1), lambda t: t.transpose(perm[0], -1), x)


@SETTINGS
@given(st.integers(1, 3), st.sampled_from([(2, 2, 3), (12,), (4, 3, 1), (3, 4)]), st.integers(0, 99))
def test_reshape_like_torch(batch, shape, seed):
    """12 values per sample viewed as ``shape`` (or with its last size inferred from -1)."""
    x = np.random.default_rng(seed).standard_normal((batch, 3, 4))
    target = shape[:-1] + (-1,) if seed % 2 else shape
    check_single(L.Reshape(target), lambda t: t.reshape(batch, *target), x)


@SETTINGS
@given(st.integers(1, 3), st.sampled_from([1, 2, 3, 6]), st.integers(0, 99))
def test_channel_shuffle_like_torch(batch, groups, seed):
    x = np.random.default_rng(seed).standard_normal((batch, 6, 2, 3))
    check_single(L.ChannelShuffle(groups), lambda t: torch.nn.ChannelShuffle(groups)(t), x)


@SETTINGS
@given(st.integers(1, 2), st.lists(st.integers(-1, 3), min_size=2, max_size=6).filter(lambda p: len(p) % 2 == 0),
       st.floats(-2, 2), st.integers(0, 99))
def test_pad_like_torch(batch, pad, value, seed):
    """F.pad order (last axis first); negative amounts crop."""
    x = np.random.default_rng(seed).standard_normal((batch, 3, 4, 5))
    check_single(L.Pad(pad, value=value), lambda t: F.pad(t, pad, value=value), x)


@SETTINGS
@given(st.integers(1, 3), st.lists(st.sampled_from([1, 2, 3, -1, -2]), min_size=1, max_size=3, unique=True),
       st.booleans(), st.integers(0, 99))
def test_mean_like_torch(batch, dims, keepdim, seed):
    rank = 4
    if len({d % rank for d in dims}) != len(dims):
        return
    x = np.random.default_rng(seed).standard_normal((batch, 3, 4, 2))
    check_single(L.Mean(dims, keepdim=keepdim), lambda t: t.mean(dim=tuple(dims), keepdim=keepdim), x)


def test_identity_is_a_copy():
    x = np.random.default_rng(0).standard_normal((2, 3))
    check_single(L.Identity(), lambda t: t * 1, x)
    layer = L.Identity().build((3,), dtype=np.float64)
    assert layer.forward(x) is not x


def test_global_pooling_written_as_a_mean_equals_global_avgpool():
    """Mean over (2, 3) is GlobalAvgPool; with keepdim it is AdaptiveAvgPool2d(1)."""
    x = np.random.default_rng(3).standard_normal((2, 3, 4, 5))
    a = L.Mean((2, 3)).build((3, 4, 5), dtype=np.float64).forward(x)
    b = L.GlobalAvgPool().build((3, 4, 5), dtype=np.float64).forward(x)
    np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize("make, shape, message", [
    (lambda: L.Reshape((5, -1)), (3, 4), "not a multiple of 5"),
    (lambda: L.Permute((1, 0, 2)), (3, 4), "batch axis first"),
    (lambda: L.ChannelShuffle(4), (6, 2), "divisible by 4"),
    (lambda: L.Pad((1, 1, 1, 1, 1, 1, 1, 1)), (3, 4), "pads 4 axes"),
    (lambda: L.Mean(0), (3, 4), "not an axis after the batch axis"),
    (lambda: L.Split([1, 1]), (3, 4), "add up to 3"),
])
def test_bad_shape_arguments_are_one_line(make, shape, message):
    with pytest.raises(ConvscopeError, match=message) as info:
        make().output_shapes(shape) if hasattr(make(), "output_shapes") else make().output_shape(shape)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["add", "mul", "cat", "split", "chunk", "reshape", "permute", "transpose",
                                  "channel_shuffle", "pad", "identity", "mean", "graph"])
def test_examples_pass_gradcheck_and_spec_round_trip(name):
    """Every new type's examples(): finite differences at batch 1 and 2, and the spec entry
    rebuilds an equal model (same output for the same weights)."""
    cls = L.LAYER_TYPES[name]
    for model, shape in cls.examples():
        for batch in (1, 2):
            x = np.random.default_rng(batch).standard_normal((batch,) + shape)
            model.build(shape, seed=0, dtype=np.float64)
            cs.gradcheck(model, x)
        again = cs.spec.layer_from_entry(model.spec_entry()).build(shape, dtype=np.float64)
        again.load_state_dict(model.state_dict())
        np.testing.assert_array_equal(again.forward(x), model.forward(x))
        assert again.spec_entry() == model.spec_entry()
