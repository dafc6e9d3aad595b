"""The control-plane services, as the plans of both stacks declare them."""

from __future__ import annotations

import json
import re

import pytest

from platformctl.mocks import SECRET_MARK, is_redacted


def by_type(plan: dict, type_: str) -> list[dict]:
    return [r for r in plan["resources"] if r["type"] == type_]


def component_of(plan: dict, resource: dict) -> str | None:
    by_urn = {r["urn"]: r for r in plan["resources"]}
    current = by_urn.get(resource["parent"] or "")
    while current is not None and not current["type"].startswith("platform:"):
        current = by_urn.get(current["parent"] or "")
    return current["type"] if current else None


def test_each_oidc_client_secret_is_one_secret_shared_by_idp_and_client(plan: dict) -> None:
    passwords = {r["name"].removeprefix("oidc-"): r for r in by_type(plan, "random:index/randomPassword:RandomPassword")
                 if r["name"].startswith("oidc-")}
    assert "argocd" in passwords, sorted(passwords)
    for client, password in passwords.items():
        assert "result" in password["options"]["additionalSecretOutputs"]
        users = [r for r in plan["resources"] if password["urn"] in r["dependsOn"]]
        idp = [r for r in users if component_of(plan, r) == "platform:openunison:OpenUnison"]
        service = [r for r in users if component_of(plan, r) not in (None, "platform:openunison:OpenUnison")]
        assert idp, f"{client}: OpenUnison never receives its secret"
        assert service, f"{client}: the service never receives its secret"
        for resource in idp + service:
            # Holders keep it secret; the Trust and GitLab's pods depend on it only for a checksum
            # annotation (to re-read it when it changes), which is plain, so they hold no secret.
            assert resource["secretPaths"] or _checksums(resource["inputs"]), f"{client}: {resource['name']}"
            in_plain = SECRET_MARK in json.dumps(resource["inputs"])
            assert not in_plain, f"{client}: {resource['name']} holds the client secret in plain text"


def _checksums(value: object) -> list[str]:
    """Values of `*-checksum` keys (annotations) that are SHA-256 digests, anywhere in `value`."""
    if isinstance(value, dict):
        found = [v for k, v in value.items() if str(k).endswith("-checksum") and re.fullmatch(r"[0-9a-f]{64}", str(v))]
        return found + [c for v in value.values() for c in _checksums(v)]
    if isinstance(value, list):
        return [c for v in value for c in _checksums(v)]
    return []


def test_argocd_signs_in_through_openunison_and_maps_platform_groups(plan: dict) -> None:
    (argocd,) = [r for r in by_type(plan, "kubernetes:helm.sh/v3:Release") if r["inputs"]["chart"] == "argo-cd"]
    values = argocd["inputs"]["values"]
    oidc = values["configs"]["cm"]["oidc.config"]
    assert "issuer: https://k8sou." in oidc and "/auth/idp/k8sIdp" in oidc
    assert "clientSecret: $argocd-oidc:clientSecret" in oidc  # a reference, never the value
    assert values["configs"]["rbac"]["policy.default"] == ""
    assert "g, platform-admins, role:admin" in values["configs"]["rbac"]["policy.csv"]
    assert values["dex"]["enabled"] is False and values["configs"]["cm"]["admin.enabled"] is False
    if plan["stack"] == "dev":
        assert "rootCA:" in oidc  # the private platform CA, not a disabled check


def test_platform_ca_is_a_secret_key_behind_a_cluster_issuer(renders: dict) -> None:
    plan = renders["dev"].plan
    (key,) = [k for k in by_type(plan, "tls:index/privateKey:PrivateKey") if k["name"] == "platform-tls-ca"]
    assert "privateKeyPem" in key["options"]["additionalSecretOutputs"]
    (secret,) = [
        r for r in by_type(plan, "kubernetes:core/v1:Secret")
        if r["inputs"].get("metadata", {}) == {"name": "platform-ca", "namespace": "cert-manager"} and r["cluster"] == "control-plane"
    ]
    assert is_redacted(secret["inputs"]["stringData"]) and secret["inputs"]["type"] == "kubernetes.io/tls"
    assert {"tls.crt", "tls.key"} <= set(secret["inputs"]["stringData"])
    issuers = [r for r in by_type(plan, "kubernetes:cert-manager.io/v1:ClusterIssuer")]
    # The control plane's alone: the workload clusters keep no CA key, the program signs their wildcard (components/tls.py).
    assert [(i["cluster"], i["inputs"]["spec"]) for i in issuers] == [("control-plane", {"ca": {"secretName": "platform-ca"}})]


def test_eks_uses_acme_through_route53_with_workload_identity(renders: dict) -> None:
    plan = renders["prod"].plan
    issuers = by_type(plan, "kubernetes:cert-manager.io/v1:ClusterIssuer")
    assert sorted(i["cluster"] for i in issuers) == ["control-plane", "dev", "prod"]
    # Each cluster's cert-manager with its own Route 53 role: the control plane's in platform:dns's zone, the workload
    # clusters' (the tenants' wildcards) in platform:appsDomain's (Pulumi.prod.yaml platform:dns.appsHostedZoneId).
    zones = {"control-plane": ("Z0123456789ABCDEFGHIJ", "platform.example.com")}
    for issuer in issuers:
        [solver] = issuer["inputs"]["spec"]["acme"]["solvers"]
        zone, names = zones.get(issuer["cluster"], ("Z9876543210ABCDEFGHIJ", "apps.example.net"))
        assert solver["dns01"]["route53"] == {"hostedZoneID": zone, "region": "eu-west-1"}
        assert solver["selector"] == {"dnsZones": [names]}
    assert not [k for k in by_type(plan, "tls:index/privateKey:PrivateKey") if k["name"] == "platform-tls-ca"]
    role = next(r for r in by_type(plan, "aws:iam/role:Role") if r["name"] == "platform-tls-route53")
    assert "system:serviceaccount:cert-manager:cert-manager" in role["inputs"]["assumeRolePolicy"]
    records = {r["inputs"]["name"] for r in by_type(plan, "aws:route53/record:Record")}
    assert {"k8sou.platform.example.com", "argocd.platform.example.com"} <= records


@pytest.mark.parametrize("cluster", ["control-plane", "dev", "prod"])
def test_gatekeeper_on_every_cluster_and_external_secrets_where_tenants_are(plan: dict, cluster: str) -> None:
    charts = {r["inputs"]["chart"] for r in by_type(plan, "kubernetes:helm.sh/v3:Release") if r["cluster"] == cluster}
    assert "gatekeeper" in charts
    # The control plane holds no tenant namespace, so no store to sync.
    assert ("external-secrets" in charts) == (cluster != "control-plane")


def test_stack_outputs_name_every_service_url_the_issuer_and_the_ca(plan: dict) -> None:
    outputs = plan["outputs"]
    assert outputs["issuerUrl"].endswith("/auth/idp/k8sIdp")
    assert set(outputs["urls"]) >= {"openunison", "argocd"}
    assert all(url.startswith("https://") for url in outputs["urls"].values())
    assert "caBundle" in outputs
