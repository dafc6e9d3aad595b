"""The credential inventory: every credential the program creates or configures, as data.

Whoever creates a credential registers one `Credential` in the run's `CredentialInventory`
(components through their Args, the composition for what it wires); the stack output
`credentials` is `CredentialInventory.entries()`, and `policy/inventory.py` checks that
output together with the plan. The check also finds every credential-bearing resource of the
plan (random passwords, private keys, robots, deploy keys, Vault roles, web-identity IAM
roles, ...) and fails on any that no entry names in `resources`, so forgetting to register
is a test failure, not a silent gap.

Categories: the issue's rule ("no expiry, or more than 90 days, fails") is about
credentials presented by one system to another. Everything is listed; only what crosses a
system boundary at run time is held to the rule, and each other category has a structural
condition the check enforces, so it cannot be used to hide a cross-system credential:

* `federated`   minted per use from an identity the holder already has (service-account
                token -> Vault token, CI ID token -> AWS session). Must expire, <= 90 days.
* `issued`      a stored bearer credential one system issued to another (GitLab token,
                Harbor robot, deploy key, OIDC client secret). Must expire, <= 90 days.
* `internal`    a secret among the components of one system (Harbor's database password).
                `issuer` and `holder` must name the same system.
* `signing-key` signs other credentials and is never presented to anyone (a CA key); what
                it signs is listed and checked on its own.
* `bootstrap`   the program's own administrative or recovery material for a system it
                creates (Vault's root token and unseal keys, Harbor's admin password),
                kept in the encrypted stack state: `holder` must name the Pulumi state.
                Whoever can decrypt the state can rebuild the platform anyway (README).
* `external`    its lifetime is set by a party outside the program (the upstream identity
                provider's client secret, a kubeconfig's credential, the ACME account key):
                listed with who sets it (`lifetime`) and how to rotate it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from policy.inventory import CATEGORIES

Category = Literal["federated", "issued", "internal", "signing-key", "bootstrap", "external"]

MINUTE, HOUR, DAY = 60, 3600, 86400
STATE = "the stack's encrypted Pulumi state"  # where the program's own secrets live (a `bootstrap` holder)


def describe_seconds(seconds: int | None) -> str:
    """A lifetime in words: 'never expires', '1 minute', '20 minutes', '1 hour', '30 days'."""
    if seconds is None:
        return "never expires"
    for unit, size in (("day", DAY), ("hour", HOUR), ("minute", MINUTE)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"


@dataclass(frozen=True)
class Credential:
    what: str
    category: Category
    issuer: str  # who mints or generates it (for `internal`: the system it belongs to)
    holder: str  # who keeps and presents it
    scope: str  # what it allows
    lifetime_seconds: int | None  # None: it never expires (or, for `external`, the program cannot know)
    rotation: str  # how a new one replaces it
    resources: tuple[str, ...] = ()  # the plan resources (Pulumi names) that create or configure it
    lifetime: str | None = None  # words, when the seconds alone mislead ("the job's timeout")

    def __post_init__(self) -> None:
        # Fail in the program, at the registration that is wrong, not later in a check.
        for name in ("what", "issuer", "holder", "scope", "rotation"):
            if not str(getattr(self, name)).strip():
                raise ValueError(f"credential {self.what!r}: '{name}' is empty")
        if self.category not in CATEGORIES:
            raise ValueError(f"credential {self.what!r}: category {self.category!r} is not one of {', '.join(CATEGORIES)}")
        if self.lifetime_seconds is not None and (isinstance(self.lifetime_seconds, bool) or self.lifetime_seconds <= 0):
            raise ValueError(f"credential {self.what!r}: lifetime_seconds must be a positive number of seconds or None")

    def to_output(self) -> dict[str, Any]:
        """The stack output's form (camelCase, like every other output)."""
        return {
            "what": self.what,
            "category": self.category,
            "issuer": self.issuer,
            "holder": self.holder,
            "scope": self.scope,
            "lifetime": self.lifetime or describe_seconds(self.lifetime_seconds),
            "lifetimeSeconds": self.lifetime_seconds,
            "rotation": self.rotation,
            "resources": list(self.resources),
        }


@dataclass
class CredentialInventory:
    """One per program run: created by the composition and handed to whoever creates credentials.

    Register synchronously while declaring resources (not inside `apply`): the composition reads
    `entries()` when it builds the stack outputs, after every component has been declared.
    """

    _entries: list[Credential] = field(default_factory=list)

    def register(self, *credentials: Credential) -> None:
        self._entries.extend(credentials)

    def entries(self) -> list[dict[str, Any]]:
        """The stack output `credentials`, sorted so the order of tenants in the config does not matter."""
        return sorted((credential.to_output() for credential in self._entries), key=lambda c: (c["what"], c["resources"]))


# Constructors of the kinds of credential that recur across services: each fixes what the kind
# implies (category, who issues it, how it expires), so a record names only what is its own.

PROJECTED_TOKEN_ROTATION = "the kubelet refreshes the projected token before it expires"
CERT_MANAGER_ROTATION = "cert-manager renews at two thirds of the lifetime"


def generated_password(what: str, holder: str, scope: str, rotation: str, resource: str) -> Credential:
    """A password the program generates (pulumi_random) to set up a system it creates; it never expires."""
    return Credential(
        what=what, category="bootstrap", issuer="the program (pulumi_random)", holder=holder, scope=scope,
        lifetime_seconds=None, rotation=rotation, resources=(resource,),
    )


def projected_token(
    what: str, issuer: str, holder: str, scope: str, *, seconds: int = HOUR, rotation: str = PROJECTED_TOKEN_ROTATION,
    lifetime: str | None = None, resources: tuple[str, ...] = (),
) -> Credential:
    """A service-account token the kubelet projects into a pod and refreshes (`issuer`: the cluster's;
    `seconds`: an hour, the projected token's default, unless the issuer sets another)."""
    return Credential(
        what=what, category="federated", issuer=issuer, holder=holder, scope=scope,
        lifetime_seconds=seconds, rotation=rotation, lifetime=lifetime, resources=resources,
    )


def vault_token(
    what: str, login: str, holder: str, scope: str, seconds: int, rotation: str, resources: tuple[str, ...] = ()
) -> Credential:
    """A token Vault issues on a login (`login`: the auth mount, or the parent token, it comes from)."""
    return Credential(
        what=what, category="federated", issuer=f"Vault, {login}", holder=holder, scope=scope,
        lifetime_seconds=seconds, rotation=rotation, resources=resources,
    )


def issued_token(
    what: str, issuer: str, holder: str, scope: str, days: int, rotation: str, *, lifetime: str | None = None,
    resources: tuple[str, ...] = (),
) -> Credential:
    """A token a service (GitLab, Harbor) issues for an account the program keeps, valid `days`."""
    return Credential(
        what=what, category="issued", issuer=issuer, holder=holder, scope=scope,
        lifetime_seconds=days * DAY, lifetime=lifetime, rotation=rotation, resources=resources,
    )


def internal_secret(
    system: str, what: str, scope: str, rotation: str, *, seconds: int | None = None, lifetime: str | None = None,
    resources: tuple[str, ...] = (),
) -> Credential:
    """A secret among the components of one `system`, which both issues and holds it."""
    return Credential(
        what=what, category="internal", issuer=system, holder=system, scope=scope,
        lifetime_seconds=seconds, rotation=rotation, lifetime=lifetime, resources=resources,
    )


def external_secret(
    what: str, issuer: str, holder: str, scope: str, lifetime: str, rotation: str, resources: tuple[str, ...] = ()
) -> Credential:
    """A credential the program is given: its lifetime is the `issuer`'s to set (`lifetime` says how)."""
    return Credential(
        what=what, category="external", issuer=issuer, holder=holder, scope=scope,
        lifetime_seconds=None, lifetime=lifetime, rotation=rotation, resources=resources,
    )


def cert_manager_certificate(
    what: str, issuer: str, holder: str, scope: str, days: int, *, rotation: str = CERT_MANAGER_ROTATION,
    category: Category = "issued", resources: tuple[str, ...] = (),
) -> Credential:
    """A certificate (or CA key) cert-manager issues from `issuer` and renews before it expires."""
    return Credential(
        what=what, category=category, issuer=issuer, holder=holder, scope=scope,
        lifetime_seconds=days * DAY, rotation=rotation, resources=resources,
    )


def refreshed(
    what: str, issuer: str, holder: str, scope: str, every_days: int, *, then: str = "", lifetime_days: int | None = None,
    lifetime: str | None = None, resources: tuple[str, ...] = (),
) -> Credential:
    """An issued credential the program replaces on `pulumi up --refresh` every `every_days` (`then`: what
    that run also does); valid for `lifetime_days` where that is longer."""
    return Credential(
        what=what, category="issued", issuer=issuer, holder=holder, scope=scope,
        lifetime_seconds=(lifetime_days or every_days) * DAY, lifetime=lifetime,
        rotation=f"replaced by `pulumi up --refresh` every {every_days} days{then}", resources=resources,
    )


def program_certificate(
    what: str, signed: str, holder: str, scope: str, hours: int, rotation: str, *, category: Category = "issued",
    resources: tuple[str, ...] = (),
) -> Credential:
    """A key and certificate the program makes with pulumi_tls (`signed`: by whom), valid `hours`."""
    return Credential(
        what=what, category=category, issuer=f"the program (pulumi_tls, {signed})", holder=holder, scope=scope,
        lifetime_seconds=hours * HOUR, rotation=rotation, resources=resources,
    )
