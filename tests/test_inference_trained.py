"""Prediction with a real Boxwise export: the session's `shapes_model` (tests/conftest.py: the
trainer's 64 px shapes detector trained 300 steps, exported by a `python -m backend export-model`
subprocess with exporter_main_v2.py's flags), predicted, registered and used for batch drafts.
Slow: the shared model takes minutes to train on 2 CPU cores (once per session)."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from backend import annotations, images, inference, model_registry, predictions
from backend.__main__ import main
from tests.training import shapes
from backend.auth import CLI_ACTOR

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def boxwise_export(shapes_model):
    return shapes_model["export"]


def _shape_image(path: Path, size: int = 96, seed: int = 3) -> Path:
    data, _ = shapes.make_image(size, random.Random(seed))
    path.write_bytes(data)
    return path


def test_a_real_boxwise_export_predicts_through_the_cli(boxwise_export, tmp_path, capsys):
    square = _shape_image(tmp_path / "shape.jpg")
    wide = tmp_path / "wide.png"
    from PIL import Image
    Image.open(square).resize((200, 120)).save(wide)  # another size than the model's 64×64 input
    code = main(["predict", "--model", str(boxwise_export), str(square), str(wide), "--json", "--min-score", "0"])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["image"], line["width"], line["height"]) for line in lines] == \
        [(str(square), 96, 96), (str(wide), 200, 120)]
    for line in lines:
        detections = line["detections"]
        assert detections, "with --min-score 0 the SSD returns its top-scoring anchors"
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
