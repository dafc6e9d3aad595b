"""A Pulumi stack file's text as the engine hands its config to the program (`parse_stack_file`).

Apart from the program on purpose: `platformctl access`, the merge request's gate, reads stack files
with this module alone (components/merge_request_bot.py runs it from the gate's commit), and every
file its process imports from that commit is a gate file (platformctl/access.py GATE_FILES).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

PROJECT = "platform-bootstrap"
NAMESPACE = "platform"
PLACEHOLDER = "placeholder-for-secure-value"


class RenderError(Exception):
    """A stack file could not be read, or the render could not run; the message says why."""


class ConfigError(Exception):
    """A stack file that does not describe a valid platform. `problems` holds one line each."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


# A stack file's top-level keys (Pulumi's stack settings); anything else is a mistake.
STACK_FILE_KEYS = ("config", "encryptedkey", "encryptionsalt", "secretsprovider")
# Aliases a stack file may use: enough for shared anchors, far too few for an alias bomb.
MAX_ALIASES = 50
# Levels of nesting: the deepest setting is a handful of levels down; PyYAML's composer recurses
# per level, so a file of a few thousand brackets would otherwise cost it a RecursionError.
MAX_NESTING = 32
MAX_STACK_FILE_BYTES = 1 << 20
_MERGE_TAG = "tag:yaml.org,2002:merge"


class StackFileLoader(yaml.SafeLoader):
    """SafeLoader that refuses repeated keys, more than MAX_ALIASES aliases (before expanding any)
    and more than MAX_NESTING levels, and keeps dates as the strings they are written as (Pulumi
    hands config over as text)."""

    aliases = 0
    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise yaml.YAMLError(f"more than {MAX_ALIASES} aliases (line {mark.line + 1}); allowed: at most {MAX_ALIASES}")
        if self.depth == MAX_NESTING:
            mark = self.peek_event().start_mark
            raise yaml.YAMLError(f"nested too deeply (line {mark.line + 1}); allowed: at most {MAX_NESTING} levels")
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise yaml.YAMLError(f"a {type(key).__name__} as a key (line {key_node.start_mark.line + 1}); allowed: text keys")
            if key in seen:
                raise yaml.YAMLError(f"key {key!r} repeated (line {key_node.start_mark.line + 1}); allowed: each key once")
            seen.add(key)
        return super().construct_mapping(node, deep)


StackFileLoader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)


def read_stack_text(path: Path, source: str | None = None) -> str:
    """A stack file's text (`source` names it in errors, else its path); one over MAX_STACK_FILE_BYTES is
    refused unread (a merge request's huge file must not fill the reader's memory before parse_stack_file's limit)."""
    source = source or str(path)
    try:
        if path.stat().st_size > MAX_STACK_FILE_BYTES:
            raise RenderError(f"{source}: cannot read stack file: larger than {MAX_STACK_FILE_BYTES} bytes")
        return path.read_text(encoding="utf-8")
    except OSError as err:
        raise RenderError(f"{source}: cannot read stack file: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise RenderError(f"{source}: cannot read stack file: not UTF-8 text (byte {err.start}); allowed: UTF-8 YAML") from None


def read_stack_file(path: Path) -> tuple[dict[str, str], set[str]]:
    """A stack file's config as the engine hands it to the program: strings, JSON for objects.

    `secure:` values cannot be decrypted offline; they become placeholders and their
    top-level keys are secret, as `pulumi config set --secret` would make them.
    """
    return parse_stack_file(read_stack_text(path), str(path))


def parse_stack_file(text: str, source: str) -> tuple[dict[str, str], set[str]]:
    """`read_stack_file` for a stack file's text (e.g. from `git show`); `source` names it in errors.

    The secret keys are the top-level keys holding a `secure:` value and the path of each such
    value (`platform:identity.oidc.clientSecret`), so each secret leaf can be checked.
    """
    if len(text) > MAX_STACK_FILE_BYTES:
        raise RenderError(f"{source}: cannot read stack file: larger than {MAX_STACK_FILE_BYTES} bytes")
    try:
        document = yaml.load(text, Loader=StackFileLoader) or {}  # noqa: S506 a SafeLoader
    except yaml.YAMLError as err:
        raise RenderError(_yaml_problem(source, err)) from None
    entries = document.get("config") if isinstance(document, dict) else None
    if not isinstance(entries, dict):
        raise RenderError(f"{source}: no 'config:' mapping")
    unknown = sorted(str(k) for k in document if k not in STACK_FILE_KEYS)
    if unknown:
        raise ConfigError(source, [f"{k}: unknown stack file key; allowed: {', '.join(STACK_FILE_KEYS)}" for k in unknown])
    raw: dict[str, str] = {}
    secret_keys: set[str] = set()
    for written, value in entries.items():
        key = config_key(written)
        if key in raw:  # Pulumi would take either, at random (a Go map)
            raise ConfigError(source, [f"{written}: {key} given twice; allowed: each key once, as <namespace>:<name>"])
        value, secret_paths = _replace_secure(value, key)
        if secret_paths:
            secret_keys |= {key, *secret_paths}
        if isinstance(value, bool):
            raw[key] = "true" if value else "false"
        elif isinstance(value, (dict, list)):
            raw[key] = json.dumps(value)
        else:
            raw[key] = "" if value is None else str(value)
    return raw, secret_keys


def config_key(written: Any) -> str:
    """A stack file's config key as Pulumi reads it (config.ParseKey): `<namespace>:<name>`; without a
    namespace, the project's; `<namespace>:config:<name>`, an old form Pulumi still accepts, is `<namespace>:<name>`."""
    text = str(written)
    namespace, colon, name = text.partition(":")
    if not colon:
        return f"{PROJECT}:{text}"
    return f"{namespace}:{name.removeprefix('config:')}" if name.count(":") == 1 and name.startswith("config:") else text


def _yaml_problem(source: str, err: yaml.YAMLError) -> str:
    """`file:line:column: what is wrong`, instead of PyYAML's text naming "<unicode string>"."""
    mark = getattr(err, "problem_mark", None)
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
    what = "; ".join(str(part) for part in (getattr(err, "context", None), getattr(err, "problem", None)) if part)
    return f"{where}: not valid YAML: {what or err}"


def _replace_secure(value: Any, path: str) -> tuple[Any, set[str]]:
    """`value` with each `secure:` replaced by a placeholder, and the paths of those replaced."""
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            # Derived from the ciphertext, so a changed secret shows in `platformctl diff`.
            return f"{PLACEHOLDER}-{hashlib.sha256(str(value['secure']).encode()).hexdigest()[:12]}", {path}
        items = {k: _replace_secure(v, f"{path}.{k}") for k, v in value.items()}
        return {k: v for k, (v, _) in items.items()}, set().union(*(s for _, s in items.values()))
    if isinstance(value, list):
        items_list = [_replace_secure(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return [v for v, _ in items_list], set().union(*(s for _, s in items_list))
    return value, set()


# --- tenants leaving, read leniently ------------------------------------------------------------
# The rules below are the program's (stacks/config.py load_platform_config) and the gate's
# (platformctl/access.py), one copy: the gate runs them with its own code on main's pushes, where the
# plan jobs compare only with the commit before the push (.gitlab-ci.yml `.plan`), so a tenant removed
# without an entry in one push would otherwise leave with the next.

OFFBOARDING_HINT = "allowed: a new entry {tenant: <name>, reason: <why>} in platform:offboarding (README: offboarding)"


def parse_value(value: Any) -> Any:
    """Pulumi hands config values over as strings; objects and lists are JSON."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def loaded(raw: dict[str, Any], key: str) -> Any:
    """`platform:<key>`, parsed (None where absent)."""
    return parse_value(raw.get(f"{NAMESPACE}:{key}"))


def stack_tenants(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """The entries of `platform:tenants` that have a name, in order, read leniently (a base need not fit today's model)."""
    tenants = loaded(raw, "tenants")
    return [t for t in (tenants if isinstance(tenants, list) else []) if isinstance(t, dict) and isinstance(t.get("name"), str)]


def offboarding_entries(raw: dict[str, Any]) -> set[tuple[str, str]]:
    """(tenant, reason) of each `platform:offboarding` entry, read leniently."""
    entries = loaded(raw, "offboarding")
    return {(str(e.get("tenant")), str(e.get("reason"))) for e in (entries if isinstance(entries, list) else []) if isinstance(e, dict)}


def offboarding_problems(previous: dict[str, Any], raw: dict[str, Any]) -> list[str]:
    """What a stack's config (`raw`) does to the tenants of its config at the change's base (`previous`)
    without saying so: a tenant removed, or switched to another isolation, without a `platform:offboarding`
    entry naming it that is new (or reworded) since then (an entry left from an earlier change never
    covers a later one); a tenant listed there that takes over another's resources by gaining a
    `renamedFrom`; a former name (`renamedFrom`) whose record goes without an offboarding entry taking
    over; and a new tenant by an offboarded or former tenant's name (at the base or now): what
    offboarding keeps is named after the tenant alone (Vault KV `tenants/<name>/*`, the transit key
    `<name>-cosign` that every cluster trusts for its images, which OpenBao hands back when a key of
    that name is created again, the Harbor project and GitLab group `<name>`, the Velero backups of
    `<name>-prod`), so it would be the new tenant's (tests/test_offboard_attacks.py)."""
    before = {t["name"]: t for t in stack_tenants(previous)}
    entries = offboarding_entries(raw)
    offboarded = {tenant for tenant, reason in entries - offboarding_entries(previous)}
    tenants = stack_tenants(raw)
    # A rename leaves what went by the former name too (README: renaming a tenant); its `renamedFrom` is
    # the name's record until an offboarding entry takes over (a second rename, or dropping it, ends it).
    former = {name: {t["renamedFrom"] for t in found if isinstance(t.get("renamedFrom"), str)}
              for name, found in (("before", before.values()), ("now", tenants))}
    retired = {tenant for tenant, _ in entries | offboarding_entries(previous)} | former["before"] | former["now"]
    now = {t["name"]: t for t in tenants}
    renamed = {t["renamedFrom"]: t for t in tenants if isinstance(t.get("renamedFrom"), str) and t["name"] not in before}
    problems = [
        f"{NAMESPACE}:tenants[{i}].renamedFrom: tenant {t['name']!r} already exists, so it cannot be renamed from "
        f"{t['renamedFrom']!r}; allowed: renamedFrom on the entry that replaces the former one under a new name"
        for i, t in enumerate(tenants)
        if t["name"] in before and t.get("renamedFrom") and t.get("renamedFrom") != before[t["name"]].get("renamedFrom")
    ]
    problems += [
        f"{NAMESPACE}:tenants[{i}].name: {t['name']!r} is an offboarded tenant's name ({NAMESPACE}:offboarding), and what "
        f"offboarding kept goes by it: Vault KV tenants/{t['name']}/*, the signing key {t['name']}-cosign that every cluster "
        f"trusts for its images, the Harbor project and GitLab group {t['name']}, the backups of {t['name']}-prod; allowed: "
        f"another name, or first a change that removes its {NAMESPACE}:offboarding entry once that data is deleted "
        "(a system approver approves it; README: offboarding)"
        for i, t in enumerate(tenants) if t["name"] not in before and t["name"] in retired
    ]
    problems += [
        f"{NAMESPACE}:tenants: the former tenant name {name!r} (renamedFrom) loses its record, which keeps it, and what the "
        f"rename left under it, from a new tenant; allowed: an entry {{tenant: {name}, reason: <why>}} in "
        f"{NAMESPACE}:offboarding, kept (README: renaming a tenant)"
        for name in sorted(former["before"] - former["now"] - {tenant for tenant, _ in entries})
    ]
    for name, entry in sorted(before.items()):
        if name in offboarded:
            continue
        isolation, tenant = str(entry.get("isolation", "namespace")), now.get(name, renamed.get(name))
        if tenant is None:
            problems.append(f"{NAMESPACE}:tenants: tenant {name!r} is removed without a {NAMESPACE}:offboarding entry; {OFFBOARDING_HINT}")
        elif str(tenant.get("isolation", "namespace")) != isolation:
            problems.append(
                f"{NAMESPACE}:tenants: tenant {tenant['name']!r} switches isolation from {isolation} to "
                f"{tenant.get('isolation', 'namespace')}, which replaces its namespaces or virtual clusters, without a "
                f"{NAMESPACE}:offboarding entry for {name!r}; {OFFBOARDING_HINT}"
            )
    return problems
