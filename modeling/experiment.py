"""A run's Model Garden ``ExperimentConfig`` (pipeline.yaml; docs/DESIGN_NOTES.md, decision 4).

:func:`build_experiment` starts from Model Garden's own ``maskrcnn_resnetfpn_coco`` factory,
overrides it strictly with the preset and the user's settings, and lets Model Garden
validate it, so pipeline.yaml is what Model Garden's trainer runs.
:func:`model_garden_init` fills in ``task.init_checkpoint`` for Model Garden's trainer.
Only Model Garden's config classes are used here; no TensorFlow graph is built.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import TYPE_CHECKING

from maskrcnn_toolkit.core.dataset_folder import MADE_BY, DatasetFolder
from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.core.json_files import read_json

if TYPE_CHECKING:  # annotations only: config.py imports this module
    from maskrcnn_toolkit.modeling.config import Run

EXPERIMENT = "maskrcnn_resnetfpn_coco"  # the Model Garden factory pipeline.yaml belongs to
# Adam's default rate, whatever the batch size: Adam's steps are scale-free, so the linear
# batch-size rule of SGD does not apply.
ADAM_LEARNING_RATE = 0.001


def build_experiment(run: Run):
    """The Model Garden ExperimentConfig for this run (validated by Model Garden itself)."""
    from official.core import exp_factory
    from official.vision import registry_imports  # noqa: F401  (registers the factories)

    u, p = run.user, run.preset
    folder = DatasetFolder(run.data_dir)
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
    num_val = _count_val_images(folder.ground_truth("val"))
    model = copy.deepcopy(p.model)
    model.update({
        "num_classes": run.label_map.num_classes_with_background,
        "input_size": [size, size, 3],
        "min_level": p.min_level, "max_level": p.max_level,
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
            "annotation_file": str(folder.ground_truth("val")),
            "model": model,
            "train_data": {
                **data_common, "input_path": folder.shard_pattern("train"),
                "is_training": True, "global_batch_size": t.batch_size,
                "shuffle_buffer_size": 1000,
                "parser": {"aug_rand_hflip": t.augment.hflip,
                           "aug_scale_min": t.augment.scale[0],
                           "aug_scale_max": t.augment.scale[1]},
            },
            "validation_data": {
                **data_common, "input_path": folder.shard_pattern("val"),
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


def model_garden_init(value: str | None, num_classes: int, config_path: Path
                      ) -> tuple[str, str, str]:
    """``(task.init_checkpoint, task.init_checkpoint_modules, note)`` for pipeline.yaml, so
    that Model Garden's own trainer starts from the same checkpoint as ours where it can.

    ``value``: the user's ``model.init_checkpoint`` as
    :func:`modeling.config.init_checkpoint_value` resolves it (an absolute path, a registry
    name, or None); ``num_classes`` counts the background (label map's largest id + 1);
    ``config_path`` is the YAML, named in errors.

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
    if value is None:
        return "", "backbone", ""
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
            raise UserError(f"{config_path}: model.init_checkpoint {value!r} holds no "
                            f"TensorFlow checkpoint (no *.index file); give a checkpoint "
                            f"prefix like run/ckpt-1000, or its folder")
        modules = model_garden_init_modules(prefix, num_classes)
    if modules is None:
        return "", "backbone", (
            f"model.init_checkpoint {str(prefix)!r} cannot be restored by Model Garden's\n"
            f"trainer (whole modules only; its class count or layout differs), so\n"
            f"task.init_checkpoint is empty here. train.py restores it by name and shape.")
    return str(prefix), modules, ""
