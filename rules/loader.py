"""Load a rule file and check it, reporting every problem with its file and line."""

from __future__ import annotations

import hashlib
import shlex
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from rules.model import RuleSet
from suppliers.errors import RuleSetError

DEFAULT_RULES_NAME = "iso9001-8.4.yaml"

Location = tuple[str | int, ...]

_SCALARS = yaml.SafeLoader("")  # only its scalar constructors are used


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
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RuleSetError(f"not UTF-8 text (byte {exc.start})", where=source_name, fix="Save it as UTF-8.") from None
    data, lines = _parse_yaml(text, source_name)
    if not isinstance(data, dict):
        raise RuleSetError("a rule file must be a mapping of keys (name, version, criteria, bands, ...)",
                           where=f"{source_name}:1")
    content_hash = hashlib.sha256(raw).hexdigest()
    try:
        return RuleSet.model_validate({**data, "content_hash": content_hash})
    except ValidationError as exc:
        raise _rule_set_error([_describe(error, lines) for error in exc.errors()], source_name) from None


def _rule_set_error(problems: list[tuple[int | None, str]], source_name: str) -> RuleSetError:
    """One error for every problem, in file order: the first is the message, each other one a detail line."""
    located = [(f"{source_name}:{line}" if line else source_name, message)
               for line, message in sorted(dict.fromkeys(problems), key=lambda problem: problem[0] or 0)]
    (where, what), others = located[0], located[1:]
    fix = (f"Correct {'each line named' if others else 'that line'}, then check again: "
           f"supplier-eval rules check {shlex.quote(source_name)}")
    return RuleSetError(what, where=where, fix=fix, details=[f"{place}: {message}" for place, message in others])


def _parse_yaml(text: str, source_name: str) -> tuple[Any, dict[Location, int]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RuleSetError(f"not valid YAML: {problem}", where=f"{source_name}{line}",
                           fix="Check the indentation and the quoting on that line.") from None
    if node is None:
        raise RuleSetError("the rule file is empty", where=source_name)
    lines: dict[Location, int] = {}
    return _to_python(node, (), lines, source_name), lines


def _to_python(node: yaml.Node, location: Location, lines: dict[Location, int], source_name: str) -> Any:
    lines[location] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key in result:
                raise RuleSetError(f"key {key!r} appears twice", where=f"{source_name}:{key_node.start_mark.line + 1}",
                                   fix="Keep one of them.")
            result[key] = _to_python(value_node, (*location, key), lines, source_name)
            lines[(*location, key)] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*location, index), lines, source_name) for index, item in enumerate(node.value)]
    return _SCALARS.construct_object(node, deep=True)


def _describe(error: dict[str, Any], lines: dict[Location, int]) -> tuple[int | None, str]:
    """One validation error as (line, message), the message naming the key's path."""
    location: Location = tuple(part for part in error["loc"] if not isinstance(part, str) or part != "content_hash")
    location = tuple("from" if part == "lower" else "to" if part == "upper" else part for part in location)
    line = _nearest_line(location, lines)
    path = _dotted(location)
    kind = error["type"]
    if kind == "extra_forbidden":
        message = f"unknown key {location[-1]!r}{_allowed_keys(location)}"
    elif kind == "missing":
        message = f"missing required key {location[-1]!r}" if location else "missing required key"
    elif kind in ("literal_error", "enum"):
        message = f"{error['msg'].lower()}, got {error.get('input')!r}"
    else:
        message = str(error["msg"]).removeprefix("Value error, ")
        if "input" in error and not isinstance(error["input"], dict | list) and kind not in ("value_error",):
            message = f"{message} (got {error['input']!r})"
    return line, f"{path + ': ' if path else ''}{message}"


def _nearest_line(location: Location, lines: dict[Location, int]) -> int | None:
    for end in range(len(location), -1, -1):
        if location[:end] in lines:
            return lines[location[:end]]
    return None


def _dotted(location: Location) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _allowed_keys(location: Location) -> str:
    model: Any = RuleSet
    for part in location[:-1]:
        if isinstance(part, int):
            continue
        field = _field_by_key(model, part)
        if field is None:
            return ""
        model = _model_of(field.annotation)
        if model is None:
            return ""
    keys = [info.alias or name for name, info in model.model_fields.items() if name != "content_hash"]
    return f"; allowed here: {', '.join(keys)}"


def _field_by_key(model: Any, key: str) -> Any:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info
    return None


def _model_of(annotation: Any) -> Any:
    from typing import get_args

    candidates = [annotation, *get_args(annotation)]
    for candidate in candidates:
        for inner in (candidate, *get_args(candidate)):
            if isinstance(inner, type) and hasattr(inner, "model_fields"):
                return inner
    return None
