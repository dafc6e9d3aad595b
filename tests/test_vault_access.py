"""Who gets what from the real Vault (OpenBao with the dev stack's plan applied), by real logins.

GitLab CI jobs log in at `jwt-gitlab` with id_tokens carrying GitLab's claims, signed by the
loopback issuer the mount discovers; workloads log in at `kubernetes-<cluster>` with projected
service-account tokens that the loopback TokenReview API vouches for (and at `jwt-<cluster>`
on the EKS stack). Every row is a real login and a real read or signature; "denied" means
the login or the request was refused.
"""

from __future__ import annotations

import base64
import itertools
from typing import Any

import hvac
import hvac.exceptions
import pytest

from components.vault import TOKEN_TTL_SECONDS
from components.vault_federation import CI_TOKEN_TTL, GITLAB_PATH, WORKLOAD_TOKEN_MAX_TTL, WORKLOAD_TOKEN_TTL

TENANTS = ("checkout", "payments")  # two of the dev stack's tenants: each row also checks the other's things
ENVIRONMENTS = ("dev", "prod")


def audience(vault: Any) -> str:
    """The Vault URL, which every CI role binds."""
    [url] = {a.wrote["bound_audiences"][0] for a in vault.applied if a.path.startswith(f"auth/{GITLAB_PATH}/role/")}
    return url


def gitlab_id_token(vault: Any, project_path: str, ref: str, ref_type: str, protected: bool,
                    source: str = "push", environment: str | None = None, environment_protected: bool = True,
                    environment_action: str = "start") -> str:
    """An id_token as GitLab issues it to a job (claims as documented for GitLab 17/18); `environment`:
    the job's environment, whose claims GitLab adds only for a job that has one."""
    namespace = project_path.rsplit("/", 1)[0]
    job_environment = {} if environment is None else {
        "environment": environment, "environment_protected": str(environment_protected).lower(), "deployment_tier": "other",
        "environment_action": environment_action,
    }
    return vault.identity.sign(GITLAB_PATH, {**job_environment, 
        "sub": f"project_path:{project_path}:ref_type:{ref_type}:ref:{ref}",
        "aud": audience(vault),
        "namespace_id": "17", "namespace_path": namespace,
        "project_id": "42", "project_path": project_path, "project_visibility": "private",
        "user_id": "5", "user_login": "alice", "user_email": "alice@example.com",
        "pipeline_id": "1001", "pipeline_source": source, "job_id": "5001",
        "ref": ref, "ref_type": ref_type, "ref_path": f"refs/{'heads' if ref_type == 'branch' else 'tags'}/{ref}",
        "ref_protected": "true" if protected else "false",
        "runner_id": 3, "runner_environment": "self-hosted", "sha": "0" * 40,
    })


# ref kind -> (project path of the job for tenant t, ref, ref_type, ref_protected, pipeline_source)
REFS = {
    "protected branch": (lambda t: f"{t}/app", "main", "branch", True, "push"),
    "unprotected branch": (lambda t: f"{t}/app", "feature/x", "branch", False, "push"),
    "protected tag": (lambda t: f"{t}/app", "v1.2.3", "tag", True, "push"),
    "unprotected tag": (lambda t: f"{t}/app", "try-1", "tag", False, "push"),
    # GitLab marks a merge-request pipeline protected when source and target branches are.
    "merge-request pipeline": (lambda t: f"{t}/app", "release/1", "branch", True, "merge_request_event"),
    "fork": (lambda t: f"alice/{t}-app", "main", "branch", True, "push"),
    "look-alike project path": (lambda t: f"{t}x/app", "main", "branch", True, "push"),
    "ops project": (lambda t: f"{t}/ops", "main", "branch", True, "push"),
}
GRANTED_REFS = ("protected branch", "protected tag")


def can(action) -> bool:
    try:
        action()
        return True
    except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest):
        return False


def kv(client: hvac.Client, path: str) -> Any:
    return client.read(f"tenants/data/{path}")["data"]


def sign(client: hvac.Client, key: str) -> Any:
    return client.write_data(f"transit/sign/{key}/sha2-256", data={"input": base64.b64encode(b"digest").decode()})


@pytest.fixture(scope="module")
def dev_vault(plan_vaults: Any) -> Any:
    vault = plan_vaults("dev")
    root = vault.client(vault.root_token)
    for tenant, environment in itertools.product(TENANTS, ENVIRONMENTS):
        root.write_data(f"tenants/data/{tenant}/{environment}/app", data={"data": {"password": f"{tenant}-{environment}"}})
    return vault


# --- CI ---------------------------------------------------------------------------------------

CI_TARGETS = {
    "own push robot": lambda c, t, o: kv(c, f"{t}/harbor-push"),
    "own cosign key": lambda c, t, o: sign(c, f"{t}-cosign"),
    "own deploy key": lambda c, t, o: kv(c, f"{t}/deploy-keys/ops"),
    "own dev secret": lambda c, t, o: kv(c, f"{t}/dev/app"),
    "own prod secret": lambda c, t, o: kv(c, f"{t}/prod/app"),
    "other tenant's push robot": lambda c, t, o: kv(c, f"{o}/harbor-push"),
    "other tenant's cosign key": lambda c, t, o: sign(c, f"{o}-cosign"),
}
CI_GRANTED = ("own push robot", "own cosign key")


def ci_login(vault: Any, tenant: str, kind: str) -> dict[str, Any] | None:
    project, ref, ref_type, protected, source = REFS[kind]
    token = gitlab_id_token(vault, project(tenant), ref, ref_type, protected, source)
    try:
        return vault.login(GITLAB_PATH, f"{tenant}-ci", token)
    except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden):
        return None


@pytest.mark.parametrize("target", CI_TARGETS)
@pytest.mark.parametrize("kind", REFS)
@pytest.mark.parametrize("tenant", TENANTS)
def test_ci_access(dev_vault: Any, tenant: str, kind: str, target: str) -> None:
    other = next(t for t in TENANTS if t != tenant)
    auth = ci_login(dev_vault, tenant, kind)
    allowed = auth is not None and can(lambda: CI_TARGETS[target](dev_vault.client(auth["client_token"]), tenant, other))
    assert allowed == (kind in GRANTED_REFS and target in CI_GRANTED)


@pytest.mark.parametrize("tenant", TENANTS)
def test_ci_tokens_live_five_minutes_and_name_the_job(dev_vault: Any, tenant: str) -> None:
    auth = ci_login(dev_vault, tenant, "protected tag")
    assert auth is not None and auth["lease_duration"] == CI_TOKEN_TTL == 300
    assert auth["metadata"]["project_path"] == f"{tenant}/app" and auth["metadata"]["ref"] == "v1.2.3"


def test_an_id_token_for_another_audience_or_issuer_is_refused(dev_vault: Any) -> None:
    project, ref, ref_type, protected, source = REFS["protected branch"]
    good = gitlab_id_token(dev_vault, project("checkout"), ref, ref_type, protected, source)
    assert dev_vault.login(GITLAB_PATH, "checkout-ci", good)["client_token"]
    claims = {"sub": "x", "aud": "https://vault.elsewhere", "project_path": "checkout/app", "ref": "main",
              "ref_type": "branch", "ref_protected": "true", "pipeline_source": "push"}
    for token in (dev_vault.identity.sign(GITLAB_PATH, claims),
                  dev_vault.identity.sign("oidc", {**claims, "aud": audience(dev_vault)})):
        with pytest.raises((hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden)):
            dev_vault.login(GITLAB_PATH, "checkout-ci", token)


# --- workloads (External Secrets) -----------------------------------------------------------------

WORKLOAD_TARGETS = {
    "own environment's secret": lambda c, t, e, o: kv(c, f"{t}/{e}/app"),
    "other environment's secret": lambda c, t, e, o: kv(c, f"{t}/{'prod' if e == 'dev' else 'dev'}/app"),
    "pull robot": lambda c, t, e, o: kv(c, f"{t}/harbor-pull"),
    "push robot": lambda c, t, e, o: kv(c, f"{t}/harbor-push"),
    "deploy key": lambda c, t, e, o: kv(c, f"{t}/deploy-keys/ops"),
    "other tenant's secret": lambda c, t, e, o: kv(c, f"{o}/{e}/app"),
    "cosign key": lambda c, t, e, o: sign(c, f"{t}-cosign"),
}
WORKLOAD_GRANTED = ("own environment's secret", "pull robot")


def workload_login(vault: Any, environment: str, namespace: str, account: str, role: str) -> dict[str, Any]:
    token = vault.identity.service_account_token(f"kubernetes-{environment}", namespace, account, "vault")
    return vault.login(f"kubernetes-{environment}", role, token)


@pytest.mark.parametrize("target", WORKLOAD_TARGETS)
@pytest.mark.parametrize("environment", ENVIRONMENTS)
@pytest.mark.parametrize("tenant", TENANTS)
def test_workload_access(dev_vault: Any, tenant: str, environment: str, target: str) -> None:
    other = next(t for t in TENANTS if t != tenant)
    auth = workload_login(dev_vault, environment, f"{tenant}-{environment}", "vault-secrets", f"{tenant}-{environment}")
    client = dev_vault.client(auth["client_token"])
    assert can(lambda: WORKLOAD_TARGETS[target](client, tenant, environment, other)) == (target in WORKLOAD_GRANTED)


@pytest.mark.parametrize(
    ("cluster", "namespace", "account"),
    [
        ("dev", "checkout-dev", "default"),  # another account of the namespace
        ("dev", "payments-dev", "vault-secrets"),  # another tenant's namespace
        ("prod", "checkout-dev", "vault-secrets"),  # the dev account's token presented to prod
    ],
)
def test_workload_logins_bind_the_exact_account_and_cluster(dev_vault: Any, cluster: str, namespace: str, account: str) -> None:
    token = dev_vault.identity.service_account_token("kubernetes-dev", namespace, account, "vault")
    with pytest.raises((hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden)):
        dev_vault.login(f"kubernetes-{cluster}", "checkout-dev", token)


def test_workload_tokens_live_fifteen_minutes_at_most_an_hour(dev_vault: Any) -> None:
    auth = workload_login(dev_vault, "prod", "checkout-prod", "vault-secrets", "checkout-prod")
    assert auth["lease_duration"] == WORKLOAD_TOKEN_TTL == 900
    lookup = dev_vault.client(auth["client_token"]).auth.token.lookup_self()["data"]
    assert lookup["explicit_max_ttl"] in (0, WORKLOAD_TOKEN_MAX_TTL)
    assert dev_vault.client(dev_vault.root_token).read("auth/kubernetes-prod/role/checkout-prod")["data"]["token_max_ttl"] == 3600


def test_people_get_tokens_of_an_hour_at_most(dev_vault: Any) -> None:
    """OIDC sign-in (OpenUnison): the role and the mount cap people's tokens at an hour."""
    root = dev_vault.client(dev_vault.root_token)
    role = root.read("auth/oidc/role/platform")["data"]
    assert role["token_ttl"] == role["token_max_ttl"] == TOKEN_TTL_SECONDS == 3600
    assert root.read("sys/auth/oidc/tune")["data"]["max_lease_ttl"] == 3600


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_eks_workloads_log_in_with_their_clusters_service_account_tokens(plan_vaults: Any, environment: str) -> None:
    """The prod stack runs on EKS: `jwt-<cluster>` verifies the token against the cluster's issuer."""
    vault = plan_vaults("prod")
    tenant = "payments"
    token = vault.identity.service_account_token(f"jwt-{environment}", f"{tenant}-{environment}", "vault-secrets", "vault")
    auth = vault.login(f"jwt-{environment}", f"{tenant}-{environment}", token)
    assert auth["lease_duration"] == WORKLOAD_TOKEN_TTL
    other = "prod" if environment == "dev" else "dev"
    stranger = vault.identity.service_account_token(f"jwt-{other}", f"{tenant}-{environment}", "vault-secrets", "vault")
    with pytest.raises((hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden)):
        vault.login(f"jwt-{environment}", f"{tenant}-{environment}", stranger)
