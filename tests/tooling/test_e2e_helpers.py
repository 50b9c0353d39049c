"""The e2e suite's helpers without a cluster, and its gate: skipped with the reason, run only when asked.

The port-forward supervisor runs a fake ``kubectl`` that listens like ``kubectl port-forward``
and exits like it does when its pod goes away; the load loop runs against a local HTTP server;
the cluster probe and the gate run against a fake API server on the loopback interface.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from serve_app.config import REPO_ROOT
from tests.e2e.conftest import e2e_requested
from tests.support import kube
from tests.support.kube import (
    CommandError,
    ImageRef,
    LoadLoop,
    PortForward,
    Settings,
    fault_command,
    fault_report_path,
    gpu_allocatable,
    one_fault_interval,
    parse_fault_report,
    parse_image_ref,
    probe_cluster,
    read_fault_report,
    run,
    wait_until,
)

VERSION = {
    "major": "1", "minor": "36", "gitVersion": "v1.36.1", "gitCommit": "x", "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25", "compiler": "gc", "platform": "linux/amd64",
}  # fmt: skip


@pytest.mark.parametrize(
    ("ref", "expected", "text"),
    [
        ("mnist-serve:0.1.0", ImageRef("mnist-serve", "0.1.0"), "mnist-serve:0.1.0"),
        ("reg.example.com:5000/team/m", ImageRef("reg.example.com:5000/team/m"), "reg.example.com:5000/team/m"),
        ("reg.example.com:5000/m:v1", ImageRef("reg.example.com:5000/m", "v1"), "reg.example.com:5000/m:v1"),
        ("ghcr.io/t/m:v1@sha256:" + "c3" * 32, ImageRef("ghcr.io/t/m", "v1", "sha256:" + "c3" * 32),
         "ghcr.io/t/m@sha256:" + "c3" * 32),
    ],
)  # fmt: skip
def test_image_references_split_as_the_chart_takes_them(ref, expected, text):
    assert parse_image_ref(ref) == expected
    assert str(expected) == text  # what the chart renders: repository@digest wins over the tag


def test_bad_image_references_are_refused():
    with pytest.raises(ValueError, match="sha256"):
        parse_image_ref("mnist-serve@md5:abc")
    with pytest.raises(ValueError, match="no repository"):
        parse_image_ref(":tag")


def test_allocatable_gpus_add_up_over_nodes():
    nodes = [
        {"status": {"allocatable": {"cpu": "8", "nvidia.com/gpu": "4"}}},
        {"status": {"allocatable": {"cpu": "8"}}},
        {"status": {"allocatable": {"nvidia.com/gpu": "1"}}},
    ]
    assert gpu_allocatable(nodes) == 5
    assert gpu_allocatable(nodes[1:2]) == 0


def fault_document(**changes: object) -> dict:
    document = {
        "faults": [
            {"at": 1.5, "target": "worker-pod", "victim": "pod ns/w-1", "recovery_s": 31.2,
             "failures_during": 3, "failures_after": 0},
            {"at": 60, "target": "worker-pod", "victim": "pod ns/w-2", "recovery_s": None,
             "failures_during": 0, "failures_after": 0},
        ],
        "requests": 1000,
        "failures": 3,
        "verdict": "fail",
    }  # fmt: skip
    document.update(changes)
    return document


def test_fault_reports_are_read_and_summarised(tmp_path):
    path = tmp_path / "run_verdict.json"
    path.write_text(json.dumps(fault_document()))
    report = read_fault_report(path)
    assert [f.recovery_s for f in report.faults] == [31.2, None]
    assert not report.recovered and report.max_recovery_s is None
    assert report.summary() == "2 fault(s) (31.2 s, never); 3 of 1000 requests failed; verdict fail"
    recovered = parse_fault_report(fault_document(faults=fault_document()["faults"][:1], verdict="pass"))
    assert recovered.recovered and recovered.max_recovery_s == 31.2
    assert not parse_fault_report(fault_document(faults=[])).recovered  # no fault injected is no recovery


def test_the_report_is_the_runs_verdict(tmp_path):
    prefix = tmp_path / "fault"
    assert fault_report_path(prefix) is None
    Path(f"{prefix}_verdict.json").write_text(json.dumps({**fault_document(), "scenario": "fault-injection"}))
    assert fault_report_path(prefix) == Path(f"{prefix}_verdict.json")
    assert read_fault_report(fault_report_path(prefix)).requests == 1000  # extra fields are fine


@pytest.mark.parametrize("run_time_s", [60, 120, 240, 600])
def test_one_fault_interval_leaves_room_for_exactly_one_fault(run_time_s):
    # The scenario's schedule: from the start delay on, a fault whenever the next interval still fits.
    interval, elapsed, faults = one_fault_interval(run_time_s), 10, 0
    while elapsed + interval <= run_time_s:
        faults += 1
        elapsed += interval
    assert faults == 1
    assert run_time_s - 10 >= interval >= 15  # the rest of the run watches the recovery


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"faults": {}}, "faults must be a list"),
        ({"verdict": "ok"}, "verdict must be pass or fail"),
        ({"requests": "1000"}, "requests must be an integer"),
        ({"failures": 2.5}, "failures must be an integer"),
        ({"faults": [{"target": "worker-pod", "at": "now"}]}, r"faults\[0\]: at must be a number"),
        ({"faults": [{"at": 1}]}, r"faults\[0\]: target must be a string"),
    ],
)
def test_malformed_fault_reports_name_the_bad_field(changes, message):
    with pytest.raises(ValueError, match=message):
        parse_fault_report(fault_document(**changes))


def test_the_fault_run_is_the_scenarios_documented_command_line():
    command = fault_command(
        "/venv/bin/python",
        host="http://127.0.0.1:8000",
        dashboard_url="http://127.0.0.1:8265",
        namespace="ns",
        release="mnist-serve",
        target="head-pod",
        csv_prefix=Path("/r/fault"),
        run_time_s=120,
    )
    text = " ".join(command)
    assert command[:5] == [
        "/venv/bin/python",
        "-m",
        "locust",
        "-f",
        str(REPO_ROOT / "loadtests" / "fault_injection.py"),
    ]
    assert (
        "--host http://127.0.0.1:8000 --headless -u 8 -r 8 -t 120s --csv /r/fault --fault-backend kubernetes "
        "--fault-target head-pod --fault-interval 15 --namespace ns --release mnist-serve "
        "--dashboard-url http://127.0.0.1:8265"
    ) in text
    with pytest.raises(ValueError, match="worker-pod or head-pod"):
        fault_command("python", host="h", dashboard_url="d", namespace="n", release="r", target="proxy",
                      csv_prefix=Path("p"), run_time_s=1)  # fmt: skip


def test_settings_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setattr(kube, "LAST_IMAGE_FILE", tmp_path / "no-image-built")
    values = tmp_path / "extra.yaml"
    values.write_text("{}\n")
    settings = Settings.from_env(
        {"MNIST_SERVE_E2E_IMAGE": "r.example.com/m:1", "MNIST_SERVE_E2E_GPU": "0",
         "MNIST_SERVE_E2E_VALUES": f" {values} ,", "MNIST_SERVE_E2E_READY_TIMEOUT": "60",
         "MNIST_SERVE_E2E_KEEP": "1", "MNIST_SERVE_E2E_REPORTS": str(tmp_path)}
    )  # fmt: skip
    assert settings.gpu is False and settings.extra_values == (values,) and settings.ready_timeout_s == 60
    assert settings.keep and settings.reports_dir == tmp_path
    assert settings.set_values() == {"image.repository": "r.example.com/m", "image.tag": "1", "image.digest": ""}
    assert Settings.from_env({}) == Settings()
    for env, message in [
        ({"MNIST_SERVE_E2E_GPU": "yes"}, "MNIST_SERVE_E2E_GPU"),
        ({"MNIST_SERVE_E2E_READY_TIMEOUT": "soon"}, "MNIST_SERVE_E2E_READY_TIMEOUT"),
        ({"MNIST_SERVE_E2E_VALUES": "no/such.yaml"}, "not a file"),
    ]:
        with pytest.raises(ValueError, match=message):
            Settings.from_env(env)


def test_the_image_scripts_image_built_last_is_the_default(tmp_path, monkeypatch):
    built = tmp_path / ".image"
    built.write_text("mnist-serve:0.1.0-0123456789ab\n")
    monkeypatch.setattr(kube, "LAST_IMAGE_FILE", built)
    assert Settings.from_env({}).image == "mnist-serve:0.1.0-0123456789ab"
    assert Settings.from_env({"MNIST_SERVE_E2E_IMAGE": "r/m:2"}).image == "r/m:2"


@pytest.mark.parametrize(
    ("markexpr", "env", "asked"),
    [
        ("", {}, False),
        ("e2e", {}, True),
        ("unit or e2e", {}, True),
        ("(e2e) and not slow", {}, True),
        ("not e2e", {}, False),
        ("unit", {"MNIST_SERVE_E2E": "1"}, True),
        ("integration", {"MNIST_SERVE_E2E": "0"}, False),
    ],
)
def test_the_e2e_suite_runs_only_when_asked(markexpr, env, asked):
    assert e2e_requested(markexpr, env) is asked


def test_wait_until_returns_the_value_or_says_what_it_last_saw():
    calls = iter(range(100))
    assert wait_until(lambda: ((n := next(calls)) >= 2 and n, f"n={n}"), 5, "counting", interval_s=0.01) == 2
    with pytest.raises(TimeoutError, match=r"the thing: not within 0 s; last state: still 41"):
        wait_until(lambda: (None, "still 41"), 0.05, "the thing", interval_s=0.01)


def test_failed_commands_report_their_exit_code_and_output():
    assert run([sys.executable, "-c", "print('fine')"]) == "fine\n"
    with pytest.raises(CommandError, match=r"exited 3:\nboom"):
        run([sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"])
    with pytest.raises(CommandError, match=r"ran past 0\.2 s"):
        run([sys.executable, "-c", "import time; time.sleep(5)"], timeout_s=0.2)


# --- port-forward --------------------------------------------------------------------------------

FAKE_KUBECTL = """
import os, socket, sys, time
local = int(sys.argv[-1].split(":")[0])
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", local))
server.listen()
server.settimeout(0.05)
print("Forwarding from 127.0.0.1:%d" % local, flush=True)
deadline = time.monotonic() + float(os.environ.get("FAKE_LIFETIME_S", "1000"))
while time.monotonic() < deadline:
    try:
        server.accept()[0].close()
    except OSError:
        pass
print("error: lost connection to pod", flush=True)
"""


@pytest.fixture
def fake_kubectl(tmp_path, monkeypatch) -> tuple[list[str], Path]:
    script = tmp_path / "kubectl.py"
    script.write_text(FAKE_KUBECTL)
    log = tmp_path / "kubectl.log"
    monkeypatch.setenv("FAKE_LOG", str(log))
    return [sys.executable, "-S", str(script)], log


def connects(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_port_forward_restarts_kubectl_when_it_exits(fake_kubectl, monkeypatch):
    kubectl, log = fake_kubectl
    monkeypatch.setenv("FAKE_LIFETIME_S", "0.4")  # kubectl exits as when its pod is deleted
    with PortForward("ns", "svc/mnist-serve-serve-svc", 8000, context="ctx", kubectl=kubectl) as forward:
        assert connects(forward.local_port)
        lines = wait_until(
            lambda: (len(text := log.read_text().splitlines()) >= 2 and text, f"{forward.starts} starts"),
            10,
            "a restart",
            interval_s=0.1,
        )
        assert forward.url == f"http://127.0.0.1:{forward.local_port}"
    expected = "--context ctx --namespace ns port-forward --address 127.0.0.1 svc/mnist-serve-serve-svc"
    assert lines[0] == f"{expected} {forward.local_port}:8000"
    time.sleep(0.6)
    assert not connects(forward.local_port), "the forward must be gone after the with block"


def test_port_forward_follows_its_target_when_it_changes(fake_kubectl):
    kubectl, log = fake_kubectl
    target = ["pod/head-1"]
    with PortForward("ns", lambda: target[0], 8000, kubectl=kubectl, check_interval_s=0.1) as forward:
        target[0] = "pod/head-2"
        wait_until(lambda: (forward.targets[-1] == "pod/head-2", str(forward.targets)), 10, "retarget", interval_s=0.1)
        wait_until(lambda: (connects(forward.local_port), "not listening"), 10, "listening again", interval_s=0.1)
    assert forward.targets[:2] == ["pod/head-1", "pod/head-2"]
    assert "pod/head-2" in log.read_text()


def test_port_forward_that_never_listens_fails_with_kubectls_words(tmp_path):
    script = tmp_path / "kubectl.py"
    script.write_text("import sys\nprint('error: services \"nope\" not found', flush=True)\nsys.exit(1)\n")
    forward = PortForward("ns", "svc/nope", 8000, kubectl=[sys.executable, "-S", str(script)], start_timeout_s=1.5)
    with pytest.raises(TimeoutError, match=re.escape('services "nope" not found')), forward:
        pass


# --- load loop -----------------------------------------------------------------------------------


def _write_json(handler: BaseHTTPRequestHandler, status: int, body: object) -> None:
    """Answer a stand-in server's request with ``body`` as JSON."""
    payload = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


class _Predictor(BaseHTTPRequestHandler):
    mode = "ok"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        status, body = {
            "ok": (200, {"predicted_label": [7]}),
            "busy": (503, {"detail": "saturated"}),
            "wrong": (200, {"predicted_label": [1]}),
        }[type(self).mode]
        _write_json(self, status, body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def predictor() -> Iterator[tuple[str, type[_Predictor]]]:
    handler = type("Predictor", (_Predictor,), {"mode": "ok"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_load_loop_counts_answers_and_keeps_every_failure(predictor):
    url, handler = predictor
    body = (REPO_ROOT / "examples" / "digits" / "digit.json").read_bytes()
    with LoadLoop(url, body, [7], concurrency=2) as load:
        wait_until(lambda: (load.ok >= 10, f"{load.ok} ok"), 10, "answers", interval_s=0.05)
        assert load.failures == []
        handler.mode = "busy"
        wait_until(lambda: (len(load.failures) >= 3, str(load.failures)), 10, "503s", interval_s=0.05)
        handler.mode = "wrong"
        wait_until(
            lambda: (any("wrong answer" in f for f in load.failures), "no wrong answer"), 10, "wrong", interval_s=0.05
        )
    assert any("HTTP 503" in failure for failure in load.failures)
    assert load.requests == load.ok + len(load.failures)
    finished = load.requests
    time.sleep(0.2)
    assert load.requests == finished, "the clients stop with the with block"


def test_load_loop_records_connection_errors():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with LoadLoop(f"http://127.0.0.1:{port}", b"{}", [7], concurrency=1, timeout_s=1) as load:
        wait_until(lambda: (load.failures, "none yet"), 10, "a failure", interval_s=0.05)
    assert "ConnectionError" in load.failures[0]


# --- the cluster probe and the gate ---------------------------------------------------------------


class _ApiServer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/version"):
            _write_json(self, 200, VERSION)
        else:
            _write_json(self, 404, {"kind": "Status", "code": 404})

    def log_message(self, *args: object) -> None:
        pass


def kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": server}}],
                "users": [{"name": "me", "user": {"token": "t"}}],
                "contexts": [{"name": "fake-ctx", "context": {"cluster": "fake", "user": "me"}}],
                "current-context": "fake-ctx",
            }
        )
    )
    return path


@pytest.fixture
def api_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ApiServer)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_probe_without_a_kubeconfig_says_there_is_no_cluster(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    kube, reason = probe_cluster()
    assert kube is None and reason.startswith("no Kubernetes cluster: no usable kubeconfig")


def test_probe_gives_up_on_an_api_server_that_does_not_answer(tmp_path, monkeypatch):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts connections, never answers
    try:
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, f"http://127.0.0.1:{silent.getsockname()[1]}")))
        started = time.monotonic()
        kube, reason = probe_cluster(timeout_s=1)
        assert time.monotonic() - started < 5
    finally:
        silent.close()
    assert kube is None and "did not answer within 1 s" in reason and "fake-ctx" in reason


def test_probe_describes_a_cluster_that_answers(tmp_path, monkeypatch, api_server):
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, api_server)))
    kube, description = probe_cluster()
    assert kube is not None and kube.context == "fake-ctx"
    assert description == f"context fake-ctx ({api_server}, Kubernetes v1.36.1)"


def run_e2e_suite(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("MNIST_SERVE_E2E")}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "tests/e2e", "-p", "no:cacheprovider", "-q", "-rsE", *args],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_e2e_suite_skips_a_reachable_cluster_unless_asked_and_then_needs_helm(tmp_path, api_server):
    config = str(kubeconfig(tmp_path, api_server))
    result = run_e2e_suite(tmp_path, {"KUBECONFIG": config})
    assert result.returncode == 0, result.stdout[-3000:]
    assert "passed" not in result.stdout and " skipped" in result.stdout
    assert "runs only when asked (bash scripts/e2e, or pytest -m e2e)" in result.stdout
    bare_path = tmp_path / "bin"
    bare_path.mkdir()
    result = run_e2e_suite(tmp_path, {"KUBECONFIG": config, "MNIST_SERVE_E2E": "1", "PATH": str(bare_path)})
    assert result.returncode != 0
    assert "the e2e suite needs helm and kubectl on PATH" in result.stdout, result.stdout[-3000:]


def test_the_fault_scenario_accepts_the_e2e_command_line_and_leaves_a_readable_report(tmp_path):
    # A short run against a closed loopback port, with no kubeconfig: every request fails and no
    # pod can be deleted, but the options parse and the report is written where the suite reads it.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    prefix = tmp_path / "fault"
    command = fault_command(
        sys.executable,
        host=url,
        dashboard_url=url,
        namespace="ns",
        release="mnist-serve",
        target="worker-pod",
        csv_prefix=prefix,
        run_time_s=2,
        users=1,
        interval_s=one_fault_interval(2),
    )
    environment = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none")}
    done = subprocess.run(
        command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=120, check=False
    )
    output = done.stdout + done.stderr
    assert "unrecognized arguments" not in output and "error: argument" not in output, output[-2000:]
    path = fault_report_path(prefix)
    assert path is not None, output[-2000:]
    report = read_fault_report(path)
    assert report.requests > 0 and report.failures == report.requests
    assert report.faults == () and report.verdict == "fail" and done.returncode != 0
