"""Optimizers and schedules against torch.optim, step for step, in float64 (oracle: PyTorch,
tolerance 1e-9 relative + absolute)."""
import math

import numpy as np
import pytest
import torch

from convscope import ConvscopeError
from convscope.layers.base import Parameter
from convscope.train.optim import SGD, Adam, AdamW, make_optimizer
from convscope.train.schedules import Schedule

TOL = 1e-9
SHAPES = {"0.weight": (4, 3, 3, 3), "0.bias": (4,), "3.weight": (5, 7)}


def _run_both(make_ours, make_torch, steps=7, seed=0, lr_changes=None):
    rng = np.random.default_rng(seed)
    ours = [Parameter(name, rng.standard_normal(shape)) for name, shape in SHAPES.items()]
    theirs = [torch.nn.Parameter(torch.tensor(p.value.copy())) for p in ours]
    opt, topt = make_ours(ours), make_torch(theirs)
    for step in range(steps):
        if lr_changes and step in lr_changes:  # a schedule changing lr between steps
            opt.lr = lr_changes[step]
            for group in topt.param_groups:
                group["lr"] = lr_changes[step]
        for p, t in zip(ours, theirs):
            g = rng.standard_normal(p.shape)
            p.grad[...] = g
            t.grad = torch.tensor(g)
        opt.step()
        topt.step()
        for p, t in zip(ours, theirs):
            np.testing.assert_allclose(p.value, t.detach().numpy(), rtol=TOL, atol=TOL,
                                       err_msg=f"{p.name} after step {step + 1}")
    return opt, ours


@pytest.mark.parametrize("kwargs", [
    {},
    {"momentum": 0.9},
    {"momentum": 0.9, "dampening": 0.1},
    {"momentum": 0.9, "nesterov": True},
    {"momentum": 0.8, "weight_decay": 0.01},
    {"momentum": 0.9, "nesterov": True, "weight_decay": 0.05},
    {"weight_decay": 0.1},
])
def test_sgd_matches_torch(kwargs):
    _run_both(lambda p: SGD(p, lr=0.05, **kwargs), lambda p: torch.optim.SGD(p, lr=0.05, **kwargs),
              lr_changes={4: 0.01})


@pytest.mark.parametrize("kwargs", [
    {},
    {"betas": (0.8, 0.99), "eps": 1e-6},
    {"weight_decay": 0.05},
    {"amsgrad": True},
])
def test_adam_matches_torch(kwargs):
    _run_both(lambda p: Adam(p, lr=0.01, **kwargs), lambda p: torch.optim.Adam(p, lr=0.01, **kwargs),
              lr_changes={3: 0.002})


@pytest.mark.parametrize("kwargs", [{}, {"weight_decay": 0.1}, {"weight_decay": 0.1, "amsgrad": True}])
def test_adamw_matches_torch(kwargs):
    # AdamW's default weight decay (0.01) is torch's too, so {} compares decoupled decay as well.
    _run_both(lambda p: AdamW(p, lr=0.01, **kwargs), lambda p: torch.optim.AdamW(p, lr=0.01, **kwargs))


def test_state_dict_round_trip_continues_identically():
    """Saving after 4 steps and loading into a fresh optimizer gives the same next 3 steps."""
    rng = np.random.default_rng(1)
    grads = [[rng.standard_normal(s) for s in SHAPES.values()] for _ in range(7)]
    start = [rng.standard_normal(s) for s in SHAPES.values()]

    def params():
        return [Parameter(n, v.copy()) for n, v in zip(SHAPES, start)]

    def run(opt, ps, steps):
        for g in steps:
            for p, gi in zip(ps, g):
                p.grad[...] = gi
            opt.step()

    a = params()
    opt_a = Adam(a, lr=0.01, amsgrad=True)
    run(opt_a, a, grads)
    b = params()
    opt_b = Adam(b, lr=0.01, amsgrad=True)
    run(opt_b, b, grads[:4])
    saved = opt_b.state_dict()
    c = [Parameter(p.name, p.value.copy()) for p in b]
    opt_c = Adam(c, lr=0.5, amsgrad=True)
    opt_c.load_state_dict(saved)
    run(opt_c, c, grads[4:])
    for x, y in zip(a, c):
        np.testing.assert_array_equal(x.value, y.value)  # bit-exact: same arithmetic in the same order


def test_load_state_of_another_optimizer_or_model_is_refused():
    ps = [Parameter("w", np.zeros(3))]
    sgd = SGD(ps, lr=0.1, momentum=0.9)
    ps[0].grad[...] = 1.0
    sgd.step()
    with pytest.raises(ConvscopeError, match="saved optimizer is 'sgd'"):
        Adam(ps).load_state_dict(sgd.state_dict())
    other = SGD([Parameter("v", np.zeros(3))], lr=0.1, momentum=0.9)
    with pytest.raises(ConvscopeError, match="another model"):
        other.load_state_dict(sgd.state_dict())


@pytest.mark.parametrize("bad", [0, -0.1, float("nan"), float("inf"), "fast"])
def test_bad_learning_rate_is_one_clear_error(bad):
    with pytest.raises(ConvscopeError, match="learning rate"):
        SGD([Parameter("w", np.zeros(2))], lr=bad)


def test_nesterov_needs_momentum_and_unknown_optimizer():
    with pytest.raises(ConvscopeError, match="Nesterov"):
        SGD([Parameter("w", np.zeros(2))], lr=0.1, nesterov=True)
    with pytest.raises(ConvscopeError, match="unknown optimizer 'adagrad'"):
        make_optimizer("adagrad", [Parameter("w", np.zeros(2))], 0.1)


# ----- schedules vs torch.optim.lr_scheduler (stepped once per epoch) ------------------------
def _torch_lrs(make_scheduler, epochs, base_lr=0.1):
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=base_lr)
    sched = make_scheduler(opt)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def _ours(schedule, epochs):
    return [schedule.lr(e) for e in range(epochs)]


def test_step_schedule_matches_steplr():
    expected = _torch_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5), 10)
    np.testing.assert_allclose(_ours(Schedule("step", 0.1, step_size=3, gamma=0.5), 10), expected,
                               rtol=TOL, atol=TOL)


def test_cosine_schedule_matches_cosineannealinglr():
    expected = _torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=12, eta_min=0.001), 12)
    np.testing.assert_allclose(_ours(Schedule("cosine", 0.1, total_epochs=12, eta_min=0.001), 12), expected,
                               rtol=TOL, atol=TOL)


def test_warmup_then_cosine_matches_sequentiallr():
    def make(o):
        warm = torch.optim.lr_scheduler.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=3)
        cos = torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=7)
        return torch.optim.lr_scheduler.SequentialLR(o, [warm, cos], milestones=[3])

    expected = _torch_lrs(make, 10)
    ours = _ours(Schedule("cosine", 0.1, total_epochs=10, warmup_epochs=3, warmup_factor=0.25), 10)
    np.testing.assert_allclose(ours, expected, rtol=TOL, atol=TOL)


def test_warmup_then_step_matches_sequentiallr():
    def make(o):
        warm = torch.optim.lr_scheduler.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=2)
        step = torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.3)
        return torch.optim.lr_scheduler.SequentialLR(o, [warm, step], milestones=[2])

    expected = _torch_lrs(make, 9)
    ours = _ours(Schedule("step", 0.1, step_size=2, gamma=0.3, warmup_epochs=2, warmup_factor=0.1), 9)
    np.testing.assert_allclose(ours, expected, rtol=TOL, atol=TOL)


def test_schedule_round_trips_through_a_dict_and_checks_arguments():
    s = Schedule("cosine", 0.02, total_epochs=9, warmup_epochs=2)
    assert _ours(Schedule.from_dict(s.to_dict()), 9) == _ours(s, 9)
    assert Schedule("constant", 0.02).lr(50) == 0.02
    with pytest.raises(ConvscopeError, match="unknown schedule 'linear'"):
        Schedule("linear", 0.1)
    with pytest.raises(ConvscopeError, match="greater than 0"):
        Schedule("constant", -1.0)
    assert math.isclose(s.lr(0), 0.002)  # warm-up starts at factor 0.1 of 0.02
