"""Two Kubernetes admission/enforcement rules as plain functions, for the chart tests.

* :func:`restricted_violations`: the Pod Security Standards' ``restricted`` profile (Kubernetes
  1.25+, https://kubernetes.io/docs/concepts/security/pod-security-standards/), the checks that
  a namespace labelled ``pod-security.kubernetes.io/enforce: restricted`` applies to every pod.
* :func:`network_policy_allows`: whether NetworkPolicies let a connection in (the Ingress half of
  the NetworkPolicy semantics; ipBlock peers are out of scope).
"""

from __future__ import annotations

from typing import Any

from tools.kind_scheduling import selector_matches

#: Volume types the restricted profile allows.
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
SECCOMP_OK = {"RuntimeDefault", "Localhost"}


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        *(spec.get("initContainers") or []),
        *(spec.get("containers") or []),
        *(spec.get("ephemeralContainers") or []),
    ]


def restricted_violations(spec: dict[str, Any]) -> list[str]:
    """Every way a pod spec breaks the ``restricted`` profile (empty: it is admitted)."""
    problems = []
    pod_context = spec.get("securityContext") or {}
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(host):
            problems.append(f"{host} is true")
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            problems.append(f"volume {volume['name']} is {sorted(kinds)}")
    if (pod_context.get("runAsUser") == 0) or any(
        (c.get("securityContext") or {}).get("runAsUser") == 0 for c in _containers(spec)
    ):
        problems.append("runAsUser 0")
    for container in _containers(spec):
        name = container["name"]
        context = container.get("securityContext") or {}
        if context.get("privileged"):
            problems.append(f"{name}: privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{name}: capabilities do not drop ALL")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities {capabilities['add']}")
        if not context.get("runAsNonRoot", pod_context.get("runAsNonRoot")):
            problems.append(f"{name}: runAsNonRoot is not true (pod or container)")
        seccomp = (context.get("seccompProfile") or pod_context.get("seccompProfile") or {}).get("type")
        if seccomp not in SECCOMP_OK:
            problems.append(f"{name}: seccompProfile is {seccomp!r}, not RuntimeDefault or Localhost")
        if any(port.get("hostPort") for port in container.get("ports") or []):
            problems.append(f"{name}: hostPort")
    return problems


def _peer_matches(peer: dict[str, Any], policy_namespace: str, source: dict[str, Any]) -> bool:
    pod_selector, namespace_selector = peer.get("podSelector"), peer.get("namespaceSelector")
    if pod_selector is None and namespace_selector is None:
        return False  # an ipBlock peer: not modelled
    if namespace_selector is None:
        namespace_ok = source["namespace"] == policy_namespace
    else:
        namespace_ok = selector_matches(source["namespace_labels"], namespace_selector)
    return namespace_ok and (pod_selector is None or selector_matches(source["labels"], pod_selector))


def network_policy_allows(
    policies: list[dict[str, Any]],
    namespace: str,
    target_labels: dict[str, str],
    source: dict[str, Any],
    port: int,
) -> bool:
    """Whether a TCP connection from ``source`` to ``port`` of a pod with ``target_labels`` in
    ``namespace`` is let in. ``source`` has ``namespace``, ``namespace_labels`` and ``labels``.

    A pod no Ingress policy selects accepts everything; a selected pod accepts what some rule of
    some selecting policy allows (peers and ports; a rule without ports allows every port).
    """
    selecting = [
        p
        for p in policies
        if "Ingress" in (p["spec"].get("policyTypes") or ["Ingress"])
        and selector_matches(target_labels, p["spec"].get("podSelector") or {})
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get("ingress") or []:
            peers = rule.get("from")
            peer_ok = not peers or any(_peer_matches(peer, namespace, source) for peer in peers)
            ports = rule.get("ports")
            port_ok = not ports or any(int(p["port"]) == port for p in ports)
            if peer_ok and port_ok:
                return True
    return False
