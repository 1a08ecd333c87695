"""Which package installed a file, and whether the file is still as the package shipped it.

Built from the package databases the walker captures (``imgscan.layers.capture``):
dpkg ``/var/lib/dpkg/info/*.md5sums`` (+ ``Conffiles`` in ``/var/lib/dpkg/status``),
apk ``/lib/apk/db/installed`` (``Z:Q1`` = base64 SHA-1) and pip ``*.dist-info/RECORD``
(``sha256=`` urlsafe base64). A finding in an unmodified package-owned file is a
vendor's file, not the image author's secret; a modified one deserves attention.
and rpm's sqlite database (``/var/lib/rpm/rpmdb.sqlite`` or
``/usr/lib/sysimage/rpm/rpmdb.sqlite``: header blobs with file digests). The old
Berkeley DB ``Packages`` format is not read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import posixpath
import re
import sqlite3
import struct
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["unmodified", "modified"]

_DPKG_MD5SUMS_RE = re.compile(r"^/var/lib/dpkg/(?:info|status\.d)/([^/]+)\.md5sums$")
_RECORD_RE = re.compile(r"^(.*)/([^/]+)\.dist-info/RECORD$")
RPMDB_PATHS = ("/var/lib/rpm/rpmdb.sqlite", "/usr/lib/sysimage/rpm/rpmdb.sqlite")

# rpm header tags and types we read
_RPMTAG_NAME = 1000
_RPMTAG_FILEDIGESTS = 1035
_RPMTAG_DIRINDEXES = 1116
_RPMTAG_BASENAMES = 1117
_RPMTAG_DIRNAMES = 1118
_RPMTAG_FILEDIGESTALGO = 5011
_RPM_INT32 = 4
_RPM_STRING = 6
_RPM_STRING_ARRAY = 8
_RPM_I18NSTRING = 9
_RPM_DIGEST_ALGOS = {1: "md5", 2: "sha1", 8: "sha256", 9: "sha384", 10: "sha512"}


@dataclass(frozen=True, slots=True)
class Owner:
    """The package that owns a path and the digest it shipped (algo: md5, sha1 or sha256)."""

    package: str
    digest: str  # lower-case hex
    algo: str
    manager: str  # dpkg, apk or pip


def _hex_from_b64(value: str) -> str | None:
    try:
        pad = "=" * (-len(value) % 4)
        return base64.urlsafe_b64decode(value + pad).hex()
    except (binascii.Error, ValueError):
        return None


def _normalize_sha256(value: str | None) -> str | None:
    """Accept a sha256 as hex or (urlsafe/standard) base64; return lower-case hex."""
    if not value:
        return None
    v = value.strip()
    if v.startswith("sha256:"):
        v = v[7:]
    if len(v) == 64 and all(c in "0123456789abcdefABCDEF" for c in v):
        return v.lower()
    h = _hex_from_b64(v.replace("+", "-").replace("/", "_"))
    return h if h is not None and len(h) == 64 else None


class _Only(dict[str, Owner]):
    """A dict that keeps only the wanted paths: the package databases of a big image list
    hundreds of thousands of files, and only those with findings are ever looked up."""

    def __init__(self, wanted: Collection[str]) -> None:
        super().__init__()
        self._wanted = frozenset(wanted)

    def __setitem__(self, key: str, value: Owner) -> None:
        if key in self._wanted:
            super().__setitem__(key, value)

    def setdefault(self, key: str, default: Owner) -> Owner:
        if key in self._wanted:
            return super().setdefault(key, default)
        return default


class PackageDB:
    """Maps file paths to the package that installed them, with the expected digest.

    With ``wanted``, only those paths are kept (the rest are parsed and dropped).
    """

    def __init__(
        self, owners: Mapping[str, Owner] | None = None, wanted: Collection[str] | None = None
    ) -> None:
        self._owners: dict[str, Owner] = _Only(wanted) if wanted is not None else {}
        self._owners.update(owners or {})

    def __len__(self) -> int:
        return len(self._owners)

    @classmethod
    def from_files(
        cls, files: Mapping[tuple[int, str], bytes], wanted: Collection[str] | None = None
    ) -> PackageDB:
        """Build from captured files keyed by (layer, path); the newest layer's copy wins."""
        latest: dict[str, tuple[int, bytes]] = {}
        for (layer, path), content in files.items():
            if path not in latest or layer >= latest[path][0]:
                latest[path] = (layer, content)
        db = cls(wanted=wanted)
        # Apply in layer order so a later database overrides an earlier one for the same path.
        for path, (_layer, content) in sorted(latest.items(), key=lambda kv: (kv[1][0], kv[0])):
            db.add(path, content)
        return db

    def add(self, path: str, content: bytes) -> None:
        """Read one package database file (ignored when its path is not one we know)."""
        m = _DPKG_MD5SUMS_RE.match(path)
        if m:
            self._add_dpkg_md5sums(m.group(1).split(":", 1)[0], content)
        elif path == "/var/lib/dpkg/status" or path.startswith("/var/lib/dpkg/status.d/"):
            self._add_dpkg_conffiles(content)
        elif path == "/lib/apk/db/installed":
            self._add_apk(content)
        elif path in RPMDB_PATHS:
            self._add_rpm_sqlite(content)
        else:
            r = _RECORD_RE.match(path)
            if r:
                self._add_record(r.group(1), r.group(2), content)

    def _add_dpkg_md5sums(self, package: str, content: bytes) -> None:
        for line in content.decode("utf-8", "replace").splitlines():
            digest, _, rel = line.partition("  ")
            if len(digest) == 32 and rel:
                self._owners["/" + rel.lstrip("/")] = Owner(package, digest.lower(), "md5", "dpkg")

    def _add_dpkg_conffiles(self, content: bytes) -> None:
        package = None
        in_conffiles = False
        for line in content.decode("utf-8", "replace").splitlines():
            if line.startswith("Package:"):
                package = line.split(":", 1)[1].strip()
                in_conffiles = False
            elif line.startswith("Conffiles:"):
                in_conffiles = True
            elif in_conffiles and line.startswith(" ") and package:
                parts = line.split()
                if len(parts) >= 2 and len(parts[1]) == 32:
                    if len(parts) >= 3 and parts[2] in ("obsolete", "remove-on-upgrade"):
                        continue
                    self._owners.setdefault(
                        parts[0], Owner(package, parts[1].lower(), "md5", "dpkg")
                    )
            elif not line.startswith(" "):
                in_conffiles = False

    def _add_apk(self, content: bytes) -> None:
        package = ""
        directory = ""
        current: str | None = None
        for line in content.decode("utf-8", "replace").splitlines():
            if not line:
                package, directory, current = "", "", None
                continue
            key, _, value = line.partition(":")
            if key == "P":
                package = value
            elif key == "F":
                directory = value
            elif key == "R":
                current = "/" + posixpath.join(directory, value).lstrip("/")
            elif key == "Z" and current and value.startswith("Q1"):
                digest = _hex_from_b64(value[2:].replace("+", "-").replace("/", "_"))
                if digest and len(digest) == 40:
                    self._owners[current] = Owner(package or "?", digest, "sha1", "apk")

    def _add_record(self, site_dir: str, dist: str, content: bytes) -> None:
        package = dist.split("-", 1)[0]
        for line in content.decode("utf-8", "replace").splitlines():
            parts = line.rsplit(",", 2)
            if len(parts) != 3 or not parts[1].startswith("sha256="):
                continue
            rel = parts[0].strip('"')
            digest = _hex_from_b64(parts[1][7:])
            if not digest or len(digest) != 64:
                continue
            path = posixpath.normpath(posixpath.join(site_dir, rel))
            self._owners[path] = Owner(package, digest, "sha256", "pip")

    def _add_rpm_sqlite(self, content: bytes) -> None:
        if content[18:20] == b"\x02\x02":
            # WAL-mode file: an in-memory copy cannot use WAL, so mark it as rollback-journal
            # (the file-format bytes only; pages not yet checkpointed from -wal are not seen).
            content = content[:18] + b"\x01\x01" + content[20:]
        try:
            conn = sqlite3.connect(":memory:")
            try:
                conn.deserialize(content)
                rows = conn.execute("SELECT blob FROM Packages").fetchall()
            finally:
                conn.close()
        except (sqlite3.Error, ValueError, OverflowError, MemoryError):
            return  # not a readable rpm sqlite database: nothing is owned
        for (blob,) in rows:
            if isinstance(blob, bytes):
                self._add_rpm_header(blob)

    def _add_rpm_header(self, blob: bytes) -> None:
        tags = _rpm_header(blob)
        name = tags.get(_RPMTAG_NAME)
        basenames = tags.get(_RPMTAG_BASENAMES)
        dirnames = tags.get(_RPMTAG_DIRNAMES)
        dirindexes = tags.get(_RPMTAG_DIRINDEXES)
        digests = tags.get(_RPMTAG_FILEDIGESTS)
        algo_tag = tags.get(_RPMTAG_FILEDIGESTALGO)
        if not (
            isinstance(name, str)
            and isinstance(basenames, list)
            and isinstance(dirnames, list)
            and isinstance(dirindexes, list)
            and isinstance(digests, list)
        ):
            return
        algo_num = algo_tag[0] if isinstance(algo_tag, list) and algo_tag else 1
        algo = _RPM_DIGEST_ALGOS.get(int(algo_num))
        if algo is None:
            return
        for base, idx, digest in zip(basenames, dirindexes, digests, strict=False):
            if not (isinstance(base, str) and isinstance(idx, int) and isinstance(digest, str)):
                continue
            if not digest or not 0 <= idx < len(dirnames):
                continue  # directories, symlinks and ghosts have no digest
            d = dirnames[idx]
            if isinstance(d, str):
                self._owners[d + base] = Owner(name, digest.lower(), algo, "rpm")

    def owner(self, path: str) -> tuple[str, str, str] | None:
        """``(package, expected_digest_hex, algo)`` for a package-owned path, else None."""
        o = self._owners.get(path)
        return (o.package, o.digest, o.algo) if o else None

    def owner_info(self, path: str) -> Owner | None:
        """The full ownership record of a path (including the package manager)."""
        return self._owners.get(path)

    def needs(self, path: str) -> str | None:
        """Which digest algorithm the verdict for ``path`` needs (md5, sha1, sha256), if owned."""
        o = self._owners.get(path)
        return o.algo if o else None

    def verdict(
        self,
        path: str,
        md5_hex: str | None,
        sha256: str | None,
        sha1_hex: str | None = None,
    ) -> Verdict | None:
        """Whether an owned file is as its package shipped it; None if unowned or not checkable.

        ``sha256`` may be hex or base64 (as in RECORD). apk entries need ``sha1_hex``.
        """
        o = self._owners.get(path)
        if o is None:
            return None
        actual: str | None
        if o.algo == "md5":
            actual = md5_hex.lower() if md5_hex else None
        elif o.algo == "sha256":
            actual = _normalize_sha256(sha256)
        elif o.algo == "sha1":
            actual = sha1_hex.lower() if sha1_hex else None
        else:
            actual = None  # sha384/sha512 rpm digests: only verdict_for_content can tell
        if actual is None:
            return None
        return "unmodified" if actual == o.digest else "modified"

    def verdict_for_content(self, path: str, data: bytes) -> Verdict | None:
        """``verdict`` computed from the file's bytes (hashing only what the owner needs)."""
        algo = self.needs(path)
        if algo is None:
            return None
        digest = hashlib.new(algo, data, usedforsecurity=False).hexdigest()
        if algo in ("sha384", "sha512"):
            o = self._owners[path]
            return "unmodified" if digest == o.digest else "modified"
        return self.verdict(
            path,
            digest if algo == "md5" else None,
            digest if algo == "sha256" else None,
            digest if algo == "sha1" else None,
        )

    def paths(self) -> Iterable[str]:
        """Every package-owned path known."""
        return self._owners.keys()


def _rpm_header(blob: bytes) -> dict[int, str | list[str] | list[int]]:
    """The tags we need from an rpm header blob (index entries + data store), or {}."""
    out: dict[int, str | list[str] | list[int]] = {}
    if len(blob) < 8:
        return out
    il, dl = struct.unpack(">II", blob[:8])
    start = 8 + 16 * il
    if il > 100_000 or start + dl > len(blob):
        return out
    store = blob[start : start + dl]
    wanted = (
        _RPMTAG_NAME,
        _RPMTAG_FILEDIGESTS,
        _RPMTAG_DIRINDEXES,
        _RPMTAG_BASENAMES,
        _RPMTAG_DIRNAMES,
        _RPMTAG_FILEDIGESTALGO,
    )
    for i in range(il):
        tag, typ, off, count = struct.unpack(">IIII", blob[8 + 16 * i : 24 + 16 * i])
        if tag not in wanted or off >= len(store) or count > len(store):
            continue
        if typ == _RPM_INT32:
            end = off + 4 * count
            if end <= len(store):
                out[tag] = list(struct.unpack(f">{count}I", store[off:end]))
        elif typ in (_RPM_STRING, _RPM_I18NSTRING):
            end = store.find(b"\0", off)
            if end >= 0:
                out[tag] = store[off:end].decode("utf-8", "replace")
        elif typ == _RPM_STRING_ARRAY:
            strings: list[str] = []
            pos = off
            for _ in range(count):
                end = store.find(b"\0", pos)
                if end < 0:
                    break
                strings.append(store[pos:end].decode("utf-8", "replace"))
                pos = end + 1
            if len(strings) == count:
                out[tag] = strings
    return out
