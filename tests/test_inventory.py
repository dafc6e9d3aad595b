"""The credential inventory (stack output `credentials`) and its check (policy/inventory.py):
on both stacks' plans, and on deliberately bad entries and resources.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from components.inventory import Credential, CredentialInventory, describe_seconds
from policy.inventory import MAX_LIFETIME_SECONDS, check_credentials
from stacks.vault_federation import IdentityFederation

ENTRY_KEYS = {"what", "category", "issuer", "holder", "scope", "lifetime", "lifetimeSeconds", "rotation", "resources"}


def entries_by_what(plan: dict) -> dict[str, dict]:
    return {e["what"]: e for e in plan["outputs"]["credentials"]}


# --- both stacks ---------------------------------------------------------------------------------------

def test_each_plan_exports_its_credential_inventory(plan: dict) -> None:
    entries = plan["outputs"]["credentials"]
    assert len(entries) > 20
    for entry in entries:
        assert set(entry) == ENTRY_KEYS, entry
        assert all(isinstance(entry[k], str) and entry[k] for k in ENTRY_KEYS - {"lifetimeSeconds", "resources"}), entry
    assert len({e["what"] for e in entries}) == len(entries), "two entries describe the same credential"


def test_the_check_passes_on_both_stacks(renders: dict) -> None:
    for stack, render in renders.items():
        assert check_credentials(render.plan) == [], stack


def test_long_lived_material_is_classified_for_what_it_is(plan: dict) -> None:
    entries = entries_by_what(plan)
    eks = plan["outputs"]["clusters"]["control-plane"]["eks"]
    # The program's own recovery material, only in the encrypted state.
    assert entries["Vault root token"]["category"] == "bootstrap"
    assert entries["Vault recovery keys" if eks else "Vault unseal keys"]["category"] == "bootstrap"
    assert "Pulumi state" in entries["Vault root token"]["holder"]
    # Secrets inside one system.
    assert entries["Harbor PostgreSQL password"]["category"] == "internal"
    assert entries["Harbor PostgreSQL password"]["issuer"] == entries["Harbor PostgreSQL password"]["holder"] == "Harbor"
    # Keys that only sign; what they sign is listed and checked on its own.
    if eks:
        assert "platform CA key" not in entries and entries["ACME account key"]["category"] == "external"
    else:
        assert entries["platform CA key"]["category"] == "signing-key"
        assert entries["platform CA key"]["lifetimeSeconds"] == 5 * 365 * 86400
    for certificates in ("TLS certificates of the platform's names", "TLS certificate of Vault's public name", "serving certificate of Vault"):
        assert entries[certificates]["lifetimeSeconds"] == MAX_LIFETIME_SECONDS
    # Between systems: expiring, short.
    assert entries["GitLab platform-bot personal access token"]["lifetimeSeconds"] == 30 * 86400
    assert entries["Vault tokens of people (OIDC sign-in)"]["lifetimeSeconds"] == 3600
    assert entries["OpenUnison tokens"]["lifetimeSeconds"] == 60
    for cluster in ("control-plane", "dev", "prod"):
        assert entries[f"service-account tokens of the {cluster} cluster, presented to Vault"]["lifetimeSeconds"] == 3600
    if eks:
        assert entries["AWS sessions of the deploy role"]["lifetimeSeconds"] == 3600
        assert entries["AWS sessions of the preview role"]["resources"] == ["platform-pipeline-preview"]
        plan_role = entries["AWS sessions of the plan role"]  # main's plans and drift checks: they read the clusters' Secrets
        assert plan_role["resources"] == ["platform-pipeline-plan"] and plan_role["lifetimeSeconds"] == 3600
        assert "on main" in plan_role["holder"] and "AmazonEKSAdminViewPolicy" in plan_role["scope"]


def _resource_named(plan: dict, name: str) -> dict:
    [found] = [r for r in plan["resources"] if r["name"] == name]
    return found


def test_oidc_client_secrets_are_replaced_by_a_30_day_rotation(plan: dict) -> None:
    entries = [e for e in plan["outputs"]["credentials"] if e["what"].startswith("OIDC client secret of ")]
    assert sorted(e["what"].removeprefix("OIDC client secret of ") for e in entries) == ["argocd", "gitlab", "harbor", "vault"]
    for entry in entries:
        assert (entry["category"], entry["lifetimeSeconds"]) == ("issued", 30 * 86400)
        assert "pulumi up --refresh" in entry["rotation"] and "pulumi up --refresh" in entry["lifetime"]
        [name] = entry["resources"]
        # What the entry claims is what the plan does: the password hangs on its own 30-day rotation.
        password = _resource_named(plan, name)
        rotation = _resource_named(plan, f"{name}-rotation")
        assert rotation["type"] == "time:index/rotating:Rotating" and rotation["inputs"]["rotationDays"] == 30
        assert rotation["urn"] in password["dependsOn"]


def test_the_kube_oidc_proxies_serving_certificates_live_90_days_and_renew_at_half_life(plan: dict) -> None:
    entries = {e["what"]: e for e in plan["outputs"]["credentials"] if "kube-oidc-proxy" in e["what"]}
    certificates = [r["name"] for r in plan["resources"] if r["type"] == "tls:index/selfSignedCert:SelfSignedCert"]
    proxies = {n.removesuffix("-kube-oidc-proxy-cert"): n for n in certificates if n.endswith("-kube-oidc-proxy-cert")}
    # Tenants' virtual clusters (<tenant>-<environment>) run their own proxy, on EKS too.
    virtual = {n.removesuffix("-federation-proxy-cert"): n for n in certificates if n.endswith("-federation-proxy-cert")}
    eks = plan["outputs"]["clusters"]["dev"]["eks"]
    assert sorted(proxies) == ([] if eks else ["dev", "prod"])  # EKS trusts the issuer itself: no proxy
    assert virtual and len(entries) == len(proxies) + len(virtual)
    where = {**{f"the {c}": n for c, n in proxies.items()}, **{f"the virtual cluster {c}": n for c, n in virtual.items()}}
    for place, cert_name in where.items():
        entry = entries[f"serving key and certificate of {place} kube-oidc-proxy"]
        assert entry["category"] == "issued" and entry["lifetimeSeconds"] == MAX_LIFETIME_SECONDS
        assert entry["resources"] == [cert_name.removesuffix("-cert") + "-key", cert_name]
        certificate = _resource_named(plan, cert_name)["inputs"]
        assert certificate["validityPeriodHours"] * 3600 == entry["lifetimeSeconds"]
        assert certificate["earlyRenewalHours"] * 2 == certificate["validityPeriodHours"]


@pytest.mark.parametrize("what, reported", [
    ("Harbor PostgreSQL password", "random:index/randomPassword:RandomPassword 'harbor-data-postgres-password'"),
    ("OIDC client secret of gitlab", "random:index/randomPassword:RandomPassword 'oidc-gitlab'"),
    ("serving key and certificate of the dev kube-oidc-proxy", "tls:index/privateKey:PrivateKey 'dev-kube-oidc-proxy-key'"),
    ("AWS sessions of kube-system/aws-node (IRSA) on prod", "aws:iam/role:Role 'prod-aws-node'"),
])
def test_every_credential_resource_of_the_plan_is_listed(renders: dict, what: str, reported: str) -> None:
    # Coverage really is checked: remove one entry and its resource is reported.
    checked = []
    for stack, render in renders.items():
        plan = render.plan
        if what not in entries_by_what(plan):
            continue  # the kube-oidc-proxies exist on kubeconfig clusters only
        broken = copy.deepcopy(plan)
        broken["outputs"]["credentials"] = [e for e in broken["outputs"]["credentials"] if e["what"] != what]
        assert set(check_credentials(broken)) - set(check_credentials(plan)) == {
            f"{reported} creates a credential the inventory does not list: "
            "register a Credential naming it in `resources` (components/inventory.py)"
        }, stack
        checked.append(stack)
    assert checked, what  # the stack that declares it: dev for the kube-oidc-proxies, prod for the IRSA roles


# --- deliberately bad resources ------------------------------------------------------------------------

def _resource(type_: str, name: str, inputs: dict[str, Any], cluster: str | None = "dev") -> dict[str, Any]:
    return {"urn": f"urn:pulumi:dev::platform-bootstrap::{type_}::{name}", "type": type_, "name": name, "custom": True,
            "parent": None, "provider": None, "cluster": cluster, "dependsOn": [], "options": {"protect": False},
            "inputs": inputs, "secretPaths": []}


def _k8s(kind: str, api_version: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    group = api_version.split("/")[0] if "/" in api_version else "core"
    version = api_version.split("/")[-1]
    return _resource(f"kubernetes:{group}/{version}:{kind}", name,
                     {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": "payments-dev"}, **body})


def _pod_with_token(seconds: int) -> dict[str, Any]:
    volume = {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": seconds}}]}}
    return {"spec": {"selector": {"matchLabels": {"app": "a"}}, "template": {"metadata": {"labels": {"app": "a"}},
            "spec": {"containers": [{"name": "a", "image": "harbor.example.com/a/a:1"}], "volumes": [volume]}}}}


YEAR = 365 * 86400
BAD_RESOURCES = {
    "a non-expiring robot": (
        _resource("harbor:index/robotAccount:RobotAccount", "payments-pull", {"name": "pull", "duration": -1}, None),
        r"'payments-pull' never expires \(duration -1\)",
    ),
    "a robot without duration": (
        _resource("harbor:index/robotAccount:RobotAccount", "payments-push", {"name": "push"}, None),
        r"'payments-push' never expires \(duration None\)",
    ),
    "a one-year robot": (
        _resource("harbor:index/robotAccount:RobotAccount", "payments-ci", {"name": "ci", "duration": 365}, None),
        r"'payments-ci' lives 365 days: at most 90",
    ),
    "a cluster Secret with a service-account bearer token": (
        _k8s("Secret", "v1", "deployer-token", {"type": "kubernetes.io/service-account-token",
             "metadata": {"name": "deployer-token", "namespace": "payments-dev",
                          "annotations": {"kubernetes.io/service-account.name": "deployer"}}}),
        r"Secret 'deployer-token'.*service-account token that never expires",
    ),
    "an ArgoCD cluster Secret with a bearer token": (
        _k8s("Secret", "v1", "cluster-dev", {"type": "Opaque",
             "metadata": {"name": "cluster-dev", "namespace": "argocd", "labels": {"argocd.argoproj.io/secret-type": "cluster"}},
             "stringData": {"name": "dev", "server": "https://dev:6443",
                            "config": json.dumps({"bearerToken": "eyJhbGciOi", "tlsClientConfig": {"caData": "Q0E="}})}}),
        r"'cluster-dev'.*carries bearerToken",
    ),
    "a one-year TokenRequest": (
        _resource("kubernetes:authentication.k8s.io/v1:TokenRequest", "deployer-token-request",
                  {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "metadata": {"name": "deployer", "namespace": "payments-dev"},
                   "spec": {"audiences": ["vault"], "expirationSeconds": YEAR}}),
        r"'deployer-token-request': spec.expirationSeconds asks for a service-account token of 8760 hours: at most one hour",
    ),
    "a projected token volume for a year": (
        _k8s("Deployment", "apps/v1", "web", _pod_with_token(YEAR)),
        r"'web': spec.template.spec.volumes\[0\].projected.sources\[0\].serviceAccountToken.expirationSeconds asks for "
        r"a service-account token of 8760 hours",
    ),
    "a SecretStore asking for a day-long token": (
        _k8s("SecretStore", "external-secrets.io/v1", "vault", {"spec": {"provider": {"vault": {"auth": {"jwt": {
             "path": "jwt-dev", "role": "payments-dev",
             "kubernetesServiceAccountToken": {"serviceAccountRef": {"name": "vault-secrets"}, "expirationSeconds": 86400}}}}}}}),
        r"'vault': spec.provider.vault.auth.jwt.kubernetesServiceAccountToken.expirationSeconds asks for a service-account "
        r"token of 24 hours",
    ),
    "a deploy key without expiry": (
        _resource("gitlab:index/deployKey:DeployKey", "payments-ops-deploy-key", {"key": "ssh-ed25519 AAAA", "title": "argocd"}, None),
        r"'payments-ops-deploy-key' has no expiresAt, so it never expires",
    ),
    "a Vault role with periodic tokens": (
        _resource("vault:kubernetes/authBackendRole:AuthBackendRole", "payments-forever",
                  {"roleName": "payments-forever", "boundServiceAccountNames": ["a"], "boundServiceAccountNamespaces": ["b"],
                   "tokenPeriod": 3600}, None),
        r"'payments-forever' issues periodic tokens",
    ),
    "a Vault role with year-long tokens": (
        _resource("vault:jwt/authBackendRole:AuthBackendRole", "payments-year",
                  {"roleName": "payments-year", "roleType": "jwt", "boundAudiences": ["vault"], "tokenMaxTtl": YEAR}, None),
        r"'payments-year' tokenMaxTtl is 365 days",
    ),
    "an IAM access key": (
        _resource("aws:iam/accessKey:AccessKey", "ci-user-key", {"user": "ci"}, None),
        r"'ci-user-key': IAM access keys never expire",
    ),
    "a one-year serving certificate": (
        _k8s("Certificate", "cert-manager.io/v1", "web-tls", {"spec": {"secretName": "web-tls", "duration": "8760h",
             "dnsNames": ["web.example.com"], "issuerRef": {"name": "platform-ca", "kind": "ClusterIssuer"}}}),
        r"'web-tls': certificate valid for 365 days",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_RESOURCES))
def test_a_bad_resource_in_the_plan_fails_the_check_with_a_clear_message(case: str, renders: dict) -> None:
    resource, expected = BAD_RESOURCES[case]
    plan = copy.deepcopy(renders["dev"].plan)
    before = set(check_credentials(plan))
    plan["resources"].append(resource)
    new = set(check_credentials(plan)) - before
    assert any(re.search(expected, message) for message in new), f"{case}: {sorted(new)}"
    assert all(resource["name"] in message for message in new), new


GOOD_RESOURCES = {
    "a 30-day robot": _resource("harbor:index/robotAccount:RobotAccount", "payments-pull", {"name": "pull", "duration": 30}, None),
    "a one-hour TokenRequest": _k8s("Deployment", "apps/v1", "web", _pod_with_token(3600)),
    "a ten-year CA certificate": _k8s("Certificate", "cert-manager.io/v1", "ca", {"spec": {"isCA": True, "duration": "87600h",
                                      "secretName": "ca", "issuerRef": {"name": "selfsigned", "kind": "Issuer"}}}),
    "a 45-day deploy key": _resource("gitlab:index/deployKey:DeployKey", "k", {"key": "ssh-ed25519 AAAA", "expiresAt": "2026-02-15T00:00:00Z"}, None),
}


@pytest.mark.parametrize("case", sorted(GOOD_RESOURCES))
def test_a_compliant_resource_raises_nothing_but_a_missing_entry(case: str, renders: dict) -> None:
    plan = copy.deepcopy(renders["dev"].plan)
    before = set(check_credentials(plan))
    resource = GOOD_RESOURCES[case]
    plan["resources"].append(resource)
    plan["outputs"]["credentials"].append(
        Credential("x", "issued", "a", "b", "c", 30 * 86400, "r", resources=(resource["name"],)).to_output()
    )
    assert set(check_credentials(plan)) - before == set()


# --- deliberately bad inventory entries ----------------------------------------------------------------

def _entry(**changes: Any) -> dict[str, Any]:
    entry = Credential("robot of payments", "issued", "Harbor", "External Secrets", "pull", 30 * 86400, "replaced at half life").to_output()
    return {**entry, **changes}


BAD_ENTRIES = [
    (_entry(lifetimeSeconds=None, lifetime="never expires"), r"'robot of payments' \(issued\) never expires: a credential between systems"),
    (_entry(category="federated", lifetimeSeconds=100 * 86400), r"\(federated\) lives 100 days: a credential between systems must expire within 90 days"),
    (_entry(category="internal"), r"an internal secret stays inside one system, but its issuer \(Harbor\) and holder \(External Secrets\) differ"),
    (_entry(category="bootstrap", lifetimeSeconds=None), r"bootstrap material is the program's own and lives in the Pulumi state"),
    (_entry(category="temporary"), r"unknown category"),
    (_entry(rotation=""), r"has no rotation"),
    (_entry(lifetimeSeconds=0), r"lifetimeSeconds 0 is not a positive number"),
    (_entry(resources=["no-such-resource"]), r"the inventory lists resource 'no-such-resource', which the plan does not declare"),
]


@pytest.mark.parametrize("entry, expected", BAD_ENTRIES, ids=[e[1][:40] for e in BAD_ENTRIES])
def test_a_bad_entry_fails_the_check_with_a_clear_message(entry: dict, expected: str) -> None:
    problems = check_credentials({"resources": [], "outputs": {"credentials": [entry]}})
    assert len(problems) == 1 and re.search(expected, problems[0]), problems


def test_categories_exempt_from_expiry_only_when_their_condition_holds() -> None:
    good = [
        _entry(category="internal", holder="Harbor", lifetimeSeconds=None),
        _entry(category="bootstrap", holder="the stack's encrypted Pulumi state", lifetimeSeconds=None),
        _entry(category="signing-key", lifetimeSeconds=10 * 365 * 86400),
        _entry(category="external", lifetimeSeconds=None, lifetime="set by the upstream identity provider"),
    ]
    assert check_credentials({"resources": [], "outputs": {"credentials": good}}) == []


def test_a_plan_without_the_inventory_output_fails() -> None:
    assert check_credentials({"resources": [], "outputs": {}}) == [
        "the plan has no `credentials` stack output: the program must export its credential inventory"
    ]


# --- the registry ------------------------------------------------------------------------------------

def test_registration_refuses_incomplete_credentials() -> None:
    with pytest.raises(ValueError, match="'holder' is empty"):
        Credential("x", "issued", "a", " ", "s", 60, "r")
    with pytest.raises(ValueError, match="category 'forever' is not one of"):
        Credential("x", "forever", "a", "b", "s", 60, "r")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive number of seconds"):
        Credential("x", "issued", "a", "b", "s", 0, "r")


def test_outputs_read_the_inventory_when_called_so_tenants_registered_later_are_listed() -> None:
    inventory = CredentialInventory()
    federation = IdentityFederation(inventory, vault=None, pipeline=None)
    inventory.register(Credential("platform thing", "federated", "a", "b", "s", 60, "r"))
    early = federation.outputs()["credentials"]
    inventory.register(Credential("tenant robot", "issued", "Harbor", "External Secrets", "pull", 30 * 86400, "half life"))
    assert [e["what"] for e in early] == ["platform thing"]
    assert [e["what"] for e in federation.outputs()["credentials"]] == ["platform thing", "tenant robot"]


@pytest.mark.parametrize(
    "seconds, words",
    [(None, "never expires"), (60, "1 minute"), (1200, "20 minutes"), (3600, "1 hour"), (30 * 86400, "30 days"), (90, "90 seconds")],
)
def test_lifetimes_in_words(seconds: int | None, words: str) -> None:
    assert describe_seconds(seconds) == words


def test_each_irsa_entry_names_the_cluster_whose_issuer_its_role_trusts(renders: dict) -> None:
    """An IRSA role trusts one cluster's OIDC provider: its inventory entry names that cluster as issuer and holder."""
    plan = renders["prod"].plan
    cluster_of_provider = {
        r["inputs"]["url"].removeprefix("https://"): r["name"].removesuffix("-oidc")
        for r in plan["resources"]
        if r["type"] == "aws:iam/openIdConnectProvider:OpenIdConnectProvider" and r["name"].endswith("-oidc")  # not GitLab's
    }
    entries = {role: entry for entry in plan["outputs"]["credentials"] if "(IRSA)" in entry["what"] for role in entry["resources"]}
    trusted = {}
    for r in plan["resources"]:
        if r["type"] == "aws:iam/role:Role" and "oidc-provider/" in r["inputs"]["assumeRolePolicy"]:
            [statement] = json.loads(r["inputs"]["assumeRolePolicy"])["Statement"]
            provider = statement["Principal"]["Federated"].split("oidc-provider/", 1)[1]
            if provider in cluster_of_provider:
                trusted[r["name"]] = cluster_of_provider[provider]
    assert len(set(trusted.values())) == 3  # the control plane, dev and prod each trust their own issuer
    wrong = {role: entries[role]["issuer"] for role, cluster in trusted.items() if role in entries
             and (f"trusting the {cluster} cluster's OIDC issuer" not in entries[role]["issuer"]
                  or not entries[role]["holder"].endswith(f" on {cluster}"))}
    assert wrong == {}
