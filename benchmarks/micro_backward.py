"""A/B timing of training steps (perf-train's helper, not part of ``python -m benchmarks``).

    python -m benchmarks.micro_backward --cases lenet2,resnet,lenet_step,resnet18_step \\
        --config base=convscope:/work/main/src --config new=convscope:src --config torch=torch --rounds 5

Every (config, case) pair runs in a fresh process, the configs alternating round by round so a
burst of load from other processes hits each alike. A config is ``NAME=ENGINE[:SRC]``: ENGINE
``convscope`` (SRC, a checkout's ``src``, goes first on sys.path: the old and the new code run in
alternating processes) or ``torch`` (the same model converted with ``cs.interop.to_torch``).
Each process runs 2 warm-ups and ``--runs`` timed calls, 2 threads, with OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE removed before NumPy loads (the kernel users get), and reports the median
time and the rise of its peak RSS above its RSS after imports and model build. The driver prints,
per case and config, the median over rounds of those medians and their min–max, and the ratios
of every config to the first.

Cases: ``conv:NAME`` layers of benchmarks/cases.py forward + backward (``lenet2``, ``resnet`` and
the others below as shorthands), ``lenet_step`` (LeNet-5, batch 64: forward, cross-entropy,
backward, SGD), ``resnet18_step`` (the zoo's resnet18 with a 10-way head on 3×32×32, batch 32)
and ``resnet18c_step`` (the same with a CIFAR stem: conv 3×3/1, no max pool).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

CONV = {"lenet1": 0, "lenet2": 1, "cifar": 2, "resnet": 3, "alex1": 4, "alex5": 5, "pw": 6, "one": 7, "dw": 8}


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def _resnet_spec(cifar: bool) -> dict:
    import convscope as cs
    spec = cs.zoo.spec("resnet18")
    spec["layers"][-1] = dict(spec["layers"][-1], out_features=10)
    if cifar:   # conv 3×3/1 stem, no max pool (the usual CIFAR ResNet-18)
        spec["layers"][0] = dict(spec["layers"][0], kernel_size=3, stride=1, padding=1)
        del spec["layers"][3]
    return spec


def _model(case):
    import convscope as cs
    from .cases import LENET_TEXT
    if case == "lenet_step":
        return cs.parse_text(LENET_TEXT, input_shape=(1, 32, 32)).build(seed=0), (1, 32, 32), 64
    return cs.from_spec(_resnet_spec(case == "resnet18c_step")).build((3, 32, 32), seed=0), (3, 32, 32), 32


def convscope_fn(case):
    import numpy as np
    import convscope as cs
    from convscope.ops.losses import softmax_cross_entropy
    rng = np.random.default_rng(0)
    if case in CONV:   # the same layer and step as ``python -m benchmarks`` times
        from .cases import CONV_CASES
        from .worker import convscope_conv
        return convscope_conv(CONV_CASES[CONV[case]], "fwdbwd", "auto")
    model, shape, batch = _model(case)
    x = rng.standard_normal((batch,) + shape).astype(np.float32)
    labels = rng.integers(0, 10, batch)
    params = model.parameters()

    def step():
        logits = model.forward(x, train=True)
        _, dlogits = softmax_cross_entropy(logits, labels)
        model.backward(dlogits, input_grad=False)
        for p in params:
            p.value -= 0.01 * p.grad
    return step


def torch_fn(case):
    import numpy as np
    import torch
    import convscope as cs
    rng = np.random.default_rng(0)
    if case in CONV:
        from .cases import CONV_CASES
        from .worker import torch_conv
        return torch_conv(CONV_CASES[CONV[case]], "fwdbwd")
    model, shape, batch = _model(case)
    module = cs.interop.to_torch(model)
    module.train()
    x = torch.from_numpy(rng.standard_normal((batch,) + shape).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, 10, batch))
    optimizer = torch.optim.SGD(module.parameters(), lr=0.01)

    def step():
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(module(x), labels).backward()
        optimizer.step()
    return step


def worker(engine: str, case: str, runs: int) -> dict:
    if engine == "torch":
        import torch
        torch.set_num_threads(2)
    import convscope as cs
    cs.set_num_threads(2)
    fn = torch_fn(case) if engine == "torch" else convscope_fn(case)
    base = _rss_mb()
    fn()
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"ms": 1e3 * statistics.median(times), "min_ms": 1e3 * min(times), "rss_rise_mb": peak - base}


def _run(engine: str, src: str, case: str, runs: int) -> dict:
    env = dict(os.environ)
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(var, None)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "2"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    src = os.path.abspath(src) if src else os.path.join(root, "src")
    env["PYTHONPATH"] = src + os.pathsep + root
    done = subprocess.run([sys.executable, "-m", "benchmarks.micro_backward", "--worker", engine, case,
                           "--runs", str(runs)], capture_output=True, text=True, env=env, cwd=root)
    if done.returncode != 0:
        raise SystemExit(f"{engine} {case}: {(done.stderr.strip().splitlines() or ['failed'])[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="lenet2,resnet,lenet_step,resnet18_step")
    parser.add_argument("--config", action="append", default=[], help="NAME=ENGINE[:SRC]")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--worker", nargs=2, metavar=("ENGINE", "CASE"))
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.runs)))
        return 0
    configs = []
    for text in args.config or ["new=convscope"]:
        name, _, rest = text.partition("=")
        engine, _, src = rest.partition(":")
        configs.append((name, engine, src))
    cases = args.cases.split(",")
    results = {(case, name): [] for case in cases for name, _, _ in configs}
    for r in range(args.rounds):
        for case in cases:
            order = configs if r % 2 == 0 else configs[::-1]
            for name, engine, src in order:
                results[case, name].append(_run(engine, src, case, args.runs))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    first = configs[0][0]
    print("| case | config | ms median (min–max over rounds) | ratio to " + first + " (min–max) "
          "| RSS rise MB (median) |")
    print("|---|---|---|---|---:|")
    for case in cases:
        ref = [x["ms"] for x in results[case, first]]
        for name, _, _ in configs:
            ms = [x["ms"] for x in results[case, name]]
            ratios = [a / b for a, b in zip(ms, ref)]
            rss = statistics.median(x["rss_rise_mb"] for x in results[case, name])
            print(f"| {case} | {name} | {statistics.median(ms):.2f} ({min(ms):.2f}–{max(ms):.2f}) | "
                  f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f}) | {rss:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
