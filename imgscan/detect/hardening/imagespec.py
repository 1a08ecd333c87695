"""Build an ImageContext from a readable list of layers (for tests; no engine, no tar).

Example::

    ctx = build_context(
        [
            Layer("ADD file:base in /", [D("/tmp", 0o1777), F("/etc/passwd", PASSWD)]),
            Empty("USER 10001"),
            Layer("RUN chmod 777 /app", [D("/app", 0o777)]),
        ],
        config={"User": "10001"},
        reference="registry.example/app@sha256:...",
    )

The real overlay (``imgscan.layers.overlay``) computes the visible filesystem and
exposure states, and ``imgscan.layers.capture.wants`` decides which file contents
are kept, exactly as in a scan.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from imgscan.detect.base import ImageContext
from imgscan.layers import capture
from imgscan.layers.overlay import build_overlay
from imgscan.model import EntryKind, FileEvent, Finding
from imgscan.sources.common import build_image_info

_TYPE = {
    EntryKind.FILE: 0o100000,
    EntryKind.DIR: 0o040000,
    EntryKind.SYMLINK: 0o120000,
    EntryKind.HARDLINK: 0o100000,
}


@dataclass(frozen=True, slots=True)
class Entry:
    """One tar entry of a spec layer."""

    path: str
    kind: EntryKind
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    content: bytes = b""
    size: int | None = None
    linkname: str | None = None
    xattrs: Mapping[str, bytes] = field(default_factory=dict)


def F(
    path: str,
    content: bytes | str = b"",
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    *,
    size: int | None = None,
    xattrs: Mapping[str, bytes] | None = None,
) -> Entry:
    """A regular file."""
    data = content.encode() if isinstance(content, str) else content
    return Entry(path, EntryKind.FILE, mode, uid, gid, data, size, None, dict(xattrs or {}))


def D(path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Entry:
    """A directory."""
    return Entry(path, EntryKind.DIR, mode, uid, gid)


def S(path: str, target: str) -> Entry:
    """A symlink."""
    return Entry(path, EntryKind.SYMLINK, 0o777, linkname=target)


def W(path: str) -> Entry:
    """A whiteout: ``path`` is removed by this layer."""
    return Entry(path, EntryKind.WHITEOUT, 0)


def O(path: str) -> Entry:  # noqa: E743 - O for opaque reads well in specs
    """An opaque marker: the lower contents of directory ``path`` are hidden."""
    return Entry(path, EntryKind.OPAQUE, 0)


@dataclass(frozen=True, slots=True)
class Layer:
    """A history entry that made a layer, with the layer's entries."""

    created_by: str
    entries: Sequence[Entry] = ()


@dataclass(frozen=True, slots=True)
class Empty:
    """A history entry with ``empty_layer: true`` (USER, ENV, CMD, ...)."""

    created_by: str


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def build_context(
    steps: Sequence[Layer | Empty],
    config: Mapping[str, Any] | None = None,
    *,
    reference: str = "",
    source_kind: str = "archive",
    labels: Mapping[str, str] | None = None,
) -> ImageContext:
    """An ImageContext for the image described by ``steps`` and ``config`` (``config.*``)."""
    cfg: dict[str, Any] = dict(config or {})
    if labels is not None:
        cfg["Labels"] = dict(labels)
    history: list[dict[str, Any]] = []
    events: list[FileEvent] = []
    files: dict[tuple[int, str], bytes] = {}
    layer_ids: list[str] = []
    index = 0
    for step in steps:
        if isinstance(step, Empty):
            history.append({"created_by": step.created_by, "empty_layer": True})
            continue
        history.append({"created_by": step.created_by})
        h = hashlib.sha256(f"{index}:{step.created_by}".encode())
        for e in step.entries:
            size = e.size if e.size is not None else len(e.content)
            kind = e.kind
            mode = (
                e.mode | _TYPE.get(kind, 0)
                if kind not in (EntryKind.WHITEOUT, EntryKind.OPAQUE)
                else 0
            )
            events.append(
                FileEvent(
                    layer=index,
                    path=e.path,
                    kind=kind,
                    mode=mode,
                    uid=e.uid,
                    gid=e.gid,
                    size=size if kind is EntryKind.FILE else 0,
                    linkname=e.linkname,
                    xattrs=dict(e.xattrs),
                )
            )
            if kind is EntryKind.FILE and capture.wants(e.path, size):
                files[(index, e.path)] = e.content
            h.update(f"{e.path}:{kind}:{mode}:{size}".encode())
        layer_ids.append("sha256:" + h.hexdigest())
        index += 1
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": cfg,
        "history": history,
        "rootfs": {"type": "layers", "diff_ids": layer_ids},
    }
    info = build_image_info(
        reference=reference or "spec-image",
        manifest_digest=None,
        config_digest=_digest(repr(image_config).encode()),
        config=image_config,
        layer_digests=layer_ids,
        layer_sizes=[None] * len(layer_ids),
        media_types=[None] * len(layer_ids),
        source_kind=source_kind,
    )
    overlay = build_overlay(events)
    return ImageContext(
        image=info,
        visible=overlay.final(),
        events=tuple(events),
        files=files,
        states=overlay.states(),
        reference=reference,
    )


# -- a small distro base and a hardened image, for tests and docs ------------------------------
BASE_PASSWD = (
    "root:x:0:0:root:/root:/bin/bash\n"
    "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
)
BASE_GROUP = "root:x:0:\ndaemon:x:1:\nshadow:x:42:\nnogroup:x:65534:\n"
BASE_SHADOW = (
    "root:*:19800:0:99999:7:::\ndaemon:*:19800:0:99999:7:::\nnobody:*:19800:0:99999:7:::\n"
)
APP_PASSWD = BASE_PASSWD + "app:x:10001:10001::/nonexistent:/usr/sbin/nologin\n"
APP_GROUP = BASE_GROUP + "app:x:10001:\n"
APP_SHADOW = BASE_SHADOW + "app:!:19801:0:99999:7:::\n"
BASE_ADD = "/bin/sh -c #(nop) ADD file:4f2a9c0e1d7b in / "
BASE_CMD = '/bin/sh -c #(nop)  CMD ["bash"]'


def base_layer(*extra: Entry) -> Layer:
    """A Debian-like rootfs layer: merged /usr, sticky /tmp, su/passwd setuid, accounts."""
    entries = [
        D("/etc"),
        F("/etc/passwd", BASE_PASSWD),
        F("/etc/group", BASE_GROUP),
        F("/etc/shadow", BASE_SHADOW, 0o640, 0, 42),
        D("/usr"),
        D("/usr/bin"),
        D("/usr/sbin"),
        D("/usr/lib"),
        D("/usr/local"),
        D("/usr/local/bin"),
        D("/usr/local/sbin"),
        S("/bin", "usr/bin"),
        S("/sbin", "usr/sbin"),
        S("/lib", "usr/lib"),
        F("/usr/bin/bash", b"\x7fELF bash", 0o755),
        S("/usr/bin/sh", "dash"),
        F("/usr/bin/dash", b"\x7fELF dash", 0o755),
        F("/usr/bin/su", b"\x7fELF su", 0o4755),
        F("/usr/bin/passwd", b"\x7fELF passwd", 0o4755),
        F("/usr/bin/chage", b"\x7fELF chage", 0o2755, 0, 42),
        D("/root", 0o700),
        D("/home"),
        D("/tmp", 0o1777),
        D("/var"),
        D("/var/tmp", 0o1777),
        D("/var/lib"),
        D("/var/lib/apt"),
        D("/var/lib/apt/lists"),
        F("/var/lib/apt/lists/lock", b"", 0o640),
        D("/var/lib/dpkg"),
        F(
            "/var/lib/dpkg/status",
            "Package: bash\nStatus: install ok installed\n\n"
            "Package: gcc-12-base\nStatus: install ok installed\n\n"
            "Package: login\nStatus: install ok installed\n",
        ),
        D("/var/lib/dpkg/info"),
        F("/var/lib/dpkg/info/login.list", "/.\n/bin\n/bin/su\n/usr\n/usr/bin\n/usr/bin/passwd\n"),
        D("/run"),
        D("/run/lock", 0o1777),
        *extra,
    ]
    return Layer(BASE_ADD, entries)


def base_steps(*extra: Entry) -> list[Layer | Empty]:
    """The history of the base image: its rootfs layer and its CMD."""
    return [base_layer(*extra), Empty(BASE_CMD)]


HARDENED_LABELS = {
    "org.opencontainers.image.revision": "0123456789abcdef0123456789abcdef01234567",
    "org.opencontainers.image.source": "https://git.example.invalid/team/app",
    "org.opencontainers.image.created": "2026-11-29T07:00:00Z",
}
HARDENED_CONFIG: Mapping[str, Any] = {
    "User": "10001",
    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    "Entrypoint": ["/app/server"],
    "Cmd": ["--listen", ":8080"],
    "ExposedPorts": {"8080/tcp": {}},
    "Volumes": {"/data": {}},
    "Healthcheck": {"Test": ["CMD", "/app/server", "--health"], "Interval": 30000000000},
    "Labels": HARDENED_LABELS,
}
HARDENED_REFERENCE = "registry.example.invalid/team/app@sha256:" + "ab" * 32


def hardened_steps(*extra: Layer | Empty) -> list[Layer | Empty]:
    """A well-built image: app user 10001, root-owned app, a volume for /data, healthcheck.

    ``extra`` steps go after the image's own layers, before its USER/CMD metadata.
    """
    return [
        *base_steps(),
        Layer(
            "RUN /bin/sh -c groupadd -g 10001 app && useradd -u 10001 -g app -M app "
            "&& mkdir /data && chown app:app /data # buildkit",
            [
                F("/etc/passwd", APP_PASSWD),
                F("/etc/group", APP_GROUP),
                F("/etc/shadow", APP_SHADOW, 0o640, 0, 42),
                D("/data", 0o750, 10001, 10001),
            ],
        ),
        Layer(
            "COPY /out/server /app/server # buildkit",
            [D("/app"), F("/app/server", b"\x7fELF server", 0o755)],
        ),
        *extra,
        Empty("USER 10001"),
        Empty("VOLUME [/data]"),
        Empty("EXPOSE map[8080/tcp:{}]"),
        Empty('HEALTHCHECK &{["CMD" "/app/server" "--health"] "30s" "0s" "0s" "0s" \'\\x00\'}'),
        Empty('ENTRYPOINT ["/app/server"]'),
        Empty('CMD ["--listen" ":8080"]'),
    ]


def hardened_context(**overrides: Any) -> ImageContext:
    """The hardened image as an ImageContext; ``overrides`` replace config.* keys."""
    cfg = {**HARDENED_CONFIG, **overrides}
    return build_context(
        hardened_steps(), cfg, reference=HARDENED_REFERENCE, source_kind="registry"
    )


def analyze_all(ctx: ImageContext) -> list[Finding]:
    """Every hardening finding for ``ctx`` (all default analyzers)."""
    from imgscan.detect.hardening import default_analyzers

    return [f for a in default_analyzers() for f in a.analyze(ctx)]


def by_rule(findings: Sequence[Finding], rule: str) -> list[Finding]:
    """The findings of one check."""
    return [f for f in findings if f.rule == rule]
