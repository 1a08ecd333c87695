"""The verdict cache and images on local disk: bytes count, names and manifests do not.

An archive or OCI layout on disk can be edited in place: a layer swapped while its
name, the manifest and the config's diff_ids stay as they were. A cached verdict must
never answer for such an image; the scan with a cache must fail exactly as the scan
without one does. Unchanged bytes are answered from the cache, whole or per layer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fixtures import hostile
from fixtures.builder import FORMATS, build
from fixtures.spec import load_spec
from imgscan.cli import main
from imgscan.contenthash import local_identity
from imgscan.sources.archive import open_path
from imgscan.sources.base import SourceOptions

SPECS = Path(__file__).resolve().parent.parent / "fixtures" / "specs"


def _scan(*args: str) -> tuple[int, dict[str, Any] | None, str]:
    res = CliRunner().invoke(main, ["scan", "--format", "json", "-q", *args])
    doc = json.loads(res.stdout) if res.exit_code in (0, 1) else None
    return res.exit_code, doc, res.stderr.strip()


def _claimed_diff_ids(path: Path) -> list[str | None]:
    with open_path(str(path), SourceOptions()) as image:
        return [li.diff_id for li in image.info.layers]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_layer_swapped_in_place_is_not_answered_from_the_cache(fmt: str, tmp_path: Path) -> None:
    good = build(hostile.base_spec(), fmt, tmp_path / f"good-{fmt}", "gzip")
    cache = str(tmp_path / "vc.sqlite")
    rc, doc, _ = _scan(str(good), "--cache", cache)
    assert rc in (0, 1) and doc is not None
    bad = hostile.digest_mismatch(tmp_path / "bad", fmt=fmt)
    # the edited image claims exactly the layers the cache holds verdicts for
    assert _claimed_diff_ids(bad) == [li["diff_id"] for li in doc["image"]["layers"]]
    bare = _scan(str(bad))
    cached = _scan(str(bad), "--cache", cache)
    assert bare[0] == cached[0] == 3
    assert cached[2] == bare[2] and "layer 1" in cached[2] and "mismatch" in cached[2]


@pytest.mark.parametrize("fmt", FORMATS)
def test_unchanged_local_image_is_answered_whole(fmt: str, tmp_path: Path) -> None:
    path = build(load_spec(SPECS / "whiteout-key.toml"), fmt, tmp_path / f"img-{fmt}", "gzip")
    cache = str(tmp_path / "vc.sqlite")
    rc, cold, _ = _scan(str(path), "--cache", cache)
    rc2, warm, _ = _scan(str(path), "--cache", cache)
    assert cold is not None and warm is not None and rc == rc2
    assert warm["stats"]["image_cache_hit"] is True and warm["stats"]["layers_scanned"] == 0
    bare = _scan(str(path))[1]
    assert bare is not None and cold["findings"], "the spec plants secrets"
    assert warm["findings"] == cold["findings"] == bare["findings"]


def test_layout_dir_blob_edited_in_place(tmp_path: Path) -> None:
    """Overwrite one layer blob of an OCI layout directory under its own name."""
    path = build(hostile.base_spec(), "oci-dir", tmp_path / "layout", "gzip")
    cache = str(tmp_path / "vc.sqlite")
    assert _scan(str(path), "--cache", cache)[0] in (0, 1)
    with open_path(str(path), SourceOptions()) as image:
        digest = image.blobs[1].digest
    assert digest
    blob = path / "blobs" / "sha256" / digest.split(":", 1)[1]
    other = path / "blobs" / "sha256" / (image.blobs[0].digest or "").split(":", 1)[1]
    blob.write_bytes(other.read_bytes())
    bare = _scan(str(path))
    cached = _scan(str(path), "--cache", cache)
    assert bare[0] == cached[0] == 3 and cached[2] == bare[2] and "digest mismatch" in cached[2]


@pytest.mark.parametrize("fmt", ["docker-legacy", "docker-oci", "oci-tar"])
def test_same_layers_in_another_archive_come_from_the_cache(fmt: str, tmp_path: Path) -> None:
    """A new config over the same layers: each layer is hashed, found and checked, not scanned."""
    spec = hostile.base_spec()
    first = build(spec, fmt, tmp_path / "a", "gzip")
    config = dict(spec.config)
    config["Labels"] = {**dict(config.get("Labels") or {}), "org.example.rebuilt": "yes"}
    second = build(replace(spec, config=config), fmt, tmp_path / "b", "gzip")
    cache = str(tmp_path / "vc.sqlite")
    _scan(str(first), "--cache", cache)
    _, warm, _ = _scan(str(second), "--cache", cache)
    _, bare, _ = _scan(str(second))
    assert warm is not None and bare is not None
    assert not warm["stats"].get("image_cache_hit")
    assert warm["stats"]["layers_scanned"] == 0
    assert warm["findings"] == bare["findings"]


def test_bytes_changed_during_the_scan_are_not_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The image key is taken from the bytes before the scan; if they change meanwhile,
    the result is not stored under it."""
    path = build(hostile.base_spec(), "docker-oci", tmp_path / "img", "gzip")
    cache = str(tmp_path / "vc.sqlite")
    import imgscan.scan as scan_mod

    real = scan_mod.scan_layer
    touched: list[bool] = []

    def scan_then_append(*a: Any, **kw: Any) -> Any:
        out = real(*a, **kw)
        if not touched:  # junk after the tar's end: readers ignore it, the bytes differ
            with open(path, "ab") as f:
                f.write(b"\0" * 10240)
            touched.append(True)
        return out

    size = path.stat().st_size
    monkeypatch.setattr(scan_mod, "scan_layer", scan_then_append)
    assert _scan(str(path), "--cache", cache)[0] in (0, 1)
    monkeypatch.setattr(scan_mod, "scan_layer", real)
    assert touched
    os.truncate(path, size)  # the bytes the key was taken from, again: still no answer
    _, again, _ = _scan(str(path), "--cache", cache)
    assert again is not None and not again["stats"].get("image_cache_hit")
    _, third, _ = _scan(str(path), "--cache", cache)
    assert third is not None and third["stats"]["image_cache_hit"] is True


# -- local_identity ------------------------------------------------------------------------------
@pytest.mark.parametrize("use_blake3", [True, False])
def test_identity_of_a_file_follows_its_bytes(use_blake3: bool, tmp_path: Path) -> None:
    f = tmp_path / "a.tar"
    f.write_bytes(b"x" * 100_000)
    one = local_identity(str(f), use_blake3=use_blake3)
    assert one == local_identity(str(f), use_blake3=use_blake3)
    assert one.startswith("local:blake3:" if use_blake3 else "local:sha256:")
    os.utime(f, (1, 1))  # metadata alone changes nothing
    assert local_identity(str(f), use_blake3=use_blake3) == one
    with open(f, "r+b") as h:
        h.seek(50_000)
        h.write(b"y")
    assert local_identity(str(f), use_blake3=use_blake3) != one
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert local_identity(str(empty), use_blake3=use_blake3) != one


@pytest.mark.parametrize("use_blake3", [True, False])
def test_identity_of_a_tree(use_blake3: bool, tmp_path: Path) -> None:
    root = tmp_path / "layout"
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "index.json").write_text("{}")
    (root / "blobs" / "sha256" / "aa").write_bytes(b"layer")
    outside = tmp_path / "outside"
    outside.write_text("one")
    (root / "link").symlink_to(outside)

    def ident() -> str:
        return local_identity(str(root), use_blake3=use_blake3)

    first = ident()
    assert ":tree:" in first and ident() == first
    outside.write_text("two")  # a symlink is its target text, never followed
    assert ident() == first
    (root / "blobs" / "sha256" / "aa").write_bytes(b"LAYER")
    second = ident()
    assert second != first
    (root / "blobs" / "sha256" / "aa").rename(root / "blobs" / "sha256" / "bb")
    assert ident() != second
    third = ident()
    (root / "link").unlink()
    (root / "link").symlink_to(tmp_path / "elsewhere")
    assert ident() != third
    shutil.rmtree(root / "blobs")
    assert ident() != third


@pytest.mark.parametrize(("first", "second"), [("none", "gzip"), ("gzip", "zstd")])
def test_layers_packed_another_way_are_checked_by_their_tar(
    first: str, second: str, tmp_path: Path
) -> None:
    """Seen plain, met gzip'd (or seen gzip'd, met zstd'd): inflated, hashed, served."""
    spec = load_spec(SPECS / "whiteout-key.toml")
    a = build(spec, "oci-tar", tmp_path / "a", first)
    b = build(spec, "oci-tar", tmp_path / "b", second)
    cache = str(tmp_path / "vc.sqlite")
    _scan(str(a), "--cache", cache)
    _, warm, _ = _scan(str(b), "--cache", cache)
    _, bare, _ = _scan(str(b))
    assert warm is not None and bare is not None
    assert warm["stats"]["layers_scanned"] == 0 and not warm["stats"].get("image_cache_hit")
    assert warm["findings"] == bare["findings"] and bare["findings"]
    assert [li["digest"] for li in warm["image"]["layers"]] == [
        li["digest"] for li in bare["image"]["layers"]
    ]
    # the second packing's blob digests are now known too: a copy is only hashed
    c = tmp_path / "c.tar"
    shutil.copy(b, c)
    _, again, _ = _scan(str(c), "--cache", cache)
    assert again is not None and again["stats"]["layers_scanned"] == 0


def test_a_corrupt_blob_claiming_a_cached_layer_fails_as_without_the_cache(
    tmp_path: Path,
) -> None:
    spec = hostile.base_spec()
    good = build(spec, "oci-dir", tmp_path / "good", "none")
    cache = str(tmp_path / "vc.sqlite")
    assert _scan(str(good), "--cache", cache)[0] in (0, 1)
    bad = build(spec, "oci-dir", tmp_path / "bad", "gzip")
    with open_path(str(bad), SourceOptions()) as image:
        digest = image.blobs[1].digest
    assert digest
    blob = bad / "blobs" / "sha256" / digest.split(":", 1)[1]
    data = blob.read_bytes()
    blob.write_bytes(data[: len(data) // 2])  # a truncated gzip stream under its own name
    bare = _scan(str(bad))
    cached = _scan(str(bad), "--cache", cache)
    assert bare[0] == cached[0] == 3 and cached[2] == bare[2]


def test_hashing_a_large_archive_keeps_rss_within_a_window(tmp_path: Path) -> None:
    """The file is mapped a window at a time: RSS does not grow with the archive's size."""
    big = tmp_path / "big.tar"
    with open(big, "wb") as f:  # sparse: no disk used, but every page is read and hashed
        f.truncate(768 * 1024 * 1024)
    code = (
        "import resource, sys; from imgscan.contenthash import local_identity; "
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
        "ident = local_identity(sys.argv[1]); "
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
        "print(ident, (after - before) // 1024)"
    )
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-c", code, str(big)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
        check=True,
        timeout=120,
    )
    ident, grew_mb = proc.stdout.split()
    assert ident.startswith("local:blake3:")
    assert int(grew_mb) < 100, f"RSS grew by {grew_mb} MB hashing a 768 MiB file"
