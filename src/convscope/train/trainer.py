"""The training loop behind ``convscope train``: ``fit(model, data, epochs=..., lr=..., out=...)``.

One epoch, with N training samples in batches B_1..B_m drawn by
``batch_indices(N, batch_size, seed, epoch)``:

    for each batch B:   z = model(x_B)                      forward, train mode
                        L = mean_n −log softmax(z_n)[t_n]   softmax cross-entropy
                        model.backward(dL/dz)               sets every Parameter.grad
                        optimizer.step()                    with lr = schedule(epoch)
    then                validation loss and accuracy (inference mode), one history row

Files in ``out`` (all written atomically: temporary file, then rename):

* ``last.npz``: the latest state with optimizer state, epoch count and history (for resume),
* ``model.npz``: the weights with the best validation accuracy so far,
* ``history.json``: one row per epoch (epoch, train_loss, train_accuracy, val_loss,
  val_accuracy, lr, seconds).

Stopping safely. Ctrl-C is noticed between batches: the current state (mid-epoch position
included) is saved to ``last.npz`` and :class:`TrainingInterrupted` (a KeyboardInterrupt) is
raised; ``resume=True`` continues from the very next batch. A NaN or infinite loss is caught
before the optimizer step, so the weights and every checkpoint stay those of the last good
state, and :class:`TrainingDiverged` names the epoch and batch. Because batches, schedules and
dropout masks depend only on the seed and the position, a resumed run produces the same
history and weights as an uninterrupted one.
"""
from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from ..errors import ConvscopeError, format_shape
from ..files import atomic_write
from ..layers.base import Layer
from ..layers.containers import Sequential
from . import preprocessing as prep_mod
from .checkpoint import OPTIM_PREFIX, read_checkpoint, restore_generator_states, save_checkpoint
from .data import Data, batch_indices, from_arrays, load_data
from .metrics import accuracy as accuracy_of
from .optim import OPTIMIZERS, make_optimizer
from . import runlock
from .progress import Reporter
from .schedules import Schedule

LAST, BEST, HISTORY = "last.npz", "model.npz", "history.json"


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during fit, after the state was saved; ``str()`` is a one-line summary;
    ``signum`` is the signal that stopped it (exit code 128 + signum)."""

    signum = signal.SIGINT


class TrainingDiverged(ConvscopeError):
    """The loss became NaN or infinite; nothing was saved from the bad step."""


@dataclass
class FitResult:
    model: Layer
    history: List[Dict]
    best_epoch: Optional[int]
    best_val_accuracy: Optional[float]
    out: Optional[str]
    data: Data
    extra: Dict = field(default_factory=dict)


# ----- the default model ----------------------------------------------------------------------
def default_spec(input_shape, num_classes: int) -> Dict:
    """A small CNN fit for the data. For 1×8×8 digits:
    conv2d(16, 3, padding=1) -> relu -> conv2d(32, 3, padding=1) -> relu -> maxpool2d(2)
    -> flatten -> linear(64) -> relu -> linear(10); larger images get a pooling step per
    halving down to 8×8 first."""
    if len(input_shape) != 3:
        raise ConvscopeError(f"the default model takes images (C, H, W), got input "
                             f"{format_shape(input_shape)}; give a MODEL")
    h, w = int(input_shape[1]), int(input_shape[2])
    layers = [{"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1}, {"type": "relu"}]
    while min(h, w) >= 16:
        layers.append({"type": "maxpool2d", "kernel_size": 2})
        h, w = h // 2, w // 2
    layers += [{"type": "conv2d", "out_channels": 32, "kernel_size": 3, "padding": 1}, {"type": "relu"}]
    if min(h, w) >= 2:
        layers.append({"type": "maxpool2d", "kernel_size": 2})
    layers += [{"type": "flatten"}, {"type": "linear", "out_features": 64}, {"type": "relu"},
               {"type": "linear", "out_features": int(num_classes)}]
    return {"input": [int(s) for s in input_shape], "layers": layers}


def default_model(data: Data):
    from ..spec import from_spec
    return from_spec(default_spec(data.input_shape, data.num_classes))


def default_lr(optimizer: str) -> float:
    """0.003 for Adam/AdamW (with the cosine schedule it reaches >= 97 % on digits in 20
    epochs), 0.05 for SGD with momentum."""
    return 0.05 if optimizer == "sgd" else 0.003


# ----- evaluation -----------------------------------------------------------------------------
def evaluate_arrays(model, x: np.ndarray, y: np.ndarray, batch_size: int = 256):
    """(mean cross-entropy, accuracy, logits) of ``model`` in inference mode on model-ready x."""
    from ..ops.losses import softmax_cross_entropy

    if len(y) == 0:
        return None, None, np.zeros((0, 0))
    logits, total = [], 0.0
    for start in range(0, len(y), batch_size):
        z = model.forward(x[start:start + batch_size], train=False)
        loss, _ = softmax_cross_entropy(z, y[start:start + batch_size])
        total += loss * len(z)
        logits.append(z)
    logits = np.concatenate(logits)
    return total / len(y), accuracy_of(logits, y), logits


# ----- helpers --------------------------------------------------------------------------------
def _check_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConvscopeError(f"{name} must be a whole number of at least {minimum}, got {value!r}")
    return int(value)


def _check_lr(lr) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ConvscopeError(f"the learning rate must be a number greater than 0, got {lr!r}; try 0.001")
    return float(lr)


def _write_json(path: str, value) -> None:
    atomic_write(path, lambda handle: handle.write(json.dumps(value, indent=1) + "\n"), mode="w")


def _as_data(data, seed_split: int = 0, val_fraction: float = 0.1) -> Data:
    if isinstance(data, Data):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return from_arrays(data[0], data[1], seed=seed_split, val_fraction=val_fraction)
    if isinstance(data, (str, os.PathLike)):
        return load_data(data, seed=seed_split, val_fraction=val_fraction)
    raise ConvscopeError(f"data must be 'digits', a path, a Data object or (x, y) arrays, got "
                         f"{type(data).__name__}")


def _layers_of(spec: Dict):
    return spec.get("layers") if isinstance(spec, dict) else spec


def check_model_fits(model, data: Data) -> None:
    """The model takes the data's images and has one output per class (else one clear error)."""
    shape = data.input_shape
    if model.built and tuple(model.input_shape) != tuple(shape):
        raise ConvscopeError(f"the model was built for {format_shape(model.input_shape)} inputs but "
                             f"{data.name} has {format_shape(shape)} images; use a model for "
                             f"{format_shape(shape)} inputs or resize the data")
    declared = getattr(model, "declared_input", None)
    if not model.built and declared is not None and tuple(declared) != tuple(shape):
        raise ConvscopeError(f"the model expects {format_shape(declared)} inputs but {data.name} has "
                             f"{format_shape(shape)} images; use a model for {format_shape(shape)} inputs")
    try:
        out = model.output_shape(shape)
    except ConvscopeError as error:
        raise ConvscopeError(f"the model does not fit {data.name}'s {format_shape(shape)} images: "
                             f"{error}") from None
    if len(out) != 1:
        raise ConvscopeError(f"the model's output is {format_shape(out)} per sample, a classifier needs one "
                             f"score per class: end it with flatten and linear({data.num_classes})")
    if out[0] < data.num_classes:
        raise ConvscopeError(f"the labels of {data.name} go up to {data.num_classes - 1} ({data.num_classes} "
                             f"classes) but the model has {out[0]} outputs; end it with "
                             f"linear({data.num_classes})")


class _InterruptFlag:
    """Turns SIGINT and SIGTERM into a flag checked between batches, so a step is never cut in
    half (SIGTERM, what `kill` and schedulers send, is treated exactly like Ctrl-C)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.raised = False
        self.signum = signal.SIGINT
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum, frame):
        if self.raised:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.raised, self.signum = True, signum

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        return False


# ----- fit: check, restore (or start), run the epochs, save --------------------------------------
@dataclass
class _Run:
    """Everything the steps of :func:`fit` share: the model and optimizer, the schedule, the
    history so far and where to continue (``start_epoch``, and ``partial`` mid-epoch counts
    after Ctrl-C), the ``training`` record saved in every checkpoint, and the run folder."""

    model: Layer
    opt: object
    sched: Schedule
    history: List[Dict]
    start_epoch: int
    partial: Optional[Dict]
    training: Dict
    data: Data
    out: Optional[str]
    resumed: bool = False
    best_epoch: Optional[int] = None
    best_score: Optional[tuple] = None


def fit(model=None, data="digits", *, epochs: int = 20, lr: Optional[float] = None, batch_size: int = 32,
        optimizer: str = "adam", momentum: float = 0.9, nesterov: bool = False, weight_decay: float = 0.0,
        schedule: str = "cosine", warmup_epochs: int = 0, step_size: Optional[int] = None,
        seed: int = 0, out=None, resume: bool = False,
        overwrite: bool = False, progress: bool = True, dtype=np.float32, val_fraction: float = 0.1,
        console=None, engine: str = "convscope", device: Optional[str] = None) -> FitResult:
    """Train ``model`` (a convscope model, built or not; None = :func:`default_spec`) on ``data``.

    ``data`` is ``"digits"``, a path (see :func:`convscope.train.load_data`), a ``Data`` or
    ``(x, y)`` arrays. ``lr`` defaults to :func:`default_lr` (0.003 for Adam/AdamW, 0.05 for
    SGD); ``step_size`` (step schedule) to a third of the epochs. With ``out``,
    checkpoints and history are written there; ``resume=True`` continues ``out/last.npz`` up to
    ``epochs`` epochs in total with the settings it was saved with. ``engine="torch"`` does the
    arithmetic with PyTorch on ``device`` ("cpu", "cuda", "cuda:N"; see
    :mod:`convscope.train.torch_engine`), everything else unchanged. Every argument is checked
    before anything is written.
    """
    epochs = _check_int(epochs, "epochs")
    batch_size = _check_int(batch_size, "batch size")
    seed = _check_int(seed, "seed", minimum=0)
    if lr is not None:
        lr = _check_lr(lr)
    if optimizer not in OPTIMIZERS:
        raise ConvscopeError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    data = _as_data(data, val_fraction=val_fraction)
    out = os.fspath(out) if out is not None else None
    if out is not None and os.path.exists(out) and not os.path.isdir(out):
        raise ConvscopeError(f"--out {out} is a file; give a folder for the run")
    backend = _engine_factory(engine, device, batch_size)

    saved, model = _check_run_folder(model, data, out, resume, overwrite)
    if model is None:
        model = default_model(data)
    _check_model(model, data, out)
    training = {"data": data.name, "seed": seed, "batch_size": batch_size, "epochs": epochs,
                "val_fraction": val_fraction}
    if saved is None:
        run = _start(model, data, out, training, epochs=epochs, lr=lr, optimizer=optimizer, momentum=momentum,
                     nesterov=nesterov, weight_decay=weight_decay, schedule=schedule,
                     warmup_epochs=warmup_epochs, step_size=step_size, seed=seed, dtype=dtype)
    else:
        run = _restore(model, data, out, training, saved, epochs=epochs, val_fraction=val_fraction)
        backend.check_batch(run.training["batch_size"])

    prep = data.preprocessing
    x_train = prep_mod.normalize(data.train.x, prep, dtype=model.dtype)
    x_val = prep_mod.normalize(data.val.x, prep, dtype=model.dtype)
    arithmetic = backend.make(run.model, run.opt, x_train, data.train.y)
    main = arithmetic.is_main
    reporter = Reporter(epochs, enabled=progress and main, console=console)
    run.best_epoch, run.best_score = _best_so_far(run.history)
    # Rank 0 alone holds the run folder (it alone writes there): see runlock for the order.
    lock = runlock.take(out, overwrite=overwrite and saved is None) if main else None  # noqa: F841 (held until fit returns)
    if run.resumed:
        where = f"epoch {run.start_epoch + 1}" + (f", batch {run.partial['batch'] + 1}" if run.partial else "")
        reporter.message(f"resuming {os.path.join(out, LAST)} at {where} of {epochs} ({arithmetic.name})")

    # Overflow on the way to a NaN loss is caught below as one clear message; NumPy's warnings
    # (several lines each, naming library source files) would only bury it.
    with _InterruptFlag() as interrupt, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        try:
            for epoch in range(run.start_epoch, epochs):
                row, seen, train_seconds = _run_epoch(run, arithmetic, epoch, x_val, reporter, interrupt)
                _end_epoch(run, arithmetic, row)
                rate = seen / train_seconds if train_seconds else None
                reporter.end_epoch(dict(row, samples_per_second=rate))
        except KeyboardInterrupt as error:  # a second Ctrl-C, or Ctrl-C outside the main thread
            reporter.close()
            if isinstance(error, TrainingInterrupted):
                raise
            raise TrainingInterrupted("interrupted; the last completed epoch is in "
                                      f"{os.path.join(out, LAST) if out else 'no out folder'}") from None
        finally:
            reporter.close()
            arithmetic.close()
    arithmetic.sync()
    return FitResult(model=model, history=run.history, best_epoch=run.best_epoch,
                     best_val_accuracy=None if run.best_score is None else run.best_score[0], out=out, data=data)


def _engine_factory(engine: str, device: Optional[str], batch_size: int):
    """The chosen engine's factory, checked before anything is read or written."""
    if engine == "convscope":
        if device not in (None, "cpu"):
            raise ConvscopeError(f"--device {device} needs --engine torch (convscope's own engine runs on "
                                 "the CPU)")
        return _NumpyFactory()
    if engine == "torch":
        from .torch_engine import TorchFactory
        return TorchFactory(device, batch_size)
    raise ConvscopeError(f"unknown engine {engine!r}; choose convscope or torch")


class _NumpyFactory:
    def check_batch(self, batch_size: int) -> None:
        """Any batch size works on one process."""

    def make(self, model, opt, x_train, y_train):
        from .engine import NumpyEngine
        return NumpyEngine(model, opt, x_train, y_train)


def _check_run_folder(model, data: Data, out: Optional[str], resume: bool, overwrite: bool):
    """(saved checkpoint or None, model): with ``resume``, read ``out/last.npz`` and check it
    fits ``model`` and ``data``; otherwise refuse to start over an existing run."""
    if not resume:
        if out is not None and not overwrite:
            existing = [n for n in (LAST, BEST, HISTORY) if os.path.lexists(os.path.join(out, n))]
            if existing:
                raise ConvscopeError(f"{out} already holds a run ({', '.join(existing)}); continue it with "
                                     "--resume, choose another --out, or pass --overwrite to start over")
        return None, model
    if out is None:
        raise ConvscopeError("resume needs the run folder (out=...) that holds last.npz")
    last = os.path.join(out, LAST)
    if not os.path.exists(last):
        raise ConvscopeError(f"cannot resume: {last} does not exist; train without --resume first")
    meta, arrays = read_checkpoint(last)
    if not meta.get("optimizer") or "training" not in meta:
        raise ConvscopeError(f"cannot resume from {last}: it has no optimizer state (it is not a "
                             "last.npz written by convscope train)")
    if model is None:
        from ..spec import from_spec
        model = from_spec(meta["spec"])
    elif _layers_of(model.spec()) != _layers_of(meta["spec"]):
        raise ConvscopeError(f"cannot resume: {last} holds another model; run without MODEL to continue "
                             "it, or use another --out for this model")
    if list(meta["input_shape"]) != list(data.input_shape) or meta.get("class_names") != data.class_names:
        raise ConvscopeError(f"cannot resume: {last} was trained on {format_shape(meta['input_shape'])} "
                             f"images with {len(meta.get('class_names') or [])} classes, this data has "
                             f"{format_shape(data.input_shape)} and {data.num_classes}; use the "
                             "same --data")
    return (meta, arrays), model


def _check_model(model, data: Data, out: Optional[str]) -> None:
    if not isinstance(model, Layer):
        raise ConvscopeError(f"model must be a convscope model such as cs.Sequential([...]), got "
                             f"{type(model).__name__}")
    if out is not None and not (isinstance(model, Sequential) or model.type_name == "graph"):
        raise ConvscopeError(f"checkpoints hold a Sequential or Graph model, got {type(model).__name__}; "
                             "wrap it as cs.Sequential([layer])")
    check_model_fits(model, data)


def _start(model, data: Data, out, training: Dict, *, epochs, lr, optimizer, momentum, nesterov, weight_decay,
           schedule, warmup_epochs, step_size, seed, dtype) -> _Run:
    """A new run: build the model, make the optimizer and the schedule."""
    options = ({"momentum": momentum, "nesterov": nesterov, "weight_decay": weight_decay}
               if optimizer == "sgd" else {"weight_decay": weight_decay} if weight_decay else {})
    base_lr = lr if lr is not None else default_lr(optimizer)
    sched = Schedule(schedule, base_lr, total_epochs=epochs, warmup_epochs=warmup_epochs,
                     step_size=step_size if step_size is not None else max(1, epochs // 3))
    if not model.built:
        model.build(data.input_shape, seed=seed, dtype=dtype)
    opt = make_optimizer(optimizer, model.parameters(), base_lr, **options)
    training.update(optimizer={"name": optimizer, "options": options}, schedule=sched.to_dict())
    return _Run(model=model, opt=opt, sched=sched, history=[], start_epoch=0, partial=None,
                training=training, data=data, out=out)


def _restore(model, data: Data, out: str, training: Dict, saved, *, epochs: int, val_fraction: float) -> _Run:
    """Continue ``out/last.npz``: weights, buffers, dropout generators, optimizer state, schedule,
    history and the mid-epoch position, with the settings the run was saved with."""
    try:
        meta, arrays = saved
        done = int(meta.get("epoch") or 0)
        partial = meta["training"].get("partial")
        if done >= epochs and not partial:
            raise ConvscopeError(f"{os.path.join(out, LAST)} already has {done} epochs; ask for more, e.g. "
                                 f"--epochs {done + 10}")
        if model.built and np.dtype(model.dtype).name != meta.get("dtype", "float32"):
            raise ConvscopeError("cannot resume: the model's dtype differs from the checkpoint's")
        if not model.built:  # the weights are replaced below; the seed only fills them first
            model.build(data.input_shape, seed=training["seed"], dtype=np.dtype(meta.get("dtype", "float32")))
        weights = {k: v for k, v in arrays.items() if not k.startswith(OPTIM_PREFIX)}
        try:
            model.load_state_dict(weights, strict=True)
        except ConvscopeError as error:
            raise ConvscopeError(f"cannot resume: {error}") from None
        restore_generator_states(model, meta.get("rng") or {})
        saved_training = meta["training"]
        seed, batch_size = int(saved_training["seed"]), int(saved_training["batch_size"])
        optim_info = saved_training["optimizer"]
        opt = make_optimizer(optim_info["name"], model.parameters(), meta["optimizer"]["hyper"]["lr"],
                             **optim_info["options"])
        saved_slots = {k[len(OPTIM_PREFIX):]: v for k, v in arrays.items() if k.startswith(OPTIM_PREFIX)}
        opt.load_state_dict(dict(meta["optimizer"], arrays=saved_slots))
        # A cosine schedule spans the run: asking for more epochs stretches the rest of the curve
        # to the new end (with the same total, as after Ctrl-C, the rates are unchanged).
        sched = Schedule.from_dict(dict(saved_training["schedule"], total_epochs=epochs))
        history = list(saved_training.get("history", []))
        training.update(seed=seed, batch_size=batch_size, optimizer=optim_info, schedule=sched.to_dict(),
                        val_fraction=saved_training.get("val_fraction", val_fraction))
        _best_so_far(history)  # every row must be readable now, not after an epoch of work
        if partial is not None:
            [float(partial[k]) for k in ("batch", "loss_sum", "correct", "seen", "seconds")]
    except ConvscopeError:  # already one clear sentence (and a ValueError, so caught first)
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
        raise ConvscopeError(f"cannot resume: the training record in {os.path.join(out, LAST)} is damaged "
                             f"({type(error).__name__}: {str(error)[:80]}); use --overwrite to start over "
                             "or another --out") from None
    return _Run(model=model, opt=opt, sched=sched, history=history, start_epoch=done, partial=partial,
                training=training, data=data, out=out, resumed=True)


def _save(run: _Run, arithmetic, kind: str, epoch_done: int, partial_state=None) -> None:
    """Write ``model.npz`` (kind BEST) or ``last.npz`` with the optimizer state (kind LAST)."""
    arithmetic.sync()
    info = dict(run.training, history=run.history, best_epoch=run.best_epoch, partial=partial_state)
    common = dict(preprocessing=run.data.preprocessing, class_names=run.data.class_names, epoch=epoch_done,
                  training=info)
    if kind == BEST:
        save_checkpoint(os.path.join(run.out, BEST), run.model, **common)
    else:
        save_checkpoint(os.path.join(run.out, LAST), run.model, optimizer=run.opt, **common)


def _run_epoch(run: _Run, arithmetic, epoch: int, x_val, reporter, interrupt):
    """One epoch of training steps from the batch where the run stands, then validation:
    (history row, samples trained, training seconds). Ctrl-C saves the mid-epoch position; a
    non-finite loss stops before the optimizer step."""
    y_train = run.data.train.y
    arithmetic.lr = run.sched.lr(epoch)
    batches = batch_indices(len(y_train), run.training["batch_size"], run.training["seed"], epoch)
    first, loss_sum, correct, seen, spent = 0, 0.0, 0, 0, 0.0
    if run.partial is not None:
        partial, run.partial = run.partial, None
        first, loss_sum = int(partial["batch"]), float(partial["loss_sum"])
        correct, seen = int(partial["correct"]), int(partial["seen"])
        spent = float(partial["seconds"])
    started = time.perf_counter()
    reporter.start_epoch(epoch + 1, len(batches))
    for b in range(first, len(batches)):
        if arithmetic.stop_requested(interrupt.raised):
            reporter.close()
            state = {"batch": b, "loss_sum": loss_sum, "correct": correct, "seen": seen,
                     "seconds": spent + time.perf_counter() - started}
            note = "nothing saved (no out folder)"
            if run.out is not None:
                if arithmetic.is_main:
                    _save(run, arithmetic, LAST, epoch, state)
                note = f"saved to {os.path.join(run.out, LAST)}; continue with --resume"
            stop = TrainingInterrupted(f"interrupted at epoch {epoch + 1}, batch {b + 1} of "
                                       f"{len(batches)}; {note}")
            stop.signum = interrupt.signum
            raise stop
        idx = batches[b]
        loss, hits = arithmetic.forward(idx, (run.training["seed"], epoch, b))
        if not math.isfinite(loss):
            reporter.close()
            raise TrainingDiverged(_diverged_message(loss, epoch, b, len(batches), arithmetic.lr, run.out,
                                                     run.history))
        arithmetic.step()
        loss_sum += loss * len(idx)
        correct += hits
        seen += len(idx)
        reporter.update(len(idx), loss_sum / seen, correct / seen)
    train_seconds = spent + time.perf_counter() - started
    val_loss, val_acc = arithmetic.evaluate(x_val, run.data.val.y)
    row = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
           "val_loss": val_loss, "val_accuracy": val_acc, "lr": arithmetic.lr,
           "seconds": round(spent + time.perf_counter() - started, 4)}
    return row, seen, train_seconds


def _end_epoch(run: _Run, arithmetic, row: Dict) -> None:
    """Record the epoch's row; save model.npz when it is the best so far, then last.npz and history."""
    run.history.append(row)
    score = _score(row)
    improved = run.best_score is None or score > run.best_score
    if improved:
        run.best_epoch, run.best_score = row["epoch"], score
    if run.out is not None and arithmetic.is_main:
        if improved:
            _save(run, arithmetic, BEST, row["epoch"])
        _save(run, arithmetic, LAST, row["epoch"])
        _write_json(os.path.join(run.out, HISTORY), run.history)


def _score(row: Dict):
    """What "best" means for model.npz: the highest validation accuracy; among equal accuracies
    (common with a small validation split) the lower validation loss. Training figures stand in
    when there is no validation split."""
    if row.get("val_accuracy") is not None:
        return (row["val_accuracy"], -row["val_loss"])
    return (row["train_accuracy"], -row["train_loss"])


def _best_so_far(history: List[Dict]):
    best_epoch, best_score = None, None
    for row in history:
        if best_score is None or _score(row) > best_score:
            best_epoch, best_score = row["epoch"], _score(row)
    return best_epoch, best_score


def _diverged_message(loss: float, epoch: int, batch: int, batches: int, lr: float, out, history) -> str:
    what = "NaN" if math.isnan(loss) else "infinite"
    if out is not None and history:
        kept = f"the last good checkpoint, {os.path.join(out, LAST)} (epoch {history[-1]['epoch']}), is kept"
    elif out is not None:
        kept = "no epoch had finished, so nothing was saved"
    else:
        kept = "the model keeps its last good weights"
    lower = lr / 10 if math.isfinite(lr) else 0.001  # a huge --lr can overflow in the schedule
    return (f"the loss became {what} at epoch {epoch + 1}, batch {batch + 1} of {batches}: the learning rate "
            f"{lr:g} is probably too high, try a lower one such as --lr {lower:g}; {kept}")
