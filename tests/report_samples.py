"""A hand-built ScanResult that exercises every report feature (fake, seeded secrets)."""

from __future__ import annotations

import os
import random
import string
from pathlib import Path
from typing import Any

from imgscan import __version__
from imgscan.findings.fingerprint import fingerprint, redact, secret_digest
from imgscan.model import (
    Category,
    Finding,
    ImageInfo,
    LayerInfo,
    ScanResult,
    Severity,
    Status,
    Unscanned,
)


def _digest(rng: random.Random) -> str:
    return "sha256:" + "".join(rng.choice("0123456789abcdef") for _ in range(64))


def fake_secret(rng: random.Random, prefix: str, n: int, alphabet: str) -> str:
    """A generated, obviously fake secret: ``prefix`` + ``n`` seeded random characters."""
    return prefix + "".join(rng.choice(alphabet) for _ in range(n))


def secret_finding(
    rule: str,
    title: str,
    severity: Severity,
    secret: str,
    *,
    path: str | None = None,
    location: str | None = None,
    layer: int | None = None,
    line: int | None = None,
    status: Status | None = None,
    removed_in_layer: int | None = None,
    image: ImageInfo | None = None,
    show: bool = True,
    category: Category = Category.SECRET,
) -> Finding:
    """A finding built the way the detection engine builds one."""
    digest = secret_digest(secret)
    li = image.layers[layer] if image is not None and layer is not None else None
    return Finding(
        category=category,
        rule=rule,
        title=title,
        severity=severity,
        message=f"{title} found",
        fingerprint=fingerprint(rule, path or location or "", digest),
        layer=layer,
        layer_digest=li.digest if li else None,
        path=path,
        line=line,
        status=status,
        removed_in_layer=removed_in_layer,
        location=location,
        redacted=redact(secret),
        secret_sha256=digest,
        created_by=li.created_by if li else None,
        secret=secret if show else None,
    )


def sample_image(seed: int = 5) -> ImageInfo:
    """A five-layer image whose history looks like a real buildkit build."""
    rng = random.Random(seed)
    created = (
        "/bin/sh -c #(nop) ADD file:5d6e1c0a2f9b4e7c in / ",
        "COPY app/ /app # buildkit",
        'RUN /bin/sh -c echo "$AWS_SECRET" > /root/.aws/credentials && pip install '
        "--no-cache-dir -r /app/requirements.txt # buildkit",
        "RUN /bin/sh -c rm /root/.aws/credentials # buildkit",
        "COPY config.prod.env /app/.env # buildkit",
    )
    layers = tuple(
        LayerInfo(
            index=i,
            digest=_digest(rng),
            diff_id=_digest(rng),
            size=1000 * (i + 1),
            created_by=cb,
        )
        for i, cb in enumerate(created)
    )
    return ImageInfo(
        reference="demo/app:1.0",
        digest=_digest(rng),
        config_digest=_digest(rng),
        platform="linux/amd64",
        user=None,
        layers=layers,
    )


def sample_result(seed: int = 5, *, with_secrets: bool = True) -> ScanResult:
    """Findings in every exposure state and category, plus one unscanned file."""
    rng = random.Random(seed + 1000)
    img = sample_image(seed)
    up = string.ascii_uppercase + string.digits
    mixed = string.ascii_letters + string.digits + "/+"
    key_id = fake_secret(rng, "AKIAFAKE", 12, up)
    key_old = fake_secret(rng, "FAKEold", 33, mixed)
    key_new = fake_secret(rng, "FAKEnew", 33, mixed)
    key_deleted = fake_secret(rng, "FAKEdel", 33, mixed)
    pem_body = "\n".join(fake_secret(rng, "", 64, mixed) for _ in range(3))
    pem = f"-----BEGIN RSA PRIVATE KEY-----\n{pem_body}\n-----END RSA PRIVATE KEY-----"
    env_pw = fake_secret(rng, "fake-db-pw-", 12, string.ascii_lowercase)
    arg_tok = fake_secret(rng, "ghp_FAKE", 28, up)
    jar_pw = fake_secret(rng, "fakejar", 10, string.ascii_lowercase)
    s = with_secrets
    aws = "AWS secret access key"
    findings = [
        secret_finding(
            "aws-access-key-id",
            "AWS access key id",
            Severity.CRITICAL,
            key_id,
            path="/app/.env",
            layer=4,
            line=2,
            status=Status.PRESENT,
            image=img,
            show=s,
        ),
        secret_finding(
            "aws-secret-access-key",
            aws,
            Severity.CRITICAL,
            key_new,
            path="/app/.env",
            layer=4,
            line=3,
            status=Status.PRESENT,
            image=img,
            show=s,
        ),
        secret_finding(
            "aws-secret-access-key",
            aws,
            Severity.CRITICAL,
            key_deleted,
            path="/root/.aws/credentials",
            layer=2,
            line=2,
            status=Status.DELETED,
            removed_in_layer=3,
            image=img,
            show=s,
        ),
        secret_finding(
            "aws-secret-access-key",
            aws,
            Severity.CRITICAL,
            key_old,
            path="/app/.env",
            layer=1,
            line=3,
            status=Status.OVERWRITTEN,
            removed_in_layer=4,
            image=img,
            show=s,
        ),
        secret_finding(
            "private-key-rsa",
            "RSA private key",
            Severity.HIGH,
            pem,
            path="/app/keys/server.pem",
            layer=1,
            line=1,
            status=Status.PRESENT,
            image=img,
            show=s,
        ),
        secret_finding(
            "generic-password",
            "Password in properties file",
            Severity.MEDIUM,
            jar_pw,
            path="/app/lib/bundle.jar!META-INF/db.properties",
            layer=1,
            line=7,
            status=Status.PRESENT,
            image=img,
            show=s,
        ),
        secret_finding(
            "env-secret",
            "Secret in image environment",
            Severity.HIGH,
            env_pw,
            location="config.Env",
            show=s,
            category=Category.CONFIG,
        ),
        secret_finding(
            "github-token",
            "GitHub personal access token",
            Severity.HIGH,
            arg_tok,
            location="history[2].created_by",
            show=s,
            category=Category.CONFIG,
        ),
        Finding(
            category=Category.CONFIG,
            rule="root-user",
            title="Image runs as root",
            severity=Severity.MEDIUM,
            message="No USER in the image config: containers run as root",
            fingerprint=fingerprint("root-user", "config.User", ""),
            location="config.User",
            remediation="Add a USER instruction with a non-root uid.",
        ),
        Finding(
            category=Category.FILE,
            rule="setuid-binary",
            title="Set-uid binary",
            severity=Severity.LOW,
            message="/usr/local/bin/helper is set-uid root (mode 4755)",
            fingerprint=fingerprint("setuid-binary", "/usr/local/bin/helper", ""),
            layer=0,
            layer_digest=img.layers[0].digest,
            path="/usr/local/bin/helper",
            status=Status.PRESENT,
            location="file mode",
            created_by=img.layers[0].created_by,
        ),
    ]
    unscanned = (Unscanned(1, "/app/data/huge.bin", "file larger than max_file_bytes (4 GiB)"),)
    return ScanResult(image=img, findings=tuple(findings), unscanned=unscanned)


def raw_secrets(result: ScanResult) -> list[str]:
    """Every raw secret in ``result``, and each body line of multi-line ones (not PEM armour)."""
    out: list[str] = []
    for f in result.findings:
        if f.secret:
            out.append(f.secret)
            out.extend(ln for ln in f.secret.splitlines() if len(ln) >= 8 and "-----" not in ln)
    return out


GOLDEN_DIR = Path(__file__).parent / "golden"
VERSION_PLACEHOLDER = "<VERSION>"


def redact_volatile(data: Any) -> Any:
    """Replace the imgscan version and run statistics (timings) with placeholders."""
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            if k in ("imgscan_version", "version", "semanticVersion") and v == __version__:
                out[k] = VERSION_PLACEHOLDER
            elif k == "stats":
                out[k] = {}
            else:
                out[k] = redact_volatile(v)
        return out
    if isinstance(data, list):
        return [redact_volatile(v) for v in data]
    return data


def check_golden(name: str, text: str) -> None:
    """Compare ``text`` with tests/golden/NAME; IMGSCAN_UPDATE_GOLDEN=1 rewrites the file."""
    path = GOLDEN_DIR / name
    if os.environ.get("IMGSCAN_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}; run with IMGSCAN_UPDATE_GOLDEN=1"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{name} differs from golden (IMGSCAN_UPDATE_GOLDEN=1 to accept)"
