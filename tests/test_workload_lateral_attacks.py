"""An attacker's review of lateral movement on the workload clusters' pod network (dev and prod, both stacks).

The attacker holds one pod there: a platform pod taken over (Traefik parses every tenant visitor's request,
Prometheus, Velero, the Rollouts and External Secrets controllers, the vCluster syncers), or a tenant's pod in
a namespace, a sandbox or a virtual cluster, with any labels its namespace's policies name. The jewels are the
platform namespaces that trust their network:
* External Secrets: the controller holds every SecretStore's Vault session; the webhook validates stores;
* policy-controller (cosign-system): the webhook that admits tenants' images by signature;
* Argo Rollouts: the controller that runs every tenant's Rollouts and analyses;
* alerting: Alertmanager, whose API takes silences that mute every alert unauthenticated, and the platform Prometheus
  (the platform's series); it takes its own pods' connections only, and its Prometheus alone reaches Velero's metrics;
* Dragonfly: the manager, the scheduler and the seed peers, whose gRPC and piece servers take no credential
  (scheduler v2.5.0 scheduler/service/service_v2.go AnnouncePeer, AnnounceHost, DeleteTask: no authentication;
  client v1.4.0 dragonfly-client/src/grpc/dfdaemon_upload.rs `download_task` fetches any URL with any headers from
  the seed peer's network and streams it back, `sync_pieces` lists a task's pieces; dragonfly-client-storage/src/
  server/tcp.rs `handle` serves any cached piece by task id and number). Who reaches a seed peer's upload and
  piece ports downloads another tenant's private layers already cached (a task id is computed from the blob's
  URL, which names the repository and digest), makes the seed peer fetch any URL for it (the manager's REST API,
  which refuses other namespaces), and who reaches the scheduler announces a host and peers that claim any
  task's pieces, so other peers download a layer from it (containerd then refuses the layer by digest: a
  cluster-wide pull outage of that image, not a forged one).

Each (source, jewel, port) the network lets through must be `allowed` (a webhook's port, a port dfdaemon on the
nodes calls, both read from the real render) or NAMED, with the reason the service needs it; each NEEDED flow must
still go through. `Network` (tests/test_delivery_attacks.py) evaluates Kubernetes'
NetworkPolicy semantics over the plan and the real Helm renders of the pinned charts.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

import yaml

from components import alerting, cluster_autoscaler, dragonfly, kube_oidc_proxy, metrics_server, velero, workload_ingress
from platformctl.render import Render
from policy.labels import TENANT_NAMESPACE_LABEL
from tests.test_delivery_attacks import Network, Pod
from tests.test_gatekeeper_plan import selector_matches

WORKLOAD = ("dev", "prod")
HELD = ("external-secrets", "cosign-system", "argo-rollouts", dragonfly.NAMESPACE,
        velero.NAMESPACE, cluster_autoscaler.NAMESPACE, kube_oidc_proxy.NAMESPACE, metrics_server.NAMESPACE, alerting.NAMESPACE)
DF = dragonfly.NAMESPACE
MANAGER, SCHEDULER, SEED = f"{DF}/Deployment/{dragonfly.MANAGER}", f"{DF}/StatefulSet/dragonfly-scheduler", f"{DF}/StatefulSet/dragonfly-seed-client"
TRAEFIK = "apps-ingress/Deployment/traefik"
# Addresses outside the pod network: a kind node's, an EKS control-plane ENI's or node's in the VPC.
OUTSIDE = tuple(map(ipaddress.ip_address, ("172.18.0.2", "10.40.1.10")))


def _clusters(charted: dict[str, Render]) -> Iterator[tuple[str, str, dict[str, Any], Network]]:
    for stack, result in charted.items():
        for cluster in WORKLOAD:
            if any(r.get("cluster") == cluster for r in result.plan["resources"]):
                yield stack, cluster, result.plan, Network(result.plan, cluster)


def _rendered(plan: dict[str, Any], cluster: str) -> Iterator[dict[str, Any]]:
    for r in plan["resources"]:
        if r.get("cluster") == cluster:
            yield from r.get("rendered") or []


def webhook_ports(plan: dict[str, Any], cluster: str, network: Network) -> dict[tuple[str, int], list[str]]:
    """Each (pod, container port) the API server calls as a webhook (admission or CRD conversion) in the real
    render: the webhook's Service, its port (443 unless said) and the target port it names, by number or name."""
    objects = list(_rendered(plan, cluster))
    calls = [(w["name"], w["failurePolicy"], w["clientConfig"]["service"]) for o in objects if o["kind"].endswith("WebhookConfiguration")
             for w in o.get("webhooks") or [] if "service" in w["clientConfig"]]
    calls += [(o["metadata"]["name"], "conversion", o["spec"]["conversion"]["webhook"]["clientConfig"]["service"]) for o in objects
              if o["kind"] == "CustomResourceDefinition" and (o["spec"].get("conversion") or {}).get("strategy") == "Webhook"]
    return _served(objects, network, calls)


def api_service_ports(plan: dict[str, Any], cluster: str, network: Network) -> dict[tuple[str, int], list[str]]:
    """Each (pod, container port) behind an aggregated APIService of the real render (metrics-server's
    v1beta1.metrics.k8s.io): the API server proxies every request of that group there."""
    objects = list(_rendered(plan, cluster))
    return _served(objects, network, [(o["metadata"]["name"], "APIService", o["spec"]["service"]) for o in objects
                                      if o["kind"] == "APIService" and o["spec"].get("service")])


def load_balancer_ports(plan: dict[str, Any], cluster: str, network: Network) -> dict[tuple[str, int], list[str]]:
    """Each (pod, container port) a LoadBalancer Service of the cluster (declared or rendered) sends its clients to:
    they come through the nodes (MetalLB, an NLB), from outside the pod network."""
    objects = [r["inputs"] for r in plan["resources"]  # declared (a Service read back, `get`, has no spec)
               if r.get("cluster") == cluster and r["type"] == "kubernetes:core/v1:Service" and "spec" in r["inputs"]]
    objects += list(_rendered(plan, cluster))
    balancers = [o for o in objects if o["kind"] == "Service" and o["spec"].get("type") == "LoadBalancer"]
    return _served(objects, network, [(f"Service {o['metadata']['namespace']}/{o['metadata']['name']}", "LoadBalancer",
                                       {"namespace": o["metadata"]["namespace"], "name": o["metadata"]["name"], "port": p["port"]})
                                      for o in balancers for p in o["spec"]["ports"]])


def _served(objects: list[dict[str, Any]], network: Network, calls: list[tuple[str, str, dict[str, Any]]]) -> dict[tuple[str, int], list[str]]:
    """(pod, container port) -> the calls (name, kind, Service reference) that reach it through their Service."""
    services = {(o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects if o["kind"] == "Service"}
    found: dict[tuple[str, int], list[str]] = {}
    for name, kind, ref in calls:
        service = services.get((ref["namespace"], ref["name"])) or services[(None, ref["name"])]
        [port] = [p for p in service["spec"]["ports"] if p["port"] == ref.get("port", 443)]
        pods = [p for p in network.pods if p.namespace == ref["namespace"] and selector_matches({"matchLabels": service["spec"]["selector"]}, p.labels)]
        assert pods, (name, ref)
        for pod in pods:
            target = port.get("targetPort", port["port"])  # a number, or a container port's name
            [number] = [target] if isinstance(target, int) else [n for label, n, _ in pod.ports if label == target]
            found.setdefault((pod.what, number), []).append(f"{name} ({kind})")
    return found


def dragonfly_node_ports(plan: dict[str, Any], cluster: str) -> dict[tuple[str, int], str]:
    """What dfdaemon on every node (the host's network) connects to, from the real render: the manager's gRPC
    (dfdaemon.yaml `manager.addr`), the scheduler's (the Service the manager hands out), and each seed peer's
    upload gRPC (`sync_pieces`) and piece server over TCP (`download.protocol: tcp`; client v1.4.0
    dragonfly-client/src/resource/piece_collector.rs, piece_downloader.rs)."""
    objects = {(o["kind"], o["metadata"]["name"]): o for o in _rendered(plan, cluster) if o["metadata"].get("namespace", DF) == DF}
    if ("ConfigMap", "dragonfly-client") not in objects:
        return {}
    node = yaml.safe_load(objects[("ConfigMap", "dragonfly-client")]["data"]["dfdaemon.yaml"])
    seed = yaml.safe_load(objects[("ConfigMap", "dragonfly-seed-client")]["data"]["dfdaemon.yaml"])
    assert node["download"]["protocol"] == "tcp"
    [scheduler] = [p["port"] for p in objects[("Service", "dragonfly-scheduler")]["spec"]["ports"] if p["name"] == "grpc"]
    return {
        (MANAGER, int(node["manager"]["addr"].rsplit(":", 1)[1])): "dfdaemon asks the manager for its schedulers (dfdaemon.yaml manager.addr)",
        (SCHEDULER, scheduler): "dfdaemon announces its host and peers to the scheduler",
        (SEED, seed["upload"]["server"]["port"]): "dfdaemon lists a seed peer's pieces of a task (sync_pieces)",
        (SEED, seed["storage"]["server"]["tcpPort"]): "dfdaemon downloads the pieces from a seed peer over TCP",
    }


def allowed(plan: dict[str, Any], cluster: str, network: Network) -> dict[tuple[str, int], str]:
    """(jewel, port) -> why any source may reach it."""
    return {
        **{key: f"an admission webhook ({', '.join(hooks)}): the API server's calls come from outside the pod network"
           for key, hooks in webhook_ports(plan, cluster, network).items()},
        **{key: f"an aggregated API ({', '.join(calls)}): the API server's calls come from outside the pod network"
           for key, calls in api_service_ports(plan, cluster, network).items()},
        **{key: f"a load balancer's backend ({', '.join(calls)}): its clients come through the nodes"
           for key, calls in load_balancer_ports(plan, cluster, network).items()},
        **{key: f"{why}: from every node's address, which on EKS share the pods' subnets" for key, why in dragonfly_node_ports(plan, cluster).items()},
    }


# (source prefix, jewel, port, why): what one source more reaches, beyond ALLOWED. Traefik's: any pod of its namespace
# (there, a pod with Traefik's labels is a Traefik pod: no one but the platform makes pods in it).
NAMED = ((f"{workload_ingress.NAMESPACE}/", MANAGER, dragonfly.REST_PORT,
          "dragonfly.<cluster>.<domain>'s preheat paths route to the manager's REST API (Harbor's preheat)"),)


def _attackers(network: Network) -> list[Pod]:
    """The cluster's pods, and in each namespace outside HELD an attacker's pod with no labels and one with
    each label set its namespace's policies select (a tenant in a virtual cluster names the virtual namespace,
    which the syncer copies to `vcluster.loft.sh/namespace`)."""
    label_sets = {ns: [{}] for ns in network.namespaces if ns not in HELD}
    for ns, spec in network.policies:
        if ns in label_sets and spec["podSelector"].get("matchLabels"):
            label_sets[ns].append(spec["podSelector"]["matchLabels"])
    made = [Pod(f"{ns}/attacker-{i}", ns, labels, ()) for ns, sets in label_sets.items() for i, labels in enumerate(sets)]
    return [p for p in network.pods if p.namespace not in HELD] + made


def test_a_taken_over_pod_reaches_no_port_of_the_held_namespaces_it_does_not_need(charted: dict[str, Render]) -> None:
    """From every pod outside the held namespaces, every port of every pod in them: what goes through is a
    webhook's port, a port dfdaemon on the nodes needs, or NAMED. Before: any pod reached the External Secrets
    controller's and webhook's metrics and health, policy-controller's metrics, the Rollouts controller's
    metrics and health, and every Dragonfly port but the manager's REST (the scheduler's and manager's metrics,
    the seed peers' health, metrics and QUIC piece server)."""
    problems: dict[str, set[str]] = {}
    checked = 0
    for stack, cluster, plan, network in _clusters(charted):
        admitted = allowed(plan, cluster, network)
        jewels = [(p, number, protocol) for p in network.pods if p.namespace in HELD for _, number, protocol in p.ports]
        for source in _attackers(network):
            for jewel, number, protocol in jewels:
                checked += 1
                if not network.reaches(source, jewel, number, protocol):
                    continue
                if (jewel.what, number) in admitted and protocol == "TCP":
                    continue
                if any(source.what.startswith(prefix) and (jewel.what, number) == (what, port) for prefix, what, port, _ in NAMED):
                    continue
                problems.setdefault(f"{stack}/{cluster}: {jewel.what}:{number}/{protocol}", set()).add(source.what)
    assert checked > 1000, checked
    assert not problems, f"{len(problems)} ports no service needs, open to:\n" + "\n".join(
        f"{port} <- {len(sources)} pods ({', '.join(sorted(sources)[:3])}, ...)" for port, sources in sorted(problems.items()))


def test_tenant_pods_reach_nothing_in_the_held_namespaces(charted: dict[str, Render]) -> None:
    """A tenant's pod (its namespaces, its sandboxes, its virtual cluster's pods with any virtual namespace):
    its namespace's default deny keeps it from even the webhooks and the ports the nodes need. (GitLab's
    runners and their job pods run on the control plane only: components/gitlab_runner.py.)"""
    reached = []
    for stack, cluster, _, network in _clusters(charted):
        tenants = [p for p in _attackers(network) if network.namespaces.get(p.namespace, {}).get(TENANT_NAMESPACE_LABEL) == "true"]
        namespaces = {p.namespace for p in tenants}
        assert namespaces >= {f"payments-{cluster}", f"catalog-{cluster}"} and (cluster != "dev" or any(n.startswith("sandbox-") for n in namespaces))
        # catalog's virtual cluster: its pods of the virtual namespaces the platform's policies name (argo-rollouts, kube-oidc-proxy)
        assert any(p.labels.get("vcluster.loft.sh/managed-by") == f"catalog-{cluster}" for p in tenants)
        reached += [f"{stack}/{cluster}: {p.what} {p.labels} -> {j.what}:{n}" for p in tenants for j in network.pods if j.namespace in HELD
                    for _, n, protocol in j.ports if network.reaches(p, j, n, protocol)]
    assert not reached, "\n".join(reached)


def test_the_api_server_still_reaches_every_webhook_and_nothing_else_there(charted: dict[str, Render]) -> None:
    """From an address outside the pod network each webhook's port (resolved from the real render's webhook
    configurations, CRD conversions included, through their Services) is open, and no other port of any webhook's
    pod: every webhook on these clusters is held (Gatekeeper, cert-manager, MetalLB and the AWS Load Balancer
    Controller already were; vCluster 0.36.1 renders none with the platform's values)."""
    checked = 0
    for stack, cluster, plan, network in _clusters(charted):
        webhooks = webhook_ports(plan, cluster, network)
        assert {"external-secrets", "cosign-system"} <= {what.split("/")[0] for what, _ in webhooks}, webhooks
        checked += _outside_takes_only(network, webhooks, (stack, cluster))
    assert checked >= 16


def _outside_takes_only(network: Network, served: dict[tuple[str, int], list[str]], where: tuple[str, str]) -> int:
    """From each address OUTSIDE the pod network: every (pod, port) of `served` is open, no other port of those pods."""
    checked = 0
    for address in OUTSIDE:
        for (what, port), calls in served.items():
            assert network.takes(network.pod(what), address, port), (*where, what, port, calls)
            checked += 1
        others = [(what, n) for what in {w for w, _ in served} for _, n, _ in network.pod(what).ports
                  if (what, n) not in served and network.takes(network.pod(what), address, n)]
        assert not others, (*where, others)
    return checked


def test_the_aggregated_api_and_the_proxys_load_balancer_still_take_outside_clients(charted: dict[str, Render]) -> None:
    """From an address outside the pod network, metrics-server's APIService port (the API server proxies
    metrics.k8s.io there) and, on kubeconfig clusters, kube-oidc-proxy's LoadBalancer port (ArgoCD on the control
    plane, through the nodes) are open; no other port of those pods (the proxy's health port) is."""
    checked = 0
    for stack, cluster, plan, network in _clusters(charted):
        served = {**api_service_ports(plan, cluster, network),
                  **{key: calls for key, calls in load_balancer_ports(plan, cluster, network).items() if key[0].split("/")[0] in HELD}}
        expected = {metrics_server.NAMESPACE, *([kube_oidc_proxy.NAMESPACE] if stack == "dev" else [])}
        assert {what.split("/")[0] for what, _ in served} == expected, served
        checked += _outside_takes_only(network, served, (stack, cluster))
    assert checked >= 12, checked


def test_the_held_webhooks_fail_closed(charted: dict[str, Render]) -> None:
    """Who floods the External Secrets or policy-controller webhook (or keeps it from answering) holds what it
    reviews: `failurePolicy: Fail` in the real render. A tenant's SecretStore or ExternalSecret, or a pod in a
    tenant namespace, then waits; none is admitted unreviewed. (Fail-open webhooks elsewhere on these clusters:
    the report lists them.)"""
    for stack, cluster, plan, network in _clusters(charted):
        for (what, _), hooks in webhook_ports(plan, cluster, network).items():
            if what.split("/")[0] in HELD:
                assert all(h.endswith("(Fail)") or h.endswith("(conversion)") for h in hooks), (stack, cluster, what, hooks)


# (client, server, port): each must still connect where both run.
NEEDED = (
    (SCHEDULER, MANAGER, dragonfly.GRPC_PORT), (SEED, MANAGER, dragonfly.GRPC_PORT),  # scheduler.yaml and the seed's manager.addr
    (SEED, SCHEDULER, 8002),  # a seed peer announces itself and its tasks
    (SCHEDULER, SEED, 4000),  # the scheduler triggers a seed peer's download (its upload gRPC, DownloadTask)
    (SEED, SEED, 4000), (SEED, SEED, 4005),  # a seed peer downloads pieces from another one the scheduler makes its parent
    (TRAEFIK, MANAGER, dragonfly.REST_PORT), (f"{DF}/Job/prod-dragonfly-root-password", MANAGER, dragonfly.REST_PORT),
    (f"{DF}/Job/dev-dragonfly-root-password", MANAGER, dragonfly.REST_PORT),
)


def test_dragonflys_own_flows_and_the_nodes_still_go_through(charted: dict[str, Render]) -> None:
    checked = 0
    for stack, cluster, plan, network in _clusters(charted):
        present = {p.what: p for p in network.pods}
        flows = [(c, s, port) for c, s, port in NEEDED if c in present and s in present]
        broken = [f"{stack}/{cluster}: {c} -> {s}:{port}" for c, s, port in flows if not network.reaches(present[c], present[s], port)]
        nodes = dragonfly_node_ports(plan, cluster)
        broken += [f"{stack}/{cluster}: node {address} -> {what}:{port}" for (what, port) in nodes for address in OUTSIDE
                   if not network.takes(present[what], address, port)]
        assert not broken, "\n".join(broken)
        checked += len(flows) + len(nodes)
    assert checked >= 2 * 12, checked
