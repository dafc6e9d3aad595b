"""The identity providers Vault trusts, served from 127.0.0.1 over TLS for a real OpenBao.

One HTTPS server stands in for every issuer the plan's auth mounts name (OpenUnison, GitLab,
EKS clusters' service-account issuers) and for the TokenReview API of every kubeconfig
cluster: `issuer(name)` gives `https://127.0.0.1:<port>/<name>`, which serves its OIDC
discovery document and JWKS (an ES256 key per issuer), and `sign(name, claims)` issues a JWT
from it; `cluster(name)` serves `POST /<name>/apis/authentication.k8s.io/v1/tokenreviews`,
which authenticates exactly the tokens signed for that cluster's issuer (as the API server
does with its service-account key) and unexpired ones only.
"""

from __future__ import annotations

import json
import ssl
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from tests.certs import Tls, server_context
from tests.loopback import JsonHandler, LoopbackServer

TOKEN_REVIEW = "/apis/authentication.k8s.io/v1/tokenreviews"


@dataclass
class IdentityPeer(LoopbackServer):
    tls: Tls
    keys: dict[str, ec.EllipticCurvePrivateKey] = field(default_factory=dict)

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _Handler

    def tls_context(self) -> ssl.SSLContext:
        return server_context(self.tls)

    def issuer(self, name: str) -> str:
        """The issuer URL of `name`, with a signing key of its own."""
        self.keys.setdefault(name, ec.generate_private_key(ec.SECP256R1()))
        return f"{self.url}/{name}"

    cluster = issuer  # a cluster's API server and its service-account issuer share the name

    def sign(self, name: str, claims: dict[str, Any], lifetime: int = 300, key_id: str | None = None) -> str:
        now = int(time.time())
        body = {"iss": self.issuer(name), "iat": now, "nbf": now - 5, "exp": now + lifetime, **claims}
        return jwt.encode(body, self.keys[name], algorithm="ES256", headers={"kid": key_id or name})

    def service_account_token(self, cluster: str, namespace: str, account: str, audience: str, lifetime: int = 600) -> str:
        """A projected service-account token as the kubelet gets it from TokenRequest."""
        return self.sign(
            cluster,
            {
                "sub": f"system:serviceaccount:{namespace}:{account}",
                "aud": [audience],
                "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": account, "uid": f"uid-{account}"}},
            },
            lifetime,
        )

    def review(self, name: str, token: str) -> dict[str, Any]:
        try:
            claims = jwt.decode(token, self.keys[name].public_key(), algorithms=["ES256"], options={"verify_aud": False})
        except (jwt.PyJWTError, KeyError) as err:
            return {"authenticated": False, "error": str(err)}
        if claims.get("iss") != self.issuer(name):
            return {"authenticated": False, "error": "issued by another cluster"}
        namespace = claims["kubernetes.io"]["namespace"]
        return {
            "authenticated": True,
            "user": {
                "username": claims["sub"],
                "uid": claims["kubernetes.io"]["serviceaccount"]["uid"],
                "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"],
            },
            "audiences": claims["aud"],
        }


class _Handler(JsonHandler):
    state: IdentityPeer

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        name, _, rest = self.path.lstrip("/").partition("/")
        peer = self.state
        if name not in peer.keys:
            self._reply(404, {"error": f"no issuer {name}"})
        elif rest == ".well-known/openid-configuration":
            issuer = peer.issuer(name)
            self._reply(200, {
                "issuer": issuer,
                "jwks_uri": f"{issuer}/jwks",
                "authorization_endpoint": f"{issuer}/authorize",
                "token_endpoint": f"{issuer}/token",
                "response_types_supported": ["code", "id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"],
            })
        elif rest == "jwks":
            key = ECAlgorithm.to_jwk(peer.keys[name].public_key(), as_dict=True)
            self._reply(200, {"keys": [{**key, "kid": name, "use": "sig", "alg": "ES256"}]})
        else:
            self._reply(404, {"error": f"no {rest}"})

    def do_POST(self) -> None:  # noqa: N802
        name, _, rest = self.path.lstrip("/").partition("/")
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if f"/{rest}" != TOKEN_REVIEW or name not in self.state.keys:
            self._reply(404, {"error": f"no {self.path}"})
            return
        # The client's own token is the reviewer's credential (no token_reviewer_jwt): it must
        # be valid for this cluster too, or the API server answers 401.
        bearer = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        if not self.state.review(name, bearer)["authenticated"]:
            self._reply(401, {"kind": "Status", "status": "Failure", "reason": "Unauthorized", "code": 401})
            return
        status = self.state.review(name, body["spec"]["token"])
        self._reply(201, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": body["spec"], "status": status})
