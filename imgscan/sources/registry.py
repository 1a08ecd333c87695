"""Images straight from a registry over the OCI distribution API (no engine, no disk).

Manifests and configs are read into memory (bounded by ``max_metadata_bytes``) and
checked against their digests; layer blobs are streamed to the walker, which
verifies their digests, while this module checks their length and resumes a
broken download with ``Range``. Auth: anonymous, basic, and the bearer-token
challenge flow, with tokens cached per scope. Credentials never reach a log line,
an error message or a host other than the registry and its token realm.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO
from urllib.parse import urljoin, urlsplit

from imgscan import __version__
from imgscan.errors import AuthError, ConfigError, LayerError, SourceError
from imgscan.sources.auth import Credentials, resolve_credentials
from imgscan.sources.base import Image, LayerBlob, SourceOptions
from imgscan.sources.common import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    MT_DOCKER_LIST,
    MT_DOCKER_MANIFEST,
    MT_OCI_INDEX,
    MT_OCI_MANIFEST,
    build_image_info,
    check_digest,
    load_json_object,
    manifest_config,
    manifest_layers,
    select_manifest,
)
from imgscan.sources.http import (
    ProxyAuthError,
    ProxyError,
    Response,
    Session,
    TLSError,
    TransportError,
    with_params,
)
from imgscan.sources.reference import Reference, parse_reference


def _debug(msg: str, *args: object) -> None:
    """A debug line for an application that set up logging.

    Importing logging costs 3 ms of a cached rescan; imgscan itself never configures it,
    so when nothing has imported it, nothing could show the line.
    """
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.getLogger(__name__).debug(msg, *args)


MANIFEST_ACCEPT = ", ".join([MT_OCI_INDEX, MT_OCI_MANIFEST, MT_DOCKER_LIST, MT_DOCKER_MANIFEST])
_SCHEMA1_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
_MAX_INDEX_DEPTH = 4
_MAX_TAG_PAGES = 10_000
_MAX_TAGS = 1_000_000
_LINK_NEXT_RE = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
_AUTH_PARAM_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')
_NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    TransportError,  # http.py wraps socket, TLS, proxy and protocol failures in it
    ConnectionError,
    TimeoutError,
)
_STREAM_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # TransportError included
    ValueError,  # a read from a closed/aborted response
)
_PROBE_ERRORS: tuple[type[BaseException], ...] = _NETWORK_ERRORS
_BODY_ERRORS: tuple[type[BaseException], ...] = (SourceError, *_STREAM_ERRORS)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to retry 429/5xx answers, connection failures and broken blob streams."""

    attempts: int = 5  # tries per request, the first included
    base_delay: float = 0.5  # seconds; doubled each time
    max_delay: float = 8.0  # cap on one wait (Retry-After included)
    max_total: float = 60.0  # cap on the time spent waiting for one request
    resumes: int = 5  # Range resumptions per blob download
    timeout: float = 60.0  # connect/read timeout per request

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait before try ``attempt + 1`` (honouring a numeric Retry-After)."""
        wait = self.base_delay * (2**attempt)
        if retry_after and retry_after.strip().isdigit():
            wait = max(wait, float(retry_after.strip()))
        return float(min(wait, self.max_delay))


@dataclass(frozen=True, slots=True)
class Challenge:
    """A parsed ``WWW-Authenticate`` header."""

    scheme: str  # "bearer" or "basic" (lowercase)
    params: Mapping[str, str]


def parse_challenge(header: str | None) -> Challenge | None:
    """Parse ``Bearer realm="...",service="...",scope="..."`` (or Basic); None if absent."""
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    params = {
        m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3) or "").replace(
            '\\"', '"'
        )
        for m in _AUTH_PARAM_RE.finditer(rest)
    }
    return Challenge(scheme.lower(), params)


def _registry_errors(resp: Response) -> str:
    """The ``errors[].code`` / message of a distribution error body, shortened."""
    length = resp.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > 64 * 1024:
        return ""
    try:
        body = resp.body(64 * 1024)
        doc = load_json_object(body, "registry error") if body else {}
    except _BODY_ERRORS:
        return ""
    errs = doc.get("errors")
    if not isinstance(errs, list):
        return ""
    parts = []
    for e in errs[:3]:
        if isinstance(e, Mapping):
            code, msg = e.get("code"), e.get("message")
            parts.append(" ".join(" ".join(str(x).split())[:120] for x in (code, msg) if x))
    return "; ".join(parts)


def _error_code(resp: Response) -> str:
    return _registry_errors(resp).split(" ", 1)[0] if resp.status_code >= 400 else ""


def _digest_of(data: bytes, algo: str = "sha256") -> str:
    return f"{algo}:{hashlib.new(algo, data).hexdigest()}"


def _short(exc: BaseException) -> str:
    """A one-line description of a network error, without URLs' query strings."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, ProxyError):  # "via proxy HOST:PORT (VAR): ...", never credentials
        return text[:200]
    errno = re.search(r"\[Errno -?\d+\] [^'\")\]]+", text)
    if errno:
        return errno.group(0).strip()
    for phrase in (
        "Read timed out",
        "Connection aborted",
        "Connection reset by peer",
        "IncompleteRead",
        "certificate verify failed",
        "Connection broken",
    ):
        if phrase in text:
            tail = text[text.index(phrase) :]
            return re.sub(r"\?[^\s'\")]*", "?…", tail)[:120].rstrip("(:, ")
    text = re.sub(r"\?[^\s'\")]*", "?…", text)
    return text[:200]


class _BrokenBody(SourceError):
    """A response body broke off mid-way (worth fetching again)."""


class RegistryClient:
    """A session with one registry host: auth, retries, redirects, manifests and blobs."""

    def __init__(
        self,
        host: str,
        *,
        creds: Credentials | None = None,
        insecure: bool = False,
        ca_cert: str | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if ca_cert is not None and not os.path.isfile(ca_cert):
            raise ConfigError(f"--ca-cert {ca_cert}: no such file")
        self.host = host
        self.scheme = "http" if insecure else "https"
        self.base = f"{self.scheme}://{host}"
        self.netloc = urlsplit(self.base).netloc
        self.creds = creds
        self.insecure = insecure
        self.verify: bool | str = ca_cert if ca_cert else True
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._session = Session(f"imgscan/{__version__}")
        self._challenge: Challenge | None = None
        self._pinged = False
        self._tokens: dict[str, tuple[str, float]] = {}
        self.stats = {"requests": 0, "retries": 0, "resumes": 0, "tokens": 0}

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- low level ---------------------------------------------------------------------------

    def _raw_request(
        self, method: str, url: str, headers: Mapping[str, str], data: bytes | None, stream: bool
    ) -> Response:
        """One HTTP exchange with retries on network errors and 429/5xx; no auth logic."""
        started = time.monotonic()
        waited = 0.0
        attempt = 0
        while True:
            self.stats["requests"] += 1
            try:
                resp = self._session.request(
                    method,
                    url,
                    headers=headers,
                    data=data,
                    stream=stream,
                    verify=self.verify,
                    timeout=self.retry.timeout,
                )
            except TLSError as exc:
                raise SourceError(
                    f"{self.host}: TLS verification failed ({_short(exc)}); "
                    "pass --ca-cert for a private CA"
                ) from None
            except ProxyAuthError as exc:  # retrying cannot help
                raise SourceError(f"{self.host}: {exc}") from None
            except _NETWORK_ERRORS as exc:
                delay = self.retry.delay(attempt)
                if attempt + 1 >= self.retry.attempts or waited + delay > self.retry.max_total:
                    raise SourceError(
                        f"{self.host}: cannot reach the registry after {attempt + 1} tries "
                        f"({_short(exc)})"
                    ) from None
                _debug("%s %s: %s; retrying in %.1fs", method, urlsplit(url).path, exc, delay)
            else:
                _debug("%s %s -> %s", method, urlsplit(url).path, resp.status_code)
                if resp.status_code not in _RETRY_STATUSES:
                    return resp
                delay = self.retry.delay(attempt, resp.headers.get("Retry-After"))
                if attempt + 1 >= self.retry.attempts or waited + delay > self.retry.max_total:
                    return resp
                resp.close()
            self.stats["retries"] += 1
            self._sleep(delay)
            waited += delay
            attempt += 1
            if time.monotonic() - started > self.retry.max_total + self.retry.timeout * 2:
                raise SourceError(f"{self.host}: gave up retrying {method} {urlsplit(url).path}")

    def _auth_header(self, scope: str) -> str | None:
        ch = self._challenge
        if ch is None:
            return None
        if ch.scheme == "basic":
            if self.creds is None:
                return None
            pair = f"{self.creds.username}:{self.creds.password}".encode()
            return "Basic " + base64.b64encode(pair).decode("ascii")
        if ch.scheme == "bearer":
            return f"Bearer {self._token(scope)}"
        return None

    def _token(self, scope: str, *, fresh: bool = False) -> str:
        cached = self._tokens.get(scope)
        if cached and not fresh and cached[1] > time.monotonic():
            return cached[0]
        token, ttl = self._fetch_token(scope)
        # Refresh a little early; tokens are short-lived (60s is common).
        self._tokens[scope] = (token, time.monotonic() + max(ttl - 10, ttl / 2))
        return token

    def _fetch_token(self, scope: str) -> tuple[str, float]:
        assert self._challenge is not None
        realm = self._challenge.params.get("realm")
        if not realm:
            raise AuthError(f"{self.host}: bearer challenge without a realm")
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise AuthError(f"{self.host}: unusable token realm {realm[:100]!r}")
        if parts.scheme == "http" and self.creds is not None and not self.insecure:
            raise AuthError(
                f"{self.host}: token realm {parts.netloc} is plain http; refusing to send "
                "credentials (use --insecure only for a local test registry)"
            )
        params: list[tuple[str, str]] = []
        service = self._challenge.params.get("service")
        if service:
            params.append(("service", service))
        for s in scope.split():
            params.append(("scope", s))
        headers: dict[str, str] = {"Accept": "application/json"}
        if self.creds is not None:
            pair = f"{self.creds.username}:{self.creds.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        resp = self._raw_request("GET", with_params(realm, params), headers, None, False)
        self.stats["tokens"] += 1
        if resp.status_code in (401, 403):
            if self.creds is not None:
                raise AuthError(
                    f"{self.host}: token server rejected the credentials for user "
                    f"{self.creds.username!r} ({self.creds.source})"
                )
            raise AuthError(
                f"{self.host}: token server refused anonymous access; provide credentials"
            )
        if resp.status_code != 200:
            raise AuthError(f"{self.host}: token server answered HTTP {resp.status_code}")
        try:
            doc = load_json_object(resp.body(1024 * 1024), "token response")
        except SourceError:
            raise AuthError(f"{self.host}: token server sent a malformed answer") from None
        token = doc.get("token") or doc.get("access_token")
        if not isinstance(token, str) or not token:
            raise AuthError(f"{self.host}: token server sent no token")
        ttl = doc.get("expires_in")
        return token, float(ttl) if isinstance(ttl, (int, float)) and ttl > 0 else 60.0

    def ping(self) -> None:
        """``GET /v2/``: check the registry answers and learn how it wants to be authenticated."""
        if self._pinged:
            return
        if self.insecure:
            self._probe_https()
        resp = self._raw_request("GET", f"{self.base}/v2/", {}, None, False)
        resp.close()
        if resp.status_code == 401:
            self._challenge = parse_challenge(resp.headers.get("WWW-Authenticate"))
            if self._challenge is None or self._challenge.scheme not in ("basic", "bearer"):
                raise AuthError(f"{self.host}: registry demands an unsupported authentication")
        elif resp.status_code != 200:
            raise SourceError(
                f"{self.host}: not a distribution API v2 registry (GET /v2/ -> HTTP "
                f"{resp.status_code})"
            )
        self._pinged = True

    def _probe_https(self) -> None:
        """With ``insecure``, like Docker: use TLS (unverified) when the registry speaks it."""
        url = f"https://{self.host}/v2/"
        try:
            resp = self._session.request("GET", url, verify=False, timeout=5)
            resp.close()
        except _PROBE_ERRORS:
            return  # plain http it is
        _debug("%s speaks TLS; using https without certificate verification", self.host)
        self.scheme = "https"
        self.base = f"https://{self.host}"
        self.verify = False

    def _denied(self, repo: str, resp: Response, actions: str) -> AuthError:
        what = f"{self.host}/{repo}"
        detail = _registry_errors(resp)
        suffix = f" [{detail}]" if detail else ""
        verb = "push to" if "push" in actions else "pull"
        if resp.status_code == 403:
            return AuthError(f"{what}: access forbidden (HTTP 403) to {verb}{suffix}")
        if self.creds is None:
            return AuthError(
                f"{what}: authentication required (anonymous access denied, or no such "
                "repository); use "
                "--username/--password-stdin, IMGSCAN_REGISTRY_USERNAME/PASSWORD or docker login"
                + suffix
            )
        if self._challenge is not None and self._challenge.scheme == "basic":
            return AuthError(
                f"{what}: registry rejected the credentials for user {self.creds.username!r} "
                f"({self.creds.source}){suffix}"
            )
        return AuthError(
            f"{what}: user {self.creds.username!r} is not allowed to {verb} this repository "
            f"(token lacks {actions} access){suffix}"
        )

    def request(
        self,
        method: str,
        url: str,
        *,
        repo: str,
        actions: str = "pull",
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        stream: bool = False,
        follow_redirects: bool = True,
        extra_scopes: tuple[str, ...] = (),
    ) -> Response:
        """Send an authenticated request for ``repo``; 401/403 raise AuthError.

        Redirects are followed by hand so that the Authorization header only ever
        goes to the registry itself, never to blob storage on another host.
        """
        self.ping()
        scope = " ".join((f"repository:{repo}:{actions}", *extra_scopes))
        if not url.startswith(("http://", "https://")):
            url = self.base + url
        auth_retried = False
        hops = 0
        while True:
            same_host = urlsplit(url).netloc == self.netloc
            h = dict(headers or {})
            if same_host:
                auth = self._auth_header(scope)
                if auth:
                    h["Authorization"] = auth
            resp = self._raw_request(method, url, h, data, stream)
            if same_host and resp.status_code == 401 and not auth_retried:
                ch = parse_challenge(resp.headers.get("WWW-Authenticate"))
                error = ch.params.get("error") if ch else None
                can_retry = (
                    ch is not None
                    and ch.scheme in ("basic", "bearer")
                    and error != "insufficient_scope"
                    and (ch.scheme == "bearer" or self.creds is not None)
                )
                if can_retry and ch is not None:
                    auth_retried = True
                    changed = self._challenge != ch and (
                        self._challenge is None
                        or self._challenge.scheme != ch.scheme
                        or self._challenge.params.get("realm") != ch.params.get("realm")
                    )
                    if changed:
                        self._challenge = Challenge(
                            ch.scheme,
                            {k: v for k, v in ch.params.items() if k in ("realm", "service")},
                        )
                        self._tokens.clear()
                    elif ch.scheme == "bearer":
                        self._token(scope, fresh=True)
                    else:
                        raise self._denied(repo, resp, actions)
                    resp.close()
                    continue
            if resp.status_code in (401, 403) and same_host:
                err = self._denied(repo, resp, actions)
                resp.close()
                raise err
            if follow_redirects and resp.status_code in _REDIRECT_STATUSES:
                location = resp.headers.get("Location")
                resp.close()
                if not location:
                    raise SourceError(f"{self.host}/{repo}: redirect without a Location")
                hops += 1
                if hops > _MAX_REDIRECTS:
                    raise SourceError(f"{self.host}/{repo}: too many redirects")
                target = urljoin(url, location)
                tparts = urlsplit(target)
                if tparts.scheme not in ("http", "https"):
                    raise SourceError(f"{self.host}/{repo}: redirect to a non-HTTP URL")
                if tparts.scheme == "http" and urlsplit(url).scheme == "https":
                    raise SourceError(
                        f"{self.host}/{repo}: refusing a redirect from https to plain http "
                        f"({tparts.netloc})"
                    )
                _debug("redirected to %s", tparts.netloc)
                url = target
                if resp.status_code == 303:
                    method, data = "GET", None
                continue
            return resp

    # -- manifests ---------------------------------------------------------------------------

    def _read_limited(self, resp: Response, limit: int, what: str) -> bytes:
        length = resp.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > limit:
            resp.close()
            raise SourceError(f"{what}: larger than {limit} bytes")
        buf = bytearray()
        try:
            for chunk in resp.iter_content(64 * 1024):
                buf += chunk
                if len(buf) > limit:
                    raise SourceError(f"{what}: larger than {limit} bytes")
        except _STREAM_ERRORS as exc:
            raise _BrokenBody(f"{what}: download failed ({_short(exc)})") from None
        finally:
            resp.close()
        return bytes(buf)

    def _get_small(
        self,
        path: str,
        *,
        repo: str,
        limit: int,
        what: str,
        check: Callable[[Response], None],
        headers: Mapping[str, str] | None = None,
    ) -> tuple[Response, bytes]:
        """GET a bounded document; a body broken off mid-way is fetched again (bounded)."""
        attempt = 0
        while True:
            resp = self.request("GET", path, repo=repo, headers=headers, stream=True)
            check(resp)
            try:
                return resp, self._read_limited(resp, limit, what)
            except _BrokenBody as exc:
                attempt += 1
                if attempt >= self.retry.attempts:
                    raise SourceError(f"{exc} after {attempt} tries") from None
                self.stats["retries"] += 1
                self._sleep(self.retry.delay(attempt - 1))

    def get_manifest(self, repo: str, ref: str, limit: int) -> tuple[bytes, str, str]:
        """Fetch a manifest or index: (bytes, media type, digest), the digest verified."""
        what = f"{self.host}/{repo}:{ref}" if ":" not in ref else f"{self.host}/{repo}@{ref}"

        def check(resp: Response) -> None:
            if resp.status_code == 404:
                code = _error_code(resp)
                resp.close()
                if code == "NAME_UNKNOWN":
                    raise SourceError(f"{self.host}/{repo}: repository not found")
                raise SourceError(f"{what}: manifest not found (no such tag or digest)")
            if resp.status_code != 200:
                detail = _registry_errors(resp)
                resp.close()
                raise SourceError(
                    f"{what}: manifest request failed with HTTP {resp.status_code}"
                    + (f" [{detail}]" if detail else "")
                )

        resp, data = self._get_small(
            f"/v2/{repo}/manifests/{ref}",
            repo=repo,
            limit=limit,
            what=f"{what}: manifest",
            check=check,
            headers={"Accept": MANIFEST_ACCEPT},
        )
        header_digest = resp.headers.get("Docker-Content-Digest")
        ctype = (resp.headers.get("Content-Type") or "").split(";", 1)[0].strip()
        if ref.startswith(("sha256:", "sha512:")):
            algo = ref.split(":", 1)[0]
            digest = _digest_of(data, algo)
            if digest != ref:
                raise SourceError(
                    f"{what}: manifest digest mismatch (asked for {ref}, content is {digest})"
                )
        else:
            digest = _digest_of(data)
            if header_digest and header_digest.startswith("sha256:") and header_digest != digest:
                raise SourceError(
                    f"{what}: registry says the manifest is {header_digest[:19]}… but its "
                    f"content hashes to {digest[:19]}…"
                )
        return data, ctype, digest

    def resolve_digest(self, repo: str, ref: str) -> str:
        """The digest a tag (or digest) points at right now, without downloading layers."""
        resp = self.request(
            "HEAD", f"/v2/{repo}/manifests/{ref}", repo=repo, headers={"Accept": MANIFEST_ACCEPT}
        )
        resp.close()
        if resp.status_code == 404:
            raise SourceError(f"{self.host}/{repo}:{ref}: manifest not found")
        header = resp.headers.get("Docker-Content-Digest")
        if resp.status_code == 200 and header:
            return check_digest(header, f"{self.host}/{repo}:{ref}: Docker-Content-Digest")
        # Some registries omit the header (or refuse HEAD): hash the manifest itself.
        _data, _ctype, digest = self.get_manifest(repo, ref, 8 * 1024 * 1024)
        return digest

    # -- blobs -------------------------------------------------------------------------------

    def get_blob_bytes(self, repo: str, digest: str, limit: int, what: str) -> bytes:
        """A small blob (a config) read into memory and checked against its digest."""

        def check(resp: Response) -> None:
            if resp.status_code == 404:
                resp.close()
                raise SourceError(f"{self.host}/{repo}: {what} blob {digest[:19]}… not found")
            if resp.status_code != 200:
                resp.close()
                raise SourceError(
                    f"{self.host}/{repo}: {what} blob request failed with HTTP {resp.status_code}"
                )

        _resp, data = self._get_small(
            f"/v2/{repo}/blobs/{digest}",
            repo=repo,
            limit=limit,
            what=f"{self.host}/{repo}: {what}",
            check=check,
        )
        got = _digest_of(data, digest.split(":", 1)[0])
        if got != digest:
            raise SourceError(
                f"{self.host}/{repo}: {what} digest mismatch (expected {digest}, got {got})"
            )
        return data

    def open_blob(self, repo: str, digest: str, size: int | None, what: str) -> BinaryIO:
        """A streaming reader of one blob that resumes with ``Range`` when the connection breaks."""
        return io.BufferedReader(_BlobStream(self, repo, digest, size, what), 1 << 20)

    def blob_exists(self, repo: str, digest: str, actions: str = "pull") -> int | None:
        """HEAD a blob: its size when the repository has it, else None."""
        resp = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", repo=repo, actions=actions)
        resp.close()
        if resp.status_code == 200:
            length = resp.headers.get("Content-Length", "")
            return int(length) if length.isdigit() else 0
        if resp.status_code == 404:
            return None
        raise SourceError(f"{self.host}/{repo}: HEAD blob answered HTTP {resp.status_code}")

    # -- tags --------------------------------------------------------------------------------

    def list_tags(self, repo: str, page_size: int | None = None) -> list[str]:
        """Every tag of ``repo``, following ``Link: <...>; rel="next"`` pagination."""
        url = f"/v2/{repo}/tags/list" + (f"?n={page_size}" if page_size else "")
        tags: list[str] = []

        def check(resp: Response) -> None:
            if resp.status_code == 404:
                resp.close()
                raise SourceError(f"{self.host}/{repo}: repository not found")
            if resp.status_code != 200:
                resp.close()
                raise SourceError(
                    f"{self.host}/{repo}: tag list failed with HTTP {resp.status_code}"
                )

        for _page in range(_MAX_TAG_PAGES):
            resp, data = self._get_small(
                url,
                repo=repo,
                limit=64 * 1024 * 1024,
                what=f"{self.host}/{repo}: tag list",
                check=check,
                headers={"Accept": "application/json"},
            )
            link = resp.headers.get("Link")
            doc = load_json_object(data, f"{self.host}/{repo}: tag list")
            page = doc.get("tags") or []
            if not isinstance(page, list) or not all(isinstance(t, str) for t in page):
                raise SourceError(f"{self.host}/{repo}: malformed tag list")
            tags.extend(page)
            if len(tags) > _MAX_TAGS:
                raise SourceError(f"{self.host}/{repo}: more than {_MAX_TAGS} tags")
            m = _LINK_NEXT_RE.search(link or "")
            if not m or not page:
                return tags
            nxt = urljoin(self.base + url if url.startswith("/") else url, m.group(1))
            if urlsplit(nxt).netloc != self.netloc:
                raise SourceError(f"{self.host}/{repo}: tag list pagination leaves the registry")
            url = nxt
        raise SourceError(f"{self.host}/{repo}: more than {_MAX_TAG_PAGES} pages of tags")


class _BlobStream(io.RawIOBase):
    """Raw bytes of one blob; checks the length and resumes a broken download."""

    def __init__(
        self, client: RegistryClient, repo: str, digest: str, size: int | None, what: str
    ) -> None:
        super().__init__()
        self._client = client
        self._repo = repo
        self._digest = digest
        self._size = size
        self._what = what
        self._pos = 0
        self._resumes = 0
        self._resp: Response | None = None
        self._connect()

    def readable(self) -> bool:
        """Always readable."""
        return True

    def _connect(self) -> None:
        headers = {"Range": f"bytes={self._pos}-"} if self._pos else {}
        resp = self._client.request(
            "GET",
            f"/v2/{self._repo}/blobs/{self._digest}",
            repo=self._repo,
            headers=headers,
            stream=True,
        )
        status = resp.status_code
        if status == 404:
            resp.close()
            raise LayerError(f"{self._what}: blob not found in {self._client.host}/{self._repo}")
        skip = 0
        if status == 416 and self._pos and self._size is not None:
            resp.close()
            raise LayerError(
                f"{self._what}: blob ends at byte {self._pos} but the manifest declares "
                f"{self._size} bytes"
            )
        if status == 206 and self._pos:
            crange = resp.headers.get("Content-Range", "")
            m = re.match(r"bytes (\d+)-", crange)
            if not m or int(m.group(1)) != self._pos:
                resp.close()
                raise LayerError(f"{self._what}: registry resumed at the wrong offset ({crange})")
        elif status == 200:
            skip = self._pos  # the server ignored Range: discard what we already have
            if self._size is None:
                length = resp.headers.get("Content-Length", "")
                self._size = int(length) if length.isdigit() else None
        else:
            resp.close()
            raise LayerError(
                f"{self._what}: blob request failed with HTTP {status} "
                f"({self._client.host}/{self._repo})"
            )
        self._resp = resp
        while skip:
            got = resp.read(min(skip, 1 << 20))
            if not got:
                raise LayerError(f"{self._what}: blob shorter than the part already read")
            skip -= len(got)

    def _resume(self, reason: str) -> None:
        if self._resp is not None:
            with contextlib.suppress(*_STREAM_ERRORS):
                self._resp.close()
            self._resp = None
        policy = self._client.retry
        if self._resumes >= policy.resumes:
            raise LayerError(
                f"{self._what}: download broke off at byte {self._pos} and did not recover "
                f"after {self._resumes} resumptions ({reason})"
            )
        delay = policy.delay(self._resumes)
        self._resumes += 1
        self._client.stats["resumes"] += 1
        _debug("%s: resuming at byte %d after %s", self._what, self._pos, reason)
        self._client._sleep(delay)
        self._connect()

    def readinto(self, b: Any) -> int:
        """Read into ``b``; 0 at the end of the blob."""
        if self.closed:
            raise ValueError("read from a closed blob stream")
        view = memoryview(b).cast("B")
        while True:
            if self._resp is None:
                self._resume("connection lost")
                continue
            if self._size is not None and self._pos >= self._size:
                try:
                    extra = self._resp.read(1)
                except _STREAM_ERRORS:
                    extra = b""
                if extra:
                    raise LayerError(
                        f"{self._what}: registry sent more than the {self._size} bytes the "
                        "manifest declares"
                    )
                return 0
            want = len(view)
            if self._size is not None:
                want = min(want, self._size - self._pos)
            try:
                data = self._resp.read(want)
            except _STREAM_ERRORS as exc:
                self._resume(_short(exc))
                continue
            if not data:
                if self._size is None:
                    return 0
                self._resume(f"stream ended at byte {self._pos} of {self._size}")
                continue
            n = len(data)
            view[:n] = data
            self._pos += n
            return n

    def close(self) -> None:
        """Close the HTTP response."""
        if self._resp is not None:
            with contextlib.suppress(*_STREAM_ERRORS):
                self._resp.close()
            self._resp = None
        super().close()


def _load_manifest(
    client: RegistryClient, ref: Reference, options: SourceOptions
) -> tuple[dict[str, Any], str]:
    """Fetch the image manifest for ``ref``, walking through an index for the platform."""
    repo = ref.repository
    target = ref.ref
    for _depth in range(_MAX_INDEX_DEPTH):
        data, ctype, digest = client.get_manifest(repo, target, options.max_metadata_bytes)
        what = f"{ref.name}@{digest[:19]}"
        doc = load_json_object(data, f"{what}: manifest")
        media = doc.get("mediaType") if isinstance(doc.get("mediaType"), str) else ctype
        if media in _SCHEMA1_TYPES or doc.get("schemaVersion") == 1:
            raise SourceError(f"{what}: Docker schema 1 manifests are not supported")
        if media in INDEX_TYPES or ("manifests" in doc and "layers" not in doc):
            chosen = select_manifest(doc, options.platform, str(ref))
            target = check_digest(chosen.get("digest"), f"{what}: index entry")
            continue
        if media and media not in MANIFEST_TYPES and "layers" not in doc:
            raise SourceError(f"{what}: unsupported manifest media type {media[:80]}")
        return doc, digest
    raise SourceError(f"{ref}: indexes nested too deeply")


@dataclass(frozen=True, slots=True)
class RegistrySource:
    """An image in a registry, read over the distribution API.

    ``creds`` None means: look them up (environment, docker config), else anonymous.
    ``insecure`` is Docker's "insecure registry": TLS without verification when the
    registry speaks it, else plain http (for a localhost test registry). ``ca_cert``
    trusts a private CA bundle instead (verification stays on).
    """

    ref: str
    options: SourceOptions = field(default_factory=SourceOptions)
    creds: Credentials | None = None
    insecure: bool = False
    ca_cert: str | None = None
    retry: RetryPolicy | None = None
    lookup_credentials: bool = True

    @contextlib.contextmanager
    def _open(self) -> Iterator[Image]:
        reference = parse_reference(self.ref)
        creds = self.creds
        if creds is None and self.lookup_credentials:
            creds = resolve_credentials(reference.registry)
        client = RegistryClient(
            reference.api_host,
            creds=creds,
            insecure=self.insecure,
            ca_cert=self.ca_cert,
            retry=self.retry,
        )
        try:
            yield _open_image(client, reference, self.ref, self.options)
        finally:
            client.close()

    def open(self) -> contextlib.AbstractContextManager[Image]:
        """Resolve the manifest and config; layers stream from the registry when opened."""
        return self._open()


def _open_image(
    client: RegistryClient, reference: Reference, shown: str, options: SourceOptions
) -> Image:
    repo = reference.repository
    manifest, manifest_digest = _load_manifest(client, reference, options)
    what = str(reference)
    layers = manifest_layers(manifest, what)
    cfg_digest = manifest_config(manifest, what)
    cfg_bytes = client.get_blob_bytes(repo, cfg_digest, options.max_metadata_bytes, "config")
    config = load_json_object(cfg_bytes, f"{what}: config")
    sizes: list[int | None] = []
    media: list[str | None] = []
    digests: list[str | None] = []
    for layer in layers:
        size = layer.get("size")
        sizes.append(size if isinstance(size, int) and size >= 0 else None)
        mt = layer.get("mediaType")
        media.append(mt if isinstance(mt, str) else None)
        digests.append(layer["digest"])
    info = build_image_info(
        reference=shown,
        manifest_digest=manifest_digest,
        config_digest=cfg_digest,
        config=config,
        layer_digests=digests,
        layer_sizes=sizes,
        media_types=media,
        source_kind="registry",
    )
    blobs = []
    for i, li in enumerate(info.layers):
        digest = digests[i]
        assert digest is not None
        label = f"layer {i} ({digest[:19]})"

        def opener(d: str = digest, s: int | None = sizes[i], w: str = label) -> BinaryIO:
            return client.open_blob(repo, d, s, w)

        blobs.append(
            LayerBlob(
                index=i,
                digest=digest,
                diff_id=li.diff_id,
                size=sizes[i],
                media_type=media[i],
                open=opener,
            )
        )
    return Image(info=info, blobs=tuple(blobs))


def client_for(
    reference: Reference,
    *,
    creds: Credentials | None = None,
    insecure: bool = False,
    ca_cert: str | None = None,
    retry: RetryPolicy | None = None,
    lookup_credentials: bool = True,
) -> RegistryClient:
    """A RegistryClient for the registry of ``reference`` (credentials looked up if None)."""
    if creds is None and lookup_credentials:
        creds = resolve_credentials(reference.registry)
    return RegistryClient(
        reference.api_host, creds=creds, insecure=insecure, ca_cert=ca_cert, retry=retry
    )


def list_tags(
    repo: str,
    *,
    creds: Credentials | None = None,
    insecure: bool = False,
    ca_cert: str | None = None,
    page_size: int | None = None,
) -> list[str]:
    """All tags of ``repo`` (``host/name``; Docker Hub names are normalised)."""
    reference = parse_reference(repo, default_tag=None)
    with client_for(reference, creds=creds, insecure=insecure, ca_cert=ca_cert) as client:
        return client.list_tags(reference.repository, page_size)


def resolve_digest(
    ref: str,
    *,
    creds: Credentials | None = None,
    insecure: bool = False,
    ca_cert: str | None = None,
) -> str:
    """The manifest (or index) digest that ``ref`` points at now."""
    reference = parse_reference(ref)
    with client_for(reference, creds=creds, insecure=insecure, ca_cert=ca_cert) as client:
        return client.resolve_digest(reference.repository, reference.ref)
