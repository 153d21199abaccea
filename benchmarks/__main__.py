"""convscope vs PyTorch (and ONNX Runtime for inference): times, ratios, peak memory.

    python -m benchmarks [--threads 2] [--min-time 0.5] [--only conv,model,reference,summary] [--markdown]

Every measurement runs in a fresh process (benchmarks/worker.py) with the same thread count
(OMP/OpenBLAS/MKL variables, torch.set_num_threads, cs.set_num_threads, ORT intra-op
threads). Ratios are convscope time / other time: below 1 means convscope is faster.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time

from .cases import CONV_CASES, MODEL_CASES

REFERENCE_CASES = [1, 7]  # the reference loops are slow: small layers only


def run_worker(engine: str, kind: str, index: int, mode: str, threads: int, min_time: float) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    cmd = [sys.executable, "-m", "benchmarks.worker", engine, kind, str(index), mode,
           "--threads", str(threads), "--min-time", str(min_time)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def geomean(values):
    values = [v for v in values if v and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def fmt_ms(result: dict) -> str:
    return "error" if "error" in result else f"{result['seconds'] * 1e3:.2f}"


def ratio(a: dict, b: dict):
    if "error" in a or "error" in b:
        return None
    return a["seconds"] / b["seconds"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-time", type=float, default=0.5)
    parser.add_argument("--only", default="conv,model,reference,summary")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables for benchmarks/README.md")
    args = parser.parse_args(argv)
    parts = set(args.only.split(","))
    rows = []  # (section, case, convscope ms, other engine, other ms, ratio, rss convscope, rss other)

    def record(section, name, ours, other_name, other):
        r = ratio(ours, other)
        rows.append((section, name, fmt_ms(ours), other_name, fmt_ms(other),
                     "-" if r is None else (f"{r:.2f}" if r >= 0.01 else f"1/{1 / r:,.0f}"),
                     "-" if "error" in ours else f"{ours['peak_rss_mb']:.0f}",
                     "-" if "error" in other else f"{other['peak_rss_mb']:.0f}", r))
        print(f"  {section:10s} {name:36s} convscope {fmt_ms(ours):>9s} ms  {other_name} {fmt_ms(other):>9s} ms"
              f"  ratio {'-' if r is None else f'{r:.2f}'}" + (f"  [{ours.get('error') or other.get('error')}]"
                                                             if r is None else ""), file=sys.stderr, flush=True)

    if "conv" in parts:
        for mode in ("fwd", "fwdbwd"):
            for i, case in enumerate(CONV_CASES):
                ours = run_worker("convscope", "conv", i, mode, args.threads, args.min_time)
                theirs = run_worker("torch", "conv", i, mode, args.threads, args.min_time)
                record(f"conv {mode}", case.name, ours, "torch", theirs)
    if "model" in parts:
        for i, case in enumerate(MODEL_CASES):
            ours = run_worker("convscope", "model", i, "-", args.threads, args.min_time)
            record("model", case.name, ours, "torch", run_worker("torch", "model", i, "-", args.threads, args.min_time))
            if case.kind == "infer":
                record("model", case.name, ours, "onnxruntime",
                       run_worker("onnxruntime", "model", i, "-", args.threads, args.min_time))
    if "reference" in parts:
        for i in REFERENCE_CASES:
            fast = run_worker("convscope", "conv", i, "fwd", args.threads, args.min_time)
            ref = run_worker("convscope-reference", "conv", i, "fwd", args.threads, args.min_time)
            record("fast/ref", CONV_CASES[i].name, fast, "reference", ref)

    summary_rows = []
    if "summary" in parts:
        import convscope as cs
        cs.analyze(cs.zoo.load("lenet5"), (1, 32, 32))  # warm-up: first imports are not analysis time
        for name in cs.zoo.names():
            model = cs.zoo.load(name)
            shape = tuple(cs.zoo.spec(name)["input"])
            start = time.perf_counter()
            report = cs.analyze(model, shape)
            summary_rows.append((name, report.total_params, (time.perf_counter() - start) * 1e3))

    print_tables(rows, summary_rows, args)
    return 0


def print_tables(rows, summary_rows, args):
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} threads"
    conv = {mode: [r[8] for r in rows if r[0] == f"conv {mode}"] for mode in ("fwd", "fwdbwd")}
    lines = [f"convscope benchmarks — {time.strftime('%Y-%m-%d')} — {machine} — Python {platform.python_version()}",
             "", "| section | case | convscope ms | vs | other ms | ratio | RSS MB convscope | RSS MB other |",
             "|---|---|---:|---|---:|---:|---:|---:|"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]} | {r[6]} | {r[7]} |" for r in rows]
    for mode, ratios in conv.items():
        if ratios:
            valid = [r for r in ratios if r is not None]
            lines.append(f"\nconv {mode}: geometric mean ratio {geomean(valid):.2f}, worst {max(valid):.2f}"
                         if valid else f"\nconv {mode}: no valid ratios")
    if summary_rows:
        lines += ["", "| zoo model | parameters | analyze ms |", "|---|---:|---:|"]
        lines += [f"| {n} | {p:,} | {ms:.1f} |" for n, p, ms in summary_rows]
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
