"""Build a run's Model Garden Mask R-CNN and restore its trained weights (for evaluation
and export)."""
from __future__ import annotations

import os
from pathlib import Path

from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.modeling.config import Run


def build_model(run: Run):
    """The run's ``MaskRCNNModel`` (tf_keras.Model), built for input
    [batch, image_size, image_size, 3] float32 normalized as Model Garden's parser does,
    with the variables, names and regularizers of ``MaskRCNNTask.build_model``, so it
    matches the training checkpoint (a test checks both builds against each other).

    Why not ``MaskRCNNTask.build_model`` itself: it creates the variables by calling the
    model on symbolic Keras inputs, which traces the whole network into a Keras graph:
    14 s for the demo model on 2 cores, in every process that builds one (train, evaluate,
    export). One eager call on a zero image creates the same variables in 2.5 s.
    """
    import tensorflow as tf
    import tf_keras
    from official.vision import registry_imports  # noqa: F401
    from official.vision.modeling import factory
    task = run.experiment.task
    cfg = task.model
    l2 = task.losses.l2_weight_decay
    # As MaskRCNNTask.build_model: half the decay, to match tf.nn.l2_loss.
    model = factory.build_maskrcnn(
        input_specs=tf_keras.layers.InputSpec(shape=[None] + list(cfg.input_size)),
        model_config=cfg,
        l2_regularizer=tf_keras.regularizers.l2(l2 / 2.0) if l2 else None)
    if task.freeze_backbone:
        model.backbone.trainable = False
    h, w = cfg.input_size[:2]
    model(tf.zeros([1, h, w, cfg.input_size[2]]), image_shape=tf.constant([[h, w]], tf.float32),
          training=False)
    return model


def _checkpoints_in(folder: Path) -> list[str]:
    """Names of the checkpoints (``ckpt-250``...) whose index file is in ``folder``, by step."""
    from maskrcnn_toolkit.modeling.checkpoints import by_step
    names = [p.name[:-len(".index")] for p in folder.glob("*.index")] if folder.is_dir() else []
    return sorted(names, key=by_step)


def find_checkpoint(run: Run, checkpoint: str | os.PathLike | None = None) -> str:
    """The checkpoint prefix to load: ``checkpoint`` (a prefix such as ``run/ckpt-1000``, its
    ``.index`` file, or a folder: its latest) or, when None, the latest in the run dir. Only
    files are looked at (no model is built), so a mistake is answered at once.

    Raises UserError: before training ("no checkpoint in RUN_DIR yet: train first"), or for a
    ``checkpoint`` that is not there, listing the checkpoints that are.
    """
    from maskrcnn_toolkit.modeling.checkpoints import checkpoint_prefix
    run_dir = Path(run.run_dir)
    config = os.fspath(getattr(run, "config_path", "") or "CONFIG")
    if checkpoint is None:
        prefix = checkpoint_prefix(run_dir)
        if prefix is None:
            raise UserError(f"no checkpoint in {str(run_dir)!r} yet: train first with "
                            f"`python train.py --config {config}`")
        return str(prefix)
    p = Path(checkpoint)
    prefix = checkpoint_prefix(p)
    if prefix is not None:
        return str(prefix)
    where = p if p.is_dir() else p.parent
    found = _checkpoints_in(where)
    if found:
        there = (f"{str(where)!r} holds {', '.join(found[-8:])} (e.g. "
                 f"--checkpoint {where / found[-1]})")
    elif _checkpoints_in(run_dir):
        found = _checkpoints_in(run_dir)
        there = (f"the run dir {str(run_dir)!r} holds {', '.join(found[-8:])} (e.g. "
                 f"--checkpoint {run_dir / found[-1]})")
    else:
        there = (f"the run dir {str(run_dir)!r} holds none yet: train first with "
                 f"`python train.py --config {config}`")
    raise UserError(f"checkpoint {str(p)!r} not found; {there}, or leave --checkpoint out "
                    f"for the run's latest")


def restore(model, prefix: str) -> str:
    """Load trained weights into ``model`` (built by :func:`build_model` for the same
    config) from the checkpoint ``prefix`` (resolved by :func:`find_checkpoint`); returns
    the prefix.

    Every model variable must be in the checkpoint: a checkpoint of another architecture,
    class count or image-independent shape is a UserError, not a half-loaded model.
    """
    import tensorflow as tf
    try:
        status = tf.train.Checkpoint(model=model).read(prefix)
        status.expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:
        raise UserError(f"checkpoint {prefix!r} does not match this model (another preset, "
                        f"image size or label map?): {str(e).splitlines()[0][:300]}") from None
    return prefix
