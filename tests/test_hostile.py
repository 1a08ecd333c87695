"""Hostile inputs: a one-line error and exit 3, or an unscanned record; never a traceback,
a hang, or a write outside a temp dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fixtures.hostile import CASES, HostileCase
from imgscan.cli import main


def _tree(path: Path) -> dict[str, int]:
    if path.is_file():
        return {str(path): path.stat().st_size}
    return {str(p): p.stat().st_size for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input(case: HostileCase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "in"
    src.mkdir()
    image = case.write(src)
    before = _tree(image)
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setenv("TMPDIR", str(spool))
    monkeypatch.chdir(tmp_path)
    args = ["scan", str(image), "--format", "json", "-q"]
    if case.max_layer_bytes:
        args += ["--max-layer-size", str(case.max_layer_bytes)]
    res = CliRunner().invoke(main, args)
    err_lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in res.output
    if case.outcome == "error":
        assert res.exit_code == 3, res.output
        assert len(err_lines) == 1, res.stderr
        assert err_lines[0].startswith("imgscan: error: "), err_lines
        assert "internal error" not in err_lines[0]
        if case.error == "LayerError":
            assert "layer 1" in err_lines[0], err_lines[0]
    else:
        assert res.exit_code in (0, 1), res.output
        report = json.loads(res.stdout)
        assert report["unscanned"], "the problem must be reported as unscanned"
        reasons = " ".join(u["reason"] for u in report["unscanned"])
        assert reasons
    # Nothing written next to the input, in the working directory, or left in the spool.
    assert _tree(image) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "spool"]
    assert list(spool.iterdir()) == []


def test_bomb_is_cut_at_the_cap_with_bounded_memory(tmp_path: Path) -> None:
    """A 1 GiB gzip bomb scanned with a 64 MiB cap: stops at the cap, reports it."""
    from fixtures.hostile import decompression_bomb

    image = decompression_bomb(tmp_path, size=1 << 30)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "imgscan.cli",
            "scan",
            str(image),
            "--format",
            "json",
            "-q",
            "--max-layer-size",
            "64M",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 1), err
    report = json.loads(out)
    assert any("bomb" in u["reason"] for u in report["unscanned"])
    assert b"Traceback" not in err


def test_missing_file_and_bad_flags_exit_codes(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["scan", str(tmp_path / "nope.tar")])
    assert res.exit_code == 3 and res.stderr.startswith("imgscan: error: ")
    res = CliRunner().invoke(main, ["scan", "--format", "yaml", "x"])
    assert res.exit_code == 2
    empty = tmp_path / "empty.tar"
    empty.write_bytes(b"")
    res = CliRunner().invoke(main, ["scan", str(empty)])
    assert res.exit_code == 3 and len(res.stderr.strip().splitlines()) == 1


def test_unreadable_engine_is_a_scan_error() -> None:
    env = dict(os.environ, DOCKER_HOST="unix:///nonexistent/docker.sock")
    proc = subprocess.run(
        [sys.executable, "-m", "imgscan.cli", "scan", "docker://busybox:latest", "-q"],
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    assert len(proc.stderr.decode().strip().splitlines()) == 1
