"""The JSON report: golden file, schema validation, suppression fields, no raw secrets."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from report_samples import check_golden, raw_secrets, redact_volatile, sample_image, sample_result

from imgscan.errors import ConfigError
from imgscan.model import ScanResult, Status
from imgscan.report.json_report import write_json
from imgscan.report.render import json_dict, render

SCHEMA_PATH = Path(__file__).parent.parent / "docs" / "report-schema.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def report(result: ScanResult, **kw: Any) -> dict[str, Any]:
    buf = io.StringIO()
    render(result, "json", buf, show_secrets=kw.pop("show_secrets", False), color=False, **kw)
    text = buf.getvalue()
    assert text.endswith("}\n")
    data: dict[str, Any] = json.loads(text)
    return data


def test_json_golden(validator: jsonschema.Draft202012Validator) -> None:
    r = sample_result()
    overwritten = next(f for f in r.findings if f.status is Status.OVERWRITTEN)
    data = report(r, suppressions={overwritten.fingerprint: "rotated on 2026-11-01"})
    validator.validate(data)
    check_golden("report.json", json.dumps(redact_volatile(data), indent=2) + "\n")


def test_every_variant_validates(validator: jsonschema.Draft202012Validator) -> None:
    r = sample_result()
    empty = ScanResult(image=sample_image(), findings=(), unscanned=())
    for data in (report(r), report(r, show_secrets=True), report(empty)):
        validator.validate(data)


def test_schema_rejects_a_broken_report(validator: jsonschema.Draft202012Validator) -> None:
    data = report(sample_result())
    data["findings"][0]["status"] = "gone"
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(data)
    data = report(sample_result())
    del data["findings"][0]["fingerprint"]
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(data)


def test_raw_secrets_only_with_show_secrets() -> None:
    r = sample_result()
    hidden = json.dumps(report(r))
    for secret in raw_secrets(r):
        assert secret not in hidden
    shown = report(r, show_secrets=True)
    assert [f["secret"] for f in shown["findings"] if "secret" in f] == [
        f.secret for f in r.findings if f.secret
    ]


def test_suppressed_findings_are_counted_not_hidden() -> None:
    r = sample_result()
    fp = r.findings[0].fingerprint
    data = json_dict(r, suppressions={fp: "accepted: test key"})
    assert len(data["findings"]) == len(r.findings)
    marked = [f for f in data["findings"] if f["suppressed"]]
    assert [(f["fingerprint"], f["suppression"]) for f in marked] == [(fp, "accepted: test key")]
    assert all(f["suppression"] is None for f in data["findings"] if not f["suppressed"])
    assert data["summary"]["suppressed"] == 1
    assert data["summary"]["total"] == len(r.findings)


def test_unknown_format_is_a_usage_error() -> None:
    with pytest.raises(ConfigError, match="unknown report format 'xml'"):
        render(sample_result(), "xml", io.StringIO(), show_secrets=False, color=False)


def test_write_json_is_the_same_contract(validator: jsonschema.Draft202012Validator) -> None:
    """Callers of json_report directly (workflows) get the same, schema-valid report."""
    r = sample_result()
    sup = {r.findings[1].fingerprint: "accepted"}
    buf = io.StringIO()
    write_json(r, buf, suppressions=sup)
    data = json.loads(buf.getvalue())
    validator.validate(data)
    assert data == json_dict(r, suppressions=sup)
    plain = io.StringIO()
    write_json(r, plain)
    assert json.loads(plain.getvalue())["summary"]["suppressed"] == 0
