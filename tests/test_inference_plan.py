"""Inference plans (layers/plan.py): a Sequential's inference pass runs each layer's
``inference_step`` for the input's shape instead of its checked ``forward``. The oracle is the
same model run layer by layer through ``forward(train=False)``: the outputs must be equal bit
for bit (same arithmetic, only the checks moved), on random chains, batch sizes, dtypes and
convolution paths, after training steps and after a rebuild."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import convscope as cs
from convscope.layers import plan
from convscope.ops import kernels
from convscope.ops.conv import using_path

L = cs.layers


def layer_by_layer(model, x):
    for layer in model:
        x = layer.forward(x, train=False)
    return x


def random_chain(draw_ints, rng):
    """conv (random kernel, stride, padding, groups) -> bn -> relu-like -> pool ... -> flatten -> linear."""
    layers = []
    for _ in range(draw_ints[0]):
        groups = [1, 2][draw_ints[1] % 2]
        layers += [L.Conv2d(4, int(rng.integers(1, 4)), stride=int(rng.integers(1, 3)),
                            padding=int(rng.integers(0, 2)), groups=groups),
                   [L.BatchNorm2d(), L.ReLU(), L.Sigmoid(), L.Dropout(0.3)][int(rng.integers(0, 4))],
                   [L.MaxPool2d(2, ceil_mode=True), L.ReLU6(), L.MaxPool2d(3, stride=1, padding=1)][int(rng.integers(0, 3))]]
    return cs.Sequential(layers + [L.Flatten(), L.Linear(5), L.ReLU(), L.Linear(3)])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(depth=st.integers(1, 3), groups=st.integers(0, 1), batch=st.sampled_from([1, 2, 5]),
       size=st.integers(8, 16), dtype=st.sampled_from([np.float32, np.float64]),
       path=st.sampled_from(["auto", "im2col", "reference"] + (["offset"] if kernels.AVAILABLE else [])),
       seed=st.integers(0, 1000))
def test_plan_equals_the_layers_run_one_by_one(depth, groups, batch, size, dtype, path, seed):
    rng = np.random.default_rng(seed)
    model = random_chain((depth, groups), rng)
    try:
        model.build((2, size, size), seed=seed, dtype=dtype)
    except cs.ConvscopeError:  # strides and pools shrank the map below a window: another chain
        assume(False)
    for layer in model:
        if isinstance(layer, L.BatchNorm2d):  # statistics that are not the identity
            layer._buffers["running_mean"][...] = rng.uniform(-1, 1, layer._buffers["running_mean"].shape)
            layer._buffers["running_var"][...] = rng.uniform(0.5, 2, layer._buffers["running_var"].shape)
    x = rng.standard_normal((batch, 2, size, size)).astype(dtype)
    with using_path(path):
        got = model.forward(x, train=False)
        again = model.forward(x, train=False)  # the plan, now kept, run a second time
        expected = layer_by_layer(model, x)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(again, expected)
    assert not np.shares_memory(got, again)  # each call returns its own array


def test_a_plan_reads_the_weights_when_it_runs_and_leaves_no_caches():
    model = cs.parse_text("conv2d(6, 5) -> relu -> maxpool2d(2) -> conv2d(16, 5) -> relu -> maxpool2d(2) -> "
                          "flatten -> linear(120) -> relu -> linear(10)", input_shape=(1, 32, 32)).build(seed=0)
    x = np.random.default_rng(0).standard_normal((4, 1, 32, 32)).astype(np.float32)
    before = model.forward(x[:1])
    optimizer = cs.train.SGD(model.parameters(), lr=0.1)
    y = model.forward(x, train=True)
    model.backward(np.ones_like(y))
    optimizer.step()
    after = model.forward(x[:1])
    assert all(layer._cache is None for layer in plan.descendants(model))  # training's caches dropped
    assert not np.array_equal(before, after)  # the step moved the weights, and the plan saw it
    np.testing.assert_array_equal(after, layer_by_layer(model, x[:1]))


def test_a_rebuilt_model_gets_a_new_plan():
    model = cs.parse_text("conv2d(3, 3) -> relu -> flatten -> linear(2)", input_shape=(1, 6, 6)).build(seed=0)
    model.forward(np.zeros((1, 1, 6, 6), np.float32))
    model.build((1, 8, 8), seed=1)
    x = np.random.default_rng(1).standard_normal((2, 1, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(model.forward(x), layer_by_layer(model, x))


def test_gradients_after_a_planned_inference_pass_are_the_inference_functions():
    """A backward after an inference pass replays it with caches (Layer._Replay): saliency."""
    model = cs.parse_text("conv2d(3, 3) -> relu -> maxpool2d(2) -> flatten -> linear(2)",
                          input_shape=(1, 8, 8)).build(seed=0, dtype=np.float64)
    x = np.random.default_rng(2).standard_normal((1, 1, 8, 8))
    y = model.forward(x)
    dx = model.backward(np.ones_like(y))
    eps, numeric = 1e-6, np.zeros_like(x)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = eps
        numeric[index] = (model.forward(x + step).sum() - model.forward(x - step).sum()) / (2 * eps)
    np.testing.assert_allclose(dx, numeric, rtol=1e-6, atol=1e-8)


def test_an_error_inside_a_plan_names_the_layer_as_forward_does():
    model = cs.parse_text("conv2d(3, 3) -> relu -> flatten -> linear(2)", input_shape=(1, 6, 6)).build(seed=0)
    with pytest.raises(cs.ConvscopeError, match="expects a batch of shape"):
        model.forward(np.zeros((1, 6, 6), np.float32))


def test_plans_are_kept_for_a_few_shapes_only():
    model = cs.parse_text("conv2d(3, 3) -> relu", input_shape=(1, 6, 6)).build(seed=0)
    for batch in range(1, 3 * plan.MAX_PLANS):
        model.forward(np.zeros((batch, 1, 6, 6), np.float32))
    assert 1 <= len(model._plans) <= plan.MAX_PLANS


def test_a_layer_whose_forward_is_wrapped_is_called(monkeypatch):
    """Wrappers on a layer's forward (the explorer records every layer's input and output so)
    see the pass: the model then runs layer by layer."""
    model = cs.parse_text("conv2d(3, 3) -> relu -> flatten -> linear(2)", input_shape=(1, 6, 6)).build(seed=0)
    x = np.random.default_rng(3).standard_normal((2, 1, 6, 6)).astype(np.float32)
    expected = model.forward(x)
    seen = []
    relu = model[1]
    original = relu.forward
    monkeypatch.setattr(relu, "forward", lambda value, *a, **k: seen.append(value.shape) or original(value, *a, **k),
                        raising=False)
    np.testing.assert_array_equal(model.forward(x), expected)
    assert seen == [(2, 3, 4, 4)]


@pytest.mark.parametrize("name, shape", [("resnet18", (3, 32, 32)), ("googlenet", (3, 64, 64))])
def test_zoo_models_with_residual_and_concat_blocks(name, shape):
    """Residual (resnet18) and Concat (googlenet's inception blocks) have plan steps too: the
    pass equals the model's layers run one by one through forward."""
    model = cs.zoo.load(name)
    model.build(shape, seed=0)
    for layer in plan.descendants(model):  # batch norms with statistics that are not the identity
        if isinstance(layer, L.BatchNorm2d):
            rng = np.random.default_rng(len(layer._buffers["running_mean"]))
            layer._buffers["running_mean"][...] = rng.uniform(-0.5, 0.5, layer._buffers["running_mean"].shape)
            layer._buffers["running_var"][...] = rng.uniform(0.5, 2, layer._buffers["running_var"].shape)
    x = np.random.default_rng(4).standard_normal((2,) + shape).astype(np.float32)
    got = model.forward(x)
    np.testing.assert_array_equal(got, layer_by_layer(model, x))
    np.testing.assert_array_equal(model.forward(x), got)


def test_a_plan_counts_the_buffers_it_keeps():
    """LeNet-5 at batch 2: conv1 keeps its product 6·784 and windows 25·784, relu 6·784, pool
    6·196, conv2 16·100 and 150·100, relu 16·100, pool 16·25, linear 120, relu 120, linear 10
    values per sample, float32: 49,034 values = 196,136 bytes per sample (at batch 2 the
    windows are too few for the "offset" path, whose step would also keep its product in
    GEMM layout)."""
    model = cs.parse_text("conv2d(6, 5) -> relu -> maxpool2d(2) -> conv2d(16, 5) -> relu -> maxpool2d(2) -> "
                          "flatten -> linear(120) -> relu -> linear(10)", input_shape=(1, 32, 32)).build(seed=0)
    model.forward(np.zeros((2, 1, 32, 32), np.float32))
    per_sample = 6 * 784 + 25 * 784 + 6 * 784 + 6 * 196 + 16 * 100 + 150 * 100 + 16 * 100 + 16 * 25 + 120 + 120 + 10
    assert plan.plan_bytes(model) == 2 * per_sample * 4


@pytest.mark.parametrize("compiled", [True, False] if kernels.AVAILABLE else [False])
@pytest.mark.parametrize("conv", [dict(kernel_size=5), dict(kernel_size=3, padding=2),
                                  dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=(2, 3), dilation=2),
                                  dict(kernel_size=1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_single_sample_convolution_step_equals_the_layer(compiled, conv, dtype, monkeypatch):
    """At batch 1 an ungrouped convolution's plan step copies the windows once into its own
    matrix (numba's row loop for stride 1 once numba is loaded, else NumPy's copy) and
    makes one product: the same windows and the same product as the layer's forward, so the
    same bits."""
    if compiled:
        kernels.load()
    else:
        monkeypatch.setattr(kernels, "AVAILABLE", False)
    model = cs.Sequential([L.Conv2d(7, **conv), L.ReLU(), L.Conv2d(5, 3, bias=False)]).build((3, 13, 11), seed=2,
                                                                                         dtype=dtype)
    x = np.random.default_rng(5).standard_normal((1, 3, 13, 11)).astype(dtype)
    with using_path("im2col"):
        np.testing.assert_array_equal(model.forward(x), layer_by_layer(model, x))
        x[0, 0, 0, 0] = 9.0   # the step reads the new input, not a view kept from the last call
        np.testing.assert_array_equal(model.forward(x), layer_by_layer(model, x))
