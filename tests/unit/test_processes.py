"""stop_process: SIGTERM first, SIGKILL after the grace period, the process always reaped; wait_until_answering."""

import subprocess
import sys
import time

import pytest

from serve_app.local.ports import free_port
from serve_app.local.processes import stop_process, wait_until_answering


def test_a_process_that_honours_sigterm_stops_at_once():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started = time.monotonic()
    stop_process(process, timeout_s=10)
    assert process.returncode is not None and process.returncode < 0  # ended by a signal
    assert time.monotonic() - started < 5


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period():
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    )
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout.readline().strip() == "ready"  # SIGTERM is ignored from here on
        started = time.monotonic()
        stop_process(process, timeout_s=0.5)
        assert process.returncode == -9
        assert 0.4 < time.monotonic() - started < 5


def test_a_finished_process_is_left_alone():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    stop_process(process)
    assert process.returncode == 0


def test_waiting_ends_when_the_server_answers():
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_answering(server, f"http://127.0.0.1:{port}/", "http.server", timeout_s=30)
        assert server.poll() is None
    finally:
        stop_process(server)


def test_waiting_on_a_process_that_exits_says_so():
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    process.wait()
    with pytest.raises(RuntimeError, match="uvicorn exited with 3 before answering"):
        wait_until_answering(process, f"http://127.0.0.1:{free_port()}/", "uvicorn", timeout_s=30)


def test_waiting_on_a_silent_port_gives_up_after_the_timeout():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(RuntimeError, match=r"did not answer on .* within 0\.5 s"):
            wait_until_answering(process, f"http://127.0.0.1:{free_port()}/", "uvicorn", timeout_s=0.5)
    finally:
        stop_process(process)
