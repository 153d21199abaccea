"""The derivation text shared by analysis (summary --explain) and traces (convscope trace)."""
import ast
import pathlib

from convscope.equations import count_equation, equation, render_sections, term_equation

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "convscope"


def test_equation_drops_a_side_that_repeats_the_next():
    assert equation("weights = C_out", "16", "16") == "weights = C_out = 16"
    assert equation("params = (in + 1)·out", "(4 + 1)·2", "10") == "params = (in + 1)·out = (4 + 1)·2 = 10"


def test_count_equation_is_the_analysis_line_and_the_rule_wins():
    # The seed-001 count: (3·5·5 + 1)·32 = 2,432.
    assert count_equation("params = (C_in·k_h·k_w + 1)·C_out", "(3·5·5 + 1)·32", 2432) == \
        "params = (C_in·k_h·k_w + 1)·C_out = (3·5·5 + 1)·32 = 2,432"
    assert count_equation("biases = C_out", "32", 32) == "biases = C_out = 32"
    assert count_equation("weights = in·out", "2·3", 6, rule=7) == \
        "weights = in·out = 7 (the layer's rule; the formula gives 6)"


def test_term_equation_is_the_trace_line():
    # Seed 002's first output: y[0] = 1·0.3 + 2·0.5 + 0 = 1.3.
    assert term_equation("y[0]", ["x[0]·w[0]", "x[1]·w[1]", "b"], "1·0.3 + 2·0.5 + 0", "1.3") == \
        "y[0] = x[0]·w[0] + x[1]·w[1] + b = 1·0.3 + 2·0.5 + 0 = 1.3"


def test_sections_render_titles_indented_lines_and_gaps():
    sections = [("setup", ["a", "b"]), ("empty", []), ("forward", ["c"])]
    assert render_sections(sections) == "setup\n  a\n  b\n\nforward\n  c"
    assert render_sections(sections, indent="    ", gap=False) == "setup\n    a\n    b\nforward\n    c"


def _imports(path: pathlib.Path):
    """Every module a file imports (function-level imports included), as dotted suffixes."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            names.add(("." * node.level) + (node.module or ""))
            names.update(("." * node.level) + (node.module + "." if node.module else "") + a.name
                         for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_spec_and_diagnose_no_longer_close_import_cycles():
    # Issue 11 item 7: spec/resolve -> zoo/train -> spec, and analysis.report <-> diagnose.
    for path in (SRC / "spec").glob("*.py"):
        assert not any(n.lstrip(".").startswith(("zoo", "train", "commands")) for n in _imports(path)), path
    assert not any(n.endswith("report") for n in _imports(SRC / "analysis" / "diagnose.py"))
