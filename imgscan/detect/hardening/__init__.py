"""Hardening checks: image-level analyzers for the Dockerfile mistakes an image shows.

Each analyzer implements ``imgscan.detect.base.ImageAnalyzer``; every check it
reports is listed, with id, severity and remediation, in ``catalog.CHECKS``.
"""

from __future__ import annotations

from imgscan.detect.base import ImageAnalyzer
from imgscan.detect.hardening.fs import FilesystemAnalyzer
from imgscan.detect.hardening.hygiene import HygieneAnalyzer
from imgscan.detect.hardening.privilege import PrivilegeAnalyzer
from imgscan.detect.hardening.process import ProcessAnalyzer
from imgscan.detect.hardening.provenance import ProvenanceAnalyzer
from imgscan.detect.hardening.user import UserAnalyzer


def default_analyzers() -> list[ImageAnalyzer]:
    """One instance of every hardening analyzer, in a fixed order."""
    return [
        UserAnalyzer(),
        FilesystemAnalyzer(),
        PrivilegeAnalyzer(),
        ProcessAnalyzer(),
        ProvenanceAnalyzer(),
        HygieneAnalyzer(),
    ]


__all__ = [
    "FilesystemAnalyzer",
    "HygieneAnalyzer",
    "PrivilegeAnalyzer",
    "ProcessAnalyzer",
    "ProvenanceAnalyzer",
    "UserAnalyzer",
    "default_analyzers",
]
