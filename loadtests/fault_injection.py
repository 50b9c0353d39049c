r"""Fault injection: steady load while processes or pods are killed on a schedule; recovery measured.

Users POST real digits to ``/predict`` back to back, as in the steady scenario. A greenlet
started on ``test_start`` waits ``--fault-start`` seconds, then injects a fault every
``--fault-interval`` seconds (``--fault-count`` in all; 0: as many as fit in the run, none in
its last interval) and logs each with its time. Back ends (``--fault-backend``):

``local`` (default): ``--fault-target`` ``classifier-replica`` (SIGKILL to a RUNNING replica of
``--fault-deployment``), ``proxy`` or ``controller``; needs the machine of the local Ray.

``kubernetes``: ``--fault-target`` ``worker-pod`` (optionally of ``--worker-group``) or
``head-pod`` of the chart's release ``--release`` in ``--namespace``, through the current
kubeconfig context (``--kube-context`` to choose another); ``--grace-period`` as for
``kubectl delete pod`` (-1: the pod's own).

A fault is over when the service is back at full strength: the dashboard answers, every
deployment has its target number of RUNNING replicas, every proxy is HEALTHY, and the victim has
been replaced (the killed replica gone, the killed actor alive with a new pid, as many Ready pods
as before without the deleted one). For each fault the run reports the recovery time and the
failed requests during it and after it (until the next fault).

Verdict: ``--max-fail-ratio`` (0.001), ``--max-recovery-s`` (30, the slowest fault; a fault
never recovered counts as infinite) and ``--min-faults`` (1).

Usage (a local run with two Classifier replicas, killing one every 15 s for 2 minutes)::

    python -m serve_app.local --set Classifier.ray_actor_options.num_cpus=0.5 \\
        --set Classifier.autoscaling_config.min_replicas=2 --set Classifier.autoscaling_config.initial_replicas=2
    locust -f loadtests/fault_injection.py --host http://localhost:8000 --headless -u 8 -r 8 -t 150s \\
        --fault-interval 15 --csv results/faults

On Kubernetes (port-forwards to the Serve and head services first)::

    locust -f loadtests/fault_injection.py --host http://localhost:8000 --headless -u 8 -r 8 -t 180s \\
        --fault-backend kubernetes --fault-target worker-pod --release mnist-serve --namespace default \\
        --dashboard-token "$(kubectl get secret mnist-serve-ray-auth -o jsonpath='{.data.auth_token}' | base64 -d)"
"""

from __future__ import annotations

import logging
import math
import time

import gevent
from _common import DigitsUser, Option, ScenarioRun, Threshold, post_digits
from _faults import KUBERNETES_TARGETS, LOCAL_TARGETS, Fault, FaultInjectionError, KubernetesInjector, LocalInjector
from _serve_status import Snapshot, at_full_strength
from _verdict import Check, fault_windows
from locust import events, task

logger = logging.getLogger("mnist-serve.loadtests")

FAULTS: list[Fault] = []
INJECTION_ERRORS: list[str] = []


def make_injector(run: ScenarioRun) -> LocalInjector | KubernetesInjector:
    """The injector the options ask for."""
    backend, target = run.option("fault-backend"), run.option("fault-target")
    seed = run.option("seed")
    if backend == "local":
        if target not in LOCAL_TARGETS:
            raise FaultInjectionError(f"local fault targets are {', '.join(LOCAL_TARGETS)}, got {target!r}")
        return LocalInjector(run.dashboard, run.option("app-name"), run.option("fault-deployment"), seed=seed)
    if target not in KUBERNETES_TARGETS:
        raise FaultInjectionError(f"kubernetes fault targets are {', '.join(KUBERNETES_TARGETS)}, got {target!r}")
    grace = run.option("grace-period")
    return KubernetesInjector(
        namespace=run.option("namespace"),
        release=run.option("release"),
        group=run.option("worker-group") or None,
        grace_period_s=None if grace < 0 else grace,
        context=run.option("kube-context") or None,
        seed=seed,
    )


def fault_records(run: ScenarioRun) -> list[dict]:
    """Each fault with its victim, recovery time and the failures during and after it."""
    end = time.time()
    windows = fault_windows(
        [(s.at, s.ok) for s in run.samples],
        [fault.at for fault in FAULTS],
        [fault.recovered_at for fault in FAULTS],
        end,
    )
    return [
        {
            "number": fault.number,
            "at": fault.at,
            "elapsed_s": fault.at - run.started_at,
            "target": fault.target,
            "victim": fault.victim,
            "recovery_s": fault.recovery_s,
            "failures_during": window.failures_during,
            "requests_during": window.requests_during,
            "failures_after": window.failures_after,
            "requests_after": window.requests_after,
        }
        for fault, window in zip(FAULTS, windows, strict=True)
    ]


def fault_checks(run: ScenarioRun) -> list[Check]:
    """The slowest recovery (an unrecovered fault is infinite) and the number of faults injected."""
    recoveries = [math.inf if fault.recovery_s is None else fault.recovery_s for fault in FAULTS]
    unrecovered = sum(fault.recovery_s is None for fault in FAULTS)
    return [
        Check(
            "slowest recovery to full strength",
            max(recoveries) if recoveries else None,
            run.option("max-recovery-s"),
            "<=",
            " s",
            note=f"{unrecovered} fault(s) never recovered" if unrecovered else "",
        ),
        Check(
            "faults injected",
            len(FAULTS),
            run.option("min-faults"),
            ">=",
            note="; ".join(INJECTION_ERRORS[:3]),
        ),
    ]


def fault_report(run: ScenarioRun) -> dict:
    """The faults, for the verdict JSON."""
    return {"faults": fault_records(run), "injection_errors": list(INJECTION_ERRORS)}


RUN = ScenarioRun(
    "fault-injection",
    thresholds=[
        Threshold("max-fail-ratio", 0.001, "largest share of failed requests"),
        Threshold("max-recovery-s", 30, "longest time from a fault to full strength, s"),
        Threshold("min-faults", 1, "fewest faults the run must inject"),
    ],
    options=[
        Option("fault-backend", "local", "where faults are injected", choices=("local", "kubernetes")),
        Option("fault-target", "classifier-replica", "what is killed", choices=LOCAL_TARGETS + KUBERNETES_TARGETS),
        Option("fault-deployment", "Classifier", "the deployment whose replica classifier-replica kills"),
        Option("fault-start", 10.0, "seconds of steady load before the first fault", type=float),
        Option("fault-interval", 15.0, "seconds between faults", type=float),
        Option("fault-count", 0, "faults in all; 0: as many as fit in the run", type=int),
        Option("namespace", "default", "Kubernetes namespace of the release"),
        Option("release", "mnist-serve", "Helm release of the chart"),
        Option("worker-group", "", "only pods of this worker group (ray.io/group)"),
        Option("kube-context", "", "kubeconfig context (default: the current one)"),
        Option("grace-period", -1, "seconds of grace for a deleted pod; -1: the pod's own", type=int),
        Option("seed", None, "random seed of the victim choice", type=int),
    ],
    extra_checks=fault_checks,
    extra_report=fault_report,
)


def track_recovery(injector: LocalInjector | KubernetesInjector, snapshot: Snapshot) -> None:
    """Mark the faults that this snapshot shows recovered."""
    for fault in FAULTS:
        if fault.recovered_at is None and snapshot.at > fault.at and at_full_strength(snapshot):
            try:
                if injector.replaced(fault, snapshot):
                    fault.recovered_at = snapshot.at
                    logger.info("fault %d recovered after %.1f s", fault.number, fault.recovery_s)
            except Exception as error:  # noqa: BLE001 - an API hiccup means "not yet", not a crash
                logger.debug("could not check fault %d: %s", fault.number, error)


def inject_on_schedule(environment) -> None:
    """The fault greenlet: inject every --fault-interval seconds after --fault-start."""
    try:
        injector = make_injector(RUN)
    except Exception as error:  # noqa: BLE001 - reported in the verdict, and the run goes on
        INJECTION_ERRORS.append(f"no injector: {error}")
        logger.error("fault injection disabled: %s", error)
        return
    RUN.snapshot_listeners.append(lambda snapshot: track_recovery(injector, snapshot))
    run_time = environment.parsed_options.run_time  # seconds, or None
    count, interval = RUN.option("fault-count"), RUN.option("fault-interval")
    gevent.sleep(RUN.option("fault-start"))
    number = 0
    while count == 0 or number < count:
        elapsed = time.time() - RUN.started_at
        if run_time and elapsed + interval > run_time:
            break  # no fault whose recovery the run could not see
        number += 1
        try:
            fault = injector.inject(RUN.option("fault-target"), number, RUN.snapshot())
        except Exception as error:  # noqa: BLE001 - a failed injection is logged and counted
            INJECTION_ERRORS.append(str(error))
            logger.error("fault %d not injected: %s", number, error)
        else:
            FAULTS.append(fault)
            RUN.mark(f"fault {number}", fault.at)
            logger.info("fault %d at +%.1f s: killed %s", number, fault.at - RUN.started_at, fault.victim)
        gevent.sleep(interval)


@events.test_start.add_listener
def start_faults(environment, **_) -> None:
    """Faults run from their own greenlet, never inside a user's task."""
    FAULTS.clear()
    INJECTION_ERRORS.clear()
    RUN.snapshot_listeners.clear()
    gevent.spawn(inject_on_schedule, environment)


class SteadyUser(DigitsUser):
    """POSTs one real digit to /predict, back to back."""

    @task
    def classify(self) -> None:
        """One request."""
        post_digits(self, RUN)
