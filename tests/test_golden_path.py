"""The golden path (issue 18): a tenant's commit reaches its users, hop by hop, in both plans.

tests/golden_path.py walks the plan; here: the whole path stands for a tenant of each stack,
the walker names the first hop that has nothing behind it, and what the path deploys (the
starter Rollouts, Services, Ingress, HPA and analysis) is valid against the upstream schemas
(Argo Rollouts' CRDs as its chart renders them in the plan) and passes the cluster's Gatekeeper
constraints as the plan declares them, in the real OPA engine.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import alerting, prometheus, tenant_rollout, workload_ingress
from components.tenant_names import virtual_host_name
from components.versions import CHARTS, TRIVY_DATABASES
from platformctl.charts import chart_path
from platformctl.helm_render import builtin_api_versions, render_release
from components.tenancy import ENVIRONMENTS
from tests.golden_path import HOPS, RELEASE, Plan, walk
from tests.test_gatekeeper_plan import admission, assigned
from tests.test_helm_render import kubernetes_versions
from tests.validation import crd_errors, is_custom_resource, kubernetes_errors

TENANT = "payments"  # isolation: namespace, in both example stacks


def _tenant_isolation(plan: dict, tenant: str) -> str:
    namespaces = [r for r in plan["resources"] if r["type"] == "kubernetes:core/v1:Namespace"
                  and r["inputs"]["metadata"]["name"] == f"{tenant}-dev"]
    releases = [r for r in plan["resources"] if r["type"] == RELEASE and r["inputs"].get("namespace") == f"{tenant}-dev"]
    return "vcluster" if releases else "namespace" if namespaces else "absent"


def test_the_golden_path_stands(plan: dict) -> None:
    assert _tenant_isolation(plan, TENANT) == "namespace"
    gap = walk(plan, TENANT)
    assert gap is None, str(gap)


# --- the walker names the first missing hop -----------------------------------------------------

def _drop(plan: dict, type_: str, name: str) -> None:
    before = len(plan["resources"])
    plan["resources"] = [r for r in plan["resources"] if not (r["type"] == type_ and r["name"] == name)]
    assert len(plan["resources"]) == before - 1, f"{type_} {name} is not in the plan"


def _release(plan: dict, cluster: str, chart: str) -> dict:
    """The cluster's release of `chart`, the platform's alerting ones aside (its Prometheus is the same chart)."""
    [found] = [r for r in plan["resources"] if r["type"] == RELEASE and r["cluster"] == cluster and r["inputs"].get("chart") == chart
               and r["inputs"].get("namespace") != alerting.NAMESPACE]
    return found


def _edit_starter(plan: dict, project: str, path: str, edit: Any) -> None:
    [file] = [r for r in plan["resources"] if r["type"] == "gitlab:index/repositoryFile:RepositoryFile"
              and r["name"].startswith(f"{TENANT}-repositories-{project}-starter-") and r["inputs"]["filePath"] == path]
    file["inputs"]["content"] = yaml.safe_dump(edit(yaml.safe_load(file["inputs"]["content"])))


def _named(plan: dict, type_: str, name: str) -> dict:
    [found] = [r for r in plan["resources"] if r["type"] == type_ and r["name"] == name]
    return found


def _no_load_balancer(plan: dict) -> None:
    for obj in _release(plan, "prod", "traefik")["rendered"]:
        if obj["kind"] == "Service":
            obj["spec"]["type"] = "ClusterIP"


# One break per hop: what removing a resource, rule or credential behind it looks like.
BREAKS: dict[str, Any] = {
    "push to the tenant's app repository": lambda p: _drop(p, "gitlab:index/projectVariable:ProjectVariable",
                                                             f"{TENANT}-repositories-app-harbor_registry"),
    "runner job": lambda p: _drop(p, "gitlab:index/userRunner:UserRunner", f"{TENANT}-runner-runner"),
    "image built and pushed to the tenant's Harbor project": lambda p: _drop(p, "harbor:index/robotAccount:RobotAccount",
                                                                              f"{TENANT}-registry-push"),
    "scan gate": lambda p: _named(p, "harbor:index/project:Project", f"{TENANT}-registry-project")["inputs"].update(
        vulnerabilityScanning=False),
    "signature": lambda p: _drop(p, "vault:transit/secretBackendKey:SecretBackendKey", f"{TENANT}-secrets-cosign"),
    "tag bump in ops-dev": lambda p: _edit_starter(p, "app", ".gitlab-ci.yml",
                                                   lambda ci: {k: v for k, v in ci.items() if k != "bump-ops-dev"}),
    "ArgoCD": lambda p: _drop(p, "kubernetes:core/v1:Secret", f"{TENANT}-repositories-ops-dev-argocd-repository"),
    "dev Rollout": lambda p: p["resources"].remove(_release(p, "dev", "argo-rollouts")),
    "promotion merge request": lambda p: _named(p, "gitlab:index/branchProtection:BranchProtection",
                                                f"{TENANT}-repositories-ops-main")["inputs"].update(mergeAccessLevel="developer"),
    "prod canary with analysis": lambda p: p["resources"].remove(_release(p, "prod", "prometheus")),
    "ingress with TLS": lambda p: _drop(p, "kubernetes:traefik.io/v1alpha1:TLSStore", "prod-workload-ingress-default-certificate"),
    "users": _no_load_balancer,
}


def test_every_hop_has_a_break() -> None:
    assert list(BREAKS) == [hop.name for hop in HOPS]


@pytest.fixture(scope="module")
def whole(renders: dict) -> dict:
    """The dev plan: the whole path stands on it."""
    plan = renders["dev"].plan
    assert walk(plan, TENANT) is None, str(walk(plan, TENANT))
    return plan


@pytest.mark.parametrize("hop", [hop.name for hop in HOPS])
def test_the_walker_names_the_first_hop_with_nothing_behind_it(whole: dict, hop: str) -> None:
    broken = copy.deepcopy(whole)
    BREAKS[hop](broken)
    gap = walk(broken, TENANT)
    assert gap is not None and gap.hop == hop, str(gap)
    assert gap.missing and str(gap).startswith(f"the golden path stops at '{hop}': no ")


def _scan_variables(plan: dict) -> dict:
    [file] = [r for r in plan["resources"] if r["type"] == "gitlab:index/repositoryFile:RepositoryFile"
              and r["name"].startswith(f"{TENANT}-repositories-app-starter-") and r["inputs"]["filePath"] == ".gitlab-ci.yml"]
    return yaml.safe_load(file["inputs"]["content"])["scan"]["variables"]


# Where the scan job's vulnerability databases come from, and what taking each away looks like.
NO_DATABASE: dict[str, Any] = {
    "the scan job reads ghcr.io": lambda p: _edit_starter(p, "app", ".gitlab-ci.yml", lambda ci: {
        **ci, "scan": {**ci["scan"], "variables": {k: v for k, v in ci["scan"]["variables"].items() if k != "TRIVY_DB_REPOSITORY"}}}),
    "no ghcr.io cache to promote from": lambda p: _drop(p, "harbor:index/project:Project", "public-images-proxy-ghcr-io"),
    "no promoter": lambda p: _drop(p, "harbor:index/robotAccount:RobotAccount", "image-promotion-promoter"),
    "approved needs a login": lambda p: _named(p, "harbor:index/project:Project", "public-images-approved")["inputs"].update(public=False),
}


@pytest.mark.parametrize("gap", list(NO_DATABASE))
def test_the_scan_hop_needs_trivys_databases_in_harbor(whole: dict, gap: str) -> None:
    broken = copy.deepcopy(whole)
    NO_DATABASE[gap](broken)
    found = walk(broken, TENANT)
    assert found is not None and found.hop == "scan gate" and len(found.missing) == 1, str(found)


def test_every_trivy_reads_the_promoted_databases(whole: dict) -> None:
    host = Plan(whole).variable(TENANT, "app", "HARBOR_REGISTRY")
    copies = [f"{host}/approved/{database}" for database in TRIVY_DATABASES]
    assert list(_scan_variables(whole).values()) == copies
    # Harbor's own scanner, as the real chart renders its adapter: the same copies, nothing else.
    [adapter] = [o for o in _release(whole, "control-plane", "harbor")["rendered"]
                 if o["kind"] == "StatefulSet" and o["metadata"]["name"].endswith("-trivy")]
    env = {e["name"]: e.get("value") for e in adapter["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert [env["SCANNER_TRIVY_DB_REPOSITORY"], env["SCANNER_TRIVY_JAVA_DB_REPOSITORY"]] == copies
    assert env["SCANNER_TRIVY_SKIP_UPDATE"] == "false"  # it keeps downloading: from Harbor
    # The schedule promotes exactly these.
    ci = yaml.safe_load((Path(__file__).parent.parent / ".gitlab-ci.yml").read_text())
    assert ci[".promote-trivy-db"]["variables"]["DATABASE"].split() == list(TRIVY_DATABASES)  # promote-trivy-db-<stack>


# --- a vCluster tenant: Argo Rollouts inside its virtual clusters ---------------------------------------

VIRTUAL_TENANT = "catalog"  # isolation: vcluster, in both example stacks


def _virtual_values(plan: dict, environment: str) -> dict:
    [release] = [r for r in plan["resources"] if r["type"] == RELEASE and r["inputs"].get("chart") == "vcluster"
                 and r["inputs"]["namespace"] == f"{VIRTUAL_TENANT}-{environment}"]
    return release["inputs"]["values"]


def test_a_vcluster_tenant_walks_to_its_users(plan: dict) -> None:
    assert _tenant_isolation(plan, VIRTUAL_TENANT) == "vcluster"
    gap = walk(plan, VIRTUAL_TENANT)
    assert gap is None, str(gap)


def _without_rollouts_inside(plan: dict) -> None:
    _virtual_values(plan, "dev")["experimental"]["deploy"]["vcluster"]["helm"] = []


def _no_prometheus_inside(plan: dict) -> None:
    _virtual_values(plan, "prod")["networking"]["replicateServices"]["fromHost"] = []


def _ingresses_kept_inside(plan: dict) -> None:
    _virtual_values(plan, "prod")["sync"]["toHost"]["ingresses"]["enabled"] = False


# What removing each piece the virtual clusters add looks like, and the hop that must then stop.
VIRTUAL_BREAKS: dict[str, tuple[Any, str]] = {
    "no controller inside": (_without_rollouts_inside, "dev Rollout"),
    "no Prometheus inside": (_no_prometheus_inside, "prod canary with analysis"),
    "no way out to Prometheus": (lambda p: _drop(p, "kubernetes:networking.k8s.io/v1:NetworkPolicy",
                                                 f"{VIRTUAL_TENANT}-prod-vcluster-argo-rollouts"), "prod canary with analysis"),
    "Ingresses not synced": (_ingresses_kept_inside, "ingress with TLS"),
}


@pytest.mark.parametrize("gap", list(VIRTUAL_BREAKS))
def test_the_walker_names_what_a_virtual_cluster_lacks(whole: dict, gap: str) -> None:
    breaks, hop = VIRTUAL_BREAKS[gap]
    broken = copy.deepcopy(whole)
    breaks(broken)
    found = walk(broken, VIRTUAL_TENANT)
    assert found is not None and found.hop == hop and len(found.missing) == 1, str(found)
    assert walk(broken, TENANT) is None  # the namespace tenant does not depend on it


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_argo_rollouts_inside_a_virtual_cluster_renders_and_passes_the_hosts_constraints(
    charted: dict, plan: dict, environment: str
) -> None:
    [deploy] = _virtual_values(plan, environment)["experimental"]["deploy"]["vcluster"]["helm"]
    pin = CHARTS["argo-rollouts"]
    assert deploy["chart"] == {"name": pin.chart, "repo": pin.repo, "version": pin.version}  # the host's pin
    version = kubernetes_versions(plan["stack"])[environment]
    # The real chart, with the values the virtual cluster installs it with, as Helm renders it inside.
    objects = render_release(chart_path(pin.chart, pin.version), yaml.safe_load(deploy["values"]), name=deploy["release"]["name"],
                             namespace=deploy["release"]["namespace"], kubernetes_version=version,
                             api_versions=builtin_api_versions(version))
    crds = {o["metadata"]["name"] for o in objects if o["kind"] == "CustomResourceDefinition"}
    assert {"rollouts.argoproj.io", "analysistemplates.argoproj.io", "analysisruns.argoproj.io"} <= crds
    for obj in objects:
        if not is_custom_resource(obj):
            assert kubernetes_errors(obj) == [], (obj["kind"], obj["metadata"]["name"])
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    # The virtual cluster syncs its pod into the tenant's host namespace: the host's constraints apply.
    pod = {"apiVersion": "v1", "kind": "Pod", "spec": deployment["spec"]["template"]["spec"],
           "metadata": {**deployment["spec"]["template"]["metadata"], "name": "argo-rollouts", "namespace": f"{VIRTUAL_TENANT}-{environment}"}}
    namespace = pod["metadata"]["namespace"]
    # Placed on the tenant's own nodes where it has them (Pulumi.prod.yaml's catalog), by the host's mutators.
    pod = assigned(plan, environment, pod)
    selected, failures = admission(plan, environment, pod, user=f"system:serviceaccount:{namespace}:vc-{namespace}")  # its syncer
    assert failures == []
    assert {"PlatformAllowedRegistries", "PlatformPodRestricted", "PlatformRequiredProbes", "PlatformPodDisruption"} <= set(selected)
    [container] = pod["spec"]["containers"]
    host = Plan(plan).variable(VIRTUAL_TENANT, "app", "HARBOR_REGISTRY")
    assert container["image"] == f"{host}/approved/vcluster/argoproj/argo-rollouts:{chart_app_version(pin)}"
    assert container["imagePullPolicy"] == "Always" and container["resources"]["limits"]["cpu"]
    # Its analyses reach the host's proxy of this virtual cluster under the name the AnalysisTemplate uses.
    assert _virtual_values(plan, environment)["networking"]["replicateServices"]["fromHost"] == [
        {"from": f"monitoring/prometheus-query-{VIRTUAL_TENANT}-{environment}", "to": "monitoring/prometheus-query"}]
    assert prometheus.QUERY_URL == "http://prometheus-query.monitoring.svc.cluster.local"


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_replicating_prometheus_lets_the_virtual_cluster_read_host_services_and_nothing_more(
    charted: dict, plan: dict, environment: str
) -> None:
    # vCluster's chart gives its syncer a ClusterRole once a host Service is replicated in: read on
    # Services and Endpoints (names and addresses, no data), what it needs to mirror one.
    [release] = [r for r in plan["resources"] if r["type"] == RELEASE and r["inputs"].get("chart") == "vcluster"
                 and r["inputs"]["namespace"] == f"{VIRTUAL_TENANT}-{environment}"]
    [role] = [o for o in release["rendered"] if o["kind"] == "ClusterRole"]
    assert [r for r in role["rules"] if {"services", "endpoints"} & set(r["resources"])] == [
        {"apiGroups": [""], "resources": ["services", "endpoints"], "verbs": ["get", "watch", "list"]}]


def chart_app_version(pin: Any) -> str:
    return yaml.safe_load((chart_path(pin.chart, pin.version) / "Chart.yaml").read_text())["appVersion"]


def test_a_virtual_tenants_canary_asks_for_its_hosts_copy_of_the_service(plan: dict) -> None:
    documents = {d["kind"]: d for d in Plan(plan).documents(VIRTUAL_TENANT, "ops", "prod/app.yaml")}
    [arg] = documents["Rollout"]["spec"]["strategy"]["canary"]["analysis"]["args"]
    # vCluster names its host copy of Service `app` in namespace `catalog` of vcluster `catalog-prod`
    # `app-x-catalog-x-catalog-prod` (translate.SafeConcatName), in the host namespace catalog-prod.
    assert arg == {"name": "service", "value": "catalog-prod-app-x-catalog-x-catalog-prod-80@kubernetes"}
    assert virtual_host_name("a" * 30, "b" * 20, "c" * 20) == (
        f"{'a' * 30}-x-{'b' * 20}"[:52] + "-" + hashlib.sha256(f"{'a' * 30}-x-{'b' * 20}-x-{'c' * 20}".encode()).hexdigest()[:10])


# --- what the path deploys --------------------------------------------------------------------------

def _crds(plan: dict, cluster: str) -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> CRD, as the argo-rollouts chart renders them in the plan."""
    found = {}
    for crd in _release(plan, cluster, "argo-rollouts")["rendered"]:
        if crd["kind"] == "CustomResourceDefinition":
            for version in crd["spec"]["versions"]:
                found[(f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])] = crd
    return found


def _documents(plan: dict, project: str, environment: str) -> list[dict]:
    return Plan(plan).documents(TENANT, project, tenant_rollout.manifest_path(environment))




@pytest.mark.parametrize("project", ["ops", "ops-dev"])
@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_starter_manifests_are_valid_and_pass_their_clusters_constraints(
    charted: dict, plan: dict, project: str, environment: str
) -> None:
    documents = _documents(plan, project, environment)
    expected = ["Rollout", "Service", *(["Service"] if environment == "dev" else []), "Ingress", "HorizontalPodAutoscaler",
                "PodDisruptionBudget", *(["AnalysisTemplate"] if environment == "prod" else [])]
    assert [d["kind"] for d in documents] == expected
    crds = _crds(plan, environment)
    selected_kinds = set()
    for document in documents:
        key = (document["apiVersion"], document["kind"])
        errors = crd_errors(document, crds[key]) if is_custom_resource(document) else kubernetes_errors(document)
        assert errors == [], (key, errors)
        admitted = {**document, "metadata": {**document["metadata"], "namespace": f"{TENANT}-{environment}"}}
        selected, failures = admission(plan, environment, admitted)
        assert failures == [], (key, failures)
        selected_kinds |= set(selected)
    # Not vacuous: the Rollout's pod template and the Ingress's host are both checked.
    assert {"PlatformAllowedRegistries", "PlatformPodRestricted", "PlatformRequiredProbes", "PlatformTenantIngressHosts"} <= selected_kinds


def test_the_constraints_refuse_another_tenants_host_and_an_unpulled_image(plan: dict) -> None:
    documents = {d["kind"]: d for d in _documents(plan, "ops", "prod")}
    ingress = copy.deepcopy(documents["Ingress"])
    ingress["metadata"]["namespace"] = f"{TENANT}-prod"
    ingress["spec"]["rules"][0]["host"] = ingress["spec"]["rules"][0]["host"].replace(TENANT, "checkout", 1)
    assert any("PlatformTenantIngressHosts" in f for f in admission(plan, "prod", ingress)[1])
    rollout = copy.deepcopy(documents["Rollout"])
    rollout["metadata"]["namespace"] = f"{TENANT}-prod"
    rollout["spec"]["template"]["spec"]["containers"][0]["image"] = "docker.io/library/nginx:latest"
    assert any("PlatformAllowedRegistries" in f for f in admission(plan, "prod", rollout)[1])


def test_prod_runs_a_canary_whose_failed_analysis_aborts_it(plan: dict) -> None:
    documents = {d["kind"]: d for d in _documents(plan, "ops", "prod")}
    canary = documents["Rollout"]["spec"]["strategy"]["canary"]
    # Background analysis from the first pause on: a failed run aborts the Rollout, which scales
    # the canary back to the stable ReplicaSet (Argo Rollouts' behaviour for a failed AnalysisRun).
    assert canary["analysis"]["templates"] == [{"templateName": documents["AnalysisTemplate"]["metadata"]["name"]}]
    assert [s for s in canary["steps"] if "setWeight" in s] == [{"setWeight": 20}, {"setWeight": 50}]
    [metric] = documents["AnalysisTemplate"]["spec"]["metrics"]
    assert metric["failureLimit"] == 0 and metric["successCondition"] == f"result[0] <= {tenant_rollout.MAX_ERROR_RATE}"
    assert metric["provider"]["prometheus"]["address"] == prometheus.QUERY_URL
    assert metric["provider"]["prometheus"]["headers"] == [{"key": "X-Platform-Namespace", "value": f"{TENANT}-prod"}]
    [arg] = canary["analysis"]["args"]
    assert arg == {"name": "service", "value": f"{TENANT}-prod-app-{tenant_rollout.SERVICE_PORT}@kubernetes"}
    # The query selects Traefik's counter for exactly the Service the Ingress routes to.
    backend = documents["Ingress"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert arg["value"] == f"{TENANT}-prod-{backend['name']}-{backend['port']['number']}@kubernetes"
    # dev: blue-green, the Ingress on the active Service.
    dev = {d["kind"]: d for d in _documents(plan, "ops-dev", "dev")}
    blue_green = dev["Rollout"]["spec"]["strategy"]["blueGreen"]
    assert blue_green["activeService"] == dev["Ingress"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
    assert "AnalysisTemplate" not in dev


def test_promotion_carries_only_the_image(plan: dict) -> None:
    # ops and ops-dev start with the same files, so a merge request from ops-dev into ops merges cleanly.
    index = Plan(plan)
    for path in [".gitlab-ci.yml", *(tenant_rollout.manifest_path(e) for e in ENVIRONMENTS)]:
        assert index.starter(TENANT, "ops", path) == index.starter(TENANT, "ops-dev", path), path
    bump = "\n".join(index.pipeline(TENANT, "ops-dev")["bump-image"]["script"])
    assert all(tenant_rollout.manifest_path(e) in bump for e in ENVIRONMENTS)


def test_prometheus_scrapes_the_ingress_controller(charted: dict, plan: dict) -> None:
    for cluster in ENVIRONMENTS:
        config_map = next(o for o in _release(plan, cluster, "prometheus")["rendered"]
                          if o["kind"] == "ConfigMap" and "prometheus.yml" in o.get("data", {}))
        jobs = {j["job_name"]: j for j in yaml.safe_load(config_map["data"]["prometheus.yml"])["scrape_configs"]}
        assert sorted(jobs) == ["ingress", "prometheus"]
        job = jobs["ingress"]
        assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": [workload_ingress.NAMESPACE]}}]
        traefik = _release(plan, cluster, "traefik")
        assert traefik["inputs"]["namespace"] == workload_ingress.NAMESPACE
        [deployment] = [o for o in traefik["rendered"] if o["kind"] == "Deployment"]
        ports = {p["name"] for c in deployment["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        assert workload_ingress.METRICS_PORT in ports
        args = [a for c in deployment["spec"]["template"]["spec"]["containers"] for a in c.get("args", [])]
        assert "--metrics.prometheus.addServicesLabels=true" in args
        # The tenants' NetworkPolicies admit exactly these pods.
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert workload_ingress.POD_LABELS.items() <= labels.items()


def test_tenant_namespaces_admit_only_the_ingress_controller_from_outside(plan: dict) -> None:
    [policy] = [r["inputs"] for r in plan["resources"] if r["type"] == "kubernetes:networking.k8s.io/v1:NetworkPolicy"
                and r["inputs"]["metadata"] == {**r["inputs"]["metadata"], "name": "tenant-default-deny", "namespace": f"{TENANT}-prod"}]
    assert policy["spec"]["ingress"] == [
        {"from": [{"podSelector": {}}]},
        {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": workload_ingress.NAMESPACE}},
                   "podSelector": {"matchLabels": workload_ingress.POD_LABELS}}]},
    ]


def test_the_wildcard_certificate_comes_from_acme_or_the_program_never_a_ca_on_the_cluster(plan: dict) -> None:
    """EKS: cert-manager's ACME ClusterIssuer. Kubeconfig stacks: the program signs it with the platform root, and the
    cluster has no ClusterIssuer (no CA key: tests/test_workload_reader_attacks.py)."""
    eks = plan["outputs"]["clusters"]["prod"]["eks"]
    for cluster in ENVIRONMENTS:
        issuers = {r["inputs"]["metadata"]["name"] for r in plan["resources"] if r["cluster"] == cluster
                   and r["type"] == "kubernetes:cert-manager.io/v1:ClusterIssuer"}
        certificates = [r for r in plan["resources"] if r["name"] == f"{cluster}-workload-ingress-wildcard"
                        and r["type"] == "kubernetes:cert-manager.io/v1:Certificate"]
        if eks:
            [certificate] = certificates
            assert issuers == {certificate["inputs"]["spec"]["issuerRef"]["name"]} == {"platform-acme"}
            continue
        assert issuers == set() and certificates == []
        [signed] = [r for r in plan["resources"] if r["name"] == f"{cluster}-workload-ingress-wildcard"
                    and r["type"] == "tls:index/locallySignedCert:LocallySignedCert"]
        root = _named(plan, "tls:index/privateKey:PrivateKey", "platform-tls-ca")
        assert root["urn"] in signed["dependsOn"] and not signed["inputs"].get("isCaCertificate")
        [secret] = [r for r in plan["resources"] if r["name"] == f"{cluster}-workload-ingress-wildcard"
                    and r["type"] == "kubernetes:core/v1:Secret"]
        assert secret["inputs"]["metadata"] == {"name": workload_ingress.WILDCARD_SECRET, "namespace": workload_ingress.NAMESPACE}
        assert signed["urn"] in secret["dependsOn"]


def test_argocd_keeps_its_built_in_rollout_health(plan: dict) -> None:
    # ArgoCD (the pinned chart's v3.4.4) ships a health check for argoproj.io/Rollout
    # (resource_customizations/argoproj.io/Rollout/health.lua: an aborted Rollout is Degraded).
    # The platform neither overrides it nor excludes argoproj.io from ArgoCD's view.
    [argocd] = [r for r in plan["resources"] if r["type"] == RELEASE and r["inputs"].get("chart") == "argo-cd"]
    cm = json.dumps(argocd["inputs"]["values"]["configs"]["cm"])
    assert "resource.customizations" not in cm and "resource.exclusions" not in cm
    blacklist = [r for r in plan["resources"] if r["type"] == "kubernetes:argoproj.io/v1alpha1:AppProject"][0]
    assert not [k for k in blacklist["inputs"]["spec"]["namespaceResourceBlacklist"] if k["group"] == "argoproj.io"]


def test_new_credentials_are_in_the_inventory(plan: dict) -> None:
    credentials = plan["outputs"]["credentials"]
    entries = {c["what"]: c for c in credentials}
    eks = plan["outputs"]["clusters"]["prod"]["eks"]
    for cluster in ENVIRONMENTS:
        assert entries[f"service-account token of Prometheus on {cluster}"]["lifetimeSeconds"] == 3600
        assert entries[f"service-account token of Argo Rollouts on {cluster}"]["lifetimeSeconds"] == 3600
        assert entries[f"serving certificate of metrics-server on {cluster}"]["lifetimeSeconds"] == 90 * 86400
        [issuer] = [entries[f"ACME account key on {cluster}"]] if eks else [
            c for what, c in entries.items() if what.startswith(f"wildcard certificate *.{cluster}.") and what.endswith(f" on {cluster}")]
        assert issuer["rotation"]
        if eks:  # cert-manager's own IAM role on each cluster, for Route 53
            assert any(c["holder"] == f"service account cert-manager/cert-manager on {cluster}" for c in credentials)
        # The controller inside a vCluster tenant's virtual cluster, and every other pod there: the syncer mints their
        # tokens for 10 years, bound to the pod (components/tenant.py SYNCED_TOKEN_SECONDS), named by the release that makes it.
        inside = entries[f"service-account tokens inside the virtual cluster {VIRTUAL_TENANT}-{cluster} on {cluster}"]
        assert inside["lifetimeSeconds"] == 10 * 365 * 86400 and "until its virtual pod is deleted" in inside["lifetime"]
        assert "Argo Rollouts" in inside["holder"] and "nothing on the host" in inside["scope"]
        [release] = inside["resources"]
        assert _named(plan, RELEASE, release)["inputs"]["namespace"] == f"{VIRTUAL_TENANT}-{cluster}"
