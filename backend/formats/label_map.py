"""TF OD API `label_map.pbtxt`: the one reader (`read` a file or URL, `parse` text) and the writer.
The config check, imports, dataset versions, the TFRecord browser and the exporters all read
label maps here.

    item { id: 1 name: 'cat' display_name: 'Cat' }

Ids are 1 to 2**31-1 (an int32 in the proto): id 0 is the background class, never written,
and skipped with a note when a file has it (the pascal label map ships an
`id: 0 'none_of_the_above'` item). Class names (display name, else name) must be unique: two
items with the same name are kept only when their display names tell them apart. Parsing goes
through `backend.config_document`, the one protobuf-text parser, so every text-format
spelling it accepts (`item {`/`item: {`, either quotes, comments) is accepted here too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from backend import atomic, config_document
from backend.errors import Invalid
from backend.formats import remote


# `StringIntLabelMapItem.id` is an int32 in the TF OD API's proto.
MAX_ID = 2**31 - 1


@dataclass(frozen=True)
class LabelMapItem:
    id: int
    name: str
    display_name: str | None = None


@dataclass
class LabelMap:
    """The items (id >= 1, in file order) and notes about what was skipped."""
    items: list[LabelMapItem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def by_id(self) -> dict[int, LabelMapItem]:
        return {item.id: item for item in self.items}

    def id_for_text(self, text: str) -> int | None:
        """The id whose `name` (or else `display_name`) is `text`."""
        for item in self.items:
            if item.name == text:
                return item.id
        for item in self.items:
            if item.display_name == text:
                return item.id
        return None

    def class_name(self, item: LabelMapItem) -> str:
        """The human class name of an item: its display name when it has one, else its name."""
        return item.display_name or item.name

    @property
    def num_classes(self) -> int:
        """What `num_classes` in a pipeline.config must be: the largest id (ids may have gaps)."""
        return max((item.id for item in self.items), default=0)


def parse(text: str, source: str = "label map") -> LabelMap:
    """Parse label-map text. Raises Invalid naming the problem (and line, for syntax)."""
    try:
        tree = config_document.parse(text)
    except config_document.ConfigSyntaxError as exc:
        raise config_document.ConfigSyntaxError(exc.message, exc.line, exc.column, source) from None
    result = LabelMap()
    seen_ids: dict[int, str] = {}
    seen_names: dict[str, list[int]] = {}
    for number, item in enumerate(tree.all("item"), start=1):
        if not isinstance(item, config_document.Message):
            raise Invalid(f"{source}: item {number} is not a message")
        item_id, name = item.one("id"), item.one("name")
        display = item.one("display_name")
        if not isinstance(item_id, int) or isinstance(item_id, bool):
            raise Invalid(f"{source}: item {number} has no integer id")
        if name is None and display is None:
            raise Invalid(f"{source}: item {number} (id {item_id}) has no name")
        name = str(name if name is not None else display)
        if item_id == 0:
            result.notes.append(f"{source}: id 0 ({name!r}) is the background class; skipped")
            continue
        if item_id < 0:
            raise Invalid(f"{source}: item {number} has a negative id {item_id}")
        if item_id > MAX_ID:
            raise Invalid(f"{source}: item {number} has id {item_id}; ids must be 1 to {MAX_ID}")
        if item_id in seen_ids:
            raise Invalid(f"{source}: id {item_id} is used twice ({seen_ids[item_id]!r} and {name!r})")
        seen_ids[item_id] = name
        seen_names.setdefault(name, []).append(item_id)
        result.items.append(LabelMapItem(item_id, name, str(display) if display is not None else None))
    # A class is known by its class name (display name, else name) in Boxwise, in box texts and
    # in every export: two items with one class name would be merged, so they are refused.
    by_class: dict[str, int] = {}
    for item in result.items:
        first = by_class.setdefault(result.class_name(item), item.id)
        if first != item.id:
            raise Invalid(f"{source}: ids {first} and {item.id} both name the class "
                          f"{result.class_name(item)!r}; class names must be unique")
    for name, ids in seen_names.items():
        if len(ids) > 1:
            displays = ", ".join(repr(result.by_id()[i].display_name) for i in ids)
            result.notes.append(f"{source}: ids {' and '.join(map(str, ids))} share the name "
                                f"{name!r}; each class is named by its display name ({displays})")
    if not result.items:
        raise Invalid(f"{source}: no items with an id >= 1")
    return result


def read(path: str | Path) -> LabelMap:
    """The label map in `path`: a local file or a URL (`gs://...`, see `remote`).

    Raises NotFound when there is no such file, `ConfigSyntaxError` (an Invalid with `line` and
    `column`) when the text is not protobuf text format, and Invalid for any other reason."""
    path = remote.as_path(path)
    return parse(config_document.read_text(path, "label map", "a label map"), str(path))


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def format_items(items: list[LabelMapItem]) -> str:
    """Label-map text for `items` (sorted by id). Raises Invalid for an id < 1."""
    blocks = []
    for item in sorted(items, key=lambda i: i.id):
        if item.id < 1:
            raise Invalid(f"label-map ids must be >= 1 (class {item.name!r} has {item.id})")
        lines = [f"  id: {item.id}", f"  name: {_quote(item.name)}"]
        if item.display_name:
            lines.append(f"  display_name: {_quote(item.display_name)}")
        blocks.append("item {\n" + "\n".join(lines) + "\n}\n")
    return "\n".join(blocks)


def write(path: str | Path, items: list[LabelMapItem]) -> None:
    atomic.write_text(path, format_items(items))


def from_labels(labels: list[dict]) -> list[LabelMapItem]:
    """Label-map items for a project's class rows (`labels` table)."""
    return [LabelMapItem(row["label_map_id"], row["name"], row.get("display_name") or row["name"])
            for row in labels]
