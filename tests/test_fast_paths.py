"""The vectorised special cases of the non-convolution ops (issue 6), each against two oracles:
PyTorch in float64 (1e-9 relative and absolute) and a plain per-window loop written here.

Paths covered (see convscope.ops.pool._plan and convscope.ops.activations._select):
- max/avg pooling whose offsets are all *written* (non-overlapping windows, stride == kernel),
  with and without a remainder row/column that must be zeroed;
- overlapping windows (written offsets first, then added ones), padding through a work buffer,
  dilation and kernel < stride (where the written offsets do not cover the input);
- the argmax skipped in inference and recomputed by a later backward; NaN inputs (PyTorch's rule);
- the bit-mask gradient select (inf and NaN in dy stay exact), chunked ReLU, uniform divisors;
- the linear GEMM writing dW/db straight into the Parameters' grads.
"""
import numpy as np
import pytest
import torch

import convscope as cs
from convscope.layers import AvgPool2d, Linear, MaxPool1d, MaxPool2d, ReLU
from convscope.ops import activations as act
from convscope.ops import pool as ops
from convscope.ops.linear import linear_backward, linear_backward_into, linear_forward
from oracle import assert_matches_torch

TOL = dict(rtol=1e-9, atol=1e-9)

# (kernel, stride, padding, dilation, ceil_mode, per-sample input shape)
GEOMETRIES = {
    "non-overlapping 2x2 (LeNet)": (2, 2, 0, 1, False, (3, 8, 8)),
    "non-overlapping with a remainder": (2, 2, 0, 1, False, (2, 7, 9)),
    "non-overlapping 3x2 rectangles": ((3, 2), (3, 2), 0, 1, False, (2, 9, 8)),
    "overlapping 3x3 stride 2 (AlexNet)": (3, 2, 0, 1, False, (2, 11, 11)),
    "overlapping 3x3 stride 1 padded": (3, 1, 1, 1, False, (2, 6, 7)),
    "ceil mode overhang": (3, 2, 1, 1, True, (2, 8, 6)),
    "kernel smaller than stride": (2, 3, 0, 1, False, (2, 10, 8)),
    "dilated": ((2, 3), (1, 2), (1, 1), (2, 1), False, (2, 7, 8)),
}


def brute_max_pool(x, kernel, stride, padding, dilation, ceil_mode, dy):
    """Per-window loop: first strict maximum wins (PyTorch's rule), its output's gradient goes there."""
    g = ops.pool_geometry("brute", x.shape[2:], kernel, stride, padding, dilation, ceil_mode)
    (ph, pw), (h, w) = g.padding, g.in_size
    y = np.full(x.shape[:2] + g.out_size, -np.inf)
    dx = np.zeros_like(x)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for i in range(g.out_size[0]):
                for j in range(g.out_size[1]):
                    best, where = -np.inf, None
                    for a in range(g.kernel[0]):
                        for b in range(g.kernel[1]):
                            r = i * g.stride[0] - ph + a * g.dilation[0]
                            q = j * g.stride[1] - pw + b * g.dilation[1]
                            if 0 <= r < h and 0 <= q < w and (where is None or x[n, c, r, q] > best):
                                best, where = x[n, c, r, q], (r, q)
                    y[n, c, i, j] = best
                    if where is not None:
                        dx[n, c, where[0], where[1]] += dy[n, c, i, j]
    return y, dx


def tied_input(shape, seed=0):
    """Rounded values after a ReLU: many exact ties (zeros especially), as in a real network."""
    x = np.round(np.random.default_rng(seed).standard_normal(shape), 1)
    return np.maximum(x, 0.0)


def as_pairs(k, s, p, d):
    return tuple(tuple(v) if isinstance(v, tuple) else (v, v) for v in (k, s, p, d))


@pytest.mark.parametrize("name", GEOMETRIES)
def test_max_pool_paths_match_torch_and_the_window_loop(name):
    k, s, p, d, ceil, shape = GEOMETRIES[name]
    x = tied_input((2,) + shape, seed=len(name))
    layer = MaxPool2d(k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
    module = torch.nn.MaxPool2d(k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
    y, dx = assert_matches_torch(layer, module, shape, x=x)
    dy = np.random.default_rng(0).standard_normal(y.shape)  # the oracle helper's dy (x given: no draw)
    y_ref, dx_ref = brute_max_pool(x, *as_pairs(k, s, p, d), ceil, dy)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_allclose(dx, dx_ref, **TOL)


@pytest.mark.parametrize("name", GEOMETRIES)
def test_max_pool_inference_path_recomputes_the_same_argmax(name):
    # record_argmax=False skips the index; a backward after it must equal the recorded path's.
    k, s, p, d, ceil, shape = GEOMETRIES[name]
    args = as_pairs(k, s, p, d) + (ceil,)
    x = tied_input((2,) + shape, seed=3)
    y_rec, cache_rec = ops.max_pool2d_forward(x, *args)
    y_inf, cache_inf = ops.max_pool2d_forward(x, *args, record_argmax=False)
    assert cache_inf.payload is None
    np.testing.assert_array_equal(y_rec, y_inf)
    dy = np.random.default_rng(1).standard_normal(y_rec.shape)
    np.testing.assert_array_equal(ops.max_pool2d_backward(dy, cache_rec), ops.max_pool2d_backward(dy, cache_inf))


def test_max_pool_layer_backward_after_an_inference_forward_matches_torch():
    layer = MaxPool2d(2).build((2, 6, 6), dtype=np.float64)
    x = tied_input((2, 2, 6, 6), seed=5)
    y = layer.forward(x, train=False)
    dy = np.random.default_rng(2).standard_normal(y.shape)
    tx = torch.tensor(x, requires_grad=True)
    torch.nn.functional.max_pool2d(tx, 2).backward(torch.from_numpy(dy))
    np.testing.assert_allclose(layer.backward(dy), tx.grad.numpy(), **TOL)


@pytest.mark.parametrize("geometry", [(2, 2, 0), (3, 2, 1)], ids=["non-overlapping", "overlapping padded"])
def test_max_pool_with_nan_follows_torch(geometry):
    # PyTorch: a NaN always wins its window (the last NaN when there are several) and gets the gradient.
    k, s, p = geometry
    x = np.random.default_rng(4).standard_normal((1, 2, 6, 6))
    x[0, 0, 1, 1] = x[0, 0, 1, 2] = x[0, 1, 4, 3] = np.nan
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.max_pool2d(tx, k, s, p)
    y, cache = ops.max_pool2d_forward(x, (k, k), (s, s), (p, p))
    np.testing.assert_allclose(y, ty.detach().numpy(), equal_nan=True, **TOL)
    dy = np.random.default_rng(5).standard_normal(y.shape)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(ops.max_pool2d_backward(dy, cache), tx.grad.numpy(), **TOL)


def test_max_pool_backward_passes_inf_only_to_the_winner_like_torch():
    # An inf gradient goes to its window's winner; every other input gets exactly 0, not NaN.
    x = np.random.default_rng(6).standard_normal((1, 1, 4, 4))
    dy = np.ones((1, 1, 2, 2))
    dy[0, 0, 0, 1] = np.inf
    dy[0, 0, 1, 0] = np.nan
    _, cache = ops.max_pool2d_forward(x, (2, 2), (2, 2))
    tx = torch.tensor(x, requires_grad=True)
    torch.nn.functional.max_pool2d(tx, 2).backward(torch.from_numpy(dy))
    dx = ops.max_pool2d_backward(dy, cache)
    np.testing.assert_array_equal(dx, tx.grad.numpy())
    assert np.count_nonzero(np.isinf(dx)) == 1 and np.count_nonzero(np.isnan(dx)) == 1


def test_max_pool1d_paths_match_torch():
    x = tied_input((2, 3, 11), seed=7)
    for k, s, p in [(2, 2, 0), (3, 2, 1)]:
        assert_matches_torch(MaxPool1d(k, stride=s, padding=p), torch.nn.MaxPool1d(k, s, p), (3, 11), x=x)


def test_float32_pool_results_are_fresh_float32_arrays_not_work_buffers():
    # Work buffers are reused: a result that aliased one would change on the next call.
    for layer in (MaxPool2d(3, stride=1, padding=1), MaxPool2d(2), AvgPool2d(3, stride=2, padding=1)):
        layer.build((2, 6, 6))
        rng = np.random.default_rng(8)
        x1, x2 = (rng.standard_normal((2, 2, 6, 6)).astype(np.float32) for _ in range(2))
        y1 = layer.forward(x1, train=True)
        dx1 = layer.backward(np.ones_like(y1))
        keep_y, keep_dx = y1.copy(), dx1.copy()
        layer.forward(x2, train=True)
        layer.backward(np.full(y1.shape, 2.0, np.float32))
        np.testing.assert_array_equal(y1, keep_y)
        np.testing.assert_array_equal(dx1, keep_dx)
        assert y1.dtype == np.float32 and dx1.dtype == np.float32


# ----- average pooling ------------------------------------------------------------------------

def brute_avg_pool(x, kernel, stride, padding, ceil_mode, count_include_pad, dy):
    g = ops.pool_geometry("brute", x.shape[2:], kernel, stride, padding, (1, 1), ceil_mode)
    (ph, pw), (h, w) = g.padding, g.in_size
    y = np.zeros(x.shape[:2] + g.out_size)
    dx = np.zeros_like(x)
    for i in range(g.out_size[0]):
        for j in range(g.out_size[1]):
            r0, q0 = i * g.stride[0] - ph, j * g.stride[1] - pw
            r1, q1 = min(r0 + g.kernel[0], h + ph), min(q0 + g.kernel[1], w + pw)
            rows, cols = slice(max(r0, 0), min(r1, h)), slice(max(q0, 0), min(q1, w))
            count = (r1 - r0) * (q1 - q0) if count_include_pad else \
                (rows.stop - rows.start) * (cols.stop - cols.start)
            y[:, :, i, j] = x[:, :, rows, cols].sum(axis=(2, 3)) / count
            dx[:, :, rows, cols] += dy[:, :, i, j][:, :, None, None] / count
    return y, dx


@pytest.mark.parametrize("name", ["non-overlapping 2x2 (LeNet)", "non-overlapping with a remainder",
                                  "overlapping 3x3 stride 2 (AlexNet)", "overlapping 3x3 stride 1 padded",
                                  "ceil mode overhang", "kernel smaller than stride"])
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool_paths_match_torch_and_the_window_loop(name, count_include_pad):
    k, s, p, _, ceil, shape = GEOMETRIES[name]
    x = np.random.default_rng(9).standard_normal((2,) + shape)
    layer = AvgPool2d(k, stride=s, padding=p, ceil_mode=ceil, count_include_pad=count_include_pad)
    module = torch.nn.AvgPool2d(k, stride=s, padding=p, ceil_mode=ceil, count_include_pad=count_include_pad)
    y, dx = assert_matches_torch(layer, module, shape, x=x)
    dy = np.random.default_rng(0).standard_normal(y.shape)
    kk, ss, pp, _ = as_pairs(k, s, p, 1)
    y_ref, dx_ref = brute_avg_pool(x, kk, ss, pp, ceil, count_include_pad, dy)
    np.testing.assert_allclose(y, y_ref, **TOL)
    np.testing.assert_allclose(dx, dx_ref, **TOL)


def test_avg_pool_uniform_divisor_is_one_number_and_ragged_one_is_an_array():
    # 2x2 windows on 8x8: every divisor is 4 -> a 0-d array; padded without counting it -> 4x4 table.
    _, uniform = ops.avg_pool2d_forward(np.ones((1, 1, 8, 8)), (2, 2), (2, 2))
    assert uniform.payload.shape == () and uniform.payload == 4
    _, ragged = ops.avg_pool2d_forward(np.ones((1, 1, 8, 8)), (3, 3), (2, 2), (1, 1), False, False)
    assert ragged.payload.shape == (4, 4) and ragged.payload[0, 0] == 4 and ragged.payload[1, 1] == 9


# ----- activations ----------------------------------------------------------------------------

@pytest.mark.parametrize("size", [5, 16384, 2 * 16384 + 7], ids=["tiny", "one chunk", "chunks and a tail"])
def test_chunked_relu_matches_torch_with_special_values(size):
    x = np.random.default_rng(10).standard_normal(size)
    x[:4] = [np.nan, -np.inf, np.inf, -0.0]
    x = x.reshape(1, -1)
    dy = np.random.default_rng(11).standard_normal(x.shape)
    dy[0, 1] = np.inf   # at x = -inf (inactive): the gradient must be exactly 0, not NaN
    dy[0, 2] = np.nan   # at x = +inf (active): passed through
    y, mask = act.relu_forward(x)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.relu(tx)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_array_equal(y, ty.detach().numpy())   # NaN stays NaN, −inf -> 0
    np.testing.assert_array_equal(act.relu_backward(dy, mask), tx.grad.numpy())


def test_relu_float32_stays_float32_and_matches_the_select_definition():
    x = np.random.default_rng(12).standard_normal((3, 4, 5)).astype(np.float32)
    layer = ReLU().build((4, 5))
    y = layer.forward(x, train=True)
    dy = np.random.default_rng(13).standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(dy)
    assert y.dtype == np.float32 and dx.dtype == np.float32
    np.testing.assert_array_equal(y, np.where(x > 0, x, np.float32(0)))
    np.testing.assert_array_equal(dx, np.where(x > 0, dy, np.float32(0)))


def test_relu6_select_matches_torch():
    assert_matches_torch(cs.layers.ReLU6(), torch.nn.ReLU6(), (40,), x=np.linspace(-2, 8, 80).reshape(2, 40))


# ----- linear ---------------------------------------------------------------------------------

def test_linear_backward_into_writes_the_same_gradients_as_linear_backward():
    rng = np.random.default_rng(14)
    x, w, b = rng.standard_normal((2, 3, 5)), rng.standard_normal((4, 5)), rng.standard_normal(4)
    y, cache = linear_forward(x, w, b)
    np.testing.assert_allclose(y, x @ w.T + b, **TOL)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = linear_backward(dy, cache)
    dw_into, db_into = np.full_like(w, np.nan), np.full_like(b, np.nan)  # overwritten, never added to
    dx_into = linear_backward_into(dy, cache, dw_into, db_into)
    np.testing.assert_array_equal(dx_into, dx)
    np.testing.assert_array_equal(dw_into, dw)
    np.testing.assert_array_equal(db_into, db)


def test_linear_layer_float32_grads_are_float32_and_match_float64():
    layer = Linear(7).build((6,), seed=0)
    x = np.random.default_rng(15).standard_normal((4, 6)).astype(np.float32)
    y = layer.forward(x, train=True)
    dy = np.ones_like(y)
    layer.backward(dy)
    w = layer._params["weight"]
    assert y.dtype == np.float32 and w.grad.dtype == np.float32
    np.testing.assert_allclose(w.grad, dy.astype(np.float64).T @ x.astype(np.float64), rtol=1e-5)
