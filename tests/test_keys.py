"""Private key structure validation against real tools' output, fakes and malformed blocks."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgscan.detect.keys import FAKE_KINDS, fake_private_key, validate_private_key


@pytest.mark.parametrize("kind", FAKE_KINDS)
def test_fake_keys_are_deterministic_and_parse(kind: str) -> None:
    a = fake_private_key(kind, 7)
    assert a == fake_private_key(kind, 7)
    assert a != fake_private_key(kind, 8)
    assert validate_private_key(a) is True


def test_unknown_fake_kind_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown fake key kind"):
        fake_private_key("rot13", 1)


def _flip_payload_byte(pem: str) -> str:
    """Corrupt one byte in the middle of the DER/SSH payload, keeping the base64 valid."""
    lines = pem.strip().splitlines()
    body = [ln for ln in lines[1:-1] if ln and ":" not in ln and not ln.startswith("=")]
    blob = bytearray(base64.b64decode("".join(body)))
    blob[len(blob) // 2] ^= 0x5A
    b64 = base64.b64encode(bytes(blob)).decode()
    crc = [ln for ln in lines[1:-1] if ln.startswith("=")]  # PGP armor keeps its CRC line
    return "\n".join([lines[0], b64, *crc, lines[-1]]) + "\n"


@pytest.mark.parametrize("kind", ["rsa", "dsa", "pkcs8", "openssh", "openssh-rsa", "pgp"])
def test_corrupted_keys_fail(kind: str) -> None:
    assert validate_private_key(_flip_payload_byte(fake_private_key(kind, 3))) is False


@pytest.mark.parametrize(
    "text",
    [
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA...\n-----END RSA PRIVATE KEY-----",
        "-----BEGIN PRIVATE KEY-----\n<your key here>\n-----END PRIVATE KEY-----",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----",
        "-----BEGIN EC PRIVATE KEY-----\n-----END EC PRIVATE KEY-----",
        "no pem here at all",
    ],
)
def test_placeholders_and_truncated_blocks_fail(text: str) -> None:
    assert validate_private_key(text) is False


def test_truncated_fake_fails() -> None:
    pem = fake_private_key("rsa", 1).splitlines()
    short = "\n".join([pem[0], *pem[1:4], pem[-1]])
    assert validate_private_key(short) is False


def test_json_escaped_newlines_are_accepted() -> None:
    escaped = fake_private_key("pkcs8", 2).replace("\n", "\\n")
    assert validate_private_key(escaped) is True


def _openssl(tmp: Path, *args: str) -> str:
    out = subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp)
    return out.stdout.decode()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_real_openssl_keys_validate(tmp_path: Path) -> None:
    rsa_pkcs8 = _openssl(
        tmp_path, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"
    )
    assert validate_private_key(rsa_pkcs8) is True
    (tmp_path / "k.pem").write_text(rsa_pkcs8)
    rsa_pkcs1 = _openssl(tmp_path, "pkey", "-in", "k.pem", "-traditional")
    assert "BEGIN RSA PRIVATE KEY" in rsa_pkcs1
    assert validate_private_key(rsa_pkcs1) is True
    ec = _openssl(tmp_path, "ecparam", "-name", "prime256v1", "-genkey", "-noout")
    assert "BEGIN EC PRIVATE KEY" in ec
    assert validate_private_key(ec) is True
    ed = _openssl(tmp_path, "genpkey", "-algorithm", "ED25519")
    assert validate_private_key(ed) is True
    enc = _openssl(
        tmp_path,
        "pkcs8",
        "-topk8",
        "-in",
        "k.pem",
        "-passout",
        "pass:test-only",
        "-v2",
        "aes-256-cbc",
    )
    assert "BEGIN ENCRYPTED PRIVATE KEY" in enc
    assert validate_private_key(enc) is True
    dsa_params = tmp_path / "dsa.params"
    _openssl(tmp_path, "dsaparam", "-out", str(dsa_params), "1024")
    dsa = _openssl(tmp_path, "gendsa", str(dsa_params))
    if "BEGIN PRIVATE KEY" in dsa:  # OpenSSL 3 writes PKCS#8; ask for the traditional form
        (tmp_path / "d.pem").write_text(dsa)
        dsa = _openssl(tmp_path, "dsa", "-in", "d.pem")
    assert validate_private_key(dsa) is True


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")
@pytest.mark.parametrize(
    "args", [["-t", "ed25519"], ["-t", "rsa", "-b", "1024"], ["-t", "ecdsa", "-b", "256"]]
)
def test_real_openssh_keys_validate(tmp_path: Path, args: list[str]) -> None:
    key = tmp_path / "id"
    subprocess.run(
        ["ssh-keygen", *args, "-N", "", "-q", "-f", str(key), "-C", "t@t"],
        check=True,
        capture_output=True,
    )
    assert validate_private_key(key.read_text()) is True
    enc = tmp_path / "id_enc"
    subprocess.run(
        ["ssh-keygen", *args, "-N", "test-only-pass", "-q", "-f", str(enc)],
        check=True,
        capture_output=True,
    )
    assert validate_private_key(enc.read_text()) is True


def test_unknown_label_is_not_judged() -> None:
    der = base64.b64encode(b"\x30\x03\x02\x01\x00").decode()
    assert (
        validate_private_key(
            f"-----BEGIN FOO PRIVATE KEY-----\n{der}\n-----END FOO PRIVATE KEY-----"
        )
        is None
    )


@settings(max_examples=300, deadline=None)
@given(
    label=st.sampled_from(
        [
            "RSA PRIVATE KEY",
            "EC PRIVATE KEY",
            "DSA PRIVATE KEY",
            "PRIVATE KEY",
            "ENCRYPTED PRIVATE KEY",
            "OPENSSH PRIVATE KEY",
            "PGP PRIVATE KEY BLOCK",
        ]
    ),
    body=st.binary(max_size=600),
)
def test_random_payloads_never_raise(label: str, body: bytes) -> None:
    text = f"-----BEGIN {label}-----\n{base64.b64encode(body).decode()}\n-----END {label}-----"
    assert validate_private_key(text) in (True, False, None)


@settings(max_examples=100, deadline=None)
@given(kind=st.sampled_from(FAKE_KINDS), seed=st.integers(0, 10_000), pos=st.integers(0, 10_000))
def test_fakes_with_a_flipped_der_byte_never_raise(kind: str, seed: int, pos: int) -> None:
    pem = fake_private_key(kind, seed)
    lines = pem.strip().splitlines()
    body = [ln for ln in lines[1:-1] if ln and ":" not in ln and not ln.startswith("=")]
    blob = bytearray(base64.b64decode("".join(body)))
    blob[pos % len(blob)] ^= 0x01
    text = f"{lines[0]}\n{base64.b64encode(bytes(blob)).decode()}\n{lines[-1]}"
    assert validate_private_key(text) in (True, False, None)


def test_many_headers_without_footers_finish_quickly() -> None:
    import time

    start = time.perf_counter()
    assert validate_private_key("-----BEGIN RSA PRIVATE KEY-----\nAAAA" * 20_000) is False
    assert time.perf_counter() - start < 2.0
