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
from backend.formats import tfrecord_framing
from backend.training.training_config import Augmentation, InputReader, Resizer

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
            why = None if "://" in name else tfrecord_framing.not_a_record_file(Path(name))
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


def resize_bilinear(image: tf.Tensor, size) -> tf.Tensor:
    """Bilinear resize as the TF OD API's resizers do it (`tf.compat.v1.image.resize_images`:
    no align_corners, no half-pixel centres — not TF 2's `tf.image.resize`)."""
    return tf.raw_ops.ResizeBilinear(images=image[tf.newaxis], size=tf.cast(size, tf.int32), align_corners=False,
                                     half_pixel_centers=False)[0]


def resize(image: tf.Tensor, resizer: Resizer) -> tuple[tf.Tensor, tf.Tensor]:
    """Image `[h, w, 3]` → `(canvas [H, W, 3] float32 0–255, valid [2])`.

    fixed_shape stretches to H × W (normalised boxes are unchanged). keep_aspect_ratio scales so
    the short side is `min_dimension` unless the long side would pass `max_dimension`, then pads
    bottom/right to the square canvas; `valid` is the covered fraction `(h', w') / (H, W)`, by
    which normalised boxes are multiplied.
    """
    image = tf.cast(image, tf.float32)
    if resizer.kind == "fixed_shape":
        canvas = resize_bilinear(image, [resizer.height, resizer.width])
        return canvas, tf.ones([2], tf.float32)
    size = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.minimum(resizer.min_dimension / tf.reduce_min(size), resizer.max_dimension / tf.reduce_max(size))
    new_size = tf.minimum(tf.cast(tf.round(size * scale), tf.int32), resizer.max_dimension)
    resized = resize_bilinear(image, new_size)
    canvas = tf.image.pad_to_bounding_box(resized, 0, 0, resizer.height, resizer.width)
    valid = tf.cast(new_size, tf.float32) / tf.constant([resizer.height, resizer.width], tf.float32)
    return canvas, valid


def scale_boxes(boxes: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
    """Normalised yxyx boxes of the image → normalised to the padded canvas."""
    return boxes * tf.concat([valid, valid], axis=0)


# --- augmentation ----------------------------------------------------------------------------
# Each option draws its random values with tf.random.uniform (one draw per image, as the TF OD API's
# preprocessor does) and hands them to a pure function, which the tests call with chosen values.
# Images are float32 in [0, 255], boxes normalised yxyx, as in the OD API's `augment_input_data`.

def flip_left_right(image, boxes, flip):
    """`random_horizontal_flip` given its decision: mirror the image and `x → 1 − x` for the boxes."""
    image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
    flipped = tf.stack([boxes[:, 0], 1.0 - boxes[:, 3], boxes[:, 2], 1.0 - boxes[:, 1]], axis=-1)
    return image, tf.where(flip, flipped, boxes)


def _flip(image, boxes, classes, probability=0.5):
    """TF OD API `random_horizontal_flip`: flips when a uniform draw in [0, 1) is below `probability`."""
    image, boxes = flip_left_right(image, boxes, tf.random.uniform([]) < probability)
    return image, boxes, classes


def crop_to_window(image, boxes, classes, begin, size, overlap_thresh=0.3, clip_boxes=True):
    """`random_crop_image` given its window: `begin`, `size` `[3]` int (pixels, as
    `tf.image.sample_distorted_bounding_box` returns them).

    As the TF OD API's `_strict_random_crop_image`: boxes entirely outside the window go (a box
    only touching its edge counts as outside), then boxes with less than `overlap_thresh` of their
    area inside the window (intersection / box area ≥ overlap_thresh keeps; a zero-area box goes),
    the rest move to the window's frame and, with `clip_boxes`, are clipped to [0, 1].
    """
    begin = tf.cast(begin, tf.int32)
    size = tf.cast(size, tf.int32)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    start = tf.cast(begin[:2], tf.float32) / shape
    end = tf.cast(begin[:2] + size[:2], tf.float32) / shape
    window = tf.concat([start, end], axis=0)  # normalised yxyx, as the OD API's im_box
    cropped = tf.slice(image, begin, size)
    outside = tf.reduce_any(tf.stack([boxes[:, 0] >= window[2], boxes[:, 1] >= window[3],
                                      boxes[:, 2] <= window[0], boxes[:, 3] <= window[1]], axis=1), axis=1)
    heights = tf.maximum(0.0, tf.minimum(boxes[:, 2], window[2]) - tf.maximum(boxes[:, 0], window[0]))
    widths = tf.maximum(0.0, tf.minimum(boxes[:, 3], window[3]) - tf.maximum(boxes[:, 1], window[1]))
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    inside_fraction = heights * widths / area  # NaN for a zero-area box: dropped below
    keep = tf.logical_and(tf.logical_not(outside), inside_fraction >= overlap_thresh)
    kept = tf.boolean_mask(boxes, keep)
    win_h, win_w = window[2] - window[0], window[3] - window[1]
    moved = (kept - tf.stack([window[0], window[1], window[0], window[1]])) / tf.stack([win_h, win_w, win_h, win_w])
    if clip_boxes:
        moved = tf.clip_by_value(moved, 0.0, 1.0)
    return cropped, moved, tf.boolean_mask(classes, keep)


def _crop(image, boxes, classes, min_object_covered=1.0, min_aspect_ratio=0.75, max_aspect_ratio=1.33,
          min_area=0.1, max_area=1.0, overlap_thresh=0.3, clip_boxes=True, random_coef=0.0):
    """TF OD API `random_crop_image` (proto defaults): a window from
    `tf.image.sample_distorted_bounding_box` (100 attempts, the whole image when no box is given,
    boxes clipped to [0, 1] first) covering at least `min_object_covered` of some box, then
    `crop_to_window`. With `random_coef` > 0 the image is left as it is unless a uniform draw
    exceeds `random_coef`."""
    def crop():
        begin, size, _ = tf.image.sample_distorted_bounding_box(
            tf.shape(image), bounding_boxes=tf.expand_dims(tf.clip_by_value(boxes, 0.0, 1.0), 0),
            min_object_covered=min_object_covered, aspect_ratio_range=(min_aspect_ratio, max_aspect_ratio),
            area_range=(min_area, max_area), max_attempts=100, use_image_if_no_bounding_boxes=True)
        return crop_to_window(image, boxes, classes, begin, size, overlap_thresh, clip_boxes)

    if random_coef <= 0.0:
        return crop()
    return tf.cond(tf.random.uniform([]) > random_coef, crop, lambda: (image, boxes, classes))


def adjust_brightness(image, delta):
    """`random_adjust_brightness` given its delta: `x + 255·delta`, clipped to [0, 255]."""
    return tf.clip_by_value(tf.image.adjust_brightness(image / 255.0, delta) * 255.0, 0.0, 255.0)


def adjust_contrast(image, factor):
    """`random_adjust_contrast` given its factor: each channel `mean + factor·(x − mean)` (mean over
    the image, per channel, in the [0, 1] scale), clipped to [0, 255]."""
    return tf.clip_by_value(tf.image.adjust_contrast(image / 255.0, factor) * 255.0, 0.0, 255.0)


def _brightness(image, boxes, classes, max_delta=0.2):
    """TF OD API `random_adjust_brightness`: delta uniform in [−max_delta, max_delta)."""
    return adjust_brightness(image, tf.random.uniform([], -max_delta, max_delta)), boxes, classes


def _contrast(image, boxes, classes, min_delta=0.8, max_delta=1.25):
    """TF OD API `random_adjust_contrast`: factor uniform in [min_delta, max_delta)."""
    return adjust_contrast(image, tf.random.uniform([], min_delta, max_delta)), boxes, classes


AUGMENTATIONS = {
    "random_horizontal_flip": _flip,
    "random_crop_image": _crop,
    "random_adjust_brightness": _brightness,
    "random_adjust_contrast": _contrast,
}


def augment(image, boxes, classes, augmentations: tuple[Augmentation, ...]):
    """Apply `data_augmentation_options` in order to a float image `[h, w, 3]` (0–255) and its boxes:
    before resizing, as the TF OD API's `inputs.transform_input_data` does."""
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
