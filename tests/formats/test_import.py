"""Importers: each format in, bad inputs refused with clear messages and no change, label
maps as classes, and project → export → import round trips for every format."""
from __future__ import annotations

import json

import pytest

from backend import dataset_versions, importers, projects, settings
from backend.__main__ import main
from backend.auth import CLI_ACTOR
from tests.formats.tfod import example, write_records
from tests.helpers import SHARED_TFOD, image_bytes, needs_shared_tfod, voc_xml


def state(db, project_id):
    """Everything an import may change, to prove a failed one changed nothing."""
    return (db["images"].count_where("project_id = ?", [project_id]),
            db["annotations"].count, db["labels"].count_where("project_id = ?", [project_id]),
            db["annotation_events"].count,
            sorted(str(p) for p in (settings.data_dir() / "images").rglob("*") if p.is_file()))


def boxes_by_file(db, project_id):
    """{filename: sorted [(class, xmin, ymin, xmax, ymax, difficult, truncated)]} and negatives."""
    out = {}
    for image in db.query("select * from images where project_id = ?", [project_id]):
        rows = db.query("""select labels.name, xmin, ymin, xmax, ymax, difficult, truncated
                           from annotations join labels on labels.id = label_id where image_id = ?""",
                        [image["id"]])
        out[image["filename"]] = sorted((r["name"], r["xmin"], r["ymin"], r["xmax"], r["ymax"],
                                         r["difficult"], r["truncated"]) for r in rows)
    return out


@pytest.fixture
def labelimg(data_dir):
    folder = data_dir / "labelimg"  # where a non-admin may import from
    folder.mkdir()
    (folder / "one.jpg").write_bytes(image_bytes((60, 40), (200, 0, 0)))
    (folder / "two.jpg").write_bytes(image_bytes((30, 30), (0, 200, 0)))
    (folder / "empty.jpg").write_bytes(image_bytes((20, 20), (0, 0, 200)))
    (folder / "unlabeled.jpg").write_bytes(image_bytes((20, 20), (9, 9, 9)))
    (folder / "one.xml").write_text(voc_xml("one.jpg", (60, 40), [("cat", (1, 2, 30, 39), 1, 0),
                                                                   ("dog", (10, 5, 60, 40), 0, 1)]))
    (folder / "two.xml").write_text(voc_xml("two.jpg", (30, 30), [("cat", (0, 0, 30, 30), 0, 0)]))
    (folder / "empty.xml").write_text(voc_xml("empty.jpg", (20, 20), []))
    return folder


def test_a_labelimg_folder_imports_in_one_step(db, admin, project, labelimg):
    report = importers.import_annotations(db, CLI_ACTOR, project["id"], labelimg, "voc")
    assert report.ok, report.errors
    assert report.summary() == "imported 3 images with 3 boxes, skipped 0"
    assert boxes_by_file(db, project["id"]) == {
        "one.jpg": [("cat", 1.0, 2.0, 30.0, 39.0, 1, 0), ("dog", 10.0, 5.0, 60.0, 40.0, 0, 1)],
        "two.jpg": [("cat", 0.0, 0.0, 30.0, 30.0, 0, 0)], "empty.jpg": []}
    rows = {r["filename"]: r for r in db.query("select * from images")}
    assert {r["status"] for r in rows.values()} == {"labeled"}
    assert rows["empty.jpg"]["no_objects"] == 1 and rows["one.jpg"]["no_objects"] == 0
    events = [e["kind"] for e in db.query("select kind from annotation_events where image_id = ?",
                                          [rows["one.jpg"]["id"]])]
    assert events == ["boxes", "status"]
    again = importers.import_annotations(db, CLI_ACTOR, project["id"], labelimg, "voc")
    assert again.ok and again.count("skipped") == 3 and again.count("imported") == 0


def test_annotations_attach_to_images_uploaded_earlier(db, admin, project, labelimg):
    from backend import images
    images.ingest(db, admin, project["id"], [("one.jpg", (labelimg / "one.jpg").read_bytes())])
    (labelimg / "one.jpg").unlink()  # found in the project by name instead
    report = importers.import_annotations(db, CLI_ACTOR, project["id"], labelimg, "voc")
    assert report.ok, report.errors
    assert db["images"].count == 3
    assert len(boxes_by_file(db, project["id"])["one.jpg"]) == 2


def test_coco_json_imports_with_xywh_boxes(db, admin, project, tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "p.png").write_bytes(image_bytes((50, 40), fmt="PNG"))
    (tmp_path / "images" / "q.jpg").write_bytes(image_bytes((50, 40), (1, 2, 3)))
    (tmp_path / "coco.json").write_text(json.dumps({
        "images": [{"id": 7, "file_name": "p.png", "width": 50, "height": 40},
                   {"id": 8, "file_name": "q.jpg", "width": 50, "height": 40}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [5.5, 4, 20, 30.25]}],
        "categories": [{"id": 3, "name": "bird"}]}))
    report = importers.import_annotations(db, CLI_ACTOR, project["id"], tmp_path / "coco.json", "coco")
    assert report.ok, report.errors
    assert boxes_by_file(db, project["id"]) == {"p.png": [("bird", 5.5, 4.0, 25.5, 34.25, 0, 0)], "q.jpg": []}


@pytest.mark.parametrize("layout", ["tfod", "path"])
def test_csv_imports_in_both_layouts(db, admin, project, tmp_path, layout):
    (tmp_path / "r.jpg").write_bytes(image_bytes((64, 48)))
    if layout == "tfod":
        text = ("filename,width,height,class,xmin,ymin,xmax,ymax\n"
                "r.jpg,64,48,cat,1,2,30,40\nr.jpg,64,48,dog,3.5,4,60,47\n")
    else:
        text = "image_path,xmin,ymin,xmax,ymax,label\nr.jpg,1,2,30,40,cat\nr.jpg,3.5,4,60,47,dog\n"
    (tmp_path / "labels.csv").write_text(text)
    report = importers.import_annotations(db, CLI_ACTOR, project["id"], tmp_path / "labels.csv", "csv")
    assert report.ok, report.errors
    assert boxes_by_file(db, project["id"]) == {
        "r.jpg": [("cat", 1.0, 2.0, 30.0, 40.0, 0, 0), ("dog", 3.5, 4.0, 60.0, 47.0, 0, 0)]}


@pytest.mark.parametrize("names", ["classes.txt", "names: [cat, dog]", "names:\n  0: cat\n  1: dog",
                                   "names:\n  - cat\n  - dog"])
def test_yolo_imports_with_classes_txt_or_data_yaml(db, admin, project, tmp_path, names):
    root = tmp_path / "yolo"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    if names == "classes.txt":
        (root / "classes.txt").write_text("cat\ndog\n")
    else:
        (root / "data.yaml").write_text(f"path: .\ntrain: images/train\n{names}\n")
    (root / "images" / "train" / "s.jpg").write_bytes(image_bytes((100, 50)))
    (root / "images" / "train" / "bg.jpg").write_bytes(image_bytes((10, 10), (5, 5, 5)))
    (root / "labels" / "train" / "s.txt").write_text("1 0.5 0.5 0.2 0.4\n0 0.25 0.5 0.5 1.0\n")
    report = importers.import_annotations(db, CLI_ACTOR, project["id"], root, "yolo")
    assert report.ok, report.errors
    assert boxes_by_file(db, project["id"]) == {
        "s.jpg": [("cat", 0.0, 0.0, 50.0, 50.0, 0, 0), ("dog", 40.0, 15.0, 60.0, 35.0, 0, 0)], "bg.jpg": []}
    assert report.notes == ["1 images have no label file: imported as images with no objects"]


def test_tfrecords_from_elsewhere_import_images_and_boxes(db, admin, project, tmp_path):
    data = image_bytes((40, 20))
    write_records(tmp_path / "x.record", [example({
        "image/encoded": [data], "image/format": [b"jpeg"], "image/height": [20], "image/width": [40],
        "image/filename": [b"t.jpg"], "image/source_id": [b"1"],
        "image/object/bbox/xmin": [0.25], "image/object/bbox/ymin": [0.1],
        "image/object/bbox/xmax": [0.75], "image/object/bbox/ymax": [0.9],
        "image/object/class/label": [2]})], compression="GZIP")
    (tmp_path / "label_map.pbtxt").write_text("item { id: 0 name: 'bg' }\nitem { id: 2 name: 'dog' }\n")
    report = importers.import_annotations(db, CLI_ACTOR, project["id"], tmp_path / "x.record", "tfrecord")
    assert report.ok, report.errors
    assert boxes_by_file(db, project["id"]) == {"t.jpg": [("dog", 10.0, 2.0, 30.0, 18.0, 0, 0)]}
    assert any("id 0 ('bg') is the background class; skipped" in n for n in report.notes)


# ---------------------------------------------------------------- bad inputs


def _bad_voc(folder, **changes):
    (folder / "ok.jpg").write_bytes(image_bytes((60, 40)))
    (folder / "ok.xml").write_text(voc_xml("ok.jpg", (60, 40), [("cat", (1, 1, 20, 20), 0, 0)]))
    for name, text in changes.items():
        (folder / name).write_text(text)


@pytest.mark.parametrize("fmt,files,expected", [
    ("voc", {"bad.xml": "<annotation><filename>ok.jpg</filename"}, "not valid VOC XML: unclosed token"),
    ("voc", {"miss.xml": voc_xml("gone.jpg", (60, 40), [])}, "image 'gone.jpg' not found"),
    ("voc", {"out.xml": voc_xml("ok.jpg", (60, 40), [("cat", (10, 10, 90, 20), 0, 0)])},
     "box 1 (cat): box (10, 10, 90, 20) lies outside its image of 60×40 px"),
    ("voc", {"neg.xml": voc_xml("ok.jpg", (60, 40), [("cat", (30, 10, 20, 20), 0, 0)])},
     "box 1 (cat): box (30, 10, 20, 20) has a negative size (max is smaller than min)"),
    ("voc", {"size.xml": voc_xml("ok.jpg", (61, 40), [])},
     "the annotation says the image is 61×40 px but it is 60×40 px"),
    ("voc", {"cls.xml": voc_xml("ok.jpg", (60, 40), [("zebra", (1, 1, 9, 9), 0, 0)])},
     "classes not in project 'pets': zebra (create them first, or import with --create-classes)"),
    ("voc", {"num.xml": voc_xml("ok.jpg", (60, 40), [("cat", ("a", 1, 9, 9), 0, 0)])},
     "object 1 (cat) xmin 'a' is not a number"),
])
def test_bad_voc_inputs_fail_with_a_clear_message_and_change_nothing(db, admin, project, tmp_path,
                                                                      fmt, files, expected):
    _bad_voc(tmp_path, **files)
    before = state(db, project["id"])
    report = importers.import_annotations(db, CLI_ACTOR, project["id"], tmp_path, fmt)
    assert not report.ok
    assert any(expected in e for e in report.errors), report.errors
    assert state(db, project["id"]) == before
    assert report.summary().startswith("import failed, nothing changed")


def test_bad_coco_inputs_are_named(db, admin, project, tmp_path):
    (tmp_path / "p.jpg").write_bytes(image_bytes((50, 40)))
    base = {"images": [{"id": 1, "file_name": "p.jpg", "width": 50, "height": 40}],
            "categories": [{"id": 1, "name": "cat"}]}
    cases = [
        ({**base, "annotations": [{"image_id": 1, "category_id": 9, "bbox": [1, 1, 5, 5]}]},
         "annotations[0]: unknown category id 9"),
        ({**base, "annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, 1, -5, 5]}]},
         "bbox [1, 1, -5, 5] has a negative width or height"),
        ({**base, "annotations": [{"image_id": 4, "category_id": 1, "bbox": [1, 1, 5, 5]}]},
         "annotations[0]: unknown image_id 4"),
        ({**base, "images": [{"id": 1, "file_name": "nope.jpg", "width": 5, "height": 5}]},
         "image 'nope.jpg' not found"),
        ({"images": "x"}, "not COCO detection JSON"),
    ]
    before = state(db, project["id"])
    for document, expected in cases:
        (tmp_path / "c.json").write_text(json.dumps(document))
        report = importers.import_annotations(db, CLI_ACTOR, project["id"], tmp_path / "c.json", "coco")
        assert any(expected in e for e in report.errors), (expected, report.errors)
    (tmp_path / "c.json").write_text("{not json")
    report = importers.import_annotations(db, CLI_ACTOR, project["id"], tmp_path / "c.json", "coco")
    assert report.errors[0].startswith(f"{tmp_path / 'c.json'}: not valid JSON")
    assert state(db, project["id"]) == before


def test_bad_csv_and_yolo_rows_are_named_by_line(db, admin, project, tmp_path):
    (tmp_path / "r.jpg").write_bytes(image_bytes((64, 48)))
    (tmp_path / "a.csv").write_text("filename,width,height,class,xmin,ymin,xmax,ymax\n"
                                    "r.jpg,64,48,cat,1,2,30,40\nmissing.jpg,64,48,cat,1,2,3,4\n"
                                    "r.jpg,64,48,cat,x,2,30,40\n")
    report = importers.import_annotations(db, CLI_ACTOR, project["id"], tmp_path / "a.csv", "csv")
    assert any("line 3: image 'missing.jpg' not found" in e for e in report.errors), report.errors
    assert any("line 4: coordinates x, 2, 30, 40 are not numbers" in e for e in report.errors)
    (tmp_path / "b.csv").write_text("name,box\nr.jpg,1\n")
    report = importers.import_annotations(db, CLI_ACTOR, project["id"], tmp_path / "b.csv", "csv")
    assert "is neither filename,width,height,class,xmin,ymin,xmax,ymax" in report.errors[0]
    yolo = tmp_path / "yolo"
    yolo.mkdir()
    (yolo / "classes.txt").write_text("cat\n")
    (yolo / "s.jpg").write_bytes(image_bytes((10, 10)))
    (yolo / "s.txt").write_text("3 0.5 0.5 0.1 0.1\n0 0.5 0.5\n")
    report = importers.import_annotations(db, CLI_ACTOR, project["id"], yolo, "yolo")
    assert any("line 1: unknown class id 3 (the names list has 1)" in e for e in report.errors)
    assert any("line 2: 3 values; YOLO boxes have 5" in e for e in report.errors)
    assert db["images"].count == 0


def test_a_failure_while_writing_rolls_everything_back(db, admin, project, labelimg):
    # Every check passes; the database itself refuses one box mid-transaction (a trigger
    # standing in for a full disk), after image files were already stored.
    db.execute("create trigger refuse after insert on annotations when new.xmin = 10 "
               "begin select raise(abort, 'disk full'); end")
    before = state(db, project["id"])
    with pytest.raises(Exception, match="disk full"):
        importers.import_annotations(db, CLI_ACTOR, project["id"], labelimg, "voc")
    assert state(db, project["id"]) == before  # rows rolled back, stored files removed


def test_classes_are_created_on_request_and_roles_are_checked(db, users, project, labelimg):
    (labelimg / "one.xml").write_text(voc_xml("one.jpg", (60, 40), [("zebra", (1, 2, 30, 39), 0, 0)]))
    with pytest.raises(PermissionError):
        importers.import_annotations(db, users["viewer"], project["id"], labelimg, "voc")
    refused = importers.import_annotations(db, users["reviewer"], project["id"], labelimg, "voc",
                                           create_classes=True)
    assert "creating classes (zebra) needs an admin" in refused.errors
    report = importers.import_annotations(db, users["admin"], project["id"], labelimg, "voc",
                                          create_classes=True)
    assert report.ok and report.classes_created == ["zebra"]
    assert projects.label_by_name(db, project["id"], "zebra")["label_map_id"] == 4


def test_cli_import_exit_codes(db, admin, project, labelimg, capsys):
    assert main(["import", "pets", str(labelimg), "--format", "voc"]) == 0
    assert "imported 3 images with 3 boxes" in capsys.readouterr().out
    (labelimg / "bad.xml").write_text("<oops")
    assert main(["import", "pets", str(labelimg), "--format", "voc"]) == 1
    assert "not valid VOC XML" in capsys.readouterr().out


# ---------------------------------------------------------------- label maps


@pytest.mark.parametrize("file,count,probe", [
    ("pascal_label_map.pbtxt", 20, ("aeroplane", 1)), ("mscoco_label_map.pbtxt", 80, ("toothbrush", 90))])
@needs_shared_tfod
def test_each_shared_tfod_label_map_imports_as_classes_keeping_its_ids(db, admin, file, count, probe):
    project = projects.create_project(db, admin, "coco")
    result = importers.import_label_map(db, CLI_ACTOR, project["id"], SHARED_TFOD / "label_maps" / file)
    assert len(result["created"]) == count
    labels = projects.list_labels(db, project["id"])
    assert len(labels) == count
    assert projects.label_by_name(db, project["id"], probe[0])["label_map_id"] == probe[1]
    if file.startswith("pascal"):
        assert result["notes"][0].endswith("id 0 ('none_of_the_above') is the background class; skipped")
        assert "none_of_the_above" not in {label["name"] for label in labels}
    else:
        assert projects.label_by_name(db, project["id"], "person")["display_name"] == "person"
        assert projects.get_project(db, project["id"])["next_label_map_id"] == 91
    again = importers.import_label_map(db, CLI_ACTOR, project["id"], SHARED_TFOD / "label_maps" / file)
    assert again["created"] == [] and len(again["existing"]) == count


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", ["tfrecord", "voc", "coco", "csv", "yolo"])
def test_round_trip_project_export_import_gives_the_same_images_and_boxes(db, admin, project, labeled, fmt):
    db.execute("update annotations set difficult = 1 where xmin = 1.5")
    version = dataset_versions.create_export(db, admin, project["id"], fmt, splits="train=0.5,val=0.5")
    target = projects.create_project(db, admin, f"copy-{fmt}")
    path = version.path
    if fmt == "tfrecord":
        path = path / "*.record-*"
    report = importers.import_annotations(db, CLI_ACTOR, target["id"], path, fmt, create_classes=True)
    assert report.ok, report.errors
    original = {r["sha256"]: r for r in db.query("select * from images where project_id = ? and status != 'new'",
                                                 [project["id"]])}
    copied = {r["sha256"]: r for r in db.query("select * from images where project_id = ?", [target["id"]])}
    assert set(copied) == set(original)  # the same stored bytes: nothing re-encoded
    before, after = boxes_by_file(db, project["id"]), boxes_by_file(db, target["id"])
    for sha, image in original.items():
        old, new = before[image["filename"]], after[copied[sha]["filename"]]
        assert len(old) == len(new), image["filename"]
        for a, b in zip(old, new):
            assert a[0] == b[0]
            assert all(abs(x - y) <= 0.5 for x, y in zip(a[1:5], b[1:5])), (a, b)
            if fmt in ("tfrecord", "voc", "coco"):
                assert a[5:] == b[5:]  # difficult / truncated kept
        assert copied[sha]["no_objects"] == (1 if not old else 0)


@needs_shared_tfod
def test_cli_imports_a_label_map_as_classes(db, admin, capsys):
    projects.create_project(db, admin, "voc")
    assert main(["import", "voc", str(SHARED_TFOD / "label_maps" / "pascal_label_map.pbtxt"),
                 "--format", "label_map"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("created 20 classes, 0 already existed")
    assert "id 0 ('none_of_the_above') is the background class; skipped" in out


def test_voc_filename_with_another_suffix_is_found_by_its_stem(db, admin, project, tmp_path):
    """DeepForest's VOC says OSBS_029.tif beside OSBS_029.png: the one image of that stem."""
    folder = tmp_path / "deepforest"
    folder.mkdir()
    (folder / "OSBS_029.png").write_bytes(image_bytes((40, 30), (20, 90, 20), fmt="PNG"))
    (folder / "OSBS_029.xml").write_text(voc_xml("OSBS_029.tif", (40, 30), [("cat", (1, 2, 13, 18), 0, 0)]))
    report = importers.import_annotations(db, CLI_ACTOR, project["id"], folder, "voc")
    assert report.ok, report.errors
    assert boxes_by_file(db, project["id"]) == {"OSBS_029.png": [("cat", 1.0, 2.0, 13.0, 18.0, 0, 0)]}
    assert report.notes == ["OSBS_029.xml: <filename> 'OSBS_029.tif' not found; using OSBS_029.png, "
                            "the one image of that stem"]
    # Two images of that stem: ambiguous, so the name's own reason stands and nothing changes.
    (folder / "OSBS_029.jpg").write_bytes(image_bytes((40, 30), (90, 20, 20)))
    other = projects.create_project(db, admin, "other", ["cat"])
    before = state(db, other["id"])
    report = importers.import_annotations(db, CLI_ACTOR, other["id"], folder, "voc")
    assert not report.ok and state(db, other["id"]) == before
    assert "image 'OSBS_029.tif' not found" in report.errors[0]


def test_class_names_match_ignoring_case_with_a_message_for_where_it_is_shown(db, admin, project,
                                                                              labelimg):
    (labelimg / "two.xml").write_text(voc_xml("two.jpg", (30, 30), [("Cat", (0, 0, 30, 30), 0, 0)]))
    (labelimg / "empty.xml").write_text(voc_xml("empty.jpg", (20, 20), [("Zebra", (1, 1, 9, 9), 0, 0),
                                                                       ("zebra", (2, 2, 9, 9), 0, 0)]))
    report = importers.import_annotations(db, CLI_ACTOR, project["id"], labelimg, "voc",
                                          create_hint="tick the box below")
    assert report.problems == ["classes not in project 'pets': Zebra (create them first, or tick the box below)"]
    report = importers.import_annotations(db, CLI_ACTOR, project["id"], labelimg, "voc", create_classes=True)
    assert report.ok, report.errors
    assert report.classes_created == ["Zebra"]
    assert "Cat imported as the class cat" in report.notes
    found = boxes_by_file(db, project["id"])
    assert found["two.jpg"] == [("cat", 0.0, 0.0, 30.0, 30.0, 0, 0)]
    assert [b[0] for b in found["empty.jpg"]] == ["Zebra", "Zebra"]
    assert sorted(label["name"] for label in projects.list_labels(db, project["id"])) == \
        ["Zebra", "bird", "cat", "dog"]
