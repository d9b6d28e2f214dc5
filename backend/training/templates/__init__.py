"""Config templates in TF OD API text format: `default` (a better model in about an hour of CPU),
`quick` (small and fast, for a first look on a CPU) and `zoo_gpu` (the zoo
ssd_mobilenet_v2_fpnlite_320x320 recipe, 320×320 at batch 16: a start for a GPU).

    template_text("quick")                       # the file as shipped, PATH_TO_BE_CONFIGURED inside
    render_template("quick", num_classes=3, train_input="/x/train.record-?????-of-00010",
                    eval_input="/x/val.record-?????-of-00010", label_map_path="/x/label_map.pbtxt")
"""
from __future__ import annotations

from pathlib import Path

from backend.errors import NotFound
from backend.config_document import ConfigDocument

TEMPLATES = ("default", "quick", "zoo_gpu")
_HERE = Path(__file__).parent


def template_path(name: str) -> Path:
    if name not in TEMPLATES:
        raise NotFound(f"no config template {name!r}: choose one of {', '.join(TEMPLATES)}")
    return _HERE / f"{name}.config"


def template_text(name: str) -> str:
    return template_path(name).read_text(encoding="utf-8")


def render_template(name: str, *, num_classes: int | None = None, train_input: str | None = None,
                    eval_input: str | None = None, label_map_path: str | None = None,
                    num_steps: int | None = None, batch_size: int | None = None) -> str:
    """The template with a dataset's paths and class count filled in (comments kept)."""
    doc = ConfigDocument(template_text(name))
    edits = {
        "model.ssd.num_classes": num_classes,
        "train_input_reader.tf_record_input_reader.input_path": train_input,
        "eval_input_reader.tf_record_input_reader.input_path": eval_input,
        "train_input_reader.label_map_path": label_map_path,
        "eval_input_reader.label_map_path": label_map_path,
        "train_config.batch_size": batch_size,
    }
    for path, value in edits.items():
        if value is not None:
            doc.set(path, value)
    if num_steps is not None:
        doc.set("train_config.num_steps", num_steps)
        for kind in ("momentum_optimizer", "adam_optimizer", "rms_prop_optimizer"):
            prefix = f"train_config.optimizer.{kind}.learning_rate.cosine_decay_learning_rate"
            try:
                doc.get(prefix)
            except Exception:  # noqa: BLE001 - not this optimizer
                continue
            doc.set(f"{prefix}.total_steps", num_steps)
            warmup = doc.get(f"{prefix}.warmup_steps")
            if warmup > num_steps:
                doc.set(f"{prefix}.warmup_steps", max(num_steps // 10, 0))
    return doc.text
