"""cs.Sequential, cs.Concat and cs.Residual against equivalent torch modules (float64, 1e-9):
forward, dL/dx, every parameter gradient and the running statistics, with state-dict names
equal to PyTorch's for the same structure; plus state-dict round trips, load errors, the
backward-before-forward error and spec round trips."""
import json

import numpy as np
import pytest
import torch
from torch import nn

import convscope as cs
from convscope.errors import ConvscopeError
from convscope.layers import BatchNorm1d, BatchNorm2d, LocalResponseNorm

TOL = 1e-9


class TorchConcat(nn.Module):
    """torch twin of cs.Concat: ``branches`` is a ModuleList of Sequentials, joined on dim 1."""

    def __init__(self, *branches):
        super().__init__()
        self.branches = nn.ModuleList(nn.Sequential(*b) for b in branches)

    def forward(self, x):
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class TorchResidual(nn.Module):
    """torch twin of cs.Residual: ``body(x) + shortcut(x)``, or ``body(x) + x`` without one."""

    def __init__(self, body, shortcut=None):
        super().__init__()
        self.body = nn.Sequential(*body)
        self.shortcut = nn.Sequential(*shortcut) if shortcut else None

    def forward(self, x):
        return self.body(x) + (self.shortcut(x) if self.shortcut is not None else x)


def _randomise(model, seed):
    """Every float parameter and running statistic to random values (γ and running_var
    positive), so a swapped or mis-routed array shows up."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, value in model.state_dict().items():
        if value.dtype == np.int64:
            state[name] = value
        elif name.endswith(("running_var", "weight")) and value.ndim == 1:
            state[name] = rng.uniform(0.5, 1.5, value.shape)
        else:
            state[name] = rng.standard_normal(value.shape) * 0.5
    model.load_state_dict(state)


def _torch_state(model):
    return {k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()}


def _assert_same_state(model, module):
    ours, theirs = model.state_dict(), module.state_dict()
    assert list(ours) == list(theirs)  # equal names, equal order
    for name, value in ours.items():
        assert value.dtype == theirs[name].numpy().dtype, name
        np.testing.assert_allclose(value, theirs[name].numpy(), rtol=TOL, atol=TOL, err_msg=name)


def _step(model, module, x, train, rng):
    """One forward and backward in both; compares y, dL/dx and every parameter gradient."""
    module.train(train)
    y = model.forward(x, train=train)
    tx = torch.tensor(x, requires_grad=True)
    ty = module(tx)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=TOL, atol=TOL, err_msg="forward")
    dy = rng.standard_normal(y.shape)
    dy_copy = dy.copy()
    dx = model.backward(dy)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_array_equal(dy, dy_copy)  # backward must not write into the caller's dy
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=TOL, atol=TOL, err_msg="dL/dx")
    theirs = dict(module.named_parameters())
    ours = dict(model.named_parameters())
    assert list(ours) == list(theirs)
    for name, p in ours.items():
        np.testing.assert_allclose(p.grad, theirs[name].grad.numpy(), rtol=TOL, atol=TOL, err_msg=f"d{name}")
        theirs[name].grad = None
    return y


def assert_model_matches_torch(model, module, input_shape, batch=3, seed=0, train_steps=2):
    """Build ``model`` in float64 with random state, copy it into ``module``, then run
    ``train_steps`` training steps and one eval step, comparing everything after each."""
    model.build(input_shape, seed=seed, dtype=np.float64)
    _randomise(model, seed)
    module = module.double()
    module.load_state_dict(_torch_state(model), strict=True)
    rng = np.random.default_rng(seed + 1)
    for _ in range(train_steps):
        _step(model, module, rng.standard_normal((batch,) + tuple(input_shape)) * 1.5 + 0.3, True, rng)
        _assert_same_state(model, module)
    _step(model, module, rng.standard_normal((batch,) + tuple(input_shape)), False, rng)
    _assert_same_state(model, module)


# ----- models from the normalisation layers ---------------------------------------------------

def _norm_model():
    """Sequential[BN, Concat[[BN, LRN], [LRN]], Residual(body=[BN], shortcut=[LRN, BN]),
    Residual(body=[LRN, BN]) (identity shortcut), Sequential[BN]] on (2, 3, 3):
    channels 2 → 4 → 4 → 4 → 4."""
    ours = cs.Sequential([
        BatchNorm2d(),
        cs.Concat([[BatchNorm2d(), LocalResponseNorm(3, alpha=0.5)], [LocalResponseNorm(2, alpha=0.3, k=2.0)]]),
        cs.Residual([BatchNorm2d()], shortcut=[LocalResponseNorm(4, alpha=0.2), BatchNorm2d()]),
        cs.Residual([LocalResponseNorm(5, alpha=0.5, beta=0.5), BatchNorm2d()]),
        cs.Sequential([BatchNorm2d(momentum=None)]),
    ])
    theirs = nn.Sequential(
        nn.BatchNorm2d(2),
        TorchConcat([nn.BatchNorm2d(2), nn.LocalResponseNorm(3, alpha=0.5)], [nn.LocalResponseNorm(2, alpha=0.3, k=2.0)]),
        TorchResidual([nn.BatchNorm2d(4)], shortcut=[nn.LocalResponseNorm(4, alpha=0.2), nn.BatchNorm2d(4)]),
        TorchResidual([nn.LocalResponseNorm(5, alpha=0.5, beta=0.5), nn.BatchNorm2d(4)]),
        nn.Sequential(nn.BatchNorm2d(4, momentum=None)),
    )
    return ours, theirs


def test_nested_norm_model_matches_torch():
    ours, theirs = _norm_model()
    assert_model_matches_torch(ours, theirs, (2, 3, 3))


def test_nested_names_follow_pytorch():
    ours, theirs = _norm_model()
    ours.build((2, 3, 3))
    names = [p.name for p in ours.parameters()]
    assert names == [name for name, _ in theirs.named_parameters()]
    assert "1.branches.0.0.weight" in names
    assert "2.body.0.bias" in names and "2.shortcut.1.weight" in names and "3.body.1.bias" in names
    assert "4.0.weight" in names
    assert "2.shortcut.1.num_batches_tracked" in ours.state_dict()
    # Parameters are γ and β of the six batch norms: 2·(2 + 2 + 4 + 4 + 4 + 4) = 40 values.
    assert sum(p.size for p in ours.parameters()) == 40


def test_whole_container_gradcheck_in_train_and_eval():
    for train in (True, False):
        ours, _ = _norm_model()
        ours.build((2, 3, 3), dtype=np.float64)
        _randomise(ours, 3)
        report = cs.gradcheck(ours, np.random.default_rng(4).standard_normal((3, 2, 3, 3)), train=train)
        assert len(report) == 1 + 12  # dL/dx plus γ and β of six batch norms
        assert max(report.values()) < 1e-6


def test_has_train_mode_propagates_from_nested_layers():
    ours, _ = _norm_model()
    assert ours.has_train_mode
    assert not cs.Sequential([cs.Concat([[LocalResponseNorm(3)]]), cs.Residual([LocalResponseNorm(2)])]).has_train_mode
    assert cs.Residual([LocalResponseNorm(2)], shortcut=[BatchNorm2d()]).has_train_mode


def test_state_dict_round_trip():
    a, _ = _norm_model()
    a.build((2, 3, 3), dtype=np.float64)
    _randomise(a, 5)
    a.forward(np.random.default_rng(6).standard_normal((4, 2, 3, 3)), train=True)  # moves buffers too
    state = a.state_dict()
    b, _ = _norm_model()
    b.build((2, 3, 3), dtype=np.float64)
    b.load_state_dict(state)
    for name, value in b.state_dict().items():
        np.testing.assert_array_equal(value, state[name], err_msg=name)
        assert value.dtype == state[name].dtype
    x = np.random.default_rng(7).standard_normal((2, 2, 3, 3))
    np.testing.assert_array_equal(a.forward(x), b.forward(x))  # eval: identical arithmetic
    state["0.weight"][...] = 99.0  # state_dict hands out copies, not the live arrays
    assert not np.any(a.state_dict()["0.weight"] == 99.0)


def test_load_state_dict_errors():
    model, _ = _norm_model()
    model.build((2, 3, 3))
    state = model.state_dict()
    missing = {k: v for k, v in state.items() if k != "1.branches.0.0.weight"}
    with pytest.raises(ConvscopeError, match=r"missing 1\.branches\.0\.0\.weight"):
        model.load_state_dict(missing)
    with pytest.raises(ConvscopeError, match=r"unexpected 9\.weight"):
        model.load_state_dict({**state, "9.weight": np.ones(2)})
    with pytest.raises(ConvscopeError, match=r"'2\.body\.0\.bias' has shape \(3,\), the model expects \(4,\)"):
        model.load_state_dict({**state, "2.body.0.bias": np.ones(3)})
    with pytest.raises(ConvscopeError, match=r"'2\.body\.0\.running_var' has shape \(2,\)"):
        model.load_state_dict({**state, "2.body.0.running_var": np.ones(2)})
    # strict=False tolerates missing and unexpected names but loads what matches
    model.load_state_dict({"0.bias": np.full(2, 7.0), "nope": np.ones(1)}, strict=False)
    assert model.state_dict()["0.bias"].tolist() == [7.0, 7.0]
    unbuilt, _ = _norm_model()
    with pytest.raises(ConvscopeError, match="build the model before load_state_dict"):
        unbuilt.load_state_dict(state)


def test_backward_before_forward_is_an_error_at_every_level():
    model, _ = _norm_model()
    model.build((2, 3, 3))
    with pytest.raises(ConvscopeError, match="backward called before forward"):
        model.backward(np.ones((1, 4, 3, 3), np.float32))
    for container in (model[1], model[2], model[3]):  # Concat, Residual, Residual (identity)
        with pytest.raises(ConvscopeError, match="backward called before forward"):
            container.backward(np.ones((1, 4, 3, 3), np.float32))
    # after one backward the caches are freed, so a second backward is an error too
    model.forward(np.ones((2, 2, 3, 3), np.float32), train=True)
    model.backward(np.ones((2, 4, 3, 3), np.float32))
    with pytest.raises(ConvscopeError, match="backward called before forward"):
        model.backward(np.ones((2, 4, 3, 3), np.float32))


def test_backward_with_a_wrong_dy_shape_names_the_layer():
    model, _ = _norm_model()
    model.build((2, 3, 3))
    model.forward(np.ones((2, 2, 3, 3), np.float32), train=True)
    with pytest.raises(ConvscopeError, match=r"layer 4 \(Sequential\(1 layers\)\): layer 0 .*expects dy of "
                                             r"shape \(2, 4, 3, 3\)") as info:
        model.backward(np.ones((2, 4, 3, 2), np.float32))
    assert "\n" not in str(info.value)  # one line, even through a nested Sequential


def test_norm_model_spec_round_trip():
    ours, _ = _norm_model()
    spec = ours.spec()
    assert spec["layers"][1] == {"type": "concat", "branches": [
        [{"type": "batchnorm2d"}, {"type": "local_response_norm", "size": 3, "alpha": 0.5}],
        [{"type": "local_response_norm", "size": 2, "alpha": 0.3, "k": 2.0}]]}
    assert "shortcut" not in spec["layers"][3]  # identity shortcut is simply left out
    again = cs.from_spec(json.loads(json.dumps(spec)))
    assert again.spec() == spec
    # the rebuilt model computes the same function once given the same state
    ours.build((2, 3, 3), dtype=np.float64)
    _randomise(ours, 8)
    again.build((2, 3, 3), dtype=np.float64)
    again.load_state_dict(ours.state_dict())
    x = np.random.default_rng(9).standard_normal((2, 2, 3, 3))
    np.testing.assert_array_equal(ours.forward(x), again.forward(x))


def test_batchnorm1d_inside_containers_on_ncl():
    ours = cs.Sequential([cs.Residual([BatchNorm1d(), LocalResponseNorm(2)], shortcut=[BatchNorm1d()]),
                          cs.Concat([[BatchNorm1d(3)], []])])  # an empty branch is the identity
    theirs = nn.Sequential(TorchResidual([nn.BatchNorm1d(3), nn.LocalResponseNorm(2)], shortcut=[nn.BatchNorm1d(3)]),
                           TorchConcat([nn.BatchNorm1d(3)], []))
    assert_model_matches_torch(ours, theirs, (3, 4))
    assert ours.output_shape((3, 4)) == (6, 4)


# ----- models with convolutions and dense layers ----------------------------------------------

def _conv_model():
    """On (2, 6, 6): conv 4×6×6 → relu → Concat[[1×1 conv 3], [3×3 conv 2, BN, relu]] 5×6×6 → BN
    → Residual(identity, body conv-BN-relu-conv) 5×6×6 → Residual(body stride-2 conv + BN,
    shortcut 1×1 stride-2 conv + BN) 6×3×3 → relu → flatten 54 → linear 3."""
    L = cs.layers
    ours = cs.Sequential([
        L.Conv2d(4, 3, padding=1),
        L.ReLU(),
        cs.Concat([[L.Conv2d(3, 1)], [L.Conv2d(2, 3, padding=1), BatchNorm2d(), L.ReLU()]]),
        BatchNorm2d(),
        cs.Residual([L.Conv2d(5, 3, padding=1), BatchNorm2d(), L.ReLU(), L.Conv2d(5, 3, padding=1)]),
        cs.Residual([L.Conv2d(6, 3, stride=2, padding=1), BatchNorm2d()],
                    shortcut=[L.Conv2d(6, 1, stride=2, bias=False), BatchNorm2d()]),
        L.ReLU(),
        L.Flatten(),
        L.Linear(3),
    ])
    theirs = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.ReLU(),
        TorchConcat([nn.Conv2d(4, 3, 1)], [nn.Conv2d(4, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU()]),
        nn.BatchNorm2d(5),
        TorchResidual([nn.Conv2d(5, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(), nn.Conv2d(5, 5, 3, padding=1)]),
        TorchResidual([nn.Conv2d(5, 6, 3, stride=2, padding=1), nn.BatchNorm2d(6)],
                      shortcut=[nn.Conv2d(5, 6, 1, stride=2, bias=False), nn.BatchNorm2d(6)]),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(54, 3),
    )
    return ours, theirs


def test_conv_model_matches_torch():
    ours, theirs = _conv_model()
    assert_model_matches_torch(ours, theirs, (2, 6, 6), batch=4)


def test_conv_model_names_and_counts():
    ours, theirs = _conv_model()
    assert ours.output_shape((2, 6, 6)) == (3,)
    ours.build((2, 6, 6))
    names = [p.name for p in ours.parameters()]
    assert names == [name for name, _ in theirs.named_parameters()]
    assert "2.branches.1.0.weight" in names and "4.body.0.bias" in names and "5.shortcut.0.weight" in names
    assert "5.shortcut.0.bias" not in names  # bias=False
    assert list(ours.state_dict()) == list(theirs.state_dict())
    # torch counts the same learned values: parameters only, buffers apart.
    assert sum(p.size for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    # 76 (conv 2→4, 3×3) + 15 (1×1 conv 4→3) + 74 (conv 4→2) + 4 (BN) + 10 (BN) + 2·230
    # (conv 5→5) + 10 (BN) + 276 (conv 5→6) + 12 (BN) + 30 (1×1 conv, no bias) + 12 (BN)
    # + 165 (linear 54→3) = 1,144
    assert sum(p.size for p in ours.parameters()) == 1144


def test_conv_model_spec_round_trip_and_same_function():
    ours, _ = _conv_model()
    spec = ours.spec()
    assert spec["layers"][2] == {"type": "concat", "branches": [
        [{"type": "conv2d", "out_channels": 3, "kernel_size": 1}],
        [{"type": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1}, {"type": "batchnorm2d"},
         {"type": "relu"}]]}
    assert spec["layers"][5]["shortcut"] == [{"type": "conv2d", "out_channels": 6, "kernel_size": 1, "stride": 2,
                                              "bias": False}, {"type": "batchnorm2d"}]
    again = cs.from_spec(json.loads(json.dumps(spec)))
    assert again.spec() == spec
    ours.build((2, 6, 6), seed=1, dtype=np.float64)
    again.build((2, 6, 6), seed=1, dtype=np.float64)
    # the same seed gives the same weights, so both compute the same function
    x = np.random.default_rng(2).standard_normal((2, 2, 6, 6))
    np.testing.assert_array_equal(ours.forward(x, train=True), again.forward(x, train=True))


def test_container_shape_errors_say_what_to_fix():
    L = cs.layers
    with pytest.raises(ConvscopeError, match=r"layer 0 \(Concat\(2 branches\)\): concat joins on channels.*"
                                             r"branch 0 gives 2×3×3, branch 1 gives 2×5×5"):
        cs.Sequential([cs.Concat([[L.Conv2d(2, 3)], [L.Conv2d(2, 1)]])]).build((2, 5, 5))
    with pytest.raises(ConvscopeError, match=r"body gives 4×5×5, the input \(identity shortcut\) gives 2×5×5; "
                                             r"add a shortcut such as conv2d\(4, 1"):
        cs.Residual([L.Conv2d(4, 3, padding=1)]).build((2, 5, 5))
    with pytest.raises(ConvscopeError, match=r"shortcut gives 4×3×3"):
        cs.Residual([L.Conv2d(4, 3, padding=1)], shortcut=[L.Conv2d(4, 1, stride=2)]).build((2, 5, 5))
    with pytest.raises(ConvscopeError, match=r"layers\[1\] must be a layer"):
        cs.Sequential([L.ReLU(), "relu"])
    with pytest.raises(ConvscopeError, match="at least one branch"):
        cs.Concat([])


def _pool_model():
    """Inception-like on (2, 8, 8): conv-BN-relu 4×8×8 → maxpool 4×4×4 → Concat[[1×1 conv 2],
    [3×3/1 maxpool, 1×1 conv 2], [3×3 conv 3, relu]] 7×4×4 → Residual(identity, conv-BN)
    → maxpool 7×2×2 → flatten 28 → linear 4."""
    L = cs.layers
    ours = cs.Sequential([
        L.Conv2d(4, 3, padding=1), BatchNorm2d(), L.ReLU(), L.MaxPool2d(2),
        cs.Concat([[L.Conv2d(2, 1)], [L.MaxPool2d(3, stride=1, padding=1), L.Conv2d(2, 1)],
                   [L.Conv2d(3, 3, padding=1), L.ReLU()]]),
        cs.Residual([L.Conv2d(7, 3, padding=1), BatchNorm2d()]),
        L.MaxPool2d(2), L.Flatten(), L.Linear(4),
    ])
    theirs = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        TorchConcat([nn.Conv2d(4, 2, 1)], [nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(4, 2, 1)],
                    [nn.Conv2d(4, 3, 3, padding=1), nn.ReLU()]),
        TorchResidual([nn.Conv2d(7, 7, 3, padding=1), nn.BatchNorm2d(7)]),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(28, 4),
    )
    return ours, theirs


def test_pool_model_matches_torch():
    ours, theirs = _pool_model()
    assert ours.output_shape((2, 8, 8)) == (4,)
    assert_model_matches_torch(ours, theirs, (2, 8, 8), batch=3)
    names = [p.name for p in ours.parameters()]
    assert "4.branches.1.1.weight" in names and "5.body.1.bias" in names


def test_pool_model_spec_round_trip():
    ours, _ = _pool_model()
    spec = ours.spec()
    assert spec["layers"][4]["branches"][1][0] == {"type": "maxpool2d", "kernel_size": 3, "stride": 1, "padding": 1}
    assert cs.from_spec(json.loads(json.dumps(spec))).spec() == spec


@pytest.mark.parametrize("path", ["im2col", "shifted", "winograd", "reference"])
def test_backward_without_input_grad_gives_the_same_parameter_grads(path):
    """Training never needs dL/dx of the data: backward(dy, input_grad=False) may skip it
    (returns None) but every parameter gradient must equal the full backward's."""
    from convscope.ops import conv as conv_ops
    old = conv_ops.get_default_path()
    conv_ops.set_default_path(path)
    try:
        model = cs.Sequential([cs.layers.Conv2d(16, 3, padding=1), cs.layers.ReLU(),
                               cs.layers.Flatten(), cs.layers.Linear(3)]).build((16, 6, 6), dtype=np.float64)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((2, 16, 6, 6))
        dy = rng.standard_normal((2, 3))
        model.forward(x, train=True)
        assert model.backward(dy) is not None
        full = {p.name: p.grad.copy() for p in model.parameters()}
        model.forward(x, train=True)
        assert model.backward(dy, input_grad=False) is None
        for p in model.parameters():
            np.testing.assert_array_equal(p.grad, full[p.name])
    finally:
        conv_ops.set_default_path(old)
