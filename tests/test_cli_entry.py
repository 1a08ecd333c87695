"""The console script's entry point (``imgscan.cli:entry``) as a user runs it: a process.

It wraps ``main`` to skip the interpreter's last garbage collection at exit; exit codes,
output and the files a scan writes must be exactly what ``main`` gives in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from imgscan.cli import main

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "fixtures" / "demo" / "demo-image.tar"


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "imgscan.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["scan", str(DEMO), "--format", "json", "-q"], 1),  # the demo fails the policy
        (["scan", str(DEMO), "--format", "json", "-q", "--fail-on", "critical"], 1),
        (["scan", "--help"], 0),
        (["scan", str(DEMO), "-q", "--fail-on", "nope"], 2),
        (["scan", "/nonexistent/image.tar", "-q"], 3),
        (["--version"], 0),
    ],
)
def test_entry_exits_as_main_does(
    args: list[str], code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = _run(*args, cwd=tmp_path)
    monkeypatch.chdir(tmp_path)  # the same (empty) directory: no config file found
    inproc = CliRunner().invoke(main, args, prog_name="python -m imgscan.cli")
    assert proc.returncode == inproc.exit_code == code, proc.stderr
    if "json" in args:
        got, want = json.loads(proc.stdout), json.loads(inproc.stdout)
        got["stats"].pop("seconds"), want["stats"].pop("seconds")
        assert got == want
    else:  # help text wraps to the terminal's width: the same words
        assert proc.stdout.split() == inproc.stdout.split()
    if code == 3:
        assert len(proc.stderr.strip().splitlines()) == 1


def test_entry_writes_the_report_and_the_cache(tmp_path: Path) -> None:
    out, cache = tmp_path / "r.json", tmp_path / "vc.sqlite"
    args = ["scan", str(DEMO), "--format", "json", "-q", "-o", str(out), "--cache", str(cache)]
    assert _run(*args, cwd=tmp_path).returncode == 1
    cold = json.loads(out.read_text())
    assert len(cold["findings"]) == 10
    assert _run(*args, cwd=tmp_path).returncode == 1
    warm = json.loads(out.read_text())
    assert warm["stats"]["image_cache_hit"] is True
    assert warm["findings"] == cold["findings"]
