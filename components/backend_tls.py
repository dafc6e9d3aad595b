"""TLS from Traefik to a backend: a serving certificate from a CA internal to the backend's
namespace (cert-manager), and the Traefik ServersTransport that verifies it.

Traefik terminates the public name's TLS and opens a second TLS connection to the backend; the
backend's Service carries `annotations` so Traefik speaks HTTPS to it through the transport.
Nothing trusts the internal CA but that transport (and the backend's own peers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

CERT_MANAGER = "cert-manager.io/v1"
CA_DAYS = 3650  # the internal CA's lifetime; cert-manager renews it 30 days before
TRAEFIK_API = "traefik.io/v1alpha1"


@dataclass(frozen=True)
class BackendTlsArgs:
    prefix: str  # resource and object names: <role>-<prefix>-..., <prefix>-internal-ca, ...
    namespace: str
    secret_name: str  # the serving certificate's Secret: tls.crt, tls.key, ca.crt
    dns_names: Sequence[str]
    ip_addresses: Sequence[str] = ()


def custom_resource(
    name: str, api_version: str, kind: str, object_name: str, namespace: str, spec: dict[str, Any],
    opts: pulumi.ResourceOptions, wait: bool = False,
) -> k8s.apiextensions.CustomResource:
    metadata: dict[str, Any] = {"name": object_name, "namespace": namespace}
    if wait:
        # Pulumi waits until cert-manager reports the certificate issued.
        metadata["annotations"] = {"pulumi.com/waitFor": "condition=Ready"}
    return k8s.apiextensions.CustomResource(name, api_version=api_version, kind=kind, metadata=metadata, spec=spec, opts=opts)


def internal_certificate(role: str, args: BackendTlsArgs, opts: pulumi.ResourceOptions) -> k8s.apiextensions.CustomResource:
    """The serving Certificate (waited for: the backend mounts it), signed by the namespace's internal CA.

    `opts` must depend on cert-manager (its CRDs) and the namespace.
    """
    ca_secret = f"{args.prefix}-internal-ca"

    def after(*resources: pulumi.Resource) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=list(resources)))

    # A self-signed issuer exists only to sign the internal CA; the CA's key never leaves the cluster.
    bootstrap = custom_resource(
        f"{role}-{args.prefix}-selfsigned", CERT_MANAGER, "Issuer", f"{args.prefix}-selfsigned", args.namespace,
        {"selfSigned": {}}, opts,
    )
    ca = custom_resource(
        f"{role}-{args.prefix}-internal-ca", CERT_MANAGER, "Certificate", ca_secret, args.namespace,
        {
            "isCA": True,
            "commonName": f"{args.namespace} internal CA",
            "secretName": ca_secret,
            "duration": f"{CA_DAYS * 24}h",
            "renewBefore": "720h",
            "privateKey": {"algorithm": "ECDSA", "size": 256},
            "issuerRef": {"name": f"{args.prefix}-selfsigned", "kind": "Issuer", "group": "cert-manager.io"},
        },
        after(bootstrap),
    )
    issuer = custom_resource(
        f"{role}-{args.prefix}-internal-issuer", CERT_MANAGER, "Issuer", ca_secret, args.namespace,
        {"ca": {"secretName": ca_secret}}, after(ca),
    )
    return custom_resource(
        f"{role}-{args.prefix}-tls", CERT_MANAGER, "Certificate", args.secret_name, args.namespace,
        {
            "secretName": args.secret_name,
            "issuerRef": {"name": ca_secret, "kind": "Issuer", "group": "cert-manager.io"},
            "dnsNames": list(args.dns_names),
            **({"ipAddresses": list(args.ip_addresses)} if args.ip_addresses else {}),
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "usages": ["server auth", "digital signature"],
        },
        after(issuer),
        wait=True,
    )


def servers_transport(
    role: str, prefix: str, namespace: str, server_name: str, ca_secret: str, opts: pulumi.ResourceOptions
) -> tuple[k8s.apiextensions.CustomResource, dict[str, str]]:
    """The ServersTransport `prefix` verifying `server_name` against `ca_secret`'s ca.crt, and the
    annotations that make Traefik use it (HTTPS) for a backend Service. `opts` must depend on Traefik."""
    transport = custom_resource(
        f"{role}-{prefix}-servers-transport", TRAEFIK_API, "ServersTransport", prefix, namespace,
        {"serverName": server_name, "rootCAsSecrets": [ca_secret]}, opts,
    )
    annotations = {
        "traefik.ingress.kubernetes.io/service.serversscheme": "https",
        "traefik.ingress.kubernetes.io/service.serverstransport": f"{namespace}-{prefix}@kubernetescrd",
    }
    return transport, annotations
