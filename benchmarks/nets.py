"""The networks of benchmarks/cases.py (NETS), built for each engine, and the step each case times.

* convscope: LeNet-5 from its text form, ResNet-18 (CIFAR stem) from the zoo's resnet18 spec
  with the stem changed, the zoo's resnet18, and MobileNetV2 loaded from a checkpoint that
  :func:`prepare_mobilenet_v2` converts once from torchvision (so no convscope process imports
  torch);
* PyTorch: LeNet-5 through ``cs.interop.to_torch`` (a plain ``nn.Sequential`` of torch modules),
  torchvision's resnet18 (its stem changed the same way for CIFAR) and mobilenet_v2, all with
  ``weights=None`` (nothing is downloaded);
* ONNX Runtime: convscope's own ONNX export of LeNet-5.

A training step is forward in training mode, mean cross-entropy, backward (no gradient for the
data) and a plain SGD step with lr 0.01; inference is a forward pass without gradients
(``train=False``; ``torch.inference_mode``). Both engines get the same parameter count, which
the harness checks.
"""
from __future__ import annotations

import os
import sys

from .cases import LENET_TEXT, NETS
from .env import ROOT

LR = 0.01
CLASSES = {"lenet5": 10, "resnet18-cifar": 10, "resnet18": 1000, "mobilenet_v2": 1000}


def _inputs(case):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((case.batch,) + case.input_shape).astype(np.float32)
    return x, rng.integers(0, CLASSES[case.net], case.batch)


# ----- convscope -------------------------------------------------------------------------------
def resnet18_cifar_spec(side: int) -> dict:
    """The zoo's resnet18 with the CIFAR stem: 3×3 stride-1 conv, no max-pool, 10 classes."""
    import convscope as cs

    spec = cs.zoo.spec("resnet18")
    layers = list(spec["layers"])
    assert layers[0]["type"] == "conv2d" and layers[3]["type"] == "maxpool2d", "zoo resnet18 changed"
    layers[0] = dict(layers[0], kernel_size=3, stride=1, padding=1)
    del layers[3]
    layers[-1] = dict(layers[-1], out_features=CLASSES["resnet18-cifar"])
    return dict(spec, name="resnet18-cifar", input=[3, side, side], layers=layers)


def convscope_model(case, files):
    import convscope as cs

    if case.net == "lenet5":
        return cs.parse_text(LENET_TEXT, input_shape=case.input_shape).build(seed=0)
    if case.net == "resnet18-cifar":
        return cs.from_spec(resnet18_cifar_spec(case.size)).build(case.input_shape, seed=0)
    if case.net == "resnet18":
        return cs.zoo.load("resnet18").build(case.input_shape, seed=0)
    if case.net == "mobilenet_v2":
        from convscope.train.checkpoint import load_checkpoint
        model = load_checkpoint(files["mobilenet_v2"]).model
        if tuple(model.input_shape) != case.input_shape:
            raise ValueError(f"the converted mobilenet_v2 is for {model.input_shape}, not {case.input_shape}")
        return model
    raise ValueError(f"unknown net {case.net!r}")


def convscope_step(case, files):
    """(callable timing one step, parameter count, the model)."""
    from convscope.ops.losses import softmax_cross_entropy
    from convscope.train.optim import make_optimizer

    model = convscope_model(case, files)
    x, labels = _inputs(case)
    count = sum(int(p.value.size) for p in model.parameters())
    if case.kind == "infer":
        return (lambda: model.forward(x, train=False)), count, model
    opt = make_optimizer("sgd", model.parameters(), LR)

    def step():
        logits = model.forward(x, train=True)
        _, dlogits = softmax_cross_entropy(logits, labels)
        model.backward(dlogits, input_grad=False)
        opt.step()
    return step, count, model


# ----- PyTorch ---------------------------------------------------------------------------------
def torchvision():
    """torchvision through the tests' helper (it defines two operator schemas first)."""
    tests = os.path.join(ROOT, "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from torchvision_import import import_torchvision
    return import_torchvision()


def torch_model(case):
    import torch

    torch.manual_seed(0)
    if case.net == "lenet5":
        import convscope as cs
        return cs.interop.to_torch(cs.parse_text(LENET_TEXT, input_shape=case.input_shape).build(seed=0))
    tv = torchvision()
    if case.net == "resnet18-cifar":
        model = tv.models.resnet18(weights=None, num_classes=CLASSES["resnet18-cifar"])
        model.conv1 = torch.nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        model.maxpool = torch.nn.Identity()
        return model
    if case.net == "resnet18":
        return tv.models.resnet18(weights=None)
    if case.net == "mobilenet_v2":
        return tv.models.mobilenet_v2(weights=None)
    raise ValueError(f"unknown net {case.net!r}")


def torch_step(case):
    import torch

    model = torch_model(case)
    x, labels = _inputs(case)
    x, labels = torch.from_numpy(x), torch.from_numpy(labels)
    count = sum(int(p.numel()) for p in model.parameters())
    if case.kind == "infer":
        model.eval()

        def infer():
            with torch.inference_mode():
                model(x)
        return infer, count
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)

    def step():
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), labels).backward()
        optimizer.step()
    return step, count


# ----- ONNX Runtime ----------------------------------------------------------------------------
def onnxruntime_step(case, threads: int, folder: str):
    import numpy as np
    import onnxruntime as ort

    import convscope as cs

    if case.kind != "infer" or case.net != "lenet5":
        raise ValueError("ONNX Runtime runs LeNet-5 inference only")
    model = cs.parse_text(LENET_TEXT, input_shape=case.input_shape).build(seed=0)
    path = os.path.join(folder, f"lenet5-{case.size}.onnx")
    cs.interop.to_onnx(model, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x, _ = _inputs(case)
    count = sum(int(p.value.size) for p in model.parameters())
    return (lambda: session.run(None, {name: x})), count


# ----- one-off preparation ---------------------------------------------------------------------
def prepare_mobilenet_v2(path: str) -> int:
    """Convert torchvision's mobilenet_v2 (seed 0, weights=None) with cs.interop.from_torch and
    save it as a convscope checkpoint at ``path``; returns its parameter count."""
    import torch

    import convscope as cs
    from convscope.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    module = torchvision().models.mobilenet_v2(weights=None).eval()
    model = cs.interop.from_torch(module, input_shape=(3, 224, 224))
    save_checkpoint(path, model)
    return sum(int(p.value.size) for p in model.parameters())
