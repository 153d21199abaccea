"""convscope vs PyTorch (and ONNX Runtime): stable ratios over alternating fresh processes.

    python -m benchmarks [--rounds 5] [--scaling-rounds 2] [--threads 2] [--min-time 0.5]
                         [--only conv,lenet,nets,memory,mainjob,scaling] [--match TEXT]
                         [--json PATH] [--readme]

A *round* runs each case once per engine, each in a fresh process, one engine after the other
(convscope, torch[, onnxruntime]); rounds repeat the whole list, so a burst of load hits one
round of many cases rather than every round of one. Each process reports the median of many
calls after warm-up (benchmarks/worker.py); the table gives, per case, the median over rounds of
the per-round ratio convscope / other and its spread (min–max). The nine convolution layers of
one mode share a process per engine and round (a fresh process per layer would spend most of the
run importing torch).

Every benchmark process gets the same thread count (OMP/OPENBLAS/MKL_NUM_THREADS,
torch.set_num_threads, cs.set_num_threads, ONNX Runtime's intra-op threads) and runs without
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, so NumPy's OpenBLAS picks its kernel for this CPU as on
a user's machine; which kernel ran is recorded (threadpoolctl). Results go to ``--json``
(default benchmarks/last-run.json); ``--readme`` also rewrites the results section of
benchmarks/README.md (``python -m benchmarks.report`` does that from a saved JSON).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from . import cases as C
from .env import ROOT, benchmark_env, cpu_model
from .report import write_readme

SECTIONS = ("conv", "lenet", "nets", "memory", "mainjob", "scaling")
EXTRA_SECTIONS = ("reference", "summary")
REFERENCE_CASES = [1, 7]  # the reference loops are slow: small layers only


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Runner:
    """Starts worker processes and collects what they report (times, memory, BLAS kernels)."""

    def __init__(self, args, folder: str):
        self.args, self.folder = args, folder
        self.env = benchmark_env(args.threads)
        self.blas = {}      # engine -> set of "internal_api architecture version" seen
        self.files = {}
        self.cpu_seconds = 0.0  # CPU time of all benchmark processes (a load-independent cost)

    def worker(self, engine: str, keys, min_time: float, min_runs: int = 5, warmup: int = 2) -> dict:
        job = {"engine": engine, "keys": list(keys), "threads": self.args.threads, "min_time": min_time,
               "min_runs": min_runs, "warmup": warmup, "files": self.files, "folder": self.folder}
        try:
            done = subprocess.run([sys.executable, "-m", "benchmarks.worker", json.dumps(job)],
                                  capture_output=True, text=True, env=self.env, cwd=ROOT,
                                  timeout=self.args.timeout)
        except subprocess.TimeoutExpired:
            return {key: {"error": f"the process ran over --timeout {self.args.timeout:g} s"} for key in keys}
        if done.returncode != 0:
            message = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
            return {key: {"error": message} for key in keys}
        report = json.loads(done.stdout.strip().splitlines()[-1])
        self.cpu_seconds += report.get("process_cpu_seconds", 0.0)
        for lib in report["blas"]:
            if lib.get("internal_api") == "openblas":
                self.blas.setdefault(engine, set()).add(
                    f"{lib['prefix']} {lib.get('version')}: {lib.get('architecture')} kernels, "
                    f"{lib.get('num_threads')} threads")
        if engine.startswith("convscope") and report.get("torch_imported"):
            say(f"  warning: torch was imported in a convscope process ({', '.join(keys)})")
        return report["results"]

    def tool(self, args_) -> dict:
        done = subprocess.run([sys.executable, "-m", "benchmarks.worker", *args_], capture_output=True,
                              text=True, env=self.env, cwd=ROOT)
        if done.returncode != 0:
            return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
        return json.loads(done.stdout.strip().splitlines()[-1])


def new_row(section: str, key: str, label: str, engines, rounds: int, goals=None) -> dict:
    return {"section": section, "key": key, "label": label, "engines": list(engines),
            "times": {e: [None] * rounds for e in engines}, "rss_rise": {e: [None] * rounds for e in engines},
            "params": {}, "errors": {}, "goals": dict(goals or {}), "extra": {}}


def record(row: dict, engine: str, r: int, result: dict) -> None:
    if "error" in result:
        row["errors"].setdefault(engine, []).append(result["error"])
        return
    row["times"][engine][r] = result["seconds"]
    if "rss_rise_mib" in result:
        row["rss_rise"][engine][r] = result["rss_rise_mib"]
    if result.get("params") is not None:
        row["params"][engine] = result["params"]


def show(row: dict, r: int) -> None:
    parts = []
    for engine in row["engines"]:
        t = row["times"][engine][r]
        parts.append(f"{engine} {'error' if t is None else f'{t * 1e3:.2f} ms'}")
    say(f"  round {r + 1} {row['label']}: " + ", ".join(parts))


# ----- sections ------------------------------------------------------------------------------------
def run_conv(runner: Runner, rounds: int, match) -> list:
    rows = {}
    for mode in C.CONV_MODES:
        for i, case in enumerate(C.CONV_CASES):
            key = C.conv_key(mode, i)
            if match(key + " " + case.name):
                goal = C.CONV_GOALS[mode][1]
                rows[key] = new_row(f"conv {mode}", key, case.name, ("convscope", "torch"), rounds, {"torch": goal})
    for r in range(rounds):
        for mode in C.CONV_MODES:
            keys = [k for k in rows if rows[k]["section"] == f"conv {mode}"]
            if not keys:
                continue
            for engine in ("convscope", "torch"):
                results = runner.worker(engine, keys, runner.args.min_time)
                for key in keys:
                    record(rows[key], engine, r, results[key])
            for key in keys:
                show(rows[key], r)
    return list(rows.values())


def run_comparisons(runner: Runner, comparisons, rounds: int, match) -> list:
    rows = []
    for comp in comparisons:
        if match(comp.case.key):
            rows.append((comp, new_row(comp.section, comp.case.key, comp.case.label, ("convscope",) + comp.others,
                                       rounds, comp.goals)))
    for r in range(rounds):
        for comp, row in rows:
            for engine in row["engines"]:
                record(row, engine, r, runner.worker(engine, [row["key"]], runner.args.min_time)[row["key"]])
            show(row, r)
    for comp, row in rows:
        goal = C.MEMORY_GOALS.get(row["key"])
        if goal is not None:
            row["extra"]["memory_goal"] = goal
    return [row for _, row in rows]


def run_scaling(runner: Runner, rounds: int, match) -> list:
    rows = {}
    jobs = []
    for net in C.SCALING:
        for kind in ("infer", "train"):
            keys = [c.key for c in C.scaling_cases(net, kind) if match(c.key)]
            for c in C.scaling_cases(net, kind):
                if c.key in keys:
                    rows[c.key] = new_row("scaling", c.key, c.label, ("convscope", "torch"), rounds)
                    rows[c.key]["extra"].update(net=net, kind=kind, batch=c.batch, size=c.size)
            if keys:
                jobs.append(keys)
    for r in range(rounds):
        for keys in jobs:
            for engine in ("convscope", "torch"):
                # 2 timed calls after 1 warm-up at least: a slope needs less than a goal's ratio,
                # and the slowest points (seconds per call) dominate the run's wall time
                results = runner.worker(engine, keys, runner.args.scaling_min_time, min_runs=2, warmup=1)
                for key in keys:
                    record(rows[key], engine, r, results[key])
            for key in keys:
                show(rows[key], r)
    return list(rows.values())


def run_timed(cmd, env, log_path: str, timeout: float) -> dict:
    """Wall seconds, CPU seconds and peak RSS of one whole process (os.wait4's rusage of that
    child alone), and its last output line; killed after ``timeout`` seconds."""
    with open(log_path, "w") as log:
        started = time.perf_counter()
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        killer = threading.Timer(timeout, process.kill)
        killer.start()
        _, status, usage = os.wait4(process.pid, 0)
        killer.cancel()
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
    with open(log_path) as log:
        lines = [line.strip() for line in log if line.strip()]
    result = {"seconds": wall, "cpu_seconds": usage.ru_utime + usage.ru_stime,
              "peak_rss_mib": usage.ru_maxrss / 1024.0, "last_line": lines[-1] if lines else ""}
    if process.returncode != 0:
        result["error"] = f"exit code {process.returncode}: {result['last_line'][:200]}"
    return result


def run_mainjob(runner: Runner, rounds: int) -> list:
    """`convscope train --data digits` (its defaults: 20 epochs) against
    benchmarks/digits_torch_loop.py, whole processes, alternating."""
    row = new_row("main job", "mainjob/digits", "convscope train --data digits (20 epochs)", ("convscope", "torch"),
                  rounds, {"torch": C.MAIN_JOB_GOAL})
    row["rss_peak"] = {e: [None] * rounds for e in row["engines"]}
    row["cpu"] = {e: [None] * rounds for e in row["engines"]}
    row["extra"]["test_accuracy"] = {e: [] for e in row["engines"]}
    for r in range(rounds):
        for engine in row["engines"]:
            out = os.path.join(runner.folder, f"digits-{engine}-{r}")
            shutil.rmtree(out, ignore_errors=True)
            if engine == "convscope":
                cmd = [sys.executable, "-m", "convscope", "train", "--data", "digits", "--out", out]
            else:
                cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "digits_torch_loop.py"), "--out", out,
                       "--threads", str(runner.args.threads)]
            result = run_timed(cmd, runner.env, out + ".log", runner.args.timeout)
            runner.cpu_seconds += result["cpu_seconds"]
            if "error" in result:
                row["errors"].setdefault(engine, []).append(result["error"])
                continue
            row["times"][engine][r] = result["seconds"]
            row["rss_peak"][engine][r] = result["peak_rss_mib"]
            row["cpu"][engine][r] = result["cpu_seconds"]
            found = re.search(r"test accuracy of .*: ([0-9.]+)%", result["last_line"])
            if found:
                row["extra"]["test_accuracy"][engine].append(float(found.group(1)))
        show(row, r)
    return [row]


def run_reference(runner: Runner, rounds: int) -> list:
    rows = []
    for i in REFERENCE_CASES:
        key = C.conv_key("fwd", i)
        row = new_row("fast/reference", key, C.CONV_CASES[i].name, ("convscope", "convscope-reference"), rounds)
        for r in range(rounds):
            record(row, "convscope", r, runner.worker("convscope", [key], runner.args.min_time)[key])
            record(row, "convscope-reference", r,
                   runner.worker("convscope-reference", [key], runner.args.min_time, min_runs=2, warmup=1)[key])
            show(row, r)
        rows.append(row)
    return rows


def run_summary() -> list:
    """Time of cs.analyze on every zoo model (in this process: it is not a comparison)."""
    import convscope as cs

    cs.analyze(cs.zoo.load("lenet5"), (1, 32, 32))  # warm-up: first imports are not analysis time
    rows = []
    for name in cs.zoo.names():
        model = cs.zoo.load(name)
        shape = tuple(cs.zoo.spec(name)["input"])
        start = time.perf_counter()
        report = cs.analyze(model, shape)
        rows.append({"model": name, "params": report.total_params, "ms": (time.perf_counter() - start) * 1e3})
    return rows


# ----- the record ----------------------------------------------------------------------------------
def versions(env) -> dict:
    code = ("import json, sys, platform, numpy, torch, onnxruntime, threadpoolctl\n"
            "print(json.dumps({'python': platform.python_version(), 'numpy': numpy.__version__, "
            "'torch': torch.__version__, 'onnxruntime': onnxruntime.__version__}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    return json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr.strip()[-200:]}


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per comparison (default 5)")
    parser.add_argument("--scaling-rounds", type=int, default=2, help="rounds of the scaling grid (default 2)")
    parser.add_argument("--min-time", type=float, default=0.5, help="timed seconds per case and process")
    parser.add_argument("--scaling-min-time", type=float, default=0.2)
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"sections: {', '.join(SECTIONS + EXTRA_SECTIONS)} (default: all but the last two)")
    parser.add_argument("--timeout", type=float, default=900,
                        help="seconds after which one benchmark process is stopped and its cases marked failed")
    parser.add_argument("--match", default=None, help="only cases whose key or name contains this text")
    parser.add_argument("--json", default=os.path.join(ROOT, "benchmarks", "last-run.json"))
    parser.add_argument("--readme", action="store_true", help="rewrite the results section of benchmarks/README.md")
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(SECTIONS + EXTRA_SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; choose from "
                     f"{', '.join(SECTIONS + EXTRA_SECTIONS)}")
    if args.rounds < 1 or args.scaling_rounds < 1 or args.threads < 1:
        parser.error("--rounds, --scaling-rounds and --threads must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    parts = args.only.split(",")
    match = (lambda text: True) if not args.match else (lambda text: args.match in text)
    started = time.perf_counter()
    folder = tempfile.mkdtemp(prefix="convscope-bench-")
    runner = Runner(args, folder)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": cpu_model(),
            "cores": os.cpu_count(), "kernel": f"{platform.system()} {platform.release()}",
            "threads": args.threads, "rounds": args.rounds, "scaling_rounds": args.scaling_rounds,
            "min_time": args.min_time, "command": "python -m benchmarks " + " ".join(argv if argv is not None
                                                                                    else sys.argv[1:]),
            "versions": versions(runner.env), "section_seconds": {}, "section_cpu_seconds": {}}
    results = {"meta": meta, "rows": [], "caches": None, "summary": None}
    try:
        for part in parts:
            t0, cpu0 = time.perf_counter(), runner.cpu_seconds
            say(f"{part} ...")
            if part == "conv":
                results["rows"] += run_conv(runner, args.rounds, match)
            elif part == "lenet":
                results["rows"] += run_comparisons(runner, C.LENET_COMPARISONS, args.rounds, match)
            elif part == "nets":
                if any(match(c.case.key) for c in C.NET_COMPARISONS if c.case.net == "mobilenet_v2"):
                    path = os.path.join(folder, "mobilenet_v2.npz")
                    prepared = runner.tool(["--prepare-mobilenet", path])
                    if "error" in prepared:
                        say(f"  mobilenet_v2 conversion failed: {prepared['error']}")
                    else:
                        runner.files["mobilenet_v2"] = path
                results["rows"] += run_comparisons(runner, C.NET_COMPARISONS, args.rounds, match)
            elif part == "memory":
                results["caches"] = runner.tool(["--cache-check", str(args.threads)])
            elif part == "mainjob":
                results["rows"] += run_mainjob(runner, args.rounds)
            elif part == "scaling":
                results["rows"] += run_scaling(runner, args.scaling_rounds, match)
            elif part == "reference":
                results["rows"] += run_reference(runner, 1)
            elif part == "summary":
                results["summary"] = run_summary()
            meta["section_seconds"][part] = round(time.perf_counter() - t0, 1)
            meta["section_cpu_seconds"][part] = round(runner.cpu_seconds - cpu0, 1)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    meta["wall_seconds"] = round(time.perf_counter() - started, 1)
    meta["blas"] = {engine: sorted(kinds) for engine, kinds in runner.blas.items()}
    with open(args.json, "w") as handle:
        json.dump(results, handle, indent=1)
    from .report import render
    text = render(results)
    print(text)
    if args.readme:
        write_readme(text)
        say(f"wrote the results section of {os.path.join('benchmarks', 'README.md')}")
    say(f"results in {args.json}; wall time {meta['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
