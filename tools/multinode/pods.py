"""Run a container's command as a pod would: its own network, PID, mount and UTS namespaces.

A pod here is a process tree started with ``ip netns exec <pod's namespace> unshare --pid --fork
--mount --mount-proc --uts``: it sees only its own processes, has its own hostname (the pod's
name), a fresh ``/tmp`` (a directory of the run, bind-mounted), and a ``/dev/shm`` of the size
KubeRay's volume gives it. Killing the pod kills every process in it, as a container runtime
does; starting it again gives it a fresh ``/tmp``, as a replacement pod gets.

The environment is the container's own, resolved as the kubelet resolves it (``value`` with
``$(VAR)`` references, ``secretKeyRef`` from the rendered Secrets, ``fieldRef`` from the pod's
metadata), on top of the image's (``ENV`` and ``WORKDIR`` of docker/Dockerfile, its app directory
mapped to this repository).
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.multinode.network import PodNetwork

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"
_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
_FIELD_LABEL = re.compile(r"^metadata\.labels\['([^']+)'\]$")


@dataclass(frozen=True)
class ImageEnvironment:
    """What the image gives every container: its working directory and ``ENV`` lines."""

    workdir: str
    env: dict[str, str]


def image_environment(dockerfile: Path = DOCKERFILE) -> ImageEnvironment:
    """The last ``WORKDIR`` and the ``ENV KEY=value`` lines of the Dockerfile's final stage."""
    workdir, env = "/", {}
    for line in dockerfile.read_text().splitlines():
        words = line.strip().split(maxsplit=1)
        if len(words) < 2:
            continue
        if words[0] == "FROM":
            workdir, env = "/", {}
        elif words[0] == "WORKDIR":
            workdir = words[1]
        elif words[0] == "ENV":
            for item in shlex.split(words[1]):
                key, _, value = item.partition("=")
                env[key] = value
    return ImageEnvironment(workdir, env)


def map_image_path(text: str, image: ImageEnvironment, root: Path = REPO_ROOT) -> str:
    """Paths under the image's working directory, moved to the repository (the same files)."""
    return text.replace(image.workdir, str(root))


def expand_references(value: str, defined: Mapping[str, str]) -> str:
    """The kubelet's ``$(VAR)`` expansion: defined names are replaced, ``$$`` is a literal ``$``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return defined[name] if name in defined else match.group(0)

    return _REFERENCE.sub(replace, value)


def resolve_env(
    items: list[dict[str, Any]], pod: dict[str, Any], secrets: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """A container's ``env`` list as the process sees it.

    ``secrets`` maps a Secret's name to its decoded data; a reference to a missing Secret or key
    is an error, as it keeps a real pod from starting.
    """
    resolved: dict[str, str] = {}
    metadata = pod["metadata"]
    for item in items:
        name = item["name"]
        if "value" in item:
            resolved[name] = expand_references(str(item["value"]), resolved)
            continue
        source = item.get("valueFrom") or {}
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            if ref["name"] not in secrets or ref["key"] not in secrets[ref["name"]]:
                raise KeyError(f"pod {metadata['name']}: Secret {ref['name']} has no key {ref['key']}")
            resolved[name] = secrets[ref["name"]][ref["key"]]
        elif "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            if path == "metadata.name":
                resolved[name] = metadata["name"]
            elif path == "metadata.namespace":
                resolved[name] = metadata.get("namespace", "default")
            elif (label := _FIELD_LABEL.match(path)) is not None:
                resolved[name] = metadata.get("labels", {}).get(label.group(1), "")
            else:
                raise ValueError(f"fieldRef {path} is not modelled")
        else:
            raise ValueError(f"env {name}: valueFrom {sorted(source)} is not modelled")
    return resolved


def secrets_of(objects: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """The rendered Secrets' data, decoded."""
    found = {}
    for obj in objects:
        if obj.get("kind") == "Secret":
            data = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
            data |= obj.get("stringData") or {}
            found[obj["metadata"]["name"]] = data
    return found


AUTOGROUP_SWITCH = Path("/proc/sys/kernel/sched_autogroup_enabled")


def set_session_nice(session_leader: int, nice: int) -> bool:
    """Weight the CPU share of a pod's whole process tree; whether the kernel took it.

    Every pod is a session of its own (``start_new_session``), and with the kernel's autogroup
    scheduling (``sched_autogroup_enabled``, on in Debian's kernels) a session is one scheduling
    group: pods share the CPU equally, whatever the nice values inside them (Ray runs its workers
    at nice 15, which then only orders them against their own pod's processes). The group's own
    nice, written to ``/proc/<leader>/autogroup``, weights its share as a process's nice would
    (nice -7 weighs about five times nice 0). Without autogroup the pod's processes simply keep
    their own nice values, and this does nothing.
    """
    try:
        if AUTOGROUP_SWITCH.read_text().strip() != "1":
            return False
        Path(f"/proc/{session_leader}/autogroup").write_text(str(nice))
    except OSError:
        return False
    return True


#: The interpreter's directory first, so `ray` and `python` are this environment's (the image's PATH).
BASE_PATH = f"{Path(sys.executable).parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class PodProcess:
    """One pod of the run: its command, environment and /dev/shm size, started and killed at will."""

    name: str
    network: PodNetwork
    command: list[str]
    env: dict[str, str]
    workdir: str
    run_dir: Path
    shm_bytes: int | None = None
    init_commands: list[list[str]] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    generation: int = 0
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    #: The nice value of the pod's scheduling group (None: the kernel's default, 0). See
    #: :func:`set_session_nice`.
    session_nice: int | None = None

    @property
    def address(self) -> str:
        """The pod's address on the pod network."""
        return self.network.address_of(self.name)

    @property
    def log_path(self) -> Path:
        """Where this generation of the pod writes its output."""
        return self.run_dir / f"{self.name}.{self.generation}.log"

    def _script(self, tmp: Path, home: Path) -> str:
        shm = f"mount -t tmpfs -o size={self.shm_bytes} shm /dev/shm" if self.shm_bytes else "true"
        init = "".join(f"{shlex.join(command)} && " for command in self.init_commands)
        return (
            f"set -e; hostname {shlex.quote(self.name)}; {shm}; "
            f"mount --bind {shlex.quote(str(tmp))} /tmp; cd {shlex.quote(self.workdir)}; "
            f"{init}exec {shlex.join(self.command)}"
        )

    def start(self) -> None:
        """Start the pod (a new generation: fresh /tmp and home, as a replacement pod)."""
        self.generation += 1
        tmp = self.run_dir / f"{self.name}.{self.generation}" / "tmp"
        home = self.run_dir / f"{self.name}.{self.generation}" / "home"
        tmp.mkdir(parents=True)
        home.mkdir(parents=True)
        tmp.chmod(0o1777)
        env = {"PATH": BASE_PATH, "HOME": str(home), "LANG": "C.UTF-8", "HOSTNAME": self.name} | self.env
        wrapper = [
            "ip", "netns", "exec", self.network.namespace_of(self.name),
            "unshare", "--pid", "--fork", "--mount", "--mount-proc", "--uts",
            "/bin/bash", "-c", self._script(tmp, home),
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                wrapper, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        if self.session_nice is not None:
            set_session_nice(self.process.pid, self.session_nice)
        self.started_at = time.monotonic()

    def alive(self) -> bool:
        """Whether the pod's main process still runs."""
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """Kill every process of the pod (SIGKILL), as a container runtime does, and reap them."""
        for _ in range(20):
            pids = self.network.pids_in(self.name)
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        if self.process is not None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
