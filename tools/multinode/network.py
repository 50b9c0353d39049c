"""A pod network on one Linux machine: one network namespace per pod on a bridge, with DNS names.

Each pod gets its own network namespace with an ``eth0`` (a veth pair whose other end is on a
bridge in the host's namespace) and an address of a private /24, so every pod has the same ports a
Kubernetes pod has (Serve's 8000 on each, the dashboard's 8265 on the head) and reaches the others
by address. The host keeps the bridge's first address and reaches every pod. Service names
(``<cluster>-head-svc.<ns>.svc.cluster.local``, the chart's Redis) resolve as in a cluster: through
the cluster DNS (:mod:`tools.multinode.dns`, on the bridge's address) that each pod's
``/etc/resolv.conf`` names, and through its ``/etc/hosts`` (``ip netns exec`` mounts both from
``/etc/netns/<namespace>/``).

Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN), ``ip`` (iproute2) and ``unshare`` (util-linux):
:func:`unavailable_reason` says what is missing.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tools.multinode.dns import ClusterDNS

NETNS_ETC = Path("/etc/netns")
#: Private /24s tried for the bridge, in order; the first that no host route overlaps is used.
CANDIDATE_SUBNETS = [f"10.213.{n}.0/24" for n in range(10, 250, 7)]


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


def unavailable_reason() -> str | None:
    """Why pod namespaces cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "needs root to create network, PID and mount namespaces (ip netns, unshare)"
    for tool in ("ip", "unshare"):
        if shutil.which(tool) is None:
            return f"needs `{tool}` (Debian: apt-get install {'iproute2' if tool == 'ip' else 'util-linux'})"
    probe = f"mnsprobe{secrets.token_hex(3)}"
    made = _run("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    _run("ip", "netns", "del", probe, check=False)
    return None


def _free_subnet() -> ipaddress.IPv4Network:
    routes = _run("ip", "-4", "route", "show").stdout.split()
    used = [ipaddress.ip_network(word, strict=False) for word in routes if "/" in word and word[0].isdigit()]
    for text in CANDIDATE_SUBNETS:
        subnet = ipaddress.ip_network(text)
        if not any(subnet.overlaps(other) for other in used):
            return subnet
    raise RuntimeError("no free private /24 for the pod network")


@dataclass
class PodNetwork:
    """A bridge and the pods' namespaces on it; every name carries a random run id."""

    run_id: str = field(default_factory=lambda: secrets.token_hex(2))
    subnet: ipaddress.IPv4Network | None = None
    pods: dict[str, tuple[str, str]] = field(default_factory=dict)  # pod -> (namespace, address)
    hosts: dict[str, str] = field(default_factory=dict)  # DNS name -> address
    dns: ClusterDNS | None = None

    @property
    def bridge(self) -> str:
        """The bridge's interface name (at most 15 characters)."""
        return f"mnsbr{self.run_id}"

    @property
    def host_address(self) -> str:
        """The host's address on the bridge."""
        assert self.subnet is not None
        return str(self.subnet.network_address + 1)

    def create(self) -> None:
        """The bridge, up, with the host's address."""
        self.subnet = _free_subnet()
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.host_address}/{self.subnet.prefixlen}", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        self.dns = ClusterDNS(self.host_address, self.hosts)
        self.dns.start()

    def add_pod(self, pod: str) -> str:
        """A namespace for ``pod`` with an address on the bridge; returns the address."""
        assert self.subnet is not None
        index = len(self.pods) + 2
        namespace, address = f"mns-{self.run_id}-{pod}", str(self.subnet.network_address + index)
        host_end, prefix = f"mnsv{self.run_id}{index}", self.subnet.prefixlen
        _run("ip", "netns", "add", namespace)
        _run("ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        _run("ip", "link", "set", host_end, "master", self.bridge, "up")
        for command in (
            ("ip", "addr", "add", f"{address}/{prefix}", "dev", "eth0"),
            ("ip", "link", "set", "eth0", "up"),
            ("ip", "link", "set", "lo", "up"),
            ("ip", "route", "add", "default", "via", self.host_address),
        ):
            _run("ip", "netns", "exec", namespace, *command)
        self.pods[pod] = (namespace, address)
        self.write_hosts()
        return address

    def add_name(self, name: str, address: str) -> None:
        """Make ``name`` resolve to ``address`` in every pod (a Service's DNS name)."""
        self.hosts[name] = address
        self.write_hosts()

    def write_hosts(self) -> None:
        """Every pod's /etc/hosts: localhost, its own name, the Service names."""
        for pod, (namespace, address) in self.pods.items():
            directory = NETNS_ETC / namespace
            directory.mkdir(parents=True, exist_ok=True)
            lines = ["127.0.0.1 localhost", f"{address} {pod}"]
            lines += [f"{target} {name}" for name, target in sorted(self.hosts.items())]
            (directory / "hosts").write_text("\n".join(lines) + "\n")
            (directory / "resolv.conf").write_text(f"nameserver {self.host_address}\noptions ndots:1 timeout:1\n")

    def namespace_of(self, pod: str) -> str:
        """The network namespace of a pod."""
        return self.pods[pod][0]

    def address_of(self, pod: str) -> str:
        """The address of a pod."""
        return self.pods[pod][1]

    def pids_in(self, pod: str) -> list[int]:
        """Every process in a pod's network namespace."""
        found = _run("ip", "netns", "pids", self.namespace_of(pod), check=False).stdout.split()
        return [int(pid) for pid in found]

    def destroy(self) -> None:
        """Remove every namespace, veth and the bridge (processes must be gone first)."""
        for index, (namespace, _) in enumerate(self.pods.values(), start=2):
            _run("ip", "netns", "del", namespace, check=False)
            _run("ip", "link", "del", f"mnsv{self.run_id}{index}", check=False)
            shutil.rmtree(NETNS_ETC / namespace, ignore_errors=True)
        _run("ip", "link", "del", self.bridge, check=False)
        if self.dns is not None:
            self.dns.stop()
        self.pods.clear()


def remove_leftovers() -> list[str]:
    """Namespaces and bridges of runs that died without cleaning up (their processes are killed)."""
    removed = []
    for line in _run("ip", "netns", "list", check=False).stdout.splitlines():
        namespace = line.split()[0] if line.strip() else ""
        if namespace.startswith("mns-"):
            for pid in _run("ip", "netns", "pids", namespace, check=False).stdout.split():
                _run("kill", "-9", pid, check=False)
            _run("ip", "netns", "del", namespace, check=False)
            shutil.rmtree(NETNS_ETC / namespace, ignore_errors=True)
            removed.append(namespace)
    for line in _run("ip", "-o", "link", "show", check=False).stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if name.startswith(("mnsbr", "mnsv")):
            _run("ip", "link", "del", name, check=False)
            removed.append(name)
    return removed
