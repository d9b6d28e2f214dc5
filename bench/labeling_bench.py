"""Labeling speed as projects grow: server-side time of "next image" and "save" at 1k, 10k
and 100k images (generated rows in a fresh SQLite file), reported as ratios to 1k.

    .venv/bin/python bench/labeling_bench.py                 # 1k, 10k, 100k
    .venv/bin/python bench/labeling_bench.py --sizes 1000 10000 --calls 100

Each project is 60 % done (labeled / reviewed, 3 boxes each), the rest new; 10 % of images are
assigned to one of five labelers and a few hundred carry uncertainty scores. Measured through
the backend functions the pages call, on one connection per labeler, with five labelers
taking turns (so every call walks past images leased by the others):
  next image  `labeling.next_image` (takes a lease; order "id" and "uncertain")
  open        `labeling.open_image` + `annotations.get_boxes` of that image
  save        `annotations.save_boxes` of 3 boxes with a version check and history rows
Prints a table (median and p95 per call in ms, ratio of medians to the smallest size) and a
JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend import annotations, auth, db as database, labeling, projects

LABELERS = 5


def build(path: Path, size: int, seed: int = 7) -> tuple[list[dict], int, list[int]]:
    """A database with `size` generated images; returns (labelers, project id, label ids)."""
    db = database.connect(path)
    admin = auth.create_first_admin(db, "admin", "bench-password")
    # Password hashing is deliberately slow; bench users get rows, not logins.
    for number in range(LABELERS):
        db["users"].insert({"username": f"labeler{number}", "password_hash": "-", "role": "labeler",
                            "disabled": 0, "created_at": database.now()})
    labelers = [auth.get_user(db, f"labeler{n}") for n in range(LABELERS)]
    project = projects.create_project(db, admin, "bench", ["cat", "dog", "bird", "car"])
    label_ids = [r["id"] for r in db.query("select id from labels where project_id = ?", [project["id"]])]
    rng = random.Random(seed)
    stamp = database.now()
    done = int(size * 0.6)

    def image_rows():
        for number in range(size):
            status = ("reviewed" if number % 3 == 0 else "labeled") if number < done else "new"
            assignee = labelers[number % LABELERS]["id"] if number % 10 == 0 else None
            yield (project["id"], f"{number:064x}", f"images/{number}.jpg", f"{number}.jpg", 1920,
                   1080, "jpeg", 0, status, 1 if number < done else 0, assignee,
                   rng.random() if number % (size // 300 or 1) == 0 else None, stamp)

    def box_rows():
        for image_id in range(1, done + 1):
            for k in range(3):
                x = 100.0 + 300 * k
                yield (image_id, label_ids[k % len(label_ids)], x, 100.0, x + 200, 400.0, "human", stamp)

    with database.transaction(db):
        db.conn.executemany(
            "insert into images (project_id, sha256, path, filename, width, height, format, "
            "size_bytes, status, version, assignee_id, uncertainty, created_at) "
            "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", image_rows())
        db.conn.executemany(
            "insert into annotations (image_id, label_id, xmin, ymin, xmax, ymax, source, created_at) "
            "values (?, ?, ?, ?, ?, ?, ?, ?)", box_rows())
    db.execute("analyze")
    db.conn.close()
    return labelers, project["id"], label_ids


def timed(call) -> tuple[float, object]:
    start = time.perf_counter()
    result = call()
    return (time.perf_counter() - start) * 1000, result


def measure(path: Path, labelers: list[dict], project_id: int, label_ids: list[int],
            calls: int) -> dict[str, list[float]]:
    connections = [database.connect(path) for _ in labelers]
    times: dict[str, list[float]] = {"next image": [], "next image (uncertain)": [], "open": [],
                                     "save": []}
    for call in range(calls):
        turn = call % len(labelers)
        db, actor = connections[turn], labelers[turn]
        order = "uncertain" if call % 2 else "id"
        # Each lambda is called at once by timed(), inside this iteration.
        elapsed, image = timed(lambda: labeling.next_image(db, actor, project_id, order=order))  # noqa: B023
        times["next image (uncertain)" if order == "uncertain" else "next image"].append(elapsed)
        elapsed, _ = timed(lambda: (labeling.open_image(db, actor, image["id"]),  # noqa: B023
                                    annotations.get_boxes(db, image["id"])))  # noqa: B023
        times["open"].append(elapsed)
        boxes = [{"label_id": label_ids[k % len(label_ids)], "xmin": 10.0 + 50 * k, "ymin": 20.0,
                  "xmax": 40.0 + 50 * k, "ymax": 90.0} for k in range(3)]
        elapsed, _ = timed(lambda: annotations.save_boxes(db, actor, image["id"], boxes,  # noqa: B023
                                                          image["version"]))  # noqa: B023
        times["save"].append(elapsed)
        # Half the images are left leased (the labeler moved on without finishing), so later
        # calls must walk past other people's leases.
        if call % 2:
            labeling.release_lease(db, actor, image["id"])
    for connection in connections:
        connection.conn.close()
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["BOXWISE_DATA"] = tmp
        for size in args.sizes:
            path = Path(tmp) / f"bench-{size}.db"
            started = time.perf_counter()
            labelers, project_id, label_ids = build(path, size)
            built = time.perf_counter() - started
            times = measure(path, labelers, project_id, label_ids, args.calls)
            results[size] = {name: {"median_ms": statistics.median(values),
                                    "p95_ms": sorted(values)[int(len(values) * 0.95) - 1]}
                             for name, values in times.items()}
            print(f"built {size:,} images in {built:.1f} s", file=sys.stderr)
    base = args.sizes[0]
    print(f"| operation | images | median ms | p95 ms | median vs {base:,} |")
    print("|---|---:|---:|---:|---:|")
    for name in results[base]:
        for size in args.sizes:
            row = results[size][name]
            ratio = row["median_ms"] / results[base][name]["median_ms"]
            print(f"| {name} | {size:,} | {row['median_ms']:.2f} | {row['p95_ms']:.2f} | {ratio:.2f}× |")
    print(json.dumps({"bench": "labeling", "calls": args.calls, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
