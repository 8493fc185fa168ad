"""Benchmark: per-image latency of the exports vs the model called directly, one run.

  .venv/bin/python bench/infer.py [--config configs/parts_demo.yaml] [--checkpoint P]
                                  [--preset slim_r18_fpn] [--repeats 15]

Without --config: a small synthetic parts set is generated and converted in a temporary
folder (only so the run config can be built) and the ``--preset`` model is used with
random weights (latency does not depend on the weights; random weights give the maximum
number of detections, the worst case for mask pasting; the table says how many).

For each image size (256x256 and 480x640 H x W, uint8 RGB, batch 1), median of
``--repeats`` calls after 2 warm-up calls, interleaved (each round calls every variant once),
all in one process on the same weights:
  - direct:             the baseline: ``model(images, image_shape=, anchor_boxes=,
                        training=False)`` in a tf.function, on inputs preprocessed once
                        beforehand (Model Garden's serving preprocessing, not timed):
                        the network alone, its raw outputs (28x28 box-relative masks)
  - export@0:           ``inference.Predictor(DIR)``, score threshold 0: the SavedModel
                        (its ``image_tensor_box_masks`` signature: preprocessing + model
                        + in-graph post-processing) plus the Predictor's Detections with
                        the full-size masks of every detection (pasted in numpy)
  - frozen+paste@0:     ``inference.Predictor(DIR/frozen_graph.pb)``, threshold 0: the
                        frozen graph in a tf.compat.v1.Session, then every box-relative mask
                        pasted in numpy: the same Detections as export@0 (like with like)
  - export@0.5, frozen+paste@0.5: the same at the Predictor's default threshold 0.5 (both
                        then paste only the kept rows)
  - signature@0:        the SavedModel's ``serving_default`` called as TF Serving or plain
                        TF code calls it (``tf.saved_model.load``): every detection's mask
                        pasted in-graph and returned at full size, uint8 [1, N, H, W]
Both exports are loaded by ``inference.Predictor``, as users load them. Goals (docs/benchmarks.md):
each export <= 1.1x direct, and frozen+paste <= export.
Prints a table and saves bench/results/infer.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from maskrcnn_toolkit import core  # noqa: E402,F401

SIZES = [(256, 256), (480, 640)]


def make_run(args, tmp: Path):
    from maskrcnn_toolkit.modeling.config import load_run
    if args.config:
        return load_run(args.config)
    from maskrcnn_toolkit.dataset_tools.convert import convert
    from maskrcnn_toolkit.dataset_tools.synthetic import generate
    src = generate(tmp / "synth", num_images=6, seed=0, image_size=(256, 256))
    convert("coco", src / "annotations.json", tmp / "data", val_fraction=0.34,
            progress=False, verbose=False)
    cfg = tmp / "bench.yaml"
    cfg.write_text(f"data: {tmp / 'data'}\nrun_dir: {tmp / 'run'}\n"
                   f"model:\n  preset: {args.preset}\n")
    return load_run(cfg)


def interleaved_median_ms(variants: dict, repeats: int) -> dict:
    """Median ms per variant; each round calls every variant once, so a load spike on this
    shared machine hits all variants alike instead of whichever ran during it."""
    for _ in range(2):  # warm-up (first calls build caches)
        for fn in variants.values():
            fn()
    times = {k: [] for k in variants}
    for _ in range(repeats):
        for k, fn in variants.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: 1000 * statistics.median(v) for k, v in times.items()}


def direct_model_fn(model, params, image: np.ndarray):
    """(a tf.function running the model alone, its number of outputs): Model Garden's
    serving preprocessing is applied once here, outside the timing."""
    import tensorflow as tf
    from official.vision.serving import detection
    pre = detection.DetectionModule(params, batch_size=None,
                                    input_image_size=list(params.task.model.input_size[:2]),
                                    model=model)
    images, anchor_boxes, image_info = pre.preprocess(tf.constant(image[None]))
    image_shape = image_info[:, 1, :]

    @tf.function
    def run():
        return model(images, image_shape=image_shape, anchor_boxes=anchor_boxes,
                     training=False)
    return lambda: run()["num_detections"].numpy()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=None)
    ap.add_argument("--checkpoint", default=None,
                    help="default with --config: the run's latest checkpoint")
    ap.add_argument("--preset", default="slim_r18_fpn")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--score-threshold", type=float, default=None,
                    help="export threshold (default: the config's, 0.05)")
    args = ap.parse_args()

    from maskrcnn_toolkit.inference.predictor import Predictor
    from maskrcnn_toolkit.modeling.exporting import export_model
    from maskrcnn_toolkit.modeling.model import build_model, find_checkpoint, restore

    tmp = Path(tempfile.mkdtemp(prefix="bench_infer_"))
    run = make_run(args, tmp)
    model = build_model(run)
    weights = "random"
    if args.config:
        weights = restore(model, find_checkpoint(run, args.checkpoint))
    out = tmp / "export"
    t = time.perf_counter()
    meta = export_model(model, run.experiment, run.label_map, out,
                        score_threshold=args.score_threshold, quiet=True)
    export_s = time.perf_counter() - t
    # Loaded as users load them (inference/ is the only place that loads models).
    p_export = Predictor(out, score_threshold=0.0)
    p_frozen = Predictor(out / "frozen_graph.pb", score_threshold=0.0)
    p_export_05 = Predictor(out, score_threshold=0.5)
    p_frozen_05 = Predictor(out / "frozen_graph.pb", score_threshold=0.5)
    import tensorflow as tf
    serving = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]

    rng = np.random.default_rng(0)
    rows = []
    for h, w in SIZES:
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        variants = {
            "direct": direct_model_fn(model, run.experiment, img),
            "export@0": lambda: p_export(img),
            "frozen+paste@0": lambda: p_frozen(img),
            "export@0.5": lambda: p_export_05(img),
            "frozen+paste@0.5": lambda: p_frozen_05(img),
            "signature@0": lambda: serving(images=tf.constant(img[None]))[
                "detection_masks"].numpy(),
        }
        ms = interleaved_median_ms(variants, args.repeats)
        det, fdet = p_export(img), p_frozen(img)
        assert len(det) == len(fdet), "the two exports disagree on the detection count"
        rows.append({"size": f"{h}x{w}", "detections": len(det),
                     "kept@0.5": len(p_export_05(img)), "ms": ms,
                     "export@0/direct": ms["export@0"] / ms["direct"],
                     "export@0.5/direct": ms["export@0.5"] / ms["direct"],
                     "signature@0/direct": ms["signature@0"] / ms["direct"],
                     "frozen+paste@0/direct": ms["frozen+paste@0"] / ms["direct"],
                     "frozen+paste@0/export@0": ms["frozen+paste@0"] / ms["export@0"],
                     "frozen+paste@0.5/export@0.5":
                         ms["frozen+paste@0.5"] / ms["export@0.5"]})

    names = list(rows[0]["ms"])
    ratios = ["export@0/direct", "export@0.5/direct", "frozen+paste@0/direct",
              "frozen+paste@0/export@0", "frozen+paste@0.5/export@0.5", "signature@0/direct"]
    print(f"model {run.user.model.preset} at {meta['input_size']} px, weights: {weights}, "
          f"export took {export_s:.0f} s; median ms per image of {args.repeats} runs, batch 1; "
          f"goals: export/direct <= 1.1, frozen/direct <= 1.1, frozen/export <= 1")
    print(f"{'size HxW':>9} {'dets':>4} {'@0.5':>4} " + " ".join(f"{n:>16}" for n in names)
          + "  " + "  ".join(ratios))
    for r in rows:
        print(f"{r['size']:>9} {r['detections']:>4} {r['kept@0.5']:>4} "
              + " ".join(f"{r['ms'][n]:>16.1f}" for n in names) + "  "
              + "  ".join(f"{r[k]:>{len(k)}.2f}" for k in ratios))
    res_dir = ROOT / "bench" / "results"
    res_dir.mkdir(parents=True, exist_ok=True)
    from maskrcnn_toolkit.core.atomic import atomic_write
    with atomic_write(res_dir / "infer.json", "w") as f:
        json.dump({"preset": run.user.model.preset, "input_size": meta["input_size"],
                   "weights": str(weights), "repeats": args.repeats, "rows": rows,
                   "baseline": "direct: the model alone in a tf.function, inputs "
                               "preprocessed beforehand",
                   "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                   "versions": meta["versions"]}, f, indent=2)
    print(f"saved {res_dir / 'infer.json'}")
    for p in (p_export, p_frozen, p_export_05, p_frozen_05):
        p.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
