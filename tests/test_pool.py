"""Pooling layers and ops against their oracles: PyTorch in float64 (1e-9), finite differences,
and the seeds' numbers."""
import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import convscope as cs
from convscope.errors import ConvscopeError
from convscope.layers import (AdaptiveAvgPool2d, AvgPool1d, AvgPool2d, GlobalAvgPool, MaxPool1d,
                              MaxPool2d)
from convscope.ops import pool as ops
from convscope.shapes import prod

from oracle import assert_matches_torch

FAST = settings(max_examples=30, deadline=None)


class TorchMean(torch.nn.Module):
    """The oracle for GlobalAvgPool: a mean over every spatial axis."""

    def forward(self, x):
        return x.mean(dim=tuple(range(2, x.dim())))


def distinct_input(shape, seed=0):
    """Values at least 0.1 apart, shuffled: no ties, so max pooling is differentiable and a
    finite-difference step of 1e-6 never changes which input wins."""
    rng = np.random.default_rng(seed)
    return (rng.permutation(prod(shape)).reshape(shape) * 0.1 - 1.0).astype(np.float64)


def torch_raises(fn) -> bool:
    try:
        fn()
    except RuntimeError:
        return True
    return False


# ----- the seed's numbers -------------------------------------------------------------------

def test_seed_004_alexnet_pool_gives_9216():
    # Seed 004: AlexNet's 256×13×13 through maxpool2d(3, stride=2): floor((13 - 3)/2) + 1 = 6,
    # so 256×6×6 = 9,216 features reach the first linear layer.
    pool = MaxPool2d(3, stride=2)
    assert pool.output_shape((256, 13, 13)) == (256, 6, 6)
    assert prod(pool.output_shape((256, 13, 13))) == 9216
    y, _ = assert_matches_torch(pool, torch.nn.MaxPool2d(3, stride=2), (256, 13, 13), batch=1)
    assert y.shape == (1, 256, 6, 6)


# ----- PyTorch oracles, randomised ------------------------------------------------------------

@st.composite
def sliding_case(draw, spatial, dilation=True):
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(spatial))
    stride = draw(st.one_of(st.none(), st.tuples(*[st.integers(1, 3)] * spatial)))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    dil = tuple(draw(st.integers(1, 2)) for _ in range(spatial)) if dilation else (1,) * spatial
    size = tuple(draw(st.integers(1, 9)) for _ in range(spatial))
    batch = draw(st.integers(1, 2))
    channels = draw(st.integers(1, 3))
    ceil_mode = draw(st.booleans())
    return kernel, stride, padding, dil, (channels,) + size, batch, ceil_mode


def _check_sliding(ours, theirs, shape, batch, x=None):
    """Our shape rule raises exactly when PyTorch does; otherwise outputs and dL/dx agree."""
    if x is None:
        x = distinct_input((batch,) + shape, seed=batch)
    try:
        ours.output_shape(shape)
    except ConvscopeError:
        assert torch_raises(lambda: theirs(torch.from_numpy(x)))
        return
    reference = theirs(torch.from_numpy(x)).numpy()
    # A dilated window can hold only padding; PyTorch then outputs -inf (and so do we), but its
    # gradient is not meaningful: compare such outputs without backward.
    if not np.isfinite(reference).all():
        ours.build(shape, dtype=np.float64)
        np.testing.assert_array_equal(ours.forward(x), reference)
        return
    assert_matches_torch(ours, theirs, shape, x=x)
    assert ours.output_shape(shape) == reference.shape[1:]


@FAST
@given(sliding_case(2))
def test_maxpool2d_matches_torch(case):
    kernel, stride, padding, dilation, shape, batch, ceil_mode = case
    ours = MaxPool2d(kernel, stride, padding, dilation, ceil_mode)
    theirs = torch.nn.MaxPool2d(kernel, stride, padding, dilation, ceil_mode=ceil_mode)
    _check_sliding(ours, theirs, shape, batch)


@FAST
@given(sliding_case(1))
def test_maxpool1d_matches_torch(case):
    (k,), stride, (p,), (d,), shape, batch, ceil_mode = case
    s = None if stride is None else stride[0]
    _check_sliding(MaxPool1d(k, s, p, d, ceil_mode),
                   torch.nn.MaxPool1d(k, s, p, d, ceil_mode=ceil_mode), shape, batch)


@FAST
@given(sliding_case(2, dilation=False), st.booleans(), st.one_of(st.none(), st.integers(1, 5)))
def test_avgpool2d_matches_torch(case, count_include_pad, divisor_override):
    kernel, stride, padding, _, shape, batch, ceil_mode = case
    ours = AvgPool2d(kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
    theirs = torch.nn.AvgPool2d(kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
    _check_sliding(ours, theirs, shape, batch)


@FAST
@given(sliding_case(1, dilation=False), st.booleans())
def test_avgpool1d_matches_torch(case, count_include_pad):
    (k,), stride, (p,), _, shape, batch, ceil_mode = case
    s = None if stride is None else stride[0]
    _check_sliding(AvgPool1d(k, s, p, ceil_mode, count_include_pad),
                   torch.nn.AvgPool1d(k, s, p, ceil_mode, count_include_pad), shape, batch)


@FAST
@given(st.integers(1, 9), st.integers(1, 9), st.one_of(st.none(), st.integers(1, 6)),
       st.one_of(st.none(), st.integers(1, 6)), st.integers(1, 2))
def test_adaptive_avgpool2d_matches_torch(h, w, out_h, out_w, batch):
    # Windows [floor(i·n/m), ceil((i+1)·n/m)) of unequal sizes, overlapping, or wider than the input.
    assume(out_h is not None or out_w is not None)
    ours = AdaptiveAvgPool2d((out_h, out_w))
    theirs = torch.nn.AdaptiveAvgPool2d((out_h, out_w))
    y, _ = assert_matches_torch(ours, theirs, (2, h, w), batch=batch)
    assert y.shape[2:] == (out_h or h, out_w or w)


@pytest.mark.parametrize("shape", [(3, 7), (2, 5, 4), (1, 1, 1)])
def test_global_avgpool_matches_torch_mean(shape):
    y, _ = assert_matches_torch(GlobalAvgPool(), TorchMean(), shape, batch=2)
    assert y.shape == (2, shape[0])  # (N, C): spatial axes removed, as in Keras


def test_ceil_mode_overhanging_window_matches_torch():
    # n=5, k=2, s=2, ceil: ceil((5 - 2)/2) + 1 = 3 windows; the third starts at 4 (inside the
    # input) and runs one past it. Max ignores the missing column; the average divides by 1
    # (the clipped size) with count_include_pad, also 1 without it.
    x = distinct_input((1, 1, 5, 5))
    for ours, theirs in [(MaxPool2d(2, ceil_mode=True), torch.nn.MaxPool2d(2, ceil_mode=True)),
                         (AvgPool2d(2, ceil_mode=True), torch.nn.AvgPool2d(2, ceil_mode=True)),
                         (AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
                          torch.nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False))]:
        y, _ = assert_matches_torch(ours, theirs, (1, 5, 5), x=x)
        assert y.shape == (1, 1, 3, 3)


def test_ceil_mode_keeps_a_window_larger_than_the_padded_input():
    # n=1, k=3, s=3, p=0: span n - d·(k - 1) - 1 = -2 > -s, so PyTorch's ceil mode keeps one
    # window (k=4 would give -3 = -s: no window, an error in both).
    x = distinct_input((1, 2, 1, 1))
    y, _ = assert_matches_torch(MaxPool2d(3, ceil_mode=True),
                                torch.nn.MaxPool2d(3, ceil_mode=True), (2, 1, 1), x=x)
    np.testing.assert_array_equal(y, x)  # the only real input wins
    y, _ = assert_matches_torch(AvgPool2d(3, ceil_mode=True),
                                torch.nn.AvgPool2d(3, ceil_mode=True), (2, 1, 1), x=x)
    np.testing.assert_array_equal(y, x)  # divisor clipped to the padded input: 1×1
    with pytest.raises(ConvscopeError, match="ceil_mode allows 2 more, so the height must be at least 2"):
        MaxPool2d(4, 3, ceil_mode=True).output_shape((2, 1, 1))
    assert torch_raises(lambda: torch.nn.MaxPool2d(4, 3, ceil_mode=True)(torch.from_numpy(x)))


def test_max_ties_send_the_gradient_to_the_first_maximum_like_torch():
    # An all-equal input: every window's maximum is its first (top-left) element in PyTorch.
    x = np.zeros((1, 1, 4, 4))
    dx = assert_matches_torch(MaxPool2d(2, stride=1), torch.nn.MaxPool2d(2, stride=1), (1, 4, 4), x=x)[1]
    assert np.count_nonzero(dx[0, 0, 3, :]) == 0 and np.count_nonzero(dx[0, 0, :, 3]) == 0


def test_float32_forward_stays_float32():
    pool = MaxPool2d(2).build((3, 8, 8))
    y = pool.forward(np.ones((2, 3, 8, 8), np.float32))
    assert y.dtype == np.float32 and y.shape == (2, 3, 4, 4)
    assert pool.backward(np.ones_like(y)).dtype == np.float32


# ----- finite differences ---------------------------------------------------------------------

@pytest.mark.parametrize("layer,shape", [
    (MaxPool2d(3, stride=2, padding=1), (2, 7, 6)),
    (MaxPool2d((2, 3), stride=(1, 2), dilation=(2, 1), ceil_mode=True), (1, 6, 7)),
    (MaxPool1d(3, stride=2, padding=1, ceil_mode=True), (2, 8)),
    (AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False), (2, 6, 7)),
    (AvgPool2d(2, stride=1, divisor_override=3), (1, 4, 5)),
    (AvgPool1d(4, stride=3, padding=2, ceil_mode=True), (2, 9)),
    (AdaptiveAvgPool2d((3, 4)), (2, 5, 7)),
    (GlobalAvgPool(), (3, 4, 5)),
    (GlobalAvgPool(), (3, 6)),
], ids=repr)
def test_gradcheck(layer, shape):
    x = distinct_input((2,) + shape, seed=1)
    report = cs.gradcheck(layer, x)
    assert report["x"] < 1e-6


def test_ops_gradcheck_as_plain_functions():
    def forward(x):
        return ops.avg_pool2d_forward(x, (3, 2), (2, 1), (1, 1), True, False)[0]

    def backward(dy, x):
        return ops.avg_pool2d_backward(dy, ops.avg_pool2d_forward(x, (3, 2), (2, 1), (1, 1), True, False)[1])

    assert cs.gradcheck(forward, [distinct_input((1, 2, 5, 4))], backward)["input0"] < 1e-6


# ----- shape rules, windows, bookkeeping ------------------------------------------------------

def test_no_parameters_and_no_macs():
    for layer, shape in [(MaxPool2d(2), (3, 8, 8)), (AvgPool1d(2), (3, 8)), (AdaptiveAvgPool2d(2), (3, 8, 8)),
                         (GlobalAvgPool(), (3, 8, 8))]:
        layer.build(shape)
        assert layer.parameters() == [] and layer.state_dict() == {}
        assert layer.macs(shape) == 0


def test_windows_for_receptive_fields():
    # (k, s, p_lo, d) per spatial axis; stride defaults to the kernel.
    assert MaxPool2d(3, stride=2, padding=1, dilation=(1, 2)).window((1, 9, 9)) == ((3, 2, 1, 1), (3, 2, 1, 2))
    assert MaxPool1d(2).window((1, 9)) == ((2, 2, 0, 1),)
    assert AvgPool2d((2, 3)).window((1, 9, 9)) == ((2, 2, 0, 1), (3, 3, 0, 1))
    # 12 -> 4 divides exactly: k = s = 3; 13 -> 5 does not: windows [0,3) [2,6) [5,8) [7,11)
    # [10,13), the largest is 4 wide, starts step by at least floor(13/5) = 2.
    assert AdaptiveAvgPool2d((4, 5)).window((1, 12, 13)) == ((3, 3, 0, 1), (4, 2, 0, 1))
    assert AdaptiveAvgPool2d((None, 1)).window((1, 6, 6)) == ((1, 1, 0, 1), (6, 6, 0, 1))
    assert GlobalAvgPool().window((1, 6, 6)) == "global"


def test_spec_round_trip_and_repr():
    # type names are the spec's; stride=None (= kernel) stays out of the spec like any default.
    layers = [MaxPool1d(3), MaxPool2d(3, stride=2), AvgPool1d(4, padding=2, count_include_pad=False),
              AvgPool2d(2, divisor_override=3), AdaptiveAvgPool2d((None, 7)), GlobalAvgPool()]
    assert [layer.type_name for layer in layers] == ["maxpool1d", "maxpool2d", "avgpool1d", "avgpool2d",
                                                     "adaptive_avgpool2d", "global_avgpool"]
    assert repr(layers[1]) == "MaxPool2d(3, stride=2)"
    assert layers[1].spec() == {"type": "maxpool2d", "kernel_size": 3, "stride": 2}
    assert layers[4].spec() == {"type": "adaptive_avgpool2d", "output_size": [None, 7]}
    model = cs.from_spec({"layers": [layer.spec() for layer in layers[:2]]})
    assert model.spec()["layers"] == [{"type": "maxpool1d", "kernel_size": 3},
                                      {"type": "maxpool2d", "kernel_size": 3, "stride": 2}]
    text = cs.parse_text("maxpool2d(2) -> avgpool2d(3, stride=1, padding=1) -> global_avgpool")
    assert text.output_shape((4, 8, 8)) == (4,)


# ----- errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("make,message", [
    (lambda: MaxPool2d(3, padding=2),
     "maxpool2d(3, padding=2): padding 2 along the height is more than half of kernel_size 3; "
     "PyTorch allows at most 1, so use padding <= kernel_size // 2"),
    (lambda: AvgPool1d(2, padding=2), "avgpool1d(2, padding=2): padding 2 along the length"),
    (lambda: MaxPool2d(0), "maxpool2d: kernel_size must be positive, got 0"),
    (lambda: MaxPool2d(2, stride=0), "maxpool2d: stride must be positive"),
    (lambda: MaxPool2d(2, dilation=[1, 2, 3]), "maxpool2d: dilation must have 2 values"),
    (lambda: MaxPool2d(3, padding="same"), "PyTorch's pooling has no 'same' or 'valid'"),
    (lambda: MaxPool2d(2, ceil_mode="yes"), "maxpool2d: ceil_mode must be true or false"),
    (lambda: AvgPool2d(2, count_include_pad=None), "avgpool2d: count_include_pad must be true or false"),
    (lambda: AvgPool2d(2, divisor_override=0), "divisor_override must be a non-zero integer or None, got 0"),
    (lambda: AdaptiveAvgPool2d(0), "adaptive_avgpool2d: output_size must be a positive integer"),
    (lambda: AdaptiveAvgPool2d((1, 2, 3)), "output_size must be a positive integer or a pair"),
])
def test_construction_errors(make, message):
    with pytest.raises(ConvscopeError) as info:
        make()
    assert message in str(info.value)


def test_too_small_input_says_by_how_much():
    # Width 2 under a 3-wide window with no padding: 1 short.
    with pytest.raises(ConvscopeError) as info:
        MaxPool2d(3, stride=2).output_shape((256, 13, 2))
    assert str(info.value) == (
        "maxpool2d(3, stride=2): the input width 2 is too small for the window: kernel_size 3 spans 3, "
        "padding adds 0, so the width must be at least 3, 1 more than 2; use a larger input, more "
        "padding or a smaller kernel_size")
    # Dilation 2 makes a 3-tap window span 5; padding 1 covers 2 of it, so 3 rows are needed.
    with pytest.raises(ConvscopeError, match="kernel_size 3 dilated by 2 spans 5, padding adds 2, "
                                             "so the height must be at least 3, 2 more than 1"):
        MaxPool2d(3, padding=1, dilation=2).output_shape((1, 1, 9))


def test_wrong_rank_errors():
    with pytest.raises(ConvscopeError, match=r"maxpool2d\(2\) expects a per-sample input \(C, H, W\), got 3×8"):
        MaxPool2d(2).output_shape((3, 8))
    with pytest.raises(ConvscopeError, match=r"maxpool1d\(2\) expects a per-sample input \(C, L\)"):
        MaxPool1d(2).output_shape((3, 8, 8))
    with pytest.raises(ConvscopeError, match=r"global_avgpool expects a per-sample input \(C, L\) or \(C, H, W\), "
                                             r"got 10 \(1 axis\)"):
        GlobalAvgPool().output_shape((10,))
    with pytest.raises(ConvscopeError, match="expects an array"):
        ops.max_pool2d_forward(np.zeros((2, 3, 4)), (2, 2), (2, 2))


def test_forward_on_a_too_small_batch_and_backward_misuse():
    pool = MaxPool2d(3).build((1, 6, 6), dtype=np.float64)
    with pytest.raises(ConvscopeError, match="too small for the window"):
        pool.forward(np.zeros((1, 1, 2, 6)))
    with pytest.raises(ConvscopeError, match="backward called before forward"):
        pool.backward(np.zeros((1, 1, 2, 2)))
    pool.forward(np.zeros((1, 1, 6, 6)))
    with pytest.raises(ConvscopeError, match=r"backward expects dy of shape \(1, 1, 2, 2\)"):
        pool.backward(np.zeros((1, 1, 3, 3)))


# ----- numba's loops (ops/kernels.py) against PyTorch ----------------------------------------

class _compiled_pools:
    """Inside: numba's pooling loops take every float input (no minimum size)."""

    def __enter__(self):
        from convscope.ops import kernels
        kernels.load()   # loaded: the exact kernels no longer wait for a large array
        self.kernels, self.saved = kernels, kernels.MIN_ELEMENTWISE
        kernels.MIN_ELEMENTWISE = 0

    def __exit__(self, *exc):
        self.kernels.MIN_ELEMENTWISE = self.saved


@FAST
@given(sliding_case(2))
def test_maxpool2d_matches_torch_through_numba(case):
    # The same oracle as above with every input on the compiled loops (the 2×2 stride-2 forward,
    # the overlapping-window backward), which otherwise start at kernels.MIN_ELEMENTWISE values.
    pytest.importorskip("numba")
    kernel, stride, padding, dilation, shape, batch, ceil_mode = case
    with _compiled_pools():
        _check_sliding(MaxPool2d(kernel, stride, padding, dilation, ceil_mode),
                       torch.nn.MaxPool2d(kernel, stride, padding, dilation, ceil_mode=ceil_mode), shape, batch)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel,stride,padding", [(2, 2, 0), (3, 2, 1)])
def test_large_maxpool_with_nan_inf_and_ties_matches_torch(dtype, kernel, stride, padding):
    # 2×8×36×36 = 20,736 values (> kernels.MIN_ELEMENTWISE): the compiled paths once numba is
    # loaded (kernels.exact_elementwise).
    # PyTorch's rule: a NaN wins its window (the last NaN keeps the index), ties keep the first
    # maximum; an inf gradient goes to the winner only (no 0·inf = NaN elsewhere).
    pytest.importorskip("numba")
    from convscope.ops import kernels
    kernels.load()
    rng = np.random.default_rng(kernel)
    x = rng.integers(-3, 3, (2, 8, 36, 36)).astype(dtype)   # many ties
    x.flat[rng.choice(x.size, 60, replace=False)] = np.nan
    x.flat[rng.choice(x.size, 60, replace=False)] = -np.inf
    assert x.size >= kernels.MIN_ELEMENTWISE
    for record in (True, False):
        y, cache = ops.max_pool2d_forward(x, (kernel,) * 2, (stride,) * 2, (padding,) * 2, record_argmax=record)
        tx = torch.tensor(x, requires_grad=True)
        ty = torch.nn.functional.max_pool2d(tx, kernel, stride, padding)
        np.testing.assert_array_equal(y, ty.detach().numpy())
        dy = rng.standard_normal(y.shape).astype(dtype)
        dy.flat[rng.choice(dy.size, 20, replace=False)] = np.inf
        ty.backward(torch.tensor(dy))
        # overlapping windows add up to 4 gradients at a position, in an order of their own
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(ops.max_pool2d_backward(dy, cache), tx.grad.numpy(), rtol=tol, atol=tol)


def test_compiled_and_numpy_max_pools_agree_exactly(monkeypatch):
    # The compiled 2×2 forward and the NumPy passes give the same maxima and window indices.
    pytest.importorskip("numba")
    from convscope.ops import kernels
    kernels.load()
    x = np.random.default_rng(3).standard_normal((4, 16, 30, 30)).astype(np.float32)
    x[0, 0, :4, :4] = np.nan
    compiled = ops.max_pool2d_forward(x, (2, 2), (2, 2))
    monkeypatch.setattr(kernels, "AVAILABLE", False)
    plain = ops.max_pool2d_forward(x, (2, 2), (2, 2))
    np.testing.assert_array_equal(compiled[0], plain[0])
    np.testing.assert_array_equal(compiled[1].payload, plain[1].payload)


def test_small_exact_kernels_do_not_load_numba_in_a_fresh_process():
    # kernels.exact_elementwise: ReLU and max pooling load numba only for arrays of at least
    # FIRST_LOAD_MIN_VALUES values (the main job's 8×8 maps never pay its import); once loaded,
    # smaller arrays take the compiled loops too.
    pytest.importorskip("numba")
    import subprocess
    import sys
    code = """
import sys
import numpy as np
from convscope.ops import activations, kernels, pool
small = np.ones((32, 32, 8, 8), np.float32)         # 65,536 values
pool.max_pool2d_forward(small, (2, 2), (2, 2)); activations.relu_forward(small)
print("numba" in sys.modules)
large = np.ones((1, 1, 1024, 1024), np.float32)     # FIRST_LOAD_MIN_VALUES
assert large.size >= kernels.FIRST_LOAD_MIN_VALUES
activations.relu_forward(large)
print("numba" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]
