"""Architecture diagrams of :class:`~convscope.layers.graph.Graph` models: a layered DAG.

Each node is placed on the rank 1 + (the largest rank of the nodes it reads), the model input
being rank 0, so every arrow points down. Within a rank nodes are ordered by the mean x of
their producers (fewer crossings). An arrow between neighbouring ranks drops, turns and drops
again; an arrow that skips ranks (a DenseNet block's concatenations, a long skip connection)
runs down a lane of its own at the left, one lane per producer, so it never crosses a box.
Several arrows entering one box (fan-in) arrive side by side on its top edge; a node read by
several others (fan-out) sends one arrow to each. Containers inside a node (Sequential,
Concat, Residual, another Graph) are drawn by :mod:`.diagram` as usual.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

from ..errors import format_shape
from ..layers.base import declared_family
from .diagram import AUTO_STAGE_LIMIT, GAP, HGAP, JOIN_W, Edge, _Builder, _Piece, _count_leaves, call_text, folds

RANK_GAP = GAP + 22   # vertical gap between ranks: room for turning arrows
LANE_STEP = 12        # px between skip lanes
ARRIVE_STEP = 14      # px between arrows entering one box


def _producer(ref: str) -> str:
    base, _, index = ref.rpartition(":")
    return base if base and index.isdigit() else ref


def _plain(layer) -> bool:
    return (getattr(layer, "arity", 1) == 1 and not getattr(layer, "multi_output", False)
            and not layer.children())


def _heads(graph, stages: bool) -> Dict[str, str]:
    """node -> the node whose box shows it. In stage mode an activation, norm or dropout that
    is the only reader of a plain layer is folded into that layer's box (listed on its last line)."""
    head: Dict[str, str] = {}
    readers = graph.consumers()
    for node in graph.order:
        head[node.name] = node.name
        if not stages or not folds(node.layer) or not _plain(node.layer) or len(node.inputs) != 1:
            continue
        ref = node.inputs[0]
        if ref == "input" or ref != _producer(ref):
            continue
        if _plain(graph.node(ref).layer) and readers.get(ref) == [node.name]:
            head[node.name] = head[ref]
    return head


def _node_piece(builder: _Builder, path: str, node, folded) -> _Piece:
    layer = node.layer
    multi_in = getattr(layer, "arity", 1) is None
    multi_out = bool(getattr(layer, "multi_output", False))
    if not (multi_in or multi_out):
        return builder.node(path, layer, folded)
    row = builder.rows[path]
    word = "concat" if layer.type_name == "cat" else call_text(layer)
    if multi_out:
        shapes = " + ".join(format_shape(s) for s in row.branch_shapes) if row.branch_shapes else \
            format_shape(row.output_shape)
        lines = [f"{path}  {word}", f"→ {shapes}"]
    else:
        lines = [f"{path}  {word}", f"{len(node.inputs)} inputs → {format_shape(row.output_shape)}"]
    width = max(JOIN_W, min(builder.box_width, 7 * max(len(l) for l in lines) + 16))
    tooltip = f"{path}: {layer!r} of {', '.join(node.inputs)}"
    return builder.box_piece(lines, declared_family(layer), [path], width, tooltip)


def graph_piece(builder: _Builder, prefix: str, graph) -> _Piece:
    """The layout piece of ``graph`` whose node rows are named ``prefix + node name``; its top
    centre is where the input arrives, its bottom centre the output node's box."""
    head = _heads(graph, builder.stages)
    head["input"] = "input"
    drawn = [node for node in graph.order if head[node.name] == node.name]
    folded: Dict[str, list] = {node.name: [] for node in drawn}
    for node in graph.order:
        if head[node.name] != node.name:
            folded[head[node.name]].append((f"{prefix}{node.name}", node.layer))

    def source(ref: str) -> str:
        return head[_producer(ref)]

    rank: Dict[str, int] = {"input": 0}
    for node in drawn:
        rank[node.name] = 1 + max(rank[source(r)] for r in node.inputs)
    pieces = {node.name: _node_piece(builder, f"{prefix}{node.name}", node, folded[node.name]) for node in drawn}
    levels: List[List] = [[] for _ in range(max(rank.values()) + 1)]
    for node in drawn:
        levels[rank[node.name]].append(node)
    heights = [0.0] + [max(pieces[n.name].height for n in level) for level in levels[1:]]
    widths = [0.0] + [sum(pieces[n.name].width for n in level) + HGAP * (len(level) - 1) for level in levels[1:]]
    long_sources = []
    for node in drawn:
        for ref in node.inputs:
            src = source(ref)
            if rank[node.name] - rank[src] > 1 and src not in long_sources:
                long_sources.append(src)
    lanes = len(long_sources) * LANE_STEP + (HGAP if long_sources else 0)
    content = max(widths)
    width = content + 2 * lanes
    height = sum(heights) + RANK_GAP * (len(levels) - 1)

    def place(cx, top, diagram):
        xs: Dict[str, float] = {"input": cx}
        tops: Dict[str, float] = {"input": top}
        bottoms: Dict[str, float] = {"input": top}
        y = top
        for r, level in enumerate(levels[1:], start=1):
            y += heights[r - 1] + RANK_GAP
            level.sort(key=lambda n: sum(xs[source(i)] for i in n.inputs) / len(n.inputs))
            left = cx - widths[r] / 2
            for node in level:
                piece = pieces[node.name]
                xs[node.name] = left + piece.width / 2
                tops[node.name], bottoms[node.name] = y, y + piece.height
                piece.place(xs[node.name], y, diagram)
                left += piece.width + HGAP
        lane_x = {src: cx - content / 2 - HGAP - i * LANE_STEP for i, src in enumerate(long_sources)}
        for node in drawn:
            k = len(node.inputs)
            step = min(ARRIVE_STEP, pieces[node.name].width / (k + 1))
            arrow = pieces[node.name].opens_with_box
            for i, ref in enumerate(node.inputs):
                src = source(ref)
                sx, sy = xs[src], bottoms[src]
                ax, ay = xs[node.name] + (i - (k - 1) / 2) * step, tops[node.name]
                # arrows into one box turn at slightly different heights so they stay apart
                turn = ay - RANK_GAP / 2 + (i - (k - 1) / 2) * min(4.0, (RANK_GAP / 2 - 6) / k)
                if rank[node.name] - rank[src] > 1:
                    lx = lane_x[src]
                    leave = sy + RANK_GAP / 3
                    points = [(sx, sy), (sx, leave), (lx, leave), (lx, turn), (ax, turn), (ax, ay)]
                else:
                    points = [(sx, sy), (sx, turn), (ax, turn), (ax, ay)]
                diagram.edges.append(Edge(points, arrow=arrow))

    def place_named(cx, top, diagram):
        place(cx, top, diagram)
        last = pieces[source(graph.outputs[0])].last_box
        if prefix and last is not None:  # a nested graph is named on its output box, as a join is
            last().names.append(prefix[:-1])

    result = _Piece(width, height, place_named, opens_with_box=False)
    result.last_box = pieces[source(graph.outputs[0])].last_box
    return result


def graph_layout(model, input_shape, *, detail: str, name: str):
    """The whole diagram of a top-level Graph (see :func:`.diagram.layout`)."""
    from ..analysis import analyze
    from .diagram import frame

    report = analyze(model, input_shape)
    rows = {row.name: row for row in report.layers}
    longest = max([len(f"{r.name}  {call_text(r.layer)}") for r in report.layers if not r.container] + [24])
    stages = detail == "stages" or (detail == "auto" and _count_leaves(model) > AUTO_STAGE_LIMIT)
    builder = _Builder(rows, stages, max(230, min(420, 7 * longest + 16)))
    return frame(builder, graph_piece(builder, "", model), report, name, report.output,
                 f"graph of {len(model.nodes)} nodes" + (", activations and norms folded into the box above"
                                                         if stages else ""))
