"""cs.analyze: counts, shapes, other ops, memory, receptive fields, explanations, diagnostics.

Oracles: the seeds' hand counts (seeds 000-004), the built model itself (real parameter
arrays and a real forward pass), a brute-force gradient probe for receptive fields, and
published receptive fields (Araujo, Norris & Sim, "Computing Receptive Fields of
Convolutional Neural Networks", Distill 2019: AlexNet 195, VGG-16 212).
"""
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convscope as cs
from convscope.analysis import ShapeMismatch
from convscope.errors import ConvscopeError
from convscope.layers import (AvgPool2d, BatchNorm2d, Concat, Conv2d, Flatten, Linear,
                              LocallyConnected2d, MaxPool2d, ReLU, Residual, Sequential)


def unique_param_count(model) -> int:
    seen = {}
    for p in model.parameters():
        seen[id(p)] = p.size
    return sum(seen.values())


# ----- seed 000: (3·5·5 + 1)·32 ------------------------------------------------------------

def test_seed000_conv_bias_is_one_per_filter():
    report = cs.analyze(Sequential([Conv2d(32, 5)]), (3, 32, 32))
    row = report.layers[0]
    assert (row.weights, row.biases, row.params) == (3 * 5 * 5 * 32, 32, 2432)  # (3·(5·5)+1)·32
    assert report.total_params == report.trainable_params == 2432
    assert "params = (C_in·k_h·k_w + 1)·C_out = (3·5·5 + 1)·32 = 2,432" in row.explain()


# ----- seed 001: k1·3·3 + k1 + k2·5·5·k1 + k2 ----------------------------------------------

@pytest.mark.parametrize("k1,k2", [(1, 1), (4, 8), (16, 32), (7, 3)])
def test_seed001_stacked_convs_span_all_input_maps(k1, k2):
    model = Sequential([Conv2d(k1, 3, padding=1), Conv2d(k2, 5)])
    report = cs.analyze(model, (1, 12, 10))  # a grayscale n×m image
    expected = k1 * 3 * 3 + k1 + k2 * 5 * 5 * k1 + k2  # the accepted answer's count ("type 2")
    assert report.total_params == expected
    assert report.layers[0].output_shape == (k1, 12, 10)  # padding keeps n×m
    assert report.output == (k2, 8, 6)                    # 12 − 5 + 1, 10 − 5 + 1
    model.build((1, 12, 10), seed=0)
    assert unique_param_count(model) == expected


# ----- seed 003: sharing, and the (11, 11, 4) example ----------------------------------------

def test_seed003_sharing_versus_locally_connected():
    shared = cs.analyze(Sequential([Conv2d(96, 11, stride=4)]), (3, 227, 227))
    local = cs.analyze(Sequential([LocallyConnected2d(96, 11, stride=4)]), (3, 227, 227))
    assert shared.output == local.output == (96, 55, 55)
    assert (shared.total_weights, shared.total_biases, shared.total_params) == (34_848, 96, 34_944)
    assert local.total_params == 105_705_600  # 55·55·96 = 290,400 neurons × (11·11·3 + 1)
    lines = local.layers[0].explain()
    text = "\n".join(lines)
    assert "H_out = W_out = ⌊(H_in + 2·p − k)/s⌋ + 1 = ⌊(227 + 2·0 − 11)/4⌋ + 1 = 55" in lines
    assert "290,400" in text and "34,944" in text and "105,705,600" in text and "3,025× fewer" in text


def test_seed003_eleven_by_eleven_by_four_input_gives_four_by_four():
    # F = 5, S = 2, P = 0 on an 11×11 input with depth 4: (11 − 5)/2 + 1 = 4.
    report = cs.analyze(Sequential([Conv2d(2, 5, stride=2)]), (4, 11, 11))
    row = report.layers[0]
    assert row.output_shape == (2, 4, 4)
    assert row.param_shapes["weight"] == (2, 4, 5, 5)  # W0 is 5×5×4 (NCHW: 4×5×5)
    # V[i, 0, 0] reads X[2i : 2i + 5]: windows start at 0, 2, 4, 6 and span 5.
    assert (row.field.size, row.field.jump, row.field.start) == ((5, 5), (2, 2), (0, 0))


# ----- seed 004: AlexNet's 256×6×6 = 9,216 -> 4,096 -----------------------------------------

def test_seed004_flatten_after_pool_feeds_9216():
    report = cs.analyze(cs.zoo.load("alexnet"))
    pool, flatten, linear = report.row("12"), report.row("14"), report.row("16")
    assert pool.input_shape == (256, 13, 13) and pool.output_shape == (256, 6, 6)
    assert flatten.output_shape == (9216,)
    assert linear.params == 37_752_832  # (9,216 + 1)·4,096
    assert "flatten 256×6×6 = 9,216" in flatten.explain()
    assert "params = (in + 1)·out = (9,216 + 1)·4,096 = 37,752,832" in linear.explain()
    assert "H_out = W_out = ⌊(H_in + 2·p − k)/s⌋ + 1 = ⌊(13 + 2·0 − 3)/2⌋ + 1 = 6" in pool.explain()


def test_seed004_diagnostic_names_the_pool_that_shrank_the_map():
    spec = cs.zoo.spec("alexnet")
    spec["layers"][16]["in_features"] = 43264  # what the question expected: 256·13·13
    with pytest.raises(ShapeMismatch) as info:
        cs.analyze(cs.from_spec(spec))
    message = str(info.value)
    assert ("linear expects 43,264 inputs, got 9,216: 256×13×13 became 256×6×6 after "
            "maxpool2d(3, stride=2)") in message
    assert message.startswith("layer 16 (linear(4096, in_features=43264))")
    assert "set in_features=9216" in message
    assert (info.value.expected, info.value.got) == (43264, 9216)
    assert "\n" not in message


@pytest.mark.parametrize("text,shape,needle", [
    ("conv2d(8, 3) -> conv2d(4, 3, in_channels=5)", (3, 8, 8),
     "conv2d expects 5 input channels, got 8: the 8 channels come from conv2d(8, 3) (layer 0)"),
    ("maxpool2d(2) -> maxpool2d(2) -> conv2d(4, 5)", (3, 8, 8),
     "its 5×5 window does not fit its padded input 2×2"),
    ("conv2d(4, 9)", (3, 8, 8), "H = 8 + 0 + 0 = 8 < 9"),
    ("conv2d(8, 3) -> linear(10)", (3, 8, 8), "add flatten before it"),
    ("conv2d(8, 3) -> batchnorm2d(4)", (3, 8, 8), "batchnorm2d expects 4 input channels, got 8"),
])
def test_diagnostics_name_layer_expected_got_and_fix(text, shape, needle):
    with pytest.raises(ConvscopeError) as info:
        cs.analyze(cs.parse_text(text), shape)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_diagnostic_inside_a_branch_names_the_dotted_layer():
    model = Sequential([Conv2d(8, 3), Concat([[Conv2d(4, 1)], [MaxPool2d(2), Conv2d(4, 5)]])])
    with pytest.raises(ShapeMismatch) as info:
        cs.analyze(model, (3, 8, 8))
    assert str(info.value).startswith("layer 1.branches.1.1 (conv2d(4, 5))")


# ----- containers, naming, totals ------------------------------------------------------------

def test_nested_rows_have_dotted_names_and_totals_count_once():
    model = Sequential([
        Conv2d(8, 3, padding=1), ReLU(),
        Concat([[Conv2d(4, 1)], [Conv2d(2, 1), Conv2d(6, 3, padding=1)], [MaxPool2d(3, stride=1, padding=1)]]),
        Residual([Conv2d(18, 3, padding=1, bias=False), BatchNorm2d()]),
        Flatten(), Linear(5),
    ])
    report = cs.analyze(model, (3, 6, 6))
    names = [r.name for r in report.layers]
    assert names == ["0", "1", "2", "2.branches.0.0", "2.branches.1.0", "2.branches.1.1",
                     "2.branches.2.0", "3", "3.body.0", "3.body.1", "4", "5"]
    assert report.row("2").output_shape == (4 + 6 + 8, 6, 6)
    assert sum(r.params for r in report.layers) == report.total_params
    model.build((3, 6, 6), seed=0)
    assert report.total_params == unique_param_count(model)
    assert report.total_buffers == sum(b.size for _, b in model.named_buffers())
    assert report.row("2").subtree_params == sum(r.params for r in report.layers if r.name.startswith("2."))
    assert report.row("3.body.1").buffer_shapes  # running statistics are buffers ...
    assert report.row("3.body.1").params == 2 * 18  # ... and only γ, β are parameters


def test_a_layer_used_twice_is_counted_once():
    shared = Linear(6)
    report = cs.analyze(Sequential([shared, ReLU(), shared]), (6,))
    assert report.total_params == 6 * 6 + 6
    assert report.layers[2].shared_with == "0"
    assert report.total_macs == 2 * 36  # but it runs twice


# ----- random nets: analysis equals the built model ------------------------------------------

@st.composite
def random_nets(draw):
    channels = draw(st.integers(1, 3))
    size = draw(st.integers(6, 11))
    layers = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["conv", "pool", "bn", "relu", "concat", "residual"]))
        if kind == "conv":
            layers.append(Conv2d(draw(st.integers(1, 4)), draw(st.integers(1, 3)),
                                 stride=draw(st.integers(1, 2)), padding=draw(st.integers(0, 1)),
                                 dilation=draw(st.integers(1, 2)), bias=draw(st.booleans())))
        elif kind == "pool":
            layers.append(MaxPool2d(2, stride=draw(st.integers(1, 2))))
        elif kind == "bn":
            layers.append(BatchNorm2d())
        elif kind == "relu":
            layers.append(ReLU())
        elif kind == "concat":
            layers.append(Concat([[Conv2d(draw(st.integers(1, 3)), 1)],
                                  [Conv2d(draw(st.integers(1, 3)), 3, padding=1), ReLU()]]))
        else:
            layers.append(Residual([Conv2d(channels, 3, padding=1), ReLU()]))
    if draw(st.booleans()):
        layers += [Flatten(), Linear(draw(st.integers(1, 5)))]
    return Sequential(layers), (channels, size, size)


@settings(max_examples=30, deadline=None)
@given(random_nets())
def test_analysis_matches_built_model_and_forward(net):
    model, shape = net
    try:
        report = cs.analyze(model, shape)
    except ConvscopeError:
        # The net does not fit (e.g. too many downsamplings): building must refuse too.
        with pytest.raises(ConvscopeError):
            model.build(shape)
        return
    assert not any(layer._params for _, layer in _leaves(model))  # nothing was allocated
    model.build(shape, seed=1, dtype=np.float64)
    y = model.forward(np.random.default_rng(0).standard_normal((2,) + shape))
    assert y.shape[1:] == report.output
    assert report.total_params == unique_param_count(model)
    assert report.total_buffers == sum(b.size for _, b in model.named_buffers())


def _leaves(layer, prefix=""):
    for name, child in layer.children():
        if child.children():
            yield from _leaves(child, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", child


# ----- receptive fields against a gradient probe ---------------------------------------------

def _probe(model, shape, position):
    """Input rows and columns whose value changes output position ``(i, j)`` of any channel:
    non-zero dL/dx for dL/dy = 1 there (0 elsewhere), with every weight and input positive so
    nothing cancels."""
    model.build(shape, seed=0, dtype=np.float64)
    for p in model.parameters():
        p.value[...] = np.abs(p.value) + 0.1
    x = np.random.default_rng(0).uniform(0.5, 1.5, (1,) + shape)
    y = model.forward(x, train=True)
    dy = np.zeros_like(y)
    dy[(0, slice(None)) + tuple(position)] = 1.0
    dx = model.backward(dy)[0]
    hit = np.abs(dx).sum(axis=0) > 0
    rows, cols = np.nonzero(hit)
    if rows.size == 0:
        return None  # the output sees only padding
    return (rows.min(), rows.max()), (cols.min(), cols.max())


@st.composite
def probe_nets(draw, padded=True):
    """Conv/avg-pool/relu stacks; with ``padded``, also padding, concat and residual blocks."""
    layers = []
    kinds = ["conv", "avgpool", "relu"] + (["concat", "residual"] if padded else [])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(kinds))
        if kind == "conv":
            layers.append(Conv2d(2, draw(st.integers(1, 4)), stride=draw(st.integers(1, 2)),
                                 padding=draw(st.integers(0, 1)) if padded else 0,
                                 dilation=draw(st.integers(1, 2))))
        elif kind == "avgpool":
            layers.append(AvgPool2d(draw(st.integers(2, 3)), stride=draw(st.integers(1, 2))))
        elif kind == "relu":
            layers.append(ReLU())
        elif kind == "concat":
            layers.append(Concat([[Conv2d(1, 1)], [Conv2d(1, draw(st.sampled_from([3, 5])), padding=2)]]
                                 if draw(st.booleans()) else
                                 [[Conv2d(1, 3, padding=1)], [AvgPool2d(3, stride=1, padding=1)]]))
        else:
            layers.append(Residual([Conv2d(2, 3, padding=1)], [Conv2d(2, 1)]))
    return Sequential([Conv2d(2, 1)] + layers)


def _spans(report, position):
    f = report.field
    return [(f.start[a] + i * f.jump[a], f.start[a] + i * f.jump[a] + f.size[a] - 1)
            for a, i in enumerate(position)]


def _draw_position(data, report):
    return (data.draw(st.integers(0, report.output[1] - 1)), data.draw(st.integers(0, report.output[2] - 1)))


@settings(max_examples=30, deadline=None)
@given(probe_nets(padded=False), st.integers(14, 22), st.data())
def test_receptive_field_equals_gradient_probe_without_padding(model, size, data):
    # Without padding every output sees real pixels and the field's two ends are real taps
    # (strides and dilations leave holes only inside), so the probe's extent equals the field.
    shape = (1, size, size)
    try:
        report = cs.analyze(model, shape)
    except ConvscopeError:
        return
    position = _draw_position(data, report)
    assert _probe(model, shape, position) == tuple(_spans(report, position))


@settings(max_examples=30, deadline=None)
@given(probe_nets(padded=True), st.integers(14, 22), st.data())
def test_receptive_field_contains_gradient_probe_with_padding_and_branches(model, size, data):
    # With padding an output near the edge may see padding only; whatever it sees lies in its field.
    shape = (1, size, size)
    try:
        report = cs.analyze(model, shape)
    except ConvscopeError:
        return
    position = _draw_position(data, report)
    probe = _probe(model, shape, position)
    if probe is not None:
        for (lo, hi), (seen_lo, seen_hi) in zip(_spans(report, position), probe):
            assert lo <= seen_lo <= seen_hi <= hi


def test_branched_field_is_exact_away_from_the_edges():
    model = Sequential([Conv2d(2, 3, stride=2), Concat([[Conv2d(1, 1)], [Conv2d(1, 5, padding=2)]]),
                        Residual([Conv2d(2, 3, padding=1), ReLU(), Conv2d(2, 3, padding=1)])])
    report = cs.analyze(model, (1, 41, 41))
    # 3 → 3 + 2·4 = 11 (the 5×5 branch) → 11 + 2·2·2 = 19 (two 3×3 convs at jump 2).
    assert report.field.size == (19, 19) and report.field.jump == (2, 2)
    position = (10, 9)
    assert _probe(model, (1, 41, 41), position) == tuple(_spans(report, position))


def test_concat_field_is_its_widest_branch():
    model = Sequential([Concat([[Conv2d(1, 1)], [Conv2d(1, 5, padding=2)], [Conv2d(1, 3, padding=1)]])])
    f = cs.analyze(model, (1, 9, 9)).field
    assert (f.size, f.start, f.jump) == ((5, 5), (-2, -2), (1, 1))


def test_published_receptive_fields():
    # Araujo et al. 2019 (Distill), Table: AlexNet 195 (pool5), VGG-16 212 (pool5).
    alexnet = cs.analyze(cs.zoo.load("alexnet"))
    assert alexnet.row("12").field.size == (195, 195) and alexnet.row("12").field.jump == (32, 32)
    vgg = cs.analyze(cs.zoo.load("vgg16"))
    assert vgg.row("30").type == "maxpool2d" and vgg.row("30").field.size == (212, 212)
    assert alexnet.row("16").field.is_global  # linear: the whole image


# ----- other ops, memory ---------------------------------------------------------------------

def test_other_ops_are_counted_apart_from_macs():
    report = cs.analyze(Sequential([Conv2d(64, 11, stride=4, padding=2), ReLU(), MaxPool2d(3, stride=2),
                                    Residual([Conv2d(64, 1)])]), (3, 224, 224))
    conv, relu, pool, res = report.row("0"), report.row("1"), report.row("2"), report.row("3")
    assert conv.macs == 64 * 55 * 55 * 3 * 11 * 11 == 70_276_800  # torchvision's first conv
    assert conv.other_ops == {"bias_adds": 64 * 55 * 55}
    assert relu.other_ops == {"activations": 64 * 55 * 55} and relu.macs == 0
    assert pool.other_ops == {"pooling": 64 * 27 * 27 * 9}  # 9 compares per output
    assert res.other_ops == {"elementwise_adds": 64 * 27 * 27}
    assert report.total_flops == 2 * report.total_macs
    assert report.to_dict()["total_other_ops"] == sum(report.other_ops.values())


def test_memory_scales_with_dtype_and_batch():
    model = Sequential([Conv2d(8, 3, padding=1), Flatten(), Linear(10)])
    single = cs.analyze(model, (3, 16, 16))
    double = cs.analyze(model, (3, 16, 16), dtype=np.float64, batch_size=4)
    assert single.row("0").memory_bytes == 8 * 16 * 16 * 4
    assert double.row("0").memory_bytes == 8 * 16 * 16 * 8 * 4
    assert single.activation_bytes == (2 * 8 * 16 * 16 + 10) * 4
    assert single.param_bytes == single.total_params * 4


# ----- no weights are allocated --------------------------------------------------------------

def test_thousand_layer_net_analyses_without_allocating():
    # 1,000 linear(1024) layers hold 1,049,600,000 parameters (4.2 GB in float32); analysing
    # them allocates none of it.
    model = Sequential([Linear(1024) for _ in range(1000)])
    tracemalloc.start()
    report = cs.analyze(model, (1024,))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert report.total_params == 1000 * (1024 * 1024 + 1024)
    assert peak < 50_000_000
    assert not model.built and not model.layers[0]._params


def test_vgg16_analysis_allocates_no_weights():
    tracemalloc.start()
    report = cs.analyze(cs.zoo.load("vgg16"))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert report.total_params == 138_357_544
    assert peak < 20_000_000  # the weights alone would be 553 MB


# ----- explanations --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["lenet5", "alexnet", "vgg16", "googlenet", "resnet18"])
def test_every_explanation_agrees_with_the_layer_rules(name):
    report = cs.analyze(cs.zoo.load(name))
    for row in report.layers:
        lines = row.explain()
        assert lines, row.name
        assert not any("the layer's rule" in line for line in lines), (row.name, lines)
    assert f"total params = Σ params" in report.explain()


def test_explain_ceil_mode_and_grouped_and_dilated():
    report = cs.analyze(Sequential([MaxPool2d(3, stride=2, ceil_mode=True),
                                    Conv2d(4, 3, groups=2, dilation=2, padding=[1, 0])]), (2, 112, 111))
    pool, conv = report.row("0"), report.row("1")
    assert "H_out = ⌈(H_in + 2·p − k)/s⌉ + 1 = ⌈(112 + 2·0 − 3)/2⌉ + 1 = 56" in pool.explain()
    lines = conv.explain()
    assert "params = ((C_in/G)·k_h·k_w + 1)·C_out = ((2/2)·3·3 + 1)·4 = 40" in lines
    assert any(l.startswith("H_out = ⌊(H_in + p_lo + p_hi − d·(k − 1) − 1)/s⌋ + 1") for l in lines)
    assert conv.output_shape == (4, 54, 51)


def test_analyze_rejects_bad_arguments():
    with pytest.raises(ConvscopeError, match="input shape"):
        cs.analyze(Sequential([ReLU()]), (3, 0, 4))
    with pytest.raises(ConvscopeError, match="needs the per-sample input shape"):
        cs.analyze(Sequential([ReLU()]))
    with pytest.raises(ConvscopeError, match="batch_size"):
        cs.analyze(Sequential([ReLU()]), (3, 4, 4), batch_size=0)
    with pytest.raises(ConvscopeError, match="expects a convscope model"):
        cs.analyze("alexnet", (3, 4, 4))
