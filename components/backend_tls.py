"""TLS from Traefik to a backend: a serving certificate from a CA internal to the backend, and
the Traefik ServersTransport that verifies it.

Traefik terminates the public name's TLS and opens a second TLS connection to the backend; the
route, in Traefik's namespace, names the transport so Traefik speaks HTTPS to the backend
(components/ingress.py `route`).
Nothing trusts the internal CA but that transport (and the backend's own peers).

The program is the internal CA (pulumi-tls, its key a Pulumi secret) and signs the serving
certificate itself: Traefik lists and watches every Secret of the backend's namespace (its
informers; a `resourceNames` limit would break them), so a CA key kept there, as cert-manager's CA
Issuer needs it, would be Traefik's. Traefik takes the CA's certificate from a ConfigMap
(`rootCAs`, ServersTransport of Traefik v3.6, pkg/provider/kubernetes/crd/client.go GetConfigMap).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.inventory import STATE, Credential, program_certificate
from components.tls import SERVING_DAYS, SERVING_ROTATION, ServingCertificate, self_signed_ca, signed_tls_secret

CA_DAYS = 3650  # the internal CA's lifetime; `pulumi up` re-creates it 30 days before (tls.self_signed_ca)
TRAEFIK_API = "traefik.io/v1alpha1"


@dataclass(frozen=True)
class BackendTlsArgs:
    prefix: str  # resource and object names: <role>-<prefix>-..., <prefix>-internal-ca, ...
    namespace: str
    secret_name: str  # the serving certificate's Secret: tls.crt, tls.key, ca.crt
    dns_names: Sequence[str]
    # Where Traefik's ServersTransport reads the CA's certificate (ConfigMap `<prefix>-internal-ca`): Traefik's own
    # namespace, where the backend's route and transport are (components/ingress.py `route`).
    ca_namespace: str
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


def internal_certificate(
    role: str, args: BackendTlsArgs, opts: pulumi.ResourceOptions
) -> tuple[k8s.core.v1.Secret, k8s.core.v1.ConfigMap]:
    """The serving certificate's Secret (tls.crt, tls.key, ca.crt), signed by the backend's internal CA, and the
    ConfigMap `<prefix>-internal-ca` holding only that CA's certificate (ca.crt). `opts`: parent, provider and the
    namespace."""
    assert opts.parent is not None
    ca = self_signed_ca(f"{role}-{args.prefix}-internal-ca", f"{args.namespace} internal CA", CA_DAYS * 24, opts.parent)
    serving = signed_tls_secret(
        f"{role}-{args.prefix}-tls", ca,
        ServingCertificate(args.secret_name, args.namespace, tuple(args.dns_names), tuple(args.ip_addresses)), opts,
    )
    bundle = k8s.core.v1.ConfigMap(
        f"{role}-{args.prefix}-internal-ca",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{args.prefix}-internal-ca", namespace=args.ca_namespace),
        data={"ca.crt": ca.cert_pem},
        opts=opts,
    )
    return serving, bundle


def internal_credentials(role: str, args: BackendTlsArgs, service: str) -> list[Credential]:
    """The inventory's entries for `internal_certificate`: the internal CA's key and the serving certificate."""
    name, bundle = f"{role}-{args.prefix}", f"ConfigMap {args.ca_namespace}/{args.prefix}-internal-ca"
    return [program_certificate(
        f"{service}'s internal CA key",
        signed="self-signed",
        holder=f"{STATE} only (the cluster has its certificate: {bundle}, ca.crt of Secret {args.namespace}/{args.secret_name})",
        scope=f"signs {service}'s serving certificate, which Traefik's ServersTransport and {service}'s peers alone trust; never presented",
        hours=CA_DAYS * 24,
        rotation=f"re-created by `pulumi up` 30 days before it expires, with the serving certificate and {bundle}",
        category="signing-key",
        resources=(f"{name}-internal-ca",),
    ), program_certificate(
        f"serving certificate of {service}",
        signed=f"by {service}'s internal CA",
        holder=f"{service}'s pods (Secret {args.namespace}/{args.secret_name}), Traefik and {STATE}",
        scope=f"authenticates {service}'s in-cluster names to Traefik and its peers",
        hours=SERVING_DAYS * 24,
        rotation=SERVING_ROTATION,
        resources=(f"{name}-tls-key", f"{name}-tls"),
    )]


def servers_transport(
    role: str, prefix: str, namespace: str, server_name: str, opts: pulumi.ResourceOptions
) -> k8s.apiextensions.CustomResource:
    """The ServersTransport `prefix` verifying `server_name` against the internal CA's certificate (ConfigMap
    `<prefix>-internal-ca`), which a route names (components/ingress.py `Backend.transport`). `opts` must depend on Traefik."""
    return custom_resource(
        f"{role}-{prefix}-servers-transport", TRAEFIK_API, "ServersTransport", prefix, namespace,
        {"serverName": server_name, "rootCAs": [{"configMap": f"{prefix}-internal-ca"}]}, opts,
    )
