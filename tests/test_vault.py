"""Vault: the hvac init/unseal provider's edge cases, and the component under mocks.

Part 1 drives `VaultInitProvider` with real hvac over real TLS. Its main path (a three-node
raft cluster: create, diff, restarts, wrong keys, a node that stays down, foreign
certificates) runs against real OpenBao servers in tests/test_vault_init_real.py; here, real
servers for auto-unseal and for keys kept when unsealing fails, and the stub
(tests/vault_stub.py) only where no real server can answer that way: an ingress answering 503
to everything. Part 2 runs a tiny program with the Vault
component under the platform's mock engine and checks what the engine would be asked to create.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import hcl  # pyhcl: HCL1, the dialect of Vault's configuration files
import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pytest
from pulumi.dynamic.dynamic import serialize_provider

from components.cluster import ApiServer, ClusterHandle
from components.aws import AwsWorkloadIdentity
from components.common import Exposure, OidcClient, PlatformGroups
from components.vault import CA_FILE, TOKEN_TTL_SECONDS, Vault, VaultArgs
from components.vault_init import VaultInit, VaultInitError, VaultInitProvider
from platformctl.mocks import REDACTED, SECRET_MARK
from tests.certs import Tls
from tests.mock_program import run_program
from tests.openbao import BaoServer, free_port
from tests.validation import custom_resource_errors, kubernetes_errors, schema_errors, unknown_value_paths
from tests.vault_stub import FailingIngress

ROOT = Path(__file__).resolve().parent.parent

# =====================================================================================
# Part 1: the dynamic provider's edge cases
# =====================================================================================


def props(tls: Tls, init: FailingIngress | str, unseal: list[FailingIngress | str], **overrides: Any) -> dict[str, Any]:
    url = lambda node: node if isinstance(node, str) else node.url  # noqa: E731
    return {
        "init_address": url(init),
        "unseal_addresses": [url(node) for node in unseal],
        "ca_bundle": tls.ca_pem,
        "auto_unseal": False,
        "key_shares": 5,
        "key_threshold": 3,
        "timeout_seconds": 2,
        "poll_seconds": 0.02,
        **overrides,
    }


def refused_address() -> str:
    """An https URL on 127.0.0.1 where nothing listens."""
    return f"https://127.0.0.1:{free_port()}"


def test_auto_unseal_initialises_with_recovery_keys_and_unseals_itself_after_a_restart(loopback_tls: Tls, tmp_path: Path) -> None:
    """A real OpenBao with a static-key seal, as Vault with its KMS seal on EKS."""
    node = BaoServer(tmp_path, loopback_tls, auto_unseal=True).start()
    try:
        inputs = props(loopback_tls, node.url, [], auto_unseal=True, timeout_seconds=30)
        outs = VaultInitProvider().create(inputs).outs
        status = node.client().sys.read_seal_status()
        assert status["recovery_seal"] is True and (status["t"], status["n"]) == (3, 5)
        assert len(outs["unseal_keys"]) == 5 and not status["sealed"]
        node.wait_active()
        assert node.client(outs["root_token"]).auth.token.lookup_self()["data"]["policies"] == ["root"]
        node.stop()
        node.start()
        node.wait_active()  # unsealed by its seal, no key from anyone
        assert VaultInitProvider().diff("id", outs, inputs).changes is False
    finally:
        node.stop()


def test_keys_are_returned_even_when_unsealing_fails_after_init(
    loopback_tls: Tls, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed create() records nothing: the keys must reach the state anyway (a real OpenBao)."""
    gone = refused_address()
    leader = BaoServer(tmp_path, loopback_tls).start()
    try:
        outs = VaultInitProvider().create(props(loopback_tls, leader.url, [leader.url, gone], timeout_seconds=0.5)).outs
        assert len(outs["unseal_keys"]) == 5
        assert leader.client(outs["root_token"]).sys.read_seal_status()["sealed"] is False
        assert "unsealing failed" in capsys.readouterr().err
        # The unreachable node shows as a change in the next preview.
        assert VaultInitProvider().diff("id", outs, props(loopback_tls, leader.url, [leader.url, gone])).changes is True
    finally:
        leader.stop()


# The stub: a real server cannot be made to answer 503 to everything, as a broken ingress does.
def test_server_errors_end_in_a_clear_error_naming_the_address(loopback_tls: Tls) -> None:
    with FailingIngress(loopback_tls, 503) as node:
        started = time.monotonic()
        with pytest.raises(VaultInitError) as err:
            VaultInitProvider().create(props(loopback_tls, node, [node], timeout_seconds=0.3))
        assert node.url in str(err.value) and "within 0.3s" in str(err.value) and "503" in str(err.value)
        assert len(node.requests) > 1  # retried while waiting
        assert time.monotonic() - started < 5


def test_refused_connections_end_in_a_clear_error(loopback_tls: Tls) -> None:
    address = refused_address()
    with pytest.raises(VaultInitError, match=r"could not reach https://127\.0\.0\.1:\d+ within 0\.3s.*[Rr]efused"):
        VaultInitProvider().create(props(loopback_tls, address, [address], timeout_seconds=0.3))


def test_only_https_addresses_and_a_pem_bundle_are_accepted() -> None:
    provider = VaultInitProvider()
    bad = {"init_address": "http://127.0.0.1:8200", "unseal_addresses": ["vault-0:8200"], "ca_bundle": "not a PEM",
           "auto_unseal": False, "key_shares": 5, "key_threshold": 6}
    failures = {(f.property, f.reason) for f in provider.check({}, bad).failures}
    assert {p for p, _ in failures} == {"init_address", "unseal_addresses", "ca_bundle", "key_threshold"}
    with pytest.raises(VaultInitError, match="not an https:// URL"):
        provider.create(bad)
    # An empty bundle is allowed: the system roots (ACME certificates on EKS), never "no check".
    assert provider.check({}, {**bad, "init_address": "https://vault", "unseal_addresses": [], "ca_bundle": "",
                                "key_threshold": 3}).failures == []


def test_how_vault_was_initialised_cannot_be_changed_by_a_config_change(loopback_tls: Tls) -> None:
    olds = props(loopback_tls, "https://vault-0.example.com", ["https://vault-0.example.com"])
    failures = VaultInitProvider().check(olds, {**olds, "key_shares": 7, "auto_unseal": True}).failures
    assert sorted(f.property for f in failures) == ["auto_unseal", "key_shares"]
    assert all("rekey" in f.reason for f in failures)
    assert VaultInitProvider().check(olds, {**olds, "timeout_seconds": 900}).failures == []


def test_the_engine_can_load_the_provider_in_a_process_of_its_own() -> None:
    """The engine stores the provider pickled in the state and loads it in a separate process."""
    blob = serialize_provider(VaultInitProvider())
    loaded = subprocess.run(
        [sys.executable, "-c",
         "import base64, sys, dill; p = dill.loads(base64.b64decode(sys.stdin.read())); "
         "print(type(p).__name__, callable(p.unseal_sealed_nodes))"],
        input=blob, capture_output=True, text=True, cwd=ROOT, check=False,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == ["VaultInitProvider", "True"]


# =====================================================================================
# Part 2: the component under the mock engine
# =====================================================================================

CA_PEM = "-----BEGIN CERTIFICATE-----\nmock-platform-ca\n-----END CERTIFICATE-----\n"
HOST = "vault.dev.platform.example.com"
ISSUER = "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC123"
OIDC_ARN = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC123"


def render_vault(eks: bool, protect: bool, replicas: int = 3) -> dict[str, Any]:
    """Run a program holding one Vault under mocks; returns the records and the secrets it exposes.

    As the platform has it: a private CA on kubeconfig clusters, ACME with an empty bundle on EKS.
    """

    def program() -> Vault:
        provider = k8s.Provider("control-plane-k8s", kubeconfig="{}")
        on_cluster = pulumi.ResourceOptions(provider=provider)
        cert_manager = k8s.helm.v3.Release("control-plane-cert-manager", chart="cert-manager", opts=on_cluster)
        traefik = k8s.helm.v3.Release("control-plane-traefik", chart="traefik", opts=on_cluster)
        identity = None
        if eks:
            identity = AwsWorkloadIdentity(
                provider=aws.Provider("control-plane-aws", region="eu-west-1"),
                oidc_provider_arn=pulumi.Output.from_input(OIDC_ARN),
                oidc_issuer_url=pulumi.Output.from_input(ISSUER),
                region="eu-west-1",
            )
        cluster = ClusterHandle(
            role="control-plane", provider=provider, endpoint=pulumi.Output.from_input("https://cp:6443"),
            ca_data=pulumi.Output.from_input("bW9jaw=="), kubernetes_version="1.33", api_server=ApiServer.of_server("https://cp:6443"), is_eks=eks,
        )
        exposure = Exposure(HOST, "platform-acme" if eks else "platform-ca",
                            pulumi.Output.from_input("" if eks else CA_PEM))
        return Vault("control-plane-vault", cluster, VaultArgs(
            exposure=exposure,
            oidc=OidcClient("vault", pulumi.Output.secret(f"{SECRET_MARK}oidc"), "https://k8sou.dev.platform.example.com/auth/idp/k8sIdp"),
            groups=PlatformGroups(cluster_admins=["platform-admins"], system_approvers=["platform-approvers"]),
            cert_manager=cert_manager, ingress_controller=traefik, protect=protect, aws=identity, replicas=replicas,
        ))

    run = run_program(program)
    return {
        "records": run.resources,
        "root_token": run.resolve(run.result.root_token),
        "unseal_keys": run.resolve(run.result.init.unseal_keys),
    }


@pytest.fixture(scope="module", params=[(False, False), (True, True)], ids=["kubeconfig", "eks-protected"])
def rendered(request: pytest.FixtureRequest) -> dict[str, Any]:
    eks, protect = request.param
    return {**render_vault(eks, protect), "eks": eks, "protect": protect}


def one(records: list[dict[str, Any]], typ: str) -> dict[str, Any]:
    found = [r for r in records if r["type"] == typ]
    assert len(found) == 1, f"{typ}: {len(found)} records"
    return found[0]


def all_of(records: list[dict[str, Any]], typ: str) -> list[dict[str, Any]]:
    return [r for r in records if r["type"] == typ]


def vault_release(records: list[dict[str, Any]]) -> dict[str, Any]:
    return next(r for r in all_of(records, "kubernetes:helm.sh/v3:Release") if r["inputs"]["chart"] == "vault")


def by_kind(records: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """Declared objects of `kind`, by metadata.name."""
    return {r["inputs"]["metadata"]["name"]: r for r in records if r["inputs"].get("kind") == kind}


def test_release_is_ha_raft_over_tls_and_never_dev_mode(rendered: dict[str, Any]) -> None:
    release = vault_release(rendered["records"])
    values = release["inputs"]["values"]
    assert unknown_value_paths("vault", values) == []
    assert schema_errors("vault", values) == []
    server = values["server"]
    assert server["ha"]["enabled"] is True and server["ha"]["raft"]["enabled"] is True and server["ha"]["replicas"] == 3
    assert server["dev"]["enabled"] is False and "standalone" not in server  # HA mode ignores standalone
    assert values["global"]["tlsDisable"] is False and values["injector"]["enabled"] is False
    assert server["dataStorage"] == {"enabled": True, "size": "10Gi"}
    assert release["options"]["protect"] is rendered["protect"]  # the raft volumes

    config = hcl.loads(server["ha"]["raft"]["config"])
    listener = config["listener"]["tcp"]
    assert listener["tls_disable"] is False
    assert (listener["tls_cert_file"], listener["tls_key_file"]) == ("/vault/userconfig/vault-tls/tls.crt", "/vault/userconfig/vault-tls/tls.key")
    assert server["volumes"] == [{"name": "vault-tls", "secret": {"secretName": "vault-tls"}}]
    assert server["volumeMounts"][0]["mountPath"] == "/vault/userconfig/vault-tls" and CA_FILE.startswith("/vault/userconfig/vault-tls/")
    joins = config["storage"]["raft"]["retry_join"]
    assert [j["leader_api_addr"] for j in joins] == [f"https://vault-{i}.vault-internal:8200" for i in range(3)]
    assert all(j["leader_ca_cert_file"] == CA_FILE for j in joins)

    # The public name is the platform's route in Traefik's namespace (test_each_peer_the_program_must_reach_has_its_own_route).
    assert server["ingress"] == {"enabled": False} and "service" not in server

    if rendered["eks"]:
        seal = config["seal"]["awskms"]
        assert seal["region"] == "eu-west-1" and seal["kms_key_id"].startswith("control-plane-vault-unseal-")
        role_arn = server["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"]
        assert role_arn.startswith("arn:aws:iam::123456789012:role/control-plane-vault-unseal-")
    else:
        assert "seal" not in config and "serviceAccount" not in server


def test_certificates_internal_ca_for_vault_platform_issuer_for_the_public_name(rendered: dict[str, Any]) -> None:
    records = rendered["records"]
    certificates = by_kind(records, "Certificate")
    for obj in certificates.values():
        assert custom_resource_errors(obj["inputs"]) == [], obj["name"]
    # No cert-manager CA in the namespace Traefik reads every Secret of: the program is Vault's internal CA.
    assert set(certificates) == {"vault-public-tls"} and by_kind(records, "Issuer") == {}

    # Vault's own certificate: every in-cluster name, signed by the program (an ACME issuer could not sign them).
    def named(typ: str, name: str) -> dict[str, Any]:
        [found] = [r for r in records if r["type"] == f"tls:index/{typ}" and r["name"] == name]
        return found

    request = named("certRequest:CertRequest", "control-plane-vault-tls")["inputs"]
    for name in ["vault.vault.svc", "vault-active.vault.svc", "*.vault-internal", "*.vault-internal.vault.svc"]:
        assert name in request["dnsNames"]
    assert request["ipAddresses"] == ["127.0.0.1"]
    signed = named("locallySignedCert:LocallySignedCert", "control-plane-vault-tls")
    ca_key = named("privateKey:PrivateKey", "control-plane-vault-internal-ca")
    assert named("selfSignedCert:SelfSignedCert", "control-plane-vault-internal-ca")["inputs"]["isCaCertificate"] is True
    assert ca_key["urn"] in signed["dependsOn"] and not signed["inputs"].get("isCaCertificate")
    secret = by_kind(records, "Secret")["vault-tls"]
    assert secret["inputs"]["type"] == "kubernetes.io/tls" and set(secret["inputs"]["stringData"]) == {"tls.crt", "tls.key", "ca.crt"}
    assert signed["urn"] in secret["dependsOn"] and ca_key["urn"] not in secret["dependsOn"]  # the CA's key stays in the state
    bundle = by_kind(records, "ConfigMap")["vault-internal-ca"]["inputs"]
    assert set(bundle["data"]) == {"ca.crt"} and bundle["metadata"]["namespace"] == "traefik"  # the CA's certificate alone, for Traefik

    # The public name: the platform's ClusterIssuer, whatever kind it is.
    public = certificates["vault-public-tls"]["inputs"]["spec"]
    assert public["issuerRef"] == {"name": "platform-acme" if rendered["eks"] else "platform-ca", "kind": "ClusterIssuer",
                                   "group": "cert-manager.io"}
    assert public["dnsNames"] == [HOST]

    # Issued before use: Pulumi waits for Ready; the release waits for its own, the public route (which VaultInit
    # calls first) for the public one, in Traefik's namespace where the route is.
    assert certificates["vault-public-tls"]["inputs"]["metadata"]["annotations"] == {"pulumi.com/waitFor": "condition=Ready"}
    assert certificates["vault-public-tls"]["inputs"]["metadata"]["namespace"] == "traefik"
    cert_manager = next(r for r in records if r["name"] == "control-plane-cert-manager")
    assert cert_manager["urn"] in certificates["vault-public-tls"]["dependsOn"]
    assert secret["urn"] in vault_release(records)["dependsOn"]
    assert certificates["vault-public-tls"]["urn"] in by_kind(records, "IngressRoute")["vault-public"]["dependsOn"]


def test_kubernetes_objects_are_valid_and_wait_for_their_namespace(rendered: dict[str, Any]) -> None:
    records = rendered["records"]
    namespace = one(records, "kubernetes:core/v1:Namespace")
    provider = one(records, "pulumi:providers:kubernetes")
    objects = [r for r in records if r["type"].startswith("kubernetes:") and "helm.sh" not in r["type"]]
    assert {r["inputs"]["kind"] for r in objects} == {
        "Namespace", "Secret", "ConfigMap", "Certificate", "ServersTransport", "Middleware", "Service", "IngressRoute"
    }
    for obj in objects:
        assert obj["provider"] == provider["urn"]
        if obj["inputs"]["apiVersion"] in ("v1", "networking.k8s.io/v1"):
            assert kubernetes_errors(obj["inputs"]) == [], obj["name"]
        if obj is not namespace:
            assert namespace["urn"] in obj["dependsOn"], obj["name"]


def test_traefik_reaches_vault_over_verified_tls(rendered: dict[str, Any]) -> None:
    records = rendered["records"]
    transport = one(records, "kubernetes:traefik.io/v1alpha1:ServersTransport")
    # Verified against the internal CA (the ConfigMap holding its certificate alone), never skipped.
    assert transport["inputs"]["spec"] == {"serverName": "vault-active.vault.svc", "rootCAs": [{"configMap": "vault-internal-ca"}]}
    assert transport["inputs"]["metadata"] == {"name": "vault", "namespace": "traefik"}  # beside the routes naming it
    traefik = next(r for r in records if r["name"] == "control-plane-traefik")
    routes = [*all_of(records, "kubernetes:traefik.io/v1alpha1:Middleware"), *all_of(records, "kubernetes:traefik.io/v1alpha1:IngressRoute")]
    assert traefik["urn"] in transport["dependsOn"] and all(traefik["urn"] in r["dependsOn"] for r in routes)
    [request] = [r for r in records if r["type"] == "tls:index/certRequest:CertRequest" and r["name"] == "control-plane-vault-tls"]
    assert "vault-active.vault.svc" in request["inputs"]["dnsNames"]


def test_each_peer_the_program_must_reach_has_its_own_route(rendered: dict[str, Any]) -> None:
    records = rendered["records"]
    reached = [f"vault-{n}" for n in range(1 if rendered["eks"] else 3)]  # auto-unseal: only init, on the first
    route = by_kind(records, "IngressRoute")["vault-public"]["inputs"]
    assert route["metadata"]["namespace"] == "traefik" and route["spec"]["tls"] == {"secretName": "vault-public-tls"}
    over_tls = {"port": 8200, "scheme": "https", "serversTransport": "vault"}  # re-encrypted, verified (the transport)
    assert [(r["match"], r["services"], r.get("middlewares")) for r in route["spec"]["routes"]] == [
        (f"Host(`{HOST}`) && PathPrefix(`/`)", [{"name": "vault-active", **over_tls}], None),  # only the unsealed leader
        *((f"Host(`{HOST}`) && PathPrefix(`/node/{peer}/`)", [{"name": f"{peer}-node", **over_tls}],
           [{"name": "vault-bootstrap-auth"}, {"name": "vault-node-prefix"}]) for peer in reached),  # the credential first
    ]
    auth, strip = (m["inputs"] for m in all_of(records, "kubernetes:traefik.io/v1alpha1:Middleware"))
    assert strip["spec"] == {"stripPrefix": {"prefixes": [f"/node/{peer}/" for peer in reached]}}
    assert auth["spec"] == {"basicAuth": {"secret": "vault-bootstrap-auth", "realm": "vault-bootstrap", "removeHeader": True}}
    assert {auth["metadata"]["namespace"], strip["metadata"]["namespace"]} == {"traefik"}  # the route's own namespace
    services = {(s["inputs"]["metadata"]["namespace"], s["inputs"]["metadata"]["name"]): s["inputs"] for s in all_of(records, "kubernetes:core/v1:Service")}
    # Traefik's, by name (it never watches `vault`); the peers' own in `vault`, where a Service publishes a sealed pod.
    assert sorted(services) == sorted([("traefik", "vault-active"), *((ns, f"{peer}-node") for peer in reached for ns in ("traefik", "vault"))])
    assert services[("traefik", "vault-active")]["spec"]["externalName"] == "vault-active.vault.svc.cluster.local"
    for peer in reached:
        assert services[("traefik", f"{peer}-node")]["spec"] == {
            "type": "ExternalName", "externalName": f"{peer}-node.vault.svc.cluster.local", "ports": [{"name": "tcp-8200", "port": 8200}]}
        service = services[("vault", f"{peer}-node")]
        assert service["spec"]["selector"]["statefulset.kubernetes.io/pod-name"] == peer
        assert service["spec"]["publishNotReadyAddresses"] is True  # a sealed peer must be reachable


def test_init_resource_keeps_its_keys_secret_and_runs_after_the_release(rendered: dict[str, Any]) -> None:
    records = rendered["records"]
    init = one(records, VaultInit.TYPE)
    assert sorted(init["options"]["additionalSecretOutputs"]) == ["root_token", "route_password", "unseal_keys"]
    assert init["options"]["protect"] is rendered["protect"]
    inputs = init["inputs"]
    assert inputs["init_address"] == f"https://{HOST}/node/vault-0"
    assert inputs["auto_unseal"] is rendered["eks"]
    assert inputs["unseal_addresses"] == ([] if rendered["eks"] else [f"https://{HOST}/node/vault-{n}" for n in range(3)])
    assert inputs["ca_bundle"] == ("" if rendered["eks"] else CA_PEM)
    assert "__provider" not in inputs  # the pickled provider never shows in the plan
    assert inputs["route_user"] == "vault-bootstrap" and inputs["route_password"]
    route = by_kind(records, "IngressRoute")["vault-public"]
    assert {vault_release(records)["urn"], route["urn"]} <= set(init["dependsOn"])

    token, token_secret = rendered["root_token"]
    keys, keys_secret = rendered["unseal_keys"]
    assert token_secret and keys_secret
    assert token.startswith(f"hvs.{SECRET_MARK}") and len(keys) == 5


def test_vault_provider_trusts_the_ca_and_holds_the_token_as_a_secret(rendered: dict[str, Any]) -> None:
    provider = one(rendered["records"], "pulumi:providers:vault")
    inputs = provider["inputs"]
    assert inputs["address"] == f"https://{HOST}"
    assert inputs["token"] == REDACTED and "token" in provider["secretPaths"]
    if rendered["eks"]:
        assert "caCertFile" not in inputs  # ACME: the system roots
    else:
        assert Path(inputs["caCertFile"]).read_text() == CA_PEM
    init = one(rendered["records"], VaultInit.TYPE)
    assert init["urn"] in provider["dependsOn"]
    # Every Vault resource goes through this provider.
    vault_resources = [r for r in rendered["records"] if r["type"].startswith("vault:")]
    assert vault_resources and all(r["provider"] == provider["urn"] for r in vault_resources)


def test_oidc_login_is_mapped_to_platform_groups_with_short_tokens(rendered: dict[str, Any]) -> None:
    records = rendered["records"]
    backend = one(records, "vault:jwt/authBackend:AuthBackend")
    assert backend["inputs"]["type"] == "oidc" and backend["inputs"]["path"] == "oidc"
    assert backend["inputs"]["oidcClientSecret"] == REDACTED and "oidcClientSecret" in backend["secretPaths"]
    assert backend["inputs"].get("oidcDiscoveryCaPem") == (None if rendered["eks"] else CA_PEM)
    assert backend["inputs"]["defaultRole"] == "platform"
    assert backend["inputs"]["tune"]["maxLeaseTtl"] == "1h"

    role = one(records, "vault:jwt/authBackendRole:AuthBackendRole")["inputs"]
    assert role["roleName"] == "platform" and role["userClaim"] == "sub" and role["groupsClaim"] == "groups"
    assert TOKEN_TTL_SECONDS == 3600
    assert 0 < role["tokenTtl"] <= 3600 and 0 < role["tokenMaxTtl"] <= 3600
    assert role["allowedRedirectUris"] == [
        f"https://{HOST}/ui/vault/auth/oidc/oidc/callback", "http://localhost:8250/oidc/callback"
    ]
    assert role["tokenPolicies"] == ["default"]

    groups = {g["inputs"]["name"]: g for g in all_of(records, "vault:identity/group:Group")}
    assert {n: (g["inputs"]["type"], g["inputs"]["policies"]) for n, g in groups.items()} == {
        "platform-admins": ("external", ["platform-admin"]),
        "platform-approvers": ("external", ["platform-approver"]),
    }
    aliases = all_of(records, "vault:identity/groupAlias:GroupAlias")
    assert sorted(a["inputs"]["name"] for a in aliases) == ["platform-admins", "platform-approvers"]
    # Bound to the oidc mount's accessor and to its own group.
    assert all(a["inputs"]["mountAccessor"].startswith("auth_oidc_") and backend["urn"] in a["dependsOn"] for a in aliases)
    assert all({groups[a["inputs"]["name"]]["urn"]} <= set(a["dependsOn"]) for a in aliases)

    policies = {p["inputs"]["name"]: p["inputs"]["policy"] for p in all_of(records, "vault:index/policy:Policy")}
    admin = hcl.loads(policies["platform-admin"])["path"]["*"]["capabilities"]
    assert "sudo" in admin and "delete" in admin
    approver = hcl.loads(policies["platform-approver"])["path"]
    assert approver["sys/*"]["capabilities"] == ["read", "list"] and approver["identity/*"]["capabilities"] == ["read", "list"]
    assert approver["sys/raw*"]["capabilities"] == ["deny"]
    reader = hcl.loads(policies["platform-reader"])["path"]  # the drift checks': read, never write
    assert reader["*"]["capabilities"] == ["read", "list"] and reader["sys/raw*"]["capabilities"] == ["deny"]


def test_audit_device_writes_to_stdout(rendered: dict[str, Any]) -> None:
    audit = one(rendered["records"], "vault:index/audit:Audit")["inputs"]
    assert audit["type"] == "file" and audit["options"] == {"file_path": "stdout"}


INSECURE = re.compile(r"skip_?tls_?verify|tls_?skip_?verify|tls-skip-verify|insecure|tls_disable\s*=\s*(true|1)\b", re.I)


def test_nothing_in_vault_turns_tls_verification_off(rendered: dict[str, Any]) -> None:
    text = json.dumps([r["inputs"] for r in rendered["records"]])
    assert INSECURE.findall(text) == []
    # The check itself catches what it is meant to catch.
    assert INSECURE.search(json.dumps({"skipTlsVerify": True})) and INSECURE.search("tls_disable = 1")


def test_auto_unseal_key_and_role_on_eks_only(rendered: dict[str, Any]) -> None:
    records = rendered["records"]
    if not rendered["eks"]:
        assert [r for r in records if r["type"].startswith("aws:")] == []
        return
    aws_provider = one(records, "pulumi:providers:aws")
    key = one(records, "aws:kms/key:Key")
    assert key["inputs"]["enableKeyRotation"] is True
    assert key["options"]["protect"] is rendered["protect"]
    trust = json.loads(one(records, "aws:iam/role:Role")["inputs"]["assumeRolePolicy"])["Statement"]
    issuer = ISSUER.removeprefix("https://")
    assert trust == [{
        "Effect": "Allow",
        "Principal": {"Federated": OIDC_ARN},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {f"{issuer}:sub": "system:serviceaccount:vault:vault",
                                       f"{issuer}:aud": "sts.amazonaws.com"}},
    }]
    # The seal's key id and the policy's key ARN name the same key (mock ids are "<name>-id").
    key_name = hcl.loads(vault_release(records)["inputs"]["values"]["server"]["ha"]["raft"]["config"])["seal"]["awskms"]["kms_key_id"]
    policy = json.loads(one(records, "aws:iam/rolePolicy:RolePolicy")["inputs"]["policy"])["Statement"]
    assert policy == [{"Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"],
                       "Resource": f"arn:aws:kms:eu-west-1:123456789012:key/{key_name.removesuffix('-id')}"}]
    assert all(r["provider"] == aws_provider["urn"] for r in records if r["type"].startswith("aws:"))


def test_everything_belongs_to_the_vault_component(rendered: dict[str, Any]) -> None:
    records = rendered["records"]
    component = one(records, "platform:vault:Vault")
    by_urn = {r["urn"]: r for r in records}
    outside = {"control-plane-k8s", "control-plane-cert-manager", "control-plane-traefik", "control-plane-aws", "control-plane-vault"}
    for record in records:
        if record["name"] in outside and record["type"] != "pulumi:providers:vault":
            continue
        ancestor = record
        while ancestor["parent"] and ancestor["urn"] != component["urn"]:
            ancestor = by_urn.get(ancestor["parent"], {"urn": None, "parent": None})
        assert ancestor["urn"] == component["urn"], record["urn"]
