"""Layout of an architecture diagram: boxes, connectors and their coordinates.

The diagram reads top to bottom, one box per layer (NN-SVG / AlexNet-style block drawings,
flattened to 2-D so every label stays readable). A container that forks and joins declares
how (:meth:`~convscope.layers.Layer.diagram_join`): a Concat draws its branches side by side
and joins them in a "concat" box; a Residual draws its body and its shortcut (or the
identity lane) side by side and joins them in an "add" box. Box colours are the layers'
declared ``family``. In *stage* mode, activations, normalisation and dropout that follow a layer are
folded into that layer's box (listed on its last line), which halves the height of deep nets
(GoogLeNet, ResNet) without hiding any layer: every layer's name still appears.

Labels come from the analysis (:func:`convscope.analysis.analyze`): each box shows the layer's
dotted name and its text-form call (``conv2d(64, 7, stride=2, padding=3)``), then its output
shape and parameter count. Renderers (:mod:`.architecture`) turn the layout into SVG text or a
matplotlib figure; this module only computes geometry, in pixels, y growing downwards.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from ..errors import ConvscopeError, format_count, format_shape
from ..layers.base import Layer, declared_family
from ..layers.containers import Sequential

#: More leaf layers than this and "auto" detail draws stages instead of single layers.
AUTO_STAGE_LIMIT = 40

LINE = 15          # px per text line
PAD = 7            # px above and below the text in a box
GAP = 24           # vertical gap between boxes (the arrow lives here)
HGAP = 18          # horizontal gap between branches
FORK = 14          # drop from a fork point to the branch tops
LANE = 56          # width of an identity shortcut's lane
JOIN_W = 190       # width of a concat/add box


def family(type_name: str) -> str:
    """Colour family of a layer type (its class's ``family``), or "input" for the input box."""
    if type_name == "input":
        return "input"
    from ..layers.registry import LAYER_TYPES
    if type_name not in LAYER_TYPES:
        raise ConvscopeError(f"unknown layer type {type_name!r}: no diagram family")
    return declared_family(LAYER_TYPES[type_name])


def folds(layer: Layer) -> bool:
    """True when stage mode folds ``layer`` into the box above it: its ``diagram_fold``, by
    default activations and norms."""
    if layer.children():
        return False
    if layer.diagram_fold is not None:
        return bool(layer.diagram_fold)
    return declared_family(layer) in ("activation", "norm")


@dataclass
class Box:
    x: float
    y: float
    w: float
    h: float
    lines: List[str]
    kind: str                   # colour family
    names: List[str]            # every layer this box stands for
    tooltip: str = ""


@dataclass
class Edge:
    points: List[Tuple[float, float]]
    arrow: bool = True


@dataclass
class Diagram:
    title: str
    subtitle: str
    width: float
    height: float
    boxes: List[Box] = field(default_factory=list)
    edges: List[Edge] = field(default_factory=list)

    @property
    def names(self) -> List[str]:
        return [n for box in self.boxes for n in box.names]


def call_text(layer: Layer) -> str:
    """The text-form call of a leaf layer without inferred sizes: ``conv2d(64, 7, stride=2)``."""
    args = []
    for name, (value, positional) in layer._non_default_config().items():
        if name in ("in_channels", "in_features"):
            continue
        if isinstance(value, tuple) and value and all(v == value[0] for v in value):
            value = value[0]
        elif isinstance(value, tuple):
            value = list(value)
        args.append(repr(value) if positional else f"{name}={value!r}")
    return f"{layer.type_name}({', '.join(args)})" if args else layer.type_name


# A piece of the layout: its size, and how to place it with its top centre at (cx, top).
@dataclass
class _Piece:
    width: float
    height: float
    place: Callable[[float, float, "Diagram"], None]
    opens_with_box: bool = True       # the incoming arrow ends on a box (else on a fork dot)
    last_box: Optional[Callable[[], Box]] = None


class _Builder:
    def __init__(self, rows: Dict[str, object], stages: bool, box_width: float):
        self.rows = rows
        self.stages = stages
        self.box_width = box_width

    # ----- boxes ----------------------------------------------------------------------------
    def _row_lines(self, name: str, layer: Layer) -> Tuple[str, str]:
        row = self.rows[name]
        second = format_shape(row.output_shape)
        if row.params:
            second += f" · {format_count(row.params)} params"
        return f"{name}  {call_text(layer)}", second

    def _folded_lines(self, folded: List[Tuple[str, Layer]]) -> List[str]:
        lines, current = [], "+"
        for name, layer in folded:
            part = f"{name} {call_text(layer)}"
            row = self.rows[name]
            if row.params:
                part += f" ({format_count(row.params)})"
            if len(current) + len(part) + 2 > _chars(self.box_width) and current != "+":
                lines.append(current + ",")
                current = "+"
            current += (" " if current == "+" else ", ") + part
        if current != "+":
            lines.append(current)
        return lines

    def box_piece(self, lines: List[str], kind: str, names: List[str], width: float,
                  tooltip: str) -> _Piece:
        holder: Dict[str, Box] = {}
        height = 2 * PAD + LINE * len(lines)

        def place(cx, top, diagram):
            box = Box(cx - width / 2, top, width, height, list(lines), kind, list(names), tooltip)
            holder["box"] = box
            diagram.boxes.append(box)

        piece = _Piece(width, height, place)
        piece.last_box = lambda: holder["box"]
        return piece

    def leaf(self, name: str, layer: Layer, folded: List[Tuple[str, Layer]]) -> _Piece:
        first, second = self._row_lines(name, layer)
        lines = [first, second] + self._folded_lines(folded)
        names = [name] + [n for n, _ in folded]
        tooltip = "; ".join(f"{n}: {l!r}" for n, l in [(name, layer)] + folded)
        return self.box_piece(lines, declared_family(layer), names, self.box_width, tooltip)

    # ----- structure ------------------------------------------------------------------------
    def sequence(self, prefix: str, layers: List[Layer]) -> _Piece:
        """Children named ``prefix + index``, stacked; in stage mode followers are folded."""
        groups: List[Tuple[str, Layer, List[Tuple[str, Layer]]]] = []
        for i, layer in enumerate(layers):
            name = f"{prefix}{i}"
            if self.stages and groups and folds(layer):
                groups[-1][2].append((name, layer))
            else:
                groups.append((name, layer, []))
        pieces = [self.node(name, layer, folded) for name, layer, folded in groups]
        return self.stack(pieces)

    def stack(self, pieces: List[_Piece]) -> _Piece:
        if not pieces:
            return _Piece(0, 0, lambda cx, top, d: None, opens_with_box=False)
        width = max(p.width for p in pieces)
        height = sum(p.height for p in pieces) + GAP * (len(pieces) - 1)

        def place(cx, top, diagram):
            y = top
            for i, piece in enumerate(pieces):
                if i:
                    diagram.edges.append(Edge([(cx, y - GAP), (cx, y)], arrow=piece.opens_with_box))
                piece.place(cx, y, diagram)
                y += piece.height + GAP

        result = _Piece(width, height, place, opens_with_box=pieces[0].opens_with_box)
        result.last_box = pieces[-1].last_box
        return result

    def node(self, name: str, layer: Layer, folded: List[Tuple[str, Layer]]) -> _Piece:
        join = layer.diagram_join(name)
        if join is not None:
            columns = [self.sequence(prefix, layers) for prefix, layers in join["columns"]]
            return self.join(name, join["word"], columns, folded, join["tooltip"], identity=layer.passes_input)
        if layer.is_chain:
            inner = self.sequence(f"{name}.", [child for _, child in layer.children()])
            if folded:
                tail = self.leaf_group(folded)
                return self.stack([inner, tail])
            return inner
        return self.leaf(name, layer, folded)

    def leaf_group(self, folded: List[Tuple[str, Layer]]) -> _Piece:
        name, layer = folded[0]
        return self.leaf(name, layer, folded[1:])

    def join(self, name: str, word: str, columns: List[_Piece], folded: List[Tuple[str, Layer]],
             tooltip: str, identity: bool = False) -> _Piece:
        """``columns`` side by side, then a join box labelled ``word`` (the container's
        :meth:`~convscope.layers.Layer.diagram_join`); ``identity`` adds a lane carrying the
        input itself (a residual's identity shortcut)."""
        row = self.rows[name]
        shape = format_shape(row.output_shape)
        lines = [f"{name}  {word} → {shape}"] + self._folded_lines(folded)
        join_width = max(JOIN_W, min(self.box_width, 7 * max(len(l) for l in lines) + 16))
        joint = self.box_piece(lines, "join", [name] + [n for n, _ in folded], join_width, tooltip)
        widths = [p.width for p in columns] + ([LANE] if identity else [])
        span = sum(widths) + HGAP * (len(widths) - 1)
        tallest = max(p.height for p in columns)
        width = max(span, join_width)
        height = FORK + tallest + GAP + joint.height

        def place(cx, top, diagram):
            left = cx - span / 2
            centres = []
            for w in widths:
                centres.append(left + w / 2)
                left += w + HGAP
            fork_y = top
            join_top = top + FORK + tallest + GAP
            merge_y = join_top - GAP / 2
            for piece, bx in zip(columns, centres):
                diagram.edges.append(Edge([(cx, fork_y), (bx, fork_y), (bx, fork_y + FORK)],
                                          arrow=piece.opens_with_box))
                piece.place(bx, fork_y + FORK, diagram)
                bottom = fork_y + FORK + piece.height
                diagram.edges.append(Edge([(bx, bottom), (bx, merge_y), (cx, merge_y), (cx, join_top)],
                                          arrow=True))
            if identity:
                lane_x = centres[-1]
                diagram.edges.append(Edge([(cx, fork_y), (lane_x, fork_y), (lane_x, merge_y),
                                           (cx, merge_y), (cx, join_top)], arrow=True))
            joint.place(cx, join_top, diagram)

        piece = _Piece(width, height, place, opens_with_box=False)
        piece.last_box = joint.last_box
        return piece


def _chars(width: float) -> int:
    """Characters that fit in a box of ``width`` px at the diagram's font size."""
    return int((width - 16) / 7)


def _count_leaves(layer: Layer) -> int:
    kids = layer.children()
    if not kids:
        return 1
    return sum(_count_leaves(child) for _, child in kids)


def layout(model: Layer, input_shape=None, *, detail: str = "auto", name: str = "model") -> Diagram:
    """Compute the diagram of ``model`` on a per-sample ``input_shape``.

    ``detail``: ``"layers"`` (one box per layer), ``"stages"`` (activations, normalisation and
    dropout folded into the box before them) or ``"auto"`` (stages above
    :data:`AUTO_STAGE_LIMIT` leaf layers).
    """
    from ..analysis import analyze
    from ..errors import ConvscopeError

    if detail not in ("auto", "layers", "stages"):
        raise ConvscopeError(f"detail must be 'auto', 'layers' or 'stages', got {detail!r}")
    if not isinstance(model, Sequential):
        model = Sequential([model])
    report = analyze(model, input_shape)
    rows = {row.name: row for row in report.layers}
    shape = tuple(report.input)
    stages = detail == "stages" or (detail == "auto" and _count_leaves(model) > AUTO_STAGE_LIMIT)
    longest = max([len(f"{r.name}  {call_text(r.layer)}") for r in report.layers if not r.container] + [24])
    box_width = max(230, min(420, 7 * longest + 16))
    builder = _Builder(rows, stages, box_width)

    start = builder.box_piece([f"input  {format_shape(shape)}"], "input", [], JOIN_W,
                              "the per-sample input (no batch axis)")
    body = builder.stack([start, builder.sequence("", list(model.layers))])
    margin, header = 24, 58
    out_shape = report.layers[-1].output_shape if report.layers else shape
    top_rows = [r for r in report.layers if "." not in r.name]
    if top_rows:
        out_shape = top_rows[-1].output_shape
    title = f"{name}: {format_shape(shape)} → {format_shape(out_shape)}"
    subtitle = (f"{format_count(report.total_params)} parameters · {format_count(report.total_macs)} MACs · "
                f"{'stages (activations and norms folded into the box above)' if stages else 'one box per layer'}")
    width = max(body.width, 7.5 * len(subtitle)) + 2 * margin
    diagram = Diagram(title, subtitle, width, body.height + header + 2 * margin)
    body.place(width / 2, margin + header, diagram)
    return diagram
