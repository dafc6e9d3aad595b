"""Alerts that reach a person, checked against the real tools: Prometheus' promtool on the rules the Helm engine
renders into each cluster's platform Prometheus, Alertmanager's amtool on its configuration with the secret's value in.

The first test is the attacker's view of the gap: a backup that fails, a sealed Vault, a node NotReady, a certificate
that is not renewed, and nobody learns of it. Each rule must fire on synthetic series of its failure and stay silent
on healthy ones (`promtool test rules`), and every rule rendered must have such a case.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from platformctl.render import Render
from tests.test_config import _problems, _write, setting

PROMTOOL, AMTOOL = shutil.which("promtool"), shutil.which("amtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian: prometheus) is not installed: .ci/install")
needs_amtool = pytest.mark.skipif(AMTOOL is None, reason="amtool (Debian: prometheus-alertmanager) is not installed: .ci/install")
CLUSTERS = ("control-plane", "dev", "prod")
WATCHDOG = "Watchdog"
WORKLOAD = ("dev", "prod")
BASES = {stack: yaml.safe_load((Path(__file__).resolve().parent.parent / f"Pulumi.{stack}.yaml").read_text()) for stack in ("dev", "prod")}


def rule_files(renders: dict[str, Render]) -> dict[tuple[str, str], str]:
    """(stack, cluster) -> the alerting rules file the Helm engine rendered into a Prometheus of that cluster."""
    found = {}
    for stack, result in renders.items():
        for resource in result.plan["resources"]:
            for obj in resource.get("rendered") or []:
                text = obj["kind"] == "ConfigMap" and (obj.get("data") or {}).get("alerting_rules.yml")
                if text and yaml.safe_load(text).get("groups"):
                    found[(stack, resource["cluster"])] = text
    return found


def _labels(series: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', series))


def _annotations(rule: dict[str, Any], labels: dict[str, str]) -> dict[str, str]:
    """The rule's annotations as Prometheus expands them for `labels` (they use `{{ $labels.<name> }}` alone)."""
    return {k: re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), v) for k, v in rule["annotations"].items()}


def _series(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"series": series, "values": v} for series, v in values.items()]


def _case(failing: dict[str, str], healthy: dict[str, str], at: str) -> tuple[list[dict[str, str]], list[dict[str, str]], str]:
    """(failure series, healthy series, when to evaluate), one sample a minute: series -> promtool's values."""
    return _series(failing), _series(healthy), at


def cases(max_age: int | None) -> dict[str, tuple[list[dict[str, str]], list[dict[str, str]], str]]:
    """Alert -> (failure series, healthy series, when to evaluate): promtool's input_series, one sample a minute
    (Prometheus looks back 5 minutes for a sample)."""
    late = f"{max_age // 60 + 45}m" if max_age else "0m"
    samples = (max_age or 0) // 60 + 60
    node = 'kube_node_status_condition{condition="Ready",status="true",node="node-1"}'
    gatekeeper = 'kube_deployment_status_replicas_available{namespace="gatekeeper-system",deployment="gatekeeper-controller-manager"}'
    vault = 'kube_pod_labels{namespace="vault",pod="vault-1",label_vault_sealed="%s"}'
    up = 'up{job="velero",instance="10.0.0.7:8085"}'
    notifications = 'alertmanager_notifications_failed_total{integration="webhook"}'
    ready = 'certmanager_certificate_ready_status{name="wildcard",namespace="apps-ingress",condition="%s"}'
    expiry = 'certmanager_certificate_expiration_timestamp_seconds{name="vault-tls",namespace="vault"}'
    last_success = 'velero_backup_last_successful_timestamp{schedule="catalog-prod"}'
    attempts = 'velero_backup_attempt_total{schedule="catalog-prod"}'
    failures = 'velero_backup_%sfailure_total{schedule="catalog-prod"}'
    archiver = 'cnpg_pg_stat_archiver_last_%s_time{kubernetes_namespace="harbor",pod="harbor-postgres-1"}'
    collector = 'cnpg_collector_up{cluster="gitlab-postgres",kubernetes_namespace="gitlab",pod="gitlab-postgres-2"}'
    lag = 'cnpg_pg_replication_lag{kubernetes_namespace="gitlab",pod="gitlab-postgres-2"}'
    return {
        "Watchdog": ([], [], "2m"),
        "NodeNotReady": _case({node: "0x20"}, {node: "1x20"}, "15m"),
        "GatekeeperWebhookDown": _case({gatekeeper: "0x10"}, {gatekeeper: "3x10"}, "10m"),
        "VaultSealed": _case({vault % "true": "1x10"}, {vault % "false": "1x10"}, "10m"),
        "ScrapeTargetDown": _case({up: "0x20"}, {up: "1x20"}, "20m"),
        "AlertmanagerNotificationsFailing": _case({notifications: "0+1x40"}, {notifications: "0x40"}, "35m"),
        "CertificateNotReady": _case({ready % "False": "1x40"}, {ready % "False": "0x40", ready % "True": "1x40"}, "35m"),
        # Evaluated at 90 minutes: one expiring 3 days after the epoch, one 30 days after.
        "CertificateExpiringSoon": _case({expiry: f"{3 * 86400}x100"}, {expiry: f"{30 * 86400}x100"}, "90m"),
        # A Schedule whose last success is the epoch, against one whose timestamp keeps up with the clock.
        "VeleroBackupStale": _case({last_success: f"0x{samples}"}, {last_success: f"0+60x{samples}"}, late),
        "VeleroBackupNeverSucceeded": _case({attempts: f"0+1x{samples}"},
                                            {attempts: f"0+1x{samples}", last_success: f"0+60x{samples}"}, late),
        "VeleroBackupFailed": _case({failures % "": "0 0 0 1x20", failures % "partial_": "0x23"},
                                    {failures % "": "0x23", failures % "partial_": "0x23"}, "10m"),
        # A primary whose last failed archive is newer than its last archived segment, against the other way round.
        "PostgresWALArchivingFailing": _case({archiver % "failed": "2000x30", archiver % "archived": "1000x30"},
                                             {archiver % "failed": "1000x30", archiver % "archived": "2000x30"}, "20m"),
        "PostgresInstanceDown": _case({collector: "0x10"}, {collector: "1x10"}, "10m"),
        "PostgresReplicaLagging": _case({lag: "900x20"}, {lag: "2x20"}, "15m"),
    }


def _unit_tests(groups: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], set[str]]:
    """promtool's tests for every rule of `groups` (one failing, one healthy each), and the rules without a case."""
    rules = {r["alert"]: r for g in groups for r in g["rules"]}
    max_age = next((int(m.group(1)) for r in rules.values() if (m := re.search(r"> (\d+)$", r["expr"])) and r["alert"] == "VeleroBackupStale"), None)
    known = cases(max_age)
    tests = []
    for alert in sorted(rules.keys() & known.keys()):
        failing, healthy, at = known[alert]
        rule = rules[alert]
        series_labels = [_labels(s["series"]) for s in failing[:1]]
        labels = {**(series_labels[0] if series_labels else {}), **rule["labels"]}
        labels = {k: v for k, v in labels.items() if k != "__name__"}
        if alert == "VeleroBackupFailed":
            labels = {"schedule": "catalog-prod", **rule["labels"]}
        tests.append({"interval": "1m", "input_series": failing, "alert_rule_test": [
            {"eval_time": at, "alertname": alert, "exp_alerts": [{"exp_labels": labels, "exp_annotations": _annotations(rule, labels)}]}]})
        if alert != WATCHDOG:  # it always fires: no healthy state
            tests.append({"interval": "1m", "input_series": healthy, "alert_rule_test": [
                {"eval_time": at, "alertname": alert, "exp_alerts": []}]})
    return tests, rules.keys() - known.keys()


def test_every_cluster_has_rules_a_failing_backup_is_not_silent(renders: dict[str, Render]) -> None:
    files = rule_files(renders)
    missing = [f"{stack} {cluster}" for stack in renders for cluster in CLUSTERS if (stack, cluster) not in files]
    assert not missing, f"no alerting rules rendered on {', '.join(missing)}: a failing backup, a sealed Vault or a node NotReady is silent"
    for (stack, cluster), text in files.items():
        groups = {g["name"]: g for g in yaml.safe_load(text)["groups"]}
        assert ("backups" in groups) == (cluster in WORKLOAD), (stack, cluster)  # Velero runs on the workload clusters
        for rule in (r for g in groups.values() for r in g["rules"]):
            assert rule["for"] and rule["labels"]["severity"] and rule["annotations"]["summary"] and rule["annotations"]["runbook"], rule


@needs_promtool
def test_promtool_accepts_the_rendered_rules_and_each_fires_on_its_failure_and_only_then(renders: dict[str, Render], tmp_path: Path) -> None:
    files = rule_files(renders)
    assert files, "no alerting rules rendered: a failing backup is silent"
    for (stack, cluster), text in files.items():
        rules = tmp_path / f"{stack}-{cluster}-rules.yml"
        rules.write_text(text)
        checked = subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        tests, uncovered = _unit_tests(yaml.safe_load(text)["groups"])
        assert not uncovered, f"rules without a failing and a healthy case here: {sorted(uncovered)}"
        unit = tmp_path / f"{stack}-{cluster}-test.yml"
        unit.write_text(yaml.safe_dump({"rule_files": [rules.name], "evaluation_interval": "1m", "tests": tests}))
        ran = subprocess.run([PROMTOOL, "test", "rules", str(unit)], capture_output=True, text=True, cwd=tmp_path)
        assert ran.returncode == 0, f"{stack} {cluster}:\n{ran.stdout}{ran.stderr}"


# --- Alertmanager: where alerts go ----------------------------------------------------------------------------------

RECEIVER = "https://hooks.example.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX"
HEARTBEAT = "https://hc-ping.example.com/0f6f1ab6-5d0c-4c3b-9a55-1c2c5bbdc4d1"


def _alertmanager_run(receiver: str | None, kind: str, heartbeat: str | None) -> tuple[dict[str, Any], str]:
    """The add-on on one cluster under the mock engine: (the plan's config Secret, its configuration as revealed)."""
    from components import alerting
    from components.common import AlertRoutes
    from components.service import ServiceSettings
    from tests.mock_program import control_plane_cluster, run_program

    def program() -> None:
        routes = AlertRoutes(receiver=pulumi.Output.secret(receiver) if receiver else None, receiver_kind=kind,
                             heartbeat=pulumi.Output.secret(heartbeat) if heartbeat else None, backup_max_age_seconds=3600)
        alerting.Alerting("control-plane-alerting", control_plane_cluster(), alerting.SLICE,
                          alerting.AlertingArgs(settings=ServiceSettings(), cluster_name="control-plane", routes=routes))

    run = run_program(program)
    secret = run.one("kubernetes:core/v1:Secret", "control-plane-alerting-config")
    return secret, run.raw[secret["urn"]]["stringData"]["alertmanager.yml"]


def _amtool(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AMTOOL, *args], capture_output=True, text=True, cwd=config.parent)


@needs_amtool
@pytest.mark.parametrize("kind", ["webhook", "slack"])
def test_amtool_routes_critical_alerts_to_the_receiver_and_the_watchdog_to_the_heartbeat(kind: str, tmp_path: Path) -> None:
    secret, text = _alertmanager_run(RECEIVER, kind, HEARTBEAT)
    assert secret["inputs"]["stringData"] == {"alertmanager.yml": "[secret]"}  # never plain in the plan
    assert RECEIVER not in str(secret) and HEARTBEAT not in str(secret)
    config = tmp_path / "alertmanager.yml"
    config.write_text(text)
    checked = _amtool(config, "check-config", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    routed = {labels: _amtool(config, "config", "routes", "test", f"--config.file={config}", *labels.split())
              for labels in ("alertname=VeleroBackupStale severity=critical cluster=dev", "alertname=Watchdog severity=none")}
    assert {k: v.stdout.strip() for k, v in routed.items()} == {
        "alertname=VeleroBackupStale severity=critical cluster=dev": "platform", "alertname=Watchdog severity=none": "heartbeat"}
    loaded = yaml.safe_load(text)
    receivers = {r["name"]: r for r in loaded["receivers"]}
    url = receivers["platform"]["slack_configs"][0]["api_url"] if kind == "slack" else receivers["platform"]["webhook_configs"][0]["url"]
    assert url == RECEIVER and receivers["heartbeat"]["webhook_configs"][0]["url"] == HEARTBEAT


@needs_amtool
def test_without_a_receiver_alerts_still_route_and_reach_no_integration(tmp_path: Path) -> None:
    _, text = _alertmanager_run(None, "webhook", None)
    config = tmp_path / "alertmanager.yml"
    config.write_text(text)
    checked = _amtool(config, "check-config", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert [set(r) for r in yaml.safe_load(text)["receivers"]] == [{"name"}, {"name"}]


def test_the_stacks_config_secret_is_secret_in_the_plan_and_the_chart_has_no_configmap(renders: dict[str, Render]) -> None:
    for stack, result in renders.items():
        secrets = [r for r in result.plan["resources"] if r["type"] == "kubernetes:core/v1:Secret" and r["name"].endswith("-alerting-config")]
        assert sorted(r["cluster"] for r in secrets) == sorted(CLUSTERS), stack
        assert all(r["inputs"]["stringData"] == {"alertmanager.yml": "[secret]"} for r in secrets)
        charted = [o for r in result.plan["resources"] if r["name"].endswith("-alertmanager") for o in r.get("rendered") or []]
        assert not [o for o in charted if o["kind"] == "ConfigMap"], "the chart's ConfigMap would hold the receiver's URL in plain text"


def test_an_unset_receiver_warns_that_alerts_reach_nobody(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from platformctl.render import read_stack_file
    from stacks.config import load_platform_config
    from stacks.platform import warn_unrouted_alerts

    warned: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *args, **kwargs: warned.append(message))
    for stack, base in BASES.items():
        for without in (False, True):
            doc = copy.deepcopy(base)
            if without:
                del doc["config"]["platform:alerting"]
            path = tmp_path / f"Pulumi.{stack}.yaml"
            path.write_text(yaml.safe_dump(doc))
            raw, secret_keys = read_stack_file(path)
            warned.clear()
            warn_unrouted_alerts(load_platform_config(raw, stack=stack, source=str(path), secret_keys=secret_keys))
            assert bool(warned) == without and all("platform:alerting.receiver is unset" in w and "reach nobody" in w for w in warned)


@pytest.mark.parametrize(("value", "words"), [
    (RECEIVER, "holds a secret in plain text"),
    ("http://hooks.example.com/services/T000", "not an https:// URL on port 443"),
    ("https://hooks.example.com:8443/services/T000", "not an https:// URL on port 443"),
    ({"secure": "v1:x"}, None),
])
def test_a_receiver_url_in_plain_text_is_refused_naming_the_key(tmp_path: Path, value: Any, words: str | None) -> None:
    path = _write(tmp_path, BASES["dev"], setting("platform:alerting", value={"receiver": {"url": value}}))
    if words is None:
        from platformctl.render import read_stack_file
        from stacks.config import load_platform_config

        raw, secret_keys = read_stack_file(path)
        load_platform_config(raw, stack="dev", source=str(path), secret_keys=secret_keys)
        return
    problems = _problems(path)
    assert any("platform:alerting.receiver.url: " in p and words in p for p in problems), problems


# --- the scrapes' NetworkPolicies, both ways -------------------------------------------------------------------------

PROMETHEUS, ALERTMANAGER = "alerting/Deployment/alerting-prometheus-server", "alerting/StatefulSet/alertmanager"
KSM, VELERO, CERT_MANAGER = "alerting/Deployment/kube-state-metrics", "velero/Deployment/velero", "cert-manager/Deployment/cert-manager"
PUBLIC = "203.0.113.7"  # a receiver's address on the internet


def test_the_platform_prometheus_reaches_each_metrics_port_it_scrapes_and_nothing_else_does(charted: dict[str, Render]) -> None:
    """Each scrape goes through (Prometheus to kube-state-metrics, Alertmanager, Velero's 8085 and cert-manager's
    9402), Alertmanager reaches HTTPS out; nothing else there does: not a tenant's pod or Traefik to those metrics
    ports or into `alerting`, nor Prometheus or Alertmanager anywhere else (another port, the metadata, HTTP out)."""
    import ipaddress

    from policy.labels import TENANT_NAMESPACE_LABEL
    from tests.test_delivery_attacks import IMDS, Network, Pod

    checked = 0
    for stack, result in charted.items():
        for cluster in CLUSTERS:
            network = Network(result.plan, cluster)
            present = {p.what: p for p in network.pods}
            databases = [(p.what, 9187) for p in network.pods if p.labels.get("cnpg.io/podRole") == "instance"]
            assert bool(databases) == (stack == "dev" and cluster == "control-plane"), (stack, cluster, databases)  # prod: RDS
            scrapes = [(KSM, 8080), (ALERTMANAGER, 9093), (CERT_MANAGER, 9402), *([(VELERO, 8085)] if cluster in WORKLOAD else []), *databases]
            assert all(target in present for target, _ in scrapes), (stack, cluster, sorted(present))
            broken = [f"{target}:{port}" for target, port in scrapes if not network.reaches(present[PROMETHEUS], present[target], port)]
            internet = ipaddress.ip_address(PUBLIC)
            broken += [] if network.reaches(present[ALERTMANAGER], internet, 443) else ["alertmanager -> the internet:443"]
            assert not broken, f"{stack}/{cluster}: the scrapes and notifications need {broken}"
            # What the alerting pods must not reach beyond that.
            extra = [f"{source} -> {address}:{port}" for source in (PROMETHEUS, ALERTMANAGER)
                     for address, port in ((internet, 80), (IMDS, 80), *(([internet, 443],) if source == PROMETHEUS else ()))
                     if network.reaches(present[source], address, port)]
            extra += [f"{PROMETHEUS} -> {target}:{n}" for target in (CERT_MANAGER, VELERO, *(d for d, _ in databases)) if target in present
                      for _, n, _ in present[target].ports if n not in (9402, 8085, 9187) and network.reaches(present[PROMETHEUS], present[target], n)]
            # A tenant's pod (any labels, even the Prometheus server's) and every other namespace's pods.
            tenant = next(ns for ns, labels in network.namespaces.items() if labels.get(TENANT_NAMESPACE_LABEL) == "true") if cluster in WORKLOAD else None
            strangers = [p for p in network.pods if p.namespace != "alerting"]
            if tenant:
                strangers.append(Pod(f"{tenant}/attacker", tenant, {"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/component": "server"}, ()))
            for source in strangers:
                for target, port in [*scrapes, (PROMETHEUS, 9090)]:
                    checked += 1
                    if source.what != target and network.reaches(source, present[target], port):
                        extra.append(f"{source.what} -> {target}:{port}")
            assert not extra, f"{stack}/{cluster}: connections no alert needs:\n" + "\n".join(sorted(set(extra)))
    assert checked > 500, checked


def test_the_postgres_scrapes_cover_every_namespace_a_cloudnativepg_cluster_is_in(renders: dict[str, Render]) -> None:
    from components import alerting, dragonfly

    rendered = {r["inputs"]["metadata"]["namespace"] for result in renders.values() for r in result.plan["resources"]
                if r["type"] == "kubernetes:postgresql.cnpg.io/v1:Cluster"}
    assert rendered and rendered <= set(alerting.POSTGRES_NAMESPACES), rendered
    assert dragonfly.NAMESPACE in alerting.POSTGRES_NAMESPACES  # its stores on kubeconfig workload clusters (off in these stacks)


def test_the_alerting_accounts_read_only_what_their_scrapes_need(renders: dict[str, Render]) -> None:
    """Who takes over the platform Prometheus (it parses every scraped exporter's answer) holds its token: pods to list
    and watch, nothing else (the chart's ClusterRole read every ConfigMap, Service, Endpoint, Ingress and node);
    kube-state-metrics its three collectors' resources; Alertmanager nothing."""
    allowed = {"alerting-prometheus-server": {("", "pods", "list"), ("", "pods", "watch")},
               "kube-state-metrics": {("apps", "deployments", v) for v in ("list", "watch")} | {("", r, v) for r in ("nodes", "pods") for v in ("list", "watch")},
               "alertmanager": set()}
    for stack, result in renders.items():
        objects = [r["inputs"] for r in result.plan["resources"] if r["type"].startswith("kubernetes:rbac")]
        objects += [o for r in result.plan["resources"] for o in r.get("rendered") or [] if o["kind"].endswith(("Role", "RoleBinding"))]
        roles = {(o["kind"], o["metadata"]["name"]): o for o in objects if o["kind"] in ("Role", "ClusterRole")}
        held: dict[str, set[tuple[str, str, str]]] = {account: set() for account in allowed}
        for binding in (o for o in objects if o["kind"].endswith("RoleBinding")):
            accounts = [s["name"] for s in binding.get("subjects") or [] if s.get("namespace") == "alerting" and s["name"] in allowed]
            role = roles.get((binding["roleRef"]["kind"], binding["roleRef"]["name"]))
            for account in accounts:
                assert role is not None, (stack, binding["metadata"]["name"])
                held[account] |= {(g, r, v) for rule in role["rules"] for g in rule.get("apiGroups", ["(URL)"])
                                  for r in rule.get("resources", rule.get("nonResourceURLs", [])) for v in rule["verbs"]}
        assert held == allowed, (stack, {a: sorted(held[a] - allowed[a]) for a in allowed})
