"""Build a run's Model Garden Mask R-CNN and restore its trained weights (for evaluation
and export)."""
from __future__ import annotations

import os
from pathlib import Path

from core.errors import UserError
from modeling.config import Run


def build_model(run: Run):
    """The run's ``MaskRCNNModel`` (tf_keras.Model), built for input
    [batch, image_size, image_size, 3] float32 normalized as Model Garden's parser does, by
    the task itself (``MaskRCNNTask.build_model``), so it matches the training checkpoint."""
    from official.core import task_factory
    from official.vision import registry_imports  # noqa: F401
    task = task_factory.get_task(run.experiment.task, logging_dir=str(run.run_dir))
    return task.build_model()


def find_checkpoint(checkpoint_or_run_dir: str | os.PathLike) -> str:
    """A checkpoint prefix from a prefix (``run/ckpt-1000``), its ``.index`` file, or a run
    dir (its latest checkpoint), by :func:`modeling.checkpoints.checkpoint_prefix`.
    UserError when there is none."""
    from modeling.checkpoints import checkpoint_prefix
    p = Path(checkpoint_or_run_dir)
    prefix = checkpoint_prefix(p)
    if prefix is not None:
        return str(prefix)
    if p.is_dir():
        raise UserError(f"run dir {str(p)!r} has no checkpoint yet; train first with "
                        f"`python train.py --config CONFIG`")
    raise UserError(f"checkpoint {str(p)!r} not found; give a run dir or a checkpoint prefix "
                    f"such as RUN_DIR/ckpt-1000")


def restore(model, checkpoint_or_run_dir: str | os.PathLike) -> str:
    """Load trained weights into ``model`` (built by :func:`build_model` for the same
    config) from a checkpoint prefix or a run dir's latest checkpoint; returns the prefix.

    Every model variable must be in the checkpoint: a checkpoint of another architecture,
    class count or image-independent shape is a UserError, not a half-loaded model.
    """
    import tensorflow as tf
    prefix = find_checkpoint(checkpoint_or_run_dir)
    try:
        status = tf.train.Checkpoint(model=model).read(prefix)
        status.expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:
        raise UserError(f"checkpoint {prefix!r} does not match this model (another preset, "
                        f"image size or label map?): {str(e).splitlines()[0][:300]}") from None
    return prefix
