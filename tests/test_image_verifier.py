"""The image verifier on both stacks' plans (issue 19): policy-controller on dev and prod, its
ClusterImagePolicies valid against the CRD its chart renders, naming exactly the right keys,
and, for every pair of tenants, one tenant's key never trusted in the other's namespaces."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import pytest
import yaml
from pulumi.runtime.mocks import MockResourceArgs

from components.image_verifier import NAMESPACE, POLICY_API_VERSION
from components.signing import KeyRotation, trusted_public_keys
from components.tenant_supply_chain import APPROVED_PROJECT
from platformctl.helm_render import RELEASE_TYPE
from platformctl.mocks import PlatformMocks
from platformctl.render import render
from policy.labels import SIGNATURE_POLICY_LABEL, TENANT_LABEL
from stacks.config import ConfigError
from stacks.services import PLATFORM_NAMESPACES
from tests.conftest import ROOT
from tests.validation import crd_errors

CR = "kubernetes:policy.sigstore.dev/v1beta1:ClusterImagePolicy"
NAMESPACE_TYPE = "kubernetes:core/v1:Namespace"
ENDPOINT = "vault:generic/endpoint:Endpoint"
WORKLOAD_CLUSTERS = ("dev", "prod")


def glob_regex(glob: str) -> re.Pattern[str]:
    """policy-controller's glob (pkg/apis/glob Compile, v0.13.1): `**` any characters, `*` no `/`."""
    pattern = glob.replace(".", r"\.").replace("**", "#").replace("*", "[^/]*").replace("#", ".*")
    return re.compile(f"^{pattern}$")


def policies(plan: dict, cluster: str) -> dict[str, dict[str, Any]]:
    return {r["inputs"]["metadata"]["name"]: r["inputs"] for r in plan["resources"]
            if r["type"] == CR and r["cluster"] == cluster}


def keys_of(policy: dict[str, Any]) -> frozenset[str]:
    return frozenset(a["key"]["data"] for a in policy["spec"]["authorities"])


def tenant_namespaces(plan: dict, cluster: str) -> dict[str, str]:
    """Namespace -> its tenant (or sandbox) on `cluster`."""
    return {r["inputs"]["metadata"]["name"]: r["inputs"]["metadata"]["labels"][TENANT_LABEL] for r in plan["resources"]
            if r["type"] == NAMESPACE_TYPE and r["cluster"] == cluster and TENANT_LABEL in r["inputs"]["metadata"].get("labels", {})}


def allowed_registries(plan: dict, namespace: str) -> list[str]:
    """The image prefixes the namespace's own Gatekeeper constraint admits."""
    [constraint] = [r["inputs"] for r in plan["resources"] if r["inputs"].get("kind") == "PlatformAllowedRegistries"
                    and r["inputs"]["spec"]["match"].get("namespaces") == [namespace]]
    return constraint["spec"]["parameters"]["registries"]


def trusted_in(plan: dict, cluster: str, namespace: str) -> frozenset[str]:
    """Every key some policy trusts for an image the namespace may run (probed under each prefix)."""
    keys: set[str] = set()
    for prefix in allowed_registries(plan, namespace):
        for image in (f"{prefix}/app:v1.0.0", f"{prefix}/team/tool:1"):
            for policy in policies(plan, cluster).values():
                if any(glob_regex(g["glob"]).match(image) for g in policy["spec"]["images"]):
                    keys |= keys_of(policy)
    return frozenset(keys)


def fed_from_rotation(plan: dict, key: str) -> list[str]:
    """What the program computes from the key's rotation (its write_data_json, as the mocks answer)."""
    [rotation] = [r for r in plan["resources"] if r["type"] == ENDPOINT and r["inputs"]["path"] == f"transit/keys/{key}/rotate"]
    _, outputs = PlatformMocks().new_resource(MockResourceArgs(ENDPOINT, rotation["name"], rotation["inputs"], "", None, True))
    return trusted_public_keys(outputs["writeDataJson"], KeyRotation().trusted_versions)


def release(plan: dict, cluster: str) -> dict[str, Any]:
    [found] = [r for r in plan["resources"] if r["type"] == RELEASE_TYPE and r["cluster"] == cluster
               and r["inputs"]["name"] == "policy-controller"]
    return found


def rendered(plan: dict, cluster: str, kind: str, name: str) -> dict[str, Any]:
    [obj] = [o for o in release(plan, cluster)["rendered"] if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


# --- where it runs ---------------------------------------------------------------------------------


def test_the_verifier_runs_on_the_workload_clusters_only(plan: dict) -> None:
    clusters = {r["cluster"] for r in plan["resources"] if r["type"] == RELEASE_TYPE and r["inputs"]["name"] == "policy-controller"}
    assert clusters == set(WORKLOAD_CLUSTERS)
    for cluster in WORKLOAD_CLUSTERS:
        assert release(plan, cluster)["inputs"]["namespace"] == NAMESPACE
        assert release(plan, cluster)["rendered"], "rendered by the Helm engine"


def test_the_webhook_needs_nothing_from_the_internet(plan: dict) -> None:
    for cluster in WORKLOAD_CLUSTERS:
        [deployment] = [o for o in release(plan, cluster)["rendered"] if o["kind"] == "Deployment"]
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert "-disable-tuf=true" in container["args"]  # key authorities only: no public-good TUF root
        image = container["image"]
        assert re.fullmatch(r"ghcr\.io/sigstore/policy-controller/policy-controller@sha256:[0-9a-f]{64}", image)


def test_prod_enforces_and_dev_warns_as_configured(plan: dict) -> None:
    for cluster, mode in (("prod", "enforce"), ("dev", "warn")):
        assert {p["spec"]["mode"] for p in policies(plan, cluster).values()} == {mode}
        config = rendered(plan, cluster, "ConfigMap", "config-policy-controller")["data"]
        assert config["no-match-policy"] == ("deny" if mode == "enforce" else "warn")


def test_dev_can_enforce_and_a_bad_mode_names_the_key(tmp_path) -> None:
    document = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    services = document["config"]["platform:services"]
    services["imageVerifier"] = {"devMode": "enforce"}
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump(document))
    plan = render(tmp_path / "Pulumi.dev.yaml", "dev").plan
    assert {p["spec"]["mode"] for p in policies(plan, "dev").values()} == {"enforce"}
    services["imageVerifier"] = {"devMode": "audit"}
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump(document))
    with pytest.raises(ConfigError, match=r"platform:services\.imageVerifier\.devMode.*'enforce'.*'warn'"):
        render(tmp_path / "Pulumi.dev.yaml", "dev")


# --- the policies ----------------------------------------------------------------------------------


def test_every_policy_is_valid_against_the_crd_the_chart_renders(plan: dict) -> None:
    for cluster in WORKLOAD_CLUSTERS:
        crd = rendered(plan, cluster, "CustomResourceDefinition", "clusterimagepolicies.policy.sigstore.dev")
        found = policies(plan, cluster)
        assert found
        for name, policy in found.items():
            assert policy["apiVersion"] == POLICY_API_VERSION
            assert crd_errors(policy, crd) == [], name
        broken = json.loads(json.dumps(next(iter(found.values()))))
        broken["spec"]["authorities"][0]["key"]["pem"] = broken["spec"]["authorities"][0]["key"].pop("data")
        assert crd_errors(broken, crd)  # the check can fail


def test_each_policy_names_exactly_its_keys_from_vault(plan: dict) -> None:
    tenants = sorted({t for t in tenant_namespaces(plan, "prod").values()})
    for cluster in WORKLOAD_CLUSTERS:
        found = policies(plan, cluster)
        host = f"harbor.{plan_domain(plan)}"
        assert set(found) == {f"tenant-{t}" for t in tenants} | {"platform-approved"}
        for tenant in tenants:
            policy = found[f"tenant-{tenant}"]
            assert [g["glob"] for g in policy["spec"]["images"]] == [f"{host}/{tenant}/**"]
            assert keys_of(policy) == frozenset(fed_from_rotation(plan, f"{tenant}-cosign"))
            assert len(keys_of(policy)) == KeyRotation().trusted_versions
        approved = found["platform-approved"]
        assert [g["glob"] for g in approved["spec"]["images"]] == [f"{host}/{APPROVED_PROJECT}/**"]
        assert keys_of(approved) == frozenset(fed_from_rotation(plan, "platform-cosign"))
        for policy in found.values():  # key-based, no transparency log or keyless identity
            assert all(set(a) == {"name", "key"} for a in policy["spec"]["authorities"])


def plan_domain(plan: dict) -> str:
    return plan["outputs"]["urls"]["harbor"].removeprefix("https://harbor.")


def test_no_tenant_key_is_ever_trusted_in_another_tenants_namespaces(plan: dict) -> None:
    for cluster in WORKLOAD_CLUSTERS:
        found = policies(plan, cluster)
        owners = tenant_namespaces(plan, cluster)
        tenant_keys = {p.removeprefix("tenant-"): keys_of(v) for p, v in found.items() if p.startswith("tenant-")}
        platform_keys = keys_of(found["platform-approved"])
        assert len(tenant_keys) >= 2
        for a, b in itertools.permutations(tenant_keys, 2):
            assert not tenant_keys[a] & tenant_keys[b]
            for namespace in (ns for ns, owner in owners.items() if owner == b):
                trusted = trusted_in(plan, cluster, namespace)
                assert not tenant_keys[a] & trusted, f"{a}'s key trusted in {namespace} on {cluster}"
                assert trusted == tenant_keys[b] | platform_keys, namespace
        for namespace, owner in owners.items():
            if owner not in tenant_keys:  # a developer's sandbox: approved images only
                assert trusted_in(plan, cluster, namespace) == platform_keys, namespace


# --- who is checked --------------------------------------------------------------------------------


def test_tenant_namespaces_opt_in_and_platform_namespaces_are_exempt_by_name(plan: dict) -> None:
    exempt = {n.name for n in PLATFORM_NAMESPACES}
    assert NAMESPACE in exempt and "gatekeeper-system" in exempt
    for cluster in WORKLOAD_CLUSTERS:
        for r in plan["resources"]:
            if r["type"] == NAMESPACE_TYPE and r["cluster"] == cluster:
                labels = r["inputs"]["metadata"].get("labels", {})
                tenant = TENANT_LABEL in labels
                assert (labels.get(SIGNATURE_POLICY_LABEL) == "true") == tenant, r["name"]
                assert tenant != (r["inputs"]["metadata"]["name"] in exempt), r["name"]
        for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
            [hook] = rendered(plan, cluster, kind, "policy.sigstore.dev")["webhooks"]
            expressions = hook["namespaceSelector"]["matchExpressions"]
            assert {"key": SIGNATURE_POLICY_LABEL, "operator": "In", "values": ["true"]} in expressions
            [by_name] = [e for e in expressions if e["key"] == "kubernetes.io/metadata.name"]
            assert by_name["operator"] == "NotIn" and set(by_name["values"]) == exempt


def test_the_verifier_trusts_the_platform_ca_to_reach_harbor_where_it_is_private(plan: dict) -> None:
    private = plan["stack"] == "dev"  # kubeconfig clusters: the platform is its own CA
    for cluster in WORKLOAD_CLUSTERS:
        [deployment] = [o for o in release(plan, cluster)["rendered"] if o["kind"] == "Deployment"]
        mounts = {m["mountPath"] for c in deployment["spec"]["template"]["spec"]["containers"] for m in c.get("volumeMounts", [])}
        assert ("/etc/custom-ca" in mounts) == private


# --- the inventory ---------------------------------------------------------------------------------


def test_the_inventory_lists_the_verifiers_identity_and_every_signing_key_with_its_rotation(plan: dict) -> None:
    entries = {e["what"]: e for e in plan["outputs"]["credentials"]}
    for cluster in WORKLOAD_CLUSTERS:
        identity = entries[f"service-account token of the image verifier ({cluster})"]
        assert identity["category"] == "federated" and identity["lifetimeSeconds"] <= 3600
    rotation = KeyRotation()
    keys = [e for e in entries.values() if e["what"].startswith("cosign signing key ")]
    tenants = sorted({t for t in tenant_namespaces(plan, "prod").values()})
    assert sorted(e["what"].split()[3] for e in keys) == sorted([*(f"{t}-cosign" for t in tenants), "platform-cosign"])
    for entry in keys:
        assert entry["category"] == "signing-key" and entry["lifetimeSeconds"] == rotation.rotation_days * 86400
        assert f"every {rotation.rotation_days} days" in entry["rotation"]
        assert f"newest {rotation.trusted_versions} versions" in entry["rotation"]


# --- the keys behind the policies ------------------------------------------------------------------


def test_every_signing_key_is_rotated_by_pulumi_and_pruned_after_each_rotation(plan: dict) -> None:
    by_name = {r["name"]: r for r in plan["resources"]}
    keys = [r for r in plan["resources"] if r["type"] == "vault:transit/secretBackendKey:SecretBackendKey"]
    assert {k["inputs"]["name"] for k in keys} >= {"platform-cosign", "payments-cosign"}
    for key in keys:
        name, path = key["name"], f"transit/keys/{key['inputs']['name']}"
        assert key["inputs"]["autoRotatePeriod"] == 0 and key["inputs"]["exportable"] is False  # never behind the verifier's back
        assert key["options"]["ignoreChanges"] == ["minDecryptionVersion"]  # the pruning's, not reset by an update
        schedule, rotate, prune = by_name[f"{name}-rotation"], by_name[f"{name}-rotate"], by_name[f"{name}-prune"]
        assert schedule["inputs"]["rotationDays"] == KeyRotation().rotation_days
        assert rotate["inputs"]["path"] == f"{path}/rotate" and key["urn"] in rotate["dependsOn"]
        assert rotate["inputs"]["writeFields"] == ["keys", "latest_version"] and rotate["inputs"]["disableDelete"] is True
        assert prune["inputs"]["path"] == f"{path}/config" and rotate["urn"] in prune["dependsOn"]
