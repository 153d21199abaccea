"""Conv1d / Conv2d and the convolution ops, against oracles: the seeds' hand calculations,
PyTorch in float64 (1e-9), finite differences, and the reference path against the fast one."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import convscope as cs
from convscope.ops import conv as conv_ops
from convscope.shapes import conv_output_size, same_padding

from oracle import assert_matches_torch

TIGHT = 1e-10

# PyTorch warns that it copies the input for "same" with even kernels; that is its business.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding=.same.")


@pytest.fixture(params=["auto", "im2col", "reference"])
def path(request):
    """Run a test once with each default path, restoring the default afterwards."""
    old = conv_ops.get_default_path()
    conv_ops.set_default_path(request.param)
    yield request.param
    conv_ops.set_default_path(old)


# ----- seed 002: the 1-D example worked by hand ---------------------------------------------

@pytest.mark.parametrize("bias", [True, False])
def test_seed002_one_dimensional_example(path, bias):
    # x = [1, 2, 3], w = [0.3, 0.5], b = 0, stride 1, no padding:
    # y = [1·0.3 + 2·0.5, 2·0.3 + 3·0.5] = [1.3, 2.1]; with dy = [-0.1, 0.2]:
    # dW = [1·-0.1 + 2·0.2, 2·-0.1 + 3·0.2] = [0.3, 0.4], db = -0.1 + 0.2 = 0.1,
    # dx = [0.3·-0.1, 0.5·-0.1 + 0.3·0.2, 0.5·0.2] = [-0.03, 0.01, 0.1].
    model = cs.Sequential([cs.layers.Conv1d(1, 2, bias=bias)])
    model.build((1, 3), dtype=np.float64)
    state = {"0.weight": np.array([[[0.3, 0.5]]])}
    if bias:
        state["0.bias"] = np.array([0.0])
    model.load_state_dict(state)
    y = model.forward(np.array([[[1.0, 2.0, 3.0]]]), train=True)
    np.testing.assert_allclose(y, [[[1.3, 2.1]]], rtol=1e-9, atol=1e-9)
    dx = model.backward(np.array([[[-0.1, 0.2]]]))
    grads = {p.name: p.grad for p in model.parameters()}
    np.testing.assert_allclose(grads["0.weight"], [[[0.3, 0.4]]], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(dx, [[[-0.03, 0.01, 0.1]]], rtol=1e-9, atol=1e-9)
    if bias:
        np.testing.assert_allclose(grads["0.bias"], [0.1], rtol=1e-9, atol=1e-9)
    else:
        assert set(grads) == {"0.weight"}


# ----- seed 003: (11, 11, 4) input, F = 5, S = 2, P = 0 -------------------------------------

def test_seed003_activation_map_entries(path):
    # Output size (11 - 5)/2 + 1 = 4, so 4×4; the seed writes X and V in HWC (X[h, w, c],
    # V[h, w, d]), we hold NCHW: x[0, c, h, w] = X[h, w, c], V[h, w, d] = y[0, d, h, w].
    rng = np.random.default_rng(3)
    X = rng.standard_normal((11, 11, 4))
    W0, W1 = rng.standard_normal((5, 5, 4)), rng.standard_normal((5, 5, 4))
    b0, b1 = 0.25, -1.5
    layer = cs.layers.Conv2d(2, 5, stride=2)
    assert layer.output_shape((4, 11, 11)) == (2, 4, 4)
    layer.build((4, 11, 11), dtype=np.float64)
    layer.load_state_dict({"weight": np.stack([W0.transpose(2, 0, 1), W1.transpose(2, 0, 1)]),
                           "bias": np.array([b0, b1])})
    y = layer.forward(X.transpose(2, 0, 1)[None])
    assert y.shape == (1, 2, 4, 4)
    V = y[0].transpose(1, 2, 0)
    expected = {  # the seed's own expressions, evaluated literally
        (0, 0, 0): np.sum(X[:5, :5, :] * W0) + b0,
        (1, 0, 0): np.sum(X[2:7, :5, :] * W0) + b0,
        (2, 0, 0): np.sum(X[4:9, :5, :] * W0) + b0,
        (3, 0, 0): np.sum(X[6:11, :5, :] * W0) + b0,
        (0, 0, 1): np.sum(X[:5, :5, :] * W1) + b1,
        (1, 0, 1): np.sum(X[2:7, :5, :] * W1) + b1,
        (2, 0, 1): np.sum(X[4:9, :5, :] * W1) + b1,
        (3, 0, 1): np.sum(X[6:11, :5, :] * W1) + b1,
        (0, 1, 1): np.sum(X[:5, 2:7, :] * W1) + b1,
        (2, 3, 1): np.sum(X[4:9, 6:11, :] * W1) + b1,
    }
    for index, value in expected.items():
        assert V[index] == pytest.approx(value, rel=1e-12, abs=1e-12), index


def test_seed_parameter_counts():
    # Seed 000: a 5×5 conv with 32 filters on RGB: (3·5·5 + 1)·32 = 2,432.
    assert _count(cs.layers.Conv2d(32, 5), (3, 32, 32)) == 2432
    # Seed 001: 3×3 conv with k1 filters on grayscale, then 5×5 with k2: k1·3·3 + k1 + k2·5·5·k1 + k2.
    k1, k2 = 4, 6
    first, second = cs.layers.Conv2d(k1, 3, padding=1), cs.layers.Conv2d(k2, 5, padding=2)
    total = _count(first, (1, 10, 12)) + _count(second, first.output_shape((1, 10, 12)))
    assert total == k1 * 3 * 3 + k1 + k2 * 5 * 5 * k1 + k2 == 646
    # Seed 003: 96 shared 11×11×3 filters: 34,848 weights + 96 biases = 34,944.
    shapes = cs.layers.Conv2d(96, 11, stride=4).param_shapes((3, 227, 227))
    assert shapes == {"weight": (96, 3, 11, 11), "bias": (96,)}
    assert np.prod(shapes["weight"]) == 34848
    assert cs.layers.Conv2d(96, 11, stride=4).output_shape((3, 227, 227)) == (96, 55, 55)


def _count(layer, shape):
    return sum(int(np.prod(s)) for s in layer.param_shapes(shape).values())


# ----- shape rules ------------------------------------------------------------------------

def test_macs_follow_the_contract():
    # AlexNet conv1 on 3×224×224: 64·55·55·3·11·11 = 70,276,800 MACs.
    assert cs.layers.Conv2d(64, 11, stride=4, padding=2).macs((3, 224, 224)) == 70_276_800
    # Depthwise 3×3 on 32×112×112 (groups = 32): 32·112·112·1·3·3 = 3,612,672.
    assert cs.layers.Conv2d(32, 3, padding=1, groups=32).macs((32, 112, 112)) == 3_612_672
    # Grouped 1-D: 8 outputs, length (20 - 3)/1 + 1 = 18, 6/2 input channels per group, k = 3.
    assert cs.layers.Conv1d(8, 3, groups=2).macs((6, 20)) == 8 * 18 * 3 * 3
    # fan_in = (C_in/groups)·k_h·k_w
    assert cs.layers.Conv2d(8, (3, 5), groups=4).fan_in((12, 9, 9)) == 3 * 3 * 5


def test_window_and_same_padding_with_even_kernel():
    layer = cs.layers.Conv2d(8, 3, stride=2, padding=1, dilation=2)
    assert layer.window((3, 16, 16)) == ((3, 2, 1, 2), (3, 2, 1, 2))
    # "same" with k = 4: total padding 3, one before and two after (PyTorch's rule).
    same = cs.layers.Conv2d(8, 4, padding="same")
    assert same.window((3, 7, 7)) == ((4, 1, 1, 1), (4, 1, 1, 1))
    assert same.output_shape((3, 7, 7)) == (8, 7, 7)
    assert cs.layers.Conv1d(2, 3, padding="valid").output_shape((1, 10)) == (2, 8)


def test_spec_round_trip():
    model = cs.Sequential([cs.layers.Conv2d(8, [3, 5], stride=[1, 2], padding=[1, 2]),
                           cs.layers.Conv2d(8, 4, padding="same", dilation=2, groups=4, bias=False),
                           cs.layers.Conv1d(3, 2, in_channels=None)])
    entries = model.spec()["layers"]
    assert entries[0] == {"type": "conv2d", "out_channels": 8, "kernel_size": [3, 5], "stride": [1, 2],
                          "padding": [1, 2]}
    assert entries[1] == {"type": "conv2d", "out_channels": 8, "kernel_size": 4, "padding": "same",
                          "dilation": 2, "groups": 4, "bias": False}
    again = cs.from_spec(model.spec())
    assert repr(again) == repr(model)
    assert repr(model[1]) == "Conv2d(8, kernel_size=4, padding='same', dilation=2, groups=4, bias=False)"


# ----- PyTorch oracle (float64, 1e-9) ---------------------------------------------------------

@st.composite
def conv_cases(draw, ndim):
    """Random hyper-parameters and a per-sample input shape whose output is at least 1."""
    if draw(st.booleans()):  # depthwise (groups = C_in), optionally with a channel multiplier
        c_in = draw(st.integers(1, 4))
        groups, c_out = c_in, c_in * draw(st.integers(1, 2))
    else:
        groups = draw(st.integers(1, 3))
        c_in = groups * draw(st.integers(1, 3))
        c_out = groups * draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    stride = tuple(draw(st.integers(1, 5)) for _ in range(ndim))  # up to 5 > kernel sometimes
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    choice = draw(st.sampled_from(["int", "int", "valid", "same"]))
    if choice == "same":
        stride = (1,) * ndim
        padding, pads = "same", [same_padding(k, d) for k, d in zip(kernel, dilation)]
    elif choice == "valid":
        padding, pads = "valid", [(0, 0)] * ndim
    else:
        p = tuple(draw(st.integers(0, 3)) for _ in range(ndim))  # often >= kernel/2
        padding, pads = list(p), [(q, q) for q in p]
    spatial = []
    for k, d, (lo, hi) in zip(kernel, dilation, pads):
        smallest = max(1, d * (k - 1) + 1 - lo - hi)
        spatial.append(draw(st.integers(smallest, smallest + 6)))  # odd and even sizes
    batch = draw(st.integers(1, 3))
    bias = draw(st.booleans())
    return dict(c_in=c_in, c_out=c_out, groups=groups, kernel=kernel, stride=stride,
                dilation=dilation, padding=padding, spatial=tuple(spatial), batch=batch, bias=bias)


@settings(max_examples=30, deadline=None)
@given(case=conv_cases(2), seed=st.integers(0, 2**16))
def test_conv2d_matches_torch(case, seed):
    layer = cs.layers.Conv2d(case["c_out"], list(case["kernel"]), stride=list(case["stride"]),
                             padding=case["padding"], dilation=list(case["dilation"]),
                             groups=case["groups"], bias=case["bias"])
    module = torch.nn.Conv2d(case["c_in"], case["c_out"], case["kernel"], stride=case["stride"],
                             padding=case["padding"], dilation=case["dilation"], groups=case["groups"],
                             bias=case["bias"])
    assert_matches_torch(layer, module, (case["c_in"], *case["spatial"]), batch=case["batch"], seed=seed)


@settings(max_examples=30, deadline=None)
@given(case=conv_cases(1), seed=st.integers(0, 2**16))
def test_conv1d_matches_torch(case, seed):
    padding = case["padding"] if isinstance(case["padding"], str) else case["padding"][0]
    layer = cs.layers.Conv1d(case["c_out"], case["kernel"][0], stride=case["stride"][0], padding=padding,
                             dilation=case["dilation"][0], groups=case["groups"], bias=case["bias"])
    module = torch.nn.Conv1d(case["c_in"], case["c_out"], case["kernel"][0], stride=case["stride"][0],
                             padding=padding, dilation=case["dilation"][0], groups=case["groups"],
                             bias=case["bias"])
    assert_matches_torch(layer, module, (case["c_in"], *case["spatial"]), batch=case["batch"], seed=seed)


@pytest.mark.parametrize("kernel, dilation", [(2, 1), (4, 1), ((2, 4), (3, 1))])
def test_conv2d_same_even_kernel_matches_torch(path, kernel, dilation):
    # Even kernels pad one more pixel after than before; the output keeps the 5×6 size.
    layer = cs.layers.Conv2d(3, kernel, padding="same", dilation=dilation)
    module = torch.nn.Conv2d(2, 3, kernel, padding="same", dilation=dilation)
    y, _ = assert_matches_torch(layer, module, (2, 5, 6), batch=1)
    assert y.shape == (1, 3, 5, 6)


# ----- reference path == fast path ------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(case=conv_cases(2), asym=st.tuples(st.integers(0, 2), st.integers(0, 2)), seed=st.integers(0, 2**16))
def test_reference_equals_fast(case, asym, seed):
    rng = np.random.default_rng(seed)
    c_g = case["c_in"] // case["groups"]
    x = rng.standard_normal((case["batch"], case["c_in"], *case["spatial"]))
    w = rng.standard_normal((case["c_out"], c_g, *case["kernel"]))
    b = rng.standard_normal(case["c_out"]) if case["bias"] else None
    # Asymmetric padding (the op accepts ((top, bottom), (left, right))): extra pixels after.
    pads = tuple((lo, hi + extra) for (lo, hi), extra in
                 zip(_pads_of(case), asym))
    results = {}
    # Every fast path must equal the loops; Winograd only where it is exact (3×3, stride 1, ...).
    paths = ["reference", "im2col", "auto"]
    if tuple(case["stride"]) == (1, 1) and case["groups"] == 1:
        paths.append("shifted")
    if case["groups"] == case["c_in"] == case["c_out"] and case["groups"] > 1:
        paths.append("depthwise")
    if max(case["stride"]) > 1 and tuple(case["dilation"]) == (1, 1) and case["groups"] == 1:
        paths.append("space_to_depth")
    if conv_ops.winograd.applies(case["kernel"], case["stride"], case["dilation"], case["groups"]) \
            and max(max(p) for p in pads) <= 2:
        paths.append("winograd")
    for path_name in paths:
        y, cache = conv_ops.conv2d_forward(x, w, b, case["stride"], pads, case["dilation"],
                                           case["groups"], path=path_name)
        dy = np.random.default_rng(seed + 1).standard_normal(y.shape)
        results[path_name] = (y, *conv_ops.conv2d_backward(dy, cache))
    for path_name in paths[1:]:
        for name, ref, fast in zip(("y", "dx", "dw", "db"), results["reference"], results[path_name]):
            if ref is None:
                assert fast is None and b is None
                continue
            assert ref.shape == fast.shape, name
            np.testing.assert_allclose(fast, ref, rtol=TIGHT, atol=TIGHT, err_msg=f"{path_name} {name}")


def _pads_of(case):
    padding = case["padding"]
    if padding == "same":
        return [same_padding(k, d) for k, d in zip(case["kernel"], case["dilation"])]
    if padding == "valid":
        return [(0, 0), (0, 0)]
    return [(p, p) for p in padding]


def test_reference_equals_fast_one_dimensional():
    rng = np.random.default_rng(7)
    x, w, b = rng.standard_normal((2, 4, 11)), rng.standard_normal((6, 2, 3)), rng.standard_normal(6)
    dy = rng.standard_normal((2, 6, conv_output_size(11, 3, 2, 1, 2, 2)))
    outs = []
    for path_name in ("reference", "fast"):
        y, cache = conv_ops.conv1d_forward(x, w, b, stride=2, padding=(1, 2), dilation=2, groups=2,
                                           path=path_name)
        outs.append((y, *conv_ops.conv1d_backward(dy, cache)))
    for ref, fast in zip(*outs):
        np.testing.assert_allclose(fast, ref, rtol=TIGHT, atol=TIGHT)


# ----- finite differences -------------------------------------------------------------------------

@pytest.mark.parametrize("make, shape", [
    (lambda: cs.layers.Conv2d(4, 3, stride=2, padding=1, groups=2), (4, 5, 6)),
    (lambda: cs.layers.Conv2d(3, (2, 3), padding="same", dilation=(2, 1)), (2, 5, 4)),
    (lambda: cs.layers.Conv2d(2, 2, stride=3, bias=False), (1, 7, 5)),
    (lambda: cs.layers.Conv1d(4, 3, stride=2, padding=2, dilation=2, groups=2), (2, 9)),
    (lambda: cs.layers.Conv1d(2, 4, padding="same"), (3, 6)),
])
def test_gradcheck(path, make, shape):
    x = np.random.default_rng(1).standard_normal((2, *shape))
    report = cs.gradcheck(make(), x)
    assert max(report.values()) < 1e-6


# ----- dtypes, seeds, paths ---------------------------------------------------------------------

def test_float32_stays_float32(path):
    model = cs.Sequential([cs.layers.Conv2d(4, 3, padding=1, groups=2), cs.layers.Conv1d(2, 3)])
    conv = model[0].build((2, 5, 5), seed=0, dtype=np.float32)
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5)).astype(np.float32)
    y = conv.forward(x, train=True)
    dx = conv.backward(np.ones_like(y))
    assert y.dtype == dx.dtype == np.float32
    assert all(p.value.dtype == p.grad.dtype == np.float32 for p in conv.parameters())
    # the op alone keeps float32 too
    w = np.ones((3, 2, 2), dtype=np.float32)
    y1, cache = conv_ops.conv1d_forward(np.ones((1, 2, 5), np.float32), w, np.zeros(3, np.float32))
    grads = conv_ops.conv1d_backward(np.ones_like(y1), cache)
    assert y1.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)


def test_same_seed_same_weights():
    first = cs.layers.Conv2d(8, 3, groups=2).build((4, 9, 9), seed=11).state_dict()
    second = cs.layers.Conv2d(8, 3, groups=2).build((4, 9, 9), seed=11).state_dict()
    other = cs.layers.Conv2d(8, 3, groups=2).build((4, 9, 9), seed=12).state_dict()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    assert not np.array_equal(first["weight"], other["weight"])
    # PyTorch's default bound: 1/sqrt(fan_in) = 1/sqrt(2·3·3)
    assert np.abs(first["weight"]).max() <= 1 / np.sqrt(18)


def test_set_default_path_rejects_unknown_names():
    with pytest.raises(cs.ConvscopeError, match="convolution path must be one of auto, fast, im2col"):
        conv_ops.set_default_path("turbo")
    assert conv_ops.get_default_path() == "auto"


# ----- errors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, message", [
    (lambda: cs.layers.Conv2d(5, 3, groups=2), "groups=2 must divide out_channels=5"),
    (lambda: cs.layers.Conv2d(4, 3, groups=2, in_channels=3), "groups=2 must divide in_channels=3"),
    (lambda: cs.layers.Conv2d(0, 3), "out_channels must be a positive integer, got 0"),
    (lambda: cs.layers.Conv2d(4, 0), "kernel_size must be positive, got 0"),
    (lambda: cs.layers.Conv2d(4, 3, stride=-1), "stride must be positive, got -1"),
    (lambda: cs.layers.Conv2d(4, 3, padding=-1), "padding must be >= 0"),
    (lambda: cs.layers.Conv2d(4, 3, dilation=[1, 0]), "dilation must be positive"),
    (lambda: cs.layers.Conv1d(4, 3, groups=0), "groups must be a positive integer, got 0"),
    (lambda: cs.layers.Conv2d(4, 3, stride=2, padding="same"), "padding='same' needs stride 1"),
    (lambda: cs.layers.Conv2d(4, 3, padding="full"), "'same' or 'valid'"),
    (lambda: cs.layers.Conv2d(4, [3, 3, 3]), "kernel_size must have 2 values"),
])
def test_constructor_errors(make, message):
    with pytest.raises(cs.ConvscopeError, match=_literal(message)):
        make()


@pytest.mark.parametrize("layer, shape, message", [
    (cs.layers.Conv2d(4, 3, in_channels=3), (4, 8, 8), "in_channels=3 but the input 4×8×8 has 4 channels"),
    (cs.layers.Conv2d(4, 3, groups=2), (3, 8, 8), "groups=2 must divide the input channels, got 3"),
    # kernel 5 on height 3 (no padding): 2 too many
    (cs.layers.Conv2d(4, 5), (1, 3, 8), "spans 5 along height but the padded input has only 3 (3 + padding 0 + 0), 2 too many"),
    # dilated: span 2·(3 - 1) + 1 = 5 on width 2 + 1 + 1 = 4, 1 too many
    (cs.layers.Conv2d(4, 3, padding=1, dilation=2), (1, 8, 2), "spans 5 along width but the padded input has only 4"),
    (cs.layers.Conv1d(2, 4), (1, 3), "spans 4 along length"),
    (cs.layers.Conv2d(4, 3), (3, 8), "expects a per-sample input (C, H, W) with 3 axes, got 3×8"),
])
def test_shape_errors(layer, shape, message):
    with pytest.raises(cs.ConvscopeError, match=_literal(message)):
        layer.output_shape(shape)


def test_channel_mismatch_at_forward_and_int_input():
    model = cs.Sequential([cs.layers.Conv2d(4, 3)]).build((3, 8, 8))
    with pytest.raises(cs.ConvscopeError, match="built for 3 input channels, got 2"):
        model.forward(np.zeros((1, 2, 8, 8), np.float32))
    with pytest.raises(cs.ConvscopeError, match="floating-point"):
        model.forward(np.zeros((1, 3, 8, 8), dtype=np.int64))
    with pytest.raises(cs.ConvscopeError, match="floating-point"):
        conv_ops.conv2d_forward(np.zeros((1, 1, 3, 3), dtype=int), np.zeros((1, 1, 2, 2)))
    with pytest.raises(cs.ConvscopeError, match="expects 4 input channels"):
        conv_ops.conv2d_forward(np.zeros((1, 3, 3, 3)), np.zeros((2, 2, 2, 2)), groups=2)


def _literal(text):
    import re
    return re.escape(text)
