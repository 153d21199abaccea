"""The backward kernels of ops/conv_backward.py against the reference loops and PyTorch (float64).

Every kernel computes the same sums as the loops in ops/conv.py (the definition), only
grouped differently, so in float64 they agree to rounding: 1e-9.
"""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from convscope.ops import conv as conv_ops
from convscope.ops.conv_backward import one_gemm_wins, weight_grad
from convscope.ops.workspace import Workspace

TIGHT = 1e-9


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 4), g=st.integers(1, 3), o=st.integers(1, 12), k=st.integers(1, 12),
       p=st.integers(1, 9), transposed=st.booleans(), seed=st.integers(0, 2**16))
def test_weight_grad_is_the_sum_over_samples_and_positions(n, g, o, k, p, transposed, seed):
    # Both branches (one GEMM, per-sample products) against the plain einsum of the definition,
    # on contiguous and on strided inputs (the pointwise path passes a view of x).
    rng = np.random.default_rng(seed)
    dy = rng.standard_normal((n, g, o, p))
    cols = rng.standard_normal((n, g, p, k)).transpose(0, 1, 3, 2) if transposed \
        else rng.standard_normal((n, g, k, p))
    expected = np.einsum("ngop,ngkp->gok", dy, cols)
    ws = Workspace()
    for _ in range(2):   # the second call reuses the workspace's transposed copies
        dw = weight_grad(dy, cols, ws)
        assert dw.shape == (g, o, k)
        np.testing.assert_allclose(dw, expected, rtol=TIGHT, atol=TIGHT)
        for buffer in ws._buffers.values():
            assert not np.shares_memory(dw, buffer)


def test_one_gemm_rule_picks_the_deep_strided_layers():
    # ResNet-18 on 32×32, stage 4: 512 output channels, K = 256·9, one position per sample:
    # one GEMM (32 rank-1 products of 512×2304 before). LeNet's conv1 (6 channels, 784
    # positions, K = 25) keeps its per-sample products: copying cols would cost more.
    assert one_gemm_wins(512, 2304, 1)
    assert one_gemm_wins(128, 576, 16)
    assert not one_gemm_wins(6, 25, 784)
    assert not one_gemm_wins(64, 363, 3025)   # AlexNet conv1


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), c_in=st.integers(1, 6), c_out=st.integers(8, 24), kernel=st.integers(1, 3),
       stride=st.integers(2, 3), size=st.integers(2, 7), padding=st.integers(0, 1), groups=st.sampled_from([1, 2]),
       seed=st.integers(0, 2**16))
def test_strided_layers_match_the_reference_loops_and_torch(n, c_in, c_out, kernel, stride, size, padding,
                                                           groups, seed):
    # Deep, strided, few positions: the shapes where the one-GEMM branch is taken.
    c_in, c_out = c_in * groups, c_out * groups
    if size + 2 * padding < kernel:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c_in, size, size))
    w = rng.standard_normal((c_out, c_in // groups, kernel, kernel))
    b = rng.standard_normal(c_out)
    results = {}
    for path in ("reference", "im2col"):
        y, cache = conv_ops.conv2d_forward(x, w, b, stride, padding, 1, groups, path=path, workspace=Workspace())
        dy = np.random.default_rng(seed + 1).standard_normal(y.shape)
        results[path] = (y, *conv_ops.conv2d_backward(dy, cache))
    for name, ref, fast in zip(("y", "dx", "dw", "db"), results["reference"], results["im2col"]):
        np.testing.assert_allclose(fast, ref, rtol=TIGHT, atol=TIGHT, err_msg=name)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, tw, torch.tensor(b), stride=stride, padding=padding, groups=groups)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(results["im2col"][2], tw.grad.numpy(), rtol=TIGHT, atol=TIGHT)
    np.testing.assert_allclose(results["im2col"][1], tx.grad.numpy(), rtol=TIGHT, atol=TIGHT)


@pytest.mark.parametrize("shape", [(2, 256, 4, 4), (3, 64, 1, 1)])
def test_pointwise_weight_gradient_matches_torch(shape):
    # 1×1 stride-1 layers with few positions per channel also take the one-GEMM branch.
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(shape), rng.standard_normal((96, shape[1], 1, 1))
    y, cache = conv_ops.conv2d_forward(x, w, None, path="pointwise", workspace=Workspace())
    assert one_gemm_wins(96, shape[1], shape[2] * shape[3])
    dy = rng.standard_normal(y.shape)
    dx, dw, _ = conv_ops.conv2d_backward(dy, cache)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    torch.nn.functional.conv2d(tx, tw).backward(torch.tensor(dy))
    np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=TIGHT, atol=TIGHT)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=TIGHT, atol=TIGHT)


def test_float32_weight_gradient_stays_float32():
    rng = np.random.default_rng(1)
    dy, cols = rng.standard_normal((4, 1, 64, 1)).astype(np.float32), rng.standard_normal((4, 1, 72, 1)).astype(np.float32)
    assert weight_grad(dy, cols).dtype == np.float32
    dy, cols = rng.standard_normal((4, 1, 64, 2)).astype(np.float32), rng.standard_normal((4, 1, 72, 2)).astype(np.float32)
    assert weight_grad(dy, cols, Workspace()).dtype == np.float32
