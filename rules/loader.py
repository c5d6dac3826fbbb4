"""Load a rule file and check it, reporting every problem with its file and line."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

from rules.model import RuleSet
from suppliers.errors import RuleSetError
from suppliers.yamlfile import load_model, parse_yaml

DEFAULT_RULES_NAME = "iso9001-8.4.yaml"


def default_rules_path() -> Path:
    """The shipped ISO 9001:2015 clause 8.4 rule set."""
    return Path(str(resources.files("rules") / DEFAULT_RULES_NAME))


def load_rule_set(path: Path | str | None = None) -> RuleSet:
    """Read, parse and check a rule file.

    Raise one RuleSetError: ``where`` is ``file:line`` of the first problem in the file, and each further problem
    is a detail ``file:line: ...``.
    """
    path = Path(path) if path is not None else default_rules_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RuleSetError(
            "rule file not found", where=str(path),
            fix=f"Pass an existing file, or omit it to use {DEFAULT_RULES_NAME}.",
        ) from None
    except OSError as exc:
        raise RuleSetError(f"cannot read the rule file ({exc.strerror})", where=str(path)) from None
    return parse_rule_set(raw, source_name=str(path))


def parse_rule_set(raw: bytes, *, source_name: str) -> RuleSet:
    document = parse_yaml(raw, source_name=source_name, error=RuleSetError, command="supplier-eval rules check",
                          noun="rule file")
    return load_model(document, RuleSet, noun="rule file (name, version, criteria, bands, ...)",
                      extra={"content_hash": hashlib.sha256(raw).hexdigest()}, hidden=("content_hash",),
                      renames={"lower": "from", "upper": "to"})


def rule_file_text(path: Path | str | None, content_hash: str) -> str | None:
    """The text of the rule file that was loaded with ``content_hash`` (the shipped rules when ``path`` is None);
    None when the file has changed or gone since: its text is then not the one that was used."""
    try:
        raw = (Path(path) if path is not None else default_rules_path()).read_bytes()
    except OSError:
        return None
    if hashlib.sha256(raw).hexdigest() != content_hash:
        return None
    return raw.decode("utf-8", errors="replace")
