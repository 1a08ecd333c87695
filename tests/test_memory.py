"""Memory stays bounded: a 1 GiB file in a layer is scanned in chunks, never held whole."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

GIB = 1 << 30


class _Pattern(io.RawIOBase):
    """``n`` bytes of repeated text, produced on the fly."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.block = (
            b"lorem ipsum dolor sit amet, consectetur adipiscing elit 0123456789\n" * 1100
        )[: 1 << 16]

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        k = min(len(b), self.n)
        if k <= 0:
            return 0
        reps = k // len(self.block) + 1
        b[:k] = (self.block * reps)[:k]
        self.n -= k
        return k


def _big_image(tmp: Path, size: int, key: bytes) -> Path:
    layer = tmp / "layer.tar"
    with open(layer, "wb") as out, tarfile.open(fileobj=out, mode="w") as tf:
        ti = tarfile.TarInfo("data/big.bin")
        ti.size = size
        tf.addfile(ti, io.BufferedReader(_Pattern(size), 1 << 20))
        ti = tarfile.TarInfo("data/id_rsa")
        ti.size = len(key)
        tf.addfile(ti, io.BytesIO(key))
    h = hashlib.sha256()
    with open(layer, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    cfg = {
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + h.hexdigest()]},
        "history": [{"created_by": "COPY big.bin /data/"}],
    }
    cb = json.dumps(cfg).encode()
    ch = hashlib.sha256(cb).hexdigest()
    image = tmp / "big.tar"
    with tarfile.open(image, "w") as tf:
        tf.add(layer, arcname="l0/layer.tar")
        man = json.dumps(
            [{"Config": ch + ".json", "RepoTags": ["big:1"], "Layers": ["l0/layer.tar"]}]
        ).encode()
        for name, data in ((ch + ".json", cb), ("manifest.json", man)):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    layer.unlink()
    return image


@pytest.mark.slow
def test_one_gib_file_peaks_under_300_mb(tmp_path: Path) -> None:
    from imgscan.detect.keys import fake_private_key

    key = fake_private_key("rsa", 7).encode()
    image = _big_image(tmp_path, GIB, key)
    # Linux keeps the max-RSS high-water mark across execve, so a child spawned straight
    # from this (large) pytest process would report pytest's own RSS. A small launcher
    # forks a fresh process for the scan and reports that process's peak.
    launcher = (
        "import os, sys\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os.execv(sys.executable, [sys.executable, '-m', 'imgscan.cli', *sys.argv[1:]])\n"
        "_, status, usage = os.wait4(pid, 0)\n"
        "print(usage.ru_maxrss)\n"
        "sys.exit(os.waitstatus_to_exitcode(status))\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            launcher,
            "scan",
            str(image),
            "--format",
            "json",
            "-o",
            str(tmp_path / "report.json"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    stderr = proc.stderr
    code = proc.returncode
    assert code == 1, stderr  # the key is critical, so the default policy fails
    maxrss_kb = int(proc.stdout.strip().splitlines()[-1])
    peak_mb = maxrss_kb / 1024
    print(f"peak RSS scanning a 1 GiB file: {peak_mb:.0f} MB")
    assert peak_mb < 300
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["image"]["layers"][0]["size"] > GIB
    assert any(f["path"] == "/data/id_rsa" for f in report["findings"])
    assert not any(u["path"] == "/data/big.bin" for u in report["unscanned"])
