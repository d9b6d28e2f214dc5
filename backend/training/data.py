"""tf.data input from sharded TF OD API TFRecords (TensorFlow only).

Reads the keys the TF OD API decoder reads (`image/encoded`, `image/object/bbox/xmin|ymin|xmax|ymax`
normalised, `image/object/class/label` label-map ids ≥ 1, ...). Boxes become `yxyx` normalised
here, the model's convention, and stay so through augmentation and resizing.

Augmentation follows the TF OD API's `data_augmentation_options` semantics, which Keras' box-aware
layers do not share (random_crop_image samples a window covering `min_object_covered` of some box
and drops boxes below `overlap_thresh`; Keras' RandomCrop crops blind), so it is written with
`tf.image` here, inside the tf.data graph.

Element of a training batch: `{"images": [B, H, W, 3] float32 in [0, 255], "boxes": [B, M, 4],
"classes": [B, M] int32 (0 = padding), "num_boxes": [B]}` with `M = max_number_of_boxes`.
Evaluation elements add `"source_id"`, `"original_size"` `[B, 2]` and `"valid"` `[B, 2]`
(the fraction of the canvas the resized image covers; < 1 only with keep_aspect_ratio padding).
"""
from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from backend.errors import Invalid, NotFound
from backend.formats import tfrecord
from backend.training.config import Augmentation, InputReader, Resizer

FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/format": tf.io.FixedLenFeature([], tf.string, default_value="jpeg"),
    "image/height": tf.io.FixedLenFeature([], tf.int64, default_value=0),
    "image/width": tf.io.FixedLenFeature([], tf.int64, default_value=0),
    "image/source_id": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "image/filename": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
    "image/object/class/label": tf.io.VarLenFeature(tf.int64),
}


def input_files(reader: InputReader) -> list[str]:
    """Every file matched by the reader's `input_path` globs, sorted; `NotFound` when none match."""
    files: list[str] = []
    for pattern in reader.input_paths:
        matched = sorted(tf.io.gfile.glob(pattern))
        if not matched:
            raise NotFound(f"input_path {pattern!r} matches no files")
        for name in matched:
            # A text file or an image here would only fail mid-training as "corrupted record".
            why = None if "://" in name else tfrecord.not_a_record_file(Path(name))
            if why:
                raise Invalid(f"input_path {name!r} is not a TFRecord file ({why})")
        files.extend(matched)
    if not files:
        raise NotFound("the input reader has no input_path")
    return files


def parse_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """One serialized `tf.train.Example` → image uint8 `[h, w, 3]`, boxes `[N, 4]` yxyx, classes `[N]`."""
    parsed = tf.io.parse_single_example(serialized, FEATURES)
    image = tf.io.decode_image(parsed["image/encoded"], channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    dense = {k: tf.sparse.to_dense(parsed[f"image/object/bbox/{k}"]) for k in ("ymin", "xmin", "ymax", "xmax")}
    boxes = tf.stack([dense["ymin"], dense["xmin"], dense["ymax"], dense["xmax"]], axis=-1)
    boxes = tf.clip_by_value(tf.reshape(boxes, [-1, 4]), 0.0, 1.0)
    classes = tf.cast(tf.sparse.to_dense(parsed["image/object/class/label"]), tf.int32)
    source_id = parsed["image/source_id"]
    source_id = tf.where(tf.strings.length(source_id) > 0, source_id, parsed["image/filename"])
    return {"image": image, "boxes": boxes, "classes": classes, "source_id": source_id}


def resize(image: tf.Tensor, resizer: Resizer) -> tuple[tf.Tensor, tf.Tensor]:
    """Image `[h, w, 3]` → `(canvas [H, W, 3] float32 0–255, valid [2])`.

    fixed_shape stretches to H × W (normalised boxes are unchanged). keep_aspect_ratio scales so
    the short side is `min_dimension` unless the long side would pass `max_dimension`, then pads
    bottom/right to the square canvas; `valid` is the covered fraction `(h', w') / (H, W)`, by
    which normalised boxes are multiplied.
    """
    image = tf.cast(image, tf.float32)
    if resizer.kind == "fixed_shape":
        canvas = tf.image.resize(image, [resizer.height, resizer.width])
        return canvas, tf.ones([2], tf.float32)
    size = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.minimum(resizer.min_dimension / tf.reduce_min(size), resizer.max_dimension / tf.reduce_max(size))
    new_size = tf.minimum(tf.cast(tf.round(size * scale), tf.int32), resizer.max_dimension)
    resized = tf.image.resize(image, new_size)
    canvas = tf.image.pad_to_bounding_box(resized, 0, 0, resizer.height, resizer.width)
    valid = tf.cast(new_size, tf.float32) / tf.constant([resizer.height, resizer.width], tf.float32)
    return canvas, valid


def scale_boxes(boxes: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
    """Normalised yxyx boxes of the image → normalised to the padded canvas."""
    return boxes * tf.concat([valid, valid], axis=0)


# --- augmentation ----------------------------------------------------------------------------

def _flip(image, boxes, classes, probability=0.5):
    flip = tf.random.uniform([]) < probability
    image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
    flipped = tf.stack([boxes[:, 0], 1.0 - boxes[:, 3], boxes[:, 2], 1.0 - boxes[:, 1]], axis=-1)
    return image, tf.where(flip, flipped, boxes), classes


def _crop(image, boxes, classes, min_object_covered=1.0, min_aspect_ratio=0.75, max_aspect_ratio=1.33,
          min_area=0.1, max_area=1.0, overlap_thresh=0.3, random_coef=0.0, **_):
    """TF OD API `random_crop_image`: a window that covers `min_object_covered` of some box; boxes are
    clipped to it and dropped when less than `overlap_thresh` of them stays inside."""
    begin, size, window = tf.image.sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.expand_dims(boxes, 0), min_object_covered=min_object_covered,
        aspect_ratio_range=(min_aspect_ratio, max_aspect_ratio), area_range=(min_area, max_area),
        max_attempts=100, use_image_if_no_bounding_boxes=True)
    window = tf.reshape(window, [4])
    cropped = tf.slice(image, begin, size)
    win_h, win_w = window[2] - window[0], window[3] - window[1]
    moved = (boxes - tf.stack([window[0], window[1], window[0], window[1]])) / tf.stack([win_h, win_w, win_h, win_w])
    clipped = tf.clip_by_value(moved, 0.0, 1.0)
    area = (moved[:, 2] - moved[:, 0]) * (moved[:, 3] - moved[:, 1])
    kept_area = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    keep = tf.logical_and(kept_area > 0.0, kept_area / tf.maximum(area, 1e-12) > overlap_thresh)
    skip = tf.random.uniform([]) < random_coef
    return (tf.cond(skip, lambda: image, lambda: cropped),
            tf.cond(skip, lambda: boxes, lambda: tf.boolean_mask(clipped, keep)),
            tf.cond(skip, lambda: classes, lambda: tf.boolean_mask(classes, keep)))


def _brightness(image, boxes, classes, max_delta=0.2):
    image = tf.clip_by_value(tf.image.random_brightness(image / 255.0, max_delta), 0.0, 1.0) * 255.0
    return image, boxes, classes


def _contrast(image, boxes, classes, min_delta=0.8, max_delta=1.25):
    image = tf.clip_by_value(tf.image.random_contrast(image / 255.0, min_delta, max_delta), 0.0, 1.0) * 255.0
    return image, boxes, classes


AUGMENTATIONS = {
    "random_horizontal_flip": _flip,
    "random_crop_image": _crop,
    "random_adjust_brightness": _brightness,
    "random_adjust_contrast": _contrast,
}


def augment(image, boxes, classes, augmentations: tuple[Augmentation, ...]):
    """Apply `data_augmentation_options` in order to a float image `[h, w, 3]` (0–255) and its boxes."""
    for option in augmentations:
        image, boxes, classes = AUGMENTATIONS[option.kind](image, boxes, classes, **option.params)
    return image, boxes, classes


def pad_boxes(boxes, classes, max_boxes: int):
    """Truncate or zero-pad to `max_boxes`: `([M, 4], [M], num_boxes)`."""
    count = tf.minimum(tf.shape(boxes)[0], max_boxes)
    boxes, classes = boxes[:count], classes[:count]
    boxes = tf.pad(boxes, [[0, max_boxes - count], [0, 0]])
    classes = tf.pad(classes, [[0, max_boxes - count]])
    boxes.set_shape([max_boxes, 4])
    classes.set_shape([max_boxes])
    return boxes, classes, count


# --- datasets --------------------------------------------------------------------------------

def _records(files: list[str], shuffle: bool, input_context: tf.distribute.InputContext | None = None):
    """Serialized examples of `files`. With several input pipelines (one per worker of a
    multi-worker run) each reads its share: whole files when there are at least as many files as
    pipelines, else every file in a fixed order, keeping every N-th record (a worker given no
    file would have no data at all)."""
    pipelines = input_context.num_input_pipelines if input_context is not None else 1
    by_record = 1 < pipelines > len(files)
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if pipelines > 1 and not by_record:
        dataset = dataset.shard(pipelines, input_context.input_pipeline_id)
    if shuffle and not by_record:  # record sharding needs the same order on every worker
        dataset = dataset.shuffle(len(files), reshuffle_each_iteration=True)
    dataset = dataset.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 16),
                                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle or by_record)
    if by_record:
        dataset = dataset.shard(pipelines, input_context.input_pipeline_id)
    return dataset


def train_dataset(reader: InputReader, resizer: Resizer, augmentations: tuple[Augmentation, ...],
                  batch_size: int, max_boxes: int,
                  input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """Shuffled, repeated (or `num_epochs`), augmented, resized, padded batches for training."""
    files = input_files(reader)
    dataset = _records(files, reader.shuffle, input_context)
    if reader.sample_1_of_n > 1:
        dataset = dataset.shard(reader.sample_1_of_n, 0)
    if reader.shuffle:
        dataset = dataset.shuffle(2048)
    dataset = dataset.repeat(reader.num_epochs or None)

    def prepare(serialized):
        example = parse_example(serialized)
        image, boxes, classes = augment(tf.cast(example["image"], tf.float32), example["boxes"],
                                        example["classes"], augmentations)
        canvas, valid = resize(image, resizer)
        boxes, classes, count = pad_boxes(scale_boxes(boxes, valid), classes, max_boxes)
        return {"images": canvas, "boxes": boxes, "classes": classes, "num_boxes": count}

    dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def eval_dataset(reader: InputReader, resizer: Resizer, batch_size: int, max_boxes: int,
                 sample_1_of_n: int = 1) -> tf.data.Dataset:
    """One deterministic pass over the eval records (every `sample_1_of_n`-th example)."""
    files = input_files(reader)
    dataset = _records(files, shuffle=False)
    step = max(sample_1_of_n, reader.sample_1_of_n, 1)
    if step > 1:
        dataset = dataset.shard(step, 0)

    def prepare(serialized):
        example = parse_example(serialized)
        canvas, valid = resize(example["image"], resizer)
        boxes, classes, count = pad_boxes(example["boxes"], example["classes"], max_boxes)
        return {"images": canvas, "boxes": boxes, "classes": classes, "num_boxes": count,
                "source_id": example["source_id"], "original_size": tf.shape(example["image"])[:2],
                "valid": valid}

    return dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(tf.data.AUTOTUNE)
