"""`platformctl access`: tenant access requests, approved by the tenant's owners.

A tenant's members are stack config, so asking for access is a merge request that adds a
user to a role of a tenant in `platform:tenants`. This command compares each stack file at
a base commit (the merge base, or on `main` its last commit whose check passed) with the working
tree (run it in the project directory) and lists every grant: a user who gains a role in a
tenant that exists at the base. Each tenant's grants need the approval of one of its owners
at the base, given on the merge request after its last push (GitLab's "approved this merge
request" system note, newer than the merge request's latest diff version), so an approval
never covers content pushed after it.

Removing a user from a role needs nobody's approval. What widens the platform's trust needs
a system approver, through the platform project's approval rule `system-approvers` (its
eligible approvers are the members of `identity.systemApprovers`): a new tenant, a change of
a setting of TRUST_SETTINGS (`identity.clusterAdmins`, `identity.systemApprovers`, the identity
source `identity.oidc` or `identity.ldap`, `identity.emailDomain`, `pipeline.projectPath`,
`services.gitlabRunner.platformProjectId`), and a tenant's pod security exception (which its owners approve
as well). A change of `identity.clusterAdmins`, of the identity source or of whose jobs deploy also needs a cluster
admin other than the merge request's author and that system approver (approval rule `cluster-admins`). A rule only
says who may approve: as for owners, an approval counts while it stands after the last push.
Removing a tenant, or switching its isolation, needs an entry naming it in `platform:offboarding`
(checked here against the base whether or not the head is validated: stack_file.offboarding_problems)
and one of the tenant's owners at the base, as renaming one does; removing an offboarded tenant's entry (which frees its name,
and with it what offboarding kept, for a new tenant) and renaming a tenant (`renamedFrom`) need a system
approver.

The pipeline runs this check's code as it is at the base (`--no-validate`, .gitlab-ci.yml), so a
merge request that edits the check is judged by the check it edits; such an edit (GATE_FILES)
needs a system approver too.

Exit codes: 0 nothing to approve or all approved; 1 approvals missing or a change refused (listed in the report); 2 error.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

import gitlab
import requests

from platformctl import gitlab_api
from platformctl.stack_file import (
    NAMESPACE, ConfigError, RenderError, loaded, offboarding_entries, offboarding_problems, parse_stack_file, read_stack_text,
    stack_tenants,
)

ROLES = ("owners", "ops", "developers")
DEFAULT_STACKS = ("dev", "prod")
TOKEN_USE = "read merge-request notes"
# GitLab's system notes for an approval and its withdrawal (SystemNotes::MergeRequestsService).
APPROVED_NOTE = "approved this merge request"
UNAPPROVED_NOTE = "unapproved this merge request"
EXIT_OK, EXIT_UNAPPROVED, EXIT_ERROR = 0, 1, 2
# The platform project's approval rules (GitLab merge request approval rules, by name).
SYSTEM_RULE = "system-approvers"
CLUSTER_ADMIN_RULE = "cluster-admins"
# Settings outside the tenants that say who may do what (a change needs a system approver), and whether a
# change also needs a cluster admin other than the author and the system approver: it decides who is one, or who deploys.
TRUST_SETTINGS = (
    ("identity.clusterAdmins", True),  # the groups that are cluster-admin everywhere
    ("identity.systemApprovers", False),  # who approves these changes
    # The identity source: who a person is (its user claim) and which groups they are in, clusterAdmins' too.
    ("identity.oidc", True),
    ("identity.ldap", True),
    ("identity.emailDomain", False),  # every GitLab account's confirmed address (components/platform_users.py): its mail
    # Whose jobs on main log in to Vault as platform-admin (platform-deploy) and assume the AWS deploy role,
    # and whose pipelines the merge-request bot serves (stacks/vault_federation.py, components/ci_identity.py).
    ("pipeline.projectPath", True),
    # Whose jobs the platform's runner for protected refs takes: on the deploy jobs' nodes, in their namespace.
    ("services.gitlabRunner.platformProjectId", True),
)
# The stack files' keys this check reads (`platform:<key>`).
READ_KEYS = ("tenants", *dict.fromkeys(path.split(".")[0] for path, _ in TRUST_SETTINGS))
# What decides this check's verdict: a change to them widens what later merge requests may do
# unapproved. The bot runs the check from the gate's commit (components/merge_request_bot.py): these
# are all the files its process imports from there (tests/test_bot_attacks.py measures it), the
# bot's check and job, which pick the gate's commit and run it, and .ci/install with the locks it installs the gate's
# venv from, as they are at the gate's commit (every package there, and what builds them, runs with the bot's token).
GATE_FILES = ("platformctl/__init__.py", "platformctl/__main__.py", "platformctl/access.py", "platformctl/gitlab_api.py",
              "platformctl/stack_file.py", "platformctl/mrbot.py", "components/merge-request-bot.gitlab-ci.yml",
              ".ci/install", "requirements-build.txt", "requirements.txt")
GATE_PACKAGE = "platformctl"
GATE_MODULES = {path.removeprefix(f"{GATE_PACKAGE}/").removesuffix(".py") for path in GATE_FILES if path.startswith(f"{GATE_PACKAGE}/")}
IMPORTABLE = tuple(importlib.machinery.all_suffixes())  # .py, .pyc, extension modules


@dataclass(frozen=True)
class Grant:
    user: str
    role: str
    previous: str | None  # the role the user held before, if any


@dataclass(frozen=True)
class Request:
    """One tenant's grants in one stack, and who may approve them."""

    stack: str
    tenant: str
    owners: tuple[str, ...]  # at the base: a merge request cannot name its own approvers
    grants: tuple[Grant, ...]
    exception: str | None = None  # what a pod security exception the change grants or changes allows
    offboarding: str | None = None  # what the change does to the whole tenant: removes it, switches its isolation


@dataclass(frozen=True)
class SystemChange:
    """A change a system approver must approve; `cluster_admins` ones also a second cluster admin."""

    stack: str
    what: str
    cluster_admins: bool = False


@dataclass
class Changes:
    requests: list[Request] = field(default_factory=list)
    new_tenants: list[str] = field(default_factory=list)  # "<stack>/<tenant>"
    removed_tenants: list[str] = field(default_factory=list)
    system: list[SystemChange] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # "<stack>: <problem>": no approval makes these pass


@dataclass(frozen=True)
class Approvals:
    """What stands on the merge request: approvers by note (after the last push) and by rule."""

    users: set[str]
    rules: dict[str, set[str]] = field(default_factory=dict)  # rule name -> approvers (lower case)
    author: str = ""


# tenant -> user -> role ("owners", "ops" or "developers")
Members = dict[str, dict[str, str]]


def members(raw: dict[str, str], source: str) -> Members:
    """Who holds which role, read from a stack's `platform:tenants` alone (as `parse_stack_file`
    hands it over): the base may not fit the head's config model, since a merge request that
    changes the model changes the stack files too."""
    tenants = loaded(raw, "tenants") if f"{NAMESPACE}:tenants" in raw else []
    found: Members = {}
    for index, tenant in enumerate(tenants if isinstance(tenants, list) else [None]):
        roles = [tenant.get(role, []) for role in ROLES] if isinstance(tenant, dict) else []
        if not (roles and isinstance(tenant.get("name"), str) and all(isinstance(r, list) for r in roles)):
            raise gitlab_api.UsageError(
                f"{source}: {NAMESPACE}:tenants[{index}] is not a tenant with a name and role lists"
            )
        found[tenant["name"]] = {str(user): role for role, users in zip(ROLES, roles) for user in users}
    return found


def compare(
    stack: str, base: Members | None, head: Members, into: Changes,
    base_raw: dict[str, str] | None = None, head_raw: dict[str, str] | None = None,
) -> None:
    """Add the grants, new, renamed and removed tenants between two memberships of `stack`, and
    with the stack files' config (`*_raw`) what needs a system approver and what is refused outright.
    Removing, renaming a tenant or switching its isolation (its namespaces and their volumes go) is its
    owners' to approve, as a grant is; a removal or switch also needs an offboarding entry, which the gate checks itself
    (stack_file.offboarding_problems), since it runs its own code without validating the head."""
    before = dict(base or {})
    renamed = {new: old for new, old in _renamed(head_raw or {}).items()
               if new in head and new not in before and old in before and old not in head}
    for new, old in renamed.items():
        before[new] = before.pop(old)  # a renamed tenant keeps its members and owners
    new = sorted(head.keys() - before.keys())
    into.new_tenants += [f"{stack}/{name}" for name in new]
    into.removed_tenants += [f"{stack}/{name}" for name in sorted(before.keys() - head.keys())]
    settings_before, settings_after = _tenant_settings(base_raw or {}), _tenant_settings(head_raw or {})
    for name, old in renamed.items():
        settings_before[name] = settings_before.pop(old, (None, None))
    exceptions = {
        name: level for name, (_, level) in settings_after.items()
        if level and settings_before.get(name, (None, None))[1] != level  # a new tenant's too: its approver reads it
    }
    for name in sorted(before.keys()):
        held = before[name]
        owners = tuple(sorted(user for user, role in held.items() if role == "owners"))
        if name not in head:
            into.requests.append(Request(stack, name, owners, (), offboarding="removes the tenant"))
            continue
        grants = tuple(
            Grant(user, role, held.get(user)) for user, role in sorted(head[name].items()) if held.get(user) != role
        )
        isolation = (settings_before.get(name, (None, None))[0], settings_after.get(name, (None, None))[0])
        # A rename replaces the namespaces too (their real names are the tenant's), as a switch does.
        whole = "; ".join([*([f"renames the tenant from {renamed[name]}"] if name in renamed else []),
                           *([f"switches isolation {isolation[0]} → {isolation[1]}"] if base_raw is not None and isolation[0] != isolation[1] else [])])
        if grants or name in exceptions or whole:
            into.requests.append(Request(stack, name, owners, grants, exceptions.get(name), whole or None))
    if head_raw is None:
        return
    if base_raw is not None:
        into.refused += [f"{stack}: {problem}" for problem in offboarding_problems(base_raw, head_raw)]
        # The entry is what keeps an offboarded tenant's name (and what offboarding kept) from its next holder.
        kept = {tenant for tenant, _ in offboarding_entries(head_raw)}
        into.system += [SystemChange(stack, f"releases the name of offboarded tenant {tenant} (removes its platform:offboarding "
                                            "entry: a new tenant by that name gets what offboarding kept)")
                        for tenant in sorted({tenant for tenant, _ in offboarding_entries(base_raw)} - kept - set(base or {}))]
    into.system += [SystemChange(stack, f"adds tenant {name}") for name in new]
    into.system += [SystemChange(stack, f"renames tenant {old} to {name}") for name, old in sorted(renamed.items())]
    into.system += [SystemChange(stack, f"grants tenant {name} a pod security exception ({level})") for name, level in exceptions.items()]
    into.system += [SystemChange(stack, f"changes {path}", cluster_admins) for path, cluster_admins in TRUST_SETTINGS
                    if base_raw is not None and _setting(base_raw, path) != _setting(head_raw, path)]


def _tenant_settings(raw: dict[str, str]) -> dict[str, tuple[Any, Any]]:
    """Tenant -> (isolation, what its pod security exception allows or None), read leniently (the base may be old)."""
    found = {}
    for tenant in stack_tenants(raw):
        exception = tenant.get("podSecurityException")
        found[tenant["name"]] = (tenant.get("isolation", "namespace"), _allowances(exception) if isinstance(exception, dict) else None)
    return found


def _allowances(exception: dict[str, Any]) -> str:
    """What a pod security exception allows, where: `dev, prod: capabilities CHOWN; runAsRoot`; every key but its reason
    (tests/test_access_attacks.py holds it to stacks/config.py's PodSecurityException)."""
    exports = [f"{e.get('server')}:{e.get('path')}" for e in exception.get("nfsExports") or [] if isinstance(e, dict)]
    listed = [f"{key} {', '.join(map(str, exception[key]))}" for key in ("capabilities", "volumeTypes") if exception.get(key)]
    listed += [f"nfsExports {', '.join(exports)}"] if exports else []
    flags = [key for key in ("privilegeEscalation", "runAsRoot") if exception.get(key) is True]
    return f"{', '.join(map(str, exception.get('environments', ['dev', 'prod'])))}: {'; '.join([*listed, *flags]) or 'nothing'}"


def _setting(raw: dict[str, str], path: str) -> Any:
    """The value at `path` (`identity.oidc`: key `platform:identity`, then its `oidc`), read leniently (None where
    absent), with lists in a canonical order: the groups and scopes they hold mean the same in any order."""
    key, *inside = path.split(".")
    value = loaded(raw, key)
    for name in inside:
        value = value.get(name) if isinstance(value, dict) else None
    return _unordered(value)


def _unordered(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _unordered(item) for key, item in value.items()}
    if isinstance(value, list):
        return sorted((_unordered(item) for item in value), key=lambda item: json.dumps(item, sort_keys=True))
    return value


def _renamed(raw: dict[str, str]) -> dict[str, str]:
    """Tenant -> the name it is renamed from (`renamedFrom`)."""
    return {t["name"]: t["renamedFrom"] for t in stack_tenants(raw) if isinstance(t.get("renamedFrom"), str)}


# --- stack files -------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)


def _read(
    text: str, stack: str, source: str, validate: bool, previous: dict[str, str] | None = None, head: bool = False
) -> tuple[Members, dict[str, str]]:
    """The members in a stack file's text, and its config; with `validate`, the whole file must be
    valid, and a tenant of `previous` (the base's config) may leave only with an offboarding entry.
    The `head`'s keys this check reads may not be secrets as a whole: Pulumi hands the program their
    decrypted value, which the program parses (stacks/config.py `_parse`), and this check sees a placeholder."""
    try:
        raw, secret_keys = parse_stack_file(text, source)
        hidden = [key for key in READ_KEYS if head and f"{NAMESPACE}:{key}" in secret_keys
                  and not any(s.startswith((f"{NAMESPACE}:{key}.", f"{NAMESPACE}:{key}[")) for s in secret_keys)]
        if hidden:
            raise gitlab_api.UsageError("; ".join(
                f"{source}: {NAMESPACE}:{key} is a secret as a whole, which the access check cannot read; allowed: secret "
                f"values inside it (pulumi config set --secret --path '{NAMESPACE}:{key}.<path>')" for key in hidden))
        if validate:
            from stacks.config import load_platform_config  # the whole program: not the gate's (GATE_FILES)

            load_platform_config(raw, stack=stack, source=source, secret_keys=secret_keys, previous=previous)
    except ConfigError as err:
        raise gitlab_api.UsageError(f"{source} is not a valid stack file: {'; '.join(err.problems)}") from None
    except RenderError as err:
        raise gitlab_api.UsageError(str(err)) from None
    return members(raw, source), raw


def load_changes(base_ref: str, stacks: Iterable[str], project: Path, validate: bool = True) -> Changes:
    """The tenant changes of every stack between `base_ref` and the working tree of `project`
    (the directory holding the stack files, at the top of a Git repository), and edits of the check
    itself. `validate`: the head's stack files must fit this code's config model (not so when the
    code is the base's, whose model may predate the change: the change's own render validates them)."""
    resolved = _git(project, "rev-parse", "--verify", "--quiet", f"{base_ref}^{{commit}}")
    if resolved.returncode != 0:
        raise gitlab_api.UsageError(
            f"base {base_ref!r} is not a commit of this repository (a shallow clone? set GIT_DEPTH: 0)"
        )
    base_sha = resolved.stdout.strip()
    changes = Changes()
    stack_names = tuple(stacks)
    for stack in stack_names:
        name = f"Pulumi.{stack}.yaml"
        if (project / name).is_symlink():  # the commit's text only: never what a link names (/proc/self/environ)
            raise gitlab_api.UsageError(f"{name} is a symbolic link; allowed: a stack file, not a link to one")
        try:
            head_text = read_stack_text(project / name, name)
        except RenderError as err:
            raise gitlab_api.UsageError(str(err)) from None
        shown = _git(project, "show", f"{base_sha}:./{name}")  # ./ : relative to `project`
        # A stack file new since the base has no tenants to protect yet.
        base, base_raw = None, None
        if shown.returncode == 0:
            base, base_raw = _read(shown.stdout, stack, f"{name} at {base_sha[:12]}", validate=False)
        head, head_raw = _read(head_text, stack, name, validate=validate, previous=base_raw, head=True)
        compare(stack, base, head, changes, base_raw, head_raw)
    edited = _git(project, "diff", "--no-renames", "--name-only", "-z", base_sha)
    if edited.returncode != 0:  # a gate that cannot tell fails closed
        raise gitlab_api.UsageError(f"cannot compare the access check with {base_sha[:12]}: {edited.stderr.strip()}")
    paths = [path for path in edited.stdout.split("\0") if path]
    changes.system += [SystemChange("all", f"changes the access check ({path})") for path in paths if gate_file(path)]
    # The project file's `config:` gives a key the stack file lacks, its `stackConfigDir` moves the stack files.
    checked = {f"Pulumi.{stack}.yaml" for stack in stack_names}
    changes.system += [SystemChange("all", f"changes where Pulumi reads config ({path})") for path in paths
                       if path.startswith("Pulumi.") and path not in checked]
    return changes


def gate_file(path: str) -> bool:
    """A file of GATE_FILES, or one Python would import as a gate module or as a top-level module (the
    gate's commit is the first directory of its path, before site-packages): a package beside a module
    wins over it, `sitecustomize` runs first, and bytecode in __pycache__ need not match its source."""
    folder, _, name = path.rpartition("/")
    if path in GATE_FILES or not name.endswith(IMPORTABLE):
        return path in GATE_FILES
    module = name.split(".", 1)[0]
    if folder.rpartition("/")[2] == "__pycache__":
        folder = folder.rpartition("/")[0]
    if module == "__init__" and folder:  # a package's: it is imported by its folder's name
        folder, _, module = folder.rpartition("/")
    return folder == "" or (folder == GATE_PACKAGE and module in GATE_MODULES)


# --- approvals on GitLab --------------------------------------------------------------------


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def rule_approvers(mr: Any) -> dict[str, set[str]]:
    """Approval rule name -> usernames (lower case) who approved as eligible approvers of it."""
    state = mr.approval_state.get()
    return {
        rule["name"]: {u["username"].lower() for u in rule.get("approved_by") or []}
        for rule in getattr(state, "rules", []) or []
    }


def current_approvers(mr: Any) -> set[str]:
    """Usernames (lower case) whose approval of `mr` stands and is newer than its last push."""
    versions = mr.diffs.list(get_all=True)  # GET .../versions: one per push
    if not versions:
        raise gitlab_api.UsageError(f"merge request !{mr.iid} has no diff versions yet; retry the job")
    last_push = max(_time(v.created_at) for v in versions)
    latest: dict[str, tuple[bool, datetime]] = {}
    for note in mr.notes.list(iterator=True, sort="asc", order_by="created_at", per_page=100):
        if note.system and note.body in (APPROVED_NOTE, UNAPPROVED_NOTE):
            latest[note.author["username"].lower()] = (note.body == APPROVED_NOTE, _time(note.created_at))
    return {user for user, (approved, at) in latest.items() if approved and at > last_push}


def merged_request_of(project: Any, commit: str) -> Any | None:
    """The merged merge request that brought `commit` to its branch, if any: the one whose result it is
    (its merge, squash or head commit), not one that merely lists it among its commits (merged into
    another branch, or with later commits that its approvals were given for)."""
    for found in project.commits.get(commit, lazy=True).merge_requests():
        results = (found.get("merge_commit_sha"), found.get("squash_commit_sha"), found.get("sha"))
        if found.get("state") == "merged" and commit in results:
            return project.mergerequests.get(found["iid"])
    return None


# --- report -----------------------------------------------------------------------------------


def _grant_text(grant: Grant) -> str:
    return f"{grant.user}: {grant.previous} → {grant.role}" if grant.previous else f"{grant.user} → {grant.role}"


def _system_status(change: SystemChange, approvals: Approvals | None) -> tuple[str, bool]:
    # A rule names who may approve; only an approval standing after the last push counts.
    rules, standing = (approvals.rules, approvals.users) if approvals else ({}, set())
    system = sorted(rules.get(SYSTEM_RULE, set()) & standing)
    admins = sorted(rules.get(CLUSTER_ADMIN_RULE, set()) & standing - {approvals.author.lower() if approvals else ""})
    missing = [] if system else [f"a system approver (rule {SYSTEM_RULE})"]
    # Two people besides the author: GitLab counts one approval in every rule its user is eligible for
    # (ee/app/models/approval_wrapped_rule.rb `approved_approvers`), and the author need not have pushed the change.
    if change.cluster_admins and not any(admin != approver for admin in admins for approver in system or [""]):
        missing.append(f"a cluster admin other than the author and the system approver (rule {CLUSTER_ADMIN_RULE})")
    if missing:
        return f"❌ waiting for {' and '.join(missing)}", False
    return f"✅ approved by {', '.join(sorted({*system, *(admins if change.cluster_admins else [])}))}", True


def report(changes: Changes, approvals: Approvals | set[str] | None, where: str) -> tuple[str, bool]:
    """The markdown report and whether every request is approved.

    `approvals`: what stands on the merge request (a set: approvers by note only); None when there is none.
    """
    if isinstance(approvals, set):
        approvals = Approvals(approvals)
    approvers = approvals.users if approvals else None
    lines = ["### Tenant access requests", ""]
    approved_all = True
    if not changes.requests:
        lines.append("No user gains a role in an existing tenant: nothing for owners to approve.")
    else:
        lines += [
            f"Each tenant's owners approve its grants on {where}, after its last push.",
            "",
            "| stack | tenant | grants | owners | approval |",
            "|---|---|---|---|---|",
        ]
        for request in changes.requests:
            by = sorted(u for u in request.owners if approvers and u.lower() in approvers)
            approved_all &= bool(by)
            status = f"✅ approved by {', '.join(by)}" if by else "❌ waiting for an owner's approval"
            grants = "; ".join([*([request.offboarding] if request.offboarding else []), *(_grant_text(g) for g in request.grants),
                                *([f"pod security exception → {request.exception}"] if request.exception else [])])
            lines.append(f"| {request.stack} | {request.tenant} | {grants} | {', '.join(request.owners)} | {status} |")
    if changes.system:
        lines += ["", f"Changes a system approver approves on {where}:", "", "| stack | change | approval |", "|---|---|---|"]
        for change in changes.system:
            status, approved = _system_status(change, approvals)
            approved_all &= approved
            lines.append(f"| {change.stack} | {change.what} | {status} |")
    if changes.refused:
        approved_all = False
        lines += ["", "Refused, whoever approves (fix the stack file):", "", "| stack | problem |", "|---|---|"]
        lines += [f"| {stack} | {problem} |" for stack, _, problem in (line.partition(": ") for line in changes.refused)]
    if changes.removed_tenants:
        lines += ["", f"Removed tenants (offboarded as their platform:offboarding entries say): {', '.join(changes.removed_tenants)}."]
    return "\n".join(lines) + "\n", approved_all


# --- command line -----------------------------------------------------------------------------


def _merge_request(args: argparse.Namespace, changes: Changes) -> tuple[Approvals | None, str]:
    """The standing approvals of the merge request in question, and how to name it."""
    mr_iid = args.mr_iid or os.environ.get("CI_MERGE_REQUEST_IID", "")
    if not (changes.requests or changes.system) or not (mr_iid or args.commit):
        return None, "their merge request"
    if mr_iid and not str(mr_iid).isdigit():
        raise gitlab_api.UsageError(f"merge request IID must be a number, got {mr_iid!r}")
    where = gitlab_api.location(args, os.environ, TOKEN_USE)
    step = "authenticate the token"
    try:
        gl = gitlab_api.connect(where)
        gl.auth()
        step = f"read project {where.project}"
        project = gl.projects.get(where.project)
        if mr_iid:
            step = f"read merge request !{mr_iid}"
            mr = project.mergerequests.get(int(mr_iid))
        else:
            step = f"find the merge request of commit {args.commit[:12]}"
            mr = merged_request_of(project, args.commit)
            if mr is None:
                return None, f"a merge request (commit {args.commit[:12]} came to this branch without one)"
        step = f"read the approvals of merge request !{mr.iid}"
        rules = rule_approvers(mr) if changes.system else {}
        author = (getattr(mr, "author", None) or {}).get("username", "")
        return Approvals(current_approvers(mr), rules, author), f"merge request !{mr.iid}"
    except (gitlab.GitlabError, requests.RequestException) as err:
        raise gitlab_api.UsageError(gitlab_api.failure(err, step, where)) from None


def run(args: argparse.Namespace) -> int:
    try:
        changes = load_changes(args.base_ref, args.stack or DEFAULT_STACKS, Path.cwd(), validate=not args.no_validate)
        approvers, where = _merge_request(args, changes)
    except gitlab_api.UsageError as err:
        print(f"platformctl access: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    text, approved = report(changes, approvers, where)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text, end="")
    return EXIT_OK if approved else EXIT_UNAPPROVED


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "access",
        help="check that each tenant's owners approved the access its stack config grants",
        description=__doc__.split("\n\n")[1],
    )
    parser.add_argument("--base-ref", required=True, metavar="REF",
                        help="commit to compare with, e.g. $CI_MERGE_REQUEST_DIFF_BASE_SHA or $CI_COMMIT_BEFORE_SHA")
    parser.add_argument("--stack", action="append", metavar="NAME",
                        help=f"stack to compare (repeatable; default: {', '.join(DEFAULT_STACKS)})")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--mr-iid", help="merge request IID (default: CI_MERGE_REQUEST_IID)")
    which.add_argument("--commit", metavar="SHA",
                       help="on a branch: check the merged merge request that brought this commit")
    parser.add_argument("--out", type=Path, metavar="FILE", help="also write the report here")
    parser.add_argument("--no-validate", action="store_true",
                        help="read the head's tenants and identity without validating its stack files "
                             "(when this code is the base's, run on the merge request's checkout)")
    gitlab_api.add_arguments(parser, TOKEN_USE)
    parser.set_defaults(run=run)
