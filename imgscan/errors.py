"""The error hierarchy: a failure of the whole run is an ImgscanError."""

from __future__ import annotations


class ImgscanError(Exception):
    """Base of every error imgscan raises on purpose; the CLI turns it into one line."""

    exit_code = 3


class SourceError(ImgscanError):
    """The image could not be read: missing file, bad archive, unreachable engine/registry."""


class LayerError(ImgscanError):
    """A layer is corrupt, truncated, or fails its digest check."""


class RuleError(ImgscanError):
    """A rule file is invalid; the message names the file and rule."""

    exit_code = 2


class ConfigError(ImgscanError):
    """A configuration file or option value is invalid (a usage error)."""

    exit_code = 2


class AuthError(SourceError):
    """A registry refused our credentials or demanded some we do not have."""
