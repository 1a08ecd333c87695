"""A forward-only tar reader over large decompressed blocks.

``TarStream`` pulls the uncompressed layer bytes in big blocks, hashing (diff_id),
counting and capping (decompression bomb) each block once. ``TarReader`` parses the
512-byte headers straight out of those blocks and yields one ``Member`` per entry,
with the header semantics of the standard library's ``tarfile`` (ustar, posix/pax,
GNU, v7; GNU long names, pax ``x``/``g`` records, base-256 numbers, GNU and pax
sparse files). Content is read through a ``MemberReader`` that slices the block
buffer for small files and streams big ones; what is not read is skipped.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterator
from typing import BinaryIO
from zlib import adler32

from imgscan.errors import LayerError
from imgscan.layers.compression import LayerLimitExceeded, stream_errors

BLOCK = 512
READ_BLOCK = 1 << 20
MAX_EXTENSION = 16 * 1024 * 1024  # bytes of one pax / GNU long-name header we hold in memory
ZERO_BLOCK = bytes(BLOCK)

REGULAR_TYPES = frozenset((b"0", b"\0", b"7", b"S"))
SUPPORTED_TYPES = REGULAR_TYPES | frozenset((b"1", b"2", b"3", b"4", b"5", b"6", b"L", b"K"))
GNU_TYPES = frozenset((b"L", b"K", b"S"))
EXTENSION_TYPES = frozenset((b"x", b"X", b"g", b"L", b"K"))
_HIGH_BYTES = bytes(range(128, 256))
_PLAIN_DEVICES = frozenset((bytes(16), b"0000000\x000000000\x00", b"0000000 0000000 "))
_PAX_RECORD = re.compile(rb"(\d+) ([^=]+)=")
_GNU_SPARSE_OFFSET = re.compile(rb"\d+ GNU.sparse.offset=(\d+)\n")
_GNU_SPARSE_NUMBYTES = re.compile(rb"\d+ GNU.sparse.numbytes=(\d+)\n")
_PAX_INT_FIELDS = ("size", "uid", "gid")


class _BadHeader(Exception):
    """A header block that is not a valid tar header (message as tarfile words it)."""


def _block(count: int) -> int:
    """``count`` rounded up to a whole number of 512-byte blocks."""
    return (count + BLOCK - 1) & ~(BLOCK - 1)


def _nts(field: bytes) -> str:
    """A NUL-terminated header string (names are UTF-8; undecodable bytes survive)."""
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _nti(field: bytes) -> int:
    """A numeric header field: octal text, or GNU base-256 (0x80 / 0xff lead byte)."""
    lead = field[0]
    if lead == 0o200 or lead == 0o377:
        n = int.from_bytes(field[1:], "big")
        if lead == 0o377:
            n -= 256 ** (len(field) - 1)
        return n
    try:
        return int(field.rstrip(b"\0 ") or b"0", 8)  # the common, well-formed case
    except ValueError:
        pass
    try:  # what tarfile accepts: text up to the first NUL, ASCII, surrounding spaces
        return int(field.split(b"\0", 1)[0].decode("ascii").strip() or "0", 8)
    except ValueError:
        raise _BadHeader("invalid header") from None


def _checksum_ok(hdr: bytes, stored: int) -> bool:
    """The stored checksum matches the unsigned or (Sun/NeXT) signed byte sum."""
    # Adler-32's low half is 1 + the byte sum mod 65521: exact for 256 bytes (<= 65280).
    unsigned = (adler32(hdr[:256]) & 0xFFFF) + (adler32(hdr[256:]) & 0xFFFF) + 254
    field = hdr[148:156]
    unsigned -= sum(field)
    if stored == unsigned:
        return True
    high = BLOCK - len(hdr.translate(None, _HIGH_BYTES))
    high -= 8 - len(field.translate(None, _HIGH_BYTES))
    return stored == unsigned - 256 * high


class TarStream:
    """Uncompressed tar bytes read forward in big blocks: hashed once, counted, capped."""

    __slots__ = (
        "_buf",
        "_errors",
        "_hash",
        "_pos",
        "_read",
        "_update",
        "count",
        "label",
        "limit",
        "what",
    )

    def __init__(
        self,
        inner: BinaryIO,
        *,
        what: str,
        label: str = "none",
        limit: int | None = None,
        algo: str = "sha256",
    ) -> None:
        self._read = inner.read
        self._hash = hashlib.new(algo)
        self._update = self._hash.update
        self._buf = b""
        self._pos = 0
        self.count = 0  # bytes pulled from ``inner`` (all of them hashed)
        self.limit = limit
        self.what = what
        self.label = label  # compression, for error messages
        self._errors = stream_errors(label)

    @property
    def offset(self) -> int:
        """Offset in the tar of the next byte ``take``/``skip`` would consume."""
        return self.count - len(self._buf) + self._pos

    def digest(self) -> str:
        """``algo:hex`` of every byte pulled so far."""
        return f"{self._hash.name}:{self._hash.hexdigest()}"

    def _pull(self, n: int) -> bytes:
        """Up to ``n`` new bytes; short at the end of data or at the cap (next call probes)."""
        if self.limit is not None:
            room = self.limit - self.count
            if room < n:
                if room <= 0:
                    # Probe one byte: if more data exists, the cap is exceeded.
                    if self._call(1):
                        raise LayerLimitExceeded(f"{self.what}: more than {self.limit} bytes")
                    return b""
                n = room  # short at the cap; the next pull probes
        data = self._call(n)
        got = len(data)
        if got:
            while got < n:  # some readers return short reads before the end
                more = self._call(n - got)
                if not more:
                    break
                data += more
                got += len(more)
            self._update(data)
            self.count += got
        return data

    def _call(self, n: int) -> bytes:
        try:
            return self._read(n)
        except self._errors as exc:
            msg = str(exc) or type(exc).__name__
            raise LayerError(
                f"{self.what}: corrupt or truncated {self.label} stream ({msg})"
            ) from None

    def take(self, n: int) -> bytes:
        """The next ``n`` bytes (fewer only at the end of data)."""
        buf = self._buf
        pos = self._pos
        end = pos + n
        if end <= len(buf):
            self._pos = end
            return buf[pos:end]
        rest = buf[pos:]
        need = n - len(rest)
        if need >= READ_BLOCK:  # big content: straight from the decompressor, no buffer
            self._buf = b""
            self._pos = 0
            data = self._pull(need)
            if len(data) < need:  # the end of data, or the cap (then this raises)
                data += self._pull(need - len(data))
            return rest + data if rest else data
        chunk = self._pull(READ_BLOCK)  # read-ahead: short at the cap is fine...
        if len(chunk) < need:  # ...unless these bytes are needed
            chunk += self._pull(need - len(chunk))
        self._buf = chunk
        if len(chunk) < need:  # end of data
            self._pos = len(chunk)
            return rest + chunk
        self._pos = need
        return rest + chunk[:need]

    def skip(self, n: int) -> int:
        """Skip (but still hash) ``n`` bytes; returns how many there were."""
        pos = self._pos + n
        if pos <= len(self._buf):
            self._pos = pos
            return n
        left = pos - len(self._buf)
        self._buf = b""
        self._pos = 0
        while left:
            chunk = self._pull(READ_BLOCK)
            if not chunk:
                return n - left
            if len(chunk) > left:
                self._buf = chunk
                self._pos = left
                return n
            left -= len(chunk)
        return n

    def rest_is_zero(self) -> bool:
        """Consume everything that is left; whether it was all NUL bytes."""
        zero = not self._buf[self._pos :].strip(b"\0")
        self._buf = b""
        self._pos = 0
        while chunk := self._pull(READ_BLOCK):
            zero = zero and not chunk.strip(b"\0")
        return zero


class Member:
    """One tar entry with its extension headers applied (like ``tarfile.TarInfo``)."""

    __slots__ = (
        "data_size",
        "gid",
        "linkname",
        "mode",
        "mtime",
        "name",
        "offset",
        "pax",
        "size",
        "sparse",
        "type",
        "uid",
    )

    def __init__(
        self,
        name: str = "",
        type: bytes = b"0",
        mode: int = 0,
        uid: int = 0,
        gid: int = 0,
        size: int = 0,
        mtime: int | float = 0,
        linkname: str = "",
    ) -> None:
        self.name = name
        self.linkname = linkname
        self.type = type
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size  # apparent size (the real size of a sparse file)
        self.mtime = mtime
        self.pax: dict[str, str] = {}  # pax records in effect (global + extended)
        self.sparse: list[tuple[int, int]] | None = None  # (offset, length) data segments
        self.offset = 0  # where its first header starts in the tar
        self.data_size = 0  # bytes stored after the header(s), without padding

    def isreg(self) -> bool:
        """A regular file (also contiguous files and GNU sparse files)."""
        return self.type in REGULAR_TYPES

    def _apply_pax(self, pax: dict[str, str]) -> None:
        """Override header fields with pax records, the way tarfile does."""
        for key, value in pax.items():
            if key == "path" or key == "GNU.sparse.name":
                self.name = value.rstrip("/") if key == "path" else value
            elif key == "linkpath":
                self.linkname = value
            elif key == "mtime":
                try:
                    self.mtime = float(value)
                except ValueError:
                    self.mtime = 0
            elif key in _PAX_INT_FIELDS or key in ("GNU.sparse.size", "GNU.sparse.realsize"):
                try:
                    number = int(value)
                except ValueError:
                    if key.startswith("GNU."):
                        raise _BadHeader(f"invalid {key} record") from None
                    number = 0
                if key == "uid":
                    self.uid = number
                elif key == "gid":
                    self.gid = number
                else:
                    self.size = number
        self.pax = pax


class MemberReader(io.RawIOBase):
    """The content of one regular file; valid until the walk moves to the next entry."""

    def __init__(self, stream: TarStream, size: int) -> None:
        self._stream = stream
        self.left = size  # stored bytes not yet read

    def readable(self) -> bool:
        """Always readable."""
        return True

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes of content (all that is left when negative)."""
        left = self.left
        if size is None or size < 0 or size > left:
            size = left
        if size <= 0:
            return b""
        data = self._stream.take(size)
        if len(data) != size:
            self.left = 0
            raise LayerError(f"{self._stream.what}: corrupt tar stream (unexpected end of data)")
        self.left = left - size
        return data

    def readall(self) -> bytes:
        """All the content that is left."""
        return self.read(-1)

    def expire(self) -> None:
        """The walk moved on: nothing more can be read through this reader."""
        self.left = 0

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        """Read into ``b``."""
        data = self.read(len(b))
        n = len(data)
        memoryview(b)[:n] = data
        return n


class SparseReader(MemberReader):
    """A sparse file's apparent content: stored segments, zeros in the holes."""

    def __init__(
        self, stream: TarStream, stored: int, segments: list[tuple[int, int]], size: int
    ) -> None:
        super().__init__(stream, stored)
        self._segments = [(o, n) for o, n in segments if n > 0]  # sorted: see sparse_problem
        self._index = 0
        self._position = 0
        self._size = size

    def expire(self) -> None:
        """The walk moved on: nothing more can be read through this reader."""
        self.left = 0
        self._size = self._position

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes of the expanded content."""
        remaining = self._size - self._position
        if size is None or size < 0 or size > remaining:
            size = remaining
        parts: list[bytes] = []
        while size > 0:
            pos = self._position
            if self._index < len(self._segments):
                start, length = self._segments[self._index]
            else:
                start, length = self._size, 0
            if pos < start:  # a hole
                n = min(size, start - pos)
                parts.append(bytes(n))
            else:
                n = min(size, start + length - pos)
                if n <= 0:  # an overlapping segment (sparse_problem refuses those)
                    self._index += 1
                    continue
                parts.append(MemberReader.read(self, n))
                if pos + n == start + length:
                    self._index += 1
            self._position = pos + n
            size -= n
        return b"".join(parts)


class TarReader:
    """Yield the members of a tar stream; unread content is skipped on the way."""

    def __init__(self, stream: TarStream) -> None:
        self.stream = stream
        self.what = stream.what
        self._globals: dict[str, str] = {}
        self._reader: MemberReader | None = None
        self._next_header = 0  # offset of the header after the current member
        self.end = 0  # offset where the member headers stopped (end marker or end of data)

    def _corrupt(self, msg: str) -> LayerError:
        return LayerError(f"{self.what}: corrupt tar stream ({msg})")

    def reader(self, member: Member) -> MemberReader:
        """A content reader for ``member``, the one just yielded (valid until the next)."""
        if member.sparse is not None:
            r: MemberReader = SparseReader(
                self.stream, member.data_size, member.sparse, member.size
            )
        else:
            r = MemberReader(self.stream, member.data_size)
        self._reader = r
        return r

    def __iter__(self) -> Iterator[Member]:
        stream = self.stream
        while True:
            if self._reader is not None:
                self._reader.expire()  # a reader handed out earlier is done
                self._reader = None
            skip = self._next_header - stream.offset
            if skip and stream.skip(skip) != skip:
                raise self._corrupt("unexpected end of data")
            member = self._next()
            if member is None:
                return
            yield member

    def _end_block(self, hdr: bytes, first: bool, start: int) -> None:
        """A header block that is short or all zeros: the end, or an error if misplaced."""
        if not first:  # a long name or pax header must be followed by its member
            if not hdr:
                raise self._corrupt("empty header")
            raise self._corrupt("truncated header" if len(hdr) < BLOCK else "end of file header")
        if start == 0 and len(hdr) < BLOCK:
            raise self._corrupt("empty file" if not hdr else "truncated header")
        if hdr.strip(b"\0"):  # a partial header with data in it: the tar was cut short
            raise self._corrupt(f"truncated header at offset {start}")

    def _hidden(self, offset: int) -> LayerError:
        return self._corrupt(
            f"invalid header near offset {offset}; entries after it would be hidden"
        )

    def _extension(self, size: int, start: int) -> bytes:
        """The data of a pax or GNU long-name header (bounded)."""
        if size < 0 or size > MAX_EXTENSION:
            raise self._corrupt(
                f"extended header of {size} bytes at offset {start} "
                f"(more than {MAX_EXTENSION} bytes)"
            )
        stored = _block(size)
        data = self.stream.take(stored)
        if len(data) != stored:
            raise self._corrupt("unexpected end of data")
        return data

    def _next(self) -> Member | None:
        """Parse the next member with its extension headers; None at the end."""
        stream = self.stream
        take = stream.take
        start = stream.offset
        # Extension headers in the order read: (b"x", pax dict, raw records) or
        # (b"L"/b"K", name, b""). As in tarfile the outermost one wins, so they are
        # applied innermost first.
        mods: list[tuple[bytes, dict[str, str] | str, bytes]] = []
        try:
            while True:
                hdr = take(BLOCK)
                if len(hdr) != BLOCK or hdr == ZERO_BLOCK:
                    self._end_block(hdr, not mods, start)
                    self.end = start
                    return None
                try:
                    numbers = _fields(hdr)
                except _BadHeader as exc:
                    if mods or start == 0:
                        raise
                    raise self._hidden(start) from exc
                kind = hdr[156:157]
                if kind in EXTENSION_TYPES:
                    raw = self._extension(numbers[3], start)
                    if kind == b"x" or kind == b"X":
                        mods.append((b"x", _pax_records(raw, self._globals.copy()), raw))
                    elif kind == b"g":
                        _pax_records(raw, self._globals)
                    else:
                        mods.append((kind, _nts(raw), b""))
                    continue
                return self._finish(_member(hdr, kind, numbers), hdr, mods, start)
        except _BadHeader as exc:
            raise self._corrupt(str(exc)) from None

    def _finish(
        self,
        member: Member,
        hdr: bytes,
        mods: list[tuple[bytes, dict[str, str] | str, bytes]],
        start: int,
    ) -> Member:
        stream = self.stream
        member.offset = start
        kind = member.type
        # Regular files and unknown types store data; links, dirs and devices do not.
        if kind == b"S":
            stored = member.size
            member.size = self._gnu_sparse(member, hdr)
        else:
            stored = member.size if (kind in REGULAR_TYPES or kind not in SUPPORTED_TYPES) else 0
            if self._globals:
                member._apply_pax(dict(self._globals))
        data_start = stream.offset
        next_header = data_start + _block(stored)
        for tag, value, raw in reversed(mods):
            if isinstance(value, str):
                if tag == b"L":
                    member.name = value
                else:
                    member.linkname = value
                continue
            pax = value
            if "GNU.sparse.map" in pax:  # GNU sparse 0.1
                member.sparse = _pairs(pax["GNU.sparse.map"].split(","))
            elif "GNU.sparse.size" in pax:  # GNU sparse 0.0
                offsets = _GNU_SPARSE_OFFSET.findall(raw)
                lengths = _GNU_SPARSE_NUMBYTES.findall(raw)
                member.sparse = [(int(o), int(n)) for o, n in zip(offsets, lengths, strict=False)]
            elif pax.get("GNU.sparse.major") == "1" and pax.get("GNU.sparse.minor") == "0":
                if "size" in pax:  # the stored size (map + data) did not fit the header
                    stored = _int_or_zero(pax["size"])
                    next_header = data_start + _block(stored)
                member.sparse = self._sparse_map_10(stored)
                stored -= stream.offset - data_start
                member._apply_pax(pax)
                if "GNU.sparse.realsize" in pax:  # not "size", whatever the record order
                    member.size = _int_or_zero(pax["GNU.sparse.realsize"])
                continue
            member._apply_pax(pax)
            if "size" in pax and (member.isreg() or member.type not in SUPPORTED_TYPES):
                stored = _int_or_zero(pax["size"])
                next_header = data_start + _block(stored)
        if stored < 0 or member.size < 0:
            raise _BadHeader(f"negative size at offset {start}")
        member.data_size = stored
        self._next_header = next_header
        return member

    def _gnu_sparse(self, member: Member, hdr: bytes) -> int:
        """Old GNU sparse ('S'): segments in the header and extension blocks; real size."""
        segments = [
            (_nti(hdr[pos : pos + 12]), _nti(hdr[pos + 12 : pos + 24]))
            for pos in (386, 410, 434, 458)
        ]
        extended = hdr[482]
        while extended:
            buf = self.stream.take(BLOCK)
            if len(buf) != BLOCK:
                raise _BadHeader("unexpected end of data")
            for pos in range(0, 21 * 24, 24):
                offset = _nti(buf[pos : pos + 12])
                length = _nti(buf[pos + 12 : pos + 24])
                if offset and length:
                    segments.append((offset, length))
            extended = buf[504]
        member.sparse = segments
        return _nti(hdr[483:495])

    def _sparse_map_10(self, stored: int) -> list[tuple[int, int]]:
        """GNU sparse 1.0: the map is text at the start of the data area."""
        stream = self.stream
        limit = min(stored, MAX_EXTENSION)
        buf = stream.take(BLOCK)
        used = BLOCK
        if len(buf) != BLOCK:
            raise _BadHeader("unexpected end of data")
        fields, _, buf = buf.partition(b"\n")
        try:
            count = int(fields)
            numbers: list[bytes] = []
            while len(numbers) < count * 2:
                if b"\n" not in buf:
                    used += BLOCK
                    if used > limit:
                        raise _BadHeader("sparse map larger than its member")
                    more = stream.take(BLOCK)
                    if len(more) != BLOCK:
                        raise _BadHeader("unexpected end of data")
                    buf += more
                number, _, buf = buf.partition(b"\n")
                numbers.append(number)
            return _pairs(numbers)
        except ValueError:
            raise _BadHeader("invalid sparse map") from None


def _int_or_zero(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return 0


def _pairs(numbers: list[str] | list[bytes]) -> list[tuple[int, int]]:
    """``[o1, n1, o2, n2, ...]`` -> ``[(o1, n1), (o2, n2), ...]``."""
    try:
        ints = [int(x) for x in numbers]
    except ValueError:
        raise _BadHeader("invalid sparse map") from None
    return list(zip(ints[::2], ints[1::2], strict=False))


def sparse_problem(member: Member) -> str | None:
    """Why a sparse member's map cannot be expanded in one forward pass (None if it can)."""
    if member.sparse is None:
        return None
    end = 0
    total = 0
    segments = [(o, n) for o, n in member.sparse if n]
    for offset, length in segments:
        if offset < end or length < 0 or offset + length > member.size:
            return "sparse map is out of order or outside the file"
        end = offset + length
        total += length
    if total > member.data_size:
        return "sparse map describes more data than is stored"
    member.sparse = segments
    return None


def _fields(hdr: bytes) -> tuple[int, int, int, int, int]:
    """Mode, uid, gid, size and mtime of a header block that passes tarfile's checks."""
    try:  # plain octal text, as nearly every writer emits it
        mode = int(hdr[100:108].rstrip(b"\0 ") or b"0", 8)
        uid = int(hdr[108:116].rstrip(b"\0 ") or b"0", 8)
        gid = int(hdr[116:124].rstrip(b"\0 ") or b"0", 8)
        size = int(hdr[124:136].rstrip(b"\0 ") or b"0", 8)
        mtime = int(hdr[136:148].rstrip(b"\0 ") or b"0", 8)
        chksum = int(hdr[148:156].rstrip(b"\0 ") or b"0", 8)
    except ValueError:  # base-256, odd padding or garbage: tarfile's order and rules
        chksum = _nti(hdr[148:156])
        if not _checksum_ok(hdr, chksum):
            raise _BadHeader("bad checksum") from None
        mode = _nti(hdr[100:108])
        uid = _nti(hdr[108:116])
        gid = _nti(hdr[116:124])
        size = _nti(hdr[124:136])
        mtime = _nti(hdr[136:148])
    if not _checksum_ok(hdr, chksum):
        raise _BadHeader("bad checksum")
    if hdr[329:345] not in _PLAIN_DEVICES:  # not used, but must be valid numbers
        _nti(hdr[329:337])
        _nti(hdr[337:345])
    return mode, uid, gid, size, mtime


def _member(hdr: bytes, kind: bytes, numbers: tuple[int, int, int, int, int]) -> Member:
    """The member a (checked) header block describes, decoded like tarfile's ``frombuf``."""
    name = hdr[0:100].partition(b"\0")[0].decode("utf-8", "surrogateescape")
    if kind == b"\0" and name.endswith("/"):  # v7: a directory is a file named "x/"
        kind = b"5"
    if kind == b"S":  # old GNU sparse: check its segment fields now, like tarfile
        for pos in range(386, 482, 12):
            _nti(hdr[pos : pos + 12])
        _nti(hdr[483:495])
    elif kind == b"5":
        name = name.rstrip("/")
    if hdr[345] and kind not in GNU_TYPES:
        name = _nts(hdr[345:500]) + "/" + name
    linkname = _nts(hdr[157:257]) if hdr[157] else ""
    mode, uid, gid, size, mtime = numbers
    return Member(name, kind, mode, uid, gid, size, mtime, linkname)


def _pax_records(raw: bytes, into: dict[str, str]) -> dict[str, str]:
    """Add the ``"%d %s=%s\\n"`` records of a pax header to ``into``."""
    pos = 0
    match = _PAX_RECORD.match
    while (found := match(raw, pos)) is not None:
        length = int(found.group(1))
        if length == 0:
            raise _BadHeader("invalid header")
        key = found.group(2).decode("utf-8", "surrogateescape")
        value = raw[found.end(2) + 1 : found.start(1) + length - 1]
        into[key] = value.decode("utf-8", "surrogateescape")
        pos += length
    return into
