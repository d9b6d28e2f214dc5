"""TFRecord dataset versions: records as the TF OD API decoder reads them, shards, label map,
manifest, pipeline snippet, sticky stratified splits, negatives, failures, roles, CLI."""
from __future__ import annotations

import glob
import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from backend import config_document, dataset_versions, images, projects, settings
from backend.__main__ import main
from backend.auth import CLI_ACTOR
from backend.formats import label_map
from tests.helpers import add_image
from tests.formats.tfod import parse_records
from tests.helpers import ZOO_FPNLITE_CONFIG


def test_every_exported_value_matches_sqlite_under_the_tfod_decoder_spec(db, admin, project, labeled):
    # A model box must not be exported: only human boxes are.
    db["annotations"].insert({"image_id": labeled["a.jpg"], "label_id": 1, "xmin": 1, "ymin": 1,
                              "xmax": 9, "ymax": 9, "source": "model", "score": 0.9})
    version = dataset_versions.create_export(db, admin, project["id"], shards=2, splits="train=0.5,val=0.5")
    records = parse_records(str(version.path / "*.record-*"))
    rows = {r["id"]: r for r in db.query("select * from images where project_id = ?", [project["id"]])}
    exported_ids = sorted(int(r["image/source_id"]) for r in records)
    assert exported_ids == sorted(i for name, i in labeled.items() if name != "new.jpg")
    for record in records:
        image = rows[int(record["image/source_id"])]
        stored = images.read_image_bytes(image)
        assert record["image/encoded"] == stored  # passed through, byte for byte
        assert record["image/key/sha256"] == hashlib.sha256(stored).hexdigest().encode() == image["sha256"].encode()
        assert record["image/format"] == image["format"].encode()
        assert (record["image/height"], record["image/width"]) == (image["height"], image["width"])
        assert record["image/filename"] == (Path(image["filename"]).stem + (".png" if image["format"] == "png" else ".jpg")).encode()
        assert Path(record["file"]).name.startswith(image["split"] + ".record-")
        boxes = _human_boxes(db, image)
        w, h = image["width"], image["height"]
        assert record["image/object/bbox/xmin"] == [np.float32(b["xmin"] / w) for b in boxes]
        assert record["image/object/bbox/ymin"] == [np.float32(b["ymin"] / h) for b in boxes]
        assert record["image/object/bbox/xmax"] == [np.float32(b["xmax"] / w) for b in boxes]
        assert record["image/object/bbox/ymax"] == [np.float32(b["ymax"] / h) for b in boxes]
        assert record["image/object/class/label"] == [b["label_map_id"] for b in boxes]
        assert record["image/object/class/text"] == [b["name"].encode() for b in boxes]
        assert record["image/object/difficult"] == [0] * len(boxes)
    # image/object/truncated is not in the decoder's spec; read it with Boxwise's own decoder.
    from backend.formats import tfrecord
    for _, _, decoded in tfrecord.iter_examples(str(version.path / "*.record-*")):
        assert decoded.features["image/object/truncated"] == [0] * len(decoded.boxes())
    by_name = {rows[int(r["image/source_id"])]["filename"]: r for r in records}
    assert by_name["neg.jpg"]["image/object/bbox/xmin"] == []  # the negative: zero boxes
    assert by_name["a.jpg"]["image/object/class/text"] == [b"cat", b"dog"]
    assert by_name["a.jpg"]["image/object/bbox/xmin"] == [np.float32(1.5 / 64), np.float32(10 / 64)]


def test_shards_are_named_tfod_style_with_example_i_in_shard_i_mod_n(db, admin, project, labeled):
    add_image(db, admin, project["id"], "f.jpg", color=(1, 2, 3), boxes=[("dog", 1, 1, 20, 20)])
    version = dataset_versions.create_export(db, admin, project["id"], shards=3, splits="train=1")
    names = sorted(p.name for p in version.path.iterdir())
    assert names == ["label_map.pbtxt", "manifest.json", "pipeline_snippet.config",
                     "train.record-00000-of-00003", "train.record-00001-of-00003",
                     "train.record-00002-of-00003"]
    sizes = [len(parse_records(str(version.path / f"train.record-0000{i}-of-00003"))) for i in range(3)]
    assert sizes == [3, 2, 2]  # 7 examples: i mod 3
    assert version.shard_globs == {"train": str(version.path / "train.record-?????-of-00003")}
    assert len(glob.glob(version.shard_globs["train"])) == 3


def test_shards_never_outnumber_examples(db, admin, project, labeled):
    version = dataset_versions.create_export(db, admin, project["id"], shards=10, splits="train=0.8,val=0.2")
    assert version.params["shards"]["val"] == version.counts["images"]["val"]
    assert version.params["shards"]["train"] == version.counts["images"]["train"] == 4


def test_label_map_has_the_project_ids_from_one(db, admin, project, labeled):
    version = dataset_versions.create_export(db, admin, project["id"])
    parsed = label_map.read(version.label_map_path)
    assert [(i.id, i.name) for i in parsed.items] == [(1, "cat"), (2, "dog"), (3, "bird")]
    assert parsed.notes == []
    assert version.num_classes == 3
    assert version.label_map_path.read_text().startswith("item {\n  id: 1\n  name: 'cat'\n")


def test_manifest_lists_parameters_counts_and_every_file_with_its_sha256(db, admin, project, labeled):
    version = dataset_versions.create_export(db, admin, project["id"], shards=1, seed=7,
                                    splits="train=0.5,val=0.5,test=0")
    manifest = json.loads(version.manifest_path.read_text())
    folder = version.path
    on_disk = {p.name for p in folder.iterdir()} - {"manifest.json", "pipeline_snippet.config"}
    assert set(manifest["files"]) == on_disk
    for name, entry in manifest["files"].items():
        data = (folder / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    assert manifest["parameters"]["seed"] == 7
    assert manifest["parameters"]["splits"] == {"train": 0.5, "val": 0.5, "test": 0.0}
    assert manifest["parameters"]["statuses"] == ["labeled", "reviewed"]
    counts = manifest["counts"]
    assert counts["total_images"] == 6 and counts["total_boxes"] == 7
    assert sum(counts["images"].values()) == 6 and "test" not in counts["images"]
    per_class = {}
    for split_counts in counts["boxes"].values():
        for name, n in split_counts.items():
            per_class[name] = per_class.get(name, 0) + n
    assert per_class == {"cat": 3, "dog": 2, "bird": 2}
    assert sum(counts["negatives"].values()) == 1
    assert manifest["counts"] == version.counts


def test_pipeline_snippet_drops_into_a_real_tfod_config(db, admin, project, labeled):
    version = dataset_versions.create_export(db, admin, project["id"], shards=2)
    snippet = config_document.parse(version.pipeline_snippet_path.read_text())
    train = snippet.one("train_input_reader")
    assert train.one("label_map_path") == str(version.label_map_path)
    assert train.one("tf_record_input_reader").one("input_path") == version.shard_globs["train"]
    evaluation = snippet.one("eval_input_reader")
    assert evaluation.one("tf_record_input_reader").one("input_path") == version.shard_globs["val"]
    doc = config_document.load(ZOO_FPNLITE_CONFIG)
    doc.set("train_input_reader.tf_record_input_reader.input_path", version.shard_globs["train"])
    doc.set("train_input_reader.label_map_path", str(version.label_map_path))
    assert len(glob.glob(doc.get("train_input_reader.tf_record_input_reader.input_path"))) == \
        version.params["shards"]["train"]


def test_splits_are_sticky_across_exports_until_reshuffled(db, admin, project, labeled):
    first = dataset_versions.create_export(db, admin, project["id"], seed=1, splits="train=0.5,val=0.5")
    stored = {r["id"]: r["split"] for r in db.query("select id, split from images where status != 'new'")}
    assert set(stored.values()) == {"train", "val"}
    new_id = add_image(db, admin, project["id"], "late.jpg", color=(9, 9, 99), boxes=[("cat", 1, 1, 9, 9)])
    dataset_versions.create_export(db, admin, project["id"], seed=99, splits="train=0.9,val=0.1")
    again = {r["id"]: r["split"] for r in db.query("select id, split from images where status != 'new'")}
    assert {i: again[i] for i in stored} == stored
    assert again[new_id] in ("train", "val")
    dataset_versions.create_export(db, admin, project["id"], seed=1, splits="train=0.5,val=0.5", reshuffle=True)
    reshuffled = {r["id"]: r["split"] for r in db.query("select id, split from images where status != 'new'")}
    assert sum(1 for s in reshuffled.values() if s == "train") in (3, 4)
    assert first.counts["images"] == {"train": 3, "val": 3}


def _pool(classes_per_image):
    return [{"id": n, "sha256": f"{n:064x}", "split": None, "classes": set(c)}
            for n, c in enumerate(classes_per_image, start=1)]


def test_split_assignment_is_deterministic_for_a_seed():
    pool = _pool([["a"]] * 20 + [["b"]] * 7 + [[]] * 5)
    ratios = {"train": 0.7, "val": 0.2, "test": 0.1}
    assert dataset_versions.assign_splits(pool, ratios, 3) == dataset_versions.assign_splits(pool, ratios, 3)
    assert dataset_versions.assign_splits(pool, ratios, 3) != dataset_versions.assign_splits(pool, ratios, 4)


def test_split_assignment_puts_every_class_in_every_split_when_possible():
    pool = _pool([["common"]] * 40 + [["rare"]] * 3 + [["common", "rare2"]] * 3 + [[]] * 4)
    result = dataset_versions.assign_splits(pool, {"train": 0.8, "val": 0.1, "test": 0.1}, 0)
    for name in ("common", "rare", "rare2"):
        splits = {result[i["id"]] for i in pool if name in i["classes"]}
        assert splits == {"train", "val", "test"}, name
    counts = {s: sum(1 for v in result.values() if v == s) for s in ("train", "val", "test")}
    assert counts == {"train": 40, "val": 5, "test": 5}


def test_split_assignment_keeps_stored_splits_and_only_places_new_images():
    pool = _pool([["a"]] * 10)
    for image in pool[:4]:
        image["split"] = "val"
    result = dataset_versions.assign_splits(pool, {"train": 0.5, "val": 0.5}, 0)
    assert [result[i["id"]] for i in pool[:4]] == ["val"] * 4
    assert sorted(result.values()).count("train") == 5
    dropped = dataset_versions.assign_splits(pool, {"train": 1.0, "val": 0.0}, 0)
    assert set(dropped.values()) == {"train"}  # a split set to 0 gives its images back


def test_status_filter_chooses_images(db, admin, project, labeled):
    version = dataset_versions.create_export(db, admin, project["id"], statuses="reviewed", splits="train=1")
    assert version.counts["images"] == {"train": 1}
    with pytest.raises(Exception, match="no images with status skipped"):
        dataset_versions.create_export(db, admin, project["id"], statuses="skipped")


def test_interrupted_export_leaves_no_complete_looking_dataset(db, admin, project, labeled):
    gone = images.get_image(db, labeled["c.png"])
    images.image_file(gone).unlink()  # a shard writer fails half way
    with pytest.raises(FileNotFoundError):
        dataset_versions.create_export(db, admin, project["id"], shards=2)
    root = settings.subdir("exports")
    assert [p for p in root.rglob("*") if p.is_file()] == []
    assert db["exports"].count == 0
    assert {r["split"] for r in db.query("select split from images")} == {None}


def test_viewers_and_labelers_cannot_export(db, users, project, labeled):
    for role in ("viewer", "labeler"):
        with pytest.raises(PermissionError):
            dataset_versions.create_export(db, users[role], project["id"])
    assert dataset_versions.create_export(db, users["reviewer"], project["id"]).number == 1


def test_versions_are_listed_newest_first_and_zip_for_download(db, admin, project, labeled):
    dataset_versions.create_export(db, admin, project["id"])
    second = dataset_versions.create_export(db, admin, project["id"], fmt="tfrecord", shards=2)
    listed = dataset_versions.list_versions(db, project["id"])
    assert [v.number for v in listed] == [2, 1]
    assert listed[0].id == second.id
    zipped = dataset_versions.export_zip(db, CLI_ACTOR, second.id)
    folder = second.path
    with zipfile.ZipFile(zipped) as archive:
        assert sorted(archive.namelist()) == sorted(
            f"{folder.name}/{p.name}" for p in folder.iterdir())
        assert archive.read(f"{folder.name}/label_map.pbtxt") == (folder / "label_map.pbtxt").read_bytes()
    balance = second.class_balance()
    assert sum(r["boxes"] for r in balance) == 7


def test_a_dataset_version_is_one_frozen_type_with_paths_wherever_it_comes_from(db, admin, project, labeled):
    import dataclasses

    written = dataset_versions.create_export(db, admin, project["id"], shards=2, splits="train=0.5,val=0.5")
    dataset_versions.create_export(db, admin, project["id"], fmt="coco", splits="train=1")
    third = dataset_versions.create_export(db, admin, project["id"], shards=1, splits="train=1")
    assert type(written) is dataset_versions.DatasetVersion
    assert dataset_versions.get_version(db, written.id) == written
    assert [v.number for v in dataset_versions.list_versions(db, project["id"])] == [3, 2, 1]
    assert dataset_versions.list_versions(db, project["id"], fmt="tfrecord") == [third, written]
    assert dataset_versions.latest_version(db, project["id"]) == third   # the newest TFRecord one
    assert [v.format for v in dataset_versions.list_versions(db, project["id"], fmt="coco")] == ["coco"]
    assert (written.path, written.label_map_path, written.manifest_path, written.pipeline_snippet_path) == (
        settings.data_dir() / "exports" / f"project-{project['id']}" / written.path.name,
        written.path / "label_map.pbtxt", written.path / "manifest.json", written.path / "pipeline_snippet.config")
    assert (written.number, written.project_id, written.num_classes, written.exists) == (1, project["id"], 3, True)
    assert (written.train_glob, written.eval_glob) == (str(written.path / "train.record-?????-of-00002"),
                                                       str(written.path / "val.record-?????-of-00002"))
    assert written.title() == f"v1 (#{written.id}; 3 classes; train, val)"
    with pytest.raises(dataclasses.FrozenInstanceError):
        written.num_classes = 4
    with pytest.raises(Exception, match="no dataset version with id 999"):
        dataset_versions.get_version(db, 999)


def test_cli_export_copies_the_version_and_points_the_snippet_at_the_copy(db, admin, project, labeled, tmp_path):
    out = tmp_path / "out"
    code = main(["export", "pets", str(out), "--format", "tfrecord", "--shards", "2",
                 "--split", "train=0.5,val=0.5,test=0", "--seed", "3", "--status", "labeled,reviewed"])
    assert code == 0
    assert (out / "train.record-00000-of-00002").is_file()
    snippet = config_document.parse((out / "pipeline_snippet.config").read_text())
    assert snippet.one("train_input_reader").one("label_map_path") == str(out / "label_map.pbtxt")
    assert len(glob.glob(snippet.one("train_input_reader").one("tf_record_input_reader").one("input_path"))) == 2
    assert main(["export", "pets", str(out)]) == 3  # invalid: not empty: refused, nothing overwritten
    assert main(["export", "nope", str(tmp_path / "x")]) == 4  # not found


def test_bad_export_parameters_are_refused(db, admin, project, labeled):
    for splits, message in (("train=abc", "not a number"), ("train=0,val=0", "above 0"),
                            ("train", "name=ratio"), ("train=-1", ">= 0")):
        with pytest.raises(Exception, match=message):
            dataset_versions.create_export(db, admin, project["id"], splits=splits)
    with pytest.raises(Exception, match="format must be one of"):
        dataset_versions.create_export(db, admin, project["id"], fmt="parquet")
    with pytest.raises(Exception, match="shards must be"):
        dataset_versions.create_export(db, admin, project["id"], shards=0)


def test_deleted_class_ids_leave_a_gap_and_num_classes_is_the_largest_id(db, admin, project):
    projects.delete_label(db, admin, projects.label_by_name(db, project["id"], "dog")["id"])
    add_image(db, admin, project["id"], "x.jpg", boxes=[("bird", 1, 1, 20, 20)])
    version = dataset_versions.create_export(db, admin, project["id"], splits="train=1")
    assert [(c["id"], c["name"]) for c in version.classes] == [(1, "cat"), (3, "bird")]
    assert version.num_classes == 3
    record = parse_records(version.shard_globs["train"])[0]
    assert record["image/object/class/label"] == [3]


def _human_boxes(db, image: dict) -> list[dict]:
    """The image's human boxes from SQLite with their class name and label-map id, in id order."""
    return list(db.query("""select annotations.*, labels.name, labels.label_map_id from annotations
                            join labels on labels.id = annotations.label_id
                            where image_id = ? and source = 'human' order by annotations.id""", [image["id"]]))


def _expected_example(db, image: dict):
    """The tf.train.Example of a stored image, built with TensorFlow's own classes from SQLite."""
    import tensorflow as tf

    boxes = _human_boxes(db, image)
    w, h = image["width"], image["height"]
    stored = images.read_image_bytes(image)
    name = Path(image["filename"]).stem + (".png" if image["format"] == "png" else ".jpg")
    lists = {
        "image/encoded": [stored], "image/format": [image["format"].encode()], "image/height": [h],
        "image/width": [w], "image/filename": [name.encode()], "image/source_id": [str(image["id"]).encode()],
        "image/key/sha256": [hashlib.sha256(stored).hexdigest().encode()],
        "image/object/bbox/xmin": [b["xmin"] / w for b in boxes], "image/object/bbox/ymin": [b["ymin"] / h for b in boxes],
        "image/object/bbox/xmax": [b["xmax"] / w for b in boxes], "image/object/bbox/ymax": [b["ymax"] / h for b in boxes],
        "image/object/class/text": [b["name"].encode() for b in boxes],
        "image/object/class/label": [b["label_map_id"] for b in boxes],
        "image/object/difficult": [b["difficult"] for b in boxes],
        "image/object/truncated": [b["truncated"] for b in boxes]}
    example = tf.train.Example()
    for key, values in lists.items():
        feature = example.features.feature[key]
        kind = ("float_list" if key.startswith("image/object/bbox/") else
                "bytes_list" if key in ("image/encoded", "image/format", "image/filename", "image/source_id",
                                        "image/key/sha256", "image/object/class/text") else "int64_list")
        getattr(feature, kind).value.extend(values)
        getattr(feature, kind).SetInParent()
    return example


def test_shards_are_the_bytes_tensorflows_writer_makes_and_the_manifest_hashes_the_files(db, admin, project, labeled, tmp_path):
    import tensorflow as tf

    version = dataset_versions.create_export(db, admin, project["id"], shards=2, splits="train=0.5,val=0.5")
    manifest = json.loads(version.manifest_path.read_text())
    rows = {r["id"]: r for r in db.query("select * from images where project_id = ?", [project["id"]])}
    shards = sorted(version.path.glob("*.record-*"))
    assert [s.name for s in shards] == ["train.record-00000-of-00002", "train.record-00001-of-00002",
                                        "val.record-00000-of-00002", "val.record-00001-of-00002"]
    seen = []
    for shard in shards:
        # TFRecordDataset checks the length CRC and the data CRC of every record.
        records = [raw.numpy() for raw in tf.data.TFRecordDataset(str(shard))]
        for raw in records:
            example = tf.train.Example.FromString(raw)
            image = rows[int(example.features.feature["image/source_id"].bytes_list.value[0])]
            assert example == _expected_example(db, image)
            seen.append(image["id"])
        reference = tmp_path / shard.name
        with tf.io.TFRecordWriter(str(reference)) as writer:
            for raw in records:
                writer.write(raw)
        on_disk = shard.read_bytes()
        assert on_disk == reference.read_bytes()  # framing byte for byte as TensorFlow writes it
        assert manifest["files"][shard.name] == {"sha256": hashlib.sha256(on_disk).hexdigest(),
                                                 "bytes": len(on_disk)}
    assert sorted(seen) == sorted(i for name, i in labeled.items() if name != "new.jpg")


def test_a_shard_written_through_short_writes_is_complete(tmp_path, monkeypatch):
    from backend.formats import tfrecord
    from backend.formats.records import ExportBox, ExportImage

    sources = []
    for number in range(3):
        source = tmp_path / f"{number}.jpg"
        source.write_bytes(bytes(range(256)) * (40 + number))
        sources.append(ExportImage(number, source.name, source, 64, 48, "jpeg", "ab" * 32, "train",
                                   [ExportBox("car", 1.0, 2.0, 30.0, 40.0, label_map_id=1)]))
    whole = tfrecord.write_shard(tmp_path / "whole.record", sources)
    real_writev = tfrecord.os.writev
    monkeypatch.setattr(tfrecord.os, "writev", lambda fd, buffers: real_writev(fd, [bytes(buffers[0])[:1000]]))
    short = tfrecord.write_shard(tmp_path / "short.record", sources)
    assert (tmp_path / "short.record").read_bytes() == (tmp_path / "whole.record").read_bytes()
    assert short == whole == hashlib.sha256((tmp_path / "whole.record").read_bytes()).hexdigest()


def test_encoded_example_equals_the_one_protobuf_builds_and_negatives_keep_typed_empty_lists(tmp_path):
    import tensorflow as tf

    from backend.formats import tf_example
    from backend.formats.records import ExportBox, ExportImage

    data = b"\xff\xd8 image bytes" * 1000
    image = ExportImage(7, "x.jpg", tmp_path / "x.jpg", 640, 480, "jpeg", "ab" * 32, "train",
                        [ExportBox("car", 64.0, 48.0, 320.0, 240.0, 1, 0, label_map_id=3)])
    ours = tf.train.Example.FromString(tf_example.encode_example(image, data))
    expected = tf.train.Example()
    f = expected.features.feature
    f["image/encoded"].bytes_list.value.append(data)
    f["image/format"].bytes_list.value.append(b"jpeg")
    f["image/height"].int64_list.value.append(480)
    f["image/width"].int64_list.value.append(640)
    f["image/filename"].bytes_list.value.append(b"x.jpg")
    f["image/source_id"].bytes_list.value.append(b"7")
    f["image/key/sha256"].bytes_list.value.append(b"ab" * 32)
    for key, value in (("xmin", 0.1), ("ymin", 0.1), ("xmax", 0.5), ("ymax", 0.5)):
        f[f"image/object/bbox/{key}"].float_list.value.append(value)
    f["image/object/class/text"].bytes_list.value.append(b"car")
    f["image/object/class/label"].int64_list.value.append(3)
    f["image/object/difficult"].int64_list.value.append(1)
    f["image/object/truncated"].int64_list.value.append(0)
    assert ours == expected
    negative = tf.train.Example.FromString(tf_example.encode_example(
        ExportImage(8, "n.png", tmp_path / "n.png", 10, 10, "png", "cd" * 32, "val", []), b"png"))
    kinds = {k: v.WhichOneof("kind") for k, v in negative.features.feature.items()}
    assert kinds["image/object/bbox/xmin"] == "float_list"
    assert kinds["image/object/class/label"] == "int64_list"
    assert kinds["image/object/class/text"] == "bytes_list"


def test_export_without_checksums_lists_shards_without_sha256(db, admin, project, labeled):
    version = dataset_versions.create_export(db, admin, project["id"], splits="train=1", checksums=False)
    manifest = json.loads(version.manifest_path.read_text())
    assert manifest["files"]["train.record-00000-of-00001"]["sha256"] is None
    assert manifest["files"]["label_map.pbtxt"]["sha256"] == hashlib.sha256(
        version.label_map_path.read_bytes()).hexdigest()
    assert manifest["parameters"]["checksums"] is False


def test_the_trainers_input_pipeline_reads_an_export(db, admin, project, labeled):
    import tensorflow as tf

    from backend.training import data
    version = dataset_versions.create_export(db, admin, project["id"], shards=2, splits="train=1")
    files = sorted(glob.glob(version.shard_globs["train"]))
    rows = {r["id"]: r for r in db.query("select * from images")}
    seen = 0
    for raw in tf.data.TFRecordDataset(files):
        parsed = data.parse_example(raw)
        image = rows[int(parsed["source_id"].numpy())]
        assert tuple(parsed["image"].shape) == (image["height"], image["width"], 3)
        boxes = list(db.query("""select annotations.*, labels.label_map_id from annotations join labels
                                 on labels.id = label_id where image_id = ? order by annotations.id""", [image["id"]]))
        assert parsed["classes"].numpy().tolist() == [b["label_map_id"] for b in boxes]
        expected = [[np.float32(b["ymin"] / image["height"]), np.float32(b["xmin"] / image["width"]),
                     np.float32(b["ymax"] / image["height"]), np.float32(b["xmax"] / image["width"])] for b in boxes]
        assert parsed["boxes"].numpy().tolist() == expected
        seen += 1
    assert seen == 6
