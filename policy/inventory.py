"""The credential check: no credential between systems lives without expiry or past 90 days.

`check_credentials(plan)` reads a plan.json document (`platformctl render`): its stack output
`credentials` (see components/inventory.py for the categories) and its resources. It returns
one message per problem (empty: compliant):

* an inventory entry between systems (`federated`, `issued`) without expiry or longer than
  90 days; an entry of another category that breaks that category's condition (`internal`:
  issuer and holder are one system; `bootstrap`: held in the Pulumi state; ...);
* a credential-bearing resource no entry lists (so registering cannot be forgotten), or an
  entry listing a resource the plan does not declare (so the inventory cannot go stale);
* what the resources say themselves, whatever the inventory claims: a Secret of type
  `kubernetes.io/service-account-token`, an ArgoCD cluster Secret with a bearer token or
  client key, a Harbor robot or GitLab token/key without expiry or past 90 days, a
  TokenRequest (projected `serviceAccountToken` volume, TokenRequest object, External
  Secrets' `kubernetesServiceAccountToken`) for more than an hour, a Vault role issuing
  periodic (never-expiring) tokens or tokens past 90 days, an IAM access key, a non-CA
  certificate valid for more than 90 days.

Like policy/pack/checks.py, it imports nothing from Pulumi; components/inventory.py registers the entries.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from policy.pack.checks import (
    check_argocd_cluster_without_credentials,
    check_no_service_account_token_secrets,
)

DAY = 86400
MAX_LIFETIME_SECONDS = 90 * DAY
MAX_TOKEN_REQUEST_SECONDS = 3600

# The inventory's categories (components/inventory.py says what each means).
CATEGORIES: tuple[str, ...] = ("federated", "issued", "internal", "signing-key", "bootstrap", "external")
CHECKED_CATEGORIES = ("federated", "issued")  # held to the 90-day rule
STATE_HOLDER = "Pulumi state"  # what a `bootstrap` holder must name

ENTRY_TEXT_FIELDS = ("what", "category", "issuer", "holder", "scope", "lifetime", "rotation")

# Resource types that create a credential; each must be named by an inventory entry.
CREDENTIAL_TYPES = frozenset({
    "random:index/randomPassword:RandomPassword",
    "random:index/randomBytes:RandomBytes",
    "tls:index/privateKey:PrivateKey",
    "pulumi-python:dynamic/vault:Init",  # Vault's root token and unseal or recovery keys
    "harbor:index/robotAccount:RobotAccount",
    "gitlab:index/deployKey:DeployKey",
    "gitlab:index/projectDeployToken:ProjectDeployToken",
    "gitlab:index/groupDeployToken:GroupDeployToken",
    "gitlab:index/projectAccessToken:ProjectAccessToken",
    "gitlab:index/groupAccessToken:GroupAccessToken",
    "gitlab:index/personalAccessToken:PersonalAccessToken",
    "gitlab:index/projectServiceAccountAccessToken:ProjectServiceAccountAccessToken",
    "gitlab:index/groupServiceAccountAccessToken:GroupServiceAccountAccessToken",
    "vault:jwt/authBackendRole:AuthBackendRole",
    "vault:kubernetes/authBackendRole:AuthBackendRole",
    "aws:iam/accessKey:AccessKey",
    "vault:transit/secretBackendKey:SecretBackendKey",  # cosign signing keys
    "gitlab:index/userRunner:UserRunner",  # a runner authentication token
    "harbor:index/preheatInstance:PreheatInstance",  # Harbor's token for a Dragonfly manager
})
# All take expiresAt but the runner, whose token expiry is an instance setting (its entry's rotation bounds it).
GITLAB_EXPIRING_TYPES = frozenset(t for t in CREDENTIAL_TYPES if t.startswith("gitlab:") and t != "gitlab:index/userRunner:UserRunner")
WEB_IDENTITY_ROLE = "aws:iam/role:Role"


def check_credentials(plan: Mapping[str, Any]) -> list[str]:
    entries = (plan.get("outputs") or {}).get("credentials")
    problems: list[str] = []
    if not isinstance(entries, list):
        problems.append("the plan has no `credentials` stack output: the program must export its credential inventory")
        entries = []
    resources = [r for r in plan.get("resources", []) if isinstance(r, Mapping)]
    for entry in entries:
        problems += _entry_problems(entry)
    listed = {name for entry in entries if isinstance(entry, Mapping) for name in entry.get("resources") or []}
    declared = {r.get("name") for r in resources}
    for resource in resources:
        problems += _resource_problems(resource)
        if _creates_credential(resource) and resource.get("name") not in listed:
            problems.append(
                f"{resource.get('type')} {resource.get('name')!r} creates a credential the inventory does not list: "
                "register a Credential naming it in `resources` (components/inventory.py)"
            )
    for name in sorted(listed - declared):
        problems.append(f"the inventory lists resource {name!r}, which the plan does not declare: update the entry")
    return problems


# --- inventory entries -----------------------------------------------------------------------

def _entry_problems(entry: Any) -> list[str]:
    if not isinstance(entry, Mapping):
        return [f"credential entry {entry!r} is not a mapping"]
    what = f"credential {entry.get('what')!r} ({entry.get('category')})"
    missing = [key for key in ENTRY_TEXT_FIELDS if not (isinstance(entry.get(key), str) and entry[key].strip())]
    if missing:
        return [f"{what} has no {', '.join(missing)}: say what it is, who issues and holds it, its scope, lifetime and rotation"]
    category, seconds = entry["category"], entry.get("lifetimeSeconds")
    if category not in CATEGORIES:
        return [f"{what}: unknown category; one of {', '.join(CATEGORIES)}"]
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0):
        return [f"{what}: lifetimeSeconds {seconds!r} is not a positive number of seconds"]
    if category in CHECKED_CATEGORIES:
        if seconds is None:
            return [f"{what} never expires: a credential between systems must expire within 90 days "
                    f"(issuer {entry['issuer']}, holder {entry['holder']}); rotate it or replace it by federation"]
        if seconds > MAX_LIFETIME_SECONDS:
            return [f"{what} lives {_days(seconds)}: a credential between systems must expire within 90 days"]
    if category == "internal" and entry["issuer"] != entry["holder"]:
        return [f"{what}: an internal secret stays inside one system, but its issuer ({entry['issuer']}) and "
                f"holder ({entry['holder']}) differ: it is a credential between systems (issued or federated)"]
    if category == "bootstrap" and STATE_HOLDER not in entry["holder"]:
        return [f"{what}: bootstrap material is the program's own and lives in the {STATE_HOLDER}; "
                f"its holder is {entry['holder']!r}"]
    return []


# --- what resources say themselves ----------------------------------------------------------------

def _resource_problems(resource: Mapping[str, Any]) -> list[str]:
    rtype, name = str(resource.get("type")), resource.get("name")
    props = resource.get("inputs") or {}
    options = resource.get("options") or {}
    where = f"{rtype} {name!r}"
    problems = [f"{where}: {m}" for m in check_no_service_account_token_secrets(rtype, props, options, {})]
    problems += [f"{where}: {m}" for m in check_argocd_cluster_without_credentials(rtype, props, options, {})]
    if rtype == "harbor:index/robotAccount:RobotAccount":
        problems += _robot(where, props.get("duration"))
    if rtype in GITLAB_EXPIRING_TYPES and not props.get("expiresAt"):
        problems.append(f"{where} has no expiresAt, so it never expires: set an expiry within 90 days and rotate it")
    if rtype.startswith("vault:") and rtype.endswith("AuthBackendRole"):
        problems += _vault_role(where, props)
    if rtype == "aws:iam/accessKey:AccessKey":
        problems.append(f"{where}: IAM access keys never expire; use a role assumed with a web-identity token")
    if rtype.startswith("kubernetes:"):
        problems += _token_requests(where, props)
        problems += _certificate(where, props)
    return problems


def _robot(where: str, duration: Any) -> list[str]:
    if duration is None or duration == -1:
        return [f"{where} never expires (duration {duration!r}): set a duration of at most 90 days"]
    if isinstance(duration, (int, float)) and not isinstance(duration, bool) and duration > 90:
        return [f"{where} lives {int(duration)} days: at most 90"]
    return []


def _vault_role(where: str, props: Mapping[str, Any]) -> list[str]:
    problems = []
    if _number(props.get("tokenPeriod")):
        problems.append(f"{where} issues periodic tokens (tokenPeriod), which are renewed forever: use tokenMaxTtl")
    for key in ("tokenTtl", "tokenMaxTtl", "tokenExplicitMaxTtl"):
        seconds = _number(props.get(key))
        if seconds and seconds > MAX_LIFETIME_SECONDS:
            problems.append(f"{where} {key} is {_days(seconds)}: Vault tokens must expire within 90 days")
    return problems


def _token_requests(where: str, props: Mapping[str, Any]) -> list[str]:
    """TokenRequests asking for more than an hour, wherever the program declares one."""
    problems = []
    requests: list[tuple[str, Any]] = []
    if props.get("kind") == "TokenRequest" and isinstance(props.get("spec"), Mapping):
        requests.append(("spec.expirationSeconds", props["spec"].get("expirationSeconds")))
    # Projected volumes (`serviceAccountToken`) and External Secrets (`kubernetesServiceAccountToken`),
    # also inside Helm values.
    requests += [
        (f"{path}.expirationSeconds", value.get("expirationSeconds"))
        for path, key, value in _mappings(props)
        if key.lower().endswith("serviceaccounttoken") and isinstance(value, Mapping)
    ]
    for path, value in requests:
        seconds = _number(value)
        if seconds is not None and seconds > MAX_TOKEN_REQUEST_SECONDS:
            problems.append(f"{where}: {path} asks for a service-account token of {_duration(seconds)}: at most one hour")
    return problems


def _certificate(where: str, props: Mapping[str, Any]) -> list[str]:
    """cert-manager certificates other than CAs: at most 90 days (its default)."""
    if props.get("kind") != "Certificate" or not str(props.get("apiVersion", "")).startswith("cert-manager.io/"):
        return []
    spec = props.get("spec") if isinstance(props.get("spec"), Mapping) else {}
    seconds = _go_duration(spec.get("duration"))
    if spec.get("isCA") or seconds is None or seconds <= MAX_LIFETIME_SECONDS:
        return []
    return [f"{where}: certificate valid for {_days(seconds)}: at most 90 days for a certificate that is not a CA"]


def _creates_credential(resource: Mapping[str, Any]) -> bool:
    rtype = resource.get("type")
    if rtype in CREDENTIAL_TYPES:
        return True
    if rtype == WEB_IDENTITY_ROLE:
        # Roles assumed with a web-identity token are federation: their sessions are credentials.
        return "AssumeRoleWithWebIdentity" in json.dumps((resource.get("inputs") or {}).get("assumeRolePolicy"))
    return False


# --- small helpers ----------------------------------------------------------------------------------

def _mappings(value: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """(path, key, value) of every mapping entry below `value`."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            yield sub, str(key), item
            yield from _mappings(item, sub)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _mappings(item, f"{path}[{index}]")


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and re.fullmatch(r"\d+", value.strip()):
        return float(value)
    return None


_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|m|s)")


def _go_duration(value: Any) -> float | None:
    """Seconds of a Go duration ('2160h', '87600h0m0s'); None when absent or unreadable."""
    if not isinstance(value, str) or not re.fullmatch(r"(\d+(?:\.\d+)?(h|m|s))+", value):
        return None
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[unit] for n, unit in _GO_DURATION.findall(value))


def _days(seconds: float) -> str:
    return f"{seconds / DAY:g} days"


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:g} hours" if seconds >= 3600 else f"{seconds:g} seconds"
