"""The observability objects: the PodMonitor, the PrometheusRule and the Grafana dashboard ConfigMap."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from .conftest import CHART_DIR, NAMESPACE, RELEASE, Rendered, objects_of, render_chart

pytestmark = pytest.mark.chart

FULLNAME = RELEASE  # the release name contains the chart name, so fullname is the release name
APPLICATION = "mnist"
SELECTOR_LABELS = {"app.kubernetes.io/name": "mnist-serve", "app.kubernetes.io/instance": RELEASE}
TEMPLATES = {
    "PodMonitor": "mnist-serve/templates/podmonitor.yaml",
    "PrometheusRule": "mnist-serve/templates/prometheusrule.yaml",
    "ConfigMap": "mnist-serve/templates/grafana-dashboard.yaml",
}
SECTIONS = {"PodMonitor": "podMonitor", "PrometheusRule": "prometheusRule", "ConfigMap": "grafanaDashboard"}
API_VERSIONS = {
    "PodMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
    "ConfigMap": "v1",
}

# The project's own metrics (ray.serve.metrics) as Prometheus sees them: Ray's metrics agent
# prefixes every name with `ray_`; a counter's sample ends in `_total` (not doubled when the name
# already ends so); a histogram is read through `_bucket` (and `_sum`, `_count`).
PROJECT_METRICS: dict[str, tuple[str, set[str]]] = {
    "ray_mnist_requests_total": ("counter", {"model", "outcome"}),
    "ray_mnist_request_latency_ms": ("histogram", {"route"}),
    "ray_mnist_model_latency_ms": ("histogram", {"model"}),
    "ray_mnist_batch_size": ("histogram", {"model"}),
    "ray_mnist_predicted_digit_total": ("counter", {"model", "digit"}),
    "ray_mnist_model_loads_total": ("counter", {"model"}),
    "ray_mnist_model_cache_hits_total": ("counter", {"model"}),
    "ray_mnist_model_evictions_total": ("counter", {"model"}),
}
# Tags ray.serve.metrics adds to every metric a replica records, and the PodMonitor's target labels.
SERVE_TAGS = {"deployment", "replica", "application"}
TARGET_LABELS = {"namespace", "pod", "ray_service", "ray_io_node_type", "ray_io_cluster", "node"}
# Grafana variables, replaced by sample values before parsing a dashboard query as PromQL.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$namespace": NAMESPACE, "$ray_service": ".*"}

SELECTOR_RE = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}")
MATCHER_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
SERVE_METRIC_RE = re.compile(r"\bray_serve_[a-z0-9_]+")
GROUPING_RE = re.compile(r"\b(?:by|on)\s*\(([^)]*)\)")


def monitoring(**enabled: Any) -> dict[str, Any]:
    """Values enabling monitoring sections: monitoring(podMonitor=True, prometheusRule={...})."""
    sections = {}
    for name, value in enabled.items():
        sections[name] = {"enabled": True, **value} if isinstance(value, dict) else {"enabled": bool(value)}
    return {"monitoring": sections}


ALL_ON = monitoring(podMonitor=True, prometheusRule=True, grafanaDashboard=True)


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    """The chart with every monitoring object on."""
    return render_chart(ALL_ON)


def the(rendered: Rendered, kind: str) -> dict[str, Any]:
    """The one object of a kind."""
    (obj,) = objects_of(rendered, kind)
    return obj


def dashboard_configmap(rendered: Rendered) -> dict[str, Any]:
    """The ConfigMap holding the dashboard (the chart may render other ConfigMaps)."""
    (configmap,) = rendered[TEMPLATES["ConfigMap"]]
    return configmap


def rules_of(rendered: Rendered) -> list[dict[str, Any]]:
    """Every alerting rule of the PrometheusRule."""
    return [rule for group in the(rendered, "PrometheusRule")["spec"]["groups"] for rule in group["rules"]]


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, rows and the panels inside collapsed rows included."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def load_dashboard() -> dict[str, Any]:
    """The dashboard JSON from the chart's files/."""
    return json.loads((CHART_DIR / "files" / "grafana-dashboard.json").read_text())


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    """The PromQL of every panel target."""
    return [target["expr"] for panel in all_panels(dashboard["panels"]) for target in panel.get("targets", [])]


def selectors(expr: str) -> list[tuple[str, dict[str, tuple[str, str]]]]:
    """(metric, {label: (op, value)}) of every `metric{...}` selector in an expression."""
    return [
        (metric, {label: (op, value) for label, op, value in MATCHER_RE.findall(body)})
        for metric, body in SELECTOR_RE.findall(expr)
    ]


# --- what renders when ------------------------------------------------------------------------


def test_nothing_rendered_by_default() -> None:
    rendered = render_chart()
    assert not objects_of(rendered, "PodMonitor")
    assert not objects_of(rendered, "PrometheusRule")
    assert not set(TEMPLATES.values()) & set(rendered)


@pytest.mark.parametrize("kind", list(TEMPLATES))
def test_each_object_renders_alone_when_enabled(kind: str) -> None:
    rendered = render_chart(monitoring(**{SECTIONS[kind]: True}))
    assert [path for path in TEMPLATES.values() if path in rendered] == [TEMPLATES[kind]]
    (obj,) = rendered[TEMPLATES[kind]]
    assert obj["apiVersion"] == API_VERSIONS[kind]
    assert obj["kind"] == kind
    assert obj["metadata"]["namespace"] == NAMESPACE
    assert obj["metadata"]["name"].startswith(FULLNAME)
    labels = obj["metadata"]["labels"]
    assert labels.items() >= SELECTOR_LABELS.items()
    assert labels["app.kubernetes.io/managed-by"] == "Helm"
    assert labels["helm.sh/chart"].startswith("mnist-serve-")


@pytest.mark.parametrize("kind", list(TEMPLATES))
def test_extra_and_common_labels(kind: str) -> None:
    values = monitoring(**{SECTIONS[kind]: {"labels": {"release": "kube-prometheus-stack", "tier": "1"}}})
    values["commonLabels"] = {"team": "ml"}
    (obj,) = render_chart(values)[TEMPLATES[kind]]
    labels = obj["metadata"]["labels"]
    assert labels.items() >= {"release": "kube-prometheus-stack", "tier": "1", "team": "ml"}.items()
    assert labels.items() >= SELECTOR_LABELS.items()


# --- PodMonitor -------------------------------------------------------------------------------


def test_podmonitor_scrapes_the_metrics_port(rendered: Rendered) -> None:
    spec = the(rendered, "PodMonitor")["spec"]
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = spec["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint.get("path", "/metrics") == "/metrics"
    assert endpoint["interval"] == "15s"


def test_podmonitor_interval_from_values() -> None:
    rendered = render_chart(monitoring(podMonitor={"interval": "30s"}))
    (endpoint,) = the(rendered, "PodMonitor")["spec"]["podMetricsEndpoints"]
    assert endpoint["interval"] == "30s"


def test_podmonitor_relabelings_keep_node_type_pod_and_release(rendered: Rendered) -> None:
    (endpoint,) = the(rendered, "PodMonitor")["spec"]["podMetricsEndpoints"]
    by_target = {relabeling["targetLabel"]: relabeling for relabeling in endpoint["relabelings"]}
    assert by_target["ray_io_node_type"]["sourceLabels"] == ["__meta_kubernetes_pod_label_ray_io_node_type"]
    assert by_target["pod"]["sourceLabels"] == ["__meta_kubernetes_pod_name"]
    assert by_target["ray_io_cluster"]["sourceLabels"] == ["__meta_kubernetes_pod_label_ray_io_cluster"]
    # A static label naming the RayService: what the alerts and the dashboard select a release by.
    assert "sourceLabels" not in by_target["ray_service"]
    assert by_target["ray_service"]["replacement"] == FULLNAME
    for relabeling in endpoint["relabelings"]:
        assert relabeling.get("action", "replace") == "replace"


def label_selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels AND every matchExpression)."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        ok = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels[key] not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]
        if not ok:
            return False
    return True


def kuberay_pod_labels(template_labels: dict[str, str], node_type: str, group: str) -> dict[str, str]:
    """The labels KubeRay (labelPod, ray-operator/controllers/ray/common/pod.go) puts on a Ray pod.

    Its defaults, then the pod template's labels, except that ray.io/node-type, ray.io/group and
    ray.io/cluster cannot be overridden.
    """
    cluster = f"{FULLNAME}-abcde"
    labels = {
        "ray.io/is-ray-node": "yes",
        "ray.io/cluster": cluster,
        "ray.io/node-type": node_type,
        "ray.io/group": group,
        "ray.io/identifier": f"{cluster}-{node_type}",
        "app.kubernetes.io/name": "kuberay",
        "app.kubernetes.io/created-by": "kuberay-operator",
    }
    protected = {"ray.io/node-type", "ray.io/group", "ray.io/cluster"}
    labels.update({key: value for key, value in template_labels.items() if key not in protected})
    return labels


def ray_pod_templates(rendered: Rendered) -> list[tuple[str, str, dict[str, Any]]]:
    """(node type, group name, pod template) of the RayService's head and every worker group."""
    cluster = objects_of(rendered, "RayService")[0]["spec"]["rayClusterConfig"]
    templates = [("head", "headgroup", cluster["headGroupSpec"]["template"])]
    templates += [("worker", group["groupName"], group["template"]) for group in cluster.get("workerGroupSpecs", [])]
    return templates


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"workerGroups": {"cpu": {"enabled": False}}},
        {"podLabels": {"team": "ml"}, "commonLabels": {"cost-center": "42"}},
    ],
    ids=["default", "gpu-only", "extra-labels"],
)
def test_podmonitor_selects_exactly_the_ray_pods(values: dict[str, Any]) -> None:
    rendered = render_chart({**values, **monitoring(podMonitor=True)})
    selector = the(rendered, "PodMonitor")["spec"]["selector"]
    templates = ray_pod_templates(rendered)
    assert [node_type for node_type, _, _ in templates].count("worker") >= 1
    for node_type, group, template in templates:
        pod_labels = kuberay_pod_labels(template["metadata"].get("labels", {}), node_type, group)
        assert label_selector_matches(selector, pod_labels), f"the {group} pods ({pod_labels}) are not scraped"
        # Every Ray container the PodMonitor scrapes declares the port it names.
        ports = [port for container in template["spec"]["containers"] for port in container.get("ports", [])]
        assert {"name": "metrics", "containerPort": 8080} in [
            {"name": port.get("name"), "containerPort": port["containerPort"]} for port in ports
        ], f"no `metrics` port 8080 in the {group} pod template"
        # Not the pods of another release of the chart in the same namespace.
        other = {**pod_labels, "app.kubernetes.io/instance": "other-release"}
        assert not label_selector_matches(selector, other)


def test_podmonitor_skips_the_other_pods_of_the_release() -> None:
    rendered = render_chart({**monitoring(podMonitor=True), "redis": {"enabled": True}})
    selector = the(rendered, "PodMonitor")["spec"]["selector"]
    for obj in objects_of(rendered):
        if obj["kind"] == "Pod":
            labels = obj["metadata"].get("labels", {})
        elif "template" in obj.get("spec", {}) and obj["kind"] != "RayService":
            labels = obj["spec"]["template"]["metadata"].get("labels", {})
        else:
            continue
        assert not label_selector_matches(selector, labels), f"{obj['kind']} {obj['metadata']['name']} is scraped"


# --- PrometheusRule ---------------------------------------------------------------------------


def test_the_serve_application_name_is_the_one_in_the_serve_config() -> None:
    serve_config = yaml.safe_load((CHART_DIR / "files" / "serve-config.yaml").read_text())
    assert [app["name"] for app in serve_config["applications"]] == [APPLICATION]


def test_prometheusrule_alerts(rendered: Rendered) -> None:
    rules = rules_of(rendered)
    assert [rule["alert"] for rule in rules] == [
        "MnistServeHighLatency",
        "MnistServeHighErrorRatio",
        "MnistServeNoHealthyReplicas",
        "MnistServeNoReadyEndpoint",
    ]
    for rule in rules:
        assert rule["for"] == "5m"
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"].strip()
        assert rule["annotations"]["description"].strip()


def test_prometheusrule_thresholds_from_values() -> None:
    values = monitoring(prometheusRule={"latencySlaMs": 400, "errorRatio": 0.05, "for": "10m"})
    rules = {rule["alert"]: rule for rule in rules_of(render_chart(values))}
    assert all(rule["for"] == "10m" for rule in rules.values())
    latency = rules["MnistServeHighLatency"]["expr"]
    assert "histogram_quantile(0.9," in latency
    assert "ray_serve_http_request_latency_ms_bucket" in latency
    assert latency.rstrip().endswith("> 400")
    ratio = rules["MnistServeHighErrorRatio"]["expr"]
    assert ratio.rstrip().endswith("> 0.05")
    assert 'error_code=~"5.."' in ratio
    assert "ray_serve_num_http_requests_total" in ratio
    assert "ray_serve_deployment_replica_healthy" in rules["MnistServeNoHealthyReplicas"]["expr"]


def test_prometheusrule_is_scoped_to_the_release(rendered: Rendered) -> None:
    for rule in rules_of(rendered):
        found = selectors(rule["expr"])
        assert found, rule["alert"]
        for metric, matchers in found:
            assert metric.startswith("ray_serve_"), metric
            assert matchers["namespace"] == ("=", NAMESPACE), (rule["alert"], metric)
            assert matchers["ray_service"] == ("=", FULLNAME), (rule["alert"], metric)
            if metric != "ray_serve_proxy_status":  # the proxies serve every application
                assert matchers["application"] == ("=", APPLICATION), (rule["alert"], metric)
        # Grouping and vector matching keep only labels the series have.
        for grouping in GROUPING_RE.findall(rule["expr"]):
            labels = {label.strip() for label in grouping.split(",")}
            assert labels <= {"namespace", "ray_service", "application", "deployment", "le"}, rule["alert"]


def test_prometheusrule_follows_the_release_name() -> None:
    rendered = render_chart(monitoring(podMonitor=True, prometheusRule=True), name="canary", namespace="staging")
    fullname = objects_of(rendered, "PodMonitor")[0]["metadata"]["name"]
    assert fullname == "canary-mnist-serve"
    (endpoint,) = the(rendered, "PodMonitor")["spec"]["podMetricsEndpoints"]
    assert {"targetLabel": "ray_service", "replacement": fullname}.items() <= next(
        relabeling for relabeling in endpoint["relabelings"] if relabeling["targetLabel"] == "ray_service"
    ).items()
    for rule in rules_of(rendered):
        for _, matchers in selectors(rule["expr"]):
            assert matchers["namespace"] == ("=", "staging")
            assert matchers["ray_service"] == ("=", fullname)


def test_prometheusrule_expressions_parse_as_promql(rendered: Rendered) -> None:
    promql = pytest.importorskip("promql_parser")
    for rule in rules_of(rendered):
        promql.parse(rule["expr"])
    # The parser does reject what Prometheus rejects.
    with pytest.raises(ValueError, match="parenthesis"):
        promql.parse("sum(rate(x[5m])")
    with pytest.raises(ValueError, match="matrix"):
        promql.parse("rate(x)")


# --- Grafana dashboard ------------------------------------------------------------------------


def test_dashboard_configmap(rendered: Rendered) -> None:
    configmap = dashboard_configmap(rendered)
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert "grafana_folder" not in (configmap["metadata"].get("annotations") or {})
    ((key, text),) = configmap["data"].items()
    assert key.endswith(".json")
    assert json.loads(text) == load_dashboard()


def test_dashboard_configmap_labels_and_folder_from_values() -> None:
    # Helm merges maps: a sidecar watching another label is set up by nulling the default one.
    labels = {"grafana_dashboard": None, "dashboards": "ml"}
    configmap = dashboard_configmap(render_chart(monitoring(grafanaDashboard={"labels": labels, "folder": "Serving"})))
    assert configmap["metadata"]["labels"]["dashboards"] == "ml"
    assert "grafana_dashboard" not in configmap["metadata"]["labels"]
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Serving"}


def test_dashboard_structure() -> None:
    dashboard = load_dashboard()
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["uid"]
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["namespace"]["type"] == "query"
    assert variables["namespace"]["datasource"]["uid"] == "${datasource}"
    panels = list(all_panels(dashboard["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids are not unique"
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"] == panel["datasource"], panel["title"]
            assert target["expr"].strip(), panel["title"]
            assert target["refId"], panel["title"]
        if panel["type"] != "row":
            assert panel.get("targets"), panel["title"]
    # Every query is scoped to the namespace variable.
    for expr in dashboard_exprs(dashboard):
        for metric, matchers in selectors(expr):
            assert matchers["namespace"] == ("=", "$namespace"), (metric, expr)
            assert matchers["ray_service"] == ("=~", "$ray_service"), (metric, expr)


def test_dashboard_shows_the_project_metrics() -> None:
    exprs = dashboard_exprs(load_dashboard())
    for name, (kind, tags) in PROJECT_METRICS.items():
        series = f"{name}_bucket" if kind == "histogram" else name
        using = [expr for expr in exprs if re.search(rf"\b{series}\b", expr)]
        assert using, f"no panel shows {series}"
        for expr in using:
            for grouping in GROUPING_RE.findall(expr):
                labels = {label.strip() for label in grouping.split(",")} - {"le"}
                assert labels <= tags | SERVE_TAGS | TARGET_LABELS, (name, expr)


def test_dashboard_shows_what_the_alerts_watch(rendered: Rendered) -> None:
    exprs = "\n".join(dashboard_exprs(load_dashboard()))
    alerted = {metric for rule in rules_of(rendered) for metric in SERVE_METRIC_RE.findall(rule["expr"])}
    assert {"ray_serve_http_request_latency_ms_bucket", "ray_serve_num_http_requests_total"} <= alerted
    for metric in alerted:
        assert re.search(rf"\b{metric}\b", exprs), f"the dashboard does not show {metric}"
    for metric in (
        "ray_serve_replica_processing_queries",
        "ray_serve_deployment_queued_queries",
        "ray_serve_num_http_error_requests_total",
    ):
        assert metric in exprs


def test_dashboard_expressions_parse_as_promql() -> None:
    promql = pytest.importorskip("promql_parser")
    for expr in dashboard_exprs(load_dashboard()):
        for variable, sample in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, sample)
        assert "$" not in expr, expr
        promql.parse(expr)
