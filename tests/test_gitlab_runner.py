"""GitLab Runner on the plan: per-tenant group runners, the platform's project runner, their tokens,
the chart the real Helm engine renders for each, and the job pods their config.toml describes held
to the platform's Gatekeeper policies in the real OPA engine."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from components.gitlab_runner import (
    BUILD_EXCEPTIONS,
    CA_SECRET,
    JOB_LABEL,
    JOB_SERVICES,
    NAMESPACE,
    PROTECTED_NAMESPACE,
    PROTECTED_TAG,
    RUNNER_ID_ANNOTATION,
    TOKEN_ROTATION_DAYS,
    TOKEN_SECRET,
    protected_owner,
    tenant_namespace,
)
from components.tenancy import Severity
from platformctl.helm_render import RELEASE_TYPE
from platformctl.mocks import SECRET_MARK, _digest
from platformctl.render import Render
from policy.inventory import MAX_LIFETIME_SECONDS, check_credentials
from tests.opa import evaluate, review
from tests.test_ci_attacks import _takes
from tests.test_config import _problems, _write, setting
from tests.test_gatekeeper_plan import gatekeeper_verdicts
from tests.test_delivery_attacks import nlb_cidrs
from policy.gatekeeper import templates
from stacks.config import quantity

RUNNER = "gitlab:index/userRunner:UserRunner"
GROUP = "gitlab:index/group:Group"
ZONES = ("eu-west-1a", "eu-west-1b", "eu-west-1c")  # Pulumi.prod.yaml's control plane: the region's a, b and c
SECRET = "kubernetes:core/v1:Secret"


def by_type(plan: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [r for r in plan["resources"] if r["type"] == rtype]


def tenants(plan: dict[str, Any]) -> list[str]:
    return sorted(g["inputs"]["path"] for g in by_type(plan, GROUP) if g["name"].endswith("-repositories-group"))


def one(items: list[dict[str, Any]], what: str) -> dict[str, Any]:
    assert len(items) == 1, f"{what}: {len(items)} found"
    return items[0]


def runner_release(plan: dict[str, Any], namespace: str) -> dict[str, Any]:
    return one([r for r in by_type(plan, RELEASE_TYPE) if r["inputs"]["chart"] == "gitlab-runner"
                and r["inputs"]["namespace"] == namespace], f"gitlab-runner release in {namespace}")


def token_secret(plan: dict[str, Any], namespace: str) -> dict[str, Any]:
    return one([r for r in by_type(plan, SECRET) if (r["inputs"].get("metadata") or {}).get("name") == TOKEN_SECRET
                and r["inputs"]["metadata"].get("namespace") == namespace], f"{TOKEN_SECRET} in {namespace}")


def config_toml(release: dict[str, Any]) -> dict[str, Any]:
    """The [[runners]] entry the release registers with (its runners.config, parsed as TOML)."""
    [entry] = tomllib.loads(release["inputs"]["values"]["runners"]["config"])["runners"]
    return entry


def rendered(release: dict[str, Any], kind: str) -> dict[str, Any]:
    return one([o for o in release["rendered"] if o["kind"] == kind], f"{release['name']} {kind}")


def test_each_tenant_has_a_group_runner_on_its_own_group(plan: dict) -> None:
    runners = {r["inputs"]["description"]: r for r in by_type(plan, RUNNER)}
    names = tenants(plan)
    assert names, "no tenant in the plan"
    for tenant in names:
        group = one([g for g in by_type(plan, GROUP) if g["inputs"]["path"] == tenant], f"group {tenant}")
        runner = runners[f"group {tenant}"]
        assert runner["inputs"]["runnerType"] == "group_type"
        # The id the group gets (the mocks number GitLab objects by type and name), wired as an input.
        assert runner["inputs"]["groupId"] == int(_digest(GROUP, group["name"], length=6), 16)
        assert group["urn"] in runner["dependsOn"]
        assert "projectId" not in runner["inputs"]
        assert runner["options"]["additionalSecretOutputs"] == ["token"]


def test_each_tenant_runner_release_takes_its_own_runners_token_from_a_secret(plan: dict) -> None:
    runners = {r["inputs"]["description"]: r for r in by_type(plan, RUNNER)}
    all_runners = {r["urn"] for r in runners.values()}
    for tenant in tenants(plan):
        namespace = tenant_namespace(tenant)
        release, secret = runner_release(plan, namespace), token_secret(plan, namespace)
        assert release["inputs"]["values"]["runners"]["secret"] == TOKEN_SECRET
        assert secret["secretPaths"] == ["stringData"] and secret["inputs"]["stringData"]["runner-token"] == "[secret]"
        # The token comes from this tenant's runner and from no other.
        assert all_runners & set(secret["dependsOn"]) == {runners[f"group {tenant}"]["urn"]}
        assert secret["urn"] in release["dependsOn"]
        assert config_toml(release)["kubernetes"]["namespace"] == namespace


def test_no_runner_token_is_in_the_plan_or_any_values(renders: dict[str, Render]) -> None:
    for result in renders.values():
        text = json.dumps(result.plan)
        assert f"glrt-{SECRET_MARK}" not in text, "a runner authentication token reached the plan"
        for release in by_type(result.plan, RELEASE_TYPE):
            if release["inputs"]["chart"] == "gitlab-runner":
                values = release["inputs"]["values"]
                assert "runnerToken" not in values and "runnerRegistrationToken" not in values
                deployment = rendered(release, "Deployment")
                projected = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "projected-secrets"]
                assert [s["secret"]["name"] for s in projected[0]["projected"]["sources"]] == [TOKEN_SECRET]


def test_tenants_share_no_namespace_token_cache_or_image_project(plan: dict) -> None:
    names = tenants(plan)
    configs = {t: config_toml(runner_release(plan, tenant_namespace(t))) for t in names}
    assert len({c["kubernetes"]["namespace"] for c in configs.values()}) == len(names)
    for tenant, config in configs.items():
        kubernetes = config["kubernetes"]
        assert "cache" not in config, f"{tenant}: a distributed cache would be shared storage"
        harbor = kubernetes["image"].split("/", 1)[0]
        own = {f"{harbor}/approved/**/*", f"{harbor}/{tenant}/**/*"}
        assert set(kubernetes["allowed_images"]) == own and set(kubernetes["allowed_services"]) == own
        # Jobs cannot leave their namespace, identity or pod shape.
        for key in ("namespace_overwrite_allowed", "service_account_overwrite_allowed", "pod_annotations_overwrite_allowed",
                    "pod_labels_overwrite_allowed", "node_selector_overwrite_allowed"):
            assert kubernetes[key] == "", key
        assert kubernetes["bearer_token_overwrite_allowed"] is False
        assert kubernetes["automount_service_account_token"] is False
        assert kubernetes["pod_labels"] == {JOB_LABEL: tenant}
    release = runner_release(plan, tenant_namespace(names[0]))
    assert release["inputs"]["values"]["unregisterRunners"] is False  # the runner is Pulumi's to delete
    assert "lifecycle" not in rendered(release, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def test_job_pods_reach_dns_and_the_ingress_controller_only(plan: dict) -> None:
    for tenant in tenants(plan):
        namespace = tenant_namespace(tenant)
        policy = one([r for r in by_type(plan, "kubernetes:networking.k8s.io/v1:NetworkPolicy")
                      if r["inputs"]["metadata"]["namespace"] == namespace and r["inputs"]["metadata"]["name"] == "runner-jobs"],
                     f"NetworkPolicy runner-jobs in {namespace}")["inputs"]["spec"]
        assert policy["podSelector"] == {"matchLabels": {JOB_LABEL: tenant}}
        assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"] and "ingress" not in policy
        namespaces = [peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                      for rule in policy["egress"] for peer in rule["to"] if "namespaceSelector" in peer]
        assert namespaces == ["kube-system", "traefik"]
        cidrs = [peer["ipBlock"]["cidr"] for rule in policy["egress"] for peer in rule["to"] if "ipBlock" in peer]
        # The control plane's NLB's own addresses on EKS (the only public names' addresses there): nothing else outside.
        assert cidrs == nlb_cidrs(plan) and bool(cidrs) == (plan["stack"] == "prod")


def test_every_runner_token_is_in_the_inventory_with_its_lifetime(plan: dict) -> None:
    entries = {name: entry for entry in plan["outputs"]["credentials"] for name in entry["resources"]}
    runners = by_type(plan, RUNNER)
    assert len(runners) == 2 * len(tenants(plan)) + 2  # each tenant's two and the platform's two (any ref, protected refs)
    for runner in runners:
        entry = entries[runner["name"]]
        assert entry["category"] == "issued"
        assert entry["lifetimeSeconds"] == TOKEN_ROTATION_DAYS * 86400 <= MAX_LIFETIME_SECONDS
        assert "pulumi up --refresh" in entry["rotation"]
    # The check knows runners: one without its entry is a finding.
    stripped = copy.deepcopy(plan)
    stripped["outputs"]["credentials"] = [e for e in stripped["outputs"]["credentials"] if runners[0]["name"] not in e["resources"]]
    assert any(runners[0]["name"] in problem for problem in check_credentials(stripped))


def test_the_platform_repository_has_project_runners_of_its_own(plan: dict) -> None:
    runners = {r["inputs"]["accessLevel"]: r["inputs"] for r in by_type(plan, RUNNER) if r["inputs"]["runnerType"] == "project_type"}
    assert sorted(runners) == ["not_protected", "ref_protected"]
    assert runners["not_protected"]["description"] == "project platform/platform-bootstrap"
    assert runners["ref_protected"]["tagLists"] == [PROTECTED_TAG] and runners["ref_protected"]["untagged"] is False
    for runner, namespace_name in ((runners["not_protected"], NAMESPACE), (runners["ref_protected"], PROTECTED_NAMESPACE)):
        assert runner["projectId"] == 1 and runner["description"].startswith("project platform/platform-bootstrap")
        release = runner_release(plan, namespace_name)
        # No tenant's release (gitlab-runner-<tenant>) can take its name: tenant names never start with "platform-".
        assert release["inputs"]["name"] in ("gitlab-runner", "gitlab-runner-platform-protected")
        config = config_toml(release)["kubernetes"]
        assert config["namespace"] == namespace_name and "allowed_images" not in config
        assert config["build_container_security_context"]["allow_privilege_escalation"] is False
        [namespace] = [r for r in plan["resources"] if r["type"] == "kubernetes:core/v1:Namespace"
                       and r["inputs"]["metadata"]["name"] == namespace_name]
        assert namespace["inputs"]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_the_runner_restarts_with_a_new_runner_and_trusts_the_platform_ca(charted: dict[str, Render]) -> None:
    for result in charted.values():
        release = runner_release(result.plan, tenant_namespace(tenants(result.plan)[0]))
        template = rendered(release, "Deployment")["spec"]["template"]
        assert RUNNER_ID_ANNOTATION in template["metadata"]["annotations"]
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        assert volumes["custom-certs"]["secret"]["secretName"] == CA_SECRET
        image = template["spec"]["containers"][0]["image"]
        assert image.startswith(f"harbor.{result.plan['outputs']['urls']['gitlab'].split('gitlab.', 1)[1]}/approved/")


# --- job pods as Runner 18.9's Kubernetes executor builds them from config.toml --------------------

CONTEXT_FIELDS = {"run_as_non_root": "runAsNonRoot", "run_as_user": "runAsUser", "run_as_group": "runAsGroup", "fs_group": "fsGroup",
                  "privileged": "privileged", "allow_privilege_escalation": "allowPrivilegeEscalation"}


def _context(toml: dict[str, Any]) -> dict[str, Any]:
    context = {CONTEXT_FIELDS[k]: v for k, v in toml.items() if k in CONTEXT_FIELDS}
    if "capabilities" in toml:
        context["capabilities"] = {k: v for k, v in toml["capabilities"].items() if v}
    return context


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A strategic merge as Kubernetes does it for a pod: maps merge, containers merge by name."""
    out = dict(base)
    for key, value in patch.items():
        if key in ("containers", "initContainers"):
            named = {c["name"]: c for c in out.get(key, [])}
            out[key] = [_merge(c, next((p for p in value if p["name"] == c["name"]), {})) for c in named.values()]
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def job_pod(entry: dict[str, Any], build_image: str | None = None, services: int = 0) -> dict[str, Any]:
    """The pod a job gets: build and helper containers, one container per entry of the job's
    `services:` (`svc-<n>`, at the service resources: Runner 18.9 executors/kubernetes/kubernetes.go
    preparePodServices), the init-permissions container, the pod security context, labels, resources
    and placement of config.toml, then its pod_spec patches."""
    k = entry["kubernetes"]
    helper_image = k.get("helper_image", "registry.gitlab.com/gitlab-org/gitlab-runner/gitlab-runner-helper:x86_64-v18.9.0")

    def container(name: str, image: str, prefix: str, context: str) -> dict[str, Any]:
        return {
            "name": name, "image": image, "imagePullPolicy": "Always",
            "securityContext": _context(k[context]),
            "resources": {kind: {resource: k[f"{prefix}{key}_{kind.removesuffix('s')}"]
                                 for resource, key in (("cpu", "cpu"), ("memory", "memory"), ("ephemeral-storage", "ephemeral_storage"))}
                          for kind in ("requests", "limits")},
        }

    spec = {
        "securityContext": _context(k["pod_security_context"]),
        "automountServiceAccountToken": k["automount_service_account_token"],
        "containers": [container("build", build_image or k["image"], "", "build_container_security_context"),
                       container("helper", helper_image, "helper_", "helper_container_security_context"),
                       *(container(f"svc-{n}", k["image"], "service_", "service_container_security_context") for n in range(services))],
        "initContainers": [container("init-permissions", helper_image, "helper_", "init_permissions_container_security_context")],
        "volumes": [{"name": "repo", "emptyDir": {}}, {"name": "scripts", "emptyDir": {}}, {"name": "logs", "emptyDir": {}}],
    }
    # Placement: `"key=value" = "effect"` tolerates that taint exactly, a bare key any of its values.
    if "node_selector" in k:
        spec["nodeSelector"] = dict(k["node_selector"])
    if "node_tolerations" in k:
        spec["tolerations"] = [{"key": key, "operator": "Equal", "value": value, "effect": effect} if eq else
                               {"key": key, "operator": "Exists", "effect": effect}
                               for pair, effect in k["node_tolerations"].items() for key, eq, value in [pair.partition("=")]]
    assert entry["feature_flags"]["FF_USE_ADVANCED_POD_SPEC_CONFIGURATION"] is True
    for patch in k["pod_spec"]:
        assert patch["patch_type"] == "strategic"
        spec = _merge(spec, json.loads(patch["patch"]))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "runner-", "namespace": k["namespace"],
            "labels": dict(k["pod_labels"])}, "spec": spec}


def test_a_job_cannot_fill_its_nodes_disk(plan: dict) -> None:
    """A job writing without end (a build's layers, a clone, a service's data) would fill the node's
    disk, and the kubelet's disk-pressure evictions would take other tenants' jobs on the same CI
    nodes. Every container of a job pod has a local-disk limit (past it, the kubelet evicts that job
    alone), and no job may raise it (no `*_overwrite_max_allowed`)."""
    for release in by_type(plan, RELEASE_TYPE):
        if release["inputs"]["chart"] != "gitlab-runner":
            continue
        k = config_toml(release)["kubernetes"]
        for prefix in ("", "helper_", "service_"):
            assert k[f"{prefix}ephemeral_storage_request"] and k[f"{prefix}ephemeral_storage_limit"], (release["name"], prefix)
        assert not [key for key in k if key.endswith("_overwrite_max_allowed")], release["name"]


# Kubernetes' LimitRanger on a pod's creation (plugin/pkg/admission/limitranger/admission.go, 1.33:
# PodValidateLimitFunc, podLimits, maxConstraint): a `type: Pod` max bounds the sum of the containers'
# limits (or the largest init container's, when more), and refuses a pod that sets no limit of a
# bounded resource.
def limit_range_refusals(spec: dict[str, Any], limit_ranges: list[dict[str, Any]]) -> list[str]:
    refusals = []
    for item in (i for r in limit_ranges for i in r["spec"]["limits"] if i["type"] == "Pod"):
        for resource, most in item.get("max", {}).items():
            def limit(container: dict[str, Any]) -> float | None:
                value = container.get("resources", {}).get("limits", {}).get(resource)
                return None if value is None else quantity(value)
            sums = [limit(c) for c in spec["containers"]]
            inits = [limit(c) for c in spec.get("initContainers", [])]
            if None in sums + inits:
                refusals.append(f"maximum {resource} usage per Pod is {most}.  No limit is specified")
                continue
            total = max(sum(sums), *inits) if inits else sum(sums)
            if total > quantity(most):
                refusals.append(f"maximum {resource} usage per Pod is {most}, but limit is {total / 2**30:.1f}Gi")
    return refusals


def pod_totals(spec: dict[str, Any]) -> str:
    """What a pod's containers may hold together, at their limits: local disk and memory."""
    return ", ".join(f"{sum(quantity(c['resources']['limits'][r]) for c in spec['containers']) / 2**30:g}Gi of {r}"
                     for r in ("ephemeral-storage", "memory"))


ATTACK_SERVICES = 40  # `services:` entries of the attacker's job


def test_a_job_cannot_outgrow_its_pod_by_listing_services(plan: dict) -> None:
    """Every container of a job pod has limits, which no job may raise, but a job lists as many
    `services:` as it likes and the Kubernetes executor makes a container of each at the service
    limits, with no cap of its own (Runner 18.9: preparePodServices; `services_limit` is the Docker
    executor's, common/config.go). Forty services make a pod that may write 102Gi to its node's disk
    and take 44Gi of its memory while it requests 6Gi: past the node's disk or memory, the kubelet's
    evictions and the kernel's OOM killer take whatever shares the node (on kubeconfig clusters, the
    platform's services; with shareJobNodes, other tenants' jobs), and no container ever passed its own
    limit. Each runner namespace's LimitRange bounds a job pod at JOB_SERVICES services' worth; the
    runner manager, the namespace's one other pod, passes it too."""
    problems = []
    releases = [r for r in by_type(plan, RELEASE_TYPE) if r["inputs"]["chart"] == "gitlab-runner"]
    assert len(releases) > 2
    for release in releases:
        entry = config_toml(release)
        namespace = entry["kubernetes"]["namespace"]
        ranges = [r["inputs"] for r in by_type(plan, "kubernetes:core/v1:LimitRange") if r["inputs"]["metadata"].get("namespace") == namespace]
        attack = job_pod(entry, services=ATTACK_SERVICES)["spec"]
        if not limit_range_refusals(attack, ranges):
            problems.append(f"{namespace}: a job with {ATTACK_SERVICES} services is admitted ({pod_totals(attack)})")
        ordinary = job_pod(entry, services=JOB_SERVICES)["spec"]
        problems += [f"{namespace}: a job with {JOB_SERVICES} services is refused: {why}" for why in limit_range_refusals(ordinary, ranges)]
        manager = rendered(release, "Deployment")["spec"]["template"]["spec"]
        problems += [f"{namespace}: the runner manager is refused: {why}" for why in limit_range_refusals(manager, ranges)]
    assert not problems, "\n".join(problems)


def _with_pod(plan: dict[str, Any], pod: dict[str, Any]) -> dict[str, Any]:
    """The control plane's policy as the plan declares it (templates, constraints, namespaces,
    Gatekeeper's release) and the pod alone, so OPA evaluates that pod only."""
    pod = {**pod, "metadata": {**pod["metadata"], "name": "job"}}
    policy = [r for r in plan["resources"] if r.get("cluster") == "control-plane" and (
        "gatekeeper.sh" in r["type"] or r["type"] == "kubernetes:core/v1:Namespace"
        or (r["type"] == RELEASE_TYPE and r["inputs"].get("chart") == "gatekeeper"))]
    return {**plan, "resources": [*policy, {"type": "kubernetes:job:Pod", "inputs": pod, "cluster": "control-plane"}]}


def test_job_pods_pass_the_platforms_constraints_in_real_opa(plan: dict) -> None:
    tenant = tenants(plan)[0]
    entry = config_toml(runner_release(plan, tenant_namespace(tenant)))
    verdicts = gatekeeper_verdicts(_with_pod(plan, job_pod(entry)))
    ours = [line for line in verdicts.passed + verdicts.failed if f"Pod {tenant_namespace(tenant)}/job vs" in line]
    assert not [line for line in verdicts.failed if "/job vs" in line], verdicts.failed
    held = {line.split(" vs ", 1)[1] for line in ours}
    assert f"PlatformAllowedRegistries/{tenant_namespace(tenant)}-registries" in held  # its own images only
    assert {"PlatformContainerResources/platform-container-resources", "PlatformDisallowedTags/platform-disallowed-tags"} <= held
    # Not vacuous: an image from another tenant's project is refused.
    foreign = job_pod(entry, build_image=entry["kubernetes"]["image"].split("/", 1)[0] + "/someone-else/app:v1")
    refused = gatekeeper_verdicts(_with_pod(plan, foreign)).failed
    assert any(f"{tenant_namespace(tenant)}-registries" in line for line in refused), refused


# Each exception in BUILD_EXCEPTIONS, as the Pod Security templates word what they refuse.
EXCEPTION_FINDINGS = {
    "seccompProfile Unconfined": "seccompProfile.type <Unconfined>",
    "appArmorProfile Unconfined": "appArmorProfile.type <Unconfined>",
    "allowPrivilegeEscalation true": "allowPrivilegeEscalation to false",
    "capabilities SETUID, SETGID added": "the capability <SET",
}


def pod_security_findings(pod: dict[str, Any]) -> list[str]:
    found = []
    for template in templates():
        if template["metadata"]["name"] in ("platformpodsecurity", "platformpodrestricted"):
            found += [v["msg"] for v in evaluate(template, review(pod))]
    return found


def test_only_the_build_container_departs_from_restricted_and_only_as_stated(plan: dict) -> None:
    tenant = tenants(plan)[0]
    findings = pod_security_findings(job_pod(config_toml(runner_release(plan, tenant_namespace(tenant)))))
    assert findings and all(f.startswith("container <build>") for f in findings), findings
    assert set(EXCEPTION_FINDINGS) == set(BUILD_EXCEPTIONS)
    for exception, words in EXCEPTION_FINDINGS.items():
        assert any(words in f for f in findings), f"{exception}: not what the build container needs any more"
    assert all(any(words in f for words in EXCEPTION_FINDINGS.values()) for f in findings), findings
    # The platform's own jobs build nothing: fully restricted.
    assert pod_security_findings(job_pod(config_toml(runner_release(plan, NAMESPACE)))) == []


def test_runner_namespaces_state_their_pod_security(plan: dict) -> None:
    for tenant in tenants(plan):
        [ns] = [r for r in plan["resources"] if r["type"] == "kubernetes:core/v1:Namespace"
                and r["inputs"]["metadata"]["name"] == tenant_namespace(tenant)]
        labels = ns["inputs"]["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "privileged"  # BUILD_EXCEPTIONS: Unconfined
        assert labels["pod-security.kubernetes.io/warn"] == labels["pod-security.kubernetes.io/audit"] == "restricted"
        assert labels["platform.io/tenant"] == tenant


def _releases(renders: dict[str, Render]) -> Iterator[dict[str, Any]]:
    for result in renders.values():
        yield from (r for r in by_type(result.plan, RELEASE_TYPE) if r["inputs"]["chart"] == "gitlab-runner")


def test_runner_containers_run_restricted(charted: dict[str, Render]) -> None:
    for release in _releases(charted):
        deployment = rendered(release, "Deployment")
        findings = [f for template in templates() if template["metadata"]["name"] in ("platformpodsecurity", "platformpodrestricted")
                    for f in (v["msg"] for v in evaluate(template, review(deployment)))]
        assert findings == [], f"{release['name']}: {findings}"


BAD = [
    ({"concurrent": 0}, "platform:services.gitlabRunner.concurrent", "greater than or equal to 1"),
    ({"loadBalancerCidrs": ["10.0.0.0/33"]}, "platform:services.gitlabRunner.loadBalancerCidrs[0]", "CIDR"),
    ({"platformProjectId": "platform"}, "platform:services.gitlabRunner.platformProjectId", "whole number"),
    ({"concurency": 2}, "platform:services.gitlabRunner.concurency", "allowed: chartVersion, concurrent"),
]


@pytest.mark.parametrize(("value", "key", "words"), BAD, ids=[b[1].rsplit(".", 1)[1] for b in BAD])
def test_bad_runner_settings_name_their_key(tmp_path, value: dict, key: str, words: str) -> None:
    from tests.test_config import DEV

    path = _write(tmp_path, DEV, setting("platform:services", "gitlabRunner", value=value))
    lines = _problems(path)
    assert any(f": {key}" in line and words in line for line in lines), lines


def test_tenants_ci_jobs_run_on_nodes_of_their_own_that_nothing_else_tolerates(renders: dict[str, Render]) -> None:
    # Build containers run with seccomp and AppArmor unconfined: on prod's control plane, apart from
    # Vault, GitLab, Harbor and the platform's own deploy jobs.
    from tests.test_config import PROD

    plan = renders["prod"].plan
    job_nodes = PROD["config"]["platform:services"]["gitlabRunner"]["jobNodes"]
    [taint] = job_nodes["taints"]
    # The `ci` group: a node group in each zone (tests/test_eks_zones.py).
    ci = {f"control-plane-ci-{zone}" for zone in ZONES}
    groups = [r for r in plan["resources"] if r["type"] == "aws:eks/nodeGroup:NodeGroup" and r["name"] in ci]
    assert len(groups) == len(ci)
    for group in groups:
        assert group["inputs"]["taints"] == [{"key": taint["key"], "value": taint["value"], "effect": "NO_SCHEDULE"}]
        assert job_nodes["nodeSelector"].items() <= group["inputs"]["labels"].items()
    for tenant in tenants(plan):
        entry = config_toml(runner_release(plan, tenant_namespace(tenant)))["kubernetes"]
        assert entry["node_selector"] == job_nodes["nodeSelector"], tenant
        assert entry["node_tolerations"] == {f"{taint['key']}={taint['value']}": taint["effect"]}, tenant
        assert entry["node_selector_overwrite_allowed"] == ""  # a job cannot pick other nodes
    # The platform's own runners place their jobs on nodes of their own (tests/test_node_attacks.py).
    runner_options = PROD["config"]["platform:services"]["gitlabRunner"]
    for namespace, key in ((NAMESPACE, "platformJobNodes"), (PROTECTED_NAMESPACE, "deployJobNodes")):
        platform = config_toml(runner_release(plan, namespace))["kubernetes"]
        assert platform["node_selector"] == runner_options[key]["nodeSelector"] != job_nodes["nodeSelector"]
    # Only the CI groups of the control plane are tainted, so the platform's services have nodes (the workload clusters'
    # tainted groups are dedicated tenants', tests/test_tenant_nodes_attacks.py); nothing else tolerates the tenants' taint.
    assert sorted(r["name"] for r in plan["resources"] if r["type"] == "aws:eks/nodeGroup:NodeGroup" and r["inputs"].get("taints")
                  and r["name"].startswith("control-plane-")) == [
        f"control-plane-{group}-{zone}" for group in ("ci", "ci-release", "deploy", "platform-ci") for zone in ZONES]
    tolerating = {r["name"] for r in plan["resources"] if taint["key"] in json.dumps(r["inputs"])}
    runners = {runner_release(plan, tenant_namespace(t))["name"] for t in tenants(plan)}
    assert tolerating == runners | ci


def _ci_nodes(groups: list[dict[str, Any]]) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        doc["config"]["platform:clusters"]["controlPlane"]["eks"]["nodeGroups"] = groups
    return mutate


@pytest.mark.parametrize(("groups", "key", "words"), [
    ([{"name": "system", "instanceTypes": ["m7i.xlarge"], "minSize": 3, "maxSize": 6, "desiredSize": 3}],
     "platform:services.gitlabRunner.jobNodes", "no node group of clusters.controlPlane.eks carries"),
    ([{"name": "ci", "instanceTypes": ["m7i.xlarge"], "minSize": 1, "maxSize": 6, "desiredSize": 2,
       "labels": {"platform.io/node-role": "ci-jobs"}, "taints": [{"key": "platform.io/ci-jobs", "value": "true"}]}],
     "platform:clusters.controlPlane.eks.nodeGroups", "every group is tainted"),
    ([{"name": "ci", "instanceTypes": ["m7i.xlarge"], "minSize": 1, "maxSize": 6, "desiredSize": 2,
       "taints": [{"key": "platform.io/ci-jobs", "value": "true", "effect": "PreferNoSchedule"}]}],
     "platform:clusters.controlPlane.eks.nodeGroups[0].taints[0].effect", "'NoSchedule' or 'NoExecute'"),
], ids=["no-group-for-jobs", "every-group-tainted", "soft-taint"])
def test_ci_job_nodes_the_cluster_lacks_are_refused_naming_the_key(tmp_path, groups: list, key: str, words: str) -> None:
    from tests.test_config import PROD

    lines = _problems(_write(tmp_path, PROD, _ci_nodes(groups)), stack="prod")
    assert any(f"{key}" in line and words in line for line in lines), lines


def _glob(pattern: str) -> re.Pattern[str]:
    """The runner's image allowlist glob (doublestar): `**` crosses `/`, `*` does not."""
    return re.compile("".join(".*" if part == "**" else "[^/]*" if part == "*" else re.escape(part)
                              for part in re.split(r"(\*\*|\*)", pattern)) + "$")


def holds_credentials(job: dict[str, Any]) -> bool:
    """A starter job that logs in to Vault with an ID token, or writes with its job token (as the
    person who started it: for a release, the owner who pushed the tag)."""
    return "id_tokens" in job or any("CI_JOB_TOKEN" in line for line in job.get("script") or [])


def test_the_starter_pipelines_run_on_their_tenants_runner(plan: dict) -> None:
    from components.tenant_supply_chain import RELEASE_BUILDS, starter_files

    tenant = tenants(plan)[0]
    release = runner_release(plan, tenant_namespace(tenant))
    allowed = [_glob(p) for p in config_toml(release)["kubernetes"]["allowed_images"]]
    harbor = config_toml(release)["kubernetes"]["image"].split("/", 1)[0]
    [runner] = [r for r in by_type(plan, RUNNER) if r["inputs"]["description"] == f"group {tenant}"]
    assert runner["inputs"]["untagged"] is True and runner["inputs"]["accessLevel"] == "not_protected"
    [protected] = [r for r in by_type(plan, RUNNER) if r["inputs"]["description"].startswith(f"group {tenant} (protected refs")]
    assert protected["inputs"]["untagged"] is False and protected["inputs"]["accessLevel"] == "ref_protected"
    protected_allowed = config_toml(runner_release(plan, tenant_namespace(protected_owner(tenant))))["kubernetes"]["allowed_images"]
    assert protected_allowed == config_toml(release)["kubernetes"]["allowed_images"]
    jobs = 0
    for project, files in starter_files(tenant, harbor, Severity.HIGH, harbor.removeprefix("harbor.")).items():
        pipeline = yaml.safe_load(files[".gitlab-ci.yml"])
        templates_ = {k: v for k, v in pipeline.items() if k.startswith(".")}
        for name, job in pipeline.items():
            if name.startswith(".") or not isinstance(job, dict) or "trigger" in job or name in ("stages", "variables", "default"):
                continue
            job = {**templates_.get(job.get("extends", ""), {}), **job}
            image = job["image"]["name"] if isinstance(job["image"], dict) else job["image"]
            assert any(p.match(image) for p in allowed), f"{project} {name}: {image} is not allowed on the {tenant} runner"
            # The release jobs (credentials, and the build and scan of what they release) on the runner
            # for protected refs, every other on the untagged one.
            takes = [r["inputs"]["accessLevel"] for r in (runner, protected) if _takes(r["inputs"], job, protected_ref=True)]
            for_release = holds_credentials(job) or name in RELEASE_BUILDS
            assert takes == (["ref_protected"] if for_release else ["not_protected"]), f"{project} {name}: {takes}"
            jobs += 1
    assert jobs >= 7  # build, scan, build-release, scan-release, push, sign, bump-image
    # The build job's buildah runs rootless as the build user, without fuse: what BUILD_EXCEPTIONS allow.
    app = yaml.safe_load(starter_files(tenant, harbor, Severity.HIGH, harbor.removeprefix("harbor."))["app"][".gitlab-ci.yml"])
    assert app["variables"]["STORAGE_DRIVER"] == "vfs" and app["variables"]["BUILDAH_ISOLATION"] == "chroot"
    assert config_toml(release)["kubernetes"]["pod_security_context"]["run_as_user"] == 1000
