"""Real SavedModels with the TF OD API detection signature, built for tests.

`serving_default(input_tensor: uint8 [1, H, W, 3])` returns fixed detections (padded past
`num_detections`, as TF OD API exports pad to max_detections), so every number a test checks
is known in advance. TensorFlow is imported inside the function.
"""
from __future__ import annotations

from pathlib import Path

# Three real detections then two padding rows that `num_detections` = 3 excludes.
BOXES = [[0.10, 0.20, 0.50, 0.60],   # ymin, xmin, ymax, xmax
         [0.30, 0.30, 0.90, 0.90],
         [-0.05, 0.00, 1.20, 1.00],  # outside [0, 1]: must be clipped
         [0.00, 0.00, 0.00, 0.00],
         [0.00, 0.00, 0.00, 0.00]]
CLASSES = [1.0, 2.0, 1.0, 0.0, 0.0]
SCORES = [0.30, 0.90, 0.60, 0.99, 0.99]
NUM = 3
LABEL_MAP = "item {\n  id: 1\n  name: 'cat'\n}\nitem {\n  id: 2\n  name: 'dog'\n}\n"


def build_detector(directory: str | Path, input_size: tuple[int, int] | None = None,
                   label_map: str | None = LABEL_MAP, layout: str = "export") -> Path:
    """Write a detector to `directory` and return the directory a user would name.

    `layout="export"`: `directory/saved_model/` plus `directory/label_map.pbtxt` (Boxwise and
    exporter_main_v2 layout); `layout="bare"`: the SavedModel files directly in `directory`.
    `input_size=(H, W)` pins the input shape (the model refuses any other size).
    """
    import tensorflow as tf

    height, width = input_size or (None, None)
    spec = tf.TensorSpec([1, height, width, 3], tf.uint8, name="input_tensor")

    class Detector(tf.Module):
        @tf.function(input_signature=[spec])
        def detect(self, input_tensor):
            # Touch the input so the graph depends on it (and a wrong shape fails).
            brightness = tf.reduce_mean(tf.cast(input_tensor, tf.float32)) * 0.0
            return {
                "detection_boxes": tf.constant([BOXES], tf.float32) + brightness,
                "detection_classes": tf.constant([CLASSES], tf.float32),
                "detection_scores": tf.constant([SCORES], tf.float32),
                "num_detections": tf.constant([float(NUM)], tf.float32),
            }

    directory = Path(directory)
    target = directory / "saved_model" if layout == "export" else directory
    module = Detector()
    tf.saved_model.save(module, str(target), signatures={"serving_default": module.detect})
    if label_map is not None:
        (directory / "label_map.pbtxt").write_text(label_map)
    return directory


def build_wrong_input(directory: str | Path) -> Path:
    """A SavedModel whose serving_default takes `images` float32: not a detection export."""
    import tensorflow as tf

    class Classifier(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32, name="images")])
        def classify(self, images):
            return {"logits": tf.reduce_mean(images, axis=[1, 2])}

    module = Classifier()
    tf.saved_model.save(module, str(directory), signatures={"serving_default": module.classify})
    return Path(directory)


def build_brightness_detector(directory: str | Path) -> Path:
    """A detector whose one detection (class 1, the whole image) scores the image's mean
    brightness / 255: images of different brightness get different uncertainties."""
    import tensorflow as tf

    class Brightness(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8, name="input_tensor")])
        def detect(self, input_tensor):
            score = tf.reduce_mean(tf.cast(input_tensor, tf.float32)) / 255.0
            return {"detection_boxes": tf.constant([[[0.0, 0.0, 1.0, 1.0]]], tf.float32),
                    "detection_classes": tf.constant([[1.0]], tf.float32),
                    "detection_scores": tf.reshape(score, [1, 1]),
                    "num_detections": tf.constant([1.0], tf.float32)}

    directory = Path(directory)
    module = Brightness()
    tf.saved_model.save(module, str(directory / "saved_model"), signatures={"serving_default": module.detect})
    (directory / "label_map.pbtxt").write_text(LABEL_MAP)
    return directory
