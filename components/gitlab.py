"""GitLab on the control plane: minimal chart, OIDC through OpenUnison, objects in S3 on EKS and in
the stack's object store elsewhere (never the chart's MinIO), a rails secret the program owns
(components/gitlab_rails_secret.py), and the platform's own admin API token, created and rotated
without a human step.

The admin token (see `AdminToken`): a Job in the cluster asks the chart's toolbox pod to run
`gitlab-rails runner` (no credential needed there: it talks to the database) to ensure a
`platform-bot` admin user and a personal access token that is active with more than 15 of
its 30 days left, creating a new one otherwise. The Job writes the value into one
Kubernetes Secret (its only write permission), the program reads that Secret back in the
engine after the Job has completed, and the value configures the pulumi-gitlab provider as a
Pulumi secret. A CronJob runs the same check hourly, so a revoked, expired or deleted token,
or a blocked bot, is repaired in the cluster between runs, and the Job is re-created every
15 days (`pulumiverse_time.Rotating`, on `pulumi up --refresh`) so a run checks it too.

SSH (see `SshHostKeys`): gitlab-shell presents host keys the program generates (pulumi-tls,
ed25519 and ECDSA P-256) and hands to the chart as a Secret, so ArgoCD's known_hosts can list
exactly them: keys the chart's secrets Job made up would be unknown to the program until
someone scanned them, and trusting a scanned key is trusting whoever answered the scan.
Clients reach gitlab-shell through the ingress load balancer's SSH entrypoint
(components/ingress.py), on the port GitLab shows in clone URLs.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pulumi
import pulumi_gitlab as gitlab
import pulumi_kubernetes as k8s
import pulumi_random as random
import pulumiverse_time as time

from components import yaml_text
from components.cluster import ClusterHandle
from components.aws import bucket_name, bucket_role, irsa_credential, private_bucket
from components.backups import BackupTarget, BucketAccess
from components.common import Backend, ObjectStoreTarget, OidcClient, PlatformGroups, TcpEntrypoint, checksum, rotated_key
from components.data_stores import PASSWORD_KEY, REDIS_PASSWORD_KEY, SLICE as DATA_STORES, DataStores, ServiceStores, object_store_credential
from components.gitlab_rails_secret import SECRET_NAME as RAILS_SECRET, ExistingKeys, RailsSecret, RailsSecretArgs
from components.egress import Admit, dns, hold_namespace, object_stores, to_api_server
from components.helm import metadata, namespace, release, spread, workload_service_account, sized
from components.ingress import HTTPS_PORT, LoadBalancerCidr, egress_to_platform, from_ingress_controller, load_balancer_networks, route, tcp_route
from components.inventory import HOUR, STATE, Credential, CredentialInventory, generated_password, issued_token, refreshed
from components.oidc_sessions import SESSION_MAX_SECONDS
from components.service import ControlPlaneParts, PlatformNamespace, ServiceSettings, ServiceSlice, StatefulServiceArgs, TenantParts
from components.tenancy import Isolation
from components.tenant_gitlab import TenantRepositories, TenantRepositoriesArgs
from components.versions import GITLAB_KUBECTL_DIGEST, GITLAB_KUBECTL_IMAGE, GITLAB_KUBECTL_TAG, GITLAB_VERSION

NAMESPACE = "gitlab"
RELEASE = "gitlab"
TOOLBOX_DEPLOYMENT = f"{RELEASE}-toolbox"  # the chart's toolbox Deployment, container "toolbox"

# Secrets the chart reads by name.
ROOT_PASSWORD_SECRET = "gitlab-initial-root-password"
OMNIAUTH_SECRET = "gitlab-omniauth-openunison"
OBJECT_STORE_SECRET = "gitlab-object-storage"
CA_SECRET = "platform-ca"
SERVICE_ACCOUNT = "gitlab"  # on EKS: carries the IAM role for S3, for S3_TIERS' pods only
S3_TIERS = ("webservice", "sidekiq")

# The admin token.
BOT_USERNAME = "platform-bot"
TOKEN_NAME = "platform-bootstrap"
TOKEN_SECRET = "gitlab-platform-bot-token"
TOKEN_SCOPES = ("api",)
TOKEN_LIFETIME_DAYS = 30
TOKEN_MIN_DAYS_LEFT = 15  # renewed when fewer days are left; also the Job's rotation period
BOT_LABEL = "gitlab-platform-bot"  # app.kubernetes.io/name of the Job's and CronJob's pods

# Backups (components/backups.py): the s3cmd configuration of the backup bucket, the toolbox's own
# service account on EKS, and what backup-utility leaves out (Harbor is the registry; objects its
# s3cmd configuration cannot reach).
BACKUP_CONFIG_SECRET = "gitlab-backup-s3cfg"
# backup-utility's tarball: <unix time>_<YYYY_MM_DD>_<GitLab version>_gitlab_backup.tar (gitlab/tmp/ is a restore's).
BACKUP_KEY = r"^[0-9]+_[0-9]{4}_[0-9]{2}_[0-9]{2}_[^/]+_gitlab_backup\.tar$"
TOOLBOX_SERVICE_ACCOUNT = "gitlab-toolbox"
# The registry is Harbor's; the database has backups of its own (RDS on EKS, CloudNativePG elsewhere).
BACKUP_SKIP = ("registry", "db")
OBJECTS_SKIP = ("artifacts", "lfs", "packages", "uploads", "terraform_state", "ci_secure_files", "external_diffs", "pages")

# Object types GitLab stores in object storage; bucket suffix per chart key.
OBJECT_TYPES = {"lfs": "lfs", "artifacts": "artifacts", "uploads": "uploads", "packages": "packages"}

# The services whose endpoints tenants' project webhooks call: ArgoCD (tenant() below). Their
# hostname is `<key>.<domain>` (ControlPlaneParts.expose); components/argocd.py imports this module.
WEBHOOK_SERVICES = ("argocd",)

OIDC_PROVIDER = "openid_connect"
# On the webservice pods: GitLab reads its OmniAuth providers only at start, so a new
# document (a rotated client secret) must restart them.
OMNIAUTH_CHECKSUM_ANNOTATION = "platform.io/omniauth-checksum"

# SSH. The chart's gitlab-shell Service, and its port: the chart's default `global.shell.port`,
# which is also the port GitLab shows in clone URLs.
SHELL_SERVICE = f"{RELEASE}-gitlab-shell"
WORKHORSE = Backend(f"{RELEASE}-webservice-default", NAMESPACE, 8181)  # the chart's webservice Service: workhorse, plain HTTP
SHELL_PORT = 22
# What Traefik reaches in the namespace: Workhorse, where gitlab.<domain>'s route goes (`route`, WORKHORSE),
# and gitlab-shell's sshd, where the ssh entrypoint's IngressRouteTCP goes (the chart's container
# ports, webservice `service.workhorseInternalPort` and gitlab-shell `service.internalPort`); nothing outside the namespace
# reaches Gitaly, Rails' own port, the database or Redis.
INGRESS_ROUTED = [
    Admit("gitlab-webservice-from-ingress", {"app": "webservice", "release": RELEASE}, [from_ingress_controller()], (WORKHORSE.port,)),
    Admit("gitlab-shell-from-ingress", {"app": "gitlab-shell", "release": RELEASE}, [from_ingress_controller()], (2222,)),
]
# GitLab's tiers that use PostgreSQL: those the chart gives a database.yml (webservice, sidekiq,
# toolbox and its backup CronJob, migrations) and gitlab-exporter (its configmap's database probes);
# not Gitaly or gitlab-shell, which parse what anyone sends over Git and SSH.
DATABASE_CLIENTS = [{"app": tier, "release": RELEASE} for tier in ("webservice", "sidekiq", "toolbox", "migrations", "gitlab-exporter")]
# And Redis (off EKS a Valkey in the namespace): the same tiers, the only ones the chart hands the Redis
# password (Secret gitlab-redis) and a resque.yml/redis configuration; not Gitaly, gitlab-shell or its Jobs.
REDIS_CLIENTS = DATABASE_CLIENTS
HOST_KEYS_SECRET = "gitlab-ssh-host-keys"  # keys `ssh_host_<type>_key` and `.pub`, as gitlab-shell reads them
# Host key type -> (pulumi-tls algorithm, ECDSA curve). No RSA: OpenSSH and ArgoCD's Go SSH
# client both speak ed25519 and ECDSA, and gitlab-shell serves the keys it is given.
HOST_KEY_TYPES: dict[str, tuple[str, str | None]] = {"ed25519": ("ED25519", None), "ecdsa": ("ECDSA", "P256")}
HOST_KEY_LIFETIME_DAYS = 90
HOST_KEY_ROTATION_DAYS = HOST_KEY_LIFETIME_DAYS // 2
# On the gitlab-shell pods: they copy the host keys at start, so new keys must restart them.
HOST_KEYS_CHECKSUM_ANNOTATION = "platform.io/ssh-host-keys-checksum"
# On the Rails pods: they read the database password and Redis token at start.
DATA_STORES_CHECKSUM_ANNOTATION = "platform.io/data-stores-checksum"


def kubectl_image() -> str:
    """The pinned GitLab kubectl image, by digest when one is recorded."""
    ref = f"{GITLAB_KUBECTL_IMAGE}:{GITLAB_KUBECTL_TAG}"
    return f"{ref}@{GITLAB_KUBECTL_DIGEST}" if GITLAB_KUBECTL_DIGEST else ref


def redirect_uri(hostname: str) -> str:
    """The OIDC redirect URI OpenUnison must allow for GitLab."""
    return f"https://{hostname}/users/auth/{OIDC_PROVIDER}/callback"


@dataclass(frozen=True, kw_only=True)
class GitLabArgs(StatefulServiceArgs):
    # replicas: webservice, sidekiq and gitlab-shell minimum; aws: object storage on S3
    data_stores: DataStores  # PostgreSQL and Redis, outside the chart
    storage: str = "50Gi"  # Gitaly's repository volume
    depends_on: Sequence[pulumi.Resource] = ()  # e.g. the ingress controller
    # PEM file with the platform CA on the machine that runs `pulumi up`, for the gitlab
    # provider; None: the system trust store (SSL_CERT_FILE), as for every Go provider.
    provider_ca_file: str | None = None
    # git over SSH from outside the cluster: routed from this ingress entrypoint, with host keys
    # the program owns. None: no route, and gitlab-shell keeps the host keys the chart makes.
    ssh: TcpEntrypoint | None = None
    # The rails secret's keys of a GitLab that made its own (Pulumi secrets, by secrets.yml key); None: generated.
    rails_secret: Mapping[str, pulumi.Output[Any]] | None = None
    # The top-level group of the platform's own repository (platform:pipeline.projectPath), which
    # Vault's and AWS's CI trust name by path: the program owns it, so no account can take that path.
    platform_group: str | None = None
    # Hostnames behind the platform's ingress that project webhooks call (ArgoCD's, for the tenants'
    # ops projects): GitLab refuses hooks to local addresses, which a kubeconfig cluster's load balancer has.
    webhook_hosts: Sequence[str] = ()
    # Where the ingress load balancer's addresses are when the cluster does not hand them to Traefik's
    # pods itself (ingress.load_balancer_networks): the Rails tiers reach OpenUnison and ArgoCD by their public names.
    load_balancer_cidrs: Sequence[pulumi.Input[str]] = ()


class GitLab(pulumi.ComponentResource):
    url: str
    ssh_host: str  # gitlab.<domain>, as in git@gitlab.<domain>:<group>/<project>.git
    ssh_known_hosts: pulumi.Output[str] | None  # known_hosts lines of gitlab-shell's host keys (public); None without SSH
    oidc_redirect_uri: str
    release: k8s.helm.v3.Release
    root_password: pulumi.Output[str]  # a Pulumi secret; not exported
    admin_token: pulumi.Output[str]  # a Pulumi secret; not exported
    provider: gitlab.Provider
    platform_group: gitlab.Group | None  # the group of platform:pipeline.projectPath (its merge-request bot's too)

    def __init__(self, name: str, cluster: ClusterHandle, args: GitLabArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:gitlab:GitLab", name, None, opts)
        if args.ssh is not None and args.ssh.port != SHELL_PORT:
            # Clone URLs, known_hosts lines and the load balancer must all name one port.
            raise ValueError(f"GitLab advertises SSH on port {SHELL_PORT}; the ingress SSH entrypoint uses {args.ssh.port}")
        args.inventory.register(*credentials(name, args))
        self.url, self.ssh_host = args.exposure.url, args.exposure.hostname
        self.oidc_redirect_uri = redirect_uri(args.exposure.hostname)
        ns = namespace(SLICE.namespace, cluster, self)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[ns])
        host_keys: SshHostKeys | None = None
        self.ssh_known_hosts = None
        if args.ssh is not None:
            host_keys = SshHostKeys(
                f"{name}-ssh-host-keys",
                cluster,
                SshHostKeysArgs(namespace=ns, hostname=self.ssh_host, port=SHELL_PORT, inventory=args.inventory),
                pulumi.ResourceOptions(parent=self),
            )
            self.ssh_known_hosts = host_keys.known_hosts

        root_password = random.RandomPassword(
            f"{name}-root-password", length=32, special=False, opts=pulumi.ResourceOptions(parent=self)
        )
        self.root_password = root_password.result
        # Everything the release reads by name, so it waits for all of it.
        prerequisites: list[pulumi.Resource] = [
            _secret(f"{name}-root-password", ROOT_PASSWORD_SECRET, ns, {"password": root_password.result}, k8s_opts),
            _secret(
                f"{name}-omniauth",
                OMNIAUTH_SECRET,
                ns,
                {"provider": omniauth_provider(args.oidc, args.exposure.hostname, args.groups)},
                k8s_opts,
            ),
            # GitLab's OmniAuth calls OpenUnison: it must trust the platform CA, not skip checks.
            _secret(f"{name}-platform-ca", CA_SECRET, ns, {"ca.crt": args.exposure.ca_bundle}, k8s_opts),
        ]
        if host_keys is not None:
            prerequisites.append(host_keys.secret)
        rails = RailsSecretArgs(namespace=ns, inventory=args.inventory, protect=args.protect, existing=args.rails_secret)
        prerequisites.append(RailsSecret(f"{name}-rails-secret", cluster, rails, pulumi.ResourceOptions(parent=self)).secret)

        buckets = self._object_storage(name, args, ns, k8s_opts, prerequisites)
        stores = args.data_stores.for_service(NAMESPACE, ns, self)
        egress = GitLabEgress(f"{name}-egress", cluster, GitLabEgressArgs.of(args, ns, stores), pulumi.ResourceOptions(parent=self))
        held = hold_namespace(f"{name}-ingress", ns, [*INGRESS_ROUTED, *stores.admits], k8s_opts, stores.clients(NAMESPACE, DATABASE_CLIENTS, REDIS_CLIENTS))
        prerequisites += [*stores.ready, *egress.policies, *held]
        backup = self._backups(name, cluster, args, ns, k8s_opts, prerequisites, buckets)

        self.release = release(
            RELEASE,
            "gitlab",
            ns,
            gitlab_resources(gitlab_values(args, buckets, host_keys, stores, backup), args.resources),
            cluster,
            self,
            version=args.chart_version,
            depends_on=[*prerequisites, args.cert_manager, *args.depends_on],
            # Gitaly keeps the repositories on volumes.
            protect=args.protect,
        )

        web = self._routes(name, cluster, args)
        token = AdminToken(
            f"{name}-admin-token",
            cluster,
            AdminTokenArgs(ns, self.release, f"{BOT_USERNAME}@{_parent_domain(args.exposure.hostname)}"),
            pulumi.ResourceOptions(parent=self),
        )
        self.admin_token = token.value
        self.provider = gitlab.Provider(
            f"{name}-gitlab",
            base_url=f"{self.url}/api/v4/",
            token=token.value,
            cacert_file=args.provider_ca_file,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[token.job, web]),
        )
        self._settings(name, args)
        self.register_outputs({"url": self.url, "release": self.release.status})

    def _routes(self, name: str, cluster: ClusterHandle, args: GitLabArgs) -> pulumi.Resource:
        """The web route to workhorse and the SSH route to gitlab-shell, both in Traefik's namespace."""
        if args.ssh is not None:
            tcp_route(f"{name}-ssh", f"{RELEASE}-ssh", args.ssh, Backend(SHELL_SERVICE, NAMESPACE, SHELL_PORT), cluster, self)
        return route(name, RELEASE, args.exposure, {"/": WORKHORSE}, pulumi.ResourceOptions(
            parent=self, provider=cluster.provider, depends_on=[args.cert_manager, *args.depends_on]))

    def _settings(self, name: str, args: GitLabArgs) -> None:
        """Anyone who signs in gets an account: none may take a top-level path, and the platform's
        repository's group, which CI trust names by path, exists from the first `pulumi up` on."""
        on_gitlab = pulumi.ResourceOptions(parent=self, provider=self.provider)
        gitlab.ApplicationSettings(f"{name}-settings", **application_settings(args.webhook_hosts), opts=on_gitlab)
        self.platform_group = None
        if args.platform_group is not None:
            self.platform_group = gitlab.Group(
                f"{name}-platform-group",
                name=args.platform_group,
                path=args.platform_group,
                description="The platform's own repository (platform:pipeline.projectPath)",
                visibility_level="private",
                # Deleting the group would delete the platform's repository with it.
                opts=pulumi.ResourceOptions.merge(on_gitlab, pulumi.ResourceOptions(protect=args.protect, retain_on_delete=True)),
            )

    def _object_storage(
        self, name: str, args: GitLabArgs, ns: k8s.core.v1.Namespace, k8s_opts: pulumi.ResourceOptions,
        prerequisites: list[pulumi.Resource],
    ) -> dict[str, pulumi.Input[str]]:
        """Where uploads, LFS, artifacts and packages go (bucket by chart key), never the bundled MinIO.

        On EKS a private bucket per object type, reached with workload identity; elsewhere the stack's
        object store (platform:objectStore), a prefix per type under `gitlab/`, its key in the
        connection Secret."""
        if args.aws is None:
            store = object_store(args)
            connection = pulumi.Output.secret(store.secret_access_key).apply(lambda key: s3_connection(store, key))
            prerequisites.append(_secret(f"{name}-object-storage", OBJECT_STORE_SECRET, ns, {"connection": connection}, k8s_opts))
            # GitLab takes `bucket/prefix` where it takes a bucket (its object-storage bucket prefixes).
            return {key: f"{store.bucket}/gitlab/{suffix}" for key, suffix in OBJECT_TYPES.items()}
        buckets: dict[str, pulumi.Input[str]] = {}
        for key, suffix in OBJECT_TYPES.items():
            bucket = private_bucket(
                f"{name}-{suffix}", bucket_name(args.exposure.hostname, suffix), args.aws, args.protect, self
            )
            buckets[key] = bucket.bucket
        role = bucket_role(f"{name}-object-storage", args.aws, NAMESPACE, SERVICE_ACCOUNT, list(buckets.values()), self)
        prerequisites.append(workload_service_account(f"{name}-service-account", SERVICE_ACCOUNT, ns, role.arn, k8s_opts))
        # No keys: the AWS SDK in every GitLab pod takes the role from the projected token.
        connection = {"provider": "AWS", "region": args.aws.region, "use_iam_profile": True}
        prerequisites.append(
            _secret(f"{name}-object-storage", OBJECT_STORE_SECRET, ns, {"connection": yaml_text.dump(connection)}, k8s_opts)
        )
        return buckets


    def _backups(
        self, name: str, cluster: ClusterHandle, args: GitLabArgs, ns: k8s.core.v1.Namespace,
        k8s_opts: pulumi.ResourceOptions, prerequisites: list[pulumi.Resource], buckets: dict[str, pulumi.Input[str]],
    ) -> GitLabBackup | None:
        """backup-utility on the backups' schedule (the chart's toolbox CronJob), to `gitlab/` of the backup bucket.

        On EKS the toolbox runs as its own service account, whose role reads and writes GitLab's
        buckets (a restore writes them back) and puts (and reads back) `gitlab/` of the backups."""
        store = args.backups
        if store is None:
            return None
        if args.aws is not None:
            access = BucketAccess(restore=True, write_buckets=tuple(buckets.values()))
            prerequisites += store.writer("gitlab", cluster, ns, NAMESPACE, TOOLBOX_SERVICE_ACCOUNT, self, access).prerequisites
        holder = f"Secret {NAMESPACE}/{BACKUP_CONFIG_SECRET} (backup-utility's s3cmd configuration, in the toolbox pods)"
        config = store.s3cmd_config("gitlab", holder, f"{name}-backup-s3cfg")
        prerequisites.append(_secret(f"{name}-backup-s3cfg", BACKUP_CONFIG_SECRET, ns, {"config": config}, k8s_opts))
        # backup-utility reads GitLab's objects and writes the backup with one s3cmd configuration: on
        # EKS one role reaches both; elsewhere only a target on the object store's own endpoint does.
        target = store.settings.target
        reaches_objects = args.aws is not None or (target is not None and target.endpoint == object_store(args).endpoint)
        skip = BACKUP_SKIP + (() if reaches_objects else OBJECTS_SKIP)
        store.expect(f"CronJob {NAMESPACE}/{TOOLBOX_DEPLOYMENT}-backup", "gitlab/", BACKUP_KEY, store.settings.schedules["gitlab"])
        return GitLabBackup(store.bucket.apply(lambda b: f"{b}/gitlab"), store.settings.schedules["gitlab"], skip)


def application_settings(webhook_hosts: Sequence[str]) -> dict[str, Any]:
    """GitLab's instance settings, held by every `pulumi up` (a change in the admin area is reverted).

    GitLab answers the internet and gives an account to anyone OpenUnison signs in (people in no
    tenant too): what such an account, or one token, may reach is closed here."""
    return {
        # Top-level groups are tenants and the platform's, declared by the program.
        "can_create_group": False,
        # Only an administrator may choose `public` (anyone on the internet) or `internal` (everyone
        # signed in, people in no tenant and every other tenant's among them).
        "restricted_visibility_levels": ["public", "internal"],
        # Accounts come from OpenUnison only: the chart's initialDefaults turn sign-up off at the first
        # installation alone.
        "signup_enabled": False,
        # No password opens an account, on the web or for git over HTTPS, so whoever the IdP drops
        # (or whose password was reset by e-mail) is out. Break glass: the toolbox's Rails console.
        "password_authentication_enabled_for_web": False,
        "password_authentication_enabled_for_git": False,
        # A GitLab session ends as OpenUnison's do, SESSION_MAX_SECONDS after its sign-in (default: a week
        # of inactivity, or never with "Remember me"), so someone the IdP dropped cannot keep minting
        # tokens. GitLab reads the duration at start: it applies from the webservice pods' next restart.
        "remember_me_enabled": False,
        "session_expire_from_init": True,
        "session_expire_delay": SESSION_MAX_SECONDS // 60,
        "require_personal_access_token_expiry": True,
        # Feed tokens never expire and sit in RSS and calendar URLs: they read issue and merge request feeds.
        "disable_feed_token": True,
        # Only administrators register OAuth applications: anyone's could ask an owner, on GitLab's own
        # consent page, for an `api` token and a refresh token that outlives every session.
        "user_oauth_applications": False,
        # Runners are registered by the program (UserRunner); a group's registration token, which
        # outlives whoever read it, would register a runner that takes the group's protected jobs.
        "allow_runner_registration_token": False,
        # No personal projects (a project's maintainer adds webhooks, integrations and mirrors):
        # new accounts get none, and an account in no tenant (Guest or below) creates none.
        "default_projects_limit": 0,
        "allow_project_creation_for_guest_and_below": False,
        # SSH keys GitLab takes (default: any size): no DSA (1024 bits, dropped by OpenSSH 9.8), no RSA
        # under 2048 bits, whose private half a factoring attacker would hold. The program's keys are ed25519.
        "dsa_key_restriction": -1,
        "rsa_key_restriction": 2048,
        # Hooks, integrations and mirrors reach nothing on GitLab's own network (Vault, the clusters'
        # API servers, the instance metadata endpoint) but the webhook hosts, by name and HTTPS port.
        "allow_local_requests_from_web_hooks_and_services": False,
        "allow_local_requests_from_system_hooks": False,
        "dns_rebinding_protection_enabled": True,
        "outbound_local_requests_whitelists": [f"{host}:{HTTPS_PORT}" for host in sorted(webhook_hosts)],
        "mirror_available": False,
        # Direct transfer imports groups from any GitLab URL (default off; held).
        "bulk_import_enabled": False,
    }


@dataclass(frozen=True)
class GitLabBackup:
    """The chart's backup CronJob: where (bucket/prefix, as s3cmd takes it), when, and what it leaves out."""

    bucket: pulumi.Output[str]
    schedule: str
    skip: tuple[str, ...]

    def apply_to(self, values: dict[str, Any], own_service_account: bool) -> None:
        """Set the toolbox's backup values (and, on EKS, its own service account) in the chart `values`."""
        toolbox = values["gitlab"]["toolbox"]  # keeps the tiers' annotations
        toolbox["backups"] = self.values()
        if own_service_account:
            toolbox["serviceAccount"] = {"enabled": True, "create": False, "name": TOOLBOX_SERVICE_ACCOUNT}
        # A restore parks the objects it replaces under gitlab/tmp/ of the backups.
        values["global"]["appConfig"]["backups"] = {"bucket": self.bucket, "tmpBucket": self.bucket.apply(lambda b: f"{b}/tmp")}

    def values(self) -> dict[str, Any]:
        return {
            "cron": {
                "enabled": True,
                "schedule": self.schedule,
                "concurrencyPolicy": "Forbid",  # never two at once, never one cut short by the next
                "extraArgs": f"--skip {','.join(self.skip)}",
                # backup-utility tars every repository: the toolbox's own sizing.
                "resources": GITLAB_HEAVY["gitlab.toolbox"],
                # The tarball is assembled on disk before the upload: room for the repositories.
                "persistence": {"enabled": True, "useGenericEphemeralVolume": True, "size": "50Gi"},
            },
            "objectStorage": {"backend": "s3", "config": {"secret": BACKUP_CONFIG_SECRET, "key": "config"}},
        }


# Rails (webservice, sidekiq, toolbox, migrations) and Gitaly need more memory than the service's one
# sizing fits: the chart's own requests, with a memory limit. Every other container gets the sizing.
GITLAB_HEAVY: dict[str, dict[str, dict[str, str]]] = {
    "gitlab.webservice": {"requests": {"cpu": "300m", "memory": "2.5G"}, "limits": {"memory": "4G"}},
    "gitlab.sidekiq": {"requests": {"cpu": "900m", "memory": "2G"}, "limits": {"memory": "3G"}},
    "gitlab.toolbox": {"requests": {"cpu": "50m", "memory": "350M"}, "limits": {"memory": "2G"}},
    "gitlab.migrations": {"requests": {"cpu": "250m", "memory": "1G"}, "limits": {"memory": "2G"}},
    "gitlab.gitaly": {"requests": {"cpu": "100m", "memory": "200Mi"}, "limits": {"memory": "2Gi"}},
}
# Where the chart takes each other container's resources (".init": a subchart's init containers).
GITLAB_SIZED = (
    *(f"{part}.init" for part in GITLAB_HEAVY),
    "gitlab.webservice.workhorse", "gitlab.gitlab-exporter", "gitlab.gitlab-exporter.init", "gitlab.gitlab-shell",
    "gitlab.gitlab-shell.init", "shared-secrets", "upgradeCheck",
)


def gitlab_resources(values: dict[str, Any], resources: dict[str, Any]) -> dict[str, Any]:
    """`values` with every GitLab container's requests and memory limit."""
    if not resources:
        return values
    values = sized(values, resources, *GITLAB_SIZED)
    for path, heavy in GITLAB_HEAVY.items():
        values = sized(values, heavy, path)
    return values


def gitlab_values(
    args: GitLabArgs, buckets: dict[str, pulumi.Input[str]], host_keys: SshHostKeys | None, stores: ServiceStores,
    backup: GitLabBackup | None = None,
) -> dict[str, Any]:
    """The chart values: GitLab alone, behind the platform's ingress, cert-manager and IdP."""
    exposure = args.exposure
    app_config: dict[str, Any] = {
        "omniauth": {
            "enabled": True,
            "autoSignInWithProvider": OIDC_PROVIDER,
            "allowSingleSignOn": [OIDC_PROVIDER],
            # Tenant users are declared with their identity (components/platform_users.py). No
            # linking by e-mail: whoever asserts an account's address upstream would take it over.
            "autoLinkUser": [],
            "blockAutoCreatedUsers": False,
            "syncProfileFromProvider": [OIDC_PROVIDER],
            "syncProfileAttributes": ["email", "name"],
            "providers": [{"secret": OMNIAUTH_SECRET, "key": "provider"}],
        },
        # Accounts come from OpenUnison only.
        "initialDefaults": {"signupEnabled": False},
        # A username is a top-level path: renaming an account would take a free one (see ApplicationSettings).
        "usernameChangingEnabled": False,
    }
    global_values: dict[str, Any] = {
        # The image tag of every GitLab component without a version of its own (certificates,
        # gitlab-base, kubectl, cfssl-self-sign): the chart falls back to `master` without it.
        "gitlabVersion": GITLAB_VERSION,
        "hosts": {"domain": _parent_domain(exposure.hostname), "https": True, "gitlab": {"name": exposure.hostname}},
        "ingress": {
            # The platform routes to workhorse from Traefik's namespace (`route`): the chart's Ingress, in
            # GitLab's namespace, would have Traefik watch the Secrets there (rails keys, tokens, passwords).
            "enabled": False,
            "configureCertmanager": False,  # also leaves the chart's certmanager-issuer out
            # The route presents the certificate: no self-signed wildcard one from the shared-secrets Job
            # (gitlab chart templates/shared-secrets/self-signed-cert-job.yml lines 3-5).
            "tls": {"enabled": False},
        },
        "initialRootPassword": {"secret": ROOT_PASSWORD_SECRET, "key": "password"},
        "railsSecrets": {"secret": RAILS_SECRET},  # the program's (components/gitlab_rails_secret.py)
        "appConfig": app_config,
        "certificates": {"customCAs": [{"secret": CA_SECRET, "keys": ["ca.crt"]}]},
        "registry": {"enabled": False},  # Harbor is the registry
        "kas": {"enabled": False},  # ArgoCD deploys; no GitLab agent
        **external_stores(stores),
    }
    values: dict[str, Any] = {
        "global": global_values,
        "installCertmanager": False,
        "nginx-ingress": {"enabled": False},
        "prometheus": {"install": False},
        "gitlab-runner": {"install": False},
        "registry": {"enabled": False},
        # PostgreSQL and Redis are outside the chart (components/data_stores.py): no Bitnami images.
        "postgresql": {"install": False},
        "redis": {"install": False},
        "gitlab": gitlab_tiers(args, stores),
        # The rails secret is the program's: an empty environment makes the shared-secrets Job skip it,
        # which would otherwise `kubectl apply` it again (its keys then plain in an annotation).
        "shared-secrets": {"env": ""},
    }
    # Objects in S3 or the stack's object store, never the bundled MinIO (which no backup reads).
    global_values["minio"] = {"enabled": False}
    if args.aws is not None:
        s3_service_account(values)
    app_config["object_store"] = {
        "enabled": True,
        "proxy_download": True,
        "connection": {"secret": OBJECT_STORE_SECRET, "key": "connection"},
    }
    for key, bucket in buckets.items():
        app_config[key] = {"bucket": bucket}
    if backup is not None:
        backup.apply_to(values, own_service_account=args.aws is not None)
    if host_keys is not None:
        # The program's host keys, not ones the chart's secrets Job would make up; the pods'
        # annotation changes with them, which restarts gitlab-shell.
        global_values["shell"] = {"hostKeys": {"secret": HOST_KEYS_SECRET}}
        values["gitlab"]["gitlab-shell"]["annotations"] = {HOST_KEYS_CHECKSUM_ANNOTATION: host_keys.checksum}
    return values


def s3_service_account(values: dict[str, Any]) -> None:
    """On EKS: the Rails tiers, which keep objects in S3, run as the account with the role. gitlab-shell
    (SSH from the internet), Gitaly (git on every pushed repository), the exporter and migrations run
    as the namespace's default account; the chart creates none (its default would, over the program's)."""
    for tier in S3_TIERS:
        values["gitlab"][tier]["serviceAccount"] = {"enabled": True, "create": False, "name": SERVICE_ACCOUNT}
    values["global"]["serviceAccount"] = {"enabled": False, "create": False}


def gitlab_tiers(args: GitLabArgs, stores: ServiceStores) -> dict[str, Any]:
    """The `gitlab` subcharts: Rails tiers replicated and spread, restarted when a credential they read changes."""
    exposure = args.exposure
    return {
        "webservice": {
            "minReplicas": args.replicas,
            "topologySpreadConstraints": spread({"app": "webservice", "release": RELEASE}),
            # The chart's pod annotations. Only webservice signs people in (sidekiq and
            # toolbox load the providers but never redeem a code).
            "annotations": {
                OMNIAUTH_CHECKSUM_ANNOTATION: checksum(omniauth_provider(args.oidc, exposure.hostname, args.groups)),
                DATA_STORES_CHECKSUM_ANNOTATION: stores.checksum,
            },
        },
        "sidekiq": {
            "minReplicas": args.replicas,
            "topologySpreadConstraints": spread({"app": "sidekiq", "release": RELEASE}),
            "annotations": {DATA_STORES_CHECKSUM_ANNOTATION: stores.checksum},
        },
        "toolbox": {"annotations": {DATA_STORES_CHECKSUM_ANNOTATION: stores.checksum}},
        "gitlab-exporter": {"annotations": {DATA_STORES_CHECKSUM_ANNOTATION: stores.checksum}},
        # The chart's gitlab-shell defaults to its `main` tag; the CNG image of this GitLab release.
        "gitlab-shell": {"minReplicas": args.replicas, "image": {"tag": f"v{GITLAB_VERSION}"}},
        "gitaly": {"persistence": {"size": args.storage}},
    }


def external_stores(stores: ServiceStores) -> dict[str, Any]:
    """`global.psql` and `global.redis`: GitLab's own database and Redis, their secrets by reference."""
    postgres, redis = stores.postgres, stores.redis
    return {
        "psql": {
            "host": postgres.host,
            "port": postgres.port,
            "database": postgres.database,
            "username": postgres.username,
            "password": {"secret": postgres.secret, "key": PASSWORD_KEY},
        },
        "redis": {
            "host": redis.host,
            "port": redis.port,
            **({"scheme": "rediss"} if redis.tls else {}),
            "auth": {"secret": redis.secret, "key": REDIS_PASSWORD_KEY},
        },
    }


def object_store(args: GitLabArgs) -> ObjectStoreTarget:
    """The stack's object store, which GitLab needs off EKS."""
    store = args.data_stores.args.object_store
    if store is None:
        raise ValueError("GitLab on a kubeconfig cluster keeps its objects in an object store: set platform:objectStore")
    return store


def s3_connection(store: ObjectStoreTarget, secret_access_key: str) -> str:
    """The chart's consolidated object-storage connection (fog's AWS provider) for an S3-compatible store."""
    return yaml_text.dump({
        "provider": "AWS",
        "region": store.region,
        "endpoint": store.endpoint,
        "path_style": True,  # S3-compatible stores rarely serve bucket subdomains
        "aws_access_key_id": store.access_key_id,
        "aws_secret_access_key": secret_access_key,
    })


def omniauth_provider(oidc: OidcClient, hostname: str, groups: PlatformGroups) -> pulumi.Output[str]:
    """The OmniAuth provider document (a Pulumi secret: it holds the client secret)."""
    return pulumi.Output.secret(oidc.client_secret).apply(
        lambda secret: omniauth_provider_document(oidc, hostname, groups, secret)
    )


def omniauth_provider_document(oidc: OidcClient, hostname: str, groups: PlatformGroups, client_secret: str) -> str:
    document = {
        "name": OIDC_PROVIDER,
        "label": "OpenUnison",
        "args": {
            "name": OIDC_PROVIDER,
            "scope": list(oidc.scopes),
            "response_type": "code",
            "issuer": oidc.issuer_url,
            "discovery": True,
            "client_auth_method": "basic",
            "pkce": True,
            # Platform cluster admins administer GitLab too (a Premium feature; ignored on Free).
            "gitlab": {"groups_attribute": "groups", "admin_groups": list(groups.cluster_admins)},
            "client_options": {
                "identifier": oidc.client_id,
                "secret": client_secret,
                "redirect_uri": redirect_uri(hostname),
            },
        },
    }
    return yaml_text.dump(document, sort_keys=False)


# --- where GitLab's pods connect -----------------------------------------------------------
#
# GitLab's URL blocker (application_settings) is GitLab's own check: a bug in it, or in any tier, and a
# webhook, import or shell in a pod reaches whatever the pod's network does. The chart labels every pod
# `release: gitlab` and `app: <tier>` (the pinned chart's render: tests/test_gitlab_attacks.py). What
# each tier needs, and where that is known from:
# * every tier: the cluster DNS; the namespace's own pods: Rails, migrations and the exporter call Gitaly
#   (8075), Gitaly and gitlab-shell the internal API (`gitlab_url: http://gitlab-webservice-default.gitlab.svc:8181/`
#   in their rendered ConfigMaps), and off EKS PostgreSQL and Redis run there (CloudNativePG, Valkey); on
#   EKS RDS and ElastiCache in the VPC's private subnets (ServiceStores.egress).
# * the Rails tiers (RAILS_TIERS) besides: OpenUnison's public name (webservice's OmniAuth discovery and
#   code redemption), ArgoCD's webhook host (sidekiq's project hooks) through the ingress controller;
#   objects in S3 (with the pod's web identity: STS's and S3's public endpoints) or platform:objectStore,
#   and toolbox's backup-utility to the backups' target; tenants' webhooks and integrations: public
#   addresses, on HTTPS (and the object stores' ports) only. No e-mail: the chart has no SMTP.
# * the chart's own Jobs (`app: gitlab`: shared-secrets, which writes Secrets with kubectl, and
#   upgrade-check, which shares its labels): the control plane's API server.
# Refused: every other namespace's pods (Vault, Harbor, ArgoCD, OpenUnison, the webhooks), the API
# server from every other pod, the nodes, the instance metadata (IPv4 and, as no IPv6 block is listed,
# fd00:ec2::254), every private address but the stores' and load balancer's networks, the internet but
# on HTTPS. Project imports and mirrors from other hosts need git over SSH or HTTPS from Gitaly: none.
RAILS_TIERS = ("webservice", "sidekiq", "toolbox")
CHART_JOBS = "gitlab"  # the `app` label of the chart's own Jobs


@dataclass(frozen=True)
class GitLabEgressArgs:
    namespace: k8s.core.v1.Namespace
    stores: ServiceStores
    load_balancer_cidrs: tuple[pulumi.Input[str], ...]
    object_stores: tuple[ObjectStoreTarget | BackupTarget, ...]  # where the Rails tiers reach object stores off EKS

    @staticmethod
    def of(args: GitLabArgs, ns: k8s.core.v1.Namespace, stores: ServiceStores) -> GitLabEgressArgs:
        return GitLabEgressArgs(
            namespace=ns, stores=stores, load_balancer_cidrs=tuple(args.load_balancer_cidrs), object_stores=reached_stores(args),
        )


class GitLabEgress(pulumi.ComponentResource):
    """Where the chart's pods may connect: one NetworkPolicy for every tier, one more each for the Rails
    tiers and the chart's Jobs (policies add up). The release waits for them, so no pod starts unheld."""

    policies: list[k8s.networking.v1.NetworkPolicy]

    def __init__(self, name: str, cluster: ClusterHandle, args: GitLabEgressArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:gitlab:GitLabEgress", name, None, opts)
        in_ns = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[args.namespace])
        own_pods = k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=k8s.meta.v1.LabelSelectorArgs())

        def policy(suffix: str, selector: k8s.meta.v1.LabelSelectorArgs, rules: list[k8s.networking.v1.NetworkPolicyEgressRuleArgs]) -> k8s.networking.v1.NetworkPolicy:
            return k8s.networking.v1.NetworkPolicy(
                f"{name}{suffix}",
                metadata=metadata(f"{RELEASE}{suffix}-egress", args.namespace),
                spec=k8s.networking.v1.NetworkPolicySpecArgs(pod_selector=selector, policy_types=["Egress"], egress=rules),
                opts=in_ns,
            )

        self.policies = [
            policy("", k8s.meta.v1.LabelSelectorArgs(match_labels={"release": RELEASE}),
                   [dns(), k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=[own_pods]), *args.stores.egress()]),
            policy("-rails", k8s.meta.v1.LabelSelectorArgs(
                match_labels={"release": RELEASE},
                match_expressions=[k8s.meta.v1.LabelSelectorRequirementArgs(key="app", operator="In", values=list(RAILS_TIERS))],
            ), [*egress_to_platform([HTTPS_PORT], args.load_balancer_cidrs), *object_stores(args.object_stores)]),
            policy("-jobs", k8s.meta.v1.LabelSelectorArgs(match_labels={"release": RELEASE, "app": CHART_JOBS}),
                   to_api_server(cluster.api_server)),  # the chart's shared-secrets Job
        ]
        self.register_outputs({})


def reached_stores(args: GitLabArgs) -> tuple[ObjectStoreTarget | BackupTarget, ...]:
    """The object stores the Rails tiers reach by their endpoints: off EKS, platform:objectStore and the backups
    target; on EKS none (S3, on HTTPS)."""
    if args.aws is None:
        target = args.backups.settings.target if args.backups is not None else None
        return (object_store(args), *([target] if target is not None else []))
    return ()


# --- SSH host keys ----------------------------------------------------------------------


def known_hosts_line(host: str, port: int, public_key_openssh: str) -> str:
    """One known_hosts line: `host type base64`, the host as `[host]:port` off port 22."""
    name = host if port == 22 else f"[{host}]:{port}"
    return f"{name} {public_key_openssh.strip()}\n"


@dataclass(frozen=True)
class SshHostKeysArgs:
    namespace: k8s.core.v1.Namespace
    hostname: str  # what SSH clients connect to
    port: int
    inventory: CredentialInventory | None = None


class SshHostKeys(pulumi.ComponentResource):
    """gitlab-shell's host keys: generated, rotated every HOST_KEY_ROTATION_DAYS, kept in a Secret.

    All keys share one rotation, so one `pulumi up --refresh` replaces them together: the Secret
    gets the new keys, `checksum` (a gitlab-shell pod annotation) restarts gitlab-shell, and
    `known_hosts` (ArgoCD's) lists the new public keys. Until ArgoCD's repo-server sees its new
    known_hosts file and every gitlab-shell pod has restarted (a minute or two), its fetches fail
    and are retried. People's own known_hosts must drop the old keys (`ssh-keygen -R <host>`).
    """

    secret: k8s.core.v1.Secret
    checksum: pulumi.Output[str]  # plain SHA-256 of the Secret's content
    known_hosts: pulumi.Output[str]  # public, not secret

    def __init__(self, name: str, cluster: ClusterHandle, args: SshHostKeysArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:gitlab:SshHostKeys", name, None, opts)
        rotation = time.Rotating(
            f"{name}-rotation", rotation_days=HOST_KEY_ROTATION_DAYS, opts=pulumi.ResourceOptions(parent=self)
        )
        keys = {
            kind: rotated_key(f"{name}-{kind}", rotation, self, algorithm, curve)
            for kind, (algorithm, curve) in HOST_KEY_TYPES.items()
        }
        files: dict[str, pulumi.Input[str]] = {}
        for kind, key in keys.items():
            files[f"ssh_host_{kind}_key"] = key.private_key_openssh
            files[f"ssh_host_{kind}_key.pub"] = key.public_key_openssh
        self.secret = _secret(
            name,
            HOST_KEYS_SECRET,
            args.namespace,
            files,
            pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[args.namespace]),
        )
        self.checksum = checksum(pulumi.Output.all(**files).apply(lambda content: json.dumps(content, sort_keys=True)))
        self.known_hosts = pulumi.Output.all(*(key.public_key_openssh for key in keys.values())).apply(
            lambda public_keys: "".join(known_hosts_line(args.hostname, args.port, k) for k in public_keys)
        )
        if args.inventory is not None:
            args.inventory.register(refreshed(
                "SSH host keys of GitLab (gitlab-shell)",
                issuer="Pulumi (pulumi-tls ed25519 and ECDSA P-256)",
                holder=f"gitlab-shell (Secret {NAMESPACE}/{HOST_KEYS_SECRET}); ArgoCD's known_hosts lists the public halves",
                scope=f"proves to SSH clients (ArgoCD, git) that {args.hostname} is the platform's GitLab",
                every_days=HOST_KEY_ROTATION_DAYS,
                then="; the same run restarts gitlab-shell and updates ArgoCD's known_hosts",
                # Counted like the deploy keys; unlike them it cannot expire by itself.
                lifetime_days=HOST_KEY_LIFETIME_DAYS,
                lifetime=(
                    f"until the first `pulumi up --refresh` after {HOST_KEY_ROTATION_DAYS} days "
                    "(an SSH host key has no expiry of its own)"
                ),
                resources=tuple(f"{name}-{kind}" for kind in HOST_KEY_TYPES),
            ))
        self.register_outputs({"knownHosts": self.known_hosts})


# --- the admin API token ----------------------------------------------------------------


@dataclass(frozen=True)
class AdminTokenArgs:
    namespace: k8s.core.v1.Namespace
    release: k8s.helm.v3.Release  # the GitLab release whose toolbox runs the script
    email: str


class AdminToken(pulumi.ComponentResource):
    """The platform-bot admin token: ensured in the cluster, read back as a Pulumi secret."""

    job: k8s.batch.v1.Job
    value: pulumi.Output[str]

    def __init__(self, name: str, cluster: ClusterHandle, args: AdminTokenArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:gitlab:AdminToken", name, None, opts)
        ns = args.namespace
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[ns])

        # Created empty; only the Job writes its data, so Pulumi never resets it.
        holder = k8s.core.v1.Secret(
            f"{name}-holder",
            metadata=metadata(TOKEN_SECRET, ns),
            type="Opaque",
            opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(ignore_changes=["data", "stringData"])),
        )
        script = k8s.core.v1.ConfigMap(
            f"{name}-script",
            metadata=metadata("gitlab-platform-bot-script", ns),
            data={"ensure_admin_token.rb": ensure_token_ruby(args.email), "ensure-admin-token.sh": ENSURE_TOKEN_SH},
            opts=k8s_opts,
        )
        binding = self._runner_access(name, ns, k8s_opts)
        # Its pods talk to their API server alone (kubectl exec into the toolbox, patch its Secret).
        egress = k8s.networking.v1.NetworkPolicy(
            f"{name}-egress",
            metadata=metadata(f"{BOT_LABEL}-egress", ns),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={"app.kubernetes.io/name": BOT_LABEL}),
                policy_types=["Egress"],
                egress=[dns(), *to_api_server(cluster.api_server)],
            ),
            opts=k8s_opts,
        )
        after_gitlab = pulumi.ResourceOptions.merge(
            k8s_opts, pulumi.ResourceOptions(depends_on=[args.release, holder, script, binding, egress])
        )

        # A new rotation epoch changes the pod template, which replaces the Job: every
        # TOKEN_MIN_DAYS_LEFT days a `pulumi up --refresh` re-runs the check itself.
        rotation = time.Rotating(
            f"{name}-rotation", rotation_days=TOKEN_MIN_DAYS_LEFT, opts=pulumi.ResourceOptions(parent=self)
        )
        self.job = k8s.batch.v1.Job(
            f"{name}-ensure",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                namespace=ns.metadata.name,
                labels={"app.kubernetes.io/name": BOT_LABEL},
                # A failed Job (GitLab not ready, a bad token) is replaced on the next run.
                annotations={"pulumi.com/replaceUnready": "true"},
            ),
            spec=_job_spec(rotation.rfc3339, backoff_limit=6),
            opts=after_gitlab,
        )
        k8s.batch.v1.CronJob(
            f"{name}-probe",
            metadata=metadata("gitlab-platform-bot-probe", ns),
            spec=k8s.batch.v1.CronJobSpecArgs(
                schedule="23 * * * *",
                concurrency_policy="Forbid",
                starting_deadline_seconds=600,
                successful_jobs_history_limit=1,
                failed_jobs_history_limit=3,
                job_template=k8s.batch.v1.JobTemplateSpecArgs(spec=_job_spec(None, backoff_limit=2)),
            ),
            opts=after_gitlab,
        )

        # Read in the engine once the Job has finished: the id depends on the Job's status,
        # which is unknown in a preview that (re)creates the Job, so no stale value is read.
        read = k8s.core.v1.Secret.get(
            f"{name}-value",
            self.job.status.apply(lambda _: f"{NAMESPACE}/{TOKEN_SECRET}"),
            opts=pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[self.job]),
        )
        self.value = pulumi.Output.secret(read.data.apply(_decode_token))
        self.register_outputs({"job": self.job.metadata.name})

    def _runner_access(self, name: str, ns: k8s.core.v1.Namespace, k8s_opts: pulumi.ResourceOptions) -> k8s.rbac.v1.RoleBinding:
        """What the Job may do: write its one Secret and exec into the toolbox, nothing else."""
        account = k8s.core.v1.ServiceAccount(f"{name}-runner", metadata=metadata("gitlab-platform-bot", ns), opts=k8s_opts)
        role = k8s.rbac.v1.Role(
            f"{name}-runner",
            metadata=metadata("gitlab-platform-bot", ns),
            rules=[
                # Write access to exactly one Secret; it exists already, so no "create".
                k8s.rbac.v1.PolicyRuleArgs(
                    api_groups=[""], resources=["secrets"], resource_names=[TOKEN_SECRET], verbs=["get", "patch"]
                ),
                k8s.rbac.v1.PolicyRuleArgs(
                    api_groups=["apps"], resources=["deployments"], resource_names=[TOOLBOX_DEPLOYMENT], verbs=["get"]
                ),
                # `kubectl exec deploy/...` lists the Deployment's pods; exec uses POST or a
                # websocket GET (kubectl >= 1.30). Pod names are random, so no resourceNames.
                k8s.rbac.v1.PolicyRuleArgs(api_groups=[""], resources=["pods"], verbs=["get", "list"]),
                k8s.rbac.v1.PolicyRuleArgs(api_groups=[""], resources=["pods/exec"], verbs=["create", "get"]),
            ],
            opts=k8s_opts,
        )
        binding = k8s.rbac.v1.RoleBinding(
            f"{name}-runner",
            metadata=metadata("gitlab-platform-bot", ns),
            role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="Role", name="gitlab-platform-bot"),
            subjects=[k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name="gitlab-platform-bot", namespace=NAMESPACE)],
            opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[role, account])),
        )
        return binding


def _decode_token(data: dict[str, str] | None) -> str:
    encoded = (data or {}).get("token")
    if not encoded:
        raise ValueError(f"Secret {NAMESPACE}/{TOKEN_SECRET} has no 'token': see the logs of the gitlab-platform-bot Job")
    return base64.b64decode(encoded).decode()


def _job_spec(rotation_epoch: pulumi.Input[str] | None, backoff_limit: int) -> k8s.batch.v1.JobSpecArgs:
    env = [
        k8s.core.v1.EnvVarArgs(name="NAMESPACE", value=NAMESPACE),
        k8s.core.v1.EnvVarArgs(name="TOKEN_SECRET", value=TOKEN_SECRET),
        k8s.core.v1.EnvVarArgs(name="TOOLBOX_DEPLOYMENT", value=TOOLBOX_DEPLOYMENT),
        k8s.core.v1.EnvVarArgs(name="HOME", value="/tmp"),  # kubectl's cache; the root fs is read-only
    ]
    if rotation_epoch is not None:
        env.append(k8s.core.v1.EnvVarArgs(name="ROTATION_EPOCH", value=rotation_epoch))
    return k8s.batch.v1.JobSpecArgs(
        backoff_limit=backoff_limit,
        active_deadline_seconds=1800,
        template=k8s.core.v1.PodTemplateSpecArgs(
            metadata=k8s.meta.v1.ObjectMetaArgs(labels={"app.kubernetes.io/name": BOT_LABEL}),
            spec=k8s.core.v1.PodSpecArgs(
                service_account_name="gitlab-platform-bot",
                restart_policy="Never",
                security_context=k8s.core.v1.PodSecurityContextArgs(
                    run_as_non_root=True,
                    run_as_user=65534,
                    run_as_group=65534,
                    seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
                ),
                containers=[
                    k8s.core.v1.ContainerArgs(
                        name="ensure-admin-token",
                        image=kubectl_image(),
                        command=["/bin/sh", "/scripts/ensure-admin-token.sh"],
                        env=env,
                        security_context=k8s.core.v1.SecurityContextArgs(
                            allow_privilege_escalation=False,
                            read_only_root_filesystem=True,
                            capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
                        ),
                        resources=k8s.core.v1.ResourceRequirementsArgs(
                            requests={"cpu": "10m", "memory": "64Mi"}, limits={"memory": "128Mi"}
                        ),
                        volume_mounts=[
                            k8s.core.v1.VolumeMountArgs(name="scripts", mount_path="/scripts", read_only=True),
                            k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp"),
                        ],
                    )
                ],
                volumes=[
                    k8s.core.v1.VolumeArgs(
                        name="scripts",
                        config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name="gitlab-platform-bot-script"),
                    ),
                    k8s.core.v1.VolumeArgs(name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
                ],
            ),
        ),
    )


# Runs in the Job's pod. The token only travels through pipes and shell variables, never
# through an argument list (visible in /proc and in the API server's exec audit records).
ENSURE_TOKEN_SH = r"""set -eu
k() { kubectl --namespace "$NAMESPACE" "$@"; }
current=$(k get secret "$TOKEN_SECRET" -o 'go-template={{with .data.token}}{{base64decode .}}{{end}}')
# Only token characters may reach the Ruby source; anything else counts as no token.
case "$current" in *[!A-Za-z0-9._-]*) current="" ;; esac
out=$( { printf "CURRENT_TOKEN = '%s'\n" "$current"; cat /scripts/ensure_admin_token.rb; } \
  | k exec -i "deploy/$TOOLBOX_DEPLOYMENT" -c toolbox -- gitlab-rails runner - )
new=$(printf '%s\n' "$out" | sed -n 's/^NEW_TOKEN=//p')
case "$new" in *[!A-Za-z0-9._-]*) echo "unexpected token format from gitlab-rails" >&2; exit 1 ;; esac
if [ -n "$new" ]; then
  printf '{"stringData":{"token":"%s"}}' "$new" | k patch secret "$TOKEN_SECRET" --type merge --patch-file /dev/stdin >/dev/null
  echo "stored a new platform-bot token in $TOKEN_SECRET"
else
  echo "the platform-bot token in $TOKEN_SECRET is valid"
fi
"""


def ensure_token_ruby(email: str) -> str:
    """The gitlab-rails script; the Job prepends `CURRENT_TOKEN = '...'`."""
    return _ENSURE_TOKEN_RB.format(
        username=json.dumps(BOT_USERNAME),
        email=json.dumps(email),
        token_name=json.dumps(TOKEN_NAME),
        scopes=json.dumps(list(TOKEN_SCOPES)),
        lifetime=TOKEN_LIFETIME_DAYS,
        min_left=TOKEN_MIN_DAYS_LEFT,
    )


_ENSURE_TOKEN_RB = """# Ensures the platform's API identity: an admin user and a personal access token that is active
# with more than MIN_DAYS_LEFT days left. Prints NEW_TOKEN=<value> on stdout only when it
# created a token; every other message goes to stderr, so no secret reaches the logs.
USERNAME = {username}
EMAIL = {email}
TOKEN_NAME = {token_name}
SCOPES = {scopes}
LIFETIME_DAYS = {lifetime}
MIN_DAYS_LEFT = {min_left}

def log(message)
  $stderr.puts("[platform-bot] #{{message}}")
end

bot = User.find_by_username(USERNAME)
if bot.nil?
  result = Users::CreateService.new(
    nil,
    username: USERNAME, name: 'Platform Bot', email: EMAIL, password: SecureRandom.alphanumeric(64),
    skip_confirmation: true, organization_id: Organizations::Organization.default_organization.id
  ).execute
  bot = result.respond_to?(:payload) ? result.payload[:user] : result
  abort("[platform-bot] cannot create #{{USERNAME}}: #{{result.respond_to?(:message) ? result.message : bot&.errors&.full_messages}}") unless bot&.persisted?
  log("created user #{{USERNAME}}")
end
# A probe that fails because the bot was blocked or demoted is repaired, and says so.
if bot.blocked?
  bot.activate!
  log("unblocked #{{USERNAME}}")
end
unless bot.admin?
  bot.update!(admin: true)
  log("made #{{USERNAME}} an administrator")
end

current = CURRENT_TOKEN.empty? ? nil : PersonalAccessToken.find_by_token(CURRENT_TOKEN)
if current && current.user_id == bot.id && current.active? && current.expires_at > Date.current + MIN_DAYS_LEFT
  log("token valid until #{{current.expires_at}}")
  exit 0
end

attributes = {{ name: TOKEN_NAME, scopes: SCOPES, expires_at: Date.current + LIFETIME_DAYS }}
# Newer GitLab scopes tokens to an organization; older schemas have no such column.
attributes[:organization_id] = bot.namespace.organization_id if PersonalAccessToken.column_names.include?('organization_id')
token = bot.personal_access_tokens.create!(attributes)
# The Secret is about to hold the new token: the previous ones go.
bot.personal_access_tokens.active.where(name: TOKEN_NAME).where.not(id: token.id).find_each(&:revoke!)
log("created a token valid until #{{token.expires_at}}")
puts("NEW_TOKEN=#{{token.token}}")
"""


# --- small helpers --------------------------------------------------------------------



def _secret(
    resource_name: str,
    name: str,
    ns: k8s.core.v1.Namespace,
    string_data: dict[str, pulumi.Input[str]],
    opts: pulumi.ResourceOptions,
) -> k8s.core.v1.Secret:
    return k8s.core.v1.Secret(
        resource_name,
        metadata=metadata(name, ns),
        type="Opaque",
        string_data=string_data,
        opts=opts,
    )


def _parent_domain(hostname: str) -> str:
    return hostname.split(".", 1)[1]


def credentials(name: str, args: GitLabArgs) -> list[Credential]:
    """GitLab's root password, the program's admin token, CI ID tokens and, on EKS, its S3 sessions."""
    entries = [generated_password(
        "GitLab root password",
        holder=f"{STATE} and GitLab (Secret {NAMESPACE}/{ROOT_PASSWORD_SECRET})",
        scope="GitLab's root user; takes effect at the first installation only, and signs in nowhere while "
              "password sign-in is off (application settings; break glass: the toolbox's Rails console)",
        rotation="change it in GitLab by hand (the Secret only seeds the first start)",
        resource=f"{name}-root-password",
    ), issued_token(
        f"GitLab {BOT_USERNAME} personal access token",
        issuer="GitLab",
        holder=f"the Pulumi gitlab provider ({STATE}) and Secret {NAMESPACE}/{TOKEN_SECRET}",
        scope=f"{', '.join(TOKEN_SCOPES)}, as an administrator",
        days=TOKEN_LIFETIME_DAYS,
        rotation=f"an hourly CronJob makes a new one with {TOKEN_MIN_DAYS_LEFT} days or less left",
        resources=(f"{name}-admin-token-holder",),
    ), Credential(
        what="GitLab CI ID tokens",
        category="federated",
        issuer=f"GitLab ({args.exposure.url})",
        holder="CI jobs that declare id_tokens",
        scope="the audience the job names (Vault, AWS STS), with the job's project and ref as claims",
        lifetime_seconds=3 * HOUR,
        lifetime="the job's timeout: 1 hour by default, 3 hours for rebuild-dev",
        rotation="a new token for every job",
    )]
    if args.aws is not None:
        account = f"{NAMESPACE}/{SERVICE_ACCOUNT}"
        entries.append(irsa_credential(f"{name}-object-storage", account, "control-plane", "GitLab's object-storage buckets"))
    else:
        entries.append(object_store_credential(
            "GitLab's objects", f"GitLab's Rails pods (Secret {NAMESPACE}/{OBJECT_STORE_SECRET})", "s3://<bucket>/gitlab/",
        ))
    return entries


def declare(parts: ControlPlaneParts, settings: ServiceSettings) -> GitLab:
    ingress = parts.ingress
    return GitLab(
        "gitlab",
        parts.cluster,
        GitLabArgs.extend(
            parts.stateful(SLICE, settings), depends_on=[ingress.release], ssh=ingress.ssh,
            data_stores=parts.require(DATA_STORES), rails_secret=imported_rails_secret(settings),
            platform_group=parts.settings.pipeline_project.split("/", 1)[0],
            webhook_hosts=tuple(f"{key}.{parts.settings.domain}" for key in WEBHOOK_SERVICES if parts.service_settings(key).enabled),
            load_balancer_cidrs=load_balancer_networks(parts, settings),
        ),
    )


def imported_rails_secret(settings: ServiceSettings) -> dict[str, pulumi.Output[Any]] | None:
    """`platform:services.gitlab.railsSecret`: an existing GitLab's keys, as Pulumi secrets."""
    existing: ExistingKeys | None = settings.options.get("rails_secret")
    return None if existing is None else existing.outputs()


def tenant(parts: TenantParts) -> TenantRepositories | None:
    """The tenant's group and projects; their pipelines need Vault, their pushes ArgoCD's webhook."""
    platform = parts.platform
    if not (platform.gitlab and platform.vault and platform.argocd):
        return None
    return TenantRepositories(
        f"{parts.name}-repositories",
        TenantRepositoriesArgs(
            tenant=parts.name,
            members=parts.members,
            platform=platform,
            webhook_url=f"{platform.argocd.url}/api/webhook",
            protect=platform.protect,
            virtual=parts.tenant.isolation is Isolation.VCLUSTER,
            ops_layout=parts.tenant.ops_layout,
        ),
        parts.opts,
    )


SLICE: ServiceSlice[GitLab] = ServiceSlice(
    key="gitlab",
    namespace=PlatformNamespace(NAMESPACE, "GitLab, git and CI"),
    chart="gitlab",
    declare=declare,
    redirect_uris=lambda host: (redirect_uri(host),),
    # For people's ~/.ssh/known_hosts: the keys to expect, also after each rotation.
    outputs=lambda gitlab: {"sshKnownHosts": gitlab.ssh_known_hosts},
    tenant=tenant,
    # The rails secret's keys of a GitLab that made its own, imported once (README, Backups and restore).
    options={
        "rails_secret": (ExistingKeys | None, None),
        "load_balancer_cidrs": (list[LoadBalancerCidr], []),
    },
)
