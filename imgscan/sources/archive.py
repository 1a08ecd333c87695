"""Images on disk: `docker save` archives (legacy and Docker >=25) and OCI layouts (dir or tar)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
import posixpath
import shutil
import tarfile
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

from imgscan.errors import SourceError
from imgscan.sources.base import Image, LayerBlob, SourceOptions
from imgscan.sources.common import (
    GZIP_MAGIC,
    INDEX_TYPES,
    ZSTD_MAGIC,
    build_image_info,
    check_digest,
    load_json,
    load_json_object,
    manifest_config,
    manifest_layers,
    select_manifest,
)

_MAX_LINK_DEPTH = 16


def safe_member_name(name: str, what: str) -> str:
    """Normalise a path inside an archive or layout; reject absolute and escaping names."""
    if not isinstance(name, str) or not name:
        raise SourceError(f"{what}: empty or non-string path")
    if name.startswith("/") or "\\" in name or "\0" in name:
        raise SourceError(f"{what}: path {name[:120]!r} points outside the image archive")
    norm = posixpath.normpath(name)
    if norm == ".." or norm.startswith("../") or norm == ".":
        raise SourceError(f"{what}: path {name[:120]!r} points outside the image archive")
    return norm


class _Store(Protocol):
    """Read-only named blobs: a directory or the members of a tar."""

    label: str

    def exists(self, name: str) -> bool: ...

    def size(self, name: str) -> int: ...

    def open(self, name: str) -> BinaryIO: ...


def _read_limited(store: _Store, name: str, limit: int, what: str) -> bytes:
    if not store.exists(name):
        raise SourceError(f"{what}: {name} is missing from {store.label}")
    if store.size(name) > limit:
        raise SourceError(f"{what}: {name} is larger than {limit} bytes")
    with store.open(name) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise SourceError(f"{what}: {name} is larger than {limit} bytes")
    return data


class DirStore:
    """Blobs in a directory (an OCI image layout on disk)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.label = str(root)

    def _path(self, name: str) -> Path:
        p = (self.root / safe_member_name(name, self.label)).resolve()
        if p != self.root and self.root not in p.parents:
            raise SourceError(f"{self.label}: {name!r} resolves outside the layout")
        return p

    def exists(self, name: str) -> bool:
        """Whether the named blob exists."""
        return self._path(name).is_file()

    def size(self, name: str) -> int:
        """Size of the named blob in bytes."""
        return self._path(name).stat().st_size

    def open(self, name: str) -> BinaryIO:
        """Open the named blob for reading."""
        try:
            return open(self._path(name), "rb")
        except OSError as exc:
            raise SourceError(f"{self.label}: cannot open {name}: {exc.strerror}") from None


class TarStore:
    """Members of a (seekable, uncompressed) tar archive; links are followed inside it."""

    def __init__(self, path: Path, label: str) -> None:
        self.label = label
        try:
            self._tf = tarfile.open(path, mode="r:")  # noqa: SIM115
            members = self._tf.getmembers()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise SourceError(f"{label}: not a readable tar archive ({exc})") from None
        self._members: dict[str, tarfile.TarInfo] = {}
        for m in members:
            try:
                key = posixpath.normpath(m.name.lstrip("/")) if m.name else ""
            except ValueError:
                continue
            self._members[key] = m

    def close(self) -> None:
        """Close the underlying archive."""
        self._tf.close()

    def names(self) -> list[str]:
        """Every member name (normalised)."""
        return list(self._members)

    def _resolve(self, name: str) -> tarfile.TarInfo:
        key = safe_member_name(name, self.label)
        for _ in range(_MAX_LINK_DEPTH):
            m = self._members.get(key)
            if m is None:
                raise SourceError(f"{self.label}: {name} is missing from the archive")
            if m.issym():
                target = posixpath.join(posixpath.dirname(key), m.linkname)
                key = safe_member_name(target, f"{self.label}: link {m.name}")
                continue
            if m.islnk():
                key = safe_member_name(m.linkname, f"{self.label}: link {m.name}")
                continue
            if not m.isfile():
                raise SourceError(f"{self.label}: {name} is not a regular file")
            return m
        raise SourceError(f"{self.label}: symlink loop while resolving {name}")

    def exists(self, name: str) -> bool:
        """Whether the named member exists (after following links)."""
        try:
            self._resolve(name)
        except SourceError:
            return False
        return True

    def size(self, name: str) -> int:
        """Size of the named member."""
        return self._resolve(name).size

    def open(self, name: str) -> BinaryIO:
        """Open the named member for reading."""
        m = self._resolve(name)
        f = self._tf.extractfile(m)
        if f is None:
            raise SourceError(f"{self.label}: cannot read {name}")
        return cast(BinaryIO, f)


@dataclass(frozen=True, slots=True)
class _LayerRef:
    name: str
    digest: str | None
    size: int | None
    media_type: str | None


def _digest_of_blob_name(name: str) -> str | None:
    parts = name.split("/")
    if len(parts) == 3 and parts[0] == "blobs" and parts[1] in ("sha256", "sha512"):
        d = f"{parts[1]}:{parts[2]}"
        try:
            return check_digest(d, name)
        except SourceError:
            return None
    return None


def _blob_name(digest: str) -> str:
    algo, hexpart = digest.split(":", 1)
    return f"blobs/{algo}/{hexpart}"


def _verify_bytes(data: bytes, digest: str | None, what: str) -> None:
    if digest is None:
        return
    algo, expected = digest.split(":", 1)
    got = hashlib.new(algo, data).hexdigest()
    if got != expected:
        raise SourceError(f"{what}: digest mismatch (expected {digest}, got {algo}:{got})")


def _choose_docker_entry(
    entries: list[Mapping[str, Any]], reference: str | None, label: str
) -> Mapping[str, Any]:
    if len(entries) == 1:
        return entries[0]
    tags = [t for e in entries for t in (e.get("RepoTags") or []) if isinstance(t, str)]
    if reference:
        for e in entries:
            if reference in (e.get("RepoTags") or []):
                return e
    raise SourceError(
        f"{label}: archive holds {len(entries)} images; name one of: "
        + (", ".join(tags) if tags else "(untagged)")
    )


def _open_docker_archive(
    store: _Store, options: SourceOptions, reference: str, tag: str | None
) -> Image:
    label = store.label
    raw = _read_limited(store, "manifest.json", options.max_metadata_bytes, label)
    manifest = load_json(raw, f"{label}: manifest.json")
    if not isinstance(manifest, list) or not manifest:
        raise SourceError(f"{label}: manifest.json must be a non-empty list")
    entries = [e for e in manifest if isinstance(e, Mapping)]
    if len(entries) != len(manifest):
        raise SourceError(f"{label}: manifest.json has a malformed entry")
    entry = _choose_docker_entry(entries, tag, label)
    cfg_name = entry.get("Config")
    layers = entry.get("Layers")
    if not isinstance(cfg_name, str) or not isinstance(layers, list):
        raise SourceError(f"{label}: manifest.json entry lacks Config or Layers")
    cfg_name = safe_member_name(cfg_name, f"{label}: Config")
    cfg_bytes = _read_limited(store, cfg_name, options.max_metadata_bytes, f"{label}: config")
    cfg_digest = "sha256:" + hashlib.sha256(cfg_bytes).hexdigest()
    named = _digest_of_blob_name(cfg_name)
    base = posixpath.basename(cfg_name)
    if named is None and base.endswith(".json") and len(base) == 69:
        named = "sha256:" + base[:-5]
    if named is not None:
        try:
            check_digest(named, cfg_name)
        except SourceError:
            named = None
    _verify_bytes(cfg_bytes, named, f"{label}: config {cfg_name}")
    config = load_json_object(cfg_bytes, f"{label}: config {cfg_name}")
    sources = entry.get("LayerSources") if isinstance(entry.get("LayerSources"), Mapping) else {}
    refs: list[_LayerRef] = []
    for i, lname in enumerate(layers):
        if not isinstance(lname, str):
            raise SourceError(f"{label}: layer {i} path is not a string")
        name = safe_member_name(lname, f"{label}: layer {i}")
        if not store.exists(name):
            raise SourceError(f"{label}: layer {i} blob {name} is missing from the archive")
        digest = _digest_of_blob_name(name)
        media_type = None
        if digest and isinstance(sources, Mapping):
            src = sources.get(digest)
            if isinstance(src, Mapping) and isinstance(src.get("mediaType"), str):
                media_type = src["mediaType"]
        refs.append(_LayerRef(name, digest, store.size(name), media_type))
    manifest_digest = _docker25_manifest_digest(store, options, named or cfg_digest)
    info = build_image_info(
        reference=reference,
        manifest_digest=manifest_digest,
        config_digest=cfg_digest,
        config=config,
        layer_digests=[r.digest for r in refs],
        layer_sizes=[r.size for r in refs],
        media_types=[r.media_type for r in refs],
        source_kind="docker-archive",
    )
    return Image(info=info, blobs=_blobs(store, refs, info.layers), config_bytes=cfg_bytes)


def _docker25_manifest_digest(store: _Store, options: SourceOptions, cfg: str) -> str | None:
    """In a Docker >=25 archive, find the OCI manifest whose config is ``cfg``."""
    if not store.exists("index.json"):
        return None
    try:
        idx = load_json_object(
            _read_limited(store, "index.json", options.max_metadata_bytes, store.label), "index"
        )
        for d in idx.get("manifests") or []:
            dg = check_digest(d.get("digest"), "index")
            name = _blob_name(dg)
            if not store.exists(name):
                continue
            m = load_json_object(
                _read_limited(store, name, options.max_metadata_bytes, store.label), name
            )
            if m.get("mediaType") in INDEX_TYPES or "manifests" in m:
                continue
            if (m.get("config") or {}).get("digest") == cfg:
                return dg
    except (SourceError, AttributeError, TypeError):
        return None
    return None


def _blobs(
    store: _Store, refs: Sequence[_LayerRef], layers: Sequence[Any]
) -> tuple[LayerBlob, ...]:
    out = []
    for i, r in enumerate(refs):
        out.append(
            LayerBlob(
                index=i,
                digest=r.digest,
                diff_id=layers[i].diff_id,
                size=r.size,
                media_type=r.media_type,
                open=functools.partial(store.open, r.name),
                name=r.name,
            )
        )
    return tuple(out)


def _read_blob_json(store: _Store, digest: str, options: SourceOptions, what: str) -> bytes:
    name = _blob_name(check_digest(digest, what))
    data = _read_limited(store, name, options.max_metadata_bytes, what)
    _verify_bytes(data, digest, f"{store.label}: {what} {digest[:19]}")
    return data


def _open_oci_layout(
    store: _Store, options: SourceOptions, reference: str, tag: str | None
) -> Image:
    label = store.label
    idx = load_json_object(
        _read_limited(store, "index.json", options.max_metadata_bytes, label),
        f"{label}: index.json",
    )
    descs = [d for d in (idx.get("manifests") or []) if isinstance(d, Mapping)]
    if not descs:
        raise SourceError(f"{label}: index.json lists no manifests")
    if tag:
        named = [
            d
            for d in descs
            if (d.get("annotations") or {}).get("org.opencontainers.image.ref.name") == tag
            or (d.get("annotations") or {}).get("io.containerd.image.name") == tag
        ]
        if not named:
            raise SourceError(f"{label}: no image named {tag!r} in index.json")
        descs = named
    desc: Mapping[str, Any] = (
        descs[0]
        if len(descs) == 1
        else select_manifest({"manifests": descs}, options.platform, label)
    )
    manifest_digest = check_digest(desc.get("digest"), f"{label}: index.json")
    for _depth in range(4):
        data = _read_blob_json(store, manifest_digest, options, "manifest")
        doc = load_json_object(data, f"{label}: manifest {manifest_digest[:19]}")
        if doc.get("mediaType") in INDEX_TYPES or ("manifests" in doc and "layers" not in doc):
            chosen = select_manifest(doc, options.platform, label)
            manifest_digest = check_digest(chosen.get("digest"), f"{label}: index")
            continue
        break
    else:
        raise SourceError(f"{label}: indexes nested too deeply")
    layers = manifest_layers(doc, label)
    cfg_digest = manifest_config(doc, label)
    cfg_bytes = _read_blob_json(store, cfg_digest, options, "config")
    config = load_json_object(cfg_bytes, f"{label}: config")
    refs = []
    for i, ld in enumerate(layers):
        dg = ld["digest"]
        name = _blob_name(dg)
        if not store.exists(name):
            raise SourceError(f"{label}: layer {i} blob {dg} is missing from the layout")
        size = ld.get("size")
        refs.append(
            _LayerRef(
                name,
                dg,
                size if isinstance(size, int) else store.size(name),
                ld.get("mediaType") if isinstance(ld.get("mediaType"), str) else None,
            )
        )
    info = build_image_info(
        reference=reference,
        manifest_digest=manifest_digest,
        config_digest=cfg_digest,
        config=config,
        layer_digests=[r.digest for r in refs],
        layer_sizes=[r.size for r in refs],
        media_types=[r.media_type for r in refs],
        source_kind="oci-layout",
    )
    return Image(info=info, blobs=_blobs(store, refs, info.layers), config_bytes=cfg_bytes)


def _open_store(store: _Store, options: SourceOptions, reference: str, tag: str | None) -> Image:
    if store.exists("manifest.json"):
        return _open_docker_archive(store, options, reference, tag)
    if store.exists("index.json"):
        return _open_oci_layout(store, options, reference, tag)
    raise SourceError(
        f"{store.label}: neither a docker-archive (manifest.json) nor an OCI layout (index.json)"
    )


def _sniff(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(4)


@contextlib.contextmanager
def _decompressed_copy(path: Path, options: SourceOptions) -> Iterator[Path]:
    """Spool a gzip/zstd-compressed archive to an uncompressed temp file, always removed."""
    tmpdir = tempfile.mkdtemp(prefix="imgscan-", dir=options.spool_dir)
    try:
        out = Path(tmpdir) / "image.tar"
        magic = _sniff(path)
        try:
            if magic.startswith(GZIP_MAGIC):
                from imgscan.layers.compression import gzip_reader

                with open(path, "rb") as raw, gzip_reader(raw) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            else:
                import pyzstd

                with pyzstd.ZstdFile(path, "rb") as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        except (OSError, EOFError, ValueError) as exc:
            raise SourceError(f"{path}: corrupt compressed archive ({exc})") from None
        yield out
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


@contextlib.contextmanager
def open_path(path: str, options: SourceOptions, reference: str | None = None) -> Iterator[Image]:
    """Open a docker-archive or OCI layout (directory or tar, optionally gzip/zstd'ed)."""
    p = Path(path)
    ref = reference or path
    tag = reference if reference and reference != path else None
    if p.is_dir():
        yield dataclasses.replace(_open_store(DirStore(p), options, ref, tag), local_path=path)
        return
    if not p.is_file():
        raise SourceError(f"{path}: no such file or directory")
    try:
        magic = _sniff(p)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror})") from None
    with contextlib.ExitStack() as stack:
        tar_path = p
        if magic.startswith(GZIP_MAGIC) or magic.startswith(ZSTD_MAGIC):
            tar_path = stack.enter_context(_decompressed_copy(p, options))
        store = TarStore(tar_path, label=path)
        stack.callback(store.close)
        yield dataclasses.replace(_open_store(store, options, ref, tag), local_path=path)


def looks_like_image_path(path: str) -> bool:
    """True when ``path`` names an existing file or directory we could open."""
    return os.path.exists(path)


__all__ = ["DirStore", "TarStore", "looks_like_image_path", "open_path", "safe_member_name"]
