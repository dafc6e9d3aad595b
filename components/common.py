"""Small typed values the service components share."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pulumi
import pulumi_tls as tls
import pulumiverse_time as time


@dataclass(frozen=True)
class Exposure:
    """How a service is published: its hostname behind the platform's ingress, with a platform certificate."""

    hostname: str
    ingress_class: str
    cluster_issuer: str  # cert-manager ClusterIssuer that signs the certificate
    ca_bundle: pulumi.Output[str]  # PEM bundle clients must trust for it (the platform CA)

    @property
    def url(self) -> str:
        return f"https://{self.hostname}"


@dataclass(frozen=True)
class OidcClient:
    """A relying party of OpenUnison. The secret is generated once and handed to both sides."""

    client_id: str
    client_secret: pulumi.Output[str]  # a Pulumi secret
    issuer_url: str  # OpenUnison's issuer
    scopes: tuple[str, ...] = ("openid", "email", "profile", "groups")


@dataclass(frozen=True)
class PlatformGroups:
    """The platform-wide groups of the upstream identity source."""

    cluster_admins: list[str]
    system_approvers: list[str]


@dataclass(frozen=True)
class AwsWorkloadIdentity:
    """On EKS: what a component needs to create an IAM role for a Kubernetes service account."""

    provider: pulumi.ProviderResource  # the aws.Provider of the control-plane cluster
    oidc_provider_arn: pulumi.Output[str]
    oidc_issuer_url: pulumi.Output[str]
    region: str


def web_identity_policy(identity: AwsWorkloadIdentity, namespace: str, service_account: str) -> pulumi.Output[str]:
    """A trust policy letting exactly one Kubernetes service account assume a role (IRSA)."""
    issuer = identity.oidc_issuer_url.apply(lambda url: url.removeprefix("https://"))
    return pulumi.Output.all(identity.oidc_provider_arn, issuer).apply(
        lambda a: json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Federated": a[0]},
                        "Action": "sts:AssumeRoleWithWebIdentity",
                        "Condition": {
                            "StringEquals": {
                                f"{a[1]}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                                f"{a[1]}:aud": "sts.amazonaws.com",
                            }
                        },
                    }
                ],
            }
        )
    )


def checksum(secret: pulumi.Input[str]) -> pulumi.Output[str]:
    """SHA-256 of a secret, for annotations that make its readers reload when it changes.

    Plain on purpose, as Helm's `checksum/...` annotations are: the hash of a value holding 48
    random characters reveals nothing, while one secret value inside `metadata` or Helm
    `values` would make the SDK send that whole property as a secret (unreadable in diffs
    and in the plan).
    """
    return pulumi.Output.unsecret(
        pulumi.Output.from_input(secret).apply(lambda value: hashlib.sha256(value.encode()).hexdigest())
    )


def rotated_key(
    name: str, rotation: time.Rotating, parent: pulumi.Resource, algorithm: str = "ED25519", ecdsa_curve: str | None = None
) -> tls.PrivateKey:
    """A key pair that is replaced whenever `rotation` starts a new period (`pulumi up --refresh`).

    The key has no input that could change, so the rotation's timestamp is its replacement
    trigger: a new timestamp means a new key pair, and everything built from the key changes
    in the same run.
    """
    return tls.PrivateKey(
        name,
        algorithm=algorithm,
        ecdsa_curve=ecdsa_curve,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[rotation], replacement_trigger=rotation.rfc3339),
    )
