"""The ingress controller (Traefik) and, on EKS, a Route 53 record per hostname.

Traefik: maintained upstream. Every route it serves is the platform's own, in Traefik's namespace
(`route`, `tcp_route`: GitLab's, Harbor's, ArgoCD's, Vault's and OpenUnison's): Traefik lists and
watches every Secret of each namespace it watches, and watches no other.

SSH (git over SSH to GitLab) goes through the same load balancer: a TCP entrypoint on port 22
and an `IngressRouteTCP` per backend (`tcp_route`). One load balancer keeps one address per
hostname, so `git@gitlab.<domain>` resolves to the name the web UI already publishes; a
LoadBalancer Service of gitlab-shell's own would need a second address and DNS name (and a
second NLB on EKS). Only `web` and `websecure` are default entrypoints, so the Ingress API's
HTTP routers never attach to the SSH port: with TCP routes alone there, Traefik hands each
connection straight to its route, without the read deadline it keeps for HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.backend_tls import custom_resource
from components.cluster import ClusterHandle, aws_tags
from components.common import Backend, Exposure, Ipv4Cidr, TcpEntrypoint
from components.egress import dns, pods_in, tcp, to_networks
from components.helm import bind, grant, namespace, rbac_rule, spread
from components.service import ControlPlaneParts, PlatformNamespace, ServiceSettings, ServiceSlice
from policy.labels import managed_by

NAMESPACE = "traefik"
INGRESS_CLASS = "traefik"
UNSERVED_CLASS = "unserved"  # no IngressClass has this name: a chart's Ingress that cannot be turned off names it
# The chart's pod labels (release "traefik" in namespace "traefik"), for its topology spread.
POD_LABELS = {"app.kubernetes.io/name": "traefik", "app.kubernetes.io/instance": f"traefik-{NAMESPACE}"}
SSH_ENTRYPOINT = "ssh"
SSH_PORT = 22  # on the load balancer: what `git@host:...` URLs reach
SSH_CONTAINER_PORT = 2222  # Traefik runs unprivileged and cannot bind 22 in its pod
TRAEFIK_API = "traefik.io/v1alpha1"
HTTPS_PORT = 443  # on the load balancer
HTTPS_CONTAINER_PORT = 8443  # Traefik's websecure container port: GitLab, Harbor and Vault behind it
LISTENERS = {HTTPS_PORT: HTTPS_CONTAINER_PORT, SSH_PORT: SSH_CONTAINER_PORT}  # load balancer port -> Traefik's


# Plain HTTP only redirects: every hostname is served with a platform certificate.
HTTP_REDIRECT = {"asDefault": True, "redirections": {"entryPoint": {"to": "websecure", "scheme": "https", "permanent": True}}}

# How long Traefik waits for a whole request on the HTTPS entrypoint (uploads, image pushes).
READ_TIMEOUT = "1800s"


# The AWS Load Balancer Controller's class (v3.5.0 pkg/config/service_config.go:7). A Service naming it is the
# controller's alone (pkg/service/service_utils.go:54-58); the cloud controller (EKS's) leaves a Service with any
# class alone (k8s.io/cloud-provider controllers/service/controller.go `wantsLoadBalancer`).
NLB_CLASS = "service.k8s.aws/nlb"
_NLB_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-"  # the suffixes: pkg/annotations/constants.go:86-116


@dataclass(frozen=True)
class Nlb:
    """An internet-facing NLB of the AWS Load Balancer Controller for Traefik's Service, pinned whatever runs: left to
    defaults, the controller's webhook claims the Service (webhooks/core/service_mutator.go:46-51, on by default: chart
    values.yaml:485) and makes it `internal` (its default scheme, pkg/config/controller_config.go:179), and without the
    controller EKS's cloud controller makes it internet-facing. `subnets` with `allocations`, the same count in the
    same order (the controller refuses another: pkg/service/model_build_load_balancer.go:330-336): where it goes and
    the EIP each subnet's address is. None: the controller picks the cluster's public subnets (kubernetes.io/role/elb)
    and AWS the addresses."""

    subnets: Sequence[pulumi.Input[str]] = ()
    allocations: Sequence[pulumi.Input[str]] = ()

    def service(self) -> dict[str, Any]:
        """The chart's `service` values (37.4.0: `loadBalancerClass` is templates/_service.tpl:25-26)."""
        annotations: dict[str, pulumi.Input[str]] = {
            # `external` (pkg/service/model_builder.go:31) is the controller's own type (service_utils.go:72-74), not the in-tree `nlb`;
            # IP targets: the NLB sends to Traefik's pods, not through a node port.
            f"{_NLB_ANNOTATION}type": "external",
            f"{_NLB_ANNOTATION}nlb-target-type": "ip",
            f"{_NLB_ANNOTATION}scheme": "internet-facing",  # model_build_load_balancer.go:256-268
        }
        if self.subnets:
            # String lists, comma-separated (model_build_load_balancer.go:329 and 438; docs/guide/service/annotations.md).
            annotations[f"{_NLB_ANNOTATION}subnets"] = pulumi.Output.all(*self.subnets).apply(",".join)
            annotations[f"{_NLB_ANNOTATION}eip-allocations"] = pulumi.Output.all(*self.allocations).apply(",".join)
        return {"type": "LoadBalancer", "loadBalancerClass": NLB_CLASS, "annotations": annotations}


def traefik_values(settings: ServiceSettings, ingress_class: str, nlb: Nlb | None, ports: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the platform's and the tenants' Traefik share: the default IngressClass `ingress_class`,
    HTTPS with plain HTTP redirected to it (and `ports` besides), a LoadBalancer Service (EKS: `nlb`),
    the settings' replicas and sizing."""
    service: dict[str, Any] = nlb.service() if nlb is not None else {"type": "LoadBalancer"}
    return {
        "deployment": {"replicas": settings.replicas},
        "ingressClass": {"enabled": True, "isDefaultClass": True, "name": ingress_class},
        "providers": {"kubernetesIngress": {"enabled": True, "publishedService": {"enabled": True}}},
        "ports": {"web": HTTP_REDIRECT, "websecure": {"asDefault": True}, **(ports or {})},
        "service": service,
        "resources": settings.resources,
    }


@dataclass(frozen=True)
class Route53Args:
    hosted_zone_id: str
    provider: pulumi.ProviderResource


@dataclass(frozen=True)
class IngressArgs:
    settings: ServiceSettings  # replicas, chart version, sizing
    route53: Route53Args | None = None  # set on EKS: records for every published hostname
    protect: bool = False  # its NLB's addresses: in every client's egress policy and in partners' allowlists


# What Traefik v3.6 reads in the namespace it watches, its own: the chart's namespaced Role (`rbac.namespaced`,
# templates/rbac/role.yaml), granted by the platform; the chart's ClusterRole reads every Secret.
NAMESPACED_RULES = [
    rbac_rule([""], ["configmaps", "services"]),
    rbac_rule(["discovery.k8s.io"], ["endpointslices"], ("list", "watch")),
    rbac_rule([""], ["pods"], ("get",)),
    rbac_rule([""], ["secrets"]),
    rbac_rule(["extensions", "networking.k8s.io"], ["ingresses"]),
    rbac_rule(["extensions", "networking.k8s.io"], ["ingresses/status"], ("update",)),
    rbac_rule(["traefik.io"], ["ingressroutes", "ingressroutetcps", "ingressrouteudps", "middlewares", "middlewaretcps", "tlsoptions",
                               "tlsstores", "traefikservices", "serverstransports", "serverstransporttcps"]),
]
# And cluster-wide, what its ClusterRole grants besides: the IngressClasses its Ingresses name (Traefik
# skips an Ingress whose class it cannot look up) and the Nodes both its providers watch.
CLUSTER_SCOPE_RULES = [rbac_rule(["networking.k8s.io"], ["ingressclasses"]), rbac_rule([""], ["nodes"])]
ACCOUNT = {"kind": "ServiceAccount", "name": "traefik", "namespace": NAMESPACE}  # the chart's, named after the release


class Ingress(pulumi.ComponentResource):
    release: k8s.helm.v3.Release
    ssh: TcpEntrypoint
    # Where its load balancer is, as /32 CIDRs, when the program owns the addresses (EKS: the NLB's EIPs; else none).
    addresses: tuple[pulumi.Output[str], ...]

    def __init__(self, name: str, cluster: ClusterHandle, args: IngressArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:ingress:Ingress", name, None, opts)
        self._name, self._args = name, args
        self.addresses = ()
        nlb = self._nlb(name, cluster) if cluster.is_eks else None
        ports = {
            # Traefik 3 cuts a request whose body takes longer than 60 s to read: large Harbor
            # pushes and GitLab uploads take longer. 30 minutes bounds a stalled client.
            "websecure": {"asDefault": True, "transport": {"respondingTimeouts": {"readTimeout": READ_TIMEOUT}}},
            SSH_ENTRYPOINT: {
                "port": SSH_CONTAINER_PORT,
                "exposedPort": SSH_PORT,
                "expose": {"default": True},
                "protocol": "TCP",
            },
        }
        values = traefik_values(args.settings, INGRESS_CLASS, nlb, ports=ports)
        watched = [NAMESPACE]
        # ExternalName Services: the routes `route` and `tcp_route` declare in Traefik's namespace reach their
        # backends by name. The CRD provider's routes only: no account but the platform's creates those where
        # Traefik watches. The tenants' Traefik (components/workload_ingress.py) keeps them refused.
        values["providers"]["kubernetesIngress"]["namespaces"] = watched
        values["providers"]["kubernetesCRD"] = {"namespaces": watched, "allowExternalNameServices": True}
        ns = namespace(SLICE.namespace, cluster, self)
        child = pulumi.ResourceOptions(parent=self, provider=cluster.provider)
        reads = grant(f"{name}-cluster-scope", "traefik-cluster-scope", ACCOUNT, CLUSTER_SCOPE_RULES, child)
        namespaced = k8s.rbac.v1.ClusterRole(
            f"{name}-namespaced", metadata={"name": "traefik-namespaced", "labels": managed_by()}, rules=NAMESPACED_RULES, opts=child)
        serve = bind(f"{name}-{NAMESPACE}", ACCOUNT, namespaced, pulumi.ResourceOptions(
            parent=self, provider=cluster.provider, depends_on=[ns]), NAMESPACE, binding="traefik")
        self.release = SLICE.release(
            cluster,
            self,
            args.settings,
            {
                **values,
                "rbac": {"enabled": False},  # granted above
                "topologySpreadConstraints": spread(POD_LABELS),
                **({"podDisruptionBudget": {"enabled": True, "maxUnavailable": 1}} if args.settings.replicas > 1 else {}),
            },
            ns=ns,
            depends_on=[reads, serve],
        )
        self.ssh = TcpEntrypoint(SSH_ENTRYPOINT, SSH_PORT, self.release)
        self._load_balancer: pulumi.Output[str] | None = None
        if args.route53 is not None:
            # Read back after the release: the engine reads it during `up`, the program never does.
            lb = k8s.core.v1.Service.get(
                f"{name}-lb",
                f"{NAMESPACE}/traefik",
                opts=pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[self.release]),
            )
            self._load_balancer = lb.status.apply(lambda s: s.load_balancer.ingress[0].hostname)
        self.register_outputs({"ingressClass": INGRESS_CLASS, "addresses": list(self.addresses)})

    def _nlb(self, name: str, cluster: ClusterHandle) -> Nlb:
        """The NLB in the cluster's public subnets, at an EIP of the program's in each: addresses that outlive the NLB,
        which every client's egress policy names (`addresses`)."""
        assert cluster.public_subnet_ids and cluster.aws_provider, "stacks/config.py: an EKS control plane has public subnets"
        on_aws = pulumi.ResourceOptions(parent=self, provider=cluster.aws_provider, protect=self._args.protect)
        eips = [aws.ec2.Eip(f"{name}-nlb-{index}", domain="vpc", tags={**aws_tags(cluster.role), "Name": f"{cluster.role}-ingress-{index}"},
                            opts=on_aws) for index in range(len(cluster.public_subnet_ids))]
        self.addresses = tuple(eip.public_ip.apply(lambda ip: f"{ip}/32") for eip in eips)
        return Nlb(cluster.public_subnet_ids, tuple(eip.allocation_id for eip in eips))

    def publish(self, hostname: str) -> None:
        """Point `hostname` at the load balancer (EKS); kubeconfig clusters manage their own DNS."""
        if self._args.route53 is None or self._load_balancer is None:
            return
        aws.route53.Record(
            f"{self._name}-{hostname}",
            zone_id=self._args.route53.hosted_zone_id,
            name=hostname,
            type="CNAME",
            ttl=300,
            records=[self._load_balancer],
            opts=pulumi.ResourceOptions(parent=self, provider=self._args.route53.provider),
        )


def external_name(name: str, backend: Backend, opts: pulumi.ResourceOptions) -> k8s.core.v1.Service:
    """Service `<backend.service>` in Traefik's namespace, of type ExternalName: `backend`'s in-cluster DNS name.

    Traefik dials that name and port (Traefik v3.6.2 pkg/provider/kubernetes/crd/kubernetes_http.go
    lines 550-562, crd/kubernetes_tcp.go lines 269-273: one server, the name and the Service's port,
    with the route's scheme), so it reaches the backend through
    its ClusterIP without watching the backend's namespace, whose Secrets it would then list. `opts`: parent,
    provider, and depending on Traefik's release (its namespace).
    """
    return k8s.core.v1.Service(
        f"{name}-{backend.service}",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=backend.service, namespace=NAMESPACE, labels=managed_by()),
        spec=k8s.core.v1.ServiceSpecArgs(
            type="ExternalName", external_name=backend.dns_name,
            ports=[k8s.core.v1.ServicePortArgs(name=f"tcp-{backend.port}", port=backend.port)],
        ),
        opts=opts,
    )


def public_certificate(
    name: str, secret: str, namespace: str, exposure: Exposure, opts: pulumi.ResourceOptions
) -> k8s.apiextensions.CustomResource:
    """`exposure`'s public name's certificate from the platform's ClusterIssuer, in Secret `secret` of `namespace`,
    with a new key at each renewal. Awaited: the first call to the name (a service's provider, VaultInit) must
    meet this certificate, not Traefik's default one."""
    return custom_resource(
        name, "cert-manager.io/v1", "Certificate", secret, namespace,
        {
            "secretName": secret,
            "issuerRef": {"name": exposure.cluster_issuer, "kind": "ClusterIssuer", "group": "cert-manager.io"},
            "dnsNames": [exposure.hostname],
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
        },
        opts,
        wait=True,
    )


def route(name: str, object_name: str, exposure: Exposure, paths: Mapping[str, Backend],
          opts: pulumi.ResourceOptions, middlewares: Mapping[str, Sequence[str]] | None = None) -> k8s.apiextensions.CustomResource:
    """`https://<hostname><path>` to each path's backend (plain HTTP, or HTTPS through its `transport`; Traefik ranks
    the longer rule first): IngressRoute `object_name` in Traefik's own namespace, with its certificate (Secret
    `<object_name>-tls`, issued there), and a Service per backend (`external_name`): the backends' namespaces, and
    the Secrets in them, stay out of Traefik's reach. An IngressRoute, not an Ingress: only the CRD provider
    allows ExternalName Services, and no account but the platform's creates Traefik's routes (an Ingress, and a
    Service, OpenUnison's operator may create in its watched namespace). `middlewares`: a path's Middlewares in
    Traefik's namespace, in the order they run (an unqualified name is the route's namespace's: Traefik v3.6.2
    crd/kubernetes_http.go makeMiddlewareKeys, line 197). `opts` as there."""
    services = [external_name(name, backend, opts) for backend in dict.fromkeys(paths.values())]
    secret = f"{object_name}-tls"
    certificate = public_certificate(f"{name}-public-tls", secret, NAMESPACE, exposure, opts)

    def to(backend: Backend) -> dict[str, Any]:
        over_tls = {"scheme": "https", "serversTransport": backend.transport} if backend.transport else {}
        return {"name": backend.service, "port": backend.port, **over_tls}

    return k8s.apiextensions.CustomResource(
        f"{name}-route",
        api_version=TRAEFIK_API,
        kind="IngressRoute",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=object_name, namespace=NAMESPACE, labels=managed_by()),
        spec={
            "routes": [{"kind": "Rule", "match": f"Host(`{exposure.hostname}`) && PathPrefix(`{path}`)", "services": [to(backend)],
                        **({"middlewares": [{"name": m} for m in chain]} if (chain := (middlewares or {}).get(path)) else {})}
                       for path, backend in paths.items()],
            "tls": {"secretName": secret},
        },
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[*services, certificate])),
    )


def tcp_route(
    name: str,
    object_name: str,
    entrypoint: TcpEntrypoint,
    backend: Backend,
    cluster: ClusterHandle,
    parent: pulumi.Resource,
) -> k8s.apiextensions.CustomResource:
    """Every connection to `entrypoint` goes to `backend`, unchanged: IngressRouteTCP `object_name` in Traefik's
    own namespace, towards `external_name`'s Service.

    No `tls`: the route passes the bytes through, so a protocol with its own encryption and
    server authentication (SSH) keeps them end to end. Plain TCP carries no host name, so the
    route matches every connection (HostSNI `*`): one backend per entrypoint.
    """
    opts = pulumi.ResourceOptions(parent=parent, provider=cluster.provider, depends_on=[entrypoint.controller])
    service = external_name(name, backend, opts)
    return k8s.apiextensions.CustomResource(
        name,
        api_version=TRAEFIK_API,
        kind="IngressRouteTCP",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=object_name, namespace=NAMESPACE, labels=managed_by()),
        spec={
            "entryPoints": [entrypoint.name],
            "routes": [{"match": "HostSNI(`*`)", "services": [{"name": backend.service, "port": backend.port}]}],
        },
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[service])),
    )


LoadBalancerCidr = Ipv4Cidr  # config: where the load balancer's addresses are, where the program does not own them


def from_ingress_controller() -> k8s.networking.v1.NetworkPolicyPeerArgs:
    """Traefik's pods, as an ingress rule's peer: what routes the public names to a service's pods."""
    return pods_in(NAMESPACE, POD_LABELS)


def egress_to_platform(ports: Sequence[int], load_balancer: Sequence[pulumi.Input[str]]) -> list[k8s.networking.v1.NetworkPolicyEgressRuleArgs]:
    """Egress rules for pods that reach the platform's services by their public names on the load
    balancer's `ports` (LISTENERS): the cluster DNS, Traefik's pods, where the cluster hands the load
    balancer's address straight to them (kube-proxy does for MetalLB's), and `load_balancer`, where it
    does not (`load_balancer_networks`: an NLB on EKS, whose public addresses the pods connect to)."""
    traefik = k8s.networking.v1.NetworkPolicyPeerArgs(
        namespace_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={"kubernetes.io/metadata.name": NAMESPACE}),
    )
    return [
        dns(),
        k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=[traefik], ports=tcp(*(LISTENERS[p] for p in ports))),
        *to_networks(load_balancer, ports),
    ]


def load_balancer_networks(parts: ControlPlaneParts, settings: ServiceSettings) -> tuple[pulumi.Input[str], ...]:
    """Where a control-plane service's pods reach the load balancer beside Traefik's pods (`egress_to_platform`): its
    own addresses (EKS: the NLB's EIPs) and the service's `loadBalancerCidrs` (a kubeconfig cluster whose load
    balancer's address is not handed to Traefik's pods, such as a cloud's)."""
    return (*settings.options["load_balancer_cidrs"], *parts.ingress.addresses)


def declare(parts: ControlPlaneParts, settings: ServiceSettings) -> Ingress:
    public = parts.public_dns
    route53 = Route53Args(public.acme.hosted_zone_id, public.aws.provider) if public else None
    return Ingress("ingress", parts.cluster, IngressArgs(settings, route53, parts.settings.protect))


SLICE: ServiceSlice[Ingress] = ServiceSlice(
    key="ingress",
    namespace=PlatformNamespace(NAMESPACE, "the ingress controller"),
    chart="traefik",
    declare=declare,
)
