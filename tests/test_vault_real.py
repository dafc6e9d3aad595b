"""The plan's Vault resources on a real OpenBao server: accepted, and read back as written."""

from __future__ import annotations

import runpy
from types import SimpleNamespace

import hvac.exceptions
import pytest
import yaml

from components.vault import ADMIN_POLICY_NAME, APPROVER_POLICY_NAME
from components.vault_federation import DEPLOY_ROLE, GITLAB_PATH
from platformctl.mocks import REDACTED
from platformctl.render import render
from stacks.config import ConfigError
from tests.conftest import ROOT, STACKS
from tests.openbao import BaoServer, PlanVault, free_port
from tests.test_vault_access import gitlab_id_token
from tests.vault_apply import VaultApplier

VAULT_LOGIN = SimpleNamespace(**runpy.run_path(str(ROOT / ".ci" / "vault-login.py"), run_name="vault_login"))
PIPELINE_PROJECT = "platform/platform-bootstrap"  # stacks/config.py Pipeline.project_path, the default
UPDATABLE = ("vault:index/policy:Policy", "vault:jwt/authBackendRole:AuthBackendRole",
             "vault:kubernetes/authBackendRole:AuthBackendRole", "vault:kubernetes/authBackendConfig:AuthBackendConfig",
             "vault:generic/endpoint:Endpoint")  # the next scheduled rotation of each signing key


@pytest.mark.parametrize("stack", STACKS)
def test_every_vault_resource_of_the_plan_is_accepted_and_reads_back_equal(plan_vaults, renders, stack: str) -> None:
    vault = plan_vaults(stack)
    planned = [r for r in renders[stack].plan["resources"] if r["type"].startswith("vault:")]
    assert [a.name for a in vault.applied] == [r["name"] for r in planned]
    assert {a.name: a.mismatches() for a in vault.applied if a.mismatches()} == {}


# --- the approver reviews, and reads no data --------------------------------------------------


def test_the_approver_reads_role_bindings_and_configs_never_snapshots_or_secrets(plan_vaults) -> None:
    vault = plan_vaults("dev")
    root = vault.client(vault.root_token)
    token = root.auth.token.create(policies=[APPROVER_POLICY_NAME], ttl="5m")["auth"]["client_token"]
    approver = vault.client(token)
    for path in ("auth/jwt-gitlab/role/checkout-ci", "auth/kubernetes-dev/role/checkout-dev", "auth/oidc/role/platform",
                 "auth/jwt-gitlab/config", "auth/kubernetes-dev/config", "sys/policies/acl/tenant-checkout-write",
                 "sys/auth", "sys/mounts", "identity/group/name/checkout-owners"):
        assert approver.read(path), path
    assert "checkout-ci" in approver.list("auth/jwt-gitlab/role")["data"]["keys"]
    assert root.adapter.get("/v1/sys/storage/raft/snapshot", stream=True).status_code == 200  # it exists
    for read in (
        lambda: approver.adapter.get("/v1/sys/storage/raft/snapshot", stream=True),
        lambda: approver.read("tenants/data/checkout/harbor-push"),
        lambda: approver.read("tenants/data/checkout/deploy-keys/ops"),
        lambda: approver.read("sys/raw/core/mounts"),
    ):
        with pytest.raises(hvac.exceptions.Forbidden):
            read()


# --- the OIDC mount and what it discovers ----------------------------------------------------


def test_the_real_server_refuses_an_oidc_mount_whose_discovery_does_not_answer(plan_vaults) -> None:
    vault = plan_vaults("dev")
    root = vault.client(vault.root_token)
    root.sys.enable_auth_method("oidc", path="oidc-unreachable")
    with pytest.raises(hvac.exceptions.InvalidRequest, match="error checking oidc discovery URL"):
        root.write_data("auth/oidc-unreachable/config", data={
            "oidc_discovery_url": f"https://127.0.0.1:{free_port()}/auth/idp/k8sIdp",
            "oidc_client_id": "vault", "oidc_client_secret": "x", "default_role": "platform",
        })
    root.sys.disable_auth_method("oidc-unreachable")


def test_the_oidc_mount_waits_for_openunison_to_serve_discovery(plan: dict) -> None:
    by_urn = {r["urn"]: r for r in plan["resources"]}
    [mount] = [r for r in plan["resources"] if r["type"] == "vault:jwt/authBackend:AuthBackend" and r["inputs"]["path"] == "oidc"]
    waits_for = {by_urn[urn]["name"] for urn in mount["dependsOn"]}
    # orchestra serves the issuer (and the portal release depends on it); the route in Traefik's namespace reaches it.
    assert {"control-plane-orchestra-login-portal", "control-plane-openunison-route"} <= waits_for


# --- after bootstrap: no root token on any run -------------------------------------------------


def pipeline_id_token(
    vault: PlanVault, ref: str = "main", protected: bool = True, source: str = "push", environment: str | None = "dev",
) -> str:
    return gitlab_id_token(vault, PIPELINE_PROJECT, ref, "branch", protected, source, environment)


def test_deploy_jobs_log_in_for_an_hour_at_most_and_root_can_be_revoked(
    tmp_path_factory: pytest.TempPathFactory, loopback_tls, identity_peer, renders
) -> None:
    """A server of its own: its root token is revoked here, as the README asks after bootstrap."""
    server = BaoServer(tmp_path_factory.mktemp("openbao-revoked"), loopback_tls).start()
    try:
        vault = PlanVault.apply(server, renders["dev"].plan["resources"], identity_peer)
        for refused in (pipeline_id_token(vault, "feature/x", protected=False),
                        pipeline_id_token(vault, "main", source="merge_request_event"),
                        # promote-image on main: anyone who plays it sets its variables (BASH_ENV runs code).
                        pipeline_id_token(vault, "main", source="web", environment=None),
                        pipeline_id_token(vault, "main", environment="promote")):
            with pytest.raises((hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden)):
                vault.login(GITLAB_PATH, DEPLOY_ROLE, refused)
        # As the Pulumi jobs log in (.gitlab-ci.yml `.pulumi`).
        token = VAULT_LOGIN.login(server.url, GITLAB_PATH, DEPLOY_ROLE, pipeline_id_token(vault), server.ca_file)
        deploy = vault.client(token)
        assert 0 < deploy.auth.token.lookup_self()["data"]["ttl"] <= 3600
        deploy.auth.token.revoke(vault.root_token)
        with pytest.raises(hvac.exceptions.Forbidden):
            vault.client(vault.root_token).auth.token.lookup_self()
        # What `pulumi up` does with the deploy token: read everything back, write what changed.
        applier = VaultApplier(deploy, loopback_tls.ca_pem)
        listed = {path: deploy.read(path)["data"] for path in ("sys/mounts", "sys/auth", "sys/audit")}
        for applied in vault.applied:
            if applied.type == "vault:generic/endpoint:Endpoint":
                continue  # a command (a key's rotation): the provider never reads it back
            if applied.path.startswith(("sys/mounts/", "sys/auth/", "sys/audit/")):
                section, _, name = applied.path.removeprefix("sys/").partition("/")
                assert f"{name}/" in listed[f"sys/{section}"], applied.path
            else:
                assert not applier.read_back(applied.name, applied.path, applied.wrote).mismatches(), applied.path
        # All but platform-admin itself, which only root rewrites (components/vault.py ADMIN_POLICY).
        own = [r for r in renders["dev"].plan["resources"] if r["type"] in UPDATABLE and r["inputs"].get("name") == ADMIN_POLICY_NAME]
        updated = applier.apply([r for r in renders["dev"].plan["resources"] if r["type"] in UPDATABLE and r not in own])
        assert updated and all(not a.mismatches() for a in updated)
        with pytest.raises(hvac.exceptions.Forbidden):
            applier.apply(own)
    finally:
        server.stop()


def test_the_program_uses_root_only_until_the_stack_says_bootstrap_is_done(renders, tmp_path) -> None:
    [bootstrap] = [r for r in renders["dev"].plan["resources"] if r["type"] == "pulumi:providers:vault"]
    assert bootstrap["inputs"]["token"] == REDACTED  # the root token from vault-init
    stack_file = dev_stack_with_provider_auth(tmp_path, "pipeline")
    resources = render(stack_file, "dev").plan["resources"]
    [provider] = [r for r in resources if r["type"] == "pulumi:providers:vault"]
    # No token: the provider reads VAULT_TOKEN, the deploy job's one-hour login.
    assert "token" not in provider["inputs"]
    # And the root token is revoked (tests/test_vault_attacks.py: against the real server).
    [init] = [r for r in resources if r["type"] == "pulumi-python:dynamic/vault:Init"]
    assert init["inputs"]["revoke_root"] is True


def test_an_unknown_provider_auth_is_a_clear_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"platform:services\.vault\.providerAuth.*'root'.*'pipeline'"):
        render(dev_stack_with_provider_auth(tmp_path, "token"), "dev")


def dev_stack_with_provider_auth(directory, value: str):
    document = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    document["config"]["platform:services"].setdefault("vault", {})["providerAuth"] = value
    stack_file = directory / "Pulumi.dev.yaml"
    stack_file.write_text(yaml.safe_dump(document))
    return stack_file
