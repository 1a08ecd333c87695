"""Credential files: each kind yields its credential value at the right offset; fakes do not."""

from __future__ import annotations

import base64
import json
import random
import shutil
import string
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgscan.detect.base import FileContext, Hit
from imgscan.detect.credfiles import (
    CredentialFileDetector,
    env_value_is_secret,
    is_pkcs12,
    jks_private_entries,
    parser_for,
)

RNG = random.Random(4242)


def _tok(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(n))


def _scan(path: str, data: bytes | str) -> list[Hit]:
    raw = data.encode() if isinstance(data, str) else data
    return list(CredentialFileDetector().scan(FileContext(path, 3, len(raw)), raw))


def _assert_at_offset(hits: list[Hit], data: bytes | str) -> None:
    raw = data.encode() if isinstance(data, str) else data
    for h in hits:
        assert raw[h.offset : h.offset + len(h.secret)] == h.secret.encode(), h


AWS_SECRET = _tok(40, string.ascii_letters + string.digits + "/+")
AWS_SESSION = _tok(120)
DOCKER_AUTH = base64.b64encode(f"deploy:{_tok(20)}".encode()).decode()
NPM_TOKEN = "npm_" + _tok(36)
PYPI_PASS = "pypi-" + _tok(60)
NETRC_PASS = _tok(18)
GIT_PASS = "ghp_" + _tok(36)
KUBE_TOKEN = _tok(60)
KUBE_KEY = base64.b64encode(b"-----BEGIN RSA PRIVATE KEY-----\n" + _tok(50).encode()).decode()
PG_PASS = _tok(14)
HTPASSWD_HASH = "$apr1$" + _tok(8) + "$" + _tok(22)
SHADOW_HASH = "$6$" + _tok(16) + "$" + _tok(86, string.ascii_letters + string.digits + "./")
YESCRYPT = "$y$j9T$" + _tok(22) + "$" + _tok(43)
ENV_PASS = _tok(20)
ENV_URL_PASS = _tok(16)
TF_PASS = _tok(24)
TF_OUT = _tok(32)
GCP_REFRESH = "1//" + _tok(60)
GCP_CLIENT_SECRET = "GOCSPX-" + _tok(28)
AZ_TOKEN = "eyJ0eXAi" + _tok(120)

CASES: list[tuple[str, str, str, set[str]]] = [
    (
        "/root/.aws/credentials",
        "credfile-aws-credentials",
        f"[default]\naws_access_key_id = AKIA{_tok(16, string.ascii_uppercase)}\n"
        f"aws_secret_access_key = {AWS_SECRET}\naws_session_token={AWS_SESSION}\n",
        {AWS_SECRET, AWS_SESSION},
    ),
    (
        "/root/.docker/config.json",
        "credfile-docker-config",
        json.dumps(
            {
                "auths": {
                    "registry.example.test": {"auth": DOCKER_AUTH},
                    "other.test": {"auth": base64.b64encode(b"u:changeme").decode()},
                }
            },
            indent=2,
        ),
        {DOCKER_AUTH},
    ),
    (
        "/home/app/.npmrc",
        "credfile-npmrc",
        f"registry=https://npm.registry.example/\n//npm.registry.example/:_authToken={NPM_TOKEN}\n"
        "//other.test/:_authToken=${NPM_TOKEN}\n",
        {NPM_TOKEN},
    ),
    (
        "/root/.pypirc",
        "credfile-pypirc",
        "[distutils]\nindex-servers = pypi\n[pypi]\nusername = __token__\n"
        f"password = {PYPI_PASS}\n",
        {PYPI_PASS},
    ),
    (
        "/root/.netrc",
        "credfile-netrc",
        f"machine api.example.test login bot password {NETRC_PASS}\n"
        "machine x.test\n  login me\n  password changeme\n",
        {NETRC_PASS},
    ),
    (
        "/root/.git-credentials",
        "credfile-git-credentials",
        f"https://bot:{GIT_PASS}@github.com\n",
        {GIT_PASS},
    ),
    (
        "/root/.kube/config",
        "credfile-kubeconfig",
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: https://k.test\n"
        f"users:\n- name: admin\n  user:\n    client-key-data: {KUBE_KEY}\n"
        f"- name: bot\n  user:\n    token: {KUBE_TOKEN}\n",
        {KUBE_KEY, KUBE_TOKEN},
    ),
    (
        "/var/lib/postgresql/.pgpass",
        "credfile-pgpass",
        f"db.test:5432:*:app:{PG_PASS}\n# comment\n",
        {PG_PASS},
    ),
    ("/etc/nginx/.htpasswd", "credfile-htpasswd", f"admin:{HTPASSWD_HASH}\n", {HTPASSWD_HASH}),
    (
        "/etc/shadow",
        "credfile-shadow-hash",
        f"root:{SHADOW_HASH}:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"
        f"app:!{YESCRYPT}:19000::::::\nnobody:!:19000::::::\nbin:!!:19000::::::\n",
        {SHADOW_HASH, YESCRYPT},
    ),
    (
        "/srv/app/.env",
        "credfile-dotenv",
        f"# config\nPORT=8080\nDB_PASSWORD={ENV_PASS}\nDATABASE_URL=postgres://app:{ENV_URL_PASS}"
        "@db:5432/app\nAPI_KEY=changeme\nSECRET_KEY_FILE=/run/secrets/key\nDEBUG=true\n",
        {ENV_PASS, ENV_URL_PASS},
    ),
    (
        "/infra/terraform.tfstate",
        "credfile-terraform-state",
        json.dumps(
            {
                "version": 4,
                "outputs": {
                    "db_pw": {"value": TF_OUT, "sensitive": True},
                    "url": {"value": "https://x.test", "sensitive": False},
                },
                "resources": [
                    {
                        "type": "aws_db_instance",
                        "name": "main",
                        "instances": [
                            {
                                "attributes": {
                                    "password": TF_PASS,
                                    "username": "admin",
                                    "id": "db-1",
                                },
                                "sensitive_attributes": [
                                    [{"type": "get_attr", "value": "password"}]
                                ],
                            }
                        ],
                    }
                ],
            },
            indent=1,
        ),
        {TF_PASS, TF_OUT},
    ),
    (
        "/root/.config/gcloud/application_default_credentials.json",
        "credfile-gcloud",
        json.dumps(
            {
                "client_id": "1.apps.googleusercontent.com",
                "client_secret": GCP_CLIENT_SECRET,
                "refresh_token": GCP_REFRESH,
                "type": "authorized_user",
            }
        ),
        {GCP_CLIENT_SECRET, GCP_REFRESH},
    ),
    (
        "/root/.azure/accessTokens.json",
        "credfile-azure",
        json.dumps([{"tokenType": "Bearer", "accessToken": AZ_TOKEN, "userId": "a@b.test"}]),
        {AZ_TOKEN},
    ),
]


@pytest.mark.parametrize(("path", "rule", "text", "secrets"), CASES, ids=[c[1] for c in CASES])
def test_credential_files(path: str, rule: str, text: str, secrets: set[str]) -> None:
    hits = _scan(path, text)
    assert {h.secret for h in hits} == secrets
    assert {h.rule for h in hits} == {rule}
    _assert_at_offset(hits, text)
    assert all(h.severity in ("high", "critical") for h in hits)


def test_paths_inside_archives_use_the_inner_path() -> None:
    assert parser_for("/app/backup.tar!root/.aws/credentials") is not None
    assert parser_for("/srv/.env.example") is None
    assert parser_for("/srv/.env.local") is not None
    assert parser_for("/srv/README.md") is None


def test_dotenv_placeholders_are_not_secrets() -> None:
    text = (
        "API_TOKEN=<your-token>\nDB_PASSWORD=${DB_PASSWORD}\nSECRET=xxxxxxxx\n"
        "PUBLIC_KEY=abcdef123456\nDB_USER=admin\nDATABASE_URL=postgres://db:5432/app\n"
    )
    assert _scan("/srv/.env", text) == []
    assert env_value_is_secret("GITHUB_TOKEN", "ghp_" + _tok(36))
    assert not env_value_is_secret("GITHUB_TOKEN_FILE", "/run/secrets/gh")


def test_docker_legacy_dockercfg() -> None:
    auth = base64.b64encode(f"me:{_tok(16)}".encode()).decode()
    text = json.dumps({"https://index.docker.io/v1/": {"auth": auth, "email": "a@b.test"}})
    assert [h.secret for h in _scan("/root/.dockercfg", text)] == [auth]


def test_kubeconfig_needs_kubeconfig_shape() -> None:
    assert _scan("/root/.kube/config", "token: abcdefghijklmnop1234\n") == []


def test_service_account_json_anywhere() -> None:
    key = "-----BEGIN PRIVATE KEY-----\nMIIE" + _tok(40) + "\n-----END PRIVATE KEY-----\n"
    text = json.dumps(
        {
            "type": "service_account",
            "project_id": "p",
            "private_key": key,
            "client_email": "x@p.iam.gserviceaccount.com",
        }
    )
    hits = _scan("/app/keys/sa.json", text)
    assert [h.rule for h in hits] == ["credfile-gcloud"]
    assert hits[0].secret == key.strip()
    assert text.encode()[hits[0].offset :].startswith(b"-----BEGIN PRIVATE KEY-----\\n")


def test_jks_magic() -> None:
    blob = b"\xfe\xed\xfe\xed\x00\x00\x00\x02" + RNG.randbytes(200)
    hits = _scan("/opt/app/keystore.bin", blob)
    assert [(h.rule, h.no_line) for h in hits] == [("credfile-jks", True)]
    assert base64.b64decode(hits[0].secret) == blob


@pytest.mark.skipif(shutil.which("keytool") is None, reason="keytool (JDK) not installed")
def test_real_jks_keystore_and_truststore(tmp_path: Path) -> None:
    ks = tmp_path / "app.jks"
    subprocess.run(
        [
            "keytool",
            "-genkeypair",
            "-keystore",
            str(ks),
            "-storetype",
            "JKS",
            "-storepass",
            "test-only",
            "-keypass",
            "test-only",
            "-alias",
            "app",
            "-keyalg",
            "RSA",
            "-keysize",
            "1024",
            "-dname",
            "CN=imgscan-test",
            "-validity",
            "1",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    blob = ks.read_bytes()
    assert jks_private_entries(blob) == 1
    assert [h.rule for h in _scan("/opt/app/app.jks", blob)] == ["credfile-jks"]
    cert = tmp_path / "c.der"
    subprocess.run(
        [
            "keytool",
            "-exportcert",
            "-keystore",
            str(ks),
            "-storepass",
            "test-only",
            "-alias",
            "app",
            "-file",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    ts = tmp_path / "trust.jks"
    subprocess.run(
        [
            "keytool",
            "-importcert",
            "-noprompt",
            "-keystore",
            str(ts),
            "-storetype",
            "JKS",
            "-storepass",
            "test-only",
            "-alias",
            "ca",
            "-file",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    trust = ts.read_bytes()
    assert jks_private_entries(trust) == 0
    assert _scan("/etc/ssl/certs/java/cacerts", trust) == []


def test_random_binary_is_not_a_keystore() -> None:
    assert _scan("/opt/app/blob.bin", b"\x30\x82" + RNG.randbytes(300)) == []
    assert _scan("/opt/app/blob.bin", b"\x99" + RNG.randbytes(300)) == []


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_real_pkcs12_is_recognised(tmp_path: Path) -> None:
    def run(*a: str) -> None:
        subprocess.run(["openssl", *a], check=True, capture_output=True, cwd=tmp_path)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:1024",
        "-nodes",
        "-keyout",
        "k.pem",
        "-out",
        "c.pem",
        "-subj",
        "/CN=imgscan-test",
        "-days",
        "1",
    )
    run(
        "pkcs12",
        "-export",
        "-inkey",
        "k.pem",
        "-in",
        "c.pem",
        "-out",
        "s.p12",
        "-passout",
        "pass:test-only",
    )
    blob = (tmp_path / "s.p12").read_bytes()
    assert is_pkcs12(blob)
    assert [h.rule for h in _scan("/app/s.p12", blob)] == ["credfile-pkcs12"]


@pytest.fixture
def gnupg_home(tmp_path: Path) -> Iterator[Path]:
    """A private GnuPG home; its gpg-agent is stopped afterwards, never left running."""
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    try:
        yield home
    finally:
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "all"],
            capture_output=True,
            timeout=30,
            check=False,
        )


@pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg not installed")
def test_real_gnupg_private_key_files(gnupg_home: Path) -> None:
    home = gnupg_home
    subprocess.run(
        [
            "gpg",
            "--homedir",
            str(home),
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--quick-gen-key",
            "imgscan test <t@imgscan.invalid>",
            "ed25519",
            "sign",
            "1d",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    keyfiles = list((home / "private-keys-v1.d").glob("*.key"))
    assert keyfiles
    path = "/root/.gnupg/private-keys-v1.d/" + keyfiles[0].name
    hits = _scan(path, keyfiles[0].read_bytes())
    assert [h.rule for h in hits] == ["credfile-pgp-secret-key"]
    exported = subprocess.run(
        [
            "gpg",
            "--homedir",
            str(home),
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--export-secret-keys",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    assert [h.rule for h in _scan("/root/.gnupg/secring.gpg", exported)] == [
        "credfile-pgp-secret-key"
    ]


_FUZZ_PATHS = [p for p, *_ in CASES] + [
    "/x/.env",
    "/x/keystore.p12",
    "/x/secring.gpg",
    "/root/.gnupg/private-keys-v1.d/A.key",
]


@settings(max_examples=300, deadline=None)
@given(path=st.sampled_from(_FUZZ_PATHS), body=st.binary(max_size=1024))
def test_random_content_never_raises(path: str, body: bytes) -> None:
    for h in _scan(path, body):
        assert h.secret and h.offset >= 0


@pytest.mark.parametrize(
    "text",
    [
        "a." * 100_000,
        '"' + "a" * 200_000,
        "X-" + "a" * 200_000,
        "a:" * 100_000,
        "\n" * 200_000,
        "http://" + "a:" * 100_000,
        "a+" * 100_000,
    ],
    ids=["dots", "open-quote", "header", "colons", "newlines", "url", "scheme"],
)
def test_hostile_long_lines_finish_quickly(text: str) -> None:
    import time

    from imgscan.detect.entropy import EntropyDetector

    data = text.encode()
    start = time.perf_counter()
    for path in (
        "/root/.git-credentials",
        "/root/.kube/config",
        "/srv/.env",
        "/root/.netrc",
        "/etc/shadow",
        "/root/.pgpass",
        "/app/x.py",
    ):
        list(_scan(path, data))
        list(EntropyDetector().scan(FileContext(path, 0, len(data)), data))
    assert time.perf_counter() - start < 5.0
