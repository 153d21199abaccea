"""The checks every registered layer type must pass (tests/test_conformance.py runs them over
the registry; a test that registers its own type reuses them).

Each check takes an *unbuilt* example (a layer and its per-sample input shape, from the type's
``examples()``) and states its oracle:

* :func:`check_gradients`: finite differences (``cs.gradcheck``, float64) at batch 1 and 2.
* :func:`check_in_containers`: the same inside a Residual body (shortcut: a second copy of the
  layer) and a Concat branch (beside a second copy), where children share the input.
* :func:`check_torch`: PyTorch in float64 through ``to_torch``: output, dL/dx and every
  parameter gradient within 1e-9.
* :func:`check_onnx`: ``to_onnx`` then ONNX Runtime (float32) within 1e-5 of convscope, then
  ``from_onnx`` back, equal outputs within 1e-5.
* :func:`check_spec`: ``from_spec(spec())`` gives the same spec, the same state-dict names and
  shapes, and (with the state dict loaded) equal outputs.
* :func:`check_analysis`: the analysis row is complete: a declared diagram family, a window
  (None, one (k, s, p, d) per spatial axis, or "global"), counts where the layer computes
  (MACs or other ops for conv, pool, linear, activation and norm families), a receptive
  field, derivations that agree with the counts, and a diagram box.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

import convscope as cs
from convscope.layers.base import declared_family
from convscope.spec.document import layer_from_entry

FAMILIES = ("conv", "pool", "linear", "activation", "norm", "shape", "join", "container")
#: Families whose layers compute something, so their counts may not be empty.
COMPUTING = ("conv", "pool", "linear", "activation", "norm")
TOL = 1e-9


def copy_of(layer):
    """A fresh, unbuilt copy of ``layer`` through its spec entry."""
    return layer_from_entry(layer.spec_entry(), "copy")


def randomize(model, seed: int = 1) -> None:
    """Parameters U(−1, 1) and float buffers U(0.5, 1.5) (variances stay positive), so that
    batch-norm scales and running statistics are not the trivial ones and zeros."""
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.value[...] = rng.uniform(-1.0, 1.0, size=p.value.shape)
    for _name, buffer in model.named_buffers():
        if np.issubdtype(np.asarray(buffer).dtype, np.floating):
            buffer[...] = rng.uniform(0.5, 1.5, size=np.shape(buffer))


def built(layer, shape, dtype=np.float64, seed: int = 0):
    model = cs.Sequential([layer])
    model.build(shape, seed=seed, dtype=dtype)
    randomize(model, seed + 1)
    return model


def _every_layer(layer):
    yield layer
    for _, child in layer.children():
        yield from _every_layer(child)


def deterministic_in_training(model, shape) -> bool:
    """False when a layer of the model draws random numbers in training (dropout's masks,
    stochastic depth's drops): such a model is compared in inference mode. Asked of the
    layers rather than measured, since two forwards at batch 1 can draw the same mask."""
    return not any(layer.random_in_training for layer in _every_layer(model))


def _gradcheck(model, shape, batch: int) -> None:
    train = deterministic_in_training(model, shape)
    x = np.random.default_rng(batch).standard_normal((batch,) + tuple(shape))
    cs.gradcheck(model, x, train=train, atol=1e-6, rtol=1e-5)


def check_gradients(layer, shape, batch: int) -> None:
    _gradcheck(built(copy_of(layer), shape), shape, batch)


def check_in_residual(layer, shape, batch: int) -> None:
    model = built(cs.layers.Residual([copy_of(layer)], [copy_of(layer)]), shape)
    _gradcheck(model, shape, batch)


def check_in_concat(layer, shape, batch: int) -> None:
    model = built(cs.layers.Concat([[copy_of(layer)], [copy_of(layer)]]), shape)
    _gradcheck(model, shape, batch)


def check_torch(layer, shape, batch: int = 2) -> None:
    import torch

    model = built(copy_of(layer), shape)
    train = deterministic_in_training(model, shape)
    module = cs.interop.to_torch(model)
    module.train(train)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((batch,) + tuple(shape))
    y = model.forward(x, train=train)
    dy = rng.standard_normal(y.shape)
    dx = model.backward(dy)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    ty = module(tx)
    ty.backward(torch.from_numpy(dy))
    tol = max(TOL, *(layer.torch_tolerance for layer in _every_layer(model)))  # looser where torch rounds
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=tol, atol=tol, err_msg="forward differs from torch")
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=tol, atol=tol, err_msg="dL/dx differs from torch")
    theirs = dict(module.named_parameters())
    ours = dict(model.named_parameters())
    assert sorted(ours) == sorted(theirs), f"parameter names differ: {sorted(ours)} vs {sorted(theirs)}"
    for name, p in ours.items():
        np.testing.assert_allclose(p.grad, theirs[name].grad.numpy(), rtol=tol, atol=tol,
                                   err_msg=f"dL/d{name} differs from torch")


def check_onnx(layer, shape, batch: int = 2) -> None:
    import onnxruntime as ort

    model = built(copy_of(layer), shape)
    x = np.random.default_rng(4).standard_normal((batch,) + tuple(shape))
    y = model.forward(x, train=False)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "net.onnx")
        cs.interop.to_onnx(model, path)
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {"input": x.astype(np.float32)})
        np.testing.assert_allclose(got, y, rtol=1e-5, atol=1e-5, err_msg="ONNX Runtime differs from convscope")
        back = cs.interop.from_onnx(path)
    again = back.forward(x.astype(np.float32), train=False)
    np.testing.assert_allclose(again, y, rtol=1e-5, atol=1e-5, err_msg="from_onnx differs from the original")


def check_spec(layer, shape) -> None:
    model = built(copy_of(layer), shape)
    spec = model.spec()
    twin = cs.from_spec(spec)
    assert twin.spec() == spec
    twin.build(shape, seed=7, dtype=np.float64)
    ours, theirs = model.state_dict(), twin.state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    twin.load_state_dict(ours)
    x = np.random.default_rng(6).standard_normal((2,) + tuple(shape))
    np.testing.assert_array_equal(twin.forward(x, train=False), model.forward(x, train=False))


def _check_window(window, shape) -> None:
    if window is None or window == "global":
        return
    assert isinstance(window, tuple) and len(window) == len(shape) - 1, \
        f"window {window!r} is not one (k, s, p, d) per spatial axis of {shape}"
    for axis in window:
        assert len(axis) == 4 and all(isinstance(v, (int, np.integer)) for v in axis), f"bad window axis {axis!r}"


def check_analysis(layer, shape) -> None:
    from convscope.viz import diagram

    model = cs.Sequential([copy_of(layer)])
    report = cs.analyze(model, shape)
    row = report.layers[0]
    subject = model[0]
    family = declared_family(subject)
    assert family in FAMILIES, f"family {family!r} is not one of {FAMILIES}"
    if not row.container:
        _check_window(subject.window(tuple(shape)), shape)
    if family in COMPUTING:
        assert row.macs + sum(row.other_ops.values()) > 0, "computes something but counts no MACs or other ops"
    assert row.field is not None, "no receptive field"
    for r in report.layers:
        lines = r.explain()
        assert lines and not any("the layer's rule; the formula gives" in line for line in lines), lines
    drawn = {name for box in diagram.layout(model, shape, detail="layers").boxes for name in box.names}
    for r in report.layers:  # every leaf and every forking container has a box; chains have none
        if not r.layer.is_chain:
            assert r.name in drawn, f"no diagram box for layer {r.name}"
