"""An attacker's review of where CI jobs run: a job that escapes its container owns its node, and
with it every pod on that node (their service-account tokens, their environment, their memory).

The attackers: a tenant's developer, whose branch build runs with seccomp and AppArmor unconfined
and SETUID/SETGID (BUILD_EXCEPTIONS), and a platform engineer with Developer rights, whose merge
request's jobs run its branch's code on the platform's runner for any ref. Each test places the pods
the plan makes (the job pods each runner's config.toml describes, as tests/test_gitlab_runner.py
builds them, and every pod template the control plane's charts and the program declare) on the
control plane's node groups the way kube-scheduler's filters do (node selector and required node
affinity, taints and tolerations, required pod anti-affinity both ways), and asks whether two pods
that must never meet can land on one node. Last, the merge request's gate (`access`, the merge-request
bot's job): whether a branch can pass it by editing the check it is judged by.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.gitlab_runner import NAMESPACE, POD_START_TIMEOUT, PROTECTED_NAMESPACE, protected_owner, tenant_namespace
from components.tenancy import Severity
from platformctl.helm_render import RELEASE_TYPE
from platformctl.render import Render
from tests.git_repo import git
from tests.test_access import _access, _add, _edit, _env, _stub_with_push
from tests.test_ci_attacks import RUNNER, _takes
from tests.test_ci_file import GLOBAL_KEYWORDS, _resolve
from tests.test_delivery_attacks import DNS, TRAEFIK, Network
from tests.test_delivery_attacks import Pod as NetworkPod
from tests.test_gitlab_runner import config_toml, holds_credentials, job_pod, runner_release, tenants
from tests.validation import kubernetes_errors

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
HOSTNAME = "kubernetes.io/hostname"
# Labels every EKS node (and kind node) carries besides its group's: what the charts' node selectors name.
NODE_LABELS = {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}
EKS_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod")


@dataclass(frozen=True)
class NodeGroup:
    name: str
    labels: dict[str, str]
    taints: tuple[dict[str, str], ...]


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    labels: dict[str, str]
    spec: dict[str, Any]


def node_groups(plan: dict[str, Any]) -> list[NodeGroup]:
    """The control plane's nodes: its EKS node groups, or (kubeconfig: nodes the program does not
    create) one node of any kind, unlabelled and untainted."""
    groups = [NodeGroup(r["name"], {**NODE_LABELS, **(r["inputs"].get("labels") or {})},
                        tuple({**t, "effect": EKS_EFFECTS[t["effect"]]} for t in r["inputs"].get("taints") or ()))
              for r in plan["resources"] if r["type"] == NODE_GROUP and r["name"].startswith("control-plane-")]
    return groups or [NodeGroup("any node", dict(NODE_LABELS), ())]


def _template(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec") or {}
    if obj["kind"] == "Pod":
        return {"metadata": obj.get("metadata") or {}, "spec": spec}
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]


def service_pods(plan: dict[str, Any]) -> list[Pod]:
    """Every pod the platform runs on its control plane: the charts' workloads and the program's own
    Jobs and CronJobs, the runners' managers among them; not the job pods the runners create."""
    objects = [(r["inputs"]["namespace"], o) for r in plan["resources"] if r.get("cluster") == "control-plane"
               and r["type"] == RELEASE_TYPE for o in r.get("rendered") or [] if o["kind"] in WORKLOADS]
    objects += [((r["inputs"].get("metadata") or {}).get("namespace", "default"), {"kind": r["type"].rsplit(":", 1)[1], **r["inputs"]})
                for r in plan["resources"] if r.get("cluster") == "control-plane" and r["type"].startswith("kubernetes:")
                and r["type"].rsplit(":", 1)[1] in WORKLOADS]
    pods = []
    for release_namespace, obj in objects:
        template = _template(obj)
        metadata = obj.get("metadata") or {}
        pods.append(Pod(f"{obj['kind']} {metadata.get('namespace', release_namespace)}/{metadata.get('name')}",
                        metadata.get("namespace", release_namespace), (template.get("metadata") or {}).get("labels") or {},
                        template["spec"]))
    assert len(pods) > 20, "the control plane's workloads are missing from the plan"
    return pods


def runner_job(plan: dict[str, Any], namespace: str) -> Pod:
    pod = job_pod(config_toml(runner_release(plan, namespace)))
    return Pod(f"job in {namespace}", namespace, pod["metadata"]["labels"], pod["spec"])


def tenant_jobs(plan: dict[str, Any]) -> list[Pod]:
    """A job pod of each tenant runner: for any ref, and for protected refs."""
    return [runner_job(plan, tenant_namespace(owner)) for t in tenants(plan) for owner in (t, protected_owner(t))]


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector (matchLabels, matchExpressions) against labels."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or ():
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or ()
        if not {"In": key in labels and labels[key] in values, "NotIn": key not in labels or labels[key] not in values,
                "Exists": key in labels, "DoesNotExist": key not in labels}[operator]:
            return False
    return True


def _node_term_matches(term: dict[str, Any], labels: dict[str, str]) -> bool:
    assert not term.get("matchFields"), term
    return _matches({"matchExpressions": term.get("matchExpressions") or ()}, labels)


def _tolerates(tolerations: list[dict[str, Any]], taint: dict[str, str]) -> bool:
    for toleration in tolerations:
        if toleration.get("effect") not in (None, "", taint["effect"]):
            continue
        if toleration.get("operator", "Equal") == "Exists":
            if toleration.get("key") in (None, "", taint["key"]):
                return True
        elif toleration.get("key") == taint["key"] and toleration.get("value", "") == (taint.get("value") or ""):
            return True
    return False


def lands_on(pod: Pod, group: NodeGroup) -> bool:
    """kube-scheduler's NodeAffinity and TaintToleration filters for one node of `group`."""
    if any(group.labels.get(k) != v for k, v in (pod.spec.get("nodeSelector") or {}).items()):
        return False
    required = ((pod.spec.get("affinity") or {}).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution")
    if required and not any(_node_term_matches(term, group.labels) for term in required["nodeSelectorTerms"]):
        return False
    return all(_tolerates(pod.spec.get("tolerations") or [], taint) for taint in group.taints
               if taint["effect"] in ("NoSchedule", "NoExecute"))


def _repels(pod: Pod, other: Pod) -> bool:
    """Whether one of `pod`'s required anti-affinity terms keeps `other` off its node (the
    InterPodAffinity filter checks the incoming pod's terms and those of the pods already there)."""
    terms = ((pod.spec.get("affinity") or {}).get("podAntiAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution") or ()
    for term in terms:
        if term["topologyKey"] != HOSTNAME:
            continue
        if term.get("namespaceSelector") is not None:
            assert term["namespaceSelector"] == {}, "only the empty selector (every namespace) is modelled"
            in_scope = True
        else:
            in_scope = other.namespace in (term.get("namespaces") or [pod.namespace])
        if in_scope and _matches(term.get("labelSelector") or {}, other.labels):
            return True
    return False


def shared_nodes(plan: dict[str, Any], one: Pod, other: Pod) -> list[str]:
    """The node groups where `one` and `other` can run on the same node."""
    return [g.name for g in node_groups(plan) if lands_on(one, g) and lands_on(other, g)
            and not _repels(one, other) and not _repels(other, one)]


def _meetings(plan: dict[str, Any], jobs: list[Pod], others: list[Pod]) -> list[str]:
    return sorted({f"{job.name} with {other.name} on {group}" for job in jobs for other in others
                   for group in shared_nodes(plan, job, other)})


# --- 1. a tenant's build and another tenant's jobs, its release jobs ----------------------------------

@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_a_tenants_build_never_shares_a_node_with_another_tenants_jobs(renders: dict[str, Render], stack: str) -> None:
    """Every job of a tenant runs with the build container's exceptions: the branch builds any
    developer pushes, and the release jobs of protected refs (push and sign, which hold a Vault token
    for the tenant's Harbor robot and its signing key). A job that escapes to its node must find no
    other tenant's job there: its release job's Vault token would sign the attacker's image as that
    tenant's. No two tenants' job pods, of either runner, may run on one node at once."""
    plan = renders[stack].plan
    names = tenants(plan)
    assert len(names) >= 2
    jobs = {(tenant, namespace): runner_job(plan, namespace) for tenant in names
            for namespace in (tenant_namespace(tenant), tenant_namespace(protected_owner(tenant)))}
    meetings = [f"{a} with {b} on {group}" for a in jobs for b in jobs if a[0] < b[0]
                for group in shared_nodes(plan, jobs[a], jobs[b])]
    assert not meetings, meetings
    # A job waits for a node of its own instead of failing after the runner's default 180 s.
    assert {config_toml(runner_release(plan, namespace))["kubernetes"]["poll_timeout"] for _, namespace in jobs} == {POD_START_TIMEOUT}
    # Not vacuous: one runner's jobs still run side by side, on the nodes the stack gives them.
    first = jobs[names[0], tenant_namespace(names[0])]
    assert shared_nodes(plan, first, first) == [g.name for g in node_groups(plan) if lands_on(first, g)] != []


def _starter_jobs(plan: dict[str, Any], tenant: str) -> dict[str, dict[str, Any]]:
    """`<project> <job>` -> the job, of each starter pipeline of the tenant (app, ops, ops-dev), `extends` resolved."""
    from components.tenant_supply_chain import starter_files

    harbor = config_toml(runner_release(plan, tenant_namespace(tenant)))["kubernetes"]["image"].split("/", 1)[0]
    jobs = {}
    for project, files in starter_files(tenant, harbor, Severity.HIGH, harbor.removeprefix("harbor.")).items():
        pipeline = yaml.safe_load(files[".gitlab-ci.yml"])
        jobs |= {f"{project} {name}": _resolve(pipeline, name) for name, job in pipeline.items()
                 if not name.startswith(".") and name not in GLOBAL_KEYWORDS and "trigger" not in job}
    return jobs


def _job_pods_taking(plan: dict[str, Any], tenant: str, job: dict[str, Any], protected_ref: bool) -> list[Pod]:
    """The job pods of the tenant's runners that GitLab would give `job` on a protected ref or not."""
    secrets = [r for r in plan["resources"] if r["type"] == "kubernetes:core/v1:Secret"
               and (r["inputs"].get("metadata") or {}).get("name") == "gitlab-runner-token"]
    pods = []
    for runner in (r for r in plan["resources"] if r["type"] == RUNNER and r["inputs"]["description"].startswith(f"group {tenant}")):
        if _takes(runner["inputs"], job, protected_ref):
            [namespace] = [s["inputs"]["metadata"]["namespace"] for s in secrets if runner["urn"] in s["dependsOn"]]
            pods.append(runner_job(plan, namespace))
    return pods


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_no_branch_build_shares_a_node_with_a_release_job(renders: dict[str, Render], stack: str) -> None:
    """A tenant's developer pushes a branch; its build runs with the build exceptions. The release jobs
    of a protected ref (push and sign, with an ID token for Vault: the tenant's Harbor robot and a
    token that signs with its key; bump-image, with the job token of the owner who pushed the release
    tag, which pushes to ops-dev) must never run on a node such a build can reach, the
    same tenant's included (a developer must not get what only a maintainer's release may do), nor
    after it on a node it could have stayed on: on runners and nodes of their own."""
    plan = renders[stack].plan
    builds, releases = [], []
    for tenant in tenants(plan):
        jobs = _starter_jobs(plan, tenant)
        credentials = [name for name, job in jobs.items() if holds_credentials(job)]
        assert {"app push", "app sign", "ops-dev bump-image"} <= set(credentials) and "app build" not in credentials
        builds += _job_pods_taking(plan, tenant, jobs["app build"], protected_ref=False)
        releases += [pod for name in credentials for pod in _job_pods_taking(plan, tenant, jobs[name], protected_ref=True)]
    assert builds and releases, "the starter pipeline's jobs have no runner"
    meetings = _meetings(plan, builds, releases)
    assert not meetings, meetings
    if stack == "prod":  # nor one after the other: the release jobs' nodes are never a build's
        landing = {g.name for pod in builds for g in node_groups(plan) if lands_on(pod, g)}
        assert not landing & {g.name for pod in releases for g in node_groups(plan) if lands_on(pod, g)}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_a_release_job_reaches_no_more_than_a_branch_build(renders: dict[str, Render], stack: str) -> None:
    """The runner for protected refs is held as the other: its jobs reach the cluster DNS and the
    ingress controller only (tests/test_delivery_attacks.py's walker), its namespace has the same
    constraints."""
    plan = renders[stack].plan
    network = Network(plan, "control-plane")

    def constraints(namespace: str) -> list[str]:
        return sorted(r["type"].rsplit(":", 1)[1] for r in plan["resources"] if "constraints.gatekeeper.sh" in r["type"]
                      and namespace in (r["inputs"]["spec"]["match"].get("namespaces") or ()))

    for tenant in tenants(plan):
        namespace = tenant_namespace(protected_owner(tenant))
        job = NetworkPod(f"{namespace}/job", namespace, runner_job(plan, namespace).labels, ())
        assert network.reachable(job) == [(DNS, 53), (DNS, 53), (TRAEFIK, 8443)], namespace
        assert constraints(namespace) == constraints(tenant_namespace(tenant)) != [], namespace


# --- 2. the platform's merge-request and deploy jobs --------------------------------------------------

def test_the_platforms_merge_request_jobs_never_share_a_node_with_its_services(prod: dict) -> None:
    """A Developer's merge request runs its branch's code on the platform's runner for any ref. Escaped
    to its node, it must not find Vault's pods (unsealed keys in memory), GitLab's (its secrets, every
    repository), Harbor's, OpenUnison's, ArgoCD's or any other platform pod there, nor a tenant's job."""
    merge_request = runner_job(prod, NAMESPACE)
    others = [*service_pods(prod), *tenant_jobs(prod)]
    assert {"vault", "gitlab"} <= {p.namespace for p in others}
    meetings = _meetings(prod, [merge_request], others)
    assert not meetings, meetings
    assert [g.name for g in node_groups(prod) if lands_on(merge_request, g)], "the merge-request jobs have no node"


def test_the_platforms_deploy_jobs_share_no_node_with_its_services_nor_any_job_of_a_branch(prod: dict) -> None:
    """The protected runner's jobs hold every deploy right (Pulumi's deploy team, the AWS deploy role,
    Vault's platform-deploy token). They must not run where a merge request's or a tenant's job could
    have escaped to, nor where a platform service runs (a compromised service must not reach them)."""
    deploy = runner_job(prod, PROTECTED_NAMESPACE)
    others = [*service_pods(prod), runner_job(prod, NAMESPACE), *tenant_jobs(prod)]
    meetings = _meetings(prod, [deploy], others)
    assert not meetings, meetings
    assert [g.name for g in node_groups(prod) if lands_on(deploy, g)], "the deploy jobs have no node"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_job_pod_with_its_placement_is_a_valid_pod(renders: dict[str, Render], stack: str) -> None:
    """The placement is Kubernetes' own (the API server refuses an invalid pod, and the job fails)."""
    plan = renders[stack].plan
    for release in (r for r in plan["resources"] if r["type"] == RELEASE_TYPE and r["inputs"]["chart"] == "gitlab-runner"):
        pod = job_pod(config_toml(release))
        assert kubernetes_errors({**pod, "metadata": {**pod["metadata"], "name": "job"}}) == [], release["name"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_no_job_can_choose_its_node(renders: dict[str, Render], stack: str) -> None:
    """Whatever a runner sets, a job could undo it if its variables may override the node selector or
    the tolerations (KUBERNETES_NODE_SELECTOR_*, KUBERNETES_NODE_TOLERATIONS_*): no runner allows it."""
    plan = renders[stack].plan
    for release in (r for r in plan["resources"] if r["type"] == RELEASE_TYPE and r["inputs"]["chart"] == "gitlab-runner"):
        kubernetes = config_toml(release)["kubernetes"]
        assert kubernetes["node_selector_overwrite_allowed"] == kubernetes["node_tolerations_overwrite_allowed"] == "", release["name"]
        assert not [k for k in kubernetes if "affinity" in k and "overwrite" in k], release["name"]


# --- the stack's say: placements the control plane cannot honour are refused, naming the key ----------

def _runner_option(name: str, value: Any) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        options = doc["config"]["platform:services"]["gitlabRunner"]
        if value is None:
            del options[name]
        else:
            options[name] = value
    return mutate


def _system_group_labelled(doc: dict) -> None:
    [system] = [g for g in doc["config"]["platform:clusters"]["controlPlane"]["eks"]["nodeGroups"] if g["name"] == "system"]
    system["labels"] = {"platform.io/node-role": "platform-ci"}


PLATFORM_NODES = {"nodeSelector": {"platform.io/node-role": "platform-ci"},
                  "taints": [{"key": "platform.io/platform-ci", "value": "true", "effect": "NoSchedule"}]}


@pytest.mark.parametrize(("mutate", "key", "words"), [
    (_runner_option("platformJobNodes", None), "platform:services.gitlabRunner.platformJobNodes", "required when clusters.controlPlane is EKS"),
    (_runner_option("deployJobNodes", None), "platform:services.gitlabRunner.deployJobNodes", "required when clusters.controlPlane is EKS"),
    (_runner_option("jobNodes", None), "platform:services.gitlabRunner.jobNodes", "required when clusters.controlPlane is EKS"),
    (_runner_option("releaseJobNodes", None), "platform:services.gitlabRunner.releaseJobNodes", "required when clusters.controlPlane is EKS"),
    (_runner_option("releaseJobNodes", {"nodeSelector": {"platform.io/node-role": "ci-jobs"},
                                        "taints": [{"key": "platform.io/ci-jobs", "value": "true", "effect": "NoSchedule"}]}),
     "platform:services.gitlabRunner.releaseJobNodes", "could run on ['ci'] beside those of services.gitlabRunner.jobNodes"),
    (lambda doc: doc["config"]["platform:tenants"][0].update(name="payments-protected"), "platform:tenants[0].name",
     "a suffix -protected"),
    (_runner_option("deployJobNodes", PLATFORM_NODES), "platform:services.gitlabRunner.deployJobNodes",
     "could run on ['platform-ci'] beside those of services.gitlabRunner.platformJobNodes"),
    (_system_group_labelled, "platform:services.gitlabRunner.platformJobNodes", "could run on ['system'], beside the platform's services"),
    (_runner_option("shareJobNodes", "no"), "platform:services.gitlabRunner.shareJobNodes", "allowed: true or false"),
], ids=["merge-requests-anywhere", "deploys-anywhere", "tenants-anywhere", "releases-anywhere", "releases-beside-builds",
        "tenant-named-as-a-protected-runner", "deploys-beside-merge-requests",
        "merge-requests-beside-services", "share-not-a-boolean"])
def test_a_stack_cannot_put_ci_jobs_beside_what_they_must_not_reach(tmp_path, mutate: Callable[[dict], None], key: str, words: str) -> None:
    """On an EKS control plane the program creates the nodes, so it refuses placements that would let a
    runner's jobs land beside the platform's services or another runner's jobs, or anywhere at all."""
    from tests.test_config import PROD, _problems, _write

    lines = _problems(_write(tmp_path, PROD, mutate), stack="prod")
    assert any(f": {key}:" in line and words in line for line in lines), lines


# --- 3. the access gate: a merge request judged by its own edit of the gate ---------------------------

def _merge_request_that_edits_the_gate(path: Path) -> str:
    """A repository with this project's gate at its base, and a head that grants `mallory` a role in
    payments and edits platformctl/access.py to approve everything. Returns the base commit."""
    from tests.test_bot_attacks import GATE_EDIT, _commit, _grant, _origin

    base = _origin(path)
    _grant(path)
    gate = (path / "platformctl/access.py").read_text()
    assert gate.count(GATE_EDIT[0]) == 1
    (path / "platformctl/access.py").write_text(gate.replace(*GATE_EDIT))
    _commit(path, "add mallory; access: nothing to approve")
    return base


@pytest.mark.parametrize("name", ["access", "access-main"])
def test_a_merge_request_that_edits_the_access_gate_is_judged_by_the_gate_it_edits(tmp_path: Path, name: str) -> None:
    """`access` is the merge request's gate ("Pipelines must succeed"): each grant in a tenant needs one
    of its owners' approval. Run from the merge request's checkout, it is the branch's own code: a
    branch that grants its author a role and edits the check to find no grant passes its own gate,
    and once merged, `access-main` (before dev deploys) too. Both are the merge-request bot's pipeline
    (the job the program writes into the bot project, components/merge_request_bot.py), run here as
    written (tests/test_bot_attacks.py run_bot_job) against a clone of the platform project and a GitLab
    stub that describes the upstream pipeline (the merge request's, or main's once merged, whose merged
    merge request has no approval). It must still hold the grant for an owner, with the check as it is
    at the base."""
    from tests.test_bot_attacks import PIPELINE_ID, run_bot_job

    platform = "platform/platform-bootstrap"
    origin = tmp_path / "srv" / f"{platform}.git"
    origin.mkdir(parents=True)
    base = _merge_request_that_edits_the_gate(origin)
    head = git(origin, "rev-parse", "HEAD")
    if name == "access":  # not merged: main is still the base
        git(origin, "reset", "--quiet", "--hard", base)
    with _stub_with_push() as stub:
        stub.commit_merge_requests[head] = [{"iid": stub.mr_iid, "state": "merged", "sha": head}]  # merged fast-forward
        stub.pipeline_jobs[PIPELINE_ID] = [{"id": 50, "name": "render", "status": "success"}]
        stub.artifacts[(50, "build/diff-dev.md")] = b"### Plan diff: dev (the branch's render)\n"
        done = run_bot_job(tmp_path, tmp_path / "srv", platform, name, base, head, stub)
    assert done.returncode == 1 and "mallory → developers" in done.stdout, (done.returncode, done.stdout, done.stderr[-2000:])
    assert "❌ waiting for an owner's approval" in done.stdout
    # And the edit of the check, which would hold from the next merge request on, needs a system approver.
    assert "| all | changes the access check (platformctl/access.py) | ❌ waiting for a system approver" in done.stdout, done.stdout
    # On the merge request, the bot's note says so, beside the branch's render.
    notes = [n["body"] for n in stub.notes_by(stub.user["id"])]
    if name == "access":
        assert len(notes) == 1 and "mallory → developers" in notes[0] and "the branch's render" in notes[0], notes
    else:
        assert notes == []


def test_the_gate_run_from_the_base_still_checks_a_change_of_the_config_model(repo: Path) -> None:
    """A merge request that adds a config key changes the model and the stack files together: the
    base's code cannot validate the head's files, so the pipeline's check reads their tenants and
    identity only (`--no-validate`), and the grants still wait for an owner."""
    def grant_with_a_new_key(doc: dict[str, Any]) -> None:
        _add("payments", "developers", "mallory")(doc)
        doc["config"]["platform:services"]["gitlabRunner"]["keyOfTheNextRelease"] = True

    _edit(repo, "dev", grant_with_a_new_key)
    assert _access(repo, _env(None)).returncode == 2  # this code's model refuses the key
    checked = _access(repo, _env(None), "--no-validate")
    assert checked.returncode == 1 and "mallory → developers" in checked.stdout, checked
