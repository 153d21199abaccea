"""A/B timing of forward passes (perf-infer's helper, not part of ``python -m benchmarks``).

    python -m benchmarks.micro_forward --engine convscope --cases dw,resnet18 [--src DIR]
    python -m benchmarks.micro_forward --engine torch --cases dw,resnet18

One process per call, 2 threads (MICRO_THREADS=1 for one), OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE removed before NumPy
loads (the kernel users get). Each case prints the median of ``--runs`` timed calls (after
2 warm-ups) and their min–max. ``--src`` puts another checkout's ``src`` first on sys.path,
so the old code (e.g. /work/main/src) and the new run in alternating processes.

The torchvision models are converted once (``--prepare``) and pickled to /tmp, so the timed
convscope process never imports torch.
"""
from __future__ import annotations

import argparse
import os
import pickle
import resource
import statistics
import sys
import time

for _var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_var, None)
THREADS = int(os.environ.get("MICRO_THREADS", "2"))   # 1: the CPU work alone, when the machine is shared
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(THREADS)

# (name, batch, C_in, size, C_out, kernel, stride, padding, groups): benchmarks/cases.py's layers.
CONV = {
    "lenet1": (64, 1, 32, 6, 5, 1, 0, 1), "lenet2": (64, 6, 14, 16, 5, 1, 0, 1),
    "cifar": (32, 3, 32, 32, 3, 1, 1, 1), "resnet": (8, 64, 32, 64, 3, 1, 1, 1),
    "alex1": (4, 3, 224, 64, 11, 4, 2, 1), "alex5": (8, 256, 13, 256, 3, 1, 1, 1),
    "pw": (8, 256, 28, 128, 1, 1, 0, 1), "one": (16, 1, 128, 1, 3, 1, 1, 1),
    "dw": (8, 64, 56, 64, 3, 1, 1, 64),
}
LENET = ("conv2d(6, 5) -> relu -> maxpool2d(2) -> conv2d(16, 5) -> relu -> maxpool2d(2) -> "
         "flatten -> linear(120) -> relu -> linear(84) -> relu -> linear(10)")
PICKLES = "/tmp/perf-infer-{}.pkl"


def _tv_module(name):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from torchvision_import import import_torchvision
    tv = import_torchvision()
    import torch
    torch.manual_seed(0)
    if name == "mobilenet_v2":
        return tv.models.mobilenet_v2(weights=None).eval()
    return tv.models.resnet18(weights=None).eval()


def prepare():
    import convscope as cs
    for name in ("mobilenet_v2",):
        model = cs.interop.from_torch(_tv_module(name), (3, 224, 224))
        with open(PICKLES.format(name), "wb") as f:
            pickle.dump(model, f)


def timed(fn, runs):
    fn(); fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def convscope_case(case):
    import numpy as np
    import convscope as cs
    rng = np.random.default_rng(0)
    if case in CONV:
        n, c, s, k, ks, st, p, g = CONV[case]
        layer = cs.layers.Conv2d(k, ks, stride=st, padding=p, groups=g).build((c, s, s), seed=0)
        x = rng.standard_normal((n, c, s, s)).astype(np.float32)
        return lambda: layer.forward(x)
    if case.startswith("lenet_b"):
        model = cs.parse_text(LENET, input_shape=(1, 32, 32)).build(seed=0)
        x = rng.standard_normal((int(case[7:]), 1, 32, 32)).astype(np.float32)
        return lambda: model.forward(x)
    if case == "resnet18":
        model = cs.zoo.load("resnet18")
        model = model.build((3, 224, 224), seed=0) if not model.built else model
    else:
        with open(PICKLES.format(case), "rb") as f:
            model = pickle.load(f)
    x = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
    return lambda: model.forward(x)


def torch_case(case):
    import torch
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    nn = torch.nn
    if case in CONV:
        n, c, s, k, ks, st, p, g = CONV[case]
        m = nn.Conv2d(c, k, ks, stride=st, padding=p, groups=g)
        x = torch.randn(n, c, s, s)
    elif case.startswith("lenet_b"):
        m = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84),
                          nn.ReLU(), nn.Linear(84, 10))
        x = torch.randn(int(case[7:]), 1, 32, 32)
    else:
        m = _tv_module(case)
        x = torch.randn(1, 3, 224, 224)
    m.eval()

    def run():
        with torch.no_grad():
            m(x)
    return run


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", default="convscope")
    parser.add_argument("--cases", default=",".join(CONV))
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--src")
    parser.add_argument("--prepare", action="store_true")
    args = parser.parse_args()
    if args.src:
        sys.path.insert(0, args.src)
    if args.prepare:
        prepare()
        return
    if args.engine == "convscope":
        import convscope as cs
        cs.set_num_threads(THREADS)
    for case in args.cases.split(","):
        fn = convscope_case(case) if args.engine == "convscope" else torch_case(case)
        runs = args.runs if case not in ("resnet18", "mobilenet_v2") else max(5, args.runs // 3)
        times = timed(fn, runs)
        line = f"{case} {1e3 * statistics.median(times):.3f} {1e3 * min(times):.3f} {1e3 * max(times):.3f}"
        if os.environ.get("MICRO_RSS"):   # peak RSS of the process (one case per process to compare)
            line += f" rss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}MB"
        print(line, flush=True)


if __name__ == "__main__":
    main()
