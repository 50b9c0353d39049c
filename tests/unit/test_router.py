import asyncio
import json
import math
import random

import pytest
from ray.serve._private.common import (
    DeploymentHandleSource,
    DeploymentID,
    ReplicaID,
    RequestMetadata,
    RunningReplicaInfo,
)
from ray.serve.config import RequestRouterConfig
from ray.serve.request_router import (
    FIFOMixin,
    LocalityMixin,
    MultiplexMixin,
    PendingRequest,
    RequestRouter,
    RunningReplica,
)
from ray.serve.schema import ServeDeploySchema

from bench.router import (
    LATENCY_AWARE_ROUTER,
    format_table,
    logical_cpus_needed,
    parse_args,
    router_configs,
    run_app_name,
)
from bench.wrk import WrkResult
from serve_app.config import APP_NAME
from serve_app.latency import LATENCY_KEY, ONGOING_KEY, REPORTED_AT_KEY, RollingLatency
from serve_app.local.serve_config import load_serve_config
from serve_app.router import (
    Candidate,
    LatencyAwareRouter,
    RankingConfig,
    candidate_from_stats,
    expected_latency_ms,
    rank_by_latency,
)

# --- the pure ranking -------------------------------------------------------------------------


def keys(ranks: list[list[Candidate]]) -> list[list[str]]:
    return [[c.key for c in rank] for rank in ranks]


def c(key: str, p90: float | None, **kwargs) -> Candidate:
    return Candidate(key=key, latency_ms_p90=p90, capacity=kwargs.pop("capacity", 32), **kwargs)


def test_no_replicas_no_ranks():
    assert rank_by_latency([]) == []


def test_one_replica_one_rank():
    assert keys(rank_by_latency([c("a", 10.0)])) == [["a"]]
    assert keys(rank_by_latency([c("a", None)])) == [["a"]]


def test_one_far_slower_replica_gets_a_later_tier():
    ranks = rank_by_latency([c("slow", 60.0), c("fast", 10.0), c("fast2", 11.0)])
    assert keys(ranks) == [["fast", "fast2"], ["slow"]]


def test_similar_replicas_share_a_tier_fastest_first():
    # within tier_ratio (1.5x) of the best: one tier, so the base class balances them by queue length
    ranks = rank_by_latency([c("b", 14.0), c("a", 10.0), c("c", 12.0)])
    assert keys(ranks) == [["a", "c", "b"]]


def test_all_slow_but_similar_is_one_tier():
    ranks = rank_by_latency([c("a", 900.0), c("b", 1000.0), c("c", 1100.0)])
    assert keys(ranks) == [["a", "b", "c"]]


def test_ties_keep_the_given_order():
    ranks = rank_by_latency([c("x", 10.0), c("y", 10.0), c("z", 10.0)])
    assert keys(ranks) == [["x", "y", "z"]]
    ranks = rank_by_latency([c("z", 10.0), c("x", 10.0), c("y", 10.0)])
    assert keys(ranks) == [["z", "x", "y"]]


def test_tiers_grow_geometrically_and_are_capped():
    # best 10: tier 0 <= 15, tier 1 <= 22.5, tier 2 (the last of 3) takes the rest
    candidates = [c("a", 10.0), c("b", 15.0), c("c", 20.0), c("d", 30.0), c("e", 1000.0)]
    assert keys(rank_by_latency(candidates)) == [["a", "b"], ["c"], ["d", "e"]]
    assert keys(rank_by_latency(candidates, RankingConfig(num_tiers=2))) == [["a", "b"], ["c", "d", "e"]]
    assert keys(rank_by_latency(candidates, RankingConfig(num_tiers=1))) == [["a", "b", "c", "d", "e"]]
    five = keys(rank_by_latency(candidates, RankingConfig(num_tiers=5)))
    assert five == [["a", "b"], ["c"], ["d"], ["e"]]  # no empty ranks


def test_tiny_latencies_differ_by_less_than_the_slack():
    # 0.5 ms vs 3 ms is 6x, but only 2.5 ms apart: no reason to avoid either
    assert keys(rank_by_latency([c("a", 0.5), c("b", 3.0)])) == [["a", "b"]]
    assert keys(rank_by_latency([c("a", 0.5), c("b", 3.0)], RankingConfig(tier_slack_ms=0))) == [["a"], ["b"]]


def test_missing_stats_are_unknown_and_mixed_into_the_first_tier_last():
    ranks = rank_by_latency([c("new", None), c("slow", 60.0), c("fast", 10.0)])
    assert keys(ranks) == [["fast", "new"], ["slow"]]


def test_all_unknown_is_one_tier_in_the_given_order():
    assert keys(rank_by_latency([c("b", None), c("a", None)])) == [["b", "a"]]


def test_unknown_as_ms_places_unknown_replicas_by_that_latency():
    candidates = [c("new", None), c("slow", 60.0), c("fast", 10.0)]
    assert keys(rank_by_latency(candidates, RankingConfig(unknown_as_ms=0))) == [["new", "fast"], ["slow"]]
    assert keys(rank_by_latency(candidates, RankingConfig(unknown_as_ms=12))) == [["fast", "new"], ["slow"]]
    assert keys(rank_by_latency(candidates, RankingConfig(unknown_as_ms=1e6))) == [["fast"], ["slow", "new"]]


def test_stale_stats_are_unknown():
    config = RankingConfig(stats_max_age_s=30)
    stale_fast = c("stale", 1.0, age_s=31.0)
    fresh = c("fresh", 10.0, age_s=1.0)
    assert expected_latency_ms(stale_fast, config) is None
    assert expected_latency_ms(fresh, config) == 10.0
    assert keys(rank_by_latency([stale_fast, fresh, c("slow", 100.0, age_s=0.0)], config)) == [
        ["fresh", "stale"],
        ["slow"],
    ]
    # no reported_at: the age is unknown, the stats count as fresh
    assert expected_latency_ms(c("ageless", 5.0), config) == 5.0


def test_reported_queue_fill_raises_the_expected_latency():
    busy = c("busy", 10.0, ongoing=32)  # full: 10 * (1 + 32/32)
    idle = c("idle", 12.0, ongoing=0)
    assert expected_latency_ms(busy) == 20.0
    assert keys(rank_by_latency([busy, idle])) == [["idle"], ["busy"]]
    assert keys(rank_by_latency([busy, idle], RankingConfig(queue_weight=0))) == [["busy", "idle"]]


def test_model_affinity_comes_before_latency():
    holder_slow = c("holder-slow", 80.0, affinity=0)
    holder_fast = c("holder-fast", 10.0, affinity=0)
    other_fast = c("other-fast", 1.0, affinity=1)
    other_new = c("other-new", None, affinity=1)
    ranks = rank_by_latency([other_fast, holder_slow, other_new, holder_fast])
    assert keys(ranks) == [["holder-fast"], ["holder-slow"], ["other-fast", "other-new"]]


def test_every_candidate_appears_exactly_once():
    rng = random.Random(7)
    for _ in range(200):
        candidates = [
            c(
                f"r{i}",
                rng.choice([None, rng.uniform(0, 500)]),
                ongoing=rng.randint(0, 40),
                age_s=rng.choice([None, rng.uniform(0, 60)]),
                affinity=rng.randint(0, 2),
            )
            for i in range(rng.randint(0, 12))
        ]
        config = RankingConfig(num_tiers=rng.randint(1, 4), unknown_as_ms=rng.choice([None, 0, 50, 1e9]))
        ranks = rank_by_latency(candidates, config)
        flat = [x.key for rank in ranks for x in rank]
        assert sorted(flat) == sorted(x.key for x in candidates)
        assert all(ranks)
        affinities = [rank[0].affinity for rank in ranks]
        assert affinities == sorted(affinities)


# --- reading routing_stats ----------------------------------------------------------------------


def test_candidate_from_stats_reads_the_documented_keys():
    stats = {LATENCY_KEY: 12.5, ONGOING_KEY: 3, REPORTED_AT_KEY: 990.0, "other": "ignored"}
    assert candidate_from_stats("r", stats, now=1000.0, capacity=32, affinity=1) == Candidate(
        key="r", latency_ms_p90=12.5, ongoing=3, capacity=32, age_s=10.0, affinity=1
    )


def test_the_router_reads_what_a_replica_reports():
    latency = RollingLatency(window_s=10, clock=lambda: 0.0)
    latency.observe(20.0)
    candidate = candidate_from_stats("r", latency.routing_stats(2, 995.0), now=1000.0)
    assert (candidate.latency_ms_p90, candidate.ongoing, candidate.age_s) == (20.0, 2, 5.0)


@pytest.mark.parametrize(
    "stats",
    [
        None,
        {},
        {LATENCY_KEY: None},
        {LATENCY_KEY: "12"},
        {LATENCY_KEY: math.nan},
        {LATENCY_KEY: -1.0},
        {LATENCY_KEY: True},
    ],
)
def test_missing_or_malformed_latency_is_unknown(stats):
    candidate = candidate_from_stats("r", stats, now=0.0)
    assert candidate.latency_ms_p90 is None
    assert expected_latency_ms(candidate) is None


def test_malformed_ongoing_and_reported_at_are_ignored():
    candidate = candidate_from_stats("r", {LATENCY_KEY: 5, ONGOING_KEY: -2, REPORTED_AT_KEY: "x"}, now=0.0)
    assert (candidate.latency_ms_p90, candidate.ongoing, candidate.age_s) == (5.0, 0, None)
    # a clock ahead on the replica: age 0, not negative
    assert candidate_from_stats("r", {REPORTED_AT_KEY: 10.0}, now=5.0).age_s == 0.0
    assert candidate_from_stats("r", {}, now=0.0, capacity=0).capacity == 1


# --- the knobs --------------------------------------------------------------------------------


def test_knobs_come_from_request_router_kwargs():
    config = RankingConfig.from_kwargs({"stats_max_age_s": 5, "unknown_as_ms": 20.0, "num_tiers": 2})
    assert (config.stats_max_age_s, config.unknown_as_ms, config.num_tiers) == (5, 20.0, 2)
    assert RankingConfig.from_kwargs({}) == RankingConfig()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_teirs": 2},
        {"stats_max_age_s": 0},
        {"unknown_as_ms": -1},
        {"num_tiers": 0},
        {"num_tiers": 1.5},
        {"num_tiers": True},
        {"tier_ratio": 0.5},
        {"tier_ratio": 1, "tier_slack_ms": 0},
        {"tier_slack_ms": -1},
        {"queue_weight": -0.1},
        {"stats_max_age_s": "30"},
    ],
)
def test_bad_knobs_are_rejected(kwargs):
    with pytest.raises(ValueError):
        RankingConfig.from_kwargs(kwargs)


# --- the router class, on RunningReplica fakes ---------------------------------------------------

DEPLOYMENT = DeploymentID(name="Classifier", app_name="mnist")


class FakeReplica(RunningReplica):
    """A real RunningReplica (its properties read a real RunningReplicaInfo) without an actor."""

    def __init__(self, name: str, models=(), stats=None, queue_len: int = 0, max_ongoing: int = 32) -> None:
        self._replica_info = RunningReplicaInfo(
            replica_id=ReplicaID(unique_id=name, deployment_id=DEPLOYMENT),
            node_id="node-1",
            node_ip="127.0.0.1",
            availability_zone=None,
            actor_name=f"fake-{name}",
            max_ongoing_requests=max_ongoing,
            multiplexed_model_ids=list(models),
            routing_stats=dict(stats or {}),
        )
        self._multiplexed_model_ids = set(models)
        self.queue_len = queue_len

    async def get_queue_len(self, *, deadline_s: float) -> int:
        return self.queue_len

    def push_proxy_handle(self, handle) -> None:
        pass


def make_router(replicas: list[FakeReplica], now: float = 1000.0, **kwargs) -> LatencyAwareRouter:
    router = LatencyAwareRouter(
        deployment_id=DEPLOYMENT,
        handle_source=DeploymentHandleSource.UNKNOWN,
        self_node_id="node-1",
        use_replica_queue_len_cache=False,
        get_curr_time_s=lambda: now,
    )
    router.initialize_state(**kwargs)
    router.update_replicas(replicas)
    return router


_request_ids = iter(range(1_000_000))


def request(model_id: str = "mnist-cnn") -> PendingRequest:
    request_id = f"req-{next(_request_ids)}"
    return PendingRequest(
        args=[],
        kwargs={},
        metadata=RequestMetadata(request_id=request_id, internal_request_id=request_id, multiplexed_model_id=model_id),
    )


def names(ranks: list[list[RunningReplica]]) -> list[list[str]]:
    return [[r.replica_id.unique_id for r in rank] for rank in ranks]


def stats(p90: float | None, ongoing: int = 0, reported_at: float = 999.0) -> dict:
    return {LATENCY_KEY: p90, ONGOING_KEY: ongoing, REPORTED_AT_KEY: reported_at}


def test_router_class_composes_serves_mixins():
    assert issubclass(LatencyAwareRouter, RequestRouter)
    for mixin in (FIFOMixin, LocalityMixin, MultiplexMixin):
        assert issubclass(LatencyAwareRouter, mixin)


def test_request_router_config_accepts_the_router():
    config = RequestRouterConfig(
        request_router_class="serve_app.router:LatencyAwareRouter",
        request_router_kwargs={"stats_max_age_s": 10, "unknown_as_ms": None, "num_tiers": 2},
        request_routing_stats_period_s=1,
    )
    assert config.get_request_router_class() is LatencyAwareRouter
    assert not config.is_default_request_router()
    RankingConfig.from_kwargs(config.request_router_kwargs)  # the kwargs initialize_state will get


def test_choose_replicas_ranks_holders_by_latency():
    async def run():
        fast = FakeReplica("fast", ["mnist-cnn"], stats(10.0))
        slow = FakeReplica("slow", ["mnist-cnn"], stats(60.0))
        new = FakeReplica("new", ["mnist-cnn"])
        router = make_router([slow, new, fast])
        return await router.choose_replicas(router._replicas_list, request())

    assert names(asyncio.run(run())) == [["fast", "new"], ["slow"]]


def test_choose_replicas_starts_with_the_model_holders_only():
    async def run():
        holder = FakeReplica("holder", ["mnist-cnn"], stats(80.0))
        other = FakeReplica("other", ["mnist-cnn-small"], stats(1.0))
        router = make_router([holder, other])
        pending = request()
        first = await router.choose_replicas(router._replicas_list, pending)
        # the holder was busy: the mixin falls back to the replicas with the fewest models
        second = await router.choose_replicas(router._replicas_list, pending)
        return first, second

    first, second = asyncio.run(run())
    assert names(first) == [["holder"]]
    assert names(second) == [["holder"], ["other"]]  # both hold one model; the holder still first


def test_choose_replicas_without_a_model_ranks_every_replica():
    async def run():
        router = make_router([FakeReplica("a", stats=stats(50.0)), FakeReplica("b", stats=stats(5.0))])
        return await router.choose_replicas(router._replicas_list, request(model_id=""))

    assert names(asyncio.run(run())) == [["b"], ["a"]]


def test_choose_replicas_with_no_replicas():
    async def run():
        router = make_router([])
        return await router.choose_replicas([], request())

    assert asyncio.run(run()) == []


def test_stale_stats_make_a_replica_unknown_in_the_router():
    async def run():
        fast_but_stale = FakeReplica("stale", ["m"], stats(1.0, reported_at=900.0))  # 100 s old
        ok = FakeReplica("ok", ["m"], stats(10.0))
        slow = FakeReplica("slow", ["m"], stats(100.0))
        router = make_router([fast_but_stale, ok, slow], stats_max_age_s=30)
        return await router.choose_replicas(router._replicas_list, request("m"))

    assert names(asyncio.run(run())) == [["ok", "stale"], ["slow"]]


def test_routing_prefers_the_fast_replica_and_overflows_to_the_slow_one():
    """The whole loop of Serve's base class: ranks from choose_replicas, queue lengths probed."""

    async def run():
        fast = FakeReplica("fast", ["m"], stats(10.0), queue_len=3)
        slow = FakeReplica("slow", ["m"], stats(60.0), queue_len=0)
        router = make_router([slow, fast])
        chosen = [(await asyncio.wait_for(router._choose_replica_for_request(request("m")), 5)).replica_id.unique_id]
        fast.queue_len = fast.max_ongoing_requests  # full
        chosen.append(
            (await asyncio.wait_for(router._choose_replica_for_request(request("m")), 5)).replica_id.unique_id
        )
        return chosen

    # a shorter queue on the slow replica does not win it the request; a full fast replica does
    assert asyncio.run(run()) == ["fast", "slow"]


def test_routing_breaks_ties_in_a_tier_by_queue_length():
    async def run():
        a = FakeReplica("a", ["m"], stats(10.0), queue_len=5)
        b = FakeReplica("b", ["m"], stats(12.0), queue_len=1)
        new = FakeReplica("new", ["m"], queue_len=3)
        router = make_router([a, b, new])
        first = (await asyncio.wait_for(router._choose_replica_for_request(request("m")), 5)).replica_id.unique_id
        b.queue_len = 9
        second = (await asyncio.wait_for(router._choose_replica_for_request(request("m")), 5)).replica_id.unique_id
        a.queue_len = new.queue_len
        third = (await asyncio.wait_for(router._choose_replica_for_request(request("m")), 5)).replica_id.unique_id
        return first, second, third

    # Shortest queue in tier 0; the unknown replica is probed when its queue is the shortest. On
    # equal queues Serve's base class samples among the tier's candidates, so either may win.
    first, second, third = asyncio.run(run())
    assert (first, second) == ("b", "new")
    assert third in {"a", "new"}


def test_initialize_state_rejects_unknown_knobs():
    async def run():
        make_router([], tiers=2)

    with pytest.raises(ValueError, match="unknown LatencyAwareRouter settings"):
        asyncio.run(run())


# --- the benchmark's configs --------------------------------------------------------------------


def _app_of(config: dict, name: str) -> dict:
    return next(a for a in config["applications"] if a["name"] == name)


def _classifier_of(config: dict, app_name: str | None = None) -> dict:
    if app_name is None:  # the one application whose name starts with the app's
        app_name = next(a["name"] for a in config["applications"] if a["name"].startswith(APP_NAME))
    return next(d for d in _app_of(config, app_name)["deployments"] if d["name"] == "Classifier")


def test_bench_configs_change_only_the_classifier():
    base = load_serve_config(http_port=18000)
    snapshot = json.dumps(base, sort_keys=True)
    configs = router_configs(base, delay_ms=40, slow_rank=1, replicas=2, stats_period_s=1.0)
    assert json.dumps(base, sort_keys=True) == snapshot  # the base is left as it was
    assert set(configs) == {"default", "latency-aware"}

    for router, config in configs.items():
        # each run has its own application name: a fresh handle, so a fresh router, in every process
        assert run_app_name(router) == f"{APP_NAME}-{router}"
        app = _app_of(config, run_app_name(router))
        base_app = _app_of(base, APP_NAME)
        classifier = _classifier_of(config, run_app_name(router))
        assert classifier["num_replicas"] == 2
        assert classifier["user_config"] == {
            **_classifier_of(base, APP_NAME)["user_config"],
            "debug_delay_ms": 40,
            "debug_slow_rank": 1,
        }
        # everything but the Classifier and the name as in the base
        assert [d for d in app["deployments"] if d["name"] != "Classifier"] == [
            d for d in base_app["deployments"] if d["name"] != "Classifier"
        ]
        assert {k: v for k, v in app.items() if k not in ("name", "deployments")} == {
            k: v for k, v in base_app.items() if k not in ("name", "deployments")
        }
        assert [a for a in config["applications"] if a is not app] == [
            a for a in base["applications"] if a is not base_app
        ]
        assert config["http_options"] == base["http_options"]
        ServeDeploySchema.model_validate(config)  # Serve's own validation of the whole config

    assert _classifier_of(configs["default"])["request_router_config"] == {"request_routing_stats_period_s": 1.0}
    assert _classifier_of(configs["latency-aware"])["request_router_config"] == {
        "request_routing_stats_period_s": 1.0,
        "request_router_class": LATENCY_AWARE_ROUTER,
    }


def test_bench_router_config_builds_the_router_in_serve():
    configs = router_configs(load_serve_config(), delay_ms=40, router_kwargs={"num_tiers": 2})
    router_config = RequestRouterConfig(**_classifier_of(configs["latency-aware"])["request_router_config"])
    assert router_config.get_request_router_class() is LatencyAwareRouter
    assert router_config.request_router_kwargs == {"num_tiers": 2}
    assert RequestRouterConfig(
        **_classifier_of(configs["default"])["request_router_config"]
    ).is_default_request_router()


def test_bench_configs_drop_autoscaling_for_fixed_replicas():
    base = load_serve_config()
    _classifier_of(base, APP_NAME)["autoscaling_config"] = {"min_replicas": 1, "max_replicas": 4}
    for config in router_configs(base, delay_ms=10).values():
        assert "autoscaling_config" not in _classifier_of(config)
        ServeDeploySchema.model_validate(config)


def test_bench_logical_cpus():
    configs = router_configs(load_serve_config(), delay_ms=40, replicas=2)
    classifier_cpus = _classifier_of(configs["default"])["ray_actor_options"]["num_cpus"]
    assert logical_cpus_needed(configs["default"]) >= 2 * classifier_cpus


def test_bench_arguments():
    args = parse_args([])
    assert (args.concurrency, args.delay_ms, args.slow_rank, args.replicas, args.stats_period_s) == (
        16,
        40.0,
        0,
        2,
        1.0,
    )
    assert parse_args(["--router-kwargs", '{"num_tiers": 2}']).router_kwargs == {"num_tiers": 2}
    for bad in (["--slow-rank", "2"], ["--duration", "0"], ["--stats-period-s", "0"], ["--delay-ms", "-1"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_bench_table_has_both_routers():
    result = WrkResult(
        connections=16, requests=1000, seconds=10, p50_ms=5, p90_ms=8, p99_ms=20, max_ms=30, errors=0, non_2xx=1
    )
    table = format_table({"default": result, "latency-aware": result})
    assert "| default | 100 | 5.0 | 8.0 | 20.0 | 30.0 | 1 |" in table
    assert "| latency-aware |" in table
