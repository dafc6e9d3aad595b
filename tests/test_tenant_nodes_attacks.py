"""An attacker's review of dedicated tenant nodes (`platform:tenants[].dedicatedNodes`).

containerd reuses an unpacked layer by the chain id it computes from an image config's `diff_ids`, without
fetching the layer the manifest names (containerd v1.7.28 pkg/unpack/unpacker.go `doUnpackFn`: `Prepare` of the
chain id, `Stat`, done): tenant B pushes an image whose config lists tenant A's diff ids and runs on A's file
system on any node that still holds A's image. Nothing in containerd or Harbor closes it; nodes of A's own do.

The attacker is a member of tenant B: its pod tolerates A's taint and selects A's nodes (nodeSelector, node
affinity, nodeName). Every pod is judged by the constraints the plan declares on its cluster, with the real OPA
engine (tests/test_gatekeeper_plan.py `admission`); where it may land is judged by kube-scheduler's filters on the
node groups the plan declares (tests/test_node_attacks.py `lands_on`).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from platformctl.helm_render import RELEASE_TYPE
from platformctl.render import ROOT, Render, render
from tests.test_gatekeeper_plan import _pod, admission, assigned, declared
from tests.test_node_attacks import EKS_EFFECTS, NODE_GROUP, NODE_LABELS, NodeGroup, Pod, lands_on
from tests.validation import custom_resource_errors

KEY = "platform.io/tenant"
DEDICATED, OTHER = "payments", "checkout"  # both isolation: namespace in the dev stack
VIRTUAL = "catalog"  # isolation: vcluster


def _harbor(plan: dict[str, Any]) -> str:
    return next(c for c in declared(plan) if c["inputs"]["kind"] == "PlatformAllowedRegistries"
                and c["inputs"]["metadata"]["name"] == "platform-allowed-registries")["inputs"]["spec"]["parameters"]["registries"][0]


def _toleration(tenant: str, **extra: str) -> dict[str, str]:
    return {"key": KEY, "operator": "Equal", "value": tenant, "effect": "NoSchedule", **extra}


def _attacks(plan: dict[str, Any], namespace: str, tenant: str, target: str) -> dict[str, dict[str, Any]]:
    """Pods of `tenant` in `namespace` that reach for `target`'s nodes."""
    image = f"{_harbor(plan)}/{tenant}/web:1.0.0"
    toleration = _toleration(target)
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": KEY, "operator": "In", "values": [target]}]}]}}}
    preferred = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "preference": {"matchExpressions": [{"key": KEY, "operator": "In", "values": [target]}]}}]}}
    return {
        "toleration and nodeSelector": _pod(namespace, image, tolerations=[toleration], nodeSelector={KEY: target}),
        "toleration alone": _pod(namespace, image, tolerations=[toleration]),
        "toleration of every tenant's taint": _pod(namespace, image, tolerations=[{"key": KEY, "operator": "Exists"}]),
        "toleration with no effect": _pod(namespace, image, tolerations=[{"key": KEY, "value": target}]),
        "nodeSelector alone": _pod(namespace, image, nodeSelector={KEY: target}),
        "required node affinity": _pod(namespace, image, tolerations=[toleration], affinity=affinity),
        "preferred node affinity": _pod(namespace, image, tolerations=[toleration], affinity=preferred),
        "nodeName": _pod(namespace, image, tolerations=[toleration], nodeName=f"ip-10-41-1-7.{target}"),
    }


def _deployment(pod: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": pod["metadata"]["namespace"]},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": copy.deepcopy(pod["spec"])}}}


def _admitted(plan: dict[str, Any], cluster: str, attacks: dict[str, dict[str, Any]]) -> list[str]:
    """The attacks Gatekeeper admits, as Pods and as a Deployment's template."""
    admitted = []
    for name, pod in attacks.items():
        for obj in (pod, _deployment(pod)):
            _, failures = admission(plan, cluster, obj)
            if not failures:
                admitted.append(f"{obj['kind']} with {name}")
    return admitted


@pytest.mark.parametrize("stack, attacker, target", [
    # No dedicated tenant in the dev stack: no tenant can land beside one that opts in later.
    ("dev", OTHER, DEDICATED),
    # The prod stack's example: catalog has nodes of its own.
    ("prod", DEDICATED, VIRTUAL),
])
def test_another_tenant_cannot_reach_for_a_tenants_nodes(renders: dict[str, Render], stack: str, attacker: str, target: str) -> None:
    """Any tenant's pod that tolerates `platform.io/tenant` or selects nodes by it is refused, on both clusters."""
    plan = renders[stack].plan
    for cluster in ("dev", "prod"):
        admitted = _admitted(plan, cluster, _attacks(plan, f"{attacker}-{cluster}", attacker, target))
        assert admitted == [], f"{stack}: admitted on {cluster}: {admitted}"


def _dedicated_plan(tmp_path: Path, stack: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """`stack` with DEDICATED on nodes of its own: (its plan, its config document)."""
    source = ROOT / ("Pulumi.dev.yaml" if stack == "dev" else "Pulumi.prod.yaml")
    document = yaml.safe_load(source.read_text())
    tenants = document["config"]["platform:tenants"]
    for tenant in tenants:
        tenant.pop("dedicatedNodes", None)
    [entry] = [t for t in tenants if t["name"] == DEDICATED]
    entry["dedicatedNodes"] = {"instanceTypes": ["m7i.large"], "minSize": 3, "maxSize": 6, "desiredSize": 3}
    if stack == "dev":  # kubeconfig clusters: no sizes; and a vCluster tenant
        entry["dedicatedNodes"] = {}
        next(t for t in tenants if t["name"] == VIRTUAL)["dedicatedNodes"] = {}
    path = tmp_path / source.name
    path.write_text(yaml.safe_dump(document))
    # With the Helm engine: the charts' DaemonSets must run on the dedicated nodes.
    return render(path, stack, charts=True).plan, document


@pytest.fixture(scope="module")
def dedicated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return {stack: _dedicated_plan(tmp_path_factory.mktemp(stack), stack)[0] for stack in ("dev", "prod")}


def _plan_node_groups(plan: dict[str, Any], cluster: str) -> list[NodeGroup]:
    return [NodeGroup(r["name"], {**NODE_LABELS, **(r["inputs"].get("labels") or {})},
                      tuple({**t, "effect": EKS_EFFECTS[t["effect"]]} for t in r["inputs"].get("taints") or ()))
            for r in plan["resources"] if r["type"] == NODE_GROUP and r["name"].startswith(f"{cluster}-")]


def test_a_dedicated_tenants_pods_land_on_its_nodes_alone_and_no_one_elses_do(dedicated: dict[str, dict[str, Any]]) -> None:
    for stack, plan in dedicated.items():
        cluster = stack
        own = f"{DEDICATED}-{cluster}"
        other, other_ns = ("checkout", f"checkout-{cluster}") if stack == "dev" else ("catalog", f"catalog-{cluster}")
        # Another tenant still cannot reach for them.
        assert _admitted(plan, cluster, _attacks(plan, other_ns, other, DEDICATED)) == [], stack
        # The dedicated tenant's pod, as its developer writes it (no placement): refused as written, which holds
        # when the mutation webhook fails open, and admitted once the plan's mutators place it.
        bare = _pod(own, f"{_harbor(plan)}/{DEDICATED}/web:1.0.0")
        for obj in (bare, _deployment(bare)):
            _, failures = admission(plan, cluster, obj)
            assert failures, f"{stack}: {obj['kind']} of {DEDICATED} without its placement was admitted"
            placed = assigned(plan, cluster, obj)
            _, failures = admission(plan, cluster, placed)
            assert failures == [], f"{stack}: {failures}"
        mutators = [r["inputs"] for r in declared(plan) if r["cluster"] == cluster and r["inputs"]["kind"] == "Assign"
                    and r["inputs"]["metadata"]["name"].startswith(f"{own}-")]
        assert len(mutators) == 12 and all(custom_resource_errors(m) == [] for m in mutators), stack  # against Assign's CRD
        placed_pod = assigned(plan, cluster, bare)
        assert placed_pod["spec"]["nodeSelector"] == {KEY: DEDICATED}
        assert placed_pod["spec"]["tolerations"] == [_toleration(DEDICATED)]
        # It may not tolerate another tenant's nodes, or every tenant's, beside its own.
        for name, extra in (("another tenant's", _toleration(other)), ("every tenant's", {"key": KEY, "operator": "Exists"})):
            obj = copy.deepcopy(placed_pod)
            obj["spec"]["tolerations"].append(extra)
            assert admission(plan, cluster, obj)[1], f"{stack}: a {DEDICATED} pod tolerating {name} nodes was admitted"
        # The other tenant's pods keep their placement: the mutators touch the dedicated namespace only.
        other_pod = _pod(other_ns, f"{_harbor(plan)}/{other}/web:1.0.0")
        assert assigned(plan, cluster, other_pod) == other_pod
        assert admission(plan, cluster, other_pod)[1] == []
        # Where each may land, on EKS (kubeconfig clusters: nodes the operator taints and labels).
        groups = _plan_node_groups(plan, cluster)
        if stack == "prod":
            mine = [g for g in groups if g.labels.get(KEY) == DEDICATED]
            assert len(mine) == 3, f"one group per zone: {[g.name for g in groups]}"
            as_pod = Pod("own", own, {}, placed_pod["spec"])
            assert {g.name for g in groups if lands_on(as_pod, g)} == {g.name for g in mine}
            as_other = Pod("other", other_ns, {}, other_pod["spec"])
            assert not [g.name for g in mine if lands_on(as_other, g)]
            assert [g.name for g in groups if lands_on(as_other, g)]
        else:
            assert groups == []


def test_a_dedicated_tenants_virtual_cluster_runs_on_its_nodes(dedicated: dict[str, dict[str, Any]]) -> None:
    """Its control plane (the chart's StatefulSet in the host namespace) is placed by the chart's values, so it is
    admitted as rendered, without the mutation; the pods its syncer copies are placed by the mutation like any other."""
    plan = dedicated["dev"]
    for cluster in ("dev", "prod"):
        namespace = f"{VIRTUAL}-{cluster}"
        [release] = [r for r in plan["resources"] if r.get("cluster") == cluster and r["type"] == RELEASE_TYPE
                     and r["inputs"].get("namespace") == namespace and r["inputs"].get("chart") == "vcluster"]
        [statefulset] = [o for o in release["rendered"] if o["kind"] == "StatefulSet"]
        statefulset = {**statefulset, "metadata": {**statefulset["metadata"], "namespace": namespace}}
        spec = statefulset["spec"]["template"]["spec"]
        assert spec["nodeSelector"] == {KEY: VIRTUAL} and _toleration(VIRTUAL) in spec["tolerations"]
        _, failures = admission(plan, cluster, statefulset)
        assert failures == [], failures


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_platforms_daemonsets_still_run_on_a_dedicated_tenants_nodes(dedicated: dict[str, dict[str, Any]], stack: str) -> None:
    """dfdaemon, Velero's node agent, MetalLB's speaker and the rest run on every node: each DaemonSet a plan renders
    with its chart, or declares, tolerates the dedicated taint and selects the dedicated nodes (EKS: the tenant's node
    group; kubeconfig: a node the operator tainted and labelled as README says). The EKS add-ons' DaemonSets are AWS's
    and not in the plan: aws-node tolerates every taint (amazon-vpc-cni-k8s charts/aws-vpc-cni/templates/daemonset.yaml)."""
    plan = dedicated[stack]
    operators = NodeGroup("a node the operator tainted", {**NODE_LABELS, KEY: DEDICATED}, (_toleration(DEDICATED),))
    for cluster in ("dev", "prod"):
        [group, *_] = [g for g in _plan_node_groups(plan, cluster) if g.labels.get(KEY) == DEDICATED] or [operators]
        daemonsets = [o for r in plan["resources"] if r.get("cluster") == cluster and r["type"] == RELEASE_TYPE
                      for o in r.get("rendered") or [] if o["kind"] == "DaemonSet"]
        daemonsets += [r["inputs"] for r in declared(plan) if r["cluster"] == cluster and r["inputs"]["kind"] == "DaemonSet"]
        assert daemonsets, f"{cluster}: no DaemonSet in the plan"
        missing = [f"{o['metadata'].get('namespace')}/{o['metadata']['name']}" for o in daemonsets
                   if not lands_on(Pod(o["metadata"]["name"], "", {}, o["spec"]["template"]["spec"]), group)]
        assert missing == [], f"{cluster}: these DaemonSets do not run on {group.name}: {missing}"
        print(f"\n{cluster}: on {group.name}: {sorted(o['metadata']['name'] for o in daemonsets)}")


@pytest.mark.parametrize("value, words", [
    ({"instanceTypes": []}, "dedicatedNodes.instanceTypes"),
    ({"minSize": 4, "maxSize": 3, "desiredSize": 3, "instanceTypes": ["m7i.large"]}, "minSize <= desiredSize <= maxSize"),
    ({"instanceTypes": ["m7i.large"], "minSize": 1, "maxSize": 2, "desiredSize": 1}, "dedicatedNodes.maxSize"),
    ({"instanceTypes": ["m7i.large"], "labels": {"a": "b"}}, "dedicatedNodes.labels"),
    (True, "dedicatedNodes"),
    ("collision", "clusters.prod.eks.nodeGroups: the name tenant-payments is that of the group of tenants[0].dedicatedNodes"),
])
def test_bad_dedicated_nodes_config_is_refused_naming_the_key(tmp_path: Path, value: Any, words: str) -> None:
    from platformctl.render import read_stack_file
    from stacks.config import ConfigError, load_platform_config

    document = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    [entry] = [t for t in document["config"]["platform:tenants"] if t["name"] == DEDICATED]
    if value == "collision":  # a configured group of the name the tenant's group takes
        value = {"instanceTypes": ["m7i.large"], "minSize": 3, "maxSize": 6, "desiredSize": 3}
        groups = document["config"]["platform:clusters"]["prod"]["eks"]["nodeGroups"]
        groups.append({**groups[0], "name": f"tenant-{DEDICATED}"})
    entry["dedicatedNodes"] = value
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text(yaml.safe_dump(document))
    raw, secret_keys = read_stack_file(path)
    with pytest.raises(ConfigError) as error:
        load_platform_config(raw, stack="prod", source=str(path), secret_keys=secret_keys)
    assert words in str(error.value)
    assert f"tenants[{document['config']['platform:tenants'].index(entry)}]" in str(error.value)
