"""Opening, validating and extracting TF OD API record sets (plain, sharded, GZIP)."""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from backend import dataset_versions, images
from backend.__main__ import main
from backend.errors import NotFound
from backend.formats import label_map, tfrecord, tfrecord_checks, tfrecord_framing, tfrecord_preview
from tests.formats.tfod import example, write_records
from tests.helpers import good_features as good, image_bytes

LABEL_MAP = "item { id: 1 name: 'cat' }\nitem { id: 2 name: 'dog' }\n"


@pytest.fixture
def bad_set(tmp_path):
    """Two shards with one problem per record after the first."""
    (tmp_path / "label_map.pbtxt").write_text(LABEL_MAP)
    outside = good(b"2", boxes=((12.0, 5.0, 30.0, 25.0, 1, b"cat"),))
    inverted = good(b"3", boxes=((0.6, 0.2, 0.5, 0.6, 2, b"dog"),))
    unequal = good(b"4")
    unequal["image/object/bbox/ymax"] = [0.6, 0.7]
    missing = good(b"5", boxes=((0.1, 0.1, 0.2, 0.2, 7, b"cat"),))
    disagree = good(b"6", boxes=((0.1, 0.1, 0.2, 0.2, 2, b"cat"),))
    undecodable = good(b"7")
    undecodable["image/encoded"] = [b"\xff\xd8\xff not really a jpeg"]
    undecodable["image/key/sha256"] = [hashlib.sha256(b"\xff\xd8\xff not really a jpeg").hexdigest().encode()]
    duplicate = good(b"1")
    write_records(tmp_path / "bad.record-00000-of-00002",
                  [example(good(b"1")), example(outside), example(unequal), example(disagree)])
    write_records(tmp_path / "bad.record-00001-of-00002",
                  [example(inverted), example(missing), example(undecodable), example(duplicate)])
    return tmp_path


def test_a_boxwise_export_inspects_clean(db, admin, project, labeled):
    version = dataset_versions.create_export(db, admin, project["id"], shards=2, splits="train=1")
    parsed = label_map.read(version.label_map_path)
    result = tfrecord_checks.inspect(version.shard_globs["train"], parsed)
    assert result.problems == []
    assert result.examples == 6 and result.boxes == 7 and result.negatives == 1
    assert result.classes == {"1 cat": 3, "2 dog": 2, "3 bird": 2}
    assert list(result.files.values()) == [3, 3]


def test_every_kind_of_problem_is_reported_with_file_and_record_index(bad_set):
    result = tfrecord_checks.inspect(str(bad_set / "bad.record-?????-of-00002"),
                              label_map.read(bad_set / "label_map.pbtxt"))
    first, second = str(bad_set / "bad.record-00000-of-00002"), str(bad_set / "bad.record-00001-of-00002")
    found = [(Path(p.file).name[-14:], p.index, p.message) for p in result.problems]
    messages = {(p.file, p.index): p.message for p in result.problems}
    assert (first, 0) not in messages
    assert "outside [0, 1]" in messages[(first, 1)]
    assert messages[(first, 2)] == ("per-box lists have different lengths: bbox/xmin=1, bbox/ymin=1, "
                                    "bbox/xmax=1, bbox/ymax=2, class/label=1, class/text=1")
    assert messages[(first, 3)] == ("box 0: class text 'cat' and label 2 disagree "
                                    "(the label map says 2 is 'dog')")
    assert messages[(second, 0)].startswith("box 0: inverted (xmin 0.6, xmax 0.5")
    assert messages[(second, 1)] == "box 0: class label 7 is not in the label map"
    assert messages[(second, 2)].startswith("image/encoded does not decode:")
    assert messages[(second, 3)] == f"duplicate source_id '1' (first in {first} record 0)"
    assert len(found) == 7
    assert result.examples == 8


def test_cli_inspect_exits_1_on_problems_and_0_on_a_clean_set(bad_set, capsys, tmp_path):
    assert main(["tfrecord", "inspect", str(bad_set / "bad.record-*"), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["label_map"] == str(bad_set / "label_map.pbtxt")  # found beside the records
    assert report["examples"] == 8 and len(report["problems"]) == 7
    assert report["problems"][0]["index"] == 1 and report["problems"][0]["file"].endswith("00000-of-00002")
    clean = tmp_path / "clean"
    clean.mkdir()
    write_records(clean / "one.tfrecord", [example(good(b"a")), example(good(b"b"))])
    assert main(["tfrecord", "inspect", str(clean / "one.tfrecord")]) == 0
    out = capsys.readouterr().out
    assert "2 examples, 2 boxes, 0 without boxes" in out and "0 problems" in out
    assert main(["tfrecord", "inspect", str(tmp_path / "nothing-*.record")]) == 4  # not found


def test_gzip_records_are_opened_inspected_and_extracted(tmp_path):
    path = tmp_path / "train.record.gz"
    write_records(path, [example(good(b"g1")), example(good(b"g2", size=(20, 10)))], compression="GZIP")
    assert tfrecord_framing.is_gzip(path)
    result = tfrecord_checks.inspect(str(path))
    assert result.compressed == {str(path): True}
    assert result.examples == 2 and result.problems == []
    extracted = tfrecord_preview.extract(str(path), tmp_path / "out")
    assert extracted.written == ["g1.jpg", "g2.jpg"]
    assert (tmp_path / "out" / "g2.jpg").read_bytes() == image_bytes((20, 10))


def test_a_truncated_file_is_a_problem_at_the_broken_record(tmp_path):
    path = tmp_path / "cut.record"
    write_records(path, [example(good(b"1")), example(good(b"2"))])
    data = path.read_bytes()
    path.write_bytes(data[:-30])
    result = tfrecord_checks.inspect(str(path))
    assert [(p.index, p.message) for p in result.problems] == [(1, "truncated record (file cut short?)")]
    not_records = tmp_path / "notes.record"
    not_records.write_bytes(b"this is a text file, not records\n")
    assert [p.message for p in tfrecord_checks.inspect(str(not_records)).problems] == [
        "bad record header checksum (not a TFRecord file, or corrupt)"]


def test_extract_raw_gives_the_stored_bytes_and_drawn_gives_same_size_images(db, admin, project, labeled, tmp_path):
    version = dataset_versions.create_export(db, admin, project["id"], splits="train=1")
    raw = tfrecord_preview.extract(version.shard_globs["train"], tmp_path / "raw")
    assert sorted(raw.written) == ["a.jpg", "b.jpg", "c.png", "d.jpg", "e.jpg", "neg.jpg"]
    for name, image_id in labeled.items():
        if name != "new.jpg":
            assert (tmp_path / "raw" / name).read_bytes() == images.read_image_bytes(images.get_image(db, image_id))
    drawn = tfrecord_preview.extract(version.shard_globs["train"], tmp_path / "drawn.zip", draw=True)
    assert drawn.problems == []
    with zipfile.ZipFile(tmp_path / "drawn.zip") as archive:
        assert sorted(archive.namelist()) == sorted(raw.written)
        picture = Image.open(io.BytesIO(archive.read("a.jpg")))
        assert picture.size == (64, 48)
        # The cat box's left edge (x = 1.5 px) is drawn in the first class colour, not red.
        assert picture.convert("RGB").getpixel((2, 20)) != Image.open(tmp_path / "raw" / "a.jpg").convert("RGB").getpixel((2, 20))
    assert main(["tfrecord", "extract", version.shard_globs["train"], str(tmp_path / "cli"), "--draw"]) == 0
    assert len(list((tmp_path / "cli").iterdir())) == 6


def test_paging_reads_examples_across_files_and_decodes_features(bad_set):
    pattern = str(bad_set / "bad.record-*")
    page = tfrecord.read_page(pattern, 3, 2)
    assert [(Path(e.file).name, e.index) for e in page] == [("bad.record-00000-of-00002", 3),
                                                            ("bad.record-00001-of-00002", 0)]
    rows = {r["feature"]: r for r in page[1].feature_rows()}
    assert rows["image/object/class/text"] == {"feature": "image/object/class/text", "type": "bytes",
                                               "count": 1, "values": "dog"}
    assert rows["image/height"]["values"] == "30"
    assert page[0].boxes()[0]["label"] == 2
    assert tfrecord_preview.preview(tfrecord.read_page(pattern, 0, 1)[0]).size == (40, 30)
    with pytest.raises(NotFound):
        tfrecord_framing.resolve(str(bad_set / "missing-*"))


def test_without_a_label_map_text_and_id_must_agree_across_the_set(tmp_path):
    path = tmp_path / "mixed.record"
    write_records(path, [example(good(b"1")), example(good(b"2", boxes=((0.1, 0.1, 0.2, 0.2, 2, b"cat"),)))])
    result = tfrecord_checks.inspect(str(path))
    assert [(p.index, p.message) for p in result.problems] == [
        (1, f"box 0: class text 'cat' has label 2 here but 1 in {path} record 0")]


def test_a_sharded_set_opens_by_glob_folder_or_at_n_shorthand(db, admin, project, labeled):
    version = dataset_versions.create_export(db, admin, project["id"], shards=3, splits="train=1")
    folder = version.path
    by_glob = tfrecord_framing.resolve(version.shard_globs["train"])
    assert [p.name for p in by_glob] == [f"train.record-0000{i}-of-00003" for i in range(3)]
    assert tfrecord_framing.resolve(str(folder)) == by_glob
    assert tfrecord_framing.resolve(f"{folder}/train.record@3") == by_glob
    assert tfrecord_framing.resolve(f"{by_glob[0]},{by_glob[2]}") == [by_glob[0], by_glob[2]]
