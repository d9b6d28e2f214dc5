"""Load exported SavedModels (Boxwise or TF OD API), predict on images, draw and write results.

The contract (ARCHITECTURE.md, Contracts): `serving_default` takes `input_tensor` uint8 `[1, H, W, 3]` and
returns `detection_boxes` `[1, N, 4]` (`ymin, xmin, ymax, xmax`, normalised),
`detection_classes` `[1, N]` (label-map ids ≥ 1, float32), `detection_scores` `[1, N]` and
`num_detections` `[1]`.

Images are read exactly as ingest reads them (`backend.images`): EXIF orientation applied,
grayscale, alpha, palette and 16-bit made 8-bit RGB, first frame of animations, the same
decompression-bomb limit. A detection carries its box twice:

- `box`: pixels of the oriented image, `[xmin, ymin, xmax, ymax]` (the database convention);
- `box_normalized`: `[ymin, xmin, ymax, xmax]` in [0, 1], as the model returned it (clipped).

`Prediction.detections` holds every detection the model returned, sorted by score
(highest first). Score threshold and class filter are applied afterwards by
`Prediction.filtered`, so a page can re-filter without running the model again.

TensorFlow is imported inside functions: importing this module is cheap.
"""
from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, ImageOps

from backend import config_document
from backend.errors import Invalid, NotFound
from backend.formats import drawing
from backend.images import MAX_FILE_BYTES, ImageRejected, open_image, to_rgb
from backend.projects import class_color

SIGNATURE = "serving_default"
INPUT_NAME = "input_tensor"
OUTPUT_NAMES = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")
LABEL_MAP_NAMES = ("label_map.pbtxt", "labelmap.pbtxt", "label_map.txt")
CSV_FIELDS = ("image", "width", "height", "class_id", "class_name", "score",
              "xmin", "ymin", "xmax", "ymax", "ymin_norm", "xmin_norm", "ymax_norm", "xmax_norm")


class ModelInvalid(Invalid):
    """A directory that is not a usable detection SavedModel; the message says what is missing."""


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class Detection:
    class_id: int
    class_name: str
    score: float
    box: tuple[float, float, float, float]             # pixels: xmin, ymin, xmax, ymax
    box_normalized: tuple[float, float, float, float]  # normalised: ymin, xmin, ymax, xmax

    def as_dict(self) -> dict:
        return {"class_id": self.class_id, "class_name": self.class_name,
                "score": round(self.score, 6), "box": [round(v, 2) for v in self.box],
                "box_normalized": [round(v, 6) for v in self.box_normalized]}


@dataclass
class Prediction:
    """One image's raw detections (all of them, by score) and how long each step took."""
    image: str
    width: int
    height: int
    detections: list[Detection]
    timings_ms: dict[str, float] = field(default_factory=dict)  # decode, preprocess, inference, postprocess, total
    picture: Image.Image | None = field(default=None, repr=False, compare=False)  # the decoded image, for drawing

    @property
    def latency_ms(self) -> float:
        return self.timings_ms.get("total", 0.0)

    def filtered(self, min_score: float = 0.0, class_ids: Iterable[int] | None = None) -> list[Detection]:
        """Detections with score ≥ `min_score` and, when given, a class id in `class_ids`."""
        wanted = None if class_ids is None else {int(c) for c in class_ids}
        return [d for d in self.detections
                if d.score >= min_score and (wanted is None or d.class_id in wanted)]

    def as_dict(self, min_score: float = 0.0, class_ids: Iterable[int] | None = None) -> dict:
        """The CLI's JSON-lines object for this image."""
        return {"image": self.image, "width": self.width, "height": self.height,
                "detections": [d.as_dict() for d in self.filtered(min_score, class_ids)]}


# ---------------------------------------------------------------- label maps


def parse_label_map(text: str) -> dict[int, str]:
    """`{id: name}` from `label_map.pbtxt` text. Raises Invalid for a broken label map."""
    from backend.formats import label_map as label_map_format  # the one label-map reader
    return {item.id: item.name for item in label_map_format.parse(text).items}


def find_label_map(model_dir: Path) -> Path | None:
    """`label_map.pbtxt` beside `saved_model/` (Boxwise export layout) or inside it."""
    for folder in (model_dir, model_dir / "saved_model", model_dir.parent):
        for name in LABEL_MAP_NAMES:
            if (folder / name).is_file():
                return folder / name
    return None


def saved_model_dir(path: str | Path) -> Path:
    """The folder holding `saved_model.pb`: `path` itself or its `saved_model/` child."""
    path = Path(path)
    if not path.exists():
        raise NotFound(f"no such model directory: {path}")
    for candidate in (path, path / "saved_model"):
        if (candidate / "saved_model.pb").is_file():
            return candidate
    raise ModelInvalid(f"{path} holds no SavedModel: expected saved_model.pb in it or in its "
                       "saved_model/ folder (export with `python -m backend export-model`)")


_UINT8 = 4  # tensorflow.DataType.DT_UINT8


@dataclass
class SavedModelContract:
    """What `check_saved_model` found: a detection SavedModel and the label map beside it."""
    root: Path                               # the export directory (parent of saved_model/)
    folder: Path                             # the folder holding saved_model.pb
    input_shape: list[int | None]            # [1 | None, H | None, W | None, 3 | None]
    label_map_text: str = ""
    label_map: dict[int, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def check_saved_model(path: str | Path) -> SavedModelContract:
    """The one SavedModel contract check, from `saved_model.pb` alone (no weights loaded, no
    TensorFlow imported): `serving_default` takes `input_tensor` uint8 `[1, H, W, 3]` and returns
    `detection_boxes`, `detection_scores` and `detection_classes`; `variables/` is there. Raises
    ModelInvalid (or NotFound) saying what is wrong. An unreadable or missing label map is a warning."""
    from backend.tf_protos import saved_model_pb2

    folder = saved_model_dir(path)
    root = folder.parent if folder.name == "saved_model" else folder
    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString((folder / "saved_model.pb").read_bytes())
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise ModelInvalid(f"{folder / 'saved_model.pb'} is not a readable SavedModel: {exc}") from None
    signatures = {}
    for graph in proto.meta_graphs:
        signatures.update(graph.signature_def)
    if SIGNATURE not in signatures:
        raise ModelInvalid(f"the SavedModel in {folder} has no {SIGNATURE!r} signature "
                           f"(it has: {', '.join(sorted(signatures)) or 'none'})")
    signature = signatures[SIGNATURE]
    if INPUT_NAME not in signature.inputs:
        raise ModelInvalid(f"{SIGNATURE} takes {', '.join(sorted(signature.inputs)) or 'nothing'}, "
                           f"not {INPUT_NAME!r}: this is not a TF OD API detection model")
    tensor = signature.inputs[INPUT_NAME]
    if tensor.dtype != _UINT8:
        raise ModelInvalid(f"{INPUT_NAME} is not uint8: Boxwise feeds uint8 images "
                           "(export with input_type image_tensor)")
    dims = [-1, -1, -1, 3] if tensor.tensor_shape.unknown_rank else [d.size for d in tensor.tensor_shape.dim]
    if len(dims) != 4 or dims[3] not in (3, -1):
        raise ModelInvalid(f"{INPUT_NAME} has shape {dims}; expected [1, height, width, 3]")
    missing = [name for name in OUTPUT_NAMES[:3] if name not in signature.outputs]
    if missing:
        raise ModelInvalid(f"{SIGNATURE} does not return {', '.join(missing)}")
    if not (folder / "variables").is_dir():
        raise ModelInvalid(f"{folder} has no variables/ folder: the export is incomplete")
    contract = SavedModelContract(root, folder, [d if d > 0 else None for d in dims])
    label_map_path = find_label_map(root)
    if label_map_path is None:
        contract.warnings.append("no label map beside this model: classes are shown by number")
    else:
        try:
            text = config_document.read_text(label_map_path, "label map", "a label map")
            contract.label_map = parse_label_map(text)
            contract.label_map_text = text
        except (Invalid, NotFound) as exc:
            contract.warnings.append(f"unreadable label map ({exc}): classes are shown by number")
    return contract


def model_root(path: str | Path) -> Path:
    """The export directory a user names: the parent of `saved_model/` when given that folder."""
    folder = saved_model_dir(path)
    return folder.parent if folder.name == "saved_model" else folder


def model_stamp(path: str | Path) -> float:
    """Latest modification time of the SavedModel's files (cache key: reload when re-exported)."""
    folder = saved_model_dir(path)
    stamps = [folder.stat().st_mtime, (folder / "saved_model.pb").stat().st_mtime]
    variables = folder / "variables"
    if variables.is_dir():
        stamps += [p.stat().st_mtime for p in variables.iterdir()]
    label_map = find_label_map(model_root(path))
    if label_map:
        stamps.append(label_map.stat().st_mtime)
    return max(stamps)


# ---------------------------------------------------------------- images


def read_image(source: bytes | str | Path, max_pixels: int | None = None) -> Image.Image:
    """An image as ingest would store it: oriented, 8-bit RGB. Raises ImageRejected."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ImageRejected("no such file")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ImageRejected(f"file is larger than {MAX_FILE_BYTES // 1024**2} MB")
        data = path.read_bytes()
    else:
        data = bytes(source)
    if not data:
        raise ImageRejected("empty file")
    image = open_image(data, max_pixels)
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
    image = ImageOps.exif_transpose(image)
    image, _ = to_rgb(image)
    return image.convert("RGB") if image.mode != "RGB" else image


# ---------------------------------------------------------------- the model


class DetectionModel:
    """A loaded SavedModel's `serving_default` and its label map. Load once, predict many times."""

    def __init__(self, path: str | Path):
        import tensorflow as tf  # lazily: the app and the CLI start without TensorFlow

        contract = check_saved_model(path)
        self.path = contract.root
        try:
            self._loaded = tf.saved_model.load(str(contract.folder))
        except Exception as exc:  # noqa: BLE001 - TensorFlow raises many types for a broken SavedModel
            raise ModelInvalid(f"cannot load the SavedModel in {contract.folder}: {exc}") from None
        self._fn = self._loaded.signatures[SIGNATURE]
        # A fixed-size input (some exports pin H and W) gets the image resized to it; the
        # normalised boxes it returns still map onto the original image.
        _, height, width, _ = contract.input_shape
        self.input_size: tuple[int, int] | None = (height, width) if height and width else None
        self.warnings: list[str] = contract.warnings
        self.label_map_text = contract.label_map_text
        self.label_map: dict[int, str] = contract.label_map

    def warm_up(self, size: tuple[int, int] = (320, 320)) -> float:
        """One call on a blank image so that the first real image is not the one paying for
        TensorFlow's graph optimisation (seconds on a CPU). Returns how long it took, in ms."""
        height, width = self.input_size or size
        start = time.perf_counter()
        self.run(np.zeros((1, height, width, 3), dtype=np.uint8))
        return (time.perf_counter() - start) * 1000

    def class_name(self, class_id: int) -> str:
        return self.label_map.get(class_id, str(class_id))

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The raw signature call: uint8 `[1, H, W, 3]` → numpy outputs, nothing else."""
        import tensorflow as tf

        outputs = self._fn(**{INPUT_NAME: tf.constant(batch, dtype=tf.uint8)})
        return {name: value.numpy() for name, value in outputs.items()}

    def input_array(self, image: Image.Image) -> np.ndarray:
        """uint8 `[1, H, W, 3]` for `image`, resized when the model has a fixed input size."""
        if self.input_size and (image.height, image.width) != self.input_size:
            image = image.resize((self.input_size[1], self.input_size[0]), Image.BILINEAR)
        return np.asarray(image, dtype=np.uint8)[None, ...]

    def predict_image(self, image: Image.Image, name: str = "") -> Prediction:
        """Detections on an already-decoded RGB image (oriented like ingest)."""
        start = time.perf_counter()
        batch = self.input_array(image)
        prepared = time.perf_counter()
        outputs = self.run(batch)
        inferred = time.perf_counter()
        detections = self.detections(outputs, image.width, image.height)
        done = time.perf_counter()
        return Prediction(name, image.width, image.height, detections, {
            "decode": 0.0, "preprocess": (prepared - start) * 1000,
            "inference": (inferred - prepared) * 1000, "postprocess": (done - inferred) * 1000,
            "total": (done - start) * 1000})

    def predict(self, source: bytes | str | Path, name: str | None = None,
                max_pixels: int | None = None) -> Prediction:
        """Decode (as ingest) and predict. Raises ImageRejected for files that are not usable images."""
        start = time.perf_counter()
        image = read_image(source, max_pixels)
        decoded = time.perf_counter()
        prediction = self.predict_image(image, name if name is not None else str(source))
        prediction.picture = image
        prediction.timings_ms["decode"] = (decoded - start) * 1000
        prediction.timings_ms["total"] += (decoded - start) * 1000
        return prediction

    def detections(self, outputs: dict[str, np.ndarray], width: int, height: int) -> list[Detection]:
        """Signature outputs → Detections sorted by score, boxes clipped to the image."""
        boxes = np.asarray(outputs["detection_boxes"], dtype=np.float64).reshape(-1, 4)
        classes = np.asarray(outputs["detection_classes"]).reshape(-1)
        scores = np.asarray(outputs["detection_scores"], dtype=np.float64).reshape(-1)
        count = len(scores)
        if "num_detections" in outputs:
            count = min(count, int(np.asarray(outputs["num_detections"]).reshape(-1)[0]))
        boxes = np.clip(boxes[:count], 0.0, 1.0)
        order = np.argsort(-scores[:count], kind="stable")
        found = []
        for i in order:
            ymin, xmin, ymax, xmax = (float(v) for v in boxes[i])
            class_id = int(round(float(classes[i])))
            found.append(Detection(
                class_id, self.class_name(class_id), round(float(scores[i]), 6),
                (xmin * width, ymin * height, xmax * width, ymax * height), (ymin, xmin, ymax, xmax)))
        return found


def load_model(path: str | Path, warm_up: bool = False) -> DetectionModel:
    """Load the SavedModel in `path` (export dir or SavedModel folder); `warm_up` runs it once."""
    model = DetectionModel(path)
    if warm_up:
        model.warm_up()
    return model


def predict_many(model: DetectionModel, sources: Iterable[tuple[str, bytes | str | Path]],
                 max_pixels: int | None = None) -> Iterable[Prediction | tuple[str, str]]:
    """For each `(name, bytes or path)`: a Prediction, or `(name, error message)` for a bad image."""
    for name, source in sources:
        try:
            yield model.predict(source, name, max_pixels)
        except ImageRejected as exc:
            yield name, str(exc)


# ---------------------------------------------------------------- drawing and writing


def draw(image: Image.Image, detections: Iterable[Detection],
         colors: dict[int, str] | None = None) -> Image.Image:
    """A copy of `image` with each detection's box and `name score` drawn on it, in `colors`
    by class id or the class's default colour."""
    return drawing.draw_boxes(image, [
        (f"{det.class_name} {det.score:.2f}", det.box, (colors or {}).get(det.class_id) or class_color(det.class_id))
        for det in detections])


def annotated(prediction: Prediction, min_score: float = 0.0, class_ids: Iterable[int] | None = None,
              colors: dict[int, str] | None = None) -> Image.Image:
    """The predicted image with its filtered detections drawn (needs `prediction.picture`)."""
    if prediction.picture is None:
        raise Invalid(f"{prediction.image}: the decoded image was not kept")
    return draw(prediction.picture, prediction.filtered(min_score, class_ids), colors)


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def json_line(prediction: Prediction, min_score: float = 0.0,
              class_ids: Iterable[int] | None = None) -> str:
    return json.dumps(prediction.as_dict(min_score, class_ids), ensure_ascii=False)


def error_line(image: str, message: str) -> str:
    return json.dumps({"image": image, "error": message}, ensure_ascii=False)


def coco_results(predictions: Iterable[tuple[int | str, Prediction]], min_score: float = 0.0,
                 class_ids: Iterable[int] | None = None) -> list[dict]:
    """COCO results format: `[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]`
    in pixels of the oriented image, one entry per detection, for `(image_id, prediction)` pairs."""
    results = []
    for image_id, prediction in predictions:
        for det in prediction.filtered(min_score, class_ids):
            xmin, ymin, xmax, ymax = det.box
            results.append({"image_id": image_id, "category_id": det.class_id,
                            "bbox": [round(xmin, 2), round(ymin, 2), round(xmax - xmin, 2),
                                     round(ymax - ymin, 2)],
                            "score": round(det.score, 6)})
    return results


def csv_text(predictions: Iterable[Prediction], min_score: float = 0.0,
             class_ids: Iterable[int] | None = None) -> str:
    """One CSV row per detection (columns CSV_FIELDS): pixel and normalised boxes."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for prediction in predictions:
        for det in prediction.filtered(min_score, class_ids):
            d = det.as_dict()
            writer.writerow([prediction.image, prediction.width, prediction.height, d["class_id"],
                             d["class_name"], d["score"], *d["box"], *d["box_normalized"]])
    return out.getvalue()


def table_rows(prediction: Prediction, min_score: float = 0.0,
               class_ids: Iterable[int] | None = None) -> list[dict]:
    """Rows for a detections table (page and CLI)."""
    return [{"class_id": d.class_id, "class": d.class_name, "score": round(d.score, 3),
             "xmin": round(d.box[0], 1), "ymin": round(d.box[1], 1), "xmax": round(d.box[2], 1),
             "ymax": round(d.box[3], 1)} for d in prediction.filtered(min_score, class_ids)]


# ---------------------------------------------------------------- uncertainty


def uncertainty(detections: Iterable[Detection]) -> float:
    """How unsure the model is about an image, in [0, 1]; higher means a human should look first.

    Each detection's score is read as a yes/no probability; its uncertainty is
    `1 − |2·score − 1|` (0 when the score is 0 or 1, 1 at 0.5). The image gets the largest
    over its detections: one borderline object makes an image worth labeling. An image on
    which the model returns no detection at all gets 1.0: the model offers nothing there.
    """
    values = [1.0 - abs(2.0 * d.score - 1.0) for d in detections]
    return round(max(values), 6) if values else 1.0
