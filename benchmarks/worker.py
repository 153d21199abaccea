"""Times one case on one engine, in a process of its own, and prints one JSON line.

    python -m benchmarks.worker ENGINE CASE_KIND INDEX MODE --threads N

ENGINE is convscope, convscope-reference, torch or onnxruntime; CASE_KIND conv or model;
MODE fwd or fwdbwd (conv), ignored for models. Each engine gets its own process because
BLAS and OpenMP thread pools from two libraries in one process interfere.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time


def _timeit(fn, min_time: float, min_runs: int = 5, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 1000:
            break
    return statistics.median(times)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


# ----- convscope ---------------------------------------------------------------------------
def convscope_conv(case, mode, path):
    import numpy as np
    import convscope as cs
    from convscope.ops import conv as conv_ops

    conv_ops.set_default_path(path)
    layer = cs.layers.Conv2d(case.out_channels, case.kernel, stride=case.stride, padding=case.padding,
                             groups=case.groups)
    layer.build(case.input_shape, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((case.batch,) + case.input_shape).astype(np.float32)
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    if mode == "fwd":
        return lambda: layer.forward(x)

    def step():
        layer.forward(x, train=True)
        layer.backward(dy)
    return step


def convscope_model(case):
    import numpy as np
    import convscope as cs
    from convscope.ops.losses import softmax_cross_entropy

    model = cs.parse_text(case.text, input_shape=case.input_shape).build(seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((case.batch,) + case.input_shape).astype(np.float32)
    labels = rng.integers(0, 10, case.batch)
    if case.kind == "infer":
        return lambda: model.forward(x)
    params = model.parameters()

    def step():
        logits = model.forward(x, train=True)
        _, dlogits = softmax_cross_entropy(logits, labels)
        model.backward(dlogits, input_grad=False)
        for p in params:
            p.value -= 0.01 * p.grad
    return step


# ----- PyTorch -----------------------------------------------------------------------------
def torch_conv(case, mode):
    import numpy as np
    import torch

    conv = torch.nn.Conv2d(case.in_channels, case.out_channels, case.kernel, stride=case.stride,
                           padding=case.padding, groups=case.groups)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((case.batch,) + case.input_shape).astype(np.float32))
    if mode == "fwd":
        def fwd():
            with torch.no_grad():
                conv(x)
        return fwd
    x.requires_grad_(True)
    dy = torch.from_numpy(rng.standard_normal(tuple(conv(x).shape)).astype(np.float32))

    def step():
        conv.zero_grad(set_to_none=True)
        x.grad = None
        conv(x).backward(dy)
    return step


def torch_model(case):
    import numpy as np
    import torch
    import convscope as cs

    model = cs.interop.to_torch(cs.parse_text(case.text, input_shape=case.input_shape).build(seed=0))
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((case.batch,) + case.input_shape).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, 10, case.batch))
    if case.kind == "infer":
        model.eval()

        def infer():
            with torch.no_grad():
                model(x)
        return infer
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    def step():
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), labels).backward()
        optimizer.step()
    return step


# ----- ONNX Runtime ------------------------------------------------------------------------
def onnxruntime_model(case, threads):
    import tempfile

    import numpy as np
    import onnxruntime as ort
    import convscope as cs

    model = cs.parse_text(case.text, input_shape=case.input_shape).build(seed=0)
    path = os.path.join(tempfile.mkdtemp(), "model.onnx")
    cs.interop.to_onnx(model, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal((case.batch,) + case.input_shape).astype(np.float32)
    return lambda: session.run(None, {name: x})


def main(argv=None) -> int:
    from .cases import CONV_CASES, MODEL_CASES

    parser = argparse.ArgumentParser()
    parser.add_argument("engine", choices=["convscope", "convscope-reference", "torch", "onnxruntime"])
    parser.add_argument("kind", choices=["conv", "model"])
    parser.add_argument("index", type=int)
    parser.add_argument("mode", choices=["fwd", "fwdbwd", "-"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-time", type=float, default=0.5)
    args = parser.parse_args(argv)

    if args.engine.startswith("convscope"):
        import convscope as cs
        cs.set_num_threads(args.threads)
    elif args.engine == "torch":
        import torch
        torch.set_num_threads(args.threads)

    if args.kind == "conv":
        case = CONV_CASES[args.index]
        if args.engine == "torch":
            fn = torch_conv(case, args.mode)
        else:
            fn = convscope_conv(case, args.mode, "reference" if args.engine == "convscope-reference" else "auto")
    else:
        case = MODEL_CASES[args.index]
        fn = {"convscope": lambda: convscope_model(case), "torch": lambda: torch_model(case),
              "onnxruntime": lambda: onnxruntime_model(case, args.threads)}[args.engine]()
    seconds = _timeit(fn, args.min_time, min_runs=2 if args.engine == "convscope-reference" else 5,
                      warmup=1 if args.engine == "convscope-reference" else 2)
    print(json.dumps({"seconds": seconds, "peak_rss_mb": _peak_rss_mb()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
