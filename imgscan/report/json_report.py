"""The versioned JSON report (schema_version 1): a contract later versions extend, never break."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any, TextIO

from imgscan import __version__
from imgscan.model import Finding, ScanResult, Severity, Status

SCHEMA_VERSION = 1


def finding_dict(
    f: Finding, *, show_secrets: bool = False, suppression: str | None = None
) -> dict[str, Any]:
    """One finding as the JSON report shows it; ``suppression`` is the baseline/allowlist reason."""
    d: dict[str, Any] = {
        "fingerprint": f.fingerprint,
        "category": str(f.category),
        "rule": f.rule,
        "title": f.title,
        "severity": str(f.severity),
        "layer": f.layer,
        "layer_digest": f.layer_digest,
        "path": f.path,
        "line": f.line,
        "status": str(f.status) if f.status is not None else None,
        "removed_in_layer": f.removed_in_layer,
        "location": f.location,
        "redacted": f.redacted,
        "secret_sha256": f.secret_sha256,
        "message": f.message,
        "validated": f.validated,
        "created_by": f.created_by,
        "remediation": f.remediation,
        "note": f.note,
        "suppressed": suppression is not None,
        "suppression": suppression,
    }
    if show_secrets and f.secret is not None:
        d["secret"] = f.secret
    return d


def summary(result: ScanResult, suppressions: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Counts by severity, state and category; suppressed findings are counted, not hidden."""
    sup = suppressions or {}
    sev = Counter(str(f.severity) for f in result.findings)
    state = Counter(str(f.status) if f.status else "config" for f in result.findings)
    cat = Counter(str(f.category) for f in result.findings)
    return {
        "total": len(result.findings),
        "by_severity": {str(s): sev.get(str(s), 0) for s in reversed(Severity)},
        "by_state": {
            **{str(s): state.get(str(s), 0) for s in Status},
            "config": state.get("config", 0),
        },
        "by_category": dict(sorted(cat.items())),
        "suppressed": sum(1 for f in result.findings if f.fingerprint in sup),
        "unscanned": len(result.unscanned),
    }


def to_dict(
    result: ScanResult,
    *,
    show_secrets: bool = False,
    suppressions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The whole report as plain data; ``suppressions`` maps fingerprint -> reason."""
    sup = suppressions or {}
    img = result.image
    return {
        "schema_version": SCHEMA_VERSION,
        "imgscan_version": __version__,
        "image": {
            "reference": img.reference,
            "digest": img.digest,
            "config_digest": img.config_digest,
            "platform": img.platform,
            "user": img.user,
            "source": img.source_kind,
            "layers": [
                {
                    "index": li.index,
                    "digest": li.digest,
                    "diff_id": li.diff_id,
                    "size": li.size,
                    "created_by": li.created_by,
                }
                for li in img.layers
            ],
        },
        "findings": [
            finding_dict(f, show_secrets=show_secrets, suppression=sup.get(f.fingerprint))
            for f in result.findings
        ],
        "unscanned": [
            {"layer": u.layer, "path": u.path, "reason": u.reason} for u in result.unscanned
        ],
        "summary": summary(result, sup),
        "stats": dict(result.stats),
    }


def write_json(
    result: ScanResult,
    stream: TextIO,
    *,
    show_secrets: bool = False,
    suppressions: Mapping[str, str] | None = None,
) -> None:
    """Write the report as indented JSON with a trailing newline."""
    data = to_dict(result, show_secrets=show_secrets, suppressions=suppressions)
    json.dump(data, stream, indent=2, sort_keys=False)
    stream.write("\n")
