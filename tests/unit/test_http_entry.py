"""The HTTP entry choice: which variables reach Ray, per-run HAProxy files and ports, the environment helper."""

import os

import pytest

from serve_app.local.http_entry import (
    DEFAULT_HTTP_ENTRY,
    HTTP_ENTRIES,
    check_http_entry,
    default_http_entry,
    environment,
    ray_environment,
)


def test_haproxy_is_the_default_and_the_environment_can_pick_the_proxy(monkeypatch):
    monkeypatch.delenv("MNIST_SERVE_HTTP_ENTRY", raising=False)
    assert DEFAULT_HTTP_ENTRY == "haproxy" == default_http_entry()
    monkeypatch.setenv("MNIST_SERVE_HTTP_ENTRY", "proxy")
    assert default_http_entry() == "proxy"
    monkeypatch.setenv("MNIST_SERVE_HTTP_ENTRY", "nginx")
    with pytest.raises(ValueError, match="unknown HTTP entry 'nginx'; choose one of haproxy, proxy"):
        default_http_entry()


def test_unknown_entries_are_refused():
    assert [check_http_entry(entry) for entry in HTTP_ENTRIES] == list(HTTP_ENTRIES)
    with pytest.raises(ValueError, match="unknown HTTP entry"):
        ray_environment("direct", 1, 2)


def test_haproxy_gets_its_own_stats_and_metrics_ports():
    assert ray_environment("haproxy", 18404, 19101) == {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        # a request that a dying Ingress replica closed without an answer is replayed elsewhere
        "RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response",
        "RAY_SERVE_HAPROXY_TIMEOUT_CLIENT_S": "30",
        "RAY_SERVE_HAPROXY_STATS_PORT": "18404",
        "RAY_SERVE_HAPROXY_METRICS_PORT": "19101",
    }


def test_the_proxy_turns_both_of_serve_s_switches_off_explicitly():
    assert ray_environment("proxy", 1, 2) == {
        "RAY_SERVE_ENABLE_HA_PROXY": "0",
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0",
    }


def test_environment_is_restored(monkeypatch):
    monkeypatch.setenv("MNIST_SERVE_KEPT", "before")
    monkeypatch.delenv("MNIST_SERVE_NEW", raising=False)
    with environment({"MNIST_SERVE_KEPT": "during", "MNIST_SERVE_NEW": "1"}):
        assert os.environ["MNIST_SERVE_KEPT"] == "during" and os.environ["MNIST_SERVE_NEW"] == "1"
    assert os.environ["MNIST_SERVE_KEPT"] == "before"
    assert "MNIST_SERVE_NEW" not in os.environ


def test_the_local_command_passes_the_chosen_entry_to_the_run(monkeypatch):
    from serve_app.local import cli as local

    calls = []
    monkeypatch.setattr(local, "run", lambda *args, **kwargs: calls.append(kwargs) or 0)
    for argv, entry in (([], None), (["--http-entry", "proxy"], "proxy"), (["--http-entry", "haproxy"], "haproxy")):
        with pytest.raises(SystemExit) as exited:
            local.main(argv)
        assert exited.value.code == 0 and calls[-1]["http_entry"] == entry and calls[-1]["grpc_port"] is None
    with pytest.raises(SystemExit):
        local.main(["--grpc-port", "9001"])
    assert calls[-1]["grpc_port"] == 9001
    with pytest.raises(SystemExit) as exited:
        local.main(["--http-entry", "nginx"])
    assert exited.value.code == 2  # argparse: invalid choice


def test_local_cluster_sets_the_entry_s_variables_only_while_ray_runs(monkeypatch):
    """local_cluster's environment as Ray would inherit it (the deploy stubbed): the entry's, then restored."""
    from serve_app.local import cluster as local

    seen = {}

    def fake_deployed(serve_config, dashboard_port, log_to_driver, timeout_s, http_entry, ray_init_kwargs):
        keys = ("RAY_SERVE_ENABLE_HA_PROXY", "EXTRA", "RAY_SERVE_GRPC_MAX_MESSAGE_SIZE")
        seen.update({key: os.environ.get(key) for key in keys}, entry=http_entry)
        yield "cluster"

    monkeypatch.setattr(local, "_deployed", fake_deployed)
    monkeypatch.delenv("RAY_SERVE_ENABLE_HA_PROXY", raising=False)
    monkeypatch.delenv("RAY_SERVE_GRPC_MAX_MESSAGE_SIZE", raising=False)
    with local.local_cluster({"applications": []}, http_entry="proxy", ray_env={"EXTRA": "1"}) as cluster:
        assert cluster == "cluster"
    # gRPC messages held to the HTTP API's body limit (Serve's own default is 2 GiB)
    limit = str(16 * 1024 * 1024)
    assert seen == {
        "RAY_SERVE_ENABLE_HA_PROXY": "0",
        "EXTRA": "1",
        "RAY_SERVE_GRPC_MAX_MESSAGE_SIZE": limit,
        "entry": "proxy",
    }
    assert "RAY_SERVE_ENABLE_HA_PROXY" not in os.environ and "EXTRA" not in os.environ
