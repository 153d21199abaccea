"""Issue 11 item 6: no op hands out a view of a reused work buffer.

The bug: at batch 1, a conv or pool padded only along H cropped its padded gradient buffer
into dL/dx with ``np.ascontiguousarray``, which returns the same memory when the crop is
contiguous (whole rows of a single plane). Inside a Residual or Concat the second branch's
backward then overwrote the first branch's dL/dx: on a 1×1×6×6 input the residual of two
``Conv2d(1, 3, padding=(1, 0))`` gave dL/dx = -0.76 where finite differences give 0.39.
Oracle here: central finite differences (cs.gradcheck, float64) and PyTorch.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convscope as cs
from convscope.layers import AvgPool2d, Concat, Conv2d, MaxPool2d, ReLU, Residual, Sequential
from convscope.ops import conv as conv_ops
from convscope.ops import pool as pool_ops
from convscope.ops.workspace import Workspace

X_1x1x6x6 = np.random.default_rng(0).standard_normal((1, 1, 6, 6))


@pytest.mark.parametrize("model", [
    lambda: Residual([Conv2d(1, 3, padding=(1, 0))], [Conv2d(1, 3, padding=(1, 0))]),
    lambda: Concat([[MaxPool2d(3, 1, (1, 0))], [MaxPool2d(3, 1, (1, 0)), ReLU()]]),
    lambda: Concat([[AvgPool2d(3, 1, (1, 0))], [AvgPool2d(3, 1, (1, 0)), ReLU()]]),
], ids=["residual-conv", "concat-maxpool", "concat-avgpool"])
@pytest.mark.parametrize("batch", [1, 2])
def test_issue_cases_pass_gradcheck(model, batch):
    # Before the fix the batch-1 cases failed (analytic -0.76 vs numeric 0.39 for the first).
    x = np.concatenate([X_1x1x6x6] * batch) + np.arange(batch).reshape(-1, 1, 1, 1)
    report = cs.gradcheck(model(), x)
    assert max(report.values()) < 1e-6


@pytest.mark.parametrize("path", ["im2col", "shifted", "depthwise", "winograd", "reference"])
def test_conv_dx_never_shares_memory_with_the_workspace(path):
    # A crop that is contiguous is where np.ascontiguousarray used to return the buffer itself:
    # one sample, H-only padding (depthwise: no padding at all).
    ws = Workspace()
    c = 2 if path == "depthwise" else 1
    x = np.random.default_rng(1).standard_normal((1, c, 6, 6))
    w = np.random.default_rng(2).standard_normal((c, 1, 3, 3))
    pads = ((0, 0), (0, 0)) if path == "depthwise" else ((1, 1), (0, 0))
    y, cache = conv_ops.conv2d_forward(x, w, None, 1, pads, 1, c if path == "depthwise" else 1,
                                       path=path, workspace=ws)
    dx, _, _ = conv_ops.conv2d_backward(np.ones_like(y), cache)
    for buffer in ws._buffers.values():
        assert not np.shares_memory(dx, buffer), path
        assert not np.shares_memory(y, buffer), path


@pytest.mark.parametrize("op", ["max", "avg"])
def test_pool_dx_never_shares_memory_with_the_workspace(op):
    ws = Workspace()
    x = np.random.default_rng(3).standard_normal((1, 1, 6, 6))
    forward = pool_ops.max_pool2d_forward if op == "max" else pool_ops.avg_pool2d_forward
    backward = pool_ops.max_pool2d_backward if op == "max" else pool_ops.avg_pool2d_backward
    y, cache = forward(x, (3, 3), (1, 1), (1, 0), workspace=ws)
    dx = backward(np.ones_like(y), cache)
    assert ws._buffers  # the padded paths did use the workspace
    for buffer in ws._buffers.values():
        assert not np.shares_memory(dx, buffer)


def test_each_layer_of_a_model_has_its_own_workspace_under_one_budget():
    model = Sequential([Conv2d(2, 3, padding=(1, 0)), ReLU(), Conv2d(2, 3, padding=(1, 0))])
    model.build((1, 6, 6), dtype=np.float64)
    spaces = [layer.workspace for layer in model.layers]
    assert len({id(s) for s in spaces}) == 3
    assert len({id(s.budget) for s in spaces}) == 1
    y = model.forward(np.ones((1, 1, 6, 6)), train=True)
    model.backward(np.ones_like(y))
    budget = spaces[0].budget
    assert budget.bytes == sum(s.kept_bytes() for s in spaces)
    # The convolutions' windows are scratch of each call: regions of the budget's one arena,
    # grown between calls to the deepest stack seen.
    assert budget._high > 0
    y = model.forward(np.full((1, 1, 6, 6), 2.0), train=True)
    model.backward(np.ones_like(y))
    arena = budget._arena
    assert budget.arena_bytes() == budget._high
    # The speed the pool was for: a further step reuses the very same buffers.
    before = {id(b) for s in spaces for b in s._buffers.values()}
    y = model.forward(np.full((1, 1, 6, 6), 3.0), train=True)
    model.backward(np.ones_like(y))
    assert budget._arena is arena
    assert {id(b) for s in spaces for b in s._buffers.values()} == before


def test_using_path_is_scoped_and_nests():
    x = np.random.default_rng(4).standard_normal((1, 1, 5, 5))
    w = np.ones((1, 1, 3, 3))
    assert conv_ops.get_default_path() == "auto"
    with conv_ops.using_path("reference"):
        assert conv_ops.conv2d_forward(x, w)[1].path == "reference"
        with conv_ops.using_path("im2col"):
            assert conv_ops.conv2d_forward(x, w)[1].path == "im2col"
        assert conv_ops.get_default_path() == "reference"
    assert conv_ops.get_default_path() == "auto"
    with pytest.raises(RuntimeError):
        with conv_ops.using_path("reference"):
            raise RuntimeError("the override must end with the block even on an error")
    assert conv_ops.get_default_path() == "auto"
    with pytest.raises(cs.ConvscopeError, match="convolution path must be one of"):
        with conv_ops.using_path("turbo"):
            pass


def test_using_path_does_not_leak_into_other_threads():
    import threading
    seen = []
    with conv_ops.using_path("reference"):
        worker = threading.Thread(target=lambda: seen.append(conv_ops.get_default_path()))
        worker.start()
        worker.join()
    assert seen == ["auto"]   # a thread starts with its own context: the process default


def test_using_path_is_reachable_as_cs_ops_conv():
    with cs.ops.conv.using_path("reference"):
        layer = Conv2d(1, 3).build((1, 5, 5), dtype=np.float64)
        layer.forward(np.zeros((1, 1, 5, 5)), train=True)
        assert layer._cache.path == "reference"


# ----- randomized: random convs and pools nested in Residual and Concat --------------------------

def _shape_keeping(draw, channels: int):
    """One layer that keeps (C, H, W): stride 1, kernel 1 or 3 per axis, padding k // 2 per
    axis (so often along one axis only)."""
    kh, kw = draw(st.sampled_from([1, 3])), draw(st.sampled_from([1, 3]))
    kind = draw(st.sampled_from(["conv", "depthwise", "max", "avg", "relu"]))
    if kind == "conv":
        return Conv2d(channels, (kh, kw), padding=(kh // 2, kw // 2), bias=draw(st.booleans()))
    if kind == "depthwise":
        return Conv2d(channels, (kh, kw), padding=(kh // 2, kw // 2), groups=channels)
    if kind == "relu":
        return ReLU()
    pool = MaxPool2d if kind == "max" else AvgPool2d
    return pool((kh, kw), 1, (kh // 2, kw // 2))


@st.composite
def nested_blocks(draw):
    channels = draw(st.integers(1, 2))

    def branch():
        return [_shape_keeping(draw, channels) for _ in range(draw(st.integers(1, 2)))]

    inner = draw(st.sampled_from(["residual", "concat"]))
    if inner == "residual":
        block = Residual(branch(), draw(st.sampled_from([None, "branch"])) and branch())
        out_channels = channels
    else:
        block = Concat([branch(), branch()])
        out_channels = 2 * channels
    # The block inside another Residual (whose shortcut is a same-padded conv) or Concat.
    if draw(st.booleans()):
        model = Residual([block, Conv2d(channels, 1)], [Conv2d(channels, (3, 1), padding=(1, 0))])
    else:
        model = Concat([[block], [MaxPool2d((3, 1), 1, (1, 0)), Conv2d(out_channels, 1)]])
    return model, channels


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nested_blocks(), st.integers(1, 2), st.sampled_from(["auto", "im2col", "shifted", "winograd",
                                                           "depthwise", "reference"]),
       st.integers(0, 2**16))
def test_random_nested_blocks_match_finite_differences(case, batch, path, seed):
    model, channels = case
    x = np.random.default_rng(seed).standard_normal((batch, channels, 5, 6))
    with conv_ops.using_path(path):
        report = cs.gradcheck(model, x, seed=seed, atol=1e-5, rtol=1e-4)
    assert max(report.values()) < 1e-5
