"""Benchmark: our training loop vs a bare loop over Model Garden's task ``train_step``, and
the input pipeline's images/s vs what the model consumes. Run on demand:

    python bench/train.py                       # synthetic parts, 256 px, half_r18_fpn (demo's)
    python bench/train.py --config configs/parts_demo.yaml --steps 30

Both loops run in one process on the same model, optimizer and input iterator. Each is
traced and warmed up first (untimed steps), then timed in interleaved blocks (bare, ours,
bare, ours, ...) so that the machine's drifting load hits both alike; the ratio compares
the means over the blocks. "ours" is ``modeling.training.Trainer.fit`` as training runs it
(tqdm, per-step loss check, TensorBoard summaries), timed from the end of one step to the
end of the next by :class:`TimedTrainer`, a subclass that only adds the clock and the
blocks; "bare" is ``strategy.run(task.train_step)`` in a tf.function and nothing else.
Each block of ours ends with ``fit``'s final checkpoint save, after its last timed step
(in training, one save every ``checkpoint_every`` steps, 500 by default, is negligible
per step).
Goals: ours >= 0.95x bare steps/s; input >= 5x the images/s training consumes.
Prints a table and writes bench/results/train.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from maskrcnn_toolkit import core  # noqa: E402,F401  (TF environment)
from maskrcnn_toolkit.modeling.training import Trainer  # noqa: E402


class TimedTrainer(Trainer):
    """The production :class:`Trainer`, with what only this benchmark needs:

    - ``step_times``: ``time.perf_counter()`` at the end of each of ``fit``'s steps;
    - ``fit_to(step)``: ``fit`` up to ``step``, continuing in memory where the previous call
      stopped (no checkpoint restore between blocks);
    - ``bare_step_fn(iterator)``: one step of the bare loop, ``strategy.run`` of the task's
      ``train_step`` on the same model, optimizer and iterator, nothing else (no metrics,
      no global step).
    """

    def __init__(self, run):
        import tensorflow as tf
        super().__init__(run)
        self.step_times: list[float] = []
        self._initialized = False
        step_fn = self.step_fn

        def timed_step_fn(iterator):
            out = step_fn(iterator)
            self.step_times.append(time.perf_counter())
            return out

        self.step_fn = timed_step_fn
        task, model, optimizer, strategy = self.task, self.model, self.optimizer, self.strategy

        @tf.function
        def bare_step_fn(iterator):
            strategy.run(task.train_step, args=(next(iterator),),
                         kwargs={"model": model, "optimizer": optimizer})

        self.bare_step_fn = bare_step_fn

    def restore_or_initialize(self) -> int:
        if self._initialized:  # a later block: the model in memory is where it stopped
            return int(self.global_step.numpy())
        self._initialized = True
        return super().restore_or_initialize()

    def fit_to(self, step: int, progress: bool = True) -> None:
        self.run.user.train.steps = step
        self.fit(evaluate_at_end=False, progress=progress)


def synthetic_config(folder: Path, images: int, steps: int) -> Path:
    from maskrcnn_toolkit.dataset_tools.convert import convert
    from maskrcnn_toolkit.dataset_tools.synthetic import generate
    generate(folder / "synth", images, seed=0, image_size=(256, 256))
    convert("coco", folder / "synth" / "annotations.json", folder / "data",
            val_fraction=0.1, seed=0, progress=False, verbose=False)
    cfg = folder / "bench.yaml"
    cfg.write_text(f"data: data\nrun_dir: run\nmodel:\n  preset: half_r18_fpn\n"
                   f"  image_size: 256\ntrain:\n  batch_size: 2\n  steps: {steps}\n")
    return cfg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", help="a user YAML (default: synthetic parts, half_r18_fpn)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per loop")
    ap.add_argument("--blocks", type=int, default=4,
                    help="interleaved timed blocks per loop (--steps split over them)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per loop (tracing)")
    ap.add_argument("--input-batches", type=int, default=60)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "train.json"))
    args = ap.parse_args()

    from maskrcnn_toolkit.modeling.config import load_run

    tmp = Path(tempfile.mkdtemp(prefix="bench_train_"))
    cfg = Path(args.config) if args.config else synthetic_config(tmp, 60, 1)
    per_block = max(args.steps // args.blocks, 2)
    n_ours = args.warmup + per_block * args.blocks
    # The config's own schedule is cut to the bench's steps: a warmup longer than the run
    # would be refused (the learning rate does not change the time of a step).
    run = load_run(cfg, {"run_dir": str(tmp / "run"), "train.steps": n_ours,
                         "train.checkpoint_every": n_ours,
                         "train.warmup_steps": max(n_ours // 10, 1)})
    trainer = TimedTrainer(run)
    batch = run.user.train.batch_size

    def bare_block() -> float:
        t0 = time.perf_counter()
        for _ in range(per_block):
            trainer.bare_step_fn(trainer.iterator)
        # bare_step_fn returns nothing; wait for the last step before stopping the clock.
        float(trainer.model.trainable_variables[0].numpy().ravel()[0])
        return (time.perf_counter() - t0) / per_block

    def ours_block(until: int) -> float:
        first = len(trainer.step_times)
        trainer.fit_to(until)  # tqdm included
        times = trainer.step_times[first:]
        return (times[-1] - times[0]) / (len(times) - 1)

    # 1. warm-up of both loops (tracing, tf.data buffers, allocator): not timed
    for _ in range(args.warmup):
        trainer.bare_step_fn(trainer.iterator)
    trainer.fit_to(args.warmup, progress=False)

    # 2. interleaved blocks: bare, ours, bare, ours, ...
    bare_blocks, ours_blocks, ours_steps = [], [], []
    for b in range(args.blocks):
        bare_blocks.append(bare_block())
        first = len(trainer.step_times)
        ours_blocks.append(ours_block(args.warmup + per_block * (b + 1)))
        t = trainer.step_times[first:]  # per-step intervals, for the median
        ours_steps.extend(y - x for x, y in zip(t, t[1:]))
    bare = statistics.mean(bare_blocks)
    ours = statistics.mean(ours_blocks)
    ours_median = statistics.median(ours_steps)

    # 3. input pipeline alone (decode, augment, anchors/targets), same config
    ds = trainer.task.build_inputs(run.experiment.task.train_data)
    it = iter(ds)
    for _ in range(5):
        next(it)
    t0 = time.perf_counter()
    for _ in range(args.input_batches):
        next(it)
    input_ips = args.input_batches * batch / (time.perf_counter() - t0)
    consume_ips = batch / ours

    rows = [
        ("bare loop over task.train_step", f"{1 / bare:.3f} steps/s", f"{bare:.3f} s/step "
         f"(blocks {', '.join(f'{x:.3f}' for x in bare_blocks)})", ""),
        ("ours (Trainer.fit)", f"{1 / ours:.3f} steps/s", f"{ours:.3f} s/step "
         f"(blocks {', '.join(f'{x:.3f}' for x in ours_blocks)}; median step "
         f"{ours_median:.3f})", f"{bare / ours:.3f}x bare (goal >= 0.95)"),
        ("input pipeline alone", f"{input_ips:.1f} images/s", "", ""),
        ("training consumes", f"{consume_ips:.1f} images/s", "",
         f"input = {input_ips / consume_ips:.1f}x consumption (goal >= 5)"),
    ]
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    print(f"\n{run.user.model.preset} {run.image_size}px batch {batch}, {args.blocks} "
          f"interleaved blocks of {per_block} timed steps per loop ({args.warmup} warm-up), "
          f"{platform.node()}")
    for r in rows:
        print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)))
    result = {"preset": run.user.model.preset, "image_size": run.image_size, "batch": batch,
              "blocks": args.blocks, "steps_per_block": per_block, "warmup": args.warmup,
              "bare_s_per_step": bare, "bare_blocks_s_per_step": bare_blocks,
              "ours_s_per_step": ours, "ours_blocks_s_per_step": ours_blocks,
              "ours_median_s_per_step": ours_median, "ratio_ours_vs_bare": bare / ours,
              "input_images_per_s": input_ips, "consumed_images_per_s": consume_ips,
              "input_ratio": input_ips / consume_ips, "machine": platform.node(),
              "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from maskrcnn_toolkit.core.atomic import atomic_write
    with atomic_write(out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
