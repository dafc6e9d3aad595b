#!/usr/bin/env python3
"""Promote public images into Harbor's `approved` project once Harbor's scan lets them pass.

Run by the manual `promote-image` job of .gitlab-ci.yml, on the default branch only. Python
standard library only. For each image in IMAGE (whitespace-separated, registry named, a tag
and/or a digest, e.g. `docker.io/library/nginx:1.27.3`):

1. log in to Vault with the job's ID token (VAULT_ID_TOKEN; role VAULT_ROLE at
   auth/VAULT_AUTH_PATH) and read the Harbor promoter robot at PROMOTER_VAULT_PATH;
2. pull it through the proxy cache `proxy-<registry>`: every manifest and every blob, all
   platforms, so Harbor caches all of it and scans it on arrival;
3. wait for Harbor's scan of each platform image and refuse the image if any has a
   vulnerability at or above the severity gate of the `approved` project
   (platform:supplyChain.severity; "none" gates nothing, like the tenants' trivy step);
4. push the same bytes to `approved/<registry>/<repository>`: blobs, then each manifest by
   digest, then the tag. Manifests are never re-encoded, so the digest stays the same.
   APPROVED_PREFIX replaces `<registry>` in that path when set: `vcluster` for the images a
   virtual cluster pulls from `approved/vcluster/<repository>` (its `defaultImageRegistry`).

TLS: HTTPS only, certificates always verified against the system roots, plus the runner's CA
file for GitLab (CI_SERVER_TLS_CA_FILE, the platform CA on private-CA stacks) when it is set;
SSL_CERT_FILE is honoured too. Exit codes: 0 promoted, 1 refused or failed, 2 usage.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import ssl
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
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
IMAGE_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
# Set by .gitlab-ci.yml (the job's variables and ID token) and VAULT_ADDR, a project variable.
REQUIRED_VARIABLES = ("VAULT_ADDR", "VAULT_AUTH_PATH", "VAULT_ROLE", "VAULT_ID_TOKEN", "PROMOTER_VAULT_PATH")
SCAN_POLL_SECONDS = 15
DEFAULT_SCAN_TIMEOUT = 1800  # a first pull of a large image through the cache, then its scan
CHUNK = 1 << 20

_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")
_PATH = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_PREFIX = re.compile(r"^[a-z0-9]+([.-][a-z0-9]+)*$")  # one path segment: a registry host or a name


class PromotionError(Exception):
    """One line for the job log: why this image was not promoted."""


# --- what to promote ------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageRef:
    registry: str  # docker.io
    repository: str  # library/nginx
    tag: str | None
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
        return self.digest or self.tag or ""

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}" + (f":{self.tag}" if self.tag else "") + (
            f"@{self.digest}" if self.digest else ""
        )


def proxy_project_name(host: str) -> str:
    return "proxy-" + host.replace(".", "-")


def parse_image(text: str, prefix: str | None = None) -> ImageRef:
    """`docker.io/library/nginx:1.27.3`, `ghcr.io/o/r@sha256:...` or both; never `latest`.

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
    if tag is not None and not _TAG.match(tag):
        raise PromotionError(f"{text!r}: {tag!r} is not a tag")
    if digest and not _DIGEST.match(digest):
        raise PromotionError(f"{text!r}: {digest!r} is not a sha256 digest")
    if tag is None and not digest:
        raise PromotionError(f"{text!r}: give a tag or a digest; nothing is promoted by default")
    if tag == "latest":
        raise PromotionError(f"{text!r}: `latest` is never promoted (clusters refuse it): give the version")
    if prefix is not None and not _PREFIX.match(prefix):
        raise PromotionError(f"APPROVED_PREFIX {prefix!r} is not one path segment such as 'vcluster'")
    if host == "docker.io" and "/" not in rest:
        rest = f"library/{rest}"
    return ImageRef(host, rest, tag, digest or None, prefix)


# --- the decision ---------------------------------------------------------------------------


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
    rates the artifact there), or when the scan failed; waits while no report is finished.
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
    blocking = {s: n for s, n in found.items() if block_from is not None and harbor_rank(s) >= block_from}
    if blocking:
        listed = ", ".join(f"{n} {s}" for s, n in sorted(blocking.items(), key=lambda i: -harbor_rank(i[0])))
        return Verdict("refuse", f"{listed} at or above {threshold}")
    summary = ", ".join(f"{n} {s}" for s, n in sorted(found.items(), key=lambda i: -harbor_rank(i[0]))) or "no vulnerabilities"
    return Verdict("pass", f"{summary} (gate: {threshold})")


# --- HTTPS ----------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    stream: Any  # has .read(size)

    def body(self) -> bytes:
        return self.stream.read()

    def json(self) -> Any:
        return json.loads(self.body() or b"null")


# (method, url, headers, body) -> Response; the body is bytes, a binary file or None.
Transport = Callable[[str, str, Mapping[str, str], Any], Response]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx comes back as a response: Http.request follows it itself


def tls_context() -> ssl.SSLContext:
    """System roots (and SSL_CERT_FILE), plus the runner's CA for GitLab when set. Always verified."""
    context = ssl.create_default_context()
    extra = os.environ.get("CI_SERVER_TLS_CA_FILE")
    if extra:
        context.load_verify_locations(cafile=extra)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def urllib_transport(context: ssl.SSLContext) -> Transport:
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _NoRedirects())

    def send(method: str, url: str, headers: Mapping[str, str], body: Any) -> Response:
        request = urllib.request.Request(url, data=body, headers=dict(headers), method=method)
        try:
            raw = opener.open(request, timeout=300)
        except urllib.error.HTTPError as error:  # 3xx, 4xx, 5xx: a response like any other
            return Response(error.code, {k.lower(): v for k, v in error.headers.items()}, error)
        return Response(raw.status, {k.lower(): v for k, v in raw.headers.items()}, raw)

    return send


class Http:
    """HTTPS requests; redirects followed by hand so that credentials never leave their host
    (Harbor on S3 redirects blob downloads to pre-signed URLs, which must not get our token)."""

    def __init__(self, transport: Transport):
        self._send = transport

    def request(self, method: str, url: str, headers: Mapping[str, str] | None = None, body: Any = None) -> Response:
        headers = dict(headers or {})
        origin = urllib.parse.urlsplit(url).netloc
        for _ in range(5):
            if urllib.parse.urlsplit(url).scheme != "https":
                raise PromotionError(f"refusing {url}: HTTPS only")
            response = self._send(method, url, headers, body)
            if response.status not in (301, 302, 303, 307, 308) or method not in ("GET", "HEAD"):
                return response
            url = urllib.parse.urljoin(url, response.headers.get("location", ""))
            if urllib.parse.urlsplit(url).netloc != origin:
                headers.pop("Authorization", None)
        raise PromotionError(f"too many redirects from {origin}")


def _expect(response: Response, what: str, *ok: int) -> Response:
    if response.status not in ok:
        detail = response.body()[:300].decode("utf-8", "replace").strip()
        raise PromotionError(f"{what}: HTTP {response.status} {detail}")
    return response


# --- Vault ----------------------------------------------------------------------------------


def read_promoter(http: Http, vault_addr: str, auth_path: str, role: str, id_token: str, data_path: str) -> dict[str, str]:
    """Log in with the job's ID token, read the robot's credentials, revoke the token."""
    login = _expect(
        http.request("POST", f"{vault_addr}/v1/auth/{auth_path}/login", {"Content-Type": "application/json"},
                     json.dumps({"role": role, "jwt": id_token}).encode()),
        f"Vault login as {role} at auth/{auth_path}", 200,
    ).json()
    token = login["auth"]["client_token"]
    try:
        secret = _expect(http.request("GET", f"{vault_addr}/v1/{data_path}", {"X-Vault-Token": token}),
                         f"Vault read of {data_path}", 200).json()
    finally:  # it would expire in minutes anyway
        http.request("POST", f"{vault_addr}/v1/auth/token/revoke-self", {"X-Vault-Token": token})
    data = secret["data"]["data"]
    missing = {"registry", "username", "password"} - set(data)
    if missing:
        raise PromotionError(f"{data_path} lacks {', '.join(sorted(missing))}")
    return data


# --- Harbor ---------------------------------------------------------------------------------


@dataclass
class Manifest:
    digest: str
    media_type: str
    body: bytes
    scan: bool  # a platform image Harbor scans (not an index, not an attestation)

    @property
    def document(self) -> dict[str, Any]:
        return json.loads(self.body)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Harbor:
    """Harbor as the promoter robot: its registry API (bearer tokens from Harbor's token
    service) and its REST API (basic auth)."""

    http: Http
    host: str
    username: str
    password: str
    _realm: tuple[str, str] | None = None
    _tokens: dict[tuple[str, ...], str] = field(default_factory=dict)

    @property
    def _basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()

    # registry API

    def _token(self, scopes: tuple[str, ...], fresh: bool = False) -> str:
        if fresh or scopes not in self._tokens:
            if self._realm is None:
                challenge = self.http.request("GET", f"https://{self.host}/v2/").headers.get("www-authenticate", "")
                params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
                if "realm" not in params:
                    raise PromotionError(f"{self.host} did not offer a bearer token service")
                self._realm = (params["realm"], params.get("service", ""))
            realm, service = self._realm
            query = urllib.parse.urlencode([("service", service), *(("scope", s) for s in scopes)])
            issued = _expect(self.http.request("GET", f"{realm}?{query}", {"Authorization": self._basic}),
                             "Harbor token service", 200).json()
            self._tokens[scopes] = issued.get("token") or issued["access_token"]
        return self._tokens[scopes]

    def registry(self, method: str, path: str, scopes: tuple[str, ...], headers: Mapping[str, str] | None = None,
                 body: Any = None) -> Response:
        url = path if path.startswith("https://") else f"https://{self.host}/v2/{path}"
        for fresh in (False, True):  # a token may expire while a scan is awaited
            response = self.http.request(method, url, {**(headers or {}), "Authorization": f"Bearer {self._token(scopes, fresh)}"}, body)
            if response.status != 401:
                return response
            if hasattr(body, "seek"):
                body.seek(0)
        return response

    def manifest(self, repository: str, reference: str) -> Manifest:
        response = self.registry("GET", f"{repository}/manifests/{reference}", (f"repository:{repository}:pull",),
                                 {"Accept": ", ".join(INDEX_TYPES + IMAGE_TYPES)})
        if response.status in (401, 403):
            raise PromotionError(f"no pull access to {repository}: only the proxy caches of "
                                 "platform:supplyChain.publicRegistries can be promoted from")
        _expect(response, f"manifest {repository}:{reference}", 200)
        body = response.body()
        digest = sha256(body)
        if response.headers.get("docker-content-digest", digest) != digest or (reference.startswith("sha256:") and reference != digest):
            raise PromotionError(f"manifest {repository}@{reference}: content does not match its digest")
        media_type = json.loads(body).get("mediaType") or response.headers.get("content-type", "").split(";")[0]
        if media_type not in INDEX_TYPES + IMAGE_TYPES:
            raise PromotionError(f"manifest {repository}@{digest}: unsupported type {media_type!r}")
        return Manifest(digest, media_type, body, scan=media_type in IMAGE_TYPES)

    def download(self, repository: str, descriptor: Mapping[str, Any], into: Path) -> None:
        digest = descriptor["digest"]
        response = _expect(self.registry("GET", f"{repository}/blobs/{digest}", (f"repository:{repository}:pull",)),
                           f"blob {repository}@{digest}", 200)
        hasher, size = hashlib.sha256(), 0
        with into.open("wb") as out:
            while chunk := response.stream.read(CHUNK):
                hasher.update(chunk)
                size += len(chunk)
                out.write(chunk)
        if "sha256:" + hasher.hexdigest() != digest or size != int(descriptor["size"]):
            raise PromotionError(f"blob {repository}@{digest}: content does not match its digest and size")

    def upload(self, source: str, target: str, digest: str, blob: Path) -> None:
        """Mount the blob from the cache when Harbor can; otherwise upload it."""
        scopes = (f"repository:{target}:pull,push", f"repository:{source}:pull")
        if self.registry("HEAD", f"{target}/blobs/{digest}", scopes).status == 200:
            return
        query = urllib.parse.urlencode({"mount": digest, "from": source})
        started = _expect(self.registry("POST", f"{target}/blobs/uploads/?{query}", scopes, {"Content-Length": "0"}, b""),
                          f"upload of {digest} to {target}", 201, 202)
        if started.status == 201:
            return  # mounted
        location = urllib.parse.urljoin(f"https://{self.host}/v2/", started.headers["location"])
        separator = "&" if urllib.parse.urlsplit(location).query else "?"
        with blob.open("rb") as data:
            _expect(
                self.registry("PUT", f"{location}{separator}digest={urllib.parse.quote(digest)}", scopes,
                              {"Content-Type": "application/octet-stream", "Content-Length": str(blob.stat().st_size)}, data),
                f"upload of {digest} to {target}", 201,
            )

    def put_manifest(self, target: str, reference: str, manifest: Manifest) -> None:
        response = _expect(
            self.registry("PUT", f"{target}/manifests/{reference}", (f"repository:{target}:pull,push",),
                          {"Content-Type": manifest.media_type}, manifest.body),
            f"push of {target}:{reference}", 201,
        )
        if response.headers.get("docker-content-digest", manifest.digest) != manifest.digest:
            raise PromotionError(f"push of {target}:{reference}: Harbor stored another digest")

    # REST API

    def api(self, path: str, headers: Mapping[str, str] | None = None) -> Response:
        return self.http.request("GET", f"https://{self.host}/api/v2.0/{path}", {**(headers or {}), "Authorization": self._basic})

    def severity_gate(self) -> str:
        """The `approved` project's own pull gate: platform:supplyChain.severity."""
        project = _expect(self.api(f"projects/{APPROVED_PROJECT}"), f"Harbor project {APPROVED_PROJECT}", 200).json()
        metadata = project.get("metadata") or {}
        if metadata.get("prevent_vul") != "true" or metadata.get("severity") not in SEVERITIES:
            raise PromotionError(f"project {APPROVED_PROJECT} has no severity gate; run `pulumi up` (platform:supplyChain.severity)")
        return metadata["severity"]

    def scan_overview(self, repository: str, digest: str) -> Mapping[str, Any] | None:
        """The artifact's scan overview in the cache; None while the cache has not stored it."""
        project, _, name = repository.partition("/")
        encoded = urllib.parse.quote(urllib.parse.quote(name, safe=""), safe="")  # Harbor wants `/` as %252F
        response = self.api(
            f"projects/{project}/repositories/{encoded}/artifacts/{digest}?with_scan_overview=true",
            {"X-Accept-Vulnerabilities": ", ".join(REPORT_TYPES)},
        )
        if response.status == 404:
            return None
        return _expect(response, f"artifact {repository}@{digest}", 200).json().get("scan_overview") or {}


# --- the promotion --------------------------------------------------------------------------


def pull(harbor: Harbor, ref: ImageRef, workdir: Path) -> list[Manifest]:
    """Every manifest under `ref`, children first (the top one last), each blob into `workdir`."""
    ordered: list[Manifest] = []

    def walk(reference: str, descriptor: Mapping[str, Any] | None) -> None:
        manifest = harbor.manifest(ref.source, reference)
        document = manifest.document
        if manifest.media_type in INDEX_TYPES:
            for child in document.get("manifests", []):
                walk(child["digest"], child)
        else:
            for blob in [document["config"], *document.get("layers", [])]:
                if blob.get("urls"):
                    raise PromotionError(f"{ref}: foreign layers (pulled from elsewhere) are not promoted")
                path = workdir / blob["digest"].removeprefix("sha256:")
                if not path.exists():
                    harbor.download(ref.source, blob, path)
            # Build attestations sit in indexes as platform unknown/unknown: nothing to scan.
            annotations = (descriptor or {}).get("annotations") or {}
            platform = (descriptor or {}).get("platform") or {}
            manifest.scan = annotations.get("vnd.docker.reference.type") != "attestation-manifest" and platform.get("os") != "unknown"
        if all(m.digest != manifest.digest for m in ordered):
            ordered.append(manifest)

    walk(ref.reference, None)
    return ordered


def await_scans(harbor: Harbor, ref: ImageRef, manifests: Iterable[Manifest], threshold: str, timeout: float,
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


def promote(harbor: Harbor, ref: ImageRef, threshold: str, timeout: float, workdir: Path,
            sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> str:
    """Promote one image; returns where it now is (`host/approved/...@digest`)."""
    print(f"{ref}: pulling through {ref.source}")
    manifests = pull(harbor, ref, workdir)
    top = manifests[-1]
    refused = await_scans(harbor, ref, manifests, threshold, timeout, sleep, clock)
    if refused:
        raise PromotionError(f"{ref} refused: " + "; ".join(refused))
    print(f"{ref}: copying {top.digest} to {ref.target}")
    for manifest in manifests:
        if manifest.media_type in IMAGE_TYPES:
            document = manifest.document
            for blob in [document["config"], *document.get("layers", [])]:
                harbor.upload(ref.source, ref.target, blob["digest"], workdir / blob["digest"].removeprefix("sha256:"))
        harbor.put_manifest(ref.target, manifest.digest, manifest)  # children before the index that lists them
    if ref.tag:
        harbor.put_manifest(ref.target, ref.tag, top)
    return f"{harbor.host}/{ref.target}" + (f":{ref.tag}" if ref.tag else "") + f"@{top.digest}"


def main(environ: Mapping[str, str] = os.environ, transport: Transport | None = None,
         sleep: Callable[[float], None] = time.sleep) -> int:
    try:
        images = [parse_image(text, environ.get("APPROVED_PREFIX") or None) for text in environ.get("IMAGE", "").split()]
        if not images:
            print("promote-image: set IMAGE, e.g. IMAGE=docker.io/library/nginx:1.27.3 (several: separated by spaces)",
                  file=sys.stderr)
            return 2
        missing = [name for name in REQUIRED_VARIABLES if not environ.get(name)]
        if missing:
            print(f"promote-image: {', '.join(missing)} not set (see .gitlab-ci.yml)", file=sys.stderr)
            return 2
        timeout = float(environ.get("PROMOTE_SCAN_TIMEOUT", DEFAULT_SCAN_TIMEOUT))
        http = Http(transport or urllib_transport(tls_context()))
        robot = read_promoter(http, environ["VAULT_ADDR"].rstrip("/"), environ["VAULT_AUTH_PATH"], environ["VAULT_ROLE"],
                              environ["VAULT_ID_TOKEN"], environ["PROMOTER_VAULT_PATH"])
        harbor = Harbor(http, robot["registry"], robot["username"], robot["password"])
        threshold = harbor.severity_gate()
        for ref in images:
            with tempfile.TemporaryDirectory(prefix="promote-") as workdir:
                print(f"promoted: {promote(harbor, ref, threshold, timeout, Path(workdir), sleep)}")
    except PromotionError as error:
        print(f"promote-image: {error}", file=sys.stderr)
        return 1
    except (OSError, KeyError, ValueError) as error:  # network, TLS, or an answer not shaped as expected
        print(f"promote-image: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
