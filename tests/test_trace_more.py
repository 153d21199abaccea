"""Traces of relu, avgpool2d, batchnorm2d (training and inference), softmax + cross-entropy and
dropout (issue 15 point 9). Oracle: PyTorch in float64 on the same numbers (dropout: the rule
y = x·m/(1 − p) with the mask the trace prints)."""
import json

import numpy as np
import pytest

from convscope.cli import main
from convscope.trace import (trace_avgpool2d, trace_batchnorm2d, trace_dropout, trace_relu,
                             trace_softmax_cross_entropy)

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _t(values, grad=True):
    return torch.tensor(np.asarray(values, dtype=np.float64), requires_grad=grad)


def test_relu_against_torch():
    x, dy = [1.0, -2.0, 0.0, 3.5], [0.5, 1.0, 2.0, -1.0]
    t = trace_relu(x, dy=dy)
    xt = _t(x)
    yt = F.relu(xt)
    yt.backward(_t(dy, False))
    assert np.allclose(t.y, yt.detach().numpy(), atol=1e-15) and np.allclose(t.dx, xt.grad.numpy(), atol=1e-15)
    assert "y[1] = max(x[1], 0) = max(−2, 0) = 0" in t.steps
    assert "dx[2] = dy[2]·1[x[2] > 0] = 2·0 = 0" in t.steps  # gradient 0 at exactly 0, like torch


def test_avgpool2d_against_torch():
    x = np.arange(1.0, 17.0).reshape(1, 4, 4)
    dy = [[[1.0, -1.0], [0.5, 2.0]]]
    t = trace_avgpool2d(x, 3, dy=dy, stride=1, padding=0)
    xt = _t(x[None])
    yt = F.avg_pool2d(xt, 3, stride=1)
    yt.backward(_t(np.asarray(dy)[None], False))
    assert np.allclose(t.y, yt.detach().numpy()[0], atol=1e-12)
    assert np.allclose(t.dx, xt.grad.numpy()[0], atol=1e-12)
    # y[0,0,0] = (1+2+3+5+6+7+9+10+11)/9 = 54/9 = 6
    assert any(line.startswith("y[0,0,0] = (x[0,0,0] + ") and line.endswith("/9 = 6") for line in t.steps)


@pytest.mark.parametrize("train", [True, False])
def test_batchnorm2d_against_torch(train):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 2, 2, 2))
    dy = rng.normal(size=(2, 2, 2, 2))
    gamma, beta = [1.5, -0.5], [0.1, 0.2]
    rm, rv = [0.3, -0.2], [2.0, 0.5]
    t = trace_batchnorm2d(x, gamma=gamma, beta=beta, dy=dy, train=train, running_mean=rm, running_var=rv)
    xt, gt, bt = _t(x), _t(gamma), _t(beta)
    yt = F.batch_norm(xt, torch.tensor(rm, dtype=torch.float64), torch.tensor(rv, dtype=torch.float64),
                      gt, bt, training=train, eps=1e-5)
    yt.backward(_t(dy, False))
    assert np.allclose(t.y, yt.detach().numpy(), atol=1e-12)
    assert np.allclose(t.dx, xt.grad.numpy(), atol=1e-12)
    assert np.allclose(t.dw, gt.grad.numpy(), atol=1e-12) and np.allclose(t.db, bt.grad.numpy(), atol=1e-12)
    assert any(line.startswith("dγ[0] = Σ dy[:,0]·x̂[:,0]") for line in t.steps)


def test_softmax_cross_entropy_against_torch():
    z = [1.0, 2.0, 3.0]
    t = trace_softmax_cross_entropy(z, 2)
    zt = _t([z])
    loss = F.cross_entropy(zt, torch.tensor([2]))
    loss.backward()
    # L = −log(e³/(e¹ + e² + e³)) = 0.407606 (to 6 digits)
    assert abs(float(t.y) - loss.item()) < 1e-12 and abs(loss.item() - 0.4076059644) < 1e-9
    assert np.allclose(t.dx, zt.grad.numpy()[0], atol=1e-12)
    assert "L = −log p[2] = −log 0.665241 = 0.407606" in t.steps


def test_dropout_follows_its_mask():
    x, dy = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [1.0] * 6
    t = trace_dropout(x, 0.5, dy=dy, seed=0)
    kept = np.asarray(t.y) != 0
    assert np.allclose(np.asarray(t.y)[kept], 2 * np.asarray(x)[kept])  # scaled by 1/(1 − 0.5) = 2
    assert np.allclose(t.dx, 2 * kept)  # the same mask routes the gradient
    assert 0 < kept.sum() < 6
    assert t.y.tolist() == trace_dropout(x, 0.5, seed=0).y.tolist()  # same seed, same mask


def test_cli_kinds(capsys):
    assert main(["trace", "relu", "--x", "1,-2", "--dy", "1,1", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["dx"] == [1.0, 0.0]
    assert main(["trace", "softmax_ce", "--x", "1,2,3"]) == 2
    assert "--label" in capsys.readouterr().err
    assert main(["trace", "batchnorm2d", "--x", "1x1x2:1,2", "--eval", "--dy", "1x1x2:1,0"]) == 0
    assert "inference: running statistics" in capsys.readouterr().out
    assert main(["trace", "avgpool2d", "--x", "[[1,2],[3,4]]", "--kernel-size", "2", "--dy", "[[1]]"]) == 0
    assert "y[0,0] = (x[0,0] + x[0,1] + x[1,0] + x[1,1])/4 = (1 + 2 + 3 + 4)/4 = 2.5" in capsys.readouterr().out
