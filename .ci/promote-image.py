#!/usr/bin/env python3
"""Promote public images into Harbor's `approved` project once Harbor's scan lets them pass, and sign them.

Run by the manual `promote-image` job of .gitlab-ci.yml, on protected main only. The registry
work is skopeo's (Debian's package, pinned in the job); this script keeps the platform's own
decisions: which images may be promoted, the scan gate, and the signature with the platform's
promotion key. For each image in IMAGE (whitespace-separated, registry named, a tag and optionally
the digest it must name, e.g. `docker.io/library/nginx:1.27.3`):

1. log in to Vault with the job's ID token (VAULT_ID_TOKEN; role VAULT_ROLE at
   auth/VAULT_AUTH_PATH) and read the Harbor promoter robot at PROMOTER_VAULT_PATH;
2. copy it, every platform, out of the proxy cache `proxy-<registry>` into a local OCI layout
   (`skopeo copy --all --preserve-digests`), so Harbor caches all of it and scans it on arrival;
3. wait for Harbor's scan of each platform image and refuse the image if any has a
   vulnerability at or above the severity gate of the `approved` project
   (platform:supplyChain.severity; "none" gates nothing, like the tenants' trivy step);
4. push exactly those bytes to `approved/<registry>/<repository>` (APPROVED_PREFIX replaces
   `<registry>` when set: `vcluster` for the images virtual clusters pull), digests preserved. A tag
   `approved` already has never moves (Harbor holds it immutable): on the same bytes nothing is pushed
   and step 5 signs them again; on other bytes the image is refused before its scan is awaited;
5. sign the pushed digest with the platform's promotion key in Vault transit (SIGN_WITH, its name; the
   same Vault role, which only protected main gets) and push the signature where cosign and
   the clusters' image verifier look for it (`<repository>:sha256-<digest>.sig`).

Trivy's vulnerability databases (DATABASE, e.g. `ghcr.io/aquasecurity/trivy-db:2`; the scheduled
`promote-trivy-db` job) take steps 1, 2 and 4 only: they are data, not images, so Harbor does not
scan them and no pod runs them (nothing to sign for the image verifier). Only an artifact of
Trivy's database media types from Trivy's own repositories passes that way; anything else is refused,
and so is a database past its own NextUpdate (upstream signs none: its age is what can be checked).

TLS: HTTPS only, certificates always verified against the system roots, plus the runner's CA
file (CI_SERVER_TLS_CA_FILE, the platform CA on private-CA stacks) when it is set; skopeo gets
the same bundle. Exit codes: 0 promoted, 1 refused or failed, 2 usage.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

# components/tenant_supply_chain.py: SEVERITIES, APPROVED_PROJECT, proxy_project_name (a test keeps them equal).
SEVERITIES = ("none", "low", "medium", "high", "critical")
APPROVED_PROJECT = "approved"
# Harbor's severities, lowest first ("Unknown": the scanner could not rate it).
HARBOR_SEVERITIES = ("None", "Unknown", "Negligible", "Low", "Medium", "High", "Critical")
# Scan report types Harbor's overview may hold (Trivy's current one first).
REPORT_TYPES = (
    "application/vnd.security.vulnerability.report; version=1.1",
    "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0",
)
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
# Set by .gitlab-ci.yml (the job's variables and ID token) and VAULT_ADDR, a project variable.
REQUIRED_VARIABLES = ("VAULT_ADDR", "VAULT_AUTH_PATH", "VAULT_ROLE", "VAULT_ID_TOKEN", "PROMOTER_VAULT_PATH", "SIGN_WITH")
TRANSIT_MOUNT = "transit"  # components/tenancy.py TRANSIT_MOUNT
SYSTEM_ROOTS = "/etc/ssl/certs/ca-certificates.crt"  # Debian's bundle, in the job image
SCAN_POLL_SECONDS = 15
DEFAULT_SCAN_TIMEOUT = 1800  # a first pull of a large image through the cache, then its scan
# cosign's signature format: what the image verifier (policy-controller) reads.
SIGNATURE_LAYER = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"

_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")
_PATH = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# cosign's signature tags, the one tag shape `approved` leaves movable (components/tenant_supply_chain.py
# SIGNATURE_TAGS, `sha256-*.sig` in Harbor's doublestar; tests/test_supply_attacks.py judges both alike).
_SIGNATURE_TAG = re.compile(r"^sha256-[^/]*\.sig$")
# Trivy's database artifacts (aquasecurity/trivy-db, trivy-java-db): the only ones promoted without a scan.
TRIVY_DB_CONFIG = "application/vnd.aquasec.trivy.config.v1+json"
TRIVY_DB_LAYERS = ("application/vnd.aquasec.trivy.db.layer.v1.tar+gzip", "application/vnd.aquasec.trivy.javadb.layer.v1.tar+gzip")
# ...and only these repositories (components/versions.py TRIVY_DATABASES, a test keeps them equal).
TRIVY_REPOSITORIES = ("ghcr.io/aquasecurity/trivy-db", "ghcr.io/aquasecurity/trivy-java-db")
# One path segment, a name such as `vcluster`: never dotted, so never a registry host (hosts have a
# dot), whose path in `approved` holds that registry's images only.
_PREFIX = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


class PromotionError(Exception):
    """One line for the job log: why this image was not promoted."""


# --- what may be promoted ---------------------------------------------------------------------


@dataclass(frozen=True)
class ImageRef:
    registry: str  # docker.io
    repository: str  # library/nginx
    tag: str
    digest: str | None
    prefix: str | None = None  # the first segment under `approved`; None: the registry host

    @property
    def source(self) -> str:
        """The repository in the proxy cache: `proxy-docker-io/library/nginx`."""
        return f"{proxy_project_name(self.registry)}/{self.repository}"

    @property
    def target(self) -> str:
        """The repository in `approved`: `approved/docker.io/library/nginx`."""
        return f"{APPROVED_PROJECT}/{self.prefix or self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What to ask the cache for: the digest when given (the tag only labels it)."""
        return self.digest or self.tag

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}:{self.tag}" + (f"@{self.digest}" if self.digest else "")


def proxy_project_name(host: str) -> str:
    return "proxy-" + host.replace(".", "-")


def parse_image(text: str, prefix: str | None = None) -> ImageRef:
    """`docker.io/library/nginx:1.27.3` or `ghcr.io/o/r:1.0@sha256:...`; never `latest`, never a digest alone.

    The registry must be named (no silent Docker Hub default); Docker Hub's official images get
    their `library/` prefix, as the proxy cache needs it.
    """
    name, _, digest = text.partition("@")
    host, _, rest = name.partition("/")
    tag = None
    last_slash = rest.rfind("/")
    if ":" in rest[last_slash + 1:]:
        rest, _, tag = rest.rpartition(":")
    if not _HOST.match(host) or not rest:
        raise PromotionError(f"{text!r}: name the registry and repository, e.g. docker.io/library/nginx:1.27.3")
    if not _PATH.match(rest):
        raise PromotionError(f"{text!r}: {rest!r} is not a repository path (lower-case, '/'-separated)")
    if tag is None:
        # Pushed untagged, it would be deleted with its signature by Harbor's weekly garbage collection
        # (delete_untagged: v2.15.1 src/jobservice/job/impl/gc/garbage_collection.go:544-585).
        raise PromotionError(f"{text!r}: give its tag (and the digest it must name, if you pin one): an image "
                             "promoted untagged is deleted by Harbor's weekly garbage collection")
    if not _TAG.match(tag):
        raise PromotionError(f"{text!r}: {tag!r} is not a tag")
    if _SIGNATURE_TAG.match(tag):
        raise PromotionError(f"{text!r}: {tag!r} is cosign's signature tag, not an image's: in {APPROVED_PROJECT} it names "
                             "the platform's signature, and stays movable for re-signing")
    if digest and not _DIGEST.match(digest):
        raise PromotionError(f"{text!r}: {digest!r} is not a sha256 digest")
    if tag == "latest":
        raise PromotionError(f"{text!r}: `latest` is never promoted (clusters refuse it): give the version")
    if prefix is not None and not _PREFIX.match(prefix):
        raise PromotionError(f"APPROVED_PREFIX {prefix!r} is not one path segment such as 'vcluster' "
                             "(letters, digits, '-'; no '.', so it never passes for a registry's host)")
    if host == "docker.io" and "/" not in rest:
        rest = f"library/{rest}"
    return ImageRef(host, rest, tag, digest or None, prefix)


def parse_database(text: str) -> ImageRef:
    """One of Trivy's databases (TRIVY_REPOSITORIES), the only artifacts promoted without the scan gate."""
    ref = parse_image(text)
    if f"{ref.registry}/{ref.repository}" not in TRIVY_REPOSITORIES:
        raise PromotionError(f"{text!r} is not a Trivy database the platform reads ({', '.join(TRIVY_REPOSITORIES)}): "
                             "promote images with IMAGE, through the scan gate")
    return ref


# --- the scan gate ----------------------------------------------------------------------------


def harbor_rank(severity: str) -> int:
    """Harbor's severity ("High") as a rank comparable with gate_rank()."""
    try:
        return HARBOR_SEVERITIES.index(severity.capitalize())
    except ValueError:
        raise PromotionError(f"Harbor reported an unknown severity {severity!r}") from None


def gate_rank(threshold: str) -> int | None:
    """The rank a configured severity blocks from; None: "none" blocks nothing."""
    if threshold not in SEVERITIES:
        raise PromotionError(f"severity gate {threshold!r} is not one of {', '.join(SEVERITIES)}")
    return None if threshold == "none" else harbor_rank(threshold)


@dataclass(frozen=True)
class Verdict:
    state: str  # "wait", "refuse" or "pass"
    why: str


def scan_verdict(scan_overview: Mapping[str, Any] | None, threshold: str) -> Verdict:
    """What Harbor's `scan_overview` of one artifact says about promoting it.

    Refuses when any report counts a vulnerability at or above `threshold` (or, without counts,
    rates the artifact there), or one nobody has rated yet (`Unknown`: Harbor's pull gate ranks it
    with None and never refuses it) unless the gate is "none", or when the scan failed; waits while
    no report is finished.
    """
    block_from = gate_rank(threshold)
    reports = [r for r in (scan_overview or {}).values() if isinstance(r, Mapping)]
    if not reports:
        return Verdict("wait", "not scanned yet")
    for report in reports:
        status = str(report.get("scan_status", ""))
        if status in ("Error", "Stopped"):
            return Verdict("refuse", f"the scan ended with {status}: nothing vouches for this image")
        if status != "Success":
            return Verdict("wait", f"scan {status or 'pending'}")
    found: dict[str, int] = {}
    for report in reports:
        counts = ((report.get("summary") or {}).get("summary")) or {}
        if counts:
            for severity, count in counts.items():
                if int(count) > 0:
                    found[severity] = max(found.get(severity, 0), int(count))
        elif report.get("severity") not in (None, "", "None"):
            found.setdefault(str(report["severity"]), 1)
    blocking = {s: n for s, n in found.items()
                if block_from is not None and (harbor_rank(s) >= block_from or s.capitalize() == "Unknown")}
    if blocking:
        listed = ", ".join(f"{n} {s}" for s, n in sorted(blocking.items(), key=lambda i: -harbor_rank(i[0])))
        return Verdict("refuse", f"{listed} at or above {threshold}")
    summary = ", ".join(f"{n} {s}" for s, n in sorted(found.items(), key=lambda i: -harbor_rank(i[0]))) or "no vulnerabilities"
    return Verdict("pass", f"{summary} (gate: {threshold})")


# --- HTTPS: Vault and Harbor's REST API -------------------------------------------------------


def ca_bundle(directory: Path) -> Path:
    """System roots plus the runner's CA for the platform (CI_SERVER_TLS_CA_FILE) when set, for
    skopeo (SSL_CERT_FILE): what this script trusts too."""
    files = [Path(SYSTEM_ROOTS)] if Path(SYSTEM_ROOTS).is_file() else []
    if os.environ.get("CI_SERVER_TLS_CA_FILE"):
        files.append(Path(os.environ["CI_SERVER_TLS_CA_FILE"]))
    bundle = directory / "ca-bundle.pem"
    bundle.write_text("".join(f.read_text() + "\n" for f in files))
    return bundle


def tls_context() -> ssl.SSLContext:
    """System roots, plus the runner's CA for the platform when set. Always verified."""
    context = ssl.create_default_context()
    extra = os.environ.get("CI_SERVER_TLS_CA_FILE")
    if extra:
        context.load_verify_locations(cafile=extra)
    return context


class Https:
    """JSON over HTTPS, certificates verified (`tls_context`); errors are PromotionErrors naming the call."""

    def __init__(self, context: ssl.SSLContext):
        self._context = context

    def call(self, method: str, url: str, headers: Mapping[str, str], what: str, body: Any = None,
             missing_ok: bool = False) -> Any:
        if urllib.parse.urlsplit(url).scheme != "https":
            raise PromotionError(f"refusing {url}: HTTPS only")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, headers={**headers, "Content-Type": "application/json"}, method=method)
        try:
            with urllib.request.urlopen(request, context=self._context, timeout=60) as response:
                text = response.read()
        except urllib.error.HTTPError as error:
            if missing_ok and error.code == 404:
                return None
            raise PromotionError(f"{what}: HTTP {error.code} {error.read()[:300].decode('utf-8', 'replace').strip()}") from None
        return json.loads(text or b"null")


@dataclass
class Vault:
    """The job's Vault session: its ID token's login, the robot, the promotion key."""

    https: Https
    addr: str
    token: str = ""

    def login(self, auth_path: str, role: str, id_token: str) -> None:
        answer = self.https.call("POST", f"{self.addr}/v1/auth/{auth_path}/login", {}, f"Vault login as {role} at auth/{auth_path}",
                                 {"role": role, "jwt": id_token})
        self.token = answer["auth"]["client_token"]

    def robot(self, data_path: str) -> dict[str, str]:
        data = self.https.call("GET", f"{self.addr}/v1/{data_path}", self._auth, f"Vault read of {data_path}")["data"]["data"]
        missing = {"registry", "username", "password"} - set(data)
        if missing:
            raise PromotionError(f"{data_path} lacks {', '.join(sorted(missing))}")
        return data

    def sign(self, key: str, message: bytes) -> bytes:
        """The DER ECDSA signature of `message` by `key`, as cosign's hashivault:// signer makes it."""
        answer = self.https.call(
            "POST", f"{self.addr}/v1/{TRANSIT_MOUNT}/sign/{key}/sha2-256", self._auth, f"Vault transit signature with {key}",
            {"input": base64.b64encode(hashlib.sha256(message).digest()).decode(), "prehashed": True},
        )
        return base64.b64decode(answer["data"]["signature"].split(":", 2)[2])  # "vault:v<N>:<base64>"

    def revoke(self) -> None:
        """Best effort: the token would expire in minutes anyway, and a failure here must not hide why the job failed."""
        try:
            self.https.call("POST", f"{self.addr}/v1/auth/token/revoke-self", self._auth, "Vault token revocation")
        except (PromotionError, OSError) as error:
            print(f"promote-image: could not revoke the Vault token ({error}); it expires in minutes", file=sys.stderr)

    @property
    def _auth(self) -> dict[str, str]:
        return {"X-Vault-Token": self.token}


@dataclass
class HarborApi:
    """Harbor's REST API as the promoter robot: the gate's configuration and the scans."""

    https: Https
    host: str
    username: str
    password: str

    def get(self, path: str, what: str, headers: Mapping[str, str] | None = None, missing_ok: bool = False) -> Any:
        basic = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return self.https.call("GET", f"https://{self.host}/api/v2.0/{path}", {**(headers or {}), "Authorization": f"Basic {basic}"},
                               what, missing_ok=missing_ok)

    def severity_gate(self) -> str:
        """The `approved` project's own pull gate: platform:supplyChain.severity."""
        metadata = (self.get(f"projects/{APPROVED_PROJECT}", f"Harbor project {APPROVED_PROJECT}") or {}).get("metadata") or {}
        if metadata.get("prevent_vul") != "true" or metadata.get("severity") not in SEVERITIES:
            raise PromotionError(f"project {APPROVED_PROJECT} has no severity gate; run `pulumi up` (platform:supplyChain.severity)")
        return metadata["severity"]

    def artifact(self, repository: str, reference: str, query: str = "", headers: Mapping[str, str] | None = None) -> Any:
        """An artifact of `repository` (`<project>/<name>`) by digest or tag; None when there is none."""
        project, _, name = repository.partition("/")
        encoded = urllib.parse.quote(urllib.parse.quote(name, safe=""), safe="")  # Harbor wants `/` as %252F
        return self.get(f"projects/{project}/repositories/{encoded}/artifacts/{reference}{query}", f"artifact {repository}@{reference}",
                        headers, missing_ok=True)

    def scan_overview(self, repository: str, digest: str) -> Mapping[str, Any] | None:
        """The artifact's scan overview in the cache; None while the cache has not stored it."""
        artifact = self.artifact(repository, digest, "?with_scan_overview=true", {"X-Accept-Vulnerabilities": ", ".join(REPORT_TYPES)})
        return None if artifact is None else (artifact.get("scan_overview") or {})

    def tagged(self, repository: str, tag: str) -> str | None:
        """The digest `tag` names in `repository`; None when it names nothing yet."""
        artifact = self.artifact(repository, tag)
        return None if artifact is None else artifact["digest"]


# --- skopeo and OCI layouts -------------------------------------------------------------------


@dataclass
class Skopeo:
    """skopeo with the robot's credentials in an auth file (never on a command line) and the CA bundle."""

    auth_file: Path
    bundle: Path

    def copy(self, source: str, destination: str, digest_file: Path | None = None) -> None:
        args = ["copy", "--all", "--preserve-digests", "--retry-times", "3", "--authfile", str(self.auth_file)]
        if digest_file is not None:
            args += ["--digestfile", str(digest_file)]
        result = subprocess.run(["skopeo", *args, source, destination], capture_output=True, text=True,
                                env={**os.environ, "SSL_CERT_FILE": str(self.bundle)})
        if result.returncode != 0:
            raise PromotionError(f"skopeo copy {source} {destination}: {result.stderr.strip()[-500:]}")


def auth_file(directory: Path, registry: str, username: str, password: str) -> Path:
    path = directory / "auth.json"
    path.touch(mode=0o600)
    path.write_text(json.dumps({"auths": {registry: {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}}}))
    return path


@dataclass(frozen=True)
class Manifest:
    digest: str
    scan: bool  # a platform image Harbor scans (not an index, not an attestation's unknown/unknown)


def _top(layout: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The top descriptor of an OCI layout and the document it points to."""
    [top] = json.loads((layout / "index.json").read_text())["manifests"]
    return top, _blob(layout, top["digest"])


def _blob(layout: Path, digest: str) -> dict[str, Any]:
    return json.loads((layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes())


def layout_manifests(layout: Path) -> tuple[str, list[Manifest]]:
    """The top manifest's digest in an OCI layout and every manifest under it."""
    top, document = _top(layout)
    if document.get("mediaType", top.get("mediaType")) not in INDEX_TYPES:
        return top["digest"], [Manifest(top["digest"], True)]
    children = []
    for child in document.get("manifests", []):
        # Build attestations sit in indexes as platform unknown/unknown: nothing to scan. By that
        # platform only, never by their annotation: a node's containerd picks a child by platform
        # alone (one with none too), so an image annotated as an attestation runs like any other.
        children.append(Manifest(child["digest"], (child.get("platform") or {}).get("os") != "unknown"))
    return top["digest"], [*children, Manifest(top["digest"], False)]


def database_digest(layout: Path, ref: ImageRef) -> str:
    """The digest of the Trivy database in an OCI layout; anything else is refused (images take the scan gate)."""
    top, document = _top(layout)
    config = (document.get("config") or {}).get("mediaType")
    layers = [layer.get("mediaType") for layer in document.get("layers") or []]
    if config != TRIVY_DB_CONFIG or not layers or not set(layers) <= set(TRIVY_DB_LAYERS):
        raise PromotionError(f"{ref} is not a Trivy database (config {config}, layers {layers}): promote images with IMAGE, "
                             "through the scan gate")
    return top["digest"]


def database_fresh_until(layout: Path, ref: ImageRef) -> datetime:
    """The NextUpdate of the Trivy database in an OCI layout (its layer's metadata.json, beside the database:
    aquasecurity/trivy-db Makefile db-compress, trivy-java-db Makefile): when upstream's next build replaces it."""
    _, document = _top(layout)
    [layer] = document["layers"]
    with tarfile.open(layout / "blobs" / "sha256" / layer["digest"].removeprefix("sha256:"), "r:gz") as archive:
        try:
            member = archive.extractfile("metadata.json")
        except KeyError:
            member = None
        if member is None:
            raise PromotionError(f"{ref}: the database has no metadata.json")
        return datetime.fromisoformat(json.load(member)["NextUpdate"])


def signature_layout(directory: Path, payload: bytes, signature: bytes) -> Path:
    """An OCI layout holding cosign's signature image for one payload (simple signing, key-based)."""
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    layer = put(payload)
    config = put(json.dumps({"architecture": "", "os": "", "config": {},
                             "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}).encode())
    manifest = put(json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [{"mediaType": SIGNATURE_LAYER, **layer,
                    "annotations": {SIGNATURE_ANNOTATION: base64.b64encode(signature).decode()}}],
    }).encode())
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (directory / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest, "annotations": {"org.opencontainers.image.ref.name": "sig"}},
    ]}))
    return directory


def simple_signing_payload(repository: str, digest: str) -> bytes:
    """What cosign signs for an image digest, and what the verifier checks the digest against."""
    return json.dumps({
        "critical": {"identity": {"docker-reference": repository}, "image": {"docker-manifest-digest": digest},
                     "type": "cosign container image signature"},
        "optional": None,
    }).encode()


# --- the promotion ----------------------------------------------------------------------------


def await_scans(harbor: HarborApi, ref: ImageRef, manifests: Iterable[Manifest], threshold: str, timeout: float,
                sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> list[str]:
    """Wait for Harbor's verdict on every platform image; the reasons for refusing (empty: pass)."""
    pending = {m.digest for m in manifests if m.scan}
    if not pending:
        raise PromotionError(f"{ref}: no platform image to scan")
    deadline, refused = clock() + timeout, []
    while pending:
        for digest in sorted(pending):
            verdict = scan_verdict(harbor.scan_overview(ref.source, digest), threshold)
            if verdict.state != "wait":
                pending.discard(digest)
                print(f"  {digest[:19]}: {verdict.why}")
                if verdict.state == "refuse":
                    refused.append(f"{digest}: {verdict.why}")
        if pending:
            if clock() >= deadline:
                raise PromotionError(f"{ref}: Harbor has not finished scanning {len(pending)} image(s) in {timeout:.0f}s")
            sleep(SCAN_POLL_SECONDS)
    return refused


@dataclass
class Promoter:
    harbor: HarborApi
    skopeo: Skopeo
    vault: Vault
    signing_key: str
    timeout: float
    sleep: Callable[[float], None] = time.sleep

    def promote(self, ref: ImageRef, threshold: str, workdir: Path) -> str:
        """Promote one image; returns where it now is (`host/approved/...@digest`)."""
        layout = self._pull(ref, workdir)
        top, manifests = layout_manifests(layout)
        if ref.digest and top != ref.digest:
            raise PromotionError(f"{ref}: the cache served {top}, not the digest asked for")
        promoted = self._promoted(ref, top)
        refused = await_scans(self.harbor, ref, manifests, threshold, self.timeout, self.sleep)
        if refused:
            raise PromotionError(f"{ref} refused: " + "; ".join(refused))
        target = f"{self.harbor.host}/{ref.target}" if promoted else self._push(ref, layout, top, workdir)
        payload = simple_signing_payload(target, top)
        signature = signature_layout(workdir / "signature", payload, self.vault.sign(self.signing_key, payload))
        self.skopeo.copy(f"oci:{signature}:sig", f"docker://{target}:{top.replace(':', '-')}.sig")
        print(f"{ref}: signed with {self.signing_key}")
        return f"{target}:{ref.tag}@{top}"

    def promote_database(self, ref: ImageRef, workdir: Path) -> str:
        """Promote one Trivy database under its tag (the schema version Trivy asks for); no scan, no signature."""
        if ref.digest:
            raise PromotionError(f"{ref}: name a Trivy database by its schema tag only, e.g. ghcr.io/aquasecurity/trivy-db:2")
        layout = self._pull(ref, workdir)
        top = database_digest(layout, ref)
        # Unsigned upstream (aquasecurity/trivy-db .github/workflows/cron.yml pushes it with oras), so its age is
        # what can be checked: Harbor's cache serves its old copy while ghcr.io is unreachable or rate-limits it.
        fresh_until = database_fresh_until(layout, ref)
        if fresh_until <= datetime.now(timezone.utc):
            raise PromotionError(f"{ref}: the cache serves {top}, past its NextUpdate {fresh_until.isoformat()}: is ghcr.io "
                                 f"unreachable from Harbor (Administration > Registries)? Nothing promoted; the scanners keep the copy in "
                                 f"{APPROVED_PROJECT}")
        return f"{self._push(ref, layout, top, workdir)}:{ref.tag}@{top}"

    def _pull(self, ref: ImageRef, workdir: Path) -> Path:
        """Every platform of `ref` through its proxy cache into a local OCI layout."""
        layout = workdir / "image"
        print(f"{ref}: pulling through {ref.source}")
        self.skopeo.copy(f"docker://{self.harbor.host}/{ref.source}{'@' if ref.digest else ':'}{ref.reference}", f"oci:{layout}:promote")
        return layout

    def _promoted(self, ref: ImageRef, top: str) -> bool:
        """Whether `approved` already has `ref`'s tag on `top` (a re-promotion: re-signed, not pushed again; Harbor
        refuses any push to an immutable tag, components/tenant_supply_chain.py). A tag on other bytes is refused."""
        held = self.harbor.tagged(ref.target, ref.tag)
        if held is not None and held != top:
            raise PromotionError(f"{ref}: {ref.target}:{ref.tag} names {held}, promoted before; the cache now serves {top} "
                                 "under that tag. A promoted tag never moves: compare the two; a genuine upstream rebuild has a tag "
                                 "of its own: promote that one")
        if held is not None:
            print(f"{ref}: {ref.target}:{ref.tag} already names {top}: signing it again")
        return held is not None

    def _push(self, ref: ImageRef, layout: Path, top: str, workdir: Path) -> str:
        """The same bytes into `approved`, checked by digest; returns the target repository."""
        target = f"{self.harbor.host}/{ref.target}"
        print(f"{ref}: copying {top} to {ref.target}")
        pushed = workdir / "digest"
        self.skopeo.copy(f"oci:{layout}:promote", f"docker://{target}:{ref.tag}", pushed)
        if pushed.read_text().strip() != top:
            raise PromotionError(f"push of {target}: Harbor stored {pushed.read_text().strip()}, not {top}")
        return target


def main(environ: Mapping[str, str] = os.environ, sleep: Callable[[float], None] = time.sleep) -> int:
    try:
        images = [parse_image(text, environ.get("APPROVED_PREFIX") or None) for text in environ.get("IMAGE", "").split()]
        databases = [parse_database(text) for text in environ.get("DATABASE", "").split()]
        if not images and not databases:
            print("promote-image: set IMAGE, e.g. IMAGE=docker.io/library/nginx:1.27.3 (several: separated by spaces), "
                  "or DATABASE, e.g. DATABASE=ghcr.io/aquasecurity/trivy-db:2", file=sys.stderr)
            return 2
        missing = [name for name in REQUIRED_VARIABLES if not environ.get(name)]
        if missing:
            print(f"promote-image: {', '.join(missing)} not set (see .gitlab-ci.yml)", file=sys.stderr)
            return 2
        with tempfile.TemporaryDirectory(prefix="promote-") as temp:
            work = Path(temp)
            bundle = ca_bundle(work)
            https = Https(tls_context())
            vault = Vault(https, environ["VAULT_ADDR"].rstrip("/"))
            vault.login(environ["VAULT_AUTH_PATH"], environ["VAULT_ROLE"], environ["VAULT_ID_TOKEN"])
            try:
                robot = vault.robot(environ["PROMOTER_VAULT_PATH"])
                harbor = HarborApi(https, robot["registry"], robot["username"], robot["password"])
                skopeo = Skopeo(auth_file(work, robot["registry"], robot["username"], robot["password"]), bundle)
                promoter = Promoter(harbor, skopeo, vault, environ["SIGN_WITH"],
                                    float(environ.get("PROMOTE_SCAN_TIMEOUT", DEFAULT_SCAN_TIMEOUT)), sleep)
                threshold = harbor.severity_gate() if images else ""  # databases take no scan gate
                for i, ref in enumerate(images):
                    print(f"promoted: {promoter.promote(ref, threshold, Path(tempfile.mkdtemp(prefix=f'{i}-', dir=work)))}")
                for i, ref in enumerate(databases):
                    print(f"promoted: {promoter.promote_database(ref, Path(tempfile.mkdtemp(prefix=f'db-{i}-', dir=work)))}")
            finally:
                vault.revoke()
    except PromotionError as error:
        print(f"promote-image: {error}", file=sys.stderr)
        return 1
    except (OSError, KeyError, ValueError) as error:  # network, TLS, or an answer not shaped as expected
        print(f"promote-image: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
