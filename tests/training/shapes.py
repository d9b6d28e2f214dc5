"""A generated detection dataset of obvious shapes, written as TF OD API TFRecords.

Class 1 is a red square, class 2 a blue disc, on a plain grey background with a little
noise; sizes between a quarter and a half of the image side. Written here with
`tf.train.Example` directly (the TF OD API keys), so the trainer's tests do not depend on
Boxwise's own exporter. Also used by `bench/train_bench.py`.
"""
from __future__ import annotations

import io
import random
from pathlib import Path

from PIL import Image, ImageDraw

LABEL_MAP = "item {\n  id: 1\n  name: 'square'\n}\nitem {\n  id: 2\n  name: 'disc'\n}\n"
COLORS = {1: (220, 30, 30), 2: (30, 60, 220)}
NAMES = {1: b"square", 2: b"disc"}


def make_image(size: int, rng: random.Random, max_objects: int = 2, min_fraction: float = 0.25,
               max_fraction: float = 0.5):
    """(JPEG bytes, [(label, xmin, ymin, xmax, ymax) in pixels]) with non-overlapping shapes whose
    side is between `min_fraction` and `max_fraction` of the image side."""
    image = Image.new("RGB", (size, size), (128 + rng.randint(-20, 20),) * 3)
    draw = ImageDraw.Draw(image)
    objects = []
    for _ in range(rng.randint(1, max_objects)):
        for _attempt in range(20):
            side = rng.randint(int(size * min_fraction), int(size * max_fraction))
            x0, y0 = rng.randint(0, size - side), rng.randint(0, size - side)
            box = (x0, y0, x0 + side, y0 + side)
            if all(box[2] <= o[1] or box[0] >= o[3] or box[3] <= o[2] or box[1] >= o[4] for o in objects):
                break
        else:
            continue
        label = rng.choice((1, 2))
        if label == 1:
            draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=COLORS[1])
        else:
            draw.ellipse((box[0], box[1], box[2] - 1, box[3] - 1), fill=COLORS[2])
        objects.append((label, *box))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=95)
    return out.getvalue(), objects


def example(encoded: bytes, objects, size: int, source_id: str):
    import tensorflow as tf

    def floats(v):
        return tf.train.Feature(float_list=tf.train.FloatList(value=v))

    def ints(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=v))

    def bytes_(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=v))

    feature = {
        "image/encoded": bytes_([encoded]), "image/format": bytes_([b"jpeg"]),
        "image/height": ints([size]), "image/width": ints([size]),
        "image/filename": bytes_([source_id.encode()]), "image/source_id": bytes_([source_id.encode()]),
        "image/object/bbox/xmin": floats([o[1] / size for o in objects]),
        "image/object/bbox/ymin": floats([o[2] / size for o in objects]),
        "image/object/bbox/xmax": floats([o[3] / size for o in objects]),
        "image/object/bbox/ymax": floats([o[4] / size for o in objects]),
        "image/object/class/label": ints([o[0] for o in objects]),
        "image/object/class/text": bytes_([NAMES[o[0]] for o in objects]),
        "image/object/difficult": ints([0] * len(objects)),
        "image/object/truncated": ints([0] * len(objects)),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def write_dataset(directory: Path, split: str, count: int, size: int = 96, shards: int = 2,
                  seed: int = 0, max_objects: int = 2, min_fraction: float = 0.25,
                  max_fraction: float = 0.5) -> tuple[str, list]:
    """Write `<split>.record-0000i-of-0000n` shards (example i in shard i mod n); returns the glob
    and the ground truth `[(source_id, objects)]`."""
    import tensorflow as tf
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    writers = [tf.io.TFRecordWriter(str(directory / f"{split}.record-{i:05d}-of-{shards:05d}"))
               for i in range(shards)]
    truth = []
    for i in range(count):
        encoded, objects = make_image(size, rng, max_objects, min_fraction, max_fraction)
        source_id = f"{split}-{i}"
        writers[i % shards].write(example(encoded, objects, size, source_id).SerializeToString())
        truth.append((source_id, objects))
    for writer in writers:
        writer.close()
    return str(directory / f"{split}.record-?????-of-{shards:05d}"), truth


def write_label_map(directory: Path) -> Path:
    path = directory / "label_map.pbtxt"
    path.write_text(LABEL_MAP)
    return path
