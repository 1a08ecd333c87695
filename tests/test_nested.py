"""Archive and compressed-file expansion, with bombs, corrupt input and deep nesting."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import tracemalloc
import zipfile

import pytest
import pyzstd
from hypothesis import given, settings
from hypothesis import strategies as st

from imgscan.detect.base import FileContext
from imgscan.detect.nested import (
    ArchiveFilter,
    NestedExpander,
    NestLimits,
    expand,
    kind_of,
    wants_archive,
)
from imgscan.model import Unscanned


def _ctx(path: str = "/app/outer", depth: int = 0) -> FileContext:
    return FileContext(path=path, layer=2, size=0, depth=depth)


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tar(members: dict[str, bytes], mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:  # type: ignore[call-overload]
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _split(items: list[object]) -> tuple[dict[str, bytes], list[Unscanned]]:
    files: dict[str, bytes] = {}
    skipped: list[Unscanned] = []
    for item in items:
        if isinstance(item, Unscanned):
            skipped.append(item)
        else:
            ctx, data = item  # type: ignore[misc]
            files[ctx.path] = data
    return files, skipped


def test_zip_members_are_named_outer_bang_inner() -> None:
    data = _zip(
        {
            "META-INF/app.properties": b"db.password=hunter22\n",
            "dir/": b"",
            "../../etc/evil": b"just a name",
        }
    )
    items = list(expand(_ctx("/app/lib/app.jar"), data))
    files, skipped = _split(items)
    assert skipped == []
    assert files == {
        "/app/lib/app.jar!META-INF/app.properties": b"db.password=hunter22\n",
        "/app/lib/app.jar!../../etc/evil": b"just a name",
    }
    child = next(i for i in items if not isinstance(i, Unscanned))
    assert child[0].depth == 1 and child[0].layer == 2


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_tar_and_compressed_tar_members(mode: str) -> None:
    data = _tar({"etc/app.env": b"TOKEN=abc\n", "x/y.txt": b"hello"}, mode)
    files, skipped = _split(list(expand(_ctx("/srv/bundle.tgz"), data)))
    assert skipped == []
    assert files == {
        "/srv/bundle.tgz!etc/app.env": b"TOKEN=abc\n",
        "/srv/bundle.tgz!x/y.txt": b"hello",
    }


@pytest.mark.parametrize(
    ("path", "compress", "inner"),
    [
        ("/a/notes.txt.gz", gzip.compress, "/a/notes.txt.gz!notes.txt"),
        ("/a/notes.txt.bz2", bz2.compress, "/a/notes.txt.bz2!notes.txt"),
        ("/a/notes.txt.xz", lzma.compress, "/a/notes.txt.xz!notes.txt"),
        ("/a/notes.txt.zst", pyzstd.compress, "/a/notes.txt.zst!notes.txt"),
        ("/a/blob", gzip.compress, "/a/blob!blob.out"),
    ],
)
def test_single_file_compression(path: str, compress: object, inner: str) -> None:
    payload = b"secret: line\n" * 10
    data = compress(payload)  # type: ignore[operator]
    assert wants_archive(_ctx(path), data[:512])
    files, skipped = _split(list(expand(_ctx(path), data)))
    assert skipped == []
    assert files == {inner: payload}


def test_plain_text_is_not_an_archive() -> None:
    assert kind_of(b"hello world" * 100) is None
    assert list(expand(_ctx(), b"hello world" * 100)) == []


def test_zip_bomb_is_reported_not_expanded() -> None:
    data = _zip({"bomb.bin": b"\0" * (40 * 1024 * 1024)})
    assert len(data) < 100_000
    tracemalloc.start()
    items = list(expand(_ctx("/x/bomb.zip"), data))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    files, skipped = _split(items)
    assert files == {}
    assert len(skipped) == 1 and "zip bomb" in skipped[0].reason
    assert skipped[0].path == "/x/bomb.zip!bomb.bin"
    assert peak < 16 * 1024 * 1024


def test_zip_member_that_lies_about_its_size_is_capped() -> None:
    limits = NestLimits(max_member=1000)
    data = _zip({"big.txt": b"a" * 5000}, method=zipfile.ZIP_STORED)
    files, skipped = _split(list(expand(_ctx("/x/a.zip"), data, limits)))
    assert files == {} and "exceeds 1000 bytes" in skipped[0].reason


def test_gzip_bomb_is_reported_with_bounded_memory() -> None:
    bomb = gzip.compress(b"\0" * (200 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 300_000
    tracemalloc.start()
    items = list(expand(_ctx("/x/bomb.gz"), bomb))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    files, skipped = _split(items)
    assert files == {}
    assert len(skipped) == 1
    assert "bomb" in skipped[0].reason or "exceeds" in skipped[0].reason
    assert peak < 100 * 1024 * 1024


def test_tgz_bomb_member_stops_the_stream() -> None:
    bomb = _tar({"ok.txt": b"fine", "zeros": b"\0" * (100 * 1024 * 1024)}, "w:gz")
    files, skipped = _split(list(expand(_ctx("/x/b.tgz"), bomb, NestLimits(max_member=1 << 20))))
    assert files == {"/x/b.tgz!ok.txt": b"fine"}
    assert len(skipped) >= 1


def test_corrupt_archives_become_unscanned() -> None:
    good = _zip({"a.txt": b"hello" * 100})
    corrupt = good[:30] + b"\xff" * 20 + good[50:]
    for path, data in [
        ("/c/a.zip", corrupt),
        ("/c/a.zip", good[:-30]),
        ("/c/a.gz", gzip.compress(b"hello" * 1000)[:-20]),
        ("/c/a.xz", lzma.compress(b"hello" * 1000)[:40]),
        ("/c/a.zst", pyzstd.compress(b"hello" * 1000)[:-5] + b"\x01\x02\x03"),
    ]:
        items = list(expand(_ctx(path), data))
        assert any(isinstance(i, Unscanned) for i in items), path


def test_deep_nesting_stops_at_max_depth_via_expander() -> None:
    data = b"PASSWORD=deep\n"
    for i in range(8):
        data = _zip({f"level{i}.zip" if i else "inner.txt": data})
    expander = NestedExpander(NestLimits(max_depth=4))
    found: dict[str, bytes] = {}
    skipped: list[Unscanned] = []

    def walk(ctx: FileContext, blob: bytes) -> None:
        for item in expander(ctx, blob):
            if isinstance(item, Unscanned):
                skipped.append(item)
            else:
                found[item[0].path] = item[1]
                walk(item[0], item[1])

    walk(_ctx("/deep.zip"), data)
    assert max(p.count("!") for p in found) == 4
    assert len(skipped) == 1 and "deeper than 4" in skipped[0].reason


def test_total_budget_is_shared_across_levels() -> None:
    inner = _zip({f"f{i}.txt": bytes([65 + i]) * 4000 for i in range(5)})
    outer = _zip({"a.zip": inner, "b.zip": inner})
    expander = NestedExpander(NestLimits(max_total=len(inner) * 2 + 12_000))
    seen: list[str] = []
    notes: list[Unscanned] = []

    def walk(ctx: FileContext, blob: bytes) -> None:
        for item in expander(ctx, blob):
            if isinstance(item, Unscanned):
                notes.append(item)
            else:
                seen.append(item[0].path)
                walk(item[0], item[1])

    walk(_ctx("/o.zip"), outer)
    assert "/o.zip!a.zip!f0.txt" in seen
    assert len([p for p in seen if p.endswith(".txt")]) < 10
    assert any("exceeds" in n.reason for n in notes)


def test_member_count_limit() -> None:
    data = _zip({f"m{i}": b"x" for i in range(30)})
    files, skipped = _split(list(expand(_ctx("/m.zip"), data, NestLimits(max_members=10))))
    assert len(files) == 10
    assert "30 members" in skipped[0].reason


def test_encrypted_zip_member_is_unscanned() -> None:
    data = bytearray(_zip({"s.txt": b"x"}, method=zipfile.ZIP_STORED))
    data[6] |= 1  # local header flag bit 0: encrypted
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 8] |= 1
    files, skipped = _split(list(expand(_ctx("/e.zip"), bytes(data))))
    assert files == {} and "encrypted" in skipped[0].reason


def test_stream_input_is_accepted() -> None:
    data = _zip({"a.txt": b"alpha"})
    files, _ = _split(list(expand(_ctx("/s.zip"), io.BytesIO(data))))
    assert files == {"/s.zip!a.txt": b"alpha"}


def test_engine_wiring_finds_a_secret_inside_a_jar_inside_a_tgz() -> None:
    from imgscan.detect.engine import ContentScanner
    from imgscan.detect.entropy import EntropyDetector

    secret = "".join(
        chr(65 + (i * 7) % 26) + str(i % 10) + chr(97 + (i * 5) % 26) for i in range(14)
    )
    props = f"spring.datasource.password={secret}\n".encode()
    jar = _zip({"BOOT-INF/classes/application.properties": props})
    tgz = _tar({"app/lib/service.jar": jar, "app/README": b"hello"}, "w:gz")
    scanner = ContentScanner(
        [EntropyDetector()], expander=NestedExpander(), wants_archive=wants_archive
    )
    out = scanner.scan_reader(_ctx("/srv/release.tgz"), io.BytesIO(tgz), len(tgz))
    paths = {f.path for f in out.findings}
    assert paths == {"/srv/release.tgz!app/lib/service.jar!BOOT-INF/classes/application.properties"}
    assert out.findings[0].line == 1
    assert out.unscanned == []


_MAGICS = [b"PK\x03\x04", b"\x1f\x8b\x08", b"\x28\xb5\x2f\xfd", b"\xfd7zXZ\x00", b"BZh91AY&SY", b""]


@settings(max_examples=300, deadline=None)
@given(magic=st.sampled_from(_MAGICS), body=st.binary(max_size=2048))
def test_random_bytes_never_raise(magic: bytes, body: bytes) -> None:
    for item in expand(_ctx("/fuzz"), magic + body, NestLimits(max_total=1 << 20)):
        assert isinstance(item, Unscanned) or len(item[1]) <= 1 << 20


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(min_value=1, max_value=400), flip=st.integers(min_value=0, max_value=399))
def test_truncated_or_flipped_real_archives_never_raise(cut: int, flip: int) -> None:
    for data in (
        _zip({"a.txt": b"alpha" * 50, "b/c.txt": b"beta" * 30}),
        _tar({"a.txt": b"alpha" * 50}, "w:gz"),
    ):
        broken = bytearray(data[: max(len(data) - cut, 4)])
        broken[flip % len(broken)] ^= 0xFF
        list(expand(_ctx("/fuzz.bin"), bytes(broken)))


def test_archive_filter_skips_package_docs_only_at_the_top() -> None:
    head = gzip.compress(b"x" * 100)[:512]
    flt = ArchiveFilter()
    assert not flt(_ctx("/usr/share/doc/libssl3/changelog.Debian.gz"), head)
    assert not flt(_ctx("/usr/share/man/man1/ls.1.gz"), head)
    assert flt(_ctx("/srv/backup.gz"), head)
    assert flt(FileContext("/usr/share/doc/x.zip!inner.gz", 0, 1, depth=1), head)
    assert not flt(_ctx("/srv/notes.txt"), b"plain text" * 60)
    assert ArchiveFilter(())(_ctx("/usr/share/doc/a.gz"), head)
