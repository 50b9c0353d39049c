"""``python -m serve_app.local --set DEPLOYMENT.key=VALUE``: one run's deployment options."""

import pytest

from serve_app.local.serve_config import apply_overrides, load_serve_config


def classifier(config: dict) -> dict:
    return next(d for d in config["applications"][0]["deployments"] if d["name"] == "Classifier")


def test_overrides_set_nested_options_as_yaml_values():
    config = apply_overrides(
        load_serve_config(),
        [
            "Classifier.autoscaling_config.min_replicas=2",
            "Classifier.ray_actor_options.num_cpus=0.5",
            "Classifier.user_config.batch_wait_timeout_s=0.01",
            "Classifier.graceful_shutdown_timeout_s=5",  # a key the file lacks
        ],
    )
    deployment = classifier(config)
    assert deployment["autoscaling_config"]["min_replicas"] == 2
    assert (
        deployment["autoscaling_config"]["max_replicas"]
        == classifier(load_serve_config())["autoscaling_config"]["max_replicas"]
    )
    assert deployment["ray_actor_options"] == {"num_cpus": 0.5, "num_gpus": 0}
    assert deployment["user_config"]["batch_wait_timeout_s"] == 0.01
    assert deployment["graceful_shutdown_timeout_s"] == 5


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("Classifier", "DEPLOYMENT.key=VALUE"),
        ("Classifier=2", "DEPLOYMENT.key=VALUE"),
        ("Nope.num_replicas=2", "no deployment 'Nope'; known: Classifier, Ingress, Preprocessor, TaskConsumer"),
        ("Classifier.max_ongoing_requests.x=1", "max_ongoing_requests is not a mapping"),
    ],
)
def test_bad_overrides_name_what_is_wrong(override, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(load_serve_config(), [override])


def test_the_grpc_port_moves_with_the_http_port_and_only_when_the_config_serves_grpc():
    from serve_app.local.serve_config import grpc_target_of

    config = load_serve_config(http_port=18000, grpc_port=19000)
    assert config["http_options"]["port"] == 18000 and config["grpc_options"]["port"] == 19000
    assert grpc_target_of(config) == "127.0.0.1:19000"
    assert grpc_target_of(load_serve_config()) == "127.0.0.1:9000"  # the file's port
    without_grpc = {k: v for k, v in load_serve_config().items() if k != "grpc_options"}
    assert grpc_target_of(without_grpc) is None
    # no servicer functions: Serve starts no gRPC server, so there is no target and no port to move
    assert grpc_target_of({"grpc_options": {"port": 9000, "grpc_servicer_functions": []}}) is None
