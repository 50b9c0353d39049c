"""The helper processes the project starts (redis-server, uvicorn, kubectl port-forward, KServe's server).

Waiting until one answers over HTTP, and stopping it.
"""

from __future__ import annotations

import subprocess
import time

import requests


def stop_process(process: subprocess.Popen, timeout_s: float = 10) -> None:
    """SIGTERM, wait up to ``timeout_s`` seconds, then SIGKILL; the process is always reaped."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_until_answering(process: subprocess.Popen, url: str, name: str, timeout_s: float, poll_s: float = 0.2) -> None:
    """Poll ``url`` until it answers 2xx; RuntimeError if ``process`` exits first or ``timeout_s`` passes.

    ``name`` says which server in the error (``uvicorn``, ``KServe's model server``).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode} before answering")
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not answer on {url} within {timeout_s:g} s")
        time.sleep(poll_s)
