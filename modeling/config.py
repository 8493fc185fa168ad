"""The user's short YAML → Model Garden's full Mask R-CNN experiment config
(docs/DESIGN_NOTES.md, decision 4).

A user config looks like this (every key but ``data`` and ``run_dir`` has a default)::

    data: ../demo_out/data          # folder made by `python -m dataset_tools convert`
    run_dir: ../demo_out/run        # checkpoints, TensorBoard logs, pipeline.yaml
    model:
      preset: slim_r18_fpn          # see modeling/presets.py
      image_size: 256               # square input; a multiple of 2**max_level (64; 128 for
                                    # spinenet49_mobile)
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
key and the closest valid key (the strict parser: modeling/schema.py); a wrong type or an
impossible value names the key and the fix.

:func:`load_run` gives a :class:`Run`: the checked config, the dataset folder, and the
Model Garden experiment built from them (modeling/experiment.py), which :meth:`Run.save`
writes as pipeline.yaml, with the OD API's pipeline.config (modeling/od_api_config.py).
"""
from __future__ import annotations

import dataclasses
import glob
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from maskrcnn_toolkit.core.atomic import atomic_write
from maskrcnn_toolkit.core.dataset_folder import DatasetFolder
from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.core.label_map import LabelMap, read_label_map
from maskrcnn_toolkit.modeling.experiment import build_experiment, model_garden_init
from maskrcnn_toolkit.modeling.od_api_config import od_pipeline_config
from maskrcnn_toolkit.modeling.presets import PRESETS, Preset
from maskrcnn_toolkit.modeling.schema import apply_overrides, build_dataclass, did_you_mean

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


# ---------------------------------------------------------------------------------------
# Reading and checking

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
    user = build_dataclass(UserConfig, apply_overrides(raw, overrides), path)
    _check_values(user, path)
    return user


def _check_values(u: UserConfig, path: str) -> None:
    def bad(key, value, fix):
        raise UserError(f"{path}: {key} = {value!r} is not possible; {fix}")

    if u.model.preset not in PRESETS:
        raise UserError(f"{path}: unknown model.preset {u.model.preset!r}"
                        f"{did_you_mean(u.model.preset, list(PRESETS))} "
                        f"(presets: {', '.join(PRESETS)})")
    size = u.model.image_size
    step = 2 ** PRESETS[u.model.preset].max_level
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
                        f"{did_you_mean(t.optimizer, list(OPTIMIZERS))} "
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
                        f"{did_you_mean(u.runtime.strategy, list(STRATEGIES))} "
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
        path, modules, self.init_note = model_garden_init(
            init_checkpoint_value(self), self.label_map.num_classes_with_background,
            self.config_path)
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


def load_run(config_path: str | os.PathLike, overrides: dict | None = None,
             experiment: bool = True) -> Run:
    """Read the user's YAML and the dataset folder; build the Model Garden experiment.

    Raises UserError for any problem in the YAML or the data folder (missing folder, no
    shards, no label map, no val_annotations.json), before TensorFlow builds anything.
    ``experiment=False`` stops there: ``run.experiment`` is None and neither TensorFlow nor
    Model Garden is imported, for the checks a command makes before anything slow (an
    unknown checkpoint is answered in a fraction of a second, not after ~10 s of imports).
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
    folder = DatasetFolder(data_dir)
    train_files, val_files = (folder.shards(s) for s in ("train", "val"))
    if not train_files:
        raise UserError(f"{where} has no train-*.tfrecord shards; is it a folder made by "
                        f"`python -m dataset_tools convert`?")
    if not val_files:
        raise UserError(f"{where} has no val-*.tfrecord shards; convert with a validation "
                        f"split (--val-fraction)")
    for need in (folder.label_map, folder.ground_truth("val")):
        if not need.is_file():
            raise UserError(f"{where} has no {need.name}; re-run `python -m dataset_tools "
                            f"convert` into it")
    label_map = read_label_map(folder.label_map)
    _check_init_checkpoint(user, config_path)
    if run_dir == data_dir:
        raise UserError(f"{config_path}: run_dir and data are the same folder "
                        f"{str(run_dir)!r}; give the run its own folder")
    run = Run(user, None, label_map, run_dir, data_dir, config_path, train_files, val_files)
    if not experiment:
        return run
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
                    f"registry name{did_you_mean(v, list(REGISTRY))} (known: "
                    f"{', '.join(sorted(REGISTRY))})")

