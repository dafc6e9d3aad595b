"""Names made from a tenant's name fit their limits at the longest tenant name the config allows.

A name over its limit is refused by Helm or the API server in the middle of `pulumi up`, after
the tenant's other resources exist. Each name in both stacks' plans (and in the objects Helm
renders) that holds a tenant's name grows by as many characters as that name for each time it
holds it; at TENANT_NAME_MAX characters every one must still fit."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from platformctl.helm_render import RELEASE_TYPE
from platformctl.render import Render
from stacks.config import TENANT_NAME_MAX

# Helm's maxReleaseNameLen (pkg/chartutil/validate_name.go).
HELM_RELEASE = 53
# DNS-1123 labels: namespaces, Services (DNS-1035 labels), label values.
LABEL = 63
# A StatefulSet's pods carry `controller-revision-hash: <name>-<10 characters>`, a label value;
# a CronJob's Jobs are named `<name>-<11 digits>`.
STATEFULSET = CRONJOB = LABEL - 11
SUBDOMAIN = 253
IAM_ROLE = 64
NAME_LIMITS = {"Namespace": LABEL, "Service": LABEL, "StatefulSet": STATEFULSET, "CronJob": CRONJOB}


def _names(resource: dict[str, Any]) -> Iterator[tuple[str, str, int]]:
    """(what, name, limit) of each name `resource` declares or its release renders."""
    inputs = resource["inputs"]
    if resource["type"] == RELEASE_TYPE:
        yield "Helm release", inputs.get("name") or resource["name"], HELM_RELEASE
    if resource["type"] == "aws:iam/role:Role" and "name" in inputs:
        yield "IAM role", inputs["name"], IAM_ROLE
    objects = [inputs] if resource["type"].startswith("kubernetes:") else []
    for obj in (*objects, *(resource.get("rendered") or ())):
        metadata = obj.get("metadata")
        if not isinstance(metadata, dict):
            continue
        kind = str(obj.get("kind"))
        if isinstance(metadata.get("name"), str):
            yield kind, metadata["name"], NAME_LIMITS.get(kind, SUBDOMAIN)
        if isinstance(metadata.get("namespace"), str):
            yield "namespace", metadata["namespace"], LABEL
        for key, value in (metadata.get("labels") or {}).items():
            yield f"label {key}", str(value), LABEL


def _room(render: Render) -> dict[tuple[str, str], int]:
    """(what, name with <tenant> for the tenant's name) -> the longest tenant name it leaves room for."""
    tenants = sorted((r["name"] for r in render.plan["resources"] if r["type"] == "platform:tenant:Tenant"), key=len, reverse=True)
    assert tenants
    pattern = re.compile(rf"(?<![a-z0-9])({'|'.join(map(re.escape, tenants))})(?![a-z0-9])")
    room: dict[tuple[str, str], int] = {}
    for resource in render.plan["resources"]:
        for what, name, limit in _names(resource):
            found = pattern.findall(name)
            if found:
                key = (what, pattern.sub("<tenant>", name))
                longest = (limit - len(name) + sum(map(len, found))) // len(found)
                room[key] = min(longest, room.get(key, longest))
    return room


def test_every_name_made_from_a_tenants_fits_at_the_longest_tenant_name(charted: dict[str, Render]) -> None:
    for stack, render in charted.items():
        room = _room(render)
        tight = sorted((longest, what, name) for (what, name), longest in room.items() if longest < TENANT_NAME_MAX)
        assert not tight, (stack, tight)
        # The limit is the tightest name's, not lower: the config refuses no name the platform can make.
        assert min(room.values()) == TENANT_NAME_MAX, (stack, min(room.items(), key=lambda item: item[1]))
        assert room["Helm release", "gitlab-runner-<tenant>-protected"] == TENANT_NAME_MAX
