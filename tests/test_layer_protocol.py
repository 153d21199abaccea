"""A layer type declared entirely in this file works everywhere, with no other file touched.

``Softplus`` below is the worked example of docs/adding-a-layer.md: its op (two functions) and
its layer (one class) live here and nowhere else. Registered, it gets summary counts, its
derivation, a diagram family, the text form, PyTorch export (``nn.Softplus``), ONNX export
(run in ONNX Runtime) and import back, and passes the whole conformance suite
(tests/conformance.py). Oracles: softplus(x) = log(1 + eˣ) written out in NumPy, its
derivative σ(x) checked by finite differences, torch.nn.Softplus and ONNX Runtime's Softplus.

A type that leaves out a declaration fails by its name instead of silently getting empty
counts or the diagram family "shape".
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import conformance as check
import convscope as cs
from convscope import ConvscopeError
from convscope.layers import Conv2d, Flatten, Layer, Linear
from convscope.layers.base import UndeclaredHook
from convscope.layers.registry import LAYER_TYPES, register
from convscope.viz import diagram


# ----- the op: pure functions, forward and backward -------------------------------------------

def softplus_forward(x):
    """``y = log(1 + eˣ)``, computed as logaddexp(0, x) so large |x| neither overflows nor
    loses the tail; the cache is x."""
    return np.logaddexp(0.0, x), x


def softplus_backward(dy, x):
    """``dL/dx = dL/dy · σ(x)`` with σ(x) = 1/(1 + e⁻ˣ) = e^(x − softplus(x))."""
    return dy * np.exp(x - np.logaddexp(0.0, x))


# ----- the layer: one class, every declaration ------------------------------------------------

class Softplus(Layer):
    """Element-wise ``log(1 + eˣ)``; input (N, *), output the same shape; no parameters."""

    type_name = "softplus"
    family = "activation"
    torch_class = "Softplus"   # nn.Softplus() (beta 1)
    onnx_op = "Softplus"

    @classmethod
    def examples(cls):
        return [(cls(), (2, 3, 4)), (cls(), (5,))]

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def other_ops(self, input_shape, output_shape):
        return {"activations": 3 * int(np.prod(output_shape))}  # exp, add, log

    def _forward(self, x, train):
        y, self._cache = softplus_forward(x)
        self._out_shape = y.shape
        return y

    def _backward(self, dy):
        return softplus_backward(dy, self._cache)


class Bare(Layer):
    """An element-wise layer that computes (y = 2x) but declares nothing else."""

    type_name = "bare_double"

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def _forward(self, x, train):
        self._cache = True
        return 2 * x

    def _backward(self, dy):
        return 2 * dy


@pytest.fixture
def registered():
    """Register the two types for one test and remove them after, so the registry other tests
    see (and the conformance suite's cases) stay the built-in ones."""
    for cls in (Softplus, Bare):
        assert cls.type_name not in LAYER_TYPES
        register(cls)
    try:
        yield
    finally:
        for cls in (Softplus, Bare):
            LAYER_TYPES.pop(cls.type_name, None)


def test_softplus_op_matches_its_formula_and_finite_differences():
    x = np.array([-30.0, -1.0, 0.0, 2.0, 40.0])
    y, _ = softplus_forward(x)
    # log(1 + e^0) = log 2; for large x softplus(x) → x (e⁻⁴⁰ is below float64's resolution of 40).
    np.testing.assert_allclose(y, [np.log1p(np.exp(-30.0)), np.log1p(np.exp(-1.0)), np.log(2.0),
                                   np.log1p(np.exp(2.0)), 40.0], rtol=1e-15)
    cs.gradcheck(lambda a: softplus_forward(a)[0], [x[1:4]], lambda dy, a: (softplus_backward(dy, a),))


def test_summary_counts_derivation_and_text_form(registered):
    model = cs.spec.parse_text("conv2d(2, 3) -> softplus -> flatten -> linear(4)")
    report = cs.analyze(model, (1, 5, 5))
    row = report.row("1")
    assert row.type == "softplus"
    # conv2d(2, 3) on 1×5×5 gives 2×3×3 = 18 elements, 3 ops each: 54.
    assert row.other_ops == {"activations": 54}
    assert report.other_ops["activations"] == 54
    lines = row.explain()
    assert "shape unchanged: 2×3×3 (softplus acts on each element)" in lines
    assert "activation ops = 3 per element · 18 elements = 54" in lines
    assert row.field is not None and row.field.as_dict() == report.row("0").field.as_dict()  # position-wise
    as_json = json.loads(json.dumps(report.to_dict(explain=True)))
    assert as_json["layers"][1]["other_ops"] == {"activations": 54}


def test_summary_command_line_counts_it(registered, capsys):
    from convscope.cli import main

    assert main(["summary", "conv2d(2, 3) -> softplus", "--input", "1x5x5", "--format", "json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["layers"]}
    assert rows["1"]["type"] == "softplus" and rows["1"]["other_ops"] == {"activations": 54}


def test_diagram_family_and_stage_folding(registered):
    model = cs.Sequential([Conv2d(2, 3), Softplus(), Flatten(), Linear(3)])
    boxes = diagram.layout(model, (1, 5, 5), detail="layers").boxes
    assert [b.kind for b in boxes if "1" in b.names] == ["activation"]
    staged = diagram.layout(model, (1, 5, 5), detail="stages").boxes
    assert [b.names for b in staged if "1" in b.names] == [["0", "1"]]  # folded into the conv's box


def test_torch_and_onnx_export_and_import(registered):
    import torch

    model = cs.Sequential([Conv2d(2, 3, padding=1), Softplus(), Flatten(), Linear(3)])
    model.build((1, 4, 4), seed=0, dtype=np.float64)
    module = cs.interop.to_torch(model)
    assert type(module[1]) is torch.nn.Softplus
    back = cs.interop.from_torch(module, (1, 4, 4))
    assert back.spec() == model.spec()
    for layer, shape in Softplus.examples():
        check.check_torch(layer, shape)
        check.check_onnx(layer, shape)  # ONNX Runtime within 1e-5, then from_onnx


@pytest.mark.parametrize("index", [0, 1])
def test_softplus_passes_the_conformance_checks(registered, index):
    layer, shape = Softplus.examples()[index]
    for batch in (1, 2):
        check.check_gradients(layer, shape, batch)
        check.check_in_residual(layer, shape, batch)
        check.check_in_concat(layer, shape, batch)
    check.check_spec(layer, shape)
    check.check_analysis(layer, shape)


def test_missing_declarations_fail_by_name(registered):
    model = cs.spec.parse_text("conv2d(2, 3) -> bare_double")
    with pytest.raises(UndeclaredHook, match=r"layer type 'bare_double' .*other_ops"):
        cs.analyze(model, (1, 5, 5))
    with pytest.raises(UndeclaredHook, match=r"'bare_double' .*family"):
        diagram.family("bare_double")
    with pytest.raises(UndeclaredHook, match=r"'bare_double' .*examples"):
        Bare.examples()
    model.build((1, 5, 5), seed=0)
    with pytest.raises(ConvscopeError, match=r"layer 1 \(Bare, type 'bare_double'\) has no PyTorch counterpart"):
        cs.interop.to_torch(model)
    with pytest.raises(ConvscopeError, match=r"layer 1 .*cannot be exported to ONNX: convscope has no ONNX "
                                             r"form for 'bare_double'"):
        from convscope.interop.onnx_export import build_onnx_model
        build_onnx_model(model)


def test_missing_examples_fail_the_conformance_collection_by_name(registered):
    import test_conformance

    cases = test_conformance._cases()
    failing = {c.values[0]: c.values[3] for c in cases if c.values[1] is None}
    assert set(failing) == {"bare_double"}
    assert "does not declare examples()" in str(failing["bare_double"])
    assert {c.id for c in cases if c.values[0] == "softplus"} == {"softplus-0", "softplus-1"}


def test_lrn_over_sequences_is_refused_by_onnx_export_with_the_reason():
    """Found by the conformance suite: ONNX Runtime's LRN kernel takes 4-D inputs only, so an
    LRN over (C, L) exported as LRN gave a file that does not run; the export now refuses it."""
    model = cs.Sequential([cs.layers.LocalResponseNorm(3)])
    model.build((4, 6), seed=0)
    from convscope.interop.onnx_export import build_onnx_model
    with pytest.raises(ConvscopeError, match=r"layer 0 .*ONNX Runtime's LRN takes \(N, C, H, W\) inputs only"):
        build_onnx_model(model)


def test_onnx_one_to_one_reader_refuses_attributes_it_does_not_read(registered):
    """The default from_onnx_attributes builds the layer only from an attribute-free node."""
    assert isinstance(Softplus.from_onnx_attributes({}), Softplus)
    with pytest.raises(ConvscopeError, match=r"has attributes \(alpha\); convscope reads Softplus as softplus"):
        Softplus.from_onnx_attributes({"alpha": 2.0})
