"""A throwaway local Redis for the local run and the tests (Debian's ``redis-server``).

Listens on 127.0.0.1 only, on a port away from 6379 (Ray's default GCS port), keeps nothing
on disk, and is stopped when the context exits.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

from serve_app.local.ports import free_port
from serve_app.local.processes import stop_process

DEFAULT_PORT = 6390


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@contextmanager
def local_redis(port: int | None = None, timeout_s: float = 10) -> Iterator[str]:
    """Start ``redis-server`` and yield its URL (``redis://127.0.0.1:<port>/0``); stop it afterwards."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: apt-get install redis-server")
    if port is None:
        port = DEFAULT_PORT if _port_free(DEFAULT_PORT) else free_port()
    with tempfile.TemporaryDirectory(prefix="mnist-serve-redis-") as workdir:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + timeout_s
            while _port_free(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {port}")
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            stop_process(process)
