"""A "management" kube-oidc-proxy on a cluster whose API server does not trust OpenUnison.

Modelled on the management proxy OpenUnison deploys itself (OpenUnison/helm-charts orchestra
`templates/infrastructure/mgmt-proxy.yaml`, same image): the proxy accepts OpenUnison's
`remotek8s` tokens for one audience and forwards each request to its own API server,
impersonating the token's user, which may only be the federated ArgoCD user.

Declared object by object rather than through a chart: OpenUnison ships this proxy only inside
orchestra (next to a running OpenUnison, which the workload clusters do not have), its
`orchestra-kube-oidc-proxy` chart needs OpenUnison's own Secrets and service account, and the
standalone kube-oidc-proxy chart would generate a throwaway certificate unless overridden.

TLS: the proxy serves a self-signed certificate made with pulumi-tls for its hostname. Its key
lives in Pulumi state as a secret and in this namespace's TLS Secret, nowhere else; no CA key
is involved (the platform CA's stays in components/tls.py), no cert-manager is needed on the
workload cluster, and ArgoCD's cluster Secret pins exactly this certificate as `caData`, so
the certificate of one cluster's proxy is worthless for any other. Rotation is a `pulumi up`:
the certificate lives at most 90 days and is re-issued from half its life on (pulumi-tls's
early renewal); ArgoCD's Secret and OpenUnison's Target pin the new one in the same run, and
the pods restart on its checksum rather than trusting the proxy to reload its files. The key
pair is kept across renewals (replace `<name>-key` to change it).

Exposure: a LoadBalancer Service straight to the proxy, TLS end to end. An Ingress would end
TLS at an ingress controller (the workload clusters have none) and would have to re-encrypt
to the proxy; the bearer tokens should be decrypted by the proxy only.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s
import pulumi_tls as tls

from components.cluster import ClusterHandle
from components.helm import namespace
from components.inventory import HOUR, Credential, CredentialInventory
from components.versions import KUBE_OIDC_PROXY_IMAGE

NAMESPACE = "kube-oidc-proxy"  # exempt from Gatekeeper's webhook (policy/gatekeeper)
NAME = "kube-oidc-proxy"
TLS_SECRET = "kube-oidc-proxy-tls"
ISSUER_CA_CONFIG_MAP = "kube-oidc-proxy-issuer-ca"
SECURE_PORT = 8443
HEALTH_PORT = 8080
SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"  # in the image: for public issuers
_UID = 10001  # as OpenUnison runs it
MAX_CERTIFICATE_VALIDITY_HOURS = 90 * 24  # a serving certificate between systems: at most 90 days
# On the pod template: the pods restart when their certificate is re-issued.
CERTIFICATE_CHECKSUM_ANNOTATION = "platform.io/serving-certificate-checksum"


@dataclass(frozen=True)
class KubeOidcProxyArgs:
    hostname: str  # DNS name the control plane reaches the proxy at (its certificate's name)
    issuer_url: str  # OpenUnison's remotek8s issuer
    audience: str  # this cluster's OpenUnison target name: the only audience accepted
    username_prefix: str
    impersonable_users: list[str]  # who the proxy may act as: the federated user(s)
    issuer_ca_bundle: pulumi.Output[str]  # PEM that signs the issuer's certificate; "" = public roots
    inventory: CredentialInventory  # the serving key and certificate are registered there
    replicas: int = 2
    load_balancer_source_ranges: list[str] = field(default_factory=list)  # e.g. the control plane's egress
    certificate_validity_hours: int = MAX_CERTIFICATE_VALIDITY_HOURS  # re-issued from half of it on

    def __post_init__(self) -> None:
        if not 0 < self.certificate_validity_hours <= MAX_CERTIFICATE_VALIDITY_HOURS:
            raise ValueError(
                f"{self.hostname}: certificate_validity_hours must be between 1 and {MAX_CERTIFICATE_VALIDITY_HOURS} "
                f"(90 days), got {self.certificate_validity_hours}"
            )


class KubeOidcProxy(pulumi.ComponentResource):
    server_url: str  # https://<hostname>
    ca_data: pulumi.Output[str]  # base64 PEM ArgoCD trusts the proxy with (its own certificate)
    service: k8s.core.v1.Service
    deployment: k8s.apps.v1.Deployment

    def __init__(self, name: str, cluster: ClusterHandle, args: KubeOidcProxyArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:kube_oidc_proxy:KubeOidcProxy", name, None, opts)
        if not args.impersonable_users:
            raise ValueError(f"{cluster.role}: the proxy must be allowed to impersonate at least one user")
        self.server_url = f"https://{args.hostname}"
        ns = namespace(NAMESPACE, cluster, self)
        in_ns = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[ns])
        labels = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": "management-proxy"}
        metadata = lambda n: k8s.meta.v1.ObjectMetaArgs(name=n, namespace=NAMESPACE, labels=labels)  # noqa: E731

        key = tls.PrivateKey(f"{name}-key", algorithm="ECDSA", ecdsa_curve="P256", opts=pulumi.ResourceOptions(parent=self))
        certificate = tls.SelfSignedCert(
            f"{name}-cert",
            private_key_pem=key.private_key_pem,
            validity_period_hours=args.certificate_validity_hours,
            # `pulumi up` replaces the certificate once less than this is left: at half life.
            early_renewal_hours=args.certificate_validity_hours // 2,
            is_ca_certificate=False,
            allowed_uses=["digital_signature", "key_encipherment", "server_auth"],
            dns_names=[args.hostname],
            subject=tls.SelfSignedCertSubjectArgs(common_name=args.hostname, organization="platform-bootstrap"),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.ca_data = certificate.cert_pem.apply(lambda pem: base64.b64encode(pem.encode()).decode())
        args.inventory.register(Credential(
            what=f"serving key and certificate of the {cluster.role} kube-oidc-proxy",
            category="issued",
            issuer="the program (pulumi_tls, self-signed, pinned by ArgoCD and OpenUnison)",
            holder=f"kube-oidc-proxy on {cluster.role} (Secret {NAMESPACE}/{TLS_SECRET}) and the Pulumi state",
            scope=f"authenticates {args.hostname} to ArgoCD and OpenUnison; for that name only",
            lifetime_seconds=args.certificate_validity_hours * HOUR,
            rotation=(
                f"`pulumi up` re-issues the certificate {args.certificate_validity_hours // 2 // 24} days before it "
                "expires (early renewal); the pins change and the pods restart in that run; the key pair is kept"
            ),
            resources=(f"{name}-key", f"{name}-cert"),
        ))
        tls_secret = k8s.core.v1.Secret(
            f"{name}-tls",
            metadata=metadata(TLS_SECRET),
            type="kubernetes.io/tls",
            string_data={"tls.crt": certificate.cert_pem, "tls.key": key.private_key_pem},
            opts=in_ns,
        )
        issuer_ca = k8s.core.v1.ConfigMap(
            f"{name}-issuer-ca",
            metadata=metadata(ISSUER_CA_CONFIG_MAP),
            data=args.issuer_ca_bundle.apply(lambda pem: {"ca.crt": pem} if pem.strip() else {}),
            opts=in_ns,
        )
        ca_file = args.issuer_ca_bundle.apply(lambda pem: "/etc/oidc/ca/ca.crt" if pem.strip() else SYSTEM_CA_FILE)

        account = k8s.core.v1.ServiceAccount(f"{name}-sa", metadata=metadata(NAME), opts=in_ns)
        # OpenUnison's management-proxy rules, limited to the users this proxy serves.
        role = k8s.rbac.v1.ClusterRole(
            f"{name}-impersonator",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{NAME}-impersonator", labels=labels),
            rules=[
                k8s.rbac.v1.PolicyRuleArgs(api_groups=[""], resources=["users"], verbs=["impersonate"], resource_names=list(args.impersonable_users)),
                k8s.rbac.v1.PolicyRuleArgs(api_groups=[""], resources=["groups"], verbs=["impersonate"], resource_names=["system:authenticated"]),
                k8s.rbac.v1.PolicyRuleArgs(
                    api_groups=["authentication.k8s.io"],
                    resources=["userextras/scopes", "userextras/remote-client-ip", "tokenreviews"],
                    verbs=["create", "impersonate"],
                ),
                k8s.rbac.v1.PolicyRuleArgs(api_groups=["authorization.k8s.io"], resources=["subjectaccessreviews"], verbs=["create"]),
            ],
            opts=pulumi.ResourceOptions(parent=self, provider=cluster.provider),
        )
        k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-impersonator",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{NAME}-impersonator", labels=labels),
            role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=f"{NAME}-impersonator"),
            subjects=[k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=NAME, namespace=NAMESPACE)],
            opts=pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[role, account]),
        )

        selector = {"app.kubernetes.io/name": NAME}
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=metadata(NAME),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=args.replicas,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(
                        labels={**labels, **selector},
                        # A re-issued certificate restarts the pods: no reliance on a file reload.
                        annotations={
                            CERTIFICATE_CHECKSUM_ANNOTATION: certificate.cert_pem.apply(
                                lambda pem: hashlib.sha256(pem.encode()).hexdigest()
                            )
                        },
                    ),
                    spec=k8s.core.v1.PodSpecArgs(
                        service_account_name=NAME,
                        security_context=k8s.core.v1.PodSecurityContextArgs(
                            run_as_non_root=True, run_as_user=_UID, run_as_group=_UID,
                            seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
                        ),
                        containers=[
                            k8s.core.v1.ContainerArgs(
                                name=NAME,
                                image=KUBE_OIDC_PROXY_IMAGE.ref,
                                command=["kube-oidc-proxy"],
                                args=[
                                    f"--secure-port={SECURE_PORT}",
                                    "--tls-cert-file=/etc/oidc/tls/tls.crt",
                                    "--tls-private-key-file=/etc/oidc/tls/tls.key",
                                    "--tls-min-version=VersionTLS12",
                                    f"--oidc-issuer-url={args.issuer_url}",
                                    f"--oidc-client-id={args.audience}",
                                    "--oidc-username-claim=sub",
                                    f"--oidc-username-prefix={args.username_prefix}",
                                    "--oidc-groups-claim=groups",
                                    "--oidc-signing-algs=RS256",
                                    ca_file.apply(lambda path: f"--oidc-ca-file={path}"),
                                ],
                                ports=[
                                    k8s.core.v1.ContainerPortArgs(name="https", container_port=SECURE_PORT),
                                    k8s.core.v1.ContainerPortArgs(name="health", container_port=HEALTH_PORT),
                                ],
                                readiness_probe=k8s.core.v1.ProbeArgs(
                                    http_get=k8s.core.v1.HTTPGetActionArgs(path="/ready", port="health"),
                                    initial_delay_seconds=5, period_seconds=10,
                                ),
                                liveness_probe=k8s.core.v1.ProbeArgs(
                                    http_get=k8s.core.v1.HTTPGetActionArgs(path="/ready", port="health"),
                                    initial_delay_seconds=15, period_seconds=20,
                                ),
                                resources=k8s.core.v1.ResourceRequirementsArgs(
                                    requests={"cpu": "50m", "memory": "64Mi"}, limits={"cpu": "500m", "memory": "256Mi"}
                                ),
                                security_context=k8s.core.v1.SecurityContextArgs(
                                    allow_privilege_escalation=False,
                                    read_only_root_filesystem=True,
                                    capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
                                ),
                                volume_mounts=[
                                    k8s.core.v1.VolumeMountArgs(name="tls", mount_path="/etc/oidc/tls", read_only=True),
                                    k8s.core.v1.VolumeMountArgs(name="issuer-ca", mount_path="/etc/oidc/ca", read_only=True),
                                ],
                            )
                        ],
                        volumes=[
                            k8s.core.v1.VolumeArgs(name="tls", secret=k8s.core.v1.SecretVolumeSourceArgs(secret_name=TLS_SECRET)),
                            k8s.core.v1.VolumeArgs(
                                name="issuer-ca", config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=ISSUER_CA_CONFIG_MAP)
                            ),
                        ],
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(depends_on=[tls_secret, issuer_ca, account])),
        )
        if args.replicas > 1:  # one replica may always be drained; with one, none could
            k8s.policy.v1.PodDisruptionBudget(
                f"{name}-pdb",
                metadata=metadata(NAME),
                spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                    min_available=1, selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector)
                ),
                opts=in_ns,
            )
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=metadata(NAME),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="LoadBalancer",
                selector=selector,
                ports=[k8s.core.v1.ServicePortArgs(name="https", port=443, target_port="https", protocol="TCP")],
                load_balancer_source_ranges=list(args.load_balancer_source_ranges) or None,
            ),
            opts=pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(depends_on=[self.deployment])),
        )
        self.register_outputs({"serverUrl": self.server_url, "hostname": args.hostname})
