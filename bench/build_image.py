"""Build (once, cached) the realistic benchmark image and its ground truth.

    python bench/build_image.py [--size-factor N] [--layout gzip|layers-gzip] [--force]

Layer 0 is a Debian minbase root filesystem (`debootstrap --variant=minbase bookworm`, from the
mirror apt is configured with here; apt lists and .deb caches removed as in a Docker base image).
Layer 1 is an app layer made with `pip install --target` of a few large real PyPI packages.
Layers 2..4 hold the planted fakes of bench/plant.py (secrets, decoys, whiteouts, overwrites).
`--size-factor N` repeats the app layer (each copy under its own prefix, every file with a small
copy marker appended so no two copies share content) until the image is about N times larger.

The output is a Docker >= 25 `docker save` archive (OCI layout plus the legacy manifest.json):
`--layout gzip` (default) gzips the whole archive like `docker save | gzip`; `--layout
layers-gzip` keeps the outer tar plain and gzips each layer blob (media type tar+gzip).
Writes into $IMGSCAN_BENCH_DIR or bench/.work:
    image-x{N}.tar.gz (or image-x{N}-lg.tar), image-x{N}.truth.json, image-x{N}.meta.json
Only the standard library (tarfile/gzip/json/hashlib) writes the image; plant.py uses
`cryptography` to serialise the generated (seeded) RSA keys.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import plant as planting

BENCH = Path(__file__).resolve().parent
DEFAULT_PACKAGES = ("botocore", "django", "sqlalchemy", "requests", "pyyaml", "jinja2")
SUITE = "bookworm"
EPOCH = 1735689600  # mtime of generated entries: deterministic output
PY_SITE = "usr/local/lib/python3.11/site-packages"


def work_dir() -> Path:
    """The cache directory for built images and tool outputs."""
    d = Path(os.environ.get("IMGSCAN_BENCH_DIR") or BENCH / ".work")
    d.mkdir(parents=True, exist_ok=True)
    return d


def log(msg: str) -> None:
    """Progress to stderr."""
    print(f"[build] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- layer 0: rootfs


def debian_mirror(files: list[Path] | None = None) -> str | None:
    """The Debian mirror URI apt is configured with (main archive, not security)."""
    if files is None:
        files = [Path("/etc/apt/sources.list")]
        d = Path("/etc/apt/sources.list.d")
        if d.is_dir():
            files += sorted(p for p in d.iterdir() if p.suffix in (".list", ".sources"))
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        if f.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(
                    (k.strip().lower(), v.strip())
                    for k, _, v in (
                        ln.partition(":") for ln in stanza.splitlines() if ln and ln[0] != "#"
                    )
                )
                suites = fields.get("suites", "").split()
                if SUITE in suites and "types" in fields and "deb" in fields["types"].split():
                    return str(fields.get("uris", "").split()[0])
        else:
            for ln in text.splitlines():
                parts = ln.split()
                if len(parts) >= 3 and parts[0] == "deb" and SUITE in parts[2:]:
                    uri = next(x for x in parts[1:] if not x.startswith("["))
                    if "security" not in uri:
                        return uri
    return None


def build_rootfs(work: Path) -> tuple[Path, str]:
    """A debootstrap minbase rootfs (cached); falls back to a copy of host files."""
    root = work / "rootfs"
    done = work / "rootfs.done"
    if done.exists():
        return root, done.read_text().strip()
    shutil.rmtree(root, ignore_errors=True)
    mirror = debian_mirror()
    origin = ""
    if mirror and shutil.which("debootstrap"):
        log(f"debootstrap --variant=minbase {SUITE} from the apt mirror ...")
        t0 = time.monotonic()
        proc = subprocess.run(
            ["debootstrap", "--variant=minbase", SUITE, str(root), mirror],
            capture_output=True,
            text=True,
        )
        if proc.returncode == 0:
            origin = f"debootstrap --variant=minbase {SUITE} (the Debian mirror in apt sources)"
            log(f"debootstrap done in {time.monotonic() - t0:.1f}s")
        else:
            log("debootstrap failed: " + (proc.stderr or proc.stdout).strip()[-400:])
    if not origin:
        shutil.rmtree(root, ignore_errors=True)
        origin = "FALLBACK: copy of host /usr /etc (debootstrap unavailable or failed)"
        log(origin)
        for sub in ("etc", "usr/bin", "usr/lib/x86_64-linux-gnu", "usr/share/doc", "var/lib/dpkg"):
            src = Path("/") / sub
            if src.is_dir():
                shutil.copytree(src, root / sub, symlinks=True, ignore_dangling_symlinks=True)
    # as in a Docker base image: no apt caches, no package lists
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
        d = root / sub
        if d.is_dir():
            for p in d.iterdir():
                if p.is_file() and p.name != "lock":
                    p.unlink()
    done.write_text(origin + "\n")
    return root, origin


# --------------------------------------------------------------------------- layer 1: app


def build_app(work: Path, packages: tuple[str, ...]) -> Path:
    """`pip install --target` of the app packages (cached by package list)."""
    key = hashlib.sha256(" ".join(packages).encode()).hexdigest()[:12]
    target = work / f"app-{key}"
    done = work / f"app-{key}.done"
    if done.exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    log(f"pip install --target {target} {' '.join(packages)} ...")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-warn-conflicts",
            "--disable-pip-version-check",
            "--target",
            str(target),
            *packages,
        ],
        check=True,
    )
    done.write_text(" ".join(packages) + "\n")
    return target


# --------------------------------------------------------------------------- tar writing


def _dir_info(name: str, mode: int = 0o755) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, mode, EPOCH
    return ti


def write_dir_layer(out: Path, src: Path, prefix: str = "", marker: bytes | None = None) -> None:
    """Write src as an uncompressed layer tar (paths under prefix, optional content marker)."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tf:
        if prefix:
            parts = prefix.strip("/").split("/")
            for i in range(1, len(parts) + 1):
                tf.addfile(_dir_info("/".join(parts[:i])))
        for path in sorted(_iter_sorted(src)):
            rel = path.relative_to(src).as_posix()
            name = f"{prefix.strip('/')}/{rel}" if prefix else rel
            ti = tf.gettarinfo(str(path), arcname=name)
            if ti.type in (tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE):
                continue
            if ti.isreg():
                with open(path, "rb") as f:
                    if marker is None:
                        tf.addfile(ti, f)
                    else:
                        data = f.read() + marker
                        ti.size = len(data)
                        tf.addfile(ti, io.BytesIO(data))
            else:
                tf.addfile(ti)


def _iter_sorted(src: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(src):
        rel = Path(dirpath).relative_to(src).as_posix()
        if rel in ("dev", "proc", "sys"):
            dirnames[:] = []
            filenames = []
        for n in dirnames + filenames:
            yield Path(dirpath) / n


def write_plant_layer(out: Path, layer: planting.PlantLayer) -> None:
    """Write a planted layer (files, whiteouts, opaque dirs) as an uncompressed tar."""
    seen: set[str] = set()
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tf:

        def parents(path: str) -> None:
            parts = path.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in seen:
                    seen.add(d)
                    tf.addfile(_dir_info(d, 0o700 if d == "root" else 0o755))

        for e in layer.entries:
            rel = e.path.strip("/")
            parents(rel)
            if e.kind == "file":
                ti = tarfile.TarInfo(rel)
                ti.size, ti.mode, ti.mtime = len(e.data), e.mode, EPOCH
                tf.addfile(ti, io.BytesIO(e.data))
            elif e.kind == "whiteout":
                head, _, tail = rel.rpartition("/")
                ti = tarfile.TarInfo(f"{head}/.wh.{tail}" if head else f".wh.{tail}")
                ti.mtime = EPOCH
                tf.addfile(ti, io.BytesIO(b""))
            elif e.kind == "opaque":
                if rel not in seen:
                    seen.add(rel)
                    tf.addfile(_dir_info(rel))
                ti = tarfile.TarInfo(f"{rel}/.wh..wh..opq")
                ti.mtime = EPOCH
                tf.addfile(ti, io.BytesIO(b""))


def sha256_file(path: Path) -> tuple[str, int]:
    """sha256 hex digest and size of a file."""
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def gzip_file(src: Path, dst: Path, level: int) -> None:
    """gzip src into dst (mtime 0, deterministic)."""
    with (
        open(src, "rb") as fi,
        open(dst, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=level, mtime=0) as fo,
    ):
        shutil.copyfileobj(fi, fo, 1 << 20)


# --------------------------------------------------------------------------- image assembly


def plant_sha() -> str:
    """Digest of plant.py: a changed planter invalidates the cached image."""
    return hashlib.sha256((BENCH / "plant.py").read_bytes()).hexdigest()[:16]


def build(
    size_factor: int,
    layout: str,
    packages: tuple[str, ...],
    seed: int,
    force: bool,
    gzip_level: int = 6,
    scale: str = "app",
) -> dict[str, Any]:
    """Build the image (or reuse the cached one); returns its metadata."""
    work = work_dir()
    suffix = "" if layout == "gzip" else "-lg"
    stem = f"image-x{size_factor}{'u' if scale == 'uniform' and size_factor > 1 else ''}{suffix}"
    image = work / (f"{stem}.tar.gz" if layout == "gzip" else f"{stem}.tar")
    meta_path = work / f"{stem}.meta.json"
    if image.exists() and meta_path.exists() and not force:
        meta: dict[str, Any] = json.loads(meta_path.read_text())
        same = meta.get("packages") == list(packages) and meta.get("seed") == seed
        if same and meta.get("plant_sha") == plant_sha():
            log(f"cached: {image}")
            return meta
    t0 = time.monotonic()
    rootfs, origin = build_rootfs(work)
    app = build_app(work, packages)
    layers_dir = work / "layers"
    layers_dir.mkdir(exist_ok=True)

    def cached_layer(name: str, make: object) -> Path:
        out = layers_dir / f"{name}.tar"
        if not out.exists() or force:
            tmp = out.with_suffix(".tmp")
            make(tmp)  # type: ignore[operator]
            tmp.rename(out)
        return out

    tars: list[tuple[Path, str]] = []
    tars.append(
        (
            cached_layer("rootfs", lambda o: write_dir_layer(o, rootfs)),
            f"/bin/sh -c #(nop) ADD file:debootstrap-minbase-{SUITE} in / ",
        )
    )
    pkey = hashlib.sha256(" ".join(packages).encode()).hexdigest()[:12]
    tars.append(
        (
            cached_layer(f"app-{pkey}", lambda o: write_dir_layer(o, app, PY_SITE)),
            f"RUN /bin/sh -c pip install --target /{PY_SITE} {' '.join(packages)}",
        )
    )
    # "uniform" 10x: copies of both the base and the app layer at their own paths (every
    # file with a marker, so each copy rewrites the layer below it), before the plants:
    # the 1x mix of content (binaries, package trees, Python sources) at 10x the bytes.
    app_bytes = tars[1][0].stat().st_size
    one_x = sum(p.stat().st_size for p, _ in tars)  # the plants add < 1%
    if scale == "uniform" and size_factor > 1:
        pair = tars[0][0].stat().st_size + app_bytes
        for k in range(max(0, round((size_factor * one_x - one_x) / pair))):
            marker = f"\n#bench-rewrite-{k + 2}\n".encode()
            tars.append(
                (
                    cached_layer(
                        f"rootfs-rewrite{k + 2}",
                        lambda o, m=marker: write_dir_layer(o, rootfs, "", m),
                    ),
                    f"RUN /bin/sh -c apt-get -y upgrade  # bench rewrite {k + 2}",
                )
            )
            tars.append(
                (
                    cached_layer(
                        f"app-{pkey}-rewrite{k + 2}",
                        lambda o, m=marker: write_dir_layer(o, app, PY_SITE, m),
                    ),
                    f"RUN /bin/sh -c pip install -U --target /{PY_SITE} {' '.join(packages)}"
                    f"  # bench rewrite {k + 2}",
                )
            )
    base_bytes = sum(p.stat().st_size for p, _ in tars)
    plan = planting.plant(seed, first_layer=len(tars))
    for i, pl in enumerate(plan.layers):
        out = layers_dir / f"plant-{seed}-{i}.tar"
        write_plant_layer(out, pl)
        tars.append((out, pl.created_by))
    # the "app" 10x variant: copies of the app layer (new prefix, distinct content) after
    # the plants
    one_x = sum(p.stat().st_size for p, _ in tars)
    extra = max(0, round((size_factor * one_x - one_x) / app_bytes)) if size_factor > 1 else 0
    for k in range(extra if scale == "app" else 0):
        prefix = f"opt/app{k + 2}/site-packages"
        marker = f"\n#bench-copy-{k + 2}\n".encode()
        tars.append(
            (
                cached_layer(
                    f"app-{pkey}-copy{k + 2}",
                    lambda o, p=prefix, m=marker: write_dir_layer(o, app, p, m),
                ),
                f"RUN /bin/sh -c pip install --target /{prefix} {' '.join(packages)}",
            )
        )
    log(f"layers ready ({len(tars)}), assembling {image.name} ...")

    # layer blobs
    blobs: list[tuple[str, str, int, Path]] = []  # (diff_id, digest, size, blob path)
    for path, _ in tars:
        diff_id, size = sha256_file(path)
        if layout == "layers-gzip":
            # keyed by the tar's digest: a rebuilt layer never meets a stale gzip of its past
            gz = path.with_suffix(f".{diff_id[:16]}.l{gzip_level}.tar.gz")
            if not gz.exists() or force:
                gzip_file(path, gz, gzip_level)
            digest, gsize = sha256_file(gz)
            blobs.append((diff_id, digest, gsize, gz))
        else:
            blobs.append((diff_id, diff_id, size, path))
    uncompressed = sum(p.stat().st_size for p, _ in tars)

    env = [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        f"PYTHONPATH=/{PY_SITE}",
        *plan.env,
    ]
    history: list[dict[str, object]] = []
    created = "2025-01-01T00:00:00Z"
    for i, (_, created_by) in enumerate(tars):
        if i == 2:
            for line in plan.history_before:
                history.append({"created": created, "created_by": line, "empty_layer": True})
        history.append({"created": created, "created_by": created_by})
    history.append(
        {"created": created, "created_by": "ENV NEW_RELIC_API_KEY=[set]", "empty_layer": True}
    )
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {
            "Env": env,
            "Cmd": ["python3", "-m", "orders"],
            "WorkingDir": "/app",
            "Labels": {"org.opencontainers.image.title": "imgscan-bench"},
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for d, _, _, _ in blobs]},
        "history": history,
    }
    config_bytes = json.dumps(config, separators=(",", ":"), sort_keys=True).encode()
    config_digest = hashlib.sha256(config_bytes).hexdigest()
    layer_mt = (
        "application/vnd.oci.image.layer.v1.tar+gzip"
        if layout == "layers-gzip"
        else "application/vnd.oci.image.layer.v1.tar"
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": f"sha256:{config_digest}",
            "size": len(config_bytes),
        },
        "layers": [
            {"mediaType": layer_mt, "digest": f"sha256:{dg}", "size": sz} for _, dg, sz, _ in blobs
        ],
    }
    manifest_bytes = json.dumps(manifest, separators=(",", ":")).encode()
    manifest_digest = hashlib.sha256(manifest_bytes).hexdigest()
    tag = f"imgscan-bench:x{size_factor}"
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": f"sha256:{manifest_digest}",
                "size": len(manifest_bytes),
                "annotations": {
                    "io.containerd.image.name": f"docker.io/library/{tag}",
                    "org.opencontainers.image.ref.name": f"x{size_factor}",
                },
            }
        ],
    }
    legacy = [
        {
            "Config": f"blobs/sha256/{config_digest}",
            "RepoTags": [tag],
            "Layers": [f"blobs/sha256/{dg}" for _, dg, _, _ in blobs],
        }
    ]

    tmp = image.with_suffix(".partial")
    with open(tmp, "wb") as raw:
        outer: Any
        if layout == "gzip":
            outer = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=gzip_level, mtime=0)
        else:
            outer = raw
        with tarfile.open(fileobj=outer, mode="w", format=tarfile.PAX_FORMAT) as tf:
            tf.addfile(_dir_info("blobs"))
            tf.addfile(_dir_info("blobs/sha256"))
            written: set[str] = set()
            for _, dg, sz, path in blobs:
                if dg in written:
                    continue
                written.add(dg)
                ti = tarfile.TarInfo(f"blobs/sha256/{dg}")
                ti.size, ti.mtime = sz, EPOCH
                with open(path, "rb") as f:
                    tf.addfile(ti, f)
            for name, data in (
                (f"blobs/sha256/{config_digest}", config_bytes),
                (f"blobs/sha256/{manifest_digest}", manifest_bytes),
                ("index.json", json.dumps(index).encode()),
                ("manifest.json", json.dumps(legacy).encode()),
                ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
                (
                    "repositories",
                    json.dumps({"imgscan-bench": {f"x{size_factor}": manifest_digest}}).encode(),
                ),
            ):
                ti = tarfile.TarInfo(name)
                ti.size, ti.mtime = len(data), EPOCH
                tf.addfile(ti, io.BytesIO(data))
        if layout == "gzip":
            outer.close()
    tmp.rename(image)

    truth = {
        "image": image.name,
        "seed": seed,
        "layers": len(tars),
        "planted_layers": [2, 3, 4],
        "secrets": [t.to_json() for t in plan.truth if not t.decoy],
        "decoys": [t.to_json() for t in plan.truth if t.decoy],
    }
    truth_path = work / f"{stem.removesuffix('-lg')}.truth.json"
    truth_path.write_text(json.dumps(truth, indent=1) + "\n")
    meta = {
        "image": str(image),
        "truth": str(truth_path),
        "layout": layout,
        "size_factor": size_factor,
        "scale": scale,
        "seed": seed,
        "packages": list(packages),
        "rootfs_origin": origin,
        "layers": len(tars),
        "uncompressed_bytes": uncompressed,
        "base_layers_bytes": base_bytes,
        "image_bytes": image.stat().st_size,
        "secrets": len(truth["secrets"]),  # type: ignore[arg-type]
        "decoys": len(truth["decoys"]),  # type: ignore[arg-type]
        "build_seconds": round(time.monotonic() - t0, 1),
        "plant_sha": plant_sha(),
    }
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def main() -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-factor", type=int, default=1)
    ap.add_argument("--layout", choices=("gzip", "layers-gzip"), default="gzip")
    ap.add_argument("--packages", default=",".join(DEFAULT_PACKAGES))
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--gzip-level", type=int, default=6)
    ap.add_argument("--force", action="store_true", help="rebuild layers and image")
    ap.add_argument(
        "--scale",
        choices=("app", "uniform"),
        default="app",
        help="--size-factor > 1: repeat the app layer only, or the base and app layers",
    )
    a = ap.parse_args()
    packages = tuple(p for p in a.packages.split(",") if p)
    meta = build(a.size_factor, a.layout, packages, a.seed, a.force, a.gzip_level, a.scale)
    mb = int(meta["uncompressed_bytes"]) / 1e6
    print(
        f"{meta['image']}: {mb:.0f} MB uncompressed, {int(meta['image_bytes']) / 1e6:.0f} MB on "
        f"disk, {meta['layers']} layers, {meta['secrets']} secrets + {meta['decoys']} decoys, "
        f"built in {meta['build_seconds']} s ({meta['rootfs_origin']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
