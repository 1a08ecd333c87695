"""Start and stop a real tinyproxy (Debian ``tinyproxy-bin``) on 127.0.0.1 for tests.

The proxy runs in the foreground (``-d -c CONF``) with a temporary config: a free
port, ``Listen``/``Allow`` 127.0.0.1 only, ``ConnectPort`` for the ports tests
tunnel to, and optionally ``BasicAuth``. ``seen`` parses its log into the
requests it forwarded (``("GET", "http://127.0.0.1:5000/v2/")``,
``("CONNECT", "127.0.0.1:5001")``).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.infra.registry import _die_with_parent, free_port, stop_process_group

TINYPROXY_BIN = os.environ.get("IMGSCAN_TEST_TINYPROXY_BIN", "/usr/bin/tinyproxy")
_REQUEST_RE = re.compile(r"Request \(file descriptor \d+\): (\S+) (\S+) HTTP/")


def tinyproxy_available() -> str | None:
    """None when tinyproxy is installed, else what to install."""
    if os.access(TINYPROXY_BIN, os.X_OK):
        return None
    return "tinyproxy (apt-get install tinyproxy-bin)"


@dataclass
class TinyProxy:
    """One tinyproxy process; ``start()`` blocks until it accepts connections."""

    connect_ports: tuple[int, ...] = ()
    basic_auth: tuple[str, str] | None = None
    port: int = 0
    workdir: Path | None = None
    _proc: subprocess.Popen[bytes] | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None
    _log_offset: int = field(default=0)

    def url(self, user: str | None = None, password: str | None = None) -> str:
        """``http://[user:password@]127.0.0.1:PORT`` for a ``*_PROXY`` variable."""
        cred = f"{user}:{password}@" if user is not None else ""
        return f"http://{cred}127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """Where tinyproxy writes its log."""
        assert self.workdir is not None
        return self.workdir / "tinyproxy.log"

    def _config(self) -> str:
        lines = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            "Timeout 30",
            "MaxClients 50",
            "LogLevel Connect",
            f'LogFile "{self.log_path}"',
            "Allow 127.0.0.1",
            "DisableViaHeader Yes",
        ]
        lines += [f"ConnectPort {p}" for p in self.connect_ports]
        if self.basic_auth is not None:
            lines.append(f"BasicAuth {self.basic_auth[0]} {self.basic_auth[1]}")
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> TinyProxy:
        """Write the config, launch tinyproxy and wait until its port accepts connections."""
        if self.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="imgscan-tinyproxy-")
            self.workdir = Path(self._tmp.name)
        last = ""
        for _attempt in range(3):  # the free port may be taken in between: try again
            self.port = free_port()
            conf = self.workdir / "tinyproxy.conf"
            conf.write_text(self._config())
            out = open(self.workdir / "stdout.log", "ab")  # noqa: SIM115 - handed to the child
            try:
                self._proc = subprocess.Popen(
                    [TINYPROXY_BIN, "-d", "-c", str(conf)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
            finally:
                out.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    last = f"exited with status {self._proc.returncode}"
                    break
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", self.port), timeout=1),
                ):
                    return self
                time.sleep(0.05)
            else:
                last = "timeout"
            self._kill()
        raise RuntimeError(f"tinyproxy did not start: {last}")

    def seen(self) -> list[tuple[str, str]]:
        """(method, target) of every request tinyproxy logged since the last ``forget()``."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return _REQUEST_RE.findall(text[self._log_offset :])

    def forget(self) -> None:
        """Start ``seen()`` afresh from here."""
        try:
            self._log_offset = len(self.log_path.read_text(errors="replace"))
        except FileNotFoundError:
            self._log_offset = 0

    def _kill(self) -> None:
        if self._proc is not None:
            stop_process_group(self._proc)
        self._proc = None

    def stop(self) -> None:
        """Kill tinyproxy and remove its files."""
        self._kill()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> TinyProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
