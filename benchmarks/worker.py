"""Times cases on one engine, in a process of its own, and prints one JSON line.

    python -m benchmarks.worker '{"engine": "convscope", "keys": ["net/lenet5/train/b64/s32"], ...}'
    python -m benchmarks.worker --prepare-mobilenet PATH
    python -m benchmarks.worker --cache-check

Job fields: ``engine`` (convscope, convscope-reference, torch, onnxruntime), ``keys`` (case keys
of benchmarks/cases.py, timed in that order), ``threads``, ``min_time`` (seconds of timed runs
per case), ``min_runs``, ``warmup``, ``files`` (prepared models) and ``folder`` (scratch).

Each case: ``warmup`` untimed calls (one when a call takes over SLOW seconds), then timed calls
until at least ``min_time`` seconds and ``min_runs`` calls (3 for slow calls) have passed; the
figure is the median call. Each engine gets its own process because BLAS and OpenMP thread
pools of two libraries in one process interfere.

Memory (single-case jobs): after imports, model build and input data, the kernel's peak-RSS
mark is reset (``/proc/self/clear_refs``, "5"); the rise is the peak during warm-up and timed
calls minus the RSS at the reset. Where the reset is refused, the rise is measured against the
process's whole-life peak (``getrusage``) and flagged.
"""
from __future__ import annotations

import gc
import json
import os
import resource
import statistics
import sys
import time

SLOW = 0.25  # seconds per call above which 3 timed calls and 1 warm-up suffice
MAX_RUNS = 2000


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def time_median(fn, min_time: float, min_runs: int = 5, warmup: int = 2):
    """(median seconds of one call, timed calls) after ``warmup`` untimed calls."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    for _ in range(warmup - 1 if first <= SLOW else 0):
        fn()
    need = min_runs if first <= SLOW else min(3, min_runs)
    times = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if (len(times) >= need and time.perf_counter() - start >= min_time) or len(times) >= MAX_RUNS:
            return statistics.median(times), len(times)


# ----- memory ------------------------------------------------------------------------------------
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def rss_mib() -> float:
    return _status_kib("VmRSS") / 1024.0


def peak_rss_mib(reset_worked: bool) -> float:
    if reset_worked:
        return _status_kib("VmHWM") / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


# ----- environment record ------------------------------------------------------------------------
def blas_record():
    """The BLAS/OpenMP libraries loaded in this process (threadpoolctl): numpy's OpenBLAS kernel
    (``architecture``) is what the results depend on."""
    from threadpoolctl import threadpool_info

    keep = ("user_api", "internal_api", "prefix", "version", "num_threads", "architecture", "threading_layer")
    return [{k: info.get(k) for k in keep} for info in threadpool_info()]


# ----- cases -------------------------------------------------------------------------------------
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
        return lambda: layer.forward(x, train=False)

    def step():
        layer.forward(x, train=True)
        layer.backward(dy)
    return step


def torch_conv(case, mode):
    import numpy as np
    import torch

    conv = torch.nn.Conv2d(case.in_channels, case.out_channels, case.kernel, stride=case.stride,
                           padding=case.padding, groups=case.groups)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((case.batch,) + case.input_shape).astype(np.float32))
    if mode == "fwd":
        def fwd():
            with torch.inference_mode():
                conv(x)
        return fwd
    x.requires_grad_(True)
    dy = torch.from_numpy(rng.standard_normal(tuple(conv(x).shape)).astype(np.float32))

    def step():
        conv.zero_grad(set_to_none=True)
        x.grad = None
        conv(x).backward(dy)
    return step


def make_step(engine: str, key: str, job: dict):
    """(callable, parameter count or None) for one case key on one engine."""
    from . import nets
    from .cases import parse_key

    parsed = parse_key(key)
    if parsed[0] == "conv":
        _, mode, case = parsed
        if engine == "torch":
            return torch_conv(case, mode), None
        return convscope_conv(case, mode, "reference" if engine == "convscope-reference" else "auto"), None
    case = parsed[1]
    if engine == "convscope":
        fn, count, _ = nets.convscope_step(case, job.get("files", {}))
        return fn, count
    if engine == "torch":
        return nets.torch_step(case)
    if engine == "onnxruntime":
        return nets.onnxruntime_step(case, job["threads"], job["folder"])
    raise ValueError(f"engine {engine!r} does not run {key}")


def set_threads(engine: str, threads: int) -> None:
    if engine.startswith("convscope"):
        import convscope as cs
        from convscope.ops import kernels
        cs.set_num_threads(threads)
        # numba (the optional compiled loops) is loaded with the imports, before the memory
        # baseline, as torch's libraries are: importing it and loading its compiled code adds
        # about 125 MB of RSS once per process, which the first convolution would otherwise
        # count as the step's memory.
        kernels.load()
    elif engine == "torch":
        import torch
        torch.set_num_threads(threads)


def run_job(job: dict) -> dict:
    engine = job["engine"]
    set_threads(engine, job["threads"])
    memory = len(job["keys"]) == 1
    results = {}
    for key in job["keys"]:
        try:
            fn, count = make_step(engine, key, job)
            gc.collect()
            reset = reset_peak_rss() if memory else False
            base = rss_mib()
            cpu = cpu_seconds()
            seconds, runs = time_median(fn, job["min_time"], job.get("min_runs", 5), job.get("warmup", 2))
            # CPU seconds of warm-up and timed calls: a machine-load-independent cost estimate
            entry = {"seconds": seconds, "runs": runs, "params": count, "cpu_seconds": cpu_seconds() - cpu}
            if memory:
                peak = peak_rss_mib(reset)
                entry.update(rss_base_mib=base, rss_peak_mib=peak, rss_rise_mib=peak - base,
                             rss_peak_is_lifetime=not reset)
        except Exception as error:  # one failed case must not lose the others' results
            entry = {"error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"}
        results[key] = entry
        fn = None
        gc.collect()
    return {"engine": engine, "results": results, "blas": blas_record(),
            "torch_imported": "torch" in sys.modules, "process_cpu_seconds": cpu_seconds()}


# ----- inference caches ----------------------------------------------------------------------------
CACHE_CASES = ("net/lenet5/infer/b64/s32", "net/resnet18-cifar/infer/b8/s32", "net/resnet18/infer/b1/s224")


def _walk(layer, prefix: str = ""):
    yield prefix or "(model)", layer
    for name, child in layer.children():
        yield from _walk(child, f"{prefix}{name}." if prefix else f"{name}")


def _array_bytes(value, skip: set, seen: set, depth: int = 0) -> int:
    """Bytes of NumPy arrays reachable from a cache (tuples, lists, dicts, dataclass fields),
    each underlying buffer once, leaving out arrays in ``skip`` (weights, workspace buffers)."""
    import numpy as np

    if depth > 5 or value is None:
        return 0
    if isinstance(value, np.ndarray):
        base = value
        while isinstance(base.base, np.ndarray):
            base = base.base
        if id(base) in skip or id(value) in skip or id(base) in seen:
            return 0
        seen.add(id(base))
        return int(base.nbytes)
    if isinstance(value, dict):
        items = value.values()
    elif isinstance(value, (tuple, list)):
        items = value
    elif hasattr(value, "__dict__") and type(value).__name__ != "Workspace":
        items = vars(value).values()
    else:
        return 0
    return sum(_array_bytes(v, skip, seen, depth + 1) for v in items)


def cache_check(threads: int) -> dict:
    """Build each CACHE_CASES model, run forward(train=False) once and list the layers that still
    hold a backward cache (``_cache`` not None) with the array bytes it keeps alive; also the
    bytes of reusable work buffers the model keeps (not caches: scratch reused across calls,
    the inference plan's step buffers included)."""
    from . import nets
    from .cases import parse_key

    set_threads("convscope", threads)
    report = {}
    for key in CACHE_CASES:
        case = parse_key(key)[1]
        model = nets.convscope_model(case, {})
        x, _ = nets._inputs(case)
        model.forward(x, train=False)
        skip = {id(p.value) for p in model.parameters()}
        workspace_bytes = 0
        for _, layer in _walk(model):
            ws = getattr(layer, "_workspace", None)
            if ws is not None:
                buffers = getattr(ws, "_buffers", {})
                skip.update(id(b) for b in buffers.values())
                workspace_bytes += sum(int(b.nbytes) for b in buffers.values())
        from convscope.layers.plan import plan_bytes
        workspace_bytes += plan_bytes(model)  # the inference plan's step buffers, kept between calls
        held, seen = [], set()
        for path, layer in _walk(model):
            cache = getattr(layer, "_cache", None)
            if type(cache).__name__ == "_Replay":
                continue  # the model's own input, kept by the outermost layer to replay for a backward
            if cache is not None:
                held.append({"layer": path, "type": layer.type_name,
                             "bytes": _array_bytes(cache, skip, seen)})
        report[key] = {"layers": sum(1 for _ in _walk(model)), "holding": held,
                       "cache_bytes": sum(h["bytes"] for h in held), "workspace_bytes": workspace_bytes}
    return report


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--prepare-mobilenet"]:
        from . import nets
        print(json.dumps({"params": nets.prepare_mobilenet_v2(argv[1])}))
        return 0
    if argv[:1] == ["--cache-check"]:
        print(json.dumps(cache_check(int(argv[1]) if len(argv) > 1 else 2)))
        return 0
    print(json.dumps(run_job(json.loads(argv[0]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
