"""The engine source against a real, private dockerd started by the test infrastructure.

Images are made here: a ``docker save`` tarball written by hand (tarfile + json) and
loaded through the SDK, and real builds with the engine's builder. Each carries an
obviously fake, seeded-random PEM private key that a later layer deletes or replaces.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from imgscan.errors import SourceError
from imgscan.model import Status
from imgscan.sources.base import SourceOptions
from imgscan.sources.engine import EngineSource, engine_has_image, engine_push
from tests.infra.dockerd import Dockerd, dockerd, in_ci  # noqa: F401 - dockerd is a fixture

REPO_ROOT = Path(__file__).resolve().parents[1]
KEY_PATH = "app/id_rsa"
MTIME = 1_700_000_000
BUSYBOX = Path("/bin/busybox")


# --------------------------------------------------------------------------- image making


def fake_pem(seed: int) -> bytes:
    """An RSA-labelled PEM block around seeded random bytes: obviously not a real key."""
    rng = random.Random(seed)
    body = base64.b64encode(bytes(rng.randrange(256) for _ in range(600))).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return (
        "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END RSA PRIVATE KEY-----\n"
    ).encode()


def layer_tar(entries: Sequence[tuple[str, bytes | None]]) -> bytes:
    """An uncompressed layer: ``(name, data)`` for files, ``(name, None)`` for directories."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = MTIME
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tf.addfile(info)
            else:
                info.mode = 0o600 if name.endswith("id_rsa") else 0o644
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def docker_save_tar(
    repo_tag: str, layers: Sequence[bytes], history: Sequence[dict[str, Any]]
) -> tuple[bytes, dict[str, Any]]:
    """A legacy ``docker save`` archive (manifest.json, <id>/layer.tar, config) and its config."""
    diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "User": "1000"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": list(history),
    }
    cfg_bytes = json.dumps(config, sort_keys=True).encode()
    cfg_name = hashlib.sha256(cfg_bytes).hexdigest() + ".json"
    files: list[tuple[str, bytes]] = [(cfg_name, cfg_bytes)]
    layer_names = []
    for i, layer in enumerate(layers):
        layer_id = hashlib.sha256(f"{i}:{diff_ids[i]}".encode()).hexdigest()
        layer_names.append(f"{layer_id}/layer.tar")
        files.append((f"{layer_id}/VERSION", b"1.0"))
        files.append((f"{layer_id}/layer.tar", layer))
    manifest = [{"Config": cfg_name, "RepoTags": [repo_tag], "Layers": layer_names}]
    files.append(("manifest.json", json.dumps(manifest).encode()))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = MTIME
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue(), config


HISTORY: list[dict[str, Any]] = [
    {"created": "2023-11-14T22:13:20Z", "created_by": "ADD rootfs.tar /"},
    {"created": "2023-11-14T22:13:21Z", "created_by": "COPY id_rsa /app/id_rsa"},
    {"created": "2023-11-14T22:13:22Z", "created_by": "ENV DEBUG=0", "empty_layer": True},
    {"created": "2023-11-14T22:13:23Z", "created_by": "RUN rm /app/id_rsa"},
]


@pytest.fixture(scope="module")
def sdk(dockerd: Dockerd) -> Iterator[Any]:  # noqa: F811 - the fixture imported above
    """A docker SDK client for the private engine."""
    c: Any = dockerd.client()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def loaded(sdk: Any) -> dict[str, Any]:
    """A hand-made 3-layer image loaded through the SDK: key added in layer 1, deleted in 2."""
    layers = [
        layer_tar([("etc", None), ("etc/os-release", b"ID=imgscan-test\n")]),
        layer_tar([("app", None), (KEY_PATH, fake_pem(1))]),
        layer_tar([("app", None), ("app/.wh.id_rsa", b"")]),
    ]
    tag = "imgscan-test/deleted-key:1"
    archive, config = docker_save_tar(tag, layers, HISTORY)
    images = sdk.images.load(archive)
    assert [t for img in images for t in img.tags] == [tag]
    return {"tag": tag, "layers": layers, "config": config, "image": images[0]}


def _opts(dockerd: Dockerd, spool: Path) -> SourceOptions:  # noqa: F811
    spool.mkdir(exist_ok=True)
    return SourceOptions(docker_host=dockerd.host, spool_dir=str(spool))


def _key_findings(result: Any) -> list[Any]:
    return [f for f in result.findings if f.path == "/" + KEY_PATH and f.rule == "private-key"]


# --------------------------------------------------------------------------- the source


@pytest.mark.engine
def test_engine_source_reads_the_loaded_image(
    dockerd: Dockerd,  # noqa: F811
    loaded: dict[str, Any],
    tmp_path: Path,
) -> None:
    spool = tmp_path / "spool"
    opts = _opts(dockerd, spool)
    with EngineSource(f"docker://{loaded['tag']}", opts).open() as image:
        assert len(os.listdir(spool)) == 1  # the export is spooled there, and only there
        info = image.info
        assert info.source_kind == "docker-engine"
        assert info.config_digest == loaded["image"].id
        assert info.platform == "linux/amd64"
        assert info.user == "1000"
        assert [layer.index for layer in info.layers] == [0, 1, 2]
        assert [layer.diff_id for layer in info.layers] == loaded["config"]["rootfs"]["diff_ids"]
        assert [layer.created_by for layer in info.layers] == [
            "ADD rootfs.tar /",
            "COPY id_rsa /app/id_rsa",
            "RUN rm /app/id_rsa",
        ]
        # the engine re-exports the very bytes that were loaded (tar-split)
        for blob, original in zip(image.blobs, loaded["layers"], strict=True):
            with blob.open() as f:
                data = f.read()
            assert hashlib.sha256(data).hexdigest() == hashlib.sha256(original).hexdigest()
        with image.blobs[2].open() as f, tarfile.open(fileobj=f, mode="r|") as tf:
            assert "app/.wh.id_rsa" in [m.name for m in tf]
    assert os.listdir(spool) == []


@pytest.mark.engine
@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_spool_is_removed_when_the_scan_is_interrupted(
    dockerd: Dockerd,  # noqa: F811
    loaded: dict[str, Any],
    tmp_path: Path,
    exc: type[BaseException],
) -> None:
    spool = tmp_path / "spool"
    with pytest.raises(exc), EngineSource(loaded["tag"], _opts(dockerd, spool)).open():
        assert len(os.listdir(spool)) == 1
        raise exc("stop")
    assert os.listdir(spool) == []


@pytest.mark.engine
def test_missing_image_is_a_one_line_source_error(
    dockerd: Dockerd,  # noqa: F811
    tmp_path: Path,
) -> None:
    spool = tmp_path / "spool"
    with (
        pytest.raises(
            SourceError, match=r"no-such/image:1: no such image in the Docker engine at"
        ) as err,
        EngineSource("docker://no-such/image:1", _opts(dockerd, spool)).open(),
    ):
        pass
    assert dockerd.host in str(err.value) and "\n" not in str(err.value)
    assert os.listdir(spool) == []


@pytest.mark.engine
def test_engine_api_error_is_a_one_line_source_error(dockerd: Dockerd) -> None:  # noqa: F811
    opts = SourceOptions(docker_host=dockerd.host)
    with (
        pytest.raises(SourceError, match=r"^Upper/Case:1: Docker engine error: .*lowercase") as err,
        EngineSource("docker://Upper/Case:1", opts).open(),
    ):
        pass
    assert "\n" not in str(err.value)


@pytest.mark.engine
def test_docker_host_from_the_environment(
    dockerd: Dockerd,  # noqa: F811
    loaded: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_HOST", dockerd.host)
    spool = tmp_path / "spool"
    spool.mkdir()
    with EngineSource(loaded["tag"], SourceOptions(spool_dir=str(spool))).open() as image:
        assert image.info.config_digest == loaded["image"].id
    assert os.listdir(spool) == []


@pytest.mark.engine
def test_engine_has_image(dockerd: Dockerd, loaded: dict[str, Any]) -> None:  # noqa: F811
    opts = SourceOptions(docker_host=dockerd.host)
    assert engine_has_image(loaded["tag"], opts) is True
    assert engine_has_image("docker://" + loaded["tag"], opts) is True
    assert engine_has_image("imgscan-test/absent:1", opts) is False
    assert (
        engine_has_image(loaded["tag"], SourceOptions(docker_host="unix:///nonexistent.sock"))
        is False
    )


def test_unreachable_engine_names_the_host(tmp_path: Path) -> None:
    host = f"unix://{tmp_path}/no-docker.sock"
    spool = tmp_path / "spool"
    with (
        pytest.raises(SourceError, match=r"cannot reach the Docker engine at unix://") as err,
        EngineSource(
            "docker://any:1", SourceOptions(docker_host=host, spool_dir=str(spool))
        ).open(),
    ):
        pass
    assert host in str(err.value) and "\n" not in str(err.value)
    assert not spool.exists() or os.listdir(spool) == []


# --------------------------------------------------------------------------- the pipeline


def _run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ)
    full["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + full.get("PYTHONPATH", "")
    full.pop("DOCKER_HOST", None)
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", "import sys; from imgscan.cli import main; sys.exit(main())", *args],
        capture_output=True,
        text=True,
        env=full,
        stdin=subprocess.DEVNULL,
        timeout=300,
        check=False,
    )


@pytest.mark.engine
def test_scan_image_reports_the_deleted_key(
    dockerd: Dockerd,  # noqa: F811
    loaded: dict[str, Any],
    tmp_path: Path,
) -> None:
    from imgscan.scan import ScanOptions, scan_image

    spool = tmp_path / "spool"
    result = scan_image(f"docker://{loaded['tag']}", ScanOptions(source=_opts(dockerd, spool)))
    assert os.listdir(spool) == []
    assert result.image.source_kind == "docker-engine"
    assert len(result.image.layers) == 3
    (finding,) = _key_findings(result)
    assert finding.layer == 1
    assert finding.status == Status.DELETED
    assert finding.removed_in_layer == 2
    assert finding.created_by == "COPY id_rsa /app/id_rsa"
    layer1 = result.image.layers[1]
    assert finding.layer_digest == (layer1.digest or layer1.diff_id)  # legacy save: no digest
    body = fake_pem(1).decode().splitlines()[1:-1]
    assert finding.redacted and not any(line in finding.redacted for line in body)
    assert finding.secret is None  # the raw key stays inside detection


@pytest.mark.engine
def test_cli_scans_an_engine_image_to_json(
    dockerd: Dockerd,  # noqa: F811
    loaded: dict[str, Any],
) -> None:
    proc = _run_cli(
        "scan", f"docker://{loaded['tag']}", "--docker-host", dockerd.host, "--format", "json", "-q"
    )
    assert proc.returncode == 1, proc.stderr  # a critical finding fails the default gate
    report = json.loads(proc.stdout)
    assert report["image"]["layers"][1]["created_by"] == "COPY id_rsa /app/id_rsa"
    keys = [f for f in report["findings"] if f["path"] == "/" + KEY_PATH]
    assert [(f["layer"], f["status"], f["removed_in_layer"]) for f in keys] == [(1, "deleted", 2)]
    assert fake_pem(1).decode().splitlines()[1] not in proc.stdout


@pytest.mark.engine
def test_cli_finds_a_bare_name_in_the_engine_named_by_docker_host(
    dockerd: Dockerd,  # noqa: F811
    loaded: dict[str, Any],
) -> None:
    proc = _run_cli(
        "layers", loaded["tag"], "--format", "json", "-q", env={"DOCKER_HOST": dockerd.host}
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["image"]["config_digest"] == loaded["image"].id
    rows = [(x["created_by"], x["deleted"], x["hidden_bytes"]) for x in report["layers"]]
    assert rows == [
        ("ADD rootfs.tar /", 0, 0),
        ("COPY id_rsa /app/id_rsa", 0, len(fake_pem(1))),  # the key is hidden, not gone
        ("RUN rm /app/id_rsa", 1, 0),
    ]


def test_cli_unreachable_engine_exits_3_with_one_line(tmp_path: Path) -> None:
    host = f"unix://{tmp_path}/no-docker.sock"
    proc = _run_cli("scan", "docker://any/image:1", "--docker-host", host, "--format", "json")
    assert proc.returncode == 3
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert f"cannot reach the Docker engine at {host}" in lines[0]


# --------------------------------------------------------------------------- real builds


def _build(sdk: Any, context: Path, tag: str) -> Any:
    """Build with the engine's builder, no network; return the image."""
    image, _logs = sdk.images.build(
        path=str(context), tag=tag, network_mode="none", rm=True, forcerm=True
    )
    return image


@pytest.mark.engine
def test_real_build_with_copy_reports_the_overwritten_key(
    dockerd: Dockerd,  # noqa: F811
    sdk: Any,
    tmp_path: Path,
) -> None:
    from imgscan.scan import ScanOptions, scan_image

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "id_rsa").write_bytes(fake_pem(2))
    (ctx / "placeholder").write_text("key removed\n")
    (ctx / "Dockerfile").write_text(
        "FROM scratch\nCOPY id_rsa /app/id_rsa\nLABEL stage=copy\nCOPY placeholder /app/id_rsa\n"
    )
    image = _build(sdk, ctx, "imgscan-test/copy-build:1")
    spool = tmp_path / "spool"
    result = scan_image("imgscan-test/copy-build:1", ScanOptions(source=_opts(dockerd, spool)))
    assert os.listdir(spool) == []
    assert result.image.config_digest == image.id
    assert len(result.image.layers) == 2  # LABEL makes no layer
    (finding,) = _key_findings(result)
    assert (finding.layer, finding.status, finding.removed_in_layer) == (
        0,
        Status.OVERWRITTEN,
        1,
    )
    assert "COPY" in (finding.created_by or "") and "/app/id_rsa" in (finding.created_by or "")


def _is_static_elf(path: Path) -> bool:
    """True for an ELF executable without a program interpreter (runs in FROM scratch)."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    if data[:4] != b"\x7fELF" or data[4] != 2:  # 64-bit only
        return False
    phoff = int.from_bytes(data[32:40], "little")
    phentsize = int.from_bytes(data[54:56], "little")
    phnum = int.from_bytes(data[56:58], "little")
    for i in range(phnum):
        p_type = int.from_bytes(data[phoff + i * phentsize : phoff + i * phentsize + 4], "little")
        if p_type == 3:  # PT_INTERP
            return False
    return True


@pytest.mark.engine
def test_real_build_with_run_reports_the_deleted_key(
    dockerd: Dockerd,  # noqa: F811
    sdk: Any,
    tmp_path: Path,
) -> None:
    from imgscan.scan import ScanOptions, scan_image

    if not _is_static_elf(BUSYBOX):
        msg = f"{BUSYBOX} is not a static busybox (Debian package busybox-static)"
        if in_ci():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    shutil.copy(BUSYBOX, ctx / "busybox")
    (ctx / "id_rsa").write_bytes(fake_pem(3))
    (ctx / "Dockerfile").write_text(
        "FROM scratch\n"
        "COPY busybox /bin/busybox\n"
        "COPY id_rsa /app/id_rsa\n"
        'RUN ["/bin/busybox", "rm", "/app/id_rsa"]\n'
    )
    _build(sdk, ctx, "imgscan-test/run-build:1")
    spool = tmp_path / "spool"
    result = scan_image(
        "docker://imgscan-test/run-build:1", ScanOptions(source=_opts(dockerd, spool))
    )
    assert os.listdir(spool) == []
    assert [bool(layer.created_by) for layer in result.image.layers] == [True, True, True]
    assert "rm" in (result.image.layers[2].created_by or "")
    (finding,) = _key_findings(result)
    assert (finding.layer, finding.status, finding.removed_in_layer) == (1, Status.DELETED, 2)


# --------------------------------------------------------------------------- push


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.engine
def test_push_to_a_dead_registry_raises_one_line(
    dockerd: Dockerd,  # noqa: F811
    loaded: dict[str, Any],
) -> None:
    dest = f"127.0.0.1:{_closed_port()}/imgscan-test/deleted-key:1"
    seen: list[Any] = []
    with pytest.raises(SourceError, match=r"push failed") as err:
        engine_push(loaded["tag"], dest, SourceOptions(docker_host=dockerd.host), seen.append)
    assert "\n" not in str(err.value) and dest in str(err.value)
    assert seen  # progress lines were streamed before the error line


@pytest.mark.engine
def test_push_rejects_a_digest_destination(
    dockerd: Dockerd,  # noqa: F811
    loaded: dict[str, Any],
) -> None:
    with pytest.raises(SourceError, match="not a digest"):
        engine_push(
            loaded["tag"],
            "127.0.0.1:1/x@sha256:" + "0" * 64,
            SourceOptions(docker_host=dockerd.host),
        )


@pytest.mark.engine
@pytest.mark.registry
def test_push_to_a_real_registry_returns_the_manifest_digest(
    dockerd: Dockerd,  # noqa: F811
    loaded: dict[str, Any],
    plain_registry: Any,
) -> None:
    import urllib.request

    dest = f"{plain_registry.host}/imgscan-test/pushed:1"
    seen: list[Any] = []
    digest = engine_push(
        f"docker://{loaded['tag']}", dest, SourceOptions(docker_host=dockerd.host), seen.append
    )
    assert digest is not None and digest.startswith("sha256:")
    assert any("Pushed" in str(line.get("status")) for line in seen)
    req = urllib.request.Request(
        f"http://{plain_registry.host}/v2/imgscan-test/pushed/manifests/1",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        body = resp.read()
    assert "sha256:" + hashlib.sha256(body).hexdigest() == digest
    manifest = json.loads(body)
    assert manifest["config"]["digest"] == loaded["image"].id
    assert len(manifest["layers"]) == 3
