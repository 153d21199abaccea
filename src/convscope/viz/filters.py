"""Learned filters: the kernels of one convolution layer as a grid of small images.

Notation: a conv weight has shape ``(C_out, C_in/G, k_h, k_w)`` (conv1d: ``(C_out, C_in/G, k)``,
drawn with k_h = 1). With one input channel (the first layer of a grayscale net) each filter
is one tile, laid out in a near-square grid. With several input channels every filter is a
row of per-input-channel slices: row = output channel, column = input channel.

All tiles share one symmetric colour scale, ``[−m, m]`` with ``m = max |w|`` over the tiles
shown, so a colour means the same weight everywhere (red positive, blue negative, white 0),
and a colour bar gives the values.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import ConvscopeError, format_shape
from .select import describe_choices, find_layer, model_of, named_layers


def conv_layers(model):
    """Layers whose type declares ``has_filters`` (convolutions), with their dotted names."""
    return [(n, l) for n, l in named_layers(model) if l.has_filters]


def _mosaic(tiles: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """tiles (rows, cols, k_h, k_w) -> one image with a 1-pixel NaN gap between tiles."""
    _, _, kh, kw = tiles.shape
    image = np.full((rows * (kh + 1) - 1, cols * (kw + 1) - 1), np.nan)
    for r in range(rows):
        for c in range(cols):
            image[r * (kh + 1): r * (kh + 1) + kh, c * (kw + 1): c * (kw + 1) + kw] = tiles[r, c]
    return image


def filters(source, layer=None, *, max_filters: int = 64, max_channels: int = 16):
    """Figure of the kernels of ``layer`` (a dotted name; default: the first conv layer) of a
    built model or a loaded checkpoint. At most ``max_filters`` output channels and
    ``max_channels`` input channels are drawn (the title says when some are left out)."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    model = model_of(source)
    choices = conv_layers(model)
    if not choices:
        everything = named_layers(model)
        raise ConvscopeError(f"this model has no conv1d or conv2d layer, so it has no filters to show "
                             f"(its layers: {describe_choices(everything)})")
    if layer is None:
        name, conv = choices[0]
    else:
        name, conv = str(layer), find_layer(model, layer, choices, "filters")
    weight = np.asarray(conv._params["weight"].value, dtype=np.float64)
    full_shape = weight.shape
    if weight.ndim == 3:
        weight = weight[:, :, None, :]
    c_out, c_in, kh, kw = weight.shape
    n_out, n_in = min(c_out, max_filters), min(c_in, max_channels)
    shown = weight[:n_out, :n_in]
    limit = float(np.max(np.abs(shown))) or 1.0

    if n_in == 1:
        cols = math.ceil(math.sqrt(n_out))
        rows = math.ceil(n_out / cols)
        tiles = np.full((rows * cols, 1, kh, kw), np.nan)
        tiles[:n_out] = shown
        tiles = tiles.reshape(rows, cols, kh, kw)
    else:
        rows, cols = n_out, n_in
        tiles = shown
    image = _mosaic(tiles, rows, cols)

    aspect = image.shape[0] / image.shape[1]
    width = 8.0
    fig = Figure(figsize=(width, min(16.0, max(3.5, width * aspect * 0.9 + 1.2))), dpi=100,
                 layout="constrained")
    ax = fig.add_subplot()
    cmap = colormaps["RdBu_r"].with_extremes(bad="white")
    im = ax.imshow(image, cmap=cmap, vmin=-limit, vmax=limit, interpolation="nearest")
    centres_x = [c * (kw + 1) + (kw - 1) / 2 for c in range(cols)]
    centres_y = [r * (kh + 1) + (kh - 1) / 2 for r in range(rows)]
    if n_in == 1:
        ax.set_xticks(centres_x, [str(c) for c in range(cols)])
        ax.set_yticks(centres_y, [str(r * cols) for r in range(rows)])
        ax.set_xlabel(f"grid column (filter number = row start + column); each tile is one "
                      f"{kh}×{kw} kernel" if kh > 1 else f"grid column; each tile is one kernel of {kw}")
        ax.set_ylabel("filter number at the start of the row")
    else:
        step = max(1, cols // 16)
        ax.set_xticks(centres_x[::step], [str(c) for c in range(0, cols, step)])
        step = max(1, rows // 32)
        ax.set_yticks(centres_y[::step], [str(r) for r in range(0, rows, step)])
        ax.set_xlabel(f"input channel (each tile: that channel's {kh}×{kw} slice of the filter)")
        ax.set_ylabel("output channel (filter)")
    ax.tick_params(length=0, labelsize=8)
    for spine in ax.spines.values():
        spine.set_visible(False)
    bar = fig.colorbar(im, ax=ax, shrink=0.8)
    bar.set_label(f"weight (shared scale ±{limit:.3g})")
    note = ""
    if n_out < c_out or n_in < c_in:
        note = f"; showing {n_out} of {c_out} filters" + (f", {n_in} of {c_in} input channels" if n_in < c_in else "")
    ax.set_title(f"filters of layer {name} ({conv.type_name}), weight {format_shape(full_shape)}"
                 f" (C_out×C_in×kernel){note}", fontsize=10)
    return fig
