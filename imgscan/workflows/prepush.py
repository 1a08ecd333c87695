"""The pre-push gate: scan an image, and push it only when the policy passes.

The image is scanned and pushed from the same opened source, so what is pushed
is what was scanned: an archive or OCI layout is pushed blob by blob (digests
verified by the registry); an engine image is pushed through the engine by its
image ID (the config digest we scanned), never by a tag that could have moved.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from imgscan.errors import ConfigError
from imgscan.gate import GateOutcome, Policy, evaluate
from imgscan.model import ScanResult


@dataclass(frozen=True, slots=True)
class GateRun:
    """What the gate did: the scan, the verdict, and where the image went (if anywhere)."""

    result: ScanResult
    outcome: GateOutcome
    pushed_to: str | None = None
    pushed_digest: str | None = None
    suppressions: Mapping[str, str] | None = None


def gate_image(
    reference: str,
    options: Any,
    policy: Policy,
    *,
    suppressions_for: Callable[[ScanResult], Mapping[str, str]] | None = None,
    push_to: str | None = None,
    progress: Any = None,
    log: Callable[[str], None] | None = None,
    postprocess: Callable[[ScanResult], ScanResult] | None = None,
) -> GateRun:
    """Scan ``reference``; when the policy passes and ``push_to`` is set, push the image there."""
    from imgscan.scan import scan_opened
    from imgscan.sources.resolve import resolve

    say = log or (lambda _m: None)
    source = resolve(reference, options.source, options.source_kind, options.registry or None)
    with source.open() as image:
        result = scan_opened(image, options, progress, reference=reference)
        if postprocess is not None:
            result = postprocess(result)
        sup = dict(suppressions_for(result)) if suppressions_for is not None else {}
        outcome = evaluate(result, policy, sup)
        if not outcome.passed or push_to is None:
            return GateRun(result, outcome, suppressions=sup)
        kind = image.info.source_kind
        if push_to == "":
            push_to = reference.split("://", 1)[-1]
        if kind == "docker-engine":
            from imgscan.sources.engine import engine_push

            pin = image.info.config_digest or reference
            say(f"policy passed; pushing {pin[:19]} to {push_to} through the engine")
            digest = engine_push(pin, push_to, options.source)
        elif kind in ("docker-archive", "oci-layout"):
            from imgscan.sources.push import push_image

            reg = dict(options.registry or {})
            say(f"policy passed; pushing {reference} to {push_to}")
            digest = push_image(
                image,
                push_to,
                creds=reg.get("creds"),
                insecure=bool(reg.get("insecure", False)),
                ca_cert=reg.get("ca_cert"),
                config_bytes=getattr(image, "config_bytes", None),
            )
        else:
            raise ConfigError(
                f"--push needs a local image (engine) or an archive/OCI layout, not {kind}"
            )
        return GateRun(result, outcome, push_to, digest, sup)
