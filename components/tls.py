"""cert-manager and the issuer of the platform's certificates.

On kubeconfig clusters the platform is its own CA: a root generated with pulumi-tls (key
a Pulumi secret) behind a ClusterIssuer, and its certificate is the bundle every client
trusts. On EKS, certificates come from ACME through Route 53 DNS-01, cert-manager
reaching Route 53 with workload identity; they chain to public roots, so the bundle is
empty and clients use their system trust store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_tls as tls

from components.cluster import ClusterHandle
from components.aws import AwsWorkloadIdentity, service_account_trust
from components.helm import namespace, release

NAMESPACE = "cert-manager"
SERVICE_ACCOUNT = "cert-manager"


@dataclass(frozen=True)
class AcmeArgs:
    email: str
    server: str
    hosted_zone_id: str
    aws: AwsWorkloadIdentity


@dataclass(frozen=True)
class PlatformTlsArgs:
    domain: str
    acme: AcmeArgs | None = None  # None: a private root CA
    chart_version: str | None = None
    ca_validity_hours: int = 5 * 365 * 24


class PlatformTls(pulumi.ComponentResource):
    """cert-manager plus the `ClusterIssuer` named `issuer_name`."""

    release: k8s.helm.v3.Release
    issuer_name: str
    ca_bundle: pulumi.Output[str]

    def __init__(self, name: str, cluster: ClusterHandle, args: PlatformTlsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:tls:PlatformTls", name, None, opts)
        ns = namespace(NAMESPACE, cluster, self)
        role = _route53_role(name, args.acme, self) if args.acme else None
        values: dict = {"crds": {"enabled": True, "keep": True}, "replicaCount": 2}
        if role is not None:
            values["serviceAccount"] = {"annotations": {"eks.amazonaws.com/role-arn": role.arn}}
            # The projected web-identity token must be readable by the controller's user.
            values["securityContext"] = {"runAsNonRoot": True, "fsGroup": 1001, "seccompProfile": {"type": "RuntimeDefault"}}
        self.release = release("cert-manager", "cert-manager", ns, values, cluster, self, version=args.chart_version)
        after_crds = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[self.release])

        if args.acme is not None:
            self.issuer_name = "platform-acme"
            self.ca_bundle = pulumi.Output.from_input("")
            spec = {
                "acme": {
                    "email": args.acme.email,
                    "server": args.acme.server,
                    "privateKeySecretRef": {"name": "platform-acme-account"},
                    "solvers": [
                        {
                            "selector": {"dnsZones": [args.domain]},
                            "dns01": {"route53": {"region": args.acme.aws.region, "hostedZoneID": args.acme.hosted_zone_id}},
                        }
                    ],
                }
            }
        else:
            self.issuer_name = "platform-ca"
            key = tls.PrivateKey(f"{name}-ca", algorithm="ECDSA", ecdsa_curve="P256", opts=pulumi.ResourceOptions(parent=self))
            certificate = tls.SelfSignedCert(
                f"{name}-ca",
                private_key_pem=key.private_key_pem,
                is_ca_certificate=True,
                validity_period_hours=args.ca_validity_hours,
                early_renewal_hours=30 * 24,
                allowed_uses=["cert_signing", "crl_signing", "digital_signature"],
                subject=tls.SelfSignedCertSubjectArgs(common_name=f"{args.domain} platform CA", organization="platform-bootstrap"),
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.ca_bundle = certificate.cert_pem
            secret = k8s.core.v1.Secret(
                f"{name}-ca",
                metadata=k8s.meta.v1.ObjectMetaArgs(name="platform-ca", namespace=NAMESPACE),
                type="kubernetes.io/tls",
                string_data={"tls.crt": certificate.cert_pem, "tls.key": key.private_key_pem, "ca.crt": certificate.cert_pem},
                opts=pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[ns]),
            )
            spec = {"ca": {"secretName": "platform-ca"}}
            after_crds = pulumi.ResourceOptions.merge(after_crds, pulumi.ResourceOptions(depends_on=[secret]))

        k8s.apiextensions.CustomResource(
            f"{name}-issuer",
            api_version="cert-manager.io/v1",
            kind="ClusterIssuer",
            metadata={"name": self.issuer_name},
            spec=spec,
            opts=after_crds,
        )
        self.register_outputs({"issuerName": self.issuer_name, "caBundle": self.ca_bundle})


def _route53_role(name: str, acme: AcmeArgs, parent: pulumi.Resource) -> aws.iam.Role:
    """An IAM role cert-manager assumes with its service-account token, scoped to one hosted zone."""
    opts = pulumi.ResourceOptions(parent=parent, provider=acme.aws.provider)
    role = aws.iam.Role(
        f"{name}-route53",
        assume_role_policy=service_account_trust(acme.aws, NAMESPACE, SERVICE_ACCOUNT),
        opts=opts,
    )
    aws.iam.RolePolicy(
        f"{name}-route53",
        role=role.id,
        policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "route53:GetChange", "Resource": "arn:aws:route53:::change/*"},
                    {
                        "Effect": "Allow",
                        "Action": ["route53:ChangeResourceRecordSets", "route53:ListResourceRecordSets"],
                        "Resource": f"arn:aws:route53:::hostedzone/{acme.hosted_zone_id}",
                    },
                    {"Effect": "Allow", "Action": "route53:ListHostedZonesByName", "Resource": "*"},
                ],
            }
        ),
        opts=opts,
    )
    return role
