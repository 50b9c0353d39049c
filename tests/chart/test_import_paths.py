"""Every import path the rendered chart hands to Ray imports and names what Serve expects there.

Serve resolves the import strings of serveConfigV2 only when it deploys them, on the cluster: a
renamed module or class otherwise shows up as a RayService that never becomes ready. Here the
chart is rendered with its defaults, every ci/ scenario and values that switch on each extension
point (the request router, each autoscaling policy, the application-level policy, tracing), and
every import string in the config, and in the Ray containers' ``*_IMPORT_PATH`` variables, is
resolved as Serve resolves it (``module:attr`` or ``module.attr``).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from ray._common.utils import import_attr
from ray.serve import Application
from ray.serve.request_router import RequestRouter

from serve_app.config import SERVE_CONFIG_PATH

from .conftest import (
    CHART_DIR,
    SCENARIOS,
    pod_templates,
    ray_container_env,
    rayservice_of,
    render_chart,
    scenario_values,
    serve_config_of,
)

#: A key whose string value (or list of strings) Serve imports.
IMPORT_KEY = re.compile(r"import_path|_class$|^policy_function$|_functions?$")
#: What such a string looks like: dotted module path, then ``:attr`` or ``.attr``.
IMPORT_STRING = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*[.:][A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")

#: Values that switch on each extension point the defaults and scenarios leave off.
AUTOSCALED = {"enabled": True, "minReplicas": 1, "maxReplicas": 2}
EXTENSION_VALUES: dict[str, dict[str, Any]] = {
    "latency-aware-router": {"serve": {"classifier": {"router": {"type": "latencyAware"}}}},
    "latency-sla-policy": {"serve": {"classifier": {"autoscaling": {**AUTOSCALED, "policy": "latencySLA"}}}},
    "schedule-policy": {"serve": {"classifier": {"autoscaling": {**AUTOSCALED, "policy": "schedule"}}}},
    "pipeline-policy": {
        "serve": {
            "pipelinePolicy": {"enabled": True},
            "preprocessor": {"autoscaling": AUTOSCALED},
            "classifier": {"autoscaling": AUTOSCALED},
        }
    },
    "tracing-export": {"tracing": {"enabled": True, "otlpEndpoint": "http://collector:4318"}},
}
VALUES: dict[str, dict[str, Any]] = {
    "defaults": {},
    **{f"ci/{name}": scenario_values(name) for name in SCENARIOS},
    **EXTENSION_VALUES,
}


def strings(node: Any, key: str = "", path: str = "") -> Iterator[tuple[str, str, str]]:
    """(path, key, value) of every string in a parsed config; a list's items carry the list's key."""
    if isinstance(node, dict):
        for child_key, child in node.items():
            yield from strings(child, str(child_key), f"{path}/{child_key}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from strings(child, key, f"{path}/{index}")
    elif isinstance(node, str):
        yield path, key, node


def import_strings(config: Any) -> list[tuple[str, str, str]]:
    """(path, key, value) of every string under an import key."""
    return [(path, key, value) for path, key, value in strings(config) if IMPORT_KEY.search(key)]


@pytest.fixture(scope="module", params=sorted(VALUES))
def rendered_case(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any], dict[str, str]]:
    """(case, serveConfigV2, the Ray containers' ``*_IMPORT_PATH`` variables) of one rendering."""
    rendered = render_chart(VALUES[request.param])
    env = {
        name: value
        for template in pod_templates(rayservice_of(rendered))
        for name, value in ray_container_env(template).items()
        if name.endswith("_IMPORT_PATH")
    }
    return request.param, serve_config_of(rendered), env


def check_resolves(where: str, key: str, value: str) -> None:
    assert IMPORT_STRING.match(value), f"{where}: {value!r} is not an import path"
    try:
        target = import_attr(value)
    except (ImportError, AttributeError) as error:
        pytest.fail(f"{where}: {value!r} does not import: {error!r}")
    assert callable(target), f"{where}: {value!r} is {target!r}, not callable"
    if key == "import_path":  # an application builder, or a bound application
        assert isinstance(target, Application) or inspect.isfunction(target), f"{where}: {target!r}"
    if key == "request_router_class":
        assert inspect.isclass(target) and issubclass(target, RequestRouter), f"{where}: {target!r}"
    if key.endswith("_class"):
        assert inspect.isclass(target), f"{where}: {value!r} is not a class"


def test_every_import_path_of_the_rendered_config_resolves(rendered_case):
    case, config, env = rendered_case
    found = list(import_strings(config))
    assert any(key == "import_path" for _, key, _ in found), f"{case}: no application import_path found"
    for path, key, value in found:
        check_resolves(f"{case}: serveConfigV2{path}", key, value)
    for name, value in env.items():
        check_resolves(f"{case}: env {name}", name.lower(), value)
    # A module path of this project under any other key would escape the check above.
    walked = {path for path, _, _ in found}
    stray = [
        (path, value) for path, _, value in strings(config) if value.startswith("serve_app.") and path not in walked
    ]
    assert not stray, f"{case}: import strings under keys this test does not know: {stray}"


def test_the_cases_reach_every_import_path_the_chart_can_write():
    """Each import string the templates and the Serve config file can emit is rendered by some case."""
    written = set(
        re.findall(r'"(serve_app(?:\.\w+)+:\w+)"', (CHART_DIR / "templates" / "_serveconfig.tpl").read_text())
    )
    written |= {value for _, _, value in import_strings(yaml.safe_load(SERVE_CONFIG_PATH.read_text()))}
    assert len(written) >= 9, written  # the builder, 2 servicers, the router, 4 policies, the exporter
    rendered: set[str] = set()
    for values in VALUES.values():
        config = serve_config_of(render_chart(values))
        rendered |= {value for _, _, value in import_strings(config)}
    assert written <= rendered, f"no case renders {sorted(written - rendered)}: add values to EXTENSION_VALUES"
