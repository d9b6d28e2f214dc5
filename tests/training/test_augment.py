"""Augmentation as the TF OD API's preprocessor does it: hand-computed boxes and pixels with the
random draws fixed, and seeded draws checked against the options' constraints."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from backend.training import data
from backend.training.training_config import Augmentation

# Window rows 4..12 of 16 and columns 8..24 of 32: normalised y 0.25..0.75, x 0.25..0.75.
IMAGE = tf.reshape(tf.range(16 * 32 * 3, dtype=tf.float32), [16, 32, 3])
BEGIN, SIZE = tf.constant([4, 8, 0]), tf.constant([8, 16, -1])
BOXES = tf.constant([
    [0.375, 0.375, 0.5, 0.625],   # inside: → (0.25, 0.25, 0.5, 0.75)
    [0.0, 0.0, 0.25, 0.5],        # touches the window's top edge only: outside
    [0.625, 0.5, 0.875, 1.0],     # exactly a quarter of it inside: → (0.75, 0.5, 1.25, 1.5)
    [0.5, 0.5, 0.5, 0.5],         # zero area: dropped
])
CLASSES = tf.constant([1, 2, 3, 4])


def test_flip_mirrors_the_image_and_the_boxes():
    image = tf.reshape(tf.range(6, dtype=tf.float32), [1, 2, 3])
    boxes = tf.constant([[0.1, 0.2, 0.5, 0.4]])
    flipped, moved = data.flip_left_right(image, boxes, tf.constant(True))
    np.testing.assert_array_equal(flipped.numpy(), [[[3, 4, 5], [0, 1, 2]]])
    np.testing.assert_allclose(moved.numpy(), [[0.1, 0.6, 0.5, 0.8]], atol=1e-7)
    kept, same = data.flip_left_right(image, boxes, tf.constant(False))
    np.testing.assert_array_equal(kept.numpy(), image.numpy())
    np.testing.assert_array_equal(same.numpy(), boxes.numpy())


def test_crop_keeps_boxes_with_at_least_overlap_thresh_inside_and_clips_them():
    image, boxes, classes = data.crop_to_window(IMAGE, BOXES, CLASSES, BEGIN, SIZE, overlap_thresh=0.25)
    np.testing.assert_array_equal(image.numpy(), IMAGE.numpy()[4:12, 8:24])
    np.testing.assert_allclose(boxes.numpy(), [[0.25, 0.25, 0.5, 0.75], [0.75, 0.5, 1.0, 1.0]], atol=1e-7)
    assert classes.numpy().tolist() == [1, 3]


def test_crop_drops_boxes_below_overlap_thresh():
    _, boxes, classes = data.crop_to_window(IMAGE, BOXES, CLASSES, BEGIN, SIZE, overlap_thresh=0.3)
    np.testing.assert_allclose(boxes.numpy(), [[0.25, 0.25, 0.5, 0.75]], atol=1e-7)
    assert classes.numpy().tolist() == [1]


def test_crop_without_clip_boxes_leaves_boxes_past_the_window():
    _, boxes, classes = data.crop_to_window(IMAGE, BOXES, CLASSES, BEGIN, SIZE, overlap_thresh=0.0,
                                            clip_boxes=False)
    np.testing.assert_allclose(boxes.numpy(), [[0.25, 0.25, 0.5, 0.75], [0.75, 0.5, 1.25, 1.5]], atol=1e-7)
    assert classes.numpy().tolist() == [1, 3]


def test_sampled_windows_respect_the_area_aspect_and_coverage():
    tf.random.set_seed(7)
    box = tf.constant([[0.4, 0.4, 0.6, 0.6]])
    image = tf.zeros([100, 100, 3])
    for _ in range(20):
        cropped, boxes, classes = data._crop(image, box, tf.constant([1]), min_object_covered=1.0,
                                             min_aspect_ratio=0.5, max_aspect_ratio=2.0, min_area=0.3,
                                             max_area=0.6, overlap_thresh=0.3)
        h, w = cropped.shape[:2]
        assert 0.3 * 1e4 - 200 <= h * w <= 0.6 * 1e4 + 200 and 0.5 - 0.05 <= w / h <= 2.0 + 0.05
        # The whole box lies inside the window, so it arrives unclipped inside [0, 1].
        assert classes.numpy().tolist() == [1]
        b = boxes.numpy()[0]
        assert 0.0 <= b[0] < b[2] <= 1.0 and 0.0 <= b[1] < b[3] <= 1.0
        np.testing.assert_allclose([(b[2] - b[0]) * h, (b[3] - b[1]) * w], [20, 20], atol=1e-3)


def test_random_coef_one_never_crops_and_full_area_keeps_the_image():
    tf.random.set_seed(3)
    box = tf.constant([[0.1, 0.2, 0.5, 0.4]])
    options = {"min_area": 0.1, "max_area": 0.2, "min_object_covered": 0.0}
    for _ in range(5):
        image, boxes, _ = data._crop(IMAGE, box, tf.constant([1]), random_coef=1.0, **options)
        assert image.shape == IMAGE.shape
        np.testing.assert_array_equal(boxes.numpy(), box.numpy())
    whole = Augmentation("random_crop_image", {"min_area": 1.0, "max_area": 1.0, "min_aspect_ratio": 2.0,
                                               "max_aspect_ratio": 2.0, "min_object_covered": 0.0})
    image, boxes, _ = data.augment(IMAGE, box, tf.constant([1]), (whole,))
    assert image.shape == IMAGE.shape
    np.testing.assert_allclose(boxes.numpy(), box.numpy(), atol=1e-7)


def test_brightness_adds_255_delta_and_clips():
    image = tf.constant([[[0.0, 100.0, 250.0]]])
    np.testing.assert_allclose(data.adjust_brightness(image, 0.1).numpy(), [[[25.5, 125.5, 255.0]]], rtol=1e-6)
    np.testing.assert_allclose(data.adjust_brightness(image, -0.2).numpy(), [[[0.0, 49.0, 199.0]]], rtol=1e-6)


def test_contrast_scales_around_the_channel_mean_and_clips():
    image = tf.constant([[[0.0, 0.0, 0.0], [200.0, 100.0, 255.0]]])  # channel means 100, 50, 127.5
    np.testing.assert_allclose(data.adjust_contrast(image, 2.0).numpy(),
                               [[[0.0, 0.0, 0.0], [255.0, 150.0, 255.0]]], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(data.adjust_contrast(image, 0.5).numpy(),
                               [[[50.0, 25.0, 63.75], [150.0, 75.0, 191.25]]], rtol=1e-5)


@pytest.mark.parametrize("kind,params,low,high", [
    ("random_adjust_brightness", {"max_delta": 0.1}, -25.5, 25.5),
    ("random_adjust_contrast", {"min_delta": 0.5, "max_delta": 0.75}, 0.5, 0.75),
])
def test_random_adjustments_draw_within_their_range(kind, params, low, high):
    tf.random.set_seed(11)
    image = tf.constant([[[100.0, 100.0, 100.0], [120.0, 120.0, 120.0]]])  # mean 110
    seen = []
    for _ in range(30):
        out, _, _ = data.augment(image, tf.zeros([0, 4]), tf.zeros([0], tf.int32), (Augmentation(kind, params),))
        value = out.numpy()[0, 0, 0]
        seen.append(value - 100.0 if kind == "random_adjust_brightness" else (value - 110.0) / -10.0)
    assert low <= min(seen) and max(seen) <= high and max(seen) - min(seen) > 0.3 * (high - low)


def test_the_input_pipeline_augments_the_decoded_image_then_resizes(tmp_path):
    """As the OD API's inputs.py: the options run in order on the decoded image, before the
    image resizer. Pixels encode their position (red 2·x, green 4·y), so the canvas shows which
    window of the flipped image it is."""
    import io

    from PIL import Image

    from backend.training.training_config import InputReader, Resizer
    from tests.training.shapes import example

    pixels = np.zeros((50, 100, 3), np.uint8)
    pixels[..., 0] = 2 * np.arange(100)[None, :]
    pixels[..., 1] = 4 * np.arange(50)[:, None]
    encoded = io.BytesIO()
    Image.fromarray(pixels).save(encoded, format="PNG")
    record = example(encoded.getvalue(), [], 100, "img")
    feature = record.features.feature
    feature["image/height"].int64_list.value[:] = [50]
    for key, value in (("xmin", 0.1), ("xmax", 0.6), ("ymin", 0.1), ("ymax", 0.9)):
        feature[f"image/object/bbox/{key}"].float_list.value[:] = [value]
    feature["image/object/class/label"].int64_list.value[:] = [1]
    path = tmp_path / "one.record"
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(record.SerializeToString())
    options = (Augmentation("random_horizontal_flip", {"probability": 1.0}),
               # overlap_thresh 0: the box is kept wherever the random window falls (it always
               # overlaps it), so the check below holds for every window.
               Augmentation("random_crop_image", {"min_object_covered": 0.0, "min_area": 0.25, "max_area": 0.25,
                                                  "min_aspect_ratio": 2.0, "max_aspect_ratio": 2.0,
                                                  "overlap_thresh": 0.0}))
    reader = InputReader(input_paths=(str(path),), label_map_path=None, shuffle=False, num_epochs=1)
    element = next(iter(data.train_dataset(reader, Resizer("fixed_shape", 25, 50), options, 1, 5)))
    canvas = element["images"].numpy()[0]
    assert canvas.shape == (25, 50, 3)  # the 25 × 50 window at scale 1: cropped before resizing
    column, row = 99 - int(canvas[0, 0, 0]) // 2, int(canvas[0, 0, 1]) // 4
    np.testing.assert_array_equal(canvas[..., 0], 2 * (99 - column - np.arange(50))[None, :].repeat(25, 0))
    np.testing.assert_array_equal(canvas[..., 1], 4 * (row + np.arange(25))[:, None].repeat(50, 1))
    # The box, flipped to x 0.4..0.9, in the window's frame and clipped.
    expected = np.clip([(0.1 * 50 - row) / 25, (0.4 * 100 - column) / 50,
                        (0.9 * 50 - row) / 25, (0.9 * 100 - column) / 50], 0.0, 1.0)
    np.testing.assert_allclose(element["boxes"].numpy()[0, 0], expected, atol=1e-6)
    assert element["classes"].numpy()[0].tolist() == [1, 0, 0, 0, 0]


def test_the_trainer_reads_every_augmentation_field_from_the_schema_with_its_defaults():
    """Settings come from the config parsed into the schema: an option written without fields
    gets all its supported fields at the schema's (the OD API's) defaults, and the augmentation
    functions' own keyword defaults, used only by direct calls, are the same numbers."""
    import inspect

    from backend import pipeline_schema
    from backend.config_document import ConfigDocument
    from backend.training.templates import template_text
    from backend.training.training_config import training_config

    text = template_text("quick")
    start = text.index("  data_augmentation_options")
    end = text.index("\n  }\n", text.rindex("  data_augmentation_options")) + 5
    options = "".join(f"  data_augmentation_options {{\n    {kind} {{\n    }}\n  }}\n" for kind in data.AUGMENTATIONS)
    config = training_config(ConfigDocument(text[:start] + options + text[end:]))
    assert [a.kind for a in config.augmentations] == list(data.AUGMENTATIONS)
    for augmentation in config.augmentations:
        schema = pipeline_schema.defaults(f"train_config.data_augmentation_options.{augmentation.kind}")
        signature = inspect.signature(data.AUGMENTATIONS[augmentation.kind]).parameters
        keywords = {name: p.default for name, p in signature.items() if p.default is not inspect.Parameter.empty}
        assert augmentation.params == {name: schema[name] for name in keywords}, augmentation.kind
        assert keywords == augmentation.params, augmentation.kind
    crop = next(a for a in config.augmentations if a.kind == "random_crop_image")
    assert crop.params == {"min_object_covered": 1.0, "min_aspect_ratio": 0.75, "max_aspect_ratio": 1.33,
                           "min_area": 0.1, "max_area": 1.0, "overlap_thresh": 0.3, "clip_boxes": True,
                           "random_coef": 0.0}
