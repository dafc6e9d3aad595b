"""What a new tenant's ops projects deploy: the app as an Argo Rollout behind the tenant's hostname.

One directory per environment (`dev/`, `prod/`), the same files in `ops` and `ops-dev`, so the
promotion merge request from `ops-dev` into `ops` merges cleanly and carries exactly the image
bump; ArgoCD deploys `dev/` from ops-dev and `prod/` from ops (components/tenant_delivery.py).

* dev: blue-green. The new version starts behind `app-preview` and takes over `app` when ready.
* prod: canary. 20 % then 50 % of the pods run the new version, each step held two minutes,
  while an AnalysisRun asks Prometheus for the share of 5xx answers the ingress controller
  counted for the app; above 5 % the analysis fails, the Rollout aborts and scales the canary
  back to the stable version. Weights are by pod count (no traffic-routing plugin): the
  Service selects old and new pods alike.

Everything passes the platform's Gatekeeper constraints as shipped (image from the tenant's
Harbor project, pulled Always, requests and limits, probes, Pod Security restricted) and is
valid against Argo Rollouts' own CRD schemas.
"""

from __future__ import annotations

from typing import Any

from components import prometheus, workload_ingress
from components.tenant_names import namespace_name, tenant_hostname, virtual_host_name

APP = "app"  # the Rollout, its Services and the repository in the tenant's Harbor project
STARTER_TAG = "v0.1.0"  # pinned; the bump merge requests replace it
PORT = 8080
SERVICE_PORT = 80
PREVIEW_SERVICE = f"{APP}-preview"
ANALYSIS = "error-rate"
MAX_ERROR_RATE = 0.05
# The files ArgoCD deploys, by environment: `<env>/app.yaml` (the bump job rewrites their image).
MANIFEST = "app.yaml"


def manifest_path(environment: str) -> str:
    return f"{environment}/{MANIFEST}"


def traefik_service(tenant: str, environment: str, virtual: bool = False) -> str:
    """How Traefik's metrics name the app's Service behind an Ingress: `<namespace>-<service>-<port>@kubernetes`,
    the host's names (in a virtual cluster, ArgoCD deploys to the namespace `<tenant>` of the
    virtual cluster `<tenant>-<env>`, which syncs Ingress and Service to the host under its own names)."""
    host_namespace = namespace_name(tenant, environment)
    service = virtual_host_name(APP, tenant, host_namespace) if virtual else APP
    return f"{host_namespace}-{service}-{SERVICE_PORT}@kubernetes"


def error_rate_query() -> str:
    """The share of 5xx answers over two minutes; no traffic at all counts as no errors."""
    selector = 'service="{{args.service}}"'
    return (
        f'(sum(rate(traefik_service_requests_total{{{selector},code=~"5.."}}[2m])) or vector(0))'
        f" / (sum(rate(traefik_service_requests_total{{{selector}}}[2m])) > 0 or vector(1))"
    )


def analysis_template(namespace: str) -> dict[str, Any]:
    """Fails the canary as soon as one measurement finds more than MAX_ERROR_RATE errors, asking
    Prometheus' proxy for `namespace`'s traffic (the host namespace: a virtual cluster's proxy
    fixes it whatever the header says)."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": ANALYSIS},
        "spec": {
            "args": [{"name": "service"}],
            "metrics": [{
                "name": ANALYSIS,
                "interval": "1m",
                "failureLimit": 0,
                "successCondition": f"result[0] <= {MAX_ERROR_RATE}",
                "provider": {"prometheus": prometheus.analysis_provider(namespace, error_rate_query())},
            }],
        },
    }


def strategy(tenant: str, environment: str, virtual: bool) -> dict[str, Any]:
    if environment == "prod":
        return {"canary": {
            "analysis": {
                "templates": [{"templateName": ANALYSIS}],
                "startingStep": 1,
                "args": [{"name": "service", "value": traefik_service(tenant, environment, virtual)}],
            },
            "steps": [{"setWeight": 20}, {"pause": {"duration": "2m"}}, {"setWeight": 50}, {"pause": {"duration": "2m"}}],
        }}
    return {"blueGreen": {
        "activeService": APP,
        "previewService": PREVIEW_SERVICE,
        "autoPromotionEnabled": True,
        "scaleDownDelaySeconds": 30,
    }}


def container(host: str, tenant: str) -> dict[str, Any]:
    probe = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10}
    return {
        "name": APP,
        "image": f"{host}/{tenant}/{APP}:{STARTER_TAG}",
        "imagePullPolicy": "Always",  # the tenant namespace requires it: every start re-checks the pull credentials
        "ports": [{"name": "http", "containerPort": PORT}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
        "readinessProbe": {**probe, "initialDelaySeconds": 5},
        "livenessProbe": {**probe, "initialDelaySeconds": 15},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def ingress(tenant: str, environment: str, apps_domain: str, labels: dict[str, str]) -> dict[str, Any]:
    """The tenant's hostname on the environment's ingress controller, HTTPS only, served with the
    controller's wildcard certificate (no secretName: the tenant never holds the key)."""
    host = tenant_hostname(tenant, environment, apps_domain)
    backend = {"service": {"name": APP, "port": {"number": SERVICE_PORT}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": APP, "labels": labels, "annotations": {
            "traefik.ingress.kubernetes.io/router.entrypoints": "websecure",
            "traefik.ingress.kubernetes.io/router.tls": "true",
        }},
        "spec": {
            "ingressClassName": workload_ingress.INGRESS_CLASS,
            "tls": [{"hosts": [host]}],
            "rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}],
        },
    }


def ops_manifests(tenant: str, host: str, environment: str, apps_domain: str, virtual: bool = False) -> list[dict[str, Any]]:
    """The app in `environment`: Rollout, Services, Ingress, HPA, PDB (and in prod its analysis).
    No namespace: ArgoCD deploys them to the tenant's (`virtual`: inside its virtual cluster)."""
    labels = {"app.kubernetes.io/name": APP, "app.kubernetes.io/part-of": tenant}
    services = [APP, *([PREVIEW_SERVICE] if environment != "prod" else [])]
    return [
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": APP, "labels": labels},
            "spec": {
                # No replicas: the HPA owns the count (ArgoCD would otherwise reset it on every sync).
                "revisionHistoryLimit": 3,
                "selector": {"matchLabels": labels},
                "strategy": strategy(tenant, environment, virtual),
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [container(host, tenant)]}},
            },
        },
        *({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": labels},
            "spec": {"selector": labels, "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http"}]},
        } for name in services),
        ingress(tenant, environment, apps_domain, labels),
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": APP, "labels": labels},
            "spec": {
                "scaleTargetRef": {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": APP},
                "minReplicas": 2,
                "maxReplicas": 6,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 75}}}
                ],
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": APP, "labels": labels},
            # maxUnavailable, which tenant namespaces require: one pod may always be evicted, whatever the replicas.
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}},
        },
        *([analysis_template(namespace_name(tenant, environment))] if environment == "prod" else []),
    ]
