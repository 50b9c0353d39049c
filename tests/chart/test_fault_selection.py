"""The Kubernetes fault injector picks its victims by labels: checked on pods made from the rendered chart.

KubeRay creates the Ray pods from the RayService's pod templates and adds ``ray.io/node-type``,
``ray.io/group`` and ``ray.io/cluster``; the chart's other pods (Redis in the ha scenario, the
``helm test`` pod) carry the release's labels too and must never be chosen.
"""

from typing import Any

from _faults import eligible_pods, pod_selector, selector_string

from tests.chart.conftest import RELEASE, objects_of, rayservice_of, render_chart, scenario_values


def running_pod(name: str, template: dict[str, Any], extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
    labels = {**(template.get("metadata") or {}).get("labels", {}), **(extra_labels or {})}
    return {
        "metadata": {"name": name, "uid": f"uid-{name}", "labels": labels},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }


def pods_of(rendered) -> list[dict[str, Any]]:
    """Pods as KubeRay (Ray pods) and the Deployments (everything else) would create them."""
    cluster = rayservice_of(rendered)["spec"]["rayClusterConfig"]
    kuberay = {"ray.io/cluster": f"{RELEASE}-raycluster-abcde"}
    pods = [running_pod("head-0", cluster["headGroupSpec"]["template"], {**kuberay, "ray.io/node-type": "head"})]
    for group in cluster["workerGroupSpecs"]:
        for index in range(2):
            pods.append(
                running_pod(
                    f"{group['groupName']}-worker-{index}",
                    group["template"],
                    {**kuberay, "ray.io/node-type": "worker", "ray.io/group": group["groupName"]},
                )
            )
    for workload in objects_of(rendered, "Deployment") + objects_of(rendered, "StatefulSet"):
        pods.append(running_pod(f"{workload['metadata']['name']}-0", workload["spec"]["template"]))
    for pod in objects_of(rendered, "Pod"):  # the helm test pod
        pods.append(running_pod(pod["metadata"]["name"], {"metadata": pod["metadata"]}))
    return pods


def names(pods) -> list[str]:
    return [pod["metadata"]["name"] for pod in pods]


def test_selectors_pick_the_head_or_the_workers_of_the_release_only():
    rendered = render_chart(scenario_values("ha"))  # with the chart's own Redis
    pods = pods_of(rendered)
    assert any(name.startswith(f"{RELEASE}-redis") for name in names(pods)), names(pods)
    groups = [group["groupName"] for group in rayservice_of(rendered)["spec"]["rayClusterConfig"]["workerGroupSpecs"]]
    assert len(groups) >= 2, groups  # the GPU and the CPU worker groups

    assert names(eligible_pods(pods, pod_selector(RELEASE, "head"))) == ["head-0"]
    workers = names(eligible_pods(pods, pod_selector(RELEASE, "worker")))
    assert workers == sorted(f"{group}-worker-{i}" for group in groups for i in range(2))
    for group in groups:
        chosen = names(eligible_pods(pods, pod_selector(RELEASE, "worker", group)))
        assert chosen == [f"{group}-worker-0", f"{group}-worker-1"]
    assert eligible_pods(pods, pod_selector("another-release", "worker")) == []


def test_the_selector_string_is_what_kubectl_would_take():
    expected = f"app.kubernetes.io/instance={RELEASE},ray.io/node-type=head"
    assert selector_string(pod_selector(RELEASE, "head")) == expected
