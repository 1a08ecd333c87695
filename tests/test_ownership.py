"""Package ownership from real dpkg/pip databases on this machine and a generated apk db."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from imgscan.detect.ownership import PackageDB

DPKG_INFO = Path("/var/lib/dpkg/info")


def _real_dpkg_pair() -> tuple[str, bytes, str, bytes]:
    """A real md5sums file and a real, unmodified, readable file it lists."""
    for md5sums in sorted(DPKG_INFO.glob("*.md5sums")):
        content = md5sums.read_bytes()
        for line in content.decode("utf-8", "replace").splitlines():
            digest, _, rel = line.partition("  ")
            f = Path("/") / rel
            if f.is_file() and not f.is_symlink() and f.stat().st_size < 1_000_000:
                data = f.read_bytes()
                if hashlib.md5(data, usedforsecurity=False).hexdigest() == digest:
                    return f"/var/lib/dpkg/info/{md5sums.name}", content, str(f), data
    pytest.skip("no dpkg database on this machine")


def test_dpkg_md5sums_real_files() -> None:
    db_path, db_content, path, data = _real_dpkg_pair()
    db = PackageDB.from_files({(0, db_path): db_content})
    owner = db.owner(path)
    assert owner is not None
    package = Path(db_path).name.removesuffix(".md5sums").split(":")[0]
    assert owner == (package, hashlib.md5(data, usedforsecurity=False).hexdigest(), "md5")
    assert db.verdict_for_content(path, data) == "unmodified"
    assert db.verdict_for_content(path, data + b"\n# added by the image author\n") == "modified"
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert db.verdict(path, md5, None) == "unmodified"
    assert db.verdict(path, None, hashlib.sha256(data).hexdigest()) is None  # wrong algo
    assert db.verdict("/not/owned", md5, None) is None


def test_dpkg_conffiles_from_status() -> None:
    status = Path("/var/lib/dpkg/status")
    if not status.is_file():
        pytest.skip("no dpkg status on this machine")
    db = PackageDB.from_files({(0, "/var/lib/dpkg/status"): status.read_bytes()})
    assert len(db) > 0
    conf = next(p for p in db.paths() if p.startswith("/etc/"))
    o = db.owner(conf)
    assert o is not None and o[2] == "md5" and len(o[1]) == 32


def test_pip_record_real_dist_info() -> None:
    import detect_secrets

    site = Path(detect_secrets.__file__).parent.parent
    records = sorted(site.glob("detect_secrets-*.dist-info/RECORD"))
    assert records, "detect-secrets is installed, so its RECORD must exist"
    record = records[0]
    key = (1, str(record))
    db = PackageDB.from_files({key: record.read_bytes()})
    target = Path(detect_secrets.__file__)
    owner = db.owner(str(target))
    assert owner is not None and owner[0] == "detect_secrets" and owner[2] == "sha256"
    data = target.read_bytes()
    sha_hex = hashlib.sha256(data).hexdigest()
    sha_b64 = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")
    assert db.verdict(str(target), None, sha_hex) == "unmodified"
    assert db.verdict(str(target), None, sha_b64) == "unmodified"
    assert db.verdict(str(target), None, hashlib.sha256(b"x").hexdigest()) == "modified"
    # RECORD lines without a hash (the RECORD itself, .pyc) are not owned
    assert db.owner(str(record)) is None


def _apk_db(files: dict[str, bytes]) -> bytes:
    lines = ["C:Q1abc=", "P:musl-utils", "V:1.2.4-r2"]
    current_dir = None
    for path, data in files.items():
        d, name = path.rsplit("/", 1)
        if d.lstrip("/") != current_dir:
            current_dir = d.lstrip("/")
            lines.append(f"F:{current_dir}")
        lines.append(f"R:{name}")
        lines.append("Z:Q1" + base64.b64encode(hashlib.sha1(data).digest()).decode())
    lines += ["", "P:other", "F:etc", "R:other.conf", "a:0:0:644", ""]
    return "\n".join(lines).encode()


def test_apk_installed_db() -> None:
    files = {
        "/usr/bin/ldd": b'#!/bin/sh\nexec /lib/ld-musl-x86_64.so.1 --list "$@"\n',
        "/etc/profile.d/x.sh": b"export A=1\n",
    }
    db = PackageDB.from_files({(0, "/lib/apk/db/installed"): _apk_db(files)})
    o = db.owner("/usr/bin/ldd")
    assert o == ("musl-utils", hashlib.sha1(files["/usr/bin/ldd"]).hexdigest(), "sha1")
    assert db.verdict_for_content("/usr/bin/ldd", files["/usr/bin/ldd"]) == "unmodified"
    assert db.verdict_for_content("/etc/profile.d/x.sh", b"export TOKEN=abc\n") == "modified"
    assert db.verdict("/usr/bin/ldd", "0" * 32, "0" * 64) is None  # apk needs sha1
    assert db.owner("/etc/other.conf") is None  # no checksum recorded


def test_newest_layer_database_wins() -> None:
    old = b"d41d8cd98f00b204e9800998ecf8427e  etc/app.conf\n"
    new = b"0cc175b9c0f1b6a831c399e269772661  etc/app.conf\n"
    db = PackageDB.from_files(
        {(0, "/var/lib/dpkg/info/app.md5sums"): old, (3, "/var/lib/dpkg/info/app.md5sums"): new}
    )
    assert db.owner("/etc/app.conf") == ("app", "0cc175b9c0f1b6a831c399e269772661", "md5")
    assert db.verdict_for_content("/etc/app.conf", b"a") == "unmodified"


def test_garbage_databases_are_ignored() -> None:
    db = PackageDB.from_files(
        {
            (0, "/var/lib/dpkg/info/x.md5sums"): b"\xff\xfe not a md5sums\n",
            (0, "/lib/apk/db/installed"): b"Z:Q1!!!!\nR:\n",
            (0, "/usr/lib/python3/site-packages/x-1.dist-info/RECORD"): b"a,sha256=***,1\n,,\n",
            (0, "/etc/passwd"): b"root:x:0:0::/root:/bin/sh\n",
        }
    )
    assert len(db) == 0


_SPEC = """Name: imgscan-demo
Version: 1.0
Release: 1
Summary: imgscan ownership test package
License: MIT
BuildArch: noarch
%description
test
%install
mkdir -p %{buildroot}/etc/demo %{buildroot}/usr/share/demo
printf 'log_level=info\\n' > %{buildroot}/etc/demo/app.conf
printf 'hello\\n' > %{buildroot}/usr/share/demo/readme.txt
%files
%config /etc/demo/app.conf
/usr/share/demo/readme.txt
"""


@pytest.mark.skipif(shutil.which("rpmbuild") is None, reason="rpm (rpmbuild) not installed")
def test_rpm_sqlite_database_from_a_real_rpm_install(tmp_path: Path) -> None:
    top = tmp_path / "build"
    for d in ("SPECS", "SOURCES", "BUILD", "RPMS", "SRPMS", "BUILDROOT"):
        (top / d).mkdir(parents=True)
    spec = top / "SPECS" / "demo.spec"
    spec.write_text(_SPEC)
    subprocess.run(
        [
            "rpmbuild",
            "--define",
            f"_topdir {top}",
            "--define",
            "_build_id_links none",
            "-bb",
            str(spec),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (rpm_file,) = (top / "RPMS" / "noarch").glob("*.rpm")
    root = tmp_path / "root"
    root.mkdir()
    base = ["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm"]
    subprocess.run([*base, "--initdb"], check=True, capture_output=True, timeout=60)
    subprocess.run(
        [*base, "--nodeps", "--noscripts", "-i", str(rpm_file)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    rpmdb = (root / "var/lib/rpm/rpmdb.sqlite").read_bytes()
    db = PackageDB.from_files({(1, "/var/lib/rpm/rpmdb.sqlite"): rpmdb})
    installed = (root / "etc/demo/app.conf").read_bytes()
    owner = db.owner("/etc/demo/app.conf")
    assert owner is not None and owner[0] == "imgscan-demo"
    assert owner[1:] == (hashlib.sha256(installed).hexdigest(), "sha256")
    assert db.verdict("/etc/demo/app.conf", None, hashlib.sha256(installed).hexdigest()) == (
        "unmodified"
    )
    assert db.verdict_for_content("/etc/demo/app.conf", b"log_level=info\npassword=x\n") == (
        "modified"
    )
    assert db.owner("/usr/share/demo/readme.txt") is not None
    assert db.owner("/etc/demo") is None


def test_corrupt_rpmdb_is_ignored() -> None:
    db = PackageDB.from_files(
        {
            (0, "/var/lib/rpm/rpmdb.sqlite"): b"SQLite format 3\0" + b"\1" * 300,
            (0, "/usr/lib/sysimage/rpm/rpmdb.sqlite"): b"garbage",
        }
    )
    assert len(db) == 0
