"""A loopback HTTP proxy in front of a real registry that misbehaves on request.

Faults (each keyed by a substring of the request path):

* ``cut_after[s] = n``: send the full headers and ``n`` body bytes, then drop the
  connection - once per entry (the entry is consumed);
* ``cut_every[s] = n``: the same, on every matching response;
* ``corrupt[s]``: flip one byte in the middle of the body (same length);
* ``ignore_range``: answer Range requests with the whole body (200);
* ``redirect_blobs_to``: answer blob GETs with 307 to ``<base><path>``;
* ``require_basic = (user, password)``: demand HTTP basic auth on every request;
* ``fail_status[s] = [codes...]``: answer with these statuses first (one per request);
* ``paginate_tags = n``: serve ``/tags/list`` in pages of ``n`` with ``Link`` headers
  (distribution 2.8 itself ignores ``n``/``last``; 3.x and most services paginate).

Every request is recorded in ``seen`` as (method, path, headers) for assertions.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit

_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}


class FaultProxy:
    """Forward HTTP to ``upstream`` (``http://host:port``) with injected faults."""

    def __init__(self, upstream: str, host: str = "127.0.0.1") -> None:
        parts = urlsplit(upstream)
        assert parts.scheme == "http" and parts.hostname and parts.port
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port
        self.bind_host = host
        self.cut_after: dict[str, int] = {}
        self.cut_every: dict[str, int] = {}
        self.corrupt: set[str] = set()
        self.fail_status: dict[str, list[int]] = {}
        self.ignore_range = False
        self.redirect_blobs_to: str | None = None
        self.require_basic: tuple[str, str] | None = None
        self.paginate_tags: int | None = None
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        """The listening port."""
        assert self._httpd is not None
        return int(self._httpd.server_address[1])

    @property
    def host(self) -> str:
        """``HOST:PORT`` for image references."""
        return f"{self.bind_host}:{self.port}"

    def _take(self, table: dict[str, int], path: str) -> int | None:
        with self._lock:
            for key in list(table):
                if key in path:
                    return table.pop(key)
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def _simple(self, code: int, headers: dict[str, str], body: bytes = b"") -> None:
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _handle(self) -> None:
                path = self.path
                headers = {k: v for k, v in self.headers.items()}
                with proxy._lock:
                    proxy.seen.append((self.command, path, headers))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if proxy.require_basic is not None:
                    want = (
                        "Basic " + base64.b64encode(":".join(proxy.require_basic).encode()).decode()
                    )
                    if self.headers.get("Authorization") != want:
                        self._simple(401, {"WWW-Authenticate": 'Basic realm="faultproxy"'})
                        return
                with proxy._lock:
                    for key, codes in proxy.fail_status.items():
                        if key in path and codes:
                            code = codes.pop(0)
                            break
                    else:
                        code = 0
                if code:
                    self._simple(code, {"Retry-After": "0"}, b"injected failure\n")
                    return
                if (
                    proxy.redirect_blobs_to
                    and self.command == "GET"
                    and "/blobs/sha256:" in path
                    and "/uploads/" not in path
                ):
                    self._simple(307, {"Location": proxy.redirect_blobs_to + path})
                    return
                fwd = {k: v for k, v in headers.items() if k.lower() not in _HOP}
                if proxy.paginate_tags and self.command == "GET" and "/tags/list" in path:
                    self._tags_page(path, fwd)
                    return
                if proxy.ignore_range:
                    fwd.pop("Range", None)
                conn = http.client.HTTPConnection(
                    proxy.upstream_host, proxy.upstream_port, timeout=30
                )
                try:
                    conn.request(self.command, path, body=body, headers=fwd)
                    resp = conn.getresponse()
                    data = resp.read()
                    self.send_response(resp.status)
                    for k, v in resp.getheaders():
                        if k.lower() not in _HOP and k.lower() != "content-length":
                            self.send_header(k, v)
                    if self.command == "HEAD":  # no body: pass the real length through
                        self.send_header("Content-Length", resp.getheader("Content-Length", "0"))
                        self.end_headers()
                        return
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if resp.status in (200, 206) and any(s in path for s in proxy.corrupt):
                        mid = len(data) // 2
                        data = data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1 :]
                    cut = proxy._take(proxy.cut_after, path) if resp.status in (200, 206) else None
                    if cut is None and resp.status in (200, 206):
                        cut = next((n for s, n in proxy.cut_every.items() if s in path), None)
                    if cut is not None and cut < len(data):
                        self.wfile.write(data[:cut])
                        self.wfile.flush()
                        self.connection.shutdown(socket.SHUT_RDWR)
                        self.close_connection = True
                        return
                    self.wfile.write(data)
                finally:
                    conn.close()

            def _tags_page(self, path: str, fwd: dict[str, str]) -> None:
                parts = urlsplit(path)
                query = dict(parse_qsl(parts.query))
                conn = http.client.HTTPConnection(
                    proxy.upstream_host, proxy.upstream_port, timeout=30
                )
                try:
                    conn.request("GET", parts.path, headers=fwd)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                if resp.status != 200:
                    self._simple(resp.status, {"Content-Type": "application/json"}, data)
                    return
                doc = json.loads(data)
                tags = sorted(doc.get("tags") or [])
                if "last" in query:
                    tags = [t for t in tags if t > query["last"]]
                n = int(query.get("n") or proxy.paginate_tags or len(tags))
                page, more = tags[:n], len(tags) > n
                extra = {"Content-Type": "application/json"}
                if more:
                    nxt = f"{parts.path}?{urlencode({'n': n, 'last': page[-1]})}"
                    extra["Link"] = f'<{nxt}>; rel="next"'
                body = json.dumps({"name": doc.get("name"), "tags": page}).encode()
                self._simple(200, extra, body)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        return Handler

    def start(self) -> FaultProxy:
        """Listen on a free port of ``host`` in a background thread."""
        self._httpd = ThreadingHTTPServer((self.bind_host, 0), self._handler())
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
