"""Rule files: every example of every built-in rule, loader validation, validators."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from imgscan.detect.rulefiles import ruleset_digest
from imgscan.detect.rules import (
    DEFAULT_STOPWORDS,
    check_rule,
    check_rule_file,
    lint_regex,
    load_rule_file,
    load_ruleset,
    shannon_entropy,
)
from imgscan.detect.validators import (
    base62,
    basic_auth,
    crc32_base62_checksum,
    github_checksum,
    jwt,
    private_key,
)
from imgscan.errors import RuleError
from imgscan.model import Severity

RULESET = load_ruleset()
CASES = [pytest.param(rule, id=rule.id) for rule in RULESET.rules]


# ---------------------------------------------------------------- built-in rules


def test_builtin_ruleset_is_large_and_unique() -> None:
    ids = [r.id for r in RULESET.rules]
    assert len(ids) >= 150
    assert len(set(ids)) == len(ids)
    assert set(RULESET.by_id) == set(ids)
    files = {r.source.rsplit("/", 1)[-1] for r in RULESET.rules}
    assert {
        "cloud.toml",
        "vcs.toml",
        "chat.toml",
        "payments.toml",
        "comms.toml",
        "ai.toml",
        "registries.toml",
        "observability.toml",
        "infra.toml",
        "generic.toml",
        "keys.toml",
    } <= files


@pytest.mark.parametrize("rule", CASES)
def test_rule_examples(rule) -> None:  # type: ignore[no-untyped-def]
    results = check_rule(rule)
    assert any(r.kind == "example" for r in results)
    failures = [f"{r.kind} {r.text[:60]!r}: {r.message}" for r in results if not r.ok]
    assert not failures, "\n".join(failures)


def test_every_rule_has_counter_examples() -> None:
    missing = [r.id for r in RULESET.rules if not r.counter_examples]
    assert missing == []


def test_issue_coverage() -> None:
    """The services the issue names each have at least one rule."""
    ids = " ".join(RULESET.by_id)
    for needle in [
        "aws-access-key-id",
        "aws-secret-access-key",
        "aws-session-token",
        "gcp-service-account",
        "gcp-api-key",
        "azure-storage",
        "azure-sas",
        "digitalocean",
        "alibaba",
        "ibm",
        "github-pat-classic",
        "github-fine-grained",
        "github-app",
        "github-oauth",
        "gitlab",
        "bitbucket",
        "slack-bot",
        "slack-webhook",
        "discord",
        "telegram",
        "teams",
        "stripe",
        "square",
        "paypal",
        "braintree",
        "twilio",
        "sendgrid",
        "mailgun",
        "mailchimp",
        "openai",
        "anthropic",
        "huggingface",
        "cohere",
        "npm",
        "pypi",
        "rubygems",
        "nuget",
        "dockerhub",
        "artifactory",
        "datadog",
        "newrelic",
        "sentry",
        "grafana",
        "vault",
        "terraform",
        "kubernetes",
        "heroku",
        "shopify",
        "atlassian",
        "okta",
        "auth0",
        "postman",
        "linear",
        "postgres-url",
        "mysql-url",
        "mongodb-url",
        "redis-url",
        "amqp-url",
        "url-basic-auth",
        "jwt",
        "generic-password",
        "generic-secret",
        "generic-xml",
        "private-key",
    ]:
        assert needle in ids, needle


def test_ruleset_hash_is_stable_and_content_sensitive(tmp_path: Path) -> None:
    again = load_ruleset()
    assert again.hash == RULESET.hash
    assert len(RULESET.hash) == 64
    extra = tmp_path / "extra.toml"
    extra.write_text(
        _rule_toml(
            "corp-token",
            regex=r"(corp_[a-z0-9]{12})",
            keywords='["corp_"]',
            example="corp_abcdef123456",
        )
    )
    with_extra = load_ruleset([tmp_path])
    assert with_extra.hash != RULESET.hash
    assert "corp-token" in with_extra.by_id
    assert load_ruleset([tmp_path], builtin=False).hash != with_extra.hash
    disabled = load_ruleset(disabled=["jwt"])
    assert "jwt" not in disabled.by_id and disabled.hash != RULESET.hash
    # the same names, computed without parsing or compiling a rule (watch, cache keys)
    assert ruleset_digest() == RULESET.hash
    assert ruleset_digest([tmp_path]) == with_extra.hash
    assert ruleset_digest([tmp_path], builtin=False) == load_ruleset([tmp_path], builtin=False).hash
    assert ruleset_digest(disabled=["jwt"]) == disabled.hash
    assert ruleset_digest(disabled=["jwt", "jwt"]) == disabled.hash


def test_disable_unknown_rule_is_an_error() -> None:
    with pytest.raises(RuleError, match="no-such-rule"):
        load_ruleset(disabled=["no-such-rule"])


def test_default_stopwords_drop_placeholders() -> None:
    rule = RULESET.by_id["aws-access-key-id"]
    assert "example" in DEFAULT_STOPWORDS
    assert list(rule.find(b"key = AKIAIOSFODNN7EXAMPLE")) == []
    found = list(rule.find(b"key = AKIAQ2LBN7RX5T3WZK4M"))
    assert [h.secret for h in found] == ["AKIAQ2LBN7RX5T3WZK4M"]
    assert found[0].start == 6


# ---------------------------------------------------------------- loader errors


def _rule_toml(
    rid: str = "demo-token",
    *,
    regex: str = r"(demo_[a-z0-9]{12})",
    keywords: str = '["demo_"]',
    severity: str = "high",
    example: str = "demo_abcdef123456",
    extra: str = "",
) -> str:
    return (
        "[[rule]]\n"
        f'id = "{rid}"\n'
        'title = "Demo token"\n'
        f'severity = "{severity}"\n'
        f"regex = '''{regex}'''\n"
        f"keywords = {keywords}\n"
        f"{extra}"
        f"examples = ['{example}']\n"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"regex": r"(demo_[a-z0-9]{12}"}, "does not compile|bad regex"),
        ({"keywords": "[]"}, "keywords are required"),
        ({"keywords": '["Demo_"]'}, "lowercase"),
        ({"keywords": '["nomatch"]'}, "contains none of the keywords"),
        ({"regex": r"(demo_(?:[a-z]+)+)"}, "nested unbounded"),
        ({"regex": r"(demo_.*)"}, "unbounded repeat"),
        ({"regex": r"demo_[a-z0-9]{12}"}, "capture group"),
        ({"severity": "urgent"}, "severity must be one of"),
        ({"extra": 'validator = "psychic"\n'}, "unknown validator"),
        ({"extra": 'colour = "red"\n'}, "unknown keys"),
        ({"extra": "entropy = 12\n"}, "entropy"),
        ({"extra": 'fallback = "yes"\n'}, "fallback must be a boolean"),
        ({"rid": "Bad_ID"}, "id must be"),
    ],
)
def test_loader_rejects_bad_rules(tmp_path: Path, kwargs: dict[str, str], message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(_rule_toml(**kwargs))
    with pytest.raises(RuleError, match=message) as err:
        load_rule_file(path)
    text = str(err.value)
    assert str(path) in text
    rid = kwargs.get("rid", "demo-token")
    assert f"rule {rid}" in text
    assert "\n" not in text


def test_loader_rejects_duplicate_ids_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(_rule_toml("dup-token"))
    (tmp_path / "b.toml").write_text(_rule_toml("dup-token"))
    with pytest.raises(RuleError, match="duplicate id") as err:
        load_ruleset([tmp_path], builtin=False)
    assert "b.toml" in str(err.value) and "a.toml" in str(err.value)
    assert "dup-token" in str(err.value)


def test_loader_rejects_builtin_id_clash(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text(
        _rule_toml("jwt", regex=r"(demo_[a-z0-9]{12})", example="demo_abcdef123456")
    )
    with pytest.raises(RuleError, match="rule jwt: duplicate id"):
        load_ruleset([tmp_path])


def test_loader_rejects_invalid_toml_and_missing_dir(tmp_path: Path) -> None:
    bad = tmp_path / "broken.toml"
    bad.write_text("[[rule]\nid = 1\n")
    with pytest.raises(RuleError, match=r"broken\.toml: not valid TOML"):
        load_rule_file(bad)
    with pytest.raises(RuleError, match="does not exist"):
        load_ruleset([tmp_path / "missing"])


def test_check_rule_file_reports_failing_examples(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        _rule_toml(extra="counter_examples = ['demo_abcdef654321']\n")
        + "\n"
        + _rule_toml("demo-two", example="demo_abcdef123456").replace(
            "examples = ['demo_abcdef123456']",
            "examples = [{ text = 'x = demo_abcdef123456', secret = 'demo_wrong' }]",
        )
    )
    results = check_rule_file(path)
    by_rule = {(r.rule, r.kind): r for r in results}
    assert not by_rule[("demo-token", "counter_example")].ok
    assert "unexpected match" in by_rule[("demo-token", "counter_example")].message
    assert by_rule[("demo-token", "example")].ok
    assert not by_rule[("demo-two", "example")].ok
    assert "demo_wrong" in by_rule[("demo-two", "example")].message


def test_rule_paths_use_inner_archive_member() -> None:
    rule = RULESET.by_id["generic-password-unquoted"]
    assert rule.applies_to("/app/.env")
    assert rule.applies_to("/srv/app.properties")
    assert rule.applies_to("/etc/mysql/debian.cnf")
    assert rule.applies_to("/opt/bundle.zip!config/.env")
    assert not rule.applies_to("/app/main.py")
    assert not rule.applies_to("/opt/.env.zip!main.py")


def test_builtin_rules_pass_the_lint() -> None:
    """load_ruleset skips the lint for the built-in rules (it costs 70 ms a start): here
    it runs on every one of them, and a rule from --rules is still linted on load."""
    problems = {r.id: lint_regex(r.regex.pattern.decode()) for r in RULESET.rules}
    assert len(problems) == len(RULESET.rules) > 250
    assert {k: v for k, v in problems.items() if v} == {}


def test_rules_from_a_rules_dir_are_linted_on_load(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text(
        _rule_toml("nested", regex=r"((a+)+)", keywords='["aaa"]', example="aaaa")
    )
    with pytest.raises(RuleError, match="nested unbounded quantifiers"):
        load_ruleset([tmp_path])


def test_lint_regex() -> None:
    assert lint_regex(r"(a+)+") == "nested unbounded quantifiers"
    assert lint_regex(r"(.*)*") == "nested unbounded quantifiers"
    assert lint_regex(r"(?:x\s*,){1,5}") == "nested unbounded quantifiers"
    assert lint_regex(r"[a-z]+") is not None
    assert lint_regex(r"key\s*=\s*([a-z]{1,40})") is None
    assert lint_regex(r"(?:[a-z]{1,8}\.){1,4}") is None
    assert lint_regex(r"(unclosed") is not None


def test_shannon_entropy() -> None:
    assert shannon_entropy("") == 0.0
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("abcd") == pytest.approx(2.0)


def test_severities_are_valid() -> None:
    assert {r.severity for r in RULESET.rules} <= set(Severity)
    assert RULESET.by_id["private-key"].severity is Severity.CRITICAL


# ---------------------------------------------------------------- validators


def test_github_checksum() -> None:
    body = "A" * 30
    assert crc32_base62_checksum(body) == base62(_crc(body))
    token = f"ghp_{body}{crc32_base62_checksum(body)}"
    assert github_checksum(token) is True
    assert github_checksum(token[:-1] + ("0" if token[-1] != "0" else "1")) is False
    assert github_checksum("github_pat_" + "a" * 82) is None
    assert base62(0) == "000000" and base62(61, 1) == "z"


def _crc(text: str) -> int:
    import binascii

    return binascii.crc32(text.encode())


def _b64url(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def test_jwt_validator() -> None:
    good = f"{_b64url({'alg': 'HS256'})}.{_b64url({'sub': 'x'})}.c2lnbmF0dXJl"
    assert jwt(good) is True
    assert jwt(f"{_b64url({'typ': 'JWT'})}.{_b64url({'sub': 'x'})}.sig") is False  # no alg
    assert jwt(f"{_b64url({'alg': 'none'})}.bm90IGpzb24.sig") is False
    assert jwt("eyJhbGciOi.eyJzdWIi") is False


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    head = bytes([n]) if n < 0x80 else bytes([0x82]) + n.to_bytes(2, "big")
    return bytes([tag]) + head + content


def _pem(label: str, blob: bytes) -> str:
    body = base64.b64encode(blob).decode()
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----\n"


def test_private_key_validator() -> None:
    alg = _der(0x30, _der(0x06, bytes.fromhex("2a864886f70d010101")) + _der(0x05, b""))
    pkcs8 = _der(0x30, _der(0x02, b"\x00") + alg + _der(0x04, bytes(range(200))))
    assert private_key(_pem("PRIVATE KEY", pkcs8)) is True
    assert private_key(_pem("PRIVATE KEY", pkcs8).replace("\n", "\\n")) is True
    rsa = _der(0x30, b"".join(_der(0x02, bytes([i + 1]) * 8) for i in range(9)))
    assert private_key(_pem("RSA PRIVATE KEY", rsa)) is True
    assert private_key(_pem("RSA PRIVATE KEY", pkcs8)) is False  # label and structure disagree
    assert private_key(_pem("EC PRIVATE KEY", bytes(range(64)))) is False
    encrypted = _pem("RSA PRIVATE KEY", bytes(range(64))).replace(
        "-----\n", "-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00FF\n\n", 1
    )
    assert private_key(encrypted) is None
    assert private_key("no key here") is False


def _ssh(b: bytes) -> bytes:
    return len(b).to_bytes(4, "big") + b


def test_openssh_private_key_validator() -> None:
    pub = _ssh(b"ssh-ed25519") + _ssh(bytes(32))
    priv = b"\x01\x02\x03\x04" * 2 + _ssh(b"ssh-ed25519") + _ssh(bytes(32)) + _ssh(bytes(64))
    priv += bytes(range(1, 1 + (-len(priv) % 8)))
    blob = (
        b"openssh-key-v1\0"
        + _ssh(b"none")
        + _ssh(b"none")
        + _ssh(b"")
        + (1).to_bytes(4, "big")
        + _ssh(pub)
        + _ssh(priv)
    )
    assert private_key(_pem("OPENSSH PRIVATE KEY", blob)) is True
    assert private_key(_pem("OPENSSH PRIVATE KEY", blob[:40])) is False
    assert private_key(_pem("OPENSSH PRIVATE KEY", b"not-openssh" + blob)) is False


def test_basic_auth_validator() -> None:
    assert basic_auth(base64.b64encode(b"user:pa55word").decode()) is True
    assert basic_auth(base64.b64encode(b"user:").decode()) is False
    assert basic_auth("Authentication") is False


def test_documented_example_rule_is_valid(tmp_path: Path) -> None:
    import re

    doc = (Path(__file__).parent.parent / "docs" / "rules.md").read_text()
    block = re.search(r"```toml\n(.*?)```", doc, re.S)
    assert block is not None
    path = tmp_path / "doc.toml"
    path.write_text(block.group(1))
    results = check_rule_file(path)
    assert len(results) == 4
    assert all(r.ok for r in results), results
