"""Short-lived token federation: ArgoCD on the control plane reaches the remote clusters
without any stored credential.

1. ArgoCD's cluster Secret for a remote cluster holds an exec credential plugin
   (`execProviderConfig`) and the cluster's CA, never a token, password or client key.
2. The plugin (POSIX sh and a static curl, mounted into the application controller) presents
   the controller's own projected service-account token (10 minutes) to OpenUnison at
   `/api/get-target-token/<target>`, trusting only the platform CA.
3. OpenUnison checks that token with a TokenReview against the control plane (its `oauth2k8s`
   mechanism), authorizes only `system:serviceaccount:argocd:argocd-application-controller`,
   and answers with a token minted by that cluster's `Target`: signed by the login portal's
   `remotek8s` identity provider, audience that one cluster, subject the platform's ArgoCD,
   valid one minute (OpenUnison's `OpenShiftTarget` fixes the lifetime).
4. Each remote cluster trusts that issuer for that audience (EKS: an OIDC identity provider
   config; other clusters: components/kube_oidc_proxy.py) and binds the federated user to a
   ClusterRole with what ArgoCD needs to deploy tenant workloads, not cluster-admin.

Why the controller's token keeps the API server's audience: OpenUnison's `oauth2k8s` sends a
TokenReview without `spec.audiences`, which the API server checks against its own audiences;
a token minted for another audience is refused. The projected token is still not the default
one: it lives 10 minutes instead of the default volume's hour (which the API server may extend
to a year), and it never leaves the pod except over TLS to OpenUnison.

Why one token URL per target (`/api/get-target-token/<target>`, an `Application` each): each
URL's filter serves exactly one target, named in its code, so no request can reach another
OpenUnison target (the `k8s` target would hand out OpenUnison's own service-account token);
an unknown target has no URL at all. Adding a cluster later (a tenant's virtual cluster) adds
its own URL and nothing else changes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.cluster import ClusterHandle
from policy.labels import CLUSTER_LABEL, ENVIRONMENT_LABEL, MANAGED_BY, TENANT_LABEL, managed_by
from components.versions import BUSYBOX_IMAGE, CURL_IMAGE

# --- what both sides agree on -----------------------------------------------------------------

# The login portal's identity provider for remote clusters (OpenUnison/helm-charts
# orchestra-login-portal templates/openunison/applications/remotek8s.yaml); OpenShiftTarget
# signs its `tokenType: oidc` tokens with that application's `jwtSigningKey` (RS256).
REMOTE_ISSUER_PATH = "/auth/idp/remotek8s"
TOKEN_API_PATH = "/api/get-target-token"
# The subject of every federated token, and the user the remote clusters see.
FEDERATED_SUBJECT = "platform-argocd"
USERNAME_PREFIX = "openunison:"
FEDERATED_USER = f"{USERNAME_PREFIX}{FEDERATED_SUBJECT}"
# The only caller the token API serves (the argo-cd chart's controller service account).
ARGOCD_NAMESPACE = "argocd"
CONTROLLER_SERVICE_ACCOUNT = "argocd-application-controller"
CONTROLLER_USERNAME = f"system:serviceaccount:{ARGOCD_NAMESPACE}:{CONTROLLER_SERVICE_ACCOUNT}"
# OpenShiftTarget.generateOidcToken(): exp = now + 1 minute, not configurable; the API refuses
# to pass on anything living longer than MAX_TOKEN_LIFETIME_SECONDS.
TOKEN_LIFETIME_SECONDS = 60
MAX_TOKEN_LIFETIME_SECONDS = 300
EXEC_API_VERSION = "client.authentication.k8s.io/v1"
# The orchestra chart's own Kubernetes target (the control plane), which oauth2k8s reviews with.
LOCAL_TARGET = "k8s"
AUTH_CHAIN = "argocd-controller-token"

# --- the credential plugin inside the application controller ----------------------------------

PLUGIN_DIR = "/opt/platform-credentials"
PLUGIN_BIN_DIR = f"{PLUGIN_DIR}/bin"
PLUGIN_SCRIPT_DIR = f"{PLUGIN_DIR}/plugin"
SCRIPT_NAME = "openunison-target.sh"
SCRIPT_PATH = f"{PLUGIN_SCRIPT_DIR}/{SCRIPT_NAME}"
CURL_PATH = f"{PLUGIN_BIN_DIR}/curl"
PLUGIN_CA_KEY = "ca.crt"
# Ubuntu's bundle in the argocd image: used when the platform's certificates chain to public roots.
SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"
SA_TOKEN_DIR = "/var/run/secrets/platform/openunison"
SA_TOKEN_PATH = f"{SA_TOKEN_DIR}/token"
SA_TOKEN_SECONDS = 600
PLUGIN_CONFIG_MAP = "argocd-credential-plugin"
ARGOCD_UID = 999  # the argocd image's user: the copied binaries belong to it

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SHELL_SAFE = re.compile(r"^[A-Za-z0-9._:/@-]+$")


def target_name(cluster: str) -> str:
    """The OpenUnison Target of a remote cluster, and the audience of the tokens it mints."""
    if not _DNS_LABEL.match(cluster) or len(cluster) > 50:
        raise ValueError(f"cluster name {cluster!r} must be a DNS label of at most 50 characters")
    return f"federation-{cluster}"


def token_api_uri(target: str) -> str:
    return f"{TOKEN_API_PATH}/{target}"


@dataclass(frozen=True)
class OpenUnisonRefs:
    """What federation needs from OpenUnison on the control plane."""

    url: str  # https://<portal host>, no trailing slash
    namespace: str
    operator_release: pulumi.Resource  # installs the openunison.tremolo.io CRDs
    portal_release: pulumi.Resource  # declares oauth2k8s, remotek8s and the `k8s` target
    ca_bundle: pulumi.Output[str]  # PEM clients trust OpenUnison with; "" means public roots

    @property
    def issuer_url(self) -> str:
        return f"{self.url}{REMOTE_ISSUER_PATH}"


@dataclass(frozen=True)
class RemoteCluster:
    """A cluster ArgoCD deploys to through federation (see stacks/federation.py)."""

    name: str  # the ArgoCD cluster name: dev, prod, search-dev
    server_url: pulumi.Input[str]
    ca_data: pulumi.Input[str]  # base64 PEM
    environment: str  # dev or prod
    tenant: str | None = None  # a tenant's own virtual cluster
    depends_on: Sequence[pulumi.Resource] = ()  # the cluster's trust in OpenUnison, its RBAC
    parent: pulumi.Resource | None = None  # the tenant, for a virtual cluster: its Target and Secret go with it


# --- the exec credential plugin -----------------------------------------------------------------


def credential_script(openunison_url: str, ca_file: str, curl: str = CURL_PATH, token_file: str = SA_TOKEN_PATH) -> str:
    """The plugin ArgoCD runs as `<script> <target>`: prints the ExecCredential OpenUnison returns."""
    for what, value in (("OpenUnison URL", openunison_url), ("CA file", ca_file), ("curl", curl), ("token file", token_file)):
        if not _SHELL_SAFE.match(value):
            raise ValueError(f"{what} {value!r} must not need shell quoting")
    if not openunison_url.startswith("https://"):
        raise ValueError(f"the OpenUnison URL must be https://, got {openunison_url!r}")
    return f"""#!/bin/sh
# ArgoCD exec credential plugin ({EXEC_API_VERSION}). Usage: {SCRIPT_NAME} <target>
# Asks OpenUnison for a one-minute token for one remote cluster, proving who asks with this
# pod's projected service-account token. Nothing is stored; TLS is verified against CA_FILE.
set -eu
OPENUNISON='{openunison_url.rstrip("/")}'
CA_FILE='{ca_file}'
CURL='{curl}'
TOKEN_FILE='{token_file}'
target="${{1:-}}"
case "$target" in
  "" | *[!a-z0-9-]*) echo "usage: $0 <target>, a lower-case DNS label" >&2; exit 2 ;;
esac
# The bearer header reaches curl on stdin (printf is a builtin): never on a command line.
credential="$(printf 'Authorization: Bearer %s\\n' "$(cat "$TOKEN_FILE")" |
  "$CURL" --silent --show-error --fail --proto '=https' --tlsv1.2 --max-time 20 \\
    --cacert "$CA_FILE" --header @- "$OPENUNISON{TOKEN_API_PATH}/$target")"
case "$credential" in
  *'"kind":"ExecCredential"'*) printf '%s\\n' "$credential" ;;
  *) echo "OpenUnison answered without an ExecCredential for $target" >&2; exit 1 ;;
esac
"""


def _copy_container(name: str, image: str, command: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "command": command,
        "volumeMounts": [{"name": "credential-plugin-bin", "mountPath": PLUGIN_BIN_DIR}],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": ARGOCD_UID,
            "runAsGroup": ARGOCD_UID,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
    }


def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        elif key in out:
            raise ValueError(f"helm value {key!r} is already set")
        else:
            out[key] = value
    return out


@dataclass(frozen=True)
class CredentialPlugin:
    """The plugin's files and what the argo-cd chart needs to mount them into the controller."""

    openunison_url: str
    ca_bundle: pulumi.Output[str]  # PEM of the platform CA; "" means the system trust store

    def files(self) -> pulumi.Output[dict[str, str]]:
        def build(ca: str) -> dict[str, str]:
            if ca.strip():
                return {SCRIPT_NAME: credential_script(self.openunison_url, f"{PLUGIN_SCRIPT_DIR}/{PLUGIN_CA_KEY}"), PLUGIN_CA_KEY: ca}
            return {SCRIPT_NAME: credential_script(self.openunison_url, SYSTEM_CA_FILE)}

        return self.ca_bundle.apply(build)

    def config_map(self, name: str, cluster: ClusterHandle, namespace: k8s.core.v1.Namespace, parent: pulumi.Resource) -> k8s.core.v1.ConfigMap:
        return k8s.core.v1.ConfigMap(
            name,
            metadata=k8s.meta.v1.ObjectMetaArgs(name=PLUGIN_CONFIG_MAP, namespace=namespace.metadata.name, labels=managed_by()),
            data=self.files(),
            opts=pulumi.ResourceOptions(parent=parent, provider=cluster.provider, depends_on=[namespace]),
        )

    @staticmethod
    def helm_values() -> dict[str, Any]:
        """argo-cd chart values: the plugin, its binaries and a dedicated short-lived token."""
        return {
            "controller": {
                # No download at pod start: binaries come from images pinned by digest. The
                # curl image has no shell, so a static busybox copies itself first and then
                # runs inside the curl image to copy curl out.
                "initContainers": [
                    _copy_container(
                        "credential-plugin-busybox", BUSYBOX_IMAGE.ref,
                        ["/bin/busybox", "cp", "/bin/busybox", f"{PLUGIN_BIN_DIR}/busybox"],
                    ),
                    _copy_container(
                        "credential-plugin-curl", CURL_IMAGE.ref,
                        [f"{PLUGIN_BIN_DIR}/busybox", "sh", "-c",
                         f"cp /bin/curl {CURL_PATH} && rm {PLUGIN_BIN_DIR}/busybox"],
                    ),
                ],
                "volumes": [
                    {"name": "credential-plugin-bin", "emptyDir": {"sizeLimit": "64Mi"}},
                    {"name": "credential-plugin", "configMap": {"name": PLUGIN_CONFIG_MAP, "defaultMode": 0o555}},
                    # Not the default token: 10 minutes, the API server's own audience (what
                    # OpenUnison's TokenReview accepts, see the module docstring).
                    {
                        "name": "openunison-token",
                        "projected": {
                            "sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": SA_TOKEN_SECONDS}}]
                        },
                    },
                ],
                "volumeMounts": [
                    {"name": "credential-plugin-bin", "mountPath": PLUGIN_BIN_DIR, "readOnly": True},
                    {"name": "credential-plugin", "mountPath": PLUGIN_SCRIPT_DIR, "readOnly": True},
                    {"name": "openunison-token", "mountPath": SA_TOKEN_DIR, "readOnly": True},
                ],
            },
            # The federated user is not cluster-admin: skip the kinds it may not list instead
            # of failing the whole cluster cache ("normal": learn it from the list errors).
            "configs": {"cm": {"resource.respectRBAC": "normal"}},
        }

    def merge_into(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """`values` plus `helm_values()`; a key both set is an error, not a silent override."""
        return _merge(values, self.helm_values())


# --- ArgoCD's cluster Secret --------------------------------------------------------------------


def cluster_config(target: str, ca_data: str, command: str = SCRIPT_PATH) -> dict[str, Any]:
    """The `config` of an ArgoCD cluster Secret: the exec plugin and the CA, no credential."""
    if not ca_data:
        raise ValueError(f"{target}: the cluster's CA (base64 PEM) is required")
    base64.b64decode(ca_data, validate=True)
    return {
        "execProviderConfig": {
            "command": command,
            "args": [target],
            "apiVersion": EXEC_API_VERSION,
            "installHint": f"mounted into argocd-application-controller from ConfigMap {PLUGIN_CONFIG_MAP}",
        },
        "tlsClientConfig": {"caData": ca_data},
    }


def config_digest(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ArgoClusterSecretArgs:
    cluster_name: str  # the ArgoCD cluster name: dev, prod, payments-dev
    server_url: pulumi.Input[str]
    ca_data: pulumi.Input[str]  # base64 PEM of the CA that signs the server's certificate
    target: str  # the OpenUnison target whose tokens the plugin asks for
    environment: str  # dev or prod
    argocd_release: pulumi.Resource  # the argo-cd release (it owns the namespace and reads the Secret)
    tenant: str | None = None  # set on a tenant's own virtual cluster only
    depends_on: Sequence[pulumi.Resource] = ()  # e.g. the token API and the remote trust


class ArgoClusterSecret(pulumi.ComponentResource):
    """ArgoCD's Secret for one remote cluster, on the control plane."""

    config: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str, cluster: ClusterHandle, args: ArgoClusterSecretArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:federation:ArgoClusterSecret", name, None, opts)
        if args.environment not in ("dev", "prod"):
            raise ValueError(f"{args.cluster_name}: environment must be dev or prod, got {args.environment!r}")
        labels = {
            "argocd.argoproj.io/secret-type": "cluster",
            CLUSTER_LABEL: args.cluster_name,
            ENVIRONMENT_LABEL: args.environment,
            **({TENANT_LABEL: args.tenant} if args.tenant else {}),
        }
        self.config = pulumi.Output.from_input(args.ca_data).apply(lambda ca: cluster_config(args.target, ca))
        # The whole Secret is redacted in plans; the digest shows (and diffs) which config it holds.
        digest = self.config.apply(config_digest)
        k8s.core.v1.Secret(
            f"{name}-secret",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=f"cluster-{args.cluster_name}",
                namespace=ARGOCD_NAMESPACE,
                labels=managed_by(**labels),
                annotations={"platform.io/config-sha256": digest},
            ),
            type="Opaque",
            string_data={
                "name": args.cluster_name,
                "server": args.server_url,
                "config": self.config.apply(lambda c: json.dumps(c, sort_keys=True)),
            },
            opts=pulumi.ResourceOptions(
                parent=self, provider=cluster.provider, depends_on=[args.argocd_release, *args.depends_on]
            ),
        )
        self.register_outputs({"cluster": args.cluster_name, "configSha256": digest})


# --- OpenUnison: who may ask, and one target per remote cluster -------------------------------


@dataclass(frozen=True)
class TokenBrokerArgs:
    openunison: OpenUnisonRefs


class TokenBroker(pulumi.ComponentResource):
    """The authentication chain of the token API: the controller's token, checked by TokenReview."""

    chain: pulumi.Resource
    chain_name: str = AUTH_CHAIN

    def __init__(self, name: str, cluster: ClusterHandle, args: TokenBrokerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:federation:TokenBroker", name, None, opts)
        ou = args.openunison
        self.chain = k8s.apiextensions.CustomResource(
            f"{name}-chain",
            api_version="openunison.tremolo.io/v1",
            kind="AuthenticationChain",
            metadata={"name": AUTH_CHAIN, "namespace": ou.namespace, "labels": managed_by()},
            spec={
                "level": 20,
                "root": "o=Tremolo",
                "authMechs": [
                    {
                        # OAuth2K8sServiceAccount: a TokenReview through the `k8s` target; the
                        # reviewed user (username, uid, groups) becomes the session's attributes.
                        "name": "oauth2k8s",
                        "required": "required",
                        "params": {
                            "k8sTarget": LOCAL_TARGET,
                            "linkToDirectory": "false",
                            "noMatchOU": "argocd-federation",
                            "uidAttr": "username",
                            "lookupFilter": "",
                            "defaultObjectClass": "inetOrgPerson",
                            "realm": "kubernetes",
                            "scope": "auth",
                        },
                        "secretParams": [],
                    }
                ],
            },
            # The mechanism and the `k8s` target come with the portal; the CRD with the operator.
            opts=pulumi.ResourceOptions(
                parent=self, provider=cluster.provider, depends_on=[ou.operator_release, ou.portal_release]
            ),
        )
        self.register_outputs({"chain": AUTH_CHAIN})


def token_filter_script(target: str) -> str:
    """The token API's JavaScriptFilter for one target: an ExecCredential, or an error status."""
    if not _DNS_LABEL.match(target):
        raise ValueError(f"target {target!r} must be a DNS label")
    return f"""// Serves OpenUnison target {target} (and nothing else) as a Kubernetes ExecCredential.
var GlobalEntries = Java.type("com.tremolosecurity.server.GlobalEntries");
var ProxyConstants = Java.type("com.tremolosecurity.proxy.util.ProxyConstants");
var Base64 = Java.type("java.util.Base64");
var JavaString = Java.type("java.lang.String");
var System = Java.type("java.lang.System");

var TARGET = "{target}";
var URI = "{token_api_uri(target)}";
var CALLER = "{CONTROLLER_USERNAME}";
var MAX_LIFETIME_SECONDS = {MAX_TOKEN_LIFETIME_SECONDS};

function initFilter(config) {{
}}

function doFilter(request, response, chain) {{
  chain.setNoProxy(true);
  // URLs match by prefix: answer the exact path only.
  if (String(request.getRequestURI()) !== URI) {{
    response.sendError(404);
    return;
  }}
  // The application's azRule already admits only CALLER; checked again here.
  var user = request.getSession().getAttribute(ProxyConstants.AUTH_CTL).getAuthInfo().getAttribs().get("username");
  if (user == null || String(user.getValues().get(0)) !== CALLER) {{
    response.sendError(403);
    return;
  }}
  var target = GlobalEntries.getGlobalEntries().getConfigManager().getProvisioningEngine().getTarget(TARGET);
  if (target == null) {{
    response.sendError(404);
    return;
  }}
  var token = String(target.getProvider().getAuthToken());
  var payload = token.split(".")[1];
  var claims = JSON.parse(String(new JavaString(Base64.getUrlDecoder().decode(payload), "UTF-8")));
  var now = Math.floor(System.currentTimeMillis() / 1000);
  if (!(claims.exp > now) || claims.exp - now > MAX_LIFETIME_SECONDS) {{
    response.sendError(500);
    return;
  }}
  response.setContentType("application/json");
  response.getWriter().print(JSON.stringify({{
    apiVersion: "{EXEC_API_VERSION}",
    kind: "ExecCredential",
    status: {{token: token, expirationTimestamp: new Date(claims.exp * 1000).toISOString().replace(/\\.\\d+Z$/, "Z")}}
  }}));
}}
"""


@dataclass(frozen=True)
class OpenUnisonTargetArgs:
    cluster_name: str  # the ArgoCD cluster name: dev, prod, payments-dev
    server_url: pulumi.Input[str]  # what the tokens are for (kept on the Target for OpenUnison's own use)
    ca_data: pulumi.Input[str]  # base64 PEM of the cluster's (or its proxy's) CA
    openunison: OpenUnisonRefs
    broker: TokenBroker


class OpenUnisonTarget(pulumi.ComponentResource):
    """A Target minting one-minute tokens for one remote cluster, and its token URL."""

    name: str  # the Target's name, also the audience of its tokens
    api: pulumi.Resource

    def __init__(self, name: str, cluster: ClusterHandle, args: OpenUnisonTargetArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:federation:OpenUnisonTarget", name, None, opts)
        ou = args.openunison
        self.name = target_name(args.cluster_name)
        crd_ready = pulumi.ResourceOptions(
            parent=self, provider=cluster.provider, depends_on=[ou.operator_release, ou.portal_release]
        )
        target = k8s.apiextensions.CustomResource(
            f"{name}-target",
            api_version="openunison.tremolo.io/v1",
            kind="Target",
            metadata={"name": self.name, "namespace": ou.namespace, "labels": managed_by(**{CLUSTER_LABEL: args.cluster_name})},
            spec={
                # The class of openunison-k8s-add-cluster's remote-cluster target.
                "className": "com.tremolosecurity.unison.openshiftv3.OpenShiftTarget",
                "params": [
                    {"name": "url", "value": args.server_url},
                    {"name": "certificate", "value": args.ca_data},
                    {"name": "useToken", "value": "true"},
                    {"name": "tokenType", "value": "oidc"},
                    {"name": "oidcIdp", "value": REMOTE_ISSUER_PATH.rsplit("/", 1)[1]},
                    {"name": "oidcSub", "value": FEDERATED_SUBJECT},
                    {"name": "oidcAudience", "value": self.name},
                    {"name": "label", "value": args.cluster_name},
                ],
                "secretParams": [],
                "targetAttributes": [],
            },
            opts=crd_ready,
        )
        self.api = k8s.apiextensions.CustomResource(
            f"{name}-token-api",
            api_version="openunison.tremolo.io/v2",
            kind="Application",
            metadata={"name": f"{self.name}-token", "namespace": ou.namespace, "labels": managed_by(**{CLUSTER_LABEL: args.cluster_name})},
            spec={
                "azTimeoutMillis": 3000,
                "isApp": True,
                "urls": [
                    {
                        "hosts": ["#[OU_HOST]"],
                        "uri": token_api_uri(self.name),
                        "authChain": args.broker.chain_name,
                        "azRules": [{"scope": "filter", "constraint": f"(username={CONTROLLER_USERNAME})"}],
                        "filterChain": [
                            {
                                "className": "com.tremolosecurity.proxy.filters.JavaScriptFilter",
                                "params": {"javaScript": token_filter_script(self.name)},
                            }
                        ],
                    }
                ],
                # An API: no result groups (failures are plain 401s, not a login page), no
                # session cookie; every call is authenticated on its own.
                "cookieConfig": {
                    "sessionCookieName": "tremolosession",
                    "domain": "#[OU_HOST]",
                    "secure": True,
                    "httpOnly": True,
                    "logoutURI": "/logout",
                    "keyAlias": "session-unison",
                    "timeout": 60,
                    "scope": -1,
                    "cookiesEnabled": False,
                },
            },
            opts=pulumi.ResourceOptions.merge(crd_ready, pulumi.ResourceOptions(depends_on=[target, args.broker.chain])),
        )
        self.register_outputs({"target": self.name, "uri": token_api_uri(self.name)})


# --- the remote side: RBAC, and EKS's trust -------------------------------------------------

# What ArgoCD needs on a workload cluster to deploy tenant workloads, and no more. Tenants'
# AppProjects allow no cluster-scoped kinds and leave RoleBindings, quotas, limits and network
# policies to the platform (components/tenant_delivery.py), so those are read-only here.
# Secrets are absent on purpose: tenants' secrets arrive through External Secrets, so ArgoCD
# neither writes nor reads any Secret (and cannot read the platform's).
DEPLOYABLE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("", ("configmaps", "services", "serviceaccounts", "persistentvolumeclaims")),
    ("apps", ("deployments", "statefulsets")),
    ("batch", ("jobs", "cronjobs")),
    ("networking.k8s.io", ("ingresses",)),
    ("policy", ("poddisruptionbudgets",)),
    ("autoscaling", ("horizontalpodautoscalers",)),
    ("external-secrets.io", ("externalsecrets",)),
    ("argoproj.io", ("rollouts", "analysistemplates")),  # progressive delivery (components/argo_rollouts.py)
)
# Read for ArgoCD's cache and health: the children of deployed objects and the platform's part.
READABLE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("", ("namespaces", "pods", "endpoints", "resourcequotas", "limitranges")),
    ("apps", ("replicasets", "daemonsets", "controllerrevisions")),
    ("discovery.k8s.io", ("endpointslices",)),
    ("networking.k8s.io", ("networkpolicies", "ingressclasses")),
    ("rbac.authorization.k8s.io", ("roles", "rolebindings")),
    ("external-secrets.io", ("secretstores",)),
    ("apiextensions.k8s.io", ("customresourcedefinitions",)),
    ("argoproj.io", ("analysisruns", "experiments")),  # what a Rollout starts, for its health
)
READ_VERBS = ("get", "list", "watch")
WRITE_VERBS = ("create", "update", "patch", "delete")


def federated_rules() -> list[dict[str, list[str]]]:
    """What the federated user may do where it deploys: a tenant's namespace (a RoleBinding)."""
    rules = [{"apiGroups": [g], "resources": list(r), "verbs": [*READ_VERBS, *WRITE_VERBS]} for g, r in DEPLOYABLE]
    rules += [{"apiGroups": [g], "resources": list(r), "verbs": list(READ_VERBS)} for g, r in READABLE]
    return rules


def federated_read_rules() -> list[dict[str, list[str]]]:
    """What it may read everywhere (ArgoCD's cluster cache watches cluster-wide): no writes."""
    return [{"apiGroups": [g], "resources": list(r), "verbs": list(READ_VERBS)} for g, r in (*DEPLOYABLE, *READABLE)]


@dataclass(frozen=True)
class FederatedAccessArgs:
    username: str = FEDERATED_USER
    role_name: str = "platform-argocd-federated"

    @property
    def read_role_name(self) -> str:
        return f"{self.role_name}-read"


def _binding(kind: str, name: str, role: str, user: str, namespace: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": managed_by(), **({"namespace": namespace} if namespace else {})}
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": metadata,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }


def federated_access_manifests(args: FederatedAccessArgs) -> list[dict[str, Any]]:
    """The federated user's ClusterRoles and its cluster-wide read binding, as manifests (a
    virtual cluster applies them itself; FederatedAccess declares them on the clusters Pulumi
    reaches). Writing needs `federated_namespace_binding` in each namespace it deploys to, so
    the platform's namespaces (kube-system, gatekeeper-system, ...) stay out of its reach."""
    role_metadata = {"name": args.role_name, "labels": managed_by()}
    read_metadata = {"name": args.read_role_name, "labels": managed_by()}
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": role_metadata, "rules": federated_rules()},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": read_metadata, "rules": federated_read_rules()},
        _binding("ClusterRoleBinding", args.read_role_name, args.read_role_name, args.username),
    ]


def federated_namespace_binding(namespace: str, args: FederatedAccessArgs = FederatedAccessArgs()) -> dict[str, Any]:
    """The RoleBinding that lets the federated user deploy into `namespace`."""
    return _binding("RoleBinding", args.role_name, args.role_name, args.username, namespace)


class FederatedAccess(pulumi.ComponentResource):
    """On a remote cluster: the federated ArgoCD user may read, and deploy where a tenant
    namespace binds it (components/tenant.py)."""

    binding: k8s.rbac.v1.ClusterRoleBinding

    def __init__(self, name: str, cluster: ClusterHandle, args: FederatedAccessArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:federation:FederatedAccess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=cluster.provider)
        write_role, read_role, read_binding = federated_access_manifests(args)
        k8s.rbac.v1.ClusterRole(f"{name}-role", metadata=write_role["metadata"], rules=write_role["rules"], opts=child)
        read = k8s.rbac.v1.ClusterRole(f"{name}-read-role", metadata=read_role["metadata"], rules=read_role["rules"], opts=child)
        self.binding = k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-binding",
            metadata=read_binding["metadata"],
            role_ref=read_binding["roleRef"],
            subjects=read_binding["subjects"],
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[read])),
        )
        self.register_outputs({"user": args.username, "role": args.role_name})


@dataclass(frozen=True)
class EksOidcTrustArgs:
    eks_cluster_name: pulumi.Input[str]
    issuer_url: str  # OpenUnison's remotek8s issuer
    audience: str  # the cluster's OpenUnison target name
    username_prefix: str = USERNAME_PREFIX


class EksOidcTrust(pulumi.ComponentResource):
    """EKS accepts OpenUnison's tokens for this cluster's audience (an OIDC identity provider)."""

    def __init__(self, name: str, cluster: ClusterHandle, args: EksOidcTrustArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:federation:EksOidcTrust", name, None, opts)
        if not cluster.is_eks or cluster.aws_provider is None:
            raise ValueError(f"{cluster.role}: an OIDC identity provider config needs an EKS cluster")
        if not args.issuer_url.startswith("https://"):
            raise ValueError(f"{cluster.role}: the issuer must be https://, got {args.issuer_url!r}")
        self.config = aws.eks.IdentityProviderConfig(
            f"{name}-oidc",
            cluster_name=args.eks_cluster_name,
            oidc=aws.eks.IdentityProviderConfigOidcArgs(
                identity_provider_config_name="openunison",
                issuer_url=args.issuer_url,
                client_id=args.audience,
                username_claim="sub",
                username_prefix=args.username_prefix,
            ),
            tags={CLUSTER_LABEL: cluster.role, **MANAGED_BY},
            opts=pulumi.ResourceOptions(parent=self, provider=cluster.aws_provider),
        )
        self.register_outputs({"issuerUrl": args.issuer_url, "audience": args.audience})
