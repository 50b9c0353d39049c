"""Every value's `# @upgrade` class is what KubeRay 1.7.0 would do with the change.

For each documented value the test renders the chart before and after a change of that value, in
several bases (the defaults, and bases where the value's feature is on), and classifies the
difference with tools.kuberay_model.classify_upgrade, which follows KubeRay's own hash inputs
(GenerateHashWithoutReplicasAndWorkersToDelete). The value's class is the strongest seen in any
base, and must be the one values.yaml states (and the chart README and NOTES repeat).
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

import helm_python as helm
import pytest

from tools.chart_docs import CHART_DIR, UPGRADE_CLASSES, ValueDoc, parse_values
from tools.kuberay_model import UPGRADE_CLASSES as ORDER
from tools.kuberay_model import classify_upgrade

from .conftest import merge_values, objects_of, render_chart, scenario_values

DOCS = parse_values((CHART_DIR / "values.yaml").read_text())
SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text())


KITCHEN_SINK = merge_values(
    scenario_values("ha"),
    {
        "networkPolicy": {"enabled": True},
        "tracing": {"enabled": True, "otlpEndpoint": "http://collector:4318"},
        "monitoring": scenario_values("monitoring")["monitoring"],
        "upgradeStrategy": {
            "type": "NewClusterWithIncrementalUpgrade",
            "clusterUpgradeOptions": {"gatewayClassName": "istio"},
        },
        "serve": {
            "ingress": {"autoscaling": {"enabled": True}, "maxReplicasPerNode": None},
            "preprocessor": {"autoscaling": {"enabled": True}, "maxReplicasPerNode": None},
            "classifier": {"autoscaling": {"enabled": True, "maxReplicas": 3}, "router": {"type": "latencyAware"}},
            "pipelinePolicy": {"enabled": True},
        },
    },
)
#: Bases in which each value is live; a value's class is the strongest over all of them.
BASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "kitchen-sink": KITCHEN_SINK,
    "latency-sla": merge_values(KITCHEN_SINK, {"serve": {"classifier": {"autoscaling": {"policy": "latencySLA"}}}}),
    "schedule": merge_values(KITCHEN_SINK, {"serve": {"classifier": {"autoscaling": {"policy": "schedule"}}}}),
    "external-redis": {
        "ha": {"enabled": True},
        "asyncInference": {"enabled": True},
        "redis": {"external": {"address": "redis.example:6379", "existingSecret": "ext"}},
    },
}

#: Changes for values that a generic rule cannot make.
CHANGES: dict[str, Any] = {
    "nameOverride": "digits",
    "fullnameOverride": "digits",
    "image.repository": "registry.example/mnist-serve",
    "image.tag": "0.1.1",
    "image.digest": "sha256:" + "a" * 64,
    "imagePullSecrets": [{"name": "regcred"}],
    "rayVersion": "2.60.1",
    "commonLabels": {"team": "ml"},
    "podLabels": {"team": "ml"},
    "podAnnotations": {"team": "ml"},
    "auth.existingSecret": "ray-token",
    "upgradeStrategy.clusterUpgradeOptions.gatewayClassName": "envoy",
    "serve.app.modelStore": "s3://bucket/models",
    "serve.app.modelId": "mnist-cnn-small",
    "serve.classifier.autoscaling.schedule.timezone": "Europe/Paris",
    "serve.classifier.autoscaling.schedule.windows": [{"start": "09:00", "end": "17:00", "replicas": 2}],
    "serve.classifier.numGpus": 0.5,
    "head.resources": {"limits": {"memory": "4Gi"}},
    "head.rayStartParams": {"log-color": "true"},
    "head.nodeSelector": {"pool": "system"},
    "head.tolerations": [{"key": "pool", "operator": "Exists", "effect": "NoSchedule"}],
    "head.affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
    "workerGroups.gpu.runtimeClassName": "nvidia",
    "workerGroups.gpu.resources": {"limits": {"memory": "8Gi"}},
    "workerGroups.gpu.rayStartParams": {"log-color": "true"},
    "workerGroups.gpu.nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
    "workerGroups.gpu.tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "workerGroups.gpu.affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
    "workerGroups.cpu.resources": {"limits": {"memory": "4Gi"}},
    "workerGroups.cpu.rayStartParams": {"log-color": "true"},
    "workerGroups.cpu.nodeSelector": {"pool": "cpu"},
    "workerGroups.cpu.tolerations": [{"key": "pool", "operator": "Exists", "effect": "NoSchedule"}],
    "workerGroups.cpu.affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
    "autoscaler.resources": {"limits": {"memory": "1Gi"}},
    "redis.image.repository": "registry.example/redis",
    "redis.image.tag": "7.4.1-alpine",
    "redis.existingSecret": "redis-pass",
    "redis.persistence.size": "2Gi",
    "redis.persistence.storageClass": "fast",
    "redis.resources": {"limits": {"memory": "1Gi"}},
    "redis.external.address": "redis2.example:6379",
    "redis.external.existingSecret": "ext2",
    "redis.external.passwordKey": "password",
    "tracing.otlpEndpoint": "http://other-collector:4318",
    "monitoring.podMonitor.interval": "30s",
    "monitoring.podMonitor.labels": {"release": "prom"},
    "monitoring.prometheusRule.labels": {"release": "prom"},
    "monitoring.prometheusRule.for": "10m",
    "monitoring.grafanaDashboard.labels": {"grafana_dashboard": "2"},
    "monitoring.grafanaDashboard.folder": "ml",
    "networkPolicy.serveFrom": [{"namespaceSelector": {"matchLabels": {"team": "ml"}}}],
    "networkPolicy.operatorFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kuberay"}}}],
    "networkPolicy.metricsFrom": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ],
    "helmTest.image": "python:3.11-slim",
}


#: Values that must change with a value for the chart to accept the change, set on both sides
#: (so the comparison still isolates the value itself).
COMPANIONS: dict[str, dict[str, Any]] = {
    "workerGroups.gpu.enabled": {"serve": {"classifier": {"numGpus": 0}}},
}


def schema_of(key: str) -> dict[str, Any]:
    node = SCHEMA
    for part in key.split("."):
        node = node["properties"][part]
    return node


def current_value(values: dict[str, Any], doc: ValueDoc) -> Any:
    """The value a base gives ``doc.key`` (the chart default where the base says nothing)."""
    node: Any = values
    for part in doc.key.split("."):
        if not isinstance(node, dict) or part not in node:
            return doc.default
        node = node[part]
    return node


def candidate_changes(doc: ValueDoc, current: Any) -> list[Any]:
    """New values to try instead of ``current``, the most natural first."""
    if doc.key in CHANGES:
        return [CHANGES[doc.key]]
    enum = schema_of(doc.key).get("enum")
    if enum:
        return [value for value in enum if value != current]
    if isinstance(current, bool):
        return [not current]
    if isinstance(current, int):
        return [current + 1, current - 1, current * 2]
    if isinstance(current, float):
        return [current * 2 or 0.5, current / 2, current + 0.5]
    if current is None:
        return [1, 2]
    raise AssertionError(f"add a change for {doc.key} to CHANGES")


def with_value(base: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    *parents, leaf = key.split(".")
    changed = copy.deepcopy(base)
    node = changed
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return changed


def comparable(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Rendered objects, with the random content of chart-made Secrets dropped (no lookup offline)."""
    objects = objects_of(render_chart(values))
    for obj in objects:
        if obj["kind"] == "Secret":
            obj.pop("data", None)
    return objects


@functools.cache
def base_objects(base: str) -> list[dict[str, Any]]:
    return comparable(BASES[base])


def observed_class(doc: ValueDoc) -> tuple[str, dict[str, str]]:
    """The strongest class over every base where a change of the value renders, with each base's."""
    per_base = {}
    for base, base_values in BASES.items():
        values = merge_values(base_values, COMPANIONS.get(doc.key, {}))
        for candidate in candidate_changes(doc, current_value(values, doc)):
            try:
                before = base_objects(base) if doc.key not in COMPANIONS else comparable(values)
                after = comparable(with_value(values, doc.key, candidate))
            except (helm.HelmValuesError, helm.HelmRenderError):
                continue
            per_base[base] = classify_upgrade(before, after)
            break
    assert per_base, f"no change of {doc.key} renders in any base"
    return min(per_base.values(), key=ORDER.index), per_base


@pytest.mark.parametrize("base", BASES)
def test_every_base_renders(base):
    assert base_objects(base)


def test_every_class_in_values_is_one_kuberay_distinguishes():
    assert set(UPGRADE_CLASSES) <= set(ORDER)
    assert {doc.upgrade for doc in DOCS} <= set(UPGRADE_CLASSES)


@pytest.mark.parametrize("doc", DOCS, ids=[doc.key for doc in DOCS])
def test_the_stated_upgrade_class_is_what_kuberay_would_do(doc):
    strongest, per_base = observed_class(doc)
    assert strongest == doc.upgrade, f"{doc.key}: values.yaml says {doc.upgrade}, rendering shows {per_base}"


def test_the_classifier_tells_the_classes_apart():
    base = comparable({})
    assert classify_upgrade(base, comparable({"serve": {"classifier": {"numReplicas": 3}}})) == "in-place"
    assert classify_upgrade(base, comparable({"image": {"tag": "x"}})) == "new-cluster"
    assert classify_upgrade(base, comparable({"workerGroups": {"gpu": {"maxReplicas": 3}}})) == "not-propagated"
    assert classify_upgrade(base, comparable({"serve": {"serviceType": "NodePort"}})) == "rayservice"
    assert classify_upgrade(base, comparable({"helmTest": {"image": "x"}})) == "chart-objects"
    assert classify_upgrade(base, comparable({"fullnameOverride": "other"})) == "rename"
    assert classify_upgrade(base, comparable({})) == "none"
