"""The AWS Load Balancer Controller on each EKS cluster: it implements `LoadBalancer` Services
as NLBs (its Service webhook claims every one); no `alb` IngressClass, ingress is the platform's.

It calls the AWS APIs as an IAM role its service account assumes (IRSA, the one trust-policy
builder of components/aws.py), with upstream's IAM policy pinned by digest and, beside it, a
Deny that keeps its security-group changes and load balancers in its cluster's VPC. Its admission
webhook serves a certificate the program issues (pulumi_tls, 90 days) instead of the chart's
own (ten years, generated at install), so every preview shows the same objects too.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_tls as tls

from components.aws import AwsWorkloadIdentity, irsa_credential, service_account_trust
from components.cluster import ClusterHandle
from components.egress import HTTPS, INSTANCE_METADATA, Reach, hold_namespace_egress, hold_webhook, internet, tcp
from components.helm import namespace
from components.inventory import Credential, CredentialInventory, program_certificate
from components.service import ClusterParts, PlatformNamespace, ServiceSettings, ServiceSlice
from components.versions import AWS_LOAD_BALANCER_CONTROLLER_POLICY_SHA256
from policy.labels import managed_by

NAMESPACE = "aws-load-balancer-controller"
WEBHOOK_PORT = 9443  # the controller's `webhook-server` container port (the chart's `webhookBindPort`)
SERVICE_ACCOUNT = "aws-load-balancer-controller"
WEBHOOK_SERVICE = "aws-load-balancer-webhook-service"  # the chart's name for it
POLICY_FILE = Path(__file__).parent / "iam" / "aws-load-balancer-controller.json"
WEBHOOK_CERTIFICATE_HOURS = 90 * 24  # re-issued by `pulumi up` from half of it on


def iam_policy() -> str:
    """Upstream's policy document, refused if it is not the pinned one."""
    text = POLICY_FILE.read_text()
    digest = hashlib.sha256(text.encode()).hexdigest()
    if digest != AWS_LOAD_BALANCER_CONTROLLER_POLICY_SHA256:
        raise ValueError(f"{POLICY_FILE} has digest {digest}, not the pinned {AWS_LOAD_BALANCER_CONTROLLER_POLICY_SHA256}")
    return text


# Upstream's policy changes the rules of any security group and places load balancers in any subnet
# of the account; these act on the cluster's own VPC only.
SECURITY_GROUP_ACTIONS = ("ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress", "ec2:DeleteSecurityGroup")
SUBNET_ACTIONS = ("elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:SetSubnets")


def own_vpc_policy(vpc_id: str, subnet_ids: list[str]) -> str:
    """A Deny beside upstream's policy: no security-group change outside the cluster's own VPC, no
    load balancer in another subnet than the cluster's (its security groups then are the VPC's too)."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "SecurityGroupsOfItsOwnVpcOnly",
                "Effect": "Deny",
                "Action": list(SECURITY_GROUP_ACTIONS),
                "Resource": "*",
                # Null: requests that carry no ec2:Vpc (a rule's tags) are left to upstream's statements.
                "Condition": {"ArnNotLike": {"ec2:Vpc": f"arn:aws:ec2:*:*:vpc/{vpc_id}"}, "Null": {"ec2:Vpc": "false"}},
            },
            {
                "Sid": "LoadBalancersInItsOwnSubnetsOnly",
                "Effect": "Deny",
                "Action": list(SUBNET_ACTIONS),
                "Resource": "*",
                "Condition": {"ForAnyValue:StringNotEquals": {"elasticloadbalancing:Subnet": sorted(subnet_ids)}},
            },
        ],
    })


@dataclass(frozen=True)
class AwsLoadBalancerControllerArgs:
    cluster_name: pulumi.Input[str]  # the EKS cluster's name
    identity: AwsWorkloadIdentity  # the cluster's own OIDC provider
    inventory: CredentialInventory
    settings: ServiceSettings  # replicas, chart version, sizing
    vpc_id: pulumi.Input[str] | None = None  # None: the controller asks the instance metadata
    subnet_ids: tuple[pulumi.Input[str], ...] = ()  # with vpc_id: the VPC's subnets, where its load balancers go


class AwsLoadBalancerController(pulumi.ComponentResource):
    release: k8s.helm.v3.Release
    role: aws.iam.Role

    def __init__(
        self, name: str, cluster: ClusterHandle, args: AwsLoadBalancerControllerArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("platform:aws_load_balancer_controller:AwsLoadBalancerController", name, None, opts)
        on_aws = pulumi.ResourceOptions(parent=self, provider=args.identity.provider)
        self.role = aws.iam.Role(
            name, assume_role_policy=service_account_trust(args.identity, NAMESPACE, SERVICE_ACCOUNT), tags=managed_by(), opts=on_aws
        )
        aws.iam.RolePolicy(name, role=self.role.name, policy=iam_policy(), opts=on_aws)
        if args.vpc_id is not None:
            policy = pulumi.Output.all(args.vpc_id, *args.subnet_ids).apply(lambda a: own_vpc_policy(a[0], a[1:]))
            aws.iam.RolePolicy(f"{name}-own-vpc", role=self.role.name, policy=policy, opts=on_aws)
        key = tls.PrivateKey(f"{name}-webhook", algorithm="ECDSA", ecdsa_curve="P256", opts=pulumi.ResourceOptions(parent=self))
        certificate = tls.SelfSignedCert(
            f"{name}-webhook",
            private_key_pem=key.private_key_pem,
            validity_period_hours=WEBHOOK_CERTIFICATE_HOURS,
            early_renewal_hours=WEBHOOK_CERTIFICATE_HOURS // 2,
            allowed_uses=["digital_signature", "key_encipherment", "server_auth"],
            dns_names=[f"{WEBHOOK_SERVICE}.{NAMESPACE}.svc", f"{WEBHOOK_SERVICE}.{NAMESPACE}.svc.cluster.local"],
            subject=tls.SelfSignedCertSubjectArgs(common_name=f"{WEBHOOK_SERVICE}.{NAMESPACE}.svc", organization="platform-bootstrap"),
            opts=pulumi.ResourceOptions(parent=self),
        )
        values: dict[str, Any] = {
            "clusterName": args.cluster_name,
            "region": args.identity.region,
            "replicaCount": args.settings.replicas,
            "podDisruptionBudget": {"maxUnavailable": 1},
            "serviceAccount": {"name": SERVICE_ACCOUNT, "annotations": {"eks.amazonaws.com/role-arn": self.role.arn}},
            # The API server trusts the self-signed certificate itself (the webhooks' caBundle).
            "webhookTLS": {"caCert": certificate.cert_pem, "cert": certificate.cert_pem, "key": key.private_key_pem},
            # Services of type LoadBalancer (NLBs) only: ingress is the platform's own controller's.
            "createIngressClassResource": False,
            # It would still build an ALB for any Ingress annotated `kubernetes.io/ingress.class: alb`
            # (a tenant's, outside its load balancer quota); its webhook refuses that annotation now.
            "disableIngressClassAnnotation": True,
        }
        if args.vpc_id is not None:
            values["vpcId"] = args.vpc_id
        ns = namespace(SLICE.namespace, cluster, self)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=cluster.provider)
        held = [hold_webhook(name, ns, WEBHOOK_PORT, k8s_opts), *hold_namespace_egress(name, ns, cluster.api_server, _egress(args), k8s_opts)]
        self.release = SLICE.release(cluster, self, args.settings, values, "", ns=ns, depends_on=held)
        args.inventory.register(*credentials(name, cluster.role))
        self.register_outputs({"roleArn": self.role.arn, "release": self.release.status})


def credentials(name: str, cluster: str) -> list[Credential]:
    """The controller's AWS sessions and its webhook's serving key."""
    return [
        replace(irsa_credential(
            name, f"{NAMESPACE}/{SERVICE_ACCOUNT}", cluster,
            "Elastic Load Balancing and the security groups and target groups it tags (upstream's policy, pinned); "
            "security-group changes and load balancers in its cluster's VPC only",
        ), what=f"AWS sessions of the AWS Load Balancer Controller on {cluster} (IRSA)"),
        program_certificate(
            f"serving key and certificate of the AWS Load Balancer Controller's webhook on {cluster}",
            signed="self-signed, the webhooks' caBundle",
            holder=f"the controller on {cluster} (Secret {NAMESPACE}/aws-load-balancer-tls) and the Pulumi state",
            scope=f"authenticates {WEBHOOK_SERVICE}.{NAMESPACE}.svc to that cluster's API server only",
            hours=WEBHOOK_CERTIFICATE_HOURS,
            rotation=f"`pulumi up` re-issues it {WEBHOOK_CERTIFICATE_HOURS // 2 // 24} days before it expires (early renewal)",
            resources=(f"{name}-webhook",),
        ),
    ]


def _egress(args: AwsLoadBalancerControllerArgs) -> list[Reach]:
    """Beside its API server: AWS's regional APIs (ELBv2, EC2, ACM, WAF, Shield, STS through its IRSA role) on HTTPS,
    the internet (the VPCs have no interface endpoints); the instance metadata only where no VPC id is given (it then
    asks the metadata for it)."""
    metadata = [k8s.networking.v1.NetworkPolicyEgressRuleArgs(
        to=[k8s.networking.v1.NetworkPolicyPeerArgs(ip_block=k8s.networking.v1.IPBlockArgs(cidr=INSTANCE_METADATA))], ports=tcp(80))]
    return [Reach("aws", {}, [internet([HTTPS]), *(metadata if args.vpc_id is None else [])])]


def on_cluster(parts: ClusterParts, settings: ServiceSettings) -> AwsLoadBalancerController | None:
    """On EKS only: other clusters get MetalLB or their own (components/metallb.py)."""
    if parts.eks is None:
        return None
    identity, cluster_name = parts.eks
    cluster = parts.cluster
    return AwsLoadBalancerController(
        f"{cluster.role}-aws-load-balancer-controller",
        cluster,
        AwsLoadBalancerControllerArgs(
            cluster_name=cluster_name,
            identity=identity,
            inventory=parts.inventory,
            settings=settings,
            vpc_id=cluster.network.vpc_id if cluster.network else None,
            subnet_ids=(*cluster.network.private_subnet_ids, *cluster.network.public_subnet_ids) if cluster.network else (),
        ),
    )


SLICE: ServiceSlice[AwsLoadBalancerController] = ServiceSlice(
    key="aws_load_balancer_controller",
    namespace=PlatformNamespace(NAMESPACE, "the AWS Load Balancer Controller, which turns LoadBalancer Services into AWS NLBs"),
    chart="aws-load-balancer-controller",
    on_cluster=on_cluster,
    default_replicas=2,
)
