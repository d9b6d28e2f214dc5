"""Prediction with a real Boxwise export: a one-step training run of the `quick` recipe on the
trainer's generated shapes, exported with `python -m backend export-model` (exporter_main_v2.py's
flags), then predicted, registered and used for batch drafts. Slow (a few minutes on 2 CPU
cores: mostly TensorFlow tracing), so the export is made once for the module."""
from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from backend import annotations, images, inference, model_registry, predictions
from backend.__main__ import main
from tests.training import shapes
from backend.auth import CLI_ACTOR

# Every test here uses one model trained for the module (about 30 s on 2 cores).
pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def boxwise_export(tmp_path_factory):
    from backend.training.templates import render_template
    from backend.training.train import run_training

    work = tmp_path_factory.mktemp("trained")
    train_glob, _ = shapes.write_dataset(work / "data", "train", 4, size=96)
    val_glob, _ = shapes.write_dataset(work / "data", "val", 2, size=96, seed=1)
    label_map = shapes.write_label_map(work / "data")
    config = work / "pipeline.config"
    config.write_text(render_template("quick", num_classes=2, train_input=train_glob, eval_input=val_glob,
                                      label_map_path=str(label_map), num_steps=1, batch_size=2))
    status = run_training(config, work / "model_dir", num_train_steps=1, checkpoint_every_n=1,
                          record_summaries=False)
    assert status["state"] == "succeeded", status
    done = subprocess.run([sys.executable, "-m", "backend", "export-model", "--input_type", "image_tensor",
                           "--pipeline_config_path", str(config),
                           "--trained_checkpoint_dir", str(work / "model_dir"),
                           "--output_directory", str(work / "exported")],
                          cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    return work / "exported"


def _shape_image(path: Path, size: int = 96, seed: int = 3) -> Path:
    data, _ = shapes.make_image(size, random.Random(seed))
    path.write_bytes(data)
    return path


def test_a_real_boxwise_export_predicts_through_the_cli(boxwise_export, tmp_path, capsys):
    square = _shape_image(tmp_path / "shape.jpg")
    wide = tmp_path / "wide.png"
    from PIL import Image
    Image.open(square).resize((200, 120)).save(wide)  # another size than the model's 128×128 input
    code = main(["predict", "--model", str(boxwise_export), str(square), str(wide), "--json", "--min-score", "0"])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["image"], line["width"], line["height"]) for line in lines] == \
        [(str(square), 96, 96), (str(wide), 200, 120)]
    for line in lines:
        detections = line["detections"]
        assert detections, "an untrained SSD still returns its top-scoring anchors"
        assert [d["score"] for d in detections] == sorted((d["score"] for d in detections), reverse=True)
        for d in detections:
            assert set(d) == {"class_id", "class_name", "score", "box", "box_normalized"}
            assert (d["class_id"], d["class_name"]) in {(1, "square"), (2, "disc")}
            ymin, xmin, ymax, xmax = d["box_normalized"]
            assert 0 <= ymin <= ymax <= 1 and 0 <= xmin <= xmax <= 1
            assert d["box"] == pytest.approx([xmin * line["width"], ymin * line["height"],
                                              xmax * line["width"], ymax * line["height"]], abs=0.011)


def test_a_real_boxwise_export_is_registered_and_makes_drafts(db, admin, boxwise_export):
    from backend import projects
    project = projects.create_project(db, admin, "shapes", ["square", "disc"])
    report = images.ingest(db, admin, project["id"], [
        (f"s{i}.jpg", shapes.make_image(96, random.Random(10 + i))[0]) for i in range(2)])
    model = model_registry.register_directory(db, CLI_ACTOR, project["id"], boxwise_export)
    assert (model["warnings"], model_registry.label_map_names(model)) == ([], {1: "square", 2: "disc"})
    loaded = inference.load_model(model["path"])
    assert loaded.input_size is None  # the Boxwise export takes any H and W and resizes inside
    model_registry.set_current(db, admin, project["id"], model["id"])
    progress = predictions.predict_project(db, admin, project["id"], min_score=0.0)
    assert (progress["state"], progress["done"], progress["failed"]) == ("done", 2, 0)
    for item in report.items:
        drafts = annotations.get_boxes(db, item.image_id, source="model")
        assert drafts and progress["drafts"] >= len(drafts)
        assert all(0.0 <= d["score"] <= 1.0 and 0 <= d["xmin"] < d["xmax"] <= 96 for d in drafts)
        assert 0.0 <= images.get_image(db, item.image_id)["uncertainty"] <= 1.0
