"""An attacker's review of people's access paths: single sign-on, groups, admin mappings, what a
person's token can do. Each test is one attempt by someone with an account at the upstream identity
source (a developer of one tenant, or of none), made against what the program really creates (the
plan's OpenUnison JIT script run under node, the plan's Vault on a real OpenBao), and each must fail
for the attacker while the people the stack names keep their rights.
"""

from __future__ import annotations

import datetime
import ssl
import subprocess
import sys
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from components import oidc_sessions
from components.openunison import JIT_WORKFLOW, LOCAL_GROUPS_LABEL
from components.vault import ADMIN_POLICY_NAME, APPROVER_POLICY_NAME
from components.vault_federation import GITLAB_PATH
from tests.certs import Tls, make_ca, server_context
from tests.loopback import JsonHandler, LoopbackServer
from tests.test_openunison_groups import needs_node, run_task
from tests.test_tenant_attacks import signed_in
from tests.test_tenant_roles import allows
from tests.test_vault_access import gitlab_id_token

PLATFORM_POLICIES = {ADMIN_POLICY_NAME, APPROVER_POLICY_NAME}


def jit_script(plan: dict) -> str:
    """The JavaScript of the plan's login JIT (the task that sets the token's groups)."""
    [workflow] = [r["inputs"] for r in plan["resources"]
                  if r["inputs"].get("kind") == "Workflow" and r["inputs"]["metadata"]["name"] == JIT_WORKFLOW]
    [script] = [t["params"]["javaScript"] for t in yaml.safe_load(workflow["spec"]["tasks"]) if "javaScript" in t.get("params", {})]
    return script


def local_groups(plan: dict) -> list[dict[str, Any]]:
    return [r["inputs"] for r in plan["resources"] if r["type"] == "kubernetes:core/v1:ConfigMap"
            and LOCAL_GROUPS_LABEL in r["inputs"]["metadata"].get("labels", {})]


def login(tmp_path: Path, plan: dict, uid: str, upstream: list[str], extra_maps: list[dict[str, Any]] = ()) -> list[str]:
    """The groups of `uid`'s token after the plan's JIT, given the upstream groups it brings."""
    answer = {"kind": "ConfigMapList", "items": [*local_groups(plan), *extra_maps]}
    state = run_task(tmp_path, jit_script(plan), uid=uid, groups=upstream, answer=answer)
    assert state["error"] is None, state
    return state["groups"]


def vault_policies(vault: Any, groups: list[str]) -> set[str]:
    """The policies Vault (real OpenBao) gives someone who signs in through OpenUnison with `groups`."""
    return set(signed_in(vault, groups).lookup_token()["data"].get("identity_policies") or [])


# --- the platform's own groups, spelled otherwise ---------------------------------------------------

# OpenBao (and Vault) look up an external group's alias without regard to case, folding with Go's
# strings.ToLower, which also folds the Turkish dotted capital I (U+0130) to a plain `i`. The
# platform's groups are upstream groups (platform:identity.clusterAdmins, systemApprovers) that the
# JIT lets through, so a look-alike one a person made in a self-service directory, or a directory's
# other spelling, would be the platform's group in Vault only.
LOOK_ALIKE = {"i": "\u0130", "k": "\u212a", "s": "\u017f", "a": "\uff41"}  # dotted I, Kelvin sign, long s, fullwidth a


def spellings(group: str) -> list[str]:
    """Other spellings of `group`: its case, and one look-alike character at a time."""
    found = {group.upper(), group.title(), *(group.replace(plain, other, 1) for plain, other in LOOK_ALIKE.items() if plain in group)}
    return sorted(found - {group})


@needs_node
def test_a_look_alike_of_the_platforms_groups_grants_nothing_in_vault(plan_vaults: Any, renders: dict, tmp_path: Path) -> None:
    plan = renders["dev"].plan
    vault = plan_vaults("dev")
    groups = {r["inputs"]["name"]: set(r["inputs"]["policies"]) for r in plan["resources"] if r["type"] == "vault:identity/group:Group"
              and set(r["inputs"]["policies"]) & PLATFORM_POLICIES}
    assert {p for policies in groups.values() for p in policies} == PLATFORM_POLICIES
    # The groups themselves still pass and still grant (the test can fail), ...
    assert login(tmp_path, plan, "root-admin", sorted(groups)) == sorted(groups)
    assert vault_policies(vault, sorted(groups)) == PLATFORM_POLICIES
    # ... and mallory, in no tenant, keeps no other spelling that Vault takes for one of them.
    folded = []
    for group, policies in groups.items():
        for name in spellings(group):
            if vault_policies(vault, [name]) & policies:
                folded.append(name)
                assert login(tmp_path, plan, "mallory", [name, "staff"]) == ["staff"], name
    assert {"PLATFORM-ADMINS", "Platform-Admins", "platform-adm\u0130ns"} <= set(folded), folded  # case and the dotted I


@needs_node
def test_a_tenant_group_with_a_dotted_capital_i_is_dropped_too(renders: dict, tmp_path: Path) -> None:
    """The tenants' own groups are folded as Vault folds them: `bİlling-owners` is billing's owners there."""
    plan = renders["dev"].plan
    billing = {"metadata": {"name": "local-groups-billing"}, "data": {"billing-owners": "tess", "billing-developers": ""}}
    assert login(tmp_path, plan, "tess", [], [billing]) == ["billing-owners"]
    assert login(tmp_path, plan, "mallory", ["b\u0130lling-owners", "B\u0130LLING-DEVELOPERS", "staff"], [billing]) == ["staff"]


# --- GitLab: whose account a sign-in opens -------------------------------------------------------------

def gitlab_omniauth(plan: dict) -> dict[str, Any]:
    [release] = [r["inputs"] for r in plan["resources"] if r["type"] == "kubernetes:helm.sh/v3:Release" and r["inputs"]["chart"] == "gitlab"]
    return release["values"]["global"]["appConfig"]["omniauth"]


def gitlab_account(plan: dict, provider: str, uid: str, email: str) -> str | None:
    """The declared GitLab account that a sign-in through `provider` (OmniAuth uid `uid`, e-mail `email`)
    opens, in GitLab's own order (gitlab-org/gitlab lib/gitlab/auth/o_auth/user.rb, `find_user`): the
    account holding that provider's identity with that extern_uid, found without regard to case
    (app/models/identity.rb, `with_extern_uid`: `iwhere`, LOWER on both sides); else, when autoLinkUser names the
    provider, the account whose e-mail it is (`User.find_by(email: email.downcase)`); else None (a new
    account, which GitLab refuses when the e-mail is taken)."""
    users = {r["urn"]: r["inputs"] for r in plan["resources"] if r["type"] == "gitlab:index/user:User"}
    for r in plan["resources"]:
        inputs = r["inputs"]
        if r["type"] == "gitlab:index/userIdentity:UserIdentity" and (inputs["externalProvider"], inputs["externalUid"].lower()) == (provider, uid.lower()):
            [owner] = [users[u]["username"] for u in r["dependsOn"] if u in users]
            return owner
    if provider in (gitlab_omniauth(plan).get("autoLinkUser") or []):
        return next((u["username"] for u in users.values() if u["email"] == email.lower()), None)
    return None


def test_an_email_asserted_upstream_opens_nobody_elses_gitlab_account(plan: dict) -> None:
    """mallory, in no tenant, sets her address at the upstream source to a tenant member's GitLab
    address (`<user id>@<emailDomain>`, which the program makes up, so the source need not hold it) and
    signs in to GitLab through OpenUnison, which passes the source's e-mail claim on. Linked by e-mail,
    she would be that member (an owner: merges to main, release tags) and her uid would replace theirs."""
    [provider] = gitlab_omniauth(plan)["allowSingleSignOn"]
    [portal] = [r["inputs"] for r in plan["resources"] if r["type"] == "kubernetes:helm.sh/v3:Release"
                and r["inputs"]["chart"] == "orchestra-login-portal"]
    assert portal["values"]["oidc"]["claims"]["email"] == "email"  # the upstream's claim, as the source has it
    accounts = [r["inputs"] for r in plan["resources"] if r["type"] == "gitlab:index/user:User"]
    assert accounts
    for account in accounts:
        member, address = account["username"], account["email"]
        assert gitlab_account(plan, provider, member, address) == member  # the member signs in to it
        assert gitlab_account(plan, provider, "mallory", address.upper()) is None, member
        assert gitlab_account(plan, provider, "mallory", address) is None, member


# --- a user id that is one of Kubernetes' own names ------------------------------------------------------

def vcluster_api_server_flags(plan: dict) -> list[list[str]]:
    """The OIDC flags of every tenant virtual cluster's API server, one list per release."""
    found = []
    for r in plan["resources"]:
        if r["type"] == "kubernetes:helm.sh/v3:Release" and r["inputs"]["chart"] == "vcluster":
            args = r["inputs"]["values"]["controlPlane"]["distro"]["k8s"]["apiServer"]["extraArgs"]
            found.append([a for a in args if a.startswith("--oidc-")])
    return found


@needs_node
@pytest.mark.parametrize("uid", ["system:serviceaccount:kube-system:coredns", "system:kube-controller-manager", "System:admin"])
def test_a_user_id_in_kubernetes_system_names_gets_no_token(renders: dict, tmp_path: Path, uid: str) -> None:
    """mallory picks her user name at a self-service source: `system:kube-controller-manager` (which may
    read every Secret and mint any service account's token) or a service account's full name. Every
    tenant's virtual cluster takes the token's `sub` as the user name as it is (no prefix), and its
    built-in bindings name those users, so each virtual cluster would be hers. The JIT refuses the login."""
    plan = renders["dev"].plan
    flags = vcluster_api_server_flags(plan)
    assert flags and all({"--oidc-username-claim=sub", "--oidc-username-prefix=-"} <= set(f) for f in flags), flags
    answer = {"kind": "ConfigMapList", "items": local_groups(plan)}
    state = run_task(tmp_path, jit_script(plan), uid=uid, groups=["staff"], answer=answer)
    assert state["error"] and "system" in state["error"], state
    assert login(tmp_path, plan, "systems-team", ["staff"]) == ["staff"]  # a name that merely starts so passes



def virtual_cluster_grants(plan: dict) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(host namespace, user, rules) for every User a tenant's virtual cluster binds, in the manifests it
    applies itself at start, with the rules of the role each binding names there (none for Kubernetes' own
    roles, `view`, which it does not declare)."""
    found = []
    for r in plan["resources"]:
        if r["type"] == "kubernetes:helm.sh/v3:Release" and r["inputs"]["chart"] == "vcluster":
            documents = list(yaml.safe_load_all(r["inputs"]["values"]["experimental"]["deploy"]["vcluster"]["manifests"]))
            roles = {(d["kind"], d["metadata"]["name"]): d["rules"] for d in documents if d["kind"] in ("ClusterRole", "Role")}
            found += [(r["inputs"]["namespace"], s["name"], roles.get((d["roleRef"]["kind"], d["roleRef"]["name"]), []))
                      for d in documents if d["kind"] in ("RoleBinding", "ClusterRoleBinding")
                      for s in d["subjects"] if s["kind"] == "User"]
    return found


@needs_node
def test_a_person_cannot_sign_in_as_the_user_a_virtual_clusters_proxy_acts_as(plan: dict, tmp_path: Path) -> None:
    """mallory names herself `openunison:platform-argocd` at a self-service source. Each tenant's virtual
    cluster binds that user, the one its kube-oidc-proxy impersonates for ArgoCD's federation tokens, to
    deploy in the tenant's namespace and read the rest; and its API server takes a person's `sub` from a
    `kubernetes` client token as the user name as it is. So her token would deploy into every
    virtual-cluster tenant, with their service accounts (their Vault role, their pull secret). The JIT
    refuses a login under any user name a virtual cluster binds that is no tenant member's."""
    flags = vcluster_api_server_flags(plan)
    assert flags and all({"--oidc-username-claim=sub", "--oidc-username-prefix=-"} <= set(f) for f in flags), flags
    members = {m for config_map in local_groups(plan) for ids in config_map["data"].values() for m in ids.split("\n") if m}
    grants = virtual_cluster_grants(plan)
    platform_users = {user for _, user, _ in grants if user not in members}
    # What the name would be worth: writing workloads in a tenant's namespace of every virtual cluster.
    deploys = {namespace for namespace, user, rules in grants if user in platform_users and allows(rules, "create", "apps", "deployments")}
    assert platform_users and deploys == {r["inputs"]["namespace"] for r in plan["resources"]
                                          if r["type"] == "kubernetes:helm.sh/v3:Release" and r["inputs"]["chart"] == "vcluster"}, grants
    answer = {"kind": "ConfigMapList", "items": local_groups(plan)}
    let_in = [user for user in sorted(platform_users)
              if run_task(tmp_path, jit_script(plan), uid=user, groups=["staff"], answer=answer)["error"] is None]
    assert not let_in, f"signed in as {let_in}: every virtual cluster's API server takes them for the user its proxy acts as"
    assert login(tmp_path, plan, "platform-argocd", ["staff"]) == ["staff"]  # the bare subject is nobody's user name there

# --- a sign-in that outlives the person's groups -------------------------------------------------------

class FakeSessionsApi(LoopbackServer):
    """Kubernetes' API for one namespace's OidcSession objects, for one bearer token, in pages of two."""

    def __init__(self, tls: Tls, token: str, sessions: dict[str, datetime.datetime]):
        self.tls, self.token = tls, token
        self.sessions = {name: created.strftime("%Y-%m-%dT%H:%M:%SZ") for name, created in sessions.items()}
        self.collection = "/apis/{}/{}/namespaces/openunison/{}".format(*oidc_sessions.SESSIONS)

    def tls_context(self) -> ssl.SSLContext:
        return server_context(self.tls)

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        class Handler(JsonHandler):
            state: FakeSessionsApi

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                url = urlsplit(self.path)
                if self.headers.get("Authorization") != f"Bearer {self.state.token}" or url.path != self.state.collection:
                    return self._reply(403, {"kind": "Status", "code": 403})
                after = parse_qs(url.query).get("continue", [""])[0]  # as Kubernetes: the last key served
                names = [n for n in sorted(self.state.sessions) if n > after]
                items = [{"metadata": {"name": n, "creationTimestamp": self.state.sessions[n]}} for n in names[:2]]
                more = len(names) > 2
                self._reply(200, {"kind": "OidcSessionList", "items": items, "metadata": {"continue": names[1] if more else ""}})

            def do_DELETE(self) -> None:  # noqa: N802
                name = self.path.removeprefix(self.state.collection + "/")
                if self.headers.get("Authorization") != f"Bearer {self.state.token}" or name not in self.state.sessions:
                    return self._reply(403 if name == self.path else 404, {"kind": "Status"})
                del self.state.sessions[name]
                self._reply(200, {"kind": "Status", "status": "Success"})

        return Handler


def reaper_jobs(plan: dict) -> list[dict[str, Any]]:
    """The CronJobs in OpenUnison's namespace that run with a right to delete its OidcSessions."""
    group, _, plural = oidc_sessions.SESSIONS
    roles = {r["inputs"]["metadata"]["name"] for r in plan["resources"] if r["type"] == "kubernetes:rbac.authorization.k8s.io/v1:Role"
             and r["inputs"]["metadata"]["namespace"] == "openunison"
             and any(group in rule["apiGroups"] and plural in rule["resources"] and "delete" in rule["verbs"] for rule in r["inputs"]["rules"])}
    accounts = {s["name"] for r in plan["resources"] if r["type"] == "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"
                and r["inputs"]["roleRef"]["name"] in roles for s in r["inputs"]["subjects"]}
    return [r["inputs"] for r in plan["resources"] if r["type"] == "kubernetes:batch/v1:CronJob"
            and r["inputs"]["metadata"]["namespace"] == "openunison"
            and r["inputs"]["spec"]["jobTemplate"]["spec"]["template"]["spec"].get("serviceAccountName") in accounts]


def test_a_sign_in_ends_so_a_removed_member_loses_the_groups(plan: dict, tmp_path: Path) -> None:
    """bob leaves tenant payments (the stack drops him from its developers) but keeps `kubectl` busy, or
    pulls with his Harbor CLI secret, every few minutes. OpenUnison's refresh copies the sign-in's claims,
    groups included, into new tokens and pushes the session one inactivity timeout further
    (OpenIDConnectIdP.refreshToken, TremoloSecurity/OpenUnison): his payments-developers group would last
    as long as he kept refreshing. The platform ends every session SESSION_MAX_SECONDS after its sign-in."""
    [portal] = [r for r in plan["resources"] if r["type"] == "kubernetes:helm.sh/v3:Release" and r["inputs"]["chart"] == "orchestra-login-portal"]
    [idp] = [d["spec"] for d in portal["rendered"] if d["kind"] == "Application" and d["metadata"]["name"] == "k8sidp"]
    assert idp["urls"][0]["idp"]["params"]["sessionStoreClassName"] == "com.tremolosecurity.oidc.k8s.K8sSessionStore"  # OidcSession objects
    [job] = reaper_jobs(plan)
    assert job["spec"]["schedule"] == "*/15 * * * *" and job["spec"]["concurrencyPolicy"] == "Forbid"
    [container] = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    now = datetime.datetime.now(datetime.timezone.utc)
    hours = datetime.timedelta(hours=1)
    sessions = {"xbob-monday-x": now - 30 * hours, "xbob-this-morning-x": now - 11 * hours,
                "xalice-x": now - 9 * hours, "xcarol-x": now - 2 * hours, "xerin-x": now}
    tls = make_ca(tmp_path / "api", "api")
    (tmp_path / "token").write_text("reaper-token\n")
    (tmp_path / "ca.crt").write_text(tls.ca_pem)
    program, flag, script, api, token_file, ca_file, namespace, max_age = container["command"]
    assert (program, flag, api, namespace, max_age) == ("python3", "-c", "https://kubernetes.default.svc", "openunison", "36000")
    assert (token_file, ca_file) == ("/var/run/secrets/kubernetes.io/serviceaccount/token", "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
    with FakeSessionsApi(tls, "reaper-token", sessions) as fake:  # the job's script, with the test's API and files
        result = subprocess.run([sys.executable, "-I", flag, script, fake.url, str(tmp_path / "token"), str(tmp_path / "ca.crt"),
                                 namespace, max_age], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert sorted(fake.sessions) == ["xalice-x", "xcarol-x", "xerin-x"], result.stdout


# --- GitLab: a top-level path that CI trust names --------------------------------------------------------

def trusted_namespaces(plan: dict) -> set[str]:
    """The top-level GitLab namespaces whose CI jobs' ID tokens Vault's roles accept (by project path)."""
    paths = {p for r in plan["resources"] if r["type"] == "vault:jwt/authBackendRole:AuthBackendRole"
             for p in ((r["inputs"].get("boundClaims") or {}).get("project_path") or "").split(",") if p}
    return {p.split("/", 1)[0] for p in paths}


def test_a_person_in_no_tenant_cannot_claim_a_namespace_that_ci_trust_names(plan: dict, plan_vaults: Any) -> None:
    """mallory, in no tenant, signs in to GitLab (any upstream account gets one there) and, on a rebuilt dev
    stack before the platform's repository is pushed, creates the top-level group `platform`, or renames her
    account to `platform` (or signs in with the upstream user id `platform`, which GitLab takes for her
    username when the path is free), then `platform/platform-bootstrap` with a protected `main` and an environment `dev`:
    Vault's platform-deploy role (platform-admin) and, on EKS, the AWS deploy role trust jobs by that path.
    A new account may create top-level groups as the application setting says (GitLab app/models/user.rb:
    `can_create_group` defaults to `Gitlab::CurrentSettings.can_create_group`, itself true by default), and
    rename itself unless the chart turns username changes off."""
    omniauth = gitlab_omniauth(plan)
    assert omniauth["allowSingleSignOn"]  # accounts for anyone who signs in
    groups = {r["inputs"]["path"]: r for r in plan["resources"] if r["type"] == "gitlab:index/group:Group"}
    assert "platform" in trusted_namespaces(plan)
    assert trusted_namespaces(plan) <= set(groups)  # the program owns every such path: no account can take it
    # and keeps it: deleting the group would delete the platform's repository
    assert groups["platform"]["options"]["retainOnDelete"] and groups["platform"]["options"]["protect"] == (plan["stack"] == "prod")
    if plan["stack"] == "dev":  # what the path is worth: platform-admin in Vault (the dev plan's, real OpenBao)
        vault = plan_vaults("dev")
        token = gitlab_id_token(vault, "platform/platform-bootstrap", "main", "branch", True, environment="dev")
        assert "platform-admin" in vault.login(GITLAB_PATH, "platform-deploy", token)["policies"]
    settings = [r["inputs"] for r in plan["resources"] if r["type"] == "gitlab:index/applicationSettings:ApplicationSettings"]
    assert [s.get("canCreateGroup") for s in settings] == [False], settings
    [release] = [r["inputs"] for r in plan["resources"] if r["type"] == "kubernetes:helm.sh/v3:Release" and r["inputs"]["chart"] == "gitlab"]
    assert release["values"]["global"]["appConfig"]["usernameChangingEnabled"] is False


def test_no_member_can_publish_a_tenants_code_to_the_internet(plan: dict) -> None:
    """A tenant's owner (or whoever took over an owner's session) sets a project or the tenant's group
    to `public`: GitLab, reachable from the internet, then serves the repositories to anyone, signed
    in or not, until a `pulumi up --refresh` notices. Only an administrator may choose `public`
    (GitLab: a restricted level is for administrators only); `internal` too (tests/test_gitlab_attacks.py)."""
    [settings] = [r["inputs"] for r in plan["resources"] if r["type"] == "gitlab:index/applicationSettings:ApplicationSettings"]
    assert "public" in settings.get("restrictedVisibilityLevels", [])
