"""Format dispatch: write a ScanResult as table, JSON or SARIF to a stream."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from imgscan.errors import ConfigError
from imgscan.model import ScanResult
from imgscan.report import json_report

if TYPE_CHECKING:  # each format's writer loads when that format is asked for
    from imgscan.report.sarif import RuleDoc

FORMATS = ("table", "json", "sarif")


def json_dict(
    result: ScanResult,
    *,
    show_secrets: bool = False,
    suppressions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The JSON report with ``suppressed``/``suppression`` on each finding and in the summary."""
    return json_report.to_dict(result, show_secrets=show_secrets, suppressions=suppressions)


def render(
    result: ScanResult,
    fmt: str,
    stream: TextIO,
    *,
    show_secrets: bool = False,
    color: bool = False,
    suppressions: Mapping[str, str] | None = None,
    catalog: Sequence[RuleDoc] = (),
) -> None:
    """Write ``result`` in format ``fmt`` (table, json or sarif) to ``stream``.

    ``suppressions`` maps fingerprint -> reason (baseline, allowlist); ``catalog`` lists
    the loaded rules so SARIF declares the ones that did not fire too.
    """
    if fmt == "table":
        from imgscan.report.table import write_table

        write_table(
            result, stream, show_secrets=show_secrets, color=color, suppressions=suppressions
        )
    elif fmt == "json":
        data = json_dict(result, show_secrets=show_secrets, suppressions=suppressions)
        json.dump(data, stream, indent=2, ensure_ascii=False)
        stream.write("\n")
    elif fmt == "sarif":
        from imgscan.report.sarif import write_sarif

        write_sarif(
            result, stream, show_secrets=show_secrets, suppressions=suppressions, catalog=catalog
        )
    else:
        raise ConfigError(f"unknown report format {fmt!r} (choose from {', '.join(FORMATS)})")
