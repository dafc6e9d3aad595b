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
