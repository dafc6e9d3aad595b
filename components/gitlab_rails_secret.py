"""GitLab's rails secret (`secrets.yml`), owned by the program so that the Pulumi state is its backup.

Its keys encrypt GitLab's database columns (CI/CD variables, 2FA secrets, runner tokens,
integration credentials): a database restored under other keys cannot read them. The chart's
shared-secrets Job would make the keys up inside the cluster, where no backup holds them. Here
they are generated once with pulumi_random and pulumi-tls (the same kinds and lengths that Job
makes in chart 9.9.1), held as Pulumi secrets and written to the Secret the chart reads
(`global.railsSecrets.secret`), so a rebuild from the stack writes the same keys back. A stack
whose GitLab already made its own keys imports them instead (`platform:services.gitlab.railsSecret`,
key by key), and must keep them there: without them the program would generate new ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import pulumi_tls as tls
from pydantic import Field, SecretStr, field_validator

from components import yaml_text
from components.cluster import ClusterHandle
from components.common import ConfigModel
from components.helm import metadata
from components.inventory import STATE, Credential, CredentialInventory

# The chart's default name for release `gitlab`: where the chart's Job already made one, creating it
# fails (README: the one-off import) instead of GitLab switching to new keys.
SECRET_NAME = "gitlab-rails-secret"
KEY = "secrets.yml"
RAILS_ENV = "production"  # the section GitLab's Rails pods read (the chart's `shared-secrets.env`)
# SecureRandom.hex(64) in the chart's Job: 64 random bytes, hex-encoded.
HEX_KEYS = ("secret_key_base", "otp_key_base", "db_key_base", "encrypted_settings_key_base")
SIGNING_KEY = "openid_connect_signing_key"  # RSA 2048, PEM (`openssl genrsa 2048` in the Job)
# Rails' own defaults: 32 alphanumerics each. The two key lists allow adding a key to rotate
# (the last one encrypts, all decrypt).
KEY_LISTS = ("active_record_encryption_primary_key", "active_record_encryption_deterministic_key")
SALT = "active_record_encryption_key_derivation_salt"
KEYS = (*HEX_KEYS, SIGNING_KEY, *KEY_LISTS, SALT)

ROTATION = (
    "never automatically: db_key_base and the Active Record encryption keys decrypt columns already in "
    "the database, so new keys would make them unreadable (lost CI variables, 2FA, runner and integration "
    "tokens). By hand only, with GitLab's key rotation (a new Active Record key added last to its list, "
    "the data re-encrypted, then the old key dropped), the keys set in platform:services.gitlab.railsSecret"
)


class ExistingKeys(ConfigModel):
    """`platform:services.gitlab.railsSecret`: the keys of a GitLab that made its own (its secrets.yml's
    `production` section, key by key, each set with `pulumi config set --secret --path`)."""

    secret_key_base: SecretStr
    otp_key_base: SecretStr
    db_key_base: SecretStr
    encrypted_settings_key_base: SecretStr
    openid_connect_signing_key: SecretStr
    active_record_encryption_primary_key: list[SecretStr] = Field(min_length=1)
    active_record_encryption_deterministic_key: list[SecretStr] = Field(min_length=1)
    active_record_encryption_key_derivation_salt: SecretStr

    @field_validator("*")
    @classmethod
    def _strip(cls, value: SecretStr | list[SecretStr]) -> SecretStr | list[SecretStr]:
        # A value piped into `pulumi config set` may keep its newline; a key with one is another key.
        if isinstance(value, list):
            return [SecretStr(v.get_secret_value().strip()) for v in value]
        return SecretStr(value.get_secret_value().strip())

    def outputs(self) -> dict[str, pulumi.Output[Any]]:
        """Each key as a Pulumi secret, lists as lists."""
        def plain(value: SecretStr | list[SecretStr]) -> Any:
            return [v.get_secret_value() for v in value] if isinstance(value, list) else value.get_secret_value()

        return {k: pulumi.Output.secret(plain(getattr(self, k))) for k in KEYS}


def secrets_document(keys: dict[str, Any]) -> str:
    """secrets.yml as the chart's Job writes it: the keys under the Rails environment."""
    return yaml_text.dump({RAILS_ENV: {k: keys[k] for k in KEYS}}, sort_keys=False)


@dataclass(frozen=True)
class RailsSecretArgs:
    namespace: k8s.core.v1.Namespace
    inventory: CredentialInventory
    protect: bool  # prod: losing the keys loses every encrypted column
    existing: Mapping[str, pulumi.Output[Any]] | None = None  # an existing GitLab's keys (Pulumi secrets); None: generate


class RailsSecret(pulumi.ComponentResource):
    """The Secret `gitlab-rails-secret` with a generated (or imported) secrets.yml; never replaced."""

    secret: k8s.core.v1.Secret

    def __init__(self, name: str, cluster: ClusterHandle, args: RailsSecretArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:gitlab_rails_secret:RailsSecret", name, None, opts)
        # No keepers, no rotation trigger: nothing the program changes can replace a key.
        kept = pulumi.ResourceOptions(parent=self, protect=args.protect)
        keys = dict(args.existing or {})
        generated: tuple[str, ...] = ()
        if not keys:
            keys = {k: random.RandomBytes(f"{name}-{k}", length=64, opts=kept).hex for k in HEX_KEYS}
            keys[SIGNING_KEY] = tls.PrivateKey(f"{name}-{SIGNING_KEY}", algorithm="RSA", rsa_bits=2048, opts=kept).private_key_pem
            for k in (*KEY_LISTS, SALT):
                value = random.RandomPassword(f"{name}-{k}", length=32, special=False, opts=kept).result
                keys[k] = value.apply(lambda v: [v]) if k in KEY_LISTS else value
            generated = KEYS
        document = pulumi.Output.secret(pulumi.Output.all(**keys).apply(secrets_document))
        self.secret = k8s.core.v1.Secret(
            name,
            metadata=metadata(SECRET_NAME, args.namespace),
            type="Opaque",
            string_data={KEY: document},
            opts=pulumi.ResourceOptions(
                parent=self, provider=cluster.provider, depends_on=[args.namespace], protect=args.protect
            ),
        )
        args.inventory.register(Credential(
            what="GitLab rails secret (secret_key_base, otp_key_base, db_key_base, encrypted settings, "
                 "OpenID Connect signing key, Active Record encryption keys)",
            category="bootstrap",
            issuer="the program (pulumi_random, pulumi-tls)" if generated else "GitLab's shared-secrets Job, imported",
            holder=f"{STATE} (its backup) and GitLab's Rails pods (Secret gitlab/{SECRET_NAME})",
            scope="decrypts GitLab's encrypted database columns, signs sessions and GitLab's own ID tokens",
            lifetime_seconds=None,
            rotation=ROTATION,
            resources=(name, *(f"{name}-{k}" for k in generated)),
        ))
        self.register_outputs({"secret": self.secret.metadata.name})
