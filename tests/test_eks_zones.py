"""Zonal volumes on EKS: a node group per zone, so a pod held to its volume's zone can always get a node there.

An EBS volume attaches in its own zone only, and the default class binds a claim where its first pod lands
(tests/test_eks_storage.py): Vault's raft members, Gitaly, Prometheus, Valkey and Dragonfly's seed peers are
then held to that zone for good. The Cluster Autoscaler grows a node group for a pending pod only if the node
it simulates for that group fits the pod, and it simulates one node, in one zone: the first of the group's
Auto Scaling group (kubernetes/autoscaler 55c37cd, cluster-autoscaler/cloudprovider/aws/aws_manager.go:189,
`az := asg.AvailabilityZones[0]` in getAsgTemplate, the template's topology.kubernetes.io/zone at :398). A
group over all zones therefore never grows for a pod whose volume is in another zone: once that zone's nodes
are full or gone, the pod stays Pending. Upstream's answer (cloudprovider/aws/README.md:470-475, "Common
Notes and Gotchas"): one Auto Scaling group per zone, with --balance-similar-node-groups.
"""

from __future__ import annotations

from typing import Any

import pytest

from platformctl.render import Render
from tests.test_config import PROD

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
SUBNET = "aws:ec2/subnet:Subnet"
CLUSTERS = {"controlPlane": "control-plane", "dev": "dev", "prod": "prod"}


def _zones_of(plan: dict[str, Any], group: dict[str, Any]) -> list[str]:
    """The zones of the subnets a node group's instances are launched in (its Auto Scaling group's zones)."""
    subnets = {r["urn"]: r for r in plan["resources"] if r["type"] == SUBNET}
    zones = [subnets[urn]["inputs"]["availabilityZone"] for urn in group["dependsOn"] if urn in subnets]
    assert len(zones) == len(group["inputs"]["subnetIds"]), f"{group['name']}: a subnet not of the program's"
    return sorted(zones)


def _cluster_zones(plan: dict[str, Any], cluster: str) -> list[str]:
    return sorted(r["inputs"]["availabilityZone"] for r in plan["resources"]
                  if r["type"] == SUBNET and r["name"].startswith(f"{cluster}-private-"))


def test_every_node_group_launches_in_one_zone(renders: dict[str, Render]) -> None:
    plan = renders["prod"].plan
    groups = [r for r in plan["resources"] if r["type"] == NODE_GROUP]
    assert groups
    spanning = [f"{g['name']}: {', '.join(_zones_of(plan, g))}" for g in groups if len(_zones_of(plan, g)) != 1]
    assert not spanning, "node groups over several zones (the Cluster Autoscaler simulates their first zone only):\n" + "\n".join(spanning)


@pytest.mark.parametrize("key", CLUSTERS)
def test_each_configured_group_has_a_like_group_in_every_zone_at_the_configured_totals(renders: dict[str, Render], key: str) -> None:
    """So a pod held to any zone fits one group's simulated node there, and the groups of one configured group are
    'similar' to the autoscaler (same instance types, labels and taints), which it keeps balanced
    (--balance-similar-node-groups=true, as the chart renders it: tests/test_cluster_autoscaler.py)."""
    plan, cluster = renders["prod"].plan, CLUSTERS[key]
    zones = _cluster_zones(plan, cluster)
    assert len(zones) == 3
    for configured in PROD["config"]["platform:clusters"][key]["eks"]["nodeGroups"]:
        by_zone = {z: [g for g in plan["resources"] if g["type"] == NODE_GROUP and g["name"] == f"{cluster}-{configured['name']}-{z}"]
                   for z in zones}
        assert all(len(found) == 1 for found in by_zone.values()), f"{cluster}/{configured['name']}: {sorted(z for z, f in by_zone.items() if not f)}"
        groups = {z: found[0] for z, found in by_zone.items()}
        for zone, group in groups.items():
            assert _zones_of(plan, group) == [zone]
            assert group["inputs"]["instanceTypes"] == configured["instanceTypes"]
            assert (group["inputs"].get("labels") or {}) == configured.get("labels", {})
            assert [t["key"] for t in group["inputs"].get("taints") or []] == [t["key"] for t in configured.get("taints", [])]
            # The nodes of every zone alike: one launch template per configured group.
            [template] = [u for u in group["dependsOn"] if u.endswith(f"LaunchTemplate::{cluster}-{configured['name']}")]
            assert template
        sizes = [g["inputs"]["scalingConfig"] for g in groups.values()]
        # The configured sizes are the totals over the zones, spread as evenly as whole nodes allow.
        for field in ("minSize", "desiredSize", "maxSize"):
            shares = [s[field] for s in sizes]
            assert max(shares) - min(shares) <= 1, (cluster, configured["name"], field, shares)
            assert sum(shares) == configured[field], (cluster, configured["name"], field, shares)
        assert all(1 <= s["maxSize"] and s["minSize"] <= s["desiredSize"] <= s["maxSize"] for s in sizes)

