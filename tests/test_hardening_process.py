"""Hardening: processes (sshd, supervisors, init), port 22, HEALTHCHECK, tag and labels."""

from __future__ import annotations

from imgscan.detect.hardening.imagespec import (
    HARDENED_CONFIG,
    HARDENED_LABELS,
    HARDENED_REFERENCE,
    Empty,
    F,
    Layer,
    build_context,
    by_rule,
    hardened_steps,
)
from imgscan.detect.hardening.process import ProcessAnalyzer
from imgscan.detect.hardening.provenance import ProvenanceAnalyzer, split_reference
from imgscan.model import Category, Finding, Severity


def proc(extra: list[Layer | Empty] | None = None, **config: object) -> list[Finding]:
    ctx = build_context(hardened_steps(*(extra or [])), {**HARDENED_CONFIG, **config})
    return list(ProcessAnalyzer().analyze(ctx))


def rules(found: list[Finding]) -> set[str]:
    return {f.rule for f in found}


def test_sshd_as_command() -> None:
    for cmd in (
        ["/usr/sbin/sshd", "-D"],
        "service ssh start && tail -f /dev/null",
        ["tini", "--", "/usr/sbin/sshd", "-D", "-e"],
    ):
        found = proc(Entrypoint=None, Cmd=cmd)
        [f] = by_rule(found, "process-sshd")
        assert f.category is Category.CONFIG and f.location == "config.Cmd", cmd
        assert not by_rule(found, "process-init"), cmd


def test_sshd_started_by_supervisor_config() -> None:
    conf = "[program:sshd]\ncommand=/usr/sbin/sshd -D\n[program:app]\ncommand=/app/server\n"
    found = proc(
        [
            Layer(
                "COPY supervisord.conf /etc/supervisor/conf.d/app.conf # buildkit",
                [F("/etc/supervisor/conf.d/app.conf", conf)],
            )
        ],
        Entrypoint=["/usr/bin/supervisord", "-n"],
        Cmd=None,
    )
    assert {"process-sshd", "process-supervisor"} <= rules(found)
    [s] = by_rule(found, "process-sshd")
    assert "/etc/supervisor/conf.d/app.conf" in s.message
    assert s.location == "config.Entrypoint"


def test_sshd_installed_but_not_run() -> None:
    found = proc(
        [Layer("RUN apt-get install -y openssh-server", [F("/usr/sbin/sshd", b"x", 0o755)])]
    )
    [f] = by_rule(found, "sshd-installed")
    assert f.severity is Severity.LOW and f.path == "/usr/sbin/sshd"
    assert not by_rule(found, "process-sshd")


def test_full_init_systems() -> None:
    for cmd in (["/sbin/init"], ["/lib/systemd/systemd", "--system"], ["systemd"]):
        assert by_rule(proc(Entrypoint=cmd, Cmd=None), "process-init"), cmd


def test_s6_overlay_init_is_a_supervisor() -> None:
    found = proc(Entrypoint=["/init"], Cmd=None)
    assert rules(found) & {"process-supervisor", "process-init"} == {"process-supervisor"}


def test_minimal_inits_and_init_as_an_argument_are_fine() -> None:
    for ep, cmd in (
        (["tini", "--"], ["/app/server"]),
        (["dumb-init"], ["/app/server"]),
        (["python", "manage.py"], ["init"]),
        (None, "exec /app/server --init"),
    ):
        found = proc(Entrypoint=ep, Cmd=cmd)
        assert not rules(found) & {"process-init", "process-supervisor", "process-sshd"}, cmd


def test_port_22_exposed() -> None:
    found = proc(
        [Empty("EXPOSE map[22/tcp:{} 8080/tcp:{}]")], ExposedPorts={"22/tcp": {}, "8080/tcp": {}}
    )
    [f] = by_rule(found, "port-22-exposed")
    assert f.location == "config.ExposedPorts" and f.created_by and "22/tcp" in f.created_by
    assert not by_rule(proc(ExposedPorts={"2222/tcp": {}, "22/udp": {}}), "port-22-exposed")


def test_healthcheck_missing_or_disabled() -> None:
    [f] = by_rule(proc(Healthcheck=None), "healthcheck-missing")
    assert f.location == "config.Healthcheck" and f.severity is Severity.LOW
    [g] = by_rule(proc(Healthcheck={"Test": ["NONE"]}), "healthcheck-missing")
    assert "disabled" in g.message
    assert not by_rule(proc(), "healthcheck-missing")


# -- provenance -----------------------------------------------------------------------------------
def prov(reference: str, source_kind: str = "registry", **config: object) -> list[Finding]:
    ctx = build_context(
        hardened_steps(),
        {**HARDENED_CONFIG, **config},
        reference=reference,
        source_kind=source_kind,
    )
    return list(ProvenanceAnalyzer().analyze(ctx))


def test_mutable_tags() -> None:
    for ref in (
        "nginx",
        "nginx:latest",
        "registry.example.invalid:5000/team/app:stable",
        "docker://app:prod",
    ):
        [f] = by_rule(prov(ref), "tag-mutable")
        assert f.location == "reference" and f.severity is Severity.MEDIUM, ref


def test_versioned_tag_is_unpinned_at_low() -> None:
    found = prov("registry.example.invalid:5000/app:1.4.2")
    assert rules(found) == {"tag-unpinned"}
    assert found[0].severity is Severity.LOW and "1.4.2" in found[0].message


def test_digest_references_and_archives_are_fine() -> None:
    assert not prov(HARDENED_REFERENCE)
    assert not prov("app:latest@sha256:" + "cd" * 32)
    assert not prov("/tmp/image.tar", source_kind="archive")
    assert not prov("image.tar", source_kind="docker-archive")
    assert not prov("layout", source_kind="oci-layout")
    assert not prov("oci:/tmp/layout", source_kind="oci")
    assert not prov("app.tar", source_kind="unknown")
    assert {f.rule for f in prov("app", source_kind="docker-engine")} == {"tag-mutable"}


def test_split_reference() -> None:
    assert split_reference("localhost:5000/a/b") == ("localhost:5000/a/b", None, None)
    assert split_reference("localhost:5000/a/b:v1") == ("localhost:5000/a/b", "v1", None)
    assert split_reference("a@sha256:00") == ("a", None, "sha256:00")


def test_missing_labels_one_finding_each() -> None:
    found = prov(
        HARDENED_REFERENCE,
        Labels={"org.opencontainers.image.source": "x", "org.opencontainers.image.created": ""},
    )
    assert rules(found) == {"label-missing-revision", "label-missing-created"}
    [c] = by_rule(found, "label-missing-created")
    assert "empty" in c.message and c.location == "config.Labels"
    assert rules(prov(HARDENED_REFERENCE, Labels=None)) == {
        "label-missing-revision",
        "label-missing-source",
        "label-missing-created",
    }
    assert not prov(HARDENED_REFERENCE, Labels=dict(HARDENED_LABELS))
