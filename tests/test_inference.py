"""Prediction with real SavedModels that have the TF OD API signature (built by tests/savedmodels.py)."""
from __future__ import annotations

import csv
import io
import json

import pytest
from PIL import Image

from backend import inference, projects
from backend.images import ImageRejected
from tests import savedmodels
from tests.helpers import image_bytes


@pytest.fixture(scope="module")
def detector(export_dir):
    return inference.load_model(export_dir)


def test_detections_are_sorted_clipped_named_and_padding_dropped(detector):
    prediction = detector.predict(image_bytes((200, 100)), "a.jpg")
    assert (prediction.image, prediction.width, prediction.height) == ("a.jpg", 200, 100)
    assert [d.score for d in prediction.detections] == pytest.approx([0.9, 0.6, 0.3])
    assert [(d.class_id, d.class_name) for d in prediction.detections] == \
        [(2, "dog"), (1, "cat"), (1, "cat")]
    dog, big, cat = prediction.detections
    assert dog.box == pytest.approx((60.0, 30.0, 180.0, 90.0))
    assert dog.box_normalized == pytest.approx((0.3, 0.3, 0.9, 0.9))
    assert big.box == pytest.approx((0.0, 0.0, 200.0, 100.0))        # clipped to the image
    assert big.box_normalized == pytest.approx((0.0, 0.0, 1.0, 1.0))
    assert cat.box == pytest.approx((40.0, 10.0, 120.0, 50.0))
    assert set(prediction.timings_ms) == {"decode", "preprocess", "inference", "postprocess", "total"}
    assert prediction.latency_ms >= prediction.timings_ms["inference"] > 0
    assert detector.warnings == []


def test_score_threshold_and_class_filter_apply_after_the_model(detector):
    prediction = detector.predict(image_bytes((200, 100)), "a.jpg")
    assert [d.score for d in prediction.filtered(0.5)] == pytest.approx([0.9, 0.6])
    assert [d.score for d in prediction.filtered(0.6)] == pytest.approx([0.9, 0.6])  # inclusive
    assert [d.class_id for d in prediction.filtered(0.0, [1])] == [1, 1]
    assert [d.score for d in prediction.filtered(0.5, [1])] == pytest.approx([0.6])
    assert prediction.filtered(0.95) == []
    assert len(prediction.detections) == 3  # raw detections kept for re-filtering


def test_json_line_has_the_documented_fields(detector):
    prediction = detector.predict(image_bytes((200, 100)), "photos/a.jpg")
    line = json.loads(inference.json_line(prediction, min_score=0.5))
    assert line == {
        "image": "photos/a.jpg", "width": 200, "height": 100,
        "detections": [
            {"class_id": 2, "class_name": "dog", "score": 0.9, "box": [60.0, 30.0, 180.0, 90.0],
             "box_normalized": [0.3, 0.3, 0.9, 0.9]},
            {"class_id": 1, "class_name": "cat", "score": 0.6, "box": [0.0, 0.0, 200.0, 100.0],
             "box_normalized": [0.0, 0.0, 1.0, 1.0]},
        ]}


def test_csv_has_one_row_per_detection_field_by_field(detector):
    prediction = detector.predict(image_bytes((200, 100)), "a.jpg")
    rows = list(csv.DictReader(io.StringIO(inference.csv_text([prediction], min_score=0.2, class_ids=[1]))))
    assert list(rows[0]) == list(inference.CSV_FIELDS)
    assert rows == [
        {"image": "a.jpg", "width": "200", "height": "100", "class_id": "1", "class_name": "cat",
         "score": "0.6", "xmin": "0.0", "ymin": "0.0", "xmax": "200.0", "ymax": "100.0",
         "ymin_norm": "0.0", "xmin_norm": "0.0", "ymax_norm": "1.0", "xmax_norm": "1.0"},
        {"image": "a.jpg", "width": "200", "height": "100", "class_id": "1", "class_name": "cat",
         "score": "0.3", "xmin": "40.0", "ymin": "10.0", "xmax": "120.0", "ymax": "50.0",
         "ymin_norm": "0.1", "xmin_norm": "0.2", "ymax_norm": "0.5", "xmax_norm": "0.6"},
    ]


def test_coco_results_use_xywh_pixels_and_label_map_ids(detector):
    prediction = detector.predict(image_bytes((200, 100)), "a.jpg")
    assert inference.coco_results([(7, prediction)], min_score=0.5) == [
        {"image_id": 7, "category_id": 2, "bbox": [60.0, 30.0, 120.0, 60.0], "score": 0.9},
        {"image_id": 7, "category_id": 1, "bbox": [0.0, 0.0, 200.0, 100.0], "score": 0.6},
    ]


def test_fixed_input_size_model_gets_a_resized_image_and_boxes_map_back(tmp_path):
    folder = savedmodels.build_detector(tmp_path / "fixed", input_size=(64, 96))
    model = inference.load_model(folder)
    assert model.input_size == (64, 96)
    prediction = model.predict(image_bytes((300, 150)), "wide.jpg")
    assert (prediction.width, prediction.height) == (300, 150)
    assert prediction.detections[0].box == pytest.approx((90.0, 45.0, 270.0, 135.0))


def test_bare_saved_model_without_label_map_uses_numbers_and_warns(tmp_path):
    folder = savedmodels.build_detector(tmp_path / "bare", label_map=None, layout="bare")
    model = inference.load_model(folder)
    assert model.warnings == ["no label map beside this model: classes are shown by number"]
    names = [d.class_name for d in model.predict(image_bytes(), "x.png").detections]
    assert names == ["2", "1", "1"]


def test_a_label_map_that_is_not_text_is_a_warning_of_the_contract_check(export_dir, tmp_path):
    import shutil
    folder = tmp_path / "binary-label-map"
    shutil.copytree(export_dir, folder)
    (folder / "label_map.pbtxt").write_bytes(b"\xff\xfe\x00item")
    contract = inference.check_saved_model(folder)
    assert contract.label_map == {} and contract.label_map_text == ""
    assert contract.warnings == [f"unreadable label map ({folder / 'label_map.pbtxt'}: not a UTF-8 text file; "
                                 "is this a label map?): classes are shown by number"]


def test_model_given_as_its_saved_model_folder_finds_the_label_map(export_dir):
    model = inference.load_model(export_dir / "saved_model")
    assert model.path == export_dir
    assert model.label_map == {1: "cat", 2: "dog"}


def test_exif_orientation_is_applied_as_at_ingest(detector):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    data = image_bytes((200, 100), exif=exif.tobytes())
    prediction = detector.predict(data, "rotated.jpg")
    assert (prediction.width, prediction.height) == (100, 200)
    assert prediction.detections[0].box == pytest.approx((30.0, 60.0, 90.0, 180.0))


@pytest.mark.parametrize("mode,color,fmt", [("L", 128, "PNG"), ("I;16", 40000, "PNG"),
                                            ("RGBA", (10, 20, 30, 0), "PNG"), ("P", 3, "GIF")])
def test_grayscale_16bit_alpha_and_palette_images_predict(detector, mode, color, fmt):
    prediction = detector.predict(image_bytes((40, 30), color=color, fmt=fmt, mode=mode), "x")
    assert (prediction.width, prediction.height, len(prediction.detections)) == (40, 30, 3)
    assert inference.read_image(image_bytes((40, 30), color=color, fmt=fmt, mode=mode)).mode == "RGB"


def test_bad_images_are_refused_with_a_reason(detector, tmp_path):
    with pytest.raises(ImageRejected, match="not an image"):
        detector.predict(b"this is a text file", "notes.txt")
    with pytest.raises(ImageRejected, match="corrupt or truncated"):
        detector.predict(image_bytes((200, 100))[:300], "cut.jpg")
    with pytest.raises(ImageRejected, match="empty file"):
        detector.predict(b"", "empty.jpg")
    with pytest.raises(ImageRejected, match="decompression bomb"):
        detector.predict(image_bytes((200, 100), fmt="PNG"), "bomb.png", max_pixels=10_000)
    with pytest.raises(ImageRejected, match="no such file"):
        detector.predict(tmp_path / "missing.jpg")


def test_predict_many_reports_bad_images_and_keeps_going(detector):
    results = list(inference.predict_many(detector, [("a", image_bytes()), ("b", b"junk"),
                                                     ("c", image_bytes())]))
    assert isinstance(results[0], inference.Prediction)
    assert results[1] == ("b", "not an image (the content is not a format Pillow can read)")
    assert isinstance(results[2], inference.Prediction)


def test_a_directory_without_a_detection_signature_is_refused(tmp_path):
    with pytest.raises(inference.ModelInvalid, match="holds no SavedModel"):
        inference.load_model(tmp_path)
    savedmodels.build_wrong_input(tmp_path / "classifier")
    with pytest.raises(inference.ModelInvalid, match="takes images, not 'input_tensor'"):
        inference.load_model(tmp_path / "classifier")


def test_boxes_are_drawn_in_the_class_colour(detector):
    image = Image.new("RGB", (200, 100), (255, 255, 255))
    prediction = detector.predict_image(image, "white")
    drawn = inference.draw(image, prediction.filtered(0.5))
    dog_color = Image.new("RGB", (1, 1), projects.class_color(2)).getpixel((0, 0))
    assert drawn.getpixel((179, 60)) == dog_color        # right edge of the dog box (x = 180)
    assert drawn.getpixel((120, 60)) == (255, 255, 255)  # inside stays untouched
    assert image.getpixel((180, 60)) == (255, 255, 255)  # the original is not drawn on
    assert inference.png_bytes(drawn)[:8] == b"\x89PNG\r\n\x1a\n"


def test_uncertainty_is_largest_for_borderline_scores(detector):
    prediction = detector.predict(image_bytes(), "x")
    assert inference.uncertainty(prediction.detections) == pytest.approx(0.8)  # score 0.6 → 0.8
    assert inference.uncertainty(prediction.filtered(0.9)) == pytest.approx(0.2)
    assert inference.uncertainty([]) == 1.0


def test_the_cache_key_changes_when_the_export_is_rewritten(tmp_path):
    import os
    folder = savedmodels.build_detector(tmp_path / "export")
    before = inference.model_stamp(folder)
    assert inference.model_stamp(folder / "saved_model") == before
    variables = next((folder / "saved_model" / "variables").iterdir())
    os.utime(variables, (before + 10, before + 10))
    assert inference.model_stamp(folder) == before + 10
    os.utime(folder / "label_map.pbtxt", (before + 20, before + 20))
    assert inference.model_stamp(folder) == before + 20
