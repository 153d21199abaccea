"""Training: data sets, optimizers, schedules, the fit loop, metrics and checkpoints.

>>> import convscope as cs
>>> result = cs.train.fit(None, "digits", epochs=20, out="runs/digits")    # doctest: +SKIP
>>> ckpt = cs.train.load_checkpoint("runs/digits/model.npz")               # doctest: +SKIP
>>> ckpt.model, ckpt.input_shape, ckpt.preprocessing, ckpt.class_names     # doctest: +SKIP

Modules: :mod:`.data` (loaders, splits, batching), :mod:`.preprocessing` (raw image -> model
input), :mod:`.optim` (SGD, Adam, AdamW), :mod:`.schedules`, :mod:`.trainer` (``fit``),
:mod:`.checkpoint`, :mod:`.metrics`, :mod:`.progress`; the arithmetic of a run sits behind
:mod:`.engine` (convscope's own) or :mod:`.torch_engine` (``fit(..., engine="torch")``, PyTorch,
with :mod:`.distributed` under torchrun).
"""
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .data import Data, Dataset, batch_indices, from_arrays, load_data
from .metrics import accuracy, confusion_matrix
from .optim import SGD, Adam, AdamW, make_optimizer
from .schedules import Schedule
from .trainer import (FitResult, TrainingDiverged, TrainingInterrupted, default_model, default_spec,
                      evaluate_arrays, fit)

__all__ = ["Checkpoint", "load_checkpoint", "save_checkpoint", "Data", "Dataset", "batch_indices",
           "from_arrays", "load_data", "accuracy", "confusion_matrix", "SGD", "Adam", "AdamW",
           "make_optimizer", "Schedule", "FitResult", "TrainingDiverged", "TrainingInterrupted",
           "default_model", "default_spec", "evaluate_arrays", "fit"]
