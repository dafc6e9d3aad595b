"""git over SSH from ArgoCD to GitLab: host keys, known_hosts, the TCP route, rotation.

On both stacks' plans: gitlab-shell's host keys are the program's (pulumi-tls, in a Secret the
GitLab release names), ArgoCD's known_hosts lists exactly their public halves for the host in
every tenant repository URL, Traefik routes its SSH entrypoint to gitlab-shell on the port GitLab
advertises, and the inventory lists the keys with their rotation. A small program under test
mocks then replaces the keys (a new rotation) and shows the Secret, gitlab-shell's restart
annotation and ArgoCD's known_hosts all follow.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
from pulumi.runtime.mocks import MockResourceArgs

from components import gitlab as gitlab_component
from components import ingress as ingress_component
from components.argocd import ArgoCd, ArgoCdArgs
from components.common import Exposure, OidcClient, PlatformGroups
from components.data_stores import DataStores, DataStoresArgs
from components.inventory import DAY, CredentialInventory
from components.service import ServiceSettings
from platformctl.mocks import SECRET_MARK, PlatformMocks, is_redacted
from policy.inventory import MAX_LIFETIME_SECONDS
from tests.mock_program import ProgramRun, control_plane_cluster, run_program
from tests.test_gitlab_harbor import OBJECT_STORE

PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
ROTATING = "time:index/rotating:Rotating"
RELEASE = "kubernetes:helm.sh/v3:Release"
SECRET = "kubernetes:core/v1:Secret"
ROUTE = "kubernetes:traefik.io/v1alpha1:IngressRouteTCP"
HOST_KEYS = "platform:gitlab:SshHostKeys"
# IngressRouteTCP fields the route may set, from Traefik v3's CRD (traefik.io_ingressroutetcps.yaml).
ROUTE_FIELDS = {"match", "priority", "middlewares", "services"}
ROUTE_SERVICE_FIELDS = {"name", "namespace", "port", "weight", "nativeLB", "proxyProtocol", "terminationDelay"}


# --- plan helpers ---------------------------------------------------------------------------------


def of_type(plan: dict, typ: str) -> list[dict[str, Any]]:
    return [r for r in plan["resources"] if r["type"] == typ]


def one(plan: dict, typ: str, name: str) -> dict[str, Any]:
    found = [r for r in of_type(plan, typ) if r["name"] == name]
    assert len(found) == 1, f"expected one {typ} {name}, found {len(found)}"
    return found[0]


def host_keys(plan: dict) -> list[dict[str, Any]]:
    """gitlab-shell's host key resources: the private keys inside the SshHostKeys component."""
    (component,) = of_type(plan, HOST_KEYS)
    keys = [r for r in of_type(plan, PRIVATE_KEY) if r["parent"] == component["urn"]]
    assert len(keys) == len(gitlab_component.HOST_KEY_TYPES)
    return keys


def mock_public_key(record: dict[str, Any]) -> str:
    """What the render's mock engine returned as the key's `publicKeyOpenssh`."""
    _, state = PlatformMocks().new_resource(MockResourceArgs(record["type"], record["name"], record["inputs"]))
    return state["publicKeyOpenssh"]


def gitlab_host(plan: dict) -> str:
    return plan["outputs"]["urls"]["gitlab"].removeprefix("https://")


def known_hosts_of(plan: dict) -> str:
    return one(plan, RELEASE, "control-plane-argocd")["inputs"]["values"]["configs"]["ssh"]["knownHosts"]


def known_host_names(known_hosts: str) -> set[str]:
    return {line.split()[0] for line in known_hosts.splitlines() if line.strip()}


def ssh_host_entry(url: str) -> str | None:
    """The known_hosts host name an SSH repository URL needs; None for other URLs."""
    scp = re.fullmatch(r"[\w.-]+@([\w.-]+):(?!//).+", url)
    if scp:
        return scp[1]
    ssh = re.fullmatch(r"ssh://(?:[^@/]+@)?([\w.-]+)(?::(\d+))?/.+", url)
    if ssh:
        return ssh[1] if ssh[2] in (None, "22") else f"[{ssh[1]}]:{ssh[2]}"
    return None


def strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


# --- both stacks ----------------------------------------------------------------------------------


def test_gitlab_release_reads_the_host_keys_from_their_secret(plan: dict) -> None:
    secret = one(plan, SECRET, "gitlab-ssh-host-keys")
    assert secret["inputs"]["metadata"]["name"] == gitlab_component.HOST_KEYS_SECRET
    assert secret["inputs"]["metadata"]["namespace"] == gitlab_component.NAMESPACE
    # The Secret is made of the tls keys, and is a secret as a whole.
    assert is_redacted(secret["inputs"]["stringData"]) and secret["secretPaths"] == ["stringData"]
    assert {k["urn"] for k in host_keys(plan)} <= set(secret["dependsOn"])
    release = one(plan, RELEASE, "control-plane-gitlab")
    values = release["inputs"]["values"]
    assert values["global"]["shell"]["hostKeys"] == {"secret": gitlab_component.HOST_KEYS_SECRET}
    assert secret["urn"] in release["dependsOn"]  # the Secret exists before gitlab-shell starts
    # New keys restart gitlab-shell: its pod annotation is a hash of them, in plain sight.
    annotation = values["gitlab"]["gitlab-shell"]["annotations"][gitlab_component.HOST_KEYS_CHECKSUM_ANNOTATION]
    assert re.fullmatch(r"[0-9a-f]{64}", annotation)
    assert {k["urn"] for k in host_keys(plan)} <= set(release["dependsOn"])
    # The secret stays out of the Helm values, which stay readable in diffs.
    assert not any(p.startswith("values") for p in release["secretPaths"])


def test_host_keys_are_ed25519_and_ecdsa_p256(plan: dict) -> None:
    algorithms = sorted((k["inputs"]["algorithm"], k["inputs"].get("ecdsaCurve")) for k in host_keys(plan))
    assert algorithms == [("ECDSA", "P256"), ("ED25519", None)]


def test_argocd_trusts_exactly_the_host_keys(plan: dict) -> None:
    keys = host_keys(plan)
    expected = sorted(gitlab_component.known_hosts_line(gitlab_host(plan), 22, mock_public_key(k)) for k in keys)
    known_hosts = known_hosts_of(plan)
    assert sorted(known_hosts.splitlines(keepends=True)) == expected
    assert sorted(line.split()[1] for line in known_hosts.splitlines()) == ["ecdsa-sha2-nistp256", "ssh-ed25519"]
    # Built from the keys themselves: a new key pair changes ArgoCD's release in the same run.
    argocd = one(plan, RELEASE, "control-plane-argocd")
    assert {k["urn"] for k in keys} <= set(argocd["dependsOn"])
    # Public: readable in the plan, not redacted.
    assert "values.configs.ssh.knownHosts" not in argocd["secretPaths"]
    # People get the same lines, to check the keys on first contact and after each rotation.
    assert plan["outputs"]["sshKnownHosts"] == known_hosts


def test_every_tenant_repository_host_is_a_known_host(plan: dict) -> None:
    known = known_host_names(known_hosts_of(plan))
    assert known == {gitlab_host(plan)}
    argo_objects = [r for r in plan["resources"] if r["type"].startswith("kubernetes:argoproj.io/")]
    urls = {s for r in argo_objects for s in strings(r["inputs"]) if ssh_host_entry(s)}
    tenants = [r["name"] for r in of_type(plan, "platform:tenant:Tenant")]
    assert tenants and urls
    for tenant in tenants:
        assert any(f":{tenant}/" in url for url in urls), f"no SSH repository URL for tenant {tenant}"
    for url in urls:
        assert ssh_host_entry(url) in known, f"{url}: its host has no known_hosts entry"
    # One ArgoCD repository Secret (redacted: it holds the deploy key) per URL ArgoCD fetches.
    repositories = [
        r for r in of_type(plan, SECRET)
        if r["inputs"].get("metadata", {}).get("labels", {}).get("argocd.argoproj.io/secret-type") == "repository"
    ]
    assert len(repositories) == len(urls)


def test_traefik_routes_ssh_to_gitlab_shell_on_the_advertised_port(plan: dict) -> None:
    traefik = one(plan, RELEASE, "control-plane-traefik")
    ports = traefik["inputs"]["values"]["ports"]
    entrypoint = ports[ingress_component.SSH_ENTRYPOINT]
    assert entrypoint == {
        "port": ingress_component.SSH_CONTAINER_PORT,
        "exposedPort": ingress_component.SSH_PORT,
        "expose": {"default": True},
        "protocol": "TCP",
    }
    # HTTP routers (the Ingress API's) attach to web and websecure only, never to the SSH port.
    assert [name for name, port in ports.items() if port.get("asDefault")] == ["web", "websecure"]

    route = one(plan, ROUTE, "gitlab-ssh")
    inputs = route["inputs"]
    # In Traefik's namespace, towards an ExternalName Service there: Traefik never watches GitLab's namespace.
    assert inputs["metadata"]["namespace"] == ingress_component.NAMESPACE
    assert inputs["spec"]["entryPoints"] == [ingress_component.SSH_ENTRYPOINT]
    assert "tls" not in inputs["spec"]  # SSH brings its own encryption and host authentication
    (rule,) = inputs["spec"]["routes"]
    assert set(rule) <= ROUTE_FIELDS and rule["match"] == "HostSNI(`*`)"
    (service,) = rule["services"]
    assert set(service) <= ROUTE_SERVICE_FIELDS
    assert service == {"name": gitlab_component.SHELL_SERVICE, "port": gitlab_component.SHELL_PORT}
    backend = one(plan, "kubernetes:core/v1:Service", f"gitlab-ssh-{gitlab_component.SHELL_SERVICE}")
    assert backend["inputs"]["metadata"]["namespace"] == ingress_component.NAMESPACE
    assert backend["inputs"]["spec"] == {"type": "ExternalName", "externalName": f"{gitlab_component.SHELL_SERVICE}.gitlab.svc.cluster.local",
                                         "ports": [{"name": "tcp-22", "port": gitlab_component.SHELL_PORT}]}
    values = traefik["inputs"]["values"]["providers"]
    assert values["kubernetesCRD"]["allowExternalNameServices"] is True
    # The port GitLab shows in clone URLs is the chart's default `global.shell.port` (not
    # overridden), which is also gitlab-shell's Service port; clients reach it on the load balancer.
    shell = one(plan, RELEASE, "control-plane-gitlab")["inputs"]["values"]["global"]["shell"]
    assert "port" not in shell
    assert gitlab_component.SHELL_PORT == ingress_component.SSH_PORT == 22
    # The route waits for Traefik (its CRD) and for its Service.
    assert {traefik["urn"], backend["urn"]} <= set(route["dependsOn"])


def test_inventory_lists_the_host_keys_with_their_rotation(plan: dict) -> None:
    (entry,) = [e for e in plan["outputs"]["credentials"] if e["what"] == "SSH host keys of GitLab (gitlab-shell)"]
    assert sorted(entry["resources"]) == sorted(k["name"] for k in host_keys(plan))
    assert entry["category"] == "issued"
    assert entry["lifetimeSeconds"] == gitlab_component.HOST_KEY_LIFETIME_DAYS * DAY <= MAX_LIFETIME_SECONDS
    assert f"every {gitlab_component.HOST_KEY_ROTATION_DAYS} days" in entry["rotation"]
    # Rotated like the deploy keys: one Rotating at half the lifetime, which every key waits for.
    (component,) = of_type(plan, HOST_KEYS)
    (rotation,) = [r for r in of_type(plan, ROTATING) if r["parent"] == component["urn"]]
    assert rotation["inputs"]["rotationDays"] == gitlab_component.HOST_KEY_ROTATION_DAYS
    assert gitlab_component.HOST_KEY_LIFETIME_DAYS == 2 * gitlab_component.HOST_KEY_ROTATION_DAYS
    for key in host_keys(plan):
        assert rotation["urn"] in key["dependsOn"]


def test_no_private_key_outside_secret_paths(plan: dict) -> None:
    for key in host_keys(plan):
        assert {"privateKeyOpenssh", "privateKeyPem"} <= set(key["options"]["additionalSecretOutputs"])
    # Mock private keys are PEM blocks around SECRET_MARK: neither shows anywhere in the plan.
    text = json.dumps(plan)
    assert "BEGIN PRIVATE KEY" not in text and SECRET_MARK not in text


# --- the components alone, through a rotation ---------------------------------------------------------

DOMAIN = "platform.example.com"
HOST = f"gitlab.{DOMAIN}"
CA_PEM = "-----BEGIN CERTIFICATE-----\nplatform-ca\n-----END CERTIFICATE-----\n"
OPENSSH_TYPES = {"ED25519": "ssh-ed25519", "ECDSA": "ecdsa-sha2-nistp256"}


class _Mocks(PlatformMocks):
    """Keys all different in each `generation`: a second generation is what a rotation produces."""

    def __init__(self, generation: str):
        super().__init__()
        self.generation = generation

    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        resource_id, state = super().new_resource(args)
        if args.typ == ROTATING:
            state["rfc3339"] = f"2026-0{self.generation}-01T00:00:00Z"
        if args.typ == PRIVATE_KEY:
            seed = hashlib.sha256(f"{args.name}/{self.generation}".encode()).hexdigest()
            state["privateKeyOpenssh"] = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{SECRET_MARK}{seed}\n-----END OPENSSH PRIVATE KEY-----\n"
            blob = base64.b64encode(seed.encode()).decode()
            state["publicKeyOpenssh"] = f"{state['publicKeyOpenssh'].split()[0]} {blob}\n"  # the base mocks' type
        return resource_id, state


def _exposure(service: str) -> Exposure:
    return Exposure(f"{service}.{DOMAIN}", "platform-ca", pulumi.Output.from_input(CA_PEM))


def _oidc(client: str) -> OidcClient:
    return OidcClient(client, pulumi.Output.secret(f"{SECRET_MARK}{client}"), f"https://login.{DOMAIN}/auth/idp/k8sIdp")


def run_components(generation: str, ssh_port: int = ingress_component.SSH_PORT) -> ProgramRun[CredentialInventory]:
    def build() -> CredentialInventory:
        cluster = control_plane_cluster(base64.b64encode(CA_PEM.encode()).decode())
        on_cluster = pulumi.ResourceOptions(provider=cluster.provider)
        traefik = k8s.helm.v3.Release("control-plane-traefik", chart="traefik", opts=on_cluster)
        cert_manager = k8s.core.v1.Namespace("cert-manager-stand-in", metadata={"name": "cert-manager"}, opts=on_cluster)
        groups = PlatformGroups(cluster_admins=["platform-admins"], system_approvers=["platform-approvers"])
        inventory = CredentialInventory()
        gitlab = gitlab_component.GitLab(
            "gitlab",
            cluster,
            gitlab_component.GitLabArgs(
                exposure=_exposure("gitlab"), oidc=_oidc("gitlab"), groups=groups, cert_manager=cert_manager,
                ssh=ingress_component.TcpEntrypoint(ingress_component.SSH_ENTRYPOINT, ssh_port, traefik),
                inventory=inventory,
                data_stores=DataStores("data-stores", cluster, DataStoresArgs(
                    protect=False, settings=ServiceSettings(replicas=3, storage="10Gi"), backup_retention_days=7,
                    instance_class="db.m7g.large", node_type="cache.m7g.large", object_store=OBJECT_STORE, inventory=inventory,
                )),
            ),
        )
        ArgoCd(
            "argocd",
            cluster,
            ArgoCdArgs(
                exposure=_exposure("argocd"), oidc=_oidc("argocd"), groups=groups, cert_manager=cert_manager,
                ingress_controller=traefik, ssh_known_hosts=gitlab.ssh_known_hosts,
            ),
        )
        return inventory

    return run_program(build, mocks=_Mocks(generation))


@pytest.fixture(scope="module")
def generations() -> tuple[ProgramRun[CredentialInventory], ProgramRun[CredentialInventory]]:
    return run_components("1"), run_components("2")


def _state(run: ProgramRun[CredentialInventory]) -> dict[str, Any]:
    """What a rotation must change: the Secret's content, gitlab-shell's annotation, ArgoCD's known_hosts."""
    secret = run.one(SECRET, "gitlab-ssh-host-keys")
    gitlab = run.one(RELEASE, "control-plane-gitlab")["inputs"]["values"]
    argocd = run.one(RELEASE, "control-plane-argocd")["inputs"]["values"]
    return {
        "files": run.raw[secret["urn"]]["stringData"],
        "annotation": gitlab["gitlab"]["gitlab-shell"]["annotations"][gitlab_component.HOST_KEYS_CHECKSUM_ANNOTATION],
        "known_hosts": argocd["configs"]["ssh"]["knownHosts"],
    }


def test_secret_holds_the_files_gitlab_shell_reads(generations: Any) -> None:
    run = generations[0]
    files = _state(run)["files"]
    assert set(files) == {f"ssh_host_{t}_key{s}" for t in gitlab_component.HOST_KEY_TYPES for s in ("", ".pub")}
    keys = {r["name"].rsplit("-", 1)[-1]: r for r in run.of_type(PRIVATE_KEY)}
    for kind in gitlab_component.HOST_KEY_TYPES:
        assert files[f"ssh_host_{kind}_key"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
        assert files[f"ssh_host_{kind}_key.pub"].startswith(OPENSSH_TYPES[keys[kind]["inputs"]["algorithm"]] + " ")


def test_known_hosts_lines_are_the_public_keys(generations: Any) -> None:
    state = _state(generations[0])
    expected = "".join(
        gitlab_component.known_hosts_line(HOST, 22, state["files"][f"ssh_host_{kind}_key.pub"])
        for kind in gitlab_component.HOST_KEY_TYPES
    )
    assert state["known_hosts"] == expected
    assert [line.split()[:2] for line in expected.splitlines()] == [[HOST, "ssh-ed25519"], [HOST, "ecdsa-sha2-nistp256"]]


def test_a_rotation_replaces_the_keys_and_everything_built_from_them(generations: Any) -> None:
    first, second = generations
    for run, generation in ((first, "1"), (second, "2")):
        rotation = run.one(ROTATING, "gitlab-ssh-host-keys-rotation")
        for key in shell_keys(run):
            # A new rotation timestamp is a new key pair ...
            assert rotation["urn"] in key["dependsOn"]
            assert run.triggers[key["urn"]] == f"2026-0{generation}-01T00:00:00Z"
        # ... while the rails secret's signing key is never replaced by a rotation.
        [rails_key] = [k for k in run.of_type(PRIVATE_KEY) if k["name"].startswith("gitlab-rails-secret-")]
        assert rails_key["name"] == "gitlab-rails-secret-openid_connect_signing_key" and rails_key["urn"] not in run.triggers
    before, after = _state(first), _state(second)
    # ... and with it, in the same run: new Secret content, a gitlab-shell restart, new known_hosts.
    for kind in gitlab_component.HOST_KEY_TYPES:
        assert before["files"][f"ssh_host_{kind}_key"] != after["files"][f"ssh_host_{kind}_key"]
    assert before["annotation"] != after["annotation"]
    assert before["known_hosts"] != after["known_hosts"]
    assert not set(before["known_hosts"].splitlines()) & set(after["known_hosts"].splitlines())


def test_inventory_entry_names_the_key_resources(generations: Any) -> None:
    run = generations[0]
    (entry,) = [e for e in run.result.entries() if e["what"] == "SSH host keys of GitLab (gitlab-shell)"]
    assert sorted(entry["resources"]) == sorted(r["name"] for r in shell_keys(run))
    assert len(entry["resources"]) == len(gitlab_component.HOST_KEY_TYPES)


def shell_keys(run: Any) -> list[dict[str, Any]]:
    return [r for r in run.of_type(PRIVATE_KEY) if r["name"].startswith("gitlab-ssh-host-keys-")]


def test_ssh_port_must_be_the_one_gitlab_advertises() -> None:
    with pytest.raises(ValueError, match="advertises SSH on port 22"):
        run_components("1", ssh_port=2222)


def test_known_hosts_line_names_a_non_default_port() -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"
    assert gitlab_component.known_hosts_line(HOST, 22, key) == f"{HOST} {key}"
    assert gitlab_component.known_hosts_line(HOST, 2222, key) == f"[{HOST}]:2222 {key}"
    assert ssh_host_entry(f"git@{HOST}:team/ops.git") == HOST
    assert ssh_host_entry(f"ssh://git@{HOST}:2222/team/ops.git") == f"[{HOST}]:2222"
    assert ssh_host_entry(f"https://{HOST}/team/ops.git") is None
