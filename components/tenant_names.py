"""How tenants' namespaces are named: shared by the components and the config checks."""

from __future__ import annotations

import hashlib
import re


def namespace_name(tenant: str, environment: str) -> str:
    return f"{tenant}-{environment}"


def sandbox_name(user: str) -> str:
    """A DNS label for a user's sandbox; ids that need changing get a hash, so two never collide."""
    slug = re.sub(r"[^a-z0-9-]+", "-", user.lower()).strip("-")[:40]
    if slug != user:
        slug = f"{slug}-{hashlib.sha256(user.encode()).hexdigest()[:6]}".strip("-")
    return f"sandbox-{slug}"


def tenant_hostname(tenant: str, environment: str, apps_domain: str) -> str:
    """The one hostname a tenant's apps serve in an environment, under that environment's wildcard
    certificate `*.<env>.<apps_domain>` (a wildcard covers one label, so deeper names would need a
    certificate per tenant). Apps of a tenant share it by path. `apps_domain`: platform:appsDomain, a
    site other than the platform's, where a tenant's cookies cannot reach the platform's hosts."""
    return f"{tenant}.{environment}.{apps_domain}"


def virtual_host_name(name: str, virtual_namespace: str, virtual_cluster: str) -> str:
    """The name a virtual cluster gives the host copy of its namespaced object (vCluster's
    translate.SafeConcatName): `<name>-x-<namespace>-x-<vcluster>`; past 63 characters, its first
    52 and 10 hex digits of its SHA-256."""
    joined = "-".join((name, "x", virtual_namespace, "x", virtual_cluster))
    if len(joined) <= 63:
        return joined
    return (joined[:52] + "-" + hashlib.sha256(joined.encode()).hexdigest()[:10]).replace(".-", "-")
