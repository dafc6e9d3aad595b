"""Every pinned version of the platform, in one place.

Nothing here resolves at run time: no chart index look-ups, no "latest". Bump a pin in a
merge request and the preview shows exactly what moves.
"""

from __future__ import annotations

from typing import NamedTuple

# EKS managed add-ons, by Kubernetes minor version. Refresh with
# `aws eks describe-addon-versions --kubernetes-version <v> --addon-name <name>`.
EKS_ADDONS: dict[str, dict[str, str]] = {
    "1.33": {
        "vpc-cni": "v1.19.5-eksbuild.1",
        "coredns": "v1.12.1-eksbuild.2",
        "kube-proxy": "v1.33.0-eksbuild.2",
        "eks-pod-identity-agent": "v1.3.7-eksbuild.2",
        "aws-ebs-csi-driver": "v1.44.0-eksbuild.1",
    },
}

# The Cluster Autoscaler's image per Kubernetes minor (upstream releases one line per minor; the
# chart's default is the minor's .0): registry.k8s.io/autoscaling/cluster-autoscaler:<tag>.
CLUSTER_AUTOSCALER_TAGS: dict[str, str] = {"1.33": "v1.33.6"}


class Chart(NamedTuple):
    """A Helm chart pinned to an exact version in its upstream repository."""

    chart: str
    repo: str
    version: str


CHARTS: dict[str, Chart] = {
    # Traefik: maintained upstream, speaks the Ingress API every chart here emits (ingress-nginx
    # was retired in March 2026); no upstream values file is vendored in tests for it.
    "traefik": Chart("traefik", "https://traefik.github.io/charts", "37.4.0"),
    "gatekeeper": Chart("gatekeeper", "https://open-policy-agent.github.io/gatekeeper/charts", "3.23.0"),
    "external-secrets": Chart("external-secrets", "https://charts.external-secrets.io", "2.9.0"),
    "cert-manager": Chart("cert-manager", "https://charts.jetstack.io", "v1.21.1"),
    "argo-cd": Chart("argo-cd", "https://argoproj.github.io/argo-helm", "10.1.1"),
    "harbor": Chart("harbor", "https://helm.goharbor.io", "1.19.1"),
    "vault": Chart("vault", "https://helm.releases.hashicorp.com", "0.34.1"),
    "vcluster": Chart("vcluster", "https://charts.loft.sh", "0.36.1"),
    "gitlab": Chart("gitlab", "https://charts.gitlab.io", "9.9.1"),
    "openunison-operator": Chart("openunison-operator", "https://nexus.tremolo.io/repository/helm", "3.0.25"),
    "orchestra": Chart("orchestra", "https://nexus.tremolo.io/repository/helm", "3.1.40"),
    "orchestra-login-portal": Chart("orchestra-login-portal", "https://nexus.tremolo.io/repository/helm", "2.3.88"),
    "kube-oidc-proxy": Chart("kube-oidc-proxy", "https://nexus.tremolo.io/repository/helm", "0.3.2"),
    "aws-load-balancer-controller": Chart("aws-load-balancer-controller", "https://aws.github.io/eks-charts", "3.5.0"),
    "cluster-autoscaler": Chart("cluster-autoscaler", "https://kubernetes.github.io/autoscaler", "9.50.1"),
    "metallb": Chart("metallb", "https://metallb.github.io/metallb", "0.16.1"),
    # Sigstore policy-controller 0.13.1: the image signature verifier (components/image_verifier.py).
    "policy-controller": Chart("policy-controller", "https://sigstore.github.io/helm-charts", "0.10.6"),
    # CloudNativePG: PostgreSQL for GitLab and Harbor on kubeconfig stacks (components/data_stores.py).
    "cloudnative-pg": Chart("cloudnative-pg", "https://cloudnative-pg.github.io/charts", "0.29.0"),
    # GitLab Runner 18.9.0: the chart the GitLab chart 9.9.1 names as its own runner dependency.
    "gitlab-runner": Chart("gitlab-runner", "https://charts.gitlab.io", "0.86.0"),
    # Progressive delivery on the workload clusters (issue 18); sources in charts/vendor/.
    "argo-rollouts": Chart("argo-rollouts", "https://argoproj.github.io/argo-helm", "2.41.0"),
    "metrics-server": Chart("metrics-server", "https://kubernetes-sigs.github.io/metrics-server", "3.13.1"),
    "prometheus": Chart("prometheus", "https://prometheus-community.github.io/helm-charts", "29.27.0"),
    # The platform's alerting on every cluster (components/alerting.py): Alertmanager v0.34.0 and kube-state-metrics 2.20.0.
    "alertmanager": Chart("alertmanager", "https://prometheus-community.github.io/helm-charts", "1.42.0"),
    "kube-state-metrics": Chart("kube-state-metrics", "https://prometheus-community.github.io/helm-charts", "8.4.0"),
    # Dragonfly 2.5.0 (client 1.4.0): P2P image distribution on the workload clusters (components/dragonfly.py).
    "dragonfly": Chart("dragonfly", "https://dragonflyoss.github.io/helm-charts", "1.7.4"),
    # Velero 1.18.1: the tenants' volumes backed up on the workload clusters (components/velero.py).
    "velero": Chart("velero", "https://vmware-tanzu.github.io/helm-charts", "12.1.0"),
}

# vCluster's Kubernetes distro image (ghcr.io/loft-sh/kubernetes, promoted to Harbor's `approved`
# project) by the host cluster's minor version: a virtual control plane runs its host's Kubernetes.
# Add a minor here with every new host version (stacks.config refuses a host version without one).
VCLUSTER_KUBERNETES_TAGS: dict[str, str] = {"1.33": "v1.33.4"}

# GitLab Runner (components/gitlab_runner.py): the version CHARTS["gitlab-runner"] ships; tenants'
# runners pull the runner and its helper through Harbor's `approved` (promote them first). Pinned by
# tag: their digests could not be resolved offline (`crane digest <image>:<tag>` on the next bump).
GITLAB_RUNNER_TAG = "18.9.0"
GITLAB_RUNNER_IMAGE = "registry.gitlab.com/gitlab-org/gitlab-runner"
GITLAB_RUNNER_HELPER_IMAGE = "registry.gitlab.com/gitlab-org/gitlab-runner/gitlab-runner-helper"

# The tenants' starter pipelines' tool images (components/tenant_supply_chain.py), pulled through
# Harbor's `approved`. Pinned by tag: their digests could not be resolved offline (README: Images
# pinned by tag only); append `@sha256:...` here once read with `crane digest <image>`.
BUILDAH_IMAGE = "quay.io/buildah/stable:v1.38.1"  # Fedora: bash, curl (OpenSSL) and the system CA roots
TRIVY_IMAGE = "docker.io/aquasec/trivy:0.58.2"
GIT_IMAGE = "docker.io/alpine/git:v2.47.2"

# Trivy's vulnerability databases (OCI artifacts; tag = the database schema the pinned Trivy reads). The
# `promote-trivy-db` schedule (.gitlab-ci.yml, same list) copies them daily through Harbor's proxy-ghcr-io
# into `approved`, where the tenants' scan jobs and Harbor's scanner read them. Not pinned by digest on
# purpose: upstream republishes them every few hours with new vulnerability data.
TRIVY_DATABASES = ("ghcr.io/aquasecurity/trivy-db:2", "ghcr.io/aquasecurity/trivy-java-db:1")

# GitLab's kubectl image, run by the platform's own admin-token Job (components/gitlab.py).
# Same GitLab version as CHARTS["gitlab"] (chart 9.x.y ships GitLab 18.x.y): bump together.
# GITLAB_KUBECTL_DIGEST is the tag's manifest digest ("sha256:..."). It could not be resolved
# offline when this pin was added, so the image is pinned by tag alone until it is filled in
# (`crane digest registry.gitlab.com/gitlab-org/build/cng/kubectl:<tag>`); fill it on every bump.
GITLAB_VERSION = "18.9.1"  # what CHARTS["gitlab"] 9.9.1 ships; the chart's global.gitlabVersion
GITLAB_KUBECTL_IMAGE = "registry.gitlab.com/gitlab-org/build/cng/kubectl"
GITLAB_KUBECTL_TAG = f"v{GITLAB_VERSION}"
GITLAB_KUBECTL_DIGEST = ""


class Image(NamedTuple):
    """A container image pinned by digest; the tag is for people, the digest is what runs."""

    repository: str
    tag: str  # "" when the digest's tag was not recorded where the digest was found
    digest: str  # "sha256:..."

    @property
    def ref(self) -> str:
        return f"{self.repository}{':' + self.tag if self.tag else ''}@{self.digest}"


# Token federation (components/federation.py, components/kube_oidc_proxy.py). Digests were read
# from public repositories that pin them, not from the registries (offline); confirm on every
# bump with `crane digest <repository>:<tag>`.
# The management-API proxy: OpenUnison's fork of kube-oidc-proxy, the image orchestra's
# `mgmt-proxy.yaml` runs (chart default 1.0.11; 1.0.12 is the newest with a known digest).
KUBE_OIDC_PROXY_IMAGE = Image(
    "ghcr.io/tremolosecurity/kube-oidc-proxy", "1.0.12",
    "sha256:d7747f308042216acd31eb48af4baefb2f508afc2023736451931b2d323907e9",
)
# Static (musl) busybox: copies itself into the ArgoCD controller's plugin volume so the next
# init container, whose image has no shell, can copy curl out.
BUSYBOX_IMAGE = Image(
    "docker.io/library/busybox", "1.37.0-musl",
    "sha256:222ad6d973c0d198014546a65cd02c5fdedcc172123c5b4c2bf0af636550bd94",
)
# A fully static curl in a `scratch` image (github.com/tarampampam/curl-docker): runs unchanged
# in the glibc ArgoCD image. The tag of this digest was not recorded where it was found.
CURL_IMAGE = Image(
    "docker.io/tarampampam/curl", "",
    "sha256:617b3306349beaacb7ad82bddda8d6876a40c3bad06d7a28981504d230802d7e",
)

# The platform pipeline's `promote-image` job (.gitlab-ci.yml, .ci/promote-image.py: standard
# library and skopeo, so a plain Python image on Debian bookworm with its CA roots). Pulled from
# Docker Hub, not from `approved`: this job is what fills `approved`. The digest was read from public
# repositories that pin it, not from the registry (offline); confirm on every bump with
# `crane digest docker.io/library/python:<tag>`.
PROMOTE_IMAGE = Image(
    "docker.io/library/python", "3.12.8-slim-bookworm",
    "sha256:2199a62885a12290dc9c5be3ca0681d367576ab7bf037da120e564723292a2f0",
)
# skopeo, the registry tool promote-image copies with: Debian bookworm's package (the job image's
# release), installed at this exact version from Debian's signed archive (`apt-cache policy skopeo`).
SKOPEO_DEBIAN_VERSION = "1.9.3+ds1-1+b10"

# cosign's release image (static, no shell; the binary is /ko-app/cosign, ko's layout): the tenants'
# starter `sign` job copies cosign out of it into the buildah image (components/tenant_supply_chain.py).
# The digest was read from several public repositories that pin this tag and copy /ko-app/cosign
# out of it, not from the registry (offline); confirm on every bump with
# `crane digest ghcr.io/sigstore/cosign/cosign:<tag>`.
COSIGN_IMAGE = Image(
    "ghcr.io/sigstore/cosign/cosign", "v2.4.1",
    "sha256:b03690aa52bfe94054187142fba24dc54137650682810633901767d8a3e15b31",
)

# The AWS Load Balancer Controller's IAM policy, upstream's docs/install/iam_policy.json at the
# controller version CHARTS["aws-load-balancer-controller"] ships (kubernetes-sigs/aws-load-balancer-controller
# @ v3.5.0), kept in components/iam/ and checked against this digest: bump together.
AWS_LOAD_BALANCER_CONTROLLER_POLICY_SHA256 = "16f232c9d9f79366fe949c4550ad517a202380058a9e48d45a4e215044a20a6a"

# The policy-controller chart's post-delete hook (kubectl deleting the webhook's leases): the chart
# defaults to the moving tag `latest-dev`, pinned here by a digest read from public repositories
# that pin it (offline); confirm on every chart bump with `crane digest cgr.dev/chainguard/kubectl:latest-dev`.
LEASES_CLEANUP_IMAGE = Image(
    "cgr.dev/chainguard/kubectl", "latest-dev",
    "sha256:1d8c1f0c437628aafa1bca52c41ff310aea449423cce9b2feae2767ac53c336f",
)

# Data stores (components/data_stores.py). PostgreSQL 17: GitLab 18 needs 16 or newer, Harbor 2.15
# runs on it. On EKS, RDS keeps the major version and applies minor versions itself.
RDS_POSTGRES_MAJOR = "17"
RDS_POSTGRES_PARAMETER_FAMILY = "postgres17"
ELASTICACHE_REDIS_VERSION = "7.1"  # GitLab 18 supports Redis 7; ElastiCache for Redis OSS 7.1
ELASTICACHE_PARAMETER_FAMILY = "redis7"
# On kubeconfig stacks: CloudNativePG's operand image. The `system` flavour carries barman-cloud,
# which the in-tree `barmanObjectStore` backups run. Digests were read from public repositories
# that pin them, not from the registries (offline); confirm on every bump with `crane digest`.
CNPG_POSTGRES_IMAGE = Image(
    "ghcr.io/cloudnative-pg/postgresql", "17.8-system-bookworm",
    "sha256:9714cbca68836d0a4f5e455d8078afafd60e0751d28944935309be90d9c4ec98",
)
# Redis for GitLab and Harbor on kubeconfig stacks: Valkey (BSD, the Linux Foundation's Redis fork),
# not the Bitnami images whose free updates ended.
VALKEY_IMAGE = Image(
    "docker.io/valkey/valkey", "8.1-alpine",
    "sha256:a038175878d66b9d274fbf8be73c0305e93798b83917647f167e18cef3c71eec",
)
# The AWS CLI, which uploads the platform's backups (components/backups.py): S3 on EKS through
# workload identity, an S3-compatible target elsewhere (AWS_ENDPOINT_URL needs 2.13 or newer).
# Pinned by tag: its digest could not be resolved offline when the pin was added; fill it in
# with `crane digest docker.io/amazon/aws-cli:<tag>` on the next bump.
AWS_CLI_IMAGE = "docker.io/amazon/aws-cli"
AWS_CLI_TAG = "2.22.35"
# Vault's CLI for the raft snapshot job: the server image of CHARTS["vault"] (its values' server.image).
VAULT_IMAGE = "docker.io/hashicorp/vault"
VAULT_TAG = "2.0.4"

# Dragonfly (components/dragonfly.py): the images CHARTS["dragonfly"] 1.7.4 ships, pulled through Harbor's
# `approved` (promote them first, `approved/docker.io/dragonflyoss/<name>`). Pinned by tag: their digests
# could not be resolved offline (`crane digest docker.io/dragonflyoss/<name>:<tag>` on the next bump).
DRAGONFLY_TAGS: dict[str, str] = {"manager": "v2.5.0", "scheduler": "v2.5.0", "client": "v1.4.0", "dfinit": "v1.4.0"}

# OpenUnison's session reaper (components/oidc_sessions.py): a standard-library script on the
# promote-image job's pinned Python.
SESSION_REAPER_IMAGE = PROMOTE_IMAGE

# Velero (components/velero.py): the object-store plugin for S3 and S3-compatible stores, the line
# upstream pairs with Velero 1.18 (plugin v1.14.x). Pinned by tag, as the chart pins Velero's own
# image: the digests could not be resolved offline (`crane digest docker.io/velero/velero-plugin-for-aws:<tag>`).
VELERO_AWS_PLUGIN_IMAGE = "docker.io/velero/velero-plugin-for-aws:v1.14.2"
# Velero itself, as CHARTS["velero"] ships it (its appVersion): the server, its node agent, and the
# init container a file-system restore adds to each restored pod (through Harbor's `approved`).
VELERO_IMAGE = "docker.io/velero/velero"
VELERO_TAG = "v1.18.1"
# The EKS `snapshot-controller` add-on (the CSI snapshot CRDs and controller, which Velero's CSI
# snapshots of EBS volumes need), by Kubernetes minor. Refresh with
# `aws eks describe-addon-versions --kubernetes-version <v> --addon-name snapshot-controller`.
EKS_SNAPSHOT_CONTROLLER: dict[str, str] = {"1.33": "v8.3.0-eksbuild.1"}

# The label-enforcing proxy in front of each workload cluster's Prometheus (components/prometheus_query.py):
# prometheus-community's prom-label-proxy. Its digest was read from a public repository that pins it
# (opendatahub-io/opendatahub-operator 7d71d4c, annotated v0.12.1), not from the registry (offline);
# confirm on every bump with `crane digest quay.io/prometheuscommunity/prom-label-proxy:<tag>`.
PROM_LABEL_PROXY_IMAGE = Image(
    "quay.io/prometheuscommunity/prom-label-proxy", "v0.12.1",
    "sha256:28f81efb6574556011e7914851faaccce4a64b1b72a338aaaf3cc9d45e66fd96",
)

# OpenUnison's cookie-sticky proxy (components/sticky_proxy.py): HAProxy, the official image. Its digest was read
# from a public repository that pins it in several acceptance scripts, not from the registry (offline); confirm on
# every bump with `crane digest docker.io/library/haproxy:<tag>`.
HAPROXY_IMAGE = Image(
    "docker.io/library/haproxy", "3.2.23-alpine",
    "sha256:0666a2c2f41d341084ed2da85392b48cdcd766adfa28231f31305724ed5c6ea5",
)

# The merge-request bot's job (components/merge_request_bot.py): the platform pipeline's own image
# (.gitlab-ci.yml `default`; bookworm, not slim: it has git). Pin its digest there and here together
# once resolved from the registry.
MR_BOT_IMAGE = "docker.io/library/python:3.11.7-bookworm"
