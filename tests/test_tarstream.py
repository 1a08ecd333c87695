"""The stream walker (imgscan.layers.tarstream) against the tarfile-based reference walker.

Every valid archive must give the same events, the same content, the same unscanned
records and the same byte counts through ``LayerWalker`` as through ``_TarfileWalker``
(the previous implementation, kept for this comparison). Archives are built with the
standard library's tarfile in every format, by GNU tar (sparse files), by hand (odd
headers), and at random with hypothesis. Broken archives must end in one LayerError.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pyzstd
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from imgscan.errors import LayerError
from imgscan.layers.compression import LayerLimitExceeded
from imgscan.layers.walker import Entry, LayerWalker, WalkLimits, _TarfileWalker
from imgscan.model import EntryKind, FileEvent, Unscanned
from imgscan.sources.base import LayerBlob

FORMATS = {"ustar": tarfile.USTAR_FORMAT, "gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT}
MiB = 1 << 20


# -- building blobs --------------------------------------------------------------------------
def compress(tar: bytes, comp: str) -> bytes:
    """The layer blob as stored."""
    if comp == "gzip":
        return gzip.compress(tar, compresslevel=1, mtime=0)
    if comp == "zstd":
        return bytes(pyzstd.compress(tar))
    return tar


def blob_of(tar: bytes, comp: str = "none", index: int = 1) -> LayerBlob:
    """A layer blob whose digest and diff_id describe ``tar`` (compressed as ``comp``)."""
    stored = compress(tar, comp)
    return LayerBlob(
        index=index,
        digest="sha256:" + hashlib.sha256(stored).hexdigest(),
        diff_id="sha256:" + hashlib.sha256(tar).hexdigest(),
        size=len(stored),
        media_type=None,
        open=lambda: io.BytesIO(stored),
    )


@dataclass
class Spec:
    """One member to write with tarfile."""

    name: str
    kind: bytes = tarfile.REGTYPE
    content: bytes = b""
    linkname: str = ""
    uid: int = 0
    gid: int = 0
    mode: int = 0o644
    mtime: int = 1_700_000_000
    devmajor: int = 0
    devminor: int = 0
    pax: dict[str, str] | None = None


def build(specs: list[Spec], fmt: int, global_pax: dict[str, str] | None = None) -> bytes:
    """A tar of ``specs`` written by the standard library in format ``fmt``."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt, pax_headers=global_pax or {}) as tf:
        for s in specs:
            ti = tarfile.TarInfo(s.name)
            ti.type = s.kind
            ti.linkname = s.linkname
            ti.uid, ti.gid, ti.mode, ti.mtime = s.uid, s.gid, s.mode, s.mtime
            ti.devmajor, ti.devminor = s.devmajor, s.devminor
            if s.pax:
                ti.pax_headers = dict(s.pax)
            if s.kind == tarfile.REGTYPE:
                ti.size = len(s.content)
                tf.addfile(ti, io.BytesIO(s.content))
            else:
                tf.addfile(ti)
    return out.getvalue()


# -- walking ---------------------------------------------------------------------------------
Reader = Callable[[Entry], bytes | None]


def read_all(entry: Entry) -> bytes | None:
    """Read like scan_layer: whole when small, else in 8 MiB chunks."""
    if entry.reader is None:
        return None
    size = entry.event.size
    if size <= 8 * MiB:
        return entry.reader.read(size)
    parts = []
    while chunk := entry.reader.read(8 * MiB):
        parts.append(chunk)
    return b"".join(parts)


def read_none(entry: Entry) -> bytes | None:
    """Leave the content for the walker to skip."""
    return None


def read_pieces(entry: Entry) -> bytes | None:
    """Odd-sized reads, then whatever is left, then a read past the end."""
    if entry.reader is None:
        return None
    parts = [entry.reader.read(1), entry.reader.read(7), entry.reader.read(1000)]
    parts.append(entry.reader.read())
    assert entry.reader.read(10) == b""
    return b"".join(parts)


def read_head(entry: Entry) -> bytes | None:
    """Only the first 100 bytes (the rest must be skipped)."""
    return None if entry.reader is None else entry.reader.read(100)


READERS: dict[str, Reader] = {
    "all": read_all,
    "none": read_none,
    "pieces": read_pieces,
    "head": read_head,
}


@dataclass
class Outcome:
    """Everything a walk shows: events, what was read, records, counts, or the error."""

    events: list[tuple[FileEvent, dict[str, bytes], bool, bytes | None]]
    unscanned: list[Unscanned]
    counts: tuple[int, int, int, str, str | None, str | None]
    error: str | None = None


def walk(
    cls: type[LayerWalker],
    blob: LayerBlob,
    reader: Reader = read_all,
    limits: WalkLimits | None = None,
) -> Outcome:
    """Walk ``blob`` with walker class ``cls``, reading content with ``reader``."""
    walker = cls(blob, limits)
    events = []
    error = None
    try:
        for entry in walker:
            content = reader(entry)
            events.append((entry.event, dict(entry.event.xattrs), entry.sparse, content))
    except LayerLimitExceeded as exc:
        error = f"limit: {exc}"
    except LayerError as exc:
        error = str(exc)
    s = walker.stats
    counts = (
        s.entries,
        s.uncompressed_bytes,
        s.compressed_bytes,
        s.compression,
        s.digest,
        s.diff_id,
    )
    return Outcome(events, list(s.unscanned), counts, error)


def assert_same(
    blob: LayerBlob, reader: Reader = read_all, limits: WalkLimits | None = None
) -> Outcome:
    """The stream walker and the reference agree on ``blob``; returns the outcome."""
    new = walk(LayerWalker, blob, reader, limits)
    old = walk(_TarfileWalker, blob, reader, limits)
    assert new.error == old.error
    assert len(new.events) == len(old.events)
    for a, b in zip(new.events, old.events, strict=True):
        assert a == b
    assert new.unscanned == old.unscanned
    assert new.counts == old.counts
    return new


# -- a varied archive in every format --------------------------------------------------------
def varied_specs(fmt: str) -> list[Spec]:
    """Most kinds of member a layer holds, with names and numbers that stress each format."""
    link_len = 80 if fmt == "ustar" else 200
    long_dir = "usr/share/" + "/".join(f"dir{i:02d}-with-a-longish-name" for i in range(6))
    specs = [
        Spec("etc/", tarfile.DIRTYPE, mode=0o755),
        Spec("etc/hostname", content=b"box\n"),
        Spec("etc/empty", content=b""),
        Spec("./etc/dot-slash", content=b"x" * 511),
        Spec("etc//double//slash", content=b"y" * 512),
        Spec("/abs/olute", content=b"z" * 513),
        Spec("etc/big.bin", content=bytes(range(256)) * 9000),  # crosses the 1 MiB blocks
        Spec(long_dir + "/file.txt", content=b"deep\n"),  # > 100 chars: prefix / L / pax path
        Spec("etc/sym", tarfile.SYMTYPE, linkname="../usr/lib/" + "t" * link_len),
        Spec("etc/hard", tarfile.LNKTYPE, linkname="etc/hostname"),
        Spec("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
        Spec("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0),
        Spec("run/fifo", tarfile.FIFOTYPE),
        Spec("app/.wh.secret.txt", content=b""),
        Spec("app/.wh..wh..opq", content=b""),
        Spec("app/.wh..wh.plnk", content=b""),
        Spec("../escape.txt", content=b"no\n"),
        Spec("app/run.sh", content=b"#!/bin/sh\n", mode=0o4755, uid=1000, gid=1000),
    ]
    if fmt != "ustar":
        specs += [
            Spec("app/" + "n" * 300, content=b"long name\n"),  # GNU 'L' / pax path
            Spec("app/huge-ids", content=b"ids\n", uid=2**33 + 5, gid=2**40),  # base-256 / pax
            Spec("app/old", content=b"old\n", mtime=-86400),
            Spec("app/ünïcødé-名前.txt", content="ünï\n".encode()),
            Spec("app/bad-\udcff-utf8", content=b"latin1 name\n"),  # an undecodable byte
        ]
    if fmt == "pax":
        specs += [
            Spec(
                "app/caps",
                content=b"\x7fELF",
                pax={
                    "SCHILY.xattr.security.capability": "cap_net_bind",
                    "SCHILY.xattr.user.note": "ünï",
                    "LIBARCHIVE.xattr.user.b64": "aGVsbG8",
                    "mtime": "1700000000.75",
                },
            ),
            Spec("app/pax-ids", content=b"", pax={"uid": "70000", "gid": "70001"}),
        ]
    return specs


@pytest.mark.parametrize("comp", ["none", "gzip", "zstd"])
@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("reader", list(READERS))
def test_varied_archive_same_events_and_content(fmt: str, comp: str, reader: str) -> None:
    """Every format x compression x read pattern: identical to the tarfile walker."""
    tar = build(varied_specs(fmt), FORMATS[fmt])
    out = assert_same(blob_of(tar, comp), READERS[reader])
    assert out.error is None
    kinds = {e[0].kind for e in out.events}
    assert kinds >= {
        EntryKind.FILE,
        EntryKind.DIR,
        EntryKind.SYMLINK,
        EntryKind.HARDLINK,
        EntryKind.CHAR,
        EntryKind.BLOCK,
        EntryKind.FIFO,
        EntryKind.WHITEOUT,
        EntryKind.OPAQUE,
    }
    assert [u.path for u in out.unscanned] == ["../escape.txt"]
    if reader == "all":
        big = next(e for e in out.events if e[0].path == "/etc/big.bin")
        assert big[3] == bytes(range(256)) * 9000
    if fmt == "pax":
        caps = next(e for e in out.events if e[0].path == "/app/caps")
        assert caps[1] == {
            "security.capability": b"cap_net_bind",
            "user.note": "ünï".encode(),
            "user.b64": b"hello",
        }
        assert caps[0].mtime == 1_700_000_000


def test_global_pax_header_applies_to_every_member() -> None:
    """A pax 'g' header: its records (uid, xattrs) reach every later member."""
    tar = build(
        [Spec("a", content=b"a"), Spec("b/", tarfile.DIRTYPE)],
        tarfile.PAX_FORMAT,
        global_pax={"uid": "4242", "SCHILY.xattr.user.g": "global"},
    )
    out = assert_same(blob_of(tar))
    assert [e[0].uid for e in out.events] == [4242, 4242]
    assert all(e[1] == {"user.g": b"global"} for e in out.events)


def test_many_small_files_span_block_boundaries() -> None:
    """Thousands of headers and contents straddling the 1 MiB read blocks."""
    specs = [Spec(f"f/{i:05d}", content=bytes([i % 251]) * (i * 37 % 3000)) for i in range(1500)]
    for fmt in FORMATS.values():
        out = assert_same(blob_of(build(specs, fmt), "gzip"))
        assert len(out.events) == 1500


def test_large_file_is_streamed_in_chunks() -> None:
    """A 20 MiB file read in 8 MiB chunks (beyond the block buffer) and one skipped after."""
    big = hashlib.sha256(b"seed").digest() * (20 * MiB // 32)
    tar = build([Spec("big", content=big), Spec("skip", content=big[: 3 * MiB]), Spec("end")], 1)
    assert_same(blob_of(tar, "gzip"))
    assert_same(blob_of(tar), read_head)


def test_reader_is_dead_after_the_walk_moves_on() -> None:
    """An old entry's reader gives nothing once the next entry is out."""
    tar = build([Spec("a", content=b"A" * 5000), Spec("b", content=b"B" * 10)], tarfile.PAX_FORMAT)
    it = iter(LayerWalker(blob_of(tar)))
    first = next(it)
    assert first.reader is not None and first.reader.read(3) == b"AAA"
    second = next(it)
    assert first.reader.read() == b""
    assert second.reader is not None and second.reader.read() == b"B" * 10


# -- hand-made headers -------------------------------------------------------------------------
def pax_record(key: bytes, value: bytes) -> bytes:
    """One ``"%d %s=%s\\n"`` pax record."""
    body = b" " + key + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n = len(str(n)) + len(body)
    return str(n).encode() + body


def ext_member(kind: bytes, data: bytes) -> bytes:
    """A pax ('x'/'g') or GNU long name ('L'/'K') header with its data."""
    ti = tarfile.TarInfo("././@LongLink" if kind in (b"L", b"K") else "././@PaxHeader")
    ti.type, ti.size = kind, len(data)
    return ti.tobuf(tarfile.USTAR_FORMAT) + data + bytes(-len(data) % 512)


def plain_member(
    name: str, content: bytes = b"", kind: bytes = tarfile.REGTYPE, **kw: Any
) -> bytes:
    """A ustar header and its data, written by tarfile."""
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.size = len(content)
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti.tobuf(tarfile.USTAR_FORMAT) + content + bytes(-len(content) % 512)


def test_extension_header_nesting_and_binary_xattrs() -> None:
    """'L' inside 'x', 'x' inside 'L', a binary xattr value, pax size and linkpath."""
    binary_xattr = pax_record(b"SCHILY.xattr.security.capability", b"\x01\x00\x00\x02\xff\xfe")
    tar = b"".join(
        [
            ext_member(b"x", pax_record(b"path", b"from/pax") + binary_xattr),
            ext_member(b"L", b"from/gnu-long-name\0"),
            plain_member("short", b"one"),
            ext_member(b"L", b"outer/gnu\0"),
            ext_member(b"x", pax_record(b"path", b"inner/pax") + pax_record(b"size", b"5")),
            plain_member("short2", b"12345"),
            ext_member(b"x", pax_record(b"linkpath", b"/" + b"t" * 300)),
            plain_member("lnk", kind=tarfile.SYMTYPE),
            ext_member(b"K", b"k" * 200 + b"\0"),
            plain_member("hl", kind=tarfile.LNKTYPE),
            ext_member(b"g", pax_record(b"gid", b"77")),
            ext_member(b"x", pax_record(b"mtime", b"nonsense") + pax_record(b"uid", b"x")),
            plain_member("after-global", b"g"),
            bytes(1024),
        ]
    )
    out = assert_same(blob_of(tar, "gzip"))
    paths = [e[0].path for e in out.events]
    assert paths == ["/from/pax", "/outer/gnu", "/lnk", "/hl", "/after-global"]
    assert out.events[0][1] == {"security.capability": b"\x01\x00\x00\x02\xff\xfe"}
    assert out.events[1][3] == b"12345"
    assert out.events[2][0].linkname == "/" + "t" * 300
    assert out.events[4][0].gid == 77 and out.events[4][0].mtime == 0


def test_v7_signed_checksum_base256_and_prefix_headers() -> None:
    """A v7 'dir/' file, a signed-checksum header, base-256 numbers, a ustar prefix."""
    v7 = bytearray(plain_member("olddir/"))
    v7[156:157] = b"\0"
    v7[257:265] = bytes(8)  # no magic: a v7 header
    _rechecksum(v7)
    signed = bytearray(plain_member("caf\xe9", b"s"))
    signed[0:5] = b"caf\xe9\0"
    signed[148:156] = b"%06o\0 " % (
        256 + sum(b - 256 if b > 127 else b for b in signed[:148] + signed[156:512])
    )
    b256 = bytearray(plain_member("b256", b"n"))
    b256[108:116] = b"\x80" + (2**40).to_bytes(7, "big")
    b256[136:148] = b"\xff" * 4 + (-5).to_bytes(8, "big", signed=True)
    _rechecksum(b256)
    prefixed = bytearray(plain_member("name", b"p"))
    prefixed[345:352] = b"pre/fix"
    _rechecksum(prefixed)
    tar = bytes(v7 + signed + b256 + prefixed) + bytes(1024)
    out = assert_same(blob_of(tar))
    assert [e[0].path for e in out.events] == ["/olddir", "/caf\udce9", "/b256", "/pre/fix/name"]
    assert out.events[0][0].kind is EntryKind.DIR
    assert out.events[2][0].uid == 2**40 and out.events[2][0].mtime == -5


def _rechecksum(h: bytearray) -> None:
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h[:512])


# -- sparse files ------------------------------------------------------------------------------
SPARSE_VARIANTS = [
    ("gnu", []),
    ("posix", ["--sparse-version=0.0"]),
    ("posix", ["--sparse-version=0.1"]),
    ("posix", ["--sparse-version=1.0"]),
]


def _gnu_tar_sparse(tmp: Path, fmt: str, extra: list[str]) -> bytes:
    """A tar holding a sparse file, a normal file after it, made by GNU tar."""
    root = tmp / "root"
    root.mkdir(exist_ok=True)
    with open(root / "disk.img", "wb") as f:
        for offset in (0, 300_000, 2 * MiB + 5):
            f.seek(offset)
            f.write(b"DATA%d" % offset * 100)
        f.truncate(5 * MiB)
    (root / "after.txt").write_bytes(b"after\n")
    out = tmp / f"sparse-{fmt}-{'-'.join(extra) or 'old'}.tar"
    subprocess.run(
        [
            "tar",
            "--sparse",
            f"--format={fmt}",
            *extra,
            "-C",
            str(root),
            "-cf",
            str(out),
            "disk.img",
            "after.txt",
        ],
        check=True,
    )
    return out.read_bytes()


@pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar makes the sparse archives")
@pytest.mark.parametrize(
    ("fmt", "extra"), SPARSE_VARIANTS, ids=["gnu-S", "pax-0.0", "pax-0.1", "pax-1.0"]
)
@pytest.mark.parametrize("reader", ["all", "none", "head"])
def test_gnu_tar_sparse_files(tmp_path: Path, fmt: str, extra: list[str], reader: str) -> None:
    """Sparse members of every GNU flavour expand (holes as zeros) like tarfile does."""
    tar = _gnu_tar_sparse(tmp_path, fmt, extra)
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        member = tf.getmember("disk.img")
        if not member.issparse():  # covered by test_hand_made_sparse_members anyway
            pytest.skip("this filesystem keeps no holes, so GNU tar stored disk.img densely")
    out = assert_same(blob_of(tar, "gzip"), READERS[reader])
    disk = out.events[0]
    assert disk[0].path == "/disk.img" and disk[0].size == 5 * MiB and not disk[2]
    it = iter(LayerWalker(blob_of(tar)))
    first = next(it)
    assert first.reader is not None and first.reader.read(4) == b"DATA"
    next(it)  # the sparse reader expires with the walk
    assert first.reader.read(10) == b""
    if reader == "all":
        assert (
            disk[3] is not None
            and len(disk[3]) == 5 * MiB
            and disk[3][300_000:300_006] == b"DATA30"
        )
    # Over the per-file limit: reported, not expanded, identically.
    small = assert_same(blob_of(tar), READERS[reader], WalkLimits(max_file_bytes=MiB))
    assert small.events[0][2] and small.events[0][3] is None
    assert [u.path for u in small.unscanned] == ["/disk.img"]


def _sparse_pax(version: str, name: str, size: int, segments: list[tuple[int, bytes]]) -> bytes:
    """A GNU pax sparse member (0.0, 0.1 or 1.0) holding ``segments`` of a ``size`` file."""
    data = b"".join(d for _, d in segments)
    records = pax_record(b"GNU.sparse.name", name.encode())
    if version == "1.0":
        records += pax_record(b"GNU.sparse.major", b"1") + pax_record(b"GNU.sparse.minor", b"0")
        records += pax_record(b"GNU.sparse.realsize", str(size).encode())
        lines = [str(len(segments))] + [f"{o}\n{len(d)}" for o, d in segments]
        sparse_map = ("\n".join(lines) + "\n").encode()
        data = sparse_map + bytes(-len(sparse_map) % 512) + data
    elif version == "0.1":
        numbers = ",".join(f"{o},{len(d)}" for o, d in segments)
        records += pax_record(b"GNU.sparse.size", str(size).encode())
        records += pax_record(b"GNU.sparse.map", numbers.encode())
    else:
        records += pax_record(b"GNU.sparse.size", str(size).encode())
        records += pax_record(b"GNU.sparse.numblocks", str(len(segments)).encode())
        for o, d in segments:
            records += pax_record(b"GNU.sparse.offset", str(o).encode())
            records += pax_record(b"GNU.sparse.numbytes", str(len(d)).encode())
    return ext_member(b"x", records) + plain_member("GNUSparseFile.0/" + name, data)


@pytest.mark.parametrize("version", ["0.0", "0.1", "1.0", "old-gnu"])
@pytest.mark.parametrize("reader", ["all", "none", "pieces"])
def test_hand_made_sparse_members(version: str, reader: str) -> None:
    """Sparse members of every flavour, built byte by byte, expand like tarfile expands them."""
    from fixtures.hostile import gnu_sparse_member

    segments = [(0, b"head" * 100), (700_000, b"middle" * 300), (3 * MiB - 10, b"0123456789")]
    if version == "old-gnu":
        member = gnu_sparse_member("sp.img", 3 * MiB, b"tail" * 128, 1_700_000_000)
    else:
        member = _sparse_pax(version, "sp.img", 3 * MiB, segments)
    tar = member + plain_member("after", b"after") + bytes(1024)
    out = assert_same(blob_of(tar, "gzip"), READERS[reader])
    assert [e[0].path for e in out.events] == ["/sp.img", "/after"]
    assert out.events[0][0].size == 3 * MiB
    if reader == "all":
        content = out.events[0][3]
        assert content is not None and len(content) == 3 * MiB
        if version != "old-gnu":
            assert content[700_000:700_006] == b"middle" and content[-10:] == b"0123456789"
            assert content[400:700_000] == bytes(700_000 - 400)
        assert out.events[1][3] == b"after"


def test_malformed_sparse_map_is_unscanned() -> None:
    """A pax sparse map out of order cannot be expanded forward: reported, walk goes on."""
    records = pax_record(b"GNU.sparse.map", b"4096,10,0,10") + pax_record(
        b"GNU.sparse.size", b"8192"
    )
    tar = ext_member(b"x", records) + plain_member("sp", b"x" * 20) + plain_member("ok", b"ok")
    out = walk(LayerWalker, blob_of(tar + bytes(1024)))
    assert out.error is None
    assert [e[0].path for e in out.events] == ["/sp", "/ok"] and out.events[1][3] == b"ok"
    assert (
        out.unscanned and out.unscanned[0].path == "/sp" and "sparse map" in out.unscanned[0].reason
    )


# -- limits, tails, digests: same outcome as before ---------------------------------------------
@pytest.mark.parametrize("reader", ["all", "none"])
@pytest.mark.parametrize("cap", [1000, 3 * MiB, -1, 0, 1], ids=str)
def test_bomb_cap_same_as_before(reader: str, cap: int) -> None:
    """The uncompressed cap stops the layer at the same point, reported the same way.

    Small caps are absolute; -1, 0 and 1 are relative to the tar's exact length.
    """
    tar = build([Spec("a", content=b"a" * 4 * MiB), Spec("b", content=b"b" * 100)], 1)
    limit = cap if cap > 1 else len(tar) + cap
    out = assert_same(blob_of(tar, "gzip"), READERS[reader], WalkLimits(max_layer_bytes=limit))
    over = limit < len(tar)
    hit = bool(out.unscanned) or (out.error or "").startswith("limit")
    assert hit == over


@pytest.mark.parametrize(
    "tail",
    [bytes(1024), bytes(512), b"", bytes(10_000), bytes(1024) + b"junk", bytes(3 * MiB) + b"\1"],
)
def test_end_of_archive_and_tail_check(tail: bytes) -> None:
    """End markers of any length pass; a non-zero byte after the end is a LayerError."""
    body = b"".join(plain_member(f"f{i}", b"c" * i) for i in range(3))
    out = assert_same(blob_of(body + tail))
    if tail.strip(b"\0"):
        assert out.error is not None and "entries after it would be hidden" in out.error


def test_digest_and_diff_id_mismatch_messages_unchanged() -> None:
    """Wrong digests give exactly the messages they gave before."""
    tar = build([Spec("a", content=b"a")], 1)
    good = blob_of(tar, "gzip")
    for bad in (
        LayerBlob(1, "sha256:" + "0" * 64, good.diff_id, None, None, good.open),
        LayerBlob(1, good.digest, "sha256:" + "1" * 64, None, None, good.open),
        LayerBlob(1, None, "sha256:" + "2" * 64, None, None, lambda: io.BytesIO(tar)),
    ):
        out = assert_same(bad)
        assert out.error is not None and "mismatch" in out.error


@pytest.mark.parametrize(
    "data",
    [b"", b"\0" * 100, b"x" * 100, b"x" * 512, bytes(1024)],
    ids=["empty", "short-zeros", "short-junk", "junk-block", "only-end-marker"],
)
def test_degenerate_layers(data: bytes) -> None:
    """Empty, truncated or junk layers: errors (or an empty layer) as before."""
    new = walk(LayerWalker, blob_of(data))
    old = walk(_TarfileWalker, blob_of(data))
    assert (new.error is None) == (old.error is None)
    assert new.events == old.events == []
    if old.error:
        assert new.error == old.error


def test_truncated_content_is_a_layer_error_when_read_or_skipped() -> None:
    """Data cut short: one LayerError whether the consumer reads the content or not."""
    tar = build([Spec("a", content=b"a" * 5000), Spec("b", content=b"b")], 1)
    cut = tar[:2000]
    for reader in (read_all, read_none, read_pieces):
        out = walk(LayerWalker, blob_of(cut), reader)
        assert out.error is not None and "unexpected end of data" in out.error


# -- hypothesis ---------------------------------------------------------------------------------
_SEGMENT = st.text(
    alphabet=st.sampled_from("abcxyz019._-ÿé名\udcff "), min_size=1, max_size=40
).filter(lambda s: s not in (".wh..wh..opq",))


@st.composite
def member_specs(draw: st.DrawFn) -> Spec:
    """One random member (name, kind, ids, times, content)."""
    parts = draw(
        st.lists(
            st.one_of(_SEGMENT, st.sampled_from([".", "..", "", ".wh.x"])), min_size=1, max_size=8
        )
    )
    name = draw(st.sampled_from(["", "./", "/"])) + "/".join(parts)
    kind = draw(
        st.sampled_from(
            [tarfile.REGTYPE] * 4
            + [tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE]
        )
    )
    size = draw(st.one_of(st.integers(0, 2000), st.sampled_from([511, 512, 513, MiB - 1, MiB + 1])))
    return Spec(
        name=name or "x",
        kind=kind,
        content=(bytes([len(name) % 256]) * size) if kind == tarfile.REGTYPE else b"",
        linkname=draw(st.one_of(st.just(""), _SEGMENT, st.text(max_size=200))),
        uid=draw(st.one_of(st.integers(0, 65535), st.integers(0, 2**45))),
        gid=draw(st.integers(0, 2**21)),
        mode=draw(st.integers(0, 0o7777)),
        mtime=draw(st.one_of(st.integers(0, 2**33 - 1), st.integers(-(2**40), 2**40))),
        pax=draw(
            st.one_of(
                st.none(),
                st.dictionaries(
                    st.sampled_from(
                        ["SCHILY.xattr.user.a", "SCHILY.xattr.security.selinux", "comment"]
                    ),
                    st.text(max_size=30),
                    max_size=2,
                ),
            )
        ),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=st.lists(member_specs(), min_size=0, max_size=12),
    fmt=st.sampled_from(list(FORMATS)),
    comp=st.sampled_from(["none", "gzip"]),
    reader=st.sampled_from(list(READERS)),
)
def test_random_archives_match_tarfile(specs: list[Spec], fmt: str, comp: str, reader: str) -> None:
    """Random members in a random format: the same events and content as tarfile gives."""
    try:
        tar = build(specs, FORMATS[fmt])
    except (ValueError, UnicodeError):
        assume(False)  # not representable in this format (e.g. negative mtime in ustar)
        raise
    out = assert_same(blob_of(tar, comp), READERS[reader])
    assert out.error is None


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(0, 20_000), flip=st.integers(0, 20_000), byte=st.integers(1, 255))
def test_damaged_archives_give_one_layer_error_or_the_same_events(
    cut: int, flip: int, byte: int
) -> None:
    """Truncated or bit-flipped archives: a one-line LayerError, or what tarfile saw."""
    tar = bytearray(build(varied_specs("pax")[:12], tarfile.PAX_FORMAT))
    tar = tar[: len(tar) - cut % len(tar)]
    if tar:
        tar[flip % len(tar)] ^= byte
    new = walk(LayerWalker, blob_of(bytes(tar)), read_all)  # raises anything but LayerError
    if new.error is not None:
        assert "\n" not in new.error and new.error.startswith("layer 1 (")
        return
    try:
        old = walk(_TarfileWalker, blob_of(bytes(tar)), read_all)
    except Exception:
        return
    if old.error is None:  # both accept it: they must agree on what is in it
        assert new.events == old.events and new.unscanned == old.unscanned


# -- where the stream walker is stricter than tarfile was ----------------------------------------
def test_tar_cut_inside_a_header_is_an_error() -> None:
    """tarfile stopped quietly at a partial header (hiding what followed); now it is an error."""
    tar = build([Spec("a", content=b"a"), Spec("b", content=b"b"), Spec("c")], 1)
    cut = tar[: 1024 + 100]  # inside the second member's header
    assert walk(_TarfileWalker, blob_of(cut)).error is None  # the old blind spot
    out = walk(LayerWalker, blob_of(cut))
    assert out.error is not None and "truncated header at offset 1024" in out.error
    assert [e[0].path for e in out.events] == ["/a"]


def test_garbage_block_in_place_of_the_end_marker_is_an_error() -> None:
    """A non-zero block that is not a header, followed only by zeros, is not an end marker."""
    body = plain_member("a", b"a")
    garbage = bytearray(plain_member("hidden-dir/", kind=tarfile.DIRTYPE))
    garbage[148:150] = b"99"  # its checksum no longer matches
    out = walk(LayerWalker, blob_of(body + bytes(garbage) + bytes(1024)))
    assert out.error is not None and "invalid header near offset 1024" in out.error


@pytest.mark.parametrize("comp", ["gzip", "zstd"])
def test_corrupt_compressed_stream_is_a_layer_error(comp: str) -> None:
    """Flipped bytes inside the compressed data: one LayerError naming the compression."""
    tar = build([Spec(f"f{i}", content=bytes([i]) * 70_000) for i in range(40)], 1)
    stored = bytearray(compress(tar, comp))
    for i in range(len(stored) // 3, len(stored) // 3 + 64):
        stored[i] ^= 0x5A
    blob = LayerBlob(1, None, None, None, None, lambda: io.BytesIO(bytes(stored)))
    for reader in (read_all, read_none):
        out = walk(LayerWalker, blob, reader)
        assert out.error is not None and out.error.startswith("layer 1 (?")
        assert f"corrupt or truncated {comp} stream" in out.error or "corrupt tar" in out.error


def test_oversized_extension_header_is_refused_not_buffered() -> None:
    """A GNU long name claiming 1 GiB is refused before anything is read into memory."""
    ti = tarfile.TarInfo("././@LongLink")
    ti.type, ti.size = b"L", 1 << 30
    out = walk(LayerWalker, blob_of(ti.tobuf(tarfile.USTAR_FORMAT) + bytes(4096)))
    assert out.error is not None and "extended header of 1073741824 bytes" in out.error


def test_non_finite_pax_mtime_reads_as_zero() -> None:
    """A pax mtime of nan or inf cannot be an int: it reads as 0 instead of failing."""
    tar = b"".join(
        [
            ext_member(b"x", pax_record(b"mtime", b"nan")),
            plain_member("a", b"a"),
            ext_member(b"x", pax_record(b"mtime", b"-inf")),
            plain_member("b", b"b"),
            bytes(1024),
        ]
    )
    out = walk(LayerWalker, blob_of(tar))
    assert out.error is None and [e[0].mtime for e in out.events] == [0, 0]


def test_pax_size_overrides_the_header_size() -> None:
    """Files over 8 GiB carry their size in a pax record (header says 0): data follows it."""
    header = plain_member("big-in-pax")  # header size 0
    tar = (
        ext_member(b"x", pax_record(b"size", b"7"))
        + header
        + b"1234567"
        + bytes(505)
        + plain_member("next", b"n")
        + bytes(1024)
    )
    for reader in ("all", "none", "pieces"):
        out = assert_same(blob_of(tar), READERS[reader])
        assert [(e[0].path, e[0].size) for e in out.events] == [("/big-in-pax", 7), ("/next", 1)]
        if reader == "all":
            assert out.events[0][3] == b"1234567"
