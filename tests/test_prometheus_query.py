"""Prometheus behind prom-label-proxy (components/prometheus_query.py): the label the scrape derives,
the proxies that enforce it, and who reaches which, on both stacks' workload clusters."""

from __future__ import annotations

from typing import Any

import pytest
import re2  # Google's RE2: Go's regexp (Prometheus' relabeling) has its syntax and leftmost-first matching
import yaml

from components import prometheus, prometheus_query
from components.tenant_rollout import traefik_service
from components.versions import PROM_LABEL_PROXY_IMAGE
from platformctl.render import Render
from tests.test_delivery_attacks import PROMETHEUS, Network, Pod

RELEASE = "kubernetes:helm.sh/v3:Release"
SHARED = "monitoring/Deployment/prometheus-query"
CONTROLLER = "argo-rollouts/Deployment/argo-rollouts"
VIRTUAL_CONTROLLER_LABELS = {"vcluster.loft.sh/namespace": "argo-rollouts"}


def _scrape_job(plan: dict[str, Any], cluster: str) -> dict[str, Any]:
    [config] = [o["data"]["prometheus.yml"] for r in plan["resources"] if r["type"] == RELEASE and r.get("cluster") == cluster
                and r["inputs"]["chart"] == "prometheus" and r["inputs"]["name"] == prometheus.RELEASE for o in r["rendered"] if o["kind"] == "ConfigMap" and "prometheus.yml" in o.get("data", {})]
    [job] = [j for j in yaml.safe_load(config)["scrape_configs"] if j["job_name"] == prometheus.SCRAPE_JOB]
    return job


def relabel(rules: list[dict[str, Any]], labels: dict[str, str]) -> dict[str, str]:
    """Prometheus' `replace` action (model/relabel, v3): the regex anchored as `^(?s:<regex>)$`, the
    source labels joined by `;`; no match leaves the labels as they are."""
    labels = dict(labels)
    for rule in rules:
        assert rule.get("action", "replace") == "replace" and rule["replacement"] == "$1", rule
        match = re2.compile(f"^(?s:{rule['regex']})$").match(";".join(labels.get(s, "") for s in rule["source_labels"]))
        if match is not None and match.group(1):
            labels[rule["target_label"]] = match.group(1)
    return labels


def _deployment_args(plan: dict[str, Any], cluster: str, name: str) -> list[str]:
    [deployment] = [r["inputs"] for r in plan["resources"] if r.get("cluster") == cluster
                    and r["type"] == "kubernetes:apps/v1:Deployment" and r["inputs"]["metadata"]["name"] == name]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == PROM_LABEL_PROXY_IMAGE.ref and "@sha256:" in container["image"]
    return container["args"]


@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_traefiks_series_carry_the_namespace_of_their_service_with_re2(charted: dict[str, Render], environment: str) -> None:
    """Tenants whose names are prefixes of each other (`pay`, `pay-dev-x`, `pay-prod-x`) keep their
    own series; so do a virtual cluster's Services (the host copies `app-x-<tenant>-x-<tenant>-<env>`),
    whatever the tenant's name; what names no tenant Service (Traefik's own, the CRD provider's) has none."""
    rules = _scrape_job(charted["dev"].plan, environment)["metric_relabel_configs"]
    label = prometheus.SERVICE_NAMESPACE_LABEL
    owners = {
        traefik_service("pay", environment): f"pay-{environment}",
        traefik_service("pay-dev-x", environment): f"pay-dev-x-{environment}",
        traefik_service("pay-prod-x", environment): f"pay-prod-x-{environment}",
        traefik_service("catalog", environment, virtual=True): f"catalog-{environment}",
        traefik_service("a" * 29, environment, virtual=True): f"{'a' * 29}-{environment}",  # a hashed host name
        f"pay-{environment}-web-http@kubernetes": f"pay-{environment}",  # a port by name
    }
    for service, namespace in owners.items():
        assert relabel(rules, {"service": service, "namespace": "apps-ingress"})[label] == namespace, service
    for service in ("prometheus@internal", f"pay-{environment}-app-80@kubernetescrd", f"pay-{environment}@kubernetes", ""):
        assert label not in relabel(rules, {"service": service}), service
    other = "prod" if environment == "dev" else "dev"
    assert label not in relabel(rules, {"service": traefik_service("pay", other)})  # not this cluster's namespaces
    # The regex uses classes of [a-z0-9-], literals, groups and greedy `+` only: nothing where
    # RE2 and Go's regexp differ.
    [rule] = rules
    assert set(rule["regex"]) <= set("()[]+-@az09") | set("kubernetes") | set(environment)


def test_the_proxies_enforce_the_label_the_scrape_derives_and_the_header_gatekeeper_pins(renders: dict[str, Render]) -> None:
    """The cluster's proxy takes the value from the header PlatformTenantAnalysis pins; a virtual
    cluster's proxy has its host namespace fixed. Neither passes the label APIs or any other path."""
    plan = renders["dev"].plan
    for cluster in ("dev", "prod"):
        [target] = {r["target_label"] for r in _scrape_job(plan, cluster)["metric_relabel_configs"]}
        upstream = f"-upstream={prometheus.URL}"
        [parameters] = [r["inputs"]["spec"]["parameters"] for r in plan["resources"]
                        if r["inputs"].get("kind") == "PlatformTenantAnalysis" and r["inputs"]["metadata"]["name"] == f"payments-{cluster}-analysis"]
        assert parameters == {"prometheusAddresses": [prometheus.QUERY_URL], "namespaceHeader": "X-Platform-Namespace"}
        shared = _deployment_args(plan, cluster, prometheus_query.NAME)
        assert sorted(shared) == sorted(["-insecure-listen-address=:8080", upstream, f"-label={target}",
                                         f"-header-name={parameters['namespaceHeader']}"])
        virtual = _deployment_args(plan, cluster, f"prometheus-query-catalog-{cluster}")
        assert sorted(virtual) == sorted(["-insecure-listen-address=:8080", upstream, f"-label={target}", f"-label-value=catalog-{cluster}"])


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_only_the_proxies_reach_prometheus_and_each_controller_its_own_proxy(renders: dict[str, Render], stack: str) -> None:
    """The host's Rollouts controller reaches the cluster's proxy; a virtual cluster's controller (its
    pod as synced to the host) reaches its own proxy only: not the cluster's, whose header it could
    choose, nor another virtual cluster's, nor Prometheus. Prometheus takes the proxies only."""
    plan = renders[stack].plan
    for cluster in ("dev", "prod"):
        network = Network(plan, cluster)
        proxies = {p.what for p in network.pods if p.what.startswith("monitoring/Deployment/prometheus-query")}
        host = network.pod(CONTROLLER)
        assert network.reaches(host, network.pod(SHARED), 8080) and not network.reaches(host, network.pod(PROMETHEUS), 9090)
        virtual = [p.what.removeprefix(f"{SHARED}-") for p in network.pods if p.what.startswith(f"{SHARED}-")]
        assert virtual == [f"catalog-{cluster}"]
        intruder = Pod(f"{virtual[0]}/intruder", virtual[0], {"vcluster.loft.sh/managed-by": virtual[0], "vcluster.loft.sh/namespace": "catalog"}, ())
        for namespace in (*virtual, "payments-" + cluster):
            controller = Pod(f"{namespace}/argo-rollouts", namespace, {**VIRTUAL_CONTROLLER_LABELS, "vcluster.loft.sh/managed-by": namespace}, ())
            reached = {p.what for p in network.pods if network.reaches(controller, p, 8080) and p.what in proxies}
            assert reached == ({f"{SHARED}-{namespace}"} if namespace in virtual else set()), (namespace, reached)
            assert not network.reaches(controller, network.pod(PROMETHEUS), 9090)
        assert not any(network.reaches(intruder, network.pod(p), 8080) for p in proxies)  # the tenant's own pods
        server = network.pod(PROMETHEUS)
        assert {p.what for p in network.pods if p != server and network.reaches(p, server, 9090)} == proxies
        # Nothing else on the cluster (Traefik, which tenants' Ingresses steer, included) reaches a proxy.
        assert {(p.what, q) for p in network.pods for q in sorted(proxies) if p.what != q and network.reaches(p, network.pod(q), 8080)} == {
            (CONTROLLER, SHARED)}


def test_prometheus_is_its_release_and_its_proxy_on_each_workload_cluster(renders: dict[str, Render]) -> None:
    """The slice's add-on (declared with its cluster's environment) is `<cluster>-prometheus`, the chart
    released in `monitoring` and the cluster's proxy as its children."""
    plan = renders["prod"].plan
    components = {r["name"]: r["urn"] for r in plan["resources"] if r["type"] == prometheus.Prometheus.type_token}
    assert sorted(components) == ["dev-prometheus", "prod-prometheus"]
    for urn in components.values():
        children = [r for r in plan["resources"] if r["parent"] == urn]
        assert [(r["inputs"]["chart"], r["inputs"]["namespace"]) for r in children if r["type"] == RELEASE] == [("prometheus", "monitoring")]
        assert len([r for r in children if r["type"] == "platform:prometheus_query:QueryProxy"]) == 1
