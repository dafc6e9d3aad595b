"""Signing keys in Vault transit, rotated by `pulumi up`, and the public keys a verifier trusts.

Each key (a tenant's `<tenant>-cosign`, the platform's promotion key `platform-cosign`) is an
ECDSA P-256 transit key that never leaves Vault. Rotation and trust, as one policy:

* Vault never rotates a key on its own (`auto_rotate_period` 0): a version the verifier has not
  been told about would sign images that admission then refuses. Rotation is a resource instead:
  a `pulumiverse_time.Rotating` of `rotation_days` replaces a `vault.generic.Endpoint` that
  writes `transit/keys/<key>/rotate`, and Vault answers that write with every version's public
  key. The verifier's policies are fed from that answer in the same `pulumi up`, so the new
  version is trusted before any pipeline signs with it.
* The newest `trusted_versions` versions are trusted; older ones are pruned, from the verifier's
  policies and in Vault alike: a second endpoint sets the key's `min_decryption_version` (for a
  signing key, the oldest version Vault verifies with and lists), so `cosign verify` through
  Vault agrees with admission. Vault keeps the pruned versions (`deletion_allowed` false): an
  operator can lower the minimum again. An image signed just before a rotation therefore keeps
  verifying for (trusted_versions - 1) x rotation_days at least: rebuild or re-sign it within that.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_vault as vault
import pulumiverse_time as time

from components.inventory import DAY, Credential

# The platform's promotion key: `platform` is a reserved tenant name, so no `<tenant>-cosign` is it.
PLATFORM_KEY = "platform-cosign"
KEY_TYPE = "ecdsa-p256"  # what cosign's hashivault:// signer uses and policy-controller verifies


@dataclass(frozen=True)
class KeyRotation:
    """platform:supplyChain.signingKeys: how often keys rotate, how many versions stay trusted."""

    rotation_days: int = 90
    trusted_versions: int = 2

    @property
    def trusted_days(self) -> int:
        """How long a signature made just before a rotation keeps verifying, at least."""
        return (self.trusted_versions - 1) * self.rotation_days


@dataclass(frozen=True)
class SigningKey:
    name: str  # the key in the transit mount; cosign signs with hashivault://<name>
    key: vault.transit.SecretBackendKey
    rotation: vault.generic.Endpoint
    public_keys: pulumi.Output[list[str]]  # PEM of each trusted version, newest first


def oldest_trusted_version(write_data_json: str, trusted_versions: int) -> int:
    """The oldest version still trusted after the rotation Vault answered with (`latest_version`)."""
    return max(1, int(json.loads(write_data_json or "{}").get("latest_version") or 1) - trusted_versions + 1)


def trusted_public_keys(write_data_json: str, trusted_versions: int) -> list[str]:
    """The PEM public keys of the trusted versions in Vault's answer to a rotation
    (`{"keys": {"<version>": {"public_key": PEM, ...}}, "latest_version": N}`), newest first."""
    versions = json.loads(write_data_json or "{}").get("keys") or {}
    oldest = oldest_trusted_version(write_data_json, trusted_versions)
    return [versions[v]["public_key"] for v in sorted(versions, key=int, reverse=True) if int(v) >= oldest]


def sign_rules(mount: str, key: str) -> str:
    """Vault policy rules: sign with `key` (cosign's hashivault:// signer) and read its public key, nothing else."""
    return "\n".join([
        f'path "{mount}/sign/{key}" {{ capabilities = ["update"] }}',
        f'path "{mount}/sign/{key}/*" {{ capabilities = ["update"] }}',
        f'path "{mount}/keys/{key}" {{ capabilities = ["read"] }}',
    ]) + "\n"


def signing_key(
    resource_name: str,
    key_name: str,
    mount: str,
    rotation: KeyRotation,
    provider: vault.Provider,
    depends_on: list[pulumi.Resource],
    parent: pulumi.Resource,
) -> SigningKey:
    """A non-exportable signing key, its scheduled rotation and the public keys to trust."""
    on_vault = pulumi.ResourceOptions(parent=parent, provider=provider)
    key = vault.transit.SecretBackendKey(
        resource_name,
        backend=mount,
        name=key_name,
        type=KEY_TYPE,
        exportable=False,  # the private key never leaves Vault
        allow_plaintext_backup=False,
        deletion_allowed=False,  # signatures made with it must stay verifiable
        auto_rotate_period=0,  # rotated below, where the verifier learns the new version
        opts=pulumi.ResourceOptions.merge(on_vault, pulumi.ResourceOptions(
            depends_on=depends_on,
            retain_on_delete=True,  # so offboarding completes and the key stays in Vault
            ignore_changes=["minDecryptionVersion"],  # set by the pruning below, after each rotation
        )),
    )
    schedule = time.Rotating(f"{resource_name}-rotation", rotation_days=rotation.rotation_days,
                             opts=pulumi.ResourceOptions(parent=parent))
    rotated = vault.generic.Endpoint(
        f"{resource_name}-rotate",
        path=f"{mount}/keys/{key_name}/rotate",
        data_json="{}",
        disable_read=True,  # a command, not an object: nothing to read back or delete
        disable_delete=True,
        write_fields=["keys", "latest_version"],
        opts=pulumi.ResourceOptions.merge(on_vault, pulumi.ResourceOptions(
            depends_on=[key], replacement_trigger=schedule.rfc3339,
        )),
    )
    vault.generic.Endpoint(
        f"{resource_name}-prune",
        path=f"{mount}/keys/{key_name}/config",
        data_json=rotated.write_data_json.apply(
            lambda answer: json.dumps({"min_decryption_version": oldest_trusted_version(answer, rotation.trusted_versions)})
        ),
        disable_read=True,  # the key resource reads the key; this only moves its minimum
        disable_delete=True,
        opts=on_vault,
    )
    public = rotated.write_data_json.apply(lambda answer: trusted_public_keys(answer, rotation.trusted_versions))
    return SigningKey(key_name, key, rotated, public)


def signing_key_credential(key: str, holder: str, scope: str, rotation: KeyRotation, resource_name: str) -> Credential:
    """The inventory entry of a signing key: who signs with it, and its rotation."""
    return Credential(
        what=f"cosign signing key {key} (Vault transit, {KEY_TYPE}, not exportable)",
        category="signing-key",
        issuer="Vault transit",
        holder=holder,
        scope=scope,
        lifetime_seconds=rotation.rotation_days * DAY,
        rotation=(
            f"a new version every {rotation.rotation_days} days on `pulumi up` (transit rotate); the newest "
            f"{rotation.trusted_versions} versions stay trusted by the image verifier and in Vault (older ones are "
            f"pruned with min_decryption_version), so a signature keeps verifying for at least "
            f"{rotation.trusted_days} days after the next rotation"
        ),
        resources=(resource_name,),
    )
