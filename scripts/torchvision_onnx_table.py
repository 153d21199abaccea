"""Regenerate docs/torchvision-onnx.md: every torchvision CNN classifier in tests/onnx_models.py
through torch's ONNX exporters and ``from_onnx``, checked against the torch module.

Each model × exporter cell runs in its own process (a crash or a memory blow-up costs one cell,
and each import's time is measured in a fresh process). Results are kept in a JSON file so an
interrupted run resumes where it stopped (``--fresh`` starts over).

    nice -n 19 python scripts/torchvision_onnx_table.py              # every cell, then the table
    nice -n 19 python scripts/torchvision_onnx_table.py --models resnet18 --exporters dynamo
    python scripts/torchvision_onnx_table.py --table-only            # rewrite the markdown

A cell passes when the outputs are within 1e-4 of torch's (relative to the largest logit), the
top-1 classes are equal, the file's parameters plus those the folding note accounts for equal
torch's, the analysis counts the file's parameters, and the MACs equal the conv+linear count
taken with forward hooks on the torch module (fvcore's definition).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "src"), os.path.join(ROOT, "tests"), ROOT]

import onnx_models as om  # noqa: E402

#: Extra cells: TorchScript opsets across the issue's range 13..20 on a few models.
OPSET_MODELS = ("resnet18", "convnext_tiny", "mobilenet_v3_small")
OPSETS = (13, 17, 20)
TOLERANCE = 1e-4


def cells(models, exporters, opsets: bool):
    out = [(m, e) for m in models for e in exporters]
    if opsets:
        out += [(m, f"torchscript-opset{v}") for m in OPSET_MODELS if m in models for v in OPSETS]
    return out


def verdict(r: dict) -> list:
    """The checks a measured cell fails (empty: it passes)."""
    if "failure" in r:
        return [r["failure"]]
    bad = []
    if not r["error"] < TOLERANCE:
        bad.append(f"error {r['error']:.1e}")
    if not r["top1"]:
        bad.append("top-1 differs")
    if not om.params_accounted(r):
        bad.append(f"params {r['params_file']:,} + note {r['params_note']:,} != torch {r['params_torch']:,}")
    if r["params_report"] != r["params_file"]:
        bad.append("analysis params differ from the model's")
    if r["macs"] != r["macs_hook"]:
        bad.append(f"MACs {r['macs']:,} != hook {r['macs_hook']:,}")
    return bad


def run_cell(name: str, exporter: str) -> dict:
    """Export and measure one cell in this process (the child side)."""
    import time
    module, x = om.build(name)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, f"{name}.onnx")
        start = time.perf_counter()
        om.export(module, x, path, exporter)
        export_seconds = time.perf_counter() - start
        size = os.path.getsize(path)
        import onnx
        opset = max(o.version for o in onnx.load(path, load_external_data=False).opset_import
                    if o.domain in ("", "ai.onnx"))
        try:
            r = om.measure(module, x, path)
        except Exception as error:  # a refusal is a result: recorded, first line only
            return {"failure": f"{type(error).__name__}: {str(error).splitlines()[0][:300]}",
                    "export_seconds": export_seconds}
    del r["model"]
    r.update(export_seconds=export_seconds, bytes=size, input=list(x.shape), commit=_commit(), opset=opset)
    return r


def _commit() -> str:
    """The checkout's commit (short), with "+" when files differ from it: what a cell measured."""
    def git(*args):
        return subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True).stdout.strip()
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+" if git("status", "--porcelain", "--untracked-files=no") else "")


def run_in_child(name: str, exporter: str, timeout: float) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--cell", name, exporter]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"failure": f"not finished within {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"failure": f"process ended with {done.returncode}: {tail[:300]}"}
    return json.loads(lines[-1])


def machine() -> str:
    import torch
    from benchmarks.env import cpu_model
    cpu = cpu_model()
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"


def markdown(results: dict, when: str, where: str, remark: str = "") -> str:
    rows, passed = [], 0
    for key in sorted(results, key=lambda k: (k.split("|")[0], k.split("|")[1])):
        name, exporter = key.split("|")
        r = results[key]
        bad = verdict(r)
        passed += not bad
        if "failure" in r:
            rows.append(f"| {name} | {exporter} | – | – | – | – | – | – | – | – | {r.get('commit', '–')} "
                        f"| FAIL: {r['failure']} |")
            continue
        rows.append(f"| {name} | {exporter} | {r.get('opset', '–')} "
                    f"| {r['params_file']:,} / {r['params_torch']:,} / {r['params_note']:,} "
                    f"| {r['macs']:,} | {r['macs_hook']:,} | {r['error']:.1e} | {'yes' if r['top1'] else 'NO'} "
                    f"| {r['seconds']:.2f} | {r['export_seconds']:.0f} | {r.get('commit', '–')} "
                    f"| {'pass' if not bad else 'FAIL: ' + '; '.join(bad)} |")
    return f"""# torchvision's CNN classifiers through ONNX and `from_onnx`

Generated by `nice -n 19 python scripts/torchvision_onnx_table.py` on {when} ({where}).
**{passed} of {len(results)} model × exporter cells pass.**{chr(10) + chr(10) + remark if remark else ""}

Models: tests/onnx_models.py `ALL_CLASSIFIERS`, all 68 of torchvision 0.28's CNN classifiers (ViT,
Swin and MaxViT aside), weights=None, eval mode, batch-norm
running statistics drawn at random (means in [−0.5, 0.5], variances in [0.5, 2]) so that no batch
norm is the identity. Input: one
3×64×64 image (AlexNet and VGG 224, Inception-v3 75).

Exporters (torch 2.13): `torchscript` = `torch.onnx.export(dynamo=False)` with constant folding
(the default; it folds batch norms into the convolutions), `torchscript-nofold` =
`do_constant_folding=False`, `dynamo` = `dynamo=True` (torch 2.13's default exporter),
`torchscript-opsetN` = constant folding at opset N. Both exporters write opset 20 unless told
otherwise (the opset column, where recorded, is read from the file).

Columns: params as *file / torch / note* (the note is the number of parameters the summary's
folding line accounts for: folded batch norms and the all-zero biases the dynamo exporter drops;
a cell passes only when file + note = torch exactly, or, where the folded convolutions had biases
of their own (VGG's `*_bn`; the file cannot record it, and the note gives both numbers), file +
note + one bias per folded output channel = torch); MACs of `cs.analyze` and the conv+linear
count from forward hooks on the torch module (fvcore's definition), which must be equal; the
largest |ours − torch| relative to the largest |torch| logit (must be < 1e-4, float32); top-1
equal; `from_onnx` time in seconds (a fresh process, the machine shared and the job at nice 19,
so indicative only); the export's time; the commit the cell ran on ("+": with uncommitted
changes; "–": not recorded, cells run before the script recorded it).

| model | exporter | opset | params file / torch / note | MACs ours | MACs hook | max rel. error | top-1 equal | import s | export s | code | verdict |
|---|---|---|---|---|---|---|---|---|---|---|---|
""" + "\n".join(rows) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=om.ALL_CLASSIFIERS)
    parser.add_argument("--exporters", nargs="*", default=list(om.EXPORTERS))
    parser.add_argument("--no-opsets", action="store_true", help="skip the TorchScript opset 13/17/20 cells")
    parser.add_argument("--results", default=os.path.join(ROOT, "docs", "torchvision-onnx.json"))
    parser.add_argument("--output", default=os.path.join(ROOT, "docs", "torchvision-onnx.md"))
    parser.add_argument("--fresh", action="store_true", help="re-run cells already in the results file")
    parser.add_argument("--failed", action="store_true", help="re-run the cells that failed")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--remark", default="", help="a paragraph to print under the totals")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per cell")
    parser.add_argument("--cell", nargs=2, metavar=("MODEL", "EXPORTER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cell:
        print(json.dumps(run_cell(*args.cell)))
        return 0
    results = {}
    if os.path.exists(args.results):
        with open(args.results) as f:
            results = json.load(f)
    if not args.table_only:
        for name, exporter in cells(args.models, args.exporters, not args.no_opsets):
            key = f"{name}|{exporter}"
            if key in results and not args.fresh and not (args.failed and verdict(results[key])):
                continue
            results[key] = run_in_child(name, exporter, args.timeout)
            print(key, "; ".join(verdict(results[key])) or "pass", flush=True)
            with open(args.results, "w") as f:
                json.dump(results, f, indent=1, sort_keys=True)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with open(args.output, "w") as f:
        f.write(markdown(results, when, machine(), args.remark))
    return 0


if __name__ == "__main__":
    sys.exit(main())
