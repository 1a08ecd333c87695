"""The fixture builder: deterministic bytes, self-consistent digests, spec errors, hostile
inputs, and every spec's expected overlay states through the real source + walker."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import posixpath
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import pyzstd

from fixtures import hostile
from fixtures.builder import (
    FORMATS,
    BuildError,
    assemble,
    build,
    build_layer_tar,
    main,
    tree_digest,
)
from fixtures.fakes import KEY_KINDS, generate
from fixtures.spec import SpecError, all_specs, load_spec, parse_spec
from imgscan import errors
from imgscan.errors import ImgscanError
from imgscan.layers.overlay import build_overlay
from imgscan.layers.walker import LayerWalker, WalkLimits
from imgscan.model import FileEvent, Unscanned
from imgscan.sources.archive import open_path
from imgscan.sources.base import SourceOptions
from tests.infra.dockerd import Dockerd, dockerd  # noqa: F401 - dockerd is a fixture

SPECS = all_specs()
SPEC_IDS = [p.stem for p in SPECS]
COMPRESSIONS = ("none", "gzip", "zstd")
DEMO = Path(__file__).resolve().parent.parent / "fixtures" / "demo" / "demo-image.tar"


def _build(spec_path: Path, fmt: str, comp: str, tmp: Path, **kw: Any) -> Path:
    out = tmp / (spec_path.stem + ("" if fmt == "oci-dir" else ".tar"))
    return build(load_spec(spec_path), fmt, out, comp, **kw)


# -- an independent reader of what the builder wrote (stdlib tarfile only) ----------------------
class _View:
    """Read named files from an image tar or directory, following archive symlinks."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files: dict[str, bytes] = {}
        self.links: dict[str, str] = {}
        if path.is_dir():
            for p in path.rglob("*"):
                if p.is_file():
                    self.files[p.relative_to(path).as_posix()] = p.read_bytes()
            return
        with tarfile.open(path) as tf:
            self.names = tf.getnames()
            for m in tf.getmembers():
                if m.issym():
                    self.links[m.name] = posixpath.normpath(
                        posixpath.join(posixpath.dirname(m.name), m.linkname)
                    )
                elif m.isfile():
                    f = tf.extractfile(m)
                    assert f is not None
                    self.files[m.name] = f.read()

    def read(self, name: str) -> bytes:
        for _ in range(8):
            if name in self.links:
                name = self.links[name]
        return self.files[name]

    def json(self, name: str) -> Any:
        return json.loads(self.read(name))


def _decompress(data: bytes) -> bytes:
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    if data[:4] == b"\x28\xb5\x2f\xfd":
        return bytes(pyzstd.decompress(data))
    return data


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _check_blob(view: _View, desc: Mapping[str, Any]) -> bytes:
    algo, hexd = desc["digest"].split(":")
    data = view.read(f"blobs/{algo}/{hexd}")
    assert _sha(data) == desc["digest"], "blob bytes differ from their digest"
    assert len(data) == desc["size"], "descriptor size differs from the blob"
    return data


def _check_image_manifest(view: _View, manifest: Mapping[str, Any]) -> int:
    """Verify config + layer blobs against digests and diff_ids; return the layer count."""
    config = json.loads(_check_blob(view, manifest["config"]))
    diff_ids = config["rootfs"]["diff_ids"]
    assert len(diff_ids) == len(manifest["layers"])
    for desc, diff_id in zip(manifest["layers"], diff_ids, strict=True):
        blob = _check_blob(view, desc)
        if desc["mediaType"] != "application/vnd.in-toto+json":
            assert _sha(_decompress(blob)) == diff_id, "diff_id is not the uncompressed sha256"
        else:
            assert _sha(blob) == diff_id
    return len(diff_ids)


def _walk_oci(view: _View, index: Mapping[str, Any]) -> int:
    n = 0
    for desc in index["manifests"]:
        doc = json.loads(_check_blob(view, desc))
        if "manifests" in doc:
            n += _walk_oci(view, doc)
        else:
            n += 1
            _check_image_manifest(view, doc)
    return n


def _check_docker_manifest(view: _View) -> None:
    (entry,) = view.json("manifest.json")
    cfg_bytes = view.read(entry["Config"])
    cfg_hex = posixpath.basename(entry["Config"]).removesuffix(".json")
    assert hashlib.sha256(cfg_bytes).hexdigest() == cfg_hex, "config name is not its digest"
    diff_ids = json.loads(cfg_bytes)["rootfs"]["diff_ids"]
    assert len(diff_ids) == len(entry["Layers"])
    for name, diff_id in zip(entry["Layers"], diff_ids, strict=True):
        data = view.read(name)
        if name.startswith("blobs/"):
            assert _sha(data) == "sha256:" + posixpath.basename(name)
        assert _sha(_decompress(data)) == diff_id
    repo_tags = entry["RepoTags"]
    repos = view.json("repositories")
    for tag in repo_tags:
        repo, t = tag.rsplit(":", 1)
        assert t in repos[repo]


# -- determinism and consistency ---------------------------------------------------------------
@pytest.mark.parametrize("comp", COMPRESSIONS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("spec_path", SPECS, ids=SPEC_IDS)
def test_build_is_deterministic_and_consistent(
    spec_path: Path, fmt: str, comp: str, tmp_path: Path
) -> None:
    """Two builds give identical bytes; every digest and diff_id in the result checks out."""
    a = _build(spec_path, fmt, comp, tmp_path / "a")
    b = _build(spec_path, fmt, comp, tmp_path / "b")
    assert tree_digest(a) == tree_digest(b)
    view = _View(a)
    if fmt.startswith("docker"):
        _check_docker_manifest(view)
    if fmt != "docker-legacy":
        assert view.json("oci-layout") == {"imageLayoutVersion": "1.0.0"}
        n = _walk_oci(view, view.json("index.json"))
        spec = load_spec(spec_path)
        platforms = 1 if fmt == "docker-oci" else len(spec.platforms)
        assert n == platforms * (2 if spec.attestations and fmt != "docker-oci" else 1)


def test_layer_compression_matches_request(tmp_path: Path) -> None:
    """gzip / zstd / plain layers carry their magic bytes and media types, also in docker tars."""
    spec = load_spec(SPECS[SPEC_IDS.index("whiteout-key")])
    for comp, magic in (("gzip", b"\x1f\x8b"), ("zstd", b"\x28\xb5\x2f\xfd"), ("none", b"")):
        out = build(spec, "docker-legacy", tmp_path / f"{comp}.tar", comp)
        view = _View(out)
        (entry,) = view.json("manifest.json")
        for name in entry["Layers"]:
            data = view.read(name)
            if magic:
                assert data.startswith(magic)
            else:
                with tarfile.open(fileobj=io.BytesIO(data)) as tf:
                    assert tf.getmembers()
        parts = assemble(spec, comp)
        suffix = {"gzip": "+gzip", "zstd": "+zstd", "none": ".tar"}[comp]
        assert all(b.media_type.endswith(suffix) for b in parts.images[0].layers)


@pytest.mark.parametrize("fmt", ["docker-legacy", "docker-oci", "oci-tar"])
def test_manifest_last_puts_metadata_at_the_end(fmt: str, tmp_path: Path) -> None:
    """manifest_last writes manifest.json (or index.json) as the final member; default first."""
    spec_path = SPECS[SPEC_IDS.index("whiteout-key")]
    first = _View(_build(spec_path, fmt, "gzip", tmp_path / "first")).names
    last = _View(_build(spec_path, fmt, "gzip", tmp_path / "last", manifest_last=True)).names
    key = "index.json" if fmt == "oci-tar" else "manifest.json"
    assert last[-1] == key
    assert first.index(key) < 4
    assert sorted(first) == sorted(last)


def test_legacy_dedupe_uses_symlink_like_docker_save(tmp_path: Path) -> None:
    """Identical layers: the second <id>/layer.tar is a symlink to ../<id1>/layer.tar."""
    spec = load_spec(SPECS[SPEC_IDS.index("dedupe")])
    out = build(spec, "docker-legacy", tmp_path / "d.tar", "gzip")
    with tarfile.open(out) as tf:
        links = [m for m in tf.getmembers() if m.issym()]
    assert len(links) == 1
    target = posixpath.normpath(posixpath.join(posixpath.dirname(links[0].name), links[0].linkname))
    assert links[0].linkname.startswith("../") and target.endswith("/layer.tar")
    oci = _View(build(spec, "oci-dir", tmp_path / "o", "gzip"))
    (desc,) = oci.json("index.json")["manifests"]
    layers = json.loads(_check_blob(oci, desc))["layers"]
    assert layers[1]["digest"] == layers[2]["digest"]


def test_multiplatform_index_has_attestations(tmp_path: Path) -> None:
    """A nested index lists amd64 and arm64 manifests plus unknown/unknown attestations."""
    spec = load_spec(SPECS[SPEC_IDS.index("multiplatform")])
    view = _View(build(spec, "oci-tar", tmp_path / "m.tar", "gzip"))
    (top,) = view.json("index.json")["manifests"]
    assert top["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert top["annotations"]["org.opencontainers.image.ref.name"] == "latest"
    inner = json.loads(_check_blob(view, top))["manifests"]
    plats = [(d["platform"]["os"], d["platform"]["architecture"]) for d in inner]
    assert plats == [
        ("linux", "amd64"),
        ("linux", "arm64"),
        ("unknown", "unknown"),
        ("unknown", "unknown"),
    ]
    refs = {d["annotations"]["vnd.docker.reference.digest"] for d in inner[2:]}
    assert refs == {inner[0]["digest"], inner[1]["digest"]}


@pytest.mark.parametrize("fmt", ["oci-dir", "oci-tar"])
def test_flat_index_selects_each_platform(fmt: str, tmp_path: Path) -> None:
    """A flat index.json (platform manifests listed directly) opens for each platform."""
    src = SPECS[SPEC_IDS.index("multiplatform")]
    spec = parse_spec({**_raw(src), "index": "flat"}, str(src))
    out = build(spec, fmt, tmp_path / ("flat" if fmt == "oci-dir" else "flat.tar"), "gzip")
    view = _View(out)
    descs = view.json("index.json")["manifests"]
    assert len(descs) == 4 and all("platform" in d for d in descs)
    for plat, arch in (("linux/amd64", b"amd64\n"), ("linux/arm64", b"arm64\n")):
        info, _events, contents, _u = _walk(out, plat, want={("/etc/arch", 0)})
        assert info.platform == plat and contents[("/etc/arch", 0)] == arch


def test_layer_tar_formats_long_names_and_xattrs() -> None:
    """PAX path headers, GNU LongLink and USTAR prefixes; xattrs as SCHILY.xattr bytes."""
    longs = load_spec(SPECS[SPEC_IDS.index("longnames")]).real_layers
    pax, gnu, ustar = (build_layer_tar(layer) for layer in longs)
    assert b"path=" in pax and b"././@PaxHeader" in pax
    assert b"././@LongLink" in gnu and b"././@PaxHeader" not in gnu
    assert b"././@LongLink" not in ustar and b"././@PaxHeader" not in ustar
    for data in (pax, gnu, ustar):
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            names = tf.getnames()
        assert max(len(n) for n in names) > 100
    xl = load_spec(SPECS[SPEC_IDS.index("xattrs-devices")]).real_layers[0]
    with tarfile.open(fileobj=io.BytesIO(build_layer_tar(xl))) as tf:
        ping = tf.getmember("usr/bin/ping")
        cap = ping.pax_headers["SCHILY.xattr.security.capability"]
        assert cap.encode("utf-8", "surrogateescape") == bytes.fromhex(
            "01000002" + "0020" + "00" * 14
        )
        assert tf.getmember("dev/null").ischr() and tf.getmember("run/initctl").isfifo()
        assert tf.getmember("usr/bin/su").mode == 0o4755


def test_demo_image_is_rebuilt_byte_for_byte(tmp_path: Path) -> None:
    """The committed demo image is exactly what its spec builds, and stays small."""
    spec = load_spec(SPECS[SPEC_IDS.index("demo")])
    out = build(spec, "docker-legacy", tmp_path / "demo.tar", "gzip")
    assert out.read_bytes() == DEMO.read_bytes(), (
        "fixtures/demo/demo-image.tar is stale; rebuild it with: python -m fixtures.builder "
        "fixtures/specs/demo.toml --format docker-legacy --compression gzip "
        "-o fixtures/demo/demo-image.tar"
    )
    assert DEMO.stat().st_size < 30 * 1024


def test_cli_builds_and_reports_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI prints the output path and digest; a bad spec is one line and exit 2."""
    out = tmp_path / "x.tar"
    assert (
        main([str(SPECS[0]), "--format", "oci-tar", "--compression", "zstd", "-o", str(out)]) == 0
    )
    assert f"sha256:{tree_digest(out)}" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[[layers]]\ncreated_by = "a"\nbogus = 1\n')
    assert main([str(bad), "-o", str(tmp_path / "y.tar")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bogus" in err
    with pytest.raises(BuildError, match="unknown format"):
        build(load_spec(SPECS[0]), "qcow2", tmp_path / "z", "gzip")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(BuildError, match="not an empty directory"):
        build(load_spec(SPECS[0]), "oci-dir", tmp_path / "full", "gzip")


# -- spec errors ---------------------------------------------------------------------------------
_LAYER = '[[layers]]\ncreated_by = "x"\n'
BAD_SPECS = [
    ("name = \n", "invalid TOML"),
    ('[[layers]]\ncreated_by = "x"\n', "name is required"),
    ('name = "x"\n', "at least one"),
    ('name = "x"\ncolour = 1\n' + _LAYER, "unknown key(s) colour"),
    ('name = "x"\n' + _LAYER + 'entries = [{ path = "a", mode = "644x" }]\n', "octal string"),
    ('name = "x"\n' + _LAYER + 'entries = [{ path = "a", mode = 420 }]\n', "octal string"),
    ('name = "x"\n' + _LAYER + 'entries = [{ path = "a", type = "socket" }]\n', "unknown type"),
    ('name = "x"\n' + _LAYER + 'entries = [{ path = "a", type = "symlink" }]\n', "needs a target"),
    (
        'name = "x"\n' + _LAYER + 'entries = [{ path = "a", type = "dir", content = "z" }]\n',
        "only type",
    ),
    (
        'name = "x"\n' + _LAYER + 'entries = [{ path = "a", generate = "nope" }]\n',
        "unknown generator",
    ),
    (
        'name = "x"\n' + _LAYER + 'entries = [{ path = "a", content = "{{nope:1}}" }]\n',
        "unknown generator",
    ),
    (
        'name = "x"\n' + _LAYER + 'entries = [{ path = "a", xattrs = { "user.a" = "zz" } }]\n',
        "invalid hex",
    ),
    (
        'name = "x"\n' + _LAYER + 'tar_format = "gnu"\n'
        'entries = [{ path = "a", xattrs = { "user.a" = "00" } }]\n',
        "xattrs need",
    ),
    ('name = "x"\n' + _LAYER + 'tar_format = "cpio"\n', "tar_format must be"),
    (
        'name = "x"\n' + _LAYER + 'empty_layer = true\nentries = [{ path = "a" }]\n',
        "cannot have entries",
    ),
    (
        'name = "x"\n' + _LAYER + '[[expect]]\npath = "/a"\nlayer = 3\nstatus = "present"\n',
        "out of range",
    ),
    (
        'name = "x"\n' + _LAYER + '[[expect]]\npath = "a"\nlayer = 0\nstatus = "present"\n',
        "must be absolute",
    ),
    (
        'name = "x"\n' + _LAYER + '[[expect]]\npath = "/a"\nlayer = 0\nstatus = "deleted"\n',
        "changed_in_layer is required",
    ),
    (
        'name = "x"\n' + _LAYER + '[[expect]]\npath = "/a"\nlayer = 0\nstatus = "gone"\n',
        "status must be",
    ),
    ('name = "x"\nplatforms = ["amd64"]\n' + _LAYER, "malformed platform"),
    ('name = "x"\ncreated = "yesterday"\n' + _LAYER, "RFC 3339"),
    ('name = "x"\n[config]\nUsr = "root"\n' + _LAYER, "unknown key(s) Usr"),
    ('name = "x"\n[config]\nEnv = "A=1"\n' + _LAYER, "Env must be a list"),
]


@pytest.mark.parametrize(("text", "message"), BAD_SPECS)
def test_spec_errors_are_clear(text: str, message: str, tmp_path: Path) -> None:
    """A broken spec raises one SpecError line naming the file and the problem."""
    p = tmp_path / "broken.toml"
    p.write_text(text)
    with pytest.raises(SpecError) as exc:
        load_spec(p)
    msg = str(exc.value)
    assert message in msg and str(p) in msg and "\n" not in msg


def test_missing_spec_file_is_a_spec_error(tmp_path: Path) -> None:
    """A missing file is a SpecError, not an OSError traceback."""
    with pytest.raises(SpecError, match="cannot read spec"):
        load_spec(tmp_path / "nope.toml")


def test_every_spec_has_expectations() -> None:
    """Each bundled spec states expected overlay states for the paths it is about."""
    assert len(SPECS) >= 10
    for p in SPECS:
        assert load_spec(p).expect, f"{p.name} has no [[expect]] entries"


def test_generators_are_seeded_and_fake() -> None:
    """Same seed, same bytes; different seed, different bytes; keys parse as fake PEM."""
    keys = pytest.importorskip("imgscan.detect.keys")
    for kind in KEY_KINDS:
        a, b, c = (generate(f"pem-{kind}", s) for s in (1, 1, 2))
        assert a == b and a != c
        assert keys.validate_private_key(a.decode()) is True
    tok = generate("github-token", 3).decode()
    assert tok.startswith("ghp_") and len(tok) == 40
    assert generate("aws-access-key-id", 3).startswith(b"AKIA")
    assert generate("random", 1, 100) == generate("random", 1, 100)
    assert len(generate("random", 1, 100)) == 100


# -- overlay expectations through the real source, walker and overlay ---------------------------
def _walk(
    path: Path,
    platform: str,
    limits: WalkLimits | None = None,
    want: set[tuple[str, int]] | None = None,
) -> tuple[Any, list[FileEvent], dict[tuple[str, int], bytes], list[Unscanned]]:
    events: list[FileEvent] = []
    contents: dict[tuple[str, int], bytes] = {}
    unscanned: list[Unscanned] = []
    with open_path(str(path), SourceOptions(platform=platform)) as img:
        for blob in img.blobs:
            walker = LayerWalker(blob, limits)
            for entry in walker:
                events.append(entry.event)
                key = (entry.event.path, entry.event.layer)
                if entry.reader is not None and (want is None or key in want):
                    contents[key] = entry.reader.read()
            unscanned += walker.stats.unscanned
        info = img.info
    return info, events, contents, unscanned


def _cases() -> Iterator[Any]:
    for p in SPECS:
        spec = load_spec(p)
        for fmt in FORMATS:
            plats = spec.platforms if fmt.startswith("oci") else spec.platforms[:1]
            for plat in plats:
                for comp in COMPRESSIONS:
                    yield pytest.param(p, fmt, comp, plat, id=f"{p.stem}-{fmt}-{comp}-{plat}")


@pytest.mark.parametrize(("spec_path", "fmt", "comp", "platform"), list(_cases()))
def test_spec_expectations_hold(
    spec_path: Path, fmt: str, comp: str, platform: str, tmp_path: Path
) -> None:
    """Every [[expect]] of every spec holds in every format, compression and platform."""
    spec = load_spec(spec_path)
    out = build(spec, fmt, tmp_path / ("img" if fmt == "oci-dir" else "img.tar"), comp)
    expects = [e for e in spec.expect if e.platform in (None, platform)]
    want = {(e.path, e.layer) for e in expects if e.content is not None}
    info, events, contents, unscanned = _walk(out, platform, want=want)
    assert unscanned == []
    assert info.platform == platform
    assert [layer.created_by for layer in info.layers] == [
        layer.created_by for layer in spec.real_layers
    ]
    overlay = build_overlay(events)
    by_key = {(ev.path, ev.layer): ev for ev in events}
    for e in expects:
        where = f"{e.path}@{e.layer}"
        state = overlay.state(e.path, e.layer)
        assert state is not None, f"{where}: never written"
        assert state.status.value == e.status, where
        assert state.changed_in_layer == e.changed_in_layer, where
        ev = by_key[(e.path, e.layer)]
        if e.kind is not None:
            assert ev.kind.value == e.kind, where
        if e.mode is not None:
            assert ev.mode & 0o7777 == e.mode, where
        if e.xattrs is not None:
            assert dict(ev.xattrs) == dict(e.xattrs), where
        if e.linkname is not None:
            assert ev.linkname == e.linkname, where
        if e.content is not None:
            assert contents[(e.path, e.layer)] == e.content, where


def test_demo_image_scans_to_its_expectations() -> None:
    """The committed demo image itself satisfies demo.toml's expectations."""
    spec = load_spec(SPECS[SPEC_IDS.index("demo")])
    info, events, _contents, _un = _walk(DEMO, "linux/amd64")
    overlay = build_overlay(events)
    for e in spec.expect:
        st = overlay.state(e.path, e.layer)
        assert st is not None and (st.status.value, st.changed_in_layer) == (
            e.status,
            e.changed_in_layer,
        )
    assert info.user is None  # runs as root
    assert "Healthcheck" not in info.config["config"]


# -- hostile inputs ----------------------------------------------------------------------------
HOSTILE = [pytest.param(c, id=c.name) for c in hostile.CASES]


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_input(case: hostile.HostileCase, tmp_path: Path) -> None:
    """Each hostile image gives its documented one-line error or an unscanned record."""
    path = case.write(tmp_path / "img")
    limits = WalkLimits(max_layer_bytes=case.max_layer_bytes) if case.max_layer_bytes else None
    if case.outcome == "error":
        with pytest.raises(ImgscanError) as exc:
            # Stream entries without reading content (the walker itself must notice).
            _walk(path, "linux/amd64", limits, want=set())
        assert type(exc.value).__name__ == case.error or isinstance(
            exc.value, getattr(errors, case.error or "ImgscanError")
        )
        assert "\n" not in str(exc.value) and str(exc.value)
        assert exc.value.exit_code == 3
        return
    info, events, _c, unscanned = _walk(path, "linux/amd64", limits, want=set())
    assert unscanned, "expected an unscanned record"
    assert all(u.reason for u in unscanned)
    assert {u.layer for u in unscanned} == {1}
    # The rest of the image is still read: the private key in the last layer is there.
    assert ("/root/.ssh/id_rsa", len(info.layers) - 1) in {(e.path, e.layer) for e in events}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_input_through_cli(case: hostile.HostileCase, tmp_path: Path) -> None:
    """`imgscan scan` on each hostile image: exit 3 with one stderr line, or unscanned records."""
    from click.testing import CliRunner

    from imgscan.cli import main as cli_main

    path = case.write(tmp_path / "img")
    args = ["scan", str(path), "--format", "json"]
    if case.max_layer_bytes:
        args += ["--max-layer-size", str(case.max_layer_bytes)]
    res = CliRunner().invoke(cli_main, args)
    if case.outcome == "error":
        assert res.exit_code == 3, res.stdout
        assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
        return
    assert res.exit_code in (0, 1), res.stderr
    report = json.loads(res.stdout)
    assert report["unscanned"] and {u["layer"] for u in report["unscanned"]} == {1}
    assert any(f["path"] == "/root/.ssh/id_rsa" for f in report["findings"])


@pytest.mark.parametrize("comp", COMPRESSIONS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_acceptance_deleted_and_overwritten_keys(fmt: str, comp: str, tmp_path: Path) -> None:
    """The whiteout-key image: the deleted key is reported deleted in layer 2 with layer 1's
    instruction; the overwritten key as overwritten by layer 4; the rotated one present."""
    from click.testing import CliRunner

    from imgscan.cli import main as cli_main

    spec_path = SPECS[SPEC_IDS.index("whiteout-key")]
    spec = load_spec(spec_path)
    path = _build(spec_path, fmt, comp, tmp_path)
    res = CliRunner().invoke(cli_main, ["scan", str(path), "--format", "json"])
    assert res.exit_code == 1, res.stderr  # high-severity findings fail the default gate
    keys = {
        (f["path"], f["layer"]): f
        for f in json.loads(res.stdout)["findings"]
        if f["category"] == "secret"
    }
    for e in spec.expect:
        if e.kind in (None, "file") and e.path in ("/root/.ssh/id_rsa", "/opt/deploy/key"):
            f = keys[(e.path, e.layer)]
            assert (f["status"], f["removed_in_layer"]) == (e.status, e.changed_in_layer)
            assert f["created_by"] == spec.real_layers[e.layer].created_by
    assert keys[("/root/.ssh/id_rsa", 1)]["removed_in_layer"] == 2


def test_hostile_writes_stay_inside_tmp(tmp_path: Path) -> None:
    """Every hostile writer only creates files under the directory it is given."""
    root = tmp_path / "box"
    for case in hostile.CASES:
        out = case.write(root / case.name)
        assert root in out.parents


def test_hostile_sparse_member_is_parsed_as_huge(tmp_path: Path) -> None:
    """The hand-made GNU sparse member reads back with its 100 GiB apparent size."""
    member = hostile.gnu_sparse_member("big", 100 * hostile.GiB, b"x" * 512, 0)
    with tarfile.open(fileobj=io.BytesIO(member + bytes(1024))) as tf:
        (m,) = tf.getmembers()
    assert m.issparse() and m.size == 100 * hostile.GiB


def test_bomb_is_streamed_not_held(tmp_path: Path) -> None:
    """The bomb's stored blob is tiny compared with what it inflates to."""
    out = hostile.decompression_bomb(tmp_path, size=256 * hostile.MiB)
    blobs = sorted((out / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
    biggest = blobs[-1]
    assert biggest.stat().st_size < 2 * hostile.MiB
    with gzip.open(biggest) as g:
        total = sum(len(c) for c in iter(lambda: g.read(1 << 20), b""))
    assert total > 256 * hostile.MiB


def test_hostile_unsafe_names_keep_absolute_paths_rooted(tmp_path: Path) -> None:
    """Absolute member names are read as rooted paths; '..' names are unscanned."""
    path = hostile.unsafe_member_names(tmp_path)
    _info, events, _c, unscanned = _walk(path, "linux/amd64", want=set())
    paths = {e.path for e in events if e.layer == 1}
    assert "/etc/absolute.txt" in paths and "/app/ok.txt" in paths
    assert {u.path for u in unscanned} == {"../../escape.txt", "app/../../../climb.txt"}


def test_parse_spec_accepts_inline_dicts() -> None:
    """parse_spec works on plain dicts (used by other tests to make one-off images)."""
    spec = parse_spec(
        {
            "name": "x",
            "layers": [
                {"created_by": "a", "entries": [{"path": "f", "content": "{{password:1}}"}]}
            ],
        }
    )
    assert spec.real_layers[0].entries[0].content == generate("password", 1)


# -- a real engine accepts what the builder writes --------------------------------------------
# Not loadable by the test engine (dockerd 20.10, overlay2): multiplatform (docker-* hold one
# platform; covered by the OCI tests), mixed-compression (a zstd layer: zstd load support
# came in Docker 23), hardlinks (a hardlink to a lower layer's file cannot be applied on
# overlay2; the walker/overlay handle it, see test_spec_expectations_hold).
_ENGINE_SPECS = [
    s for s in SPEC_IDS if s not in ("multiplatform", "mixed-compression", "hardlinks")
]


@pytest.fixture(scope="module")
def engine(dockerd: Dockerd) -> Iterator[Any]:  # noqa: F811 - the fixture imported above
    """A docker SDK client for the private test engine."""
    client: Any = dockerd.client()
    try:
        yield client
    finally:
        client.close()


@pytest.mark.engine
@pytest.mark.parametrize("comp", ["none", "gzip"])  # dockerd 20.10 cannot load zstd
@pytest.mark.parametrize("fmt", ["docker-legacy", "docker-oci"])
@pytest.mark.parametrize("spec_id", _ENGINE_SPECS)
def test_engine_loads_fixture_and_its_save_keeps_expectations(
    engine: Any, spec_id: str, fmt: str, comp: str, tmp_path: Path
) -> None:
    """`docker load` accepts the archive with the same diff_ids and history, and the engine's
    own `docker save` of it satisfies the spec's [[expect]] overlay states."""
    spec = load_spec(SPECS[SPEC_IDS.index(spec_id)])
    name = f"imgscan-fixtures/{spec_id}-{fmt}:{comp}"
    spec = parse_spec({**_raw(SPECS[SPEC_IDS.index(spec_id)]), "tag": name}, spec.source)
    path = build(spec, fmt, tmp_path / "in.tar", comp)
    with open(path, "rb") as f:
        (img,) = engine.images.load(f.read())
    try:
        parts = assemble(spec, comp)
        assert img.attrs["RootFS"]["Layers"] == list(parts.images[0].diff_ids)
        history = [h["CreatedBy"] for h in reversed(engine.api.history(img.id))]
        assert history == [layer.created_by for layer in spec.layers]
        saved = tmp_path / "saved.tar"
        with open(saved, "wb") as out:
            for chunk in img.save(named=True):
                out.write(chunk)
        _info, events, contents, unscanned = _walk(saved, spec.platforms[0])
        assert unscanned == []
        overlay = build_overlay(events)
        for e in spec.expect:
            if e.platform not in (None, spec.platforms[0]):
                continue
            st = overlay.state(e.path, e.layer)
            assert st is not None, e.path
            assert (st.status.value, st.changed_in_layer) == (e.status, e.changed_in_layer)
            if e.content is not None:
                assert contents[(e.path, e.layer)] == e.content
    finally:
        engine.images.remove(img.id, force=True)


def _raw(path: Path) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(path.read_text())
