"""Micro-benchmark: walk every layer of an image, reading all content, old vs new walker.

    python bench/walk_micro.py [IMAGE ...] [--repeat N]

Reports CPU seconds (process time, best of N) and entries/s for the tarfile-based
reference walker (``_TarfileWalker``) and the stream walker (``LayerWalker``), in the same
run. Content is read the way ``imgscan.scan.scan_layer`` reads it: small files whole, big
ones in 8 MiB chunks. A separate, untimed pass hashes every event and every content byte
of both walkers (and any LayerError they raise) and fails if they differ.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imgscan.errors import LayerError
from imgscan.layers.walker import LayerWalker, WalkLimits, _TarfileWalker
from imgscan.model import EntryKind
from imgscan.sources.archive import open_path
from imgscan.sources.base import LayerBlob, SourceOptions

CHUNK = 8 * 1024 * 1024
DEFAULT_IMAGES = ["bench/.work/image-x1-lg.tar", "bench/.work/image-x1.tar.gz"]
Make = Callable[[LayerBlob, WalkLimits], LayerWalker]


def walk_layer(walker: LayerWalker, h: Any | None) -> int:
    """Walk one layer reading all content (hashing events and bytes into ``h`` if given)."""
    entries = 0
    for entry in walker:
        entries += 1
        ev = entry.event
        if h is not None:
            h.update(repr(ev).encode())
        reader = entry.reader
        if ev.kind is not EntryKind.FILE or reader is None:
            continue
        if ev.size <= CHUNK:
            data = reader.read(ev.size)
            if h is not None:
                h.update(data)
            continue
        while chunk := reader.read(CHUNK):
            if h is not None:
                h.update(chunk)
    return entries


def walk_image(blobs: tuple[LayerBlob, ...], make: Make, h: Any | None) -> tuple[int, int]:
    """Walk every layer: (entries, layers that raised a LayerError)."""
    entries = errors = 0
    for blob in blobs:
        try:
            entries += walk_layer(make(blob, WalkLimits()), h)
        except LayerError as exc:
            errors += 1
            if h is not None:
                h.update(str(exc).encode())
    return entries, errors


def main() -> int:
    """Run the comparison and print one line per (image, walker)."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("images", nargs="*", default=DEFAULT_IMAGES)
    ap.add_argument("--repeat", type=int, default=3, help="best of N timed runs")
    args = ap.parse_args()
    walkers: list[tuple[str, Make]] = [
        ("tarfile (old)", _TarfileWalker),
        ("stream (new)", LayerWalker),
    ]
    status = 0
    for image in args.images:
        with open_path(image, SourceOptions()) as img:
            digests = set()
            for _name, make in walkers:
                h = hashlib.blake2b(digest_size=16)
                walk_image(img.blobs, make, h)
                digests.add(h.hexdigest())
            same = "identical events+content" if len(digests) == 1 else "WALKERS DISAGREE"
            status |= len(digests) != 1
            best: dict[str, float] = {}
            for _round in range(args.repeat):
                for name, make in walkers:
                    t0 = time.process_time()
                    n, errors = walk_image(img.blobs, make, None)
                    best[name] = min(best.get(name, float("inf")), time.process_time() - t0)
            for name, _make in walkers:
                note = f"  ({errors} layer errors)" if errors else ""
                print(
                    f"{Path(image).name:22} {name:14} cpu {best[name]:6.3f} s  {n:6d} entries  "
                    f"{n / best[name]:8.0f} entries/s{note}"
                )
            old, new = best[walkers[0][0]], best[walkers[1][0]]
            print(f"{Path(image).name:22} speed-up x{old / new:.2f} ({same})")
    return status


if __name__ == "__main__":
    sys.exit(main())
