"""Free TCP ports for local runs, tests and benchmarks.

Ports are drawn from 20000-29999: below Linux's ephemeral range (32768-60999), where Ray's own
processes bind random ports while a cluster starts (a port found free there can be taken before
Serve's proxy binds it), and below Serve's direct-ingress ranges (30000-31000, 40000-41000).
"""

from __future__ import annotations

import random
import socket

PORT_RANGE = (20000, 29999)


def is_free(port: int) -> bool:
    """True when nothing listens on ``port`` and it can be bound on all interfaces."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_port(rng: random.Random | None = None) -> int:
    """A port in :data:`PORT_RANGE` that is free right now."""
    rng = rng or random.SystemRandom()
    for _ in range(200):
        port = rng.randint(*PORT_RANGE)
        if is_free(port):
            return port
    raise RuntimeError(f"no free port in {PORT_RANGE}")
