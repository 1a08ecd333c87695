"""Compressed archives are scanned in one pass with no spool, and give what the
random-access reader gives; the whole-image and blob-alias caches serve rescans."""

from __future__ import annotations

import gzip
import json
import os
import tarfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import pyzstd
from click.testing import CliRunner

from fixtures import hostile
from fixtures.builder import build
from fixtures.spec import all_specs, load_spec
from imgscan.cli import main
from imgscan.model import ScanResult
from imgscan.scan import Detectors, ScanOptions, build_detectors, scan_image, scan_streamed
from imgscan.sources.common import is_compressed_archive
from imgscan.sources.stream import ArchiveStream

SPECS = all_specs()
FORMATS = ("docker-legacy", "docker-oci", "oci-tar")


@pytest.fixture(scope="module")
def detectors() -> Detectors:
    return build_detectors(ScanOptions(jobs=1))


@pytest.fixture(params=["keep-small", "stream-all"])
def keep(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Fixture layers are tiny: also stream every non-JSON member, as real layers are."""
    if request.param == "stream-all":
        monkeypatch.setattr("imgscan.sources.stream.KEEP_BYTES", 0)
    return str(request.param)


def _squeeze(src: Path, how: str) -> Path:
    """``src`` (a plain outer tar) compressed as a whole, like ``docker save | gzip``."""
    data = src.read_bytes()
    if how == "gzip":
        out = src.with_name(src.name + ".gz")
        out.write_bytes(gzip.compress(data, compresslevel=1, mtime=0))
    else:
        out = src.with_name(src.name + ".zst")
        out.write_bytes(pyzstd.compress(data))
    return out


def _view(r: ScanResult) -> dict[str, Any]:
    """What a report says, minus timings and the reference typed by the user."""
    from imgscan.workflows.cache import encode_scan_result

    doc = encode_scan_result(r)
    doc["image"].pop("reference")
    doc.pop("stats")
    return doc


def _random_access(path: Path, det: Detectors) -> ScanResult:
    from imgscan.scan import scan_opened
    from imgscan.sources.archive import open_path

    opts = ScanOptions(jobs=1)
    with open_path(str(path), opts.source) as image:
        return scan_opened(image, opts, detectors=det)


CASES = [
    (spec, fmt, how, last)
    for spec in SPECS
    for fmt in FORMATS
    for how, last in (("gzip", True), ("gzip", False), ("zstd", True))
    if not (how == "zstd" and fmt != "docker-oci")
]


@pytest.mark.parametrize(
    ("spec", "fmt", "how", "last"),
    CASES,
    ids=[f"{s.stem}-{f}-{h}-{'last' if m else 'first'}" for s, f, h, m in CASES],
)
def test_streamed_scan_equals_random_access(
    spec: Path, fmt: str, how: str, last: bool, tmp_path: Path, detectors: Detectors, keep: str
) -> None:
    plain = build(load_spec(spec), fmt, tmp_path / "img.tar", "gzip", manifest_last=last)
    squeezed = _squeeze(plain, how)
    assert is_compressed_archive(str(squeezed)) and not is_compressed_archive(str(plain))
    streamed = scan_streamed(str(squeezed), ScanOptions(jobs=1), detectors=detectors)
    assert _view(streamed) == _view(_random_access(plain, detectors))
    assert streamed.stats["layers"] == len(streamed.image.layers)


def test_nothing_is_spooled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    plain = build(load_spec(SPECS[0]), "docker-oci", tmp_path / "img.tar", "gzip")
    squeezed = _squeeze(plain, "gzip")
    seen: list[str] = []
    real_mkdtemp = __import__("tempfile").mkdtemp

    def spy(*a: Any, **kw: Any) -> str:
        seen.append("mkdtemp")
        return str(real_mkdtemp(*a, **kw))

    monkeypatch.setattr("tempfile.mkdtemp", spy)
    scan_image(str(squeezed), ScanOptions(jobs=1, source=replace(ScanOptions().source)))
    assert seen == [] and list(spool.iterdir()) == []


def test_members_are_streamed_or_kept(tmp_path: Path) -> None:
    """Large members go past once; small ones (metadata) are kept and read back."""
    plain = build(load_spec(SPECS[0]), "docker-oci", tmp_path / "img.tar", "gzip")
    big = os.urandom(3 << 20)
    with tarfile.open(plain, "a") as tf:
        ti = tarfile.TarInfo("blobs/sha256/" + "0" * 64)
        ti.size = len(big)
        import io

        tf.addfile(ti, io.BytesIO(big))
    stream = ArchiveStream(str(_squeeze(plain, "gzip")), ScanOptions().source)
    with pytest.raises(Exception, match="not read to its end"):
        stream.image()
    names = []
    for m in stream.members():
        names.append(m.name)
        if m.name.endswith("0" * 64):
            assert m.reader.read() == big and m.digest == "sha256:" + "0" * 64
    assert "blobs/sha256/" + "0" * 64 in names
    image = stream.image()
    assert image.blobs and image.info.config_digest
    assert not stream.store.streamed("manifest.json")


@pytest.mark.parametrize("case", hostile.CASES, ids=[c.name for c in hostile.CASES])
def test_hostile_inputs_gzipped(case: hostile.HostileCase, tmp_path: Path, keep: str) -> None:
    """Each hostile archive, gzipped as a whole, fails (or is reported) just as it does plain."""
    src = tmp_path / "in"
    src.mkdir()
    image = case.write(src)
    if image.is_dir():  # an OCI layout directory: pack it as an OCI tar, then compress that
        packed = tmp_path / "layout.tar"
        with tarfile.open(packed, "w") as tf:
            for p in sorted(image.rglob("*")):
                tf.add(p, arcname=p.relative_to(image).as_posix(), recursive=False)
        image = packed
    squeezed = _squeeze(image, "gzip")
    args = ["scan", "--format", "json", "-q"]
    if case.max_layer_bytes:
        args += ["--max-layer-size", str(case.max_layer_bytes)]
    plain = CliRunner().invoke(main, [*args, str(image)])
    got = CliRunner().invoke(main, [*args, str(squeezed)])
    assert "Traceback" not in got.output
    assert got.exit_code == plain.exit_code, (got.stderr, plain.stderr)
    if case.outcome == "error":
        lines = [ln for ln in got.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("imgscan: error: "), got.stderr
        assert "internal error" not in lines[0]
        if case.error == "LayerError":
            assert "layer 1" in lines[0], lines[0]
    else:
        a, b = json.loads(plain.stdout), json.loads(got.stdout)
        assert a["findings"] == b["findings"]
        assert a["unscanned"] == b["unscanned"]


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
def test_truncated_or_corrupt_outer_stream(cut: float, tmp_path: Path) -> None:
    plain = build(load_spec(SPECS[0]), "docker-oci", tmp_path / "img.tar", "gzip")
    data = _squeeze(plain, "gzip").read_bytes()
    short = tmp_path / "short.tar.gz"
    short.write_bytes(data[: int(len(data) * cut)])
    flipped = tmp_path / "flipped.tar.gz"
    mid = int(len(data) * cut)
    flipped.write_bytes(data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1 :])
    for bad in (short, flipped):
        res = CliRunner().invoke(main, ["scan", str(bad), "-q"])
        assert res.exit_code == 3, res.output
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("imgscan: error: "), res.stderr
        assert "internal error" not in lines[0]


def test_unreferenced_garbage_member_is_ignored(tmp_path: Path, detectors: Detectors) -> None:
    """A large non-layer member no manifest names costs a failed walk, never the scan."""
    plain = build(load_spec(SPECS[0]), "docker-oci", tmp_path / "img.tar", "gzip")
    base = scan_streamed(str(_squeeze(plain, "gzip")), ScanOptions(jobs=1), detectors=detectors)
    junk = os.urandom(2 << 20)
    import io

    with tarfile.open(plain, "a") as tf:
        ti = tarfile.TarInfo("junk.bin")
        ti.size = len(junk)
        tf.addfile(ti, io.BytesIO(junk))
    got = scan_streamed(str(_squeeze(plain, "gzip")), ScanOptions(jobs=1), detectors=detectors)
    assert _view(got) == _view(base)


def test_an_archive_of_countless_members_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bookkeeping per member is small but not free: a flood of entries is an error."""
    monkeypatch.setattr("imgscan.sources.stream.MAX_MEMBERS", 50)
    plain = tmp_path / "flood.tar"
    import io

    with tarfile.open(plain, "w") as tf:
        for i in range(60):
            ti = tarfile.TarInfo(f"f{i}")
            ti.size = 1
            tf.addfile(ti, io.BytesIO(b"x"))
    res = CliRunner().invoke(main, ["scan", str(_squeeze(plain, "gzip")), "-q"])
    assert res.exit_code == 3
    assert "more than 50 entries" in res.stderr and len(res.stderr.strip().splitlines()) == 1


# -- caches --------------------------------------------------------------------------------------
def _cli_json(*args: str) -> dict[str, Any]:
    res = CliRunner().invoke(main, ["scan", "--format", "json", "-q", *args])
    assert res.exit_code in (0, 1), res.output
    return dict(json.loads(res.stdout))


def _spec_path(name: str) -> Path:
    return next(p for p in SPECS if p.stem == name)


@pytest.mark.parametrize("how", ["gzip", "none"])
def test_rescan_is_served_whole_from_the_image_cache(how: str, tmp_path: Path) -> None:
    plain = build(load_spec(_spec_path("whiteout-key")), "docker-oci", tmp_path / "i.tar", "gzip")
    image = _squeeze(plain, "gzip") if how == "gzip" else plain
    cache = str(tmp_path / "vc.sqlite")
    cold = _cli_json(str(image), "--cache", cache)
    warm = _cli_json(str(image), "--cache", cache)
    bare = _cli_json(str(image))
    assert cold["findings"] == warm["findings"] == bare["findings"]
    assert cold["findings"], "the fixture plants secrets"
    assert cold["stats"]["layers_scanned"] == len(cold["image"]["layers"])
    assert warm["stats"]["layers_scanned"] == 0 and warm["stats"]["image_cache_hit"] is True


def test_layers_are_found_by_blob_digest_in_a_new_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same layers, another config (a new label): every layer comes from the cache."""
    monkeypatch.setattr("imgscan.sources.stream.KEEP_BYTES", 0)
    spec = load_spec(_spec_path("whiteout-key"))
    first = _squeeze(build(spec, "docker-oci", tmp_path / "a.tar", "gzip"), "gzip")
    config = dict(spec.config)
    config["Labels"] = {**dict(config.get("Labels") or {}), "org.example.rebuilt": "yes"}
    second = _squeeze(
        build(replace(spec, config=config), "docker-oci", tmp_path / "b.tar", "gzip"), "gzip"
    )
    cache = str(tmp_path / "vc.sqlite")
    _cli_json(str(first), "--cache", cache)
    warm = _cli_json(str(second), "--cache", cache)
    bare = _cli_json(str(second))
    assert warm["image"]["config_digest"] != _cli_json(str(first))["image"]["config_digest"]
    assert warm["stats"]["layers_scanned"] == 0
    assert not warm["stats"].get("image_cache_hit")
    assert warm["findings"] == bare["findings"]


def test_a_cached_digest_name_does_not_vouch_for_changed_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A blob whose bytes no longer match its digest name fails even when the name is cached."""
    monkeypatch.setattr("imgscan.sources.stream.KEEP_BYTES", 0)
    good = _squeeze(build(hostile.base_spec(), "oci-tar", tmp_path / "good.tar", "gzip"), "gzip")
    cache = str(tmp_path / "vc.sqlite")
    _cli_json(str(good), "--cache", cache)
    src = tmp_path / "bad"
    src.mkdir()
    bad = _squeeze(hostile.digest_mismatch(src, fmt="oci-tar"), "gzip")
    res = CliRunner().invoke(main, ["scan", str(bad), "-q", "--cache", cache])
    assert res.exit_code == 3
    assert "digest mismatch" in res.stderr and "layer 1" in res.stderr


def test_package_files_flag_is_part_of_the_layer_key(tmp_path: Path) -> None:
    plain = build(load_spec(_spec_path("demo")), "docker-oci", tmp_path / "d.tar", "gzip")
    cache = str(tmp_path / "vc.sqlite")
    _cli_json(str(plain), "--cache", cache)
    cached_all = _cli_json(str(plain), "--cache", cache, "--all")
    assert cached_all["stats"]["layers_scanned"] == len(cached_all["image"]["layers"])
    assert cached_all["findings"] == _cli_json(str(plain), "--all")["findings"]
