"""A cookie-sticky HTTP proxy in front of a Deployment's pods, inside their namespace: HAProxy.

For a backend whose pods each keep their own state (OpenUnison's logins), a browser must keep reaching the pod that
began its session. Traefik pins by cookie only over the servers it builds from a Service's EndpointSlices, which it
reads only in the namespaces it watches, and it lists every Secret of each of those (Traefik v3.6.2
pkg/provider/kubernetes/crd/client.go lines 222-244: a Secrets informer per watched namespace, none to leave out;
lines 460-472: EndpointSlices only there); an ExternalName Service, or `nativeLB`, is one server
(crd/kubernetes_http.go lines 550-580). So the platform's Traefik routes to this proxy by name (an ExternalName
Service in its own namespace, components/ingress.py `route`) and the proxy pins: it finds the pods by DNS through a
headless Service (only ready pods are in its answer), one server per address, and inserts a cookie naming the
server (`dynamic`: a hash of the pod's address and port) that later requests follow, removed before the pod
sees them. It calls no Kubernetes API and holds no token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
import pulumi
import pulumi_kubernetes as k8s

from components.cluster import ClusterHandle
from components.common import Backend, checksum
from components.helm import disruption_budget, metadata, spread_affinity
from components.ingress import READ_TIMEOUT, from_ingress_controller
from components.versions import HAPROXY_IMAGE

PORT = 8080  # the proxy's listener (unprivileged)
SERVICE_PORT = 80
_HAPROXY_USER = 99  # the image's USER haproxy, by number (runAsNonRoot cannot check a user name)
# Not a secret: it only makes the cookie's value opaque (a hash of the pod's address); knowing it lets a client pick
# a pod, which it can do by retrying anyway.
COOKIE_KEY = "platform-sticky"


@dataclass(frozen=True)
class StickyProxyArgs:
    name: str  # its Deployment, Services, ConfigMap and NetworkPolicies in `ns`
    ns: k8s.core.v1.Namespace
    namespace: str  # `ns`'s name
    pods: Mapping[str, str]  # the backend's pod labels
    port: int  # the pods' HTTP port
    cookie: str  # the persistence cookie's name
    replicas: int  # the proxy's and the backend's (at most twice this many pods get a server each)
    # The component that declared a Service of this name before: the proxy's takes it over in place (under a new
    # URN it would be created while the old object of that name still stands, and fail).
    moved_from: pulumi.Resource | None = None

    def __post_init__(self) -> None:
        if self.replicas < 2:
            raise ValueError(f"a sticky proxy is for two or more replicas, got {self.replicas}")


def pods_host(args: StickyProxyArgs) -> str:
    """The headless Service's name: the ready pods' addresses."""
    return f"{args.name}-pods.{args.namespace}.svc.cluster.local"


def haproxy_config(args: StickyProxyArgs) -> str:
    """haproxy.cfg. Headers pass as Traefik sent them (X-Forwarded-*); the request timeouts are Traefik's. A server
    per pod address up to twice the replicas, for a rolling update's surge; `init-addr none`: it starts before DNS
    answers. The cookie is Secure, HttpOnly and SameSite=None (the upstream IdP's callback is a cross-site POST in
    some flows), as the orchestra chart's Traefik route sets it (templates/infrastructure/service.yaml)."""
    return "\n".join([
        "defaults",
        "  mode http",
        "  timeout connect 5s",
        f"  timeout client {READ_TIMEOUT}",
        f"  timeout server {READ_TIMEOUT}",
        "resolvers cluster",
        "  parse-resolv-conf",
        "  hold valid 10s",
        "frontend http",
        f"  bind :{PORT}",
        "  default_backend pods",
        "backend pods",
        "  balance roundrobin",
        f"  cookie {args.cookie} insert indirect nocache secure httponly attr SameSite=None dynamic",
        f"  dynamic-cookie-key {COOKIE_KEY}",
        f"  server-template pod 1-{2 * args.replicas} {pods_host(args)}:{args.port} check resolvers cluster resolve-prefer ipv4 init-addr none",
        "",
    ])


class StickyProxy(pulumi.ComponentResource):
    """HAProxy in `args.namespace` pinning each browser to one of `args.pods` by cookie (see the module docstring)."""

    backend: Backend  # what Traefik's route reaches

    def __init__(self, name: str, cluster: ClusterHandle, args: StickyProxyArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:sticky_proxy:StickyProxy", name, None, opts)
        labels = {"app.kubernetes.io/name": "sticky-proxy", "app.kubernetes.io/instance": args.name}
        on_cluster = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[args.ns])
        meta = lambda object_name: metadata(object_name, args.ns)  # noqa: E731

        k8s.core.v1.Service(f"{name}-pods", metadata=meta(f"{args.name}-pods"), spec={
            "clusterIP": "None", "selector": dict(args.pods), "ports": [{"name": "http", "port": args.port, "protocol": "TCP"}],
        }, opts=on_cluster)
        text = haproxy_config(args)
        config = k8s.core.v1.ConfigMap(name, metadata=meta(args.name), data={"haproxy.cfg": text}, opts=on_cluster)
        tcp = {"tcpSocket": {"port": "http"}, "periodSeconds": 10}
        k8s.apps.v1.Deployment(name, metadata=meta(args.name), spec={
            "replicas": args.replicas,
            "selector": {"matchLabels": labels},
            # A new configuration rolls the pods (HAProxy reads it at start).
            "template": {"metadata": {"labels": labels, "annotations": {"platform.io/config-checksum": checksum(text)}}, "spec": {
                "automountServiceAccountToken": False,  # it calls no Kubernetes API
                "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                "affinity": spread_affinity(labels),
                "containers": [{
                    "name": "haproxy",
                    "image": HAPROXY_IMAGE.ref,
                    "args": ["-f", "/usr/local/etc/haproxy/haproxy.cfg"],
                    "ports": [{"name": "http", "containerPort": PORT}],
                    "readinessProbe": {**tcp, "initialDelaySeconds": 2},
                    "livenessProbe": {**tcp, "initialDelaySeconds": 10},
                    "resources": {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
                    "securityContext": {
                        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                        "runAsUser": _HAPROXY_USER, "runAsGroup": _HAPROXY_USER, "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "config", "mountPath": "/usr/local/etc/haproxy", "readOnly": True}],
                }],
                "volumes": [{"name": "config", "configMap": {"name": args.name}}],
            }},
        }, opts=pulumi.ResourceOptions.merge(on_cluster, pulumi.ResourceOptions(depends_on=[config])))
        k8s.core.v1.Service(name, metadata=meta(args.name), spec={
            "selector": labels, "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}],
        }, opts=pulumi.ResourceOptions.merge(on_cluster, pulumi.ResourceOptions(
            aliases=[pulumi.Alias(name=name, parent=args.moved_from)] if args.moved_from else None)))
        disruption_budget(name, args.name, args.ns, labels, on_cluster)
        # Traefik reaches the proxy, and the proxy the pods (the namespace may deny ingress by default).
        for policy, selector, peer, port in (
            (args.name, labels, from_ingress_controller(), PORT),
            (f"{args.name}-to-pods", dict(args.pods), {"podSelector": {"matchLabels": labels}}, args.port),
        ):
            k8s.networking.v1.NetworkPolicy(f"{name}{policy.removeprefix(args.name)}", metadata=meta(policy), spec={
                "podSelector": {"matchLabels": selector},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [peer], "ports": [{"protocol": "TCP", "port": port}]}],
            }, opts=on_cluster)
        self.backend = Backend(args.name, args.namespace, SERVICE_PORT)
        self.register_outputs({"service": args.name})
