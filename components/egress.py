"""NetworkPolicy egress pieces the platform's pods share: ports, address blocks and the internet.

An ipBlock holds addresses outside the cluster (and, as most CNIs match them, pods' and nodes' own
addresses in it): so "the internet" here is every public IPv4 address, never a private range, CGNAT
or link-local, where pods, nodes, private endpoints and the instance metadata live. No IPv6 block:
a policy that selects a pod refuses every IPv6 address it does not list (EC2's fd00:ec2::254 too).
"""

from __future__ import annotations

import ipaddress
from typing import Sequence

import pulumi_kubernetes as k8s

INSTANCE_METADATA = "169.254.169.254/32"  # the cloud's instance metadata endpoint (EC2: the node role's credentials)
# Never "the internet": pods, nodes, private endpoints, link-local (the metadata).
PRIVATE_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16")
ANYWHERE = "0.0.0.0/0"


def dns() -> k8s.networking.v1.NetworkPolicyEgressRuleArgs:
    """The cluster DNS: kube-system's CoreDNS (label `k8s-app: kube-dns`, on kind, k3s and EKS alike)."""
    return k8s.networking.v1.NetworkPolicyEgressRuleArgs(
        to=[k8s.networking.v1.NetworkPolicyPeerArgs(
            namespace_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={"kubernetes.io/metadata.name": "kube-system"}),
            pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={"k8s-app": "kube-dns"}),
        )],
        ports=[k8s.networking.v1.NetworkPolicyPortArgs(protocol="UDP", port=53), *tcp(53)],
    )


def tcp(*ports: int) -> list[k8s.networking.v1.NetworkPolicyPortArgs]:
    return [k8s.networking.v1.NetworkPolicyPortArgs(protocol="TCP", port=p) for p in ports]


def address_block(cidr: str, private: Sequence[str] = ()) -> k8s.networking.v1.NetworkPolicyPeerArgs:
    """`cidr` less `private` and the instance metadata, where it holds them."""
    network = ipaddress.ip_network(cidr)
    excepted = [e for e in (*private, INSTANCE_METADATA) if network.supernet_of(ipaddress.IPv4Network(e))] if network.version == 4 else []
    return k8s.networking.v1.NetworkPolicyPeerArgs(ip_block=k8s.networking.v1.IPBlockArgs(cidr=cidr, except_=excepted or None))


def to_networks(cidrs: Sequence[str], ports: Sequence[int]) -> list[k8s.networking.v1.NetworkPolicyEgressRuleArgs]:
    """One rule: `cidrs` (none: no rule) on `ports`."""
    if not cidrs:
        return []
    return [k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=[address_block(c) for c in cidrs], ports=tcp(*ports))]


def internet(ports: Sequence[int]) -> k8s.networking.v1.NetworkPolicyEgressRuleArgs:
    """Every public IPv4 address on `ports`."""
    return k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=[address_block(ANYWHERE, PRIVATE_NETWORKS)], ports=tcp(*ports))
