"""Labeling under load: 20 labeler processes on one 2,000-image project, through the backend
functions the Label page calls, for a bounded time; then lost updates are looked for in the
images' history.

    .venv/bin/python bench/load_bench.py                      # 20 labelers, 2,000 images, 90 s
    .venv/bin/python bench/load_bench.py --labelers 5 --images 300 --seconds 20

Setup: a fresh data folder, 2,000 small real JPEGs (Pillow, 96x72, each a different picture)
ingested through `images.ingest`, one project with four classes, one labeler account per
process. The baseline is one labeler alone for `--baseline-seconds` in the same run, so the
latency figures can be read as ratios (the machine is shared and noisy).

Each labeler loops: `next_image` (takes a lease), `open_image` + `get_boxes`, `renew_lease`,
`save_boxes` from the opened version, a second `save_boxes` from the version the first one
returned (as the page does after a save), `submit` one image in ten, and `release_lease`
(leaving the image). When the queue is empty it opens a random image instead (`browse_open`). One loop in three
also opens one of 40 "hot" images that every labeler touches and saves it from the version
it read: that is where conflicts (`Conflict`) happen and where a wrong returned version
would overwrite someone's acknowledged save.

Outcomes per call: ok, conflict (a refused stale save, the designed behaviour), busy (the
retryable `Busy` error: the database write lock was not free within the busy timeout),
error (another domain error), crash (any other exception: a bug). Lost updates are counted
afterwards from `annotation_events`: an acknowledged save whose boxes never appear in the
history, or a second save that succeeded although someone else's save landed between it and
the save whose returned version it started from.

Prints a table and one JSON line (`--json PATH` also writes it).
"""
from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HOT_IMAGES = 40
CALLS = ("next_image", "browse_open", "open_image", "get_boxes", "renew_lease", "save_boxes",
         "save_again", "submit", "release_lease", "hot_open", "hot_save")


def _image_bytes(number: int) -> bytes:
    from PIL import Image, ImageDraw

    rng = random.Random(number)
    image = Image.new("RGB", (96, 72), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x, y = rng.randrange(70), rng.randrange(50)
        draw.rectangle([x, y, x + rng.randrange(8, 26), y + rng.randrange(8, 22)],
                       fill=tuple(rng.randrange(256) for _ in range(3)))
    draw.text((2, 2), str(number), fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=80)
    return out.getvalue()


def build(data_dir: Path, images: int, labelers: int) -> dict:
    """The data folder: users, one project, `images` real JPEGs ingested."""
    os.environ["BOXWISE_DATA"] = str(data_dir)
    from backend import auth, db as database, images as image_store, projects

    db = database.connect(data_dir / "boxwise.db")
    admin = auth.create_first_admin(db, "admin", "bench-admin-password")
    # Password hashing is deliberately slow (scrypt N=2**17): bench users get rows, not logins.
    for number in range(labelers + 1):
        db["users"].insert({"username": f"labeler{number:02d}", "password_hash": "-",
                            "role": "labeler", "disabled": 0, "created_at": database.now()})
    project = projects.create_project(db, admin, "load", ["cat", "dog", "bird", "car"])
    report = image_store.ingest(db, admin, project["id"],
                                ((f"img{n:05d}.jpg", _image_bytes(n)) for n in range(images)))
    accepted = [item.image_id for item in report.items if item.outcome == "accepted"]
    labels = [row["id"] for row in db.query("select id from labels where project_id = ?",
                                            [project["id"]])]
    db.conn.close()
    return {"project_id": project["id"], "labels": labels, "image_ids": accepted,
            "hot": accepted[-HOT_IMAGES:]}


def _boxes(rng: random.Random, labels: list[int]) -> list[dict]:
    out = []
    for _ in range(rng.randrange(1, 4)):
        x, y = rng.uniform(0, 60), rng.uniform(0, 40)
        out.append({"label_id": rng.choice(labels), "xmin": round(x, 2), "ymin": round(y, 2),
                    "xmax": round(x + rng.uniform(5, 30), 2), "ymax": round(y + rng.uniform(5, 25), 2)})
    return out


def labeler(number: int, data_dir: str, setup: dict, seconds: float, queue) -> None:
    """One labeler process: loop for `seconds`, then put its timings and saves on `queue`."""
    os.environ["BOXWISE_DATA"] = data_dir
    from backend import annotations, auth, db as database, labeling
    from backend.errors import BoxwiseError, Conflict

    try:
        from backend.errors import Busy
    except ImportError:  # before the Busy error existed: the raw sqlite3 error
        Busy = ()

    db = database.connect(Path(data_dir) / "boxwise.db", migrate=False)
    me = auth.get_user(db, f"labeler{number:02d}")
    rng = random.Random(number)
    times: dict[str, list[float]] = {name: [] for name in CALLS}
    outcomes: dict[str, int] = {"ok": 0, "conflict": 0, "busy": 0, "error": 0, "crash": 0}
    crashes: list[str] = []
    saves: list[dict] = []  # acknowledged saves: image, user, base, returned version, boxes

    def call(name, fn, *args, **kwargs):
        start = time.perf_counter()
        try:
            result = fn(*args, **kwargs)
        except Conflict:
            outcomes["conflict"] += 1
            return None
        except Busy:
            outcomes["busy"] += 1
            return None
        except BoxwiseError:
            outcomes["error"] += 1
            return None
        except Exception as exc:  # noqa: BLE001 - counted and shown: each is a bug
            outcomes["crash"] += 1
            if "locked" in str(exc):
                outcomes["busy"] += 1
            if len(crashes) < 5:
                crashes.append(f"{name}: {type(exc).__name__}: {exc}")
            return None
        finally:
            times[name].append(time.perf_counter() - start)
        outcomes["ok"] += 1
        return result

    def save(name, image_id, base, chained_from=None):
        boxes = _boxes(rng, setup["labels"])
        row = call(name, annotations.save_boxes, db, me, image_id, boxes, base)
        if row is not None:
            saves.append({"image": image_id, "user": me["id"], "base": base,
                          "returned": row["version"], "boxes": boxes,
                          "chained_from": chained_from and {"user": chained_from["user"],
                                                            "boxes": chained_from["boxes"]}})
        return row

    started = time.monotonic()
    deadline = started + seconds
    while time.monotonic() < deadline:
        image = call("next_image", labeling.next_image, db, me, setup["project_id"])
        if image is None:  # queue empty: browse to any image, as with the arrow keys
            image = call("browse_open", labeling.open_image, db, me,
                         rng.choice(setup["image_ids"]))
            image = image and image["image"]
        if image is not None:
            opened = call("open_image", labeling.open_image, db, me, image["id"])
            call("get_boxes", annotations.get_boxes, db, image["id"])
            call("renew_lease", labeling.renew_lease, db, me, image["id"])
            if opened is not None:
                first = save("save_boxes", image["id"], opened["image"]["version"])
                if first is not None:
                    second = save("save_again", image["id"], first["version"], saves[-1])
                    if second is not None and rng.random() < 0.1:
                        call("submit", labeling.submit, db, me, image["id"], None, second["version"])
            call("release_lease", labeling.release_lease, db, me, image["id"])
        if rng.random() < 1 / 3:
            hot = rng.choice(setup["hot"])
            opened = call("hot_open", labeling.open_image, db, me, hot)
            if opened is not None:
                first = save("hot_save", hot, opened["image"]["version"])
                if first is not None:
                    save("save_again", hot, first["version"], saves[-1])
    db.conn.close()
    queue.put({"elapsed": time.monotonic() - started, "times": times, "outcomes": outcomes, "crashes": crashes, "saves": saves})


def run_phase(data_dir: Path, setup: dict, labelers: int, seconds: float, first: int = 1) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=labeler, args=(first + n, str(data_dir), setup, seconds, queue))
             for n in range(labelers)]
    started = time.perf_counter()
    for proc in procs:
        proc.start()
    results = []
    while len(results) < len(procs):
        try:
            results.append(queue.get(timeout=5))
        except Exception:  # noqa: BLE001 - queue.Empty: stop waiting for a process that died
            if time.perf_counter() - started > seconds + 120 or \
                    sum(p.exitcode not in (None, 0) for p in procs):
                raise SystemExit(f"a labeler process failed: exit codes "
                                 f"{[p.exitcode for p in procs]}") from None
    for proc in procs:
        proc.join()
    # Calls per second over the labelers' loops (process start-up and imports excluded).
    elapsed = max(r["elapsed"] for r in results)
    times = {name: [t for r in results for t in r["times"][name]] for name in CALLS}
    outcomes = {k: sum(r["outcomes"][k] for r in results) for k in results[0]["outcomes"]}
    return {"labelers": labelers, "seconds": round(elapsed, 1), "times": times,
            "outcomes": outcomes, "crashes": [c for r in results for c in r["crashes"]][:10],
            "saves": [s for r in results for s in r["saves"]]}


def _state(boxes: list[dict]) -> list:
    return sorted((int(b["label_id"]), round(float(b["xmin"]), 2), round(float(b["ymin"]), 2),
                   round(float(b["xmax"]), 2), round(float(b["ymax"]), 2)) for b in boxes)


def lost_updates(data_dir: Path, saves: list[dict]) -> dict:
    """Check every acknowledged save against `annotation_events` (see the module doc)."""
    from backend import db as database

    db = database.connect(data_dir / "boxwise.db", migrate=False)
    history: dict[int, list[tuple[int, int, list]]] = {}
    for row in db.query("select id, image_id, user_id, after from annotation_events "
                        "where kind = 'boxes' order by id"):
        after = json.loads(row["after"]) if row["after"] else []
        boxes = after.get("boxes", after) if isinstance(after, dict) else after
        history.setdefault(row["image_id"], []).append((row["id"], row["user_id"], _state(boxes)))
    db.conn.close()

    def event_of(save):
        for position, (_, user, state) in enumerate(history.get(save["image"], [])):
            if user == save["user"] and state == _state(save["boxes"]):
                return position
        return None

    missing = sum(1 for save in saves if event_of(save) is None)
    overwritten = 0
    # Chained saves: the second save of a pair must directly follow the first in the history.
    for save in saves:
        if save["chained_from"] is None:
            continue
        a, b = event_of({"image": save["image"], **save["chained_from"]}), event_of(save)
        if a is None or b is None:
            continue
        between = history[save["image"]][a + 1:b]
        if any(user != save["user"] for _, user, _ in between):
            overwritten += 1
    return {"acknowledged_saves": len(saves), "missing_from_history": missing,
            "overwrote_unseen_save": overwritten, "lost_updates": missing + overwritten}


def summary(phase: dict) -> dict:
    rows = {}
    for name, values in phase["times"].items():
        if not values:
            continue
        ordered = sorted(values)
        rows[name] = {"calls": len(values),
                      "p50_ms": round(statistics.median(ordered) * 1000, 2),
                      "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
                      "max_ms": round(ordered[-1] * 1000, 1)}
    total = sum(len(v) for v in phase["times"].values())
    return {"labelers": phase["labelers"], "seconds": phase["seconds"], "calls": total,
            "calls_per_s": round(total / phase["seconds"], 1), "per_call": rows,
            "outcomes": phase["outcomes"], "crashes": phase["crashes"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labelers", type=int, default=20)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=90)
    parser.add_argument("--baseline-seconds", type=float, default=15)
    parser.add_argument("--json", default=None, help="also write the JSON result here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="boxwise-load-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        load_before = os.getloadavg()
        started = time.perf_counter()
        setup = build(data_dir, args.images, args.labelers)
        setup_seconds = time.perf_counter() - started
        print(f"setup: {len(setup['image_ids'])} images ingested in {setup_seconds:.1f} s", flush=True)
        baseline = run_phase(data_dir, setup, 1, args.baseline_seconds, first=0)
        load = run_phase(data_dir, setup, args.labelers, args.seconds)
        lost = lost_updates(data_dir, baseline["saves"] + load["saves"])
        result = {"images": len(setup["image_ids"]), "cpus": os.cpu_count(),
                  "loadavg_before": [round(v, 2) for v in load_before],
                  "loadavg_after": [round(v, 2) for v in os.getloadavg()],
                  "baseline": summary(baseline), "load": summary(load), "history": lost}

    base, under = result["baseline"], result["load"]
    print(f"\n{'call':<12} {'alone p50':>10} {'p99':>8} | {args.labelers} labelers: "
          f"{'calls':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'p50 ratio':>9}")
    for name in CALLS:
        row = under["per_call"].get(name)
        if not row:
            continue
        alone = base["per_call"].get(name, {})
        ratio = row["p50_ms"] / alone["p50_ms"] if alone.get("p50_ms") else float("nan")
        print(f"{name:<12} {alone.get('p50_ms', float('nan')):>10} {alone.get('p99_ms', float('nan')):>8} | "
              f"{'':>12}{row['calls']:>7} {row['p50_ms']:>8} {row['p99_ms']:>8} {row['max_ms']:>8} "
              f"{ratio:>8.1f}×")
    print(f"\n{under['calls']} calls in {under['seconds']} s = {under['calls_per_s']} calls/s "
          f"(alone: {base['calls_per_s']} calls/s)")
    print(f"outcomes: {under['outcomes']}")
    print(f"history: {lost}")
    print(f"load average before/after: {result['loadavg_before']} / {result['loadavg_after']} "
          f"on {result['cpus']} CPUs")
    for crash in under["crashes"]:
        print("crash:", crash)
    line = json.dumps(result)
    print(line)
    if args.json:
        Path(args.json).write_text(line + "\n")


if __name__ == "__main__":
    main()
