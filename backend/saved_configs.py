"""Saved `pipeline.config`s: versioned in SQLite, checked against a dataset version, filled from one.

A saved config is a row of `configs` (project, name, version, text, who, when); saving under an
existing name adds the next version and never changes an older one, so a run that names a
config id always names the exact text it trained with.

Checking a config is `backend.config_check.check`; the path rules it shares with run launch
(`unusable_path`, `input_problem`, `checkpoint_problem`) are here.
"""
from __future__ import annotations

import difflib
import glob
from pathlib import Path
from typing import Any

import sqlite_utils

from backend import config_document as pc
from backend.config_document import Problem
from backend.dataset_versions import DatasetVersion
from backend.auth import require
from backend.db import now, one, transaction
from backend.errors import Invalid, NotFound
from backend.paths import quoted

# The fields people edit, in the order the Config page's form shows them: (label, path).
# `{optimizer}` stands for the optimizer the config uses (momentum_optimizer, adam_optimizer...).
_SCHEDULE = "train_config.optimizer.{optimizer}.learning_rate.cosine_decay_learning_rate"
COMMON_FIELDS = [
    ("Number of classes", "model.ssd.num_classes"),
    ("Input height", "model.ssd.image_resizer.fixed_shape_resizer.height"),
    ("Input width", "model.ssd.image_resizer.fixed_shape_resizer.width"),
    ("Batch size", "train_config.batch_size"),
    ("Training steps", "train_config.num_steps"),
    ("Learning rate base", f"{_SCHEDULE}.learning_rate_base"),
    ("Learning-rate total steps", f"{_SCHEDULE}.total_steps"),
    ("Warm-up learning rate", f"{_SCHEDULE}.warmup_learning_rate"),
    ("Warm-up steps", f"{_SCHEDULE}.warmup_steps"),
    ("Fine-tune checkpoint", "train_config.fine_tune_checkpoint"),
    ("Fine-tune checkpoint type", "train_config.fine_tune_checkpoint_type"),
    ("Train label map", "train_input_reader.label_map_path"),
    ("Train input path", "train_input_reader.tf_record_input_reader.input_path"),
    ("Eval label map", "eval_input_reader.label_map_path"),
    ("Eval input path", "eval_input_reader.tf_record_input_reader.input_path"),
]
_OPTIMIZERS = ("momentum_optimizer", "adam_optimizer", "rms_prop_optimizer")

# The augmentation options the trainer implements (the form offers them as checkboxes).
AUGMENTATIONS = ["random_horizontal_flip", "random_crop_image", "random_adjust_brightness",
                 "random_adjust_contrast"]


def unusable_path(value: str) -> str | None:
    """Why `value` cannot be a local file path at all (checked before the file system is
    asked, which would fail with 'File name too long'), or None."""
    if "\0" in value:
        return "is not a usable path (it contains a NUL character)"
    if len(value) > 4096 or any(len(part) > 255 for part in value.split("/")):
        return "is not a usable path (too long)"
    return None


def input_problem(pattern: str, typed: str | None = None) -> str | None:
    """Why the local input glob `pattern` cannot feed training: no files match, or a matching
    file is not a TFRecord file (its first record's framing is checked). None when it can.
    `typed`: the glob as the config gives it, when `pattern` is it made absolute."""
    from backend.formats import tfrecord_framing

    problem = unusable_path(pattern)
    if problem:
        return f"{quoted(typed or pattern)} {problem}"
    matches = sorted(glob.glob(pattern))
    if not matches:
        return f"{quoted(typed or pattern)} matches no TFRecord shard on disk"
    for match in matches:
        if Path(match).is_dir():
            return f"{quoted(match)} is a folder, not a TFRecord file"
        why = tfrecord_framing.not_a_record_file(Path(match))
        if why:
            return f"{quoted(match)} is not a TFRecord file ({why})"
    return None


def checkpoint_problem(checkpoint: str) -> str | None:
    """Why a local fine-tune checkpoint cannot be used (too long a path, or missing), or None."""
    problem = unusable_path(checkpoint)
    if problem:
        return f"fine-tune checkpoint {quoted(checkpoint)} {problem}"
    if not checkpoint_exists(checkpoint):
        return f"fine-tune checkpoint {quoted(checkpoint)} does not exist"
    return None


def checkpoint_exists(path: str) -> bool:
    """A checkpoint prefix (`.../ckpt-5`: `.index` beside it), a directory, or a weights file."""
    p = Path(path)
    return p.exists() or Path(path + ".index").exists()


def fill_from_dataset_version(text: str, version: DatasetVersion) -> str:
    """The config with num_classes, label map paths and input paths of `version` (other bytes kept)."""
    doc = pc.ConfigDocument(text)
    if version.train_glob is None:
        raise Invalid(f"dataset version {version.id} has no train shards")
    if version.num_classes == 0:
        raise Invalid(f"dataset version {version.id} has no usable label map at {version.label_map_path}")
    model = doc.tree.one("model")
    arch = next((f.name for f in model.fields if isinstance(f.value, pc.Message)), "ssd") \
        if isinstance(model, pc.Message) else "ssd"
    doc.set(f"model.{arch}.num_classes", version.num_classes)
    for reader, pattern in (("train_input_reader", version.train_glob),
                            ("eval_input_reader", version.eval_glob or version.train_glob)):
        doc.set(f"{reader}.label_map_path", str(version.label_map_path))
        path = f"{reader}.tf_record_input_reader.input_path"
        for _ in range(len(doc.get_all(path)) - 1):
            doc.remove(f"{path}[1]")
        doc.set(path, pattern)
    return doc.text


def set_fine_tune_checkpoint(text: str, checkpoint: str, kind: str = "detection") -> str:
    """The config starting from `checkpoint` (a `ckpt-N` prefix) of type `kind`."""
    doc = pc.ConfigDocument(text)
    doc.set("train_config.fine_tune_checkpoint", checkpoint)
    doc.set("train_config.fine_tune_checkpoint_type", kind)
    return doc.text


# ---------------------------------------------------------------- form fields


def form_fields(text: str) -> list[tuple[str, str]]:
    """`COMMON_FIELDS` with `{optimizer}` resolved to the optimizer `text` uses."""
    doc = pc.ConfigDocument(text)
    optimizer = next((o for o in _OPTIMIZERS if doc.get_or(f"train_config.optimizer.{o}") is not None),
                     "momentum_optimizer")
    return [(label, path.format(optimizer=optimizer)) for label, path in COMMON_FIELDS]


def common_fields(text: str) -> dict[str, Any]:
    """The values of the form's fields by path (None where absent) and the augmentation options present."""
    doc = pc.ConfigDocument(text)
    values = {path: doc.get_or(path) for _, path in form_fields(text)}
    present = [next(iter(m.names()), None) for m in doc.get_all("train_config.data_augmentation_options")
               if isinstance(m, pc.Message)]
    values["augmentations"] = [name for name in AUGMENTATIONS if name in present]
    return values


def set_common_fields(text: str, values: dict[str, Any]) -> str:
    """Apply the form's values (by path): changed fields are set, unchanged ones keep their
    bytes; text typed for a number is read as one; `augmentations` adds and removes
    `data_augmentation_options` entries."""
    doc = pc.ConfigDocument(text)
    before = common_fields(text)
    for _, path in form_fields(text):
        value = values.get(path)
        if isinstance(value, str) and not isinstance(before[path], str):
            value = pc.parse_literal(value, before[path]) if value.strip() else None
        if path in values and value != before[path] and value not in (None, ""):
            doc.set(path, value)
    wanted = values.get("augmentations")
    if wanted is not None:
        options = "train_config.data_augmentation_options"
        for index in reversed(range(len(doc.get_all(options)))):
            message = doc.get(f"{options}[{index}]")
            name = next(iter(message.names()), None) if isinstance(message, pc.Message) else None
            if name in AUGMENTATIONS and name not in wanted:
                doc.remove(f"{options}[{index}]")
        present = common_fields(doc.text)["augmentations"]
        for name in wanted:
            if name not in present:
                doc.add(options, {name: {}})
    return doc.text


def syntax_problem(text: str) -> Problem | None:
    """The syntax error of a config's text as a problem with line and column, or None."""
    try:
        pc.parse(text)
    except pc.ConfigSyntaxError as exc:
        return Problem("(syntax)", exc.line, str(exc))
    return None


def diff(old: str, new: str, old_name: str = "saved", new_name: str = "edited") -> str:
    """A unified diff of two config texts ('' when equal)."""
    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        fromfile=old_name, tofile=new_name))


# ---------------------------------------------------------------- templates


def templates() -> dict[str, str]:
    """The trainer's starting configs by name (`default`, `quick`, `zoo_gpu`)."""
    from backend.training import templates as trainer_templates
    return {name: trainer_templates.template_text(name) for name in trainer_templates.TEMPLATES}


# ---------------------------------------------------------------- saved configs


def save_config(db: sqlite_utils.Database, actor: dict, project_id: int, name: str,
                text: str) -> dict:
    """Save `text` as the next version of config `name` in the project. Syntax is checked
    (a `ConfigSyntaxError` with line and column); other problems are the validator's job."""
    require(actor, "train")
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise Invalid("a config needs a name of 1–100 characters")
    pc.parse(text)
    with transaction(db):
        row = one(db, "select max(version) as v from configs where project_id = ? and name = ?",
                  [project_id, name])
        version = (row["v"] or 0) + 1
        config_id = db["configs"].insert({
            "project_id": project_id, "name": name, "version": version, "text": text,
            "created_at": now(), "created_by": actor.get("id")}).last_pk
    return get_config(db, config_id)


def get_config(db: sqlite_utils.Database, config_id: int) -> dict:
    row = one(db, "select c.*, u.username as created_by_name from configs c "
                  "left join users u on u.id = c.created_by where c.id = ?", [config_id])
    if row is None:
        raise NotFound(f"no saved config {config_id}")
    return row


def list_configs(db: sqlite_utils.Database, project_id: int) -> list[dict]:
    """The newest version of each named config in the project, by name."""
    return list(db.query(
        "select c.*, u.username as created_by_name from configs c "
        "left join users u on u.id = c.created_by "
        "where c.project_id = ? and c.version = (select max(version) from configs d "
        "where d.project_id = c.project_id and d.name = c.name) order by c.name", [project_id]))


def config_versions(db: sqlite_utils.Database, project_id: int, name: str) -> list[dict]:
    """Every version of config `name`, newest first."""
    return list(db.query(
        "select c.*, u.username as created_by_name from configs c "
        "left join users u on u.id = c.created_by "
        "where c.project_id = ? and c.name = ? order by c.version desc", [project_id, name]))


def all_configs(db: sqlite_utils.Database, project_id: int) -> list[dict]:
    """Every saved version in the project, newest first (for pickers)."""
    return list(db.query("select id, name, version, created_at from configs where project_id = ? "
                         "order by name, version desc", [project_id]))


def config_title(row: dict) -> str:
    return f"{row['name']} v{row['version']}"
