"""The exact fast paths of convolution (ops/conv.py, ops/winograd.py) against PyTorch.

Winograd F(2×2, 3×3) is exact in exact arithmetic, so forward, dx, dw and db must agree
with torch.nn.functional.conv2d to rounding (1e-9) in float64, for odd sizes, asymmetric
padding and padding 0..2 (its backward pads dy by 2 − p, including 0). The depthwise and
space-to-depth paths likewise; and "auto" must choose each path where it is exact.
"""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from convscope.ops.winograd import applies, conv3x3_backward, conv3x3_forward


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 4), k=st.integers(1, 4), h=st.integers(1, 9),
       w=st.integers(1, 9), pads=st.tuples(*(st.integers(0, 2) for _ in range(4))),
       bias=st.booleans(), seed=st.integers(0, 10_000))
def test_winograd_matches_torch(n, c, k, h, w, pads, bias, seed):
    pt, pb, pl, pr = pads
    if h + pt + pb < 3 or w + pl + pr < 3:
        return  # the 3×3 window does not fit: the layer rejects this before the op runs
    rng = np.random.default_rng(seed)
    x, weight = rng.standard_normal((n, c, h, w)), rng.standard_normal((k, c, 3, 3))
    b = rng.standard_normal(k) if bias else None
    y, cache = conv3x3_forward(x, weight, b, ((pt, pb), (pl, pr)))

    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(weight, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True) if bias else None
    # torch pads symmetrically; asymmetric padding goes through F.pad first.
    ty = torch.nn.functional.conv2d(torch.nn.functional.pad(tx, (pl, pr, pt, pb)), tw, tb)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-9, atol=1e-9)
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(dy))
    dx, dw, db = conv3x3_backward(dy, cache)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=1e-9, atol=1e-9)
    if bias:
        np.testing.assert_allclose(db, tb.grad.numpy(), rtol=1e-9, atol=1e-9)
    else:
        assert db is None


def test_float32_stays_float32():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    y, cache = conv3x3_forward(x, w, np.zeros(4, np.float32), ((1, 1), (1, 1)))
    dx, dw, db = conv3x3_backward(np.ones_like(y), cache)
    assert {a.dtype for a in (y, dx, dw, db)} == {np.dtype(np.float32)}


@pytest.mark.parametrize("kernel,stride,dilation,groups,expected", [
    ((3, 3), (1, 1), (1, 1), 1, True),
    ((3, 3), (2, 2), (1, 1), 1, False),   # F(2,3) tiles assume stride 1
    ((3, 3), (1, 1), (2, 2), 1, False),
    ((5, 5), (1, 1), (1, 1), 1, False),
    ((3, 3), (1, 1), (1, 1), 2, False),
])
def test_applies_only_where_exact(kernel, stride, dilation, groups, expected):
    assert applies(kernel, stride, dilation, groups) is expected


@pytest.mark.parametrize("numba_on", [True, False])
def test_auto_path_choices(numba_on, monkeypatch):
    # Winograd where it is exact and wide enough, a plain GEMM for 1×1, the one-GEMM "offset"
    # path for other stride-1 layers when numba is installed, im2col otherwise.
    from convscope.ops import kernels
    from convscope.ops.conv import choose_path
    monkeypatch.setattr(kernels, "AVAILABLE", numba_on)
    pads1, pads0 = ((1, 1), (1, 1)), ((0, 0), (0, 0))
    assert choose_path("auto", (3, 3), (1, 1), (1, 1), 1, pads1, 64, 64) == "winograd"
    assert choose_path("auto", (3, 3), (1, 1), (1, 1), 1, pads1, 3, 64) == ("offset" if numba_on else "im2col")
    assert choose_path("auto", (3, 3), (1, 1), (2, 2), 1, pads1, 3, 64) == "im2col"   # dilated
    assert choose_path("auto", (3, 3), (2, 2), (1, 1), 1, pads1, 64, 64) == "im2col"
    assert choose_path("auto", (1, 1), (1, 1), (1, 1), 1, pads0, 256, 128) == "pointwise"
    assert choose_path("reference", (3, 3), (1, 1), (1, 1), 1, pads1, 64, 64) == "reference"


def test_forced_winograd_on_a_layer_matches_torch():
    # A Conv2d with 16+ channels takes the Winograd path under "auto": check it end to end.
    import convscope as cs
    from oracle import assert_matches_torch
    layer = cs.layers.Conv2d(16, 3, padding=1)
    assert_matches_torch(layer, torch.nn.Conv2d(16, 16, 3, padding=1), (16, 7, 6), batch=2)
    assert layer._cache is None  # backward ran and freed what forward kept


def test_shifted_is_chosen_for_deep_stride_one_windows(monkeypatch):
    # Without numba (with it, every one of these takes "offset").
    from convscope.ops import kernels
    from convscope.ops.conv import choose_path
    none = ((0, 0), (0, 0))
    assert choose_path("auto", (5, 5), (1, 1), (1, 1), 1, none, 6, 16, 14) == \
        ("offset" if kernels.AVAILABLE else "shifted")
    monkeypatch.setattr(kernels, "AVAILABLE", False)
    # LeNet conv2: 6·5·5 = 150 values per window, W_p / W_out = 14 / 10 ≤ 1.5.
    assert choose_path("auto", (5, 5), (1, 1), (1, 1), 1, none, 6, 16, 14) == "shifted"
    # LeNet conv1: 1·5·5 = 25 values per window: per-sample im2col is faster.
    assert choose_path("auto", (5, 5), (1, 1), (1, 1), 1, none, 1, 6, 32) == "im2col"
    # Too much padding waste: W_p / W_out = 9 / 3.
    assert choose_path("auto", (7, 7), (1, 1), (1, 1), 1, none, 16, 16, 9) == "im2col"


@settings(max_examples=25, deadline=None)
@given(c=st.integers(2, 6), h=st.integers(3, 10), k=st.integers(1, 4), stride=st.integers(1, 3),
       dilation=st.integers(1, 2), padding=st.integers(0, 2), bias=st.booleans(), seed=st.integers(0, 999))
def test_depthwise_path_matches_torch(c, h, k, stride, dilation, padding, bias, seed):
    """groups = C_in = C_out runs as k_h·k_w multiply-adds; every gradient equals torch's."""
    import convscope as cs
    from oracle import assert_matches_torch
    from convscope.ops.conv import choose_path
    if h + 2 * padding < dilation * (k - 1) + 1:
        return
    pads = ((padding, padding), (padding, padding))
    assert choose_path("auto", (k, k), (stride, stride), (dilation, dilation), c, pads, c, c) == "depthwise"
    layer = cs.layers.Conv2d(c, k, stride=stride, padding=padding, dilation=dilation, groups=c, bias=bias)
    module = torch.nn.Conv2d(c, c, k, stride=stride, padding=padding, dilation=dilation, groups=c, bias=bias)
    assert_matches_torch(layer, module, (c, h, h + 1), batch=2, seed=seed)


def test_set_num_threads_controls_blas():
    import convscope as cs
    from convscope.threads import get_num_threads
    before = get_num_threads()
    cs.set_num_threads(1)
    assert get_num_threads() == 1
    cs.set_num_threads(before)
    assert get_num_threads() == before
    with pytest.raises(cs.ConvscopeError, match="positive integer"):
        cs.set_num_threads(0)


@settings(max_examples=25, deadline=None)
@given(c=st.integers(1, 4), k_out=st.integers(1, 5), h=st.integers(5, 17), kernel=st.integers(1, 7),
       stride=st.integers(2, 4), padding=st.integers(0, 3), bias=st.booleans(), seed=st.integers(0, 999))
def test_space_to_depth_path_matches_torch(c, k_out, h, kernel, stride, padding, bias, seed):
    """A strided layer rewritten as a stride-1 one over s×s phase channels: same numbers."""
    from convscope.ops import conv as conv_ops
    if h + 2 * padding < kernel or padding > kernel // 2 + 1:
        return
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal((2, c, h, h + 1)), rng.standard_normal((k_out, c, kernel, kernel))
    b = rng.standard_normal(k_out) if bias else None
    y, cache = conv_ops.conv2d_forward(x, w, b, stride, padding, path="space_to_depth")
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True) if bias else None
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride=stride, padding=padding)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-9, atol=1e-9)
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(dy))
    dx, dw, db = conv_ops.conv2d_backward(dy, cache)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=1e-9, atol=1e-9)
    if bias:
        np.testing.assert_allclose(db, tb.grad.numpy(), rtol=1e-9, atol=1e-9)


def test_space_to_depth_is_forced_only():
    # It measured no faster than im2col on AlexNet's conv1, so "auto" never picks it.
    from convscope.ops.conv import choose_path
    pads = ((2, 2), (2, 2))
    assert choose_path("auto", (11, 11), (4, 4), (1, 1), 1, pads, 3, 64, 224) == "im2col"
    assert choose_path("space_to_depth", (11, 11), (4, 4), (1, 1), 1, pads, 3, 64, 224) == "space_to_depth"
    with pytest.raises(Exception, match="stride > 1"):
        choose_path("space_to_depth", (3, 3), (1, 1), (1, 1), 1, pads, 3, 64, 224)


@pytest.mark.parametrize("default", ["winograd", "shifted", "pointwise", "depthwise", "space_to_depth"])
def test_a_special_default_falls_back_for_layers_it_cannot_compute(default):
    """set_default_path("space_to_depth") once broke every layer (its inner stride-1 call
    inherited the default). A default applies where it can and falls back to auto elsewhere;
    the numbers never change."""
    import convscope as cs
    from convscope.ops import conv as conv_ops
    model = cs.parse_text("conv2d(16, 3, padding=1) -> conv2d(16, 5, stride=2) -> conv2d(16, 1) -> "
                          "conv2d(16, 3, groups=16) -> flatten -> linear(3)", input_shape=(3, 15, 15))
    model.build(seed=0, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((2, 3, 15, 15))
    expected = model.forward(x)
    old = conv_ops.get_default_path()
    conv_ops.set_default_path(default)
    try:
        np.testing.assert_allclose(model.forward(x, train=True), expected, rtol=1e-10, atol=1e-10)
        model.backward(np.ones((2, 3)))
    finally:
        conv_ops.set_default_path(old)
