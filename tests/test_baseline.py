"""Baselines: accept today's findings, fail only on new ones, expire on schedule."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
from pathlib import Path

import pytest
from report_samples import fake_secret, raw_secrets, sample_result, secret_finding

from imgscan.errors import ConfigError
from imgscan.findings.baseline import (
    BASELINE_VERSION,
    Baseline,
    create_baseline,
    load_baseline,
    update_baseline,
    write_baseline,
)
from imgscan.gate import EXIT_OK, EXIT_POLICY, Policy, evaluate
from imgscan.model import ScanResult, Severity, Status

TODAY = dt.date(2026, 11, 29)


def with_new_secret(r: ScanResult, seed: int = 99) -> ScanResult:
    """``r`` plus one freshly generated secret in a new file of the last layer."""
    new = secret_finding(
        "aws-secret-access-key",
        "AWS secret access key",
        Severity.CRITICAL,
        fake_secret(random.Random(seed), "FAKEadd", 33, "abcdefXYZ0123456789"),
        path="/app/new.env",
        layer=4,
        line=1,
        status=Status.PRESENT,
        image=r.image,
    )
    return dataclasses.replace(r, findings=(*r.findings, new))


def test_round_trip_create_pass_new_secret_fails(tmp_path: Path) -> None:
    r = sample_result()
    assert evaluate(r, Policy()).exit_code == EXIT_POLICY  # the image fails without a baseline
    path = tmp_path / ".imgscan-baseline.json"
    write_baseline(create_baseline(r, reason="legacy image, tracked in SEC-1", today=TODAY), path)

    loaded = load_baseline(path)
    assert set(loaded.entries) == {f.fingerprint for f in r.findings}
    sup = loaded.suppressions(TODAY)
    ok = evaluate(r, Policy(), sup)
    assert ok.exit_code == EXIT_OK
    assert ok.suppressed == len(r.findings)

    r2 = with_new_secret(r)
    bad = evaluate(r2, Policy(), sup)
    assert bad.exit_code == EXIT_POLICY
    assert bad.failing == (r2.findings[-1],)
    assert bad.suppressed == len(r.findings)


def test_fingerprint_survives_a_rebuild(tmp_path: Path) -> None:
    r = sample_result()
    path = tmp_path / "b.json"
    write_baseline(create_baseline(r, today=TODAY), path)
    # A rebuild moves the same secrets to other layers and lines: still accepted.
    moved = dataclasses.replace(
        r,
        findings=tuple(
            dataclasses.replace(f, layer=(f.layer or 0) + 1, line=(f.line or 0) + 5)
            for f in r.findings
        ),
    )
    assert evaluate(moved, Policy(), load_baseline(path).suppressions(TODAY)).exit_code == EXIT_OK


def test_file_is_versioned_readable_and_secret_free(tmp_path: Path) -> None:
    r = sample_result()
    path = tmp_path / "b.json"
    write_baseline(create_baseline(r, reason="ok", expires=dt.date(2027, 1, 31), today=TODAY), path)
    text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    assert data["imgscan_baseline"] == BASELINE_VERSION
    assert data["image"] == r.image.reference
    first = data["entries"][0]
    assert set(first) == {"fingerprint", "rule", "where", "reason", "expires", "added"}
    assert (first["reason"], first["expires"], first["added"]) == ("ok", "2027-01-31", "2026-11-29")
    assert [e["fingerprint"] for e in data["entries"]] == sorted(f.fingerprint for f in r.findings)
    for secret in raw_secrets(r):
        assert secret not in text
    for f in r.findings:
        assert f.redacted is None or f.redacted not in text


def test_expired_entries_no_longer_suppress(tmp_path: Path) -> None:
    r = sample_result()
    b = create_baseline(r, reason="temporary", expires=dt.date(2026, 12, 31), today=TODAY)
    path = tmp_path / "b.json"
    write_baseline(b, path)
    b = load_baseline(path)
    assert evaluate(r, Policy(), b.suppressions(dt.date(2026, 12, 31))).exit_code == EXIT_OK
    later = dt.date(2027, 1, 1)
    assert b.suppressions(later) == {}
    assert len(b.expired(later)) == len(b.entries)
    out = evaluate(r, Policy(), b.suppressions(later))
    assert out.exit_code == EXIT_POLICY and out.suppressed == 0


def test_update_keeps_reasons_adds_new_and_prunes_gone() -> None:
    r = sample_result()
    old = create_baseline(r, reason="first review", today=TODAY)
    r2 = with_new_secret(dataclasses.replace(r, findings=r.findings[1:]))
    later = TODAY + dt.timedelta(days=3)
    upd = update_baseline(old, r2, reason="second review", today=later)
    assert set(upd.entries) == {f.fingerprint for f in r2.findings}
    assert r.findings[0].fingerprint not in upd.entries  # gone from the image: pruned
    kept = upd.entries[r.findings[1].fingerprint]
    assert (kept.reason, kept.added) == ("first review", TODAY)
    added = upd.entries[r2.findings[-1].fingerprint]
    assert (added.reason, added.added) == ("second review", later)
    no_prune = update_baseline(old, r2, reason="second review", today=later, prune=False)
    assert r.findings[0].fingerprint in no_prune.entries


def test_update_renews_expired_entries() -> None:
    r = sample_result()
    old = create_baseline(r, reason="until new year", expires=dt.date(2026, 12, 31), today=TODAY)
    upd = update_baseline(
        old, r, reason="renewed", expires=dt.date(2027, 6, 30), today=dt.date(2027, 1, 2)
    )
    assert {e.reason for e in upd.entries.values()} == {"renewed"}
    assert upd.suppressions(dt.date(2027, 1, 2)).keys() == {f.fingerprint for f in r.findings}


def test_empty_reason_is_refused() -> None:
    with pytest.raises(ConfigError, match="reason"):
        create_baseline(sample_result(), reason="  ")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "malformed JSON"),
        ("[]", "expected a JSON object"),
        ('{"imgscan_baseline": 2, "entries": []}', "unsupported baseline version 2"),
        ('{"imgscan_baseline": 1, "entries": [], "extra": 1}', "unknown key 'extra'"),
        ('{"imgscan_baseline": 1, "entries": {}}', "'entries' must be a list"),
        (
            '{"imgscan_baseline": 1, "entries": [{"fingerprint": "XYZ", "reason": "r"}]}',
            r"entries\[0\]: 'fingerprint'",
        ),
        (
            '{"imgscan_baseline": 1, "entries": [{"fingerprint": "abcdef0123", "reason": ""}]}',
            r"entries\[0\]: 'reason'",
        ),
        (
            '{"imgscan_baseline": 1, "entries": [{"fingerprint": "abcdef0123", "reason": "r",'
            ' "expires": "next year"}]}',
            r"entries\[0\]: 'expires': expected a date",
        ),
        (
            '{"imgscan_baseline": 1, "entries": [{"fingerprint": "abcdef0123", "reason": "r"},'
            ' {"fingerprint": "abcdef0123", "reason": "r"}]}',
            "duplicate fingerprint",
        ),
    ],
)
def test_bad_baseline_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "b.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as info:
        load_baseline(path)
    assert str(info.value).startswith(f"baseline {path}: ")
    assert "\n" not in str(info.value)


def test_missing_baseline_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_baseline(tmp_path / "nope.json")


def test_empty_baseline_suppresses_nothing() -> None:
    assert Baseline().suppressions(TODAY) == {}
