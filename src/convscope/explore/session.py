"""The explorer's state and every answer the JSON API gives (plain dicts, JSON-able).

One :class:`Explorer` holds the model, its analysis report, the current input and every
layer's recorded input and output for it. The web layer (:mod:`.app`) only routes requests
here; scripts may use this class directly. All model computation happens under one lock:
layers keep caches between forward and backward, so two requests must not interleave.

Numbers come from the engine: rows and derivations from :func:`convscope.analyze`,
activations from the model's forward, units from :mod:`.unit` (the trace modules),
saliency and kernel gradients from the model's backward.

Saliency for class k: the loss is ``L = −log p_k`` with ``p = softmax(logits)`` (the
cross-entropy a training step would use with label k), so ``dL/dlogits = p − e_k``; when
the model already ends in softmax, ``dL/dp = −e_k / p_k``. The map is ``max_c |dL/dx[c]|``.
"""
from __future__ import annotations

import os
import threading
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..errors import ConvscopeError, format_count, format_shape
from . import images, inputs
from .unit import check_unit, compute, field_of, kernel_gradient
from .walk import leaf_conv_weight, record, record_backward

MAX_TILES = 64          # feature-map channels drawn in one layer's overview
MAX_FILTER_ROWS = 64    # filters (output channels) drawn
MAX_FILTER_COLS = 16    # input channels drawn per filter


class Explorer:
    """Explore ``model_arg`` (anything ``convscope summary`` takes)."""

    def __init__(self, model_arg: str, input_arg: Optional[str] = None, image: Optional[str] = None,
                 run: Optional[str] = None):
        from ..analysis import analyze
        from ..spec.resolve import resolve

        found = resolve(model_arg, input_arg)
        self.label = found.label
        self.preprocessing = None
        self.class_names: Optional[List[str]] = None
        self.checkpoint_path: Optional[str] = None
        if found.kind == "checkpoint":
            from ..train.checkpoint import load_checkpoint
            ckpt = load_checkpoint(found.label)
            model, shape = ckpt.model, tuple(ckpt.input_shape)
            self.preprocessing, self.class_names = ckpt.preprocessing, ckpt.class_names
            self.checkpoint_path = found.label
            self.weights = f"trained weights from {os.path.basename(found.label)}"
        else:
            if found.input_shape is None:
                raise ConvscopeError(f"{found.label!r} does not say its input size; add --input such as "
                                     "--input 3x32x32")
            model, shape = found.model, tuple(found.input_shape)
            if found.kind == "onnx":  # built by from_onnx: keep the file's weights
                self.weights = f"weights from {os.path.basename(found.label)}"
            else:
                model.build(shape, seed=0)
                self.weights = "random weights (seed 0): give a checkpoint to see trained ones"
        self.model, self.input_shape = model, shape
        self.report = analyze(model, shape)
        self.rows = {row.name: row for row in self.report.layers}
        self.run_dir = self._check_run(run)
        self.lock = threading.Lock()
        for cmap in ("viridis", "inferno", "RdBu_r"):
            images.lut(cmap)  # import matplotlib's colour maps now, not during the first click
        self.images_ok = len(shape) == 3 and shape[0] in (1, 3)
        if image is not None:
            from ..train.preprocessing import open_image
            if not self.images_ok:
                raise ConvscopeError(f"--image needs a model that takes images (1×H×W or 3×H×W); this one "
                                     f"takes {format_shape(shape)}")
            self.set_picture(inputs.Picture("file", os.path.basename(image), open_image(image)))
        elif self.images_ok:
            self.set_picture(inputs.sample(inputs.default_key(shape)))
        else:
            self._set_x(inputs.random_input(shape, model.dtype), "a fixed random input (seed 0)")

    @staticmethod
    def _check_run(run: Optional[str]) -> Optional[str]:
        if run is None:
            return None
        if not os.path.isdir(run):
            raise ConvscopeError(f"--run {run}: no such directory; give a folder written by convscope train --out")
        if not os.path.isfile(os.path.join(run, "history.json")):
            raise ConvscopeError(f"--run {run} has no history.json; give a folder written by convscope train --out")
        return run

    # ----- the input ----------------------------------------------------------------------
    def set_picture(self, picture: inputs.Picture) -> Dict:
        if not self.images_ok:
            raise ConvscopeError(f"this model takes {format_shape(self.input_shape)}, not an image, so its "
                                 "input cannot be changed from the page")
        x = inputs.to_model_input(picture, self.input_shape, self.preprocessing, self.model.dtype)
        return self._set_x(x, picture.label)

    def set_sample(self, key: str) -> Dict:
        return self.set_picture(inputs.sample(str(key)))

    def set_upload(self, data: bytes, name: str = "upload") -> Dict:
        return self.set_picture(inputs.decode_upload(data, name))

    def _set_x(self, x: np.ndarray, label: str) -> Dict:
        with self.lock:
            y, ins, outs = record(self.model, self.report, x)
        self.x, self.x_label, self.y = x, label, y
        self.layer_inputs, self.layer_outputs = ins, outs
        return self.input_info()

    def _probabilities(self) -> Optional[np.ndarray]:
        y = np.asarray(self.y[0], dtype=np.float64)
        if y.ndim != 1:
            return None
        if self._ends_in_softmax():
            return y
        from ..train.metrics import softmax
        return np.asarray(softmax(y[None]))[0]

    def _ends_in_softmax(self) -> bool:
        leaves = [r for r in self.report.layers if not r.container]
        return bool(leaves) and leaves[-1].type == "softmax"

    def _class_name(self, k: int) -> str:
        if self.class_names and k < len(self.class_names):
            return str(self.class_names[k])
        return str(k)

    def input_info(self) -> Dict:
        """The current input (as the model sees it) and the top classes."""
        p = self._probabilities()
        top = []
        if p is not None:
            for k in np.argsort(-p, kind="stable")[:5]:
                top.append({"class": int(k), "name": self._class_name(int(k)), "probability": float(p[k]),
                            "output": float(np.asarray(self.y[0]).reshape(-1)[k])})
        prep = self.preprocessing or (inputs.generic_preprocessing(self.input_shape) if self.images_ok else None)
        from ..train.preprocessing import describe
        return {"label": self.x_label, "shape": list(self.input_shape),
                "png": images.data_url(images.png(images.picture_of_input(self.x[0]))),
                "preprocessing": describe(prep) if prep else "none",
                "top": top, "classes": 0 if p is None else int(p.size), "images": self.images_ok,
                "outputs_are": "probabilities" if self._ends_in_softmax() else "logits"}

    # ----- the model and its layers -------------------------------------------------------
    def _row(self, name) -> object:
        name = str(name)
        if name not in self.rows:
            shown = ", ".join(list(self.rows)[:10])
            raise ConvscopeError(f"no layer named {name!r}; layer names are dotted as in the summary, "
                                 f"e.g. {shown}")
        return self.rows[name]

    def model_info(self) -> Dict:
        """Header totals, every row (as ``summary --format json``) and the diagram's layout;
        computed once (nothing in it depends on the input)."""
        if getattr(self, "_model_info", None) is None:
            self._model_info = self._describe_model()
        return self._model_info

    def _describe_model(self) -> Dict:
        from ..viz.architecture import COLOURS
        from ..viz.diagram import call_text

        report = self.report
        rows = []
        for row in report.layers:
            entry = row.to_dict()
            entry["call"] = row.type if row.container else call_text(row.layer)
            entry["maps"] = row.name in self.layer_outputs and images.as_maps(
                self.layer_outputs[row.name][0]) is not None
            entry["filters"] = row.type in ("conv1d", "conv2d") and leaf_conv_weight(row.layer)[0] is not None
            rows.append(entry)
        diagram = _diagram(self.model, self.input_shape, os.path.basename(self.label), report)
        return {
            "label": self.label, "weights": self.weights, "input": list(report.input),
            "output": list(report.output), "total_params": report.total_params,
            "total_weights": report.total_weights, "total_biases": report.total_biases,
            "total_macs": report.total_macs, "headline": f"{format_count(report.total_params)} parameters · "
            f"{format_count(report.total_macs)} MACs · {format_shape(report.input)} → {format_shape(report.output)}",
            "layers": rows, "run": self.run_dir is not None, "samples": inputs.samples() if self.images_ok else [],
            "diagram": {"width": diagram.width, "height": diagram.height, "title": diagram.title,
                        "subtitle": diagram.subtitle,
                        "boxes": [{"x": b.x, "y": b.y, "w": b.w, "h": b.h, "lines": b.lines, "kind": b.kind,
                                   "names": b.names, "tooltip": b.tooltip} for b in diagram.boxes],
                        "edges": [{"points": e.points, "arrow": e.arrow} for e in diagram.edges],
                        "colours": {kind: list(pair) for kind, pair in COLOURS.items()}},
        }

    def layer_info(self, name) -> Dict:
        """One row with its derivations (``summary --explain``), formula first, then values."""
        from ..viz.diagram import call_text
        row = self._row(name)
        out = row.to_dict(explain=True)
        out["call"] = row.type if row.container else call_text(row.layer)
        return out

    def maps(self, name, limit: int = MAX_TILES) -> Dict:
        """Overview of a layer's feature maps: a mosaic PNG of its first ``limit`` channels on
        one shared colour scale, and the geometry to map a click to a channel."""
        row = self._row(name)
        y = self.layer_outputs.get(row.name)
        maps = None if y is None else images.as_maps(y[0])
        if maps is None:
            raise ConvscopeError(f"layer {row.name} ({row.type}) outputs {format_shape(row.output_shape)}, a flat "
                                 "vector with no feature maps; click its units in the vector view instead")
        maps = np.asarray(maps, dtype=np.float64)
        shown = maps[:max(1, int(limit))]
        lo, hi = float(shown.min()), float(shown.max())
        # The overview is drawn about 500 px wide: large maps are shrunk by block means first
        # (the channel view shows every unit at full resolution).
        factor = max(1, int(np.ceil(1.3 * np.sqrt(len(shown) * maps.shape[1] * maps.shape[2]) / 640)))
        small = images.shrink(shown, factor)
        mosaic, rows_n, cols = images.grid(small, len(small))
        return {"layer": row.name, "shape": list(row.output_shape), "channels": int(maps.shape[0]),
                "shown": int(len(shown)), "rows": rows_n, "cols": cols,
                "tile": [int(maps.shape[1]), int(maps.shape[2])],
                "tile_drawn": [int(small.shape[1]), int(small.shape[2])], "shrunk_by": factor,
                "min": lo, "max": hi, "png": images.data_url(images.png(images.colour(mosaic, lo, hi)))}

    def values(self, name, channel: Optional[int] = None) -> Dict:
        """The numbers of one channel of a layer's output (H×W, or L as 1×L), or of a flat
        output vector, to 7 significant digits."""
        row = self._row(name)
        y = np.asarray(self.layer_outputs[row.name][0], dtype=np.float64)
        maps = images.as_maps(y)
        if maps is None:
            flat = y.reshape(-1)
            return {"layer": row.name, "shape": list(y.shape), "channel": None,
                    "values": images.rounded(flat), "min": float(flat.min()), "max": float(flat.max())}
        if channel is None or not 0 <= int(channel) < maps.shape[0]:
            raise ConvscopeError(f"layer {row.name} has channels 0..{maps.shape[0] - 1}; give channel= one of them")
        plane = maps[int(channel)]
        return {"layer": row.name, "shape": list(y.shape), "channel": int(channel),
                "values": images.rounded(plane), "min": float(plane.min()), "max": float(plane.max())}

    def unit(self, name, unit: Sequence[int]) -> Dict:
        """The unit's receptive field on the input and its computation term by term."""
        row = self._row(name)
        if row.name not in self.layer_outputs:
            raise ConvscopeError(f"layer {row.name} did not run for this input")
        y = self.layer_outputs[row.name][0]
        unit = check_unit(y.shape, unit, row.name)
        x_in = self.layer_inputs.get(row.name)
        x_in = [v[0] for v in x_in] if isinstance(x_in, (list, tuple)) else x_in[0]
        if row.container:
            result = {"value": float(y[unit]), "sum": None, "kind": row.type, "terms": 0, "traced": False,
                      "lines": [f"{row.type}: y{list(unit)} = {float(y[unit]):.6g}; click a layer inside it "
                                "for its terms"]}
        else:
            with self.lock:
                result = compute(row, x_in, y, unit)
        result.update(layer=row.name, type=row.type, unit=list(unit),
                      field=field_of(row, unit, self.input_shape),
                      receptive_field=row.receptive_field)
        return result

    # ----- backward -----------------------------------------------------------------------
    def saliency(self, target: int, name=None, unit: Optional[Sequence[int]] = None) -> Dict:
        """dL/dx for ``L = −log p_target`` (a saliency map), and for a selected unit of a conv
        or linear layer its kernel gradient ``dL/dy[unit] · window`` from the layer's backward."""
        p = self._probabilities()
        if p is None:
            raise ConvscopeError(f"the model outputs {format_shape(self.report.output)}, not class scores, so "
                                 "there is no class to explain")
        target = int(target)
        if not 0 <= target < p.size:
            raise ConvscopeError(f"class must be in 0..{p.size - 1}, got {target}")
        if self._ends_in_softmax():
            dy = np.zeros((1, p.size))
            dy[0, target] = -1.0 / max(p[target], 1e-12)
        else:
            dy = p[None].copy()
            dy[0, target] -= 1.0
        with self.lock:
            record(self.model, self.report, self.x)
            dx, grads = record_backward(self.model, self.report, dy.astype(self.model.dtype))
        dx = np.asarray(dx[0], dtype=np.float64)
        plane = np.abs(dx).max(axis=0) if dx.ndim == 3 else np.abs(dx)
        plane = plane if plane.ndim == 2 else plane[None]
        out = {"class": target, "name": self._class_name(target), "loss": float(-np.log(max(p[target], 1e-300))),
               "max": float(plane.max()),
               "png": images.data_url(images.png(images.colour(plane, 0.0, float(plane.max()) or 1.0, "inferno")))}
        if name is not None and unit is not None:
            row = self._row(name)
            y = self.layer_outputs[row.name][0]
            unit = check_unit(y.shape, unit, row.name)
            upstream = float(grads[row.name][0][unit]) if row.name in grads else 0.0
            out["unit"] = {"layer": row.name, "unit": list(unit), "dL_dy": upstream}
            x_in = self.layer_inputs.get(row.name)
            if not row.container and not isinstance(x_in, (list, tuple)):
                with self.lock:
                    grad = kernel_gradient(row.layer, x_in[0], unit, upstream)
                if grad is not None:
                    values = grad["values"]
                    largest = float(np.abs(values).max())
                    m = largest or 1.0
                    tiles = values.reshape((values.shape[0], -1) + values.shape[-1:]) if values.ndim > 1 else values[None, None]
                    mosaic, _, _ = images.grid(tiles[:MAX_FILTER_COLS], MAX_FILTER_COLS)
                    out["unit"]["kernel_grad"] = {"shape": grad["shape"], "max_abs": largest,
                                                  "values": images.rounded(values),
                                                  "png": images.data_url(images.png(images.colour(mosaic, -m, m, "RdBu_r")))}
        return out

    # ----- filters and the training run ---------------------------------------------------
    def filters(self, name) -> Dict:
        """The kernels of a conv layer: rows are filters (output channels), columns input
        channels, on one symmetric colour scale [−m, m]."""
        row = self._row(name)
        weight, _ = leaf_conv_weight(row.layer) if row.layer is not None else (None, None)
        if weight is None or row.type not in ("conv1d", "conv2d"):
            raise ConvscopeError(f"layer {row.name} ({row.type}) is not a convolution; filters are shown for "
                                 "conv1d and conv2d layers")
        w = np.asarray(weight, dtype=np.float64)
        if w.ndim == 3:
            w = w[:, :, None, :]
        n_out, n_in = min(w.shape[0], MAX_FILTER_ROWS), min(w.shape[1], MAX_FILTER_COLS)
        shown = w[:n_out, :n_in]
        m = float(np.abs(shown).max()) or 1.0
        kh, kw = shown.shape[2:]
        # One block per filter (its input channels side by side, plus a blank column so blocks
        # stand apart), blocks wrapped into a near-square grid.
        blocks = np.full((n_out, kh, n_in * (kw + 1)), np.nan)
        for c in range(n_in):
            blocks[:, :, c * (kw + 1): c * (kw + 1) + kw] = shown[:, c]
        mosaic, _, _ = images.grid(blocks, n_out)
        return {"layer": row.name, "shape": list(weight.shape), "filters_shown": n_out, "channels_shown": n_in,
                "block": [int(kh), int(n_in * (kw + 1))],
                "max_abs": m, "png": images.data_url(images.png(images.colour(mosaic, -m, m, "RdBu_r")))}

    def run_info(self) -> Dict:
        """history.json's rows and, when the run's model.npz can be evaluated, the test split's
        accuracy and confusion matrix (``convscope evaluate``'s numbers)."""
        if self.run_dir is None:
            raise ConvscopeError("no training run: start the explorer with --run DIR (a folder written by "
                                 "convscope train --out DIR)")
        from ..viz.curves import check_history, read_history
        history = check_history(read_history(os.path.join(self.run_dir, "history.json")))
        out = {"history": history, "evaluation": None, "evaluation_error": None}
        checkpoint = os.path.join(self.run_dir, "model.npz")
        if os.path.isfile(checkpoint):
            from ..commands.evaluate import evaluate_checkpoint
            try:
                out["evaluation"] = evaluate_checkpoint(checkpoint)
            except ConvscopeError as error:
                out["evaluation_error"] = str(error)
        return out


def _diagram(model, input_shape, name: str, report):
    """``show architecture``'s layout; for a model it cannot lay out (a container type it does
    not know yet), one box per leaf row in report order, so the page still works."""
    from ..viz import diagram as viz_diagram

    try:
        return viz_diagram.layout(model, input_shape, name=name)
    except (ConvscopeError, NotImplementedError, TypeError, AttributeError, KeyError):
        pass
    leaves = [r for r in report.layers if not r.container]
    width, box_w, box_h, gap, top = 360.0, 300.0, 36.0, 20.0, 80.0
    diagram = viz_diagram.Diagram(f"{name}: {format_shape(report.input)} → {format_shape(report.output)}",
                                  f"{format_count(report.total_params)} parameters · one box per layer",
                                  width, top + len(leaves) * (box_h + gap) + 20)
    for k, row in enumerate(leaves):
        y = top + k * (box_h + gap)
        diagram.boxes.append(viz_diagram.Box(30.0, y, box_w, box_h, [
            f"{row.name} {viz_diagram.call_text(row.layer)}",
            f"{format_shape(row.output_shape)} · {format_count(row.params)} params"],
            viz_diagram.family(row.type), [row.name]))
        if k:
            diagram.edges.append(viz_diagram.Edge([(180.0, y - gap), (180.0, y)]))
    return diagram
