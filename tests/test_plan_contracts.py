"""What every stack's plan must satisfy, whatever component emitted it.

Helm values are known to the pinned chart; Kubernetes objects and custom resources pass
strict schema validation; no credential is plain; nothing disables TLS or floats an
image tag.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterator


from platformctl.mocks import REDACTED, SECRET_MARK, is_redacted
from platformctl.stack_file import PLACEHOLDER
from policy.gatekeeper import templates
from tests.validation import (
    available_charts,
    custom_resource_errors,
    is_custom_resource,
    kubernetes_errors,
    schema_errors,
    unknown_value_paths,
)

# Charts whose upstream values are not vendored (see components/versions.py): the keys the
# program may set, checked by hand against the pinned chart's values.yaml.
UNVENDORED_CHART_KEYS = {
    "traefik": {
        "deployment.replicas",
        "podDisruptionBudget.enabled",
        "podDisruptionBudget.maxUnavailable",
        "topologySpreadConstraints",
        "ingressClass.enabled",
        "ingressClass.isDefaultClass",
        "ingressClass.name",
        "providers.kubernetesIngress.enabled",
        "providers.kubernetesIngress.publishedService.enabled",
        "ports.web.asDefault",
        "ports.web.redirections.entryPoint.to",
        "ports.web.redirections.entryPoint.scheme",
        "ports.web.redirections.entryPoint.permanent",
        "ports.websecure.asDefault",
        "ports.websecure.transport.respondingTimeouts.readTimeout",
        "resources.*",
        # A custom entrypoint: the chart turns every `ports.<name>` into one (SSH to GitLab).
        "ports.ssh.port",
        "ports.ssh.exposedPort",
        "ports.ssh.expose.default",
        "ports.ssh.protocol",
        "service.type",
        "service.annotations.*",
        # EKS: the AWS Load Balancer Controller's class (components/ingress.py `Nlb`): traefik 37.4.0 values.yaml
        # line 995 (commented), templates/_service.tpl lines 25-26.
        "service.loadBalancerClass",
        # The workload clusters' Traefik (components/workload_ingress.py): request counters by service.
        "metrics.prometheus.addServicesLabels",
        # Its version check off (no internet in its egress): traefik 37.4.0 values.yaml line 755, _podtemplate.tpl line 198.
        "global.checkNewVersion",
        # The control plane's: the namespaces it watches, its RBAC granted by the platform (components/ingress.py).
        "providers.kubernetesIngress.namespaces",
        "providers.kubernetesCRD.namespaces",
        # Its routes' ExternalName Services (components/ingress.py `external_name`): traefik 37.4.0 values.yaml line 285.
        "providers.kubernetesCRD.allowExternalNameServices",
        "rbac.enabled",
    },
}
# Custom resources whose CRDs are not vendored (Traefik's are not in the upstream collection):
# the spec fields the program may set, checked by hand against Traefik v3's CRDs.
UNVENDORED_CRD_FIELDS = {
    ("traefik.io/v1alpha1", "Middleware"): {"stripPrefix.prefixes", "basicAuth.secret", "basicAuth.realm", "basicAuth.removeHeader"},
    # rootCAs: a list (of ConfigMap references); tests/test_controlplane_reader_attacks.py validates it against the chart's CRD.
    ("traefik.io/v1alpha1", "ServersTransport"): {"rootCAs", "serverName"},
    # Lists are leaves here; tests/test_gitlab_ssh.py checks the route's items.
    ("traefik.io/v1alpha1", "IngressRouteTCP"): {"entryPoints", "routes"},
    ("traefik.io/v1alpha1", "TLSStore"): {"defaultCertificate.secretName"},
    # OpenUnison's redirect filter: tests/test_sso_attacks.py validates it against the chart's CRD.
    ("traefik.io/v1alpha1", "IngressRoute"): {"routes", "tls.secretName"},
}

# Values that are free-form by the chart's design although their default is not `{}`.
# `resources` the chart's values document only as `{}` or in comments (a container's resources,
# Kubernetes' own type); tests/test_helm_values_effect.py proves each changes the rendered pods.
FREEFORM = {
    "gatekeeper": ["postInstall.resources", "crds.resources"],
    "harbor": ["*.resources"],
    "argo-cd": ["configs.cm.*", "configs.rbac.*", "configs.params.*"],
    # Documented only in comments upstream; the pod security context is Kubernetes' own type.
    "cert-manager": ["serviceAccount.annotations.*", "securityContext.*"],
    # The charts' templates read `.Values.oidc`, which values.yaml does not document;
    # tests/test_openunison.py checks its keys against the upstream template.
    # Their Deployments read `services.affinity` too (orchestra's OpenUnison, the portal's pages).
    "orchestra": ["oidc", "services.resources", "services.affinity", "precheck.resources"],
    "orchestra-login-portal": ["oidc", "services.resources", "services.affinity"],
    # `rediss` for Redis over TLS: charts/gitlab/templates/_redis.tpl reads it; values.yaml does not document it.
    "gitlab": ["global.redis.scheme"],
    # The schema types them as Kubernetes' own (`type: object`); the defaults show only a few keys.
    # "Further scrapeConfigs can be added as new keys" (its values.yaml): each key is a scrape job.
    "prometheus": ["scrapeConfigs.*"],
    # Its certificate.yaml reads `.Values.additionalAnnotations`, which values.yaml does not document.
    "metrics-server": ["additionalAnnotations"],
    "vcluster": ["controlPlane.statefulSet.security.*", "controlPlane.coredns.security.*", "controlPlane.distro.k8s.securityContext.*"],
    # Kubernetes' own pod and container security contexts, rendered as given (toYaml).
    "gitlab-runner": ["podSecurityContext.*", "securityContext.*"],
    # dfdaemon.yaml, each section rendered whole (toYaml): dfdaemon's own keys (dragonfly-client-config/src/dfdaemon.rs
    # v1.4.0), which values.yaml leaves out; test_p2p_attacks reads them back from the rendered ConfigMaps.
    "dragonfly": ["client.config.*.server.ip", "seedClient.config.*.server.ip", "client.config.proxy.registryMirror.cert"],
}


def releases(plan: dict) -> list[dict]:
    return [r for r in plan["resources"] if r["type"] == "kubernetes:helm.sh/v3:Release"]


def declared_objects(plan: dict) -> list[dict]:
    """Kubernetes objects the program declares directly (not Helm releases, not reads)."""
    return [
        r
        for r in plan["resources"]
        if r["type"].startswith("kubernetes:") and "kind" in r["inputs"] and "helm.sh" not in r["type"]
    ]


def _leaf_paths(value: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _leaf_paths(item, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix


def _allowed(path: str, allowed: set[str]) -> bool:
    return any(path == a or (a.endswith(".*") and path.startswith(a[:-1])) for a in allowed)


def test_every_release_is_pinned_to_a_known_chart(plan: dict) -> None:
    known = set(available_charts()) | set(UNVENDORED_CHART_KEYS)
    for release in releases(plan):
        inputs = release["inputs"]
        assert inputs["chart"] in known, f"{release['name']}: no upstream values for chart {inputs['chart']}"
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", inputs["version"]), f"{release['name']}: version {inputs['version']}"
        assert inputs["repositoryOpts"]["repo"].startswith("https://")


def test_helm_values_are_known_to_the_pinned_chart(plan: dict) -> None:
    problems = []
    for release in releases(plan):
        chart, values = release["inputs"]["chart"], release["inputs"].get("values") or {}
        if chart in UNVENDORED_CHART_KEYS:
            unknown = [p for p in _leaf_paths(values) if not _allowed(p, UNVENDORED_CHART_KEYS[chart])]
        else:
            unknown = unknown_value_paths(chart, values, FREEFORM.get(chart, ()))
            unknown += [f"schema: {e}" for e in schema_errors(chart, values)]
        problems += [f"{release['cluster']}/{release['name']} ({chart}): {p}" for p in unknown]
    assert not problems, "\n".join(problems)


def _constraint_schemas() -> dict[str, dict]:
    return {
        t["spec"]["crd"]["spec"]["names"]["kind"]: t["spec"]["crd"]["spec"].get("validation", {}).get("openAPIV3Schema", {})
        for t in templates()
    }


def test_declared_objects_pass_strict_schema_validation(renders: dict, plan: dict) -> None:
    import jsonschema

    constraint_schemas = _constraint_schemas()
    problems = []
    for resource in declared_objects(plan):
        obj = resource["inputs"]
        where = f"{resource['cluster']}/{resource['name']} {obj['kind']}"
        if obj["apiVersion"].startswith("constraints.gatekeeper.sh/"):
            # Constraint kinds are generated from their templates: check the parameters against them.
            schema = constraint_schemas[obj["kind"]]
            params = obj["spec"].get("parameters", {})
            problems += [f"{where}: parameters: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(params)]
            continue
        allowed = UNVENDORED_CRD_FIELDS.get((obj["apiVersion"], obj["kind"]))
        if allowed is not None:
            problems += [f"{where}: unexpected field spec.{p}" for p in _leaf_paths(obj.get("spec", {})) if p not in allowed]
            continue
        errors = custom_resource_errors(obj) if is_custom_resource(obj) else kubernetes_errors(obj, "1.33")
        problems += [f"{where}: {e}" for e in errors]
    assert not problems, "\n".join(problems)


def test_redacted_secrets_stay_valid_objects(plan: dict) -> None:
    # Each key present with its value redacted, so kubeconform or `kubectl --dry-run` accept the manifest.
    secrets = [r for r in declared_objects(plan) if r["inputs"]["kind"] == "Secret" and "stringData" in r["secretPaths"]]
    assert secrets
    for secret in secrets:
        assert is_redacted(secret["inputs"]["stringData"]) and isinstance(secret["inputs"]["stringData"], dict), secret["name"]
        assert kubernetes_errors(secret["inputs"], "1.33") == [], secret["name"]


def test_external_secrets_objects_use_v1(plan: dict) -> None:
    for resource in declared_objects(plan):
        if resource["inputs"]["apiVersion"].startswith("external-secrets.io/"):
            assert resource["inputs"]["apiVersion"] == "external-secrets.io/v1", resource["name"]


_CREDENTIAL_KEY = re.compile(
    r"(password|passwd|token|secret|credentials?|private_?key(pem)?|api_?key|access_?key|secret_?key|client_?secret)$",
    re.IGNORECASE,
)
# Keys that name or point at a credential rather than hold one.
_REFERENCE_KEY = re.compile(r"(name|ref|existing\w*|path|file|secrets?mount\w*|type|enabled)$", re.IGNORECASE)


def _plain_credentials(value: Any, path: str = "", references: frozenset[str] = frozenset()) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            if (
                isinstance(item, str)
                and _CREDENTIAL_KEY.search(str(key))
                and not _REFERENCE_KEY.search(str(key))
                and item not in (REDACTED, "")
                and not item.startswith("$")  # ArgoCD's `$secret:key` reference
                and item not in references  # the name of a Secret the plan declares (GitLab's `secret:` keys)
            ):
                yield f"{sub} = {item[:40]!r}"
            else:
                yield from _plain_credentials(item, sub, references)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _plain_credentials(item, f"{path}[{index}]", references)


def test_no_plain_credential_in_the_plan(plan: dict) -> None:
    secret_names = frozenset(
        r["inputs"]["metadata"]["name"] for r in plan["resources"] if r["type"] == "kubernetes:core/v1:Secret" and "metadata" in r["inputs"]
    )
    problems = [f"{r['name']}: {p}" for r in plan["resources"] for p in _plain_credentials(r["inputs"], references=secret_names)]
    assert not problems, "\n".join(problems)
    text = json.dumps(plan)
    # Every generated secret's mock value carries SECRET_MARK; config secrets become PLACEHOLDER.
    assert SECRET_MARK not in text
    assert PLACEHOLDER not in text


def test_generated_secrets_are_secret_outputs(plan: dict) -> None:
    for resource in plan["resources"]:
        if resource["type"] == "random:index/randomPassword:RandomPassword":
            assert "result" in resource["options"]["additionalSecretOutputs"], resource["name"]
        if resource["type"] == "tls:index/privateKey:PrivateKey":
            assert "privateKeyPem" in resource["options"]["additionalSecretOutputs"], resource["name"]


_INSECURE_KEY = re.compile(r"insecure|skip_?tls_?verify|tls_?skip_?verify|insecureskipverify", re.IGNORECASE)
# Keys that must never be switched off.
_VERIFY_KEY = re.compile(r"verify_?ssl|ssl_?verif|verify_?cert|enable_?ssl_?verification", re.IGNORECASE)


def _insecure(value: Any, path: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            if _INSECURE_KEY.search(str(key)) and item not in (False, "false", None):
                yield f"{sub} = {item!r}"
            if _VERIFY_KEY.search(str(key)) and item in (False, "false"):
                yield f"{sub} = {item!r}"
            yield from _insecure(item, sub)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _insecure(item, f"{path}[{index}]")
    elif isinstance(value, str):
        if re.search(r"--insecure\b|--insecure-skip-tls-verify|insecure:\s*true|skip_tls_verify\s*=\s*true", value):
            yield f"{path} contains an insecure flag"


def test_nothing_disables_tls(plan: dict) -> None:
    problems = [f"{r['name']}: {p}" for r in plan["resources"] for p in _insecure(r["inputs"])]
    assert not problems, "\n".join(problems)


_IMAGE = re.compile(r"^(?P<name>[^@\s]+?)(:(?P<tag>[\w][\w.-]{0,127}))?(@sha256:[0-9a-f]{64})?$")


def _images(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            if key == "image" and isinstance(item, str):
                # Beside a `tag` (gitlab-runner's {registry, image, tag}), the image is the repository.
                yield sub, f"{item}:{value['tag']}" if isinstance(value.get("tag"), str) else item
            else:
                yield from _images(item, sub)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _images(item, f"{path}[{index}]")


def test_every_declared_image_is_pinned(plan: dict) -> None:
    problems = []
    for resource in plan["resources"]:
        for path, image in _images(resource["inputs"]):
            match = _IMAGE.match(image)
            pinned = match and ("@sha256:" in image or (match.group("tag") and match.group("tag") != "latest"))
            if not pinned:
                problems.append(f"{resource['name']}: {path} = {image!r}")
    assert not problems, "\n".join(problems)


def test_insecure_scanner_catches_what_it_should() -> None:
    assert list(_insecure({"server": {"insecure": True}}))
    assert list(_insecure({"args": ["--insecure"]}))
    assert not list(_insecure({"server": {"insecure": False}}))
    assert list(_insecure({"oidcVerifyCert": False})) and not list(_insecure({"oidcVerifyCert": True}))
    assert list(_plain_credentials({"adminPassword": "hunter2"}))
    assert not list(_plain_credentials({"adminPassword": REDACTED, "existingSecretName": "x"}))
    assert not list(_plain_credentials({"initialRootPassword": {"secret": "root"}}, references=frozenset({"root"})))
    assert list(_plain_credentials({"initialRootPassword": {"secret": "root"}}))
    assert not _IMAGE.match("repo:tag with space")
