"""Hardening: the runtime user and the account database."""

from __future__ import annotations

from imgscan.detect.hardening.imagespec import (
    APP_PASSWD,
    APP_SHADOW,
    BASE_PASSWD,
    BASE_SHADOW,
    Empty,
    F,
    Layer,
    analyze_all,
    base_steps,
    build_context,
    by_rule,
    hardened_context,
    hardened_steps,
)
from imgscan.detect.hardening.user import UserAnalyzer
from imgscan.model import Category, Severity


def user_findings(config: dict[str, object], steps: list[Layer | Empty] | None = None) -> list:
    ctx = build_context(steps if steps is not None else hardened_steps(), config)
    return list(UserAnalyzer().analyze(ctx))


def test_no_user_is_reported_as_running_as_root() -> None:
    found = user_findings({})
    [f] = by_rule(found, "user-missing")
    assert f.category is Category.CONFIG
    assert f.location == "config.User"
    assert f.severity is Severity.HIGH
    assert "root" in f.message and f.remediation
    assert not by_rule(found, "user-root")


def test_empty_user_string_counts_as_missing() -> None:
    assert by_rule(user_findings({"User": ""}), "user-missing")


def test_explicit_root_is_user_root_with_the_user_instruction() -> None:
    steps = [*hardened_steps(), Empty("USER root")]
    for spec in ("root", "0", "0:0", "root:root"):
        found = user_findings({"User": spec}, steps)
        [f] = by_rule(found, "user-root")
        assert f.created_by == "USER root"
        assert repr(spec) in f.message
        assert not by_rule(found, "user-missing")


def test_named_user_with_uid_zero_is_root() -> None:
    passwd = APP_PASSWD + "toor:x:0:0::/root:/bin/sh\n"
    steps = [*base_steps(), Layer("RUN useradd -o -u 0 toor", [F("/etc/passwd", passwd)])]
    [f] = by_rule(user_findings({"User": "toor"}, steps), "user-root")
    assert "UID 0" in f.message


def test_non_root_users_are_not_root() -> None:
    for spec in ("10001", "app", "app:app", "10001:10001", "4242"):
        found = user_findings({"User": spec})
        assert not by_rule(found, "user-root"), spec
        assert not by_rule(found, "user-missing"), spec
        assert not by_rule(found, "user-not-in-passwd"), spec


def test_named_user_missing_from_passwd() -> None:
    [f] = by_rule(user_findings({"User": "web"}), "user-not-in-passwd")
    assert "'web'" in f.message and "/etc/passwd" in f.message
    assert f.severity is Severity.MEDIUM


def test_named_user_in_image_without_passwd() -> None:
    steps = [Layer("COPY server /server # buildkit", [F("/server", b"x", 0o755)])]
    [f] = by_rule(user_findings({"User": "app"}, steps), "user-not-in-passwd")
    assert "no /etc/passwd" in f.message


def test_numeric_uid_needs_no_passwd_entry() -> None:
    steps = [Layer("COPY server /server # buildkit", [F("/server", b"x", 0o755)])]
    assert not user_findings({"User": "65532:65532"}, steps)


def test_named_group_missing_from_group_file() -> None:
    found = user_findings({"User": "app:web"})
    [f] = by_rule(found, "user-group-missing")
    assert "'web'" in f.message
    assert not by_rule(user_findings({"User": "app:app"}), "user-group-missing")
    assert not by_rule(user_findings({"User": "app:4242"}), "user-group-missing")


def test_login_shell_with_password_hash_attributed_to_the_layer_that_set_it() -> None:
    hashed = "$6$saltsalt$" + "A" * 86  # obviously fake SHA-512 crypt string
    passwd = APP_PASSWD + "dev:x:1000:1000::/home/dev:/bin/bash\n"
    shadow = APP_SHADOW + f"dev:{hashed}:19801:0:99999:7:::\n"
    steps = hardened_steps(
        Layer(
            "RUN useradd -m -s /bin/bash dev && echo dev:dev | chpasswd",
            [F("/etc/passwd", passwd), F("/etc/shadow", shadow, 0o640, 0, 42)],
        ),
        Layer(
            "RUN apt-get install -y curl",
            [
                F("/etc/passwd", passwd),
                F("/etc/shadow", shadow, 0o640, 0, 42),
                F("/usr/bin/curl", b"x", 0o755),
            ],
        ),
    )
    [f] = by_rule(user_findings({"User": "10001"}, steps), "user-login-shell-password")
    assert f.category is Category.FILE and f.path == "/etc/shadow"
    assert f.layer == 3  # the chpasswd layer, not the later rewrite
    assert "'dev'" in f.message and "/bin/bash" in f.message
    assert hashed not in f.message


def test_locked_or_nologin_accounts_are_fine() -> None:
    hashed = "$6$saltsalt$" + "B" * 86
    passwd = APP_PASSWD + "svc:x:1001:1001::/srv:/usr/sbin/nologin\nlck:x:1002:1002::/h:/bin/sh\n"
    shadow = APP_SHADOW + f"svc:{hashed}:1::::::\nlck:!{hashed}:1::::::\n"
    steps = [
        *base_steps(),
        Layer("RUN useradd svc lck", [F("/etc/passwd", passwd), F("/etc/shadow", shadow)]),
    ]
    assert not by_rule(user_findings({"User": "svc"}, steps), "user-login-shell-password")


def test_empty_password_in_shadow_is_critical_for_root() -> None:
    shadow = "root::19800:0:99999:7:::\n" + BASE_SHADOW.split("\n", 1)[1]
    steps = [*base_steps(), Layer("RUN passwd -d root", [F("/etc/shadow", shadow, 0o640, 0, 42)])]
    [f] = by_rule(user_findings({"User": "10001"}, steps), "shadow-empty-password")
    assert f.severity is Severity.CRITICAL
    assert f.path == "/etc/shadow" and f.layer == 1
    assert "'root'" in f.message


def test_empty_password_field_in_passwd() -> None:
    passwd = BASE_PASSWD + "guest::1003:1003::/tmp:/bin/sh\n"
    steps = [*base_steps(), Layer("RUN echo guest >> /etc/passwd", [F("/etc/passwd", passwd)])]
    [f] = by_rule(user_findings({"User": "10001"}, steps), "shadow-empty-password")
    assert f.path == "/etc/passwd" and f.severity is Severity.HIGH


def test_locked_shadow_entries_are_not_empty_passwords() -> None:
    assert not by_rule(user_findings({"User": "10001"}), "shadow-empty-password")


def test_hardened_image_has_no_user_findings() -> None:
    assert not [f for f in analyze_all(hardened_context()) if f.rule.startswith(("user", "shadow"))]
