"""Interoperability with skopeo (Debian): Docker v2 schema 2 images and manifest lists
pushed by skopeo read correctly, and what imgscan pushes, skopeo reads back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fixtures.builder import assemble, write_oci_dir
from fixtures.spec import load_spec
from imgscan.layers.walker import LayerWalker
from imgscan.sources.archive import open_path
from imgscan.sources.base import Image, SourceOptions
from imgscan.sources.common import MT_DOCKER_LIST, MT_DOCKER_MANIFEST
from imgscan.sources.push import push_image, push_manifest
from imgscan.sources.registry import RegistrySource
from tests.infra.registry import RegistryServer
from tests.infra.registry_fixtures import FAST_RETRY, client

pytestmark = [pytest.mark.registry, pytest.mark.usefixtures("clean_registry_env")]
SPECS = Path(__file__).resolve().parents[1] / "fixtures" / "specs"


@pytest.fixture
def skopeo() -> str:
    """The skopeo binary (a missing one fails in CI, skips locally)."""
    path = shutil.which("skopeo")
    if path is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI must provide skopeo (apt-get install skopeo)")
        pytest.skip("skopeo not installed (apt-get install skopeo)")
    return path


def _run(*args: str) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _files(image: Image) -> dict[tuple[int, str], bytes]:
    out = {}
    for blob in image.blobs:
        for entry in LayerWalker(blob):
            if entry.reader is not None:
                out[(blob.index, entry.event.path)] = entry.reader.read()
    return out


def _layout(tmp_path: Path, spec: str) -> tuple[Path, str]:
    parts = assemble(load_spec(SPECS / f"{spec}.toml"))
    out = tmp_path / spec
    write_oci_dir(parts, out)
    index = json.loads((out / "index.json").read_text())
    return out, index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]


def test_docker_schema2_image_pushed_by_skopeo(
    skopeo: str, plain_registry: RegistryServer, tmp_path: Path
) -> None:
    layout, ref = _layout(tmp_path, "demo")
    dest = f"{plain_registry.host}/skopeo/demo:v2s2"
    _run(
        skopeo,
        "copy",
        "--quiet",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        f"oci:{layout}:{ref}",
        f"docker://{dest}",
    )
    inspected = json.loads(_run(skopeo, "inspect", "--tls-verify=false", f"docker://{dest}"))
    src = RegistrySource(dest, insecure=True, retry=FAST_RETRY)
    with src.open() as remote, open_path(str(layout), SourceOptions()) as local:
        assert remote.info.digest == inspected["Digest"]
        assert {b.media_type for b in remote.blobs} == {
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        }
        assert [li.diff_id for li in remote.info.layers] == [li.diff_id for li in local.info.layers]
        assert _files(remote) == _files(local)


def test_docker_manifest_list_selects_the_platform(
    skopeo: str, plain_registry: RegistryServer, tmp_path: Path
) -> None:
    layout, ref = _layout(tmp_path, "multiplatform")
    repo = "skopeo/multi"
    entries = []
    for arch in ("amd64", "arm64"):
        dest = f"{plain_registry.host}/{repo}:{arch}"
        _run(
            skopeo,
            "--override-arch",
            arch,
            "copy",
            "--quiet",
            "--format",
            "v2s2",
            "--dest-tls-verify=false",
            f"oci:{layout}:{ref}",
            f"docker://{dest}",
        )
        raw = _run(skopeo, "inspect", "--raw", "--tls-verify=false", f"docker://{dest}")
        digest = json.loads(_run(skopeo, "inspect", "--tls-verify=false", f"docker://{dest}"))[
            "Digest"
        ]
        entries.append(
            {
                "mediaType": MT_DOCKER_MANIFEST,
                "digest": digest,
                "size": len(raw.encode()),
                "platform": {"architecture": arch, "os": "linux"},
            }
        )
    doc = {"schemaVersion": 2, "mediaType": MT_DOCKER_LIST, "manifests": entries}
    with client(plain_registry) as c:
        push_manifest(c, repo, "list", json.dumps(doc).encode(), MT_DOCKER_LIST)
    for arch, entry in zip(("amd64", "arm64"), entries, strict=True):
        src = RegistrySource(
            f"{plain_registry.host}/{repo}:list",
            SourceOptions(platform=f"linux/{arch}"),
            insecure=True,
            retry=FAST_RETRY,
        )
        with src.open() as img:
            assert img.info.digest == entry["digest"]
            assert img.info.platform == f"linux/{arch}"
            assert _files(img)[(0, "/etc/arch")] == f"{arch}\n".encode()


def test_skopeo_reads_what_imgscan_pushes(
    skopeo: str, plain_registry: RegistryServer, tmp_path: Path
) -> None:
    layout, _ref = _layout(tmp_path, "demo")
    dest = f"{plain_registry.host}/imgscan/pushed:v1"
    with open_path(str(layout), SourceOptions()) as local:
        digest = push_image(local, dest, insecure=True, chunk_size=1 << 16, retry=FAST_RETRY)
        layer_digests = [b.digest for b in local.blobs]
    inspected = json.loads(_run(skopeo, "inspect", "--tls-verify=false", f"docker://{dest}"))
    assert inspected["Digest"] == digest
    assert inspected["Layers"] == layer_digests
    copy = tmp_path / "copy"
    _run(skopeo, "copy", "--quiet", "--src-tls-verify=false", f"docker://{dest}", f"oci:{copy}:v1")
    with (
        open_path(str(copy), SourceOptions()) as back,
        open_path(str(layout), SourceOptions()) as local,
    ):
        assert _files(back) == _files(local)
