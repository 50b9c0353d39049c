"""A time-windowed latency percentile for Serve's custom autoscaling metrics (pure, no Ray).

The Classifier keeps one :class:`RollingLatency`, feeds it every model-call latency
(``observe(ms)``) and returns :meth:`RollingLatency.autoscaling_stats` from its
``record_autoscaling_stats()`` method. Serve calls that method on each replica every
``RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S * RAY_SERVE_AUTOSCALING_METRIC_RECORD_INTERVAL_FACTOR``
seconds (10 s x 0.2 = 2 s by default), keeps the values of the last ``look_back_period_s``
and hands them to the policy as ``ctx.aggregated_metrics[LATENCY_METRIC][replica_id]``
(see :mod:`serve_app.policies`).

The same p90 is the latency of the routing stats a Classifier replica returns from its
``record_routing_stats()`` (:meth:`RollingLatency.routing_stats`), which
:class:`serve_app.router.LatencyAwareRouter` reads. Their keys are defined here, once.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

LATENCY_METRIC = "latency_ms_p90"
"""The custom autoscaling metric's name: the replica's p90 model-call latency in milliseconds."""

#: Keys of the routing stats (:meth:`RollingLatency.routing_stats`): the p90 latency in ms
#: (``None`` when the window is empty; the same key as the autoscaling metric), the requests
#: executing on the replica, and when it reported (``time.time()`` on the replica).
LATENCY_KEY = LATENCY_METRIC
ONGOING_KEY = "ongoing"
REPORTED_AT_KEY = "reported_at"


class RollingLatency:
    """Latencies (ms) of the last ``window_s`` seconds and their percentiles.

    Samples older than ``window_s`` (by ``clock``, monotonic by default) are dropped on every
    write and read; at most ``max_samples`` are kept (the oldest go first), so memory stays
    bounded under any load. Percentiles are nearest-rank: always an observed value.
    Thread-safe: a replica may observe from its batch loop while Serve reads the stats.
    """

    def __init__(
        self, window_s: float = 10.0, max_samples: int = 4096, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not (math.isfinite(window_s) and window_s > 0):
            raise ValueError(f"window_s must be a positive number of seconds, got {window_s!r}")
        if max_samples < 1:
            raise ValueError(f"max_samples must be at least 1, got {max_samples!r}")
        self.window_s = float(window_s)
        self.max_samples = int(max_samples)
        self._clock = clock
        self._samples: deque[tuple[float, float]] = deque(maxlen=self.max_samples)
        self._lock = threading.Lock()

    def observe(self, ms: float) -> None:
        """Record one latency in milliseconds (finite, >= 0)."""
        value = float(ms)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"a latency must be a finite number of milliseconds >= 0, got {ms!r}")
        now = self._clock()
        with self._lock:
            self._evict(now)
            self._samples.append((now, value))

    def _evict(self, now: float) -> None:
        horizon = now - self.window_s
        while self._samples and self._samples[0][0] <= horizon:
            self._samples.popleft()

    def values(self) -> list[float]:
        """The latencies still inside the window, oldest first."""
        now = self._clock()
        with self._lock:
            self._evict(now)
            return [value for _, value in self._samples]

    def __len__(self) -> int:
        return len(self.values())

    def percentile(self, q: float) -> float | None:
        """The nearest-rank ``q``-th percentile (0 < q <= 100) of the window; None when it is empty."""
        if not 0 < q <= 100:
            raise ValueError(f"q must be in (0, 100], got {q!r}")
        ordered = sorted(self.values())
        if not ordered:
            return None
        rank = math.ceil(q / 100 * len(ordered))
        return ordered[rank - 1]

    def p90(self) -> float | None:
        """The p90 latency of the window in ms; None when nothing was observed in it."""
        return self.percentile(90)

    def autoscaling_stats(self, metric: str = LATENCY_METRIC) -> dict[str, float]:
        """What ``record_autoscaling_stats()`` returns: ``{metric: p90 ms}``.

        An idle replica (nothing in the window) reports 0.0: no latency pressure, so an idle
        deployment can scale down. (Leaving the key out would read as "no stats" to the
        policy, which then holds its replica count.)
        """
        p90 = self.p90()
        return {metric: 0.0 if p90 is None else float(p90)}

    def routing_stats(self, ongoing: int, reported_at: float) -> dict[str, float | int | None]:
        """What ``record_routing_stats()`` returns: the window's p90 (``None`` when empty), the load, the time.

        ``ongoing``: the requests executing on the replica; ``reported_at``: ``time.time()`` now.
        """
        return {LATENCY_KEY: self.p90(), ONGOING_KEY: ongoing, REPORTED_AT_KEY: reported_at}
