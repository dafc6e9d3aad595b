"""Clusters: EKS through pulumi-aws, or an existing cluster through its kubeconfig.

Both yield a `ClusterHandle`, so the rest of the program never asks which kind it has.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field, replace
from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated, Literal
from urllib.parse import urlsplit

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
from pydantic import BaseModel, ConfigDict, Field

from components.aws import AwsWorkloadIdentity, irsa_credential, service_account_trust, service_trust
from components.inventory import DAY, HOUR, Credential, external_secret, projected_token
from components.network import ApiConnection, ApiConnectionArgs, VpcNetwork
from components.versions import EKS_ADDONS
from policy.labels import CLUSTER_LABEL, MANAGED_BY


ANYWHERE = "0.0.0.0/0"


@dataclass(frozen=True)
class ApiServer:
    """Where a cluster's API server listens, as pods reach it (the `kubernetes` Service's endpoint, after
    kube-proxy's rewrite): a network ("0.0.0.0/0" when the address is a name, unknown at preview) and a port."""

    cidr: str
    port: int

    @staticmethod
    def of_eks(vpc_cidr: str | None) -> ApiServer:
        """An EKS cluster's private endpoint: in its VPC (in existing subnets, anywhere) on 443 (a public
        endpoint is on the internet)."""
        return ApiServer(vpc_cidr or ANYWHERE, 443)

    @staticmethod
    def of_server(server: str) -> ApiServer:
        """A kubeconfig server's: its address, or anywhere when it is a name, on its port."""
        url = urlsplit(server)
        try:
            cidr = str(ipaddress.ip_network(url.hostname or ""))
        except ValueError:
            cidr = ANYWHERE
        return ApiServer(cidr, url.port or 443)


@dataclass(frozen=True)
class ClusterHandle:
    """What every other component needs to know about a cluster."""

    role: str  # "control-plane", "dev" or "prod"
    provider: k8s.Provider
    endpoint: pulumi.Output[str]  # API server URL reachable from the control plane
    ca_data: pulumi.Output[str]  # base64 PEM bundle of the API server's CA
    kubernetes_version: str
    api_server: ApiServer  # where its own pods reach its API server, as NetworkPolicy sees it
    oidc_issuer_url: pulumi.Output[str] | None = None  # service-account issuer, where known
    is_eks: bool = False
    aws_provider: aws.Provider | None = None
    oidc_provider_arn: pulumi.Output[str] | None = None
    region: str | None = None
    eks_cluster_name: pulumi.Output[str] | None = None  # the aws.eks.Cluster's name (EKS only)
    network: VpcNetwork | None = None  # EKS in a VPC the program created
    # EKS: the subnets internet-facing load balancers go in (its VPC's public ones, or the configured existing ones).
    public_subnet_ids: tuple[pulumi.Input[str], ...] = ()
    # Air-gapped: Helm releases install from <local_charts>/<chart>/<version> (verified chart
    # sources, platformctl.charts) instead of their repositories.
    local_charts: str | None = None
    # The platform namespaces declared on it so far (components.helm.namespace), by name: what a
    # service grants in another's namespace waits for it.
    namespaces: dict[str, k8s.core.v1.Namespace] = field(default_factory=dict, compare=False, repr=False)
    # The check that the CNI enforces NetworkPolicy (components/netpol_check.py), once declared.
    netpol_check: pulumi.Resource | None = field(default=None, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.role

    @property
    def policies_enforced(self) -> list[pulumi.Resource]:
        """What a namespace whose pods rely on NetworkPolicies waits for: the check that the CNI enforces them."""
        return [self.netpol_check] if self.netpol_check is not None else []

    @property
    def aws_identity(self) -> AwsWorkloadIdentity | None:
        """What IAM roles for this cluster's service accounts need (EKS only)."""
        if not (self.aws_provider and self.oidc_provider_arn and self.oidc_issuer_url and self.region):
            return None
        return AwsWorkloadIdentity(self.aws_provider, self.oidc_provider_arn, self.oidc_issuer_url, self.region)


def aws_tags(role: str) -> dict[str, str]:
    """The tags of every AWS resource of the cluster named `role`."""
    return {CLUSTER_LABEL: role, **MANAGED_BY}


def kubernetes_provider_name(role: str) -> str:
    """The provider's resource name; the offline plan maps it back to the cluster."""
    return f"{role}-k8s"


EKS_TOKEN_SECONDS = 900  # `aws eks get-token`: a presigned STS request valid for 15 minutes
IRSA_TOKEN_SECONDS = DAY  # the EKS pod identity webhook's projected token (expirationSeconds 86400)


def cluster_credentials(clusters: dict[str, ClusterHandle]) -> list[Credential]:
    """How the program reaches each cluster, and what EKS and its nodes hold."""
    entries = [Credential(
        what=f"EKS tokens of the Pulumi kubernetes provider for {name}",
        category="federated",
        issuer="AWS STS (`aws eks get-token`, a presigned GetCallerIdentity)",
        holder="the Pulumi kubernetes provider, as the AWS principal running the program",
        scope=f"the {name} cluster, as far as that principal's EKS access entry allows",
        lifetime_seconds=EKS_TOKEN_SECONDS,
        rotation="a new token for every use (exec credential)",
    ) if handle.is_eks else external_secret(
        f"kubeconfig credential of the {name} cluster",
        issuer=f"the {name} cluster's administrator (platform:clusters.{name}.kubeconfig)",
        holder="the Pulumi kubernetes provider (path on the machine, or a Pulumi config secret)",
        scope=f"whatever the kubeconfig's user may do on {name} (usually cluster-admin)",
        lifetime="set by whoever issued the kubeconfig (kind: a client certificate for 1 year)",
        rotation="replace the kubeconfig; prefer an exec credential plugin with short-lived tokens",
    ) for name, handle in clusters.items()]
    eks = [name for name, handle in clusters.items() if handle.is_eks]
    if eks:
        entries += [Credential(
            what="AWS credentials of the EKS control planes and node groups",
            category="federated",
            issuer="AWS STS (service roles and EC2 instance profiles)",
            holder="EKS and the nodes' kubelet and image pulls",
            scope="AmazonEKSClusterPolicy; worker node and ECR read-only policies",
            lifetime_seconds=6 * HOUR,
            lifetime="temporary credentials AWS issues and rotates itself (hours)",
            rotation="AWS replaces them before they expire",
            resources=tuple(f"{name}-{kind}" for name in eks for kind in ("cluster", "node")),
        ), *[credential for name in eks for credential in _addon_credentials(name)], projected_token(
            "projected web-identity tokens of IRSA service accounts",
            issuer="each EKS cluster's service-account issuer (EKS pod identity webhook)",
            holder="pods of service accounts annotated with an IAM role",
            scope="AssumeRoleWithWebIdentity for that role only (audience sts.amazonaws.com)",
            seconds=IRSA_TOKEN_SECONDS,
        )]
    return entries


# --- existing clusters ----------------------------------------------------------------


@dataclass(frozen=True)
class ExistingClusterArgs:
    role: str
    server: str
    ca_data: str
    kubernetes_version: str
    kubeconfig_path: str | None = None
    kubeconfig_content: pulumi.Input[str] | None = None  # a Pulumi secret
    context: str | None = None
    service_account_issuer: str | None = None


class ExistingCluster(pulumi.ComponentResource):
    """A cluster the platform does not create (kind, k3s, on-prem), reached by kubeconfig."""

    handle: ClusterHandle

    def __init__(self, name: str, args: ExistingClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:cluster:ExistingCluster", name, None, opts)
        kubeconfig = args.kubeconfig_content if args.kubeconfig_content is not None else args.kubeconfig_path
        provider = k8s.Provider(
            kubernetes_provider_name(args.role),
            kubeconfig=kubeconfig,
            context=args.context,
            # Never fall back to whatever cluster the caller's environment points at.
            delete_unreachable=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.handle = ClusterHandle(
            role=args.role,
            provider=provider,
            endpoint=pulumi.Output.from_input(args.server),
            ca_data=pulumi.Output.from_input(args.ca_data),
            kubernetes_version=args.kubernetes_version,
            api_server=ApiServer.of_server(args.server),
            oidc_issuer_url=(
                pulumi.Output.from_input(args.service_account_issuer) if args.service_account_issuer else None
            ),
        )
        self.register_outputs({"endpoint": self.handle.endpoint})


# --- EKS ------------------------------------------------------------------------------


class Taint(BaseModel):
    """A node taint (`key=value:effect`): a node group's, and what a workload tolerates to run there."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    key: Annotated[str, Field(pattern=r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$", max_length=316)]
    value: Annotated[str, Field(pattern=r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$", max_length=63)] = ""
    effect: Literal["NoSchedule", "NoExecute"] = "NoSchedule"


# The EKS API's names for the taint effects.
_EKS_EFFECTS = {"NoSchedule": "NO_SCHEDULE", "NoExecute": "NO_EXECUTE"}


@dataclass(frozen=True)
class NodeGroupArgs:
    name: str
    instance_types: list[str]
    min_size: int
    max_size: int
    desired_size: int
    disk_size_gib: int = 50
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[Taint] = field(default_factory=list)  # only pods that tolerate them run there


class NatGateways(StrEnum):
    """How a new VPC's private subnets reach the internet. A NAT gateway lives in one zone."""

    PER_ZONE = "perZone"  # one in each zone: a zone's outage takes its own zone's egress only
    SINGLE = "single"  # one for the VPC, a third of the hourly cost: every zone loses egress with its zone


@dataclass(frozen=True)
class EksClusterArgs:
    role: str
    region: str
    kubernetes_version: str
    node_groups: list[NodeGroupArgs]
    admin_principal_arns: list[str]
    vpc_cidr: str | None = None  # a new VPC, or
    availability_zones: list[str] = field(default_factory=list)
    nat_gateways: NatGateways = NatGateways.PER_ZONE
    private_subnet_ids: list[str] = field(default_factory=list)  # existing subnets
    public_subnet_ids: list[str] = field(default_factory=list)
    endpoint_public: bool = False
    endpoint_private: bool = True
    public_access_cidrs: list[str] = field(default_factory=list)
    protect: bool = False
    # A workload cluster's: the control plane's VPC, peered to this one for its private endpoint.
    reached_from: VpcNetwork | None = None


_CLUSTER_POLICIES = ("AmazonEKSClusterPolicy",)
_NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryReadOnly")


# EKS's access policies (EKS user guide, access-policy-permissions): cluster admin is every verb on every resource and
# non-resource URL; admin view is get, list and watch on every resource, Secrets included, and no write.
CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
ADMIN_VIEW_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSAdminViewPolicy"


def cluster_access(
    name: str, cluster_name: pulumi.Input[str], principal_arn: pulumi.Input[str], policy_arn: str, opts: pulumi.ResourceOptions
) -> aws.eks.AccessPolicyAssociation:
    """`principal_arn`'s Kubernetes rights on an EKS cluster: an access entry with EKS's `policy_arn`, cluster-wide. The
    clusters authenticate from access entries alone (authenticationMode API), and no IAM policy gives Kubernetes rights.
    `opts`: parent and that cluster's AWS provider."""
    entry = aws.eks.AccessEntry(name, cluster_name=cluster_name, principal_arn=principal_arn, type="STANDARD", opts=opts)
    return aws.eks.AccessPolicyAssociation(
        name,
        cluster_name=cluster_name,
        principal_arn=entry.principal_arn,
        policy_arn=policy_arn,
        access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
        opts=opts,
    )


def _admin_access(name: str, cluster: aws.eks.Cluster, principal_arns: list[str], child: pulumi.ResourceOptions) -> None:
    """Cluster-admin access entries for the configured principals (no creator admin)."""
    for index, arn in enumerate(principal_arns):
        cluster_access(f"{name}-admin-{index}", cluster.name, arn, CLUSTER_ADMIN_POLICY, child)


def zone_share(total: int, zones: int, index: int) -> int:
    """Zone `index`'s share of a group's `total` nodes over its `zones`: as even as whole nodes allow, the
    remainder to the first zones (sizes are the group's totals; config.py keeps maxSize >= the zones)."""
    return total // zones + (index < total % zones)


def _node_groups(
    name: str,
    args: EksClusterArgs,
    cluster: aws.eks.Cluster,
    node_role: aws.iam.Role,
    private_ids: Sequence[pulumi.Input[str]],
    cni: aws.eks.Addon,
    tags: dict[str, str],
    child: pulumi.ResourceOptions,
) -> list[aws.eks.NodeGroup]:
    """Each configured group as one managed node group per zone (private subnet), alike but for the zone.

    An EBS volume attaches in its zone only, and the Cluster Autoscaler simulates a group's new node in one zone,
    the first of its Auto Scaling group's (kubernetes/autoscaler cluster-autoscaler/cloudprovider/aws/aws_manager.go
    getAsgTemplate, `asg.AvailabilityZones[0]`): a group over every zone never grows for a pod held to another zone
    by its volume. Upstream's answer (cloudprovider/aws/README.md, "Common Notes and Gotchas"): a group per zone,
    kept balanced by --balance-similar-node-groups (components/cluster_autoscaler.py)."""
    # A new VPC's zones, in the order of its private subnets; existing subnets by their ids (a zone each, as a rule).
    places = args.availability_zones if args.vpc_cidr else args.private_subnet_ids
    groups = []
    for group in args.node_groups:
        template = _launch_template(f"{name}-{group.name}", group.disk_size_gib, tags, child)
        for index, (place, subnet) in enumerate(zip(places, private_ids, strict=True)):
            size = [zone_share(total, len(places), index) for total in (group.min_size, group.max_size, group.desired_size)]
            groups.append(aws.eks.NodeGroup(
                f"{name}-{group.name}-{place}",
                cluster_name=cluster.name,
                node_role_arn=node_role.arn,
                subnet_ids=[subnet],
                instance_types=group.instance_types,
                launch_template=template,
                scaling_config=aws.eks.NodeGroupScalingConfigArgs(min_size=size[0], max_size=size[1], desired_size=size[2]),
                update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
                labels=group.labels or None,
                taints=[aws.eks.NodeGroupTaintArgs(key=t.key, value=t.value or None, effect=_EKS_EFFECTS[t.effect]) for t in group.taints] or None,
                tags=tags,
                # The Cluster Autoscaler (components/cluster_autoscaler.py) owns the running size once the group exists.
                # After the VPC CNI: a node whose aws-node has no AWS rights never becomes Ready.
                opts=pulumi.ResourceOptions.merge(
                    child, pulumi.ResourceOptions(ignore_changes=["scalingConfig.desiredSize"], depends_on=[cni])
                ),
            ))
    return groups


def _launch_template(
    name: str, disk_size_gib: int, tags: dict[str, str], child: pulumi.ResourceOptions
) -> aws.eks.NodeGroupLaunchTemplateArgs:
    """The nodes' instance settings: IMDSv2 one hop away, so that only the node itself (and host-network
    pods) reach the instance metadata and the node role's credentials, never a pod; an encrypted gp3
    root volume (EKS's AL2023 images boot from /dev/xvda)."""
    template = aws.ec2.LaunchTemplate(
        name,
        metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
            http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1,
        ),
        block_device_mappings=[aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
            device_name="/dev/xvda",
            ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                volume_size=disk_size_gib, volume_type="gp3", encrypted="true", delete_on_termination="true",
            ),
        )],
        tags=tags,
        opts=child,
    )
    return aws.eks.NodeGroupLaunchTemplateArgs(id=template.id, version=template.latest_version.apply(str))


# Add-on settings besides the defaults. The VPC CNI enforces NetworkPolicies only with its network
# policy agent on: without it every policy the platform declares (tenants' default deny, CI jobs'
# egress, the instance metadata kept from pods) is accepted and ignored.
ADDON_CONFIGURATION: dict[str, dict[str, str]] = {"vpc-cni": {"enableNetworkPolicy": "true"}}
# The EBS CSI driver's controller creates and attaches the volumes of persistent volume claims: with
# a role of its own (IRSA); the nodes' role has no EBS rights. Its service account in the add-on:
EBS_CSI_ACCOUNT = ("kube-system", "ebs-csi-controller-sa")
EBS_CSI_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"
# The VPC CNI's service account, and AWS's managed policy for it on an IPv4 cluster (the clusters
# are IPv4): on a role of its own, not the node role, which an escaped container reaches (IMDS).
CNI_ACCOUNT = ("kube-system", "aws-node")
CNI_POLICY = "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy"
DEFAULT_STORAGE_CLASS = "gp3"


def _addons(
    name: str,
    versions: dict[str, str],
    cluster: aws.eks.Cluster,
    after: list[pulumi.Resource],
    roles: dict[str, tuple[aws.iam.Role, aws.iam.RolePolicyAttachment]],
    tags: dict[str, str],
    child: pulumi.ResourceOptions,
) -> list[aws.eks.Addon]:
    """The pinned EKS add-ons of `versions`, after `after`; `roles`: the IAM role of an add-on's service
    account and its policy, which must be in place before the add-on's first AWS call."""
    return [
        aws.eks.Addon(
            f"{name}-{addon}",
            cluster_name=cluster.name,
            addon_name=addon,
            addon_version=version,
            configuration_values=json.dumps(ADDON_CONFIGURATION[addon]) if addon in ADDON_CONFIGURATION else None,
            service_account_role_arn=roles[addon][0].arn if addon in roles else None,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="PRESERVE",
            tags=tags,
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[*after, *roles.get(addon, ())])),
        )
        for addon, version in versions.items()
    ]


# The add-ons whose service account has a role of the program's: (role's name suffix, account, AWS managed policy, what for).
_ADDON_ROLES = {
    "aws-ebs-csi-driver": ("ebs-csi", EBS_CSI_ACCOUNT, EBS_CSI_POLICY, "create, attach and delete the EBS volumes of persistent volume claims"),
    "vpc-cni": ("aws-node", CNI_ACCOUNT, CNI_POLICY,
                "AmazonEKS_CNI_Policy: assign and release the pods' private IPs and the nodes' network interfaces, account-wide"),
}


def _addon_credentials(cluster: str) -> list[Credential]:
    """The AWS sessions of the add-ons' service accounts on `cluster` (their roles: `_addon_role`)."""
    entries = [irsa_credential(f"{cluster}-{suffix}", "/".join(account), cluster, scope)
               for suffix, account, _, scope in _ADDON_ROLES.values()]
    return [replace(sessions, what=f"{sessions.what} on {cluster}") for sessions in entries]


def _addon_role(
    name: str, addon: str, identity: AwsWorkloadIdentity, tags: dict[str, str], child: pulumi.ResourceOptions
) -> tuple[aws.iam.Role, aws.iam.RolePolicyAttachment]:
    """An add-on's role: AWS's managed policy for it, for its service account only."""
    suffix, account, policy, _ = _ADDON_ROLES[addon]
    role = aws.iam.Role(f"{name}-{suffix}", assume_role_policy=service_account_trust(identity, *account), tags=tags, opts=child)
    return role, aws.iam.RolePolicyAttachment(f"{name}-{suffix}", role=role.name, policy_arn=policy, opts=child)


def _default_storage_class(name: str, provider: k8s.Provider, after: list[aws.eks.Addon], parent: pulumi.Resource) -> None:
    """Encrypted gp3 volumes for claims that name no class: EKS clusters since 1.30 mark none as default."""
    k8s.storage.v1.StorageClass(
        f"{name}-{DEFAULT_STORAGE_CLASS}",
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=DEFAULT_STORAGE_CLASS, labels=MANAGED_BY, annotations={"storageclass.kubernetes.io/is-default-class": "true"}
        ),
        provisioner="ebs.csi.aws.com",
        parameters={"type": "gp3", "encrypted": "true"},
        reclaim_policy="Delete",
        # In the zone of the node the pod lands on (an EBS volume attaches within its zone only).
        volume_binding_mode="WaitForFirstConsumer",
        allow_volume_expansion=True,
        opts=pulumi.ResourceOptions(parent=parent, provider=provider, depends_on=after),
    )


class EksCluster(pulumi.ComponentResource):
    """An EKS cluster in access-entry mode, with its network, node groups and workload identity."""

    handle: ClusterHandle

    def __init__(self, name: str, args: EksClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:cluster:EksCluster", name, None, opts)
        tags = aws_tags(args.role)
        aws_provider = aws.Provider(f"{name}-aws", region=args.region, opts=pulumi.ResourceOptions(parent=self))
        child = pulumi.ResourceOptions(parent=self, provider=aws_provider)

        vpc = self._network(name, args, tags, child) if args.vpc_cidr else None
        private_ids, public_ids = (vpc.private_ids, vpc.public_ids) if vpc else (args.private_subnet_ids, args.public_subnet_ids)

        cluster_role = self._role(f"{name}-cluster", "eks.amazonaws.com", _CLUSTER_POLICIES, tags, child)
        cluster = aws.eks.Cluster(
            name,
            role_arn=cluster_role.arn,
            version=args.kubernetes_version,
            access_config=aws.eks.ClusterAccessConfigArgs(
                authentication_mode="API", bootstrap_cluster_creator_admin_permissions=False
            ),
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                subnet_ids=[*private_ids, *public_ids],
                endpoint_private_access=args.endpoint_private,
                endpoint_public_access=args.endpoint_public,
                public_access_cidrs=args.public_access_cidrs or None,
            ),
            enabled_cluster_log_types=["api", "audit", "authenticator"],
            tags=tags,
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(protect=args.protect)),
        )

        _admin_access(name, cluster, args.admin_principal_arns, child)

        issuer = cluster.identities.apply(lambda ids: ids[0]["oidcs"][0]["issuer"])
        oidc_provider = aws.iam.OpenIdConnectProvider(
            f"{name}-oidc", url=issuer, client_id_lists=["sts.amazonaws.com"], tags=tags, opts=child
        )
        identity = AwsWorkloadIdentity(aws_provider, oidc_provider.arn, issuer, args.region)
        node_groups, addons = self._compute(name, args, cluster, private_ids, identity, tags, child)

        network = vpc.complete(args, aws_provider, cluster) if vpc else None
        path: list[pulumi.Resource] = []
        if args.reached_from is not None:
            assert network is not None, "stacks/config.py: a privately reached cluster has a VPC of the program's"
            path = ApiConnection(
                f"control-plane-to-{args.role}",
                ApiConnectionArgs(source=args.reached_from, target=network, target_name=args.role),
                pulumi.ResourceOptions(parent=self),
            ).ready

        ca_data = cluster.certificate_authority.apply(lambda ca: ca["data"])
        provider = k8s.Provider(
            kubernetes_provider_name(args.role),
            kubeconfig=pulumi.Output.all(cluster.endpoint, ca_data, cluster.name).apply(
                lambda a: _exec_kubeconfig(a[0], a[1], a[2], args.region)
            ),
            delete_unreachable=False,
            # Run from the control plane's network, the program reaches a private endpoint through the path.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*node_groups, *path]),
        )
        _default_storage_class(name, provider, addons, self)
        self.handle = ClusterHandle(
            role=args.role,
            provider=provider,
            endpoint=cluster.endpoint,
            ca_data=ca_data,
            kubernetes_version=args.kubernetes_version,
            api_server=ApiServer.of_eks(args.vpc_cidr),
            oidc_issuer_url=issuer,
            is_eks=True,
            aws_provider=aws_provider,
            oidc_provider_arn=oidc_provider.arn,
            region=args.region,
            eks_cluster_name=cluster.name,
            network=network,
            public_subnet_ids=tuple(public_ids),
        )
        self.register_outputs({"endpoint": cluster.endpoint, "oidcIssuerUrl": issuer})

    def _compute(
        self,
        name: str,
        args: EksClusterArgs,
        cluster: aws.eks.Cluster,
        private_ids: Sequence[pulumi.Input[str]],
        identity: AwsWorkloadIdentity,
        tags: dict[str, str],
        child: pulumi.ResourceOptions,
    ) -> tuple[list[aws.eks.NodeGroup], list[aws.eks.Addon]]:
        """The node groups and the add-ons, in the order they can start in."""
        # The VPC CNI before the nodes, with its role and policy in place (terraform-aws-eks's `before_compute`):
        # the node role has no CNI rights, so nodes that came first would never become Ready.
        versions = EKS_ADDONS[args.kubernetes_version]
        cni_role = _addon_role(name, "vpc-cni", identity, tags, child)
        [cni] = _addons(name, {"vpc-cni": versions["vpc-cni"]}, cluster, [], {"vpc-cni": cni_role}, tags, child)
        node_role = self._role(f"{name}-node", "ec2.amazonaws.com", _NODE_POLICIES, tags, child)
        node_groups = _node_groups(name, args, cluster, node_role, private_ids, cni, tags, child)
        # The other add-ons after the nodes, so coredns and the CSI driver have somewhere to run.
        ebs = _addon_role(name, "aws-ebs-csi-driver", identity, tags, child)
        others = {addon: version for addon, version in versions.items() if addon != "vpc-cni"}
        return node_groups, [cni, *_addons(name, others, cluster, node_groups, {"aws-ebs-csi-driver": ebs}, tags, child)]

    def _role(
        self, name: str, service: str, policies: tuple[str, ...], tags: dict[str, str], opts: pulumi.ResourceOptions
    ) -> aws.iam.Role:
        role = aws.iam.Role(name, assume_role_policy=json.dumps(service_trust(service)), tags=tags, opts=opts)
        for policy in policies:
            aws.iam.RolePolicyAttachment(
                f"{name}-{policy}", role=role.name, policy_arn=f"arn:aws:iam::aws:policy/{policy}", opts=opts
            )
        return role

    def _network(self, name: str, args: EksClusterArgs, tags: dict[str, str], opts: pulumi.ResourceOptions) -> _Vpc:
        """A VPC with one public and one private subnet per availability zone, and NAT gateways as `nat_gateways` says."""
        assert args.vpc_cidr is not None
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.vpc_cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={**tags, "Name": f"{name}-vpc"},
            opts=opts,
        )
        gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=tags, opts=opts)
        # Routes are resources of their own, never inline: the peerings add theirs to these tables.
        public_routes = aws.ec2.RouteTable(f"{name}-public", vpc_id=vpc.id, tags=tags, opts=opts)
        aws.ec2.Route(
            f"{name}-public-default", route_table_id=public_routes.id, destination_cidr_block="0.0.0.0/0",
            gateway_id=gateway.id, opts=opts,
        )
        # Two subnets per zone, carved from the VPC in order: public ones first.
        zones = args.availability_zones
        blocks = list(ipaddress.ip_network(args.vpc_cidr).subnets(new_prefix=_subnet_prefix(args.vpc_cidr, 2 * len(zones))))
        public_ids, private_ids, private_routes, egress = [], [], [], []
        protect = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(protect=args.protect))
        for index, zone in enumerate(zones):
            public = _subnet(name, "public", zone, str(blocks[index]), vpc, public_routes, tags, opts)
            public_ids.append(public.id)
            if index == 0 or args.nat_gateways is NatGateways.PER_ZONE:
                # The first zone's keep the names of a single gateway's, so a VPC that had one keeps it, its
                # address and its table when it moves to one per zone.
                suffix = f"-{zone}" if index else ""
                eip = aws.ec2.Eip(f"{name}-nat{suffix}", domain="vpc", tags=tags, opts=protect)  # what partners allow in
                nat = aws.ec2.NatGateway(f"{name}-nat{suffix}", allocation_id=eip.id, subnet_id=public.id, tags=tags, opts=opts)
                table = aws.ec2.RouteTable(f"{name}-private{suffix}", vpc_id=vpc.id, tags=tags, opts=opts)
                aws.ec2.Route(
                    f"{name}-private-default{suffix}", route_table_id=table.id, destination_cidr_block="0.0.0.0/0",
                    nat_gateway_id=nat.id, opts=opts,
                )
                private_routes.append(table)
                egress.append(eip.public_ip)
        private_cidrs = [str(block) for block in blocks[len(zones):2 * len(zones)]]
        for index, (zone, cidr) in enumerate(zip(zones, private_cidrs)):
            table = private_routes[min(index, len(private_routes) - 1)]  # its own zone's, or the single one
            private_ids.append(_subnet(name, "private", zone, cidr, vpc, table, tags, opts).id)
        return _Vpc(vpc, private_ids, public_ids, public_routes, tuple(private_routes), tuple(private_cidrs), tuple(egress))


def _subnet(
    name: str, tier: Literal["public", "private"], zone: str, cidr: str, vpc: aws.ec2.Vpc, routes: aws.ec2.RouteTable,
    tags: dict[str, str], opts: pulumi.ResourceOptions,
) -> aws.ec2.Subnet:
    """A subnet of `tier` in `zone`, routed by `routes`, tagged for the load balancers of its tier."""
    public = tier == "public"
    subnet = aws.ec2.Subnet(
        f"{name}-{tier}-{zone}",
        vpc_id=vpc.id,
        cidr_block=cidr,
        availability_zone=zone,
        map_public_ip_on_launch=False if public else None,
        tags={**tags, f"kubernetes.io/role/{'elb' if public else 'internal-elb'}": "1", "Name": f"{name}-{tier}-{zone}"},
        opts=opts,
    )
    aws.ec2.RouteTableAssociation(f"{name}-{tier}-{zone}", subnet_id=subnet.id, route_table_id=routes.id, opts=opts)
    return subnet


@dataclass(frozen=True)
class _Vpc:
    """What EksCluster._network made, before the cluster exists."""

    vpc: aws.ec2.Vpc
    private_ids: list[pulumi.Output[str]]
    public_ids: list[pulumi.Output[str]]
    public_routes: aws.ec2.RouteTable
    private_routes: tuple[aws.ec2.RouteTable, ...]  # one per NAT gateway
    private_cidrs: tuple[str, ...]
    egress_addresses: tuple[pulumi.Output[str], ...]

    def complete(self, args: EksClusterArgs, provider: aws.Provider, cluster: aws.eks.Cluster) -> VpcNetwork:
        """The network with the security group EKS created for the cluster."""
        assert args.vpc_cidr is not None
        return VpcNetwork(
            vpc_id=self.vpc.id,
            cidr=args.vpc_cidr,
            region=args.region,
            provider=provider,
            route_tables=(self.public_routes, *self.private_routes),
            node_route_tables=self.private_routes,
            node_cidrs=self.private_cidrs,
            cluster_security_group_id=cluster.vpc_config.cluster_security_group_id,
            private_subnet_ids=tuple(self.private_ids),
            public_subnet_ids=tuple(self.public_ids),
            egress_addresses=self.egress_addresses,
        )


def _subnet_prefix(cidr: str, count: int) -> int:
    """The longest prefix that still fits `count` equal subnets in `cidr`."""
    prefix = ipaddress.ip_network(cidr).prefixlen
    return prefix + max(1, (count - 1).bit_length())


def _exec_kubeconfig(endpoint: str, ca_data: str, cluster_name: str, region: str) -> str:
    """A kubeconfig whose credential is a short-lived token from `aws eks get-token`: nothing stored."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": cluster_name, "cluster": {"server": endpoint, "certificate-authority-data": ca_data}}],
            "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}],
            "current-context": cluster_name,
            "users": [
                {
                    "name": cluster_name,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "aws",
                            "args": ["eks", "get-token", "--cluster-name", cluster_name, "--region", region],
                        }
                    },
                }
            ],
        }
    )
