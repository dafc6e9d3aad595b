"""Attacks on tenant offboarding: a retired name handed to its next holder, an offboarding no owner
approved, and a removal carried to a deploy by the push after it.

The stack files are this project's, edited; the gate (`platformctl access`) runs in a temporary Git
repository as the bot runs it (`--no-validate`: the gate's code does not validate the head); the
retained signing key is held against the real OpenBao (tests/openbao.py).
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gitlab_stub import run_in_process
from platformctl.access import SYSTEM_RULE, Approvals, Changes, Request, compare, members, report
from platformctl.render import read_stack_file
from stacks.config import ConfigError, load_platform_config
from tests.certs import Tls
from tests.git_repo import git, stack_repo
from tests.openbao import BaoServer

ROOT = Path(__file__).resolve().parent.parent
REASON = "moved to catalog-v2 (JIRA-7)"


def _document() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())


def _tenant(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in doc["config"]["platform:tenants"] if t["name"] == name)


def _offboarded(doc: dict[str, Any]) -> dict[str, Any]:
    """`catalog` removed, with the offboarding entry that says so."""
    doc = copy.deepcopy(doc)
    doc["config"]["platform:tenants"].remove(_tenant(doc, "catalog"))
    doc["config"].setdefault("platform:offboarding", []).append({"tenant": "catalog", "reason": REASON})
    return doc


def _readded(doc: dict[str, Any]) -> dict[str, Any]:
    """A new tenant by the retired name, with other people."""
    doc = copy.deepcopy(doc)
    doc["config"]["platform:tenants"].append({"name": "catalog", "owners": ["mallory"], "developers": ["trent"]})
    return doc


def _raw(doc: dict[str, Any], tmp_path: Path, name: str) -> tuple[dict[str, str], set[str]]:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return read_stack_file(path)


def _problems(base: dict[str, Any], head: dict[str, Any], tmp_path: Path) -> list[str]:
    previous, _ = _raw(base, tmp_path, "base.yaml")
    raw, secret_keys = _raw(head, tmp_path, "Pulumi.dev.yaml")
    try:
        load_platform_config(raw, stack="dev", source="x", secret_keys=secret_keys, previous=previous)
    except ConfigError as err:
        return err.problems
    return []


def _changes(base: dict[str, Any], head: dict[str, Any], tmp_path: Path) -> Changes:
    (base_raw, _), (head_raw, _) = _raw(base, tmp_path, "base.yaml"), _raw(head, tmp_path, "head.yaml")
    changes = Changes()
    compare("dev", members(base_raw, "base"), members(head_raw, "head"), changes, base_raw, head_raw)
    return changes


# --- (1) a retired name and its retained data ------------------------------------------------


def test_a_tenants_retained_data_goes_by_its_name_alone(renders) -> None:
    """What offboarding leaves (README: offboarding) is named after the tenant and nothing else, so a
    new tenant by that name is given all of it: its people's KV data, the signing key the clusters
    trust for its images, its Harbor project."""
    names = {(r["type"], r["inputs"].get("name")) for r in renders["dev"].plan["resources"]}
    assert ("vault:transit/secretBackendKey:SecretBackendKey", "catalog-cosign") in names
    assert ("harbor:index/project:Project", "catalog") in names
    policy = next(r["inputs"]["policy"] for r in renders["dev"].plan["resources"]
                  if r["type"] == "vault:index/policy:Policy" and r["inputs"]["name"] == "tenant-catalog-write")
    assert 'path "tenants/data/catalog/prod/*"' in policy


def test_a_new_key_by_a_retained_keys_name_is_the_old_key(tmp_path: Path, loopback_tls: Tls) -> None:
    """The real OpenBao: creating transit key `<tenant>-cosign` again (what the new tenant's `up`
    does: pulumi-vault bridges hashicorp/terraform-provider-vault, whose vault/resource_transit_secret_backend_key.go
    `transitSecretBackendKeyCreate` writes `<backend>/keys/<name>`) keeps the retained key, so the new owners
    sign with the key every cluster trusts for the former tenant's images."""
    server = BaoServer(tmp_path, loopback_tls).start()
    try:
        client = server.client(server.initialise())
        client.sys.enable_secrets_engine("transit")
        client.secrets.transit.create_key("catalog-cosign", key_type="ecdsa-p256")
        before = client.secrets.transit.read_key("catalog-cosign")["data"]["keys"]["1"]["public_key"]
        client.secrets.transit.create_key("catalog-cosign", key_type="ecdsa-p256")  # the re-added tenant's create
        after = client.secrets.transit.read_key("catalog-cosign")["data"]
        assert after["latest_version"] == 1 and after["keys"]["1"]["public_key"] == before
        signed = client.secrets.transit.sign_data("catalog-cosign", base64.b64encode(b"image digest").decode(),
                                                  hash_algorithm="sha2-256", marshaling_algorithm="asn1")
        signature = base64.b64decode(signed["data"]["signature"].split(":")[2])
        public = serialization.load_pem_public_key(before.encode())
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(signature, b"image digest", ec.ECDSA(hashes.SHA256()))  # raises if not the old key
    finally:
        server.stop()


def test_a_retired_name_is_refused_to_a_new_tenant(tmp_path: Path) -> None:
    base = _offboarded(_document())
    problems = _problems(base, _readded(base), tmp_path)
    assert len(problems) == 1 and problems[0].startswith("platform:tenants[2].name: 'catalog' is an offboarded tenant's name"), problems
    assert "platform:offboarding" in problems[0] and "allowed: another name" in problems[0]
    # Dropping the record in the same change does not free the name: the base still holds it.
    head = _readded(base)
    head["config"]["platform:offboarding"].remove({"tenant": "catalog", "reason": REASON})
    assert any("'catalog' is an offboarded tenant's name" in p for p in _problems(base, head, tmp_path))
    # A renamed tenant cannot take it either.
    head = copy.deepcopy(base)
    _tenant(head, "checkout").update(name="catalog", renamedFrom="checkout")
    assert any("'catalog' is an offboarded tenant's name" in p for p in _problems(base, head, tmp_path))
    # Nor may a tenant that switched isolation (its entry stays) be refused its own name.
    switched = copy.deepcopy(_document())
    _tenant(switched, "payments").update(isolation="vcluster")
    switched["config"].setdefault("platform:offboarding", []).append({"tenant": "payments", "reason": REASON})
    assert _problems(switched, switched, tmp_path) == []


def test_releasing_a_retired_name_needs_a_system_approver(tmp_path: Path) -> None:
    base = _offboarded(_document())
    head = copy.deepcopy(base)
    head["config"]["platform:offboarding"].remove({"tenant": "catalog", "reason": REASON})
    assert _problems(base, head, tmp_path) == []
    changes = _changes(base, head, tmp_path)
    [change] = changes.system
    assert change.what.startswith("releases the name of offboarded tenant catalog")
    text, approved = report(changes, None, "their merge request")
    assert not approved and "❌ waiting for a system approver" in text
    assert report(changes, Approvals({"sam"}, {SYSTEM_RULE: {"sam"}}), "merge request !7")[1]


# --- (2) who approves an offboarding ---------------------------------------------------------


def test_removing_a_tenant_needs_one_of_its_owners(tmp_path: Path) -> None:
    """A Developer's merge request that offboards another's tenant (its namespaces and volumes go)
    does not pass on a maintainer's merge alone."""
    base = _document()
    changes = _changes(base, _offboarded(base), tmp_path)
    assert changes.requests == [Request("dev", "catalog", ("erin",), (), offboarding="removes the tenant")]
    text, approved = report(changes, set(), "merge request !7")
    assert not approved and "| dev | catalog | removes the tenant | erin | ❌ waiting for an owner's approval |" in text
    assert report(changes, {"erin"}, "merge request !7")[1]


def test_switching_a_tenants_isolation_needs_one_of_its_owners(tmp_path: Path) -> None:
    base = _document()
    head = copy.deepcopy(base)
    _tenant(head, "payments").update(isolation="vcluster")
    head["config"].setdefault("platform:offboarding", []).append({"tenant": "payments", "reason": REASON})
    [request] = _changes(base, head, tmp_path).requests
    assert request == Request("dev", "payments", ("alice",), (), offboarding="switches isolation namespace → vcluster")


# --- (3) the gate's own base ------------------------------------------------------------------


def test_the_gate_refuses_a_removal_without_an_offboarding_entry_itself(tmp_path: Path) -> None:
    """The bot's check on main (`--no-validate`, against the last commit whose check passed) is what
    stands between a removal pushed without an entry and the next push's plan, which compares with the
    commit before it (.gitlab-ci.yml `.plan`): so the check itself refuses it, the tenant's owners'
    approval or not."""
    repo = stack_repo(tmp_path / "repo")
    doc = _document()
    doc["config"]["platform:tenants"].remove(_tenant(doc, "catalog"))
    (repo / "Pulumi.dev.yaml").write_text(yaml.safe_dump(doc))
    result = run_in_process(["access", "--base-ref", "HEAD", "--stack", "dev", "--no-validate"], repo, {"PYTHONPATH": str(ROOT)})
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "| dev | platform:tenants: tenant 'catalog' is removed without a platform:offboarding entry" in result.stdout
    git(repo, "commit", "--quiet", "-am", "removed without an entry")  # the next push compares with this one
    result = run_in_process(["access", "--base-ref", "HEAD~1", "--stack", "dev", "--no-validate"], repo, {"PYTHONPATH": str(ROOT)})
    assert result.returncode == 1 and "removed without a platform:offboarding entry" in result.stdout


def test_a_renamed_tenants_former_name_stays_retired(tmp_path: Path) -> None:
    """A rename leaves what went by the former name (its Harbor project and images, its signing key, its
    KV data: README, renaming a tenant), and `renamedFrom` was its only record: dropped, or replaced by a
    second rename, the former name was free for a new tenant, which got all of that."""
    base = copy.deepcopy(_document())
    _tenant(base, "payments").update(name="billing", renamedFrom="payments")
    dropped = copy.deepcopy(base)
    del _tenant(dropped, "billing")["renamedFrom"]
    [problem] = _problems(base, dropped, tmp_path)
    assert problem.startswith("platform:tenants: the former tenant name 'payments' (renamedFrom) loses its record"), problem
    assert "allowed: an entry {tenant: payments, reason: <why>} in platform:offboarding" in problem
    renamed_again = copy.deepcopy(base)
    _tenant(renamed_again, "billing").update(name="ledger", renamedFrom="billing")
    assert any("'payments' (renamedFrom) loses its record" in p for p in _problems(base, renamed_again, tmp_path))
    # Recorded as an offboarding entry, it stays retired: a new tenant may not take it, in this change or later.
    dropped["config"]["platform:offboarding"].append({"tenant": "payments", "reason": "renamed billing (JIRA-8)"})
    assert _problems(base, dropped, tmp_path) == []
    assert any("'payments' is an offboarded tenant's name" in p for p in _problems(base, _readded_as(dropped, "payments"), tmp_path))
    assert any("which is a tenant too" in p for p in _problems(base, _readded_as(base, "payments"), tmp_path))  # as before


def _readded_as(doc: dict[str, Any], name: str) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    doc["config"]["platform:tenants"].append({"name": name, "owners": ["mallory"]})
    return doc


def test_renaming_a_tenant_needs_one_of_its_owners_too(tmp_path: Path) -> None:
    """A rename replaces the tenant's namespaces, and with them their volumes (README: renaming a
    tenant): as destructive as a removal, so its owners approve it beside the system approver."""
    base = _document()
    head = copy.deepcopy(base)
    _tenant(head, "payments").update(name="billing", renamedFrom="payments")
    changes = _changes(base, head, tmp_path)
    assert changes.requests == [Request("dev", "billing", ("alice",), (), offboarding="renames the tenant from payments")]
    assert not report(changes, Approvals({"sam"}, {SYSTEM_RULE: {"sam"}}), "merge request !7")[1]
    assert report(changes, Approvals({"sam", "alice"}, {SYSTEM_RULE: {"sam"}}), "merge request !7")[1]
