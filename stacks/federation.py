"""Token federation between the control plane and the workload clusters (components/federation.py).

Per workload cluster (dev, prod): the cluster trusts OpenUnison's tokens for its own audience
(EKS: an OIDC identity provider config; any other cluster: a kube-oidc-proxy), the federated
ArgoCD user gets its ClusterRole there, OpenUnison gets a Target and a token URL for it, and
ArgoCD gets a cluster Secret that asks for tokens through the credential plugin.

`ClusterFederation.add_remote_cluster` does the control-plane half for clusters declared elsewhere
(a tenant's virtual cluster); trusting the issuer and `FederatedAccess` inside that cluster
are its owner's part.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi

from components import openunison as openunison_component
from components.cluster import ClusterHandle
from components.federation import (
    FEDERATED_USER,
    USERNAME_PREFIX,
    ArgoClusterSecret,
    ArgoClusterSecretArgs,
    EksOidcTrust,
    EksOidcTrustArgs,
    FederatedAccess,
    FederatedAccessArgs,
    OpenUnisonRefs,
    OpenUnisonTarget,
    OpenUnisonTargetArgs,
    RemoteCluster,
    TokenBroker,
    TokenBrokerArgs,
    target_name,
)
from components.inventory import CredentialInventory
from components.kube_oidc_proxy import KubeOidcProxy, KubeOidcProxyArgs
from components.argocd import SLICE as ARGOCD
from components.service import WORKLOAD_CLUSTERS
from stacks.config import PlatformConfig
from stacks.control_plane import ControlPlane


def proxy_hostname(cluster: str, domain: str) -> str:
    """Where the control plane reaches a kubeconfig cluster's proxy: a DNS record its operators own."""
    return f"oumgmt-proxy.{cluster}.{domain}"


@dataclass
class ClusterFederation:
    """What ArgoCD federation declared; `add_remote_cluster` extends it."""

    control_plane: ClusterHandle | None = None
    openunison: OpenUnisonRefs | None = None
    broker: TokenBroker | None = None
    argocd_release: pulumi.Resource | None = None
    targets: dict[str, OpenUnisonTarget] = field(default_factory=dict)
    cluster_secrets: dict[str, ArgoClusterSecret] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return self.broker is not None

    def add_remote_cluster(self, remote: RemoteCluster) -> OpenUnisonTarget:
        """OpenUnison's Target and token URL for `remote`, and ArgoCD's Secret for it."""
        if not self.enabled:
            raise ValueError(f"{remote.name}: federation is off (ArgoCD is not enabled)")
        assert self.control_plane and self.openunison and self.broker and self.argocd_release
        if remote.name in self.targets:
            raise ValueError(f"{remote.name}: remote cluster declared twice")
        target = OpenUnisonTarget(
            f"{remote.name}-federation",
            self.control_plane,
            OpenUnisonTargetArgs(remote.name, remote.server_url, remote.ca_data, self.openunison, self.broker),
            pulumi.ResourceOptions(parent=remote.parent),
        )
        self.targets[remote.name] = target
        self.cluster_secrets[remote.name] = ArgoClusterSecret(
            f"{remote.name}-argocd-cluster",
            self.control_plane,
            ArgoClusterSecretArgs(
                cluster_name=remote.name,
                server_url=remote.server_url,
                ca_data=remote.ca_data,
                target=target.name,
                environment=remote.environment,
                argocd_release=self.argocd_release,
                tenant=remote.tenant,
                depends_on=[target.api, *remote.depends_on],
            ),
            pulumi.ResourceOptions(parent=remote.parent),
        )
        self.outputs.setdefault("clusters", {})[remote.name] = {"server": remote.server_url, "target": target.name}
        return target


def build_federation(
    clusters: dict[str, ClusterHandle], config: PlatformConfig, control_plane: ControlPlane, inventory: CredentialInventory
) -> ClusterFederation:
    """Trust between the control plane and the workload clusters, for ArgoCD; the proxies' keys go to `inventory`."""
    argocd = control_plane.parts.get(ARGOCD)
    if argocd is None:
        return ClusterFederation()  # nothing asks for tokens
    identity = control_plane.parts.require(openunison_component.SLICE)
    openunison = OpenUnisonRefs(
        url=identity.portal_url.rstrip("/"),
        namespace=openunison_component.NAMESPACE,
        operator_release=identity.operator_release,
        portal_release=identity.portal_release,
        ca_bundle=control_plane.parts.tls.ca_bundle,
    )
    cp = clusters["control-plane"]
    federation = ClusterFederation(
        control_plane=cp,
        openunison=openunison,
        broker=TokenBroker("federation-token-broker", cp, TokenBrokerArgs(openunison)),
        argocd_release=argocd.release,
        outputs={"issuerUrl": openunison.issuer_url, "user": FEDERATED_USER},
    )
    for name in WORKLOAD_CLUSTERS:
        handle = clusters[name]
        audience = target_name(name)
        trust: list[pulumi.Resource] = [FederatedAccess(f"{name}-federated-access", handle, FederatedAccessArgs())]
        if handle.is_eks:
            assert handle.eks_cluster_name is not None
            trust.append(
                EksOidcTrust(f"{name}-oidc-trust", handle, EksOidcTrustArgs(handle.eks_cluster_name, openunison.issuer_url, audience))
            )
            server_url, ca_data = handle.endpoint, handle.ca_data
        else:
            proxy = KubeOidcProxy(
                f"{name}-kube-oidc-proxy",
                handle,
                KubeOidcProxyArgs(
                    hostname=proxy_hostname(name, config.domain),
                    issuer_url=openunison.issuer_url,
                    audience=audience,
                    username_prefix=USERNAME_PREFIX,
                    impersonable_users=[FEDERATED_USER],
                    issuer_ca_bundle=openunison.ca_bundle,
                    inventory=inventory,
                    issuer_networks=control_plane.ingress_networks,
                ),
            )
            trust.append(proxy)
            server_url, ca_data = proxy.server_url, proxy.ca_data
        federation.add_remote_cluster(RemoteCluster(name, server_url, ca_data, environment=name, depends_on=trust))
    return federation
