"""A tiny token server for docker-registry's ``auth.token`` mode (tests only).

It answers ``GET /token?service=...&scope=repository:NAME:ACTIONS`` with a JWT
signed (RS256, via the ``openssl`` CLI) by a throw-away key whose self-signed
certificate is the registry's ``rootcertbundle``. The JWT header names the key by
its libtrust key id, which is how distribution 2.x finds the verifying key.
Per-user grants decide which actions on which repositories a token carries; a
wrong password gets 401, an unknown repository an empty grant (the registry then
answers 401 ``insufficient_scope``).
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import secrets
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def libtrust_key_id(spki_der: bytes) -> str:
    """The libtrust key id of a public key: base32 of sha256(SPKI)[:30] in groups of four."""
    s = base64.b32encode(hashlib.sha256(spki_der).digest()[:30]).decode().rstrip("=")
    return ":".join(s[i : i + 4] for i in range(0, len(s), 4))


def self_signed_cert(
    workdir: Path, name: str, cn: str, extensions: tuple[str, ...] = ()
) -> tuple[Path, Path]:
    """An RSA key and self-signed certificate from openssl: (``name``-key.pem, -cert.pem)."""
    key, cert = workdir / f"{name}-key.pem", workdir / f"{name}-cert.pem"
    ext = [arg for e in extensions for arg in ("-addext", e)]
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            f"/CN={cn}",
            *ext,
        ],
        check=True,
        capture_output=True,
    )
    return key, cert


def make_signing_cert(workdir: Path, cn: str = "imgscan-test-token-issuer") -> tuple[Path, Path]:
    """A fresh RSA key and self-signed certificate (key.pem, cert.pem) in ``workdir``."""
    return self_signed_cert(workdir, "token", cn)


@dataclass
class Grant:
    """A user's password and the actions allowed per repository glob."""

    password: str
    repos: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


class TokenServer:
    """Issue registry bearer tokens on 127.0.0.1 (start/stop or use as a context manager)."""

    def __init__(
        self,
        workdir: Path,
        *,
        service: str = "imgscan-test-registry",
        issuer: str = "imgscan-test-issuer",
        users: Mapping[str, Grant] | None = None,
        anonymous: Mapping[str, tuple[str, ...]] | None = None,
        ttl: int = 300,
    ) -> None:
        self.workdir = workdir
        self.service = service
        self.issuer = issuer
        self.users = dict(users or {})
        self.anonymous = dict(anonymous or {})
        self.ttl = ttl
        self.key, self.cert = make_signing_cert(workdir)
        der = subprocess.run(
            ["openssl", "pkey", "-in", str(self.key), "-pubout", "-outform", "DER"],
            check=True,
            capture_output=True,
        ).stdout
        self.kid = libtrust_key_id(der)
        self.requests: list[dict[str, object]] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The listening port."""
        assert self._httpd is not None
        return int(self._httpd.server_address[1])

    @property
    def realm(self) -> str:
        """The token endpoint URL for the registry's ``auth.token.realm``."""
        return f"http://127.0.0.1:{self.port}/token"

    def _sign(self, payload: Mapping[str, object]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(payload, separators=(",", ":")).encode())
        )
        sig = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(),
            check=True,
            capture_output=True,
        ).stdout
        return signing_input + "." + _b64url(sig)

    def _allowed(self, rules: Mapping[str, tuple[str, ...]], repo: str) -> set[str]:
        out: set[str] = set()
        for pattern, actions in rules.items():
            if fnmatch.fnmatchcase(repo, pattern):
                out.update(actions)
        return out

    def issue(self, user: str | None, scopes: list[str]) -> str:
        """A signed token for ``user`` (None = anonymous) with the granted part of ``scopes``."""
        rules = self.users[user].repos if user is not None else self.anonymous
        access = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) < 3 or parts[0] != "repository":
                continue
            name, wanted = ":".join(parts[1:-1]), parts[-1].split(",")
            granted = sorted(set(wanted) & self._allowed(rules, name))
            access.append({"type": "repository", "name": name, "actions": granted})
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": self.service,
            "exp": now + self.ttl,
            "nbf": now - 30,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        return self._sign(claims)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return

            def _reply(self, code: int, body: Mapping[str, object]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path != "/token":
                    self._reply(404, {"error": "not found"})
                    return
                query = parse_qsl(parts.query)
                scopes = [v for k, v in query if k == "scope"]
                service = next((v for k, v in query if k == "service"), None)
                auth = self.headers.get("Authorization")
                user: str | None = None
                if auth:
                    scheme, _, value = auth.partition(" ")
                    try:
                        name, _, password = base64.b64decode(value).decode().partition(":")
                    except (ValueError, UnicodeDecodeError):
                        name, password = "", ""
                    grant = server.users.get(name)
                    if scheme.lower() != "basic" or grant is None or grant.password != password:
                        with server._lock:
                            server.requests.append({"user": name, "scopes": scopes, "ok": False})
                        self._reply(401, {"details": "invalid username or password"})
                        return
                    user = name
                if service != server.service:
                    self._reply(400, {"details": "unknown service"})
                    return
                with server._lock:
                    server.requests.append({"user": user, "scopes": scopes, "ok": True})
                token = server.issue(user, scopes)
                self._reply(200, {"token": token, "access_token": token, "expires_in": server.ttl})

        return Handler

    def start(self) -> TokenServer:
        """Listen on a free 127.0.0.1 port in a background thread."""
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
