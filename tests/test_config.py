"""Config files: .imgscan.toml or [tool.imgscan]; unknown keys and bad values are usage errors."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from report_samples import sample_result

from imgscan.config import (
    Config,
    allowlist_suppressions,
    apply_config,
    collect_suppressions,
    find_config,
    glob_to_regex,
    load_config,
    load_config_file,
    load_suppressions,
)
from imgscan.errors import ConfigError
from imgscan.findings.baseline import create_baseline, write_baseline
from imgscan.gate import EXIT_OK, EXIT_POLICY, Policy, evaluate
from imgscan.model import Category, Severity, Status

FULL = """
baseline = ".imgscan-baseline.json"
rule_dirs = ["ci/rules"]
disabled_rules = ["generic-password"]

[policy]
fail_on = "medium"
fail_on_state = ["present", "deleted"]
categories = "secret,config"

[severity]
"root-user" = "critical"

[[allow]]
path = "/app/keys/*.pem"
reason = "test keys, generated per build"

[[allow]]
path = "**/.env"
reason = "dev env only"
rules = ["aws-access-key-id"]
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_full_file(tmp_path: Path) -> None:
    cfg = load_config_file(write(tmp_path / ".imgscan.toml", FULL))
    assert cfg.source == str(tmp_path / ".imgscan.toml")
    assert cfg.policy == Policy(
        Severity.MEDIUM,
        frozenset({Status.PRESENT, Status.DELETED}),
        frozenset({Category.SECRET, Category.CONFIG}),
    )
    # Relative paths are relative to the config file, not the working directory.
    assert cfg.baseline == str(tmp_path / ".imgscan-baseline.json")
    assert cfg.rule_dirs == (str(tmp_path / "ci/rules"),)
    assert cfg.disabled_rules == {"generic-password"}
    assert cfg.severity == {"root-user": Severity.CRITICAL}
    assert [(a.pattern, a.reason) for a in cfg.allow] == [
        ("/app/keys/*.pem", "test keys, generated per build"),
        ("**/.env", "dev env only"),
    ]


def test_pyproject_section_and_discovery(tmp_path: Path) -> None:
    assert find_config(tmp_path) is None
    assert load_config(directory=tmp_path) == Config()
    write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n')
    assert find_config(tmp_path) is None  # no [tool.imgscan]: not a config
    py = write(
        tmp_path / "pyproject.toml",
        '[project]\nname = "x"\n[tool.imgscan.policy]\nfail_on = "low"\n',
    )
    assert find_config(tmp_path) == py
    assert load_config(directory=tmp_path).policy.fail_on is Severity.LOW
    # every TOML spelling of the table is found (the file is parsed only if it names us)
    for text in (
        '[tool]\nimgscan = { policy = { fail_on = "low" } }\n',
        'tool.imgscan.policy.fail_on = "low"\n',
        '[tool.imgscan]\npolicy.fail_on = "low"\n',
    ):
        write(tmp_path / "pyproject.toml", text)
        assert load_config(directory=tmp_path).policy.fail_on is Severity.LOW, text
    write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n[tool.other]\nimg = 1\n')
    assert find_config(tmp_path) is None
    py = write(
        tmp_path / "pyproject.toml",
        '[project]\nname = "x"\n[tool.imgscan.policy]\nfail_on = "low"\n',
    )
    own = write(tmp_path / ".imgscan.toml", '[policy]\nfail_on = "critical"\n')
    assert find_config(tmp_path) == own  # .imgscan.toml wins over pyproject.toml
    assert load_config(directory=tmp_path).policy.fail_on is Severity.CRITICAL
    # An explicit --config path wins over discovery.
    assert load_config(py, directory=tmp_path).policy.fail_on is Severity.LOW


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fail_on = 'high'\n", "unknown key 'fail_on'"),
        ("[policy]\nfail-on = 'high'\n", r"\[policy\]: unknown key 'fail-on'"),
        ("[policy]\nfail_on = 'severe'\n", "'fail_on': unknown severity 'severe'"),
        ("[policy]\nfail_on_state = ['present', 'gone']\n", "'fail_on_state': unknown state"),
        ("[policy]\ncategories = [1]\n", "'categories': expected a list of non-empty strings"),
        ("policy = 3\n", r"\[policy\]: expected a table"),
        ("rule_dirs = 'rules'\n", "'rule_dirs': expected a list"),
        ("disabled_rules = ['bad id!']\n", "bad rule id 'bad id!'"),
        ("[severity]\nroot-user = 'urgent'\n", r"\[severity\] 'root-user': unknown severity"),
        ("[[allow]]\npath = '/x'\n", "'reason' is required"),
        ("[[allow]]\npath = '/x'\nreason = 'r'\nwhy = 1\n", r"\[\[allow\]\]\[0\]: unknown key"),
        ("[allow]\npath = '/x'\n", "expected an array of tables"),
        ("[policy\n", "invalid TOML"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / ".imgscan.toml", text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config_file(path)
    assert str(path) in str(info.value)
    assert info.value.exit_code == 2
    assert "\n" not in str(info.value)


def test_pyproject_errors_name_the_section(tmp_path: Path) -> None:
    py = write(tmp_path / "pyproject.toml", "[tool.imgscan]\nfailon = 'high'\n")
    with pytest.raises(ConfigError, match=r"pyproject.toml \[tool.imgscan\]: unknown key 'failon'"):
        load_config(directory=tmp_path)
    assert py.exists()


def test_unreadable_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / ".imgscan.toml"
    bad.write_bytes(b"\xff\xfe fail")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config_file(bad)


def test_command_line_wins(tmp_path: Path) -> None:
    cfg = load_config_file(write(tmp_path / ".imgscan.toml", FULL))
    over = cfg.with_overrides(
        fail_on="critical", fail_on_state="all", categories="file", baseline="other.json"
    )
    assert over.policy == Policy(Severity.CRITICAL, frozenset(Status), frozenset({Category.FILE}))
    assert over.baseline == "other.json"
    assert cfg.with_overrides() == cfg  # no flags: the file's values stand
    with pytest.raises(ConfigError, match="--fail-on: unknown severity"):
        cfg.with_overrides(fail_on="nope")


def test_allowlist_suppresses_matching_paths_with_reason(tmp_path: Path) -> None:
    cfg = load_config_file(write(tmp_path / ".imgscan.toml", FULL))
    r = sample_result()
    sup = allowlist_suppressions(r, cfg)
    got = {(f.rule, f.path) for f in r.findings if f.fingerprint in sup}
    assert got == {("private-key-rsa", "/app/keys/server.pem"), ("aws-access-key-id", "/app/.env")}
    pem = next(f for f in r.findings if f.rule == "private-key-rsa")
    assert sup[pem.fingerprint] == "allowlist /app/keys/*.pem: test keys, generated per build"


def test_disabled_rules_and_severity_overrides(tmp_path: Path) -> None:
    cfg = load_config_file(write(tmp_path / ".imgscan.toml", FULL))
    r = sample_result()
    adjusted = apply_config(r, cfg)
    assert "generic-password" not in {f.rule for f in adjusted.findings}
    assert len(adjusted.findings) == len(r.findings) - 1
    root = next(f for f in adjusted.findings if f.rule == "root-user")
    assert root.severity is Severity.CRITICAL
    assert apply_config(r, Config()) is r


def test_config_drives_the_gate(tmp_path: Path) -> None:
    """Only a low setuid finding and a medium root-user one: the file's policy decides."""
    r = sample_result()
    low_only = type(r)(
        r.image, tuple(f for f in r.findings if f.rule in ("setuid-binary", "root-user")), ()
    )
    assert evaluate(low_only, Policy()).exit_code == EXIT_OK
    cfg = load_config_file(write(tmp_path / ".imgscan.toml", '[policy]\nfail_on = "medium"\n'))
    assert evaluate(low_only, cfg.policy).exit_code == EXIT_POLICY
    assert evaluate(low_only, cfg.with_overrides(fail_on="high").policy).exit_code == EXIT_OK


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("/app/*.env", "/app/.env", True),
        ("/app/*.env", "/app/sub/.env", False),
        ("/app/**", "/app/sub/deep/x", True),
        ("/app/**/x", "/app/x", True),
        ("**/.env", "/srv/app/.env", True),
        (".env", "/srv/app/.env", True),
        (".env", "/srv/app/x.env", False),
        ("/usr/share/doc/**", "/usr/share/docs/x", False),
        ("/a?c", "/abc", True),
        ("/a?c", "/a/c", False),
        ("/lib/*.jar!**", "/lib/x.jar!META-INF/a.properties", True),
    ],
)
def test_glob(pattern: str, path: str, matches: bool) -> None:
    assert (glob_to_regex(pattern).fullmatch(path) is not None) is matches


def test_cwd_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / ".imgscan.toml", '[policy]\nfail_on = "low"\n')
    monkeypatch.chdir(tmp_path)
    assert load_config().policy.fail_on is Severity.LOW


def test_baseline_and_allowlist_combine(tmp_path: Path) -> None:
    r = sample_result()
    deleted = next(f for f in r.findings if f.status is Status.DELETED)
    pem = next(f for f in r.findings if f.rule == "private-key-rsa")
    accepted = dataclasses.replace(r, findings=(deleted,))
    write_baseline(
        create_baseline(accepted, reason="rotated", expires=dt.date(2999, 1, 1)),
        tmp_path / ".imgscan-baseline.json",
    )
    cfg = load_config_file(write(tmp_path / ".imgscan.toml", FULL))
    baseline, warnings = load_suppressions(cfg)
    assert baseline is not None and warnings == ()
    sup = collect_suppressions(r, cfg, baseline)
    assert sup[deleted.fingerprint] == "rotated"
    assert sup[pem.fingerprint].startswith("allowlist /app/keys/*.pem")
    out = evaluate(r, cfg.policy, sup)
    assert deleted not in out.failing and pem not in out.failing
    assert out.suppressed == len(sup)


def test_expired_baseline_entries_warn(tmp_path: Path) -> None:
    r = sample_result()
    write_baseline(
        create_baseline(r, reason="old", expires=dt.date(2020, 1, 1), today=dt.date(2019, 1, 1)),
        tmp_path / "b.json",
    )
    cfg = Config(baseline=str(tmp_path / "b.json"))
    baseline, warnings = load_suppressions(cfg)
    assert len(warnings) == 1 and f"{len(r.findings)} entries expired" in warnings[0]
    assert collect_suppressions(r, cfg, baseline) == {}
    assert load_suppressions(Config()) == (None, ())
    with pytest.raises(ConfigError, match="cannot read"):
        load_suppressions(Config(baseline=str(tmp_path / "missing.json")))
