"""Verdicts of the load-test scenarios, and the figures they rest on (pure: no Locust, no I/O).

A scenario's verdict is a list of :class:`Check` rows; the run passes when every check passes.
Figures that need the run's timeline (failures around a fault, recovery after a spike) are
computed here from plain ``(time, ok)`` samples so they can be tested without a service.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Check:
    """One threshold of a verdict: ``observed`` compared with ``limit`` by ``op`` (``<=`` or ``>=``).

    ``observed`` None means the run gave nothing to measure (for example no overload answers in
    a spike that never went past capacity); such a check passes and says so in ``note``.
    """

    name: str
    observed: float | None
    limit: float
    op: str = "<="
    unit: str = ""
    note: str = ""

    @property
    def passed(self) -> bool:
        """Whether the observed figure is within the limit (a missing figure passes)."""
        if self.observed is None:
            return True
        if isinstance(self.observed, float) and math.isnan(self.observed):
            return False
        return self.observed <= self.limit if self.op == "<=" else self.observed >= self.limit

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with ``passed``."""
        return {**asdict(self), "passed": self.passed}


def verdict_passed(checks: Sequence[Check]) -> bool:
    """A run passes when every check does."""
    return all(check.passed for check in checks)


def format_checks(scenario: str, checks: Sequence[Check]) -> str:
    """The verdict as a small text table, for the end of a run's output."""
    lines = [f"verdict of {scenario}: {'PASS' if verdict_passed(checks) else 'FAIL'}"]
    for check in checks:
        observed = "n/a" if check.observed is None else f"{check.observed:.4g}"
        mark = "ok  " if check.passed else "FAIL"
        note = f"  ({check.note})" if check.note else ""
        lines.append(f"  {mark} {check.name}: {observed}{check.unit} {check.op} {check.limit:g}{check.unit}{note}")
    return "\n".join(lines)


# --- failures and recovery around faults ------------------------------------------------------


@dataclass(frozen=True)
class FaultWindow:
    """Failed requests around one fault: while it was unrecovered, and after, until the next one."""

    failures_during: int
    requests_during: int
    failures_after: int
    requests_after: int


def fault_windows(
    samples: Iterable[tuple[float, bool]],
    fault_times: Sequence[float],
    recovered_times: Sequence[float | None],
    end: float,
) -> list[FaultWindow]:
    """Split request outcomes ``(time, ok)`` into a window per fault.

    Fault ``i`` at ``fault_times[i]`` is *during* until ``recovered_times[i]`` (or, unrecovered,
    until the next fault or ``end``), and *after* from then until the next fault or ``end``.
    Faults must be in time order.
    """
    if len(fault_times) != len(recovered_times):
        raise ValueError("one recovery time (or None) per fault")
    ordered = sorted(samples)
    windows = []
    for index, started in enumerate(fault_times):
        stop = fault_times[index + 1] if index + 1 < len(fault_times) else end
        recovered = recovered_times[index]
        boundary = stop if recovered is None else min(max(recovered, started), stop)
        during = [ok for t, ok in ordered if started <= t < boundary]
        after = [ok for t, ok in ordered if boundary <= t < stop]
        windows.append(
            FaultWindow(
                failures_during=sum(not ok for ok in during),
                requests_during=len(during),
                failures_after=sum(not ok for ok in after),
                requests_after=len(after),
            )
        )
    return windows


def recovery_after(samples: Iterable[tuple[float, bool]], since: float, window_s: float) -> float | None:
    """Seconds from ``since`` to the start of the first ``window_s``-long run of successes only.

    The run must hold at least one request and end before the last sample; None when the
    outcomes never settle (or no request came after ``since``).
    """
    if window_s <= 0:
        raise ValueError("window_s must be > 0")
    ordered = [(t, ok) for t, ok in sorted(samples) if t >= since]
    if not ordered:
        return None
    streak_start: float | None = None
    for t, ok in ordered:
        if not ok:
            streak_start = None
            continue
        if streak_start is None:
            streak_start = t
        if t - streak_start >= window_s:
            return max(0.0, streak_start - since)
    return None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank ``q``-th percentile (0 < q <= 100); None for no values."""
    if not 0 < q <= 100:
        raise ValueError("q must be in (0, 100]")
    if not values:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(q / 100 * len(ordered)) - 1]


def zipf_weights(count: int, exponent: float) -> list[float]:
    """Zipf weights ``1 / k**exponent`` for ranks 1..count, normalised to sum to 1."""
    if count < 1:
        raise ValueError("count must be >= 1")
    if not (math.isfinite(exponent) and exponent >= 0):
        raise ValueError("exponent must be a finite number >= 0")
    raw = [1 / rank**exponent for rank in range(1, count + 1)]
    total = sum(raw)
    return [weight / total for weight in raw]
