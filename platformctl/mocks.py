"""A mock Pulumi engine that records what the program asks for.

`PlatformMocks` answers like the real providers where the program reads their outputs
(auto-names, ARNs, EKS endpoint/CA/issuer, random results, keys and certificates), with
stable fake values derived from the resource's identity, so two renders are identical.
`RecordingMonitor` records every registration and, unlike the stock mock monitor, keeps
`additionalSecretOutputs` secret, as the engine does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import threading
from typing import Any

from google.protobuf import json_format
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs, Mocks
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.sync_await import _sync_await

ACCOUNT = "123456789012"
# Every generated secret's mock value starts with this, so tests can prove none leaks.
SECRET_MARK = "mock-secret-"
REDACTED = "[secret]"


def _digest(*parts: str, length: int = 8) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


class DuplicateResource(Exception):
    """Two registrations with one URN: the engine would fail the update."""


class InvokeNotAllowed(Exception):
    """The program must not look anything up at run time: everything is declared."""


def _kubernetes_outputs(args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
    inputs = dict(args.inputs)
    if args.typ.startswith("kubernetes:helm.sh/"):
        release = inputs.get("name") or f"{args.name}-{_digest(args.typ, args.name)}"
        namespace = inputs.get("namespace", "default")
        status = {"name": release, "namespace": namespace, "status": "deployed", "version": inputs.get("version")}
        return f"{namespace}/{release}", {**inputs, "name": release, "status": status}
    if args.resource_id:  # a read of an existing object: its id is "namespace/name"
        namespace, _, name = str(args.resource_id).rpartition("/")
        state = {"metadata": {"name": name, **({"namespace": namespace} if namespace else {})}}
        if args.typ == "kubernetes:core/v1:Service":
            host = f"{name}-{_digest(args.name, length=16)}.elb.eu-west-1.amazonaws.com"
            state["status"] = {"loadBalancer": {"ingress": [{"hostname": host}]}}
        if args.typ == "kubernetes:core/v1:Secret":
            # A Secret filled in by the cluster (the GitLab admin token): base64 as the API serves it.
            token = f"{SECRET_MARK}{_digest(args.typ, args.name, length=24)}"
            state["data"] = {"token": base64.b64encode(token.encode()).decode()}
        return str(args.resource_id), state
    metadata = dict(inputs.get("metadata") or {})
    # The provider auto-names objects without metadata.name: resource name plus a suffix.
    metadata.setdefault("name", f"{args.name}-{_digest(args.typ, args.name)}")
    inputs["metadata"] = metadata
    namespace = metadata.get("namespace")
    return (f"{namespace}/{metadata['name']}" if namespace else metadata["name"]), inputs


def _aws_outputs(args: MockResourceArgs, region: str) -> dict[str, Any]:
    """`region`: the resource's provider's (ARNs of regional services name it, as AWS's do)."""
    inputs = dict(args.inputs)
    service = args.typ.split(":")[1].split("/")[0]
    name = inputs.get("name") or f"{args.name}-{_digest(args.typ, args.name, length=7)}"
    out: dict[str, Any] = {**inputs, "name": name, "arn": f"arn:aws:{service}::{ACCOUNT}:{service}/{name}"}
    if args.typ == "aws:iam/role:Role":
        out["arn"] = f"arn:aws:iam::{ACCOUNT}:role/{name}"
    elif args.typ == "aws:kms/key:Key":
        out["arn"] = f"arn:aws:kms:{region}:{ACCOUNT}:key/{name}"
    elif args.typ == "aws:eks/cluster:Cluster":
        cluster_id = _digest(args.name, length=32).upper()
        out["endpoint"] = f"https://{cluster_id}.gr7.{region}.eks.amazonaws.com"
        out["certificateAuthority"] = {"data": base64.b64encode(f"mock-ca-{args.name}".encode()).decode()}
        out["identities"] = [{"oidcs": [{"issuer": f"https://oidc.eks.{region}.amazonaws.com/id/{cluster_id}"}]}]
        # The security group EKS creates for the cluster (its endpoint's ENIs and managed nodes).
        out["vpcConfig"] = {**inputs.get("vpcConfig", {}), "clusterSecurityGroupId": f"sg-{_digest(args.name, length=17)}"}
    elif args.typ == "aws:rds/instance:Instance":
        address = f"{inputs.get('identifier', name)}.c{_digest(args.name, length=12)}.{region}.rds.amazonaws.com"
        out.update(address=address, endpoint=f"{address}:{inputs.get('port', 5432)}", port=inputs.get("port", 5432),
                   arn=f"arn:aws:rds:{region}:{ACCOUNT}:db:{inputs.get('identifier', name)}")
    elif args.typ == "aws:elasticache/replicationGroup:ReplicationGroup":
        group = inputs.get("replicationGroupId", name)
        out["primaryEndpointAddress"] = f"master.{group}.{_digest(args.name, length=6)}.euw1.cache.amazonaws.com"
    elif args.typ == "aws:ec2/eip:Eip":
        # An Elastic IP in TEST-NET-2 (RFC 5737: documentation only, never routed, yet public to a NetworkPolicy's
        # ipBlock): the prod stack's publicCidrs and the tests' "any public address" are TEST-NET-3, 203.0.113.0/24.
        out.update(allocationId=f"eipalloc-{_digest(args.name, length=17)}", publicIp=f"198.51.100.{int(_digest('eip', args.name), 16) % 254 + 1}")
    elif args.typ == "aws:ec2/launchTemplate:LaunchTemplate":
        out["latestVersion"] = 1  # EC2 numbers a template's versions from 1
    elif args.typ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
        out["arn"] = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{str(inputs.get('url', '')).removeprefix('https://')}"
    return out


def _openssh_type(inputs: dict[str, Any]) -> str:
    """The OpenSSH key type pulumi-tls writes for a key's algorithm (and ECDSA curve)."""
    algorithm = inputs.get("algorithm", "RSA")
    if algorithm == "ECDSA":
        return {"P256": "ecdsa-sha2-nistp256", "P384": "ecdsa-sha2-nistp384", "P521": "ecdsa-sha2-nistp521"}[inputs.get("ecdsaCurve", "P224")]
    return {"ED25519": "ssh-ed25519", "RSA": "ssh-rsa"}[algorithm]


def _generated_outputs(args: MockResourceArgs) -> dict[str, Any]:
    """random and tls resources: results derived from the resource name, marked by SECRET_MARK."""
    inputs = dict(args.inputs)
    value = f"{SECRET_MARK}{_digest(args.typ, args.name, length=24)}"
    if args.typ == "random:index/randomBytes:RandomBytes":
        return {**inputs, "hex": value, "base64": value}
    if args.typ.startswith("random:"):
        return {**inputs, "result": value, "bcryptHash": f"$2a$10${value}", "hex": _digest(args.name), "b64Std": value}
    if args.typ == "tls:index/privateKey:PrivateKey":
        key = f"-----BEGIN PRIVATE KEY-----\n{value}\n-----END PRIVATE KEY-----\n"
        return {
            **inputs,
            "privateKeyPem": key,
            "privateKeyOpenssh": key,
            "publicKeyPem": f"-----BEGIN PUBLIC KEY-----\nmock-public-{_digest(args.name)}\n-----END PUBLIC KEY-----\n",
            "publicKeyOpenssh": f"{_openssh_type(inputs)} AAAAmock{_digest(args.name, length=16)}\n",
        }
    if args.typ.startswith("tls:"):
        cert = f"-----BEGIN CERTIFICATE-----\nmock-cert-{_digest(args.name, length=16)}\n-----END CERTIFICATE-----\n"
        return {**inputs, "certPem": cert, "certRequestPem": cert}
    return inputs


def _transit_answer(args: MockResourceArgs) -> dict[str, Any]:
    """A transit key rotation's answer (vault.generic.Endpoint on `<mount>/keys/<key>/rotate`):
    as Vault gives it, versions 1 and 2 with real P-256 public keys derived from the key's path,
    so a verifier fed from it can be tested with standard crypto."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = str(args.inputs.get("path", ""))
    keys = {}
    for version in (1, 2):
        secret = int(_digest("transit", path, str(version), length=60), 16)
        public = ec.derive_private_key(secret, ec.SECP256R1()).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        keys[str(version)] = {"name": "P-256", "creation_time": f"2026-01-0{version}T00:00:00Z", "public_key": public.decode()}
    answer = {"keys": keys, "latest_version": 2}
    fields = args.inputs.get("writeFields") or []
    return {**args.inputs, "writeDataJson": json.dumps({f: answer[f] for f in fields if f in answer})}


def _service_outputs(args: MockResourceArgs) -> tuple[str, dict[str, Any]] | None:
    """GitLab and Harbor: integer ids (a Harbor registry's too), a runner's and a group access token's token, and the
    robot's full name and generated secret."""
    inputs = dict(args.inputs)
    number = int(_digest(args.typ, args.name, length=6), 16)  # both APIs number their objects
    if args.typ in ("gitlab:index/group:Group", "gitlab:index/project:Project", "gitlab:index/user:User"):
        return str(number), inputs
    if args.typ == "gitlab:index/userRunner:UserRunner":
        # The runner authentication token GitLab returns (secret through additionalSecretOutputs).
        return str(number), {**inputs, "token": f"glrt-{SECRET_MARK}{_digest(args.typ, args.name, length=24)}"}
    if args.typ == "gitlab:index/groupAccessToken:GroupAccessToken":  # the token GitLab returns, as for a runner
        return str(number), {**inputs, "token": f"glpat-{SECRET_MARK}{_digest(args.typ, args.name, length=24)}"}
    if args.typ == "harbor:index/project:Project":
        return f"/projects/{number}", {**inputs, "projectId": number}
    if args.typ == "harbor:index/registry:Registry":  # what projects (proxy caches) and replications name
        return f"/registries/{number}", {**inputs, "registryId": number}
    if args.typ == "harbor:index/robotAccount:RobotAccount":
        project = (inputs.get("permissions") or [{}])[0].get("namespace", "")
        short = inputs.get("name", args.name)
        full_name = f"robot${project}+{short}" if inputs.get("level") == "project" else f"robot${short}"
        secret = f"{SECRET_MARK}{_digest(args.typ, args.name, length=24)}"
        return f"/robots/{number}", {**inputs, "fullName": full_name, "robotId": str(number), "secret": secret}
    return None


class PlatformMocks(Mocks):
    def __init__(self) -> None:
        self._regions: dict[str, str] = {}  # an aws provider's id -> its region

    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        provider = args.typ.split(":")[0]
        if args.typ.startswith("pulumi:providers:"):
            if args.typ == "pulumi:providers:aws" and args.inputs.get("region"):
                self._regions[f"{args.name}-id"] = args.inputs["region"]
            return f"{args.name}-id", dict(args.inputs)
        if provider == "kubernetes":
            return _kubernetes_outputs(args)
        if provider == "aws":
            # A provider reference is `<urn>::<id>`; resources on a default provider are in eu-west-1.
            out = _aws_outputs(args, self._regions.get((args.provider or "").rsplit("::", 1)[-1], "eu-west-1"))
            return f"{out['name']}-id", out
        if args.typ == "pulumi-python:dynamic/vault:Init":
            # VaultInit's create() runs only in the engine: model its outputs (secret through
            # additionalSecretOutputs, which RecordingMonitor honours), stable per resource.
            value = f"{SECRET_MARK}{_digest(args.typ, args.name, length=24)}"
            shares = int(args.inputs.get("key_shares", 5))
            outputs = {**args.inputs, "root_token": f"hvs.{value}", "unseal_keys": [f"{value}-{i}" for i in range(shares)]}
            return f"{args.name}-{_digest(args.typ, args.name)}", outputs
        if args.typ == "vault:jwt/authBackend:AuthBackend":
            # The mount accessor Vault assigns; group aliases bind to it.
            outputs = {**args.inputs, "accessor": f"auth_{args.inputs.get('type', 'jwt')}_{_digest(args.name)}"}
            return f"{args.name}-{_digest(args.typ, args.name)}", outputs
        if args.typ == "vault:identity/oidcRole:OidcRole":
            # The client id Vault generates for the role: its tokens' audience.
            return f"{args.name}-{_digest(args.typ, args.name)}", {**args.inputs, "clientId": f"client-{_digest(args.name, length=22)}"}
        if args.typ == "vault:generic/endpoint:Endpoint" and str(args.inputs.get("path", "")).endswith("/rotate"):
            return str(args.inputs["path"]), _transit_answer(args)
        if args.typ == "time:index/rotating:Rotating":
            return f"{args.name}-{_digest(args.typ, args.name)}", {**args.inputs, "rfc3339": "2026-01-01T00:00:00Z"}
        if provider in ("random", "tls"):
            return f"{args.name}-{_digest(args.typ, args.name)}", _generated_outputs(args)
        service = _service_outputs(args)
        if service is not None:
            return service
        return f"{args.name}-{_digest(args.typ, args.name)}", dict(args.inputs)

    def call(self, args: MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        raise InvokeNotAllowed(f"the program invoked {args.token}; declare the value in config instead")


# Strings this short (names, labels, kinds, URNs) repeat across a plan: the plan keeps one copy.
_SHARED_UP_TO = 256


def redact(value: Any, path: str = "") -> tuple[Any, dict[str, str]]:
    """Replace every secret in a deserialized property value by REDACTED (a secret map: each of its values).

    Returns the redacted value and, per secret path, a fingerprint (a hash of the mock or
    placeholder value: offline renders never hold a real secret), so `platformctl diff`
    can tell that a secret changed without showing it.
    """
    if rpc.is_rpc_secret(value):
        unwrapped = rpc.unwrap_rpc_secret(value)
        plain = json.dumps(unwrapped, sort_keys=True, default=str)
        fingerprint = {path: hashlib.sha256(plain.encode()).hexdigest()[:16]}
        if isinstance(unwrapped, dict):
            # A secret map (a Secret's stringData) keeps its keys, so the object stays valid.
            return {sys.intern(key): REDACTED for key in sorted(unwrapped) if not key.startswith("__")}, fingerprint
        return REDACTED, fingerprint
    if isinstance(value, dict):
        out, secrets = {}, {}
        for key in sorted(value):
            if key.startswith("__"):
                continue  # engine-internal, such as a dynamic provider's pickled code
            out[sys.intern(key)], sub = redact(value[key], f"{path}.{key}" if path else key)
            secrets.update(sub)
        return out, secrets
    if isinstance(value, list):
        out_list, secrets = [], {}
        for index, item in enumerate(value):
            item_out, sub = redact(item, f"{path}[{index}]")
            out_list.append(item_out)
            secrets.update(sub)
        return out_list, secrets
    if isinstance(value, float) and value.is_integer():
        # The wire format carries every number as a double; the API server receives 60000.
        return int(value), {}
    if isinstance(value, str) and len(value) <= _SHARED_UP_TO:
        return sys.intern(value), {}
    return value, {}


def is_redacted(value: Any) -> bool:
    """Whether a plan value is a redacted secret: REDACTED, or a map whose every value is."""
    if isinstance(value, dict):
        return bool(value) and all(v == REDACTED for v in value.values())
    return value == REDACTED


HELM_RELEASE = "kubernetes:helm.sh/v3:Release"


def _leaf_secrets(value: Any) -> Any:
    """A wire value (JSON) with each secret kept secret where it is, not lifted to its container."""
    if isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig:
        return rpc.wrap_rpc_secret(_leaf_secrets(value.get("value")))
    if isinstance(value, dict):
        return {key: _leaf_secrets(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_leaf_secrets(item) for item in value]
    return value


def _provider_urn(reference: str) -> str | None:
    # A provider reference is "<urn>::<id>"; URNs contain "::" themselves. Interned, as every URN of a record.
    return sys.intern(reference.rsplit("::", 1)[0]) if reference else None


class RecordingMonitor(MockMonitor):
    """The stock mock monitor, plus a record of every registration and real secret handling."""

    def __init__(self, mocks: Mocks):
        super().__init__(mocks)
        self.records: list[dict[str, Any]] = []
        self.fingerprints: dict[str, dict[str, str]] = {}
        self._seen: set[str] = set()
        self.provider_clusters: dict[str, str] = {}
        self._lock = threading.Lock()

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        # The stock monitor keeps every resource's state for `getResource` invokes, which the
        # program never makes (a second copy of the plan): the record below is what the render keeps.
        self.resources.pop(response.urn, None)
        secret_outputs = list(request.additionalSecretOutputs)
        if secret_outputs:
            state = rpc.deserialize_properties(response.object, keep_unknowns=True)
            for key in secret_outputs:
                if key in state and not rpc.is_rpc_secret(state[key]):
                    state[key] = rpc.wrap_rpc_secret(state[key])
            obj = _sync_await(rpc.serialize_properties(state, {}))
            response = resource_pb2.RegisterResourceResponse(urn=response.urn, id=response.id, object=obj)
        self._record(request, response.urn)
        return response

    def ReadResource(self, request: Any) -> Any:
        response = super().ReadResource(request)
        self.resources.pop(response.urn, None)
        # Reads are in the engine's state too; their "input" is the id read.
        self._record(request, response.urn, inputs={"id": request.id})
        return response

    def _record(self, request: Any, urn: str, inputs: dict[str, Any] | None = None) -> None:
        secrets: dict[str, str] = {}
        if inputs is None:
            properties = rpc.deserialize_properties(request.object, keep_unknowns=True)
            if request.type == HELM_RELEASE and "values" in request.object.fields:
                # Deserializing lifts a secret to the whole map; the engine keeps it where it is, and
                # the chart renders with every other value.
                properties["values"] = _leaf_secrets(json_format.MessageToDict(request.object.fields["values"]))
            inputs, secrets = redact(properties)
        dependencies = set(request.dependencies)
        for deps in getattr(request, "propertyDependencies", {}).values():
            dependencies.update(deps.urns)
        provider = _provider_urn(request.provider)
        with self._lock:
            if urn in self._seen:
                # The engine refuses a second resource with the same URN; so does the render.
                raise DuplicateResource(f"two resources would have the URN {urn}")
            self._seen.add(urn)
            if request.type == "pulumi:providers:kubernetes":
                self.provider_clusters[urn] = request.name.removesuffix("-k8s")
                cluster = self.provider_clusters[urn]
            elif request.type.startswith("kubernetes:"):
                cluster = self.provider_clusters.get(provider or "")
            else:
                cluster = None
            # The same URNs recur in thousands of records (parents, providers, dependencies): one string each.
            self.records.append(
                {
                    "urn": sys.intern(urn),
                    "type": request.type,
                    "name": request.name,
                    "custom": bool(getattr(request, "custom", True)),
                    "parent": sys.intern(request.parent) if request.parent else None,
                    "provider": provider,
                    "cluster": cluster,
                    "dependsOn": sorted(sys.intern(d) for d in dependencies if d),
                    "options": {
                        "protect": bool(getattr(request, "protect", False)),
                        "deleteBeforeReplace": bool(getattr(request, "deleteBeforeReplace", False)),
                        "retainOnDelete": bool(getattr(request, "retainOnDelete", False)),
                        "ignoreChanges": sorted(getattr(request, "ignoreChanges", [])),
                        "additionalSecretOutputs": sorted(getattr(request, "additionalSecretOutputs", [])),
                        **({"aliases": aliases} if (aliases := _aliases(request)) else {}),
                    },
                    "inputs": inputs,
                    "secretPaths": sorted(secrets),
                }
            )
            if secrets:
                self.fingerprints[urn] = secrets


def _aliases(request: Any) -> list[dict[str, Any]]:
    """The aliases of a registration that carry a former name or URN (the engine completes a
    spec from the resource's type and parent, and gives children their parent's aliases).
    The type-only aliases pulumi-kubernetes adds for older API versions are left out."""
    found = []
    for alias in getattr(request, "aliases", []):
        if alias.urn:
            found.append({"urn": alias.urn})
        elif alias.spec.name:
            spec = alias.spec
            found.append({k: v for k, v in (("name", spec.name), ("type", spec.type), ("parentUrn", spec.parentUrn),
                                             ("noParent", spec.noParent)) if v})
    return found
