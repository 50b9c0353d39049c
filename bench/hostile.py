"""Hostile requests against a local run: status, time, and the Ingress's memory before and after each.

    python -m bench.hostile                   # every case against a fresh local run
    python -m bench.hostile --slow-sockets 200 --slow-seconds 90

Starts the app from the one Serve config on a local Ray (as the main command does) and sends,
one case at a time: JSON nested 2,000 and 100,000 levels deep, a ``.npy`` header that claims 10**12
elements, a 500 MB chunked body, a body whose Content-Length claims 10 GB, malformed multipart, an
unknown route and a wrong method; then opens slow sockets, silent ones and ones that send their
headers a byte every 5 s, and reports how long the entry (HAProxy, or Serve's proxy with
``--http-entry proxy``) holds them. After each case it reads the Ingress replica's resident
memory (VmRSS) and checks that a real digit is still classified. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlparse

import numpy as np
import requests

from bench.memory import rss_mib
from serve_app.config import APP_NAME
from serve_app.local.cluster import LocalCluster, local_cluster
from serve_app.local.ports import free_port
from serve_app.local.serve_config import load_serve_config
from serve_app.training.examples import EXAMPLES_DIR

DIGIT = (EXAMPLES_DIR / "digit.json").read_bytes()


@dataclass(frozen=True)
class Outcome:
    """What one hostile request got."""

    case: str
    status: str
    seconds: float
    body: str
    rss_before_mib: float
    rss_after_mib: float
    still_serves: bool


def ingress_pid(cluster: LocalCluster) -> int:
    """The Ingress replica's process id (the first one)."""
    deployments = cluster.dashboard.status()["applications"][APP_NAME]["deployments"]
    return next(r["pid"] for r in deployments["Ingress"]["replicas"] if r["state"] == "RUNNING")


def nested_json(depth: int) -> bytes:
    """``{"image": [[[ ... ]]]}`` nested ``depth`` lists deep."""
    return b'{"image": ' + b"[" * depth + b"]" * depth + b"}"


def huge_npy_header() -> bytes:
    """A 228-byte ``.npy`` file whose header declares 10**12 uint8 elements."""
    header = "{'descr': '|u1', 'fortran_order': False, 'shape': (1000000, 1000, 1000), }"
    header = header + " " * (117 - len(header)) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + b"\x00" * 100


def chunked(total_bytes: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    """A body streamed in chunks (Transfer-Encoding: chunked): a JSON array of zeros, never closed."""
    yield b'{"image": ['
    sent = 0
    block = b"0," * (chunk // 2)
    while sent < total_bytes:
        yield block
        sent += len(block)


def lying_content_length(url: str) -> tuple[int, str]:
    """A request that claims a 10 GB body and sends 2 bytes, over a raw socket."""
    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=30) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10000000000\r\n\r\n{}"
        )
        reply = sock.recv(4096).decode(errors="replace")
    status_line, _, rest = reply.partition("\r\n")
    return int(status_line.split()[1]), rest.rpartition("\r\n\r\n")[2][:120]


def answer_of(response: requests.Response) -> tuple[object, str]:
    """(status, body excerpt) of a response."""
    return response.status_code, response.text[:120]


def cases(base: str) -> list[tuple[str, Callable[[], tuple[object, str]]]]:
    """(name, send) for every single-request case; send returns (status, body excerpt)."""

    def post(path: str, **kwargs: object) -> Callable[[], tuple[object, str]]:
        def send() -> tuple[object, str]:
            try:
                response = requests.post(base + path, timeout=300, **kwargs)  # type: ignore[arg-type]
            except requests.RequestException as error:
                return type(error).__name__, str(error)[:120]
            return response.status_code, response.text[:120]

        return send

    npy_headers = {"Content-Type": "application/x-npy"}
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((2, 28, 28), dtype=np.uint8))
    truncated_npy = buffer.getvalue()[:-100]
    multipart = {"Content-Type": "multipart/form-data; boundary=xyz"}
    return [
        ("JSON nested 2,000 deep", post("/predict", data=nested_json(2_000))),
        ("JSON nested 100,000 deep", post("/predict", data=nested_json(100_000))),
        ("JSON nested 100,000 deep to /tasks", post("/tasks", data=nested_json(100_000))),
        (".npy header claiming 10^12 elements", post("/predict", data=huge_npy_header(), headers=npy_headers)),
        (".npy shorter than its header says", post("/predict", data=truncated_npy, headers=npy_headers)),
        ("500 MB chunked JSON body", post("/predict", data=chunked(500 * 2**20))),
        ("Content-Length claiming 10 GB", lambda: lying_content_length(base)),
        ("malformed multipart", post("/predict/image", data=b"garbage", headers=multipart)),
        ("multipart without files", post("/predict/image", data=b"--xyz--\r\n", headers=multipart)),
        ("unknown route", post("/nowhere", json={})),
        (
            "wrong method",
            lambda: (lambda r: (r.status_code, r.text[:120]))(requests.delete(base + "/predict", timeout=30)),
        ),
    ]


def still_serves(base: str) -> bool:
    """A real digit (a 7) is still classified."""
    response = requests.post(base + "/predict", data=DIGIT, headers={"Content-Type": "application/json"}, timeout=60)
    return response.status_code == 200 and response.json()["predicted_label"] == [7]


def slow_sockets(base: str, count: int, seconds: float, trickle: bool) -> tuple[int, float, float]:
    """How long the entry holds ``count`` sockets that send nothing, or (``trickle``) headers slowly.

    A trickling socket sends a request's headers one byte every 5 s. Returns how many the entry
    still held after ``seconds``, and the median and longest time it took to close the others.
    """
    parsed = urlparse(base)
    request = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Pad: " + b"a" * 400
    closed_after: list[float] = []
    lock = threading.Lock()

    def hold() -> None:
        started = time.monotonic()
        try:
            with socket.create_connection((parsed.hostname, parsed.port), timeout=10) as sock:
                sock.settimeout(5)
                for byte in request:
                    if time.monotonic() - started > seconds:
                        return
                    if trickle:
                        sock.sendall(bytes([byte]))
                    try:
                        if sock.recv(1024) == b"":  # the entry closed the connection
                            raise ConnectionResetError
                    except TimeoutError:
                        pass
        except OSError:
            with lock:
                closed_after.append(time.monotonic() - started)

    threads = [threading.Thread(target=hold, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 30)
    held = count - len(closed_after)
    times = sorted(closed_after) or [float("nan")]
    return held, times[len(times) // 2], times[-1]


def run(args: argparse.Namespace) -> list[Outcome]:
    """Start a local run and send every case."""
    config = load_serve_config(http_port=free_port(), grpc_port=free_port())
    outcomes = []
    with local_cluster(config, dashboard_port=free_port(), log_to_driver=False, http_entry=args.http_entry) as cluster:
        base = cluster.http_url
        assert still_serves(base), "the app does not classify a digit before the cases"
        pid = ingress_pid(cluster)
        for name, send in cases(base):
            before = rss_mib(pid)
            started = time.perf_counter()
            status, body = send()
            seconds = time.perf_counter() - started
            outcomes.append(Outcome(name, str(status), seconds, body, before, rss_mib(pid), still_serves(base)))
            print(f"{name}: {status} in {seconds:.2f} s", flush=True)
        for trickle, what in ((False, "sending nothing"), (True, "sending headers a byte every 5 s")):
            before = rss_mib(pid)
            started = time.perf_counter()
            held, median, longest = slow_sockets(base, args.slow_sockets, args.slow_seconds, trickle)
            closed = args.slow_sockets - held
            outcomes.append(
                Outcome(
                    f"{args.slow_sockets} sockets {what}, watched for {args.slow_seconds:.0f} s",
                    f"{held} held, {closed} closed",
                    time.perf_counter() - started,
                    f"closed after {median:.0f} s (median), {longest:.0f} s (longest)" if closed else "none closed",
                    before,
                    rss_mib(pid),
                    still_serves(base),
                )
            )
    return outcomes


def table(outcomes: list[Outcome]) -> str:
    """The outcomes as a Markdown table."""
    rows = [
        "| case | answer | time | Ingress RSS before / after | digit after | body |",
        "|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        body = json.dumps(o.body)[1:-1].replace("|", "\\|")
        rows.append(
            f"| {o.case} | {o.status} | {o.seconds:.2f} s | {o.rss_before_mib:.0f} / {o.rss_after_mib:.0f} MiB"
            f" | {'ok' if o.still_serves else 'FAILED'} | `{body}` |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    """Run the cases and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow-sockets", type=int, default=200)
    parser.add_argument("--slow-seconds", type=float, default=60.0)
    parser.add_argument("--http-entry", choices=("haproxy", "proxy"), default=None)
    print(table(run(parser.parse_args(argv))))


if __name__ == "__main__":
    main()
