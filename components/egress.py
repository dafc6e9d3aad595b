"""NetworkPolicy pieces the platform's pods share: egress ports, address blocks and the internet; and
ingress that holds a service's namespace to its own pods and the clients it names (`hold_namespace`).

An ipBlock holds addresses outside the cluster (and, as most CNIs match them, pods' and nodes' own
addresses in it): so "the internet" here is every public IPv4 address, never a private range, CGNAT
or link-local, where pods, nodes, private endpoints and the instance metadata live. No IPv6 block:
a policy that selects a pod refuses every IPv6 address it does not list (EC2's fd00:ec2::254 too).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Protocol, Sequence
from urllib.parse import urlsplit

import pulumi
import pulumi_kubernetes as k8s

from components.cluster import ANYWHERE, ApiServer
from components.common import ObjectStoreTarget
from components.helm import metadata

INSTANCE_METADATA = "169.254.169.254/32"  # the cloud's instance metadata endpoint (EC2: the node role's credentials)
# Where nodes' (and pods') addresses are: private ranges and CGNAT, never link-local.
NODE_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
# Never "the internet": pods, nodes, private endpoints, link-local (the metadata).
PRIVATE_NETWORKS = (*NODE_NETWORKS, "169.254.0.0/16")
HTTPS = 443


def dns() -> k8s.networking.v1.NetworkPolicyEgressRuleArgs:
    """The cluster DNS: kube-system's CoreDNS (label `k8s-app: kube-dns`, on kind, k3s and EKS alike)."""
    return k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=[pods_in("kube-system", {"k8s-app": "kube-dns"})], ports=_dns_ports())


def _dns_ports() -> list[k8s.networking.v1.NetworkPolicyPortArgs]:
    return [k8s.networking.v1.NetworkPolicyPortArgs(protocol="UDP", port=53), *tcp(53)]


def pods_in(namespace: pulumi.Input[str], labels: dict[str, str]) -> k8s.networking.v1.NetworkPolicyPeerArgs:
    """The pods of `namespace` (by name) labelled `labels`, as a rule's peer."""
    return k8s.networking.v1.NetworkPolicyPeerArgs(
        namespace_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={"kubernetes.io/metadata.name": namespace}),
        pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
    )


def tcp(*ports: int) -> list[k8s.networking.v1.NetworkPolicyPortArgs]:
    return [k8s.networking.v1.NetworkPolicyPortArgs(protocol="TCP", port=p) for p in ports]


def address_block(cidr: pulumi.Input[str], private: Sequence[str] = ()) -> k8s.networking.v1.NetworkPolicyPeerArgs:
    """`cidr` less `private` and the instance metadata, where it holds them. An Output (an address the program
    allocates, such as the control plane's NLB's: components/ingress.py `Ingress.addresses`, one public /32 each,
    which holds neither) goes as it is: it is never read at declaration time."""
    if not isinstance(cidr, str):
        return k8s.networking.v1.NetworkPolicyPeerArgs(ip_block=k8s.networking.v1.IPBlockArgs(cidr=cidr))
    network = ipaddress.ip_network(cidr)
    excepted = [e for e in (*private, INSTANCE_METADATA) if network.supernet_of(ipaddress.IPv4Network(e))] if network.version == 4 else []
    return k8s.networking.v1.NetworkPolicyPeerArgs(ip_block=k8s.networking.v1.IPBlockArgs(cidr=cidr, except_=excepted or None))


def to_networks(cidrs: Sequence[pulumi.Input[str]], ports: Sequence[int]) -> list[k8s.networking.v1.NetworkPolicyEgressRuleArgs]:
    """One rule: `cidrs` (none: no rule) on `ports`."""
    if not cidrs:
        return []
    return [k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=[address_block(c) for c in cidrs], ports=tcp(*ports))]


def to_api_server(api_server: ApiServer) -> list[k8s.networking.v1.NetworkPolicyEgressRuleArgs]:
    """A cluster's API server as its pods reach it (the `kubernetes` Service's endpoint, after kube-proxy's rewrite)."""
    return to_networks([api_server.cidr], [api_server.port])


def internet(ports: Sequence[int]) -> k8s.networking.v1.NetworkPolicyEgressRuleArgs:
    """Every public IPv4 address on `ports`."""
    return k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=[address_block(ANYWHERE, PRIVATE_NETWORKS)], ports=tcp(*ports))


def networks_or_internet(networks: Sequence[pulumi.Input[str]], ports: Sequence[int]) -> list[k8s.networking.v1.NetworkPolicyEgressRuleArgs]:
    """An endpoint on `ports`: in `networks` where they are known (a config names them, or the program allocates the
    addresses), else on the internet."""
    return to_networks(networks, ports) or [internet(ports)]


class S3Store(Protocol):
    """An S3-compatible store as its clients' egress sees it (ObjectStoreTarget, backups.BackupTarget)."""

    @property
    def endpoint(self) -> str: ...

    @property
    def networks(self) -> tuple[str, ...]: ...


def object_stores(stores: Sequence[S3Store]) -> list[k8s.networking.v1.NetworkPolicyEgressRuleArgs]:
    """S3-compatible `stores` for pods that reach the internet on HTTPS anyway (GitLab's Rails tiers, Harbor's): the
    stores' ports (HTTPS, and each endpoint's own) on public addresses, and on the stores' private `networks`."""
    ports = endpoint_ports([store.endpoint for store in stores])
    return [internet(ports), *to_networks([n for store in stores for n in store.networks], ports)]


def store_egress(endpoint: str | None, networks: Sequence[str]) -> list[k8s.networking.v1.NetworkPolicyEgressRuleArgs]:
    """An S3-compatible store's `endpoint` (None: AWS's S3 and STS, on HTTPS) as `networks_or_internet` reaches it."""
    return networks_or_internet(networks, endpoint_ports([endpoint]) if endpoint else (HTTPS,))


def registry_blobs(store: ObjectStoreTarget | None) -> list[k8s.networking.v1.NetworkPolicyEgressRuleArgs]:
    """Where Harbor's registry redirects a blob read (components/harbor.py: storage.redirect), which its clients follow:
    platform:objectStore (`store`), else S3 on the internet (an EKS control plane's Harbor; stacks/config.py requires
    the store for a kubeconfig control plane's)."""
    return store_egress(store.endpoint, store.networks) if store else store_egress(None, ())


def internet_dns() -> k8s.networking.v1.NetworkPolicyEgressRuleArgs:
    """Every public IPv4 address on DNS (UDP and TCP 53): a zone's authoritative nameservers, asked directly."""
    return k8s.networking.v1.NetworkPolicyEgressRuleArgs(
        to=[address_block(ANYWHERE, PRIVATE_NETWORKS)], ports=_dns_ports())


@dataclass(frozen=True)
class Admit:
    """Connections into a held namespace: `peers` to the pods labelled `pods`, on `ports` (none: every port)."""

    name: str  # the NetworkPolicy's, in the namespace
    pods: dict[str, str]
    peers: Sequence[k8s.networking.v1.NetworkPolicyPeerArgs]
    ports: Sequence[int]


def from_anywhere(name: str, pods: dict[str, str], ports: Sequence[int]) -> Admit:
    """An Admit of every source to `pods` on `ports` (an ingress rule with no `from`): for clients on the
    nodes' network (host-network daemons, the API server), which no pod or namespace selector names and which on
    EKS share the pods' subnets, so no ipBlock tells them from pods. Every pod reaches those ports too."""
    if not ports:
        raise ValueError(f"{name}: admitting every source needs the ports it is for")
    return Admit(name, pods, (), ports)


def hold_namespace(resource: str, ns: k8s.core.v1.Namespace, admits: Sequence[Admit],
                   opts: pulumi.ResourceOptions, private: Sequence[Admit] = ()) -> list[k8s.networking.v1.NetworkPolicy]:
    """Every pod of `ns` takes connections from the namespace's own pods and, per `admits`, from
    their peers on their ports only: nothing else on the pod network reaches its stores and internal APIs.
    The pods of a `private` Admit (one label each) take none from the namespace at large: only from its peers.
    (Kubelet probes come from the node, which CNIs admit to its own pods: aws-network-policy-agent
    allows the node's IP whatever a policy says, its PR #65; Calico and Cilium likewise.)"""
    if any(len(a.pods) != 1 for a in private):
        raise ValueError("a private Admit names its pods by one label")
    own = k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=k8s.meta.v1.LabelSelectorArgs())
    public = k8s.meta.v1.LabelSelectorArgs(match_expressions=[
        k8s.meta.v1.LabelSelectorRequirementArgs(key=key, operator="NotIn", values=[value])
        for key, value in dict.fromkeys((k, v) for a in private for k, v in a.pods.items())] or None)
    return [
        _policy(resource, ns, "own-namespace", _ingress(public, [k8s.networking.v1.NetworkPolicyIngressRuleArgs(from_=[own])]), opts),
        *(admit(resource, ns, a, opts) for a in [*admits, *private]),
    ]


def hold_webhook(resource: str, ns: k8s.core.v1.Namespace, port: int, opts: pulumi.ResourceOptions) -> k8s.networking.v1.NetworkPolicy:
    """Every pod of an admission webhook's namespace takes connections on the webhook's `port` only, from
    any address: the API server calls it from the control plane's network (EKS: its ENIs in the VPC;
    kubeconfig clusters: the host's), which no pod or namespace selector names. Any pod still reaches
    that port (AdmissionReview over TLS: it answers what a review would decide); none the metrics,
    health or other ports. Kubelet probes come from the node (see `hold_namespace`)."""
    return _policy(resource, ns, "webhook-only", _ingress(
        k8s.meta.v1.LabelSelectorArgs(), [k8s.networking.v1.NetworkPolicyIngressRuleArgs(ports=tcp(port))]), opts)


def _policy(resource: str, ns: k8s.core.v1.Namespace, name: str, spec: k8s.networking.v1.NetworkPolicySpecArgs,
            opts: pulumi.ResourceOptions) -> k8s.networking.v1.NetworkPolicy:
    return k8s.networking.v1.NetworkPolicy(f"{resource}-{name}", metadata=metadata(name, ns), spec=spec,
                                           opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[ns])))


def _ingress(selector: k8s.meta.v1.LabelSelectorArgs,
             rules: list[k8s.networking.v1.NetworkPolicyIngressRuleArgs]) -> k8s.networking.v1.NetworkPolicySpecArgs:
    return k8s.networking.v1.NetworkPolicySpecArgs(pod_selector=selector, policy_types=["Ingress"], ingress=rules)


def hold_pods(resource: str, ns: k8s.core.v1.Namespace, admits: Sequence[Admit],
              opts: pulumi.ResourceOptions) -> list[k8s.networking.v1.NetworkPolicy]:
    """Every pod of `ns` takes connections only from the peers `admits` (or a chart's own policies) name:
    one policy selecting them all with no ingress rule, and one per Admit (policies add up). Unlike
    `hold_namespace`, the namespace's own pods are no exception. Kubelet probes come from the node (see
    `hold_namespace`)."""
    return [
        _policy(resource, ns, "admitted-peers-only", _ingress(k8s.meta.v1.LabelSelectorArgs(), []), opts),
        *(admit(resource, ns, a, opts) for a in admits),
    ]


def hold_egress(resource: str, ns: k8s.core.v1.Namespace, name: str, selected: dict[str, str],
                rules: Sequence[k8s.networking.v1.NetworkPolicyEgressRuleArgs], opts: pulumi.ResourceOptions) -> k8s.networking.v1.NetworkPolicy:
    """The pods labelled `selected` connect only where `rules` (none: nowhere) or other policies selecting them say."""
    return _policy(resource, ns, name, k8s.networking.v1.NetworkPolicySpecArgs(
        pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selected), policy_types=["Egress"], egress=list(rules)), opts)


def pods(*selectors: dict[str, str]) -> list[k8s.networking.v1.NetworkPolicyPeerArgs]:
    """Peers: the pods labelled as each of `selectors`, in the policy's own namespace."""
    return [k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=s)) for s in selectors]


def to_pods(selectors: Sequence[dict[str, str]], ports: Sequence[int]) -> list[k8s.networking.v1.NetworkPolicyEgressRuleArgs]:
    """One rule: the pods of `selectors` (none: no rule), in the policy's namespace, on `ports`."""
    return [k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=pods(*selectors), ports=tcp(*ports))] if selectors else []


def to_pods_in(namespace: pulumi.Input[str], labels: dict[str, str], ports: Sequence[int]) -> k8s.networking.v1.NetworkPolicyEgressRuleArgs:
    """One rule: the pods of another namespace (`pods_in`) on `ports`."""
    return k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=[pods_in(namespace, labels)], ports=tcp(*ports))


def endpoint_ports(endpoints: Sequence[str]) -> tuple[int, ...]:
    """HTTPS, and the ports of `endpoints` (URLs; without a port, HTTPS's)."""
    return tuple(sorted({HTTPS, *(urlsplit(e).port or HTTPS for e in endpoints)}))


def admit(resource: str, ns: k8s.core.v1.Namespace, a: Admit, opts: pulumi.ResourceOptions) -> k8s.networking.v1.NetworkPolicy:
    """The policy of one Admit (policies add up): `hold_namespace`'s and `hold_pods`'s, and one more into a namespace
    `hold_pods` holds, which a client's component declares."""
    return _policy(resource, ns, a.name, _ingress(k8s.meta.v1.LabelSelectorArgs(match_labels=a.pods), [
        k8s.networking.v1.NetworkPolicyIngressRuleArgs(from_=list(a.peers) or None, ports=tcp(*a.ports) or None)]), opts)


@dataclass(frozen=True)
class Reach:
    """Where the pods labelled `pods` (empty: every pod) of a namespace `hold_namespace_egress` holds connect besides."""

    name: str  # the NetworkPolicy's is egress-<name>
    pods: dict[str, str]
    rules: Sequence[k8s.networking.v1.NetworkPolicyEgressRuleArgs]


def hold_namespace_egress(resource: str, ns: k8s.core.v1.Namespace, api_server: ApiServer, reaches: Sequence[Reach],
                          opts: pulumi.ResourceOptions) -> list[k8s.networking.v1.NetworkPolicy]:
    """Every pod of `ns` connects to the cluster DNS and its cluster's API server (the `kubernetes` Service's endpoint,
    as policies see it after kube-proxy's rewrite) only; the pods of each Reach also where it says (policies add up).
    No pod there reaches the rest of the pod network (Dragonfly's node-facing ports take no credential), the nodes,
    the instance metadata or the internet unless a Reach names it."""
    return [hold_egress(resource, ns, "egress", {}, [dns(), *to_api_server(api_server)], opts),
            *(hold_egress(resource, ns, f"egress-{r.name}", r.pods, r.rules, opts) for r in reaches)]
