"""`pipeline.config` files: TF OD API protobuf text format, parsed without the proto schema.

The document *is* its text. Parsing builds a tree whose every field remembers where it sits in
that text; an edit splices new text into exactly the span it changes and parses again. So an
untouched file prints byte-identical, comments and spacing survive every edit, and
parse → print → parse always gives the same tree.

    doc = ConfigDocument.load("pipeline.config")
    doc.get("model.ssd.num_classes")                       # 90
    doc.set("train_config.data_augmentation_options[1].random_crop_image.min_area", 0.5)
    doc.text                                               # the edited file

Paths are dot-separated field names; `name[i]` picks the i-th occurrence of a repeated field
(0-based, counting `name: [a, b]` list items as occurrences for scalars).

Values in the tree: quoted strings are `str`, numbers `int`/`float`, `true`/`false` are `bool`,
bare identifiers (`RELU_6`, `SIGMOID`) are `Enum` (a `str` subclass), `name: [a, b]` is a
`list`, and `name { ... }` is a `Message`.

Syntax errors raise `ConfigSyntaxError` (an `Invalid`) carrying 1-based `line` and `column`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field as dataclass_field
from pathlib import Path
from typing import Any, Iterator

from backend import atomic
from backend.errors import Invalid, NotFound


class Enum(str):
    """A bare identifier value (`RELU_6`, `SIGMOID`, `V2`); printed without quotes."""

    def __repr__(self) -> str:
        return f"Enum({str.__repr__(self)})"


# Real configs nest 8 levels deep; the parser (and every walker of its tree) recurses per level.
MAX_DEPTH = 100


class ConfigSyntaxError(Invalid):
    """Text that is not protobuf text format, with the 1-based line and column of the problem."""

    def __init__(self, message: str, line: int, column: int, source: str | None = None):
        where = f"{source}: " if source else ""
        super().__init__(f"{where}line {line}, column {column}: {message}")
        self.message = message
        self.line = line
        self.column = column
        self.source = source


@dataclass
class Field:
    """One `name: value` or `name { ... }` occurrence.

    `start`/`end` span the whole field in the text (name to closing brace or last value
    token); `value_start`/`value_end` span only the value (for a message: its braces).
    """
    name: str
    value: Any
    start: int
    end: int
    value_start: int
    value_end: int
    item_spans: list[tuple[int, int]] | None = None  # for `[a, b]`: the span of each item


@dataclass
class Message:
    """An ordered list of fields. `open_end`/`close_start` locate the braces (-1 at top level)."""
    fields: list[Field] = dataclass_field(default_factory=list)
    open_end: int = -1
    close_start: int = -1

    def all(self, name: str) -> list[Any]:
        """Every value of field `name`, in order; `[a, b]` lists are flattened into items."""
        out: list[Any] = []
        for f in self.fields:
            if f.name == name:
                out.extend(f.value if isinstance(f.value, list) else [f.value])
        return out

    def one(self, name: str, default: Any = None) -> Any:
        """The value of a non-repeated field, or `default` when absent (the last one wins, as in protobuf)."""
        values = [f.value for f in self.fields if f.name == name]
        return values[-1] if values else default

    def has(self, name: str) -> bool:
        return any(f.name == name for f in self.fields)

    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def field(self, name: str) -> Field | None:
        found = [f for f in self.fields if f.name == name]
        return found[-1] if found else None

    def to_python(self) -> dict[str, Any]:
        """Plain nested dicts; repeated fields become lists. For comparisons and JSON."""
        out: dict[str, Any] = {}
        for f in self.fields:
            value = f.value.to_python() if isinstance(f.value, Message) else f.value
            if f.name in out:
                previous = out[f.name]
                if not isinstance(previous, _Repeated):
                    previous = _Repeated([previous])
                previous.append(value)
                out[f.name] = previous
            else:
                out[f.name] = value
        return {k: (list(v) if isinstance(v, _Repeated) else v) for k, v in out.items()}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return _structure(self) == _structure(other)


@dataclass(frozen=True)
class Problem:
    """Something wrong in a config: the field's path, its 1-based line (0: not tied to a line)."""
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.path}: {self.message}"


class _Repeated(list):
    pass


def _structure(value: Any) -> Any:
    """The tree without text positions: what "the same tree" means."""
    if isinstance(value, Message):
        return [(f.name, _structure(f.value)) for f in value.fields]
    if isinstance(value, list):
        return [_structure(v) for v in value]
    return (type(value).__name__, value)


# --- tokenizer -------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r\n\f\v]+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"[^"\\\n]*(?:\\.[^"\\\n]*)*"|'[^'\\\n]*(?:\\.[^'\\\n]*)*')
  | (?P<number>[-+]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)[fF]?(?![A-Za-z_0-9]))
  | (?P<ident>[-+]?[A-Za-z_][A-Za-z_0-9.]*)
  | (?P<punct>[{}\[\]:,;<>])
""", re.VERBOSE)


@dataclass
class _Token:
    kind: str
    text: str
    start: int
    end: int


def _tokens(text: str) -> list[_Token]:
    out = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            line, column = _line_column(text, pos)
            if text[pos] in "\"'":
                raise ConfigSyntaxError("unterminated string", line, column)
            raise ConfigSyntaxError(f"unexpected character {text[pos]!r}", line, column)
        kind = match.lastgroup
        if kind not in ("ws", "comment"):
            out.append(_Token(kind, match.group(), match.start(), match.end()))
        pos = match.end()
    return out


def _line_column(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "a": "\a",
            "b": "\b", "f": "\f", "v": "\v", "?": "?"}


# One backslash escape: 1–3 octal digits, or any one character (newline included).
_ESCAPE = re.compile(r"\\(?:([0-7]{1,3})|(.))", re.S)


def _unescape(match: re.Match) -> str:
    if match.group(1) is not None:
        return chr(int(match.group(1), 8))
    return _ESCAPES.get(match.group(2), match.group(2))


def _unquote(token: str) -> str:
    """The value of a quoted string token: `_ESCAPES` and 1–3 octal digits decoded, any other
    escaped character kept without its backslash. One regex pass, not a loop per character."""
    body = token[1:-1]
    if "\\" not in body:
        return body
    return _ESCAPE.sub(_unescape, body)


def _scalar(token: _Token) -> Any:
    if token.kind == "string":
        return _unquote(token.text)
    if token.kind == "number":
        text = token.text
        if re.fullmatch(r"[-+]?0[xX][0-9a-fA-F]+", text):
            return int(text, 16)
        if re.fullmatch(r"[-+]?\d+", text):
            return int(text)
        return float(text.rstrip("fF"))
    if token.text in ("true", "True"):
        return True
    if token.text in ("false", "False"):
        return False
    if token.text.lstrip("+-").lower() in ("inf", "infinity", "nan"):
        return float(token.text)
    return Enum(token.text)


# --- parser ----------------------------------------------------------------------------------

class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokens(text)
        self.i = 0
        self.depth = 0

    def error(self, message: str, token: _Token | None = None) -> ConfigSyntaxError:
        offset = token.start if token is not None else len(self.text)
        line, column = _line_column(self.text, offset)
        return ConfigSyntaxError(message, line, column)

    def peek(self) -> _Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise self.error("unexpected end of file")
        self.i += 1
        return token

    def parse(self) -> Message:
        message = self.message_body(closer=None)
        return message

    def message_body(self, closer: str | None) -> Message:
        message = Message()
        while True:
            token = self.peek()
            if token is None:
                if closer is not None:
                    raise self.error(f"missing {closer!r}: the message is not closed")
                return message
            if token.kind == "punct" and token.text == closer:
                return message
            if token.kind == "punct" and token.text in ",;":
                self.i += 1  # separators between fields are optional
                continue
            message.fields.append(self.field())

    def field(self) -> Field:
        name = self.take()
        if name.kind == "punct" and name.text in "}>":
            raise self.error(f"unexpected {name.text!r}: there is no open message to close", name)
        if name.kind != "ident" or name.text[0] in "+-":
            raise self.error(f"expected a field name, found {name.text!r}", name)
        if name.text.startswith("["):
            raise self.error("extensions are not supported", name)
        token = self.peek()
        colon = False
        if token is not None and token.kind == "punct" and token.text == ":":
            colon = True
            self.i += 1
            token = self.peek()
        if token is None:
            raise self.error(f"expected a value for {name.text!r}")
        if token.kind == "punct" and token.text in "{<":
            value, close = self.braced()
            return Field(name.text, value, name.start, close.end, token.start, close.end)
        if not colon:
            raise self.error(f"expected ':' or '{{' after {name.text!r}", token)
        if token.kind == "punct" and token.text == "[":
            self.i += 1
            items: list[Any] = []
            spans: list[tuple[int, int]] = []
            while True:
                item = self.peek()
                if item is None:
                    raise self.error("missing ']': the list is not closed")
                if item.kind == "punct" and item.text == "]":
                    self.i += 1
                    break
                if item.kind == "punct" and item.text in "{<":
                    value, close = self.braced()
                    items.append(value)
                    spans.append((item.start, close.end))
                else:
                    items.append(self.scalar())
                    spans.append((item.start, item.end))
                after = self.peek()
                if after is not None and after.kind == "punct" and after.text == ",":
                    self.i += 1
                elif after is None or not (after.kind == "punct" and after.text == "]"):
                    raise self.error("expected ',' or ']' in the list", after)
            return Field(name.text, items, name.start, item.end, token.start, item.end, spans)
        value_token = token
        value = self.scalar()
        return Field(name.text, value, name.start, self.tokens[self.i - 1].end,
                     value_token.start, self.tokens[self.i - 1].end)

    def braced(self) -> tuple[Message, _Token]:
        open_token = self.take()
        closer = "}" if open_token.text == "{" else ">"
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"messages are nested deeper than {MAX_DEPTH} levels", open_token)
        message = self.message_body(closer)
        self.depth -= 1
        close = self.take()
        message.open_end = open_token.end
        message.close_start = close.start
        return message, close

    def scalar(self) -> Any:
        token = self.take()
        if token.kind == "string":
            # Adjacent string literals concatenate, as in C and in protobuf.
            parts = [_unquote(token.text)]
            while (nxt := self.peek()) is not None and nxt.kind == "string":
                parts.append(_unquote(self.take().text))
            return "".join(parts)
        if token.kind in ("number", "ident"):
            return _scalar(token)
        raise self.error(f"expected a value, found {token.text!r}", token)


def parse(text: str) -> Message:
    """The tree of a text-format config. Raises `ConfigSyntaxError` with line and column."""
    return _Parser(text).parse()


def read_text(path: Path, what: str, kind: str) -> str:
    """The UTF-8 text of the protobuf-text file `path` (a `Path` or a `remote.RemoteFile`).
    `what` names it in messages ("config file"), `kind` says what it should be ("a
    pipeline.config"). Raises NotFound when it does not exist, Invalid when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFound(f"{what} {str(path)!r} does not exist") from None
    except UnicodeDecodeError:
        raise Invalid(f"{path}: not a UTF-8 text file; is this {kind}?") from None
    except OSError as exc:
        raise Invalid(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except ValueError:  # the file system refuses a NUL character in a path
        raise Invalid(f"{what} {str(path)!r} is not a usable path (it contains a NUL character)") from None


# --- formatting values -----------------------------------------------------------------------

def format_scalar(value: Any) -> str:
    """Text-format literal for a Python value (`Enum` bare, `str` double-quoted)."""
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        return text
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_scalar(v) for v in value) + "]"
    raise Invalid(f"cannot write a {type(value).__name__} into a config: {value!r}")


def _format_field(name: str, value: Any, indent: str) -> str:
    if isinstance(value, dict):
        if not value:
            return f"{indent}{name} {{\n{indent}}}"
        inner = "\n".join(_format_field(k, v, indent + "  ") for k, v in value.items())
        return f"{indent}{name} {{\n{inner}\n{indent}}}"
    return f"{indent}{name}: {format_scalar(value)}"


def parse_literal(text: str, like: Any = None) -> Any:
    """A value typed on a command line (`0.5`, `true`, `"a b"`, `RELU_6`, `[1, 2]`, `/data/x`).

    `like` is the current value, when there is one: a string field keeps string type
    (`label_map_path=/data/x` needs no quotes), an enum field takes a bare identifier.
    """
    stripped = text.strip()
    if isinstance(like, Enum) and re.fullmatch(r"[A-Za-z_][A-Za-z_0-9]*", stripped):
        return Enum(stripped)
    if isinstance(like, str) and not isinstance(like, Enum):
        if len(stripped) >= 2 and stripped[0] == stripped[-1] and stripped[0] in "\"'":
            return _unquote(stripped)
        return text
    try:
        tree = parse(f"v: {stripped}")
    except ConfigSyntaxError:
        if isinstance(like, (bool, int, float)):
            raise Invalid(f"{text!r} is not a {type(like).__name__} value") from None
        return text
    if len(tree.fields) != 1 or isinstance(tree.fields[0].value, Message):
        return text
    value = tree.fields[0].value
    if isinstance(like, bool) and not isinstance(value, bool):
        raise Invalid(f"{text!r} is not true or false")
    if isinstance(like, (int, float)) and not isinstance(like, bool):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Invalid(f"{text!r} is not a number")
        if isinstance(like, float):
            value = float(value) if not isinstance(value, float) else value
    if isinstance(value, Enum) and like is None and not re.fullmatch(r"[A-Z][A-Z_0-9]*", value):
        # `classification`, `my_label_map` ... a new lowercase word is more likely a string.
        return str(value)
    return value


# --- paths -----------------------------------------------------------------------------------

_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z_0-9]*)(?:\[(\d+)\])?$")


def split_path(path: str) -> list[tuple[str, int | None]]:
    """`a.b[1].c` → `[("a", None), ("b", 1), ("c", None)]`."""
    segments = []
    for part in path.split("."):
        match = _SEGMENT.match(part.strip())
        if not match:
            raise Invalid(f"bad config path {path!r}: {part!r} is not `name` or `name[index]`")
        segments.append((match.group(1), int(match.group(2)) if match.group(2) else None))
    return segments


@dataclass
class _Located:
    """What a path points at: the field, and for list items the item index within it."""
    parent: Message
    field: Field
    item: int | None


def _occurrences(message: Message, name: str) -> list[tuple[Field, int | None]]:
    out: list[tuple[Field, int | None]] = []
    for f in message.fields:
        if f.name != name:
            continue
        if isinstance(f.value, list):
            out.extend((f, k) for k in range(len(f.value)))
        else:
            out.append((f, None))
    return out


# --- the document ----------------------------------------------------------------------------

class ConfigDocument:
    """A config file's text plus its tree. Edits change the text; the tree is re-derived."""

    def __init__(self, text: str, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        self._set_text(text)

    @classmethod
    def load(cls, path: str | Path) -> "ConfigDocument":
        path = Path(path)
        text = read_text(path, "config file", "a pipeline.config")
        try:
            return cls(text, path)
        except ConfigSyntaxError as exc:
            raise ConfigSyntaxError(exc.message, exc.line, exc.column, str(path)) from None

    def save(self, path: str | Path | None = None) -> None:
        """Write the text atomically (to `path`, or back where it was loaded from)."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise Invalid("no path to save the config to")
        atomic.write_text(target, self.text)

    def _set_text(self, text: str) -> None:
        tree = parse(text)
        self.text = text
        self.tree = tree

    def line_of(self, offset: int) -> int:
        return _line_column(self.text, offset)[0]

    # reading

    def _locate(self, path: str) -> _Located:
        segments = split_path(path)
        message = self.tree
        walked = []
        for depth, (name, index) in enumerate(segments):
            walked.append(name if index is None else f"{name}[{index}]")
            occurrences = _occurrences(message, name)
            if not occurrences:
                raise NotFound(f"{'.'.join(walked)} is not in the config")
            if index is None:
                if len(occurrences) > 1 and depth < len(segments) - 1:
                    raise Invalid(f"{'.'.join(walked)} is repeated {len(occurrences)} times: "
                                  f"say which one, e.g. {name}[0]")
                chosen = occurrences[-1] if depth < len(segments) - 1 else None
            else:
                if index >= len(occurrences):
                    raise NotFound(f"{'.'.join(walked)}: there are only {len(occurrences)} "
                                   f"{name} entries")
                chosen = occurrences[index]
            if depth == len(segments) - 1:
                if chosen is None:
                    if len(occurrences) == 1 or all(o[0] is occurrences[0][0] for o in occurrences):
                        return _Located(message, occurrences[0][0], None)
                    raise Invalid(f"{path} is repeated {len(occurrences)} times: say which one, "
                                  f"e.g. {path}[0]")
                return _Located(message, chosen[0], chosen[1])
            f, item = chosen
            value = f.value[item] if item is not None else f.value
            if not isinstance(value, Message):
                raise Invalid(f"{'.'.join(walked)} is a value, not a message: it has no fields")
            message = value
        raise AssertionError("unreachable")

    def get(self, path: str) -> Any:
        """The value at `path`: a scalar, a list for `[a, b]`, or a `Message`."""
        located = self._locate(path)
        if located.item is not None:
            return located.field.value[located.item]
        return located.field.value

    def get_or(self, path: str, default: Any = None) -> Any:
        """The value at `path`, or `default` when it is absent or names a repeated field
        without saying which occurrence."""
        try:
            value = self.get(path)
        except (NotFound, Invalid):
            return default
        return default if value is None else value

    def get_all(self, path: str) -> list[Any]:
        """Every value of a repeated field at `path` (empty when absent)."""
        *head, (name, index) = split_path(path)
        if index is not None:
            return [self.get(path)]
        if head:
            parent_path = ".".join(n if i is None else f"{n}[{i}]" for n, i in head)
            try:
                parent = self.get(parent_path)
            except NotFound:
                return []
        else:
            parent = self.tree
        if not isinstance(parent, Message):
            raise Invalid(f"{path}: the parent is not a message")
        return parent.all(name)

    def line(self, path: str) -> int:
        """1-based line where the field at `path` starts."""
        return self.line_of(self._locate(path).field.start)

    # editing

    def set(self, path: str, value: Any) -> None:
        """Set the value at `path`, creating missing fields and messages on the way.

        Scalars replace only their own characters; a dict becomes a `name { ... }` block.
        """
        try:
            located = self._locate(path)
        except NotFound:
            self._insert(path, value)
            return
        f = located.field
        if located.item is not None:
            start, end = f.item_spans[located.item]
            replacement = format_scalar(value)
        elif isinstance(f.value, Message) or isinstance(value, dict):
            if not isinstance(value, dict):
                raise Invalid(f"{path} is a message; set one of its fields instead")
            line_start = self.text.rfind("\n", 0, f.start) + 1
            indent = re.match(r"[ \t]*", self.text[line_start:]).group()
            start, end = f.start, f.end
            replacement = _format_field(f.name, value, indent).lstrip()
        else:
            start, end = f.value_start, f.value_end
            replacement = format_scalar(value)
        self._set_text(self.text[:start] + replacement + self.text[end:])

    def set_literal(self, path: str, text: str) -> None:
        """`set` with a value typed as text (the CLI's `PATH=VALUE`), typed like the current value."""
        try:
            current = self.get(path)
        except NotFound:
            current = None
        if isinstance(current, Message):
            raise Invalid(f"{path} is a message; set one of its fields instead")
        self.set(path, parse_literal(text, current))

    def add(self, path: str, value: Any) -> None:
        """Append one more occurrence of a repeated field (`add("train_config.data_augmentation_options",
        {"random_horizontal_flip": {}})`), after the last existing one."""
        *head, (name, index) = split_path(path)
        if index is not None:
            raise Invalid(f"add takes a field path without an index, not {path!r}")
        parent_path = ".".join(n if i is None else f"{n}[{i}]" for n, i in head)
        if parent_path:
            try:
                parent = self.get(parent_path)
            except NotFound:
                self._insert(path, value)
                return
        else:
            parent = self.tree
        existing = [f for f in parent.fields if f.name == name]
        if not existing:
            self._insert(path, value)
            return
        last = existing[-1]
        line_start = self.text.rfind("\n", 0, last.start) + 1
        indent = re.match(r"[ \t]*", self.text[line_start:]).group()
        block = _format_field(name, value, indent)
        line_end = self.text.find("\n", last.end)
        line_end = len(self.text) if line_end < 0 else line_end
        self._set_text(self.text[:line_end] + "\n" + block + self.text[line_end:])

    def remove(self, path: str) -> None:
        """Delete the field at `path` (whole lines when it stands on its own lines)."""
        located = self._locate(path)
        f = located.field
        if located.item is not None:
            values = list(f.value)
            del values[located.item]
            self._set_text(self.text[:f.value_start] + format_scalar(values) + self.text[f.value_end:])
            return
        start, end = f.start, f.end
        line_start = self.text.rfind("\n", 0, start) + 1
        line_end = self.text.find("\n", end)
        line_end = len(self.text) if line_end < 0 else line_end
        if not self.text[line_start:start].strip() and not self.text[end:line_end].strip(" \t,;"):
            start, end = line_start, min(line_end + 1, len(self.text))
        self._set_text(self.text[:start] + self.text[end:])

    def _insert(self, path: str, value: Any) -> None:
        segments = split_path(path)
        message = self.tree
        depth = 0
        # Walk down as far as the path exists.
        for depth, (name, index) in enumerate(segments):  # noqa: B007 - the depth reached is used after the loop
            occurrences = _occurrences(message, name)
            target = None
            if occurrences:
                if index is None:
                    target = occurrences[-1]
                elif index < len(occurrences):
                    target = occurrences[index]
                elif index > len(occurrences):
                    raise NotFound(f"{path}: there are only {len(occurrences)} {name} entries")
            if target is None:
                break
            f, item = target
            inner = f.value[item] if item is not None else f.value
            if not isinstance(inner, Message):
                raise Invalid(f"{name} is a value, not a message: it has no fields")
            message = inner
        rest = segments[depth:]
        built: Any = value
        for name, _ in reversed(rest[1:]):
            built = {name: built}
        name = rest[0][0]
        if message.close_start < 0:
            # Top level: append at the end of the file.
            prefix = "" if self.text.endswith("\n") or not self.text else "\n"
            block = _format_field(name, built, "")
            self._set_text(self.text + prefix + block + "\n")
            return
        # Indent like the message's existing fields, or two more than its closing brace.
        if message.fields:
            first = message.fields[0].start
            line_start = self.text.rfind("\n", 0, first) + 1
            indent = self.text[line_start:first] if not self.text[line_start:first].strip() else "  "
        else:
            close_line = self.text.rfind("\n", 0, message.close_start) + 1
            indent = re.match(r"[ \t]*", self.text[close_line:]).group() + "  "
        block = _format_field(name, built, indent)
        close_line_start = self.text.rfind("\n", 0, message.close_start) + 1
        if self.text[close_line_start:message.close_start].strip():
            # `name { a: 1 }` on one line: put the new field before the brace on the same line.
            inline = _format_field(name, built, "").replace("\n", " ")
            at = message.close_start
            self._set_text(self.text[:at].rstrip(" ") + " " + inline + " " + self.text[at:])
            return
        self._set_text(self.text[:close_line_start] + block + "\n" + self.text[close_line_start:])


def load(path: str | Path) -> ConfigDocument:
    return ConfigDocument.load(path)


def walk(message: Message, prefix: str = "") -> Iterator[tuple[str, Field]]:
    """Every field below `message` with its path (`a.b[1].c`), depth first, in file order."""
    counts: dict[str, int] = {}
    for f in message.fields:
        k = counts.get(f.name, 0)
        counts[f.name] = k + 1
        total = sum(1 for g in message.fields if g.name == f.name)
        name = f"{f.name}[{k}]" if total > 1 else f.name
        path = f"{prefix}.{name}" if prefix else name
        yield path, f
        if isinstance(f.value, Message):
            yield from walk(f.value, path)
