"""Hardening: world-writable paths, paths the runtime user can write, writable PATH dirs."""

from __future__ import annotations

from imgscan.detect.hardening.catalog import MAX_PER_RULE
from imgscan.detect.hardening.fs import FilesystemAnalyzer
from imgscan.detect.hardening.imagespec import (
    HARDENED_CONFIG,
    D,
    F,
    Layer,
    W,
    base_steps,
    build_context,
    by_rule,
    hardened_steps,
)
from imgscan.model import Category, Finding, Severity


def fs_findings(extra_layers: list[Layer], **config: object) -> list[Finding]:
    cfg = {**HARDENED_CONFIG, **config}
    ctx = build_context(hardened_steps(*extra_layers), cfg)
    return list(FilesystemAnalyzer().analyze(ctx))


def test_world_writable_dir_reports_the_layer_that_made_it_so() -> None:
    found = fs_findings(
        [
            Layer("RUN chmod 777 /app", [D("/app", 0o777)]),
            Layer("COPY config.yml /app/ # buildkit", [D("/app", 0o777), F("/app/config.yml")]),
        ]
    )
    [f] = by_rule(found, "fs-world-writable")
    assert f.category is Category.FILE and f.path == "/app"
    assert f.layer == 3  # the chmod, not the later COPY that re-wrote the directory entry
    assert "0777" in f.message and "chmod 777 /app" in f.message
    assert f.severity is Severity.MEDIUM


def test_world_writable_file() -> None:
    found = fs_findings([Layer("RUN chmod 666 /app/server", [F("/app/server", b"x", 0o666)])])
    [f] = by_rule(found, "fs-world-writable")
    assert f.path == "/app/server" and "file" in f.message


def test_sticky_world_writable_dirs_and_symlinks_are_fine() -> None:
    found = fs_findings([Layer("RUN mkdir -m 1777 /scratch", [D("/scratch", 0o1777)])])
    assert not by_rule(found, "fs-world-writable")  # /tmp, /var/tmp, /run/lock too


def test_world_writable_tree_is_one_finding_with_a_count() -> None:
    entries = [D("/srv", 0o777)] + [F(f"/srv/f{i}", b"", 0o666) for i in range(5)]
    [f] = by_rule(fs_findings([Layer("RUN chmod -R 777 /srv", entries)]), "fs-world-writable")
    assert f.path == "/srv" and "5 more" in f.message
    assert f.extra["below"] == 5


def test_many_world_writable_paths_are_capped_with_a_summary() -> None:
    n = MAX_PER_RULE + 7
    entries = [F(f"/opt/f{i:03d}", b"", 0o666) for i in range(n)]
    found = by_rule(
        fs_findings([Layer("RUN chmod 666 /opt/*", [D("/opt"), *entries])]), "fs-world-writable"
    )
    assert len(found) == MAX_PER_RULE + 1
    summary = found[-1]
    assert summary.path is None and "7 more" in summary.message
    assert summary.extra["more"] == 7


def test_world_writable_that_was_deleted_is_not_reported() -> None:
    found = fs_findings(
        [
            Layer("RUN touch /app/x && chmod 666 /app/x", [F("/app/x", b"", 0o666)]),
            Layer("RUN rm /app/x", [W("/app/x")]),
        ]
    )
    assert not by_rule(found, "fs-world-writable")


def test_path_owned_by_runtime_user_outside_volumes() -> None:
    found = fs_findings(
        [
            Layer(
                "COPY --chown=10001 . /app # buildkit",
                [
                    D("/app", 0o755, 10001),
                    F("/app/server", b"x", 0o755, 10001),
                    F("/app/cfg", b"x", 0o644, 10001),
                ],
            ),
        ]
    )
    [f] = by_rule(found, "fs-writable-by-runtime-user")
    assert f.path == "/app" and f.layer == 3
    assert "owner" in f.message and "2 more" in f.message
    assert "/data" in f.message  # says which volumes exist
    assert f.severity is Severity.MEDIUM


def test_group_writable_path_via_supplementary_group() -> None:
    group = "root:x:0:\nshadow:x:42:\napp:x:10001:\nstaff:x:50:app\n"
    found = fs_findings(
        [
            Layer("RUN usermod -aG staff app", [F("/etc/group", group)]),
            Layer("RUN mkdir -m 775 /cache && chgrp staff /cache", [D("/cache", 0o775, 0, 50)]),
        ]
    )
    [f] = by_rule(found, "fs-writable-by-runtime-user")
    assert f.path == "/cache" and f.extra["reason"] == "group" and f.layer == 4


def test_writable_paths_under_volumes_and_tmp_are_fine() -> None:
    found = fs_findings(
        [
            Layer(
                "RUN mkdir -p /data/db /tmp/x /run/app",
                [
                    D("/data/db", 0o700, 10001),
                    D("/tmp/x", 0o700, 10001),
                    D("/run/app", 0o700, 10001),
                ],
            ),
        ]
    )
    assert not by_rule(found, "fs-writable-by-runtime-user")


def test_without_the_volume_the_data_dir_is_reported() -> None:
    [f] = by_rule(fs_findings([], Volumes={}), "fs-writable-by-runtime-user")
    assert f.path == "/data" and "no VOLUME declared" in f.message


def test_runtime_user_check_is_skipped_for_root() -> None:
    found = fs_findings([Layer("RUN mkdir /x", [D("/x", 0o755, 0)])], User="")
    assert not by_rule(found, "fs-writable-by-runtime-user")


def test_world_writable_path_dir_through_a_symlink() -> None:
    found = fs_findings([Layer("RUN chmod 777 /usr/bin", [D("/usr/bin", 0o777)])])
    [f] = by_rule(found, "fs-writable-path-dir")
    assert f.path == "/usr/bin" and f.layer == 3
    assert f.severity is Severity.HIGH
    assert "anyone" in f.message


def test_path_dir_owned_by_runtime_user() -> None:
    found = fs_findings(
        [
            Layer(
                "RUN mkdir /opt/bin && chown app /opt/bin", [D("/opt"), D("/opt/bin", 0o755, 10001)]
            )
        ],
        Env=["PATH=/opt/bin:/usr/bin:/bin"],
    )
    [f] = by_rule(found, "fs-writable-path-dir")
    assert f.path == "/opt/bin" and "runtime user" in f.message


def test_root_owned_path_dirs_are_fine() -> None:
    ctx = build_context(base_steps(), {"User": "65534"})
    found = list(FilesystemAnalyzer().analyze(ctx))
    assert not by_rule(found, "fs-writable-path-dir")
    assert not by_rule(found, "fs-world-writable")
    assert not by_rule(found, "fs-writable-by-runtime-user")


def test_permission_classes_follow_posix_order() -> None:
    found = fs_findings(
        [
            Layer(
                "RUN mkdir /x /y && chmod 0577 /x && chmod 0757 /y",
                [D("/x", 0o577, 10001), D("/y", 0o757, 0, 10001)],
            )
        ]
    )
    # /x: owner class matches and has no write bit; /y: group class matches, no write bit
    assert not by_rule(found, "fs-writable-by-runtime-user")
    assert {f.path for f in by_rule(found, "fs-world-writable")} == {"/x", "/y"}


def test_world_writable_is_not_repeated_as_runtime_writable_but_sticky_dirs_are() -> None:
    found = fs_findings(
        [Layer("RUN mkdir -m 777 /a && mkdir -m 1777 /b", [D("/a", 0o777), D("/b", 0o1777)])]
    )
    assert [f.path for f in by_rule(found, "fs-world-writable")] == ["/a"]
    assert [f.path for f in by_rule(found, "fs-writable-by-runtime-user")] == ["/b"]
