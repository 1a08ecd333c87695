"""Tests of the benchmark harness: planted values, ground truth, tar layers, matching, measuring.

Run with `python -m pytest bench/test_bench.py -q`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import tarfile
import zlib
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_image
import plant
import run


@pytest.fixture(scope="module")
def plan() -> plant.Plan:
    """The default plan (seed 1337), as the image uses it."""
    return plant.plant(1337, first_layer=2)


def _truth_json(plan: plant.Plan) -> dict[str, object]:
    return {
        "secrets": [t.to_json() for t in plan.truth if not t.decoy],
        "decoys": [t.to_json() for t in plan.truth if t.decoy],
    }


def test_plan_is_deterministic_and_sized(plan: plant.Plan) -> None:
    again = plant.plant(1337, first_layer=2)
    assert [t.values for t in again.truth] == [t.values for t in plan.truth]
    secrets = [t for t in plan.truth if not t.decoy]
    assert len(secrets) == 60
    assert {t.state for t in secrets} == {"present", "deleted", "overwritten"}
    assert {"archive-member", "pyc", "env", "history"} <= {t.location for t in secrets}
    assert plant.plant(7).truth[0].values != plan.truth[0].values


def test_truth_lines_point_at_the_values(plan: plant.Plan) -> None:
    files = {e.path: e.data for pl in plan.layers for e in pl.entries if e.kind == "file"}
    checked = 0
    for t in plan.truth:
        if t.location != "file" or t.path not in files:
            continue
        lines = files[t.path].decode().splitlines()
        first_line_of_value = t.values[0].splitlines()[0]
        # the overwritten and rotated versions share a path: look in the layer that wrote it
        layer = plan.layers[t.layer - 2]  # type: ignore[operator]
        data = next(e.data for e in layer.entries if e.path == t.path).decode().splitlines()
        assert first_line_of_value in data[t.line - 1] or t.family == "gcp", t.id  # type: ignore[operator]
        assert lines
        checked += 1
    assert checked > 40


def test_github_classic_tokens_carry_a_valid_checksum(plan: plant.Plan) -> None:
    alphabet = plant.B62
    toks = [t.values[0] for t in plan.truth if t.kind.startswith("github-") and "_" in t.values[0]]
    classic = [v for v in toks if v[:4] in ("ghp_", "gho_")]
    assert len(classic) >= 3
    for tok in classic:
        body, check = tok[4:34], tok[34:]
        n = 0
        for ch in check:
            n = n * 62 + alphabet.index(ch)
        assert n == zlib.crc32(body.encode()) & 0xFFFFFFFF


def test_private_keys_parse_and_jwts_decode(plan: plant.Plan) -> None:
    from cryptography.hazmat.primitives import serialization as ser

    keys = 0
    for t in plan.truth:
        v = (
            t.values[1]
            if t.kind in ("kubeconfig-client-key", "gcp-service-account")
            else t.values[0]
        )
        if "BEGIN OPENSSH PRIVATE KEY" in v:
            ser.load_ssh_private_key(v.encode(), None)
            keys += 1
        elif "-----BEGIN" in v and "PRIVATE KEY" in v and not t.decoy:
            ser.load_pem_private_key(v.encode(), None)
            keys += 1
        if t.kind == "jwt":
            head = json.loads(base64.urlsafe_b64decode(v.split(".")[0] + "=="))
            assert head["alg"] == "HS256"
    assert keys >= 4


def test_planted_layer_tar_has_whiteouts_and_opaque(plan: plant.Plan, tmp_path: Path) -> None:
    out = tmp_path / "l3.tar"
    build_image.write_plant_layer(out, plan.layers[1])
    with tarfile.open(out) as tf:
        names = tf.getnames()
    assert "etc/ssl/private/.wh.legacy.pem" in names
    assert "app/tmp/.wh..wh..opq" in names
    assert "app/config/settings.py" in names


def test_debian_mirror_reads_deb822_and_one_line_sources(tmp_path: Path) -> None:
    d822 = tmp_path / "debian.sources"
    d822.write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n"
    )
    assert build_image.debian_mirror([d822]) == "http://mirror.example/debian"
    one = tmp_path / "sources.list"
    one.write_text("deb [arch=amd64] http://other.example/debian bookworm main\n")
    assert build_image.debian_mirror([one]) == "http://other.example/debian"
    assert build_image.debian_mirror([tmp_path / "missing.list"]) is None


def test_scoring_counts_recall_decoys_and_vendor_hits(plan: plant.Plan) -> None:
    truth = _truth_json(plan)
    secrets = truth["secrets"]
    assert isinstance(secrets, list)
    hits = [
        run.Hit(rule="x", path=run.norm_path(s["path"]), line=None, sha256=s["sha256"][0])
        for s in secrets[:30]
    ]
    hits.append(
        run.Hit(rule="aws", path="app/docs/aws-setup.md", line=7, value="AKIAIOSFODNN7EXAMPLE")
    )
    hits.append(run.Hit(rule="pem", path="usr/lib/libfoo.so", line=3, value="-----BEGIN"))
    sc = run.score(hits, truth)
    assert sc["found"] == "30/60"
    assert sc["decoy_fp"] == 1
    assert sc["vendor_findings"] == 1
    # detect-secrets style: location only, no usable digest
    s0 = next(s for s in secrets if s["kind"] == "npm-token")
    ds = run.Hit(rule="kw", path=run.norm_path(s0["path"]), line=s0["line"], layer=2, sha1="0")
    assert run.score([ds], truth)["found"] == "1/60"
    # a config check without a value (e.g. "no USER") is not a config secret
    check = run.Hit(rule="user-missing", path="<config>", line=None)
    assert run.score([check], truth)["found"] == "0/60"
    # a different layer at the same path and line is not a match
    wrong = run.Hit(rule="kw", path=run.norm_path(s0["path"]), line=s0["line"], layer=3)
    assert run.score([wrong], truth)["found"] == "0/60"


def test_paths_normalise_across_tools() -> None:
    assert run.norm_path("/app/x.zip!/backup/prod.env") == "app/x.zip!backup/prod.env"
    assert run.norm_path("app/x.zip | backup/prod.env") == "app/x.zip!backup/prod.env"
    assert run.norm_path("./etc/profile") == "etc/profile"
    assert run.norm_path(None) == "<config>"


def test_pem_forms_match_by_digest(plan: plant.Plan) -> None:
    truth = _truth_json(plan)
    rec = next(s for s in truth["secrets"] if s["kind"] == "rsa-private-key")  # type: ignore[attr-defined]
    pem_text = rec["values"][0]
    item = run.TruthItem.of(rec)
    for form in (pem_text.strip(), pem_text.replace("\n", "")):
        digest = hashlib.sha256(form.encode()).hexdigest()
        assert item.matches(run.Hit(rule="pem", path="elsewhere", line=None, sha256=digest))


def test_measure_reports_cpu_rss_and_kills_on_timeout(tmp_path: Path) -> None:
    code = "b = bytearray(80 * 1024 * 1024)\nfor i in range(0, len(b), 4096): b[i] = 1\n"
    r = run.measure(
        [sys.executable, "-c", code], stdout=tmp_path / "o", stderr=tmp_path / "e", timeout=60
    )
    assert r.rc == 0 and not r.timed_out
    assert r.maxrss_mb >= 80
    assert r.cpu > 0 and r.wall > 0
    slow = run.measure(
        [sys.executable, "-c", "import time; time.sleep(30)"],
        stdout=tmp_path / "o",
        stderr=tmp_path / "e",
        timeout=1,
    )
    assert slow.timed_out and slow.wall < 10
