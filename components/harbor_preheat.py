"""A Harbor preheat policy on a project: a dynamic provider over Harbor's REST API.

pulumiverse-harbor declares preheat instances (`PreheatInstance`) but has no preheat-policy
resource (its 3.x SDK, and the Terraform provider it bridges), so `PreheatPolicy` calls
`/api/v2.0/projects/{project}/preheat/policies` itself, when the engine runs it (create, update,
delete), never while the program is evaluated. It signs in as the Harbor admin the harbor
provider uses (a Pulumi secret, in the state only as one), over https only, verifying TLS with the
CA bundle it is given (empty: the system roots; nothing turns verification off).

The policy preheats on Harbor's events (`event_based`: a push, a finished scan) the artifacts whose
tag matches `tags`; Harbor sends each to the instance's Dragonfly. Signed and scanned come from the
project, not the policy: Harbor's enforcer replaces a policy's signature and vulnerability filters
with the project's own settings (goharbor/harbor `overrideSecuritySettings`), so the project's
severity gate (`deployment_security`) filters what is preheated. The platform's one such project is
`approved` (components/dragonfly.py `preheat_approved`).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import pulumi
import requests
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult

API = "/api/v2.0"
TIMEOUT_SECONDS = 30
# What the policy sends; a change to any of these updates the policy in place.
INPUTS = ("harbor_url", "ca_bundle", "username", "password", "project", "instance", "name", "tags")


def filters(tags: str) -> str:
    """Harbor's filter list (a JSON string in its API): every repository, `tags` (the rest: the project's)."""
    return json.dumps([{"type": "repository", "value": "**"}, {"type": "tag", "value": tags}])


TRIGGER = json.dumps({"type": "event_based", "trigger_setting": {}})


class PreheatPolicyProvider(ResourceProvider):
    """The engine-side implementation; every Harbor call goes through `_call`."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        self._call(props, "POST", f"/projects/{props['project']}/preheat/policies", self._body(props))
        return CreateResult(f"{props['project']}/{props['name']}", props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [key for key in ("harbor_url", "project", "name") if olds.get(key) != news.get(key)]
        changed = any(olds.get(key) != news.get(key) for key in INPUTS)
        return DiffResult(changes=changed, replaces=replaces, delete_before_replace=True)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        path = f"/projects/{news['project']}/preheat/policies/{news['name']}"
        current = self._call(news, "GET", path).json()
        self._call(news, "PUT", path, {**self._body(news), "id": current["id"]})
        return UpdateResult(news)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        self._call(props, "DELETE", f"/projects/{props['project']}/preheat/policies/{props['name']}", missing_ok=True)

    def _body(self, props: dict[str, Any]) -> dict[str, Any]:
        instance = self._call(props, "GET", f"/p2p/preheat/instances/{props['instance']}").json()
        return {
            "name": props["name"],
            "description": f"preheat {props['tags']} on {props['instance']}",
            "provider_id": instance["id"],
            "filters": filters(props["tags"]),
            "trigger": TRIGGER,
            "enabled": True,
        }

    @staticmethod
    def _call(props: dict[str, Any], method: str, path: str, body: Any = None, missing_ok: bool = False) -> requests.Response:
        url = f"{props['harbor_url']}{API}{path}"
        if not url.startswith("https://"):
            raise ValueError(f"Harbor's preheat API is called over https only, not {url}")
        with tempfile.TemporaryDirectory() as tmp:
            verify: str | bool = True
            if props["ca_bundle"]:
                verify = os.path.join(tmp, "ca.pem")
                with open(verify, "w", encoding="ascii") as handle:
                    handle.write(props["ca_bundle"])
            response = requests.request(
                method, url, json=body, auth=(props["username"], props["password"]), verify=verify, timeout=TIMEOUT_SECONDS
            )
        if missing_ok and response.status_code == 404:
            return response
        if not response.ok:
            raise RuntimeError(f"Harbor {method} {path}: HTTP {response.status_code}: {response.text[:500]}")
        return response


class PreheatPolicy(pulumi.dynamic.Resource, module="harbor", name="PreheatPolicy"):
    """One preheat policy of a Harbor project; see the module docstring."""

    TYPE = "pulumi-python:dynamic/harbor:PreheatPolicy"

    def __init__(
        self,
        resource_name: str,
        *,
        harbor_url: str,
        ca_bundle: pulumi.Input[str],
        username: str,
        password: pulumi.Input[str],
        project: str,
        instance: pulumi.Input[str],
        name: str,
        tags: str,
        opts: pulumi.ResourceOptions | None = None,
    ):
        props = {
            "harbor_url": harbor_url, "ca_bundle": ca_bundle, "username": username,
            "password": pulumi.Output.secret(password), "project": project, "instance": instance, "name": name, "tags": tags,
        }
        secret = pulumi.ResourceOptions(additional_secret_outputs=["password"])  # the admin's, in the state as a secret only
        super().__init__(PreheatPolicyProvider(), resource_name, props, pulumi.ResourceOptions.merge(opts, secret))
