"""SARIF 2.1.0: valid against the OASIS schema, layer-qualified locations, stable fingerprints."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from report_samples import check_golden, raw_secrets, redact_volatile, sample_image, sample_result

from imgscan.model import ScanResult, Severity, Status
from imgscan.report.render import render
from imgscan.report.sarif import FINGERPRINT_KEY, RuleDoc, artifact_uri, to_sarif

SCHEMA_PATH = Path(__file__).parent / "data" / "sarif-schema-2.1.0.json"


@pytest.fixture(scope="module")
def validator() -> Any:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def sarif(result: ScanResult, **kw: Any) -> dict[str, Any]:
    buf = io.StringIO()
    render(result, "sarif", buf, show_secrets=kw.pop("show_secrets", False), color=False, **kw)
    data: dict[str, Any] = json.loads(buf.getvalue())
    return data


def suppress_overwritten(r: ScanResult) -> dict[str, str]:
    f = next(f for f in r.findings if f.status is Status.OVERWRITTEN)
    return {f.fingerprint: "rotated on 2026-11-01"}


def test_sarif_golden(validator: Any) -> None:
    r = sample_result()
    data = sarif(r, suppressions=suppress_overwritten(r))
    validator.validate(data)
    check_golden("report.sarif", json.dumps(redact_volatile(data), indent=2) + "\n")


def test_every_variant_validates(validator: Any) -> None:
    r = sample_result()
    empty = ScanResult(image=sample_image(), findings=(), unscanned=())
    for data in (sarif(r), sarif(r, show_secrets=True), sarif(empty)):
        validator.validate(data)
        assert data["version"] == "2.1.0" and len(data["runs"]) == 1


def test_schema_catches_a_broken_log(validator: Any) -> None:
    data = sarif(sample_result())
    data["runs"][0]["results"][0]["level"] = "fatal"
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(data)


def test_rules_and_results_line_up() -> None:
    r = sample_result()
    run = sarif(r)["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    ids = [rule["id"] for rule in rules]
    assert len(ids) == len(set(ids)) == len({f.rule for f in r.findings})
    for res in run["results"]:
        assert rules[res["ruleIndex"]]["id"] == res["ruleId"]
    for rule in rules:
        assert rule["shortDescription"]["text"] and rule["help"]["text"]
        worst = max((f.severity for f in r.findings if f.rule == rule["id"]), key=lambda s: s.rank)
        assert (
            rule["properties"]["security-severity"]
            == {
                Severity.CRITICAL: "9.5",
                Severity.HIGH: "8.0",
                Severity.MEDIUM: "5.5",
                Severity.LOW: "3.0",
                Severity.INFO: "0.0",
            }[worst]
        )
    root_rule = next(rule for rule in rules if rule["id"] == "root-user")
    assert root_rule["help"]["text"].startswith("Add a USER instruction")
    assert root_rule["defaultConfiguration"]["level"] == "warning"


def test_results_carry_layer_state_and_fingerprint() -> None:
    r = sample_result()
    results = sarif(r)["runs"][0]["results"]
    assert len(results) == len(r.findings)
    by_fp = {res["partialFingerprints"][FINGERPRINT_KEY]: res for res in results}
    assert set(by_fp) == {f.fingerprint for f in r.findings}
    deleted = next(f for f in r.findings if f.status is Status.DELETED)
    res = by_fp[deleted.fingerprint]
    loc = res["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"] == f"layer/{deleted.layer}{deleted.path}"
    assert loc["region"]["startLine"] == deleted.line
    props = res["properties"]
    assert props["state"] == "deleted"
    assert props["removedInLayer"] == deleted.removed_in_layer
    assert props["layerDigest"] == deleted.layer_digest
    assert props["instruction"].startswith('RUN echo "$AWS_SECRET"')
    assert f"Deleted in layer {deleted.removed_in_layer}" in res["message"]["text"]
    assert res["level"] == "error"


def test_artifact_uris() -> None:
    uris = {f.path or f.location: artifact_uri(f) for f in sample_result().findings}
    assert uris["/app/keys/server.pem"] == "layer/1/app/keys/server.pem"
    assert uris["config.Env"] == "config/Env"
    assert uris["config.User"] == "config/User"
    assert uris["history[2].created_by"] == "history/2"
    assert uris["/app/lib/bundle.jar!META-INF/db.properties"] == (
        "layer/1/app/lib/bundle.jar!META-INF/db.properties"
    )
    f = sample_result().findings[0]
    import dataclasses

    odd = dataclasses.replace(f, path="/srv/my file#1%.txt")
    assert artifact_uri(odd) == "layer/4/srv/my%20file%231%25.txt"


def test_suppressed_results_are_marked() -> None:
    r = sample_result()
    sup = suppress_overwritten(r)
    results = sarif(r, suppressions=sup)["runs"][0]["results"]
    marked = [res for res in results if "suppressions" in res]
    assert [res["partialFingerprints"][FINGERPRINT_KEY] for res in marked] == list(sup)
    assert marked[0]["suppressions"] == [
        {"kind": "external", "status": "accepted", "justification": "rotated on 2026-11-01"}
    ]


def test_no_raw_secret_unless_asked() -> None:
    r = sample_result()
    hidden = json.dumps(sarif(r), ensure_ascii=False)
    for secret in raw_secrets(r):
        assert secret not in hidden
    shown = sarif(r, show_secrets=True)["runs"][0]["results"]
    assert sorted(
        res["properties"]["secret"] for res in shown if "secret" in res["properties"]
    ) == sorted(f.secret for f in r.findings if f.secret)


def test_unscanned_become_notifications() -> None:
    inv = sarif(sample_result())["runs"][0]["invocations"][0]
    assert inv["executionSuccessful"] is True
    notes = inv["toolExecutionNotifications"]
    assert [n["properties"]["path"] for n in notes] == ["/app/data/huge.bin"]
    assert notes[0]["level"] == "warning"


def test_catalog_declares_rules_that_did_not_fire(validator: Any) -> None:
    r = sample_result()
    catalog = [
        RuleDoc(
            "zz-quiet-rule",
            "A rule that found nothing",
            Severity.MEDIUM,
            description="Never fires here.",
            remediation="Nothing to do.",
        ),
        RuleDoc(
            "aws-access-key-id",
            "AWS access key ID",
            Severity.CRITICAL,
            description="AKIA-style key id.",
            remediation="Rotate the key in IAM.",
        ),
    ]
    data = to_sarif(r, catalog=catalog)
    validator.validate(data)
    rules = data["runs"][0]["tool"]["driver"]["rules"]
    fired = {f.rule for f in r.findings}
    # Rules that fired come first (their indexes do not move), then the quiet ones.
    assert {x["id"] for x in rules[: len(fired)]} == fired
    assert [x["id"] for x in rules[len(fired) :]] == ["zz-quiet-rule"]
    quiet = rules[-1]
    assert quiet["fullDescription"]["text"] == "Never fires here."
    assert quiet["help"]["text"].startswith("Nothing to do.")
    assert quiet["defaultConfiguration"]["level"] == "warning"
    aws = next(x for x in rules if x["id"] == "aws-access-key-id")
    assert aws["fullDescription"]["text"] == "AKIA-style key id."
    assert aws["help"]["text"].startswith("Rotate the key in IAM.")
    for res in data["runs"][0]["results"]:
        assert rules[res["ruleIndex"]]["id"] == res["ruleId"]
