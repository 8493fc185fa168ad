"""Benchmark: our training loop vs a bare loop over Model Garden's task ``train_step``, and
the input pipeline's images/s vs what the model consumes. Run on demand:

    python bench/train.py                       # synthetic parts at 256 px, slim_r18_fpn
    python bench/train.py --config configs/parts_demo.yaml --steps 30

Both loops run in one process on the same model, optimizer and input iterator; each is
traced first (warm-up steps, not timed). "ours" is ``modeling.training.Trainer.fit``
(tqdm, per-step loss check, TensorBoard, checkpoints); "bare" is
``strategy.run(task.train_step)`` in a tf.function and nothing else.
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
sys.path.insert(0, str(ROOT))
import core  # noqa: E402,F401  (TF environment)


def synthetic_config(folder: Path, images: int, steps: int) -> Path:
    from dataset_tools.convert import convert
    from dataset_tools.synthetic import generate
    generate(folder / "synth", images, seed=0, image_size=(256, 256))
    convert("coco", folder / "synth" / "annotations.json", folder / "data",
            val_fraction=0.1, seed=0, progress=False, verbose=False)
    cfg = folder / "bench.yaml"
    cfg.write_text(f"data: data\nrun_dir: run\nmodel:\n  preset: slim_r18_fpn\n"
                   f"  image_size: 256\ntrain:\n  batch_size: 2\n  steps: {steps}\n")
    return cfg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", help="a user YAML (default: synthetic parts, slim_r18_fpn)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per loop")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per loop (tracing)")
    ap.add_argument("--input-batches", type=int, default=60)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "train.json"))
    args = ap.parse_args()

    from modeling.config import load_run
    from modeling.training import Trainer

    tmp = Path(tempfile.mkdtemp(prefix="bench_train_"))
    cfg = Path(args.config) if args.config else synthetic_config(tmp, 60, 1)
    n_ours = args.warmup + args.steps
    run = load_run(cfg, {"run_dir": str(tmp / "run"), "train.steps": n_ours,
                         "train.checkpoint_every": max(n_ours // 2, 1)})
    trainer = Trainer(run)
    batch = run.user.train.batch_size

    def bare_block() -> float:
        t0 = time.perf_counter()
        for _ in range(args.steps):
            trainer.bare_step_fn(trainer.iterator)
        # bare_step_fn returns nothing; wait for the last step before stopping the clock.
        float(trainer.model.trainable_variables[0].numpy().ravel()[0])
        return (time.perf_counter() - t0) / args.steps

    # 1. bare loop over the task's train_step, before and after ours (the machine's load
    # drifts: bracketing ours keeps the comparison fair)
    for _ in range(args.warmup):
        trainer.bare_step_fn(trainer.iterator)
    bare_before = bare_block()

    # 2. our loop (Trainer.fit: tqdm, loss check, summaries, checkpoints)
    trainer.fit(evaluate_at_end=False, progress=True)
    bare_after = bare_block()
    bare = (bare_before + bare_after) / 2
    times = trainer.step_times[args.warmup - 1:]
    ours = (times[-1] - times[0]) / (len(times) - 1)
    ours_median = statistics.median(b - a for a, b in zip(times, times[1:]))

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
         f"(before {bare_before:.3f}, after {bare_after:.3f})", ""),
        ("ours (Trainer.fit)", f"{1 / ours:.3f} steps/s", f"{ours:.3f} s/step "
         f"(median {ours_median:.3f})", f"{bare / ours:.3f}x bare (goal >= 0.95)"),
        ("input pipeline alone", f"{input_ips:.1f} images/s", "", ""),
        ("training consumes", f"{consume_ips:.1f} images/s", "",
         f"input = {input_ips / consume_ips:.1f}x consumption (goal >= 5)"),
    ]
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    print(f"\n{run.user.model.preset} {run.image_size}px batch {batch}, {args.steps} timed "
          f"steps ({args.warmup} warm-up), {platform.node()}")
    for r in rows:
        print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)))
    result = {"preset": run.user.model.preset, "image_size": run.image_size, "batch": batch,
              "steps": args.steps, "bare_s_per_step": bare,
              "bare_before_s_per_step": bare_before, "bare_after_s_per_step": bare_after,
              "ours_s_per_step": ours,
              "ours_median_s_per_step": ours_median, "ratio_ours_vs_bare": bare / ours,
              "input_images_per_s": input_ips, "consumed_images_per_s": consume_ips,
              "input_ratio": input_ips / consume_ips, "machine": platform.node(),
              "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from core.atomic import atomic_write
    with atomic_write(out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
