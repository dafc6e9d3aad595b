"""An attacker's review of the tenants' Traefik on the workload clusters (dev and prod, both stacks).

Traefik in `apps-ingress` parses every request from the internet to every tenant's application: who takes it
over (a parser bug, a plugin, a stolen node) holds its pod, its service account (it reads every tenant's
Secrets: tests/test_workload_reader_attacks.py) and its network. The network is what this file judges. Dragonfly's
node-facing ports stay open to every address (dfdaemon runs on the hosts' network; tests/test_workload_lateral_attacks.py),
and they take no credential: who reaches a seed peer's upload gRPC (4000) and piece server (4005) downloads
another tenant's cached private layers by task id and makes the seed peer fetch any URL; who reaches the
scheduler (8002) or the manager's gRPC (65003) announces fake peers. Beside those, every platform port no policy
holds (metrics, health, webhooks), the nodes, the instance metadata and the internet.

What Traefik needs, from Traefik v3.6.2's source (the chart's appVersion) and the plan:
* the cluster DNS;
* its own cluster's API server: both providers build their client with `rest.InClusterConfig()`
  (pkg/provider/kubernetes/ingress/client.go:65, crd/client.go:109), the `kubernetes` Service, whose
  address kube-proxy rewrites to the API server's endpoint before any NetworkPolicy sees it;
* the backends of its routes: an Ingress's Service resolves to its EndpointSlices' addresses, the pods
  (ingress/kubernetes.go:633-658; ExternalName Services are refused, `allowExternalNameServices` unset,
  :521), so every tenant namespace (sandboxes and virtual clusters' host namespaces are tenant namespaces)
  on any port, and each platform Ingress or IngressRoute on these clusters that names class `apps`,
  derived here from the plan (Dragonfly's preheat API today), on its target port only.
Nothing else: no plugin, tracer or forward-auth is configured, ACME is cert-manager's (DNS-01), and the
version check (update.traefik.io, cmd/traefik/traefik.go:117) is off.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

from platformctl.render import Render
from policy.labels import TENANT_NAMESPACE_LABEL
from tests.test_delivery_attacks import DNS, IMDS, Network, Pod, _subnet_address
from tests.test_gatekeeper_plan import selector_matches
from components import prometheus, workload_ingress
from tests.test_workload_lateral_attacks import OUTSIDE, TRAEFIK, _attackers, _clusters

INGRESS_CLASS = "apps"
ROUTE_KINDS = ("IngressRoute", "IngressRouteTCP")
# Ports a tenant's Service may target (any): a few to try.
TENANT_PORTS = (80, 3000, 8080, 9090)


def _objects(plan: dict[str, Any], cluster: str) -> Iterator[tuple[dict[str, Any], str]]:
    """Every Kubernetes object of `cluster`: declared by the program or rendered by a release, with its namespace."""
    for r in plan["resources"]:
        if r.get("cluster") != cluster or not r["type"].startswith("kubernetes:"):
            continue
        inputs, metadata = r["inputs"], r["inputs"].get("metadata") or {}
        if inputs.get("kind") and inputs.get("spec") is not None:  # an object the program names by its resource alone: that name
            yield {**inputs, "metadata": {"name": r["name"], **metadata}}, metadata.get("namespace") or "default"
        for o in r.get("rendered") or []:
            yield o, o["metadata"].get("namespace") or inputs.get("namespace") or "default"


def routes(plan: dict[str, Any], cluster: str, network: Network) -> dict[tuple[str, int], str]:
    """(pod, container port) -> the route of the plan that sends Traefik there: each Ingress of class `apps`
    (or none: Traefik's is the default class) and each IngressRoute, through its Service to the pods."""
    objects = list(_objects(plan, cluster))
    services = {(ns, o["metadata"]["name"]): o for o, ns in objects if o["kind"] == "Service"}
    backends: list[tuple[str, str, str, int | str]] = []  # (route, namespace, service, port)
    for o, ns in objects:
        name = f"{o['kind']} {ns}/{o['metadata']['name']}"
        if o["kind"] == "Ingress" and o["spec"].get("ingressClassName", INGRESS_CLASS) == INGRESS_CLASS:
            found = [path["backend"]["service"] for rule in o["spec"].get("rules") or [] for path in (rule.get("http") or {}).get("paths") or []]
            found += [o["spec"]["defaultBackend"]["service"]] if "defaultBackend" in o["spec"] else []
            backends += [(name, ns, s["name"], s["port"].get("number") or s["port"].get("name")) for s in found]
        elif o["kind"] in ROUTE_KINDS and o["apiVersion"].startswith("traefik.io/"):
            backends += [(name, s.get("namespace", ns), s["name"], s["port"]) for route in o["spec"]["routes"] for s in route.get("services") or []]
    found: dict[tuple[str, int], str] = {}
    for name, ns, service_name, port in backends:
        service = services[(ns, service_name)]
        [spec] = [p for p in service["spec"]["ports"] if port in (p["port"], p.get("name"))]
        target = spec.get("targetPort", spec["port"])
        pods = [p for p in network.pods if p.namespace == ns and selector_matches({"matchLabels": service["spec"]["selector"]}, p.labels)]
        assert pods, (name, service_name)
        for pod in pods:
            [number] = [n for label, n, _ in pod.ports if target in (label, n)]
            found[(pod.what, number)] = name
    return found


def _tenant(network: Network, pod: Pod) -> bool:
    return network.namespaces.get(pod.namespace, {}).get(TENANT_NAMESPACE_LABEL) == "true"


def test_a_taken_over_traefik_reaches_no_pod_port_but_its_backends(charted: dict[str, Render]) -> None:
    """From Traefik's pods, every port of every pod of dev and prod: what goes through is the cluster DNS, a tenant's
    pod, or a route's backend in the plan. Before: Dragonfly's seed peers' 4000 and 4005, its scheduler's 8002 and
    manager's 65003, every webhook, metrics-server, kube-oidc-proxy's ports, Velero's and the Cluster Autoscaler's metrics."""
    problems, checked = [], 0
    for stack, cluster, plan, network in _clusters(charted):
        traefik, needed = network.pod(TRAEFIK), routes(plan, cluster, network)
        for what, port in network.reachable(traefik):
            checked += 1
            if what == DNS and port == 53 or (what, port) in needed or _tenant(network, network.pod(what)):
                continue
            problems.append(f"{stack}/{cluster}: {what}:{port}")
    assert checked >= 4, checked
    assert not problems, f"the tenants' Traefik reaches {len(problems)} ports it serves no route to:\n" + "\n".join(problems)


def _api_server(plan: dict[str, Any], stack: str, cluster: str) -> tuple[Any, int]:
    """The API server's endpoint as a pod of `cluster` reaches it after kube-proxy's rewrite of the `kubernetes`
    Service: EKS (prod stack) its private endpoint's ENIs in the cluster's VPC on 443; a kind node's address on
    6443 (the dev stack's kubeconfig servers name hosts on 6443, Pulumi.dev.yaml)."""
    if stack == "prod":
        return _subnet_address(plan, f"{cluster}-private-eu-west-1b"), 443
    return ipaddress.ip_address("172.18.0.4"), 6443


def test_a_taken_over_traefik_reaches_nothing_outside_but_its_api_server(charted: dict[str, Render]) -> None:
    """Outside the pod network: its cluster's API server and nothing else (not the instance metadata, the internet,
    a node's kubelet, or on EKS the other clusters' VPCs). Before: everything."""
    reached = []
    for stack, cluster, plan, network in _clusters(charted):
        traefik = network.pod(TRAEFIK)
        address, port = _api_server(plan, stack, cluster)
        assert network.reaches(traefik, address, port), (stack, cluster, address, port)
        refused = {"the instance metadata": (IMDS, 80), "an address on the internet (443)": (ipaddress.ip_address("203.0.113.7"), 443),
                   "an address on the internet (80)": (ipaddress.ip_address("203.0.113.7"), 80), "a node's kubelet": (address, 10250)}
        if stack == "prod":
            others = [c for c in ("control-plane", "dev", "prod") if c != cluster]
            refused |= {f"{c}'s API endpoint": (_subnet_address(plan, f"{c}-private-eu-west-1a"), 443) for c in others}
        reached += [f"{stack}/{cluster}: {what} {a}:{p}" for what, (a, p) in refused.items() if network.reaches(traefik, a, p)]
    assert not reached, "\n".join(reached)


def test_traefik_still_reaches_every_tenant_pod_and_every_route_it_serves(charted: dict[str, Render]) -> None:
    """The hold keeps what Traefik is for: every tenant pod (its namespaces, sandboxes, virtual clusters' synced
    pods, whatever labels its namespace's policies name) on any port, through both Traefik's egress and the tenant's
    default deny; each route's backend in the plan; the cluster DNS on UDP and TCP."""
    broken, checked = [], 0
    for stack, cluster, plan, network in _clusters(charted):
        traefik = network.pod(TRAEFIK)
        tenants = [p for p in _attackers(network) if _tenant(network, p)]
        assert {f"payments-{cluster}", f"catalog-{cluster}"} <= {p.namespace for p in tenants}
        flows = [(p, port, "TCP") for p in tenants for port in TENANT_PORTS]
        flows += [(network.pod(what), port, "TCP") for what, port in routes(plan, cluster, network)]
        flows += [(network.pod(DNS), 53, protocol) for protocol in ("UDP", "TCP")]
        broken += [f"{stack}/{cluster}: {pod.what}:{port}/{protocol}" for pod, port, protocol in flows if not network.reaches(traefik, pod, port, protocol)]
        checked += len(flows)
    assert not broken, "\n".join(broken)
    assert checked > 100, checked


# Static options of Traefik that make it call out beyond its routes' backends (traefik v3.6.2 pkg/config/static):
# plugins (downloaded from plugins.traefik.io), tracing and OTLP metrics or logs, the HTTP provider, Traefik Hub.
CALLS_OUT = ("--experimental", "--tracing", "--metrics.otlp", "--log.otlp", "--accesslog.otlp", "--providers.http", "--hub")


def test_traefik_calls_nothing_its_egress_does_not_name(charted: dict[str, Render]) -> None:
    """The real render of the tenants' Traefik: no option that calls out, the version check off; and no Middleware
    on these clusters in the plan has it call a forward-auth address (tenants cannot create Middlewares)."""
    for stack, cluster, plan, _ in _clusters(charted):
        [deployment] = [o for o, ns in _objects(plan, cluster) if o["kind"] == "Deployment" and ns == "apps-ingress"]
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert "--global.checkNewVersion=false" in container["args"], (stack, cluster)
        assert not [a for a in container["args"] if a.lower().startswith(tuple(o.lower() for o in CALLS_OUT))], (stack, cluster, container["args"])
        assert not [o for o, _ in _objects(plan, cluster) if o["kind"] == "Middleware" and "forwardAuth" in o["spec"]], (stack, cluster)


def test_the_routes_are_read_from_the_plan(charted: dict[str, Render]) -> None:
    """`routes` finds Dragonfly's preheat Ingress on the prod stack (its manager's REST port), so a new Ingress or
    IngressRoute of class `apps` without an egress rule fails the first test."""
    found = {(stack, cluster): routes(plan, cluster, network) for stack, cluster, plan, network in _clusters(charted)}
    manager = ("dragonfly-system/Deployment/dragonfly-manager", 8080)
    assert all(list(r) == [manager] for (stack, _), r in found.items() if stack == "prod"), found
    assert all(not r for (stack, _), r in found.items() if stack == "dev"), found


PROMETHEUS_SERVER = "monitoring/Deployment/prometheus-server"


def test_traefiks_metrics_take_prometheus_alone_and_its_ping_port_nobody(charted: dict[str, Render]) -> None:
    """Traefik's ingress side, its ports read from the real render: its metrics (`metrics`: request counts per tenant
    Service, tenant data) take Prometheus's server alone; its ping and dashboard port (`traefik`) no pod and no outside
    address (the kubelet's probes come from the node, which CNIs admit); its entry points (`web`, `websecure`) every
    pod and every outside address (the load balancer's clients). Before: any pod of the cluster read every tenant's
    request counts. (Whether a source's own egress lets it out is the other tests' matter: here Traefik's policies.)"""
    problems, checked = [], 0
    for stack, cluster, _, network in _clusters(charted):
        traefik = network.pod(TRAEFIK)
        ports = {name: number for name, number, _ in traefik.ports}
        entry = {ports["web"], ports["websecure"]}
        sources = [p for p in [*network.pods, *_attackers(network)] if p.what != TRAEFIK]
        assert PROMETHEUS_SERVER in {p.what for p in sources}
        for source in sources:
            # A pod of `monitoring` with the server's labels is the server: no one but the platform makes pods there.
            server = source.namespace == prometheus.NAMESPACE and prometheus.SERVER_LABELS.items() <= source.labels.items()
            allowed = entry | ({ports[workload_ingress.METRICS_PORT]} if server else set())
            for number in ports.values():
                checked += 1
                if network._admitted("Ingress", traefik, source, number, "TCP", traefik) != (number in allowed):
                    problems.append(f"{stack}/{cluster}: {source.what} -> {number}: {'open' if number not in allowed else 'refused'}")
        for address in OUTSIDE:
            problems += [f"{stack}/{cluster}: {address} -> {n}: {'open' if n not in entry else 'refused'}"
                         for n in ports.values() if network.takes(traefik, address, n) != (n in entry)]
    assert checked > 100, checked
    assert not problems, f"{len(problems)} wrong:\n" + "\n".join(problems[:40])
