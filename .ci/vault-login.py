#!/usr/bin/env python3
"""Print a Vault token for this CI job: a login at auth/$VAULT_AUTH_PATH as $VAULT_ROLE with the
job's id_token ($VAULT_ID_TOKEN, audience $VAULT_ADDR); $VAULT_CACERT, if set, is the CA bundle.
With `--identity-token ROLE`: instead, an identity token of Vault's role ROLE, issued to $VAULT_TOKEN
(a merge request's reviewed preview exchanges it for its AWS session: components/ci_identity.py).

The Pulumi jobs (.gitlab-ci.yml `.pulumi`) export the token as VAULT_TOKEN for pulumi-vault
(platform:services.vault.providerAuth "pipeline"). Standard library only. Exit 1 and print
nothing when there is no token: the role refuses this job, or Vault does not answer.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import urllib.request


def _vault(address: str, path: str, cafile: str | None, **request: object) -> dict:
    """Vault's JSON answer at /v1/`path` of `address` (`request`: urllib Request's data, headers, method)."""
    with urllib.request.urlopen(urllib.request.Request(f"{address.rstrip('/')}/v1/{path}", **request),
                                context=ssl.create_default_context(cafile=cafile or None), timeout=30) as response:
        return json.load(response)


def login(address: str, auth_path: str, role: str, id_token: str, cafile: str | None = None) -> str:
    return _vault(address, f"auth/{auth_path}/login", cafile, data=json.dumps({"role": role, "jwt": id_token}).encode(),
                  headers={"Content-Type": "application/json"}, method="POST")["auth"]["client_token"]


def identity_token(address: str, token: str, role: str, cafile: str | None = None) -> str:
    return _vault(address, f"identity/oidc/token/{role}", cafile, headers={"X-Vault-Token": token})["data"]["token"]


def main(argv: list[str]) -> int:
    env = os.environ
    try:
        if argv[:1] == ["--identity-token"] and len(argv) == 2:
            token = identity_token(env["VAULT_ADDR"], env["VAULT_TOKEN"], argv[1], env.get("VAULT_CACERT"))
        else:
            token = login(env["VAULT_ADDR"], env.get("VAULT_AUTH_PATH", "jwt-gitlab"), env.get("VAULT_ROLE", "platform-deploy"),
                          env["VAULT_ID_TOKEN"], env.get("VAULT_CACERT"))
    except (KeyError, OSError, ValueError) as err:  # a missing variable, a refusal (HTTPError), no answer
        print(f"vault-login: no Vault token: {err}", file=sys.stderr)
        return 1
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
