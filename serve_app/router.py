"""A latency-aware request router for the Classifier: model affinity first, then recent latency.

Enable it per deployment in the Serve config::

    - name: Classifier
      request_router_config:
        request_router_class: serve_app.router:LatencyAwareRouter
        request_routing_stats_period_s: 1
        request_router_kwargs: {stats_max_age_s: 30, num_tiers: 3}

**What the replicas report.** Every ``request_routing_stats_period_s`` Serve's controller calls
the deployment's ``record_routing_stats()`` and hands the dict to every router as
``RunningReplica.routing_stats`` (the Classifier's come from
:meth:`serve_app.latency.RollingLatency.routing_stats`, which defines the keys). This router
reads these keys (others are ignored):

``latency_ms_p90`` (float or ``None``)
    90th percentile of the replica's request latency in milliseconds over a recent time window
    (:class:`serve_app.latency.RollingLatency`); ``None`` when the window is empty.
``ongoing`` (int, optional, default 0)
    requests executing on the replica when it reported.
``reported_at`` (float, optional)
    ``time.time()`` on the replica when it reported. Without it stats never count as stale.

**How a request is routed** (one call of :meth:`LatencyAwareRouter.choose_replicas`):

1. Candidates come from Serve's mixins, as in the default router: for a request with a
   ``multiplexed_model_id``, :meth:`MultiplexMixin.apply_multiplex_routing` (the replicas that
   hold the model; after a busy or empty try, those with the fewest models; after the matching
   timeout, all); otherwise :meth:`LocalityMixin.apply_locality_routing`.
2. :func:`rank_by_latency` orders them: replicas holding the model before the others, then
   latency tiers by expected latency ``latency_ms_p90 * (1 + queue_weight * ongoing /
   max_ongoing_requests)``. Tier bounds start at the best known replica's expected latency
   and grow by ``tier_ratio`` (at least by ``tier_slack_ms``) per tier, the last of
   ``num_tiers`` taking the rest: similar replicas share a tier (the base class balances them
   by queue length), a far slower one gets a later tier. Replicas with no stats, or stats
   older than ``stats_max_age_s`` (keep it at least 3 x ``request_routing_stats_period_s``),
   are *unknown*: they join the first tier (or the tier ``unknown_as_ms`` falls in), so a new
   replica is probed instead of starved.
3. Serve's base class tries the tiers in order and, inside one, takes the replica with the
   shortest queue (its cached or probed queue length) that has room; equal queues go to the
   first listed, i.e. the lowest expected latency, unknown replicas last. So an unknown replica
   gets requests whenever its queue is shorter than the known ones' (as soon as they are busy),
   not while an idle known replica would do. A tier whose replicas are all full falls through
   to the next.

Model affinity outranks latency, as the mixin's candidate sets do in Serve's default router: a
replica that alone holds a model keeps that model's requests until it is full, however slow it
is. The Classifier therefore preloads the default model on every replica (``preload``), so the
default model's traffic is ranked by latency over all replicas from their start.

A slow replica left without traffic empties its latency window, reports ``None``, becomes
unknown and is probed again: slowness is forgotten after the replica's window, not kept forever.
The replica's window length therefore sets how often a slow replica is re-probed (each probe
lasts until its next report reaches the router: about ``request_routing_stats_period_s``).

The ranking (:class:`Candidate`, :class:`RankingConfig`, :func:`rank_by_latency`,
:func:`candidate_from_stats`) is plain Python over dataclasses; the router class is a thin
wrapper around it. Serve pickles this module by value (cloudpickle) into every handle that routes
to the Classifier (the Ingress's), so it stays self-contained: Ray and the standard library only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, TypeGuard

from ray.serve.request_router import (
    FIFOMixin,
    LocalityMixin,
    MultiplexMixin,
    PendingRequest,
    RequestRouter,
    RunningReplica,
)

from serve_app.latency import LATENCY_KEY, ONGOING_KEY, REPORTED_AT_KEY

logger = logging.getLogger("ray.serve")


@dataclass(frozen=True)
class Candidate:
    """One replica as the ranking sees it.

    ``key`` identifies the replica (the router uses its ``ReplicaID``); ``affinity`` 0 means it
    holds the request's model (or the request names none), 1 that it does not; ``age_s`` is the
    age of the stats (``None``: unknown age, taken as fresh); ``capacity`` is its
    ``max_ongoing_requests``.
    """

    key: Hashable
    latency_ms_p90: float | None = None
    ongoing: int = 0
    capacity: int = 1
    age_s: float | None = None
    affinity: int = 0


@dataclass(frozen=True)
class RankingConfig:
    """The router's knobs: the ``request_router_kwargs`` of the deployment's ``request_router_config``."""

    #: stats older than this (by their ``reported_at``) count as unknown
    stats_max_age_s: float = 30.0
    #: the expected latency given to unknown replicas; ``None``: they join the first tier
    unknown_as_ms: float | None = None
    #: latency tiers per affinity group (the last one takes everything slower)
    num_tiers: int = 3
    #: a tier ends at ``tier_ratio`` times the previous bound (the first bound: the best replica)
    tier_ratio: float = 1.5
    #: ... or at the previous bound plus this many ms, whichever is larger (for tiny latencies)
    tier_slack_ms: float = 5.0
    #: weight of the reported queue fill (``ongoing / capacity``) in the expected latency; 0: p90 only
    queue_weight: float = 1.0

    def __post_init__(self) -> None:
        problems = []
        if not (_is_number(self.stats_max_age_s) and self.stats_max_age_s > 0):
            problems.append(f"stats_max_age_s must be a number > 0, got {self.stats_max_age_s!r}")
        if self.unknown_as_ms is not None and not (_is_number(self.unknown_as_ms) and self.unknown_as_ms >= 0):
            problems.append(f"unknown_as_ms must be null or a number >= 0, got {self.unknown_as_ms!r}")
        if not (isinstance(self.num_tiers, int) and not isinstance(self.num_tiers, bool) and self.num_tiers >= 1):
            problems.append(f"num_tiers must be an integer >= 1, got {self.num_tiers!r}")
        if not (_is_number(self.tier_ratio) and self.tier_ratio >= 1):
            problems.append(f"tier_ratio must be a number >= 1, got {self.tier_ratio!r}")
        if not (_is_number(self.tier_slack_ms) and self.tier_slack_ms >= 0):
            problems.append(f"tier_slack_ms must be a number >= 0, got {self.tier_slack_ms!r}")
        if self.tier_ratio == 1 and self.tier_slack_ms == 0:
            problems.append("tier_ratio 1 with tier_slack_ms 0 leaves no room above the best latency in a tier")
        if not (_is_number(self.queue_weight) and self.queue_weight >= 0):
            problems.append(f"queue_weight must be a number >= 0, got {self.queue_weight!r}")
        if problems:
            raise ValueError("invalid LatencyAwareRouter settings: " + "; ".join(problems))

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> RankingConfig:
        """Validate ``request_router_kwargs`` (unknown keys are an error, not silently ignored)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ValueError(f"unknown LatencyAwareRouter settings {unknown}; known: {sorted(known)}")
        return cls(**dict(kwargs))


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def candidate_from_stats(
    key: Hashable,
    stats: Mapping[str, Any] | None,
    *,
    now: float,
    capacity: int = 1,
    affinity: int = 0,
) -> Candidate:
    """A :class:`Candidate` from a replica's ``routing_stats``; malformed values read as missing."""
    stats = stats or {}
    latency = stats.get(LATENCY_KEY)
    ongoing = stats.get(ONGOING_KEY)
    reported_at = stats.get(REPORTED_AT_KEY)
    return Candidate(
        key=key,
        latency_ms_p90=float(latency) if _is_number(latency) and latency >= 0 else None,
        ongoing=int(ongoing) if _is_number(ongoing) and ongoing >= 0 else 0,
        capacity=max(1, int(capacity)),
        age_s=max(0.0, now - reported_at) if _is_number(reported_at) else None,
        affinity=affinity,
    )


def expected_latency_ms(candidate: Candidate, config: RankingConfig = RankingConfig()) -> float | None:
    """Expected latency of a request sent to ``candidate``; ``None`` when it is unknown (no or stale stats)."""
    if candidate.latency_ms_p90 is None:
        return None
    if candidate.age_s is not None and candidate.age_s > config.stats_max_age_s:
        return None
    fill = candidate.ongoing / max(1, candidate.capacity)
    return candidate.latency_ms_p90 * (1 + config.queue_weight * fill)


def _tier_of(expected_ms: float, best_ms: float, config: RankingConfig) -> int:
    """The tier of a latency: 0 up to the first bound past ``best_ms``, 1 up to the next... capped."""
    bound = best_ms
    for tier in range(config.num_tiers - 1):
        bound = max(bound * config.tier_ratio, bound + config.tier_slack_ms)
        if expected_ms <= bound:
            return tier
    return config.num_tiers - 1


def _rank_group(candidates: Sequence[Candidate], config: RankingConfig) -> list[list[Candidate]]:
    """Latency tiers of candidates that share one affinity."""
    estimates = {id(c): expected_latency_ms(c, config) for c in candidates}
    known = [estimate for estimate in estimates.values() if estimate is not None]
    if not known:
        return [list(candidates)]
    best = min(known)
    tiers: list[list[tuple[float, int, Candidate]]] = [[] for _ in range(config.num_tiers)]
    for order, candidate in enumerate(candidates):
        estimate = estimates[id(candidate)]
        if estimate is None:
            if config.unknown_as_ms is None:
                tier, sort_key = 0, math.inf
            else:
                tier, sort_key = _tier_of(config.unknown_as_ms, best, config), config.unknown_as_ms
        else:
            tier, sort_key = _tier_of(estimate, best, config), estimate
        tiers[tier].append((sort_key, order, candidate))
    return [[c for _, _, c in sorted(tier, key=lambda item: item[:2])] for tier in tiers if tier]


def rank_by_latency(candidates: Sequence[Candidate], config: RankingConfig = RankingConfig()) -> list[list[Candidate]]:
    """Candidates in ranks, most preferred first; every candidate appears once; no empty rank.

    Ranks go by affinity first (0 before 1...), then by latency tier inside each affinity.
    Inside a rank, candidates are ordered by expected latency (unknown ones by ``unknown_as_ms``,
    or last when it is unset), then as given: the router takes the shortest queue in a rank, and
    on equal queues the first listed.
    """
    by_affinity: dict[int, list[Candidate]] = {}
    for candidate in candidates:
        by_affinity.setdefault(candidate.affinity, []).append(candidate)
    ranks: list[list[Candidate]] = []
    for affinity in sorted(by_affinity):
        ranks.extend(_rank_group(by_affinity[affinity], config))
    return ranks


class LatencyAwareRouter(FIFOMixin, LocalityMixin, MultiplexMixin, RequestRouter):
    """Routes to replicas holding the request's model, then to those with the lowest recent latency.

    Requests are fulfilled in FIFO order (matching the model id first), like Serve's default
    router. See the module's documentation for the stats it reads and the ranking.
    """

    ranking: RankingConfig = RankingConfig()

    def initialize_state(self, **kwargs: Any) -> None:
        """Read the knobs from ``request_router_kwargs`` (see :class:`RankingConfig`)."""
        self.ranking = RankingConfig.from_kwargs(kwargs)
        logger.info("LatencyAwareRouter for %s: %s", self._deployment_id, self.ranking)

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        """One routing attempt: the candidates in ranks, best first (see :func:`rank_by_latency`)."""
        model_id = pending_request.metadata.multiplexed_model_id if pending_request is not None else ""
        if model_id:
            candidate_ids = self.apply_multiplex_routing(pending_request=pending_request)
        else:
            candidate_ids = self.apply_locality_routing(pending_request=pending_request)
        replicas = [replica for replica_id in candidate_ids if (replica := self._replicas.get(replica_id))]
        if not replicas:
            return []
        now = self._get_curr_time_s()
        by_id: dict[Hashable, RunningReplica] = {replica.replica_id: replica for replica in replicas}
        candidates = [
            candidate_from_stats(
                replica.replica_id,
                replica.routing_stats,
                now=now,
                capacity=replica.max_ongoing_requests,
                affinity=0 if not model_id or model_id in replica.multiplexed_model_ids else 1,
            )
            for replica in replicas
        ]
        return [[by_id[c.key] for c in rank] for rank in rank_by_latency(candidates, self.ranking)]
