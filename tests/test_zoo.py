"""Starting points from the TF2 model zoo: safe, complete tarballs only, stored once, listed,
pre-labeling through a class map, fine-tune configs, and the download path against a server on
127.0.0.1 (resuming, offline)."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from backend import model_registry, saved_configs, zoo
from backend.coco_classes import COCO_CLASSES
from backend.errors import Conflict, Invalid
from backend.config_document import ConfigDocument
from tests.helpers import ODAPI_FIXTURES, SHARED_TFOD, SMALL128, ZOO_NAME as NAME, needs_shared_tfod, zoo_tarball

def copy_model_parts(target: Path, source: Path = SMALL128, label_map: bool = True) -> Path:
    """`checkpoint/` and `saved_model/` of `source` copied under `target` (a tarball's folder to edit)."""
    import shutil
    for part in ("checkpoint", "saved_model"):
        shutil.copytree(source / part, target / part,
                        ignore=None if label_map else shutil.ignore_patterns("label_map.pbtxt"))
    return target


@pytest.fixture
def tarball(tmp_path):
    return zoo_tarball(tmp_path / f"{NAME}.tar.gz")


def member(archive: tarfile.TarFile, name: str, data: bytes = b"x", **fields) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    archive.addfile(info, io.BytesIO(data) if info.isfile() else None)


# ---------------------------------------------------------------- checking tarballs


def test_a_complete_zoo_tarball_is_listed_with_its_one_folder(tarball):
    contents = zoo.check_tarball(tarball)
    assert contents.name == NAME
    assert {"pipeline.config", "checkpoint/ckpt-0.index", "saved_model/saved_model.pb",
            "saved_model/variables/variables.index"} <= set(contents.files)
    assert contents.unpacked_bytes == sum(p.stat().st_size for part in ("checkpoint", "saved_model")
                                          for p in (SMALL128 / part).rglob("*") if p.is_file()) \
        + (SMALL128 / "pipeline.config").stat().st_size + (SMALL128 / "label_map.pbtxt").stat().st_size


@pytest.mark.parametrize("skip,missing", [
    (("checkpoint",), "checkpoint/ckpt-0.index, checkpoint/ckpt-0.data-* missing"),
    (("saved_model",), "saved_model/saved_model.pb, saved_model/variables/variables.index missing"),
    (("pipeline.config",), "pipeline.config missing"),
])
def test_a_partial_tarball_is_refused_naming_what_is_missing(tmp_path, skip, missing):
    with pytest.raises(Invalid, match="not a complete TF2 model-zoo tarball: " + missing.replace("*", r"\*")):
        zoo.check_tarball(zoo_tarball(tmp_path / "partial.tar.gz", skip=skip))


@pytest.mark.parametrize("add,reason", [
    (lambda a: member(a, f"{NAME}/../../escape.txt"), "reaches outside the folder"),
    (lambda a: member(a, "/etc/cron.d/evil"), "has an absolute path"),
    (lambda a: member(a, f"{NAME}/link", b"", type=tarfile.SYMTYPE, linkname="/etc/passwd"), "is a link"),
    (lambda a: member(a, f"{NAME}/hard", b"", type=tarfile.LNKTYPE, linkname=f"{NAME}/pipeline.config"),
     "is a link"),
    (lambda a: member(a, f"{NAME}/dev", b"", type=tarfile.CHRTYPE), "is not a file or folder"),
    (lambda a: member(a, "other/readme.txt"), "exactly one folder"),
])
def test_an_unsafe_tarball_is_refused(tmp_path, add, reason):
    with pytest.raises(Invalid, match=reason):
        zoo.check_tarball(zoo_tarball(tmp_path / "unsafe.tar.gz", extra=add))


def test_sizes_past_the_limit_and_damaged_archives_are_refused(tmp_path, tarball, monkeypatch):
    monkeypatch.setenv("BOXWISE_MAX_ZOO_BYTES", "1000")
    with pytest.raises(Invalid, match="unpacks to more than 0 MB"):
        zoo.check_tarball(tarball)
    monkeypatch.delenv("BOXWISE_MAX_ZOO_BYTES")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(tarball.read_bytes()[: tarball.stat().st_size // 2])
    with pytest.raises(Invalid, match="damaged or cut short"):
        zoo.check_tarball(cut)
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"this is not a tarball at all")
    with pytest.raises(Invalid, match="not a readable .tar.gz"):
        zoo.check_tarball(junk)


# ---------------------------------------------------------------- storing


def test_import_stores_once_by_content_and_lists_it(db, users, data_dir, tarball):
    reviewer = users["reviewer"]
    point = zoo.import_tarball(db, reviewer, tarball.read_bytes(), tarball.name, check_weights=False)
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    assert point["already_imported"] is False and point["sha256"] == digest
    assert Path(point["path"]) == data_dir / "zoo" / digest[:16] / NAME
    assert point["classes"] == {"1": "apple", "2": "banana", "3": "cherry"}
    assert (point["width"], point["height"], point["num_classes"]) == (128, 128, 3)
    assert point["architecture"] == "SSD ssd_mobilenet_v2_fpn_keras (depth multiplier 1)"
    assert Path(point["checkpoint"] + ".index").is_file() and (Path(point["saved_model"]) / "label_map.pbtxt").is_file()
    again = zoo.import_tarball(db, reviewer, io.BytesIO(tarball.read_bytes()), "copy.tar.gz", check_weights=False)
    assert again["already_imported"] is True and again["id"] == point["id"]
    assert [p["id"] for p in zoo.list_starting_points(db)] == [point["id"]]
    # nothing staged or half-unpacked is left behind
    assert sorted(p.name for p in (data_dir / "zoo").iterdir()) == [".incoming", digest[:16]]
    assert list((data_dir / "zoo" / ".incoming").iterdir()) == []


def test_a_refused_tarball_leaves_nothing_and_viewers_and_labelers_may_not_import(db, users, data_dir, tmp_path):
    partial = zoo_tarball(tmp_path / "partial.tar.gz", skip=("saved_model",))
    with pytest.raises(Invalid, match="saved_model/saved_model.pb"):
        zoo.import_tarball(db, users["admin"], partial.read_bytes(), "partial.tar.gz", check_weights=False)
    assert zoo.list_starting_points(db) == []
    assert [p.name for p in (data_dir / "zoo").iterdir()] == [".incoming"]
    for role in ("viewer", "labeler"):
        with pytest.raises(PermissionError):
            zoo.import_tarball(db, users[role], partial.read_bytes(), "partial.tar.gz", check_weights=False)


def test_a_zoo_config_of_another_architecture_is_refused_by_name(db, admin, tmp_path):
    other = copy_model_parts(tmp_path / "other")
    (other / "pipeline.config").write_text("model {\n  faster_rcnn {\n    num_classes: 90\n  }\n}\n")
    with pytest.raises(Invalid, match="this trainer cannot build the tarball's pipeline.config:\n- line 2: model.faster_rcnn"):
        zoo.import_tarball(db, admin, zoo_tarball(tmp_path / "rcnn.tar.gz", source=other).read_bytes(),
                           "rcnn.tar.gz", check_weights=False)


def test_a_server_path_outside_the_data_folder_is_refused_in_the_browser(db, users, tarball):
    for role in ("reviewer", "admin"):
        with pytest.raises(PermissionError, match="only paths inside the data folder"):
            zoo.import_tarball(db, users[role], str(tarball), check_weights=False)
    from backend.auth import CLI_ACTOR
    point = zoo.import_tarball(db, CLI_ACTOR, str(tarball), check_weights=False)
    assert point["filename"] == tarball.name


def test_remove_is_refused_while_a_model_uses_it(db, admin, project, tarball):
    point = zoo.import_tarball(db, admin, tarball.read_bytes(), tarball.name, check_weights=False)
    model = zoo.register_for_prelabel(db, admin, project["id"], point["id"], {"apple": "cat"})
    with pytest.raises(Conflict, match=f"model #{model['id']}"):
        zoo.remove_starting_point(db, admin, point["id"])
    db["models"].delete(model["id"])
    zoo.remove_starting_point(db, admin, point["id"])
    assert zoo.list_starting_points(db) == [] and not Path(point["path"]).exists()


# ---------------------------------------------------------------- pre-labeling and fine-tuning


def test_classes_map_by_name_ignoring_case_and_by_an_edited_mapping(db, admin, tarball):
    from backend import projects
    fruit = projects.create_project(db, admin, "fruit", ["Apple", "pear", "Cherry"])
    point = zoo.import_tarball(db, admin, tarball.read_bytes(), tarball.name, check_weights=False)
    assert zoo.default_class_mapping(db, fruit["id"], point["id"]) == {
        "apple": "Apple", "banana": None, "cherry": "Cherry"}
    model = zoo.register_for_prelabel(db, admin, fruit["id"], point["id"])
    ids = {r["name"]: r["label_map_id"] for r in db.query("select * from labels where project_id = ?", [fruit["id"]])}
    assert model["class_map"] == {1: ids["Apple"], 3: ids["Cherry"]}
    assert model["source"] == "zoo" and model["warnings"] == []
    edited = zoo.register_for_prelabel  # a user's own mapping: banana → pear, the rest dropped
    db["models"].delete(model["id"])
    model = edited(db, admin, fruit["id"], point["id"], {"banana": "pear", "apple": None})
    assert model["class_map"] == {2: ids["pear"]}
    with pytest.raises(Invalid, match="no class 'kiwi'"):
        zoo.register_for_prelabel(db, admin, fruit["id"], point["id"], {"kiwi": "pear"})
    with pytest.raises(Invalid, match="this project has no class 'plum'"):
        zoo.register_for_prelabel(db, admin, fruit["id"], point["id"], {"apple": "plum"})
    with pytest.raises(Invalid, match="no class of the starting point maps"):
        zoo.register_for_prelabel(db, admin, fruit["id"], point["id"], {"apple": None})


def test_a_coco_starting_point_gets_the_coco_label_map(db, admin, project, tmp_path):
    coco = copy_model_parts(tmp_path / "coco", label_map=False)
    doc = ConfigDocument.load(SMALL128 / "pipeline.config")
    doc.set("model.ssd.num_classes", 90)
    (coco / "pipeline.config").write_text(doc.text)
    point = zoo.import_tarball(db, admin, zoo_tarball(tmp_path / "coco.tar.gz", source=coco).read_bytes(),
                               "coco.tar.gz", check_weights=False)
    assert point["classes"] == {str(k): v for k, v in COCO_CLASSES.items()} and len(point["classes"]) == 80
    # the project's classes are cat, dog, bird: COCO has all three under ids 17, 18, 16
    assert {k: v for k, v in zoo.default_class_mapping(db, project["id"], point["id"]).items() if v} == {
        "cat": "cat", "dog": "dog", "bird": "bird"}


@needs_shared_tfod
def test_the_coco_classes_are_those_of_the_od_apis_coco_label_map():
    from backend.formats import label_map
    shipped = label_map.read(SHARED_TFOD / "label_maps" / "mscoco_label_map.pbtxt")
    assert {item.id: item.display_name for item in shipped.items} == COCO_CLASSES


def test_fine_tune_text_takes_the_model_from_the_starting_point_and_points_at_its_checkpoint(db, admin, tarball):
    point = zoo.import_tarball(db, admin, tarball.read_bytes(), tarball.name, check_weights=False)
    quick = saved_configs.templates()["quick"]
    text = zoo.fine_tune_text(db, quick, point["id"])
    doc, source = ConfigDocument(text), ConfigDocument.load(SMALL128 / "pipeline.config")
    assert doc.get("train_config.fine_tune_checkpoint") == point["checkpoint"]
    assert doc.get("train_config.fine_tune_checkpoint_type") == "detection"
    for field in ("model.ssd.image_resizer.fixed_shape_resizer.height", "model.ssd.feature_extractor.depth_multiplier",
                  "model.ssd.anchor_generator.multiscale_anchor_generator.anchor_scale",
                  "model.ssd.box_predictor.weight_shared_convolutional_box_predictor.depth"):
        assert doc.get(field) == source.get(field), field
    assert doc.get("model.ssd.num_classes") == ConfigDocument(quick).get("model.ssd.num_classes")
    assert doc.get("train_config.batch_size") == ConfigDocument(quick).get("train_config.batch_size")


# ---------------------------------------------------------------- downloading


class ZooServer(BaseHTTPRequestHandler):
    """Serves one tarball with Range support; `cut_after` bytes the first time, then all."""
    body = b""
    cut_after: int | None = None
    requests: list[str | None] = []

    def do_GET(self):
        type(self).requests.append(self.headers.get("Range"))
        if not self.path.endswith(f"/{NAME}.tar.gz"):
            self.send_error(404)
            return
        start = int(self.headers["Range"][6:-1]) if self.headers.get("Range") else 0
        data = self.body[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if type(self).cut_after is not None:
            self.wfile.write(data[: type(self).cut_after])
            type(self).cut_after = None
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def zoo_server(tarball, monkeypatch):
    ZooServer.body = tarball.read_bytes()
    ZooServer.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), ZooServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv(zoo.ZOO_URL_ENV, f"http://127.0.0.1:{server.server_port}/models/")
    yield ZooServer
    server.shutdown()


def test_download_resumes_a_broken_transfer_and_imports_the_tarball(db, admin, data_dir, zoo_server, monkeypatch):
    zoo_server.cut_after = 4096
    seen = []
    with pytest.raises(Invalid, match="run the download again to resume it"):
        zoo.download(db, admin, NAME, progress=lambda done, total: seen.append((done, total)))
    part = data_dir / "zoo" / "downloads" / f"{NAME}.tar.gz.part"
    assert part.stat().st_size == 4096
    monkeypatch.setattr(zoo, "check_checkpoint", lambda config, prefix: {"summary": "stand-in"})
    point = zoo.download(db, admin, NAME, progress=lambda done, total: seen.append((done, total)))
    assert zoo_server.requests == [None, "bytes=4096-"]
    assert seen[-1] == (len(zoo_server.body), len(zoo_server.body))
    assert point["sha256"] == hashlib.sha256(zoo_server.body).hexdigest() and point["restore"] == {"summary": "stand-in"}
    assert list((data_dir / "zoo" / "downloads").iterdir()) == []


def test_download_offline_says_so_and_points_to_the_manual_import(db, admin, monkeypatch):
    monkeypatch.setenv(zoo.ZOO_URL_ENV, "http://127.0.0.1:9/models/")  # the discard port: nothing listens
    with pytest.raises(Invalid) as caught:
        zoo.download(db, admin, NAME, timeout=5)
    message = str(caught.value)
    assert message.startswith(f"cannot reach the model zoo (http://127.0.0.1:9/models/{NAME}.tar.gz)")
    assert "may be offline" in message and "python -m backend zoo import FILE" in message


def test_download_refuses_other_zoo_names_before_any_request(db, admin, zoo_server):
    with pytest.raises(Invalid, match="not a zoo detector this trainer builds"):
        zoo.download(db, admin, "faster_rcnn_resnet50_v1_640x640_coco17_tpu-8")
    assert zoo_server.requests == []


def test_cli_import_list_register_and_remove(data_dir, db, admin, project, tarball, capsys, monkeypatch):
    from backend.__main__ import main
    monkeypatch.setattr(zoo, "check_checkpoint", lambda config, prefix: {"summary": "stand-in report"})
    assert main(["zoo", "import", str(tarball)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("imported #1 " + NAME) and "128×128, 3 classes" in out and "checkpoint: stand-in report" in out
    assert main(["zoo", "list", "--json"]) == 0
    assert [p["name"] for p in json.loads(capsys.readouterr().out)] == [NAME]
    assert main(["zoo", "register", "1", "--project", "pets", "--map", "apple=cat"]) == 0
    assert "1 classes mapped" in capsys.readouterr().out
    assert main(["zoo", "remove", "1"]) == 5  # conflict: the model uses it
    assert "is used by model #1" in capsys.readouterr().err
    model_rows = model_registry.list_models(db, project["id"])
    assert [m["class_map"] for m in model_rows] == [{1: 1}]


# ---------------------------------------------------------------- "start from" (Configs and Runs pages)


def test_start_from_scratch_a_run_or_a_starting_point(db, admin, project, data_dir, tarball):
    from backend import run_lifecycle
    point = zoo.import_tarball(db, admin, tarball.read_bytes(), tarball.name, check_weights=False)
    quick = saved_configs.set_fine_tune_checkpoint(saved_configs.templates()["quick"], "/old/ckpt-3", "classification")
    scratch = ConfigDocument(zoo.start_from(db, quick, "scratch"))
    with pytest.raises(Exception, match="not in the config"):
        scratch.get("train_config.fine_tune_checkpoint")
    assert zoo.start_from(db, quick, "config") == quick
    run = run_lifecycle._insert_run(db, admin, project["id"], kind="train", text=quick)
    with pytest.raises(Invalid, match=f"run {run['id']} has no checkpoint yet"):
        zoo.start_from(db, quick, "run", run["id"])
    for suffix in ("index", "data-00000-of-00001"):
        (Path(run["model_dir"]) / f"ckpt-7.{suffix}").write_bytes(b"x")
    (Path(run["model_dir"]) / "checkpoint").write_text('model_checkpoint_path: "ckpt-7"\n')
    from_run = ConfigDocument(zoo.start_from(db, quick, "run", run["id"]))
    assert from_run.get("train_config.fine_tune_checkpoint") == str(Path(run["model_dir"]) / "ckpt-7")
    assert from_run.get("train_config.fine_tune_checkpoint_type") == "detection"
    from_point = ConfigDocument(zoo.start_from(db, quick, "starting_point", point["id"]))
    assert from_point.get("train_config.fine_tune_checkpoint") == point["checkpoint"]
    assert from_point.get("model.ssd.feature_extractor.depth_multiplier") == 1.0  # the starting point's, not quick's
    assert [c[:2] for c in zoo.start_from_choices(db, project["id"])] == [
        ("config", None), ("scratch", None), ("run", run["id"]), ("starting_point", point["id"])]


def test_a_run_started_from_a_starting_point_trains_its_architecture_from_its_checkpoint(
        db, admin, project, data_dir, tarball, monkeypatch):
    from backend import run_lifecycle
    from tests.helpers import make_dataset_version
    monkeypatch.setattr(run_lifecycle, "pump_queue", lambda db: [])  # keep the run queued: only its config matters here
    point = zoo.import_tarball(db, admin, tarball.read_bytes(), tarball.name, check_weights=False)
    export_id = make_dataset_version(db, project, data_dir)
    saved = saved_configs.save_config(db, admin, project["id"], "quick", saved_configs.templates()["quick"])
    run = run_lifecycle.start_run(db, admin, project["id"], export_id=export_id, config_id=saved["id"],
                         start_from=("starting_point", point["id"]))
    text = ConfigDocument.load(Path(run["model_dir"]) / "pipeline.config")
    assert run["fine_tune_checkpoint"] == point["checkpoint"]
    assert text.get("train_config.fine_tune_checkpoint") == point["checkpoint"]
    assert text.get("model.ssd.num_classes") == 3  # from the dataset version
    assert text.get("model.ssd.image_resizer.fixed_shape_resizer.height") == 128
    assert text.get("model.ssd.feature_extractor.depth_multiplier") == 1.0


def test_the_starting_points_page_lists_maps_and_registers(db, users, project, tarball):
    from tests.helpers import signed_in
    zoo.import_tarball(db, users["admin"], tarball.read_bytes(), tarball.name, check_weights=False)
    at = signed_in(db, "reviewer", "pages/zoo.py")
    table = at.dataframe[0].value
    assert list(table["name"]) == [NAME] and list(table["input"]) == ["128×128"] and list(table["classes"]) == [3]
    assert [t.label for t in at.tabs] == ["Upload a tarball", "A tarball on the server", "Download from the TF2 model zoo",
                                         "Pre-label this project", "Fine-tune from it", "Remove"]
    next(b for b in at.button if b.label == "Register and pre-label").click().run()
    # the project's classes are cat, dog, bird: no fruit maps by name, so nothing is registered
    assert [e.value for e in at.error] == ["no class of the starting point maps to a class of this project: "
                                           "map at least one (e.g. person → pedestrian)"]
    assert model_registry.list_models(db, project["id"]) == []
    viewer = signed_in(db, "viewer", "pages/zoo.py")
    assert not viewer.tabs and list(viewer.dataframe[0].value["name"]) == [NAME]  # viewers see the list only


@pytest.mark.slow
def test_prelabeling_with_a_starting_point_drafts_only_mapped_classes(db, admin, data_dir, tarball):
    from backend import demo, predictions, projects
    project = demo.create_demo_project(db, admin, count=8)
    point = zoo.import_tarball(db, admin, tarball.read_bytes(), tarball.name, check_weights=False)
    model = zoo.register_for_prelabel(db, admin, project["id"], point["id"], {"apple": "circle", "banana": None})
    result = predictions.predict_project(db, admin, project["id"], model_id=model["id"], min_score=0.0)
    circle = projects.label_by_name(db, project["id"], "circle")["id"]
    drafts = list(db.query("select label_id from annotations where source = 'model'"))
    assert result["state"] == "done" and result["drafts"] == len(drafts) > 0
    assert {d["label_id"] for d in drafts} == {circle}


@pytest.mark.slow
def test_the_zoo_models_tarball_imports_with_its_checkpoint_checked_by_the_trainer(
        db, admin, tmp_path, odapi_boxwise_export):
    """The zoo's own layout: zoo320's checkpoint/ckpt-0 and pipeline.config (written by the OD
    API), with a SavedModel exported from that checkpoint (Boxwise's export of it, made once per
    session in tests/conftest.py), as the zoo ships one."""
    zoo320 = ODAPI_FIXTURES / "zoo320"
    folder = tmp_path / NAME
    (folder / "checkpoint").mkdir(parents=True)
    for path in (zoo320 / "checkpoint").iterdir():
        (folder / "checkpoint" / path.name).write_bytes(path.read_bytes())
    (folder / "pipeline.config").write_bytes((zoo320 / "pipeline.config").read_bytes())
    exported = odapi_boxwise_export("zoo320")
    (folder / "saved_model").mkdir()
    for path in (exported / "saved_model").rglob("*"):
        if path.is_file():
            target = folder / "saved_model" / path.relative_to(exported / "saved_model")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    tarball = tmp_path / f"{NAME}.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(folder, arcname=NAME)
    point = zoo.import_tarball(db, admin, tarball.read_bytes(), tarball.name)
    assert (point["width"], point["height"], point["num_classes"], len(point["classes"])) == (320, 320, 90, 80)
    report = point["restore"]
    assert (report["restored"], report["variables"]) == (384, 384)
    assert report["parts"]["backbone"]["restored"] == report["parts"]["backbone"]["variables"] == 260
    assert report["summary"].startswith(f"detection restore from {point['checkpoint']} ")
    assert "384 of 384 variables" in report["summary"]


@pytest.mark.slow
def test_a_tarball_whose_checkpoint_does_not_fit_its_config_is_refused(db, admin, tmp_path):
    """small128's checkpoint under a config of another width: the trainer's refusal, nothing kept."""
    other = copy_model_parts(tmp_path / "other")
    doc = ConfigDocument.load(SMALL128 / "pipeline.config")
    doc.set("model.ssd.feature_extractor.depth_multiplier", 0.5)
    (other / "pipeline.config").write_text(doc.text)
    with pytest.raises(Invalid, match="the checkpoint does not load into the config's network: "):
        zoo.import_tarball(db, admin, zoo_tarball(tmp_path / "misfit.tar.gz", source=other).read_bytes(),
                           "misfit.tar.gz")
    assert zoo.list_starting_points(db) == []
