"""Binary files: recognise them by magic, and pull out their printable strings (like ``strings``).

A key compiled into an executable or kept as a ``.pyc`` constant is plain ASCII
somewhere inside the binary. ``printable_runs`` finds those runs with one regex
pass over the bytes (no per-byte Python loop); ``StringsView`` joins them into a
text that text-only detectors can scan, and maps offsets back to the binary.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from imgscan.detect.base import ContentDetector, FileContext, Hit
from imgscan.detect.nested import kind_of

_HEAD = 8192

# Magic numbers of formats that are binary even when their first 8 KiB hold no NUL.
_MAGICS: tuple[bytes, ...] = (
    b"\x7fELF",  # ELF executables, shared objects, core files
    b"\xfe\xed\xfa\xce",  # Mach-O 32-bit BE
    b"\xfe\xed\xfa\xcf",  # Mach-O 64-bit BE
    b"\xce\xfa\xed\xfe",  # Mach-O 32-bit LE
    b"\xcf\xfa\xed\xfe",  # Mach-O 64-bit LE
    b"\xca\xfe\xba\xbe",  # Mach-O universal / Java class file
    b"\x00asm",  # WebAssembly
    b"PK\x03\x04",  # zip family
    b"\x1f\x8b",  # gzip
    b"\x28\xb5\x2f\xfd",  # zstd
    b"\xfd7zXZ\x00",  # xz
    b"BZh",  # bzip2 (followed by a digit, checked below)
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",  # JPEG
    b"GIF8",
    b"SQLite format 3\x00",
    b"\xfe\xed\xfe\xed",  # Java KeyStore
    b"\xce\xce\xce\xce",  # JCEKS
    b"dex\n",  # Android DEX
)
_PE_SIGNATURE = b"PE\x00\x00"

_ASCII_RUN = {n: re.compile(rb"[\x20-\x7e\t]{%d,}" % n) for n in (4, 6, 8, 12, 16)}
_UTF16_RUN = {n: re.compile(rb"(?:[\x20-\x7e]\x00){%d,}" % n) for n in (4, 6, 8, 12, 16)}


def _ascii_re(min_len: int) -> re.Pattern[bytes]:
    pat = _ASCII_RUN.get(min_len)
    return pat if pat is not None else re.compile(rb"[\x20-\x7e\t]{%d,}" % min_len)


def _utf16_re(min_len: int) -> re.Pattern[bytes]:
    pat = _UTF16_RUN.get(min_len)
    return pat if pat is not None else re.compile(rb"(?:[\x20-\x7e]\x00){%d,}" % min_len)


def is_pe(data: bytes) -> bool:
    """Whether ``data`` starts like a Windows PE executable (MZ header pointing at ``PE\\0\\0``)."""
    if not data.startswith(b"MZ") or len(data) < 0x40:
        return False
    e_lfanew = int.from_bytes(data[0x3C:0x40], "little")
    return data[e_lfanew : e_lfanew + 4] == _PE_SIGNATURE if e_lfanew < len(data) else True


def is_pyc(data: bytes) -> bool:
    """Whether ``data`` looks like a CPython 3 bytecode file (magic ends in ``\\r\\n``)."""
    return (
        len(data) >= 16
        and data[2:4] == b"\r\n"
        and 2900 <= int.from_bytes(data[0:2], "little") < 5000
    )


def is_binary(data: bytes) -> bool:
    """Whether a file is binary, judged from its first bytes (magic numbers, NUL bytes)."""
    head = data[:_HEAD]
    if not head:
        return False
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) and len(head) >= 4:
        # UTF-16 text with a BOM: NUL-laden but text; we still treat it as binary so the
        # strings view (which decodes UTF-16LE runs) is what text detectors see.
        return True
    for magic in _MAGICS:
        if head.startswith(magic):
            if magic == b"BZh":
                return len(head) > 3 and head[3:4].isdigit()
            return True
    if is_pe(head) or is_pyc(head):
        return True
    return b"\x00" in head


def printable_runs(
    data: bytes, min_len: int = 8, *, utf16: bool | None = None
) -> Iterator[tuple[int, bytes]]:
    """Yield ``(offset, run)`` for every printable ASCII run of ``min_len`` or more bytes.

    With ``utf16`` (default: only for PE executables and UTF-16 BOM files) UTF-16LE
    runs are decoded to ASCII and merged in offset order.
    """
    if utf16 is None:
        utf16 = is_pe(data[:_HEAD]) or data.startswith(b"\xff\xfe")
    ascii_iter = ((m.start(), m.group()) for m in _ascii_re(min_len).finditer(data))
    if not utf16:
        yield from ascii_iter
        return
    wide_iter = ((m.start(), m.group()[::2]) for m in _utf16_re(min_len).finditer(data))
    yield from _merge(ascii_iter, wide_iter)


def _merge(
    a: Iterator[tuple[int, bytes]], b: Iterator[tuple[int, bytes]]
) -> Iterator[tuple[int, bytes]]:
    """Merge two offset-ordered iterators (they never overlap: a UTF-16 run has NULs)."""
    x = next(a, None)
    y = next(b, None)
    while x is not None or y is not None:
        if y is None or (x is not None and x[0] <= y[0]):
            assert x is not None
            yield x
            x = next(a, None)
        else:
            yield y
            y = next(b, None)


# marshal type codes of str objects (with or without FLAG_REF 0x80): short ASCII ('z', 'Z')
# have a 1-byte length, the others ('a', 'A', 'u', 't') a 4-byte little-endian length.
_MARSHAL_STR_RE = re.compile(rb"[zZ\xfa\xda]|[aAut\xe1\xc1\xf5\xf4]", re.DOTALL)
_SHORT_TYPES = frozenset(b"zZ\xfa\xda")


def pyc_strings(data: bytes, min_len: int = 8) -> Iterator[tuple[int, bytes]]:
    """Yield ``(offset, value)`` for the printable str constants and names of a .pyc file."""
    pos = 16  # after the header
    end = len(data)
    for m in _MARSHAL_STR_RE.finditer(data, 16):
        p = m.start()
        if p < pos:
            continue
        if data[p] in _SHORT_TYPES:
            if p + 2 > end:
                break
            n, start = data[p + 1], p + 2
        else:
            if p + 5 > end:
                break
            n, start = int.from_bytes(data[p + 1 : p + 5], "little"), p + 5
        if n < min_len or start + n > end:
            continue
        value = data[start : start + n]
        if _ascii_re(min_len).fullmatch(value):
            yield start, value
            pos = start + n


@dataclass(frozen=True, slots=True)
class StringsView:
    """The printable runs of a binary joined by newlines, with a map back to binary offsets."""

    text: bytes
    starts: tuple[int, ...]  # offset of each run inside ``text``
    origins: tuple[int, ...]  # offset of each run inside the binary
    wide: tuple[bool, ...]  # whether the run was UTF-16LE (2 bytes per character)

    def original_offset(self, offset: int) -> int:
        """Map an offset inside ``text`` to the offset of the same byte in the binary."""
        if not self.starts:
            return offset
        i = bisect.bisect_right(self.starts, offset) - 1
        if i < 0:
            return self.origins[0]
        delta = offset - self.starts[i]
        return self.origins[i] + (2 * delta if self.wide[i] else delta)


def strings_view(data: bytes, min_len: int = 8, *, utf16: bool | None = None) -> StringsView:
    """Join the printable runs of ``data`` into one newline-separated text."""
    if utf16 is None:
        utf16 = is_pe(data[:_HEAD]) or data.startswith(b"\xff\xfe")
    if is_pyc(data[:_HEAD]):
        runs = list(pyc_strings(data, min_len))
        run_starts: list[int] = []
        at = 0
        for _, run in runs:
            run_starts.append(at)
            at += len(run) + 1
        return StringsView(
            b"\n".join(r for _, r in runs),
            tuple(run_starts),
            tuple(o for o, _ in runs),
            (False,) * len(runs),
        )
    parts: list[bytes] = []
    starts: list[int] = []
    origins: list[int] = []
    wide: list[bool] = []
    pos = 0
    ascii_re = _ascii_re(min_len)
    if not utf16:
        for m in ascii_re.finditer(data):
            run = m.group()
            starts.append(pos)
            origins.append(m.start())
            parts.append(run)
            pos += len(run) + 1
        wide = [False] * len(starts)
    else:
        ascii_iter = ((m.start(), m.group(), False) for m in ascii_re.finditer(data))
        wide_iter = ((m.start(), m.group()[::2], True) for m in _utf16_re(min_len).finditer(data))
        for origin, run, is_wide in sorted((*ascii_iter, *wide_iter), key=lambda t: t[0]):
            starts.append(pos)
            origins.append(origin)
            wide.append(is_wide)
            parts.append(run)
            pos += len(run) + 1
    return StringsView(b"\n".join(parts), tuple(starts), tuple(origins), tuple(wide))


class BinaryStringsDetector:
    """Runs text detectors over the printable strings of binary files.

    For ``.pyc`` files a detector's ``scan_strings(ctx, text)`` is used when it has
    one (constants and their names are separate runs there). Text files and archives
    are left alone (the inner detectors see text
    directly, the nested expander opens archives); hit
    offsets are mapped back to the binary, and hits carry ``no_line``.
    """

    name = "strings"

    def __init__(self, inner: Sequence[ContentDetector], min_len: int = 8) -> None:
        self.inner = list(inner)
        self.min_len = min_len

    def scan(self, ctx: FileContext, data: bytes) -> Iterable[Hit]:
        """Yield hits of the inner detectors found in the strings of a binary ``data``."""
        if not is_binary(data) or kind_of(data[:512]) is not None:
            return  # text is scanned directly; archives are expanded (imgscan.detect.nested)
        view = strings_view(data, self.min_len)
        if not view.text:
            return
        compiled = is_pyc(data)
        for det in self.inner:
            strings_scan = getattr(det, "scan_strings", None) if compiled else None
            hits = strings_scan(ctx, view.text) if strings_scan else det.scan(ctx, view.text)
            for hit in hits:
                yield Hit(
                    rule=hit.rule,
                    title=hit.title,
                    severity=hit.severity,
                    secret=hit.secret,
                    offset=view.original_offset(hit.offset),
                    category=hit.category,
                    message=hit.message,
                    validated=hit.validated,
                    no_line=True,
                    extra={**hit.extra, "in_binary": True},
                )
