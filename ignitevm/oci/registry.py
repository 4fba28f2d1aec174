"""A client for the OCI distribution API: manifests and blobs, with Docker's auth flows."""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ignitevm.errors import IgniteError, NotFoundError
from ignitevm.oci.auth import Credentials, find_credentials
from ignitevm.oci.blobs import BlobCache, sha256_bytes, verify_bytes
from ignitevm.oci.reference import Reference
from ignitevm.oci.types import FetchOptions, MediaType

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

MANIFEST_ACCEPT = ", ".join(
    [MediaType.OCI_INDEX, MediaType.OCI_MANIFEST, MediaType.DOCKER_LIST, MediaType.DOCKER_MANIFEST]
)
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
MAX_DOCUMENT = 16 << 20  # manifests and configs are small; a bigger one is an attack or a bug
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


def _host(registry: str) -> str:
    return registry.rsplit(":", 1)[0] if not registry.endswith("]") else registry


def normalize_insecure(entry: str) -> str:
    """An insecure-registry entry as a host[:port]: Ignite's env var and Docker's setting take
    ``https://host:5000/`` as well as ``host:5000``."""
    return entry.strip().split("://", 1)[-1].split("/", 1)[0]


def is_named_insecure(registry: str, insecure: tuple[str, ...]) -> bool:
    """Named in IGNITE_CONTAINERD_INSECURE_REGISTRIES or --insecure-registry (host or
    host:port)."""
    names = {normalize_insecure(e) for e in insecure}
    return registry in names or _host(registry) in names


def is_insecure(registry: str, insecure: tuple[str, ...]) -> bool:
    """No verified HTTPS: loopback registries (plain HTTP) and the named ones (HTTPS without
    certificate verification, else plain HTTP)."""
    return _host(registry) in _LOCAL_HOSTS or is_named_insecure(registry, insecure)


def schemes_for(registry: str, insecure: tuple[str, ...]) -> tuple[tuple[str, ...], bool]:
    """(schemes to try in order, verify certificates). A named insecure registry: HTTPS
    without verification (a self-signed certificate), then plain HTTP, as Docker and Ignite's
    containerd runtime do; loopback: plain HTTP; any other: verified HTTPS only."""
    if is_named_insecure(registry, insecure):
        return ("https", "http"), False
    if _host(registry) in _LOCAL_HOSTS:
        return ("http",), True
    return ("https",), True


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="..."`` -> ("bearer", {"realm": ..., "service": ...})."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(rest))


class RegistryClient:
    """Talks to one repository of one registry. Use as a context manager."""

    def __init__(self, ref: Reference, opts: FetchOptions) -> None:
        self.ref = ref
        self.cache = BlobCache(opts.cache_dir)
        self.insecure = opts.insecure_registries
        schemes, verify = schemes_for(ref.registry, self.insecure)
        if not verify:
            log.warning("not verifying the TLS certificate of %s (an insecure registry)",
                        ref.registry)  # fmt: skip
        self._fallback = schemes[1:]  # tried when the first scheme cannot connect at all
        self._old_base = ""  # the base before a fallback
        self._switch = threading.Lock()
        self.base = f"{schemes[0]}://{ref.api_host}/v2/{ref.repository}"
        self.creds: Credentials | None = find_credentials(ref.registry, opts.registry_config_dir)
        self.config_dir = opts.registry_config_dir
        self._auth: str | None = None
        self.blob_downloads = 0
        self._http = self._client(verify)
        self._verified: httpx.Client | None = None  # for a token service on another host

    @staticmethod
    def _client(verify: bool) -> httpx.Client:
        import httpx  # lazily: the CLI starts faster without it

        return httpx.Client(
            timeout=httpx.Timeout(30.0, read=300.0),
            follow_redirects=True,  # blobs often live behind a redirect to object storage
            headers={"User-Agent": "ignitevm"},
            verify=verify,
        )

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()
        if self._verified is not None:
            self._verified.close()

    # -- public ---------------------------------------------------------------------------

    def get_manifest(self, target: str) -> tuple[bytes, str, str]:
        """Fetch a manifest or index by tag or digest: (body, media type, digest)."""
        if target.startswith("sha256:") and (data := self.cache.read_bytes(target)):
            return data, "", target
        with self._send("GET", f"{self.base}/manifests/{target}", MANIFEST_ACCEPT) as resp:
            self._check(resp, f"manifest {target}")
            data = self._read_small(resp, f"manifest {target}")
        media = resp.headers.get("content-type", "").split(";")[0].strip()
        digest = sha256_bytes(data)
        if target.startswith("sha256:"):
            verify_bytes(data, target, f"{self.ref}: manifest")
            self.cache.put_bytes(digest, data, f"{self.ref}: manifest")
        else:
            sent = resp.headers.get("docker-content-digest")
            if sent and sent.startswith("sha256:") and sent != digest:
                log.debug("registry sent Docker-Content-Digest %s, body hashes to %s", sent, digest)
        return data, media, digest

    def get_blob_bytes(self, digest: str) -> bytes:
        """A small blob (config), verified and cached."""
        cached = self.cache.read_bytes(digest)
        if cached is not None:
            return cached
        with self._send("GET", f"{self.base}/blobs/{digest}") as resp:
            self._check(resp, f"blob {digest}")
            data = self._read_small(resp, f"blob {digest}")
        self.blob_downloads += 1
        self.cache.put_bytes(digest, data, f"{self.ref}: blob {digest}")
        return data

    def fetch_blob(self, digest: str, on_bytes: Callable[[int], None] | None = None) -> Path:
        """Download a blob into the cache (verified) unless it is there; return its path."""
        path = self.cache.find(digest)
        if path is not None:
            return path
        what = f"{self.ref}: blob {digest}"
        with self._send("GET", f"{self.base}/blobs/{digest}") as resp:
            self._check(resp, f"blob {digest}")
            self.blob_downloads += 1
            with self.cache.writer(digest, what) as out:
                try:
                    for chunk in resp.iter_bytes(1 << 20):
                        out.write(chunk)
                        if on_bytes is not None:
                            on_bytes(len(chunk))
                except self._errors() as exc:
                    raise self._network_error(exc) from exc
        return self.cache.path(digest)

    # -- internals ------------------------------------------------------------------------

    def _read_small(self, resp: httpx.Response, what: str) -> bytes:
        chunks: list[bytes] = []
        total = 0
        try:
            for chunk in resp.iter_bytes(1 << 16):
                total += len(chunk)
                if total > MAX_DOCUMENT:
                    raise IgniteError(
                        f"registry {self.ref.registry}: {what} is larger than "
                        f"{MAX_DOCUMENT >> 20} MiB",
                        hint="this is not an image manifest/config",
                    )
                chunks.append(chunk)
        except self._errors() as exc:
            raise self._network_error(exc) from exc
        return b"".join(chunks)

    def _errors(self) -> type[Exception]:
        import httpx

        return httpx.HTTPError

    def _network_error(self, exc: Exception) -> IgniteError:
        hint = (
            "check the registry address and that it is up; for a plain-HTTP registry "
            "use --insecure-registry"
        )
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            hint = (
                f"the certificate of {self.ref.registry} is not trusted: add its CA to the "
                "system's, or skip verification for it with --insecure-registry "
                f"{self.ref.registry} or IGNITE_CONTAINERD_INSECURE_REGISTRIES={self.ref.registry}"
            )
        return IgniteError(f"registry {self.ref.registry}: {type(exc).__name__}: {exc}", hint=hint)

    @contextmanager
    def _send(self, method: str, url: str, accept: str | None = None) -> Iterator[httpx.Response]:
        headers = {"Accept": accept} if accept else {}
        resp = self._request(method, url, headers)
        try:
            if resp.status_code == 401:
                challenge = resp.headers.get("www-authenticate", "")
                resp.close()
                self._authenticate(challenge)
                resp = self._request(method, url, headers)
                if resp.status_code == 401:
                    raise IgniteError(
                        f"registry {self.ref.registry} refused the credentials for "
                        f"{self.ref.repository}",
                        hint=self._cred_hint(),
                    )
            yield resp
        finally:
            resp.close()

    def _request(self, method: str, url: str, headers: dict[str, str]) -> httpx.Response:
        if self._old_base and url.startswith(self._old_base):
            url = self.base + url[len(self._old_base) :]  # made before the fallback
        if self._auth:
            headers = {**headers, "Authorization": self._auth}
        log.debug("%s %s", method, url)
        try:
            request = self._http.build_request(method, url, headers=headers)
            return self._http.send(request, stream=True)
        except self._errors() as exc:
            first = exc
        # An insecure registry that does not speak TLS: plain HTTP from now on. Layers are
        # fetched by several threads at once: one switches, the others follow.
        with self._switch:
            if self._fallback and url.startswith(self.base):
                self._old_base = self.base
                self.base = self.base.replace("https://", f"{self._fallback[0]}://", 1)
                self._fallback = ()
                log.debug("%s: no HTTPS (%s); trying %s", self.ref.registry, first, self.base)
            elif not (self._old_base and url.startswith(self._old_base)):
                raise self._network_error(first) from first
        try:
            return self._request(method, url, headers)
        except IgniteError:
            raise self._network_error(first) from first  # the HTTPS error says more

    def _token_client(self, realm: str) -> httpx.Client:
        """The client for a token service: unverified only on the registry's own host or
        another one named insecure (credentials go there)."""
        import httpx

        host = httpx.URL(realm).netloc.decode()
        if host == self.ref.api_host or is_named_insecure(host, self.insecure):
            return self._http
        if self._verified is None:
            self._verified = self._client(True)
        return self._verified

    def _cred_hint(self) -> str:
        where = self.config_dir or "~/.docker"
        return (
            f"put credentials for {self.ref.registry} in {where}/config.json "
            '("auths": {"<registry>": {"auth": base64 of "user:password"}}) '
            "or pass --registry-config-dir"
        )

    def _authenticate(self, challenge: str) -> None:
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if self.creds is None:
                raise IgniteError(
                    f"registry {self.ref.registry} requires authentication",
                    hint=self._cred_hint(),
                )
            pair = f"{self.creds.username}:{self.creds.password}".encode()
            self._auth = "Basic " + base64.b64encode(pair).decode()
        elif scheme == "bearer" and "realm" in params:
            self._auth = "Bearer " + self._fetch_token(params)
        else:
            raise IgniteError(
                f"registry {self.ref.registry} asks for unsupported authentication {challenge!r}"
            )

    def _fetch_token(self, params: dict[str, str]) -> str:
        query = {"scope": f"repository:{self.ref.repository}:pull"}
        if "service" in params:
            query["service"] = params["service"]
        auth: tuple[str, str] | None = None
        if self.creds is not None:
            auth = (self.creds.username, self.creds.password)
        try:
            resp = self._token_client(params["realm"]).get(params["realm"], params=query, auth=auth)
        except self._errors() as exc:
            raise self._network_error(exc) from exc
        if resp.status_code in (401, 403):
            raise IgniteError(
                f"the token service of {self.ref.registry} refused access to {self.ref.repository}",
                hint=self._cred_hint(),
            )
        self._check(resp, "token")
        body: Any = resp.json()
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not token:
            raise IgniteError(f"the token service of {self.ref.registry} sent no token")
        return str(token)

    def _check(self, resp: httpx.Response, what: str) -> None:
        if resp.status_code < 300:
            return
        if resp.status_code == 404:
            raise NotFoundError(
                f"{what} of {self.ref} not found in registry {self.ref.registry}",
                hint="check the repository name and tag",
            )
        try:
            detail = resp.read()[:300].decode(errors="replace")
        except self._errors():
            detail = ""
        hint = None
        if resp.status_code == 400 and "HTTPS server" in detail:  # Go's answer to plain HTTP
            hint = (
                f"{self.ref.registry} speaks HTTPS: name it in --insecure-registry or "
                "IGNITE_CONTAINERD_INSECURE_REGISTRIES (its certificate is then not verified)"
            )
        raise IgniteError(
            f"registry {self.ref.registry}: {what}: HTTP {resp.status_code} {detail}".strip(),
            hint=hint,
        )
