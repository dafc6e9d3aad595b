"""The golden path through a plan, hop by hop: what carries a tenant's commit to its users.

Each hop names the resources, rules and credentials that must stand behind it in the plan; `walk`
goes through them in order and stops at the first hop with something missing, naming it and
what is missing. The hops are read from the plan only (types, names, inputs, dependencies and
what the charts render), so a hop holds exactly when the program declares it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from components.tenant_supply_chain import PROTECTED_RUNNER_TAG

RELEASE = "kubernetes:helm.sh/v3:Release"
PROJECT = "gitlab:index/project:Project"
REPOSITORY_FILE = "gitlab:index/repositoryFile:RepositoryFile"


class Plan:
    """A plan document, indexed for the hops."""

    def __init__(self, plan: dict[str, Any]):
        self.plan = plan
        self.resources: list[dict[str, Any]] = plan["resources"]

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if r["type"] == type_]

    def named(self, type_: str, name: str) -> dict[str, Any] | None:
        return next((r for r in self.of_type(type_) if r["name"] == name), None)

    def objects(self, cluster: str, kind: str) -> Iterator[dict[str, Any]]:
        """Kubernetes objects of `kind` on `cluster`: declared directly or rendered by a release."""
        for r in self.resources:
            if r.get("cluster") != cluster or not r["type"].startswith("kubernetes:"):
                continue
            if r["type"] == RELEASE:
                yield from (o for o in r.get("rendered") or [] if o.get("kind") == kind)
            elif r["inputs"].get("kind") == kind:
                yield r["inputs"]

    def releases(self, cluster: str, chart: str) -> list[dict[str, Any]]:
        return [r for r in self.of_type(RELEASE) if r.get("cluster") == cluster and r["inputs"].get("chart") == chart]

    def starter(self, tenant: str, project: str, path: str) -> str | None:
        """A starter file's content in one of the tenant's projects."""
        return next((r["inputs"]["content"] for r in self.of_type(REPOSITORY_FILE)
                     if r["name"].startswith(f"{tenant}-repositories-{project}-starter-") and r["inputs"]["filePath"] == path), None)

    def documents(self, tenant: str, project: str, path: str) -> list[dict[str, Any]]:
        content = self.starter(tenant, project, path)
        return [d for d in yaml.safe_load_all(content) if d] if content else []

    def pipeline(self, tenant: str, project: str) -> dict[str, Any]:
        return yaml.safe_load(self.starter(tenant, project, ".gitlab-ci.yml") or "{}") or {}

    def variable(self, tenant: str, project: str, key: str) -> str | None:
        found = self.named("gitlab:index/projectVariable:ProjectVariable", f"{tenant}-repositories-{project}-{key.lower()}")
        return found["inputs"]["value"] if found else None

    def domain(self, tenant: str) -> str:
        return (self.variable(tenant, "app", "HARBOR_REGISTRY") or "harbor.").removeprefix("harbor.")

    def app_host(self, tenant: str) -> str:
        """The host the tenant's prod Ingress (its starter `prod/app.yaml`) serves: `<tenant>.prod.<appsDomain>`, under
        platform:appsDomain, which the plan names nowhere else ("" without one)."""
        ingress = next((d for d in self.documents(tenant, "ops", "prod/app.yaml") if d["kind"] == "Ingress"), {})
        hosts = [r.get("host", "") for r in ingress.get("spec", {}).get("rules", [])]
        return hosts[0] if hosts and hosts[0].startswith(f"{tenant}.prod.") else ""


def _need(condition: object, what: str) -> list[str]:
    return [] if condition else [what]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def _script(job: dict[str, Any]) -> str:
    return "\n".join(job.get("script") or [])


# --- the hops -------------------------------------------------------------------------------------

def push(p: Plan, tenant: str) -> list[str]:
    app = p.named(PROJECT, f"{tenant}-repositories-app")
    missing = _need(app, f"GitLab project {tenant}/app")
    missing += _need(p.pipeline(tenant, "app"), f"starter pipeline .gitlab-ci.yml in {tenant}/app")
    missing += [f"CI variable {key} in {tenant}/app" for key in ("HARBOR_REGISTRY", "HARBOR_PROJECT", "VAULT_ADDR", "VAULT_ROLE")
                if p.variable(tenant, "app", key) is None]
    return missing


def runner(p: Plan, tenant: str) -> list[str]:
    """Group runners of the tenant's GitLab group, for its untagged jobs (the build) and for its jobs
    tagged PROTECTED_RUNNER_TAG (the release), each with its token reaching a gitlab-runner release through a Secret."""
    group = p.named("gitlab:index/group:Group", f"{tenant}-repositories-group")
    app = p.named(PROJECT, f"{tenant}-repositories-app")
    if group is None or app is None:
        return [f"GitLab group {tenant}"]
    kinds: dict[str, Callable[[dict[str, Any]], bool]] = {
        "its untagged jobs": lambda inputs: inputs.get("untagged") is True,
        f"its jobs tagged {PROTECTED_RUNNER_TAG}": lambda inputs: PROTECTED_RUNNER_TAG in (inputs.get("tagLists") or []),
    }
    for what, takes in kinds.items():
        runners = [r for r in p.of_type("gitlab:index/userRunner:UserRunner")
                   if r["inputs"].get("runnerType") == "group_type" and r["inputs"].get("groupId") == app["inputs"]["namespaceId"]
                   and group["urn"] in r["dependsOn"] and takes(r["inputs"])]
        if not runners:
            return [f"a gitlab UserRunner (runnerType group_type) of the GitLab group {tenant} for {what}"]
        secrets = [s for s in p.of_type("kubernetes:core/v1:Secret") if any(r["urn"] in s["dependsOn"] for r in runners)]
        if not secrets:
            return [f"a Secret holding the token of {tenant}'s UserRunner for {what}"]
        names = {s["inputs"]["metadata"]["name"] for s in secrets}
        releases = [r for r in p.of_type(RELEASE) if r["inputs"].get("chart") == "gitlab-runner"
                    and names & set(_strings(r["inputs"].get("values")))]
        if not releases:
            return [f"a gitlab-runner Helm release reading the Secret {sorted(names)}"]
    return []


def build_and_push(p: Plan, tenant: str) -> list[str]:
    pipeline = p.pipeline(tenant, "app")
    robot = p.named("harbor:index/robotAccount:RobotAccount", f"{tenant}-registry-push")
    pushes = robot is not None and any(
        a["action"] == "push" and perm["namespace"] == tenant for perm in robot["inputs"]["permissions"] for a in perm["accesses"]
    )
    role = p.named("vault:jwt/authBackendRole:AuthBackendRole", f"{tenant}-ci")
    missing = _need(p.named("harbor:index/project:Project", f"{tenant}-registry-project"), f"Harbor project {tenant}")
    missing += _need(pushes, f"a Harbor robot pushing to {tenant}")
    missing += _need(p.named("vault:kv/secretV2:SecretV2", f"{tenant}-registry-push"), f"the push robot in Vault ({tenant}/harbor-push)")
    missing += _need(role and role["inputs"]["boundClaims"].get("project_path") == f"{tenant}/app",
                     f"a Vault CI role for {tenant}/app's jobs")
    missing += _need("buildah build" in _script(pipeline.get("build", {})), "a build job")
    missing += _need("buildah push" in _script(pipeline.get("push", {})), "a push job")
    return missing


def _trivy_databases(p: Plan, tenant: str) -> list[str]:
    """The scan job reads Trivy's databases from Harbor's `approved` (its jobs reach nothing else),
    where the promoter robot copies them from the ghcr.io proxy cache (.gitlab-ci.yml promote-trivy-db-<stack>)."""
    host = p.variable(tenant, "app", "HARBOR_REGISTRY")
    variables = p.pipeline(tenant, "app").get("scan", {}).get("variables") or {}
    read = [variables.get(key, "") for key in ("TRIVY_DB_REPOSITORY", "TRIVY_JAVA_DB_REPOSITORY")]
    approved = p.named("harbor:index/project:Project", "public-images-approved")
    robot = p.named("harbor:index/robotAccount:RobotAccount", "image-promotion-promoter")
    grants = {(m["namespace"], a["action"]) for m in (robot["inputs"]["permissions"] if robot else []) for a in m["accesses"]}
    missing = _need(all(r.startswith(f"{host}/approved/ghcr.io/aquasecurity/") for r in read),
                    "Trivy's databases read from Harbor's approved project in the scan job")
    missing += _need(approved and approved["inputs"]["public"], "a public approved project (the scan job pulls without a login)")
    missing += _need(p.named("harbor:index/project:Project", "public-images-proxy-ghcr-io")
                     and {("proxy-ghcr-io", "pull"), ("approved", "push")} <= grants,
                     "the promoter robot copying Trivy's databases from proxy-ghcr-io into approved")
    return missing


def scan_gate(p: Plan, tenant: str) -> list[str]:
    project = p.named("harbor:index/project:Project", f"{tenant}-registry-project")
    inputs = project["inputs"] if project else {}
    missing = _need(inputs.get("vulnerabilityScanning"), f"scan on push in Harbor project {tenant}")
    missing += _need(inputs.get("deploymentSecurity") not in (None, "", "none"), f"a pull gate by severity on Harbor project {tenant}")
    missing += _need("trivy image" in _script(p.pipeline(tenant, "app").get("scan", {})), "a scan job")
    return missing + _trivy_databases(p, tenant)


def signature(p: Plan, tenant: str) -> list[str]:
    key = f"{tenant}-cosign"
    role = p.named("vault:jwt/authBackendRole:AuthBackendRole", f"{tenant}-ci")
    policies = {r["inputs"]["name"]: r["inputs"]["policy"] for r in p.of_type("vault:index/policy:Policy")}
    signs = role is not None and any(f"transit/sign/{key}" in policies.get(name, "") for name in role["inputs"]["tokenPolicies"])
    project = p.named("harbor:index/project:Project", f"{tenant}-registry-project")
    missing = _need(p.named("vault:transit/secretBackendKey:SecretBackendKey", f"{tenant}-secrets-cosign"), f"transit key {key}")
    missing += _need(signs, f"a CI role allowed to sign with {key}")
    missing += _need(f"hashivault://{key}" in _script(p.pipeline(tenant, "app").get("sign", {})), "a sign job")
    missing += _need(project and project["inputs"].get("enableContentTrustCosign"), f"cosign content trust on Harbor project {tenant}")
    missing += _need(p.releases("prod", "policy-controller"), "the image signature verifier at admission on prod")
    return missing


def tag_bump(p: Plan, tenant: str) -> list[str]:
    trigger = (p.pipeline(tenant, "app").get("bump-ops-dev") or {}).get("trigger", {})
    ops_dev = p.named(PROJECT, f"{tenant}-repositories-ops-dev")
    bump = _script(p.pipeline(tenant, "ops-dev").get("bump-image", {}))
    missing = _need(trigger.get("project") == f"{tenant}/ops-dev", f"a job triggering {tenant}/ops-dev")
    missing += _need(ops_dev and ops_dev["inputs"].get("ciPushRepositoryForJobTokenAllowed"), "ops-dev letting its job token push")
    # The trigger passes IMAGE_TAG as a pipeline variable, as whoever pushed the release tag (an owner).
    missing += _need(ops_dev and ops_dev["inputs"].get("ciPipelineVariablesMinimumOverrideRole") in ("owner", "maintainer", "developer"),
                     "ops-dev taking the release trigger's IMAGE_TAG from an owner")
    missing += _need("dev/app.yaml" in bump and "merge_request.create" in bump, "a bump-image job opening a merge request")
    return missing


def _application_set(p: Plan, tenant: str, environment: str) -> dict[str, Any]:
    found = p.named("kubernetes:argoproj.io/v1alpha1:ApplicationSet", f"{tenant}-delivery-{environment}-apps")
    return found["inputs"]["spec"]["template"]["spec"]["source"] if found else {}


def argocd(p: Plan, tenant: str) -> list[str]:
    repository = p.named("kubernetes:core/v1:Secret", f"{tenant}-repositories-ops-dev-argocd-repository")
    source = _application_set(p, tenant, "dev")
    missing = _need(repository, f"ArgoCD's repository Secret for {tenant}/ops-dev")
    missing += _need(p.named("gitlab:index/deployKey:DeployKey", f"{tenant}-repositories-ops-dev-deploy-key"), "a deploy key on ops-dev")
    missing += _need(p.named("kubernetes:argoproj.io/v1alpha1:AppProject", f"{tenant}-delivery-dev-project"), "the AppProject")
    missing += _need(source.get("repoURL", "").endswith(f"{tenant}/ops-dev.git") and source.get("path") == "dev",
                     "an ApplicationSet deploying ops-dev's dev/")
    return missing


def _rollout(p: Plan, tenant: str, project: str, environment: str) -> dict[str, Any]:
    return next((d for d in p.documents(tenant, project, f"{environment}/app.yaml") if d["kind"] == "Rollout"), {})


def _virtual_cluster(p: Plan, tenant: str, cluster: str) -> dict[str, Any] | None:
    """The values of the tenant's virtual cluster on `cluster` (isolation vcluster), else None."""
    found = [r for r in p.releases(cluster, "vcluster") if r["inputs"].get("namespace") == f"{tenant}-{cluster}"]
    return found[0]["inputs"]["values"] if found else None


def _inside(virtual: dict[str, Any]) -> dict[str, Any]:
    return virtual.get("experimental", {}).get("deploy", {}).get("vcluster", {})


def _controller(p: Plan, tenant: str, cluster: str) -> list[str]:
    """The Argo Rollouts controller that runs the tenant's Rollouts: the cluster's, or the one its
    virtual cluster installs inside (with the CRDs: the chart's default)."""
    virtual = _virtual_cluster(p, tenant, cluster)
    if virtual is not None:
        charts = [h for h in _inside(virtual).get("helm") or [] if h["chart"]["name"] == "argo-rollouts"]
        installs_crds = charts and (yaml.safe_load(charts[0].get("values") or "{}") or {}).get("installCRDs", True)
        return _need(installs_crds, f"Argo Rollouts and its CRDs inside {tenant}'s virtual cluster on {cluster}")
    crds = {o["metadata"]["name"] for o in p.objects(cluster, "CustomResourceDefinition")}
    return _need({"rollouts.argoproj.io", "analysistemplates.argoproj.io"} <= crds, f"Argo Rollouts and its CRDs on {cluster}")


def _deployer_may_write(p: Plan, tenant: str, cluster: str, resource: str) -> list[str]:
    """ArgoCD's federated role where the tenant's apps go: on the cluster, or inside its virtual cluster."""
    virtual = _virtual_cluster(p, tenant, cluster)
    roles = (p.objects(cluster, "ClusterRole") if virtual is None
             else (d for d in yaml.safe_load_all(_inside(virtual).get("manifests") or "") if d and d["kind"] == "ClusterRole"))
    may = any(rule for role in roles if role["metadata"]["name"] == "platform-argocd-federated"
              for rule in role.get("rules", []) if "argoproj.io" in rule["apiGroups"] and resource in rule["resources"]
              and "create" in rule["verbs"])
    where = cluster if virtual is None else f"{tenant}'s virtual cluster on {cluster}"
    return _need(may, f"ArgoCD's federated role deploying {resource} in {where}")


def dev_rollout(p: Plan, tenant: str) -> list[str]:
    missing = _need(_rollout(p, tenant, "ops-dev", "dev"), f"a Rollout in {tenant}/ops-dev dev/app.yaml")
    missing += _controller(p, tenant, "dev")
    missing += _deployer_may_write(p, tenant, "dev", "rollouts")
    return missing


def promotion(p: Plan, tenant: str) -> list[str]:
    ops, ops_dev = p.named(PROJECT, f"{tenant}-repositories-ops"), p.named(PROJECT, f"{tenant}-repositories-ops-dev")
    main = p.named("gitlab:index/branchProtection:BranchProtection", f"{tenant}-repositories-ops-main")
    missing = _need(ops and ops_dev and ops["urn"] in ops_dev["dependsOn"] and ops_dev["inputs"].get("forkedFromProjectId"),
                    "ops-dev forked from ops (merge requests from ops-dev into ops)")
    missing += _need(main and main["inputs"]["mergeAccessLevel"] == "maintainer", "ops main merged by owners only")
    missing += _need(_application_set(p, tenant, "prod").get("path") == "prod", "an ApplicationSet deploying ops's prod/")
    return missing


def prod_canary(p: Plan, tenant: str) -> list[str]:
    documents = p.documents(tenant, "ops", "prod/app.yaml")
    canary = _rollout(p, tenant, "ops", "prod").get("spec", {}).get("strategy", {}).get("canary", {})
    names = {t["templateName"] for t in canary.get("analysis", {}).get("templates", [])}
    templates = [d for d in documents if d["kind"] == "AnalysisTemplate" and d["metadata"]["name"] in names]
    addresses = {m["provider"]["prometheus"]["address"] for t in templates for m in t["spec"]["metrics"] if "prometheus" in m["provider"]}
    services = _prometheus_urls(p, "prod")
    missing = _need(canary.get("steps"), "a canary Rollout in ops prod/app.yaml")
    missing += _need(templates, "an AnalysisTemplate the canary runs")
    missing += _controller(p, tenant, "prod")
    missing += _need(addresses and addresses <= services, f"the Prometheus the analysis queries ({sorted(addresses)}) on prod")
    missing += _deployer_may_write(p, tenant, "prod", "analysistemplates")
    virtual = _virtual_cluster(p, tenant, "prod")
    if virtual is not None:
        missing += _prometheus_inside(p, tenant, virtual, addresses)
    return missing


def _url(service: str) -> str:
    namespace, _, name = service.partition("/")
    return f"http://{name}.{namespace}.svc.cluster.local"


def _prometheus_urls(p: Plan, cluster: str) -> set[str]:
    """Where a query reaches a Prometheus release on `cluster`: its Services, and the Services of the
    query proxies (prom-label-proxy) whose upstream is one of those."""
    servers = {f"http://{s['metadata']['name']}.{r['inputs']['namespace']}.svc.cluster.local"
               for r in p.releases(cluster, "prometheus") for s in r.get("rendered") or [] if s["kind"] == "Service"}
    proxies = {(d["metadata"].get("namespace"), d["metadata"]["name"]) for d in p.objects(cluster, "Deployment")
               for c in d["spec"]["template"]["spec"]["containers"] if {f"-upstream={url}" for url in servers} & set(c.get("args") or [])}
    return servers | {_url(f"{s['metadata'].get('namespace')}/{s['metadata']['name']}") for s in p.objects(cluster, "Service")
                      if (s["metadata"].get("namespace"), s["metadata"]["name"]) in proxies}


def _prometheus_inside(p: Plan, tenant: str, virtual: dict[str, Any], addresses: set[str]) -> list[str]:
    """The controller inside a virtual cluster reaches the host's Prometheus under the name the
    analysis uses: a host Service that reaches it replicated in under that name, and the host
    namespace's NetworkPolicy letting its pod out to it."""
    reaching = _prometheus_urls(p, "prod")
    named = {_url(m["to"]) for m in virtual.get("networking", {}).get("replicateServices", {}).get("fromHost") or [] if _url(m["from"]) in reaching}
    prometheus = {r["inputs"]["namespace"] for r in p.releases("prod", "prometheus")}
    let_out = any(
        policy["spec"]["podSelector"].get("matchLabels", {}).get("vcluster.loft.sh/namespace") == "argo-rollouts"
        and peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") in prometheus
        for policy in p.objects("prod", "NetworkPolicy") if policy["metadata"].get("namespace") == f"{tenant}-prod"
        for rule in policy["spec"].get("egress") or [] for peer in rule.get("to") or []
    )
    missing = _need(addresses <= named, f"the Prometheus Service replicated into {tenant}'s virtual cluster on prod")
    missing += _need(let_out, f"{tenant}-prod's NetworkPolicy letting the controller inside reach Prometheus")
    return missing


def _ingress_namespaces(p: Plan, cluster: str) -> set[str]:
    return {r["inputs"]["namespace"] for r in p.releases(cluster, "traefik")}


def ingress_tls(p: Plan, tenant: str) -> list[str]:
    host = p.app_host(tenant)
    namespaces = _ingress_namespaces(p, "prod")
    wildcard = f"*.{host.split('.', 1)[-1]}"
    # cert-manager's (ACME), or a Secret the program signs (pulumi-tls, kubeconfig stacks: components/tls.py).
    certificates = {c["spec"]["secretName"] for c in p.objects("prod", "Certificate") if wildcard in c["spec"]["dnsNames"]}
    requests = {r["urn"] for r in p.of_type("tls:index/certRequest:CertRequest") if wildcard in r["inputs"].get("dnsNames", [])}
    signed = {r["urn"] for r in p.of_type("tls:index/locallySignedCert:LocallySignedCert") if requests & set(r["dependsOn"])}
    certificates |= {r["inputs"]["metadata"]["name"] for r in p.of_type("kubernetes:core/v1:Secret")
                     if r.get("cluster") == "prod" and signed & set(r["dependsOn"])}
    stores = [s for s in p.objects("prod", "TLSStore") if s["metadata"]["name"] == "default"
              and s["metadata"].get("namespace") in namespaces and s["spec"]["defaultCertificate"]["secretName"] in certificates]
    hosts = [c["spec"]["parameters"]["hosts"] for c in p.objects("prod", "PlatformTenantIngressHosts")
             if c["spec"]["match"].get("namespaces") == [f"{tenant}-prod"]]
    admitted = any(
        peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") in namespaces
        for policy in p.objects("prod", "NetworkPolicy") if policy["metadata"].get("namespace") == f"{tenant}-prod"
        for rule in policy["spec"].get("ingress") or [] for peer in rule.get("from") or []
    )
    missing = _need(namespaces, "an ingress controller on prod")
    missing += _need(host, f"an Ingress for {tenant}.prod.<appsDomain>")
    missing += _need(stores, f"a wildcard certificate {wildcard} served by default")
    missing += _need(hosts and host in hosts[0], f"a Gatekeeper rule letting {tenant}-prod serve {host}")
    missing += _need(admitted, f"{tenant}-prod's NetworkPolicy admitting the ingress controller")
    virtual = _virtual_cluster(p, tenant, "prod")
    synced = virtual is None or virtual.get("sync", {}).get("toHost", {}).get("ingresses", {}).get("enabled")
    missing += _need(synced, f"{tenant}'s virtual cluster syncing its Ingress to the host's ingress controller")
    return missing


def users(p: Plan, tenant: str) -> list[str]:
    services = [s for r in p.releases("prod", "traefik") for s in r.get("rendered") or []
                if s["kind"] == "Service" and s["spec"].get("type") == "LoadBalancer"]
    records = p.of_type("aws:route53/record:Record")
    eks = (p.plan["outputs"].get("clusters") or {}).get("prod", {}).get("eks")
    missing = _need(services, "a LoadBalancer Service of the prod ingress controller")
    if eks:
        wildcard = f"*.{p.app_host(tenant).split('.', 1)[-1]}"
        missing += _need([r for r in records if r["inputs"]["name"] == wildcard], f"a DNS record {wildcard}")
    return missing


@dataclass(frozen=True)
class Hop:
    name: str
    check: Callable[[Plan, str], list[str]]  # what is missing for this tenant; [] when the hop stands


HOPS: tuple[Hop, ...] = (
    Hop("push to the tenant's app repository", push),
    Hop("runner job", runner),
    Hop("image built and pushed to the tenant's Harbor project", build_and_push),
    Hop("scan gate", scan_gate),
    Hop("signature", signature),
    Hop("tag bump in ops-dev", tag_bump),
    Hop("ArgoCD", argocd),
    Hop("dev Rollout", dev_rollout),
    Hop("promotion merge request", promotion),
    Hop("prod canary with analysis", prod_canary),
    Hop("ingress with TLS", ingress_tls),
    Hop("users", users),
)


@dataclass(frozen=True)
class Gap:
    hop: str
    missing: list[str]

    def __str__(self) -> str:
        return f"the golden path stops at '{self.hop}': no {'; no '.join(self.missing)}"


def walk(plan: dict[str, Any], tenant: str, hops: tuple[Hop, ...] = HOPS) -> Gap | None:
    """The first hop with nothing behind it in `plan` for `tenant`, or None when the whole path stands."""
    indexed = Plan(plan)
    for hop in hops:
        missing = hop.check(indexed, tenant)
        if missing:
            return Gap(hop.name, missing)
    return None
