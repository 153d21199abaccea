"""Learning-rate schedules, stepped once per epoch, as closed-form functions of the epoch.

Notation
--------
η₀ the base learning rate, e the epoch index (0 for the first epoch), and ``lr(e)`` the rate
used during epoch e. Equal to PyTorch's schedulers stepped once per epoch:

constant              lr(e) = η₀
step (StepLR)         lr(e) = η₀ · γ^⌊e / s⌋
cosine (CosineAnnealingLR, T = total epochs − warm-up epochs, η_min the floor)
                      lr(e) = η_min + (η₀ − η_min) · (1 + cos(π·min(e, T) / T)) / 2
                      (held at η_min after T, where PyTorch's would rise again)
warm-up (LinearLR from factor f₀ for w epochs, then the schedule above shifted by w, as
SequentialLR([LinearLR(f₀, 1, w), schedule], milestones=[w]))
                      lr(e) = η₀ · (f₀ + (1 − f₀)·e / w)      for e < w
                      lr(e) = schedule(e − w)                 for e ≥ w

Being functions of e (not of the previous rate), they resume exactly from a checkpoint.
"""
from __future__ import annotations

import math
from typing import Dict, Optional

from ..errors import ConvscopeError

SCHEDULES = ("constant", "step", "cosine")


class Schedule:
    """``lr(epoch)`` for a base rate; ``to_dict``/``from_dict`` for checkpoints."""

    def __init__(self, kind: str = "constant", base_lr: float = 0.001, step_size: int = 10,
                 gamma: float = 0.1, total_epochs: int = 10, eta_min: float = 0.0,
                 warmup_epochs: int = 0, warmup_factor: float = 0.1):
        if kind not in SCHEDULES:
            raise ConvscopeError(f"unknown schedule {kind!r}; choose one of {', '.join(SCHEDULES)}")
        if not (isinstance(base_lr, (int, float)) and math.isfinite(base_lr) and base_lr > 0):
            raise ConvscopeError(f"the learning rate must be greater than 0, got {base_lr!r}; try 0.001")
        if kind == "step" and (int(step_size) < 1 or not 0 < gamma <= 1):
            raise ConvscopeError(f"a step schedule needs step_size >= 1 and 0 < gamma <= 1, got "
                                 f"step_size={step_size}, gamma={gamma}")
        if int(warmup_epochs) < 0 or not 0 < warmup_factor <= 1:
            raise ConvscopeError(f"warm-up needs epochs >= 0 and a start factor in (0, 1], got "
                                 f"{warmup_epochs} epochs and factor {warmup_factor}")
        if kind == "cosine" and int(total_epochs) < 1:
            raise ConvscopeError(f"a cosine schedule needs total_epochs >= 1, got {total_epochs}")
        self.kind = kind
        self.base_lr = float(base_lr)
        self.step_size = int(step_size)
        self.gamma = float(gamma)
        self.total_epochs = int(total_epochs)
        self.eta_min = float(eta_min)
        self.warmup_epochs = int(warmup_epochs)
        self.warmup_factor = float(warmup_factor)

    def lr(self, epoch: int) -> float:
        """The learning rate for epoch ``epoch`` (0-based)."""
        w = self.warmup_epochs
        if epoch < w:
            return self.base_lr * (self.warmup_factor + (1.0 - self.warmup_factor) * epoch / w)
        e = epoch - w
        if self.kind == "step":
            return self.base_lr * self.gamma ** (e // self.step_size)
        if self.kind == "cosine":
            period = max(self.total_epochs - w, 1)
            e = min(e, period)
            return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * e / period)) / 2
        return self.base_lr

    def to_dict(self) -> Dict[str, object]:
        return {"kind": self.kind, "base_lr": self.base_lr, "step_size": self.step_size,
                "gamma": self.gamma, "total_epochs": self.total_epochs, "eta_min": self.eta_min,
                "warmup_epochs": self.warmup_epochs, "warmup_factor": self.warmup_factor}

    @classmethod
    def from_dict(cls, data: Optional[Dict[str, object]]) -> "Schedule":
        return cls(**(data or {}))

    def __repr__(self) -> str:
        return f"Schedule({self.kind!r}, base_lr={self.base_lr:g}, warmup_epochs={self.warmup_epochs})"


def change_note(old: "Schedule", new: "Schedule", next_epoch: int) -> Optional[str]:
    """One line saying how resuming with another total changes the rates from ``next_epoch``
    (0-based) on, or None when they are unchanged (same total, or a schedule that ignores it)."""
    if old.total_epochs == new.total_epochs:
        return None
    before, after = old.lr(next_epoch), new.lr(next_epoch)
    if before == after and old.lr(old.total_epochs - 1) == new.lr(old.total_epochs - 1):
        return None  # constant and step schedules do not depend on the total
    return (f"the {new.kind} schedule was planned for {old.total_epochs} epochs and now spans "
            f"{new.total_epochs}: the rate at epoch {next_epoch + 1} is {after:.4g} (it would have been "
            f"{before:.4g}) and reaches {new.lr(new.total_epochs - 1):.4g} at epoch {new.total_epochs}")
