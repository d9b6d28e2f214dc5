"""TFLite exports of registered models, for the Models page and the CLI.

A registered model can be exported to TFLite when its folder is a Boxwise export: it holds
`pipeline.config` and `checkpoint/` (the trained weights) beside `saved_model/`. Each export
goes to `data/tflite/model-<id>/<quantize>/` (`backend.training.tflite_export` describes the
files); int8 calibrates on the train records of the dataset version the model was trained on.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import sqlite_utils

from backend import model_registry, settings
from backend.auth import require
from backend.errors import Invalid, NotFound

QUANTIZE = ("none", "float16", "int8")  # as backend.training.tflite_export (imported lazily: TensorFlow)
DEVICE_FILES = ("model.tflite", "labels.txt", "label_map.pbtxt", "model.json")


def has_checkpoint(model: dict) -> bool:
    """Whether the registered model's folder has what a TFLite export needs."""
    root = Path(model["path"])
    return (root / "pipeline.config").is_file() and (root / "checkpoint" / "checkpoint").is_file()


def exportable_models(db: sqlite_utils.Database, project_id: int) -> list[dict]:
    """The project's registered models with a checkpoint, newest first."""
    return [m for m in model_registry.list_models(db, project_id) if has_checkpoint(m)]


def representative_glob(db: sqlite_utils.Database, export_id: int) -> str:
    """The train-split shard glob of dataset version `export_id` (int8 calibration images)."""
    from backend import dataset_versions
    version = dataset_versions.get_version(db, export_id)
    if not version.train_glob:
        raise NotFound(f"dataset version #{export_id} has no train records to calibrate int8 with")
    return version.train_glob


def output_dir(model_id: int, quantize: str) -> Path:
    if quantize not in QUANTIZE:
        raise Invalid(f"quantize {quantize!r}: choose one of {', '.join(QUANTIZE)}")
    return settings.subdir("tflite") / f"model-{int(model_id)}" / quantize


def export_registered(db: sqlite_utils.Database, actor: dict, model_id: int, quantize: str = "none",
                      max_detections: int = 10) -> dict:
    """Export registered model `model_id` to TFLite; returns `read_export`'s dict."""
    require(actor, "train")
    model = model_registry.get_model(db, model_id)
    if not has_checkpoint(model):
        raise Invalid(f"model #{model_id} has no checkpoint/ and pipeline.config beside its SavedModel "
                      "(only Boxwise exports can be converted): export it from its run first")
    output = output_dir(model_id, quantize)
    records = [representative_glob(db, model["export_id"])] if quantize == "int8" and model["export_id"] else None
    root = Path(model["path"])
    label_map = root / "label_map.pbtxt"
    from backend.training.tflite_export import export_tflite
    export_tflite(root / "pipeline.config", root / "checkpoint", output, max_detections=max_detections,
                  quantize=quantize, representative_records=records,
                  label_map_path=label_map if label_map.is_file() else None)
    return read_export(model_id, quantize)


def read_export(model_id: int, quantize: str) -> dict | None:
    """`{"quantize", "directory", "size_bytes" (model.tflite), "description" (model.json)}` of an
    existing TFLite export of the model, or None."""
    folder = output_dir(model_id, quantize)
    if not (folder / "model.tflite").is_file() or not (folder / "model.json").is_file():
        return None
    return {"quantize": quantize, "directory": str(folder), "size_bytes": (folder / "model.tflite").stat().st_size,
            "description": json.loads((folder / "model.json").read_text())}


def list_exports(model_id: int) -> list[dict]:
    """The model's TFLite exports on disk, one per quantization."""
    return [found for quantize in QUANTIZE if (found := read_export(model_id, quantize))]


def download(db: sqlite_utils.Database, actor: dict, model_id: int, quantize: str) -> tuple[str, bytes]:
    """`(file name, zip bytes)` of an export's device files: model.tflite, labels.txt,
    label_map.pbtxt and model.json."""
    require(actor, "view")
    model = model_registry.get_model(db, model_id)
    found = read_export(model_id, quantize)
    if found is None:
        raise NotFound(f"model #{model_id} has no {quantize} TFLite export yet")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in DEVICE_FILES:
            archive.write(Path(found["directory"]) / name, name)
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in model["name"])[:60] or f"model-{model_id}"
    return f"{stem}-{quantize}-tflite.zip", buffer.getvalue()
