"""Entropy/keyword detection: planted fakes are found, hashes/ids/encoded data are not."""

from __future__ import annotations

import base64
import hashlib
import random
import string
import uuid
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgscan.detect.base import FileContext, Hit
from imgscan.detect.entropy import EntropyDetector, EntropyOptions, is_placeholder
from imgscan.detect.strings import BinaryStringsDetector

RNG = random.Random(20261129)


def _b62(n: int) -> str:
    return "".join(RNG.choice(string.ascii_letters + string.digits) for _ in range(n))


def _hex(n: int) -> str:
    return "".join(RNG.choice("0123456789abcdef") for _ in range(n))


def _scan(path: str, text: str | bytes, det: EntropyDetector | None = None) -> list[Hit]:
    data = text.encode() if isinstance(text, str) else text
    return list((det or EntropyDetector()).scan(FileContext(path, 1, len(data)), data))


# --- recall ---------------------------------------------------------------------------------

DJANGO_KEY = _b62(50)
PY_PASSWORD = "Zr8!kq" + _b62(8)
HEX_API_KEY = _hex(32)
YAML_PASSWORD = "Pq7" + _b62(11)
YAML_TOKEN = _b62(40)
ENV_KEY = _b62(32)
ENV_SECRET = _hex(64)
JSON_SECRET = _b62(32)
JS_TOKEN = _b62(36)
BEARER = _b62(40)
PROPS_PASSWORD = "jP" + _b62(12)
PREFIXED_HEX = "dop_v1_" + _hex(64)
DOTTED = "hvs." + _b62(30) + "-" + _b62(20)
XML_VALUE = _b62(44)
LETTERS_ONLY = "hf_" + "".join(RNG.choice(string.ascii_letters) for _ in range(34))
VENDOR_HYPHENS = "dckr_pat_-" + _b62(18) + "_" + _b62(7)


@pytest.mark.parametrize(
    ("path", "text", "secret", "rules"),
    [
        ("/app/settings.py", f'SECRET_KEY = "{DJANGO_KEY}"\n', DJANGO_KEY, {"keyword-secret"}),
        ("/app/db.py", f'DB_PASSWORD = "{PY_PASSWORD}"\n', PY_PASSWORD, {"keyword-secret"}),
        ("/app/client.py", f'api_key = "{HEX_API_KEY}"\n', HEX_API_KEY, {"keyword-secret"}),
        (
            "/etc/app/config.yaml",
            f"db:\n  password: {YAML_PASSWORD}\n",
            YAML_PASSWORD,
            {"keyword-secret"},
        ),
        (
            "/etc/app/config.yaml",
            f"github:\n  token: {YAML_TOKEN}\n",
            YAML_TOKEN,
            {"entropy-base64"},
        ),
        ("/srv/.env", f"STRIPE_KEY={ENV_KEY}\n", ENV_KEY, {"entropy-base64"}),
        (
            "/srv/.env.production",
            f"APP_SECRET={ENV_SECRET}\n",
            ENV_SECRET,
            {"keyword-secret", "entropy-hex"},
        ),
        (
            "/app/conf.json",
            f'{{"client_secret": "{JSON_SECRET}"}}\n',
            JSON_SECRET,
            {"keyword-secret"},
        ),
        ("/app/index.js", f'const authToken = "{JS_TOKEN}";\n', JS_TOKEN, {"entropy-base64"}),
        (
            "/app/api.js",
            f'headers: {{Authorization: "Bearer {BEARER}"}}\n',
            BEARER,
            {"entropy-base64"},
        ),
        (
            "/app/app.properties",
            f"jdbc.password={PROPS_PASSWORD}\n",
            PROPS_PASSWORD,
            {"keyword-secret"},
        ),
        ("/app/.env", f"DIGITALOCEAN_TOKEN={PREFIXED_HEX}\n", PREFIXED_HEX, {"entropy-hex"}),
        ("/app/config.yaml", f"  vault_token: {DOTTED}\n", DOTTED, {"entropy-base64"}),
        ("/app/service.xml", f"  <ghPat>{XML_VALUE}</ghPat>\n", XML_VALUE, {"entropy-base64"}),
        ("/app/.env", f"HF_TOKEN={LETTERS_ONLY}\n", LETTERS_ONLY, {"entropy-base64"}),
        (
            "/app/billing.ini",
            f"dockerhub_token = {VENDOR_HYPHENS}\n",
            VENDOR_HYPHENS,
            {"entropy-base64"},
        ),
    ],
)
def test_planted_secrets_are_found(path: str, text: str, secret: str, rules: set[str]) -> None:
    hits = _scan(path, "# header line\n" + text + "other = 1\n")
    found = [h for h in hits if h.secret == secret]
    assert found, hits
    assert found[0].rule in rules
    assert found[0].severity in ("medium", "low")
    data = ("# header line\n" + text).encode()
    assert data[found[0].offset : found[0].offset + len(secret)] == secret.encode()
    assert len({(h.rule, h.secret) for h in hits}) == len(hits), "duplicate hits"


def test_bare_high_entropy_base64_is_low_severity() -> None:
    blob = _b62(48)
    hits = _scan("/app/data.json", f'{{"value": "{blob}"}}\n')
    assert [(h.rule, h.severity) for h in hits] == [("entropy-base64", "low")]
    off = EntropyDetector(EntropyOptions(bare_base64=False))
    assert _scan("/app/data.json", f'{{"value": "{blob}"}}\n', off) == []


# --- precision decoys -----------------------------------------------------------------------


def _md5(i: int) -> str:
    return hashlib.md5(str(i).encode(), usedforsecurity=False).hexdigest()


def _sha256_b64(i: int) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(str(i).encode()).digest()).decode().rstrip("=")


def _png_b64() -> str:
    raw = b"\x89PNG\r\n\x1a\n" + zlib.compress(RNG.randbytes(300))
    return base64.b64encode(raw).decode()


DECOYS: list[tuple[str, str]] = [
    (
        "/var/lib/dpkg/info/libssl3.md5sums",
        "".join(f"{_md5(i)}  usr/lib/x86_64-linux-gnu/libfoo{i}.so\n" for i in range(50)),
    ),
    (
        "/usr/lib/python3/dist-packages/requests-2.31.0.dist-info/RECORD",
        "".join(f"requests/m{i}.py,sha256={_sha256_b64(i)},{i * 100}\n" for i in range(50)),
    ),
    (
        "/srv/SHA256SUMS",
        "".join(f"{hashlib.sha256(bytes([i])).hexdigest()}  file{i}.tar.gz\n" for i in range(20)),
    ),
    (
        "/app/checksums.txt",
        "".join(f"sha256: {hashlib.sha256(bytes([i])).hexdigest()}\n" for i in range(20)),
    ),
    (
        "/app/ids.json",
        "".join(
            f'{{"id": "{uuid.UUID(int=RNG.getrandbits(128))}", "uuid": '
            f'"{uuid.UUID(int=RNG.getrandbits(128))}"}}\n'
            for _ in range(20)
        ),
    ),
    (
        "/app/uuids.yaml",
        "".join(f"request_token_id: {uuid.UUID(int=RNG.getrandbits(128))}\n" for _ in range(5)),
    ),
    (
        "/app/index.html",
        '<script src="x.js" integrity="sha384-'
        + base64.b64encode(RNG.randbytes(48)).decode()
        + '" crossorigin="anonymous"></script>\n',
    ),
    (
        "/app/package.json",
        '{"dependencies": {"a": "1"}, "integrity": "sha512-'
        + base64.b64encode(RNG.randbytes(64)).decode()
        + '"}\n',
    ),
    (
        "/app/package-lock.json",
        "".join(
            f'"integrity": "sha512-{base64.b64encode(RNG.randbytes(64)).decode()}",\n'
            for _ in range(20)
        ),
    ),
    (
        "/app/build-info.json",
        f'{{"commit": "{_hex(40)}", "revision": "{_hex(40)}", "git_sha": "{_hex(40)}"}}\n',
    ),
    ("/app/.git/packed-refs", "".join(f"{_hex(40)} refs/heads/b{i}\n" for i in range(20))),
    ("/app/Gopkg.toml", f'[[constraint]]\n  name = "x"\n  revision = "{_hex(40)}"\n'),
    ("/app/styles.css", f"a {{ background: url(data:image/png;base64,{_png_b64()}); }}\n"),
    ("/app/icons.json", f'{{"logo": "{_png_b64()}"}}\n'),
    (
        "/app/static/app.js",
        "var a=" + ",".join(f'"{_b62(30)}"' for _ in range(60)) + ';password:"' + _b62(20) + '"\n',
    ),
    (
        "/app/forms.py",
        'password = forms.CharField(label="Password")\nsecret = get_secret("db")\n'
        'token = request.headers["X-Token"]\npassword = os.environ["DB_PASSWORD"]\n'
        "password = None\nsecret_key = settings.SECRET_KEY\n",
    ),
    (
        "/app/docs.md",
        "Set `password: changeme` or `api_key: <your-api-key>` or\n"
        "`AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY` and\n"
        "`token: ${GITHUB_TOKEN}` and `secret: {{ .Values.secret }}`, `password: xxxxxxxx`\n",
    ),
    (
        "/app/schema.json",
        '{"ApiKey": {"pattern": "^ecr\\\\.[a-z0-9-]+$"}, "password": "^[A-Za-z0-9]+$"}\n',
    ),
    (
        "/app/sm.json",
        '{"SecretId": "x", "secret": "arn:aws:secretsmanager:us-west-2:123456789012:secret:'
        'MyTestDatabaseSecret-a1b2c3"}\n',
    ),
    (
        "/usr/share/doc/gdb/check.log",
        "PASS: gdb.dlang/demangle.exp: _D8demangle4testFNhG1dZv\n"
        "PASS: gdb.cp/x.exp: _ZN9__gnu_cxx17__normal_iteratorIPcSsEppEv\n",
    ),
    ("/app/iam.json", '{"PasswordLastUsed": "2016-09-08T21:47:36Z"}\n'),
    ("/app/oauth_doc.py", 'access_token = "2YotnFZFEjr1zCsicMWpAA"  # RFC 6749 example\n'),
    ("/app/links.py", 'api_key_docs = "//docs.example.test/ui/account-management/api-keys.html"\n'),
    ("/app/deps.txt", "pkg.sub.module.Name2Value3.extra = org.apache.commons.lang3.StringUtils\n"),
    (
        "/app/ecs.json",
        '{"capacityProvider": "Infra-ECS-Cluster-ECS-project-update-cluster-d6bb6d5b-'
        'EC2CapacityProvider-3fIpdkLywwFt"}\n',
    ),
    (
        "/app/docs/jwt.md",
        "token: eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c\n",
    ),
    ("/app/tsconfig.json", '{"compilerOptions": {"outDir": "./dist/ThisIsAVeryLongFolderName"}}'),
    ("/usr/share/doc/x/copyright", "Files: src/CamelCaseIdentifierWithoutDigitsHere.java\n"),
    ("/app/pubkey.json", f'{{"public_key": "{base64.b64encode(RNG.randbytes(270)).decode()}"}}\n'),
    (
        "/app/config.ini",
        "[db]\npassword_file = /run/secrets/db_password\npassword = %(DB_PASSWORD)s\n",
    ),
]


@pytest.mark.parametrize(("path", "text"), DECOYS, ids=[p for p, _ in DECOYS])
def test_decoys_do_not_fire(path: str, text: str) -> None:
    assert _scan(path, text) == []


def test_minified_line_is_skipped_but_short_lines_are_not() -> None:
    secret = "Mx" + _b62(14)
    long_line = "var x=1;" * 200 + f'password="{secret}";\n'
    assert _scan("/app/bundle.js", long_line) == []
    assert [h.secret for h in _scan("/app/bundle.js", f'password="{secret}";\n')] == [secret]


def test_binary_content_is_ignored_directly_but_found_through_strings() -> None:
    secret = _b62(40)
    blob = b"\x7fELF\x02\x01\x01" + b"\0" * 100 + f"api_token={secret}\0".encode() + b"\0" * 50
    assert _scan("/usr/bin/tool", blob) == []
    wrapped = BinaryStringsDetector([EntropyDetector()])
    hits = list(wrapped.scan(FileContext("/usr/bin/tool", 0, len(blob)), blob))
    assert [h.secret for h in hits] == [secret]
    assert blob[hits[0].offset : hits[0].offset + 40] == secret.encode()


def test_scan_text_for_config_values() -> None:
    secret = _b62(30)
    hits = EntropyDetector().scan_text(f"DB_PASSWORD={secret}")
    assert [h.secret for h in hits] == [secret]


@pytest.mark.parametrize(
    "value",
    [
        "changeme",
        "<your-token>",
        "${VAR}",
        "xxxxxxxx",
        "dummy-value",
        "EXAMPLEKEY123",
        "********",
        "{{ secret }}",
        "test1234",
        "mysecretpassword",
        "admin123!",
        "$DB_PASS",
    ],
)
def test_placeholders(value: str) -> None:
    assert is_placeholder(value)


@pytest.mark.parametrize("value", ["Zr8!kqUbHoWC", _b62(40), _hex(40), "fake-yCbtDSEvMs7xfl4YmRPj"])
def test_non_placeholders(value: str) -> None:
    assert not is_placeholder(value)


def test_detector_has_no_shared_state_between_instances() -> None:
    a = EntropyDetector(EntropyOptions(base64_limit=5.9))
    b = EntropyDetector()
    text = f'{{"value": "{_b62(48)}"}}\n'
    assert _scan("/x.json", text, a) == []
    assert len(_scan("/x.json", text, b)) == 1
    assert _scan("/x.json", text, a) == []


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=600))
def test_random_text_never_raises_and_offsets_hold(text: str) -> None:
    data = text.encode("utf-8", "surrogatepass")
    for h in _scan("/fuzz.env", data):
        assert data[h.offset : h.offset + len(h.secret.encode())] == h.secret.encode()
