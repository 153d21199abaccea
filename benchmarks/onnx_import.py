"""Issue 12's two ONNX numbers: reading a ~500 MB ONNX file with from_onnx against onnx.load
of the same file, and the forward of an imported resnet50 at batch 1 against PyTorch's.

``python -m benchmarks.onnx_import [--threads 2] [--repeats 3] [--folder DIR]``: exports
VGG-16 (weights=None, 553 MB) and ResNet-50 with the TorchScript exporter once, then times
each reader / engine in its own fresh process, alternating, and prints the medians and the
median ratio with its spread. Both engines run the same weights (tests/onnx_models.py
``build``: seeded, batch-norm statistics randomised); before timing, the imported model's
output is checked against the module's (max relative error printed; above 1e-4 is an error).

A quick check that the script works (not a measurement): ``--load-model resnet18
--forward-model resnet18 --repeats 1``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

_SETUP = """
import os, sys, time, json, warnings
warnings.filterwarnings("ignore")
threads = int(os.environ["BENCH_THREADS"])
import numpy as np
"""

_LOAD_ONNX = _SETUP + """
import onnx
t = time.perf_counter(); onnx.load(sys.argv[1]); print(json.dumps(time.perf_counter() - t))
"""

_LOAD_CS = _SETUP + """
import onnx, convscope as cs  # the imports are not part of the reading time
t = time.perf_counter(); cs.interop.from_onnx(sys.argv[1]); print(json.dumps(time.perf_counter() - t))
"""

_FWD_TORCH = _SETUP + """
import torch
torch.set_num_threads(threads)
sys.path.insert(0, os.path.join(os.path.dirname(sys.argv[2]), "..", "tests"))
import onnx_models as om
module, _ = om.build(sys.argv[3])  # the weights the exported file holds
x = torch.randn(1, 3, 224, 224)
times = []
with torch.no_grad():
    for i in range(7):
        t = time.perf_counter(); module(x); times.append(time.perf_counter() - t)
print(json.dumps(sorted(times[2:])[len(times[2:]) // 2]))
"""

_FWD_CS = _SETUP + """
import convscope as cs
cs.set_num_threads(threads)
model = cs.interop.from_onnx(sys.argv[1])
x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
times = []
for i in range(7):
    t = time.perf_counter(); model.forward(x, train=False); times.append(time.perf_counter() - t)
print(json.dumps(sorted(times[2:])[len(times[2:]) // 2]))
"""


def _run(code: str, *args: str, threads: int) -> float:
    env = dict(os.environ, BENCH_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    for key in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(key, None)
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, check=True, capture_output=True, text=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def _om():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    import onnx_models as om
    return om


def _export(folder: str, name: str) -> str:
    """``name`` (om.build's weights) exported at 224×224 by the TorchScript exporter, once."""
    import torch
    om = _om()
    path = os.path.join(folder, f"{name}.onnx")
    if not os.path.exists(path):
        module, _ = om.build(name)
        om.export(module, torch.randn(1, 3, 224, 224), path, "torchscript")
    return path


def _check_same_model(path: str, name: str) -> float:
    """Max |from_onnx − torch| / max |torch| on one 224×224 image: the two timed engines must
    compute the same function."""
    import numpy as np
    import torch

    import convscope as cs
    module, _ = _om().build(name)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = module(x).numpy()
    got = cs.interop.from_onnx(path).forward(x.numpy(), train=False)
    error = float(np.abs(got - expected).max() / np.abs(expected).max())
    if not error < 1e-4:
        raise SystemExit(f"the imported {name} differs from torch's by {error:.1e} (relative); not timing it")
    return error


def _pairs(a_code, b_code, args, repeats, threads):
    a, b = [], []
    for _ in range(repeats):
        a.append(_run(a_code, *args, threads=threads))
        b.append(_run(b_code, *args, threads=threads))
    ratios = [x / y for x, y in zip(a, b)]
    return statistics.median(a), statistics.median(b), statistics.median(ratios), min(ratios), max(ratios)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--folder", default=os.path.join(tempfile.gettempdir(), "convscope-onnx-bench"))
    parser.add_argument("--load-model", default="vgg16", help="torchvision model whose file is read (vgg16: 553 MB)")
    parser.add_argument("--forward-model", default="resnet50", help="torchvision model whose forward is timed")
    args = parser.parse_args(argv)
    os.makedirs(args.folder, exist_ok=True)
    big = _export(args.folder, args.load_model)
    size = os.path.getsize(big) / 1e6
    cs_s, onnx_s, ratio, lo, hi = _pairs(_LOAD_CS, _LOAD_ONNX, [big], args.repeats, args.threads)
    print(f"read {args.load_model}.onnx ({size:,.0f} MB), {args.repeats} runs each: from_onnx {cs_s:.2f} s, "
          f"onnx.load {onnx_s:.2f} s (medians), ratio {ratio:.2f} (spread {lo:.2f}-{hi:.2f}; target ≤ 2)")
    net = _export(args.folder, args.forward_model)
    error = _check_same_model(net, args.forward_model)
    cs_s, torch_s, ratio, lo, hi = _pairs(_FWD_CS, _FWD_TORCH, [net, os.path.abspath(__file__), args.forward_model],
                                          args.repeats, args.threads)
    print(f"{args.forward_model} forward, batch 1, {args.threads} threads, {args.repeats} runs each (max relative "
          f"difference to torch {error:.1e}): convscope {cs_s * 1e3:.0f} ms, torch {torch_s * 1e3:.0f} ms (medians), "
          f"ratio {ratio:.2f} (spread {lo:.2f}-{hi:.2f}; target ≤ 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
