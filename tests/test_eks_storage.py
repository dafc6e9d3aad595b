"""Persistent volumes on EKS: the EBS CSI driver with a role of its own, and a default class.

EKS clusters since Kubernetes 1.30 mark no StorageClass as default, and the nodes' role has no
EBS rights: without both, every claim of the platform (Vault's raft, Gitaly, Prometheus,
Dragonfly's seed peers) would wait for a volume forever on a real `pulumi up`.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from components.cluster import DEFAULT_STORAGE_CLASS, EBS_CSI_ACCOUNT, EBS_CSI_POLICY
from platformctl.render import Render

EKS = ("control-plane", "dev", "prod")


def named(plan: dict[str, Any], name: str, type_: str) -> dict[str, Any]:
    [found] = [r for r in plan["resources"] if r["name"] == name and r["type"] == type_]
    return found


@pytest.mark.parametrize("cluster", EKS)
def test_the_ebs_csi_controller_has_a_role_for_its_service_account_only(renders: dict[str, Render], cluster: str) -> None:
    plan = renders["prod"].plan
    addon = named(plan, f"{cluster}-aws-ebs-csi-driver", "aws:eks/addon:Addon")
    role = named(plan, f"{cluster}-ebs-csi", "aws:iam/role:Role")
    assert role["urn"] in addon["dependsOn"] and f":role/{cluster}-ebs-csi" in addon["inputs"]["serviceAccountRoleArn"]
    [statement] = json.loads(role["inputs"]["assumeRolePolicy"])["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert sorted(statement["Condition"]["StringEquals"].values()) == sorted(
        ["sts.amazonaws.com", f"system:serviceaccount:{EBS_CSI_ACCOUNT[0]}:{EBS_CSI_ACCOUNT[1]}"]
    )
    attachment = named(plan, f"{cluster}-ebs-csi", "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert attachment["inputs"]["policyArn"] == EBS_CSI_POLICY and role["urn"] in attachment["dependsOn"]
    # No other add-on but the VPC CNI (tests/test_eks_cni.py) runs with a role of the program's.
    others = [r for r in plan["resources"] if r["type"] == "aws:eks/addon:Addon" and r["cluster"] is None and r is not addon
              and r["name"].startswith(f"{cluster}-") and r["inputs"].get("serviceAccountRoleArn")]
    assert [r["inputs"]["addonName"] for r in others] == ["vpc-cni"]
    entries = {e["what"]: e for e in plan["outputs"]["credentials"]}
    assert entries[f"AWS sessions of {'/'.join(EBS_CSI_ACCOUNT)} (IRSA) on {cluster}"]["resources"] == [f"{cluster}-ebs-csi"]


def _claims(render: Render, cluster: str) -> list[tuple[str, Any]]:
    """Every persistent volume claim the cluster's releases and the program declare: (where, its class)."""
    found = []
    for release in render.plan["resources"]:
        if release["cluster"] != cluster or release["urn"] not in render.manifests:
            continue
        for text in render.manifests[release["urn"]]:
            if "PersistentVolumeClaim" not in text and "volumeClaimTemplates" not in text:
                continue  # no claim in it: not worth parsing (GitLab's release alone renders hundreds)
            obj = yaml.load(text, Loader=yaml.CSafeLoader)
            spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
            if obj["kind"] == "PersistentVolumeClaim":
                found.append((f"{release['name']}: {obj['metadata']['name']}", spec.get("storageClassName")))
            for template in spec.get("volumeClaimTemplates") or []:
                found.append((f"{release['name']}: {obj['kind']} {obj['metadata']['name']}", template["spec"].get("storageClassName")))
    return found


@pytest.mark.parametrize("cluster", EKS)
def test_every_claim_on_eks_gets_the_encrypted_gp3_default_class(renders: dict[str, Render], cluster: str) -> None:
    render = renders["prod"]
    classes = [r for r in render.plan["resources"] if r["type"] == "kubernetes:storage.k8s.io/v1:StorageClass" and r["cluster"] == cluster]
    [default] = [c for c in classes if c["inputs"]["metadata"].get("annotations", {}).get("storageclass.kubernetes.io/is-default-class") == "true"]
    assert default["inputs"]["metadata"]["name"] == DEFAULT_STORAGE_CLASS
    assert default["inputs"]["provisioner"] == "ebs.csi.aws.com"
    assert default["inputs"]["parameters"] == {"type": "gp3", "encrypted": "true"}
    assert default["inputs"]["volumeBindingMode"] == "WaitForFirstConsumer"  # in the zone of the pod's node
    addon = named(render.plan, f"{cluster}-aws-ebs-csi-driver", "aws:eks/addon:Addon")
    assert addon["urn"] in default["dependsOn"]
    claims = _claims(render, cluster)
    assert claims, f"{cluster}: no claims found"
    assert not [(where, name) for where, name in claims if name not in (None, "", DEFAULT_STORAGE_CLASS)]


def test_kubeconfig_clusters_keep_their_own_storage_classes(renders: dict[str, Render]) -> None:
    assert not [r for r in renders["dev"].plan["resources"] if r["type"] == "kubernetes:storage.k8s.io/v1:StorageClass"]
