"""stop_process: SIGTERM first, SIGKILL after the grace period, the process always reaped."""

import subprocess
import sys
import time

from serve_app.local.processes import stop_process


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
