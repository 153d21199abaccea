"""Feature maps: what one layer outputs for one image, next to the image the model saw.

The image goes through the checkpoint's preprocessing (the same conversion ``predict``
uses), then through the model in inference mode up to the chosen layer (a dotted name as in
the analysis; default: the first convolution). Each output channel is drawn as a small
image on one shared colour scale, with a colour bar; 1-D layers (C, L) are drawn as one
channel × position image.
"""
from __future__ import annotations

import math
import os

import numpy as np

from ..errors import ConvscopeError, format_shape
from .select import find_layer, model_of, named_layers


class _Found(Exception):
    def __init__(self, value):
        super().__init__()
        self.value = value


def _run_to(layer, x, name: str, target: str):
    """Forward ``x`` through ``layer`` (called ``name``); raise _Found at ``target``'s output.
    Containers are entered only when the target lies inside them."""
    if name == target:
        raise _Found(layer.forward(x, train=False))
    if name and not target.startswith(name + "."):
        return layer.forward(x, train=False)
    children = layer.children()
    if layer.is_chain:
        for local, child in children:
            x = _run_to(child, x, f"{name}.{local}" if name else local, target)
        return x
    for local, child in children:  # a forking container (concat, residual): every branch reads x
        full = f"{name}.{local}"
        if target.startswith(full + "."):
            return _run_to(child, x, full, target)
    return layer.forward(x, train=False)


def activation(model, x: np.ndarray, target: str) -> np.ndarray:
    """Output of the layer called ``target`` for the batch ``x``."""
    try:
        _run_to(model, x, "", str(target))
    except _Found as found:
        return found.value
    raise ConvscopeError(f"layer {target!r} was not reached")


def map_layers(model):
    """Layers whose per-sample output has a spatial axis: (C, L) or (C, H, W)."""
    from ..analysis import analyze
    rows = {r.name: r for r in analyze(model, model.input_shape).layers}
    return [(n, l) for n, l in named_layers(model) if n in rows and len(rows[n].output_shape) >= 2], rows


def _input_batch(checkpoint, image, model):
    """(1, C, H, W) model input and a label for the image."""
    if isinstance(image, np.ndarray):
        x = image.astype(np.float64) if image.ndim == len(model.input_shape) + 1 else image[None]
        if x.shape[1:] != tuple(model.input_shape):
            raise ConvscopeError(f"the image array has shape {format_shape(image.shape)}, the model takes "
                                 f"{format_shape(model.input_shape)}; preprocess it first")
        return x.astype(model.dtype), "array"
    from ..train import preprocessing
    prep = getattr(checkpoint, "preprocessing", None)
    if prep is None:
        raise ConvscopeError("the checkpoint has no preprocessing, so an image file cannot be converted; "
                             "pass the model's input as an array instead")
    if hasattr(image, "mode") and hasattr(image, "size"):  # a Pillow image
        raw = preprocessing.image_to_raw(image, prep)[None]
        return preprocessing.normalize(raw, prep, dtype=model.dtype), "image"
    path = os.fspath(image)
    return preprocessing.load_images([path], prep, dtype=model.dtype), os.path.basename(path)


def featuremaps(source, image, layer=None, *, max_maps: int = 32):
    """Figure: the preprocessed input and the activation maps of ``layer`` for ``image``.

    ``source`` is a loaded checkpoint (its preprocessing converts an image file or Pillow
    image) or a built model (then ``image`` must be an array shaped like the model's input).
    """
    from matplotlib.figure import Figure

    model = model_of(source)
    choices, rows = map_layers(model)
    if not choices:
        raise ConvscopeError("no layer of this model outputs feature maps (every output is a flat vector)")
    if layer is None:
        convs = [(n, l) for n, l in choices if l.has_filters]
        name, chosen = (convs or choices)[0]
    else:
        name, chosen = str(layer), find_layer(model, layer, choices, "feature maps")
    x, label = _input_batch(source, image, model)
    maps = np.asarray(activation(model, x, name)[0], dtype=np.float64)
    shape = maps.shape
    channels = shape[0]
    shown = min(channels, max_maps)

    fig = Figure(figsize=(12, 6.5), dpi=100, layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[1, 2.6])
    ax_in = left.add_subplot()
    picture = np.asarray(x[0], dtype=np.float64)
    if picture.ndim == 3 and picture.shape[0] == 3:
        lo, hi = picture.min(), picture.max()
        ax_in.imshow(np.transpose((picture - lo) / ((hi - lo) or 1.0), (1, 2, 0)), interpolation="nearest")
    elif picture.ndim == 3:
        ax_in.imshow(picture[0], cmap="gray", interpolation="nearest")
    else:
        ax_in.imshow(picture, aspect="auto", cmap="gray", interpolation="nearest")
    ax_in.set_title(f"input {format_shape(picture.shape)}\n(after the checkpoint's preprocessing)", fontsize=10)
    ax_in.set_xlabel("width (pixels)" if picture.ndim == 3 else "position")
    ax_in.set_ylabel("height (pixels)" if picture.ndim == 3 else "channel")

    vmin, vmax = float(maps[:shown].min()), float(maps[:shown].max())
    if vmin == vmax:
        vmin, vmax = vmin - 1.0, vmax + 1.0
    if maps.ndim == 2:  # (C, L)
        ax = right.add_subplot()
        image_artist = ax.imshow(maps[:shown], aspect="auto", cmap="viridis", vmin=vmin, vmax=vmax,
                                 interpolation="nearest")
        ax.set_xlabel("position")
        ax.set_ylabel("channel")
        axes = [ax]
    else:
        cols = math.ceil(math.sqrt(shown))
        rows_n = math.ceil(shown / cols)
        grid = right.subplots(rows_n, cols, squeeze=False)
        axes = list(grid.ravel())
        for i, ax in enumerate(axes):
            ax.set_xticks([])
            ax.set_yticks([])
            if i >= shown:
                ax.axis("off")
                continue
            image_artist = ax.imshow(maps[i].reshape(maps.shape[1], -1), cmap="viridis", vmin=vmin,
                                     vmax=vmax, interpolation="nearest")
            ax.set_title(f"channel {i}", fontsize=7, pad=2)
    bar = right.colorbar(image_artist, ax=axes, shrink=0.8)
    bar.set_label("activation")
    more = f" (first {shown} of {channels} channels)" if shown < channels else ""
    right.suptitle(f"layer {name} ({chosen.type_name}) output {format_shape(shape)}{more}", fontsize=11)
    fig.suptitle(f"feature maps of layer {name} for {label}", fontsize=13)
    return fig
