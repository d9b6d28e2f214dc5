"""backend/tf_protos: the subsets of TensorFlow's Example, Event and SavedModel protos that
Boxwise reads without TensorFlow. Checked against protoc's output, against TensorFlow's own
descriptors field by field, and on real bytes TensorFlow wrote."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from backend import events, inference
from backend.formats import tf_example
from backend.formats.records import ExportBox, ExportImage
from backend.tf_protos import event_pb2, example_pb2, saved_model_pb2
from tests.helpers import SMALL128, image_bytes

REPO = Path(__file__).resolve().parents[1]
PROTOS = sorted((REPO / "backend" / "tf_protos").glob("*.proto"))


def test_the_checked_in_modules_are_what_protoc_writes(tmp_path):
    assert [p.name for p in PROTOS] == ["event.proto", "example.proto", "saved_model.proto"]
    out = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I.", f"--python_out={tmp_path}",
                          *(str(p.relative_to(REPO)) for p in PROTOS)],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for proto in PROTOS:
        generated = tmp_path / "backend" / "tf_protos" / f"{proto.stem}_pb2.py"
        assert generated.read_text() == proto.with_name(f"{proto.stem}_pb2.py").read_text(), \
            f"{proto.stem}_pb2.py is stale: run make proto"


def test_every_field_is_tensorflows_own_name_number_type_and_label():
    from tensorflow.core.example import example_pb2 as tf_example_pb2, feature_pb2
    from tensorflow.core.framework import summary_pb2, tensor_pb2, tensor_shape_pb2
    from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2 as tf_saved_model
    from tensorflow.core.util import event_pb2 as tf_event

    theirs = {
        "BytesList": feature_pb2.BytesList, "FloatList": feature_pb2.FloatList,
        "Int64List": feature_pb2.Int64List, "Feature": feature_pb2.Feature,
        "Features": feature_pb2.Features, "Example": tf_example_pb2.Example,
        "TensorProto": tensor_pb2.TensorProto, "Summary": summary_pb2.Summary,
        "Summary.Value": summary_pb2.Summary.Value, "Event": tf_event.Event,
        "TensorShapeProto": tensor_shape_pb2.TensorShapeProto,
        "TensorShapeProto.Dim": tensor_shape_pb2.TensorShapeProto.Dim,
        "TensorInfo": meta_graph_pb2.TensorInfo, "SignatureDef": meta_graph_pb2.SignatureDef,
        "MetaGraphDef": meta_graph_pb2.MetaGraphDef, "SavedModel": tf_saved_model.SavedModel,
    }
    ours = {}
    for module in (example_pb2, event_pb2, saved_model_pb2):
        for message in module.DESCRIPTOR.message_types_by_name.values():
            ours[message.name] = message
            ours.update({f"{message.name}.{n.name}": n for n in message.nested_types if not n.GetOptions().map_entry})
    assert sorted(ours) == sorted(theirs)
    checked = 0
    for name, mine in ours.items():
        tf_message = theirs[name].DESCRIPTOR
        for field in mine.fields:
            other = tf_message.fields_by_name[field.name]
            # TensorFlow's DataType enum is read as its int32 value here (the same varint on the wire).
            other_type = field.TYPE_INT32 if other.type == field.TYPE_ENUM else other.type
            assert (field.number, field.type, field.is_repeated) == (other.number, other_type, other.is_repeated), \
                f"{name}.{field.name}"
            if field.containing_oneof is not None:
                assert other.containing_oneof.name == field.containing_oneof.name, f"{name}.{field.name}"
            checked += 1
    assert checked == 34


def test_an_example_boxwise_writes_reads_the_same_through_tensorflow_and_the_subset():
    from tensorflow.core.example import example_pb2 as tf_example_pb2

    import hashlib

    data = image_bytes((64, 48))
    image = ExportImage(image_id=7, file_name="a.jpg", source=Path("a.jpg"), width=64, height=48, format="jpeg",
                        sha256=hashlib.sha256(data).hexdigest(), split="train",
                        boxes=[ExportBox("cat", 1.5, 2.25, 30.5, 40.0, 0, 1, label_map_id=1),
                               ExportBox("dog", 10, 10, 60, 47, 1, 0, label_map_id=2)])
    data = tf_example.encode_example(image, data)

    def features(message):
        out = {}
        for key, feature in message.features.feature.items():
            kind = feature.WhichOneof("kind")
            out[key] = (kind, list(getattr(feature, kind).value))
        return out

    mine, theirs = example_pb2.Example.FromString(data), tf_example_pb2.Example.FromString(data)
    assert features(mine) == features(theirs)
    assert features(mine)["image/object/class/label"] == ("int64_list", [1, 2])
    assert features(mine)["image/object/class/text"] == ("bytes_list", [b"cat", b"dog"])


def test_tensorflow_events_and_a_saved_model_read_the_same_through_the_subset(tmp_path):
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default():
        for step, loss in ((1, 0.75), (2, 0.5)):
            tf.summary.write("Loss/total_loss", tf.constant(loss, tf.float32), step=step)
            tf.summary.write("learning_rate", tf.constant(0.04, tf.float64), step=step)
    writer.close()
    scalars = events.read_scalars(tmp_path)
    assert [(step, value) for step, _, value in scalars["Loss/total_loss"]] == [(1, 0.75), (2, 0.5)]
    assert [value for _, _, value in scalars["learning_rate"]] == [0.04, 0.04]

    contract = inference.check_saved_model(SMALL128)
    assert contract.folder == SMALL128 / "saved_model"
    assert contract.input_shape == [1, None, None, 3]
    from tensorflow.core.protobuf import saved_model_pb2 as tf_saved_model
    theirs = tf_saved_model.SavedModel.FromString((contract.folder / "saved_model.pb").read_bytes())
    mine = saved_model_pb2.SavedModel.FromString((contract.folder / "saved_model.pb").read_bytes())
    signature, tf_signature = (m.meta_graphs[0].signature_def["serving_default"] for m in (mine, theirs))
    assert sorted(signature.outputs) == sorted(tf_signature.outputs)
    assert {"detection_boxes", "detection_scores", "detection_classes", "num_detections"} <= set(signature.outputs)
    assert [d.size for d in signature.inputs["input_tensor"].tensor_shape.dim] == \
        [d.size for d in tf_signature.inputs["input_tensor"].tensor_shape.dim]


@pytest.mark.parametrize("wrong, message", [
    ("dtype", "input_tensor is not uint8"),
    ("outputs", "serving_default does not return detection_scores"),
    ("variables", "has no variables/ folder"),
])
def test_the_one_contract_check_names_what_a_saved_model_lacks(tmp_path, wrong, message):
    import shutil

    folder = shutil.copytree(SMALL128 / "saved_model", tmp_path / "saved_model")
    proto = saved_model_pb2.SavedModel.FromString((folder / "saved_model.pb").read_bytes())
    signature = proto.meta_graphs[0].signature_def["serving_default"]
    if wrong == "dtype":
        signature.inputs["input_tensor"].dtype = 1  # DT_FLOAT
    elif wrong == "outputs":
        del signature.outputs["detection_scores"]
    else:
        shutil.rmtree(folder / "variables")
    (folder / "saved_model.pb").write_bytes(proto.SerializeToString())
    with pytest.raises(inference.ModelInvalid, match=message):
        inference.check_saved_model(tmp_path)


def test_checking_a_saved_model_and_reading_examples_and_events_never_import_tensorflow():
    code = ("import sys\nfrom backend import events, inference\nfrom backend.formats import tf_example, tfrecord\n"
            f"inference.check_saved_model({str(SMALL128)!r})\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'imported'\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr


# The order the example writer puts the features on the wire: image/encoded last, so a record is
# written as `head + data` without copying the image (ARCHITECTURE.md, "one protobuf strategy").
WRITTEN_KEY_ORDER = (
    "image/format", "image/height", "image/width", "image/filename", "image/source_id",
    "image/key/sha256", "image/object/bbox/xmin", "image/object/bbox/ymin", "image/object/bbox/xmax",
    "image/object/bbox/ymax", "image/object/class/text", "image/object/class/label",
    "image/object/difficult", "image/object/truncated", "image/encoded")


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out + bytes((value,)))


def _in_order(message: example_pb2.Example, order) -> bytes:
    """`message` serialised with its features in `order`: each map entry serialised alone by
    protobuf (one entry has only one encoding), the entries concatenated."""
    body = b"".join(example_pb2.Features(feature={key: message.features.feature[key]}).SerializeToString()
                    for key in order)
    assert set(order) == set(message.features.feature)
    return b"\n" + _varint(len(body)) + body


def test_the_example_writer_bytes_are_protobufs_encoding_in_one_fixed_key_order():
    import hashlib

    data = b"\xff\xd8\xff\xe0 stored image bytes " * 20
    image = ExportImage(image_id=12, file_name="Katze ü.jpg", source=Path("x.jpg"), width=640, height=480,
                        format="jpeg", sha256=hashlib.sha256(data).hexdigest(), split="train",
                        boxes=[ExportBox("cat", 64.0, 48.0, 320.0, 240.5, 0, 1, label_map_id=1),
                               ExportBox("dog", 0, 0, 640, 480, 1, 0, label_map_id=200)])
    written = tf_example.encode_example(image, data)
    message = example_pb2.Example()
    feature = message.features.feature
    feature["image/format"].bytes_list.value.append(b"jpeg")
    feature["image/height"].int64_list.value.append(480)
    feature["image/width"].int64_list.value.append(640)
    feature["image/filename"].bytes_list.value.append("Katze ü.jpg".encode())
    feature["image/source_id"].bytes_list.value.append(b"12")
    feature["image/key/sha256"].bytes_list.value.append(image.sha256.encode())
    for key, values in (("xmin", [0.1, 0.0]), ("ymin", [0.1, 0.0]), ("xmax", [0.5, 1.0]),
                        ("ymax", [240.5 / 480, 1.0])):
        feature[f"image/object/bbox/{key}"].float_list.value.extend(values)
    feature["image/object/class/text"].bytes_list.value.extend([b"cat", b"dog"])
    feature["image/object/class/label"].int64_list.value.extend([1, 200])
    feature["image/object/difficult"].int64_list.value.extend([0, 1])
    feature["image/object/truncated"].int64_list.value.extend([1, 0])
    feature["image/encoded"].bytes_list.value.append(data)
    assert example_pb2.Example.FromString(written) == message
    assert written == _in_order(message, WRITTEN_KEY_ORDER)
    assert (len(written), hashlib.sha256(written).hexdigest()) == (
        1042, "89404d248937328ca82b15b6971f4eaba028835041f3fb48952d2db0c27ecc17")
    head, tail = tf_example.example_parts(image, data)
    assert tail is data and head + tail == written

    negative = ExportImage(13, "empty.png", Path("e.png"), 10, 20, "png", "cd" * 32, "val", [])
    written = tf_example.encode_example(negative, b"png")
    message = example_pb2.Example()
    feature = message.features.feature
    feature["image/format"].bytes_list.value.append(b"png")
    feature["image/height"].int64_list.value.append(20)
    feature["image/width"].int64_list.value.append(10)
    feature["image/filename"].bytes_list.value.append(b"empty.png")
    feature["image/source_id"].bytes_list.value.append(b"13")
    feature["image/key/sha256"].bytes_list.value.append(b"cd" * 32)
    for key in WRITTEN_KEY_ORDER[6:14]:   # typed empty lists: the kind of every per-box feature
        kind = "float_list" if "bbox" in key else "bytes_list" if key.endswith("text") else "int64_list"
        getattr(feature[key], kind).SetInParent()
    feature["image/encoded"].bytes_list.value.append(b"png")
    assert written == _in_order(message, WRITTEN_KEY_ORDER)
    assert (len(written), hashlib.sha256(written).hexdigest()) == (
        492, "4cebb8f62753521bb1f601a28650edfac8b8396f1f32806ad801085315af97ad")
