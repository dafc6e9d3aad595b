"""A merge request's preview, once a maintainer has read the change and started it in the protected
environment preview/<stack>, reads what a refresh reads: Vault (platform-preview, as the drift checks'
platform-reader) and, on EKS, the clusters, through an AWS role that trusts Vault's identity tokens.

Before: no Vault role took a merge-request pipeline and the preview role had no access entry, so every
`preview-*` job failed at pulumi-vault's login and at the first EKS read (README's "known limit").
Held against the real OpenBao server with the prod plan applied (logins, the identity token, its
audience and issuer as the IAM provider in the plan names them)."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import hvac.exceptions
import pytest
import requests
import yaml

from components.vault import READER_POLICY_NAME
from components.vault_federation import GITLAB_PATH, PREVIEW_ROLE
from tests.conftest import ROOT
from tests.test_ci_file import CI_FILE, GLOBAL_KEYWORDS, _resolve
from tests.test_vault_access import gitlab_id_token
from tests.test_vault_federation import IAM_ROLE, _entry_on_each_cluster, of_type

PROJECT = "platform/platform-bootstrap"  # stacks/config.py Pipeline.project_path, the default
TOKEN_ROLE = f"identity/oidc/token/{PREVIEW_ROLE}"
ADMIN_VIEW = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSAdminViewPolicy"


def job_token(vault: Any, *, source: str = "merge_request_event", environment: str | None = "preview/prod",
              protected_environment: bool = True, project: str = PROJECT, ref: str = "feature/x", ref_protected: bool = False,
              action: str = "start") -> str:
    """An ID token of a job of this repository: by default a merge request's preview-prod, which a maintainer started."""
    return gitlab_id_token(vault, project, ref, "branch", ref_protected, source, environment, protected_environment, action)


def login(vault: Any, token: str) -> dict[str, Any] | None:
    try:
        return vault.login(GITLAB_PATH, PREVIEW_ROLE, token)
    except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden):
        return None


def claims_of(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@pytest.fixture(scope="module")
def prod_vault(plan_vaults: Any) -> Any:
    return plan_vaults("prod")


REFUSED = {
    "an environment not protected": dict(protected_environment=False),
    "another environment": dict(environment="review/feature-x"),
    "no environment": dict(environment=None),
    "a feature branch's push": dict(source="push"),
    "a protected branch's push (main's jobs have roles of their own)": dict(source="push", ref="main", ref_protected=True),
    "another project": dict(project="platform/platform-bootstrap-fork"),
    # No deployment: where GitLab has considered letting Developers run jobs in a protected environment (gitlab#437142).
    "an access job": dict(action="access"),
    "a verify job": dict(action="verify"),
    # Each stack's Vault takes its own stack's preview only: a maintainer who plays preview-dev hands over nothing of prod's.
    "the dev stack's preview": dict(environment="preview/dev"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_only_a_merge_requests_job_in_a_protected_preview_environment_logs_in(prod_vault: Any, case: str) -> None:
    assert login(prod_vault, job_token(prod_vault, **REFUSED[case])) is None, case


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_a_reviewed_preview_reads_what_a_refresh_reads_for_an_hour_at_most(plan_vaults: Any, stack: str) -> None:
    """Its own stack's preview (preview/<stack>); on EKS (prod) with the identity token's policy as well."""
    vault = plan_vaults(stack)
    auth = login(vault, job_token(vault, environment=f"preview/{stack}"))
    assert auth is not None
    assert set(auth["token_policies"]) == {"default", READER_POLICY_NAME, *([f"{PREVIEW_ROLE}-token"] if stack == "prod" else [])}
    assert 0 < auth["lease_duration"] <= 3600
    reader = vault.client(auth["client_token"])
    assert reader.read("sys/auth")  # what a refresh reads
    with pytest.raises(hvac.exceptions.Forbidden):
        reader.write_data("sys/policies/acl/tenant-x", data={"policy": 'path "*" { capabilities = ["read"] }'})


def test_the_identity_token_names_the_issuer_and_audience_the_aws_role_trusts(prod_vault: Any, renders: dict) -> None:
    """What AWS STS checks: `iss` is the IAM provider's URL, whose discovery Vault serves to anyone (AWS fetches it),
    and `aud` is the one client id the provider lists and the role's condition names; the token lives 15 minutes."""
    resources = renders["prod"].plan["resources"]
    [provider] = [r for r in of_type(resources, "aws:iam/openIdConnectProvider:OpenIdConnectProvider") if r["name"] == "platform-pipeline-vault"]
    [role] = [r for r in of_type(resources, IAM_ROLE) if r["name"] == "platform-pipeline-reviewed-preview"]
    [statement] = json.loads(role["inputs"]["assumeRolePolicy"])["Statement"]
    auth = login(prod_vault, job_token(prod_vault))
    assert auth is not None
    jwt = prod_vault.client(auth["client_token"]).read(TOKEN_ROLE)["data"]["token"]
    claims = claims_of(jwt)
    root = prod_vault.client(prod_vault.root_token)
    client_id = root.read(f"identity/oidc/role/{PREVIEW_ROLE}")["data"]["client_id"]
    assert claims["aud"] == client_id and claims["iss"] == provider["inputs"]["url"]
    assert 0 < claims["exp"] - claims["iat"] <= 900
    # The plan's client id is the mocks' stand-in for Vault's: the provider and the trust name the same one.
    host = provider["inputs"]["url"].removeprefix("https://")
    assert statement["Condition"] == {"StringEquals": {f"{host}:aud": provider["inputs"]["clientIdLists"][0]}}
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity" and list(statement["Principal"]) == ["Federated"]
    assert root.write_data("identity/oidc/introspect", data={"token": jwt, "client_id": client_id})["active"] is True
    # Discovery, unauthenticated, at the issuer's path on the server (the plan's host is the server's public name).
    path = provider["inputs"]["url"].split(host.split("/")[0], 1)[1]
    document = requests.get(f"{prod_vault.server.url}{path}/.well-known/openid-configuration", verify=prod_vault.server.ca_file, timeout=10).json()
    assert document["issuer"] == claims["iss"]


def test_the_drift_checks_login_has_no_token_issued_for_the_aws_role(prod_vault: Any) -> None:
    """platform-reader reads everything a refresh reads, but reading identity/oidc/token/* issues a token: the drift
    checks' login may not (components/vault.py READER_POLICY); only the token policy of the role may."""
    auth = prod_vault.login(GITLAB_PATH, "platform-drift", job_token(prod_vault, source="schedule", environment="plan/prod", ref="main", ref_protected=True))
    assert READER_POLICY_NAME in auth["token_policies"]
    with pytest.raises(hvac.exceptions.Forbidden):
        prod_vault.client(auth["client_token"]).read(TOKEN_ROLE)


def test_no_policy_of_the_plan_but_the_admins_and_the_token_policy_may_have_one_issued(prod_vault: Any, renders: dict) -> None:
    """Every policy the prod plan writes (tenants', approvers', readers', the snapshot's, the promoter's...), as a
    token of that policy alone asks the real server: only platform-admin (all of Vault, break-glass and the deploy
    jobs) and platform-preview-token may read identity/oidc/token/platform-preview."""
    names = {r["inputs"]["name"] for r in renders["prod"].plan["resources"] if r["type"] == "vault:index/policy:Policy"}
    root = prod_vault.client(prod_vault.root_token)
    may = set()
    for name in sorted(names):
        token = root.auth.token.create(policies=["default", name], ttl="5m")["auth"]["client_token"]
        capabilities = prod_vault.client(token).write_data("sys/capabilities-self", data={"paths": [TOKEN_ROLE]})["data"][TOKEN_ROLE]
        if "read" in capabilities or "root" in capabilities:
            may.add(name)
    assert len(names) > 5 and may == {"platform-admin", f"{PREVIEW_ROLE}-token"}


def test_the_reviewed_preview_role_reads_every_eks_cluster_and_is_output(renders: dict) -> None:
    plan = renders["prod"].plan
    arn = plan["outputs"]["reviewedPreviewRoleArn"]
    _entry_on_each_cluster(plan, arn, ADMIN_VIEW)
    roles = {r["name"]: r for r in of_type(plan["resources"], IAM_ROLE)}
    assert arn.endswith(roles["platform-pipeline-reviewed-preview"]["name"] + "-" + arn.rsplit("-", 1)[1])
    # Reads, no data reads, no write: as the plan role.
    attached = {r["inputs"]["policyArn"] for r in of_type(plan["resources"], "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                if r["name"] == "platform-pipeline-reviewed-preview"}
    assert attached == {"arn:aws:iam::aws:policy/ReadOnlyAccess"}
    assert [r for r in of_type(plan["resources"], "aws:iam/rolePolicy:RolePolicy") if r["name"] == "platform-pipeline-reviewed-preview-no-data"]


def test_a_kubeconfig_stack_has_the_vault_login_and_no_identity_tokens(renders: dict) -> None:
    plan = renders["dev"].plan
    [role] = [r for r in plan["resources"] if r["type"] == "vault:jwt/authBackendRole:AuthBackendRole" and r["name"] == PREVIEW_ROLE]
    assert role["inputs"]["tokenPolicies"] == [READER_POLICY_NAME]
    assert not [r for r in plan["resources"] if r["type"].startswith("vault:identity/oidc")]
    assert "reviewedPreviewRoleArn" not in plan["outputs"]


def test_the_merge_requests_preview_jobs_log_in_as_platform_preview_and_mains_do_not() -> None:
    ci = yaml.safe_load((ROOT / ".gitlab-ci.yml").read_text())
    resolved = {name: _resolve(ci, name) for name in ci if name not in GLOBAL_KEYWORDS and not name.startswith(".")}
    for name in ("preview-dev", "preview-prod"):
        [rule] = [r for r in resolved[name]["rules"] if "merge_request_event" in r.get("if", "")]
        assert rule["when"] == "manual" and rule["variables"]["VAULT_ROLE"] == PREVIEW_ROLE, name
        assert rule["variables"]["VAULT_IDENTITY_ROLE"] == PREVIEW_ROLE, name
        assert resolved[name]["environment"]["name"].startswith("preview/"), name
    for name, job in resolved.items():
        if name.startswith(("plan-", "drift-", "deploy-")):
            assert not any("VAULT_IDENTITY_ROLE" in str(r.get("variables", {})) for r in job.get("rules", [])), name
            assert "VAULT_IDENTITY_ROLE" not in job.get("variables", {}), name


def _exchange_step() -> str:
    """The `.pulumi` before_script step that trades the Vault login for the reviewed-preview AWS role."""
    ci = yaml.safe_load((ROOT / ".gitlab-ci.yml").read_text())
    [step] = [s for s in ci[".pulumi"]["before_script"] if isinstance(s, str) and "VAULT_IDENTITY_ROLE" in s]
    return step


@pytest.mark.parametrize("login_as, exchanged", [(PREVIEW_ROLE, True), ("platform-drift", False)])
def test_the_jobs_step_assumes_the_reviewed_role_only_with_a_token_vault_issued(prod_vault: Any, login_as: str, exchanged: bool) -> None:
    """The CI step itself, in bash, against the real server: with the preview login it points the AWS SDK at Vault's
    identity token and REVIEWED_PREVIEW_ROLE_ARN; with a login that may not have one issued, the job keeps its own."""
    token = job_token(prod_vault) if login_as == PREVIEW_ROLE else job_token(prod_vault, source="schedule", environment="plan/prod", ref="main", ref_protected=True)
    vault_token = prod_vault.login(GITLAB_PATH, login_as, token)["client_token"]
    env = {"PATH": "/usr/bin:/bin", "VAULT_ADDR": prod_vault.server.url, "VAULT_CACERT": prod_vault.server.ca_file, "VAULT_TOKEN": vault_token,
           "VAULT_IDENTITY_ROLE": PREVIEW_ROLE, "REVIEWED_PREVIEW_ROLE_ARN": "arn:aws:iam::123456789012:role/reviewed",
           "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/preview", "AWS_WEB_IDENTITY_TOKEN_FILE": "/tmp/aws-web-identity-token"}
    shown = subprocess.run(["bash", "-ec", _exchange_step() + '\necho "$AWS_ROLE_ARN $AWS_WEB_IDENTITY_TOKEN_FILE"'], cwd=ROOT, env=env,
                           capture_output=True, text=True, check=True).stdout.split()
    try:
        if exchanged:
            assert shown == ["arn:aws:iam::123456789012:role/reviewed", "/tmp/vault-identity-token"]
            client_id = prod_vault.client(prod_vault.root_token).read(f"identity/oidc/role/{PREVIEW_ROLE}")["data"]["client_id"]
            assert claims_of(Path(shown[1]).read_text().strip())["aud"] == client_id
            assert Path(shown[1]).stat().st_mode & 0o077 == 0
        else:
            assert shown == ["arn:aws:iam::123456789012:role/preview", "/tmp/aws-web-identity-token"]
    finally:
        Path("/tmp/vault-identity-token").unlink(missing_ok=True)


def pulumi_cloud_policies() -> dict[str, dict[str, str]]:
    """README's Pulumi Cloud authorization policies, which an operator sets by hand: team -> its row (column -> cell)."""
    text = (ROOT / "README.md").read_text().split("**Pulumi Cloud without a stored token.**", 1)[1]
    table = [[cell.strip() for cell in line.strip("|").split("|")] for line in text.split("\n\n", 2)[1].splitlines()
             if line.startswith("|") and not line.startswith("|---")]
    return {row[0].strip("`"): dict(zip(table[0], row)) for row in table[1:]}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_a_merge_requests_preview_reads_its_own_stacks_state_alone(stack: str) -> None:
    """A maintainer plays preview-dev for a change of dev alone. Was open: every Pulumi job that does not write logged in as
    platform-preview, which README's Pulumi Cloud policy let read both stacks from either preview environment, so that job
    read prod's state (its Vault recovery keys and bootstrap credential, every generated password). Now each preview's team
    reads its own stack alone, and a merge request's job has it only in its own stack's environment."""
    other = {"dev": "prod", "prod": "dev"}[stack]
    job = _resolve(yaml.safe_load(CI_FILE.read_text()), f"preview-{stack}")
    assert f"--stack {stack}" in " ".join(job["script"])
    team = job["variables"]["PULUMI_TEAM"]
    row = pulumi_cloud_policies().get(team, {})
    stacks = set(re.findall(r"`(\w+)`", row.get("stacks", "")))
    assert team == f"platform-preview-{stack}" and stacks == {stack}, f"preview-{stack} logs in to Pulumi Cloud as {team}: {row}"
    claims = row["claims the policy requires"]
    assert f"`environment` = `preview/{stack}`" in claims and f"preview/{other}" not in claims, claims
