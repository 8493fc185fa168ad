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
  - direct:        ServingModule.serve_images as a tf.function on the in-memory model
                   (Model Garden preprocessing + model + our post-processing: full-size masks)
  - saved_model:   the export's ``image_tensor`` signature (same outputs as direct)
  - direct_odapi:  ServingModule.serve_odapi as a tf.function (box-relative masks)
  - frozen_graph:  the export's frozen_graph.pb through tf.compat.v1.Session (same outputs
                   as direct_odapi)
  - predictor(export), predictor(frozen): inference.Predictor end to end, Detections out
                   (the frozen one pastes masks in numpy)
Goals (issue 6): saved_model <= 1.1x direct, frozen_graph <= 1.1x direct_odapi, and
frozen_graph <= saved_model. Prints a table and saves bench/results/infer.json.
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
sys.path.insert(0, str(ROOT))

import core  # noqa: E402,F401

SIZES = [(256, 256), (480, 640)]


def make_run(args, tmp: Path):
    from modeling.config import load_run
    if args.config:
        return load_run(args.config)
    from dataset_tools.convert import convert
    from dataset_tools.synthetic import generate
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

    import tensorflow as tf

    from inference.predictor import Predictor
    from modeling.exporting import ServingModule, export_model
    from modeling.model import build_model, restore

    tmp = Path(tempfile.mkdtemp(prefix="bench_infer_"))
    run = make_run(args, tmp)
    model = build_model(run)
    weights = "random"
    if args.config:
        weights = restore(model, args.checkpoint or run.run_dir)
    out = tmp / "export"
    t = time.perf_counter()
    meta = export_model(model, run.experiment, run.label_map, out,
                        score_threshold=args.score_threshold, quiet=True)
    export_s = time.perf_counter() - t
    direct = ServingModule(model, run.experiment, meta["input_size"])
    loaded = tf.saved_model.load(str(out / "saved_model"))
    sig = loaded.signatures["image_tensor"]
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString((out / "frozen_graph.pb").read_bytes())
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    sess = tf.compat.v1.Session(graph=graph)
    fetch = {k: f"{k}:0" for k in ("detection_boxes", "detection_scores", "detection_classes",
                                   "num_detections", "detection_masks")}
    p_export = Predictor(out, score_threshold=0.0)
    p_frozen = Predictor(out / "frozen_graph.pb", score_threshold=0.0)

    rng = np.random.default_rng(0)
    rows = []
    for h, w in SIZES:
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        batch = tf.constant(img[None])
        variants = {
            "direct": lambda: direct.serve_images(batch)["num_detections"].numpy(),
            "saved_model": lambda: sig(images=batch)["num_detections"].numpy(),
            "direct_odapi": lambda: direct.serve_odapi(batch)["num_detections"].numpy(),
            "frozen_graph": lambda: sess.run(fetch, {"image_tensor:0": img[None]}),
            "predictor(export)": lambda: p_export(img),
            "predictor(frozen)": lambda: p_frozen(img),
        }
        ms = interleaved_median_ms(variants, args.repeats)
        n = int(sig(images=batch)["num_detections"].numpy()[0])
        rows.append({"size": f"{h}x{w}", "detections": n, "ms": ms,
                     "saved_model/direct": ms["saved_model"] / ms["direct"],
                     "frozen/direct_odapi": ms["frozen_graph"] / ms["direct_odapi"],
                     "frozen/saved_model": ms["frozen_graph"] / ms["saved_model"]})

    names = list(rows[0]["ms"])
    print(f"model {run.user.model.preset} at {meta['input_size']} px, weights: {weights}, "
          f"export took {export_s:.0f} s; median ms per image of {args.repeats} runs, batch 1")
    print(f"{'size HxW':>9} {'dets':>4} " + " ".join(f"{n:>17}" for n in names)
          + "  saved/direct  frozen/direct_odapi  frozen/saved")
    for r in rows:
        print(f"{r['size']:>9} {r['detections']:>4} "
              + " ".join(f"{r['ms'][n]:>17.1f}" for n in names)
              + f"  {r['saved_model/direct']:>12.2f}  {r['frozen/direct_odapi']:>19.2f}"
              + f"  {r['frozen/saved_model']:>12.2f}")
    res_dir = ROOT / "bench" / "results"
    res_dir.mkdir(parents=True, exist_ok=True)
    from core.atomic import atomic_write
    with atomic_write(res_dir / "infer.json", "w") as f:
        json.dump({"preset": run.user.model.preset, "input_size": meta["input_size"],
                   "weights": str(weights), "repeats": args.repeats, "rows": rows,
                   "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                   "versions": meta["versions"]}, f, indent=2)
    print(f"saved {res_dir / 'infer.json'}")
    sess.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
