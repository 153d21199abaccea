"""The environment of every benchmark process (and only theirs): the same thread count for every
library, and OpenBLAS left to pick its kernel for this CPU.

OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, which some environments set (these machines set Haswell),
make NumPy's OpenBLAS run slower kernels than it picks by itself on a user's machine (sgemm 210
against 383 GF/s here); benchmarks unset them, tests keep them (DESIGN.md, Benchmarks).
"""
from __future__ import annotations

import os
import platform

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def benchmark_env(threads: int) -> dict:
    """A copy of os.environ with OMP/OPENBLAS/MKL_NUM_THREADS = ``threads``, without
    OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, and this checkout's src first on PYTHONPATH."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(var, None)
    src = os.path.join(ROOT, "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (else what platform knows), for result headers."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
