"""Per-layer verdict cache: a layer's scan result keyed by diff_id + ruleset hash + version.

Layer results do not depend on the image around them (exposure state is
recomputed per image from the cached events), so a base layer shared by many
tags is scanned once. SQLite is the embedded default. A row is written in one
transaction with ``complete = 1``; a reader never sees a half-written entry.
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
from imgscan.model import Category, EntryKind, FileEvent, Finding, Severity, Status, Unscanned

FORMAT_VERSION = 1


def cache_key(layer_id: str, ruleset_hash: str, options_tag: str = "") -> str:
    """The cache key of one layer under one detector configuration."""
    h = hashlib.sha256()
    for part in (layer_id, ruleset_hash, __version__, options_tag, str(FORMAT_VERSION)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _event_to(e: FileEvent) -> list[Any]:
    return [e.path, str(e.kind), e.mode, e.uid, e.gid, e.size, e.mtime, e.linkname,
            {k: base64.b64encode(v).decode() for k, v in e.xattrs.items()} if e.xattrs else None]


def _event_from(layer: int, row: list[Any]) -> FileEvent:
    path, kind, mode, uid, gid, size, mtime, link, xattrs = row
    return FileEvent(layer, path, EntryKind(kind), mode, uid, gid, size, mtime, link,
                     {k: base64.b64decode(v) for k, v in (xattrs or {}).items()})


_FINDING_FIELDS = (
    "rule", "title", "message", "fingerprint", "layer", "layer_digest", "path", "line",
    "location", "redacted", "secret_sha256", "created_by", "validated", "remediation", "note",
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
    kw = {k: d.get(k) for k in _FINDING_FIELDS}
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
        hashes={p: (h[0], h[1]) for p, h in doc["hashes"].items()},
        compressed_bytes=doc["compressed_bytes"],
        uncompressed_bytes=doc["uncompressed_bytes"],
        compression=doc["compression"],
        seconds=doc["seconds"],
    )
    return lr.rebind(index)


class VerdictCache(Protocol):
    """Where per-layer results are kept between scans."""

    hits: int
    misses: int

    def get(self, key: str, index: int) -> Any | None:
        """The cached LayerResult at ``index``, or None."""
        ...

    def put(self, key: str, layer_id: str, result: Any) -> None:
        """Store a complete LayerResult."""
        ...


@dataclass
class SqliteCache:
    """The embedded default: one SQLite file, safe for several processes."""

    path: Path
    hits: int = 0
    misses: int = 0
    _db: sqlite3.Connection | None = field(default=None, repr=False)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS layer_results ("
                " key TEXT PRIMARY KEY, layer_id TEXT NOT NULL, created REAL NOT NULL,"
                " complete INTEGER NOT NULL DEFAULT 0, payload BLOB NOT NULL)"
            )
            db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT)")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', '1')")
            self._db = db
        return self._db

    def get(self, key: str, index: int) -> Any | None:
        """The cached LayerResult at ``index``, or None (a corrupt row counts as a miss)."""
        row = self._conn().execute(
            "SELECT payload FROM layer_results WHERE key = ? AND complete = 1", (key,)
        ).fetchone()
        if row is None:
            self.misses += 1
            return None
        try:
            lr = decode_layer_result(row[0], index)
        except (ValueError, KeyError, TypeError, zlib.error):
            self.misses += 1
            return None
        self.hits += 1
        return lr

    def put(self, key: str, layer_id: str, result: Any) -> None:
        """Store a LayerResult atomically (idempotent: the first complete write wins)."""
        payload = encode_layer_result(result)
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT OR IGNORE INTO layer_results (key, layer_id, created, complete, payload)"
                " VALUES (?, ?, ?, 1, ?)",
                (key, layer_id, time.time(), payload),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close the database."""
        if self._db is not None:
            self._db.close()
            self._db = None
