"""Signatures the image verifier trusts, end to end on a real OpenBao server (issue 19).

The dev plan's Vault resources are applied to OpenBao (tests/openbao.py): the transit keys and
their rotations as the program declares them. A tenant's CI job signs a real cosign
simple-signing payload with its transit key the way cosign's `hashivault://` signer does
(prehashed SHA-256, DER signature); the public keys come from the rotation's answer exactly as
the program feeds them to the verifier (`components.signing.trusted_public_keys` of the
endpoint's `write_data_json`), and the signature is checked with `cryptography`, as
policy-controller checks a key authority. Another tenant's key, a key outside Vault and another
digest are refused by the same check; rotation keeps the newest versions and prunes the rest.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from typing import Any

import hvac.exceptions
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from components.signing import PLATFORM_KEY, KeyRotation, oldest_trusted_version, trusted_public_keys
from components.tenancy import TRANSIT_MOUNT, cosign_key
from tests.test_vault_access import TENANTS, ci_login
from tests.vault_apply import VaultApplier

REGISTRY = "harbor.dev.platform.example.com"  # the registry of the dev stack
ENDPOINT = "vault:generic/endpoint:Endpoint"
DIGEST = "sha256:" + hashlib.sha256(b"an image manifest").hexdigest()
OTHER_DIGEST = "sha256:" + hashlib.sha256(b"another image manifest").hexdigest()


def payload(reference: str, digest: str) -> bytes:
    """cosign's simple-signing payload for an image digest (what `cosign sign` signs)."""
    return json.dumps({
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    }).encode()


def transit_sign(client: Any, key: str, message: bytes) -> bytes:
    """Sign as cosign's hashivault:// signer: the SHA-256 digest, prehashed; the DER signature."""
    answer = client.write_data(f"{TRANSIT_MOUNT}/sign/{key}/sha2-256", data={
        "input": base64.b64encode(hashlib.sha256(message).digest()).decode(), "prehashed": True,
    })
    return base64.b64decode(answer["data"]["signature"].split(":", 2)[2])  # "vault:v<N>:<base64>"


def verified(message: bytes, signature: bytes, public_keys: list[str]) -> bool:
    """A key authority's check: one of the trusted keys verifies the signature over the payload."""
    for pem in public_keys:
        key = serialization.load_pem_public_key(pem.encode())
        assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
        try:
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
            return True
        except InvalidSignature:
            continue
    return False


def rotation_of(vault: Any, key: str) -> Any:
    [applied] = [a for a in vault.applied if a.type == ENDPOINT and a.path == f"{TRANSIT_MOUNT}/keys/{key}/rotate"]
    return applied


def fed_to_verifier(answer: dict[str, Any], rotation: KeyRotation = KeyRotation()) -> list[str]:
    """What the program hands the verifier: the provider's write_data_json of the rotation's answer."""
    return trusted_public_keys(json.dumps(answer), rotation.trusted_versions)


@pytest.fixture(scope="module")
def dev_vault(plan_vaults: Any) -> Any:
    return plan_vaults("dev")


def tenant_signer(vault: Any, tenant: str) -> Any:
    """The tenant's CI job on a protected branch, logged in with its ID token."""
    auth = ci_login(vault, tenant, "protected branch")
    assert auth is not None
    return vault.client(auth["client_token"])


@pytest.mark.parametrize("tenant", TENANTS)
def test_a_signature_by_the_tenants_transit_key_verifies_with_the_keys_fed_to_the_verifier(dev_vault, tenant) -> None:
    other = next(t for t in TENANTS if t != tenant)
    message = payload(f"{REGISTRY}/{tenant}/app", DIGEST)
    signature = transit_sign(tenant_signer(dev_vault, tenant), cosign_key(tenant), message)
    trusted = fed_to_verifier(rotation_of(dev_vault, cosign_key(tenant)).read)
    assert len(trusted) == 2  # created, then rotated once by the program: both versions trusted
    assert verified(message, signature, trusted)
    # The same check refuses: another digest, another tenant's key, a key outside Vault.
    assert not verified(payload(f"{REGISTRY}/{tenant}/app", OTHER_DIGEST), signature, trusted)
    theirs = transit_sign(tenant_signer(dev_vault, other), cosign_key(other), message)
    assert not verified(message, theirs, trusted)
    assert verified(message, theirs, fed_to_verifier(rotation_of(dev_vault, cosign_key(other)).read))
    outside = ec.generate_private_key(ec.SECP256R1()).sign(message, ec.ECDSA(hashes.SHA256()))
    assert not verified(message, outside, trusted)


def test_the_keys_fed_to_the_verifier_are_what_vault_publishes_for_the_key(dev_vault) -> None:
    root = dev_vault.client(dev_vault.root_token)
    for key in [*map(cosign_key, TENANTS), PLATFORM_KEY]:
        published = root.read(f"{TRANSIT_MOUNT}/keys/{key}")["data"]
        assert published["exportable"] is False and published["auto_rotate_period"] == 0
        assert sorted(fed_to_verifier(rotation_of(dev_vault, key).read)) == sorted(
            v["public_key"] for v in published["keys"].values())


def test_rotation_keeps_older_signatures_verifying_for_the_trusted_versions_then_prunes_them(dev_vault, renders) -> None:
    """A key of its own, declared, rotated and pruned as the plan does it for the tenants' (no other test sees it)."""
    root = dev_vault.client(dev_vault.root_token)
    applier = VaultApplier(root, "")
    rotation = KeyRotation(rotation_days=30, trusted_versions=2)
    resources = {r["name"]: r for r in renders["dev"].plan["resources"]}
    key, rotate, prune = copy.deepcopy([resources[f"{TENANTS[0]}-secrets-cosign{suffix}"] for suffix in ("", "-rotate", "-prune")])
    key["inputs"]["name"] = "rotation-probe"
    rotate["inputs"]["path"] = f"{TRANSIT_MOUNT}/keys/rotation-probe/rotate"
    prune["inputs"]["path"] = f"{TRANSIT_MOUNT}/keys/rotation-probe/config"

    def rotate_and_prune() -> list[str]:
        """One scheduled rotation: the keys fed to the verifier, checked against what Vault now publishes."""
        answer = json.dumps(applier.apply([rotate])[-1].read)
        # The plan redacts the pruning's data_json (the provider marks it sensitive): the program's own value.
        prune["inputs"]["dataJson"] = json.dumps({"min_decryption_version": oldest_trusted_version(answer, rotation.trusted_versions)})
        applier.apply([prune])
        trusted = trusted_public_keys(answer, rotation.trusted_versions)
        published = root.read(f"{TRANSIT_MOUNT}/keys/rotation-probe")["data"]["keys"]
        assert sorted(trusted) == sorted(v["public_key"] for v in published.values())  # Vault agrees
        return trusted

    applier.apply([key])
    trusted = rotate_and_prune()  # versions 2 and 1
    message = payload(f"{REGISTRY}/{TENANTS[0]}/app", DIGEST)
    signed_before = transit_sign(root, "rotation-probe", message)  # with version 2
    trusted = rotate_and_prune()  # the next scheduled rotation: versions 3 and 2
    assert verified(message, signed_before, trusted)
    assert verified(message, transit_sign(root, "rotation-probe", message), trusted)  # version 3
    trusted = rotate_and_prune()  # versions 4 and 3: version 2 is no longer trusted, nor listed by Vault
    assert len(trusted) == 2 and not verified(message, signed_before, trusted)
    with pytest.raises(hvac.exceptions.InvalidRequest):  # nor verified by Vault
        root.write_data(f"{TRANSIT_MOUNT}/verify/rotation-probe/sha2-256", data={
            "input": base64.b64encode(hashlib.sha256(message).digest()).decode(), "prehashed": True,
            "signature": f"vault:v2:{base64.b64encode(signed_before).decode()}",
        })


def test_no_tenant_signs_with_the_platform_key_or_another_tenants(dev_vault) -> None:
    message = payload(f"{REGISTRY}/approved/docker.io/library/nginx", DIGEST)
    for tenant in TENANTS:
        signer = tenant_signer(dev_vault, tenant)
        for key in (PLATFORM_KEY, *(cosign_key(t) for t in TENANTS if t != tenant)):
            with pytest.raises(hvac.exceptions.Forbidden):
                transit_sign(signer, key, message)
