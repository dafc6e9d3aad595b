"""An attacker's review of the delivery path (ArgoCD, promotion through Git) and of what the delivery
machinery, a workload or a CI job can reach on the network. Each test is one attempt by a member of
tenant `payments` (push rights to its app and ops repositories, merge-request author, its pods and CI
jobs), made against what the program really creates: the plans of both stacks, the Helm-rendered
objects, and Kubernetes' NetworkPolicy rules as `Network` evaluates them. Each must fail for the
attacker.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from platformctl.render import Render, read_stack_file, render_plan
from policy.labels import TENANT_NAMESPACE_LABEL
from stacks.config import ConfigError, load_platform_config
from tests.test_config import DEV, PROD, _problems, _write
from tests.test_gatekeeper_plan import selector_matches
from tests.test_gitlab_rails_secret import rendered
from tests.test_network import Plan

NETWORK_POLICY = "NetworkPolicy"
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")
JOBS = ("Job", "CronJob")  # their pods too: a job runs what its image and arguments say, with the same network
IMDS = ipaddress.ip_address("169.254.169.254")
# Where a pod's address may come from (an ipBlock of these may hold pods): private ranges and CGNAT.
POD_RANGES = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")]
# The cluster DNS every cluster runs (not in the plan): kube-system's CoreDNS, as the runner's policy names it.
CLUSTER_DNS_LABELS = {"k8s-app": "kube-dns"}
DNS = "kube-system/CoreDNS"


@dataclass(frozen=True)
class Pod:
    what: str  # <namespace>/<Kind>/<name> of what runs it
    namespace: str
    labels: dict[str, str]
    ports: tuple[tuple[str | None, int, str], ...]  # (name, number, protocol) of every container port


class Network:
    """One cluster of a plan: its Namespaces, pods and NetworkPolicies (declared by the program or
    rendered by a release), and whether Kubernetes lets a connection through them."""

    def __init__(self, plan: dict[str, Any], cluster: str):
        objects: list[tuple[dict[str, Any], str | None]] = []  # (object, its release's namespace)
        for r in plan["resources"]:
            if r.get("cluster") == cluster and r["type"].startswith("kubernetes:"):
                # An object the program names by its resource alone (Pulumi's auto-name) goes by that name.
                inputs = r["inputs"]
                objects.append((inputs if (inputs.get("metadata") or {}).get("name") else
                                {**inputs, "metadata": {**(inputs.get("metadata") or {}), "name": r["name"]}}, None))
                objects += [(o, r["inputs"].get("namespace")) for o in r.get("rendered") or []]

        def namespace_of(o: dict[str, Any], default: str | None) -> str:
            return (o.get("metadata") or {}).get("namespace") or default or "default"

        self.namespaces = {"kube-system": {}, **{o["metadata"]["name"]: o["metadata"].get("labels") or {}
                                                for o, _ in objects if o.get("kind") == "Namespace"}}
        self.policies = [(namespace_of(o, ns), o["spec"]) for o, ns in objects if o.get("kind") == NETWORK_POLICY]
        self.pods = [Pod(DNS, "kube-system", CLUSTER_DNS_LABELS, (("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")))]
        for o, ns in objects:
            template = (o.get("spec") or {}).get("template") if o.get("kind") in WORKLOADS + JOBS else None
            if o.get("kind") == "CronJob":
                template = o["spec"]["jobTemplate"]["spec"]["template"]
            if template is not None and not template["spec"].get("hostNetwork"):
                ports = tuple((p.get("name"), p["containerPort"], p.get("protocol", "TCP"))
                              for c in template["spec"]["containers"] for p in c.get("ports") or [])
                namespace = namespace_of(o, ns)
                self.pods.append(Pod(f"{namespace}/{o['kind']}/{o['metadata']['name']}", namespace, (template.get("metadata") or {}).get("labels") or {}, ports))
            elif o.get("kind") == "Cluster" and o.get("apiVersion", "").startswith("postgresql.cnpg.io/"):
                # CloudNativePG's instances (one pod for them all): labelled with their Cluster's name and role, PostgreSQL
                # on 5432, the exporter on 9187, the instance manager's status on 8000 (v1.30.0 pkg/specs/pods.go:262-277, 546-548).
                self.pods.append(Pod(f"{namespace_of(o, ns)}/Cluster/{o['metadata']['name']}", namespace_of(o, ns),
                                     {"cnpg.io/cluster": o["metadata"]["name"], "cnpg.io/podRole": "instance"},
                                     (("postgresql", 5432, "TCP"), ("metrics", 9187, "TCP"), ("status", 8000, "TCP"))))

    def pod(self, what: str) -> Pod:
        [found] = [p for p in self.pods if p.what == what]
        return found

    def _peer_admits(self, peer: dict[str, Any], policy_namespace: str, other: Pod | Any) -> bool:
        if "ipBlock" in peer:
            block = peer["ipBlock"]
            if isinstance(other, Pod):  # a pod's address may be in any block holding a pod range (excepts aside: the attacker's side)
                return any(ipaddress.ip_network(block["cidr"]).overlaps(r) for r in POD_RANGES)
            return other in ipaddress.ip_network(block["cidr"]) and not any(other in ipaddress.ip_network(e) for e in block.get("except", []))
        if not isinstance(other, Pod):
            return False  # pod and namespace selectors hold pods only
        if "namespaceSelector" in peer:
            labels = {**self.namespaces.get(other.namespace, {}), "kubernetes.io/metadata.name": other.namespace}
            if not selector_matches(peer["namespaceSelector"], labels):
                return False
        elif other.namespace != policy_namespace:
            return False
        return selector_matches(peer.get("podSelector") or {}, other.labels)

    @staticmethod
    def _port_admits(ports: list[dict[str, Any]] | None, target: Pod | Any, port: int, protocol: str) -> bool:
        def one(p: dict[str, Any]) -> bool:
            if p.get("protocol", "TCP") != protocol:
                return False
            if "port" not in p:
                return True
            if isinstance(p["port"], str):  # a named port: the target's container port of that name
                return isinstance(target, Pod) and (p["port"], port, protocol) in target.ports
            return p["port"] <= port <= p.get("endPort", p["port"])
        return not ports or any(one(p) for p in ports)

    def selecting(self, pod: Pod, direction: str) -> list[tuple[str, dict[str, Any]]]:
        """The policies (namespace, spec) that hold `pod`'s traffic of `direction` ("Ingress", "Egress")."""
        return [(ns, spec) for ns, spec in self.policies if ns == pod.namespace and selector_matches(spec["podSelector"], pod.labels)
                and direction in spec.get("policyTypes", ["Ingress", *(["Egress"] if "egress" in spec else [])])]

    def _admitted(self, direction: str, pod: Pod, other: Pod | Any, port: int, protocol: str, target: Pod | Any) -> bool:
        """Whether `pod`'s policies of `direction` (Egress: `other` is the target; Ingress: the source) let it through."""
        key, peers = ("egress", "to") if direction == "Egress" else ("ingress", "from")
        selecting = self.selecting(pod, direction)
        return not selecting or any(
            self._port_admits(rule.get("ports"), target, port, protocol)
            and (not rule.get(peers) or any(self._peer_admits(peer, ns, other) for peer in rule[peers]))
            for ns, spec in selecting for rule in spec.get(key) or [])

    def reaches(self, source: Pod, target: Pod | Any, port: int, protocol: str = "TCP") -> bool:
        """Kubernetes lets `source` connect to `target` (a pod, or an address outside the cluster) on `port`."""
        return self._admitted("Egress", source, target, port, protocol, target) and (
            not isinstance(target, Pod) or self._admitted("Ingress", target, source, port, protocol, target))

    def takes(self, target: Pod, address: Any, port: int, protocol: str = "TCP") -> bool:
        """`target`'s ingress policies admit a connection from `address`, outside the pod network (a node, the API server)."""
        return self._admitted("Ingress", target, address, port, protocol, target)

    def reachable(self, source: Pod) -> list[tuple[str, int]]:
        """Every (pod, port) of the cluster `source` can connect to, itself aside."""
        return sorted((pod.what, number) for pod in self.pods if pod != source
                      for _, number, protocol in pod.ports if self.reaches(source, pod, number, protocol))


# --- ArgoCD's repo-server: what a tenant's ops repository makes it fetch -----------------------------

REPO_SERVER = "argocd/Deployment/argocd-repo-server"
CONTROLLER = "argocd/StatefulSet/argocd-application-controller"
TRAEFIK = "traefik/Deployment/traefik"  # the platform's ingress controller
# What the repo-server needs: the cluster DNS, the ingress controller (GitLab over SSH, GitLab and
# Harbor over HTTPS: Traefik's ssh and websecure container ports) and ArgoCD's Redis (its cache).
REPO_SERVER_NEEDS = {
    "dev": [("argocd/Deployment/argocd-redis", 6379), (DNS, 53), (DNS, 53), (TRAEFIK, 2222), (TRAEFIK, 8443)],
    "prod": [("argocd/Deployment/argocd-redis-ha-haproxy", 6379), (DNS, 53), (DNS, 53), (TRAEFIK, 2222), (TRAEFIK, 8443)],
}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_a_tenants_ops_repository_cannot_make_the_repo_server_fetch_from_platform_endpoints(renders: dict[str, Render], stack: str) -> None:
    """A tenant's ops repository decides what ArgoCD's repo-server fetches: a Helm dependency's
    `repository:` URL, a Kustomize remote base. Pointed at an in-cluster endpoint that trusts its
    network (Vault's listeners, Gitaly, GitLab's Redis and PostgreSQL, Harbor's core and registry,
    OpenUnison, the webhooks), the request comes from the control plane's ArgoCD namespace and its
    errors, which quote the answer, show in the tenant's Application. The repo-server reaches what
    it needs and nothing else."""
    network = Network(renders[stack].plan, "control-plane")
    reachable = network.reachable(network.pod(REPO_SERVER))
    extra = [f"{what}:{port}" for what, port in reachable if (what, port) not in REPO_SERVER_NEEDS[stack]]
    assert not extra, f"the repo-server reaches {', '.join(extra)}"
    assert reachable == REPO_SERVER_NEEDS[stack]


def _without(plan: dict[str, Any], name: str) -> dict[str, Any]:
    return {**plan, "resources": [r for r in plan["resources"] if r["name"] != name]}


def test_without_its_egress_policy_the_repo_server_reaches_the_webhooks(renders: dict[str, Render]) -> None:
    """The walker sees the hole the policy closes (so the test above can fail), and honours the ingress
    policies: OpenUnison and Vault take connections from the ingress controller (and Vault from its
    own namespace) only, GitLab's pods from their namespace and the ingress controller's routes only."""
    network = Network(_without(renders["dev"].plan, "argocd-repo-server-egress"), "control-plane")
    reachable = network.reachable(network.pod(REPO_SERVER))
    assert {("gatekeeper-system/Deployment/gatekeeper-controller-manager", 8443), ("cert-manager/Deployment/cert-manager-webhook", 10250)} <= set(reachable)
    assert not {("openunison/Deployment/openunison-orchestra", 8080), ("vault/StatefulSet/vault", 8201),
                ("gitlab/StatefulSet/gitlab-gitaly", 8075), ("gitlab/Cluster/gitlab-postgres", 5432)} & set(reachable)


def _subnet_address(plan: dict[str, Any], subnet: str, host: int = 10) -> Any:
    [cidr] = [r["inputs"]["cidrBlock"] for r in plan["resources"] if r["type"] == "aws:ec2/subnet:Subnet" and r["name"] == subnet]
    return ipaddress.ip_network(cidr)[host]


def nlb_eips(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The EIPs the control plane's Ingress component holds: its NLB's addresses (EKS; none elsewhere)."""
    return [r for r in plan["resources"] if r["type"] == "aws:ec2/eip:Eip" and r["parent"].endswith("platform:ingress:Ingress::ingress")]


def nlb_addresses(plan: dict[str, Any]) -> list[Any]:
    """Their public addresses, as the mock provider gives them (platformctl/mocks.py)."""
    return [ipaddress.ip_address(Plan.output(e, "publicIp")) for e in nlb_eips(plan)]


def nlb_cidrs(plan: dict[str, Any]) -> list[str]:
    """The same, as a policy's ipBlocks name them."""
    return [f"{a}/32" for a in nlb_addresses(plan)]


# Addresses outside the cluster a Helm dependency or remote base may name, on either stack.
OUTSIDE = {
    "the node's instance metadata": (IMDS, 80),
    "an address on the internet": (ipaddress.ip_address("203.0.113.7"), 443),
    "a node's kubelet": (ipaddress.ip_address("172.18.0.3"), 10250),
    "a workload cluster's API server": (ipaddress.ip_address("172.18.0.4"), 6443),
}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_repo_server_reaches_nothing_outside_the_cluster_but_the_load_balancer(renders: dict[str, Render], stack: str) -> None:
    """Outside the cluster: no metadata service, no node port or kubelet, no workload API server, no
    internet (tenants' charts come from Harbor). On EKS the repo-server reaches the control plane's
    internet-facing NLB at its addresses (the program's EIPs) on its listeners (443, 22) only: nothing in
    the control plane's VPC (RDS, ElastiCache, Vault's listeners, the API endpoint), nor the workload VPCs."""
    plan = renders[stack].plan
    network = Network(plan, "control-plane")
    repo_server = network.pod(REPO_SERVER)
    refused = dict(OUTSIDE)
    if stack == "prod":
        addresses = nlb_addresses(plan)
        assert addresses and all(network.reaches(repo_server, a, p) for a in addresses for p in (443, 22))
        refused |= {f"{port} on the NLB": (addresses[0], port) for port in (80, 8443, 2222)}
        vpc = _subnet_address(plan, "control-plane-private-eu-west-1a")
        refused |= {f"{port} in the control plane's VPC": (vpc, port) for port in (22, 443, 5432, 6379, 8200, 8201, 10250)}
        refused |= {f"{w}'s API endpoint": (_subnet_address(plan, f"{w}-private-eu-west-1a"), 443) for w in ("dev", "prod")}
    reached = [what for what, (address, port) in refused.items() if network.reaches(repo_server, address, port)]
    assert not reached, reached


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_repo_server_holds_no_kubernetes_token(charted: dict[str, Render], stack: str) -> None:
    """What a tenant's chart makes the repo-server run could present its service account's token to
    whatever trusts the cluster's tokens. It needs none (it calls no Kubernetes API; upstream's own
    install manifests mount none)."""
    [deployment] = [o for o in rendered(charted[stack].plan, "argocd")
                    if o["kind"] == "Deployment" and o["metadata"]["name"] == "argocd-repo-server"]
    spec = deployment["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert "serviceAccountToken" not in json.dumps(spec.get("volumes", []))


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_application_controller_still_reaches_the_workload_api_servers_and_openunison(renders: dict[str, Render], stack: str) -> None:
    """The fix holds the repo-server alone: the application controller still reaches each workload
    cluster's API server (EKS: its private endpoint in the peered VPC; kubeconfig: wherever its server
    is) and OpenUnison's token API through the ingress controller, for its one-minute tokens."""
    plan = renders[stack].plan
    network = Network(plan, "control-plane")
    controller = network.pod(CONTROLLER)
    endpoints = ([_subnet_address(plan, f"{w}-private-eu-west-1{zone}") for w in ("dev", "prod") for zone in "abc"]
                 if stack == "prod" else [ipaddress.ip_address("172.18.0.4"), ipaddress.ip_address("192.168.10.20")])
    port = 443 if stack == "prod" else 6443
    assert all(network.reaches(controller, endpoint, port) for endpoint in endpoints)
    assert network.reaches(controller, network.pod(TRAEFIK), 8443)


@pytest.mark.parametrize("service", ["argocd", "gitlab", "harbor"])  # gitlabRunner: tests/test_gitlab_runner.py
def test_a_bad_load_balancer_network_is_refused_naming_the_key(tmp_path: Path, service: str) -> None:
    """`loadBalancerCidrs` is optional (on EKS the clients reach the NLB at the program's own addresses:
    tests/test_nlb_attacks.py), but a network that is not one is refused before anything is registered."""
    def mutate(doc: dict[str, Any]) -> None:
        doc["config"]["platform:services"][service]["loadBalancerCidrs"] = ["10.40.0.0/33"]

    lines = _problems(_write(tmp_path, PROD, mutate), stack="prod")
    key = f"platform:services.{service}.loadBalancerCidrs[0]"
    assert any(key in line and "allowed: an IPv4 network" in line for line in lines), lines


# --- CI jobs on the control plane -------------------------------------------------------------------

JOB_LABEL_KEY = "platform.io/runner-job"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_a_tenants_ci_job_reaches_no_platform_endpoint_but_the_ingress_controller(renders: dict[str, Render], stack: str) -> None:
    """A tenant's CI job runs whatever its branch says, on the control plane: it reaches the cluster
    DNS and the ingress controller's HTTPS (GitLab, Harbor, Vault by their public names), and none of
    the services behind it directly, nor another tenant's runner."""
    network = Network(renders[stack].plan, "control-plane")
    job = Pod("runner-payments/job", "runner-payments", {JOB_LABEL_KEY: "payments"}, ())
    assert network.reachable(job) == [(DNS, 53), (DNS, 53), (TRAEFIK, 8443)]


# --- ArgoCD's webhook: who may make it refresh ------------------------------------------------------

# ArgoCD v3.4 (util/webhook/webhook.go, util/settings/settings.go) takes push events at /api/webhook in six
# forges' formats, told apart by a header, and checks each against that forge's own key of argocd-secret
# only when the key is set: an unset one lets anyone post that format.
FORGE_KEYS = {
    "GitHub (X-GitHub-Event)": ("webhook.github.secret",),
    "GitLab (X-Gitlab-Event)": ("webhook.gitlab.secret",),
    "Bitbucket (X-Hook-UUID)": ("webhook.bitbucket.uuid",),
    "Bitbucket Server (X-Event-Key)": ("webhook.bitbucketserver.secret",),
    "Gogs (X-Gogs-Event)": ("webhook.gogs.secret",),
    "Azure DevOps (X-Vss-ActivityId)": ("webhook.azuredevops.username", "webhook.azuredevops.password"),
}
MAX_WEBHOOK_PAYLOAD_MB = 2  # a GitLab push event lists 20 commits at most; ArgoCD's default reads 50 MB


def _argocd_objects(plan: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    [found] = [o for r in plan["resources"] if r.get("cluster") == "control-plane"
               for o in [r["inputs"], *(r.get("rendered") or [])] if o.get("kind") == kind and (o.get("metadata") or {}).get("name") == name]
    return found


@pytest.mark.parametrize("forge", FORGE_KEYS)
def test_an_unsigned_push_event_cannot_make_argocd_refresh_a_tenants_applications(plan: dict, forge: str) -> None:
    """Anyone who reaches argocd.<domain> (a tenant's CI job does, through the ingress controller) posts
    a GitHub-format push event naming tenant `checkout`'s ops repository: ArgoCD refreshes every
    Application that follows it, as often as it is asked (the endpoint has no rate limit), each
    event's body read up to the payload limit. GitLab's format needs GitLab's secret; every other
    format a generated lock that no sender holds."""
    secret = _argocd_objects(plan, "Secret", "argocd-secret")
    unset = [key for key in FORGE_KEYS[forge] if not (secret.get("stringData") or {}).get(key)]
    assert not unset, f"{forge} push events are taken unauthenticated: {unset} unset in argocd-secret"
    [resource] = [r for r in plan["resources"] if r["inputs"] is secret]
    assert "stringData" in resource["secretPaths"]
    generated = {r["urn"]: r["name"] for r in plan["resources"] if r["type"] == "random:index/randomPassword:RandomPassword"}
    lock = "argocd-webhook" if "webhook.gitlab.secret" in FORGE_KEYS[forge] else "argocd-webhook-lock"
    assert lock in {generated.get(urn) for urn in resource["dependsOn"]}


def test_argocd_reads_no_webhook_body_larger_than_a_push_event(plan: dict) -> None:
    config = _argocd_objects(plan, "ConfigMap", "argocd-cm")["data"]
    assert 0 < int(config.get("webhook.maxPayloadSizeMB", 50)) <= MAX_WEBHOOK_PAYLOAD_MB, config.get("webhook.maxPayloadSizeMB")


# --- promotion through Git: what ArgoCD takes for `main` -------------------------------------------------

def test_a_developers_tag_named_main_is_never_what_argocd_deploys(plan: dict) -> None:
    """A tenant developer (a GitLab developer: pushes branches, and tags, which no rule protects in the
    ops projects) pushes a tag `main` in `ops` at a commit of their own branch, never reviewed. ArgoCD
    v3.4 resolves a short targetRevision against every branch and tag and takes the first whose short
    name matches, in an order go-git does not fix (util/git/client.go lsRemote; its docs, "Handling
    Ambiguous Git References": either commit may be taken): prod's Applications may follow the tag,
    and the next sync by an owner or ops deploys it; dev's sync it on their own. A full ref name
    matches `refs/heads/main` alone (IsShortRef is false for it: exact comparison only)."""
    sets = [r["inputs"] for r in plan["resources"] if r["type"] == "kubernetes:argoproj.io/v1alpha1:ApplicationSet"]
    assert sets
    revisions = {s["metadata"]["name"]: s["spec"]["template"]["spec"]["source"]["targetRevision"] for s in sets}
    assert all(revision == "refs/heads/main" for revision in revisions.values()), revisions


def test_a_prod_sync_cannot_name_a_revision_nobody_merged(plan: dict) -> None:
    """An ops member (a GitLab developer: pushes branches to `ops`, never merges) holds its prod
    AppProject's `sync` role and syncs prod to the commit of a branch of their own: ArgoCD deploys
    it, with Git's provenance, bypassing the owners' merge. ArgoCD v3.4 takes a sync's revision from
    the request and asks for `override` (which no tenant role holds) only when argocd-cm's
    application.sync.requireOverridePrivilegeForRevisionSync is true; it is false by default
    (server/application/application.go resolveSourceRevisions, util/settings/settings.go)."""
    projects = [r["inputs"] for r in plan["resources"] if r["type"] == "kubernetes:argoproj.io/v1alpha1:AppProject"]
    policies = [line for p in projects for role in p["spec"]["roles"] for line in role["policies"]]
    assert any(", sync, " in line for line in policies) and not any(", override, " in line for line in policies)
    config = _argocd_objects(plan, "ConfigMap", "argocd-cm")["data"]
    assert config.get("application.sync.requireOverridePrivilegeForRevisionSync") == "true"


# --- what a tenant's workload reaches on dev and prod ------------------------------------------------

PROMETHEUS = "monitoring/Deployment/prometheus-server"

@pytest.mark.parametrize("stack", ["dev", "prod"])
@pytest.mark.parametrize("cluster", ["dev", "prod"])
def test_a_tenants_workload_reaches_its_own_namespace_and_the_dns_only(renders: dict[str, Render], stack: str, cluster: str) -> None:
    """What ArgoCD deploys from a tenant's ops repository (any labels it likes; in a virtual cluster,
    the labels the syncer gives its pods on the host) reaches the pods of its own namespace and the
    cluster DNS: not Prometheus, Dragonfly, the ingress controller's pods, the Argo Rollouts
    controller, the kube-oidc-proxy, the webhooks, nor another tenant."""
    plan = renders[stack].plan
    network = Network(plan, cluster)
    tenant_namespaces = [ns for ns, labels in network.namespaces.items() if labels.get(TENANT_NAMESPACE_LABEL) == "true"]
    assert len(tenant_namespaces) >= 2 and PROMETHEUS in {p.what for p in network.pods}
    for namespace in tenant_namespaces:
        synced = {"vcluster.loft.sh/managed-by": namespace, "vcluster.loft.sh/namespace": namespace.rsplit("-", 1)[0]}
        for labels in ({"app": "attacker"}, {**synced, "app": "attacker"}):
            pod = Pod(f"{namespace}/attacker", namespace, labels, ())
            outside = [(what, port) for what, port in network.reachable(pod) if what != DNS and not what.startswith(f"{namespace}/")]
            assert not outside, (namespace, labels, outside)
    # Without its namespace's policies and Prometheus' own the same pod reaches the cluster's
    # Prometheus: the walk can fail. Prometheus' own policy alone keeps it out.
    attacker = Pod(f"{tenant_namespaces[0]}/attacker", tenant_namespaces[0], {"app": "attacker"}, ())
    for opened, reached in (("-default-deny", False), (("-default-deny", "-prometheus-server-ingress"), True)):
        open_ = Network({**plan, "resources": [r for r in plan["resources"] if not r["name"].endswith(opened)]}, cluster)
        assert ((PROMETHEUS, 9090) in open_.reachable(attacker)) is reached, opened


# --- Argo Rollouts: an analysis that reads another tenant's traffic ---------------------------------

def test_a_tenants_analysis_cannot_read_another_tenants_traffic(renders: dict[str, Render]) -> None:
    """`payments` writes an AnalysisTemplate whose Prometheus query names `checkout`'s Service as
    Traefik labels it: the Rollouts controller runs it and the answer (checkout's request and error
    rates) lands in the AnalysisRun's status, which payments reads. The real OPA engine admits it."""
    from components import prometheus
    from components.tenant_rollout import traefik_service
    from tests.test_gatekeeper_plan import admission

    query = f'sum(rate(traefik_service_requests_total{{service="{traefik_service("checkout", "dev")}"}}[2m]))'
    template = {"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "peek", "namespace": "payments-dev"},
                "spec": {"metrics": [{"name": "m", "successCondition": "true",
                                      "provider": {"prometheus": {"address": prometheus.URL, "query": query}}}]}}
    selected, failures = admission(renders["dev"].plan, "dev", template)
    assert "PlatformTenantAnalysis" in selected
    assert failures, "checkout's traffic is payments' to read"


QUERY = 'sum(rate(traefik_service_requests_total[2m]))'
OWN, OTHER = "payments-dev", "checkout-dev"


def _provider(**changes: Any) -> dict[str, Any]:
    from components import prometheus
    return {**prometheus.analysis_provider(OWN, QUERY), **changes}


# Ways to make the proxy scope a query of `payments` to `checkout`, or to pass it by.
ANALYSIS_PROBES: dict[str, dict[str, Any]] = {
    "another namespace in the header": _provider(headers=[{"key": "X-Platform-Namespace", "value": OTHER}]),
    "a second header of another case": _provider(headers=[{"key": "X-Platform-Namespace", "value": OWN},
                                                          {"key": "x-platform-namespace", "value": OTHER}]),
    "the header twice": _provider(headers=[{"key": "X-Platform-Namespace", "value": OWN}] * 2),
    "a list in the header": _provider(headers=[{"key": "X-Platform-Namespace", "value": f"{OWN},{OTHER}"}]),
    "a templated value": _provider(headers=[{"key": "X-Platform-Namespace", "value": "{{args.namespace}}"}]),
    "no header": _provider(headers=[]),
    "a query parameter smuggled into the address": _provider(address=f"{_provider()['address']}/?service_namespace={OTHER}"),
    "Prometheus directly": _provider(address="http://prometheus-server.monitoring.svc.cluster.local"),
}


@pytest.mark.parametrize("kind", ["AnalysisTemplate", "AnalysisRun"])
@pytest.mark.parametrize("probe", [None, *ANALYSIS_PROBES])
def test_an_analysis_reaches_prometheus_only_with_its_own_namespace_in_the_one_header(renders: dict[str, Render], kind: str, probe: str | None) -> None:
    """The proxy scopes a query to the namespaces its header names (every value of it, in any case:
    Go's canonical header key): the real OPA engine admits exactly one header, valued with the
    object's own namespace, at the proxy's address, and refuses every other way."""
    from tests.test_gatekeeper_plan import admission

    provider = _provider() if probe is None else ANALYSIS_PROBES[probe]
    obj = {"apiVersion": "argoproj.io/v1alpha1", "kind": kind, "metadata": {"name": "peek", "namespace": OWN},
           "spec": {"metrics": [{"name": "m", "successCondition": "true", "provider": {"prometheus": provider}}]}}
    selected, failures = admission(renders["dev"].plan, "dev", obj)
    assert "PlatformTenantAnalysis" in selected
    if probe is None:
        assert failures == []
    else:
        assert failures and all(f.startswith("PlatformTenantAnalysis: ") for f in failures), failures


def _prometheus_flags(plan: dict[str, Any], cluster: str) -> list[str]:
    """The flags of both Prometheus servers of the cluster: the canary one and the platform's alerting one."""
    servers = [c for r in plan["resources"] if r.get("cluster") == cluster and r["type"] == "kubernetes:helm.sh/v3:Release"
               and r["inputs"]["chart"] == "prometheus" for o in r.get("rendered") or [] if o["kind"] == "Deployment"
               for c in o["spec"]["template"]["spec"]["containers"] if c["name"] == "prometheus-server"]
    assert len(servers) == 2, servers
    return [flag for server in servers for flag in server["args"]]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_a_virtual_clusters_analysis_cannot_shut_down_the_clusters_prometheus(renders: dict[str, Render], stack: str) -> None:
    """`catalog` (isolation: vcluster) writes, in its virtual namespace, an AnalysisRun whose web provider
    POSTs to http://prometheus-server.monitoring.svc.cluster.local/-/quit. No Gatekeeper holds the
    providers inside a virtual cluster (PlatformTenantAnalysis is the host's), and the virtual
    cluster's Argo Rollouts controller, synced to the host, reaches the host's Prometheus by design,
    through its own query proxy (which forwards the query APIs only). With the chart's
    --web.enable-lifecycle Prometheus exits on that POST, as often as asked: every tenant's canary
    analysis on the cluster fails and their prod Rollouts abort. Prometheus must take no lifecycle call."""
    plan = renders[stack].plan
    for cluster in ("dev", "prod"):
        network = Network(plan, cluster)
        virtual = [ns for ns, spec in network.policies if spec["podSelector"].get("matchLabels", {}).get("vcluster.loft.sh/namespace") == "argo-rollouts"]
        assert virtual, cluster
        for namespace in virtual:
            controller = Pod(f"{namespace}/argo-rollouts", namespace,
                             {"vcluster.loft.sh/managed-by": namespace, "vcluster.loft.sh/namespace": "argo-rollouts"}, ())
            proxy = network.pod(f"monitoring/Deployment/prometheus-query-{namespace}")
            assert network.reaches(controller, proxy, 8080) and network.reaches(proxy, network.pod(PROMETHEUS), 9090), namespace
            assert not network.reaches(controller, network.pod(PROMETHEUS), 9090), namespace
        flags = _prometheus_flags(plan, cluster)
        assert not [f for f in flags if f.startswith("--web.enable-lifecycle") or f.startswith("--web.enable-admin-api")], (cluster, flags)


# Argo Rollouts v1.9 (metricproviders/prometheus/prometheus.go): with `authentication.oauth2` the
# controller first POSTs for a token to `tokenUrl`, any address, and a refusal's error, which quotes
# the answer's body (golang.org/x/oauth2), becomes the measurement's message in the run's status.
PROMETHEUS_AUTHENTICATION = {
    "oauth2 token URL at an in-cluster endpoint": {"oauth2": {
        "tokenUrl": "http://dragonfly-manager.dragonfly-system.svc.cluster.local:65003/api/v1/users", "clientId": "a", "clientSecret": "b"}},
    "oauth2 token URL at the instance metadata": {"oauth2": {
        "tokenUrl": "http://169.254.169.254/latest/meta-data/iam/security-credentials/", "clientId": "a", "clientSecret": "b"}},
}


@pytest.mark.parametrize("kind", ["AnalysisTemplate", "AnalysisRun"])
@pytest.mark.parametrize("attack", PROMETHEUS_AUTHENTICATION)
def test_a_tenants_analysis_cannot_send_the_rollouts_controller_elsewhere_through_prometheus_authentication(
        renders: dict[str, Render], kind: str, attack: str) -> None:
    """The address and header are the platform's proxy's, as PlatformTenantAnalysis requires, but the
    authentication sends the host's Argo Rollouts controller to an address of the tenant's choosing first.
    Its egress policy (components/argo_rollouts.py `egress`) refuses both addresses now; the real OPA engine
    must refuse the analysis too (the policy names the query proxies, not who the controller calls for a token)."""
    from components import prometheus
    from tests.test_gatekeeper_plan import admission

    plan = renders["prod"].plan
    controller = Network(plan, "prod")
    rollouts = controller.pod("argo-rollouts/Deployment/argo-rollouts")
    assert not controller.reaches(rollouts, controller.pod("dragonfly-system/Deployment/dragonfly-manager"), 65003)
    assert not controller.reaches(rollouts, ipaddress.ip_address("169.254.169.254"), 80)
    provider = {"prometheus": {**prometheus.analysis_provider("payments-prod", "up"), "authentication": PROMETHEUS_AUTHENTICATION[attack]}}
    obj = {"apiVersion": "argoproj.io/v1alpha1", "kind": kind, "metadata": {"name": "probe", "namespace": "payments-prod"},
           "spec": {"metrics": [{"name": "m", "provider": provider, "successCondition": "true"}]}}
    selected, failures = admission(plan, "prod", obj)
    assert "PlatformTenantAnalysis" in selected
    assert any(f.startswith("PlatformTenantAnalysis: ") and "authentication" in f for f in failures), failures


# --- load balancers of a tenant's own, through an Ingress ------------------------------------------

def test_a_tenants_ingress_cannot_have_the_aws_load_balancer_controller_build_it_an_alb(renders: dict[str, Render]) -> None:
    """On EKS the AWS Load Balancer Controller serves LoadBalancer Services, and also reconciles any
    Ingress annotated `kubernetes.io/ingress.class: alb` (its --ingress-class): the annotation outranks
    ingressClassName, and the API server's default class leaves such an Ingress alone (v3.5.0
    pkg/ingress/group_loader.go classifyIngress). `payments` (Ingress write in its namespaces, and
    through ArgoCD) annotates one: the controller builds it an ALB, internet-facing if asked, with
    target groups and security-group rules, under its IAM role and outside the namespace's
    services.loadbalancers quota (a region holds few load balancers). Either Gatekeeper refuses the
    Ingress or the controller's own webhook does (--disable-ingress-class-annotation: "new usage of
    the annotation is forbidden"), and no IngressClass names the controller."""
    from tests.test_gatekeeper_plan import admission

    plan = renders["prod"].plan
    controllers = [r for r in plan["resources"] if r["type"] == "kubernetes:helm.sh/v3:Release" and r["inputs"]["chart"] == "aws-load-balancer-controller"]
    assert {r["cluster"] for r in controllers} == {"control-plane", "dev", "prod"}
    [hosts] = [r["inputs"]["spec"]["parameters"]["hosts"] for r in plan["resources"]
               if r["inputs"].get("kind") == "PlatformTenantIngressHosts" and r["inputs"]["metadata"]["name"] == "payments-prod-ingress-hosts"]
    ingress = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
               "metadata": {"name": "own-alb", "namespace": "payments-prod",
                            "annotations": {"kubernetes.io/ingress.class": "alb", "alb.ingress.kubernetes.io/scheme": "internet-facing"}},
               "spec": {"rules": [{"host": hosts[0], "http": {"paths": [{"path": "/", "pathType": "Prefix",
                                                                         "backend": {"service": {"name": "app", "port": {"number": 80}}}}]}}]}}
    refused_by_gatekeeper = bool(admission(plan, "prod", ingress)[1])
    for controller in controllers:
        objects = controller.get("rendered") or []
        [deployment] = [o for o in objects if o["kind"] == "Deployment"]
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        assert refused_by_gatekeeper or "--disable-ingress-class-annotation=true" in args, (controller["cluster"], args)
        assert not [o for o in objects if o["kind"] == "IngressClass"], controller["cluster"]


# --- Traefik's names for an Ingress's backends ----------------------------------------------------

def traefik_service(namespace: str, service: str, port: int | str) -> str:
    """The name the tenants' Traefik gives an Ingress backend, and keeps one server list under:
    traefik v3.6.2 pkg/provider/kubernetes/ingress/kubernetes.go:354-355
    (`conf.HTTP.Services[provider.Normalize(ns + "-" + svc + "-" + port)] = service`: a second
    backend of the same name replaces the first, and every router naming it routes there);
    Normalize (pkg/provider/configuration.go:509) leaves DNS labels as they are."""
    return f"{namespace}-{service}-{port}"


def shared_traefik_services(plan: dict[str, Any]) -> list[str]:
    """For each pair of tenant namespaces on one cluster where one is the other's and a '-' more:
    the Traefik service that the shorter's Service `<rest>-app` and the longer's `app` both are."""
    namespaces: dict[str, set[str]] = {}
    for r in plan["resources"]:
        metadata = r["inputs"].get("metadata") or {}
        if (r["type"] == "kubernetes:core/v1:Namespace" and (metadata.get("labels") or {}).get(TENANT_NAMESPACE_LABEL) == "true"
                and not metadata["name"].startswith("sandbox-")):  # a sandbox serves no host (PlatformTenantIngressHosts)
            namespaces.setdefault(r["cluster"], set()).add(metadata["name"])
    shared = []
    for cluster, names in sorted(namespaces.items()):
        for attacker in sorted(names):
            for victim in sorted(names):
                if victim.startswith(f"{attacker}-"):
                    rest = victim[len(attacker) + 1:]
                    ours, theirs = traefik_service(attacker, f"{rest}-app", 80), traefik_service(victim, "app", 80)
                    assert ours == theirs
                    shared.append(f"{cluster}: {attacker}'s Service {rest}-<s> is {victim}'s <s> (s=app, port 80: {ours})")
    return shared


# (case, mutation, the key the refusal names)
EXTENDED_NAMESPACES = [
    ("a tenant named <payments>-dev-<x>", lambda d: d["config"]["platform:tenants"].append({"name": "payments-dev-web", "owners": ["zoe"]}),
     "platform:tenants[3].name"),
    ("a tenant named <payments>-prod", lambda d: d["config"]["platform:tenants"].append({"name": "payments-prod", "owners": ["zoe"]}),
     "platform:tenants[3].name"),
    ("a virtual-cluster tenant named <checkout>-dev-<x>",
     lambda d: d["config"]["platform:tenants"].append({"name": "checkout-dev-web", "owners": ["zoe"], "isolation": "vcluster"}),
     "platform:tenants[3].name"),
]


@pytest.mark.parametrize(("case", "mutate", "key"), EXTENDED_NAMESPACES, ids=[c[0] for c in EXTENDED_NAMESPACES])
def test_a_tenants_service_cannot_take_another_tenants_traffic_through_traefiks_names(
        tmp_path: Path, case: str, mutate: Any, key: str) -> None:
    """`payments` commits to its ops repository a Service `web-dev-app` and an Ingress for its own
    host (both within its AppProject, its ArgoCD user's rights and PlatformTenantIngressHosts). In
    Traefik's configuration that backend is `payments-dev-web-dev-app-80`, which is also tenant
    `payments-dev-web`'s Service `app`: one backend replaces the other, so both hosts are served
    by one tenant's pods, whichever Traefik listed last (its users' requests, cookies and tokens
    go to the other tenant). The platform must never hold two such tenant namespaces on a cluster
    (a sandbox serves no host): the stack file is refused, naming the tenant whose namespace extends
    another's."""
    path = _write(tmp_path, DEV, mutate)
    raw, secret_keys = read_stack_file(path)
    try:
        load_platform_config(raw, stack="dev", source=str(path), secret_keys=secret_keys)
    except ConfigError as err:
        problems = err.problems
    else:
        problems = []
    shared = [] if problems else shared_traefik_services(render_plan(path, "dev"))
    assert not shared, shared
    assert any(line.startswith(f"{key}: ") and "Traefik" in line and "allowed:" in line for line in problems), problems


def test_the_stacks_tenant_namespaces_share_no_traefik_service(renders: dict[str, Render]) -> None:
    for stack in ("dev", "prod"):
        assert shared_traefik_services(renders[stack].plan) == [], stack


# --- Traefik's rule for an Ingress's path ---------------------------------------------------------

PATH_MATCHER = "traefik.ingress.kubernetes.io/router.pathmatcher"


def traefik_rules(ingress: dict[str, Any]) -> list[str]:
    """The rule of each router the tenants' Traefik v3.6.2 builds for `ingress` (default rule syntax
    v3): pkg/provider/kubernetes/ingress/kubernetes.go:675-712 writes the host and the path into
    backquoted strings as they are, `Host(`<host>`) && <matcher>(`<path>`)`, the matcher being
    PathPrefix, Path for pathType Exact, or the router.pathmatcher annotation for
    ImplementationSpecific. A router's priority is its rule's length (pkg/server/router/router.go:143)."""
    matcher = (ingress["metadata"].get("annotations") or {}).get(PATH_MATCHER, "PathPrefix")
    return [f"Host(`{rule['host']}`) && " + {"Exact": "Path", "Prefix": "PathPrefix"}.get(path["pathType"], matcher) + f"(`{path['path']}`)"
            for rule in ingress["spec"]["rules"] for path in rule["http"]["paths"]]


def tenant_ingress(namespace: str, host: str, path: str, path_type: str = "Prefix", matcher: str | None = None) -> dict[str, Any]:
    annotations = {"traefik.ingress.kubernetes.io/router.entrypoints": "websecure", **({PATH_MATCHER: matcher} if matcher else {})}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "app", "namespace": namespace, "annotations": annotations},
            "spec": {"ingressClassName": "apps", "rules": [{"host": host, "http": {"paths": [
                {"path": path, "pathType": path_type, "backend": {"service": {"name": "app", "port": {"number": 80}}}}]}}]}}


def _ingress_hosts(plan: dict[str, Any], namespace: str) -> list[str]:
    [hosts] = [r["inputs"]["spec"]["parameters"]["hosts"] for r in plan["resources"]
               if r["inputs"].get("kind") == "PlatformTenantIngressHosts" and r["inputs"]["metadata"]["name"] == f"{namespace}-ingress-hosts"]
    return hosts


# (case, path, pathType, router.pathmatcher): each puts rule syntax where Traefik expects a path.
RULE_INJECTIONS = [
    ("a Prefix path closing its string", "/`) || Host(`{victim}`) || PathPrefix(`/", "Prefix", None),
    ("an Exact path closing its string", "/x`) || Host(`{victim}`) && Path(`/", "Exact", None),
    ("an ImplementationSpecific path closing its string", "/`) || HostRegexp(`.+`) && PathPrefix(`/", "ImplementationSpecific", None),
    ("a path matcher that is a rule", "/", "ImplementationSpecific", "PathPrefix(`/`) || Host(`{victim}`) && PathPrefix"),
]


@pytest.mark.parametrize("namespace", ["payments-dev", "catalog-dev"])  # a namespace tenant; a virtual cluster's host copy
@pytest.mark.parametrize(("case", "path", "path_type", "matcher"), RULE_INJECTIONS, ids=[c[0] for c in RULE_INJECTIONS])
def test_a_tenants_ingress_path_cannot_make_traefik_route_another_tenants_host_to_it(
        renders: dict[str, Render], namespace: str, case: str, path: str, path_type: str, matcher: str | None) -> None:
    """`payments` commits an Ingress for its own host (PlatformTenantIngressHosts admits the host) whose
    path, or router.pathmatcher annotation, holds rule syntax. The API server takes such a path: it
    asks only that Prefix and Exact paths be absolute without `//`, `/./`, `/../`, `%2f` and that
    ImplementationSpecific ones start with `/` (kubernetes pkg/apis/networking/validation/validation.go
    validateHTTPIngressPath). Traefik v3.6.2 pastes it into the router's rule unquoted, so the router
    also matches `checkout`'s host (or every host), at a higher priority than `checkout`'s own router
    (a longer rule): `checkout`'s users' requests, cookies and tokens go to `payments`' pods, over the
    environment's wildcard certificate, which covers both. (Traefik quotes paths and allows only Path
    and PathPrefix as matchers since v3.6.18, f9d9b72380 "Avoid ingress path matcher injection"; the
    pinned chart 37.4.0 runs v3.6.2.) Gatekeeper must refuse the Ingress, in a virtual cluster's host
    namespace too, where its syncer writes the tenant's Ingress."""
    from tests.test_gatekeeper_plan import admission

    plan = renders["dev"].plan
    [own] = _ingress_hosts(plan, namespace)
    victim = _ingress_hosts(plan, "checkout-dev" if namespace != "checkout-dev" else "payments-dev")[0]
    ingress = tenant_ingress(namespace, own, path.format(victim=victim), path_type, matcher and matcher.format(victim=victim))
    [rule] = traefik_rules(ingress)
    assert " || Host" in rule, rule  # a disjunction: it matches without `payments`' host
    _, failures = admission(plan, "dev", ingress)
    assert any(f.startswith("PlatformTenantIngressHosts: ") for f in failures), f"admitted; Traefik's router for it: {rule}"


@pytest.mark.parametrize(("path", "path_type", "matcher"), [
    ("/", "Prefix", None), ("/api/v1.2/items_~-x", "Prefix", None), ("/a%20b/c:d@e;f=g,h+i*j!k$l&m'n(o)", "Exact", None),
    ("/healthz", "ImplementationSpecific", "Path"), ("/static", "ImplementationSpecific", "PathPrefix"), ("", "ImplementationSpecific", None),
])
def test_a_tenants_ordinary_ingress_paths_are_still_admitted(renders: dict[str, Render], path: str, path_type: str, matcher: str | None) -> None:
    """Any path of RFC 3986's characters, and the two matchers Traefik itself allows, still serve."""
    from tests.test_gatekeeper_plan import admission

    plan = renders["dev"].plan
    [own] = _ingress_hosts(plan, "payments-dev")
    assert admission(plan, "dev", tenant_ingress("payments-dev", own, path, path_type, matcher))[1] == []
