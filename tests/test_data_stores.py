"""GitLab's and Harbor's data stores, and the replicated stateless tiers, on both stacks' plans.

Prod (EKS): RDS PostgreSQL and ElastiCache Redis, Multi-AZ, encrypted, backed up, protected, in
the control plane's private subnets behind security groups that admit its nodes only. Dev
(kubeconfig): CloudNativePG clusters with object-store backups and Valkey. Neither runs the
charts' bundled PostgreSQL or Redis, and no Bitnami image renders anywhere. In prod every
stateless tier runs at least two replicas with a PodDisruptionBudget, spread over zones.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from pulumi.runtime.mocks import MockResourceArgs

from components.data_stores import BACKUP_SCHEDULE, PASSWORD_KEY, REDIS_PASSWORD_KEY
from components.gitlab import DATA_STORES_CHECKSUM_ANNOTATION
from components.versions import CNPG_POSTGRES_IMAGE, VALKEY_IMAGE
from platformctl.helm_render import RELEASE_TYPE, object_namespace
from platformctl.mocks import REDACTED, PlatformMocks
from platformctl.render import ROOT, Render, read_stack_file
from stacks.config import ConfigError, load_platform_config
from tests.test_helm_render import containers, pod_specs

SERVICES = ("gitlab", "harbor")
# Dragonfly's own stores, in each workload cluster's VPC (tests/test_dragonfly.py, tests/test_network.py).
WORKLOAD_STORES = ("dev-", "prod-")
ZONE = "topology.kubernetes.io/zone"


def resources(plan: dict, rtype: str) -> list[dict]:
    return [r for r in plan["resources"] if r["type"] == rtype]


def release(plan: dict, chart: str) -> dict:
    (found,) = [r for r in resources(plan, RELEASE_TYPE) if r["inputs"]["chart"] == chart and r["cluster"] == "control-plane"]
    return found


def dig(values: Any, path: str) -> Any:
    for key in path.split("."):
        values = values[key]
    return values


def by_name(plan: dict, rtype: str) -> dict[str, dict]:
    return {r["name"]: r for r in resources(plan, rtype)}


def stack_config(stack: str) -> dict:
    raw, _ = read_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    return {key.split(":", 1)[1]: json.loads(value) if value[:1] in "{[" else value for key, value in raw.items()}


# --- no bundled stores, no Bitnami --------------------------------------------------------------------


def test_the_charts_run_no_database_or_redis_of_their_own(renders: dict[str, Render]) -> None:
    for stack, result in renders.items():
        gitlab, harbor = release(result.plan, "gitlab"), release(result.plan, "harbor")
        values = gitlab["inputs"]["values"]
        assert values["postgresql"] == {"install": False} and values["redis"] == {"install": False}, stack
        assert dig(harbor["inputs"]["values"], "database.type") == "external" == dig(harbor["inputs"]["values"], "redis.type")
        for chart in (gitlab, harbor):
            workloads = [o["metadata"]["name"] for o in chart.get("rendered", []) if o["kind"] in ("StatefulSet", "Deployment")]
            assert workloads, f"{stack} {chart['name']}: nothing rendered"
            assert not [w for w in workloads if "postgres" in w or "redis" in w or w.endswith("-database")], (stack, workloads)


def _images(result: Render) -> Iterator[tuple[str, str]]:
    """(where, image) of every container the plan declares or a chart renders."""
    for resource in result.plan["resources"]:
        objects = [resource["inputs"], *resource.get("rendered", [])]
        for obj in objects:
            for container in containers(obj) if isinstance(obj, dict) and "kind" in obj else ():
                yield f"{resource['name']} {obj['kind']}/{obj['metadata'].get('name')}", container.get("image", "")
        if resource["type"] == "kubernetes:postgresql.cnpg.io/v1:Cluster":
            yield resource["name"], resource["inputs"]["spec"]["imageName"]


def test_no_bitnami_image_anywhere(renders: dict[str, Render]) -> None:
    for stack, result in renders.items():
        images = list(_images(result))
        assert len(images) > 50, stack
        assert not [i for i in images if "bitnami" in i[1]], stack
        # Nor anywhere in a value the charts could turn into one.
        assert "bitnamilegacy" not in json.dumps(result.plan), stack


# --- prod: managed stores -----------------------------------------------------------------------------


def test_each_service_has_a_multi_az_encrypted_backed_up_rds_instance(prod: dict) -> None:
    retention = stack_config("prod")["services"]["dataStores"]["backupRetentionDays"]
    instances = {n: r for n, r in by_name(prod, "aws:rds/instance:Instance").items() if not n.startswith(WORKLOAD_STORES)}
    key = by_name(prod, "aws:kms/key:Key")["data-stores-key"]
    assert key["inputs"]["enableKeyRotation"] is True and key["options"]["protect"] is True
    assert sorted(instances) == [f"{s}-data-postgres" for s in SERVICES]
    for service in SERVICES:
        rds = instances[f"{service}-data-postgres"]
        inputs = rds["inputs"]
        assert inputs["engine"] == "postgres" and inputs["multiAz"] is True
        assert inputs["storageEncrypted"] is True and key["urn"] in rds["dependsOn"]
        assert inputs["backupRetentionPeriod"] == retention >= 7
        assert inputs["deletionProtection"] is True and inputs["skipFinalSnapshot"] is False
        # Named for this life of the stack (a suffix generated with its state): a rebuilt stack's
        # destroy does not collide with the snapshot the last one left.
        (suffix,) = [r for r in resources(prod, "random:index/randomId:RandomId") if r["name"] == f"{service}-data-final-snapshot"]
        assert suffix["urn"] in rds["dependsOn"] and inputs["finalSnapshotIdentifier"].startswith(f"{service}-data-final-")
        assert len(inputs["finalSnapshotIdentifier"]) > len(f"{service}-data-final-")
        assert inputs["copyTagsToSnapshot"] is True and inputs["deleteAutomatedBackups"] is False
        assert inputs["publiclyAccessible"] is False and rds["options"]["protect"] is True
        assert inputs["password"] == REDACTED and "password" in rds["secretPaths"]
        assert inputs["dbName"] == inputs["username"] == service


def test_each_service_has_a_redis_replication_group_that_fails_over(prod: dict) -> None:
    retention = stack_config("prod")["services"]["dataStores"]["backupRetentionDays"]
    groups = {n: r for n, r in by_name(prod, "aws:elasticache/replicationGroup:ReplicationGroup").items() if not n.startswith(WORKLOAD_STORES)}
    assert sorted(groups) == [f"{s}-data-redis" for s in SERVICES]
    for group in groups.values():
        inputs = group["inputs"]
        assert inputs["automaticFailoverEnabled"] is True and inputs["multiAzEnabled"] is True
        assert inputs["numCacheClusters"] >= 2
        assert inputs["atRestEncryptionEnabled"] is True and inputs["transitEncryptionEnabled"] is True
        assert inputs["kmsKeyId"].startswith("arn:aws:kms:")
        assert inputs["authToken"] == REDACTED and "authToken" in group["secretPaths"]
        assert inputs["authTokenUpdateStrategy"] == "ROTATE"
        assert inputs["snapshotRetentionLimit"] == retention and group["options"]["protect"] is True
        assert inputs["finalSnapshotIdentifier"].startswith(f"{group['name']}-final-")  # this life's suffix, as RDS's


def test_only_the_control_plane_nodes_reach_the_stores_in_its_private_subnets(prod: dict) -> None:
    groups = by_name(prod, "aws:ec2/securityGroup:SecurityGroup")
    ports = {"data-stores-postgres": 5432, "data-stores-redis": 6379}
    rules = [r for r in resources(prod, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule") if r["name"] in ports]
    assert sorted(r["name"] for r in rules) == sorted(ports)
    (control_plane,) = [r for r in resources(prod, "aws:eks/cluster:Cluster") if r["name"] == "control-plane"]
    # The security group EKS puts on the control plane's managed nodes, as the mocks model it.
    _, outputs = PlatformMocks().new_resource(MockResourceArgs(control_plane["type"], control_plane["name"], control_plane["inputs"]))
    nodes = outputs["vpcConfig"]["clusterSecurityGroupId"]
    for rule in rules:
        inputs = rule["inputs"]
        assert inputs["fromPort"] == inputs["toPort"] == ports[rule["name"]] and inputs["ipProtocol"] == "tcp"
        assert inputs["referencedSecurityGroupId"] == nodes and "cidrIpv4" not in inputs  # never a CIDR
        assert groups[rule["name"]]["inputs"]["vpcId"].startswith("control-plane-vpc-")  # the control plane's VPC
    for rtype in ("aws:rds/subnetGroup:SubnetGroup", "aws:elasticache/subnetGroup:SubnetGroup"):
        (subnets,) = [r for r in resources(prod, rtype) if not r["name"].startswith(WORKLOAD_STORES)]
        ids = subnets["inputs"]["subnetIds"]
        assert len(ids) == 3 and all(i.startswith("control-plane-private-") for i in ids), ids
    for rds in [r for r in resources(prod, "aws:rds/instance:Instance") if not r["name"].startswith(WORKLOAD_STORES)]:
        (group,) = rds["inputs"]["vpcSecurityGroupIds"]
        assert group.startswith("data-stores-postgres-") and groups["data-stores-postgres"]["urn"] in rds["dependsOn"]


def test_the_charts_read_the_managed_stores_through_secrets(prod: dict) -> None:
    secrets = {(r["inputs"]["metadata"]["namespace"], r["inputs"]["metadata"]["name"]): r
               for r in resources(prod, "kubernetes:core/v1:Secret") if r["cluster"] == "control-plane" and "metadata" in r["inputs"]}
    rds = by_name(prod, "aws:rds/instance:Instance")
    for service in SERVICES:
        chart = release(prod, service)
        assert f"{service}-data-postgres" in {d.rsplit("::", 1)[1] for d in chart["dependsOn"]}
        assert chart["secretPaths"] == [], "a secret in the values makes them unreadable in the plan"
        database = secrets[(service, f"{service}-postgres")]
        assert database["inputs"]["stringData"] == {"username": REDACTED, PASSWORD_KEY: REDACTED}
        assert set(secrets[(service, f"{service}-redis")]["inputs"]["stringData"]) == {REDIS_PASSWORD_KEY}
        assert rds[f"{service}-data-postgres"]["urn"] not in database["dependsOn"]  # generated first, then both take it
    gitlab = release(prod, "gitlab")["inputs"]["values"]["global"]
    assert gitlab["psql"]["password"] == {"secret": "gitlab-postgres", "key": PASSWORD_KEY}
    assert gitlab["psql"]["host"].endswith(".rds.amazonaws.com") and gitlab["redis"]["scheme"] == "rediss"
    assert gitlab["redis"]["auth"] == {"secret": "gitlab-redis", "key": REDIS_PASSWORD_KEY}
    harbor = release(prod, "harbor")["inputs"]["values"]
    assert dig(harbor, "database.external.existingSecret") == "harbor-postgres"
    assert dig(harbor, "database.external.sslmode") == "require"
    assert dig(harbor, "redis.external.tlsOptions.enable") is True
    assert dig(harbor, "redis.external.addr").endswith(".cache.amazonaws.com:6379")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_long_running_reader_of_the_stores_restarts_when_their_credentials_change(charted: dict[str, Render], stack: str) -> None:
    """A pod keeps the password it started with: each Deployment or StatefulSet of the charts that
    reads a store's Secret carries the stores' checksum, so a new password rolls it."""
    readers = set()
    for service in SERVICES:
        for obj in release(charted[stack].plan, service)["rendered"]:
            if obj["kind"] not in ("Deployment", "StatefulSet"):
                continue
            template = obj["spec"]["template"]
            if any(f'"{service}-{store}"' in json.dumps(template["spec"]) for store in ("postgres", "redis")):
                readers.add(obj["metadata"]["name"])
                assert DATA_STORES_CHECKSUM_ANNOTATION in template["metadata"].get("annotations", {}), obj["metadata"]["name"]
    assert {"gitlab-webservice-default", "gitlab-sidekiq-all-in-1-v2", "gitlab-toolbox", "gitlab-gitlab-exporter", "harbor-core"} <= readers


def test_store_credentials_are_in_the_inventory(renders: dict[str, Render]) -> None:
    for stack, result in renders.items():
        entries = {e["what"]: e for e in result.plan["outputs"]["credentials"]}
        for title, service in (("GitLab", "gitlab"), ("Harbor", "harbor")):
            for what, resource in ((f"{title} PostgreSQL password", "postgres-password"), (f"{title} Redis AUTH token", "redis-token")):
                entry = entries[what]
                assert entry["category"] == "internal" and entry["issuer"] == entry["holder"] == title
                assert entry["resources"] == [f"{service}-data-{resource}"] and entry["rotation"]
        operator = "service-account tokens of the CloudNativePG operator"
        if stack == "prod":
            assert operator not in entries
        else:
            assert entries[operator]["lifetimeSeconds"] == 3600
            assert entries["CloudNativePG server and replication certificates"]["lifetimeSeconds"] == 90 * 86400
            for service in ("gitlab", "harbor"):  # the archives' own key, not the object store's (tests/test_backup_writer_attacks.py)
                entry = entries[f"postgres-{service}'s own backup key to the object store"]
                assert entry["category"] == "external" and entry["holder"].startswith(f"Secret {service}/{service}-backup-store")
                assert entry["resources"] == [f"{service}-data-backup-store"]


# --- dev: the declared equivalent ---------------------------------------------------------------------


def test_kubeconfig_stacks_run_cloudnativepg_with_object_store_backups(renders: dict[str, Render]) -> None:
    plan = renders["dev"].plan
    config = stack_config("dev")
    store, stores = config["objectStore"], config["services"]["dataStores"]
    operator = release(plan, "cloudnative-pg")
    clusters = by_name(plan, "kubernetes:postgresql.cnpg.io/v1:Cluster")
    backups = by_name(plan, "kubernetes:postgresql.cnpg.io/v1:ScheduledBackup")
    for service in SERVICES:
        cluster = clusters[f"{service}-data-postgres"]
        spec = cluster["inputs"]["spec"]
        assert cluster["inputs"]["metadata"]["namespace"] == service and operator["urn"] in cluster["dependsOn"]
        assert spec["instances"] == stores["sizing"]["replicas"] == 3 and spec["imageName"] == CNPG_POSTGRES_IMAGE.ref
        assert spec["affinity"]["enablePodAntiAffinity"] is True
        assert spec["bootstrap"]["initdb"] == {"database": service, "owner": service, "secret": {"name": f"{service}-postgres"}}
        barman = spec["backup"]["barmanObjectStore"]
        assert barman["destinationPath"] == f"s3://{store['bucket']}/postgres/{service}"
        assert barman["endpointURL"] == store["endpoint"]
        assert spec["backup"]["retentionPolicy"] == f"{stores['backupRetentionDays']}d"
        schedule = backups[f"{service}-data-postgres-daily"]["inputs"]["spec"]
        assert schedule["cluster"] == {"name": f"{service}-postgres"} and schedule["schedule"] == BACKUP_SCHEDULE
        (valkey,) = [r for r in resources(plan, "kubernetes:apps/v1:StatefulSet") if r["name"] == f"{service}-data-redis"]
        (container,) = valkey["inputs"]["spec"]["template"]["spec"]["containers"]
        assert container["image"] == VALKEY_IMAGE.ref


# --- prod: replicated stateless tiers -----------------------------------------------------------------

# (chart, kind, name) of every stateless tier of the control plane.
TIERS = (
    ("argo-cd", "Deployment", "argocd-server"), ("argo-cd", "Deployment", "argocd-repo-server"),
    ("argo-cd", "Deployment", "argocd-applicationset-controller"),
    ("argo-cd", "StatefulSet", "argocd-application-controller"),
    ("argo-cd", "Deployment", "argocd-redis-ha-haproxy"), ("argo-cd", "StatefulSet", "argocd-redis-ha-server"),
    ("harbor", "Deployment", "harbor-core"), ("harbor", "Deployment", "harbor-portal"),
    ("harbor", "Deployment", "harbor-registry"), ("harbor", "Deployment", "harbor-jobservice"),
    ("orchestra", "Deployment", "openunison-orchestra"),
    ("orchestra-login-portal", "Deployment", "ouhtml-orchestra-login-portal"),
    ("gitlab", "Deployment", "gitlab-webservice-default"), ("gitlab", "Deployment", "gitlab-sidekiq-all-in-1-v2"),
    ("traefik", "Deployment", "traefik"),
)


def _budgets(plan: dict) -> list[tuple[str, dict]]:
    """(namespace, PodDisruptionBudget) rendered by a chart or declared by the program, on the control plane."""
    found = []
    for resource in plan["resources"]:
        if resource["cluster"] != "control-plane":
            continue
        if resource["type"] == "kubernetes:policy/v1:PodDisruptionBudget":
            found.append((resource["inputs"]["metadata"]["namespace"], resource["inputs"]))
        for obj in resource.get("rendered", []):
            if obj["kind"] == "PodDisruptionBudget":
                found.append((object_namespace(obj, resource["inputs"]["namespace"]), obj))
    return found


def _replicas(chart: dict, workload: dict) -> int:
    """Its replicas, or the minimum of the HorizontalPodAutoscaler that owns the count (GitLab)."""
    scalers = [o for o in chart["rendered"] if o["kind"] == "HorizontalPodAutoscaler"
               and o["spec"]["scaleTargetRef"]["name"] == workload["metadata"]["name"]]
    return scalers[0]["spec"]["minReplicas"] if scalers else workload["spec"].get("replicas", 1)


def _spread_over_zones(spec: dict) -> bool:
    keys = {c["topologyKey"] for c in spec.get("topologySpreadConstraints") or []}
    anti = (spec.get("affinity") or {}).get("podAntiAffinity") or {}
    for term in anti.get("preferredDuringSchedulingIgnoredDuringExecution") or []:
        keys.add(term["podAffinityTerm"]["topologyKey"])
    return ZONE in keys


def test_every_stateless_tier_runs_replicated_with_a_budget_and_spread(prod: dict) -> None:
    budgets, problems = _budgets(prod), []
    minimum = min(s["sizing"]["replicas"] for s in stack_config("prod")["services"].values() if "sizing" in s)
    for chart_name, kind, name in TIERS:
        chart = release(prod, chart_name)
        (workload,) = [o for o in chart["rendered"] if o["kind"] == kind and o["metadata"]["name"] == name]
        namespace = object_namespace(workload, chart["inputs"]["namespace"])
        (spec,) = pod_specs(workload)
        labels = workload["spec"]["template"]["metadata"]["labels"]
        if _replicas(chart, workload) < max(2, minimum):
            problems.append(f"{name}: {_replicas(chart, workload)} replicas")
        covering = [b for ns, b in budgets if ns == namespace
                    and b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        if not covering or any(b["spec"].get("minAvailable", 0) >= _replicas(chart, workload) for b in covering):
            problems.append(f"{name}: no PodDisruptionBudget that lets a drain proceed")
        if not _spread_over_zones(spec):
            problems.append(f"{name}: not spread over zones")
    assert not problems, "\n".join(problems)


def test_harbor_rolls_its_tiers_instead_of_recreating_them(renders: dict[str, Render]) -> None:
    for stack, result in renders.items():
        harbor = release(result.plan, "harbor")
        strategies = {o["metadata"]["name"]: (o["spec"].get("strategy") or {}).get("type", "RollingUpdate")
                      for o in harbor["rendered"] if o["kind"] == "Deployment"}
        assert strategies and set(strategies.values()) == {"RollingUpdate"}, (stack, strategies)


def test_the_replica_check_fails_without_a_budget(prod: dict) -> None:
    import copy

    broken = copy.deepcopy(prod)
    for resource in broken["resources"]:
        if resource["type"] == RELEASE_TYPE and resource["inputs"]["chart"] == "traefik":
            resource["rendered"] = [o for o in resource["rendered"] if o["kind"] != "PodDisruptionBudget"]
    with pytest.raises(AssertionError, match="traefik: no PodDisruptionBudget"):
        test_every_stateless_tier_runs_replicated_with_a_budget_and_spread(broken)


# --- config -------------------------------------------------------------------------------------------


def _load(stack: str, **changes: Any) -> Any:
    raw, secret_keys = read_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    for key, value in changes.items():
        raw = {k: v for k, v in raw.items() if k != f"platform:{key}"}
        if value is not None:
            raw[f"platform:{key}"] = json.dumps(value)
    return load_platform_config(raw, stack=stack, source=f"Pulumi.{stack}.yaml", secret_keys=secret_keys)


def test_a_kubeconfig_stack_without_an_object_store_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        _load("dev", objectStore=None)
    assert any(p.startswith("platform:objectStore: required when clusters.controlPlane is a kubeconfig cluster")
               for p in err.value.problems), err.value.problems
    _load("prod")  # EKS: S3 buckets of its own


def test_data_stores_need_a_standby() -> None:
    services = stack_config("prod")["services"]
    with pytest.raises(ConfigError) as err:
        _load("prod", services={**services, "dataStores": {**services["dataStores"], "sizing": {"replicas": 1}}})
    assert any("platform:services.dataStores" in p and "at least 2" in p for p in err.value.problems), err.value.problems


def test_managed_stores_need_the_control_planes_own_vpc() -> None:
    clusters = stack_config("prod")["clusters"]
    eks = {k: v for k, v in clusters["controlPlane"]["eks"].items() if k != "vpc"}
    existing = {**eks, "subnets": {"private": ["subnet-0abc12345def67890", "subnet-0abc12345def67891"]}}
    with pytest.raises(ConfigError) as err:
        _load("prod", clusters={**clusters, "controlPlane": {"eks": existing}})
    assert any(p.startswith("platform:clusters.controlPlane.eks.subnets: gitlab and harbor's PostgreSQL and Redis")
               for p in err.value.problems), err.value.problems
