"""Where rule files are: the built-in signatures and ``--rules`` directories.

Kept apart from the rule engine so that a scan answered from the verdict cache can
fingerprint the rules without compiling (or importing) anything.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from imgscan.errors import RuleError


def builtin_rule_files() -> list[Traversable]:
    """The built-in ``signatures/*.toml``, by name."""
    root: Traversable
    try:
        root = files("imgscan.signatures")
    except ModuleNotFoundError:  # a source checkout on PYTHONPATH without the package mapping
        root = Path(__file__).resolve().parents[2] / "signatures"
    return sorted((f for f in root.iterdir() if f.name.endswith(".toml")), key=lambda f: f.name)


def dir_rule_files(d: Path) -> list[Path]:
    """The ``*.toml`` rule files of a ``--rules`` directory (or the file itself)."""
    if d.is_file():
        return [d]
    if not d.is_dir():
        raise RuleError(f"{d}: rules directory does not exist")
    return sorted(d.glob("*.toml"))


__all__ = ["builtin_rule_files", "dir_rule_files"]
