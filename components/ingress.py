"""The ingress controller (Traefik) and, on EKS, a Route 53 record per hostname.

Traefik: maintained upstream, serves the Kubernetes Ingress API that the GitLab, Harbor,
ArgoCD, Vault and OpenUnison charts emit, so no chart needs a controller-specific route.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.cluster import ClusterHandle
from components.helm import namespace, release

NAMESPACE = "traefik"
INGRESS_CLASS = "traefik"


@dataclass(frozen=True)
class Route53Args:
    hosted_zone_id: str
    provider: pulumi.ProviderResource


@dataclass(frozen=True)
class IngressArgs:
    replicas: int = 2
    chart_version: str | None = None
    route53: Route53Args | None = None  # set on EKS: records for every published hostname


class Ingress(pulumi.ComponentResource):
    release: k8s.helm.v3.Release
    ingress_class: str = INGRESS_CLASS

    def __init__(self, name: str, cluster: ClusterHandle, args: IngressArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:ingress:Ingress", name, None, opts)
        self._name, self._args = name, args
        ns = namespace(NAMESPACE, cluster, self)
        service: dict = {"type": "LoadBalancer"}
        if args.route53 is not None:
            service["annotations"] = {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}
        self.release = release(
            "traefik",
            "traefik",
            ns,
            {
                "deployment": {"replicas": args.replicas},
                "ingressClass": {"enabled": True, "isDefaultClass": True, "name": INGRESS_CLASS},
                "providers": {"kubernetesIngress": {"enabled": True, "publishedService": {"enabled": True}}},
                # Plain HTTP only redirects: every hostname is served with a platform certificate.
                "ports": {"web": {"redirections": {"entryPoint": {"to": "websecure", "scheme": "https", "permanent": True}}}},
                "service": service,
            },
            cluster,
            self,
            version=args.chart_version,
        )
        self._load_balancer: pulumi.Output[str] | None = None
        if args.route53 is not None:
            # Read back after the release: the engine reads it during `up`, the program never does.
            lb = k8s.core.v1.Service.get(
                f"{name}-lb",
                f"{NAMESPACE}/traefik",
                opts=pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[self.release]),
            )
            self._load_balancer = lb.status.apply(lambda s: s.load_balancer.ingress[0].hostname)
        self.register_outputs({"ingressClass": INGRESS_CLASS})

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
