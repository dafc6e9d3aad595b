"""Initialise and unseal Vault from `pulumi up`: a dynamic provider built on hvac.

`VaultInit` runs only when the engine runs it (create/diff/update), never while the program
is being evaluated, and only against the https addresses it is given, verifying TLS with the
CA bundle it is given (an empty bundle means the system roots, as with ACME certificates;
nothing turns verification off). Its outputs `root_token` and `unseal_keys` exist nowhere
but the Pulumi state, where they are secrets (`additional_secret_outputs`). Every request carries
HTTP basic auth `route_user`/`route_password` (a secret too): the ingress in front of the
per-node addresses lets no one else reach Vault's unauthenticated init and unseal endpoints.

* create(): initialise the Vault at `init_address` (Shamir unseal keys, or recovery keys when
  `auto_unseal`), then unseal every node in `unseal_addresses` (Shamir only).
* diff(): besides input changes, reports a change while any node in `unseal_addresses` is
  sealed or not answering, so `pulumi preview` shows it and `pulumi up` unseals it in update().
  A restarted pod therefore comes back on the next `pulumi up`. `pulumi refresh` (read) stays
  read-only: the keys cannot be read back from Vault anyway.
* With `revoke_root` true (bootstrap is over: the program reaches Vault with the deploy job's
  login) the root token must not work: diff() shows a change while it still does (a restored
  snapshot taken before it was revoked brings it back) and update() revokes it. create() never
  does: a new Vault is configured with it.

Under the offline mock engine create() does not run; `platformctl.mocks` models the two
outputs for the type `VaultInit.TYPE`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
import time
from typing import Any, Callable, Iterator, Sequence, TypeVar

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult
from pulumi.runtime import rpc

T = TypeVar("T")

DEFAULT_KEY_SHARES = 5
DEFAULT_KEY_THRESHOLD = 3
DEFAULT_TIMEOUT_SECONDS = 600  # a fresh release, its ingress and DNS can take minutes to answer
DEFAULT_POLL_SECONDS = 5.0

# Inputs that describe how Vault was initialised: changing them later is `vault operator rekey`
# or a seal migration, done by a person, never by re-running init.
FIXED_AT_INIT = ("auto_unseal", "key_shares", "key_threshold")
INPUTS = (
    "init_address",
    "unseal_addresses",
    "ca_bundle",
    "route_user",
    "route_password",
    *FIXED_AT_INIT,
    "timeout_seconds",
    "poll_seconds",
    "revoke_root",
)
# Inputs added after stacks were initialised: absent (from an older state) means this value.
LATER_INPUTS = {"revoke_root": False, "route_user": "", "route_password": ""}


class VaultInitError(Exception):
    """Initialising or unsealing failed; the message names the address and the cause."""


class VaultInitProvider(ResourceProvider):
    """The engine-side implementation. Every Vault call goes through `_client`."""

    # --- engine entry points ----------------------------------------------------------

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = [CheckFailure(key, reason) for key, reason in self._problems(news)]
        if olds:
            failures += [
                CheckFailure(key, f"cannot change '{key}' of an initialised Vault by re-running init: "
                                  "rekey (`vault operator rekey`) or migrate the seal by hand, then update the config")
                for key in FIXED_AT_INIT
                if key in olds and not _unknown(news.get(key)) and olds[key] != news.get(key)
            ]
        return CheckResult(news, failures)

    def create(self, props: dict[str, Any]) -> CreateResult:
        self._raise_on_problems(props)
        with self._verify(props["ca_bundle"]) as verify:
            client = self._client(props["init_address"], verify, props)
            deadline = self._deadline(props)
            status = self._retry(client.sys.read_init_status, props["init_address"], deadline, props)
            if status["initialized"]:
                # Without the keys of that initialisation this stack could never unseal it again.
                raise VaultInitError(
                    f"Vault at {props['init_address']} is already initialised, and this stack holds no keys for it. "
                    "Restore the stack state that holds them, or wipe the Vault's raft volumes to start over."
                )
            shares, threshold = int(props["key_shares"]), int(props["key_threshold"])
            try:
                if props["auto_unseal"]:
                    result = client.sys.initialize(recovery_shares=shares, recovery_threshold=threshold)
                    keys = list(result["recovery_keys_base64"])
                else:
                    result = client.sys.initialize(secret_shares=shares, secret_threshold=threshold)
                    keys = list(result["keys_base64"])
            except Exception as err:  # noqa: BLE001 - one clear message, whatever hvac/requests raised
                raise VaultInitError(f"initialising Vault at {props['init_address']} failed: {err}") from err
        outs = {**props, "root_token": result["root_token"], "unseal_keys": keys}
        try:
            self.unseal_sealed_nodes(outs)
        except Exception as err:  # noqa: BLE001 - whatever went wrong, the keys must not be lost
            # A failed create() records nothing, and these keys exist nowhere else: return them so
            # they reach the state. Sealed nodes show as a change in the next preview and
            # `pulumi up` unseals them (diff/update).
            print(f"warning: Vault initialised, but unsealing failed: {err}", file=sys.stderr)
        return CreateResult(f"vault-init-{hashlib.sha256(props['init_address'].encode()).hexdigest()[:12]}", outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = any(olds.get(key, LATER_INPUTS.get(key)) != news.get(key, LATER_INPUTS.get(key)) for key in INPUTS)
        # With unknown inputs (a preview) the change above already says enough.
        needs_update = not changed and (bool(self.nodes_needing_unseal(news)) or self.root_token_works(olds, news))
        return DiffResult(changes=changed or needs_update, replaces=[], delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        self._raise_on_problems(news)
        outs = {**news, "root_token": olds["root_token"], "unseal_keys": olds["unseal_keys"]}
        self.unseal_sealed_nodes(outs)
        if news.get("revoke_root"):
            self.revoke_root_token(outs)
        return UpdateResult(outs)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing to undo: Vault's data lives in its raft volumes, not in this resource."""

    def root_token_works(self, olds: dict[str, Any], news: dict[str, Any]) -> bool:
        """Whether the stored root token still authenticates though `revoke_root` says it must not."""
        if not news.get("revoke_root") or not olds.get("root_token") or any(_unknown(news.get(k)) for k in ("init_address", "ca_bundle", "route_password")):
            return False
        with self._verify(news["ca_bundle"]) as verify:
            try:
                self._client(news["init_address"], verify, news, token=olds["root_token"]).auth.token.lookup_self()
            except Exception:  # noqa: BLE001 - refused (revoked) or not answering: nothing to revoke now
                return False
        return True

    def revoke_root_token(self, props: dict[str, Any]) -> None:
        """Revoke the root token (`auth/token/revoke-self`); one already revoked is refused, which is as good."""
        import hvac.exceptions

        with self._verify(props["ca_bundle"]) as verify:
            client = self._client(props["init_address"], verify, props, token=props["root_token"])
            try:
                client.auth.token.revoke_self()
            except hvac.exceptions.Forbidden:
                return  # a revoked token is refused: nothing left to revoke
            except Exception as err:  # noqa: BLE001 - one clear message; the next diff sees the token working and retries
                raise VaultInitError(f"revoking the root token at {props['init_address']} failed: {err}") from err

    # --- unsealing (diff and update) --------------------------------------------------

    def nodes_needing_unseal(self, props: dict[str, Any]) -> list[str]:
        """The nodes of `unseal_addresses` that are sealed or do not answer; one quick look each."""
        addresses = props.get("unseal_addresses") or []
        if _unknown(addresses) or any(_unknown(a) for a in addresses) or any(_unknown(props.get(k)) for k in ("ca_bundle", "route_password")):
            return []
        needing = []
        with self._verify(props["ca_bundle"]) as verify:
            for address in addresses:
                try:
                    if self._client(address, verify, props).sys.read_seal_status()["sealed"]:
                        needing.append(address)
                except Exception:  # noqa: BLE001 - not answering also needs update() to look again
                    needing.append(address)
        return needing

    def unseal_sealed_nodes(self, props: dict[str, Any]) -> None:
        """Unseal every node of `unseal_addresses` that is sealed, with the stored keys.

        One attempt per node per round until all are unsealed or the deadline passes: a node
        that joins its leader through raft `retry_join` accepts the keys only once that leader
        is unsealed, and a restarted pod may not answer yet.
        """
        keys = list(props["unseal_keys"])[: int(props["key_threshold"])]
        deadline = self._deadline(props)
        with self._verify(props["ca_bundle"]) as verify:
            pending = {address: self._client(address, verify, props) for address in props["unseal_addresses"]}
            errors: dict[str, str] = {}
            while True:
                for address, client in list(pending.items()):
                    try:
                        if self._unseal_once(client, keys):
                            del pending[address]
                        else:
                            errors[address] = "still sealed after the unseal keys were accepted"
                    except Exception as err:  # noqa: BLE001 - not answering or refusing: try again next round
                        self._raise_if_tls(err, address)
                        errors[address] = str(err)
                if not pending:
                    return
                last = "; ".join(f"{address}: {errors[address]}" for address in pending)
                self._wait(deadline, f"unseal {', '.join(pending)}", last, props)

    def _unseal_once(self, client: Any, keys: list[str]) -> bool:
        """One attempt on one node; True when it is unsealed."""
        if not client.sys.read_seal_status()["sealed"]:
            return True
        client.sys.submit_unseal_key(reset=True)  # start from zero: a half-finished attempt would mix key sets
        return not client.sys.submit_unseal_keys(keys)["sealed"]

    # --- plumbing ---------------------------------------------------------------------

    def _problems(self, props: dict[str, Any]) -> list[tuple[str, str]]:
        problems = []
        addresses = props.get("unseal_addresses") or []
        for key, value in [("init_address", props.get("init_address"))] + [
            ("unseal_addresses", a) for a in ([] if _unknown(addresses) else addresses)
        ]:
            # TLS is the only transport: there is no switch that turns verification off.
            if not _unknown(value) and not (isinstance(value, str) and value.startswith("https://")):
                problems.append((key, f"{value!r} is not an https:// URL"))
        bundle = props.get("ca_bundle")
        if not _unknown(bundle) and bundle and "-----BEGIN CERTIFICATE-----" not in str(bundle):
            problems.append(
                ("ca_bundle", "must be a PEM bundle of the CA that signs Vault's certificate, or empty for the system roots")
            )
        shares, threshold = props.get("key_shares"), props.get("key_threshold")
        if not (_unknown(shares) or _unknown(threshold)):
            if not (isinstance(shares, (int, float)) and isinstance(threshold, (int, float)) and 1 <= threshold <= shares):
                problems.append(("key_threshold", f"needs 1 <= key_threshold <= key_shares, got {threshold} of {shares}"))
        return problems

    def _raise_on_problems(self, props: dict[str, Any]) -> None:
        problems = self._problems(props)
        if problems:
            raise VaultInitError("; ".join(f"{key}: {reason}" for key, reason in problems))

    def _client(self, address: str, verify: str | bool, props: dict[str, Any], token: str = "") -> Any:
        import hvac  # imported where used: the engine loads this provider in a process of its own
        import requests

        if not address.startswith("https://"):
            raise VaultInitError(f"{address!r} is not an https:// URL")
        session = requests.Session()
        # hvac takes a given session's `verify` over its own argument (hvac/adapters.py, Adapter.__init__).
        session.verify = verify
        if props.get("route_password"):
            # The ingress's credential (Traefik BasicAuth), which it removes before Vault sees the request.
            session.auth = (props.get("route_user") or "", props["route_password"])
        # token="" by default: never pick up VAULT_TOKEN or ~/.vault-token from the machine running `pulumi up`.
        return hvac.Client(url=address, token=token, verify=verify, timeout=15, session=session)

    @contextlib.contextmanager
    def _verify(self, pem: str) -> Iterator[str | bool]:
        """requests' `verify=`: the CA bundle as a file, removed afterwards; "" means the system roots."""
        if not pem:
            yield True
            return
        handle, path = tempfile.mkstemp(prefix="vault-ca-", suffix=".pem")
        try:
            with os.fdopen(handle, "w") as f:
                f.write(pem)
            yield path
        finally:
            os.unlink(path)

    def _deadline(self, props: dict[str, Any]) -> float:
        return time.monotonic() + float(props.get("timeout_seconds") or DEFAULT_TIMEOUT_SECONDS)

    def _retry(self, call: Callable[[], T], address: str, deadline: float, props: dict[str, Any]) -> T:
        """`call()`, retried until the deadline while Vault does not answer it yet.

        A fresh release, its ingress and DNS answer refused connections, timeouts, 404s and
        5xx for a while; only a TLS failure is final.
        """
        import hvac.exceptions
        import requests

        while True:
            try:
                return call()
            except (requests.RequestException, hvac.exceptions.VaultError) as err:
                self._raise_if_tls(err, address)
                self._wait(deadline, f"reach {address}", str(err), props)

    def _raise_if_tls(self, err: Exception, address: str) -> None:
        import requests

        if isinstance(err, requests.exceptions.SSLError):
            # Not something waiting fixes: the certificate does not chain to the given CA bundle.
            raise VaultInitError(f"TLS verification of {address} against the given CA bundle failed: {err}") from err

    def _wait(self, deadline: float, doing: str, last_error: str, props: dict[str, Any]) -> None:
        if time.monotonic() >= deadline:
            seconds = props.get("timeout_seconds") or DEFAULT_TIMEOUT_SECONDS
            raise VaultInitError(f"could not {doing} within {seconds}s; last error: {last_error}")
        time.sleep(float(props.get("poll_seconds") or DEFAULT_POLL_SECONDS))


def _unknown(value: Any) -> bool:
    """A value the engine does not know yet (only in preview)."""
    return isinstance(value, str) and value == rpc.UNKNOWN


class VaultInit(pulumi.dynamic.Resource, module="vault", name="Init"):
    """Vault's one-time initialisation, its root token and keys; see the module docstring."""

    TYPE = "pulumi-python:dynamic/vault:Init"

    root_token: pulumi.Output[str]
    unseal_keys: pulumi.Output[list[str]]  # Shamir unseal keys, or recovery keys with auto-unseal

    def __init__(
        self,
        name: str,
        *,
        init_address: pulumi.Input[str],
        unseal_addresses: pulumi.Input[Sequence[pulumi.Input[str]]],
        ca_bundle: pulumi.Input[str],
        auto_unseal: bool,
        route_user: str = "",
        route_password: pulumi.Input[str] = "",  # a secret; "": no credential (a Vault reached directly)
        key_shares: int = DEFAULT_KEY_SHARES,
        key_threshold: int = DEFAULT_KEY_THRESHOLD,
        timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        revoke_root: bool = False,
        opts: pulumi.ResourceOptions | None = None,
    ):
        props = {
            "init_address": init_address,
            "unseal_addresses": unseal_addresses,
            "ca_bundle": ca_bundle,
            "route_user": route_user,
            "route_password": route_password,
            "auto_unseal": auto_unseal,
            "key_shares": key_shares,
            "key_threshold": key_threshold,
            "timeout_seconds": timeout_seconds,
            "poll_seconds": poll_seconds,
            "revoke_root": revoke_root,
            # Outputs only: declared so the resource has these attributes.
            "root_token": None,
            "unseal_keys": None,
        }
        secret = pulumi.ResourceOptions(additional_secret_outputs=["root_token", "unseal_keys", "route_password"])
        super().__init__(VaultInitProvider(), name, props, pulumi.ResourceOptions.merge(opts, secret))
