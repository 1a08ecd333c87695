"""Nested content: archive members and compressed files, expanded in memory with hard limits.

``expand`` looks at the magic bytes of a file and yields its members as
``(child FileContext, bytes)`` pairs (path ``outer!inner``, depth + 1), or an
``Unscanned`` record naming why something was not expanded (too deep, a bomb,
corrupt, encrypted, over budget). It never raises for bad input and never
writes to disk: member names with ``..`` or a leading ``/`` are just names.
The caller recurses by calling ``expand`` on the children; ``Budget`` carries
the byte allowance of one outer file across that recursion.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import posixpath
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, BinaryIO, Protocol

from imgscan.detect.base import FileContext
from imgscan.model import Unscanned

NestedItem = tuple[FileContext, bytes] | Unscanned

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
XZ_MAGIC = b"\xfd7zXZ\x00"
BZIP2_MAGIC = b"BZh"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")

_READ = 1024 * 1024

try:  # pyzstd is a dependency; its error class lives in whichever zstd backend it wraps
    from pyzstd import ZstdError as _ZstdError

    _ZSTD_ERRORS: tuple[type[Exception], ...] = (_ZstdError,)
except ImportError:  # pragma: no cover
    _ZSTD_ERRORS = ()


class _Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True, slots=True)
class NestLimits:
    """Bounds on what one outer file may expand into."""

    max_depth: int = 4  # archives nested deeper than this are not opened
    max_ratio: float = 200.0  # expanded / compressed, beyond which it is a bomb
    ratio_floor: int = 8 * 1024 * 1024  # the ratio is only judged past this many bytes
    max_total: int = 256 * 1024 * 1024  # expanded bytes per outer file, all levels together
    max_member: int = 64 * 1024 * 1024  # bytes of one member
    max_members: int = 10_000  # members per archive


class Budget:
    """The expanded-bytes allowance left for one outer file (shared by its nested levels)."""

    __slots__ = ("left",)

    def __init__(self, total: int) -> None:
        self.left = total

    def take(self, n: int) -> bool:
        """Spend ``n`` bytes; False (and nothing spent) when that would exceed the allowance."""
        if n > self.left:
            return False
        self.left -= n
        return True


class _Limit(Exception):
    """A size limit was hit while reading; the message is the Unscanned reason."""


def kind_of(head: bytes) -> str | None:
    """The container format named by the first bytes: zip, tar, gzip, zstd, bzip2, xz or None."""
    if head.startswith(ZIP_MAGICS):
        return "zip"
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith(XZ_MAGIC):
        return "xz"
    if head.startswith(BZIP2_MAGIC) and head[3:4].isdigit() and head[4:10] == b"1AY&SY":
        return "bzip2"
    if _is_tar(head):
        return "tar"
    return None


def _is_tar(head: bytes) -> bool:
    if len(head) < 512:
        return False
    if head[257:262] == b"ustar":
        return True
    # v7 tar: validate the header checksum
    try:
        stored = int(head[148:156].strip(b"\0 ") or b"-1", 8)
    except ValueError:
        return False
    calc = sum(head[:148]) + 8 * 32 + sum(head[156:512])
    return stored == calc and head[0] != 0


def wants_archive(ctx: FileContext, head: bytes) -> bool:
    """Whether a file's first bytes say it is an archive or compressed file we can expand."""
    return kind_of(head) is not None


# Package documentation trees: tens of thousands of small .gz man pages and changelogs in a
# Debian image (26k files, 130 MB -> 490 MB expanded on a desktop). Skipping them is the
# main speed knob of nested scanning; they are package-owned and rarely hold secrets.
DOC_PREFIXES = (
    "/usr/share/man/",
    "/usr/share/info/",
    "/usr/share/doc/",
    "/usr/share/locale/",
    "/usr/share/i18n/",
)


class ArchiveFilter:
    """A ``wants_archive`` that skips archives under some path prefixes (outer paths only)."""

    def __init__(self, skip_prefixes: tuple[str, ...] = DOC_PREFIXES) -> None:
        self.skip_prefixes = skip_prefixes

    def __call__(self, ctx: FileContext, head: bytes) -> bool:
        """Whether to expand this file: an archive by magic, not under a skipped prefix."""
        if ctx.depth == 0 and ctx.path.startswith(self.skip_prefixes):
            return False
        return kind_of(head) is not None


def _child(ctx: FileContext, name: str, data: bytes) -> tuple[FileContext, bytes]:
    return (
        FileContext(
            path=f"{ctx.path}!{name}",
            layer=ctx.layer,
            size=len(data),
            mode=0o644,
            depth=ctx.depth + 1,
        ),
        data,
    )


def _read_capped(f: _Reader, cap: int, what: str) -> bytes:
    """Read all of ``f`` but raise _Limit if it holds more than ``cap`` bytes."""
    out = bytearray()
    while True:
        chunk = f.read(min(_READ, cap + 1 - len(out)))
        if not chunk:
            return bytes(out)
        out += chunk
        if len(out) > cap:
            raise _Limit(f"{what} expands beyond {cap} bytes")


class _Capped(io.RawIOBase):
    """A read-only stream over a decompressor that stops with _Limit past ``cap`` bytes."""

    def __init__(self, inner: _Reader, cap: int, compressed: int, limits: NestLimits) -> None:
        self.inner = inner
        self.cap = cap
        self.compressed = max(compressed, 1)
        self.limits = limits
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        data = self.inner.read(len(buf))
        n = len(data)
        buf[:n] = data
        self.count += n
        if self.count > self.cap:
            raise _Limit(f"decompressed stream exceeds {self.cap} bytes")
        lim = self.limits
        if self.count > lim.ratio_floor and self.count > lim.max_ratio * self.compressed:
            raise _Limit(f"compression ratio above {lim.max_ratio:g} (possible decompression bomb)")
        return n


def _decompressor(kind: str, raw: BinaryIO) -> _Reader:
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if kind == "bzip2":
        return bz2.BZ2File(raw, mode="rb")
    if kind == "xz":
        return lzma.LZMAFile(raw, mode="rb")
    import pyzstd

    zf: _Reader = pyzstd.ZstdFile(raw, mode="rb")
    return zf


_SUFFIXES = {
    "gzip": (".gz", ".tgz"),
    "bzip2": (".bz2", ".tbz2"),
    "xz": (".xz", ".txz"),
    "zstd": (".zst", ".tzst"),
}


def _inner_name(ctx: FileContext, kind: str) -> str:
    base = posixpath.basename(ctx.path.rsplit("!", 1)[-1]) or "data"
    for suffix in _SUFFIXES[kind]:
        if base.lower().endswith(suffix):
            stem = base[: -len(suffix)]
            return stem + ".tar" if suffix.startswith(".t") and suffix != ".tar" else stem
    return base + ".out"


def expand(
    ctx: FileContext,
    data: bytes | BinaryIO,
    limits: NestLimits | None = None,
    budget: Budget | None = None,
) -> Iterator[NestedItem]:
    """Yield the members of an archive/compressed file, or Unscanned records for what was not."""
    limits = limits or NestLimits()
    if budget is None:
        budget = Budget(limits.max_total)
    raw = data if isinstance(data, bytes) else _read_stream(data, limits)
    if raw is None:
        yield Unscanned(ctx.layer, ctx.path, f"archive larger than {limits.max_total} bytes")
        return
    kind = kind_of(raw[:512])
    if kind is None:
        return
    if ctx.depth >= limits.max_depth:
        yield Unscanned(
            ctx.layer, ctx.path, f"{kind} nested deeper than {limits.max_depth} levels not expanded"
        )
        return
    try:
        if kind == "zip":
            yield from _expand_zip(ctx, raw, limits, budget)
        elif kind == "tar":
            yield from _expand_tar(ctx, io.BytesIO(raw), limits, budget, len(raw))
        else:
            yield from _expand_stream(ctx, raw, kind, limits, budget)
    except _Limit as exc:
        yield Unscanned(ctx.layer, ctx.path, str(exc))
    except (
        zipfile.BadZipFile,
        tarfile.TarError,
        OSError,
        EOFError,
        lzma.LZMAError,
        zlib.error,
        ValueError,
        NotImplementedError,
        RuntimeError,
    ) as exc:
        yield Unscanned(ctx.layer, ctx.path, f"corrupt {kind}: {type(exc).__name__}: {exc}")
    except _ZSTD_ERRORS as exc:
        yield Unscanned(ctx.layer, ctx.path, f"corrupt {kind}: {type(exc).__name__}: {exc}")


def _read_stream(f: _Reader, limits: NestLimits) -> bytes | None:
    try:
        return _read_capped(f, limits.max_total, "archive")
    except _Limit:
        return None


def _expand_zip(
    ctx: FileContext, raw: bytes, limits: NestLimits, budget: Budget
) -> Iterator[NestedItem]:
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        infos = zf.infolist()
        if len(infos) > limits.max_members:
            yield Unscanned(
                ctx.layer,
                ctx.path,
                f"zip has {len(infos)} members; only the first {limits.max_members} were scanned",
            )
            infos = infos[: limits.max_members]
        for info in infos:
            if info.is_dir():
                continue
            where = f"{ctx.path}!{info.filename}"
            if info.flag_bits & 0x1:
                yield Unscanned(ctx.layer, where, "encrypted zip member not scanned")
                continue
            if info.file_size > limits.max_member:
                yield Unscanned(
                    ctx.layer,
                    where,
                    f"zip member of {info.file_size} bytes exceeds {limits.max_member} bytes",
                )
                continue
            if info.file_size > limits.ratio_floor and info.file_size > limits.max_ratio * max(
                info.compress_size, 1
            ):
                yield Unscanned(
                    ctx.layer,
                    where,
                    f"zip member ratio {info.file_size / max(info.compress_size, 1):.0f} above "
                    f"{limits.max_ratio:g} (possible zip bomb)",
                )
                continue
            try:
                with zf.open(info) as member:
                    content = _read_capped(member, limits.max_member, "zip member")
            except _Limit as exc:
                yield Unscanned(ctx.layer, where, str(exc))
                continue
            except (
                zipfile.BadZipFile,
                OSError,
                EOFError,
                zlib.error,
                NotImplementedError,
                RuntimeError,
                ValueError,
                lzma.LZMAError,
            ) as exc:
                yield Unscanned(ctx.layer, where, f"corrupt zip member: {exc}")
                continue
            if not budget.take(len(content)):
                yield Unscanned(
                    ctx.layer,
                    ctx.path,
                    f"expanded content exceeds {limits.max_total} bytes; rest of archive skipped",
                )
                return
            yield _child(ctx, info.filename, content)


def _expand_tar(
    ctx: FileContext,
    stream: IO[bytes],
    limits: NestLimits,
    budget: Budget,
    compressed: int,
    prefix: str = "",
) -> Iterator[NestedItem]:
    count = 0
    with tarfile.open(fileobj=stream, mode="r|") as tf:
        for member in tf:
            if not member.isfile():
                continue
            count += 1
            where = f"{ctx.path}!{prefix}{member.name}"
            if count > limits.max_members:
                yield Unscanned(
                    ctx.layer,
                    ctx.path,
                    f"tar has more than {limits.max_members} members; the rest were skipped",
                )
                return
            if member.size > limits.max_member:
                yield Unscanned(
                    ctx.layer,
                    where,
                    f"tar member of {member.size} bytes exceeds {limits.max_member} bytes",
                )
                continue
            if not budget.take(member.size):
                yield Unscanned(
                    ctx.layer,
                    ctx.path,
                    f"expanded content exceeds {limits.max_total} bytes; rest of archive skipped",
                )
                return
            f = tf.extractfile(member)
            if f is None:
                continue
            content = _read_capped(f, limits.max_member, "tar member")
            yield _child(ctx, prefix + member.name, content)


def _expand_stream(
    ctx: FileContext, raw: bytes, kind: str, limits: NestLimits, budget: Budget
) -> Iterator[NestedItem]:
    cap = min(budget.left, limits.max_total)
    capped = _Capped(_decompressor(kind, io.BytesIO(raw)), cap, len(raw), limits)
    reader = io.BufferedReader(capped, buffer_size=_READ)
    head = reader.peek(512)[:512]
    if _is_tar(head):
        # A compressed tarball: its members are one level down (outer.tgz!member).
        yield from _expand_tar(ctx, reader, limits, budget, len(raw))
        return
    name = _inner_name(ctx, kind)
    try:
        content = _read_capped(reader, limits.max_member, f"{kind} stream")
    except _Limit as exc:
        yield Unscanned(ctx.layer, f"{ctx.path}!{name}", str(exc))
        return
    if not budget.take(len(content)):
        yield Unscanned(ctx.layer, ctx.path, f"expanded content exceeds {limits.max_total} bytes")
        return
    yield _child(ctx, name, content)


class NestedExpander:
    """An ``engine.Expander``: expands one file, sharing a byte budget with its nested levels.

    The budget is reset whenever a depth-0 file arrives, which matches the
    engine's depth-first recursion. Use one instance per worker thread.
    """

    def __init__(self, limits: NestLimits | None = None) -> None:
        self.limits = limits or NestLimits()
        self._budgets: dict[tuple[int, str], Budget] = {}

    def __call__(self, ctx: FileContext, data: bytes) -> Iterator[NestedItem]:
        """Expand ``data`` of ``ctx`` (see ``expand``)."""
        root = ctx.path.split("!", 1)[0]
        key = (ctx.layer, root)
        if ctx.depth == 0 or key not in self._budgets:
            self._budgets.clear()
            self._budgets[key] = Budget(self.limits.max_total)
        return expand(ctx, data, self.limits, self._budgets[key])
