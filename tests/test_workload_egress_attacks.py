"""An attacker's review of where the workload clusters' pods connect to (dev and prod, both stacks).

The attacker holds one pod there: any platform pod taken over (the External Secrets controller holds every
SecretStore's Vault session, Argo Rollouts runs the tenants' analyses, Velero reads every tenant volume,
cert-manager holds the ACME account) or a tenant's. From it, the ports that take no credential:
Dragonfly's node-facing ports, open to every address because dfdaemon runs on the hosts' network
(tests/test_workload_lateral_attacks.py: a seed peer's upload gRPC 4000 and piece server 4005 hand out any
cached piece by task id, another tenant's private layers, and fetch any URL; the scheduler's 8002 and the
manager's gRPC 65003 take fake peers), the instance metadata (the node role's credentials on EKS), the
nodes' kubelets, the other clusters' API endpoints (EKS) and the internet.

Each pod reaches those only where its service needs them (OUTSIDE_NEEDS, with why); each platform pod is
held by an egress policy, so a new component without one fails here (LEFT names the ones not held yet,
with why); and what the held ones need still goes through: the cluster DNS and the API server (as
tests/test_workload_ingress_attacks.py derives it from the plan), and each one's own service (NEEDED).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from components import alerting, argo_rollouts, dragonfly, external_secrets, image_verifier, kube_oidc_proxy, metrics_server, netpol_check, prometheus, prometheus_query, tls, velero
from platformctl.render import Render
from platformctl.render import read_stack_file
from components.tenant import VCLUSTER_NAMESPACE_LABEL
from policy.labels import TENANT_NAMESPACE_LABEL
from stacks.config import load_platform_config
from stacks.control_plane import control_plane_ingress
from tests.test_config import DEV, ROOT, _write
from tests.test_delivery_attacks import DNS, IMDS, Network, Pod, _subnet_address, nlb_addresses
from tests.test_workload_ingress_attacks import _api_server
from tests.test_workload_lateral_attacks import NEEDED as DRAGONFLY_FLOWS, _clusters, dragonfly_node_ports

INTERNET = ipaddress.ip_address("203.0.113.7")  # a public address: an ACME server, S3, STS (not the control plane's NLB's)
# kind's docker network (Pulumi.dev.yaml): the control plane's MetalLB pool, where vault.<domain> resolves.
CONTROL_PLANE_LB_DEV = ipaddress.ip_address("172.18.255.201")
ESO_CONTROLLER = f"{external_secrets.NAMESPACE}/Deployment/external-secrets"
VERIFIER = f"{image_verifier.NAMESPACE}/Deployment/policy-controller-webhook"
OIDC_PROXY = f"{kube_oidc_proxy.NAMESPACE}/Deployment/kube-oidc-proxy"
DF_MANAGER, DF_SEED = f"{dragonfly.NAMESPACE}/Deployment/{dragonfly.MANAGER}", f"{dragonfly.NAMESPACE}/StatefulSet/dragonfly-seed-client"
VCLUSTER = "a virtual cluster's control plane"  # the vcluster chart's pods (label app: vcluster) in a tenant's host namespace
ROLLOUTS = f"{argo_rollouts.NAMESPACE}/Deployment/argo-rollouts"
QUERY_PROXY = f"{prometheus.NAMESPACE}/Deployment/{prometheus_query.NAME}"
ALERTMANAGER = f"{alerting.NAMESPACE}/StatefulSet/alertmanager"


def _node(plan: dict[str, Any], stack: str, cluster: str) -> Any:
    """A node's address: a kind node on the dev stack, one in the cluster's private subnet on EKS."""
    return _subnet_address(plan, f"{cluster}-private-eu-west-1a", 20) if stack == "prod" else ipaddress.ip_address("172.18.0.3")


def _probes(plan: dict[str, Any], stack: str, cluster: str) -> dict[str, tuple[Any, int]]:
    """What no pod may reach unless OUTSIDE_NEEDS says: outside the pod network."""
    probes = {"the instance metadata": (IMDS, 80), "a node's kubelet": (_node(plan, stack, cluster), 10250),
              "the internet on HTTPS": (INTERNET, 443), "the internet on HTTP": (INTERNET, 80)}
    if stack == "prod":
        probes |= {f"{c}'s VPC": (_subnet_address(plan, f"{c}-private-eu-west-1a"), 443) for c in ("control-plane", "dev", "prod") if c != cluster}
    return probes


# (stack, source namespace or pod) -> the probes it needs, and why.
OUTSIDE_NEEDS: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {
    ("prod", f"{tls.NAMESPACE}/Deployment/cert-manager"): (("the internet on HTTPS", "ACME (Let's Encrypt), Route 53 and STS: DNS-01 with the cluster's IRSA role"),),
    ("prod", velero.NAMESPACE): (("the internet on HTTPS", "S3 and STS: the backups bucket through its IRSA role"),),
    ("dev", velero.NAMESPACE): (("the internet on HTTPS", "platform:backups.target, https://s3.backups.example.com (no networks: public)"),),
    ("prod", "cluster-autoscaler"): (("the internet on HTTPS", "the EC2 Auto Scaling and EC2 APIs, STS"),),
    ("prod", "aws-load-balancer-controller"): (("the internet on HTTPS", "the ELBv2, EC2 and WAF APIs, STS"),),
    ("prod", metrics_server.NAMESPACE): (("a node's kubelet", "it reads every node's /metrics/resource on 10250"),),
    ("dev", metrics_server.NAMESPACE): (("a node's kubelet", "it reads every node's /metrics/resource on 10250"),),
    # harbor.<domain> is the control plane's NLB, at its own addresses (NEEDED below); S3 has none that stay put.
    ("prod", VERIFIER): (("the internet on HTTPS", "the signatures' blobs Harbor redirects to S3 (components/egress.py registry_blobs)"),),
    ("prod", DF_SEED): (("the internet on HTTPS", "the layers Harbor redirects to S3 (components/egress.py registry_blobs)"),),
    ("dev", VERIFIER): (("the internet on HTTPS", "the blobs Harbor redirects to platform:objectStore (https://minio.dev..., no networks)"),),
    ("prod", ALERTMANAGER): (("the internet on HTTPS", "platform:alerting.receiver and the cluster's heartbeat (https:// on 443 only)"),),
    ("dev", ALERTMANAGER): (("the internet on HTTPS", "platform:alerting.receiver (https:// on 443 only)"),),
}
# Platform namespaces whose pods are not held by an egress policy yet, and why.
LEFT: dict[str, str] = {}


def _tenant(network: Network, pod: Pod) -> bool:
    return network.namespaces.get(pod.namespace, {}).get(TENANT_NAMESPACE_LABEL) == "true"


def _needs(stack: str, pod: Pod) -> set[str]:
    keys = [(stack, pod.namespace), (stack, pod.what), *([(stack, VCLUSTER)] if pod.labels.get("app") == "vcluster" else [])]
    return {probe for key in keys for probe, _ in OUTSIDE_NEEDS.get(key, ())}


def test_no_pod_reaches_dragonflys_node_ports_the_metadata_or_the_nodes_unless_it_needs_them(charted: dict[str, Render]) -> None:
    """From every pod of dev and prod (platform pods, tenants' pods, virtual clusters' control planes): Dragonfly's
    node-facing ports only between Dragonfly's own tiers; outside the pod network only what OUTSIDE_NEEDS names."""
    problems: list[str] = []
    checked = 0
    for stack, cluster, plan, network in _clusters(charted):
        node_ports = dragonfly_node_ports(plan, cluster)
        own = {(c, s, p) for c, s, p in DRAGONFLY_FLOWS}
        probes = _probes(plan, stack, cluster)
        for source in network.pods:
            if source.what == DNS:
                continue
            for what, port in node_ports:
                checked += 1
                if (source.what, what, port) not in own and network.reaches(source, network.pod(what), port):
                    problems.append(f"{stack}/{cluster}: {source.what} -> {what}:{port}")
            needs = _needs(stack, source)
            for name, (address, port) in probes.items():
                checked += 1
                if name not in needs and network.reaches(source, address, port):
                    problems.append(f"{stack}/{cluster}: {source.what} -> {name} {address}:{port}")
    assert checked > 500, checked
    assert not problems, f"{len(problems)} connections no service needs:\n" + "\n".join(problems)


def test_every_platform_pod_is_held_by_an_egress_policy(charted: dict[str, Render]) -> None:
    """Every pod of dev and prod outside the tenants' namespaces is selected by an Egress policy (the tenants' are,
    by their default deny): a new component without one fails here."""
    unheld = sorted({f"{stack}/{cluster}: {p.what}" for stack, cluster, _, network in _clusters(charted) for p in network.pods
                     if p.what != DNS and not _tenant(network, p) and p.namespace not in LEFT and not network.selecting(p, "Egress")})
    assert not unheld, f"{len(unheld)} pods connect anywhere:\n" + "\n".join(unheld)
    present = {p.namespace for _, _, _, network in _clusters(charted) for p in network.pods}
    assert set(LEFT) <= present, set(LEFT) - present  # LEFT only shrinks


# (source namespace or pod, target pod, port): each must still connect where both run, beside DNS and the API server.
NEEDED = (
    (ROLLOUTS, QUERY_PROXY, prometheus_query.PORT),  # the tenants' analyses (prometheus.analysis_provider's QUERY_URL)
    (QUERY_PROXY, f"{prometheus.NAMESPACE}/Deployment/prometheus-server", prometheus.SERVER_PORT),  # the proxy's upstream
)


def test_the_held_pods_still_reach_the_dns_their_api_server_and_their_service(charted: dict[str, Render]) -> None:
    broken, checked = [], 0
    for stack, cluster, plan, network in _clusters(charted):
        api = _api_server(plan, stack, cluster)
        # The enforcement check's pods need no DNS or API server of their own: their denials are the check
        # (components/netpol_check.py; its own tests say what it must reach).
        held = [p for p in network.pods if p.what != DNS and not _tenant(network, p) and network.selecting(p, "Egress")
                and p.namespace != netpol_check.PLATFORM_NAMESPACE.name]
        for pod in held:
            flows = [("the DNS (UDP)", network.pod(DNS), 53, "UDP"), ("the DNS (TCP)", network.pod(DNS), 53, "TCP")]
            # Dragonfly's tiers call one another, never Kubernetes (their egress names no API server).
            flows += [("the API server", *api, "TCP")] if pod.namespace != dragonfly.NAMESPACE else []
            probes = _probes(plan, stack, cluster)
            flows += [(name, *probes[name], "TCP") for name in _needs(stack, pod)]
            if pod.what in (ESO_CONTROLLER, VERIFIER, OIDC_PROXY, DF_MANAGER, DF_SEED):  # Vault, Harbor, OpenUnison's issuer
                lbs = [CONTROL_PLANE_LB_DEV] if stack == "dev" else nlb_addresses(plan)
                flows += [(f"the control plane's load balancer at {lb}", lb, 443, "TCP") for lb in lbs]
            flows += [(target, network.pod(target), port, "TCP") for source, target, port in NEEDED if source == pod.what]
            broken += [f"{stack}/{cluster}: {pod.what} -> {name}" for name, target, port, protocol in flows
                       if not network.reaches(pod, target, port, protocol)]
            checked += len(flows)
    assert not broken, "\n".join(broken)
    assert checked > 50, checked


def test_a_virtual_clusters_control_plane_and_proxy_still_reach_their_api_server_and_the_issuer(charted: dict[str, Render]) -> None:
    """The virtual API server's syncer calls the host's API server, and it and the federation proxy inside fetch the
    issuer's keys (OpenUnison, through the control plane's load balancer): those, and nothing outside
    (test_no_pod_reaches_dragonflys_node_ports_the_metadata_or_the_nodes_unless_it_needs_them)."""
    broken, checked = [], 0
    for stack, cluster, plan, network in _clusters(charted):
        lbs = [CONTROL_PLANE_LB_DEV] if stack == "dev" else nlb_addresses(plan)
        for pod in network.pods:
            if pod.labels.get("app") == "vcluster":
                flows = [("the API server", *_api_server(plan, stack, cluster))]
            elif pod.labels.get(VCLUSTER_NAMESPACE_LABEL) == kube_oidc_proxy.NAMESPACE:
                flows = []
            else:
                continue
            flows += [(f"the issuer at {lb}", lb, 443) for lb in lbs]
            broken += [f"{stack}/{cluster}: {pod.what} -> {name}" for name, target, port in flows if not network.reaches(pod, target, port)]
            checked += len(flows)
    assert not broken, "\n".join(broken)
    assert checked >= 8, checked


def test_the_control_plane_load_balancers_networks_come_from_its_ingress_or_the_config(tmp_path: Path) -> None:
    """Where the egress policies reach Vault, Harbor and the issuer: on EKS the control plane's NLB's own addresses (its
    Ingress's EIPs), the control plane's MetalLB pool (the dev stack's 172.18.255.200-215), and anywhere but the metadata
    on a kubeconfig control plane without a pool (cloud-provider-kind's address on the hosts' network, which "the
    internet" would refuse)."""
    def load(path: Path, stack: str) -> Any:
        raw, secret_keys = read_stack_file(path)
        return load_platform_config(raw, stack=stack, source=str(path), secret_keys=secret_keys)

    ingress = SimpleNamespace(addresses=("198.51.100.1/32", "198.51.100.2/32"))  # Ingress.addresses: Outputs in the program
    assert control_plane_ingress(load(ROOT / "Pulumi.dev.yaml", "dev"), ingress) == ("172.18.255.200/29", "172.18.255.208/29")
    assert control_plane_ingress(load(ROOT / "Pulumi.prod.yaml", "prod"), ingress) == ingress.addresses
    no_pool = _write(tmp_path, DEV, lambda doc: doc["config"]["platform:services"]["metallb"]["addresses"].pop("controlPlane"))
    assert control_plane_ingress(load(no_pool, "dev"), ingress) == ("0.0.0.0/0",)
