"""The arithmetic of one training run, behind one small interface shared by both engines.

:func:`convscope.train.fit` does everything else (checks, restore, data order, schedules,
progress, checkpoints, Ctrl-C and NaN handling) and asks an engine only to

* ``forward(idx, position) -> (loss, correct)``: forward pass in training mode on the training
  samples ``idx`` (one batch of the epoch's global order; ``position`` = (seed, epoch, batch)
  for engines that seed per step), the batch's mean cross-entropy
  ``L = mean_n −log softmax(z_n)[t_n]`` and the number of correct predictions,
* ``step()``: backward pass of that loss and one optimizer step (called only when the loss
  was finite, so a NaN never reaches the weights),
* ``lr``: the learning rate the next steps use (the trainer sets it from its schedule),
* ``evaluate(x, y) -> (loss, accuracy)`` in inference mode,
* ``stop_requested(flag) -> bool``: whether to stop before the next batch, given this
  process's Ctrl-C flag (under torchrun: whether any process was interrupted, so that all
  stop at the same batch),
* ``sync()``: bring the convscope ``model`` and ``optimizer`` up to date (weights, buffers,
  optimizer state) before they are saved or returned.

:class:`NumpyEngine` is convscope's own; :class:`convscope.train.torch_engine.TorchEngine`
runs the same steps with PyTorch (optionally under DistributedDataParallel).
"""
from __future__ import annotations

import numpy as np


class NumpyEngine:
    """convscope's engine: the model's own forward/backward and the convscope optimizer."""

    name = "convscope"
    is_main = True  # the process that prints and writes files (always, on one process)

    def __init__(self, model, optimizer, x_train: np.ndarray, y_train: np.ndarray):
        self.model, self.optimizer = model, optimizer
        self.x_train, self.y_train = x_train, y_train
        self._dlogits = None

    @property
    def lr(self) -> float:
        return self.optimizer.lr

    @lr.setter
    def lr(self, value: float) -> None:
        self.optimizer.lr = value

    def forward(self, idx: np.ndarray, position=None):
        from ..ops import losses  # looked up per call: tests poison it to provoke a NaN

        logits = self.model.forward(self.x_train[idx], train=True)
        loss, self._dlogits = losses.softmax_cross_entropy(logits, self.y_train[idx])
        return loss, int(np.sum(logits.argmax(axis=1) == self.y_train[idx]))

    def step(self) -> None:
        self.model.backward(self._dlogits, input_grad=False)  # the data needs no gradient
        self.optimizer.step()
        self._dlogits = None

    def evaluate(self, x: np.ndarray, y: np.ndarray):
        from .trainer import evaluate_arrays

        loss, accuracy, _ = evaluate_arrays(self.model, x, y)
        return loss, accuracy

    def stop_requested(self, flag: bool) -> bool:
        return flag

    def sync(self) -> None:
        """Nothing to do: the model and optimizer are the ones computing."""

    def close(self) -> None:
        """Nothing to release."""
