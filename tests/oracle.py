"""One helper that checks a convscope layer against PyTorch (EXAMPLES.md habit 12).

``assert_matches_torch(layer, torch_module, input_shape)`` builds the layer in float64,
copies its state dict into the torch module (names are equal by contract), runs forward
(and backward with a random upstream gradient) in both, and compares the output, dL/dx and
every parameter gradient within 1e-9 relative and absolute.
"""
from __future__ import annotations

import numpy as np
import torch

TOL = 1e-9


def to_torch_state(layer):
    return {k: torch.from_numpy(np.array(v)) for k, v in layer.state_dict().items()}


def assert_matches_torch(layer, module, input_shape, batch=2, seed=0, train=True, rtol=TOL, atol=TOL,
                         x=None, check_state=True):
    """Compare forward, dL/dx and all parameter gradients with ``module`` in float64."""
    rng = np.random.default_rng(seed)
    if not layer.built:
        layer.build(input_shape, seed=seed, dtype=np.float64)
    module = module.double()
    module.load_state_dict(to_torch_state(layer), strict=True)
    module.train(train)
    if x is None:
        x = rng.standard_normal((batch,) + tuple(input_shape))
    y = layer.forward(x, train=train)
    tx = torch.tensor(x, requires_grad=True)
    ty = module(tx)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=rtol, atol=atol, err_msg="forward")
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=rtol, atol=atol, err_msg="dL/dx")
    torch_params = dict(module.named_parameters())
    ours = dict(layer.named_parameters())
    assert set(ours) == set(torch_params), (sorted(ours), sorted(torch_params))
    for name, p in ours.items():
        np.testing.assert_allclose(p.grad, torch_params[name].grad.numpy(), rtol=rtol, atol=atol,
                                   err_msg=f"dL/d{name}")
    if check_state:
        torch_state = module.state_dict()
        for name, value in layer.state_dict().items():
            np.testing.assert_allclose(value, torch_state[name].numpy(), rtol=rtol, atol=atol,
                                       err_msg=f"state {name}")
    return y, dx
