"""The dev stack's first `pulumi up` on kind clusters as README leaves them: one node each.

`kind create cluster` makes one node (the control plane, untainted); README names no other
shape, and the dev stack sets no placement for that reason (README: Kubeconfig clusters). A
replicated platform workload whose pods refuse to share a node (required pod anti-affinity on
`kubernetes.io/hostname` against its own pods) keeps all but one replica Pending there, for good.
Judged on what the clusters receive: the real Helm engine's objects and the directly declared ones.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from typing import Any

import yaml

from platformctl.helm_render import RELEASE_TYPE
from platformctl.render import ROOT, Render

HOSTNAME = "kubernetes.io/hostname"
REPLICATED = {"Deployment", "StatefulSet"}


def workloads(plan: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(cluster, object) for every Deployment and StatefulSet the plan sends a cluster."""
    for resource in plan["resources"]:
        if resource["type"] == RELEASE_TYPE:
            objects = resource.get("rendered") or []
        elif resource["type"].startswith("kubernetes:apps/v1:"):
            objects = [{"kind": resource["type"].rsplit(":", 1)[1], **resource["inputs"]}]
        else:
            continue
        for obj in objects:
            if obj.get("kind") in REPLICATED:
                yield resource["cluster"], obj


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector matches these labels (matchLabels and the In/Exists expressions charts use)."""
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator in ("NotIn", "DoesNotExist") and (labels.get(key) in values if operator == "NotIn" else key in labels):
            return False
    return True


def one_per_node(obj: dict[str, Any]) -> bool:
    """Whether the scheduler puts at most one of this workload's pods on a node."""
    template = obj["spec"]["template"]
    labels = (template.get("metadata") or {}).get("labels") or {}
    anti = ((template.get("spec") or {}).get("affinity") or {}).get("podAntiAffinity") or {}
    return any(
        term.get("topologyKey") == HOSTNAME and selects(term.get("labelSelector") or {}, labels)
        for term in anti.get("requiredDuringSchedulingIgnoredDuringExecution") or []
    )


def stranded(plan: dict[str, Any]) -> list[str]:
    """Workloads of more than one replica that a one-node cluster cannot run whole."""
    return sorted(
        f"{cluster}: {obj['kind']} {obj['metadata'].get('namespace', '')}/{obj['metadata']['name']} "
        f"({obj['spec'].get('replicas', 1)} replicas, one per node)"
        for cluster, obj in workloads(plan)
        if (obj["spec"].get("replicas") or 1) > 1 and one_per_node(obj)
    )


def test_every_platform_workload_of_the_dev_stack_runs_whole_on_a_one_node_kind_cluster(charted: dict[str, Render]) -> None:
    # On main: Vault's chart default (values.yaml `server.affinity`, required anti-affinity on the
    # hostname) kept vault-1 and vault-2 Pending; the release waits for all three (atomic, 15 minutes)
    # and vault-init unseals every peer on a kubeconfig cluster, so the first `up` failed.
    assert stranded(charted["dev"].plan) == []


def test_the_check_sees_a_workload_that_needs_a_node_per_replica(charted: dict[str, Render]) -> None:
    # EKS keeps the chart's rule for Vault's raft peers: the Cluster Autoscaler adds the nodes.
    assert "control-plane: StatefulSet vault/vault (3 replicas, one per node)" in stranded(charted["prod"].plan)


VOLUME_TYPE = "metadata.annotations.volumeType"  # local-path-provisioner's per-claim choice (provisioner.go:447)


def custom(plan: dict[str, Any], cluster: str, kind: str) -> list[dict[str, Any]]:
    return [r["inputs"] for r in plan["resources"] if r["cluster"] == cluster and (r.get("inputs") or {}).get("kind") == kind]


def local_claims(plan: dict[str, Any], cluster: str, namespace: dict[str, Any]) -> bool:
    """Whether a claim made in `namespace` (its Namespace object) gets `volumeType: local` from a Gatekeeper mutator."""
    name, labels = namespace["metadata"]["name"], namespace["metadata"].get("labels") or {}
    for mutator in custom(plan, cluster, "AssignMetadata"):
        spec, match = mutator["spec"], mutator["spec"]["match"]
        claims = any("" in k.get("apiGroups", []) and "PersistentVolumeClaim" in k.get("kinds", []) for k in match.get("kinds", []))
        if (claims and spec["location"] == VOLUME_TYPE and spec["parameters"]["assign"]["value"] == "local"
                and name not in (match.get("excludedNamespaces") or []) and selects(match.get("namespaceSelector") or {}, labels)):
            return True
    return False


def test_the_volumes_velero_copies_file_by_file_are_local_not_host_path(charted: dict[str, Render]) -> None:
    # kind's default StorageClass `standard` is local-path-provisioner (kind pkg/build/nodeimage/const_storage.go:
    # 165-173, v0.0.34), whose volumes are hostPath unless the class or the claim says `local` (provisioner.go:52,
    # 442-449). Velero's file-system backup skips every hostPath volume with a warning (v1.18.1
    # pkg/podvolume/backupper.go:339-347; site/content/docs/main/file-system-backup.md:355, "Local persistent
    # volumes are supported"): on main each nightly backup of a tenant's prod namespace held no volume data.
    plan = charted["dev"].plan
    namespaces = {(r["cluster"], r["inputs"]["metadata"]["name"]): r["inputs"]
                  for r in plan["resources"] if r["type"] == "kubernetes:core/v1:Namespace"}
    copied = [(r["cluster"], ns) for r in plan["resources"] if (r.get("inputs") or {}).get("kind") == "Schedule"
              and r["inputs"]["spec"].get("template", {}).get("defaultVolumesToFsBackup")
              for ns in r["inputs"]["spec"]["template"]["includedNamespaces"]]
    assert copied, "the dev stack backs up tenants' volumes file by file"
    assert [f"{c}: {ns}" for c, ns in copied if not local_claims(plan, c, namespaces[(c, ns)])] == []
    # The platform's own namespaces keep the class's choice: their stores are backed up by other means.
    assert not local_claims(plan, "prod", namespaces[("prod", "velero")])


def test_the_kind_cluster_config_readme_names_lets_containerd_read_harbors_ca() -> None:
    # kind's containerd sets no config_path (kind images/base/files/etc/containerd/config.toml), so the CA that
    # README's day-one step writes to /etc/containerd/certs.d/harbor.<domain>/ was never read: every pull from
    # Harbor, whose certificate chains to the platform's own root, failed. On main README named no kind config.
    config = yaml.safe_load((ROOT / "docs" / "kind-cluster.yaml").read_text())
    assert config["kind"] == "Cluster" and not config.get("networking", {}).get("disableDefaultCNI")  # kindnet enforces
    patches = [tomllib.loads(patch) for patch in config["containerdConfigPatches"]]
    assert any(p["plugins"]["io.containerd.grpc.v1.cri"]["registry"]["config_path"] == "/etc/containerd/certs.d" for p in patches)
    readme = (ROOT / "README.md").read_text()
    assert "--config docs/kind-cluster.yaml" in readme and "/etc/containerd/certs.d/harbor.<domain>/ca.crt" in readme
