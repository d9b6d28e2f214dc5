"""Writing `tf.train.Example`s: Boxwise's hand wire encoder (`tf_example.example_parts`) against
the generated `backend/tf_protos/example_pb2.Example` message, in one run.

    .venv/bin/python bench/example_encoding_bench.py              # 300 demo images, 5 rounds
    .venv/bin/python bench/example_encoding_bench.py --images 60 --rounds 3 --no-tf

A fresh data folder gets a demo project of `--images` generated 320x240 PNG scenes, all
labeled (`--photos`: 640x480 JPEGs of about 200 kB with 1-3 boxes, as `export_bench.py` makes). Then, in this one process:
  1. Bytes. One TFRecord export through `dataset_versions.create_export` in which every
     example the hand encoder writes is also built as an `example_pb2.Example` from the same
     `ExportImage` and image bytes (and, unless `--no-tf`, as a `tf.train.Example`): counts of
     byte-identical serialisations (`SerializeToString()` and `(deterministic=True)`), of equal
     messages after parsing, and whether the default serialisation of one message is the same
     in another Python process. The TF OD API fixture records (`tests/fixtures/odapi/parity`,
     500 examples) are parsed and re-serialised the same ways.
  2. Speed. `--rounds` exports of the whole project alternating the hand encoder and the
     generated message (swapped in for `tf_example.example_parts`), median seconds of each and
     their ratio; and the encoding alone (no files) per image.
Prints a JSON line with the load average (the machine is shared: compare only the ratio).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def message_example(image, data: bytes):
    """The example `tf_example.example_parts` writes, built as the generated message (keys
    added in the hand encoder's order)."""
    from backend.formats import boxes as box_convert, tf_example
    from backend.tf_protos import example_pb2
    example = example_pb2.Example()
    feature = example.features.feature
    normalised = [box_convert.to_normalized(b.coords, image.width, image.height) for b in image.boxes]
    feature["image/format"].bytes_list.value.append(image.format.encode())
    feature["image/height"].int64_list.value.append(image.height)
    feature["image/width"].int64_list.value.append(image.width)
    feature["image/filename"].bytes_list.value.append(image.file_name.encode("utf-8"))
    feature["image/source_id"].bytes_list.value.append(str(image.image_id).encode())
    feature["image/key/sha256"].bytes_list.value.append(image.sha256.encode())
    for position, key in enumerate(tf_example.BOX_KEYS):
        feature[key].float_list.value.extend([n[position] for n in normalised])
    feature["image/object/class/text"].bytes_list.value.extend([b.name.encode("utf-8") for b in image.boxes])
    feature["image/object/class/label"].int64_list.value.extend([b.label_map_id for b in image.boxes])
    feature["image/object/difficult"].int64_list.value.extend([int(b.difficult) for b in image.boxes])
    feature["image/object/truncated"].int64_list.value.extend([int(b.truncated) for b in image.boxes])
    feature["image/encoded"].bytes_list.value.append(data)
    return example


def message_parts(image, data: bytes) -> tuple[bytes, bytes]:
    """`example_parts` through the generated message: (serialised, b"")."""
    return message_example(image, data).SerializeToString(), b""


def wire_keys(serialised: bytes) -> list[str]:
    """The feature keys of a serialised Example in the order they are on the wire."""
    keys = []
    # Example.features (field 1) → Features.feature entries (field 1) → entry key (field 1).
    body = _next_field(serialised, 0)[1]
    position = 0
    while position < len(body):
        position, entry = _next_field(body, position)
        keys.append(_next_field(entry, 0)[1].decode())
    return keys


def _varint(data: bytes, position: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return position, value


def _next_field(data: bytes, position: int) -> tuple[int, bytes]:
    position, _tag = _varint(data, position)          # every field here is length-delimited
    position, length = _varint(data, position)
    return position + length, data[position:position + length]


def other_process_serialisation(serialised: bytes) -> bytes:
    """Parse `serialised` in a fresh Python process and serialise it there (default order)."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from backend.tf_protos import example_pb2; "
            "data = sys.stdin.buffer.read(); "
            "sys.stdout.buffer.write(example_pb2.Example.FromString(data).SerializeToString())")
    return subprocess.run([sys.executable, "-c", code, str(ROOT)], input=serialised,
                          capture_output=True, check=True).stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--photos", action="store_true",
                        help="640x480 JPEGs of about 200 kB (export_bench's images) instead of demo scenes")
    parser.add_argument("--no-tf", action="store_true", help="skip the tf.train.Example comparison")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="example_bench_"))
    os.environ["BOXWISE_DATA"] = str(work / "data")
    os.environ.setdefault("BOXWISE_SCRYPT_N", "1024")
    from backend import auth, dataset_versions, demo
    from backend.db import connect
    from backend.formats import tf_example, tfrecord_framing
    from backend.tf_protos import example_pb2
    tf = None
    if not args.no_tf:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

    if args.photos:
        sys.path.insert(0, str(ROOT / "bench"))
        from export_bench import setup
        db, admin, project, _ = setup(args.images, work / "data")
    else:
        db = connect()
        admin = auth.create_first_admin(db, "bench", "bench-password-1")
        project = demo.create_demo_project(db, admin, count=args.images, seed=3)
        db.execute("update images set status = 'labeled' where project_id = ?", [project["id"]])

    # 1. Bytes, for every example of one export.
    hand_parts = tf_example.example_parts
    counts = {"examples": 0, "generated_default": 0, "generated_deterministic": 0,
              "generated_equal_message": 0, "tf_default": 0, "tf_deterministic": 0,
              "tf_equal_generated_default": 0, "tf_equal_message": 0}
    first: dict = {}

    def comparing(image, data):
        head, tail = hand_parts(image, data)
        hand = head + tail
        message = message_example(image, data)
        counts["examples"] += 1
        counts["generated_default"] += message.SerializeToString() == hand
        counts["generated_deterministic"] += message.SerializeToString(deterministic=True) == hand
        counts["generated_equal_message"] += example_pb2.Example.FromString(hand) == message
        if tf is not None:
            theirs = tf.train.Example.FromString(message.SerializeToString())
            counts["tf_default"] += theirs.SerializeToString() == hand
            counts["tf_deterministic"] += theirs.SerializeToString(deterministic=True) == hand
            counts["tf_equal_generated_default"] += theirs.SerializeToString() == message.SerializeToString()
            counts["tf_equal_message"] += tf.train.Example.FromString(hand) == theirs
        if not first:
            first.update(hand=hand, generated=message.SerializeToString(),
                         deterministic=message.SerializeToString(deterministic=True))
        return head, tail

    tf_example.example_parts = comparing
    try:
        version = dataset_versions.create_export(db, admin, project["id"], "tfrecord", splits="train=0.8,val=0.2")
    finally:
        tf_example.example_parts = hand_parts
    elsewhere = other_process_serialisation(first["hand"])
    bytes_report = {**counts,
                    "hand_key_order": wire_keys(first["hand"]),
                    "generated_default_key_order": wire_keys(first["generated"]),
                    "deterministic_key_order": wire_keys(first["deterministic"]),
                    "default_order_same_in_another_process": elsewhere == first["generated"],
                    "another_process_equals_hand": elsewhere == first["hand"]}

    fixtures = sorted((ROOT / "tests/fixtures/odapi/parity").glob("*.record-*"))
    fixture = {"examples": 0, "generated_default": 0, "generated_deterministic": 0,
               "tf_default": 0, "tf_deterministic": 0}
    fixture_order = None
    for path in fixtures:
        for _, raw in tfrecord_framing.iter_raw(path):
            message = example_pb2.Example.FromString(raw)
            fixture["examples"] += 1
            fixture["generated_default"] += message.SerializeToString() == raw
            fixture["generated_deterministic"] += message.SerializeToString(deterministic=True) == raw
            if tf is not None:
                theirs = tf.train.Example.FromString(raw)
                fixture["tf_default"] += theirs.SerializeToString() == raw
                fixture["tf_deterministic"] += theirs.SerializeToString(deterministic=True) == raw
            fixture_order = fixture_order or wire_keys(raw)
    fixture["first_key_order"] = fixture_order

    # 2. Speed: whole exports, alternating, and the encoding alone.
    seconds = {"hand": [], "generated": []}
    for round_ in range(args.rounds):
        for name in (("hand", "generated") if round_ % 2 == 0 else ("generated", "hand")):
            tf_example.example_parts = hand_parts if name == "hand" else message_parts
            try:
                start = time.perf_counter()
                dataset_versions.create_export(db, admin, project["id"], "tfrecord", splits="train=0.8,val=0.2")
                seconds[name].append(time.perf_counter() - start)
            finally:
                tf_example.example_parts = hand_parts
    recorded = []

    def recording(image, data):
        recorded.append((image, data))
        return hand_parts(image, data)

    tf_example.example_parts = recording
    try:
        dataset_versions.create_export(db, admin, project["id"], "tfrecord", splits="train=1", shards=1)
    finally:
        tf_example.example_parts = hand_parts
    items = recorded
    encode = {}
    for name, function in (("hand", lambda i, d: b"".join(hand_parts(i, d))),
                           ("generated", lambda i, d: message_example(i, d).SerializeToString())):
        runs = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            for image, data in items:
                function(image, data)
            runs.append((time.perf_counter() - start) / len(items) * 1e6)
        encode[name] = statistics.median(runs)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    result = {
        "images": args.images, "photos": args.photos, "rounds": args.rounds, "dataset_version_bytes": sum(
            p.stat().st_size for p in version.path.glob("*.record-*")),
        "export_seconds_median": {k: round(v, 3) for k, v in median.items()},
        "export_ratio_generated_over_hand": round(median["generated"] / median["hand"], 3),
        "encode_us_per_image_median": {k: round(v, 1) for k, v in encode.items()},
        "encode_ratio_generated_over_hand": round(encode["generated"] / encode["hand"], 3),
        "bytes": bytes_report, "fixtures": fixture,
        "protobuf": __import__("google.protobuf").protobuf.__version__,
        "tensorflow": tf.__version__ if tf is not None else None,
        "load_average": os.getloadavg(), "cpus": os.cpu_count(),
    }
    print(f"export of {args.images} images, median of {args.rounds}: hand {median['hand']:.3f} s, "
          f"generated message {median['generated']:.3f} s "
          f"(x{result['export_ratio_generated_over_hand']})")
    print(f"encoding alone: hand {encode['hand']:.1f} us/image, generated {encode['generated']:.1f} us/image "
          f"(x{result['encode_ratio_generated_over_hand']})")
    print(f"byte-identical to the hand encoder, of {counts['examples']}: generated default "
          f"{counts['generated_default']}, deterministic {counts['generated_deterministic']}; "
          f"equal as messages {counts['generated_equal_message']}")
    print(json.dumps(result))
    import shutil
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
