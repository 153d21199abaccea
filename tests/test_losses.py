"""Losses: against torch.nn.functional.cross_entropy / mse_loss (mean reduction, float64,
1e-9, values and gradients), finite differences, and hand-worked numbers."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import convscope as cs
from convscope.errors import ConvscopeError
from convscope.layers import Linear, ReLU
from convscope.ops.losses import CrossEntropyLoss, MSELoss, get_loss, mse, softmax_cross_entropy

TOL = dict(rtol=1e-9, atol=1e-9)
FAST = settings(max_examples=30, deadline=None)


def torch_value_and_grad(fn, pred, target):
    tp = torch.tensor(pred, requires_grad=True)
    loss = fn(tp, torch.from_numpy(np.asarray(target)))
    loss.backward()
    return loss.item(), tp.grad.numpy()


@FAST
@given(n=st.integers(1, 5), k=st.integers(1, 6), scale=st.sampled_from([1.0, 30.0]), seed=st.integers(0, 2 ** 16))
def test_cross_entropy_matches_torch(n, k, scale, seed):
    rng = np.random.default_rng(seed)
    logits = scale * rng.standard_normal((n, k))
    labels = rng.integers(0, k, size=n)
    loss, grad = softmax_cross_entropy(logits, labels)
    t_loss, t_grad = torch_value_and_grad(F.cross_entropy, logits, labels)
    np.testing.assert_allclose(loss, t_loss, **TOL)
    np.testing.assert_allclose(grad, t_grad, **TOL)


@FAST
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple), seed=st.integers(0, 2 ** 16))
def test_mse_matches_torch(shape, seed):
    rng = np.random.default_rng(seed)
    pred, target = rng.standard_normal(shape), rng.standard_normal(shape)
    loss, grad = mse(pred, target)
    t_loss, t_grad = torch_value_and_grad(F.mse_loss, pred, target)
    np.testing.assert_allclose(loss, t_loss, **TOL)
    np.testing.assert_allclose(grad, t_grad, **TOL)


def test_gradcheck_both_losses():
    rng = np.random.default_rng(0)
    logits, labels = rng.standard_normal((4, 3)), np.array([0, 2, 1, 2])
    cs.gradcheck(lambda z: softmax_cross_entropy(z, labels)[0], [logits],
                 lambda g, z: (g * softmax_cross_entropy(z, labels)[1],))
    target = rng.standard_normal((4, 3))
    cs.gradcheck(lambda p: mse(p, target)[0], [logits], lambda g, p: (g * mse(p, target)[1],))


def test_hand_worked_numbers():
    # Uniform logits over 10 classes: −log(1/10) = log 10 ≈ 2.302585; dL/dz = (0.1 − onehot)/N.
    loss, grad = softmax_cross_entropy(np.zeros((4, 10)), np.array([0, 1, 2, 3]))
    assert loss == pytest.approx(np.log(10), rel=1e-15)
    assert grad[0, 0] == pytest.approx((0.1 - 1) / 4) and grad[0, 1] == pytest.approx(0.1 / 4)
    # MSE of [1, 2] against [0, 0]: (1 + 4)/2 = 2.5, gradient 2·[1, 2]/2 = [1, 2].
    loss, grad = mse(np.array([1.0, 2.0]), np.array([0.0, 0.0]))
    assert loss == 2.5
    np.testing.assert_array_equal(grad, [1.0, 2.0])


def test_cross_entropy_is_stable_for_huge_logits():
    # Row 0: correct class far ahead, loss 0. Row 1: correct class 1,000 behind, loss 1,000.
    loss, grad = softmax_cross_entropy(np.array([[1000.0, 0.0], [-1000.0, 0.0]]), np.array([0, 0]))
    assert loss == pytest.approx(500.0, rel=1e-12)
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("labels,match", [
    ([0, 3], r"labels must be in \[0, 2\] for 3 classes, got 3"),
    ([-1, 0], r"labels must be in \[0, 2\] for 3 classes, got -1"),
    ([0.5, 1.0], "whole-number class indices"),
    ([[1, 0, 0], [0, 1, 0]], "one label per sample"),
    (["a", "b"], "integer class indices"),
])
def test_label_validation(labels, match):
    with pytest.raises(ConvscopeError, match=match):
        softmax_cross_entropy(np.zeros((2, 3)), np.array(labels))


def test_whole_number_float_labels_are_accepted():
    a = softmax_cross_entropy(np.eye(3), np.array([0.0, 1.0, 2.0]))
    b = softmax_cross_entropy(np.eye(3), np.array([0, 1, 2]))
    assert a[0] == b[0]


def test_shape_and_dtype_errors():
    with pytest.raises(ConvscopeError, match=r"logits of shape \(N, classes\)"):
        softmax_cross_entropy(np.zeros((2, 3, 4)), np.array([0, 1]))
    with pytest.raises(ConvscopeError, match="floating-point"):
        softmax_cross_entropy(np.zeros((2, 3), dtype=np.int64), np.array([0, 1]))
    with pytest.raises(ConvscopeError, match=r"mse expects a target of the prediction's shape \(2, 3\), got \(3,\)"):
        mse(np.zeros((2, 3)), np.zeros(3))


def test_float32_gradients_stay_float32():
    _, grad = softmax_cross_entropy(np.zeros((2, 3), dtype=np.float32), np.array([0, 1]))
    assert grad.dtype == np.float32
    assert mse(np.zeros(3, dtype=np.float32), np.ones(3))[1].dtype == np.float32


def test_loss_classes():
    rng = np.random.default_rng(0)
    logits, labels = rng.standard_normal((3, 4)), np.array([3, 0, 1])
    criterion = get_loss("cross_entropy")
    assert isinstance(criterion, CrossEntropyLoss)
    with pytest.raises(ConvscopeError, match="backward called before forward"):
        criterion.backward()
    assert criterion(logits, labels) == softmax_cross_entropy(logits, labels)[0]
    np.testing.assert_array_equal(criterion.backward(), softmax_cross_entropy(logits, labels)[1])
    squared = MSELoss()
    assert squared.forward(logits, logits + 1) == pytest.approx(1.0, rel=1e-15)
    np.testing.assert_allclose(squared.backward(), np.full((3, 4), -2 / 12))
    with pytest.raises(ConvscopeError, match="unknown loss 'hinge'"):
        get_loss("hinge")


def test_training_step_gradients_match_torch():
    # Model + loss end to end: every parameter gradient equals PyTorch's after one backward.
    model = cs.Sequential([Linear(6), ReLU(), Linear(4)]).build((5,), seed=1, dtype=np.float64)
    torch_model = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.ReLU(), torch.nn.Linear(6, 4)).double()
    torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    rng = np.random.default_rng(2)
    x, labels = rng.standard_normal((8, 5)), rng.integers(0, 4, size=8)
    criterion = CrossEntropyLoss()
    loss = criterion(model.forward(x, train=True), labels)
    model.backward(criterion.backward())
    t_loss = F.cross_entropy(torch_model(torch.from_numpy(x)), torch.from_numpy(labels))
    t_loss.backward()
    np.testing.assert_allclose(loss, t_loss.item(), **TOL)
    for name, p in torch_model.named_parameters():
        np.testing.assert_allclose(dict(model.named_parameters())[name].grad, p.grad.numpy(), **TOL,
                                   err_msg=name)
