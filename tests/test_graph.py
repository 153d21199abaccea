"""cs.Graph: construction checks (bad graphs), naming, sharing, nesting, specs."""
import json

import numpy as np
import pytest

import convscope as cs
from convscope import layers as L
from convscope.errors import ConvscopeError


def one_line(call, *fragments):
    with pytest.raises(ConvscopeError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


# ----- bad graphs: one line naming the node, nothing built ----------------------------------

def test_cycle_names_a_node_on_it():
    nodes = [("a", L.ReLU(), "c"), ("b", L.ReLU(), "a"), ("c", L.Add(), ["b", "input"]), ("out", L.ReLU(), "c")]
    one_line(lambda: cs.Graph(nodes, "out"), "node 'a' is in a cycle", "'a' -> 'c' -> 'b' -> 'a'")


def test_self_loop():
    one_line(lambda: cs.Graph([("a", L.Add(), ["input", "a"])], "a"), "node 'a' is in a cycle")


def test_undefined_input_names_the_node_and_the_name():
    one_line(lambda: cs.Graph([("a", L.ReLU(), "input"), ("b", L.ReLU(), "conv9")], "b"),
             "node 'b'", "input 'conv9' is not defined by any node")


def test_undefined_output():
    one_line(lambda: cs.Graph([("a", L.ReLU(), "input")], "zz"), "outputs", "'zz' is not defined")


def test_two_nodes_with_one_name():
    one_line(lambda: cs.Graph([("a", L.ReLU(), "input"), ("a", L.Tanh(), "input")], "a"),
             "node 'a': two nodes have this name")


def test_shapes_that_cannot_be_added_name_both_inputs_and_shapes():
    conv = L.Conv2d(4, 3, padding=1)
    g = cs.Graph([("conv", conv, "input"), ("sum", L.Add(), ["conv", "input"])], "sum")
    one_line(lambda: g.build((3, 8, 8)), "node 'sum' (add)", "'conv' (4×8×8)", "'input' (3×8×8)")
    assert not conv.built and not g.built  # nothing was allocated


def test_shapes_that_cannot_be_concatenated_name_both_inputs_and_shapes():
    g = cs.Graph([("a", L.Conv2d(2, 3), "input"), ("b", L.Conv2d(2, 1), "input"),
                  ("cat", L.Cat(), ["a", "b"])], "cat", )
    one_line(lambda: g.output_shape((3, 8, 8)), "node 'cat' (cat)", "'a' (2×6×6)", "'b' (2×8×8)")


def test_shape_errors_at_construction_when_the_input_is_declared():
    one_line(lambda: cs.Graph([("a", L.Conv2d(2, 3), "input"), ("s", L.Add(), ["a", "input"])], "s",
                              input_shape=(3, 8, 8)), "node 's' (add)", "'a' (2×6×6)", "'input' (3×8×8)")


def test_node_that_does_not_reach_the_output():
    one_line(lambda: cs.Graph([("a", L.ReLU(), "input"), ("dead", L.Tanh(), "a"), ("out", L.Sigmoid(), "a")],
                              "out"), "node 'dead' does not reach the output 'out'")


def test_wrong_number_of_inputs_and_pieces():
    one_line(lambda: cs.Graph([("a", L.ReLU(), ["input", "input"])], "a"), "node 'a': relu takes 1 input, got 2")
    one_line(lambda: cs.Graph([("s", L.Chunk(2), "input"), ("o", L.ReLU(), "s")], "o"),
             "node 'o'", "name one piece, e.g. 's:0'")
    one_line(lambda: cs.Graph([("r", L.ReLU(), "input"), ("o", L.ReLU(), "r:0")], "o"), "'r' has a single output")


def test_reserved_names():
    one_line(lambda: cs.Graph([("input", L.ReLU(), "input")], "input"), "reserved")
    one_line(lambda: cs.Graph([("a:1", L.ReLU(), "input")], "a:1"), "reserved")


@pytest.mark.parametrize("doc, fragments", [
    ({"type": "graph", "nodes": [{"name": "a", "type": "relu", "inputs": ["b"]},
                                 {"name": "b", "type": "relu", "inputs": ["a"]}], "outputs": ["b"]},
     ["is in a cycle"]),
    ({"type": "graph", "nodes": [{"name": "a", "type": "relu", "inputs": ["x"]}], "outputs": ["a"]},
     ["node 'a'", "'x' is not defined"]),
    ({"type": "graph", "nodes": [{"name": "a", "type": "relu", "inputs": ["input"]},
                                 {"name": "a", "type": "relu", "inputs": ["input"]}], "outputs": ["a"]},
     ["node 'a': two nodes"]),
    ({"input": [3, 8, 8], "type": "graph", "nodes": [
        {"name": "c", "type": "conv2d", "out_channels": 4, "kernel_size": 3, "inputs": ["input"]},
        {"name": "s", "type": "concat", "inputs": ["c", "input"]}], "outputs": ["s"]},
     ["node 's'", "'c' (4×6×6)", "'input' (3×8×8)"]),
    ({"type": "graph", "nodes": [{"name": "a", "type": "relu", "inputs": ["input"]},
                                 {"name": "b", "type": "relu", "inputs": ["input"]}], "outputs": ["b"]},
     ["node 'a' does not reach the output"]),
    ({"type": "graph", "nodes": [{"name": "a", "type": "conv2d", "out_channel": 4, "kernel_size": 3,
                                  "inputs": ["input"]}], "outputs": ["a"]},
     ["nodes[0]: unknown key 'out_channel'"]),
])
def test_bad_graph_specs_are_one_line(doc, fragments):
    one_line(lambda: cs.from_spec(doc), *fragments)


def test_bad_graph_on_the_command_line_exits_2_with_one_line(tmp_path, capsys):
    from convscope.cli import main
    path = tmp_path / "cycle.json"
    path.write_text(json.dumps({"input": [1, 8, 8], "type": "graph", "nodes": [
        {"name": "a", "type": "relu", "inputs": ["b"]}, {"name": "b", "type": "relu", "inputs": ["a"]}],
        "outputs": ["b"]}))
    assert main(["summary", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("convscope: error:") and "cycle" in err and "\n" not in err


# ----- naming, sharing, nesting -------------------------------------------------------------

def test_dotted_node_names_are_parameter_names():
    g = cs.Graph([("features.0", L.Conv2d(4, 3), "input"), ("features.1", L.ReLU(), "features.0"),
                  ("layer1.0.conv1", L.Conv2d(2, 1, bias=False), "features.1")], ["layer1.0.conv1"])
    g.build((1, 6, 6))
    assert list(g.state_dict()) == ["features.0.weight", "features.0.bias", "layer1.0.conv1.weight"]


def test_nodes_in_any_order_run_topologically():
    g = cs.Graph([("out", L.Add(), ["b", "a"]), ("b", L.Tanh(), "a"), ("a", L.ReLU(), "input")], "out")
    assert [n.name for n in g.order] == ["a", "b", "out"]
    x = np.array([[-1.0, 0.5]])
    g.build((2,), dtype=np.float64)
    np.testing.assert_allclose(g.forward(x), np.maximum(x, 0) + np.tanh(np.maximum(x, 0)))


def test_shared_layer_counts_once_and_sums_gradients():
    """y = W·relu(W·x): W appears once in the state dict; its gradient is the sum over both uses
    (checked by finite differences); analysis counts 4·4 + 4 = 20 parameters, not 40."""
    shared = L.Linear(4)
    g = cs.Graph([("fc", shared, "input"), ("act", L.Tanh(), "fc"), ("fc_again", shared, "act")], "fc_again")
    g.build((4,), seed=0, dtype=np.float64)
    assert list(g.state_dict()) == ["fc.weight", "fc.bias"]
    cs.gradcheck(g, np.random.default_rng(0).standard_normal((3, 4)))
    assert cs.analyze(g, (4,)).total_params == 20
    spec = g.spec()
    assert spec["nodes"][2] == {"name": "fc_again", "shares": "fc", "inputs": ["act"]}
    again = cs.from_spec(spec).build()
    assert again.spec() == spec and len(again.parameters()) == 2


def test_shared_layer_needs_one_input_shape():
    shared = L.Conv2d(3, 1)
    one_line(lambda: cs.Graph([("a", shared, "input"), ("b", L.Conv2d(5, 1), "a"), ("c", shared, "b")], "c")
             .build((3, 4, 4)), "node 'c' reuses the layer of node 'a'")


def test_input_grad_false_returns_none_and_keeps_parameter_gradients():
    g = cs.Graph([("a", L.Linear(3), "input"), ("b", L.Linear(3), "input"), ("s", L.Add(), ["a", "b"])], "s")
    g.build((2,), dtype=np.float64)
    x = np.ones((2, 2))
    g.forward(x, train=True)
    full = g.backward(np.ones((2, 3)))
    grads = [p.grad.copy() for p in g.parameters()]
    g.forward(x, train=True)
    assert g.backward(np.ones((2, 3)), input_grad=False) is None
    for before, p in zip(grads, g.parameters()):
        np.testing.assert_array_equal(before, p.grad)
    assert full.shape == (2, 2)


def test_graph_inside_sequential_and_sequential_inside_graph():
    block = cs.Graph([("c", L.Conv2d(3, 3, padding=1), "input"), ("r", L.Add(), ["c", "input"])], "r")
    model = cs.Sequential([L.Conv2d(3, 1), block, L.Flatten(), L.Linear(2)])
    model.build((2, 4, 4), dtype=np.float64)
    assert "1.c.weight" in model.state_dict()
    cs.gradcheck(model, np.random.default_rng(0).standard_normal((2, 2, 4, 4)))
    outer = cs.Graph([("body", model, "input"), ("out", L.Mul(), ["body", "body"])], "out")
    outer.build((2, 4, 4), dtype=np.float64)
    assert "body.1.c.weight" in outer.state_dict()
    cs.gradcheck(outer, np.random.default_rng(1).standard_normal((1, 2, 4, 4)))
    again = cs.from_spec(json.loads(json.dumps(outer.spec())))
    assert again.spec() == outer.spec()


def test_graph_equals_the_residual_it_spells_out():
    """Residual([conv, relu, conv]) and the same wiring as a Graph compute the same thing."""
    res = cs.Sequential([cs.Residual([L.Conv2d(2, 3, padding=1), L.ReLU(), L.Conv2d(2, 3, padding=1)])])
    res.build((2, 5, 5), seed=0, dtype=np.float64)
    g = cs.Graph([("0.body.0", L.Conv2d(2, 3, padding=1), "input"), ("0.body.1", L.ReLU(), "0.body.0"),
                  ("0.body.2", L.Conv2d(2, 3, padding=1), "0.body.1"), ("0", L.Add(), ["0.body.2", "input"])], "0")
    g.build((2, 5, 5), dtype=np.float64)
    g.load_state_dict(res.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5))
    np.testing.assert_allclose(g.forward(x), res.forward(x), rtol=1e-12)
    dy = np.random.default_rng(1).standard_normal((2, 2, 5, 5))
    np.testing.assert_allclose(g.backward(dy), res.backward(dy), rtol=1e-12)


def test_node_dicts_and_node_tuples():
    g = cs.Graph([cs.layers.Node("a", L.ReLU(), ("input",)), {"name": "b", "layer": L.Tanh(), "inputs": "a"}], "b")
    assert [n.name for n in g.nodes] == ["a", "b"]


# ----- specs --------------------------------------------------------------------------------

def test_top_level_graph_spec_round_trip_json_and_yaml(tmp_path):
    doc = {"input": [3, 8, 8], "type": "graph", "nodes": [
        {"name": "conv1", "type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1, "inputs": ["input"]},
        {"name": "split", "type": "chunk", "chunks": 2, "inputs": ["conv1"]},
        {"name": "gate", "type": "sigmoid", "inputs": ["split:1"]},
        {"name": "prod", "type": "mul", "inputs": ["split:0", "gate"]},
        {"name": "out", "type": "concat", "inputs": ["prod", "input"]}], "outputs": ["out"]}
    model = cs.from_spec(doc)
    assert isinstance(model, cs.Graph)
    assert model.spec() == doc
    model.build()
    assert model.spec() == doc and model.output_shape((3, 8, 8)) == (5, 8, 8)
    yaml = pytest.importorskip("yaml")
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(doc))
    from convscope.spec.resolve import resolve
    loaded = resolve(str(path)).model
    assert loaded.spec() == doc


def test_concat_entry_means_the_container_with_branches_and_the_merge_without():
    container = cs.spec.layer_from_entry({"type": "concat", "branches": [[{"type": "relu"}]]})
    merge = cs.spec.layer_from_entry({"type": "concat", "dim": 2})
    assert isinstance(container, cs.Concat) and isinstance(merge, L.Cat) and merge.dim == 2
