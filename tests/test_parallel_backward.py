"""Element-wise backward passes split over threads (ops/parallel.py) give the same numbers as on
one thread, and match PyTorch in float64 (1e-9) on inputs big enough to be split."""
import numpy as np
import pytest
import torch

import convscope as cs
from convscope.ops import parallel
from convscope.ops.norm import batch_norm_backward, batch_norm_forward
from convscope.threads import cheap_num_threads, get_num_threads


@pytest.fixture
def two_threads():
    before = get_num_threads()
    cs.set_num_threads(2)
    yield
    cs.set_num_threads(before)


def test_over_batch_covers_every_sample_once(two_threads):
    seen = np.zeros(37, int)

    def work(lo, hi):
        seen[lo:hi] += 1
    parallel.over_batch(work, 37, parallel.MIN_VALUES)   # big enough: two threads, one sample per chunk
    assert seen.tolist() == [1] * 37


def test_cheap_num_threads_follows_set_num_threads():
    before = get_num_threads()
    try:
        cs.set_num_threads(1)
        assert cheap_num_threads() == 1
        cs.set_num_threads(3)
        assert cheap_num_threads() == 3
    finally:
        cs.set_num_threads(before)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_backward_split_over_threads_matches_torch(two_threads, training, affine):
    # 4 × 8 × 96 × 96 = 294,912 values: above MIN_VALUES, so the fused pass runs on two threads.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 8, 96, 96)) * 3 + 1
    assert x.size >= parallel.MIN_VALUES
    weight, bias = (rng.standard_normal(8), rng.standard_normal(8)) if affine else (None, None)
    mean, var = rng.standard_normal(8), rng.random(8) + 0.5
    y, cache = batch_norm_forward(x, weight, bias, mean, var, training)
    dy = rng.standard_normal(x.shape)
    dx, dw, db = batch_norm_backward(dy, cache)

    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(weight, requires_grad=True) if affine else None
    tb = torch.tensor(bias, requires_grad=True) if affine else None
    ty = torch.nn.functional.batch_norm(tx, torch.tensor(mean), torch.tensor(var), tw, tb, training=training)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-9, atol=1e-9)
    if affine:
        np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(db, tb.grad.numpy(), rtol=1e-9, atol=1e-9)
    else:
        assert dw is None and db is None

    cs.set_num_threads(1)   # one thread: the very same values, bit for bit
    dx1, _, _ = batch_norm_backward(dy, cache)
    assert np.array_equal(dx, dx1)


@pytest.mark.parametrize("kernel, stride, padding", [(3, 2, 1), (2, 2, 0)])
def test_max_pool_backward_split_over_threads_matches_torch(two_threads, kernel, stride, padding):
    # Overlapping windows (3×3 stride 2, ResNet's stem) add several gradients into one pixel;
    # 4 × 8 × 128 × 128 = 524,288 values: split over two threads.
    from convscope.ops.pool import max_pool2d_backward, max_pool2d_forward
    from convscope.ops.workspace import Workspace
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 8, 128, 128))
    y, cache = max_pool2d_forward(x, (kernel, kernel), (stride, stride), (padding, padding), workspace=Workspace())
    dy = rng.standard_normal(y.shape)
    dx = max_pool2d_backward(dy, cache)
    tx = torch.tensor(x, requires_grad=True)
    torch.nn.functional.max_pool2d(tx, kernel, stride, padding).backward(torch.tensor(dy))
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    cs.set_num_threads(1)
    y1, cache1 = max_pool2d_forward(x, (kernel, kernel), (stride, stride), (padding, padding), workspace=Workspace())
    assert np.array_equal(max_pool2d_backward(dy, cache1), dx)


def test_relu_backward_split_over_threads_matches_torch(two_threads):
    # An inf and a NaN in dy where x < 0 must still give +0 (a select, not a multiply).
    from convscope.ops.activations import relu_backward, relu_forward
    rng = np.random.default_rng(7)
    x = rng.standard_normal((8, 16, 64, 64)).astype(np.float32)
    x[0, 0, 0, :2] = -1.0
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dy[0, 0, 0, 0], dy[0, 0, 0, 1] = np.inf, np.nan
    _, active = relu_forward(x)
    dx = relu_backward(dy, active)
    tx = torch.tensor(x, requires_grad=True)
    torch.relu(tx).backward(torch.tensor(dy))
    assert dx.dtype == np.float32
    assert np.array_equal(dx, tx.grad.numpy())
    assert dx[0, 0, 0, 0] == 0 and dx[0, 0, 0, 1] == 0
    assert relu_backward(dy[:0], active[:0]).shape == (0, 16, 64, 64)


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("groups, stride, inference", [(1, 1, True), (2, 1, False), (2, 2, False), (1, 2, True)])
def test_im2col_forward_split_over_threads_matches_torch(two_threads, groups, stride, inference, compiled,
                                                         monkeypatch):
    # 10 samples × 4·3·3 × 30² window values (40 × 4·3·3 × 15² at stride 2) ≥ SPLIT_MIN_WINDOW_VALUES:
    # two parts on two threads; stride-1 windows copied by numba's loop once it is loaded.
    from convscope.ops import conv, kernels
    if compiled and not kernels.AVAILABLE:
        pytest.skip("numba is not installed")
    if compiled:
        kernels.load()
    else:
        monkeypatch.setattr(kernels, "AVAILABLE", False)
    rng = np.random.default_rng(8)
    n = 10 if stride == 1 else 40
    x = rng.standard_normal((n, 4, 32, 32))
    w, b = rng.standard_normal((6, 4 // groups, 3, 3)), rng.standard_normal(6)
    y, _ = conv.conv2d_forward(x, w, b, stride, 0, 1, groups, path="im2col", keep_for_backward=not inference)
    assert x.shape[0] * 4 * 9 * y.shape[2] * y.shape[3] >= conv.SPLIT_MIN_WINDOW_VALUES
    assert (6 // groups) * (4 // groups) * 9 * y.shape[2] * y.shape[3] <= conv.BLAS_ONE_THREAD_MACS   # BLAS: one thread
    expected = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), stride, 0, 1, groups)
    np.testing.assert_allclose(y, expected.numpy(), rtol=1e-10, atol=1e-10)
    cs.set_num_threads(1)   # one thread: the very same values, bit for bit
    y1, cache = conv.conv2d_forward(x, w, b, stride, 0, 1, groups, path="im2col", keep_for_backward=not inference)
    assert np.array_equal(y, y1)
    if not inference:   # backward copies the windows again by the same rule
        tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
        dy = rng.standard_normal(y.shape)
        torch.nn.functional.conv2d(tx, tw, None, stride, 0, 1, groups).backward(torch.tensor(dy))
        dx, dw, _ = conv.conv2d_backward(dy, cache)
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=1e-10, atol=1e-10)
