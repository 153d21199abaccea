"""Optimizers: SGD (momentum, Nesterov, weight decay), Adam and AdamW, with torch.optim's
update rules step for step (tests compare them on identical parameters and gradients).

Notation
--------
θ a parameter, g its gradient (``Parameter.grad``), η the learning rate, λ the weight
decay, μ the momentum, τ the dampening, β₁ β₂ Adam's decay rates, ε its stabiliser,
t the step count (1 on the first step), b the momentum buffer, m and v Adam's moments.

SGD (``torch.optim.SGD``)
    g ← g + λθ
    b ← g on the first step, else μb + (1 − τ)g
    d ← g + μb (Nesterov) or b (plain momentum) or g (μ = 0)
    θ ← θ − ηd

Adam (``torch.optim.Adam``; λ is L2 added to the gradient)
    g ← g + λθ
    m ← β₁m + (1 − β₁)g,   v ← β₂v + (1 − β₂)g²,   (AMSGrad: v̂ ← max(v̂, v))
    θ ← θ − (η / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)

AdamW (``torch.optim.AdamW``; decoupled decay, default λ = 0.01)
    θ ← θ(1 − ηλ), then Adam's step without the L2 term.

State (buffers and step counts) is kept per parameter *name*, so it saves into a checkpoint
as plain arrays and loads back into a freshly built model.
"""
from __future__ import annotations

import math
from typing import Dict, Iterable, List

import numpy as np

from ..errors import ConvscopeError


def _positive(value, name: str, allow_zero: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConvscopeError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        bound = "0 or more" if allow_zero else "greater than 0"
        raise ConvscopeError(f"{name} must be {bound}, got {value!r}")
    return number


def _fraction(value, name: str) -> float:
    number = _positive(value, name, allow_zero=True)
    if number >= 1:
        raise ConvscopeError(f"{name} must be in [0, 1), got {value!r}")
    return number


class Optimizer:
    """Base: holds the parameters, the learning rate ``lr`` (a schedule may change it between
    steps) and per-parameter state arrays."""

    name = ""

    def __init__(self, parameters: Iterable, lr: float):
        self.params: List = list(parameters)
        if not self.params:
            raise ConvscopeError("the optimizer got no parameters; build the model first "
                                 "(model.build(shape))")
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ConvscopeError("the optimizer's parameters need distinct names; pass model.parameters()")
        self.lr = _positive(lr, "learning rate lr")
        self.state: Dict[str, Dict[str, np.ndarray]] = {}
        self.steps = 0

    def step(self) -> None:
        """Update every parameter in place from its ``grad``."""
        self.steps += 1
        for p in self.params:
            self._update(p, self.state.setdefault(p.name, {}))

    def _update(self, p, state: Dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def hyperparameters(self) -> Dict[str, object]:
        raise NotImplementedError

    # ----- saving -----------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, object]:
        """``{"type", "hyper", "steps", "arrays": {"<param>:<slot>": array}}`` (JSON + arrays)."""
        arrays = {f"{name}:{slot}": np.array(value, copy=True)
                  for name, slots in self.state.items() for slot, value in slots.items()}
        return {"type": self.name, "hyper": dict(self.hyperparameters(), lr=self.lr),
                "steps": self.steps, "arrays": arrays}

    def load_state_dict(self, state: Dict[str, object]) -> None:
        if state.get("type") != self.name:
            raise ConvscopeError(f"the saved optimizer is {state.get('type')!r}, this one is {self.name!r}; "
                                 f"resume with --optimizer {state.get('type')}")
        by_name = {p.name: p for p in self.params}
        restored: Dict[str, Dict[str, np.ndarray]] = {}
        for key, value in state["arrays"].items():
            name, _, slot = key.rpartition(":")
            if name not in by_name:
                raise ConvscopeError(f"the saved optimizer state has {name!r}, which this model lacks; "
                                     "it was saved for another model")
            value = np.asarray(value)
            if slot != "step" and value.shape != by_name[name].value.shape:
                raise ConvscopeError(f"the saved optimizer state for {name!r} has shape {value.shape}, "
                                     f"the model's parameter has {by_name[name].value.shape}")
            restored.setdefault(name, {})[slot] = value.copy()
        self.state = restored
        self.steps = int(state.get("steps", 0))
        self.lr = float(state["hyper"].get("lr", self.lr))


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum and L2 weight decay."""

    name = "sgd"

    def __init__(self, parameters, lr: float = 0.01, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(parameters, lr)
        self.momentum = _fraction(momentum, "momentum") if momentum else 0.0
        self.dampening = _fraction(dampening, "dampening") if dampening else 0.0
        self.weight_decay = _positive(weight_decay, "weight_decay", allow_zero=True)
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum == 0 or self.dampening != 0):
            raise ConvscopeError("Nesterov momentum needs momentum > 0 and dampening 0, got "
                                 f"momentum={momentum}, dampening={dampening}")

    def hyperparameters(self):
        return {"momentum": self.momentum, "dampening": self.dampening,
                "weight_decay": self.weight_decay, "nesterov": self.nesterov}

    def _update(self, p, state):
        g = p.grad
        if self.weight_decay:
            g = g + self.weight_decay * p.value
        if self.momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(g, dtype=p.value.dtype, copy=True)
            else:
                buf *= self.momentum
                buf += (1.0 - self.dampening) * g
            g = g + self.momentum * buf if self.nesterov else buf
        p.value -= self.lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) as torch.optim.Adam: bias-corrected moments, L2 weight decay."""

    name = "adam"
    decoupled = False

    def __init__(self, parameters, lr: float = 0.001, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False):
        super().__init__(parameters, lr)
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise ConvscopeError(f"betas must be two numbers (beta1, beta2), got {betas!r}") from None
        self.betas = (_fraction(b1, "beta1"), _fraction(b2, "beta2"))
        self.eps = _positive(eps, "eps", allow_zero=True)
        self.weight_decay = _positive(weight_decay, "weight_decay", allow_zero=True)
        self.amsgrad = bool(amsgrad)

    def hyperparameters(self):
        return {"betas": list(self.betas), "eps": self.eps, "weight_decay": self.weight_decay,
                "amsgrad": self.amsgrad}

    def _update(self, p, state):
        b1, b2 = self.betas
        g = p.grad
        if self.weight_decay:
            if self.decoupled:
                p.value *= 1.0 - self.lr * self.weight_decay
            else:
                g = g + self.weight_decay * p.value
        if "exp_avg" not in state:
            state["step"] = np.zeros((), dtype=np.int64)
            state["exp_avg"] = np.zeros_like(p.value)
            state["exp_avg_sq"] = np.zeros_like(p.value)
            if self.amsgrad:
                state["max_exp_avg_sq"] = np.zeros_like(p.value)
        state["step"] += 1
        t = int(state["step"])
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= b1
        m += (1.0 - b1) * g
        v *= b2
        v += (1.0 - b2) * g * g
        if self.amsgrad:
            np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        step_size = self.lr / (1.0 - b1 ** t)
        denom = np.sqrt(v) / math.sqrt(1.0 - b2 ** t) + self.eps
        p.value -= step_size * (m / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), as torch.optim.AdamW."""

    name = "adamw"
    decoupled = True

    def __init__(self, parameters, lr: float = 0.001, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01, amsgrad: bool = False):
        super().__init__(parameters, lr, betas, eps, weight_decay, amsgrad)


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


def make_optimizer(name: str, parameters, lr: float, **options) -> Optimizer:
    """An optimizer by name (``sgd``, ``adam``, ``adamw``); ``options`` are its keywords."""
    if name not in OPTIMIZERS:
        raise ConvscopeError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](parameters, lr=lr, **options)
