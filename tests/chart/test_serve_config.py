"""Layer 3, offline: the rendered serveConfigV2 is a valid Serve config, and it is the project's
one Serve config with only per-environment numbers changed (the local run cannot drift)."""

from __future__ import annotations

import copy
import json
import shutil

import yaml
from ray.serve.schema import ServeDeploySchema

from serve_app.config import (
    DEFAULT_MAX_IMAGES_PER_MODEL_CALL,
    SERVE_CONFIG_PATH,
    AppArgs,
    ClassifierUserConfig,
)

from .conftest import CHART_DIR, ray_container_env, rayservice_of, render_chart, scenario_values, serve_config_of

#: The only keys the chart may set per deployment (and tracing_config at the top); everything
#: else comes from the file.
CHART_OWNED_DEPLOYMENT_KEYS = {
    "num_replicas",
    "autoscaling_config",
    "max_ongoing_requests",
    "max_replicas_per_node",
    "user_config",
}
CHART_OWNED_ACTOR_OPTIONS = {"num_cpus", "num_gpus", "resources"}


def strip_chart_owned(config: dict) -> dict:
    """A Serve config without the keys the chart overrides per environment."""
    config = copy.deepcopy(config)
    config.pop("tracing_config", None)
    for app in config["applications"]:
        app.pop("args", None)
        # The TaskConsumer is in the app only with asynchronous inference (asyncInference.enabled).
        app["deployments"] = [d for d in app["deployments"] if d["name"] != "TaskConsumer"]
        for deployment in app["deployments"]:
            for key in CHART_OWNED_DEPLOYMENT_KEYS:
                deployment.pop(key, None)
            options = deployment.get("ray_actor_options", {})
            for key in CHART_OWNED_ACTOR_OPTIONS:
                options.pop(key, None)
    return config


def test_rendered_config_parses_with_rays_own_schema(scenario):
    _, rendered = scenario
    ServeDeploySchema.model_validate(serve_config_of(rendered))


def test_rendered_config_is_plain_json(scenario):
    _, rendered = scenario
    config = serve_config_of(rendered)
    assert json.loads(json.dumps(config)) == config  # the operator sends it as JSON


def test_chart_and_local_run_share_one_serve_config(scenario):
    _, rendered = scenario
    local = yaml.safe_load(SERVE_CONFIG_PATH.read_text())
    assert strip_chart_owned(serve_config_of(rendered)) == strip_chart_owned(local)


def test_a_change_to_the_file_reaches_the_chart(tmp_path):
    # The drift test above is only meaningful if the chart really reads the file.
    copy_dir = tmp_path / "mnist-serve"
    shutil.copytree(CHART_DIR, copy_dir)
    edited = yaml.safe_load(SERVE_CONFIG_PATH.read_text())
    edited["applications"][0]["route_prefix"] = "/mnist"
    edited["logging_config"]["log_level"] = "DEBUG"
    (copy_dir / "files" / "serve-config.yaml").write_text(yaml.safe_dump(edited))
    rendered = serve_config_of(render_chart({}, chart_dir=copy_dir))
    assert rendered["applications"][0]["route_prefix"] == "/mnist"
    assert rendered["logging_config"]["log_level"] == "DEBUG"


def test_app_args_and_user_config_validate_against_the_apps_own_models(scenario):
    _, rendered = scenario
    (app,) = serve_config_of(rendered)["applications"]
    AppArgs.model_validate(app["args"])
    (classifier,) = [d for d in app["deployments"] if d["name"] == "Classifier"]
    ClassifierUserConfig.model_validate(classifier["user_config"])


def test_images_per_model_call_default_is_one_number_in_code_file_and_chart():
    (file_app,) = yaml.safe_load(SERVE_CONFIG_PATH.read_text())["applications"]
    (rendered_app,) = serve_config_of(render_chart({}))["applications"]
    for app in (file_app, rendered_app):
        (classifier,) = [d for d in app["deployments"] if d["name"] == "Classifier"]
        assert classifier["user_config"]["max_images_per_model_call"] == DEFAULT_MAX_IMAGES_PER_MODEL_CALL


def test_values_reach_the_serve_config():
    values = {
        "serve": {
            "app": {"maxBatchImages": 64},
            "classifier": {
                "numGpus": 0.5,
                "numReplicas": 3,
                "batching": {"maxBatchSize": 8, "batchWaitTimeoutS": 0.01, "maxImagesPerModelCall": 64},
                "maxOngoingRequests": 16,
            },
        },
        "workerGroups": {"gpu": {"maxReplicas": 2}},
    }
    (app,) = serve_config_of(render_chart(values))["applications"]
    classifier = next(d for d in app["deployments"] if d["name"] == "Classifier")
    assert app["args"]["max_batch_images"] == 64
    assert classifier["num_replicas"] == 3
    assert classifier["ray_actor_options"]["num_gpus"] == 0.5
    assert classifier["user_config"] == {
        "max_batch_size": 8,
        "batch_wait_timeout_s": 0.01,
        "max_images_per_model_call": 64,
    }
    assert classifier["max_ongoing_requests"] == 16


def test_tracing_is_off_by_default_and_exports_over_otlp_when_asked():
    assert "tracing_config" not in serve_config_of(render_chart({}))
    rendered = render_chart({"tracing": {"enabled": True, "samplingRatio": 0.1, "otlpEndpoint": "http://otel:4318"}})
    assert serve_config_of(rendered)["tracing_config"] == {
        "enabled": True,
        "sampling_ratio": 0.1,
        "exporter_import_path": "serve_app.tracing:otlp_span_processors",
    }
    env = ray_container_env(rayservice_of(rendered)["spec"]["rayClusterConfig"]["headGroupSpec"]["template"])
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel:4318"
    assert env["RAY_SERVE_TRACING_SAMPLING_RATIO"] == "0.1"
    files_only = serve_config_of(render_chart({"tracing": {"enabled": True}}))["tracing_config"]
    assert files_only == {"enabled": True, "sampling_ratio": 0.01}


def test_async_inference_is_off_by_default_and_wired_to_redis_when_on():
    (app,) = serve_config_of(render_chart({}))["applications"]
    assert app["args"]["tasks"]["enabled"] is False
    assert "TaskConsumer" not in [d["name"] for d in app["deployments"]]
    rendered = render_chart(scenario_values("ha"))
    (app,) = serve_config_of(rendered)["applications"]
    assert app["args"]["tasks"]["enabled"] is True
    consumer = next(d for d in app["deployments"] if d["name"] == "TaskConsumer")
    assert consumer["autoscaling_config"]["policy"]["policy_function"] == "serve_app.queue_policy:QueueLengthPolicy"
    assert consumer["ray_actor_options"]["resources"] == {"mnist_cpu_pool": 1}
    worker = rayservice_of(rendered)["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]
    env = {item["name"]: item for item in worker["containers"][0]["env"]}
    assert env["MNIST_SERVE_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "mnist-serve-redis",
        "key": "redis-password",
    }
    assert env["MNIST_SERVE_REDIS_URL"]["value"] == (
        "redis://:$(MNIST_SERVE_REDIS_PASSWORD)@mnist-serve-redis.serving.svc.cluster.local:6379/1"
    )
    assert "password" not in serve_config_of(rendered)["applications"][0]["args"]["tasks"]


def classifier_of(values: dict) -> dict:
    (app,) = serve_config_of(render_chart(values))["applications"]
    return next(d for d in app["deployments"] if d["name"] == "Classifier")


def test_policies_and_router_are_selectable_in_values():
    assert (
        "policy"
        not in classifier_of({"serve": {"classifier": {"autoscaling": {"enabled": True}}}})["autoscaling_config"]
    )
    sla = classifier_of({"serve": {"classifier": {"autoscaling": {"enabled": True, "policy": "latencySLA"}}}})
    assert sla["autoscaling_config"]["policy"] == {
        "policy_function": "serve_app.policies:LatencySLAPolicy",
        "policy_kwargs": {"sla_ms": 50, "downscale_below": 0.5},
    }
    windows = [{"start": "09:00", "end": "17:00", "replicas": 4, "days": ["mon", "fri"]}]
    schedule = classifier_of(
        {
            "serve": {
                "classifier": {"autoscaling": {"enabled": True, "policy": "schedule", "schedule": {"windows": windows}}}
            }
        }
    )["autoscaling_config"]["policy"]
    assert schedule["policy_function"] == "serve_app.policies:SchedulePolicy"
    assert schedule["policy_kwargs"]["schedule"] == windows  # "09:00" stays a string (JSON, not YAML 1.1)
    from serve_app.policies import SchedulePolicy

    SchedulePolicy(**schedule["policy_kwargs"])  # the policy accepts what the chart renders
    router = classifier_of({"serve": {"classifier": {"router": {"type": "latencyAware"}}}})["request_router_config"]
    assert router == {
        "request_router_class": "serve_app.router:LatencyAwareRouter",
        "request_routing_stats_period_s": 2,
    }
    assert "request_router_config" not in classifier_of({})
    pipeline = serve_config_of(
        render_chart(
            {
                "serve": {
                    "pipelinePolicy": {"enabled": True},
                    "preprocessor": {"autoscaling": {"enabled": True}},
                    "classifier": {"autoscaling": {"enabled": True}},
                }
            }
        )
    )
    assert pipeline["applications"][0]["autoscaling_policy"]["policy_function"] == (
        "serve_app.policies:ProportionalPipelinePolicy"
    )
    ServeDeploySchema.model_validate(pipeline)


def test_autoscaling_replaces_num_replicas():
    (app,) = serve_config_of(render_chart(scenario_values("autoscaling")))["applications"]
    classifier = next(d for d in app["deployments"] if d["name"] == "Classifier")
    assert "num_replicas" not in classifier
    assert classifier["autoscaling_config"] == {
        "min_replicas": 1,
        "max_replicas": 8,
        "target_ongoing_requests": 16,
        "upscale_delay_s": 5,
        "downscale_delay_s": 60,
        "look_back_period_s": 30,
    }
