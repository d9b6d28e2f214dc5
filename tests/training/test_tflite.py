"""TFLite export (`export-tflite`, the Models page) checked by running the .tflite with LiteRT.

One small detector (64 px, MobileNetV2 at width 0.35, 300 steps on generated shapes: the session's
`shapes_model` of tests/conftest.py, shared with the trainer's end-to-end test) is trained once and
exported as a SavedModel; every .tflite is compared with it on the same
fixed images, and quantized ones by held-out mAP@0.5 against the float32 .tflite.
"""
from __future__ import annotations

import io
import json
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.errors import Invalid
from backend.training import tflite_export
from tests.training.conftest import tiny_config
from tests.training.shapes import make_image
from backend.auth import CLI_ACTOR

THRESHOLD = 0.3   # detections compared above this score
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def trained(shapes_model):
    """`{"config", "run", "export", "train_glob", "val_glob", "label_map", ...}`: the session's
    trained run and its SavedModel export (tests/conftest.py), read-only here."""
    return shapes_model


@pytest.fixture(scope="module")
def untrained(shapes_data, tmp_path_factory):
    """`(pipeline.config, checkpoint dir)` of a detector saved as built, without training."""
    import tensorflow as tf
    from backend.training.train import checkpoint_for, load_detector
    data, train_glob, eval_glob, _ = shapes_data
    root = tmp_path_factory.mktemp("untrained")
    config = root / "pipeline.config"
    config.write_text(tiny_config(data, train_glob, eval_glob))
    _, model = load_detector(config)
    tf.train.CheckpointManager(checkpoint_for(model), str(root / "checkpoint"), max_to_keep=1).save(checkpoint_number=0)
    return config, root / "checkpoint"


@pytest.fixture(scope="module")
def fixed_images():
    """Eight 64 px images of one or two shapes, the same every run."""
    rng = random.Random(11)
    return [np.array(Image.open(io.BytesIO(make_image(64, rng, max_objects=2, min_fraction=0.35,
                                                      max_fraction=0.6)[0])).convert("RGB"))
            for _ in range(8)]


def _above(found: dict, threshold: float = THRESHOLD) -> dict:
    keep = found["scores"] > threshold
    order = np.argsort(-found["scores"][keep], kind="stable")
    return {key: value[keep][order] for key, value in found.items()}


def _assert_same_detections(tflite: dict, saved: dict) -> int:
    a, b = _above(tflite), _above(saved)
    assert a["classes"].tolist() == b["classes"].tolist(), (a, b)
    np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-3)
    np.testing.assert_allclose(a["boxes"], b["boxes"], atol=1e-3)
    return len(a["scores"])


@pytest.fixture(scope="module")
def exports(trained, tmp_path_factory):
    """`{quantize: export dir}`: none, float16 and int8 with 100 detections and per-class NMS (as
    the SavedModel's), int8 calibrated on the train records."""
    made, root = {}, tmp_path_factory.mktemp("tflite")
    for quantize in ("none", "float16", "int8"):
        made[quantize] = tflite_export.export_tflite(
            trained["config"], trained["run"], root / f"tflite_{quantize}", max_detections=100,
            use_regular_nms=True, quantize=quantize,
            representative_records=[trained["train_glob"]] if quantize == "int8" else None)
    return made


@pytest.mark.slow
def test_float32_tflite_detections_equal_the_saved_models(trained, exports, fixed_images):
    lite = tflite_export.TFLiteDetector(exports["none"])
    saved = tflite_export.saved_model_detector(trained["export"] / "saved_model")
    compared = [_assert_same_detections(lite.detect(image), saved(image)) for image in fixed_images]
    assert sum(compared) >= len(fixed_images), compared  # the comparison is not vacuous


@pytest.mark.slow
def test_export_tflite_command_writes_the_od_api_contract(trained, fixed_images, tmp_path, capsys):
    from backend.__main__ import main
    out = tmp_path / "tflite"
    assert main(["export-tflite", f"--pipeline_config_path={trained['config']}",
                 f"--trained_checkpoint_dir={trained['run']}", f"--output_directory={out}"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["label_map.pbtxt", "labels.txt", "model.json",
                                                     "model.tflite", "saved_model"]
    assert (out / "labels.txt").read_text() == "square\ndisc\n"
    assert "name: 'disc'" in (out / "label_map.pbtxt").read_text()
    described = json.loads((out / "model.json").read_text())
    assert json.loads(capsys.readouterr().out) == described
    assert described["input"]["shape"] == [1, 64, 64, 3] and described["input"]["dtype"] == "float32"
    outputs = described["outputs"]
    assert {role: (t["shape"], t["dtype"]) for role, t in outputs.items()} == {
        "boxes": ([1, 10, 4], "float32"), "classes": ([1, 10], "float32"),
        "scores": ([1, 10], "float32"), "count": ([1], "float32")}
    # The OD API's reversed tuple: StatefulPartitionedCall:0 is the count, :3 the boxes.
    assert {role: t["name"] for role, t in outputs.items()} == {
        "count": "StatefulPartitionedCall:0", "scores": "StatefulPartitionedCall:1",
        "classes": "StatefulPartitionedCall:2", "boxes": "StatefulPartitionedCall:3"}
    model = (out / "model.tflite").read_bytes()
    assert tflite_export.custom_ops(model) == ["TFLite_Detection_PostProcess"]
    # The default NMS (the OD API's fast one: one class per box, class-agnostic) keeps the
    # SavedModel's per-class detections except those a kept, higher-scoring box overlaps.
    lite = tflite_export.TFLiteDetector(out)
    saved = tflite_export.saved_model_detector(trained["export"] / "saved_model")
    kept = dropped = 0
    for image in fixed_images:
        a, b = _above(lite.detect(image)), _above(saved(image))
        before = kept
        assert len(a["scores"]) <= 10 and a["classes"].min(initial=1) >= 1
        for i in range(len(b["scores"])):
            same = [j for j in range(len(a["scores"])) if a["classes"][j] == b["classes"][i]
                    and np.abs(a["boxes"][j] - b["boxes"][i]).max() <= 1e-3]
            if same:
                assert abs(a["scores"][same[0]] - b["scores"][i]) <= 1e-3
                kept += 1
            else:
                assert any(_iou(a["boxes"][j], b["boxes"][i]) > 0.6 and a["scores"][j] >= b["scores"][i]
                           for j in range(len(a["scores"]))), (a, b, i)
                dropped += 1
        assert kept - before == len(a["scores"]), (a, b)  # every TFLite detection is one of the SavedModel's
    assert kept >= len(fixed_images), (kept, dropped)


def _iou(box_a: np.ndarray, box_b: np.ndarray) -> float:
    """IoU of two yxyx boxes."""
    height = max(0.0, min(box_a[2], box_b[2]) - max(box_a[0], box_b[0]))
    width = max(0.0, min(box_a[3], box_b[3]) - max(box_a[1], box_b[1]))
    inter = height * width
    area = (box_a[2] - box_a[0]) * (box_a[3] - box_a[1]) + (box_b[2] - box_b[0]) * (box_b[3] - box_b[1])
    return float(inter / (area - inter)) if area > inter else 0.0


@pytest.mark.slow
def test_quantized_models_held_out_map_is_measured_against_float32(trained, exports, capsys):
    images = tflite_export.held_out_images([trained["val_glob"]], 64, 64)
    assert len(images) == 16
    saved = tflite_export.map_50(tflite_export.saved_model_detector(trained["export"] / "saved_model"),
                                 images, trained["label_map"])
    report, sizes = {"saved_model": saved}, {}
    for quantize, out in exports.items():
        assert json.loads((out / "model.json").read_text())["quantize"] == quantize
        report[quantize] = tflite_export.map_50(tflite_export.TFLiteDetector(out).detect, images, out / "label_map.pbtxt")
        sizes[quantize] = (out / "model.tflite").stat().st_size
    with capsys.disabled():
        print(f"\nheld-out mAP@0.5 on {len(images)} images: {report}; .tflite bytes: {sizes}")
    assert all(0.0 <= value <= 1.0 for value in report.values()), report
    assert saved > 0.5, report                               # the test model learned the shapes
    assert abs(report["none"] - saved) <= 0.02, report       # float32: the same detector
    assert abs(report["float16"] - report["none"]) <= 0.05, report
    assert report["int8"] >= report["none"] - 0.3, report    # int8 costs some accuracy, not all
    assert sizes["int8"] < 0.4 * sizes["none"] and sizes["float16"] < 0.6 * sizes["none"], sizes


@pytest.mark.slow
def test_an_op_tflite_lacks_is_refused_by_name_and_nothing_is_written(untrained, tmp_path, monkeypatch):
    import tensorflow as tf
    seam = tflite_export.raw_predictions

    def with_determinant(model, images):
        boxes, scores = seam(model, images)
        square = tf.reshape(images[0, :8, :8, 0], [8, 8])
        return boxes, tf.minimum(scores, 1.0 + tf.abs(tf.linalg.det(square)))  # scores, through a determinant

    monkeypatch.setattr(tflite_export, "raw_predictions", with_determinant)
    out = tmp_path / "refused"
    with pytest.raises(Invalid, match=r"the model uses MatrixDeterminant, which TFLite's builtin ops"):
        tflite_export.export_tflite(*untrained, out)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_labels_txt_lines_are_class_indices_with_gaps_marked():
    from backend.formats.label_map import LabelMapItem
    items = [LabelMapItem(3, "bird"), LabelMapItem(1, "cat")]
    assert tflite_export.labels_text(items) == "cat\n???\nbird\n"


@pytest.mark.slow
def test_readme_litert_snippet_runs_on_an_export(exports, fixed_images, tmp_path):
    out = tmp_path / "device"
    shutil.copytree(exports["none"], out)
    Image.fromarray(fixed_images[0]).save(out / "photo.jpg", quality=95)
    snippet = re.search(r"Run it with LiteRT.*?```python\n(.*?)```", README.read_text(), re.S).group(1)
    result = subprocess.run([sys.executable, "-c", snippet], cwd=out, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    expected = tflite_export.TFLiteDetector(out).detect(np.asarray(Image.open(out / "photo.jpg")))
    assert len(lines) == len(expected["scores"]) >= 1
    names = {1: "square", 2: "disc"}
    assert [line.split()[0] for line in lines] == [names[int(c)] for c in expected["classes"]]


@pytest.mark.slow
def test_models_page_exports_a_registered_model_and_offers_the_download(trained, db, users, project, tmp_path):
    import zipfile
    from backend import model_registry, tflite
    from tests.helpers import signed_in
    export = tmp_path / "export"
    shutil.copytree(trained["export"], export)
    model = model_registry.register_directory(db, CLI_ACTOR, project["id"], export)  # (outside the data folder)
    with pytest.raises(PermissionError):
        tflite.export_registered(db, users["labeler"], model["id"], "none")
    at = signed_in(db, "reviewer", "pages/models.py")
    assert at.selectbox(key="tflite_model").value == model["id"]
    assert not at.get("download_button")
    at.radio(key="tflite_quantize").set_value("int8")
    [b for b in at.button if b.label == "Export to TFLite"][0].click().run(timeout=300)
    assert not at.exception and not at.error, (at.exception, at.error)
    [found] = tflite.list_exports(model["id"])
    assert found["quantize"] == "int8" and found["description"]["quantize"] == "int8"
    assert [b.label for b in at.get("download_button")] == [
        f"Download int8 TFLite ({found['size_bytes'] / 1024**2:.2f} MB .tflite, with labels.txt and model.json)"]
    name, data = tflite.download(db, users["viewer"], model["id"], "int8")
    assert name == "export-int8-tflite.zip"
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert sorted(archive.namelist()) == ["label_map.pbtxt", "labels.txt", "model.json", "model.tflite"]
        assert archive.read("labels.txt") == b"square\ndisc\n"
    # A labeler sees the download but no export form.
    at = signed_in(db, "labeler", "pages/models.py")
    assert not [b for b in at.button if b.label == "Export to TFLite"]
    assert len(at.get("download_button")) == 1


def test_int8_calibrates_on_the_dataset_versions_train_records(db, admin, project, labeled,
                                                               shapes_data, tmp_path):
    from backend import dataset_versions, tflite
    from backend.config_document import ConfigDocument
    from backend.training.training_config import training_config
    version = dataset_versions.create_export(db, admin, project["id"], splits="train=1")
    glob = tflite.representative_glob(db, version.id)
    assert glob == version.shard_globs["train"]
    data, train_glob, eval_glob, _ = shapes_data
    (tmp_path / "pipeline.config").write_text(tiny_config(data, train_glob, eval_glob))
    config = training_config(ConfigDocument.load(tmp_path / "pipeline.config"))
    images = tflite_export.representative_images([glob], config)
    assert len(images) == 6  # the labeled and reviewed images, the negative one included
    assert all(image.shape == (1, 64, 64, 3) and image.dtype == np.float32 for image in images)
    assert all(-1.0 <= image.min() and image.max() <= 1.0 for image in images)
    # a.jpg is solid (250, 0, 0): red 250 / 127.5 - 1 = 0.96 after normalisation
    assert any(abs(image[..., 0].mean() - 0.96) < 0.03 and image[..., 1].mean() < -0.9 for image in images)
