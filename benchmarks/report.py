"""Markdown for the results section of benchmarks/README.md, from a run's JSON.

    python -m benchmarks.report [benchmarks/last-run.json] [--readme]

prints the section (and with ``--readme`` writes it between the two markers of
benchmarks/README.md). Figures: per case the median over rounds of each engine's per-process
median time, the median of the per-round ratios convscope / other with their min–max, the
issue-16 goal and whether it is met (benchmarks/stats.py: ``verdict``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from . import cases as C
from .stats import geomean_per_round, loglog_slope, ratio_spread, round_ratios, spread, verdict

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "README.md")
BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"


def fmt_time(seconds) -> str:
    if seconds is None:
        return "—"
    if seconds >= 10:
        return f"{seconds:.1f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    ms = seconds * 1e3
    if ms >= 100:
        return f"{ms:.0f} ms"
    if ms >= 10:
        return f"{ms:.1f} ms"
    if ms >= 0.1:
        return f"{ms:.2f} ms"
    return f"{ms:.3f} ms"


def fmt_spread(s, digits: int = 2) -> str:
    """``median (min–max)``; ratios below 0.1 get a third decimal."""
    if s is None:
        return "—"
    return s.text(3 if digits == 2 and s.low < 0.1 else digits)


def median_time(row, engine):
    s = spread(row["times"][engine])
    return None if s is None else s.median


def goal_text(goal) -> str:
    return "—" if goal is None else f"≤ {goal:g}"


# ----- tables -------------------------------------------------------------------------------------
def ratio_table(rows) -> list:
    lines = ["| section | case | convscope | vs | other | ratio, median (min–max) | goal | status |",
             "|---|---|---:|---|---:|---:|---:|---|"]
    for row in rows:
        ours = row["times"]["convscope"]
        for other in row["engines"][1:]:
            s = ratio_spread(ours, row["times"][other])
            goal = row["goals"].get(other)
            lines.append(f"| {row['section']} | {row['label']} | {fmt_time(median_time(row, 'convscope'))} | "
                         f"{other} | {fmt_time(median_time(row, other))} | {fmt_spread(s)} | {goal_text(goal)} | "
                         f"{verdict(s, goal)} |")
    return lines


def conv_summary(rows) -> list:
    """Per mode: the geometric mean over layers (its spread: the per-round geometric means) and
    the worst layer's median ratio, against the issue's two goals."""
    lines = []
    for mode in C.CONV_MODES:
        mode_rows = [r for r in rows if r["section"] == f"conv {mode}"]
        if not mode_rows:
            continue
        per_case = [round_ratios(r["times"]["convscope"], r["times"]["torch"]) for r in mode_rows]
        mean_goal, each_goal = C.CONV_GOALS[mode]
        g = spread(geomean_per_round(per_case))
        lines.append(f"| conv {mode} | geometric mean over {len(mode_rows)} layers | | torch | | {fmt_spread(g)} | "
                     f"{goal_text(mean_goal)} | {verdict(g, mean_goal)} |")
        medians = [(spread(rr).median, r["label"]) for rr, r in zip(per_case, mode_rows) if spread(rr)]
        if medians:
            worst, name = max(medians)
            over = sum(1 for m, _ in medians if m > each_goal)
            status = "met" if over == 0 else f"not met ({over} of {len(medians)} layers over)"
            lines.append(f"| conv {mode} | worst layer: {name} | | torch | | {worst:.2f} | "
                         f"{goal_text(each_goal)} each | {status} |")
    return lines


def memory_table(rows) -> list:
    lines = ["| case | convscope RSS rise, MiB | torch RSS rise, MiB | ratio, median (min–max) | goal | status |",
             "|---|---:|---:|---:|---:|---|"]
    for row in rows:
        if "torch" not in row["engines"] or not any(v is not None for v in row["rss_rise"].get("convscope", [])):
            continue
        ours, theirs = row["rss_rise"]["convscope"], row["rss_rise"]["torch"]
        s = ratio_spread(ours, theirs)
        goal = row["extra"].get("memory_goal")
        lines.append(f"| {row['label']} | {fmt_spread(spread(ours), 1)} | {fmt_spread(spread(theirs), 1)} | "
                     f"{fmt_spread(s)} | {goal_text(goal)} | {verdict(s, goal)} |")
    for row in rows:
        if "rss_peak" in row:
            ours, theirs = row["rss_peak"]["convscope"], row["rss_peak"]["torch"]
            lines.append(f"| {row['label']}: peak RSS of the whole process | {fmt_spread(spread(ours), 0)} | "
                         f"{fmt_spread(spread(theirs), 0)} | {fmt_spread(ratio_spread(ours, theirs))} | — | — |")
    return lines


def cache_lines(caches) -> list:
    if not caches:
        return []
    if "error" in caches:
        return [f"Inference caches: the check failed ({caches['error']})."]
    lines = ["Inference keeps no backward caches (goal): after one `forward(x, train=False)` of a freshly "
             "built model, the layers whose backward cache (`_cache`) is still set, and the array bytes it "
             "holds beyond weights and reusable work buffers:", "",
             "| model, input | layers holding a cache | cache MiB | work buffers kept, MiB | status |",
             "|---|---:|---:|---:|---|"]
    for key, entry in caches.items():
        case = C.parse_key(key)[1]
        held = entry["holding"]
        lines.append(f"| {case.net} b{case.batch} {case.size}² | {len(held)} of {entry['layers']} | "
                     f"{entry['cache_bytes'] / 2**20:.1f} | {entry['workspace_bytes'] / 2**20:.1f} | "
                     f"{'met' if not held else 'not met'} |")
    return lines


def scaling_tables(rows) -> list:
    rows = [r for r in rows if r["section"] == "scaling"]
    if not rows:
        return []
    lines = []
    for net, (base, sides, batches) in C.SCALING.items():
        for sweep in ("batch", "side"):
            if sweep == "batch":
                xs = sorted(set(b for kind in ("infer", "train") for b in batches[kind]))
                header, where = [f"b={b}" for b in xs], f"at {base}²"
                find = lambda kind, x: _find(rows, net, kind, x, base)  # noqa: E731
                slope = "slope a: time ∝ batch^a (r²)"
            else:
                xs = list(sides)
                header, where = [f"{s}²" for s in xs], f"at batch {C.SCALING_BATCH}"
                find = lambda kind, x: _find(rows, net, kind, C.SCALING_BATCH, x)  # noqa: E731
                slope = "slope b: time ∝ side^b (r²)"
            table = []
            for kind in ("infer", "train"):
                found = [find(kind, x) for x in xs]
                if not any(found):
                    continue
                step = "forward (inference)" if kind == "infer" else "training step"
                for engine in ("convscope", "torch"):
                    times = [None if r is None else median_time(r, engine) for r in found]
                    table.append(f"| {step} | {engine} | {' | '.join(fmt_time(t) for t in times)} | "
                                 f"{_slope(xs, times)} |")
                ratios = [None if r is None else ratio_spread(r["times"]["convscope"], r["times"]["torch"])
                          for r in found]
                shown = ["—" if s is None else f"{s.median:.3f}" if s.median < 0.1 else f"{s.median:.2f}"
                         for s in ratios]
                table.append(f"| {step} | ratio | {' | '.join(shown)} | |")
            if table:
                lines += [f"{net}, {sweep} sweep {where}:", "",
                          f"| step | engine | {' | '.join(header)} | {slope} |",
                          "|---|---|" + "---:|" * (len(header) + 1)] + table + [""]
    return lines


def _find(rows, net, kind, batch, size):
    key = C.NetCase(net, kind, batch, size).key
    return next((r for r in rows if r["key"] == key), None)


def _slope(xs, times) -> str:
    pairs = [(x, t) for x, t in zip(xs, times) if t is not None]
    try:
        a, r2 = loglog_slope([p[0] for p in pairs], [p[1] for p in pairs])
    except ValueError:
        return "—"
    return f"{a:.2f} ({r2:.3f})"


def notes(rows) -> list:
    lines = []
    for row in rows:
        counts = set(row["params"].values())
        if len(counts) > 1:
            lines.append(f"- {row['label']}: parameter counts differ between engines ({row['params']}).")
        acc = row["extra"].get("test_accuracy")
        if acc:
            parts = [f"{e} {min(v):.2f}–{max(v):.2f} %" for e, v in acc.items() if v]
            lines.append(f"- {row['label']}: test accuracy of the best weights, {', '.join(parts)} "
                         "(both train the same model on the same batches).")
        if "cpu" in row:
            parts = [f"{e} {fmt_spread(spread(v), 1)} s" for e, v in row["cpu"].items()]
            lines.append(f"- {row['label']}: CPU time (user + system) of the whole process, {', '.join(parts)}.")
        for engine, errors in row["errors"].items():
            lines.append(f"- {row['label']}: {engine} failed in {len(errors)} round(s): {sorted(set(errors))[0]}")
    return lines


# ----- the section --------------------------------------------------------------------------------
def render(results: dict) -> str:
    meta, rows = results["meta"], results["rows"]
    v = meta.get("versions", {})
    blas = "; ".join(f"{engine}: {', '.join(kinds)}" for engine, kinds in sorted(meta.get("blas", {}).items()))
    cpu = meta.get("section_cpu_seconds", {})
    sections = ", ".join(f"{k} {s / 60:.1f} min" + (f" (CPU {cpu[k] / 60:.1f} min)" if k in cpu else "")
                         for k, s in meta.get("section_seconds", {}).items())
    out = [f"### Results — {meta['date']}", "",
           f"`{meta['command']}`: wall time {meta.get('wall_seconds', 0) / 60:.1f} min ({sections}).", "",
           f"Machine: {meta['cpu']}, {meta['cores']} cores, {meta['kernel']}; Python {v.get('python')}, NumPy "
           f"{v.get('numpy')}, PyTorch {v.get('torch')}, ONNX Runtime {v.get('onnxruntime')}; "
           f"{meta['threads']} threads everywhere. NumPy's OpenBLAS in the benchmark processes: {blas or 'not recorded'}.",
           "",
           f"Rounds: {meta['rounds']} alternating fresh-process rounds per case ({meta['scaling_rounds']} for the "
           f"scaling grid); each process times the median call over at least {meta['min_time']:g} s after warm-up. "
           "Ratio = convscope / other, per round; the table gives the median over rounds and the min–max "
           "of the per-round ratios. **Below 1, convscope is faster.**", ""]
    compared = [r for r in rows if r["section"] not in ("scaling", "fast/reference")]
    if compared:
        out += ["#### Times, ratios and the goals of issue 16", ""]
        out += ratio_table(compared) + conv_summary(compared) + [""]
    memory = memory_table(compared)
    if len(memory) > 2 or results.get("caches"):
        out += ["#### Memory", "",
                "RSS rise: the peak RSS during warm-up and the timed calls minus the RSS after imports, model "
                "build and input data, in the same process (the kernel's peak mark is reset in between).", ""]
        out += (memory + [""] if len(memory) > 2 else []) + cache_lines(results.get("caches")) + [""]
    scaling = scaling_tables(rows)
    if scaling:
        out += ["#### Scaling", "",
                "Median time per call; slopes are least-squares fits of log time on log batch (or side). "
                "a = 1: time grows with the batch; a < 1: a fixed cost per call that larger batches "
                "amortise. b = 2: time grows with the pixels.", ""] + scaling
    reference = [r for r in rows if r["section"] == "fast/reference"]
    if reference:
        out += ["#### Fast paths against the reference loops", ""]
        out += [f"- {r['label']}: fast {fmt_time(median_time(r, 'convscope'))}, reference loops "
                f"{fmt_time(median_time(r, 'convscope-reference'))}" for r in reference] + [""]
    if results.get("summary"):
        out += ["| zoo model | parameters | analyze ms |", "|---|---:|---:|"]
        out += [f"| {s['model']} | {s['params']:,} | {s['ms']:.1f} |" for s in results["summary"]] + [""]
    extra = notes(rows)
    if extra:
        out += ["#### Notes", ""] + extra + [""]
    return "\n".join(out).rstrip() + "\n"


def write_readme(text: str, path: str = README) -> None:
    """Replace what lies between the results markers of benchmarks/README.md with ``text``."""
    with open(path, encoding="utf-8") as handle:
        readme = handle.read()
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{path} has no {BEGIN} ... {END} markers; put them where the results go")
    readme = readme[:start + len(BEGIN)] + "\n" + text + readme[end:]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(readme)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="?", default=os.path.join(os.path.dirname(README), "last-run.json"))
    parser.add_argument("--readme", action="store_true")
    args = parser.parse_args(argv)
    with open(args.json) as handle:
        text = render(json.load(handle))
    print(text)
    if args.readme:
        write_readme(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
