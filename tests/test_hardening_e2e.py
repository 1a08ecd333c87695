"""Hardening end to end: a fixture image built as real tarballs, scanned by the pipeline."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from fixtures.builder import build
from fixtures.spec import parse_spec
from imgscan.detect.hardening import default_analyzers
from imgscan.model import Category, Finding, ScanResult, Severity, Status
from imgscan.scan import ScanOptions, build_detectors, scan_image, scan_opened
from imgscan.sources.resolve import resolve

BAD = """
name = "hardening-bad"
tag = "imgscan-fixtures/hardening-bad:latest"
created = "2024-01-01T00:00:00Z"

[config]
Env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
Cmd = ["/usr/sbin/sshd", "-D"]
ExposedPorts = { "22/tcp" = {} }

[[layers]]
created_by = "/bin/sh -c #(nop) ADD file:0123456789abcdef in / "
entries = [
  { path = "etc/", type = "dir" },
  { path = "etc/passwd", content = "root:x:0:0:root:/root:/bin/bash\\n" },
  { path = "etc/shadow", content = "root:*:19800:0:99999:7:::\\n", mode = "0640" },
  { path = "usr/", type = "dir" },
  { path = "usr/bin/", type = "dir" },
  { path = "usr/sbin/", type = "dir" },
  { path = "usr/bin/su", content = "\\u007fELF su\\n", mode = "4755" },
  { path = "tmp/", type = "dir", mode = "1777" },
]

[[layers]]
empty_layer = true
created_by = '/bin/sh -c #(nop)  CMD ["bash"]'

[[layers]]
created_by = "RUN /bin/sh -c apt-get update && apt-get install -y openssh-server # buildkit"
entries = [
  { path = "var/", type = "dir" },
  { path = "var/lib/", type = "dir" },
  { path = "var/lib/apt/", type = "dir" },
  { path = "var/lib/apt/lists/", type = "dir" },
  { path = "var/lib/apt/lists/Packages.lz4", generate = "random", seed = 3, size = 300000 },
  { path = "usr/", type = "dir" },
  { path = "usr/sbin/", type = "dir" },
  { path = "usr/sbin/sshd", content = "\\u007fELF sshd\\n", mode = "0755" },
  { path = "usr/bin/", type = "dir" },
  { path = "usr/bin/helper", content = "\\u007fELF helper\\n", mode = "4755" },
]

[[layers]]
created_by = "COPY . /app # buildkit"
entries = [
  { path = "app/", type = "dir" },
  { path = "app/main.py", content = "print('hi')\\n" },
  { path = "app/.git/", type = "dir" },
  { path = "app/.git/HEAD", content = "ref: refs/heads/main\\n" },
]

[[layers]]
created_by = "RUN /bin/sh -c chmod 777 /app && rm -rf /app/.git # buildkit"
entries = [
  { path = "app/", type = "dir", mode = "0777" },
  { path = "app/.git", type = "whiteout" },
]

[[layers]]
empty_layer = true
created_by = "EXPOSE map[22/tcp:{}]"
"""

HARDENED = """
name = "hardening-good"
tag = "imgscan-fixtures/hardening-good:1.0"
created = "2024-01-01T00:00:00Z"

[config]
User = "10001"
Env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
Entrypoint = ["/app/server"]
Volumes = { "/data" = {} }
Healthcheck = { Test = ["CMD", "/app/server", "--health"] }

[config.Labels]
"org.opencontainers.image.revision" = "0123abcd"
"org.opencontainers.image.source" = "https://git.example.invalid/app"
"org.opencontainers.image.created" = "2024-01-01T00:00:00Z"

[[layers]]
created_by = "/bin/sh -c #(nop) ADD file:0123456789abcdef in / "
entries = [
  { path = "etc/", type = "dir" },
  { path = "etc/passwd", content = "root:x:0:0::/:/bin/sh\\napp:x:10001:10001::/:/bin/false\\n" },
  { path = "etc/group", content = "root:x:0:\\napp:x:10001:\\n" },
  { path = "usr/", type = "dir" },
  { path = "usr/bin/", type = "dir" },
  { path = "usr/bin/su", content = "\\u007fELF su\\n", mode = "4755" },
  { path = "tmp/", type = "dir", mode = "1777" },
]

[[layers]]
empty_layer = true
created_by = '/bin/sh -c #(nop)  CMD ["bash"]'

[[layers]]
created_by = "RUN /bin/sh -c mkdir /data && chown 10001:10001 /data # buildkit"
entries = [{ path = "data/", type = "dir", mode = "0750", uid = 10001, gid = 10001 }]

[[layers]]
created_by = "COPY server /app/server # buildkit"
entries = [
  { path = "app/", type = "dir" },
  { path = "app/server", content = "\\u007fELF server\\n", mode = "0755" },
]
"""


def _build(tmp_path: Path, text: str, fmt: str) -> Path:
    spec = parse_spec(tomllib.loads(text), "<test>")
    out = tmp_path / (f"{spec.name}.tar" if fmt != "oci-dir" else spec.name)
    return build(spec, fmt, out)


def _scan_with_hardening(path: Path, reference: str) -> ScanResult:
    opts = ScanOptions()
    det = dataclasses.replace(build_detectors(opts), analyzers=tuple(default_analyzers()))
    with resolve(str(path), opts.source).open() as image:
        return scan_opened(image, opts, reference=reference, detectors=det)


def _by_rule(result: ScanResult) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for f in result.findings:
        out.setdefault(f.rule, []).append(f)
    return out


@pytest.mark.parametrize("fmt", ["docker-legacy", "oci-dir"])
def test_bad_image_findings_through_the_pipeline(
    tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _build(tmp_path, BAD, fmt)
    monkeypatch.chdir(tmp_path)  # scanned as the user would type it: a relative path
    found = _by_rule(_scan_with_hardening(Path(path.name), path.name))
    for rule in (
        "user-missing",
        "process-sshd",
        "port-22-exposed",
        "healthcheck-missing",
        "cache-apt",
        "setuid-added",
        "setuid-base",
        "fs-world-writable",
        "git-dir",
    ):
        assert rule in found, rule
    [helper] = found["setuid-added"]
    assert helper.path == "/usr/bin/helper" and helper.layer == 1
    assert helper.category is Category.FILE and helper.status is Status.PRESENT
    assert helper.created_by and "openssh-server" in helper.created_by  # filled by the driver
    assert helper.layer_digest and helper.layer_digest.startswith("sha256:")
    [su] = found["setuid-base"]
    assert su.path == "/usr/bin/su" and su.layer == 0
    [ww] = found["fs-world-writable"]
    assert ww.path == "/app" and ww.layer == 3 and "chmod 777" in ww.message
    [git] = found["git-dir"]
    assert git.layer == 2 and git.status is Status.DELETED and git.removed_in_layer == 3
    [apt] = found["cache-apt"]
    assert apt.extra["bytes"] == 300000 and apt.layer == 1
    [sshd] = found["process-sshd"]
    assert sshd.category is Category.CONFIG and sshd.location == "config.Cmd"
    assert "tag-mutable" not in found  # an archive path is not a registry tag


def test_hardened_fixture_has_nothing_at_medium_or_above(tmp_path: Path) -> None:
    path = _build(tmp_path, HARDENED, "oci-tar")
    result = _scan_with_hardening(path, str(path))
    hardening = {a.name for a in default_analyzers()}
    assert set(result.stats["analyzers"]) == hardening
    assert not [u for u in result.unscanned if u.path.startswith("analyzer:")]
    assert [f.rule for f in result.findings] == ["setuid-base"]
    assert all(f.severity.rank < Severity.MEDIUM.rank for f in result.findings)


def test_scan_image_runs_the_hardening_analyzers(tmp_path: Path) -> None:
    path = _build(tmp_path, BAD, "docker-legacy")
    result = scan_image(str(path), ScanOptions())
    rules = {f.rule for f in result.findings}
    assert {"user-missing", "setuid-added", "git-dir"} <= rules


def test_every_report_format_lists_hardening_findings(tmp_path: Path) -> None:
    import io
    import json

    import jsonschema

    from imgscan.report.render import render

    path = _build(tmp_path, BAD, "docker-oci")
    result = _scan_with_hardening(path, str(path))
    out = {}
    for fmt in ("json", "sarif", "table"):
        buf = io.StringIO()
        render(result, fmt, buf)
        out[fmt] = buf.getvalue()
    report = json.loads(out["json"])
    cats = {f["rule"]: f["category"] for f in report["findings"]}
    assert cats["user-missing"] == "config" and cats["setuid-added"] == "file"
    [git] = [f for f in report["findings"] if f["rule"] == "git-dir"]
    assert git["status"] == "deleted" and git["remediation"]
    sarif = json.loads(out["sarif"])
    schema = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text())
    jsonschema.validate(sarif, schema)
    sarif_rules = {r["ruleId"] for r in sarif["runs"][0]["results"]}
    assert {"user-missing", "setuid-added", "git-dir", "port-22-exposed"} <= sarif_rules
    for rule in ("user-missing", "setuid-added", "fs-world-writable"):
        assert rule in out["table"], rule
