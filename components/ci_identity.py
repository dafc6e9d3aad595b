"""AWS access for this repository's own pipeline, through GitLab ID tokens only (EKS stacks),
and the Pulumi Cloud tokens its jobs get the same way (every stack; set up by hand, README).

The platform's GitLab becomes an IAM OIDC identity provider (audience `sts.amazonaws.com`,
what `.gitlab-ci.yml` asks for), and these roles trust it for one project path:

* preview (`PREVIEW_ROLE_ARN`): any branch's pipeline of the project, merge requests included
  (`sub` like `project_path:<path>:ref_type:branch:ref:*`). AWS ReadOnlyAccess, minus the
  reads that return stored data rather than describe infrastructure (S3 objects such as
  registry images and CI artifacts, secret and parameter values, KMS decryption, log contents
  such as the clusters' audit logs): whoever can push a branch can assume it, and `pulumi
  preview` needs none of that data. No access entry on any EKS cluster: a refresh reads every
  Secret there (a merge request's preview a maintainer started reads them as reviewed preview, below).
* plan (`PLAN_ROLE_ARN`): main's previews whose plans the deploys apply, and the drift checks.
  Trusted exactly as deploy (below), allowed what preview is in AWS (a refresh of the program's
  AWS resources describes them: its S3 reads are the buckets' configuration, never an object),
  and on each EKS cluster an access entry with EKS's AmazonEKSAdminViewPolicy: get, list and
  watch on every resource, Secrets and Helm's release Secrets included, and no write.
* deploy (`DEPLOY_ROLE_ARN`): only pipelines of the deploy branch (`sub` exactly
  `project_path:<path>:ref_type:branch:ref:main`). AWS cannot test GitLab's `ref_protected`
  claim (an IAM condition only sees `aud` and `sub` of a generic OIDC provider), so this is
  as strong as the branch's protection in GitLab: keep `main` protected, maintainers only.
  AdministratorAccess: the program creates IAM roles and attaches policies to them (IRSA for
  cert-manager, Vault, GitLab, Harbor; these very roles), which is administrator power
  whatever a narrower policy says; a scoped policy would only look safer. One explicit Deny:
  no deleting database snapshots, the automated backups RDS keeps after an instance goes or EBS
  snapshots, no bypassing the backup bucket's Object Lock, no unlocking the Recycle Bin rule, and on a
  protected stack no deleting, disabling, re-policying or re-tagging the KMS keys the history is
  encrypted with (tagged HISTORY_TAG) (no run of the program needs to), so a mistaken or hijacked
  deploy cannot take the history. On each EKS cluster an access entry with EKS's cluster-admin
  policy: the clusters take Kubernetes rights from access entries alone (authenticationMode API).
* reviewed preview (`REVIEWED_PREVIEW_ROLE_ARN`, with Vault): the merge requests' previews once a maintainer has
  read the change and started them in the protected environments preview/<stack>. AWS cannot test that (nor any
  claim but `aud` and `sub`), so this role trusts Vault instead, as a second OIDC issuer: Vault's platform-preview
  login takes only those jobs (`environment_protected`), and only its token may have an identity token issued for
  the role's audience (components/vault_federation.py `identity_tokens`). Allowed what plan is (AWS reads, and the
  EKS clusters' objects through AmazonEKSAdminViewPolicy access entries): such a job already reads the stacks'
  decrypted state, Vault's root token included, so this grants it nothing more, and the preview sees the clusters.
* backup watch (`BACKUP_WATCH_ROLE_ARN`, with a backup bucket): the same `sub` as deploy (IAM cannot
  tell main's schedules from its other pipelines), allowed `s3:ListBucket` on the backup bucket and
  to read Velero's velero-backup.json files (a backup's Backup object and how it ended, no data),
  decrypted through S3 only, and to describe the RDS instances: `platformctl backups check` reads keys
  and their times, the newest Velero backup's phase, and each instance's latest restorable time.

Sessions last an hour (`max_session_duration`); the AWS SDK in the job assumes the role with
the job's ID token, and nothing is stored. Tags and refs other than branches get none of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

import pulumi
import pulumi_aws as aws

from components.aws import HISTORY_TAG, STS_AUDIENCE, web_identity_trust
from components.backups import VELERO_OUTCOMES, BackupStore
from components.cluster import ADMIN_VIEW_POLICY, CLUSTER_ADMIN_POLICY, cluster_access
from components.inventory import Credential, CredentialInventory
from components.vault_federation import IdentityTokens
from policy.labels import managed_by

AUDIENCE = STS_AUDIENCE
SESSION_SECONDS = 3600
PULUMI_TOKEN_SECONDS = 2 * 3600  # .gitlab-ci.yml PULUMI_LOGIN_EXPIRATION (rebuild-dev: four hours)
READ_ONLY_POLICY = "arn:aws:iam::aws:policy/ReadOnlyAccess"
ADMIN_POLICY = "arn:aws:iam::aws:policy/AdministratorAccess"
# Reads that return stored data (object contents, secret values, plaintext), not descriptions.
DATA_READS = (
    "s3:GetObject",
    "s3:GetObjectVersion",
    "secretsmanager:GetSecretValue",
    "ssm:GetParameter",
    "ssm:GetParameters",
    "ssm:GetParametersByPath",
    "kms:Decrypt",
    # Log contents: the clusters' API and audit logs in CloudWatch, the databases' own logs.
    "logs:GetLogEvents",
    "logs:GetLogRecord",
    "logs:GetQueryResults",
    "logs:FilterLogEvents",
    "logs:StartQuery",
    "logs:StartLiveTail",
    "rds:DownloadDBLogFilePortion",
    "rds:DownloadCompleteDBLogFile",
)


# What would take the history with it: the databases' snapshots and the automated backups RDS keeps
# after an instance is deleted; the backup bucket's locked versions (governance mode yields to the
# bypass); tenants' EBS snapshots (Velero's) and the locked Recycle Bin rule that keeps a deleted one
# (README, Backups and restore, Tenants' volumes). No run of the program needs any of them.
BACKUP_DELETIONS = (
    "rds:DeleteDBSnapshot",
    "rds:DeleteDBClusterSnapshot",
    "rds:DeleteDBInstanceAutomatedBackup",
    "rds:DeleteDBClusterAutomatedBackup",
    "elasticache:DeleteSnapshot",
    "s3:BypassGovernanceRetention",
    "ec2:DeleteSnapshot",
    "rbin:UnlockRule",
    "rbin:DeleteRule",
)


# What makes a KMS key's ciphertexts unreadable, or the key unmanageable: refused on the keys tagged HISTORY_TAG.
HISTORY_KEY_CHANGES = ("kms:ScheduleKeyDeletion", "kms:DisableKey", "kms:PutKeyPolicy", "kms:TagResource", "kms:UntagResource")


def subject(project_path: str, branch: str) -> str:
    """GitLab's `sub` claim of a job on a branch (`*` for any branch, with StringLike)."""
    return f"project_path:{project_path}:ref_type:branch:ref:{branch}"


def pipeline_trust_policy(provider_arn: str, issuer_url: str, project_path: str, branch: str | None) -> dict[str, Any]:
    """Jobs of `project_path` on `branch` (None: on any branch) may assume the role."""
    if branch is None:
        return web_identity_trust(provider_arn, issuer_url, {"aud": AUDIENCE}, like={"sub": subject(project_path, "*")})
    return web_identity_trust(provider_arn, issuer_url, {"aud": AUDIENCE, "sub": subject(project_path, branch)})


def deny_policy(sid: str, actions: Sequence[str]) -> dict[str, Any]:
    """A policy that denies `actions` on every resource, whatever else the role is allowed."""
    return {"Version": "2012-10-17", "Statement": [{"Sid": sid, "Effect": "Deny", "Action": list(actions), "Resource": "*"}]}


@dataclass(frozen=True)
class PipelineIdentityArgs:
    aws_provider: pulumi.ProviderResource  # IAM is global: the control plane's provider
    gitlab_url: str  # https://gitlab.<domain>, the ID tokens' issuer
    project_path: str  # this repository in GitLab, e.g. platform/platform-bootstrap
    inventory: CredentialInventory
    deploy_branch: str = "main"
    # The stack's backup store: a watch role lists its bucket and decrypts Velero's outcomes there through S3.
    backups: BackupStore | None = None
    # IAM reads the issuer's certificate when the provider is created: GitLab must answer.
    depends_on: Sequence[pulumi.Resource] = ()
    # The EKS clusters the deploy role administers and the plan role reads (`pulumi up` and `preview --refresh` reach
    # their API servers as them): (role, cluster name, its AWS provider).
    clusters: Sequence[tuple[str, pulumi.Input[str], pulumi.ProviderResource]] = ()
    # Vault's identity tokens for reviewed merge requests' previews (None: no Vault, no reviewed-preview role).
    reviewed_previews: IdentityTokens | None = None


def watch_policy(bucket: str, key_arn: str, region: str, copy: tuple[str, str, str] | None = None) -> dict[str, Any]:
    """The backup watch role's: list the bucket's keys (and their times), read how each Velero backup ended
    (its velero-backup.json, decrypted only through S3 and so only where S3 lets the role read), and describe the
    RDS instances (their automated backups' latest restorable time); nothing else. With `copy` (its bucket, key and
    region), the same of the copy, whose RDS backups are described as replicated automated backups."""
    stores = [(bucket, key_arn, region), *([copy] if copy else [])]

    def each(form: str) -> str | list[str]:
        found = [form.format(bucket=b, key=k, region=r) for b, k, r in stores]
        return found[0] if len(found) == 1 else found

    # With a copy: the replicated automated backups and the volumes' snapshot copies, described.
    databases = ["rds:DescribeDBInstances", *(["rds:DescribeDBInstanceAutomatedBackups", "ec2:DescribeSnapshots"] if copy else [])]
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "ListBackups", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": each("arn:aws:s3:::{bucket}")},
        {"Sid": "ReadVeleroOutcomes", "Effect": "Allow", "Action": ["s3:GetObject"],
         "Resource": each("arn:aws:s3:::{bucket}/" + VELERO_OUTCOMES)},
        {"Sid": "DecryptThroughS3", "Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": each("{key}"),
         "Condition": {"StringEquals": {"kms:ViaService": each("s3.{region}.amazonaws.com")}}},
        # The RDS instances' automated backups: their retention and latest restorable time (a description, no data).
        {"Sid": "DescribeDatabases", "Effect": "Allow", "Action": databases, "Resource": "*"},
    ]}


def _register_sessions(name: str, args: PipelineIdentityArgs) -> None:
    """Each role's AWS sessions in the credential inventory: who holds them, what they may do, an hour each."""
    no_data = "ReadOnlyAccess without data reads (S3 objects, secret values, KMS decrypt, log contents)"
    viewer = f"{no_data}; AmazonEKSAdminViewPolicy on the EKS clusters (access entries: reads every object, Secrets included, writes nothing)"
    gitlab = (f"{args.gitlab_url} (ID tokens with aud {AUDIENCE})", "ID token")
    rows = [
        ("preview", f"CI jobs of {args.project_path} on any branch", no_data, gitlab),
        ("plan", f"CI jobs of {args.project_path} on {args.deploy_branch} (plan-* and the drift schedules)", viewer, gitlab),
        ("deploy", f"CI jobs of {args.project_path} on {args.deploy_branch}",
         "AdministratorAccess, minus deleting backups and snapshots, lifting their locks or deleting or disabling their keys; "
         "cluster-admin on the EKS clusters (access entries)", gitlab),
    ]
    if args.backups is not None:
        copy = f" and its copy in {args.backups.copy.region}" if args.backups.copy else ""
        rows.append(("backup-watch", f"CI jobs of {args.project_path} on {args.deploy_branch} (the backups schedule's platformctl "
                     "backups check)", f"s3:ListBucket on the backup bucket{copy}, s3:GetObject of {'their' if copy else 'its'} {VELERO_OUTCOMES} (decrypted "
                     "through S3) and rds:DescribeDBInstances" + (", DescribeDBInstanceAutomatedBackups and ec2:DescribeSnapshots" if copy else "")
                     + ", nothing else", gitlab))
    if args.reviewed_previews is not None:
        rows.append(("reviewed-preview", f"merge-request jobs of {args.project_path} a maintainer started in the protected environment "
                     "preview/<stack> of this stack (Vault's platform-preview login)", viewer,
                     (f"Vault ({args.reviewed_previews.issuer_url}, identity tokens of the platform-preview role)", "Vault identity token")))
    for suffix, holder, scope, (trusted, token) in rows:
        args.inventory.register(
            Credential(
                what=f"AWS sessions of the {suffix.replace('-', ' ')} role",
                category="federated",
                issuer=f"AWS STS, trusting {trusted}",
                holder=holder,
                scope=scope,
                lifetime_seconds=SESSION_SECONDS,
                rotation=f"each job assumes the role with its own {token}",
                resources=(f"{name}-{suffix}",),
            )
        )


class PipelineIdentity(pulumi.ComponentResource):
    preview_role_arn: pulumi.Output[str]
    plan_role_arn: pulumi.Output[str]
    deploy_role_arn: pulumi.Output[str]
    backup_watch_role_arn: pulumi.Output[str] | None
    reviewed_preview_role_arn: pulumi.Output[str] | None

    def __init__(self, name: str, args: PipelineIdentityArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:ci_identity:PipelineIdentity", name, None, opts)
        on_aws = pulumi.ResourceOptions(parent=self, provider=args.aws_provider)
        tags = managed_by()
        provider = aws.iam.OpenIdConnectProvider(
            f"{name}-gitlab",
            url=args.gitlab_url,
            client_id_lists=[AUDIENCE],
            tags=tags,
            opts=pulumi.ResourceOptions.merge(on_aws, pulumi.ResourceOptions(depends_on=list(args.depends_on))),
        )

        def gitlab_trust(branch: str | None) -> pulumi.Output[str]:
            return provider.arn.apply(lambda arn: json.dumps(pipeline_trust_policy(arn, args.gitlab_url, args.project_path, branch)))

        def role(suffix: str, description: str, trust: pulumi.Input[str], policy_arn: str | None) -> aws.iam.Role:
            created = aws.iam.Role(f"{name}-{suffix}", description=description, assume_role_policy=trust,
                                   max_session_duration=SESSION_SECONDS, tags=tags, opts=on_aws)
            if policy_arn is not None:
                aws.iam.RolePolicyAttachment(f"{name}-{suffix}", role=created.name, policy_arn=policy_arn, opts=on_aws)
            return created

        def reader(suffix: str, description: str, trust: pulumi.Input[str]) -> aws.iam.Role:
            """ReadOnlyAccess minus the data reads. A refresh of the program's AWS resources needs none: their reads
            describe (its S3 reads are the buckets' configuration, s3:GetBucket*, s3:Get*Configuration, s3:ListBucket:
            terraform-provider-aws internal/service/s3/bucket.go resourceBucketRead), and it has no data source."""
            created = role(suffix, description, trust, READ_ONLY_POLICY)
            no_data = deny_policy("DescribeDoNotRead", DATA_READS)
            aws.iam.RolePolicy(f"{name}-{suffix}-no-data", role=created.name, policy=json.dumps(no_data), opts=on_aws)
            return created

        preview = reader("preview", f"pulumi preview from any branch of {args.project_path}", gitlab_trust(None))
        deploy = role("deploy", f"pulumi up from {args.deploy_branch} of {args.project_path}", gitlab_trust(args.deploy_branch),
                      ADMIN_POLICY)
        keep_backups = deny_policy("KeepBackups", BACKUP_DELETIONS)
        keep_backups["Statement"].append({"Sid": "KeepHistoryKeys", "Effect": "Deny", "Action": list(HISTORY_KEY_CHANGES), "Resource": "*",
                                          "Condition": {"StringEquals": {f"aws:ResourceTag/{HISTORY_TAG}": "true"}}})
        aws.iam.RolePolicy(f"{name}-deploy-keep-backups", role=deploy.name, policy=json.dumps(keep_backups), opts=on_aws)
        plan = reader("plan", f"pulumi preview --refresh (plans, drift checks) from {args.deploy_branch} of {args.project_path}",
                      gitlab_trust(args.deploy_branch))
        readers = [("plan", plan)]
        self.reviewed_preview_role_arn = None
        if args.reviewed_previews is not None:
            reviewed = reader("reviewed-preview", f"pulumi preview --refresh of merge requests of {args.project_path} a maintainer "
                              "started (Vault's platform-preview identity tokens)", self._vault_trust(name, args.reviewed_previews, on_aws))
            readers.append(("reviewed-preview", reviewed))
            self.reviewed_preview_role_arn = reviewed.arn
        # Kubernetes rights come from access entries only: AdministratorAccess alone leaves every call of `pulumi up` to
        # the clusters Unauthorized, ReadOnlyAccess every read of a refresh. The plan role reads and writes nothing:
        # pulumi-kubernetes v4 previews from its inputs' diff and, when the server refuses its server-side dry run as
        # Forbidden, previews client-side (provider/pkg/provider/provider.go Create and Update, pulumi-kubernetes#2419
        # and #2522; a Helm Release installs or upgrades only outside a preview, helm_release.go); the discovery and
        # OpenAPI it reads first are every authenticated user's (Kubernetes' system:discovery binding). None for the
        # preview role, which any branch assumes: a refresh reads every Secret.
        for role_name, cluster_name, cluster_provider in args.clusters:
            on_cluster = pulumi.ResourceOptions(parent=self, provider=cluster_provider)
            cluster_access(f"{name}-deploy-{role_name}", cluster_name, deploy.arn, CLUSTER_ADMIN_POLICY, on_cluster)
            for suffix, viewer in readers:
                cluster_access(f"{name}-{suffix}-{role_name}", cluster_name, viewer.arn, ADMIN_VIEW_POLICY, on_cluster)
        self.preview_role_arn = preview.arn
        self.plan_role_arn = plan.arn
        self.deploy_role_arn = deploy.arn
        self.backup_watch_role_arn = None
        if args.backups is not None:
            watch = role("backup-watch", f"platformctl backups check from {args.deploy_branch} of {args.project_path}",
                         gitlab_trust(args.deploy_branch), None)
            store = args.backups
            copy = store.copy
            aws.iam.RolePolicy(f"{name}-backup-watch", role=watch.name, opts=on_aws, policy=pulumi.Output.all(
                store.bucket, store.kms_key_arn, *([copy.bucket, copy.kms_key_arn] if copy else [])).apply(lambda a: json.dumps(
                    watch_policy(a[0], a[1], store.region, (a[2], a[3], copy.region) if copy else None))))
            self.backup_watch_role_arn = watch.arn

        _register_sessions(name, args)
        self.register_outputs({"previewRoleArn": self.preview_role_arn, "planRoleArn": self.plan_role_arn, "deployRoleArn": self.deploy_role_arn,
                               "reviewedPreviewRoleArn": self.reviewed_preview_role_arn, "backupWatchRoleArn": self.backup_watch_role_arn})

    def _vault_trust(self, name: str, tokens: IdentityTokens, on_aws: pulumi.ResourceOptions) -> pulumi.Output[str]:
        """Vault as an IAM OIDC provider: tokens of its issuer with the role's audience (its client id) alone."""
        vault_issuer = aws.iam.OpenIdConnectProvider(f"{name}-vault", url=tokens.issuer_url, client_id_lists=[tokens.audience],
                                                     tags=managed_by(), opts=on_aws)
        return pulumi.Output.all(vault_issuer.arn, tokens.audience).apply(
            lambda a: json.dumps(web_identity_trust(a[0], tokens.issuer_url, {"aud": a[1]})))


def pulumi_cloud_credential(project_path: str, gitlab_url: str) -> Credential:
    """The team tokens the pipeline's Pulumi jobs exchange their ID tokens for (`pulumi login --oidc-token`)."""
    return Credential(
        what="Pulumi Cloud team tokens of the platform pipeline",
        category="federated",
        issuer=f"Pulumi Cloud, trusting {gitlab_url} as an OIDC issuer (ID tokens with aud urn:pulumi:org:<org>)",
        holder=f"the Pulumi jobs of {project_path}",
        scope="platform-preview-<stack>: read that stack (main, and merge requests a maintainer runs in the protected "
              "environment preview/<stack>); platform-deploy: write them (main)",
        lifetime_seconds=PULUMI_TOKEN_SECONDS,
        lifetime="two hours (rebuild-dev: four)",
        rotation="each job exchanges its own ID token",
    )
