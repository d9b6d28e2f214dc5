"""The TF OD API decoder's view of a record: its feature spec (from
`object_detection/data_decoders/tf_example_decoder.py`) and helpers to write test records."""
from __future__ import annotations

import glob

import tensorflow as tf

FEATURE_SPEC = {
    "image/encoded": tf.io.FixedLenFeature((), tf.string, default_value=""),
    "image/format": tf.io.FixedLenFeature((), tf.string, default_value="jpeg"),
    "image/filename": tf.io.FixedLenFeature((), tf.string, default_value=""),
    "image/key/sha256": tf.io.FixedLenFeature((), tf.string, default_value=""),
    "image/source_id": tf.io.FixedLenFeature((), tf.string, default_value=""),
    "image/height": tf.io.FixedLenFeature((), tf.int64, default_value=1),
    "image/width": tf.io.FixedLenFeature((), tf.int64, default_value=1),
    "image/class/text": tf.io.FixedLenFeature((), tf.string, default_value=""),
    "image/class/label": tf.io.VarLenFeature(tf.int64),
    "image/neg_category_ids": tf.io.VarLenFeature(tf.int64),
    "image/not_exhaustive_category_ids": tf.io.VarLenFeature(tf.int64),
    "image/class/confidence": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
    "image/object/class/label": tf.io.VarLenFeature(tf.int64),
    "image/object/class/text": tf.io.VarLenFeature(tf.string),
    "image/object/area": tf.io.VarLenFeature(tf.float32),
    "image/object/is_crowd": tf.io.VarLenFeature(tf.int64),
    "image/object/difficult": tf.io.VarLenFeature(tf.int64),
    "image/object/group_of": tf.io.VarLenFeature(tf.int64),
    "image/object/weight": tf.io.VarLenFeature(tf.float32),
}


def parse_records(pattern: str, compression: str = "") -> list[dict]:
    """Every record matching `pattern`, parsed with the decoder's spec, as Python values."""
    out = []
    for path in sorted(glob.glob(pattern)):
        for raw in tf.data.TFRecordDataset(path, compression_type=compression):
            parsed = tf.io.parse_single_example(raw, FEATURE_SPEC)
            row = {"file": path}
            for key, value in parsed.items():
                if isinstance(value, tf.SparseTensor):
                    value = tf.sparse.to_dense(value, default_value=b"" if value.dtype == tf.string else 0)
                    row[key] = value.numpy().tolist()
                else:
                    scalar = value.numpy()
                    row[key] = scalar if isinstance(scalar, bytes) else scalar.item()
            out.append(row)
    return out


def example(features: dict) -> bytes:
    """A serialised tf.train.Example from `{key: list of bytes | int | float}`."""
    feature = {}
    for key, values in features.items():
        if values and isinstance(values[0], bytes):
            feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        elif values and isinstance(values[0], float):
            feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
        else:
            feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_records(path, examples: list[bytes], compression: str | None = None) -> None:
    options = tf.io.TFRecordOptions(compression_type=compression) if compression else None
    with tf.io.TFRecordWriter(str(path), options=options) as writer:
        for raw in examples:
            writer.write(raw)
