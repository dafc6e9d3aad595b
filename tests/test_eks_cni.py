"""The VPC CNI on EKS: its AWS rights on a role of its own (IRSA), not on the node role.

aws-node assigns the pods' addresses and the nodes' network interfaces (AmazonEKS_CNI_Policy,
account-wide). On the node role, whatever reaches a node's instance metadata would hold those
rights too (tests/test_aws_attacks.py). With them on its own role, the vpc-cni add-on must be
in place before the node groups: a node whose aws-node has no rights never becomes Ready.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.test_eks_storage import EKS, named

ADDON = "aws:eks/addon:Addon"


@pytest.mark.parametrize("cluster", EKS)
def test_aws_node_has_a_role_with_the_cni_policy_for_its_service_account_only(prod: dict[str, Any], cluster: str) -> None:
    role = named(prod, f"{cluster}-aws-node", "aws:iam/role:Role")
    [statement] = json.loads(role["inputs"]["assumeRolePolicy"])["Statement"]
    oidc = named(prod, f"{cluster}-oidc", "aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    host = oidc["inputs"]["url"].removeprefix("https://")
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity" and statement["Principal"]["Federated"].endswith(f":oidc-provider/{host}")
    assert oidc["urn"] in role["dependsOn"]
    assert statement["Condition"] == {"StringEquals": {
        f"{host}:sub": "system:serviceaccount:kube-system:aws-node", f"{host}:aud": "sts.amazonaws.com"}}
    attachments = [a for a in prod["resources"] if a["type"] == "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
                   and role["urn"] in a["dependsOn"]]
    # IPv4 clusters (no kubernetesNetworkConfig.ipFamily): AWS's managed policy, not the IPv6 one.
    assert [a["inputs"]["policyArn"] for a in attachments] == ["arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy"]
    assert (named(prod, cluster, "aws:eks/cluster:Cluster")["inputs"].get("kubernetesNetworkConfig") or {}).get("ipFamily", "ipv4") == "ipv4"


@pytest.mark.parametrize("cluster", EKS)
def test_the_vpc_cni_comes_before_the_nodes_with_its_role_and_the_others_after(prod: dict[str, Any], cluster: str) -> None:
    cni = named(prod, f"{cluster}-vpc-cni", ADDON)
    role = named(prod, f"{cluster}-aws-node", "aws:iam/role:Role")
    policy = named(prod, f"{cluster}-aws-node", "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert f":role/{cluster}-aws-node-" in cni["inputs"]["serviceAccountRoleArn"]
    # The role and its policy exist before aws-node runs with it.
    assert {role["urn"], policy["urn"]} <= set(cni["dependsOn"])
    assert json.loads(cni["inputs"]["configurationValues"]) == {"enableNetworkPolicy": "true"}
    groups = [r for r in prod["resources"] if r["type"] == "aws:eks/nodeGroup:NodeGroup" and r["name"].startswith(f"{cluster}-")]
    assert groups and all(cni["urn"] in group["dependsOn"] for group in groups)
    assert not {group["urn"] for group in groups} & set(cni["dependsOn"])
    # (Velero's snapshot-controller is its slice's, after the nodes through its namespace: tests/test_tenant_backups.py.)
    others = [r for r in prod["resources"] if r["type"] == ADDON and r["name"].startswith(f"{cluster}-") and r is not cni
              and not r["name"].startswith(f"{cluster}-velero-")]
    assert {r["inputs"]["addonName"] for r in others} == {"coredns", "kube-proxy", "eks-pod-identity-agent", "aws-ebs-csi-driver"}
    assert all({group["urn"] for group in groups} <= set(r["dependsOn"]) for r in others)


@pytest.mark.parametrize("cluster", EKS)
def test_the_aws_node_role_is_in_the_credential_inventory(prod: dict[str, Any], cluster: str) -> None:
    entries = {e["what"]: e for e in prod["outputs"]["credentials"]}
    entry = entries[f"AWS sessions of kube-system/aws-node (IRSA) on {cluster}"]
    assert entry["resources"] == [f"{cluster}-aws-node"] and entry["category"] == "federated"
    assert entry["holder"] == f"service account kube-system/aws-node on {cluster}" and entry["lifetimeSeconds"] == 3600
    nodes = entries["AWS credentials of the EKS control planes and node groups"]
    assert "CNI" not in nodes["scope"] and "CNI" not in nodes["holder"]


@pytest.mark.parametrize("cluster", EKS)
def test_every_addon_with_a_role_waits_for_the_roles_policy(prod: dict[str, Any], cluster: str) -> None:
    """An add-on that starts before its role has its policy fails its first AWS calls (the EBS CSI
    controller: no volume for the first claims) until a restart."""
    attachments = [a for a in prod["resources"] if a["type"] == "aws:iam/rolePolicyAttachment:RolePolicyAttachment"]
    with_roles = [r for r in prod["resources"]
                  if r["type"] == ADDON and r["name"].startswith(f"{cluster}-") and r["inputs"].get("serviceAccountRoleArn")]
    assert {r["inputs"]["addonName"] for r in with_roles} == {"vpc-cni", "aws-ebs-csi-driver"}
    for addon in with_roles:
        role_name = addon["inputs"]["serviceAccountRoleArn"].split(":role/", 1)[1]
        policies = [a["urn"] for a in attachments if a["inputs"]["role"] == role_name]
        assert policies and set(policies) <= set(addon["dependsOn"]), addon["name"]
