import math

import pytest

from serve_app.latency import LATENCY_KEY, LATENCY_METRIC, ONGOING_KEY, REPORTED_AT_KEY, RollingLatency


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _rolling(window_s: float = 10.0, **kwargs) -> tuple[RollingLatency, Clock]:
    clock = Clock()
    return RollingLatency(window_s=window_s, clock=clock, **kwargs), clock


def test_empty_window_has_no_p90():
    latency, _ = _rolling()
    assert latency.p90() is None
    assert len(latency) == 0


def test_one_observation_is_its_own_p90():
    latency, _ = _rolling()
    latency.observe(12.5)
    assert latency.p90() == 12.5


def test_p90_is_the_nearest_rank():
    latency, _ = _rolling()
    for ms in [5, 1, 9, 3, 7, 2, 10, 4, 8, 6]:  # 1..10, out of order
        latency.observe(ms)
    assert latency.p90() == 9
    assert latency.percentile(50) == 5
    assert latency.percentile(100) == 10

    many, _ = _rolling()
    for ms in range(1, 101):
        many.observe(ms)
    assert many.p90() == 90


def test_one_outlier_in_ten_does_not_move_p90_but_two_do():
    latency, _ = _rolling()
    for _ in range(9):
        latency.observe(10)
    latency.observe(500)
    assert latency.p90() == 10
    latency.observe(500)
    assert latency.p90() == 500


def test_old_observations_leave_the_window():
    latency, clock = _rolling(window_s=10)
    latency.observe(100)
    clock.now = 5.0
    latency.observe(20)
    clock.now = 9.9
    assert latency.p90() == 100
    clock.now = 10.0  # exactly window_s old: gone
    assert latency.p90() == 20
    assert latency.values() == [20]
    clock.now = 15.0  # idle for a whole window: unknown again
    assert latency.p90() is None


def test_at_most_max_samples_newest_kept():
    latency, _ = _rolling(window_s=60, max_samples=3)
    for ms in [1000, 1000, 1, 2, 3]:
        latency.observe(ms)
    assert latency.values() == [1, 2, 3]


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_nonsense_latencies_are_rejected(bad):
    latency, _ = _rolling()
    with pytest.raises(ValueError):
        latency.observe(bad)
    assert latency.p90() is None


@pytest.mark.parametrize("kwargs", [{"window_s": 0}, {"window_s": -1}, {"window_s": math.inf}, {"max_samples": 0}])
def test_bad_settings_are_rejected(kwargs):
    with pytest.raises(ValueError):
        RollingLatency(**kwargs)


@pytest.mark.parametrize("q", [0, -5, 101])
def test_bad_percentile_is_rejected(q):
    with pytest.raises(ValueError):
        RollingLatency(window_s=1).percentile(q)


def test_autoscaling_stats_report_p90_and_zero_when_idle():
    latency, clock = _rolling(window_s=10)
    assert latency.autoscaling_stats() == {LATENCY_METRIC: 0.0}
    latency.observe(42)
    assert latency.autoscaling_stats() == {LATENCY_METRIC: 42.0}
    clock.now = 20.0
    assert latency.autoscaling_stats() == {LATENCY_METRIC: 0.0}


def test_routing_stats_report_p90_or_none_the_load_and_the_time():
    latency, _ = _rolling(window_s=10)
    assert latency.routing_stats(0, 100.0) == {LATENCY_KEY: None, ONGOING_KEY: 0, REPORTED_AT_KEY: 100.0}
    latency.observe(42)
    assert latency.routing_stats(3, 101.0) == {LATENCY_KEY: 42.0, ONGOING_KEY: 3, REPORTED_AT_KEY: 101.0}
