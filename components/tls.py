"""cert-manager and the issuer of the platform's certificates.

On kubeconfig clusters the platform is its own CA: a root generated with pulumi-tls (key
a Pulumi secret) behind a ClusterIssuer, and its certificate is the bundle every client
trusts. On EKS, certificates come from ACME through Route 53 DNS-01, cert-manager
reaching Route 53 with workload identity; they chain to public roots, so the bundle is
empty and clients use their system trust store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_tls as tls

from components.aws import AwsWorkloadIdentity, irsa_credential, service_account_trust
from components.cluster import ClusterHandle
from components.helm import namespace
from components.inventory import STATE, Credential, CredentialInventory, cert_manager_certificate, external_secret, program_certificate
from components.service import (
    WORKLOAD_CLUSTERS,
    CertificateAuthority,
    ClusterParts,
    ControlPlaneParts,
    PlatformNamespace,
    ServiceSettings,
    ServiceSlice,
)

NAMESPACE = "cert-manager"
SERVICE_ACCOUNT = "cert-manager"
ACME_ACCOUNT_SECRET = "platform-acme-account"
CERTIFICATE_LIFETIME_DAYS = 90  # cert-manager's default duration (2160h); ACME certificates: 90 days too


@dataclass(frozen=True)
class AcmeArgs:
    email: str
    server: str
    hosted_zone_id: str
    aws: AwsWorkloadIdentity


@dataclass(frozen=True)
class PlatformTlsArgs:
    domain: str
    settings: ServiceSettings  # chart version, sizing
    acme: AcmeArgs | None = None  # None: a private root CA
    ca_validity_hours: int = 5 * 365 * 24
    inventory: CredentialInventory = field(default_factory=CredentialInventory)
    # Without ACME on a workload cluster: its CA is an intermediate this root signs, so its
    # certificates chain to the one bundle every client trusts.
    signer: CertificateAuthority | None = None
    cluster: str = "control-plane"  # where it runs, for the credential inventory
    # With ACME: the names under which this cert-manager may write challenge records (default: domain).
    challenge_domain: str | None = None

    @property
    def challenges_under(self) -> str:
        """Where this cert-manager's ACME challenge records go."""
        return self.challenge_domain or self.domain


class PlatformTls(pulumi.ComponentResource):
    """cert-manager plus the `ClusterIssuer` named `issuer_name`."""

    release: k8s.helm.v3.Release
    issuer_name: str
    ca_bundle: pulumi.Output[str]
    authority: CertificateAuthority | None = None  # the root, where this is the platform's own CA

    def __init__(self, name: str, cluster: ClusterHandle, args: PlatformTlsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:tls:PlatformTls", name, None, opts)
        ns = namespace(SLICE.namespace, cluster, self)
        args.inventory.register(*credentials(name, args))
        role = _route53_role(name, args.acme, args.challenges_under, self) if args.acme else None
        values: dict = {"crds": {"enabled": True, "keep": True}, "replicaCount": 2}
        if role is not None:
            values["serviceAccount"] = {"annotations": {"eks.amazonaws.com/role-arn": role.arn}}
            # The projected web-identity token must be readable by the controller's user.
            values["securityContext"] = {"runAsNonRoot": True, "fsGroup": 1001, "seccompProfile": {"type": "RuntimeDefault"}}
        self.release = SLICE.release(cluster, self, args.settings, values, "", "webhook", "cainjector", "startupapicheck", ns=ns)
        after_crds = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[self.release])

        if args.acme is not None:
            self.issuer_name = "platform-acme"
            self.ca_bundle = pulumi.Output.from_input("")
            spec = {
                "acme": {
                    "email": args.acme.email,
                    "server": args.acme.server,
                    "privateKeySecretRef": {"name": ACME_ACCOUNT_SECRET},
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
            if args.signer is None:
                certificate: tls.SelfSignedCert | tls.LocallySignedCert = tls.SelfSignedCert(
                    f"{name}-ca",
                    private_key_pem=key.private_key_pem,
                    is_ca_certificate=True,
                    validity_period_hours=args.ca_validity_hours,
                    early_renewal_hours=30 * 24,
                    allowed_uses=["cert_signing", "crl_signing", "digital_signature"],
                    subject=tls.SelfSignedCertSubjectArgs(common_name=f"{args.domain} platform CA", organization="platform-bootstrap"),
                    opts=pulumi.ResourceOptions(parent=self),
                )
                self.authority = CertificateAuthority(key.private_key_pem, certificate.cert_pem)
                root, chain = certificate.cert_pem, certificate.cert_pem
            else:
                certificate = _intermediate(name, key, args, self)
                root = args.signer.cert_pem
                chain = pulumi.Output.concat(certificate.cert_pem, root)  # cert-manager serves the chain
            self.ca_bundle = root
            secret = k8s.core.v1.Secret(
                f"{name}-ca",
                metadata=k8s.meta.v1.ObjectMetaArgs(name="platform-ca", namespace=NAMESPACE),
                type="kubernetes.io/tls",
                string_data={"tls.crt": chain, "tls.key": key.private_key_pem, "ca.crt": root},
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


INTERMEDIATE_VALIDITY_HOURS = 365 * 24


def _intermediate(name: str, key: tls.PrivateKey, args: PlatformTlsArgs, parent: pulumi.Resource) -> tls.LocallySignedCert:
    """A workload cluster's CA, signed by the platform root (`args.signer`); renewed 30 days before it expires."""
    assert args.signer is not None
    request = tls.CertRequest(
        f"{name}-ca",
        private_key_pem=key.private_key_pem,
        subject=tls.CertRequestSubjectArgs(common_name=f"{args.domain} {args.cluster} CA", organization="platform-bootstrap"),
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return tls.LocallySignedCert(
        f"{name}-ca",
        cert_request_pem=request.cert_request_pem,
        ca_private_key_pem=args.signer.key_pem,
        ca_cert_pem=args.signer.cert_pem,
        is_ca_certificate=True,
        validity_period_hours=INTERMEDIATE_VALIDITY_HOURS,
        early_renewal_hours=30 * 24,
        allowed_uses=["cert_signing", "crl_signing", "digital_signature"],
        opts=pulumi.ResourceOptions(parent=parent),
    )


def credentials(name: str, args: PlatformTlsArgs) -> list[Credential]:
    """What the platform's certificates rest on: the ACME account (and its Route 53 role) or the CA key."""
    on = "" if args.cluster == "control-plane" else f" on {args.cluster}"
    issued = cert_manager_certificate(
        f"TLS certificates of the platform's names{on}",
        issuer=f"cert-manager{on} (the platform ClusterIssuer)",
        holder="Traefik (ingress certificates)",
        scope="authenticate the service's hostname to clients",
        days=CERTIFICATE_LIFETIME_DAYS,
    )
    if args.acme is None and args.signer is not None:
        return [issued, program_certificate(
            f"intermediate CA key{on}",
            signed="signed by the platform CA",
            holder=f"cert-manager{on} (Secret {NAMESPACE}/platform-ca) and {STATE}",
            scope=f"signs the TLS certificates of the names served{on}; never presented to anyone",
            hours=INTERMEDIATE_VALIDITY_HOURS,
            rotation="re-signed by `pulumi up` 30 days before it expires (the key is kept); clients trust the root",
            category="signing-key",
            resources=(f"{name}-ca",),
        )]
    if args.acme is None:
        return [issued, program_certificate(
            f"platform CA key{on}",
            signed="self-signed root",
            holder=f"cert-manager{on} (Secret {NAMESPACE}/platform-ca) and {STATE}",
            scope="signs the platform's TLS certificates; never presented to anyone",
            hours=args.ca_validity_hours,
            rotation="re-created by `pulumi up` 30 days before it expires; clients take the new caBundle output",
            category="signing-key",
            resources=(f"{name}-ca",),
        )]
    route53 = irsa_credential(
        f"{name}-route53", f"{NAMESPACE}/{SERVICE_ACCOUNT}", args.cluster,
        f"ACME challenge TXT records under {args.challenges_under} in the platform's hosted zone",
    )
    return [issued, replace(route53, what=f"{route53.what}{on}"), external_secret(
        f"ACME account key{on}",
        issuer="the ACME server (platform:dns.acmeServer)",
        holder=f"cert-manager{on} (Secret {NAMESPACE}/{ACME_ACCOUNT_SECRET})",
        scope="order and revoke certificates for the platform's names (DNS-01 proves control)",
        lifetime="as long as the ACME server keeps the account (no expiry)",
        rotation="delete the Secret: cert-manager registers a new account",
    )]


def declare(parts: ControlPlaneParts, settings: ServiceSettings) -> PlatformTls:
    public = parts.public_dns
    return PlatformTls(
        "platform-tls",
        parts.cluster,
        PlatformTlsArgs(
            domain=parts.settings.domain,
            settings=settings,
            acme=AcmeArgs(public.acme.email, public.acme.server, public.acme.hosted_zone_id, public.aws) if public else None,
            inventory=parts.inventory,
        ),
    )


def on_cluster(parts: ClusterParts, settings: ServiceSettings) -> PlatformTls:
    """cert-manager and the platform issuer on a workload cluster: ACME DNS-01 through its own
    IAM role on EKS with platform:dns, else an intermediate of the control plane's CA."""
    identity, acme = parts.cluster.aws_identity, parts.acme
    return PlatformTls(
        f"{parts.cluster.role}-platform-tls",
        parts.cluster,
        PlatformTlsArgs(
            domain=parts.domain,
            settings=settings,
            acme=AcmeArgs(acme.email, acme.server, acme.hosted_zone_id, identity) if acme and identity else None,
            inventory=parts.inventory,
            signer=parts.ca,
            cluster=parts.cluster.role,
            challenge_domain=cluster_domain(parts.cluster.role, parts.domain),
        ),
    )


SLICE: ServiceSlice[PlatformTls] = ServiceSlice(
    key="cert_manager",
    namespace=PlatformNamespace(NAMESPACE, "certificate issuance"),
    chart="cert-manager",
    declare=declare,
    # On the workload clusters too: their ingress and metrics-server certificates (declared after
    # the control plane, whose CA signs theirs on kubeconfig stacks).
    on_cluster=on_cluster,
    clusters=WORKLOAD_CLUSTERS,
)


def cluster_domain(cluster: str, domain: str) -> str:
    """The names a workload cluster serves (its ingress wildcard) sit under this one."""
    return f"{cluster}.{domain}"


def _route53_role(name: str, acme: AcmeArgs, challenge_domain: str, parent: pulumi.Resource) -> aws.iam.Role:
    """An IAM role cert-manager assumes with its service-account token: DNS-01 TXT records under
    `challenge_domain` in one hosted zone, so a taken-over cert-manager can neither point the
    platform's names elsewhere nor prove names its cluster does not serve."""
    opts = pulumi.ResourceOptions(parent=parent, provider=acme.aws.provider)
    role = aws.iam.Role(
        f"{name}-route53",
        assume_role_policy=service_account_trust(acme.aws, NAMESPACE, SERVICE_ACCOUNT),
        opts=opts,
    )
    zone = f"arn:aws:route53:::hostedzone/{acme.hosted_zone_id}"
    challenges = [f"_acme-challenge.{challenge_domain}", f"_acme-challenge.*.{challenge_domain}"]
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
                        "Action": "route53:ChangeResourceRecordSets",
                        "Resource": zone,
                        # Route 53's condition keys for the records a change touches (all must match).
                        "Condition": {
                            "ForAllValues:StringEquals": {"route53:ChangeResourceRecordSetsRecordTypes": ["TXT"]},
                            "ForAllValues:StringLike": {"route53:ChangeResourceRecordSetsNormalizedRecordNames": challenges},
                        },
                    },
                    {"Effect": "Allow", "Action": "route53:ListResourceRecordSets", "Resource": zone},
                    {"Effect": "Allow", "Action": "route53:ListHostedZonesByName", "Resource": "*"},
                ],
            }
        ),
        opts=opts,
    )
    return role
