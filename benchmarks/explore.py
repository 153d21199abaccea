"""The explorer's response times (issue 13's targets), on resnet18 at 3×224×224.

    python -m benchmarks.explore [--repeat 5]

1. page interactive: from the server printing its address (it is listening) to the page's
   ``body[data-ready]`` in headless chromium (/usr/bin/chromium, Playwright), median of
   ``--repeat`` page loads against one server; also from launching the command (model built,
   first forward) to the address. Target: 2 s.
2. feature maps of one 224×224 image: ``Explorer.set_sample`` (decode, resize, the forward
   through resnet18 recording every layer) plus ``maps()`` of the first conv layer, in process.
   Target: 1 s.
3. unit click: ``GET /api/unit`` over HTTP for a unit of the first, a middle and the last
   conv layer (the answer the page waits for). Target: 200 ms.

OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are unset (see benchmarks/README.md). These are
wall-clock times on whatever else the machine is doing: quote the median and the spread.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env():
    env = dict(os.environ)
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(var, None)
    env["PYTHONPATH"] = os.path.join(ROOT, "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _summary(name, seconds, target):
    med = statistics.median(seconds)
    print(f"{name:<42} median {1000 * med:8.1f} ms   min {1000 * min(seconds):8.1f}   max "
          f"{1000 * max(seconds):8.1f}   target {1000 * target:.0f} ms   {'ok' if med <= target else 'OVER'}")


def page_and_units(repeat: int):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1500, "height": 1000})  # the browser is ready first
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "convscope", "explore", "resnet18", "--port", "0",
                                 "--no-browser"], stdout=subprocess.PIPE, text=True, env=_env())
        try:
            line = proc.stdout.readline()
            listening = time.perf_counter()
            url = line.split("serving at ")[1].split()[0].rstrip("/")
            page.goto(url)
            page.wait_for_selector("body[data-ready=true]", timeout=60_000)
            ready = time.perf_counter()
            page.close()
            print(f"{'command start -> listening (build + forward)':<42} {1000 * (listening - started):8.1f} ms")
            _summary("listening -> first page interactive", [ready - listening], 2.0)
            loads = []
            for _ in range(repeat):
                page = browser.new_page(viewport={"width": 1500, "height": 1000})
                t0 = time.perf_counter()
                page.goto(url)
                page.wait_for_selector("body[data-ready=true]", timeout=60_000)
                loads.append(time.perf_counter() - t0)
                page.close()
            _summary("reload -> interactive (resnet18)", loads, 2.0)
            for layer, unit in (("0", "5,50,60"), ("10.body.0", "10,5,5"), ("16.body.3", "100,3,3")):
                times = []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    with urllib.request.urlopen(f"{url}/api/unit?layer={layer}&unit={unit}") as response:
                        response.read()
                    times.append(time.perf_counter() - t0)
                _summary(f"unit click /api/unit layer {layer}", times, 0.2)
        finally:
            proc.send_signal(2)
            proc.wait(timeout=30)
            browser.close()


def feature_maps(repeat: int):
    sys.path.insert(0, os.path.join(ROOT, "src"))
    from convscope.explore.session import Explorer

    explorer = Explorer("resnet18")
    times = []
    for k in range(repeat):
        t0 = time.perf_counter()
        explorer.set_sample("flower" if k % 2 == 0 else "china")
        explorer.maps("0")
        times.append(time.perf_counter() - t0)
    _summary("feature maps, one 224×224 image (resnet18)", times, 1.0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    if os.environ.get("OPENBLAS_CORETYPE") or os.environ.get("OPENBLAS_L2_SIZE"):
        # Re-run without the variables that force slower OpenBLAS kernels (as the other benchmarks do).
        sys.exit(subprocess.call([sys.executable, "-m", "benchmarks.explore", *(argv or sys.argv[1:])],
                                 env=_env(), cwd=ROOT))
    page_and_units(args.repeat)
    feature_maps(args.repeat)


if __name__ == "__main__":
    main()
