"""Apply a plan's pulumi-vault resources to a real Vault-compatible server and read each back.

Each resource type maps to the Vault HTTP API calls terraform-provider-vault makes for it
(`WRITERS`); after the write, the applier reads the object back and compares every field it
wrote (durations in seconds, the provider's comma-split `bound_claims`), so a value the server
rejects, drops or rewrites fails the test that applies it.

What the plan cannot hold for a live server is substituted, never skipped:
* computed outputs (a mount's accessor, an identity group's id) are the mocks' values in the
  plan; `PlatformMocks` gives each applied resource's mock outputs, which map to the real ones;
* secrets are redacted in the plan: a placeholder is written instead;
* hosts that do not resolve here (OIDC discovery, a cluster's API server) are rewritten by
  `rewrite` (plan URL -> loopback URL) and then trust `ca_pem`, the loopback peer's CA.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import hvac
import hvac.exceptions
from pulumi.runtime.mocks import MockResourceArgs

from platformctl.mocks import REDACTED, PlatformMocks

PLACEHOLDER = "placeholder-secret"
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
_DURATION = re.compile(r"^(\d+)([smhd]?)$")


def snake(inputs: dict[str, Any]) -> dict[str, Any]:
    return {_CAMEL.sub("_", key).lower(): value for key, value in inputs.items()}


def seconds(value: Any) -> Any:
    """Vault reads durations back as seconds; the provider writes "1h" or 3600."""
    match = _DURATION.match(str(value))
    if not match:
        return value
    return int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


@dataclass
class Applied:
    type: str
    name: str
    path: str  # the API path it was written to and read back from
    wrote: dict[str, Any]
    read: dict[str, Any]

    def mismatches(self) -> dict[str, tuple[Any, Any]]:
        """Each written field whose read-back differs: {field: (wrote, read)}."""
        out = {}
        for key, value in self.wrote.items():
            back = self.read.get(key)
            if isinstance(value, list) and isinstance(back, list):
                same = sorted(map(str, value)) == sorted(map(str, back))
            elif isinstance(value, dict) and isinstance(back, dict):
                same = {k: _norm(v) for k, v in value.items()} == {k: _norm(v) for k, v in back.items()}
            else:
                same = seconds(value) == seconds(back)
            if not same:
                out[key] = (value, back)
        return out


def _norm(value: Any) -> Any:
    return sorted(map(str, value)) if isinstance(value, list) else str(seconds(value))


@dataclass
class VaultApplier:
    client: hvac.Client  # root token, on the server the plan is applied to
    ca_pem: str  # trusted for every rewritten URL
    rewrite: dict[str, str] = field(default_factory=dict)  # plan URL -> loopback URL
    real: dict[str, str] = field(default_factory=dict)  # mock output value -> real value
    applied: list[Applied] = field(default_factory=list)

    def apply(self, resources: list[dict[str, Any]]) -> list[Applied]:
        """Apply every `vault:` resource of `resources` (plan order: dependencies first)."""
        for resource in resources:
            writer = WRITERS.get(resource["type"])
            if resource["type"].startswith("vault:") and writer is None:
                raise NotImplementedError(f"no API mapping for {resource['type']} ({resource['name']})")
            if writer is not None:
                inputs = snake(self._substitute(resource["inputs"]))
                applied = writer(self, resource["name"], inputs)
                applied.type = resource["type"]
                self.applied.append(applied)
                self._learn_outputs(resource, applied)
        return self.applied

    def _substitute(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self._substitute(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._substitute(v) for v in value]
        if value == REDACTED:
            return PLACEHOLDER
        if isinstance(value, str):
            return self.real.get(value, self.rewrite.get(value, value))
        return value

    def _learn_outputs(self, resource: dict[str, Any], applied: Applied) -> None:
        mock_id, outputs = PlatformMocks().new_resource(
            MockResourceArgs(resource["type"], resource["name"], resource["inputs"], "", None, True)
        )
        if "accessor" in outputs:
            self.real[outputs["accessor"]] = applied.read["accessor"]
        if "clientId" in outputs:  # an identity token role's: its tokens' audience
            self.real[outputs["clientId"]] = applied.read["client_id"]
        if mock_id is not None and "id" in applied.read:
            self.real[mock_id] = applied.read["id"]

    # --- the API, per resource type ------------------------------------------------------

    def write_read(self, name: str, path: str, body: dict[str, Any]) -> Applied:
        self.client.write_data(path, data=body)
        return self.read_back(name, path, body)

    def read_back(self, name: str, path: str, wrote: dict[str, Any]) -> Applied:
        read = self.client.read(path)
        return Applied("", name, path, wrote, (read or {}).get("data") or {})

    def mount(self, name: str, i: dict[str, Any]) -> Applied:
        body = {"type": i["type"], "description": i.get("description", ""), "options": i.get("options") or {}}
        self.client.write_data(f"sys/mounts/{i['path']}", data=body)
        if body["options"].get("version") == "2":
            self._wait_for_kv_upgrade(i["path"])
        read = self.client.read("sys/mounts")["data"][f"{i['path']}/"]
        return Applied("", name, f"sys/mounts/{i['path']}", body, read)

    def _wait_for_kv_upgrade(self, path: str) -> None:
        """A new KV v2 mount upgrades itself for a moment and refuses writes meanwhile (so does
        the real Vault; terraform-provider-vault retries them)."""
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.read(f"{path}/config")
                return
            except hvac.exceptions.InvalidRequest:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def audit(self, name: str, i: dict[str, Any]) -> Applied:
        body = {"type": i["type"], "description": i.get("description", ""), "options": i.get("options") or {}}
        self.client.write_data(f"sys/audit/{i['path']}", data=body)
        read = self.client.read("sys/audit")["data"][f"{i['path']}/"]
        return Applied("", name, f"sys/audit/{i['path']}", body, read)

    def policy(self, name: str, i: dict[str, Any]) -> Applied:
        return self.write_read(name, f"sys/policies/acl/{i['name']}", {"policy": i["policy"]})

    def auth_backend(self, name: str, i: dict[str, Any]) -> Applied:
        path = i["path"]
        self.client.write_data(f"sys/auth/{path}", data={"type": i["type"], "description": i.get("description", "")})
        tune = snake(i.get("tune") or {})
        if tune:
            self.client.write_data(f"sys/auth/{path}/tune", data=tune)
        read = self.client.read(f"sys/auth/{path}/tune")["data"]
        mount = self.client.read("sys/auth")["data"][f"{path}/"]
        return Applied("", name, f"sys/auth/{path}", {"type": i["type"], "description": i.get("description", ""), **tune},
                       {**read, "type": mount["type"], "description": mount["description"], "accessor": mount["accessor"]})

    def jwt_backend(self, name: str, i: dict[str, Any]) -> Applied:
        mount = self.auth_backend(name, i)
        config = {
            key: i[key]
            for key in ("oidc_discovery_url", "oidc_discovery_ca_pem", "bound_issuer", "oidc_client_id",
                        "oidc_client_secret", "default_role", "jwks_url", "jwt_validation_pubkeys")
            if key in i
        }
        if config.get("oidc_discovery_url") in self.rewrite.values():
            config["oidc_discovery_ca_pem"] = self.ca_pem  # the loopback peer's certificate
        config_read = self.write_read(name, f"auth/{i['path']}/config", config)
        config_read.wrote.pop("oidc_client_secret", None)  # write-only
        mount.wrote.update(config_read.wrote)
        mount.read.update(config_read.read)
        return mount

    def kubernetes_config(self, name: str, i: dict[str, Any]) -> Applied:
        body = {key: i[key] for key in ("kubernetes_host", "kubernetes_ca_cert", "disable_local_ca_jwt") if key in i}
        if body.get("kubernetes_host") in self.rewrite.values():
            body["kubernetes_ca_cert"] = self.ca_pem
        return self.write_read(name, f"auth/{i['backend']}/config", body)

    def role(self, name: str, i: dict[str, Any]) -> Applied:
        body = {k: v for k, v in i.items() if k not in ("backend", "role_name")}
        if "bound_claims" in body:
            # terraform-provider-vault splits each bound claim on commas into a list.
            body["bound_claims"] = {k: v.split(",") for k, v in body["bound_claims"].items()}
        return self.write_read(name, f"auth/{i['backend']}/role/{i['role_name']}", body)

    def group(self, name: str, i: dict[str, Any]) -> Applied:
        created = self.client.write_data("identity/group", data=i)
        group_id = created["data"]["id"] if created else self.client.read(f"identity/group/name/{i['name']}")["data"]["id"]
        return self.read_back(name, f"identity/group/id/{group_id}", i)

    def group_alias(self, name: str, i: dict[str, Any]) -> Applied:
        created = self.client.write_data("identity/group-alias", data=i)
        return self.read_back(name, f"identity/group-alias/id/{created['data']['id']}", i)

    def transit_key(self, name: str, i: dict[str, Any]) -> Applied:
        path = f"{i['backend']}/keys/{i['name']}"
        body = {k: i[k] for k in ("type", "exportable", "allow_plaintext_backup") if k in i}
        self.client.write_data(path, data=body)
        self.client.write_data(f"{path}/config", data={"deletion_allowed": i.get("deletion_allowed", False)})
        return self.read_back(name, path, {**body, "deletion_allowed": i.get("deletion_allowed", False)})

    def endpoint(self, name: str, i: dict[str, Any]) -> Applied:
        """A generic endpoint write (a transit key's rotation, or its pruning): `read` is what the
        provider keeps of Vault's answer (`write_fields`), from which the program reads its `write_data_json`."""
        # data_json is sensitive in the provider, so redacted in the plan: written as {} (a rotation's
        # body; a pruning then changes nothing, as the first one after a key's creation does).
        body = {} if i["data_json"] == PLACEHOLDER else json.loads(i["data_json"])
        answer = (self.client.write_data(i["path"], data=body) or {}).get("data") or {}
        return Applied("", name, i["path"], {}, {f: answer[f] for f in i.get("write_fields") or [] if f in answer})

    def oidc_config(self, name: str, i: dict[str, Any]) -> Applied:
        return self.write_read(name, "identity/oidc/config", {"issuer": i["issuer"]})

    def oidc_key(self, name: str, i: dict[str, Any]) -> Applied:
        return self.write_read(name, f"identity/oidc/key/{i['name']}", {k: v for k, v in i.items() if k != "name"})

    def oidc_role(self, name: str, i: dict[str, Any]) -> Applied:
        return self.write_read(name, f"identity/oidc/role/{i['name']}", {k: v for k, v in i.items() if k != "name"})

    def oidc_key_client(self, name: str, i: dict[str, Any]) -> Applied:
        """As terraform-provider-vault's identity_oidc_key_allowed_client_id: the key's list, read, with this id added."""
        path = f"identity/oidc/key/{i['key_name']}"
        allowed = sorted({*(self.client.read(path)["data"].get("allowed_client_ids") or []), i["allowed_client_id"]})
        self.client.write_data(path, data={"allowed_client_ids": allowed})
        read = self.client.read(path)["data"]
        return Applied("", name, path, {"allowed_client_id": i["allowed_client_id"]},
                       {"allowed_client_id": i["allowed_client_id"] if i["allowed_client_id"] in read["allowed_client_ids"] else None})

    def kv_secret(self, name: str, i: dict[str, Any]) -> Applied:
        data = json.loads(i["data_json"]) if i["data_json"] != PLACEHOLDER else {"value": PLACEHOLDER}
        self.client.write_data(f"{i['mount']}/data/{i['name']}", data={"data": data})
        read = self.client.read(f"{i['mount']}/data/{i['name']}")["data"]
        return Applied("", name, f"{i['mount']}/data/{i['name']}", {"data": data}, read)


WRITERS: dict[str, Callable[[VaultApplier, str, dict[str, Any]], Applied]] = {
    "vault:index/mount:Mount": VaultApplier.mount,
    "vault:index/audit:Audit": VaultApplier.audit,
    "vault:index/policy:Policy": VaultApplier.policy,
    "vault:index/authBackend:AuthBackend": VaultApplier.auth_backend,
    "vault:jwt/authBackend:AuthBackend": VaultApplier.jwt_backend,
    "vault:kubernetes/authBackendConfig:AuthBackendConfig": VaultApplier.kubernetes_config,
    "vault:kubernetes/authBackendRole:AuthBackendRole": VaultApplier.role,
    "vault:jwt/authBackendRole:AuthBackendRole": VaultApplier.role,
    "vault:identity/group:Group": VaultApplier.group,
    "vault:identity/groupAlias:GroupAlias": VaultApplier.group_alias,
    "vault:transit/secretBackendKey:SecretBackendKey": VaultApplier.transit_key,
    "vault:kv/secretV2:SecretV2": VaultApplier.kv_secret,
    "vault:identity/oidc:Oidc": VaultApplier.oidc_config,
    "vault:identity/oidcKey:OidcKey": VaultApplier.oidc_key,
    "vault:identity/oidcRole:OidcRole": VaultApplier.oidc_role,
    "vault:identity/oidcKeyAllowedClientID:OidcKeyAllowedClientID": VaultApplier.oidc_key_client,
    "vault:generic/endpoint:Endpoint": VaultApplier.endpoint,
}
