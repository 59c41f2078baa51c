"""Strict, safe loading of one YAML file into a ``RawDocument`` (plain data plus line marks).

A rescue request arrives in a pull request, so every byte is untrusted. The loader never
raises for bad content: it returns ``(None, findings)``. Checks run cheapest first and all
of them before any Python object is built from the YAML:

1. bytes: size limit (checked with ``fstat``/``len`` before reading), empty, byte order
   marks, NUL bytes, UTF-8 decoding, forbidden characters;
2. parse *events* with PyYAML's pure-Python parser (the C parser segfaults on deep
   nesting): aliases, anchors, tags, directives, merge keys, a second document and
   nesting deeper than ``max_depth`` are rejected here; the depth check stops at the first
   level too deep, so a 100,000-level ``[[[[...`` costs microseconds;
3. compose the recorded events into nodes, resolving plain scalars by the YAML 1.2 *core*
   schema only (see below);
4. build plain data (dict, list, str, int, float, bool, None) and the line of every node.

Codes (all severity ``error``):

======  ==========================================================================
RR001   The file cannot be read as a text request: unreadable, not a regular file or a
        symbolic link, larger than ``max_bytes``, empty or only comments, UTF-16/32,
        NUL bytes (binary), not UTF-8, or a forbidden character (control characters,
        invisible bidirectional controls, U+2028/U+2029, a stray U+FEFF), including
        such characters written as escapes (``"\\e"``, ``"\\u202e"``) inside quoted strings.
RR002   YAML syntax error (the line is the parser's problem mark).
RR003   Forbidden YAML construct: alias, anchor, explicit tag (``!!python/...``,
        ``!!binary``, ``!!set``, ``!Ref`` and even ``!!str``), merge key ``<<``,
        ``%YAML``/``%TAG`` directive, more than one document.
RR004   Nesting deeper than ``max_depth`` (default 10) mappings/lists.
RR005   Duplicate key in a mapping (reported at the duplicate, naming the first line).
RR006   Wrong shape: the top level is not a mapping, a key is not a string (``1:``,
        ``null:``, ``true:``, ``? [a, b]``), or an integer too long to convert.
======  ==========================================================================

Decisions a user may need to know:

* Scalars follow the YAML 1.2 core schema, not PyYAML's YAML 1.1 defaults: only
  ``true/True/TRUE/false/False/FALSE`` are booleans (``no``, ``off``, ``y`` stay strings
  and the schema then says "write true or false"); ``null/Null/NULL/~`` and empty are
  null; ``[-+]?[0-9]+`` is an int; ``1.5``, ``1e3`` are floats; *everything else is a
  string*: ``22:00`` stays ``"22:00"`` (not 1320), timestamps stay strings (and are parsed
  strictly later), ``0o17``, ``0x1F``, ``.inf`` and ``.nan`` stay strings. Quoted scalars
  are always strings.
* A UTF-8 byte order mark at the very start is accepted and ignored (some Windows
  editors add one); UTF-16/UTF-32 files are rejected with a "save as UTF-8" message.
  ``content_hash`` is always the SHA-256 of the raw bytes, BOM included.
* Symbolic links are refused: a link in a pull request could point the tool at any file
  on the machine that runs it.
* ``lines`` maps each key's DocPath to the line of the key, each list item to the line
  where the item starts, and ``()`` to line 1.
* At most 20 findings are reported per file; fix them and run again to see more.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    Event,
    MappingStartEvent,
    NodeEvent,
    ScalarEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

from rescue_runner.model import DocPath, Finding, RawDocument, Severity

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_DEPTH", "load_document", "load_text"]

DEFAULT_MAX_BYTES = 65536
DEFAULT_MAX_DEPTH = 10
_MAX_FINDINGS = 20

_UTF8_BOM = b"\xef\xbb\xbf"
_WIDE_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)

# Characters refused anywhere in the file. A superset of what PyYAML's reader refuses,
# plus characters that make a reviewed file display differently from what it says.
_FORBIDDEN_IN_FILE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff\ufffe\uffff]"
)
# The same inside decoded strings (escapes such as "\e" or "\u202e"), plus CR and lone
# surrogates ("\ud800" is a legal YAML escape but cannot be written back as UTF-8).
_FORBIDDEN_IN_VALUE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff\ufffe\uffff\ud800-\udfff]"
)

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"


class _CoreResolver(BaseResolver):
    """Resolves plain scalars by the YAML 1.2 core schema; everything else is a string.

    ``add_implicit_resolver`` gives this class its own copy of BaseResolver's (empty) table,
    so none of PyYAML's YAML 1.1 resolvers (yes/no, sexagesimal, timestamps) apply.
    """


_CoreResolver.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_CoreResolver.add_implicit_resolver(_NULL, re.compile(r"^(?:null|Null|NULL|~|)$"), ["n", "N", "~", ""])
_CoreResolver.add_implicit_resolver(_INT, re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
_CoreResolver.add_implicit_resolver(
    _FLOAT,
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$"),
    list("-+.0123456789"),
)


class _EventLoader(Reader, Scanner, Parser):
    """PyYAML's pure-Python reader, scanner and parser: events only, no objects."""

    def __init__(self, text: str) -> None:
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)


class _ReplayComposer(Composer, _CoreResolver):
    """Composes nodes from events already scanned and checked (the file is parsed once)."""

    def __init__(self, events: list[Event]) -> None:
        Composer.__init__(self)
        _CoreResolver.__init__(self)
        self._events = events
        self._pos = 0

    def check_event(self, *choices: type) -> bool:
        if self._pos >= len(self._events):
            return False
        return not choices or isinstance(self._events[self._pos], choices)

    def peek_event(self) -> Event:
        return self._events[self._pos]

    def get_event(self) -> Event:
        event = self._events[self._pos]
        self._pos += 1
        return event


def load_document(
    path: Path,
    display_path: str | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> tuple[RawDocument | None, list[Finding]]:
    """Load one YAML file strictly. Never raises for bad content or an unreadable file.

    ``display_path`` is the path shown in findings (e.g. relative to the repository);
    it defaults to ``path`` as given. Returns the document, or ``None`` and findings.
    """
    display = display_path if display_path is not None else path.as_posix()
    try:
        # No following of a symlink; no blocking on a FIFO; size from the open descriptor.
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        if not hasattr(os, "O_NOFOLLOW") and path.is_symlink():
            return None, [_symlink_finding(display)]
        fd = os.open(path, flags)
    except OSError as exc:
        if path.is_symlink():
            return None, [_symlink_finding(display)]
        return None, [
            _f("RR001", display, 1, f"cannot read the file ({exc.strerror or exc}); check the path")
        ]
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None, [_f("RR001", display, 1, "is not a regular file; a rescue request is a YAML file")]
        if info.st_size > max_bytes:
            return None, [_too_large(display, info.st_size, max_bytes)]
        with os.fdopen(fd, "rb", closefd=False) as handle:
            raw = handle.read(max_bytes + 1)
    except OSError as exc:
        return None, [
            _f("RR001", display, 1, f"cannot read the file ({exc.strerror or exc}); check the path")
        ]
    finally:
        os.close(fd)
    return load_text(raw, display, max_bytes=max_bytes, max_depth=max_depth)


def load_text(
    text_or_bytes: str | bytes,
    display_path: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> tuple[RawDocument | None, list[Finding]]:
    """Load YAML content held in memory (e.g. a file read from a git ref) strictly.

    ``str`` content is encoded as UTF-8 first, so ``content_hash`` is the same as for the
    file. Never raises for bad content; see the module docstring for the checks and codes.
    """
    display = display_path
    if isinstance(text_or_bytes, str):
        if len(text_or_bytes) > max_bytes:  # every character is at least one byte
            return None, [_too_large(display, None, max_bytes)]
        try:
            raw = text_or_bytes.encode("utf-8")
        except UnicodeEncodeError as exc:
            line = text_or_bytes.count("\n", 0, exc.start) + 1
            return None, [
                _f(
                    "RR001",
                    display,
                    line,
                    "contains a lone surrogate character that is not valid UTF-8; remove it",
                )
            ]
    else:
        raw = bytes(text_or_bytes)
    if len(raw) > max_bytes:
        return None, [_too_large(display, len(raw), max_bytes)]

    text, findings = _decode(raw, display)
    if text is None:
        return None, findings

    events, findings = _scan(text, display, max_depth)
    if events is None:
        return None, findings

    try:
        node = _ReplayComposer(events).get_single_node()
    except yaml.YAMLError as exc:  # not expected after the scan; kept so bad content never raises
        return None, [_syntax_finding(exc, display)]
    except RecursionError:
        return None, [_f("RR004", display, 1, "nesting too deep to read; flatten the file")]
    if node is None:
        return None, [
            _f(
                "RR001",
                display,
                1,
                "holds no YAML content (only comments or blank lines); "
                "write the request as 'key: value' lines",
            )
        ]

    builder = _Builder(display)
    if not isinstance(node, MappingNode):
        return None, [
            _f(
                "RR006",
                display,
                node.start_mark.line + 1,
                f"the top level is {_node_kind(node)}; a rescue request is a mapping of keys "
                "such as 'version: 1' and 'reason: ...', one per line",
            )
        ]
    data = builder.build(node, ())
    if builder.findings:
        return None, builder.findings
    content_hash = "sha256:" + hashlib.sha256(raw).hexdigest()
    return RawDocument(path=display, data=data, lines=builder.lines, content_hash=content_hash), []


def _decode(raw: bytes, display: str) -> tuple[str | None, list[Finding]]:
    """Bytes to text, or findings (RR001): empty, wide encodings, binary, not UTF-8, bad characters."""
    if not raw:
        return None, [
            _f("RR001", display, 1, "the file is empty; write a rescue request (see the docs for an example)")
        ]
    for bom, name in _WIDE_BOMS:
        if raw.startswith(bom):
            return None, [
                _f("RR001", display, 1, f"the file is encoded as {name}; save it as UTF-8 (without BOM)")
            ]
    nul = raw.find(b"\x00")
    if nul >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        return None, [
            _f(
                "RR001",
                display,
                line,
                f"contains NUL bytes (first at line {line}): it looks like a "
                "binary file or UTF-16 text; a rescue request is UTF-8 text",
            )
        ]
    body = raw[len(_UTF8_BOM) :] if raw.startswith(_UTF8_BOM) else raw
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body.count(b"\n", 0, exc.start) + 1
        return None, [
            _f(
                "RR001",
                display,
                line,
                f"is not valid UTF-8: byte 0x{body[exc.start]:02x} at line {line} "
                "(Latin-1 or Windows-1252?); save the file as UTF-8",
            )
        ]
    bad = _FORBIDDEN_IN_FILE.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        return None, [_f("RR001", display, line, _character_problem(bad.group(), line))]
    if not text.strip():
        return None, [
            _f("RR001", display, 1, "the file is empty; write a rescue request (see the docs for an example)")
        ]
    return text, []


def _character_problem(char: str, line: int) -> str:
    code = f"U+{ord(char):04X}"
    if "\u202a" <= char <= "\u202e" or "\u2066" <= char <= "\u2069":
        return (
            f"contains the invisible bidirectional-text control {code} at line {line}, which can make "
            "the file display differently from what it says; remove it"
        )
    if char in "\u2028\u2029":
        return (
            f"contains the line/paragraph separator {code} at line {line} (editors disagree on whether it "
            "breaks a line); remove it"
        )
    if char == "\ufeff":
        return f"contains a byte order mark ({code}) inside the text at line {line}; remove it"
    if char in "\ufffe\uffff":
        return f"contains the non-character {code} at line {line}; remove it"
    return (
        f"contains the control character {code} at line {line}; remove it "
        "(a rescue request is plain text; use spaces, not control characters)"
    )


def _scan(text: str, display: str, max_depth: int) -> tuple[list[Event] | None, list[Finding]]:
    """Parse events, rejecting forbidden constructs; the events if the file is clean."""
    loader = _EventLoader(text)
    events: list[Event] = []
    findings: list[Finding] = []
    # One entry per open collection: True while a mapping expects a key next.
    expecting_key: list[bool | None] = []
    documents = 0
    try:
        while loader.check_event() and len(findings) < _MAX_FINDINGS:
            event = loader.get_event()
            line = event.start_mark.line + 1
            if isinstance(event, DocumentStartEvent):
                documents += 1
                if documents > 1:
                    findings.append(
                        _f(
                            "RR003",
                            display,
                            line,
                            "the file holds more than one YAML document; a rescue "
                            "request is exactly one: remove the second '---' (or '...') and what follows, "
                            "or move it to its own file",
                        )
                    )
                    break
                if getattr(event, "version", None) or getattr(event, "tags", None):
                    findings.append(
                        _f(
                            "RR003",
                            display,
                            line,
                            "remove the '%YAML'/'%TAG' directive: directives are "
                            "not allowed in rescue requests",
                        )
                    )
            elif isinstance(event, AliasEvent):
                findings.append(
                    _f(
                        "RR003",
                        display,
                        line,
                        f"remove the alias '*{event.anchor}' and write the value "
                        "out: aliases are not allowed in rescue requests",
                    )
                )
            elif isinstance(event, NodeEvent):
                findings.extend(_check_node_event(event, display, line, expecting_key))
                if isinstance(event, CollectionStartEvent):
                    if len(expecting_key) >= max_depth:
                        findings.append(
                            _f(
                                "RR004",
                                display,
                                line,
                                f"nesting deeper than {max_depth} levels at line "
                                f"{line}; a rescue request needs only a few levels: flatten it",
                            )
                        )
                        return None, findings
                    expecting_key.append(True if isinstance(event, MappingStartEvent) else None)
            elif isinstance(event, CollectionEndEvent):
                expecting_key.pop()
            events.append(event)
    except yaml.YAMLError as exc:
        findings.append(_syntax_finding(exc, display))
    finally:
        loader.dispose()
    if findings:
        return None, findings
    if not events or not isinstance(events[-1], StreamEndEvent):  # pragma: no cover - defensive
        return None, [
            _f("RR002", display, 1, "the YAML stream ended unexpectedly; check the file is complete")
        ]
    return events, []


def _check_node_event(
    event: NodeEvent, display: str, line: int, expecting_key: list[bool | None]
) -> list[Finding]:
    found: list[Finding] = []
    if event.anchor is not None:
        found.append(
            _f(
                "RR003",
                display,
                line,
                f"remove the anchor '&{event.anchor}' and repeat the value: anchors "
                "are not allowed in rescue requests",
            )
        )
    tag = getattr(event, "tag", None)
    if tag is not None:
        short = _short_tag(tag)
        danger = " (this tag asks the reader to run code)" if "python/" in short else ""
        found.append(
            _f(
                "RR003",
                display,
                line,
                f"remove the tag '{short}'{danger}: tags are not allowed in rescue "
                "requests; write a plain value (quote it if it must be text)",
            )
        )
    if expecting_key and expecting_key[-1] is not None:
        is_key = expecting_key[-1]
        expecting_key[-1] = not is_key
        if is_key and isinstance(event, ScalarEvent) and event.value == "<<":
            found.append(
                _f(
                    "RR003",
                    display,
                    line,
                    "remove the merge key '<<' and write the keys out: merge keys "
                    "are not allowed in rescue requests",
                )
            )
    return found


class _Builder:
    """Nodes to plain data, recording lines; collects RR001/RR005/RR006 findings."""

    def __init__(self, display: str) -> None:
        self.display = display
        self.lines: dict[DocPath, int] = {(): 1}
        self.findings: list[Finding] = []

    def build(self, node: Node, path: DocPath) -> Any:
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.lines[(*path, index)] = item.start_mark.line + 1
                items.append(self.build(item, (*path, index)))
            return items
        return self._scalar(node)

    def _mapping(self, node: MappingNode, path: DocPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            key = self._scalar(key_node) if isinstance(key_node, ScalarNode) else key_node
            if not isinstance(key, str):
                self._add(
                    "RR006",
                    line,
                    f"the key {_describe_key(key_node, key)} is not text; keys must be "
                    "strings: write a name such as 'select', or quote the key",
                )
                continue
            if key in result:
                self._add(
                    "RR005",
                    line,
                    f"duplicate key '{_clip(key)}' (first at line {first_line[key]}); YAML "
                    "keeps only one of them silently: remove one",
                )
                continue
            first_line[key] = line
            self.lines[(*path, key)] = line
            result[key] = self.build(value_node, (*path, key))
        return result

    def _scalar(self, node: Node) -> Any:
        value: str = node.value
        line = node.start_mark.line + 1
        if node.tag == _STR:
            bad = _FORBIDDEN_IN_VALUE.search(value)
            if bad:
                self._add(
                    "RR001",
                    line,
                    f"a quoted string at line {line} holds the character "
                    f"U+{ord(bad.group()):04X} (written as an escape); remove it: control and "
                    "invisible characters are not allowed",
                )
            return value
        if node.tag == _NULL:
            return None
        if node.tag == _BOOL:
            return value in ("true", "True", "TRUE")
        if node.tag == _INT:
            try:
                return int(value)
            except ValueError:  # more digits than Python converts (about 4,300)
                self._add(
                    "RR006",
                    line,
                    f"the number at line {line} has {len(value)} digits; write a reasonable number",
                )
                return None
        if node.tag == _FLOAT:
            return float(value)
        return value  # pragma: no cover - every tag is one of the above after the scan

    def _add(self, code: str, line: int, message: str) -> None:
        if len(self.findings) < _MAX_FINDINGS:
            self.findings.append(_f(code, self.display, line, message))


def _describe_key(node: Node, key: Any) -> str:
    if isinstance(node, MappingNode):
        return "(a mapping)"
    if isinstance(node, SequenceNode):
        return "(a list)"
    if key is None:
        return f"'{node.value}' (null)" if node.value else "(empty)"
    kind = "a boolean" if isinstance(key, bool) else "a number"
    return f"{node.value} ({kind})"


def _node_kind(node: Node) -> str:
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == _NULL:
        return "empty (null)"
    if node.tag == _STR:
        return "a single string"
    if node.tag == _BOOL:
        return "a single true/false value"
    return "a single number"


def _short_tag(tag: str) -> str:
    prefix = "tag:yaml.org,2002:"
    return "!!" + tag[len(prefix) :] if tag.startswith(prefix) else tag


def _syntax_finding(exc: yaml.YAMLError, display: str) -> Finding:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else 1
    position = getattr(exc, "position", None)  # a ReaderError has no mark, only a position
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    if context and context_mark is not None and context_mark.line + 1 != line:
        context = f"{context} started at line {context_mark.line + 1}"
    detail = f"{problem} ({context})" if context else problem
    if mark is None and isinstance(position, int):
        detail = f"{detail} (character {position})"
    hint = "fix the YAML syntax (check indentation, colons and quotes)"
    if "'\\t'" in detail:
        hint = "indent with spaces, not tabs"
    return _f("RR002", display, line, f"YAML syntax error at line {line}: {detail}; {hint}")


def _symlink_finding(display: str) -> Finding:
    return _f(
        "RR001",
        display,
        1,
        "is a symbolic link; rescue requests must be regular files: commit the file itself",
    )


def _too_large(display: str, size: int | None, max_bytes: int) -> Finding:
    size_text = f"{size} bytes" if size is not None else f"more than {max_bytes} bytes"
    return _f(
        "RR001",
        display,
        1,
        f"the file is {size_text}; the limit is {max_bytes} bytes: a rescue request is "
        "a short YAML file, shorten it",
    )


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _f(code: str, path: str, line: int, message: str) -> Finding:
    return Finding(code=code, severity=Severity.ERROR, message=message, path=path, line=line)
