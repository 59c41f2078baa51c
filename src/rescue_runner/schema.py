"""JSON Schema validation of a loaded document, as findings that point at lines.

``validate_against_schema(doc, schema_name)`` validates ``doc.data`` with the schema
shipped in ``rescue_runner/schema_data/`` (Draft 2020-12, with a ``FormatChecker``:
without one jsonschema ignores ``format``). It is generic: any schema in that folder
(the request format, the repository config ...) can be named.

Code (severity ``error``):

======  ==========================================================================
RR010   The document does not match its schema: unknown key (with "did you mean"
        and the allowed keys), missing key, wrong type ("'no' is a string; write
        true or false"), value out of range, text that does not match the expected
        form (the schema's ``patternErrorMessage`` says which form).
======  ==========================================================================

Decisions:

* Each error becomes one finding at the line of the offending key (``doc.line_of``);
  several unknown keys in one mapping give one finding each, at each key's line.
  Findings are sorted by line, then message, and exact duplicates are dropped.
* At most 50 findings per document; the 50th says how many more there are.
* Messages name the place as a dotted path (``window.daily.start``, ``select[2]``) and
  never quote more than 60 characters of a value.
* ``patternErrorMessage`` (a non-standard keyword also understood by VS Code's
  language services) gives the message for a failed ``pattern``.
* The shipped schemas check dates and times by pattern, not ``format``: the
  ``date-time`` format checker depends on an optional package, and calendar validity
  (2026-02-30) is reported as RR012 by ``rescue_runner.request`` with a precise message.
  Schemas here should only use formats whose checkers need no optional package.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError

from rescue_runner.model import DocPath, Finding, RawDocument, Severity

__all__ = ["REQUEST_SCHEMA", "load_schema", "validate_against_schema"]

REQUEST_SCHEMA = "rescue-request.v1.json"
_CODE = "RR010"
_MAX_FINDINGS = 50
_SCHEMA_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*\.json$")


def load_schema(schema_name: str = REQUEST_SCHEMA) -> dict[str, Any]:
    """A copy of the schema ``schema_name`` shipped in ``rescue_runner/schema_data``."""
    return copy.deepcopy(_schema(schema_name))


@functools.cache
def _schema(schema_name: str) -> dict[str, Any]:
    if not _SCHEMA_NAME.match(schema_name):
        raise ValueError(f"schema name {schema_name!r} is not a file name in rescue_runner/schema_data")
    text = resources.files("rescue_runner").joinpath("schema_data", schema_name).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator(schema_name: str) -> Draft202012Validator:
    schema = _schema(schema_name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


def validate_against_schema(doc: RawDocument, schema_name: str = REQUEST_SCHEMA) -> list[Finding]:
    """Validate ``doc.data`` against a shipped schema; one RR010 finding per problem, sorted by line."""
    explained = [item for error in _validator(schema_name).iter_errors(doc.data) for item in _explain(error)]
    # A typo gives "unknown key 'selct' (did you mean 'select'?)" and "missing key 'select'":
    # the first already says it all, so drop the second.
    suggested = {(e.parent, e.suggestion) for e in explained if e.suggestion}
    findings: set[Finding] = set()
    for e in explained:
        if e.missing and any((e.parent, name) in suggested for name in e.missing):
            continue
        line = doc.line_of(e.doc_path)
        findings.add(Finding(_CODE, Severity.ERROR, e.message, doc.path, line if line is not None else 1))
    ordered = sorted(findings, key=lambda f: (f.line or 0, f.message))
    if len(ordered) > _MAX_FINDINGS:
        rest = len(ordered) - _MAX_FINDINGS + 1
        last = ordered[_MAX_FINDINGS - 1]
        note = (
            f"... and {rest} more schema problems from line {last.line} on; fix the ones above and run again"
        )
        ordered = [*ordered[: _MAX_FINDINGS - 1], Finding(_CODE, Severity.ERROR, note, doc.path, last.line)]
    return ordered


@dataclass(frozen=True)
class _Explained:
    doc_path: DocPath
    message: str
    parent: DocPath = ()
    suggestion: str | None = None  # an unknown key's close match
    missing: tuple[str, ...] = ()  # keys whose absence (alone) caused the error


def _explain(error: ValidationError) -> Iterator[_Explained]:
    """The findings (without line) for one jsonschema error."""
    path: DocPath = tuple(error.absolute_path)
    where = _where(path)
    keyword = error.validator
    value = error.validator_value
    instance = error.instance
    schema = error.schema if isinstance(error.schema, dict) else {}

    if keyword == "additionalProperties" and isinstance(instance, dict):
        allowed = sorted(schema.get("properties", {}))
        patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
        for key in instance:
            if key in allowed or any(p.search(str(key)) for p in patterns):
                continue
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            message = (
                f"unknown key '{_clip(str(key))}' at {_place(path)}{hint}; allowed keys: {', '.join(allowed)}"
            )
            yield _Explained((*path, key), message, path, close[0] if close else None)
        return
    if keyword == "required" and isinstance(instance, dict):
        for name in value:
            if name not in instance:
                about = _first_sentence(schema.get("properties", {}).get(name, {}).get("description", ""))
                message = f"missing required key '{name}' at {_place(path)}; add it" + (
                    f" ({about})" if about else ""
                )
                yield _Explained(path, message, path, missing=(name,))
        return
    if keyword == "dependentRequired" and isinstance(instance, dict):
        for trigger, needed in value.items():
            if trigger in instance:
                for name in needed:
                    if name not in instance:
                        message = f"{where}: '{trigger}' needs '{name}' as well; add '{name}'"
                        yield _Explained((*path, trigger), message, path, missing=(name,))
        return
    if keyword in ("anyOf", "oneOf") and _only_required(value):
        names = tuple(n for sub in value for n in sub["required"])
        yield _Explained(path, f"{where}: give at least one of {', '.join(names)}", path, missing=names)
        return
    yield _Explained(path, f"{where}: {_describe(keyword, value, instance, schema, error)}")


def _describe(keyword: Any, value: Any, instance: Any, schema: dict[str, Any], error: ValidationError) -> str:
    shown = _show(instance)
    if keyword == "type":
        return _type_message(value, instance)
    if keyword == "const":
        return f"must be {_show(value)}, found {shown}"
    if keyword == "enum":
        return f"must be one of {', '.join(_show(v) for v in value)}, found {shown}"
    if keyword == "pattern":
        return f"{shown} {schema.get('patternErrorMessage') or 'does not have the expected form ' + value}"
    if keyword == "minLength":
        if instance == "":
            return "must not be empty"
        return f"{shown} is too short ({len(instance)} characters; at least {value})"
    if keyword == "maxLength":
        return f"too long ({len(instance)} characters; at most {value}): shorten it"
    if keyword == "minItems":
        return "must not be an empty list" if not instance else f"needs at least {value} items"
    if keyword == "maxItems":
        return f"has {len(instance)} items; at most {value} are allowed"
    if keyword == "minProperties":
        return "must not be empty: give at least one setting, or remove the key"
    if keyword == "minimum":
        return f"{shown} is too small; the minimum is {value}"
    if keyword == "exclusiveMinimum":
        return f"{shown} is too small; it must be more than {value}"
    if keyword == "maximum":
        return f"{shown} is too large; the maximum is {value}"
    if keyword == "exclusiveMaximum":
        return f"{shown} is too large; it must be less than {value}"
    if keyword == "format":
        return f"{shown} is not a valid {value}"
    return _clip(error.message, 200)


def _type_message(expected: Any, instance: Any) -> str:
    wanted = [expected] if isinstance(expected, str) else list(expected)
    found = _kind(instance)
    shown = _show(instance)
    if isinstance(instance, str):
        if wanted == ["boolean"]:
            return f"{shown} is a string; write true or false (without quotes)"
        if set(wanted) <= {"integer", "number"} and re.fullmatch(r"\s*[-+]?[0-9][0-9_.eE+-]*\s*", instance):
            return f"{shown} is a string; write the number without quotes"
    if wanted == ["integer"] and isinstance(instance, float):
        return f"{shown} is not a whole number; write an integer"
    if "string" in wanted and isinstance(instance, bool | int | float):
        return f'{shown} is {found}; write it in quotes if you mean the text "{shown}"'
    if isinstance(instance, str | int | float) and not isinstance(instance, bool):
        return f"expected {_or(wanted)}, found {found} {shown}"
    return f"expected {_or(wanted)}, found {found}"


_KIND_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
    "null": "nothing (null)",
}


def _or(kinds: list[str]) -> str:
    names = [_KIND_NAMES.get(k, k) for k in kinds]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _kind(instance: Any) -> str:
    if instance is None:
        return "nothing (null)"
    if isinstance(instance, bool):
        return "a boolean"
    if isinstance(instance, int | float):
        return "a number"
    if isinstance(instance, str):
        return "a string"
    if isinstance(instance, list):
        return "a list"
    if isinstance(instance, dict):
        return "a mapping"
    return type(instance).__name__


def _show(value: Any) -> str:
    """A short YAML-like rendering of a value for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _clip(repr(value))
    if isinstance(value, str):
        return "'" + _clip(value) + "'"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return _clip(repr(value))


def _where(path: DocPath) -> str:
    if not path:
        return "top level"
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return _clip(text, 120)


def _place(path: DocPath) -> str:
    return "the top level" if not path else f"'{_where(path)}'"


def _only_required(subschemas: Any) -> bool:
    return (
        isinstance(subschemas, list)
        and bool(subschemas)
        and all(isinstance(s, dict) and set(s) == {"required"} for s in subschemas)
    )


def _first_sentence(text: str) -> str:
    head = re.split(r"(?<!e\.g)(?<!i\.e)\.\s", text)[0].strip().rstrip(".")
    return head[:1].lower() + head[1:]


def _clip(text: str, limit: int = 60) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."
