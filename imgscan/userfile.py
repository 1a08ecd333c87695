"""Reading the small files a user hands us (``.imgscan.toml``, baselines), bounded."""

from __future__ import annotations

import os

from imgscan.errors import ConfigError


def read_bounded(path: str | os.PathLike[str], limit: int, what: str) -> bytes:
    """The whole file, at most ``limit`` bytes; otherwise a one-line ConfigError on ``what``."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read ({exc.strerror})") from None
    if len(raw) > limit:
        raise ConfigError(f"{what}: larger than {limit} bytes")
    return raw


__all__ = ["read_bounded"]
