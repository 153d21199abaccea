"""Normalisation layers against their oracles: torch.nn.BatchNorm1d/2d and
torch.nn.LocalResponseNorm in float64 (1e-9), finite differences (cs.gradcheck), and a few
hand-computed numbers."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import convscope as cs
from convscope.errors import ConvscopeError
from convscope.layers import BatchNorm1d, BatchNorm2d, LocalResponseNorm
from convscope.ops import norm as ops

TOL = 1e-9


def _torch_state(layer):
    return {k: torch.from_numpy(np.array(v)) for k, v in layer.state_dict().items()}


def _assert_state_equal(layer, module):
    ours, theirs = layer.state_dict(), module.state_dict()
    assert list(ours) == list(theirs)  # same names in the same order
    for name, value in ours.items():
        expected = theirs[name].numpy()
        assert value.shape == expected.shape, name
        assert value.dtype == expected.dtype, (name, value.dtype, expected.dtype)
        np.testing.assert_allclose(value, expected, rtol=TOL, atol=TOL, err_msg=f"state {name}")


def _pair(cls, torch_cls, sample_shape, seed=0, **kwargs):
    """Our layer and torch's, same (non-trivial) weights, float64."""
    layer = cls(**kwargs).build(sample_shape, dtype=np.float64)
    rng = np.random.default_rng(seed)
    if layer.affine:  # γ and β away from their 1 / 0 start, so a γ/β mix-up shows
        layer.load_state_dict({**layer.state_dict(),
                               "weight": rng.uniform(0.5, 1.5, sample_shape[0]),
                               "bias": rng.standard_normal(sample_shape[0])})
    module = torch_cls(sample_shape[0], **kwargs).double()
    module.load_state_dict(_torch_state(layer))
    return layer, module


def _compare_step(layer, module, x, train, rng):
    """One forward (and backward) in both; compares y, dL/dx and every parameter gradient."""
    module.train(train)
    y = layer.forward(x, train=train)
    tx = torch.tensor(x, requires_grad=True)
    ty = module(tx)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=TOL, atol=TOL, err_msg="forward")
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=TOL, atol=TOL, err_msg="dL/dx")
    torch_params = dict(module.named_parameters())
    assert sorted(n for n, _ in layer.named_parameters()) == sorted(torch_params)
    for name, p in layer.named_parameters():
        np.testing.assert_allclose(p.grad, torch_params[name].grad.numpy(), rtol=TOL, atol=TOL,
                                   err_msg=f"dL/d{name}")
        torch_params[name].grad = None


BN_CASES = [
    # (our class, torch class, per-sample shape, keyword arguments)
    (BatchNorm1d, torch.nn.BatchNorm1d, (4,), {}),
    (BatchNorm1d, torch.nn.BatchNorm1d, (3, 5), {}),
    (BatchNorm2d, torch.nn.BatchNorm2d, (3, 4, 5), {}),
    (BatchNorm2d, torch.nn.BatchNorm2d, (3, 4, 5), {"momentum": None}),
    (BatchNorm1d, torch.nn.BatchNorm1d, (3, 5), {"momentum": None}),
    (BatchNorm2d, torch.nn.BatchNorm2d, (2, 3, 3), {"momentum": 0.3, "eps": 1e-3}),
    (BatchNorm2d, torch.nn.BatchNorm2d, (3, 4, 5), {"affine": False}),
    (BatchNorm1d, torch.nn.BatchNorm1d, (4,), {"affine": False}),
    (BatchNorm2d, torch.nn.BatchNorm2d, (3, 4, 5), {"track_running_stats": False}),
    (BatchNorm1d, torch.nn.BatchNorm1d, (3, 5), {"track_running_stats": False, "affine": False}),
]


@pytest.mark.parametrize("cls, torch_cls, shape, kwargs", BN_CASES)
def test_batchnorm_matches_torch_in_train_then_eval(cls, torch_cls, shape, kwargs):
    # Four training steps (forward, every gradient and the running statistics compared after
    # each), then eval mode on fresh data: all within 1e-9 of PyTorch's float64 result.
    layer, module = _pair(cls, torch_cls, shape, **kwargs)
    rng = np.random.default_rng(1)
    for step in range(4):
        # shifted and scaled data so the running mean and variance move far from 0 and 1
        x = rng.standard_normal((3,) + shape) * (1.0 + step) + step
        _compare_step(layer, module, x, True, rng)
        _assert_state_equal(layer, module)
    if layer.track_running_stats:
        assert int(layer.state_dict()["num_batches_tracked"]) == 4  # one per training forward
        assert not np.allclose(layer.state_dict()["running_var"], 1.0)
    _compare_step(layer, module, rng.standard_normal((2,) + shape) * 3 - 1, False, rng)
    _assert_state_equal(layer, module)  # eval leaves the buffers alone, in both


def test_momentum_none_is_the_cumulative_average():
    # momentum=None: after t batches running_mean is the plain mean of the t batch means and
    # running_var the mean of the t unbiased batch variances (starting values are forgotten).
    layer = BatchNorm2d(momentum=None).build((2, 3, 3), dtype=np.float64)
    rng = np.random.default_rng(2)
    batches = [rng.standard_normal((4, 2, 3, 3)) * (i + 1) + i for i in range(3)]
    for x in batches:
        layer.forward(x, train=True)
    means = [x.mean(axis=(0, 2, 3)) for x in batches]
    unbiased = [x.transpose(1, 0, 2, 3).reshape(2, -1).var(axis=1, ddof=1) for x in batches]
    state = layer.state_dict()
    np.testing.assert_allclose(state["running_mean"], np.mean(means, axis=0), rtol=1e-12)
    np.testing.assert_allclose(state["running_var"], np.mean(unbiased, axis=0), rtol=1e-12)


def test_running_update_uses_unbiased_variance_but_forward_the_biased_one():
    # One channel holding [0, 2]: biased variance 1, unbiased 2. Forward output is
    # (x − 1)/sqrt(1 + eps) = ∓1/sqrt(1 + 1e-5); running_var = 0.9·1 + 0.1·2 = 1.1,
    # running_mean = 0.9·0 + 0.1·1 = 0.1.
    layer = BatchNorm1d().build((1,), dtype=np.float64)
    y = layer.forward(np.array([[0.0], [2.0]]), train=True)
    np.testing.assert_allclose(y.ravel(), [-1 / np.sqrt(1 + 1e-5), 1 / np.sqrt(1 + 1e-5)], rtol=1e-14)
    np.testing.assert_allclose(layer.state_dict()["running_var"], [1.1], rtol=1e-14)
    np.testing.assert_allclose(layer.state_dict()["running_mean"], [0.1], rtol=1e-14)


@pytest.mark.parametrize("cls, shape", [(BatchNorm1d, (3,)), (BatchNorm1d, (2, 4)), (BatchNorm2d, (2, 3, 3))])
@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_gradcheck(cls, shape, train):
    # Finite differences agree with backward: the full batch-statistics gradient in train
    # mode, the affine-only gradient in eval mode (after training so the stats are not 0/1).
    rng = np.random.default_rng(3)
    layer = cls().build(shape, dtype=np.float64)
    layer.load_state_dict({**layer.state_dict(), "weight": rng.uniform(0.5, 1.5, shape[0]),
                           "bias": rng.standard_normal(shape[0])})
    for _ in range(2):
        layer.forward(rng.standard_normal((3,) + shape) * 2 + 1, train=True)
    report = cs.gradcheck(layer, rng.standard_normal((3,) + shape), train=train)
    assert set(report) == {"x", "weight", "bias"}
    assert max(report.values()) < 1e-6


def test_batchnorm_gradcheck_without_running_stats_in_eval_uses_the_batch_gradient():
    layer = BatchNorm2d(track_running_stats=False).build((2, 2, 3), dtype=np.float64)
    report = cs.gradcheck(layer, np.random.default_rng(4).standard_normal((3, 2, 2, 3)), train=False)
    assert max(report.values()) < 1e-6


def test_buffers_are_apart_from_parameters_and_keep_their_dtypes():
    model = cs.Sequential([BatchNorm2d()]).build((3, 4, 4), dtype=np.float32)
    # Parameters count what is learned: γ and β only, 3 + 3 values.
    assert [p.name for p in model.parameters()] == ["0.weight", "0.bias"]
    assert sum(p.size for p in model.parameters()) == 6
    buffers = dict(model.named_buffers())
    assert list(buffers) == ["0.running_mean", "0.running_var", "0.num_batches_tracked"]
    assert buffers["0.running_mean"].dtype == np.float32 and buffers["0.running_var"].dtype == np.float32
    assert buffers["0.num_batches_tracked"].dtype == np.int64 and buffers["0.num_batches_tracked"].shape == ()
    np.testing.assert_array_equal(buffers["0.running_var"], np.ones(3))
    before = {k: id(v) for k, v in buffers.items()}
    model.forward(np.random.default_rng(5).standard_normal((4, 3, 4, 4)).astype(np.float32), train=True)
    after = dict(model.named_buffers())
    assert {k: id(v) for k, v in after.items()} == before  # updated in place
    assert after["0.running_mean"].dtype == np.float32 and after["0.num_batches_tracked"].dtype == np.int64
    assert int(after["0.num_batches_tracked"]) == 1
    assert list(model.state_dict()) == ["0.weight", "0.bias", "0.running_mean", "0.running_var",
                                        "0.num_batches_tracked"]


def test_batchnorm_buffer_shapes_without_tracking_or_affine():
    assert BatchNorm2d(track_running_stats=False).buffer_shapes((5, 2, 2)) == {}
    assert BatchNorm1d().buffer_shapes((5,)) == {"running_mean": (5,), "running_var": (5,),
                                                 "num_batches_tracked": ()}
    assert BatchNorm2d(affine=False).param_shapes((5, 2, 2)) == {}
    assert BatchNorm2d().param_shapes((5, 2, 2)) == {"weight": (5,), "bias": (5,)}


def test_load_state_dict_from_torch_keeps_our_dtypes():
    module = torch.nn.BatchNorm2d(3)
    module.train()
    module(torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(0)))  # tracked = 1
    layer = BatchNorm2d().build((3, 2, 2))  # float32
    layer.load_state_dict({k: v.numpy() for k, v in module.state_dict().items()})
    state = layer.state_dict()
    assert state["num_batches_tracked"].dtype == np.int64 and int(state["num_batches_tracked"]) == 1
    np.testing.assert_array_equal(state["running_mean"], module.running_mean.numpy())


def test_num_features_checked_when_given():
    BatchNorm2d(3).build((3, 4, 4))
    with pytest.raises(ConvscopeError, match="expects 3 channels .* got 4"):
        BatchNorm2d(3).build((4, 4, 4))


@pytest.mark.parametrize("layer, shape, message", [
    (BatchNorm2d(), (3, 4), r"batchnorm2d expects a per-sample input of shape \(C, H, W\), got 3×4"),
    (BatchNorm1d(), (3, 4, 4), r"batchnorm1d expects a per-sample input of shape \(C,\) or \(C, L\)"),
    (LocalResponseNorm(3), (8,), r"local_response_norm expects .* got 8"),
])
def test_wrong_rank_is_a_clear_error(layer, shape, message):
    with pytest.raises(ConvscopeError, match=message):
        layer.build(shape)


@pytest.mark.parametrize("make, message", [
    (lambda: BatchNorm2d(0), "num_features must be a positive integer"),
    (lambda: BatchNorm2d(momentum=1.5), "momentum must be a number from 0 to 1"),
    (lambda: BatchNorm2d(eps=0), "eps must be a positive number"),
    (lambda: BatchNorm2d(affine="yes"), "affine must be true or false"),
    (lambda: LocalResponseNorm(0), "size must be a positive integer"),
    (lambda: LocalResponseNorm(2.5), "size must be a positive integer"),
])
def test_bad_arguments_name_themselves(make, message):
    with pytest.raises(ConvscopeError, match=message):
        make()


def test_single_value_per_channel_in_training_is_an_error():
    # PyTorch refuses too: the unbiased variance of one value divides by zero.
    layer = BatchNorm1d().build((4,))
    with pytest.raises(ConvscopeError, match="more than one value per channel"):
        layer.forward(np.ones((1, 4), np.float32), train=True)
    assert layer.forward(np.ones((1, 4), np.float32), train=False).shape == (1, 4)  # eval is fine


def test_backward_before_forward_is_an_error():
    layer = BatchNorm2d().build((2, 2, 2))
    with pytest.raises(ConvscopeError, match="backward called before forward"):
        layer.backward(np.ones((1, 2, 2, 2), np.float32))


def test_norm_layers_spec_round_trip():
    spec = {"input": [4, 6, 6], "layers": [
        {"type": "batchnorm2d", "eps": 0.001, "momentum": None},
        {"type": "local_response_norm", "size": 5, "alpha": 0.0001, "beta": 0.75, "k": 2.0},
        {"type": "batchnorm2d", "num_features": 4, "affine": False, "track_running_stats": False},
    ]}
    model = cs.from_spec(spec)
    expected = {"input": [4, 6, 6], "layers": [
        {"type": "batchnorm2d", "eps": 0.001, "momentum": None},
        {"type": "local_response_norm", "size": 5, "k": 2.0},  # alpha and beta are the defaults
        {"type": "batchnorm2d", "num_features": 4, "affine": False, "track_running_stats": False},
    ]}
    assert model.spec() == expected
    assert cs.from_spec(expected).spec() == expected
    model.build()
    assert model.spec() == expected  # building does not write the inferred channels into the spec
    assert repr(model[0]) == "BatchNorm2d(eps=0.001, momentum=None)"


# ----- local response normalisation -----------------------------------------------------------

def test_lrn_hand_computed():
    # size=1 leaves only a_c in the window: b = a / (k + α·a²)^β; with k=α=β=1, a=2 → 2/5.
    layer = LocalResponseNorm(1, alpha=1.0, beta=1.0, k=1.0).build((1, 1), dtype=np.float64)
    assert layer.forward(np.array([[[2.0]]]))[0, 0, 0] == pytest.approx(0.4, rel=1e-15)
    # size=2, channels a = (1, 2, 3): windows are {c−1, c} → sums 1, 5, 13;
    # b = a / (1 + (1/2)·sum)^1 = (1/1.5, 2/3.5, 3/7.5).
    layer = LocalResponseNorm(2, alpha=1.0, beta=1.0, k=1.0).build((3, 1), dtype=np.float64)
    y = layer.forward(np.array([[[1.0], [2.0], [3.0]]]))
    np.testing.assert_allclose(y.ravel(), [1 / 1.5, 2 / 3.5, 3 / 7.5], rtol=1e-15)


@settings(max_examples=30, deadline=None)
@given(size=st.integers(1, 8), channels=st.integers(1, 6), spatial=st.sampled_from([(3,), (2, 3)]),
       alpha=st.floats(1e-3, 2.0), beta=st.floats(0.25, 1.5), k=st.floats(0.5, 3.0),
       seed=st.integers(0, 1000))
def test_lrn_matches_torch(size, channels, spatial, alpha, beta, k, seed):
    # Sizes even and odd, and larger than C (the window is then clipped on both sides).
    layer = LocalResponseNorm(size, alpha=alpha, beta=beta, k=k)
    layer.build((channels,) + spatial, dtype=np.float64)
    module = torch.nn.LocalResponseNorm(size, alpha=alpha, beta=beta, k=k)
    rng = np.random.default_rng(seed)
    _compare_step(layer, module, rng.standard_normal((2, channels) + spatial) * 2, False, rng)


@pytest.mark.parametrize("size, channels", [(1, 3), (2, 4), (3, 5), (4, 3), (7, 4)])
def test_lrn_gradcheck(size, channels):
    layer = LocalResponseNorm(size, alpha=0.5, beta=0.75, k=1.5).build((channels, 2, 2), dtype=np.float64)
    report = cs.gradcheck(layer, np.random.default_rng(size).standard_normal((2, channels, 2, 2)))
    assert report["x"] < 1e-6


def test_window_sum_matches_a_loop():
    # The cumulative-sum window equals the literal clipped sum for every window shape.
    v = np.random.default_rng(6).standard_normal((2, 5, 3))
    for below in range(0, 7):
        for above in range(0, 7):
            expected = np.stack([v[:, max(c - below, 0):c + above + 1].sum(axis=1) for c in range(5)], axis=1)
            np.testing.assert_allclose(ops._window_sum(v, below, above), expected, rtol=1e-12, atol=1e-12)


def test_batch_norm_ops_alone():
    # The ops are pure: the running-stat update returns new arrays, inputs are untouched.
    mean, var = np.zeros(2), np.ones(2)
    new_mean, new_var = ops.running_stats_update(mean, var, np.array([1.0, 2.0]), np.array([3.0, 3.0]),
                                                 count=4, factor=0.5)
    np.testing.assert_allclose(new_mean, [0.5, 1.0])
    np.testing.assert_allclose(new_var, [0.5 + 0.5 * 4.0, 0.5 + 0.5 * 4.0])  # 3·4/3 = 4 unbiased
    assert mean.tolist() == [0.0, 0.0] and var.tolist() == [1.0, 1.0]
    report = cs.gradcheck(lambda x, w, b: ops.batch_norm_forward(x, w, b, None, None, True)[0],
                          [np.random.default_rng(7).standard_normal((4, 3)), np.ones(3) * 1.3, np.zeros(3)],
                          lambda dy, x, w, b: ops.batch_norm_backward(
                              dy, ops.batch_norm_forward(x, w, b, None, None, True)[1]))
    assert max(report.values()) < 1e-6
