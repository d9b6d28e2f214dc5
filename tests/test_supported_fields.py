"""Every field `config_check.SUPPORTED` calls supported reaches the trainer's typed settings: for
each scalar field of the schema under a supported path, the quick template with that field set to
another valid value gives other `training_config` settings than without. A field that would give
the same settings belongs in the ignored table (`pipeline_schema/ignored.py`) with its reason, or
in `_CHOICES` when only one value is accepted."""
from __future__ import annotations

import pytest
from google.protobuf import text_format

from backend import config_check, pipeline_schema
from backend.config_document import ConfigDocument
from backend.errors import Invalid
from backend.training.templates import template_text
from backend.training.training_config import training_config

QUICK = template_text("quick")
ANCHORS = "model.ssd.anchor_generator.multiscale_anchor_generator"
FPN = "model.ssd.feature_extractor.fpn"
MATCHER = "model.ssd.matcher.argmax_matcher"
# Names that select the same implementation: the trainer builds the same network for both.
ALIASES = {"model.ssd.feature_extractor.type": {"ssd_mobilenet_v2_fpn_keras", "ssd_mobilenet_v2_fpn"}}
# Fields that must move together to stay valid (the FPN's levels are the anchors' levels).
TOGETHER = {f"{ANCHORS}.min_level": f"{FPN}.min_level", f"{ANCHORS}.max_level": f"{FPN}.max_level",
            f"{FPN}.min_level": f"{ANCHORS}.min_level", f"{FPN}.max_level": f"{ANCHORS}.max_level"}


def _leaves(descriptor, prefix=""):
    for field in descriptor.fields:
        path = prefix + field.name
        if not config_check._matches(path, config_check.SUPPORTED):
            continue
        if field.message_type is not None:
            yield from _leaves(field.message_type, path + ".")
        else:
            yield path, field


LEAVES = dict(_leaves(pipeline_schema.TrainEvalPipelineConfig.DESCRIPTOR))


def _holder(message, parts):
    """The message holding the field `parts[-1]`, made present along the way (a repeated message:
    its first element, added when there is none)."""
    for name in parts[:-1]:
        if message.DESCRIPTOR.fields_by_name[name].is_repeated:
            items = getattr(message, name)
            message = items[0] if len(items) else items.add()
        else:
            message = getattr(message, name)
            message.SetInParent()
    return message


def _base(path: str):
    """The quick template, typed, with the message holding `path` present and valid."""
    typed, problems = pipeline_schema.parse(QUICK)
    assert problems == []
    optimizer = typed.train_config.optimizer
    parts = path.split(".")
    if path.startswith("train_config.optimizer.") and parts[2] != optimizer.WhichOneof("optimizer") \
            and parts[2] != "use_moving_average":
        rate = type(optimizer.adam_optimizer.learning_rate)()
        rate.CopyFrom(optimizer.adam_optimizer.learning_rate)
        getattr(optimizer, parts[2]).learning_rate.CopyFrom(rate)
    if ".learning_rate." in path:
        kind = getattr(optimizer, parts[2])
        name = parts[4]
        if name == "manual_step_learning_rate" and not kind.learning_rate.HasField(name):
            kind.learning_rate.manual_step_learning_rate.initial_learning_rate = 0.002
            step = kind.learning_rate.manual_step_learning_rate.schedule.add()
            step.step, step.learning_rate = 100, 0.001
        elif name == "exponential_decay_learning_rate":
            kind.learning_rate.exponential_decay_learning_rate.initial_learning_rate = 0.002
        elif name == "constant_learning_rate":
            kind.learning_rate.constant_learning_rate.learning_rate = 0.002
    if path == f"{MATCHER}.negatives_lower_than_unmatched":
        _holder(typed, path.split(".")).unmatched_threshold = 0.4
    _holder(typed, parts)
    return typed


def _other(path: str, field, current):
    """Another valid value for the field."""
    if path in config_check._CHOICES:
        choices = sorted(set(config_check._CHOICES[path]) - {current, ""}, key=str)
        return choices[0] if choices else None
    if field.type == field.TYPE_BOOL:
        return not current
    if field.type == field.TYPE_ENUM:
        return next(v.number for v in field.enum_type.values if v.number != current)
    if field.type in (field.TYPE_FLOAT, field.TYPE_DOUBLE):
        if path == f"{MATCHER}.unmatched_threshold":
            return current - 0.1  # stays <= matched_threshold
        if path == f"{MATCHER}.matched_threshold":
            return current + 0.1
        return current * 0.5 if current else 0.25
    if field.type == field.TYPE_STRING:
        return (current or "x") + "y"
    if path.endswith("total_steps"):
        return current + 1  # stays >= num_steps
    return current - 1 if current > 1 else current + 1


def _set(typed, path: str):
    parts = path.split(".")
    holder, field = _holder(typed, parts), LEAVES[path]
    if field.is_repeated:
        items = getattr(holder, parts[-1])
        value = _other(path, field, items[-1] if len(items) else field.default_value or 0)
        items.append(value if field.type != field.TYPE_STRING else "extra.record")
        return True
    value = _other(path, field, getattr(holder, parts[-1]))
    if value is None:
        return False
    setattr(holder, parts[-1], value)
    return True


def _settings(typed):
    return training_config(ConfigDocument(text_format.MessageToString(typed)))


def test_the_supported_fields_are_the_schemas():
    assert len(LEAVES) == 168
    for path in LEAVES:
        assert not config_check._matches(path, config_check.IGNORED), path


@pytest.mark.parametrize("path", sorted(LEAVES))
def test_each_supported_field_changes_the_trainers_settings(path):
    choices = config_check._CHOICES.get(path)
    typed = _base(path)
    before = _settings(typed)
    if choices is not None and len(choices) == 1:
        # Accepted with one value only: the trainer builds that; any other value is refused.
        changed = _base(path)
        field = LEAVES[path]
        holder = _holder(changed, path.split("."))
        current = getattr(holder, path.split(".")[-1])
        if field.type == field.TYPE_BOOL:
            setattr(holder, path.split(".")[-1], not current)
        else:
            setattr(holder, path.split(".")[-1], next(v.number for v in field.enum_type.values if v.number != current))
        with pytest.raises(Invalid, match=path.replace(".", r"\.")):
            _settings(changed)
        return
    changed = _base(path)
    assert _set(changed, path)
    if path in TOGETHER:
        _set(changed, TOGETHER[path])
    after = _settings(changed)
    if path in ALIASES:
        assert after == before
        return
    assert after != before, f"{path}: another value gives the same training settings"
