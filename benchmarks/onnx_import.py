"""Issue 12's two ONNX numbers: reading a ~500 MB ONNX file with from_onnx against onnx.load
of the same file, and the forward of an imported resnet50 at batch 1 against PyTorch's.

``python -m benchmarks.onnx_import [--threads 2] [--repeats 3] [--folder DIR]``: exports
VGG-16 (weights=None, 553 MB) and ResNet-50 with the TorchScript exporter once, then times
each reader / engine in its own fresh process, alternating, and prints the medians and the
median ratio with its spread.
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
module, x = om.build("resnet50")
x = torch.randn(1, 3, 224, 224)
times = []
with torch.no_grad():
    for i in range(7):
        t = time.perf_counter(); module(x); times.append(time.perf_counter() - t)
print(json.dumps(sorted(times[2:])[len(times[2:]) // 2]))
"""

_FWD_CS = _SETUP + """
import convscope as cs
if hasattr(cs, "set_num_threads"):
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


def _export(folder: str) -> tuple:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    import onnx_models as om
    import torch
    paths = []
    for name in ("vgg16", "resnet50"):
        path = os.path.join(folder, f"{name}.onnx")
        if not os.path.exists(path):
            module = getattr(om.import_torchvision().models, name)(weights=None).eval()
            om.export(module, torch.randn(1, 3, 224, 224), path, "torchscript")
        paths.append(path)
    return tuple(paths)


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
    args = parser.parse_args(argv)
    os.makedirs(args.folder, exist_ok=True)
    vgg, resnet = _export(args.folder)
    size = os.path.getsize(vgg) / 1e6
    cs_s, onnx_s, ratio, lo, hi = _pairs(_LOAD_CS, _LOAD_ONNX, [vgg], args.repeats, args.threads)
    print(f"read vgg16.onnx ({size:,.0f} MB): from_onnx {cs_s:.2f} s, onnx.load {onnx_s:.2f} s, "
          f"ratio {ratio:.2f} (spread {lo:.2f}-{hi:.2f}; target ≤ 2)")
    cs_s, torch_s, ratio, lo, hi = _pairs(_FWD_CS, _FWD_TORCH, [resnet, os.path.abspath(__file__)],
                                          args.repeats, args.threads)
    print(f"resnet50 forward, batch 1, {args.threads} threads: convscope {cs_s * 1e3:.0f} ms, torch "
          f"{torch_s * 1e3:.0f} ms, ratio {ratio:.2f} (spread {lo:.2f}-{hi:.2f}; target ≤ 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
