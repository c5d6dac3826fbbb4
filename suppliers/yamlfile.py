"""Files people write in YAML (rule sets, mappings): parsed with line numbers, checked by a pydantic model.

Every problem is reported at its ``file:line`` with the key's path; a file with several problems raises one
error naming the first (in file order), with each other one as a detail line below it.
"""

from __future__ import annotations

import shlex
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from suppliers.errors import SupplierEvalError

__all__ = ["Location", "YamlDocument", "parse_yaml", "load_model"]

Location = tuple[str | int, ...]
Model = TypeVar("Model", bound=BaseModel)

_SCALARS = yaml.SafeLoader("")  # only its scalar constructors are used


@dataclass(frozen=True)
class YamlDocument:
    """A parsed YAML file: its data, the line of every key and item, and how to report a problem in it."""

    data: Any
    lines: Mapping[Location, int]
    source_name: str
    error: type[SupplierEvalError]
    command: str  # the command that checks such a file, e.g. "supplier-eval rules check"

    def line_of(self, location: Location) -> int | None:
        """The line of ``location``, or of its nearest enclosing key."""
        for end in range(len(location), -1, -1):
            if location[:end] in self.lines:
                return self.lines[location[:end]]
        return None

    def fail(self, problems: Iterable[tuple[Location, str]]) -> SupplierEvalError:
        """One error for every problem, in file order: the first is the message, each other one a detail line."""
        located = sorted(dict.fromkeys((self.line_of(location), f"{_dotted(location) + ': ' if location else ''}"
                                        f"{message}") for location, message in problems),
                         key=lambda problem: problem[0] or 0)
        places = [(f"{self.source_name}:{line}" if line else self.source_name, message) for line, message in located]
        (where, what), others = places[0], places[1:]
        fix = (f"Correct {'each line named' if others else 'that line'}, then check again: "
               f"{self.command} {shlex.quote(self.source_name)}")
        return self.error(what, where=where, fix=fix, details=[f"{place}: {message}" for place, message in others])


def parse_yaml(raw: bytes, *, source_name: str, error: type[SupplierEvalError], command: str,
               noun: str) -> YamlDocument:
    """Decode and parse; a duplicate key, bad YAML or an empty file is an ``error`` at its line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"not UTF-8 text (byte {exc.start})", where=source_name, fix="Save it as UTF-8.") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(f"not valid YAML: {problem}", where=f"{source_name}{line}",
                    fix="Check the indentation and the quoting on that line.") from None
    if node is None:
        raise error(f"the {noun} is empty", where=source_name)
    lines: dict[Location, int] = {}
    data = _to_python(node, (), lines, source_name, error)
    return YamlDocument(data=data, lines=lines, source_name=source_name, error=error, command=command)


def load_model(document: YamlDocument, model: type[Model], *, noun: str, extra: Mapping[str, Any] | None = None,
               hidden: Collection[str] = (), renames: Mapping[str, str] | None = None) -> Model:
    """Check the document against ``model``; every validation problem is reported with its line.

    ``extra`` are values the loader adds (never written in the file, so ``hidden`` from messages); ``renames``
    maps a field's Python name to the word the file uses where pydantic reports the former.
    """
    if not isinstance(document.data, dict):
        raise document.error(f"a {noun} must be a mapping of keys", where=f"{document.source_name}:1")
    try:
        return model.model_validate({**document.data, **(extra or {})})
    except ValidationError as exc:
        problems = [_describe(error, model, hidden, renames or {}) for error in exc.errors()]
        raise document.fail(problems) from None


def _to_python(node: yaml.Node, location: Location, lines: dict[Location, int], source_name: str,
               error: type[SupplierEvalError]) -> Any:
    lines[location] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key in result:
                raise error(f"key {key!r} appears twice", where=f"{source_name}:{key_node.start_mark.line + 1}",
                            fix="Keep one of them.")
            result[key] = _to_python(value_node, (*location, key), lines, source_name, error)
            lines[(*location, key)] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*location, index), lines, source_name, error)
                for index, item in enumerate(node.value)]
    return _SCALARS.construct_object(node, deep=True)


def _describe(error: Mapping[str, Any], model: type[BaseModel], hidden: Collection[str],
              renames: Mapping[str, str]) -> tuple[Location, str]:
    """One validation error as (location, message)."""
    location: Location = tuple(renames.get(part, part) if isinstance(part, str) else part
                               for part in error["loc"] if part not in hidden)
    kind = error["type"]
    if kind == "extra_forbidden":
        message = f"unknown key {location[-1]!r}{_allowed_keys(model, location, hidden)}"
    elif kind == "missing":
        message = f"missing required key {location[-1]!r}" if location else "missing required key"
    elif kind in ("literal_error", "enum"):
        message = f"{error['msg'].lower()}, got {error.get('input')!r}"
    else:
        message = str(error["msg"]).removeprefix("Value error, ")
        if "input" in error and not isinstance(error["input"], dict | list) and kind != "value_error":
            message = f"{message} (got {error['input']!r})"
    return location, message


def _dotted(location: Location) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _allowed_keys(model: type[BaseModel], location: Location, hidden: Collection[str]) -> str:
    current: Any = model
    keyed_by_name = False  # the part after a mapping of models (sources by name) is a name, not a field
    for part in location[:-1]:
        if isinstance(part, int) or keyed_by_name:
            keyed_by_name = False
            continue
        field = next((info for name, info in current.model_fields.items() if part in (name, info.alias)), None)
        if field is None:
            return ""
        keyed_by_name = get_origin(field.annotation) in (dict, Mapping) or any(
            get_origin(arg) in (dict, Mapping) for arg in get_args(field.annotation))
        current = _model_of(field.annotation)
        if current is None:
            return ""
    keys = [info.alias or name for name, info in current.model_fields.items() if name not in hidden]
    return f"; allowed here: {', '.join(keys)}"


def _model_of(annotation: Any) -> Any:
    for candidate in (annotation, *get_args(annotation)):
        for inner in (candidate, *get_args(candidate)):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
    return None
