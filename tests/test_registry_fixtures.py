"""Every fixture spec, pushed to a real registry, reads the same as from an OCI layout.

The image is built by fixtures/builder.py, pushed with imgscan's push code
(platform images, buildkit-style attestation manifests and the index), then
opened per platform by the registry source and by the archive source; both must
agree on digests, diff_ids, history and every file's bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures.builder import ImageParts, assemble, sha256_digest, write_oci_dir
from fixtures.spec import load_spec
from imgscan.layers.walker import LayerWalker
from imgscan.sources.archive import open_path
from imgscan.sources.base import Image, SourceOptions
from imgscan.sources.common import MT_OCI_INDEX
from imgscan.sources.push import push_blob, push_manifest
from imgscan.sources.registry import RegistryClient, RegistrySource
from tests.infra.registry import RegistryServer
from tests.infra.registry_fixtures import FAST_RETRY, client

pytestmark = [pytest.mark.registry, pytest.mark.usefixtures("clean_registry_env")]

SPECS = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "specs").glob("*.toml"))


def _walk(image: Image) -> list[tuple[int, str, str, bytes | None]]:
    out = []
    for blob in image.blobs:
        for entry in LayerWalker(blob):
            data = entry.reader.read() if entry.reader is not None else None
            out.append((blob.index, entry.event.path, str(entry.event.kind), data))
    return out


def _push_parts(c: RegistryClient, repo: str, tag: str, parts: ImageParts) -> None:
    """Push a builder ImageParts: blobs, manifests, attestations and (if several) an index."""
    descs = []
    for img in parts.images:
        for blob in (*img.layers, img.config):
            with blob.open() as f:
                push_blob(c, repo, f, blob.digest)
        push_manifest(c, repo, img.manifest.digest, img.manifest.data, img.manifest.media_type)
        os_, arch, *variant = img.platform.split("/")
        d = img.manifest.descriptor()
        d["platform"] = {
            "os": os_,
            "architecture": arch,
            **({"variant": variant[0]} if variant else {}),
        }
        descs.append(d)
    for img, (att, att_blobs) in zip(parts.images, parts.attestations, strict=False):
        for blob in att_blobs:
            push_blob(c, repo, blob.data, blob.digest)
        push_manifest(c, repo, att.digest, att.data, att.media_type)
        d = att.descriptor()
        d["platform"] = {"architecture": "unknown", "os": "unknown"}
        d["annotations"] = {
            "vnd.docker.reference.digest": img.manifest.digest,
            "vnd.docker.reference.type": "attestation-manifest",
        }
        descs.append(d)
    if len(descs) == 1:
        only = parts.images[0].manifest
        push_manifest(c, repo, tag, only.data, only.media_type)
        return
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": descs}, separators=(",", ":")
    ).encode()
    assert push_manifest(c, repo, tag, index, MT_OCI_INDEX) == sha256_digest(index)


@pytest.mark.parametrize("spec_path", SPECS, ids=[p.stem for p in SPECS])
def test_registry_matches_oci_layout(
    spec_path: Path, plain_registry: RegistryServer, tmp_path: Path
) -> None:
    spec = load_spec(spec_path)
    parts = assemble(spec)
    repo = f"fixtures/{spec_path.stem}"
    with client(plain_registry) as c:
        _push_parts(c, repo, "v1", parts)
    layout = tmp_path / "layout"
    write_oci_dir(parts, layout)
    for img in parts.images:
        options = SourceOptions(platform=img.platform)
        src = RegistrySource(
            f"{plain_registry.host}/{repo}:v1", options, insecure=True, retry=FAST_RETRY
        )
        with src.open() as remote, open_path(str(layout), options) as local:
            assert remote.info.digest == img.manifest.digest
            assert remote.info.digest == local.info.digest
            assert remote.info.config_digest == local.info.config_digest == img.config.digest
            assert remote.info.platform == local.info.platform
            assert remote.info.layers == local.info.layers
            assert [li.diff_id for li in remote.info.layers] == list(img.diff_ids)
            assert _walk(remote) == _walk(local)
