"""Bad values fail at render time with a message that names the value to set: one test per rule."""

from __future__ import annotations

import helm_python as helm
import pytest

from .conftest import render_chart

SCHEMA_CASES = [
    ({"bogus": 1}, "additional properties 'bogus' not allowed"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"image": {"digest": "latest"}}, "/image/digest"),
    ({"upgradeStrategy": {"type": "Rolling"}}, "/upgradeStrategy/type"),
    ({"serve": {"classifier": {"numGpus": -0.5}}}, "/serve/classifier/numGpus"),
    ({"serve": {"classifier": {"batching": {"maxBatchSize": 0}}}}, "/serve/classifier/batching/maxBatchSize"),
    (
        {"serve": {"classifier": {"batching": {"maxImagesPerModelCall": 0}}}},
        "/serve/classifier/batching/maxImagesPerModelCall",
    ),
    (
        {"serve": {"classifier": {"autoscaling": {"lookBackPeriodS": 5}}}},
        "/serve/classifier/autoscaling/lookBackPeriodS",
    ),
    ({"serve": {"ingress": {"numReplicas": 0}}}, "/serve/ingress/numReplicas"),
    ({"serve": {"app": {"maxBatchImages": 100000}}}, "/serve/app/maxBatchImages"),
    ({"serve": {"app": {"modelStore": "/not/a/uri"}}}, "/serve/app/modelStore"),
    ({"serve": {"app": {"maxModelsPerReplica": 0}}}, "/serve/app/maxModelsPerReplica"),
    ({"serve": {"classifier": {"extra": True}}}, "additional properties 'extra' not allowed"),
    ({"workerGroups": {"gpu": {"maxReplicas": 0}}}, "/workerGroups/gpu/maxReplicas"),
    ({"workerGroups": {"gpu": {"gpusPerPod": 0}}}, "/workerGroups/gpu/gpusPerPod"),
    ({"autoscaler": {"upscalingMode": "Fast"}}, "/autoscaler/upscalingMode"),
    ({"fullnameOverride": "Bad_Name"}, "/fullnameOverride"),
    ({"redis": {"external": {"address": "no port"}}}, "/redis/external/address"),
    ({"monitoring": {"prometheusRule": {"errorRatio": 2}}}, "/monitoring/prometheusRule/errorRatio"),
    ({"head": {"resources": {"limits": {"cpu": "two"}}}}, "/head/resources/limits/cpu"),
    ({"rayVersion": "latest"}, "/rayVersion"),
    ({"serve": {"classifier": {"autoscaling": {"policy": "magic"}}}}, "/serve/classifier/autoscaling/policy"),
    ({"serve": {"classifier": {"router": {"type": "random"}}}}, "/serve/classifier/router/type"),
    ({"serve": {"httpEntry": "nginx"}}, "/serve/httpEntry"),
    ({"serve": {"grpc": {"enabled": "yes"}}}, "/serve/grpc/enabled"),
    ({"serve": {"serviceType": "Ingress"}}, "/serve/serviceType"),
    ({"serve": {"grpc": {"serviceType": "ClusterIP"}}}, "additional properties 'serviceType' not allowed"),
    ({"serve": {"ingress": {"maxReplicasPerNode": 0}}}, "/serve/ingress/maxReplicasPerNode"),
    ({"workerGroups": {"gpu": {"runtimeClassName": "NVIDIA!"}}}, "/workerGroups/gpu/runtimeClassName"),
    (
        {"upgradeStrategy": {"clusterUpgradeOptions": {"maxSurgePercent": 150}}},
        "/upgradeStrategy/clusterUpgradeOptions",
    ),
    ({"upgradeStrategy": {"clusterUpgradeOptions": {"intervalSeconds": 0}}}, "/upgradeStrategy/clusterUpgradeOptions"),
    ({"networkPolicy": {"serveFrom": [{}]}}, "/networkPolicy/serveFrom/0"),
    ({"networkPolicy": {"operatorFrom": []}}, "/networkPolicy/operatorFrom"),
    ({"serve": {"grpc": {"maxMessageBytes": 0}}}, "/serve/grpc/maxMessageBytes"),
    ({"serve": {"grpc": {"maxMessageBytes": 2**31}}}, "/serve/grpc/maxMessageBytes"),
    (
        {
            "serve": {
                "classifier": {
                    "autoscaling": {"schedule": {"windows": [{"start": "9am", "end": "17:00", "replicas": 1}]}}
                }
            }
        },
        "/serve/classifier/autoscaling/schedule/windows/0/start",
    ),
]


@pytest.mark.parametrize(("values", "message"), SCHEMA_CASES)
def test_schema_rejects(values, message):
    with pytest.raises(helm.HelmValuesError, match=message) as caught:
        render_chart(values)
    assert "schema" in str(caught.value)


VALIDATE_CASES = [
    ({"nameOverride": "a" * 40}, "is 52 characters; KubeRay allows at most 47: set fullnameOverride"),
    ({"serve": {"classifier": {"numGpus": 2}}}, "more than one GPU pod has \\(workerGroups.gpu.gpusPerPod=1\\)"),
    (
        {"serve": {"classifier": {"numReplicas": 12}}},
        "raise workerGroups.gpu.maxReplicas or lower serve.classifier.numGpus",
    ),
    (
        {"serve": {"classifier": {"autoscaling": {"enabled": True, "maxReplicas": 20}}}},
        "20 Classifier replicas x serve.classifier.numGpus 0.25 = 5 GPUs",
    ),
    ({"workerGroups": {"gpu": {"enabled": False}}}, "set serve.classifier.numGpus to 0"),
    ({"serve": {"classifier": {"maxOngoingRequests": 4}}}, "below serve.classifier.batching.maxBatchSize"),
    ({"serve": {"ingress": {"maxOngoingRequests": 8}}}, "below serve.ingress.batching.maxBatchSize"),
    (
        {"serve": {"ingress": {"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 2}}}},
        "serve.ingress.autoscaling.minReplicas \\(3\\) is above maxReplicas \\(2\\)",
    ),
    (
        {"serve": {"classifier": {"autoscaling": {"enabled": True, "initialReplicas": 9}}}},
        "serve.classifier.autoscaling.initialReplicas \\(9\\) must lie between",
    ),
    ({"workerGroups": {"cpu": {"replicas": 5}}}, "workerGroups.cpu: need minReplicas"),
    (
        {
            "workerGroups": {"cpu": {"enabled": False}, "gpu": {"enabled": False}},
            "serve": {"classifier": {"numGpus": 0}},
        },
        "both worker groups are disabled",
    ),
    (
        {"workerGroups": {"cpu": {"enabled": False}}, "serve": {"classifier": {"numGpus": 0}}},
        "the CPU-only deployments need workerGroups.cpu",
    ),
    ({"ha": {"enabled": True}}, "ha.enabled needs a Redis: set redis.enabled=true"),
    ({"asyncInference": {"enabled": True}}, "asyncInference.enabled needs a Redis"),
    ({"serve": {"pipelinePolicy": {"enabled": True}}}, "serve.pipelinePolicy.enabled needs serve.preprocessor"),
    ({"serve": {"classifier": {"autoscaling": {"policy": "latencySLA"}}}}, "enable autoscaling"),
    ({"redis": {"external": {"address": "r:6379"}}}, "without redis.external.existingSecret"),
    (
        {"upgradeStrategy": {"type": "NewClusterWithIncrementalUpgrade"}, "autoscaler": {"enabled": False}},
        "NewClusterWithIncrementalUpgrade needs autoscaler.enabled=true",
    ),
    (
        {"upgradeStrategy": {"type": "NewClusterWithIncrementalUpgrade"}},
        "needs upgradeStrategy.clusterUpgradeOptions.gatewayClassName",
    ),
    (
        {
            "upgradeStrategy": {
                "type": "NewClusterWithIncrementalUpgrade",
                "clusterUpgradeOptions": {"gatewayClassName": "istio", "maxSurgePercent": 20, "stepSizePercent": 50},
            }
        },
        "stepSizePercent \\(50\\) must not exceed maxSurgePercent \\(20\\)",
    ),
    (
        {"serve": {"ingress": {"numReplicas": 4, "maxReplicasPerNode": 1}}},
        "serve.ingress: 4 replicas at most 1 per node need more than workerGroups.cpu.maxReplicas \\(3\\) pods",
    ),
    (
        {
            "serve": {"classifier": {"maxReplicasPerNode": 1}},
            "workerGroups": {"gpu": {"maxReplicas": 1, "minReplicas": 1}},
        },
        "raise workerGroups.gpu.maxReplicas or serve.classifier.maxReplicasPerNode",
    ),
    (
        {"workerGroups": {"cpu": {"replicas": 5}}},
        "KubeRay reads these only when it creates a cluster",
    ),
]


@pytest.mark.parametrize(("values", "message"), VALIDATE_CASES)
def test_validate_values_rejects(values, message):
    with pytest.raises(helm.HelmRenderError, match=message) as caught:
        render_chart(values)
    assert "mnist-serve: invalid values:" in str(caught.value)


def test_all_problems_are_reported_at_once():
    with pytest.raises(helm.HelmRenderError) as caught:
        render_chart({"ha": {"enabled": True}, "serve": {"classifier": {"maxOngoingRequests": 4}}})
    assert str(caught.value).count("\n  - ") == 2


def test_release_name_that_is_too_long_is_explained():
    with pytest.raises(helm.HelmRenderError, match="set fullnameOverride or a shorter release name"):
        render_chart({}, name="an-extremely-long-release-name-for-a-rayservice")
