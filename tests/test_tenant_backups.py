"""The tenants' volumes backed up by Velero (components/velero.py), read from the session renders.

The prod stack runs EKS (CSI snapshots of EBS volumes, the bucket reached through IRSA); the dev
stack runs kubeconfig clusters (file-system backups by the node agent, the target's key in the
velero namespace). Velero's objects are checked against the CRDs of the vendored chart, and a
tenant's roles, as the plan binds them, against every kind Velero serves.
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import velero, velero_node_agent
from components.versions import EKS_ADDONS, EKS_SNAPSHOT_CONTROLLER, VELERO_IMAGE, VELERO_TAG
from platformctl.render import Render, read_stack_file, render
from stacks.config import ConfigError, load_platform_config
from tests.test_gatekeeper_plan import _pod, declared
from tests.test_policy_attacks import own_image, refusals
from tests.test_tenant_roles import allows
from tests.validation import crd_errors, custom_resource_errors

ROOT = Path(__file__).resolve().parent.parent
CRDS = ROOT / "charts" / "vendor" / "velero" / "crds"
FIXTURES = ROOT / "tests" / "fixtures"
RELEASE = "kubernetes:helm.sh/v3:Release"


def stack_config(stack: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]


def of_kind(plan: dict[str, Any], kind: str, cluster: str | None = None) -> list[dict[str, Any]]:
    return [r for r in declared(plan) if r["inputs"]["kind"] == kind and cluster in (None, r["cluster"])]


def named(plan: dict[str, Any], type_: str, name: str) -> dict[str, Any]:
    [found] = [r for r in plan["resources"] if r["type"] == type_ and r["name"] == name]
    return found


def velero_release(plan: dict[str, Any], cluster: str) -> dict[str, Any]:
    [release] = [r for r in plan["resources"] if r["type"] == RELEASE and r["cluster"] == cluster and r["inputs"]["chart"] == "velero"]
    return release


def rendered(release: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [o for o in release["rendered"] if o["kind"] == kind]


def server_resources(release: dict[str, Any]) -> dict[str, Any]:
    [server] = rendered(release, "Deployment")
    return server["spec"]["template"]["spec"]["containers"][0]["resources"]


def crd(plural: str) -> dict[str, Any]:
    return yaml.safe_load((CRDS / f"{plural}.yaml").read_text())


# --- what each tenant gets ------------------------------------------------------------------------


def test_every_tenants_prod_namespace_is_backed_up_with_its_volumes_for_the_locked_days(renders: dict[str, Render]) -> None:
    for stack, result in renders.items():
        config = stack_config(stack)
        tenants = {t["name"] for t in config["platform:tenants"]}
        days = config["platform:backups"]["retentionDays"]
        on_eks = stack == "prod"
        schedules = {s["inputs"]["metadata"]["name"]: s for s in of_kind(result.plan, "Schedule")}
        # Prod only (options.environments): dev's namespaces are rebuilt from Git.
        assert set(schedules) == {f"{t}-prod" for t in tenants}, stack
        for name, schedule in schedules.items():
            assert schedule["cluster"] == "prod" and schedule["inputs"]["metadata"]["namespace"] == velero.NAMESPACE
            spec = schedule["inputs"]["spec"]
            assert spec["schedule"] == config["platform:services"]["velero"]["schedule"]
            template = spec["template"]
            assert template["includedNamespaces"] == [name]  # its own namespace, nothing else
            assert template["storageLocation"] == velero.LOCATION
            assert template["ttl"] == f"{days * 24}h0m0s"  # the bucket's lock: a listed backup cannot be deleted
            volumes = {"snapshotVolumes": True} if on_eks else {"defaultVolumesToFsBackup": True}
            assert volumes.items() <= template.items() and len(set(template) & {"snapshotVolumes", "defaultVolumesToFsBackup"}) == 1
            # After the tenant's namespace, Velero (its CRDs) and its location.
            waits = {d.rpartition("::")[2] for d in schedule["dependsOn"]}
            assert {name, "prod-velero", "prod-velero-location"} <= waits


def test_schedules_and_locations_are_valid_against_veleros_crds(renders: dict[str, Render]) -> None:
    """Against the CRDs of the chart's crds/ (the schema fixtures are their openAPIV3Schema, unchanged)."""
    for result in renders.values():
        for kind, plural in (("Schedule", "schedules"), ("BackupStorageLocation", "backupstoragelocations")):
            objects = of_kind(result.plan, kind)
            assert objects
            for obj in objects:
                assert crd_errors(obj["inputs"], crd(plural)) == [] and custom_resource_errors(obj["inputs"]) == [], obj["name"]
    broken = json.loads(json.dumps(of_kind(renders["prod"].plan, "Schedule")[0]["inputs"]))
    broken["spec"]["template"]["ttl"] = 720  # a number, not a duration
    assert crd_errors(broken, crd("schedules"))  # the check can fail


def test_each_clusters_velero_writes_under_its_own_prefix_with_object_lock_checksums(renders: dict[str, Render]) -> None:
    for stack, result in renders.items():
        for cluster in ("dev", "prod"):
            [location] = of_kind(result.plan, "BackupStorageLocation", cluster)
            spec = location["inputs"]["spec"]
            assert location["inputs"]["metadata"]["name"] == velero.LOCATION and spec["default"] is True
            assert spec["provider"] == "aws" and spec["objectStorage"]["prefix"] == f"velero/{cluster}"
            assert spec["config"]["checksumAlgorithm"] == "CRC32"  # S3 refuses unchecksummed writes under Object Lock
            if stack == "dev":
                target = stack_config("dev")["platform:backups"]["target"]
                assert spec["objectStorage"]["bucket"] == target["bucket"]
                assert spec["config"]["s3Url"] == target["endpoint"] and spec["config"]["serverSideEncryption"] == "AES256"
            else:
                assert "s3Url" not in spec["config"]  # AWS itself


def test_the_dev_namespaces_are_backed_up_too_when_the_stack_names_dev(tmp_path: Path) -> None:
    """`environments: [dev, prod]`: a Schedule of each tenant's dev namespace on the dev cluster too
    (the dev stack, values only: no chart is rendered)."""
    document = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    document["config"]["platform:services"]["velero"]["environments"] = ["dev", "prod"]
    document["config"]["platform:services"]["velero"]["nodeAgentKeys"]["dev"] = {
        "accessKeyId": "velero-dev-node-agent", "secretAccessKey": {"secure": "v1:placeholder-velero-dev-node-agent"}}
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump(document))
    plan = render(tmp_path / "Pulumi.dev.yaml", "dev").plan
    tenants = {t["name"] for t in document["config"]["platform:tenants"]}
    schedules = {(s["cluster"], s["inputs"]["metadata"]["name"]) for s in of_kind(plan, "Schedule")}
    assert schedules == {(env, f"{t}-{env}") for t in tenants for env in ("dev", "prod")}
    # and the dev cluster's node agent, which copies their volumes (none while dev is not named).
    assert [r["cluster"] for r in of_kind(plan, "DaemonSet") if r["inputs"]["metadata"]["name"] == velero_node_agent.DAEMONSET] == ["dev", "prod"]


# --- EKS: CSI snapshots, IRSA confined to the prefix --------------------------------------------


@pytest.mark.parametrize("cluster", ["dev", "prod"])
def test_eks_clusters_snapshot_volumes_through_csi(prod: dict[str, Any], cluster: str) -> None:
    addon = named(prod, "aws:eks/addon:Addon", f"{cluster}-velero-snapshot-controller")["inputs"]
    assert addon["addonName"] == "snapshot-controller" and addon["addonVersion"] == "v8.3.0-eksbuild.1"
    # After the node groups its controller runs on: through the namespace, whose provider waits for them.
    waits = {r["urn"]: set(r["dependsOn"]) for r in prod["resources"]}
    [namespace] = [d for d in named(prod, "aws:eks/addon:Addon", f"{cluster}-velero-snapshot-controller")["dependsOn"] if d.endswith(f"::{cluster}-velero")]
    provider = next(r for r in prod["resources"] if r["urn"] == namespace)["provider"]
    groups = {r["urn"] for r in prod["resources"] if r["type"] == "aws:eks/nodeGroup:NodeGroup" and r["name"].startswith(f"{cluster}-")}
    assert groups and groups <= waits[provider]
    snapshot_class = named(prod, "kubernetes:snapshot.storage.k8s.io/v1:VolumeSnapshotClass", f"{cluster}-velero-snapshot-class")
    assert snapshot_class["inputs"]["driver"] == "ebs.csi.aws.com"  # the EBS CSI add-on's, which provisions the default class
    assert snapshot_class["inputs"]["metadata"]["labels"]["velero.io/csi-volumesnapshot-class"] == "true"
    assert snapshot_class["inputs"]["deletionPolicy"] == "Delete"  # an expired backup takes its snapshots along
    assert any(d.endswith(f"::{cluster}-velero-snapshot-controller") for d in snapshot_class["dependsOn"])  # the CRD comes with the add-on
    release = velero_release(prod, cluster)
    values = release["inputs"]["values"]
    assert values["configuration"]["features"] == "EnableCSI" and values["deployNodeAgent"] is False
    [deployment] = rendered(release, "Deployment")
    assert "--features=EnableCSI" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not rendered(release, "DaemonSet")


def test_the_snapshot_class_is_valid_against_the_add_ons_crd(prod: dict[str, Any]) -> None:
    """The CRD of external-snapshotter v8.3.0, which the snapshot-controller add-on installs."""
    classes = [r for r in prod["resources"] if r["type"] == "kubernetes:snapshot.storage.k8s.io/v1:VolumeSnapshotClass"]
    assert len(classes) == 2
    for snapshot_class in classes:
        assert custom_resource_errors(snapshot_class["inputs"]) == []
    assert custom_resource_errors({**classes[0]["inputs"], "deletionPolicy": "Keep"})  # the check can fail


@pytest.mark.parametrize("cluster", ["dev", "prod"])
def test_a_deleted_snapshot_stays_in_the_recycle_bin_under_a_locked_rule(prod: dict[str, Any], cluster: str) -> None:
    """The volume data on EKS is in EBS snapshots, which the bucket's lock does not cover: a locked
    Recycle Bin rule of the cluster's region keeps every snapshot the CSI driver took for a week
    after anyone deletes it. The driver's tag is the one its managed policy requires it to set."""
    rule = named(prod, "aws:rbin/rule:Rule", f"{cluster}-velero-snapshots")
    inputs = rule["inputs"]
    assert inputs["resourceType"] == "EBS_SNAPSHOT"
    assert inputs["resourceTags"] == [{"resourceTagKey": "ebs.csi.aws.com/cluster", "resourceTagValue": "true"}]
    assert inputs["retentionPeriod"] == {"retentionPeriodValue": 7, "retentionPeriodUnit": "DAYS"}
    assert inputs["lockConfiguration"]["unlockDelay"] == {"unlockDelayValue": 7, "unlockDelayUnit": "DAYS"}
    assert rule["options"]["retainOnDelete"] is True  # a locked rule cannot be deleted by a destroy
    assert rule["provider"].endswith(f"::{cluster}-aws")  # the cluster's region
    policy = json.loads((FIXTURES / "aws-managed-policies" / "AmazonEBSCSIDriverPolicy").read_text())["PolicyVersion"]["Document"]
    tagged = [s for s in policy["Statement"] if "ec2:CreateSnapshot" in s["Action"] and "Condition" in s]
    assert any(s["Condition"] == {"StringLike": {"aws:RequestTag/ebs.csi.aws.com/cluster": "true"}} for s in tagged)


@pytest.mark.parametrize("cluster", ["dev", "prod"])
def test_the_csi_drivers_own_role_takes_and_deletes_the_snapshots(prod: dict[str, Any], cluster: str) -> None:
    """Velero asks for VolumeSnapshots; the EBS CSI driver takes them with its role (AWS's managed policy,
    the copy under tests/fixtures), so Velero's role needs no EC2 right at all."""
    role = named(prod, "aws:iam/role:Role", f"{cluster}-ebs-csi")
    [attachment] = [a for a in prod["resources"] if a["type"] == "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
                    and role["urn"] in a["dependsOn"]]
    policy = json.loads((FIXTURES / "aws-managed-policies" / attachment["inputs"]["policyArn"].rsplit("/", 1)[-1]).read_text())
    granted = {a for s in policy["PolicyVersion"]["Document"]["Statement"] if s["Effect"] == "Allow"
               for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert {"ec2:CreateSnapshot", "ec2:DeleteSnapshot", "ec2:CreateVolume"} <= granted  # snapshot, and restore from one
    velero_policy = json.loads(named(prod, "aws:iam/rolePolicy:RolePolicy", f"{cluster}-velero")["inputs"]["policy"])
    assert not [a for s in velero_policy["Statement"] for a in s["Action"] if a.startswith("ec2:")]


def test_the_snapshot_controller_is_pinned_for_every_kubernetes_version_an_eks_cluster_may_run() -> None:
    """stacks/config.py admits the EKS versions EKS_ADDONS pins: the add-on of this slice needs each too."""
    assert set(EKS_SNAPSHOT_CONTROLLER) == set(EKS_ADDONS)


@pytest.mark.parametrize("cluster", ["dev", "prod"])
def test_veleros_role_reaches_its_own_prefix_only_and_never_an_object_version(prod: dict[str, Any], cluster: str) -> None:
    release = velero_release(prod, cluster)
    [deployment] = rendered(release, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == velero.SERVICE_ACCOUNT  # the account the role trusts
    assert not [v for v in pod.get("volumes", []) if v["name"] == "cloud-credentials"]  # no key anywhere
    # The account is the program's, annotated with the role; the chart's CRD upgrade job's is not.
    [account] = [a for a in of_kind(prod, "ServiceAccount", cluster) if a["inputs"]["metadata"]["namespace"] == velero.NAMESPACE]
    assert account["inputs"]["metadata"]["name"] == velero.SERVICE_ACCOUNT
    assert account["inputs"]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    assert not [a for a in rendered(release, "ServiceAccount") if "eks.amazonaws.com/role-arn" in (a["metadata"].get("annotations") or {})]
    assert any(d.endswith(f"::{cluster}-velero") and "ServiceAccount" in d for d in release["dependsOn"])
    # Trusted by this cluster's OIDC issuer (not the control plane's), for that one account.
    issuer = named(prod, "aws:iam/openIdConnectProvider:OpenIdConnectProvider", f"{cluster}-oidc")["inputs"]["url"].removeprefix("https://")
    [trust] = json.loads(named(prod, "aws:iam/role:Role", f"{cluster}-velero")["inputs"]["assumeRolePolicy"])["Statement"]
    assert trust["Principal"]["Federated"].endswith(f":oidc-provider/{issuer}")
    assert trust["Condition"]["StringEquals"][f"{issuer}:sub"] == f"system:serviceaccount:{velero.NAMESPACE}:{velero.SERVICE_ACCOUNT}"
    statements = json.loads(named(prod, "aws:iam/rolePolicy:RolePolicy", f"{cluster}-velero")["inputs"]["policy"])["Statement"]
    actions = {a for s in statements for a in s["Action"]}
    assert not actions & {"s3:DeleteObjectVersion", "s3:PutObjectRetention", "s3:BypassGovernanceRetention",
                          "s3:PutBucketObjectLockConfiguration", "s3:PutLifecycleConfiguration", "s3:*"}
    for statement in statements:
        resource = statement["Resource"]
        if any(a.startswith("s3:") for a in statement["Action"]) and resource.endswith("*"):
            assert resource.endswith(f"/velero/{cluster}/*"), resource  # not the other cluster's, not the platform's backups
        if "s3:ListBucket" in statement["Action"]:
            assert statement["Condition"] == {"StringLike": {"s3:prefix": f"velero/{cluster}/*"}}
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket", "kms:GenerateDataKey", "kms:Decrypt"} <= actions


def test_object_lock_keeps_what_velero_deletes_and_never_expires_its_current_objects(prod: dict[str, Any]) -> None:
    days = stack_config("prod")["platform:backups"]["retentionDays"]
    lock = named(prod, "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration", "backups")["inputs"]
    assert lock["rule"]["defaultRetention"]["days"] == days
    rules = {r["id"]: r for r in named(prod, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "backups")["inputs"]["rules"]}
    rule = rules["velero-retention"]
    assert rule["filter"]["prefix"] == "velero/" and "expiration" not in rule
    assert rule["noncurrentVersionExpiration"]["noncurrentDays"] == days
    for schedule in of_kind(prod, "Schedule"):
        assert schedule["inputs"]["spec"]["template"]["ttl"] == f"{days * 24}h0m0s"


# --- kubeconfig clusters: file-system backups -----------------------------------------------------


@pytest.mark.parametrize("cluster", ["dev", "prod"])
def test_kubeconfig_clusters_copy_volumes_with_the_node_agent_and_a_generated_repository_key(renders: dict[str, Render], cluster: str) -> None:
    plan = renders["dev"].plan
    release = velero_release(plan, cluster)
    # The program's node agent, never the chart's (which runs as the server's cluster-admin account), and only where
    # volumes are backed up (options.environments: prod): dev's nodes carry none (Velero.node_agent).
    assert not rendered(release, "DaemonSet") and release["inputs"]["values"]["deployNodeAgent"] is False
    agents = [r["inputs"] for r in of_kind(plan, "DaemonSet", cluster) if r["inputs"]["metadata"]["name"] == velero_node_agent.DAEMONSET]
    assert len(agents) == (cluster == "prod")
    for agent in agents:
        volumes = {v["name"]: v for v in agent["spec"]["template"]["spec"]["volumes"]}
        assert volumes["host-pods"]["hostPath"]["path"] == "/var/lib/kubelet/pods"
        assert volumes["cloud-credentials"]["secret"]["secretName"] == velero.NODE_AGENT_SECRET
        assert agent["spec"]["template"]["spec"]["containers"][0]["resources"] == server_resources(release)
    secrets = {s["inputs"]["metadata"]["name"]: s for s in of_kind(plan, "Secret", cluster) if s["inputs"]["metadata"]["namespace"] == velero.NAMESPACE}
    assert set(secrets) == {velero.CREDENTIALS_SECRET, velero.REPOSITORY_SECRET, *[velero.NODE_AGENT_SECRET] * len(agents)}
    for credentials in {velero.CREDENTIALS_SECRET, velero.NODE_AGENT_SECRET} & set(secrets):
        assert secrets[credentials]["inputs"]["stringData"] == {velero.CREDENTIALS_KEY: "[secret]"}
    assert secrets[velero.REPOSITORY_SECRET]["inputs"]["stringData"] == {velero.REPOSITORY_KEY: "[secret]"}
    assert any(d.endswith(f"::{cluster}-velero-repository-password") for d in secrets[velero.REPOSITORY_SECRET]["dependsOn"])
    # Velero and its agents start with both in place (else kopia would use Velero's built-in password).
    waits = {d.rpartition("::")[2] for d in release["dependsOn"]}
    assert {f"{cluster}-velero-s3", f"{cluster}-velero-repository"} <= waits
    assert not [r for r in plan["resources"] if r["type"] == "aws:iam/role:Role" and r["name"] == f"{cluster}-velero"]
    # Its repository maintenance Jobs (started by Velero, not rendered) are sized as Velero and its agents are.
    [maintenance] = [c for c in rendered(release, "ConfigMap") if c["metadata"]["name"] == "velero-repo-maintenance"]
    sizing = server_resources(release)
    assert json.loads(maintenance["data"]["global"])["podResources"] == {
        "cpuRequest": sizing["requests"]["cpu"], "memoryRequest": sizing["requests"]["memory"], "memoryLimit": sizing["limits"]["memory"]}


def test_each_kubeconfig_clusters_velero_holds_a_key_of_its_own_never_the_control_planes(renders: dict[str, Render]) -> None:
    """Velero's node agents run on every workload node, where tenants' code runs: a node taken over
    there reads the credentials file they mount. It must hold that cluster's own key (confined by
    the target's administrator to its prefix), not the key of the control plane's backups (Vault's
    snapshots, GitLab's and Harbor's backups) nor the other cluster's. The file is secret in the
    plan; its fingerprint (a hash of the mock value) tells which key it is made of."""
    raw, _ = read_stack_file(ROOT / "Pulumi.dev.yaml")
    writers = list(json.loads(raw["platform:backups"])["target"]["writerKeys"].values())
    keys = json.loads(raw["platform:services"])["velero"]["targetKeys"]

    def fingerprint(key: dict[str, str]) -> str:
        value = {velero.CREDENTIALS_KEY: velero.credentials_file(key["accessKeyId"], key["secretAccessKey"])}
        return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]

    held = {r["cluster"]: renders["dev"].fingerprints[r["urn"]]["stringData"] for r in of_kind(renders["dev"].plan, "Secret")
            if (r["inputs"]["metadata"]["name"], r["inputs"]["metadata"]["namespace"]) == (velero.CREDENTIALS_SECRET, velero.NAMESPACE)}
    assert set(held) == {"dev", "prod"}
    assert not {fingerprint(key) for key in writers} & set(held.values()), "a workload cluster holds a control-plane backup key"
    assert held == {cluster: fingerprint(keys[cluster]) for cluster in held}
    assert len({keys["dev"]["accessKeyId"], keys["prod"]["accessKeyId"], *(key["accessKeyId"] for key in writers)}) == 2 + len(writers)


def test_the_readme_gives_the_targets_administrator_each_clusters_policy() -> None:
    """What `targetKeys.<cluster>` must be confined to, as the README shows it for dev's target."""
    bucket = json.loads(read_stack_file(ROOT / "Pulumi.dev.yaml")[0]["platform:backups"])["target"]["bucket"]
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- velero target policy -->\n```json\n", 1)[1].split("```", 1)[0]
    assert json.loads(block) == velero.target_policy(bucket, "dev")
    # and `nodeAgentKeys.<cluster>`, the kopia repositories only.
    block = readme.split("<!-- velero node agent policy -->\n```json\n", 1)[1].split("```", 1)[0]
    assert json.loads(block) == velero.node_agent_policy(bucket, "prod")


def restored_pod(plan: dict[str, Any], cluster: str, helper_image: str) -> dict[str, Any]:
    """A tenant's pod as a file-system restore recreates it: Velero 1.18.1 adds the init container
    `restore-wait` (pkg/restore/actions/pod_volume_restore_action.go: the configured image, 100m and
    128Mi requested and limited, the first container's securityContext; Gatekeeper's mutator sets
    imagePullPolicy Always on every init container)."""
    tenant = next(t["name"] for t in stack_config(plan["stack"])["platform:tenants"] if t.get("isolation", "namespace") == "namespace")
    namespace = f"{tenant}-{cluster}"
    pod = _pod(namespace, own_image(plan, cluster, namespace))
    limits = {"cpu": "100m", "memory": "128Mi"}
    pod["spec"]["initContainers"] = [{
        "name": "restore-wait", "image": helper_image, "imagePullPolicy": "Always", "args": ["0b7f9c9e"],
        "env": [{"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
        "resources": {"requests": limits, "limits": limits},
        "securityContext": copy.deepcopy(pod["spec"]["containers"][0]["securityContext"]),
    }]
    return pod


@pytest.mark.parametrize("cluster", ["dev", "prod"])
def test_a_file_system_restore_brings_a_tenants_pod_back_past_its_namespaces_policies(renders: dict[str, Render], cluster: str) -> None:
    """The restored pod goes back into the tenant's namespace, held to its constraints (real OPA):
    with Velero's own image (docker.io) its registries constraint refuses it, so the plugin
    ConfigMap points the init container at Harbor's `approved` copy (promoted and signed first)."""
    plan = renders["dev"].plan
    [config] = [c for c in of_kind(plan, "ConfigMap", cluster) if c["inputs"]["metadata"]["name"] == velero.RESTORE_HELPER_CONFIG]
    assert config["inputs"]["metadata"]["namespace"] == velero.NAMESPACE
    assert velero.RESTORE_HELPER_LABELS.items() <= config["inputs"]["metadata"]["labels"].items()
    image = config["inputs"]["data"]["image"]
    assert image == f"harbor.{stack_config('dev')['platform:domain']}/approved/docker.io/velero/velero:{VELERO_TAG}"
    assert refusals(plan, cluster, restored_pod(plan, cluster, image)) == []
    assert any("restore-wait" in failure for failure in refusals(plan, cluster, restored_pod(plan, cluster, f"{VELERO_IMAGE}:{VELERO_TAG}")))
    release = velero_release(plan, cluster)
    assert release["inputs"]["values"]["image"] == {"repository": VELERO_IMAGE, "tag": VELERO_TAG}  # the same Velero
    assert any(d.endswith(f"::{cluster}-velero-restore-helper") for d in release["dependsOn"])


def test_a_csi_restore_brings_a_tenants_claim_back_past_its_namespaces_policies(prod: dict[str, Any]) -> None:
    """On EKS Velero restores a claim from its snapshot: a VolumeSnapshot in the tenant's namespace and
    the claim with it as its data source (no volume named: Velero clears the binding). The
    namespace's constraints (real OPA) select the claim and admit it; a claim of a volume by name
    stays refused, so the restore opens no way around that rule."""
    tenant = stack_config("prod")["platform:tenants"][0]["name"]
    namespace = f"{tenant}-prod"
    snapshot = {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "velero-data-0-x7k2p"}
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": {"name": "data-0", "namespace": namespace, "labels": {"velero.io/restore-name": "r"}},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "gp3",
                      "dataSource": snapshot, "dataSourceRef": snapshot}}
    assert refusals(prod, "prod", claim) == []
    assert refusals(prod, "prod", {**claim, "spec": {**claim["spec"], "volumeName": "pvc-of-another-tenant"}})


def test_veleros_credentials_are_in_the_inventory_with_their_lifetimes(renders: dict[str, Render]) -> None:
    entries = {stack: {e["what"]: e for e in result.plan["outputs"]["credentials"]} for stack, result in renders.items()}
    for cluster in ("dev", "prod"):
        for stack in entries:
            tokens = entries[stack][f"service-account tokens of Velero on {cluster}"]
            assert tokens["category"] == "federated" and tokens["lifetimeSeconds"] == 3600 and "cluster-admin" in tokens["scope"]
        sessions = entries["prod"][f"AWS sessions of Velero on {cluster} (IRSA)"]
        assert sessions["lifetimeSeconds"] == 3600 and f"velero/{cluster}/" in sessions["scope"]
        key = entries["dev"][f"{cluster}'s own access key to the backup target, held by Velero there"]
        assert key["category"] == "external" and key["resources"] == [f"{cluster}-velero-s3"]
        assert f"targetKeys.{cluster}.secretAccessKey" in key["rotation"] and f"velero/{cluster}/" in key["scope"]
        password = entries["dev"][f"Velero's kopia repository password on {cluster}"]
        assert password["category"] == "bootstrap" and password["lifetime"] == "never expires"


# --- who may touch backups: platform admins only --------------------------------------------------

VELERO_RESOURCES = sorted(crd.stem for crd in CRDS.glob("*.yaml"))  # the plural of each kind the chart's CRDs serve


def test_a_tenants_roles_cannot_create_a_restore_or_any_velero_object(plan: dict) -> None:
    """A tenant's Restore could map another tenant's backup into its namespace, or its own into
    another's (a cross-tenant read or write, done with Velero's cluster-admin): every role the plan
    binds in a tenant namespace (people, ArgoCD's federated role), and every ClusterRole that would
    aggregate into Kubernetes' admin, edit or view, is read for each kind Velero serves."""
    assert "restores" in VELERO_RESOURCES and len(VELERO_RESOURCES) == 13
    tenant_namespaces = {r["inputs"]["metadata"]["name"] for r in of_kind(plan, "Namespace")
                         if r["inputs"]["metadata"].get("labels", {}).get("platform.io/tenant-namespace") == "true"}
    roles = {(r["cluster"], r["inputs"]["kind"], r["inputs"]["metadata"]["name"]): r["inputs"]["rules"] for r in declared(plan)
             if r["inputs"]["kind"] in ("ClusterRole", "Role")}
    bound = {(r["cluster"], r["inputs"]["roleRef"]["kind"], r["inputs"]["roleRef"]["name"]) for r in of_kind(plan, "RoleBinding")
             if r["cluster"] in ("dev", "prod") and r["inputs"]["metadata"]["namespace"] in tenant_namespaces}
    assert {name for _, _, name in bound} >= {"platform-tenant-admin", "platform-tenant-edit", "platform-argocd-federated"}
    aggregated = [o for r in plan["resources"] if r["type"] == RELEASE and r["cluster"] in ("dev", "prod") for o in r["rendered"]
                  if o["kind"] == "ClusterRole" and any(k.startswith("rbac.authorization.k8s.io/aggregate-to-")
                                                         for k in (o["metadata"].get("labels") or {}))]
    checked = [(key, roles[key]) for key in sorted(bound) if key[2] != "view"] + [(("rendered", o["metadata"]["name"]), o.get("rules") or []) for o in aggregated]
    for key, rules in checked:
        for resource in VELERO_RESOURCES:
            for verb in ("create", "update", "patch", "delete", "get", "list"):
                assert not allows(rules, verb, "velero.io", resource), (key, verb, resource)
    # The attack itself, against the developers' role: create a Restore.
    assert not allows(roles[next(k for k in sorted(bound) if k[2] == "platform-tenant-edit")], "create", "velero.io", "restores")
    assert allows([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}], "create", "velero.io", "restores")  # the check can fail


def test_no_one_but_veleros_own_accounts_is_bound_in_the_velero_namespace(plan: dict) -> None:
    """The velero namespace holds the backup target's key and the kopia password: only the chart and the
    program's node agent bind anything there, and only Velero's own service accounts; no cluster-wide
    binding the plan declares on a workload cluster reads Secrets anywhere."""
    declared_there = [r for r in of_kind(plan, "RoleBinding") if r["inputs"]["metadata"]["namespace"] == velero.NAMESPACE]
    assert {(r["cluster"], s["namespace"], s["name"]) for r in declared_there for s in r["inputs"]["subjects"]} <= {
        (cluster, velero.NAMESPACE, velero_node_agent.ACCOUNT) for cluster in ("dev", "prod")}
    roles = {(r["cluster"], r["inputs"]["metadata"]["name"]): r["inputs"]["rules"] for r in of_kind(plan, "ClusterRole")}
    cluster_wide = [r for r in of_kind(plan, "ClusterRoleBinding") if r["cluster"] in ("dev", "prod")]
    assert cluster_wide
    for binding in cluster_wide:
        rules = roles[(binding["cluster"], binding["inputs"]["roleRef"]["name"])]
        assert not any(allows(rules, verb, "", "secrets") for verb in ("get", "list", "watch")), binding["name"]
    for cluster in ("dev", "prod"):
        release = velero_release(plan, cluster)
        bindings = rendered(release, "RoleBinding") + rendered(release, "ClusterRoleBinding")
        # What the inventory says its tokens hold: cluster-admin, through the chart's binding of its account.
        assert any(b["roleRef"]["name"] == "cluster-admin" and b["subjects"][0]["name"] == velero.SERVICE_ACCOUNT
                   for b in rendered(release, "ClusterRoleBinding"))
        for binding in bindings:
            for subject in binding["subjects"]:
                assert subject["kind"] == "ServiceAccount" and subject.get("namespace", velero.NAMESPACE) == velero.NAMESPACE, binding


# --- config --------------------------------------------------------------------------------------


def _config_with(stack: str, **changes: Any) -> None:
    raw, secrets = read_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    raw = dict(raw)
    for key, value in changes.items():
        if value is None:
            raw.pop(key)
        else:
            raw[key] = json.dumps({**json.loads(raw[key]), **value})
    load_platform_config(raw, stack=stack, source=f"Pulumi.{stack}.yaml", secret_keys=secrets)


def test_velero_without_a_backup_store_is_refused_naming_both_keys() -> None:
    with pytest.raises(ConfigError) as caught:
        _config_with("dev", **{"platform:backups": None})
    assert "platform:services.velero: the tenants' backups go to the stack's backup store" in str(caught.value)
    assert "services.velero.enabled: false" in str(caught.value)


def test_velero_node_agent_without_gatekeeper_is_refused_naming_the_keys() -> None:
    """The pods the node agent creates are held to its node, account and image by Gatekeeper alone."""
    with pytest.raises(ConfigError) as caught:
        _config_with("dev", **{"platform:services": {"gatekeeper": {"enabled": False}}})
    assert "platform:services.velero.environments: on kubeconfig clusters Velero's node agent" in str(caught.value)
    assert "services.gatekeeper.enabled is false" in str(caught.value)
    clusters = json.loads(read_stack_file(ROOT / "Pulumi.dev.yaml")[0]["platform:clusters"])
    clusters["prod"]["kubeconfig"]["kubernetesVersion"] = "1.31"
    with pytest.raises(ConfigError) as caught:
        _config_with("dev", **{"platform:clusters": clusters})
    assert "platform:clusters.prod.kubeconfig.kubernetesVersion: 1.31, and Velero's node agent there" in str(caught.value)
    assert "allowed: '1.32' or later" in str(caught.value)
    # Nothing to copy, no node agent: allowed.
    velero_settings = json.loads(read_stack_file(ROOT / "Pulumi.dev.yaml")[0]["platform:services"])["velero"]
    _config_with("dev", **{"platform:services": {"gatekeeper": {"enabled": False}, "velero": {**velero_settings, "environments": []}}})


def test_velero_on_a_workload_cluster_of_another_kind_than_the_control_plane_is_refused() -> None:
    """An EKS control plane's bucket is reached through IRSA, which a kubeconfig cluster has not."""
    raw, secrets = read_stack_file(ROOT / "Pulumi.prod.yaml")
    kubeconfig_prod = json.loads(read_stack_file(ROOT / "Pulumi.dev.yaml")[0]["platform:clusters"])["prod"]
    raw = {**raw, "platform:clusters": json.dumps({**json.loads(raw["platform:clusters"]), "prod": kubeconfig_prod}),
           "platform:services": json.dumps({**json.loads(raw["platform:services"]), "dragonfly": {"enabled": False}})}
    with pytest.raises(ConfigError) as caught:
        load_platform_config(raw, stack="prod", source="Pulumi.prod.yaml", secret_keys=secrets)
    assert "platform:services.velero: clusters.prod is a kubeconfig cluster" in str(caught.value)
    assert "services.velero.enabled: false" in str(caught.value)
    raw["platform:services"] = json.dumps({**json.loads(raw["platform:services"]), "velero": {"enabled": False}})
    load_platform_config(raw, stack="prod", source="Pulumi.prod.yaml", secret_keys=secrets)  # the one reason


DEV_KEY = {"accessKeyId": "velero-dev", "secretAccessKey": "x"}
AGENT_KEY = {"accessKeyId": "velero-prod-node-agent", "secretAccessKey": "x"}


def _dev_velero(**changes: Any) -> dict[str, Any]:
    velero_options = copy.deepcopy(stack_config("dev")["platform:services"]["velero"])
    velero_options.update({"nodeAgentKeys": {"prod": AGENT_KEY}, **changes})
    return velero_options


@pytest.mark.parametrize(("stack", "velero_options", "key", "words"), [
    ("prod", {"schedule": "nightly"}, "platform:services.velero.schedule", "pattern"),
    ("prod", {"environments": ["staging"]}, "platform:services.velero.environments", "'dev' or 'prod'"),
    ("dev", _dev_velero(targetKeys={"dev": DEV_KEY}), "platform:services.velero.targetKeys.prod", "required on kubeconfig stacks"),
    ("dev", _dev_velero(targetKeys={"dev": DEV_KEY, "prod": {**DEV_KEY}}), "platform:services.velero.targetKeys.prod.accessKeyId",
     "the key of platform:services.velero.targetKeys.dev"),
    ("dev", _dev_velero(targetKeys={"dev": {**DEV_KEY, "accessKeyId": "platform-dev-backups-gitlab"}, "prod": {**DEV_KEY, "accessKeyId": "p"}}),
     "platform:services.velero.targetKeys.dev.accessKeyId", "the key of platform:backups.target.writerKeys.gitlab"),
    # The object store's key writes the live data (GitLab's objects, the databases' archives): no workload node holds it.
    ("dev", _dev_velero(targetKeys={"dev": {**DEV_KEY, "accessKeyId": "platform-dev"}, "prod": {**DEV_KEY, "accessKeyId": "p"}}),
     "platform:services.velero.targetKeys.dev.accessKeyId", "the key of platform:objectStore"),
    ("prod", {"targetKeys": {"dev": DEV_KEY}}, "platform:services.velero.targetKeys", "through IRSA; allowed: unset"),
    # The node agents' key, on every node of the clusters `environments` names: their own, never Velero's.
    ("dev", _dev_velero(targetKeys={"dev": DEV_KEY, "prod": {**DEV_KEY, "accessKeyId": "velero-prod"}}, nodeAgentKeys={}),
     "platform:services.velero.nodeAgentKeys.prod", "confines to velero/prod/kopia/"),
    ("dev", _dev_velero(targetKeys={"dev": DEV_KEY, "prod": {**DEV_KEY, "accessKeyId": "velero-prod"}},
                        nodeAgentKeys={"prod": {**AGENT_KEY, "accessKeyId": "velero-prod"}}),
     "platform:services.velero.nodeAgentKeys.prod.accessKeyId", "the key of platform:services.velero.targetKeys.prod"),
    ("prod", {"nodeAgentKeys": {"prod": AGENT_KEY}}, "platform:services.velero.nodeAgentKeys", "through IRSA; allowed: unset"),
])
def test_bad_velero_options_are_refused_naming_the_key(stack: str, velero_options: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _config_with(stack, **{"platform:services": {"velero": velero_options}})
    assert [line for line in str(caught.value).splitlines() if (f": {key}:" in line or f": {key}[" in line) and words in line], str(caught.value)


def _s3_allows(policy: dict[str, Any], action: str, resource: str) -> bool:
    """Whether an Allow statement of `policy` (no Deny in these) covers `action` on `resource` (IAM's `*` wildcard
    within the ARN; the prefix condition on ListBucket is not needed here: only object actions are asked)."""
    return any(statement["Effect"] == "Allow" and action in statement["Action"]
               and fnmatch.fnmatchcase(resource, statement["Resource"].replace("[", "[[]"))
               for statement in policy["Statement"])


def test_a_node_taken_over_reads_no_other_tenants_backup_and_plants_no_restore(renders: dict[str, Render]) -> None:
    """Attack: a tenant escapes to a kubeconfig workload node and reads the credentials file Velero's node agent mounts
    there. With the cluster's Velero key (confined to velero/<cluster>/, all of it) it reads every tenant's Backup tarball
    (their Secrets included, tenants it never shared a node with), rewrites one, which the next restore applies with
    Velero's cluster-admin (a ClusterRoleBinding of its own), or deletes them. The node agent only copies volumes into
    the kopia repositories, `<prefix>/kopia/<namespace>/` (vmware-tanzu/velero pkg/repository/provider/unified_repo.go
    getStorageVariables: path.Join(prefix, udmrepo.StoreOptionPrefixName, repoName)), so the key on the nodes must reach
    nothing else: the Backup objects, their tarballs and the restores' results are the server's alone."""
    raw, _ = read_stack_file(ROOT / "Pulumi.dev.yaml")
    bucket = json.loads(raw["platform:backups"])["target"]["bucket"]
    options = json.loads(raw["platform:services"])["velero"]

    def fingerprint(key: dict[str, str]) -> str:
        value = {velero.CREDENTIALS_KEY: velero.credentials_file(key["accessKeyId"], key["secretAccessKey"])}
        return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]

    policies = {fingerprint(key): velero.target_policy(bucket, cluster) for cluster, key in options["targetKeys"].items()}
    policies |= {fingerprint(key): velero.node_agent_policy(bucket, cluster)
                 for cluster, key in options.get("nodeAgentKeys", {}).items()}
    plan, fingerprints = renders["dev"].plan, renders["dev"].fingerprints
    agents = [r for r in of_kind(plan, "DaemonSet") if r["inputs"]["metadata"]["name"] == velero_node_agent.DAEMONSET]
    assert [r["cluster"] for r in agents] == ["prod"], "the dev stack backs up prod's tenant volumes with the node agent"
    for agent in agents:
        cluster, spec = agent["cluster"], agent["inputs"]["spec"]["template"]["spec"]
        mounted = next(v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v)
        secret = next(r for r in of_kind(plan, "Secret", cluster) if (r["inputs"]["metadata"]["name"], r["inputs"]["metadata"]["namespace"])
                      == (mounted, velero.NAMESPACE))
        policy = policies[fingerprints[secret["urn"]]["stringData"]]
        root = f"arn:aws:s3:::{bucket}/{velero.prefix(cluster)}"
        reached = [f"{action} {key}" for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")
                   for key in ("backups/shop-prod-20261207040000/shop-prod-20261207040000.tar.gz",
                               "backups/shop-prod-20261207040000/velero-backup.json", "restores/shop-prod-1/restore-shop-prod-1-results.gz")
                   if _s3_allows(policy, action, f"{root}/{key}")]
        print(f"{cluster}: the key in Secret {velero.NAMESPACE}/{mounted}, on every node, reaches: {reached}")
        assert not reached, f"a node of {cluster} taken over reaches the server's objects: {reached}"
        # What it needs still: its namespace's kopia repository.
        assert _s3_allows(policy, "s3:PutObject", f"{root}/kopia/shop-prod/p0123456789abcdef")
