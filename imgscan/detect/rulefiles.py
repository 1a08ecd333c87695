"""Where rule files are (the built-in signatures, ``--rules`` directories) and the digest
that names a rule set.

Kept apart from the rule engine so that a scan answered from the verdict cache, or a
``watch`` run with nothing new, can name the rule set without compiling (or importing)
any rule.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from imgscan.errors import RuleError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable


def builtin_rule_files() -> list[Traversable]:
    """The built-in ``signatures/*.toml``, by name."""
    root: Traversable
    package = Path(__file__).resolve().parents[1]
    if (package / "signatures").is_dir():  # installed: imgscan/signatures/ beside the code
        root = package / "signatures"
    elif (package.parent / "signatures").is_dir():  # a source checkout (editable or not)
        root = package.parent / "signatures"
    else:  # installed somewhere that is not a directory tree (a zip): ask importlib
        from importlib.resources import files

        root = files("imgscan.signatures")
    return sorted((f for f in root.iterdir() if f.name.endswith(".toml")), key=lambda f: f.name)


def dir_rule_files(d: Path) -> list[Path]:
    """The ``*.toml`` rule files of a ``--rules`` directory (or the file itself)."""
    if d.is_file():
        return [d]
    if not d.is_dir():
        raise RuleError(f"{d}: rules directory does not exist")
    return sorted(d.glob("*.toml"))


def rule_sources(
    extra_dirs: Sequence[Path] = (), builtin: bool = True
) -> list[tuple[str, str, bool]]:
    """(where, text, built in?) of every rule file: the built-in ones, then each extra
    directory's."""
    sources: list[tuple[str, str, bool]] = []
    if builtin:
        for tf in builtin_rule_files():
            sources.append((f"signatures/{tf.name}", tf.read_text("utf-8"), True))
    for d in extra_dirs:
        for p in dir_rule_files(Path(d)):
            try:
                sources.append((str(p), p.read_text("utf-8"), False))
            except (OSError, UnicodeDecodeError) as exc:
                raise RuleError(f"{p}: cannot read rule file: {exc}") from None
    return sources


def sources_digest(sources: Sequence[tuple[str, str, bool]], disabled: Collection[str] = ()) -> str:
    """The rule set's name: every file's name and text, in order, and the disabled ids."""
    h = hashlib.sha256()
    for where, text, _ in sources:
        h.update(where.rsplit("/", 1)[-1].encode() + b"\0" + text.encode() + b"\0")
    h.update(json.dumps(sorted(set(disabled))).encode())
    return h.hexdigest()


def ruleset_digest(
    extra_dirs: Sequence[Path] = (), disabled: Collection[str] = (), builtin: bool = True
) -> str:
    """``load_ruleset(...).hash`` without parsing or compiling a rule."""
    return sources_digest(rule_sources(extra_dirs, builtin), disabled)


__all__ = [
    "builtin_rule_files",
    "dir_rule_files",
    "rule_sources",
    "ruleset_digest",
    "sources_digest",
]
