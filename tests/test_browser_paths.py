"""Least privilege for paths, after issue 12: every path a signed-in user supplies (admins
included) resolves inside the data folder or an operator's read-only allowed folder; only the
command line (`CLI_ACTOR`) may use any path. TFRecord uploads open only for their uploader, and
non-admins see paths relative to the data folder."""
from __future__ import annotations

import os

import pytest

from backend import auth, config_check, dataset_versions, importers, model_registry, paths, record_browser, zoo
from backend.auth import CLI_ACTOR
from pages import common
from tests.helpers import CONFIG, add_image, button, image_bytes, signed_in


@pytest.fixture
def outside(tmp_path):
    """A folder outside the data folder with an image and a record-like file in it."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "private.png").write_bytes(image_bytes((40, 30), (1, 2, 3), fmt="PNG"))
    (folder / "train.record").write_bytes(b"\x00" * 16)
    (folder / "label_map.pbtxt").write_text("item { id: 1 name: 'secret' }\n")
    return folder


def _escapes(data_dir, outside):
    """One way each to name `outside` from the browser: absolute, `..`, a symlink, a glob
    through a symlinked folder."""
    link = data_dir / "link"
    os.symlink(outside, link)
    return {"absolute": str(outside / "train.record"),
            "dotdot": str(data_dir / ".." / "outside" / "train.record"),
            "symlink": str(link / "train.record"),
            "glob": str(data_dir / "lin*" / "train.rec*")}


@pytest.mark.parametrize("role", ["admin", "reviewer", "viewer"])
@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink", "glob"])
def test_no_browser_user_reaches_outside_the_data_folder(db, users, data_dir, outside, role, how):
    typed = _escapes(data_dir, outside)[how]
    with pytest.raises(PermissionError) as refused:
        record_browser.inspect(users[role], typed)
    named = str(data_dir / "link" / "train.record") if how == "glob" else typed  # a glob: the file it matched
    assert str(refused.value) == (f"{role} ({role}) may not open the record set {named!r}: only paths inside "
                                  "the data folder can be used from the browser")


@pytest.mark.parametrize("purpose", sorted(paths.PURPOSES))
def test_the_command_line_keeps_any_path_a_browser_admin_is_refused(users, data_dir, outside, purpose):
    target = outside / "private.png"
    assert paths.confine(target, CLI_ACTOR, purpose) == target.resolve()
    with pytest.raises(PermissionError, match=f"^admin \\(admin\\) may not {paths.PURPOSES[purpose]} "):
        paths.confine(target, users["admin"], purpose)
    # A user row that looks like the command line's is not it: only the object itself is.
    assert not auth.is_local(dict(CLI_ACTOR))
    with pytest.raises(PermissionError):
        paths.confine(target, dict(CLI_ACTOR), purpose)


def test_a_browser_admin_may_use_urls_only_where_readme_says(users):
    assert str(paths.confine("gs://bucket/train.record", users["admin"], "records")) == "gs://bucket/train.record"
    with pytest.raises(PermissionError, match="may not use the config path a URL"):
        paths.confine("gs://bucket/train.record", users["admin"], "config")
    assert str(paths.confine("gs://bucket/ckpt", CLI_ACTOR, "checkpoint")) == "gs://bucket/ckpt"


def test_admin_config_model_folder_zoo_and_imports_are_confined(db, users, project, data_dir, outside):
    admin = users["admin"]
    text = CONFIG.replace('label_map_path: "PATH_TO_BE_CONFIGURED"',
                          f'label_map_path: "{outside / "label_map.pbtxt"}"', 1)
    [problem] = [p for p in config_check.check(text, actor=admin) if p.path == "train_input_reader.label_map_path"]
    assert "may not use the config path" in problem.message and "secret" not in problem.message
    with pytest.raises(PermissionError, match="may not register the model folder"):
        model_registry.register_directory(db, admin, project["id"], str(outside))
    with pytest.raises(PermissionError, match="may not import from"):
        zoo.import_tarball(db, admin, str(outside / "train.record"))
    with pytest.raises(PermissionError, match="may not import from"):
        importers.import_annotations(db, admin, project["id"], outside, "coco")
    with pytest.raises(PermissionError, match="may not read the label map"):
        importers.import_label_map(db, admin, project["id"], outside / "label_map.pbtxt")
    assert db["images"].count == 0 and db["models"].count == 0


def test_refusals_name_the_allowed_folders_and_those_are_read_only(db, users, project, data_dir, outside,
                                                                   tmp_path, monkeypatch):
    shared, other = tmp_path / "shared", tmp_path / "other"
    shared.mkdir()
    other.mkdir()
    monkeypatch.setenv("BOXWISE_ALLOWED_PATHS", f"{shared}{os.pathsep}{other}")
    typed = str(outside / "train.record")
    with pytest.raises(PermissionError) as refused:
        paths.confine(typed, users["admin"], "records")
    assert str(refused.value) == (f"admin (admin) may not open the record set {typed!r}: only paths inside the "
                                  f"data folder or the allowed folders {shared}, {other} can be used from the browser")
    assert paths.confine(shared / "a.record", users["viewer"], "records") == shared / "a.record"
    add_image(db, users["admin"], project["id"], "a.jpg", boxes=[("cat", 1, 2, 30, 40)])
    with pytest.raises(PermissionError, match="may not write a dataset version to .*: only paths inside the "
                                              "data folder can be used"):
        dataset_versions.create_export(db, users["admin"], project["id"], splits="train=1", copy_to=shared / "v")
    assert list(shared.iterdir()) == [] and dataset_versions.list_versions(db, project["id"]) == []
    version = dataset_versions.create_export(db, users["reviewer"], project["id"], splits="train=1",
                                             copy_to=data_dir / "copies" / "v1")
    assert (data_dir / "copies" / "v1" / "manifest.json").is_file() and version.number == 1


def test_the_database_is_refused_to_a_browser_admin_through_a_symlink_too(users, data_dir):
    (data_dir / "boxwise.db").touch()
    os.symlink(data_dir / "boxwise.db", data_dir / "notes.pbtxt")
    with pytest.raises(PermissionError, match="the database and the server settings are never opened"):
        paths.confine(data_dir / "notes.pbtxt", users["admin"], "label_map")


# ---------------------------------------------------------------- uploads belong to their uploader


@pytest.fixture
def two_reviewers(db, users):
    return users["reviewer"], auth.add_user(db, users["admin"], "reviewer2", "reviewer2-password", "reviewer")


def _record_upload(db, users, project, data_dir, actor):
    add_image(db, users["admin"], project["id"], "a.jpg", boxes=[("cat", 1, 2, 30, 40)])
    version = dataset_versions.create_export(db, users["admin"], project["id"], splits="train=1")
    files = sorted(p for p in (data_dir / "exports").rglob("*") if p.is_file() and ".record" in p.name)
    label_map = next((data_dir / "exports").rglob("label_map.pbtxt"))
    return version, record_browser.save_uploads(actor, [(files[0].name, files[0].read_bytes()),
                                                       ("label_map.pbtxt", label_map.read_bytes())])


def test_a_record_upload_opens_only_for_its_uploader(db, users, project, data_dir, two_reviewers):
    owner, stranger = two_reviewers
    _, folder = _record_upload(db, users, project, data_dir, owner)
    assert record_browser.inspect(owner, folder).examples == 1
    assert len(record_browser.page(owner, folder, 0, 5)) == 1
    for actor in (stranger, users["admin"], users["viewer"]):
        with pytest.raises(PermissionError, match="an upload opens only for the user who uploaded it"):
            record_browser.inspect(actor, folder)
        with pytest.raises(PermissionError, match="an upload opens only for the user who uploaded it"):
            record_browser.page(actor, folder, 0, 5)
    with pytest.raises(PermissionError, match="an upload opens only for the user who uploaded it"):
        record_browser.extract_zip(stranger, folder, False)
    # nor through another backend function that opens record sets, nor as a label map
    with pytest.raises(PermissionError, match="an upload opens only for the user who uploaded it"):
        importers.import_annotations(db, stranger, project["id"], folder, "tfrecord")
    with pytest.raises(PermissionError, match="an upload opens only"):
        paths.confine(folder + "/label_map.pbtxt", stranger, "label_map")
    assert paths.confine(folder, CLI_ACTOR, "records") == paths.Path(folder)


def test_an_unknown_upload_folder_is_refused_as_a_strangers_is(db, users, project, data_dir, two_reviewers):
    owner, stranger = two_reviewers
    _, folder = _record_upload(db, users, project, data_dir, owner)
    missing = str(data_dir / "uploads" / "tfrecords" / "0123456789abcdef")
    messages = []
    for typed in (folder, missing):
        with pytest.raises(PermissionError) as refused:
            record_browser.inspect(stranger, typed)
        messages.append(str(refused.value).replace(typed, "PATH"))
    assert messages[0] == messages[1]
    with pytest.raises(PermissionError, match="an upload opens only"):  # the folder of uploads itself
        record_browser.inspect(owner, str(data_dir / "uploads" / "tfrecords" / "*" / "*.tfrecord"))


def test_a_symlink_into_someone_elses_upload_is_refused(db, users, project, data_dir, two_reviewers):
    owner, stranger = two_reviewers
    _, folder = _record_upload(db, users, project, data_dir, owner)
    os.symlink(folder, data_dir / "shortcut")
    with pytest.raises(PermissionError, match="an upload opens only"):
        record_browser.inspect(stranger, str(data_dir / "shortcut"))
    assert record_browser.inspect(owner, str(data_dir / "shortcut")).examples == 1


def test_an_extracted_zip_downloads_only_for_who_extracted_it(db, users, project, data_dir, two_reviewers):
    owner, stranger = two_reviewers
    version, _ = _record_upload(db, users, project, data_dir, owner)
    path, _ = record_browser.extract_zip(owner, version.shard_globs["train"], False)
    assert record_browser.zip_download(owner, path)[0] == path.name
    for actor in (stranger, users["admin"]):
        with pytest.raises(PermissionError, match="may not download this zip: it belongs to the user who extracted it"):
            record_browser.zip_download(actor, path)


# ---------------------------------------------------------------- paths shown to non-admins


def test_non_admins_see_paths_relative_to_the_data_folder(users, data_dir):
    inside = data_dir / "exports" / "pets" / "v1" / "train.record-00000-of-00001"
    text = f"input_path: \"{inside}\"\nlabel map '{data_dir}/exports/label_map.pbtxt' in {data_dir}, not {data_dir}2/x"
    assert paths.shown_in(users["viewer"], text) == (
        'input_path: "exports/pets/v1/train.record-00000-of-00001"\n'
        f"label map 'exports/label_map.pbtxt' in ., not {data_dir}2/x")
    assert paths.shown_in(users["reviewer"], text) == paths.shown_in(users["viewer"], text)
    assert paths.shown_in(users["admin"], text) == text and paths.shown_in(CLI_ACTOR, text) == text
    assert paths.shown(users["labeler"], inside) == "exports/pets/v1/train.record-00000-of-00001"
    assert paths.shown(users["labeler"], "/srv/datasets/a.record") == "/srv/datasets/a.record"


def test_the_datasets_page_shows_relative_paths_to_a_viewer_and_whole_ones_to_an_admin(db, users, project,
                                                                                      data_dir):
    add_image(db, users["admin"], project["id"], "a.jpg", boxes=[("cat", 1, 2, 30, 40)])
    version = dataset_versions.create_export(db, users["admin"], project["id"], splits="train=1")
    relative = os.path.relpath(version.path, data_dir)
    seen = {}
    for role in ("viewer", "admin"):
        at = signed_in(db, role, "pages/dataset.py")
        assert not at.exception, at.exception
        seen[role] = "\n".join(c.value for c in at.code)
    assert str(data_dir) not in seen["viewer"]
    assert seen["viewer"].startswith(relative + "\nlabel map: ") and "train: " in seen["viewer"]
    assert f'input_path: "{relative}/' in seen["viewer"]
    assert seen["admin"].startswith(str(version.path) + "\n")
    assert seen["viewer"] == seen["admin"].replace(f"{data_dir}/", "")


def test_the_models_page_refuses_an_outside_folder_to_an_admin(db, users, project, data_dir, outside):
    at = signed_in(db, "admin", "pages/models.py")
    at.text_input(key="folder_model_path").input(str(outside))
    button(at, "Register").click()  # the folder form's (no runs yet)
    at.run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == [  # (as Markdown source: plain text, `_` escaped)
        "Not allowed: " + common.plain(f"admin (admin) may not register the model folder {str(outside)!r}: only "
                                       "paths inside the data folder can be used from the browser")]
    assert db["models"].count == 0


# ---------------------------------------------------------------- symlinks below what a user names


def _config(**values) -> str:
    text = CONFIG
    for key, value in values.items():
        text = text.replace(f'{key}: "PATH_TO_BE_CONFIGURED"', f'{key}: "{value}"', 1)
    return text


def test_a_config_glob_or_checkpoint_reaching_outside_through_a_symlink_is_refused(db, users, data_dir, outside):
    link = data_dir / "link"
    os.symlink(outside, link)
    problems = {p.path: p.message for p in config_check.check(
        _config(input_path=str(data_dir / "lin*" / "train.rec*")), actor=users["admin"])}
    assert problems["train_input_reader.tf_record_input_reader.input_path"] == (
        f"admin (admin) may not use the config path {str(link / 'train.record')!r}: only paths inside the data "
        "folder can be used from the browser")
    checkpoints = data_dir / "checkpoints"
    checkpoints.mkdir()
    (outside / "ckpt-1.index").write_bytes(b"x")
    os.symlink(outside / "ckpt-1.index", checkpoints / "ckpt-1.index")
    text = CONFIG.replace("train_config {", f'train_config {{\n  fine_tune_checkpoint: "{checkpoints / "ckpt-1"}"', 1)
    problems = {p.path: p.message for p in config_check.check(text, actor=users["reviewer"])}
    assert problems["train_config.fine_tune_checkpoint"].startswith(
        f"reviewer (reviewer) may not start from the checkpoint {str(checkpoints / 'ckpt-1.index')!r}: ")
    from backend.auth import CLI_ACTOR as cli
    assert "train_config.fine_tune_checkpoint" not in {p.path for p in config_check.check(text, actor=cli)}


def test_a_url_in_a_config_is_refused_in_the_browser_and_kept_for_the_command_line(db, users):
    text = _config(input_path="gs://bucket/train.record-*")
    for role in ("reviewer", "admin"):
        problems = {p.path: p.message for p in config_check.check(text, actor=users[role])}
        assert problems["train_input_reader.tf_record_input_reader.input_path"] == (
            f"{role} ({role}) may not use the config path a URL: only record sets and label maps in the "
            "TFRecord browser may be URLs")
    assert "train_input_reader.tf_record_input_reader.input_path" not in {
        p.path for p in config_check.check(text, actor=CLI_ACTOR)}


def test_imports_and_model_folders_cannot_reach_outside_through_a_symlink(db, users, project, data_dir, outside):
    from tests.helpers import voc_xml
    (outside / "a.xml").write_text(voc_xml("a.png", (40, 30), [("cat", (1, 2, 30, 20), 0, 0)]))
    folder = data_dir / "voc"
    folder.mkdir()
    os.symlink(outside / "a.xml", folder / "a.xml")
    with pytest.raises(PermissionError, match=f"may not import from {str(folder / 'a.xml')!r}"):
        importers.import_annotations(db, users["reviewer"], project["id"], folder, "voc")
    records = data_dir / "records"
    records.mkdir()
    os.symlink(outside / "train.record", records / "train.record")
    for typed in (str(records), str(data_dir / "rec*" / "*.record")):
        with pytest.raises(PermissionError, match=f"may not import from {str(records / 'train.record')!r}"):
            importers.import_annotations(db, users["admin"], project["id"], typed, "tfrecord")
    model = data_dir / "mymodel"
    model.mkdir()
    os.symlink(outside, model / "saved_model")
    with pytest.raises(PermissionError, match=f"may not register the model folder {str(model / 'saved_model')!r}"):
        model_registry.register_directory(db, users["admin"], project["id"], str(model))
    assert db["images"].count == 0 and db["models"].count == 0


def test_the_tfrecord_browser_shows_a_viewer_files_and_label_map_relative_to_the_data_folder(
        db, users, project, data_dir):
    add_image(db, users["admin"], project["id"], "a.jpg", boxes=[("cat", 1, 2, 30, 40)])
    version = dataset_versions.create_export(db, users["admin"], project["id"], splits="train=1")
    shard = os.path.relpath(record_browser.inspect(users["viewer"], version.shard_globs["train"]).label_map,
                            data_dir)
    at = signed_in(db, "viewer", "pages/tfrecords.py")  # a viewer's only source: a dataset version
    assert not at.exception, at.exception
    files = list(at.dataframe[0].value["file"])
    assert files and all(not f.startswith("/") and f.startswith(os.path.relpath(version.path, data_dir))
                         for f in files), files
    captions = [c.value.replace("\\_", "_") for c in at.caption if c.value.startswith("Label map:")]  # (Markdown)
    assert captions == [f"Label map: {shard}"]


def test_a_symlink_loop_below_an_import_folder_is_walked_once(db, users, project, data_dir, outside):
    folder = data_dir / "loop" / "inner"
    folder.mkdir(parents=True)
    os.symlink(data_dir / "loop", folder / "back")  # inner/back -> loop: a cycle
    paths.confine_matches(str(data_dir / "loop"), users["reviewer"], "import", (".xml",))  # ends, allowed
    os.symlink(outside, folder / "out")
    with pytest.raises(PermissionError, match=f"may not import from {str(folder / 'out')!r}"):
        paths.confine_matches(str(data_dir / "loop"), users["reviewer"], "import", (".xml",))


# ---------------------------------------------------------------- relative paths: from the data folder


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """The process's working folder, outside the data folder, holding files of the same names
    as the data folder's (so a path read from the wrong folder would be found)."""
    folder = tmp_path / "elsewhere"
    (folder / "exports").mkdir(parents=True)
    (folder / "exports" / "a.record").write_bytes(b"\x00" * 16)
    monkeypatch.chdir(folder)
    return folder


def test_a_relative_browser_path_resolves_from_the_data_folder_and_the_command_lines_from_its_own(
        users, data_dir, outside, elsewhere):
    (data_dir / "exports").mkdir()
    (data_dir / "exports" / "a.record").write_bytes(b"\x00" * 16)
    for role in ("admin", "reviewer", "viewer"):
        assert paths.confine("exports/a.record", users[role], "records") == data_dir / "exports" / "a.record"
        assert paths.confine(" exports/../exports/a.record", users[role], "records") == data_dir / "exports" / "a.record"
    assert paths.confine("exports/a.record", CLI_ACTOR, "records") == elsewhere / "exports" / "a.record"
    assert paths.absolute("exports/a.record", users["viewer"]) == str(data_dir / "exports" / "a.record")
    assert paths.absolute("exports/a.record", CLI_ACTOR) == "exports/a.record"
    # `~` is the server account's home only for the command line
    assert paths.absolute("~/x", users["admin"]) == str(data_dir / "~" / "x")
    assert paths.absolute("~/x", CLI_ACTOR) == os.path.expanduser("~/x")
    os.symlink(outside, data_dir / "link")
    for typed in ("../outside/train.record", "link/train.record", "exports/../../outside/train.record"):
        with pytest.raises(PermissionError) as refused:
            paths.confine(typed, users["reviewer"], "records")
        assert str(refused.value) == (f"reviewer (reviewer) may not open the record set {typed!r}: only paths "
                                      "inside the data folder can be used from the browser")


def test_a_relative_glob_is_walked_in_the_data_folder(users, data_dir, outside, elsewhere):
    os.symlink(outside, data_dir / "link")
    os.symlink(outside, elsewhere / "link")
    with pytest.raises(PermissionError) as refused:
        paths.confine_matches("lin*/train.rec*", users["admin"], "records")
    assert str(refused.value) == (f"admin (admin) may not open the record set {str(data_dir / 'link' / 'train.record')!r}: "
                                  "only paths inside the data folder can be used from the browser")
    (data_dir / "exports").mkdir()
    (data_dir / "exports" / "b.record").write_bytes(b"\x00" * 16)
    paths.confine_matches("exp*/*.record", users["viewer"], "records")  # allowed: it ends quietly


def test_a_viewer_opens_a_dataset_version_by_the_relative_path_the_pages_show(db, users, project, data_dir,
                                                                              elsewhere):
    add_image(db, users["admin"], project["id"], "a.jpg", boxes=[("cat", 1, 2, 30, 40)])
    version = dataset_versions.create_export(db, users["admin"], project["id"], splits="train=1")
    typed = os.path.relpath(version.shard_globs["train"], data_dir)
    assert not typed.startswith(("/", "..")), typed
    inspection = record_browser.inspect(users["viewer"], typed)
    assert inspection.examples == 1
    assert inspection.label_map == str(version.label_map_path)


def test_a_relative_path_in_a_config_is_checked_and_trained_from_the_data_folder(db, setup, stand_in, users,
                                                                                 data_dir, elsewhere):
    from backend import run_artefacts, run_lifecycle, saved_configs
    from backend.config_document import ConfigDocument
    checkpoints = data_dir / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "ckpt-1.index").write_bytes(b"x")
    (checkpoints / "ckpt-1.data-00000-of-00001").write_bytes(b"x")
    text = CONFIG.replace("train_config {", 'train_config {\n  fine_tune_checkpoint: "checkpoints/ckpt-1"\n'
                                            '  fine_tune_checkpoint_type: "detection"', 1)
    assert "train_config.fine_tune_checkpoint" not in {
        p.path for p in config_check.check(text, actor=users["reviewer"])}
    [missing] = [p for p in config_check.check(text, actor=CLI_ACTOR) if p.path == "train_config.fine_tune_checkpoint"]
    assert missing.message.startswith("fine-tune checkpoint 'checkpoints/ckpt-1' does not exist")
    assert ConfigDocument(config_check.absolute_paths(text, users["reviewer"])).get(
        "train_config.fine_tune_checkpoint") == str(checkpoints / "ckpt-1")
    saved = saved_configs.save_config(db, users["reviewer"], setup["project_id"], "relative", text)
    run = run_lifecycle.start_run(db, setup["actor"], setup["project_id"], export_id=setup["export_id"],
                                  config_id=saved["id"], runner=stand_in)
    written = ConfigDocument.load(data_dir / "runs" / str(run["id"]) / run_artefacts.CONFIG_FILE)
    assert written.get("train_config.fine_tune_checkpoint") == str(checkpoints / "ckpt-1")
    assert run["fine_tune_checkpoint"] == str(checkpoints / "ckpt-1")
    # a saved config is the data folder's: the command line starting it reads the same files
    assert "train_config.fine_tune_checkpoint" not in {
        p.path for p in config_check.check(text, actor=CLI_ACTOR, base=data_dir)}
    queued = run_lifecycle.start_run(db, CLI_ACTOR, setup["project_id"], export_id=setup["export_id"],
                                     config_id=saved["id"], runner=stand_in)
    assert queued["fine_tune_checkpoint"] == str(checkpoints / "ckpt-1")
    for started in (run, queued):
        run_lifecycle.cancel_run(db, setup["actor"], started["id"])


# ---------------------------------------------------------------- batch prediction's progress file


def test_a_signed_in_users_progress_file_must_lie_in_the_predictions_folder(db, users, project, data_dir, outside):
    from backend import predictions
    target = data_dir / "images" / "progress.json"
    for typed in (str(outside / "progress.json"), str(target), "../outside/progress.json",
                  str(data_dir / "boxwise.db")):
        with pytest.raises(PermissionError) as refused:
            predictions.predict_project(db, users["reviewer"], project["id"], progress_file=typed)
        assert str(refused.value).startswith(f"reviewer (reviewer) may not write batch-prediction progress to "
                                             f"{typed!r}: "), str(refused.value)
    assert str(refused.value).endswith("the database and the server settings are never opened from the browser")
    with pytest.raises(PermissionError) as refused:
        predictions.predict_project(db, users["reviewer"], project["id"], progress_file=str(target))
    assert str(refused.value) == (f"reviewer (reviewer) may not write batch-prediction progress to {str(target)!r}: "
                                  f"only paths inside the folder {data_dir / 'predictions'} can be used from the "
                                  "browser")
    assert not target.exists() and not (outside / "progress.json").exists()
    # inside it (relative from the data folder) it is written; the command line writes anywhere
    from backend.errors import Invalid
    for actor, typed, written in ((users["reviewer"], "predictions/mine.json", data_dir / "predictions" / "mine.json"),
                                  (CLI_ACTOR, str(outside / "progress.json"), outside / "progress.json")):
        with pytest.raises(Invalid, match="has no current model"):
            predictions.predict_project(db, actor, project["id"], progress_file=typed)
        assert not written.exists()  # refused before anything was written: no model
    with pytest.raises(Invalid, match="^the progress file must be a local path, not 'gs://b/p.json'$"):
        predictions.predict_project(db, CLI_ACTOR, project["id"], progress_file="gs://b/p.json")


# ---------------------------------------------------------------- one way to quote a typed path


def test_a_long_typed_path_is_quoted_the_same_in_a_refusal_and_a_config_problem(users, data_dir):
    from backend import saved_configs
    typed = "/x" + "c" * 298
    with pytest.raises(PermissionError) as refused:
        paths.confine(typed, users["viewer"], "records")
    assert str(refused.value) == (f"viewer (viewer) may not open the record set '/x{'c' * 198}…' (300 characters): "
                                  "only paths inside the data folder can be used from the browser")
    assert saved_configs.checkpoint_problem(typed) == (f"fine-tune checkpoint '/x{'c' * 198}…' (300 characters) "
                                                     "is not a usable path (too long)")
    assert not hasattr(saved_configs, "shown") and not hasattr(paths, "_short")
