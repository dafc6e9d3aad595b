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
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_tls as tls

from components.cluster import ClusterHandle
from components.egress import Reach, endpoint_ports, from_anywhere, hold_namespace, hold_namespace_egress, networks_or_internet
from components.helm import namespace
from components.service import PlatformNamespace
from components.inventory import CredentialInventory, program_certificate
from components.versions import KUBE_OIDC_PROXY_IMAGE

NAMESPACE = "kube-oidc-proxy"
# Its own image, from upstream: outside the tenant policies like every platform service.
PLATFORM_NAMESPACE = PlatformNamespace(NAMESPACE, "the management-API proxy that trusts control-plane tokens")
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
IMPERSONATOR = f"{NAME}-impersonator"


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
    image: str = KUBE_OIDC_PROXY_IMAGE.ref  # a tenant's virtual cluster pulls it through Harbor
    # KubeOidcProxy: where the issuer's address is (stacks/control_plane.py control_plane_ingress:
    # the control plane's NLB's addresses or MetalLB pool; none: the internet), what its pods' egress holds to. A virtual
    # cluster's proxy runs in the tenant's namespace, under its policies.
    issuer_networks: tuple[pulumi.Input[str], ...] = ()

    def __post_init__(self) -> None:
        if not 0 < self.certificate_validity_hours <= MAX_CERTIFICATE_VALIDITY_HOURS:
            raise ValueError(
                f"{self.hostname}: certificate_validity_hours must be between 1 and {MAX_CERTIFICATE_VALIDITY_HOURS} "
                f"(90 days), got {self.certificate_validity_hours}"
            )
        if not self.impersonable_users:
            raise ValueError(f"{self.hostname}: the proxy must be allowed to impersonate at least one user")


class ServingCertificate:
    """The proxy's self-signed serving certificate (see the module docstring), registered in the inventory."""

    def __init__(self, name: str, where: str, holder: str, args: KubeOidcProxyArgs, parent: pulumi.Resource):
        self.key = tls.PrivateKey(f"{name}-key", algorithm="ECDSA", ecdsa_curve="P256", opts=pulumi.ResourceOptions(parent=parent))
        self.certificate = tls.SelfSignedCert(
            f"{name}-cert",
            private_key_pem=self.key.private_key_pem,
            validity_period_hours=args.certificate_validity_hours,
            # `pulumi up` replaces the certificate once less than this is left: at half life.
            early_renewal_hours=args.certificate_validity_hours // 2,
            is_ca_certificate=False,
            allowed_uses=["digital_signature", "key_encipherment", "server_auth"],
            dns_names=[args.hostname],
            subject=tls.SelfSignedCertSubjectArgs(common_name=args.hostname, organization="platform-bootstrap"),
            opts=pulumi.ResourceOptions(parent=parent),
        )
        self.ca_data = self.certificate.cert_pem.apply(lambda pem: base64.b64encode(pem.encode()).decode())
        self.checksum = self.certificate.cert_pem.apply(lambda pem: hashlib.sha256(pem.encode()).hexdigest())
        args.inventory.register(program_certificate(
            f"serving key and certificate of the {where} kube-oidc-proxy",
            signed="self-signed, pinned by ArgoCD and OpenUnison",
            holder=f"kube-oidc-proxy on {where} ({holder}) and the Pulumi state",
            scope=f"authenticates {args.hostname} to ArgoCD and OpenUnison; for that name only",
            hours=args.certificate_validity_hours,
            rotation=(
                f"`pulumi up` re-issues the certificate {args.certificate_validity_hours // 2 // 24} days before it "
                "expires (early renewal); the pins change and the pods restart in that run; the key pair is kept"
            ),
            resources=(f"{name}-key", f"{name}-cert"),
        ))

    def tls_data(self) -> dict[str, pulumi.Output[str]]:
        return {"tls.crt": self.certificate.cert_pem, "tls.key": self.key.private_key_pem}


@dataclass(frozen=True)
class ProxyObjects:
    """The proxy's Kubernetes objects as manifests (camelCase; values may be Outputs), all in
    NAMESPACE, without the TLS Secret: declared one by one on a cluster Pulumi reaches, or
    handed whole to a virtual cluster, which applies them itself."""

    service_account: dict[str, Any]
    role: dict[str, Any]
    binding: dict[str, Any]
    issuer_ca: dict[str, Any]
    deployment: dict[str, Any]
    disruption_budget: dict[str, Any] | None
    service: dict[str, Any]

    def manifests(self) -> list[dict[str, Any]]:
        objects = [self.service_account, self.role, self.binding, self.issuer_ca, self.deployment]
        return objects + ([self.disruption_budget] if self.disruption_budget else []) + [self.service]


def _container(args: KubeOidcProxyArgs) -> dict[str, Any]:
    """The proxy's container: TLS with its own certificate, OIDC from the control plane's issuer, read-only and unprivileged."""
    ca_file = args.issuer_ca_bundle.apply(lambda pem: "/etc/oidc/ca/ca.crt" if pem.strip() else SYSTEM_CA_FILE)
    ready = {"httpGet": {"path": "/ready", "port": "health"}}
    return {
        "name": NAME,
        "image": args.image,
        "command": ["kube-oidc-proxy"],
        "args": [
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
        "ports": [{"name": "https", "containerPort": SECURE_PORT}, {"name": "health", "containerPort": HEALTH_PORT}],
        "imagePullPolicy": "Always",  # in a tenant's virtual cluster, its host namespace requires it
        "readinessProbe": {**ready, "initialDelaySeconds": 5, "periodSeconds": 10},
        "livenessProbe": {**ready, "initialDelaySeconds": 15, "periodSeconds": 20},
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [
            {"name": "tls", "mountPath": "/etc/oidc/tls", "readOnly": True},
            {"name": "issuer-ca", "mountPath": "/etc/oidc/ca", "readOnly": True},
        ],
    }


def proxy_objects(args: KubeOidcProxyArgs, certificate_checksum: pulumi.Input[str]) -> ProxyObjects:
    labels = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": "management-proxy"}
    selector = {"app.kubernetes.io/name": NAME}

    def metadata(name: str = NAME, namespaced: bool = True) -> dict[str, Any]:
        return {"name": name, **({"namespace": NAMESPACE} if namespaced else {}), "labels": dict(labels)}

    container = _container(args)
    service_spec: dict[str, Any] = {
        "type": "LoadBalancer",
        "selector": selector,
        "ports": [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}],
    }
    if args.load_balancer_source_ranges:
        service_spec["loadBalancerSourceRanges"] = list(args.load_balancer_source_ranges)
    return ProxyObjects(
        service_account={"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata()},
        # OpenUnison's management-proxy rules, limited to the users this proxy serves.
        role={
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": metadata(IMPERSONATOR, namespaced=False),
            "rules": [
                {"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"], "resourceNames": list(args.impersonable_users)},
                {"apiGroups": [""], "resources": ["groups"], "verbs": ["impersonate"], "resourceNames": ["system:authenticated"]},
                {
                    "apiGroups": ["authentication.k8s.io"],
                    "resources": ["userextras/scopes", "userextras/remote-client-ip", "tokenreviews"],
                    "verbs": ["create", "impersonate"],
                },
                {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
            ],
        },
        binding={
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": metadata(IMPERSONATOR, namespaced=False),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": IMPERSONATOR},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}],
        },
        issuer_ca={
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata(ISSUER_CA_CONFIG_MAP),
            "data": args.issuer_ca_bundle.apply(lambda pem: {"ca.crt": pem} if pem.strip() else {}),
        },
        deployment={
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata(),
            "spec": {
                "replicas": args.replicas,
                "selector": {"matchLabels": selector},
                "template": {
                    # A re-issued certificate restarts the pods: no reliance on a file reload.
                    "metadata": {"labels": {**labels, **selector}, "annotations": {CERTIFICATE_CHECKSUM_ANNOTATION: certificate_checksum}},
                    "spec": {
                        "serviceAccountName": NAME,
                        "securityContext": {
                            "runAsNonRoot": True, "runAsUser": _UID, "runAsGroup": _UID, "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [container],
                        "volumes": [
                            {"name": "tls", "secret": {"secretName": TLS_SECRET}},
                            {"name": "issuer-ca", "configMap": {"name": ISSUER_CA_CONFIG_MAP}},
                        ],
                    },
                },
            },
        },
        # One replica may always be drained; with one, none could.
        disruption_budget={
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": metadata(),
            "spec": {"minAvailable": 1, "selector": {"matchLabels": selector}},
        } if args.replicas > 1 else None,
        service={"apiVersion": "v1", "kind": "Service", "metadata": metadata(), "spec": service_spec},
    )


class KubeOidcProxy(pulumi.ComponentResource):
    """The proxy on a cluster Pulumi reaches: its objects declared one by one."""

    server_url: str  # https://<hostname>
    ca_data: pulumi.Output[str]  # base64 PEM ArgoCD trusts the proxy with (its own certificate)
    service: k8s.core.v1.Service
    deployment: k8s.apps.v1.Deployment

    def __init__(self, name: str, cluster: ClusterHandle, args: KubeOidcProxyArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:kube_oidc_proxy:KubeOidcProxy", name, None, opts)
        self.server_url = f"https://{args.hostname}"
        ns = namespace(PLATFORM_NAMESPACE, cluster, self)
        in_ns = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[ns])
        on_cluster = pulumi.ResourceOptions(parent=self, provider=cluster.provider)
        certificate = ServingCertificate(name, cluster.role, f"Secret {NAMESPACE}/{TLS_SECRET}", args, self)
        self.ca_data = certificate.ca_data
        objects = proxy_objects(args, certificate.checksum)

        # Its client (the control plane's ArgoCD, components/federation.py) comes through the LoadBalancer, from outside the
        # pod network: any address on the proxy's port (it checks every token), none on its health port.
        held = hold_namespace(name, ns, [from_anywhere("proxy", objects.deployment["spec"]["selector"]["matchLabels"], (SECURE_PORT,))], on_cluster)
        # It connects to its API server (impersonating the token's user) and to the issuer for its discovery document and
        # keys (--oidc-issuer-url, through the control plane's load balancer); nothing else.
        held += hold_namespace_egress(name, ns, cluster.api_server, [
            Reach("issuer", {}, networks_or_internet(args.issuer_networks, endpoint_ports([args.issuer_url])))], on_cluster)
        tls_secret = k8s.core.v1.Secret(
            f"{name}-tls",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=TLS_SECRET, namespace=NAMESPACE, labels=objects.service_account["metadata"]["labels"]),
            type="kubernetes.io/tls",
            string_data=certificate.tls_data(),
            opts=in_ns,
        )
        issuer_ca = k8s.core.v1.ConfigMap(
            f"{name}-issuer-ca", metadata=objects.issuer_ca["metadata"], data=objects.issuer_ca["data"], opts=in_ns
        )
        account = k8s.core.v1.ServiceAccount(f"{name}-sa", metadata=objects.service_account["metadata"], opts=in_ns)
        role = k8s.rbac.v1.ClusterRole(
            f"{name}-impersonator", metadata=objects.role["metadata"], rules=objects.role["rules"], opts=on_cluster
        )
        k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-impersonator",
            metadata=objects.binding["metadata"],
            role_ref=objects.binding["roleRef"],
            subjects=objects.binding["subjects"],
            opts=pulumi.ResourceOptions.merge(on_cluster, pulumi.ResourceOptions(depends_on=[role, account])),
        )
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=objects.deployment["metadata"],
            spec=objects.deployment["spec"],
            opts=pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(depends_on=[tls_secret, issuer_ca, account, *held])),
        )
        if objects.disruption_budget:
            k8s.policy.v1.PodDisruptionBudget(
                f"{name}-pdb", metadata=objects.disruption_budget["metadata"], spec=objects.disruption_budget["spec"], opts=in_ns
            )
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=objects.service["metadata"],
            spec=objects.service["spec"],
            opts=pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(depends_on=[self.deployment])),
        )
        self.register_outputs({"serverUrl": self.server_url, "hostname": args.hostname})


class VirtualClusterProxy(pulumi.ComponentResource):
    """The proxy inside a tenant's virtual cluster, which Pulumi does not reach: the virtual
    cluster applies its objects at start (`manifests`), and syncs in the TLS Secret declared
    here in its host namespace (`secret_mapping`, for the chart's `sync.fromHost.secrets`).

    Why a proxy rather than the virtual API server trusting the issuer itself: the virtual
    cluster generates its own CA at first start, so nothing could pin its certificate ahead
    of time; the proxy's certificate is the program's, pinned by ArgoCD and OpenUnison."""

    server_url: str
    ca_data: pulumi.Output[str]
    manifests: pulumi.Output[list[dict[str, Any]]]
    secret_mapping: dict[str, str]
    tls_secret: k8s.core.v1.Secret

    def __init__(
        self, name: str, cluster: ClusterHandle, host_namespace: pulumi.Resource, host_namespace_name: str,
        args: KubeOidcProxyArgs, opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("platform:kube_oidc_proxy:VirtualClusterProxy", name, None, opts)
        self.server_url = f"https://{args.hostname}"
        certificate = ServingCertificate(name, f"virtual cluster {host_namespace_name}", f"Secret {host_namespace_name}/{TLS_SECRET}", args, self)
        self.ca_data = certificate.ca_data
        objects = proxy_objects(args, certificate.checksum)
        self.tls_secret = k8s.core.v1.Secret(
            f"{name}-tls",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=TLS_SECRET, namespace=host_namespace_name),
            type="kubernetes.io/tls",
            string_data=certificate.tls_data(),
            opts=pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[host_namespace]),
        )
        self.secret_mapping = {f"{host_namespace_name}/{TLS_SECRET}": f"{NAMESPACE}/{TLS_SECRET}"}
        namespace_object = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        self.manifests = pulumi.Output.from_input([namespace_object, *objects.manifests()])  # type: ignore[arg-type]
        self.register_outputs({"serverUrl": self.server_url, "hostname": args.hostname})
