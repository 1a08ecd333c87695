"""Which small files the walker keeps (bounded) for image-level analyzers.

Analyzers (hardening checks, package ownership) need the content of a few
system files as they stand in some layer. The walker keeps a copy of every
regular file for which ``wants(path, size)`` is true, keyed by (layer, path).
"""

from __future__ import annotations

import fnmatch
import re

MAX_CAPTURE_BYTES = 4 * 1024 * 1024  # per file
MAX_CAPTURE_TOTAL = 96 * 1024 * 1024  # per layer: beyond this we record an Unscanned note

EXACT = frozenset(
    {
        "/etc/passwd",
        "/etc/group",
        "/etc/shadow",
        "/etc/gshadow",
        "/etc/sudoers",
        "/etc/os-release",
        "/usr/lib/os-release",
        "/etc/alpine-release",
        "/etc/debian_version",
        "/var/lib/dpkg/status",
        "/lib/apk/db/installed",
        "/etc/login.defs",
        "/etc/ssh/sshd_config",
    }
)

GLOBS = (
    "/var/lib/dpkg/info/*.md5sums",
    "/var/lib/dpkg/info/*.list",
    "/var/lib/dpkg/status.d/*",
    "/etc/sudoers.d/*",
    "/etc/supervisor/*.conf",
    "/etc/supervisord.conf",
    "/etc/supervisord.d/*",
)

# rpm's database is a SQLite file, larger than the usual capture limit.
RPMDB_PATHS = frozenset({"/var/lib/rpm/rpmdb.sqlite", "/usr/lib/sysimage/rpm/rpmdb.sqlite"})
MAX_RPMDB_BYTES = 64 * 1024 * 1024

_RECORD_RE = re.compile(r"/[^!]*\.dist-info/RECORD$")
_GLOB_RES = tuple(re.compile(fnmatch.translate(g)) for g in GLOBS)


def wants(path: str, size: int) -> bool:
    """Whether the walker should keep a copy of this regular file."""
    if path in RPMDB_PATHS:
        return size <= MAX_RPMDB_BYTES
    if size > MAX_CAPTURE_BYTES:
        return False
    if path in EXACT:
        return True
    if path.endswith("/RECORD") and _RECORD_RE.search(path):
        return True
    return any(r.match(path) for r in _GLOB_RES)
