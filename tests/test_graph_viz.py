"""Architecture diagrams of graphs: every node drawn once, one arrow per input (fan-in and
fan-out), skip arrows in lanes that cross no box, and the files written."""
import numpy as np
import pytest

import convscope as cs
from convscope import layers as L
from convscope.viz.diagram import layout


def _inside(box, x, y):
    return box.x < x < box.x + box.w and box.y < y < box.y + box.h


def _crosses(box, a, b):
    """Does the axis-parallel segment a-b pass through the box's interior?"""
    (x0, y0), (x1, y1) = a, b
    if x0 == x1:
        lo, hi = sorted((y0, y1))
        return box.x < x0 < box.x + box.w and lo < box.y + box.h and hi > box.y and \
            not (hi <= box.y or lo >= box.y + box.h)
    lo, hi = sorted((x0, x1))
    return box.y < y0 < box.y + box.h and lo < box.x + box.w and hi > box.x


def test_dense_block_diagram_is_a_dag_drawing():
    from test_graph_blocks import dense_block
    graph = dense_block()
    diagram = layout(graph, (4, 5, 5))
    names = [n for box in diagram.boxes for n in box.names]
    assert sorted(names) == sorted(n.name for n in graph.nodes)  # every node once (input box has none)
    inputs = sum(len(n.inputs) for n in graph.nodes)
    assert len(diagram.edges) == inputs + 1  # + the arrow from the input box into the graph
    for edge in diagram.edges:
        for a, b in zip(edge.points, edge.points[1:]):
            assert a[0] == b[0] or a[1] == b[1], "axis-parallel segments"
            for box in diagram.boxes:
                assert not _crosses(box, a, b), (box.names, a, b)
    out = next(box for box in diagram.boxes if box.names == ["out"])
    arriving = [e for e in diagram.edges if e.points[-1][1] == out.y and out.x <= e.points[-1][0] <= out.x + out.w]
    assert len(arriving) == 4  # fan-in: input and the three growths, side by side
    assert len({e.points[-1][0] for e in arriving}) == 4


def test_graph_inside_sequential_is_drawn_and_files_written(tmp_path):
    block = cs.Graph([("a", L.Conv2d(3, 3, padding=1), "input"), ("b", L.Conv2d(3, 1), "input"),
                      ("sum", L.Add(), ["a", "b", "input"])], "sum")
    model = cs.Sequential([L.Conv2d(3, 1), block, L.Flatten(), L.Linear(2)])
    diagram = layout(model, (2, 4, 4))
    names = {n for box in diagram.boxes for n in box.names}
    assert {"0", "1.a", "1.b", "1.sum", "2", "3"} <= names
    from convscope.viz.architecture import save_architecture
    for suffix in ("svg", "png"):
        path = save_architecture(model, (2, 4, 4), str(tmp_path / f"net.{suffix}"))
        assert (tmp_path / f"net.{suffix}").stat().st_size > 1000, path
    svg = (tmp_path / "net.svg").read_text()
    assert "1.sum" in svg and "add" in svg


def test_feature_maps_of_a_node_inside_a_graph():
    """activation() stops at a graph node, or inside a Sequential node, and returns exactly what
    that node computes on the way to the output."""
    from convscope.viz.featuremaps import activation
    inner = cs.Sequential([L.Conv2d(2, 3, padding=1), L.ReLU()])
    g = cs.Graph([("stem", L.Conv2d(4, 1), "input"), ("halves", L.Chunk(2), "stem"),
                  ("b", inner, "halves:1"), ("cat", L.Cat(), ["halves:0", "b"])], "cat")
    g.build((1, 5, 5), seed=0, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((1, 1, 5, 5))
    stem = g.node("stem").layer.forward(x)
    np.testing.assert_array_equal(activation(g, x, "stem"), stem)
    conv = inner[0].forward(stem[:, 2:])
    np.testing.assert_array_equal(activation(g, x, "b.0"), conv)
    np.testing.assert_array_equal(activation(g, x, "cat"), g.forward(x))


def test_stage_mode_folds_activations_and_norms_into_the_box_above():
    """Dense block in stages: per dense layer [norm1 + relu1], [conv1 + norm2 + relu2], [conv2],
    plus the three concats: 12 boxes and the input box, every node still named."""
    from test_graph_blocks import dense_block
    graph = dense_block()
    diagram = layout(graph, (4, 5, 5), detail="stages")
    assert len(diagram.boxes) == 13
    assert sorted(n for box in diagram.boxes for n in box.names) == sorted(n.name for n in graph.nodes)
    conv1 = next(box for box in diagram.boxes if box.names[:1] == ["denselayer1.conv1"])
    assert conv1.names == ["denselayer1.conv1", "denselayer1.norm2", "denselayer1.relu2"]
