"""Click commands for the workflows: ``watch`` (scheduled scans) and ``worker`` (Celery)."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from imgscan.errors import ImgscanError


def _fail(exc: ImgscanError) -> None:
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    click.echo(f"imgscan: error: {msg}", err=True)
    sys.exit(exc.exit_code)


@click.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    metavar="FILE",
    help="watch.toml naming registries, repositories, tag patterns, policy, output.",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "celery"]),
    default=None,
    help="Where scans run (default: the config's executor, else local).",
)
@click.option("--quiet", "-q", is_flag=True, help="Only the summary.")
def watch(config_path: str, executor: str | None, quiet: bool) -> None:
    """Scan the watched tags of registries, rescanning only digests not seen before.

    Exit 0 when every image passes the policy, 1 when one fails, 3 when a registry
    or image could not be read.
    """
    from imgscan.scan import ScanOptions, build_detectors
    from imgscan.workflows.watch import format_summary, load_watch_config, run_watch

    def log(msg: str) -> None:
        if not quiet:
            click.echo(msg, err=True)

    try:
        cfg = load_watch_config(config_path)
        kind = executor or cfg.executor
        runner: Any = None
        if kind == "celery":
            from imgscan.workflows.fleet import CeleryExecutor, settings_from

            runner = CeleryExecutor(settings_from(cfg.celery, str(cfg.cache)))
        ruleset_hash = build_detectors(ScanOptions()).ruleset_hash
        report = run_watch(cfg, executor=runner, ruleset_hash=ruleset_hash, log=log)
    except ImgscanError as exc:
        _fail(exc)
        return
    click.echo(format_summary(report))
    sys.exit(report.exit_code)


@click.command()
@click.option(
    "--broker",
    envvar="IMGSCAN_BROKER_URL",
    required=True,
    help="Celery broker URL, e.g. redis://127.0.0.1:6379/0 ($IMGSCAN_BROKER_URL).",
)
@click.option(
    "--backend",
    envvar="IMGSCAN_RESULT_BACKEND",
    default=None,
    help="Result backend URL (default: the broker).",
)
@click.option(
    "--cache",
    "cache_url",
    envvar="IMGSCAN_CACHE_URL",
    required=True,
    help="Shared verdict cache: postgresql://... or a SQLite path ($IMGSCAN_CACHE_URL).",
)
@click.option("--concurrency", "-c", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--hostname", "-n", default=None, help="Worker node name.")
@click.option(
    "--claim-ttl",
    type=float,
    default=900.0,
    show_default=True,
    help="Seconds before a dead worker's layer claim may be taken over.",
)
@click.option(
    "--visibility-timeout",
    type=float,
    default=3600.0,
    show_default=True,
    help="Seconds before an unacknowledged task is delivered again.",
)
@click.option(
    "--rate",
    "rate_per_second",
    type=float,
    default=20.0,
    show_default=True,
    help="Blob downloads per second per registry, across the fleet.",
)
@click.option("--loglevel", default="INFO", show_default=True)
def worker(
    broker: str,
    backend: str | None,
    cache_url: str,
    concurrency: int,
    hostname: str | None,
    claim_ttl: float,
    visibility_timeout: float,
    rate_per_second: float,
    loglevel: str,
) -> None:
    """Run a Celery worker that scans layers and assembles images for ``watch``."""
    from imgscan.workflows.fleet import FleetSettings, run_worker

    settings = FleetSettings(
        broker=broker,
        backend=backend or broker,
        cache=cache_url,
        claim_ttl=claim_ttl,
        visibility_timeout=visibility_timeout,
        rate_per_second=rate_per_second,
    )
    run_worker(settings, concurrency=concurrency, hostname=hostname, loglevel=loglevel)


@click.command()
@click.argument("image")
@click.option(
    "--push",
    "push_to",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[DEST]",
    help="Push the image to DEST (default: its own name) only if the policy passes.",
)
@click.option("--fail-on", default=None, help="Severity at which the gate fails (default high).")
@click.option(
    "--fail-on-state",
    default=None,
    help="States that fail: present,deleted,overwritten (default all).",
)
@click.option("--category", default=None, help="Categories that fail: secret,config,file.")
@click.option(
    "--baseline",
    "baseline_path",
    default=None,
    metavar="FILE",
    help="Accepted findings; only new ones fail.",
)
@click.option(
    "--config",
    "config_path",
    default=None,
    metavar="FILE",
    help=".imgscan.toml (default: found in the current directory).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "sarif"]),
    default="table",
    show_default=True,
)
@click.option("--output", "-o", default=None, help="Write the report to FILE.")
@click.option("--platform", default="linux/amd64", show_default=True)
@click.option("--docker-host", envvar="DOCKER_HOST", default=None)
@click.option(
    "--source",
    "source_kind",
    type=click.Choice(["archive", "oci", "engine", "registry"]),
    default=None,
)
@click.option("--insecure", is_flag=True, help="Allow plain-http/unverified TLS registries.")
@click.option("--ca-cert", default=None, help="CA bundle for the registry's TLS certificate.")
@click.option("--username", default=None, help="Registry user (password from --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the registry password from stdin.")
@click.option("--quiet", "-q", is_flag=True)
def gate(
    image: str,
    push_to: str | None,
    fail_on: str | None,
    fail_on_state: str | None,
    category: str | None,
    baseline_path: str | None,
    config_path: str | None,
    fmt: str,
    output: str | None,
    platform: str,
    docker_host: str | None,
    source_kind: str | None,
    insecure: bool,
    ca_cert: str | None,
    username: str | None,
    password_stdin: bool,
    quiet: bool,
) -> None:
    """Scan IMAGE and fail (exit 1) on policy; with --push, push it only when it passes.

    Exit 0 passed (and pushed), 1 policy failed (nothing pushed), 2 usage error,
    3 scan or push error.
    """
    import dataclasses

    from imgscan.config import allowlist_suppressions, apply_config, load_config
    from imgscan.findings.baseline import load_baseline
    from imgscan.gate import parse_categories, parse_severity, parse_states
    from imgscan.report.render import render
    from imgscan.scan import ScanOptions
    from imgscan.sources.base import SourceOptions
    from imgscan.workflows.prepush import gate_image

    def log(msg: str) -> None:
        if not quiet:
            click.echo(msg, err=True)

    try:
        cfg = load_config(config_path)
        policy = cfg.policy
        if fail_on is not None:
            policy = dataclasses.replace(policy, fail_on=parse_severity(fail_on, "--fail-on"))
        if fail_on_state is not None:
            policy = dataclasses.replace(
                policy, fail_on_state=parse_states(fail_on_state, "--fail-on-state")
            )
        if category is not None:
            policy = dataclasses.replace(
                policy, categories=parse_categories(category, "--category")
            )
        base = baseline_path or cfg.baseline
        suppressions = load_baseline(base).suppressions() if base else {}
        creds = None
        if username or password_stdin:
            from imgscan.sources.auth import explicit_credentials

            password = sys.stdin.readline() if password_stdin else None
            creds = explicit_credentials(username, password)
        registry = {"creds": creds, "insecure": insecure, "ca_cert": ca_cert}
        opts = ScanOptions(
            source=SourceOptions(platform=platform, docker_host=docker_host),
            source_kind=source_kind,
            rule_dirs=tuple(cfg.rule_dirs),
            disabled_rules=tuple(sorted(cfg.disabled_rules)),
            registry=registry,
        )
        run = gate_image(
            image,
            opts,
            policy,
            suppressions=suppressions,
            suppressions_for=lambda r: allowlist_suppressions(r, cfg),
            postprocess=lambda r: apply_config(r, cfg),
            push_to=push_to,
            registry=registry,
            log=log,
        )
        stream = open(output, "w", encoding="utf-8") if output else sys.stdout  # noqa: SIM115
        try:
            render(
                run.result,
                fmt,
                stream,
                suppressions=run.suppressions,
                color=stream.isatty() and not os.environ.get("NO_COLOR"),
            )
        finally:
            if output:
                stream.close()
    except ImgscanError as exc:
        _fail(exc)
        return
    for reason in run.outcome.reasons:
        click.echo(reason, err=True)
    if run.outcome.passed and run.pushed_to:
        click.echo(
            f"pushed {image} to {run.pushed_to}"
            + (f" ({run.pushed_digest})" if run.pushed_digest else ""),
            err=True,
        )
    elif not run.outcome.passed and push_to is not None:
        click.echo("nothing pushed: the policy failed", err=True)
    sys.exit(run.outcome.exit_code)
