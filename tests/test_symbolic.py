"""Sizes written as names (issue 15 point 8): `summary` prints polynomials, and numbers once bound.

Oracles: seed 001's answer for a grayscale n×m image, a 3×3 conv with k1 filters and padding,
then a 5×5 conv with k2 filters: params = k1·3·3 + k1 + k2·5·5·k1 + k2 (Martin Thoma's
"type 2.2", confirmed by the accepted answer); the numeric engine (cs.analyze) for every
binding, so a formula that disagrees with the counted model fails; torchvision's AlexNet total
61,100,840 at C = 3.
"""
import itertools
import json

import pytest
import sympy

import convscope as cs
from convscope.analysis import symbolic as S
from convscope.cli import main
from convscope.errors import ConvscopeError
from convscope.spec.text import parse_entries

SEED_001 = "conv2d(k1, 3, padding=1) -> relu -> conv2d(k2, 5, padding=2)"
k1, k2, n, m, C, H, W = (S.symbol(s) for s in ("k1", "k2", "n", "m", "C", "H", "W"))


def test_seed_001_answer_comes_out_as_written_and_simplified():
    # The seed's image is grayscale: the first conv sees 1 channel, so C_in = 1 drops out.
    report = S.analyze_symbolic(parse_entries(SEED_001), S.parse_shape("1xnxm"))
    assert S.written(report, "params") == "k1·3·3 + k1 + k2·5·5·k1 + k2"
    assert sympy.expand(report.total("params") - (k1 * 3 * 3 + k1 + k2 * 5 * 5 * k1 + k2)) == 0
    assert S.forms(report, "params")[1] == "25·k1·k2 + 10·k1 + k2"
    assert report.output == (k2, n, m)  # padding keeps n×m (the seed's "con relleno")
    # MACs factor: every output pixel of both layers, n·m·k1·(9 + 25·k2).
    assert S.forms(report, "macs")[-1] == "k1·m·n·(25·k2 + 9)"


def test_channels_as_a_name():
    report = S.analyze_symbolic(parse_entries(SEED_001), S.parse_shape("Cx32x32"))
    assert S.written(report, "params") == "k1·3·3·C + k1 + k2·5·5·k1 + k2"
    assert S.written(report, "weights") == "k1·3·3·C + k2·5·5·k1"
    assert S.written(report, "biases") == "k1 + k2"


NETS = [
    SEED_001 + " -> maxpool2d(2) -> flatten -> linear(10)",
    "conv2d(k1, 3, stride=2) -> maxpool2d(3, stride=2, padding=1) -> conv2d(k2, [3, 5], padding=[1, 0], "
    "groups=2) -> avgpool2d(2) -> flatten -> linear(k1, bias=False)",
    "conv2d(k1, 5, dilation=2, bias=False) -> batchnorm2d -> relu -> conv2d(k2, 1) -> dropout -> flatten -> linear(7)",
]


@pytest.mark.parametrize("text", NETS)
def test_every_binding_equals_the_numeric_engine(text):
    """Floors included: stride 2, overlapping pools, dilation, groups, odd sizes."""
    entries = parse_entries(text)
    report = S.analyze_symbolic(entries, S.parse_shape("CxHxW"))
    for c, h, w, a, b in itertools.product((2, 3), (33, 64), (35, 48), (4, 6), (2, 8)):
        values = {"C": c, "H": h, "W": w, "k1": a, "k2": b}
        model = cs.spec.from_spec({"layers": [{**e, **{k: values.get(str(v), v) for k, v in e.items()
                                                       if isinstance(v, cs.spec.text.Symbol)}}
                                              for e in entries]})
        numeric = cs.analyze(model, (c, h, w))
        assert S.evaluate(report.total("params"), values) == numeric.total_params
        assert S.evaluate(report.total("weights"), values) == numeric.total_weights
        assert S.evaluate(report.total("biases"), values) == numeric.total_biases
        assert S.evaluate(report.total("macs"), values) == numeric.total_macs
        assert tuple(S.evaluate(v, values) for v in report.output) == numeric.output


def test_padding_as_a_name():
    report = S.analyze_symbolic(parse_entries("conv2d(k1, 3, padding=p)"), S.parse_shape("1x8x8"))
    assert S.show_shape(report.output) == "k1×(2·p + 6)×(2·p + 6)"  # 8 + 2·p − 3 + 1


def test_shapes_with_strides_print_as_floor_formulas():
    report = S.analyze_symbolic(parse_entries("conv2d(k1, 3, stride=2) -> maxpool2d(2)"), S.parse_shape("1xHxW"))
    assert S.show_shape(report.rows[0].counts.output_shape) == "k1×(⌊(H - 3)/2⌋ + 1)×(⌊(W - 3)/2⌋ + 1)"


def test_zoo_model_with_channels_as_a_name_gives_torchvisions_total_at_3(capsys):
    assert main(["summary", "alexnet", "--input", "Cx224x224", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["symbols"] == ["C"]
    params = sympy.sympify(data["total_params"], locals={"C": C})
    assert params.subs(C, 3) == 61_100_840 and sympy.expand(params - (64 * 11 * 11 * C + 61_077_608)) == 0


def test_cli_prints_the_polynomials_and_numbers_once_bound(capsys):
    assert main(["summary", SEED_001, "--input", "1xnxm"]) == 0
    out = capsys.readouterr().out
    assert "params = k1·3·3 + k1 + k2·5·5·k1 + k2 = 25·k1·k2 + 10·k1 + k2" in out
    assert "k2×n×m" in out
    # Bound: the numeric table (the engine's count) and the formulas with their values agree:
    # 25·32·64 + 10·32 + 64 = 51,584.
    assert main(["summary", SEED_001, "--input", "1x28x28", "--set", "k1=32,k2=64", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total_params"] == 51_584 and data["symbolic"]["total_params"] == "51584"
    assert data["symbolic"]["params_factored"] == "25*k1*k2 + 10*k1 + k2"
    assert main(["summary", SEED_001, "--input", "1x28x28", "--set", "k1=32,k2=64"]) == 0
    out = capsys.readouterr().out
    assert "params = k1·3·3 + k1 + k2·5·5·k1 + k2 = 25·k1·k2 + 10·k1 + k2 = 51,584" in out
    assert "51,584" in out.split("with k1=32")[0]  # the numeric table above says it too


@pytest.mark.parametrize("argv,needle", [
    ([SEED_001, "--input", "1x8x8", "--set", "q=3"], "no such name"),
    ([SEED_001, "--input", "1x8x8", "--set", "k1=0"], "positive integers"),
    (["conv2d(8, 3)", "--input", "1x8x8", "--set", "k1=3"], "no sizes written as names"),
    (["conv2d(__import__, 3)", "--input", "1x8x8"], "plain identifiers"),
    (["conv2d(os.system, 3)", "--input", "1x8x8"], "must be literals"),
    (["conv2d(k1, 3, bias=yes)", "--input", "1x8x8"], "bias is not a size"),
    (["conv2d(k1, 3) -> dropout(p)", "--input", "1x8x8"], "p is not a size"),
    (["conv2d(k1, 3)"], "--input"),
])
def test_bad_symbolic_input_is_one_line(capsys, argv, needle):
    code = main(["summary", *argv])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1 and needle in err, err


def test_names_never_reach_the_numeric_engine():
    with pytest.raises(ConvscopeError, match="--set k1=32"):
        cs.spec.text.parse_text(SEED_001, (1, 8, 8))
    model = cs.spec.text.parse_text(SEED_001, (1, 8, 8), values={"k1": 4, "k2": 6})
    assert cs.analyze(model).total_params == (1 * 9 + 1) * 4 + (4 * 25 + 1) * 6
