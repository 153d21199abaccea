"""cs.gradcheck itself must catch wrong gradients (a check that cannot fail is no check)."""
import numpy as np
import pytest

import convscope as cs
from convscope.errors import ConvscopeError


def test_plain_function_correct_gradient_passes():
    fn = lambda a, b: a * b + np.sin(a)
    grad = lambda dy, a, b: (dy * (b + np.cos(a)), dy * a)
    rng = np.random.default_rng(0)
    report = cs.gradcheck(fn, [rng.standard_normal((3, 4)), rng.standard_normal((3, 4))], grad)
    assert max(report.values()) < 1e-7


def test_plain_function_wrong_gradient_fails():
    fn = lambda a: a ** 2
    wrong = lambda dy, a: (dy * a,)  # should be 2a
    with pytest.raises(ConvscopeError, match="differs from finite differences"):
        cs.gradcheck(fn, [np.ones((2, 2))], wrong)


def test_layer_with_a_broken_backward_fails():
    layer = cs.layers.Linear(3)
    layer.build((4,), seed=0, dtype=np.float64)
    original = layer._backward

    def broken(dy):
        dx = original(dy)
        layer._params["weight"].grad[...] *= 1.01
        return dx

    layer._backward = broken
    with pytest.raises(ConvscopeError, match="weight"):
        cs.gradcheck(layer, np.random.default_rng(0).standard_normal((2, 4)))


def test_layer_needs_float64():
    layer = cs.layers.Linear(3).build((4,), dtype=np.float32)
    with pytest.raises(ConvscopeError, match="float64"):
        cs.gradcheck(layer, np.ones((2, 4)))
