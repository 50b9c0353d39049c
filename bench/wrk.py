"""Drive an HTTP endpoint with wrk (Debian package ``wrk``) and return exact figures.

wrk is used as the load generator because it is a small C program: at 2 cores it
leaves nearly all the CPU to the server under test. A Lua ``done`` hook prints the
figures as JSON, so nothing is scraped from wrk's human-readable report.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "%(content_type)s"
%(extra_headers)s
local f = io.open("%(body_path)s", "rb")
wrk.body = f:read("*a")
f:close()

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_JSON {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"p50_us\\": %%d, \\"p90_us\\": %%d, "
    .. "\\"p99_us\\": %%d, \\"max_us\\": %%d, \\"connect\\": %%d, \\"read\\": %%d, \\"write\\": %%d, "
    .. "\\"status\\": %%d, \\"timeout\\": %%d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: throughput, latency percentiles (ms) and error counts."""

    connections: int
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    non_2xx: int
    #: CPU the load generator itself used, in cores (CPU seconds per second of the run); None if unknown.
    client_cores: float | None = None

    @property
    def requests_per_s(self) -> float:
        """Completed requests per second (errors included, as wrk counts them)."""
        return self.requests / self.seconds if self.seconds else 0.0


def require_wrk() -> str:
    """Path of the wrk binary, or exit with how to install it."""
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (Debian/Ubuntu) or brew install wrk")
    return path


def run_wrk(
    url: str,
    body: bytes,
    connections: int,
    duration_s: float,
    content_type: str = "application/json",
    timeout_s: int = 10,
    headers: Mapping[str, str] | None = None,
) -> WrkResult:
    """POST ``body`` to ``url`` from ``connections`` connections (1 thread) for ``duration_s``, with ``headers``."""
    wrk = require_wrk()
    with tempfile.TemporaryDirectory(prefix="wrk-") as tmp:
        body_path = Path(tmp) / "body"
        body_path.write_bytes(body)
        script = Path(tmp) / "post.lua"
        extra = "\n".join(f'wrk.headers["{name}"] = "{value}"' for name, value in (headers or {}).items())
        script.write_text(_LUA % {"content_type": content_type, "body_path": body_path, "extra_headers": extra})
        threads = 1 if connections < 16 else 2
        cpu_before = _children_cpu_s()
        completed = subprocess.run(
            [
                wrk,
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(duration_s))}s",
                f"--timeout={timeout_s}s",
                "-s",
                str(script),
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=duration_s + timeout_s + 30,
        )
        client_cpu_s = _children_cpu_s() - cpu_before
    line = next(line for line in completed.stdout.splitlines() if line.startswith("WRK_JSON "))
    figures = json.loads(line.removeprefix("WRK_JSON "))
    seconds = figures["duration_us"] / 1e6
    return WrkResult(
        connections=connections,
        requests=figures["requests"],
        seconds=seconds,
        p50_ms=figures["p50_us"] / 1000,
        p90_ms=figures["p90_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        max_ms=figures["max_us"] / 1000,
        errors=figures["connect"] + figures["read"] + figures["write"] + figures["timeout"],
        non_2xx=figures["status"],
        client_cores=client_cpu_s / seconds if seconds else None,
    )


def _children_cpu_s() -> float:
    """CPU seconds (user + system) used so far by this process's waited-for children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
