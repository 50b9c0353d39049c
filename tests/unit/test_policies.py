"""The custom autoscaling policies, fed real ``ray.serve.config.AutoscalingContext`` objects.

Also checks what Serve 2.60 itself does with them: its config models accept the import
strings, its controller-side wrappers (cold start, factors, delays, bounds) run them, and the
by-value pickle Serve ships to the controller loads where ``serve_app`` cannot be imported.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from datetime import time as dtime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from pydantic import ValidationError
from ray import cloudpickle
from ray.serve._private.autoscaling_state import _resolve_policy_callable
from ray.serve._private.common import DeploymentID, ReplicaID, TimeStampedValue
from ray.serve.autoscaling_policy import (
    _apply_app_level_autoscaling_config,
    _apply_autoscaling_config,
    replica_queue_length_autoscaling_policy,
)
from ray.serve.config import AutoscalingConfig, AutoscalingContext, AutoscalingPolicy
from ray.serve.schema import ServeDeploySchema

from serve_app import policies
from serve_app.policies import (
    LATENCY_METRIC,
    LatencySLAPolicy,
    ProportionalPipelinePolicy,
    SchedulePolicy,
    default_replicas,
    latency_sla_policy,
    proportional_pipeline_policy,
)

APP = "mnist"
BERLIN = ZoneInfo("Europe/Berlin")


def dep(name: str) -> DeploymentID:
    return DeploymentID(name=name, app_name=APP)


def replica_ids(name: str, count: int) -> list[ReplicaID]:
    return [ReplicaID(unique_id=f"{name.lower()}-{i}", deployment_id=dep(name)) for i in range(count)]


def make_ctx(
    name: str = "Classifier",
    *,
    running: int = 2,
    target: int | None = None,
    latencies: list[float | None] | None = None,
    raw: list[list[float] | None] | None = None,
    total: float = 0.0,
    queued: float = 0.0,
    min_replicas: int = 1,
    max_replicas: int = 10,
    cap_min: int | None = None,
    cap_max: int | None = None,
    now: float = 1_750_000_000.0,
    extra_metrics: dict | None = None,
    policy_state: dict | None = None,
    metrics: object = ...,
    **config: object,
) -> AutoscalingContext:
    """A real AutoscalingContext; ``latencies[i]``/``raw[i]`` belong to running replica i (None: no stats).

    ``metrics``, when given, is passed as ``aggregated_metrics`` as is (None, or a lazy callable).
    """
    config.setdefault("upscale_delay_s", 0.0)
    config.setdefault("downscale_delay_s", 0.0)
    autoscaling_config = AutoscalingConfig(min_replicas=min_replicas, max_replicas=max_replicas, **config)
    ids = replica_ids(name, running)
    aggregated: dict = dict(extra_metrics or {})
    raw_metrics: dict = {}
    if latencies is not None:
        aggregated[LATENCY_METRIC] = {r: v for r, v in zip(ids, latencies, strict=False) if v is not None}
    if raw is not None:
        raw_metrics[LATENCY_METRIC] = {
            r: [TimeStampedValue(now - 30 + 2 * k, v) for k, v in enumerate(series)]
            for r, series in zip(ids, raw, strict=False)
            if series is not None
        }
    return AutoscalingContext(
        deployment_id=dep(name),
        deployment_name=name,
        app_name=APP,
        current_num_replicas=running,
        target_num_replicas=running if target is None else target,
        running_replicas=ids,
        total_num_requests=total,
        total_queued_requests=queued,
        aggregated_metrics=aggregated if metrics is ... else metrics,
        raw_metrics=raw_metrics,
        capacity_adjusted_min_replicas=min_replicas if cap_min is None else cap_min,
        capacity_adjusted_max_replicas=max_replicas if cap_max is None else cap_max,
        policy_state=dict(policy_state or {}),
        last_scale_up_time=None,
        last_scale_down_time=None,
        current_time=now,
        config=autoscaling_config,
    )


def at(year: int, month: int, day: int, hour: int, minute: int = 0, tz=UTC) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=tz).timestamp()


# --------------------------------------------------------------------------------------
# (a) LatencySLAPolicy
# --------------------------------------------------------------------------------------

SLA = {"sla_ms": 100.0}


def test_no_running_replicas_holds_target_and_ignores_stale_stats():
    ctx = make_ctx(running=0, target=3)
    stale = ReplicaID(unique_id="gone", deployment_id=dep("Classifier"))
    ctx.aggregated_metrics[LATENCY_METRIC] = {stale: 900.0}  # a stopped replica's last report
    decision, state = LatencySLAPolicy(**SLA)(ctx)
    assert decision == 3
    assert state["reason"].startswith("no latency stats")
    assert state["reporting_replicas"] == 0 and state["observed_latency_ms"] is None


def test_target_zero_with_queued_requests_goes_to_one():
    ctx = make_ctx(running=0, target=0, min_replicas=0, total=5, queued=5)
    assert LatencySLAPolicy(**SLA)(ctx)[0] == 1
    ctx = make_ctx(running=0, target=0, min_replicas=0, total=0, queued=3)  # queued only
    assert LatencySLAPolicy(**SLA)(ctx)[0] == 1


def test_target_zero_without_requests_stays_zero():
    ctx = make_ctx(running=0, target=0, min_replicas=0)
    decision, state = LatencySLAPolicy(**SLA)(ctx)
    assert decision == 0 and "hold" in state["reason"]


def test_missing_metric_holds_target():
    ctx = make_ctx(running=3, extra_metrics={"running_requests": {r: 4.0 for r in replica_ids("Classifier", 3)}})
    decision, state = LatencySLAPolicy(**SLA)(ctx)
    assert decision == 3 and state["reason"] == "no latency stats; hold"


def test_none_metrics_hold_target():
    ctx = make_ctx(running=2, metrics=None)
    assert LatencySLAPolicy(**SLA)(ctx)[0] == 2


def test_lazy_metrics_are_read():
    # Serve passes a callable the context evaluates on first access.
    ids = replica_ids("Classifier", 2)
    ctx = make_ctx(running=2, metrics=lambda: {LATENCY_METRIC: dict.fromkeys(ids, 300.0)})
    assert LatencySLAPolicy(**SLA)(ctx)[0] == 6


def test_all_replicas_slow_scales_proportionally_from_target():
    ctx = make_ctx(running=2, latencies=[300.0, 300.0])
    decision, state = LatencySLAPolicy(**SLA)(ctx)
    assert decision == 6  # ceil(2 * 300 / 100)
    assert state["observed_latency_ms"] == 300.0 and state["decision"] == 6
    assert "> SLA" in state["reason"]


def test_baseline_is_target_not_current():
    # 2 running, 4 already asked for: the breach scales the 4.
    ctx = make_ctx(running=2, target=4, latencies=[150.0, 150.0])
    assert LatencySLAPolicy(**SLA)(ctx)[0] == 6  # ceil(4 * 1.5)


@pytest.mark.parametrize(
    ("target", "latency", "expected"),
    [(1, 100.5, 2), (2, 101.0, 3), (4, 105.0, 5), (10, 101.0, 11), (3, 200.0, 6), (0, 500.0, 1)],
)
def test_breach_adds_at_least_one(target, latency, expected):
    replicas = max(target, 1)
    ctx = make_ctx(running=replicas, target=target, min_replicas=0, max_replicas=50, latencies=[latency] * replicas)
    assert LatencySLAPolicy(**SLA)(ctx)[0] == expected


def test_exactly_at_sla_is_not_a_breach():
    ctx = make_ctx(running=2, latencies=[100.0, 100.0], raw=[[100.0], [100.0]])
    decision, state = LatencySLAPolicy(**SLA)(ctx)
    assert decision == 2 and state["reason"] == "within the SLA band"


def test_mean_versus_max():
    one_slow = [50.0, 250.0]
    assert LatencySLAPolicy(**SLA)(make_ctx(latencies=one_slow))[0] == 3  # mean 150: ceil(2 * 1.5)
    assert LatencySLAPolicy(**SLA, aggregate="max")(make_ctx(latencies=one_slow))[0] == 5  # ceil(2 * 2.5)
    fine_on_average = [20.0, 150.0]  # mean 85
    assert LatencySLAPolicy(**SLA)(make_ctx(latencies=fine_on_average))[0] == 2
    assert LatencySLAPolicy(**SLA, aggregate="max")(make_ctx(latencies=fine_on_average))[0] == 3


def test_stats_missing_for_some_replicas_still_scale_up_on_the_reporting_ones():
    ctx = make_ctx(running=3, latencies=[300.0, None, 300.0])
    decision, state = LatencySLAPolicy(**SLA)(ctx)
    assert decision == 9  # ceil(3 * 300 / 100)
    assert state["reporting_replicas"] == 2 and state["running_replicas"] == 3


def test_stats_missing_for_some_replicas_never_scale_down():
    ctx = make_ctx(running=3, latencies=[10.0, None, 10.0], raw=[[10.0], None, [10.0]])
    decision, state = LatencySLAPolicy(**SLA)(ctx)
    assert decision == 3 and state["reason"] == "partial stats; hold"


def test_below_headroom_for_the_whole_look_back_scales_down_by_one():
    ctx = make_ctx(running=4, latencies=[10.0, 20.0, 15.0, 12.0], raw=[[8, 10, 12], [20, 22], [15], [12, 11]])
    decision, state = LatencySLAPolicy(**SLA)(ctx)
    assert decision == 3
    assert state["window_peak_ms"] == 22 and "look-back" in state["reason"]


def test_a_spike_inside_the_look_back_blocks_the_scale_down():
    # Aggregated (mean over the window) is low, but one sample went over sla * 0.5.
    ctx = make_ctx(running=2, latencies=[20.0, 20.0], raw=[[10, 10, 60, 10], [20, 20]])
    decision, state = LatencySLAPolicy(**SLA)(ctx)
    assert decision == 2 and state["window_peak_ms"] == 60 and state["reason"] == "within the SLA band"


def test_without_raw_series_the_aggregated_value_is_the_peak():
    ctx = make_ctx(running=2, latencies=[20.0, 30.0])
    assert LatencySLAPolicy(**SLA)(ctx)[0] == 1


def test_between_headroom_and_sla_holds():
    ctx = make_ctx(running=3, latencies=[70.0, 80.0, 90.0], raw=[[70], [80], [90]])
    assert LatencySLAPolicy(**SLA)(ctx)[0] == 3


def test_custom_headroom_and_steps():
    policy = LatencySLAPolicy(sla_ms=200, downscale_below=0.25, scale_down_step=2, scale_up_step=3)
    assert policy(make_ctx(running=4, latencies=[40.0] * 4))[0] == 2  # 40 < 50: down by 2
    assert policy(make_ctx(running=4, latencies=[60.0] * 4))[0] == 4  # 60 >= 50: hold
    assert policy(make_ctx(running=4, latencies=[210.0] * 4))[0] == 7  # ceil(4.2) = 5 < 4 + 3


def test_max_scale_up_step_caps_a_jump():
    ctx = make_ctx(running=2, latencies=[1000.0, 1000.0], max_replicas=100)
    assert LatencySLAPolicy(**SLA)(ctx)[0] == 20
    decision, state = LatencySLAPolicy(**SLA, max_scale_up_step=3)(ctx)
    assert decision == 5 and state["desired_replicas"] == 5


def test_clamped_to_capacity_adjusted_max():
    # Config max 10, but target_capacity halves it to 5: the context's bound wins.
    ctx = make_ctx(running=4, latencies=[1000.0] * 4, max_replicas=10, cap_max=5)
    decision, state = LatencySLAPolicy(**SLA)(ctx)
    assert decision == 5 and state["desired_replicas"] == 40


def test_clamped_to_capacity_adjusted_min():
    ctx = make_ctx(running=2, latencies=[5.0, 5.0], min_replicas=1, cap_min=2)
    decision, state = LatencySLAPolicy(**SLA)(ctx)
    assert decision == 2 and state["desired_replicas"] == 1


def test_hold_above_max_is_clamped_down():
    ctx = make_ctx(running=6, latencies=[60.0] * 6, max_replicas=10, cap_max=3)
    assert LatencySLAPolicy(**SLA)(ctx)[0] == 3


def test_scale_down_to_zero_only_when_min_allows():
    assert LatencySLAPolicy(**SLA)(make_ctx(running=1, latencies=[1.0], min_replicas=0))[0] == 0
    assert LatencySLAPolicy(**SLA)(make_ctx(running=1, latencies=[1.0], min_replicas=1))[0] == 1


def test_non_finite_and_negative_values_are_ignored():
    ctx = make_ctx(running=3, latencies=[math.nan, -5.0, 300.0])
    decision, state = LatencySLAPolicy(**SLA)(ctx)
    assert decision == 9 and state["reporting_replicas"] == 1


def test_custom_metric_name():
    ids = replica_ids("Classifier", 2)
    ctx = make_ctx(running=2, extra_metrics={"p99_ms": dict.fromkeys(ids, 400.0)})
    assert LatencySLAPolicy(**SLA, metric="p99_ms")(ctx)[0] == 8
    assert LatencySLAPolicy(**SLA)(ctx)[0] == 2


def test_default_function_uses_the_class_defaults():
    ctx = make_ctx(running=2, latencies=[150.0, 150.0])
    assert latency_sla_policy(ctx) == LatencySLAPolicy()(ctx)
    assert latency_sla_policy(ctx)[1]["sla_ms"] == 100.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sla": 50},  # typo: unknown key
        {"sla_ms": 0},
        {"sla_ms": -1},
        {"downscale_below": 1.0},
        {"downscale_below": 0},
        {"aggregate": "median"},
        {"scale_up_step": 0},
        {"scale_up_step": 3, "max_scale_up_step": 2},
        {"metric": ""},
    ],
)
def test_invalid_latency_kwargs(kwargs):
    with pytest.raises(ValidationError):
        LatencySLAPolicy(**kwargs)


def test_state_is_json_friendly_and_round_trips():
    ctx = make_ctx(running=2, latencies=[300.0, 300.0])
    _, state = LatencySLAPolicy(**SLA)(ctx)
    assert yaml.safe_load(yaml.safe_dump(state)) == state


# --------------------------------------------------------------------------------------
# (b) SchedulePolicy
# --------------------------------------------------------------------------------------

OFFICE = {
    "timezone": "Europe/Berlin",
    "schedule": [
        {"start": "09:00", "end": "17:00", "replicas": 4},
        {"start": "22:00", "end": "06:00", "replicas": 2},
    ],
    "default_replicas": 1,
}


def schedule_decision(kwargs: dict, now: float, **ctx_kwargs) -> tuple[int, dict]:
    ctx_kwargs.setdefault("max_replicas", 10)
    return SchedulePolicy(**kwargs)(make_ctx(now=now, **ctx_kwargs))


@pytest.mark.parametrize(
    ("local", "expected", "window"),
    [
        ((2025, 6, 2, 10, 0), 4, 0),
        ((2025, 6, 2, 9, 0), 4, 0),  # start inclusive
        ((2025, 6, 2, 16, 59), 4, 0),
        ((2025, 6, 2, 17, 0), 1, None),  # end exclusive
        ((2025, 6, 2, 8, 59), 1, None),
        ((2025, 6, 2, 21, 59), 1, None),
        ((2025, 6, 2, 22, 0), 2, 1),  # wraps midnight
        ((2025, 6, 2, 23, 30), 2, 1),
        ((2025, 6, 3, 0, 0), 2, 1),
        ((2025, 6, 3, 5, 59), 2, 1),
        ((2025, 6, 3, 6, 0), 1, None),
    ],
)
def test_schedule_windows_in_local_time(local, expected, window):
    decision, state = schedule_decision(OFFICE, at(*local, tz=BERLIN))
    assert decision == expected
    assert state["window"] == window
    assert state["local_time"].startswith(datetime(*local).isoformat())


def test_current_time_is_converted_from_utc():
    # 08:30 UTC in June is 10:30 in Berlin (CEST, UTC+2).
    assert schedule_decision(OFFICE, at(2025, 6, 2, 8, 30))[0] == 4
    assert schedule_decision({**OFFICE, "timezone": "UTC"}, at(2025, 6, 2, 8, 30))[0] == 1


def test_dst_spring_forward_keeps_wall_clock_windows():
    # Berlin leaves CET for CEST on 2025-03-30 at 01:00 UTC. 07:30 UTC is 08:30 the day
    # before (outside 09:00-17:00) and 09:30 on the day and after (inside).
    assert schedule_decision(OFFICE, at(2025, 3, 29, 7, 30))[0] == 1
    assert schedule_decision(OFFICE, at(2025, 3, 30, 7, 30))[0] == 4
    assert schedule_decision(OFFICE, at(2025, 3, 31, 7, 30))[0] == 4
    # A window starting in the skipped hour (02:00-03:00 does not exist that night) begins at the jump.
    night = {"timezone": "Europe/Berlin", "schedule": [{"start": "02:30", "end": "04:00", "replicas": 3}]}
    assert schedule_decision(night, at(2025, 3, 30, 0, 59))[0] == 1  # 01:59 CET
    assert schedule_decision(night, at(2025, 3, 30, 1, 0))[0] == 3  # 03:00 CEST


def test_dst_fall_back_matches_the_repeated_hour_twice():
    # 2025-10-26: 03:00 CEST goes back to 02:00 CET at 01:00 UTC; 02:00-03:00 local happens twice.
    repeated = {"timezone": "Europe/Berlin", "schedule": [{"start": "02:00", "end": "03:00", "replicas": 5}]}
    assert schedule_decision(repeated, at(2025, 10, 25, 23, 59))[0] == 1  # 01:59 CEST
    assert schedule_decision(repeated, at(2025, 10, 26, 0, 30))[0] == 5  # 02:30 CEST
    assert schedule_decision(repeated, at(2025, 10, 26, 1, 30))[0] == 5  # 02:30 CET
    assert schedule_decision(repeated, at(2025, 10, 26, 2, 0))[0] == 1  # 03:00 CET


def test_days_restrict_windows_and_a_wrapping_window_belongs_to_its_start_day():
    table = {
        "timezone": "Europe/Berlin",
        "schedule": [
            {"start": "09:00", "end": "17:00", "replicas": 4, "days": ["mon", "tue", "wed", "thu", "fri"]},
            {"start": "20:00", "end": "04:00", "replicas": 6, "days": ["fri"]},
        ],
        "default_replicas": 1,
    }
    # 2025-06-06 is a Friday.
    assert schedule_decision(table, at(2025, 6, 6, 10, 0, tz=BERLIN))[0] == 4
    assert schedule_decision(table, at(2025, 6, 7, 10, 0, tz=BERLIN))[0] == 1  # Saturday
    assert schedule_decision(table, at(2025, 6, 6, 21, 0, tz=BERLIN))[0] == 6  # Friday night
    assert schedule_decision(table, at(2025, 6, 7, 3, 0, tz=BERLIN))[0] == 6  # ...into Saturday
    assert schedule_decision(table, at(2025, 6, 7, 21, 0, tz=BERLIN))[0] == 1  # Saturday night: no
    assert schedule_decision(table, at(2025, 6, 8, 3, 0, tz=BERLIN))[0] == 1  # Sunday morning: no
    assert schedule_decision(table, at(2025, 6, 6, 3, 0, tz=BERLIN))[0] == 1  # Friday morning (Thursday's night)


def test_overlapping_windows_first_match_wins():
    table = {
        "timezone": "UTC",
        "schedule": [
            {"start": "12:00", "end": "13:00", "replicas": 8},  # lunch peak first
            {"start": "09:00", "end": "17:00", "replicas": 4},
        ],
    }
    assert schedule_decision(table, at(2025, 6, 2, 12, 30))[0] == 8
    assert schedule_decision(table, at(2025, 6, 2, 11, 0))[0] == 4
    flipped = {**table, "schedule": table["schedule"][::-1]}
    assert schedule_decision(flipped, at(2025, 6, 2, 12, 30))[0] == 4


def test_end_at_midnight_runs_to_the_end_of_the_day():
    table = {"schedule": [{"start": "18:00", "end": "00:00", "replicas": 3}]}
    assert schedule_decision(table, at(2025, 6, 2, 23, 59))[0] == 3
    assert schedule_decision(table, at(2025, 6, 3, 0, 0))[0] == 1


def test_without_default_replicas_the_capacity_adjusted_minimum_applies():
    table = {"schedule": [{"start": "09:00", "end": "10:00", "replicas": 4}]}
    decision, state = schedule_decision(table, at(2025, 6, 2, 12, 0), min_replicas=1, cap_min=2)
    assert decision == 2 and state["window"] is None and "minimum" in state["reason"]


def test_schedule_is_clamped_to_capacity_adjusted_bounds():
    big = {"schedule": [{"start": "00:00", "end": "12:00", "replicas": 9}], "default_replicas": 0}
    assert schedule_decision(big, at(2025, 6, 2, 6, 0), max_replicas=10, cap_max=5)[0] == 5
    assert schedule_decision(big, at(2025, 6, 2, 18, 0), min_replicas=1)[0] == 1
    assert schedule_decision(big, at(2025, 6, 2, 18, 0), min_replicas=0)[0] == 0


def test_schedule_ignores_load_and_target():
    ctx = make_ctx(running=7, target=7, total=1000, now=at(2025, 6, 2, 10, 0, tz=BERLIN))
    assert SchedulePolicy(**OFFICE)(ctx)[0] == 4


def test_schedule_without_current_time_uses_the_clock(monkeypatch):
    monkeypatch.setattr(policies.time, "time", lambda: at(2025, 6, 2, 10, 0, tz=BERLIN))
    ctx = make_ctx()
    ctx.current_time = None
    assert SchedulePolicy(**OFFICE)(ctx)[0] == 4


def test_schedule_from_yaml_with_quoted_times():
    table = yaml.safe_load(
        textwrap.dedent(
            """
            timezone: Europe/Berlin
            default_replicas: 1
            schedule:
              - {start: "09:00", end: "17:00", replicas: 4, days: [mon, tue, wed, thu, fri]}
              - {start: "22:00", end: "06:00", replicas: 2}
            """
        )
    )
    policy = SchedulePolicy(**table)
    assert policy.config.schedule[0]["days"] == ("mon", "tue", "wed", "thu", "fri")
    assert policy.config.schedule[1]["start"] == dtime(22, 0) and policy.config.schedule[1]["end"] == dtime(6, 0)
    assert policy.match(datetime(2025, 6, 2, 23, 0)) == 1


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"schedule": [{"start": "25:00", "end": "06:00", "replicas": 1}]}, "HH:MM"),
        ({"schedule": [{"start": "9am", "end": "17:00", "replicas": 1}]}, "HH:MM"),
        ({"schedule": [{"start": "09:60", "end": "17:00", "replicas": 1}]}, "HH:MM"),
        ({"schedule": [{"start": "24:00", "end": "06:00", "replicas": 1}]}, "HH:MM"),
        ({"schedule": [{"start": "09:00", "end": "09:00", "replicas": 1}]}, "empty"),
        ({"schedule": [{"start": "09:00", "end": "17:00", "replicas": -1}]}, "greater than or equal to 0"),
        ({"schedule": [{"start": "09:00", "end": "17:00"}]}, "replicas"),
        ({"schedule": [{"start": "09:00", "end": "17:00", "replicas": 1, "days": []}]}, "at least one day"),
        ({"schedule": [{"start": "09:00", "end": "17:00", "replicas": 1, "days": ["monday"]}]}, "mon"),
        ({"schedule": [{"start": "09:00", "end": "17:00", "replicas": 1, "until": "x"}]}, "Extra inputs"),
        ({"timezone": "Mars/Olympus", "schedule": []}, "unknown IANA timezone"),
        ({"timezone": "../etc/passwd"}, "unknown IANA timezone"),
        ({"default_replicas": -1}, "greater than or equal to 0"),
        ({"schedule": [{"start": 1020, "end": "18:00", "replicas": 1}]}, "quote times in YAML"),
        ({"schedule": [{"start": "09:00+01:00", "end": "18:00", "replicas": 1}]}, "HH:MM"),
        ({"windows": []}, "Extra inputs"),
    ],
)
def test_invalid_schedule_tables(table, message):
    with pytest.raises(ValidationError, match=message):
        SchedulePolicy(**table)


def test_unquoted_yaml_time_is_rejected_with_a_hint():
    table = yaml.safe_load("schedule: [{start: 09:00, end: 17:00, replicas: 4}]")
    assert table["schedule"][0]["end"] == 1020  # what YAML 1.1 makes of it
    with pytest.raises(ValidationError, match="quote times in YAML"):
        SchedulePolicy(**table)


# --------------------------------------------------------------------------------------
# (c) proportional_pipeline_policy (application level)
# --------------------------------------------------------------------------------------


def pipeline(
    classifier: dict | None = None, preprocessor: dict | None = None, ingress: dict | None = None
) -> dict[DeploymentID, AutoscalingContext]:
    contexts = {}
    for name, spec in (("Ingress", ingress), ("Preprocessor", preprocessor), ("Classifier", classifier)):
        if spec is not None:
            contexts[dep(name)] = make_ctx(name, **spec)
    return contexts


def test_classifier_on_load_preprocessor_in_proportion_ingress_default():
    contexts = pipeline(
        classifier={"running": 2, "total": 20, "target_ongoing_requests": 2},  # 20 / 2 = 10
        preprocessor={"running": 1, "total": 0},
        ingress={"running": 1, "total": 300, "target_ongoing_requests": 100},  # 3
    )
    decisions, states = proportional_pipeline_policy(contexts)
    assert decisions == {dep("Classifier"): 10, dep("Preprocessor"): 5, dep("Ingress"): 3}
    assert set(states) == set(contexts)
    assert states[dep("Preprocessor")]["classifier_replicas"] == 10
    assert states[dep("Ingress")]["rule"] == "default"


@pytest.mark.parametrize(("classifiers", "preprocessors"), [(1, 1), (2, 1), (3, 2), (4, 2), (7, 4), (10, 5)])
def test_preprocessor_ratio_rounds_up(classifiers, preprocessors):
    contexts = pipeline(
        classifier={"running": 1, "total": 2.0 * classifiers}, preprocessor={"running": 1}
    )  # target_ongoing_requests 2
    decisions, _ = proportional_pipeline_policy(contexts)
    assert decisions[dep("Classifier")] == classifiers
    assert decisions[dep("Preprocessor")] == preprocessors


def test_preprocessor_at_least_one_when_classifier_scales_to_zero():
    contexts = pipeline(classifier={"running": 1, "total": 0, "min_replicas": 0}, preprocessor={"running": 2})
    decisions, _ = proportional_pipeline_policy(contexts)
    assert decisions == {dep("Classifier"): 0, dep("Preprocessor"): 1}


def test_each_deployment_clamped_to_its_own_capacity_adjusted_bounds():
    contexts = pipeline(
        classifier={"running": 2, "total": 100, "max_replicas": 8, "cap_max": 6},  # 50 wanted
        preprocessor={"running": 1, "max_replicas": 8, "cap_max": 2},  # 3 wanted
        ingress={"running": 1, "total": 0, "min_replicas": 1, "cap_min": 2},
    )
    decisions, states = proportional_pipeline_policy(contexts)
    assert decisions == {dep("Classifier"): 6, dep("Preprocessor"): 2, dep("Ingress"): 2}
    assert states[dep("Preprocessor")]["desired_replicas"] == 3
    contexts = pipeline(classifier={"running": 1, "total": 2}, preprocessor={"running": 1, "cap_min": 3})
    assert proportional_pipeline_policy(contexts)[0][dep("Preprocessor")] == 3


def test_classifier_cold_start_brings_a_preprocessor():
    contexts = pipeline(
        classifier={"running": 0, "target": 0, "total": 4, "min_replicas": 0},
        preprocessor={"running": 0, "target": 0, "min_replicas": 0},
    )
    decisions, _ = proportional_pipeline_policy(contexts)
    assert decisions == {dep("Classifier"): 1, dep("Preprocessor"): 1}


def test_without_a_classifier_context_the_preprocessor_uses_its_own_default():
    contexts = pipeline(preprocessor={"running": 2, "total": 12}, ingress={"running": 1, "total": 0})
    decisions, states = proportional_pipeline_policy(contexts)
    assert decisions == {dep("Preprocessor"): 6, dep("Ingress"): 1}
    assert all(state["rule"] == "default" for state in states.values())


def test_kwargs_set_ratio_and_names():
    contexts = {
        dep("Model"): make_ctx("Model", running=1, total=8),  # 4
        dep("Prep"): make_ctx("Prep", running=1),
    }
    policy = ProportionalPipelinePolicy(classifier="Model", preprocessor="Prep", preprocessors_per_classifier=1.5)
    assert policy(contexts)[0] == {dep("Model"): 4, dep("Prep"): 6}
    assert ProportionalPipelinePolicy(min_preprocessors=0)(
        pipeline(classifier={"running": 1, "min_replicas": 0}, preprocessor={"running": 1, "min_replicas": 0})
    )[0] == {dep("Classifier"): 0, dep("Preprocessor"): 0}


@pytest.mark.parametrize(
    "kwargs", [{"preprocessors_per_classifier": 0}, {"min_preprocessors": -1}, {"ratio": 2}, {"classifier": ""}]
)
def test_invalid_pipeline_kwargs(kwargs):
    with pytest.raises(ValidationError):
        ProportionalPipelinePolicy(**kwargs)


def test_pipeline_keys_are_the_deployment_ids_serve_passed():
    contexts = pipeline(classifier={"running": 1}, preprocessor={"running": 1}, ingress={"running": 1})
    decisions, states = proportional_pipeline_policy(contexts)
    assert list(decisions) == list(contexts)
    assert all(isinstance(key, DeploymentID) and key.app_name == APP for key in decisions)
    assert set(states) == set(contexts)
    assert all(isinstance(decision, int) for decision in decisions.values())


@pytest.mark.parametrize(
    "spec",
    [
        {"running": 3, "total": 7, "target_ongoing_requests": 2},
        {"running": 2, "total": 0.5, "target_ongoing_requests": 3},
        {"running": 4, "total": 0},
        {"running": 0, "target": 0, "total": 3},
        {"running": 0, "target": 2, "total": 3, "upscaling_factor": 3},
        {"running": 0, "target": 2, "total": 0},
        {"running": 5, "total": 123.4, "target_ongoing_requests": 7.5},
    ],
)
def test_default_replicas_matches_serves_default_policy(spec):
    ctx = make_ctx(**spec)
    serve_desired, _ = replica_queue_length_autoscaling_policy(ctx)
    assert default_replicas(ctx) == serve_desired


# --------------------------------------------------------------------------------------
# Serve's own config validation and controller-side wrappers
# --------------------------------------------------------------------------------------

LATENCY_KWARGS = {"sla_ms": 50.0, "aggregate": "mean", "downscale_below": 0.5, "max_scale_up_step": 4}
SCHEDULE_KWARGS = {
    "timezone": "Europe/Berlin",
    "schedule": [{"start": "09:00", "end": "17:00", "replicas": 4, "days": ["mon", "tue", "wed", "thu", "fri"]}],
    "default_replicas": 1,
}


@pytest.mark.parametrize(
    ("path", "kwargs", "kind"),
    [
        ("serve_app.policies:LatencySLAPolicy", LATENCY_KWARGS, LatencySLAPolicy),
        ("serve_app.policies:SchedulePolicy", SCHEDULE_KWARGS, SchedulePolicy),
        ("serve_app.policies:ProportionalPipelinePolicy", {"preprocessors_per_classifier": 1.0}, None),
    ],
)
def test_autoscaling_config_accepts_class_policies_and_forwards_kwargs(path, kwargs, kind):
    config = AutoscalingConfig(
        min_replicas=1, max_replicas=8, policy=AutoscalingPolicy(policy_function=path, policy_kwargs=kwargs)
    )
    assert config.policy.policy_function == path
    assert config.policy.get_serialized_policy_def()  # the import string resolved and pickled
    instance = _resolve_policy_callable(config.policy)  # what the controller does: Class(**policy_kwargs)
    settings = vars(instance.config)
    for key, value in kwargs.items():
        if key != "schedule":
            assert settings[key] == value
    if kind is not None:
        assert isinstance(instance, kind)


@pytest.mark.parametrize(
    "path", ["serve_app.policies:latency_sla_policy", "serve_app.policies:proportional_pipeline_policy"]
)
def test_function_policies_resolve_and_serve_ignores_their_kwargs(path):
    policy = AutoscalingPolicy(policy_function=path, policy_kwargs={"sla_ms": 1})
    resolved = _resolve_policy_callable(policy)
    assert not isinstance(resolved, type) and resolved.__name__ == path.rsplit(":", 1)[1]


def test_a_typo_in_policy_kwargs_fails_when_the_controller_builds_the_policy():
    policy = AutoscalingPolicy(policy_function="serve_app.policies:LatencySLAPolicy", policy_kwargs={"sla": 50})
    with pytest.raises(ValidationError, match="sla"):
        _resolve_policy_callable(policy)


def test_latency_policy_through_serves_deployment_wrapper():
    policy = AutoscalingPolicy(policy_function="serve_app.policies:LatencySLAPolicy", policy_kwargs=LATENCY_KWARGS)
    wrapped = _apply_autoscaling_config(_resolve_policy_callable(policy))
    decision, state = wrapped(make_ctx(running=2, latencies=[150.0, 150.0]))
    assert decision == 6  # ceil(2 * 150 / 50), no delay configured
    assert state["reason"].startswith("mean p90")
    # Serve's delay counters ride along in the state and come back next tick.
    decision, state = wrapped(make_ctx(running=2, latencies=[150.0, 150.0], upscale_delay_s=30, policy_state=state))
    assert decision == 2  # the delay holds the target for now
    assert state["reason"].startswith("mean p90")


def test_schedule_policy_through_serves_deployment_wrapper():
    policy = AutoscalingPolicy(policy_function="serve_app.policies:SchedulePolicy", policy_kwargs=SCHEDULE_KWARGS)
    wrapped = _apply_autoscaling_config(_resolve_policy_callable(policy))
    monday_10 = at(2025, 6, 2, 10, 0, tz=BERLIN)
    assert wrapped(make_ctx(running=1, now=monday_10))[0] == 4
    saturday_10 = at(2025, 6, 7, 10, 0, tz=BERLIN)
    assert wrapped(make_ctx(running=4, now=saturday_10))[0] == 1


def test_pipeline_policy_through_serves_app_level_wrapper():
    policy = AutoscalingPolicy(policy_function="serve_app.policies:proportional_pipeline_policy")
    wrapped = _apply_app_level_autoscaling_config(_resolve_policy_callable(policy))
    contexts = pipeline(
        classifier={"running": 2, "total": 12},  # 6
        preprocessor={"running": 1},
        ingress={"running": 1, "total": 2},
    )
    decisions, states = wrapped(contexts)
    assert decisions == {dep("Classifier"): 6, dep("Preprocessor"): 3, dep("Ingress"): 1}
    assert set(states) == set(contexts)
    assert states[dep("Preprocessor")]["classifier_replicas"] == 6


SERVE_CONFIG_LATENCY = """
applications:
  - name: mnist
    route_prefix: /
    import_path: serve_app.app:build_app
    deployments:
      - name: Classifier
        max_ongoing_requests: 32
        autoscaling_config:
          min_replicas: 1
          max_replicas: 8
          look_back_period_s: 30
          upscale_delay_s: 30
          downscale_delay_s: 300
          policy:
            policy_function: serve_app.policies:LatencySLAPolicy
            policy_kwargs:
              sla_ms: 50
              aggregate: mean
              downscale_below: 0.5
              scale_up_step: 1
              max_scale_up_step: 4
"""

SERVE_CONFIG_SCHEDULE = """
applications:
  - name: mnist
    route_prefix: /
    import_path: serve_app.app:build_app
    deployments:
      - name: Classifier
        autoscaling_config:
          min_replicas: 1
          max_replicas: 8
          upscale_delay_s: 0
          downscale_delay_s: 60
          policy:
            policy_function: serve_app.policies:SchedulePolicy
            policy_kwargs:
              timezone: Europe/Berlin
              default_replicas: 1
              schedule:
                - {start: "09:00", end: "17:00", replicas: 4, days: [mon, tue, wed, thu, fri]}
                - {start: "22:00", end: "06:00", replicas: 1}
"""

SERVE_CONFIG_PIPELINE = """
applications:
  - name: mnist
    route_prefix: /
    import_path: serve_app.app:build_app
    autoscaling_policy:
      policy_function: serve_app.policies:ProportionalPipelinePolicy
      policy_kwargs:
        preprocessors_per_classifier: 0.5
        min_preprocessors: 1
    deployments:
      - name: Ingress
        max_ongoing_requests: 200
        autoscaling_config:
          min_replicas: 1
          max_replicas: 4
          target_ongoing_requests: 100
      - name: Preprocessor
        max_ongoing_requests: 100
        autoscaling_config:
          min_replicas: 1
          max_replicas: 4
      - name: Classifier
        max_ongoing_requests: 32
        autoscaling_config:
          min_replicas: 1
          max_replicas: 8
          target_ongoing_requests: 16
"""


@pytest.mark.parametrize("text", [SERVE_CONFIG_LATENCY, SERVE_CONFIG_SCHEDULE, SERVE_CONFIG_PIPELINE])
def test_serve_config_snippets_validate_and_resolve(text):
    schema = ServeDeploySchema.model_validate(yaml.safe_load(text))
    (app,) = schema.applications
    assert app.name == APP
    for deployment in app.deployments:
        config = AutoscalingConfig(**deployment.autoscaling_config)  # resolves and pickles the import string
        _resolve_policy_callable(config.policy)  # and builds it with its kwargs, as the controller does
    if app.autoscaling_policy is not None:
        _resolve_policy_callable(AutoscalingPolicy(**app.autoscaling_policy))


def test_app_level_function_policy_validates_in_serve_deploy_schema():
    schema = ServeDeploySchema.model_validate(
        {
            "applications": [
                {
                    "name": APP,
                    "import_path": "serve_app.app:build_app",
                    "autoscaling_policy": {"policy_function": "serve_app.policies:proportional_pipeline_policy"},
                    "deployments": [
                        {"name": "Preprocessor", "autoscaling_config": {"min_replicas": 1, "max_replicas": 4}},
                        {"name": "Classifier", "autoscaling_config": {"min_replicas": 1, "max_replicas": 8}},
                    ],
                }
            ]
        }
    )
    policy = AutoscalingPolicy(**schema.applications[0].autoscaling_policy)
    assert policy.policy_function == "serve_app.policies:proportional_pipeline_policy"
    assert _resolve_policy_callable(policy) is not None


_CONTROLLER_WITHOUT_SERVE_APP = """
import json
import sys
from datetime import datetime
from zoneinfo import ZoneInfo


class NoServeApp:
    def find_spec(self, name, path=None, target=None):
        if name == "serve_app" or name.startswith("serve_app."):
            raise ImportError("serve_app is not importable here")


sys.meta_path.insert(0, NoServeApp())
sys.path = [p for p in sys.path if p not in ("", ".", ROOT)]

from pydantic import ValidationError
from ray.serve._private.autoscaling_state import _resolve_policy_callable
from ray.serve._private.common import DeploymentID, ReplicaID
from ray.serve.autoscaling_policy import _apply_app_level_autoscaling_config, _apply_autoscaling_config
from ray.serve.config import AutoscalingConfig, AutoscalingContext, AutoscalingPolicy


def ctx(name, running, total=0.0, latency=None, now=0.0):
    dep = DeploymentID(name=name, app_name="mnist")
    ids = [ReplicaID(unique_id=f"{name}-{i}", deployment_id=dep) for i in range(running)]
    metrics = {} if latency is None else {"latency_ms_p90": dict.fromkeys(ids, latency)}
    return AutoscalingContext(
        deployment_id=dep, deployment_name=name, app_name="mnist", current_num_replicas=running,
        target_num_replicas=running, running_replicas=ids, total_num_requests=total, total_queued_requests=0.0,
        aggregated_metrics=metrics, raw_metrics={}, capacity_adjusted_min_replicas=1,
        capacity_adjusted_max_replicas=10, policy_state={}, last_scale_up_time=None, last_scale_down_time=None,
        current_time=now, config=AutoscalingConfig(min_replicas=1, max_replicas=10, upscale_delay_s=0),
    )


def build(spec):
    # What the controller does with a deployment's (or app's) policy: load the pickle, build, call.
    config = {"policy_function": spec["path"], "policy_kwargs": spec.get("kwargs", {})}
    policy = AutoscalingPolicy.from_serialized_policy_def(config, open(spec["blob"], "rb").read())
    return _resolve_policy_callable(policy)


specs = json.loads(sys.argv[1])
out = []
latency = _apply_autoscaling_config(build(specs["latency"]))
out.append(latency(ctx("Classifier", 2, latency=150.0))[0])
default_latency = _apply_autoscaling_config(build(specs["latency_fn"]))
out.append(default_latency(ctx("Classifier", 2, latency=150.0))[0])
schedule = _apply_autoscaling_config(build(specs["schedule"]))
monday_23 = datetime(2025, 6, 2, 23, 0, tzinfo=ZoneInfo("Europe/Berlin")).timestamp()
out.append(schedule(ctx("Classifier", 1, now=monday_23))[0])
pipeline = _apply_app_level_autoscaling_config(build(specs["pipeline"]))
decisions, _ = pipeline({c.deployment_id: c for c in (ctx("Classifier", 2, total=12), ctx("Preprocessor", 1))})
out.extend(sorted(decisions.values()))
try:
    build({**specs["latency"], "kwargs": {"sla": 1}})
except ValidationError:
    out.append("typo rejected")
assert not [m for m in sys.modules if m.startswith("serve_app")]
print(json.dumps(out))
"""


def test_by_value_pickle_runs_in_a_controller_without_serve_app(tmp_path):
    # Serve pickles the policy together with its module by value: the controller may lack serve_app.
    specs = {
        "latency": {"path": "serve_app.policies:LatencySLAPolicy", "kwargs": {"sla_ms": 50}},
        "latency_fn": {"path": "serve_app.policies:latency_sla_policy"},
        "schedule": {
            "path": "serve_app.policies:SchedulePolicy",
            "kwargs": SCHEDULE_KWARGS | {"schedule": OFFICE["schedule"]},
        },
        "pipeline": {
            "path": "serve_app.policies:ProportionalPipelinePolicy",
            "kwargs": {"preprocessors_per_classifier": 1.0},
        },
    }
    for key, spec in specs.items():
        blob = tmp_path / f"{key}.pkl"
        blob.write_bytes(AutoscalingPolicy(policy_function=spec["path"]).get_serialized_policy_def())
        spec["blob"] = str(blob)
    root = str(Path(policies.__file__).resolve().parents[1])
    script = _CONTROLLER_WITHOUT_SERVE_APP.replace("ROOT", repr(root))
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(specs)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # 2 x 150/50 = 6; default SLA 100: 2 x 1.5 = 3; Monday 23:00 Berlin: the 22:00-06:00 window (2);
    # Classifier 12/2 = 6 and Preprocessor 1.0 x 6 = 6.
    assert json.loads(result.stdout) == [6, 3, 2, 6, 6, "typo rejected"]


def test_policies_module_imports_without_ray():
    script = textwrap.dedent(
        """
        import sys

        class NoRay:
            def find_spec(self, name, path=None, target=None):
                if name == "ray" or name.startswith("ray."):
                    raise ImportError("no ray here")

        sys.meta_path.insert(0, NoRay())
        import serve_app.latency
        import serve_app.policies
        assert not [m for m in sys.modules if m == "ray" or m.startswith("ray.")]
        print("ok")
        """
    )
    root = str(Path(policies.__file__).resolve().parents[1])
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_cloudpickle_round_trip_of_an_instance():
    policy = LatencySLAPolicy(**LATENCY_KWARGS)
    clone = cloudpickle.loads(cloudpickle.dumps(policy))
    ctx = make_ctx(running=2, latencies=[150.0, 150.0])
    assert clone(ctx) == policy(ctx)
