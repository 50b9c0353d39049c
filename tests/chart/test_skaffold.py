"""skaffold.yaml: valid for its schema, and the image it builds is the one the RayService runs.

Skaffold rewrites images only in Kubernetes kinds it knows, never inside a RayService, so
skaffold.yaml sets the chart's image values from the build (``setValueTemplates``). These tests
validate the file (and each profile applied to it) against Skaffold's published JSON schema for
``skaffold/v4beta14`` (tests/schemas), then do what Skaffold v2.24 does at deploy time --
expand the templates with the build's ``IMAGE_REPO_/IMAGE_TAG_/IMAGE_DIGEST_<artifact>`` values
(helm/args.go: ``envVarForImage``), pass them as ``--set`` (helm's typed parsing) after the
release's values files -- and render the chart to check the image in every Ray container.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from typing import Any

import jsonschema
import pytest
import yaml

from serve_app.config import REPO_ROOT
from tests.support.kube import head_service_name, nest, parse_image_ref, serve_service_name

from .conftest import merge_values, objects_of, pod_templates, rayservice_of, render_chart

SKAFFOLD = REPO_ROOT / "skaffold.yaml"
SCHEMA = REPO_ROOT / "tests" / "schemas" / "skaffold-v4beta14.json"
PROFILES = ("kind-gpu", "kind-cpu", "cloud-gpu")
LOCAL_ID = "3f" * 32  # the image ID a local build is tagged with (no digest: never pushed)
DIGEST = "sha256:" + "a1" * 32


def skaffold() -> dict[str, Any]:
    return yaml.safe_load(SKAFFOLD.read_text())


@functools.cache
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA.read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    return jsonschema.Draft7Validator(schema)


def schema_problems(config: dict[str, Any]) -> list[str]:
    """Every leaf error (inside anyOf alternatives too), as ``[path]: message``."""

    def leaves(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
        return [leaf for child in error.context for leaf in leaves(child)] if error.context else [error]

    return [
        f"{list(leaf.absolute_path)}: {leaf.message[:300]}"
        for error in validator().iter_errors(config)
        for leaf in leaves(error)
    ]


def versions() -> dict[str, str]:
    lines = (REPO_ROOT / "cluster" / "versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def apply_profile(config: dict[str, Any], name: str) -> dict[str, Any]:
    """The configuration with one profile's JSON patches applied (RFC 6902 add/replace/remove)."""
    result = copy.deepcopy(config)
    (profile,) = [p for p in config["profiles"] if p["name"] == name]
    for patch in profile.get("patches", []):
        *parents, leaf = [part.replace("~1", "/").replace("~0", "~") for part in patch["path"].split("/")[1:]]
        node = result
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(leaf) if isinstance(node, list) else leaf
        if patch["op"] == "add" or (patch["op"] == "replace" and (isinstance(node, list) or leaf in node)):
            node[key] = patch["value"]
        elif patch["op"] == "remove":
            del node[key]
        else:
            raise AssertionError(f"profile {name}: cannot {patch['op']} {patch['path']}")
    result.pop("profiles")
    return result


def test_skaffold_yaml_uses_the_schema_of_the_pinned_skaffold_and_validates():
    config = skaffold()
    assert config["apiVersion"] == "skaffold/v4beta14" and config["kind"] == "Config"
    assert schema_problems(config) == []
    assert versions()["SKAFFOLD_VERSION"] in SKAFFOLD.read_text()


def test_the_schema_check_catches_mistakes():
    config = skaffold()
    config["deploy"]["helm"]["releases"][0]["setValueTemplate"] = {}
    config["build"]["artifacts"][0]["docker"]["buildArg"] = {}
    problems = "\n".join(schema_problems(config))
    assert "'setValueTemplate' was unexpected" in problems, problems
    assert "'buildArg' was unexpected" in problems, problems


@pytest.mark.parametrize("profile", PROFILES)
def test_each_profile_applies_to_a_valid_configuration(profile):
    assert {p["name"] for p in skaffold()["profiles"]} == set(PROFILES)
    assert schema_problems(apply_profile(skaffold(), profile)) == []


def image_env(artifact: str, built: str) -> dict[str, str]:
    """Skaffold's template values for one build (helm/args.go ConstructOverrideArgs + envVarForImage)."""
    ref = parse_image_ref(built)
    suffix = re.sub(r"[./:-]", "_", artifact)  # util.SanitizeHelmTemplateValue
    values = {"IMAGE_REPO": ref.repository, "IMAGE_TAG": ref.tag, "IMAGE_DIGEST": ref.digest,
              "IMAGE_FULLY_QUALIFIED": built}  # fmt: skip
    return {f"{key}_{suffix}": value for key, value in values.items()}


def expand(template: str, env: dict[str, str]) -> str:
    """Go's text/template for ``{{.KEY}}`` only, with missingkey=error (as Skaffold runs it)."""
    assert re.sub(r"\{\{\.\w+\}\}", "", template).count("{{") == 0, (
        f"a template construct this test cannot expand: {template}"
    )
    return re.sub(r"\{\{\.(\w+)\}\}", lambda m: env[m[1]], template).removesuffix("@")


def helm_typed(text: str) -> Any:
    """helm's ``--set`` value parsing (pkg/strvals typedVal)."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text.lower() == "null":
        return None
    if text == "0":
        return 0
    if text and text[0] != "0" and re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    return text


def deployed_values(config: dict[str, Any], built: str) -> dict[str, Any]:
    """The values Skaffold installs charts/mnist-serve with: the release's values files, then its --set."""
    (artifact,) = config["build"]["artifacts"]
    (release,) = [r for r in config["deploy"]["helm"]["releases"] if r.get("chartPath") == "charts/mnist-serve"]
    values: dict[str, Any] = {}
    for path in release.get("valuesFiles", []):
        values = merge_values(values, yaml.safe_load((REPO_ROOT / path).read_text()) or {})
    env = image_env(artifact["image"], built)
    flat = {key: helm_typed(expand(template, env)) for key, template in release["setValueTemplates"].items()}
    return merge_values(values, nest(flat))


def ray_images(rendered: dict[str, Any]) -> list[str]:
    templates = pod_templates(rayservice_of(rendered))
    return [container["image"] for template in templates for container in template["spec"]["containers"]]


@pytest.mark.parametrize(
    ("profile", "built", "runs"),
    [
        # kind: built locally, never pushed: tagged with its image ID, no digest; Skaffold loads it into kind.
        ("kind-gpu", f"mnist-serve:{LOCAL_ID}", f"mnist-serve:{LOCAL_ID}"),
        ("kind-cpu", f"mnist-serve:{LOCAL_ID}", f"mnist-serve:{LOCAL_ID}"),
        ("kind-cpu", "mnist-serve:0123456789", "mnist-serve:0123456789"),
        # cloud: pushed to --default-repo, deployed by digest.
        ("cloud-gpu", f"registry.example.com:5000/team/mnist-serve:{LOCAL_ID}@{DIGEST}",
         f"registry.example.com:5000/team/mnist-serve@{DIGEST}"),
    ],
)  # fmt: skip
def test_the_built_image_lands_in_every_ray_container_and_the_helm_test(profile, built, runs):
    config = apply_profile(skaffold(), profile)
    rendered = render_chart(deployed_values(config, built))
    assert set(ray_images(rendered)) == {runs}
    (test_pod,) = [o for o in objects_of(rendered, "Pod") if o["metadata"]["name"].endswith("-test-predict")]
    assert test_pod["spec"]["containers"][0]["image"] == runs


def test_profiles_build_the_right_variant_for_the_right_scenario():
    dockerfile = (REPO_ROOT / "docker" / "Dockerfile").read_text()
    (cases,) = re.findall(r'case "\$\{VARIANT\}" in(.*?)esac', dockerfile, re.S)
    stages = set(re.findall(r"^\s*(\w+)\)", cases, re.M))
    assert stages == {"cpu", "gpu"}
    expected = {"kind-gpu": ("gpu", [], False), "kind-cpu": ("cpu", ["cpu-only-values.yaml"], False),
                "cloud-gpu": ("gpu", [], True)}  # fmt: skip
    for profile, (variant, values_files, push) in expected.items():
        config = apply_profile(skaffold(), profile)
        (artifact,) = config["build"]["artifacts"]
        assert artifact["docker"]["dockerfile"] == "docker/Dockerfile"
        assert artifact["docker"]["buildArgs"]["VARIANT"] == variant and variant in stages
        release = config["deploy"]["helm"]["releases"][0]
        assert [path.rsplit("/", 1)[-1] for path in release.get("valuesFiles", [])] == values_files
        assert config["build"]["local"]["push"] is push, profile


def test_kind_profiles_activate_on_the_contexts_of_the_kind_clusters():
    for mode in ("gpu", "cpu"):
        name = yaml.safe_load((REPO_ROOT / "cluster" / "kind" / f"{mode}.yaml").read_text())["name"]
        (profile,) = [p for p in skaffold()["profiles"] if p["name"] == f"kind-{mode}"]
        assert profile["activation"] == [{"kubeContext": f"kind-{name}"}]


def test_the_operator_is_installed_first_and_removed_last():
    releases = skaffold()["deploy"]["helm"]["releases"]
    assert [r["name"] for r in releases] == ["mnist-serve", "kuberay-operator"]  # skaffold delete: list order
    assert releases[0]["dependsOn"] == ["kuberay-operator"]  # skaffold deploy: dependencies first
    operator = releases[1]
    pinned = versions()
    assert operator["remoteChart"] == "kuberay-operator"
    assert operator["version"] == pinned["KUBERAY_VERSION"] and operator["repo"] == pinned["KUBERAY_HELM_REPO"]
    assert operator["namespace"] == pinned["KUBERAY_NAMESPACE"] and operator["wait"] is True


def test_port_forwards_name_the_services_kuberay_creates_for_the_release():
    release = skaffold()["deploy"]["helm"]["releases"][0]["name"]
    rayservice = rayservice_of(render_chart(name=release))
    forwards = {f["resourceName"]: f["port"] for f in skaffold()["portForward"]}
    assert forwards == {serve_service_name(rayservice): 8000, head_service_name(rayservice): 8265}
