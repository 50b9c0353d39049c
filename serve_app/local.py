"""The embedded default: serve the whole graph on a local Ray (CPU).

    python -m serve_app.local                    # or: mnist-serve
    python -m serve_app.local --config my.yaml

Runs ``serve run <config>`` (Ray's own CLI: it starts a local Ray and deploys
the config exactly as written), waits until ``/healthz`` answers, prints a curl
line that works as printed, and on Ctrl-C lets Serve shut down cleanly.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml

from serve_app.config import REPO_ROOT, SERVE_CONFIG_PATH

EXAMPLE_DIGIT = REPO_ROOT / "examples" / "digits" / "digit.json"
STARTUP_TIMEOUT_S = 300
SHUTDOWN_TIMEOUT_S = 60


def http_port(config_path: Path) -> int:
    """The proxy port the Serve config asks for (Serve's default, 8000, if unset)."""
    config = yaml.safe_load(config_path.read_text())
    return int((config.get("http_options") or {}).get("port", 8000))


def serve_cli() -> list[str]:
    """The ``serve`` command of the Ray installation beside this interpreter."""
    beside = Path(sys.executable).with_name("serve")
    found = str(beside) if beside.exists() else shutil.which("serve")
    if found is None:
        raise SystemExit("the 'serve' command of ray[serve] is not installed")
    return [found]


def wait_until_healthy(url: str, process: subprocess.Popen, timeout_s: float) -> None:
    """Poll ``url`` until it answers 200; fail early if ``process`` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"serve run exited with code {process.returncode} before the app was up")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise SystemExit(f"the app did not answer {url} within {timeout_s} s")


def banner(port: int) -> str:
    """What to tell the user once the app answers."""
    base = f"http://localhost:{port}"
    return f"""
mnist-serve is up on a local Ray (CPU).

  classify a real digit (a 7):
    curl -s -X POST {base}/predict -H 'Content-Type: application/json' -d @{EXAMPLE_DIGIT}
  upload an image:
    curl -s -X POST {base}/predict/image -F files=@{EXAMPLE_DIGIT.with_name("digit-3.png")}
  API docs:        {base}/docs
  health:          {base}/healthz
  Ray dashboard:   http://localhost:8265

Press Ctrl-C to stop.
"""


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    """SIGTERM (from a supervisor, say) stops the app like Ctrl-C does."""
    raise KeyboardInterrupt


def run(config_path: Path) -> int:
    """Start ``serve run``, announce the app, and stop it cleanly on Ctrl-C or SIGTERM."""
    port = http_port(config_path)
    process = subprocess.Popen([*serve_cli(), "run", str(config_path)], cwd=REPO_ROOT)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}/healthz", process, STARTUP_TIMEOUT_S)
        print(banner(port), flush=True)
        return process.wait()
    except KeyboardInterrupt:
        print("\nstopping: shutting Serve and the local Ray down ...", flush=True)
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        print("stopped.", flush=True)
        return 0
    finally:
        if process.poll() is None:
            process.kill()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=SERVE_CONFIG_PATH, help="a Serve config file")
    args = parser.parse_args(argv)
    sys.exit(run(args.config.resolve()))


if __name__ == "__main__":
    main()
