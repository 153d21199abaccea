"""Architecture diagrams as plain SVG text or as a matplotlib figure (same layout).

>>> import convscope as cs
>>> svg = cs.viz.architecture_svg(cs.parse_text("conv2d(8, 3) -> relu -> flatten -> linear(10)"),
...                               (1, 8, 8))
>>> svg.startswith("<?xml")
True

The SVG needs no browser or library to be written: boxes are ``<rect>``, labels ``<text>``,
connectors ``<polyline>`` with an arrow marker, and each box carries a ``<title>`` naming
every layer it stands for. Geometry comes from :mod:`.diagram`.
"""
from __future__ import annotations

import os
from html import escape

from ..errors import ConvscopeError
from .diagram import LINE, PAD, Diagram, layout
from .files import save_figure, write_text

#: (fill, stroke) per colour family.
COLOURS = {
    "conv": ("#d6e6f7", "#2f5f98"),
    "pool": ("#fde3c6", "#b36b1d"),
    "linear": ("#e6dcf3", "#6b4a9a"),
    "activation": ("#dcf1dc", "#3b7d3b"),
    "norm": ("#ececec", "#707070"),
    "shape": ("#f6f3dc", "#8a8350"),
    "join": ("#fff1b0", "#a68a00"),
    "container": ("#f6f3dc", "#8a8350"),
    "input": ("#ffffff", "#404040"),
}
LEGEND = [("conv", "convolution"), ("pool", "pooling"), ("linear", "linear"),
          ("activation", "activation"), ("norm", "normalisation"), ("shape", "flatten / dropout / other"),
          ("join", "concat / add")]
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
LEGEND_ROW = 20


def legend_positions(width: float, top: float):
    """(x, y, kind, label) of each legend entry, wrapped into rows that fit ``width``."""
    x, y, out = 16.0, top, []
    for kind, label in LEGEND:
        step = 30 + 6.5 * len(label)
        if x + step > width - 8 and x > 16:
            x, y = 16.0, y + LEGEND_ROW
        out.append((x, y, kind, label))
        x += step
    return out


def _full_height(diagram: Diagram) -> float:
    rows = len({y for _, y, _, _ in legend_positions(diagram.width, 0)})
    return diagram.height + 14 + LEGEND_ROW * rows


def architecture_svg(model, input_shape=None, *, detail: str = "auto", name: str = "model") -> str:
    """The diagram of ``model`` as SVG text (see :func:`convscope.viz.diagram.layout`)."""
    return render_svg(layout(model, input_shape, detail=detail, name=name))


def render_svg(diagram: Diagram) -> str:
    w, h = diagram.width, _full_height(diagram)
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0f}" height="{h:.0f}" '
           f'viewBox="0 0 {w:.0f} {h:.0f}" font-family="{FONT}">',
           f"<title>{escape(diagram.title)}</title>",
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
           'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/>'
           "</marker></defs>",
           f'<rect x="0" y="0" width="{w:.0f}" height="{h:.0f}" fill="white"/>',
           f'<text x="{w / 2:.1f}" y="34" text-anchor="middle" font-size="18" font-weight="bold">'
           f"{escape(diagram.title)}</text>",
           f'<text x="{w / 2:.1f}" y="56" text-anchor="middle" font-size="12" fill="#444">'
           f"{escape(diagram.subtitle)}</text>"]
    for edge in diagram.edges:
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in edge.points)
        marker = ' marker-end="url(#arrow)"' if edge.arrow else ""
        out.append(f'<polyline points="{points}" fill="none" stroke="#555" stroke-width="1.3"{marker}/>')
    for box in diagram.boxes:
        fill, stroke = COLOURS[box.kind]
        out.append("<g>")
        if box.tooltip:
            out.append(f"<title>{escape(box.tooltip)}</title>")
        out.append(f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" height="{box.h:.1f}" '
                   f'rx="5" fill="{fill}" stroke="{stroke}" stroke-width="1.2"/>')
        for i, line in enumerate(box.lines):
            y = box.y + PAD + LINE * (i + 1) - 3.5
            weight = ' font-weight="bold"' if i == 0 else ""
            colour = "#222" if i < 2 else "#555"
            out.append(f'<text x="{box.x + box.w / 2:.1f}" y="{y:.1f}" text-anchor="middle" '
                       f'font-size="11"{weight} fill="{colour}">{escape(line)}</text>')
        out.append("</g>")
    for x, y, kind, label in legend_positions(w, diagram.height + 8):
        fill, stroke = COLOURS[kind]
        out.append(f'<rect x="{x:.0f}" y="{y:.0f}" width="14" height="12" fill="{fill}" stroke="{stroke}"/>')
        out.append(f'<text x="{x + 19:.0f}" y="{y + 10:.0f}" font-size="11">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def architecture(model, input_shape=None, *, detail: str = "auto", name: str = "model"):
    """The diagram of ``model`` as a matplotlib :class:`~matplotlib.figure.Figure` (Agg canvas)."""
    return render_figure(layout(model, input_shape, detail=detail, name=name))


def render_figure(diagram: Diagram):
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch, Rectangle

    dpi = 100
    w, h = diagram.width, _full_height(diagram)
    fig = Figure(figsize=(w / dpi, h / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.axis("off")
    pt = 72 / dpi  # matplotlib sizes text in points, the layout in pixels
    ax.text(w / 2, 34, diagram.title, ha="center", va="baseline", fontsize=18 * pt, fontweight="bold")
    ax.text(w / 2, 56, diagram.subtitle, ha="center", va="baseline", fontsize=12 * pt, color="#444")
    for edge in diagram.edges:
        xs, ys = zip(*edge.points)
        ax.plot(xs, ys, color="#555", linewidth=1.3 * pt, solid_capstyle="butt")
        if edge.arrow:
            (x0, y0), (x1, y1) = edge.points[-2], edge.points[-1]
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                        arrowprops=dict(arrowstyle="-|>", color="#555", lw=1.3 * pt, mutation_scale=8,
                                        shrinkA=0, shrinkB=0))
    for box in diagram.boxes:
        fill, stroke = COLOURS[box.kind]
        ax.add_patch(FancyBboxPatch((box.x, box.y), box.w, box.h, boxstyle="round,pad=0,rounding_size=5",
                                    facecolor=fill, edgecolor=stroke, linewidth=1.2 * pt))
        for i, line in enumerate(box.lines):
            y = box.y + PAD + LINE * (i + 1) - 3.5
            ax.text(box.x + box.w / 2, y, line, ha="center", va="baseline", fontsize=11 * pt,
                    fontweight="bold" if i == 0 else "normal", color="#222" if i < 2 else "#555")
    for x, y, kind, label in legend_positions(w, diagram.height + 8):
        fill, stroke = COLOURS[kind]
        ax.add_patch(Rectangle((x, y), 14, 12, facecolor=fill, edgecolor=stroke, linewidth=pt))
        ax.text(x + 19, y + 10, label, fontsize=11 * pt, va="baseline")
    return fig


def save_architecture(model, input_shape, path, *, detail: str = "auto", name: str = "model") -> str:
    """Write the diagram to ``path``: plain SVG text for ``.svg``, matplotlib for ``.png``/``.pdf``."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    diagram = layout(model, input_shape, detail=detail, name=name)
    if ext == ".svg":
        write_text(path, render_svg(diagram))
    elif ext in (".png", ".pdf"):
        fig = render_figure(diagram)
        save_figure(fig, path)
    else:
        raise ConvscopeError(f"-o must end in .svg, .png or .pdf, got {path!r}")
    return path
