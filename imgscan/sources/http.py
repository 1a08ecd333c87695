"""A small HTTP/1.1 client on the standard library for the registry source.

Keep-alive (one idle connection per scheme, host, port, TLS setting and proxy),
TLS verified against the system store (``ssl`` loaded only when https is used),
proxies from the environment (``HTTP(S)_PROXY``, ``ALL_PROXY``, ``NO_PROXY``),
raw bodies (no Content-Encoding decoding: blobs are digested byte for byte) and
errors as a small ``OSError`` hierarchy. Redirects, auth and retries are the
caller's business (see :mod:`imgscan.sources.registry`).
"""

from __future__ import annotations

import base64
import http.client
import os
import select
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

from imgscan.errors import ConfigError

if TYPE_CHECKING:
    import ssl

__all__ = [
    "Headers",
    "Proxy",
    "ProxyAuthError",
    "ProxyError",
    "Response",
    "Session",
    "TLSError",
    "TransportError",
    "proxy_for",
    "with_params",
]

PRELOAD_LIMIT = 1024 * 1024  # a non-streamed body is read up front up to this size
_DEFAULT_PORTS = {"http": 80, "https": 443}
# A reused keep-alive connection that fails like this was closed by the server meanwhile.
_STALE_ERRORS = (
    http.client.RemoteDisconnected,
    http.client.BadStatusLine,
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
)


class TransportError(OSError):
    """A request could not be sent or its answer not read (network, protocol, timeout)."""


class TLSError(TransportError):
    """The TLS handshake failed (certificate verification included)."""


class ProxyError(TransportError):
    """The proxy could not be reached or would not forward the request."""


class ProxyAuthError(ProxyError):
    """The proxy demanded credentials (HTTP 407) or rejected the ones given."""


# -- proxies ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Proxy:
    """An http:// proxy taken from the environment; ``auth`` is a Proxy-Authorization value."""

    host: str
    port: int
    variable: str  # the environment variable it came from, for messages
    auth: str | None = None

    @property
    def shown(self) -> str:
        """``host:port`` (never the credentials)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _env(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """The (variable, value) of ``name``: the lowercase spelling first, as curl and requests."""
    for var in (name.lower(), name.upper()):
        value = environ.get(var, "").strip()
        if value:
            return var, value
    return None


def _redacted(url: str) -> str:
    """``url`` with any ``user:pass@`` replaced, for error messages."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    return (f"{scheme}://" if sep else "") + netloc + slash + path


def _parse_proxy(var: str, value: str) -> Proxy:
    url = value if "://" in value else f"http://{value}"
    shown = f"{var}={_redacted(value)[:200]}"
    scheme = url.split("://", 1)[0].lower()
    if scheme != "http":
        kind = "socks" if scheme.startswith("socks") else f"{scheme}://"
        raise ConfigError(
            f"{shown}: {kind} proxies are not supported; use an http:// proxy "
            "(https requests go through it with CONNECT)"
        )
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or 80
    except ValueError:
        host, port = None, 0
    if not host:
        raise ConfigError(f"{shown}: not a usable proxy URL")
    auth = None
    if parts.username is not None or parts.password is not None:
        pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        auth = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    return Proxy(host, port, var, auth)


def _is_ip(host: str) -> bool:
    host = host.strip("[]")
    if not host:
        return False
    if ":" in host:
        return all(c in "0123456789abcdef:." for c in host)
    return all(c in "0123456789." for c in host)


def _bypassed(no_proxy: str, host: str, port: int) -> bool:
    """Whether ``NO_PROXY`` (comma list: ``*``, domains, ``host:port``, IPs, CIDRs) covers host."""
    host = host.lower().rstrip(".")
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        if entry.startswith("["):  # [::1]:5000 or [::1]
            addr, _, rest = entry[1:].partition("]")
            eport = rest[1:] if rest.startswith(":") else ""
        elif entry.count(":") >= 2:  # a bare IPv6 address or network
            addr, eport = entry, ""
        else:
            addr, _, eport = entry.partition(":")
        if eport and eport != str(port):
            continue
        if "/" in addr or _is_ip(addr):
            if _is_ip(host) and _ip_match(addr, host):
                return True
            continue
        name = addr.lstrip("*").lstrip(".").rstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def _ip_match(addr: str, host: str) -> bool:
    import ipaddress  # only when NO_PROXY names addresses and the target is one

    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(addr, strict=False)
    except ValueError:
        return False


def proxy_for(scheme: str, host: str, port: int, environ: Mapping[str, str]) -> Proxy | None:
    """The proxy the environment asks for to reach ``scheme://host:port`` (None: direct)."""
    found = _env(environ, f"{scheme}_proxy") or _env(environ, "all_proxy")
    if found is None:
        return None
    no_proxy = _env(environ, "no_proxy")
    if no_proxy and _bypassed(no_proxy[1], host, port):
        return None
    return _parse_proxy(*found)


def with_params(url: str, params: Sequence[tuple[str, str]]) -> str:
    """``url`` with ``params`` url-encoded and appended to any query it already has."""
    if not params:
        return url
    parts = urlsplit(url)
    extra = urlencode(list(params))
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, parts.fragment))


# -- TLS -------------------------------------------------------------------------------------


def _env_bundle(environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(``VAR=path`` for messages, path) of a CA bundle named the way requests read it."""
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        value = environ.get(var, "").strip()
        if value:
            return f"{var}={value}", value
    return None


def _tls_context(verify: bool | str, environ: Mapping[str, str]) -> ssl.SSLContext:
    """A client context: verified against the system store (or a CA file: ``--ca-cert``,
    else ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` as requests honoured them), or not at
    all."""
    import ssl

    if verify is False:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    bundle = (f"--ca-cert {verify}", verify) if isinstance(verify, str) else _env_bundle(environ)
    if bundle is not None:
        shown, cafile = bundle
        try:
            return ssl.create_default_context(cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{shown}: not a usable CA bundle ({exc})") from None
    ctx = ssl.create_default_context()
    if not _system_store_present(ssl.get_default_verify_paths()):
        try:
            import certifi  # the bundle requests users relied on, when the system has none
        except ImportError:
            return ctx
        ctx.load_verify_locations(cafile=certifi.where())
    return ctx


def _system_store_present(paths: Any) -> bool:
    if paths.cafile and os.path.isfile(paths.cafile):
        return True
    capath = paths.capath
    try:
        return bool(capath and os.path.isdir(capath) and os.listdir(capath))
    except OSError:
        return False


# -- responses -------------------------------------------------------------------------------


class Headers:
    """Response headers with case-insensitive ``get`` (repeated headers joined by ``, ``)."""

    __slots__ = ("_msg",)

    def __init__(self, msg: http.client.HTTPMessage) -> None:
        self._msg = msg

    @overload
    def get(self, name: str) -> str | None: ...

    @overload
    def get(self, name: str, default: str) -> str: ...

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of header ``name`` or ``default``."""
        values = self._msg.get_all(name)
        if not values:
            return default
        return ", ".join(str(v) for v in values)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._msg

    def items(self) -> list[tuple[str, str]]:
        """All (name, value) pairs as received."""
        return [(k, str(v)) for k, v in self._msg.items()]


class Response:
    """One answer; the body is read raw and on demand, then the connection goes back to the pool."""

    def __init__(
        self,
        raw: http.client.HTTPResponse,
        conn: http.client.HTTPConnection,
        release: Callable[[http.client.HTTPConnection], None],
        method: str,
    ) -> None:
        self._raw = raw
        self._conn: http.client.HTTPConnection | None = conn
        self._release = release
        self._method = method
        self._buffer = b""  # body bytes read ahead (preload, body())
        self._content: bytes | None = None
        self._done = False
        self.status_code: int = raw.status
        self.reason: str = raw.reason
        self.headers = Headers(raw.msg)

    def _read_raw(self, n: int) -> bytes:
        if self._done:
            return b""
        try:
            data = self._raw.read(n)
        except http.client.IncompleteRead as exc:
            self._discard()
            raise TransportError(
                f"IncompleteRead({len(exc.partial)} bytes read, {exc.expected} more expected)"
            ) from None
        except http.client.HTTPException as exc:
            self._discard()
            raise TransportError(f"Connection broken: {type(exc).__name__}: {exc}") from None
        except TimeoutError:
            self._discard()
            raise TransportError("Read timed out") from None
        except OSError as exc:
            self._discard()
            if isinstance(exc, TransportError):
                raise
            raise TransportError(" ".join(str(exc).split()) or type(exc).__name__) from None
        if not data and n:
            left = self._raw.length
            if left and not self._raw.chunked:
                self._discard()
                raise TransportError(f"IncompleteRead(connection closed, {left} more expected)")
            self._finish()
        elif self._raw.isclosed():
            self._finish()
        return data

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` raw body bytes (all with -1); b"" at the end."""
        if self._buffer:
            if n < 0 or n >= len(self._buffer):
                data, self._buffer = self._buffer, b""
                if n < 0:
                    data += self.read()
                return data
            data, self._buffer = self._buffer[:n], self._buffer[n:]
            return data
        if n < 0:
            parts = []
            while chunk := self._read_raw(1 << 20):
                parts.append(chunk)
            return b"".join(parts)
        return self._read_raw(n)

    def iter_content(self, n: int = 64 * 1024) -> Iterator[bytes]:
        """The body in pieces of up to ``n`` bytes."""
        while chunk := self.read(n):
            yield chunk

    @property
    def content(self) -> bytes:
        """The whole body (read once, then kept)."""
        if self._content is None:
            self._content = self.read()
        return self._content

    def body(self, limit: int) -> bytes:
        """The first ``limit`` bytes of the body, kept for later calls (error messages)."""
        if self._content is not None:
            return self._content[:limit]
        while len(self._buffer) < limit and not self._done:
            chunk = self._read_raw(limit - len(self._buffer))
            if not chunk:
                break
            self._buffer += chunk
        return self._buffer[:limit]

    def _preload(self, limit: int) -> None:
        """Read a small body up front so the connection is free again (non-streamed requests)."""
        length = self._raw.length
        if length is not None and length > limit:
            return
        self.body(limit)
        if self._done:  # the whole body is here; read() still hands it out from the buffer
            self._content = self._buffer

    def _finish(self) -> None:
        """The body was read to its end: the connection may serve the next request."""
        if self._done:
            return
        self._done = True
        conn, self._conn = self._conn, None
        self._raw.close()
        if conn is not None:
            self._release(conn)

    def _discard(self) -> None:
        """Give up on the body: the connection is closed, not reused."""
        self._done = True
        conn, self._conn = self._conn, None
        self._raw.close()
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Release the connection; an unfinished body is not drained (the connection is dropped)."""
        if self._done:
            return
        if self._method == "HEAD" or self._raw.length == 0 or self._raw.isclosed():
            try:
                self._read_raw(1)
            except OSError:
                return
            if self._done:
                return
        self._discard()

    @property
    def finished(self) -> bool:
        """Whether the body has been read to its end (or given up)."""
        return self._done

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the session -----------------------------------------------------------------------------


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle keep-alive connection was closed by the peer (readable = EOF or junk)."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _proxy_auth_error(proxy: Proxy | None, status: str) -> ProxyAuthError:
    via = f"proxy {proxy.shown} ({proxy.variable})" if proxy else "the proxy"
    if proxy is not None and proxy.auth:
        return ProxyAuthError(f"{via} rejected the proxy credentials (HTTP {status})")
    return ProxyAuthError(
        f"{via} demands proxy credentials (HTTP {status}); put user:password in the proxy URL"
    )


def _from_proxy(resp: Response) -> bool:
    """Whether a 401/407 answer to an absolute-URI request is the proxy's own refusal.

    407 is the standard answer. A registry's 401 always carries its own
    ``WWW-Authenticate`` challenge (distribution spec), so a 401 without one is the
    proxy's. tinyproxy (1.11) answers wrong credentials with a 401 *and* a challenge of
    its own; its ``Server`` header tells it apart.
    """
    if resp.status_code not in (401, 407):
        return False
    if resp.status_code == 407 or "Proxy-Authenticate" in resp.headers:
        return True
    if "WWW-Authenticate" not in resp.headers:
        return True
    return resp.headers.get("Server", "").lower().startswith("tinyproxy")


def _wrap(exc: BaseException, phase: str, proxy: Proxy | None) -> TransportError:
    """One of our exceptions for a failure of ``phase`` ("connect" or "read")."""
    ssl_mod = sys.modules.get("ssl")
    text = " ".join(str(exc).split())
    if text.startswith("Tunnel connection failed"):
        code = text.split(":", 1)[1].strip()
        if code[:3] in ("401", "407"):
            return _proxy_auth_error(proxy, code)
        via = f"proxy {proxy.shown} ({proxy.variable})" if proxy else "proxy"
        return ProxyError(f"{via} refused the CONNECT tunnel (HTTP {code})")
    if ssl_mod is not None and isinstance(exc, ssl_mod.SSLError):
        return TLSError(text or type(exc).__name__)
    if isinstance(exc, TimeoutError):
        text = "Connect timed out" if phase == "connect" else "Read timed out"
    elif isinstance(exc, http.client.RemoteDisconnected):
        text = f"Connection aborted: {text}"
    elif isinstance(exc, http.client.HTTPException):
        text = f"Connection broken: {type(exc).__name__}: {text}"
    text = text or type(exc).__name__
    if proxy is not None and phase == "connect":
        return ProxyError(f"via proxy {proxy.shown} ({proxy.variable}): {text}")
    return TransportError(text)


class Session:
    """Pooled HTTP(S) connections with a fixed User-Agent; proxies from the environment."""

    def __init__(
        self,
        user_agent: str,
        *,
        trust_env: bool = True,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.user_agent = user_agent
        self.trust_env = trust_env
        self._environ = environ
        self._idle: dict[tuple[Any, ...], http.client.HTTPConnection] = {}
        self._contexts: dict[bool | str, ssl.SSLContext] = {}
        self._lock = threading.Lock()
        self.stats = {"connections": 0, "reused": 0}

    def proxy_for(self, scheme: str, host: str, port: int) -> Proxy | None:
        """The proxy used for ``scheme://host:port`` (None: a direct connection)."""
        if not self.trust_env:
            return None
        env = self._environ if self._environ is not None else os.environ
        return proxy_for(scheme, host, port, env)

    def _context(self, verify: bool | str) -> ssl.SSLContext:
        with self._lock:
            ctx = self._contexts.get(verify)
        if ctx is None:
            env = self._environ if self._environ is not None else os.environ
            ctx = _tls_context(verify, env if self.trust_env else {})
            with self._lock:
                self._contexts[verify] = ctx
        return ctx

    def _new_connection(
        self,
        scheme: str,
        host: str,
        port: int,
        proxy: Proxy | None,
        verify: bool | str,
        timeout: float,
    ) -> http.client.HTTPConnection:
        self.stats["connections"] += 1
        if scheme == "https":
            ctx = self._context(verify)
            if proxy is None:
                return http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                proxy.host, proxy.port, timeout=timeout, context=ctx
            )
            tunnel = {"Proxy-Authorization": proxy.auth} if proxy.auth else None
            conn.set_tunnel(host, port, headers=tunnel)
            return conn
        if proxy is None:
            return http.client.HTTPConnection(host, port, timeout=timeout)
        return http.client.HTTPConnection(proxy.host, proxy.port, timeout=timeout)

    def _checkout(self, key: tuple[Any, ...]) -> http.client.HTTPConnection | None:
        with self._lock:
            conn = self._idle.pop(key, None)
        if conn is not None and _dropped(conn):
            conn.close()
            return None
        return conn

    def _releaser(self, key: tuple[Any, ...]) -> Callable[[http.client.HTTPConnection], None]:
        def release(conn: http.client.HTTPConnection) -> None:
            if conn.sock is None:  # the server said Connection: close
                conn.close()
                return
            with self._lock:
                old = self._idle.pop(key, None)
                self._idle[key] = conn
            if old is not None:
                old.close()

        return release

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        stream: bool = False,
        verify: bool | str = True,
        timeout: float = 60.0,
    ) -> Response:
        """Send one request (no redirects followed); the body streams when ``stream``."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise ValueError(f"not an http(s) URL: {scheme}://")
        try:
            host, port = parts.hostname, parts.port or _DEFAULT_PORTS[scheme]
        except ValueError:
            raise TransportError(f"invalid port in URL {parts.netloc[:100]!r}") from None
        if not host:
            raise TransportError("URL without a host")
        proxy = self.proxy_for(scheme, host, port)
        verify_key: bool | str = verify if scheme == "https" else True
        key = (scheme, host, port, verify_key, proxy)
        target = urlunsplit(("", "", parts.path or "/", parts.query, ""))
        hdrs = {"User-Agent": self.user_agent, "Accept": "*/*"}
        hdrs.update(headers or {})
        if proxy is not None and scheme == "http":
            target = urlunsplit((scheme, parts.netloc.rpartition("@")[2], target, "", ""))
            if proxy.auth:
                hdrs["Proxy-Authorization"] = proxy.auth
        conn: http.client.HTTPConnection | None = None
        for _try in range(2):
            conn = self._checkout(key)
            reused = conn is not None
            if conn is None:
                conn = self._new_connection(scheme, host, port, proxy, verify_key, timeout)
            else:
                self.stats["reused"] += 1
                conn.timeout = timeout
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
            phase = "connect"
            try:
                if conn.sock is None:
                    conn.connect()
                phase = "read"
                conn.request(method, target, body=data, headers=hdrs)
                raw = conn.getresponse()
            except Exception as exc:
                conn.close()
                if reused and phase == "read" and isinstance(exc, _STALE_ERRORS):
                    continue  # the server dropped the idle connection: once more, fresh
                raise _wrap(exc, phase, proxy) from None
            break
        assert conn is not None
        resp = Response(raw, conn, self._releaser(key), method)
        if proxy is not None and scheme == "http" and _from_proxy(resp):
            resp.close()
            raise _proxy_auth_error(proxy, f"{resp.status_code} {resp.reason}".strip())
        if not stream:
            resp._preload(PRELOAD_LIMIT)
        return resp

    def close(self) -> None:
        """Close every idle connection."""
        with self._lock:
            idle, self._idle = list(self._idle.values()), {}
        for conn in idle:
            conn.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
