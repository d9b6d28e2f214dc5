"""`export-tflite`: the TF OD API's export_tflite_graph_tf2.py plus the TFLite conversion, one command.

    python -m backend export-tflite --pipeline_config_path=P --trained_checkpoint_dir=D \
        --output_directory=OUT [--max_detections=10] [--quantize=none|float16|int8] \
        [--representative_dataset_version=N | --representative_records=GLOB] [--use_regular_nms]
"""
from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser(
        "export-tflite", help="export a checkpoint as a .tflite for phones and edge devices",
        description="export_tflite_graph_tf2.py's flags, then the TFLite converter. Writes OUT/{model.tflite, "
                    "model.json, labels.txt, label_map.pbtxt, saved_model/}. int8 calibrates on the train "
                    "records of --representative_dataset_version, or --representative_records, else the "
                    "config's train input.")
    export.add_argument("--pipeline_config_path", required=True)
    export.add_argument("--trained_checkpoint_dir", required=True)
    export.add_argument("--output_directory", required=True)
    export.add_argument("--max_detections", type=int, default=10, help="detections the model returns (default 10)")
    export.add_argument("--use_regular_nms", action="store_true",
                        help="per-class NMS (slower) instead of one class per box")
    export.add_argument("--quantize", default="none", choices=["none", "float16", "int8"])
    source = export.add_mutually_exclusive_group()
    source.add_argument("--representative_dataset_version", type=int, default=None,
                        help="int8: calibrate on this dataset version's (id) train records")
    source.add_argument("--representative_records", default=None,
                        help="int8: calibrate on the TFRecords matching this glob")
    export.set_defaults(func=export_tflite_command)


def export_tflite_command(args) -> int:
    from backend.errors import Invalid
    records = [args.representative_records] if args.representative_records else None
    if args.representative_dataset_version is not None:
        from backend import tflite
        from backend.db import connect
        records = [tflite.representative_glob(connect(), args.representative_dataset_version)]
    if records and args.quantize != "int8":
        raise Invalid("representative images are for --quantize int8 only")
    from backend.training.tflite_export import export_tflite
    output = export_tflite(args.pipeline_config_path, args.trained_checkpoint_dir, args.output_directory,
                           max_detections=args.max_detections, quantize=args.quantize,
                           use_regular_nms=args.use_regular_nms, representative_records=records)
    print(json.dumps(json.loads((output / "model.json").read_text()), sort_keys=True))
    return 0
