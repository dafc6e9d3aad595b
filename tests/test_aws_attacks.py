"""An attacker's review of the cloud side (prod stack, EKS): each test is one attempt, made
against the IAM documents, buckets and service accounts the program really declares, by a pod
of a platform add-on, a tenant's workload or anyone on the network path, and must fail for
the attacker."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

import pytest

from tests.test_eks_storage import named

ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"
MANAGED_POLICIES = Path(__file__).parent / "fixtures" / "aws-managed-policies"  # AWS's documents (UPSTREAM.md)
DOMAIN = "platform.example.com"  # Pulumi.prod.yaml platform:domain
APPS_DOMAIN = "apps.example.net"  # Pulumi.prod.yaml platform:appsDomain: the tenants' apps, in a zone of its own
PLATFORM_ZONE, APPS_ZONE = "Z0123456789ABCDEFGHIJ", "Z9876543210ABCDEFGHIJ"  # Pulumi.prod.yaml platform:dns


def _of_type(plan: dict[str, Any], type_: str) -> list[dict[str, Any]]:
    return [r for r in plan["resources"] if r["type"] == type_]


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def _allows(policy: dict[str, Any], action: str, context: dict[str, list[str]], resource: str | None = None) -> bool:
    """Whether an identity policy's Allow statements grant `action` (on `resource`; None: on any) on a request
    whose multivalued keys are `context` (the ForAllValues operators this file's policies use; IAM's `*` matches
    dots too, as fnmatch's does). Any other condition operator fails the test rather than be guessed."""
    for statement in policy["Statement"]:
        if statement["Effect"] != "Allow" or not any(fnmatch.fnmatchcase(action, a) for a in _listed(statement["Action"])):
            continue
        if resource is not None and not any(fnmatch.fnmatchcase(resource, r) for r in _listed(statement["Resource"])):
            continue
        granted = True
        for operator, keys in statement.get("Condition", {}).items():
            match = {"ForAllValues:StringEquals": str.__eq__, "ForAllValues:StringLike": fnmatch.fnmatchcase}[operator]
            granted &= all(any(match(v, p) for p in _listed(allowed)) for key, allowed in keys.items() for v in context[key])
        if granted:
            return True
    return False


def test_the_policy_evaluator_on_known_cases() -> None:
    policy = {"Statement": [{"Effect": "Allow", "Action": "route53:Change*", "Resource": "*", "Condition": {
        "ForAllValues:StringEquals": {"t": ["TXT"]}, "ForAllValues:StringLike": {"n": ["_acme-challenge.*.example.com"]}}}]}
    assert _allows(policy, "route53:ChangeResourceRecordSets", {"t": ["TXT"], "n": ["_acme-challenge.a.b.example.com"]})
    assert not _allows(policy, "route53:ChangeResourceRecordSets", {"t": ["TXT", "CNAME"], "n": ["_acme-challenge.a.example.com"]})
    assert not _allows(policy, "route53:ChangeResourceRecordSets", {"t": ["TXT"], "n": ["gitlab.example.com"]})
    assert not _allows(policy, "route53:GetChange", {})
    assert _allows({"Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": "*"}]}, "s3:GetObject", {})
    listing = {"Statement": [{"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": "arn:aws:s3:::a"}]}
    assert _allows(listing, "s3:ListBucket", {}, "arn:aws:s3:::a") and not _allows(listing, "s3:ListBucket", {}, "arn:aws:s3:::b")


# --- Route 53: cert-manager of a workload cluster rewrites the platform's own names -----------------

def _record_change(name: str, type_: str) -> dict[str, list[str]]:
    return {"route53:ChangeResourceRecordSetsNormalizedRecordNames": [name],
            "route53:ChangeResourceRecordSetsRecordTypes": [type_]}


@pytest.mark.parametrize(("policy_name", "own"), [
    ("platform-tls-route53", DOMAIN), ("dev-platform-tls-route53", f"dev.{APPS_DOMAIN}"),
    ("prod-platform-tls-route53", f"prod.{APPS_DOMAIN}"),
])
def test_cert_manager_writes_only_its_own_acme_challenges(prod: dict[str, Any], policy_name: str, own: str) -> None:
    """cert-manager on the prod workload cluster (tenants' pods share its nodes; it acts on every
    Certificate there) is taken over. Its IRSA role could change any record of the platform's hosted
    zone: it points gitlab.platform.example.com at its own address, proves the name to Let's
    Encrypt with a TXT record, and serves an OIDC discovery document and keys of its own there.
    IAM trusts that issuer for the deploy role (AdministratorAccess), so a token it signs for
    `project_path:platform/platform-bootstrap:ref_type:branch:ref:main` is the AWS account; the
    same with k8sou. (the workload clusters' API servers trust its tokens) or vault. It may write
    TXT records `_acme-challenge.` under the names its cluster serves, and nothing else."""
    policy = json.loads(named(prod, policy_name, "aws:iam/rolePolicy:RolePolicy")["inputs"]["policy"])
    change = "route53:ChangeResourceRecordSets"
    assert _allows(policy, change, _record_change(f"_acme-challenge.{own}", "TXT"))  # its own wildcard's challenge
    for name, type_ in [(f"gitlab.{DOMAIN}", "CNAME"), (f"vault.{DOMAIN}", "A"), (f"_acme-challenge.{own}", "CNAME"),
                        (f"gitlab.{own}", "TXT"), (DOMAIN, "NS"), (f"_acme-challenge.gitlab.{own}.evil.example", "TXT")]:
        assert not _allows(policy, change, _record_change(name, type_)), (name, type_)
    if own != DOMAIN:  # a workload cluster's cert-manager proves none of the control plane's names
        for service in ("gitlab", "vault", "k8sou", "harbor", "argocd"):
            assert not _allows(policy, change, _record_change(f"_acme-challenge.{service}.{DOMAIN}", "TXT")), service
        # and writes in the tenants' apps' zone alone (platform:dns.appsHostedZoneId), never the platform's.
        own_change = _record_change(f"_acme-challenge.{own}", "TXT")
        assert _allows(policy, change, own_change, f"arn:aws:route53:::hostedzone/{APPS_ZONE}")
        assert not _allows(policy, change, own_change, f"arn:aws:route53:::hostedzone/{PLATFORM_ZONE}")


# --- IRSA: which pods can turn their service-account token into AWS credentials ---------------------

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")


def _objects(plan: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(cluster, object) for every Kubernetes object of the plan: declared, or rendered by a release."""
    found = []
    for r in plan["resources"]:
        if r["type"] == "kubernetes:helm.sh/v3:Release":
            namespace = r["inputs"].get("namespace")
            for o in r.get("rendered") or []:
                found.append((r["cluster"], {**o, "metadata": {"namespace": namespace, **o["metadata"]}}))
        elif r["type"].startswith("kubernetes:") and isinstance(r["inputs"].get("metadata"), dict):
            found.append((r["cluster"], {"kind": r["type"].rsplit(":", 1)[-1], **r["inputs"]}))
    return found


def _pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec = workload.get("spec") or {}
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def aws_holders(plan: dict[str, Any]) -> dict[tuple[str, str, str], str]:
    """(cluster, namespace, workload) -> the IAM role (name without Pulumi's suffix) its pods assume."""
    objects = _objects(plan)
    roles = {(c, o["metadata"]["namespace"], o["metadata"]["name"]): o["metadata"]["annotations"][ROLE_ANNOTATION]
             for c, o in objects if o["kind"] == "ServiceAccount" and ROLE_ANNOTATION in (o["metadata"].get("annotations") or {})}
    holders = {}
    for cluster, o in objects:
        if o["kind"] in WORKLOADS:
            account = _pod_spec(o).get("serviceAccountName") or "default"
            role = roles.get((cluster, o["metadata"]["namespace"], account))
            if role is not None:
                holders[(cluster, o["metadata"]["namespace"], o["metadata"]["name"])] = role.rsplit("/", 1)[-1].rsplit("-", 1)[0]
    return holders


# Every pod that gets AWS credentials on the prod stack, and the role: what each one needs, and no
# other pod. (The EBS CSI controller's role is the EKS add-on's, outside the manifests.)
EXPECTED_HOLDERS = {
    **{(c, "aws-load-balancer-controller", "aws-load-balancer-controller"): f"{c}-aws-load-balancer-controller"
       for c in ("control-plane", "dev", "prod")},
    **{(c, "cluster-autoscaler", "cluster-autoscaler-aws-cluster-autoscaler"): f"{c}-cluster-autoscaler"
       for c in ("control-plane", "dev", "prod")},
    ("control-plane", "cert-manager", "cert-manager"): "platform-tls-route53",
    ("dev", "cert-manager", "cert-manager"): "dev-platform-tls-route53",
    ("prod", "cert-manager", "cert-manager"): "prod-platform-tls-route53",
    ("control-plane", "gitlab", "gitlab-webservice-default"): "gitlab-object-storage",
    ("control-plane", "gitlab", "gitlab-sidekiq-all-in-1-v2"): "gitlab-object-storage",
    ("control-plane", "gitlab", "gitlab-toolbox"): "backups-gitlab",
    ("control-plane", "gitlab", "gitlab-toolbox-backup"): "backups-gitlab",
    ("control-plane", "harbor", "harbor-registry"): "harbor-registry",
    ("control-plane", "harbor", "harbor-backup"): "backups-harbor",
    ("control-plane", "vault", "vault"): "control-plane-vault-unseal",
    ("control-plane", "vault", "vault-snapshot"): "backups-vault",
    **{(c, "velero", "velero"): f"{c}-velero" for c in ("dev", "prod")},  # its prefix of the backup bucket
}


def test_only_the_pods_that_use_s3_get_gitlabs_object_storage_role(prod: dict[str, Any]) -> None:
    """GitLab's SSH server (gitlab-shell: the internet's `git` over SSH), Gitaly (runs git on every
    tenant's pushed repository), the metrics exporter and the migrations Job all ran as the chart's
    global service account, the one carrying the object-storage role: one exploit in any of them
    reads and deletes every tenant's CI artifacts, LFS objects, packages and uploads in S3. Only
    Rails (webservice) and Sidekiq keep objects there; the others run with no AWS role at all."""
    holders = aws_holders(prod)
    assert {k: v for k, v in holders.items() if v == "gitlab-object-storage"} == {
        k: v for k, v in EXPECTED_HOLDERS.items() if v == "gitlab-object-storage"}
    assert holders == EXPECTED_HOLDERS


# --- S3: the platform's objects over plain HTTP -----------------------------------------------------

def test_every_bucket_refuses_requests_without_tls(prod: dict[str, Any]) -> None:
    """Someone on the path between a pod and S3 (a node, a proxy, a client configured with an
    `http://` endpoint, as s3cmd and the registry's storage driver allow) reads backups, images and
    CI artifacts as they travel, and the request's signed headers with them. S3 answers plain HTTP
    unless the bucket's policy refuses it (S3's own recommendation): every bucket the program
    creates denies any request without TLS, whoever makes it."""
    buckets = {r["inputs"]["bucket"] for r in _of_type(prod, "aws:s3/bucket:Bucket")}
    assert len(buckets) == 7  # GitLab's four, Harbor's registry, the backups and their copy in another region
    policies = {r["inputs"]["bucket"]: json.loads(r["inputs"]["policy"]) for r in _of_type(prod, "aws:s3/bucketPolicy:BucketPolicy")}
    for bucket in buckets:
        assert {"Sid": "DenyWithoutTls", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}}} in policies.get(bucket, {}).get("Statement", []), bucket


# --- the preview role: whoever pushes a branch reads what the platform stored ----------------------

def _denies(policy: dict[str, Any], action: str) -> bool:
    return any(s["Effect"] == "Deny" and s["Resource"] == "*" and "Condition" not in s
               and any(fnmatch.fnmatchcase(action, a) for a in _listed(s["Action"])) for s in policy["Statement"])


def test_a_branch_pipeline_reads_no_cluster_audit_log_nor_database_log(prod: dict[str, Any]) -> None:
    """Anyone who can push a branch to the platform repository runs a job that assumes the preview
    role (ReadOnlyAccess minus data reads). ReadOnlyAccess also reads CloudWatch Logs (logs:Get*,
    FilterLogEvents, StartQuery, StartLiveTail) and RDS log files (rds:Download*): the program sends
    each EKS cluster's API and audit log to CloudWatch (who did what, and for many writes the
    object written: pod specs with their environment, exec'd commands), and GitLab's and Harbor's
    Postgres write failed statements, values included, to their logs. Those are stored data, not
    descriptions: the preview role's Deny covers them as it covers S3 objects."""
    assert all("audit" in c["inputs"]["enabledClusterLogTypes"] for c in _of_type(prod, "aws:eks/cluster:Cluster"))
    assert _of_type(prod, "aws:rds/instance:Instance")
    deny = json.loads(named(prod, "platform-pipeline-preview-no-data", "aws:iam/rolePolicy:RolePolicy")["inputs"]["policy"])
    for action in ("logs:GetLogEvents", "logs:FilterLogEvents", "logs:StartQuery", "logs:GetQueryResults", "logs:GetLogRecord",
                   "logs:StartLiveTail", "rds:DownloadDBLogFilePortion", "rds:DownloadCompleteDBLogFile",
                   "s3:GetObject", "secretsmanager:GetSecretValue", "kms:Decrypt"):
        assert _denies(deny, action), action


# --- every role: who may assume it, and what it may never do ----------------------------------------

# The EKS add-ons' roles (their pods are the add-ons', outside the manifests): role suffix -> kube-system account.
ADDON_ACCOUNTS = {"-ebs-csi": "ebs-csi-controller-sa", "-aws-node": "aws-node"}


def test_every_workload_role_trusts_one_service_account_of_the_cluster_its_pods_run_on(prod: dict[str, Any]) -> None:
    """A pod on the prod workload cluster (a tenant's) presents its own service-account token to
    STS for a control-plane role, or any token of its cluster with another audience. Each IRSA
    role trusts exactly one `system:serviceaccount:<ns>:<name>` and the STS audience (StringEquals,
    no StringLike), of the OIDC provider of the cluster where that account's pods run."""
    providers = {r["name"].removesuffix("-oidc"): r["inputs"]["url"].removeprefix("https://")
                 for r in _of_type(prod, "aws:iam/openIdConnectProvider:OpenIdConnectProvider") if r["name"].endswith("-oidc")}
    holders = {role: key for key, role in aws_holders(prod).items()}
    for role in _of_type(prod, "aws:iam/role:Role"):
        [statement] = json.loads(role["inputs"]["assumeRolePolicy"])["Statement"]
        if statement["Action"] != "sts:AssumeRoleWithWebIdentity" or "oidc.eks" not in statement["Principal"]["Federated"]:
            continue
        host = statement["Principal"]["Federated"].split(":oidc-provider/", 1)[1]
        assert statement["Condition"].keys() == {"StringEquals"}, role["name"]
        equals = statement["Condition"]["StringEquals"]
        assert equals[f"{host}:aud"] == "sts.amazonaws.com", role["name"]
        cluster = None  # a role no pod of the plan holds fails the test
        if role["name"] in holders:
            cluster, namespace, _ = holders[role["name"]]
            assert equals[f"{host}:sub"].rsplit(":", 2)[1] == namespace, role["name"]
        elif role["name"].endswith(tuple(ADDON_ACCOUNTS)):  # an EKS add-on's service account
            suffix = next(s for s in ADDON_ACCOUNTS if role["name"].endswith(s))
            cluster = role["name"].removesuffix(suffix)
            assert equals[f"{host}:sub"] == f"system:serviceaccount:kube-system:{ADDON_ACCOUNTS[suffix]}", role["name"]
        assert cluster is not None and providers[cluster] == host, role["name"]


POWERFUL = ("iam:PassRole", "iam:Create*", "iam:Put*", "iam:Attach*", "sts:AssumeRole", "kms:Decrypt", "kms:GenerateDataKey",
            "secretsmanager:GetSecretValue", "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:PutBucketPolicy",
            "route53:ChangeResourceRecordSets", "ec2:RunInstances", "ec2:ModifyInstanceAttribute", "eks:Create*", "eks:Update*",
            "eks:Associate*", "rds:Modify*", "rds:Delete*", "elasticache:Modify*")


def test_no_inline_policy_grants_a_powerful_action_on_every_resource(prod: dict[str, Any]) -> None:
    """A taken-over add-on (its IRSA role) reaches past its own objects: a role that may pass a
    role, decrypt with any key, read any bucket or change any zone. The platform's inline policies
    name their buckets, key, zone and tags; the exceptions are upstream's pinned documents (the
    load balancer controller's, tests/test_load_balancers.py), whose wide statements carry tag
    conditions or touch only load balancers and security groups."""
    for policy in _of_type(prod, "aws:iam/rolePolicy:RolePolicy"):
        if policy["name"].endswith("aws-load-balancer-controller") or policy["name"] == "platform-pipeline-preview-no-data":
            continue
        for statement in json.loads(policy["inputs"]["policy"])["Statement"]:
            if statement["Effect"] != "Allow" or "*" not in _listed(statement["Resource"]):
                continue
            for action in _listed(statement["Action"]):
                assert action != "*" and not action.endswith(":*"), (policy["name"], action)
                assert not any(fnmatch.fnmatchcase(action, p) or fnmatch.fnmatchcase(p, action) for p in POWERFUL), (policy["name"], action)


def _managed(arn: str) -> dict[str, Any]:
    """AWS's document of a managed policy (a copy under tests/fixtures: any other ARN fails the test)."""
    assert arn.startswith("arn:aws:iam::aws:policy/"), arn
    return json.loads((MANAGED_POLICIES / arn.rsplit("/", 1)[-1]).read_text())["PolicyVersion"]["Document"]


def _node_policies(prod: dict[str, Any], node: str) -> dict[str, dict[str, Any]]:
    """The policies attached to the node role, by ARN."""
    role = named(prod, node, "aws:iam/role:Role")
    return {a["inputs"]["policyArn"]: _managed(a["inputs"]["policyArn"])
            for a in _of_type(prod, "aws:iam/rolePolicyAttachment:RolePolicyAttachment") if role["urn"] in a["dependsOn"]}


def test_the_nodes_hold_only_what_every_eks_node_needs(prod: dict[str, Any]) -> None:
    """Whatever reaches a node's instance metadata (a hostNetwork pod, a process escaped from its
    container; the launch templates keep ordinary pods one hop away and require IMDSv2) gets the
    node role. It holds the EKS worker and ECR read policies only, and no inline policy; the EBS
    CSI controller and the VPC CNI (aws-node) have roles of their own."""
    nodes = {r["name"] for r in _of_type(prod, "aws:iam/role:Role")
             if json.loads(r["inputs"]["assumeRolePolicy"])["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}}
    assert nodes == {"control-plane-node", "dev-node", "prod-node"}
    for node in nodes:
        attached = {a["inputs"]["policyArn"].rsplit("/", 1)[-1] for a in _of_type(prod, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                    if a["name"].startswith(f"{node}-")}
        assert attached == {"AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryReadOnly"}, node
        assert {arn.rsplit("/", 1)[-1] for arn in _node_policies(prod, node)} == attached, node
        assert not [p for p in _of_type(prod, "aws:iam/rolePolicy:RolePolicy") if p["name"].startswith(f"{node}-")]
    for template in _of_type(prod, "aws:ec2/launchTemplate:LaunchTemplate"):
        metadata = template["inputs"]["metadataOptions"]
        assert metadata["httpTokens"] == "required" and metadata["httpPutResponseHopLimit"] == 1, template["name"]


NETWORK_INTERFACE_WRITES = ("ec2:ModifyNetworkInterfaceAttribute", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses",
                            "ec2:CreateNetworkInterface", "ec2:AttachNetworkInterface", "ec2:DetachNetworkInterface",
                            "ec2:DeleteNetworkInterface")


def test_the_node_role_can_change_no_network_interfaces_security_groups(prod: dict[str, Any]) -> None:
    """A tenant's CI build runs unconfined on the control plane's `ci` nodes and escapes its
    container: the node itself is one hop from the instance metadata, so it holds the node role's
    credentials. With AmazonEKS_CNI_Policy there, it puts any network interface of the account
    (Postgres', Redis', another cluster's nodes) into a security group of its choosing
    (ec2:ModifyNetworkInterfaceAttribute on `*`), or moves a private address onto its own node
    (ec2:AssignPrivateIpAddresses with AllowReassignment). The node role allows none of these, by
    AWS's documents of the policies it holds; only the VPC CNI's role does, and only
    kube-system/aws-node of its own cluster assumes that. (Root on the node could still read
    aws-node's projected token from the kubelet's directory: the builds' confinement's to stop.)"""
    for cluster in ("control-plane", "dev", "prod"):
        policies = _node_policies(prod, f"{cluster}-node")
        for action in NETWORK_INTERFACE_WRITES:
            assert not [arn for arn, document in policies.items() if _allows(document, action, {})], (cluster, action)
        document = _managed(named(prod, f"{cluster}-aws-node", "aws:iam/rolePolicyAttachment:RolePolicyAttachment")["inputs"]["policyArn"])
        assert all(_allows(document, action, {}) for action in NETWORK_INTERFACE_WRITES)  # the rights the CNI needs
        [statement] = json.loads(named(prod, f"{cluster}-aws-node", "aws:iam/role:Role")["inputs"]["assumeRolePolicy"])["Statement"]
        assert "system:serviceaccount:kube-system:aws-node" in statement["Condition"]["StringEquals"].values()


# --- the load balancer controller of a workload cluster and the control plane's security groups ----

def _vpc_id(prod: dict[str, Any], cluster: str) -> str:
    from tests.test_network import Plan

    return Plan.output(named(prod, f"{cluster}-vpc", "aws:ec2/vpc:Vpc"), "id")


def _denied_in(policies: list[dict[str, Any]], action: str, context: dict[str, list[str]]) -> bool:
    """Whether a Deny of `policies` refuses `action` on a request with the keys `context` (the
    operators these Deny statements use, with IAM's rules for a missing key; any other operator
    fails the test)."""
    def holds(operator: str, key: str, allowed: str | list[str]) -> bool:
        values, patterns = context.get(key), _listed(allowed)
        if operator == "Null":
            return (values is None) == (allowed == "true")
        if values is None:
            return operator == "ArnNotLike"  # a negated operator holds on a missing key; ForAnyValue does not
        return {"ArnNotLike": lambda: not any(fnmatch.fnmatchcase(v, p) for v in values for p in patterns),
                "ForAnyValue:StringNotEquals": lambda: any(v not in patterns for v in values)}[operator]()

    return any(s["Effect"] == "Deny" and any(fnmatch.fnmatchcase(action, a) for a in _listed(s["Action"]))
               and all(holds(operator, key, allowed) for operator, keys in s["Condition"].items() for key, allowed in keys.items())
               for policy in policies for s in policy["Statement"])


def _subnets(prod: dict[str, Any], cluster: str) -> list[str]:
    from tests.test_network import Plan

    return [Plan.output(r, "id") for r in _of_type(prod, "aws:ec2/subnet:Subnet") if r["inputs"]["vpcId"] == _vpc_id(prod, cluster)]


@pytest.mark.parametrize("cluster", ["dev", "prod"])
def test_a_workload_clusters_load_balancer_controller_cannot_open_the_control_planes_security_groups(
    prod: dict[str, Any], cluster: str,
) -> None:
    """The AWS Load Balancer Controller on a workload cluster (it acts on tenants' Services) is
    taken over. Upstream's policy (components/iam/, pinned) allows ec2:AuthorizeSecurityGroupIngress
    on every security group of the account without a condition, whatever VPC the group is in: it
    adds a rule for its VPC's addresses (peered with the control plane's) to the control plane's
    node or Postgres security group. A Deny beside upstream's policy keeps its security-group
    changes in its own cluster's VPC. (Target groups are not bounded so: ELB's CreateTargetGroup
    and RegisterTargets have no VPC condition; its load balancers are, by subnet, below.)"""
    policies = [json.loads(p["inputs"]["policy"]) for p in _of_type(prod, "aws:iam/rolePolicy:RolePolicy")
                if p["name"].startswith(f"{cluster}-aws-load-balancer-controller")]
    vpc = {c: {"ec2:Vpc": [f"arn:aws:ec2:eu-west-1:123456789012:vpc/{_vpc_id(prod, c)}"]} for c in ("control-plane", cluster)}
    for action in ("ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress", "ec2:DeleteSecurityGroup"):
        assert _denied_in(policies, action, vpc["control-plane"]), action
        assert not _denied_in(policies, action, vpc[cluster]), action  # its own NLBs' rules still work
        assert not _denied_in(policies, action, {}), action  # a request without ec2:Vpc: upstream's statements decide


@pytest.mark.parametrize("cluster", ["dev", "prod"])
def test_a_workload_clusters_load_balancer_controller_builds_no_load_balancer_in_the_control_planes_vpc(
    prod: dict[str, Any], cluster: str,
) -> None:
    """The same controller creates an internet-facing NLB in the control plane's public subnets with
    the control plane's cluster security group (Postgres, Redis and every control-plane node admit
    its members) and targets by address: GitLab's database or Vault's pods on the internet.
    Upstream's policy allows CreateLoadBalancer in any subnet; the Deny beside it allows the
    cluster's own subnets only (and so the security groups of its own VPC)."""
    policies = [json.loads(p["inputs"]["policy"]) for p in _of_type(prod, "aws:iam/rolePolicy:RolePolicy")
                if p["name"].startswith(f"{cluster}-aws-load-balancer-controller")]
    own, control_plane = _subnets(prod, cluster), _subnets(prod, "control-plane")
    assert len(own) == len(control_plane) == 6
    for action in ("elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:SetSubnets"):
        assert _denied_in(policies, action, {"elasticloadbalancing:Subnet": control_plane[:1]}), action
        assert _denied_in(policies, action, {"elasticloadbalancing:Subnet": [own[0], control_plane[0]]}), action
        assert not _denied_in(policies, action, {"elasticloadbalancing:Subnet": own[3:]}), action


def test_no_chart_renders_a_service_account_the_program_declares(prod: dict[str, Any]) -> None:
    """The program declares the IRSA accounts (their role annotations); a chart that renders one of
    the same name fails its install on the existing account, or, adopted, drops the annotation."""
    declared = {(r["cluster"], r["inputs"]["metadata"]["namespace"], r["inputs"]["metadata"]["name"])
                for r in _of_type(prod, "kubernetes:core/v1:ServiceAccount")}
    rendered = {(r["cluster"], o["metadata"].get("namespace") or r["inputs"].get("namespace"), o["metadata"]["name"])
                for r in _of_type(prod, "kubernetes:helm.sh/v3:Release") for o in r.get("rendered") or [] if o["kind"] == "ServiceAccount"}
    assert ("control-plane", "gitlab", "gitlab") in declared
    assert not declared & rendered


# --- the databases' history: whoever holds a role the program creates deletes the backups -----------

BACKUP_DELETIONS = ("rds:DeleteDBSnapshot", "rds:DeleteDBClusterSnapshot", "rds:DeleteDBInstanceAutomatedBackup",
                    "rds:DeleteDBClusterAutomatedBackup", "elasticache:DeleteSnapshot")


def _role_policies(prod: dict[str, Any], role: dict[str, Any]) -> list[dict[str, Any]]:
    """Every identity policy of `role`: AWS's managed documents attached to it and its inline policies."""
    attached = [_managed(a["inputs"]["policyArn"]) for a in _of_type(prod, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                if role["urn"] in a["dependsOn"]]
    inline = [json.loads(p["inputs"]["policy"]) for p in _of_type(prod, "aws:iam/rolePolicy:RolePolicy") if role["urn"] in p["dependsOn"]]
    return attached + inline


def test_no_role_the_program_creates_deletes_database_snapshots_or_retained_backups(prod: dict[str, Any]) -> None:
    """A hijacked deploy pipeline (AdministratorAccess) or any add-on's role deletes the RDS instances'
    final snapshots and the automated backups RDS keeps after an instance is deleted, so a rebuilt
    stack has nothing to restore from. An explicit Deny wins over every Allow of the role."""
    instances = _of_type(prod, "aws:rds/instance:Instance")
    assert instances and all(i["inputs"]["deleteAutomatedBackups"] is False for i in instances)
    roles = _of_type(prod, "aws:iam/role:Role")
    deploy = named(prod, "platform-pipeline-deploy", "aws:iam/role:Role")
    assert any(_allows(p, "rds:DeleteDBInstance", {}) for p in _role_policies(prod, deploy))  # it may still run destroy
    for role in roles:
        policies = _role_policies(prod, role)
        for action in BACKUP_DELETIONS:
            allowed = any(_allows(p, action, {}) for p in policies) and not any(_denies(p, action) for p in policies)
            assert not allowed, (role["name"], action)


# What else keeps backups a hijacked deploy could take: the backup bucket's locked versions (governance
# mode yields to s3:BypassGovernanceRetention), tenants' EBS snapshots (Velero's, on EKS) and the locked
# Recycle Bin rule that keeps a deleted one 7 days. No run of the program does any of these.
DEPLOY_NEVER = ("s3:BypassGovernanceRetention", "ec2:DeleteSnapshot", "rbin:UnlockRule", "rbin:DeleteRule")


def test_a_hijacked_deploy_cannot_lift_the_backup_locks_or_delete_volume_snapshots(prod: dict[str, Any]) -> None:
    """The deploy role is AdministratorAccess (README: it creates roles). Object Lock in governance
    mode stops every backup job, but not a principal allowed s3:BypassGovernanceRetention, which
    AdministratorAccess is: with it a main-branch pipeline deletes every locked backup version.
    Tenants' CSI snapshots are deleted with ec2:DeleteSnapshot and kept 7 days by a locked Recycle
    Bin rule, which rbin:UnlockRule starts to lift. (The EBS CSI driver's own role keeps
    ec2:DeleteSnapshot: Velero deletes a snapshot through it when the backup's ttl ends.)"""
    deploy = named(prod, "platform-pipeline-deploy", "aws:iam/role:Role")
    policies = _role_policies(prod, deploy)
    for action in DEPLOY_NEVER:
        assert any(_allows(p, action, {}) for p in policies), action  # AdministratorAccess: the Deny must do it
        assert any(_denies(p, action) for p in policies), f"the deploy role may {action}"
    for role in _of_type(prod, "aws:iam/role:Role"):
        policies = _role_policies(prod, role)
        for action in ("s3:BypassGovernanceRetention", "rbin:UnlockRule"):
            assert not (any(_allows(p, action, {}) for p in policies) and not any(_denies(p, action) for p in policies)), (role["name"], action)
