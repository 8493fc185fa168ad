"""The user's YAML → Model Garden experiment (pipeline.yaml) and OD API pipeline.config.

No TensorFlow graph is built here; only Model Garden's config classes are used.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.modeling.config import load_run, read_user_config
from maskrcnn_toolkit.modeling.presets import PRESETS
from tests.fixtures.model import make_tiny_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    # Our own 2-class folder (ids 1..2): checks need a known label map, and building it
    # takes a second, not a synthetic render + convert.
    return make_tiny_dataset(tmp_path_factory.mktemp("cfgdata"), num_train=2, num_val=1,
                             size=64)


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def base(data: Path, extra: str = "") -> str:
    return f"data: {data}\nrun_dir: run\n" + extra


# -- strictness ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, key, hint", [
    ("trian:\n  steps: 3\n", "'trian'", "'train'"),
    ("train:\n  stpes: 3\n", "'train.stpes'", "'steps'"),
    ("train:\n  augment:\n    hflp: true\n", "'train.augment.hflp'", "'hflip'"),
    ("model:\n  image_sise: 256\n", "'model.image_sise'", "'image_size'"),
])
def test_unknown_key_names_file_key_and_closest(tmp_path, data, text, key, hint):
    cfg = write(tmp_path, base(data, text))
    with pytest.raises(UserError) as e:
        read_user_config(cfg)
    msg = str(e.value)
    assert str(cfg) in msg and key in msg and f"did you mean {hint}" in msg


@pytest.mark.parametrize("text, words", [
    ("train:\n  batch_size: two\n", ["train.batch_size", "an integer", "'two'"]),
    ("train:\n  batch_size: true\n", ["train.batch_size", "an integer"]),
    ("train:\n  batch_size: 0\n", ["train.batch_size", "at least 1"]),
    ("model:\n  image_size: 100\n", ["model.image_size", "multiple of 64", "e.g. 128"]),
    ("model:\n  preset: spinenet49_mobile\n  image_size: 320\n",
     ["model.image_size", "multiple of 128", "e.g. 256"]),
    ("train:\n  augment:\n    scale: [1.3, 0.8]\n", ["train.augment.scale", "min <= max"]),
    ("train:\n  warmup_steps: 5000\n", ["train.warmup_steps", "smaller than train.steps"]),
    ("model:\n  preset: slim_r18\n", ["model.preset", "did you mean 'slim_r18_fpn'"]),
    ("runtime:\n  strategy: mirorred\n", ["runtime.strategy", "did you mean 'mirrored'"]),
    ("train:\n  optimizer: adm\n", ["train.optimizer", "did you mean 'adam'"]),
    ("train: 5\n", ["train", "mapping"]),
])
def test_wrong_types_and_impossible_values(tmp_path, data, text, words):
    cfg = write(tmp_path, base(data, text))
    with pytest.raises(UserError) as e:
        read_user_config(cfg)
    for w in words:
        assert w in str(e.value)
    assert str(cfg) in str(e.value)


def test_missing_required_key(tmp_path):
    with pytest.raises(UserError, match="missing required key 'data'"):
        read_user_config(write(tmp_path, "run_dir: run\n"))


def test_missing_data_folder_and_missing_shards(tmp_path, data):
    with pytest.raises(UserError, match="is not a folder.*dataset_tools convert"):
        load_run(write(tmp_path, "data: nowhere\nrun_dir: run\n"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no train-\\*.tfrecord shards"):
        load_run(write(tmp_path, "data: empty\nrun_dir: run\n"))


def test_unknown_init_checkpoint_is_refused_before_building(tmp_path, data):
    cfg = write(tmp_path, base(data, "model:\n  init_checkpoint: retinanet_resnet50\n"))
    with pytest.raises(UserError, match="did you mean 'retinanet_resnet50fpn_coco'"):
        load_run(cfg)


def test_spinenet49_mobile_preset_has_the_published_retinanets_backbone(tmp_path, data):
    """The preset builds the backbone of Model Garden's COCO RetinaNet SpineNet-49-mobile
    (its retinanet_mobile_coco experiment, the published checkpoint's layout): same backbone
    settings but stochastic depth (a training-time regularizer), no decoder, the same
    levels, batch-norm constants and activation; the registry entry restores its backbone."""
    from official.core import exp_factory
    from official.vision import registry_imports  # noqa: F401  (registers the factories)

    from maskrcnn_toolkit.modeling.checkpoints import REGISTRY
    theirs = exp_factory.get_exp_config("retinanet_mobile_coco").task.model
    ours = load_run(write(tmp_path, base(data, "model:\n  preset: spinenet49_mobile\n"))
                    ).experiment.task.model
    assert ours.backbone.type == theirs.backbone.type == "spinenet_mobile"
    a, b = ours.backbone.spinenet_mobile.as_dict(), theirs.backbone.spinenet_mobile.as_dict()
    a.pop("stochastic_depth_drop_rate"), b.pop("stochastic_depth_drop_rate")
    assert a == b
    assert ours.decoder.type == theirs.decoder.type == "identity"
    assert (ours.min_level, ours.max_level) == (theirs.min_level, theirs.max_level) == (3, 7)
    assert ours.input_size == theirs.input_size == [384, 384, 3]
    na, nb = ours.norm_activation, theirs.norm_activation
    assert (na.activation, na.norm_momentum, na.norm_epsilon) == (
        nb.activation, nb.norm_momentum, nb.norm_epsilon)
    spec = REGISTRY["retinanet_spinenet49mobile_coco"]
    assert spec.url == ("https://storage.googleapis.com/tf_model_garden/vision/retinanet/"
                        "spinenet49mobile.tar.gz")
    assert spec.restores == "backbone" and not spec.sha256  # trust on first use


# -- what the config becomes --------------------------------------------------------------

def test_paths_relative_to_yaml_and_num_classes_from_label_map(tmp_path, data, monkeypatch):
    sub = tmp_path / "configs"
    sub.mkdir()
    rel = Path("..") / data.relative_to(tmp_path) if data.is_relative_to(tmp_path) else data
    cfg = write(sub, f"data: {rel}\nrun_dir: ../runs/r1\ntrain:\n  steps: 50\n")
    monkeypatch.chdir(ROOT)  # anywhere but the YAML's folder
    run = load_run(cfg, overrides={"train.batch_size": 4, "model": {"image_size": 192}})
    assert run.data_dir == data.resolve()
    assert run.run_dir == (tmp_path / "runs" / "r1").resolve()
    t = run.experiment.task
    assert t.model.num_classes == 3  # 2 classes + background
    assert t.model.input_size == [192, 192, 3]
    assert t.train_data.input_path == str(run.data_dir / "train-*.tfrecord")
    assert t.validation_data.input_path == str(run.data_dir / "val-*.tfrecord")
    assert t.annotation_file == str(run.data_dir / "val_annotations.json")
    assert t.train_data.global_batch_size == 4
    assert run.experiment.trainer.train_steps == 50
    # Default learning rate: the preset's per-image rate x batch size.
    lr = run.experiment.trainer.optimizer_config.learning_rate.cosine.initial_learning_rate
    assert lr == pytest.approx(PRESETS["slim_r18_fpn"].lr_per_image * 4)
    # Slim heads of the preset reach Model Garden's config.
    assert t.model.decoder.fpn.num_filters == 64 and t.model.backbone.resnet.model_id == 18


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_pipeline_yaml_loads_back_through_model_garden(tmp_path, data, preset):
    from official.core import exp_factory
    from official.modeling import hyperparams

    run = load_run(write(tmp_path, base(data, f"model:\n  preset: {preset}\n"
                                              f"train:\n  steps: 7\n")))
    run.save()
    for name in ("pipeline.yaml", "pipeline.config", "config.yaml", "label_map.pbtxt"):
        assert (run.run_dir / name).is_file()
    exp = exp_factory.get_exp_config("maskrcnn_resnetfpn_coco")
    exp = hyperparams.override_params_dict(exp, str(run.run_dir / "pipeline.yaml"),
                                           is_strict=True)
    exp.validate()
    assert exp.as_dict() == run.experiment.as_dict()
    assert exp.task.model.num_classes == 3 and exp.trainer.train_steps == 7
    # The preset's backbone (type, depth, width) and size are what Model Garden will build.
    want = PRESETS[preset].model["backbone"]
    got = exp.task.model.backbone.as_dict()
    assert got["type"] == want["type"]
    for key, value in want[want["type"]].items():
        assert got[want["type"]][key] == value, key
    size = PRESETS[preset].image_size
    assert exp.task.model.input_size[:2] == [size, size]
    # The saved user config is complete and loads as a config of its own.
    saved = yaml.safe_load((run.run_dir / "config.yaml").read_text())
    assert saved["model"]["image_size"] == size and saved["data"] == str(data.resolve())
    again = read_user_config(run.run_dir / "config.yaml")
    assert again.train.steps == 7


# A minimal reader of protobuf text format: enough for pipeline.config (messages, scalars,
# strings, [a, b] lists, # comments). Repeated fields become lists.
_TOK = re.compile(r'\s*(?:#[^\n]*|("(?:\\.|[^"\\])*")|([{}:\[\],])|([^\s{}:\[\],"#]+))')


def parse_text_proto(text: str) -> dict:
    toks = []
    for m in _TOK.finditer(text):
        s, p, w = m.groups()
        if s is not None:
            toks.append(("s", bytes(s[1:-1], "utf-8").decode("unicode_escape")))
        elif p or w:
            toks.append(("p" if p else "w", p or w))
    pos = 0

    def value(tok):
        kind, v = tok
        if kind == "s":
            return v
        for conv in (int, float):
            try:
                return conv(v)
            except ValueError:
                pass
        return {"true": True, "false": False}.get(v, v)

    def message(end):
        nonlocal pos
        out: dict = {}
        while pos < len(toks) and toks[pos][1] != end:
            key = toks[pos][1]
            pos += 1
            if toks[pos][1] == ":":
                pos += 1
            if toks[pos][1] == "{":
                pos += 1
                val = message("}")
                pos += 1
            elif toks[pos][1] == "[":
                pos += 1
                val = []
                while toks[pos][1] != "]":
                    if toks[pos][1] != ",":
                        val.append(value(toks[pos]))
                    pos += 1
                pos += 1
            else:
                val = value(toks[pos])
                pos += 1
            if key in out:
                out[key] = out[key] if isinstance(out[key], list) else [out[key]]
                out[key].append(val)
            else:
                out[key] = val
        return out

    return message(None)


def _hyperparams(block: dict, what: str) -> None:
    """What the OD API's hyperparams_builder.build needs: an op-compatible block with a
    set regularizer and initializer oneof (an empty one raises "Unknown initializer
    function: None")."""
    assert isinstance(block, dict) and block, f"{what}: missing or empty"
    init = block.get("initializer")
    assert isinstance(init, dict) and len(init) == 1, f"{what}: no initializer"
    (kind, params), = init.items()
    assert kind in ("truncated_normal_initializer", "variance_scaling_initializer",
                    "random_normal_initializer"), what
    assert isinstance(params, dict) and params, f"{what}: empty {kind}"
    reg = block.get("regularizer")
    assert isinstance(reg, dict) and reg.get("l2_regularizer", {}).get("weight") is not None, \
        f"{what}: no regularizer"


def test_od_api_pipeline_config_fields(tmp_path, data):
    import tensorflow as tf
    bb = tf.Module()
    bb.kernel = tf.Variable(tf.zeros([3, 3]))
    prefix = tf.train.Checkpoint(backbone=bb).write(str(tmp_path / "ckpt" / "ckpt-0"))
    run = load_run(write(tmp_path, base(data, "model:\n  init_checkpoint: ckpt/ckpt-0\n"
                                              "  image_size: 320\n")))
    pc = parse_text_proto(run.pipeline_config())
    frcnn = pc["model"]["faster_rcnn"]
    assert frcnn["num_classes"] == 2  # the OD API counts no background
    assert frcnn["number_of_stages"] == 3
    assert frcnn["image_resizer"]["fixed_shape_resizer"] == {"height": 320, "width": 320}
    # Every block the OD API's model builder requires, complete.
    _hyperparams(frcnn["first_stage_box_predictor_conv_hyperparams"],
                 "first_stage_box_predictor_conv_hyperparams")
    assert frcnn["first_stage_box_predictor_conv_hyperparams"]["op"] == "CONV"
    fe = frcnn["feature_extractor"]
    assert fe["type"] == "faster_rcnn_resnet50_fpn_keras"
    assert fe["fpn"] == {"min_level": 2, "max_level": 6}
    _hyperparams(fe["conv_hyperparams"], "feature_extractor.conv_hyperparams")
    assert fe["conv_hyperparams"]["activation"] == "RELU_6"
    assert fe["conv_hyperparams"]["batch_norm"]["decay"] > 0
    assert fe["override_base_feature_extractor_hyperparams"] is True
    box = frcnn["second_stage_box_predictor"]["mask_rcnn_box_predictor"]
    _hyperparams(box["fc_hyperparams"], "mask_rcnn_box_predictor.fc_hyperparams")
    assert box["fc_hyperparams"]["op"] == "FC"
    _hyperparams(box["conv_hyperparams"], "mask_rcnn_box_predictor.conv_hyperparams")
    assert box["predict_instance_masks"] is True
    m = run.experiment.task.model
    assert box["mask_height"] == box["mask_width"] == (
        m.mask_roi_aligner.crop_size * m.mask_head.upsample_factor)
    assert box["mask_prediction_num_conv_layers"] == m.mask_head.num_convs
    assert box["mask_prediction_conv_depth"] == m.mask_head.num_filters
    assert frcnn["second_stage_mask_prediction_loss_weight"] > 0
    anchors = frcnn["first_stage_anchor_generator"]["multiscale_anchor_generator"]
    assert anchors["aspect_ratios"] and anchors["scales_per_octave"] >= 1
    # Model Garden checkpoints do not load in the OD API: left for the user to fill.
    tc = pc["train_config"]
    assert tc["fine_tune_checkpoint"] == ""
    assert "OD API (TF2) checkpoint" in run.pipeline_config()
    for reader, split in (("train_input_reader", "train"), ("eval_input_reader", "val")):
        r = pc[reader]
        assert r["label_map_path"] == str(run.data_dir / "label_map.pbtxt")
        assert r["load_instance_masks"] is True and r["mask_type"] == "PNG_MASKS"
        assert r["tf_record_input_reader"]["input_path"] == str(
            run.data_dir / f"{split}-*.tfrecord")
    assert "coco_mask_metrics" in pc["eval_config"]["metrics_set"]
    # pipeline.yaml: the local checkpoint, with the module it holds, for Model Garden.
    t = run.experiment.task
    assert t.init_checkpoint == prefix and t.init_checkpoint_modules == "backbone"


def _mask_rcnn_like_checkpoint(prefix: Path, num_classes: int) -> str:
    """A checkpoint laid out like our and Model Garden's trainer's: root ``model`` plus the
    model's checkpoint_items (``backbone``, ``decoder``, ``detection_head``)."""
    import tensorflow as tf
    bb, dec, head, cls = tf.Module(), tf.Module(), tf.Module(), tf.Module()
    bb.kernel = tf.Variable(tf.zeros([3, 3]))
    dec.kernel = tf.Variable(tf.zeros([3, 2]))
    cls.kernel = tf.Variable(tf.zeros([8, num_classes]))
    head._classifier = cls
    model = tf.Module()
    model.backbone, model.decoder, model.detection_head = bb, dec, [head]
    return tf.train.Checkpoint(model=model, backbone=bb, decoder=dec,
                               detection_head=[head]).write(str(prefix))


@pytest.mark.parametrize("classes, modules", [(3, "all"), (5, "backbone,decoder")])
def test_pipeline_yaml_init_modules_never_all_for_other_class_count(tmp_path, data, classes,
                                                                     modules):
    # data has 2 classes: Model Garden's num_classes is 3. With "all" a 5-class checkpoint
    # fails Model Garden's assert_existing_objects_matched.
    prefix = _mask_rcnn_like_checkpoint(tmp_path / "prev" / "ckpt-9", classes)
    run = load_run(write(tmp_path, base(data, "model:\n  init_checkpoint: prev\n")))
    t = run.experiment.task
    assert t.init_checkpoint == prefix and t.init_checkpoint_modules == modules
    assert not run.init_note


def test_pipeline_yaml_registry_checkpoint_before_and_after_download(tmp_path, data,
                                                                     monkeypatch):
    import tensorflow as tf
    from official.core import exp_factory
    from official.modeling import hyperparams
    cache = tmp_path / "cache"
    monkeypatch.setenv("MASKRCNN_TOOLKIT_CACHE", str(cache))
    cfg = write(tmp_path, base(data, "model:\n  init_checkpoint: retinanet_resnet50fpn_coco\n"))
    run = load_run(cfg)
    # Not downloaded yet: empty for Model Garden's trainer, and pipeline.yaml says so.
    assert run.experiment.task.init_checkpoint == ""
    run.save()
    text = (run.run_dir / "pipeline.yaml").read_text()
    assert text.startswith("# model.init_checkpoint 'retinanet_resnet50fpn_coco' is not "
                           "downloaded yet")
    exp = hyperparams.override_params_dict(exp_factory.get_exp_config(
        "maskrcnn_resnetfpn_coco"), str(run.run_dir / "pipeline.yaml"), is_strict=True)
    assert exp.as_dict() == run.experiment.as_dict()  # the comment is only a comment
    # Downloaded (here: put into the cache as the download would): the local prefix and the
    # modules the registry entry restores.
    bb, dec = tf.Module(), tf.Module()
    bb.kernel, dec.kernel = tf.Variable(tf.zeros([2])), tf.Variable(tf.zeros([2]))
    prefix = tf.train.Checkpoint(backbone=bb, decoder=dec).write(
        str(cache / "retinanet_resnet50fpn_coco" / "ckpt-1"))
    run.refresh_init_checkpoint()  # what the trainer does after resolving the name
    run.save()
    assert not (run.run_dir / "pipeline.yaml").read_text().startswith("#")
    t = run.experiment.task
    assert t.init_checkpoint == prefix and t.init_checkpoint_modules == "backbone,decoder"
    assert load_run(cfg).experiment.task.init_checkpoint == prefix  # later loads, too


def test_mixed_precision_is_what_runs(tmp_path, data):
    from maskrcnn_toolkit.modeling.experiment import gpu_available
    run = load_run(write(tmp_path, base(data, "runtime:\n  mixed_precision: true\n")))
    want = "float16" if gpu_available() else "float32"
    assert run.experiment.runtime.mixed_precision_dtype == want
    assert yaml.safe_load(run.pipeline_yaml())["runtime"]["mixed_precision_dtype"] == want


def test_shipped_configs_are_valid():
    for name in ("parts_demo.yaml", "balloon.yaml", "my_parts_template.yaml"):
        u = read_user_config(ROOT / "configs" / name)
        assert u.model.preset in PRESETS
    demo = read_user_config(ROOT / "configs" / "parts_demo.yaml")
    assert demo.data == "../demo_out/data" and demo.model.init_checkpoint is None


def test_print_config_cli(tmp_path, data, capsys):
    from maskrcnn_toolkit import train
    cfg = write(tmp_path, base(data))
    assert train.main(["--config", str(cfg), "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["task"]["model"]["num_classes"] == 3
    assert not (tmp_path / "run").exists()  # printing writes nothing
    assert train.main(["--config", str(cfg), "--print-config", "od"]) == 0
    assert "number_of_stages: 3" in capsys.readouterr().out
    assert train.main(["--config", str(cfg), "--set", "train.stepz=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "did you mean 'steps'" in err


def test_adam_optimizer_reaches_model_garden_and_od_api(tmp_path, data):
    run = load_run(write(tmp_path, base(data, "train:\n  optimizer: adam\n  steps: 40\n")))
    oc = run.experiment.trainer.optimizer_config
    assert oc.optimizer.type == "adam" and oc.optimizer.adam.global_clipnorm == 10.0
    # Adam's default rate does not scale with the batch size (SGD's does).
    from maskrcnn_toolkit.modeling.experiment import ADAM_LEARNING_RATE
    assert oc.learning_rate.cosine.initial_learning_rate == ADAM_LEARNING_RATE
    assert run.resolved_user_dict()["train"]["optimizer"] == "adam"
    opt = parse_text_proto(run.pipeline_config())["train_config"]["optimizer"]
    assert "adam_optimizer" in opt and "momentum_optimizer" not in opt
    assert opt["adam_optimizer"]["learning_rate"]["cosine_decay_learning_rate"][
        "total_steps"] == 40
    sgd = load_run(write(tmp_path, base(data, "train:\n  steps: 40\n"), "sgd.yaml"))
    opt = parse_text_proto(sgd.pipeline_config())["train_config"]["optimizer"]
    assert opt["momentum_optimizer"]["momentum_optimizer_value"] == 0.9
