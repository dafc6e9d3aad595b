"""The rules of the CrossGuard policy pack, as plain functions over one resource.

Every check has the signature

    check_<name>(resource_type: str, props: Mapping, options: Mapping, config: Mapping) -> list[str]

and returns one message per violation (empty: compliant). Two callers feed them:

* `crossguard.py` adapts CrossGuard's `ResourceValidationArgs` at `pulumi preview`;
* the tests feed them every resource of the offline plan (`platformctl render`).

Inputs use the engine's property names (camelCase). Two markers stand in for values a check
cannot read: `SECRET` (`"[secret]"`, how the offline plan redacts a secret) and `UNKNOWN`
(a value only known after apply, such as an id computed during preview). `options` is
`{"protect", "deleteBeforeReplace", "ignoreChanges", "additionalSecretOutputs", ...}`, the
keys of a plan entry's `options`. `config` is this policy's pack configuration.

This module imports nothing from Pulumi, so the rules can run anywhere a plan can be read.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

SECRET = "[secret]"  # the offline plan's redaction of a secret value (platformctl.mocks.REDACTED)
UNKNOWN = "[unknown]"  # a value not known during preview

Check = Callable[[str, Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]], list[str]]

HELM_TYPES = frozenset({"kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart"})
HARBOR_ROBOT_TYPE = "harbor:index/robotAccount:RobotAccount"
RDS_INSTANCE_TYPE = "aws:rds/instance:Instance"
MAX_ROBOT_DAYS = 30

# --- what is stateful: the one definition -------------------------------------------------------
# Resources whose deletion loses data or keys. With protection on (pack config `protect`), each must
# carry `protect=True`, so neither `pulumi destroy` nor a replacement can delete it by accident.
STATEFUL_TYPES = frozenset({
    "aws:kms/key:Key",  # Vault's auto-unseal key: without it the raft data cannot be unsealed
    "aws:s3/bucket:Bucket",
    "aws:s3/bucketV2:BucketV2",
    "aws:eks/cluster:Cluster",  # the cluster and everything on it
    "aws:rds/instance:Instance",
    "aws:rds/cluster:Cluster",
    "aws:ebs/volume:Volume",
    "aws:efs/fileSystem:FileSystem",
    "kubernetes:core/v1:PersistentVolumeClaim",
})
# Helm charts whose releases own PersistentVolumeClaims (raft, Gitaly/PostgreSQL, registry storage).
STATEFUL_CHARTS = frozenset({"vault", "gitlab", "harbor"})


def is_stateful(resource_type: str, props: Mapping[str, Any]) -> bool:
    """True for the resources `check_stateful_protected` requires to be protected."""
    if resource_type in HELM_TYPES:
        return _chart_name(props.get("chart")) in STATEFUL_CHARTS
    return resource_type in STATEFUL_TYPES


def _chart_name(chart: Any) -> str:
    # "vault", "hashicorp/vault" or "oci://registry/charts/vault" all name the chart "vault".
    return chart.rstrip("/").rsplit("/", 1)[-1] if isinstance(chart, str) else ""


# --- helpers ------------------------------------------------------------------------------------

def _norm(key: Any) -> str:
    """A key compared without case or separators: `skip_tls_verify` == `skipTLSVerify`."""
    return re.sub(r"[-_. ]", "", str(key)).lower()


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, str, Any, Mapping[str, Any]]]:
    """(path, key, value, the mapping holding it) of every mapping entry below `value`, depth first."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            yield sub, str(key), item, value
            yield from _walk(item, sub)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")


def _strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, text) of every string below `value`."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def _truthy(value: Any) -> bool:
    """Whether a flag is switched on, whether written as a bool, a number or a string."""
    if value in (None, UNKNOWN, SECRET):
        return False
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    if isinstance(value, Mapping):  # e.g. `insecure: {enabled: true}`
        return _truthy(value.get("enabled"))
    if isinstance(value, (list, tuple)):  # e.g. `insecureRegistries: [...]`
        return len(value) > 0
    return bool(value)


def _falsy_flag(value: Any) -> bool:
    """Whether a flag is explicitly switched off (False, 0, "false", ...), not merely absent."""
    if isinstance(value, str):
        return value.strip().lower() in ("false", "0", "no", "off")
    # CrossGuard hands numbers over as floats.
    return value is False or (isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0)


def _kind(resource_type: str, props: Mapping[str, Any]) -> str | None:
    """The Kubernetes kind of a declared object, None for anything else."""
    if not resource_type.startswith("kubernetes:") or resource_type in HELM_TYPES:
        return None
    kind = props.get("kind")
    return kind if isinstance(kind, str) else resource_type.rsplit(":", 1)[-1]


def _labels(props: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = props.get("metadata")
    labels = metadata.get("labels") if isinstance(metadata, Mapping) else None
    return labels if isinstance(labels, Mapping) else {}


def _name(props: Mapping[str, Any]) -> str:
    metadata = props.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return f" <{name}>" if isinstance(name, str) else ""


# --- helm-release-pinned ------------------------------------------------------------------------

_EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")


def check_helm_release_pinned(
    resource_type: str, props: Mapping[str, Any], options: Mapping[str, Any], config: Mapping[str, Any]
) -> list[str]:
    """Every Helm release names an exact chart version: no range, no "latest", never left out."""
    if resource_type not in HELM_TYPES:
        return []
    chart, version = props.get("chart"), props.get("version")
    if version in (None, ""):
        return [f"Helm chart {chart!r} has no version: Helm would install whatever is newest; pin an exact version "
                "(components/versions.py)"]
    if not isinstance(version, str) or not _EXACT_VERSION.match(version):
        return [f"Helm chart {chart!r} version {version!r} is not pinned: use an exact version such as '1.2.3', "
                "not a range or a value computed at apply time"]
    return []


# --- no-plain-secrets ---------------------------------------------------------------------------

# Keys that hold a credential, compared by their ending without case or separators.
_CREDENTIAL_KEY = re.compile(
    r"(password|passwd|passphrase|token|secret|credential|credentials|privatekey|privatekeypem|apikey|accesskey|"
    r"secretkey|clientsecret|jwt|keydata)$"
)
# Keys that name or point at a credential rather than hold one ("existingSecret", "tokenSecretRef").
_REFERENCE_KEY = re.compile(r"(name|ref|existing\w*|path|file|type|enabled|mount\w*|ttl)$")


def check_no_plain_secrets(
    resource_type: str, props: Mapping[str, Any], options: Mapping[str, Any], config: Mapping[str, Any]
) -> list[str]:
    """No credential-looking input holds a value that is not a Pulumi secret.

    A value is secret when it is `SECRET`, so this needs secrets to be visible as such: the
    offline plan shows them so, CrossGuard does not (see crossguard.py). `additionalSecretOutputs`
    does not count: it makes the resource's outputs secret, not the input the program passed.
    """
    problems = []
    for path, key, value, holder in _walk(props):
        normalized = _norm(key)
        if not _CREDENTIAL_KEY.search(normalized) or _REFERENCE_KEY.search(normalized):
            continue
        if normalized == "secret" and ("key" in holder or "keys" in holder or path.endswith(
                ("hostKeys.secret", "railsSecrets.secret", "runners.secret", "basicAuth.secret", "digestAuth.secret"))):
            # `{secret: <Secret name>, key: <its key>}`: how the GitLab chart references a Secret
            # (`hostKeys: {secret: <Secret name>}` and `railsSecrets: {secret: <Secret name>}` alone,
            # and the gitlab-runner chart's `runners: {secret: <Secret name>}`: their keys are named
            # by convention; a Traefik Middleware's `basicAuth`/`digestAuth` `secret` names the Secret
            # it reads, traefik v3.6.2 pkg/provider/kubernetes/crd/kubernetes.go createBasicAuthMiddleware).
            continue
        # "$secret:key" is ArgoCD's reference to a key of its own Secret, not a value.
        if isinstance(value, str) and value not in ("", SECRET, UNKNOWN) and not value.startswith("$"):
            problems.append(f"{path} holds a plain value ({len(value)} characters) that is not a Pulumi secret: "
                            "generate it (pulumi_random) or read it with config.require_secret, keep it an Output, "
                            "or reference an existing Kubernetes Secret")
    return problems


# --- no-insecure-tls ----------------------------------------------------------------------------

_INSECURE_KEYS = ("insecure", "skiptlsverify", "tlsskipverify", "skipsslverify", "skipverify")
_VERIFY_KEYS = frozenset({"verifyssl", "sslverify", "tlsverify", "verifytls", "verifycert", "verifycertificate"})
# The same switches inside text: command-line flags, YAML/JSON/HCL snippets, kubeconfigs.
_INSECURE_TEXT = re.compile(
    r"--insecure(-skip-tls-verify)?(?![\w-])(?!=(false|0)\b)"
    r"|\b(insecure|insecure[-_]?skip[-_]?(tls[-_]?)?verify|skip[-_]?tls[-_]?verify|tls[-_]?skip[-_]?verify)"
    r"[\"']?\s*[:=]\s*[\"']?(true|1|yes|on)\b",
    re.IGNORECASE,
)


def check_no_insecure_tls(
    resource_type: str, props: Mapping[str, Any], options: Mapping[str, Any], config: Mapping[str, Any]
) -> list[str]:
    """Nothing switches TLS verification off: no `insecure`, `skip_tls_verify` or `--insecure`."""
    problems = []
    for path, key, value, _ in _walk(props):
        normalized = _norm(key)
        if any(word in normalized for word in _INSECURE_KEYS) and _truthy(value):
            problems.append(f"{path} = {value!r} switches TLS verification off; trust the platform CA bundle instead")
        elif normalized in _VERIFY_KEYS and _falsy_flag(value):
            problems.append(f"{path} = {value!r} switches TLS verification off; trust the platform CA bundle instead")
    for path, text in _strings(props):
        match = _INSECURE_TEXT.search(text)
        if match:
            problems.append(f"{path} contains {match.group(0)!r}, which switches TLS verification off")
    return problems


# --- no-service-account-token-secrets -----------------------------------------------------------

SA_TOKEN_TYPE = "kubernetes.io/service-account-token"


def check_no_service_account_token_secrets(
    resource_type: str, props: Mapping[str, Any], options: Mapping[str, Any], config: Mapping[str, Any]
) -> list[str]:
    """No Secret of type service-account-token: such tokens never expire. Use TokenRequest/projected tokens."""
    if _kind(resource_type, props) == "Secret" and props.get("type") == SA_TOKEN_TYPE:
        return [f"Secret{_name(props)} has type {SA_TOKEN_TYPE}, a service-account token that never expires: "
                "use short-lived tokens (TokenRequest, projected volumes, OIDC federation) instead"]
    return []


# --- argocd-cluster-without-credentials ---------------------------------------------------------

ARGOCD_SECRET_TYPE_LABEL = "argocd.argoproj.io/secret-type"
_CLUSTER_CREDENTIALS = ("bearerToken", "password", "username")
_CLUSTER_TLS_CREDENTIALS = ("keyData", "certData")


def _cluster_configs(resource_type: str, props: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """(path, config) of every ArgoCD cluster config a resource declares."""
    if _kind(resource_type, props) == "Secret" and _labels(props).get(ARGOCD_SECRET_TYPE_LABEL) == "cluster":
        for field in ("stringData", "data"):
            block = props.get(field)
            if isinstance(block, Mapping) and "config" in block:
                raw = block["config"]
                if field == "data" and isinstance(raw, str) and raw not in (SECRET, UNKNOWN):
                    try:
                        raw = base64.b64decode(raw, validate=True).decode()
                    except (binascii.Error, UnicodeDecodeError):
                        raw = f"<not base64: {raw[:20]}>"
                yield f"{field}.config", raw
    if resource_type in HELM_TYPES and _chart_name(props.get("chart")) == "argo-cd":
        values = props.get("values")
        configs = values.get("configs") if isinstance(values, Mapping) else None
        credentials = configs.get("clusterCredentials") if isinstance(configs, Mapping) else None
        # The chart takes a map of name -> cluster (or, in old versions, a list of clusters).
        entries = credentials.items() if isinstance(credentials, Mapping) else enumerate(credentials or [])
        for name, cluster in entries:
            if isinstance(cluster, Mapping) and "config" in cluster:
                yield f"values.configs.clusterCredentials.{name}.config", cluster["config"]


def check_argocd_cluster_without_credentials(
    resource_type: str, props: Mapping[str, Any], options: Mapping[str, Any], config: Mapping[str, Any]
) -> list[str]:
    """ArgoCD cluster Secrets authenticate with an exec credential plugin, never a stored credential.

    A config that is `SECRET` or `UNKNOWN` cannot be read and is let through: the offline plan
    redacts every Kubernetes Secret's data, while CrossGuard sees it decrypted at preview.
    """
    problems = []
    for path, raw in _cluster_configs(resource_type, props):
        if raw in (SECRET, UNKNOWN, None):
            continue
        cluster = raw
        if isinstance(raw, str):
            try:
                cluster = json.loads(raw)
            except json.JSONDecodeError:
                cluster = None
        if not isinstance(cluster, Mapping):
            problems.append(f"{path} is not a JSON object, so it cannot be checked for credentials")
            continue
        tls = cluster.get("tlsClientConfig")
        tls = tls if isinstance(tls, Mapping) else {}
        found = [key for key in _CLUSTER_CREDENTIALS if cluster.get(key)]
        found += [f"tlsClientConfig.{key}" for key in _CLUSTER_TLS_CREDENTIALS if tls.get(key)]
        found += [f"{where}insecure" for where, block in (("", cluster), ("tlsClientConfig.", tls)) if _truthy(block.get("insecure"))]
        if found:
            problems.append(f"ArgoCD cluster config {path} carries {', '.join(found)}: use execProviderConfig "
                            "(short-lived OIDC tokens) and tlsClientConfig.caData only")
    return problems


# --- harbor-robot-expires -----------------------------------------------------------------------

def check_harbor_robot_expires(
    resource_type: str, props: Mapping[str, Any], options: Mapping[str, Any], config: Mapping[str, Any]
) -> list[str]:
    """Every Harbor robot account expires, within MAX_ROBOT_DAYS days (`duration`, in days)."""
    if resource_type != HARBOR_ROBOT_TYPE:
        return []
    duration = props.get("duration")
    robot = f"Harbor robot {props.get('name')!r}"
    if duration is None:
        return [f"{robot} has no duration, so it never expires: set duration to 1..{MAX_ROBOT_DAYS} days"]
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration != int(duration):
        return [f"{robot} duration {duration!r} is not a whole number of days known before apply"]
    if duration == -1:
        return [f"{robot} has duration -1, so it never expires: set 1..{MAX_ROBOT_DAYS} days"]
    if duration <= 0:
        return [f"{robot} duration {int(duration)} is not a positive number of days"]
    if duration > MAX_ROBOT_DAYS:
        return [f"{robot} expires after {int(duration)} days; at most {MAX_ROBOT_DAYS} are allowed"]
    return []


# --- database-backups-retained ------------------------------------------------------------------

def check_database_backups_retained(
    resource_type: str, props: Mapping[str, Any], options: Mapping[str, Any], config: Mapping[str, Any]
) -> list[str]:
    """An RDS instance keeps its automated backups when it is deleted: RDS's default (and the provider's)
    deletes them with it, so whoever deletes the instance takes its point-in-time history too."""
    if resource_type != RDS_INSTANCE_TYPE or _falsy_flag(props.get("deleteAutomatedBackups")):
        return []
    if props.get("deleteAutomatedBackups") == UNKNOWN:
        return [f"{RDS_INSTANCE_TYPE} deleteAutomatedBackups is not known before apply: pass delete_automated_backups=False"]
    return [f"{RDS_INSTANCE_TYPE} deletes its automated backups with it (deleteAutomatedBackups "
            f"{props.get('deleteAutomatedBackups', 'unset')!r}): pass delete_automated_backups=False"]


# --- vault-role-bound ---------------------------------------------------------------------------

def _bound_values(value: Any) -> Iterator[str]:
    """Each value a `bound_*` input binds; comma-separated strings bind several."""
    if isinstance(value, str):
        yield from (part.strip() for part in value.split(","))
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _bound_values(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _bound_values(item)


def check_vault_role_bound(
    resource_type: str, props: Mapping[str, Any], options: Mapping[str, Any], config: Mapping[str, Any]
) -> list[str]:
    """Vault auth roles bind specific identities: no `bound*` input (service-account names and
    namespaces, claims, audiences, subjects, principals) is `*`, and a JWT role binds something."""
    if not (resource_type.startswith("vault:") and resource_type.endswith("AuthBackendRole")):
        return []
    role = f"Vault role {props.get('roleName')!r}"
    problems = [
        f"{role} {key} binds {value!r}, i.e. anyone: name the service accounts, namespaces or claim values"
        for key in sorted(props)
        if key.startswith("bound")
        for value in _bound_values(props[key])
        if value and set(value) == {"*"}
    ]
    if resource_type == "vault:jwt/authBackendRole:AuthBackendRole" and props.get("roleType") == "jwt":
        if not any(props.get(key) for key in ("boundClaims", "boundSubject", "boundAudiences")):
            problems.append(f"{role} binds no claim, subject or audience: every token of the issuer could log in")
    return problems


# --- stateful-resources-protected ---------------------------------------------------------------

def check_stateful_protected(
    resource_type: str, props: Mapping[str, Any], options: Mapping[str, Any], config: Mapping[str, Any]
) -> list[str]:
    """With pack config `protect: true` (the stack's `platform:protect`), every stateful resource
    (see `is_stateful`) is protected. Without the config value the rule fails closed."""
    if not is_stateful(resource_type, props):
        return []
    protect = config.get("protect")
    what = f"{resource_type}" + (f" (chart {_chart_name(props.get('chart'))})" if resource_type in HELM_TYPES else "")
    if not isinstance(protect, bool):
        return [f"{what} is stateful, and the pack config stateful-resources-protected.protect is not set: "
                "run with --policy-pack-config policy/pack/config/<stack>.json"]
    if protect and not options.get("protect"):
        return [f"{what} is stateful and not protected while the stack protects its data: pass protect=args.protect"]
    return []


# Policy name -> (check, description). crossguard.py turns each into a CrossGuard policy.
CHECKS: dict[str, tuple[Check, str]] = {
    "helm-release-pinned": (check_helm_release_pinned, "Every Helm release is pinned to an exact chart version."),
    "no-plain-secrets": (check_no_plain_secrets, "No credential-looking input holds a value that is not a Pulumi secret."),
    "no-insecure-tls": (check_no_insecure_tls, "Nothing sets insecure, skip_tls_verify or --insecure."),
    "no-service-account-token-secrets": (
        check_no_service_account_token_secrets, "No Secret of type kubernetes.io/service-account-token."),
    "argocd-cluster-without-credentials": (
        check_argocd_cluster_without_credentials,
        "ArgoCD cluster Secrets carry no bearer token, password, client key or insecure flag."),
    "harbor-robot-expires": (check_harbor_robot_expires, f"Harbor robot accounts expire within {MAX_ROBOT_DAYS} days."),
    "database-backups-retained": (
        check_database_backups_retained, "RDS instances keep their automated backups when they are deleted."),
    "vault-role-bound": (check_vault_role_bound, "Vault auth roles are never bound to '*'."),
    "stateful-resources-protected": (
        check_stateful_protected, "Stateful resources are protected when the stack protects its data (config: protect)."),
}
