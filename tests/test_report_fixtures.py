"""Reports and the gate end to end on fixture images built from the readable specs."""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from report_samples import check_golden, redact_volatile

from fixtures.builder import build
from fixtures.spec import parse_spec
from imgscan.findings.baseline import create_baseline, load_baseline, write_baseline
from imgscan.gate import EXIT_OK, EXIT_POLICY, Policy, evaluate
from imgscan.model import ScanResult
from imgscan.report.render import render
from imgscan.scan import ScanOptions, scan_image

ROOT = Path(__file__).parent.parent
DEMO_SPEC = ROOT / "fixtures" / "specs" / "demo.toml"
TODAY = dt.date(2026, 11, 29)


def demo_data() -> dict[str, Any]:
    return tomllib.loads(DEMO_SPEC.read_text(encoding="utf-8"))


def build_and_scan(data: dict[str, Any], out: Path) -> ScanResult:
    path = build(parse_spec(data, str(DEMO_SPEC)), "docker-legacy", out, "gzip")
    return scan_image(str(path), ScanOptions(source_kind="archive"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[ScanResult, str]:
    out = tmp_path_factory.mktemp("demo") / "demo.tar"
    return build_and_scan(demo_data(), out), str(out)


def rendered(result: ScanResult, fmt: str) -> str:
    buf = io.StringIO()
    render(result, fmt, buf, show_secrets=False, color=False)
    return buf.getvalue()


def stable(text: str, ref: str) -> str:
    return text.replace(ref, "<IMAGE>")


def test_demo_table_golden(demo: tuple[ScanResult, str]) -> None:
    result, ref = demo
    check_golden("demo-table.txt", stable(rendered(result, "table"), ref))


def test_demo_json_golden_and_schema(demo: tuple[ScanResult, str]) -> None:
    result, ref = demo
    data = json.loads(rendered(result, "json"))
    schema = json.loads((ROOT / "docs" / "report-schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(data)
    text = json.dumps(redact_volatile(data), indent=2) + "\n"
    check_golden("demo-report.json", stable(text, ref))


def test_demo_sarif_golden_and_schema(demo: tuple[ScanResult, str]) -> None:
    result, ref = demo
    data = json.loads(rendered(result, "sarif"))
    schema_path = Path(__file__).parent / "data" / "sarif-schema-2.1.0.json"
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    jsonschema.validators.validator_for(schema)(schema).validate(data)
    text = json.dumps(redact_volatile(data), indent=2) + "\n"
    check_golden("demo-report.sarif", stable(text, ref))


def test_deleted_key_shows_its_layer_and_state(demo: tuple[ScanResult, str]) -> None:
    result, _ = demo
    run = json.loads(rendered(result, "sarif"))["runs"][0]
    key = [r for r in run["results"] if r["properties"].get("path") == "/root/.ssh/id_ed25519"]
    assert key, "the deleted deploy key must be reported"
    props = key[0]["properties"]
    assert (props["state"], props["layer"], props["removedInLayer"]) == ("deleted", 2, 3)
    assert props["instruction"] == "COPY deploy_key /root/.ssh/id_ed25519"
    uri = key[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "layer/2/root/.ssh/id_ed25519"


def test_baseline_round_trip_on_images(tmp_path: Path, demo: tuple[ScanResult, str]) -> None:
    result, _ = demo
    assert evaluate(result, Policy()).exit_code == EXIT_POLICY
    bl = tmp_path / "baseline.json"
    write_baseline(create_baseline(result, reason="demo image", today=TODAY), bl)
    sup = load_baseline(bl).suppressions(TODAY)
    assert evaluate(result, Policy(), sup).exit_code == EXIT_OK

    data = copy.deepcopy(demo_data())
    data["layers"].append(
        {
            "created_by": "COPY signing.pem /app/signing.pem # buildkit",
            "entries": [{"path": "app/signing.pem", "generate": "pem-rsa", "seed": 77}],
        }
    )
    rebuilt = build_and_scan(data, tmp_path / "demo2.tar")
    out = evaluate(rebuilt, Policy(), sup)
    assert out.exit_code == EXIT_POLICY
    assert [(f.path, f.layer) for f in out.failing] == [("/app/signing.pem", 4)]
    assert out.suppressed == len(result.findings)
