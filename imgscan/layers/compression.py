"""Compression by magic bytes, fast gzip (ISA-L when present), and hashing readers."""

from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from typing import Any, BinaryIO, cast

from imgscan.errors import LayerError

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
BZIP2_MAGIC = b"BZh"
XZ_MAGIC = b"\xfd7zXZ\x00"

_igzip: Any
try:  # ISA-L inflates several times faster than zlib; stdlib gzip is the fallback.
    from isal import igzip as _igzip

    HAVE_ISAL = True
except ImportError:  # pragma: no cover - depends on the platform's wheels
    _igzip = None
    HAVE_ISAL = False


def stream_errors(compression: str) -> tuple[type[BaseException], ...]:
    """What a reader of this compression raises on corrupt or truncated input."""
    errors: list[type[BaseException]] = [EOFError, zlib.error, OSError, ValueError]
    if compression == "gzip" and _igzip is not None:
        from isal import isal_zlib

        errors.append(cast(type[BaseException], isal_zlib.error))
    elif compression == "zstd":
        import pyzstd

        errors.append(pyzstd.ZstdError)
    return tuple(errors)


def sniff(head: bytes) -> str:
    """Name the compression of a stream from its first bytes: gzip, zstd, bzip2, xz or none."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith(BZIP2_MAGIC):
        return "bzip2"
    if head.startswith(XZ_MAGIC):
        return "xz"
    return "none"


def gzip_reader(raw: BinaryIO, *, use_isal: bool | None = None) -> BinaryIO:
    """A streaming gzip reader over ``raw`` (ISA-L if available and not disabled)."""
    if (use_isal if use_isal is not None else HAVE_ISAL) and _igzip is not None:
        return cast(BinaryIO, _igzip.IGzipFile(fileobj=raw, mode="rb"))
    return cast(BinaryIO, gzip.GzipFile(fileobj=raw, mode="rb"))


def zstd_reader(raw: BinaryIO) -> BinaryIO:
    """A streaming zstd reader over ``raw`` (multi-frame)."""
    import pyzstd

    return cast(BinaryIO, pyzstd.ZstdFile(raw, mode="rb"))


class HashingReader(io.RawIOBase):
    """Passes bytes through while hashing and counting them; optionally caps the total."""

    def __init__(
        self,
        inner: BinaryIO,
        *,
        algo: str = "sha256",
        limit: int | None = None,
        what: str = "stream",
    ) -> None:
        self._inner = inner
        self._hash = hashlib.new(algo)
        self.algo = algo
        self.count = 0
        self.limit = limit
        self.what = what
        self.over_limit = False
        self.hashing = True  # off when another reader hashes the very same bytes

    def readable(self) -> bool:
        """Always readable."""
        return True

    def seekable(self) -> bool:
        """Seekable forwards only: skipping reads (and hashes) the bytes in between."""
        return True

    def tell(self) -> int:
        """Bytes read so far."""
        return self.count

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Skip forward to ``offset``; seeking backwards is an error."""
        if whence == io.SEEK_CUR:
            offset += self.count
        elif whence != io.SEEK_SET:
            raise OSError("layer streams cannot seek from the end")
        if offset < self.count:
            raise OSError(f"{self.what}: cannot seek backwards in a layer stream")
        buf = bytearray(min(1 << 20, max(offset - self.count, 1)))
        while self.count < offset:
            want = min(len(buf), offset - self.count)
            n = self.readinto(memoryview(buf)[:want])
            if n == 0:
                break
        return self.count

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        """Read into ``b``, hashing what passes."""
        view = memoryview(b)
        want = len(view)
        if self.limit is not None:
            room = self.limit - self.count
            if room <= 0:
                # Probe one byte: if more data exists, the cap is exceeded.
                if self._inner.read(1):
                    self.over_limit = True
                    raise LayerLimitExceeded(f"{self.what}: more than {self.limit} bytes")
                return 0
            want = min(want, room)
        data = self._inner.read(want)
        n = len(data)
        if n:
            view[:n] = data
            if self.hashing:
                self._hash.update(data)
            self.count += n
        return n

    def read(self, size: int = -1) -> bytes:
        """Read up to ``size`` bytes (all when negative)."""
        if size is None or size < 0:
            chunks: list[bytes] = []
            while True:
                c = self.read(1 << 20)
                if not c:
                    return b"".join(chunks)
                chunks.append(c)
        buf = bytearray(size)
        n = self.readinto(buf)
        return bytes(buf[:n])

    def drain(self) -> None:
        """Read (and hash) whatever remains."""
        while self.read(1 << 20):
            pass

    def digest(self) -> str:
        """``algo:hex`` of everything read so far."""
        return f"{self.algo}:{self._hash.hexdigest()}"


class LayerLimitExceeded(LayerError):
    """A layer decompressed to more bytes than the configured cap (a likely bomb)."""
