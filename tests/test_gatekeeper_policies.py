"""The Gatekeeper ConstraintTemplates, evaluated by the real OPA engine on admission reviews.

Every template gets allowed and disallowed review objects of its own, and the pod policies also
run the Gatekeeper library's sample suites (tests/fixtures/gatekeeper-library) against the
platform's templates, with the library's parameters translated to ours. Where our policy
deliberately decides a library sample differently, UPSTREAM_DIFFERENCES says so and why.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from policy.gatekeeper import (
    ANALYSIS_KINDS,
    INGRESS_KINDS,
    POD_KINDS,
    POD_SECURITY_LABEL,
    TENANT_OBJECT_KINDS,
    cluster_constraints,
    cluster_mutations,
    node_agent_constraint,
    templates,
    tenant_argo_constraint,
    tenant_namespace_constraints,
)
from components.velero_node_agent import daemonset_spec
from stacks.services import PLATFORM_NAMESPACES as SLICE_NAMESPACES
from tests.opa import evaluate, review, violations
from tests.test_daemonset_attacks import OTHER_NODE, hosting_pod, requester, volume_of_a_pod

PLATFORM_NAMESPACES = [n.name for n in SLICE_NAMESPACES]
ROOT = Path(__file__).parent.parent
LIBRARY = ROOT / "tests" / "fixtures" / "gatekeeper-library"
TEMPLATES = {t["metadata"]["name"]: t for t in templates()}
POD_TEMPLATES = [
    "platformallowedregistries",
    "platformdisallowedtags",
    "platformcontainerresources",
    "platformrequiredprobes",
    "platformpodsecurity",
    "platformpodrestricted",
    "platformpoddisruption",
]

HARBOR = "harbor.example.com"
REGISTRIES = {"registries": [HARBOR]}
IMAGE = f"{HARBOR}/team-a/web:1.4.2"
DIGEST = "sha256:" + "0" * 64
TENANT_SELECTOR = {"matchLabels": {"platform.io/tenant-namespace": "true"}}


def check(template: str, obj: dict[str, Any], parameters: dict[str, Any] | None = None, **kwargs: Any) -> list[str]:
    """The violation messages of `template` for `obj`; every violation must carry a message."""
    found = violations(TEMPLATES[template], obj, parameters, **kwargs)
    messages = [v.get("msg") for v in found]
    assert all(isinstance(m, str) and m.strip() for m in messages), f"violation without a message: {found}"
    return sorted(messages)


def assert_messages(messages: list[str], fragments: list[str]) -> None:
    """Exactly one violation per fragment, each naming what is wrong."""
    assert len(messages) == len(fragments), messages
    for fragment in fragments:
        assert any(fragment in m for m in messages), f"no violation mentions {fragment!r}: {messages}"


# --- objects ----------------------------------------------------------------------------------

PROBE = {"httpGet": {"path": "/healthz", "port": 8080}}
RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}


# What Pod Security's restricted level asks of every container.
RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def container(name: str = "app", image: str = IMAGE, **fields: Any) -> dict[str, Any]:
    """A container every pod policy allows; `fields` override or (with None) remove a field,
    but a `securityContext` given is merged into the restricted one (None removes it all)."""
    c = {"name": name, "image": image, "imagePullPolicy": "Always", "resources": copy.deepcopy(RESOURCES),
         "livenessProbe": PROBE, "readinessProbe": PROBE, "securityContext": copy.deepcopy(RESTRICTED)}
    if fields.get("securityContext") is not None:
        merged = {**c["securityContext"], **fields["securityContext"]}
        fields = {**fields, "securityContext": {k: v for k, v in merged.items() if v is not None}}
    c.update(fields)
    return {k: v for k, v in c.items() if v is not None}


def init_container(name: str = "migrate", image: str = IMAGE, **fields: Any) -> dict[str, Any]:
    return container(name, image, livenessProbe=None, readinessProbe=None, **fields)


def pod_spec(*containers: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"containers": list(containers) or [container()], **fields}


def workload(kind: str, spec: dict[str, Any], name: str = "web") -> dict[str, Any]:
    """`kind` carrying pod spec `spec` where that kind keeps it."""
    template = {"metadata": {"labels": {"app": name}}, "spec": spec}
    api, body = {
        "Pod": ("v1", spec),
        "ReplicationController": ("v1", {"selector": {"app": name}, "template": template}),
        "Deployment": ("apps/v1", {"selector": {"matchLabels": {"app": name}}, "template": template}),
        "StatefulSet": ("apps/v1", {"selector": {"matchLabels": {"app": name}}, "serviceName": name, "template": template}),
        "DaemonSet": ("apps/v1", {"selector": {"matchLabels": {"app": name}}, "template": template}),
        "ReplicaSet": ("apps/v1", {"selector": {"matchLabels": {"app": name}}, "template": template}),
        "Rollout": ("argoproj.io/v1alpha1", {"selector": {"matchLabels": {"app": name}}, "template": template,
                                             "strategy": {"canary": {}}}),
        "Job": ("batch/v1", {"template": {**template, "spec": {**spec, "restartPolicy": "Never"}}}),
        "CronJob": (
            "batch/v1",
            {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": {**template, "spec": {**spec, "restartPolicy": "Never"}}}}},
        ),
    }[kind]
    # A Pod as its ReplicaSet makes it (a Pod no controller recreates is a case of its own).
    owners = {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{name}-7d4b9c", "uid": "0b6c4e1a",
                                   "controller": True}]} if kind == "Pod" else {}
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": "team-a-dev", **owners}, "spec": body}


def pod(*containers: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return workload("Pod", pod_spec(*containers, **fields))


WORKLOAD_KINDS = [kind for group in POD_KINDS for kind in group["kinds"]]


def role_binding(role_kind: str, role: str, subject: dict[str, str], name: str = "access") -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": "team-a-dev"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": [subject],
    }


GROUP = {"kind": "Group", "name": "team-a-developers", "apiGroup": "rbac.authorization.k8s.io"}
SERVICE_ACCOUNT = {"kind": "ServiceAccount", "name": "deployer", "namespace": "team-a-dev"}
ROLLOUTS_CONTROLLER = {"kind": "ServiceAccount", "name": "argo-rollouts", "namespace": "argo-rollouts"}
CONTROLLER = {"namespace": "argo-rollouts", "name": "argo-rollouts", "clusterRole": "argo-rollouts-tenant"}
SUBJECTS = {"users": ["alice"], "groups": ["team-a-developers", "team-a-owners"], "serviceAccountNamespaces": ["team-a-dev"]}
TENANT_REGISTRIES = {"registries": [f"{HARBOR}/team-a", f"{HARBOR}/approved"], "requirePullAlways": True}
TENANT_HOST = "team-a.dev.example.com"
HOSTS = {"hosts": [TENANT_HOST]}


def ingress(*rules: dict[str, Any], tls_hosts: list[str] | None = None, **spec: Any) -> dict[str, Any]:
    backend = {"service": {"name": "app", "port": {"number": 80}}}
    body: dict[str, Any] = {"rules": [{**r, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}
                                      for r in rules], **spec}
    if tls_hosts is not None:
        body["tls"] = [{"hosts": tls_hosts}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web", "namespace": "team-a-dev"},
            "spec": body}


def annotated(obj: dict[str, Any], annotations: dict[str, str]) -> dict[str, Any]:
    return {**obj, "metadata": {**obj["metadata"], "annotations": annotations}}


def ingress_route(*matches: str, api: str = "traefik.io/v1alpha1", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": api, "kind": "IngressRoute", "metadata": {"name": "web", "namespace": "team-a-dev"},
            "spec": {"routes": [{"match": m, "kind": "Rule", "services": [{"name": "app", "port": 80}]} for m in matches], **spec}}


# --- every template: allowed and disallowed cases -----------------------------------------------

# (template, id, object, parameters, review options)
PLATFORM_ACCOUNTS = {"serviceAccounts": ["vault-secrets"]}  # PlatformPodSecurity's, as components/gatekeeper.py sets it

ALLOWED: list[tuple[str, str, dict[str, Any], dict[str, Any] | None, dict[str, Any]]] = [
    ("platformallowedregistries", "harbor-image", pod(), REGISTRIES, {}),
    ("platformallowedregistries", "prefix-with-slash-and-digest", pod(container(image=f"{HARBOR}/team-a/web@{DIGEST}")),
     {"registries": [f"{HARBOR}/"]}, {}),
    ("platformallowedregistries", "registry-port-and-project-prefix",
     workload("CronJob", pod_spec(container(image=f"{HARBOR}:8443/team-a/job:2"),
                                  initContainers=[init_container(image=f"{HARBOR}:8443/team-a/m:1")])),
     {"registries": [f"{HARBOR}:8443/team-a"]}, {}),
    ("platformdisallowedtags", "version-tag", pod(), None, {}),
    ("platformdisallowedtags", "registry-port-with-tag", pod(container(image="registry.local:5000/app:1.0")), None, {}),
    ("platformdisallowedtags", "digest-pinned", pod(container(image=f"{HARBOR}/team-a/web@{DIGEST}")), None, {}),
    ("platformdisallowedtags", "latest-but-digest-pinned", pod(container(image=f"{HARBOR}/team-a/web:latest@{DIGEST}")), None, {}),
    ("platformcontainerresources", "all-set", workload("Job", pod_spec(initContainers=[init_container()])), None, {}),
    ("platformcontainerresources", "ephemeral-container-without-resources",
     pod(ephemeralContainers=[{"name": "debug", "image": f"{HARBOR}/tools/debug:1"}]), None, {}),
    ("platformcontainerresources", "pod-update-is-immutable", pod(container(resources=None)), None, {"operation": "UPDATE"}),
    ("platformrequiredprobes", "http-probes", workload("Deployment", pod_spec()), None, {}),
    ("platformrequiredprobes", "grpc-tcp-and-exec-probes-init-without",
     pod(container(livenessProbe={"grpc": {"port": 9090}}, readinessProbe={"tcpSocket": {"port": 8080}}),
         container("sidecar", livenessProbe={"exec": {"command": ["true"]}}), initContainers=[init_container()]), None, {}),
    ("platformrequiredprobes", "pod-update-is-immutable", pod(container(livenessProbe=None)), None, {"operation": "UPDATE"}),
    # Run to completion: a migration Job, a CronJob, Argo Rollouts' job analysis, a one-shot Pod.
    ("platformrequiredprobes", "job-without-probes", workload("Job", pod_spec(container(livenessProbe=None, readinessProbe=None))), None, {}),
    ("platformrequiredprobes", "cronjob-without-probes",
     workload("CronJob", pod_spec(container(livenessProbe=None, readinessProbe=None))), None, {}),
    ("platformrequiredprobes", "one-shot-pod-without-probes",
     pod(container(livenessProbe=None, readinessProbe=None), restartPolicy="OnFailure"), None, {}),
    ("platformpodsecurity", "plain", workload("StatefulSet", pod_spec()), None, {}),
    ("platformpodsecurity", "explicitly-unprivileged",
     pod(container(securityContext={"privileged": False, "allowPrivilegeEscalation": False}), hostNetwork=False, hostPID=False,
         hostIPC=False, volumes=[{"name": "cache", "emptyDir": {}}, {"name": "conf", "configMap": {"name": "web"}}]), None, {}),
    ("platformpodsecurity", "pod-update-keeps-existing-privileged-ephemeral",
     pod(ephemeralContainers=[{"name": "debug", "image": IMAGE, "securityContext": {"privileged": True}}], hostNetwork=True),
     None, {"operation": "UPDATE", "old_object": pod(ephemeralContainers=[{"name": "debug", "image": IMAGE}], hostNetwork=True)}),
    ("platformpodsecurity", "node-local-profiles-safe-sysctl-and-container-port",
     pod(container(securityContext={"seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"},
                                    "appArmorProfile": {"type": "RuntimeDefault"}, "procMount": "Default",
                                    "seLinuxOptions": {"type": "container_t", "level": "s0:c1,c2"}},
                   ports=[{"containerPort": 8080}]),
         securityContext={"sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]}),
     None, {}),
    ("platformpodsecurity", "runtime-default-and-localhost-annotations",
     {**workload("Deployment", pod_spec()), "spec": {**workload("Deployment", pod_spec())["spec"], "template": {
         "metadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/app": "localhost/k8s-web",
                                      "seccomp.security.alpha.kubernetes.io/pod": "runtime/default"}},
         "spec": pod_spec()}}},
     None, {}),
    ("platformpodsecurity", "own-service-account", workload("Deployment", pod_spec(serviceAccountName="web")), PLATFORM_ACCOUNTS, {}),
    ("platformpodrestricted", "restricted-containers", workload("ReplicationController", pod_spec(initContainers=[init_container()])),
     None, {}),
    ("platformpodrestricted", "pod-level-defaults-and-net-bind-service",
     pod(container(securityContext={"runAsNonRoot": None, "seccompProfile": None,
                                    "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}, "runAsUser": 1000}),
         securityContext={"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
         volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}, {"name": "t", "projected": {"sources": []}}]),
     None, {}),
    ("platformpodrestricted", "pod-update-keeps-existing-ephemeral",
     pod(ephemeralContainers=[{"name": "debug", "image": IMAGE}]), None,
     {"operation": "UPDATE", "old_object": pod(ephemeralContainers=[{"name": "debug", "image": IMAGE}])}),
    ("platformtenantbindingsubjects", "tenant-group-user-and-own-service-account",
     {**role_binding("ClusterRole", "view", GROUP), "subjects": [
         GROUP, {"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}, SERVICE_ACCOUNT,
         {"kind": "ServiceAccount", "name": "implicit-namespace"}]}, SUBJECTS, {}),
    ("platformtenantbindingsubjects", "no-subjects", {**role_binding("ClusterRole", "view", GROUP), "subjects": []}, SUBJECTS, {}),
    ("platformtenantbindingsubjects", "platform-controller-to-its-role",
     role_binding("ClusterRole", "argo-rollouts-tenant", ROLLOUTS_CONTROLLER), {**SUBJECTS, "controllers": [CONTROLLER]}, {}),
    ("platformallowedregistries", "tenant-project-and-approved-pulled-always",
     pod(container(image=f"{HARBOR}/team-a/web:1"), container("b", image=f"{HARBOR}/approved/nginx:1.27")),
     TENANT_REGISTRIES, {}),
    ("platformnoclusteradminbinding", "clusterrole-admin", role_binding("ClusterRole", "admin", GROUP), None, {}),
    ("platformtenantingresshosts", "own-host-with-tls", ingress({"host": TENANT_HOST}, tls_hosts=[TENANT_HOST]), HOSTS, {}),
    ("platformtenantingresshosts", "own-host-with-traefik-annotations", annotated(ingress({"host": TENANT_HOST}, tls_hosts=[TENANT_HOST]), {
        "traefik.ingress.kubernetes.io/router.entrypoints": "websecure", "traefik.ingress.kubernetes.io/router.tls": "true"}), HOSTS, {}),
    ("platformnoclusteradminbinding", "namespaced-role-named-cluster-admin", role_binding("Role", "cluster-admin", SERVICE_ACCOUNT),
     None, {}),
]

# (template, id, object, parameters, review options, one fragment per expected violation)
DISALLOWED: list[tuple[str, str, dict[str, Any], dict[str, Any] | None, dict[str, Any], list[str]]] = [
    ("platformtenantingresshosts", "other-tenant-wildcard-catch-all-and-default-backend",
     ingress({"host": "team-b.dev.example.com"}, {}, tls_hosts=["*.dev.example.com"],
             defaultBackend={"service": {"name": "app", "port": {"number": 80}}}), HOSTS, {},
     ["Ingress <web> must not serve the host <team-b.dev.example.com>", "Ingress <web> has a rule without a host",
      "Ingress <web> must not serve the host <*.dev.example.com>", "Ingress <web> must not set a defaultBackend"]),
    ("platformtenantingresshosts", "platform-host-in-a-sandbox-without-hosts", ingress({"host": "vault.example.com"}), {"hosts": []}, {},
     ["must not serve the host <vault.example.com>"]),
    # No IngressRoute at all: Traefik parses `match` (matchers in any case: pkg/rules/parser.go), which a text check cannot
    # hold to a host. Each of these passed the former check of Host(`...`) conjunctions (helper redargo, the real OPA engine).
    *(("platformtenantingresshosts", f"route-{index}", route, HOSTS, {}, ["IngressRoute <web> is not allowed in a tenant namespace"])
      for index, route in enumerate([
          ingress_route(f"Host(`{TENANT_HOST}`) && PathPrefix(`/api`)", tls={"domains": [{"main": TENANT_HOST}]}),
          ingress_route(f"Host(`{TENANT_HOST}`)", api="traefik.containo.us/v1alpha1"),
          ingress_route('Host("gitlab.example.com")'),
          ingress_route("host(`gitlab.example.com`) && PathRegexp(`^/(.*|Host())`)"),
          ingress_route("PathPrefix(`/`)", f"Host(`{TENANT_HOST}`) || Host(`gitlab.example.com`)", "HostRegexp(`.+`)"),
      ])),
    ("platformtenantingresshosts", "no-parameters-serve-nothing", ingress({"host": TENANT_HOST}), None, {},
     [f"must not serve the host <{TENANT_HOST}>"]),
    ("platformtenantingresshosts", "own-host-asking-cert-manager-for-a-certificate",
     annotated(ingress({"host": TENANT_HOST}, tls_hosts=[TENANT_HOST]), {
         "cert-manager.io/cluster-issuer": "platform-ca", "cert-manager.io/usages": "client auth", "kubernetes.io/tls-acme": "true"}),
     HOSTS, {}, ["annotation <cert-manager.io/cluster-issuer>", "annotation <cert-manager.io/usages>", "annotation <kubernetes.io/tls-acme>"]),
    ("platformallowedregistries", "look-alike-host", pod(container(image=f"{HARBOR}.evil.io/team-a/web:1")), REGISTRIES, {},
     [f"container <app> image <{HARBOR}.evil.io/team-a/web:1> is not from an allowed registry"]),
    ("platformallowedregistries", "docker-hub-init-and-ephemeral",
     workload("Pod", pod_spec(initContainers=[init_container(image="busybox:1.36")],
                              ephemeralContainers=[{"name": "debug", "image": "nicolaka/netshoot:v0.13"}])), REGISTRIES, {},
     ["initContainer <migrate> image <busybox:1.36>", "ephemeralContainer <debug> image <nicolaka/netshoot:v0.13>"]),
    ("platformallowedregistries", "other-port-and-sibling-project",
     pod(container(image=f"{HARBOR}:8443/team-a/web:1"), container("b", image=f"{HARBOR}/team-ab/web:1")),
     {"registries": [f"{HARBOR}/team-a"]}, {}, [f"<{HARBOR}:8443/team-a/web:1>", f"<{HARBOR}/team-ab/web:1>"]),
    ("platformallowedregistries", "no-parameters-fails-closed", pod(), None, {}, [f"image <{IMAGE}>"]),
    ("platformallowedregistries", "pod-update-changing-image", pod(container(image="nginx:1.27")), REGISTRIES,
     {"operation": "UPDATE"}, ["image <nginx:1.27>"]),
    ("platformdisallowedtags", "latest", pod(container(image=f"{HARBOR}/team-a/web:latest")), None, {},
     [f"container <app> image <{HARBOR}/team-a/web:latest> uses the mutable tag latest"]),
    ("platformdisallowedtags", "untagged-with-registry-port-in-cronjob",
     workload("CronJob", pod_spec(container(image="registry.local:5000/app"))), None, {},
     ["container <app> image <registry.local:5000/app> has no tag"]),
    ("platformdisallowedtags", "untagged-init-and-latest-ephemeral",
     pod(initContainers=[init_container(image=f"{HARBOR}/team-a/migrate")],
         ephemeralContainers=[{"name": "debug", "image": f"{HARBOR}/tools/debug:latest"}]), None, {},
     ["initContainer <migrate>", "ephemeralContainer <debug>"]),
    ("platformdisallowedtags", "latest-in-capitals", pod(container(image=f"{HARBOR}/team-a/web:LATEST")), None, {},
     ["uses the mutable tag LATEST"]),
    ("platformdisallowedtags", "empty-tag", pod(container(image=f"{HARBOR}/team-a/web:")), None, {}, ["has no tag"]),
    ("platformcontainerresources", "limits-only",
     pod(container(resources={"limits": {"cpu": "1", "memory": "1Gi"}})), None, {},
     ["container <app> (image <%s>) must set resources.requests.cpu, resources.requests.memory" % IMAGE]),
    ("platformcontainerresources", "init-container-without-and-empty-memory-limit",
     workload("DaemonSet", pod_spec(container(resources={**RESOURCES, "limits": {"cpu": "1", "memory": ""}}),
                                    initContainers=[init_container(resources=None)])), None, {},
     ["container <app> (image <%s>) must set resources.limits.memory" % IMAGE,
      "initContainer <migrate> (image <%s>) must set resources.requests.cpu, resources.requests.memory, "
      "resources.limits.cpu, resources.limits.memory" % IMAGE]),
    ("platformrequiredprobes", "no-readiness", pod(container(readinessProbe=None)), None, {},
     ["container <app> (image <%s>) has no readinessProbe" % IMAGE]),
    ("platformrequiredprobes", "restarted-pod-without-liveness", pod(container(livenessProbe=None), restartPolicy="Always"), None, {},
     ["container <app> (image <%s>) has no livenessProbe" % IMAGE]),
    ("platformrequiredprobes", "probe-without-handler-and-missing",
     workload("ReplicaSet", pod_spec(container(livenessProbe={"initialDelaySeconds": 5}, readinessProbe=None))), None, {},
     ["has no livenessProbe", "has no readinessProbe"]),
    ("platformpodsecurity", "privileged-container-and-init-in-cronjob",
     workload("CronJob", pod_spec(container(securityContext={"privileged": True}),
                                  initContainers=[init_container(securityContext={"privileged": True})])), None, {},
     ["container <app> (image <%s>) must not run privileged" % IMAGE, "initContainer <migrate>"]),
    # A pod running as External Secrets' account gets its token: Vault's login for the namespace, and TokenReviews.
    ("platformpodsecurity", "pod-as-the-external-secrets-account",
     pod(serviceAccountName="vault-secrets", automountServiceAccountToken=True), PLATFORM_ACCOUNTS, {},
     ["Pod <web> must not run as the service account <vault-secrets>; it is the platform's"]),
    ("platformpodsecurity", "cronjob-as-the-account-by-its-deprecated-field",
     workload("CronJob", pod_spec(serviceAccount="vault-secrets")), PLATFORM_ACCOUNTS, {},
     ["CronJob <web> must not run as the service account <vault-secrets>"]),
    ("platformpodsecurity", "host-namespaces", pod(hostNetwork=True, hostPID=True, hostIPC=True), None, {},
     ["Pod <web> must not share the host namespace: hostNetwork is true", "hostPID is true", "hostIPC is true"]),
    ("platformpodsecurity", "host-path-volume",
     workload("Deployment", pod_spec(volumes=[{"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}}])), None, {},
     ["Deployment <web> volume <docker> must not mount the host path </var/run/docker.sock>"]),
    ("platformpodsecurity", "pod-update-adding-privileged-ephemeral",
     pod(ephemeralContainers=[{"name": "debug", "image": IMAGE, "securityContext": {"privileged": True}}]), None,
     {"operation": "UPDATE", "old_object": pod()}, ["ephemeralContainer <debug>"]),
    ("platformpodsecurity", "near-root-container",
     workload("DaemonSet", pod_spec(container(ports=[{"containerPort": 80, "hostPort": 80}], securityContext={
         "procMount": "Unmasked", "seccompProfile": {"type": "Unconfined"}, "appArmorProfile": {"type": "Unconfined"},
         "seLinuxOptions": {"type": "spc_t"}, "windowsOptions": {"hostProcess": True}}))), None, {},
     ["must not use hostPort 80", "procMount <Unmasked>", "seccompProfile.type <Unconfined>", "appArmorProfile.type <Unconfined>",
      "seLinuxOptions", "Windows host process"]),
    ("platformpodsecurity", "unconfined-pod-profiles-annotations-and-unsafe-sysctl",
     {**pod(securityContext={"seccompProfile": {"type": "Unconfined"}, "appArmorProfile": {"type": "Unconfined"},
                             "windowsOptions": {"hostProcess": True},
                             "sysctls": [{"name": "kernel.msgmax", "value": "1"}]}),
      "metadata": {"name": "web", "namespace": "team-a-dev", "annotations": {
          "container.apparmor.security.beta.kubernetes.io/app": "unconfined",
          "container.seccomp.security.alpha.kubernetes.io/app": "unconfined",
          "seccomp.security.alpha.kubernetes.io/pod": "unconfined"}}}, None, {},
     ["Pod <web> must not set securityContext.seccompProfile.type <Unconfined>", "Pod <web> must not set securityContext.appArmorProfile",
      "sysctl <kernel.msgmax>", "container <app> (image <%s>) must not run with the AppArmor annotation <unconfined>" % IMAGE,
      "container <app> (image <%s>) must not run with the seccomp annotation <unconfined>" % IMAGE,
      "Pod <web> must not run with the seccomp annotation <unconfined>", "Pod <web> must not be a Windows host process"]),
    ("platformpodrestricted", "added-capabilities-and-root",
     workload("StatefulSet", pod_spec(container(securityContext={
         "runAsUser": 0, "runAsNonRoot": False, "allowPrivilegeEscalation": True, "capabilities": {"add": ["SYS_ADMIN", "ALL"]}}),
         securityContext={"runAsUser": 0})), None, {},
     ["StatefulSet <web> must not set securityContext.runAsUser to 0", "container <app> (image <%s>) must not set securityContext.runAsUser to 0" % IMAGE,
      "must run as non-root", "allowPrivilegeEscalation", "must drop ALL", "capability <SYS_ADMIN>", "capability <ALL>"]),
    ("platformpodrestricted", "plain-containers-in-cronjob",
     workload("CronJob", pod_spec(container(securityContext=None), initContainers=[init_container(securityContext=None)])), None, {},
     ["container <app> (image <%s>) must set securityContext.allowPrivilegeEscalation" % IMAGE,
      "container <app> (image <%s>) must drop ALL" % IMAGE, "container <app> (image <%s>) must run as non-root" % IMAGE,
      "container <app> (image <%s>) must set securityContext.seccompProfile" % IMAGE,
      "initContainer <migrate> (image <%s>) must set securityContext.allowPrivilegeEscalation" % IMAGE,
      "initContainer <migrate> (image <%s>) must drop ALL" % IMAGE, "initContainer <migrate> (image <%s>) must run as non-root" % IMAGE,
      "initContainer <migrate> (image <%s>) must set securityContext.seccompProfile" % IMAGE]),
    ("platformpodrestricted", "ephemeral-container-added-with-sys-admin",
     pod(ephemeralContainers=[{"name": "debug", "image": IMAGE, "securityContext": {**RESTRICTED, "capabilities": {
         "drop": ["ALL"], "add": ["SYS_ADMIN"]}}}]), None, {"operation": "UPDATE", "old_object": pod()},
     ["ephemeralContainer <debug> (image <%s>) must not add the capability <SYS_ADMIN>" % IMAGE]),
    ("platformpodrestricted", "node-reaching-volume",
     pod(volumes=[{"name": "disk", "awsElasticBlockStore": {"volumeID": "vol-1"}}]), None, {},
     ["volume <disk> has the type <awsElasticBlockStore>"]),
    ("platformtenantbindingsubjects", "everyone-other-tenant-and-foreign-service-account",
     {**role_binding("ClusterRole", "admin", GROUP, "open"), "subjects": [
         {"kind": "Group", "name": "system:authenticated", "apiGroup": "rbac.authorization.k8s.io"},
         {"kind": "Group", "name": "team-b-owners", "apiGroup": "rbac.authorization.k8s.io"},
         {"kind": "User", "name": "system:serviceaccount:kube-system:default", "apiGroup": "rbac.authorization.k8s.io"},
         {"kind": "ServiceAccount", "name": "default", "namespace": "kube-system"}]}, SUBJECTS, {},
     ["Group <system:authenticated>", "Group <team-b-owners>", "User <system:serviceaccount:kube-system:default>",
      "ServiceAccount <kube-system/default>"]),
    ("platformtenantbindingsubjects", "platform-controller-to-another-role",
     {**role_binding("ClusterRole", "admin", ROLLOUTS_CONTROLLER), "subjects": [ROLLOUTS_CONTROLLER, {**ROLLOUTS_CONTROLLER, "name": "other"}]},
     {**SUBJECTS, "controllers": [CONTROLLER]}, {}, ["ServiceAccount <argo-rollouts/argo-rollouts>", "ServiceAccount <argo-rollouts/other>"]),
    ("platformtenantbindingsubjects", "platform-controller-to-a-role-of-its-name",
     role_binding("Role", "argo-rollouts-tenant", ROLLOUTS_CONTROLLER), {**SUBJECTS, "controllers": [CONTROLLER]}, {},
     ["ServiceAccount <argo-rollouts/argo-rollouts>"]),
    ("platformtenantbindingsubjects", "platform-controller-unlisted", role_binding("ClusterRole", "argo-rollouts-tenant", ROLLOUTS_CONTROLLER),
     SUBJECTS, {}, ["ServiceAccount <argo-rollouts/argo-rollouts>"]),
    ("platformtenantbindingsubjects", "no-parameters-fails-closed", role_binding("ClusterRole", "view", GROUP), {}, {},
     ["Group <team-a-developers>"]),
    ("platformallowedregistries", "other-tenant-proxy-cache-and-pull-if-not-present",
     pod(container(image=f"{HARBOR}/team-b/web:1"), container("c", image=f"{HARBOR}/proxy-docker-io/library/nginx:1.27"),
         container("d", imagePullPolicy="IfNotPresent"), container("e", image=f"{HARBOR}/team-a-b/web:1", imagePullPolicy=None)),
     TENANT_REGISTRIES, {},
     [f"<{HARBOR}/team-b/web:1> is not from an allowed registry", f"<{HARBOR}/proxy-docker-io/library/nginx:1.27> is not",
      f"container <d> image <{IMAGE}> must set imagePullPolicy Always (got <IfNotPresent>)",
      f"<{HARBOR}/team-a-b/web:1> is not from", f"container <e> image <{HARBOR}/team-a-b/web:1> must set imagePullPolicy Always"]),
    ("platformnoclusteradminbinding", "user-bound-to-cluster-admin",
     role_binding("ClusterRole", "cluster-admin", {"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}, "oops"),
     None, {}, ["RoleBinding <oops> must not grant ClusterRole <cluster-admin>"]),
    ("platformnoclusteradminbinding", "service-account-bound-to-cluster-admin",
     role_binding("ClusterRole", "cluster-admin", SERVICE_ACCOUNT, "ci"), None, {}, ["RoleBinding <ci>"]),
]


# --- a tenant's other objects (issue 17, second pass) -------------------------------------------

OBJECTS = None  # PlatformTenantObjects takes no parameters (ingress hosts: PlatformTenantIngressHosts)


def namespaced(api_version: str, kind: str, name: str = "web", **body: Any) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": "team-a-dev"}, **body}


def claim(volume: str | None = None) -> dict[str, Any]:
    return namespaced("v1", "PersistentVolumeClaim", "data", spec={
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, **({"volumeName": volume} if volume else {})})


def bound_by(user: str) -> dict[str, Any]:
    """The binder's update that sets a pending claim's volumeName, as `user`."""
    request = review(claim("pvc-1234"), "UPDATE", claim())
    return {**request, "userInfo": {"username": user}}


ALLOWED += [
    ("platformtenantobjects", "cluster-ip-and-load-balancer-service",
     namespaced("v1", "Service", spec={"type": "LoadBalancer", "ports": [{"port": 443}]}), OBJECTS, {}),
    ("platformtenantobjects", "opaque-secret-and-storage-class-claim",
     namespaced("v1", "Secret", "creds", type="Opaque", stringData={"a": "b"}), OBJECTS, {}),
    ("platformtenantobjects", "claim-from-its-storage-class", claim(), OBJECTS, {}),
    ("platformtenantobjects", "disruption-budget-allowing-evictions",
     namespaced("policy/v1", "PodDisruptionBudget", spec={"maxUnavailable": 1, "selector": {}}), OBJECTS, {}),
    ("platformpodsecurity", "defaulted-tolerations-with-keys", pod(tolerations=[
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {"key": "dedicated", "operator": "Equal", "value": "team-a", "effect": "NoSchedule"}]), None, {}),
]

# A tenant's pod security exception: restricted but for what it lists (its namespace's own constraint).
EXCEPTION = {"allowedCapabilities": ["CHOWN"], "allowRoot": True, "allowPrivilegeEscalation": False, "allowedVolumeTypes": ["nfs"],
             "nfsExports": [{"server": "nas", "path": "/x"}]}
ALLOWED += [
    ("platformpodrestricted", "exception-allows-its-capability-root-and-volume-type",
     workload("Deployment", pod_spec(container(securityContext={"capabilities": {"drop": ["ALL"], "add": ["CHOWN"]},
                                                                "runAsNonRoot": False, "runAsUser": 0}),
                                     volumes=[{"name": "share", "nfs": {"server": "nas", "path": "/x"}}])), EXCEPTION, {}),
    ("platformpodrestricted", "exception-with-escalation", pod(container(securityContext={"allowPrivilegeEscalation": True})),
     {"allowPrivilegeEscalation": True}, {}),
]

# Velero's node agent: the pods it creates to copy a volume (tests/test_daemonset_attacks.py builds them
# as Velero v1.18.1 does from the agent's DaemonSet), and what its account must not get through them.
AGENT_SPEC = daemonset_spec(RESOURCES, "velero-s3")["template"]["spec"]
AGENT_CONSTRAINT = node_agent_constraint("velero", AGENT_SPEC["serviceAccountName"], [AGENT_SPEC["containers"][0]["image"]],
                                         ["/var/lib/kubelet/pods", "/var/lib/kubelet/plugins"], ["velero-s3"])
AGENT = AGENT_CONSTRAINT["spec"]["parameters"]
AS_AGENT = {"user_info": requester("velero", AGENT["serviceAccountName"])}


def agent_pod(change: Any = None, restore: bool = False) -> dict[str, Any]:
    """A copy's pod of the agent's shape, `change(spec, container)` applied."""
    pod = hosting_pod(AGENT_SPEC, "velero", volume_of_a_pod(AGENT_SPEC), restore)
    if change is not None:
        change(pod["spec"], pod["spec"]["containers"][0])
    return pod


ALLOWED += [
    ("platformnodeagentpods", "velero-copies-a-volume", agent_pod(), AGENT, AS_AGENT),
    ("platformnodeagentpods", "velero-restores-a-volume", agent_pod(restore=True), AGENT, AS_AGENT),
    ("platformnodeagentpods", "another-users-pod", pod(), AGENT, {"user_info": {"username": "system:serviceaccount:kube-system:daemon-set-controller"}}),
]
DISALLOWED += [
    ("platformnodeagentpods", "as-the-server-on-another-node-with-busybox",
     agent_pod(lambda s, c: (s.update(serviceAccountName="velero-server", nodeName=OTHER_NODE), c.update(image="busybox:1.37.0"))),
     AGENT, AS_AGENT, ["must run as <velero-node-agent>, not <velero-server>", "must run on the requester's own node", "image <busybox:1.37.0>"]),
    ("platformnodeagentpods", "host-root-privileged-reading-a-secret",
     agent_pod(lambda s, c: (s["volumes"][0]["hostPath"].update(path="/"), c["securityContext"].update(privileged=True),
                             c["env"].append({"name": "T", "valueFrom": {"secretKeyRef": {"name": "velero-server-token", "key": "token"}}}))),
     AGENT, AS_AGENT, ["is not allowed; allowed: hostPath at or below", "must not be privileged", "must not read a Secret through env <T>"]),
    ("platformnodeagentpods", "token-bound-to-no-node", agent_pod(), AGENT, {"user_info": requester("velero", "velero-node-agent", None)},
     ["request names no node"]),
]

# Adversarial admission requests of a tenant developer (platform-tenant-admin in its dev namespace),
# an owner, or a vCluster tenant whose objects the syncer copies to the host namespace.
ADVERSARIAL: list[tuple[str, str, dict[str, Any], dict[str, Any] | None, dict[str, Any], list[str]]] = [
    ("platformtenantobjects", "service-external-ips-capture-traffic",
     namespaced("v1", "Service", spec={"externalIPs": ["10.96.0.10"], "ports": [{"port": 53}]}), OBJECTS, {},
     ["Service <web> must not set spec.externalIPs"]),
    ("platformtenantobjects", "node-port-service", namespaced("v1", "Service", spec={"type": "NodePort", "ports": [{"port": 80}]}),
     OBJECTS, {}, ["Service <web> must not be of type NodePort"]),
    ("platformtenantobjects", "secret-minting-a-service-account-token",
     namespaced("v1", "Secret", "steal", type="kubernetes.io/service-account-token",
                metadata={"name": "steal", "namespace": "team-a-dev", "annotations": {"kubernetes.io/service-account.name": "vault-secrets"}}),
     OBJECTS, {}, ["Secret <steal> must not be of type kubernetes.io/service-account-token"]),
    ("platformtenantobjects", "claim-naming-a-released-volume", claim("pvc-of-team-b"), OBJECTS, {},
     ["PersistentVolumeClaim <data> must not name the PersistentVolume <pvc-of-team-b>"]),
    ("platformpodsecurity", "pod-pinned-to-a-control-plane-node", pod(nodeName="control-plane-1"), None, {},
     ["Pod <web> must not set nodeName <control-plane-1>"]),
    ("platformpodsecurity", "deployment-tolerating-every-taint",
     workload("Deployment", pod_spec(tolerations=[{"operator": "Exists"}])), None, {}, ["Deployment <web> must not tolerate every taint"]),
    ("platformpodsecurity", "daemonset-onto-the-control-plane", workload("DaemonSet", pod_spec(tolerations=[
        {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}])), None, {},
     ["must not tolerate the taint <node-role.kubernetes.io/control-plane>"]),
    ("platformpodsecurity", "deployment-preempting-with-a-system-priority",
     workload("Deployment", pod_spec(priorityClassName="system-node-critical")), None, {},
     ["Deployment <web> must not use the priority class <system-node-critical>"]),
    ("platformtenantobjects", "disruption-budgets-blocking-every-drain",
     namespaced("policy/v1", "PodDisruptionBudget", spec={"maxUnavailable": 0, "minAvailable": "100%", "selector": {}}), OBJECTS, {},
     ["maxUnavailable 0 blocks node drains", "minAvailable 100% blocks node drains"]),
    ("platformpodrestricted", "capabilities-spelled-otherwise", pod(container(securityContext={"capabilities": {
        "drop": ["all"], "add": ["sys_admin", "CAP_SYS_ADMIN"]}})), None, {},
     ["must drop ALL", "capability <sys_admin>", "capability <CAP_SYS_ADMIN>"]),
    ("platformpodrestricted", "beyond-what-the-exception-lists",
     pod(container(securityContext={"capabilities": {"drop": ["ALL"], "add": ["CHOWN", "SETUID"]}, "allowPrivilegeEscalation": True}),
         volumes=[{"name": "block", "iscsi": {"targetPortal": "10.0.0.1:3260", "iqn": "iqn.x", "lun": 0}}]), EXCEPTION, {},
     ["capability <SETUID>; allowed: CHOWN, NET_BIND_SERVICE", "allowPrivilegeEscalation", "volume <block> has the type <iscsi>"]),
    ("platformpodsecurity", "excepted-namespace-template-adding-sys-admin-and-net-raw",
     workload("Deployment", pod_spec(container(securityContext={"capabilities": {"add": ["SYS_ADMIN", "NET_RAW", "CHOWN"]}}))), None, {},
     ["capability <SYS_ADMIN>", "capability <NET_RAW>"]),
    ("platformallowedregistries", "pod-update-swapping-in-another-tenants-image", pod(container(image=f"{HARBOR}/team-b/web:1")),
     TENANT_REGISTRIES, {"operation": "UPDATE", "old_object": pod()}, [f"<{HARBOR}/team-b/web:1> is not from an allowed registry"]),
    # tests/test_policy_attacks.py: what an UPDATE may add to a Pending Pod, the kubelet as a proxy, certificates for
    # every host, zero spelled otherwise.
    ("platformpodsecurity", "pod-update-adding-tolerations-of-every-and-the-control-planes-taint",
     pod(tolerations=[{"operator": "Exists"}, {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]), None,
     {"operation": "UPDATE", "old_object": pod()},
     ["Pod <web> must not tolerate every taint", "must not tolerate the taint <node-role.kubernetes.io/control-plane>"]),
    ("platformpodsecurity", "probe-and-hook-connecting-elsewhere-from-the-node",
     workload("Deployment", pod_spec(container(livenessProbe={"httpGet": {"host": "169.254.169.254", "path": "/", "port": 80}},
                                               lifecycle={"preStop": {"tcpSocket": {"host": "10.96.0.1", "port": 443}}}))), None, {},
     ["livenessProbe.httpGet.host <169.254.169.254>", "lifecycle.preStop.tcpSocket.host <10.96.0.1>"]),
    ("platformtenantingresshosts", "ingress-naming-a-tls-secret", ingress({"host": TENANT_HOST}, tls=[{"hosts": [TENANT_HOST], "secretName": "mine"}]),
     HOSTS, {}, ["Ingress <web> must not name the TLS Secret <mine>"]),
    ("platformtenantobjects", "disruption-budgets-spelling-zero-and-all-otherwise",
     namespaced("policy/v1", "PodDisruptionBudget", spec={"maxUnavailable": "00%", "minAvailable": "0100%", "selector": {}}), OBJECTS, {},
     ["maxUnavailable 0 blocks node drains", "minAvailable 100% blocks node drains"]),
]
DISALLOWED += ADVERSARIAL
ALLOWED += [
    ("platformpodsecurity", "pod-update-keeping-the-tolerations-it-was-created-with",
     pod(tolerations=[{"operator": "Exists"}]), None, {"operation": "UPDATE", "old_object": pod(tolerations=[{"operator": "Exists"}])}),
    ("platformpodsecurity", "probe-with-a-host-header-and-hook-on-the-pod",
     pod(container(livenessProbe={"httpGet": {"path": "/", "port": 8080, "httpHeaders": [{"name": "Host", "value": "web.example.com"}]}},
                   lifecycle={"preStop": {"httpGet": {"path": "/drain", "port": 8080, "host": ""}}})), None, {}),
    ("platformtenantobjects", "disruption-budget-with-a-percentage", namespaced("policy/v1", "PodDisruptionBudget",
                                                                               spec={"maxUnavailable": "010%", "selector": {}}), OBJECTS, {}),
]

# Argo Rollouts analyses: the controller calls their providers (components/tenant_rollout.py queries Prometheus).
PROMETHEUS = "http://prometheus-server.monitoring.svc.cluster.local"
QUERIES = {"prometheusAddresses": [PROMETHEUS]}


def analysis(kind: str, *providers: dict[str, Any]) -> dict[str, Any]:
    return namespaced("argoproj.io/v1alpha1", kind, "error-rate", spec={
        "metrics": [{"name": f"m{i}", "provider": p} for i, p in enumerate(providers)]})


JOB_PROVIDER = {"job": {"spec": {"template": {"spec": {"containers": [], "restartPolicy": "Never"}}}}}
ALLOWED += [
    ("platformtenantanalysis", "platform-prometheus-and-a-job",
     analysis("AnalysisTemplate", {"prometheus": {"address": PROMETHEUS, "query": "up"}}, JOB_PROVIDER), QUERIES, {}),
    ("platformtenantanalysis", "job-run-without-a-prometheus", analysis("AnalysisRun", JOB_PROVIDER), {"prometheusAddresses": []}, {}),
]
DISALLOWED += [
    ("platformtenantanalysis", "web-and-cloudwatch-calls-from-the-controller",
     analysis("AnalysisRun", {"web": {"url": "http://169.254.169.254/latest/meta-data/"}}, {"cloudWatch": {"metricDataQueries": []}}),
     QUERIES, {}, ["AnalysisRun <error-rate> metric <m0> must not use the provider <web>", "metric <m1> must not use the provider <cloudWatch>"]),
    ("platformtenantanalysis", "prometheus-elsewhere-or-templated",
     analysis("AnalysisTemplate", {"prometheus": {"address": "http://vault.vault.svc:8200/v1/sys/mounts?", "query": "up"}},
              {"prometheus": {"address": "{{args.address}}", "query": "up"}}), QUERIES, {},
     ["must not query Prometheus at <http://vault.vault.svc:8200/v1/sys/mounts?>", "must not query Prometheus at <{{args.address}}>"]),
    ("platformtenantanalysis", "no-parameters-allow-no-prometheus",
     analysis("AnalysisTemplate", {"prometheus": {"address": PROMETHEUS, "query": "up"}}), None, {},
     [f"must not query Prometheus at <{PROMETHEUS}>; allowed: []"]),
]
# The controller reads Secrets in its own namespace only (components/argo_rollouts.py): no argument from a tenant's.
def with_args(obj: dict[str, Any], *args: dict[str, Any]) -> dict[str, Any]:
    return {**obj, "spec": {**obj["spec"], "args": list(args)}}


DISALLOWED += [
    ("platformtenantanalysis", "argument-from-a-secret", with_args(
        analysis("AnalysisTemplate", JOB_PROVIDER), {"name": "token", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}},
        {"name": "service", "value": "web"}), QUERIES, {}, ["AnalysisTemplate <error-rate> argument <token> must not come from the Secret <api>"]),
]
ALLOWED += [
    ("platformtenantanalysis", "arguments-with-values", with_args(analysis("AnalysisRun", JOB_PROVIDER), {"name": "service", "value": "web"}), QUERIES, {}),
]
# With the label-enforcing proxy's header (components/prometheus_query.py): exactly one, the namespace's own.
HEADER = "X-Platform-Namespace"
SCOPED = {**QUERIES, "namespaceHeader": HEADER}


def scoped(*headers: tuple[str, str]) -> dict[str, Any]:
    return {"prometheus": {"address": PROMETHEUS, "query": "up", "headers": [{"key": k, "value": v} for k, v in headers]}}


ALLOWED += [
    ("platformtenantanalysis", "prometheus-with-its-own-namespace-header", analysis("AnalysisRun", scoped((HEADER, "team-a-dev"))), SCOPED, {}),
]
DISALLOWED += [
    ("platformtenantanalysis", "prometheus-with-another-namespace-or-a-second-header",
     analysis("AnalysisTemplate", scoped((HEADER, "team-b-dev")), scoped((HEADER, "team-a-dev"), (HEADER.lower(), "team-b-dev")), scoped()),
     SCOPED, {}, [f"metric <m0> must send Prometheus exactly one header, <{HEADER}: team-a-dev>", "metric <m1> must send", "metric <m2> must send"]),
]


# Pods the platform can move off a node (tests/test_eviction_attacks.py): the autoscaler's and Karpenter's
# annotations, controllers it knows, grace periods a drain waits out; NFS only from the exports declared.
GRACE = {"maxTerminationGracePeriodSeconds": 600}
SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict"


def bare(obj: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """`obj` (a Pod) with no owner, and `annotations`."""
    metadata = {k: v for k, v in obj["metadata"].items() if k != "ownerReferences"}
    return {**obj, "metadata": {**metadata, **({"annotations": annotations} if annotations else {})}}


def pod_annotated(obj: dict[str, Any], annotations: dict[str, str]) -> dict[str, Any]:
    """A workload `obj` whose pod template carries `annotations`."""
    template = obj["spec"]["template"]
    return {**obj, "spec": {**obj["spec"], "template": {**template, "metadata": {**template["metadata"], "annotations": annotations}}}}


def syncer_copy(obj: dict[str, Any], user: str) -> dict[str, Any]:
    """The admission review of a virtual cluster's copy of its pod (owned by its Service, no controller), made by `user`."""
    made = bare(obj)
    made["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "Service", "name": "team-a-dev", "uid": "5e1f", "controller": False}]
    return {**review(made), "userInfo": {"username": user}}


NFS_EXCEPTION = {"allowedVolumeTypes": ["nfs"], "nfsExports": [{"server": "nas.corp.example.com", "path": "/exports/team-a"}]}


def nfs(server: str, path: str) -> dict[str, Any]:
    return workload("StatefulSet", pod_spec(volumes=[{"name": "share", "nfs": {"server": server, "path": path}}]))


ALLOWED += [
    ("platformpoddisruption", "grace-up-to-the-cap-from-a-deployment", workload("Deployment", pod_spec(terminationGracePeriodSeconds=600)),
     GRACE, {}),
    ("platformpoddisruption", "bare-pod-that-may-be-evicted", bare(pod(), {SAFE_TO_EVICT: "true"}), GRACE, {}),
    ("platformpoddisruption", "pod-update-keeping-the-annotation-it-was-created-with",
     annotated(pod(), {SAFE_TO_EVICT: "false"}), GRACE, {"operation": "UPDATE", "old_object": annotated(pod(), {SAFE_TO_EVICT: "false"})}),
    ("platformpodrestricted", "nfs-export-declared-and-below-it", workload("Deployment", pod_spec(volumes=[
        {"name": "a", "nfs": {"server": "nas.corp.example.com", "path": "/exports/team-a"}},
        {"name": "b", "nfs": {"server": "NAS.corp.example.com", "path": "/exports/team-a/reports/", "readOnly": True}}])), NFS_EXCEPTION, {}),
    ("platformtenantobjects", "disruption-budget-with-no-minimum", namespaced("policy/v1", "PodDisruptionBudget",
                                                                             spec={"minAvailable": "0%", "selector": {}}), OBJECTS, {}),
    ("platformtenantobjects", "disruption-budget-evicting-unhealthy-pods", namespaced("policy/v1", "PodDisruptionBudget", spec={
        "maxUnavailable": 1, "unhealthyPodEvictionPolicy": "AlwaysAllow", "selector": {}}), OBJECTS, {}),
]
DISALLOWED += [
    ("platformpoddisruption", "pinning-annotations-and-a-day-of-grace",
     pod_annotated(workload("Deployment", pod_spec(terminationGracePeriodSeconds=86400)),
                   {SAFE_TO_EVICT: "false", "karpenter.sh/do-not-disrupt": "true"}),
     GRACE, {}, [f'annotation {SAFE_TO_EVICT}: "false"', 'annotation karpenter.sh/do-not-disrupt: "true"',
                 "terminationGracePeriodSeconds above 600 (got 86400)"]),
    ("platformpoddisruption", "bare-pod-and-one-controlled-by-a-configmap",
     {**pod(), "metadata": {**pod()["metadata"], "ownerReferences": [
         {"apiVersion": "v1", "kind": "ConfigMap", "name": "mine", "uid": "7", "controller": True},
         {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "8", "controller": False}]}},
     GRACE, {}, ["Pod <web> has no controller that recreates it elsewhere"]),
    ("platformpoddisruption", "pod-update-adding-the-annotation-or-dropping-the-owner", bare(pod(), {SAFE_TO_EVICT: "false"}), GRACE,
     {"operation": "UPDATE", "old_object": pod()}, [f'annotation {SAFE_TO_EVICT}: "false"', "has no controller"]),
    ("platformpoddisruption", "finalizers-on-a-template-and-added-to-a-running-pod",
     {**pod(), "metadata": {**pod()["metadata"], "finalizers": ["batch.kubernetes.io/job-tracking", "example.com/hold"]}}, GRACE,
     {"operation": "UPDATE", "old_object": pod()}, ["must not set the finalizer <example.com/hold>"]),
    ("platformpoddisruption", "no-parameters-cap-at-kubernetes-default", workload("Job", pod_spec(terminationGracePeriodSeconds=31)), None, {},
     ["above 30 (got 31)"]),
    ("platformpodrestricted", "nfs-elsewhere-above-or-through-dots",
     workload("Deployment", pod_spec(volumes=[
         {"name": "other", "nfs": {"server": "nas.corp.example.com", "path": "/exports/team-b"}},
         {"name": "dots", "nfs": {"server": "nas.corp.example.com", "path": "/exports/team-a/../team-b"}},
         {"name": "sibling", "nfs": {"server": "nas.corp.example.com", "path": "/exports/team-ab"}},
         {"name": "host", "nfs": {"server": "10.0.0.9", "path": "/exports/team-a"}}])), NFS_EXCEPTION, {},
     ["volume <other> must not mount the NFS export <nas.corp.example.com:/exports/team-b>; allowed: nas.corp.example.com:/exports/team-a",
      "volume <dots>", "volume <sibling>", "volume <host>"]),
    ("platformtenantobjects", "disruption-budgets-counting-pods",
     namespaced("policy/v1", "PodDisruptionBudget", spec={"minAvailable": 2, "selector": {}}), OBJECTS, {},
     ["minAvailable 2 blocks node drains whenever its pods are that few"]),
    ("platformtenantobjects", "disruption-budget-keeping-unready-pods",
     namespaced("policy/v1", "PodDisruptionBudget", spec={"maxUnavailable": 1, "unhealthyPodEvictionPolicy": "IfHealthyBudget", "selector": {}}),
     OBJECTS, {}, ["unhealthyPodEvictionPolicy <IfHealthyBudget> keeps pods that never become ready"]),
    ("platformtenantobjects", "disruption-budget-with-a-percentage-minimum",
     namespaced("policy/v1", "PodDisruptionBudget", spec={"minAvailable": "050%", "selector": {}}), OBJECTS, {},
     ["minAvailable 50% blocks node drains whenever its pods are that few (a percentage rounds up); set maxUnavailable instead"]),
]


def test_a_budget_must_select_other_pods_than_its_namespaces_other_budgets() -> None:
    def budget(name: str, labels: dict[str, str], namespace: str = "team-a-dev") -> dict[str, Any]:
        obj = namespaced("policy/v1", "PodDisruptionBudget", name, spec={"maxUnavailable": 1, "selector": {"matchLabels": labels}})
        return {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}

    template = TEMPLATES["platformtenantobjects"]
    inventory = {"namespace": {ns: {"policy/v1": {"PodDisruptionBudget": {"web": budget("web", {"app": "web"}, ns)}}}
                               for ns in ("team-a-dev", "team-b-dev")}}
    for allowed in (budget("api", {"app": "api", "tier": "back"}), budget("web", {"app": "web", "track": "stable"}),
                    budget("front", {"tier": "front"}, "team-c-dev")):
        assert evaluate(template, review(allowed), OBJECTS, inventory) == [], allowed["metadata"]
    assert [v["msg"] for v in evaluate(template, review(budget("front", {"tier": "front"})), OBJECTS, inventory)] == [
        "PodDisruptionBudget <front> may select the pods of PodDisruptionBudget <web>: a pod two budgets select can never be "
        "evicted, which blocks node drains; give both the same label in matchLabels with different values"]
    assert evaluate(template, review(budget("all", {})), OBJECTS, inventory) != []


def test_only_a_namespaces_own_virtual_cluster_syncer_copies_pods_without_a_controller() -> None:
    template = TEMPLATES["platformpoddisruption"]
    assert evaluate(template, syncer_copy(pod(), "system:serviceaccount:team-a-dev:vc-team-a-dev"), GRACE) == []
    for user in ("system:serviceaccount:team-a-dev:vc-team-b-dev", "system:serviceaccount:team-b-dev:vc-team-a-dev", "alice"):
        assert [v["msg"] for v in evaluate(template, syncer_copy(pod(), user), GRACE)] == [
            'Pod <web> has no controller that recreates it elsewhere (a ReplicaSet, StatefulSet or Job), so the Cluster Autoscaler would '
            'never remove its node: run it from a Deployment, StatefulSet or Job, or annotate it '
            'cluster-autoscaler.kubernetes.io/safe-to-evict: "true" to let the autoscaler delete it'], user

def test_only_the_volume_binder_may_name_a_claims_volume() -> None:
    template = TEMPLATES["platformtenantobjects"]
    assert evaluate(template, bound_by("system:serviceaccount:kube-system:persistent-volume-binder"), OBJECTS) == []
    assert evaluate(template, bound_by("system:kube-controller-manager"), OBJECTS) == []
    assert [v["msg"] for v in evaluate(template, bound_by("alice"), OBJECTS)] == [
        "PersistentVolumeClaim <data> must not name the PersistentVolume <pvc-1234>; claims get volumes from their storage class"]
    # A bound claim's later updates (a resize) keep the name the binder set.
    assert evaluate(template, review(claim("pvc-1234"), "UPDATE", claim("pvc-1234")), OBJECTS) == []


@pytest.mark.parametrize(("template", "obj", "parameters", "options"),
                         [pytest.param(t, o, p, opts, id=f"{t}-{i}") for t, i, o, p, opts in ALLOWED])
def test_allowed(template: str, obj: dict[str, Any], parameters: dict[str, Any] | None, options: dict[str, Any]) -> None:
    assert check(template, obj, parameters, **options) == []


@pytest.mark.parametrize(("template", "obj", "parameters", "options", "fragments"),
                         [pytest.param(t, o, p, opts, f, id=f"{t}-{i}") for t, i, o, p, opts, f in DISALLOWED])
def test_disallowed(template: str, obj: dict[str, Any], parameters: dict[str, Any] | None, options: dict[str, Any],
                    fragments: list[str]) -> None:
    assert_messages(check(template, obj, parameters, **options), fragments)


def test_every_template_has_two_allowed_and_two_disallowed_cases() -> None:
    tenant_cases = {"platformtenantargoscope": (len(ARGO_ALLOWED), len(ARGO_DISALLOWED))}
    for name in TEMPLATES:
        allowed, disallowed = tenant_cases.get(name, (sum(c[0] == name for c in ALLOWED), sum(c[0] == name for c in DISALLOWED)))
        assert allowed >= 2 and disallowed >= 2, name


@pytest.mark.parametrize("kind", WORKLOAD_KINDS)
@pytest.mark.parametrize("template", POD_TEMPLATES)
def test_pod_policies_read_every_workload_kind(template: str, kind: str) -> None:
    # One container breaking every pod policy at once, so each template must find it in `kind`.
    bad = container(image="nginx", resources=None, livenessProbe=None, securityContext={"privileged": True, "capabilities": {"add": ["SYS_ADMIN"]}},
                    imagePullPolicy=None)
    assert check(template, workload(kind, pod_spec()), TENANT_REGISTRIES) == []
    found = check(template, workload(kind, pod_spec(bad, terminationGracePeriodSeconds=86400)), TENANT_REGISTRIES)
    # A Job's and a CronJob's pods run to completion (restartPolicy Never): no probe is required of them.
    run_to_completion = template == "platformrequiredprobes" and kind in ("Job", "CronJob")
    assert (found == []) == run_to_completion, found


# --- tenant ArgoCD scope ------------------------------------------------------------------------

ARGO = {
    "project": ["team-a"],
    "namespaces": ["team-a-dev", "team-a-prod"],
    "clusterLabels": {"platform.io/tenant-team-a": "true"},
    "clusters": ["dev", "prod", "https://dev.k8s.example.com"],
}
CLUSTER_SELECTOR_LABELS = {"platform.io/tenant-team-a": "true", "platform.io/environment": "dev"}


def application(project: str = "team-a", **destination: str) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "web", "namespace": "argocd", "labels": {"platform.io/tenant": "team-a"}},
        "spec": {
            "project": project,
            "source": {"repoURL": "https://gitlab.example.com/team-a/ops.git", "path": "web", "targetRevision": "main"},
            "destination": destination if destination else {"name": "dev", "namespace": "team-a-dev"},
        },
    }


def clusters_generator(labels: dict[str, str] | None = CLUSTER_SELECTOR_LABELS) -> dict[str, Any]:
    return {"clusters": {"selector": {"matchLabels": labels}} if labels is not None else {}}


GIT_GENERATOR = {"git": {"repoURL": "https://gitlab.example.com/team-a/ops.git", "revision": "main", "directories": [{"path": "apps/*"}]}}


def application_set(generators: list[dict[str, Any]], destination: dict[str, str] | None = None, project: str = "team-a",
                    **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet",
        "metadata": {"name": "web", "namespace": "argocd", "labels": {"platform.io/tenant": "team-a"}},
        "spec": {
            "generators": generators,
            "template": {
                "metadata": {"name": "web-{{name}}"},
                "spec": {
                    "project": project,
                    "source": {"repoURL": "https://gitlab.example.com/team-a/ops.git", "path": "web", "targetRevision": "main"},
                    "destination": destination or {"name": "{{name}}", "namespace": "team-a-dev"},
                },
            },
            **spec,
        },
    }


ARGO_ALLOWED: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("application-by-name", application(), ARGO),
    ("application-by-server", application(server="https://dev.k8s.example.com", namespace="team-a-prod"), ARGO),
    ("appset-clusters-generator-with-tenant-labels", application_set([clusters_generator()]), ARGO),
    ("appset-go-template-matrix-git-by-clusters",
     application_set([{"matrix": {"generators": [GIT_GENERATOR, clusters_generator()]}}], {"name": "{{.name}}", "namespace": "team-a-dev"},
                     goTemplate=True), ARGO),
    ("appset-list-generator-literal-destination",
     application_set([{"list": {"elements": [{"env": "prod"}]}}], {"name": "prod", "namespace": "team-a-prod"}), ARGO),
    ("appset-generator-templates-within-scope-or-empty",
     application_set([{"matrix": {"generators": [
         {"clusters": {**clusters_generator()["clusters"], "template": {
             "metadata": {}, "spec": {"project": "team-a", "destination": {"namespace": "team-a-prod"}}}}},
         {"list": {"elements": [{"env": "dev"}], "template": {"metadata": {}, "spec": {"project": "", "destination": {}}}}}]}}]), ARGO),
]

ARGO_DISALLOWED: list[tuple[str, dict[str, Any], dict[str, Any], list[str]]] = [
    ("application-default-project", application(project="default"), ARGO,
     ["Application <web> spec.project <default> is not one of the tenant's AppProjects"]),
    ("application-other-namespace-and-in-cluster-server",
     application(server="https://kubernetes.default.svc", namespace="kube-system"), ARGO,
     ["spec.destination.namespace <kube-system>", "spec.destination.server <https://kubernetes.default.svc>"]),
    ("application-without-cluster", application(namespace="team-a-dev"), ARGO, ["spec.destination must set name or server"]),
    ("application-cannot-use-placeholder", application(name="{{name}}", namespace="team-a-dev"), ARGO,
     ["spec.destination.name <{{name}}>"]),
    ("appset-clusters-generator-without-selector", application_set([clusters_generator(None)]), ARGO,
     ["spec.generators[0].clusters must select clusters with selector.matchLabels including",
      "spec.template.spec.destination.name <{{name}}>"]),
    ("appset-clusters-generator-wrong-label-value",
     application_set([clusters_generator({"platform.io/tenant-team-a": "false"})]), ARGO,
     ["spec.generators[0].clusters", "destination.name <{{name}}>"]),
    ("appset-nested-clusters-generator-without-labels",
     application_set([{"matrix": {"generators": [GIT_GENERATOR, {"merge": {"mergeKeys": ["server"], "generators": [
         clusters_generator({"env": "dev"}), {"list": {"elements": []}}]}}]}}]), ARGO,
     ["spec.generators[0].matrix.generators[1].merge.generators[0].clusters", "destination.name <{{name}}>"]),
    ("appset-list-generator-beside-clusters-generator-could-name-any-cluster",
     application_set([clusters_generator(), {"list": {"elements": [{"name": "control-plane"}]}}]), ARGO,
     ["spec.template.spec.destination.name <{{name}}>"]),
    ("appset-generator-template-overrides-project",
     application_set([{"list": {"elements": [{"env": "prod"}], "template": {"metadata": {}, "spec": {
         "project": "default", "destination": {}}}}}],
                     {"name": "prod", "namespace": "team-a-prod"}), ARGO,
     ["spec.generators[0].list.template.spec.project <default>"]),
    ("appset-template-patch", application_set([clusters_generator()], templatePatch='spec: {project: "default"}'), ARGO,
     ["must not set spec.templatePatch"]),
    ("appset-templated-server-and-namespace",
     application_set([clusters_generator()], {"server": "{{server}}", "namespace": "{{metadata.labels.ns}}"}), ARGO,
     ["destination.server <{{server}}>", "destination.namespace <{{metadata.labels.ns}}>"]),
    ("appset-clusters-generator-but-tenant-has-no-labels", application_set([clusters_generator()]), {**ARGO, "clusterLabels": {}},
     ["clusters is not allowed: the tenant has no cluster labels", "destination.name <{{name}}>"]),
    ("no-parameters-fails-closed", application(), {}, ["spec.project", "destination.namespace", "destination.name"]),
]


@pytest.mark.parametrize(("obj", "parameters"), [pytest.param(o, p, id=i) for i, o, p in ARGO_ALLOWED])
def test_argo_scope_allowed(obj: dict[str, Any], parameters: dict[str, Any]) -> None:
    assert check("platformtenantargoscope", obj, parameters) == []


@pytest.mark.parametrize(("obj", "parameters", "fragments"), [pytest.param(o, p, f, id=i) for i, o, p, f in ARGO_DISALLOWED])
def test_argo_scope_disallowed(obj: dict[str, Any], parameters: dict[str, Any], fragments: list[str]) -> None:
    assert_messages(check("platformtenantargoscope", obj, parameters), fragments)


# --- the Gatekeeper library's samples, run against our templates ---------------------------------

def _translate(library: str, parameters: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """Our template and parameters for a library policy and its constraint's parameters.

    Where our template hard-codes what a library parameter sets, assert the sample asks for the same.
    """
    if library == "allowedrepos":
        return "platformallowedregistries", {"registries": parameters["repos"]}
    if library == "disallowedtags":
        assert parameters["tags"] == ["latest"]  # exemptImages: we exempt platform namespaces, never images
        return "platformdisallowedtags", None
    if library == "containerlimits":  # cpu/memory maximums: we require requests and limits, not their size
        return "platformcontainerresources", None
    if library == "requiredprobes":
        assert sorted(parameters["probes"]) == ["livenessProbe", "readinessProbe"]
        assert set(parameters["probeTypes"]) <= {"exec", "grpc", "httpGet", "tcpSocket"}
        return "platformrequiredprobes", None
    if library in ("privileged-containers", "host-namespaces"):  # exemptImages: see disallowedtags
        return "platformpodsecurity", None
    raise AssertionError(f"no platform template for library policy {library}")


# Library samples our policy decides differently on purpose: (library, sample file) -> (we allow it, why).
UPSTREAM_DIFFERENCES: dict[tuple[str, str], tuple[bool, str]] = {
    ("disallowedtags", "example_exempt_image_w_disallowed_tag.yaml"): (
        False, "no image exemptions: :latest is rejected for every image; platform namespaces are exempt by name instead"),
    ("privileged-containers", "example_allowed_exempt.yaml"): (
        False, "no image exemptions: a privileged container is rejected whatever its image"),
    ("containerlimits", "container-must-have-limits/example_allowed.yaml"): (
        False, "requests are required as well as limits, and the sample sets limits only"),
    ("containerlimits", "container-ignore-cpu-limits/example_allowed.yaml"): (
        False, "requests and a CPU limit are required; the sample sets a memory limit only"),
}


def _library_cases() -> list[Any]:
    cases = []
    for suite_file in sorted(LIBRARY.glob("*/suite.yaml")):
        library = suite_file.parent.name
        suite = yaml.safe_load(suite_file.read_text())
        for test in suite["tests"]:
            constraint = yaml.safe_load((suite_file.parent / test["constraint"]).read_text())
            for case in test["cases"]:
                key = next((k for k in UPSTREAM_DIFFERENCES if k[0] == library and case["object"].endswith(k[1])), None)
                cases.append(pytest.param(library, constraint, suite_file.parent / case["object"], case["assertions"], key,
                                          id=f"{test['name']}-{case['name']}"))
    return cases


def _library_review(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    if doc["kind"] == "AdmissionReview":  # update samples: an admission request, not an object
        return review(doc["request"]["object"], operation=doc["request"]["operation"])
    return review(doc)


def _count(messages: list[str], assertion: dict[str, Any]) -> tuple[int, Any]:
    """What a gator assertion counts in `messages` and what it expects (True: at least one)."""
    matching = [m for m in messages if re.search(assertion["message"], m)] if "message" in assertion else messages
    expected = {"yes": True, "no": 0, True: True, False: 0}.get(assertion["violations"], assertion["violations"])
    return len(matching), expected


@pytest.mark.parametrize(("library", "constraint", "sample", "assertions", "difference"), _library_cases())
def test_gatekeeper_library_sample(library: str, constraint: dict[str, Any], sample: Path, assertions: list[dict[str, Any]],
                                   difference: tuple[str, str] | None) -> None:
    template, parameters = _translate(library, constraint["spec"].get("parameters", {}))
    found = evaluate(TEMPLATES[template], _library_review(sample), parameters)
    messages = [v["msg"] for v in found]
    assert all(m.strip() for m in messages)
    if difference is not None:
        we_allow, _why = UPSTREAM_DIFFERENCES[difference]
        assert (messages == []) is we_allow, messages
        return
    for assertion in assertions:  # as gator checks a suite: counts, optionally of messages matching a regex
        count, expected = _count(messages, assertion)
        assert count >= 1 if expected is True else count == expected, (assertion, messages)


def test_library_samples_cover_each_policy_with_allowed_and_disallowed() -> None:
    upstream_verdicts: dict[str, set[bool]] = {}
    used_differences = set()
    for param in _library_cases():
        library, _constraint, _sample, assertions, difference = param.values
        upstream_verdicts.setdefault(library, set()).add(all(_count([], a)[1] == 0 for a in assertions))
        used_differences.add(difference)
    libraries = ["allowedrepos", "containerlimits", "disallowedtags", "host-namespaces", "privileged-containers", "requiredprobes"]
    assert upstream_verdicts == {library: {True, False} for library in libraries}
    assert set(UPSTREAM_DIFFERENCES) <= used_differences, "an UPSTREAM_DIFFERENCES entry names no library sample"


# --- the templates as Kubernetes objects ---------------------------------------------------------

def _closed(schema: Any) -> Any:
    """`schema` with unknown fields rejected wherever the API server would prune them silently."""
    if isinstance(schema, list):
        return [_closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {k: _closed(v) for k, v in schema.items()}
    if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        closed["additionalProperties"] = False
    return closed


CONSTRAINT_TEMPLATE_SCHEMA = _closed(json.loads((LIBRARY / "constrainttemplate_v1.json").read_text()))


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_template_is_a_valid_constraint_template(name: str) -> None:
    template = TEMPLATES[name]
    jsonschema.validate(template, CONSTRAINT_TEMPLATE_SCHEMA)
    assert template["apiVersion"] == "templates.gatekeeper.sh/v1" and template["kind"] == "ConstraintTemplate"
    kind = template["spec"]["crd"]["spec"]["names"]["kind"]
    assert name == kind.lower() and kind.startswith("Platform")  # Gatekeeper requires name == lowercase kind
    schema = template["spec"]["crd"]["spec"]["validation"]["openAPIV3Schema"]
    assert schema["type"] == "object"
    jsonschema.Draft7Validator.check_schema(schema)
    [target] = template["spec"]["targets"]
    assert target["target"] == "admission.k8s.gatekeeper.sh"
    assert target["rego"].startswith(f"package {name}\n\nimport rego.v1\n")
    assert re.search(r"^violation contains \{\"msg\": msg\} if \{$", target["rego"], re.MULTILINE)
    assert all(re.match(r"package lib\.[\w.]+\n\nimport rego\.v1\n", lib) for lib in target.get("libs", []))


def test_pod_templates_share_one_copy_of_the_pod_library() -> None:
    libs = {name: TEMPLATES[name]["spec"]["targets"][0].get("libs") for name in TEMPLATES}
    assert {name for name, lib in libs.items() if lib} == set(POD_TEMPLATES)
    assert len({tuple(libs[name]) for name in POD_TEMPLATES}) == 1, "the pod library differs between templates; keep them identical"
    # The kinds the library reads are the kinds the constraints match.
    lib = libs[POD_TEMPLATES[0]][0]
    read = set(re.findall(r'^\t\["([\w.]*)", "(\w+)"\]:', lib, re.MULTILINE))
    assert read == {(g, k) for group in POD_KINDS for g in group["apiGroups"] for k in group["kinds"]}


def test_templates_are_loaded_in_a_stable_order_as_fresh_copies() -> None:
    first = templates()
    assert [t["metadata"]["name"] for t in first] == sorted(TEMPLATES)
    first[0]["metadata"]["name"] = "changed"
    assert templates()[0]["metadata"]["name"] == sorted(TEMPLATES)[0]


# --- constraints --------------------------------------------------------------------------------

def _template_for(constraint: dict[str, Any]) -> dict[str, Any]:
    [template] = [t for t in TEMPLATES.values() if t["spec"]["crd"]["spec"]["names"]["kind"] == constraint["kind"]]
    return template


def _all_constraints() -> list[dict[str, Any]]:
    return [*cluster_constraints([HARBOR], TENANT_SELECTOR, PLATFORM_NAMESPACES),
            *tenant_namespace_constraints("team-a-dev", [f"{HARBOR}/team-a", f"{HARBOR}/approved"], ["alice"], ["team-a-developers"],
                                          [TENANT_HOST]),
            tenant_argo_constraint("team-a", ARGO["project"], ARGO["namespaces"], ARGO["clusterLabels"], ARGO["clusters"], argocd_namespace="argocd"),
            AGENT_CONSTRAINT]


def test_constraints_cover_every_template_and_validate_against_its_schema() -> None:
    constraints = _all_constraints()
    assert sorted({c["kind"].lower() for c in constraints}) == sorted(TEMPLATES)
    for constraint in constraints:
        template = _template_for(constraint)
        assert constraint["apiVersion"] == "constraints.gatekeeper.sh/v1beta1"
        assert constraint["spec"]["enforcementAction"] == "deny"
        assert constraint["spec"]["match"]["kinds"], "match kinds must be explicit"
        jsonschema.validate(constraint["spec"].get("parameters", {}), template["spec"]["crd"]["spec"]["validation"]["openAPIV3Schema"])


def test_cluster_constraints_scope() -> None:
    by_name = {c["metadata"]["name"]: c["spec"]["match"] for c in cluster_constraints([HARBOR], TENANT_SELECTOR, PLATFORM_NAMESPACES)}
    everywhere = {"platform-allowed-registries", "platform-disallowed-tags", "platform-container-resources"}
    tenant_only = {"platform-required-probes", "platform-pod-security", "platform-pod-disruption", "platform-no-cluster-admin-binding"}
    assert set(by_name) == everywhere | tenant_only | {"platform-pod-restricted"}
    for name, match in by_name.items():
        assert match["excludedNamespaces"] == list(PLATFORM_NAMESPACES)
        assert ("namespaceSelector" in match) == (name not in everywhere)
        if name in tenant_only:
            assert match["namespaceSelector"] == TENANT_SELECTOR
        expected_kinds = ["RoleBinding"] if name == "platform-no-cluster-admin-binding" else WORKLOAD_KINDS
        assert [k for group in match["kinds"] for k in group["kinds"]] == expected_kinds
    # Restricted holds every tenant namespace but those granted the baseline exception.
    assert by_name["platform-pod-restricted"]["namespaceSelector"] == {
        **TENANT_SELECTOR, "matchExpressions": [{"key": POD_SECURITY_LABEL, "operator": "NotIn", "values": ["baseline"]}]}


def test_tenant_namespace_constraints() -> None:
    registries, subjects, hosts, objects, analyses = tenant_namespace_constraints(
        "team-a-dev", [f"{HARBOR}/team-a", f"{HARBOR}/approved"], ["bob", "alice"], ["team-a-owners"], [TENANT_HOST],
        prometheus_addresses=[PROMETHEUS], prometheus_header=HEADER)
    assert analyses["spec"]["match"] == {"kinds": ANALYSIS_KINDS, "namespaces": ["team-a-dev"]}
    assert analyses["spec"]["parameters"] == SCOPED
    assert hosts["spec"]["match"] == {"kinds": INGRESS_KINDS, "namespaces": ["team-a-dev"]}
    assert hosts["spec"]["parameters"] == HOSTS
    assert objects["spec"]["match"] == {"kinds": TENANT_OBJECT_KINDS, "namespaces": ["team-a-dev"]}
    assert "parameters" not in objects["spec"]
    assert registries["spec"]["match"] == {"kinds": POD_KINDS, "namespaces": ["team-a-dev"]}
    assert registries["spec"]["parameters"] == {"registries": [f"{HARBOR}/team-a", f"{HARBOR}/approved"], "requirePullAlways": True}
    assert subjects["spec"]["match"]["namespaces"] == ["team-a-dev"]
    assert subjects["spec"]["parameters"] == {"users": ["alice", "bob"], "groups": ["team-a-owners"],
                                              "serviceAccountNamespaces": ["team-a-dev"]}


def test_constraint_parameters_drive_the_templates() -> None:
    # The parameter names the program writes are the ones the Rego reads: a compliant object
    # passes and a non-compliant one fails under each constraint's own parameters.
    good_pod = pod()
    bad_pod = pod(container(image="docker.io/library/nginx:latest", resources=None, readinessProbe=None,
                            securityContext={"privileged": True, "runAsUser": 0}), terminationGracePeriodSeconds=86400)
    good = {"RoleBinding": role_binding("ClusterRole", "view", GROUP), "Application": application(),
            "Ingress": ingress({"host": TENANT_HOST}), "PersistentVolumeClaim": claim(), "AnalysisTemplate": analysis("AnalysisTemplate", JOB_PROVIDER)}
    bad = {"RoleBinding": role_binding("ClusterRole", "cluster-admin", {**GROUP, "name": "system:authenticated"}),
           "Application": application(project="default"), "Ingress": ingress({"host": "team-b.dev.example.com"}),
           "PersistentVolumeClaim": claim("pv-1"), "AnalysisTemplate": analysis("AnalysisTemplate", {"web": {"url": "http://x"}})}
    # The node agent's: its own pods, requested with its token.
    agent = {"PlatformNodeAgentPods": (agent_pod(), agent_pod(lambda s, c: c.update(image="nginx:1.27")), AS_AGENT)}
    for constraint in _all_constraints():
        template, parameters = _template_for(constraint), constraint["spec"].get("parameters")
        kind = constraint["spec"]["match"]["kinds"][0]["kinds"][0]
        good_one, bad_one, options = agent.get(constraint["kind"], (good.get(kind, good_pod), bad.get(kind, bad_pod), {}))
        assert violations(template, good_one, parameters, **options) == [], constraint["kind"]
        assert violations(template, bad_one, parameters, **options) != [], constraint["kind"]


def test_tenant_argo_constraint() -> None:
    constraint = tenant_argo_constraint("team-a", ["team-a"], ["team-a-dev"], {"platform.io/tenant-team-a": "true"}, ["dev"], argocd_namespace="argocd")
    assert constraint["metadata"]["name"] == "tenant-team-a-argo-scope"
    assert constraint["spec"]["match"] == {
        "kinds": [{"apiGroups": ["argoproj.io"], "kinds": ["Application", "ApplicationSet"]}],
        "namespaces": ["argocd"],
        "labelSelector": {"matchLabels": {"platform.io/tenant": "team-a"}},
    }
    assert constraint["spec"]["parameters"] == {
        "project": ["team-a"], "namespaces": ["team-a-dev"], "clusterLabels": {"platform.io/tenant-team-a": "true"}, "clusters": ["dev"]}


@pytest.mark.parametrize(("registries", "selector"), [
    ([], TENANT_SELECTOR),
    (["https://harbor.example.com"], TENANT_SELECTOR),
    (["harbor.example.com/*"], TENANT_SELECTOR),
    ([HARBOR], {}),
])
def test_cluster_constraints_reject_bad_arguments(registries: list[str], selector: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        cluster_constraints(registries, selector, PLATFORM_NAMESPACES)


def test_tenant_argo_constraint_rejects_a_bad_tenant_name() -> None:
    with pytest.raises(ValueError, match="DNS label"):
        tenant_argo_constraint("Team_A", ["team-a"], [], {}, [], argocd_namespace="argocd")


def test_platform_namespaces() -> None:
    assert len(set(PLATFORM_NAMESPACES)) == len(PLATFORM_NAMESPACES)
    assert {"kube-system", "gatekeeper-system", "argocd", "harbor", "vault"} <= set(PLATFORM_NAMESPACES)
    assert all(re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", ns) for ns in PLATFORM_NAMESPACES)


# --- mutators -------------------------------------------------------------------------------------

def _assign(mutation: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
    """Gatekeeper's Assign for a location `a.b.list[name: *].field`: set it on every list item."""
    obj = copy.deepcopy(obj)
    path, field = mutation["spec"]["location"].rsplit(".", 1)
    *parents, listed = path.split(".")
    assert listed.endswith("[name: *]")
    node = obj
    for part in parents:
        node = node.get(part, {})
    for item in node.get(listed.removesuffix("[name: *]"), []):
        item[field] = mutation["spec"]["parameters"]["assign"]["value"]
    return obj


def test_pull_always_mutators_cover_every_workload_kind_and_satisfy_the_constraint() -> None:
    from tests.validation import custom_resource_errors

    mutations = cluster_mutations(TENANT_SELECTOR, PLATFORM_NAMESPACES)
    for mutation in mutations:
        assert custom_resource_errors(mutation) == [], mutation["metadata"]["name"]
        assert mutation["spec"]["match"]["namespaceSelector"] == TENANT_SELECTOR
        assert mutation["spec"]["match"]["excludedNamespaces"] == list(PLATFORM_NAMESPACES)
    covered = {(a["groups"][0], k) for m in mutations for a in m["spec"]["applyTo"] for k in a["kinds"]}
    assert covered == {(g, k) for group in POD_KINDS for g in group["apiGroups"] for k in group["kinds"]}
    for kind in WORKLOAD_KINDS:
        obj = workload(kind, pod_spec(container(imagePullPolicy="IfNotPresent"), initContainers=[init_container(imagePullPolicy=None)]))
        assert check("platformallowedregistries", obj, TENANT_REGISTRIES) != []
        for mutation in mutations:
            if any(kind in a["kinds"] for a in mutation["spec"]["applyTo"]):
                obj = _assign(mutation, obj)
        assert check("platformallowedregistries", obj, TENANT_REGISTRIES) == [], kind
