"""The TF OD API's `pipeline.config` schema, and a checker that names every bad field with its line.

The schema is `protos/*.proto` (package `boxwise.pipeline`): the OD API's
`TrainEvalPipelineConfig` and everything it reaches, with the OD API's field names, numbers,
types, labels, defaults and oneofs, so any config the OD API reads parses here unchanged. The
generated `protos/*_pb2.py` are checked in; `make proto` regenerates them.

    config, problems = parse(text)
    config.model.ssd.num_classes                                   # 90, typed
    default("model.ssd.matcher.argmax_matcher.force_match_for_each_row")   # False

Every unknown field, wrong-typed value and unknown enum value becomes one
`Problem(path, line, message)`: the offending field is blanked out of the text (spaces, so every
later line keeps its number) and the text is parsed again, until it parses or `MAX_PROBLEMS`
are found. A singular field given twice, or two members of one oneof, is a problem too, though
the OD API reads it (`text_format.Merge`: the last one wins); the returned message is what the
OD API would read. Paths are `ConfigDocument` paths (`a.b[1].c`, an index only where a name
repeats).

Edits stay with `backend.config_document.ConfigDocument`, which keeps the text's comments and
spacing; this module only reads. It imports neither TensorFlow nor Keras.
"""
from __future__ import annotations

import difflib
import re
import struct
from pathlib import Path
from typing import Any

from google.protobuf import descriptor as _descriptor
from google.protobuf import text_format

from backend.config_document import ConfigSyntaxError, Field, Problem, parse as parse_tree, walk
from backend.pipeline_schema.protos import pipeline_pb2

TrainEvalPipelineConfig = pipeline_pb2.TrainEvalPipelineConfig
PACKAGE = "boxwise.pipeline"

# A config this broken is reported in part: the first MAX_PROBLEMS problems, then a note.
MAX_PROBLEMS = 100

_POSITION = re.compile(r"^(\d+):(\d+) : ")
_UNKNOWN_FIELD = re.compile(r'^Message type "([\w.]+)" has no field named "(\w+)"\.?$')
_UNKNOWN_ENUM = re.compile(r'^Enum type "([\w.]+)" has no value named (\w+)\.?$')
# What text_format.Parse refuses but the OD API's text_format.Merge reads (the last one wins).
_REPEATED_SINGULAR = re.compile(r'^Message type "([\w.]+)" should not have multiple "(\w+)" fields\.?$')
_ONEOF_TWICE = re.compile(r'^Field "(\w+)" is specified along with field "(\w+)", another member of oneof "(\w+)" '
                          r'for message type "([\w.]+)"\.?$')


def parse(text: str) -> tuple[Any, list[Problem]]:
    """`(TrainEvalPipelineConfig, problems)`. The message is the text as the OD API reads it,
    less each field `problems` names as unknown, wrong-typed or a bad enum value."""
    try:
        tree = parse_tree(text)
    except ConfigSyntaxError as e:
        message = e.message if len(e.message) <= 300 else e.message[:300] + "…"  # it may quote the text
        return TrainEvalPipelineConfig(), [Problem("", e.line, message)]
    fields = list(walk(tree))
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    scan = list(text)    # blanked at every problem, to find the next one
    final = list(text)   # blanked only where the OD API itself would stop
    problems: list[Problem] = []
    blanked: set[int] = set()
    while True:
        try:
            text_format.Parse("".join(scan), TrainEvalPipelineConfig())
            break
        except text_format.ParseError as e:
            line, column, message = _where(e)
        if len(problems) == MAX_PROBLEMS:
            problems.append(Problem("", 0, f"stopped after {MAX_PROBLEMS} problems; fix these and check again"))
            break
        offset = line_starts[line - 1] + column - 1 if 0 < line <= len(line_starts) else -1
        found = _innermost(fields, offset)
        if found is None or found[1].start in blanked:
            # Not inside a field the span parser knows (or no progress): report it and stop.
            problems.append(Problem(found[0] if found else "", line, _explain(message)))
            break
        path, f = found
        problems.append(Problem(path, line, _explain(message)))
        blanked.add(f.start)
        lenient = _REPEATED_SINGULAR.match(message) or _ONEOF_TWICE.match(message)
        for chars in (scan,) if lenient else (scan, final):
            for k in range(f.start, f.end):
                if chars[k] != "\n":
                    chars[k] = " "
    config = TrainEvalPipelineConfig()
    try:
        text_format.Merge("".join(final), config)
    except text_format.ParseError:
        pass  # stopped early: `config` holds what parsed before the first unreported problem
    return config, problems


def parse_file(path: str | Path) -> tuple[Any, list[Problem]]:
    with open(path, encoding="utf-8") as fh:
        return parse(fh.read())


def _where(error: text_format.ParseError) -> tuple[int, int, str]:
    """1-based line and column, and the message without text_format's position and quoted line."""
    message = str(error)
    match = _POSITION.match(message)
    if match:
        message = message[match.end():]
    if message.startswith("'") and "': " in message:
        message = message[message.rfind("': ") + 3:]
    return error.GetLine() or 0, error.GetColumn() or 0, message


def _innermost(fields: list[tuple[str, Field]], offset: int) -> tuple[str, Field] | None:
    """The smallest field whose text span holds `offset`."""
    best = None
    for path, f in fields:
        if f.start <= offset < max(f.end, f.start + 1):
            if best is None or f.end - f.start < best[1].end - best[1].start:
                best = (path, f)
    return best


def _short(full_name: str) -> str:
    return full_name[len(PACKAGE) + 1:] if full_name.startswith(PACKAGE + ".") else full_name


def _explain(message: str) -> str:
    """text_format's message, said in the config's terms, with a suggestion for a typo."""
    match = _UNKNOWN_FIELD.match(message)
    if match:
        type_name, name = match.groups()
        known = [f.name for f in pipeline_pb2.DESCRIPTOR.pool.FindMessageTypeByName(type_name).fields]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f'; did you mean "{close[0]}"?' if close else ""
        return f'unknown field "{name}": {_short(type_name)} has no such field{hint}'
    match = _UNKNOWN_ENUM.match(message)
    if match:
        type_name, value = match.groups()
        values = [v.name for v in pipeline_pb2.DESCRIPTOR.pool.FindEnumTypeByName(type_name).values]
        return f"{value} is not a {_short(type_name)}: use one of {', '.join(values)}"
    match = _REPEATED_SINGULAR.match(message)
    if match:
        type_name, name = match.groups()
        field = pipeline_pb2.DESCRIPTOR.pool.FindMessageTypeByName(type_name).fields_by_name[name]
        effect = "merges them" if field.message_type is not None else "uses the last one"
        return f'"{name}" is given more than once in {_short(type_name)}: the OD API {effect}'
    match = _ONEOF_TWICE.match(message)
    if match:
        name, other, oneof, type_name = match.groups()
        return (f'"{name}" and "{other}" are both set, but {_short(type_name)} takes one {oneof}: '
                f'the OD API uses the last, "{name}"')
    return message.replace(PACKAGE + ".", "")


# --- the schema's defaults -------------------------------------------------------------------

def descriptor(path: str) -> _descriptor.Descriptor | _descriptor.FieldDescriptor:
    """The message descriptor at a dotted path (`model.ssd.matcher`), or the field descriptor
    when the path ends at a scalar field. `[i]` indices are ignored."""
    current: Any = TrainEvalPipelineConfig.DESCRIPTOR
    if not path:
        return current
    parts = [re.sub(r"\[\d+\]$", "", p) for p in path.split(".")]
    for name in parts:
        if not isinstance(current, _descriptor.Descriptor) or name not in current.fields_by_name:
            where = current.full_name if hasattr(current, "full_name") else path
            raise KeyError(f"{path!r}: {_short(where)} has no field {name!r}")
        field = current.fields_by_name[name]
        current = field.message_type if field.message_type is not None else field
    return current


def default(path: str) -> Any:
    """The schema's default for the scalar field at `path`, as the config text would write it
    (floats at float precision: 0.1, not 0.10000000149; enums by name; repeated fields: [])."""
    field = descriptor(path)
    if not isinstance(field, _descriptor.FieldDescriptor):
        raise KeyError(f"{path!r} is a message, not a field: use defaults()")
    return _default_of(field)


def defaults(message_path: str) -> dict[str, Any]:
    """Every scalar field of the message at `message_path` with its schema default."""
    message = descriptor(message_path)
    if not isinstance(message, _descriptor.Descriptor):
        raise KeyError(f"{message_path!r} is a field, not a message: use default()")
    return {f.name: _default_of(f) for f in message.fields if f.message_type is None}


def values(message) -> dict[str, Any]:
    """Every scalar field of a typed message: its value, or the schema's default where the text
    leaves it out, as the text would write it (floats at float precision, enums by name,
    repeated fields as lists). Message fields are left out: read them from `message`."""
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        if field.message_type is not None:
            continue
        value = getattr(message, field.name)
        out[field.name] = [_scalar(field, v) for v in value] if field.is_repeated else _scalar(field, value)
    return out


def _scalar(field: _descriptor.FieldDescriptor, value: Any) -> Any:
    if field.type == field.TYPE_ENUM:
        return field.enum_type.values_by_number[value].name
    if field.type == field.TYPE_FLOAT:
        return _as_float32_text(value)
    return value


def _default_of(field: _descriptor.FieldDescriptor) -> Any:
    return [] if field.is_repeated else _scalar(field, field.default_value)


def _as_float32_text(value: float) -> float:
    """The shortest decimal that is the same float32 as `value`."""
    target = struct.pack("<f", value)
    for digits in range(1, 10):
        candidate = float(f"{value:.{digits}g}")
        if struct.pack("<f", candidate) == target:
            return candidate
    return value
