"""Helpers for the explorer tests: run ``convscope explore`` as a real server process."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def env():
    out = dict(os.environ)
    out["PYTHONPATH"] = SRC + os.pathsep + out.get("PYTHONPATH", "")
    out["MPLBACKEND"] = "Agg"
    return out


class Server:
    """``python -m convscope explore ARGS --port 0 --no-browser``; ``url`` once it listens."""

    def __init__(self, *args, timeout: float = 240.0):
        self.proc = subprocess.Popen([sys.executable, "-m", "convscope", "explore", *args, "--port", "0",
                                      "--no-browser"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env())
        line = self.proc.stdout.readline()  # blocks until the address is printed (or the process ends)
        match = re.search(r"http://[^\s]+/", line)
        if not match:
            self.proc.kill()
            raise RuntimeError(f"explorer did not start: {line!r} {self.proc.stderr.read()!r}")
        self.url = match.group(0).rstrip("/")

    def get(self, path: str, params=None):
        """(status, JSON) of a GET."""
        from urllib.parse import urlencode
        query = f"?{urlencode(params)}" if params else ""
        return self.request(path + query)

    def request(self, path: str, data: bytes = None, headers=None, method=None):
        req = urllib.request.Request(self.url + path, data=data, headers=headers or {}, method=method)
        try:
            with urllib.request.urlopen(req, timeout=120) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def post_json(self, path: str, body):
        return self.request(path, json.dumps(body).encode(), {"Content-Type": "application/json"}, "POST")

    def stop(self) -> int:
        """Ctrl-C (SIGINT) and the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.proc.returncode


def train_digits(out_dir: str) -> str:
    """A real digits run (2 epochs) in ``out_dir``; returns the path of model.npz."""
    subprocess.run([sys.executable, "-m", "convscope", "train", "--data", "digits", "--epochs", "2", "--quiet",
                    "--out", out_dir], check=True, env=env(), capture_output=True, timeout=600)
    return os.path.join(out_dir, "model.npz")


def wait(condition, timeout: float = 30.0):
    end = time.time() + timeout
    while time.time() < end:
        if condition():
            return True
        time.sleep(0.1)
    return False
