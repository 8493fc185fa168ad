"""Training with tiny real runs (preset tiny_r18_fpn, 128 px): checkpoints, TensorBoard,
evaluation, resume, restore, multi-device, non-finite loss."""
from __future__ import annotations

import dataclasses
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from maskrcnn_toolkit.core.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _events(folder: Path) -> dict:
    """{tag: [(step, value or image count)]} from the TensorBoard event files in folder."""
    import tensorflow as tf
    out: dict = {}
    for f in sorted(folder.glob("events.out.tfevents.*")):
        for ev in tf.compat.v1.train.summary_iterator(str(f)):
            for v in ev.summary.value:
                t = tf.make_ndarray(v.tensor)
                out.setdefault(v.tag, []).append((ev.step, t))
    return out


def test_tiny_run_writes_checkpoint_summaries_and_pipeline(tiny_training):
    tiny_run, summary = tiny_training
    d = tiny_run.run_dir
    assert (d / "ckpt-2.index").is_file() and (d / "checkpoint").is_file()
    for name in ("pipeline.yaml", "pipeline.config", "config.yaml", "label_map.pbtxt"):
        assert (d / name).is_file()
    train = _events(d / "train")
    assert [s for s, _ in train["loss/total_loss"]] == [1, 2]  # log_every: 1
    assert all(math.isfinite(float(v)) for _, v in train["loss/mask_loss"])
    assert float(train["learning_rate"][0][1]) > 0
    ev = _events(d / "eval")
    # TensorBoard holds, at step 2, the numbers the evaluator returned to train() (and its
    # summary line printed), for every scalar metric.
    assert summary.end_step == 2 and len(summary.metrics) >= 20
    for k, v in summary.metrics.items():
        (step, value), = ev[f"coco/{k}"]
        assert step == 2 and float(value) == np.float32(v), k
    assert {"AP", "mask_AP", "mask_AP50"} <= set(summary.metrics)
    (step, img), = ev["val_predictions"]  # encoded PNGs: [width, height, png...]
    assert step == 2 and img.shape[0] == 3 and int(img[0]) == 128


def test_finished_run_says_so_without_building(tiny_run, capsys):
    from maskrcnn_toolkit import train as train_cli
    from maskrcnn_toolkit.modeling.training import train
    s = train(tiny_run)
    assert s.already_finished and s.end_step == 2
    assert train_cli.main(["--config", str(tiny_run.config_path)]) == 0
    assert "run already finished at step 2" in capsys.readouterr().out


def test_restore_into_a_fresh_model(tiny_run, tmp_path):
    import tensorflow as tf

    from maskrcnn_toolkit.modeling.model import build_model, find_checkpoint, restore
    model = build_model(tiny_run)
    prefix = restore(model, find_checkpoint(tiny_run))
    assert prefix.endswith("ckpt-2")
    reader = tf.train.load_checkpoint(prefix)
    shapes = reader.get_variable_to_shape_map()
    # Each of the heads' last variables equals a checkpoint tensor of its shape (a freshly
    # initialized kernel would not).
    for v in model.trainable_variables[-4:]:
        same = [k for k, s in shapes.items() if s == v.shape.as_list()
                and k.endswith("VARIABLE_VALUE") and "OPTIMIZER_SLOT" not in k]
        assert any(np.array_equal(v.numpy(), reader.get_tensor(k)) for k in same), v.name
    with pytest.raises(UserError, match="yet: train first"):
        find_checkpoint(dataclasses.replace(tiny_run, run_dir=tmp_path))


def test_build_model_equals_model_gardens_build(tiny_run, tmp_path):
    """Our eager-built model (modeling.model.build_model, 5x faster) has Model Garden's
    MaskRCNNTask.build_model variables (order, shapes, trainability), regularizers and
    checkpoint layout: weights saved from one restore into the other and predict alike."""
    import re

    import tensorflow as tf
    from official.core import task_factory

    from maskrcnn_toolkit.modeling.model import build_model
    ours = build_model(tiny_run)
    theirs = task_factory.get_task(tiny_run.experiment.task).build_model()

    def layout(m):  # Keras numbers layers per process (conv2d_7): names without suffixes
        return [(re.sub(r"_\d+(?=/)", "", v.name), tuple(v.shape), v.trainable)
                for v in m.variables]
    assert layout(ours) == layout(theirs)
    assert len(ours.losses) == len(theirs.losses) > 0  # the l2 regularizers
    assert float(tf.add_n(ours.losses)) > 0
    tf.train.Checkpoint(model=theirs).write(str(tmp_path / "theirs"))
    tf.train.Checkpoint(model=ours).read(str(tmp_path / "theirs")
                                         ).assert_existing_objects_matched()
    h, w = tiny_run.experiment.task.model.input_size[:2]
    image = tf.random.stateless_uniform([1, h, w, 3], seed=[1, 2])
    a = ours.backbone(image)
    b = theirs.backbone(image)
    for k in a:
        np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), rtol=1e-5, atol=1e-5)


def test_changed_model_in_same_run_dir_is_refused(tiny_run):
    from maskrcnn_toolkit.modeling.config import load_run
    from maskrcnn_toolkit.modeling.training import train
    run = load_run(tiny_run.config_path, {"model.image_size": 192, "train.steps": 5})
    with pytest.raises(UserError, match="model.image_size changed"):
        train(run)


def test_non_finite_loss_message():
    from maskrcnn_toolkit.modeling.training import NonFiniteLoss, check_finite
    check_finite(3, {"total_loss": 1.0, "mask_loss": 0.5})
    with pytest.raises(NonFiniteLoss) as e:
        check_finite(7, {"total_loss": float("nan"), "mask_loss": float("inf"),
                         "rpn_box_loss": 0.25})
    msg = str(e.value)
    assert "step 7" in msg and "total_loss=nan" in msg and "mask_loss=inf" in msg
    assert "rpn_box_loss=0.25" in msg and "learning_rate" in msg


def test_non_finite_loss_stops_the_real_loop(tiny_run, tmp_path):
    """The real training loop on tiny_run's config, fresh run dir, with a NaN put into the
    mask head's last bias: the first step's mask loss is NaN and training stops there with
    the step and every loss, before any checkpoint."""

    from maskrcnn_toolkit.modeling.config import load_run
    from maskrcnn_toolkit.modeling.training import NonFiniteLoss, Trainer, latest_checkpoint
    run = load_run(tiny_run.config_path, {"run_dir": str(tmp_path / "run"),
                                          "train.steps": 3})
    trainer = Trainer(run)
    bias, = [v for v in trainer.model.variables if "mask-logits/bias" in v.name]
    bias.assign(np.full(bias.shape, np.nan, np.float32))
    with pytest.raises(NonFiniteLoss) as e:
        trainer.fit(evaluate_at_end=False, progress=False)
    msg = str(e.value)
    assert "non-finite loss at step 1:" in msg
    assert "mask_loss=nan" in msg and "total_loss=nan" in msg
    assert "rpn_score_loss=" in msg  # every component of the loss dict is named
    assert latest_checkpoint(tmp_path / "run") is None


TWO_CPUS = """
import sys, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
from maskrcnn_toolkit import train
sys.exit(train.main(sys.argv[1:]))
"""


def test_resume_on_two_logical_cpus_with_mirrored_strategy(tiny_run, tmp_path):
    """Resume tiny_run (2 steps, one device) for one more step with MirroredStrategy over
    two logical CPU devices, through the CLI."""
    from maskrcnn_toolkit.modeling.training import checkpoint_step, latest_checkpoint
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, run_dir)
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [sys.executable, "-c", TWO_CPUS, "--config", str(tiny_run.config_path),
         "--set", f"run_dir={run_dir}", "--set", "train.steps=3",
         "--set", "runtime.strategy=mirrored", "--no-eval"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert f"resuming {run_dir / 'ckpt-2'} at step 2: 1 steps to go (2→3)" in out
    assert "on 2 devices (MirroredStrategy" in out
    assert "trained steps 2→3 (1 steps)" in out
    assert checkpoint_step(latest_checkpoint(run_dir)) == 3


def test_interrupts_save_a_checkpoint_named_after_its_step_and_say_so(tiny_run, tmp_path):
    """Ctrl-C at several points of the real loop: inside the first step (nothing saved),
    after a step's work but before the loop counted it (where an interrupt usually lands:
    step_fn returns, then Python raises), and before a step started. Each time the
    checkpoint's name, the global step it stores and the one line the CLI prints agree, and
    the next fit resumes from it. The interrupt is injected around the real step_fn."""
    from maskrcnn_toolkit.modeling.config import load_run
    from maskrcnn_toolkit.modeling.training import Trainer, checkpoint_step, latest_checkpoint
    run_dir = tmp_path / "run"
    run = load_run(tiny_run.config_path, {"run_dir": str(run_dir), "train.steps": 8,
                                          "train.checkpoint_every": 100})
    trainer = Trainer(run)
    real_step, plan = trainer.step_fn, {}

    def step_fn(iterator):
        plan["calls"] += 1
        if plan["calls"] == plan["at"] and plan["where"] == "before":
            raise KeyboardInterrupt
        out = real_step(iterator)
        if plan["calls"] == plan["at"] and plan["where"] == "after":
            raise KeyboardInterrupt
        return out

    trainer.step_fn = step_fn
    expected_steps = []
    for at, where, want in ((1, "before", 0), (2, "after", 2), (3, "before", 4),
                            (1, "after", 5)):
        plan.update(calls=0, at=at, where=where)
        with pytest.raises(KeyboardInterrupt) as e:
            trainer.fit(evaluate_at_end=False, progress=False)
        prefix = latest_checkpoint(run_dir)
        if want == 0:
            assert prefix is None and "nothing new saved" in str(e.value)
            continue
        step = checkpoint_step(prefix)
        assert (Path(prefix).name, step) == (f"ckpt-{want}", want), (at, where)
        assert str(e.value) == (f"at step {want}; saved {prefix}. Re-run the same command "
                                f"to resume.")
        expected_steps.append(want)
    assert expected_steps == [2, 4, 5]
    plan.update(calls=0, at=-1, where="never")
    summary = trainer.fit(evaluate_at_end=False, progress=False)
    assert (summary.start_step, summary.end_step) == (5, 8)
    assert checkpoint_step(latest_checkpoint(run_dir)) == 8
