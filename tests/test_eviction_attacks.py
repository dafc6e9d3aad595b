"""An attacker's review of node drains and scale-down: a tenant who keeps the platform from moving its pods.

Nodes go away for upgrades, EKS node-group rollouts and the Cluster Autoscaler's scale-down, each
by evicting every pod first. What keeps a pod (upstream cluster-autoscaler FAQ, "What types of
pods can prevent CA from removing a node?"): the annotation `safe-to-evict: "false"`, a Pod no
controller of a kind it knows recreates, a PodDisruptionBudget that allows no eviction; a drain
also waits out each pod's termination grace period and any finalizer, and the eviction API
refuses a pod two budgets select. A tenant who pins one node keeps it (and its cost) for good,
and blocks every upgrade of its node group for all tenants. The NFS exception is here too: the
node mounts what a pod names.

The attacker holds what the plan binds a tenant's developers to in their dev namespace and is
admitted as Gatekeeper would admit it there (tests/test_policy_attacks.py `refusals`, the real OPA
on the plan's constraints). The platform's own pods stay out: its namespaces are excluded by name,
and its runners' namespaces carry no tenant-namespace label.

Decided and not refused: a percentage maxUnavailable (it rounds up, so it always allows one
eviction); healthy pods held while others of the same budget stay unready (readiness is only known
at run time; unready ones are always evictable); a virtual cluster's host copies of its pods, which
only its syncer may make without a controller (what the autoscaler makes of them is its flags').
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from components.gitlab_runner import tenant_namespace as runner_namespace
from platformctl.helm_render import RELEASE_TYPE, object_namespace
from policy.gatekeeper import MAX_TERMINATION_GRACE_SECONDS
from stacks.services import PLATFORM_NAMESPACES
from tests.test_gatekeeper_plan import _pod, admission, cluster_views, declared, matches
from tests.test_policy_attacks import budget, own_image, refusals, tenant_member
from tests.test_tenant_roles import allows
from tests.validation import custom_resource_errors

SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict"
DISRUPTION = "PlatformPodDisruption"


def annotated(obj: dict[str, Any], annotations: dict[str, str]) -> dict[str, Any]:
    pinned = copy.deepcopy(obj)
    pinned["metadata"]["annotations"] = annotations
    return pinned


def deployment(pod: dict[str, Any]) -> dict[str, Any]:
    """A Deployment whose pod template is `pod`'s metadata and spec."""
    labels = {"app": "web"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": pod["metadata"]["namespace"]},
            "spec": {"selector": {"matchLabels": labels},
                     "template": {"metadata": {**{k: v for k, v in pod["metadata"].items() if k in ("annotations", "finalizers")},
                                               "labels": labels}, "spec": pod["spec"]}}}


def rendered(plan: dict[str, Any], chart: str, kind: str) -> list[tuple[str, dict[str, Any]]]:
    """(cluster, object) for each `kind` the Helm engine rendered of the plan's releases of `chart`,
    in the namespace it is created in."""
    return [(r["cluster"], {**obj, "metadata": {**obj["metadata"], "namespace": object_namespace(obj, r["inputs"]["namespace"])}})
            for r in plan["resources"] if r["type"] == RELEASE_TYPE and r["inputs"].get("chart") == chart
            for obj in r["rendered"] if obj["kind"] == kind]


def owned(pod: dict[str, Any], api_version: str, kind: str) -> dict[str, Any]:
    """`pod` as its controller of `kind` creates it."""
    made = copy.deepcopy(pod)
    made["metadata"]["ownerReferences"] = [{"apiVersion": api_version, "kind": kind, "name": "web-7d4b9c", "uid": "0b6c4e1a",
                                            "controller": True, "blockOwnerDeletion": True}]
    return made


def bare(pod: dict[str, Any]) -> dict[str, Any]:
    """`pod` as a developer creates it directly: no owner."""
    made = copy.deepcopy(pod)
    del made["metadata"]["ownerReferences"]
    return made


# --- the autoscaler's and Karpenter's annotations ------------------------------------------------------

def test_a_tenant_cannot_pin_its_node_with_an_annotation(plan: dict) -> None:
    """`safe-to-evict: "false"` on a pod (or Karpenter's `do-not-disrupt: "true"`) and the autoscaler
    never removes its node, however idle. Pod Security has no rule on annotations, and annotations are
    the one part of a running Pod an UPDATE may change, so the developer can also add it later."""
    cluster = "dev"
    namespace, rules = tenant_member(plan, cluster)
    assert allows(rules, "create", "apps", "deployments") and allows(rules, "patch", "", "pods")
    web = _pod(namespace, own_image(plan, cluster, namespace))  # as its ReplicaSet creates it
    assert refusals(plan, cluster, web) == []
    assert refusals(plan, cluster, deployment(web)) == []
    for pin in ({SAFE_TO_EVICT: "false"}, {"karpenter.sh/do-not-disrupt": "true"}):
        assert refusals(plan, cluster, deployment(annotated(web, pin))), f"a Deployment whose pods carry {pin} was admitted in {namespace}"
        assert refusals(plan, cluster, annotated(web, pin)), f"a Pod with {pin} was admitted in {namespace}"
        assert refusals(plan, cluster, annotated(web, pin), operation="UPDATE", old_object=web), \
            f"an UPDATE adding {pin} to a running Pod was admitted in {namespace}"
        # A Pod that already had it (created before the constraint) may still be updated otherwise.
        relabelled = annotated(web, pin)
        relabelled["metadata"]["labels"] = {"release": "2"}
        assert refusals(plan, cluster, relabelled, operation="UPDATE", old_object=annotated(web, pin)) == []
    assert refusals(plan, cluster, annotated(web, {SAFE_TO_EVICT: "true"})) == []


def test_a_tenant_cannot_hold_a_drain_with_a_finalizer_nothing_removes(plan: dict) -> None:
    """A drain evicts a pod and waits until it is gone (kubectl drain: no timeout and no
    --skip-wait-for-delete-timeout by default). A finalizer of the developer's own naming, on the Pod or
    its Deployment's template (the ReplicaSet copies it to every pod), leaves the evicted pod
    Terminating for good. Finalizers are metadata, so an UPDATE may add one to a running Pod."""
    cluster = "dev"
    namespace, _ = tenant_member(plan, cluster)
    web = _pod(namespace, own_image(plan, cluster, namespace))
    held = copy.deepcopy(web)
    held["metadata"]["finalizers"] = ["example.com/hold"]
    assert refusals(plan, cluster, deployment(held)), f"a Deployment whose pods carry a finalizer was admitted in {namespace}"
    assert refusals(plan, cluster, held), f"a Pod with a finalizer was admitted in {namespace}"
    assert refusals(plan, cluster, held, operation="UPDATE", old_object=web), f"an UPDATE adding a finalizer was admitted in {namespace}"
    job_pod = owned(web, "batch/v1", "Job")
    job_pod["metadata"]["finalizers"] = ["batch.kubernetes.io/job-tracking"]  # the Job controller's, which it removes
    assert refusals(plan, cluster, job_pod) == []

def test_the_platforms_own_unevictable_backup_stays_allowed_in_its_namespace(charted: dict) -> None:
    """GitLab's chart marks its backup CronJob's pods `safe-to-evict: "false"`: a backup cut off by a
    scale-down leaves no backup. It runs in GitLab's namespace, which the tenant constraints exclude
    by name, and a Job's pod ends by itself, so the node is held for one backup at most."""
    plan = charted["dev"].plan
    [(cluster, backup)] = [(c, o) for c, o in rendered(plan, "gitlab", "CronJob") if o["metadata"]["name"] == "gitlab-toolbox-backup"]
    template = backup["spec"]["jobTemplate"]["spec"]["template"]
    assert template["metadata"]["annotations"][SAFE_TO_EVICT] == "false"
    assert backup["metadata"]["namespace"] in {n.name for n in PLATFORM_NAMESPACES}
    selected, _ = admission(plan, cluster, backup)
    assert DISRUPTION not in selected
    # The same pods in a tenant namespace are refused.
    namespace, _ = tenant_member(plan, "dev")
    assert refusals(plan, "dev", {**backup, "metadata": {**backup["metadata"], "namespace": namespace}})


# --- a Pod that nothing recreates -------------------------------------------------------------------

def test_a_tenant_cannot_pin_its_node_with_a_pod_no_controller_recreates(plan: dict) -> None:
    """The autoscaler moves only pods a ReplicaSet, StatefulSet, Job, ReplicationController or
    DaemonSet recreates: a bare Pod, or one whose controlling owner is of another kind (the
    developer's own ConfigMap will do), keeps its node for good. So does a Pod an UPDATE orphans by
    dropping its owner. Such a Pod is admitted only annotated `safe-to-evict: "true"`: the autoscaler
    may then delete it."""
    cluster = "dev"
    namespace, rules = tenant_member(plan, cluster)
    assert allows(rules, "create", "", "pods") and allows(rules, "create", "", "configmaps")
    replicated = _pod(namespace, own_image(plan, cluster, namespace))
    alone = bare(replicated)
    assert refusals(plan, cluster, alone), f"a bare Pod was admitted in {namespace}"
    assert refusals(plan, cluster, owned(alone, "v1", "ConfigMap")), f"a Pod controlled by a ConfigMap was admitted in {namespace}"
    for api_version, kind in (("apps/v1", "ReplicaSet"), ("apps/v1", "StatefulSet"), ("batch/v1", "Job")):
        assert refusals(plan, cluster, owned(alone, api_version, kind)) == [], kind
    assert refusals(plan, cluster, alone, operation="UPDATE", old_object=replicated), f"an UPDATE orphaning a Pod was admitted in {namespace}"
    assert refusals(plan, cluster, annotated(alone, {SAFE_TO_EVICT: "true"})) == []


def test_a_virtual_clusters_copies_of_its_pods_are_admitted_from_its_syncer_only(charted: dict) -> None:
    """A vCluster tenant's pods reach the host as copies its syncer makes, owned by the virtual
    cluster's Service rather than a controller. Only that syncer (the chart's service account
    vc-<release>, each release named after its namespace) may create them; the same Pod from anyone
    else there is a bare Pod."""
    plan = charted["dev"].plan
    virtual = rendered(plan, "vcluster", "StatefulSet")
    assert virtual, "dev: no virtual cluster"
    for cluster, statefulset in virtual:
        namespace = statefulset["metadata"]["namespace"]
        syncer = f"vc-{namespace}"
        assert statefulset["spec"]["template"]["spec"]["serviceAccountName"] == syncer
        copy_of_pod = owned(_pod(namespace, own_image(plan, cluster, namespace)), "v1", "Service")  # setOwner: the vCluster's Service
        copy_of_pod["metadata"]["ownerReferences"][0]["controller"] = False
        assert refusals(plan, cluster, copy_of_pod, user=f"system:serviceaccount:{namespace}:{syncer}") == []
        assert refusals(plan, cluster, copy_of_pod, user=f"system:serviceaccount:{namespace}:default")
        assert refusals(plan, cluster, annotated(copy_of_pod, {SAFE_TO_EVICT: "false"}), user=f"system:serviceaccount:{namespace}:{syncer}")


# --- disruption budgets that count pods --------------------------------------------------------------

def test_a_tenants_disruption_budget_cannot_block_drains_by_counting_pods(plan: dict) -> None:
    """minAvailable 2 over a Deployment of 2 replicas allows no eviction, and the developer needs no
    new budget to get there: scaling down to the budget's count is enough. A percentage rounds up
    (the disruption controller's GetScaledValueFromIntOrPercent(..., true)), so minAvailable 50% of
    one replica is that replica. maxUnavailable of one or more always allows an eviction, whatever
    the replicas; 0 (as a number) was already refused."""
    cluster = "dev"
    namespace, rules = tenant_member(plan, cluster)
    assert allows(rules, "create", "policy", "poddisruptionbudgets")
    for spec in ({"maxUnavailable": 1}, {"maxUnavailable": "10%"}, {"minAvailable": 0}):
        assert refusals(plan, cluster, budget(namespace, **spec)) == [], spec
    for spec in ({"minAvailable": 1}, {"minAvailable": 2}, {"minAvailable": "50%"}, {"maxUnavailable": 0}):
        assert refusals(plan, cluster, budget(namespace, **spec)), f"a budget with {spec} was admitted in {namespace}"



def test_a_tenants_disruption_budget_cannot_keep_pods_that_never_become_ready(plan: dict) -> None:
    """Under a budget's default unhealthyPodEvictionPolicy (IfHealthyBudget) a pod that is not ready
    may be evicted only while the budget has all the healthy pods it wants. The developer's
    Deployment of 2 whose readiness probe never succeeds, under maxUnavailable 1, has none healthy
    of the 1 it wants, so neither pod is ever evicted and no node they run on drains. A Gatekeeper
    mutator gives every tenant budget that sets none AlwaysAllow (Kubernetes' advice for drains), and
    the constraint refuses IfHealthyBudget said outright."""
    cluster = "dev"
    namespace, _ = tenant_member(plan, cluster)
    assert refusals(plan, cluster, budget(namespace, maxUnavailable=1, unhealthyPodEvictionPolicy="AlwaysAllow")) == []
    assert refusals(plan, cluster, budget(namespace, maxUnavailable=1, unhealthyPodEvictionPolicy="IfHealthyBudget")), \
        f"a budget keeping unready pods was admitted in {namespace}"
    view = cluster_views(plan)[cluster]
    [mutator] = [r["inputs"] for r in declared(plan) if r["cluster"] == cluster and r["inputs"]["kind"] == "Assign"
                 and {"groups": ["policy"], "kinds": ["PodDisruptionBudget"], "versions": ["v1"]} in r["inputs"]["spec"]["applyTo"]]
    assert custom_resource_errors(mutator) == []
    assert mutator["spec"]["location"] == "spec.unhealthyPodEvictionPolicy"
    assert mutator["spec"]["parameters"] == {"assign": {"value": "AlwaysAllow"},
                                             "pathTests": [{"subPath": "spec.unhealthyPodEvictionPolicy", "condition": "MustNotExist"}]}
    assert matches(mutator["spec"]["match"], budget(namespace, maxUnavailable=1), view.namespaces[namespace])
    platform = next(n.name for n in PLATFORM_NAMESPACES if n.name in view.namespaces)
    assert not matches(mutator["spec"]["match"], budget(platform, maxUnavailable=1), view.namespaces[platform])


def test_a_tenant_cannot_make_its_pods_unevictable_with_two_budgets(plan: dict) -> None:
    """The eviction API refuses outright, as an error that kubectl drain and the autoscaler never
    retry into success, any pod that two budgets select, whatever each allows. The developer adds a
    second budget over its web pods (selected by another label they carry). Gatekeeper compares a
    new budget with the namespace's others, which it replicates (its Config), and admits it only
    when one label both require has different values."""
    cluster = "dev"
    namespace, _ = tenant_member(plan, cluster)
    [sync] = [r["inputs"] for r in declared(plan) if r["cluster"] == cluster and r["inputs"]["kind"] == "Config"]
    assert custom_resource_errors(sync) == []
    assert sync["metadata"] == {"name": "config", "namespace": "gatekeeper-system"}  # the one Gatekeeper reads
    assert {"group": "policy", "version": "v1", "kind": "PodDisruptionBudget"} in sync["spec"]["sync"]["syncOnly"]
    web = budget(namespace, maxUnavailable=1)
    web["spec"]["selector"]["matchLabels"] = {"app": "web"}
    inventory = {"namespace": {namespace: {"policy/v1": {"PodDisruptionBudget": {"web": web}}}}}

    def second(name: str, labels: dict[str, str]) -> dict[str, Any]:
        return {**web, "metadata": {**web["metadata"], "name": name}, "spec": {**web["spec"], "selector": {"matchLabels": labels}}}

    assert refusals(plan, cluster, second("api", {"app": "api"}), inventory=inventory) == []
    assert refusals(plan, cluster, web, operation="UPDATE", old_object=web, inventory=inventory) == []  # itself
    for name, labels in (("front", {"tier": "front"}), ("everything", {}), ("web-canary", {"app": "web", "track": "canary"})):
        assert refusals(plan, cluster, second(name, labels), inventory=inventory), \
            f"a second budget selecting {labels} beside app=web was admitted in {namespace}"

# --- grace periods a drain waits out -----------------------------------------------------------------

def test_a_tenants_pod_cannot_hold_a_drain_for_hours(plan: dict) -> None:
    """A drain waits for each evicted pod's grace period: 86400 seconds holds a node upgrade for a
    day. The autoscaler waits MAX_TERMINATION_GRACE_SECONDS (its default --max-graceful-termination-sec)
    and then removes the node anyway, so tenants may ask up to that and no more."""
    cluster = "dev"
    namespace, _ = tenant_member(plan, cluster)
    web = _pod(namespace, own_image(plan, cluster, namespace))
    for seconds, refused in ((MAX_TERMINATION_GRACE_SECONDS, False), (MAX_TERMINATION_GRACE_SECONDS + 1, True), (86400, True)):
        held = copy.deepcopy(web)
        held["spec"]["terminationGracePeriodSeconds"] = seconds
        assert bool(refusals(plan, cluster, deployment(held))) is refused, seconds
        assert bool(refusals(plan, cluster, held)) is refused, seconds


def test_ci_runners_keep_their_grace_period_outside_the_tenant_namespaces(charted: dict) -> None:
    """A tenant's runner finishes its running jobs when it stops (the chart's 3600 seconds), in its
    own namespace on the control plane, which carries the tenant's label but not the tenant-namespace
    one, so the cap does not select it. The job pods there are the runner's (its config.toml shapes
    them; tenants get no access to the namespace) and end with the job's timeout."""
    plan = charted["dev"].plan
    runners = [(c, o) for c, o in rendered(plan, "gitlab-runner", "Deployment") if o["metadata"]["namespace"].startswith(runner_namespace(""))]
    assert runners
    for cluster, manager in runners:
        assert manager["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > MAX_TERMINATION_GRACE_SECONDS
        selected, failures = admission(plan, cluster, manager)
        assert DISRUPTION not in selected and failures == [], (manager["metadata"], failures)


# --- NFS: an exception names its exports --------------------------------------------------------------

def test_a_tenants_nfs_exception_mounts_only_the_exports_its_stack_declares(tmp_path: Path) -> None:
    """A pod security exception allowing `nfs` volumes let a pod mount any export the node reaches:
    another tenant's, the platform's, or any host's (the kubelet mounts from the node, outside the
    pod's NetworkPolicy). The exception now lists its exports (`nfsExports`), and a volume mounts one
    of them, at or under its path, or nothing."""
    from platformctl.render import ROOT, render

    document = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    tenant = next(t for t in document["config"]["platform:tenants"] if t.get("isolation", "namespace") == "namespace")
    tenant["podSecurityException"] = {"reason": "the legacy reports read the finance share", "environments": ["dev"],
                                      "volumeTypes": ["nfs"], "nfsExports": [{"server": "nas.corp.example.com", "path": "/exports/finance"}]}
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(yaml.safe_dump(document))
    plan = render(path, "dev").plan
    namespace = f"{tenant['name']}-dev"
    [own] = [r["inputs"] for r in declared(plan) if r["inputs"]["kind"] == "PlatformPodRestricted"
             and r["inputs"]["metadata"]["name"] == f"{namespace}-pod-restricted"]
    assert own["spec"]["parameters"]["nfsExports"] == [{"server": "nas.corp.example.com", "path": "/exports/finance"}]
    web = _pod(namespace, own_image(plan, "dev", namespace))

    def mounting(server: str, export: str) -> dict[str, Any]:
        return deployment({**web, "spec": {**web["spec"], "volumes": [{"name": "share", "nfs": {"server": server, "path": export}}]}})

    assert refusals(plan, "dev", mounting("nas.corp.example.com", "/exports/finance")) == []
    assert refusals(plan, "dev", mounting("nas.corp.example.com", "/exports/finance/reports")) == []
    for server, export in (("nas.corp.example.com", "/exports/payroll"), ("nas.corp.example.com", "/exports/finance/../payroll"),
                           ("nas.corp.example.com", "/exports/finance-archive"), ("10.0.12.7", "/exports/finance"),
                           ("nas.corp.example.com.", "/exports/finance"), ("169.254.169.254", "/")):
        assert refusals(plan, "dev", mounting(server, export)), f"a volume of {server}:{export} was admitted in {namespace}"



def test_a_pod_security_exception_allows_no_network_volume_whose_servers_it_cannot_name(tmp_path: Path) -> None:
    """The exception offered iscsi, fc, cephfs and rbd volumes too, each naming its own target
    (an iSCSI portal, a SAN's ports, Ceph monitors) that the node connects to, with nothing to hold it
    to the tenant's own storage. cephfs and rbd are gone from Kubernetes since 1.31 (the in-tree
    plugins were removed); iscsi and fc would reach any target. Only nfs, whose exports the stack
    names, is left."""
    from tests.test_config import DEV, _problems, _write, setting

    for volume_type in ("cephfs", "fc", "iscsi", "rbd"):
        path = _write(tmp_path, DEV, setting("platform:tenants", 0, "podSecurityException", value={
            "reason": "the reports read the SAN's volume", "volumeTypes": [volume_type]}))
        assert any("platform:tenants[0].podSecurityException.volumeTypes[0]" in line and "'nfs'" in line for line in _problems(path)), \
            volume_type
