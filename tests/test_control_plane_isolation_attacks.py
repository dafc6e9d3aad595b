"""An attacker's review of what Harbor's and ArgoCD's pods reach on the control plane, and of who reaches
their Redis, as `Network` evaluates the plan and the real Helm renders of the pinned charts.

The attacker has taken over one pod: Trivy (it unpacks and scans tenants' untrusted images), the job
service (replication, webhooks and preheat send requests to addresses tenants and admins name: SSRF),
core (the API, the proxy caches), the registry or the portal; or any pod of GitLab's or Harbor's
namespace. Each tier may connect only where its configuration in the chart render says it does, and
each Redis takes only the pods whose configuration names it.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from platformctl.render import Render, read_stack_file, render_plan
from stacks.config import load_platform_config
from tests.test_config import DEV, _problems, _write
from tests.test_dragonfly import ARCHIVE_KEYS
from tests.test_delivery_attacks import DNS, IMDS, TRAEFIK, Network, Pod, _subnet_address, nlb_cidrs
from tests.test_gitlab_attacks import INTERNET

CORE, JOBSERVICE, REGISTRY = "harbor/Deployment/harbor-core", "harbor/Deployment/harbor-jobservice", "harbor/Deployment/harbor-registry"
PORTAL, TRIVY = "harbor/Deployment/harbor-portal", "harbor/StatefulSet/harbor-trivy"
POSTGRES, REDIS = "harbor/Cluster/harbor-postgres", "harbor/StatefulSet/harbor-redis"  # off EKS: CloudNativePG, Valkey
PUBLIC_NAMES = (TRAEFIK, 8443)  # harbor.<domain>, k8sou.<domain>: Traefik's websecure container port

# What each Harbor tier connects to in the cluster, and the evidence (harbor 1.19.1's render, Harbor 2.15's source):
HARBOR_NEEDS: dict[str, set[tuple[str, int]]] = {
    # core-cm.yaml: POSTGRESQL_HOST, _REDIS_URL_CORE, REGISTRY_URL (:5000), REGISTRY_CONTROLLER_URL (:8080),
    # JOBSERVICE_URL, TRIVY_ADAPTER_URL; its health checks call the portal too (src/controller/health/checker.go);
    # OIDC sign-in calls OpenUnison's public name (k8sou.<domain>).
    CORE: {(POSTGRES, 5432), (REDIS, 6379), (REGISTRY, 5000), (REGISTRY, 8080), (JOBSERVICE, 8080),
           ("harbor/StatefulSet/harbor-trivy", 8080), (PORTAL, 8080), PUBLIC_NAMES},
    # jobservice-env: CORE_URL, REGISTRY_URL, REGISTRY_CONTROLLER_URL; config.yml: redis_url, job_loggers DB;
    # scan jobs call the scanner (src/pkg/scan/job.go).
    JOBSERVICE: {(CORE, 8080), (REGISTRY, 5000), (REGISTRY, 8080), (TRIVY, 8080), (POSTGRES, 5432), (REDIS, 6379)},
    # registry config.yml: redis (layer info cache); htpasswd auth and its own token certificate: no call to core.
    REGISTRY: {(REDIS, 6379)},
    # nginx serving files (portal-cm.yaml: no upstream, no resolver): nothing, not even the cluster DNS the others use.
    PORTAL: set(),
    # harbor-trivy Secret redisURL; scan requests name core's internal URL as the registry (the built-in
    # scanner's UseInternalAddr, src/core/main.go; src/controller/scan/base_controller.go); its databases come
    # from harbor.<domain>/approved (SCANNER_TRIVY_DB_REPOSITORY).
    TRIVY: {(REDIS, 6379), (CORE, 8080), PUBLIC_NAMES},
}


def _stores_address(plan: dict[str, Any], stack: str) -> Any:
    """On EKS: an address in the VPC's private subnets, where RDS and ElastiCache listen (and pods, nodes)."""
    return _subnet_address(plan, "control-plane-private-eu-west-1a") if stack == "prod" else None


def _outside(plan: dict[str, Any], stack: str) -> dict[str, tuple[Any, int, set[str]]]:
    """(address, port, the tiers that may reach it) outside the cluster."""
    tiers = {
        "the node's instance metadata": (IMDS, 80, set()),
        "the instance metadata over IPv6": (ipaddress.ip_address("fd00:ec2::254"), 80, set()),
        # Proxy caches' upstreams (core), replication targets, webhooks and preheat (job service), S3 or the
        # object store's public name (the registry, and whoever reads blobs from it: it redirects there).
        "an internet host on HTTPS": (INTERNET, 443, {CORE, JOBSERVICE, REGISTRY, TRIVY}),
        "an internet host over SSH": (INTERNET, 22, set()),
        "an internet database": (INTERNET, 5432, set()),
    }
    if stack == "dev":  # kind: the nodes and API servers on the docker network
        tiers |= {"a node's kubelet": (ipaddress.ip_address("172.18.0.3"), 10250, set()),
                  "the control plane's API server": (ipaddress.ip_address("172.18.0.2"), 6443, set()),
                  "MetalLB's pool on another port": (ipaddress.ip_address("172.18.255.200"), 8200, set())}
    else:
        stores = _stores_address(plan, stack)
        tiers |= {"RDS (Harbor's database)": (stores, 5432, {CORE, JOBSERVICE}),
                  "ElastiCache (Harbor's Redis)": (stores, 6379, {CORE, JOBSERVICE, REGISTRY, TRIVY}),
                  # The NLB is internet-facing, at the program's EIPs (components/ingress.py): OpenUnison, harbor.<domain>
                  # for core and Trivy (the others reach it as they reach the internet on HTTPS); nothing in the VPC on 443.
                  "the load balancer on HTTPS": (ipaddress.ip_address(nlb_cidrs(plan)[0].removesuffix("/32")), 443, {CORE, JOBSERVICE, REGISTRY, TRIVY}),
                  "the VPC on HTTPS": (stores, 443, set()),
                  "a node's kubelet": (stores, 10250, set())}
    return tiers


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_each_harbor_tier_reaches_only_what_its_configuration_names(charted: dict[str, Render], stack: str) -> None:
    """Taken over, a tier reaches in the cluster only the pods and ports its configuration names (and
    the cluster DNS); outside, only what its configuration calls. On main every Harbor pod reached every
    pod of its namespace and, on EKS, RDS and ElastiCache, every address and port outside the cluster."""
    plan = charted[stack].plan
    network = Network(plan, "control-plane")
    present = {p.what for p in network.pods}
    problems = []
    for tier, needs in HARBOR_NEEDS.items():
        source = network.pod(tier)
        allowed = {(what, port) for what, port in needs if what in present} | ({(DNS, 53)} if tier != PORTAL else set())
        reached = set(network.reachable(source))
        problems += [f"{tier} reaches {what}:{port}" for what, port in sorted(reached - allowed)]
        problems += [f"{tier} misses {what}:{port}" for what, port in sorted(allowed - reached)]
        for what, (address, port, tiers) in _outside(plan, stack).items():
            if network.reaches(source, address, port) != (tier in tiers):
                problems.append(f"{tier} {'reaches' if tier not in tiers else 'misses'} {what} ({address}:{port})")
    assert not problems, f"{len(problems)} paths:\n" + "\n".join(problems)


def test_a_private_object_store_is_reached_by_harbor_on_its_port_alone_through_the_one_setting(tmp_path: Path, renders: dict[str, Render]) -> None:
    """A kubeconfig stack's MinIO on kind's docker network, on its own port: the store's own setting of its
    networks (platform:objectStore.networks, which GitLab's Rails tiers read too) admits it for the tiers that
    read blobs, on the endpoint's port; not the API servers or kubelets beside it, not the portal; without it,
    only public addresses."""
    def mutate(doc: dict[str, Any]) -> None:
        doc["config"]["platform:objectStore"]["endpoint"] = "https://minio.kind.internal:9000"
        doc["config"]["platform:objectStore"]["networks"] = ["172.18.0.0/16"]

    network = Network(render_plan(_write(tmp_path, DEV, mutate), "dev"), "control-plane")
    minio = ipaddress.ip_address("172.18.0.9")
    readers, portal = [_tier_pod(t) for t in ("core", "jobservice", "registry", "trivy")], _tier_pod("portal")
    assert all(network.reaches(pod, minio, 9000) and network.reaches(pod, INTERNET, 9000) for pod in readers)
    assert not any(network.reaches(pod, minio, port) for pod in readers for port in (6443, 10250, 22, 5432))
    assert not network.reaches(portal, minio, 9000)
    plain = Network(renders["dev"].plan, "control-plane")  # the stack file as it is: the session's render
    registry = _tier_pod("registry")
    assert not plain.reaches(registry, minio, 443) and plain.reaches(registry, INTERNET, 443)


@pytest.mark.parametrize("key", ["platform:objectStore", "platform:backups.target"])
@pytest.mark.parametrize("cidrs", [None, ["10.9.0.0/16"]])
def test_an_object_store_at_a_private_address_outside_its_networks_is_refused_naming_the_key(tmp_path: Path, key: str, cidrs: Any) -> None:
    """Without its network Harbor's registry could not store an image (nor GitLab an object or a backup): refused
    before anything is registered, naming the store's own `networks`."""
    def store(doc: dict[str, Any]) -> dict[str, Any]:
        return doc["config"]["platform:objectStore"] if key == "platform:objectStore" else doc["config"]["platform:backups"]["target"]

    def mutate(doc: dict[str, Any], networks: Any = cidrs) -> None:
        store(doc)["endpoint"] = "https://10.20.0.5:9000"
        if networks is not None:
            store(doc)["networks"] = networks

    lines = _problems(_write(tmp_path, DEV, mutate), stack="dev")
    assert any(f": {key}.networks: the endpoint 10.20.0.5 is a private address" in line and "['10.20.0.5/32']" in line
               for line in lines), lines
    raw, secret_keys = read_stack_file(_write(tmp_path, DEV, lambda doc: mutate(doc, ["10.20.0.0/24"])))
    load_platform_config(raw, stack="dev", source="covered", secret_keys=secret_keys)  # its network named: accepted


def test_with_dragonfly_on_kind_the_job_service_reaches_the_workload_clusters_pools_on_https_alone(tmp_path: Path, renders: dict[str, Render]) -> None:
    """Harbor preheats through each workload cluster's dragonfly.<cluster>.<domain>, on its ingress: on a
    kubeconfig stack a MetalLB address of that cluster's pool, a private one. The job service reaches those
    pools on 443 (not the control plane's, not other ports), no other tier does; without Dragonfly, nobody."""
    def mutate(doc: dict[str, Any]) -> None:
        doc["config"]["platform:services"]["dragonfly"] = {"enabled": True, "archiveKeys": ARCHIVE_KEYS}

    network = Network(render_plan(_write(tmp_path, DEV, mutate), "dev"), "control-plane")
    jobservice = _tier_pod("jobservice")
    dev_pool, prod_pool, own_pool = (ipaddress.ip_address(a) for a in ("172.18.255.216", "172.18.255.247", "172.18.255.200"))
    assert network.reaches(jobservice, dev_pool, 443) and network.reaches(jobservice, prod_pool, 443)
    assert not any(network.reaches(jobservice, address, port) for address, port in ((dev_pool, 8200), (own_pool, 443), (prod_pool, 6443)))
    assert not any(network.reaches(_tier_pod(t), dev_pool, 443) for t in ("core", "registry", "trivy", "portal"))
    plain = Network(renders["dev"].plan, "control-plane")  # the stack file as it is: the session's render
    assert not plain.reaches(jobservice, dev_pool, 443)


def _tier_pod(tier: str) -> Pod:
    """A Harbor tier's pod as the chart labels it (the plan alone: without the chart's render)."""
    return Pod(f"harbor/{tier}", "harbor", {"app": "harbor", "release": "harbor", "component": tier}, ())


def _configuration(objects: list[dict[str, Any]], workload: dict[str, Any]) -> str:
    """A workload's pod template and the ConfigMaps it reads (environment, volumes), as text."""
    template = workload["spec"]["jobTemplate"]["spec"]["template"] if workload["kind"] == "CronJob" else workload["spec"]["template"]
    pod = template["spec"]
    read = {ref["configMapRef"]["name"] for c in pod.get("containers", []) + pod.get("initContainers", [])
            for ref in c.get("envFrom") or [] if "configMapRef" in ref}
    for volume in pod.get("volumes") or []:
        read |= {v["configMap"]["name"] for v in [volume, *(volume.get("projected") or {}).get("sources", [])] if "configMap" in v}
    maps = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] in read]
    return json.dumps([template, *maps])


def _redis_clients(plan: dict[str, Any], service: str) -> set[str]:
    """The pods of `service`'s release whose configuration mentions Redis at all (its host, URL or password)."""
    [release] = [r for r in plan["resources"] if r.get("cluster") == "control-plane" and r["name"] == f"control-plane-{service}"
                 and r["type"] == "kubernetes:helm.sh/v3:Release"]
    objects = release.get("rendered") or []
    return {f"{service}/{o['kind']}/{o['metadata']['name']}" for o in objects
            if o["kind"] in ("Deployment", "StatefulSet", "Job", "CronJob") and "redis" in _configuration(objects, o).lower()}


@pytest.mark.parametrize("service", ["harbor", "gitlab"])
def test_a_services_redis_takes_only_the_pods_whose_configuration_names_it(charted: dict[str, Render], service: str) -> None:
    """Off EKS Harbor's and GitLab's Redis (Valkey) runs in their namespace, with AUTH only: a pod of
    the namespace that never uses it (Harbor's portal, GitLab's Gitaly and gitlab-shell, the chart's
    secret and upgrade Jobs), once taken over, must not reach it; every pod whose configuration names
    Redis must."""
    plan = charted["dev"].plan
    network = Network(plan, "control-plane")
    redis = network.pod(f"{service}/StatefulSet/{service}-redis")
    clients = _redis_clients(plan, service)
    pods = [p for p in network.pods if p.namespace == service and p != redis]
    assert len(clients) >= 4, clients
    wrong = [f"{p.what} {'misses' if p.what in clients else 'reaches'} {redis.what}:6379"
             for p in pods if network.reaches(p, redis, 6379) != (p.what in clients)]
    assert not wrong, "\n".join(wrong)


ARGOCD_SERVER, APPSET = "argocd/Deployment/argocd-server", "argocd/Deployment/argocd-applicationset-controller"
REPO_SERVER_CLIENTS = ("argocd-server", "argocd-application-controller", "argocd-notifications-controller", "argocd-applicationset-controller")


def _argocd_admitted(pod: Pod, port: int) -> set[str]:
    """Who must reach `pod` on `port` in ArgoCD's namespace, from the chart's wiring (by the pod's name label)."""
    name = pod.labels.get("app.kubernetes.io/name")
    if name == "argocd-server" and port == 8080:
        return {TRAEFIK}  # argocd.<domain> (and GitLab's webhooks to it) through the ingress controller only
    if name == "argocd-repo-server" and port == 8081:  # the chart's repo-server NetworkPolicy: its four clients
        return {f"argocd/{kind}/{client}" for client in REPO_SERVER_CLIENTS for kind in ("Deployment", "StatefulSet")}
    return set()  # metrics, probes (the kubelet, from the node), the ApplicationSet webhook (not routed): nobody


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_argocds_pods_take_only_the_clients_the_chart_wires(charted: dict[str, Render], stack: str) -> None:
    """A taken-over pod anywhere on the control plane (Harbor's Trivy, a GitLab tier, OpenUnison, a CI
    job of a platform runner) calls argocd-server's API directly, past Traefik (no access log, no rate
    limit of the route), the ApplicationSet controller's webhook and metrics ports, or the controllers'
    and repo-server's metrics (the chart admits any namespace there; no Prometheus runs on the control
    plane). Only Traefik reaches the server, only ArgoCD's own tiers the repo-server; Redis stays with the
    chart's policies (test_lateral_attacks)."""
    network = Network(charted[stack].plan, "control-plane")
    argocd = [p for p in network.pods if p.namespace == "argocd" and not p.labels.get("app", "").startswith("redis-ha")
              and p.labels.get("app.kubernetes.io/name") != "argocd-redis"]
    assert {ARGOCD_SERVER, APPSET} <= {p.what for p in argocd}
    sources = [p for p in network.pods if p.what != DNS]
    problems = sorted(f"{source.what} -> {target.what}:{port}" for target in argocd for _, port, protocol in target.ports
                      for source in sources if source != target and network.reaches(source, target, port, protocol)
                      and source.what not in _argocd_admitted(target, port))
    needed = [(TRAEFIK, ARGOCD_SERVER, 8080), *((f"argocd/{c}", "argocd/Deployment/argocd-repo-server", 8081) for c in (
        "Deployment/argocd-server", "StatefulSet/argocd-application-controller", "Deployment/argocd-applicationset-controller",
        "Deployment/argocd-notifications-controller"))]
    problems += [f"{client} misses {server}:{port}" for client, server, port in needed
                 if not network.reaches(network.pod(client), network.pod(server), port)]
    assert not problems, f"{len(problems)} connections:\n" + "\n".join(problems[:60]) + ("\n..." if len(problems) > 60 else "")
