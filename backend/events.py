"""TensorBoard event files read without TensorFlow: the progress of runs of other trainers
(the TF OD API's `model_main_tf2.py`), which write events but no progress file.

An event file is a TFRecord file (`uint64 length, uint32 crc, data, uint32 crc`) of `Event`
protos, read with the scalar subset of TensorFlow's protos in `backend/tf_protos/event.proto`
(`simple_value`, or a scalar `tensor` as TF 2's `tf.summary.write` writes it). Importing
TensorFlow into the dashboard for this is not worth it.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, Iterator

from google.protobuf.message import DecodeError

from backend.tf_protos import event_pb2

# TF OD API tag → name in the trainer's progress snapshots (`backend.training.progress`).
LOSS_TAGS = {
    "Loss/classification_loss": "classification",
    "Loss/localization_loss": "localization",
    "Loss/regularization_loss": "regularization",
    "Loss/total_loss": "total",
}

_DT_FLOAT, _DT_DOUBLE = 1, 2


def _tensor_scalar(tensor) -> float | None:
    """The first value of a float or double `TensorProto`, else None."""
    if tensor.float_val:
        return float(tensor.float_val[0])
    if tensor.double_val:
        return float(tensor.double_val[0])
    content = tensor.tensor_content
    if tensor.dtype == _DT_FLOAT and len(content) >= 4:
        return struct.unpack("<f", content[:4])[0]
    if tensor.dtype == _DT_DOUBLE and len(content) >= 8:
        return struct.unpack("<d", content[:8])[0]
    return None


def _records(path: Path) -> Iterator[bytes]:
    """The records of a TFRecord file; a torn last record (writer mid-append) ends the file."""
    with open(path, "rb") as handle:
        while True:
            header = handle.read(12)
            if len(header) < 12:
                return
            (length,) = struct.unpack("<Q", header[:8])
            data = handle.read(length)
            if len(data) < length or len(handle.read(4)) < 4:
                return
            yield data


def scalars(path: str | Path) -> Iterator[tuple[int, float, str, float]]:
    """`(step, wall_time, tag, value)` of every scalar summary in one event file."""
    for record in _records(Path(path)):
        event = event_pb2.Event()
        try:
            event.ParseFromString(record)
        except DecodeError:
            continue  # not an Event (a foreign record): nothing to read in it
        if event.WhichOneof("what") != "summary":
            continue
        for value in event.summary.value:
            kind = value.WhichOneof("value")
            scalar = (value.simple_value if kind == "simple_value"
                      else _tensor_scalar(value.tensor) if kind == "tensor" else None)
            if scalar is not None:
                yield event.step, event.wall_time, value.tag, scalar


def read_scalars(folder: str | Path) -> dict[str, list[tuple[int, float, float]]]:
    """Every scalar in the event files of `folder`: tag → `[(step, wall_time, value)]` by step."""
    out: dict[str, list[tuple[int, float, float]]] = {}
    for path in sorted(Path(folder).glob("events.out.tfevents.*")):
        for step, wall_time, tag, value in scalars(path):
            out.setdefault(tag, []).append((step, wall_time, value))
    return {tag: sorted(rows) for tag, rows in out.items()}


def training_history(folder: str | Path) -> list[dict[str, Any]]:
    """Progress snapshots (the trainer's progress-file shape) rebuilt from TensorBoard events."""
    by_step: dict[int, dict[str, Any]] = {}
    for tag, rows in read_scalars(folder).items():
        for step, wall_time, value in rows:
            snapshot = by_step.setdefault(step, {"step": step, "losses": {}, "time": wall_time})
            snapshot["time"] = max(snapshot["time"], wall_time)
            if tag in LOSS_TAGS:
                snapshot["losses"][LOSS_TAGS[tag]] = value
            elif tag == "learning_rate":
                snapshot["learning_rate"] = value
            elif tag == "steps_per_sec":
                snapshot["steps_per_sec"] = value
    history = [by_step[s] for s in sorted(by_step)]
    if history:
        started = min(s["time"] for s in history)
        for snapshot in history:
            snapshot["started_at"] = started
    return history
