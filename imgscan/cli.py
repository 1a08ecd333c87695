"""Command line: click only. Flags -> options, run, render, exit via the gate.

Exit codes: 0 clean, 1 policy failed, 2 usage error, 3 scan error.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import click

from imgscan import __version__
from imgscan.errors import ConfigError, ImgscanError
from imgscan.layers.limits import WalkLimits
from imgscan.model import Severity
from imgscan.sources.base import SourceOptions

EXIT_OK, EXIT_POLICY, EXIT_USAGE, EXIT_SCAN = 0, 1, 2, 3


class _Progress:
    """A one-line progress indicator on stderr, only on a TTY and only after a moment."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.t0 = time.monotonic()
        self.last = 0.0
        self.shown = False

    def __call__(self, layer: int, total: int, nbytes: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.t0 < 0.5 or now - self.last < 0.1:
            return
        self.last = now
        self.shown = True
        sys.stderr.write(f"\r\x1b[Kscanning layer {layer + 1}/{total}  {nbytes / 1e6:8.1f} MB")
        sys.stderr.flush()

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def _die(exc: ImgscanError) -> None:
    """Print ``imgscan: error: <first line>`` and exit with the error's code."""
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    click.echo(f"imgscan: error: {msg}", err=True)
    sys.exit(exc.exit_code)


@contextmanager
def _errors(debug: bool = False) -> Iterator[None]:
    """Turn ImgscanError into a one-line message and its exit code; never a traceback."""
    try:
        yield
    except ImgscanError as exc:
        _die(exc)
    except KeyboardInterrupt:
        click.echo("imgscan: interrupted", err=True)
        sys.exit(130)
    except (click.exceptions.Exit, click.ClickException, SystemExit):
        raise
    except Exception as exc:
        if debug or os.environ.get("IMGSCAN_DEBUG"):
            raise
        click.echo(f"imgscan: internal error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(EXIT_SCAN)


@contextmanager
def _out(path: str | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        return
    try:
        f = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ConfigError(f"--output {path}: cannot write ({exc.strerror})") from None
    with f:
        yield f


def _size_arg(text: str | None) -> int | None:
    if text is None:
        return None
    units = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
    t = text.strip().lower().rstrip("ib").rstrip("b") if text else text
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise click.BadParameter(f"not a size: {text!r} (e.g. 512M, 4G)") from None


def common_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by every command that opens an image."""
    f = click.option(
        "--platform",
        default="linux/amd64",
        show_default=True,
        help="Platform to pick from a multi-platform index.",
    )(f)
    f = click.option(
        "--docker-host",
        envvar="DOCKER_HOST",
        default=None,
        help="Docker engine address (default: $DOCKER_HOST).",
    )(f)
    f = click.option(
        "--source",
        "source_kind",
        type=click.Choice(["archive", "oci", "engine", "registry"]),
        default=None,
        help="Force where IMAGE comes from.",
    )(f)
    f = click.option(
        "--insecure",
        is_flag=True,
        help="Registry: allow plain HTTP / unverified TLS (localhost registries).",
    )(f)
    f = click.option(
        "--ca-cert",
        default=None,
        metavar="FILE",
        help="Registry: CA bundle that signed the registry's TLS certificate.",
    )(f)
    f = click.option(
        "--username",
        default=None,
        help="Registry user; the password is read from --password-stdin.",
    )(f)
    f = click.option(
        "--password-stdin", is_flag=True, help="Registry: read the password from standard input."
    )(f)
    f = click.option(
        "--all",
        "include_package_files",
        is_flag=True,
        help="Report vendor (package-owned, unmodified) files at full severity "
        "and run every detector in vendor trees too.",
    )(f)
    f = click.option(
        "--max-layer-size",
        default=None,
        metavar="SIZE",
        help="Cap on uncompressed bytes per layer (bomb guard), e.g. 64G.",
    )(f)
    f = click.option(
        "--max-file-size",
        default=None,
        metavar="SIZE",
        help="Content scanned per file; larger files are reported, e.g. 4G.",
    )(f)
    f = click.option("--quiet", "-q", is_flag=True, help="No progress output on stderr.")(f)
    f = click.option(
        "--jobs",
        "-j",
        type=click.IntRange(0, 64),
        default=0,
        help="Worker processes for layers (0 = automatic).",
    )(f)
    f = click.option(
        "--cache",
        "cache_path",
        default=None,
        envvar="IMGSCAN_CACHE",
        metavar="FILE",
        help="SQLite per-layer verdict cache (skips known layers).",
    )(f)
    return f


def _scan_options(
    platform: str,
    docker_host: str | None,
    source_kind: str | None,
    max_layer_size: str | None,
    max_file_size: str | None,
    jobs: int = 0,
    cache_path: str | None = None,
    insecure: bool = False,
    ca_cert: str | None = None,
    username: str | None = None,
    password_stdin: bool = False,
    **extra: Any,
) -> Any:
    from imgscan.scan import ScanOptions

    creds = None
    if username or password_stdin:
        from imgscan.sources.auth import explicit_credentials

        password = sys.stdin.readline() if password_stdin else None
        creds = explicit_credentials(username, password)
    extra.setdefault("registry", {"creds": creds, "insecure": insecure, "ca_cert": ca_cert})

    limits = WalkLimits()
    if (v := _size_arg(max_layer_size)) is not None:
        limits = WalkLimits(max_layer_bytes=v, max_file_bytes=limits.max_file_bytes)
    if (v := _size_arg(max_file_size)) is not None:
        limits = WalkLimits(max_layer_bytes=limits.max_layer_bytes, max_file_bytes=v)
    return ScanOptions(
        source=SourceOptions(platform=platform, docker_host=docker_host),
        limits=limits,
        source_kind=source_kind,
        jobs=jobs,
        cache_path=cache_path,
        **extra,
    )


def _tune_malloc() -> None:
    """Keep big buffers out of the heap, and the heap from thrashing (glibc only).

    glibc raises its mmap threshold after the first large free; from then on the 8 MB
    chunk buffers come from the heap, fragment it, and RSS creeps up over a long scan.
    A fixed threshold (4 MiB) keeps those buffers mmapped and returned on free. Fixing
    it also fixes the trim threshold at 128 KiB, and the heap would then be given back
    and faulted in again around every 1 MiB tar block (a third of the scan's system
    time): keep up to 32 MiB of free heap instead.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_mmap_threshold, m_trim_threshold = -3, -1
        libc.mallopt(m_mmap_threshold, 4 << 20)
        libc.mallopt(m_trim_threshold, 32 << 20)
    except (OSError, AttributeError):
        return


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="imgscan")
def main() -> None:
    """imgscan: container image layer forensics and secret scanning."""
    _tune_malloc()


def _color_for(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _check_output(path: str | None) -> None:
    """Fail fast (usage error) when --output cannot be written, before a long scan."""
    if path is None:
        return
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) or not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise ConfigError(f"--output {path}: cannot write there")


def _rule_catalog(cfg: Any) -> list[Any]:
    """The enabled secret rules, for SARIF's rule list (rules that did not fire too)."""
    from pathlib import Path

    from imgscan.detect.rules import load_ruleset
    from imgscan.report.sarif import RuleDoc

    ruleset = load_ruleset(extra_dirs=[Path(d) for d in cfg.rule_dirs])
    return [
        RuleDoc(
            r.id,
            r.title,
            cfg.severity.get(r.id, r.severity),
            description=r.description,
            remediation=r.remediation,
        )
        for r in ruleset.rules
        if r.id not in cfg.disabled_rules
    ]


def report_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Report and gate options of ``scan``."""
    sev = click.Choice([s.value for s in Severity], case_sensitive=False)
    f = click.option(
        "--config",
        "config_path",
        default=None,
        metavar="FILE",
        help="Config file (default: ./.imgscan.toml or [tool.imgscan] in ./pyproject.toml).",
    )(f)
    f = click.option(
        "--baseline",
        default=None,
        metavar="FILE",
        help="Accepted findings: reported as suppressed, never fail the gate.",
    )(f)
    f = click.option(
        "--category",
        default=None,
        metavar="LIST",
        help="Categories that can fail the gate: secret,config,file [default: all].",
    )(f)
    f = click.option(
        "--fail-on-state",
        default=None,
        metavar="LIST",
        help="Exposure states that can fail the gate: present,deleted,overwritten "
        "[default: all; config findings always count].",
    )(f)
    f = click.option(
        "--fail-on",
        type=sev,
        default=None,
        help="Exit 1 when an unsuppressed finding is at or above this severity [default: high].",
    )(f)
    f = click.option(
        "--show-secrets",
        is_flag=True,
        help="Print full secret values (off by default, in every format).",
    )(f)
    f = click.option(
        "--output",
        "-o",
        default=None,
        metavar="FILE",
        help="Write the report to FILE instead of stdout.",
    )(f)
    f = click.option(
        "--format",
        "fmt",
        type=click.Choice(["table", "json", "sarif"]),
        default="table",
        show_default=True,
        help="Report format.",
    )(f)
    return f


@main.command()
@click.argument("image")
@common_options
@report_options
def scan(
    image: str,
    fmt: str,
    output: str | None,
    show_secrets: bool,
    fail_on: str | None,
    fail_on_state: str | None,
    category: str | None,
    baseline: str | None,
    config_path: str | None,
    quiet: bool,
    **kw: Any,
) -> None:
    """Scan IMAGE for secrets and hardening problems in every layer.

    Exit codes: 0 clean, 1 policy failed, 2 usage error, 3 scan error.
    """
    from imgscan.config import apply_config, collect_suppressions, load_config, load_suppressions
    from imgscan.gate import evaluate
    from imgscan.report.render import render
    from imgscan.scan import scan_image

    progress = _Progress(not quiet)
    with _errors():
        # Everything that can be a usage error is checked before the (long) scan.
        cfg = load_config(config_path).with_overrides(
            fail_on=fail_on, fail_on_state=fail_on_state, categories=category, baseline=baseline
        )
        base, warnings = load_suppressions(cfg)
        if not quiet:
            for line in warnings:
                click.echo(f"imgscan: warning: {line}", err=True)
        _check_output(output)
        opts = _scan_options(show_secrets=show_secrets, rule_dirs=cfg.rule_dirs, **kw)
        try:
            result = scan_image(image, opts, progress)
        finally:
            progress.done()
        result = apply_config(result, cfg)
        sup = collect_suppressions(result, cfg, base)
        catalog = _rule_catalog(cfg) if fmt == "sarif" else ()
        with _out(output) as stream, _pipe_safe():
            render(
                result,
                fmt,
                stream,
                show_secrets=show_secrets,
                color=fmt == "table" and _color_for(stream),
                suppressions=sup,
                catalog=catalog,
            )
        outcome = evaluate(result, cfg.policy, sup)
    if not quiet:
        for line in outcome.reasons:
            click.echo(f"imgscan: {line}", err=True)
    sys.exit(outcome.exit_code)


@contextmanager
def _pipe_safe() -> Iterator[None]:
    """A reader that closed the pipe (``| head``) must not turn into an error or hide the gate."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _human(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


def _short(text: str | None, width: int = 60) -> str:
    if not text:
        return ""
    t = " ".join(text.split())
    for prefix in ("/bin/sh -c #(nop) ", "/bin/sh -c "):
        if t.startswith(prefix):
            t = t[len(prefix) :] if prefix.endswith("#(nop) ") else "RUN " + t[len(prefix) :]
    return t if len(t) <= width else t[: width - 1] + "…"


@main.command()
@click.argument("image")
@common_options
@click.option("--files", is_flag=True, help="List every entry with its exposure state.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.option("--output", "-o", default=None, help="Write the listing to FILE.")
def layers(image: str, files: bool, fmt: str, output: str | None, quiet: bool, **kw: Any) -> None:
    """Forensic listing of IMAGE, layer by layer, including hidden (deleted/overwritten) bytes."""
    from tabulate import tabulate

    from imgscan.forensics import layer_forensics

    progress = _Progress(not quiet)
    with _errors():
        opts = _scan_options(**kw)
        try:
            fx = layer_forensics(image, opts, progress)
        finally:
            progress.done()
        with _out(output) as stream, _pipe_safe():
            if fmt == "json":
                json.dump(_forensics_dict(fx, files), stream, indent=2)
                stream.write("\n")
                return
            img = fx.image
            stream.write(f"image: {img.reference}\n")
            if img.digest:
                stream.write(f"digest: {img.digest}\n")
            stream.write(f"platform: {img.platform or '-'}  user: {img.user or '(root)'}\n\n")
            rows = [
                [
                    r.index,
                    (r.digest or r.diff_id or "-").split(":")[-1][:12],
                    _human(r.size),
                    _human(r.uncompressed),
                    r.added,
                    r.modified,
                    r.deleted,
                    _human(r.hidden_bytes),
                    _short(r.created_by),
                ]
                for r in fx.layers
            ]
            stream.write(
                tabulate(
                    rows,
                    headers=[
                        "#",
                        "digest",
                        "size",
                        "tar",
                        "added",
                        "modified",
                        "deleted",
                        "hidden",
                        "created by",
                    ],
                )
            )
            stream.write("\n")
            total_hidden = sum(r.hidden_bytes for r in fx.layers)
            stream.write(
                f"\n{len(fx.layers)} layers; {_human(total_hidden)} hidden "
                "(deleted or overwritten, still recoverable from the image)\n"
            )
            if files:
                stream.write("\n")
                frows = []
                for ev, st, changed in fx.entries:
                    state = str(st) if st else str(ev.kind)
                    if changed is not None:
                        state += f" (layer {changed})"
                    frows.append(
                        [
                            ev.layer,
                            str(ev.kind),
                            oct(ev.mode & 0o7777),
                            ev.size,
                            ev.path + (f" -> {ev.linkname}" if ev.linkname else ""),
                            state,
                        ]
                    )
                stream.write(
                    tabulate(frows, headers=["layer", "kind", "mode", "size", "path", "state"])
                    + "\n"
                )
            for u in fx.unscanned:
                stream.write(f"unscanned: layer {u.layer} {u.path}: {u.reason}\n")


def _forensics_dict(fx: Any, files: bool) -> dict[str, Any]:
    img = fx.image
    d: dict[str, Any] = {
        "schema_version": 1,
        "imgscan_version": __version__,
        "image": {
            "reference": img.reference,
            "digest": img.digest,
            "config_digest": img.config_digest,
            "platform": img.platform,
            "user": img.user,
        },
        "layers": [
            {
                "index": r.index,
                "digest": r.digest,
                "diff_id": r.diff_id,
                "size": r.size,
                "uncompressed_size": r.uncompressed,
                "added": r.added,
                "modified": r.modified,
                "deleted": r.deleted,
                "hidden_bytes": r.hidden_bytes,
                "created_by": r.created_by,
                "compression": r.compression,
            }
            for r in fx.layers
        ],
        "unscanned": [{"layer": u.layer, "path": u.path, "reason": u.reason} for u in fx.unscanned],
    }
    if files:
        d["entries"] = [
            {
                "layer": ev.layer,
                "path": ev.path,
                "kind": str(ev.kind),
                "mode": ev.mode,
                "uid": ev.uid,
                "gid": ev.gid,
                "size": ev.size,
                "mtime": ev.mtime,
                "link": ev.linkname,
                "xattrs": sorted(ev.xattrs),
                "status": str(st) if st else None,
                "changed_in_layer": changed,
            }
            for ev, st, changed in fx.entries
        ]
    return d


@main.group()
def baseline() -> None:
    """Record accepted findings so the gate fails only on new ones."""


def _baseline_args(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--config",
        "config_path",
        default=None,
        metavar="FILE",
        help="Config file (rule dirs, disabled rules, severity overrides).",
    )(f)
    f = click.option(
        "--expires",
        default=None,
        metavar="YYYY-MM-DD",
        help="After this date the entries no longer suppress.",
    )(f)
    f = click.option(
        "--reason", default=None, help="Why these findings are accepted (stored with each entry)."
    )(f)
    f = click.option(
        "--output",
        "-o",
        required=True,
        metavar="FILE",
        help="Baseline file to write, e.g. .imgscan-baseline.json.",
    )(f)
    return f


def _baseline_run(
    image: str,
    output: str,
    reason: str | None,
    expires: str | None,
    config_path: str | None,
    quiet: bool,
    update: bool,
    kw: dict[str, Any],
) -> None:
    import datetime as dt

    from imgscan.config import apply_config, load_config
    from imgscan.findings.baseline import (
        DEFAULT_REASON,
        create_baseline,
        load_baseline,
        parse_date,
        update_baseline,
        write_baseline,
    )
    from imgscan.scan import scan_image

    progress = _Progress(not quiet)
    with _errors():
        cfg = load_config(config_path)
        until = parse_date(expires, "--expires")
        if until is not None and until < dt.date.today():
            raise ConfigError(f"--expires: {until} is in the past")
        old = load_baseline(output) if update and os.path.exists(output) else None
        opts = _scan_options(rule_dirs=cfg.rule_dirs, **kw)
        try:
            result = apply_config(scan_image(image, opts, progress), cfg)
        finally:
            progress.done()
        why = reason or DEFAULT_REASON
        if old is not None:
            new = update_baseline(old, result, reason=why, expires=until)
        else:
            new = create_baseline(result, reason=why, expires=until)
        write_baseline(new, output)
    if not quiet:
        click.echo(f"imgscan: wrote {len(new.entries)} accepted finding(s) to {output}", err=True)
    sys.exit(EXIT_OK)


@baseline.command("create")
@click.argument("image")
@common_options
@_baseline_args
def baseline_create(
    image: str,
    output: str,
    reason: str | None,
    expires: str | None,
    config_path: str | None,
    quiet: bool,
    **kw: Any,
) -> None:
    """Accept every current finding of IMAGE into a new baseline file."""
    _baseline_run(image, output, reason, expires, config_path, quiet, False, kw)


@baseline.command("update")
@click.argument("image")
@common_options
@_baseline_args
def baseline_update(
    image: str,
    output: str,
    reason: str | None,
    expires: str | None,
    config_path: str | None,
    quiet: bool,
    **kw: Any,
) -> None:
    """Accept IMAGE's current findings: keep existing reasons, add new, drop gone entries."""
    _baseline_run(image, output, reason, expires, config_path, quiet, True, kw)


@main.group(invoke_without_command=True)
@click.option(
    "--config",
    "config_path",
    default=None,
    metavar="FILE",
    help="Config file (extra rule dirs, disabled rules, severity overrides).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.pass_context
def rules(ctx: click.Context, config_path: str | None, fmt: str) -> None:
    """List the loaded secret rules: id, severity, title, source file."""
    if ctx.invoked_subcommand is not None:
        return
    from pathlib import Path

    from tabulate import tabulate

    from imgscan.config import load_config
    from imgscan.detect.rules import load_ruleset

    with _errors():
        cfg = load_config(config_path)
        ruleset = load_ruleset(extra_dirs=[Path(d) for d in cfg.rule_dirs])
        rows = [
            {
                "id": r.id,
                "severity": cfg.severity.get(r.id, r.severity).value,
                "title": r.title,
                "source": r.source,
                "enabled": r.id not in cfg.disabled_rules,
            }
            for r in ruleset.rules
        ]
        with _pipe_safe():
            if fmt == "json":
                json.dump(rows, sys.stdout, indent=2)
                sys.stdout.write("\n")
            else:
                table = [
                    [
                        r["id"],
                        r["severity"],
                        r["title"],
                        r["source"],
                        "" if r["enabled"] else "disabled",
                    ]
                    for r in rows
                ]
                click.echo(
                    tabulate(
                        table,
                        headers=["ID", "SEVERITY", "TITLE", "SOURCE", ""],
                        disable_numparse=True,
                    )
                )
                click.echo(f"{len(rows)} rules")


@rules.command("test")
@click.argument("file", type=click.Path(dir_okay=False))
def rules_test(file: str) -> None:
    """Check a rule file and run its examples; exit 1 if any example fails."""
    from pathlib import Path

    from imgscan.detect.rules import check_rule_file

    with _errors():
        results = check_rule_file(Path(file))
    failed = [r for r in results if not r.ok]
    for r in failed:
        text = " ".join(r.text.split())
        text = text if len(text) <= 60 else text[:59] + "…"
        click.echo(f"FAIL {r.rule} {r.kind}: {text!r}: {r.message}")
    n_rules = len({r.rule for r in results})
    click.echo(
        f"{file}: {n_rules} rule(s), {len(results) - len(failed)} passed, {len(failed)} failed"
    )
    sys.exit(EXIT_POLICY if failed else EXIT_OK)


@main.command()
@click.argument("image")
@common_options
@report_options
@click.option(
    "--push",
    "push_to",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[DEST]",
    help="Push the image to DEST (default: its own name) only if the policy passes.",
)
def gate(
    image: str,
    push_to: str | None,
    fmt: str,
    output: str | None,
    show_secrets: bool,
    fail_on: str | None,
    fail_on_state: str | None,
    category: str | None,
    baseline: str | None,
    config_path: str | None,
    quiet: bool,
    **kw: Any,
) -> None:
    """Scan IMAGE and fail (exit 1) on policy; with --push, push it only when it passes.

    The verdict is printed even with --quiet. Exit 0 passed (and pushed), 1 policy
    failed (nothing pushed), 2 usage error, 3 scan or push error.
    """
    from imgscan.config import apply_config, collect_suppressions, load_config, load_suppressions
    from imgscan.report.render import render
    from imgscan.workflows.prepush import gate_image

    progress = _Progress(not quiet)
    with _errors():
        cfg = load_config(config_path).with_overrides(
            fail_on=fail_on, fail_on_state=fail_on_state, categories=category, baseline=baseline
        )
        base, warnings = load_suppressions(cfg)
        if not quiet:
            for line in warnings:
                click.echo(f"imgscan: warning: {line}", err=True)
        _check_output(output)
        opts = _scan_options(show_secrets=show_secrets, rule_dirs=cfg.rule_dirs, **kw)

        def log(msg: str) -> None:
            if not quiet:
                click.echo(msg, err=True)

        try:
            run = gate_image(
                image,
                opts,
                cfg.policy,
                suppressions_for=lambda r: collect_suppressions(r, cfg, base),
                postprocess=lambda r: apply_config(r, cfg),
                push_to=push_to,
                progress=progress,
                log=log,
            )
        finally:
            progress.done()
        catalog = _rule_catalog(cfg) if fmt == "sarif" else ()
        with _out(output) as stream, _pipe_safe():
            render(
                run.result,
                fmt,
                stream,
                show_secrets=show_secrets,
                color=fmt == "table" and _color_for(stream),
                suppressions=run.suppressions,
                catalog=catalog,
            )
    for reason in run.outcome.reasons:
        click.echo(reason, err=True)
    if run.outcome.passed and run.pushed_to:
        digest = f" ({run.pushed_digest})" if run.pushed_digest else ""
        click.echo(f"pushed {image} to {run.pushed_to}{digest}", err=True)
    elif not run.outcome.passed and push_to is not None:
        click.echo("nothing pushed: the policy failed", err=True)
    sys.exit(run.outcome.exit_code)


def _add_workflow_commands() -> None:
    from imgscan.workflows.commands import watch, worker

    main.add_command(watch)
    main.add_command(worker)


_add_workflow_commands()


def entry() -> None:
    """The console script: the CLI, then an exit without a last garbage collection.

    At exit CPython collects garbage over every object still alive, all the imported
    modules included: 10 ms of a 0.1 s cached rescan. Frozen objects are skipped and
    their memory goes back with the process. Nothing relies on that collection: files,
    the verdict cache and worker pools are closed explicitly, and temporary directories
    are removed by atexit handlers, which run before it. (``main`` itself, which tests
    call in-process, freezes nothing.)
    """
    import gc

    try:
        main()
    finally:
        gc.freeze()


if __name__ == "__main__":  # pragma: no cover
    entry()
