"""Vault's trust of the clusters and of CI jobs, the pipeline's AWS roles, and the inventory output.

`build_vault_federation` runs after the control plane; the tenants bind their roles through
`IdentityFederation.vault` (a `components.tenancy.WorkloadBinder`), and `outputs()` goes into
the stack outputs last, after every tenant has registered its credentials.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.backups import BackupStore
from components.ci_identity import PipelineIdentity, PipelineIdentityArgs, pulumi_cloud_credential
from components.cluster import ClusterHandle
from components.gitlab import GitLab
from components.inventory import CredentialInventory
from components.image_promotion import DEFAULT_BRANCH
from components.vault import ADMIN_POLICY_NAME, READER_POLICY_NAME, Vault
from components.vault_federation import (
    CI_MAX_TOKEN_TTL,
    DEPLOY_PIPELINE_SOURCES,
    DEPLOY_ROLE,
    DRIFT_ROLE,
    PREVIEW_ROLE,
    REVIEWED_PIPELINE_SOURCES,
    SCHEDULED_DEPLOY_ROLE,
    StackEnvironments,
    VaultFederation,
    VaultFederationArgs,
)
from stacks.config import PlatformConfig

# The identity token a reviewed preview exchanges once, at its start, for an AWS session of an hour.
PREVIEW_TOKEN_SECONDS = 900


@dataclass(frozen=True)
class IdentityFederation:
    inventory: CredentialInventory
    vault: VaultFederation | None  # None when Vault is disabled
    pipeline: PipelineIdentity | None  # EKS stacks with GitLab only

    def outputs(self) -> dict[str, pulumi.Input[object]]:
        """`credentials` (read now: call this after the tenants), and the CI role ARNs on EKS."""
        outputs: dict[str, pulumi.Input[object]] = {"credentials": self.inventory.entries()}
        if self.pipeline is not None:
            # .gitlab-ci.yml: PREVIEW_ROLE_ARN, and PLAN_ROLE_ARN and DEPLOY_ROLE_ARN (protected variables).
            outputs["previewRoleArn"] = self.pipeline.preview_role_arn
            outputs["planRoleArn"] = self.pipeline.plan_role_arn
            outputs["deployRoleArn"] = self.pipeline.deploy_role_arn
            if self.pipeline.reviewed_preview_role_arn is not None:  # REVIEWED_PREVIEW_ROLE_ARN (per environment)
                outputs["reviewedPreviewRoleArn"] = self.pipeline.reviewed_preview_role_arn
            if self.pipeline.backup_watch_role_arn is not None:  # BACKUP_WATCH_ROLE_ARN (protected variable)
                outputs["backupWatchRoleArn"] = self.pipeline.backup_watch_role_arn
        return outputs


def build_vault_federation(
    config: PlatformConfig,
    clusters: dict[str, ClusterHandle],
    vault: Vault | None,
    gitlab: GitLab | None,
    inventory: CredentialInventory | None = None,
    backups: BackupStore | None = None,
) -> IdentityFederation:
    """Declare it all. Pass `inventory` when code built earlier registered credentials in it."""
    inventory = inventory if inventory is not None else CredentialInventory()
    environments = StackEnvironments(pulumi.get_stack())  # this stack's Vault takes only its own environments' jobs
    federation = None
    if vault is not None:
        federation = VaultFederation(
            "vault-federation",
            VaultFederationArgs(
                provider=vault.provider,
                vault_url=vault.url,
                clusters=clusters,
                inventory=inventory,
                gitlab_url=gitlab.url if gitlab is not None else None,
                ca_bundle=vault.ca_bundle,  # the platform bundle, which GitLab's certificate chains to as well
                gitlab_ready=[gitlab.release] if gitlab is not None else [],
            ),
        )
        if gitlab is not None:
            # After bootstrap the program reaches Vault with this role's one-hour token
            # (platform:services.vault.providerAuth "pipeline"): the deploy jobs on main log in with
            # their id_token and hand the token to pulumi-vault as VAULT_TOKEN.
            for role, sources, bound, policy in (
                (DEPLOY_ROLE, DEPLOY_PIPELINE_SOURCES, [environments.deploy, environments.plan], ADMIN_POLICY_NAME),
                # .gitlab-ci.yml sets VAULT_ROLE: rebuild-dev's destroy and up (a rebuilt stack's Vault alone); the drift checks' previews.
                *([(SCHEDULED_DEPLOY_ROLE, ("schedule",), [environments.deploy], ADMIN_POLICY_NAME)] if config.pipeline.rebuild_schedule else []),
                (DRIFT_ROLE, ("schedule",), [environments.plan], READER_POLICY_NAME),
            ):
                federation.bind_ci(
                    role, [config.pipeline.project_path], [DEFAULT_BRANCH], [policy], federation,
                    ttl=CI_MAX_TOKEN_TTL, environments=bound, pipeline_sources=sources,
                )
    identity = clusters["control-plane"].aws_identity
    reviewed = None
    if gitlab is not None and federation is not None:
        # Merge requests' previews a maintainer started: what a refresh reads, as the drift checks; on EKS also the
        # identity token the reviewed-preview AWS role trusts (components/ci_identity.py).
        reviewed = federation.identity_tokens(PREVIEW_ROLE, PREVIEW_TOKEN_SECONDS, federation) if identity is not None else None
        federation.bind_ci(
            PREVIEW_ROLE, [config.pipeline.project_path], None, [READER_POLICY_NAME, *([reviewed.policy] if reviewed else [])],
            federation, ttl=CI_MAX_TOKEN_TTL, environments=[environments.preview], pipeline_sources=REVIEWED_PIPELINE_SOURCES,
        )
    if gitlab is not None:
        inventory.register(pulumi_cloud_credential(config.pipeline.project_path, gitlab.url))
    pipeline = None
    if gitlab is not None and identity is not None:
        pipeline = PipelineIdentity(
            "platform-pipeline",
            PipelineIdentityArgs(
                aws_provider=identity.provider,
                gitlab_url=gitlab.url,
                project_path=config.pipeline.project_path,
                inventory=inventory,
                backups=backups,
                depends_on=[gitlab.release],
                clusters=tuple((role, cluster.eks_cluster_name, cluster.aws_provider) for role, cluster in clusters.items()
                               if cluster.eks_cluster_name is not None and cluster.aws_provider is not None),
                reviewed_previews=reviewed,
            ),
        )
    return IdentityFederation(inventory, federation, pipeline)
