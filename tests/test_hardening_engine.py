"""Hardening on images built by a real, private dockerd (classic builder, no network).

A base image (busybox, a setuid ``su``, a CMD) and an application image FROM it,
so the history, base detection and layer attribution come from real builds.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imgscan.detect.hardening import default_analyzers
from imgscan.model import Category, Finding, ScanResult, Status
from imgscan.scan import ScanOptions, build_detectors, scan_opened
from imgscan.sources.base import SourceOptions
from imgscan.sources.resolve import resolve
from tests.infra.dockerd import Dockerd, dockerd, in_ci  # noqa: F401 - dockerd is a fixture

BUSYBOX = Path(os.environ.get("IMGSCAN_BUSYBOX", "/bin/busybox"))  # busybox-static
BB = '"/bin/busybox"'

BASE_DOCKERFILE = f"""FROM scratch
COPY busybox /bin/busybox
RUN [{BB}, "mkdir", "-p", "/tmp", "/etc", "/usr/bin", "/usr/local/bin", "/app"]
RUN [{BB}, "cp", "/bin/busybox", "/usr/bin/su"]
RUN [{BB}, "chmod", "4755", "/usr/bin/su"]
COPY passwd /etc/passwd
CMD ["/bin/busybox", "sh"]
"""

APP_DOCKERFILE = f"""FROM imgscan-test/hardening-base:1
COPY main.sh /app/main.sh
RUN [{BB}, "chmod", "777", "/app"]
RUN [{BB}, "cp", "/bin/busybox", "/usr/local/bin/helper"]
RUN [{BB}, "chmod", "4755", "/usr/local/bin/helper"]
EXPOSE 22
USER root
CMD ["/bin/busybox", "sh", "/app/main.sh"]
"""


@pytest.fixture(scope="module")
def built(dockerd: Dockerd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # noqa: F811
    """Build the base and the app image; yield the app image's tag."""
    data = BUSYBOX.read_bytes() if BUSYBOX.exists() else b""
    if data[:4] != b"\x7fELF":
        msg = f"{BUSYBOX} is missing (Debian package busybox-static)"
        if in_ci():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    sdk: Any = dockerd.client()
    try:
        base = tmp_path_factory.mktemp("base")
        shutil.copy(BUSYBOX, base / "busybox")
        (base / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (base / "Dockerfile").write_text(BASE_DOCKERFILE)
        app = tmp_path_factory.mktemp("app")
        (app / "main.sh").write_text("echo hello\n")
        (app / "Dockerfile").write_text(APP_DOCKERFILE)
        for ctx, tag in (
            (base, "imgscan-test/hardening-base:1"),
            (app, "imgscan-test/hardening-app:1"),
        ):
            sdk.images.build(path=str(ctx), tag=tag, network_mode="none", rm=True, forcerm=True)
        yield "imgscan-test/hardening-app:1"
    finally:
        sdk.close()


def _scan(dockerd: Dockerd, tag: str, spool: Path) -> ScanResult:  # noqa: F811
    spool.mkdir(exist_ok=True)
    opts = ScanOptions(source=SourceOptions(docker_host=dockerd.host, spool_dir=str(spool)))
    det = dataclasses.replace(build_detectors(opts), analyzers=tuple(default_analyzers()))
    with resolve(f"docker://{tag}", opts.source).open() as image:
        return scan_opened(image, opts, reference=f"docker://{tag}", detectors=det)


def _rules(result: ScanResult) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for f in result.findings:
        out.setdefault(f.rule, []).append(f)
    return out


@pytest.mark.engine
def test_real_build_findings_and_attribution(
    dockerd: Dockerd,  # noqa: F811
    built: str,
    tmp_path: Path,
) -> None:
    result = _scan(dockerd, built, tmp_path / "spool")
    found = _rules(result)
    layers = result.image.layers
    created = [layer.created_by or "" for layer in layers]

    [root] = found["user-root"]
    assert root.category is Category.CONFIG and root.created_by and "USER root" in root.created_by
    assert found["port-22-exposed"] and found["healthcheck-missing"]
    [tag] = found["tag-unpinned"]  # docker://name:1 is a tag, not a digest
    assert tag.location == "reference" and "tag-mutable" not in found

    [su] = found["setuid-base"]  # chmod'ed in the base image, before its CMD
    assert su.path == "/usr/bin/su" and "4755" in created[su.layer or 0]

    [helper] = found["setuid-added"]
    assert helper.path == "/usr/local/bin/helper" and helper.status is Status.PRESENT
    assert "chmod" in created[helper.layer or 0] and "helper" in created[helper.layer or 0]

    [app] = found["fs-world-writable"]
    assert app.path == "/app" and "777" in created[app.layer or 0]

    [runs] = found["run-consecutive"]
    assert len(runs.extra["layers"]) == 3  # the three RUNs of the app, not the base's

    wasted = {f.layer for f in found["wasted-bytes"]}
    assert helper.layer is not None and helper.layer - 1 in wasted  # cp, then chmod copies up
