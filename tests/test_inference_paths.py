"""The inference paths (issue 16): forward(train=False) keeps no backward cache, and the
ops it takes instead (numba's depthwise loop, batch norm as scale and shift, ReLU without
a mask) compute the same numbers as the reference loops and PyTorch in float64.

Expected values come from ``_forward_reference`` (the definition's loops) and
torch.nn.functional in float64; tolerances 1e-9 are rounding only (sums in another order).
"""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import convscope as cs
from convscope.layers.base import _Replay
from convscope.ops import conv as conv_ops, kernels


def _torch_depthwise(x, w, b, stride, dilation, pads):
    (top, bottom), (left, right) = pads
    tx = torch.nn.functional.pad(torch.tensor(x), (left, right, top, bottom))
    tb = None if b is None else torch.tensor(b)
    return torch.nn.functional.conv2d(tx, torch.tensor(w), tb, stride=stride, dilation=dilation,
                                      groups=x.shape[1]).numpy()


@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba is not installed (the test extra installs it)")
@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 4), h=st.integers(1, 12), w=st.integers(1, 20),
       stride=st.tuples(st.integers(1, 3), st.integers(1, 3)), pads=st.tuples(*(st.integers(0, 3) for _ in range(4))),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 10_000))
def test_the_3x3_loop_gives_the_general_loops_bits(n, c, h, w, stride, pads, dtype, seed):
    """The 3×3 kernel (one expression per interior output) adds the same terms in the same
    order as the general loop (one pass per tap), so their outputs are equal bit for bit, at
    the borders and inside, in float32 as in float64."""
    pt, pb, pl, pr = pads
    if h + pt + pb < 3 or w + pl + pr < 3:
        return
    from convscope.ops import _numba_kernels as nk
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    weight, b = rng.standard_normal((c, 3, 3)).astype(dtype), rng.standard_normal(c).astype(dtype)
    out = ((h + pt + pb - 3) // stride[0] + 1, (w + pl + pr - 3) // stride[1] + 1)
    general, special = (np.full((n, c) + out, np.nan, dtype) for _ in range(2))
    nk.depthwise(x, weight, b, stride[0], stride[1], 1, 1, pt, pl, general, 0, n * c)
    nk.depthwise3x3(x, weight, b, stride[0], stride[1], pt, pl, special, 0, n * c)
    assert general.tobytes() == special.tobytes()


@pytest.mark.parametrize("numba_on", [True, False] if kernels.AVAILABLE else [False])
@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(2, 5), h=st.integers(1, 11), w=st.integers(1, 11),
       k=st.tuples(st.integers(1, 5), st.integers(1, 5)), stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
       pads=st.tuples(*(st.integers(0, 3) for _ in range(4))), bias=st.booleans(), keep=st.booleans(),
       seed=st.integers(0, 10_000))
def test_depthwise_forward_matches_the_loops_and_torch(numba_on, n, c, h, w, k, stride, dilation, pads, bias,
                                                       keep, seed):
    """Random shapes, asymmetric padding, strides and dilations; with and without numba (the
    NumPy fallback), with and without a backward cache."""
    pt, pb, pl, pr = pads
    if h + pt + pb < dilation[0] * (k[0] - 1) + 1 or w + pl + pr < dilation[1] * (k[1] - 1) + 1:
        return  # the window does not fit: rejected before the op runs
    rng = np.random.default_rng(seed)
    x, weight = rng.standard_normal((n, c, h, w)), rng.standard_normal((c, 1) + k)
    b = rng.standard_normal(c) if bias else None
    padding = ((pt, pb), (pl, pr))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kernels, "AVAILABLE", numba_on)
        y, cache = conv_ops.conv2d_forward(x, weight, b, stride, padding, dilation, c, path="depthwise",
                                           keep_for_backward=keep)
    expected, _ = conv_ops.conv2d_forward(x, weight, b, stride, padding, dilation, c, path="reference")
    np.testing.assert_allclose(y, expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(y, _torch_depthwise(x, weight, b, stride, dilation, padding), rtol=1e-9, atol=1e-9)
    assert (cache is None) == (not keep)
    if keep:  # the cache from the compiled forward serves the NumPy backward
        dy = rng.standard_normal(y.shape)
        dx, dw, db = conv_ops.conv2d_backward(dy, cache)
        ref_dx, ref_dw, _ = conv_ops.conv2d_backward(dy, conv_ops.conv2d_forward(
            x, weight, b, stride, padding, dilation, c, path="reference")[1])
        np.testing.assert_allclose(dx, ref_dx, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(dw, ref_dw, rtol=1e-9, atol=1e-9)


def test_depthwise_float32_stays_float32_and_fresh():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((3, 1, 3, 3)).astype(np.float32)
    y1, _ = conv_ops.conv2d_forward(x, w, None, 1, 1, 1, 3, keep_for_backward=False)
    y2, _ = conv_ops.conv2d_forward(x, w, None, 1, 1, 1, 3, keep_for_backward=False)
    assert y1.dtype == np.float32 and not np.shares_memory(y1, y2)


def _mobile_block():
    layers = cs.layers
    return cs.Sequential([layers.Conv2d(8, 3, padding=1), layers.BatchNorm2d(), layers.ReLU6(),
                          layers.Conv2d(8, 3, stride=2, padding=1, groups=8), layers.BatchNorm2d(), layers.ReLU(),
                          layers.MaxPool2d(2), layers.Conv2d(4, 1), layers.Flatten(), layers.Linear(3)])


def _with_running_statistics(model, rng):
    for name, b in model.named_buffers():
        if name.endswith("running_var"):
            b[...] = rng.uniform(0.5, 2.0, b.shape)
        elif name.endswith("running_mean"):
            b[...] = rng.standard_normal(b.shape)
    return model


def test_inference_keeps_no_backward_cache():
    """After forward(train=False) no layer holds a window matrix, mask, argmax or ConvCache,
    nor a reference to its input (which would keep every intermediate map alive): the model
    alone keeps its own input (the _Replay marker), and a backward then replays the pass."""
    model = _mobile_block().build((3, 12, 12), seed=0)
    x = np.random.default_rng(0).standard_normal((2, 3, 12, 12)).astype(np.float32)
    y = model.forward(x)
    assert isinstance(model._cache, _Replay) and model._cache.x is x
    for name, layer in model.children():
        assert layer._cache is None, name
    dx_after_inference = model.backward(np.ones_like(y))
    with cs.layers.base.keeping_caches():
        model.forward(x)
    np.testing.assert_array_equal(dx_after_inference, model.backward(np.ones_like(y)))


def test_inference_equals_training_forward_and_torch():
    """BN folded to scale and shift, ReLU/ReLU6 without masks: the eval forward equals the
    forward that keeps caches, and torch's eval forward, in float64."""
    rng = np.random.default_rng(1)
    model = _with_running_statistics(_mobile_block().build((3, 12, 12), seed=0, dtype=np.float64), rng)
    x = rng.standard_normal((2, 3, 12, 12))
    y = model.forward(x)
    with cs.layers.base.keeping_caches():
        kept = model.forward(x)
    np.testing.assert_allclose(y, kept, rtol=1e-12, atol=1e-12)
    module = cs.interop.to_torch(model).double().eval()
    with torch.no_grad():
        np.testing.assert_allclose(y, module(torch.tensor(x)).numpy(), rtol=1e-9, atol=1e-9)


def test_backward_after_inference_replays_the_forward():
    """The gradients of the inference-mode function (a saliency map with batch norm's running
    statistics) still work: backward re-runs the forward with caches, and equals torch's."""
    rng = np.random.default_rng(2)
    model = _with_running_statistics(_mobile_block().build((3, 12, 12), seed=0, dtype=np.float64), rng)
    x = rng.standard_normal((2, 3, 12, 12))
    y = model.forward(x)
    dy = rng.standard_normal(y.shape)
    dx = model.backward(dy)
    module = cs.interop.to_torch(model).double().eval()
    tx = torch.tensor(x, requires_grad=True)
    module(tx).backward(torch.tensor(dy))
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-9, atol=1e-9)
    grads = dict((name, p.grad) for name, p in model.named_parameters())
    for name, p in module.named_parameters():
        np.testing.assert_allclose(grads[name], p.grad.numpy(), rtol=1e-9, atol=1e-9)
    with pytest.raises(cs.ConvscopeError, match="backward called before forward"):
        model.backward(dy)  # the replayed caches were used up


def test_relu6_inference_keeps_nan_and_bounds():
    x = np.array([[-1.0, 0.0, 3.0, 6.0, 7.5, np.nan]], np.float32)
    layer = cs.layers.ReLU6().build((6,))
    np.testing.assert_array_equal(layer.forward(x), [[0, 0, 3, 6, 6, np.nan]])


def test_winograd_inference_notices_weights_changed_in_place():
    """The transformed filters an inference pass keeps are reused only while the weights are
    unchanged: an in-place update (an optimiser step) must give the new layer's output."""
    rng = np.random.default_rng(3)
    layer = cs.layers.Conv2d(16, 3, padding=1).build((16, 6, 6), seed=0, dtype=np.float64)
    x = rng.standard_normal((2, 16, 6, 6))
    first = layer.forward(x)
    layer._params["weight"].value[0, 0, 1, 1] += 1.0   # in place, as SGD does
    second = layer.forward(x)
    module = cs.interop.to_torch(layer).double()
    with torch.no_grad():
        np.testing.assert_allclose(second, module(torch.tensor(x)).numpy(), rtol=1e-9, atol=1e-9)
    assert not np.allclose(first, second)
    layer.workspace.clear()   # dropped buffers come back as not kept: recomputed, still right
    np.testing.assert_allclose(layer.forward(x), second, rtol=1e-12, atol=1e-12)


def test_depthwise_split_over_threads_matches_one_thread(monkeypatch):
    """The planes cut into one part per worker (planes of 80·80·9 multiply-adds, over the
    64k that a part must hold) give torch's output for every worker count."""
    from convscope import threads
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((3, 5, 80, 80)), rng.standard_normal((5, 1, 3, 3))
    expected = _torch_depthwise(x, w, None, (1, 1), (1, 1), ((1, 1), (1, 1)))
    for workers in (1, 2, 3):
        monkeypatch.setattr(threads, "_known", workers)
        y, _ = conv_ops.conv2d_forward(x, w, None, 1, 1, 1, 5, keep_for_backward=False)
        np.testing.assert_allclose(y, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("numba_on", [True, False] if kernels.AVAILABLE else [False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batchnorm_inference_one_pass_matches_torch(numba_on, dtype, monkeypatch):
    """Above kernels.MIN_ELEMENTWISE values batch norm's eval forward is numba's one-pass
    x·a_c + b_c: torch's eval forward to rounding (1e-9 in float64, 1e-5 in float32)."""
    monkeypatch.setattr(kernels, "AVAILABLE", numba_on)
    rng = np.random.default_rng(5)
    layer = _with_running_statistics(cs.layers.BatchNorm2d().build((6, 48, 48), seed=0, dtype=dtype), rng)
    layer._params["weight"].value[...] = rng.standard_normal(6)
    layer._params["bias"].value[...] = rng.standard_normal(6)
    x = rng.standard_normal((2, 6, 48, 48)).astype(dtype)
    assert x.size >= kernels.MIN_ELEMENTWISE
    y = layer.forward(x)
    assert y.dtype == dtype
    module = cs.interop.to_torch(layer).double().eval()
    with torch.no_grad():
        expected = module(torch.tensor(x.astype(np.float64))).numpy()
    tol = 1e-9 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(y, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("numba_on", [True, False] if kernels.AVAILABLE else [False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_training_forward_and_backward_match_torch(numba_on, dtype, affine, monkeypatch):
    """Batch norm in training mode (numba's three passes with float64 sums, or NumPy's) against
    torch's train-mode module in float64: output, running statistics (momentum 0.1, unbiased
    variance) and the gradients of x, γ and β, to 1e-9 in float64 and 1e-5 in float32, with
    the 2 threads splitting the channels. Offset data (mean 3) checks the variance is centred."""
    from convscope import threads
    monkeypatch.setattr(kernels, "AVAILABLE", numba_on)
    monkeypatch.setattr(threads, "_known", 2)
    rng = np.random.default_rng(6)
    layer = cs.layers.BatchNorm2d(affine=affine).build((5, 40, 41), seed=0, dtype=dtype)
    if affine:
        layer._params["weight"].value[...] = rng.standard_normal(5)
        layer._params["bias"].value[...] = rng.standard_normal(5)
    x = (rng.standard_normal((3, 5, 40, 41)) * 2 + 3).astype(dtype)
    assert x.size >= kernels.MIN_ELEMENTWISE
    module = cs.interop.to_torch(layer).double().train()
    y = layer.forward(x, train=True)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = layer.backward(dy)
    tx = torch.tensor(x.astype(np.float64), requires_grad=True)
    expected = module(tx)
    expected.backward(torch.tensor(dy.astype(np.float64)))
    tol = 1e-9 if dtype == np.float64 else 1e-5
    assert y.dtype == dx.dtype == dtype
    np.testing.assert_allclose(y, expected.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(layer._buffers["running_mean"], module.running_mean.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(layer._buffers["running_var"], module.running_var.numpy(), rtol=tol, atol=tol)
    if affine:
        np.testing.assert_allclose(layer._params["weight"].grad, module.weight.grad.numpy(), rtol=tol, atol=tol)
        np.testing.assert_allclose(layer._params["bias"].grad, module.bias.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("numba_on", [True, False] if kernels.AVAILABLE else [False])
def test_inference_takes_im2col_where_training_takes_shifted(numba_on, monkeypatch):
    """Without numba, LeNet's conv2 (6·5·5 = 150 values per window): "shifted" for training
    (its one-GEMM dW), im2col for inference; with numba, "offset" for both; every choice gives
    the reference loops' output."""
    from convscope.ops.conv import choose_path
    monkeypatch.setattr(kernels, "AVAILABLE", numba_on)
    pads = ((0, 0), (0, 0))
    if numba_on:
        assert choose_path("auto", (5, 5), (1, 1), (1, 1), 1, pads, 6, 16, width=14) == "offset"
        assert choose_path("auto", (5, 5), (1, 1), (1, 1), 1, pads, 6, 16, width=14, inference=True) == "offset"
        monkeypatch.setattr(kernels, "AVAILABLE", False)
    assert choose_path("auto", (5, 5), (1, 1), (1, 1), 1, pads, 6, 16, width=14) == "shifted"
    assert choose_path("auto", (5, 5), (1, 1), (1, 1), 1, pads, 6, 16, width=14, inference=True) == "im2col"
    monkeypatch.setattr(kernels, "AVAILABLE", numba_on)
    rng = np.random.default_rng(6)
    x, w = rng.standard_normal((2, 6, 9, 9)), rng.standard_normal((4, 6, 5, 5))
    expected, _ = conv_ops.conv2d_forward(x, w, None, path="reference")
    for keep in (True, False):
        y, _ = conv_ops.conv2d_forward(x, w, None, keep_for_backward=keep)
        np.testing.assert_allclose(y, expected, rtol=1e-9, atol=1e-9)


def test_build_without_initialisation_gives_zero_parameters_and_the_usual_buffers():
    """Importers build under without_initialisation() and then set every weight from the file:
    parameters start at 0 (no random draw), running variances at their usual 1."""
    from convscope.layers.base import without_initialisation
    with without_initialisation():
        model = _mobile_block().build((3, 12, 12), seed=0)
    assert all(not p.value.any() for p in model.parameters())
    assert sum(p.value.size for p in model.parameters()) == sum(
        p.value.size for p in _mobile_block().build((3, 12, 12), seed=0).parameters())
    variances = [b for name, b in model.named_buffers() if name.endswith("running_var")]
    assert variances and all((v == 1).all() for v in variances)
    assert any(p.value.any() for p in _mobile_block().build((3, 12, 12), seed=0).parameters())


@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba is not installed (the test extra installs it)")
@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 4), c_in=st.integers(1, 5), c_out=st.integers(1, 6), side=st.integers(3, 11),
       k=st.integers(1, 4), pad=st.integers(0, 2), wide=st.integers(0, 3), float32=st.booleans(),
       threads_known=st.sampled_from([1, 2, 3]))
def test_offset_path_matches_the_reference_loops(n, c_in, c_out, side, k, pad, wide, float32, threads_known):
    """The "offset" path (windows copied offset by offset by numba, one GEMM over the batch):
    forward (inference and training), dx, dW and db equal the reference loops' to 1e-12 in
    float64 and 1e-5 in float32, for any threads splitting the loops; so does the inference
    plan's step."""
    from convscope import threads
    threads._known, old = threads_known, threads._known
    try:
        dtype = np.float32 if float32 else np.float64
        rng = np.random.default_rng(n * 100 + side)
        x = rng.standard_normal((n, c_in, side, side + wide)).astype(dtype)
        w = rng.standard_normal((c_out, c_in, k, k)).astype(dtype)
        b = rng.standard_normal(c_out).astype(dtype)
        if side + 2 * pad < k:
            return
        y, cache = conv_ops.conv2d_forward(x, w, b, 1, pad, keep_for_backward=False, path="offset")
        assert cache is None and y.dtype == dtype
        x64, w64, b64 = x.astype(np.float64), w.astype(np.float64), b.astype(np.float64)
        expected, ref_cache = conv_ops.conv2d_forward(x64, w64, b64, 1, pad, path="reference")
        tol = 1e-5 if float32 else 1e-12
        np.testing.assert_allclose(y, expected, rtol=tol, atol=tol)
        y_train, cache = conv_ops.conv2d_forward(x, w, b, 1, pad, path="offset")
        assert cache.path == "offset" and y_train.dtype == dtype
        np.testing.assert_allclose(y_train, expected, rtol=tol, atol=tol)
        dy = rng.standard_normal(y.shape).astype(dtype)
        grads = conv_ops.conv2d_backward(dy, cache)
        for got, want in zip(grads, conv_ops.conv2d_backward(dy.astype(np.float64), ref_cache)):
            assert got.dtype == dtype
            np.testing.assert_allclose(got, want, rtol=tol * 10, atol=tol * 10)
        run = conv_ops.conv2d_inference_step(x.shape, w.shape, dtype, 1, pad, 1, 1)
        if run is not None:   # the plan's step: im2col or "offset", whichever auto takes
            np.testing.assert_allclose(run(x, w, b), expected, rtol=tol, atol=tol)
    finally:
        threads._known = old
