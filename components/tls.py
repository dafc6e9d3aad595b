"""cert-manager and the issuer of the platform's certificates.

On kubeconfig clusters the platform is its own CA: a root generated with pulumi-tls (key
a Pulumi secret) behind a ClusterIssuer on the control plane, and its certificate is the
bundle every client trusts. The workload clusters keep no key of it, nor a CA the root signs:
every pod there that reads every Secret (their internet-facing Traefik among them) would hold
it, and a CA under the root signs any name the platform's clients accept. The program signs
what they serve with the root itself (`signed_tls_secret`: their wildcard, components/workload_ingress.py).
On EKS, certificates come from ACME through Route 53 DNS-01, cert-manager reaching Route 53
with workload identity; they chain to public roots, so the bundle is empty and clients use
their system trust store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumiverse_time as time
import pulumi_tls as tls

from components.aws import AwsWorkloadIdentity, irsa_credential, service_account_trust
from components.cluster import ClusterHandle
from components.common import rotated_key
from components import alerting
from components.egress import HTTPS, Reach, admit, hold_namespace_egress, hold_webhook, internet, internet_dns
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
CONTROLLER_LABELS = {"app.kubernetes.io/name": "cert-manager", "app.kubernetes.io/component": "controller"}  # the chart's controller pods
WEBHOOK_PORT = 10250  # the webhook's `https` container port (the chart's `webhook.securePort`)
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
    # Without ACME on a workload cluster: the platform root, whose key stays out of the cluster. No CA and
    # no ClusterIssuer there: what the cluster serves, the program signs with it (`signed_tls_secret`).
    signer: CertificateAuthority | None = None
    cluster: str = "control-plane"  # where it runs, for the credential inventory
    # With ACME: the names under which this cert-manager may write challenge records (default: domain).
    challenge_domain: str | None = None

    @property
    def challenges_under(self) -> str:
        """Where this cert-manager's ACME challenge records go."""
        return self.challenge_domain or self.domain


class PlatformTls(pulumi.ComponentResource):
    """cert-manager plus the `ClusterIssuer` named `issuer_name` (none on a workload cluster without ACME)."""

    release: k8s.helm.v3.Release
    issuer_name: str | None
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
        opts = pulumi.ResourceOptions(parent=self, provider=cluster.provider)
        # Its pods' egress: their API server (and with ACME, ACME's calls). Inbound, the webhook's port from anywhere
        # and the controller's metrics port from the platform Prometheus alone (the certificate alerts).
        held = [hold_webhook(name, ns, WEBHOOK_PORT, opts), admit(name, ns, alerting.scrape_admit(alerting.CERT_MANAGER.pods, alerting.CERT_MANAGER.port), opts),
                *hold_namespace_egress(name, ns, cluster.api_server, _acme_egress() if args.acme else [], opts)]
        self.release = SLICE.release(cluster, self, args.settings, values, "", "webhook", "cainjector", "startupapicheck", ns=ns,
                                     depends_on=held)
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
        elif args.signer is not None:
            self.issuer_name, self.ca_bundle = None, args.signer.cert_pem
            self.register_outputs({"caBundle": self.ca_bundle})
            return
        else:
            self.issuer_name = "platform-ca"
            self.authority = self_signed_ca(f"{name}-ca", f"{args.domain} platform CA", args.ca_validity_hours, self)
            self.ca_bundle = root = self.authority.cert_pem
            secret = k8s.core.v1.Secret(
                f"{name}-ca",
                metadata=k8s.meta.v1.ObjectMetaArgs(name="platform-ca", namespace=NAMESPACE),
                type="kubernetes.io/tls",
                string_data={"tls.crt": root, "tls.key": self.authority.key_pem, "ca.crt": root},
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


def self_signed_ca(name: str, common_name: str, hours: int, parent: pulumi.Resource) -> CertificateAuthority:
    """A CA of the program's (pulumi-tls, `name`): its key a Pulumi secret, the certificate re-created 30 days before it expires."""
    key = tls.PrivateKey(name, algorithm="ECDSA", ecdsa_curve="P256", opts=pulumi.ResourceOptions(parent=parent))
    certificate = tls.SelfSignedCert(
        name,
        private_key_pem=key.private_key_pem,
        is_ca_certificate=True,
        validity_period_hours=hours,
        early_renewal_hours=30 * 24,
        allowed_uses=["cert_signing", "crl_signing", "digital_signature"],
        subject=tls.SelfSignedCertSubjectArgs(common_name=common_name, organization="platform-bootstrap"),
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return CertificateAuthority(key.private_key_pem, certificate.cert_pem)


SERVING_DAYS = CERTIFICATE_LIFETIME_DAYS  # a serving certificate the program signs
SERVING_RENEWAL_DAYS = 45  # re-signed, with a new key, by the first `pulumi up --refresh` after half its life
SERVING_ROTATION = f"a new key and certificate by the first `pulumi up --refresh` {SERVING_RENEWAL_DAYS} days after the last"


@dataclass(frozen=True)
class ServingCertificate:
    """A serving certificate the program signs: its Secret's name and namespace, and its names."""

    secret_name: str
    namespace: str
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...] = ()


def signed_tls_secret(
    name: str, signer: CertificateAuthority, certificate: ServingCertificate, opts: pulumi.ResourceOptions
) -> k8s.core.v1.Secret:
    """`certificate` signed by `signer` (no object of this Secret's cluster holds its key) in a kubernetes.io/tls Secret: tls.crt,
    tls.key and the signer's certificate as ca.crt. Its key is replaced and the certificate re-signed every
    SERVING_RENEWAL_DAYS (`pulumi up --refresh`), well before its SERVING_DAYS end. `opts`: the Secret's (parent,
    provider, what it waits for); the pulumi-tls resources take its parent."""
    assert opts.parent is not None
    in_program = pulumi.ResourceOptions(parent=opts.parent)
    rotation = time.Rotating(f"{name}-rotation", rotation_days=SERVING_RENEWAL_DAYS, opts=in_program)
    key = rotated_key(f"{name}-key", rotation, opts.parent, "ECDSA", "P256")
    request = tls.CertRequest(
        name,
        private_key_pem=key.private_key_pem,
        dns_names=list(certificate.dns_names),
        ip_addresses=list(certificate.ip_addresses),
        subject=tls.CertRequestSubjectArgs(common_name=certificate.dns_names[0], organization="platform-bootstrap"),
        opts=in_program,
    )
    signed = tls.LocallySignedCert(
        name,
        cert_request_pem=request.cert_request_pem,
        ca_private_key_pem=signer.key_pem,
        ca_cert_pem=signer.cert_pem,
        validity_period_hours=SERVING_DAYS * 24,
        early_renewal_hours=(SERVING_DAYS - SERVING_RENEWAL_DAYS) * 24,
        allowed_uses=["digital_signature", "server_auth"],
        opts=in_program,
    )
    return k8s.core.v1.Secret(
        name,
        metadata=k8s.meta.v1.ObjectMetaArgs(name=certificate.secret_name, namespace=certificate.namespace),
        type="kubernetes.io/tls",
        string_data={"tls.crt": signed.cert_pem, "tls.key": key.private_key_pem, "ca.crt": signer.cert_pem},
        opts=opts,
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
        return []  # no issuer here: the program signs what the cluster serves (its wildcard's own entry)
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
        f"ACME challenge TXT records under {args.challenges_under} in its hosted zone",
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
    IAM role on EKS with platform:dns (in the zone of the domain it serves, platform:appsDomain's), else
    cert-manager alone (the program signs the cluster's wildcard)."""
    identity, acme = parts.cluster.aws_identity, parts.acme
    return PlatformTls(
        f"{parts.cluster.role}-platform-tls",
        parts.cluster,
        PlatformTlsArgs(
            domain=parts.served_domain,
            settings=settings,
            acme=AcmeArgs(acme.email, acme.server, acme.hosted_zone_id, identity) if acme and identity else None,
            inventory=parts.inventory,
            signer=parts.ca,
            cluster=parts.cluster.role,
            challenge_domain=cluster_domain(parts.cluster.role, parts.served_domain),
        ),
    )


def _acme_egress() -> list[Reach]:
    """With ACME, the controller also reaches the ACME server, Route 53 and STS (HTTPS on the internet: the challenge
    records through its IRSA role) and, for DNS-01's self check, the zone's authoritative nameservers directly (UDP and
    TCP 53: "cert-manager will use the recursive nameservers ... to query for the authoritative nameservers, which it
    will then query directly", cert-manager.io/docs/configuration/acme/dns01 "Setting Nameservers for DNS01 Self Check").
    The cainjector, the webhook and the startup check call the API server alone."""
    return [Reach("acme", CONTROLLER_LABELS, [internet([HTTPS]), internet_dns()])]


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
