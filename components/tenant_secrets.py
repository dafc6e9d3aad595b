"""A tenant's secrets: its Vault path, policies and roles, and External Secrets in its namespaces.

Per environment and per purpose: External Secrets in a tenant's `<env>` namespace reads
`tenants/<tenant>/<env>/*` and the pull robot, with a Vault role bound to exactly that
namespace's `vault-secrets` service account; the app project's CI jobs on protected refs read
the push robot; owners write each environment's secrets when signed in. Deploy keys are for
ArgoCD, which gets them from the program, so no role reads them. The Harbor pull secret reaches
each namespace through External Secrets.

Signing: the tenant's cosign key `<tenant>-cosign` (ECDSA P-256, not exportable) lives in the
platform's transit mount; policy `tenant-<tenant>-sign` lets the CI role sign with it and read
its public key, nothing else (components/tenant_supply_chain.sign_policy).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_vault as vault

from components.signing import SigningKey, signing_key, signing_key_credential
from components.tenancy import KV_MOUNT, TRANSIT_MOUNT, TenantPlatform, cosign_key, harbor_pull_path, tenant_group
from components.tenant_gitlab import ci_role
from components.tenant_registry import harbor_push_path
from components.tenant_supply_chain import sign_policy

SECRETS_SERVICE_ACCOUNT = "vault-secrets"
STORE = "vault"
PULL_SECRET = "harbor-pull"
# The Docker config External Secrets renders from the pull robot's keys in Vault.
_DOCKER_CONFIG = (
    '{"auths":{"{{ .registry }}":{"username":"{{ .username }}","password":"{{ .password }}",'
    '"auth":"{{ printf "%s:%s" .username .password | b64enc }}"}}}'
)


def _kv_policy(paths: dict[str, tuple[str, ...]]) -> str:
    """KV v2 rules: data path -> capabilities; listing goes with reading, on the metadata path."""
    rules = []
    for path, capabilities in paths.items():
        rules.append(f'path "{KV_MOUNT}/data/{path}" {{ capabilities = {json.dumps(list(capabilities))} }}')
        if "read" in capabilities:
            meta = ["read", "list", "delete"] if "delete" in capabilities else ["read", "list"]
            rules.append(f'path "{KV_MOUNT}/metadata/{path}" {{ capabilities = {json.dumps(meta)} }}')
    return "\n".join(rules) + "\n"


def environment_path(tenant: str, environment: str) -> str:
    """Where a tenant keeps one environment's secrets, which that environment's SecretStore reads."""
    return f"{tenant}/{environment}"


def read_policy(tenant: str, environment: str) -> str:
    """What External Secrets in one environment's namespace syncs: that environment's secrets
    and the pull robot, nothing of the other environment, no deploy key, no push robot."""
    return _kv_policy({f"{environment_path(tenant, environment)}/*": ("read",), harbor_pull_path(tenant): ("read",)})


def write_policy(tenant: str, environments: list[str]) -> str:
    """Owners keep each environment's secrets; what the program writes (robots, keys) stays its own."""
    every = ("create", "read", "update", "patch", "delete")
    # And the tenant's folder, listed (`vault kv list tenants/<tenant>`, the UI's folder view): the names of
    # its environments' folders and of the program's keys there. Exactly that path: a list request ends in "/".
    folder = f'path "{KV_MOUNT}/metadata/{tenant}/" {{ capabilities = ["list"] }}\n'
    return _kv_policy({f"{environment_path(tenant, e)}/*": every for e in environments}) + folder


def ci_policy(tenant: str) -> str:
    """The app project's push and sign jobs read the push robot (and sign: `sign_policy`)."""
    return _kv_policy({harbor_push_path(tenant): ("read",)})


@dataclass(frozen=True)
class TenantSecretsArgs:
    tenant: str
    namespaces: dict[str, str]  # environment -> the namespace on that environment's cluster
    namespace_resources: dict[str, pulumi.Resource]  # environment -> its Namespace
    ci_project_paths: list[str]  # GitLab projects whose pipelines may read the tenant's secrets
    external_secrets: dict[str, pulumi.Resource]  # environment -> the External Secrets release
    platform: TenantPlatform


def secret_store_spec(vault_url: str, auth_path: str, jwt: bool, role: str, ca_bundle: str) -> dict:
    """A Vault SecretStore that logs in with a short-lived token of the namespace's service account."""
    account = {"serviceAccountRef": {"name": SECRETS_SERVICE_ACCOUNT}}
    auth = (
        {"jwt": {"path": auth_path, "role": role, "kubernetesServiceAccountToken": {**account, "expirationSeconds": 600}}}
        if jwt
        else {"kubernetes": {"mountPath": auth_path, "role": role, **account}}
    )
    provider = {"server": vault_url, "path": KV_MOUNT, "version": "v2", "auth": auth}
    if ca_bundle:
        provider["caBundle"] = base64.b64encode(ca_bundle.encode()).decode()
    return {"provider": {"vault": provider}}


class TenantSecrets(pulumi.ComponentResource):
    signing: SigningKey | None = None  # the tenant's cosign key; None without Vault's transit mount

    def __init__(self, name: str, args: TenantSecretsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:tenant:TenantSecrets", name, None, opts)
        platform, tenant = args.platform, args.tenant
        assert platform.vault is not None
        on_vault = pulumi.ResourceOptions(parent=self, provider=platform.vault.provider)
        environments = list(args.namespaces)
        reads = {
            environment: vault.Policy(
                f"{name}-{environment}-read", name=f"tenant-{tenant}-{environment}-read",
                policy=read_policy(tenant, environment), opts=on_vault,
            )
            for environment in environments
        }
        write = vault.Policy(
            f"{name}-write", name=f"tenant-{tenant}-write", policy=write_policy(tenant, environments), opts=on_vault
        )
        ci = vault.Policy(f"{name}-ci", name=f"tenant-{tenant}-ci", policy=ci_policy(tenant), opts=on_vault)

        # Owners write the tenant's secrets when signed in through OpenUnison.
        if platform.vault.oidc_accessor is not None:
            owners = vault.identity.Group(
                f"{name}-owners", name=tenant_group(tenant, "owners"), type="external", policies=[write.name], opts=on_vault
            )
            vault.identity.GroupAlias(
                f"{name}-owners",
                name=tenant_group(tenant, "owners"),
                mount_accessor=platform.vault.oidc_accessor,
                canonical_id=owners.id,
                opts=on_vault,
            )
        ci_policies = [f"tenant-{tenant}-ci", *self._signing(name, tenant, platform)]
        federation = platform.vault.federation
        # Vault role names are what the tenant's SecretStores and CI variables name.
        if args.ci_project_paths:
            # Protected branches and tags only (VaultFederation.bind_ci).
            federation.bind_ci(ci_role(tenant), args.ci_project_paths, None, ci_policies, self)

        for environment, namespace in args.namespaces.items():
            role = federation.bind_workload(
                f"{tenant}-{environment}", environment, [namespace], [SECRETS_SERVICE_ACCOUNT],
                [f"tenant-{tenant}-{environment}-read"], self,
            )
            self._sync(name, args, environment, namespace, [role, reads[environment]])
        self.register_outputs({"readPolicies": {e: p.name for e, p in reads.items()}, "ciPolicy": ci.name})

    def _signing(self, name: str, tenant: str, platform: TenantPlatform) -> list[str]:
        """The tenant's cosign key in Vault transit (`self.signing`, which the image verifiers
        trust for its Harbor project) and the policy that signs with it; the CI policies it adds."""
        vault_part = platform.vault
        assert vault_part is not None
        if vault_part.transit_mount is None:
            return []
        self.signing = key = signing_key(f"{name}-cosign", cosign_key(tenant), TRANSIT_MOUNT, platform.supply_chain.key_rotation,
                          vault_part.provider, [vault_part.transit_mount], self)
        vault.Policy(
            f"{name}-sign", name=f"tenant-{tenant}-sign", policy=sign_policy(tenant),
            opts=pulumi.ResourceOptions(parent=self, provider=vault_part.provider, depends_on=[key.key]),
        )
        if platform.inventory is not None:
            platform.inventory.register(signing_key_credential(
                key.name, f"Vault; the {tenant}/app pipeline signs with it on protected refs (policy tenant-{tenant}-sign)",
                f"cosign signatures that admit images of the Harbor project {tenant} in {tenant}'s namespaces",
                platform.supply_chain.key_rotation, f"{name}-cosign",
            ))
        return [f"tenant-{tenant}-sign"]

    def _sync(
        self, name: str, args: TenantSecretsArgs, environment: str, namespace: str, vault_access: list[pulumi.Resource]
    ) -> None:
        """External Secrets in one tenant namespace: its service account, SecretStore, pull secret and default pulls."""
        platform, tenant = args.platform, args.tenant
        assert platform.vault is not None
        cluster, federation = platform.clusters[environment], platform.vault.federation
        on_cluster = pulumi.ResourceOptions(
            parent=self,
            provider=cluster.provider,
            depends_on=[args.namespace_resources[environment], args.external_secrets[environment]],
        )
        account = k8s.core.v1.ServiceAccount(
            f"{name}-{environment}-vault",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=SECRETS_SERVICE_ACCOUNT, namespace=namespace),
            automount_service_account_token=False,
            opts=pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[args.namespace_resources[environment]]),
        )
        store = k8s.apiextensions.CustomResource(
            f"{name}-{environment}-store",
            api_version="external-secrets.io/v1",
            kind="SecretStore",
            metadata={"name": STORE, "namespace": namespace},
            spec=platform.ca_bundle.apply(
                lambda ca, environment=environment: secret_store_spec(
                    platform.vault.url,  # type: ignore[union-attr]
                    federation.auth_path(environment),
                    cluster.is_eks,
                    f"{tenant}-{environment}",
                    ca,
                )
            ),
            opts=pulumi.ResourceOptions.merge(on_cluster, pulumi.ResourceOptions(depends_on=[account, *vault_access])),
        )
        k8s.apiextensions.CustomResource(
            f"{name}-{environment}-pull",
            api_version="external-secrets.io/v1",
            kind="ExternalSecret",
            metadata={"name": PULL_SECRET, "namespace": namespace},
            spec={
                "refreshInterval": "1h",
                "secretStoreRef": {"name": STORE, "kind": "SecretStore"},
                "target": {
                    "name": PULL_SECRET,
                    "template": {"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": _DOCKER_CONFIG}},
                },
                "dataFrom": [{"extract": {"key": harbor_pull_path(tenant)}}],
            },
            opts=pulumi.ResourceOptions.merge(on_cluster, pulumi.ResourceOptions(depends_on=[store])),
        )
        # The namespace's default service account pulls with it.
        k8s.core.v1.ServiceAccountPatch(
            f"{name}-{environment}-default",
            metadata=k8s.meta.v1.ObjectMetaPatchArgs(name="default", namespace=namespace),
            image_pull_secrets=[k8s.core.v1.LocalObjectReferencePatchArgs(name=PULL_SECRET)],
            opts=pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[args.namespace_resources[environment]]),
        )

