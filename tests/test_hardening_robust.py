"""Hardening analyzers never raise, whatever the config, history and layers hold."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imgscan.detect.hardening.catalog import BY_ID
from imgscan.detect.hardening.imagespec import (
    D,
    Empty,
    Entry,
    F,
    Layer,
    O,
    S,
    W,
    analyze_all,
    build_context,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
config_keys = st.sampled_from(
    ["User", "Env", "Cmd", "Entrypoint", "ExposedPorts", "Volumes", "Healthcheck", "Labels"]
)
names = st.sampled_from(
    [
        "etc",
        "passwd",
        "shadow",
        "group",
        "usr",
        "bin",
        "app",
        ".git",
        ".env",
        "node_modules",
        "tmp",
        "sudo",
        "sshd",
        "lists",
        "var",
        "cache",
        "pip",
        ".cache",
        "gcc",
        "sudoers.d",
    ]
)
paths = st.lists(names, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts))
account_text = st.lists(
    st.lists(
        st.sampled_from(["root", "x", "", "0", "1000", "/bin/sh", "!", "$6$a$b", "app"]), max_size=8
    ).map(":".join),
    max_size=4,
).map("\n".join)


@st.composite
def entries(draw: Any) -> Entry:
    path = draw(paths)
    kind = draw(st.sampled_from(["file", "dir", "symlink", "whiteout", "opaque"]))
    mode = draw(st.integers(0, 0o7777))
    uid = draw(st.sampled_from([0, 1000, 10001]))
    if kind == "file":
        content = draw(account_text) if path.startswith("/etc") else ""
        caps = draw(st.sampled_from([None, b"", b"\x00\x00\x00\x02" + b"\xff" * 16, b"\x01"]))
        return F(
            path,
            content,
            mode,
            uid,
            uid,
            size=draw(st.integers(0, 3 << 20)),
            xattrs={"security.capability": caps} if caps is not None else None,
        )
    if kind == "dir":
        return D(path, mode, uid, uid)
    if kind == "symlink":
        return S(path, draw(st.sampled_from(["..", "/", "usr/bin", "../../x", path])))
    return W(path) if kind == "whiteout" else O(path)


steps = st.lists(
    st.one_of(
        st.builds(
            Layer,
            st.text(max_size=30)
            | st.sampled_from(
                [
                    "RUN a",
                    "COPY . /app # buildkit",
                    "/bin/sh -c #(nop) ADD file:x in / ",
                    "ADD https://x.invalid/a /",
                    "/bin/busybox chmod 777 /app",
                ]
            ),
            st.lists(entries(), max_size=6),
        ),
        st.builds(Empty, st.sampled_from(['CMD ["sh"]', "USER root", "/bin/sh -c #(nop)  CMD []"])),
    ),
    max_size=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=steps,
    config=st.dictionaries(config_keys, json_values, max_size=8),
    reference=st.text(max_size=20),
)
def test_analyzers_never_raise(
    steps: list[Layer | Empty], config: dict[str, Any], reference: str
) -> None:
    ctx = build_context(steps, config, reference=reference, source_kind="registry")
    for f in analyze_all(ctx):
        assert f.rule in BY_ID and f.message and len(f.fingerprint) == 32
