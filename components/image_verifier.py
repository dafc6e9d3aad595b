"""Admission-time signature verification: Sigstore policy-controller on the workload clusters.

Why policy-controller: its `ClusterImagePolicy` binds an image glob to the public keys that must
have signed it, which is exactly "by key, not by presence"; it verifies cosign's key-based
signatures offline (no transparency log: the pipelines sign with `--tlog-upload=false`), has a
per-policy `mode: warn` for dev, and namespaces opt in by label, so the platform's own
namespaces are outside it by construction. Ratify would sit behind Gatekeeper's external data
(another provider, its own certificates, and Gatekeeper's fail-closed webhook calling it);
Kyverno would be a second policy engine beside Gatekeeper.

The policies, per workload cluster:
* `tenant-<tenant>`: images `harbor.<domain>/<tenant>/**` only if signed by that tenant's
  transit key (its trusted versions, components/signing.py);
* `platform-approved`: images `harbor.<domain>/approved/**` only if signed by the platform's
  promotion key (`promote-image` signs what it copies there).
Together with each tenant namespace's Gatekeeper constraint (images from its own project and
`approved` only), a tenant's namespaces trust its own key and the promotion key, never another
tenant's. Tenant namespaces carry `SIGNATURE_POLICY_LABEL`; the webhook also skips every
platform namespace by name, so no stray label can lock the platform out of repairing itself.
An image that matches no policy is refused (`no-match-policy: deny`; warned in warn mode).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s

from components.cluster import ClusterHandle
from components.common import ObjectStoreTarget
from components.egress import HTTPS, Reach, hold_namespace_egress, hold_webhook, networks_or_internet, registry_blobs
from components.helm import metadata, namespace, release, sized
from components.inventory import CredentialInventory, projected_token
from components.service import WORKLOAD_CLUSTERS, PlatformNamespace, ServiceSettings, ServiceSlice, TenantParts
from components.vault import SLICE as VAULT
from components.versions import LEASES_CLEANUP_IMAGE
from policy.labels import SIGNATURE_POLICY_LABEL, managed_by

NAMESPACE = "cosign-system"
# The webhook's `https` container port (policy-controller 0.10.6 templates/webhook/deployment_webhook.yaml line 108), which
# its Service `webhook` targets for the admission and CRD conversion webhooks; its metrics (9090) nobody scrapes.
WEBHOOK_PORT = 8443
POLICY_API_VERSION = "policy.sigstore.dev/v1beta1"
WEBHOOK_LABELS = {"control-plane": "policy-controller-webhook"}  # the chart's webhook pods (not its lease cleanup Job)
CA_CONFIGMAP = ("platform-ca", "ca.crt")  # the registry's CA, where Harbor's certificate is the platform's own
Mode = Literal["enforce", "warn"]


def image_policy(name: str, images: Sequence[str], public_keys: Sequence[str], mode: Mode) -> dict[str, Any]:
    """A ClusterImagePolicy: images matching `images` (policy-controller globs) must carry a cosign
    signature by one of `public_keys` (PEM); one authority per key, no transparency log."""
    if not public_keys:
        raise ValueError(f"image policy {name}: no public key to trust; it would refuse every image")
    return {
        "apiVersion": POLICY_API_VERSION,
        "kind": "ClusterImagePolicy",
        "metadata": {"name": name, "labels": managed_by()},
        "spec": {
            "mode": mode,
            "images": [{"glob": glob} for glob in images],
            "authorities": [
                {"name": f"key-{i}", "key": {"data": pem, "hashAlgorithm": "sha256"}} for i, pem in enumerate(public_keys)
            ],
        },
    }


def project_images(registry_host: str, project: str) -> str:
    """The glob of every image in one Harbor project: `harbor.<domain>/<project>/**`."""
    return f"{registry_host}/{project}/**"


@dataclass(frozen=True)
class ImageVerifierArgs:
    mode: Mode  # enforce: refuse; warn: admit and warn (dev, configurable)
    platform_namespaces: Sequence[PlatformNamespace]  # never checked, whatever their labels
    settings: ServiceSettings  # replicas, chart version, sizing
    control_plane_ingress: tuple[pulumi.Input[str], ...] = ()  # where harbor.<domain> is (ClusterParts.control_plane_ingress)
    object_store: ObjectStoreTarget | None = None  # where Harbor keeps images off EKS (platform:objectStore)
    ca_bundle: pulumi.Input[str] = ""  # what Harbor's certificate chains to; "" means public roots
    inventory: CredentialInventory | None = None


class ImageVerifier(pulumi.ComponentResource):
    """policy-controller on one cluster; `trust` adds a ClusterImagePolicy."""

    release: k8s.helm.v3.Release

    def __init__(self, name: str, cluster: ClusterHandle, args: ImageVerifierArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:image_verifier:ImageVerifier", name, None, opts)
        self.cluster, self.mode = cluster, args.mode
        ns = namespace(SLICE.namespace, cluster, self)
        private_ca = pulumi.Output.from_input(args.ca_bundle).apply(bool)
        ca = k8s.core.v1.ConfigMap(
            f"{name}-registry-ca",
            metadata=metadata(CA_CONFIGMAP[0], ns),
            data={CA_CONFIGMAP[1]: args.ca_bundle},  # "" on EKS: Harbor has a public certificate, not mounted
            opts=pulumi.ResourceOptions(parent=self, provider=cluster.provider),
        )
        values = private_ca.apply(lambda private: _values(args, private))
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=cluster.provider)
        # Beside its API server (the pods' pull secrets, the policies): Harbor, where it reads each image's signature
        # (harbor.<domain> through the control plane's load balancer), and the registry's store, where Harbor redirects
        # blob reads (components/harbor.py: storage.redirect). No TUF root (`disable-tuf`), no transparency log, no Fulcio.
        registry = [*networks_or_internet(args.control_plane_ingress, [HTTPS]), *registry_blobs(args.object_store)]
        held = [hold_webhook(name, ns, WEBHOOK_PORT, k8s_opts),
                *hold_namespace_egress(name, ns, cluster.api_server, [Reach("registry", WEBHOOK_LABELS, registry)], k8s_opts)]
        self.release = release("policy-controller", "policy-controller", ns, values, cluster, self,
                               version=args.settings.chart_version, depends_on=[ca, *held])
        if args.inventory is not None:
            args.inventory.register(projected_token(
                f"service-account token of the image verifier ({cluster.name})",
                issuer=f"the {cluster.name} cluster's service-account issuer (projected token)",
                holder=f"policy-controller's webhook in {NAMESPACE}",
                scope=("the Kubernetes API: get service accounts and Secrets cluster-wide, to read the pull secrets "
                       "of the pods it admits (upstream ClusterRole); with those pull secrets, read signatures from Harbor"),
                rotation="the kubelet renews the projected token before it expires",
                lifetime="the projected token's default hour, renewed by the kubelet",
            ))
        self.register_outputs({"release": self.release.status, "mode": args.mode})

    def trust(self, name: str, images: Sequence[str], public_keys: pulumi.Input[Sequence[str]],
              parent: pulumi.Resource) -> k8s.apiextensions.CustomResource:
        """A ClusterImagePolicy `name` on this cluster: `images` must be signed by one of `public_keys`."""
        spec = pulumi.Output.from_input(public_keys).apply(lambda keys: image_policy(name, images, keys, self.mode)["spec"])
        return k8s.apiextensions.CustomResource(
            f"{self.cluster.role}-image-policy-{name}",
            api_version=POLICY_API_VERSION,
            kind="ClusterImagePolicy",
            metadata={"name": name, "labels": managed_by()},
            spec=spec,
            opts=pulumi.ResourceOptions(parent=parent, provider=self.cluster.provider, depends_on=[self.release]),
        )


def _values(args: ImageVerifierArgs, private_ca: bool) -> dict[str, Any]:
    exempt = [n.name for n in args.platform_namespaces]
    webhook: dict[str, Any] = {
        "replicaCount": args.settings.replicas,
        # Opted-in tenant namespaces only, and never a platform namespace (by name, whatever its labels).
        "namespaceSelector": {"matchExpressions": [
            {"key": SIGNATURE_POLICY_LABEL, "operator": "In", "values": ["true"]},
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": exempt},
        ]},
        # The chart's webhook fails closed: an outage holds tenant deployments, never the platform's.
        "configData": {"no-match-policy": "deny" if args.mode == "enforce" else "warn"},
        # Keys only: no Sigstore public-good root to fetch at start (it would panic without egress).
        "extraArgs": {"disable-tuf": "true"},
    }
    if private_ca:
        webhook["registryCaBundle"] = dict(zip(("name", "key"), CA_CONFIGMAP))
    return sized({
        "webhook": webhook,
        "leasescleanup": {"image": {"repository": LEASES_CLEANUP_IMAGE.repository,
                                    "version": f"{LEASES_CLEANUP_IMAGE.tag}@{LEASES_CLEANUP_IMAGE.digest}"}},
    }, args.settings.resources, "webhook", "leasescleanup")


def declare_on(cluster: ClusterHandle, settings: ServiceSettings, ca_bundle: pulumi.Input[str],
               platform_namespaces: Sequence[PlatformNamespace], inventory: CredentialInventory,
               control_plane_ingress: tuple[pulumi.Input[str], ...], object_store: ObjectStoreTarget | None) -> ImageVerifier:
    """The verifier on one workload cluster: enforcing on prod, on dev as `devMode` says."""
    return ImageVerifier(
        f"{cluster.role}-image-verifier",
        cluster,
        ImageVerifierArgs(
            mode="enforce" if cluster.role == "prod" else settings.options["dev_mode"],
            platform_namespaces=platform_namespaces,
            settings=settings,
            control_plane_ingress=control_plane_ingress,
            object_store=object_store,
            ca_bundle=ca_bundle,
            inventory=inventory,
        ),
    )


def ready(addons: dict[str, Any]) -> pulumi.Resource | None:
    """What waits for a cluster's verifier to check pods, given its add-ons (None: no verifier there)."""
    verifier = addons.get(SLICE.key)
    return verifier.release if verifier is not None else None


def tenant(parts: TenantParts) -> list[k8s.apiextensions.CustomResource]:
    """The tenant's policy on each workload cluster: its Harbor project, signed by its own key."""
    secrets = parts.get(VAULT)
    if secrets is None or secrets.signing is None:
        return []
    images = [project_images(f"harbor.{parts.platform.domain}", parts.name)]
    verifiers = [v for cluster in parts.namespaces if (v := parts.addon(cluster, SLICE)) is not None]
    parent = parts.opts.parent
    assert parent is not None
    return [v.trust(f"tenant-{parts.name}", images, secrets.signing.public_keys, parent) for v in verifiers]


SLICE: ServiceSlice[ImageVerifier] = ServiceSlice(
    key="image_verifier",
    namespace=PlatformNamespace(NAMESPACE, "the image verifier itself: it must never have to verify its own images"),
    chart="policy-controller",
    default_replicas=2,
    # Declared by the composition once the control plane exists (stacks/platform.py): the verifier
    # must trust the CA Harbor's certificate chains to, which the control plane makes.
    clusters=WORKLOAD_CLUSTERS,
    options={"dev_mode": (Mode, "warn")},
    tenant=tenant,
)
