"""A private Docker engine for the tests: Debian's ``dockerd`` on a unix socket under a temp dir.

It gets its own ``--data-root``, ``--exec-root``, pidfile, config file and containerd
namespaces, no networking (``--iptables=false --ip6tables=false --bridge=none``) and
``nofile=20000:20000`` (the machine's hard limit). The storage driver is the first of
overlay2, vfs that starts and reports itself (override with
``IMGSCAN_DOCKERD_STORAGE_DRIVER``). At the end it is stopped (SIGTERM, then SIGKILL),
leftover mounts are detached and the temp dir is removed.

Builds: the SDK's ``client.images.build(..., network_mode="none")`` (the engine's classic
builder) runs ``COPY`` and ``RUN`` steps on this engine; ``RUN`` needs a base with a static
binary, e.g. ``/bin/busybox`` from Debian's busybox-static. From a shell the same works with
``DOCKER_BUILDKIT=0 docker -H unix://... build --network=none``.

Use ``start_dockerd()`` / ``stop_dockerd()`` directly, ``running_dockerd()`` as a context
manager, or the session-scoped ``dockerd`` fixture (import it into a conftest).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DRIVERS = ("overlay2", "vfs")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
_SUN_PATH_MAX = 100  # sockaddr_un.sun_path is 108 bytes; keep a margin


class DockerdError(Exception):
    """dockerd could not be started here; the message says why (with the end of its log)."""


class DockerdUnavailable(DockerdError):
    """dockerd cannot run on this machine at all (binary absent or not root)."""


@dataclass
class Dockerd:
    """A running private dockerd."""

    host: str  # unix:///.../docker.sock, for --docker-host / DOCKER_HOST / the SDK
    socket: Path
    root: Path  # temp dir holding data-root, exec-root, socket, pidfile and log
    storage_driver: str
    start_seconds: float
    proc: subprocess.Popen[bytes] = field(repr=False)

    @property
    def log(self) -> Path:
        """The daemon's log file."""
        return self.root / "dockerd.log"

    def client(self) -> object:
        """A docker SDK client for this engine (the caller closes it)."""
        import docker

        return docker.DockerClient(base_url=self.host, timeout=120)


def dockerd_binary() -> str | None:
    """Path of the dockerd binary, or None when it is not installed."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/usr/bin:/sbin:/bin"
    return shutil.which("dockerd", path=path)


def _ping(sock: Path, path: str = "/_ping", timeout: float = 2.0) -> tuple[int, bytes] | None:
    """A tiny HTTP/1.0 GET over the unix socket: (status, body), or None when not answering."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(sock))
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None
    return status, body


def _log_tail(log: Path, lines: int = 15) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    keep = [ln for ln in text if "level=info" not in ln and "level=debug" not in ln]
    return "\n".join((keep or text)[-lines:])


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root).rstrip("/") + "/"
    out = []
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 1:
                    mp = parts[1].replace("\\040", " ")
                    if mp == str(root) or mp.startswith(prefix):
                        out.append(mp)
    except OSError:
        return []
    return sorted(out, key=len, reverse=True)


def _detach_mounts(root: Path) -> None:
    for mp in _mounts_under(root):
        subprocess.run(["umount", "-l", mp], check=False, capture_output=True)


def _kill_pidfile(pidfile: Path, expect: str) -> None:
    """SIGKILL the process named in ``pidfile`` if it is alive and is ``expect``."""
    try:
        pid = int(pidfile.read_text().strip())
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if expect.encode() in cmd:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _make_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="imgscan-dockerd-"))
    if len(str(root / "docker.sock")) > _SUN_PATH_MAX:
        shutil.rmtree(root, ignore_errors=True)
        root = Path(tempfile.mkdtemp(prefix="imgscan-dockerd-", dir="/tmp"))
    return root


def _stop_proc(proc: subprocess.Popen[bytes], root: Path, timeout: float) -> None:
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                proc.kill()
            proc.wait(timeout=timeout)
    # the containerd that dockerd supervised, if it outlived a SIGKILLed dockerd
    _kill_pidfile(root / "exec" / "containerd" / "containerd.pid", "containerd")
    _detach_mounts(root)


def _start_once(binary: str, root: Path, driver: str, timeout: float) -> Dockerd:
    sock = root / "docker.sock"
    (root / "data").mkdir()
    (root / "exec").mkdir()
    config = root / "daemon.json"
    config.write_text("{}\n")  # never pick up /etc/docker/daemon.json
    ns = f"imgscan-test-{uuid.uuid4().hex[:8]}"
    cmd = [
        binary,
        "--data-root", str(root / "data"),
        "--exec-root", str(root / "exec"),
        "--host", f"unix://{sock}",
        "--pidfile", str(root / "docker.pid"),
        "--config-file", str(config),
        "--containerd-namespace", ns,
        "--containerd-plugins-namespace", f"{ns}-plugins",
        "--iptables=false",
        "--ip6tables=false",
        "--bridge=none",
        "--default-ulimit", "nofile=20000:20000",
        "--storage-driver", driver,
        "--tls=false",
    ]  # fmt: skip
    env = dict(os.environ)
    env["PATH"] = env.get("PATH", "") + ":/usr/sbin:/usr/bin:/sbin:/bin"
    for var in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        env.pop(var, None)
    t0 = time.monotonic()
    with open(root / "dockerd.log", "wb") as log:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )  # fmt: skip
    deadline = t0 + timeout
    try:
        while True:
            if proc.poll() is not None:
                raise DockerdError(
                    f"dockerd --storage-driver {driver} exited with {proc.returncode}:\n"
                    + _log_tail(root / "dockerd.log")
                )
            answer = _ping(sock)
            if answer is not None and answer[0] == 200:
                break
            if time.monotonic() > deadline:
                raise DockerdError(
                    f"dockerd --storage-driver {driver} did not answer /_ping within "
                    f"{timeout:.0f}s:\n" + _log_tail(root / "dockerd.log")
                )
            time.sleep(0.05)
        elapsed = time.monotonic() - t0
        info = _ping(sock, "/info")
        import json

        reported = json.loads(info[1]).get("Driver") if info and info[0] == 200 else None
        if reported != driver:
            raise DockerdError(f"dockerd asked for {driver} but runs {reported!r}")
    except BaseException:
        _stop_proc(proc, root, STOP_TIMEOUT)
        raise
    return Dockerd(
        host=f"unix://{sock}",
        socket=sock,
        root=root,
        storage_driver=driver,
        start_seconds=elapsed,
        proc=proc,
    )


def start_dockerd(drivers: Sequence[str] | None = None, timeout: float = START_TIMEOUT) -> Dockerd:
    """Start a private dockerd with the first storage driver that works; raise DockerdError."""
    binary = dockerd_binary()
    if binary is None:
        raise DockerdUnavailable("dockerd is not installed (Debian package docker.io)")
    if os.geteuid() != 0:
        raise DockerdUnavailable("dockerd needs root; the engine tests run as root in CI")
    override = os.environ.get("IMGSCAN_DOCKERD_STORAGE_DRIVER")
    choices = [override] if override else list(drivers or DRIVERS)
    failures = []
    for driver in choices:
        root = _make_root()
        try:
            return _start_once(binary, root, driver, timeout)
        except DockerdError as exc:
            failures.append(str(exc))
            shutil.rmtree(root, ignore_errors=True)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
    raise DockerdError("could not start dockerd with any storage driver:\n" + "\n".join(failures))


def stop_dockerd(d: Dockerd, timeout: float = STOP_TIMEOUT) -> None:
    """Stop the daemon (SIGTERM, then SIGKILL), detach leftover mounts, remove its temp dir."""
    try:
        _stop_proc(d.proc, d.root, timeout)
    finally:
        shutil.rmtree(d.root, ignore_errors=True)


@contextlib.contextmanager
def running_dockerd(drivers: Sequence[str] | None = None) -> Iterator[Dockerd]:
    """A private dockerd for the duration of the block."""
    d = start_dockerd(drivers)
    try:
        yield d
    finally:
        stop_dockerd(d)


def in_ci() -> bool:
    """True under CI (CI=true), where a check that cannot run must fail, not skip."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_dockerd() -> Iterator[Dockerd]:
    """Generator behind the fixture: skip locally only when dockerd cannot exist here."""
    try:
        d = start_dockerd()
    except DockerdUnavailable as exc:
        if in_ci():
            pytest.fail(f"engine tests need dockerd under CI: {exc}", pytrace=False)
        pytest.skip(str(exc))
    except DockerdError as exc:
        pytest.fail(f"dockerd failed to start: {exc}", pytrace=False)
    try:
        yield d
    finally:
        stop_dockerd(d)


@pytest.fixture(scope="session")
def dockerd() -> Iterator[Dockerd]:
    """A private dockerd shared by the whole test session."""
    yield from require_dockerd()


__all__ = [
    "Dockerd",
    "DockerdError",
    "DockerdUnavailable",
    "dockerd",
    "dockerd_binary",
    "in_ci",
    "require_dockerd",
    "running_dockerd",
    "start_dockerd",
    "stop_dockerd",
]
