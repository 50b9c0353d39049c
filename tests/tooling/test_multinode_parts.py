"""The pure parts of the multi-node layer: cluster DNS answers, env resolution, the image's environment."""

from __future__ import annotations

import base64
import os
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from tools.kuberay_model import RayPod
from tools.multinode.cluster import PodStartError, RenderedCluster, log_tail
from tools.multinode.dns import ClusterDNS, answer, parse_question
from tools.multinode.pods import (
    AUTOGROUP_SWITCH,
    expand_references,
    image_environment,
    map_image_path,
    resolve_env,
    secrets_of,
    set_session_nice,
)


def query(name: str, qtype: int = 1, query_id: int = 7) -> bytes:
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    return struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + labels + b"\x00" + struct.pack("!HH", qtype, 1)


def test_a_known_name_gets_its_address():
    reply = answer(query("head-svc.ns.svc.cluster.local"), {"head-svc.ns.svc.cluster.local": "10.1.2.3"})
    query_id, flags, _, answers, _, _ = struct.unpack("!HHHHHH", reply[:12])
    assert (query_id, flags & 0xF, answers) == (7, 0, 1)
    assert socket.inet_ntoa(reply[-4:]) == "10.1.2.3"


def test_names_are_case_insensitive_and_other_types_get_an_empty_answer():
    records = {"redis.ns.svc.cluster.local": "10.1.2.4"}
    assert socket.inet_ntoa(answer(query("REDIS.ns.svc.cluster.local"), records)[-4:]) == "10.1.2.4"
    aaaa = answer(query("redis.ns.svc.cluster.local", qtype=28), records)
    assert struct.unpack("!HHHHHH", aaaa[:12])[1:4] == (0x8180, 1, 0)


def test_an_unknown_name_is_nxdomain():
    flags = struct.unpack("!HH", answer(query("example.com"), {})[:4])[1]
    assert flags & 0xF == 3


def test_a_query_with_two_questions_is_refused():
    message = bytearray(query("a.b"))
    message[5] = 2
    with pytest.raises(ValueError, match="one question"):
        parse_question(bytes(message))


def test_the_server_answers_over_udp():
    dns = ClusterDNS("127.0.0.1", {"x.svc.cluster.local": "10.9.9.9"})
    try:
        dns.start()
    except PermissionError:
        pytest.skip("binding port 53 needs root")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(5)
            client.sendto(query("x.svc.cluster.local"), ("127.0.0.1", 53))
            assert socket.inet_ntoa(client.recv(512)[-4:]) == "10.9.9.9"
    finally:
        dns.stop()


def test_references_expand_like_the_kubelet():
    assert expand_references("redis://:$(PASS)@h/$(DB)", {"PASS": "p"}) == "redis://:p@h/$(DB)"
    assert expand_references("$$(PASS)", {"PASS": "p"}) == "$(PASS)"


def test_env_resolves_secrets_fields_and_earlier_values():
    pod = {"metadata": {"name": "pod-1", "namespace": "ns", "labels": {"ray.io/group": "gpu"}}}
    items = [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "auth", "key": "auth_token"}}},
        {"name": "GROUP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['ray.io/group']"}}},
        {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "URL", "value": "x://$(TOKEN)@$(NAME)"},
    ]
    secrets = secrets_of(
        [{"kind": "Secret", "metadata": {"name": "auth"}, "data": {"auth_token": base64.b64encode(b"t0k").decode()}}]
    )
    assert resolve_env(items, pod, secrets) == {"TOKEN": "t0k", "GROUP": "gpu", "NAME": "pod-1", "URL": "x://t0k@pod-1"}
    with pytest.raises(KeyError, match="Secret missing has no key k"):
        resolve_env([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "missing", "key": "k"}}}], pod, {})


def test_the_images_workdir_and_env_come_from_the_dockerfile(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM a AS x\nENV A=1\nFROM b\nWORKDIR /srv\nWORKDIR /home/app\nENV PYTHONPATH=/home/app B=2\n"
    )
    image = image_environment(dockerfile)
    assert image.workdir == "/home/app" and image.env == {"PYTHONPATH": "/home/app", "B": "2"}
    assert map_image_path("/home/app/x", image, tmp_path) == f"{tmp_path}/x"


def test_the_projects_image_serves_from_its_app_directory():
    image = image_environment()
    assert image.env["PYTHONPATH"] == image.workdir


# ---- pods that fail to start are replaced, as KubeRay replaces them ------------------------------


class ExitingPod:
    """Stands in for a PodProcess whose first ``failures`` starts exit with Ray's startup error."""

    def __init__(self, name: str, run_dir, failures: int) -> None:
        self.name, self.run_dir, self.failures = name, run_dir, failures
        self.generation = 0
        self.process: object | None = None
        self.running = False

    @property
    def log_path(self):
        return self.run_dir / f"{self.name}.{self.generation}.log"

    def start(self) -> None:
        self.generation += 1
        self.process = object()
        self.running = self.generation > self.failures
        last = "Ray runtime started." if self.running else f"Exception: {RAY_STARTUP_TIMEOUT}"
        self.log_path.write_text(f"Local node IP: 10.0.0.2\n\n{last}\n")

    def alive(self) -> bool:
        return self.running

    def kill(self) -> None:
        self.running = False


RAY_STARTUP_TIMEOUT = "The current node timed out during startup."


class OneAddress:
    def address_of(self, pod: str) -> str:
        return "127.0.0.1"


def cluster_of(tmp_path, failures: int, monkeypatch) -> RenderedCluster:
    head = RayPod("head-0", "headgroup", "head", {"metadata": {"name": "head-0"}, "spec": {}}, {}, "ray start --head")
    cluster = RenderedCluster([], tmp_path, network=OneAddress())  # type: ignore[arg-type]
    cluster.ray_pods = {"head-0": head}
    cluster.pods = {"head-0": ExitingPod("head-0", tmp_path, failures)}  # type: ignore[dict-item]

    class Healthy:
        text = "success"

    monkeypatch.setattr("tools.multinode.cluster.requests.get", lambda url, timeout: Healthy())
    return cluster


def test_a_head_that_times_out_at_startup_is_replaced_until_it_joins(tmp_path, monkeypatch):
    cluster = cluster_of(tmp_path, failures=2, monkeypatch=monkeypatch)
    starts = cluster.replace_until_joined("head-0")
    assert [(s.generation, s.joined) for s in starts] == [(1, False), (2, False), (3, True)]
    assert all(RAY_STARTUP_TIMEOUT in s.reason for s in starts[:2])
    assert cluster.pods["head-0"].alive()


def test_a_pod_that_never_starts_fails_with_its_name_start_and_last_log_lines(tmp_path, monkeypatch):
    cluster = cluster_of(tmp_path, failures=99, monkeypatch=monkeypatch)
    with pytest.raises(PodStartError) as caught:
        cluster.replace_until_joined("head-0", max_starts=3)
    message = str(caught.value)
    assert caught.value.generation == 3
    assert "pod head-0, start 3: exited before its Ray node joined" in message
    assert RAY_STARTUP_TIMEOUT in message and "Local node IP: 10.0.0.2" in message


def test_a_ray_pod_that_exited_is_replaced_by_the_next_reconcile(tmp_path, monkeypatch):
    cluster = cluster_of(tmp_path, failures=1, monkeypatch=monkeypatch)
    cluster.start_pod("head-0", wait=False)
    failed, replacement = cluster.replace_failed_pods()
    assert (failed.generation, failed.joined) == (1, False) and RAY_STARTUP_TIMEOUT in failed.reason
    assert (replacement.generation, replacement.joined, replacement.reason) == (2, False, "")
    assert cluster.pods["head-0"].generation == 2 and cluster.pods["head-0"].alive()
    assert cluster.replace_failed_pods() == []


def test_the_log_tail_skips_blank_lines_and_survives_a_missing_file(tmp_path):
    log = tmp_path / "pod.1.log"
    log.write_text("a\n\n b \n\nc\n")
    assert log_tail(log, lines=2) == [" b ", "c"]
    assert log_tail(tmp_path / "missing.log") == []


@pytest.mark.skipif(
    not AUTOGROUP_SWITCH.exists() or AUTOGROUP_SWITCH.read_text().strip() != "1" or os.geteuid() != 0,
    reason="needs the kernel's autogroup scheduling, and root to lower a nice value",
)
def test_a_pods_session_gets_the_nice_value_of_its_scheduling_group():
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        assert set_session_nice(child.pid, -7)
        assert Path(f"/proc/{child.pid}/autogroup").read_text().split()[-1] == "-7"
    finally:
        child.kill()
        child.wait()
