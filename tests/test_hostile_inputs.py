"""Hostile inputs (issue 12, item 6): each gets a one-line domain message, never a Traceback,
and nothing is written. Every case below reached a user as a Traceback before.

Each case builds its input in a temp folder, calls the backend (or the CLI) the way the pages
do, and checks the exact message and that the database and the image store are unchanged.
"""
from __future__ import annotations

import json

import pytest

from backend import config_check, importers, record_browser, run_lifecycle, saved_configs
from backend import config_document as pc
from backend.__main__ import main as cli_main
from backend.auth import CLI_ACTOR
from backend.errors import BoxwiseError, Invalid
from backend.formats import label_map as label_map_format, tf_example, tfrecord_framing
from tests.helpers import image_bytes


def _nothing_written(db, data_dir, labels_before=3):
    assert db.execute("select count(*) from images").fetchone()[0] == 0
    assert db.execute("select count(*) from annotations").fetchone()[0] == 0
    assert db.execute("select count(*) from labels").fetchone()[0] == labels_before
    assert not [p for p in (data_dir / "images").rglob("*") if p.is_file()] \
        if (data_dir / "images").exists() else True


# ---------------------------------------------------------------- COCO


def _coco(tmp_path, image=None, annotation=None, category=None):
    (tmp_path / "coco").mkdir()
    (tmp_path / "coco" / "a.jpg").write_bytes(image_bytes((64, 48)))
    document = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48, **(image or {})}],
        "categories": [{"id": 1, "name": "cat", **(category or {})}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 10],
                         **(annotation or {})}]}
    path = tmp_path / "coco" / "instances.json"
    path.write_text(json.dumps(document))  # json writes Infinity and NaN as JavaScript does
    return path


COCO_CASES = {
    "width Infinity": ({"image": {"width": float("inf")}},
                       "a.jpg (", "width/height must be positive whole numbers, not inf"),
    "height -1": ({"image": {"height": -1}},
                  "a.jpg (", "width/height must be positive whole numbers, not -1"),
    "image id a list": ({"image": {"id": [1]}},
                        "", "images[0]: id must be a number or a string, not [1]"),
    "category id a list": ({"category": {"id": [1]}},
                           "", "categories[0]: id must be a number or a string, not [1]"),
    "annotation image_id a list": ({"annotation": {"image_id": [1]}},
                                   "", "annotations[0]: unknown image_id [1]"),
    "annotation category_id a list": ({"annotation": {"category_id": [1]}},
                                      "a.jpg (", "annotations[0]: unknown category id [1]"),
    "bbox NaN": ({"annotation": {"bbox": [float("nan"), 2, 10, 10]}},
                 "a.jpg (", "annotations[0]: bbox [nan, 2, 10, 10] is not 4 finite numbers"),
    "bbox Infinity": ({"annotation": {"bbox": [1, 2, float("inf"), 10]}},
                      "a.jpg (", "annotations[0]: bbox [1, 2, inf, 10] is not 4 finite numbers"),
}


@pytest.mark.parametrize("case", list(COCO_CASES))
def test_hostile_coco_is_reported_and_imports_nothing(db, admin, project, data_dir, tmp_path, case):
    kwargs, prefix, message = COCO_CASES[case]
    path = _coco(tmp_path, **kwargs)
    report = importers.import_annotations(db, CLI_ACTOR, project["id"], path, "coco")
    assert not report.committed
    assert any(e.startswith(prefix) and e.endswith(message) for e in report.errors), report.errors
    assert all("\n" not in e for e in report.errors)
    _nothing_written(db, data_dir)


# ---------------------------------------------------------------- TFRecord features of the wrong type


def _record_file(path, entries):
    body = b"".join(entries)
    example = b"\x0a" + tf_example._varint(len(body)) + body  # Example.features
    head, foot = tfrecord_framing.frame(example)
    path.write_bytes(head + example + foot)
    return path


def _wrong_type_entries(which):
    F = tf_example
    good = {
        "image/encoded": F._entry("image/encoded", F._bytes_feature([image_bytes((64, 48))])),
        "image/format": F._entry("image/format", F._bytes_feature([b"jpeg"])),
        "image/width": F._entry("image/width", F._int64_feature([64])),
        "image/height": F._entry("image/height", F._int64_feature([48])),
        "image/filename": F._entry("image/filename", F._bytes_feature([b"a.jpg"])),
        **{f"image/object/bbox/{k}": F._entry(f"image/object/bbox/{k}", F._float_feature([v]))
           for k, v in (("xmin", 0.1), ("ymin", 0.1), ("xmax", 0.5), ("ymax", 0.5))},
        "image/object/class/text": F._entry("image/object/class/text", F._bytes_feature([b"cat"])),
        "image/object/class/label": F._entry("image/object/class/label", F._int64_feature([1])),
    }
    bad = {
        "image/encoded": F._entry("image/encoded", F._int64_feature([7])),
        "image/height": F._entry("image/height", F._bytes_feature([b"48"])),
        "image/object/bbox/xmin": F._entry("image/object/bbox/xmin", F._bytes_feature([b"0.1"])),
        "image/object/class/text": F._entry("image/object/class/text", F._int64_feature([3])),
        "image/object/class/label": F._entry("image/object/class/label", F._float_feature([1.0])),
    }
    good[which] = bad[which]
    return list(good.values())


WRONG_TYPES = {
    "image/encoded": "int64", "image/height": "bytes", "image/object/bbox/xmin": "bytes",
    "image/object/class/text": "int64", "image/object/class/label": "float",
}
EXPECTED_KIND = {"image/encoded": "bytes", "image/height": "int64",
                 "image/object/bbox/xmin": "float", "image/object/class/text": "bytes",
                 "image/object/class/label": "int64"}


def _wrong_type_message(key):
    return (f"feature {key!r} is a {WRONG_TYPES[key]} list; the TF OD API reads it as "
            f"{EXPECTED_KIND[key]}")


@pytest.mark.parametrize("key", list(WRONG_TYPES))
def test_tfrecord_feature_of_the_wrong_type_is_reported_by_import(db, admin, project, data_dir,
                                                                 tmp_path, key):
    path = _record_file(tmp_path / "train.record", _wrong_type_entries(key))
    report = importers.import_annotations(db, CLI_ACTOR, project["id"], path, "tfrecord")
    assert not report.committed
    assert report.errors == [f"{path} record 0: {_wrong_type_message(key)}"]
    _nothing_written(db, data_dir)


@pytest.mark.parametrize("key", list(WRONG_TYPES))
def test_tfrecord_feature_of_the_wrong_type_is_reported_by_inspect_and_the_browser(
        db, admin, data_dir, key):
    folder = data_dir / "uploads" / "hostile"
    folder.mkdir(parents=True)
    path = _record_file(folder / "train.record", _wrong_type_entries(key))
    inspection = record_browser.inspect(CLI_ACTOR, str(path))
    assert [(p.file, p.index, p.message) for p in inspection.problems] == \
        [(str(path), 0, _wrong_type_message(key))]
    page = record_browser.page(CLI_ACTOR, str(path), 0, 5)
    assert [(entry["where"], entry["error"]) for entry in page] == \
        [("train.record #0", _wrong_type_message(key))]


def test_tfrecord_browser_page_shows_the_wrong_type_as_a_message(db, users, data_dir):
    from tests.helpers import signed_in

    folder = data_dir / "hostile"  # (not under uploads/: those open only for their uploader)
    folder.mkdir(parents=True)
    path = _record_file(folder / "train.record", _wrong_type_entries("image/height"))
    at = signed_in(db, "admin", "pages/tfrecords.py")
    at.radio[0].set_value("A path or glob on the server").run()
    at.text_input[0].input(str(path)).run()
    assert not at.exception, at.exception
    shown = [e.value for e in at.error] + [w.value for w in at.warning]
    assert any(_wrong_type_message("image/height") in text for text in shown), shown


# ---------------------------------------------------------------- label maps


LABEL_MAP_CASES = {
    "id 99999999999999999999": ("item { id: 99999999999999999999 name: 'cat' }",
                                "item 1 has id 99999999999999999999; ids must be 1 to 2147483647"),
    "id 2**31": ("item { id: 2147483648 name: 'cat' }",
                 "item 1 has id 2147483648; ids must be 1 to 2147483647"),
    "same name twice": ("item { id: 1 name: 'cat' } item { id: 2 name: 'cat' }",
                        "ids 1 and 2 both name the class 'cat'; class names must be unique"),
    "same display name twice": ("item { id: 1 name: 'a' display_name: 'Cat' } "
                                "item { id: 2 name: 'b' display_name: 'Cat' }",
                                "ids 1 and 2 both name the class 'Cat'; class names must be unique"),
    "same name, neither with a display name, among others":
        ("item { id: 1 name: 'dog' } item { id: 3 name: 'cat' } item { id: 7 name: 'cat' }",
         "ids 3 and 7 both name the class 'cat'; class names must be unique"),
}


@pytest.mark.parametrize("case", list(LABEL_MAP_CASES))
def test_hostile_label_map_is_refused_by_import_and_creates_no_class(db, admin, project, data_dir,
                                                                    tmp_path, case):
    text, message = LABEL_MAP_CASES[case]
    path = tmp_path / "label_map.pbtxt"
    path.write_text(text)
    with pytest.raises(Invalid) as refused:
        importers.import_label_map(db, CLI_ACTOR, project["id"], path)
    assert str(refused.value) == f"{path}: {message}"
    _nothing_written(db, data_dir)
    assert db.execute("select next_label_map_id from projects").fetchone()[0] == 4


def test_same_name_with_different_display_names_is_kept_under_the_display_names():
    parsed = label_map_format.parse("item { id: 1 name: 'NA' display_name: 'left' } "
                                    "item { id: 2 name: 'NA' display_name: 'right' }")
    assert [parsed.class_name(item) for item in parsed.items] == ["left", "right"]
    assert parsed.notes == ["label map: ids 1 and 2 share the name 'NA'; each class is named by "
                            "its display name ('left', 'right')"]


# ---------------------------------------------------------------- pipeline.config


def _good_config(tmp_path, **replace):
    folder = tmp_path / "ds"
    folder.mkdir(exist_ok=True)
    label_map = folder / "label_map.pbtxt"
    label_map.write_text("item { id: 1 name: 'cat' }\nitem { id: 2 name: 'dog' }\n")
    record = folder / "train.record"
    if not record.exists():
        _record_file(record, [tf_example._entry("image/format", tf_example._bytes_feature([b"jpeg"]))])
    text = saved_configs.templates()["quick"]
    doc = pc.ConfigDocument(text)
    doc.set("model.ssd.num_classes", 2)
    for reader in ("train_input_reader", "eval_input_reader"):
        doc.set(f"{reader}.label_map_path", replace.get("label_map_path", str(label_map)))
        doc.set(f"{reader}.tf_record_input_reader.input_path",
                replace.get("input_path", str(record)))
    if "fine_tune_checkpoint" in replace:
        doc.set("train_config.fine_tune_checkpoint", replace["fine_tune_checkpoint"])
    return doc.text


def _check(capsys, path):
    code = cli_main(["config", "check", str(path)])
    out = capsys.readouterr()
    return code, (out.out + out.err).strip().splitlines()


def test_config_check_of_a_binary_file_is_one_line(capsys, tmp_path):
    path = tmp_path / "pipeline.config"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00binary" * 20)
    code, lines = _check(capsys, path)
    assert code == 1
    assert lines == [f"{path}: not a UTF-8 text file; is this a pipeline.config?"]


def test_deeply_nested_config_is_a_syntax_error_not_a_recursion_error(capsys, tmp_path):
    text = "model " + "{ a " * 5000 + "}" * 5000
    with pytest.raises(pc.ConfigSyntaxError, match="nested deeper than 100 levels"):
        pc.parse(text)
    problems = config_check.check(text, actor=CLI_ACTOR)
    assert [p.message for p in problems] == [
        "line 1, column 407: messages are nested deeper than 100 levels"]
    path = tmp_path / "pipeline.config"
    path.write_text(text)
    code, lines = _check(capsys, path)
    assert code == 1 and lines == [f"{path}: line 1, column 407: messages are nested deeper than 100 levels"]


@pytest.mark.parametrize("length", [300, pytest.param(10 * 1024 * 1024, marks=pytest.mark.slow)])
def test_a_huge_fine_tune_checkpoint_is_a_problem_not_an_oserror(tmp_path, capsys, length):
    checkpoint = "c" * length
    text = _good_config(tmp_path, fine_tune_checkpoint=checkpoint)
    messages = [p.message for p in config_check.check(text, actor=CLI_ACTOR)]
    shown = f"'{'c' * 200}…' ({length:,} characters)"
    assert f"fine-tune checkpoint {shown} is not a usable path (too long)" in messages
    path = tmp_path / "pipeline.config"
    path.write_text(text)
    code, lines = _check(capsys, path)
    assert code == 1
    assert any(line.endswith(f"fine-tune checkpoint {shown} is not a usable path (too long)")
               for line in lines), lines
    assert all(len(line) < 600 for line in lines)  # the path is cut to 200 characters


def test_start_run_refuses_a_too_long_fine_tune_checkpoint(db, project, users, data_dir):
    from tests.helpers import CONFIG, make_dataset_version

    export_id = make_dataset_version(db, project, data_dir)
    config = saved_configs.save_config(db, users["reviewer"], project["id"], "c", CONFIG)
    with pytest.raises(Invalid) as refused:
        run_lifecycle.start_run(db, users["reviewer"], project["id"], export_id=export_id,
                       config_id=config["id"], fine_tune_checkpoint="c" * 300)
    assert f"fine-tune checkpoint '{'c' * 200}…' (300 characters) is not a usable path (too long)" \
        in str(refused.value)
    assert run_lifecycle.list_runs(db, project["id"]) == []


def _framed_with_bad_data_crc():
    head, _ = tfrecord_framing.frame(b"abcde")
    return head + b"abcde" + b"\x00\x00\x00\x00"


NOT_RECORDS = {
    "a text file": (b"root:x:0:0:root:/root:/bin/bash\n" * 40,
                    "its first record's length checksum is wrong"),
    "a cut header": (b"\x05\x00\x00", "it ends inside its first record's header"),
    "a wrong data checksum": (_framed_with_bad_data_crc(), "its first record's data checksum is wrong"),
    "a cut record": (tfrecord_framing.frame(b"abcde")[0] + b"ab", "it ends inside its first record"),
}


@pytest.mark.parametrize("case", list(NOT_RECORDS))
def test_an_input_path_that_is_not_a_tfrecord_is_refused_before_training(tmp_path, capsys, case):
    content, reason = NOT_RECORDS[case]
    fake = tmp_path / "passwd.record"
    fake.write_bytes(content)
    text = _good_config(tmp_path, input_path=str(fake))
    message = f"{str(fake)!r} is not a TFRecord file ({reason})"
    assert message in [p.message for p in config_check.check(text, actor=CLI_ACTOR)]
    path = tmp_path / "pipeline.config"
    path.write_text(text)
    code, lines = _check(capsys, path)
    assert code == 1 and any(line.endswith(message) for line in lines), lines


def test_etc_passwd_as_input_path_fails_config_check(tmp_path, capsys):
    text = _good_config(tmp_path, input_path="/etc/passwd")
    path = tmp_path / "pipeline.config"
    path.write_text(text)
    code, lines = _check(capsys, path)
    assert code == 1
    assert any("'/etc/passwd'" in line and "not a TFRecord file" in line for line in lines), lines


def test_a_real_record_file_passes_the_input_check(tmp_path):
    text = _good_config(tmp_path)
    assert not [p for p in config_check.check(text, actor=CLI_ACTOR) if "TFRecord" in p.message]
    assert tfrecord_framing.not_a_record_file(tmp_path / "ds" / "train.record") is None


def test_every_hostile_error_is_a_domain_error():
    # The messages above are raised or reported as these classes: pages show them with
    # common.reported(), the CLI prints "error: ..." and exits 2.
    assert issubclass(pc.ConfigSyntaxError, BoxwiseError)
    assert issubclass(Invalid, BoxwiseError)


# ---------------------------------------------------------------- non-finite numbers in the other formats


@pytest.mark.parametrize("fmt, files, message", [
    ("csv", {"labels.csv": "filename,width,height,class,xmin,ymin,xmax,ymax\n"
                           "a.jpg,64,48,cat,nan,2,20,20\n"},
     "box 1 (cat): box (nan, 2, 20, 20) has coordinates that are not finite numbers"),
    ("csv", {"labels.csv": "filename,width,height,class,xmin,ymin,xmax,ymax\n"
                           "a.jpg,inf,48,cat,1,2,20,20\n"},
     "line 2: width/height 'inf', '48' are not whole numbers"),
    ("yolo", {"a.txt": "0 nan 0.5 0.2 0.2\n", "classes.txt": "cat\n"},
     "has coordinates that are not finite numbers"),
    ("voc", {"a.xml": "<annotation><filename>a.jpg</filename><size><width>64</width>"
                      "<height>48</height></size><object><name>cat</name><bndbox><xmin>NaN</xmin>"
                      "<ymin>2</ymin><xmax>20</xmax><ymax>20</ymax></bndbox></object></annotation>"},
     "object 1 (cat) xmin 'NaN' is not a finite number"),
    ("voc", {"a.xml": "<annotation><filename>a.jpg</filename><size><width>inf</width>"
                      "<height>48</height></size></annotation>"},
     "size/width 'inf' is not a finite number"),
])
def test_non_finite_numbers_in_csv_yolo_voc_are_reported(db, admin, project, data_dir, tmp_path,
                                                         fmt, files, message):
    folder = tmp_path / fmt
    folder.mkdir()
    (folder / "a.jpg").write_bytes(image_bytes((64, 48)))
    for name, text in files.items():
        (folder / name).write_text(text)
    report = importers.import_annotations(db, CLI_ACTOR, project["id"], folder, fmt)
    assert not report.committed and report.errors
    assert all("\n" not in e for e in report.errors)
    if message:
        assert any(message in e for e in report.errors), report.errors
    _nothing_written(db, data_dir)
