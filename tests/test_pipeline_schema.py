"""The pipeline.config schema (backend/pipeline_schema): every config Boxwise ships or reads parses
without a problem, and each bad field is named with its path and line."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend import pipeline_schema as schema
from backend.config_document import Message, Problem, walk
from backend.config_document import parse as parse_tree
from backend.training.templates import TEMPLATES, template_text
from tests.helpers import FIXTURES, SHARED_TFOD, needs_shared_tfod

REPO = Path(__file__).resolve().parents[1]
FIXTURE_CONFIGS = sorted(FIXTURES.glob("odapi/**/pipeline.config")) + sorted(FIXTURES.glob("doctor/*.config"))
ANCHOR_PATH = "model.ssd.anchor_generator.multiscale_anchor_generator"


def _line_of(text: str, needle: str, nth: int = 0) -> int:
    """The 1-based line of the `nth` line containing `needle`."""
    return [k for k, line in enumerate(text.splitlines(), 1) if needle in line][nth]


@pytest.mark.parametrize("name", TEMPLATES)
def test_every_template_parses_without_problems(name):
    text = template_text(name)
    config, problems = schema.parse(text)
    assert problems == []
    assert config.model.WhichOneof("model") == "ssd"
    assert _same_values(text, config) > 50


def _same_values(text: str, config) -> int:
    """Assert the typed message holds every value the span-keeping document reads, field by
    field; return how many scalars were compared."""
    scalars = [(path, f.value) for path, f in walk(parse_tree(text))
               if not isinstance(f.value, Message) and ".keypoint_label_to_" not in path]  # maps: key/value entries
    for path, value in scalars:
        typed = _typed(config, path)
        assert typed == (_plain(value) if isinstance(value, list) or not isinstance(typed, list) else [_plain(value)]), path
    return len(scalars)


def _typed(message, path: str):
    """The value at a ConfigDocument path in a parsed message (enums by name, floats at float precision)."""
    *parents, last = path.split(".")
    for part in parents:
        name, _, index = part.partition("[")
        field = message.DESCRIPTOR.fields_by_name[name]
        message = getattr(message, name)
        if field.is_repeated:  # `name[i]`, or `name` when it occurs once
            message = message[int(index[:-1]) if index else 0]
    name, _, index = last.partition("[")
    field = message.DESCRIPTOR.fields_by_name[name]
    value = getattr(message, field.name)
    values = list(value) if field.is_repeated else [value]
    if field.enum_type is not None:
        values = [field.enum_type.values_by_number[v].name for v in values]
    if field.type == field.TYPE_FLOAT:
        values = [float(f"{v:.7g}") for v in values]
    if index:
        return values[int(index[:-1])]
    return values if field.is_repeated else values[0]


def _plain(value):
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return float(f"{value:.7g}")
    return str(value) if isinstance(value, str) else value


def test_every_fixture_config_parses_without_problems():
    assert len(FIXTURE_CONFIGS) == 5
    for path in FIXTURE_CONFIGS:
        config, problems = schema.parse_file(path)
        assert problems == [], path
        assert config.model.ssd.num_classes > 0, path
        assert _same_values(path.read_text(), config) > 50, path


@needs_shared_tfod
def test_every_zoo_config_parses_without_problems():
    paths = sorted((SHARED_TFOD / "configs").glob("*.config"))
    assert paths
    architectures = set()
    for path in paths:
        config, problems = schema.parse_file(path)
        assert problems == [], path
        assert _same_values(path.read_text(), config) > 30, path
        architectures.add(config.model.WhichOneof("model"))
    assert {"ssd", "faster_rcnn", "center_net"} <= architectures


def test_a_faster_rcnn_config_parses_so_it_can_be_refused_by_name():
    text = ("model {\n  faster_rcnn {\n    num_classes: 3\n    first_stage_max_proposals: 100\n"
            "    image_resizer { keep_aspect_ratio_resizer { min_dimension: 600 } }\n  }\n}\n")
    config, problems = schema.parse(text)
    assert problems == []
    assert config.model.WhichOneof("model") == "faster_rcnn"
    assert config.model.faster_rcnn.first_stage_max_proposals == 100


def test_a_nested_typo_is_one_problem_with_its_path_and_line():
    text = template_text("zoo_gpu").replace("anchor_scale: 4.0", "anchor_scael: 4.0")
    config, problems = schema.parse(text)
    assert problems == [Problem(f"{ANCHOR_PATH}.anchor_scael", _line_of(text, "anchor_scael"),
                                'unknown field "anchor_scael": MultiscaleAnchorGenerator has no such field; '
                                'did you mean "anchor_scale"?')]
    assert _line_of(text, "anchor_scael") == 71
    # Everything else still parsed; the misspelt field is left out (the proto default shows).
    anchors = config.model.ssd.anchor_generator.multiscale_anchor_generator
    assert (anchors.min_level, anchors.max_level, anchors.anchor_scale) == (3, 7, 4.0)
    assert not anchors.HasField("anchor_scale")
    assert config.train_config.num_steps == 25000


def test_several_typos_give_several_problems_in_line_order():
    text = (template_text("zoo_gpu")
            .replace("min_depth: 16", "min_dpeth: 16")
            .replace("scales_per_octave: 2", "scales_per_octav: 2")
            .replace("min_area: 0.75", "min_aera: 0.75")
            .replace("  use_moving_average: false", "  use_moving_averages: false"))
    config, problems = schema.parse(text)
    assert [(p.path, p.line) for p in problems] == [
        ("model.ssd.feature_extractor.min_dpeth", _line_of(text, "min_dpeth")),
        (f"{ANCHOR_PATH}.scales_per_octav", _line_of(text, "scales_per_octav")),
        ("train_config.data_augmentation_options[1].random_crop_image.min_aera", _line_of(text, "min_aera")),
        ("train_config.optimizer.use_moving_averages", _line_of(text, "use_moving_averages")),
    ]
    assert [p.line for p in problems] == [17, 73, 149, 166]
    assert problems[3].message == ('unknown field "use_moving_averages": Optimizer has no such field; '
                                   'did you mean "use_moving_average"?')
    assert config.train_config.data_augmentation_options[1].random_crop_image.max_area == 1.0


def test_a_wrong_type_and_an_unknown_enum_value_are_reported_with_their_lines():
    text = (template_text("zoo_gpu").replace("num_classes: 1  #", 'num_classes: "three"  #')
            .replace("activation: RELU_6", "activation: RELU7", 1)
            .replace("use_depthwise: true", "use_depthwise: 2", 1))
    _, problems = schema.parse(text)
    assert problems == [
        Problem("model.ssd.num_classes", 7, 'Couldn\'t parse integer: "three"'),
        Problem("model.ssd.feature_extractor.use_depthwise", 18, 'Expected "true" or "false".'),
        Problem("model.ssd.feature_extractor.conv_hyperparams.activation", 25,
                "RELU7 is not a Hyperparams.Activation: use one of NONE, RELU, RELU_6, SWISH"),
    ]


def test_an_unknown_block_is_reported_once_and_later_lines_keep_their_numbers():
    text = template_text("quick").replace("train_config {", "train_config {\n  no_such_block {\n    a: 1\n    b { c: 2 }\n  }", 1)
    text = text.replace("max_number_of_boxes:", "max_number_of_boxez:")
    _, problems = schema.parse(text)
    assert [(p.path, p.line) for p in problems] == [
        ("train_config.no_such_block", _line_of(text, "no_such_block")),
        ("train_config.max_number_of_boxez", _line_of(text, "max_number_of_boxez")),
    ]


def test_a_syntax_error_is_one_problem_with_its_line():
    _, problems = schema.parse("model {\n  ssd {\n    num_classes 3\n  }\n}\n")
    assert len(problems) == 1
    assert problems[0].line == 3
    _, problems = schema.parse("a" * 100000)  # the message quotes the token: kept short
    assert len(problems) == 1 and problems[0].line == 1 and len(problems[0].message) == 301


def test_a_field_given_twice_is_a_problem_though_the_od_api_keeps_the_last():
    text = "train_config {\n  batch_size: 4\n  batch_size: 8\n}\nmodel {\n  ssd { num_classes: 2 }\n  faster_rcnn { }\n}\n"
    config, problems = schema.parse(text)
    assert problems == [
        Problem("train_config.batch_size[1]", 3,
                '"batch_size" is given more than once in TrainConfig: the OD API uses the last one'),
        Problem("model.faster_rcnn", 7, '"faster_rcnn" and "ssd" are both set, but DetectionModel takes one model: '
                                        'the OD API uses the last, "faster_rcnn"'),
    ]
    assert config.train_config.batch_size == 8
    assert config.model.WhichOneof("model") == "faster_rcnn"


def test_a_hopeless_config_stops_after_max_problems():
    text = "train_config {\n" + "".join(f"  bogus_{k}: 1\n" for k in range(schema.MAX_PROBLEMS + 20)) + "}\n"
    _, problems = schema.parse(text)
    assert len(problems) == schema.MAX_PROBLEMS + 1
    assert problems[0] == Problem("train_config.bogus_0", 2,
                                  'unknown field "bogus_0": TrainConfig has no such field')
    assert problems[-1].message.startswith(f"stopped after {schema.MAX_PROBLEMS} problems")
    text = "train_config {\n" + "".join(f"  bogus_{k}: 1\n" for k in range(schema.MAX_PROBLEMS)) + "}\n"
    assert len(schema.parse(text)[1]) == schema.MAX_PROBLEMS  # all found: no note


def test_schema_defaults_read_as_the_config_text_writes_them():
    assert schema.default("model.ssd.matcher.argmax_matcher.force_match_for_each_row") is False
    assert schema.default("train_config.optimizer.use_moving_average") is True
    cosine = "train_config.optimizer.momentum_optimizer.learning_rate.cosine_decay_learning_rate"
    assert schema.defaults(cosine) == {"learning_rate_base": 0.002, "total_steps": 4000000,
                                       "warmup_learning_rate": 0.0002, "warmup_steps": 10000,
                                       "hold_base_rate_steps": 0}
    assert schema.default("model.ssd.post_processing.score_converter") == "IDENTITY"
    assert schema.default(f"{ANCHOR_PATH}.aspect_ratios") == []
    assert schema.default("model.ssd.feature_extractor.min_depth") == 16
    with pytest.raises(KeyError, match="anchor_scael"):
        schema.default(f"{ANCHOR_PATH}.anchor_scael")


def test_the_trainer_and_the_doctor_assume_the_schema_defaults():
    from backend.training import training_config as training_config
    from backend.training.schedules import LEARNING_RATE_DEFAULTS

    learning_rate = "train_config.optimizer.momentum_optimizer.learning_rate"
    messages = {"constant": "constant_learning_rate", "exponential": "exponential_decay_learning_rate",
                "manual_step": "manual_step_learning_rate", "cosine": "cosine_decay_learning_rate"}
    for kind, message in messages.items():
        assumed = dict(LEARNING_RATE_DEFAULTS[kind])
        if kind == "manual_step":  # a repeated message: none by default
            assert assumed.pop("schedule") == [] and schema.descriptor(f"{learning_rate}.{message}.schedule")
        assert assumed == schema.defaults(f"{learning_rate}.{message}"), kind

    empty = schema.TrainEvalPipelineConfig().model.ssd
    matcher = training_config._matcher(empty.matcher.argmax_matcher)
    argmax = schema.defaults("model.ssd.matcher.argmax_matcher")
    for name in ("matched_threshold", "unmatched_threshold", "force_match_for_each_row",
                 "ignore_thresholds", "negatives_lower_than_unmatched"):
        assert getattr(matcher, name) == argmax[name], name

    hyper = training_config.conv_hyperparams(empty.feature_extractor.conv_hyperparams)
    batch_norm = schema.defaults("model.ssd.feature_extractor.conv_hyperparams.batch_norm")
    assert (hyper.batch_norm_decay, hyper.batch_norm_epsilon, hyper.batch_norm_scale, hyper.batch_norm_center) == (
        batch_norm["decay"], batch_norm["epsilon"], batch_norm["scale"], batch_norm["center"])
    initializer = schema.defaults("model.ssd.feature_extractor.conv_hyperparams.initializer.random_normal_initializer")
    assert (hyper.mean, hyper.stddev) == (initializer["mean"], initializer["stddev"])

    fields = {f.name: f.default for f in training_config.Optimizer.__dataclass_fields__.values()}
    assert fields["momentum"] == schema.default("train_config.optimizer.momentum_optimizer.momentum_optimizer_value")
    assert fields["epsilon"] == schema.default("train_config.optimizer.adam_optimizer.epsilon")


def test_parsing_imports_neither_tensorflow_nor_keras():
    code = ("import sys\nfrom backend import pipeline_schema\n"
            "from backend.training.templates import template_text\n"
            "config, problems = pipeline_schema.parse(template_text('zoo_gpu').replace('min_depth', 'min_dpeth'))\n"
            "assert [p.path for p in problems] == ['model.ssd.feature_extractor.min_dpeth'], problems\n"
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_checked_in_modules_are_what_the_protos_generate(tmp_path):
    pytest.importorskip("grpc_tools")
    protos = sorted((REPO / "backend/pipeline_schema/protos").glob("*.proto"))
    assert [p.stem for p in protos] == ["eval", "input_reader", "layers", "losses", "model", "pipeline",
                                       "preprocessor", "targets", "train"]
    out = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I.", f"--python_out={tmp_path}",
                          *(str(p.relative_to(REPO)) for p in protos)],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for proto in protos:
        generated = tmp_path / "backend/pipeline_schema/protos" / f"{proto.stem}_pb2.py"
        checked_in = proto.with_name(f"{proto.stem}_pb2.py")
        assert generated.read_text() == checked_in.read_text(), f"{checked_in.name} is stale: run make proto"


# The OD API's own .proto sources are not part of the repository; point this at a folder holding
# object_detection/protos/*.proto (e.g. models/research of a tensorflow/models checkout) to check
# the schema against them field by field.
ODAPI_PROTOS = os.environ.get("BOXWISE_ODAPI_PROTOS", "")


@pytest.mark.skipif(not ODAPI_PROTOS, reason="set BOXWISE_ODAPI_PROTOS to a folder with object_detection/protos")
def test_the_schema_is_the_od_apis_field_for_field(tmp_path):
    pytest.importorskip("grpc_tools")
    from google.protobuf import descriptor_pb2, descriptor_pool

    root = Path(ODAPI_PROTOS)
    protos = sorted(str(p.relative_to(root)) for p in (root / "object_detection/protos").glob("*.proto"))
    out = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{root}", "--include_imports",
                          f"--descriptor_set_out={tmp_path / 'od.pb'}", *protos],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    pool = descriptor_pool.DescriptorPool()
    for proto in descriptor_pb2.FileDescriptorSet.FromString((tmp_path / "od.pb").read_bytes()).file:
        pool.Add(proto)

    def facts(field, package):
        def name(d):
            return d.full_name[len(package) + 1:] if d is not None else None
        enum_default = field.enum_type.values_by_number[field.default_value].name if field.enum_type else None
        return (field.number, field.type, field.is_repeated, field.has_default_value,
                enum_default if field.enum_type else field.default_value,
                field.containing_oneof.name if field.containing_oneof else None,
                name(field.message_type), name(field.enum_type),
                [(v.name, v.number) for v in field.enum_type.values] if field.enum_type else None)

    todo, seen, compared = [pool.FindMessageTypeByName("object_detection.protos.TrainEvalPipelineConfig")], set(), 0
    while todo:
        theirs = todo.pop()
        if theirs.full_name in seen:
            continue
        seen.add(theirs.full_name)
        ours = schema.descriptor("").file.pool.FindMessageTypeByName(
            schema.PACKAGE + theirs.full_name[len("object_detection.protos"):])
        assert sorted(ours.fields_by_name) == sorted(theirs.fields_by_name), theirs.full_name
        for field in theirs.fields:
            assert facts(ours.fields_by_name[field.name], schema.PACKAGE) == \
                facts(field, "object_detection.protos"), f"{theirs.full_name}.{field.name}"
            compared += 1
            if field.message_type is not None:
                todo.append(field.message_type)
    assert (len(seen), compared) == (162, 810)  # map entries included
