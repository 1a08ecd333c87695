"""Start and stop real ``docker-registry`` (distribution 2.x) processes for tests.

Three modes, all on 127.0.0.1 with a free port and storage in a temporary dir:

* ``plain``: HTTP, no auth;
* ``basic``: TLS (self-signed cert with SAN 127.0.0.1 + localhost) + htpasswd (bcrypt);
* ``token``: HTTP + bearer tokens from :class:`tests.infra.tokenserver.TokenServer`.

Run ``python -m tests.infra.registry MODE`` to keep one up by hand (see
scripts/registry-dev.sh).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.infra.tokenserver import Grant, TokenServer, self_signed_cert

REGISTRY_BIN = os.environ.get("IMGSCAN_TEST_REGISTRY_BIN", "/usr/bin/docker-registry")
MODES = ("plain", "basic", "token")


def registry_available() -> str | None:
    """None when docker-registry, openssl and htpasswd are all here, else what is missing."""
    missing = [
        name
        for name, path in (
            ("docker-registry", REGISTRY_BIN),
            ("openssl", shutil.which("openssl")),
            ("htpasswd (apache2-utils)", shutil.which("htpasswd")),
        )
        if not path or not os.access(path, os.X_OK)
    ]
    return ", ".join(missing) or None


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGKILL us when the test process dies (no orphans)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def stop_process_group(proc: subprocess.Popen[bytes], timeout: float = 5) -> None:
    """SIGTERM a server started in its own session, SIGKILL it if it lingers, reap it."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_tls_cert(workdir: Path) -> tuple[Path, Path]:
    """A self-signed server certificate for 127.0.0.1 and localhost: (cert.pem, key.pem)."""
    key, cert = self_signed_cert(
        workdir,
        "tls",
        "imgscan-test-registry",
        ("subjectAltName=IP:127.0.0.1,DNS:localhost", "basicConstraints=critical,CA:TRUE"),
    )
    return cert, key


def htpasswd_line(user: str, password: str) -> str:
    """``user:$2y$...`` from ``htpasswd -Bbn`` (bcrypt, as distribution requires)."""
    out = subprocess.run(
        ["htpasswd", "-Bbn", user, password], check=True, capture_output=True, text=True
    ).stdout
    return out.strip()


@dataclass
class RegistryServer:
    """One docker-registry process; ``start()`` blocks until ``/v2/`` answers."""

    mode: str = "plain"
    users: Mapping[str, Grant] = field(default_factory=dict)
    anonymous: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    workdir: Path | None = None
    port: int = 0
    ca_cert: Path | None = None
    token_server: TokenServer | None = None
    _proc: subprocess.Popen[bytes] | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT`` as used in image references."""
        return f"127.0.0.1:{self.port}"

    @property
    def scheme(self) -> str:
        """``https`` in basic mode, ``http`` otherwise."""
        return "https" if self.mode == "basic" else "http"

    @property
    def url(self) -> str:
        """Base URL of the registry."""
        return f"{self.scheme}://{self.host}"

    @property
    def insecure(self) -> bool:
        """Whether clients must talk plain http to it."""
        return self.scheme == "http"

    @property
    def log_path(self) -> Path:
        """Where the registry writes its log."""
        assert self.workdir is not None
        return self.workdir / "registry.log"

    def _config(self) -> str:
        assert self.workdir is not None
        lines = [
            "version: 0.1",
            "log:",
            "  level: info",
            "  accesslog:",
            "    disabled: false",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.workdir / 'data'}",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            "  secret: imgscan-test-not-a-secret",
            "  headers:",
            "    X-Content-Type-Options: [nosniff]",
        ]
        if self.mode == "basic":
            cert, key = make_tls_cert(self.workdir)
            self.ca_cert = cert
            htpasswd = self.workdir / "htpasswd"
            htpasswd.write_text(
                "".join(htpasswd_line(u, g.password) + "\n" for u, g in self.users.items())
            )
            lines += [
                "  tls:",
                f"    certificate: {cert}",
                f"    key: {key}",
                "auth:",
                "  htpasswd:",
                "    realm: imgscan-test",
                f"    path: {htpasswd}",
            ]
        elif self.mode == "token":
            self.token_server = TokenServer(
                self.workdir, users=self.users, anonymous=self.anonymous
            ).start()
            ts = self.token_server
            lines += [
                "auth:",
                "  token:",
                f"    realm: {ts.realm}",
                f"    service: {ts.service}",
                f"    issuer: {ts.issuer}",
                f"    rootcertbundle: {ts.cert}",
            ]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 30.0) -> RegistryServer:
        """Write the config, launch the registry and wait until it answers on /v2/."""
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if self.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"imgscan-registry-{self.mode}-")
            self.workdir = Path(self._tmp.name)
        self.workdir.mkdir(parents=True, exist_ok=True)
        last_error = ""
        for _attempt in range(3):  # the free port may be taken in between: try again
            self.port = free_port()
            cfg = self.workdir / "config.yml"
            cfg.write_text(self._config())
            log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
            try:
                self._proc = subprocess.Popen(
                    [REGISTRY_BIN, "serve", str(cfg)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
            finally:
                log.close()
            ok, last_error = self._wait_ready(timeout)
            if ok:
                return self
            self._kill()
            if self.token_server is not None:
                self.token_server.stop()
                self.token_server = None
        tail = self.log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"docker-registry ({self.mode}) did not start: {last_error}\n{tail}")

    def _wait_ready(self, timeout: float) -> tuple[bool, str]:
        ctx = ssl.create_default_context(cafile=str(self.ca_cert)) if self.ca_cert else None
        deadline = time.monotonic() + timeout
        error = "timeout"
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                return False, f"exited with status {self._proc.returncode}"
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=2, context=ctx) as r:
                    if r.status == 200:
                        return True, ""
            except urllib.error.HTTPError as exc:
                if exc.code == 401:
                    return True, ""
                error = f"HTTP {exc.code}"
            except (OSError, urllib.error.URLError) as exc:
                error = str(exc)
            time.sleep(0.1)
        return False, error

    def _kill(self) -> None:
        if self._proc is not None:
            stop_process_group(self._proc)
        self._proc = None

    def stop(self) -> None:
        """Kill the registry (and its token server) and remove its data."""
        self._kill()
        if self.token_server is not None:
            self.token_server.stop()
            self.token_server = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    """Keep one registry running until Ctrl-C (for local experiments)."""
    mode = argv[0] if argv else "plain"

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)  # `kill`/timeout also stop the registry cleanly
    users = {"dev": Grant("dev-password", {"*": ("pull", "push")})}
    with RegistryServer(mode, users=users) as reg:
        print(f"registry ({mode}) at {reg.url}")
        if reg.ca_cert:
            print(f"CA certificate: {reg.ca_cert}")
        if mode != "plain":
            print("user: dev  password: dev-password")
        if reg.token_server:
            print(f"token realm: {reg.token_server.realm}")
        print(f"data and log: {reg.workdir}")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
