"""Traces: seed 002's numbers exactly, the engine's numbers on random cases, and one-line
errors for values that do not fit."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from convscope import ConvscopeError
from convscope.cli import main
from convscope.trace import parse_values, trace_conv1d, trace_conv2d, trace_linear, trace_maxpool2d

TOL = dict(rtol=1e-9, atol=1e-9)


def test_seed_002_numbers_exactly():
    # Seed 002: x=[1,2,3], w=[0.3,0.5], b=0, dy=[-0.1,0.2] (stride 1, no padding).
    # y = [1·0.3+2·0.5, 2·0.3+3·0.5] = [1.3, 2.1]; dW = [1·(−0.1)+2·0.2, 2·(−0.1)+3·0.2] = [0.3, 0.4];
    # db = −0.1+0.2 = 0.1; dx = [0.3·(−0.1), 0.5·(−0.1)+0.3·0.2, 0.5·0.2] = [−0.03, 0.01, 0.1].
    out = trace_conv1d("1,2,3", "0.3,0.5", "0", "-0.1,0.2").to_json()
    assert out["y"] == [1.3, 2.1]
    assert out["dw"] == [0.3, 0.4]
    assert out["db"] == [0.1]
    assert out["dx"] == [-0.03, 0.01, 0.1]
    steps = out["steps"]
    assert "y[0] = x[0]·w[0] + x[1]·w[1] + b = 1·0.3 + 2·0.5 + 0 = 1.3" in steps
    assert "dW[0] = x[0]·dy[0] + x[1]·dy[1] = 1·(−0.1) + 2·0.2 = 0.3" in steps
    assert "dx[1] = w[1]·dy[0] + w[0]·dy[1] = 0.5·(−0.1) + 0.3·0.2 = 0.01" in steps


def test_seed_002_from_the_command_line(capsys):
    # Same numbers through `convscope trace ... --format json`, with "-0.1,0.2" read as a value.
    code = main(["trace", "conv1d", "--x", "1,2,3", "--w", "0.3,0.5", "--b", "0", "--dy", "-0.1,0.2",
                 "--format", "json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"y", "dw", "db", "dx", "steps"}
    assert (out["y"], out["dw"], out["db"], out["dx"]) == ([1.3, 2.1], [0.3, 0.4], [0.1], [-0.03, 0.01, 0.1])


def test_text_output_is_plain_when_piped(capsys):
    assert main(["trace", "conv1d", "--x", "1,2,3", "--w", "0.3,0.5", "--b", "0", "--dy", "-0.1,0.2"]) == 0
    text = capsys.readouterr().out
    assert "dW[1] = x[1]·dy[0] + x[2]·dy[1] = 2·(−0.1) + 3·0.2 = 0.4" in text
    assert "\x1b[" not in text  # no terminal colour codes


def _torch_conv(x, w, b, dy, stride, padding, dilation, ndim):
    fn = torch.nn.functional.conv1d if ndim == 1 else torch.nn.functional.conv2d
    tx = torch.tensor(x[None], requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    y = fn(tx, tw, tb, stride=stride, padding=padding, dilation=dilation)
    y.backward(torch.tensor(dy[None]))
    return y.detach().numpy()[0], tw.grad.numpy(), tb.grad.numpy(), tx.grad.numpy()[0]


@settings(max_examples=15, deadline=None)
@given(ndim=st.sampled_from([1, 2]), c_in=st.integers(1, 2), c_out=st.integers(1, 2), n=st.integers(3, 5),
       k=st.integers(1, 3), s=st.integers(1, 2), p=st.integers(0, 1), d=st.integers(1, 2),
       seed=st.integers(0, 10_000))
def test_conv_trace_equals_torch_float64(ndim, c_in, c_out, n, k, s, p, d, seed):
    # Oracle: PyTorch float64 on the same random values; the trace also checked its own sums
    # against the engine before printing.
    if d * (k - 1) + 1 > n + 2 * p:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((c_in,) + (n,) * ndim)
    w = rng.standard_normal((c_out, c_in) + (k,) * ndim)
    b = rng.standard_normal(c_out)
    out = ((n + 2 * p - d * (k - 1) - 1) // s + 1,) * ndim
    dy = rng.standard_normal((c_out,) + out)
    fn = trace_conv1d if ndim == 1 else trace_conv2d
    t = fn(x, w, b, dy, stride=s, padding=p, dilation=d)
    y, dw, db, dx = _torch_conv(x, w, b, dy, s, p, d, ndim)
    np.testing.assert_allclose(t.y, y, **TOL)
    np.testing.assert_allclose(t.dw, dw, **TOL)
    np.testing.assert_allclose(t.db, db, **TOL)
    np.testing.assert_allclose(t.dx, dx, **TOL)
    # One forward line per output value, one dW line per weight, one dx line per input value.
    assert sum(1 for line in t.steps if line.startswith("y[") and " = " in line and "Σ" not in line) == y.size
    assert sum(1 for line in t.steps if line.startswith("dW[") and "Σ" not in line) == w.size
    assert sum(1 for line in t.steps if line.startswith("dx[") and "Σ" not in line) == x.size


def test_stride_padding_dilation_are_shown():
    # n=5, k=2, s=2, p=1, d=2: L_out = ⌊(5 + 2 − 2·1 − 1)/2⌋ + 1 = 3.
    t = trace_conv1d("1,2,3,4,5", "1,-1", None, "1,1,1", stride=2, padding=1, dilation=2)
    assert t.y.shape == (3,)
    steps = "\n".join(t.steps)
    assert "= ⌊(5 + 1 + 1 − 2·(2 − 1) − 1)/2⌋ + 1 = 3" in steps
    assert "reads x[2i + 2a − 1]" in steps
    assert "y[0] = pad·w[0] + x[1]·w[1] = 0·1 + 2·(−1) = −2" in steps
    assert t.db is None  # no --b: no bias gradient


def test_maxpool_trace_equals_torch_float64():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 5))
    dy = rng.standard_normal((2, 3, 3))  # H_out = ⌊(5 + 2 − 2 − 1)/2⌋ + 1 = 3
    t = trace_maxpool2d(x, 3, dy, stride=2, padding=1)
    tx = torch.tensor(x[None], requires_grad=True)
    y = torch.nn.functional.max_pool2d(tx, 3, stride=2, padding=1)
    y.backward(torch.tensor(dy[None]))
    np.testing.assert_allclose(t.y, y.detach().numpy()[0], **TOL)
    np.testing.assert_allclose(t.dx, tx.grad.numpy()[0], **TOL)
    assert t.dw is None and t.db is None


def test_maxpool_routes_gradient_to_the_first_maximum():
    # Window [[1, 3], [3, 0]]: the max 3 appears twice; the first (x[0,1]) takes dy = 5.
    t = trace_maxpool2d("[[1,3],[3,0]]", 2, "[[5]]")
    assert t.dx.tolist() == [[0, 5], [0, 0]]
    assert "y[0,0] = max(x[0,0], x[0,1], x[1,0], x[1,1]) = max(1, 3, 3, 0) = 3  ← x[0,1]" in t.steps


def test_linear_trace_equals_torch_float64():
    rng = np.random.default_rng(4)
    x, w, b, dy = rng.standard_normal(4), rng.standard_normal((3, 4)), rng.standard_normal(3), rng.standard_normal(3)
    t = trace_linear(x, w, b, dy)
    tx, tw, tb = (torch.tensor(v, requires_grad=True) for v in (x, w, b))
    y = torch.nn.functional.linear(tx, tw, tb)
    y.backward(torch.tensor(dy))
    for ours, theirs in ((t.y, y.detach()), (t.dw, tw.grad), (t.db, tb.grad), (t.dx, tx.grad)):
        np.testing.assert_allclose(ours, theirs.numpy(), **TOL)


def test_value_forms_agree():
    # 1,2,3,4 as nested lists and as shape+values give the same 2×2 array.
    a = parse_values("[[1,2],[3,4]]", "--x")
    b = parse_values("2x2:1,2,3,4", "--x")
    assert a.tolist() == b.tolist() == [[1.0, 2.0], [3.0, 4.0]]


@pytest.mark.parametrize("argv, phrase", [
    (["conv1d", "--x", "1,2,3", "--w", "0.3,0.5", "--dy", "1,2,3"], "--dy has shape 3 but the output y has shape 2"),
    (["conv1d", "--x", "1,2", "--w", "1,2,3"], "the kernel spans 3 positions"),
    (["conv1d", "--x", "1,a", "--w", "1"], "could not read 'a' as a number"),
    (["conv2d", "--x", "[[1,2],[3]]", "--w", "[[1]]"], "rows must all have the same length"),
    (["conv2d", "--x", "2x2:1,2,3", "--w", "[[1]]"], "shape 2x2 needs 4 values, got 3"),
    (["conv1d", "--x", "1,2,3", "--w", "1,1", "--b", "1,2"], "--b has 2 values"),
    (["linear", "--x", "1,2", "--w", "1,2,3"], "--w must have shape n_out×2"),
    (["maxpool2d", "--x", "[[1,2],[3,4]]"], "needs --kernel-size"),
])
def test_bad_values_are_one_line_errors(capsys, argv, phrase):
    assert main(["trace"] + argv) == 2
    err = capsys.readouterr().err
    assert phrase in err
    assert err.count("\n") == 1 and "Traceback" not in err
