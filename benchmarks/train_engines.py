"""Training throughput of the two engines: images per second for ResNet-18 on 3×32×32 at batch 256.

    python -m benchmarks.train_engines [--steps 3] [--repeats 3] [--threads 2]

One training step is what ``convscope train`` does per batch: forward in training mode,
softmax cross-entropy, backward, SGD with momentum, through the engines' own interface
(:mod:`convscope.train.engine`, :mod:`convscope.train.torch_engine`). Each measurement runs in
a fresh process (convscope's engine, torch on the CPU, torch on the GPU when one is present),
the engines alternate, and the table gives the median images/s over the repeats and their
spread (min–max). Without CUDA the GPU row says why it is missing.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

BATCH, SHAPE, CLASSES = 256, (3, 32, 32), 10


def worker(engine: str, device: str, steps: int, threads: int) -> dict:
    import numpy as np

    import convscope as cs
    from convscope.train.engine import NumpyEngine
    from convscope.train.optim import make_optimizer

    cs.set_num_threads(threads)
    spec = cs.zoo.spec("resnet18")
    spec["layers"][-1] = dict(spec["layers"][-1], out_features=CLASSES)
    model = cs.from_spec(spec).build(SHAPE, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH,) + SHAPE).astype(np.float32)
    y = rng.integers(0, CLASSES, BATCH)
    opt = make_optimizer("sgd", model.parameters(), 0.01, momentum=0.9)
    if engine == "convscope":
        run = NumpyEngine(model, opt, x, y)
    else:
        import torch

        from convscope.train.torch_engine import TorchEngine
        torch.set_num_threads(threads)
        run = TorchEngine(torch, model, opt, x, y, device)
    idx = np.arange(BATCH)

    def step():
        run.forward(idx)
        run.step()
        if device.startswith("cuda"):
            import torch
            torch.cuda.synchronize()

    step()  # warm-up: allocations, kernel selection
    started = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - started) / steps
    return {"images_per_second": BATCH / seconds, "seconds_per_step": seconds}


def _measure(engine: str, device: str, steps: int, threads: int) -> dict:
    from .env import ROOT as root, benchmark_env

    env = benchmark_env(threads)
    done = subprocess.run([sys.executable, "-m", "benchmarks.train_engines", "--worker", engine, device,
                           "--steps", str(steps), "--threads", str(threads)],
                          capture_output=True, text=True, env=env, cwd=root)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", nargs=2, metavar=("ENGINE", "DEVICE"))
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.steps, args.threads)))
        return 0
    import torch

    cases = [("convscope", "cpu"), ("torch", "cpu")]
    if torch.cuda.is_available():
        cases.append(("torch", "cuda"))
    results = {case: [] for case in cases}
    for _ in range(args.repeats):
        for case in cases:  # alternate, so a burst of load hits every engine alike
            result = _measure(*case, args.steps, args.threads)
            if "error" in result:
                print(f"{case}: {result['error']}", file=sys.stderr)
                return 1
            results[case].append(result["images_per_second"])
            print(f"{case[0]} on {case[1]}: {result['images_per_second']:,.1f} images/s", file=sys.stderr,
                  flush=True)
    print(f"ResNet-18, 3x32x32, batch {BATCH}, SGD step, {args.threads} threads, {args.steps} steps x "
          f"{args.repeats} repeats")
    print("| engine | device | images/s (median) | spread (min-max) |")
    print("|---|---|---:|---:|")
    for (engine, device), values in results.items():
        print(f"| {engine} | {device} | {statistics.median(values):,.1f} | {min(values):,.1f}-{max(values):,.1f} |")
    if not torch.cuda.is_available():
        print(f"| torch | cuda | not measured | torch {torch.__version__}: torch.cuda.is_available() is False |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
