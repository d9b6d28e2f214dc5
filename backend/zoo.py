"""Starting points: TF2 model-zoo detectors kept once, to pre-label with and to fine-tune from.

A zoo tarball (`ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8.tar.gz`) holds one folder
`<name>/` with `checkpoint/ckpt-0.*`, `saved_model/` and `pipeline.config`. Importing one
checks it before anything is kept:

- the archive is safe: no absolute paths, no `..`, no links or device files, at most
  `MAX_MEMBERS` entries and `max_bytes()` unpacked (counted while writing, not from headers);
- it is complete: every one of `REQUIRED` is there;
- the config is one this trainer builds (`config_check.check`);
- the SavedModel has the detection signature (`model_registry.inspect_export`);
- the checkpoint loads into that network (`training.restore`, in a child process so
  TensorFlow stays out of the dashboard).

It is then stored once, content-addressed by the tarball's sha256, under
`data/zoo/<sha256[:16]>/<name>/`, with the COCO label map written beside the SavedModel when
the tarball has none (the zoo ships none), and listed in the `starting_points` table.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable

import sqlite_utils

from backend import settings
from backend.auth import require
from backend.coco_classes import COCO_CLASSES, COCO_NUM_CLASSES, coco_label_map_text
from backend.db import now, one, transaction
from backend.errors import Conflict, Invalid, NotFound

# Where the TF2 detection zoo's tarballs are published (`<base><name>.tar.gz`).
DEFAULT_ZOO_URL = "http://download.tensorflow.org/models/object_detection/tf2/20200711/"
ZOO_URL_ENV = "BOXWISE_ZOO_URL"
# Zoo detectors this trainer builds (SSD, MobileNetV2 + FPN-lite). Other zoo names are refused
# before anything is downloaded.
ZOO_NAMES = ("ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8", "ssd_mobilenet_v2_fpnlite_640x640_coco17_tpu-8")

REQUIRED = ("pipeline.config", "checkpoint/ckpt-0.index", "checkpoint/ckpt-0.data-*",
            "saved_model/saved_model.pb", "saved_model/variables/variables.index")
MAX_MEMBERS = 10_000
CHUNK = 1 << 20


def max_bytes() -> int:
    """The largest unpacked size of a tarball (`BOXWISE_MAX_ZOO_BYTES`, default 2 GiB)."""
    return int(os.environ.get("BOXWISE_MAX_ZOO_BYTES", 2 * 1024**3))


def zoo_url() -> str:
    base = os.environ.get(ZOO_URL_ENV) or DEFAULT_ZOO_URL
    return base if base.endswith("/") else base + "/"


# ---------------------------------------------------------------- the archive


@dataclass(frozen=True)
class TarballContents:
    name: str                 # the one top-level folder
    files: dict[str, int]     # path inside `name/` → size in bytes (regular files only)

    @property
    def unpacked_bytes(self) -> int:
        return sum(self.files.values())


def _open_tar(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, mode="r:*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise Invalid(f"not a readable .tar.gz: {exc}") from None


def check_tarball(path: str | Path) -> TarballContents:
    """List a zoo tarball and refuse it when it is unsafe or incomplete (`Invalid`, saying why)."""
    path = Path(path)
    files: dict[str, int] = {}
    tops: set[str] = set()
    total = 0
    with _open_tar(path) as archive:
        try:
            for count, member in enumerate(archive, start=1):
                if count > MAX_MEMBERS:
                    raise Invalid(f"the tarball has more than {MAX_MEMBERS} entries")
                raw = member.name.replace("\\", "/")
                parts = [p for p in PurePosixPath(raw).parts if p not in ("", ".")]
                if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
                    raise Invalid(f"entry {member.name!r} has an absolute path")
                if ".." in parts:
                    raise Invalid(f"entry {member.name!r} reaches outside the folder ('..')")
                if member.issym() or member.islnk():
                    raise Invalid(f"entry {member.name!r} is a link")
                if not (member.isfile() or member.isdir()):
                    raise Invalid(f"entry {member.name!r} is not a file or folder")
                if not parts:
                    continue
                tops.add(parts[0])
                if member.isfile():
                    total += member.size
                    if total > max_bytes():
                        raise Invalid(f"the tarball unpacks to more than {max_bytes() / 1024**2:.0f} MB")
                    if len(parts) > 1:
                        files["/".join(parts[1:])] = member.size
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise Invalid(f"the tarball is damaged or cut short: {exc}") from None
    if len(tops) != 1:
        raise Invalid("a zoo tarball holds exactly one folder (<name>/checkpoint, saved_model, "
                      f"pipeline.config); this one has {len(tops)} top-level entries")
    missing = [need for need in REQUIRED if not any(PurePosixPath(f).match(need) for f in files)]
    if missing:
        raise Invalid(f"not a complete TF2 model-zoo tarball: {', '.join(missing)} missing")
    return TarballContents(tops.pop(), files)


def _extract(path: Path, contents: TarballContents, target: Path) -> None:
    """Unpack the checked tarball's regular files into `target`, counting bytes as written."""
    written = 0
    with _open_tar(path) as archive:
        for member in archive:
            if not member.isfile():
                continue
            parts = [p for p in PurePosixPath(member.name.replace("\\", "/")).parts if p not in ("", ".")]
            destination = target.joinpath(*parts)
            destination.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(member)
            if source is None:
                continue
            with source, open(destination, "wb") as out:
                while chunk := source.read(CHUNK):
                    written += len(chunk)
                    if written > max_bytes():
                        raise Invalid(f"the tarball unpacks to more than {max_bytes() / 1024**2:.0f} MB "
                                      "(more than its headers say)")
                    out.write(chunk)
            os.chmod(destination, 0o644)  # nothing unpacked is ever executable


# ---------------------------------------------------------------- checking the model


def describe_config(config_path: Path) -> dict:
    """Architecture, input size and classes of a zoo `pipeline.config`; `Invalid` listing the
    problems when this trainer cannot build it."""
    from backend import config_check
    from backend.config_document import ConfigDocument

    doc = ConfigDocument.load(config_path)
    problems = config_check.check(doc.text, files=False)
    if problems:
        raise Invalid("this trainer cannot build the tarball's pipeline.config:\n"
                      + "\n".join(f"- {p}" for p in problems))

    def get(path, default=None):
        try:
            return doc.get(path)
        except Exception:  # noqa: BLE001 - an absent field keeps its default
            return default

    ssd = "model.ssd"
    height = get(f"{ssd}.image_resizer.fixed_shape_resizer.height")
    width = get(f"{ssd}.image_resizer.fixed_shape_resizer.width")
    if height is None:
        side = get(f"{ssd}.image_resizer.keep_aspect_ratio_resizer.max_dimension")
        height = width = side
    extractor = get(f"{ssd}.feature_extractor.type", "")
    depth_multiplier = get(f"{ssd}.feature_extractor.depth_multiplier", 1.0)
    return {"architecture": f"SSD {extractor} (depth multiplier {depth_multiplier:g})",
            "feature_extractor": extractor, "height": height, "width": width,
            "num_classes": int(get(f"{ssd}.num_classes", 0) or 0)}


def check_checkpoint(config_path: Path, checkpoint_prefix: Path) -> dict:
    """Restore `checkpoint_prefix` into the network `config_path` builds, in a child process,
    and return the restore report. `Invalid` with the trainer's message when it does not fit."""
    command = [sys.executable, "-m", "backend", "zoo", "check-checkpoint", str(config_path),
               str(checkpoint_prefix)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
                          cwd=Path(__file__).resolve().parent.parent, timeout=600)
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.startswith("error:")]
        reason = lines[-1][len("error:"):].strip() if lines else (done.stderr.strip().splitlines() or ["?"])[-1]
        raise Invalid(f"the checkpoint does not load into the config's network: {reason}")
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise Invalid("the checkpoint check printed no report") from None


def restore_report(config_path: str | Path, checkpoint_prefix: str | Path) -> dict:
    """What `check_checkpoint` runs in the child: build the config's network and restore the
    checkpoint into it as a `detection` fine-tune does; the trainer's restore report, with
    counts per part (the per-variable lists are left out)."""
    from backend.config_document import ConfigDocument
    from backend.training.training_config import training_config
    from backend.training.network import build_detector
    from backend.training.restore import restore_detection
    from backend.training.train import replace_fine_tune_for_inference

    config = training_config(replace_fine_tune_for_inference(ConfigDocument.load(config_path)))
    report = restore_detection(build_detector(config.model), str(checkpoint_prefix))
    kept = {k: v for k, v in report.to_dict().items() if k not in ("fresh", "unused")}
    return {**kept, "summary": report.summary()}


# ---------------------------------------------------------------- storing


def _folder(row: dict) -> Path:
    return Path(row["path"])


def _decorate(row: dict) -> dict:
    folder = _folder(row)
    return {**row, "classes": json.loads(row.get("classes") or "{}"),
            "restore": json.loads(row.get("restore") or "{}"),
            "size_mb": round((row.get("size_bytes") or 0) / 1024**2, 1),
            "checkpoint": str(folder / "checkpoint" / "ckpt-0"),
            "saved_model": str(folder / "saved_model"),
            "pipeline_config": str(folder / "pipeline.config"),
            "available": (folder / "checkpoint" / "ckpt-0.index").is_file()}


def get_starting_point(db: sqlite_utils.Database, starting_point_id: int) -> dict:
    row = one(db, "select * from starting_points where id = ?", [starting_point_id])
    if row is None:
        raise NotFound(f"no starting point with id {starting_point_id}")
    return _decorate(row)


def list_starting_points(db: sqlite_utils.Database) -> list[dict]:
    """Every starting point, newest first."""
    return [_decorate(r) for r in db.query("select * from starting_points order by created_at desc, id desc")]


def import_tarball(db: sqlite_utils.Database, actor: dict, source: str | Path | bytes | BinaryIO,
                   filename: str | None = None, *, name: str | None = None,
                   check_weights: bool = True) -> dict:
    """Check and store a zoo tarball (a file on the server, or the bytes of an upload); the
    same tarball again returns the stored one (`already_imported: True`). Nothing is kept
    when the tarball is refused."""
    require(actor, "train")
    incoming_dir = settings.subdir("zoo") / ".incoming"
    incoming_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(6)
    staged: Path | None = None
    if isinstance(source, (str, os.PathLike)):
        path = _server_path(actor, source)
        filename = filename or path.name
    else:
        staged = path = incoming_dir / f"{token}.tar"
        with open(staged, "wb") as out:
            if isinstance(source, (bytes, bytearray)):
                out.write(source)
            else:
                while chunk := source.read(CHUNK):
                    out.write(chunk)
    unpacked = settings.subdir("zoo") / f".tmp-{token}"
    try:
        from backend.dataset_versions import sha256_file
        digest = sha256_file(path)
        existing = one(db, "select * from starting_points where sha256 = ?", [digest])
        if existing:
            return {**_decorate(existing), "already_imported": True}
        contents = check_tarball(path)
        _extract(path, contents, unpacked)
        model_folder = unpacked / contents.name
        described = describe_config(model_folder / "pipeline.config")
        label_map_path = model_folder / "saved_model" / "label_map.pbtxt"
        classes: dict[int, str] = {}
        found_label_map = next((p for p in (model_folder / "label_map.pbtxt", label_map_path) if p.is_file()), None)
        if found_label_map is not None:
            from backend.formats import label_map as label_map_format
            parsed = label_map_format.read(found_label_map)
            classes = {item.id: parsed.class_name(item) for item in parsed.items}
            if found_label_map != label_map_path:
                shutil.copyfile(found_label_map, label_map_path)
        elif described["num_classes"] == COCO_NUM_CLASSES:
            label_map_path.write_text(coco_label_map_text(), encoding="utf-8")
            classes = dict(COCO_CLASSES)
        from backend.model_registry import inspect_export
        inspect_export(model_folder)
        report = check_checkpoint(model_folder / "pipeline.config", model_folder / "checkpoint" / "ckpt-0") \
            if check_weights else {}
        final = settings.subdir("zoo") / digest[:16]
        if final.exists():
            shutil.rmtree(final)
        os.replace(unpacked, final)
        # The check ran on the unpacked copy: name the stored checkpoint in its report.
        report = json.loads(json.dumps(report).replace(str(unpacked), str(final)))
        row = {"name": (name or "").strip() or contents.name, "sha256": digest, "path": str(final / contents.name),
               "filename": filename or contents.name, "architecture": described["architecture"],
               "height": described["height"], "width": described["width"],
               "num_classes": described["num_classes"], "classes": json.dumps(classes),
               "size_bytes": contents.unpacked_bytes, "restore": json.dumps(report),
               "created_at": now(), "created_by": actor.get("id")}
        with transaction(db):
            new_id = db["starting_points"].insert(row).last_pk
        return {**get_starting_point(db, new_id), "already_imported": False}
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)
        if staged is not None:
            staged.unlink(missing_ok=True)


def _server_path(actor: dict, source: str | os.PathLike) -> Path:
    """A tarball named by a path on the server: inside the data folder (or the admin's
    allow-list) for everyone (`paths.confine`)."""
    from backend.paths import confine
    path = confine(source, actor, "import")
    if not path.is_file():
        raise NotFound(f"no file {str(source)!r}")
    return path


def remove_starting_point(db: sqlite_utils.Database, actor: dict, starting_point_id: int) -> None:
    """Delete a starting point and its files; refused while a model of some project uses it."""
    require(actor, "train")
    point = get_starting_point(db, starting_point_id)
    users = list(db.query("select m.id, m.name, p.name as project from models m join projects p "
                          "on p.id = m.project_id where m.path = ?", [point["path"]]))
    if users:
        named = ", ".join(f"model #{u['id']} {u['name']!r} in {u['project']!r}" for u in users)
        raise Conflict(f"starting point {point['name']!r} is used by {named}: remove those models first")
    with transaction(db):
        db["starting_points"].delete(starting_point_id)
    shutil.rmtree(Path(point["path"]).parent, ignore_errors=True)


# ---------------------------------------------------------------- pre-labeling with it


def default_class_mapping(db: sqlite_utils.Database, project_id: int, starting_point_id: int) -> dict[str, str | None]:
    """`{model class name: project class name or None}`: classes of the same name (case does
    not matter) map to each other, every other model class is dropped."""
    point = get_starting_point(db, starting_point_id)
    project_names = {r["name"].casefold(): r["name"] for r in db.query(
        "select name from labels where project_id = ?", [project_id])}
    return {name: project_names.get(name.casefold()) for name in point["classes"].values()}


def register_for_prelabel(db: sqlite_utils.Database, actor: dict, project_id: int, starting_point_id: int,
                          mapping: dict[str, str | None] | None = None) -> dict:
    """Put the starting point's SavedModel into the project's model registry, with its classes
    mapped to the project's (`mapping`, default `default_class_mapping`). Returns the model row."""
    from backend import model_registry
    require(actor, "train")
    point = get_starting_point(db, starting_point_id)
    mapping = default_class_mapping(db, project_id, starting_point_id) if mapping is None else mapping
    labels = {r["name"]: r["label_map_id"] for r in db.query(
        "select name, label_map_id from labels where project_id = ?", [project_id])}
    by_name = {name: model_id for model_id, name in point["classes"].items()}
    unknown_model = sorted(set(mapping) - set(by_name))
    unknown_project = sorted({v for v in mapping.values() if v} - set(labels))
    if unknown_model:
        raise Invalid(f"the starting point has no class {', '.join(map(repr, unknown_model))}")
    if unknown_project:
        raise Invalid(f"this project has no class {', '.join(map(repr, unknown_project))}")
    class_map = {int(by_name[name]): labels[target] for name, target in mapping.items() if target}
    if not class_map:
        raise Invalid("no class of the starting point maps to a class of this project: map at least one "
                      "(e.g. person → pedestrian)")
    model = model_registry.register_directory(db, actor, project_id, point["path"], name=f"{point['name']} (zoo)",
                                      source="zoo", origin=point["filename"], class_map=class_map)
    return model


# ---------------------------------------------------------------- fine-tuning from it


def fine_tune_text(db: sqlite_utils.Database, text: str, starting_point_id: int) -> str:
    """`text` starting from the starting point: its whole `model { }` (architecture, input
    size) replaces the config's, `num_classes` stays the config's, and `fine_tune_checkpoint`
    points at its `checkpoint/ckpt-0` as a `detection` checkpoint."""
    from backend.config_document import ConfigDocument
    from backend import saved_configs
    point = get_starting_point(db, starting_point_id)
    source = ConfigDocument.load(point["pipeline_config"])
    doc = ConfigDocument(text)
    num_classes = None
    try:
        num_classes = doc.get("model.ssd.num_classes")
    except Exception:  # noqa: BLE001 - a config without one takes the starting point's
        pass
    theirs = source.tree.field("model")
    ours = doc.tree.field("model")
    if theirs is None:
        raise Invalid(f"starting point {point['name']!r} has no model in its pipeline.config")
    model_text = source.text[theirs.value_start:theirs.value_end]
    if ours is None:
        new_text = f"model {model_text}\n" + doc.text
    else:
        new_text = doc.text[:ours.value_start] + model_text + doc.text[ours.value_end:]
    doc = ConfigDocument(new_text)
    if num_classes:
        doc.set("model.ssd.num_classes", num_classes)
    return saved_configs.set_fine_tune_checkpoint(doc.text, point["checkpoint"], "detection")


# ---------------------------------------------------------------- downloading


def download(db: sqlite_utils.Database, actor: dict, name: str, *,
             progress: Callable[[int, int | None], None] | None = None, timeout: float = 30.0) -> dict:
    """Fetch the zoo's tarball for `name` (resuming a partial download), check and import it.

    `progress(done_bytes, total_bytes or None)` is called as bytes arrive. Offline or when the
    server refuses, `Invalid` says so and points to the manual import."""
    require(actor, "train")
    if name not in ZOO_NAMES:
        raise Invalid(f"{name!r} is not a zoo detector this trainer builds; choose one of: {', '.join(ZOO_NAMES)}")
    url = f"{zoo_url()}{name}.tar.gz"
    folder = settings.subdir("zoo") / "downloads"
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f"{name}.tar.gz.part"
    done = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and done:  # the part file is already complete
            response = None
        else:
            raise Invalid(f"the model zoo refused {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Invalid(f"cannot reach the model zoo ({url}): {reason}. This machine may be offline: download "
                      f"{name}.tar.gz elsewhere and import it (Starting points → Import, or "
                      "python -m backend zoo import FILE)") from None
    if response is not None:
        with response:
            resumed = response.status == 206
            if not resumed:
                done = 0
            length = response.headers.get("Content-Length")
            total = done + int(length) if length and length.isdigit() else None
            with open(part, "ab" if resumed else "wb") as out:
                while True:
                    try:
                        chunk = response.read(CHUNK)
                    except OSError as exc:
                        raise Invalid(f"the download of {name} broke off at {done / 1024**2:.1f} MB ({exc}); "
                                      "run the download again to resume it") from None
                    if not chunk:
                        break
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
            if total is not None and done != total:
                raise Invalid(f"the download of {name} stopped at {done} of {total} bytes; "
                              "run the download again to resume it")
    finished = folder / f"{name}.tar.gz"
    os.replace(part, finished)
    try:
        return import_tarball(db, actor, finished, filename=finished.name)
    except Invalid:
        finished.unlink(missing_ok=True)  # a bad download must not be resumed from
        raise
    finally:
        finished.unlink(missing_ok=True)


# ---------------------------------------------------------------- "start from" on the Configs and Runs pages

START_FROM = ("config", "scratch", "run", "starting_point")


def start_from(db: sqlite_utils.Database, text: str, source: str, ident: int | None = None) -> str:
    """`text` set to start training from `source`: `config` (as written), `scratch` (no
    `fine_tune_checkpoint`), `run` (run `ident`'s latest checkpoint, as a detection fine-tune)
    or `starting_point` (`fine_tune_text`)."""
    from backend import run_artefacts, run_lifecycle, saved_configs
    from backend.config_document import ConfigDocument

    if source == "config":
        return text
    if source == "scratch":
        doc = ConfigDocument(text)
        for field in ("train_config.fine_tune_checkpoint", "train_config.fine_tune_checkpoint_type"):
            try:
                doc.remove(field)
            except Exception:  # noqa: BLE001 - absent already
                pass
        return doc.text
    if source == "run":
        run = run_lifecycle.get_run(db, int(ident))
        checkpoint = run_artefacts.latest_checkpoint(run["model_dir"]) if run.get("model_dir") else None
        if checkpoint is None:
            raise Invalid(f"run {ident} has no checkpoint yet to start from")
        return saved_configs.set_fine_tune_checkpoint(text, checkpoint, "detection")
    if source == "starting_point":
        return fine_tune_text(db, text, int(ident))
    raise Invalid(f"start from {source!r}? choose one of: {', '.join(START_FROM)}")


def start_from_choices(db: sqlite_utils.Database, project_id: int) -> list[tuple[str, int | None, str]]:
    """What a run of the project can start from, as `(source, id, title)`: the config as
    written, scratch, each training run of the project with a checkpoint, each starting point."""
    from backend import run_artefacts, run_lifecycle
    choices: list[tuple[str, int | None, str]] = [("config", None, "as the config says"), ("scratch", None, "scratch")]
    for run in run_lifecycle.list_runs(db, project_id):
        if run.get("kind") == "train" and run.get("model_dir") and run_artefacts.latest_checkpoint(run["model_dir"]):
            choices.append(("run", run["id"], f"run #{run['id']}'s latest checkpoint"))
    for point in list_starting_points(db):
        choices.append(("starting_point", point["id"], f"starting point #{point['id']} {point['name']}"))
    return choices
