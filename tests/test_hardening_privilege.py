"""Hardening: setuid/setgid (own layers vs base), file capabilities, sudo; base detection."""

from __future__ import annotations

import dataclasses
import struct

from imgscan.detect.hardening import facts
from imgscan.detect.hardening.imagespec import (
    BASE_ADD,
    HARDENED_CONFIG,
    Empty,
    F,
    Layer,
    base_layer,
    base_steps,
    build_context,
    by_rule,
    hardened_steps,
)
from imgscan.detect.hardening.privilege import PrivilegeAnalyzer, decode_capabilities
from imgscan.model import Finding, Severity


def priv(
    extra_layers: list[Layer | Empty], steps: list[Layer | Empty] | None = None
) -> list[Finding]:
    ctx = build_context(
        [*steps, *extra_layers] if steps else hardened_steps(*extra_layers), HARDENED_CONFIG
    )
    return list(PrivilegeAnalyzer().analyze(ctx))


def cap_xattr(*bits: int, effective: bool = True) -> bytes:
    permitted = sum(1 << b for b in bits)
    magic = 0x02000000 | (1 if effective else 0)
    return struct.pack("<IIIII", magic, permitted & 0xFFFFFFFF, 0, permitted >> 32, 0)


def test_base_setuid_is_reported_as_base_at_low() -> None:
    found = priv([])
    base = {f.path: f for f in by_rule(found, "setuid-base")}
    assert set(base) == {"/usr/bin/su", "/usr/bin/passwd", "/usr/bin/chage"}
    assert all(f.severity is Severity.LOW and f.layer == 0 for f in base.values())
    assert "package login" in base["/usr/bin/su"].message  # dpkg info/login.list, /bin/su alias
    assert not by_rule(found, "setuid-added")


def test_setuid_added_by_own_layer_is_high() -> None:
    found = priv(
        [
            Layer(
                "COPY helper /usr/local/bin/helper # buildkit",
                [F("/usr/local/bin/helper", b"x", 0o4755)],
            )
        ]
    )
    [f] = by_rule(found, "setuid-added")
    assert f.path == "/usr/local/bin/helper" and f.layer == 3
    assert f.severity is Severity.HIGH and "added by layer 3" in f.message


def test_setgid_only_or_non_root_owner_is_medium() -> None:
    found = priv([Layer("RUN chmod g+s /app/server", [F("/app/server", b"x", 0o2755)])])
    [f] = by_rule(found, "setuid-added")
    assert f.severity is Severity.MEDIUM and "setgid" in f.message
    assert "changed by layer 3" in f.message and "from mode 0755" in f.message


def test_chmod_u_s_on_a_base_binary_is_a_change_by_the_image() -> None:
    found = priv([Layer("RUN chmod u+s /usr/bin/dash", [F("/usr/bin/dash", b"x", 0o4755)])])
    [f] = by_rule(found, "setuid-added")
    assert f.path == "/usr/bin/dash" and "from mode 0755" in f.message


def test_package_upgrade_rewriting_a_base_setuid_binary_stays_base() -> None:
    found = priv([Layer("RUN apt-get upgrade -y", [F("/usr/bin/su", b"new su", 0o4755)])])
    assert not by_rule(found, "setuid-added")
    [f] = [f for f in by_rule(found, "setuid-base") if f.path == "/usr/bin/su"]
    assert f.layer == 0


def test_setuid_removed_by_own_layer_is_not_reported() -> None:
    found = priv([Layer("RUN chmod a-s /usr/bin/su", [F("/usr/bin/su", b"x", 0o755)])])
    assert "/usr/bin/su" not in {f.path for f in found}


def test_capability_added_by_own_layer_names_the_capabilities() -> None:
    xattr = {"security.capability": cap_xattr(10)}
    found = priv(
        [
            Layer(
                "RUN setcap cap_net_bind_service=+ep /app/server",
                [F("/app/server", b"x", 0o755, xattrs=xattr)],
            )
        ]
    )
    [f] = by_rule(found, "file-capability")
    assert f.severity is Severity.MEDIUM and f.layer == 3
    assert "cap_net_bind_service+ep" in f.message


def test_capability_in_base_is_low() -> None:
    xattr = {"security.capability": cap_xattr(13)}
    steps = [base_layer(F("/usr/bin/ping", b"x", 0o755, xattrs=xattr)), Empty('CMD ["bash"]')]
    [f] = by_rule(priv([], steps), "file-capability")
    assert f.severity is Severity.LOW and "cap_net_raw" in f.message


def test_decode_capabilities_versions() -> None:
    assert decode_capabilities(cap_xattr(0, 40)) == (["cap_chown", "cap_checkpoint_restore"], True)
    v1 = struct.pack("<III", 0x01000000, 1 << 21, 0)
    assert decode_capabilities(v1) == (["cap_sys_admin"], False)
    assert decode_capabilities(b"\x00") == ([], False)


def test_sudo_installed_and_nopasswd() -> None:
    found = priv(
        [
            Layer(
                "RUN apt-get install -y sudo && echo 'app ALL=(ALL) NOPASSWD:ALL' > "
                "/etc/sudoers.d/app",
                [
                    F("/usr/bin/sudo", b"x", 0o4755),
                    F("/etc/sudoers", "root ALL=(ALL:ALL) ALL\n# %sudo NOPASSWD: ALL\n", 0o440),
                    F("/etc/sudoers.d/app", "app ALL=(ALL) NOPASSWD:ALL\n", 0o440),
                ],
            )
        ]
    )
    [s] = by_rule(found, "sudo-installed")
    assert s.path == "/usr/bin/sudo" and s.layer == 3
    [n] = by_rule(found, "sudo-nopasswd")
    assert n.path == "/etc/sudoers.d/app" and n.severity is Severity.HIGH
    assert by_rule(found, "setuid-added")  # sudo is setuid root too


def test_sudoers_without_sudo_binary_is_fine() -> None:
    found = priv([Layer("COPY sudoers /etc/sudoers", [F("/etc/sudoers", "x ALL=NOPASSWD: ALL\n")])])
    assert not by_rule(found, "sudo-installed") and not by_rule(found, "sudo-nopasswd")


# -- base layer heuristic -------------------------------------------------------------------------
def _base_count(steps: list[Layer | Empty]) -> int:
    return facts.base_layer_count(build_context(steps, {}))


def test_base_ends_at_the_last_cmd_followed_by_layers() -> None:
    steps = [
        *base_steps(),
        Layer("RUN /bin/sh -c apt-get install python3"),
        Layer("RUN /bin/sh -c pip install x"),
        Empty('CMD ["python3"]'),
        Layer("COPY . /app # buildkit"),
        Empty('CMD ["python3", "/app/main.py"]'),
    ]
    assert _base_count(steps) == 3


def test_without_a_marker_the_rootfs_imports_are_the_base() -> None:
    steps = [Layer(BASE_ADD), Layer("COPY rootfs.tar.gz / # buildkit"), Layer("RUN make")]
    assert _base_count(steps) == 2


def test_scratch_image_has_no_base() -> None:
    assert _base_count([Layer("COPY server /server # buildkit")]) == 0


def test_non_dockerfile_history_counts_as_base() -> None:
    ctx = build_context([Layer(""), Layer("bazel build //base:image"), Layer("RUN x")], {})
    assert facts.base_layer_count(ctx) == 2


def test_without_any_history_only_the_first_layer_is_base() -> None:
    ctx = build_context([Layer("a"), Layer("b"), Layer("c")], {})
    no_history = dataclasses.replace(
        ctx, image=dataclasses.replace(ctx.image, config={"config": {}, "history": []})
    )
    assert facts.base_layer_count(no_history) == 1


def test_parse_instruction_forms() -> None:
    assert facts.parse_instruction("/bin/sh -c #(nop) ADD file:abc in / ") == (
        "ADD",
        "file:abc in /",
    )
    assert facts.parse_instruction("/bin/sh -c apt-get update") == ("RUN", "apt-get update")
    assert facts.parse_instruction("|2 A=1 B=2 /bin/sh -c make") == ("RUN", "make")
    assert facts.parse_instruction("RUN /bin/sh -c make # buildkit") == ("RUN", "/bin/sh -c make")
    assert facts.parse_instruction("COPY . . # buildkit") == ("COPY", ". .")
    assert facts.parse_instruction("bazel build //x") == (None, "bazel build //x")


def test_classic_exec_form_run_is_a_run() -> None:
    ctx = build_context(
        [
            Layer("/bin/sh -c #(nop) COPY file:73e2b2d4 in /bin/busybox "),
            Layer("/bin/busybox chmod 777 /app"),
            Empty('/bin/sh -c #(nop)  CMD ["/bin/busybox" "sh"]'),
        ],
        {},
    )
    steps = facts.history(ctx)
    assert [s.keyword for s in steps] == ["COPY", "RUN", "CMD"]
    assert steps[1].args == "/bin/busybox chmod 777 /app"
    bazel = build_context([Layer("bazel build //base"), Layer("COPY x /x # buildkit")], {})
    assert [s.keyword for s in facts.history(bazel)] == [None, "COPY"]
