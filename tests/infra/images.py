"""Tiny images built by hand for registry tests: gzip'd layer tars, a config, a manifest."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from imgscan.layers.walker import LayerWalker
from imgscan.sources.base import Image
from imgscan.sources.common import MT_OCI_INDEX, MT_OCI_MANIFEST
from imgscan.sources.push import MT_OCI_CONFIG, push_blob, push_manifest
from imgscan.sources.registry import RegistryClient

MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def read_files(image: Image) -> dict[str, bytes]:
    """Walk every layer with the real walker (digests verified); path -> content."""
    out: dict[str, bytes] = {}
    for blob in image.blobs:
        for entry in LayerWalker(blob):
            if entry.reader is not None:
                out[entry.event.path] = entry.reader.read()
    return out


def sha256(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: Mapping[str, bytes]) -> bytes:
    """An uncompressed layer tar holding ``files`` (path -> content), deterministic."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path, content in sorted(files.items()):
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size = len(content)
            info.mode = 0o644
            info.mtime = 1_700_000_000
            tf.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def random_bytes(n: int, seed: int) -> bytes:
    """Incompressible bytes from a seeded generator (so a layer has a real size)."""
    return random.Random(seed).randbytes(n)


@dataclass(frozen=True)
class TestImage:
    """Blobs and documents of one single-platform image."""

    layers: tuple[bytes, ...]  # gzip'd tars as stored
    diff_ids: tuple[str, ...]
    config: bytes
    manifest: bytes

    __test__ = False  # not a pytest class

    @property
    def digest(self) -> str:
        """The manifest digest."""
        return sha256(self.manifest)

    @property
    def layer_digests(self) -> tuple[str, ...]:
        """Digests of the stored layer blobs."""
        return tuple(sha256(b) for b in self.layers)


def build_image(
    layers: Sequence[Mapping[str, bytes]],
    *,
    os_name: str = "linux",
    arch: str = "amd64",
    variant: str | None = None,
    user: str | None = None,
) -> TestImage:
    """An OCI image with one gzip'd layer per mapping in ``layers``."""
    blobs, ids, history = [], [], []
    for i, files in enumerate(layers):
        tar = layer_tar(files)
        ids.append(sha256(tar))
        blobs.append(gzip.compress(tar, compresslevel=1, mtime=0))
        history.append(
            {"created": "2024-01-01T00:00:00Z", "created_by": f"/bin/sh -c #(nop) layer {i}"}
        )
    config: dict[str, object] = {
        "architecture": arch,
        "os": os_name,
        "config": {"User": user} if user else {},
        "rootfs": {"type": "layers", "diff_ids": ids},
        "history": history,
    }
    if variant:
        config["variant"] = variant
    cfg = json.dumps(config, separators=(",", ":")).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "config": {"mediaType": MT_OCI_CONFIG, "digest": sha256(cfg), "size": len(cfg)},
        "layers": [
            {"mediaType": MT_LAYER_GZIP, "digest": sha256(b), "size": len(b)} for b in blobs
        ],
    }
    return TestImage(
        tuple(blobs), tuple(ids), cfg, json.dumps(manifest, separators=(",", ":")).encode()
    )


def push_test_image(client: RegistryClient, repo: str, ref: str, image: TestImage) -> str:
    """Push every blob and the manifest of ``image`` under ``ref``; return the digest."""
    for blob in image.layers:
        push_blob(client, repo, blob, sha256(blob))
    push_blob(client, repo, image.config, sha256(image.config))
    return push_manifest(client, repo, ref, image.manifest, MT_OCI_MANIFEST)


def push_index(
    client: RegistryClient, repo: str, tag: str, images: Sequence[tuple[str, TestImage]]
) -> str:
    """Push several images and an OCI index over them (``os/arch[/variant]`` each)."""
    manifests = []
    for platform, image in images:
        digest = push_test_image(client, repo, image.digest, image)
        parts = platform.split("/")
        plat: dict[str, str] = {"os": parts[0], "architecture": parts[1]}
        if len(parts) > 2:
            plat["variant"] = parts[2]
        manifests.append(
            {
                "mediaType": MT_OCI_MANIFEST,
                "digest": digest,
                "size": len(image.manifest),
                "platform": plat,
            }
        )
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": manifests},
        separators=(",", ":"),
    ).encode()
    return push_manifest(client, repo, tag, index, MT_OCI_INDEX)
