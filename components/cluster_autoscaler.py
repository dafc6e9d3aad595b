"""The Cluster Autoscaler on each EKS cluster: node groups grow when pods cannot be scheduled and
shrink when nodes stay underused, between each group's minSize and maxSize.

It finds the groups by the tags EKS puts on a managed node group's Auto Scaling group
(`k8s.io/cluster-autoscaler/<cluster>`), and calls the AWS APIs as an IAM role its service account
assumes (IRSA): reads anywhere, but resizing and terminating only in groups of its own cluster (a
tag condition). Its version follows the cluster's Kubernetes minor, as upstream asks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws import AwsWorkloadIdentity, irsa_credential, workload_role
from components.egress import HTTPS, Reach, internet
from components.inventory import Credential
from components.service import AddOnArgs, ChartAddOn, ClusterParts, PlatformNamespace, ServiceSettings, ServiceSlice
from components.versions import CLUSTER_AUTOSCALER_TAGS
from components.cluster import ClusterHandle

NAMESPACE = "cluster-autoscaler"
SERVICE_ACCOUNT = "cluster-autoscaler"
# What upstream's AWS guide lists (cluster-autoscaler/cloudprovider/aws/README.md, "Minimal IAM Permissions").
READS = (
    "autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeAutoScalingInstances", "autoscaling:DescribeLaunchConfigurations",
    "autoscaling:DescribeScalingActivities", "autoscaling:DescribeTags", "ec2:DescribeImages", "ec2:DescribeInstanceTypes",
    "ec2:DescribeLaunchTemplateVersions", "ec2:GetInstanceTypesFromInstanceRequirements", "eks:DescribeNodegroup",
)
WRITES = ("autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup")


def iam_policy(cluster_name: str) -> str:
    """Reads anywhere; resizing and terminating in the Auto Scaling groups EKS tags as this cluster's only."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": list(READS), "Resource": "*"},
        {"Effect": "Allow", "Action": list(WRITES), "Resource": "*",
         "Condition": {"StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster_name}": "owned"}}},
    ]})


@dataclass(frozen=True, kw_only=True)
class ClusterAutoscalerArgs(AddOnArgs):
    cluster_name: pulumi.Output[str]  # the EKS cluster's name
    identity: AwsWorkloadIdentity  # the cluster's own OIDC provider
    kubernetes_version: str  # the cluster's minor: the autoscaler's own


class ClusterAutoscaler(ChartAddOn[ClusterAutoscalerArgs]):
    type_token = "platform:cluster_autoscaler:ClusterAutoscaler"
    own_pods_only = True  # it calls AWS and the API server; nothing calls it (nothing scrapes its metrics, 8085)
    role: aws.iam.Role

    def prepare(self, name: str, args: ClusterAutoscalerArgs) -> None:
        self.role = workload_role(name, args.identity, NAMESPACE, SERVICE_ACCOUNT, args.cluster_name.apply(iam_policy), self)

    def egress(self, args: ClusterAutoscalerArgs) -> Sequence[Reach]:
        """Beside its API server, AWS's regional APIs (Auto Scaling, EC2, STS through its IRSA role) on HTTPS: the
        internet (the VPCs have no interface endpoints)."""
        return [Reach("aws", {}, [internet([HTTPS])])]

    def values(self, args: ClusterAutoscalerArgs) -> dict[str, Any]:
        return {
            "cloudProvider": "aws",
            "awsRegion": args.identity.region,
            "autoDiscovery": {"clusterName": args.cluster_name},
            # One acts at a time (leader election); a second takes over after a drain.
            "replicaCount": args.settings.replicas,
            "podDisruptionBudget": {"maxUnavailable": 1},
            "image": {"tag": CLUSTER_AUTOSCALER_TAGS[args.kubernetes_version]},
            "rbac": {"serviceAccount": {"name": SERVICE_ACCOUNT, "annotations": {"eks.amazonaws.com/role-arn": self.role.arn}}},
            "extraArgs": {
                "balance-similar-node-groups": True,  # a configured group is a node group per zone (cluster.py): grown alike
                "expander": "least-waste",
                # Scratch space (emptyDir) does not pin a node: the platform's pods keep none that matters.
                "skip-nodes-with-local-storage": False,
            },
        }

    def extend(self, name: str, cluster: ClusterHandle, args: ClusterAutoscalerArgs) -> None:
        args.inventory.register(credential(name, cluster.role))

    def outputs(self) -> dict[str, Any]:
        return {"roleArn": self.role.arn, "release": self.release.status}


def credential(name: str, cluster: str) -> Credential:
    return replace(irsa_credential(
        name, f"{NAMESPACE}/{SERVICE_ACCOUNT}", cluster,
        "describe Auto Scaling groups and instance types; resize and terminate in this cluster's node groups only (tag condition)",
    ), what=f"AWS sessions of the Cluster Autoscaler on {cluster} (IRSA)")


def on_cluster(parts: ClusterParts, settings: ServiceSettings) -> ClusterAutoscaler | None:
    """On EKS only: a kubeconfig cluster's nodes are its owner's to size."""
    if parts.eks is None:
        return None
    identity, cluster_name = parts.eks
    args = ClusterAutoscalerArgs(
        settings=settings, inventory=parts.inventory,
        cluster_name=cluster_name, identity=identity, kubernetes_version=parts.cluster.kubernetes_version,
    )
    return ClusterAutoscaler(f"{parts.cluster.role}-cluster-autoscaler", parts.cluster, SLICE, args)


SLICE: ServiceSlice[ClusterAutoscaler] = ServiceSlice(
    key="cluster_autoscaler",
    namespace=PlatformNamespace(NAMESPACE, "the Cluster Autoscaler, which sizes the EKS node groups"),
    chart="cluster-autoscaler",
    on_cluster=on_cluster,
    default_replicas=2,
)
