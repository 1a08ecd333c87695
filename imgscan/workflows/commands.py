"""Click commands for the workflows: ``watch`` (scheduled scans) and ``worker`` (Celery).

The pre-push ``gate`` lives in ``imgscan.cli`` beside ``scan``, whose options it shares.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from imgscan.errors import ImgscanError


def _fail(exc: ImgscanError) -> None:
    from imgscan.cli import _die

    _die(exc)


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
    from imgscan.detect.rulefiles import ruleset_digest
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
        ruleset_hash = ruleset_digest()  # what build_detectors' rules would say, uncompiled
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
