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
from imgscan.errors import ImgscanError
from imgscan.layers.walker import WalkLimits
from imgscan.model import ScanResult, Severity
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
    with open(path, "w", encoding="utf-8") as f:
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
    **extra: Any,
) -> Any:
    from imgscan.scan import ScanOptions

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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="imgscan")
def main() -> None:
    """imgscan: container image layer forensics and secret scanning."""


def _simple_gate(result: ScanResult, fail_on: str) -> int:
    threshold = Severity(fail_on).rank
    return EXIT_POLICY if any(f.severity.rank >= threshold for f in result.findings) else EXIT_OK


@main.command()
@click.argument("image")
@common_options
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.option("--output", "-o", default=None, help="Write the report to FILE.")
@click.option("--show-secrets", is_flag=True, help="Print full secret values (off by default).")
@click.option(
    "--fail-on",
    type=click.Choice([s.value for s in Severity]),
    default="high",
    show_default=True,
    help="Exit 1 when a finding is at or above this severity.",
)
def scan(
    image: str,
    fmt: str,
    output: str | None,
    show_secrets: bool,
    fail_on: str,
    quiet: bool,
    **kw: Any,
) -> None:
    """Scan IMAGE for secrets and hardening problems in every layer."""
    from imgscan.scan import scan_image

    progress = _Progress(not quiet)
    with _errors():
        opts = _scan_options(show_secrets=show_secrets, **kw)
        try:
            result = scan_image(image, opts, progress)
        finally:
            progress.done()
        with _out(output) as stream, _pipe_safe():
            if fmt == "json":
                from imgscan.report.json_report import write_json

                write_json(result, stream, show_secrets=show_secrets)
            else:
                _write_table(result, stream, show_secrets)
    sys.exit(_simple_gate(result, fail_on))


@contextmanager
def _pipe_safe() -> Iterator[None]:
    """A reader that closed the pipe (``| head``) must not turn into an error or hide the gate."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _write_table(result: ScanResult, stream: TextIO, show_secrets: bool) -> None:
    from tabulate import tabulate

    rows = []
    for f in result.findings:
        where = f.path or f.location or ""
        if f.line:
            where += f":{f.line}"
        rows.append(
            [
                str(f.severity),
                f.rule,
                where,
                f.layer if f.layer is not None else "-",
                str(f.status) if f.status else "-",
                (f.secret if show_secrets and f.secret else f.redacted) or f.message,
            ]
        )
    if rows:
        stream.write(
            tabulate(rows, headers=["severity", "rule", "path", "layer", "state", "value"]) + "\n"
        )
    stream.write(f"{len(result.findings)} findings, {len(result.unscanned)} unscanned\n")


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

    from imgscan.scan import layer_forensics

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


def _add_workflow_commands() -> None:
    from imgscan.workflows.commands import gate, watch, worker

    main.add_command(gate)
    main.add_command(watch)
    main.add_command(worker)


_add_workflow_commands()

if __name__ == "__main__":  # pragma: no cover
    main()
