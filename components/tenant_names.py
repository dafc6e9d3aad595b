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


def tenant_hostname(tenant: str, environment: str, domain: str) -> str:
    """The one hostname a tenant's apps serve in an environment, under that environment's wildcard
    certificate `*.<env>.<domain>` (a wildcard covers one label, so deeper names would need a
    certificate per tenant). Apps of a tenant share it by path."""
    return f"{tenant}.{environment}.{domain}"
