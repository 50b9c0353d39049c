"""Stopping the helper processes the project starts (redis-server, uvicorn, kubectl port-forward)."""

from __future__ import annotations

import subprocess


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
