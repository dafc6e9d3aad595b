"""The control plane's NLB on EKS (the prod stack): its scheme, its addresses, and who reaches them.

The platform's ingress is internet-facing (README: Ingress): developers' browsers, `git@gitlab.<domain>` and the
public Route 53 zone reach it from the internet. Left to defaults its scheme depends on what runs: the AWS Load
Balancer Controller's webhook claims the Service (v3.5.0 webhooks/core/service_mutator.go:46-51) and its default
scheme is `internal` (pkg/config/controller_config.go:179); without the controller EKS's cloud controller makes
an internet-facing one. The Service is pinned instead, at addresses the program owns (one EIP per public subnet),
and every NetworkPolicy that reaches the NLB names exactly those addresses: the control plane's clients (ArgoCD's
repo-server, Harbor's core, GitLab's Rails pods, the runners' jobs) and the workload clusters' platform pods
(External Secrets -> Vault, Dragonfly and policy-controller -> Harbor), which before reached either a private
network the NLB was not in or the whole internet on 443.

Each test reads the prod plan, the objects the real Helm engine rendered from it, and Kubernetes' NetworkPolicy
rules as tests/test_delivery_attacks.py `Network` evaluates them.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from components import dragonfly, external_secrets, image_verifier, kube_oidc_proxy
from platformctl.render import Render, read_stack_file, render
from policy.labels import CLUSTER_LABEL, MANAGED_BY
from stacks.config import load_platform_config
from tests.test_config import DEV, PROD, _problems, _write
from tests.test_delivery_attacks import REPO_SERVER, Network, Pod, _subnet_address, nlb_addresses, nlb_eips
from tests.test_network import Plan

RELEASE = "kubernetes:helm.sh/v3:Release"
EIP = "aws:ec2/eip:Eip"
ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-"
NLB_CLASS = "service.k8s.aws/nlb"  # the controller's class (v3.5.0 pkg/config/service_config.go:7)
INTERNET = ipaddress.ip_address("203.0.113.7")  # any other public address
HARBOR_CORE = "harbor/Deployment/harbor-core"
RAILS = "gitlab/Deployment/gitlab-webservice-default"
TENANT_JOB = Pod("runner-payments/job", "runner-payments", {"platform.io/runner-job": "payments"}, ())


def _service(plan: dict[str, Any], release: str) -> dict[str, Any]:
    """The LoadBalancer Service the Helm engine rendered for `release` from the plan's values."""
    [found] = [r for r in plan["resources"] if r["type"] == RELEASE and r["name"] == release]
    [service] = [o for o in found.get("rendered") or [] if o["kind"] == "Service" and o["spec"].get("type") == "LoadBalancer"]
    return service


def _public_subnets(plan: dict[str, Any], cluster: str) -> list[dict[str, Any]]:
    return sorted((r for r in plan["resources"] if r["type"] == "aws:ec2/subnet:Subnet" and r["name"].startswith(f"{cluster}-public-")),
                  key=lambda r: r["name"])


def test_the_control_planes_nlb_is_internet_facing_at_the_programs_own_addresses(charted: dict[str, Render]) -> None:
    """Nothing left to defaults: the controller's own type (`external`, which EKS's cloud controller leaves alone), IP
    targets, the internet-facing scheme, the class (so no other implementation claims it), the public subnets and one
    EIP of the program's per subnet, in the same order and count (the controller refuses another count:
    v3.5.0 pkg/service/model_build_load_balancer.go:334-336)."""
    plan = charted["prod"].plan
    service = _service(plan, "control-plane-traefik")
    annotations = service["metadata"].get("annotations") or {}
    pinned = {k: annotations.get(f"{ANNOTATION}{k}") for k in ("type", "nlb-target-type", "scheme")}
    assert pinned == {"type": "external", "nlb-target-type": "ip", "scheme": "internet-facing"}, pinned
    assert service["spec"].get("loadBalancerClass") == NLB_CLASS
    subnets = [Plan.output(s, "id") for s in _public_subnets(plan, "control-plane")]
    eips = nlb_eips(plan)
    assert len(subnets) == len(eips) == 3
    assert annotations[f"{ANNOTATION}subnets"].split(",") == subnets
    assert annotations[f"{ANNOTATION}eip-allocations"].split(",") == [Plan.output(e, "allocationId") for e in eips]
    # The EIPs: the control plane's AWS account and region, tagged like the cluster's other resources.
    [provider] = {r["provider"] for r in plan["resources"] if r["type"] == "aws:eks/cluster:Cluster" and r["name"] == "control-plane"}
    for eip in eips:
        assert eip["provider"] == provider
        assert eip["inputs"]["domain"] == "vpc"
        assert {CLUSTER_LABEL: "control-plane", **MANAGED_BY}.items() <= eip["inputs"]["tags"].items()
    addresses = nlb_addresses(plan)
    assert len(set(addresses)) == 3 and all(a.is_global or a in ipaddress.ip_network("198.51.100.0/24") for a in addresses)


@pytest.mark.parametrize("cluster", ["dev", "prod"])
def test_the_tenants_nlbs_are_internet_facing_too(charted: dict[str, Render], cluster: str) -> None:
    """The tenants' Traefik serves their applications to their users: pinned the same way (the controller picks the
    cluster's public subnets, tagged kubernetes.io/role/elb), with no EIPs of the program's."""
    service = _service(charted["prod"].plan, f"{cluster}-traefik")
    annotations = service["metadata"].get("annotations") or {}
    assert {k.removeprefix(ANNOTATION): v for k, v in annotations.items() if k.startswith(ANNOTATION)} == {
        "type": "external", "nlb-target-type": "ip", "scheme": "internet-facing"}
    assert service["spec"].get("loadBalancerClass") == NLB_CLASS


# The control plane's clients of the NLB (by their public names) and the load balancer's ports each uses.
CLIENTS = {REPO_SERVER: (443, 22), HARBOR_CORE: (443,), RAILS: (443,), TENANT_JOB.what: (443,)}


@pytest.mark.parametrize("client", CLIENTS)
def test_the_control_planes_clients_reach_the_nlbs_addresses_and_not_the_vpc(renders: dict[str, Render], client: str) -> None:
    """From ArgoCD's repo-server, Harbor's core, GitLab's Rails pods and a tenant's CI job: every NLB address on the
    listeners they use (an internet-facing NLB's public addresses are what vault.<domain>, gitlab.<domain>, ... resolve
    to from inside the VPC too). Not the control plane's VPC on those ports any more: the NLB is not there, but the EKS
    API's private endpoint is, and nodes' ports."""
    plan = renders["prod"].plan
    network = Network(plan, "control-plane")
    pod = TENANT_JOB if client == TENANT_JOB.what else network.pod(client)
    vpc = _subnet_address(plan, "control-plane-private-eu-west-1a")
    assert [p for p in CLIENTS[client] if network.reaches(pod, vpc, p)] == [], f"{client} reaches {vpc} in the VPC"
    # Harbor's core (the proxy caches' upstream registries) and GitLab's Rails pods (S3, tenants' webhooks) reach the
    # internet on 443 by design; the repo-server and the jobs do not.
    if client not in (HARBOR_CORE, RAILS):
        assert not network.reaches(pod, INTERNET, 443)
    addresses = nlb_addresses(plan)
    assert addresses, "no EIP of the Ingress component in the prod plan"
    unreached = [f"{a}:{p}" for a in addresses for p in CLIENTS[client] if not network.reaches(pod, a, p)]
    assert not unreached, f"{client} does not reach the NLB at {unreached}"


# The workload clusters' platform pods that reach the control plane's public names (Vault, Harbor) on 443.
WORKLOAD_CLIENTS = (
    f"{external_secrets.NAMESPACE}/Deployment/external-secrets",
    f"{dragonfly.NAMESPACE}/Deployment/{dragonfly.MANAGER}",
    f"{image_verifier.NAMESPACE}/Deployment/policy-controller-webhook",
    f"{dragonfly.NAMESPACE}/StatefulSet/dragonfly-seed-client",
)
# Those that also read Harbor's blobs where its registry redirects them (S3 on an EKS control plane: on the internet).
READ_S3 = WORKLOAD_CLIENTS[2:]


@pytest.mark.parametrize("cluster", ["dev", "prod"])
@pytest.mark.parametrize("client", WORKLOAD_CLIENTS)
def test_the_workload_clusters_platform_pods_reach_the_control_plane_at_its_nlbs_addresses(
        charted: dict[str, Render], cluster: str, client: str) -> None:
    """A taken-over External Secrets controller (every SecretStore's Vault session) or Dragonfly manager reaches the
    control plane's NLB on 443, not every host of the internet there; each reaches every NLB address."""
    plan = charted["prod"].plan
    network = Network(plan, cluster)
    pod = network.pod(client)
    if client not in READ_S3:
        assert not network.reaches(pod, INTERNET, 443), f"{cluster}: {client} reaches the internet ({INTERNET}) on 443"
    addresses = nlb_addresses(plan)
    assert addresses, "no EIP of the Ingress component in the prod plan"
    unreached = [str(a) for a in addresses if not network.reaches(pod, a, 443)]
    assert not unreached, f"{cluster}: {client} does not reach the NLB at {unreached} on 443"


def test_loadbalancercidrs_is_not_required_on_an_eks_control_plane(tmp_path: Path) -> None:
    """The clients' policies name the NLB's own addresses: the prod stack without any `loadBalancerCidrs` loads."""
    def drop(doc: dict[str, Any]) -> None:
        for settings in doc["config"]["platform:services"].values():
            if isinstance(settings, dict):
                settings.pop("loadBalancerCidrs", None)

    path = _write(tmp_path, PROD, drop)
    raw, secret_keys = read_stack_file(path)
    load_platform_config(raw, stack="prod", source=str(path), secret_keys=secret_keys)


def test_an_eks_control_plane_without_public_subnets_is_refused_naming_the_key(tmp_path: Path) -> None:
    """Existing subnets without public ones: no subnet for an internet-facing NLB. Refused before anything is registered."""
    def existing(doc: dict[str, Any]) -> None:
        eks = doc["config"]["platform:clusters"]["controlPlane"]["eks"]
        eks.pop("vpc")
        eks["subnets"] = {"private": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]}

    lines = _problems(_write(tmp_path, PROD, existing), stack="prod")
    assert any(": platform:clusters.controlPlane.eks.subnets.public: required when clusters.controlPlane is EKS" in line
               and "allowed:" in line for line in lines), lines


def _mixed(doc: dict[str, Any]) -> None:
    """The prod stack with kubeconfig workload clusters (the dev stack's): their kube-oidc-proxy trusts the issuer."""
    config = DEV["config"]
    for cluster in ("dev", "prod"):
        doc["config"]["platform:clusters"][cluster] = config["platform:clusters"][cluster]
    doc["config"]["platform:objectStore"] = {k: v for k, v in config["platform:objectStore"].items() if k != "archiveKeys"}
    services = doc["config"]["platform:services"]
    services["metallb"] = {**config["platform:services"]["metallb"],
                           "addresses": {k: v for k, v in config["platform:services"]["metallb"]["addresses"].items() if k != "controlPlane"}}
    services["velero"] = services["dragonfly"] = {"enabled": False}  # both need a store of the workload clusters' kind


def test_a_kubeconfig_workload_clusters_proxy_reaches_the_issuer_at_the_nlbs_addresses_only(tmp_path: Path) -> None:
    """An EKS control plane with kubeconfig workload clusters: each one's kube-oidc-proxy fetches the issuer's keys
    (openunison.<domain>, the NLB) at the NLB's addresses, not from any host of the internet on 443 (a taken-over
    proxy holds the impersonation rights of its cluster)."""
    plan = render(_write(tmp_path, PROD, _mixed), "prod").plan
    addresses = nlb_addresses(plan)
    for cluster in ("dev", "prod"):
        network = Network(plan, cluster)
        proxy = network.pod(f"{kube_oidc_proxy.NAMESPACE}/Deployment/kube-oidc-proxy")
        assert not network.reaches(proxy, INTERNET, 443), f"{cluster}: kube-oidc-proxy reaches the internet ({INTERNET}) on 443"
        assert len(addresses) == 3 and all(network.reaches(proxy, a, 443) for a in addresses), cluster
