"""Tests of the validation helpers: each one accepts valid input and rejects invalid input."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests import validation as v
from tests.validation import (
    FIXTURES,
    MissingFixtureError,
    custom_resource_errors,
    is_custom_resource,
    kubernetes_errors,
    schema_errors,
    unknown_value_paths,
)

CHARTS = [
    "argo-cd", "cert-manager", "cloudnative-pg", "external-secrets", "gatekeeper", "gitlab", "harbor",
    "kube-oidc-proxy", "openunison-k8s-cluster-management", "openunison-operator", "orchestra",
    "orchestra-kube-oidc-proxy", "orchestra-login-portal", "vault", "vcluster",
    "aws-load-balancer-controller", "metallb", "cluster-autoscaler",
    "policy-controller",
    "gitlab-runner",
    "argo-rollouts", "metrics-server", "prometheus",  # the golden path (issue 18)
    "dragonfly",  # P2P distribution (issue 20)
    "velero",  # the tenants' volumes backed up
    "alertmanager", "kube-state-metrics",  # the platform's alerts (with prometheus)
]


# --- fixtures are complete and traceable -------------------------------------------

def test_every_requested_chart_is_vendored() -> None:
    assert v.available_charts() == sorted(CHARTS)


def test_upstream_table_matches_fixtures() -> None:
    """UPSTREAM.md lists every vendored file once, with the sha256 of the copy."""
    table = (FIXTURES / "UPSTREAM.md").read_text(encoding="utf-8")
    listed = dict(re.findall(r"^\| `((?:charts|schemas)/[^`]+)` \|.*\| `([0-9a-f]{64})` \|", table, re.M))
    on_disk = {
        p.relative_to(FIXTURES).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for sub in ("charts", "schemas")
        for p in (FIXTURES / sub).rglob("*")
        if p.is_file() and p.name != "index.json"
    }
    assert listed == on_disk


def test_schema_index_matches_schema_files() -> None:
    index = json.loads((v.SCHEMAS_DIR / "index.json").read_text(encoding="utf-8"))
    files = {p.relative_to(v.SCHEMAS_DIR).as_posix() for p in v.SCHEMAS_DIR.glob("*/*.json")}
    assert sorted(e["schema"] for e in index) == sorted(files)
    for e in index:
        group, version = e["apiVersion"].split("/")
        assert e["schema"] == f"{group}/{e['kind'].lower()}_{version}.json"
    pairs = [(e["apiVersion"], e["kind"]) for e in index]
    assert len(pairs) == len(set(pairs))


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [
        ("cert-manager.io/v1", "ClusterIssuer"), ("cert-manager.io/v1", "Issuer"),
        ("cert-manager.io/v1", "Certificate"), ("external-secrets.io/v1", "SecretStore"),
        ("external-secrets.io/v1", "ClusterSecretStore"), ("external-secrets.io/v1", "ExternalSecret"),
        ("argoproj.io/v1alpha1", "Application"), ("argoproj.io/v1alpha1", "ApplicationSet"),
        ("argoproj.io/v1alpha1", "AppProject"), ("templates.gatekeeper.sh/v1", "ConstraintTemplate"),
        ("config.gatekeeper.sh/v1alpha1", "Config"), ("openunison.tremolo.io/v6", "OpenUnison"),
        ("openunison.tremolo.io/v1", "Trust"), ("openunison.tremolo.io/v1", "Target"),
        ("openunison.tremolo.io/v2", "Application"), ("openunison.tremolo.io/v1", "AuthenticationChain"),
        ("openunison.tremolo.io/v1", "AuthenticationMechanism"), ("openunison.tremolo.io/v1", "Org"),
        ("openunison.tremolo.io/v2", "Workflow"), ("openunison.tremolo.io/v1", "GroupMetaData"),
        ("openunison.tremolo.io/v1", "PortalUrl"), ("openunison.tremolo.io/v1", "ResultGroup"),
        ("openunison.tremolo.io/v1", "CustomAuthorization"), ("openunison.tremolo.io/v1", "JavaScriptMapping"),
    ],
)
def test_every_emitted_kind_has_a_valid_strict_schema(api_version: str, kind: str) -> None:
    entry = v._crd_index()[(api_version, kind)]
    jsonschema.Draft4Validator.check_schema(v._crd_validator(entry.file).schema)
    # apiVersion/kind/metadata are accepted at the root even where the CRD schema
    # lists only `spec` (OpenUnison); the only complaints left are required fields.
    errors = custom_resource_errors({"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}})
    assert all(e.endswith("is a required property") for e in errors), errors


# --- unknown_value_paths -----------------------------------------------------------

def test_valid_nested_vault_values_have_no_unknown_paths() -> None:
    values = {"server": {"ha": {"enabled": True, "replicas": 3, "raft": {"enabled": True, "setNodeId": True}}}}
    assert unknown_value_paths("vault", values) == []


def test_unknown_key_at_depth_is_reported_with_its_dotted_path() -> None:
    values = {"server": {"ha": {"raft": {"enabled": True, "setNodeID": True}}}, "injectr": {"enabled": False}}
    assert unknown_value_paths("vault", values) == ["server.ha.raft.setNodeID", "injectr"]


def test_gitlab_subchart_keys_are_reachable_under_the_subchart_key() -> None:
    values = {"gitlab": {"webservice": {"minReplicas": 2, "maxReplicas": 4}, "sidekiq": {"minReplicas": 1}}}
    assert unknown_value_paths("gitlab", values) == []


def test_gitlab_key_under_the_wrong_subchart_is_reported() -> None:
    # `workhorse` belongs to webservice, not sidekiq; `minReplica` is a typo.
    values = {"gitlab": {"sidekiq": {"workhorse": {}}, "webservice": {"minReplica": 2}}}
    assert unknown_value_paths("gitlab", values) == ["gitlab.sidekiq.workhorse", "gitlab.webservice.minReplica"]


def test_gitlab_globals_are_shared_across_the_chart_tree() -> None:
    # communityImages is only in charts/gitlab/values.yaml's `global`, hosts only in the umbrella's.
    values = {"global": {"communityImages": {}, "hosts": {"domain": "example.com"}}}
    assert unknown_value_paths("gitlab", values) == []
    assert unknown_value_paths("gitlab", {"global": {"hostz": {}}}) == ["global.hostz"]


def test_keys_of_external_dependencies_are_accepted() -> None:
    # postgresql (bitnami) and redis-ha are not vendored: nothing to check against.
    assert unknown_value_paths("gitlab", {"postgresql": {"anything": {"at": "all"}}}) == []
    assert unknown_value_paths("argo-cd", {"redis-ha": {"haproxy": {"enabled": True}}}) == []


def test_freeform_annotations_accept_any_key() -> None:
    # podAnnotations defaults to {}; expose.ingress.annotations to a non-empty string map.
    assert unknown_value_paths("argo-cd", {"server": {"podAnnotations": {"example.com/owner": "team-a"}}}) == []
    values = {"expose": {"ingress": {"annotations": {"example.com/owner": "team-a"}, "annotationz": {"a": "b"}}}}
    assert unknown_value_paths("harbor", values) == ["expose.ingress.annotationz"]


def test_structured_map_named_like_labels_is_still_checked() -> None:
    # argo-cd: controller.metrics.applicationLabels is {enabled: false, labels: []}, not a label map.
    values = {"controller": {"metrics": {"applicationLabels": {"enabled": True, "enabeld": True}}}}
    assert unknown_value_paths("argo-cd", values) == ["controller.metrics.applicationLabels.enabeld"]


def test_pass_through_key_with_non_empty_default_accepts_any_key() -> None:
    # gatekeeper's audit.resources default has limits.memory only; limits.cpu is plain Kubernetes.
    assert unknown_value_paths("gatekeeper", {"audit": {"resources": {"limits": {"cpu": "1"}}}}) == []
    assert unknown_value_paths("gatekeeper", {"audit": {"resourcez": {}}}) == ["audit.resourcez"]


def test_chart_specific_affinity_is_still_checked() -> None:
    # argo-cd's global.affinity is {podAntiAffinity: soft, nodeAffinity: {type: hard, ...}}, not Kubernetes'.
    values = {"global": {"affinity": {"podAntiAffinity": "hard", "podAntiAffinty": "hard"}}}
    assert unknown_value_paths("argo-cd", values) == ["global.affinity.podAntiAffinty"]


def test_caller_freeform_globs_accept_only_what_they_match() -> None:
    values = {"server": {"ha": {"raft": {"config": {"ui": True}}}}, "csi": {"extra": 1}}
    # raft.config defaults to a string; a map there is only accepted when the caller says so.
    assert unknown_value_paths("vault", values) == ["server.ha.raft.config.ui", "csi.extra"]
    assert unknown_value_paths("vault", values, freeform=["server.*.config"]) == ["csi.extra"]


def test_map_under_null_default_reports_its_sub_keys() -> None:
    assert unknown_value_paths("vault", {"server": {"ha": {"apiAddr": {"host": "x"}}}}) == ["server.ha.apiAddr.host"]


def test_list_default_accepts_any_list() -> None:
    values = {"global": {"hostAliases": [{"ip": "10.0.0.1", "hostnames": ["git.example.com"]}]}}
    assert unknown_value_paths("argo-cd", values) == []


def test_keys_documented_only_in_comments_are_accepted() -> None:
    # values.yaml: `agentDefaults:` ... `# ephemeralLimit: "128Mi"` (commented out).
    assert unknown_value_paths("vault", {"injector": {"agentDefaults": {"ephemeralLimit": "1Gi"}}}) == []
    assert unknown_value_paths("vault", {"injector": {"agentDefaults": {"ephemeralLimits": "1Gi"}}}) == [
        "injector.agentDefaults.ephemeralLimits"
    ]


def test_commented_key_paths_rule() -> None:
    text = "\n".join([
        "## see: prose, not a key",
        "# Example: capitalised prose, not a key",
        "server:",
        "  image: x",
        "  # priorityClassName: \"\"",
        "  # resources:",
        "  #   limits:",
        "  #     memory: 1Gi",
        "  config: |",
        "    # inside: a block scalar",
        "  # For example:",
        "  #  strategy:",
        "  #    type: Recreate",
        "  strategy: {}",
    ])
    assert v.commented_key_paths(text) == [
        ("server", "priorityClassName"),
        ("server", "resources"),
        ("server", "resources", "limits"),
        ("server", "resources", "limits", "memory"),
        # The style indent of "#  strategy:" reads as under `config`; _add_commented
        # re-homes it as a sibling because config's default is a scalar.
        ("server", "config", "strategy"),
        ("server", "config", "strategy", "type"),
    ]


def test_commented_example_under_a_scalar_becomes_a_sibling() -> None:
    # cert-manager: `replicaCount: 1` then "# For example:\n#  strategy:\n#    type: ..."
    tree = v._documented(v.CHARTS_DIR / "cert-manager")
    assert "type" in tree["strategy"].children
    assert "strategy" not in tree["replicaCount"].children


def test_commented_list_items_are_not_read_as_keys() -> None:
    # argo-cd: `hostAliases: []` then "# - ip: 10.20.30.40\n#   hostnames:" (a list item example).
    global_ = v._documented(v.CHARTS_DIR / "argo-cd")["global"]
    assert global_.children["hostAliases"].children == {}
    assert "hostnames" not in global_.children


def test_unknown_chart_is_loud() -> None:
    with pytest.raises(MissingFixtureError, match="ingress-nginx"):
        unknown_value_paths("ingress-nginx", {})


# --- schema_errors -----------------------------------------------------------------

@pytest.mark.parametrize("chart", CHARTS)
def test_chart_defaults_pass_their_own_schema(chart: str) -> None:
    assert schema_errors(chart, {}) == []


def test_vault_schema_rejects_wrong_type_and_accepts_right_one() -> None:
    assert schema_errors("vault", {"server": {"ha": {"replicas": 3}}}) == []
    assert schema_errors("vault", {"server": {"ha": {"replicas": "three"}}}) == [
        "server.ha.replicas: 'three' is not of type 'integer'"
    ]


def test_vcluster_schema_rejects_unknown_top_level_key() -> None:
    assert schema_errors("vcluster", {"controlPlane": {"distro": {"k8s": {"enabled": True}}}}) == []
    errors = schema_errors("vcluster", {"controlPlan": {}})
    assert len(errors) == 1 and "controlPlan" in errors[0]


def test_gitlab_subchart_schema_is_applied_under_its_key() -> None:
    assert schema_errors("gitlab", {"gitlab": {"webservice": {"enabled": True}}}) == []
    assert schema_errors("gitlab", {"gitlab": {"webservice": {"enabled": "yes"}}}) == [
        "gitlab.webservice.enabled: 'yes' is not of type 'boolean'"
    ]


def test_chart_without_schema_has_no_schema_errors() -> None:
    assert not (v.CHARTS_DIR / "argo-cd" / "values.schema.json").exists()
    assert schema_errors("argo-cd", {"server": {"replicas": "three"}}) == []


def test_subchart_schema_sees_parent_globals_conditions_and_null_deletes(tmp_path: Path) -> None:
    """Helm semantics on a two-chart tree: parent globals reach the subchart's
    schema, a disabled subchart is not validated, and null removes a default."""
    sub = tmp_path / "parent" / "charts" / "sub"
    sub.mkdir(parents=True)
    (tmp_path / "parent" / "Chart.yaml").write_text(
        "apiVersion: v2\nname: parent\nversion: 0.1.0\n"
        "dependencies:\n- name: sub\n  version: 0.1.0\n  condition: sub.enabled\n"
    )
    (tmp_path / "parent" / "values.yaml").write_text("global:\n  domain: example.com\nsub:\n  enabled: true\n")
    (sub / "Chart.yaml").write_text("apiVersion: v2\nname: sub\nversion: 0.1.0\n")
    (sub / "values.yaml").write_text("replicas: 1\nglobal: {}\n")
    (sub / "values.schema.json").write_text(json.dumps({
        "type": "object",
        "required": ["replicas"],
        "properties": {
            "replicas": {"type": "integer"},
            "global": {"type": "object", "properties": {"domain": {"type": "string"}}, "required": ["domain"]},
        },
    }))

    def errors(values: dict[str, Any]) -> list[str]:
        found: list[str] = []
        v._schema_errors(tmp_path / "parent", values, "", found)
        return found

    assert errors({}) == []
    assert errors({"global": {"domain": 42}}) == ["sub.global.domain: 42 is not of type 'string'"]
    assert errors({"sub": {"replicas": None}}) == ["sub.<root>: 'replicas' is a required property"]
    assert errors({"sub": {"enabled": False, "replicas": "x"}}) == []


def test_draft_follows_dollar_schema() -> None:
    def cls(chart: str) -> type:
        return type(v._values_validator(v.CHARTS_DIR / chart / "values.schema.json"))

    assert cls("vault") is jsonschema.Draft7Validator  # "https://json-schema.org/draft-07/schema#"
    assert cls("vcluster") is jsonschema.Draft202012Validator
    assert cls("gitlab/charts/gitlab/charts/webservice") is jsonschema.Draft202012Validator  # none: Helm default


# --- custom_resource_errors --------------------------------------------------------

CERTIFICATE: dict[str, Any] = {
    "apiVersion": "cert-manager.io/v1",
    "kind": "Certificate",
    "metadata": {"name": "portal", "namespace": "openunison", "labels": {"app": "portal"}},
    "spec": {
        "secretName": "portal-tls",
        "dnsNames": ["portal.example.com"],
        "issuerRef": {"name": "platform-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"},
        "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
    },
}

EXTERNAL_SECRET: dict[str, Any] = {
    "apiVersion": "external-secrets.io/v1",
    "kind": "ExternalSecret",
    "metadata": {"name": "harbor-pull", "namespace": "team-a-dev"},
    "spec": {
        "refreshInterval": "1h",
        "secretStoreRef": {"name": "vault", "kind": "SecretStore"},
        "target": {
            "name": "harbor-pull",
            "template": {"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "{{ .cfg }}"}},
        },
        "data": [{"secretKey": "cfg", "remoteRef": {"key": "tenants/team-a/harbor", "property": "dockerconfigjson"}}],
    },
}


def test_valid_certificate_is_accepted() -> None:
    assert custom_resource_errors(CERTIFICATE) == []


def test_certificate_with_unknown_spec_field_is_rejected() -> None:
    cert = copy.deepcopy(CERTIFICATE)
    cert["spec"]["dnsName"] = ["typo.example.com"]
    cert["spec"]["privateKey"]["sise"] = 256
    assert custom_resource_errors(cert) == [
        "spec: Additional properties are not allowed ('dnsName' was unexpected)",
        "spec.privateKey: Additional properties are not allowed ('sise' was unexpected)",
    ]


def test_certificate_with_wrong_enum_is_rejected() -> None:
    cert = copy.deepcopy(CERTIFICATE)
    cert["spec"]["privateKey"]["algorithm"] = "DSA"
    assert [e.split(":")[0] for e in custom_resource_errors(cert)] == ["spec.privateKey.algorithm"]


def test_valid_external_secret_v1_is_accepted() -> None:
    assert custom_resource_errors(EXTERNAL_SECRET) == []


def test_nullable_fields_admit_null_and_others_do_not() -> None:
    es = copy.deepcopy(EXTERNAL_SECRET)
    es["status"] = {"refreshTime": None}  # nullable: true in the CRD
    assert custom_resource_errors(es) == []
    es["spec"]["refreshInterval"] = None
    assert [e.split(":")[0] for e in custom_resource_errors(es)] == ["spec.refreshInterval"]


def test_metadata_allows_only_minimal_object_meta() -> None:
    es = copy.deepcopy(EXTERNAL_SECRET)
    es["metadata"]["generateName"] = "harbor-"
    assert custom_resource_errors(es) == [
        "metadata: Additional properties are not allowed ('generateName' was unexpected)"
    ]
    es["metadata"] = {"name": "x", "labels": {"replicas": 3}}
    assert custom_resource_errors(es) == ["metadata.labels.replicas: 3 is not of type 'string'"]


def test_cluster_scoped_kind_rejects_namespace() -> None:
    issuer = {"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": "ca"},
              "spec": {"selfSigned": {}}}
    assert custom_resource_errors(issuer) == []
    issuer["metadata"]["namespace"] = "cert-manager"
    assert custom_resource_errors(issuer) == ["metadata.namespace: ClusterIssuer is cluster-scoped and takes no namespace"]


def test_preserve_unknown_fields_is_open_and_the_rest_closed() -> None:
    template = {
        "apiVersion": "templates.gatekeeper.sh/v1",
        "kind": "ConstraintTemplate",
        "metadata": {"name": "k8sallowedrepos"},
        "spec": {
            "crd": {"spec": {"names": {"kind": "K8sAllowedRepos"}, "validation": {"openAPIV3Schema": {
                "type": "object", "properties": {"repos": {"type": "array", "items": {"type": "string"}}}}}}},
            "targets": [{"target": "admission.k8s.gatekeeper.sh", "rego": "package k8sallowedrepos"}],
        },
    }
    assert custom_resource_errors(template) == []
    template["spec"]["targets"][0]["regoo"] = "typo"
    assert custom_resource_errors(template) == [
        "spec.targets.0: Additional properties are not allowed ('regoo' was unexpected)"
    ]


def test_int_or_string_accepts_both() -> None:
    app = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "a"},
           "spec": {"destination": {"name": "dev"}, "project": "default",
                    "source": {"repoURL": "https://git.example.com/a.git",
                               "kustomize": {"replicas": [{"name": "web", "count": 2}, {"name": "api", "count": "3"}]}}}}
    assert custom_resource_errors(app) == []
    app["spec"]["source"]["kustomize"]["replicas"][0]["count"] = 2.5
    assert [e.split(":")[0] for e in custom_resource_errors(app)] == ["spec.source.kustomize.replicas.0.count"]


def test_strict_rewrite_of_bare_objects_and_int_or_string() -> None:
    schema = v._strict({"type": "object", "properties": {
        "port": {"x-kubernetes-int-or-string": True},
        "marker": {"type": "object"},  # no properties: the API server keeps no field of it
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    }})
    validator = jsonschema.Draft4Validator(schema)
    assert validator.is_valid({"port": 8080, "marker": {}, "free": {"any": {"thing": 1}}})
    assert validator.is_valid({"port": "http"})
    assert not validator.is_valid({"port": [8080]})
    assert not validator.is_valid({"marker": {"field": 1}})


def test_kind_without_schema_fixture_is_loud() -> None:
    deprecated = dict(EXTERNAL_SECRET, apiVersion="external-secrets.io/v1beta1")
    with pytest.raises(MissingFixtureError, match="v1beta1"):
        custom_resource_errors(deprecated)


# --- kubernetes_errors / is_custom_resource -----------------------------------------

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "team-a-dev"},
    "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "harbor.example.com/team-a/web:1.0.0"}]},
        },
    },
}


def test_valid_deployment_is_accepted() -> None:
    assert kubernetes_errors(DEPLOYMENT) == []


def test_deployment_with_unknown_field_is_rejected() -> None:
    dep = copy.deepcopy(DEPLOYMENT)
    dep["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    assert kubernetes_errors(dep) == [
        "spec.template.spec.containers.0: Additional properties are not allowed ('imagePullPolicyy' was unexpected)"
    ]


def test_configmap_is_accepted_and_misspelt_field_rejected() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "b"}}
    assert kubernetes_errors(cm) == []
    cm["datas"] = cm.pop("data")
    assert len(kubernetes_errors(cm)) == 1 and "datas" in kubernetes_errors(cm)[0]


def test_kubernetes_errors_refuses_custom_resources_and_unknown_kinds() -> None:
    with pytest.raises(ValueError, match="custom_resource_errors"):
        kubernetes_errors(CERTIFICATE)
    with pytest.raises(MissingFixtureError, match="Deploymentt"):
        kubernetes_errors(dict(DEPLOYMENT, kind="Deploymentt"))


@pytest.mark.parametrize(
    ("api_version", "custom"),
    [
        ("v1", False), ("apps/v1", False), ("rbac.authorization.k8s.io/v1", False),
        ("networking.k8s.io/v1", False), ("cert-manager.io/v1", True), ("argoproj.io/v1alpha1", True),
        ("gateway.networking.k8s.io/v1", True), ("apps.example.com/v1", True),
    ],
)
def test_is_custom_resource(api_version: str, custom: bool) -> None:
    assert is_custom_resource({"apiVersion": api_version, "kind": "X"}) is custom


def test_builtin_groups_match_kubernetes_validate() -> None:
    """BUILTIN_GROUPS is every group kubernetes-validate knows, across its versions."""
    groups: set[str] = set()
    root = resources.files("kubernetes_validate") / "kubernetes-json-schema"
    for version_dir in root.iterdir():
        if not version_dir.name.endswith("-local-strict"):
            continue
        defs = json.loads((version_dir / "_definitions.json").read_text(encoding="utf-8"))["$defs"]
        groups |= {gvk["group"] for d in defs.values() for gvk in d.get("x-kubernetes-group-version-kind", [])}
    assert groups == v.BUILTIN_GROUPS
