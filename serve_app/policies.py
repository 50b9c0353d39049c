"""Custom Ray Serve autoscaling policies for mnist-serve (pure: no Ray import at module level).

Serve names a policy by import string in its config (``autoscaling_config.policy`` for one
deployment, ``autoscaling_policy`` for the whole application). What Ray Serve 2.60 does with it:

* **Keyword arguments reach classes only.** ``policy_kwargs`` is "passed to the policy class
  constructor when policy_function refers to a class. Ignored when policy_function is a plain
  function" (``ray.serve.config.AutoscalingPolicy``). The controller instantiates a class once
  per (re)deploy with ``Class(**policy_kwargs)`` and calls the instance on every tick
  (``_resolve_policy_callable``). So the configurable policies here are classes
  (:class:`LatencySLAPolicy`, :class:`SchedulePolicy`, :class:`ProportionalPipelinePolicy`);
  :func:`latency_sla_policy` and :func:`proportional_pipeline_policy` are plain functions with
  the defaults, for configs without kwargs. The kwargs are validated with pydantic when the
  controller builds the policy: a typo fails the deploy loudly instead of being ignored.
* **Deployment policy:** ``policy(ctx) -> (replicas, state)``. Serve wraps it: the cold-start
  fast path (no running replica, requests waiting), ``upscaling_factor``/``downscaling_factor``,
  ``upscale_delay_s``/``downscale_delay_s``, then ``min_replicas``/``max_replicas`` (adjusted
  for ``target_capacity``). ``state`` comes back as ``ctx.policy_state`` next tick (Serve adds
  its own delay-counter keys).
* **Application policy:** ``policy({DeploymentID: ctx}) -> ({DeploymentID: replicas},
  {DeploymentID: state} | None)``. The keys are the ``DeploymentID(name, app_name)`` objects
  Serve passes in (only deployments with an ``autoscaling_config`` appear); returning any other
  key fails an assertion. ``policy_kwargs`` reach a class here too (``autoscaling_policy:
  {policy_function, policy_kwargs}``). An application policy overrides every deployment-level
  ``policy`` of the app (Serve logs a warning).
* **Shipping: by value.** Serve cloudpickles the policy *together with this module, by value*
  (``register_pickle_by_value``), so the controller needs no ``serve_app``. Classes of this
  module are rebuilt from the pickle there, and pydantic models (and stdlib dataclasses with
  defaults) do not survive that reliably: a nested model fails to load with ``SchemaError``
  (checked against Ray 2.60's cloudpickle and pydantic 2). Hence the structure: the pydantic
  models live inside the ``_*_model()`` functions and are built when a policy is constructed
  (once per deploy, in the controller); the policies keep only the validated values, as
  builtins, in a ``SimpleNamespace``. Nothing pydantic is ever pickled. The factories import
  what their class bodies use *locally*: cloudpickle ships a by-value function's globals as
  found by its ``LOAD_GLOBAL`` instructions, and a class body reads names with ``LOAD_NAME``,
  which it misses (the by-value test in ``tests/unit/test_policies.py`` guards this).

Every decision here is clamped to ``[ctx.capacity_adjusted_min_replicas,
ctx.capacity_adjusted_max_replicas]`` before Serve applies its own bounds again.
"""

import math
import re
import time
from collections.abc import Mapping
from datetime import datetime
from datetime import time as dtime
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel

from serve_app.latency import LATENCY_METRIC

if TYPE_CHECKING:
    from ray.serve._private.common import DeploymentID, ReplicaID
    from ray.serve.config import AutoscalingContext

__all__ = [
    "LATENCY_METRIC",
    "PREPROCESSORS_PER_CLASSIFIER",
    "LatencySLAPolicy",
    "ProportionalPipelinePolicy",
    "SchedulePolicy",
    "clamp",
    "default_replicas",
    "latency_sla_policy",
    "proportional_pipeline_policy",
]

PREPROCESSORS_PER_CLASSIFIER = 0.5
"""Preprocessor replicas per Classifier replica (1 per 2) for :func:`proportional_pipeline_policy`."""


# --------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------


def clamp(replicas: float, ctx: "AutoscalingContext") -> int:
    """``replicas`` rounded up and held within the deployment's capacity-adjusted bounds."""
    low, high = ctx.capacity_adjusted_min_replicas, ctx.capacity_adjusted_max_replicas
    return max(low, min(high, math.ceil(replicas)))


def _pending_requests(ctx: "AutoscalingContext") -> float:
    """Ongoing plus queued requests (at zero replicas, all of them are queued)."""
    total = ctx.total_num_requests or 0.0
    queued = ctx.total_queued_requests or 0.0
    return max(float(total), float(queued))


def default_replicas(ctx: "AutoscalingContext") -> float:
    """Serve 2.60's default decision (``replica_queue_length_autoscaling_policy``), without Ray.

    Cold start (no running replica, requests waiting): ``max(ceil(upscaling_factor),
    target)``. No running replica otherwise: keep the target. Else ``total_num_requests /
    target_ongoing_requests`` (written as Serve writes it, so the floats are identical).
    The unit tests check parity with Serve's own function.
    """
    config = ctx.config
    if config is None:  # Serve hands every policy call the deployment's autoscaling config
        raise ValueError("the autoscaling context carries no autoscaling config")
    running = ctx.current_num_replicas
    if running == 0:
        if ctx.total_num_requests > 0:
            return max(math.ceil(1 * config.get_upscaling_factor()), ctx.target_num_replicas)
        return ctx.target_num_replicas
    target_num_requests = config.get_target_ongoing_requests() * running
    return running * (ctx.total_num_requests / target_num_requests)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _validated(model: type[BaseModel], kwargs: Mapping[str, Any]) -> SimpleNamespace:
    """``kwargs`` validated by ``model`` (pydantic errors propagate), as a namespace of builtins."""
    return SimpleNamespace(**model.model_validate(dict(kwargs)).model_dump())


# --------------------------------------------------------------------------------------
# (a) Latency SLA on the replicas' own p90 (a custom metric from record_autoscaling_stats)
# --------------------------------------------------------------------------------------


def _latency_model() -> type[BaseModel]:
    """The pydantic model of :class:`LatencySLAPolicy`'s ``policy_kwargs`` (built on call)."""
    from typing import Literal, Self

    from pydantic import ConfigDict, Field, PositiveFloat, PositiveInt, model_validator

    default_metric = LATENCY_METRIC

    class LatencySLAConfig(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)

        sla_ms: PositiveFloat = 100.0
        """The p90 latency (ms) the deployment must stay under."""
        metric: str = Field(default=default_metric, min_length=1)
        """The custom metric the replicas report (ms) from ``record_autoscaling_stats()``."""
        aggregate: Literal["mean", "max"] = "mean"
        """How replicas' p90s combine into the observed latency that is compared with the SLA."""
        scale_up_step: PositiveInt = 1
        """The least a breach adds to the target."""
        max_scale_up_step: PositiveInt | None = None
        """The most one decision adds (None: as many as the proportion asks, up to the max bound)."""
        downscale_below: float = Field(default=0.5, gt=0, lt=1)
        """Scale down only while every replica's p90 stayed under ``sla_ms * downscale_below``."""
        scale_down_step: PositiveInt = 1
        """How many replicas one scale-down removes."""

        @model_validator(mode="after")
        def _steps_consistent(self) -> Self:
            if self.max_scale_up_step is not None and self.max_scale_up_step < self.scale_up_step:
                raise ValueError(
                    f"max_scale_up_step ({self.max_scale_up_step}) must be >= scale_up_step ({self.scale_up_step})"
                )
            return self

    return LatencySLAConfig


class LatencySLAPolicy:
    """Keep the replicas' p90 latency under an SLA (a deployment-level policy).

    ``policy_kwargs`` (all optional): ``sla_ms`` (100), ``metric`` (``latency_ms_p90``),
    ``aggregate`` (``mean`` | ``max``), ``scale_up_step`` (1), ``max_scale_up_step`` (None),
    ``downscale_below`` (0.5, in (0, 1)), ``scale_down_step`` (1). Unknown keys are errors.

    The replicas report ``{"latency_ms_p90": ms}`` from ``record_autoscaling_stats()``
    (:class:`serve_app.latency.RollingLatency`); Serve hands the policy
    ``ctx.aggregated_metrics[metric][replica_id]`` (each replica's series over
    ``look_back_period_s``, reduced by ``aggregation_function``) and the series themselves in
    ``ctx.raw_metrics[metric][replica_id]``.

    Decision, from the baseline ``ctx.target_num_replicas`` (not the running count, so that a
    scale-up in flight is not asked for twice):

    * **No stats** (no running replica, the metric missing, or no finite value from any
      running replica): keep the target; at target 0 with requests waiting, 1.
    * **Breach** (observed > ``sla_ms``): ``max(target + scale_up_step, ceil(target * observed /
      sla_ms))``, capped at ``target + max_scale_up_step`` when set. The observed latency is
      the **mean** of the replicas' p90s by default: with Serve's even routing it tracks the
      fleet's p90, and one sick replica (a slow node), which more replicas do not cure, cannot
      ratchet the deployment up alone. ``aggregate: max`` reacts to the worst replica instead.
      Replicas without stats are left out of a breach decision (the ones that do report are
      already over the SLA).
    * **Headroom** (every running replica reported, and every sample in each replica's
      look-back series stayed under ``sla_ms * downscale_below``; the aggregated value stands in
      for a replica without a raw series): ``target - scale_down_step``. This is deliberately
      stricter than the scale-up test: the *peak* over the whole look-back, of *every* replica.
    * Otherwise hold the target.

    Always clamped to the capacity-adjusted bounds. The returned state (visible in
    ``ctx.policy_state`` next tick) records the observed latency, the window peak, how many
    replicas reported, the decision and its reason. Serve still applies its delays and
    scaling factors to the result.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.config = _validated(_latency_model(), kwargs)

    def _latencies(self, ctx: "AutoscalingContext") -> "dict[ReplicaID, float]":
        running = set(ctx.running_replicas or ())
        per_replica = (ctx.aggregated_metrics or {}).get(self.config.metric) or {}
        return {
            replica: float(value) for replica, value in per_replica.items() if replica in running and _finite(value)
        }

    def _window_peak(self, ctx: "AutoscalingContext", latencies: "Mapping[ReplicaID, float]") -> float:
        series_by_replica = (ctx.raw_metrics or {}).get(self.config.metric) or {}
        peaks = []
        for replica, aggregated in latencies.items():
            samples = [point.value for point in series_by_replica.get(replica) or () if _finite(point.value)]
            peaks.append(max(samples) if samples else aggregated)
        return max(peaks)

    def __call__(self, ctx: "AutoscalingContext") -> tuple[int, dict[str, Any]]:
        """One decision: ``(replicas, state)``."""
        cfg = self.config
        target = ctx.target_num_replicas
        latencies = self._latencies(ctx)
        running = len(ctx.running_replicas or ())
        state: dict[str, Any] = {
            "sla_ms": cfg.sla_ms,
            "observed_latency_ms": None,
            "window_peak_ms": None,
            "reporting_replicas": len(latencies),
            "running_replicas": running,
        }
        if not latencies:
            if target == 0 and _pending_requests(ctx) > 0:
                desired, reason = 1, "no latency stats; requests waiting at zero replicas"
            else:
                desired, reason = target, "no latency stats; hold"
        else:
            values = list(latencies.values())
            observed = max(values) if cfg.aggregate == "max" else sum(values) / len(values)
            peak = self._window_peak(ctx, latencies)
            state["observed_latency_ms"] = observed
            state["window_peak_ms"] = peak
            if observed > cfg.sla_ms:
                proportional = math.ceil(target * observed / cfg.sla_ms - 1e-9)
                desired = max(target + cfg.scale_up_step, proportional)
                if cfg.max_scale_up_step is not None:
                    desired = min(desired, target + cfg.max_scale_up_step)
                reason = f"{cfg.aggregate} p90 {observed:.1f} ms > SLA {cfg.sla_ms:g} ms"
            elif len(latencies) < running:
                desired, reason = target, "partial stats; hold"
            elif peak < cfg.sla_ms * cfg.downscale_below:
                desired = max(0, target - cfg.scale_down_step)
                reason = f"peak p90 {peak:.1f} ms < {cfg.downscale_below:g} x SLA over the look-back"
            else:
                desired, reason = target, "within the SLA band"
        decision = clamp(desired, ctx)
        state["desired_replicas"] = desired
        state["decision"] = decision
        state["reason"] = reason
        return decision, state


_DEFAULT_LATENCY_SLA = LatencySLAPolicy()


def latency_sla_policy(ctx: "AutoscalingContext") -> tuple[int, dict[str, Any]]:
    """:class:`LatencySLAPolicy` with its defaults (SLA 100 ms, mean, 0.5 headroom).

    A plain function: Serve ignores ``policy_kwargs`` for it. To set the SLA, name the class
    ``serve_app.policies:LatencySLAPolicy`` with ``policy_kwargs`` instead.
    """
    return _DEFAULT_LATENCY_SLA(ctx)


# --------------------------------------------------------------------------------------
# (b) A time-of-day schedule
# --------------------------------------------------------------------------------------

_WALL_CLOCK = re.compile(r"^(?P<h>[01]\d|2[0-3]):(?P<m>[0-5]\d)(?::(?P<s>[0-5]\d))?$")
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _parse_wall_clock(value: Any) -> dtime:
    if isinstance(value, dtime):
        if value.tzinfo is not None:
            raise ValueError("a schedule time is a local wall-clock time: give no UTC offset (set `timezone`)")
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(
            f"a schedule time is a string 'HH:MM' (24 h), got the integer {value}: quote times in YAML "
            "(YAML 1.1 reads an unquoted 17:00 as the base-60 integer 1020)"
        )
    if not isinstance(value, str):
        raise ValueError(f"a schedule time is a string 'HH:MM' (24 h), got {type(value).__name__} {value!r}")
    match = _WALL_CLOCK.match(value.strip())
    if not match:
        raise ValueError(f"a schedule time is 'HH:MM' or 'HH:MM:SS' (00:00 to 23:59), got {value!r}")
    return dtime(int(match["h"]), int(match["m"]), int(match["s"] or 0))


def _schedule_model() -> type[BaseModel]:
    """The pydantic model of :class:`SchedulePolicy`'s ``policy_kwargs`` (built on call)."""
    from typing import Annotated, Literal, Self

    from pydantic import BeforeValidator, ConfigDict, NonNegativeInt, field_validator, model_validator

    wall_clock = Annotated[dtime, BeforeValidator(_parse_wall_clock)]
    weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

    class ScheduleWindow(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)

        start: wall_clock
        end: wall_clock
        replicas: NonNegativeInt
        days: tuple[weekday, ...] | None = None

        @field_validator("days")
        @classmethod
        def _days_not_empty(cls, days: tuple[str, ...] | None) -> tuple[str, ...] | None:
            if days is not None and not days:
                raise ValueError("days, when given, names at least one day (leave it out for every day)")
            return days

        @model_validator(mode="after")
        def _not_empty(self) -> Self:
            if self.start == self.end:
                raise ValueError(
                    f"window {self.start:%H:%M}-{self.end:%H:%M} is empty (start == end); "
                    "for all day long, use default_replicas"
                )
            return self

    class ScheduleConfig(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)

        timezone: str = "UTC"
        schedule: tuple[ScheduleWindow, ...] = ()
        default_replicas: NonNegativeInt | None = None

        @field_validator("timezone")
        @classmethod
        def _known_timezone(cls, name: str) -> str:
            try:
                ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError) as err:
                raise ValueError(f"unknown IANA timezone {name!r} (e.g. 'Europe/Berlin', 'UTC')") from err
            return name

    return ScheduleConfig


def _window_contains(window: Mapping[str, Any], local: datetime) -> bool:
    """Whether the local wall-clock time ``local`` falls in ``window`` (start inclusive, end exclusive).

    ``end`` before ``start`` wraps midnight; ``days`` names the days a window *starts* on.
    """
    start, end, days = window["start"], window["end"], window["days"]
    now = local.time().replace(tzinfo=None)
    weekday = local.weekday()

    def runs_on(day: int) -> bool:
        return days is None or _WEEKDAYS[day] in days

    if start < end:
        return start <= now < end and runs_on(weekday)
    return (now >= start and runs_on(weekday)) or (now < end and runs_on((weekday - 1) % 7))


class SchedulePolicy:
    """Replicas by local time of day, from a table in ``policy_kwargs`` (a deployment policy).

    ``policy_kwargs``: ``timezone`` (IANA name, default ``UTC``); ``schedule``, a list of
    windows ``{start: "HH:MM", end: "HH:MM", replicas: n, days: [mon, ...]}`` (``days``
    optional); ``default_replicas`` outside every window (default: the capacity-adjusted
    minimum). Times are strings (quote them in YAML). A window runs from ``start``
    (inclusive) to ``end`` (exclusive); ``end`` before ``start`` wraps midnight, ``end:
    "00:00"`` runs to midnight; ``days`` are the days a window *starts* on (a Friday
    ``22:00``-``06:00`` window covers Saturday morning). Windows may overlap: the **first**
    matching row wins, so put exceptions (a lunch peak) before the general rows. Invalid
    tables (bad times, empty windows, unknown timezone or keys) raise pydantic's
    ``ValidationError`` when the policy is built.

    ``ctx.current_time`` (a Unix timestamp: Serve passes ``time.time()``) is converted to the
    timezone with :mod:`zoneinfo`; windows are *wall-clock* times there, so ``09:00`` stays
    09:00 local across DST changes. On the spring-forward day a window edge in the skipped
    hour is reached at the jump; on the fall-back day the repeated hour matches twice. The
    result is clamped to the capacity-adjusted bounds; Serve's
    ``upscale_delay_s``/``downscale_delay_s`` still apply (keep them short for a schedule).
    """

    def __init__(self, **kwargs: Any) -> None:
        self.config = _validated(_schedule_model(), kwargs)
        self._zone = ZoneInfo(self.config.timezone)

    def match(self, local: datetime) -> int | None:
        """The index of the first window containing the local time ``local``, or None."""
        return next(
            (index for index, window in enumerate(self.config.schedule) if _window_contains(window, local)), None
        )

    def __call__(self, ctx: "AutoscalingContext") -> tuple[int, dict[str, Any]]:
        """One decision: ``(replicas, state)``."""
        now = ctx.current_time if ctx.current_time is not None else time.time()
        local = datetime.fromtimestamp(now, tz=self._zone)
        index = self.match(local)
        if index is not None:
            scheduled, reason = self.config.schedule[index]["replicas"], f"window {index}"
        elif self.config.default_replicas is not None:
            scheduled, reason = self.config.default_replicas, "default_replicas"
        else:
            scheduled, reason = ctx.capacity_adjusted_min_replicas, "no window; capacity-adjusted minimum"
        decision = clamp(scheduled, ctx)
        return decision, {
            "local_time": local.isoformat(),
            "window": index,
            "scheduled_replicas": scheduled,
            "decision": decision,
            "reason": reason,
        }


# --------------------------------------------------------------------------------------
# (c) An application-level policy: Preprocessor in proportion to the Classifier
# --------------------------------------------------------------------------------------


def _pipeline_model() -> type[BaseModel]:
    """The pydantic model of :class:`ProportionalPipelinePolicy`'s ``policy_kwargs`` (built on call)."""
    from pydantic import ConfigDict, Field, NonNegativeInt, PositiveFloat

    default_ratio = PREPROCESSORS_PER_CLASSIFIER

    class PipelineConfig(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)

        classifier: str = Field(default="Classifier", min_length=1)
        preprocessor: str = Field(default="Preprocessor", min_length=1)
        preprocessors_per_classifier: PositiveFloat = default_ratio
        min_preprocessors: NonNegativeInt = 1

    return PipelineConfig


class ProportionalPipelinePolicy:
    """Scale the Classifier on its load and the Preprocessor in proportion (an app-level policy).

    ``policy_kwargs`` (all optional): ``classifier`` / ``preprocessor`` (deployment names,
    ``Classifier`` / ``Preprocessor``), ``preprocessors_per_classifier`` (0.5),
    ``min_preprocessors`` (1).

    * The **Classifier** (and every other deployment in ``contexts``, the Ingress included)
      gets Serve's default decision, :func:`default_replicas`: ongoing plus queued requests
      over its own ``target_ongoing_requests``.
    * The **Preprocessor** gets ``max(min_preprocessors, ceil(classifier_decision *
      preprocessors_per_classifier))``, from the Classifier's clamped decision. Without a
      Classifier context (it has fixed replicas) the Preprocessor falls back to its own
      default decision.

    Each decision is clamped to its own deployment's capacity-adjusted bounds. The
    decisions and states are keyed by the ``DeploymentID`` objects Serve passed in.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.config = _validated(_pipeline_model(), kwargs)

    def __call__(
        self, contexts: "Mapping[DeploymentID, AutoscalingContext]"
    ) -> "tuple[dict[DeploymentID, int], dict[DeploymentID, dict[str, Any]]]":
        """One decision for the app: ``({deployment_id: replicas}, {deployment_id: state})``."""
        cfg = self.config
        decisions: dict[DeploymentID, int] = {}
        states: dict[DeploymentID, dict[str, Any]] = {}
        for deployment_id, ctx in contexts.items():
            desired = default_replicas(ctx)
            decisions[deployment_id] = clamp(desired, ctx)
            states[deployment_id] = {"rule": "default", "desired_replicas": desired}

        by_name = {deployment_id.name: deployment_id for deployment_id in contexts}
        classifier_id, preprocessor_id = by_name.get(cfg.classifier), by_name.get(cfg.preprocessor)
        if classifier_id is not None and preprocessor_id is not None:
            classifiers = decisions[classifier_id]
            desired = max(cfg.min_preprocessors, math.ceil(classifiers * cfg.preprocessors_per_classifier - 1e-9))
            decisions[preprocessor_id] = clamp(desired, contexts[preprocessor_id])
            states[preprocessor_id] = {
                "rule": f"{cfg.preprocessors_per_classifier:g} per {cfg.classifier} replica",
                "classifier_replicas": classifiers,
                "desired_replicas": desired,
            }
        for deployment_id, decision in decisions.items():
            states[deployment_id]["decision"] = decision
        return decisions, states


_DEFAULT_PIPELINE = ProportionalPipelinePolicy()


def proportional_pipeline_policy(
    contexts: "Mapping[DeploymentID, AutoscalingContext]",
) -> "tuple[dict[DeploymentID, int], dict[DeploymentID, dict[str, Any]]]":
    """:class:`ProportionalPipelinePolicy` with its defaults (1 Preprocessor per 2 Classifiers).

    A plain function for ``autoscaling_policy: {policy_function: ...}``; to change the ratio
    or the deployment names, name the class with ``policy_kwargs``.
    """
    return _DEFAULT_PIPELINE(contexts)
