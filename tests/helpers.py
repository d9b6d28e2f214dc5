"""Test helpers: real images made by Pillow."""
from __future__ import annotations

import hashlib
import io
import random
import re
import tarfile
import textwrap
import time
from pathlib import Path

import pytest

from PIL import Image, ImageDraw


def image_bytes(size=(64, 48), color=(200, 30, 30), fmt="JPEG", mode="RGB", **save) -> bytes:
    """A real encoded image made by Pillow."""
    image = Image.new(mode, size, color)
    out = io.BytesIO()
    image.save(out, format=fmt, **save)
    return out.getvalue()


APP = str(Path(__file__).resolve().parents[1] / "app.py")


def signed_in(db, username: str, page: str, timeout: float = 120):
    """An AppTest of the app with `username` signed in (password `<name>-password`, as the
    `users` fixture makes them), switched to `page` (e.g. "pages/label.py")."""
    from streamlit.testing.v1 import AppTest

    from backend import auth
    _, token = auth.login(db, username, f"{username}-password")
    at = AppTest.from_file(APP, default_timeout=timeout)
    at.session_state["session_token"] = token  # what the session cookie gives a page load
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def button(at, label: str, *, prefix: bool = False):
    """The first button whose label is `label` (or starts with it, with `prefix=True`)."""
    return next(b for b in at.button if (b.label.startswith(label) if prefix else b.label == label))


# The TF OD API's own zoo configs and label maps, when they lie beside the repository
# (../shared/tfod/, as in CI). They are the OD API's files, so they are not copied in here: the
# conformance tests that read them are skipped in a clone without them.
SHARED_TFOD = Path(__file__).resolve().parents[1].parent / "shared" / "tfod"
needs_shared_tfod = pytest.mark.skipif(not (SHARED_TFOD / "configs").is_dir(),
                                       reason="needs the TF OD API's zoo configs in ../shared/tfod")

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ODAPI_FIXTURES = FIXTURES / "odapi"
# The zoo ssd_mobilenet_v2_fpnlite_320x320 config: the OD API's own file when it is beside the
# repository, else the same model as the OD API's exporter wrote it for the fixtures.
_SHARED_FPNLITE = SHARED_TFOD / "configs" / "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8.config"
ZOO_FPNLITE_CONFIG = _SHARED_FPNLITE if _SHARED_FPNLITE.is_file() else ODAPI_FIXTURES / "zoo320" / "pipeline.config"


# ---------------------------------------------------------------- runs: a stand-in trainer and a dataset version
# A small stand-in for the TF OD API's model_main_tf2.py (its flags, Boxwise's progress and status
# files, SIGTERM → checkpoint → exit), launched as a configured external runner, so run tests take
# milliseconds per step. The fixtures that use these live in tests/conftest.py.

STAND_IN = textwrap.dedent('''
    """A stand-in trainer: model_main_tf2.py's flags, Boxwise's progress and status files."""
    import argparse, json, os, signal, sys, time
    from pathlib import Path

    parser = argparse.ArgumentParser()
    parser.add_argument("--pipeline_config_path")
    parser.add_argument("--model_dir")
    parser.add_argument("--num_train_steps", type=int, default=100000)
    parser.add_argument("--alsologtostderr", action="store_true")
    args = parser.parse_args()
    assert args.alsologtostderr, "model_main_tf2.py logs only with --alsologtostderr"
    model_dir = Path(args.model_dir)
    IGNORE_TERM = os.environ.get("STAND_IN_IGNORE_TERM") == "1"

    def write(name, value):
        tmp = model_dir / (name + ".tmp")
        tmp.write_text(json.dumps(value))
        os.replace(tmp, model_dir / name)

    def checkpoint(step):
        (model_dir / f"ckpt-{step}.index").write_text("index")
        (model_dir / f"ckpt-{step}.data-00000-of-00001").write_text("data")
        return str(model_dir / f"ckpt-{step}")

    stop = []
    signal.signal(signal.SIGTERM, (lambda *a: None) if IGNORE_TERM else (lambda *a: stop.append(1)))
    done = [int(p.name[5:-6]) for p in model_dir.glob("ckpt-*.index")]
    step = max(done, default=0)
    print("starting at step", step, flush=True)
    started = time.time()
    while step < args.num_train_steps:
        if stop:
            write("status.json", {"state": "cancelled", "error": None, "step": step,
                                  "checkpoint": checkpoint(step), "finished_at": time.time()})
            print("cancelled at step", step, flush=True)
            sys.exit(0)
        step += 1
        time.sleep(0.02)
        snapshot = {"step": step, "total_steps": args.num_train_steps, "time": time.time(),
                    "started_at": started, "losses": {"total": 1.0 / step, "classification": 0.5 / step,
                    "localization": 0.5 / step}, "learning_rate": 0.01, "steps_per_sec": 50.0,
                    "images_per_sec": 400.0, "devices": ["CPU"], "phase": "train"}
        write("progress.json", snapshot)
        with open(model_dir / "progress.jsonl", "a") as handle:
            handle.write(json.dumps(snapshot) + "\\n")
        if step % 10 == 0:
            checkpoint(step)
    write("status.json", {"state": "succeeded", "error": None, "step": step,
                          "checkpoint": checkpoint(step), "finished_at": time.time()})
''')

CONFIG = textwrap.dedent('''
    # a config the stand-in is launched with; paths are filled from the dataset version
    model {
      ssd {
        num_classes: 90
        image_resizer { fixed_shape_resizer { height: 64 width: 64 } }
      }
    }
    train_config {
      batch_size: 2
      num_steps: 100
      optimizer { momentum_optimizer { learning_rate { cosine_decay_learning_rate {
        learning_rate_base: 0.04 total_steps: 100 warmup_learning_rate: 0.01 warmup_steps: 10 } } }
        use_moving_average: false }
    }
    train_input_reader {
      label_map_path: "PATH_TO_BE_CONFIGURED"
      tf_record_input_reader { input_path: "PATH_TO_BE_CONFIGURED" }
    }
    eval_input_reader {
      label_map_path: "PATH_TO_BE_CONFIGURED"
      tf_record_input_reader { input_path: "PATH_TO_BE_CONFIGURED" }
    }
''')

TIMEOUT = 120


def make_dataset_version(db, project, data_dir, classes=("cat", "dog", "bird"), shards=2) -> int:
    """An `exports` row and its folder: a label map and (empty) shards of train and val."""
    export_id = db["exports"].insert({"project_id": project["id"], "format": "tfrecord",
                                      "path": "", "created_at": time.time()}).last_pk
    folder = data_dir / "exports" / str(export_id)
    folder.mkdir(parents=True)
    db["exports"].update(export_id, {"path": str(folder)})
    (folder / "label_map.pbtxt").write_text("".join(
        f"item {{\n  id: {i}\n  name: '{name}'\n}}\n" for i, name in enumerate(classes, 1)))
    for split in ("train", "val"):
        for i in range(shards):
            (folder / f"{split}.record-{i:05d}-of-{shards:05d}").write_bytes(b"")
    return export_id


STAND_IN_RUNNER = "stand-in"


def poll(condition, timeout=TIMEOUT, interval=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


# ---------------------------------------------------------------- formats: images with boxes, VOC XML, TFRecord features

def add_image(db, actor, project_id, name, size=(64, 48), color=(200, 30, 30), fmt="JPEG",
              boxes=(), status="labeled", no_objects=False):
    """Ingest a real Pillow image and save `boxes` [(class name, xmin, ymin, xmax, ymax)]."""
    from backend import annotations, images

    report = images.ingest(db, actor, project_id, [(name, image_bytes(size, color, fmt))])
    image_id = report.items[0].image_id
    assert report.items[0].outcome == "accepted", report.rows()
    label_ids = {r["name"]: r["id"] for r in db.query("select id, name from labels where project_id = ?",
                                                       [project_id])}
    row = images.get_image(db, image_id)
    row = annotations.save_boxes(db, actor, image_id, [
        {"label_id": label_ids[c], "xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1}
        for c, x0, y0, x1, y1 in boxes], row["version"], status=status)
    if no_objects:
        db.execute("update images set no_objects = 1 where id = ?", [image_id])
    return image_id


def voc_xml(filename, size, objects):
    parts = [f"<annotation><folder>imgs</folder><filename>{filename}</filename>"
             f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"]
    for name, (x0, y0, x1, y1), difficult, truncated in objects:
        parts.append(f"<object><name>{name}</name><pose>Unspecified</pose><truncated>{truncated}</truncated>"
                     f"<difficult>{difficult}</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
                     f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>")
    return "".join(parts) + "</annotation>"


def good_features(source_id: bytes, size=(40, 30), boxes=((0.1, 0.2, 0.5, 0.6, 1, b"cat"),)) -> dict:
    data = image_bytes(size)
    return {
        "image/encoded": [data], "image/format": [b"jpeg"], "image/height": [size[1]],
        "image/width": [size[0]], "image/filename": [source_id + b".jpg"], "image/source_id": [source_id],
        "image/key/sha256": [hashlib.sha256(data).hexdigest().encode()],
        "image/object/bbox/xmin": [float(b[0]) for b in boxes], "image/object/bbox/ymin": [float(b[1]) for b in boxes],
        "image/object/bbox/xmax": [float(b[2]) for b in boxes], "image/object/bbox/ymax": [float(b[3]) for b in boxes],
        "image/object/class/label": [b[4] for b in boxes], "image/object/class/text": [b[5] for b in boxes],
    }


# ---------------------------------------------------------------- the model zoo and the config doctor

SMALL128 = ODAPI_FIXTURES / "small128"
ZOO_NAME = "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8"


def add_folder(archive: tarfile.TarFile, source: Path, arcname: str) -> None:
    for path in sorted(source.rglob("*")):
        if path.is_file():
            archive.add(path, arcname=f"{arcname}/{path.relative_to(source).as_posix()}")


def zoo_tarball(target: Path, name: str = ZOO_NAME, source: Path = SMALL128, *, skip: tuple[str, ...] = (),
                extra=None) -> Path:
    """A tarball in the zoo's layout: `<name>/checkpoint/ckpt-0.*`, `saved_model/`, `pipeline.config`."""
    with tarfile.open(target, "w:gz") as archive:
        for part in ("checkpoint", "saved_model"):
            if part not in skip:
                add_folder(archive, source / part, f"{name}/{part}")
        for single in ("pipeline.config", "label_map.pbtxt"):
            if single not in skip and (source / single).is_file():
                archive.add(source / single, arcname=f"{name}/{single}")
        if extra:
            extra(archive)
    return target


ZOO_128 = FIXTURES / "doctor" / "zoo_fpnlite_128.config"


def shapes_version(db, actor, name: str, classes=("circle", "square"), sides=(14, 44), size=128,
                   count=40, seed=1):
    """A project of `count` generated `size`×`size` PNGs with 1–3 discs and squares of a side
    drawn from `sides` (pixels) each, every image labeled, exported as a TFRecord version."""
    from backend import annotations, dataset_versions, images, projects
    from backend.db import one

    project = projects.create_project(db, actor, name, list(classes))
    label_ids = {row["name"]: row["id"] for row in projects.list_labels(db, project["id"])}
    rng = random.Random(seed)
    scenes = []
    for _ in range(count):
        image = Image.new("RGB", (size, size), (120, 120, 120))
        draw = ImageDraw.Draw(image)
        objects = []
        for _ in range(rng.randint(1, 3)):
            side = rng.randint(*sides)
            x0, y0 = rng.randint(0, size - side), rng.randint(0, size - side)
            name_ = rng.choice(("circle", "square"))
            (draw.ellipse if name_ == "circle" else draw.rectangle)((x0, y0, x0 + side, y0 + side), fill=(220, 30, 30))
            objects.append((name_, (x0, y0, x0 + side, y0 + side)))
        out = io.BytesIO()
        image.save(out, format="PNG")
        scenes.append((out.getvalue(), objects))
    report = images.ingest(db, actor, project["id"], ((f"s{i:03d}.png", data) for i, (data, _) in enumerate(scenes)))
    for item, (_, objects) in zip(report.items, scenes):
        version = one(db, "select version from images where id = ?", [item.image_id])["version"]
        annotations.save_boxes(db, actor, item.image_id, [
            {"label_id": label_ids[c], "xmin": b[0], "ymin": b[1], "xmax": b[2], "ymax": b[3]} for c, b in objects],
            version, status="labeled")
    return dataset_versions.create_export(db, actor, project["id"], "tfrecord")


def small128_with_optimizer(optimizer: str, extra: str = "", num_steps: int | None = None) -> str:
    """The OD API's small128 fixture config with its `optimizer { }` block replaced by `optimizer`
    (and `extra` train_config lines after it), optionally with another `num_steps`."""
    text = (ODAPI_FIXTURES / "small128" / "pipeline.config").read_text()
    start, end = text.index("  optimizer {"), text.index("  num_steps:")
    text = text[:start] + optimizer + extra + text[end:]
    if num_steps is not None:
        text = re.sub(r"(?m)^  num_steps: \d+$", f"  num_steps: {num_steps}", text, count=1)
    return text
