"""The one output-size rule, against hand-worked numbers and PyTorch's own results."""
import numpy as np
import pytest
import torch

from convscope.errors import ConvscopeError
from convscope.shapes import adaptive_window, as_tuple, conv_output_size, resolve_padding, same_padding


def test_seed_003_window_count():
    # Seed 003: an 11-wide input, F=5, S=2, P=0 gives (11 - 5)/2 + 1 = 4 positions.
    assert conv_output_size(11, 5, 2, 0) == 4


def test_alexnet_numbers():
    # AlexNet conv1 on 227: floor((227 + 0 - 11)/4) + 1 = 55; its pool: floor((13 - 3)/2) + 1 = 6.
    assert conv_output_size(227, 11, 4, 0) == 55
    assert conv_output_size(13, 3, 2, 0) == 6


def test_dilation_and_padding():
    # Effective kernel d(k-1)+1 = 2·2+1 = 5; (10 + 2 - 5)/1 + 1 = 8.
    assert conv_output_size(10, 3, 1, 1, d=2) == 8


def test_window_larger_than_input_gives_zero():
    assert conv_output_size(3, 5, 1, 0) == 0


@pytest.mark.parametrize("n,k,s,p", [(n, k, s, p) for n in range(1, 12) for k in (1, 2, 3, 4)
                                     for s in (1, 2, 3) for p in range(0, k // 2 + 1) if n + 2 * p >= k])
def test_ceil_mode_matches_torch(n, k, s, p):
    # PyTorch drops a last window that would start in the right padding; so must we.
    x = torch.zeros(1, 1, n)
    out = torch.nn.functional.max_pool1d(x, k, s, p, ceil_mode=True).shape[-1]
    assert conv_output_size(n, k, s, p, ceil_mode=True) == out
    assert conv_output_size(n, k, s, p) == torch.nn.functional.max_pool1d(x, k, s, p).shape[-1]


def test_same_padding_puts_the_odd_pixel_last():
    # PyTorch's padding="same" with k=4: total 3, one before, two after.
    assert same_padding(4) == (1, 2)
    assert same_padding(3, d=2) == (2, 2)
    assert resolve_padding("same", (4, 3), (1, 1)) == ((1, 2), (1, 1))
    assert resolve_padding("valid", (4, 3), (1, 1)) == ((0, 0), (0, 0))
    assert resolve_padding(2, (3, 3), (1, 1)) == ((2, 2), (2, 2))


def test_as_tuple_validates():
    assert as_tuple(5, 2, "kernel_size") == (5, 5)
    assert as_tuple([3, 1], 2, "kernel_size") == (3, 1)
    with pytest.raises(ConvscopeError, match="kernel_size must be positive"):
        as_tuple(0, 2, "kernel_size")
    with pytest.raises(ConvscopeError, match="stride must have 2 values"):
        as_tuple([1, 2, 3], 2, "stride")
    with pytest.raises(ConvscopeError, match="padding"):
        as_tuple(-1, 2, "padding", minimum=0)
    with pytest.raises(ConvscopeError):
        as_tuple(2.5, 2, "kernel_size")


def test_adaptive_window_matches_torch_cells():
    # 7 inputs into 3 cells: [0,3), [2,5), [4,7) as torch.nn.AdaptiveAvgPool1d does.
    assert [adaptive_window(i, 7, 3) for i in range(3)] == [(0, 3), (2, 5), (4, 7)]
    x = torch.arange(7.0).reshape(1, 1, 7)
    ours = [np.mean(np.arange(7.0)[a:b]) for a, b in (adaptive_window(i, 7, 3) for i in range(3))]
    np.testing.assert_allclose(ours, torch.nn.functional.adaptive_avg_pool1d(x, 3).flatten().numpy())
