"""Analysis of graphs: per-node rows, totals counting each parameter once, peak live
activation memory, receptive field along the widest path; training and checkpoints."""
import json

import numpy as np
import pytest

import convscope as cs
from convscope import layers as L

SE = {"input": [8, 6, 6], "type": "graph", "nodes": [
    {"name": "conv", "type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1, "inputs": ["input"]},
    {"name": "avgpool", "type": "mean", "dim": [2, 3], "keepdim": True, "inputs": ["conv"]},
    {"name": "fc1", "type": "conv2d", "out_channels": 2, "kernel_size": 1, "inputs": ["avgpool"]},
    {"name": "act", "type": "relu", "inputs": ["fc1"]},
    {"name": "fc2", "type": "conv2d", "out_channels": 8, "kernel_size": 1, "inputs": ["act"]},
    {"name": "gate", "type": "sigmoid", "inputs": ["fc2"]},
    {"name": "scaled", "type": "mul", "inputs": ["conv", "gate"]},
    {"name": "out", "type": "add", "inputs": ["scaled", "input"]}], "outputs": ["out"]}


def test_squeeze_excitation_counts_by_hand():
    """conv 8·3·3·8 + 8 = 584; fc1 8·2 + 2 = 18; fc2 2·8 + 8 = 24; total 626.
    MACs: conv 8·6·6·8·3·3 = 20,736, fc1 2·1·1·8 = 16, fc2 8·2 = 16: 20,768.
    mul and add: one op per output element, 8·6·6 = 288 each; the mean reads 288 values."""
    report = cs.analyze(cs.from_spec(SE))
    assert [r.name for r in report.layers] == ["conv", "avgpool", "fc1", "act", "fc2", "gate", "scaled", "out"]
    assert [report.row(n).params for n in ("conv", "fc1", "fc2")] == [584, 18, 24]
    assert report.total_params == 626 and report.total_macs == 20_768
    assert report.row("scaled").other_ops == {"elementwise_muls": 288}
    assert report.row("out").other_ops == {"elementwise_adds": 288}
    assert report.row("avgpool").other_ops == {"pooling": 288}
    assert report.row("fc1").output_shape == (2, 1, 1)


def test_peak_live_memory_of_the_se_block():
    """In elements (float32 = 4 bytes): the input (288) lives until 'out' reads it, 'conv'
    (288) until 'scaled'. While 'scaled' runs: input 288 + conv 288 + gate 8 + its output 288
    = 872, the largest set: 872·4 = 3,488 bytes. The sum of every output is 3.57 kB."""
    report = cs.analyze(cs.from_spec(SE))
    assert report.peak_activation_bytes == 872 * 4
    assert report.to_dict()["memory"]["peak_activation_bytes"] == 3_488
    assert report.activation_bytes == (288 + 8 + 2 + 2 + 8 + 8 + 288 + 288) * 4


def test_peak_of_a_chain_is_the_largest_input_plus_output():
    """conv 3×8×8 -> 8×8×8: 192 + 512 = 704; relu 512 + 512 = 1,024; pool 512 + 128 = 640."""
    model = cs.Sequential([L.Conv2d(8, 3, padding=1), L.ReLU(), L.MaxPool2d(2)])
    assert cs.analyze(model, (3, 8, 8)).peak_activation_bytes == 1024 * 4


def test_dense_block_rows_totals_and_peak():
    """Three dense layers, growth 2, bn 2 (4 channels in the bottleneck), input 4 channels:
    layer i reads 4 + 2(i−1) channels: norm1 2·c, conv1 c·4, norm2 2·4, conv2 4·2·9 = 72.
    c = 4, 6, 8: (8 + 16 + 8 + 72) + (12 + 24 + 8 + 72) + (16 + 32 + 8 + 72) = 348."""
    from test_graph_blocks import dense_block
    report = cs.analyze(dense_block(), (4, 5, 5))
    assert report.total_params == 348
    assert report.row("denselayer3.cat").output_shape == (8, 5, 5)
    assert report.row("out").output_shape == (10, 5, 5)
    assert report.row("denselayer2.conv1").params == 24
    # The widest path: two 3×3 convs in sequence (layers 1 then 2 then 3 each add a 3×3): 7×7.
    assert report.receptive_field["size"] == [7, 7]
    # Peak: every earlier feature map stays alive until the final concat reads it.
    per_plane = 25
    assert report.peak_activation_bytes >= (4 + 2 + 2 + 2 + 10) * per_plane * 4


def test_receptive_field_along_the_widest_path():
    """A 3×3 branch and a 7×7 branch added: the sum sees 7×7."""
    g = cs.Graph([("a", L.Conv2d(2, 3, padding=1), "input"), ("b", L.Conv2d(2, 7, padding=3), "input"),
                  ("sum", L.Add(), ["a", "b"])], "sum")
    report = cs.analyze(g, (1, 16, 16))
    assert report.receptive_field["size"] == [7, 7]
    assert report.row("a").receptive_field["size"] == [3, 3]


def test_graph_node_inside_sequential_has_dotted_rows():
    block = cs.Graph([("c", L.Conv2d(3, 3, padding=1), "input"), ("r", L.Add(), ["c", "input"])], "r")
    report = cs.analyze(cs.Sequential([L.Conv2d(3, 1), block]), (2, 4, 4))
    assert [r.name for r in report.layers] == ["0", "1", "1.c", "1.r"]
    assert report.row("1").subtree_params == 3 * 3 * 9 + 3
    assert report.total_params == (2 * 3 + 3) + (3 * 3 * 9 + 3)


def test_split_row_lists_every_piece():
    g = cs.Graph([("s", L.Split([1, 3]), "input"), ("c", L.Cat(), ["s:1", "s:0"])], "c")
    row = cs.analyze(g, (4, 2, 2)).row("s")
    assert row.branch_shapes == [(1, 2, 2), (3, 2, 2)] and row.memory_bytes == 16 * 4


def test_summary_json_of_a_graph(capsys, tmp_path):
    from convscope.cli import main
    path = tmp_path / "se.json"
    path.write_text(json.dumps(SE))
    assert main(["summary", str(path), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["total_params"] == 626 and doc["output"] == [8, 6, 6]
    assert [r["name"] for r in doc["layers"]][-1] == "out"


def test_train_a_graph_checkpoint_and_reload(tmp_path):
    """`convscope train graph.json --data digits` writes a checkpoint whose spec is the graph;
    loading it gives the same weights and the same predictions."""
    from convscope.cli import main
    from convscope.train.checkpoint import load_checkpoint
    spec = {"input": [1, 8, 8], "type": "graph", "nodes": [
        {"name": "stem", "type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1, "inputs": ["input"]},
        {"name": "halves", "type": "chunk", "chunks": 2, "inputs": ["stem"]},
        {"name": "b", "type": "relu", "inputs": ["halves:1"]},
        {"name": "cat", "type": "concat", "inputs": ["halves:0", "b"]},
        {"name": "pool", "type": "mean", "dim": [2, 3], "inputs": ["cat"]},
        {"name": "fc", "type": "linear", "out_features": 10, "inputs": ["pool"]}], "outputs": ["fc"]}
    path = tmp_path / "g.json"
    path.write_text(json.dumps(spec))
    out = tmp_path / "run"
    assert main(["train", str(path), "--data", "digits", "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    ck = load_checkpoint(out / "model.npz")
    assert isinstance(ck.model, cs.Graph) and ck.spec == spec
    assert list(ck.model.state_dict()) == ["stem.weight", "stem.bias", "fc.weight", "fc.bias"]
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    again = load_checkpoint(out / "model.npz").model
    np.testing.assert_array_equal(ck.model.forward(x), again.forward(x))


def test_explanations_of_merge_and_shape_rows():
    """Each new row explains its shape with the numbers: the concat sums its inputs' sizes on
    the axis, the broadcast names both shapes, the split lists its pieces, the mean its count."""
    g = cs.Graph([("halves", L.Chunk(2), "input"), ("gate", L.Mean((2, 3), keepdim=True), "halves:1"),
                  ("scaled", L.Mul(), ["halves:0", "gate"]), ("cat", L.Cat(), ["scaled", "input"])], "cat")
    report = cs.analyze(g, (6, 4, 4))
    assert report.row("halves").explain()[0] == \
        "chunk on axis 1 (batch = 0): 6 = 3 + 3; pieces :0 to :1 = 3×4×4, 3×4×4"
    assert report.row("gate").explain()[0].endswith("each output the average of 16 values")
    assert "broadcast 3×4×4, 3×1×1" in report.row("scaled").explain()[0]
    assert report.row("cat").explain()[0].startswith("axis 1 (batch = 0): 3 + 6 = 9")
    assert report.row("halves").memory_bytes == 96 * 4  # both pieces
