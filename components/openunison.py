"""OpenUnison on the control plane: the platform's identity provider and token API.

Three Tremolo charts, as OpenUnison's own tooling installs them: ``openunison-operator`` (CRDs
and operator), ``orchestra`` (OpenUnison, configured from these values and the Secret
``orchestra-secrets-source``) and ``orchestra-login-portal`` (portal, chains, the ``k8sIdp``
OIDC provider). The portal sits behind a Traefik route of our own in Traefik's namespace, TLS ending
there (the charts' routes hard-code nginx or skip certificate checks), so Traefik never watches
OpenUnison's namespace, where the operator keeps the ID-token signing key; with replicas, through a
cookie-sticky proxy in that namespace (components/sticky_proxy.py).

Every relying party (GitLab, Harbor, ArgoCD, Vault) gets a ``Trust`` whose client secret is one
``RandomPassword``, rotated every 30 days, handed to both sides; the Trust carries a checksum of
it because OpenUnison reads a Trust's Secret only when the Trust changes. Kubernetes keeps the
portal's built-in public ``kubernetes`` client. Login-only: upstream groups pass through in the
``groups`` claim; tenants' role groups come from per-tenant ConfigMaps (``LocalGroups``) that
our ``jitdb`` workflow adds at each login. docs/architecture.md has the longer why.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import pulumiverse_time as time

from components import yaml_text
from components.cluster import ClusterHandle
from components.federation import USERNAME_PREFIX as FEDERATED_USERNAME_PREFIX
from components.common import Backend, Exposure, LdapUpstream, OidcClient, OidcUpstream, PlatformGroups, checksum
from components.helm import disruption_budget, namespace, release, sized, spread_affinity
from components.ingress import NAMESPACE as INGRESS_NAMESPACE, TRAEFIK_API, route
from components.inventory import Credential, CredentialInventory, describe_seconds, external_secret, internal_secret, refreshed
from components.oidc_sessions import REAP_EVERY_MINUTES, REAPER, SESSION_MAX_SECONDS, SessionLifetime, SessionLifetimeArgs
from components.service import ControlPlaneParts, PlatformNamespace, ServiceSettings, ServiceSlice, TenantParts
from components.sticky_proxy import StickyProxy, StickyProxyArgs
from components.tenancy import ROLES, tenant_group
from policy.labels import managed_by

NAMESPACE = "openunison"
# Release names the charts refer to each other by (orchestra's `openunison.portal_release_name`
# defaults to "orchestra-login-portal"; the OpenUnison object and its Service are named after
# the orchestra release).
OPERATOR_RELEASE = "openunison"
ORCHESTRA_RELEASE = "orchestra"
PORTAL_RELEASE = "orchestra-login-portal"

# The login portal's OpenID Connect IdP application (templates/openunison/applications/k8sidp.yaml:
# `uri: /auth/idp/k8sIdp`); its discovery document is <issuer>/.well-known/openid-configuration.
ISSUER_PATH = "/auth/idp/k8sIdp"
# The public client the portal declares inside k8sIdp for kubectl and the API servers.
KUBERNETES_CLIENT_ID = "kubernetes"

# The Secret the operator reads OpenUnison's own secrets from (the OpenUnison object's
# `source_secret`); its keys are the chart's `secret_data` plus the upstream IdP's secret.
SOURCE_SECRET = "orchestra-secrets-source"
POD_LABELS = {"application": f"openunison-{ORCHESTRA_RELEASE}"}  # the selector of orchestra's Deployment
PORTAL_POD_LABELS = {"app": f"ouhtml-{PORTAL_RELEASE}"}  # the login portal's pages
# The orchestra chart's Service (openunison-<release>): 443 -> 8443 (TLS), 80 -> 8080 (HTTP).
SERVICE = f"openunison-{ORCHESTRA_RELEASE}"
SERVICE_HTTP_PORT = 80
OPENUNISON_HTTP_PORT = 8080
# With replicas a login's state lives in the pod that began it (OpenUnison keeps sessions in each pod's memory:
# open-unison-classes OpenUnisonServletFilter.postLoadConfiguration builds the local SessionManagerImpl, the only
# store there is), so each browser is pinned to one pod by this cookie, as the chart's own Traefik mode does
# (orchestra templates/infrastructure/service.yaml), by a proxy in OpenUnison's namespace (components/sticky_proxy.py).
STICKY_SERVICE = "openunison-sticky"
STICKY_COOKIE = "openunison-sticky"
# The public route, in Traefik's namespace (components/ingress.py `route`), and its certificate there.
ROUTE = "openunison"
TLS_SECRET = f"{ROUTE}-tls"
# OpenUnison (1.0.46 to upstream's newest) answers an authorize request it refuses (no state, an
# unknown client, a redirect_uri its Trust does not list) with a redirect to that redirect_uri
# (OpenIDConnectIdP.doGet): an open redirect. A Traefik route ahead of ROUTE's answers with
# noop@internal (418, no Location) any request with a redirect_uri value no client registered, or
# with the parameter in any other spelling. Traefik's QueryRegexp matches when any value of the key
# does (pkg/muxer/http/matcher.go), hence a pattern of every value but the registered ones;
# OpenUnison takes the first query parameter whose raw name equals REDIRECT_PARAM without regard to
# case (ProxyRequest.getQSParameter), where Traefik compares decoded names exactly, hence every
# other spelling. A pair Go's query parser drops (a bad %-escape) OpenUnison's URLDecoder refuses.
REDIRECT_FILTER = "openunison-unregistered-redirect"
REDIRECT_PARAM = "redirect_uri"
REDIRECT_FILTER_PRIORITY = 100_000  # above ROUTE's router (ranked by its rule's length)
# The portal's public kubernetes client (templates/openunison/applications/k8sidp.yaml, with
# K8S_URL the API server): its redirects to the API server and to kubectl's local listeners.
KUBERNETES_REDIRECT_PATH = "/redirect_uri"
KUBECTL_REDIRECT_URIS = ("http://localhost:8000", "http://localhost:18000")
# The portal's cli-local client (templates/openunison/applications/k8s-login-cli.yaml): kubectl oulogin's listener.
OULOGIN_REDIRECT_URI = "http://127.0.0.1:8400/redirect"
# OpenUnison 1.0.46 redirects to other request parameters at paths no flow of the platform's uses, so
# the filter answers every request to them: /auth/forms/ is served with no authentication
# (NextEmbSys), where login-splash.jsp writes `redirto` unescaped into window.location for any visitor
# (upstream took it out in 1.0.50, #1077). clearLogin.jsp redirects to `target` and SAML2Auth.doPost
# (/auth/saml2) a signed-in session to `RelayState`: sinks not shown reachable here, answered too as
# the platform has no SAML upstream. Matched on Traefik's routing path (unreserved escapes decoded, dot
# segments and repeated slashes removed) as Undertow 2.3.22 resolves it: without regard to case, as a
# prefix, and with any segment's ;parameters, which Undertow drops from the path it maps
# (HttpRequestParser.handlePathParameters), so a segment of parameters alone is an empty one.
_PARAMS = r"(?:;[^/]*)?"
_THEN = rf"{_PARAMS}(?:/{_PARAMS})*/"
REDIRECTING_PATHS = rf"(?i)^(?:/{_PARAMS})*/auth{_THEN}(?:forms{_THEN}(?:login-splash|clearlogin)\.jsp|saml2)"
CLIENT_SECRET_KEY = "client-secret"
CLIENT_SECRET_ROTATION_DAYS = 30  # a confidential client's secret is replaced after this
# On each Trust: changes with its client secret, so OpenUnison re-reads the Secret.
CLIENT_CHECKSUM_ANNOTATION = "platform.io/oidc-client-checksum"

# Trust settings shared by every confidential client. The key and the chain are the ones the
# charts' own trusts use: `lastmile-oidc` is a static key of the OpenUnison object and
# `login-service` the chain that sends users to the upstream identity source.
LAST_MILE_KEY = "lastmile-oidc"
AUTH_CHAIN = "login-service"
TOKEN_LIFETIME_MILLIS = 60_000  # one-minute tokens, as for the kubernetes client
TOKEN_SKEW_MILLIS = 120_000
CODE_SKEW_MILLIS = 60_000

# Local groups (see the module docstring). The login chain runs the JIT workflow `jitdb`
# (orchestra-login-portal templates/openunison/authentication_chains/standard-chains.yaml);
# OpenUnison's service account is `openunison-<orchestra release>` (orchestra templates/rbac.yaml).
LOCAL_GROUPS_LABEL = "platform.io/openunison-local-groups"
JIT_WORKFLOW = "jitdb"
JIT_TARGET = "jitdb"  # the portal's K8sCrdUserProvider target: the `User` objects (templates/openunison/login/targets.yaml)
OPENUNISON_SERVICE_ACCOUNT = f"openunison-{ORCHESTRA_RELEASE}"
ROOT_ORG_ID = "687da09f-8ec1-48ac-b035-f2f182b9bd1e"  # the charts' root organization

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----\s.*?-----END CERTIFICATE-----", re.S)


@dataclass(frozen=True)
class ClientSpec:
    """A confidential relying party: where OpenUnison may send its users back to."""

    redirect_uris: tuple[str, ...]


@dataclass(frozen=True)
class CertTemplate:
    """Subject of the keys the operator generates for OpenUnison's internal TLS and signing."""

    ou: str = "Platform"
    o: str = "platform-bootstrap"
    l: str = "control-plane"  # noqa: E741 - the chart's key
    st: str = "Unspecified"
    c: str = "Unspecified"


# Values only orchestra reads: the login portal's templates take none of them.
ORCHESTRA_ONLY = frozenset({"cert_template", "k8s_cluster_name", "network", "trusted_certs", "services", "openunison"})


@dataclass(frozen=True)
class OpenUnisonArgs:
    domain: str
    exposure: Exposure  # the portal host, e.g. k8sou.<domain>
    clients: Mapping[str, ClientSpec]  # client id -> redirect URIs (gitlab, harbor, argocd, vault)
    cert_manager: pulumi.Resource  # issues the ingress certificate (cert-manager.io/cluster-issuer)
    ingress_namespace: str  # where the ingress controller runs: the only namespace let in
    groups: PlatformGroups  # the platform's upstream groups: the JIT passes them in this spelling only
    ingress_controller: pulumi.Resource | None = None  # the Traefik release: installs the IngressRoute CRD
    oidc_upstream: OidcUpstream | None = None
    ldap_upstream: LdapUpstream | None = None
    cert_template: CertTemplate = field(default_factory=CertTemplate)
    operator_chart_version: str | None = None
    orchestra_chart_version: str | None = None
    portal_chart_version: str | None = None
    resources: dict[str, Any] = field(default_factory=dict)  # each container's requests and memory limit (sizing)
    replicas: int = 1  # OpenUnison's pods; two or more get a PodDisruptionBudget
    # Protects the operator release: its chart owns the CRDs, so uninstalling it deletes every
    # OpenUnison object (Trusts included) with them.
    protect: bool = False
    inventory: CredentialInventory = field(default_factory=CredentialInventory)

    def __post_init__(self) -> None:
        if (self.oidc_upstream is None) == (self.ldap_upstream is None):
            raise ValueError("OpenUnison needs exactly one upstream identity source: oidc_upstream or ldap_upstream")
        if self.oidc_upstream is not None and not self.oidc_upstream.issuer.startswith("https://"):
            raise ValueError(f"the upstream OIDC issuer must be https://, got {self.oidc_upstream.issuer!r}")
        if self.ldap_upstream is not None:
            _ldap_host_port(self.ldap_upstream.url)
            if (self.ldap_upstream.user_attribute, self.ldap_upstream.group_attribute) != ("sAMAccountName", "memberOf"):
                raise ValueError(
                    "the orchestra charts' LDAP support maps users by sAMAccountName and groups by memberOf; "
                    f"got user_attribute={self.ldap_upstream.user_attribute!r}, "
                    f"group_attribute={self.ldap_upstream.group_attribute!r}"
                )
        for name, spec in self.clients.items():
            if name == KUBERNETES_CLIENT_ID:
                raise ValueError(
                    "'kubernetes' is the login portal's built-in public client (no secret); "
                    "do not declare it, use OpenUnison.kubernetes_client_id"
                )
            if not _DNS_LABEL.match(name):
                raise ValueError(f"OIDC client name {name!r} must be a DNS label (it names a Secret and a Trust)")
            if not spec.redirect_uris:
                raise ValueError(f"OIDC client {name!r} needs at least one redirect URI")
            for uri in spec.redirect_uris:
                if not (uri.startswith("https://") or _is_loopback(uri)):
                    raise ValueError(
                        f"OIDC client {name!r}: redirect URI {uri!r} must be https:// "
                        "(or http on the loopback, for CLIs such as `vault login -method=oidc`)"
                    )


def unregistered_pattern(values: Sequence[str]) -> str:
    """An RE2 (Go regexp) pattern matching every string but `values`, which hold no backtick (the
    rule quotes it in them): down their trie, a character none of them has next, or an end where
    none of them ends."""
    if any("`" in value for value in values):
        raise ValueError(f"a redirect URI holds a backtick: {values!r}")
    trie: dict[str, Any] = {}
    for value in values:
        node = trie
        for char in value:
            node = node.setdefault(char, {})
        node[""] = {}  # a value ends here

    def rest(node: dict[str, Any]) -> str:
        chars = sorted(c for c in node if c)
        other = "[^" + "".join(re.sub(r"([\\\]\[^-])", r"\\\1", c) for c in chars) + "](?s:.*)" if chars else "(?s:.+)"
        branches = ([] if "" in node else [""]) + [other] + [re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", c) + rest(node[c]) for c in chars]
        return "(?:" + "|".join(branches) + ")"

    return f"^{rest(trie)}$"


def other_spellings(name: str) -> list[str]:
    """Every spelling of ASCII `name` in other cases."""
    return sorted({"".join(chars) for chars in itertools.product(*({c.lower(), c.upper()} for c in name))} - {name})


def _is_loopback(uri: str) -> bool:
    """A native app's redirect to itself (RFC 8252): never leaves the user's machine."""
    parts = urlsplit(uri)
    return parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1")


def _ldap_host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "ldaps" or not parts.hostname:
        raise ValueError(f"the upstream LDAP URL must be ldaps://host[:port], got {url!r}")
    return parts.hostname, parts.port or 636


def _trusted_certs(bundles: list[tuple[str, pulumi.Input[str]]]) -> pulumi.Output[list[dict[str, str]]]:
    """The charts' `trusted_certs`: one entry per certificate, PEM base64-encoded (`pem_b64`)."""

    def entries(pems: list[str]) -> list[dict[str, str]]:
        out = []
        for (prefix, _), pem in zip(bundles, pems):
            if not (pem or "").strip():
                continue  # ACME on EKS: public roots, nothing to add
            certs = _PEM_CERT.findall(pem)
            if not certs:
                raise ValueError(f"{prefix}: no PEM certificate in the CA bundle")
            for index, cert in enumerate(certs):
                out.append({"name": f"{prefix}-{index}", "pem_b64": base64.b64encode(f"{cert}\n".encode()).decode()})
        return out

    return pulumi.Output.all(*[bundle for _, bundle in bundles]).apply(lambda pems: entries(list(pems)))


class OpenUnison(pulumi.ComponentResource):
    issuer_url: str
    portal_url: str
    clients: dict[str, OidcClient]
    kubernetes_client_id: str
    operator_release: k8s.helm.v3.Release
    orchestra_release: k8s.helm.v3.Release
    portal_release: k8s.helm.v3.Release
    route: k8s.apiextensions.CustomResource  # routes the issuer's public name to OpenUnison
    discovery_ready: list[pulumi.Resource]  # the portal release (after orchestra, the issuer) and the route

    def __init__(self, name: str, cluster: ClusterHandle, args: OpenUnisonArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:openunison:OpenUnison", name, None, opts)
        host = args.exposure.hostname
        self.portal_url = f"https://{host}/"
        self.issuer_url = f"https://{host}{ISSUER_PATH}"
        self.kubernetes_client_id = KUBERNETES_CLIENT_ID

        ns = namespace(SLICE.namespace, cluster, self)
        in_ns = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[ns])
        args.inventory.register(*credentials(args))

        self.operator_release = release(
            OPERATOR_RELEASE, "openunison-operator", ns, sized({}, args.resources, "operator"), cluster, self,
            version=args.operator_chart_version, protect=args.protect,
        )

        source_secret = self._source_secret(cluster, args, ns, in_ns)
        values = self._values(cluster, args)
        # Each chart gets the values it reads (tests/test_helm_values_effect.py): the deployment's
        # network, certificates and trust are orchestra's; the upstream sign-in is the portal's, and
        # orchestra reads only whether one is set.
        orchestra_values = {
            **values,
            # Only the ingress controller reaches OpenUnison; the chart's monitoring rule with
            # its default (no labels) would admit every namespace.
            "network_policies": {
                "ingress": {"labels": {"kubernetes.io/metadata.name": args.ingress_namespace}},
                "monitoring": {"enabled": False},
            },
            # The pre-install check pod.
            **({"precheck": {"resources": args.resources}} if args.resources else {}),
            # The chart otherwise stamps `{{ now }}` into the OpenUnison object: a change on every `up`.
            "openunison": {**values["openunison"], "auto_timestamp": False, "replicas": args.replicas},
            # Replicas apart (the chart takes an affinity, no topology spread); its Deployment reads
            # `services.affinity`, which values.yaml does not document.
            "services": {**values["services"], "affinity": spread_affinity(POD_LABELS)},
        }
        self.orchestra_release = release(
            ORCHESTRA_RELEASE, "orchestra", ns, orchestra_values, cluster, self,
            version=args.orchestra_chart_version,
            depends_on=[self.operator_release, source_secret],
        )
        # The portal's objects are OpenUnison custom resources for the running orchestra.
        # Our `jitdb` replaces the portal's standard one (local groups).
        portal_values = {
            **{key: value for key, value in values.items() if key not in ORCHESTRA_ONLY},
            "openunison": {"use_standard_jit_workflow": False, "replicas": args.replicas},
            "services": {
                **({"resources": args.resources} if args.resources else {}),
                "affinity": spread_affinity(PORTAL_POD_LABELS),
            },
        }
        self.portal_release = release(
            PORTAL_RELEASE, "orchestra-login-portal", ns, portal_values, cluster, self,
            version=args.portal_chart_version, depends_on=[self.orchestra_release],
        )

        if args.replicas > 1:  # neither chart has one
            for pods, labels in ((f"openunison-{ORCHESTRA_RELEASE}", POD_LABELS), (f"ouhtml-{PORTAL_RELEASE}", PORTAL_POD_LABELS)):
                disruption_budget(f"{cluster.role}-{pods}", pods, ns, labels, in_ns)
        self.route = self._route(cluster, args, ns)
        self.discovery_ready = [self.portal_release, self.route]

        # Custom resources wait for the CRDs (operator) and, for Trusts, for the IdP they join.
        crd_ready = pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(depends_on=[ns, self.operator_release]))
        self.clients = {
            client: self._client(cluster, client, spec, ns, in_ns, crd_ready)
            for client, spec in sorted(args.clients.items())
        }
        self._local_groups_jit(cluster, args.groups, ns, in_ns, crd_ready)
        SessionLifetime(f"{cluster.role}-openunison-sessions", cluster, SessionLifetimeArgs(ns, self.operator_release), pulumi.ResourceOptions(parent=self))

        self.register_outputs(
            {
                "issuerUrl": self.issuer_url,
                "portalUrl": self.portal_url,
                "kubernetesClientId": self.kubernetes_client_id,
                "clientIds": sorted(self.clients),
            }
        )

    def _route(self, cluster: ClusterHandle, args: OpenUnisonArgs, ns: k8s.core.v1.Namespace) -> k8s.apiextensions.CustomResource:
        """The portal's public name: ROUTE in Traefik's namespace, TLS ending there (the module docstring says why),
        to OpenUnison's HTTP port, through the sticky proxy with replicas, behind the redirect filter."""
        backend = Backend(SERVICE, NAMESPACE, SERVICE_HTTP_PORT)
        if args.replicas > 1:
            backend = StickyProxy(f"{cluster.role}-{STICKY_SERVICE}", cluster, StickyProxyArgs(
                STICKY_SERVICE, ns, NAMESPACE, POD_LABELS, OPENUNISON_HTTP_PORT, STICKY_COOKIE, args.replicas, moved_from=self,
            ), pulumi.ResourceOptions(parent=self)).backend
        after_traefik = pulumi.ResourceOptions(
            parent=self, provider=cluster.provider, depends_on=[r for r in [args.ingress_controller] if r])
        self._redirect_filter(cluster, args, after_traefik)
        return route(f"{cluster.role}-openunison", ROUTE, args.exposure, {"/": backend}, pulumi.ResourceOptions.merge(
            after_traefik, pulumi.ResourceOptions(depends_on=[self.orchestra_release, args.cert_manager])))

    def _redirect_filter(self, cluster: ClusterHandle, args: OpenUnisonArgs, opts: pulumi.ResourceOptions) -> None:
        """The Traefik route that answers a request with an unregistered redirect_uri (see REDIRECT_FILTER) or to
        a path that redirects to another parameter (REDIRECTING_PATHS)."""
        registered = pulumi.Output.from_input(cluster.endpoint).apply(lambda url: sorted({
            *(uri for spec in args.clients.values() for uri in spec.redirect_uris),
            f"{url.rstrip('/')}{KUBERNETES_REDIRECT_PATH}", *KUBECTL_REDIRECT_URIS, OULOGIN_REDIRECT_URI,
        }))
        host = args.exposure.hostname
        k8s.apiextensions.CustomResource(
            f"{cluster.role}-{REDIRECT_FILTER}",
            api_version=TRAEFIK_API,
            kind="IngressRoute",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=REDIRECT_FILTER, namespace=INGRESS_NAMESPACE, labels=managed_by()),
            spec={
                "routes": [{
                    "kind": "Rule",
                    "match": match,
                    "priority": REDIRECT_FILTER_PRIORITY,
                    "services": [{"kind": "TraefikService", "name": "noop@internal"}],
                } for match in (
                    registered.apply(lambda uris: f"Host(`{host}`) && QueryRegexp(`{REDIRECT_PARAM}`, `{unregistered_pattern(uris)}`)"),
                    f"Host(`{host}`) && (" + " || ".join(f"QueryRegexp(`{name}`, `^`)" for name in other_spellings(REDIRECT_PARAM)) + ")",
                    f"Host(`{host}`) && PathRegexp(`{REDIRECTING_PATHS}`)",
                )],
                "tls": {"secretName": TLS_SECRET},
            },
            opts=opts,
        )

    def _source_secret(
        self, cluster: ClusterHandle, args: OpenUnisonArgs, ns: k8s.core.v1.Namespace, opts: pulumi.ResourceOptions
    ) -> k8s.core.v1.Secret:
        """OpenUnison's own secrets: generated once, plus the upstream identity source's credential."""
        generated = {
            # Client secret of the chart's internal trusts (dashboard, k8s apps).
            "K8S_DB_SECRET": random.RandomPassword("openunison-k8s-db-secret", length=48, special=False, opts=pulumi.ResourceOptions(parent=self)),
            # Password of the keystore the operator builds (TLS keys, signing keys, static keys).
            "unisonKeystorePassword": random.RandomPassword("openunison-keystore-password", length=48, special=False, opts=pulumi.ResourceOptions(parent=self)),
        }
        data: dict[str, pulumi.Input[str]] = {key: pw.result for key, pw in generated.items()}
        # Output.secret: stays a secret even if a caller passed a plain Output.
        if args.oidc_upstream is not None:
            data["OIDC_CLIENT_SECRET"] = pulumi.Output.secret(args.oidc_upstream.client_secret)
        if args.ldap_upstream is not None:
            data["AD_BIND_PASSWORD"] = pulumi.Output.secret(args.ldap_upstream.bind_password)
        return k8s.core.v1.Secret(
            f"{cluster.role}-{SOURCE_SECRET}",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=SOURCE_SECRET, namespace=ns.metadata.name, labels=managed_by()),
            type="Opaque",
            string_data=data,
            opts=opts,
        )

    def _values(self, cluster: ClusterHandle, args: OpenUnisonArgs) -> dict[str, Any]:
        """One values document for orchestra and the login portal; every key exists in both charts."""
        exposure = args.exposure
        trusted = [("platform-ca", exposure.ca_bundle)]
        upstream_ca = (args.oidc_upstream or args.ldap_upstream).ca_bundle  # type: ignore[union-attr]
        if upstream_ca is not None:
            trusted.append(("upstream-idp", upstream_ca))
        values: dict[str, Any] = {
            "network": {
                "openunison_host": exposure.hostname,
                # Unused (no dashboard, no impersonation) but rendered into the objects: keep them ours.
                "dashboard_host": f"k8sdb.{args.domain}",
                "api_server_host": f"k8sapi.{args.domain}",
                # Without impersonation this is K8S_URL: the API server in portal-issued kubeconfigs.
                "k8s_url": cluster.endpoint,
                # cert-manager signs the Ingress certificate with the platform issuer, not the operator.
                "createIngressCertificate": False,
                # No chart route (see the module docstring): "none" matches none of the chart's types.
                "ingress_type": "none",
            },
            "cert_template": {
                "ou": args.cert_template.ou,
                "o": args.cert_template.o,
                "l": args.cert_template.l,
                "st": args.cert_template.st,
                "c": args.cert_template.c,
            },
            "k8s_cluster_name": cluster.role,
            # Users reach clusters with OpenUnison's tokens (OIDC), not through an impersonating proxy.
            "enable_impersonation": False,
            "headlamp": {"enabled": False},
            # OpenUnison calls the services and the upstream IdP over TLS: trust the platform CA.
            "trusted_certs": _trusted_certs(trusted),
            # Short-lived TokenRequest tokens for OpenUnison's own service account.
            "services": {"enable_tokenrequest": True, **({"resources": args.resources} if args.resources else {})},
            "openunison": {
                "non_secret_data": {
                    "K8S_DEPLOYMENT_NAME": f"{cluster.role} ({args.domain})",
                    # The kubernetes client's token lifetime (the chart's default, stated).
                    "K8S_TOKEN_LIFE_MILLIS": str(TOKEN_LIFETIME_MILLIS),
                },
            },
        }
        if args.oidc_upstream is not None:
            oidc = args.oidc_upstream
            # Read by templates/openunison/authentication_chains/standard-chains.yaml; the secret
            # comes from orchestra-secrets-source key OIDC_CLIENT_SECRET.
            values["oidc"] = {
                "client_id": oidc.client_id,
                "issuer": oidc.issuer,
                "scopes": " ".join(oidc.scopes),
                "domain": "",
                "user_in_idtoken": False,
                "claims": {
                    "sub": oidc.user_claim,
                    "email": "email",
                    "given_name": "given_name",
                    "family_name": "family_name",
                    "display_name": "name",
                    "groups": oidc.groups_claim,
                },
            }
        if args.ldap_upstream is not None:
            ldap = args.ldap_upstream
            ldap_host, ldap_port = _ldap_host_port(ldap.url)
            # The bind password is AD_BIND_PASSWORD in orchestra-secrets-source.
            values["active_directory"] = {
                "base": ldap.search_base,
                "host": ldap_host,
                "port": str(ldap_port),
                "bind_dn": ldap.bind_dn,
                "con_type": "ldaps",
                "srv_dns": "false",
            }
        return values

    def _client(
        self,
        cluster: ClusterHandle,
        client: str,
        spec: ClientSpec,
        ns: k8s.core.v1.Namespace,
        in_ns: pulumi.ResourceOptions,
        crd_ready: pulumi.ResourceOptions,
    ) -> OidcClient:
        # Replaced when its rotation comes due (on `pulumi up --refresh`); both sides read this Output.
        rotation = time.Rotating(
            f"oidc-{client}-rotation", rotation_days=CLIENT_SECRET_ROTATION_DAYS, opts=pulumi.ResourceOptions(parent=self)
        )
        password = random.RandomPassword(
            f"oidc-{client}",
            length=48,
            special=False,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[rotation], replacement_trigger=rotation.rfc3339),
        )
        secret_name = f"oidc-client-{client}"
        secret = k8s.core.v1.Secret(
            f"{cluster.role}-{secret_name}",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=secret_name, namespace=ns.metadata.name, labels={**managed_by(), "platform.io/oidc-client": client}
            ),
            type="Opaque",
            string_data={CLIENT_SECRET_KEY: password.result},
            opts=in_ns,
        )
        k8s.apiextensions.CustomResource(
            f"{cluster.role}-trust-{client}",
            api_version="openunison.tremolo.io/v1",
            kind="Trust",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=client,
                namespace=ns.metadata.name,
                labels=managed_by(),
                annotations={CLIENT_CHECKSUM_ANNOTATION: checksum(password.result)},
            ),
            spec={
                "clientId": client,
                "clientSecret": {"secretName": secret_name, "keyName": CLIENT_SECRET_KEY},
                "publicEndpoint": False,
                "redirectURI": list(spec.redirect_uris),
                "codeLastMileKeyName": LAST_MILE_KEY,
                "authChainName": AUTH_CHAIN,
                "codeTokenSkewMilis": CODE_SKEW_MILLIS,
                "accessTokenTimeToLive": TOKEN_LIFETIME_MILLIS,
                "accessTokenSkewMillis": TOKEN_SKEW_MILLIS,
                # Plain JSON from userinfo: what GitLab, Harbor, ArgoCD and Vault expect.
                "signedUserInfo": False,
                "verifyRedirect": True,
            },
            # The IdP application (login portal) must exist for the client to be usable.
            opts=pulumi.ResourceOptions.merge(crd_ready, pulumi.ResourceOptions(depends_on=[secret, self.portal_release])),
        )
        return OidcClient(client_id=client, client_secret=password.result, issuer_url=self.issuer_url)

    def _local_groups_jit(
        self, cluster: ClusterHandle, groups: PlatformGroups, ns: k8s.core.v1.Namespace,
        in_ns: pulumi.ResourceOptions, crd_ready: pulumi.ResourceOptions,
    ) -> None:
        """The JIT workflow that applies local groups, and OpenUnison's right to read their ConfigMaps."""
        reader = k8s.rbac.v1.Role(
            f"{cluster.role}-openunison-local-groups",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="platform-local-groups", namespace=NAMESPACE, labels=managed_by()),
            rules=[k8s.rbac.v1.PolicyRuleArgs(api_groups=[""], resources=["configmaps"], verbs=["get", "list"])],
            opts=in_ns,
        )
        k8s.rbac.v1.RoleBinding(
            f"{cluster.role}-openunison-local-groups",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="platform-local-groups", namespace=NAMESPACE, labels=managed_by()),
            role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="Role", name="platform-local-groups"),
            subjects=[k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=OPENUNISON_SERVICE_ACCOUNT, namespace=NAMESPACE)],
            opts=pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(depends_on=[reader])),
        )
        k8s.apiextensions.CustomResource(
            f"{cluster.role}-openunison-jit-workflow",
            api_version="openunison.tremolo.io/v1",
            kind="Workflow",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=JIT_WORKFLOW, namespace=ns.metadata.name, labels={**managed_by(), "tremolo.io/wf-type": "login"}
            ),
            spec={
                "description": "JIT with the platform's local groups",
                "inList": False,
                "label": "JIT",
                "orgId": ROOT_ORG_ID,
                "dynamicConfiguration": {"dynamic": False, "className": "", "params": []},
                "tasks": jit_workflow_tasks([*groups.cluster_admins, *groups.system_approvers]),
            },
            # After the portal release: on a stack that ran the portal's own `jitdb`, Helm
            # removes it before this one takes the name.
            opts=pulumi.ResourceOptions.merge(crd_ready, pulumi.ResourceOptions(depends_on=[self.portal_release])),
        )


# User names a person's id may not start with (without regard to case): a virtual cluster's API server takes
# the token's sub as the user name as it is, and these name others there: Kubernetes' own users
# (system:kube-controller-manager, system:serviceaccount:...) and the federation's (openunison:platform-argocd,
# whom each virtual cluster's kube-oidc-proxy impersonates for ArgoCD and whom it lets deploy).
RESERVED_USER_PREFIXES = ("system:", FEDERATED_USERNAME_PREFIX)

# The local-groups task (local_groups_script); braces doubled for str.format.
_LOCAL_GROUPS_JS = """// Local groups from the platform's stack config (components/openunison.py).
var GlobalEntries = Java.type("com.tremolosecurity.server.GlobalEntries");
var SELECTOR = "{selector}";
var NAMESPACE = "{namespace}";
var PLATFORM_GROUPS = {platform_groups};
var RESERVED_PREFIXES = {reserved_prefixes};

function init(task, params) {{
}}

function reInit(task) {{
}}

// GET `uri` on the API server as OpenUnison's own service account (its `k8s` target): the answer, parsed.
function apiGet(uri) {{
  var k8s = GlobalEntries.getGlobalEntries().getConfigManager().getProvisioningEngine().getTarget("k8s").getProvider();
  var con = k8s.createClient();
  try {{
    return JSON.parse(String(k8s.callWS(k8s.getAuthToken(), con, uri)));
  }} finally {{
    con.getHttp().close();
    con.getBcm().close();
  }}
}}

function readLocalGroups() {{
  var list = apiGet("/api/v1/namespaces/" + NAMESPACE + "/configmaps?labelSelector=" + encodeURIComponent(SELECTOR));
  if (list.kind !== "ConfigMapList") {{
    throw "local groups: unexpected answer " + list.kind;
  }}
  return list.items;
}}

// The name of the User object the JIT keeps for `id` (OpenShiftTarget.sub2uid): ASCII letters
// lower-cased, a-z, '.' and '-' kept, any other UTF-16 unit as x-<code>-x.
function userObjectName(id) {{
  var name = "";
  for (var i = 0; i < id.length; i++) {{
    var c = id.charAt(i);
    if (c === "." || c === "-" || (c >= "a" && c <= "z")) {{
      name += c;
    }} else if (c >= "A" && c <= "Z") {{
      name += c.toLowerCase();
    }} else {{
      name += "x-" + id.charCodeAt(i) + "-x";
    }}
  }}
  return name;
}}

// The id that signed in under `id`'s User object before (null if none did): GitLab finds a sign-in's
// account by its identity without regard to case (Identity.with_extern_uid), so another spelling of
// an earlier id would open that person's account.
function earlierSpelling(id) {{
  var answer = apiGet("/apis/openunison.tremolo.io/v1/namespaces/" + NAMESPACE + "/users/" + userObjectName(id));
  if (answer.kind === "User") {{
    return answer.spec && answer.spec.sub !== undefined ? String(answer.spec.sub) : null;
  }}
  if (answer.kind === "Status" && answer.code === 404) {{
    return null;
  }}
  throw "users: unexpected answer " + answer.kind;
}}

// Vault's fold (Go's strings.ToLower, one character at a time): JavaScript's own lower-cases the
// dotted capital I (U+0130) to two characters and a final capital sigma to the final form.
function fold(name) {{
  return name.replace(/\\u0130/g, "i").replace(/\\u03a3/g, "\\u03c3").toLowerCase();
}}

function doTask(user, request) {{
  var uid = user.getAttribs().get("uid");
  var id = uid == null ? null : String(uid.getValues().get(0));
  // Another's user name (RESERVED_USER_PREFIXES): a virtual cluster's API server takes the token's sub,
  // this id, as the user name as it is.
  var reserved = id === null ? [] : RESERVED_PREFIXES.filter(function (prefix) {{ return fold(id).indexOf(prefix) === 0; }});
  if (reserved.length > 0) {{
    throw "login refused: the user id " + id + " is in " + reserved[0] + ", user names the clusters reserve for others";
  }}
  var earlier = id ? earlierSpelling(id) : null;
  if (earlier !== null && earlier !== id) {{
    throw "login refused: the user id " + id + " is another spelling of " + earlier + ", who signed in before";
  }}
  var managed = {{}};
  var platform = {{}};
  PLATFORM_GROUPS.forEach(function (group) {{
    platform[fold(group)] = true;
  }});
  var mine = [];
  var declared = {{}};
  readLocalGroups().forEach(function (configMap) {{
    var data = configMap.data || {{}};
    Object.keys(data).forEach(function (group) {{
      managed[fold(group)] = true;
      var members = data[group].split("\\n").filter(function (member) {{ return member !== ""; }});
      members.forEach(function (member) {{
        declared[fold(member)] = member;
      }});
      if (id !== null && members.indexOf(id) >= 0) {{
        mine.push(group);
      }}
    }});
  }});
  // GitLab finds a sign-in's account by its identity without regard to case (Identity.with_extern_uid):
  // another spelling of a member's id would open that member's account.
  if (id !== null && declared.hasOwnProperty(fold(id)) && declared[fold(id)] !== id) {{
    throw "login refused: the user id " + id + " is another spelling of the member " + declared[fold(id)];
  }}
  var groups = user.getGroups();
  var keep = [];
  for (var i = 0; i < groups.size(); i++) {{
    var name = String(groups.get(i));
    var folded = fold(name);
    var lookAlike = platform[folded] && PLATFORM_GROUPS.indexOf(name) < 0;
    if (!managed[folded] && !lookAlike && folded.indexOf("system:") !== 0 && keep.indexOf(name) < 0) {{
      keep.push(name);
    }}
  }}
  mine.forEach(function (name) {{
    if (keep.indexOf(name) < 0) {{
      keep.push(name);
    }}
  }});
  groups.clear();
  keep.forEach(function (name) {{
    groups.add(name);
  }});
  return true;
}}
"""


def local_groups_script(platform_groups: Sequence[str]) -> str:
    """The JIT task (a JavaScriptTask) applying local groups to the user logging in.

    Reads every ConfigMap labelled LOCAL_GROUPS_LABEL in OpenUnison's namespace through the
    `k8s` target (OpenUnison's own service account); each key is a group, each value the
    member ids one per line. A failure to read them fails the login: the groups it would
    have removed must never pass through from upstream. So does a user id in RESERVED_USER_PREFIXES
    (Kubernetes' `system:` names, the federation's `openunison:`), and another spelling of an id that GitLab would take for it (it finds
    a sign-in's account by identity without regard to case): a member's (folded as below), or the
    one that signed in under the same User object before (OpenUnison's own record, which names it
    by lower case). Upstream groups are compared as Vault compares group aliases (without regard
    to case, folded as Go's strings.ToLower folds), with the local groups and with
    `platform_groups` (the platform's own upstream groups: only their exact spelling passes);
    `system:` groups never pass (a virtual cluster's API server takes the groups claim as it is)."""
    return _LOCAL_GROUPS_JS.format(
        selector=LOCAL_GROUPS_LABEL, namespace=NAMESPACE, platform_groups=json.dumps(sorted(platform_groups), ensure_ascii=True),
        reserved_prefixes=json.dumps(RESERVED_USER_PREFIXES, ensure_ascii=True),
    )


def jit_workflow_tasks(platform_groups: Sequence[str]) -> str:
    """The login portal's standard `jitdb` tasks (orchestra-login-portal
    templates/openunison/login/workflows.yaml, non-GitHub branch) with the local-groups task
    right after the upstream groups become the user's groups."""
    user = lambda target, source: {"targetAttributeName": target, "sourceType": "user", "targetAttributeSource": source}  # noqa: E731
    tasks = [
        {
            "taskType": "customTask",
            "className": "com.tremolosecurity.provisioning.customTasks.Attribute2Groups",
            "params": {"attributeName": "memberOf"},
        },
        {
            "taskType": "customTask",
            "className": "com.tremolosecurity.provisioning.customTasks.JavaScriptTask",
            "params": {"javaScript": local_groups_script(platform_groups)},
        },
        {
            "taskType": "mapping",
            "strict": True,
            "map": [
                user("TREMOLO_USER_ID", "uid"),
                user("sub", "uid"),
                {"targetAttributeName": "email", "sourceType": "custom", "targetAttributeSource": "com.tremolosecurity.mapping.DefaultEmail"},
                user("first_name", "givenName"),
                user("last_name", "sn"),
                user("uid", "uid"),
            ],
            "onSuccess": [
                {
                    "taskType": "provision",
                    "sync": True,
                    "target": JIT_TARGET,
                    "setPassword": False,
                    "onlyPassedInAttributes": True,
                    "attributes": ["sub", "email", "first_name", "last_name", "uid"],
                },
                {"taskType": "resync", "keepExternalAttrs": False, "changeRoot": True, "newRoot": "o=Tremolo"},
            ],
        },
    ]
    return yaml_text.dump(tasks, sort_keys=False, width=1000)


@dataclass(frozen=True)
class LocalGroupsArgs:
    owner: str  # who declares these groups (a tenant): names the ConfigMap `local-groups-<owner>`
    groups: Mapping[str, list[str]]  # group name -> member ids (the upstream source's user ids)
    ready: pulumi.Resource  # the login portal's release: OpenUnison's namespace and its JIT


class LocalGroups(pulumi.ComponentResource):
    """Groups OpenUnison adds to its members' tokens at login (see the module docstring)."""

    def __init__(self, name: str, cluster: ClusterHandle, args: LocalGroupsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:openunison:LocalGroups", name, None, opts)
        for group, members in args.groups.items():
            if not _DNS_LABEL.match(group):
                raise ValueError(f"{name}: local group {group!r} must be a DNS label")
            if any("\n" in m or not m.strip() for m in members):
                raise ValueError(f"{name}: members of {group!r} must be non-empty single-line ids")
        k8s.core.v1.ConfigMap(
            f"{name}-config-map",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=f"local-groups-{args.owner}", namespace=NAMESPACE, labels={**managed_by(), LOCAL_GROUPS_LABEL: "true"}
            ),
            # Every group, even empty: its name is then reserved (no upstream group passes for it).
            data={group: "\n".join(sorted(members)) for group, members in sorted(args.groups.items())},
            opts=pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[args.ready]),
        )
        self.register_outputs({"groups": sorted(args.groups)})


def credentials(args: OpenUnisonArgs) -> list[Credential]:
    """OpenUnison's tokens, the client secrets it shares with each service, its own and its upstream's."""
    rotation_days = CLIENT_SECRET_ROTATION_DAYS
    in_secret = f"Secret {NAMESPACE}/{SOURCE_SECRET}"
    upstream = args.oidc_upstream
    entries = [Credential(
        what="OpenUnison tokens",
        category="federated",
        issuer="OpenUnison (k8sIdp)",
        holder="people's kubectl and the sessions of GitLab, Harbor, ArgoCD and Vault sign-in",
        scope="the signed-in person and their groups",
        lifetime_seconds=TOKEN_LIFETIME_MILLIS // 1000,
        rotation="refreshed by the client; a new sign-in when the session ends",
    ), Credential(
        what="OpenUnison sessions (refresh tokens)",
        category="federated",
        issuer="OpenUnison (k8sIdp), at sign-in through the JIT",
        holder="people's kubectl token caches and the services they signed in to (Harbor's CLI secrets, ArgoCD)",
        scope="new tokens with the groups of the sign-in (a refresh re-reads none)",
        lifetime_seconds=SESSION_MAX_SECONDS,
        lifetime=f"{describe_seconds(SESSION_MAX_SECONDS)} after the sign-in, ended within {REAP_EVERY_MINUTES} minutes by the "
                 f"{REAPER} CronJob; sooner without use (the portal's inactivity timeout)",
        rotation="a new sign-in, which reads the person's groups again",
    ), external_secret(
        "upstream OIDC client secret" if upstream else "LDAP bind password",
        issuer=upstream.issuer if upstream else args.ldap_upstream.url if args.ldap_upstream else "the directory",
        holder=f"OpenUnison ({in_secret}), from a Pulumi config secret",
        scope="OpenUnison signs people in against the upstream identity source",
        lifetime="set by the upstream identity source's administrators",
        rotation="`pulumi config set --secret --path platform:identity...` then `pulumi up`",
    )]
    entries += [internal_secret(
        "OpenUnison", what,
        scope=f"OpenUnison's own components ({in_secret})",
        rotation="by hand: replace the resource; OpenUnison restarts with it",
        resources=(resource,),
    ) for resource, what in (
        ("openunison-k8s-db-secret", "client secret of OpenUnison's internal trusts"),
        ("openunison-keystore-password", "password of OpenUnison's keystore"),
    )]
    entries += [refreshed(
        f"OIDC client secret of {client}",
        issuer="the program (pulumi_random), registered in OpenUnison's Trust",
        holder=f"{client} and OpenUnison (Secret {NAMESPACE}/oidc-client-{client})",
        scope=f"{client} redeems sign-in codes at OpenUnison's token endpoint",
        every_days=rotation_days,
        then="; both sides take it in that run",
        # Nothing expires it on its own: the 30 days hold as long as refreshes run.
        lifetime=f"{rotation_days} days, as long as `pulumi up --refresh` runs (OpenUnison sets no expiry)",
        resources=(f"oidc-{client}",),
    ) for client in sorted(args.clients)]
    return entries


def declare(parts: ControlPlaneParts, settings: ServiceSettings) -> OpenUnison:
    upstream = parts.settings.upstream
    return OpenUnison(
        "openunison",
        parts.cluster,
        OpenUnisonArgs(
            domain=parts.settings.domain,
            exposure=parts.expose("k8sou"),
            clients={client: ClientSpec(uris) for client, uris in parts.oidc_clients().items()},
            cert_manager=parts.tls.release,
            ingress_namespace=parts.foundation.ingress.namespace.name,
            ingress_controller=parts.ingress.release,
            groups=parts.settings.groups,
            operator_chart_version=settings.chart_version,
            resources=settings.resources,
            replicas=settings.replicas,
            protect=parts.settings.protect,
            oidc_upstream=upstream if isinstance(upstream, OidcUpstream) else None,
            ldap_upstream=upstream if isinstance(upstream, LdapUpstream) else None,
            inventory=parts.inventory,
        ),
    )


def tenant(parts: TenantParts) -> LocalGroups | None:
    """The tenant's role groups, which ArgoCD, Harbor and Vault authorize on, in its members' tokens."""
    identity = parts.platform.identity
    if identity is None:
        return None
    groups = {tenant_group(parts.name, role): parts.members.of(role) for role in ROLES}
    return LocalGroups(f"{parts.name}-groups", identity.cluster, LocalGroupsArgs(parts.name, groups, identity.ready), parts.opts)


SLICE: ServiceSlice[OpenUnison] = ServiceSlice(
    key="openunison",
    namespace=PlatformNamespace(NAMESPACE, "OpenUnison, the identity provider and token API"),
    chart="openunison-operator",
    declare=declare,
    tenant=tenant,
)
