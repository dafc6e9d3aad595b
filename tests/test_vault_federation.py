"""Vault federation and the pipeline's AWS roles: on both stacks' plans, and through
`bind_workload` / `bind_ci` in a small program under the mock engine.
"""

from __future__ import annotations

import base64
import inspect
import json
from pathlib import Path
from typing import Any, Callable

import pulumi
import pulumi_kubernetes as k8s
import pulumi_vault as vault
import pytest
import yaml

from components.ci_identity import DATA_READS, pipeline_trust_policy
from components.cluster import ApiServer, ClusterHandle
from components.inventory import CredentialInventory
from components.tenancy import WorkloadBinder
from components.vault_federation import (
    CI_TOKEN_TTL,
    TOKEN_REVIEW_ROLE,
    WORKLOAD_AUDIENCE,
    VaultFederation,
    VaultFederationArgs,
)
from policy.inventory import check_credentials
from policy.pack.checks import check_vault_role_bound
from tests.mock_program import run_program
from tests.validation import kubernetes_errors

ROOT = Path(__file__).resolve().parent.parent
CLUSTERS = ("control-plane", "dev", "prod")
JWT_ROLE = "vault:jwt/authBackendRole:AuthBackendRole"
K8S_ROLE = "vault:kubernetes/authBackendRole:AuthBackendRole"
CRB = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding"
IAM_ROLE = "aws:iam/role:Role"


def of_type(resources: list[dict], type_: str) -> list[dict]:
    return [r for r in resources if r["type"] == type_]


def by_name(resources: list[dict], type_: str) -> dict[str, dict]:
    return {r["name"]: r for r in of_type(resources, type_)}


def stack_config(stack: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]


# --- the plans: a mount per cluster, GitLab CI, the pipeline's roles ----------------------------------

def test_every_cluster_has_its_own_mount_without_a_stored_reviewer(plan: dict) -> None:
    resources, clusters = plan["resources"], plan["outputs"]["clusters"]
    jwt_mounts = by_name(resources, "vault:jwt/authBackend:AuthBackend")
    k8s_mounts = by_name(resources, "vault:index/authBackend:AuthBackend")
    configs = by_name(resources, "vault:kubernetes/authBackendConfig:AuthBackendConfig")
    config = stack_config(plan["stack"])["platform:clusters"]
    for cluster in CLUSTERS:
        if clusters[cluster]["eks"]:
            mount = jwt_mounts[f"vault-federation-jwt-{cluster}"]["inputs"]
            assert mount["path"] == f"jwt-{cluster}" and mount["type"] == "jwt"
            # The cluster's own issuer, discovered over public TLS: no keys or CA pinned, nothing stored.
            assert mount["oidcDiscoveryUrl"] == mount["boundIssuer"] == clusters[cluster]["oidcIssuerUrl"]
            assert "oidcDiscoveryCaPem" not in mount and "jwtValidationPubkeys" not in mount
        else:
            mount = k8s_mounts[f"vault-federation-kubernetes-{cluster}"]["inputs"]
            assert mount["path"] == f"kubernetes-{cluster}" and mount["type"] == "kubernetes"
            settings = configs[f"vault-federation-kubernetes-{cluster}"]["inputs"]
            key = "controlPlane" if cluster == "control-plane" else cluster
            assert settings["backend"] == f"kubernetes-{cluster}"
            assert settings["kubernetesHost"] == clusters[cluster]["endpoint"] == config[key]["kubeconfig"]["server"]
            assert settings["kubernetesCaCert"] == base64.b64decode(config[key]["kubeconfig"]["caData"]).decode()
            # The client's token reviews itself: no reviewer token, not Vault's own pod token.
            assert settings["disableLocalCaJwt"] is True
            assert not any("reviewer" in k.lower() for k in settings), settings
        assert mount["tune"]["maxLeaseTtl"] == "1h"


def test_kubernetes_auth_clusters_get_a_tokenreview_only_cluster_role(plan: dict) -> None:
    roles = [r for r in of_type(plan["resources"], "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole")
             if r["inputs"]["metadata"]["name"] == TOKEN_REVIEW_ROLE]
    kubernetes_auth = sorted(c for c in CLUSTERS if not plan["outputs"]["clusters"][c]["eks"])
    assert sorted(r["cluster"] for r in roles) == kubernetes_auth
    for role in roles:
        # Only what Vault's TokenReview needs; system:auth-delegator would add SubjectAccessReviews.
        assert role["inputs"]["rules"] == [
            {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]}
        ]
        assert not kubernetes_errors(role["inputs"])


def test_gitlab_ci_mount_trusts_the_platform_gitlab(plan: dict) -> None:
    domain = stack_config(plan["stack"])["platform:domain"]
    mount = by_name(plan["resources"], "vault:jwt/authBackend:AuthBackend")["vault-federation-jwt-gitlab"]
    inputs = mount["inputs"]
    assert inputs["path"] == "jwt-gitlab" and inputs["type"] == "jwt"
    assert inputs["oidcDiscoveryUrl"] == inputs["boundIssuer"] == f"https://gitlab.{domain}"
    # The platform CA where GitLab's certificate comes from it; the system roots (no key) with ACME.
    assert inputs.get("oidcDiscoveryCaPem") == (plan["outputs"]["caBundle"] or None)
    assert inputs["tune"]["maxLeaseTtl"] == "1h"  # the deploy job's ceiling; roles give CI jobs five minutes
    gitlab = next(r for r in of_type(plan["resources"], "kubernetes:helm.sh/v3:Release") if r["inputs"]["chart"] == "gitlab")
    assert gitlab["urn"] in mount["dependsOn"], "Vault reads GitLab's discovery document when the mount is configured"


def test_the_pipeline_roles_exist_on_eks_only_and_are_exported(plan: dict) -> None:
    providers = [r for r in of_type(plan["resources"], "aws:iam/openIdConnectProvider:OpenIdConnectProvider")
                 if r["name"] == "platform-pipeline-gitlab"]
    if not plan["outputs"]["clusters"]["control-plane"]["eks"]:
        assert not providers
        assert not {"previewRoleArn", "deployRoleArn", "planRoleArn"} & set(plan["outputs"])
        return
    domain = stack_config(plan["stack"])["platform:domain"]
    assert [p["inputs"]["url"] for p in providers] == [f"https://gitlab.{domain}"]
    assert providers[0]["inputs"]["clientIdLists"] == ["sts.amazonaws.com"]
    roles = by_name(plan["resources"], IAM_ROLE)
    provider_arn = f"arn:aws:iam::123456789012:oidc-provider/gitlab.{domain}"
    path = "platform/platform-bootstrap"  # platform:pipeline.projectPath's default
    expected = {
        "platform-pipeline-preview": {
            "StringEquals": {f"gitlab.{domain}:aud": "sts.amazonaws.com"},
            "StringLike": {f"gitlab.{domain}:sub": f"project_path:{path}:ref_type:branch:ref:*"},
        },
        "platform-pipeline-deploy": {
            "StringEquals": {f"gitlab.{domain}:aud": "sts.amazonaws.com",
                             f"gitlab.{domain}:sub": f"project_path:{path}:ref_type:branch:ref:main"},
        },
        # main's plans and the drift checks: it reads every Secret of the clusters, so main's jobs alone, as deploy.
        "platform-pipeline-plan": {
            "StringEquals": {f"gitlab.{domain}:aud": "sts.amazonaws.com",
                             f"gitlab.{domain}:sub": f"project_path:{path}:ref_type:branch:ref:main"},
        },
    }
    for name, condition in expected.items():
        trust = json.loads(roles[name]["inputs"]["assumeRolePolicy"])
        assert trust["Statement"] == [{"Effect": "Allow", "Principal": {"Federated": provider_arn},
                                       "Action": "sts:AssumeRoleWithWebIdentity", "Condition": condition}]
        assert roles[name]["inputs"]["maxSessionDuration"] == 3600
    attachments = {r["name"]: r["inputs"]["policyArn"] for r in of_type(plan["resources"], "aws:iam/rolePolicyAttachment:RolePolicyAttachment")}
    assert attachments["platform-pipeline-preview"] == "arn:aws:iam::aws:policy/ReadOnlyAccess"
    assert attachments["platform-pipeline-deploy"] == "arn:aws:iam::aws:policy/AdministratorAccess"
    assert attachments["platform-pipeline-plan"] == "arn:aws:iam::aws:policy/ReadOnlyAccess"
    policies = by_name(plan["resources"], "aws:iam/rolePolicy:RolePolicy")
    for reader in ("preview", "plan"):  # a refresh of the program's AWS resources describes them and reads no data
        deny = json.loads(policies[f"platform-pipeline-{reader}-no-data"]["inputs"]["policy"])
        assert deny["Statement"][0]["Effect"] == "Deny" and set(deny["Statement"][0]["Action"]) == set(DATA_READS), reader
    assert ":role/platform-pipeline-preview" in plan["outputs"]["previewRoleArn"]  # auto-named: a suffix follows
    assert ":role/platform-pipeline-deploy" in plan["outputs"]["deployRoleArn"]
    assert ":role/platform-pipeline-plan" in plan["outputs"]["planRoleArn"]  # PLAN_ROLE_ARN


def _access(plan: dict, principal: str) -> tuple[list[dict], list[dict]]:
    """The access entries of `principal` and their policy associations."""
    entries = [r for r in of_type(plan["resources"], "aws:eks/accessEntry:AccessEntry") if r["inputs"]["principalArn"] == principal]
    policies = [r for r in of_type(plan["resources"], "aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
                if r["inputs"]["principalArn"] == principal]
    return entries, policies


def _each_eks_cluster(plan: dict) -> list[tuple[str, str]]:
    """(cluster name, its AWS provider) of each EKS cluster, from the configured admins' entries (their auto-names)."""
    clusters = of_type(plan["resources"], "aws:eks/cluster:Cluster")
    assert sorted(c["name"] for c in clusters) == ["control-plane", "dev", "prod"]
    assert {json.dumps(c["inputs"]["accessConfig"], sort_keys=True) for c in clusters} == {
        json.dumps({"authenticationMode": "API", "bootstrapClusterCreatorAdminPermissions": False}, sort_keys=True)}
    admins = [r for r in of_type(plan["resources"], "aws:eks/accessEntry:AccessEntry") if r["name"] in {f"{c['name']}-admin-0" for c in clusters}]
    each_cluster = sorted((a["inputs"]["clusterName"], a["provider"]) for a in admins)
    assert len(each_cluster) == 3
    return each_cluster


def _entry_on_each_cluster(plan: dict, principal: str, policy_arn: str) -> None:
    """One STANDARD entry of `principal` on each EKS cluster (through that cluster's provider), with `policy_arn`, cluster-wide."""
    each_cluster = _each_eks_cluster(plan)
    entries, policies = _access(plan, principal)
    assert sorted((e["inputs"]["clusterName"], e["provider"]) for e in entries) == each_cluster, [e["name"] for e in entries]
    assert sorted((p["inputs"]["clusterName"], p["provider"]) for p in policies) == each_cluster
    assert {e["inputs"]["type"] for e in entries} == {"STANDARD"}
    assert all(p["inputs"]["policyArn"] == policy_arn and p["inputs"]["accessScope"] == {"type": "cluster"} for p in policies), [
        p["inputs"]["policyArn"] for p in policies]


def test_the_deploy_role_administers_every_eks_cluster_through_an_access_entry(renders: dict) -> None:
    """The deploy jobs' `pulumi up` reaches each cluster's API server as the deploy role (the kubeconfig's exec runs
    `aws eks get-token` with the job's AWS session). The clusters authenticate from access entries alone
    (authenticationMode API, no creator admin: components/cluster.py), and AWS's AdministratorAccess gives no
    Kubernetes right: without an entry every Kubernetes call of the deploy is Unauthorized."""
    plan = renders["prod"].plan
    _entry_on_each_cluster(plan, plan["outputs"]["deployRoleArn"], "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy")
    # The preview role (any branch may assume it) gets none: the Kubernetes reads a refresh needs include every Secret.
    assert _access(plan, plan["outputs"]["previewRoleArn"]) == ([], [])


def test_the_plan_role_reads_every_eks_cluster_and_only_main_may_assume_it(renders: dict) -> None:
    """main's `plan-*` jobs (whose plans the deploys apply) and the `drift-*` schedules run `pulumi preview --refresh`:
    the refresh reads every object the stack declares, Secrets and Helm's release Secrets included. As the preview
    role (no entry) every such read on an EKS cluster is Unauthorized, so `plan-prod`, and with it `deploy-prod`, and
    `drift-prod` fail. The plan role reads the clusters with EKS's AmazonEKSAdminViewPolicy (get, list, watch on every
    resource, Secrets included; no write: EKS user guide, access-policy-permissions) and, reading Secrets, is trusted
    exactly as the deploy role: main's ID tokens only."""
    plan = renders["prod"].plan
    outputs = plan["outputs"]
    _entry_on_each_cluster(plan, outputs["planRoleArn"], "arn:aws:eks::aws:cluster-access-policy/AmazonEKSAdminViewPolicy")
    roles = {r["name"]: r for r in of_type(plan["resources"], IAM_ROLE)}
    trust = {name: json.loads(roles[name]["inputs"]["assumeRolePolicy"]) for name in ("platform-pipeline-plan", "platform-pipeline-deploy")}
    assert trust["platform-pipeline-plan"] == trust["platform-pipeline-deploy"]
    [condition] = [s["Condition"] for s in trust["platform-pipeline-plan"]["Statement"]]
    assert "StringLike" not in condition and any(
        key.endswith(":sub") and value.endswith(":ref_type:branch:ref:main") for key, value in condition["StringEquals"].items())
    # Only a role main alone may assume has any entry: none the preview role, which any branch assumes.
    principals = {r["inputs"]["principalArn"] for r in of_type(plan["resources"], "aws:eks/accessEntry:AccessEntry")}
    assert outputs["previewRoleArn"] not in principals
    assert {outputs["planRoleArn"], outputs["deployRoleArn"]} <= principals


def test_ci_file_asks_for_the_audience_the_roles_trust() -> None:
    ci = yaml.safe_load((ROOT / ".gitlab-ci.yml").read_text())
    assert ci[".pulumi"]["id_tokens"]["AWS_ID_TOKEN"]["aud"] == "sts.amazonaws.com"
    assert ci[".pulumi"]["variables"]["AWS_ROLE_ARN"] == "$PREVIEW_ROLE_ARN"
    assert ci[".deploy"]["variables"]["AWS_ROLE_ARN"] == "$DEPLOY_ROLE_ARN"


def test_trust_policy_never_matches_another_project_or_branch() -> None:
    deploy = pipeline_trust_policy("arn:p", "https://gitlab.example.com", "platform/platform-bootstrap", "main")
    condition = deploy["Statement"][0]["Condition"]
    assert "StringLike" not in condition  # the deploy role is an exact match
    assert condition["StringEquals"]["gitlab.example.com:sub"] == "project_path:platform/platform-bootstrap:ref_type:branch:ref:main"


# --- bind_workload and bind_ci in a program ---------------------------------------------------------

VAULT_URL = "https://vault.test.example.com"
GITLAB_URL = "https://gitlab.test.example.com"
EKS_ISSUER = "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC"


def run(program: Callable[[VaultFederation, pulumi.Resource], None], gitlab: bool = True) -> dict[str, Any]:
    """A federation over an EKS cluster ("prod") and a kubeconfig cluster ("dev"); `program` binds roles."""
    inventory = CredentialInventory()

    def main() -> None:
        def handle(name: str, eks: bool) -> ClusterHandle:
            return ClusterHandle(
                role=name, provider=k8s.Provider(f"{name}-k8s", kubeconfig="{}"),
                endpoint=pulumi.Output.from_input(f"https://{name}:6443"),
                ca_data=pulumi.Output.from_input(base64.b64encode(b"PEM").decode()),
                kubernetes_version="1.33", api_server=ApiServer.of_server(f"https://{name}:6443"), is_eks=eks,
                oidc_issuer_url=pulumi.Output.from_input(EKS_ISSUER) if eks else None,
            )

        federation = VaultFederation(
            "vault-federation",
            VaultFederationArgs(
                provider=vault.Provider("control-plane-vault", address=VAULT_URL),
                vault_url=VAULT_URL,
                clusters={"prod": handle("prod", True), "dev": handle("dev", False)},
                inventory=inventory,
                gitlab_url=GITLAB_URL if gitlab else None,
            ),
        )
        tenant = pulumi.ComponentResource("platform:tenant:Tenant", "payments")
        program(federation, tenant)

    return {"records": run_program(main).resources, "credentials": inventory.entries()}


def _bind_examples(federation: VaultFederation, tenant: pulumi.Resource) -> None:
    federation.bind_workload("payments-prod", "prod", ["payments-prod"], ["vault-secrets"], ["tenant-payments-read"], tenant)
    federation.bind_workload("payments-dev", "dev", ["payments-dev", "payments-sandbox"], ["vault-secrets", "app"],
                             ["tenant-payments-read"], tenant)
    # A second role for an account already bound: no second ClusterRoleBinding.
    federation.bind_workload("payments-dev-extra", "dev", ["payments-dev"], ["app"], ["tenant-payments-read"], tenant)
    federation.bind_ci("payments-ci", ["payments/app", "payments/ops"], None, ["tenant-payments-read"], tenant)
    federation.bind_ci("payments-deploy", ["payments/ops"], ["main"], ["tenant-payments-write"], tenant)


@pytest.fixture(scope="module")
def bound() -> dict[str, Any]:
    return run(_bind_examples)


def test_eks_roles_bind_exact_subjects_and_the_workload_audience(bound: dict[str, Any]) -> None:
    role = by_name(bound["records"], JWT_ROLE)["payments-prod"]
    inputs = role["inputs"]
    assert inputs["backend"] == "jwt-prod" and inputs["roleName"] == "payments-prod" and inputs["roleType"] == "jwt"
    assert inputs["boundAudiences"] == [WORKLOAD_AUDIENCE]
    assert inputs["boundClaims"] == {"sub": "system:serviceaccount:payments-prod:vault-secrets"}
    assert inputs["boundClaimsType"] == "string" and inputs["userClaim"] == "sub"
    assert inputs["tokenPolicies"] == ["tenant-payments-read"]
    assert inputs["tokenTtl"] <= inputs["tokenMaxTtl"] <= 3600
    assert role["parent"].endswith("platform:tenant:Tenant::payments")
    assert role["provider"].endswith("pulumi:providers:vault::control-plane-vault")
    mount = by_name(bound["records"], "vault:jwt/authBackend:AuthBackend")["vault-federation-jwt-prod"]
    assert mount["urn"] in role["dependsOn"]
    assert not of_type([r for r in bound["records"] if r["cluster"] == "prod"], CRB), "JWT auth needs no RBAC"


def test_kubernetes_roles_bind_names_and_namespaces_and_each_account_may_review_itself(bound: dict[str, Any]) -> None:
    role = by_name(bound["records"], K8S_ROLE)["payments-dev"]["inputs"]
    assert role["backend"] == "kubernetes-dev"
    assert role["boundServiceAccountNames"] == ["vault-secrets", "app"]
    assert role["boundServiceAccountNamespaces"] == ["payments-dev", "payments-sandbox"]
    assert "audience" not in role  # the token is its own reviewer: it carries the API server's audience
    assert role["tokenTtl"] <= role["tokenMaxTtl"] <= 3600
    config = by_name(bound["records"], "vault:kubernetes/authBackendConfig:AuthBackendConfig")["vault-federation-kubernetes-dev"]
    assert config["urn"] in by_name(bound["records"], K8S_ROLE)["payments-dev"]["dependsOn"]
    bindings = of_type(bound["records"], CRB)
    subjects = sorted((b["inputs"]["subjects"][0]["namespace"], b["inputs"]["subjects"][0]["name"]) for b in bindings)
    # One per bound account, once, however many roles bind it; none for the EKS cluster.
    assert subjects == [("payments-dev", "app"), ("payments-dev", "vault-secrets"),
                        ("payments-sandbox", "app"), ("payments-sandbox", "vault-secrets")]
    for binding in bindings:
        assert binding["cluster"] == "dev"
        assert binding["inputs"]["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": TOKEN_REVIEW_ROLE}
        assert binding["inputs"]["subjects"][0]["kind"] == "ServiceAccount"
        assert binding["parent"].endswith("platform:tenant:Tenant::payments")
        assert not kubernetes_errors(binding["inputs"])
    assert len({b["inputs"]["metadata"]["name"] for b in bindings}) == len(bindings)


def test_ci_roles_bind_projects_exactly_and_refs_as_branches(bound: dict[str, Any]) -> None:
    roles = by_name(bound["records"], JWT_ROLE)
    any_ref, deploy = roles["payments-ci"]["inputs"], roles["payments-deploy"]["inputs"]
    for inputs in (any_ref, deploy):
        assert inputs["backend"] == "jwt-gitlab" and inputs["roleType"] == "jwt"
        assert inputs["boundAudiences"] == [VAULT_URL]
        assert inputs["boundClaimsType"] == "string"  # exact values, never globs
        assert not inputs.get("disableBoundClaimsParsing")  # comma-separated values become lists
        assert inputs["tokenTtl"] == inputs["tokenMaxTtl"] == CI_TOKEN_TTL <= 300
        assert inputs["claimMappings"]["project_path"] == "project_path"
    # Protected refs of push or manual pipelines only, never a merge request's pipeline.
    protected = {"ref_protected": "true", "pipeline_source": "push,web,schedule"}
    assert any_ref["boundClaims"] == {"project_path": "payments/app,payments/ops", **protected}
    # A tag named "main" must not pass for the branch.
    assert deploy["boundClaims"] == {"project_path": "payments/ops", "ref": "main", "ref_type": "branch", **protected}


def test_every_bound_role_passes_the_policy_pack_and_the_inventory(bound: dict[str, Any]) -> None:
    for role in of_type(bound["records"], JWT_ROLE) + of_type(bound["records"], K8S_ROLE):
        assert check_vault_role_bound(role["type"], role["inputs"], role["options"], {}) == [], role["name"]
    listed = {name for entry in bound["credentials"] for name in entry["resources"]}
    assert {"payments-prod", "payments-dev", "payments-dev-extra", "payments-ci", "payments-deploy"} <= listed
    plan = {"resources": bound["records"], "outputs": {"credentials": bound["credentials"]}}
    assert check_credentials(plan) == []


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda f, t: f.bind_workload("r", "dev", ["*"], ["sa"], ["p"], t), "'*' is not allowed"),
        (lambda f, t: f.bind_workload("r", "dev", ["ns"], ["*"], ["p"], t), "'*' is not allowed"),
        (lambda f, t: f.bind_workload("r", "prod", ["ns"], ["app-*"], ["p"], t), "'app-*' is not allowed"),
        (lambda f, t: f.bind_workload("r", "dev", [], ["sa"], ["p"], t), "at least one"),
        (lambda f, t: f.bind_workload("r", "dev", ["ns"], [], ["p"], t), "at least one"),
        (lambda f, t: f.bind_workload("r", "dev", ["ns"], ["sa"], [], t), "at least one"),
        (lambda f, t: f.bind_workload("r", "dev", ["a,b"], ["sa"], ["p"], t), "'a,b' is not allowed"),
        (lambda f, t: f.bind_workload("r", "dev", ["ns"], ["sa"], ["root"], t), "root policy"),
        (lambda f, t: f.bind_workload("r", "staging", ["ns"], ["sa"], ["p"], t), "no Vault auth mount for cluster 'staging'"),
        (lambda f, t: f.bind_ci("r", ["*"], None, ["p"], t), "'*' is not allowed"),
        (lambda f, t: f.bind_ci("r", ["group/*"], None, ["p"], t), "'group/*' is not allowed"),
        (lambda f, t: f.bind_ci("r", [], None, ["p"], t), "at least one"),
        (lambda f, t: f.bind_ci("r", ["g/p"], ["*"], ["p"], t), "'*' is not allowed"),
        (lambda f, t: f.bind_ci("r", ["g/p"], [], ["p"], t), "at least one"),
        (lambda f, t: f.bind_ci("r", ["g/p"], ["main,dev"], ["p"], t), "'main,dev' is not allowed"),
        # A merge request's pipeline runs its branch's code: only in protected environments, never beside other sources.
        (lambda f, t: f.bind_ci("r", ["g/p"], None, ["p"], t, pipeline_sources=("merge_request_event",)), "only in protected environments"),
        (lambda f, t: f.bind_ci("r", ["g/p"], ["main"], ["p"], t, environments=["preview/dev"], pipeline_sources=("merge_request_event",)),
         "only in protected environments"),
        (lambda f, t: f.bind_ci("r", ["g/p"], None, ["p"], t, environments=["preview/dev"], pipeline_sources=("push", "merge_request_event")),
         "merge_request_event alone"),
        # Deployers of protected environments: which ones must be said, or the role would take any job.
        (lambda f, t: f.bind_ci("r", ["g/p"], ["main"], ["p"], t, protected_environments=True), "protected environments, but none named"),
    ],
)
def test_wildcards_empty_lists_and_unknown_clusters_are_refused(call: Callable, message: str) -> None:
    def program(federation: VaultFederation, tenant: pulumi.Resource) -> None:
        with pytest.raises(ValueError, match=message.replace("*", r"\*").replace("(", r"\(")):
            call(federation, tenant)

    records = run(program)["records"]
    assert not of_type(records, JWT_ROLE) + of_type(records, K8S_ROLE)  # refused before anything was declared


def test_bind_ci_without_gitlab_is_refused() -> None:
    def program(federation: VaultFederation, tenant: pulumi.Resource) -> None:
        with pytest.raises(ValueError, match="GitLab is not enabled"):
            federation.bind_ci("r", ["g/p"], None, ["p"], tenant)

    records = run(program, gitlab=False)["records"]
    assert "vault-federation-jwt-gitlab" not in by_name(records, "vault:jwt/authBackend:AuthBackend")


def test_auth_path_names_each_clusters_mount() -> None:
    paths: dict[str, str] = {}

    def program(federation: VaultFederation, tenant: pulumi.Resource) -> None:
        paths.update({c: federation.auth_path(c) for c in ("prod", "dev")})

    run(program)
    assert paths == {"prod": "jwt-prod", "dev": "kubernetes-dev"}


def test_vault_federation_is_the_tenants_workload_binder() -> None:
    # components/tenancy.WorkloadBinder is what tenant code calls: same methods, same parameters.
    for method in ("bind_workload", "bind_ci", "auth_path"):
        ours = list(inspect.signature(getattr(VaultFederation, method)).parameters)
        theirs = list(inspect.signature(getattr(WorkloadBinder, method)).parameters)
        assert ours == theirs, method
