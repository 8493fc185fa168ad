"""The user's short YAML → Model Garden's full Mask R-CNN experiment config (DESIGN decision 4).

A user config looks like this (every key but ``data`` and ``run_dir`` has a default)::

    data: ../demo_out/data          # folder made by `python -m dataset_tools convert`
    run_dir: ../demo_out/run        # checkpoints, TensorBoard logs, pipeline.yaml
    model:
      preset: slim_r18_fpn          # see PRESETS
      image_size: 256               # square input; a multiple of 2**max_level (64)
      init_checkpoint: null         # registry name or checkpoint path; null = from scratch
    train:
      batch_size: 2
      steps: 1500
      learning_rate: 0.02           # default per preset, for this batch size
      warmup_steps: 100
      checkpoint_every: 250
      eval_every: 0                 # 0 = evaluate only at the end
      log_every: 10
      augment: {hflip: true, scale: [0.8, 1.25]}
    eval:
      batch_size: 2
    runtime:
      strategy: auto                # auto | one_device | mirrored
      mixed_precision: false        # mixed_float16 when a GPU is visible, else float32

Paths (``data``, ``run_dir``, a checkpoint path) are relative to the YAML file's own
folder, so a config works from any working directory. ``num_classes`` is never written by
the user: it is the label map's largest id + 1 (the background).

Everything is checked before TensorFlow builds anything: an unknown key names the file, the
key and the closest valid key; a wrong type or an impossible value names the key and the
fix.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import glob
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from maskrcnn_toolkit.core.atomic import atomic_write
from maskrcnn_toolkit.core.dataset_folder import MADE_BY, DatasetFolder
from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.core.json_files import read_json
from maskrcnn_toolkit.core.label_map import LabelMap, read_label_map

EXPERIMENT = "maskrcnn_resnetfpn_coco"  # the Model Garden factory pipeline.yaml belongs to
MIN_LEVEL, MAX_LEVEL = 2, 6  # FPN levels of every preset: image sides must divide by 2**6


# ---------------------------------------------------------------------------------------
# The user's config: dataclasses are the schema (field names = keys, hints = types).

@dataclass
class Augment:
    hflip: bool = True
    scale: list[float] = field(default_factory=lambda: [0.8, 1.25])  # [min, max] jitter


@dataclass
class ModelSection:
    preset: str = "slim_r18_fpn"
    image_size: Optional[int] = None  # None: the preset's
    init_checkpoint: Optional[str] = None  # registry name or path; None: from scratch


@dataclass
class TrainSection:
    batch_size: int = 2
    steps: int = 1000
    optimizer: str = "sgd"  # sgd (momentum 0.9) | adam
    learning_rate: Optional[float] = None  # None: preset's per-image rate x batch size (sgd)
    warmup_steps: Optional[int] = None  # None: min(preset's, steps // 10)
    checkpoint_every: int = 500
    eval_every: int = 0  # 0: evaluate once, at the end
    log_every: int = 10
    augment: Augment = field(default_factory=Augment)


@dataclass
class EvalSection:
    batch_size: int = 2
    num_images_to_draw: int = 3  # val images with predicted masks in TensorBoard


@dataclass
class RuntimeSection:
    strategy: str = "auto"
    mixed_precision: bool = False


@dataclass
class UserConfig:
    data: str
    run_dir: str
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
    runtime: RuntimeSection = field(default_factory=RuntimeSection)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


STRATEGIES = ("auto", "one_device", "mirrored")
OPTIMIZERS = ("sgd", "adam")
# Adam's default rate, whatever the batch size: Adam's steps are scale-free, so the linear
# batch-size rule of SGD does not apply.
ADAM_LEARNING_RATE = 0.001

# ---------------------------------------------------------------------------------------
# Presets: the Model Garden settings behind each name.

_SLIM_HEADS = {
    # Measured (DESIGN): stock 256-filter heads cost ~30x the ResNet-18 backbone on CPU at
    # 256 px; these keep the architecture and cut the width.
    "decoder": {"type": "fpn", "fpn": {"num_filters": 64}},
    "rpn_head": {"num_filters": 64},
    "detection_head": {"num_convs": 0, "num_fcs": 1, "fc_dims": 256},
    "mask_head": {"num_convs": 2, "num_filters": 64},
    "roi_sampler": {"num_sampled_rois": 128},
    "mask_sampler": {"num_sampled_masks": 32},
    "roi_generator": {"num_proposals": 200, "test_num_proposals": 200,
                      "pre_nms_top_k": 1000, "test_pre_nms_top_k": 1000},
}


@dataclass(frozen=True)
class Preset:
    description: str
    model: dict  # overrides of task.model
    image_size: int
    lr_per_image: float  # default learning rate = lr_per_image * batch size
    warmup_steps: int
    od_feature_extractor: str  # the closest TF OD API feature extractor (pipeline.config)


PRESETS: dict[str, Preset] = {
    "slim_r18_fpn": Preset(
        "ResNet-18 + FPN with slim heads (FPN 64, fc 256, 2x64 mask head): CPU friendly",
        {"backbone": {"type": "resnet", "resnet": {"model_id": 18}}, **_SLIM_HEADS},
        256, 0.01, 100, "faster_rcnn_resnet50_fpn_keras"),
    # The demo's model (docs/DESIGN_NOTES.md, Demo, session 5): at half width the backbone
    # costs ~1/4 as much, a step ~0.7x as long, and from scratch the extra steps that buys
    # in the same minutes outweigh the width (mask AP 0.61-0.62 at 1,500 steps vs ~0.5 at 1,000
    # full-width steps, same wall time). It cannot load full-width ResNet-18 weights.
    "half_r18_fpn": Preset(
        "ResNet-18 at half width + FPN, the same slim heads: most AP per CPU minute from scratch",
        {"backbone": {"type": "resnet", "resnet": {"model_id": 18, "depth_multiplier": 0.5}},
         **_SLIM_HEADS},
        256, 0.01, 100, "faster_rcnn_resnet50_fpn_keras"),
    "slim_mobilenetv2_fpn": Preset(
        "MobileNetV2 + FPN with the same slim heads: as fast as half_r18_fpn on CPU",
        {"backbone": {"type": "mobilenet", "mobilenet": {"model_id": "MobileNetV2"}},
         **_SLIM_HEADS},
        256, 0.01, 100, "faster_rcnn_resnet50_fpn_keras"),
    "r50_fpn": Preset(
        "stock Model Garden Mask R-CNN ResNet-50 + FPN (COCO layout), for a GPU",
        {"backbone": {"type": "resnet", "resnet": {"model_id": 50}}},
        1024, 0.0025, 500, "faster_rcnn_resnet50_fpn_keras"),
    "tiny_r18_fpn": Preset(
        "a quarter-width ResNet-18 with tiny heads: smoke tests only, learns little",
        {"backbone": {"type": "resnet", "resnet": {"model_id": 18, "depth_multiplier": 0.25}},
         "decoder": {"type": "fpn", "fpn": {"num_filters": 32}},
         "rpn_head": {"num_filters": 32},
         "detection_head": {"num_convs": 0, "num_fcs": 1, "fc_dims": 64},
         "mask_head": {"num_convs": 1, "num_filters": 16},
         "roi_sampler": {"num_sampled_rois": 32},
         "mask_sampler": {"num_sampled_masks": 8},
         "roi_generator": {"num_proposals": 50, "test_num_proposals": 50,
                           "pre_nms_top_k": 300, "test_pre_nms_top_k": 300},
         "detection_generator": {"max_num_detections": 20}},
        128, 0.01, 10, "faster_rcnn_resnet50_fpn_keras"),
}


# ---------------------------------------------------------------------------------------
# Strict parsing

def _closest(key: str, valid: list[str]) -> str:
    m = difflib.get_close_matches(key, valid, n=1, cutoff=0.4)
    return f"; did you mean {m[0]!r}?" if m else ""


def _type_name(hint) -> str:
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return f"{_type_name(args[0])} or null"
    if origin is list:
        return f"a list of {_type_name(typing.get_args(hint)[0])}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(
        hint, str(hint))


def _check_value(value, hint, where: str, path: str):
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _check_value(value, args[0], where, path)
    bad = UserError(f"{path}: {where} must be {_type_name(hint)}, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise bad
        return [_check_value(v, typing.get_args(hint)[0], where, path) for v in value]
    if hint is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if hint is int:
        # YAML true/false are bools, which Python also counts as ints: refuse them.
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise bad
        return value
    raise TypeError(hint)


def _build(cls, data: Any, path: str, prefix: str = ""):
    """Build dataclass ``cls`` from a YAML mapping, refusing unknown keys and wrong types."""
    where = prefix.rstrip(".") or "the config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: {where} must be a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            full = f"{prefix}{key}"
            raise UserError(f"{path}: unknown key {full!r}{_closest(str(key), list(fields))} "
                            f"(valid keys in {where}: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        hint = hints[name]
        required = (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        if name not in data:
            if required:
                raise UserError(f"{path}: missing required key {prefix}{name!r}")
            continue
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, data[name], path, f"{prefix}{name}.")
        else:
            kwargs[name] = _check_value(data[name], hint, f"{prefix}{name}", path)
    return cls(**kwargs)


def _apply_overrides(raw: dict, overrides: dict | None) -> dict:
    """Overrides as dotted keys ({"train.steps": 4}) or nested dicts, applied before checks."""
    raw = copy.deepcopy(raw)
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and "." not in key:
            raw[key] = _apply_overrides(raw.get(key) or {}, value)
            continue
        node = raw
        parts = key.split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[parts[-1]] = value
    return raw


def read_user_config(config_path: str | os.PathLike, overrides: dict | None = None
                     ) -> UserConfig:
    """Read and check the user's YAML (types, known keys, possible values).

    Paths are left as written; :func:`load_run` resolves them against the YAML's folder.
    """
    path = os.fspath(config_path)
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except OSError as e:
        raise UserError(f"cannot read config {path!r}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML: {e}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a config is a mapping of keys (data:, run_dir:, model:, ...)")
    user = _build(UserConfig, _apply_overrides(raw, overrides), path)
    _check_values(user, path)
    return user


def _check_values(u: UserConfig, path: str) -> None:
    def bad(key, value, fix):
        raise UserError(f"{path}: {key} = {value!r} is not possible; {fix}")

    if u.model.preset not in PRESETS:
        raise UserError(f"{path}: unknown model.preset {u.model.preset!r}"
                        f"{_closest(u.model.preset, list(PRESETS))} "
                        f"(presets: {', '.join(PRESETS)})")
    size = u.model.image_size
    step = 2 ** MAX_LEVEL
    if size is not None and (size < step or size % step):
        near = max(step, round(size / step) * step)
        bad("model.image_size", size, f"it must be a multiple of {step} (2**max_level, the "
            f"coarsest FPN level), e.g. {near}")
    if u.model.init_checkpoint is not None and not u.model.init_checkpoint.strip():
        bad("model.init_checkpoint", u.model.init_checkpoint,
            "give a registry name or a path, or null to train from scratch")
    t = u.train
    for key in ("batch_size", "steps", "checkpoint_every", "log_every"):
        if getattr(t, key) < 1:
            bad(f"train.{key}", getattr(t, key), "it must be at least 1")
    if t.eval_every < 0:
        bad("train.eval_every", t.eval_every, "use 0 to evaluate only at the end")
    if t.optimizer not in OPTIMIZERS:
        raise UserError(f"{path}: unknown train.optimizer {t.optimizer!r}"
                        f"{_closest(t.optimizer, list(OPTIMIZERS))} "
                        f"(valid: {', '.join(OPTIMIZERS)})")
    if t.learning_rate is not None and not (0 < t.learning_rate < 10 and
                                            math.isfinite(t.learning_rate)):
        bad("train.learning_rate", t.learning_rate, "use a positive value such as 0.01")
    if t.warmup_steps is not None and not 0 <= t.warmup_steps < t.steps:
        bad("train.warmup_steps", t.warmup_steps,
            f"it must be >= 0 and smaller than train.steps ({t.steps})")
    sc = t.augment.scale
    if len(sc) != 2 or not 0 < sc[0] <= sc[1] <= 4:
        bad("train.augment.scale", sc, "give [min, max] with 0 < min <= max <= 4, "
            "e.g. [0.8, 1.25]; [1.0, 1.0] turns scale jitter off")
    if u.eval.batch_size < 1:
        bad("eval.batch_size", u.eval.batch_size, "it must be at least 1")
    if u.eval.num_images_to_draw < 0:
        bad("eval.num_images_to_draw", u.eval.num_images_to_draw, "use 0 for none")
    if u.runtime.strategy not in STRATEGIES:
        raise UserError(f"{path}: unknown runtime.strategy {u.runtime.strategy!r}"
                        f"{_closest(u.runtime.strategy, list(STRATEGIES))} "
                        f"(valid: {', '.join(STRATEGIES)})")


# ---------------------------------------------------------------------------------------
# The run

@dataclass
class Run:
    """Everything a command needs about one training run.

    user: the checked user config, with defaults filled in and paths as written.
    experiment: Model Garden ``ExperimentConfig`` (``maskrcnn_resnetfpn_coco`` layout).
    label_map: the dataset's label map; ``experiment.task.model.num_classes`` is its
      largest id + 1.
    run_dir / data_dir: absolute paths.
    config_path: the YAML this run was loaded from.
    """

    user: UserConfig
    experiment: Any
    label_map: LabelMap
    run_dir: Path
    data_dir: Path
    config_path: Path
    train_files: list[Path]
    val_files: list[Path]
    # Why pipeline.yaml's task.init_checkpoint is empty although the user gave one (a
    # comment heading pipeline.yaml); "" when it is set or none was given.
    init_note: str = ""

    @property
    def preset(self) -> Preset:
        return PRESETS[self.user.model.preset]

    @property
    def image_size(self) -> int:
        return int(self.experiment.task.model.input_size[0])

    def resolved_user_dict(self) -> dict:
        """The user config with defaults filled in and paths made absolute (config.yaml)."""
        d = self.user.as_dict()
        d["data"] = str(self.data_dir)
        d["run_dir"] = str(self.run_dir)
        d["model"]["image_size"] = self.image_size
        d["model"]["init_checkpoint"] = init_checkpoint_value(self)
        t = self.experiment.trainer.optimizer_config
        d["train"]["learning_rate"] = t.learning_rate.cosine.initial_learning_rate
        d["train"]["warmup_steps"] = t.warmup.linear.warmup_steps
        return d

    def pipeline_yaml(self) -> str:
        """Model Garden's experiment as YAML, headed by a comment when the user's init
        checkpoint could not be written into ``task.init_checkpoint`` (see
        :func:`model_garden_init`): YAML comments are ignored by Model Garden's loader."""
        head = "".join(f"# {line}\n" for line in self.init_note.splitlines())
        return head + yaml.safe_dump(self.experiment.as_dict(), sort_keys=True)

    def refresh_init_checkpoint(self) -> None:
        """Recompute ``task.init_checkpoint`` / ``init_checkpoint_modules`` (e.g. after the
        trainer downloaded a registry checkpoint) for the next :meth:`save`."""
        path, modules, self.init_note = model_garden_init(self)
        self.experiment.override({"task": {"init_checkpoint": path,
                                           "init_checkpoint_modules": modules}},
                                 is_strict=True)

    def pipeline_config(self) -> str:
        return od_pipeline_config(self)

    def save(self, folder: str | os.PathLike | None = None) -> None:
        """Write pipeline.yaml, pipeline.config, config.yaml and label_map.pbtxt (atomically)."""
        folder = Path(folder or self.run_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in (("pipeline.yaml", self.pipeline_yaml()),
                           ("pipeline.config", self.pipeline_config()),
                           ("config.yaml", yaml.safe_dump(self.resolved_user_dict(),
                                                          sort_keys=False)),
                           ("label_map.pbtxt", self.label_map.to_pbtxt())):
            with atomic_write(folder / name, "w") as f:
                f.write(text)


def _resolve(base: Path, p: str) -> Path:
    return (base / os.path.expanduser(p)).resolve()


def init_checkpoint_value(run: "Run") -> str | None:
    """The init checkpoint as the user meant it: an absolute path when the value names an
    existing file/folder (or a checkpoint prefix) relative to the YAML, else the registry
    name as written (resolved and downloaded only when training starts)."""
    v = run.user.model.init_checkpoint
    if v is None:
        return None
    p = _resolve(run.config_path.parent, v)
    if p.exists() or glob.glob(str(p) + ".index") or os.sep in v or v.startswith("."):
        return str(p)
    return v


def model_garden_init(run: "Run") -> tuple[str, str, str]:
    """``(task.init_checkpoint, task.init_checkpoint_modules, note)`` for pipeline.yaml, so
    that Model Garden's own trainer starts from the same checkpoint as ours where it can.

    Our trainer never reads these fields (it restores by name and shape, see
    modeling/checkpoints.py). Model Garden's ``MaskRCNNTask.initialize`` restores whole
    modules and asserts that every existing object matched, so the modules come from
    :func:`modeling.checkpoints.model_garden_init_modules` (the registry entry's
    ``restores``, or the checkpoint's own top-level objects and class count), never "all"
    for a class-mismatched checkpoint. Where nothing can be written (a registry checkpoint
    not downloaded yet, or a checkpoint Model Garden cannot load) the path is empty and
    ``note`` says so; pipeline.yaml carries it as a comment.
    """
    from maskrcnn_toolkit.modeling.checkpoints import (
        REGISTRY,
        cached_checkpoint,
        checkpoint_prefix,
        model_garden_init_modules,
    )
    value = init_checkpoint_value(run)
    if value is None:
        return "", "backbone", ""
    num_classes = run.label_map.num_classes_with_background
    if value in REGISTRY:
        prefix = cached_checkpoint(value)
        if prefix is None:
            return "", "backbone", (
                f"model.init_checkpoint {value!r} is not downloaded yet, so task.init_checkpoint\n"
                f"is empty: Model Garden's trainer would start from scratch. `python train.py`\n"
                f"downloads it and rewrites this file with its local path.")
        modules = model_garden_init_modules(prefix, num_classes, REGISTRY[value].restores)
    else:
        prefix = checkpoint_prefix(value)
        if prefix is None:
            raise UserError(f"{run.config_path}: model.init_checkpoint {value!r} holds no "
                            f"TensorFlow checkpoint (no *.index file); give a checkpoint "
                            f"prefix like run/ckpt-1000, or its folder")
        modules = model_garden_init_modules(prefix, num_classes)
    if modules is None:
        return "", "backbone", (
            f"model.init_checkpoint {str(prefix)!r} cannot be restored by Model Garden's\n"
            f"trainer (whole modules only; its class count or layout differs), so\n"
            f"task.init_checkpoint is empty here. train.py restores it by name and shape.")
    return str(prefix), modules, ""


def load_run(config_path: str | os.PathLike, overrides: dict | None = None) -> Run:
    """Read the user's YAML and the dataset folder; build the Model Garden experiment.

    Raises UserError for any problem in the YAML or the data folder (missing folder, no
    shards, no label map, no val_annotations.json), before TensorFlow builds anything.
    """
    config_path = Path(config_path).resolve()
    user = read_user_config(config_path, overrides)
    base = config_path.parent
    data_dir = _resolve(base, user.data)
    run_dir = _resolve(base, user.run_dir)
    where = f"{config_path}: data = {user.data!r} (resolved to {str(data_dir)!r})"
    if not data_dir.is_dir():
        raise UserError(f"{where} is not a folder; make it with `python -m dataset_tools "
                        f"convert FORMAT SRC {user.data}` (paths are relative to the "
                        f"config file's folder)")
    train_files, val_files = (DatasetFolder(data_dir).shards(s) for s in ("train", "val"))
    if not train_files:
        raise UserError(f"{where} has no train-*.tfrecord shards; is it a folder made by "
                        f"`python -m dataset_tools convert`?")
    if not val_files:
        raise UserError(f"{where} has no val-*.tfrecord shards; convert with a validation "
                        f"split (--val-fraction)")
    for need in ("label_map.pbtxt", "val_annotations.json"):
        if not (data_dir / need).is_file():
            raise UserError(f"{where} has no {need}; re-run `python -m dataset_tools "
                            f"convert` into it")
    label_map = read_label_map(data_dir / "label_map.pbtxt")
    _check_init_checkpoint(user, config_path)
    if run_dir == data_dir:
        raise UserError(f"{config_path}: run_dir and data are the same folder "
                        f"{str(run_dir)!r}; give the run its own folder")
    run = Run(user, None, label_map, run_dir, data_dir, config_path, train_files, val_files)
    run.experiment = build_experiment(run)
    run.refresh_init_checkpoint()
    return run


def _check_init_checkpoint(user: UserConfig, config_path: Path) -> None:
    """A value that is neither an existing path (relative to the YAML) nor a registry name
    is refused here, before anything is built or downloaded."""
    from maskrcnn_toolkit.modeling.checkpoints import REGISTRY
    v = user.model.init_checkpoint
    if v is None or v in REGISTRY:
        return
    p = _resolve(config_path.parent, v)
    if p.exists() or Path(str(p) + ".index").exists():
        return
    raise UserError(f"{config_path}: model.init_checkpoint {v!r} is neither a checkpoint "
                    f"path (looked for {str(p)!r}, relative to the config's folder) nor a "
                    f"registry name{_closest(v, list(REGISTRY))} (known: "
                    f"{', '.join(sorted(REGISTRY))})")


def build_experiment(run: Run):
    """The Model Garden ExperimentConfig for this run (validated by Model Garden itself)."""
    from official.core import exp_factory
    from official.vision import registry_imports  # noqa: F401  (registers the factories)

    u, p = run.user, run.preset
    size = u.model.image_size or p.image_size
    t = u.train
    lr = t.learning_rate if t.learning_rate is not None else (
        ADAM_LEARNING_RATE if t.optimizer == "adam" else p.lr_per_image * t.batch_size)
    warmup = t.warmup_steps if t.warmup_steps is not None else min(p.warmup_steps, t.steps // 10)
    # Measured on the parts demo (docs/DESIGN_NOTES.md, "Demo"): from scratch, Adam at 1e-3
    # reached a higher mask AP in 1,000 steps than SGD at 0.02; SGD stays the default for
    # fine-tuning, where the Model Garden recipes use it.
    optimizer = ({"type": "adam", "adam": {"global_clipnorm": 10.0}} if t.optimizer == "adam"
                 else {"type": "sgd", "sgd": {"momentum": 0.9, "global_clipnorm": 10.0}})
    num_val = _count_val_images(run.data_dir / "val_annotations.json")
    model = copy.deepcopy(p.model)
    model.update({
        "num_classes": run.label_map.num_classes_with_background,
        "input_size": [size, size, 3],
        "min_level": MIN_LEVEL, "max_level": MAX_LEVEL,
    })
    # Model Garden's decoder casts mask pixels to float as is. Ours are 0/1, but records from
    # other tools often hold 0/255 masks: without a threshold those targets are 255 and the
    # mask loss goes negative (seen here). The threshold makes any of them 0/1.
    data_common = {"dtype": "float32", "file_type": "tfrecord",
                   "decoder": {"type": "simple_decoder",
                               "simple_decoder": {"mask_binarize_threshold": 0.5}}}
    # Decided here, not at training time, so pipeline.yaml says what actually runs:
    # float16 only with a GPU (on a CPU it is slower, never faster).
    mixed = u.runtime.mixed_precision and gpu_available()
    exp = exp_factory.get_exp_config(EXPERIMENT)
    exp.override({
        "runtime": {
            "mixed_precision_dtype": "float16" if mixed else "float32",
            "enable_xla": False,
            "distribution_strategy": "mirrored" if u.runtime.strategy == "mirrored"
            else "one_device",
        },
        "task": {
            # Our trainer restores init checkpoints itself, by name and shape (see
            # modeling/checkpoints.py); these two are for Model Garden's own trainer, filled
            # in by Run.refresh_init_checkpoint (model_garden_init).
            "init_checkpoint": "",
            "init_checkpoint_modules": "backbone",
            "annotation_file": str(run.data_dir / "val_annotations.json"),
            "model": model,
            "train_data": {
                **data_common, "input_path": str(run.data_dir / "train-*.tfrecord"),
                "is_training": True, "global_batch_size": t.batch_size,
                "shuffle_buffer_size": 1000,
                "parser": {"aug_rand_hflip": t.augment.hflip,
                           "aug_scale_min": t.augment.scale[0],
                           "aug_scale_max": t.augment.scale[1]},
            },
            "validation_data": {
                **data_common, "input_path": str(run.data_dir / "val-*.tfrecord"),
                "is_training": False, "global_batch_size": u.eval.batch_size,
                "drop_remainder": False, "num_examples": num_val,
            },
        },
        "trainer": {
            "train_steps": t.steps,
            "validation_steps": math.ceil(num_val / u.eval.batch_size),
            "validation_interval": u.train.eval_every or t.steps,
            "steps_per_loop": min(t.log_every, t.steps),
            "summary_interval": min(t.log_every, t.steps),
            "checkpoint_interval": t.checkpoint_every,
            "max_to_keep": 3,
            "optimizer_config": {
                "optimizer": optimizer,
                "learning_rate": {"type": "cosine",
                                  "cosine": {"initial_learning_rate": lr,
                                             "decay_steps": t.steps, "alpha": 0.01}},
                "warmup": {"type": "linear",
                           "linear": {"warmup_steps": warmup,
                                      "warmup_learning_rate": lr * 0.01}},
            },
        },
    }, is_strict=True)
    exp.validate()
    return exp


def gpu_available() -> bool:
    """Whether TensorFlow sees a GPU (physical devices: does not initialize the runtime, so
    logical device splits can still be configured afterwards)."""
    import tensorflow as tf
    return bool(tf.config.list_physical_devices("GPU"))


def _count_val_images(path: Path) -> int:
    gt = read_json(path, f"the COCO ground truth `{MADE_BY}` writes; re-run it")
    n = len(gt.get("images", [])) if isinstance(gt, dict) else 0
    if n == 0:
        raise UserError(f"{str(path)!r} lists no validation images; convert with a "
                        f"validation split (--val-fraction)")
    return n


# ---------------------------------------------------------------------------------------
# TF Object Detection API pipeline (interop: for users who train with model_main_tf2.py)

def od_pipeline_config(run: Run) -> str:
    """The TF OD API text-proto ``TrainEvalPipelineConfig`` of the matching Mask R-CNN
    (faster_rcnn meta-architecture with a mask head). ``num_classes`` counts no background
    in the OD API (N), unlike Model Garden (N + 1).

    Every hyperparams block the OD API's builders require is written in full (regularizer,
    initializer, and for the feature extractor activation and batch norm), after the OD
    API's own TF2 configs (``faster_rcnn_resnet50_v1_fpn_640x640_coco17_tpu-8.config``,
    ``mask_rcnn_inception_resnet_v2_1024x1024_coco17_gpu-8.config``): an absent block
    fails in ``hyperparams_builder`` ("Unknown initializer function: None").
    ``fine_tune_checkpoint`` is left empty: our init checkpoints (registry names, Model
    Garden checkpoints) do not load in the OD API; the user puts an OD API one there.
    """
    u, p = run.user, run.preset
    size = run.image_size
    m = run.experiment.task.model
    opt = run.experiment.trainer.optimizer_config
    lr = opt.learning_rate.cosine.initial_learning_rate
    l2 = run.experiment.task.losses.l2_weight_decay
    adam = opt.optimizer.type == "adam"
    od_optimizer = "adam_optimizer" if adam else "momentum_optimizer"
    od_momentum = "" if adam else "      momentum_optimizer_value: 0.9\n"
    q = lambda s: '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'  # noqa: E731
    mask_size = m.mask_roi_aligner.crop_size * m.mask_head.upsample_factor
    lm = run.data_dir / "label_map.pbtxt"
    scale = u.train.augment.scale
    aug = ""
    if u.train.augment.hflip:
        aug += "  data_augmentation_options {\n    random_horizontal_flip {\n    }\n  }\n"
    if scale != [1.0, 1.0]:
        aug += ("  data_augmentation_options {\n    random_image_scale {\n"
                f"      min_scale_ratio: {scale[0]}\n      max_scale_ratio: {scale[1]}\n"
                "    }\n  }\n")
    match = ("matches it" if u.model.preset == "r50_fpn" else
             "is the closest: the OD API has no feature extractor for this backbone")
    return f"""\
# TF Object Detection API pipeline for this run, generated from {run.config_path.name}
# (model preset {u.model.preset}; the feature extractor {p.od_feature_extractor}
# {match}).
model {{
  faster_rcnn {{
    num_classes: {max(run.label_map.ids)}
    number_of_stages: 3
    image_resizer {{
      fixed_shape_resizer {{
        height: {size}
        width: {size}
      }}
    }}
    feature_extractor {{
      type: {q(p.od_feature_extractor)}
      batch_norm_trainable: true
      fpn {{
        min_level: {m.min_level}
        max_level: {m.max_level}
      }}
      conv_hyperparams {{
        activation: RELU_6
        regularizer {{
          l2_regularizer {{
            weight: {l2}
          }}
        }}
        initializer {{
          truncated_normal_initializer {{
            stddev: 0.03
            mean: 0.0
          }}
        }}
        batch_norm {{
          scale: true
          decay: 0.997
          epsilon: 0.001
        }}
      }}
      override_base_feature_extractor_hyperparams: true
    }}
    first_stage_anchor_generator {{
      multiscale_anchor_generator {{
        min_level: {m.min_level}
        max_level: {m.max_level}
        anchor_scale: {m.anchor.anchor_size}
        aspect_ratios: [{", ".join(str(a) for a in m.anchor.aspect_ratios)}]
        scales_per_octave: {m.anchor.num_scales}
      }}
    }}
    first_stage_box_predictor_conv_hyperparams {{
      op: CONV
      regularizer {{
        l2_regularizer {{
          weight: {l2}
        }}
      }}
      initializer {{
        truncated_normal_initializer {{
          stddev: 0.01
        }}
      }}
    }}
    first_stage_nms_score_threshold: 0.0
    first_stage_nms_iou_threshold: {m.roi_generator.nms_iou_threshold}
    first_stage_max_proposals: {m.roi_generator.num_proposals}
    first_stage_localization_loss_weight: 1.0
    first_stage_objectness_loss_weight: 1.0
    initial_crop_size: {m.roi_aligner.crop_size * 2}
    maxpool_kernel_size: 2
    maxpool_stride: 2
    second_stage_batch_size: {m.roi_sampler.num_sampled_rois}
    second_stage_box_predictor {{
      mask_rcnn_box_predictor {{
        fc_hyperparams {{
          op: FC
          regularizer {{
            l2_regularizer {{
              weight: {l2}
            }}
          }}
          initializer {{
            variance_scaling_initializer {{
              factor: 1.0
              uniform: true
              mode: FAN_AVG
            }}
          }}
        }}
        use_dropout: false
        dropout_keep_probability: 1.0
        predict_instance_masks: true
        mask_height: {mask_size}
        mask_width: {mask_size}
        mask_prediction_conv_depth: {m.mask_head.num_filters}
        mask_prediction_num_conv_layers: {m.mask_head.num_convs}
        conv_hyperparams {{
          op: CONV
          regularizer {{
            l2_regularizer {{
              weight: {l2}
            }}
          }}
          initializer {{
            truncated_normal_initializer {{
              stddev: 0.01
            }}
          }}
        }}
      }}
    }}
    second_stage_post_processing {{
      batch_non_max_suppression {{
        score_threshold: {m.detection_generator.pre_nms_score_threshold}
        iou_threshold: {m.detection_generator.nms_iou_threshold}
        max_detections_per_class: {m.detection_generator.max_num_detections}
        max_total_detections: {m.detection_generator.max_num_detections}
      }}
      score_converter: SOFTMAX
    }}
    second_stage_localization_loss_weight: 1.0
    second_stage_classification_loss_weight: 1.0
    second_stage_mask_prediction_loss_weight: 1.0
  }}
}}
train_config {{
  batch_size: {u.train.batch_size}
  num_steps: {u.train.steps}
{aug}  optimizer {{
    {od_optimizer} {{
      learning_rate {{
        cosine_decay_learning_rate {{
          learning_rate_base: {lr}
          total_steps: {u.train.steps}
          warmup_learning_rate: {opt.warmup.linear.warmup_learning_rate}
          warmup_steps: {opt.warmup.linear.warmup_steps}
        }}
      }}
{od_momentum}    }}
    use_moving_average: false
  }}
  # Empty: train from scratch. To fine-tune, put an OD API (TF2) checkpoint here, e.g.
  # "PATH/checkpoint/ckpt-0" of a TF2 Detection Model Zoo Mask/Faster R-CNN. Model Garden
  # checkpoints (model.init_checkpoint, our runs, the registry) do not load in the OD API.
  fine_tune_checkpoint: ""
  fine_tune_checkpoint_type: "detection"
  fine_tune_checkpoint_version: V2
}}
train_input_reader {{
  label_map_path: {q(lm)}
  load_instance_masks: true
  mask_type: PNG_MASKS
  tf_record_input_reader {{
    input_path: {q(run.data_dir / "train-*.tfrecord")}
  }}
}}
eval_config {{
  metrics_set: "coco_detection_metrics"
  metrics_set: "coco_mask_metrics"
  eval_instance_masks: true
  use_moving_averages: false
  batch_size: 1
}}
eval_input_reader {{
  label_map_path: {q(lm)}
  shuffle: false
  num_epochs: 1
  load_instance_masks: true
  mask_type: PNG_MASKS
  tf_record_input_reader {{
    input_path: {q(run.data_dir / "val-*.tfrecord")}
  }}
}}
"""
