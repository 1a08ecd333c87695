"""Hardening: every check triggers on a bad image and stays quiet on the hardened one."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from imgscan.detect.base import ImageContext
from imgscan.detect.hardening import default_analyzers
from imgscan.detect.hardening.catalog import BY_ID, CHECKS, markdown_table
from imgscan.detect.hardening.imagespec import (
    APP_PASSWD,
    APP_SHADOW,
    HARDENED_CONFIG,
    HARDENED_REFERENCE,
    D,
    Empty,
    F,
    Layer,
    W,
    analyze_all,
    build_context,
    hardened_context,
    hardened_steps,
)
from imgscan.model import Severity

DOCS = Path(__file__).resolve().parents[1] / "docs" / "checks.md"
MiB = 1024 * 1024
FAKE_HASH = "$6$fakesalt$" + "Z" * 86


def image(
    *extra: Layer | Empty, reference: str = HARDENED_REFERENCE, **config: object
) -> ImageContext:
    """The hardened image with extra own layers and config overrides."""
    return build_context(
        hardened_steps(*extra),
        {**HARDENED_CONFIG, **config},
        reference=reference,
        source_kind="registry",
    )


def _cap() -> dict[str, bytes]:
    return {"security.capability": struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)}


TRIGGERS: dict[str, Callable[[], ImageContext]] = {
    "user-missing": lambda: image(User=None),
    "user-root": lambda: image(User="root"),
    "user-not-in-passwd": lambda: image(User="web"),
    "user-group-missing": lambda: image(User="app:web"),
    "user-login-shell-password": lambda: image(
        Layer(
            "RUN chpasswd",
            [
                F("/etc/passwd", APP_PASSWD + "dev:x:1000:1000::/home/dev:/bin/bash\n"),
                F("/etc/shadow", APP_SHADOW + f"dev:{FAKE_HASH}:1::::::\n"),
            ],
        )
    ),
    "shadow-empty-password": lambda: image(
        Layer("RUN passwd -d app", [F("/etc/shadow", APP_SHADOW.replace("app:!:", "app::"))])
    ),
    "fs-world-writable": lambda: image(Layer("RUN chmod 777 /app", [D("/app", 0o777)])),
    "fs-writable-by-runtime-user": lambda: image(Volumes=None),
    "fs-writable-path-dir": lambda: image(
        Layer("RUN chown app /usr/local/bin", [D("/usr/local/bin", 0o755, 10001)])
    ),
    "setuid-added": lambda: image(
        Layer("RUN chmod u+s /app/server", [F("/app/server", b"x", 0o4755)])
    ),
    "setuid-base": lambda: image(),
    "file-capability": lambda: image(
        Layer("RUN setcap", [F("/app/server", b"x", 0o755, xattrs=_cap())])
    ),
    "sudo-installed": lambda: image(
        Layer("RUN apt-get install sudo", [F("/usr/bin/sudo", b"x", 0o755)])
    ),
    "sudo-nopasswd": lambda: image(
        Layer(
            "RUN apt-get install sudo",
            [
                F("/usr/bin/sudo", b"x", 0o755),
                F("/etc/sudoers.d/app", "app ALL=(ALL) NOPASSWD:ALL\n"),
            ],
        )
    ),
    "process-sshd": lambda: image(Entrypoint=["/usr/sbin/sshd", "-D"]),
    "sshd-installed": lambda: image(
        Layer("RUN apt-get install openssh-server", [F("/usr/sbin/sshd", b"x", 0o755)])
    ),
    "process-supervisor": lambda: image(Entrypoint=["supervisord", "-n"]),
    "process-init": lambda: image(Entrypoint=["/sbin/init"]),
    "port-22-exposed": lambda: image(ExposedPorts={"22/tcp": {}}),
    "healthcheck-missing": lambda: image(Healthcheck=None),
    "tag-mutable": lambda: image(reference="registry.example.invalid/team/app:latest"),
    "tag-unpinned": lambda: image(reference="registry.example.invalid/team/app:1.2.3"),
    "label-missing-revision": lambda: image(Labels={}),
    "label-missing-source": lambda: image(Labels={}),
    "label-missing-created": lambda: image(Labels={}),
    "cache-apt": lambda: image(
        Layer("RUN apt-get update", [F("/var/lib/apt/lists/x_Packages", size=MiB)])
    ),
    "cache-apk": lambda: image(
        Layer("RUN apk add curl", [F("/var/cache/apk/APKINDEX.tar.gz", size=9)])
    ),
    "cache-pip": lambda: image(
        Layer("RUN pip install x", [F("/root/.cache/pip/wheels/a.whl", size=9)])
    ),
    "cache-npm": lambda: image(Layer("RUN npm i", [F("/root/.npm/_cacache/index-v5/a", size=9)])),
    "cache-yarn": lambda: image(Layer("RUN yarn", [F("/root/.cache/yarn/v6/a", size=9)])),
    "cache-go": lambda: image(Layer("RUN go build", [F("/root/.cache/go-build/aa/b", size=9)])),
    "toolchain-present": lambda: image(
        Layer("RUN apt-get install make", [F("/usr/bin/make", b"x", 0o755)])
    ),
    "git-dir": lambda: image(Layer("COPY . /src", [D("/src/.git"), F("/src/.git/HEAD")])),
    "copy-dotenv": lambda: image(Layer("COPY . /src", [F("/src/.env", "A=1\n")])),
    "copy-node-modules": lambda: image(
        Layer("COPY . /src # buildkit", [F("/src/node_modules/a/index.js")])
    ),
    "add-remote-url": lambda: image(Layer("ADD https://example.invalid/x.tgz /opt/ # buildkit")),
    "run-consecutive": lambda: image(Layer("RUN a"), Layer("RUN b")),
    "wasted-bytes": lambda: image(
        Layer("RUN fetch", [F("/big", size=2 * MiB)]), Layer("RUN rm /big", [W("/big")])
    ),
}


def test_every_check_has_a_trigger() -> None:
    assert set(TRIGGERS) == set(BY_ID)


@pytest.mark.parametrize("rule", sorted(TRIGGERS))
def test_trigger_image_reports_the_check(rule: str) -> None:
    found = [f for f in analyze_all(TRIGGERS[rule]()) if f.rule == rule]
    assert found, rule
    check = BY_ID[rule]
    for f in found:
        assert f.category is check.category and f.title == check.title
        assert f.remediation == check.remediation and f.message
        assert (f.path is not None) or (f.location is not None)
        assert len(f.fingerprint) == 32


@pytest.mark.parametrize("rule", sorted(r for r in TRIGGERS if r != "setuid-base"))
def test_hardened_image_does_not_report_the_check(rule: str) -> None:
    assert not [f for f in analyze_all(hardened_context()) if f.rule == rule]


def test_hardened_image_has_nothing_at_medium_or_above() -> None:
    found = analyze_all(hardened_context())
    assert {f.rule for f in found} == {"setuid-base"}  # su, passwd, chage from the distro
    assert all(f.severity.rank < Severity.MEDIUM.rank for f in found)


def test_fingerprints_are_stable_and_ignore_layer_positions() -> None:
    a = {(f.rule, f.path or f.location): f.fingerprint for f in analyze_all(TRIGGERS["git-dir"]())}
    shifted = image(Layer("RUN true"), Layer("COPY . /src", [D("/src/.git"), F("/src/.git/HEAD")]))
    b = {(f.rule, f.path or f.location): f.fingerprint for f in analyze_all(shifted)}
    assert a[("git-dir", "/src/.git")] == b[("git-dir", "/src/.git")]
    assert len(set(a.values())) == len(a)


def test_analyzers_survive_malformed_config() -> None:
    cfg = {
        "User": 12,
        "Env": "PATH=/x",
        "ExposedPorts": ["22/tcp"],
        "Labels": "x",
        "Volumes": ["/data"],
        "Healthcheck": "none",
        "Entrypoint": 5,
        "Cmd": {"a": 1},
    }
    ctx = build_context(hardened_steps(), cfg)
    rules = {f.rule for f in analyze_all(ctx)}
    assert "user-missing" in rules and "healthcheck-missing" in rules
    broken = build_context(
        [Layer("RUN x", [F("/etc/passwd", b"\xff:garbage\nroot:x:zero\n")])], {"User": "root"}
    )
    assert {f.rule for f in analyze_all(broken)} >= {"user-root"}


def test_default_analyzers_have_unique_names() -> None:
    names = [a.name for a in default_analyzers()]
    assert len(names) == len(set(names)) and all(n.startswith("hardening-") for n in names)


def test_check_ids_are_unique_and_kebab_case() -> None:
    ids = [c.id for c in CHECKS]
    assert len(ids) == len(set(ids))
    assert all(i == i.lower() and " " not in i for i in ids)


def test_docs_table_matches_the_catalog() -> None:
    assert markdown_table() in DOCS.read_text(encoding="utf-8")
