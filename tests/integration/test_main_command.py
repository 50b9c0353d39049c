"""The README's main command: starts the graph, prints curl and gRPC lines that work as printed, stops on Ctrl-C.

SIGTERM (``kill``, a supervisor) stops it the same way: Serve and Ray shut down, the local
redis-server it started is gone, exit code 0.
"""

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time

import pytest

from serve_app.config import REPO_ROOT
from serve_app.local.ports import free_port
from serve_app.tasks import REDIS_URL_ENV


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
# Ctrl-C in a terminal signals the whole foreground process group (Ray's processes too); SIGTERM
# from a supervisor reaches the command alone.
@pytest.mark.parametrize(
    ("stop_signal", "to_group"), [(signal.SIGINT, True), (signal.SIGTERM, False)], ids=["ctrl-c", "sigterm"]
)
def test_main_command_serves_prints_a_working_curl_and_stops_cleanly(stop_signal, to_group):
    http_port, dashboard_port, grpc_port = free_port(), free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serve_app.local",
            "--http-port",
            str(http_port),
            "--dashboard-port",
            str(dashboard_port),
            "--grpc-port",
            str(grpc_port),
        ],
        cwd=REPO_ROOT,
        # As from a user's shell: no Redis URL inherited from this test session's shared Ray, so
        # the command starts (and must stop) its own redis-server.
        env={key: value for key, value in os.environ.items() if key != REDIS_URL_ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:
        lines = []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line or process.poll() is None, "".join(lines)
            lines.append(line)
            if "Press Ctrl-C to stop." in line:
                break
        output = "".join(lines)
        curl_line = next(line.strip() for line in lines if line.strip().startswith("curl") and "/predict " in line)
        assert f"localhost:{http_port}" in curl_line
        answer = subprocess.run(shlex.split(curl_line), capture_output=True, text=True, timeout=60, check=True)
        assert json.loads(answer.stdout)["predicted_label"] == [7], output
        grpc_line = next(line.strip() for line in lines if "serve_app.grpc_client" in line)
        assert f"localhost:{grpc_port}" in grpc_line
        # run as printed: the line names the project's own interpreter, not a bare `python`
        assert grpc_line.startswith(".venv/bin/python ") or grpc_line.startswith(sys.executable)
        answer = subprocess.run(
            shlex.split(grpc_line), cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True
        )
        assert json.loads(answer.stdout)["predicted_label"] == [7], output
        redis_port = int(re.search(r"redis-server at redis://127\.0\.0\.1:(\d+)", output).group(1))
        assert _listening(redis_port)
        stopping = time.monotonic()
        if to_group:
            os.killpg(process.pid, stop_signal)
        else:
            process.send_signal(stop_signal)
        remaining, _ = process.communicate(timeout=120)
        assert process.returncode == 0, remaining
        # it says what it waits for, and the local drain is short (Serve's 30 s is the cluster's)
        assert "stopping: draining Serve's replicas" in remaining and "stopped" in remaining
        print(f"stopped {time.monotonic() - stopping:.1f} s after the signal")
        assert not _listening(http_port) and not _listening(redis_port) and not _listening(grpc_port)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
