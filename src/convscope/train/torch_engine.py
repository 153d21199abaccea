"""``--engine torch``: the same training with PyTorch doing the arithmetic.

Only the arithmetic moves. The model goes to torch through :func:`convscope.interop.to_torch`
(same structure, state-dict names, weights and batch-norm buffers); the optimizer is made from
the convscope optimizer's own hyper-parameters (:func:`torch_optimizer`), and the learning rate
of every epoch is convscope's schedule value written into the param groups, so schedules
cannot drift. Everything else (data, splits, preprocessing, the epoch's batch order, progress,
checkpoints, Ctrl-C and NaN handling, --resume) is :func:`convscope.train.fit`'s.

Optimizer state converts both ways (:func:`state_to_torch`, :func:`state_from_torch`):

===========  ===========================================  ==========================
optimizer    convscope slot (checkpoint ``optimizer:<p>:``)  torch ``optimizer.state[p]``
===========  ===========================================  ==========================
SGD          ``momentum_buffer``                            ``momentum_buffer``
Adam, AdamW  ``step`` (int64), ``exp_avg``, ``exp_avg_sq``,  same names; ``step`` a 0-d
             ``max_exp_avg_sq`` (AMSGrad)                   float tensor
===========  ===========================================  ==========================

so a checkpoint written by either engine resumes on the other. Dropout masks come from
torch's generator, seeded from (seed, epoch, batch) so a resumed run draws the same masks;
they are not the masks convscope's engine draws.

Under torchrun (:mod:`.distributed`) the module is wrapped in DistributedDataParallel and each
rank trains on its shard of the global batch; only rank 0 writes and prints.
"""
from __future__ import annotations

import re
from typing import Dict, Optional

import numpy as np

from ..errors import ConvscopeError
from . import distributed as dist_mod

#: convscope optimizer name -> torch.optim class name
TORCH_OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}


def require_torch():
    from ..interop.optional import require
    return require("torch", "--engine torch")


def resolve_device(torch, device: Optional[str], world=None) -> str:
    """'cpu', 'cuda' or 'cuda:N' checked against this machine; None = cuda when available.
    Under torchrun, CUDA means cuda:LOCAL_RANK (one GPU per process)."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    match = re.fullmatch(r"(cpu|cuda)(?::(\d+))?", str(device))
    if not match or (match.group(1) == "cpu" and match.group(2) is not None):
        raise ConvscopeError(f"--device must be cpu, cuda or cuda:N, got {device!r}")
    if match.group(1) == "cpu":
        return "cpu"
    if not torch.cuda.is_available():
        raise ConvscopeError(f"--device {device}: CUDA is not available on this machine (torch "
                             f"{torch.__version__}, torch.cuda.is_available() is False); use --device cpu")
    count = torch.cuda.device_count()
    if world is not None:
        if match.group(2) is not None:
            raise ConvscopeError(f"--device {device}: under torchrun each process uses cuda:LOCAL_RANK; "
                                 "give --device cuda")
        index = world.local_rank
    else:
        index = int(match.group(2) or 0)
    if index >= count:
        raise ConvscopeError(f"--device {device}: this machine has {count} CUDA device(s) (cuda:0 to "
                             f"cuda:{count - 1})" + (f" but LOCAL_RANK is {index}" if world is not None else ""))
    return f"cuda:{index}"


class TorchFactory:
    """Checks torch, the device and the world before anything is written; ``make`` then joins
    the process group (under torchrun) and returns the engine."""

    def __init__(self, device: Optional[str], batch_size: int):
        self.torch = require_torch()
        self.world = dist_mod.detect()
        self.device = resolve_device(self.torch, device, self.world)
        self.check_batch(batch_size)

    def check_batch(self, batch_size: int) -> None:
        dist_mod.check_batch(batch_size, self.world)

    def make(self, model, opt, x_train, y_train):
        if self.world is not None:
            dist_mod.init(self.torch, self.world, self.device.split(":")[0])
        return TorchEngine(self.torch, model, opt, x_train, y_train, self.device, self.world)


def torch_optimizer(torch, opt, params):
    """The torch.optim optimizer with ``opt``'s hyper-parameters (single-tensor code path,
    whose arithmetic is the one convscope's optimizers follow)."""
    cls = getattr(torch.optim, TORCH_OPTIMIZERS[opt.name])
    if opt.name == "sgd":
        return cls(params, lr=opt.lr, momentum=opt.momentum, dampening=opt.dampening,
                   weight_decay=opt.weight_decay, nesterov=opt.nesterov, foreach=False)
    return cls(params, lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps, weight_decay=opt.weight_decay,
               amsgrad=opt.amsgrad, foreach=False)


def state_to_torch(torch, opt, torch_opt, params: Dict[str, object]) -> None:
    """Copy convscope optimizer state (per parameter name) into ``torch_opt.state``."""
    scalar = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
    torch_opt.state.clear()
    for name, slots in opt.state.items():
        param = params[name]
        state = {}
        for slot, value in slots.items():
            if slot == "step":
                state[slot] = torch.tensor(float(value), dtype=scalar)
            else:
                state[slot] = torch.from_numpy(np.array(value, copy=True)).to(param.device, param.dtype)
        torch_opt.state[param] = state


def state_from_torch(opt, torch_opt, params: Dict[str, object]) -> None:
    """Copy ``torch_opt.state`` back into the convscope optimizer (arrays, int64 step counts)."""
    restored: Dict[str, Dict[str, np.ndarray]] = {}
    for name, param in params.items():
        state = torch_opt.state.get(param)
        if not state:
            continue
        slots = {}
        for slot, value in state.items():
            if value is None:
                continue
            if slot == "step":
                slots[slot] = np.array(int(float(value)), dtype=np.int64)
            else:
                slots[slot] = value.detach().cpu().numpy().copy()
        restored[name] = slots
    opt.state = restored


def _draws_random(layer) -> bool:
    """Whether any layer declares a random training forward (dropout, stochastic depth)."""
    if getattr(layer, "random_in_training", False):
        return True
    return any(_draws_random(child) for _, child in layer.children())


class TorchEngine:
    """See the module docstring; the interface is :mod:`convscope.train.engine`'s."""

    def __init__(self, torch, model, opt, x_train: np.ndarray, y_train: np.ndarray, device: str, world=None):
        from ..interop import to_torch

        self.torch, self.model, self.optimizer, self.device, self.world = torch, model, opt, device, world
        self.name = f"torch on {device}" + (f", {world.size} processes" if world else "")
        self.is_main = world is None or world.is_main
        self.module = to_torch(model).to(device)
        by_name = dict(self.module.named_parameters())
        self.params = {p.name: by_name[p.name] for p in opt.params}
        self.torch_opt = torch_optimizer(torch, opt, list(self.params.values()))
        state_to_torch(torch, opt, self.torch_opt, self.params)
        self.x_train = torch.from_numpy(x_train).to(device)
        self.y_train = torch.from_numpy(np.asarray(y_train, dtype=np.int64)).to(device)
        self.has_dropout = _draws_random(model) or any(isinstance(m, torch.nn.modules.dropout._DropoutNd)
                                                       for m in self.module.modules())
        self.net = self.module
        if world is not None:
            if device.startswith("cuda"):  # batch statistics over the global batch, as on one process
                self.module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.module)
            parallel = torch.nn.parallel.DistributedDataParallel
            self.net = parallel(self.module, device_ids=[device] if device.startswith("cuda") else None)
        self._loss = None
        self._eval_cache = {}
        self.module.train()

    @property
    def lr(self) -> float:
        return self.optimizer.lr

    @lr.setter
    def lr(self, value: float) -> None:
        self.optimizer.lr = value  # saved with the checkpoint
        for group in self.torch_opt.param_groups:
            group["lr"] = value

    def forward(self, idx: np.ndarray, position=(0, 0, 0)):
        """Mean loss and correct count of the global batch ``idx`` (summed over the ranks);
        ``position`` = (seed, epoch, batch) seeds torch's generator when a layer draws random
        numbers in training (dropout, stochastic depth), so a resumed run draws the same."""
        torch = self.torch
        F = torch.nn.functional
        if self.has_dropout:
            torch.manual_seed(int(np.random.SeedSequence([int(v) for v in position]).generate_state(1)[0]))
        local = torch.from_numpy(dist_mod.shard(idx, self.world)).to(self.device)
        try:
            logits = self.net(self.x_train[local])
            loss_sum = F.cross_entropy(logits, self.y_train[local], reduction="sum")
            hits = (logits.argmax(dim=1) == self.y_train[local]).sum()
            total, correct = float(loss_sum.detach()), int(hits)
            if self.world is not None:
                total, correct = dist_mod.all_sum(torch, [total, float(correct)], self.device)
                correct = int(round(correct))
        except RuntimeError as error:
            raise self._lost(error) from None
        scale = (self.world.size if self.world is not None else 1) / len(idx)
        self._loss = loss_sum * scale
        return total / len(idx), correct

    def step(self) -> None:
        try:
            self.torch_opt.zero_grad(set_to_none=True)
            self._loss.backward()
            self.torch_opt.step()
        except RuntimeError as error:
            raise self._lost(error) from None
        self._loss = None
        self.optimizer.steps += 1

    def _lost(self, error: RuntimeError):
        """One line instead of PyTorch's traceback: a lost peer under torchrun, else the failure
        itself (e.g. CUDA out of memory)."""
        if self.world is None:
            return ConvscopeError(f"PyTorch failed during a training step on {self.device}: "
                                  f"{dist_mod._first_line(error)}")
        return dist_mod.lost(dist_mod._first_line(error))

    def stop_requested(self, flag: bool) -> bool:
        """Ctrl-C reaches the processes at slightly different moments; they agree (one
        all_reduce) so that every rank stops before the same batch."""
        if self.world is None:
            return flag
        try:
            return dist_mod.all_sum(self.torch, [float(flag)], self.device)[0] > 0
        except RuntimeError as error:
            raise self._lost(error) from None

    def evaluate(self, x: np.ndarray, y: np.ndarray):
        """(mean cross-entropy, accuracy) in inference mode; every rank evaluates the whole split
        (the replicas are equal), so no communication is needed."""
        torch = self.torch
        if len(y) == 0:
            return None, None
        key = id(x)
        if key not in self._eval_cache:
            self._eval_cache = {key: (torch.from_numpy(x).to(self.device),
                                      torch.from_numpy(np.asarray(y, dtype=np.int64)).to(self.device))}
        tx, ty = self._eval_cache[key]
        total, correct = 0.0, 0
        self.module.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(y), 256):
                    z = self.module(tx[start:start + 256])
                    target = ty[start:start + 256]
                    total += float(torch.nn.functional.cross_entropy(z, target, reduction="sum"))
                    correct += int((z.argmax(dim=1) == target).sum())
        finally:
            self.module.train()
        return total / len(y), correct / len(y)

    def sync(self) -> None:
        """Weights, buffers and optimizer state back into the convscope model and optimizer."""
        state = {name: value.detach().cpu().numpy() for name, value in self.module.state_dict().items()}
        self.model.load_state_dict(state, strict=True)
        state_from_torch(self.optimizer, self.torch_opt, self.params)

    def close(self) -> None:
        if self.world is not None:
            dist_mod.close(self.torch)
