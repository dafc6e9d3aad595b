"""ArgoCD on the control plane: single sign-on through OpenUnison, RBAC from the platform groups."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import pulumiverse_time as time

from components import yaml_text
from components.backend_tls import BackendTlsArgs, internal_certificate, internal_credentials, servers_transport
from components.cluster import ClusterHandle
from components.common import Backend, PlatformGroups
from components.federation import CredentialPlugin
from components.gitlab import SLICE as GITLAB
from components.egress import Admit, hold_pods, pods
from components.helm import metadata, namespace, release, sized, spread
from components.ingress import (HTTPS_PORT, NAMESPACE as INGRESS_NAMESPACE, SSH_PORT, LoadBalancerCidr, egress_to_platform, from_ingress_controller,
                                load_balancer_networks, route)
from components.inventory import STATE, Credential, generated_password, refreshed
from components.service import ControlPlaneParts, PlatformNamespace, ServiceArgs, ServiceSettings, ServiceSlice, TenantParts
from components.tenancy import ENVIRONMENTS
from components.tenant_delivery import TenantDelivery, TenantDeliveryArgs, destination

NAMESPACE = "argocd"
SERVER = "argocd-server"  # the chart's server Deployment and Service
SERVER_TLS_SECRET = "argocd-server-tls"  # the name argocd-server reads its certificate from
TRANSPORT = "argocd"  # Traefik's ServersTransport to argocd-server, in Traefik's namespace
SERVER_HTTPS_PORT = 443  # the chart's server Service's https port
OIDC_SECRET = "argocd-oidc"
WEBHOOK_ROTATION_DAYS = 30
# ArgoCD takes push events in other forges' formats too and checks each against its own key of
# argocd-secret only when that key is set (util/webhook/webhook.go): unset, anyone who reaches
# argocd.<domain> makes it refresh any repository's Applications, unsigned. Each takes a lock that
# no sender holds (not GitLab's secret: a signed Bitbucket or Azure DevOps event also makes ArgoCD
# call the API its payload names); the body it reads is capped near a push event's size.
WEBHOOK_LOCKS = ("webhook.github.secret", "webhook.bitbucket.uuid", "webhook.bitbucketserver.secret", "webhook.gogs.secret",
                 "webhook.azuredevops.password")
WEBHOOK_MAX_PAYLOAD_MB = "2"  # a GitLab push event lists 20 commits at most; ArgoCD's default is 50
# The chart's selector labels of the repo-server's pods, and of the Redis it caches in (HAProxy in front
# of redis-ha when replicated).
REPO_SERVER_LABELS = {"app.kubernetes.io/name": "argocd-repo-server", "app.kubernetes.io/instance": "argocd"}
REDIS_PODS = {False: "argocd-redis", True: "argocd-redis-ha-haproxy"}
# Who uses Redis: the argo-cd chart's own Redis policy names these three (templates/redis/networkpolicy.yaml).
REDIS_CLIENTS = [{"app.kubernetes.io/name": f"argocd-{tier}", "app.kubernetes.io/instance": "argocd"}
                 for tier in ("server", "repo-server", "application-controller")]
REDIS_PORT = 6379
SERVER_PORT = 8080  # argocd-server's container port (`server`): its API and UI, HTTPS and gRPC
REPO_SERVER_PORT = 8081  # the repo-server's container port (`repo-server`)
# Who calls the repo-server: the chart's own repo-server NetworkPolicy names these four
# (templates/argocd-repo-server/networkpolicy.yaml).
REPO_SERVER_CLIENTS = [{"app.kubernetes.io/name": f"argocd-{tier}", "app.kubernetes.io/instance": "argocd"}
                       for tier in ("server", "application-controller", "notifications-controller", "applicationset-controller")]
# Who connects to ArgoCD's pods: Traefik to argocd-server (argocd.<domain>: the UI, the API, GitLab's webhooks),
# ArgoCD's tiers to the repo-server; Redis as the chart's own policies say (argocd-redis: the three of
# REDIS_CLIENTS; redis-ha: its subchart's). Nobody else: not the metrics ports (the chart's policies admit every
# namespace there; no Prometheus runs on the control plane), not the ApplicationSet controller's webhook (no
# route) or the controllers.
ADMITTED = [
    Admit("argocd-server-from-ingress", {"app.kubernetes.io/name": SERVER, "app.kubernetes.io/instance": "argocd"},
          [from_ingress_controller()], (SERVER_PORT,)),
    Admit("argocd-repo-server-clients", REPO_SERVER_LABELS, pods(*REPO_SERVER_CLIENTS), (REPO_SERVER_PORT,)),
]


@dataclass(frozen=True, kw_only=True)
class ArgoCdArgs(ServiceArgs):
    # cert_manager: Certificates and Issuers need its CRDs
    ingress_controller: pulumi.Resource  # the Traefik release: ServersTransport needs its CRDs
    credential_plugin: CredentialPlugin | None = None  # exec plugin for remote clusters (federation)
    # known_hosts lines of the Git servers ArgoCD reads over SSH (the platform GitLab's host keys).
    ssh_known_hosts: pulumi.Input[str] | None = None
    # Where the repo-server reaches the platform's load balancer when the cluster does not hand its
    # address to the ingress controller's pods (ingress.load_balancer_networks): its listeners there only.
    load_balancer_cidrs: tuple[pulumi.Input[str], ...] = ()


def rbac_policy(groups: PlatformGroups) -> str:
    """Cluster admins administer ArgoCD; system approvers may look at everything. Nobody else by default."""
    lines = [f"g, {group}, role:admin" for group in groups.cluster_admins]
    lines += [f"g, {group}, role:readonly" for group in groups.system_approvers]
    return "\n".join(lines) + "\n"


class ArgoCd(pulumi.ComponentResource):
    release: k8s.helm.v3.Release
    url: str

    def __init__(self, name: str, cluster: ClusterHandle, args: ArgoCdArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:argocd:ArgoCd", name, None, opts)
        ns = namespace(SLICE.namespace, cluster, self)
        secrets = self._secrets(name, cluster, ns, args)
        # argocd-server serves the Secret argocd-server-tls when it exists, instead of a self-signed
        # certificate of its own that nothing could verify.
        in_ns = pulumi.ResourceOptions(parent=self, provider=cluster.provider)
        # Traefik reaches argocd-server from its own namespace (`route`): the transport and the CA's certificate are there.
        serving_tls = BackendTlsArgs("argocd", NAMESPACE, SERVER_TLS_SECRET, [f"{SERVER}.{NAMESPACE}.svc", f"{SERVER}.{NAMESPACE}", SERVER],
                                     ca_namespace=INGRESS_NAMESPACE)
        after_traefik = pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(depends_on=[ns, args.ingress_controller]))
        serving = internal_certificate(cluster.role, serving_tls, after_traefik)
        args.inventory.register(*internal_credentials(cluster.role, serving_tls, "argocd-server"))
        transport = servers_transport(cluster.role, TRANSPORT, INGRESS_NAMESPACE, f"{SERVER}.{NAMESPACE}.svc", after_traefik)
        self.url = args.exposure.url
        egress = self._repo_server_egress(name, cluster, ns, args)
        held = hold_pods(f"{name}-ingress", ns, ADMITTED, in_ns)
        values = argocd_values(args)
        plugin = args.credential_plugin
        plugin_files = [plugin.config_map(f"{name}-credential-plugin", cluster, ns, self)] if plugin else []
        self.release = release(
            "argocd",
            "argo-cd",
            ns,
            sized(
                plugin.merge_into(values) if plugin else values, args.resources, "controller", "server", "repoServer",
                "applicationSet", "notifications", "redis", "redisSecretInit",
                *((f"redis-ha.{part}" for part in REDIS_HA_SIZED) if args.replicas > 1 else ()),
            ),
            cluster,
            self,
            version=args.chart_version,
            depends_on=[*secrets, *serving, transport, egress, *held, *plugin_files],
        )
        route(name, NAMESPACE, args.exposure, {"/": Backend(SERVER, NAMESPACE, SERVER_HTTPS_PORT, transport=TRANSPORT)},
              pulumi.ResourceOptions.merge(after_traefik, pulumi.ResourceOptions(depends_on=[args.cert_manager, transport, *serving])))
        self.register_outputs({"url": self.url})

    def _repo_server_egress(self, name: str, cluster: ClusterHandle, ns: k8s.core.v1.Namespace, args: ArgoCdArgs) -> k8s.networking.v1.NetworkPolicy:
        """The repo-server fetches what tenants' ops repositories name (Helm dependencies, Kustomize
        remote bases): it may reach the cluster DNS, GitLab and Harbor through the ingress controller
        (SSH and HTTPS) and its Redis, and nothing else: no in-cluster endpoint, no metadata service."""
        redis = k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=k8s.meta.v1.LabelSelectorArgs(
            match_labels={"app.kubernetes.io/name": REDIS_PODS[args.replicas > 1]}))
        return k8s.networking.v1.NetworkPolicy(
            f"{name}-repo-server-egress",
            metadata=metadata("argocd-repo-server-egress", ns),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=REPO_SERVER_LABELS),
                policy_types=["Egress"],
                egress=[
                    *egress_to_platform([HTTPS_PORT, SSH_PORT], args.load_balancer_cidrs),
                    k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                        to=[redis], ports=[k8s.networking.v1.NetworkPolicyPortArgs(protocol="TCP", port=REDIS_PORT)]),
                ],
            ),
            opts=pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[ns]),
        )

    def _secrets(self, name: str, cluster: ClusterHandle, ns: k8s.core.v1.Namespace, args: ArgoCdArgs) -> list[pulumi.Resource]:
        """The OIDC client secret and argocd-secret (the webhook secret and lock), kept out of the values."""
        # The client secret stays in a Secret; argocd-cm only names it ($secret:key).
        oidc_secret = k8s.core.v1.Secret(
            f"{name}-oidc",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=OIDC_SECRET, namespace=NAMESPACE, labels={"app.kubernetes.io/part-of": "argocd"}
            ),
            string_data={"clientSecret": args.oidc.client_secret},
            opts=pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[ns]),
        )
        # GitLab's webhooks authenticate with a shared secret, rotated every 30 days: both sides
        # take the new value on the same `pulumi up --refresh`. The chart would put it in its
        # values; the platform keeps argocd-secret itself so the values hold no secret.
        rotation = time.Rotating(f"{name}-webhook-rotation", rotation_days=WEBHOOK_ROTATION_DAYS, opts=pulumi.ResourceOptions(parent=self))
        args.inventory.register(webhook_credential(name))
        webhook = random.RandomPassword(
            f"{name}-webhook",
            length=40,
            special=False,
            opts=pulumi.ResourceOptions(parent=self, replacement_trigger=rotation.rfc3339),
        )
        self.webhook_secret = webhook.result
        lock = random.RandomPassword(f"{name}-webhook-lock", length=40, special=False, opts=pulumi.ResourceOptions(parent=self))
        args.inventory.register(generated_password(
            "lock of ArgoCD's webhook formats other than GitLab's", f"{STATE} and ArgoCD (argocd-secret); no sender",
            "none: no sender holds it, so ArgoCD refuses every GitHub, Bitbucket, Bitbucket Server, Gogs and Azure DevOps event",
            "none needed: nothing presents it", f"{name}-webhook-lock",
        ))
        argocd_secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name="argocd-secret", namespace=NAMESPACE, labels={"app.kubernetes.io/part-of": "argocd"}
            ),
            string_data={
                "webhook.gitlab.secret": webhook.result,
                **{key: lock.result for key in WEBHOOK_LOCKS},
                "webhook.azuredevops.username": "nobody",  # Azure DevOps' basic auth: this user, the lock
            },
            opts=pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[ns]),
        )
        return [oidc_secret, argocd_secret]


def argocd_values(args: ArgoCdArgs) -> dict[str, Any]:
    """The chart values: sign-in through OpenUnison, RBAC from the platform groups, TLS to Traefik verified."""
    oidc_config = args.exposure.ca_bundle.apply(
        lambda ca: yaml_text.dump(
            {
                "name": "OpenUnison",
                "issuer": args.oidc.issuer_url,
                "clientID": args.oidc.client_id,
                "clientSecret": f"${OIDC_SECRET}:clientSecret",
                "requestedScopes": list(args.oidc.scopes),
                # Trust the platform CA for the issuer; empty on EKS (public roots).
                **({"rootCA": ca} if ca else {}),
            },
            sort_keys=True,
        )
    )
    values = {
        # ArgoCD deploys to the workload clusters only (cluster Secrets, with their own credentials):
        # on the control plane its controller and server keep their namespace's Roles, not the
        # chart's ClusterRoles (the controller's is cluster-admin; the server's reads every object).
        "createClusterRoles": False,
        # Spread over zones and nodes; the chart adds each component's own label selector.
        # The chart's NetworkPolicies admit any pod to argocd-server and any namespace to the metrics ports:
        # ADMITTED instead, and of the chart's only Redis's (which names its three clients).
        "global": {"domain": args.exposure.hostname, "topologySpreadConstraints": spread(), "networkPolicy": {"create": False}},
        "redis": {"networkPolicy": {"create": True}},
        "configs": {
            # No Application may name the control plane (in-cluster): ArgoCD holds no rights there.
            "cm": {"admin.enabled": False, "exec.enabled": False, "cluster.inClusterEnabled": False, "oidc.config": oidc_config,
                   "webhook.maxPayloadSizeMB": WEBHOOK_MAX_PAYLOAD_MB,
                   # A sync deploys what its Application follows (main, as merged): naming another
                   # revision takes `override`, which no tenant role holds (false by default).
                   "application.sync.requireOverridePrivilegeForRevisionSync": True},
            "secret": {"createSecret": False},
            "rbac": {"policy.default": "", "policy.csv": rbac_policy(args.groups), "scopes": "[groups]"},
        },
        "dex": {"enabled": False},
        "controller": {"replicas": args.replicas},
        # It calls no Kubernetes API, and runs what tenants' charts and Kustomize bases make it run.
        "repoServer": {"automountServiceAccountToken": False, "serviceAccount": {"automountServiceAccountToken": False}},
    }
    if args.replicas > 1:
        values = high_availability(values, args.replicas)
    if args.ssh_known_hosts is not None:
        # Replaces the chart's list of public forges: ArgoCD reads the platform's GitLab only,
        # and trusts exactly its host keys (a key it does not list is refused, never added).
        values["configs"]["ssh"] = {"knownHosts": args.ssh_known_hosts}
    return values


# The chart's HA mode (its README): Redis as redis-ha (three Redis with Sentinel behind HAProxy),
# the API server, repo server and ApplicationSet controller replicated, the application controller
# sharded over its replicas. Each tier keeps all but one replica through a drain.
HA_TIERS = ("controller", "server", "repoServer", "applicationSet")
REDIS_HA_SIZED = ("redis", "sentinel", "haproxy", "haproxy.init", "splitBrainDetection", "init")


def high_availability(values: dict[str, Any], replicas: int) -> dict[str, Any]:
    budget = {"maxUnavailable": 1}
    out = {**values, "redis-ha": {
        "enabled": True,
        # One Redis and one HAProxy per node already (the chart's hard anti-affinity); also over zones.
        "topologySpreadConstraints": {
            "enabled": True, "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
        },
        "podDisruptionBudget": budget,
        # The argo-cd chart's own Redis policy (templates/redis/networkpolicy.yaml) is skipped when
        # redis-ha is on: without these, every pod reaches the manifest cache (CVE-2024-31989). The
        # subchart's (templates/redis-ha-network-policy.yaml, redis-haproxy-network-policy.yaml) admit
        # Redis and Sentinel from each other and HAProxy, and HAProxy from the clients named here.
        "networkPolicy": {"enabled": True},
        "haproxy": {"podDisruptionBudget": budget, "networkPolicy": {
            "enabled": True, "ingressRules": [{"selectors": [{"podSelector": {"matchLabels": labels}} for labels in REDIS_CLIENTS]}]}},
    }}
    for tier in HA_TIERS:
        out[tier] = {**values.get(tier, {}), "replicas": replicas, "pdb": {"enabled": True, **budget}}
    return out


def webhook_credential(name: str) -> Credential:
    """The secret GitLab's webhooks present to ArgoCD."""
    return refreshed(
        "GitLab webhook secret of ArgoCD",
        issuer="Pulumi (pulumi-random)",
        holder="ArgoCD (argocd-secret) and every tenant ops project's webhook",
        scope="lets GitLab tell ArgoCD that a repository changed; grants no access",
        every_days=WEBHOOK_ROTATION_DAYS,
        then=", on both sides at once",
        resources=(f"{name}-webhook",),
    )


def declare(parts: ControlPlaneParts, settings: ServiceSettings) -> ArgoCd:
    gitlab = parts.get(GITLAB)
    return ArgoCd(
        "argocd",
        parts.cluster,
        ArgoCdArgs.extend(
            parts.service(SLICE, settings),
            ingress_controller=parts.ingress.release,
            # ArgoCD reaches the remote clusters with OpenUnison's short-lived tokens,
            credential_plugin=CredentialPlugin(parts.identity.portal_url.rstrip("/"), parts.tls.ca_bundle),
            # and reads the tenants' repositories over SSH, trusting GitLab's own host keys.
            ssh_known_hosts=gitlab.ssh_known_hosts if gitlab is not None else None,
            load_balancer_cidrs=load_balancer_networks(parts, settings),
        ),
    )


def tenant(parts: TenantParts) -> TenantDelivery | None:
    """The tenant's AppProjects and ApplicationSets, following its ops repositories."""
    repositories = parts.get(GITLAB)
    if parts.platform.argocd is None or repositories is None:
        return None
    tenant_args = parts.tenant
    destinations = {
        e: destination(parts.name, tenant_args.isolation, e, repositories.ops_repo_urls[e], tenant_args.ops_layout.source_path(e))
        for e in ENVIRONMENTS
    }
    return TenantDelivery(f"{parts.name}-delivery", TenantDeliveryArgs(parts.name, destinations, parts.platform), parts.opts)


SLICE: ServiceSlice[ArgoCd] = ServiceSlice(
    key="argocd",
    # Not skipped by Gatekeeper's webhook: tenant Applications there are held by the tenant constraints.
    namespace=PlatformNamespace(NAMESPACE, "ArgoCD; tenant Applications there are held by the tenant constraint instead", webhook_exempt=False),
    chart="argo-cd",
    declare=declare,
    redirect_uris=lambda host: (f"https://{host}/auth/callback",),
    tenant=tenant,
    options={"load_balancer_cidrs": (list[LoadBalancerCidr], [])},
)
