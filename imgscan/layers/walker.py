"""Stream one layer blob: detect compression, verify digests, emit one FileEvent per entry.

Whiteouts and opaque markers are reported as events, never applied: the
overlay decides what they hide once every layer has been seen.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, cast

from imgscan.errors import LayerError
from imgscan.layers.compression import (
    HashingReader,
    LayerLimitExceeded,
    gzip_reader,
    sniff,
    zstd_reader,
)
from imgscan.model import EntryKind, FileEvent, Unscanned
from imgscan.sources.base import LayerBlob

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"


@dataclass(frozen=True, slots=True)
class WalkLimits:
    """Bounds that keep a hostile layer from eating time, memory or disk."""

    max_layer_bytes: int = 64 * 1024**3  # uncompressed bytes per layer (bomb cap)
    max_file_bytes: int = 4 * 1024**3  # content scanned per file; beyond is reported
    chunk_size: int = 8 * 1024 * 1024
    overlap: int = 64 * 1024


@dataclass(slots=True)
class Entry:
    """One layer entry: its event, plus a reader for regular-file content (valid until next)."""

    event: FileEvent
    reader: BinaryIO | None
    sparse: bool = False


@dataclass(slots=True)
class WalkStats:
    """What the walker saw of one layer."""

    compressed_bytes: int = 0
    uncompressed_bytes: int = 0
    entries: int = 0
    compression: str = "none"
    unscanned: list[Unscanned] = field(default_factory=list)
    digest: str | None = None  # sha256 of the stored blob, as computed (None if cut short)
    diff_id: str | None = None  # sha256 of the uncompressed tar, as computed


def normalize_path(name: str) -> str | None:
    """``./a//b/`` -> ``/a/b``; None when the name climbs out of the root with ``..``."""
    if not name:
        return None
    parts = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            return None
        parts.append(part)
    return "/" + "/".join(parts)


def _xattrs(info: tarfile.TarInfo) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for key, value in info.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            out[key[len("SCHILY.xattr.") :]] = value.encode("utf-8", "surrogateescape")
        elif key.startswith("LIBARCHIVE.xattr."):
            import base64

            try:
                out[key[len("LIBARCHIVE.xattr.") :]] = base64.b64decode(value + "==")
            except ValueError:
                continue
    return out


def _kind(info: tarfile.TarInfo) -> EntryKind | None:
    if info.isreg():
        return EntryKind.FILE
    if info.isdir():
        return EntryKind.DIR
    if info.issym():
        return EntryKind.SYMLINK
    if info.islnk():
        return EntryKind.HARDLINK
    if info.ischr():
        return EntryKind.CHAR
    if info.isblk():
        return EntryKind.BLOCK
    if info.isfifo():
        return EntryKind.FIFO
    return None


def _type_bits(kind: EntryKind) -> int:
    return {
        EntryKind.FILE: 0o100000,
        EntryKind.DIR: 0o040000,
        EntryKind.SYMLINK: 0o120000,
        EntryKind.HARDLINK: 0o100000,
        EntryKind.CHAR: 0o020000,
        EntryKind.BLOCK: 0o060000,
        EntryKind.FIFO: 0o010000,
    }.get(kind, 0)


class LayerWalker:
    """Iterate the entries of one layer blob; check digests when the stream ends."""

    def __init__(self, blob: LayerBlob, limits: WalkLimits | None = None) -> None:
        self.blob = blob
        self.limits = limits or WalkLimits()
        self.stats = WalkStats()

    def _what(self) -> str:
        d = self.blob.digest or self.blob.diff_id or "?"
        return f"layer {self.blob.index} ({d[:19]})"

    def __iter__(self) -> Iterator[Entry]:
        what = self._what()
        try:
            raw = self.blob.open()
        except LayerError:
            raise
        except OSError as exc:
            raise LayerError(f"{what}: cannot open blob ({exc})") from None
        try:
            yield from self._walk(raw, what)
        finally:
            raw.close()

    def _walk(self, raw: BinaryIO, what: str) -> Iterator[Entry]:
        algo = (self.blob.digest or "sha256:").split(":", 1)[0]
        outer = HashingReader(raw, algo=algo, what=what)
        buffered = io.BufferedReader(outer, buffer_size=1 << 20)
        comp = sniff(buffered.peek(8)[:8])
        self.stats.compression = comp
        inner: BinaryIO
        if comp == "gzip":
            inner = gzip_reader(cast(BinaryIO, buffered))
        elif comp == "zstd":
            inner = zstd_reader(cast(BinaryIO, buffered))
        elif comp == "none":
            inner = cast(BinaryIO, buffered)
            # Stored bytes == tar bytes: one sha256 serves as blob digest and diff_id.
            outer.hashing = algo != "sha256"
        else:
            raise LayerError(f"{what}: unsupported layer compression {comp}")
        plain = HashingReader(inner, limit=self.limits.max_layer_bytes, what=what)
        try:
            tail = yield from self._entries(plain, what)
            self._check_tail(tail, what)
            plain.drain()
            if comp != "none":
                inner.read(1)  # let the decompressor see the end of its input
            while buffered.read(1 << 20):
                pass
        except LayerLimitExceeded:
            self.stats.uncompressed_bytes = plain.count
            self.stats.compressed_bytes = outer.count
            self.record_limit("/")
            return
        except (EOFError, zlib.error, OSError, ValueError) as exc:
            msg = str(exc) or type(exc).__name__
            raise LayerError(f"{what}: corrupt or truncated {comp} stream ({msg})") from None
        except tarfile.TarError as exc:
            raise LayerError(f"{what}: corrupt tar stream ({exc})") from None
        self.stats.uncompressed_bytes = plain.count
        self.stats.compressed_bytes = outer.count
        stored = outer.digest() if outer.hashing else plain.digest()
        self.stats.digest, self.stats.diff_id = stored, plain.digest()
        if self.blob.digest and stored != self.blob.digest:
            raise LayerError(
                f"{what}: blob digest mismatch (manifest says {self.blob.digest}, "
                f"content is {stored})"
            )
        if self.blob.diff_id and plain.digest() != self.blob.diff_id:
            raise LayerError(
                f"{what}: diff_id mismatch (config says {self.blob.diff_id}, "
                f"uncompressed content is {plain.digest()})"
            )

    def record_limit(self, path: str) -> None:
        """Note that the layer hit the uncompressed-bytes cap (while reading ``path``)."""
        self.stats.unscanned.append(
            Unscanned(
                self.blob.index,
                path,
                f"layer stopped after {self.limits.max_layer_bytes} uncompressed bytes "
                "(decompression bomb cap); the rest of the layer was not scanned",
            )
        )

    @staticmethod
    def _check_tail(tail: tuple[BinaryIO, int], what: str) -> None:
        """After the end-of-archive marker only zero padding may follow.

        tarfile stops quietly at an invalid header that is not the first one, which
        would hide every later entry of the layer: any non-zero byte after the point
        where it stopped means the tar is corrupt.
        """
        stream, offset = tail
        while True:
            chunk = stream.read(1 << 20)
            if not chunk:
                return
            if chunk.strip(b"\0"):
                raise LayerError(
                    f"{what}: corrupt tar stream (invalid header near offset {offset}; "
                    "entries after it would be hidden)"
                )

    def _entries(
        self, plain: HashingReader, what: str
    ) -> Generator[Entry, None, tuple[BinaryIO, int]]:
        index = self.blob.index
        # Random-access mode over a forward-only seekable stream: tarfile's stream mode
        # ("r|") re-copies its buffer on every header read and is several times slower.
        buffered = io.BufferedReader(plain, buffer_size=1 << 20)
        tf = tarfile.open(fileobj=buffered, mode="r:")  # noqa: SIM115 - closed below
        try:
            for info in tf:
                tf.members = []  # type: ignore[attr-defined]  # else every TarInfo is kept
                self.stats.entries += 1
                entry = self._entry(info, index)
                if entry is None:
                    continue
                if entry.event.kind is EntryKind.FILE and not entry.sparse:
                    entry.reader = cast(BinaryIO | None, tf.extractfile(info))
                yield entry
            stop = tf.offset
        finally:
            tf.close()
        return buffered, stop

    def _entry(self, info: tarfile.TarInfo, index: int) -> Entry | None:
        path = normalize_path(info.name)
        if path is None:
            self.stats.unscanned.append(
                Unscanned(
                    index, info.name[:4096], "unsafe member name (climbs out with '..'); skipped"
                )
            )
            return None
        kind = _kind(info)
        if kind is None:
            self.stats.unscanned.append(
                Unscanned(index, path, f"unsupported tar entry type {info.type!r}")
            )
            return None
        base = posixpath.basename(path)
        parent = posixpath.dirname(path)
        if base.startswith(WHITEOUT_PREFIX):
            if base == OPAQUE_MARKER:
                return Entry(
                    FileEvent(index, parent, EntryKind.OPAQUE, mtime=int(info.mtime)), None
                )
            if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
                return None  # aufs bookkeeping (.wh..wh.plnk etc.), not content
            target = posixpath.join(parent, base[len(WHITEOUT_PREFIX) :])
            return Entry(FileEvent(index, target, EntryKind.WHITEOUT, mtime=int(info.mtime)), None)
        linkname: str | None = None
        if kind is EntryKind.SYMLINK:
            linkname = info.linkname
        elif kind is EntryKind.HARDLINK:
            linkname = normalize_path(info.linkname) or info.linkname
        sparse = bool(info.issparse()) if kind is EntryKind.FILE else False
        event = FileEvent(
            layer=index,
            path=path,
            kind=kind,
            mode=(info.mode & 0o7777) | _type_bits(kind),
            uid=int(info.uid),
            gid=int(info.gid),
            size=int(info.size) if kind is EntryKind.FILE else 0,
            mtime=int(info.mtime),
            linkname=linkname,
            xattrs=_xattrs(info),
        )
        if sparse and info.size > self.limits.max_file_bytes:
            self.stats.unscanned.append(
                Unscanned(
                    index,
                    path,
                    f"sparse file with apparent size {info.size} bytes "
                    "exceeds the per-file limit; content not scanned",
                )
            )
        return Entry(event, None, sparse=sparse and info.size > self.limits.max_file_bytes)
