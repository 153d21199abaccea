"""Flatten: against torch.nn.Flatten (float64, exact), finite differences and seed 004's
256×6×6 -> 9,216."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import convscope as cs
from convscope.errors import ConvscopeError
from convscope.layers import Flatten
from oracle import assert_matches_torch


@st.composite
def flatten_cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    rank = len(shape) + 1                       # batched rank
    start = draw(st.integers(1, rank - 1))
    end = draw(st.integers(start, rank - 1))
    # Sometimes spell the same axes with negative numbers, as users do (end_dim=-1).
    if draw(st.booleans()):
        start -= rank
    if draw(st.booleans()):
        end -= rank
    return shape, start, end


@settings(max_examples=30, deadline=None)
@given(case=flatten_cases(), batch=st.integers(1, 3), seed=st.integers(0, 2 ** 16))
def test_flatten_matches_torch(case, batch, seed):
    shape, start, end = case
    y, _ = assert_matches_torch(Flatten(start, end), torch.nn.Flatten(start, end), shape, batch=batch,
                                seed=seed, rtol=0, atol=0)
    assert y.shape[1:] == Flatten(start, end).output_shape(shape)


def test_seed_004_flatten_256x6x6_gives_9216():
    # Seed 004: AlexNet's last pooled map, 256·6·6 = 9,216 values per sample.
    assert Flatten().output_shape((256, 6, 6)) == (9216,)
    assert Flatten().window((256, 6, 6)) == "global"


def test_partial_flatten_shapes():
    # (2, 3, 4, 5) per sample; merge batched axes 2..3 -> (2, 12, 5).
    assert Flatten(2, 3).output_shape((2, 3, 4, 5)) == (2, 12, 5)
    assert Flatten(1, 1).output_shape((2, 3)) == (2, 3)
    assert Flatten(1, 1).window((2, 3)) is None  # nothing merged: still position-wise


def test_flatten_gradcheck_and_exact_backward():
    x = np.random.default_rng(0).standard_normal((2, 3, 2, 2))
    cs.gradcheck(Flatten(), x)
    layer = Flatten().build((3, 2, 2), dtype=np.float64)
    y = layer.forward(x)
    dy = np.arange(y.size, dtype=np.float64).reshape(y.shape)
    np.testing.assert_array_equal(layer.backward(dy), dy.reshape(x.shape))


@pytest.mark.parametrize("kwargs,shape,match", [
    ({"start_dim": 0}, None, "never merges the batch axis"),
    ({"start_dim": -4}, (3, 4, 5), "never merges the batch axis"),
    ({"start_dim": 3, "end_dim": 2}, (3, 4, 5), "must not come after end_dim"),
    ({"start_dim": 4}, (3, 4, 5), r"start_dim=4 is not an axis of a batch of shape \(N, 3, 4, 5\)"),
    ({"end_dim": -5}, (3, 4, 5), "end_dim=-5 is not an axis"),
    ({"start_dim": 1.5}, None, "start_dim must be an integer"),
])
def test_flatten_validation(kwargs, shape, match):
    with pytest.raises(ConvscopeError, match=match):
        Flatten(**kwargs).output_shape(shape)


def test_flatten_spec_entry():
    assert Flatten().spec_entry() == {"type": "flatten"}
    assert Flatten(2).spec_entry() == {"type": "flatten", "start_dim": 2}
    assert repr(Flatten(2, 3)) == "Flatten(start_dim=2, end_dim=3)"
