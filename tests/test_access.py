"""`platformctl access`: grants in the stack config need an approval by the tenant's owners.

The grant computation runs on the real stack model; the CLI runs inside a temporary Git
repository holding this project's stack files (in this process, and once as a process of its
own), talking HTTP to tests/gitlab_stub.py (python-gitlab itself is never mocked).
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.git_repo import git
from gitlab_stub import BOT, GitLabStub, client_env, run_in_process
from platformctl.access import (
    APPROVED_NOTE,
    CLUSTER_ADMIN_RULE,
    SYSTEM_RULE,
    UNAPPROVED_NOTE,
    Approvals,
    Changes,
    Grant,
    Members,
    Request,
    SystemChange,
    compare,
    members,
    report,
)
from platformctl.render import read_stack_file
from stacks.config import ConfigError, load_platform_config

ROOT = Path(__file__).resolve().parent.parent
ALICE = {"id": 5, "username": "alice", "name": "Alice"}  # owner of payments (dev and prod)
ERIN = {"id": 8, "username": "erin", "name": "Erin"}  # owner of catalog
BOB = {"id": 6, "username": "bob", "name": "Bob"}  # developer of payments
SAM = {"id": 11, "username": "Sam", "name": "Sam"}  # a system approver
BEFORE_PUSH, PUSH, AFTER_PUSH = "2026-01-02T09:00:00Z", "2026-01-02T10:00:00Z", "2026-01-02T11:00:00Z"


def _document(stack: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())


def _tenant(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in doc["config"]["platform:tenants"] if t["name"] == name)


def _members(doc: dict[str, Any], tmp_path: Path, stack: str = "dev") -> tuple[Members, dict[str, str]]:
    path = tmp_path / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump(doc))
    raw, secret_keys = read_stack_file(path)
    load_platform_config(raw, stack=stack, source=path.name, secret_keys=secret_keys)  # a valid stack
    return members(raw, path.name), raw


def _changes(tmp_path: Path, edit) -> Changes:
    base = _document("dev")
    head = copy.deepcopy(base)
    edit(head)
    changes = Changes()
    (before, base_raw), (after, head_raw) = _members(base, tmp_path), _members(head, tmp_path)
    compare("dev", before, after, changes, base_raw, head_raw)
    return changes


def _offboarding_problems(tmp_path: Path, edit) -> list[str]:
    """The problems of the edited dev stack file validated against the unedited one as its base."""
    head = _document("dev")
    edit(head)
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(yaml.safe_dump(head))
    raw, secret_keys = read_stack_file(path)
    try:
        load_platform_config(raw, stack="dev", source="x", secret_keys=secret_keys, previous=read_stack_file(ROOT / "Pulumi.dev.yaml")[0])
    except ConfigError as err:
        return err.problems
    return []


# --- which changes are grants ------------------------------------------------------------


def _add(tenant: str, role: str, user: str):
    return lambda doc: _tenant(doc, tenant).setdefault(role, []).append(user)


def _move(tenant: str, user: str, from_role: str, to_role: str):
    def edit(doc: dict[str, Any]) -> None:
        _tenant(doc, tenant)[from_role].remove(user)
        _tenant(doc, tenant).setdefault(to_role, []).append(user)

    return edit


@pytest.mark.parametrize(
    ("edit", "grants"),
    [
        (_add("payments", "developers", "zoe"), [Grant("zoe", "developers", None)]),
        (_add("payments", "ops", "zoe"), [Grant("zoe", "ops", None)]),
        (_add("payments", "owners", "zoe"), [Grant("zoe", "owners", None)]),
        (_move("payments", "bob", "developers", "ops"), [Grant("bob", "ops", "developers")]),
        (_move("payments", "dave", "ops", "owners"), [Grant("dave", "owners", "ops")]),
        (_move("payments", "dave", "ops", "developers"), [Grant("dave", "developers", "ops")]),
    ],
    ids=["new-developer", "new-ops", "new-owner", "developer-to-ops", "ops-to-owner", "ops-to-developer"],
)
def test_a_user_gaining_a_role_is_a_grant_for_the_tenants_owners(tmp_path: Path, edit, grants: list[Grant]) -> None:
    changes = _changes(tmp_path, edit)
    (request,) = changes.requests
    assert (request.stack, request.tenant, request.owners) == ("dev", "payments", ("alice",))
    assert list(request.grants) == grants
    assert changes.new_tenants == [] and changes.removed_tenants == []


def _remove(tenant: str, role: str, user: str):
    return lambda doc: _tenant(doc, tenant)[role].remove(user)


def _reorder(doc: dict[str, Any]) -> None:
    doc["config"]["platform:tenants"].reverse()
    _tenant(doc, "payments")["developers"].reverse()


def _requota(doc: dict[str, Any]) -> None:
    _tenant(doc, "payments")["quota"] = {"cpu": "2", "memory": "4Gi", "storage": "10Gi"}


@pytest.mark.parametrize("edit", [_remove("payments", "developers", "bob"), _remove("payments", "ops", "dave"),
                                  _reorder, _requota], ids=["remove-developer", "remove-ops", "reorder", "quota"])
def test_removals_reordering_and_other_keys_need_no_approval(tmp_path: Path, edit) -> None:
    changes = _changes(tmp_path, edit)
    assert changes.requests == []


def _offboard(tenant: str):
    return lambda doc: doc["config"].setdefault("platform:offboarding", []).append({"tenant": tenant, "reason": "moved to catalog-v2"})


def test_a_new_tenant_needs_a_system_approver_and_a_removal_an_offboarding_entry(tmp_path: Path) -> None:
    def edit(doc: dict[str, Any]) -> None:
        tenants = doc["config"]["platform:tenants"]
        tenants.remove(_tenant(doc, "catalog"))
        tenants.append({"name": "ledger", "owners": ["zoe"], "developers": ["bob"]})

    assert _offboarding_problems(tmp_path, edit) == [
        "platform:tenants: tenant 'catalog' is removed without a platform:offboarding entry; allowed: a new entry "
        "{tenant: <name>, reason: <why>} in platform:offboarding (README: offboarding)"]
    assert _offboarding_problems(tmp_path, lambda doc: (edit(doc), _offboard("catalog")(doc))) == []
    changes = _changes(tmp_path, lambda doc: (edit(doc), _offboard("catalog")(doc)))
    assert changes.requests == [Request("dev", "catalog", ("erin",), (), offboarding="removes the tenant")]  # its owners'
    assert changes.new_tenants == ["dev/ledger"] and changes.removed_tenants == ["dev/catalog"]
    assert changes.system == [SystemChange("dev", "adds tenant ledger")]
    text, approved = report(changes, None, "their merge request")
    assert not approved and "| dev | adds tenant ledger | ❌ waiting for a system approver (rule system-approvers) |" in text
    assert "Removed tenants (offboarded as their platform:offboarding entries say): dev/catalog." in text
    text, approved = report(changes, Approvals({"sam", "erin"}, {SYSTEM_RULE: {"sam"}}), "merge request !7")
    assert approved and "| dev | adds tenant ledger | ✅ approved by sam |" in text
    # An approval that no longer stands (withdrawn, or older than the last push) does not count.
    assert not report(changes, Approvals({"erin"}, {SYSTEM_RULE: {"sam"}}), "merge request !7")[1]


def test_switching_isolation_needs_an_offboarding_entry(tmp_path: Path) -> None:
    switch = lambda doc: _tenant(doc, "payments").update(isolation="vcluster")  # noqa: E731
    [problem] = _offboarding_problems(tmp_path, switch)
    assert problem.startswith("platform:tenants: tenant 'payments' switches isolation from namespace to vcluster, which replaces")
    assert _offboarding_problems(tmp_path, lambda doc: (switch(doc), _offboard("payments")(doc))) == []


def test_a_rename_keeps_the_tenants_owners_and_needs_a_system_approver(tmp_path: Path) -> None:
    def rename(doc: dict[str, Any]) -> None:
        _tenant(doc, "payments").update(name="billing", renamedFrom="payments")
        _tenant(doc, "billing").setdefault("developers", []).append("zoe")

    assert _offboarding_problems(tmp_path, rename) == []
    changes = _changes(tmp_path, rename)
    assert changes.new_tenants == [] and changes.removed_tenants == []
    assert changes.requests == [Request("dev", "billing", ("alice",), (Grant("zoe", "developers", None),),
                                        offboarding="renames the tenant from payments")]
    assert changes.system == [SystemChange("dev", "renames tenant payments to billing")]
    # An existing tenant cannot take over a leaving one's resources by naming it.
    takeover = lambda doc: (doc["config"]["platform:tenants"].remove(_tenant(doc, "catalog")),  # noqa: E731
                            _tenant(doc, "checkout").update(renamedFrom="catalog"))
    problems = _offboarding_problems(tmp_path, takeover)
    assert [p.split(":")[1].split(".")[0] for p in problems] == ["tenants[1]", "tenants"], problems
    assert "'checkout' already exists, so it cannot be renamed from 'catalog'" in problems[0]
    assert "'catalog' is removed without a platform:offboarding entry" in problems[1]
    assert _changes(tmp_path, takeover).system == []  # and it is no rename for the approvals either
    # Renamed and switched at once: the switch still needs its offboarding entry.
    [problem] = _offboarding_problems(tmp_path, lambda doc: (rename(doc), _tenant(doc, "billing").update(isolation="vcluster")))
    assert "tenant 'billing' switches isolation" in problem and "entry for 'payments'" in problem


def test_cluster_admin_changes_need_a_system_approver_and_a_second_cluster_admin(tmp_path: Path) -> None:
    changes = _changes(tmp_path, lambda doc: doc["config"]["platform:identity"]["clusterAdmins"].append("night-shift"))
    assert changes.system == [SystemChange("dev", "changes identity.clusterAdmins", cluster_admins=True)]
    for approvals, approved in [
        (Approvals({"sam"}, {SYSTEM_RULE: {"sam"}}), False),
        (Approvals({"sam", "mara"}, {SYSTEM_RULE: {"sam"}, CLUSTER_ADMIN_RULE: {"mara"}}, author="Mara"), False),  # the author
        (Approvals({"sam", "mara"}, {SYSTEM_RULE: {"sam"}, CLUSTER_ADMIN_RULE: {"mara", "kim"}}, author="mara"), False),  # kim's stale
        (Approvals({"sam", "mara", "kim"}, {SYSTEM_RULE: {"sam"}, CLUSTER_ADMIN_RULE: {"mara", "kim"}}, author="mara"), True),
    ]:
        assert report(changes, approvals, "merge request !7")[1] is approved
    changes = _changes(tmp_path, lambda doc: doc["config"]["platform:identity"]["systemApprovers"].append("auditors"))
    assert changes.system == [SystemChange("dev", "changes identity.systemApprovers")]


def test_a_pod_security_exception_needs_an_owner_and_a_system_approver(tmp_path: Path) -> None:
    exception = {"reason": "the legacy agent chowns its data at start", "environments": ["dev"], "capabilities": ["CHOWN"]}
    changes = _changes(tmp_path, lambda doc: _tenant(doc, "payments").update(podSecurityException=exception))
    [request] = changes.requests
    assert (request.tenant, request.owners, request.exception) == ("payments", ("alice",), "dev: capabilities CHOWN")
    assert changes.system == [SystemChange("dev", "grants tenant payments a pod security exception (dev: capabilities CHOWN)")]
    assert not report(changes, Approvals({"alice"}), "merge request !7")[1]
    assert not report(changes, Approvals({"sam"}, {SYSTEM_RULE: {"sam"}}), "merge request !7")[1]
    text, approved = report(changes, Approvals({"alice", "sam"}, {SYSTEM_RULE: {"sam"}}), "merge request !7")
    assert approved and "| dev | payments | pod security exception → dev: capabilities CHOWN | alice | ✅ approved by alice |" in text
    # Widening it (another environment, another allowance) asks again; rewording the reason does not.
    wider = {**exception, "environments": ["dev", "prod"], "runAsRoot": True}
    (base_members, base_raw), (head_members, head_raw) = (
        _members({**_document("dev"), "config": {**_document("dev")["config"], "platform:tenants": tenants}}, tmp_path)
        for tenants in ([{**t, **({"podSecurityException": e} if t["name"] == "payments" else {})} for t in _document("dev")["config"]["platform:tenants"]]
                        for e in (exception, wider)))
    widened = Changes()
    compare("dev", base_members, head_members, widened, base_raw, head_raw)
    assert widened.system == [SystemChange("dev", "grants tenant payments a pod security exception (dev, prod: capabilities CHOWN; runAsRoot)")]
    reworded = Changes()
    compare("dev", base_members, base_members, reworded, base_raw, {**base_raw, "platform:tenants": base_raw["platform:tenants"].replace(
        "the legacy agent chowns its data at start", "the legacy agent chowns its files at start")})
    assert reworded.system == [] and reworded.requests == []


def test_the_approvers_are_the_owners_at_the_base_not_the_ones_the_change_adds(tmp_path: Path) -> None:
    changes = _changes(tmp_path, _add("payments", "owners", "mallory"))
    (request,) = changes.requests
    assert request.owners == ("alice",)
    text, approved = report(changes, {"mallory"}, "merge request !7")
    assert not approved and "❌ waiting for an owner's approval" in text
    text, approved = report(changes, {"alice"}, "merge request !7")
    assert approved and "| dev | payments | mallory → owners | alice | ✅ approved by alice |" in text


def test_each_tenant_needs_its_own_owners(tmp_path: Path) -> None:
    changes = _changes(tmp_path, lambda doc: (_add("payments", "developers", "zoe")(doc),
                                              _add("catalog", "developers", "zoe")(doc)))
    assert [(r.tenant, r.owners) for r in changes.requests] == [("catalog", ("erin",)), ("payments", ("alice",))]
    text, approved = report(changes, {"alice"}, "merge request !7")
    assert not approved
    assert "| dev | payments | zoe → developers | alice | ✅ approved by alice |" in text
    assert "| dev | catalog | zoe → developers | erin | ❌ waiting for an owner's approval |" in text
    assert report(changes, {"alice", "erin"}, "merge request !7")[1]


# --- the command line against a Git repository and a GitLab (tests/conftest.py `repo`) ---------


def _edit(repo: Path, stack: str, edit) -> None:
    doc = yaml.safe_load((repo / f"Pulumi.{stack}.yaml").read_text())
    edit(doc)
    (repo / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(doc))


def _env(stub: GitLabStub | None) -> dict[str, str]:
    return client_env(stub, PYTHONPATH=str(ROOT))  # the command runs in the temporary repository


def _access(repo: Path, env: dict[str, str], *args: str, process: bool = False) -> subprocess.CompletedProcess[str]:
    """`platformctl access` run in `repo` with exactly the environment `env`, in this process
    (gitlab_stub.run_in_process); `process=True` runs the real command line instead."""
    command = ["access", "--base-ref", "HEAD", *args]
    if process:
        return subprocess.run([sys.executable, "-m", "platformctl", *command],
                              cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    return run_in_process(command, repo, env)


def _stub_with_push() -> GitLabStub:
    stub = GitLabStub(user=dict(BOT))
    stub.versions[:] = [{"id": 1, "created_at": "2026-01-02T08:00:00Z"}]
    stub.push(PUSH)
    return stub


@pytest.mark.parametrize(
    ("notes", "code", "status"),
    [
        ([(ALICE, APPROVED_NOTE, True, AFTER_PUSH)], 0, "✅ approved by alice"),
        ([({**ALICE, "username": "Alice"}, APPROVED_NOTE, True, AFTER_PUSH)], 0, "✅ approved by alice"),
        ([(ALICE, APPROVED_NOTE, True, BEFORE_PUSH)], 1, "❌ waiting"),
        ([(ALICE, APPROVED_NOTE, True, AFTER_PUSH), (ALICE, UNAPPROVED_NOTE, True, "2026-01-02T12:00:00Z")], 1, "❌ waiting"),
        ([(ALICE, APPROVED_NOTE, False, AFTER_PUSH)], 1, "❌ waiting"),
        ([(BOB, APPROVED_NOTE, True, AFTER_PUSH), (ERIN, APPROVED_NOTE, True, AFTER_PUSH)], 1, "❌ waiting"),
        ([], 1, "❌ waiting"),
    ],
    ids=["owner-after-push", "owner-other-case", "owner-before-last-push", "owner-withdrew",
         "comment-not-approval", "not-this-tenants-owner", "nobody"],
)
def test_merge_request_grant_passes_only_with_a_standing_owner_approval_after_the_last_push(
    repo: Path, notes: list[tuple[dict, str, bool, str]], code: int, status: str
) -> None:
    _edit(repo, "dev", _add("payments", "developers", "zoe"))
    with _stub_with_push() as stub:
        for author, body, system, at in notes:
            stub.add_note(body, author, system=system, at=at)
        result = _access(repo, _env(stub))
    assert result.returncode == code, result.stderr
    assert f"| dev | payments | zoe → developers | alice | {status}" in result.stdout
    assert "on merge request !7, after its last push" in result.stdout


def test_prod_grants_need_prod_owners_and_the_report_is_written(repo: Path) -> None:
    _edit(repo, "prod", _move("catalog", "frank", "developers", "ops"))
    out = repo / "build" / "access.md"
    with _stub_with_push() as stub:
        stub.add_note(APPROVED_NOTE, ERIN, system=True, at=AFTER_PUSH)
        # The real command line once: `python -m platformctl access` in the repository.
        result = _access(repo, _env(stub), "--out", "build/access.md", process=True)
    assert result.returncode == 0, result.stderr
    assert "| prod | catalog | frank: developers → ops | erin | ✅ approved by erin |" in result.stdout
    assert out.read_text() == result.stdout


def test_on_main_the_merged_merge_request_of_the_commit_is_checked(repo: Path) -> None:
    _edit(repo, "dev", _add("payments", "ops", "zoe"))
    with _stub_with_push() as stub:
        stub.commit_merge_requests["c0ffee"] = [{"iid": 3, "state": "closed", "sha": "c0ffee"},
                                                {"iid": stub.mr_iid, "state": "merged", "merge_commit_sha": "c0ffee"}]
        stub.add_note(APPROVED_NOTE, ALICE, system=True, at=AFTER_PUSH)
        env = _env(stub)
        env.pop("CI_MERGE_REQUEST_IID")
        approved = _access(repo, env, "--commit", "c0ffee")
        unknown = _access(repo, env, "--commit", "decaf0")
    assert approved.returncode == 0, approved.stderr
    assert "on merge request !7" in approved.stdout and "✅ approved by alice" in approved.stdout
    assert unknown.returncode == 1, unknown.stderr
    assert "on a merge request (commit decaf0 came to this branch without one)" in unknown.stdout


def test_without_grants_gitlab_is_not_asked(repo: Path) -> None:
    _edit(repo, "dev", _remove("payments", "developers", "bob"))
    with _stub_with_push() as stub:
        env = _env(stub)
        env.pop("PLATFORM_MR_TOKEN")
        result = _access(repo, env)
    assert result.returncode == 0, result.stderr
    assert "nothing for owners to approve" in result.stdout
    assert stub.requests == []


def test_without_a_merge_request_grants_are_unapproved(repo: Path) -> None:
    _edit(repo, "dev", _add("payments", "developers", "zoe"))
    result = _access(repo, _env(None))
    assert result.returncode == 1, result.stderr
    assert "on their merge request" in result.stdout and "❌ waiting for an owner's approval" in result.stdout


def _break_head(repo: Path) -> None:
    _edit(repo, "dev", lambda doc: _tenant(doc, "payments").update(owners="alice"))


@pytest.mark.parametrize(
    ("setup", "args", "env_change", "expected"),
    [
        (None, ["--base-ref", "no-such-ref"], {}, "base 'no-such-ref' is not a commit of this repository"),
        (_break_head, [], {}, "Pulumi.dev.yaml is not a valid stack file: platform:tenants[0].owners: got str"),
        (None, ["--stack", "staging"], {}, "Pulumi.staging.yaml: cannot read stack file: No such file or directory"),
        (_add("payments", "developers", "zoe"), [], {"PLATFORM_MR_TOKEN": None},
         "missing token (environment variable PLATFORM_MR_TOKEN)"),
        (_add("payments", "developers", "zoe"), [], {"PLATFORM_MR_TOKEN": "wrong"},
         "GitLab refused to authenticate the token (HTTP 401)"),
        (_add("payments", "developers", "zoe"), [], {"CI_MERGE_REQUEST_IID": "8"},
         "GitLab refused to read merge request !8 (HTTP 404)"),
        (_add("payments", "developers", "zoe"), ["--token-env", "CI_JOB_TOKEN"], {},
         "CI_JOB_TOKEN cannot read merge-request notes"),
    ],
    ids=["bad-ref", "bad-config", "no-stack", "no-token", "401", "no-mr", "job-token"],
)
def test_errors_are_one_line_and_exit_2(repo: Path, setup, args: list[str], env_change: dict, expected: str) -> None:
    if setup is _break_head:
        _break_head(repo)
    elif setup is not None:
        _edit(repo, "dev", setup)
    with _stub_with_push() as stub:
        env = _env(stub)
        for key, value in env_change.items():
            if value is None:
                env.pop(key)
            else:
                env[key] = value
        result = _access(repo, env, *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("platformctl access: error: ") and expected in line, line
    assert result.stdout == ""


def _commit_base(repo: Path, stack: str, edit) -> None:
    _edit(repo, stack, edit)
    git(repo, "commit", "--quiet", "-am", "another base")


def test_the_base_is_read_for_its_tenants_only_so_a_config_model_change_still_checks(repo: Path) -> None:
    # The base has a key the current model no longer accepts; the head has dropped it.
    _commit_base(repo, "dev", lambda doc: doc["config"].update({"platform:retired": True}))
    _edit(repo, "dev", lambda doc: (doc["config"].pop("platform:retired"), _add("payments", "ops", "zoe")(doc)))
    result = _access(repo, _env(None))
    assert result.returncode == 1, result.stderr
    assert "| dev | payments | zoe → ops | alice | ❌ waiting" in result.stdout


@pytest.mark.parametrize("tenants", [{"payments": {}}, [{"owners": ["alice"]}], [{"name": "payments", "owners": "alice"}]],
                         ids=["not-a-list", "no-name", "role-not-a-list"])
def test_a_base_without_readable_tenants_is_an_error(repo: Path, tenants: Any) -> None:
    _commit_base(repo, "dev", lambda doc: doc["config"].update({"platform:tenants": tenants}))
    git(repo, "checkout", "--quiet", "HEAD~1", "--", "Pulumi.dev.yaml")  # the head is valid again
    result = _access(repo, _env(None))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Pulumi.dev.yaml at " in result.stderr
    assert "platform:tenants[0] is not a tenant with a name and role lists" in result.stderr


def test_a_stack_file_new_since_the_base_brings_only_new_tenants(repo: Path) -> None:
    (repo / "Pulumi.staging.yaml").write_text((repo / "Pulumi.dev.yaml").read_text())
    result = _access(repo, _env(None), "--stack", "staging")
    assert result.returncode == 1, result.stderr
    for tenant in ("checkout", "payments", "catalog"):
        assert f"| staging | adds tenant {tenant} | ❌ waiting for a system approver" in result.stdout


def test_system_approval_is_read_from_the_merge_requests_approval_rules(repo: Path) -> None:
    _edit(repo, "dev", lambda doc: doc["config"]["platform:tenants"].append({"name": "ledger", "owners": ["zoe"]}))
    with _stub_with_push() as stub:
        waiting = _access(repo, _env(stub))
        stub.approval_rules[:] = [{"name": SYSTEM_RULE, "approved": True, "approved_by": [{"username": "Sam"}]}]
        stale = _access(repo, _env(stub))  # the rule lists Sam, but no approval of his stands after the last push
        stub.add_note(APPROVED_NOTE, SAM, system=True, at=AFTER_PUSH)
        approved = _access(repo, _env(stub))
    assert waiting.returncode == 1 and "| dev | adds tenant ledger | ❌ waiting for a system approver" in waiting.stdout
    assert stale.returncode == 1, stale.stdout
    assert approved.returncode == 0 and "| dev | adds tenant ledger | ✅ approved by sam |" in approved.stdout


def test_removing_a_tenant_without_an_offboarding_entry_is_an_error(repo: Path) -> None:
    _edit(repo, "prod", lambda doc: doc["config"]["platform:tenants"].remove(_tenant(doc, "catalog")))
    result = _access(repo, _env(None))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "platform:tenants: tenant 'catalog' is removed without a platform:offboarding entry" in result.stderr
    _edit(repo, "prod", _offboard("catalog"))
    result = _access(repo, _env(None))  # valid now, and its owner approves it (tests/test_offboard_attacks.py)
    assert result.returncode == 1 and "| prod | catalog | removes the tenant | erin | ❌ waiting" in result.stdout


def test_an_unreachable_gitlab_is_exit_2(repo: Path) -> None:
    _edit(repo, "dev", _add("payments", "developers", "zoe"))
    with _stub_with_push() as stub:
        env = _env(stub)
    result = _access(repo, env)  # the stub is stopped: connection refused
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"cannot reach GitLab at {stub.url} to authenticate the token" in result.stderr
