"""bench.batching's targets: the speed-up at 32 connections and the latency at one, from given figures."""

from bench.batching import BATCHING_OFF, batch_wait_s, latency_target, speedup_target, with_batching
from bench.wrk import WrkResult
from serve_app.local.serve_config import load_serve_config


def _run(connections: int, requests: int) -> WrkResult:
    return WrkResult(connections, requests, 10.0, 5.0, 8.0, 9.0, 10.0, 0, 0)


def test_the_speed_up_is_judged_at_32_connections():
    off = [_run(1, 500), _run(32, 1000)]
    assert speedup_target(off, [_run(1, 100), _run(32, 3000)]).line().startswith("PASS")
    failed = speedup_target(off, [_run(1, 5000), _run(32, 2990)])
    assert failed.passed is False and "2.99x (299 vs 100)" in failed.line()
    assert speedup_target([_run(8, 1)], [_run(8, 9)]).passed is None  # 32 not measured


def test_latency_is_judged_on_medians_of_alternating_runs_with_the_wait_allowed():
    # one slow outlier in the "on" runs does not decide it; the median does
    assert latency_target([16.0, 17.0, 16.5], [16.2, 30.0, 16.4], wait_s=0.0).passed
    assert latency_target([16.0, 17.0, 16.5], [17.5, 17.0, 18.0], wait_s=0.0).passed is False
    # a batching wait of 2 ms is allowed on top
    assert latency_target([16.0], [17.5], wait_s=0.002).passed
    assert latency_target([], [17.5], wait_s=0.0).passed is None


def test_the_wait_is_summed_over_the_two_batching_stages():
    config = load_serve_config()
    assert batch_wait_s(with_batching(config, BATCHING_OFF)) == 0.0
    assert batch_wait_s(with_batching(config, {"max_batch_size": 8, "batch_wait_timeout_s": 0.005})) == 0.01
