"""Binary detection and printable strings: real ELF, real .pyc, a PE with UTF-16 strings."""

from __future__ import annotations

import importlib.util
import py_compile
import random
import shutil
import string
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from imgscan.detect.base import FileContext, Hit
from imgscan.detect.strings import (
    BinaryStringsDetector,
    is_binary,
    is_pe,
    is_pyc,
    printable_runs,
    strings_view,
)
from imgscan.model import Severity

RNG = random.Random(99)
SECRET = "sk_live_" + "".join(RNG.choice(string.ascii_letters + string.digits) for _ in range(24))


class _LiteralDetector:
    """A text detector that reports one literal string (stands in for the pattern rules)."""

    name = "literal"
    text_only = True

    def __init__(self, needle: str) -> None:
        self.needle = needle.encode()

    def scan(self, ctx: FileContext, data: bytes) -> Iterable[Hit]:
        i = data.find(self.needle)
        while i >= 0:
            yield Hit("test-literal", "literal", Severity.HIGH, self.needle.decode(), i)
            i = data.find(self.needle, i + 1)


@pytest.mark.parametrize(
    ("data", "binary"),
    [
        (b"plain text\nwith lines\n", False),
        (b"", False),
        ("ünïcödé text".encode(), False),
        (b"\x7fELF\x02\x01\x01" + b"A" * 100, True),
        (b"\xcf\xfa\xed\xfe" + b"A" * 100, True),
        (b"\xca\xfe\xba\xbe" + b"A" * 100, True),
        (b"text with a \x00 nul", True),
        (b"\x89PNG\r\n\x1a\n" + b"A" * 100, True),
        (b"BZh91AY&SY", True),
        (b"BZhello, a text file", False),
        ("\ufeffUTF-16 text".encode("utf-16"), True),
    ],
)
def test_is_binary(data: bytes, binary: bool) -> None:
    assert is_binary(data) is binary


def test_real_pyc_constant_is_found(tmp_path: Path) -> None:
    src = tmp_path / "settings.py"
    src.write_text(f'STRIPE_KEY = "{SECRET}"\nDEBUG = False\n')
    pyc = Path(py_compile.compile(str(src), cfile=str(tmp_path / "settings.pyc")))
    data = pyc.read_bytes()
    assert is_pyc(data) and is_binary(data)
    assert data[:4] == importlib.util.MAGIC_NUMBER
    runs = [run for _, run in printable_runs(data)]
    assert any(SECRET.encode() in r for r in runs)
    hits = list(
        BinaryStringsDetector([_LiteralDetector(SECRET)]).scan(
            FileContext("/app/__pycache__/settings.cpython-311.pyc", 1, len(data)), data
        )
    )
    assert len(hits) == 1 and hits[0].no_line and hits[0].extra["in_binary"]
    assert data[hits[0].offset : hits[0].offset + len(SECRET)] == SECRET.encode()


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")
def test_real_elf_with_embedded_key(tmp_path: Path) -> None:
    c = tmp_path / "tool.c"
    c.write_text(
        f'#include <stdio.h>\nstatic const char *k = "{SECRET}";\n'
        "int main(void) { puts(k); return 0; }\n"
    )
    subprocess.run(
        ["gcc", "-O0", "-o", str(tmp_path / "tool"), str(c)], check=True, capture_output=True
    )
    data = (tmp_path / "tool").read_bytes()
    assert is_binary(data) and not is_pe(data)
    hits = list(
        BinaryStringsDetector([_LiteralDetector(SECRET)]).scan(
            FileContext("/usr/local/bin/tool", 2, len(data)), data
        )
    )
    assert [h.secret for h in hits] == [SECRET]
    assert data[hits[0].offset : hits[0].offset + len(SECRET)] == SECRET.encode()


def _fake_pe(wide: str, narrow: str) -> bytes:
    head = bytearray(b"MZ" + b"\0" * 0x3E)
    head[0x3C:0x40] = (0x80).to_bytes(4, "little")
    head += b"\0" * (0x80 - len(head)) + b"PE\0\0" + b"\0" * 60
    return bytes(head) + b"\x01\x02" + wide.encode("utf-16-le") + b"\0\0\x03" + narrow.encode()


def test_pe_utf16_strings_are_decoded_and_mapped_back() -> None:
    data = _fake_pe(f"ApiKey={SECRET}", "plain ascii string here")
    assert is_pe(data) and is_binary(data)
    runs = list(printable_runs(data))
    texts = [r for _, r in runs]
    assert f"ApiKey={SECRET}".encode() in texts
    assert b"plain ascii string here" in texts
    assert [o for o, _ in runs] == sorted(o for o, _ in runs)
    hits = list(
        BinaryStringsDetector([_LiteralDetector(SECRET)]).scan(
            FileContext("/app/tool.exe", 0, len(data)), data
        )
    )
    assert len(hits) == 1
    assert data[hits[0].offset : hits[0].offset + 2 * len(SECRET)] == SECRET.encode("utf-16-le")
    # outside PE files UTF-16 is not decoded unless asked
    assert not any(SECRET.encode() in r for _, r in printable_runs(b"\0" + data[2:]))


def test_min_len_and_offsets() -> None:
    data = b"\0\0short\0\0a-longer-run-of-text\0\x01\x02exactly8\0"
    assert list(printable_runs(data, min_len=8)) == [
        (9, b"a-longer-run-of-text"),
        (32, b"exactly8"),
    ]
    view = strings_view(data, 8)
    assert view.text == b"a-longer-run-of-text\nexactly8"
    assert view.original_offset(view.text.index(b"exactly8")) == 32


def test_text_files_are_left_to_the_inner_detectors() -> None:
    data = f"key = {SECRET}\n".encode()
    assert (
        list(
            BinaryStringsDetector([_LiteralDetector(SECRET)]).scan(
                FileContext("/a.txt", 0, len(data)), data
            )
        )
        == []
    )


def test_printable_runs_is_fast_on_a_large_binary() -> None:
    blob = bytes(RNG.getrandbits(8) for _ in range(1 << 16)) * 64  # 4 MiB of noise
    start = time.perf_counter()
    n = sum(1 for _ in printable_runs(blob, 8))
    elapsed = time.perf_counter() - start
    assert n > 0
    assert elapsed < 2.0, f"{elapsed:.2f}s for 4 MiB"


def test_python_interpreter_binary_is_binary() -> None:
    data = Path(sys.executable).resolve().read_bytes()[:8192]
    assert is_binary(data)


def test_archives_are_left_to_the_expander() -> None:
    import gzip

    data = gzip.compress(f"token={SECRET}\n".encode(), compresslevel=0)
    assert SECRET.encode() in data  # stored uncompressed, so strings would see it
    det = BinaryStringsDetector([_LiteralDetector(SECRET)])
    assert list(det.scan(FileContext("/a.gz", 0, len(data)), data)) == []


def test_pyc_constant_with_its_name_in_another_run_is_found_by_entropy(tmp_path: Path) -> None:
    from imgscan.detect.entropy import EntropyDetector
    from imgscan.detect.strings import pyc_strings

    value = "".join(RNG.choice(string.ascii_letters + string.digits) for _ in range(50))
    src = tmp_path / "settings.py"
    src.write_text(f'SECRET_KEY = "{value}"\nNAME = "plain-module-name"\n')
    data = Path(py_compile.compile(str(src), cfile=str(tmp_path / "s.pyc"))).read_bytes()
    strings = dict(pyc_strings(data))
    assert value.encode() in strings.values()
    assert b"SECRET_KEY" in strings.values()
    hits = list(
        BinaryStringsDetector([EntropyDetector()]).scan(
            FileContext("/app/__pycache__/settings.cpython-311.pyc", 1, len(data)), data
        )
    )
    assert [h.secret for h in hits] == [value]
    assert data[hits[0].offset : hits[0].offset + len(value)] == value.encode()


def test_pyc_without_secret_names_stays_quiet(tmp_path: Path) -> None:
    from imgscan.detect.entropy import EntropyDetector

    value = "".join(RNG.choice(string.ascii_letters + string.digits) for _ in range(50))
    src = tmp_path / "tables.py"
    src.write_text(f'ALPHABET = "{value}"\n')
    data = Path(py_compile.compile(str(src), cfile=str(tmp_path / "t.pyc"))).read_bytes()
    det = BinaryStringsDetector([EntropyDetector()])
    assert list(det.scan(FileContext("/app/t.pyc", 1, len(data)), data)) == []
