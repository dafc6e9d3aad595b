"""An attacker's review of lateral movement on the control plane's pod network: one platform pod that
parses untrusted input is taken over (Traefik, GitLab's tiers, Harbor's core, registry, job service
and Trivy, ArgoCD's repo-server, OpenUnison, the merge-request bot's CI job); what else may it
connect to? (Prometheus runs on the workload clusters only: tests/test_delivery_attacks.py holds it.) The crown jewels are the
stores and internal APIs that trust their network: ArgoCD's Redis (CVE-2024-31989: a Redis other
pods reach lets one poison the manifests ArgoCD deploys) and repo-server, Harbor's database, Redis,
core and job service, GitLab's database, Redis and Gitaly, OpenUnison's and Vault's listeners.

Each (source, jewel, port) the network lets through must be on ALLOWED, with the reason the service
needs it; each ALLOWED flow must still go through. `Network` evaluates Kubernetes' NetworkPolicy
semantics over the plan and the real Helm renders of the pinned charts.
"""

from __future__ import annotations

import ipaddress

import pytest

from platformctl.render import Render
from tests.test_delivery_attacks import JOB_LABEL_KEY, REPO_SERVER, TRAEFIK, Network, Pod

# Pods that parse what an attacker sends them (prefixes of `Pod.what`: a namespace's every pod, or one).
SOURCES = (TRAEFIK, "gitlab/", "harbor/Deployment/harbor-core", "harbor/Deployment/harbor-registry",
           "harbor/Deployment/harbor-jobservice", "harbor/StatefulSet/harbor-trivy", REPO_SERVER,
           "openunison/Deployment/openunison-orchestra")

ARGOCD_REDIS = ("argocd/Deployment/argocd-redis", "argocd/Deployment/argocd-redis-ha-haproxy", "argocd/StatefulSet/argocd-redis-ha-server")
HARBOR_POSTGRES, HARBOR_REDIS = "harbor/Cluster/harbor-postgres", "harbor/StatefulSet/harbor-redis"
GITLAB_POSTGRES, GITLAB_REDIS = "gitlab/Cluster/gitlab-postgres", "gitlab/StatefulSet/gitlab-redis"
HARBOR_CORE, HARBOR_JOBSERVICE = "harbor/Deployment/harbor-core", "harbor/Deployment/harbor-jobservice"
HARBOR_REGISTRY, HARBOR_TRIVY = "harbor/Deployment/harbor-registry", "harbor/StatefulSet/harbor-trivy"
GITALY, WEBSERVICE, SHELL = "gitlab/StatefulSet/gitlab-gitaly", "gitlab/Deployment/gitlab-webservice-default", "gitlab/Deployment/gitlab-gitlab-shell"
ORCHESTRA, VAULT = "openunison/Deployment/openunison-orchestra", "vault/StatefulSet/vault"

# The jewels: (pod, port). Ports absent from a stack's render (prod's stores are RDS and ElastiCache) drop out.
JEWELS = (
    *((redis, 6379) for redis in ARGOCD_REDIS), ("argocd/StatefulSet/argocd-redis-ha-server", 26379),
    (REPO_SERVER, 8081), ("argocd/Deployment/argocd-server", 8080),
    (HARBOR_POSTGRES, 5432), (HARBOR_REDIS, 6379), (HARBOR_CORE, 8080), (HARBOR_JOBSERVICE, 8080),
    (HARBOR_REGISTRY, 5000), (HARBOR_REGISTRY, 5001), (HARBOR_REGISTRY, 8080), (HARBOR_TRIVY, 8080),
    (GITLAB_POSTGRES, 5432), (GITLAB_REDIS, 6379), (GITALY, 8075), (WEBSERVICE, 8080), (WEBSERVICE, 8181),
    (ORCHESTRA, 8080), (ORCHESTRA, 8443), (VAULT, 8200), (VAULT, 8201), (VAULT, 8202),
    # The admission webhooks (only the API server needs them) and their namespaces' other ports.
    *((pod, port) for pod, ports in {
        "gatekeeper-system/Deployment/gatekeeper-controller-manager": (8443, 8888, 9090),
        "gatekeeper-system/Deployment/gatekeeper-audit": (8888, 9090),
        "cert-manager/Deployment/cert-manager-webhook": (10250, 6080, 9402),
        "cert-manager/Deployment/cert-manager": (9402, 9403), "cert-manager/Deployment/cert-manager-cainjector": (9402,),
        "cnpg-system/Deployment/cnpg-cloudnative-pg": (9443, 8080),
        "metallb-system/Deployment/metallb-controller": (9443, 9120),
        "aws-load-balancer-controller/Deployment/aws-load-balancer-controller": (9443, 8080),
    }.items() for port in ports),
)
# The webhooks' own ports: the API server calls them from the control plane's network (EKS: its ENIs in
# the VPC; kubeconfig: the host's), which no selector names, so any source reaches these, and only these.
WEBHOOKS = (("gatekeeper-system/Deployment/gatekeeper-controller-manager", 8443), ("cert-manager/Deployment/cert-manager-webhook", 10250),
            ("cnpg-system/Deployment/cnpg-cloudnative-pg", 9443), ("metallb-system/Deployment/metallb-controller", 9443),
            ("aws-load-balancer-controller/Deployment/aws-load-balancer-controller", 9443))

# Namespaces held as one service: their tiers talk to each other and to their stores (NEEDED lists the
# flows), so what their own pods reach in them is not on ALLOWED. ArgoCD's pods are held one by one.
ONE_SERVICE = ("harbor", "gitlab")
# But for these jewels, whose clients in their namespace are named: Harbor's database takes core's
# (core-cm.yaml's POSTGRESQL_*) and the job service's (jobLoggers "database": job logs), not the
# registry's or Trivy's (which runs scanners over tenants' images), nor the portal's.
# GitLab's takes the tiers the chart gives a database.yml and gitlab-exporter, not Gitaly or gitlab-shell.
GITLAB_DATABASE_CLIENTS = (WEBSERVICE, "gitlab/Deployment/gitlab-sidekiq", "gitlab/Deployment/gitlab-toolbox", "gitlab/CronJob/gitlab-toolbox-backup",
                           "gitlab/Job/gitlab-migrations-", "gitlab/Deployment/gitlab-gitlab-exporter")
NAMED_CLIENTS = {HARBOR_POSTGRES: (HARBOR_CORE, HARBOR_JOBSERVICE), GITLAB_POSTGRES: GITLAB_DATABASE_CLIENTS}
# (source prefix, jewel, port, why)
ALLOWED = (
    (TRAEFIK, "argocd/Deployment/argocd-server", 8080, "ArgoCD's API and UI: what argocd.<domain> serves anyone through Traefik, behind its own sign-in"),
    (REPO_SERVER, ARGOCD_REDIS[0], 6379, "the repo-server caches rendered manifests in ArgoCD's Redis (argo-cd chart's own redis NetworkPolicy)"),
    (REPO_SERVER, ARGOCD_REDIS[1], 6379, "the same, through redis-ha's HAProxy when replicated"),
    (TRAEFIK, HARBOR_CORE, 8080, "harbor.<domain>'s /api/, /service/, /v2/, /c/ route to core (the platform's IngressRoute, through an ExternalName Service)"),
    (TRAEFIK, WEBSERVICE, 8181, "gitlab.<domain> routes to Workhorse (the platform's IngressRoute)"),
    (TRAEFIK, ORCHESTRA, 8080, "k8sou.<domain> routes to OpenUnison (its chart's NetworkPolicy admits the traefik namespace)"),
    (TRAEFIK, ORCHESTRA, 8443, "the same policy, on every port"),
    (TRAEFIK, VAULT, 8200, "vault.<domain> routes to the active node's API"),
    *(("", webhook, port, "an admission webhook: the API server's calls come from outside the pod network") for webhook, port in WEBHOOKS),
)


# The merge-request bot runs as a CI job of the platform's runners (components/merge-request-bot.gitlab-ci.yml),
# on the control plane: a job pod as the runner labels it, in each platform runner's namespace.
BOT_JOBS = tuple(Pod(f"{ns}/job", ns, {JOB_LABEL_KEY: runner}, ())
                 for ns, runner in (("gitlab-runner", "platform"), ("gitlab-runner-protected", "platform-protected")))


def _sources(network: Network) -> list[Pod]:
    return [p for p in network.pods if p.what.startswith(SOURCES)] + [job for job in BOT_JOBS if job.namespace in network.namespaces]


def _allowed(source: Pod, jewel: str, port: int) -> bool:
    if jewel in NAMED_CLIENTS:
        return source.what.startswith(NAMED_CLIENTS[jewel])
    return (source.namespace in ONE_SERVICE and jewel.startswith(f"{source.namespace}/")) or any(
        source.what.startswith(prefix) and (jewel, port) == (what, number) for prefix, what, number, _ in ALLOWED)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_a_taken_over_platform_pod_reaches_no_crown_jewel_it_does_not_need(charted: dict[str, Render], stack: str) -> None:
    """From each source pod, every jewel's port: what the network lets through must be on ALLOWED."""
    network = Network(charted[stack].plan, "control-plane")
    present = {p.what: p for p in network.pods}
    sources = _sources(network)
    assert {TRAEFIK, REPO_SERVER, HARBOR_TRIVY, ORCHESTRA, *(job.what for job in BOT_JOBS)} <= {s.what for s in sources}
    problems = sorted({f"{s.what} -> {jewel}:{port}" for s in sources for jewel, port in JEWELS
                       if jewel in present and s.what != jewel and network.reaches(s, present[jewel], port) and not _allowed(s, jewel, port)})
    assert not problems, f"{len(problems)} connections no service needs:\n" + "\n".join(problems)


PORTAL, SIDEKIQ = "harbor/Deployment/harbor-portal", "gitlab/Deployment/gitlab-sidekiq-all-in-1-v2"
HAPROXY, REDIS_HA, CNPG = ARGOCD_REDIS[1], ARGOCD_REDIS[2], "cnpg-system/Deployment/cnpg-cloudnative-pg"
ARGOCD_REDIS_CLIENTS = ("argocd/Deployment/argocd-server", REPO_SERVER, "argocd/StatefulSet/argocd-application-controller")
# The flows the services need (client, server, port): each must still connect where both run.
NEEDED = (
    # The public names' routes (the Ingresses and IngressRouteTCP the charts and components declare).
    (TRAEFIK, HARBOR_CORE, 8080), (TRAEFIK, PORTAL, 8080), (TRAEFIK, WEBSERVICE, 8181), (TRAEFIK, SHELL, 2222),
    (TRAEFIK, "argocd/Deployment/argocd-server", 8080), (TRAEFIK, ORCHESTRA, 8080), (TRAEFIK, VAULT, 8200),
    # ArgoCD's Redis: its three clients (REDIS_SERVER), through HAProxy to redis-ha's Redis and Sentinel when replicated.
    *((client, redis, 6379) for client in ARGOCD_REDIS_CLIENTS for redis in ARGOCD_REDIS[:2]),
    (HAPROXY, REDIS_HA, 6379), (HAPROXY, REDIS_HA, 26379), (REDIS_HA, REDIS_HA, 6379), (REDIS_HA, REDIS_HA, 26379),
    # Harbor's tiers (the chart's core, jobservice, registry and trivy configuration: their URLs and stores).
    (HARBOR_CORE, HARBOR_POSTGRES, 5432), (HARBOR_CORE, HARBOR_REDIS, 6379), (HARBOR_CORE, HARBOR_REGISTRY, 5000),
    (HARBOR_CORE, HARBOR_REGISTRY, 8080), (HARBOR_CORE, HARBOR_JOBSERVICE, 8080), (HARBOR_CORE, HARBOR_TRIVY, 8080),
    (HARBOR_JOBSERVICE, HARBOR_CORE, 8080), (HARBOR_JOBSERVICE, HARBOR_POSTGRES, 5432), (HARBOR_JOBSERVICE, HARBOR_REDIS, 6379),
    (HARBOR_JOBSERVICE, HARBOR_TRIVY, 8080), (HARBOR_REGISTRY, HARBOR_REDIS, 6379), (HARBOR_CORE, PORTAL, 8080),
    (HARBOR_TRIVY, HARBOR_REDIS, 6379), (HARBOR_TRIVY, HARBOR_CORE, 8080), (HARBOR_POSTGRES, HARBOR_POSTGRES, 5432),
    # GitLab's tiers (tests/test_gitlab_attacks.py test_gitlab_still_reaches_its_own_pods_and_stores).
    *((tier, store, port) for tier in (WEBSERVICE, SIDEKIQ) for store, port in ((GITLAB_POSTGRES, 5432), (GITLAB_REDIS, 6379), (GITALY, 8075))),
    (SHELL, WEBSERVICE, 8181), (SHELL, GITALY, 8075), (GITALY, WEBSERVICE, 8181), (GITLAB_POSTGRES, GITLAB_POSTGRES, 5432),
    *((client, GITLAB_POSTGRES, 5432) for client in ("gitlab/Deployment/gitlab-toolbox", "gitlab/CronJob/gitlab-toolbox-backup",
                                                     "gitlab/Deployment/gitlab-gitlab-exporter")),
    # CloudNativePG's operator: each instance's manager (8000; never PostgreSQL: data_stores.operator_admit).
    *((CNPG, cluster, 8000) for cluster in (HARBOR_POSTGRES, GITLAB_POSTGRES)),
)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_flow_the_services_need_still_goes_through(charted: dict[str, Render], stack: str) -> None:
    """The policies must not break the services: each NEEDED flow between pods the stack runs connects."""
    network = Network(charted[stack].plan, "control-plane")
    present = {p.what: p for p in network.pods}
    checked = [(client, server, port) for client, server, port in NEEDED if client in present and server in present]
    assert len(checked) >= 25, checked
    broken = [f"{client} -> {server}:{port}" for client, server, port in checked if not network.reaches(present[client], present[server], port)]
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_api_server_still_reaches_every_webhook(charted: dict[str, Render], stack: str) -> None:
    """From an address outside the pod network (a kind node's, an EKS control-plane ENI's in the VPC)
    each webhook's port is open; its namespace's metrics and health ports are not."""
    network = Network(charted[stack].plan, "control-plane")
    present = {p.what: p for p in network.pods}
    webhooks = [(present[what], port) for what, port in WEBHOOKS if what in present]
    assert len(webhooks) >= 3
    for address in map(ipaddress.ip_address, ("172.18.0.2", "10.40.1.10")):
        assert all(network.takes(pod, address, port) for pod, port in webhooks), address
        assert not any(network.takes(pod, address, other) for pod, _ in webhooks for other in (8080, 8888, 9090, 9402, 9120)), address
