"""When a run has diverged: the one rule both engines' epochs go through (trainer._end_epoch).

After each epoch the history so far is checked; a run has diverged when

* the training loss is NaN or infinite (a non-finite batch loss is stopped even earlier, before
  the optimizer step, by the trainer), or
* the epoch's training loss exceeds ``LOSS_GROWTH`` (10) times the first epoch's, or times
  ln K, the loss of a uniform guess over K classes where an untrained classifier starts, when
  that is lower (so a first epoch that already blew up, e.g. 48,441,115 against ln 10 = 2.30,
  is caught at once), or
* the accuracy (validation, or training without a validation split) has stayed at chance,
  at most ``1/K + CHANCE_MARGIN`` (K classes; 15 % for 10 classes), for the last
  ``CHANCE_EPOCHS`` (5) epochs in a row.

The likely cause named is the learning rate, with a tenth of it as the value to try.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional

LOSS_GROWTH = 10.0
CHANCE_EPOCHS = 5
CHANCE_MARGIN = 0.05

RULE = (f"training stops when the loss is not finite, grows past {LOSS_GROWTH:g}x the first epoch's, "
        f"(or ln(classes), the loss of a uniform guess, if lower), or accuracy stays at chance (1/classes + {round(100 * CHANCE_MARGIN)} points) for "
        f"{CHANCE_EPOCHS} epochs")


def _accuracy(row: Dict) -> Optional[float]:
    value = row.get("val_accuracy")
    return row.get("train_accuracy") if value is None else value


def symptom(history: List[Dict], num_classes: int) -> Optional[str]:
    """What is wrong with the run whose rows are ``history`` (None: nothing)."""
    if not history:
        return None
    row = history[-1]
    loss, first = row.get("train_loss"), history[0].get("train_loss")
    if loss is not None and not math.isfinite(loss):
        return f"the training loss is {loss} at epoch {row['epoch']}"
    if loss is not None and first is not None and math.isfinite(first):
        uniform = math.log(num_classes) if num_classes >= 2 else math.inf
        if len(history) > 1 and first <= uniform and loss > LOSS_GROWTH * first:
            return (f"the training loss grew to {loss:,.4g} at epoch {row['epoch']}, more than "
                    f"{LOSS_GROWTH:g}x epoch {history[0]['epoch']}'s {first:,.4g}")
        if loss > LOSS_GROWTH * min(first, uniform):
            return (f"the training loss is {loss:,.4g} at epoch {row['epoch']}, more than {LOSS_GROWTH:g}x "
                    f"the {uniform:.3g} of a uniform guess over {num_classes} classes")
    if num_classes >= 2 and len(history) >= CHANCE_EPOCHS:
        chance = 1.0 / num_classes
        recent = [_accuracy(r) for r in history[-CHANCE_EPOCHS:]]
        if all(a is not None and a <= chance + CHANCE_MARGIN for a in recent):
            return (f"the accuracy has stayed at chance ({100 * chance:.3g} % for {num_classes} classes) for "
                    f"{CHANCE_EPOCHS} epochs (now {100 * recent[-1]:.3g} %)")
    return None


def message(what: str, lr: float, kept: str) -> str:
    """The one line printed when a run stops (or, with --keep-going, goes on) after ``what``."""
    lower = lr / 10 if math.isfinite(lr) else 0.001
    return (f"training diverged: {what}; the learning rate {lr:g} is probably too high, try --lr {lower:g}; "
            f"{kept}")
