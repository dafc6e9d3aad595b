"""The CrossGuard policy pack (policy/pack): its rules over both stacks' plans, over violating
fixtures, and through the CrossGuard adapters CrossGuard itself calls.

Never construct `PolicyPack(...)` here: it starts the analyzer's gRPC server and blocks forever.
The entry point is run in a subprocess with PolicyPack replaced and a timeout instead.
"""

from __future__ import annotations

import base64
import copy
import importlib.metadata
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pulumi_policy import PolicyCustomTimeouts, PolicyResource, PolicyResourceOptions, ResourceValidationArgs, StackValidationArgs
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from platformctl.mocks import REDACTED
from platformctl.render import read_stack_file
from policy.pack.checks import CHECKS, HELM_TYPES, SECRET, UNKNOWN, is_stateful
from policy.pack.crossguard import (
    BY_NAME,
    INVENTORY_NOT_VISIBLE,
    POLICIES,
    PROTECT_SCHEMA,
    SECRETS_NOT_VISIBLE,
    resource_options,
)
from stacks.config import load_platform_config

ROOT = Path(__file__).resolve().parent.parent
PACK = ROOT / "policy" / "pack"
STACKS = ("dev", "prod")
PACK_CONFIG = {stack: json.loads((PACK / "config" / f"{stack}.json").read_text()) for stack in STACKS}

SECRET_OPTIONS = {"protect": False, "additionalSecretOutputs": ["data", "stringData"]}  # what every k8s Secret gets


def run_checks(
    resource_type: str, props: dict[str, Any], options: dict[str, Any] | None = None, pack_config: dict[str, Any] | None = None
) -> dict[str, list[str]]:
    """Policy name -> its messages, for every policy that reports something."""
    options = options if options is not None else {"protect": False}
    pack_config = pack_config if pack_config is not None else {}
    found = {}
    for name, (check, _) in CHECKS.items():
        messages = check(resource_type, props, options, pack_config.get(name, {}))
        assert all(isinstance(m, str) and m.strip() for m in messages), (name, messages)
        if messages:
            found[name] = messages
    return found


# --- (a) the plans of both stacks pass every rule ----------------------------------------------

def test_every_plan_resource_passes_every_rule(plan: dict) -> None:
    config = PACK_CONFIG[plan["stack"]]
    problems = [
        f"{r['type']} {r['name']}: [{policy}] {message}"
        for r in plan["resources"]
        for policy, messages in run_checks(r["type"], r["inputs"], r["options"], config).items()
        for message in messages
    ]
    assert not problems, "\n".join(problems)
    # Not vacuous: the rules that read Helm releases had releases to read.
    assert any(r["type"] in HELM_TYPES for r in plan["resources"])


def _set_path(value: Any, path: str, new: Any) -> None:
    """Set dotted/indexed `path` ("values.auth[0].password") inside `value`."""
    keys: list[Any] = [int(i) if i else k for k, i in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path)]
    for key in keys[:-1]:
        value = value[key]
    value[keys[-1]] = new


def test_the_plans_secrets_unredacted_would_be_flagged(renders: dict) -> None:
    # The plain-secret rule must bite on the plan: put plain text where the plan has "[secret]".
    flagged = 0
    for render in renders.values():
        for resource in render.plan["resources"]:
            inputs = copy.deepcopy(resource["inputs"])
            for path in resource["secretPaths"]:
                _set_path(inputs, path, "plain-text-value")
            messages = run_checks(resource["type"], inputs, resource["options"]).get("no-plain-secrets", [])
            for message in messages:
                assert message.split(" ", 1)[0] in resource["secretPaths"], message  # only what was secret
            flagged += len(messages)
    assert flagged >= 1


def test_unprotected_stateful_resources_in_prod_would_be_flagged(renders: dict) -> None:
    plan, config = renders["prod"].plan, PACK_CONFIG["prod"]["stateful-resources-protected"]
    stateful = [r for r in plan["resources"] if is_stateful(r["type"], r["inputs"])]
    assert stateful, "prod declares no stateful resource: the protect rule is untested on the plan"
    for resource in stateful:
        unprotected = {**resource["options"], "protect": False}
        assert CHECKS["stateful-resources-protected"][0](resource["type"], resource["inputs"], unprotected, config)


@pytest.mark.parametrize("stack", STACKS)
def test_pack_config_mirrors_the_stacks_protect(stack: str) -> None:
    # The config file passed to `pulumi preview --policy-pack-config` says what the stack says.
    raw, secret_keys = read_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    platform = load_platform_config(raw, stack=stack, source=f"Pulumi.{stack}.yaml", secret_keys=secret_keys)
    assert PACK_CONFIG[stack] == {"stateful-resources-protected": {"protect": platform.protect}}
    schema = {"type": "object", "properties": PROTECT_SCHEMA.properties, "additionalProperties": False}
    jsonschema.validate(PACK_CONFIG[stack]["stateful-resources-protected"], schema)


def test_secret_marker_is_the_plans() -> None:
    assert SECRET == REDACTED
    assert UNKNOWN != SECRET


# --- (b) violating fixtures, each flagged with a clear message ------------------------------------

RELEASE = "kubernetes:helm.sh/v3:Release"
KMS_KEY = "aws:kms/key:Key"
ROBOT = "harbor:index/robotAccount:RobotAccount"
K8S_ROLE = "vault:kubernetes/authBackendRole:AuthBackendRole"
JWT_ROLE = "vault:jwt/authBackendRole:AuthBackendRole"
K8S_SECRET = "kubernetes:core/v1:Secret"
RDS = "aws:rds/instance:Instance"
CLUSTER_LABEL = {"argocd.argoproj.io/secret-type": "cluster"}
PROTECT_ON = {"stateful-resources-protected": {"protect": True}}
PROTECT_OFF = {"stateful-resources-protected": {"protect": False}}
CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\n...").decode()
EXEC = {"command": "/custom-tools/token.sh", "apiVersion": "client.authentication.k8s.io/v1", "args": ["dev"]}


def release(chart: str = "external-secrets", version: Any = "2.9.0", values: dict[str, Any] | None = None) -> dict[str, Any]:
    props = {"chart": chart, "repositoryOpts": {"repo": "https://charts.example.com"}, "namespace": chart, "values": values or {}}
    if version is not None:
        props["version"] = version
    return props


def secret(type_: str = "Opaque", labels: dict[str, str] | None = None, **fields: Any) -> dict[str, Any]:
    metadata = {"name": "dev-cluster", "namespace": "argocd", "labels": labels or {}}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": type_, **fields}


def cluster_config(**config: Any) -> str:
    return json.dumps({"execProviderConfig": EXEC, "tlsClientConfig": {"caData": CA}, **config})


def robot(duration: Any) -> dict[str, Any]:
    props = {"name": "team-a-pull", "level": "project", "permissions": [{"kind": "project", "namespace": "team-a"}]}
    return props if duration is None else {**props, "duration": duration}


def k8s_role(names: list[str], namespaces: list[str]) -> dict[str, Any]:
    return {"backend": "kubernetes", "roleName": "team-a", "boundServiceAccountNames": names,
            "boundServiceAccountNamespaces": namespaces, "tokenPolicies": ["team-a"]}


def jwt_role(**bound: Any) -> dict[str, Any]:
    return {"backend": "gitlab", "roleName": "team-a-ci", "roleType": "jwt", "userClaim": "user_email", **bound}


KMS = {"description": "Vault auto-unseal", "enableKeyRotation": True}
KUBECONFIG = "apiVersion: v1\nclusters:\n- name: dev\n  cluster:\n    server: https://dev.example.com\n    insecure-skip-tls-verify: true\n"

# (id, resource type, props, options, pack config, policy, fragment of its one message)
VIOLATIONS: list[tuple[str, str, dict[str, Any], dict[str, Any], dict[str, Any], str, str]] = [
    ("release-version-range", RELEASE, release(version="^1.0"), {}, {}, "helm-release-pinned", "version '^1.0' is not pinned"),
    ("release-version-missing", RELEASE, release(version=None), {}, {}, "helm-release-pinned", "has no version"),
    ("release-version-wildcard", RELEASE, release(version="1.x"), {}, {}, "helm-release-pinned", "'1.x' is not pinned"),
    ("plain-admin-password", RELEASE, release(values={"adminPassword": "hunter2"}), {}, {}, "no-plain-secrets",
     "values.adminPassword holds a plain value"),
    ("plain-secret-without-key", RELEASE, release(values={"webhook": {"secret": "s3cr3t-value"}}), {}, {}, "no-plain-secrets",
     "values.webhook.secret holds a plain value"),
    ("plain-provider-token", "pulumi:providers:vault", {"address": "https://vault.example.com", "token": "hvs.CAES"}, {}, {},
     "no-plain-secrets", "token holds a plain value"),
    ("insecure-true", RELEASE, release("argo-cd", "9.1.0", {"configs": {"params": {"server.insecure": True}}}), {}, {},
     "no-insecure-tls", "values.configs.params.server.insecure = True"),
    ("insecure-flag-in-args", "kubernetes:apps/v1:Deployment",
     {"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": {"spec": {"containers": [
         {"name": "sync", "image": "harbor.example.com/tools/sync:1.0", "args": ["--insecure-skip-tls-verify"]}]}}}},
     {}, {}, "no-insecure-tls", "spec.template.spec.containers[0].args[0] contains '--insecure-skip-tls-verify'"),
    ("insecure-kubeconfig", "pulumi:providers:kubernetes", {"kubeconfig": KUBECONFIG}, {}, {}, "no-insecure-tls",
     "kubeconfig contains 'insecure-skip-tls-verify: true'"),
    ("skip-tls-verify", "pulumi:providers:vault", {"address": "https://vault.example.com", "skipTlsVerify": "true"}, {}, {},
     "no-insecure-tls", "skipTlsVerify = 'true'"),
    ("verify-ssl-off", RELEASE, release(values={"gitlab": {"verifySsl": False}}), {}, {}, "no-insecure-tls",
     "values.gitlab.verifySsl = False"),
    ("service-account-token-secret", K8S_SECRET,
     secret("kubernetes.io/service-account-token"), SECRET_OPTIONS, {},
     "no-service-account-token-secrets", "Secret <dev-cluster> has type kubernetes.io/service-account-token"),
    ("argocd-cluster-bearer-token", K8S_SECRET,
     secret(labels=CLUSTER_LABEL, stringData={"name": "dev", "server": "https://dev.example.com",
                                              "config": json.dumps({"bearerToken": "eyJhbGciOi", "tlsClientConfig": {"caData": CA}})}),
     SECRET_OPTIONS, {}, "argocd-cluster-without-credentials", "stringData.config carries bearerToken"),
    ("argocd-cluster-client-cert-in-data", K8S_SECRET,
     secret(labels=CLUSTER_LABEL, data={"config": base64.b64encode(
         json.dumps({"tlsClientConfig": {"caData": CA, "certData": "Y2VydA==", "keyData": "a2V5"}}).encode()).decode()}),
     SECRET_OPTIONS, {}, "argocd-cluster-without-credentials", "data.config carries tlsClientConfig.keyData, tlsClientConfig.certData"),
    ("argocd-chart-cluster-credentials", RELEASE,
     release("argo-cd", "9.1.0", {"configs": {"clusterCredentials": {"dev": {
         "server": "https://dev.example.com", "config": {"username": "admin", "password": SECRET}}}}}),
     {}, {}, "argocd-cluster-without-credentials", "values.configs.clusterCredentials.dev.config carries password, username"),
    ("harbor-robot-never-expires", ROBOT, robot(-1), {}, {}, "harbor-robot-expires", "has duration -1, so it never expires"),
    ("harbor-robot-365-days", ROBOT, robot(365), {}, {}, "harbor-robot-expires", "expires after 365 days; at most 30"),
    ("harbor-robot-no-duration", ROBOT, robot(None), {}, {}, "harbor-robot-expires", "has no duration"),
    ("harbor-robot-zero-days", ROBOT, robot(0), {}, {}, "harbor-robot-expires", "duration 0 is not a positive number"),
    ("vault-k8s-role-any-service-account", K8S_ROLE, k8s_role(["*"], ["team-a-dev"]), {}, {}, "vault-role-bound",
     "boundServiceAccountNames binds '*'"),
    ("vault-k8s-role-any-namespace", K8S_ROLE, k8s_role(["deployer"], ["team-a-dev, *"]), {}, {}, "vault-role-bound",
     "boundServiceAccountNamespaces binds '*'"),
    ("vault-jwt-role-any-ref", JWT_ROLE,
     jwt_role(boundClaims={"project_path": "team-a/app", "ref": "*"}, boundAudiences=["https://vault.example.com"]),
     {}, {}, "vault-role-bound", "boundClaims binds '*'"),
    ("vault-jwt-role-binds-nothing", JWT_ROLE, jwt_role(), {}, {}, "vault-role-bound", "binds no claim, subject or audience"),
    ("kms-key-unprotected", KMS_KEY, KMS, {"protect": False}, PROTECT_ON, "stateful-resources-protected",
     "aws:kms/key:Key is stateful and not protected"),
    ("vault-release-unprotected", RELEASE, release("vault", "0.31.0"), {"protect": False}, PROTECT_ON,
     "stateful-resources-protected", "(chart vault) is stateful and not protected"),
    ("kms-key-without-pack-config", KMS_KEY, KMS, {"protect": True}, {}, "stateful-resources-protected",
     "stateful-resources-protected.protect is not set"),
    ("rds-default-deletes-backups", RDS, {"engine": "postgres"}, {}, PROTECT_OFF, "database-backups-retained",
     "deletes its automated backups with it (deleteAutomatedBackups 'unset')"),
    ("rds-deletes-backups", RDS, {"engine": "postgres", "deleteAutomatedBackups": True}, {}, PROTECT_OFF, "database-backups-retained",
     "deletes its automated backups with it (deleteAutomatedBackups True)"),
    ("rds-backups-unknown", RDS, {"engine": "postgres", "deleteAutomatedBackups": UNKNOWN}, {}, PROTECT_OFF,
     "database-backups-retained",
     "deleteAutomatedBackups is not known before apply"),
]

# Compliant neighbours of the violations: nothing may be reported.
COMPLIANT: list[tuple[str, str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ("release-pinned", RELEASE, release(version="v1.2.3-rc.1"), {}, {}),
    ("secret-and-references", RELEASE,
     release(values={"adminPassword": SECRET, "existingSecretAdminPassword": "harbor-admin", "passwordKey": "password",
                     "oidc": {"clientSecret": "$oidc-secret:clientSecret"}, "token": "", "tokenTtl": 60,
                     "initialRootPassword": {"secret": "gitlab-root", "key": "password"},
                     "customCAs": [{"secret": "platform-ca", "keys": ["ca.crt"]}]}), {}, {}),
    ("tls-verified", RELEASE,
     release("argo-cd", "9.1.0", {"configs": {"params": {"server.insecure": False}}, "verifySsl": True,
                                  "args": ["--insecure=false"]}), {}, {}),
    ("redacted-secret-data", K8S_SECRET, secret(stringData=SECRET), SECRET_OPTIONS, {}),
    ("argocd-cluster-exec-credentials", K8S_SECRET,
     secret(labels=CLUSTER_LABEL, stringData={"name": "dev", "server": "https://dev.example.com",
                                              "config": cluster_config(tlsClientConfig={"caData": CA, "insecure": False})}),
     SECRET_OPTIONS, {}),
    ("argocd-cluster-redacted-offline", K8S_SECRET, secret(labels=CLUSTER_LABEL, stringData=SECRET), SECRET_OPTIONS, {}),
    ("harbor-robot-30-days", ROBOT, robot(30), {}, {}),
    ("harbor-robot-1-day", ROBOT, robot(1), {}, {}),
    ("vault-k8s-role-specific", K8S_ROLE, k8s_role(["deployer", "external-secrets"], ["team-a-dev"]), {}, {}),
    ("vault-jwt-role-glob-within-a-group", JWT_ROLE,
     jwt_role(boundClaims={"project_path": "team-a/*", "ref_protected": "true"}, boundClaimsType="glob",
              boundAudiences=["https://vault.example.com"]), {}, {}),
    ("vault-oidc-role-for-people", JWT_ROLE,
     {"roleName": "platform", "roleType": "oidc", "userClaim": "sub", "boundAudiences": ["vault"]}, {}, {}),
    ("kms-key-protected", KMS_KEY, KMS, {"protect": True}, PROTECT_ON),
    ("kms-key-unprotected-while-stack-unprotected", KMS_KEY, KMS, {"protect": False}, PROTECT_OFF),
    ("gitlab-release-protected", RELEASE, release("gitlab", "9.3.2"), {"protect": True}, PROTECT_ON),
    ("stateless-release-unprotected", RELEASE, release("external-secrets", "2.9.0"), {"protect": False}, PROTECT_ON),
    ("rds-keeps-backups", RDS, {"engine": "postgres", "deleteAutomatedBackups": False}, {"protect": True}, PROTECT_ON),
]


@pytest.mark.parametrize(("resource_type", "props", "options", "config", "policy", "fragment"),
                         [pytest.param(t, p, o, c, pol, f, id=i) for i, t, p, o, c, pol, f in VIOLATIONS])
def test_violation_is_flagged_with_a_clear_message(resource_type: str, props: dict[str, Any], options: dict[str, Any],
                                                   config: dict[str, Any], policy: str, fragment: str) -> None:
    found = run_checks(resource_type, props, options, config)
    assert set(found) == {policy}, found
    [message] = found[policy]
    assert fragment in message, message


@pytest.mark.parametrize(("resource_type", "props", "options", "config"),
                         [pytest.param(t, p, o, c, id=i) for i, t, p, o, c in COMPLIANT])
def test_compliant_resource_is_not_flagged(resource_type: str, props: dict[str, Any], options: dict[str, Any],
                                           config: dict[str, Any]) -> None:
    assert run_checks(resource_type, props, options, config) == {}


def test_every_policy_has_a_violating_fixture() -> None:
    covered = {policy for *_, policy, _fragment in VIOLATIONS}
    assert covered == set(CHECKS)


def test_stateful_is_defined_once_with_the_platforms_stateful_kinds() -> None:
    assert is_stateful(KMS_KEY, {}) and is_stateful("aws:eks/cluster:Cluster", {}) and is_stateful("aws:s3/bucket:Bucket", {})
    assert all(is_stateful(RELEASE, release(chart, "1.0.0")) for chart in ("vault", "gitlab", "harbor"))
    assert is_stateful(RELEASE, release("oci://registry.example.com/charts/harbor", "1.0.0"))
    assert not is_stateful(RELEASE, release("traefik", "37.4.0"))
    assert not is_stateful("aws:s3/bucketPolicy:BucketPolicy", {})


# --- (c) the CrossGuard adapters, called the way CrossGuard calls them ----------------------------

def validation_args(resource_type: str, props: dict[str, Any], protect: bool = False,
                    config: dict[str, Any] | None = None, secret_outputs: tuple[str, ...] = ()) -> ResourceValidationArgs:
    """ResourceValidationArgs as `Analyze` builds them: props behind the unknown-checking proxy."""
    opts = PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), list(secret_outputs))
    urn = f"urn:pulumi:prod::platform-bootstrap::{resource_type}::example"
    return ResourceValidationArgs(resource_type, unknown_checking_proxy(props), urn, "example", opts, None, config)


def validate(policy: str, args: ResourceValidationArgs) -> list[str]:
    messages: list[str] = []
    result = BY_NAME[policy].validate(args, lambda message, urn=None: messages.append(message))
    assert result is None  # synchronous: nothing to await
    return messages


def test_policies_are_mandatory_and_named_after_their_checks() -> None:
    assert [p.name for p in POLICIES] == [*CHECKS, "credential-inventory"]
    assert all(p.enforcement_level.value == "mandatory" for p in POLICIES)
    assert all(p.description == CHECKS[p.name][1] for p in POLICIES if p.name in CHECKS)


def stack_args(plan: dict, with_outputs: bool = True) -> StackValidationArgs:
    """StackValidationArgs as `AnalyzeStack` builds them from a previewed stack: its resources, the Stack's outputs."""
    opts = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
    resources = [
        PolicyResource(r["type"], unknown_checking_proxy(r["inputs"]), r["urn"], r["name"], opts, None, None, [], {})
        for r in plan["resources"]
    ]
    if with_outputs:
        stack_urn = "urn:pulumi:prod::platform-bootstrap::pulumi:pulumi:Stack::platform-bootstrap-prod"
        outputs = unknown_checking_proxy(plan["outputs"])
        resources.append(PolicyResource("pulumi:pulumi:Stack", outputs, stack_urn, "platform-bootstrap-prod", opts, None, None, [], {}))
    return StackValidationArgs(resources)


def test_the_credential_inventory_runs_at_preview_as_on_the_plan(plan: dict) -> None:
    policy = BY_NAME["credential-inventory"]
    messages: list[str] = []
    policy.validate(stack_args(plan), lambda message, urn=None: messages.append(message))
    assert messages == []
    # A credential-bearing resource nobody registered fails the preview.
    unlisted = copy.deepcopy(plan)
    unlisted["outputs"]["credentials"] = [e for e in unlisted["outputs"]["credentials"] if e["what"] != "Harbor admin password"]
    policy.validate(stack_args(unlisted), lambda message, urn=None: messages.append(message))
    assert messages and all("harbor-admin-password" in m for m in messages), messages
    # Without the stack's outputs the rule says it cannot run, rather than passing.
    with pytest.raises(Exception) as not_applicable:
        policy.validate(stack_args(plan, with_outputs=False), lambda message, urn=None: None)
    assert getattr(not_applicable.value, "reason", None) == INVENTORY_NOT_VISIBLE


def test_adapter_reports_an_unpinned_release_and_reads_unknown_values() -> None:
    # During preview a value computed by another resource is an unknown sentinel: the adapter
    # turns it into UNKNOWN instead of letting CrossGuard skip the whole policy.
    props = release("vault", UNKNOWN_STRING_VALUE, {"server": {"ha": {"raft": {"config": UNKNOWN_STRING_VALUE}}}})
    [message] = validate("helm-release-pinned", validation_args(RELEASE, props))
    assert f"version {UNKNOWN!r} is not pinned" in message
    assert validate("helm-release-pinned", validation_args(RELEASE, release("vault", "0.31.0"))) == []
    assert validate("no-insecure-tls", validation_args(RELEASE, props)) == []


def test_adapter_passes_protect_and_the_policy_config() -> None:
    on = {"protect": True}
    [message] = validate("stateful-resources-protected", validation_args(KMS_KEY, KMS, protect=False, config=on))
    assert "not protected" in message
    assert validate("stateful-resources-protected", validation_args(KMS_KEY, KMS, protect=True, config=on)) == []
    [message] = validate("stateful-resources-protected", validation_args(KMS_KEY, KMS, protect=True))
    assert "--policy-pack-config" in message


def test_adapter_maps_resource_options_to_the_plans_names() -> None:
    opts = PolicyResourceOptions(True, ["spec"], True, [], PolicyCustomTimeouts(0, 0, 0), ["stringData", "data"])
    assert resource_options(opts) == {
        "protect": True, "deleteBeforeReplace": True, "ignoreChanges": ["spec"], "additionalSecretOutputs": ["data", "stringData"]}


def test_adapter_reads_an_argocd_cluster_secret_as_crossguard_passes_it() -> None:
    # At preview the Secret's stringData arrives decrypted, so the config can be read (offline it is redacted).
    bearer = secret(labels=CLUSTER_LABEL, stringData={"config": json.dumps({"bearerToken": "eyJ"})})
    [message] = validate("argocd-cluster-without-credentials", validation_args(K8S_SECRET, bearer, secret_outputs=("data", "stringData")))
    assert "bearerToken" in message



def test_adapter_reads_numbers_as_crossguard_passes_them() -> None:
    # Properties arrive as a protobuf Struct, so every number is a float.
    [message] = validate("harbor-robot-expires", validation_args(ROBOT, robot(-1.0)))
    assert "duration -1, so it never expires" in message
    assert validate("harbor-robot-expires", validation_args(ROBOT, robot(30.0))) == []
    assert validate("vault-role-bound", validation_args(ROBOT, robot(-1.0))) == []  # not a Vault role


def test_plain_secret_policy_says_it_cannot_run_at_preview() -> None:
    # CrossGuard hands policies secrets decrypted and unmarked, so the rule declares itself not applicable.
    with pytest.raises(Exception) as raised:
        validate("no-plain-secrets", validation_args(RELEASE, release(values={"adminPassword": "hunter2"})))
    assert getattr(raised.value, "reason", None) == SECRETS_NOT_VISIBLE


def test_pack_entry_point_serves_every_policy(tmp_path: Path) -> None:
    # Run __main__.py as the Pulumi CLI does (runpy on the directory, outside the repository) with
    # PolicyPack replaced: the real one would start a server and block. The timeout guards that.
    script = textwrap.dedent(f"""
        import json, runpy
        import pulumi_policy

        class RecordingPack:
            def __init__(self, name, policies, enforcement_level=None, **kwargs):
                print(json.dumps({{"name": name, "policies": [p.name for p in policies],
                                  "level": enforcement_level.value}}))

        pulumi_policy.PolicyPack = RecordingPack
        runpy.run_path({str(PACK)!r}, run_name="__main__")
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"name": "platform-bootstrap", "policies": [*CHECKS, "credential-inventory"], "level": "mandatory"}


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)", line.strip())
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def test_pack_requirements_are_installed_and_agree_with_the_project() -> None:
    pack, project = _pins(PACK / "requirements.txt"), _pins(ROOT / "requirements.txt")
    assert {"pulumi-policy", "protobuf"} <= set(pack)
    for name, version in pack.items():
        assert importlib.metadata.version(name) == version, name
        assert project.get(name, version) == version, f"{name}: pack pins {version}, project pins {project.get(name)}"
