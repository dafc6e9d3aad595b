"""Vault on the control plane: HA raft behind TLS, initialised by the program, configured by pulumi-vault.

* TLS on every hop, always verified. Vault's own listener, raft `retry_join` and the hop from
  the ingress controller use a Vault-internal CA that cert-manager keeps in the `vault`
  namespace (the platform issuer may be ACME, which cannot sign in-cluster names). The public
  name gets its certificate from the platform ClusterIssuer, so clients trust the platform
  CA bundle (or, with ACME, their system roots). Traefik re-encrypts to Vault through a
  `ServersTransport` that trusts the internal CA. The routes, their Middlewares and the
  transport are in Traefik's namespace (components/ingress.py `route`): Traefik never watches
  `vault`, whose Secrets it would list.
* Unsealing: on EKS, `seal "awskms"` with a KMS key the `vault` service account reaches
  through workload identity (IRSA); elsewhere Shamir keys, which `VaultInit`
  (components/vault_init.py) creates and applies from `pulumi up` and keeps only as secrets
  in the Pulumi state. Both kinds are initialised by `VaultInit` (recovery keys on EKS).
* Unseal keys go to one raft peer at a time, which the load-balanced public name cannot do:
  `https://<vault host>/node/vault-<i>/...` reaches exactly peer i (never `/node/vault-<i>0/...`) (all peers with Shamir, the
  first with auto-unseal, where it is needed only for init).
* Vault leaves its bootstrap endpoints (`sys/init`, `sys/unseal`, `sys/rekey*`,
  `sys/generate-root*`, `sys/generate-recovery-token*`) unauthenticated: whoever calls `sys/init`
  first holds the root token and the keys. The public name refuses them; the `/node/...` routes
  ask for a bootstrap credential (Traefik BasicAuth, a pulumi_random password kept only as a
  secret), which `VaultInit` presents, and so do people who break glass.
* pulumi-vault then configures OIDC login for people mapped to platform groups, the audit
  device and the admin policies, through an explicit provider that later components reuse. The
  provider holds the root token only at bootstrap; after it (`provider_uses_root=False`) it
  reads VAULT_TOKEN, the deploy job's one-hour login (README, Vault's root token), and
  `VaultInit` revokes the root token.
* Network: Vault's pods take connections from Traefik (the public name) and from their own
  namespace (raft peers, the snapshot job) only; the chart's auth-delegator binding is off, as
  no auth mount reviews tokens with Vault's own service account (components/vault_federation.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_random as random
import pulumi_vault as vault

from components.aws import AwsWorkloadIdentity, history_key_tags, irsa_credential, service_account_trust
from components.backend_tls import BackendTlsArgs, custom_resource, internal_certificate, internal_credentials, servers_transport
from components.cluster import ClusterHandle
from components.common import Backend, Exposure, PlatformGroups
from components.helm import namespace, release, sized, spread_affinity
from components.inventory import STATE, Credential, cert_manager_certificate, vault_token
from components.external_secrets import SLICE as EXTERNAL_SECRETS
from components.gitlab import SLICE as GITLAB
from components.ingress import NAMESPACE as INGRESS_NAMESPACE, route
from components.service import ControlPlaneParts, PlatformNamespace, ServiceSettings, ServiceSlice, StatefulServiceArgs, TenantParts
from components.tenant_gitlab import APP_PROJECT
from components.tenant_secrets import TenantSecrets, TenantSecretsArgs
from components.vault_federation import root_only
from components.vault_init import VaultInit
from policy.labels import CLUSTER_LABEL, MANAGED_BY

NAMESPACE = "vault"
RELEASE = "vault"  # chart fullname: services vault, vault-active and vault-internal; service account vault
SERVICE_ACCOUNT = "vault"
TLS_SECRET = "vault-tls"  # Vault's serving certificate from the internal CA: tls.crt, tls.key, ca.crt
INTERNAL_CA = "vault-internal-ca"  # components.backend_tls: ConfigMap <prefix>-internal-ca, the CA's certificate alone
# Vault's routes are in Traefik's namespace (components/ingress.py `route`): Traefik never watches `vault`, whose
# Secrets (the serving key, the backup credentials, the release record) it would list.
PUBLIC_ROUTE = "vault-public"  # IngressRoute in Traefik's namespace: the public name and the `/node/<peer>` routes
PUBLIC_TLS_SECRET = f"{PUBLIC_ROUTE}-tls"  # the public name's certificate, in Traefik's namespace (`route` names it)
TLS_DIR = "/vault/userconfig/vault-tls"
CA_FILE = f"{TLS_DIR}/ca.crt"  # the internal CA, for raft retry_join and the vault CLI in the pods
API_PORT = 8200
CLUSTER_PORT = 8201  # raft and request forwarding between peers
# The chart's labels on the server pods.
SERVER_LABELS = {"app.kubernetes.io/name": RELEASE, "app.kubernetes.io/instance": RELEASE, "component": "server"}
NODE_PATH = "/node"  # https://<host>/node/vault-<i>: one raft peer
OIDC_PATH = "oidc"
OIDC_ROLE = "platform"
TOKEN_TTL_SECONDS = 3600  # people's Vault tokens live at most an hour
PROVIDER_CHILD_TOKEN_SECONDS = 1200  # terraform-provider-vault's max_lease_ttl_seconds default
ADMIN_POLICY_NAME = "platform-admin"
APPROVER_POLICY_NAME = "platform-approver"
READER_POLICY_NAME = "platform-reader"

# Ready while sealed or uninitialised: the release waits for readiness, and only after it is
# ready can the program initialise and unseal Vault. People still reach only the unsealed
# leader: the public name points at the vault-active service.
READINESS_PATH = "/v1/sys/health?standbyok=true&perfstandbyok=true&sealedcode=204&uninitcode=204"

# Traefik (the platform's ingress controller) speaks TLS to Vault and verifies it against the
# internal CA: the ServersTransport of this name in Traefik's namespace, which the routes name.
SERVERS_TRANSPORT = "vault"
NODE_PREFIX_MIDDLEWARE = "vault-node-prefix"
# Traefik's BasicAuth in front of Vault's unauthenticated bootstrap endpoints. A Secret of type
# kubernetes.io/basic-auth holds the plain password; Traefik hashes it itself (traefik v3.6.2
# pkg/provider/kubernetes/crd/kubernetes.go: createBasicAuthMiddleware, loadBasicAuthCredentials).
BOOTSTRAP_USER = "vault-bootstrap"
BOOTSTRAP_AUTH = "vault-bootstrap-auth"  # the Secret and the Middleware
# Paths of the public name that Vault serves without a token and that change who holds the keys or
# root: `init`, unseal shares (and `reset`), rekeying and root/recovery token generation, whose
# attempts anyone could otherwise start with their own OTP or PGP key, or cancel. Traefik matches
# PathPrefix character by character (pkg/muxer/http/matcher.go pathPrefix), so `/v1/sys/rekey`
# also covers `/v1/sys/rekey-recovery-key`.
BOOTSTRAP_PATHS_PRIORITY = 100_000  # above the public route's routers (ranked by their rules' length)
BOOTSTRAP_PATHS = ("/v1/sys/init", "/v1/sys/unseal", "/v1/sys/rekey", "/v1/sys/generate-root", "/v1/sys/generate-recovery-token")

# Child tokens only, for the provider's token of each run (pulumi-vault's) and a person's `vault token create`.
CHILD_TOKENS_ONLY = """\
# Child tokens only: nothing that outlives the login.
path "auth/token/create" {
  capabilities = ["create", "update"]
  allowed_parameters = {
    "display_name"      = []
    "ttl"               = []
    "explicit_max_ttl"  = []
    "renewable"         = []
    "policies"          = []
    "meta"              = []
    "num_uses"          = []
    "no_default_policy" = []
    "type"              = ["service"]
    "period"            = ["", "0s"]
    "entity_alias"      = [""]
  }
}
path "auth/token/create-orphan" { capabilities = ["deny"] }
path "auth/token/create/*" { capabilities = ["deny"] }
path "auth/token/roles/*" { capabilities = ["read", "list"] }
"""

# Full administration, for the platform's cluster admins (through OIDC only) and the deploy jobs' logins
# (platform-deploy; platform-deploy-scheduled, rebuild-dev's), which run `pulumi up` with it (providerAuth pipeline). It is
# everything root can do but what would let a login keep Vault past its hour or hide what it does; those are
# root's, for break-glass (README, "When root is needed again"):
# * tokens that outlive the login they are made from: no orphan (`create-orphan`, `no_parent`), periodic or
#   batch token, and none of a token role (which can be orphan and periodic). Child tokens, revoked with their
#   parent, remain: pulumi-vault makes one of its token on every run with display_name, ttl, explicit_max_ttl
#   and renewable (terraform-provider-vault internal/provider/meta.go createChildToken). The vault CLI's
#   `token create` also sends type "service" and an empty period and entity_alias: those values pass, no
#   others (hvac's token.create, which always sends no_parent, is refused: use write);
# * this policy itself. Vault lower-cases and trims a policy's name (`sys/policies/acl/PLATFORM-ADMIN` writes
#   it), so the names the program writes are allowed rather than this one denied: `tenant-*` and the platform's
#   own (tests/test_vault_attacks.py checks every policy of both plans against this list);
# * enabling or disabling an auth method (userpass would issue tokens of any lifetime) and the token store's
#   ceiling; the program tunes and configures the methods it declares;
# * audit devices and the audited headers, raw storage, the plugin catalog, moving mounts;
# * entities' own policies and internal groups, which would keep platform-admin for a person who leaves the
#   admins' group (the program declares external groups only, whose members come from each sign-in).
ADMIN_POLICY = """\
# platform-admin: full administration of Vault, for the platform's cluster admins and the deploy jobs.
path "*" {
  capabilities = ["create", "read", "update", "patch", "delete", "list", "sudo"]
}
""" + CHILD_TOKENS_ONLY + """\
# Policies the program writes; platform-admin (under any spelling) only root.
path "sys/policies/acl/*" { capabilities = ["read", "list"] }
path "sys/policy/*" { capabilities = ["read", "list"] }
path "sys/policies/acl/tenant-*" { capabilities = ["create", "read", "update", "patch", "delete", "list"] }
path "sys/policies/acl/platform-approver" { capabilities = ["create", "read", "update", "patch", "delete"] }
path "sys/policies/acl/platform-reader" { capabilities = ["create", "read", "update", "patch", "delete"] }
path "sys/policies/acl/platform-raft-snapshot" { capabilities = ["create", "read", "update", "patch", "delete"] }
path "sys/policies/acl/platform-promote-image" { capabilities = ["create", "read", "update", "patch", "delete"] }
path "sys/policies/acl/platform-preview-token" { capabilities = ["create", "read", "update", "patch", "delete"] }
# Auth methods: tune those there are; enable or disable one, or tune the token store, only root.
path "sys/auth/*" { capabilities = ["read", "list"] }
path "sys/auth/+/tune" { capabilities = ["read", "update", "sudo"] }
path "sys/mounts/auth/*" { capabilities = ["read", "list"] }
path "sys/mounts/auth/+/tune" { capabilities = ["read", "update", "sudo"] }
path "sys/auth/token/tune" { capabilities = ["read", "sudo"] }
path "sys/mounts/auth/token/tune" { capabilities = ["read", "sudo"] }
path "sys/remount*" { capabilities = ["deny"] }
# What is audited, storage underneath the ACLs, server plugins: read only, or nothing.
path "sys/audit" { capabilities = ["read", "sudo"] }
path "sys/audit/*" { capabilities = ["deny"] }
path "sys/config/auditing/*" { capabilities = ["read", "list", "sudo"] }
path "sys/raw" { capabilities = ["deny"] }
path "sys/raw/*" { capabilities = ["deny"] }
path "sys/plugins/*" { capabilities = ["read", "list", "sudo"] }
# Identities: no policy of an entity's own, external groups only (members from each sign-in); and their aliases.
path "identity/entity*" { capabilities = ["read", "list"] }
path "identity/group*" {
  capabilities = ["create", "read", "update", "patch", "delete", "list"]
  allowed_parameters = {
    "type" = ["external"]
    "*"    = []
  }
  denied_parameters = {
    "member_entity_ids" = []
    "member_group_ids"  = []
  }
}
"""

# Neither reader of Vault below gets storage (raft snapshots are the whole encrypted data set, `sys/raw` is
# storage itself) nor the server's diagnostics, which review nothing: profiling (`sys/pprof`, a CPU profile or
# trace loads the server for as long as asked) and its live log stream (`sys/monitor`).
NO_STORAGE_OR_DIAGNOSTICS = """\
path "sys/raw*" {
  capabilities = ["deny"]
}
path "sys/storage/raft/snapshot*" {
  capabilities = ["deny"]
}
path "sys/pprof*" {
  capabilities = ["deny"]
}
path "sys/monitor" {
  capabilities = ["deny"]
}
"""

# Reading identity/oidc/token/<role> issues an identity token, which a cloud may trust (VaultFederation.identity_tokens:
# the reviewed previews' AWS role): the readers below deny it; only that role's own token policy grants it (its exact
# path wins over this glob).
NO_IDENTITY_TOKENS = """\
path "identity/oidc/token/*" {
  capabilities = ["deny"]
}
"""

# Read-only view of Vault's configuration, role bindings and identities, for system approvers:
# enough to review what a change did, nothing that reads a secret or changes anything; no storage
# or diagnostics. Secret engines' paths are not granted at all.
APPROVER_POLICY = """\
# platform-approver: read-only on configuration, roles and identities, for system approvers.
path "sys/*" {
  capabilities = ["read", "list"]
}
""" + NO_STORAGE_OR_DIAGNOSTICS + """\
path "identity/*" {
  capabilities = ["read", "list"]
}
path "auth/+/config" {
  capabilities = ["read"]
}
path "auth/+/role/*" {
  capabilities = ["read", "list"]
}
""" + NO_IDENTITY_TOKENS


# What `pulumi preview --refresh` reads of Vault, for the scheduled drift checks (components/vault_federation.py
# DRIFT_ROLE), which run with the variables of the schedule's owner: every declared object and the audit device
# (listing audit devices needs sudo), and pulumi-vault's child token; nothing written, no storage or diagnostics.
READER_POLICY = """\
# platform-reader: what a refresh reads, for the drift checks and the merge requests' previews.
path "*" {
  capabilities = ["read", "list"]
}
path "sys/audit" {
  capabilities = ["read", "sudo"]
}
""" + NO_IDENTITY_TOKENS + NO_STORAGE_OR_DIAGNOSTICS + CHILD_TOKENS_ONLY


@dataclass(frozen=True, kw_only=True)
class VaultArgs(StatefulServiceArgs):
    # cert_manager: Certificates and Issuers need its CRDs; aws: KMS auto-unseal
    ingress_controller: pulumi.Resource  # the Traefik release: ServersTransport and Middleware need its CRDs
    # What serves the OIDC issuer's discovery document: Vault fetches it when the OIDC mount is configured.
    oidc_ready: Sequence[pulumi.Resource] = ()
    replicas: int = 3
    # False once bootstrapped: the provider takes VAULT_TOKEN from the environment (the deploy
    # job's short-lived login) and the root token is only for break-glass.
    provider_uses_root: bool = True


class Vault(pulumi.ComponentResource):
    url: str
    root_token: pulumi.Output[str]  # secret; the provider's token at bootstrap (providerAuth root), then revoked
    provider: vault.Provider  # for later components' Vault resources
    ca_bundle: pulumi.Output[str]  # what clients of `url` trust; "" means the system roots
    release: k8s.helm.v3.Release
    init: VaultInit  # its root_token and unseal_keys are secrets
    namespace: k8s.core.v1.Namespace

    def __init__(self, name: str, cluster: ClusterHandle, args: VaultArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:vault:Vault", name, None, opts)
        exposure = args.exposure
        role = cluster.role
        ns = self.namespace = namespace(SLICE.namespace, cluster, self)
        in_ns = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[ns])
        args.inventory.register(*credentials(role, args))
        peers = [f"{RELEASE}-{index}" for index in range(args.replicas)]
        # The peers the program talks to one by one: all of them to unseal (Shamir), the first to init.
        reached = peers if args.aws is None else peers[:1]

        after_traefik = pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(depends_on=[ns, args.ingress_controller]))
        # The CA's certificate goes to Traefik's namespace (SERVING_TLS.ca_namespace), beside the transport.
        serving_cert = internal_certificate(role, SERVING_TLS, after_traefik)
        transport = servers_transport(role, SERVERS_TRANSPORT, INGRESS_NAMESPACE, f"{RELEASE}-active.{NAMESPACE}.svc", after_traefik)

        # Before the release: its pods must never answer a bootstrap path without the credential.
        password, guard = self._bootstrap_guard(role, exposure, after_traefik)

        server: dict[str, Any] = {}
        if args.aws is not None:
            key, unseal_role = self._kms_unseal(role, args.aws, args.protect)
            region = args.aws.region
            # The resource id of a KMS key is its key id.
            config: pulumi.Input[str] = key.id.apply(lambda key_id: raft_config(args.replicas, kms=(region, key_id)))
            server["serviceAccount"] = {"annotations": {"eks.amazonaws.com/role-arn": unseal_role.arn}}
        else:
            config = raft_config(args.replicas, kms=None)
            # The chart requires one peer per node (vault 0.34.1 values.yaml:688, `server.affinity`), but a
            # kubeconfig cluster's nodes are not the program's (kind makes one): the release waits for every
            # peer (atomic; helm v3.20.2 pkg/kube/ready.go:424, StatefulSet ready only with all replicas) and
            # vault-init unseals each, so a peer left Pending failed the first `up`. Prefer apart, allow together.
            server["affinity"] = spread_affinity(SERVER_LABELS)
        self.release = release(
            RELEASE,
            "vault",
            ns,
            sized(release_values(args, config, server), args.resources, "server"),
            cluster,
            self,
            version=args.chart_version,
            depends_on=[*serving_cert, transport, *guard],
            protect=args.protect,  # the raft volumes belong to the release
        )

        routes = self._routes(role, reached, exposure, in_ns, pulumi.ResourceOptions.merge(
            after_traefik, pulumi.ResourceOptions(depends_on=[args.cert_manager, transport, *serving_cert, *guard])))
        node_url = lambda peer: f"{exposure.url}{NODE_PATH}/{peer}"  # noqa: E731
        self.init = VaultInit(
            f"{role}-vault-init",
            init_address=node_url(peers[0]),
            unseal_addresses=[] if args.aws is not None else [node_url(peer) for peer in reached],
            ca_bundle=exposure.ca_bundle,
            route_user=BOOTSTRAP_USER,
            route_password=password,
            auto_unseal=args.aws is not None,
            # Once the provider no longer uses it, nothing may: revoked by the next `pulumi up`.
            revoke_root=not args.provider_uses_root,
            # Deleting it from the state would lose the only copy of the keys.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.release, routes], protect=args.protect),
        )

        self.url = exposure.url
        self.root_token = pulumi.Output.secret(self.init.root_token)
        self.ca_bundle = pulumi.Output.from_input(exposure.ca_bundle)
        self.provider = vault.Provider(
            f"{role}-vault",
            address=exposure.url,
            # None: terraform-provider-vault reads VAULT_TOKEN, which never reaches the state.
            token=self.root_token if args.provider_uses_root else None,
            # terraform-provider-vault takes a CA only as a file; none means the system roots.
            ca_cert_file=self.ca_bundle.apply(lambda pem: provider_ca_file(pem) if pem else None),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self._configure(role, args)
        self.register_outputs({"url": self.url, "release": self.release.status})

    def _bootstrap_guard(
        self, role: str, exposure: Exposure, after_traefik: pulumi.ResourceOptions
    ) -> tuple[pulumi.Output[str], list[pulumi.Resource]]:
        """The bootstrap credential and Traefik's BasicAuth of it; the public name refuses the bootstrap paths. All in
        Traefik's namespace: a Middleware reads its Secret in its own namespace (Traefik v3.6.2 crd/kubernetes.go
        createBasicAuthMiddleware, line 1080), and a route names Middlewares of its own.

        Returns the password (a secret) and what must exist before Vault's pods answer.
        """
        password = random.RandomPassword(f"{role}-vault-bootstrap-auth", length=32, special=False, opts=pulumi.ResourceOptions(parent=self))
        secret = k8s.core.v1.Secret(
            f"{role}-vault-bootstrap-auth",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=BOOTSTRAP_AUTH, namespace=INGRESS_NAMESPACE),
            type="kubernetes.io/basic-auth",
            string_data={"username": BOOTSTRAP_USER, "password": password.result},
            opts=after_traefik,
        )
        auth = custom_resource(
            f"{role}-vault-bootstrap-auth", "traefik.io/v1alpha1", "Middleware", BOOTSTRAP_AUTH, INGRESS_NAMESPACE,
            # removeHeader: Vault never sees the credential (nor logs it in the audit device's headers).
            {"basicAuth": {"secret": BOOTSTRAP_AUTH, "realm": "vault-bootstrap", "removeHeader": True}},
            pulumi.ResourceOptions.merge(after_traefik, pulumi.ResourceOptions(depends_on=[secret])),
        )
        # Traefik's noop@internal answers 418 (as OpenUnison's redirect filter); people and VaultInit
        # reach these paths through `/node/<peer>` with the credential, a standby forwarding to the leader.
        host = exposure.hostname
        public = custom_resource(
            f"{role}-vault-bootstrap-paths", "traefik.io/v1alpha1", "IngressRoute", "vault-bootstrap-paths", INGRESS_NAMESPACE,
            {
                "routes": [{
                    "kind": "Rule",
                    "match": f"Host(`{host}`) && (" + " || ".join(f"PathPrefix(`{path}`)" for path in BOOTSTRAP_PATHS) + ")",
                    "priority": BOOTSTRAP_PATHS_PRIORITY,
                    "services": [{"kind": "TraefikService", "name": "noop@internal"}],
                }],
                "tls": {"secretName": PUBLIC_TLS_SECRET},
            },
            after_traefik,
        )
        return password.result, [secret, auth, public]

    def _kms_unseal(
        self, role: str, identity: AwsWorkloadIdentity, protect: bool
    ) -> tuple[aws.kms.Key, aws.iam.Role]:
        """The auto-unseal key and the role the `vault` service account assumes to use it."""
        opts = pulumi.ResourceOptions(parent=self, provider=identity.provider)
        key = aws.kms.Key(
            f"{role}-vault-unseal",
            description=f"Auto-unseal key of the platform Vault on the {role} cluster",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags={CLUSTER_LABEL: role, **MANAGED_BY, **history_key_tags(protect)},
            # Losing this key loses Vault's data.
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(protect=protect)),
        )
        trust = service_account_trust(identity, NAMESPACE, SERVICE_ACCOUNT)
        unseal_role = aws.iam.Role(f"{role}-vault-unseal", assume_role_policy=trust, opts=opts)
        aws.iam.RolePolicy(
            f"{role}-vault-unseal",
            role=unseal_role.name,
            policy=key.arn.apply(lambda arn: json.dumps(kms_policy(arn))),
            opts=opts,
        )
        return key, unseal_role

    def _routes(
        self, role: str, peers: list[str], exposure: Exposure, in_ns: pulumi.ResourceOptions, after_traefik: pulumi.ResourceOptions
    ) -> k8s.apiextensions.CustomResource:
        """The public name to the active node, and `https://<host>/node/<peer>/...` to exactly one raft peer (init,
        unseal), behind the bootstrap credential. `after_traefik` depends on what the routes need."""
        # With the slash: Traefik's PathPrefix and stripPrefix compare characters (traefik v3.6.2 pkg/muxer/http/matcher.go
        # pathPrefix; pkg/middlewares/stripprefix/strip_prefix.go ServeHTTP takes the first prefix that matches and
        # restores a leading slash), so `/node/vault-1` would also take `/node/vault-10/...` and strip it to `/0/...`.
        prefixes = [f"{NODE_PATH}/{peer}/" for peer in peers]
        strip = custom_resource(
            f"{role}-vault-node-prefix", "traefik.io/v1alpha1", "Middleware", NODE_PREFIX_MIDDLEWARE, INGRESS_NAMESPACE,
            {"stripPrefix": {"prefixes": prefixes}}, after_traefik,
        )
        # In `vault` (Traefik reaches each by its name, `route`'s ExternalName Service): a sealed peer is not
        # ready, and only the pods' own namespace's Service can publish it still.
        services = [
            k8s.core.v1.Service(
                f"{role}-{peer}-node",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{peer}-node", namespace=NAMESPACE),
                spec=k8s.core.v1.ServiceSpecArgs(
                    type="ClusterIP",
                    selector={**SERVER_LABELS, "statefulset.kubernetes.io/pod-name": peer},
                    ports=[k8s.core.v1.ServicePortArgs(name="https", port=API_PORT, target_port=API_PORT)],
                    publish_not_ready_addresses=True,  # a sealed peer is exactly the one to reach
                ),
                opts=in_ns,
            )
            for peer in peers
        ]
        paths = {"/": Backend(f"{RELEASE}-active", NAMESPACE, API_PORT, transport=SERVERS_TRANSPORT)}  # the unsealed leader only
        paths |= {prefix: Backend(f"{peer}-node", NAMESPACE, API_PORT, transport=SERVERS_TRANSPORT) for peer, prefix in zip(peers, prefixes)}
        return route(
            f"{role}-vault", PUBLIC_ROUTE, exposure, paths,
            pulumi.ResourceOptions.merge(after_traefik, pulumi.ResourceOptions(depends_on=[*services, strip])),
            # The credential first: a request without it never reaches a peer.
            middlewares=dict.fromkeys(prefixes, (BOOTSTRAP_AUTH, NODE_PREFIX_MIDDLEWARE)),
        )

    def _configure(self, role: str, args: VaultArgs) -> None:
        """OIDC login mapped to platform groups, the audit device and the platform policies."""
        opts = pulumi.ResourceOptions(parent=self, provider=self.provider)
        vault.Audit(
            f"{role}-vault-audit-stdout",
            type="file",
            path="stdout",
            # stdout: the cluster's log pipeline collects it; no audit volume to fill up.
            options={"file_path": "stdout"},
            description="Audit log to the container's stdout",
            opts=root_only(opts),
        )
        policies = {
            name: vault.Policy(f"{role}-vault-policy-{name}", name=name, policy=text, opts=root_only(opts) if name == ADMIN_POLICY_NAME else opts)
            for name, text in ((ADMIN_POLICY_NAME, ADMIN_POLICY), (APPROVER_POLICY_NAME, APPROVER_POLICY), (READER_POLICY_NAME, READER_POLICY))
        }
        oidc = self.oidc = vault.jwt.AuthBackend(
            f"{role}-vault-oidc",
            type="oidc",
            path=OIDC_PATH,
            description="Platform single sign-on (OpenUnison)",
            oidc_discovery_url=args.oidc.issuer_url,
            # The issuer's certificate comes from the platform issuer too; "" means the system roots.
            oidc_discovery_ca_pem=pulumi.Output.from_input(args.exposure.ca_bundle).apply(lambda pem: pem or None),
            oidc_client_id=args.oidc.client_id,
            oidc_client_secret=args.oidc.client_secret,
            bound_issuer=args.oidc.issuer_url,
            default_role=OIDC_ROLE,
            tune=vault.jwt.AuthBackendTuneArgs(
                default_lease_ttl="1h", max_lease_ttl="1h", listing_visibility="unauth", token_type="default-service"
            ),
            # Vault refuses the configuration while the issuer's discovery document does not answer.
            opts=root_only(pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=list(args.oidc_ready)))),
        )
        vault.jwt.AuthBackendRole(
            f"{role}-vault-oidc-{OIDC_ROLE}",
            backend=oidc.path,
            role_name=OIDC_ROLE,
            role_type="oidc",
            user_claim="sub",
            groups_claim="groups",
            bound_audiences=[args.oidc.client_id],
            # Vault always asks for "openid" itself.
            oidc_scopes=[scope for scope in args.oidc.scopes if scope != "openid"],
            allowed_redirect_uris=[
                f"{args.exposure.url}/ui/vault/auth/{OIDC_PATH}/oidc/callback",
                "http://localhost:8250/oidc/callback",  # `vault login -method=oidc` on the user's machine
            ],
            token_ttl=TOKEN_TTL_SECONDS,
            token_max_ttl=TOKEN_TTL_SECONDS,
            token_policies=["default"],  # the rest comes from group membership
            opts=opts,
        )
        for group, names in group_policies(args.groups).items():
            vault_group = vault.identity.Group(
                f"{role}-vault-group-{group}",
                name=group,
                type="external",  # membership comes from the OIDC groups claim at each login
                policies=names,
                metadata={"source": "platform-groups"},
                opts=pulumi.ResourceOptions.merge(
                    opts, pulumi.ResourceOptions(depends_on=[policies[n] for n in names])
                ),
            )
            vault.identity.GroupAlias(
                f"{role}-vault-group-{group}",
                name=group,
                mount_accessor=oidc.accessor,
                canonical_id=vault_group.id,
                opts=opts,
            )


def service_dns_names() -> list[str]:
    """The in-cluster names clients and raft peers use to reach Vault."""
    names = []
    for service in (RELEASE, f"{RELEASE}-active"):
        names += [service, f"{service}.{NAMESPACE}", f"{service}.{NAMESPACE}.svc", f"{service}.{NAMESPACE}.svc.cluster.local"]
    internal = f"*.{RELEASE}-internal"  # each peer: vault-0.vault-internal, ...
    return [*names, internal, f"{internal}.{NAMESPACE}.svc", f"{internal}.{NAMESPACE}.svc.cluster.local"]


# Vault's serving certificate. ipAddresses: the chart's VAULT_ADDR inside each pod.
SERVING_TLS = BackendTlsArgs("vault", NAMESPACE, TLS_SECRET, service_dns_names(), INGRESS_NAMESPACE, ["127.0.0.1"])


def raft_config(replicas: int, kms: tuple[str, str] | None) -> str:
    """Vault's server configuration (HCL): TLS listener, raft with retry_join over TLS, optional KMS seal."""
    joins = "".join(
        textwrap.indent(
            textwrap.dedent(
                f"""\
                retry_join {{
                  leader_api_addr     = "https://{RELEASE}-{index}.{RELEASE}-internal:{API_PORT}"
                  leader_ca_cert_file = "{CA_FILE}"
                }}
                """
            ),
            "  ",
        )
        for index in range(replicas)
    )
    seal = ""
    if kms is not None:
        region, key_id = kms
        seal = f'\nseal "awskms" {{\n  region     = "{region}"\n  kms_key_id = "{key_id}"\n}}\n'
    return (
        textwrap.dedent(
            f"""\
            ui            = true
            disable_mlock = true

            listener "tcp" {{
              address         = "[::]:{API_PORT}"
              cluster_address = "[::]:{CLUSTER_PORT}"
              tls_disable     = false
              tls_cert_file   = "{TLS_DIR}/tls.crt"
              tls_key_file    = "{TLS_DIR}/tls.key"
              tls_min_version = "tls12"
            }}

            storage "raft" {{
              path = "/vault/data"
            """
        )
        + joins
        + "}\n\nservice_registration \"kubernetes\" {}\n"
        + seal
    )


def release_values(args: VaultArgs, config: pulumi.Input[str], server_extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "global": {"tlsDisable": False},
        # External Secrets delivers secrets to workloads: no mutating webhook.
        "injector": {"enabled": False},
        "server": {
            "dev": {"enabled": False},
            "ha": {
                "enabled": True,
                "replicas": args.replicas,
                # Redirects go to a name the certificate holds, not to the pod IP.
                "apiAddr": f"https://$(HOSTNAME).{RELEASE}-internal.{NAMESPACE}.svc:{API_PORT}",
                "raft": {"enabled": True, "setNodeId": True, "config": config},
            },
            "dataStorage": {"enabled": True, "size": args.storage},
            # The Kubernetes auth mounts review each client's token with that token itself.
            "authDelegator": {"enabled": False},
            "networkPolicy": {"enabled": True, "ingress": network_ingress()},
            "readinessProbe": {"enabled": True, "path": READINESS_PATH},
            "extraEnvironmentVars": {"VAULT_CACERT": CA_FILE},  # the vault CLI inside the pods
            "volumes": [{"name": "vault-tls", "secret": {"secretName": TLS_SECRET}}],
            "volumeMounts": [{"name": "vault-tls", "mountPath": TLS_DIR, "readOnly": True}],
            # The platform's route in Traefik's namespace serves the public name (`Vault._routes`).
            "ingress": {"enabled": False},
            **server_extra,
        },
    }


def network_ingress() -> list[dict[str, Any]]:
    """Who reaches Vault's pods: Traefik the API (everyone else comes through it), and the `vault`
    namespace's own pods (raft peers on both ports, the snapshot job); no other pod of the cluster."""
    def tcp(*ports: int) -> list[dict[str, Any]]:
        return [{"protocol": "TCP", "port": port} for port in ports]

    traefik = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": INGRESS_NAMESPACE}}}
    return [{"from": [traefik], "ports": tcp(API_PORT)}, {"from": [{"podSelector": {}}], "ports": tcp(API_PORT, CLUSTER_PORT)}]


def kms_policy(key_arn: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"], "Resource": key_arn}
        ],
    }


def group_policies(groups: PlatformGroups) -> dict[str, list[str]]:
    """Upstream group -> Vault policies; one external group each (Vault allows one alias per mount)."""
    out: dict[str, list[str]] = {}
    for group in groups.cluster_admins:
        out.setdefault(group, []).append(ADMIN_POLICY_NAME)
    for group in groups.system_approvers:
        out.setdefault(group, []).append(APPROVER_POLICY_NAME)
    return out


def provider_ca_file(pem: str) -> str:
    """The CA bundle as a file for pulumi-vault, which accepts a CA only as a path.

    terraform-provider-vault has `ca_cert_file`/`ca_cert_dir` and no inline PEM (open upstream:
    hashicorp/terraform-provider-vault#1453, #972; PR #1565 unmerged). Its only other source is
    the environment of the `pulumi` CLI, which the program cannot set. The bundle is public, so
    it is written here, named by its hash: the same bundle always gives the same path, and the
    file exists before the provider is configured because the path is derived from it.
    """
    path = Path(tempfile.gettempdir()) / "platform-bootstrap" / f"vault-ca-{hashlib.sha256(pem.encode()).hexdigest()[:16]}.pem"
    if not path.is_file() or path.read_text() != pem:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        partial.write_text(pem)
        os.replace(partial, path)  # atomic: a concurrent run never reads half a file
    return str(path)


def credentials(role: str, args: VaultArgs) -> list[Credential]:
    """Vault's bootstrap material, the tokens it issues the program and people, and its own TLS."""
    prefix = f"{role}-vault"
    init = f"{prefix}-init"
    on_eks = args.aws is not None
    entries = [Credential(
        what="Vault root token",
        category="bootstrap",
        issuer="Vault (operator init)",
        holder=f"{STATE} (vault-init output); the pulumi-vault provider uses it only while "
        "platform:services.vault.providerAuth is root (bootstrap)",
        scope="root",
        lifetime_seconds=None,
        rotation="after bootstrap: providerAuth pipeline, whose first `pulumi up` revokes it (vault-init; "
        "break-glass: `vault operator generate-root`, README)",
        resources=(init,),
    ), Credential(
        what="Vault recovery keys" if on_eks else "Vault unseal keys",
        category="bootstrap",
        issuer="Vault (operator init)",
        holder=f"{STATE} (vault-init output)",
        scope="generate-root" + ("" if on_eks else " and unsealing each raft peer"),
        lifetime_seconds=None,
        rotation="`vault operator rekey` by their holders",
        resources=(init,),
    ), Credential(
        what="Vault bootstrap route credential",
        category="bootstrap",
        issuer="pulumi_random",
        holder=f"{STATE} (vault-init input) and Traefik (Secret {INGRESS_NAMESPACE}/{BOOTSTRAP_AUTH})",
        scope="HTTP basic auth of the `/node/vault-<i>` routes, the only way to Vault's unauthenticated "
        "init, unseal, rekey and generate-root endpoints",
        lifetime_seconds=None,
        rotation="replace the random password (`pulumi up --replace` on it); vault-init and Traefik take the new one",
        resources=(f"{prefix}-bootstrap-auth",),
    ), vault_token(
        "child tokens of the pulumi-vault provider",
        login="from the root token (bootstrap) or the deploy job's platform-deploy login (VAULT_TOKEN)",
        holder="the pulumi-vault provider during one Pulumi run",
        scope="what its parent token may do (root, or platform-admin)",
        seconds=PROVIDER_CHILD_TOKEN_SECONDS,
        rotation="a new one for every run",
        resources=(prefix,),
    ), vault_token(
        "Vault tokens of people (OIDC sign-in)",
        login="auth/oidc (OpenUnison)",
        holder="people signed in to Vault",
        scope="policies of their platform groups",
        seconds=TOKEN_TTL_SECONDS,
        rotation="sign in again",
        resources=(f"{prefix}-oidc-{OIDC_ROLE}",),
    ), *internal_credentials(role, SERVING_TLS, "Vault"), cert_manager_certificate(
        "TLS certificate of Vault's public name",
        issuer="cert-manager (the platform ClusterIssuer)",
        holder=f"Traefik (Secret {INGRESS_NAMESPACE}/{PUBLIC_TLS_SECRET})",
        scope="authenticates Vault's hostname to clients",
        days=90,  # cert-manager's default duration
        resources=(f"{prefix}-public-tls",),
    )]
    if on_eks:
        entries.append(irsa_credential(f"{prefix}-unseal", f"{NAMESPACE}/{SERVICE_ACCOUNT}", role, "Vault's auto-unseal KMS key"))
    return entries


def declare(parts: ControlPlaneParts, settings: ServiceSettings) -> Vault:
    args = VaultArgs.extend(
        parts.stateful(SLICE, settings),
        ingress_controller=parts.ingress.release,
        oidc_ready=parts.identity.discovery_ready,
        provider_uses_root=settings.options["provider_auth"] == "root",
    )
    return Vault("vault", parts.cluster, args)


def tenant(parts: TenantParts) -> TenantSecrets | None:
    """The tenant's secrets paths, signing key and the identities that read them."""
    if parts.platform.vault is None:
        return None
    syncs = {e: sync.release for e in parts.namespaces if (sync := parts.addon(e, EXTERNAL_SECRETS)) is not None}
    return TenantSecrets(
        f"{parts.name}-secrets",
        TenantSecretsArgs(
            tenant=parts.name,
            namespaces=dict(parts.namespaces),
            namespace_resources=dict(parts.namespace_resources),
            # Only the app project's push and sign jobs need Vault; the ops projects' jobs use their job token.
            ci_project_paths=[f"{parts.name}/{APP_PROJECT}"] if parts.get(GITLAB) else [],
            external_secrets=syncs,
            platform=parts.platform,
        ),
        parts.opts,
    )


SLICE: ServiceSlice[Vault] = ServiceSlice(
    key="vault",
    namespace=PlatformNamespace(NAMESPACE, "Vault, the platform's secret store"),
    chart="vault",
    declare=declare,
    default_replicas=3,
    # Vault's CLI (`vault login -method=oidc`) listens on localhost for its callback.
    redirect_uris=lambda host: (f"https://{host}/ui/vault/auth/oidc/oidc/callback", "http://localhost:8250/oidc/callback"),
    # How the program's pulumi-vault provider reaches Vault. "root": with the root token from
    # vault-init (bootstrap: nothing else exists yet). "pipeline": with VAULT_TOKEN, the deploy
    # job's one-hour login at jwt-gitlab (role platform-deploy); the root token can be revoked.
    options={"provider_auth": (Literal["root", "pipeline"], "root")},
    tenant=tenant,
)
