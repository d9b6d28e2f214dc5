"""Export speed: Boxwise's TFRecord export against the raw cost of moving the same bytes, and
against the decode-and-re-encode approach of typical tutorials, in one run.

    .venv/bin/python bench/export_bench.py            # 2,000 JPEGs of about 200 kB
    .venv/bin/python bench/export_bench.py --n 200    # a quick run

Steps, all on the same stored images (warm page cache for every contender):
  1. Boxwise: `dataset_versions.create_export(..., "tfrecord")` — bytes passed through, each shard
     framed, hashed (sha256 for the manifest) and written in one pass, shards in parallel
     threads, plus label map, manifest and snippet; also once with `checksums=False`.
  2. Raw: read every stored file and write its bytes into as many plain output files as
     Boxwise writes shards, one thread: the floor for moving these bytes.
  3. Re-encode: per image `tf.io.decode_jpeg` + `tf.io.encode_jpeg`, then a tf.train.Example
     written with tf.io.TFRecordWriter (what `generate_tfrecord.py`-style tutorials do).
Prints a table, the load average (the machine is shared) and a JSON line; targets: Boxwise
>= 0.7x raw throughput, >= 5x re-encode.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import _cli

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_jpeg(rng: np.random.Generator, size=(640, 480)) -> bytes:
    """A JPEG of about 200 kB: a smooth gradient with noise (photos compress like this)."""
    import io
    w, h = size
    base = np.linspace(0, 255, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3), np.float32)
    noise = rng.normal(0, 40, (h, w, 3)).astype(np.float32)
    pixels = np.clip(base * rng.uniform(0.3, 1.0, 3) + noise, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


def unique_copy(jpeg: bytes, number: int) -> bytes:
    """The same JPEG with a comment segment naming `number`: distinct bytes (so no dedupe),
    same pixels, no re-encoding."""
    comment = f"boxwise bench image {number}".encode()
    return jpeg[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + jpeg[2:]


def setup(n: int, data_dir: Path):
    """A project of `n` labeled JPEGs. The first 20 distinct pictures go through
    `images.ingest`; the rest are comment-tagged copies of them stored the same way (content
    addressed, same row fields) without decoding each again, to keep setup short."""
    os.environ["BOXWISE_DATA"] = str(data_dir)
    import hashlib

    from backend import auth, db as database, images, projects, settings
    db = database.connect()
    admin = auth.create_first_admin(db, "admin", "admin-password")
    project = projects.create_project(db, admin, "bench", ["car", "person", "dog"])
    labels = [r["id"] for r in db.query("select id from labels order by label_map_id")]
    rng = np.random.default_rng(0)
    pictures = [make_jpeg(rng) for _ in range(min(n, 20))]
    report = images.ingest(db, admin, project["id"],
                           ((f"img{i:05d}.jpg", data) for i, data in enumerate(pictures)))
    ids = [item.image_id for item in report.items if item.outcome == "accepted"]
    first = images.get_image(db, ids[0])
    rows = []
    for number in range(len(pictures), n):
        data = unique_copy(pictures[number % len(pictures)], number)
        sha = hashlib.sha256(data).hexdigest()
        target = images.stored_path(sha, "jpeg")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        rows.append({"project_id": project["id"], "sha256": sha,
                     "path": str(target.relative_to(settings.data_dir())), "filename": f"img{number:05d}.jpg",
                     "width": first["width"], "height": first["height"], "format": "jpeg",
                     "size_bytes": len(data), "status": "new", "version": 0, "created_at": time.time()})
    db["images"].insert_all(rows)
    ids = [r["id"] for r in db.query("select id from images where project_id = ? order by id", [project["id"]])]
    rows = []
    for number, image_id in enumerate(ids):
        for k in range(1 + number % 3):
            x = 20 + 100 * k
            rows.append({"image_id": image_id, "label_id": labels[(number + k) % 3], "xmin": x, "ymin": 30,
                         "xmax": x + 90, "ymax": 200, "source": "human", "created_at": time.time()})
    db["annotations"].insert_all(rows)
    db.execute("update images set status = 'labeled' where project_id = ?", [project["id"]])
    stored = [images.image_file(r) for r in db.query("select * from images where project_id = ? order by id",
                                                     [project["id"]])]
    return db, admin, project, stored


def bench_boxwise(db, admin, project, shards: int, checksums: bool = True) -> tuple[float, dict]:
    from backend import dataset_versions
    start = time.perf_counter()
    version = dataset_versions.create_export(db, admin, project["id"], "tfrecord", shards=shards,
                                    splits="train=0.8,val=0.2", reshuffle=True, checksums=checksums)
    return time.perf_counter() - start, version


def bench_raw(stored: list[Path], out: Path, files: int) -> float:
    out.mkdir(parents=True)
    start = time.perf_counter()
    handles = [open(out / f"raw-{i:05d}", "wb") for i in range(files)]
    for number, path in enumerate(stored):
        handles[number % files].write(path.read_bytes())
    for handle in handles:
        handle.close()
    return time.perf_counter() - start


def bench_reencode(stored: list[Path], out: Path) -> float:
    import tensorflow as tf
    out.mkdir(parents=True)
    start = time.perf_counter()
    with tf.io.TFRecordWriter(str(out / "train.record")) as writer:
        for path in stored:
            encoded = tf.io.encode_jpeg(tf.io.decode_jpeg(tf.io.read_file(str(path)))).numpy()
            feature = {
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
                "image/format": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"jpeg"])),
                "image/object/bbox/xmin": tf.train.Feature(float_list=tf.train.FloatList(value=[0.1])),
                "image/object/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[1])),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="number of images (default 2000)")
    parser.add_argument("--shards", type=int, default=4, help="TFRecord shards per split")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each fast contender; best is kept")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data folder")
    args = parser.parse_args()
    work = _cli.work_directory("boxwise-export-bench-")
    try:
        load_before = os.getloadavg()
        t0 = time.perf_counter()
        db, admin, project, stored = setup(args.n, work / "data")
        setup_seconds = time.perf_counter() - t0
        total_bytes = sum(p.stat().st_size for p in stored)
        t0 = time.perf_counter()
        import tensorflow  # noqa: F401  - imported once, outside every timed section
        import_seconds = time.perf_counter() - t0
        # Best of --repeat interleaved runs: the machine is shared, and the minimum is the
        # figure least disturbed by other processes.
        boxwise = no_hash = raw = float("inf")
        # Each output is deleted right after it is timed, so no run pays for writing back
        # another run's dirty pages.
        for _attempt in range(args.repeat):
            seconds, version = bench_boxwise(db, admin, project, args.shards)
            boxwise = min(boxwise, seconds)
            shutil.rmtree(version.path)
            shard_files = sum(version.params["shards"].values())
            raw = min(raw, bench_raw(stored, work / "raw", shard_files))
            shutil.rmtree(work / "raw")
            seconds, unhashed = bench_boxwise(db, admin, project, args.shards, checksums=False)
            no_hash = min(no_hash, seconds)
            shutil.rmtree(unhashed.path)
        version = bench_boxwise(db, admin, project, args.shards)[1]
        shard_bytes = [path.read_bytes() for path in version.path.glob("*.record-*")]
        t0 = time.perf_counter()  # hashing alone, of bytes already in memory
        for data in shard_bytes:
            hashlib.sha256(data).hexdigest()
        sha_seconds = time.perf_counter() - t0
        del shard_bytes
        reencode = bench_reencode(stored, work / "reencode")
        mb = total_bytes / 1e6
        result = {
            "images": len(stored), "mean_kb": round(total_bytes / len(stored) / 1e3, 1),
            "total_mb": round(mb, 1), "shards": version.params["shards"], "cpus": os.cpu_count(),
            "boxwise_s": round(boxwise, 3), "boxwise_no_checksums_s": round(no_hash, 3),
            "boxwise_no_checksums_vs_raw": round(raw / no_hash, 2), "raw_s": round(raw, 3), "reencode_s": round(reencode, 3),
            "boxwise_mb_s": round(mb / boxwise, 1), "raw_mb_s": round(mb / raw, 1),
            "reencode_mb_s": round(mb / reencode, 1),
            "boxwise_vs_raw": round(raw / boxwise, 2), "boxwise_vs_reencode": round(reencode / boxwise, 1),
            "repeat": args.repeat, "setup_s": round(setup_seconds, 1), "tf_import_s": round(import_seconds, 1),
            "shard_sha256_s_one_thread": round(sha_seconds, 3),
            # Boxwise moves the same bytes as raw and also hashes them all for the manifest; even
            # split perfectly over every core, that work cannot finish faster than this ratio.
            "ceiling_vs_raw": round(raw / ((raw + sha_seconds) / (os.cpu_count() or 1)), 2),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        }
        print(f"{result['images']} JPEGs, mean {result['mean_kb']} kB, {result['total_mb']} MB; "
              f"shards {result['shards']}; {result['cpus']} CPUs")
        print("| approach | seconds | MB/s | images/s |\n|---|---:|---:|---:|")
        result["boxwise_no_checksums_mb_s"] = round(mb / no_hash, 1)
        for name, key in (("Boxwise export (pass-through, parallel shards, manifest)", "boxwise"),
                          ("Boxwise export, manifest without shard sha256 (checksums=False)",
                           "boxwise_no_checksums"),
                          ("Raw read + write of the same bytes", "raw"),
                          ("decode_jpeg + encode_jpeg per image (tutorial style)", "reencode")):
            seconds = result[f"{key}_s"]
            print(f"| {name} | {seconds:.2f} | {result[f'{key}_mb_s']:.0f} | {len(stored) / seconds:.0f} |")
        print(f"Boxwise throughput = {result['boxwise_vs_raw']}× raw (target ≥ 0.7×); "
              f"{result['boxwise_vs_reencode']}× the re-encode approach (target ≥ 5×)")
        print(f"(of Boxwise's work, the manifest's sha256 of every shard alone takes {sha_seconds:.2f} s "
              "on one thread (bytes already in memory); Boxwise hashes while writing, in the shard threads)")
        print(f"ceiling: raw read + write plus that sha256, split perfectly over {result['cpus']} cores, "
              f"is {result['ceiling_vs_raw']}× raw: the most any export that writes a sha256 manifest could reach "
              "here, with no framing, CRC, set-up or thread overhead at all")
        print(f"load average (1, 5, 15 min) before {result['loadavg_before']}, after {result['loadavg_after']} "
              f"on {result['cpus']} CPUs")
        print(json.dumps(result))
        return 0
    finally:
        _cli.remove_work_directory(work, args.keep, kept="kept {work}")


if __name__ == "__main__":
    sys.exit(main())
