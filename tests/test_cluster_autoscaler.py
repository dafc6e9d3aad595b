"""The Cluster Autoscaler on each EKS cluster (components/cluster_autoscaler.py): on the prod plan
and on the objects the real Helm engine renders from the pinned chart."""

from __future__ import annotations

import json

import pytest
import yaml

from components import cluster_autoscaler
from components.versions import CLUSTER_AUTOSCALER_TAGS
from platformctl.render import Render
from tests.test_eks_storage import named

EKS = ("control-plane", "dev", "prod")


@pytest.mark.parametrize("cluster", EKS)
def test_each_eks_cluster_sizes_its_own_node_groups(renders: dict[str, Render], cluster: str) -> None:
    render = renders["prod"]
    release = named(render.plan, f"{cluster}-cluster-autoscaler", "kubernetes:helm.sh/v3:Release")
    values = release["inputs"]["values"]
    assert release["cluster"] == cluster and release["inputs"]["namespace"] == cluster_autoscaler.NAMESPACE
    assert values["cloudProvider"] == "aws" and values["awsRegion"] == "eu-west-1"
    assert values["image"] == {"tag": CLUSTER_AUTOSCALER_TAGS["1.33"]}  # the cluster's minor
    role = named(render.plan, f"{cluster}-cluster-autoscaler", "aws:iam/role:Role")
    assert f":role/{cluster}-cluster-autoscaler-" in values["rbac"]["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"]
    [trust] = json.loads(role["inputs"]["assumeRolePolicy"])["Statement"]
    assert f"system:serviceaccount:{cluster_autoscaler.NAMESPACE}:{cluster_autoscaler.SERVICE_ACCOUNT}" in trust["Condition"]["StringEquals"].values()
    # What the chart makes of it: discovery by the tags EKS puts on this cluster's groups, and the role.
    objects = [yaml.safe_load(text) for text in render.manifests[release["urn"]]]
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    name = values["autoDiscovery"]["clusterName"]
    assert f"--node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,k8s.io/cluster-autoscaler/{name}" in container["command"]
    assert {"--expander=least-waste", "--balance-similar-node-groups=true"} <= set(container["command"])
    assert container["image"] == f"registry.k8s.io/autoscaling/cluster-autoscaler:{CLUSTER_AUTOSCALER_TAGS['1.33']}"
    [account] = [o for o in objects if o["kind"] == "ServiceAccount"]
    assert account["metadata"]["name"] == cluster_autoscaler.SERVICE_ACCOUNT
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == values["rbac"]["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"]


@pytest.mark.parametrize("cluster", EKS)
def test_it_resizes_and_terminates_only_in_its_own_clusters_groups(renders: dict[str, Render], cluster: str) -> None:
    plan = renders["prod"].plan
    policy = json.loads(named(plan, f"{cluster}-cluster-autoscaler", "aws:iam/rolePolicy:RolePolicy")["inputs"]["policy"])
    reads, writes = policy["Statement"]
    assert not [a for a in reads["Action"] if not a.split(":")[1].startswith(("Describe", "Get"))]
    name = named(plan, f"{cluster}-cluster-autoscaler", "kubernetes:helm.sh/v3:Release")["inputs"]["values"]["autoDiscovery"]["clusterName"]
    assert writes["Action"] == ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"]
    assert writes["Condition"] == {"StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{name}": "owned"}}
    entries = {e["what"]: e for e in plan["outputs"]["credentials"]}
    entry = entries[f"AWS sessions of the Cluster Autoscaler on {cluster} (IRSA)"]
    assert entry["category"] == "federated" and entry["resources"] == [f"{cluster}-cluster-autoscaler"]


def test_kubeconfig_clusters_get_none(renders: dict[str, Render]) -> None:
    assert not [r for r in renders["dev"].plan["resources"] if r["type"] == "platform:cluster_autoscaler:ClusterAutoscaler"]
