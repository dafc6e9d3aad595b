"""Software supply chain: public images in quarantine, tenants' signing keys, starter content.

* Accepted CVEs (`CveExceptions`, platform level): Harbor's system CVE allowlist, the only one its
  pull gate reads (no project has its own), with the earliest entry's expiry, which Harbor enforces.
* Quarantine (`PublicImageQuarantine`, platform level): one Harbor proxy-cache project per
  public registry (`proxy-docker-io`, ...). Caches are private and scanned: no tenant robot can
  pull from them. Images the platform team has vetted are copied into the public-read
  `approved` project and signed with the platform's promotion key (the `promote-image` job of
  this repository's pipeline), where tenants' builds and workloads take them from. Its tags are
  immutable (but Trivy's databases and cosign's signatures): a promoted tag never moves.
* Signing: each tenant has an ECDSA P-256 key `<tenant>-cosign` in Vault's `transit` mount,
  never exportable, rotated by `pulumi up` (components/signing.py). `sign_policy()` lets the
  tenant's CI role sign with that key and read its public half, nothing else (attached in
  components/tenant_secrets.py); the image verifier admits the tenant's images by that key
  only (components/image_verifier.py).
* Starter content (`starter_files()`), written once into a new tenant's projects: a pipeline
  in `app` (rootless build, scan, push, sign, bump ops-dev) and, in `ops` and `ops-dev`, the
  app as an Argo Rollout per environment (components/tenant_rollout.py) that passes the
  platform's Gatekeeper constraints.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import pulumi
import pulumiverse_harbor as harbor

from components import yaml_text
from components.signing import sign_rules
from components.tenancy import ENVIRONMENTS, TRANSIT_MOUNT, KV_MOUNT, OpsLayout, Severity, SupplyChainPolicy, cosign_key
from components.tenant_rollout import APP, MANIFEST, manifest_path, ops_manifests
from components.versions import BUILDAH_IMAGE, COSIGN_IMAGE as COSIGN_PIN, GIT_IMAGE, TRIVY_DATABASES, TRIVY_IMAGE

# Public registry host -> (Harbor adapter, endpoint) for its proxy cache.
PUBLIC_REGISTRIES: dict[str, tuple[str, str]] = {
    "docker.io": ("docker-hub", "https://hub.docker.com"),
    "ghcr.io": ("github", "https://ghcr.io"),
    "quay.io": ("quay", "https://quay.io"),
    "registry.k8s.io": ("docker-registry", "https://registry.k8s.io"),
    "gcr.io": ("google", "https://gcr.io"),
    "mcr.microsoft.com": ("docker-registry", "https://mcr.microsoft.com"),
}
APPROVED_PROJECT = "approved"
SIGNATURE_TAGS = "sha256-*.sig"  # cosign's signature tags (Harbor's own pattern: src/server/middleware/cosign/cosign.go:43)


def proxy_project_name(host: str) -> str:
    """`docker.io` -> `proxy-docker-io`."""
    return "proxy-" + host.replace(".", "-")


def database_repositories() -> str:
    """Trivy's databases in `approved`, as one Harbor (doublestar) pattern: `ghcr.io/aquasecurity/{trivy-db,trivy-java-db}`."""
    folders, names = zip(*(database.rpartition(":")[0].rsplit("/", 1) for database in TRIVY_DATABASES))
    if len(set(folders)) != 1:
        raise ValueError(f"TRIVY_DATABASES must share one repository folder for the immutability rule: {TRIVY_DATABASES}")
    return f"{folders[0]}/{{{','.join(names)}}}"


def sign_policy(tenant: str) -> str:
    """Sign with the tenant's cosign key and read its public key; nothing else in transit."""
    return sign_rules(TRANSIT_MOUNT, cosign_key(tenant))


@dataclass(frozen=True)
class PublicImageQuarantineArgs:
    registries: list[str]  # hosts of PUBLIC_REGISTRIES
    policy: SupplyChainPolicy


class PublicImageQuarantine(pulumi.ComponentResource):
    """Proxy caches of public registries (quarantine) and the `approved` project."""

    proxies: dict[str, harbor.Project]  # host -> its proxy-cache project
    approved: harbor.Project
    immutable_promotions: harbor.ImmutableTagRule  # every tag of `approved` but Trivy's databases and signatures

    def __init__(self, name: str, provider: pulumi.ProviderResource, args: PublicImageQuarantineArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:harbor:PublicImageQuarantine", name, None, opts)
        on_harbor = pulumi.ResourceOptions(parent=self, provider=provider)
        self.proxies = {}
        for host in args.registries:
            adapter, endpoint = PUBLIC_REGISTRIES[host]
            project = proxy_project_name(host)
            registry = harbor.Registry(
                f"{name}-{project}", name=host, provider_name=adapter, endpoint_url=endpoint, insecure=False, opts=on_harbor
            )
            self.proxies[host] = harbor.Project(
                f"{name}-{project}",
                name=project,
                registry_id=registry.registry_id,
                public=False,  # quarantine: only the platform team and promotion pull from it
                vulnerability_scanning=True,
                deployment_security=args.policy.severity.harbor_gate,
                opts=pulumi.ResourceOptions.merge(on_harbor, pulumi.ResourceOptions(depends_on=[registry])),
            )
        # Vetted public images: readable by everyone (they are public images), pushed only by promotion.
        self.approved = harbor.Project(
            f"{name}-{APPROVED_PROJECT}",
            name=APPROVED_PROJECT,
            public=True,
            vulnerability_scanning=True,
            deployment_security=args.policy.severity.harbor_gate,
            force_destroy=False,
            opts=on_harbor,
        )
        # A promoted tag names the bytes that were scanned and signed, for good: runners, Velero and virtual
        # clusters pull these by tag, most where no verifier looks. Harbor refuses any push to such a tag,
        # whoever pushes (v2.15.1 src/server/middleware/immutable/pushmf.go:69-75). Two things must move:
        # Trivy's databases (the daily schedule) and cosign's `sha256-<digest>.sig` (a re-signature).
        self.immutable_promotions = harbor.ImmutableTagRule(
            f"{name}-{APPROVED_PROJECT}-immutable",
            project_id=self.approved.id,
            repo_excluding=database_repositories(),
            tag_excluding=SIGNATURE_TAGS,
            opts=on_harbor,
        )
        self.register_outputs({"proxies": [proxy_project_name(h) for h in args.registries], "approved": APPROVED_PROJECT})


@dataclass(frozen=True)
class CveExceptionsArgs:
    policy: SupplyChainPolicy  # its cve_allowlist: the accepted CVEs, each until a day


class CveExceptions(pulumi.ComponentResource):
    """Harbor's system CVE allowlist, as the program keeps it: the platform's accepted CVEs.

    No Harbor project has a list of its own (the provider then makes each reuse this one), so this is
    the one list Harbor's pull gate skips CVEs by, for every tenant, `approved` and the caches; an edit
    in Harbor's UI is drift (the drift schedule reports it, `pulumi up --refresh` undoes it). It carries an expiry Harbor enforces
    itself (`SupplyChainPolicy.allowlist_expiry`): an exception ends on its day even if no `pulumi up`
    runs then. Promotion's gate (.ci/promote-image.py) counts every vulnerability, allowlisted or not.
    """

    allowlist: harbor.ConfigSecurity

    def __init__(self, name: str, provider: pulumi.ProviderResource, args: CveExceptionsArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:harbor:CveExceptions", name, None, opts)
        today = date.today()
        self.allowlist = harbor.ConfigSecurity(
            name,
            cve_allowlists=args.policy.active_cves(today),
            expires_at=args.policy.allowlist_expiry(today),
            opts=pulumi.ResourceOptions(parent=self, provider=provider),
        )
        self.register_outputs({"cves": self.allowlist.cve_allowlists, "expiresAt": self.allowlist.expires_at})


# --- starter content ----------------------------------------------------------------------

# Tool images (components/versions.py), taken from the `approved` project: promote them first with
# the `promote-image` job of this repository's pipeline (.gitlab-ci.yml, README "Supply chain").

# cosign's release image, as promoted (tag); the sign job pulls it by digest (COSIGN_PIN). It has
# no shell, so it is not a job image: the sign job runs in the buildah image and copies cosign out.
COSIGN_IMAGE = f"{COSIGN_PIN.repository}:{COSIGN_PIN.tag}"

APP_IMAGE = APP  # the repository in the tenant's Harbor project
RELEASE_TAG_RULE = r"$CI_COMMIT_TAG =~ /^v[0-9]+\.[0-9]+\.[0-9]+$/"


def approved(host: str, image: str) -> str:
    return f"{host}/{APPROVED_PROJECT}/{image}"


def trivy_databases(host: str) -> tuple[str, str]:
    """Where every Trivy of the platform reads trivy-db and trivy-java-db: the copies the
    `promote-trivy-db` schedule keeps in `approved` (public: no login)."""
    db, java_db = (approved(host, database) for database in TRIVY_DATABASES)
    return db, java_db


def trivy_severities(severity: Severity) -> str:
    """Trivy's list of the severities at or above `severity`, and UNKNOWN ("" for none: nothing
    fails). A vulnerability no source has rated yet fails the build: Harbor's pull gate ranks
    Unknown with None and never refuses it, so the scan job is the one gate that can."""
    above = [s.upper() for s in severity.and_above()]
    return ",".join(["UNKNOWN", *above] if above else [])


# TLS in the jobs that run in the buildah image: the system roots plus, where the platform CA is
# private, the runner's CA (CI_SERVER_TLS_CA_FILE), as .ci/promote-image.py trusts; never skipped.
# curl gets the bundle with --cacert, buildah and cosign (Go) through SSL_CERT_FILE. It lives
# outside the project directory, so it is never an artifact (it holds no secret anyway).
SYSTEM_CA_FILE = "/etc/pki/tls/certs/ca-bundle.crt"  # Fedora's bundle, in BUILDAH_IMAGE
TRIVY_SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"  # Alpine's bundle, in TRIVY_IMAGE
CA_BUNDLE = "/tmp/ca-bundle.pem"


def trust(system_ca_file: str) -> list[str]:
    return [
        f'cat {system_ca_file} ${{CI_SERVER_TLS_CA_FILE:+"$CI_SERVER_TLS_CA_FILE"}} > {CA_BUNDLE}',
        f"export SSL_CERT_FILE={CA_BUNDLE}",
    ]


TRUST = trust(SYSTEM_CA_FILE)
# The only HTTP client of the starter pipeline: HTTPS only, the certificate verified against the
# bundle above, failing on HTTP errors. (BusyBox wget, in cosign's -dev image, verifies nothing.)
CURL = 'curl --silent --show-error --fail --proto =https --cacert "$SSL_CERT_FILE"'
# Log in to Vault with the job's ID token (no secret CI variable) and read the tenant's push robot.
# The JWT and the Vault token reach curl on stdin (printf is a shell builtin), not on a command
# line; the token stays in the job's shell (cosign reads it from the environment), never in a file.
VAULT_ROBOT = [
    'VAULT_TOKEN="$(printf \'{"role":"%s","jwt":"%s"}\' "$VAULT_ROLE" "$VAULT_ID_TOKEN" | '
    + CURL + ' --data @- "$VAULT_ADDR/v1/auth/$VAULT_AUTH_PATH/login" '
    + '| sed -n \'s/.*"client_token": *"\\([^"]*\\)".*/\\1/p\')"',
    'export VAULT_TOKEN="${VAULT_TOKEN:?Vault login failed}"',
    'ROBOT_JSON="$(printf \'X-Vault-Token: %s\\n\' "$VAULT_TOKEN" | '
    + CURL + f' --header @- "$VAULT_ADDR/v1/{KV_MOUNT}/data/$HARBOR_PROJECT/harbor-push")"',
    'ROBOT="$(printf \'%s\' "$ROBOT_JSON" | sed -n \'s/.*"username": *"\\([^"]*\\)".*/\\1/p\')"',
    'SECRET="$(printf \'%s\' "$ROBOT_JSON" | sed -n \'s/.*"password": *"\\([^"]*\\)".*/\\1/p\')"',
]
# One registry login for buildah and cosign: the robot secret reaches buildah on stdin (never a
# command line, where /proc and process listings show it) and is kept in one auth file outside the
# project directory (never an artifact), which buildah (REGISTRY_AUTH_FILE) and cosign
# (DOCKER_CONFIG/config.json) both read.
AUTH_DIR = "/tmp/registry-auth"
REGISTRY_LOGIN = [
    f"export DOCKER_CONFIG={AUTH_DIR} REGISTRY_AUTH_FILE={AUTH_DIR}/config.json",
    f"(umask 077 && mkdir -p {AUTH_DIR})",
    'printf \'%s\' "$SECRET" | buildah login --password-stdin --username "$ROBOT" "$HARBOR_REGISTRY"',
    "unset SECRET ROBOT_JSON",
]
# The tag of a tenant's runner for protected refs (components/gitlab_runner.py): the jobs that hold
# the tenant's release credentials, and those that build what they release, run there, on nodes
# where no branch's build runs.
PROTECTED_RUNNER_TAG = "protected"
PROTECTED_PUSH_RULE = '$CI_COMMIT_REF_PROTECTED == "true" && $CI_PIPELINE_SOURCE =~ /^(push|web|schedule)$/'
# A protected push's jobs, on the runner for protected refs; every other pipeline's but a merge
# request's (GitLab's default for a job without rules) on the runner for any ref.
ON_PROTECTED_RUNNER: dict[str, Any] = {"rules": [{"if": PROTECTED_PUSH_RULE}], "tags": [PROTECTED_RUNNER_TAG]}
BRANCH_RULES = [{"if": PROTECTED_PUSH_RULE, "when": "never"}, {"if": '$CI_PIPELINE_SOURCE != "merge_request_event"'}]
RELEASE_BUILDS = ("build-release", "scan-release")
TAG_LINE = 'export TAG="${CI_COMMIT_TAG:-$CI_COMMIT_SHORT_SHA}"'
COSIGN_DIR = "/tmp/cosign"


def build_and_scan(host: str) -> dict[str, dict[str, Any]]:
    """The build (rootless buildah) and scan (trivy) jobs. A branch's pipeline runs them on the
    runner for any ref; a protected push's (`RELEASE_BUILDS`) on the protected runner, whose nodes
    run no branch's code (with the build's unconfined seccomp and AppArmor): no branch job shares a
    node with the bytes that push and sign release."""
    build = {
        "stage": "build",
        "image": approved(host, BUILDAH_IMAGE),
        "script": [
            *TRUST,  # base images come from Harbor
            'buildah build --format oci --tag "$IMAGE:$TAG" .',
            'buildah push "$IMAGE:$TAG" oci-archive:image.tar',
        ],
        "artifacts": {"paths": ["image.tar"], "expire_in": "1 day"},
    }
    scan = {
        "stage": "scan",
        "image": {"name": approved(host, TRIVY_IMAGE), "entrypoint": [""]},
        # The databases from Harbor: the job reaches nothing else (the runner's egress).
        "variables": dict(zip(("TRIVY_DB_REPOSITORY", "TRIVY_JAVA_DB_REPOSITORY"), trivy_databases(host))),
        "script": [
            *trust(TRIVY_SYSTEM_CA_FILE),
            # Empty (severity "none"): report only.
            'trivy image --input image.tar --exit-code "$([ -n "$TRIVY_SEVERITY" ] && echo 1 || echo 0)"',
        ],
    }
    return {
        "build": {**build, "rules": BRANCH_RULES},
        "scan": {**scan, "rules": BRANCH_RULES},
        **{name: {**job, **ON_PROTECTED_RUNNER} for name, job in zip(RELEASE_BUILDS, (build, scan))},
    }


def app_pipeline(tenant: str, host: str, severity: Severity) -> dict[str, Any]:
    """The `app` project's .gitlab-ci.yml: build (rootless buildah), scan (trivy), push, sign
    (cosign with the Vault transit key) and, for a release tag, a merge request in ops-dev."""
    cosign_source = f"{approved(host, COSIGN_PIN.repository)}@{COSIGN_PIN.digest}"
    return {
        "stages": ["build", "scan", "release", "deploy"],
        "variables": {
            "IMAGE": f"$HARBOR_REGISTRY/$HARBOR_PROJECT/{APP_IMAGE}",
            "STORAGE_DRIVER": "vfs",  # rootless buildah without fuse
            "BUILDAH_ISOLATION": "chroot",
            # The scan gate, as Harbor's pull gate was configured when the project was created
            # (platform:supplyChain.severity); Harbor's gate stays the one that follows the config.
            "TRIVY_SEVERITY": trivy_severities(severity),
        },
        "default": {"before_script": [TAG_LINE]},
        **build_and_scan(host),
        # push and sign share the Vault login and the robot read (GitLab `extends`). They stay two
        # jobs: a release tag is immutable in Harbor, so a failed signature is retried alone.
        ".harbor-robot": {
            # Vault's CI role answers only these pipelines (VaultFederation.bind_ci): elsewhere the
            # image is built and scanned, not pushed.
            **ON_PROTECTED_RUNNER,
            "image": approved(host, BUILDAH_IMAGE),
            "id_tokens": {"VAULT_ID_TOKEN": {"aud": "$VAULT_ADDR"}},
            "before_script": [TAG_LINE, *TRUST, *VAULT_ROBOT, *REGISTRY_LOGIN],
        },
        "push": {
            "stage": "release",
            "extends": ".harbor-robot",
            "script": [
                'buildah push --digestfile digest oci-archive:image.tar "docker://$IMAGE:$TAG"',
            ],
            "artifacts": {"paths": ["digest"], "expire_in": "1 day"},
        },
        "sign": {
            "stage": "release",
            "extends": ".harbor-robot",
            "needs": ["push"],
            "variables": {"TRANSIT_SECRET_ENGINE_PATH": TRANSIT_MOUNT},
            "script": [
                # cosign, copied out of its release image pinned by digest and pulled through
                # `approved` (nothing downloaded from the internet): a build with no RUN step, so
                # rootless with the settings above exactly as the build job.
                f"printf 'FROM {cosign_source} AS cosign\\nFROM scratch\\nCOPY --from=cosign /ko-app/cosign /cosign\\n' "
                f"| buildah build --quiet --output type=local,dest={COSIGN_DIR} -f -",
                # Sign the pushed digest with the tenant's transit key (it never leaves Vault).
                f'{COSIGN_DIR}/cosign sign --yes --tlog-upload=false --key hashivault://{cosign_key(tenant)} '
                '"$IMAGE@$(cat digest)"',
            ],
        },
        "bump-ops-dev": {
            "stage": "deploy",
            "rules": [{"if": RELEASE_TAG_RULE}],
            # A downstream pipeline in ops-dev opens the merge request with its own job token.
            "variables": {"IMAGE_TAG": "$CI_COMMIT_TAG"},
            "trigger": {"project": f"{tenant}/ops-dev", "branch": "main"},
        },
    }


def ops_pipeline(host: str, manifests: list[str]) -> dict[str, Any]:
    """The ops projects' .gitlab-ci.yml: on a trigger from `app`, a branch that bumps the image in
    `manifests` and a merge request (git push options), pushed with the job token: no secret variable."""
    return {
        "bump-image": {
            "image": {"name": approved(host, GIT_IMAGE), "entrypoint": [""]},
            "rules": [{"if": '$CI_PIPELINE_SOURCE == "pipeline" && $IMAGE_TAG =~ /^v[0-9]+\\.[0-9]+\\.[0-9]+$/'}],
            # On main, with the job token of whoever pushed the release tag: a release job.
            "tags": [PROTECTED_RUNNER_TAG],
            "script": [
                'git config user.name "$GITLAB_USER_NAME" && git config user.email "$GITLAB_USER_EMAIL"',
                'git remote set-url origin "https://gitlab-ci-token:${CI_JOB_TOKEN}@${CI_SERVER_HOST}/${CI_PROJECT_PATH}.git"',
                'git switch -c "bump/app-$IMAGE_TAG"',
                # Both environments: ops-dev deploys dev/, and the promotion merge request carries prod/ to ops.
                f'sed -i "s#\\(image: .*/{APP_IMAGE}:\\).*#\\1$IMAGE_TAG#" {" ".join(manifests)}',
                f'git commit -am "Deploy {APP_IMAGE} $IMAGE_TAG"',
                'git push -o merge_request.create -o merge_request.target=main '
                '-o "merge_request.title=Deploy app $IMAGE_TAG" origin "bump/app-$IMAGE_TAG"',
            ],
        }
    }


def starter_files(
    tenant: str, host: str, severity: Severity, apps_domain: str, virtual: bool = False, layout: OpsLayout = OpsLayout.ENVIRONMENTS,
) -> dict[str, dict[str, str]]:
    """Project -> file path -> content: what a new tenant's projects start with (`virtual`: isolation
    vcluster). The ops projects by `layout`: `dev/` and `prod/`; `root`, one `app.yaml` each, at the
    paths tenants onboarded before the folders have (so their state stays); `moved`, no manifest."""
    app = {".gitlab-ci.yml": yaml_text.dump(app_pipeline(tenant, host, severity), sort_keys=False)}

    def manifests(environment: str) -> str:
        return yaml_text.dump_all(ops_manifests(tenant, host, environment, apps_domain, virtual), sort_keys=False)

    def pipeline(paths: list[str]) -> str:
        return yaml_text.dump(ops_pipeline(host, paths), sort_keys=False)

    if layout is OpsLayout.ROOT:  # one file per repository, as before: ops-dev's is dev's, ops's is prod's
        return {"app": app, **{project: {".gitlab-ci.yml": pipeline([MANIFEST]), MANIFEST: manifests(environment)}
                               for project, environment in (("ops", "prod"), ("ops-dev", "dev"))}}
    ops = {".gitlab-ci.yml": pipeline([manifest_path(e) for e in ENVIRONMENTS])}
    if layout is OpsLayout.ENVIRONMENTS:
        ops.update({manifest_path(e): manifests(e) for e in ENVIRONMENTS})
    return {"app": app, "ops": ops, "ops-dev": dict(ops)}
