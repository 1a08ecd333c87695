"""Stream one layer blob: detect compression, verify digests, emit one FileEvent per entry.

Whiteouts and opaque markers are reported as events, never applied: the
overlay decides what they hide once every layer has been seen.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
import zlib
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO, cast

from imgscan.errors import LayerError
from imgscan.layers.compression import (
    HashingReader,
    LayerLimitExceeded,
    gzip_reader,
    sniff,
    stream_errors,
    zstd_reader,
)
from imgscan.layers.limits import WalkLimits
from imgscan.layers.tarstream import Member, TarReader, TarStream, sparse_problem
from imgscan.model import NO_XATTRS, EntryKind, FileEvent, Unscanned
from imgscan.sources.base import LayerBlob

WHITEOUT_PREFIX = ".wh."
_MAX_SHARED_INTS = 1 << 16  # distinct mode/mtime values shared per layer (bounded)
OPAQUE_MARKER = ".wh..wh..opq"


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
    split = name.split("/")
    if "" not in split and "." not in split and ".." not in split:
        return "/" + name  # already clean (the common case)
    parts = []
    for part in split:
        if part in ("", "."):
            continue
        if part == "..":
            return None
        parts.append(part)
    return "/" + "/".join(parts)


def _xattrs(pax: Mapping[str, str]) -> Mapping[str, bytes]:
    out: dict[str, bytes] = {}
    for key, value in pax.items():
        if key.startswith("SCHILY.xattr."):
            out[key[len("SCHILY.xattr.") :]] = value.encode("utf-8", "surrogateescape")
        elif key.startswith("LIBARCHIVE.xattr."):
            import base64

            try:
                out[key[len("LIBARCHIVE.xattr.") :]] = base64.b64decode(value + "==")
            except ValueError:
                continue
    return out or NO_XATTRS


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


_TYPE_BITS = {
    EntryKind.FILE: 0o100000,
    EntryKind.DIR: 0o040000,
    EntryKind.SYMLINK: 0o120000,
    EntryKind.HARDLINK: 0o100000,
    EntryKind.CHAR: 0o020000,
    EntryKind.BLOCK: 0o060000,
    EntryKind.FIFO: 0o010000,
}

# Tar type flag -> kind ("0", NUL, contiguous "7" and GNU sparse "S" are regular files).
_KINDS = {
    b"0": EntryKind.FILE,
    b"\0": EntryKind.FILE,
    b"7": EntryKind.FILE,
    b"S": EntryKind.FILE,
    b"5": EntryKind.DIR,
    b"2": EntryKind.SYMLINK,
    b"1": EntryKind.HARDLINK,
    b"3": EntryKind.CHAR,
    b"4": EntryKind.BLOCK,
    b"6": EntryKind.FIFO,
}


def _type_bits(kind: EntryKind) -> int:
    return _TYPE_BITS.get(kind, 0)


def _int_mtime(value: int | float) -> int:
    try:
        return int(value)
    except (ValueError, OverflowError):  # a pax mtime of nan or inf
        return 0


def layer_label(blob: LayerBlob) -> str:
    """How errors name a layer: ``layer 2 (sha256:0123456789ab)``."""
    d = blob.digest or blob.diff_id or "?"
    return f"layer {blob.index} ({d[:19]})"


def check_digests(blob: LayerBlob, digest: str | None, diff_id: str | None) -> None:
    """A LayerError naming the layer when the computed digests differ from the blob's.

    ``digest`` is that of the stored bytes and ``diff_id`` that of the uncompressed tar;
    either may be None (not computed: the layer was cut at the bomb cap).
    """
    what = layer_label(blob)
    if blob.digest and digest and digest != blob.digest:
        raise LayerError(
            f"{what}: blob digest mismatch (manifest says {blob.digest}, content is {digest})"
        )
    if blob.diff_id and diff_id and diff_id != blob.diff_id:
        raise LayerError(
            f"{what}: diff_id mismatch (config says {blob.diff_id}, "
            f"uncompressed content is {diff_id})"
        )


class LayerWalker:
    """Iterate the entries of one layer blob; check digests when the stream ends."""

    def __init__(self, blob: LayerBlob, limits: WalkLimits | None = None) -> None:
        self.blob = blob
        self.limits = limits or WalkLimits()
        self.stats = WalkStats()
        self._ints: dict[int, int] = {}

    def __iter__(self) -> Iterator[Entry]:
        what = layer_label(self.blob)
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

    def _open(self, raw: BinaryIO, what: str) -> tuple[HashingReader, BinaryIO, str, BinaryIO]:
        """Stored-bytes hasher, its buffer, the compression, and the decompressed stream."""
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
        return outer, cast(BinaryIO, buffered), comp, inner

    def _walk(self, raw: BinaryIO, what: str) -> Iterator[Entry]:
        outer, buffered, comp, inner = self._open(raw, what)
        plain = TarStream(inner, what=what, label=comp, limit=self.limits.max_layer_bytes)
        errors = stream_errors(comp)
        try:
            yield from self._entries(plain, what)
            while buffered.read(1 << 20):  # the stored digest covers every stored byte
                pass
        except LayerLimitExceeded:
            self.stats.uncompressed_bytes = plain.count
            self.stats.compressed_bytes = outer.count
            self.record_limit("/")
            return
        except errors as exc:
            msg = str(exc) or type(exc).__name__
            raise LayerError(f"{what}: corrupt or truncated {comp} stream ({msg})") from None
        self._verify(outer, plain.digest(), plain.count, what)

    def _verify(self, outer: HashingReader, plain_digest: str, plain_count: int, what: str) -> None:
        """Record the byte counts and check the blob digest and the diff_id."""
        self.stats.uncompressed_bytes = plain_count
        self.stats.compressed_bytes = outer.count
        stored = outer.digest() if outer.hashing else plain_digest
        self.stats.digest, self.stats.diff_id = stored, plain_digest
        check_digests(self.blob, stored, plain_digest)

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

    def _entries(self, plain: TarStream, what: str) -> Iterator[Entry]:
        tar = TarReader(plain)
        index = self.blob.index
        stats = self.stats
        for member in tar:
            stats.entries += 1
            entry = self._entry(member, index)
            if entry is None:
                continue
            if entry.event.kind is EntryKind.FILE and not entry.sparse:
                problem = None if member.sparse is None else sparse_problem(member)
                if problem is None:
                    entry.reader = cast(BinaryIO, tar.reader(member))
                else:  # a map only random access could follow: reported, not read
                    stats.unscanned.append(
                        Unscanned(index, entry.event.path, f"{problem}; content not scanned")
                    )
                    entry.sparse = True
            yield entry
        # After the end-of-archive marker only zero padding may follow: anything else
        # would be entries a reader that stops at the marker never shows.
        if not plain.rest_is_zero():
            raise LayerError(
                f"{what}: corrupt tar stream (invalid header near offset {tar.end}; "
                "entries after it would be hidden)"
            )

    def _entry(self, info: Member, index: int) -> Entry | None:
        name = info.name
        path = normalize_path(name)
        if path is None:
            self.stats.unscanned.append(
                Unscanned(index, name[:4096], "unsafe member name (climbs out with '..'); skipped")
            )
            return None
        kind = _KINDS.get(info.type)
        if kind is None:
            self.stats.unscanned.append(
                Unscanned(index, path, f"unsupported tar entry type {info.type!r}")
            )
            return None
        parent, _, base = path.rpartition("/")
        if base.startswith(WHITEOUT_PREFIX):
            parent = parent or "/"
            if base == OPAQUE_MARKER:
                return Entry(
                    FileEvent(index, parent, EntryKind.OPAQUE, mtime=_int_mtime(info.mtime)), None
                )
            if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
                return None  # aufs bookkeeping (.wh..wh.plnk etc.), not content
            target = posixpath.join(parent, base[len(WHITEOUT_PREFIX) :])
            return Entry(
                FileEvent(index, target, EntryKind.WHITEOUT, mtime=_int_mtime(info.mtime)), None
            )
        linkname: str | None = None
        if kind is EntryKind.SYMLINK:
            linkname = info.linkname
        elif kind is EntryKind.HARDLINK:
            linkname = normalize_path(info.linkname) or info.linkname
        size = info.size
        # Modes, owners and mtimes repeat across a layer's entries: one int object for each
        # value (28 bytes apiece otherwise, for every one of hundreds of thousands of events).
        ints = self._ints
        mode = (info.mode & 0o7777) | _TYPE_BITS[kind]
        mtime = _int_mtime(info.mtime)
        if len(ints) < _MAX_SHARED_INTS:
            mode = ints.setdefault(mode, mode)
            mtime = ints.setdefault(mtime, mtime)
        event = FileEvent(
            index,
            path,
            kind,
            mode,
            info.uid,
            info.gid,
            size if kind is EntryKind.FILE else 0,
            mtime,
            linkname,
            _xattrs(info.pax) if info.pax else NO_XATTRS,
        )
        if info.sparse is not None and kind is EntryKind.FILE and size > self.limits.max_file_bytes:
            self.stats.unscanned.append(
                Unscanned(
                    index,
                    path,
                    f"sparse file with apparent size {size} bytes "
                    "exceeds the per-file limit; content not scanned",
                )
            )
            return Entry(event, None, sparse=True)
        return Entry(event, None)


class _TarfileWalker(LayerWalker):
    """The previous walker, built on ``tarfile``: kept as the reference for equivalence
    tests and ``bench/walk_micro.py``; not used by the scan."""

    def _walk(self, raw: BinaryIO, what: str) -> Iterator[Entry]:
        outer, buffered, comp, inner = self._open(raw, what)
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
        self._verify(outer, plain.digest(), plain.count, what)

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

    def _entries(  # type: ignore[override]
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

    def _entry(self, info: tarfile.TarInfo, index: int) -> Entry | None:  # type: ignore[override]
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
            xattrs=_xattrs(info.pax_headers),
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
