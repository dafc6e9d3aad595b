"""AWS pieces the services share on EKS: workload identity (IRSA) and private S3 buckets.

One trust-policy builder serves every role that a token of an OIDC issuer assumes: a
service account of an EKS cluster (IRSA) or a GitLab CI job (components/ci_identity.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.inventory import HOUR, Credential
from policy.labels import managed_by

STS_AUDIENCE = "sts.amazonaws.com"


@dataclass(frozen=True)
class AwsWorkloadIdentity:
    """On EKS: what a component needs to create an IAM role for a Kubernetes service account."""

    provider: pulumi.ProviderResource  # the aws.Provider of the control-plane cluster
    oidc_provider_arn: pulumi.Output[str]
    oidc_issuer_url: pulumi.Output[str]
    region: str


def service_trust(service: str) -> dict[str, Any]:
    """A trust policy that lets an AWS service (`ec2.amazonaws.com`, `s3.amazonaws.com`) assume the role."""
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]}


def web_identity_trust(
    provider_arn: str, issuer_url: str, equals: dict[str, str], like: dict[str, str] | None = None
) -> dict[str, Any]:
    """A trust policy for tokens of `issuer_url` whose claims equal (or match, `like`) the given values."""
    host = issuer_url.removeprefix("https://")  # IAM's condition keys are <host>:<claim>
    condition = {"StringEquals": {f"{host}:{claim}": value for claim, value in equals.items()}}
    if like:
        condition["StringLike"] = {f"{host}:{claim}": value for claim, value in like.items()}
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": condition,
            }
        ],
    }


def service_account_trust(identity: AwsWorkloadIdentity, namespace: str, service_account: str) -> pulumi.Output[str]:
    """A trust policy letting exactly one Kubernetes service account assume a role (IRSA)."""
    subject = f"system:serviceaccount:{namespace}:{service_account}"
    return pulumi.Output.all(identity.oidc_provider_arn, identity.oidc_issuer_url).apply(
        lambda a: json.dumps(web_identity_trust(a[0], a[1], {"sub": subject, "aud": STS_AUDIENCE}))
    )


# The KMS keys whose loss takes the history with it (the backups', Vault's unseal key, the data stores'): on a
# protected stack they carry this tag, and the deploy role may not delete, disable, re-policy or re-tag a key
# that does (components/ci_identity.py). An unprotected stack's destroy still deletes them.
HISTORY_TAG = "platform.io/keeps-history"


def history_key_tags(protect: bool) -> dict[str, str]:
    return {HISTORY_TAG: "true"} if protect else {}


def irsa_credential(role: str, account: str, cluster: str, scope: str) -> Credential:
    """The inventory entry of the AWS sessions a service account gets through `role`."""
    return Credential(
        what=f"AWS sessions of {account} (IRSA)",
        category="federated",
        issuer=f"AWS STS, trusting the {cluster} cluster's OIDC issuer",
        holder=f"service account {account} on {cluster}",
        scope=scope,
        lifetime_seconds=HOUR,
        rotation="the AWS SDK assumes the role again with the projected token",
        resources=(role,),
    )


def bucket_name(hostname: str, suffix: str) -> str:
    """A stable, globally unique-enough S3 bucket name derived from the service's hostname."""
    name = f"{hostname.replace('.', '-')}-{suffix}"
    if len(name) > 63:
        raise ValueError(f"S3 bucket name {name!r} is longer than 63 characters; use a shorter hostname")
    return name


def private_bucket(
    name: str, bucket: str, identity: AwsWorkloadIdentity, protect: bool, parent: pulumi.Resource,
    kms_key_arn: pulumi.Input[str] | None = None, object_lock: bool = False,
) -> aws.s3.Bucket:
    """An S3 bucket that is encrypted, owner-only, TLS-only and never public; protected when asked.

    `kms_key_arn`: encrypted with that KMS key instead of S3's own keys. `object_lock`: created
    with Object Lock enabled (only possible at creation) and versioned, as Object Lock requires.
    """
    opts = pulumi.ResourceOptions(parent=parent, provider=identity.provider)
    created = aws.s3.Bucket(
        name,
        bucket=bucket,
        force_destroy=False,
        object_lock_enabled=object_lock or None,
        tags=managed_by(),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(protect=protect)),
    )
    aws.s3.BucketPublicAccessBlock(
        name,
        bucket=created.bucket,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=opts,
    )
    aws.s3.BucketOwnershipControls(
        name,
        bucket=created.bucket,
        rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
        opts=opts,
    )
    aws.s3.BucketServerSideEncryptionConfiguration(
        name,
        bucket=created.bucket,
        rules=[
            aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="aws:kms" if kms_key_arn is not None else "AES256", kms_master_key_id=kms_key_arn
                ),
                bucket_key_enabled=True,
            )
        ],
        opts=opts,
    )
    aws.s3.BucketPolicy(name, bucket=created.bucket, policy=created.bucket.apply(_tls_only_policy), opts=opts)
    if object_lock:
        aws.s3.BucketVersioning(
            name,
            bucket=created.bucket,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
            opts=opts,
        )
    return created


def bucket_role(
    name: str,
    identity: AwsWorkloadIdentity,
    namespace: str,
    service_account: str,
    buckets: list[pulumi.Output[str]],
    parent: pulumi.Resource,
) -> aws.iam.Role:
    """An IAM role that one Kubernetes service account assumes (IRSA), allowed into `buckets` only."""
    return workload_role(name, identity, namespace, service_account, pulumi.Output.all(*buckets).apply(_bucket_policy), parent)


def workload_role(
    name: str,
    identity: AwsWorkloadIdentity,
    namespace: str,
    service_account: str,
    policy: pulumi.Input[str],
    parent: pulumi.Resource,
) -> aws.iam.Role:
    """An IAM role that one Kubernetes service account assumes (IRSA), with one inline `policy`."""
    opts = pulumi.ResourceOptions(parent=parent, provider=identity.provider)
    role = aws.iam.Role(
        name, assume_role_policy=service_account_trust(identity, namespace, service_account), tags=managed_by(), opts=opts
    )
    aws.iam.RolePolicy(name, role=role.name, policy=policy, opts=opts)
    return role


def _tls_only_policy(bucket: str) -> str:
    """S3 answers plain HTTP unless the bucket's policy refuses it."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyWithoutTls",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )


def _bucket_policy(buckets: list[str]) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
                    "Resource": [f"arn:aws:s3:::{b}" for b in buckets],
                },
                {
                    "Effect": "Allow",
                    "Action": [
                        "s3:GetObject",
                        "s3:PutObject",
                        "s3:DeleteObject",
                        "s3:AbortMultipartUpload",
                        "s3:ListMultipartUploadParts",
                    ],
                    "Resource": [f"arn:aws:s3:::{b}/*" for b in buckets],
                },
            ],
        }
    )
