"""P2P distribution (components/dragonfly.py) and Harbor's preheat (components/harbor_preheat.py).

The prod plan (EKS, Dragonfly on) carries both workload clusters' Dragonfly; the dev stack turns it
off. The preheat policy's dynamic provider runs against a loopback stand-in of Harbor's preheat API
(the handlers of goharbor/harbor src/server/v2.0/handler/preheat.go: paths, basic auth, JSON
strings for filters and trigger), over TLS it verifies.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import alerting, dragonfly
from components.data_stores import Postgres, Redis, ServiceStores
from components.harbor_preheat import PreheatPolicyProvider
from components.tenant_registry import RELEASE_TAGS
from platformctl.render import Render, read_stack_file
from stacks.config import ConfigError, load_platform_config
from tests.certs import Tls, server_context
from tests.test_delivery_attacks import Network
from tests.loopback import JsonHandler, LoopbackServer

ROOT = Path(__file__).resolve().parent.parent
WORKLOAD = ("dev", "prod")


def resources(plan: dict[str, Any], type_suffix: str) -> list[dict[str, Any]]:
    return [r for r in plan["resources"] if r["type"].endswith(type_suffix)]


def named(plan: dict[str, Any], name: str, type_suffix: str = "") -> dict[str, Any]:
    [found] = [r for r in plan["resources"] if r["name"] == name and r["type"].endswith(type_suffix)]
    return found


def tenants(stack: str) -> list[str]:
    return [t["name"] for t in yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]["platform:tenants"]]


def test_dragonfly_runs_on_the_workload_clusters_only_where_enabled(renders: dict[str, Render]) -> None:
    releases = {stack: {r["cluster"] for r in resources(renders[stack].plan, "Release") if r["inputs"]["chart"] == "dragonfly"} for stack in renders}
    assert releases == {"dev": set(), "prod": set(WORKLOAD)}
    assert not resources(renders["dev"].plan, "PreheatInstance") and not resources(renders["dev"].plan, "PreheatPolicy")


@pytest.mark.parametrize("cluster", WORKLOAD)
def test_the_bundled_stores_are_off_and_the_manager_reads_the_platforms(prod: dict[str, Any], cluster: str) -> None:
    release = named(prod, f"{cluster}-dragonfly", "Release")
    values = release["inputs"]["values"]
    assert release["secretPaths"] == [], "a secret in the values makes them unreadable in the plan"
    assert values["mysql"] == {"enable": False} and values["redis"] == {"enable": False}
    kinds = {(o["kind"], o["metadata"]["name"]) for o in release["rendered"]}
    assert not any("mysql" in name or "redis" in name for _, name in kinds)
    images = [c["image"] for o in release["rendered"] if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet")
              for c in [*o["spec"]["template"]["spec"].get("initContainers", []), *o["spec"]["template"]["spec"]["containers"]]]
    assert images and all(i.startswith("harbor.platform.example.com/approved/docker.io/") for i in images), images
    assert not any("bitnami" in i for i in images)
    # The manager and the scheduler read the Secret the platform writes, by their --config variable.
    for kind, component in (("Deployment", "manager"), ("StatefulSet", "scheduler")):
        [obj] = [o for o in release["rendered"] if o["kind"] == kind and o["metadata"]["name"] == f"dragonfly-{component}"]
        spec = obj["spec"]["template"]["spec"]
        [container] = [c for c in spec["containers"] if c["name"] == component]
        assert {"name": f"{component.upper()}_CONFIG", "value": f"{dragonfly.CONFIG_DIR}/{component}.yaml"} in container["env"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["platform-config"]["secret"]["secretName"] == dragonfly.CONFIG_SECRET
        assert {"name": "platform-config", "mountPath": dragonfly.CONFIG_DIR, "readOnly": True} in container["volumeMounts"]
    # That Secret is declared on the same cluster, secret, and waits for the stores.
    secret = named(prod, f"{cluster}-dragonfly-config", "Secret")
    assert secret["cluster"] == cluster and secret["inputs"]["metadata"]["name"] == dragonfly.CONFIG_SECRET
    assert set(secret["inputs"]["stringData"].values()) == {"[secret]"}
    rds = named(prod, f"{cluster}-dragonfly-data-postgres", "Instance")
    assert rds["inputs"]["multiAz"] is True and rds["inputs"]["storageEncrypted"] is True
    assert rds["urn"] in release["dependsOn"]


@pytest.mark.parametrize("cluster", WORKLOAD)
def test_every_node_mirrors_harbor_through_dfdaemon(prod: dict[str, Any], cluster: str) -> None:
    release = named(prod, f"{cluster}-dragonfly", "Release")
    [dfinit] = [o for o in release["rendered"] if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "dragonfly-dfinit"]
    containerd = yaml.safe_load(next(iter(dfinit["data"].values())))["containerRuntime"]["containerd"]
    assert containerd["proxyAllRegistries"] is False
    [daemonset] = [o for o in release["rendered"] if o["kind"] == "DaemonSet"]
    pod = daemonset["spec"]["template"]["spec"]
    assert not [c["name"] for c in [*pod["initContainers"], *pod["containers"]] if (c.get("securityContext") or {}).get("privileged")]
    assert [(r["hostNamespace"], r["serverAddr"], r["skipVerify"]) for r in containerd["registries"]] == [
        ("harbor.platform.example.com", "https://harbor.platform.example.com", False)
    ]
    [client] = [o for o in release["rendered"] if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "dragonfly-client"]
    assert yaml.safe_load(next(iter(client["data"].values())))["proxy"]["registryMirror"]["addr"] == "https://harbor.platform.example.com"


@pytest.mark.parametrize("cluster", WORKLOAD)
def test_harbor_reaches_only_the_preheat_api_of_each_manager(prod: dict[str, Any], cluster: str) -> None:
    ingress = named(prod, f"{cluster}-dragonfly-preheat-api", "Ingress")
    [rule] = ingress["inputs"]["spec"]["rules"]
    assert rule["host"] == f"dragonfly.{cluster}.apps.example.net"
    assert [(p["path"], p["pathType"]) for p in rule["http"]["paths"]] == [("/healthy", "Exact"), ("/oapi/v1/jobs", "Prefix")]
    assert {p["backend"]["service"]["name"] for p in rule["http"]["paths"]} == {dragonfly.MANAGER}
    instance = named(prod, f"{cluster}-dragonfly-preheat", "PreheatInstance")
    inputs = instance["inputs"]
    assert (inputs["vendor"], inputs["endpoint"], inputs["authMode"], inputs["token"], inputs["insecure"]) == (
        "dragonfly", f"https://dragonfly.{cluster}.apps.example.net", "OAUTH", "[secret]", False
    )
    assert instance["provider"].endswith("::harbor-harbor")


def test_the_approved_project_gets_a_preheat_policy_per_cluster_and_no_tenant_project_one(prod: dict[str, Any]) -> None:
    """Preheat warms what goes peer to peer, the `approved` project's blobs (dragonfly.approved_blobs); a tenant
    project's never do (tests/test_p2p_attacks.py), so a policy there would only fill the seed peers."""
    policies = {r["name"]: r for r in resources(prod, "PreheatPolicy")}
    assert set(policies) == {f"approved-preheat-{c}" for c in WORKLOAD}
    assert not {r["inputs"]["project"] for r in policies.values()} & set(tenants("prod"))
    [project] = [r for r in resources(prod, "harbor:index/project:Project") if r["inputs"]["name"] == "approved"]
    for cluster in WORKLOAD:
        policy = policies[f"approved-preheat-{cluster}"]
        inputs = policy["inputs"]
        assert (inputs["project"], inputs["instance"], inputs["tags"], inputs["password"]) == (
            "approved", f"dragonfly-{cluster}", "**", "[secret]"
        )
        assert inputs["harbor_url"] == "https://harbor.platform.example.com"
        assert named(prod, f"{cluster}-dragonfly-preheat")["urn"] in policy["dependsOn"]
        assert project["urn"] in policy["dependsOn"]


def test_dragonflys_credentials_are_in_the_inventory(prod: dict[str, Any]) -> None:
    entries = {e["what"]: e for e in prod["outputs"]["credentials"]}
    for cluster in WORKLOAD:
        for what, resource in (
            (f"Dragonfly on {cluster} PostgreSQL password", f"{cluster}-dragonfly-data-postgres-password"),
            (f"Dragonfly on {cluster} Redis AUTH token", f"{cluster}-dragonfly-data-redis-token"),
            (f"Dragonfly manager JWT signing key on {cluster}", f"{cluster}-dragonfly-jwt-key"),
            (f"Dragonfly preheat token for Harbor on {cluster}", f"{cluster}-dragonfly-preheat"),
            (f"Dragonfly console root password on {cluster}", f"{cluster}-dragonfly-root-password"),
        ):
            assert entries[what]["resources"] == [resource], what
        assert entries[f"Dragonfly preheat token for Harbor on {cluster}"]["category"] == "external"


def stores(tls: bool) -> ServiceStores:
    return ServiceStores(
        postgres=Postgres(
            host="db", port=5432, secret="dragonfly-postgres", database="dragonfly", username="dragonfly", ssl_mode="require",  # type: ignore[arg-type]
            password=None,  # type: ignore[arg-type]
        ),
        redis=Redis(host="cache", port=6379, secret="dragonfly-redis", tls=tls, token=None),  # type: ignore[arg-type]
        checksum=None, ready=[],  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("tls", [True, False])
def test_the_manager_and_scheduler_configs_point_at_the_platforms_stores(tls: bool) -> None:
    files = dragonfly.config_files(stores(tls), "pw", "token", "jwt", "db.internal", "cache.internal")
    manager, scheduler = yaml.safe_load(files["manager.yaml"]), yaml.safe_load(files["scheduler.yaml"])
    database = manager["database"]
    assert database["type"] == "postgres"
    assert database["postgres"] == {
        "host": "db.internal", "port": 5432, "user": "dragonfly", "password": "pw", "dbname": "dragonfly",
        "sslMode": "require", "timezone": "UTC", "migrate": True,
    }
    assert manager["auth"]["jwt"]["key"] == "jwt"
    for redis in (database["redis"], scheduler["database"]["redis"], scheduler["job"]["redis"]):
        assert redis["addrs"] == ["cache.internal:6379"] and redis["password"] == "token"
        assert ("tls" in redis) is tls
    assert scheduler["manager"]["addr"] == f"{dragonfly.MANAGER}.{dragonfly.NAMESPACE}.svc.cluster.local:{dragonfly.GRPC_PORT}"


def _prod_with(services: dict[str, Any]) -> dict[str, str]:
    raw, _ = read_stack_file(ROOT / "Pulumi.prod.yaml")
    raw = dict(raw)
    current = json.loads(raw["platform:services"])
    raw["platform:services"] = json.dumps({**current, **services})
    return raw


def test_dragonfly_without_the_tenants_ingress_is_refused_naming_the_keys() -> None:
    raw = _prod_with({"workloadIngress": {"enabled": False}})
    _, secrets = read_stack_file(ROOT / "Pulumi.prod.yaml")
    with pytest.raises(ConfigError) as caught:
        load_platform_config(raw, stack="prod", source="Pulumi.prod.yaml", secret_keys=secrets)
    assert "platform:services" in str(caught.value)
    assert "dragonfly.enabled must be false while workloadIngress is disabled" in str(caught.value)


def test_an_unknown_preheat_cluster_is_refused_naming_the_key() -> None:
    raw = _prod_with({"dragonfly": {"preheatTokens": {"staging": "x"}}})
    _, secrets = read_stack_file(ROOT / "Pulumi.prod.yaml")
    with pytest.raises(ConfigError) as caught:
        load_platform_config(raw, stack="prod", source="Pulumi.prod.yaml", secret_keys=secrets)
    assert "platform:services.dragonfly.preheatTokens.staging" in str(caught.value)


def test_an_archive_key_on_eks_clusters_is_refused_naming_the_key() -> None:
    """On EKS the manager's database is RDS with its automated backups: no archives, no key to hold."""
    raw = _prod_with({"dragonfly": {"archiveKeys": {"dev": {"accessKeyId": "prod-dragonfly-dev", "secretAccessKey": "placeholder"}}}})
    _, secrets = read_stack_file(ROOT / "Pulumi.prod.yaml")
    with pytest.raises(ConfigError) as caught:
        load_platform_config(raw, stack="prod", source="Pulumi.prod.yaml", secret_keys=secrets | {"platform:services"})
    assert any(p.startswith("platform:services.dragonfly.archiveKeys.dev: no such backup writer on this stack; allowed: unset")
               for p in caught.value.problems), caught.value.problems


# --- the preheat policy's provider against Harbor's API ------------------------------------


class FakePreheatApi(LoopbackServer):
    """Harbor's preheat endpoints for one admin, one instance and the projects' policies."""

    def __init__(self, tls: Tls, password: str):
        self.tls, self.password = tls, password
        self.policies: dict[tuple[str, str], dict[str, Any]] = {}
        self.lock = threading.Lock()

    def tls_context(self):
        return server_context(self.tls)

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        class Handler(JsonHandler):
            state: FakePreheatApi

            def _handle(self) -> None:
                expected = "Basic " + base64.b64encode(f"admin:{self.state.password}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    return self._reply(401, {"errors": [{"code": "UNAUTHORIZED"}]})
                parts = self.path.removeprefix("/api/v2.0/").split("/")
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                with self.state.lock:
                    if parts[:3] == ["p2p", "preheat", "instances"] and self.command == "GET":
                        return self._reply(200, {"id": 7, "name": parts[3]}) if parts[3] == "dragonfly-prod" else self._reply(404)
                    if parts[0] != "projects" or parts[2:4] != ["preheat", "policies"]:
                        return self._reply(404)
                    project, policies = parts[1], self.state.policies
                    key = (project, parts[4]) if len(parts) > 4 else None
                    if self.command == "POST" and key is None:
                        policies[(project, body["name"])] = {**body, "id": len(policies) + 1}
                        return self._reply(201)
                    if key not in policies:
                        return self._reply(404)
                    if self.command == "GET":
                        return self._reply(200, policies[key])
                    if self.command == "PUT":
                        assert body["id"] == policies[key]["id"]
                        policies[key] = body
                        return self._reply(200)
                    if self.command == "DELETE":
                        del policies[key]
                        return self._reply(200)
                return self._reply(405)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        return Handler


@pytest.fixture()
def harbor_api(loopback_tls: Tls) -> Iterator[FakePreheatApi]:
    with FakePreheatApi(loopback_tls, "s3cret") as api:
        yield api


def props(api: FakePreheatApi, tls: Tls, **extra: Any) -> dict[str, Any]:
    return {
        "harbor_url": api.url, "ca_bundle": tls.ca_pem, "username": "admin", "password": "s3cret",
        "project": "payments", "instance": "dragonfly-prod", "name": "p2p-prod", "tags": RELEASE_TAGS, **extra,
    }


def test_the_policy_provider_creates_updates_and_deletes_harbors_policy(harbor_api: FakePreheatApi, loopback_tls: Tls) -> None:
    provider = PreheatPolicyProvider()
    created = provider.create(props(harbor_api, loopback_tls))
    policy = harbor_api.policies[("payments", "p2p-prod")]
    assert created.id == "payments/p2p-prod" and policy["provider_id"] == 7 and policy["enabled"] is True
    assert json.loads(policy["trigger"]) == {"type": "event_based", "trigger_setting": {}}
    assert json.loads(policy["filters"]) == [{"type": "repository", "value": "**"}, {"type": "tag", "value": RELEASE_TAGS}]
    news = props(harbor_api, loopback_tls, tags="v*")
    assert provider.diff(created.id, created.outs, news).changes
    provider.update(created.id, created.outs, news)
    assert json.loads(harbor_api.policies[("payments", "p2p-prod")]["filters"])[1] == {"type": "tag", "value": "v*"}
    assert provider.diff(created.id, news, props(harbor_api, loopback_tls, project="orders")).replaces == ["project"]
    provider.delete(created.id, news)
    provider.delete(created.id, news)  # already gone: nothing to do
    assert not harbor_api.policies


def test_the_policy_provider_verifies_tls_and_says_what_harbor_refused(harbor_api: FakePreheatApi, loopback_tls: Tls) -> None:
    provider = PreheatPolicyProvider()
    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
        provider.create(props(harbor_api, loopback_tls, ca_bundle=""))  # the system roots do not know the stub's CA
    with pytest.raises(RuntimeError, match="HTTP 401"):
        provider.create(props(harbor_api, loopback_tls, password="wrong"))
    with pytest.raises(RuntimeError, match="instances/dragonfly-dev: HTTP 404"):
        provider.create(props(harbor_api, loopback_tls, instance="dragonfly-dev"))
    with pytest.raises(ValueError, match="https only"):
        provider.create(props(harbor_api, loopback_tls, harbor_url=harbor_api.url.replace("https", "http")))
    assert not harbor_api.policies


# Each kubeconfig cluster's own key for its manager database's archives, as a stack file sets them.
ARCHIVE_KEYS = {cluster: {"accessKeyId": f"platform-dev-dragonfly-{cluster}-archives",
                          "secretAccessKey": {"secure": f"v1:placeholder-dragonfly-{cluster}-archives"}} for cluster in WORKLOAD}


@pytest.fixture(scope="module")
def kubeconfig_dragonfly_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dev stack (kubeconfig clusters, the platform's own CA) with Dragonfly turned on."""
    doc = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    doc["config"]["platform:services"]["dragonfly"] = {"enabled": True, "archiveKeys": ARCHIVE_KEYS}
    file = tmp_path_factory.mktemp("dragonfly") / "Pulumi.dev.yaml"
    file.write_text(yaml.safe_dump(doc))
    return file


@pytest.fixture(scope="module")
def kubeconfig_dragonfly(kubeconfig_dragonfly_file: Path) -> Render:
    """That stack's render, charts rendered."""
    from platformctl.render import render

    return render(kubeconfig_dragonfly_file, "dev", charts=True)


def test_no_workload_cluster_holds_a_key_the_control_plane_holds(kubeconfig_dragonfly: Render, kubeconfig_dragonfly_file: Path) -> None:
    """A pod or node taken over on a workload cluster, where tenants run, gets every Secret there: none may hold a
    key of the stack that a control-plane Secret holds (in any reviewed format), else it forges or deletes GitLab's
    and Harbor's database archives. Each manager's archives hold the cluster's own key, registered with its holder."""
    from tests.test_backup_writer_attacks import SECRET, fingerprint, holders, stack_config, stack_keys

    keys, plan = stack_keys(kubeconfig_dragonfly_file), kubeconfig_dragonfly.plan
    formats = {made_of for _, made_of in holders(stack_config(kubeconfig_dragonfly_file)).values()}
    held: dict[str, dict[str, set[str]]] = {}  # cluster -> key path -> the Secrets there holding it
    for r in plan["resources"]:
        printed = kubeconfig_dragonfly.fingerprints.get(r["urn"], {}).get("stringData")
        if r["type"] != SECRET or r["cluster"] is None or printed is None:
            continue
        for path, (key_id, secret) in keys.items():
            if any(fingerprint(made_of(key_id, secret)) == printed for made_of in formats):
                held.setdefault(r["cluster"], {}).setdefault(path, set()).add(r["name"])
    for cluster in WORKLOAD:
        shared = {path: names for path, names in held[cluster].items() if path in held["control-plane"]}
        assert not shared, f"{cluster} holds keys the control plane holds: {shared}"
        own = f"platform:services.dragonfly.archiveKeys.{cluster}"
        assert held[cluster].get(own) == {f"{cluster}-dragonfly-data-backup-store"}, held[cluster]
    entries = {e["what"]: e for e in plan["outputs"]["credentials"]}
    for cluster in WORKLOAD:
        entry = entries[f"dragonfly-{cluster}'s own backup key to the object store"]
        assert entry["holder"].startswith(f"Secret dragonfly-system/dragonfly-backup-store on {cluster} ")
        assert f"read, write and delete under postgres/{cluster}/ of the object store's bucket" in entry["scope"]
        assert entry["resources"] == [f"{cluster}-dragonfly-data-backup-store"], entry


def test_on_kubeconfig_clusters_the_manager_gets_cloudnativepg_and_valkey_on_its_own_cluster(kubeconfig_dragonfly: Render) -> None:
    # The dev stack turns Dragonfly off; turned on, each workload cluster runs the operator and its stores.
    plan = kubeconfig_dragonfly.plan
    for cluster in WORKLOAD:
        operator = named(plan, f"{cluster}-cnpg", "Release")
        assert operator["cluster"] == cluster and operator["inputs"]["namespace"] == "cnpg-system"
        database = named(plan, f"{cluster}-dragonfly-data-postgres", ":Cluster")
        assert database["cluster"] == cluster
        assert database["inputs"]["spec"]["backup"]["barmanObjectStore"]["destinationPath"] == f"s3://platform-dev/postgres/{cluster}/dragonfly"
        assert named(plan, f"{cluster}-dragonfly-data-redis", "StatefulSet")["cluster"] == cluster
        assert named(plan, f"{cluster}-dragonfly", "Release")["cluster"] == cluster
    # No preheat token in the dev stack: P2P pulls, nothing for Harbor to preheat with.
    assert not resources(plan, "PreheatInstance") and not resources(plan, "PreheatPolicy")


def test_the_held_namespace_still_lets_the_operator_and_the_manager_reach_the_in_cluster_stores(kubeconfig_dragonfly: Render) -> None:
    """On kubeconfig clusters the manager's PostgreSQL (CloudNativePG) and Valkey run in Dragonfly's namespace, which
    the platform holds: CloudNativePG's operator still reaches each instance's manager (8000), never PostgreSQL (it opens
    no SQL connection: data_stores.operator_admit),
    the manager and the scheduler their stores, and no pod of another namespace but the operator reaches the stores;
    the database takes the manager alone, its one client (scheduler.yaml names Redis only)."""
    checked = 0
    for cluster in WORKLOAD:
        network = Network(kubeconfig_dragonfly.plan, cluster)
        present = {p.what: p for p in network.pods}
        database, redis = present[f"{dragonfly.NAMESPACE}/Cluster/dragonfly-postgres"], present[f"{dragonfly.NAMESPACE}/StatefulSet/dragonfly-redis"]
        operator = present["cnpg-system/Deployment/cnpg-cloudnative-pg"]
        manager, scheduler = present[f"{dragonfly.NAMESPACE}/Deployment/{dragonfly.MANAGER}"], present[f"{dragonfly.NAMESPACE}/StatefulSet/dragonfly-scheduler"]
        scraper = present[f"{alerting.NAMESPACE}/Deployment/{alerting.PROMETHEUS_RELEASE}-server"]  # its exporter (WAL archiving alerts)
        needed = [(operator, database, 8000), (manager, database, 5432), (manager, redis, 6379), (scheduler, redis, 6379),
                  (scraper, database, alerting.POSTGRES_PORT)]
        assert not [(c.what, s.what, port) for c, s, port in needed if not network.reaches(c, s, port)]
        assert not network.reaches(operator, database, 5432)
        others = [(p.what, s.what, port) for p in network.pods if p.namespace != dragonfly.NAMESPACE and p != operator
                  for s in (database, redis) for _, port, protocol in s.ports if network.reaches(p, s, port, protocol)
                  and (p, s, port) != (scraper, database, alerting.POSTGRES_PORT)]
        assert not others, others
        seed = present[f"{dragonfly.NAMESPACE}/StatefulSet/dragonfly-seed-client"]  # which fetches what peers and URLs send it
        assert not network.reaches(seed, database, 5432) and not network.reaches(scheduler, database, 5432)
        checked += 1
    assert checked == 2


@pytest.mark.parametrize("cluster", WORKLOAD)
def test_where_harbors_certificate_is_the_platform_cas_dfdaemon_trusts_that_ca(kubeconfig_dragonfly: Render, cluster: str) -> None:
    plan = kubeconfig_dragonfly.plan
    trusted = named(plan, f"{cluster}-dragonfly-harbor-ca", "ConfigMap")
    root = named(plan, "platform-tls-ca", "SelfSignedCert")  # the control plane's CA, which signs Harbor's certificate
    assert trusted["cluster"] == cluster and trusted["inputs"]["metadata"]["name"] == dragonfly.HARBOR_CA
    assert root["urn"] in trusted["dependsOn"] and "mock-cert-" in trusted["inputs"]["data"]["ca.crt"]
    release = named(plan, f"{cluster}-dragonfly", "Release")
    assert trusted["urn"] in release["dependsOn"]
    # What the chart makes of it: the CA mounted in dfdaemon's pods, and named in its configuration.
    objects = [yaml.safe_load(text) for text in kubeconfig_dragonfly.manifests[release["urn"]]]
    daemon = next(o for o in objects if o["kind"] == "DaemonSet" and o["metadata"]["name"] == "dragonfly-client")
    pod = daemon["spec"]["template"]["spec"]
    assert {"name": "harbor-ca", "configMap": {"name": dragonfly.HARBOR_CA}} in pod["volumes"]
    [client] = [c for c in pod["containers"] if c["name"] == "client"]
    assert {"name": "harbor-ca", "mountPath": dragonfly.HARBOR_CA_DIR, "readOnly": True} in client["volumeMounts"]
    assert {"storage", "logs"} <= {v["name"] for v in pod["volumes"]}  # the chart's own volumes stay
    config = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "dragonfly-client")
    mirror = yaml.safe_load(config["data"]["dfdaemon.yaml"])["proxy"]["registryMirror"]
    assert mirror["addr"] == "https://harbor.dev.platform.example.com" and mirror["cert"] == f"{dragonfly.HARBOR_CA_DIR}/ca.crt"


@pytest.mark.parametrize("cluster", WORKLOAD)
def test_where_harbors_certificate_is_public_dfdaemon_trusts_the_system_roots(prod: dict[str, Any], cluster: str) -> None:
    release = named(prod, f"{cluster}-dragonfly", "Release")
    mirror = release["inputs"]["values"]["client"]["config"]["proxy"]["registryMirror"]
    assert mirror["addr"] == "https://harbor.platform.example.com" and mirror["cert"] == dragonfly.SYSTEM_ROOTS
    assert not [r for r in resources(prod, "ConfigMap") if r["name"] == f"{cluster}-dragonfly-harbor-ca"]


def test_dragonfly_on_kubeconfig_clusters_without_an_object_store_is_refused_naming_the_key() -> None:
    raw, secrets = read_stack_file(ROOT / "Pulumi.dev.yaml")
    raw = {k: v for k, v in raw.items() if k != "platform:objectStore"}
    raw["platform:services"] = json.dumps({**json.loads(raw["platform:services"]), "dragonfly": {"enabled": True}})
    with pytest.raises(ConfigError) as caught:
        load_platform_config(raw, stack="dev", source="Pulumi.dev.yaml", secret_keys=secrets)
    for cluster in WORKLOAD:
        assert any(p.startswith("platform:objectStore: required while services.dragonfly is enabled on the kubeconfig "
                                f"cluster clusters.{cluster}") for p in caught.value.problems), caught.value.problems


@pytest.mark.parametrize("cluster", WORKLOAD)
def test_a_drain_keeps_all_but_one_replica_of_each_tier(prod: dict[str, Any], cluster: str) -> None:
    release = named(prod, f"{cluster}-dragonfly", "Release")
    replicated = [o for o in release["rendered"] if o["kind"] in ("Deployment", "StatefulSet")]
    budgets = [r for r in resources(prod, "PodDisruptionBudget") if r["cluster"] == cluster and r["name"].startswith(f"{cluster}-dragonfly-")]
    assert len(budgets) == len(replicated) == 3
    for obj in replicated:
        assert obj["spec"]["replicas"] == 3
        labels = obj["spec"]["template"]["metadata"]["labels"]
        [budget] = [b for b in budgets if b["inputs"]["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert budget["inputs"]["spec"]["maxUnavailable"] == 1


# --- the console's seeded root password ---------------------------------------------------


@pytest.mark.parametrize("cluster", WORKLOAD)
def test_a_job_replaces_the_seeded_root_password_with_a_generated_secret(prod: dict[str, Any], cluster: str) -> None:
    name = f"{cluster}-dragonfly-root-password"
    job, secret = named(prod, name, "batch/v1:Job"), named(prod, name, "core/v1:Secret")
    assert named(prod, name, "RandomPassword")["inputs"]["length"] == 20  # the manager takes 8 to 20 characters
    assert secret["inputs"]["metadata"]["name"] == dragonfly.ROOT_PASSWORD_SECRET
    assert secret["inputs"]["stringData"] == {"password": "[secret]"} and secret["secretPaths"] == ["stringData"]
    [container] = job["inputs"]["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("harbor.") and container["image"].endswith(dragonfly.BUSYBOX_IMAGE.ref)
    assert "/approved/" in container["image"]
    [password] = [e for e in container["env"] if e["name"] == "ROOT_PASSWORD"]
    assert password == {"name": "ROOT_PASSWORD", "valueFrom": {"secretKeyRef": {"name": dragonfly.ROOT_PASSWORD_SECRET, "key": "password"}}}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    release = next(r for r in resources(prod, "Release") if r["cluster"] == cluster and r["inputs"]["chart"] == "dragonfly")
    assert {release["urn"], secret["urn"]} <= set(job["dependsOn"])


@pytest.mark.parametrize("cluster", WORKLOAD)
def test_the_managers_rest_api_answers_only_its_namespace_and_the_tenants_ingress(renders: dict[str, Render], cluster: str) -> None:
    """Its REST port (open sign-up) takes Dragonfly's own pods and Traefik, which routes the preheat paths, and of
    Dragonfly's pods only the root-password Job's egress reaches it (the tiers call its gRPC); its gRPC
    takes the nodes (an address outside the pod network), where dfdaemon asks it for schedulers. The policies'
    selectors are what the chart labels the pods with: `Network` reads the labels from the real render."""
    network = Network(renders["prod"].plan, cluster)
    manager = network.pod(f"{dragonfly.NAMESPACE}/Deployment/{dragonfly.MANAGER}")
    reaching = {p.what for p in network.pods if p != manager and network.reaches(p, manager, dragonfly.REST_PORT)}
    assert reaching == {"apps-ingress/Deployment/traefik", f"{dragonfly.NAMESPACE}/Job/{cluster}-dragonfly-root-password"}
    node = ipaddress.ip_address("10.40.1.10")
    assert network.takes(manager, node, dragonfly.GRPC_PORT) and not network.takes(manager, node, dragonfly.REST_PORT)


class FakeManagerUsers(LoopbackServer):
    """The manager's two user endpoints the Job calls (dragonfly v2.5.0 manager/router/router.go,
    handlers/user.go, middlewares/error.go): `POST /api/v1/users/:id/reset_password` with the old
    password and no session, `POST /api/v1/users/signin`; 401 for a wrong password, 422 for a
    password outside 8 to 20 characters."""

    def __init__(self, root_password: str, watched: str = ""):
        self.root_password = root_password
        self.watched = watched  # a password no process's command line may show while the manager is asked
        self.exposed: list[str] = []

    def _command_lines_showing(self, secret: str) -> list[str]:
        """Every process's command line holding `secret` (what `ps` shows anyone on the node)."""
        found = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue  # gone meanwhile
            if secret in text:
                found.append(text)
        return found

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        class Handler(BaseHTTPRequestHandler):
            state: FakeManagerUsers

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                if self.state.watched:  # the client is still running while it waits for this answer
                    self.state.exposed += self.state._command_lines_showing(self.state.watched)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.headers.get("Content-Type") != "application/json":
                    status = 415
                elif self.path == "/api/v1/users/1/reset_password":
                    new = body.get("new_password", "")
                    status = 422 if not 8 <= len(new) <= 20 else 401 if body.get("old_password") != self.state.root_password else 200
                    if status == 200:
                        self.state.root_password = new
                elif self.path == "/api/v1/users/signin":
                    status = 200 if (body.get("name"), body.get("password")) == ("root", self.state.root_password) else 401
                else:
                    status = 404
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler


@pytest.fixture()
def busybox_bin(tmp_path: Path) -> Path:
    """A PATH holding only busybox's sh and wget, the commands the Job's image gives its script."""
    busybox = shutil.which("busybox")
    if busybox is None:
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)("busybox not installed (.ci/install --tests)")
    for applet in ("sh", "wget"):
        (tmp_path / applet).symlink_to(busybox)
    return tmp_path


def replace_seeded_root(manager: str, password: str, bin_dir: Path) -> subprocess.CompletedProcess[str]:
    """The Job's script, run as the Job runs it."""
    host, port = manager.removeprefix("http://").split(":")
    return subprocess.run(
        [str(bin_dir / "sh"), "-c", dragonfly.REPLACE_SEEDED_ROOT_SH],
        env={"PATH": str(bin_dir), "MANAGER": host, "REST_PORT": port, "ROOT_PASSWORD": password},
        capture_output=True, text=True, timeout=60, check=False,
    )


@pytest.mark.parametrize(("before", "after", "status"), [
    ("dragonfly", "Platform0Generated20", 0),  # the seeded password: replaced
    ("Platform0Generated20", "Platform0Generated20", 0),  # ours already (the Job ran before): nothing to do
    ("SomeoneElsesPassword", "SomeoneElsesPassword", 1),  # changed by hand: the Job says so and fails
])
def test_the_job_replaces_only_the_seeded_password(before: str, after: str, status: int, busybox_bin: Path) -> None:
    with FakeManagerUsers(before, watched="Platform0Generated20") as manager:
        done = replace_seeded_root(manager.url, "Platform0Generated20", busybox_bin)
    assert done.returncode == status, done.stderr
    assert manager.root_password == after
    # The password travels on stdin, never in a command line.
    assert manager.exposed == []


def test_the_job_fails_while_the_manager_does_not_answer(busybox_bin: Path) -> None:
    with FakeManagerUsers("dragonfly") as manager:
        url = manager.url
    done = replace_seeded_root(url, "Platform0Generated20", busybox_bin)
    assert done.returncode == 1 and "did not answer" in done.stderr
