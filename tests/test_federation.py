"""Token federation (components/federation.py, components/kube_oidc_proxy.py, stacks/federation.py).

On both stacks' plans: every workload cluster trusts OpenUnison's remote issuer for its own
audience (EKS: an identity provider config; kubeconfig clusters: a management kube-oidc-proxy),
the federated user is bound to a limited ClusterRole, OpenUnison has one Target and one token
URL per remote cluster, the token URLs admit only ArgoCD's application controller, and ArgoCD's
cluster Secrets hold the exec plugin and a CA, never a credential.

On their own: the plugin script (run by /bin/sh against a stand-in curl), the token API's
JavaScript (run by node when there is one), and the Secret's config as the engine receives it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pytest
import yaml

from components.cluster import ApiServer, ClusterHandle
from components.federation import (
    CONTROLLER_USERNAME,
    EXEC_API_VERSION,
    FEDERATED_SUBJECT,
    FEDERATED_USER,
    MAX_TOKEN_LIFETIME_SECONDS,
    PLUGIN_CONFIG_MAP,
    REMOTE_ISSUER_PATH,
    SA_TOKEN_DIR,
    SA_TOKEN_SECONDS,
    SCRIPT_NAME,
    SCRIPT_PATH,
    TOKEN_LIFETIME_SECONDS,
    USERNAME_PREFIX,
    ArgoClusterSecret,
    ArgoClusterSecretArgs,
    CredentialPlugin,
    EksOidcTrust,
    EksOidcTrustArgs,
    cluster_config,
    config_digest,
    credential_script,
    federated_rules,
    target_name,
    token_api_uri,
    token_filter_script,
)
from components.inventory import CredentialInventory
from components.kube_oidc_proxy import NAMESPACE as PROXY_NAMESPACE, KubeOidcProxyArgs
from components.versions import KUBE_OIDC_PROXY_IMAGE
from platformctl.mocks import is_redacted
from platformctl.render import enclosing, read_stack_file
from stacks.config import load_platform_config
from stacks.federation import WORKLOAD_CLUSTERS, proxy_hostname
from stacks.services import PLATFORM_NAMESPACES
from tests.mock_program import control_plane_cluster, run_program

ROOT = Path(__file__).resolve().parent.parent

# Keys an ArgoCD cluster config may hold that carry or replace a credential, or skip TLS checks.
FORBIDDEN_CONFIG_KEYS = {"bearerToken", "password", "username", "keyData", "certData", "insecure"}
OPENUNISON_API = "openunison.tremolo.io"


# --- plan helpers ---------------------------------------------------------------------------------


def by_type(plan: dict, type_: str) -> list[dict]:
    return [r for r in plan["resources"] if r["type"] == type_]


def objects(plan: dict, kind: str, api_version: str | None = None) -> list[dict]:
    return [
        r for r in plan["resources"]
        if r["type"].startswith("kubernetes:") and r["inputs"].get("kind") == kind
        and (api_version is None or r["inputs"].get("apiVersion") == api_version)
    ]


def one(found: list[dict]) -> dict:
    assert len(found) == 1, [r["name"] for r in found]
    return found[0]


def closure(plan: dict, urn: str) -> set[str]:
    direct = {r["urn"]: set(r["dependsOn"]) for r in plan["resources"]}
    seen: set[str] = set()
    todo = [urn]
    while todo:
        for dep in direct.get(todo.pop(), ()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def params(target: dict) -> dict[str, str]:
    return {p["name"]: p["value"] for p in target["inputs"]["spec"]["params"]}


def remote_issuer(plan: dict) -> str:
    # The stack's issuerUrl output is the login portal's k8sIdp; federation uses remotek8s beside it.
    return re.sub(r"/auth/idp/k8sIdp$", REMOTE_ISSUER_PATH, plan["outputs"]["issuerUrl"])


def is_eks(plan: dict, cluster: str) -> bool:
    return bool(plan["outputs"]["clusters"][cluster]["eks"])


def virtual_clusters(plan: dict) -> set[str]:
    """Tenants' virtual clusters, from their vcluster releases (each named after its host namespace)."""
    return {r["inputs"]["name"] for r in by_type(plan, "kubernetes:helm.sh/v3:Release") if r["inputs"]["chart"] == "vcluster"}


def remote_clusters(plan: dict) -> set[str]:
    return set(WORKLOAD_CLUSTERS) | virtual_clusters(plan)


def targets(plan: dict) -> dict[str, dict]:
    return {t["inputs"]["metadata"]["name"]: t for t in objects(plan, "Target", f"{OPENUNISON_API}/v1")}


def token_apis(plan: dict) -> list[dict]:
    return [
        a for a in objects(plan, "Application", f"{OPENUNISON_API}/v2")
        if any(u["uri"].startswith("/api/get-target-token") for u in a["inputs"]["spec"]["urls"])
    ]


def served_target(api: dict) -> str:
    """The target a token API's JavaScript serves (its TARGET constant)."""
    [url] = api["inputs"]["spec"]["urls"]
    [js_filter] = url["filterChain"]
    [name] = re.findall(r'^var TARGET = "([^"]+)";$', js_filter["params"]["javaScript"], re.M)
    return name


# --- remote trust -----------------------------------------------------------------------------------


def test_eks_workload_clusters_trust_the_openunison_issuer(renders: dict) -> None:
    plan = renders["prod"].plan
    configs = by_type(plan, "aws:eks/identityProviderConfig:IdentityProviderConfig")
    assert {c["inputs"]["tags"]["platform.io/cluster"] for c in configs} == set(WORKLOAD_CLUSTERS)
    for config in configs:
        cluster = config["inputs"]["tags"]["platform.io/cluster"]
        oidc = config["inputs"]["oidc"]
        assert oidc["issuerUrl"] == remote_issuer(plan)
        assert oidc["clientId"] == target_name(cluster)
        assert (oidc["usernameClaim"], oidc["usernamePrefix"]) == ("sub", USERNAME_PREFIX)
        eks = one([c for c in by_type(plan, "aws:eks/cluster:Cluster") if c["name"] == cluster])
        assert eks["urn"] in config["dependsOn"]


def test_the_eks_trust_names_its_cluster_issuer_and_audience() -> None:
    """EksOidcTrust on its own (the plan's EKS clusters get it once ClusterHandle names them)."""

    def program() -> None:
        provider = aws.Provider("dev-aws", region="eu-west-1")
        cluster = aws.eks.Cluster("dev", role_arn="arn:aws:iam::123456789012:role/eks", vpc_config={"subnet_ids": ["subnet-1"]},
                                  opts=pulumi.ResourceOptions(provider=provider))
        handle = ClusterHandle(
            role="dev", provider=k8s.Provider("dev-k8s", kubeconfig="{}"), endpoint=cluster.endpoint,
            ca_data=pulumi.Output.from_input("bW9jaw=="), kubernetes_version="1.33", api_server=ApiServer.of_eks("10.41.0.0/16"),
            is_eks=True, aws_provider=provider,
        )
        EksOidcTrust("dev-oidc-trust", handle, EksOidcTrustArgs(cluster.name, "https://k8sou.example.test/auth/idp/remotek8s", "federation-dev"))

    run = run_program(program)
    [config] = [r for r in run.resources if r["type"] == "aws:eks/identityProviderConfig:IdentityProviderConfig"]
    [cluster] = [r for r in run.resources if r["type"] == "aws:eks/cluster:Cluster"]
    assert config["inputs"]["clusterName"].startswith("dev-") and cluster["urn"] in config["dependsOn"]
    assert config["inputs"]["oidc"] == {
        "identityProviderConfigName": "openunison",
        "issuerUrl": "https://k8sou.example.test/auth/idp/remotek8s",
        "clientId": "federation-dev",
        "usernameClaim": "sub",
        "usernamePrefix": USERNAME_PREFIX,
    }
    assert config["provider"].endswith("::dev-aws")


def test_kubeconfig_workload_clusters_run_a_management_proxy(renders: dict) -> None:
    plan = renders["dev"].plan
    domain = "dev.platform.example.com"
    for cluster in WORKLOAD_CLUSTERS:
        assert not is_eks(plan, cluster)
        mine = [r for r in plan["resources"] if r["cluster"] == cluster]
        deployment = one([r for r in mine if r["inputs"].get("kind") == "Deployment"
                          and r["inputs"]["metadata"]["namespace"] == PROXY_NAMESPACE])
        [container] = deployment["inputs"]["spec"]["template"]["spec"]["containers"]
        assert re.fullmatch(r"ghcr\.io/tremolosecurity/kube-oidc-proxy:[\w.]+@sha256:[0-9a-f]{64}", container["image"])
        args = dict(a.removeprefix("--").split("=", 1) for a in container["args"])
        assert args["oidc-issuer-url"] == remote_issuer(plan)
        assert args["oidc-client-id"] == target_name(cluster)
        assert (args["oidc-username-claim"], args["oidc-username-prefix"]) == ("sub", USERNAME_PREFIX)
        # The issuer is signed by the private platform CA here: trust it explicitly.
        assert args["oidc-ca-file"] == "/etc/oidc/ca/ca.crt"
        ca_map = one([r for r in mine if r["inputs"].get("kind") == "ConfigMap" and r["inputs"]["metadata"]["namespace"] == PROXY_NAMESPACE])
        assert ca_map["inputs"]["data"]["ca.crt"].startswith("-----BEGIN CERTIFICATE-----")
        # TLS from the proxy itself, with a key that exists only as a Pulumi secret and in its Secret.
        assert args["tls-cert-file"].startswith("/etc/oidc/tls/")
        tls_secret = one([r for r in mine if r["inputs"].get("kind") == "Secret" and r["inputs"]["metadata"]["namespace"] == PROXY_NAMESPACE])
        assert tls_secret["inputs"]["type"] == "kubernetes.io/tls" and is_redacted(tls_secret["inputs"]["stringData"])
        assert {"tls.crt", "tls.key"} <= set(tls_secret["inputs"]["stringData"])
        hostname = proxy_hostname(cluster, domain)
        certificate = one([r for r in by_type(plan, "tls:index/selfSignedCert:SelfSignedCert") if r["name"] == f"{cluster}-kube-oidc-proxy-cert"])
        assert certificate["inputs"]["dnsNames"] == [hostname] and certificate["inputs"]["isCaCertificate"] is False
        key = one([r for r in by_type(plan, "tls:index/privateKey:PrivateKey") if r["name"] == f"{cluster}-kube-oidc-proxy-key"])
        assert "privateKeyPem" in key["options"]["additionalSecretOutputs"] and key["urn"] in tls_secret["dependsOn"]
        # Reached end to end over TLS on 443, and that is what OpenUnison's target and ArgoCD use.
        service = one([r for r in mine if r["inputs"].get("kind") == "Service" and r["inputs"]["metadata"]["namespace"] == PROXY_NAMESPACE])
        assert service["inputs"]["spec"]["type"] == "LoadBalancer"
        assert service["inputs"]["spec"]["ports"] == [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": "https"}]
        target = targets(plan)[target_name(cluster)]
        assert params(target)["url"] == f"https://{hostname}"
        # ArgoCD pins the proxy's own certificate.
        assert base64.b64decode(params(target)["certificate"]).decode().startswith("-----BEGIN CERTIFICATE-----")
        assert certificate["urn"] in closure(plan, target["urn"])
        # A re-issued certificate (early renewal) restarts the pods that serve it.
        pinned = base64.b64decode(params(target)["certificate"])
        assert deployment["inputs"]["spec"]["template"]["metadata"]["annotations"] == {
            "platform.io/serving-certificate-checksum": hashlib.sha256(pinned).hexdigest()
        }


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_tenant_virtual_clusters_join_federation_through_their_own_proxy(renders: dict, stack: str) -> None:
    plan = renders[stack].plan
    owner = enclosing(plan, "platform:tenant:Tenant")
    releases = {r["inputs"]["name"]: r for r in by_type(plan, "kubernetes:helm.sh/v3:Release") if r["inputs"]["chart"] == "vcluster"}
    assert releases
    for name, release in releases.items():
        tenant = owner[release["urn"]]
        assert tenant and name.startswith(f"{tenant}-")
        values = release["inputs"]["values"]
        documents = list(yaml.safe_load_all(values["experimental"]["deploy"]["vcluster"]["manifests"]))
        inside = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in documents}
        # The proxy runs inside the virtual cluster (its in-cluster API is the virtual one),
        # accepts OpenUnison's tokens for this virtual cluster's audience only...
        deployment = inside[("Deployment", PROXY_NAMESPACE, "kube-oidc-proxy")]
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        args = dict(a.removeprefix("--").split("=", 1) for a in container["args"])
        assert (args["oidc-issuer-url"], args["oidc-client-id"]) == (remote_issuer(plan), target_name(name))
        assert args["oidc-username-prefix"] == USERNAME_PREFIX
        # ...pulls its image through Harbor, by the same digest as everywhere else...
        domain = values["controlPlane"]["proxy"]["extraSANs"][0].split(".vc.", 1)[1]  # <name>.vc.<domain>
        assert container["image"] == f"harbor.{domain}/approved/{KUBE_OIDC_PROXY_IMAGE.ref}"
        # ...may impersonate only the federated user, who gets the workload clusters' ClusterRole.
        impersonator = inside[("ClusterRole", None, "kube-oidc-proxy-impersonator")]
        assert [r["resourceNames"] for r in impersonator["rules"] if r["resources"] == ["users"]] == [[FEDERATED_USER]]
        assert inside[("ClusterRole", None, "platform-argocd-federated")]["rules"] == federated_rules()
        # ...and may write only in the tenant's namespace there, not in the proxy's.
        binding = inside[("RoleBinding", tenant, "platform-argocd-federated")]
        assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": FEDERATED_USER}]
        assert [(k, ns) for k, ns, n in inside if k.endswith("Binding") and n == "platform-argocd-federated"] == [("RoleBinding", tenant)]
        read = inside[("ClusterRoleBinding", None, "platform-argocd-federated-read")]
        assert read["roleRef"]["name"] == "platform-argocd-federated-read" and read["subjects"] == binding["subjects"]
        # People sign in to the virtual API server as the bare user ids its role bindings name.
        api_server = dict(a.removeprefix("--").split("=", 1) for a in values["controlPlane"]["distro"]["k8s"]["apiServer"]["extraArgs"])
        assert (api_server["oidc-username-claim"], api_server["oidc-username-prefix"]) == ("sub", "-")
        people = {s["name"] for d in documents if d["kind"] == "RoleBinding" and d["metadata"]["name"] != "platform-argocd-federated"
                  for s in d["subjects"] if s["kind"] == "User"}
        assert people and all(":" not in p and "#" not in p for p in people)
        # Its TLS Secret is declared on the host and synced in; the key never enters the values.
        tls_secret = one([r for r in objects(plan, "Secret") if r["inputs"]["metadata"] == {"name": "kube-oidc-proxy-tls", "namespace": name}])
        assert tls_secret["cluster"] == release["cluster"] and is_redacted(tls_secret["inputs"]["stringData"])
        assert values["sync"]["fromHost"]["secrets"]["mappings"]["byName"][f"{name}/kube-oidc-proxy-tls"] == f"{PROXY_NAMESPACE}/kube-oidc-proxy-tls"
        assert tls_secret["urn"] in release["dependsOn"] and release["secretPaths"] == []
        # OpenUnison's target and ArgoCD's Secret pin the proxy's own certificate, and go with the tenant.
        target = targets(plan)[target_name(name)]
        assert params(target)["url"] == f"https://oumgmt-proxy.{values['controlPlane']['proxy']['extraSANs'][0]}"
        pinned = base64.b64decode(params(target)["certificate"])
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations == {"platform.io/serving-certificate-checksum": hashlib.sha256(pinned).hexdigest()}
        assert owner[target["urn"]] == tenant and release["urn"] in closure(plan, one([
            s for s in objects(plan, "Secret") if s["inputs"]["metadata"]["name"] == f"cluster-{name}"
        ])["urn"])
        # The host's default-deny lets ArgoCD reach the proxy and the proxy reach the issuer.
        policy = one([r for r in objects(plan, "NetworkPolicy") if r["inputs"]["metadata"] == {"name": "vcluster-federation-proxy", "namespace": name}])
        spec = policy["inputs"]["spec"]
        assert spec["podSelector"]["matchLabels"] == {"vcluster.loft.sh/namespace": PROXY_NAMESPACE, "vcluster.loft.sh/managed-by": name}
        # The control plane's open policy never selects a pod the virtual cluster synced (a tenant's).
        control = one([r for r in objects(plan, "NetworkPolicy") if r["inputs"]["metadata"] == {"name": "vcluster-control-plane", "namespace": name}])
        assert control["inputs"]["spec"]["podSelector"]["matchExpressions"] == [{"key": "vcluster.loft.sh/managed-by", "operator": "DoesNotExist"}]
        assert spec["ingress"][0]["ports"] == [{"port": 8443, "protocol": "TCP"}]
        assert spec["egress"][0]["ports"] == [{"port": 443, "protocol": "TCP"}]


def test_the_proxy_certificate_lives_at_most_90_days() -> None:
    args = KubeOidcProxyArgs(
        hostname="oumgmt-proxy.dev.example.test", issuer_url="https://k8sou.example.test/auth/idp/remotek8s",
        audience="federation-dev", username_prefix=USERNAME_PREFIX, impersonable_users=[FEDERATED_USER],
        issuer_ca_bundle=pulumi.Output.from_input(""), inventory=CredentialInventory(),
    )
    assert args.certificate_validity_hours == 90 * 24
    for hours in (91 * 24, 0):
        with pytest.raises(ValueError, match="certificate_validity_hours must be between 1 and 2160"):
            replace(args, certificate_validity_hours=hours)


def test_the_proxy_may_impersonate_only_the_federated_user(renders: dict) -> None:
    roles = [r for r in objects(renders["dev"].plan, "ClusterRole") if r["inputs"]["metadata"]["name"] == "kube-oidc-proxy-impersonator"]
    assert sorted(r["cluster"] for r in roles) == sorted(WORKLOAD_CLUSTERS)
    for role in roles:
        rules = role["inputs"]["rules"]
        user_rules = [r for r in rules if "users" in r["resources"]]
        assert user_rules == [{"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"], "resourceNames": [FEDERATED_USER]}]
        assert all("*" not in r["verbs"] + r["resources"] + r["apiGroups"] for r in rules)
        assert not any("serviceaccounts" in r["resources"] for r in rules)


def test_federated_user_reads_cluster_wide_but_writes_only_in_tenant_namespaces(plan: dict) -> None:
    raw, secrets = read_stack_file(ROOT / f"Pulumi.{plan['stack']}.yaml")
    config = load_platform_config(raw, stack=plan["stack"], source=plan["stack"], secret_keys=secrets)
    for cluster in WORKLOAD_CLUSTERS:
        tenant_namespaces = {f"{tenant.name}-{cluster}" for tenant in config.tenants if tenant.isolation == "namespace"}
        bindings = [b for b in objects(plan, "ClusterRoleBinding") + objects(plan, "RoleBinding") if b["cluster"] == cluster
                    and any(s["name"] == FEDERATED_USER for s in b["inputs"]["subjects"])]
        cluster_wide = one([b for b in bindings if b["type"].endswith(":ClusterRoleBinding")])
        namespaced = [b for b in bindings if b["type"].endswith(":RoleBinding")]
        # Every binding names the federated identity only, and a role of ours, not cluster-admin.
        for binding in bindings:
            assert binding["inputs"]["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": FEDERATED_USER}]
            assert binding["inputs"]["roleRef"]["kind"] == "ClusterRole"
        # Cluster-wide it may only read; it writes in the tenants' namespaces and nowhere else.
        read_role = one([r for r in objects(plan, "ClusterRole") if r["cluster"] == cluster
                         and r["inputs"]["metadata"]["name"] == cluster_wide["inputs"]["roleRef"]["name"]])
        assert all(set(rule["verbs"]) <= {"get", "list", "watch"} for rule in read_role["inputs"]["rules"])
        assert {b["inputs"]["metadata"]["namespace"] for b in namespaced} == tenant_namespaces
        assert not {b["inputs"]["metadata"]["namespace"] for b in namespaced} & {n.name for n in PLATFORM_NAMESPACES}
        [role_name] = {b["inputs"]["roleRef"]["name"] for b in namespaced}
        role = one([r for r in objects(plan, "ClusterRole") if r["cluster"] == cluster and r["inputs"]["metadata"]["name"] == role_name])
        assert role["inputs"]["rules"] == federated_rules()
        for rule in role["inputs"]["rules"]:
            assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"], rule
            assert not {"escalate", "bind", "impersonate", "deletecollection"} & set(rule["verbs"]), rule
            assert "secrets" not in rule["resources"], rule
            writes = {"create", "update", "patch", "delete"} & set(rule["verbs"])
            if writes:
                # Nothing cluster-scoped, nothing the platform owns in tenant namespaces.
                assert not {"namespaces", "nodes", "customresourcedefinitions", "clusterroles", "clusterrolebindings",
                            "roles", "rolebindings", "networkpolicies", "resourcequotas", "limitranges"} & set(rule["resources"]), rule


def test_federated_rules_cover_what_argocd_deploys() -> None:
    writable = {(g, r) for rule in federated_rules() if "patch" in rule["verbs"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert {("apps", "deployments"), ("", "services"), ("", "configmaps"), ("batch", "jobs"),
            ("networking.k8s.io", "ingresses"), ("external-secrets.io", "externalsecrets")} <= writable
    readable = {(g, r) for rule in federated_rules() for g in rule["apiGroups"] for r in rule["resources"]}
    # Health and resource trees: the children of what ArgoCD deploys.
    assert {("", "pods"), ("apps", "replicasets"), ("discovery.k8s.io", "endpointslices")} <= readable


# --- OpenUnison ---------------------------------------------------------------------------------


def test_openunison_has_a_target_per_remote_cluster_minting_short_tokens(plan: dict) -> None:
    found = targets(plan)
    assert virtual_clusters(plan), "the stacks' tenants include a virtual cluster"
    assert set(found) == {target_name(c) for c in remote_clusters(plan)}
    operator = one([r for r in by_type(plan, "kubernetes:helm.sh/v3:Release") if r["inputs"]["chart"] == "openunison-operator"])
    for name, target in found.items():
        spec, values = target["inputs"]["spec"], params(target)
        assert spec["className"] == "com.tremolosecurity.unison.openshiftv3.OpenShiftTarget"
        # tokenType oidc: OpenShiftTarget signs a fresh token per call, exp one minute ahead;
        # no static token is configured anywhere.
        assert (values["useToken"], values["tokenType"], values["oidcIdp"]) == ("true", "oidc", "remotek8s")
        assert spec["secretParams"] == [] and "token" not in values
        assert values["oidcSub"] == FEDERATED_SUBJECT and values["oidcAudience"] == name
        assert operator["urn"] in closure(plan, target["urn"])
    assert TOKEN_LIFETIME_SECONDS <= MAX_TOKEN_LIFETIME_SECONDS <= 300


def test_token_api_admits_only_the_controller_and_serves_exactly_the_known_targets(plan: dict) -> None:
    chain = one(objects(plan, "AuthenticationChain", f"{OPENUNISON_API}/v1"))
    [mech] = chain["inputs"]["spec"]["authMechs"]
    # OAuth2K8sServiceAccount: the bearer token is checked with a TokenReview against the control plane.
    assert (mech["name"], mech["required"], mech["params"]["k8sTarget"]) == ("oauth2k8s", "required", "k8s")
    assert mech["params"]["linkToDirectory"] == "false" and mech["params"]["uidAttr"] == "username"
    portal = one([r for r in by_type(plan, "kubernetes:helm.sh/v3:Release") if r["inputs"]["chart"] == "orchestra-login-portal"])
    assert portal["urn"] in chain["dependsOn"]  # the portal declares the oauth2k8s mechanism

    apis = token_apis(plan)
    served = [served_target(api) for api in apis]
    assert sorted(served) == sorted(targets(plan)), "one token URL per target, none for anything else"
    for api in apis:
        spec = api["inputs"]["spec"]
        [url] = spec["urls"]
        target = served_target(api)
        assert url["uri"] == token_api_uri(target)
        assert url["authChain"] == chain["inputs"]["metadata"]["name"]
        assert url["azRules"] == [{"scope": "filter", "constraint": f"(username={CONTROLLER_USERNAME})"}]
        assert CONTROLLER_USERNAME == "system:serviceaccount:argocd:argocd-application-controller"
        assert spec["cookieConfig"]["cookiesEnabled"] is False
        js = url["filterChain"][0]["params"]["javaScript"]
        assert f'var URI = "{token_api_uri(target)}";' in js
        assert re.search(r"^var MAX_LIFETIME_SECONDS = (\d+);$", js, re.M).group(1) == str(MAX_TOKEN_LIFETIME_SECONDS)
        # The only target the code can reach is its own.
        assert re.findall(r"getTarget\(([^)]*)\)", js) == ["TARGET"]
        assert targets(plan)[target]["urn"] in api["dependsOn"] and chain["urn"] in api["dependsOn"]


# --- ArgoCD -------------------------------------------------------------------------------------------


def forbidden_keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in FORBIDDEN_CONFIG_KEYS:
                yield key
            yield from forbidden_keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from forbidden_keys(item)


def test_cluster_config_carries_the_plugin_and_a_ca_only() -> None:
    config = cluster_config("federation-dev", "bW9jaw==")
    assert config == {
        "execProviderConfig": {
            "command": SCRIPT_PATH,
            "args": ["federation-dev"],
            "apiVersion": EXEC_API_VERSION,
            "installHint": f"mounted into argocd-application-controller from ConfigMap {PLUGIN_CONFIG_MAP}",
        },
        "tlsClientConfig": {"caData": "bW9jaw=="},
    }
    assert not list(forbidden_keys(config))
    assert sorted(forbidden_keys({"tlsClientConfig": {"insecure": False}, "bearerToken": "x"})) == ["bearerToken", "insecure"]
    with pytest.raises(ValueError):
        cluster_config("federation-dev", "")
    with pytest.raises(ValueError):
        cluster_config("federation-dev", "not base64!")


def test_argocd_has_a_cluster_secret_per_remote_cluster_asking_openunison(plan: dict) -> None:
    argocd = one([r for r in by_type(plan, "kubernetes:helm.sh/v3:Release") if r["inputs"]["chart"] == "argo-cd"])
    secrets = [s for s in objects(plan, "Secret") if (s["inputs"]["metadata"].get("labels") or {}).get("argocd.argoproj.io/secret-type") == "cluster"]
    apis = {served_target(a): a for a in token_apis(plan)}
    assert {s["inputs"]["metadata"]["labels"]["platform.io/cluster"] for s in secrets} == remote_clusters(plan)
    for secret in secrets:
        metadata = secret["inputs"]["metadata"]
        cluster = metadata["labels"]["platform.io/cluster"]
        assert secret["cluster"] == "control-plane" and metadata["namespace"] == "argocd"
        if cluster in WORKLOAD_CLUSTERS:
            assert metadata["labels"]["platform.io/environment"] == cluster and "platform.io/tenant" not in metadata["labels"]
        else:  # a tenant's virtual cluster, <tenant>-<environment>: its ApplicationSets select these labels
            tenant, environment = cluster.rsplit("-", 1)
            assert (metadata["labels"]["platform.io/tenant"], metadata["labels"]["platform.io/environment"]) == (tenant, environment)
        # The plan redacts stringData as a whole; the digest is of the config the function builds
        # from what the plan shows (the target and the CA it pins).
        assert secret["secretPaths"] == ["stringData"] and is_redacted(secret["inputs"]["stringData"])
        target = targets(plan)[target_name(cluster)]
        expected = cluster_config(target_name(cluster), params(target)["certificate"])
        assert metadata["annotations"]["platform.io/config-sha256"] == config_digest(expected)
        assert not list(forbidden_keys(expected))
        assert argocd["urn"] in secret["dependsOn"] and apis[target_name(cluster)]["urn"] in secret["dependsOn"]


def test_the_plugin_is_a_configmap_mounted_in_the_controller_with_pinned_helpers(plan: dict) -> None:
    argocd = one([r for r in by_type(plan, "kubernetes:helm.sh/v3:Release") if r["inputs"]["chart"] == "argo-cd"])
    controller = argocd["inputs"]["values"]["controller"]
    config_map = one([r for r in objects(plan, "ConfigMap") if r["inputs"]["metadata"]["name"] == PLUGIN_CONFIG_MAP])
    assert config_map["inputs"]["metadata"]["namespace"] == "argocd" and config_map["urn"] in argocd["dependsOn"]
    script = config_map["inputs"]["data"][SCRIPT_NAME]
    assert script.startswith("#!/bin/sh\n") and "--cacert" in script
    assert not re.search(r"(^|\s)(-k|--insecure)(\s|$)", script)
    if plan["stack"] == "dev":  # the private platform CA travels with the script
        assert "CA_FILE='/opt/platform-credentials/plugin/ca.crt'" in script
        assert config_map["inputs"]["data"]["ca.crt"].startswith("-----BEGIN CERTIFICATE-----")
    else:  # ACME certificates: the image's public roots, still verified
        assert "CA_FILE='/etc/ssl/certs/ca-certificates.crt'" in script and "ca.crt" not in config_map["inputs"]["data"]

    volumes = {v["name"]: v for v in controller["volumes"]}
    mounts = {m["name"]: m for m in controller["volumeMounts"]}
    assert volumes["credential-plugin"]["configMap"]["name"] == PLUGIN_CONFIG_MAP
    assert mounts["credential-plugin"]["mountPath"] == SCRIPT_PATH.rsplit("/", 1)[0]
    # A token of its own, not the default one: 10 minutes; the API server's audience, which is
    # what OpenUnison's TokenReview (no spec.audiences) accepts.
    [source] = volumes["openunison-token"]["projected"]["sources"]
    assert source == {"serviceAccountToken": {"path": "token", "expirationSeconds": SA_TOKEN_SECONDS}}
    assert SA_TOKEN_SECONDS == 600 and mounts["openunison-token"]["mountPath"] == SA_TOKEN_DIR
    assert all(m.get("readOnly") for m in controller["volumeMounts"])
    # Helpers come from images pinned by digest, copied into an emptyDir: nothing downloaded.
    assert "emptyDir" in volumes["credential-plugin-bin"]
    assert len(controller["initContainers"]) == 2
    for init in controller["initContainers"]:
        assert re.fullmatch(r"[\w./-]+(:[\w.-]+)?@sha256:[0-9a-f]{64}", init["image"]), init["image"]
        assert not any("http" in part for part in init["command"])
        assert init["securityContext"]["runAsNonRoot"] is True and init["securityContext"]["readOnlyRootFilesystem"] is True
    # The federated user is not cluster-admin: ArgoCD skips what it may not list.
    assert argocd["inputs"]["values"]["configs"]["cm"]["resource.respectRBAC"] == "normal"


# --- the parts on their own ------------------------------------------------------------------------


STUB_CURL = """#!/bin/sh
printf '%s\\n' "$@" > "$STUB_DIR/args"
cat > "$STUB_DIR/stdin"
printf '%s' "$STUB_RESPONSE"
exit "${STUB_EXIT:-0}"
"""
CREDENTIAL = json.dumps({"apiVersion": EXEC_API_VERSION, "kind": "ExecCredential",
                         "status": {"token": "minted", "expirationTimestamp": "2026-01-01T00:01:00Z"}}, separators=(",", ":"))


@pytest.fixture
def plugin(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    curl = tmp_path / "curl"
    curl.write_text(STUB_CURL)
    curl.chmod(0o755)
    (tmp_path / "token").write_text("projected-sa-token")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    script = tmp_path / SCRIPT_NAME
    script.write_text(credential_script("https://k8sou.example.test", str(tmp_path / "ca.crt"), str(curl), str(tmp_path / "token")))
    script.chmod(0o755)

    def run(*args: str, response: str = CREDENTIAL, exit_code: int = 0) -> subprocess.CompletedProcess:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "STUB_DIR": str(tmp_path), "STUB_RESPONSE": response, "STUB_EXIT": str(exit_code)}
        return subprocess.run(["/bin/sh", str(script), *args], capture_output=True, text=True, env=env, timeout=20)

    return run


def test_plugin_prints_the_credential_openunison_returns(plugin: Callable[..., subprocess.CompletedProcess], tmp_path: Path) -> None:
    result = plugin("federation-dev")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"]["token"] == "minted"
    args = (tmp_path / "args").read_text().splitlines()
    assert args[-1] == "https://k8sou.example.test/api/get-target-token/federation-dev"
    assert args[args.index("--cacert") + 1] == str(tmp_path / "ca.crt")
    assert args[args.index("--proto") + 1] == "=https" and "--fail" in args
    assert "-k" not in args and "--insecure" not in args
    # The service-account token is sent as a header read from stdin, never as an argument.
    assert args[args.index("--header") + 1] == "@-"
    assert (tmp_path / "stdin").read_text() == "Authorization: Bearer projected-sa-token\n"
    assert not any("projected-sa-token" in a for a in args)


@pytest.mark.parametrize("target", ["", "Federation-dev", "dev/../prod", "dev;id", "a b"])
def test_plugin_refuses_a_target_that_is_not_a_dns_label(plugin: Callable[..., subprocess.CompletedProcess], tmp_path: Path, target: str) -> None:
    result = plugin(target)
    assert result.returncode == 2 and not (tmp_path / "args").exists()


def test_plugin_fails_when_openunison_refuses_or_answers_something_else(plugin: Callable[..., subprocess.CompletedProcess]) -> None:
    refused = plugin("federation-dev", response="", exit_code=22)
    assert refused.returncode != 0 and refused.stdout == ""
    odd = plugin("federation-dev", response='{"kind":"Status"}')
    assert odd.returncode == 1 and odd.stdout == ""


def test_plugin_script_rejects_values_that_would_need_quoting() -> None:
    with pytest.raises(ValueError):
        credential_script("https://k8sou.example.test'; rm -rf /", "/ca.crt")
    with pytest.raises(ValueError):
        credential_script("http://k8sou.example.test", "/ca.crt")


NODE_HARNESS = """
const assert = require("assert");
const state = {status: 200, body: "", noProxy: false, contentType: null};
const now = Date.now();
function jwt(exp) {
  const part = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return part({alg: "RS256"}) + "." + part({sub: "platform-argocd", aud: "federation-dev", exp: exp}) + ".sig";
}
const world = JSON.parse(process.argv[2]);
const token = jwt(Math.floor(now / 1000) + world.lifetime);
function JavaString(bytes, charset) { this.value = Buffer.from(bytes).toString("utf8"); }
JavaString.prototype.toString = function () { return this.value; };
const types = {
  "com.tremolosecurity.server.GlobalEntries": {getGlobalEntries: () => ({getConfigManager: () => ({getProvisioningEngine: () => ({
    getTarget: (name) => (world.targets.includes(name) ? {getProvider: () => ({getAuthToken: () => token})} : null)})})})},
  "com.tremolosecurity.proxy.util.ProxyConstants": {AUTH_CTL: "AUTH_CTL"},
  "java.util.Base64": {getUrlDecoder: () => ({decode: (s) => Buffer.from(s, "base64url")})},
  "java.lang.String": JavaString,
  "java.lang.System": {currentTimeMillis: () => now},
};
global.Java = {type: (name) => types[name]};
const request = {
  getRequestURI: () => world.uri,
  getSession: () => ({getAttribute: () => ({getAuthInfo: () => ({getAttribs: () => ({
    get: (n) => (n === "username" && world.user ? {getValues: () => ({get: () => world.user})} : null)})})})}),
};
const response = {
  sendError: (s) => { state.status = s; },
  setContentType: (t) => { state.contentType = t; },
  getWriter: () => ({print: (s) => { state.body += s; }}),
};
eval(require("fs").readFileSync(process.argv[3], "utf8"));
doFilter(request, response, {setNoProxy: (v) => { state.noProxy = v; }});
process.stdout.write(JSON.stringify(state));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node runs the filter's JavaScript; not installed here")
@pytest.mark.parametrize(
    "world,status",
    [
        ({}, 200),
        ({"uri": "/api/get-target-token/federation-dev-other"}, 404),  # URLs match by prefix
        ({"user": "system:serviceaccount:argocd:argocd-server"}, 403),
        ({"user": None}, 403),
        ({"targets": []}, 404),
        ({"lifetime": MAX_TOKEN_LIFETIME_SECONDS + 60}, 500),
        ({"lifetime": -5}, 500),
    ],
)
def test_token_filter_serves_only_its_target_to_the_controller(tmp_path: Path, world: dict, status: int) -> None:
    defaults = {"uri": token_api_uri("federation-dev"), "user": CONTROLLER_USERNAME, "targets": ["federation-dev"], "lifetime": TOKEN_LIFETIME_SECONDS}
    script = tmp_path / "filter.js"
    script.write_text(token_filter_script("federation-dev"))
    harness = tmp_path / "harness.js"
    harness.write_text(NODE_HARNESS)
    result = subprocess.run(["node", str(harness), json.dumps({**defaults, **world}), str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    state = json.loads(result.stdout)
    assert state["noProxy"] is True and state["status"] == status
    if status == 200:
        credential = json.loads(state["body"])
        assert (credential["apiVersion"], credential["kind"]) == (EXEC_API_VERSION, "ExecCredential")
        assert credential["status"]["token"].count(".") == 2
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", credential["status"]["expirationTimestamp"])
        expires = time.mktime(time.strptime(credential["status"]["expirationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
        assert 0 < expires - time.time() <= MAX_TOKEN_LIFETIME_SECONDS
    else:
        assert state["body"] == ""


# --- the Secret as the engine receives it -------------------------------------------------------------


def test_the_secret_the_engine_receives_holds_exactly_the_config() -> None:
    ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nproxy\n-----END CERTIFICATE-----\n").decode()

    def program() -> None:
        cluster = control_plane_cluster()
        release = k8s.core.v1.Namespace("argocd", metadata={"name": "argocd"}, opts=pulumi.ResourceOptions(provider=cluster.provider))
        ArgoClusterSecret(
            "payments-dev-argocd-cluster",
            cluster,
            ArgoClusterSecretArgs(
                cluster_name="payments-dev", server_url="https://payments-dev.example.test", ca_data=pulumi.Output.from_input(ca),
                target="federation-payments-dev", environment="dev", argocd_release=release, tenant="payments",
            ),
        )

    run = run_program(program)
    [secret] = [r for r in run.resources if r["type"] == "kubernetes:core/v1:Secret"]
    assert is_redacted(secret["inputs"]["stringData"])  # what the plan shows
    raw = run.raw[secret["urn"]]
    assert set(raw["stringData"]) == {"name", "server", "config"}
    assert (raw["stringData"]["name"], raw["stringData"]["server"]) == ("payments-dev", "https://payments-dev.example.test")
    config = json.loads(raw["stringData"]["config"])
    assert config == cluster_config("federation-payments-dev", ca) and not list(forbidden_keys(config))
    labels = raw["metadata"]["labels"]
    assert labels["argocd.argoproj.io/secret-type"] == "cluster"
    assert (labels["platform.io/cluster"], labels["platform.io/environment"], labels["platform.io/tenant"]) == ("payments-dev", "dev", "payments")
    assert raw["metadata"]["annotations"]["platform.io/config-sha256"] == config_digest(config)


def test_plugin_values_never_override_the_charts_settings() -> None:
    plugin_values = CredentialPlugin.helm_values()
    assert set(plugin_values) == {"controller", "configs"}
    merged = CredentialPlugin("https://k8sou.example.test", pulumi.Output.from_input("")).merge_into(
        {"controller": {"replicas": 2}, "configs": {"cm": {"admin.enabled": False}}}
    )
    assert merged["controller"]["replicas"] == 2 and merged["configs"]["cm"]["admin.enabled"] is False
    with pytest.raises(ValueError):
        CredentialPlugin("https://k8sou.example.test", pulumi.Output.from_input("")).merge_into({"controller": {"volumes": []}})


def test_target_names_are_dns_labels() -> None:
    assert target_name("payments-dev") == "federation-payments-dev"
    for bad in ("Payments", "a_b", "-x", "x" * 51):
        with pytest.raises(ValueError):
            target_name(bad)
