"""The table report: grouped by exposure, redacted by default, colour only when asked."""

from __future__ import annotations

import dataclasses
import io
import re

from report_samples import check_golden, raw_secrets, sample_image, sample_result

from imgscan.model import ScanResult, Severity, Status
from imgscan.report.render import render
from imgscan.report.table import MAX_SUPPRESSED_ROWS, instruction, summary_line, write_table

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def table(result: ScanResult, **kw: object) -> str:
    buf = io.StringIO()
    render(
        result,
        "table",
        buf,
        show_secrets=bool(kw.pop("show_secrets", False)),
        color=bool(kw.pop("color", False)),
        **kw,
    )  # type: ignore[arg-type]
    return buf.getvalue()


def test_table_golden() -> None:
    check_golden("table.txt", table(sample_result()))


def test_table_golden_with_suppressions() -> None:
    r = sample_result()
    overwritten = next(f for f in r.findings if f.status is Status.OVERWRITTEN)
    check_golden(
        "table-suppressed.txt",
        table(r, suppressions={overwritten.fingerprint: "rotated on 2026-11-01"}),
    )


def test_groups_in_exposure_order() -> None:
    out = table(sample_result())
    heads = [out.index(h) for h in ("PRESENT", "DELETED", "OVERWRITTEN", "IMAGE CONFIG")]
    assert heads == sorted(heads)
    deleted_block = out[heads[1] : heads[2]]
    assert "/root/.aws/credentials:2" in deleted_block
    assert "2→3" in deleted_block  # added in layer 2, removed in layer 3
    config_block = out[heads[3] :]
    assert "config.Env" in config_block and "history[2].created_by" in config_block


def test_no_raw_secret_by_default_and_shown_when_asked() -> None:
    r = sample_result()
    hidden = table(r)
    for secret in raw_secrets(r):
        assert secret not in hidden
    shown = table(r, show_secrets=True)
    single_line = [f.secret for f in r.findings if f.secret and "\n" not in f.secret]
    assert single_line
    for secret in single_line:
        assert secret in shown


def test_colour_only_when_requested() -> None:
    r = sample_result()
    plain = table(r)
    coloured = table(r, color=True)
    assert "\x1b[" not in plain
    assert "\x1b[1;31mCRITICAL\x1b[0m" in coloured
    # Same content once the escape codes are removed: tabulate aligns on visible width.
    assert ANSI.sub("", coloured) == plain


def test_hostile_path_cannot_drive_the_terminal() -> None:
    r = sample_result()
    evil = dataclasses.replace(r.findings[0], path="/app/\x1b]0;pwned\x07.env\n")
    out = table(dataclasses.replace(r, findings=(evil,)))
    assert "\x1b]" not in out and "\x07" not in out
    assert "/app/\\x1b]0;pwned\\x07.env\\n" in out


def test_instruction_is_shortened_and_dockerfile_like() -> None:
    assert instruction('/bin/sh -c #(nop)  CMD ["python"]') == 'CMD ["python"]'
    assert instruction("/bin/sh -c apt-get update") == "RUN apt-get update"
    assert instruction("COPY app/ /app # buildkit") == "COPY app/ /app"
    long = instruction("RUN /bin/sh -c " + "x" * 200 + " # buildkit")
    assert long.startswith("RUN xxx") and long.endswith("…") and len(long) == 40
    assert instruction(None) == ""


def test_summary_counts_by_severity_and_state() -> None:
    r = sample_result()
    line = summary_line(r, {})
    n_crit = sum(1 for f in r.findings if f.severity is Severity.CRITICAL)
    n_cfg = sum(1 for f in r.findings if f.status is None)
    assert line.startswith(f"{len(r.findings)} findings: {n_crit} critical")
    assert f"{n_cfg} config" in line
    assert "1 deleted" in line and "1 overwritten" in line
    assert line.endswith("0 suppressed | 1 unscanned")
    sup = {r.findings[0].fingerprint: "ok"}
    assert f"{len(r.findings) - 1} findings" in summary_line(r, sup)
    assert "1 suppressed" in summary_line(r, sup)


def test_empty_result() -> None:
    r = ScanResult(image=sample_image(), findings=(), unscanned=())
    buf = io.StringIO()
    write_table(r, buf)
    out = buf.getvalue()
    assert "No findings | 0 suppressed | 0 unscanned" in out
    assert "SEVERITY" not in out


def test_many_suppressed_rows_are_capped() -> None:
    r = sample_result()
    many = tuple(
        dataclasses.replace(r.findings[0], fingerprint=f"{i:032x}", line=i + 1)
        for i in range(MAX_SUPPRESSED_ROWS + 5)
    )
    big = dataclasses.replace(r, findings=many)
    out = table(big, suppressions={f.fingerprint: "accepted" for f in many})
    assert f"SUPPRESSED ({len(many)})" in out
    assert "… and 5 more suppressed" in out
    assert out.count(" accepted\n") == MAX_SUPPRESSED_ROWS
    assert "No findings" in out and f"{len(many)} suppressed" in out
