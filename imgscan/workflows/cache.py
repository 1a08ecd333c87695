"""Verdict cache: a layer's scan result keyed by diff_id + ruleset hash + version.

Layer results do not depend on the image around them (exposure state is
recomputed per image from the cached events), so a base layer shared by many
tags is scanned once. SQLite is the embedded default. A row is written in one
transaction with ``complete = 1``; a reader never sees a half-written entry.

Two shortcuts sit beside it: an alias from a layer's *blob* digest to its entry
(a compressed archive is read front to back, so a layer is met by its blob
digest long before the config names its diff_id), and whole-image results keyed
by what identifies the image (config + layer digests, or the archive file's own
digest) plus everything that shapes the result, so an unchanged image is not
even re-assembled.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from imgscan import __version__
from imgscan.errors import ConfigError, SourceError
from imgscan.model import (
    NO_XATTRS,
    Category,
    EntryKind,
    FileEvent,
    Finding,
    Severity,
    Status,
    Unscanned,
)

FORMAT_VERSION = 2


def cache_key(layer_id: str, ruleset_hash: str, options_tag: str = "") -> str:
    """The cache key of one layer under one detector configuration."""
    h = hashlib.sha256()
    for part in (layer_id, ruleset_hash, __version__, options_tag, str(FORMAT_VERSION)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _event_to(e: FileEvent) -> list[Any]:
    return [
        e.path,
        str(e.kind),
        e.mode,
        e.uid,
        e.gid,
        e.size,
        e.mtime,
        e.linkname,
        {k: base64.b64encode(v).decode() for k, v in e.xattrs.items()} if e.xattrs else None,
    ]


_KINDS = {str(k): k for k in EntryKind}  # a dict lookup: EntryKind(value) is 10x slower


def _event_from(layer: int, row: list[Any]) -> FileEvent:
    path, kind, mode, uid, gid, size, mtime, link, xattrs = row
    return FileEvent(
        layer,
        path,
        _KINDS[kind],
        mode,
        uid,
        gid,
        size,
        mtime,
        link,
        {k: base64.b64decode(v) for k, v in xattrs.items()} if xattrs else NO_XATTRS,
    )


_FINDING_FIELDS = (
    "rule",
    "title",
    "message",
    "fingerprint",
    "layer",
    "layer_digest",
    "path",
    "line",
    "location",
    "redacted",
    "secret_sha256",
    "created_by",
    "validated",
    "remediation",
    "note",
)


def _finding_to(f: Finding) -> dict[str, Any]:
    d = {k: getattr(f, k) for k in _FINDING_FIELDS}
    d["category"] = str(f.category)
    d["severity"] = str(f.severity)
    d["status"] = str(f.status) if f.status else None
    d["removed_in_layer"] = f.removed_in_layer
    d["extra"] = dict(f.extra)
    return d


def _finding_from(d: Mapping[str, Any]) -> Finding:
    kw: dict[str, Any] = {k: d.get(k) for k in _FINDING_FIELDS}
    return Finding(
        category=Category(d["category"]),
        severity=Severity(d["severity"]),
        status=Status(d["status"]) if d.get("status") else None,
        removed_in_layer=d.get("removed_in_layer"),
        extra=dict(d.get("extra") or {}),
        **kw,
    )


def encode_layer_result(lr: Any) -> bytes:
    """Serialise a LayerResult (without raw secrets) to compressed JSON."""
    doc = {
        "v": FORMAT_VERSION,
        "index": lr.index,
        "events": [_event_to(e) for e in lr.events],
        "findings": [_finding_to(f) for f in lr.findings],
        "unscanned": [[u.path, u.reason] for u in lr.unscanned],
        "files": {p: base64.b64encode(b).decode() for p, b in lr.files.items()},
        "hashes": {p: list(h) for p, h in lr.hashes.items()},
        "compressed_bytes": lr.compressed_bytes,
        "uncompressed_bytes": lr.uncompressed_bytes,
        "compression": lr.compression,
        "seconds": lr.seconds,
        "digest": lr.digest,
        "diff_id": lr.diff_id,
    }
    return zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), 6)


def decode_layer_result(data: bytes, index: int) -> Any:
    """Rebuild a LayerResult placed at ``index`` from ``encode_layer_result`` bytes."""
    from imgscan.scan import LayerResult

    doc = json.loads(zlib.decompress(data))
    if doc.get("v") != FORMAT_VERSION:
        raise ValueError("cache entry format version mismatch")
    findings = []
    for fd in doc["findings"]:
        f = _finding_from(fd)
        findings.append(f)
    lr = LayerResult(
        index=doc["index"],
        events=tuple(_event_from(doc["index"], r) for r in doc["events"]),
        findings=tuple(findings),
        unscanned=tuple(Unscanned(doc["index"], p, r) for p, r in doc["unscanned"]),
        files={p: base64.b64decode(b) for p, b in doc["files"].items()},
        hashes={p: (h[0], h[1], h[2]) for p, h in doc["hashes"].items()},
        compressed_bytes=doc["compressed_bytes"],
        uncompressed_bytes=doc["uncompressed_bytes"],
        compression=doc["compression"],
        seconds=doc["seconds"],
        digest=doc.get("digest"),
        diff_id=doc.get("diff_id"),
    )
    return lr.rebind(index)


class VerdictCache(Protocol):
    """Where per-layer results are kept between scans (and shared between workers)."""

    hits: int
    misses: int

    def has(self, key: str) -> bool:
        """Whether a complete entry exists for ``key``."""
        ...

    def get(self, key: str, index: int) -> Any | None:
        """The cached LayerResult at ``index``, or None."""
        ...

    def put(self, key: str, layer_id: str, result: Any) -> None:
        """Store a complete LayerResult (idempotent) and count one real scan of it."""
        ...

    def claim(self, key: str, owner: str, ttl: float) -> bool:
        """Try to become the one worker that scans ``key``; a claim expires after ``ttl``."""
        ...

    def release(self, key: str, owner: str) -> None:
        """Drop our claim on ``key``."""
        ...

    def scan_count(self, key: str) -> int:
        """How many times the layer behind ``key`` was really scanned (not served from cache)."""
        ...

    def alias(self, alias: str, key: str) -> None:
        """Let ``alias`` (a key built from a blob digest) find the entry stored under ``key``."""
        ...

    def get_alias(self, alias: str, index: int) -> Any | None:
        """The LayerResult an alias points to, at ``index``, or None."""
        ...

    def put_image(self, key: str, result: Any) -> None:
        """Store a whole image's ScanResult."""
        ...

    def get_image(self, key: str) -> Any | None:
        """A whole image's cached ScanResult, or None."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def open_cache(url: str) -> VerdictCache:
    """A cache from a URL: ``postgresql://...`` for a shared one, else a SQLite file path."""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresCache(url)
    if url.startswith("sqlite:///"):
        url = url[len("sqlite:///") - 1 :]
    return SqliteCache(Path(url))


class _SqlCache:
    """Reads shared by the SQL backends; each supplies its connection and placeholder."""

    hits: int
    misses: int
    _p: str  # the DB-API parameter placeholder: "?" or "%s"

    def _conn(self) -> Any:
        raise NotImplementedError

    def _one(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        return self._conn().execute(sql.replace("?", self._p), args).fetchone()

    def has(self, key: str) -> bool:
        """Whether a complete entry exists (no decoding, not counted as a hit or miss)."""
        return (
            self._one("SELECT 1 FROM layer_results WHERE key = ? AND complete = ?", (key, True))
            is not None
        )

    def get(self, key: str, index: int) -> Any | None:
        """The cached LayerResult at ``index``, or None (a corrupt row counts as a miss)."""
        row = self._one(
            "SELECT payload FROM layer_results WHERE key = ? AND complete = ?", (key, True)
        )
        if row is None:
            self.misses += 1
            return None
        try:
            lr = decode_layer_result(bytes(row[0]), index)
        except (ValueError, KeyError, TypeError, zlib.error):
            self.misses += 1
            return None
        self.hits += 1
        return lr

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        self._conn().execute(sql.replace("?", self._p), args)

    def alias(self, alias: str, key: str) -> None:
        """Let ``alias`` (a key built from a blob digest) find the entry stored under ``key``."""
        self._exec(
            "INSERT INTO layer_aliases (alias, key) VALUES (?, ?)"
            " ON CONFLICT (alias) DO UPDATE SET key = excluded.key",
            (alias, key),
        )

    def get_alias(self, alias: str, index: int) -> Any | None:
        """The LayerResult an alias points to, at ``index``, or None."""
        row = self._one("SELECT key FROM layer_aliases WHERE alias = ?", (alias,))
        if row is None:
            self.misses += 1
            return None
        return self.get(str(row[0]), index)

    def put_image(self, key: str, result: Any) -> None:
        """Store a whole image's ScanResult (the last write wins)."""
        payload = zlib.compress(json.dumps(encode_scan_result(result)).encode(), 6)
        self._exec(
            "INSERT INTO image_results (key, created, payload) VALUES (?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET payload = excluded.payload,"
            " created = excluded.created",
            (key, time.time(), payload),
        )

    def get_image(self, key: str) -> Any | None:
        """A whole image's cached ScanResult, or None (a corrupt row is a miss)."""
        row = self._one("SELECT payload FROM image_results WHERE key = ?", (key,))
        if row is None:
            return None
        try:
            doc = json.loads(zlib.decompress(bytes(row[0])))
            if doc.get("v") != FORMAT_VERSION:
                return None
            return decode_scan_result(doc)
        except (ValueError, KeyError, TypeError, IndexError, zlib.error):
            return None

    def scan_count(self, key: str) -> int:
        """Real scans recorded for ``key``."""
        row = self._one("SELECT scans FROM scan_counts WHERE key = ?", (key,))
        return int(row[0]) if row else 0

    def total_scans(self) -> int:
        """Real layer scans recorded in this cache, all keys."""
        return int(self._one("SELECT COALESCE(SUM(scans), 0) FROM scan_counts")[0])


@dataclass
class SqliteCache(_SqlCache):
    """The embedded default: one SQLite file, safe for several processes."""

    path: Path
    hits: int = 0
    misses: int = 0
    _db: sqlite3.Connection | None = field(default=None, repr=False)
    _p: str = "?"

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                " applied REAL NOT NULL)"
            )
            done = {r[0] for r in db.execute("SELECT version FROM schema_migrations")}
            for version, sql in SQLITE_MIGRATIONS:
                if version in done:
                    continue
                db.execute("BEGIN IMMEDIATE")
                try:
                    if not db.execute(
                        "SELECT 1 FROM schema_migrations WHERE version = ?", (version,)
                    ).fetchone():
                        for stmt in sql.split(";"):
                            if stmt.strip():
                                db.execute(stmt)
                        db.execute(
                            "INSERT INTO schema_migrations VALUES (?, ?)", (version, time.time())
                        )
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            self._db = db
        return self._db

    def put(self, key: str, layer_id: str, result: Any) -> None:
        """Store a LayerResult atomically (the first complete write wins)."""
        payload = encode_layer_result(result)
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT OR IGNORE INTO layer_results (key, layer_id, created, complete, payload)"
                " VALUES (?, ?, ?, 1, ?)",
                (key, layer_id, time.time(), payload),
            )
            db.execute(
                "INSERT INTO scan_counts (key, scans) VALUES (?, 1) "
                "ON CONFLICT(key) DO UPDATE SET scans = scans + 1",
                (key,),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def claim(self, key: str, owner: str, ttl: float) -> bool:
        """Take (or take over an expired) claim on ``key``."""
        db = self._conn()
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(
                "SELECT owner, expires FROM layer_claims WHERE key = ?", (key,)
            ).fetchone()
            ok = row is None or row[0] == owner or row[1] < now
            if ok:
                db.execute(
                    "INSERT OR REPLACE INTO layer_claims VALUES (?, ?, ?)", (key, owner, now + ttl)
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return ok

    def release(self, key: str, owner: str) -> None:
        """Drop our claim."""
        self._conn().execute("DELETE FROM layer_claims WHERE key = ? AND owner = ?", (key, owner))

    def close(self) -> None:
        """Close the database."""
        if self._db is not None:
            self._db.close()
            self._db = None


SQLITE_MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        "CREATE TABLE IF NOT EXISTS layer_results (key TEXT PRIMARY KEY, layer_id TEXT NOT NULL,"
        " created REAL NOT NULL, complete INTEGER NOT NULL DEFAULT 0, payload BLOB NOT NULL)",
    ),
    (
        2,
        "CREATE TABLE IF NOT EXISTS layer_claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL,"
        " expires REAL NOT NULL);"
        "CREATE TABLE IF NOT EXISTS scan_counts (key TEXT PRIMARY KEY,"
        " scans INTEGER NOT NULL DEFAULT 0)",
    ),
    (
        3,
        "CREATE TABLE IF NOT EXISTS image_results (key TEXT PRIMARY KEY, created REAL NOT NULL,"
        " payload BLOB NOT NULL);"
        "CREATE TABLE IF NOT EXISTS layer_aliases (alias TEXT PRIMARY KEY, key TEXT NOT NULL)",
    ),
)

PG_MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        "CREATE TABLE IF NOT EXISTS layer_results (key TEXT PRIMARY KEY, layer_id TEXT NOT NULL,"
        " created DOUBLE PRECISION NOT NULL, complete BOOLEAN NOT NULL DEFAULT FALSE,"
        " payload BYTEA NOT NULL)",
    ),
    (
        2,
        "CREATE TABLE IF NOT EXISTS layer_claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL,"
        " expires DOUBLE PRECISION NOT NULL);"
        "CREATE TABLE IF NOT EXISTS scan_counts (key TEXT PRIMARY KEY,"
        " scans INTEGER NOT NULL DEFAULT 0)",
    ),
    (
        3,
        "CREATE TABLE IF NOT EXISTS image_results (key TEXT PRIMARY KEY,"
        " created DOUBLE PRECISION NOT NULL, payload BYTEA NOT NULL);"
        "CREATE TABLE IF NOT EXISTS layer_aliases (alias TEXT PRIMARY KEY, key TEXT NOT NULL)",
    ),
)

_PG_LOCK = 0x1A65CA4  # advisory lock id serialising migrations


class PostgresCache(_SqlCache):
    """A verdict cache shared by every worker of a fleet (psycopg 3)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.hits = 0
        self.misses = 0
        self._p = "%s"
        self._conn_obj: Any = None

    def _conn(self) -> Any:
        if self._conn_obj is None:
            try:
                import psycopg
            except ImportError as exc:  # pragma: no cover
                raise ConfigError(f"PostgreSQL cache needs psycopg: {exc}") from None
            try:
                conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
            except psycopg.Error as exc:
                raise SourceError(
                    f"cannot connect to the cache database: {str(exc).splitlines()[0]}"
                ) from None
            self._migrate(conn)
            self._conn_obj = conn
        return self._conn_obj

    @staticmethod
    def _migrate(conn: Any) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY"
                " KEY, applied DOUBLE PRECISION NOT NULL)"
            )
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            for version, sql in PG_MIGRATIONS:
                if version in done:
                    continue
                for stmt in sql.split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (%s, %s)", (version, time.time())
                )

    def put(self, key: str, layer_id: str, result: Any) -> None:
        """Store a complete LayerResult in one transaction (first write wins)."""
        payload = encode_layer_result(result)
        conn = self._conn()
        with conn.transaction():
            conn.execute(
                "INSERT INTO layer_results (key, layer_id, created, complete, payload)"
                " VALUES (%s, %s, %s, TRUE, %s) ON CONFLICT (key) DO NOTHING",
                (key, layer_id, time.time(), payload),
            )
            conn.execute(
                "INSERT INTO scan_counts (key, scans) VALUES (%s, 1) ON CONFLICT (key)"
                " DO UPDATE SET scans = scan_counts.scans + 1",
                (key,),
            )

    def claim(self, key: str, owner: str, ttl: float) -> bool:
        """Take (or take over an expired) claim on ``key``, atomically."""
        now = time.time()
        row = (
            self._conn()
            .execute(
                "INSERT INTO layer_claims (key, owner, expires) VALUES (%s, %s, %s)"
                " ON CONFLICT (key) DO UPDATE"
                " SET owner = EXCLUDED.owner, expires = EXCLUDED.expires"
                " WHERE layer_claims.expires < %s OR layer_claims.owner = EXCLUDED.owner"
                " RETURNING owner",
                (key, owner, now + ttl, now),
            )
            .fetchone()
        )
        return row is not None and row[0] == owner

    def release(self, key: str, owner: str) -> None:
        """Drop our claim."""
        self._conn().execute("DELETE FROM layer_claims WHERE key = %s AND owner = %s", (key, owner))

    def close(self) -> None:
        """Close the connection."""
        if self._conn_obj is not None:
            self._conn_obj.close()
            self._conn_obj = None


def encode_scan_result(result: Any) -> dict[str, Any]:
    """A ScanResult as JSON-safe data (no raw secrets), for passing between processes."""
    from imgscan.model import ScanResult

    assert isinstance(result, ScanResult)
    info = result.image
    return {
        "v": FORMAT_VERSION,
        "image": {
            "reference": info.reference,
            "digest": info.digest,
            "config_digest": info.config_digest,
            "platform": info.platform,
            "user": info.user,
            "source_kind": info.source_kind,
            "config": dict(info.config),
            "layers": [
                [li.index, li.digest, li.diff_id, li.size, li.media_type, li.created_by, li.created]
                for li in info.layers
            ],
        },
        "findings": [_finding_to(f) for f in result.findings],
        "unscanned": [[u.layer, u.path, u.reason] for u in result.unscanned],
        "stats": dict(result.stats),
    }


def decode_scan_result(doc: Mapping[str, Any]) -> Any:
    """Rebuild a ScanResult from ``encode_scan_result`` data."""
    from imgscan.model import ImageInfo, LayerInfo, ScanResult

    img = doc["image"]
    info = ImageInfo(
        reference=img["reference"],
        digest=img["digest"],
        config_digest=img["config_digest"],
        platform=img["platform"],
        user=img["user"],
        layers=tuple(LayerInfo(*row) for row in img["layers"]),
        config=img["config"],
        source_kind=img["source_kind"],
    )
    return ScanResult(
        image=info,
        findings=tuple(_finding_from(f) for f in doc["findings"]),
        unscanned=tuple(Unscanned(u[0], u[1], u[2]) for u in doc["unscanned"]),
        stats=dict(doc.get("stats") or {}),
    )
