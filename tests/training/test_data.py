"""The tf.data input: TF OD API records in, model-convention tensors out."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from backend.training import data
from backend.training.training_config import Augmentation, InputReader, Resizer
from tests.training.shapes import example


def _record(path, width=100, height=50, objects=((1, 10, 5, 60, 45), (2, 70, 0, 100, 25))):
    import tensorflow as tf
    image = Image.new("RGB", (width, height), (200, 10, 10))
    out = io.BytesIO()
    image.save(out, format="PNG")
    # `example` normalises by one size; write explicit normalised boxes for a non-square image.
    ex = example(out.getvalue(), [], width, "img-1")
    feature = ex.features.feature
    feature["image/height"].int64_list.value[:] = [height]
    feature["image/object/bbox/xmin"].float_list.value[:] = [o[1] / width for o in objects]
    feature["image/object/bbox/xmax"].float_list.value[:] = [o[3] / width for o in objects]
    feature["image/object/bbox/ymin"].float_list.value[:] = [o[2] / height for o in objects]
    feature["image/object/bbox/ymax"].float_list.value[:] = [o[4] / height for o in objects]
    feature["image/object/class/label"].int64_list.value[:] = [o[0] for o in objects]
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(ex.SerializeToString())


def test_records_are_read_into_yxyx_boxes_and_padded(tmp_path):
    _record(tmp_path / "train.record-00000-of-00001")
    reader = InputReader((str(tmp_path / "train.record-?????-of-00001"),), None, shuffle=False)
    batch = next(iter(data.eval_dataset(reader, Resizer("fixed_shape", 64, 64), batch_size=1, max_boxes=4)))
    assert batch["images"].shape == (1, 64, 64, 3)
    np.testing.assert_allclose(batch["boxes"][0].numpy(), [[0.1, 0.1, 0.9, 0.6], [0.0, 0.7, 0.5, 1.0],
                                                           [0, 0, 0, 0], [0, 0, 0, 0]], atol=1e-6)
    assert batch["classes"][0].numpy().tolist() == [1, 2, 0, 0]
    assert int(batch["num_boxes"][0]) == 2
    assert batch["source_id"][0].numpy() == b"img-1"
    assert batch["original_size"][0].numpy().tolist() == [50, 100]


def test_keep_aspect_ratio_pads_bottom_right_and_reports_the_covered_fraction():
    import tensorflow as tf
    image = tf.fill([50, 100, 3], tf.constant(255, tf.uint8))
    canvas, valid = data.resize(image, Resizer("keep_aspect_ratio", 64, 64, min_dimension=64, max_dimension=64))
    assert canvas.shape == (64, 64, 3)
    np.testing.assert_allclose(valid.numpy(), [0.5, 1.0])
    assert float(tf.reduce_min(canvas[:32])) == 255.0 and float(tf.reduce_max(canvas[32:])) == 0.0
    np.testing.assert_allclose(data.scale_boxes(tf.constant([[0.2, 0.1, 1.0, 0.5]]), valid).numpy(),
                               [[0.1, 0.1, 0.5, 0.5]])


def test_flip_mirrors_boxes_and_full_crop_keeps_them():
    import tensorflow as tf
    image = tf.zeros([10, 20, 3])
    boxes = tf.constant([[0.1, 0.2, 0.5, 0.4]])
    classes = tf.constant([1])
    flipped = data.augment(image, boxes, classes, (Augmentation("random_horizontal_flip", {"probability": 1.0}),))
    np.testing.assert_allclose(flipped[1].numpy(), [[0.1, 0.6, 0.5, 0.8]], atol=1e-6)
    crop = Augmentation("random_crop_image", {"min_area": 1.0, "max_area": 1.0, "min_aspect_ratio": 2.0,
                                              "max_aspect_ratio": 2.0, "min_object_covered": 0.0})
    cropped = data.augment(image, boxes, classes, (crop,))
    assert cropped[0].shape == (10, 20, 3)
    np.testing.assert_allclose(cropped[1].numpy(), boxes.numpy(), atol=1e-6)


def _record_file(path, values):
    import tensorflow as tf
    with tf.io.TFRecordWriter(str(path)) as writer:
        for value in values:
            writer.write(value)
    return str(path)


def _pipelines(files, count, shuffle):
    import tensorflow as tf
    return [sorted(r.numpy() for r in data._records(files, shuffle, tf.distribute.InputContext(
        num_input_pipelines=count, input_pipeline_id=i))) for i in range(count)]


def test_each_worker_reads_its_share_whole_files_or_every_nth_record(tmp_path):
    four = [_record_file(tmp_path / f"f{n}.record", [f"{n}-{k}".encode() for k in range(3)]) for n in range(4)]
    two_workers = _pipelines(four, 2, shuffle=True)
    assert two_workers == [sorted(f"{n}-{k}".encode() for n in (0, 2) for k in range(3)),
                           sorted(f"{n}-{k}".encode() for n in (1, 3) for k in range(3))]
    # Fewer files than workers: no worker is left without data, none sees a record twice.
    one = [_record_file(tmp_path / "only.record", [str(k).encode() for k in range(10)])]
    three_workers = _pipelines(one, 3, shuffle=True)
    assert three_workers == [[b"0", b"3", b"6", b"9"], [b"1", b"4", b"7"], [b"2", b"5", b"8"]]


def test_an_input_file_that_is_not_a_tfrecord_stops_training_before_it_starts(tmp_path):
    import pytest

    from backend.errors import Invalid

    (tmp_path / "train.record").write_text("root:x:0:0:root:/root:/bin/bash\n" * 10)
    reader = InputReader((str(tmp_path / "*.record"),), None)
    with pytest.raises(Invalid) as refused:
        data.input_files(reader)
    assert str(refused.value) == (f"input_path {str(tmp_path / 'train.record')!r} is not a TFRecord "
                                  "file (its first record's length checksum is wrong)")
