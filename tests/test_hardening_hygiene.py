"""Hardening: build hygiene (caches, toolchains, leaked context, remote ADD, RUN chains, waste)."""

from __future__ import annotations

from imgscan.detect.hardening.hygiene import WASTE_THRESHOLD, HygieneAnalyzer
from imgscan.detect.hardening.imagespec import (
    HARDENED_CONFIG,
    D,
    Empty,
    F,
    Layer,
    O,
    S,
    W,
    base_layer,
    build_context,
    by_rule,
    hardened_steps,
)
from imgscan.model import Category, Finding, Severity

MiB = 1024 * 1024


def hyg(*extra: Layer | Empty) -> list[Finding]:
    ctx = build_context(hardened_steps(*extra), HARDENED_CONFIG)
    return list(HygieneAnalyzer().analyze(ctx))


def rules(found: list[Finding]) -> set[str]:
    return {f.rule for f in found}


def test_hardened_image_has_no_hygiene_findings() -> None:
    assert hyg() == []


def test_apt_lists_are_one_finding_with_total_size() -> None:
    lists = [
        F(f"/var/lib/apt/lists/mirror.example_{i}_Packages.lz4", size=3 * MiB) for i in range(4)
    ]
    found = hyg(Layer("RUN /bin/sh -c apt-get update && apt-get install -y curl", lists))
    [f] = by_rule(found, "cache-apt")
    assert f.path == "/var/lib/apt/lists" and f.layer == 3 and f.category is Category.FILE
    assert "12.0 MiB in 4 files" in f.message and f.extra["bytes"] == 12 * MiB
    assert f.severity is Severity.LOW


def test_apt_lists_removed_in_the_same_layer_are_fine() -> None:
    # the base ships /var/lib/apt/lists/lock, which is not a cache
    assert not by_rule(hyg(), "cache-apt")


def test_apt_archives_apk_pip_npm_yarn_go_caches() -> None:
    found = hyg(
        Layer(
            "RUN build",
            [
                F("/var/cache/apt/archives/curl_8.0_amd64.deb", size=400_000),
                F("/var/cache/apt/archives/lock"),
                F("/var/cache/apk/APKINDEX.0.tar.gz", size=1000),
                F("/root/.cache/pip/http-v2/a/b/c", size=2000),
                F("/home/app/.npm/_cacache/index-v5/aa/bb", size=3000),
                F("/usr/local/share/.cache/yarn/v6/pkg/x", size=4000),
                F("/root/.cache/go-build/00/abc-d", size=5000),
            ],
        ),
    )
    by = {f.rule: f for f in found if f.rule.startswith("cache-")}
    assert set(by) == {"cache-apt", "cache-apk", "cache-pip", "cache-npm", "cache-yarn", "cache-go"}
    assert by["cache-apt"].path == "/var/cache/apt" and by["cache-apt"].extra["files"] == 1
    assert by["cache-pip"].path == "/root/.cache/pip"
    assert by["cache-npm"].path == "/home/app/.npm"


def test_toolchain_binaries_and_dev_packages() -> None:
    status = (
        "Package: gcc-12\nStatus: install ok installed\n\n"
        "Package: libssl-dev\nStatus: install ok installed\n\n"
        "Package: gcc-12-base\nStatus: install ok installed\n\n"
        "Package: make\nStatus: deinstall ok config-files\n"
    )
    found = hyg(
        Layer(
            "RUN apt-get install -y build-essential libssl-dev",
            [
                F("/usr/bin/x86_64-linux-gnu-gcc-12", b"x", 0o755),
                S("/usr/bin/gcc", "gcc-12"),
                F("/var/lib/dpkg/status", status),
            ],
        )
    )
    [f] = by_rule(found, "toolchain-present")
    assert f.path == "/usr/bin/gcc" and f.layer == 3
    assert "gcc-12" in f.extra["packages"] and "libssl-dev" in f.extra["dev_packages"]
    assert "make" not in f.extra["packages"]  # removed, only config files left
    assert "gcc-12-base" not in f.extra["packages"]


def test_no_toolchain_in_runtime_image() -> None:
    assert not by_rule(
        hyg(Layer("RUN apt-get install -y libssl3", [F("/usr/lib/libssl.so.3", b"x")])),
        "toolchain-present",
    )


def test_git_dir_present_and_deleted() -> None:
    found = hyg(
        Layer(
            "COPY . /src # buildkit",
            [
                D("/src"),
                D("/src/.git"),
                F("/src/.git/config", "[core]\n"),
                F("/src/.git/HEAD", "ref: refs/heads/main\n"),
                F("/src/main.py", "print(1)\n"),
            ],
        ),
        Layer("COPY vendor /vendor # buildkit", [D("/vendor/lib/.git"), F("/vendor/lib/.git/x")]),
        Layer("RUN rm -rf /vendor/lib/.git", [W("/vendor/lib/.git")]),
    )
    by = {f.path: f for f in by_rule(found, "git-dir")}
    assert set(by) == {"/src/.git", "/vendor/lib/.git"}
    assert by["/src/.git"].layer == 3 and "2 files" in by["/src/.git"].message
    assert by["/src/.git"].severity is Severity.MEDIUM
    assert by["/vendor/lib/.git"].layer == 4
    assert "removed later by layer 5" in by["/vendor/lib/.git"].message


def test_dotenv_files() -> None:
    found = hyg(
        Layer(
            "COPY . /srv # buildkit",
            [
                D("/srv"),
                F("/srv/.env", "DEBUG=1\n"),
                F("/srv/.env.production", "X=1\n"),
                F("/srv/.env.example", "X=\n"),
                F("/srv/environment.py", ""),
            ],
        )
    )
    assert {f.path for f in by_rule(found, "copy-dotenv")} == {"/srv/.env", "/srv/.env.production"}


def test_node_modules_copied_vs_installed() -> None:
    copied = hyg(
        Layer(
            "COPY . /app # buildkit",
            [
                D("/app/node_modules"),
                D("/app/node_modules/left-pad"),
                F("/app/node_modules/left-pad/index.js", "module.exports=1\n"),
            ],
        )
    )
    [f] = by_rule(copied, "copy-node-modules")
    assert f.path == "/app/node_modules" and f.extra["entries"] == 3
    installed = hyg(
        Layer(
            "RUN /bin/sh -c npm ci", [D("/app/node_modules"), F("/app/node_modules/x/index.js", "")]
        )
    )
    assert not by_rule(installed, "copy-node-modules")


def test_add_remote_url_without_checksum() -> None:
    found = hyg(
        Layer("ADD https://example.invalid/tool.tar.gz /opt/ # buildkit", [D("/opt/tool")]),
        Layer("ADD --checksum=sha256:00 https://example.invalid/b.tgz /opt/ # buildkit"),
        Layer("ADD local.tar.gz /opt/ # buildkit"),
    )
    [f] = by_rule(found, "add-remote-url")
    assert f.category is Category.CONFIG and f.location == "history[4].created_by"
    assert f.layer == 3 and "https://example.invalid/tool.tar.gz" in f.message


def test_consecutive_run_layers() -> None:
    found = hyg(
        Layer("RUN /bin/sh -c apt-get update"),
        Layer("RUN /bin/sh -c apt-get install -y curl"),
        Empty("ENV A=1"),
        Layer("RUN /bin/sh -c rm -rf /var/lib/apt/lists/*"),
        Layer("COPY x /x # buildkit"),
        Layer("RUN /bin/sh -c true"),
    )
    [f] = by_rule(found, "run-consecutive")
    assert f.extra["layers"] == [3, 4, 5] and f.severity is Severity.INFO
    assert f.location == "history[4].created_by"


def test_single_run_layers_are_fine() -> None:
    assert not by_rule(hyg(Layer("RUN a"), Layer("COPY b /b"), Layer("RUN c")), "run-consecutive")


def test_base_runs_are_not_the_images_fault() -> None:
    steps = [
        base_layer(),
        Layer("RUN /bin/sh -c a"),
        Layer("RUN /bin/sh -c b"),
        Empty('CMD ["x"]'),
        Layer("COPY app /app # buildkit"),
    ]
    found = list(HygieneAnalyzer().analyze(build_context(steps, HARDENED_CONFIG)))
    assert not by_rule(found, "run-consecutive")


def test_wasted_bytes_per_layer_with_the_layers_that_hid_them() -> None:
    found = hyg(
        Layer(
            "RUN /bin/sh -c curl -o /tmp/sdk.tgz ... && tar -xf /tmp/sdk.tgz -C /opt",
            [
                F("/tmp/sdk.tgz", size=5 * MiB),
                D("/opt/sdk"),
                F("/opt/sdk/bin", size=2 * MiB),
            ],
        ),
        Layer("RUN /bin/sh -c rm /tmp/sdk.tgz", [W("/tmp/sdk.tgz")]),
        Layer(
            "RUN /bin/sh -c chown -R app /opt/sdk",
            [D("/opt/sdk", 0o755, 10001), F("/opt/sdk/bin", size=2 * MiB, uid=10001)],
        ),
        Layer("RUN /bin/sh -c touch /small", [F("/small", size=10)]),
        Layer("RUN /bin/sh -c rm /small", [W("/small")]),
    )
    [f] = by_rule(found, "wasted-bytes")
    assert f.layer == 3 and f.location == "history[4].created_by"
    assert f.extra == {
        "bytes": 7 * MiB,
        "deleted_bytes": 5 * MiB,
        "overwritten_bytes": 2 * MiB,
        "files": 2,
    }
    assert "/tmp/sdk.tgz (5.0 MiB, deleted by layer 4)" in f.message


def test_opaque_dir_wastes_lower_content() -> None:
    found = hyg(
        Layer(
            "COPY big /assets # buildkit", [D("/assets"), F("/assets/a.bin", size=WASTE_THRESHOLD)]
        ),
        Layer("COPY small /assets # buildkit", [O("/assets"), F("/assets/b.bin", size=10)]),
    )
    [f] = by_rule(found, "wasted-bytes")
    assert f.layer == 3 and f.extra["deleted_bytes"] == WASTE_THRESHOLD


def test_waste_inside_the_base_is_not_reported_but_base_bytes_hidden_by_own_layers_are() -> None:
    steps = [
        base_layer(F("/opt/tool.tgz", size=2 * MiB)),
        Layer("RUN rm /opt/tool.tgz", [W("/opt/tool.tgz")]),
        Empty('CMD ["bash"]'),
        Layer("RUN chown -R app /usr/bin", [F("/usr/bin/big", size=2 * MiB, uid=10001)]),
    ]
    app = Layer("COPY app /app # buildkit", [F("/app/x")])
    quiet = list(HygieneAnalyzer().analyze(build_context([*steps[:3], app], HARDENED_CONFIG)))
    assert not by_rule(quiet, "wasted-bytes")
    steps[0] = base_layer(F("/opt/tool.tgz", size=2 * MiB), F("/usr/bin/big", size=2 * MiB))
    found = list(HygieneAnalyzer().analyze(build_context(steps, HARDENED_CONFIG)))
    [f] = by_rule(found, "wasted-bytes")
    assert f.layer == 0 and f.extra["bytes"] == 2 * MiB  # only what layer 2 overwrote
    assert "overwritten by layer 2" in f.message and "tool.tgz" not in f.message


def test_empty_cache_placeholders_are_not_reported() -> None:
    found = hyg(Layer("RUN mkdir -p /root/.cache/pip", [F("/root/.cache/pip/.keep")]))
    assert not by_rule(found, "cache-pip")
