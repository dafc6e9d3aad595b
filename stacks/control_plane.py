"""What the control-plane cluster receives: TLS, ingress, the identity provider and the services."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.cluster import ClusterHandle
from components.common import Exposure
from components.ingress import Ingress, IngressArgs, Route53Args
from components.tls import AcmeArgs, PlatformTls, PlatformTlsArgs
from stacks.config import PlatformConfig


@dataclass(frozen=True)
class Edge:
    """TLS and ingress of the control plane: how a service gets a hostname and a certificate."""

    tls: PlatformTls
    ingress: Ingress
    domain: str

    def expose(self, service: str) -> Exposure:
        hostname = f"{service}.{self.domain}"
        self.ingress.publish(hostname)
        return Exposure(
            hostname=hostname,
            ingress_class=self.ingress.ingress_class,
            cluster_issuer=self.tls.issuer_name,
            ca_bundle=self.tls.ca_bundle,
        )


def build_edge(cluster: ClusterHandle, config: PlatformConfig) -> Edge:
    services = config.services
    identity = cluster.aws_identity
    acme = (
        AcmeArgs(config.dns.acme_email, config.dns.acme_server, config.dns.hosted_zone_id, identity)
        if identity is not None and config.dns is not None
        else None
    )
    tls = PlatformTls(
        "platform-tls",
        cluster,
        PlatformTlsArgs(domain=config.domain, acme=acme, chart_version=services.cert_manager.chart_version),
    )
    route53 = (
        Route53Args(config.dns.hosted_zone_id, identity.provider) if identity is not None and config.dns is not None else None
    )
    ingress = Ingress(
        "ingress",
        cluster,
        IngressArgs(
            replicas=services.ingress.sizing.replicas,
            chart_version=services.ingress.chart_version,
            route53=route53,
        ),
    )
    return Edge(tls, ingress, config.domain)


def build_control_plane(cluster: ClusterHandle, config: PlatformConfig) -> dict[str, pulumi.Input[object]]:
    """Declare the shared services; returns their stack outputs."""
    edge = build_edge(cluster, config)
    return {"caBundle": edge.tls.ca_bundle}
