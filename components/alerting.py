"""Alerts that reach a person: a platform Prometheus, its rules and an Alertmanager on every cluster.

A second Prometheus, not the canary one (components/prometheus.py): that one is the tenants'. Every
Rollouts controller, a virtual cluster's too, reaches it through a query proxy, so a tenant's heavy
query slows it and its rules and alerts APIs answer (filtered) through the proxy; and it holds the
ingress controller's series alone. Alerting must not stop when a tenant's analysis loads Prometheus,
and the platform's series (nodes, Vault's pods, the backups) are no tenant's to read, filtered or
not: so this one runs in a namespace of its own, `alerting`, which takes connections from its own
pods only (no proxy, no tenant, no Ingress: operators reach it with `kubectl port-forward`), and the
canary Prometheus stays as lean as it was. Per cluster, none per tenant: the rules and scrapes select
by namespace and label, so adding a tenant changes nothing here.

On each cluster: the prometheus-community chart's server (release `alerting-prometheus`: every chart
job and subchart off), its Alertmanager (chart `alertmanager`, its configuration a Secret built from
Pulumi secrets, never the chart's ConfigMap) and kube-state-metrics (chart `kube-state-metrics`,
its collectors cut to what the rules read). The scrapes: kube-state-metrics, Alertmanager, Velero's
server (`velero` namespace, port 8085), cert-manager's controller (`cert-manager`, 9402) and CloudNativePG's
instances (9187); those namespaces admit this Prometheus on that port alone (`scrape_admit`: components/velero.py,
tls.py, data_stores.py).

Left out, and why: Vault's own metrics (`vault_core_unsealed` needs its telemetry stanza and an
unauthenticated /v1/sys/metrics, which Traefik would publish on vault.<domain>): the seal is read from
the `vault-sealed` label Vault's Kubernetes service registration keeps on each pod instead. The
kubelet volume stats (README: Alerts, what is not watched yet).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import prometheus_chart
from components.cluster import ClusterHandle
from components.common import AlertRoutes, checksum
from components.egress import HTTPS, Admit, Reach, internet, pods, pods_in, tcp
from components.helm import grant, metadata, rbac_rule, release, sized
from components.inventory import external_secret, projected_token
from components.service import AddOnArgs, ChartAddOn, ClusterParts, PlatformNamespace, ServiceSettings, ServiceSlice
from components.yaml_text import dump as yaml_dump

NAMESPACE = "alerting"
PROMETHEUS_RELEASE = "alerting-prometheus"  # not `prometheus`: its cluster-wide RBAC would clash with the canary one's
PROMETHEUS_LABELS = {"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/component": "server"}  # the chart's
PROMETHEUS_ACCOUNT = f"{PROMETHEUS_RELEASE}-server"  # the chart's server account
ALERTMANAGER_LABELS = {"app.kubernetes.io/name": "alertmanager"}
ALERTMANAGER_PORT = 9093
KSM_LABELS = {"app.kubernetes.io/name": "kube-state-metrics"}
KSM_PORT = 8080
CONFIG_SECRET = "alertmanager-config"
CONFIG_FILE = "alertmanager.yml"
CONFIG_CHECKSUM = "platform.io/config-checksum"  # a new configuration restarts the pod (no reloader: see values)
RETENTION = "3d"  # rules look back an hour at most; the history is for a person reading an alert
# kube-state-metrics: only what the rules read (kubernetes/kube-state-metrics internal/store), in the namespaces they
# watch; nodes are cluster-scoped and read everywhere. No `secrets` collector (the chart's default lists every Secret).
KSM_COLLECTORS = ("deployments", "nodes", "pods")
KSM_NAMESPACES = ("gatekeeper-system", "vault")
VAULT_SEALED_LABEL = "vault-sealed"
WATCHDOG = "Watchdog"
RECEIVER, HEARTBEAT = "platform", "heartbeat"


@dataclass(frozen=True)
class Scraped:
    """A metrics port of another namespace's pods that this Prometheus scrapes (and that namespace admits)."""

    job: str
    namespace: str
    pods: dict[str, str]
    port_name: str
    port: int

    def job_config(self) -> dict[str, Any]:
        keep = [{"source_labels": [f"__meta_kubernetes_pod_label_{_label_name(k)}"], "action": "keep", "regex": v}
                for k, v in self.pods.items()]
        return {
            "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [self.namespace]}}],
            "relabel_configs": [
                *keep,
                {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "action": "keep", "regex": self.port_name},
                {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                # Not `namespace`: cert-manager's series carry their Certificate's.
                {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "kubernetes_namespace"},
            ],
        }


def _label_name(label: str) -> str:
    """A pod label as Prometheus' service discovery names it (every character outside [a-zA-Z0-9_] an underscore)."""
    return "".join(c if c.isalnum() or c == "_" else "_" for c in label)


# Velero's server: its metrics on :8085 (vmware-tanzu/velero pkg/cmd/server/config/config.go:24 defaultMetricsAddress),
# the chart's container port `http-monitoring`.
VELERO = Scraped("velero", "velero", {"app.kubernetes.io/name": "velero"}, "http-monitoring", 8085)
# cert-manager's controller: its certificates' metrics (the chart's `http-metrics`, 9402).
CERT_MANAGER = Scraped("cert-manager", "cert-manager", {"app.kubernetes.io/name": "cert-manager",
                                                        "app.kubernetes.io/component": "controller"}, "http-metrics", 9402)
# CloudNativePG's instances (components/data_stores.py, off EKS): each pod's exporter, container port `metrics` 9187
# (cloudnative-pg/cloudnative-pg pkg/specs/pods.go:274-275, pkg/management/url/url.go:34), labelled
# cnpg.io/podRole=instance (pkg/utils/labels_annotations.go:92, 349), in the namespaces of the services that keep a
# database there: GitLab's and Harbor's on the control plane, Dragonfly's on the workload clusters (tests/test_alerting.py
# checks these are every namespace a rendered Cluster is in).
POSTGRES_INSTANCES = {"cnpg.io/podRole": "instance"}
POSTGRES_PORT = 9187
POSTGRES_NAMESPACES = ("gitlab", "harbor", "dragonfly-system")
POSTGRES = tuple(Scraped(f"postgres-{ns}", ns, POSTGRES_INSTANCES, "metrics", POSTGRES_PORT) for ns in POSTGRES_NAMESPACES)
SCRAPED = (VELERO, CERT_MANAGER, *POSTGRES)


def scrape_admit(pods: dict[str, str], port: int) -> Admit:
    """What a scraped namespace admits: this Prometheus' server, to the pods labelled `pods` on their metrics `port` alone."""
    return Admit(f"scraped-by-{NAMESPACE}", pods, [pods_in(NAMESPACE, PROMETHEUS_LABELS)], [port])


def _rule(alert: str, expr: str, duration: str, severity: str, summary: str, runbook: str) -> dict[str, Any]:
    return {"alert": alert, "expr": expr, "for": duration, "labels": {"severity": severity},
            "annotations": {"summary": summary, "runbook": runbook}}


WATCHDOG_RULES = [_rule(
    WATCHDOG, "vector(1)", "1m", "none",
    "Alerting works: this alert always fires, and its heartbeat receiver expects it every few minutes.",
    "Nothing while it arrives. When the heartbeat service reports it missing, this cluster's Prometheus or "
    "Alertmanager is down or cannot reach out: kubectl -n alerting get pods, and their logs.",
)]
# kubernetes/kube-state-metrics internal/store/node.go:509 (kube_node_status_condition), deployment.go:153
# (kube_deployment_status_replicas_available), pod.go kube_pod_labels (labels as `label_<name>`, allowlisted).
HEALTH_RULES = [
    _rule("NodeNotReady", 'kube_node_status_condition{condition="Ready",status="true"} == 0', "10m", "critical",
          "Node {{ $labels.node }} has not been Ready for 10 minutes.",
          "kubectl describe node {{ $labels.node }}; on EKS the node group replaces an unhealthy instance, elsewhere "
          "check the kubelet and container runtime on the host. Its pods are rescheduled after 5 minutes."),
    _rule("GatekeeperWebhookDown",
          'kube_deployment_status_replicas_available{namespace="gatekeeper-system",deployment="gatekeeper-controller-manager"} == 0',
          "5m", "critical",
          "Gatekeeper's admission webhook has no available replica: its policies are not enforced (failurePolicy Ignore) "
          "or every admission fails.",
          "kubectl -n gatekeeper-system get pods,events; kubectl -n gatekeeper-system logs deploy/gatekeeper-controller-manager."),
    # hashicorp/vault serviceregistration/kubernetes/service_registration.go: labelSealed = "vault-sealed", set on
    # each pod to "true"/"false" as its seal changes (the chart's `service_registration "kubernetes"`).
    _rule("VaultSealed", 'kube_pod_labels{namespace="vault",label_vault_sealed="true"} == 1', "5m", "critical",
          "Vault pod {{ $labels.pod }} is sealed: secrets, CI logins and External Secrets fail against it.",
          "README, Vault's root token and Restore drill: Vault. Unseal it (`vault operator unseal` with the keys, or check "
          "the KMS key on EKS); kubectl -n vault logs {{ $labels.pod }}."),
    _rule("ScrapeTargetDown", "up == 0", "15m", "warning",
          "Prometheus cannot scrape {{ $labels.job }} ({{ $labels.instance }}): the alerts built on it are blind.",
          "kubectl -n alerting port-forward svc/alerting-prometheus-server 9090:80, then Status > Targets for the error; "
          "a refused connection is a NetworkPolicy (components/alerting.py scrape_admit)."),
    _rule("AlertmanagerNotificationsFailing", "rate(alertmanager_notifications_failed_total[15m]) > 0", "15m", "critical",
          "Alertmanager fails to deliver to {{ $labels.integration }}: alerts reach nobody.",
          "kubectl -n alerting logs statefulset/alertmanager; check platform:alerting.receiver (README: Alerts) and that "
          "HTTPS out on 443 reaches it."),
]
# cert-manager internal/collectors/certificate_collector.go:30 (certmanager_certificate_ready_status, 1 for the current
# condition), :33 (certmanager_certificate_expiration_timestamp_seconds).
CERTIFICATE_RULES = [
    _rule("CertificateNotReady", 'certmanager_certificate_ready_status{condition="False"} == 1', "30m", "warning",
          "Certificate {{ $labels.namespace }}/{{ $labels.name }} is not Ready.",
          "kubectl -n {{ $labels.namespace }} describe certificate {{ $labels.name }}, then its CertificateRequest and "
          "(ACME) Order and Challenge; kubectl -n cert-manager logs deploy/cert-manager."),
    _rule("CertificateExpiringSoon", "certmanager_certificate_expiration_timestamp_seconds - time() < 7 * 86400", "1h",
          "critical",
          "Certificate {{ $labels.namespace }}/{{ $labels.name }} expires in less than 7 days: it was not renewed.",
          "As CertificateNotReady; cert-manager renews at two thirds of the lifetime, so this one has failed for weeks. "
          "`cmctl renew -n {{ $labels.namespace }} {{ $labels.name }}` once the cause is fixed."),
]
# CloudNativePG: cnpg_collector_up (pkg/management/postgres/webserver/metricserver/pg_collector.go:45, 130-135) and
# the chart's default monitoring queries (config/manager/default-monitoring.yaml: pg_stat_archiver, on the primary,
# :164-200; pg_replication's lag, :110-124), exported as cnpg_<query>_<column>.
DATABASE_RULES = [
    _rule("PostgresWALArchivingFailing",
          "cnpg_pg_stat_archiver_last_failed_time > cnpg_pg_stat_archiver_last_archived_time", "15m", "critical",
          "PostgreSQL {{ $labels.kubernetes_namespace }}/{{ $labels.pod }} fails to archive WAL: no point-in-time "
          "recovery past the last archived segment, and pg_wal fills up.",
          "kubectl -n {{ $labels.kubernetes_namespace }} logs {{ $labels.pod }} | grep -i archive (barman-cloud-wal-archive: "
          "the object store's key, endpoint or bucket); README: Restoring the databases."),
    _rule("PostgresInstanceDown", "cnpg_collector_up == 0", "5m", "critical",
          "PostgreSQL in {{ $labels.kubernetes_namespace }}/{{ $labels.pod }} is not up.",
          "kubectl -n {{ $labels.kubernetes_namespace }} get cluster,pods; kubectl cnpg status <cluster>; its logs."),
    _rule("PostgresReplicaLagging", "cnpg_pg_replication_lag > 300", "10m", "warning",
          "PostgreSQL replica {{ $labels.kubernetes_namespace }}/{{ $labels.pod }} is over 5 minutes behind its primary.",
          "kubectl cnpg status <cluster> -n {{ $labels.kubernetes_namespace }}: the replica's WAL receiver, its disk and "
          "network; a failover to it would lose that much."),
]


def backup_rules(max_age: int) -> list[dict[str, Any]]:
    """Velero's Schedules, held to `max_age` seconds since their last success."""
    # vmware-tanzu/velero pkg/metrics/metrics.go:36-50: velero_backup_failure_total, _partial_failure_total,
    # _attempt_total and _last_successful_timestamp, by `schedule` (one per tenant namespace: matched by pattern). The
    # last success is a gauge only set by a success (InitSchedule, :505, zeroes the counters alone), so a Schedule
    # that never succeeded since the server started has attempts and no timestamp.
    hours = max_age // 3600
    return [
        _rule("VeleroBackupStale",
              f'time() - velero_backup_last_successful_timestamp{{schedule!=""}} > {max_age}', "15m", "critical",
              f"Velero Schedule {{{{ $labels.schedule }}}} has had no successful backup for over {hours} h (its schedule's "
              "longest gap and a margin).",
              "velero backup get --selector velero.io/schedule-name={{ $labels.schedule }}; velero backup describe <the "
              "newest> --details; kubectl -n velero logs deploy/velero. README: Tenants' volumes."),
        _rule("VeleroBackupNeverSucceeded",
              'velero_backup_attempt_total{schedule!=""} unless on(schedule) velero_backup_last_successful_timestamp',
              f"{hours}h", "critical",
              f"Velero Schedule {{{{ $labels.schedule }}}} has not succeeded once in {hours} h.",
              "As VeleroBackupStale: list its backups and read why they failed."),
        _rule("VeleroBackupFailed",
              'increase(velero_backup_failure_total{schedule!=""}[1h]) > 0 or increase(velero_backup_partial_failure_total{schedule!=""}[1h]) > 0',
              "5m", "warning",
              "A backup of Velero Schedule {{ $labels.schedule }} failed or partly failed in the last hour.",
              "velero backup describe <the backup> --details and velero backup logs <the backup>: a volume the node "
              "agent could not read, the store unreachable, or a snapshot that timed out."),
    ]


def rules(cluster: str, backup_max_age_seconds: int | None) -> list[dict[str, Any]]:
    """The platform's rule groups (Prometheus' rule file format), the same on every cluster: a rule whose series a
    cluster has not (Vault's on a workload cluster) stays silent there. Each alert is labelled with its `cluster`."""
    groups = {"watchdog": WATCHDOG_RULES, "cluster": HEALTH_RULES, "certificates": CERTIFICATE_RULES, "databases": DATABASE_RULES}
    if backup_max_age_seconds is not None:
        groups["backups"] = backup_rules(backup_max_age_seconds)
    return [{"name": name, "rules": [{**r, "labels": {**r["labels"], "cluster": cluster}} for r in group]}
            for name, group in groups.items()]


def alertmanager_config(receiver: str | None, kind: str, heartbeat: str | None) -> dict[str, Any]:
    """Alertmanager's configuration: the Watchdog to the heartbeat (every 5 minutes), everything else to the receiver.
    Without a receiver or heartbeat their receivers have no integration: alerts still show in Alertmanager."""
    integration: dict[str, Any] = {}
    if receiver is not None:
        integration = ({"slack_configs": [{"api_url": receiver, "send_resolved": True}]} if kind == "slack"
                       else {"webhook_configs": [{"url": receiver, "send_resolved": True}]})
    beat = {"webhook_configs": [{"url": heartbeat, "send_resolved": False}]} if heartbeat is not None else {}
    return {
        "route": {
            "receiver": RECEIVER, "group_by": ["alertname", "cluster", "namespace"],
            "group_wait": "30s", "group_interval": "5m", "repeat_interval": "4h",
            "routes": [{"matchers": [f'alertname="{WATCHDOG}"'], "receiver": HEARTBEAT,
                        "group_wait": "0s", "group_interval": "1m", "repeat_interval": "5m"}],
        },
        "receivers": [{"name": RECEIVER, **integration}, {"name": HEARTBEAT, **beat}],
    }


@dataclass(frozen=True, kw_only=True)
class AlertingArgs(AddOnArgs):
    cluster_name: str
    routes: AlertRoutes = field(default_factory=AlertRoutes)


class Alerting(ChartAddOn[AlertingArgs]):
    """The slice's release is Alertmanager; the platform Prometheus and kube-state-metrics are released beside it."""

    type_token = "platform:alerting:Alerting"
    own_pods_only = True  # nothing outside the namespace connects: not published, scraped by nobody else

    def egress(self, args: AlertingArgs) -> Sequence[Reach]:
        """Prometheus to each metrics port it scrapes and to Alertmanager; Alertmanager to the receivers (HTTPS out)."""
        return [
            Reach("scrape", PROMETHEUS_LABELS, [
                k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=pods(KSM_LABELS), ports=tcp(KSM_PORT)),
                k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=pods(ALERTMANAGER_LABELS), ports=tcp(ALERTMANAGER_PORT)),
                *(k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=[pods_in(t.namespace, t.pods)], ports=tcp(t.port)) for t in SCRAPED),
            ]),
            Reach("receivers", ALERTMANAGER_LABELS, [internet([HTTPS])]),
        ]

    def prepare(self, name: str, args: AlertingArgs) -> None:
        routes = args.routes
        text = pulumi.Output.all(routes.receiver, routes.heartbeat).apply(
            lambda urls: yaml_dump(alertmanager_config(urls[0], routes.receiver_kind, urls[1])))
        self._config = pulumi.Output.secret(text)
        # The pod restarts on a new configuration: a digest of it (SHA-256 of URLs with their tokens reveals neither).
        self._config_checksum = pulumi.Output.unsecret(text.apply(checksum))

    def values(self, args: AlertingArgs) -> dict[str, Any]:
        return {
            "replicaCount": 1,  # one per cluster: no gossip port to hold (the chart's cluster flags need two)
            # No configuration from the chart: its ConfigMap would hold the receiver's URL in plain text.
            "config": {"enabled": False},
            "extraSecretMounts": [{"name": "config", "mountPath": "/etc/alertmanager", "secretName": CONFIG_SECRET,
                                   "subPath": "", "readOnly": True}],
            "configmapReload": {"enabled": False},
            "podAnnotations": {CONFIG_CHECKSUM: self._config_checksum},
            "persistence": {"enabled": True, "size": "1Gi"},  # its silences and notification log survive a restart
        }

    def grants(self, name: str, cluster: ClusterHandle, ns: k8s.core.v1.Namespace) -> Sequence[pulumi.Resource]:
        """Prometheus' rights instead of the chart's ClusterRole (which reads every ConfigMap, Service, Endpoint, Ingress,
        node and nodes/metrics of the cluster): pods to list and watch, what its pod discovery asks in the namespaces it
        scrapes (a ClusterRole: gitlab's and harbor's namespaces come after it on the control plane). And the
        configuration Secret, which Alertmanager's release mounts."""
        self._ns = ns
        opts = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[ns])
        return [
            grant(f"{name}-prometheus", PROMETHEUS_ACCOUNT, {"kind": "ServiceAccount", "name": PROMETHEUS_ACCOUNT, "namespace": NAMESPACE},
                  [rbac_rule([""], ["pods"], ("list", "watch"))], opts),
            k8s.core.v1.Secret(f"{name}-config", metadata=metadata(CONFIG_SECRET, ns), string_data={CONFIG_FILE: self._config}, opts=opts),
        ]

    def extend(self, name: str, cluster: ClusterHandle, args: AlertingArgs) -> None:
        # After Alertmanager's release, which waits for the namespace's policies: Prometheus sends it what fires.
        resources = args.settings.resources  # the slice's sizing, for each of its containers
        self.kube_state_metrics = release(
            "kube-state-metrics", "kube-state-metrics", self._ns, sized(_ksm_values(), resources, ""), cluster, self,
            depends_on=[self.release])
        values = prometheus_values(args.cluster_name, args.settings.storage, args.routes.backup_max_age_seconds)
        self.prometheus = release(PROMETHEUS_RELEASE, "prometheus", self._ns, sized(values, resources, "server"), cluster, self,
                                  depends_on=[self.release])
        args.inventory.register(
            projected_token(
                f"service-account token of the alerting Prometheus on {cluster.name}",
                issuer=f"the {cluster.name} cluster's API server (projected service-account token)",
                holder=f"Prometheus ({NAMESPACE}/{PROMETHEUS_RELEASE}-server) on {cluster.name}",
                scope="list and watch pods, to find the pods it scrapes (the platform's ClusterRole instead of the chart's)",
                resources=(f"{cluster.role}-{PROMETHEUS_RELEASE}",),
            ),
            projected_token(
                f"service-account token of kube-state-metrics on {cluster.name}",
                issuer=f"the {cluster.name} cluster's API server (projected service-account token)",
                holder=f"kube-state-metrics ({NAMESPACE}/kube-state-metrics) on {cluster.name}",
                scope=f"list and watch {', '.join(KSM_COLLECTORS)} (the chart's ClusterRole for those collectors alone)",
                resources=(f"{cluster.role}-kube-state-metrics",),
            ),
        )
        if args.routes.receiver is not None or args.routes.heartbeat is not None:
            args.inventory.register(external_secret(
                f"alert receiver and heartbeat URLs of {cluster.name}",
                issuer="the chat, paging or heartbeat service that issued each webhook URL",
                holder=f"Alertmanager ({NAMESPACE}/{CONFIG_SECRET}) on {cluster.name}",
                scope="post messages to the receiver's channel and check in with the heartbeat",
                lifetime="until its service revokes it (webhook URLs carry no expiry)",
                rotation="issue a new URL, `pulumi config set --secret --path platform:alerting.receiver.url` (or "
                         "heartbeats.<cluster>), `pulumi up` (Alertmanager restarts on the new checksum), then revoke the old one",
                resources=(f"{name}-config",),
            ))


def _ksm_values() -> dict[str, Any]:
    return {
        "collectors": list(KSM_COLLECTORS),
        "namespaces": ",".join(KSM_NAMESPACES),
        "metricLabelsAllowlist": [f"pods=[{VAULT_SEALED_LABEL}]"],
    }


def prometheus_values(cluster_name: str, storage: str, backup_max_age_seconds: int | None) -> dict[str, Any]:
    """The platform Prometheus: its rules, its scrapes and its Alertmanager, the chart's server alone (prometheus_chart)."""
    scrape_configs = {
        "kube-state-metrics": {"static_configs": [{"targets": [f"kube-state-metrics.{NAMESPACE}.svc:{KSM_PORT}"]}]},
        "alertmanager": {"static_configs": [{"targets": [f"alertmanager.{NAMESPACE}.svc:{ALERTMANAGER_PORT}"]}]},
        **{target.job: target.job_config() for target in SCRAPED},
    }
    rule_groups = {"groups": rules(cluster_name, backup_max_age_seconds)}
    return prometheus_chart.server_only(prometheus_chart.scrape_configs(scrape_configs), {
        "retention": RETENTION,
        "persistentVolume": {"size": storage},
        "alertmanagers": [{"static_configs": [{"targets": [f"alertmanager.{NAMESPACE}.svc:{ALERTMANAGER_PORT}"]}]}],
        "extraFlags": [],  # no lifecycle API, as the canary one
        "podAnnotations": {CONFIG_CHECKSUM: checksum(json.dumps([scrape_configs, rule_groups], sort_keys=True))},
    }) | {"serverFiles": {"alerting_rules.yml": rule_groups}}


def declare_on(parts: ClusterParts, settings: ServiceSettings) -> Alerting:
    name = f"{parts.cluster.role}-{SLICE.key}"
    return Alerting(name, parts.cluster, SLICE, AlertingArgs(
        settings=settings, inventory=parts.inventory, cluster_name=parts.cluster.name, routes=parts.alert_routes))


SLICE: ServiceSlice[Alerting] = ServiceSlice(
    key="alerting",
    namespace=PlatformNamespace(NAMESPACE, "the platform's Prometheus, rules and Alertmanager, which read the platform's state"),
    chart="alertmanager",
    on_cluster=declare_on,
)
