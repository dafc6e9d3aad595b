"""What the clusters receive: every Helm release of both stacks rendered by the real Helm engine.

The charts come from the local charts directory (`python -m platformctl charts fetch`, which
`.ci/run` does from ../shared/upstream/chart-src). Without them these tests skip on a
developer machine and fail in CI (CI=true), so CI can never pass without rendering.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any


from platformctl.helm_render import RELEASE_TYPE, object_namespace
from platformctl.render import ROOT, Render, read_stack_file
from stacks.services import PLATFORM_NAMESPACES
from stacks.config import load_platform_config
from stacks.platform import kubernetes_versions as versions_of
from tests.validation import custom_resource_errors, is_custom_resource, kubernetes_errors

UPSTREAM_SCHEMAS = ROOT.parent / "shared" / "upstream" / "schemas"
POD_OWNERS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}


def kubernetes_versions(stack: str) -> dict[str, str]:
    raw, secret_keys = read_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    return versions_of(load_platform_config(raw, stack=stack, source=stack, secret_keys=secret_keys))


def releases(renders: dict[str, Render]) -> Iterator[tuple[str, dict[str, Any]]]:
    for stack, result in renders.items():
        for resource in result.plan["resources"]:
            if resource["type"] == RELEASE_TYPE:
                yield stack, resource


def pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    kind = obj.get("kind")
    if kind == "Pod":
        return [obj.get("spec") or {}]
    if kind == "CronJob":
        return [obj["spec"]["jobTemplate"]["spec"]["template"].get("spec") or {}]
    if kind in POD_OWNERS:
        return [obj["spec"]["template"].get("spec") or {}]
    return []


def containers(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for spec in pod_specs(obj):
        yield from spec.get("initContainers") or []
        yield from spec.get("containers") or []


def test_every_release_renders_objects(charted: dict[str, Render]) -> None:
    rendered = list(releases(charted))
    assert len(rendered) >= 17
    for stack, release in rendered:
        assert release.get("rendered"), f"{stack} {release['name']}: no objects"
        assert all(obj.get("kind") and obj.get("apiVersion") for obj in release["rendered"])


def test_every_rendered_object_is_strictly_valid(charted: dict[str, Render]) -> None:
    errors = []
    checked: dict[tuple[str, str], list[str]] = {}  # the same object on several clusters is checked once
    for stack in charted:
        versions = kubernetes_versions(stack)
        for _, release in releases({stack: charted[stack]}):
            version = versions[release["cluster"]]
            for obj in release["rendered"]:
                key = (version, json.dumps(obj, sort_keys=True))
                if key not in checked:
                    checked[key] = (
                        custom_resource_errors(obj, UPSTREAM_SCHEMAS) if is_custom_resource(obj) else kubernetes_errors(obj, version)
                    )
                errors += [f"{stack} {release['name']} {obj['kind']}/{obj['metadata'].get('name')}: {e}" for e in checked[key]]
    assert not errors, "\n".join(errors)


def test_no_rendered_secret_holds_a_value(charted: dict[str, Render]) -> None:
    for _, release in releases(charted):
        for obj in release["rendered"]:
            if obj["kind"] == "Secret":
                for field in ("data", "stringData"):
                    assert set((obj.get(field) or {}).values()) <= {"[secret]"}


_UNTAGGED_OR_MOVING = re.compile(r"^(?:[^/]+/)*[^/:@]+(?::(latest|master|main))?$")


def test_no_rendered_image_is_untagged_or_a_moving_tag(charted: dict[str, Render]) -> None:
    bad = []
    for stack, release in releases(charted):
        for obj in release["rendered"]:
            for container in containers(obj):
                image = container.get("image", "")
                if "@sha256:" in image:
                    continue
                if _UNTAGGED_OR_MOVING.match(image.rsplit("@", 1)[0]) or ":" not in image.rsplit("/", 1)[-1]:
                    bad.append(f"{stack} {release['name']} {obj['kind']}/{obj['metadata']['name']} {container['name']}: {image}")
    assert not bad, "\n".join(bad)


# (chart, container) the chart renders without a `resources` field whatever the values say, and why.
UNSIZED = {
    ("dragonfly", "wait-for-scheduler"): "templates/client/client-daemonset.yaml (1.7.4) gives this init container no resources",
}


def test_every_rendered_container_has_requests_and_a_memory_limit(charted: dict[str, Render]) -> None:
    bad = []
    for stack, release in releases(charted):
        for obj in release["rendered"]:
            for container in containers(obj):
                if (release["inputs"]["chart"], container["name"]) in UNSIZED:
                    assert "resources" not in container, f"{container['name']} is sized now: remove it from UNSIZED"
                    continue
                resources = container.get("resources") or {}
                requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
                if not ({"cpu", "memory"} <= set(requests) and "memory" in limits):
                    bad.append(f"{stack} {release['name']} {obj['kind']}/{obj['metadata']['name']} {container['name']}: {resources}")
    assert not bad, f"{len(bad)} containers:\n" + "\n".join(bad)


def _referenced(spec: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(kind, name) of every Secret and ConfigMap a pod spec needs (optional references left out)."""
    for volume in spec.get("volumes") or []:
        if "secret" in volume and not volume["secret"].get("optional"):
            yield "Secret", volume["secret"]["secretName"]
        if "configMap" in volume and not volume["configMap"].get("optional"):
            yield "ConfigMap", volume["configMap"]["name"]
        for source in (volume.get("projected") or {}).get("sources") or []:
            for kind, key in (("Secret", "secret"), ("ConfigMap", "configMap")):
                if key in source and not source[key].get("optional"):
                    yield kind, source[key]["name"]
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for env in container.get("env") or []:
            ref = env.get("valueFrom") or {}
            for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                if key in ref and not ref[key].get("optional"):
                    yield kind, ref[key]["name"]
        for source in container.get("envFrom") or []:
            for kind, key in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
                if key in source and not source[key].get("optional"):
                    yield kind, source[key]["name"]


# Made at run time by something else the clusters run, by (kind, name): who makes it.
MADE_AT_RUN_TIME = {
    ("ConfigMap", "kube-root-ca.crt"): "kube-controller-manager, in every namespace",
    ("Secret", "argocd-redis"): "argo-cd's redis-secret-init hook Job (its Role names the Secret)",
    ("Secret", "orchestra"): "the OpenUnison operator, from the OpenUnison object orchestra renders",
    ("Secret", "metallb-memberlist"): "MetalLB's controller (its ML_SECRET_NAME), for the speakers' memberlist",
}
# GitLab's shared-secrets hook Job generates every Secret its script (this ConfigMap) names.
GITLAB_SHARED_SECRETS = "gitlab-shared-secrets"


def _available(plan: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    """(cluster, namespace, kind, name) of every Secret and ConfigMap the plan or a chart makes, or cert-manager issues."""
    found = set()
    for resource in plan["resources"]:
        inputs = resource.get("inputs") or {}
        metadata = inputs.get("metadata") or {}
        if inputs.get("kind") in ("Secret", "ConfigMap"):
            found.add((resource["cluster"], metadata.get("namespace"), inputs["kind"], metadata.get("name")))
        if inputs.get("kind") == "Certificate":
            found.add((resource["cluster"], metadata.get("namespace"), "Secret", inputs["spec"]["secretName"]))
        if inputs.get("kind") == "Ingress":
            for tls in (inputs.get("spec") or {}).get("tls") or []:
                found.add((resource["cluster"], metadata.get("namespace"), "Secret", tls.get("secretName")))
        for obj in resource.get("rendered", []):
            namespace = object_namespace(obj, inputs.get("namespace"))
            if obj["kind"] in ("Secret", "ConfigMap"):
                found.add((resource["cluster"], namespace, obj["kind"], obj["metadata"]["name"]))
            if obj["kind"] == "Ingress" and "cert-manager.io/cluster-issuer" in (obj["metadata"].get("annotations") or {}):
                for tls in obj["spec"].get("tls") or []:
                    found.add((resource["cluster"], namespace, "Secret", tls["secretName"]))
            if obj["kind"] == "Certificate":  # a chart's own cert-manager Certificate (metrics-server's)
                found.add((resource["cluster"], namespace, "Secret", obj["spec"]["secretName"]))
            if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == GITLAB_SHARED_SECRETS:
                script = json.dumps(obj["data"])
                found |= {(resource["cluster"], namespace, "Secret", name) for name in re.findall(r"gitlab-[a-z-]+", script)}
    return found


def test_every_secret_and_configmap_a_rendered_pod_needs_exists(charted: dict[str, Render]) -> None:
    missing = []
    for stack, result in charted.items():
        available = _available(result.plan)
        for _, release in releases({stack: result}):
            for obj in release["rendered"]:
                namespace = object_namespace(obj, release["inputs"]["namespace"])
                for spec in pod_specs(obj):
                    for kind, name in _referenced(spec):
                        key = (release["cluster"], namespace, kind, name)
                        if key not in available and (kind, name) not in MADE_AT_RUN_TIME:
                            missing.append(f"{stack} {release['name']} {obj['kind']}/{obj['metadata']['name']}: {kind} {namespace}/{name}")
    assert not missing, "\n".join(sorted(set(missing)))


def test_platform_namespaces_are_what_the_charts_install_into(charted: dict[str, Render]) -> None:
    namespaces = {release["inputs"]["namespace"] for _, release in releases(charted)}
    # Tenant vClusters install into tenant namespaces, tenant runners into runner-<tenant> (each the
    # tenant's own); everything else is the platform's own.
    assert {n for n in namespaces if not n.startswith(("catalog", "runner-"))} <= {n.name for n in PLATFORM_NAMESPACES}


def test_rendered_objects_are_filed_by_cluster_namespace_and_release(charted: dict[str, Render]) -> None:
    from platformctl.render import _rendered_files

    (argocd,) = [r for _, r in releases({"dev": charted["dev"]}) if r["name"] == "control-plane-argocd"]
    files = dict(_rendered_files(argocd, charted["dev"].manifests[argocd["urn"]]))
    assert "control-plane/argocd/helm-control-plane-argocd/Deployment-argocd-server.yaml" in files
    assert "control-plane/_cluster/helm-control-plane-argocd/CustomResourceDefinition-applications.argoproj.io.yaml" in files
    assert len(files) == len(argocd["rendered"])  # one file per object
    # The text kept with the rendered objects (the release cache's) is each object's own.
    assert files == dict(_rendered_files(argocd))


# --- what the render showed broken, each checked on the rendered objects ----------------


def rendered(charted: dict[str, Render], chart: str) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(stack, release, object) for every object a chart renders."""
    for stack, release in releases(charted):
        if release["inputs"]["chart"] == chart:
            for obj in release["rendered"]:
                yield stack, release, obj


def find(charted: dict[str, Render], chart: str, kind: str, name: str) -> list[dict[str, Any]]:
    found = [o for _, _, o in rendered(charted, chart) if o["kind"] == kind and o["metadata"]["name"] == name]
    assert found, f"{chart} renders no {kind} {name}"
    return found


def test_external_secrets_turns_off_the_reconcilers_of_the_crds_it_leaves_out(charted: dict[str, Render]) -> None:
    # The manager exits when it watches a kind whose CRD is not installed: both go off together.
    controllers = find(charted, "external-secrets", "Deployment", "external-secrets")
    assert len(controllers) == 4  # the two workload clusters, two stacks
    for controller in controllers:
        args = controller["spec"]["template"]["spec"]["containers"][0]["args"]
        assert "--enable-cluster-store-reconciler=false" in args
        assert "--enable-cluster-push-secret-reconciler=false" in args


def test_traefik_reaches_argocd_over_tls_it_verifies(charted: dict[str, Render]) -> None:
    """From its own namespace: the platform's IngressRoute there names an ExternalName Service for argocd-server's
    https port, which Traefik speaks HTTPS to through a transport beside it trusting only the internal CA that signs
    argocd-server-tls (its certificate alone, in a ConfigMap there), for a name that certificate holds."""
    from components.argocd import NAMESPACE, SERVER_TLS_SECRET
    from components.ingress import NAMESPACE as TRAEFIK

    for stack, result in charted.items():
        declared = {(r["inputs"].get("kind"), r["inputs"].get("metadata", {}).get("namespace"), r["inputs"].get("metadata", {}).get("name")):
                    r["inputs"] for r in result.plan["resources"] if r["cluster"] == "control-plane" and "kind" in r["inputs"]}
        (service,) = find({stack: result}, "argo-cd", "Service", "argocd-server")
        https = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "https")
        assert not [o for _, _, o in rendered({stack: result}, "argo-cd") if o["kind"] == "Ingress"]  # the chart's is off
        route = declared[("IngressRoute", TRAEFIK, "argocd")]
        [backend] = [s for r in route["spec"]["routes"] for s in r["services"]]
        external = declared[("Service", TRAEFIK, backend["name"])]
        assert external["spec"]["type"] == "ExternalName" and external["spec"]["externalName"] == f"argocd-server.{NAMESPACE}.svc.cluster.local"
        assert backend["port"] == https and [p["port"] for p in external["spec"]["ports"]] == [https]
        assert backend["scheme"] == "https"
        transport = declared[("ServersTransport", TRAEFIK, backend["serversTransport"])]
        [root] = transport["spec"]["rootCAs"]
        assert set(declared[("ConfigMap", TRAEFIK, root["configMap"])]["data"]) == {"ca.crt"}
        # argocd-server-tls: signed by the program's internal CA for argocd (components/backend_tls.py), not the public issuer.
        assert declared[("Secret", NAMESPACE, SERVER_TLS_SECRET)]["type"] == "kubernetes.io/tls"
        [request] = [r["inputs"] for r in result.plan["resources"] if r["type"] == "tls:index/certRequest:CertRequest"
                     and r["name"] == "control-plane-argocd-tls"]
        assert transport["spec"]["serverName"] in request["dnsNames"]
        (params,) = find({stack: result}, "argo-cd", "ConfigMap", "argocd-cmd-params-cm")
        assert params["data"].get("server.insecure") in (None, "false")
        # The public certificate is Traefik's own, apart from argocd-server's.
        assert route["spec"]["tls"]["secretName"] != SERVER_TLS_SECRET


def test_gatekeeper_keeps_two_webhooks_answering_through_a_restart_or_drain(charted: dict[str, Render]) -> None:
    for controller in find(charted, "gatekeeper", "Deployment", "gatekeeper-controller-manager"):
        assert controller["spec"]["replicas"] >= 3
        anti = controller["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
        terms = anti["preferredDuringSchedulingIgnoredDuringExecution"]
        assert any(t["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname" for t in terms)
    for pdb in find(charted, "gatekeeper", "PodDisruptionBudget", "gatekeeper-controller-manager"):
        assert pdb["spec"]["minAvailable"] == 2
    for webhook in find(charted, "gatekeeper", "ValidatingWebhookConfiguration", "gatekeeper-validating-webhook-configuration"):
        assert {w["failurePolicy"] for w in webhook["webhooks"]} == {"Fail"}


def test_traefik_gives_large_uploads_time_to_arrive(charted: dict[str, Render]) -> None:
    from components.ingress import READ_TIMEOUT

    controllers = [o for _, r, o in rendered(charted, "traefik") if r["cluster"] == "control-plane" and o["kind"] == "Deployment"]
    assert len(controllers) == 2  # the workload clusters' (tenants' apps) take no uploads
    for traefik in controllers:
        args = traefik["spec"]["template"]["spec"]["containers"][0]["args"]
        assert f"--entryPoints.websecure.transport.respondingTimeouts.readTimeout={READ_TIMEOUT}" in args
        assert int(READ_TIMEOUT.removesuffix("s")) >= 1800


def test_virtual_clusters_run_their_hosts_kubernetes_minor(charted: dict[str, Render]) -> None:
    checked = 0
    for stack, release, obj in rendered(charted, "vcluster"):
        host = kubernetes_versions(stack)[release["cluster"]]
        for container in containers(obj):
            if "/loft-sh/kubernetes:" in container["image"]:
                assert container["image"].rsplit(":", 1)[1].startswith(f"v{host}."), container["image"]
                checked += 1
    assert checked >= 2


def test_openunison_is_not_stamped_with_the_render_time(charted: dict[str, Render]) -> None:
    for openunison in find(charted, "orchestra", "OpenUnison", "orchestra"):
        assert "helm-update" not in (openunison["metadata"].get("annotations") or {})


def test_harbor_core_mounts_the_ca_it_offers_for_download(charted: dict[str, Render]) -> None:
    """The platform CA's certificate: it signs Harbor's route certificate, which is in Traefik's namespace."""
    from components.harbor import CA_SECRET

    for core in find(charted, "harbor", "Deployment", "harbor-core"):
        volumes = {v["name"]: v for v in core["spec"]["template"]["spec"]["volumes"]}
        assert volumes["ca-download"]["secret"]["secretName"] == CA_SECRET


def test_gatekeeper_admits_every_rendered_workload_with_the_real_opa(charted: dict[str, Render]) -> None:
    # The plan's ConstraintTemplates and Constraints, evaluated by OPA (tests/opa.py) against every
    # object the charts render, as Gatekeeper would at admission; platform namespaces are excluded
    # by the constraints themselves, tenant namespaces (vClusters) are not.
    from tests.test_gatekeeper_plan import gatekeeper_verdicts

    for stack, result in charted.items():
        extra = []
        for _, release in releases({stack: result}):
            for obj in release["rendered"]:
                namespace = object_namespace(obj, release["inputs"]["namespace"])
                if namespace is not None:
                    obj = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
                extra.append({"type": f"kubernetes:rendered:{obj['kind']}", "inputs": obj, "cluster": release["cluster"]})
        verdicts = gatekeeper_verdicts({**result.plan, "resources": [*result.plan["resources"], *extra]})
        assert not verdicts.failed, "\n".join(verdicts.failed)
        ours = {f"{e['cluster']}: {e['inputs']['kind']} {e['inputs']['metadata'].get('namespace')}/{e['inputs']['metadata']['name']} vs" for e in extra}
        held = [line for line in verdicts.passed if line.split(" vs ", 1)[0] + " vs" in ours]
        assert any(" StatefulSet " in line for line in held), f"{stack}: no rendered workload was held to a constraint"


def test_diff_lists_what_a_values_change_does_to_the_rendered_objects(charted: dict[str, Render]) -> None:
    import copy

    from platformctl.diff import diff_renders, to_markdown
    from platformctl.helm_render import cluster_api_versions, render_release

    base = charted["dev"].plan
    head = copy.deepcopy(base)
    (release,) = [r for r in head["resources"] if r["name"] == "dev-gatekeeper" and r["type"] == RELEASE_TYPE]
    release["inputs"]["values"]["replicas"] = 4
    version = kubernetes_versions("dev")["dev"]
    release["rendered"] = render_release(
        verified_chart(release), release["inputs"]["values"], name="gatekeeper", namespace="gatekeeper-system",
        kubernetes_version=version, api_versions=cluster_api_versions(head, "dev", version),
    )
    result = diff_renders((base, {}), (head, {}))
    (objects,) = result.objects
    assert objects.release["name"] == "dev-gatekeeper" and not objects.added and not objects.removed
    assert objects.changed == [
        ("Deployment gatekeeper-system/gatekeeper-controller-manager", [("spec.replicas", 3, 4)])
    ]
    markdown = to_markdown(result, base, head, "dev")
    assert "**dev-gatekeeper** (gatekeeper 3.23.0): 0 added, 1 changed, 0 removed" in markdown
    assert "- `~` Deployment gatekeeper-system/gatekeeper-controller-manager\n  - `spec.replicas`: `3` → `4`" in markdown
    assert diff_renders((base, {}), (base, {})).objects == []


def verified_chart(release: dict[str, Any]) -> Path:
    from platformctl.charts import verified

    path = verified(release["inputs"]["chart"], release["inputs"]["version"])
    assert path is not None
    return path


def test_a_subchart_one_render_disables_renders_in_the_next(charted: dict[str, Render]) -> None:
    # Helm drops disabled subcharts from the loaded chart: dev renders argo-cd without redis-ha,
    # prod with it, so each render must load its own copy of the chart.
    from platformctl.helm_render import builtin_api_versions, render_manifests

    (release,) = [r for _, r in releases({"prod": charted["prod"]}) if r["name"] == "control-plane-argocd"]
    options = dict(name="argocd", namespace="argocd", kubernetes_version="1.33", api_versions=builtin_api_versions("1.33"))
    chart = verified_chart(release)
    render_manifests(chart, {"redis-ha": {"enabled": False}}, **options)
    assert any("redis-ha" in template for template in render_manifests(chart, {"redis-ha": {"enabled": True}}, **options))
