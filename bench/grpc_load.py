r"""Drive a unary gRPC method at fixed concurrency, as wrk drives HTTP, and return the same figures.

    python -m bench.grpc_load --target 127.0.0.1:9000 --method /mnist_serve.v1.Mnist/Predict \
        --body-file request.bin --connections 8 --duration 8

No Debian package drives gRPC (``ghz`` is not packaged), so this is a small load generator of our
own: one process, gRPC's asyncio API (its C core does the HTTP/2 work), one channel (one HTTP/2
connection) per simulated client, each with one call in flight, like wrk's connections. The request
is sent as pre-serialised bytes and the answer is not parsed, so the client's own cost per call is
small; it still is Python, so it reports the CPU it used (``client_cores``), for comparison with
wrk's.

:func:`run_grpc_load` runs it in a subprocess (its GIL and cores apart from the caller's) and
returns a :class:`bench.wrk.WrkResult`, counted as wrk counts: ``requests`` are the answered calls,
``non_2xx`` those answered with a non-OK status (RESOURCE_EXHAUSTED when Serve sheds load, say),
``errors`` the calls that failed at the transport (deadline exceeded, unavailable, cancelled).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.pythonpath import repo_pythonpath
from bench.wrk import WrkResult

#: Status codes counted as transport failures (wrk's socket errors and timeouts); others are non-OK answers.
TRANSPORT_FAILURES = ("DEADLINE_EXCEEDED", "UNAVAILABLE", "CANCELLED")


def summarise(
    latencies_s: Sequence[float], codes: Sequence[str], seconds: float, connections: int, cpu_s: float
) -> dict:
    """The figures of one run, from every call's latency (s) and status code name."""
    latencies = np.asarray(latencies_s, dtype=np.float64) * 1000
    percentile = (lambda q: float(np.percentile(latencies, q))) if latencies.size else (lambda q: 0.0)
    transport = sum(code in TRANSPORT_FAILURES for code in codes)
    return {
        "connections": connections,
        "requests": len(codes) - transport,  # answered calls, as wrk counts requests
        "seconds": seconds,
        "p50_ms": percentile(50),
        "p90_ms": percentile(90),
        "p99_ms": percentile(99),
        "max_ms": float(latencies.max()) if latencies.size else 0.0,
        "errors": transport,
        "non_2xx": sum(code != "OK" for code in codes) - transport,
        "client_cores": cpu_s / seconds if seconds else 0.0,
    }


async def drive(
    target: str,
    method: str,
    body: bytes,
    connections: int,
    duration_s: float,
    timeout_s: float,
    metadata: Sequence[tuple[str, str]] = (),
) -> dict:
    """``connections`` channels, one call in flight each, for ``duration_s``; the summary of the run."""
    import grpc

    channels = [grpc.aio.insecure_channel(target) for _ in range(connections)]
    latencies: list[float] = []
    codes: list[str] = []

    async def client(channel: grpc.aio.Channel, deadline: float) -> None:
        call = channel.unary_unary(method)  # bytes in, bytes out: no (de)serialisation cost here
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                await call(body, timeout=timeout_s, metadata=tuple(metadata))
                code = "OK"
            except grpc.aio.AioRpcError as error:
                code = error.code().name
            latencies.append(time.perf_counter() - started)
            codes.append(code)

    try:
        try:
            await asyncio.wait_for(asyncio.gather(*(c.channel_ready() for c in channels)), timeout=timeout_s)
        except TimeoutError:
            raise SystemExit(f"cannot connect to {target} within {timeout_s:g} s") from None
        cpu_before, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(client(channel, started + duration_s) for channel in channels))
        seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu_before
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))
    return summarise(latencies, codes, seconds, connections, cpu_s)


def run_grpc_load(
    target: str,
    method: str,
    body: bytes,
    connections: int,
    duration_s: float,
    timeout_s: float = 10,
    metadata: Sequence[tuple[str, str]] = (),
) -> WrkResult:
    """Drive ``method`` at ``target`` with ``body`` (and call ``metadata``) from a subprocess; the run's figures."""
    with tempfile.TemporaryDirectory(prefix="grpc-load-") as tmp:
        body_path = Path(tmp) / "request.bin"
        body_path.write_bytes(body)
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.grpc_load",
                "--target",
                target,
                "--method",
                method,
                "--body-file",
                str(body_path),
                "--connections",
                str(connections),
                "--duration",
                str(duration_s),
                "--timeout",
                str(timeout_s),
                *(f"--metadata={key}={value}" for key, value in metadata),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=duration_s + timeout_s + 60,
            # the repository first, so the subprocess imports bench wherever it was started from
            env=os.environ | {"PYTHONPATH": repo_pythonpath()},
        )
    return WrkResult(**json.loads(completed.stdout.strip().splitlines()[-1]))


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point: prints the figures as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m bench.grpc_load", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--target", required=True, help="host:port")
    parser.add_argument("--method", required=True, help="full method path, e.g. /mnist_serve.v1.Mnist/Predict")
    parser.add_argument("--body-file", type=Path, required=True, help="the serialised request message")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    parser.add_argument(
        "--metadata", action="append", default=[], metavar="KEY=VALUE", help="call metadata (repeatable)"
    )
    args = parser.parse_args(argv)
    metadata = [tuple(item.split("=", 1)) for item in args.metadata]
    body = args.body_file.read_bytes()
    figures = asyncio.run(
        drive(args.target, args.method, body, args.connections, args.duration, args.timeout, metadata)
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
