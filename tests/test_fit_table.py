"""Summary tables that fit (issue 15 point 1): at 80, 100 and 120 columns no number is cut.

Oracle: the analysis report's own exact counts. Every count the table shows must be either
the exact number (with thousands separators) or its compact form (three significant digits,
K/M/G), and no cell may contain rich's "…" truncation mark."""
import io
import re

import pytest
from rich.console import Console

import convscope as cs
from convscope.analysis import analyze
from convscope.analysis.fit_table import compact, fit_table
from convscope.analysis.format import print_table
from convscope.cli import main

GRAPH = {"input": [3, 32, 32], "layers": [{"type": "graph", "nodes": [
    {"name": "stem", "type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1, "inputs": ["input"]},
    {"name": "a", "type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1, "inputs": ["stem"]},
    {"name": "b", "type": "relu", "inputs": ["stem"]},
    {"name": "sum", "type": "add", "inputs": ["a", "b"]},
    {"name": "pool", "type": "global_avgpool", "inputs": ["sum"]},
    {"name": "fc", "type": "linear", "out_features": 10, "inputs": ["pool"]}], "outputs": ["fc"]}]}

MODELS = {"alexnet": ((3, 224, 224), lambda: cs.zoo.load("alexnet")),
          "resnet18": ((3, 224, 224), lambda: cs.zoo.load("resnet18")),
          "googlenet": ((3, 224, 224), lambda: cs.zoo.load("googlenet")),
          "graph": ((3, 32, 32), lambda: cs.from_spec(GRAPH))}


def test_compact_units():
    assert [compact(n) for n in (0, 999, 23_232, 23_296, 70_276_800, 61_100_840, 999_950, 1_180_000_000)] == \
        ["0", "999", "23.2 K", "23.3 K", "70.3 M", "61.1 M", "1 M", "1.18 G"]


def _render(report, width):
    buffer = io.StringIO()
    print_table(report, Console(file=buffer, width=width, color_system=None), "title")
    return buffer.getvalue()


@pytest.mark.parametrize("width", [80, 100, 120])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_no_number_is_cut(name, width):
    shape, load = MODELS[name]
    report = analyze(load(), shape)
    text = _render(report, width)
    table = text.split("\n(numbers in")[0].split("\nInput: ")[0]
    assert "…" not in table
    lines = table.splitlines()
    assert max(len(line) for line in lines) <= width
    allowed = {f"{n:,}" for n in _counts(report)} | {compact(n) for n in _counts(report)}
    allowed |= {"×".join(map(str, r.output_shape)) for r in report.layers}  # 1-D shapes such as 9216
    # every number cell shown is a whole exact count or its compact form
    for line in lines[3:]:
        for cell in re.split(r"\s{2,}", line.strip())[1:]:  # [0] is the layer name
            if re.fullmatch(r"\(?[\d.,]+(?: [KMGT])?\)?", cell):
                assert cell.strip("()") in allowed, (cell, name, width)
    # the total parameter count is there, whole, exact or compact
    total = report.total_params
    assert f"{total:,}" in table or compact(total) in table
    if "K" in table or " M " in table:
        assert "all, exact: --format json|markdown or " in text


def _counts(report):
    out = {report.total_params, report.total_macs, report.total_weights, report.total_biases,
           report.total_other_ops}
    for r in report.layers:
        out |= {r.weights, r.biases, r.params, r.macs, r.subtree_params, r.subtree_macs,
                sum(r.other_ops.values())}
    return out


def test_alexnet_at_100_columns_keeps_its_counts_and_says_what_was_dropped():
    report = analyze(cs.zoo.load("alexnet"), (3, 224, 224))
    text = _render(report, 100)
    # conv1: 23,232 weights + 64 biases = 23,296 params, 70,276,800 MACs (torchvision alexnet)
    assert "23.2 K" in text and "23.3 K" in text and "70.3 M" in text and "61.1 M" in text
    note = [line for line in text.splitlines() if line.startswith("(numbers in K/M/G")]
    assert len(note) == 1 and "left out: Receptive field, Other ops, Memory;" in note[0]


def test_a_wide_terminal_shows_every_column_exactly():
    report = analyze(cs.zoo.load("alexnet"), (3, 224, 224))
    text = _render(report, 240)
    assert "61,100,840" in text and "Receptive field" in text and "numbers in K/M/G" not in text


def test_json_keeps_exact_values(capsys):
    assert main(["summary", "alexnet", "--format", "json"]) == 0
    assert '"total_params": 61100840' in capsys.readouterr().out.replace(" ", "").replace('":', '": ')
