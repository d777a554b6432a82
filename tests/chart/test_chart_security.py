"""OpenShift restricted-v2 (and Pod Security "restricted") over every pod spec of every case."""

from __future__ import annotations

from typing import Any

from chartlib import Rendered, containers, migration_job, pod_specs

# restricted-v2 admits only these volume types.
ALLOWED_VOLUME_TYPES = {
    "configMap", "downwardAPI", "emptyDir", "persistentVolumeClaim", "projected", "secret",
    "ephemeral", "csi",
}  # fmt: skip
IDENTITY_FIELDS = ("runAsUser", "runAsGroup", "fsGroup")


def restricted_v2_violations(spec: dict[str, Any], openshift: bool) -> list[str]:
    """What in a pod spec OpenShift's restricted-v2 SCC (or PSS restricted) would refuse."""
    problems = []
    pod_sc = spec.get("securityContext") or {}
    for host_field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(host_field):
            problems.append(f"pod sets {host_field}")
    if spec.get("automountServiceAccountToken") is not False:
        problems.append("pod does not turn off service account token automount")
    if (pod_sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problems.append("pod seccompProfile is not RuntimeDefault")
    if pod_sc.get("runAsNonRoot") is not True:
        problems.append("pod runAsNonRoot is not true")
    if openshift:
        problems += [f"pod sets {f} in OpenShift mode" for f in IDENTITY_FIELDS if f in pod_sc]
    elif pod_sc.get("runAsUser", 0) == 0:
        problems.append("pod runs as UID 0 or unset on plain Kubernetes")
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUME_TYPES:
            problems.append(f"volume {volume['name']} has type {kinds}")
    for container in containers(spec):
        name = container["name"]
        sc = container.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if (sc.get("capabilities") or {}).get("drop") != ["ALL"]:
            problems.append(f"{name}: capabilities.drop is not [ALL]")
        if (sc.get("capabilities") or {}).get("add"):
            problems.append(f"{name}: adds capabilities")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: root filesystem is writable")
        if sc.get("runAsNonRoot") is False:
            problems.append(f"{name}: runAsNonRoot false")
        seccomp = (sc.get("seccompProfile") or {}).get("type", "RuntimeDefault")
        if seccomp != "RuntimeDefault":
            problems.append(f"{name}: seccompProfile {seccomp}")
        if openshift:
            problems += [f"{name}: sets {f} in OpenShift mode" for f in IDENTITY_FIELDS if f in sc]
        for port in container.get("ports") or []:
            if "hostPort" in port:
                problems.append(f"{name}: hostPort")
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts") or []}
        if "/tmp" not in mounts:
            problems.append(f"{name}: no writable /tmp mount (the images need one)")
    return problems


def test_every_pod_passes_restricted_v2(case: Rendered) -> None:
    openshift = case.extra["case"] == "openshift"
    specs = list(pod_specs(case))
    assert len(specs) >= 2
    problems = [
        f"{where}: {p}" for where, spec in specs for p in restricted_v2_violations(spec, openshift)
    ]
    assert not problems, "\n".join(problems)


def test_the_check_catches_what_restricted_v2_refuses() -> None:
    """The checker itself must fail on the classic mistakes of peer charts."""
    bad = {
        "securityContext": {"runAsUser": 1001, "fsGroup": 1001, "runAsNonRoot": True,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "automountServiceAccountToken": False,
        "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
        "containers": [{"name": "c", "securityContext": {"capabilities": {"drop": ["NET_RAW"]}}}],
    }  # fmt: skip
    problems = restricted_v2_violations(bad, openshift=True)
    assert "pod sets runAsUser in OpenShift mode" in problems
    assert "pod sets fsGroup in OpenShift mode" in problems
    assert any("hostPath" in p for p in problems)
    assert "c: capabilities.drop is not [ALL]" in problems
    assert "c: allowPrivilegeEscalation is not false" in problems
    assert "c: root filesystem is writable" in problems


def test_service_account_token_automount_is_off(case: Rendered) -> None:
    (account,) = case.of_kind("ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    for where, spec in pod_specs(case):
        assert spec["serviceAccountName"] == account["metadata"]["name"], where


def test_network_policies_admit_only_mlflow_to_postgresql(
    matrix_renders: dict[str, Rendered],
) -> None:
    rendered = matrix_renders["defaults"]
    policy = rendered.get("NetworkPolicy", "-postgresql")
    assert (
        policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "postgresql"
    )
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    sources = [peer["podSelector"]["matchLabels"] for peer in rule["from"]]
    assert sources == [
        {"app.kubernetes.io/name": "mlops-kit", "app.kubernetes.io/instance": "smoke",
         "app.kubernetes.io/component": component}
        for component in ("mlflow", "migrate")
    ]  # fmt: skip
    # Those are the server's pods and the migration Job's, and nothing else of the chart.
    mlflow = rendered.get("Deployment", "-mlflow")["spec"]["template"]["metadata"]["labels"]
    job = migration_job(rendered)["spec"]["template"]["metadata"]["labels"]
    assert set(sources[0].items()) <= set(mlflow.items())
    assert set(sources[1].items()) <= set(job.items())
    assert not set(sources[1].items()) <= set(mlflow.items())


def test_network_policy_admits_client_cidrs_to_sftp(matrix_renders: dict[str, Rendered]) -> None:
    policy = matrix_renders["direct-artifacts"].get("NetworkPolicy", "-sftp")
    (rule,) = policy["spec"]["ingress"]
    components = [
        p["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for p in rule["from"]
        if "podSelector" in p
    ]
    assert components == ["mlflow", "smoke-test"]
    assert [p["ipBlock"]["cidr"] for p in rule["from"] if "ipBlock" in p] == ["10.20.0.0/16"]
    assert rule["ports"] == [{"port": "sftp", "protocol": "TCP"}]
    default_rule = matrix_renders["defaults"].get("NetworkPolicy", "-sftp")["spec"]["ingress"][0]
    assert not [p for p in default_rule["from"] if "ipBlock" in p], "no CIDR is open by default"
