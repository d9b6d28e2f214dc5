"""TensorBoard event files read without TensorFlow: the progress of runs of other trainers
(the TF OD API's `model_main_tf2.py`), which write events but no progress file.

An event file is a TFRecord file (`uint64 length, uint32 crc, data, uint32 crc`) of `Event`
protos. Only the scalar parts are decoded here, straight from the protobuf wire format:
`Event{1: wall_time double, 2: step int64, 5: summary}`, `Summary{1: repeated value}`,
`Value{1: tag, 2: simple_value float, 8: tensor}`, `TensorProto{1: dtype, 4: tensor_content,
5: float_val, 6: double_val}`. Importing TensorFlow into the dashboard for this is not worth it.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, Iterator

# TF OD API tag → name in the trainer's progress snapshots (`backend.training.progress`).
LOSS_TAGS = {
    "Loss/classification_loss": "classification",
    "Loss/localization_loss": "localization",
    "Loss/regularization_loss": "regularization",
    "Loss/total_loss": "total",
}

_DT_FLOAT, _DT_DOUBLE = 1, 2


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """`(field number, wire type, value)` of a serialized message; values are ints or bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def _tensor_scalar(data: bytes) -> float | None:
    dtype, content, values = None, b"", []
    for number, wire, value in _fields(data):
        if number == 1:
            dtype = value
        elif number == 4:
            content = value
        elif number == 5:
            values += struct.unpack(f"<{len(value) // 4}f", value) if wire == 2 else struct.unpack("<f", value)
        elif number == 6:
            values += struct.unpack(f"<{len(value) // 8}d", value) if wire == 2 else struct.unpack("<d", value)
    if values:
        return float(values[0])
    if content and dtype == _DT_FLOAT and len(content) >= 4:
        return struct.unpack("<f", content[:4])[0]
    if content and dtype == _DT_DOUBLE and len(content) >= 8:
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
        step, wall_time, summary = 0, 0.0, None
        for number, _, value in _fields(record):
            if number == 1:
                (wall_time,) = struct.unpack("<d", value)
            elif number == 2:
                step = value
            elif number == 5:
                summary = value
        if summary is None:
            continue
        for number, _, value in _fields(summary):
            if number != 1:
                continue
            tag, scalar = None, None
            for n, _, v in _fields(value):
                if n == 1:
                    tag = v.decode("utf-8", errors="replace")
                elif n == 2:
                    (scalar,) = struct.unpack("<f", v)
                elif n == 8:
                    scalar = _tensor_scalar(v)
            if tag is not None and scalar is not None:
                yield step, wall_time, tag, scalar


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
