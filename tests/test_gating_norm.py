"""Issue 11 item 2: hardsigmoid, hardswish, silu, gelu, layer norm (trailing axes and the
channel axis), layer scale and stochastic depth.

Oracles: PyTorch in float64 (forward, dL/dx and every parameter gradient within 1e-9, via
tests/oracle.py; the torch module is the one each layer's own ``torch_desc`` describes),
central finite differences (cs.gradcheck), ONNX Runtime on the nodes each layer's
``to_onnx`` emits (float32, within 1e-5) and the spec round trip.
"""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import convscope as cs
from convscope.errors import ConvscopeError
from convscope.interop.torch_export import instantiate
from convscope.layers import (GELU, Hardsigmoid, Hardswish, LayerNorm, LayerNorm2d, LayerScale, SiLU,
                              StochasticDepth)
from oracle import assert_matches_torch

NEW_TYPES = [Hardsigmoid, Hardswish, SiLU, GELU, LayerNorm, LayerNorm2d, LayerScale, StochasticDepth]

shapes = st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple)


def _torch_twin(layer):
    return instantiate(layer.torch_desc("model"), torch)


def _randomise_parameters(layer, seed):
    """γ = 1, β = 0 at init would hide a swapped or missing parameter gradient."""
    rng = np.random.default_rng(seed)
    for p in layer.parameters():
        p.value[...] = rng.standard_normal(p.value.shape)


# ----- PyTorch, float64 -----------------------------------------------------------------------

@settings(max_examples=15, deadline=None)
@given(shape=shapes, batch=st.integers(1, 3), seed=st.integers(0, 2**16),
       layer=st.sampled_from([lambda: Hardsigmoid(), lambda: Hardswish(), lambda: SiLU(), lambda: GELU(),
                              lambda: GELU("tanh")]))
def test_activations_match_torch(shape, batch, seed, layer):
    layer = layer().build(shape, dtype=np.float64)
    x = 4 * np.random.default_rng(seed).standard_normal((batch,) + shape)   # well past ±3
    assert_matches_torch(layer, _torch_twin(layer), shape, x=x, seed=seed, **_tolerance(layer))


def _tolerance(layer):
    # PyTorch's hardsigmoid backward multiplies by the float32 constant 1.0f/6.0f even in
    # float64 (relative error 3e-8); ours uses the exact 1/6, so dL/dx agrees to 1e-7 only.
    return {"rtol": 1e-7} if isinstance(layer, Hardsigmoid) else {}


def test_hard_activations_match_torch_at_their_kinks():
    # PyTorch 2.13 takes the outer side at both kinks: hardsigmoid's slope is 0 at ±3,
    # hardswish's 0 at -3 and 1 at 3 (x/3 + 1/2 strictly between).
    x = np.array([[-3.5, -3.0, -1.0, 0.0, 3.0, 3.5]])
    for layer in (Hardsigmoid(), Hardswish()):
        layer.build((6,), dtype=np.float64)
        assert_matches_torch(layer, _torch_twin(layer), (6,), x=x, **_tolerance(layer))
    hs = Hardswish().build((6,), dtype=np.float64)
    hs.forward(x, train=True)
    np.testing.assert_allclose(hs.backward(np.ones_like(x)), [[0, 0, 1 / 6, 0.5, 1, 1]], rtol=1e-15, atol=0)


def test_gelu_values_match_published_numbers():
    # Φ(1) = 0.8413447460685429 (standard normal CDF), so gelu(1) = 0.8413447460685429;
    # the tanh form gives 0.8411919906082768 (PyTorch's value for approximate="tanh").
    x = np.array([[1.0]])
    assert GELU().build((1,), dtype=np.float64).forward(x)[0, 0] == pytest.approx(0.8413447460685429, abs=1e-15)
    assert GELU("tanh").build((1,), dtype=np.float64).forward(x)[0, 0] == pytest.approx(0.8411919906082768,
                                                                                         abs=1e-15)


@settings(max_examples=15, deadline=None)
@given(shape=shapes, k=st.integers(1, 3), batch=st.integers(1, 3), seed=st.integers(0, 2**16),
       affine=st.booleans(), bias=st.booleans(), eps=st.sampled_from([1e-5, 1e-6, 0.1]))
def test_layer_norm_matches_torch(shape, k, batch, seed, affine, bias, eps):
    k = min(k, len(shape))
    norm = list(shape[len(shape) - k:]) if k > 1 else shape[-1]
    layer = LayerNorm(norm, eps=eps, elementwise_affine=affine, bias=bias).build(shape, dtype=np.float64)
    _randomise_parameters(layer, seed)
    assert_matches_torch(layer, _torch_twin(layer), shape, batch=batch, seed=seed)


@settings(max_examples=15, deadline=None)
@given(shape=st.lists(st.integers(1, 5), min_size=2, max_size=3).map(tuple), batch=st.integers(1, 3),
       seed=st.integers(0, 2**16), affine=st.booleans(), bias=st.booleans())
def test_layer_norm2d_matches_torch(shape, batch, seed, affine, bias):
    layer = LayerNorm2d(eps=1e-6, elementwise_affine=affine, bias=bias).build(shape, dtype=np.float64)
    _randomise_parameters(layer, seed)
    assert_matches_torch(layer, _torch_twin(layer), shape, batch=batch, seed=seed)


def test_layer_norm2d_is_torch_layer_norm_over_channels_last():
    # The definition, independently of our torch twin: permute to NHWC, nn.LayerNorm(C), back.
    rng = np.random.default_rng(5)
    layer = LayerNorm2d(eps=1e-6).build((4, 3, 2), dtype=np.float64)
    _randomise_parameters(layer, 5)
    ln = torch.nn.LayerNorm(4, eps=1e-6).double()
    ln.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    x = rng.standard_normal((2, 4, 3, 2))
    expected = ln(torch.from_numpy(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2).detach().numpy()
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-12, atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(shape=shapes, batch=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_layer_scale_matches_torch(shape, batch, seed):
    layer = LayerScale(init_value=0.5).build(shape, dtype=np.float64)
    _randomise_parameters(layer, seed)
    assert_matches_torch(layer, _torch_twin(layer), shape, batch=batch, seed=seed)


def test_layer_scale_is_named_and_shaped_as_torchvision_convnext():
    # torchvision CNBlock: self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale).
    model = cs.Sequential([cs.layers.Conv2d(8, 1), LayerScale(1e-6)]).build((3, 4, 4))
    state = model.state_dict()
    assert state["1.layer_scale"].shape == (8, 1, 1)
    assert np.all(state["1.layer_scale"] == np.float32(1e-6))


def test_stochastic_depth_in_eval_is_the_identity_like_torch():
    layer = StochasticDepth(0.5).build((3, 4, 4), dtype=np.float64)
    assert_matches_torch(layer, _torch_twin(layer), (3, 4, 4), batch=3, train=False)


@pytest.mark.parametrize("mode", ["row", "batch"])
def test_stochastic_depth_in_training_drops_whole_samples_and_backward_uses_the_same_mask(mode):
    layer = StochasticDepth(0.5, mode=mode).build((2, 3), seed=7, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((400, 2, 3))
    y = layer.forward(x, train=True)
    ratio = y / x
    per_sample = ratio.reshape(400, -1)
    # Every sample is either dropped (0) or kept and scaled by 1/(1 - 0.5) = 2, as a whole.
    assert np.all(np.isclose(per_sample, 0) | np.isclose(per_sample, 2))
    assert np.all(per_sample.min(axis=1) == per_sample.max(axis=1))
    kept = np.isclose(per_sample[:, 0], 2).mean()
    if mode == "row":
        assert 0.4 < kept < 0.6          # binomial(400, 0.5): ±0.1 is 4 standard deviations
    else:
        assert kept in (0.0, 1.0)        # one draw for the whole batch
    dy = np.random.default_rng(1).standard_normal(y.shape)
    np.testing.assert_array_equal(layer.backward(dy), dy * ratio.round(12))
    again = StochasticDepth(0.5, mode=mode).build((2, 3), seed=7, dtype=np.float64)
    np.testing.assert_array_equal(again.forward(x, train=True), y)   # same seed, same drops


def test_stochastic_depth_p_one_and_zero_follow_torchvision():
    x = np.ones((3, 2))
    assert np.all(StochasticDepth(1.0).build((2,)).forward(x, train=True) == 0)
    assert np.all(StochasticDepth(0.0).build((2,)).forward(x, train=True) == 1)


# ----- finite differences ---------------------------------------------------------------------

@pytest.mark.parametrize("cls", NEW_TYPES, ids=lambda c: c.type_name)
@pytest.mark.parametrize("batch", [1, 2])
def test_every_example_passes_gradcheck_alone_and_inside_residual_and_concat(cls, batch):
    for i, (layer, shape) in enumerate(cls.examples()):
        x = np.random.default_rng(batch).standard_normal((batch,) + shape)
        if cls is StochasticDepth:
            # Train mode with a mask fixed for the whole check: the mask is data, not a function of x.
            layer.build(shape, seed=3, dtype=np.float64)
            layer.forward(x, train=True)
            layer.rng = _Replay(layer._cache[0])
            cs.gradcheck(layer, x, train=True)
            continue
        cs.gradcheck(layer, x)
        cs.gradcheck(cs.Residual([cls.examples()[i][0]]), x)
        if len(shape) > 1:   # concat joins channels: a (C, ...) input
            cs.gradcheck(cs.Concat([[cls.examples()[i][0]], [cs.layers.ReLU()]]), x)


class _Replay:
    """A Generator stand-in whose draws reproduce a given keep mask (kept: 0, dropped: 1)."""

    def __init__(self, mask):
        self.draws = np.where(mask.reshape(-1) > 0, 0.0, 1.0)

    def random(self, shape, dtype=None):
        return self.draws.reshape(shape)


# ----- spec and text form ---------------------------------------------------------------------

@pytest.mark.parametrize("cls", NEW_TYPES, ids=lambda c: c.type_name)
def test_spec_round_trip(cls):
    for layer, shape in cls.examples():
        model = cs.Sequential([layer]).build(shape, dtype=np.float64)
        again = cs.from_spec(model.spec())
        assert again.spec() == model.spec()
        again.build(shape, dtype=np.float64)
        again.load_state_dict(model.state_dict())
        x = np.random.default_rng(0).standard_normal((2,) + shape)
        np.testing.assert_array_equal(again.forward(x), model.forward(x))


def test_text_form_and_analysis_know_the_new_types():
    model = cs.parse_text("conv2d(8, 3, padding=1) -> layer_norm2d(eps=1e-6) -> gelu(approximate='tanh') "
                          "-> layer_scale(0.5) -> stochastic_depth(0.1) -> hardswish -> flatten "
                          "-> layer_norm(128) -> silu -> linear(10) -> hardsigmoid")
    report = cs.analyze(model, (3, 4, 4))
    # conv 8·3·3·3 + 8 = 224; layer_norm2d 8 + 8; layer_scale 8; layer_norm 128 + 128; linear 1,290.
    assert report.total_params == 224 + 16 + 8 + 256 + 1290


def test_bad_arguments_are_one_clear_line():
    for make, text in [(lambda: GELU("fast"), "approximate must be 'none' or 'tanh'"),
                       (lambda: LayerNorm(0), "normalized_shape must be a positive integer"),
                       (lambda: StochasticDepth(1.5), "between 0 and 1"),
                       (lambda: StochasticDepth(0.1, mode="col"), "mode must be 'row' or 'batch'"),
                       (lambda: LayerScale(float("nan")), "finite number")]:
        with pytest.raises(ConvscopeError, match=text):
            make()
    with pytest.raises(ConvscopeError, match=r"normalized_shape 5 must equal the trailing sizes of the input, got 3×4; use normalized_shape=4"):
        cs.Sequential([LayerNorm(5)]).build((3, 4))


# ----- ONNX, through each layer's own to_onnx ----------------------------------------------------

def _run_onnx(layer, x):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from convscope.interop.onnx_export import IR_VERSION, OPSET, _Builder
    helper = onnx.helper
    g = _Builder(onnx)
    g._taken.update({"input", "output"})
    [out] = layer.to_onnx(g, ["input"], "3")
    for node in g.nodes:
        if out in node.output:
            node.output[list(node.output).index(out)] = "output"
    shape = list(layer.input_shape)
    graph = helper.make_graph(g.nodes, "t", [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT,
                                                                           ["N", *shape])],
                              [helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, ["N", *shape])],
                              initializer=g.initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    onnx.checker.check_model(proto)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.astype(np.float32)})[0]


@pytest.mark.parametrize("cls", NEW_TYPES, ids=lambda c: c.type_name)
def test_onnx_runtime_agrees_within_1e_5(cls):
    for layer, shape in cls.examples():
        layer.build(shape, seed=1, dtype=np.float64)
        _randomise_parameters(layer, 2)
        x = 2 * np.random.default_rng(3).standard_normal((2,) + shape)
        np.testing.assert_allclose(_run_onnx(layer, x), layer.forward(x), rtol=1e-5, atol=1e-5)


def test_onnx_initializers_carry_state_dict_names():
    onnx = pytest.importorskip("onnx")
    from convscope.interop.onnx_export import _Builder
    layer = LayerScale().build((4, 2, 2))
    g = _Builder(onnx)
    layer.to_onnx(g, ["input"], "5")
    assert [t.name for t in g.initializers] == ["5.layer_scale"]


def test_hooks_declare_family_and_other_ops():
    expected = {"hardsigmoid": ("activation", {"activations": 60}), "hardswish": ("activation", {"activations": 120}),
                "silu": ("activation", {"activations": 120}), "gelu": ("activation", {"activations": 120}),
                "layer_norm2d": ("norm", {"normalization": 6 * 60}), "layer_scale": ("norm", {"normalization": 60}),
                "stochastic_depth": ("shape", {})}
    # Per sample on (3, 5, 4) = 60 elements: the counts the module docstrings state.
    for cls in NEW_TYPES:
        if cls.type_name in expected:
            layer = cls() if cls is not StochasticDepth else cls(0.1)
            family, ops = expected[cls.type_name]
            assert cls.family == family
            assert layer.other_ops((3, 5, 4), (3, 5, 4)) == ops
            assert layer.window((3, 5, 4)) is None
    assert LayerNorm(4).window((3, 4)) == "global"       # mixes positions along the last axis
    assert LayerNorm(4, bias=False).other_ops((4,), (4,)) == {"normalization": 20}


@pytest.mark.parametrize("module", [torch.nn.LayerNorm(6), torch.nn.LayerNorm([4, 6], eps=1e-6, bias=False),
                                    torch.nn.LayerNorm(6, elementwise_affine=False)])
def test_layer_norm_from_torch_round_trips(module):
    layer = LayerNorm.from_torch(module).build((3, 4, 6), dtype=np.float64)
    again = _torch_twin(layer)
    assert repr(again) == repr(module)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_()
    layer.load_state_dict({k: v.double().numpy() for k, v in module.state_dict().items()})
    assert_matches_torch(layer, module.double(), (3, 4, 6))
