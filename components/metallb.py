"""MetalLB on kubeconfig clusters: `LoadBalancer` Services get an address from the cluster's pool
(`platform:services.metallb.addresses.<cluster>`), announced on the local network by ARP (L2).

A cluster without a pool gets no MetalLB: on kind, run `cloud-provider-kind` beside the clusters
instead (README, Network). EKS clusters use the AWS Load Balancer Controller.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Sequence

import pulumi
from pydantic import AfterValidator, Field
from pydantic.alias_generators import to_camel

from components.backend_tls import custom_resource
from components.cluster import ClusterHandle
from components.egress import Reach
from components.inventory import internal_secret
from components.service import AddOnArgs, ChartAddOn, ClusterParts, PlatformNamespace, ServiceSettings, ServiceSlice
from policy.labels import TENANT_NODES_TOLERATION

NAMESPACE = "metallb-system"
API = "metallb.io/v1beta1"
POOL = "platform"  # the IPAddressPool and its L2Advertisement


def _range(value: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """First and last address of a CIDR or a 'from-to' range; ValueError if it is neither."""
    if "-" in value:
        first, last = (ipaddress.ip_address(part.strip()) for part in value.split("-", 1))
        if first.version != last.version or first > last:
            raise ValueError("from-to")
        return first, last
    network = ipaddress.ip_network(value, strict=True)
    return network[0], network[-1]


def pool_networks(ranges: Sequence[str]) -> list[str]:
    """The CIDRs that cover a pool's CIDRs and from-to ranges exactly."""
    return [str(n) for value in ranges for n in ipaddress.summarize_address_range(*_range(value))]


def _address_range(value: str) -> str:
    try:
        _range(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is not valid; allowed: a CIDR such as '172.18.255.192/27' or a range such as "
            "'172.18.255.200-172.18.255.250' (from the lower address to the higher)"
        ) from None
    return value


def _disjoint(pools: dict[str, list[str]]) -> dict[str, list[str]]:
    """Clusters on one network (kind's) would answer ARP for each other's addresses."""
    seen: list[tuple[str, str, tuple[Any, Any]]] = []
    for cluster, ranges in pools.items():
        for value in ranges:
            first, last = _range(value)
            for other, other_value, (o_first, o_last) in seen:
                if first.version == o_first.version and first <= o_last and o_first <= last:
                    raise ValueError(f"{cluster}: {value} overlaps {other}: {other_value}; allowed: disjoint pools")
            seen.append((cluster, value, (first, last)))
    return pools


AddressRange = Annotated[str, AfterValidator(_address_range)]
Pools = Annotated[
    dict[Literal["controlPlane", "dev", "prod"], Annotated[list[AddressRange], Field(min_length=1)]],
    AfterValidator(_disjoint),
]


@dataclass(frozen=True, kw_only=True)
class MetalLbArgs(AddOnArgs):
    addresses: list[str]  # CIDRs or from-to ranges, validated by stacks/config.py


class MetalLb(ChartAddOn[MetalLbArgs]):
    type_token = "platform:metallb:MetalLb"
    sized_at = ("controller", "speaker")
    webhook_port = 9443  # the controller's `webhook-server` container port (the speakers run on the host's network)

    def egress(self, args: MetalLbArgs) -> Sequence[Reach]:
        """The controller's API server alone: it assigns Services' addresses there (the speakers, which answer ARP, run
        on the hosts' network, where no policy applies)."""
        return []

    def values(self, args: MetalLbArgs) -> dict[str, Any]:
        # L2 only: no BGP, so neither FRR in the speaker nor the frr-k8s daemon set. The speakers run on every node,
        # tenants' dedicated ones too.
        return {"frrk8s": {"enabled": False}, "speaker": {"tolerations": [dict(TENANT_NODES_TOLERATION)]}}

    def extend(self, name: str, cluster: ClusterHandle, args: MetalLbArgs) -> None:
        # The pool and its announcement need the chart's CRDs and its validating webhook.
        after = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[self.release])
        pool = custom_resource(f"{name}-pool", API, "IPAddressPool", POOL, NAMESPACE, {"addresses": args.addresses}, after)
        custom_resource(
            f"{name}-l2", API, "L2Advertisement", POOL, NAMESPACE, {"ipAddressPools": [POOL]},
            pulumi.ResourceOptions.merge(after, pulumi.ResourceOptions(depends_on=[pool])),
        )
        metallb = f"MetalLB on {cluster.role} (Secret {NAMESPACE}/metallb-memberlist: its controller writes it, its speakers read it)"
        args.inventory.register(internal_secret(
            metallb, f"MetalLB memberlist key on {cluster.role}",
            scope="authenticates the speakers' memberlist gossip to each other; nothing else",
            rotation="delete the Secret: the controller generates a new key and the speakers restart",
            lifetime="as long as the Secret exists",
        ))


def on_cluster(parts: ClusterParts, settings: ServiceSettings) -> MetalLb | None:
    """On a kubeconfig cluster with a pool in config; EKS has the AWS Load Balancer Controller."""
    addresses = settings.options["addresses"].get(to_camel(parts.cluster.role.replace("-", "_")))
    if parts.cluster.is_eks or not addresses:
        return None
    return MetalLb(
        f"{parts.cluster.role}-metallb",
        parts.cluster,
        SLICE,
        MetalLbArgs(addresses=list(addresses), inventory=parts.inventory, settings=settings),
    )


SLICE: ServiceSlice[MetalLb] = ServiceSlice(
    key="metallb",
    namespace=PlatformNamespace(
        NAMESPACE,
        "MetalLB, whose speaker needs the host network and NET_RAW to answer ARP for Service addresses",
    ),
    chart="metallb",
    on_cluster=on_cluster,
    options={"addresses": (Pools, {})},
)
