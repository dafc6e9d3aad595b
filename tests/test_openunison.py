"""OpenUnison under the mock engine: Trusts, client secrets, upstream identity, charts' contracts.

Each program builds an existing control-plane cluster and the OpenUnison component, plus a
stand-in for the client side of every OIDC client (a Secret fed by `OidcClient.client_secret`,
as the GitLab/Harbor/ArgoCD/Vault components will be), then asserts on the recorded plan.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from dataclasses import replace
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml

from components.common import Exposure, PlatformGroups
from components.openunison import (
    ClientSpec,
    LdapUpstream,
    OidcUpstream,
    OpenUnison,
    OpenUnisonArgs,
)
from components.versions import CHARTS
from platformctl.charts import charts_dir
from platformctl.mocks import REDACTED, SECRET_MARK, is_redacted
from tests.mock_program import ProgramRun, control_plane_cluster, run_program
from tests.validation import crd_errors, custom_resource_errors, is_custom_resource, kubernetes_errors, unknown_value_paths

DOMAIN = "example.test"
HOST = f"k8sou.{DOMAIN}"
# Two certificates: the charts take one certificate per trusted_certs entry.
CA_PEM = (
    "-----BEGIN CERTIFICATE-----\nbW9jay1wbGF0Zm9ybS1yb290\n-----END CERTIFICATE-----\n"
    "-----BEGIN CERTIFICATE-----\nbW9jay1wbGF0Zm9ybS1pbnRlcm1lZGlhdGU=\n-----END CERTIFICATE-----\n"
)
UPSTREAM_SECRET = "upstream-plain-value-must-never-show"
MOCK_ROTATION_TIME = "2026-01-01T00:00:00Z"  # what PlatformMocks answers for a Rotating
CLIENTS = {
    "gitlab": ("https://gitlab.example.test/users/auth/openid_connect/callback",),
    "harbor": ("https://harbor.example.test/c/oidc/callback",),
    "argocd": ("https://argocd.example.test/auth/callback",),
    "vault": ("https://vault.example.test/ui/vault/auth/oidc/oidc/callback", "http://localhost:8250/oidc/callback"),
}


@functools.cache
def traefik_ingress_route_crd() -> dict[str, Any]:
    """Traefik's IngressRoute CRD as the pinned chart ships it (the fetched, digest-checked chart;
    the checkout's parent holds no shared sources when it is a worktree)."""
    return yaml.safe_load((charts_dir() / "traefik" / CHARTS["traefik"].version / "crds/traefik.io_ingressroutes.yaml").read_text())


CHART_OF_RELEASE = {"openunison": "openunison-operator", "orchestra": "orchestra", "orchestra-login-portal": "orchestra-login-portal"}
# Keys under `oidc` the login portal reads (OpenUnison/helm-charts orchestra-login-portal/
# templates/openunison/authentication_chains/standard-chains.yaml; orchestra reads only its
# presence). The charts' values.yaml do not document `oidc`, so the check below replaces
# unknown_value_paths for that one section.
OIDC_TEMPLATE_KEYS = {
    "client_id", "client_id_is_secret", "issuer", "auth_url", "token_url", "userinfo_url", "scopes", "domain",
    "user_in_idtoken", "forceauthentication", "claims",
}
OIDC_CLAIM_KEYS = {"sub", "email", "given_name", "family_name", "display_name", "groups"}
# Keys that match CREDENTIAL_KEY but hold no credential: references (`secretName`, `keyName`,
# `codeLastMileKeyName`), lifetimes (`K8S_TOKEN_LIFE_MILLIS`) and scheduling (`topologyKey`).
REFERENCE_KEY = re.compile(r"(name|names|millis|topologyKey)$", re.I)
CREDENTIAL_KEY = re.compile(r"password|secret|token|key", re.I)
INSECURE = re.compile(r"insecure|skip[-_]?tls[-_]?verify|tls[-_]?skip[-_]?verify|skipverify", re.I)


Run = ProgramRun[OpenUnison]  # `result` is the component


def oidc_upstream() -> OidcUpstream:
    return OidcUpstream(
        issuer="https://login.example.test/realms/staff",
        client_id="platform-test",
        client_secret=pulumi.Output.secret(UPSTREAM_SECRET),
    )


def ldap_upstream() -> LdapUpstream:
    return LdapUpstream(
        url="ldaps://dc1.example.test",
        bind_dn="CN=openunison,OU=Services,DC=example,DC=test",
        bind_password=pulumi.Output.secret(UPSTREAM_SECRET),
        search_base="DC=example,DC=test",
    )


def make_args(cert_manager: pulumi.Resource, **overrides: Any) -> OpenUnisonArgs:
    args: dict[str, Any] = {
        "domain": DOMAIN,
        "exposure": Exposure(
            hostname=HOST, cluster_issuer="platform-ca", ca_bundle=pulumi.Output.from_input(CA_PEM)
        ),
        "ingress_namespace": "traefik",
        "groups": PlatformGroups(["platform-admins"], ["platform-approvers"]),
        "clients": {name: ClientSpec(redirect_uris=uris) for name, uris in CLIENTS.items()},
        "cert_manager": cert_manager,
        "oidc_upstream": oidc_upstream(),
        "protect": True,
    }
    args.update(overrides)
    return OpenUnisonArgs(**args)


def build(upstream: str, **overrides: Any) -> Run:
    def program() -> OpenUnison:
        cluster = control_plane_cluster()
        # Stand-in for the cert-manager component.
        cert_manager = k8s.core.v1.Namespace(
            "control-plane-cert-manager", metadata={"name": "cert-manager"},
            opts=pulumi.ResourceOptions(provider=cluster.provider),
        )
        kind = {"oidc_upstream": oidc_upstream(), "ldap_upstream": None} if upstream == "oidc" else {
            "oidc_upstream": None, "ldap_upstream": ldap_upstream()
        }
        ou = OpenUnison("openunison", cluster, make_args(cert_manager, **{**kind, **overrides}))
        # The client side: what a service component does with its OidcClient.
        for name, client in ou.clients.items():
            k8s.core.v1.Secret(
                f"{name}-client-side",
                metadata={"name": f"{name}-oidc", "namespace": name},
                string_data={"client-secret": client.client_secret},
                opts=pulumi.ResourceOptions(provider=cluster.provider),
            )
        return ou

    return run_program(program)


@pytest.fixture(scope="module", params=["oidc", "ldap"])
def run(request: pytest.FixtureRequest) -> Run:
    return build(request.param)


@pytest.fixture(scope="module")
def oidc_run() -> Run:
    return build("oidc")


@pytest.fixture(scope="module")
def ldap_run() -> Run:
    return build("ldap")


def k8s_object(resource: dict[str, Any]) -> bool:
    return resource["type"].startswith("kubernetes:") and not resource["type"].startswith("kubernetes:helm.sh/")


def releases(run: Run) -> dict[str, dict[str, Any]]:
    return {r["inputs"]["name"]: r for r in run.of_type("kubernetes:helm.sh/v3:Release")}


# --- the objects are what the APIs and charts accept ----------------------------------------


def test_every_object_validates(run: Run) -> None:
    objects = [r for r in run.resources if k8s_object(r)]
    custom = [r for r in objects if is_custom_resource(r["inputs"])]
    assert {r["inputs"]["kind"] for r in custom} == {"Trust", "Workflow", "IngressRoute", "Certificate"}
    for resource in objects:
        # Validated with secrets revealed: a redacted "[secret]" is not of the schema's type.
        if resource["inputs"]["kind"] == "IngressRoute":  # Traefik's, against the pinned chart's CRD
            assert crd_errors(run.raw[resource["urn"]], traefik_ingress_route_crd()) == [], resource["urn"]
            continue
        check = custom_resource_errors if is_custom_resource(resource["inputs"]) else kubernetes_errors
        assert check(run.raw[resource["urn"]]) == [], resource["urn"]


def test_helm_values_use_only_chart_keys(run: Run) -> None:
    found = releases(run)
    assert set(found) == set(CHART_OF_RELEASE)
    for release_name, resource in found.items():
        chart = CHART_OF_RELEASE[release_name]
        inputs = resource["inputs"]
        assert (inputs["chart"], inputs["repositoryOpts"]["repo"], inputs["version"]) == tuple(CHARTS[chart])
        assert inputs["namespace"] == "openunison"
        # `oidc` is read by the templates but not documented in values.yaml: checked below instead.
        # orchestra's Deployment template reads `services.affinity`, which its values.yaml does not document.
        assert unknown_value_paths(chart, inputs["values"], freeform=["oidc", "services.affinity"]) == [], release_name
        if "oidc" in inputs["values"]:
            oidc = inputs["values"]["oidc"]
            assert set(oidc) <= OIDC_TEMPLATE_KEYS and set(oidc["claims"]) == OIDC_CLAIM_KEYS


def test_unknown_value_check_is_not_blind(oidc_run: Run) -> None:
    values = releases(oidc_run)["orchestra"]["inputs"]["values"]
    assert unknown_value_paths("orchestra", values) == ["oidc", "services.affinity"]
    assert unknown_value_paths("orchestra", {**values, "netwrok": {}}, freeform=["oidc", "services.affinity"]) == ["netwrok"]


# --- one generated secret per client, the same value on both sides ---------------------------


def test_one_random_password_per_client(run: Run) -> None:
    passwords = {r["name"]: r for r in run.of_type("random:index/randomPassword:RandomPassword")}
    client_passwords = {name: r for name, r in passwords.items() if name.startswith("oidc-")}
    assert set(client_passwords) == {f"oidc-{name}" for name in CLIENTS}
    for resource in client_passwords.values():
        assert resource["inputs"]["length"] == 48 and resource["inputs"]["special"] is False
        assert "result" in resource["options"]["additionalSecretOutputs"]


def test_client_secret_is_one_secret_on_both_sides(run: Run) -> None:
    values = set()
    for name in CLIENTS:
        password = run.one("random:index/randomPassword:RandomPassword", f"oidc-{name}")
        idp_side = run.one("kubernetes:core/v1:Secret", f"control-plane-oidc-client-{name}")
        client_side = run.one("kubernetes:core/v1:Secret", f"{name}-client-side")
        assert idp_side["inputs"]["metadata"]["namespace"] == "openunison"
        for secret in (idp_side, client_side):
            # Fed by the RandomPassword, secret in the plan.
            assert password["urn"] in secret["dependsOn"], secret["urn"]
            assert secret["secretPaths"] == ["stringData"] and is_redacted(secret["inputs"]["stringData"])
        # The same generated value on both sides (the fingerprint hashes it; the raw inputs show it).
        assert run.fingerprints[idp_side["urn"]] == run.fingerprints[client_side["urn"]]
        value = run.raw[idp_side["urn"]]["stringData"]["client-secret"]
        assert value.startswith(SECRET_MARK) and run.raw[client_side["urn"]]["stringData"]["client-secret"] == value
        values.add(value)
    assert len(values) == len(CLIENTS)


def test_client_secrets_rotate_every_30_days_and_openunison_rereads_them(run: Run) -> None:
    for name in CLIENTS:
        password = run.one("random:index/randomPassword:RandomPassword", f"oidc-{name}")
        rotation = run.one("time:index/rotating:Rotating", f"oidc-{name}-rotation")
        assert rotation["inputs"] == {"rotationDays": 30}
        # The rotation's timestamp is the password's replacement trigger: a new time, a new password.
        assert run.triggers[password["urn"]] == MOCK_ROTATION_TIME and rotation["urn"] in password["dependsOn"]
        # OpenUnison reads a Trust's Secret when the Trust changes: the Trust carries the secret's checksum.
        trust = run.one("kubernetes:openunison.tremolo.io/v1:Trust", f"control-plane-trust-{name}")
        value = run.raw[run.one("kubernetes:core/v1:Secret", f"control-plane-oidc-client-{name}")["urn"]]["stringData"]["client-secret"]
        assert value.startswith(SECRET_MARK)
        assert trust["inputs"]["metadata"]["annotations"] == {
            "platform.io/oidc-client-checksum": hashlib.sha256(value.encode()).hexdigest()
        }
        assert trust["secretPaths"] == []  # the hash is plain, so the Trust stays readable
    assert not [p for p in run.of_type("random:index/randomPassword:RandomPassword")
                if p["name"].startswith("oidc-") and p["urn"] not in run.triggers]


def test_trust_per_client_references_its_secret(run: Run) -> None:
    operator = releases(run)["openunison"]
    portal = releases(run)["orchestra-login-portal"]
    namespace = run.one("kubernetes:core/v1:Namespace", "control-plane-openunison")
    trusts = {r["inputs"]["spec"]["clientId"]: r for r in run.of_type("kubernetes:openunison.tremolo.io/v1:Trust")}
    assert set(trusts) == set(CLIENTS)  # no Trust for kubernetes: the portal declares that public client
    for name, trust in trusts.items():
        spec = trust["inputs"]["spec"]
        secret = run.one("kubernetes:core/v1:Secret", f"control-plane-oidc-client-{name}")
        assert spec["clientSecret"] == {"secretName": secret["inputs"]["metadata"]["name"], "keyName": "client-secret"}
        assert spec["redirectURI"] == list(CLIENTS[name])
        assert (spec["publicEndpoint"], spec["verifyRedirect"]) == (False, True)
        assert spec["authChainName"] == "login-service" and spec["codeLastMileKeyName"] == "lastmile-oidc"
        assert trust["inputs"]["metadata"]["namespace"] == "openunison"
        for before in (operator, portal, secret, namespace):
            assert before["urn"] in trust["dependsOn"], (name, before["name"])


def test_outputs(oidc_run: Run) -> None:
    ou = oidc_run.result
    assert ou.issuer_url == f"https://{HOST}/auth/idp/k8sIdp"
    assert ou.portal_url == f"https://{HOST}/"
    assert ou.kubernetes_client_id == "kubernetes"
    assert sorted(ou.clients) == sorted(CLIENTS)
    for name, client in ou.clients.items():
        assert (client.client_id, client.issuer_url) == (name, ou.issuer_url)
        assert isinstance(client.client_secret, pulumi.Output)


# --- no plain credential, no insecure transport ---------------------------------------------


def _plain_credentials(value: Any, path: str = "") -> list[str]:
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            if (
                CREDENTIAL_KEY.search(str(key)) and not REFERENCE_KEY.search(str(key))
                and isinstance(item, str) and item not in (REDACTED, "")
            ):
                found.append(sub)
            found += _plain_credentials(item, sub)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _plain_credentials(item, f"{path}[{index}]")
    return found


def test_no_plain_credential(run: Run) -> None:
    for resource in run.resources:
        assert _plain_credentials(resource["inputs"]) == [], resource["urn"]
    text = json.dumps([r["inputs"] for r in run.resources])
    assert SECRET_MARK not in text and UPSTREAM_SECRET not in text


def test_plain_credential_check_is_not_blind() -> None:
    assert _plain_credentials({"stringData": {"OIDC_CLIENT_SECRET": "x"}, "spec": {"keyName": "k"}}) == [
        "stringData.OIDC_CLIENT_SECRET"
    ]


def test_source_secret_carries_the_upstream_credential(oidc_run: Run, ldap_run: Run) -> None:
    for run, key in ((oidc_run, "OIDC_CLIENT_SECRET"), (ldap_run, "AD_BIND_PASSWORD")):
        secret = run.one("kubernetes:core/v1:Secret", "control-plane-orchestra-secrets-source")
        assert secret["inputs"]["metadata"]["name"] == "orchestra-secrets-source"
        assert secret["secretPaths"] == ["stringData"] and is_redacted(secret["inputs"]["stringData"])
        data = run.raw[secret["urn"]]["stringData"]
        assert set(data) == {key, "K8S_DB_SECRET", "unisonKeystorePassword"}
        assert data[key] == UPSTREAM_SECRET
        assert data["K8S_DB_SECRET"].startswith(SECRET_MARK) and data["unisonKeystorePassword"].startswith(SECRET_MARK)
        assert data["K8S_DB_SECRET"] != data["unisonKeystorePassword"]


def test_nothing_insecure(run: Run) -> None:
    assert not INSECURE.search(json.dumps([r["inputs"] for r in run.resources]))


def test_trusts_the_platform_ca(run: Run) -> None:
    pems = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", CA_PEM, re.S)
    trusted = releases(run)["orchestra"]["inputs"]["values"]["trusted_certs"]
    assert [entry["name"] for entry in trusted] == ["platform-ca-0", "platform-ca-1"]
    assert [base64.b64decode(entry["pem_b64"]).decode().strip() for entry in trusted] == pems
    # The login portal's templates read no trust, network or certificate values: it gets none.
    assert not set(releases(run)["orchestra-login-portal"]["inputs"]["values"]) & {"trusted_certs", "network", "cert_template"}


def test_public_roots_add_no_trusted_cert() -> None:
    """On EKS the platform certificates chain to public roots: the bundle is empty."""
    exposure = Exposure(hostname=HOST, cluster_issuer="letsencrypt", ca_bundle=pulumi.Output.from_input(""))
    run = build("oidc", exposure=exposure)
    assert releases(run)["orchestra"]["inputs"]["values"]["trusted_certs"] == []


def test_published_by_our_route_in_traefiks_namespace_with_a_platform_certificate(run: Run) -> None:
    found = releases(run)
    network = found["orchestra"]["inputs"]["values"]["network"]
    # No chart route: its nginx Ingress hard-codes the class, its Traefik route skips verification.
    assert (network["ingress_type"], network["createIngressCertificate"]) == ("none", False)
    assert network["openunison_host"] == HOST
    # No Ingress, nothing routed from OpenUnison's namespace: Traefik never watches it (tests/test_traefik_secret_attacks.py).
    assert run.of_type("kubernetes:networking.k8s.io/v1:Ingress") == []
    routes = {r["inputs"]["metadata"]["name"]: r for r in run.of_type("kubernetes:traefik.io/v1alpha1:IngressRoute")}
    assert {r["inputs"]["metadata"]["namespace"] for r in routes.values()} == {"traefik"}
    route = routes["openunison"]
    assert route["inputs"]["spec"] == {
        "routes": [{"kind": "Rule", "match": f"Host(`{HOST}`) && PathPrefix(`/`)", "services": [{"name": "openunison-orchestra", "port": 80}]}],
        "tls": {"secretName": "openunison-tls"},
    }
    assert routes["openunison-unregistered-redirect"]["inputs"]["spec"]["tls"] == {"secretName": "openunison-tls"}
    [certificate] = run.of_type("kubernetes:cert-manager.io/v1:Certificate")
    assert certificate["inputs"]["metadata"]["namespace"] == "traefik"
    assert certificate["inputs"]["spec"]["secretName"] == "openunison-tls" and certificate["inputs"]["spec"]["dnsNames"] == [HOST]
    assert certificate["inputs"]["spec"]["issuerRef"]["name"] == "platform-ca"
    [service] = [r for r in run.of_type("kubernetes:core/v1:Service") if r["inputs"]["metadata"]["namespace"] == "traefik"]
    assert service["inputs"]["spec"]["externalName"] == "openunison-orchestra.openunison.svc.cluster.local"
    cert_manager = run.one("kubernetes:core/v1:Namespace", "control-plane-cert-manager")
    assert {found["orchestra"]["urn"], cert_manager["urn"]} <= set(route["dependsOn"])
    # The in-cluster HTTP hop is open to the ingress namespace only.
    policies = found["orchestra"]["inputs"]["values"]["network_policies"]
    assert policies == {"ingress": {"labels": {"kubernetes.io/metadata.name": "traefik"}}, "monitoring": {"enabled": False}}


# --- upstream identity -----------------------------------------------------------------------


def test_oidc_upstream(oidc_run: Run) -> None:
    for name in ("orchestra", "orchestra-login-portal"):
        values = releases(oidc_run)[name]["inputs"]["values"]
        assert "active_directory" not in values
        assert values["oidc"]["issuer"] == "https://login.example.test/realms/staff"
        assert values["oidc"]["client_id"] == "platform-test"
        assert values["oidc"]["scopes"] == "openid email profile groups"
        assert values["oidc"]["claims"]["groups"] == "groups"


def test_ldap_upstream(ldap_run: Run) -> None:
    for name in ("orchestra", "orchestra-login-portal"):
        values = releases(ldap_run)[name]["inputs"]["values"]
        assert "oidc" not in values
        assert values["active_directory"] == {
            "base": "DC=example,DC=test", "host": "dc1.example.test", "port": "636",
            "bind_dn": "CN=openunison,OU=Services,DC=example,DC=test", "con_type": "ldaps", "srv_dns": "false",
        }


# --- ordering --------------------------------------------------------------------------------


def test_dependencies(run: Run) -> None:
    namespace = run.one("kubernetes:core/v1:Namespace", "control-plane-openunison")
    found = releases(run)
    operator, orchestra, portal = found["openunison"], found["orchestra"], found["orchestra-login-portal"]
    source = run.one("kubernetes:core/v1:Secret", "control-plane-orchestra-secrets-source")
    for resource in run.resources:
        inputs = resource["inputs"]
        if resource["type"].startswith("kubernetes:") and (inputs.get("namespace") == "openunison" or (inputs.get("metadata") or {}).get("namespace") == "openunison"):
            assert namespace["urn"] in resource["dependsOn"], resource["urn"]
        if k8s_object(resource) and inputs["apiVersion"].startswith("openunison.tremolo.io/"):
            assert operator["urn"] in resource["dependsOn"], resource["urn"]
    assert {operator["urn"], source["urn"]} <= set(orchestra["dependsOn"])
    assert orchestra["urn"] in portal["dependsOn"]
    assert operator["options"]["protect"] is True
    assert all(r["provider"] and r["cluster"] == "control-plane" for r in run.resources if r["type"].startswith("kubernetes:"))


def test_names_are_stable() -> None:
    first, second = build("oidc"), build("oidc")
    assert [r["urn"] for r in first.resources] == [r["urn"] for r in second.resources]
    assert [r["inputs"] for r in first.resources] == [r["inputs"] for r in second.resources]


# --- arguments are checked before anything is registered -------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"oidc_upstream": None}, "exactly one upstream"),
        ({"ldap_upstream": "set below"}, "exactly one upstream"),
        ({"clients": {"kubernetes": ClientSpec(("https://x.example.test/cb",))}}, "built-in public client"),
        ({"clients": {"gitlab": ClientSpec(("http://gitlab.example.test/cb",))}}, "must be https://"),
        ({"clients": {"gitlab": ClientSpec(("http://localhost.example.test:8250/cb",))}}, "must be https://"),
        ({"clients": {"GitLab": ClientSpec(("https://gitlab.example.test/cb",))}}, "DNS label"),
        ({"clients": {"gitlab": ClientSpec(())}}, "at least one redirect URI"),
    ],
)
def test_bad_arguments(overrides: dict[str, Any], message: str) -> None:
    if overrides.get("ldap_upstream") == "set below":
        overrides = {"ldap_upstream": ldap_upstream()}
    with pytest.raises(ValueError, match=message):
        make_args(pulumi.Output.from_input("unused"), **overrides)  # type: ignore[arg-type]


def test_bad_upstreams_and_exposure() -> None:
    base = make_args(pulumi.Output.from_input("unused"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ldaps://"):
        replace(base, oidc_upstream=None, ldap_upstream=replace(ldap_upstream(), url="ldap://dc1.example.test"))
    with pytest.raises(ValueError, match="sAMAccountName"):
        replace(base, oidc_upstream=None, ldap_upstream=replace(ldap_upstream(), user_attribute="uid"))
    with pytest.raises(ValueError, match="https://"):
        replace(base, oidc_upstream=replace(oidc_upstream(), issuer="http://login.example.test"))
