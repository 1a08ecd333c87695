"""Redaction, digests and fingerprints: nothing secret leaks, identities stay stable."""

from __future__ import annotations

import pytest

from imgscan.findings.fingerprint import fingerprint, redact, secret_digest

BODY = "MIIEowIBAAKCAQEAx" + "Q" * 200


@pytest.mark.parametrize(
    "secret",
    [
        f"-----BEGIN RSA PRIVATE KEY-----\n{BODY}\n-----END RSA PRIVATE KEY-----",
        f"-----BEGIN RSA PRIVATE KEY-----\\n{BODY}\\n-----END RSA PRIVATE KEY-----",
        f'"-----BEGIN EC PRIVATE KEY-----\\n"\n"{BODY}\\n"',
        f"  -----BEGIN OPENSSH PRIVATE KEY-----{BODY}",
    ],
)
def test_pem_keys_show_only_the_armour_line(secret: str) -> None:
    shown = redact(secret)
    assert shown.startswith("-----BEGIN ") and shown.endswith("…(redacted)")
    assert "MIIE" not in shown and "QQQQ" not in shown


def test_short_and_long_values() -> None:
    assert redact("AKIAZZZZEXAMPLE7QXZ") == "AKIA…7QXZ"
    assert redact("s3cr3t-pw") == "s3…pw"
    assert redact("abc") == "…"
    assert redact("") == ""
    for value in ("AKIAZZZZEXAMPLE7QXZ", "s3cr3t-pw", "abcdefgh"):
        assert value not in redact(value)


def test_fingerprint_depends_on_rule_path_and_secret_only() -> None:
    d = secret_digest("value-1")
    assert len(d) == 64
    a = fingerprint("aws-secret-access-key", "/app/.env", d)
    assert a == fingerprint("aws-secret-access-key", "/app/.env", d)
    assert a != fingerprint("aws-secret-access-key", "/app/.env.bak", d)
    assert a != fingerprint("generic-secret", "/app/.env", d)
    assert a != fingerprint("aws-secret-access-key", "/app/.env", secret_digest("value-2"))
