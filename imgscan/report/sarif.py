"""SARIF 2.1.0: one run, a rule per rule id, a result per finding, layer-qualified locations."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from imgscan import __version__
from imgscan.model import Category, Finding, ScanResult, Severity, Status
from imgscan.report.table import instruction, sort_key

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/imgscan/imgscan"
FINGERPRINT_KEY = "imgscanFingerprint/v1"

LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}
# GitHub code scanning maps >= 9.0 critical, >= 7.0 high, >= 4.0 medium, > 0 low.
SECURITY_SEVERITY = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
    Severity.INFO: "0.0",
}
_HELP = {
    Category.SECRET: (
        "A credential was found in an image layer. Rotate it: anyone who can pull the image "
        "can read every layer, so deleting or overwriting the file in a later layer does not "
        "remove it. Rebuild without the secret (use build secrets or runtime injection) and "
        "make sure no intermediate layer contains it."
    ),
    Category.CONFIG: (
        "The image configuration or build history exposes a problem. Image config (Env, Labels, "
        "history) is readable by anyone who can pull the image; fix the Dockerfile and rebuild."
    ),
    Category.FILE: (
        "A file in the image is risky (sensitive file, dangerous permissions). Remove it or "
        "fix its mode in the layer that adds it and rebuild; later-layer deletion keeps it "
        "recoverable."
    ),
}


@dataclass(frozen=True, slots=True)
class RuleDoc:
    """What SARIF says about a rule that did not necessarily fire (from the loaded rule set)."""

    id: str
    title: str
    severity: Severity
    category: Category = Category.SECRET
    description: str = ""
    remediation: str = ""


def artifact_uri(f: Finding) -> str:
    """``layer/3/app/.env`` for layer files, ``config/Env`` or ``history/4`` for config items."""
    if f.path is not None:
        path = f.path.lstrip("/")
        prefix = f"layer/{f.layer}/" if f.layer is not None else "rootfs/"
        raw = prefix + path
    elif f.location:
        loc = f.location
        m = re.fullmatch(r"history\[(\d+)\](?:\.\w+)?", loc)
        if m:
            raw = f"history/{m.group(1)}"
        elif loc.startswith("config."):
            raw = "config/" + loc[len("config.") :].replace(".", "/")
        else:
            raw = "image/" + re.sub(r"\s+", "-", loc.strip())
    else:
        raw = "image"
    return urllib.parse.quote(raw, safe="/!$&'()*+,;=:@-._~")


def _rule_dict(doc: RuleDoc) -> dict[str, Any]:
    help_text = _HELP[doc.category]
    if doc.remediation:
        help_text = f"{doc.remediation}\n\n{help_text}"
    full = doc.description or f"{doc.title} ({doc.category.value} finding)."
    return {
        "id": doc.id,
        "name": "".join(p.capitalize() for p in re.split(r"[^A-Za-z0-9]+", doc.id) if p),
        "shortDescription": {"text": doc.title},
        "fullDescription": {"text": full},
        "help": {"text": help_text},
        "defaultConfiguration": {"level": LEVEL[doc.severity]},
        "properties": {
            "security-severity": SECURITY_SEVERITY[doc.severity],
            "tags": ["security", doc.category.value],
        },
    }


def _doc_for(f: Finding, catalog: Mapping[str, RuleDoc]) -> RuleDoc:
    known = catalog.get(f.rule)
    return RuleDoc(
        id=f.rule,
        title=known.title if known else f.title,
        severity=f.severity,  # the worst severity seen (findings come worst first)
        category=f.category,
        description=known.description if known else "",
        remediation=f.remediation or (known.remediation if known else ""),
    )


def _message(f: Finding) -> str:
    text = (f.message or f.title).rstrip()
    if f.redacted:
        text += f" ({f.redacted})"
    if not text.endswith("."):
        text += "."
    if f.status is Status.DELETED:
        text += (
            f" Deleted in layer {f.removed_in_layer} but still recoverable from layer {f.layer}."
        )
    elif f.status is Status.OVERWRITTEN:
        text += (
            f" Overwritten in layer {f.removed_in_layer} but still recoverable from layer "
            f"{f.layer}."
        )
    return text


def _result(
    f: Finding, index: int, result: ScanResult, show_secrets: bool, reason: str | None
) -> dict[str, Any]:
    region: dict[str, Any] = {}
    phys: dict[str, Any] = {"artifactLocation": {"uri": artifact_uri(f)}}
    if f.line is not None and f.line >= 1:
        region["startLine"] = f.line
        phys["region"] = region
    cb = f.created_by
    if cb is None and f.layer is not None and 0 <= f.layer < len(result.image.layers):
        cb = result.image.layers[f.layer].created_by
    props: dict[str, Any] = {
        "category": f.category.value,
        "severity": f.severity.value,
        "layer": f.layer,
        "layerDigest": f.layer_digest,
        "instruction": instruction(cb, 200) or None,
        "state": f.status.value if f.status is not None else None,
        "removedInLayer": f.removed_in_layer,
        "path": f.path,
        "location": f.location,
        "redacted": f.redacted,
        "validated": f.validated,
    }
    if show_secrets and f.secret is not None:
        props["secret"] = f.secret
    out: dict[str, Any] = {
        "ruleId": f.rule,
        "ruleIndex": index,
        "level": LEVEL[f.severity],
        "message": {"text": _message(f)},
        "locations": [{"physicalLocation": phys}],
        "partialFingerprints": {FINGERPRINT_KEY: f.fingerprint},
        "properties": {k: v for k, v in props.items() if v is not None},
    }
    if reason is not None:
        out["suppressions"] = [{"kind": "external", "status": "accepted", "justification": reason}]
    return out


def to_sarif(
    result: ScanResult,
    *,
    show_secrets: bool = False,
    suppressions: Mapping[str, str] | None = None,
    catalog: Sequence[RuleDoc] = (),
) -> dict[str, Any]:
    """The SARIF 2.1.0 log of ``result``; ``catalog`` adds rules that did not fire."""
    sup = suppressions or {}
    docs = {d.id: d for d in catalog}
    ordered = sorted(result.findings, key=sort_key)
    rules: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    for f in ordered:  # worst first, so a rule's default level is its worst finding's
        if f.rule not in index:
            index[f.rule] = len(rules)
            rules.append(_rule_dict(_doc_for(f, docs)))
    for rid in sorted(docs):
        if rid not in index:
            index[rid] = len(rules)
            rules.append(_rule_dict(docs[rid]))
    results = [
        _result(f, index[f.rule], result, show_secrets, sup.get(f.fingerprint)) for f in ordered
    ]
    notes = [
        {
            "level": "warning",
            "message": {"text": f"not scanned: {u.path}: {u.reason}"},
            "properties": {"layer": u.layer, "path": u.path, "reason": u.reason},
        }
        for u in result.unscanned
    ]
    img = result.image
    image_props = {
        "reference": img.reference,
        "digest": img.digest,
        "configDigest": img.config_digest,
        "platform": img.platform,
        "user": img.user,
        "layers": [
            {
                "index": li.index,
                "digest": li.digest,
                "diffId": li.diff_id,
                "createdBy": li.created_by,
            }
            for li in img.layers
        ],
    }
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "imgscan",
                "version": __version__,
                "semanticVersion": __version__,
                "informationUri": INFORMATION_URI,
                "rules": rules,
            }
        },
        "invocations": [{"executionSuccessful": True, "toolExecutionNotifications": notes}],
        "results": results,
        "columnKind": "unicodeCodePoints",
        "properties": {"image": image_props},
    }
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}


def write_sarif(
    result: ScanResult,
    stream: TextIO,
    *,
    show_secrets: bool = False,
    suppressions: Mapping[str, str] | None = None,
    catalog: Sequence[RuleDoc] = (),
) -> None:
    """Write the SARIF log as indented JSON with a trailing newline."""
    data = to_sarif(result, show_secrets=show_secrets, suppressions=suppressions, catalog=catalog)
    json.dump(data, stream, indent=2, ensure_ascii=False)
    stream.write("\n")
