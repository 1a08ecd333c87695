"""The pre-push gate against a real docker-registry: push only what passes the policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fixtures.builder import build
from fixtures.spec import load_spec
from imgscan.cli import main
from imgscan.errors import SourceError
from imgscan.sources.base import SourceOptions
from imgscan.sources.registry import RegistrySource
from tests.infra.registry import RegistryServer

pytestmark = pytest.mark.registry

SPECS = Path(__file__).resolve().parent.parent / "fixtures" / "specs"

CLEAN = """
name = "clean"
tag = "imgscan-fixtures/clean:1"
created = "2024-01-01T00:00:00Z"

[config]
User = "10001"
Cmd = ["/app/run"]
Healthcheck = { Test = ["CMD", "/app/run", "--health"] }

[config.Labels]
"org.opencontainers.image.revision" = "abc123"
"org.opencontainers.image.source" = "https://example.invalid/app"
"org.opencontainers.image.created" = "2024-01-01T00:00:00Z"

[[layers]]
created_by = "COPY run /app/run"
entries = [
  { path = "app/", type = "dir" },
  { path = "app/run", content = "#!/bin/sh\\necho hello\\n", mode = "0755" },
  { path = "etc/", type = "dir" },
  { path = "etc/passwd", content = '''root:x:0:0:root:/root:/sbin/nologin
app:x:10001:10001::/app:/sbin/nologin
''' },
]
"""


def _spec(tmp: Path, name: str, text: str) -> Path:
    spec_path = tmp / f"{name}.toml"
    spec_path.write_text(text)
    return spec_path


def _image(tmp: Path, name: str, text: str | None = None) -> Path:
    spec_path = _spec(tmp, name, text) if text is not None else SPECS / f"{name}.toml"
    return build(load_spec(spec_path), "docker-oci", tmp / f"{name}.tar")


def _exists(server: RegistryServer, ref: str) -> bool:
    try:
        with RegistrySource(
            ref, SourceOptions(), insecure=True, lookup_credentials=False
        ).open() as image:
            return bool(image.blobs)
    except SourceError:
        return False


def test_gate_pushes_a_clean_archive(
    plain_registry: RegistryServer, repo_name: str, tmp_path: Path
) -> None:
    image = _image(tmp_path, "clean", CLEAN)
    dest = f"{plain_registry.host}/{repo_name}:1.0"
    res = CliRunner().invoke(
        main,
        [
            "gate",
            str(image),
            "--push",
            dest,
            "--insecure",
            "--format",
            "json",
            "-o",
            str(tmp_path / "r.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "policy passed" in res.output and f"pushed {image} to {dest}" in res.output
    # What is in the registry is what was scanned: same config digest, same layers.
    with RegistrySource(
        dest, SourceOptions(), insecure=True, lookup_credentials=False
    ).open() as pushed:
        from imgscan.sources.archive import open_path

        with open_path(str(image), SourceOptions()) as local:
            assert pushed.info.config_digest == local.info.config_digest
            assert [b.diff_id for b in pushed.blobs] == [b.diff_id for b in local.blobs]


def test_gate_pushes_nothing_when_the_policy_fails(
    plain_registry: RegistryServer, repo_name: str, tmp_path: Path
) -> None:
    image = _image(tmp_path, "whiteout-key")
    dest = f"{plain_registry.host}/{repo_name}:bad"
    res = CliRunner().invoke(
        main, ["gate", str(image), "--push", dest, "--insecure", "--format", "json"]
    )
    assert res.exit_code == 1, res.output
    assert "nothing pushed" in res.output
    assert not _exists(plain_registry, dest)


def test_gate_without_push_is_a_plain_ci_step(tmp_path: Path) -> None:
    image = _image(tmp_path, "clean", CLEAN)
    assert CliRunner().invoke(main, ["gate", str(image), "-q"]).exit_code == 0
    leaky = _image(tmp_path, "whiteout-key")
    assert CliRunner().invoke(main, ["gate", str(leaky), "-q"]).exit_code == 1
    # Only the rotated key is present; the deleted and overwritten ones count by default.
    res = CliRunner().invoke(
        main, ["gate", str(leaky), "-q", "--fail-on-state", "present", "--category", "secret"]
    )
    assert res.exit_code == 1 and "policy failed: 1 finding(s) (1 critical)" in res.output
    res = CliRunner().invoke(main, ["gate", str(tmp_path / "missing.tar")])
    assert res.exit_code == 3
    res = CliRunner().invoke(main, ["gate", str(image), "--fail-on", "bogus"])
    assert res.exit_code == 2


@pytest.mark.engine
def test_gate_pushes_through_the_engine_only_when_clean(
    dockerd: Any, plain_registry: RegistryServer, repo_name: str, tmp_path: Path
) -> None:
    """Local engine image -> gate -> ``docker push`` by image ID; a leaky one is not pushed."""
    sdk = dockerd.client()
    clean = build(
        load_spec(_spec(tmp_path, "clean", CLEAN)), "docker-legacy", tmp_path / "clean.tar"
    )
    leaky = build(load_spec(SPECS / "whiteout-key.toml"), "docker-legacy", tmp_path / "leaky.tar")
    for path in (clean, leaky):
        with open(path, "rb") as f:
            sdk.images.load(f.read())
    env = {"DOCKER_HOST": dockerd.host}
    good = f"{plain_registry.host}/{repo_name}:clean"
    res = CliRunner(env=env).invoke(
        main, ["gate", "docker://imgscan-fixtures/clean:1", "--push", good, "-q"]
    )
    assert res.exit_code == 0, res.output
    assert _exists(plain_registry, good)
    bad = f"{plain_registry.host}/{repo_name}:leaky"
    res = CliRunner(env=env).invoke(
        main, ["gate", "docker://imgscan-fixtures/whiteout-key:latest", "--push", bad, "-q"]
    )
    assert res.exit_code == 1, res.output
    assert "nothing pushed" in res.output
    assert not _exists(plain_registry, bad)
