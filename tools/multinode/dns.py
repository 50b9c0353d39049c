"""The pod network's cluster DNS: a small UDP DNS server for the Services' names.

In Kubernetes a pod resolves ``<service>.<namespace>.svc.cluster.local`` through the nameserver
in its /etc/resolv.conf (the cluster DNS). Ray's gRPC clients resolve names with c-ares, which asks
that nameserver and skips /etc/hosts, so the pod network runs one too: it answers A queries for the
names it knows, an empty answer for their other record types, and NXDOMAIN for anything else.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading
from dataclasses import dataclass, field

TYPE_A = 1
CLASS_IN = 1
TTL_S = 5
_FLAGS_ANSWER = 0x8180  # a response, recursion desired and available, NOERROR
_RCODE_NXDOMAIN = 3


def parse_question(message: bytes) -> tuple[int, str, int, int, int]:
    """(query id, name, qtype, qclass, end offset of the question) of a DNS query."""
    query_id, _flags, questions = struct.unpack("!HHH", message[:6])
    if questions != 1:
        raise ValueError("one question per query")
    labels, offset = [], 12
    while message[offset]:
        length = message[offset]
        labels.append(message[offset + 1 : offset + 1 + length].decode("ascii").lower())
        offset += 1 + length
    qtype, qclass = struct.unpack("!HH", message[offset + 1 : offset + 5])
    return query_id, ".".join(labels), qtype, qclass, offset + 5


def answer(message: bytes, records: dict[str, str]) -> bytes:
    """The response to a query: an A record for a known name, NXDOMAIN for an unknown one."""
    query_id, name, qtype, qclass, end = parse_question(message)
    question = message[12:end]
    address = records.get(name.rstrip("."))
    if address is None:
        header = struct.pack("!HHHHHH", query_id, _FLAGS_ANSWER | _RCODE_NXDOMAIN, 1, 0, 0, 0)
        return header + question
    if qtype != TYPE_A or qclass != CLASS_IN:
        return struct.pack("!HHHHHH", query_id, _FLAGS_ANSWER, 1, 0, 0, 0) + question
    record = struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, TTL_S, 4) + ipaddress.IPv4Address(address).packed
    return struct.pack("!HHHHHH", query_id, _FLAGS_ANSWER, 1, 1, 0, 0) + question + record


@dataclass
class ClusterDNS:
    """A DNS server on ``address``:53 (UDP) in a daemon thread."""

    address: str
    records: dict[str, str] = field(default_factory=dict)
    _socket: socket.socket | None = None
    _thread: threading.Thread | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        """Bind and serve in the background."""
        self._stopping.clear()
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.settimeout(0.2)  # so that stop() is noticed
        self._socket.bind((self.address, 53))
        self._thread = threading.Thread(target=self._serve, args=(self._socket,), name="cluster-dns", daemon=True)
        self._thread.start()

    def _serve(self, sock: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                message, peer = sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                sock.sendto(answer(message, self.records), peer)
            except (ValueError, IndexError, struct.error, UnicodeDecodeError, OSError):
                continue  # a malformed query gets no answer

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
