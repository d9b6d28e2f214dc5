"""Export a trained checkpoint to TFLite, as the TF OD API's export_tflite_graph_tf2.py does, then convert.

`export_tflite(pipeline_config_path, trained_checkpoint_dir, output_directory)` writes

    output_directory/
      saved_model/        the TFLite-friendly SavedModel (export_tflite_graph_tf2's output):
                          input float32 [1, H, W, 3] *normalised* to [-1, 1] (pixel / 127.5 - 1),
                          the network, sigmoid scores, and a `TFLite_Detection_PostProcess`
                          placeholder function the converter fuses into that custom op
      model.tflite        the converted model (`quantize`: none | float16 | int8)
      model.json          its input and output tensors (name, index, shape, dtype, quantization)
      label_map.pbtxt     the train input's label map (or class_1..class_N)
      labels.txt          one name per line, line i = the model's class index i = label-map id
                          i + 1 (background is not a class of the outputs); '???' where the label
                          map has no such id, the TFLite task libraries' convention

The outputs follow the OD API TFLite contract: boxes `[1, N, 4]` (ymin, xmin, ymax, xmax,
normalised, not clipped), classes `[1, N]` (float class indices, label-map id − 1), scores
`[1, N]`, count `[1]`; `N = max_detections`. `model.json`'s "outputs" says which TFLite output
tensor is which. Only `fixed_shape_resizer` exports, as in the OD API: the model's input is fixed.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import tensorflow as tf

from backend import atomic
from backend.errors import Invalid, NotFound
from backend.formats import label_map as label_maps
from backend.training.anchors import generate_anchors
from backend.training.training_config import TrainingConfig
from backend.training.fold import fold_batch_norm
from backend.training.train import load_detector

QUANTIZE = ("none", "float16", "int8")
POSTPROCESS_OP = "TFLite_Detection_PostProcess"
MAX_CLASSES_PER_DETECTION = 1  # the OD API's export: one class per box
REPRESENTATIVE_IMAGES = 100    # images int8 calibration reads, at most
OUTPUT_ROLES = ("boxes", "classes", "scores", "count")
MISSING_LABEL = "???"


# ---------------------------------------------------------------- the seam to the network


def raw_predictions(model, images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The detector's raw outputs for `TFLite_Detection_PostProcess`: images `[1, H, W, 3]` in
    [-1, 1] → `(box_encodings [1, A, 4]` faster_rcnn deltas `(ty, tx, th, tw)`,
    `class_scores [1, A, K])` after the sigmoid score converter.

    `K` is `num_classes` or `num_classes + 1` with column 0 the background: the custom op takes
    the columns past `K − num_classes` as the classes, so either layout exports the same way.
    """
    outputs = model(images, training=False)
    return outputs["box_deltas"], tf.sigmoid(outputs["class_logits"])


def center_size_anchors(config: TrainingConfig) -> np.ndarray:
    """`[A, 4]` float32 anchors as `(y_center, x_center, height, width)`, normalised: the
    `anchors` input of `TFLite_Detection_PostProcess`, in the predictions' order."""
    corners = generate_anchors(config.model.height, config.model.width, config.model.anchors)
    ymin, xmin, ymax, xmax = corners.T
    return np.stack([(ymin + ymax) / 2, (xmin + xmax) / 2, ymax - ymin, xmax - xmin], axis=1).astype(np.float32)


# ---------------------------------------------------------------- the TFLite-friendly graph


def postprocess_signature(config: TrainingConfig, max_detections: int, use_regular_nms: bool) -> str:
    """The `experimental_implements` text the converter turns into the custom op's options
    (attribute names and values as the OD API's export_tflite_graph_lib_tf2 writes them, plus
    `detections_per_class` from the config for regular NMS)."""
    post = config.post_processing
    y_scale, x_scale, h_scale, w_scale = config.box_scales
    attrs = [("max_detections", "i", max_detections),
             ("max_classes_per_detection", "i", MAX_CLASSES_PER_DETECTION),
             ("detections_per_class", "i", post.max_detections_per_class),
             ("use_regular_nms", "b", str(bool(use_regular_nms)).lower()),
             ("nms_score_threshold", "f", f"{post.score_threshold:f}"),
             ("nms_iou_threshold", "f", f"{post.iou_threshold:f}"),
             ("y_scale", "f", f"{y_scale:f}"), ("x_scale", "f", f"{x_scale:f}"),
             ("h_scale", "f", f"{h_scale:f}"), ("w_scale", "f", f"{w_scale:f}"),
             ("num_classes", "i", config.model.num_classes)]
    return " ".join([f'name: "{POSTPROCESS_OP}"']
                    + [f'attr {{ key: "{key}" value {{ {kind}: {value} }} }}' for key, kind, value in attrs])


class TFLiteDetectionModule(tf.Module):
    """What export_tflite_graph_tf2 saves: `inference_fn(input)` → the custom op's four outputs."""

    def __init__(self, config: TrainingConfig, model, max_detections: int, use_regular_nms: bool = False):
        super().__init__()
        self.model = model
        # Keras 3 layer lists are invisible to TF tracking: track every variable explicitly.
        self.detector_variables = list(model.weights)
        self.anchors = tf.constant(center_size_anchors(config), name="anchors")
        self.input_shape = [1, config.model.height, config.model.width, 3]

        # No TF op computes TFLite's post-processing: an empty function carries its name and
        # options, and the converter replaces it by the custom op.
        @tf.function(experimental_implements=postprocess_signature(config, max_detections, use_regular_nms))
        def detection_postprocess(box_encodings, class_predictions, anchors):
            boxes = tf.constant(0.0, dtype=tf.float32, name="boxes")
            scores = tf.constant(0.0, dtype=tf.float32, name="scores")
            classes = tf.constant(0.0, dtype=tf.float32, name="classes")
            num_detections = tf.constant(0.0, dtype=tf.float32, name="num_detections")
            return boxes, classes, scores, num_detections

        self._postprocess = detection_postprocess

    @tf.function
    def inference_fn(self, image):
        with tf.name_scope("raw_outputs"):
            box_encodings, class_scores = raw_predictions(self.model, image)
            box_encodings = tf.identity(box_encodings, name="box_encodings")
            class_scores = tf.identity(class_scores, name="class_predictions")
        # As the OD API: the function's results come back reversed, so reverse them here.
        return self._postprocess(box_encodings, class_scores, tf.identity(self.anchors, name="anchors"))[::-1]


# ---------------------------------------------------------------- conversion


def unsupported_ops(message: str) -> list[str]:
    """TF op names a converter error says TFLite cannot run (builtins only, no TF Select)."""
    names = re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", message)
    for listed in re.findall(r"TF Select ops: ([\w, ]+)", message):
        names += [name.strip() for name in listed.split(",") if name.strip()]
    return sorted(set(names))


def custom_ops(model: bytes) -> list[str]:
    """The custom op names a .tflite's operator codes list."""
    from tensorflow.lite.python import schema_py_generated as schema
    root = schema.Model.GetRootAsModel(model, 0)
    codes = (root.OperatorCodes(i).CustomCode() for i in range(root.OperatorCodesLength()))
    return sorted({code.decode() for code in codes if code})


def convert(saved_model_dir: str | os.PathLike, quantize: str = "none",
            representative: Callable[[], Iterable[list[np.ndarray]]] | None = None) -> bytes:
    """The `.tflite` bytes of a TFLite-friendly SavedModel; refuses (Invalid) a model with an op
    TFLite's builtin kernels lack, naming the op."""
    if quantize not in QUANTIZE:
        raise Invalid(f"--quantize {quantize!r}: choose one of {', '.join(QUANTIZE)}")
    # The OD API converts with from_saved_model; on TF 2.21 that leaves most of this Keras 3
    # model's weights as variables whose READ_VARIABLE fails at invoke. Converting the loaded
    # SavedModel's signature freezes them to constants.
    loaded = tf.saved_model.load(str(saved_model_dir))
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [loaded.signatures["serving_default"]], loaded)
    converter.allow_custom_ops = True  # TFLite_Detection_PostProcess ships with every TFLite runtime
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        if representative is None:
            raise Invalid("int8 quantization needs representative images (a dataset version's records)")
        # The OD API's settings: int8 kernels, float input and outputs.
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                               tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.representative_dataset = representative
    from tensorflow.lite.python.convert_phase import ConverterError
    try:
        model = converter.convert()
    except (ConverterError, RuntimeError, ValueError) as exc:  # the MLIR converter's, or calibration's
        names = unsupported_ops(str(exc))
        if names:
            raise _unsupported(names) from None
        first = next((line.strip() for line in str(exc).splitlines() if "error" in line.lower()),
                     str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        raise Invalid(f"TFLite conversion failed: {first}") from None
    # allow_custom_ops turns any op TFLite lacks into a custom op no runtime has: refuse those.
    foreign = [name for name in custom_ops(model) if name != POSTPROCESS_OP]
    if foreign:
        raise _unsupported(foreign)
    return model


def _unsupported(names: list[str]) -> Invalid:
    return Invalid(f"the model uses {', '.join(names)}, which TFLite's builtin ops do not support: "
                   "it cannot be exported to TFLite")


def representative_images(record_globs: Iterable[str], config: TrainingConfig,
                          limit: int = REPRESENTATIVE_IMAGES) -> list[np.ndarray]:
    """Up to `limit` images of the records matching `record_globs`, resized and normalised as
    the TFLite input: float32 `[1, H, W, 3]` each."""
    from backend.training.data import parse_example, resize
    files = sorted({name for pattern in record_globs for name in tf.io.gfile.glob(pattern)})
    if not files:
        raise NotFound(f"no TFRecord files match {', '.join(record_globs) or 'nothing'}: int8 "
                       "quantization needs the dataset version's records")
    images = []
    for serialized in tf.data.TFRecordDataset(files).take(limit):
        canvas, _ = resize(parse_example(serialized)["image"], config.resizer)
        images.append(normalise(canvas.numpy())[np.newaxis])
    if not images:
        raise Invalid(f"{', '.join(files)} hold no records: nothing to calibrate int8 with")
    return images


def normalise(pixels: np.ndarray) -> np.ndarray:
    """Pixels 0–255 → the model input's [-1, 1] (MobileNetV2's preprocessing), float32."""
    return (np.asarray(pixels, np.float32) / 127.5 - 1.0).astype(np.float32)


# ---------------------------------------------------------------- running a .tflite


def interpreter(model_path: str | os.PathLike, num_threads: int = 1):
    """A LiteRT interpreter (tf.lite.Interpreter where ai-edge-litert is not installed), allocated."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # documented fallback: TensorFlow's copy of the same runtime
        Interpreter = tf.lite.Interpreter
    runner = Interpreter(model_path=str(model_path), num_threads=num_threads)
    runner.allocate_tensors()
    return runner


def _tensor(detail: dict) -> dict:
    scale, zero_point = detail["quantization"]
    return {"name": detail["name"], "index": int(detail["index"]), "shape": [int(d) for d in detail["shape"]],
            "dtype": np.dtype(detail["dtype"]).name,
            "quantization": {"scale": float(scale), "zero_point": int(zero_point)}}


def describe(model_path: str | os.PathLike) -> dict:
    """`{"input": tensor, "outputs": {"boxes"|"classes"|"scores"|"count": tensor}}` of a
    .tflite this module wrote, each tensor `{name, index, shape, dtype, quantization}`.

    The signature's outputs `output_0..3` are the module's results in order: count, scores,
    classes, boxes (the OD API's reversed tuple)."""
    runner = interpreter(model_path)
    (input_detail,) = runner.get_input_details()
    by_index = {d["index"]: d for d in runner.get_output_details()}
    signature = runner._get_full_signature_list()["serving_default"]["outputs"]
    roles = dict(zip(("count", "scores", "classes", "boxes"), sorted(signature)))
    outputs = {role: _tensor(by_index[signature[roles[role]]]) for role in OUTPUT_ROLES}
    return {"input": {**_tensor(input_detail), "normalisation": {"mean": 127.5, "std": 127.5}},
            "outputs": outputs}


class TFLiteDetector:
    """Runs an exported `model.tflite` on images: `detect(pixels uint8 [H, W, 3])` → detections."""

    def __init__(self, export_dir: str | os.PathLike, num_threads: int = 1):
        export_dir = Path(export_dir)
        self.description = json.loads((export_dir / "model.json").read_text())
        self.runner = interpreter(export_dir / "model.tflite", num_threads)
        _, self.height, self.width, _ = self.description["input"]["shape"]

    def detect(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """`pixels` `[H, W, 3]` (0–255) at the model's input size → `{"boxes" [N, 4] yxyx
        normalised and clipped to the image as the SavedModel's, "classes" [N] (label-map ids),
        "scores" [N]}` for the `count` detections."""
        if pixels.shape[:2] != (self.height, self.width):
            raise Invalid(f"image is {pixels.shape[1]}×{pixels.shape[0]} px; this model takes "
                          f"{self.width}×{self.height}: resize it first")
        self.runner.set_tensor(self.description["input"]["index"], normalise(pixels)[np.newaxis])
        self.runner.invoke()
        out = {role: self.runner.get_tensor(t["index"]) for role, t in self.description["outputs"].items()}
        count = int(out["count"][0])
        return {"boxes": np.clip(out["boxes"][0, :count], 0.0, 1.0), "classes": out["classes"][0, :count].astype(np.int64) + 1,
                "scores": out["scores"][0, :count]}


MAP_50 = "DetectionBoxes_Precision/mAP@.50IOU"


def saved_model_detector(saved_model_dir: str | os.PathLike) -> Callable[[np.ndarray], dict]:
    """A Boxwise SavedModel export as `detect(pixels uint8 [H, W, 3])` → the same dict as
    `TFLiteDetector.detect`: what the .tflite is checked against."""
    serve = tf.saved_model.load(str(saved_model_dir)).signatures["serving_default"]

    def detect(pixels: np.ndarray) -> dict[str, np.ndarray]:
        out = serve(input_tensor=tf.constant(np.asarray(pixels, np.uint8)[np.newaxis]))
        count = int(out["num_detections"][0])
        return {"boxes": out["detection_boxes"][0, :count].numpy(),
                "classes": out["detection_classes"][0, :count].numpy().astype(np.int64),
                "scores": out["detection_scores"][0, :count].numpy()}
    return detect


def held_out_images(record_globs: Iterable[str], height: int, width: int) -> list[dict]:
    """The records' images resized to the model input (bilinear, rounded to uint8, as a device
    camera frame would be) with their ground truth: `[{"image_id", "pixels" uint8 [H, W, 3],
    "boxes" [M, 4] yxyx normalised, "classes" [M]}]`."""
    from backend.training.data import parse_example
    files = sorted({name for pattern in record_globs for name in tf.io.gfile.glob(pattern)})
    if not files:
        raise NotFound(f"no TFRecord files match {', '.join(record_globs)}")
    items = []
    for serialized in tf.data.TFRecordDataset(files):
        example = parse_example(serialized)
        pixels = tf.cast(tf.round(tf.image.resize(tf.cast(example["image"], tf.float32), [height, width])), tf.uint8)
        items.append({"image_id": f"{len(items)}:{example['source_id'].numpy().decode('utf-8', 'replace')}",
                      "pixels": pixels.numpy(), "boxes": example["boxes"].numpy(),
                      "classes": example["classes"].numpy()})
    return items


def map_50(detect: Callable[[np.ndarray], dict], images: list[dict], label_map_path: str | os.PathLike) -> float:
    """COCO mAP@0.5 of `detect(pixels) → {"boxes", "classes" (label-map ids), "scores"}` on
    `held_out_images`."""
    from backend.evaluation import coco_metrics
    categories = [{"id": item.id, "name": item.name} for item in label_maps.read(label_map_path).items]
    detections = [{"image_id": item["image_id"], **detect(item["pixels"])} for item in images]
    sizes = {item["image_id"]: item["pixels"].shape[:2] for item in images}
    return coco_metrics(images, detections, categories, sizes)[MAP_50]


# ---------------------------------------------------------------- the export


def labels_text(items: list[label_maps.LabelMapItem]) -> str:
    """labels.txt: line i names label-map id i + 1 (the model's class index i), '???' for gaps."""
    names = {item.id: item.name for item in items}
    return "".join(f"{names.get(i, MISSING_LABEL)}\n" for i in range(1, max(names, default=0) + 1))


def _label_map(config: TrainingConfig, source: str | os.PathLike | None) -> list[label_maps.LabelMapItem]:
    source = source or config.train_input.label_map_path
    if source and Path(source).is_file():
        return label_maps.read(source).items
    return [label_maps.LabelMapItem(i, f"class_{i}") for i in range(1, config.model.num_classes + 1)]


def export_tflite(pipeline_config_path: str | os.PathLike, trained_checkpoint_dir: str | os.PathLike,
                  output_directory: str | os.PathLike, *, max_detections: int = 10,
                  quantize: str = "none", use_regular_nms: bool = False,
                  representative_records: Iterable[str] | None = None,
                  label_map_path: str | os.PathLike | None = None) -> Path:
    """Write the layout above and return `output_directory`. int8 calibrates on
    `representative_records` (globs), else on the config's train input records. The labels
    come from `label_map_path`, else the train input's label map.

    Files are built in a temporary folder beside `output_directory` and moved in at the end:
    a refused or failed export leaves what was there before."""
    if quantize not in QUANTIZE:
        raise Invalid(f"--quantize {quantize!r}: choose one of {', '.join(QUANTIZE)}")
    if max_detections < 1:
        raise Invalid(f"--max_detections must be at least 1, not {max_detections}")
    checkpoint = str(trained_checkpoint_dir)
    if not tf.io.gfile.isdir(checkpoint) and not tf.io.gfile.glob(checkpoint + ".index"):
        raise NotFound(f"--trained_checkpoint_dir {checkpoint!r} is neither a directory nor a checkpoint")
    config, model = load_detector(pipeline_config_path, checkpoint)
    if config.resizer.kind != "fixed_shape":
        raise Invalid("TFLite export needs model.ssd.image_resizer.fixed_shape_resizer (a fixed input "
                      f"size), not {config.resizer.kind}_resizer, as the TF OD API's exporter")
    representative = None
    if quantize == "int8":
        globs = list(representative_records or config.train_input.input_paths)
        images = representative_images(globs, config)
        representative = lambda: ([image] for image in images)  # noqa: E731
    output = Path(output_directory)
    output.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        module = TFLiteDetectionModule(config, fold_batch_norm(model), max_detections, use_regular_nms)
        function = module.inference_fn.get_concrete_function(
            tf.TensorSpec(module.input_shape, tf.float32, name="input"))
        tf.saved_model.save(module, str(work / "saved_model"), signatures=function)
        (work / "model.tflite").write_bytes(convert(work / "saved_model", quantize, representative))
        description = {**describe(work / "model.tflite"), "quantize": quantize,
                       "max_detections": max_detections, "use_regular_nms": use_regular_nms,
                       "num_classes": config.model.num_classes,
                       "class_index": "label-map id - 1 (labels.txt line)"}
        atomic.write_json(work / "model.json", description)
        items = _label_map(config, label_map_path)
        label_maps.write(work / "label_map.pbtxt", items)
        atomic.write_text(work / "labels.txt", labels_text(items))
        output.mkdir(exist_ok=True)
        for name in ("saved_model", "model.tflite", "model.json", "label_map.pbtxt", "labels.txt"):
            target = output / name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(work / name, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return output
