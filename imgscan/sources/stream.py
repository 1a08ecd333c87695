"""One forward pass over a gzip/zstd-compressed image archive, with no spool to disk.

A compressed ``docker save`` archive can only be read front to back, and its
``manifest.json`` / ``index.json`` come last. Instead of inflating it to a temporary
file first, :class:`ArchiveStream` hands every large member to the caller as it passes
(the caller scans it as a *candidate* layer, not yet knowing its place in the image)
and keeps the small ones (manifests, configs, tiny layers) in memory. When the pass is
over, :meth:`ArchiveStream.image` reads the image from what was kept, exactly as the
random-access reader does; the caller then binds each candidate's result to its layer
index and checks its digests against the manifest and the config.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, cast

from imgscan.errors import SourceError
from imgscan.sources.archive import (
    _MAX_LINK_DEPTH,
    _digest_of_blob_name,
    _open_store,
    safe_member_name,
)
from imgscan.sources.base import Image, SourceOptions
from imgscan.sources.common import GZIP_MAGIC

# Members up to this size are kept in memory (metadata and tiny layers), and so are
# larger ones that look like JSON, up to the metadata limit; the rest are streamed.
KEEP_BYTES = 1 << 20
KEEP_TOTAL = 64 << 20
# An image archive holds a few members per layer; a hostile one could hold millions, and
# each costs a little bookkeeping here: past this many, it is refused.
MAX_MEMBERS = 1 << 16
# What tarfile's stream mode raises on a broken outer tar (decompression errors arrive as
# SourceErrors from _Raw already).
_TAR_ERRORS = (tarfile.TarError, OSError, EOFError, ValueError)


@dataclass(slots=True)
class StreamedMember:
    """A large archive member, readable once, until the next member is asked for."""

    name: str
    size: int
    digest: str | None  # from a ``blobs/<algo>/<hex>`` name, when it has one
    reader: BinaryIO


class MemoryStore:
    """The members seen in one pass: small ones kept, large ones only recorded."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._data: dict[str, bytes | None] = {}
        self._sizes: dict[str, int] = {}
        self._links: dict[str, tuple[bool, str]] = {}  # name -> (symbolic, link target)
        self.kept_bytes = 0

    def add(self, name: str, size: int, data: bytes | None) -> None:
        """Record a regular member (``data`` None: streamed, not kept)."""
        self._data[name] = data
        self._sizes[name] = size
        if data is not None:
            self.kept_bytes += len(data)

    def add_link(self, name: str, symbolic: bool, target: str) -> None:
        """Record a symbolic or hard link member."""
        self._links[name] = (symbolic, target)

    def resolve(self, name: str) -> str:
        """The regular member ``name`` stands for, following links inside the archive."""
        key = safe_member_name(name, self.label)
        for _ in range(_MAX_LINK_DEPTH):
            if key in self._sizes:
                return key
            link = self._links.get(key)
            if link is None:
                raise SourceError(f"{self.label}: {name} is missing from the archive")
            symbolic, target = link
            joined = posixpath.join(posixpath.dirname(key), target) if symbolic else target
            key = safe_member_name(joined, f"{self.label}: link {key}")
        raise SourceError(f"{self.label}: symlink loop while resolving {name}")

    def exists(self, name: str) -> bool:
        """Whether the named member exists (after following links)."""
        try:
            self.resolve(name)
        except SourceError:
            return False
        return True

    def size(self, name: str) -> int:
        """Size of the named member."""
        return self._sizes[self.resolve(name)]

    def open(self, name: str) -> BinaryIO:
        """Open a kept member; a streamed one cannot be read again."""
        key = self.resolve(name)
        data = self._data[key]
        if data is None:
            raise SourceError(f"{self.label}: {name} was streamed once and is not kept")
        return io.BytesIO(data)

    def streamed(self, name: str) -> bool:
        """Whether ``name`` (after links) was handed out as a StreamedMember."""
        return self._data.get(self.resolve(name), b"") is None


class ArchiveStream:
    """Read a compressed image archive once; see the module docstring."""

    def __init__(self, path: str, options: SourceOptions, reference: str | None = None) -> None:
        self.path = path
        self.options = options
        self.reference = reference or path
        self.tag = reference if reference and reference != path else None
        self.store = MemoryStore(path)
        self._done = False

    def _fail(self, exc: BaseException) -> SourceError:
        msg = str(exc) or type(exc).__name__
        return SourceError(f"{self.path}: corrupt compressed archive ({msg})")

    def members(self) -> Iterator[StreamedMember]:
        """Yield each large member in archive order; keep the small ones."""
        try:
            raw = open(self.path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise SourceError(f"{self.path}: cannot read ({exc.strerror})") from None
        try:
            from imgscan.layers.compression import gzip_reader, stream_errors, zstd_reader

            comp = "gzip" if raw.read(4).startswith(GZIP_MAGIC) else "zstd"
            raw.seek(0)
            src = gzip_reader(raw) if comp == "gzip" else zstd_reader(raw)
            what = f"{self.path}: corrupt compressed archive"
            raw_io = _Raw(src, what, stream_errors(comp))
            buffered = io.BufferedReader(cast(io.RawIOBase, raw_io), buffer_size=1 << 20)
            try:
                tf = tarfile.open(fileobj=buffered, mode="r|")  # noqa: SIM115
            except _TAR_ERRORS as exc:
                raise self._fail(exc) from None
            try:
                yield from self._members(tf)
            finally:
                tf.close()
        finally:
            raw.close()
        self._done = True

    def _members(self, tf: tarfile.TarFile) -> Iterator[StreamedMember]:
        limit = self.options.max_metadata_bytes
        count = 0
        while True:
            try:
                info = tf.next()
            except _TAR_ERRORS as exc:
                raise self._fail(exc) from None
            if info is None:
                return
            count += 1
            if count > MAX_MEMBERS:
                raise SourceError(
                    f"{self.path}: more than {MAX_MEMBERS} entries; not an image archive"
                )
            tf.members = []  # type: ignore[attr-defined]  # else every TarInfo is kept
            try:
                name = safe_member_name(info.name.lstrip("/") or ".", self.path)
            except SourceError:
                continue  # unsafe names are never looked up: the manifest check rejects them
            if info.issym() or info.islnk():
                self.store.add_link(name, info.issym(), info.linkname)
                continue
            if not info.isfile():
                continue
            try:
                f = tf.extractfile(info)
                if f is None:
                    continue
                # all of a small member; of a large one, the first byte (is it JSON?)
                head = f.read(info.size if info.size <= KEEP_BYTES else 1)
                keep = info.size <= KEEP_BYTES or (head[:1] in (b"{", b"[") and info.size <= limit)
                if keep and self.store.kept_bytes + info.size <= KEEP_TOTAL:
                    data = head + f.read(info.size - len(head))
                    if len(data) != info.size:
                        raise EOFError(f"{name} is truncated")
                    self.store.add(name, info.size, data)
                    continue
            except _TAR_ERRORS as exc:
                raise self._fail(exc) from None
            self.store.add(name, info.size, None)
            reader = cast(
                BinaryIO, io.BufferedReader(cast(io.RawIOBase, _Prefixed(head, cast(BinaryIO, f))))
            )
            yield StreamedMember(name, info.size, _digest_of_blob_name(name), reader)

    def image(self) -> Image:
        """The image, read from the kept members once the pass is over."""
        if not self._done:
            raise SourceError(f"{self.path}: the archive was not read to its end")
        return _open_store(self.store, self.options, self.reference, self.tag)

    def member_name(self, name: str) -> str:
        """The regular member a manifest's layer path stands for (links followed)."""
        return self.store.resolve(name)


class _Raw(io.RawIOBase):
    """A raw-IO face for a decompressor's reader, so BufferedReader can sit on it.

    A decompression error is the archive's, wherever the read came from (the walker
    reading a member, or the outer tar), so it becomes one SourceError here.
    """

    def __init__(self, inner: BinaryIO, what: str, errors: tuple[type[BaseException], ...]) -> None:
        self._inner = inner
        self._what = what
        self._errors = errors

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            data = self._inner.read(len(b))
        except self._errors as exc:
            raise SourceError(f"{self._what} ({str(exc) or type(exc).__name__})") from None
        n = len(data)
        memoryview(b)[:n] = data
        return n


class _Prefixed(io.RawIOBase):
    """Bytes already read from a member, then the rest of it."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(b)
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(view))
        n = len(data)
        view[:n] = data
        return n


__all__ = [
    "KEEP_BYTES",
    "MAX_MEMBERS",
    "ArchiveStream",
    "MemoryStore",
    "StreamedMember",
]
