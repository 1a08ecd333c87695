"""scan, baseline and rules end to end: report on stdout, verdict on stderr, exit codes."""

from __future__ import annotations

import copy
import io
import json
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner, Result

from fixtures.builder import build
from fixtures.fakes import generate
from fixtures.spec import parse_spec
from imgscan.cli import main
from imgscan.detect.rules import load_ruleset
from imgscan.model import Severity

ROOT = Path(__file__).parent.parent
SPEC = ROOT / "fixtures" / "specs" / "whiteout-key.toml"
RANK = {s.value: s.rank for s in Severity}


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The whiteout-key image, and the same image rebuilt with one more private key."""
    out = tmp_path_factory.mktemp("cli")
    data = tomllib.loads(SPEC.read_text(encoding="utf-8"))
    base = build(parse_spec(data, str(SPEC)), "docker-legacy", out / "base.tar", "gzip")
    more = copy.deepcopy(data)
    more["layers"].append(
        {
            "created_by": "COPY signing.pem /srv/signing.pem # buildkit",
            "entries": [
                {"path": "srv/", "type": "dir"},
                {"path": "srv/signing.pem", "generate": "pem-rsa", "seed": 41},
            ],
        }
    )
    grown = build(parse_spec(more, str(SPEC)), "docker-legacy", out / "grown.tar", "gzip")
    return {"base": str(base), "grown": str(grown)}


def report(res: Result) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(res.stdout)
    return data


def expected_exit(data: dict[str, Any], fail_on: str, states: set[str], cats: set[str]) -> int:
    """What the policy should say, recomputed from the JSON report."""
    for f in data["findings"]:
        if f["suppressed"] or f["category"] not in cats or RANK[f["severity"]] < RANK[fail_on]:
            continue
        if f["status"] is None or f["status"] in states:
            return 1
    return 0


def test_table_on_stdout_verdict_on_stderr(images: dict[str, str]) -> None:
    res = run("scan", images["base"])
    assert res.exit_code == 1
    assert "DELETED by a later layer" in res.stdout
    assert "/root/.ssh/id_rsa" in res.stdout
    assert "policy failed" in res.stderr and "policy failed" not in res.stdout
    assert "\x1b[" not in res.stdout  # not a terminal: no colour
    key = generate("pem-rsa", 1).decode()
    for line in key.splitlines()[1:-1]:
        assert line not in res.stdout and line not in res.stderr


def test_json_to_file_validates_and_matches_the_gate(
    tmp_path: Path, images: dict[str, str]
) -> None:
    out = tmp_path / "report.json"
    res = run("scan", images["base"], "--format", "json", "--output", str(out), "--quiet")
    assert res.stdout == "" and res.stderr == ""
    data = json.loads(out.read_text(encoding="utf-8"))
    schema = json.loads((ROOT / "docs" / "report-schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(data)
    deleted = [f for f in data["findings"] if f["path"] == "/root/.ssh/id_rsa"]
    assert deleted and deleted[0]["status"] == "deleted" and deleted[0]["removed_in_layer"] == 2
    all_states = {"present", "deleted", "overwritten"}
    assert res.exit_code == expected_exit(data, "high", all_states, {"secret", "config", "file"})


def test_sarif_validates(images: dict[str, str]) -> None:
    res = run("scan", images["base"], "--format", "sarif")
    schema = json.loads((ROOT / "tests" / "data" / "sarif-schema-2.1.0.json").read_text("utf-8"))
    data = json.loads(res.stdout)
    jsonschema.validators.validator_for(schema)(schema).validate(data)
    uris = [
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        for r in data["runs"][0]["results"]
    ]
    assert "layer/1/root/.ssh/id_rsa" in uris


@pytest.mark.parametrize(
    ("flags", "fail_on", "states", "cats"),
    [
        ((), "high", {"present", "deleted", "overwritten"}, {"secret", "config", "file"}),
        (
            ("--fail-on", "critical"),
            "critical",
            {"present", "deleted", "overwritten"},
            {"secret", "config", "file"},
        ),
        (("--fail-on-state", "deleted"), "high", {"deleted"}, {"secret", "config", "file"}),
        (
            ("--fail-on-state", "present", "--category", "config,file"),
            "high",
            {"present"},
            {"config", "file"},
        ),
        (
            ("--fail-on", "info", "--category", "file"),
            "info",
            {"present", "deleted", "overwritten"},
            {"file"},
        ),
        (("--category", "config"), "high", {"present", "deleted", "overwritten"}, {"config"}),
    ],
)
def test_policy_flags(
    images: dict[str, str],
    flags: tuple[str, ...],
    fail_on: str,
    states: set[str],
    cats: set[str],
) -> None:
    res = run("scan", images["base"], "--format", "json", *flags)
    assert res.exit_code == expected_exit(report(res), fail_on, states, cats)
    assert res.stderr.startswith("imgscan: policy " + ("failed" if res.exit_code else "passed"))


def test_only_secrets_that_are_gone_from_the_final_fs(images: dict[str, str]) -> None:
    """The deleted key alone fails the gate when only deleted items count."""
    res = run(
        "scan",
        images["base"],
        "--format",
        "json",
        "--fail-on-state",
        "deleted",
        "--category",
        "secret",
    )
    failing = [
        f
        for f in report(res)["findings"]
        if f["status"] == "deleted"
        and RANK[f["severity"]] >= RANK["high"]
        and f["category"] == "secret"
    ]
    assert [f["path"] for f in failing] == ["/root/.ssh/id_rsa"]
    assert res.exit_code == 1


def test_baseline_round_trip(tmp_path: Path, images: dict[str, str]) -> None:
    bl = tmp_path / ".imgscan-baseline.json"
    res = run(
        "baseline",
        "create",
        images["base"],
        "-o",
        str(bl),
        "--reason",
        "legacy, SEC-1",
        "--expires",
        "2999-12-31",
    )
    assert res.exit_code == 0, res.stderr
    assert "accepted finding(s)" in res.stderr
    stored = json.loads(bl.read_text(encoding="utf-8"))
    assert stored["imgscan_baseline"] == 1 and stored["entries"]

    ok = run("scan", images["base"], "--baseline", str(bl), "--format", "json")
    assert ok.exit_code == 0, ok.stderr
    data = report(ok)
    assert all(f["suppressed"] and f["suppression"] == "legacy, SEC-1" for f in data["findings"])
    assert data["summary"]["suppressed"] == len(data["findings"]) == len(stored["entries"])

    bad = run("scan", images["grown"], "--baseline", str(bl), "--format", "json")
    assert bad.exit_code == 1
    new = [f for f in report(bad)["findings"] if not f["suppressed"]]
    assert [f["path"] for f in new] == ["/srv/signing.pem"]

    upd = run("baseline", "update", images["grown"], "-o", str(bl), "--reason", "reviewed")
    assert upd.exit_code == 0, upd.stderr
    entries = json.loads(bl.read_text(encoding="utf-8"))["entries"]
    reasons = {e["where"]: e["reason"] for e in entries}
    assert reasons["/srv/signing.pem"] == "reviewed"
    assert reasons["/root/.ssh/id_rsa"] == "legacy, SEC-1"
    assert run("scan", images["grown"], "--baseline", str(bl)).exit_code == 0


def test_config_file_and_flags_win(tmp_path: Path, images: dict[str, str]) -> None:
    cfg = tmp_path / "imgscan.toml"
    cfg.write_text(
        '[policy]\nfail_on_state = ["present"]\ncategories = ["file"]\n'
        '[[allow]]\npath = "/root/.ssh/*"\nreason = "throwaway build key"\n',
        encoding="utf-8",
    )
    res = run("scan", images["base"], "--config", str(cfg), "--format", "json")
    data = report(res)
    assert res.exit_code == expected_exit(data, "high", {"present"}, {"file"})
    key = next(f for f in data["findings"] if f["path"] == "/root/.ssh/id_rsa")
    assert key["suppressed"] and "throwaway build key" in key["suppression"]
    flags = run(
        "scan",
        images["base"],
        "--config",
        str(cfg),
        "--format",
        "json",
        "--fail-on-state",
        "all",
        "--category",
        "secret",
    )
    assert flags.exit_code == expected_exit(
        report(flags), "high", {"present", "deleted", "overwritten"}, {"secret"}
    )
    assert flags.exit_code == 1  # the overwritten and present deploy keys are not allowlisted


def test_show_secrets_is_opt_in(images: dict[str, str]) -> None:
    key = generate("pem-rsa", 1).decode().strip()
    hidden = run("scan", images["base"], "--format", "json")
    assert all("secret" not in f for f in report(hidden)["findings"])
    shown = run("scan", images["base"], "--format", "json", "--show-secrets")
    secrets = [f["secret"].strip() for f in report(shown)["findings"] if "secret" in f]
    assert key in secrets


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--fail-on", "severe"), "Invalid value for '--fail-on'"),
        (("--fail-on-state", "gone"), "--fail-on-state: unknown state 'gone'"),
        (("--category", "vuln"), "--category: unknown category 'vuln'"),
        (("--format", "xml"), "Invalid value for '--format'"),
        (("--baseline", "/nonexistent/b.json"), "cannot read"),
        (("--config", "/nonexistent/c.toml"), "cannot read"),
        (("--output", "/nonexistent/dir/out.json"), "--output /nonexistent/dir/out.json"),
    ],
)
def test_usage_errors_exit_2(images: dict[str, str], args: tuple[str, ...], message: str) -> None:
    res = run("scan", images["base"], *args)
    assert res.exit_code == 2
    assert message in res.stderr
    assert res.stdout == ""
    assert "Traceback" not in res.stderr


def test_bad_config_names_key_and_file(tmp_path: Path, images: dict[str, str]) -> None:
    cfg = tmp_path / ".imgscan.toml"
    cfg.write_text("[policy]\nfail_on = 'urgent'\n", encoding="utf-8")
    res = run("scan", images["base"], "--config", str(cfg))
    assert res.exit_code == 2
    assert res.stderr.strip().count("\n") == 0
    assert str(cfg) in res.stderr and "'fail_on'" in res.stderr


def test_scan_error_exit_3(tmp_path: Path) -> None:
    res = run("scan", str(tmp_path / "missing.tar"))
    assert res.exit_code == 3
    assert res.stderr.startswith("imgscan: error: ") and res.stdout == ""


def test_baseline_usage_errors(tmp_path: Path, images: dict[str, str]) -> None:
    out = tmp_path / "b.json"
    past = run("baseline", "create", images["base"], "-o", str(out), "--expires", "2001-01-01")
    assert past.exit_code == 2 and "in the past" in past.stderr
    bad = run("baseline", "create", images["base"], "-o", str(out), "--expires", "soon")
    assert bad.exit_code == 2 and "--expires: expected a date" in bad.stderr
    assert not out.exists()
    assert run("baseline", "create", images["base"]).exit_code == 2  # -o is required


def test_colour_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    from imgscan.cli import _color_for

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert _color_for(Tty()) is True
    assert _color_for(io.StringIO()) is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert _color_for(Tty()) is False


def test_rules_list() -> None:
    ruleset = load_ruleset()
    res = run("rules")
    assert res.exit_code == 0
    first = ruleset.rules[0]
    assert first.id in res.stdout and first.source in res.stdout
    assert res.stdout.rstrip().endswith(f"{len(ruleset.rules)} rules")
    data = json.loads(run("rules", "--format", "json").stdout)
    assert [r["id"] for r in data] == [r.id for r in ruleset.rules]
    assert set(data[0]) == {"id", "severity", "title", "source", "enabled"}


RULE = """
[[rule]]
id = 'acme-token'
title = 'ACME internal token'
severity = 'high'
regex = '''\\b(acme_[a-z0-9]{{24}})\\b'''
keywords = ['acme_']
examples = [{{ text = 'token = {example}', secret = '{secret}' }}]
counter_examples = ['acme_short']
"""


def test_rules_test_command(tmp_path: Path) -> None:
    token = "acme_q7x2k9m4p1z8w3n6r5t0v2b8"  # made up for this test
    good = tmp_path / "good.toml"
    good.write_text(RULE.format(example=token, secret=token), encoding="utf-8")
    res = run("rules", "test", str(good))
    assert res.exit_code == 0, res.stdout + res.stderr
    assert "1 rule(s), 2 passed, 0 failed" in res.stdout

    wrong = tmp_path / "wrong.toml"
    wrong.write_text(RULE.format(example="acme_tooshort", secret="acme_tooshort"), encoding="utf-8")
    res = run("rules", "test", str(wrong))
    assert res.exit_code == 1
    assert "FAIL acme-token example" in res.stdout and "1 failed" in res.stdout

    broken = tmp_path / "broken.toml"
    broken.write_text("[[rule]]\nid = 'x'\n", encoding="utf-8")
    res = run("rules", "test", str(broken))
    assert res.exit_code == 2
    assert str(broken) in res.stderr and "Traceback" not in res.stderr


def test_config_rule_dirs_overrides_and_disabled_rules(tmp_path: Path) -> None:
    token = "acme_q7x2k9m4p1z8w3n6r5t0v2b8"  # made up for this test
    data = tomllib.loads(SPEC.read_text(encoding="utf-8"))
    data["layers"].append(
        {
            "created_by": "COPY app.env /srv/app.env # buildkit",
            "entries": [
                {"path": "srv/", "type": "dir"},
                {"path": "srv/app.env", "content": f"ACME_TOKEN={token}\n"},
            ],
        }
    )
    image = build(parse_spec(data, str(SPEC)), "docker-legacy", tmp_path / "acme.tar", "gzip")
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "acme.toml").write_text(RULE.format(example=token, secret=token), "utf-8")
    cfg = tmp_path / ".imgscan.toml"
    cfg.write_text(
        'rule_dirs = ["rules"]\ndisabled_rules = ["private-key"]\n'
        '[severity]\n"acme-token" = "critical"\n',
        encoding="utf-8",
    )
    res = run("scan", str(image), "--config", str(cfg), "--format", "json")
    findings = report(res)["findings"]
    acme = [f for f in findings if f["rule"] == "acme-token"]
    assert [(f["path"], f["severity"], f["status"]) for f in acme] == [
        ("/srv/app.env", "critical", "present")
    ]
    assert not [f for f in findings if f["rule"] == "private-key"]
    assert res.exit_code == 1
    sarif = json.loads(run("scan", str(image), "--config", str(cfg), "--format", "sarif").stdout)
    ids = [r["id"] for r in sarif["runs"][0]["tool"]["driver"]["rules"]]
    assert "acme-token" in ids and "private-key" not in ids
    assert len(ids) > len({f["rule"] for f in findings})  # quiet rules are declared too
