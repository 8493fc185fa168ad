"""Training: our loop over Model Garden's own ``MaskRCNNTask.train_step``.

What the loop adds around the task's step, and nothing else (bench/train.py measures the
cost against a bare loop over the same step): a tqdm bar, TensorBoard summaries,
checkpoints (every N steps, at the end, on Ctrl-C), resume, a stop on a non-finite loss,
COCO box/mask AP at evaluations (the task's own COCO evaluator on
``val_annotations.json``) and a one-line summary.

The checkpoint layout is Model Garden's trainer's (``global_step``, ``model``,
``optimizer`` and the model's ``checkpoint_items``, in ``run_dir/ckpt-N``), so Model
Garden's ``official/vision/train.py --config_file=run_dir/pipeline.yaml
--model_dir=run_dir`` resumes our runs and we resume its.
"""
from __future__ import annotations

import contextlib
import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.modeling.config import Run, init_checkpoint_value
from maskrcnn_toolkit.modeling.model import build_model

# Losses the task's train metrics track (MaskRCNNTask.build_metrics(training=True)).
TOTAL = "total_loss"


@dataclass
class TrainSummary:
    """What ``train`` did: steps run (start → end), wall seconds, the last logged losses,
    the last evaluation's metrics (COCO names: AP, AP50, mask_AP, ...)."""

    run_dir: Path
    start_step: int
    end_step: int
    seconds: float
    losses: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    already_finished: bool = False

    # The first step traces and builds the training graph (~1 min on a CPU): its time is
    # reported apart, so s/step is what each further step costs.
    first_step_seconds: float = 0.0

    def line(self) -> str:
        if self.already_finished:
            return (f"run already finished at step {self.end_step}: nothing to do (raise "
                    f"train.steps to train longer); run dir {self.run_dir}")
        n = self.end_step - self.start_step
        loss = self.losses.get(TOTAL, float("nan"))
        ap = ""
        if "mask_AP" in self.metrics:
            ap = f", box AP {self.metrics['AP']:.3f}, mask AP {self.metrics['mask_AP']:.3f}"
        rest = self.seconds - self.first_step_seconds
        pace = (f"{rest / (n - 1):.2f} s/step after the first step's "
                f"{self.first_step_seconds:.0f} s of graph building" if n > 1 else
                "graph building included")
        return (f"trained steps {self.start_step}→{self.end_step} ({n} steps) in "
                f"{self.seconds:.0f} s ({pace}), final loss {loss:.4f}{ap}; checkpoints, "
                f"TensorBoard logs and pipeline.yaml in {self.run_dir}")


class NonFiniteLoss(UserError):
    """Training produced a NaN/inf loss; the message has the step and the loss dict."""


def check_finite(step: int, losses: dict) -> None:
    """Raise :class:`NonFiniteLoss` when any loss is NaN or infinite."""
    if all(math.isfinite(v) for v in losses.values()):
        return
    shown = ", ".join(f"{k}={v:.4g}" for k, v in losses.items())
    raise NonFiniteLoss(
        f"non-finite loss at step {step}: {shown}. Training stopped; the last checkpoint "
        f"is from before this step. Lower train.learning_rate (or raise "
        f"train.warmup_steps) and check the data with `python -m dataset_tools inspect`.")


# ---------------------------------------------------------------------------------------
# Strategy and precision

def make_strategy(name: str):
    """``auto``: MirroredStrategy over all GPUs when there are several, else one device
    (the GPU, or the CPU). ``one_device``: the first GPU, or the CPU. ``mirrored``: all
    GPUs, or, without GPUs, all logical CPU devices (tests split the CPU in two with
    ``tf.config.set_logical_device_configuration``)."""
    import tensorflow as tf
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")


def set_precision(run: Run) -> str:
    """Set Keras' global dtype policy (before the model is built) from the experiment's
    ``runtime.mixed_precision_dtype``, which load_run already decided by the device (so
    pipeline.yaml says what runs); returns the policy's name."""
    import tensorflow as tf
    from official.modeling import performance
    mixed = run.experiment.runtime.mixed_precision_dtype == "float16"
    if run.user.runtime.mixed_precision and not mixed:
        print("note: runtime.mixed_precision is on but there is no GPU; training in float32 "
              "(float16 on a CPU is slower, not faster)")
    performance.set_mixed_precision_policy(tf.float16 if mixed else tf.float32)
    return "mixed_float16" if mixed else "float32"


# ---------------------------------------------------------------------------------------
# Checkpoints of the run dir (prefix resolution for users' paths is
# modeling.checkpoints.checkpoint_prefix, used by modeling/model.py)

def latest_checkpoint(run_dir: str | Path) -> str | None:
    import tensorflow as tf
    return tf.train.latest_checkpoint(str(run_dir))


def checkpoint_step(prefix: str) -> int:
    """The global step stored in a checkpoint written by our trainer (or Model Garden's)."""
    import tensorflow as tf
    return int(tf.train.load_variable(prefix, "global_step/.ATTRIBUTES/VARIABLE_VALUE"))


def _check_same_run(run: Run) -> None:
    """A run dir holding checkpoints of another model (preset, image size, classes) cannot
    be resumed: say so instead of failing deep in a checkpoint restore."""
    saved = run.run_dir / "config.yaml"
    if not saved.is_file() or latest_checkpoint(run.run_dir) is None:
        return
    old = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
    new = run.resolved_user_dict()
    old_model, new_model = old.get("model", {}), new["model"]
    diffs = [k for k in ("preset", "image_size") if old_model.get(k) != new_model.get(k)]
    old_lm = run.run_dir / "label_map.pbtxt"
    if old_lm.is_file() and old_lm.read_text(encoding="utf-8") != run.label_map.to_pbtxt():
        diffs.append("label map (classes)")
    if diffs:
        raise UserError(
            f"{run.config_path}: run_dir {str(run.run_dir)!r} holds checkpoints of a different "
            f"model ({', '.join('model.' + d if ' ' not in d else d for d in diffs)} changed); "
            f"give a new run_dir, or delete the old one to start over")


def _init_from_checkpoint(run: Run, model, name_or_path: str) -> None:
    """Initialize a fresh model from a checkpoint by name and shape (modeling/checkpoints.py:
    registry download + sha256, partial restore with a table), then record the now local
    checkpoint in the run's pipeline.yaml for Model Garden's own trainer."""
    from maskrcnn_toolkit.modeling.checkpoints import resolve_checkpoint, restore_partial
    restore_partial(model, resolve_checkpoint(name_or_path))
    run.refresh_init_checkpoint()


# ---------------------------------------------------------------------------------------
# The loop

class Trainer:
    """Builds the task, model, optimizer, datasets and checkpoint once; ``fit`` trains.

    ``step_fn(iterator)`` runs one training step (the task's ``train_step`` on every
    replica, then ``global_step += 1``) and returns the loss metrics' running totals and
    counts, float32 [2, len(metric_names)].
    """

    def __init__(self, run: Run, strategy=None):
        import tensorflow as tf
        from official.core import task_factory

        self.run = run
        self.precision = set_precision(run)
        self.strategy = strategy or make_strategy(run.user.runtime.strategy)
        n = self.strategy.num_replicas_in_sync
        if run.user.train.batch_size % n:
            raise UserError(f"{run.config_path}: train.batch_size {run.user.train.batch_size} "
                            f"does not divide over {n} devices; use a multiple of {n}")
        exp = run.experiment
        with self.strategy.scope():
            self.task = task_factory.get_task(exp.task, logging_dir=str(run.run_dir))
            self.model = build_model(run)
            self.optimizer = self.task.create_optimizer(exp.trainer.optimizer_config,
                                                        exp.runtime)
            self.metrics = self.task.build_metrics(training=True)
            self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False,
                                           name="global_step",
                                           aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            self.checkpoint = tf.train.Checkpoint(
                global_step=self.global_step, model=self.model, optimizer=self.optimizer,
                **self.model.checkpoint_items)
        # CheckpointManager writes each checkpoint under temporary names and updates the
        # `checkpoint` state file last: an interrupted save leaves the previous one usable.
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, str(run.run_dir), max_to_keep=exp.trainer.max_to_keep,
            checkpoint_name="ckpt")
        self._train_ds = self.strategy.distribute_datasets_from_function(
            lambda ctx: self.task.build_inputs(exp.task.train_data, ctx))
        self._iterator = None

        task, model, optimizer, metrics = self.task, self.model, self.optimizer, self.metrics
        global_step, strategy = self.global_step, self.strategy

        def replica_step(inputs):
            task.train_step(inputs, model=model, optimizer=optimizer, metrics=metrics)
            global_step.assign_add(1)

        self.metric_names = [m.name for m in metrics]

        @tf.function
        def step_fn(iterator):
            strategy.run(replica_step, args=(next(iterator),))
            # Running totals and counts of the task's loss metrics, [2, num_metrics], in one
            # tensor (one device-to-host copy): the host turns them into this step's losses.
            return tf.stack([tf.stack([tf.cast(m.total, tf.float32) for m in metrics]),
                             tf.stack([tf.cast(m.count, tf.float32) for m in metrics])])

        self.step_fn = step_fn

    @property
    def iterator(self):
        if self._iterator is None:
            self._iterator = iter(self._train_ds)
        return self._iterator

    def learning_rate(self) -> float:
        lr = self.optimizer.learning_rate
        return float(lr(self.optimizer.iterations) if callable(lr) else lr)

    def restore_or_initialize(self) -> int:
        """Resume from the run dir's latest checkpoint, or (fresh run) initialize from
        ``model.init_checkpoint``. Returns the step training starts at."""
        latest = self.manager.latest_checkpoint
        if latest:
            # expect_partial: Keras optimizer slot variables are created lazily.
            self.checkpoint.restore(latest).expect_partial()
            return int(self.global_step.numpy())
        value = init_checkpoint_value(self.run)  # absolute path or registry name
        if value:
            _init_from_checkpoint(self.run, self.model, value)
        return 0

    def save(self, step: int) -> str:
        return self.manager.save(checkpoint_number=step)

    def fit(self, evaluate_at_end: bool = True, progress: bool = True) -> TrainSummary:
        """Train from the run dir's latest checkpoint (or the initial one) to
        ``train.steps``."""
        import tensorflow as tf
        from tqdm import tqdm

        run, u = self.run, self.run.user
        steps, t = u.train.steps, u.train
        start = self.restore_or_initialize()
        run.save()  # pipeline.yaml, pipeline.config, config.yaml, label_map.pbtxt
        summary = TrainSummary(run.run_dir, start, start, 0.0)
        if start >= steps:
            summary.already_finished = True
            return summary
        writer = tf.summary.create_file_writer(str(run.run_dir / "train"))
        evaluator = None
        prev = np.zeros((2, len(self.metric_names)))
        for m in self.metrics:  # running totals start with prev
            m.reset_states()
        window: dict[str, list[float]] = {}
        step = start
        n = self.strategy.num_replicas_in_sync
        if start:
            print(f"resuming {self.manager.latest_checkpoint} at step {start}: "
                  f"{steps - start} steps to go ({start}→{steps})")
        print(f"training {run.user.model.preset} at {run.image_size} px, batch "
              f"{t.batch_size} on {n} device{'s' if n > 1 else ''} "
              f"({type(self.strategy).__name__}, {self.precision}): steps {start}→{steps}")
        print("building the training graph (the first step; about a minute on a CPU)...",
              flush=True)
        t0 = time.time()
        # The bar starts after the first step, so its ETA and rate are those of the steps
        # that follow, not of the graph building.
        bar = None
        try:
            while step < steps:
                out = self.step_fn(self.iterator).numpy().astype(np.float64)
                step += 1
                if bar is None:
                    summary.first_step_seconds = time.time() - t0
                    bar = tqdm(total=steps, initial=step - 1, unit="step",
                               disable=not progress, dynamic_ncols=True, desc="train")
                delta = out - prev
                prev = out
                losses = dict(zip(self.metric_names,
                                  (delta[0] / np.maximum(delta[1], 1.0)).tolist()))
                check_finite(step, losses)
                for k, v in losses.items():
                    window.setdefault(k, []).append(v)
                bar.update(1)
                bar.set_postfix(loss=f"{losses[TOTAL]:.3f}", refresh=False)
                if step % t.log_every == 0 or step == steps:
                    summary.losses = {k: float(np.mean(v)) for k, v in window.items()}
                    with writer.as_default(step=step):
                        for k, v in summary.losses.items():
                            tf.summary.scalar(f"loss/{k}", v)
                        tf.summary.scalar("learning_rate", self.learning_rate())
                    writer.flush()
                    window.clear()
                    for m in self.metrics:  # keep running totals small (float32)
                        m.reset_states()
                    prev = np.zeros_like(prev)
                if step % t.checkpoint_every == 0 or step == steps:
                    self.save(step)
                if (t.eval_every and step % t.eval_every == 0 and step != steps) or (
                        step == steps and evaluate_at_end):
                    if step == steps:
                        bar.close()
                    bar.clear()
                    evaluator = evaluator or Evaluator(self)
                    summary.metrics = evaluator.evaluate(step)
                    bar.refresh()
        except KeyboardInterrupt:
            if bar is not None:
                bar.close()
            # Ctrl-C / SIGTERM usually lands while step_fn runs and surfaces once it returns,
            # before ``step`` counts that step: the weights, the optimizer and global_step
            # were updated together inside step_fn, so global_step says which step they are
            # at (a checkpoint named one step behind its contents would resume one step
            # short of train.steps).
            step = int(self.global_step.numpy())
            if step > start:
                path = self.save(step)
                # The one line the CLI prints (core.cli.run): no second "interrupted".
                raise KeyboardInterrupt(f"at step {step}; saved {path}. Re-run the same "
                                        f"command to resume.") from None
            raise KeyboardInterrupt(f"at step {step}, before a step finished; nothing new "
                                    f"saved") from None
        finally:
            if bar is not None:
                bar.close()
            writer.close()
        summary.end_step = step
        summary.seconds = time.time() - t0
        return summary


def _local(x) -> np.ndarray:
    """Per-replica results (a tuple under MirroredStrategy) → one numpy array."""
    if isinstance(x, tuple):
        return np.concatenate([np.asarray(v) for v in x], axis=0)
    return np.asarray(x)


class Evaluator:
    """COCO box and mask AP with the task's own evaluator (``annotation_file`` =
    ``val_annotations.json``), plus a few val images with predicted masks, to TensorBoard."""

    def __init__(self, trainer: Trainer):
        import tensorflow as tf
        self.trainer = trainer
        run, task, model, strategy = trainer.run, trainer.task, trainer.model, trainer.strategy
        with strategy.scope(), contextlib.redirect_stdout(io.StringIO()):
            task.build_metrics(training=False)  # creates task.coco_metric (pycocotools talks)
        self._ds = strategy.distribute_datasets_from_function(
            lambda ctx: task.build_inputs(run.experiment.task.validation_data, ctx))
        self.writer = tf.summary.create_file_writer(str(run.run_dir / "eval"))

        def replica_step(inputs):
            logs = task.validation_step(inputs, model=model)
            logs.pop(task.loss, None)
            return logs, inputs[0]

        @tf.function
        def eval_step(inputs):
            out = strategy.run(replica_step, args=(inputs,))
            return tf.nest.map_structure(strategy.experimental_local_results, out)

        self.eval_step = eval_step

    def evaluate(self, step: int) -> dict:
        import tensorflow as tf
        task = self.trainer.task
        state, drawn = None, []
        want = self.trainer.run.user.eval.num_images_to_draw
        for inputs in self._ds:
            logs, images = self.eval_step(inputs)
            state = task.aggregate_logs(state, logs)
            if len(drawn) < want:
                drawn.extend(self._draw(_local(images), *logs[task.coco_metric.name]))
        # pycocotools prints its tables to stdout; the summary line and TensorBoard carry
        # the numbers.
        with contextlib.redirect_stdout(io.StringIO()):
            results = task.reduce_aggregated_logs(state, global_step=step)
        metrics = {k: float(v) for k, v in results.items() if np.ndim(v) == 0}
        with self.writer.as_default(step=step):
            for k, v in metrics.items():
                tf.summary.scalar(f"coco/{k}", v)
            if drawn:
                tf.summary.image("val_predictions", np.stack(drawn[:want]), max_outputs=want)
        self.writer.flush()
        print(f"step {step}: box AP {metrics.get('AP', float('nan')):.3f}, "
              f"mask AP {metrics.get('mask_AP', float('nan')):.3f}")
        return metrics

    def _draw(self, images: np.ndarray, groundtruths, predictions) -> list[np.ndarray]:
        """Predicted masks (score >= 0.5) drawn on the model's input images.

        images: float [B, S, S, 3], normalized by Model Garden's parser; detection boxes are
        (ymin, xmin, ymax, xmax) in input pixels; detection_masks [B, N, m, m] box-relative.
        """
        from official.vision.ops.preprocess_ops import MEAN_NORM, STDDEV_NORM

        from maskrcnn_toolkit.core.boxes import normalize_yxyx
        from maskrcnn_toolkit.core.draw import draw_instances
        from maskrcnn_toolkit.core.masks import paste_box_masks
        lm = self.trainer.run.label_map
        boxes_yxyx_px = _local(predictions["detection_boxes"])
        scores = _local(predictions["detection_scores"])
        classes = _local(predictions["detection_classes"])
        masks = _local(predictions["detection_masks"])
        info = _local(predictions["image_info"])
        out = []
        for b in range(len(images)):
            img = (images[b] * np.array(STDDEV_NORM) + np.array(MEAN_NORM)) * 255.0
            img = np.clip(img, 0, 255).astype(np.uint8)
            h, w = img.shape[:2]
            keep = scores[b] >= 0.5
            bx = boxes_yxyx_px[b][keep]
            pasted = paste_box_masks(masks[b][keep], normalize_yxyx(bx, h, w), h, w) >= 0.5
            ids = classes[b][keep].astype(int)
            labels = [f"{lm.name(c)} {s:.2f}" for c, s in zip(ids, scores[b][keep])]
            drawn = draw_instances(img, bx, ids, labels, pasted)
            sh, sw = (int(v) for v in info[b][1])  # the scaled image inside the padding
            canvas = np.zeros_like(drawn)
            canvas[:sh, :sw] = drawn[:sh, :sw]
            out.append(canvas)
        return out


def train(run: Run, evaluate_at_end: bool = True, progress: bool = True) -> TrainSummary:
    """Train ``run`` to ``train.steps`` (resuming from run_dir when it has a checkpoint).

    A finished run returns at once (``already_finished``) without building the model.
    Raises UserError (incl. :class:`NonFiniteLoss`) for problems a user can fix;
    KeyboardInterrupt after saving a checkpoint.
    """
    run.run_dir.mkdir(parents=True, exist_ok=True)
    _check_same_run(run)
    latest = latest_checkpoint(run.run_dir)
    if latest is not None:
        done = checkpoint_step(latest)
        if done >= run.user.train.steps:
            return TrainSummary(run.run_dir, done, done, 0.0, already_finished=True)
    return Trainer(run).fit(evaluate_at_end=evaluate_at_end, progress=progress)
