"""The tenants' ingress on a workload cluster: Traefik (the chart the control plane pins) and a
wildcard certificate for the environment.

Tenants publish `<tenant>.<env>.<apps domain>` (components/tenant_names.py; platform:appsDomain, another
site than the platform's, README: Tenants' hosts and cookies): one certificate `*.<env>.<apps domain>` per
environment is Traefik's default certificate, so a tenant's Ingress names
its host and `tls` without a secret and never holds the key. On EKS the cluster's cert-manager
gets it by ACME DNS-01; on kubeconfig stacks the program signs it with the platform root
(components/tls.py `signed_tls_secret`), so no CA key is on this cluster, where this Traefik
and others read every Secret: a CA there would sign any name the platform's clients trust. A Gatekeeper constraint per tenant namespace keeps each tenant on its own host
(policy/gatekeeper, `PlatformTenantIngressHosts`), and the tenant's default-deny NetworkPolicy
admits this controller's pods only (components/tenant.py).

Plain HTTP only redirects to HTTPS. Traefik's Prometheus metrics carry the service label the
canary analyses query (components/prometheus.py, components/tenant_rollout.py). On EKS the
wildcard name gets a Route 53 record pointing at the load balancer.

Traefik parses every request from the internet to every tenant, so its pods reach only what they
serve (an egress NetworkPolicy): the cluster DNS, the cluster's API server (both its providers build
their client with `rest.InClusterConfig()`, traefik v3.6.2 pkg/provider/kubernetes/ingress/client.go:65,
crd/client.go:109), every pod of the tenant namespaces (an Ingress's backends are its Service's
EndpointSlice addresses, the pods: ingress/kubernetes.go:633-658; ExternalName Services stay refused,
:521), and each platform backend a route of theirs names (`route`). Nothing else on the pod network
(Dragonfly's seed peers and scheduler take no credential), no node, no metadata, no internet: no
plugin, tracer or forward-auth is configured, ACME is cert-manager's, and the version check
(update.traefik.io, cmd/traefik/traefik.go:117) is off.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components import tls
from components.cluster import ClusterHandle
from components.egress import Admit, admit, dns, from_anywhere, hold_egress, hold_pods, pods_in, to_api_server, to_pods_in
from components.helm import grant, namespace, rbac_rule
from components.ingress import TRAEFIK_API, Nlb, Route53Args, traefik_values
from components.inventory import STATE, Credential, CredentialInventory, program_certificate
from components.service import WORKLOAD_CLUSTERS, CertificateAuthority, ClusterParts, PlatformNamespace, ServiceSettings, ServiceSlice
from policy.labels import TENANT_NAMESPACE_LABEL, managed_by

NAMESPACE = "apps-ingress"
RELEASE = "traefik"
INGRESS_CLASS = "apps"
METRICS_PORT = "metrics"  # the chart's container port name for Prometheus metrics
METRICS_CONTAINER_PORT = 9100  # its number (the chart's default ports.metrics.port)
ENTRY_PORTS = (8000, 8443)  # the entry points' container ports (the chart's defaults ports.web.port, ports.websecure.port)
POD_LABELS = {"app.kubernetes.io/name": "traefik"}  # what the chart labels Traefik's pods with
WILDCARD_SECRET = "wildcard-tls"


def from_ingress_controller() -> k8s.networking.v1.NetworkPolicyPeerArgs:
    """Traefik's pods, as the peer of a backend's ingress rule (a tenant's namespace, a platform route's pods)."""
    return pods_in(NAMESPACE, POD_LABELS)


def wildcard(environment: str, domain: str) -> str:
    return f"*.{tls.cluster_domain(environment, domain)}"


@dataclass(frozen=True)
class WorkloadIngressArgs:
    domain: str
    issuer: tls.PlatformTls  # cert-manager (and, with ACME, the platform issuer) on this cluster
    settings: ServiceSettings  # replicas, chart version, sizing
    route53: Route53Args | None = None  # EKS: a record for the wildcard name
    signer: CertificateAuthority | None = None  # without ACME: the platform root, which signs the wildcard
    inventory: CredentialInventory = field(default_factory=CredentialInventory)


class WorkloadIngress(pulumi.ComponentResource):
    release: k8s.helm.v3.Release
    ingress_class: str = INGRESS_CLASS
    hostname: str  # the wildcard name it serves

    def __init__(self, name: str, cluster: ClusterHandle, args: WorkloadIngressArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:workload_ingress:WorkloadIngress", name, None, opts)
        ns = namespace(SLICE.namespace, cluster, self)
        self._name, self._ns, self._opts = name, ns, pulumi.ResourceOptions(parent=self, provider=cluster.provider)
        egress = self._egress("egress", [
            dns(),
            *to_api_server(cluster.api_server),  # what Traefik's providers watch
            # Every tenant namespace (sandboxes and virtual clusters' host namespaces too), on any port a Service targets.
            k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=[k8s.networking.v1.NetworkPolicyPeerArgs(
                namespace_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={TENANT_NAMESPACE_LABEL: "true"}))]),
        ])
        # Its pods take the entry points from anywhere (the load balancer's clients come through the nodes); the metrics
        # (per-tenant request counts) only from whom `admit_metrics` names; the ping and dashboard port (8080) nothing
        # but the node's kubelet probes (which every CNI admits: egress.hold_namespace).
        admitted = hold_pods(name, ns, [from_anywhere("entrypoints", POD_LABELS, ENTRY_PORTS)], self._opts)
        self.hostname = wildcard(cluster.role, args.domain)
        if args.signer is not None:
            certificate: pulumi.Resource = tls.signed_tls_secret(
                f"{name}-wildcard", args.signer, tls.ServingCertificate(WILDCARD_SECRET, NAMESPACE, (self.hostname,)),
                pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[ns]))
            args.inventory.register(wildcard_credential(name, cluster.role, self.hostname))
        else:
            assert args.issuer.issuer_name is not None, "a workload cluster's issuer is ACME where the program does not sign"
            certificate = k8s.apiextensions.CustomResource(
                f"{name}-wildcard",
                api_version="cert-manager.io/v1",
                kind="Certificate",
                metadata={"name": "wildcard", "namespace": NAMESPACE, "labels": managed_by()},
                spec={
                    "secretName": WILDCARD_SECRET,
                    "dnsNames": [self.hostname],
                    "issuerRef": {"kind": "ClusterIssuer", "name": args.issuer.issuer_name},
                    "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
                },
                opts=pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[ns, args.issuer.release]),
            )
        self.release = SLICE.release(
            cluster,
            self,
            args.settings,
            {
                # EKS: internet-facing, in the public subnets the controller picks, at AWS's addresses (the tenants' users
                # reach it by the wildcard name, which follows the NLB's).
                **traefik_values(args.settings, INGRESS_CLASS, Nlb() if cluster.is_eks else None),
                # The service label of each request counter: what the canary analyses select on.
                "metrics": {"prometheus": {"addServicesLabels": True}},
                # No daily call to update.traefik.io: its egress holds no internet.
                "global": {"checkNewVersion": False},
            },
            ns=ns,
            depends_on=[egress, *admitted],
        )
        # Traefik's default certificate: what it serves for every tenant host (CRDs come with the release).
        k8s.apiextensions.CustomResource(
            f"{name}-default-certificate",
            api_version=TRAEFIK_API,
            kind="TLSStore",
            metadata={"name": "default", "namespace": NAMESPACE, "labels": managed_by()},
            spec={"defaultCertificate": {"secretName": WILDCARD_SECRET}},
            opts=pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[self.release, certificate]),
        )
        if args.route53 is not None:
            self._record(name, cluster, args.route53)
        self.register_outputs({"hostname": self.hostname, "ingressClass": INGRESS_CLASS})

    def route(self, name: str, namespace: str, pods: dict[str, str], port: int) -> k8s.networking.v1.NetworkPolicy:
        """Traefik's pods reach `pods` of the platform's `namespace` on `port`: the backend of a route there
        on this class (Traefik's egress holds every other platform pod). What the route waits for."""
        return self._egress(f"to-{name}", [to_pods_in(namespace, pods, [port])])

    def admit_metrics(self, name: str, peer: k8s.networking.v1.NetworkPolicyPeerArgs) -> k8s.networking.v1.NetworkPolicy:
        """`peer` (Prometheus's server) connects to Traefik's metrics port: the only client of its per-tenant counts."""
        return admit(self._name, self._ns, Admit(f"metrics-{name}", POD_LABELS, [peer], (METRICS_CONTAINER_PORT,)), self._opts)

    def grant_discovery(self, name: str, account: dict[str, str]) -> pulumi.Resource:
        """`account` (Prometheus's server) lists and watches the pods of Traefik's namespace, what its scrape discovers,
        and nothing else: a Role here, not the chart's cluster-wide reads."""
        opts = pulumi.ResourceOptions.merge(self._opts, pulumi.ResourceOptions(depends_on=[self._ns]))
        return grant(f"{self._name}-{name}-discovery", f"{name}-discovery", account, [rbac_rule([""], ["pods"], ("list", "watch"))],
                     opts, namespace=NAMESPACE)

    def _egress(self, name: str, rules: list[k8s.networking.v1.NetworkPolicyEgressRuleArgs]) -> k8s.networking.v1.NetworkPolicy:
        return hold_egress(self._name, self._ns, name, POD_LABELS, rules, self._opts)

    def _record(self, name: str, cluster: ClusterHandle, route53: Route53Args) -> None:
        """`*.<env>.<apps domain>` to the load balancer (in that domain's zone), read back after the release (during `up`,
        never by the program)."""
        lb = k8s.core.v1.Service.get(
            f"{name}-lb",
            f"{NAMESPACE}/{RELEASE}",
            opts=pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[self.release]),
        )
        aws.route53.Record(
            f"{name}-wildcard",
            zone_id=route53.hosted_zone_id,
            name=self.hostname,
            type="CNAME",
            ttl=300,
            records=[lb.status.apply(lambda s: s.load_balancer.ingress[0].hostname)],
            opts=pulumi.ResourceOptions(parent=self, provider=route53.provider),
        )


def wildcard_credential(name: str, cluster: str, hostname: str) -> Credential:
    return program_certificate(
        f"wildcard certificate {hostname} on {cluster}",
        signed="signed by the platform CA",
        holder=f"Traefik on {cluster} (Secret {NAMESPACE}/{WILDCARD_SECRET}) and {STATE}",
        scope=f"authenticates the tenants' hosts under {hostname} to clients",
        hours=tls.SERVING_DAYS * 24,
        rotation=tls.SERVING_ROTATION,
        resources=(f"{name}-wildcard-key", f"{name}-wildcard"),
    )


def on_cluster(parts: ClusterParts, settings: ServiceSettings) -> WorkloadIngress | None:
    issuer = parts.get(tls.SLICE)
    assert issuer is not None, "stacks.config refuses workloadIngress without certManager"
    aws_provider = parts.cluster.aws_provider
    route53 = Route53Args(parts.acme.hosted_zone_id, aws_provider) if parts.acme and aws_provider else None
    return WorkloadIngress(
        f"{parts.cluster.role}-workload-ingress",
        parts.cluster,
        WorkloadIngressArgs(parts.served_domain, issuer, settings, route53, None if issuer.issuer_name else parts.ca, parts.inventory),
    )


SLICE: ServiceSlice[WorkloadIngress] = ServiceSlice(
    key="workload_ingress",
    namespace=PlatformNamespace(NAMESPACE, "the ingress controller of the tenants' applications"),
    chart="traefik",
    default_replicas=2,
    on_cluster=on_cluster,
    clusters=WORKLOAD_CLUSTERS,
)
