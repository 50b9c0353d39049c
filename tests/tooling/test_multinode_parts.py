"""The pure parts of the multi-node layer: cluster DNS answers, env resolution, the image's environment."""

from __future__ import annotations

import base64
import socket
import struct

import pytest

from tools.multinode.dns import ClusterDNS, answer, parse_question
from tools.multinode.pods import expand_references, image_environment, map_image_path, resolve_env, secrets_of


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
