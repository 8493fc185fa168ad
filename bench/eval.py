"""Benchmark: `evaluate.py --gt/--detections` vs plain pycocotools, same files, one run.

  .venv/bin/python bench/eval.py [--images 3000] [--seed 0] [--repeat 3]
  .venv/bin/python bench/eval.py --config configs/parts_demo.yaml [--repeat 3]  # a run

Generates (deterministically, from --seed) a COCO ground truth of polygon instances and a
COCO results file (jittered copies of the ground truth with RLE masks, some with the wrong
class, some missed, plus false positives; scores rounded to 5 decimals as
Detections.to_coco writes them, so ties occur), then for segm and bbox times, interleaved
(one of each per round, --repeat rounds, medians reported):
  - ours, as a user runs it: `evaluate.py --gt --detections --iou-type T --out M
    --no-report` in a fresh Python (start-up, imports, read, check, score, print, write):
    the headline (plain pycocotools writes no report either);
  - the same without --no-report (the analysis and report.html too): what the report
    costs is the difference (goal: at most 50% of the --no-report time);
  - its start-up alone: the same command on a one-image set;
  - ours, the library call modeling.scoring.evaluate_files (for reference);
  - baseline: pycocotools COCO(gt), loadRes(dt), COCOeval evaluate/accumulate/summarize.
Asserts the 12 stats and the per-class AP/AP50/AP75 identical (==), prints a table and
saves bench/results/eval.json. Goal (docs/DESIGN_NOTES.md, Evaluation): the CLI >= 2.5x
plain pycocotools for segm; the table says met or MISSED.

With --config (a trained run, e.g. the demo's after `make demo`): `evaluate.py --config C
--out TMP` with and without --no-report, interleaved, medians; the report's cost against the
evaluation's wall time (goal: at most 25%); saved as bench/results/eval_report_config.json.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from maskrcnn_toolkit.core.atomic import atomic_write  # noqa: E402
from maskrcnn_toolkit.modeling import scoring  # noqa: E402

CLASSES = ["bolt", "nut", "washer", "bracket", "spring"]


def polygon(rng, cx, cy, r, n=None):
    """A star-shaped polygon (flat xy list) around (cx, cy) with mean radius r."""
    n = n or int(rng.integers(6, 13))
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = r * rng.uniform(0.6, 1.2, n)
    return np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).ravel()


def make_set(num_images: int, seed: int, width: int = 640, height: int = 480):
    """(gt dict, detections list), deterministic in ``seed``."""
    from pycocotools import mask as mask_utils
    rng = np.random.default_rng(seed)
    gt = {"images": [], "annotations": [],
          "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)]}
    dets = []

    def clip(p):
        p = p.copy()
        p[0::2] = np.clip(p[0::2], 0, width - 1)
        p[1::2] = np.clip(p[1::2], 0, height - 1)
        return [round(float(v), 2) for v in p]

    def rle_of(poly):
        rle = mask_utils.merge(mask_utils.frPyObjects([poly], height, width))
        return rle

    for img_id in range(1, num_images + 1):
        gt["images"].append({"id": img_id, "width": width, "height": height,
                             "file_name": f"{img_id:06d}.jpg"})
        for _ in range(int(rng.integers(2, 13))):
            r = float(rng.choice([8, 20, 45, 90], p=[.3, .35, .25, .1]) * rng.uniform(.7, 1.3))
            cx, cy = rng.uniform(r, width - r), rng.uniform(r, height - r)
            poly = clip(polygon(rng, cx, cy, r))
            cat = int(rng.integers(1, len(CLASSES) + 1))
            crowd = int(rng.random() < 0.01)
            rle = rle_of(poly)
            gt["annotations"].append({
                "id": len(gt["annotations"]) + 1, "image_id": img_id, "category_id": cat,
                "segmentation": [poly], "area": float(mask_utils.area(rle)),
                "bbox": [round(float(v), 2) for v in mask_utils.toBbox(rle)],
                "iscrowd": crowd})
            if crowd or rng.random() > 0.85:
                continue  # missed
            # vertex noise + a shift of the whole shape, both relative to its size
            jit = (np.asarray(poly) + rng.normal(0, max(1.0, r * 0.08), len(poly))
                   + np.tile(rng.normal(0, r * 0.1, 2), len(poly) // 2))
            dcat = cat if rng.random() > 0.05 else int(rng.integers(1, len(CLASSES) + 1))
            dets.append(_det(img_id, dcat, rle_of(clip(jit)), rng))
        for _ in range(int(rng.integers(0, 3))):  # false positives
            r = float(rng.uniform(6, 60))
            poly = clip(polygon(rng, rng.uniform(r, width - r), rng.uniform(r, height - r), r))
            dets.append(_det(img_id, int(rng.integers(1, len(CLASSES) + 1)), rle_of(poly), rng))
    return gt, dets


def _det(img_id, cat, rle, rng):
    from pycocotools import mask as mask_utils
    return {"image_id": img_id, "category_id": cat,
            "bbox": [round(float(v), 2) for v in mask_utils.toBbox(rle)],
            "score": round(float(rng.beta(2, 2)), 5),
            "segmentation": {"size": [int(v) for v in rle["size"]],
                             "counts": rle["counts"].decode("ascii")}}


def plain_pycocotools(gt_path, dt_path, iou_type):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        dt = gt.loadRes(str(dt_path))
        E = COCOeval(gt, dt, iou_type)
        E.evaluate()
        E.accumulate()
        E.summarize()
    return E


def per_class_of(E):
    rows = []
    p = E.params
    for k in range(len(p.catIds)):
        row = []
        for thr in (None, 0.5, 0.75):
            s = E.eval["precision"] if thr is None else \
                E.eval["precision"][np.where(thr == p.iouThrs)[0]]
            s = s[:, :, k, 0, 2]
            row.append(-1.0 if len(s[s > -1]) == 0 else float(np.mean(s[s > -1])))
        rows.append(row)
    return rows


# docs/DESIGN_NOTES.md, Evaluation: `evaluate.py --gt/--detections` >= 2.5x plain
# pycocotools for segm.
GOAL = 2.5


def _wall_cpu(fn):
    """(wall seconds, CPU seconds of this process and its finished children, result)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    child = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    return time.perf_counter() - t0, time.process_time() - c0 + child, out


# The report may cost at most this fraction of the evaluation's wall time (--gt/--detections
# on the synthetic set; a --config run on the demo's 60 validation images).
REPORT_GOAL_GT, REPORT_GOAL_CONFIG = 0.5, 0.25


def run_cli(gt_path, dt_path, iou_type, out, *extra):
    """evaluate.py as a user runs it: a fresh Python, imports, read, check, score, print,
    write the metrics JSON (and report.html when ``extra`` has no --no-report). Returns
    the metrics JSON."""
    p = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "--gt", str(gt_path),
                        "--detections", str(dt_path), "--iou-type", iou_type, "--out",
                        str(out), "--overwrite", *extra], capture_output=True, text=True,
                       cwd=ROOT)
    assert p.returncode == 0, p.stderr
    return json.loads(Path(out).read_text())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3,
                    help="timings per row (>= 3; the median is reported)")
    ap.add_argument("--config", help="time the report of `evaluate.py --config` on this "
                    "trained run instead (e.g. configs/parts_demo.yaml after make demo)")
    args = ap.parse_args(argv)
    if args.repeat < 3:
        ap.error("--repeat must be >= 3 (the table reports medians)")
    if args.config:
        return bench_config(args.config, args.repeat)

    t0 = time.perf_counter()
    gt, dets = make_set(args.images, args.seed)
    gen_s = time.perf_counter() - t0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, dt_path = Path(tmp) / "gt.json", Path(tmp) / "dt.json"
        gt_path.write_text(json.dumps(gt))
        dt_path.write_text(json.dumps(dets))
        # Start-up alone: the CLI on a one-image set (Python, imports, argument parsing).
        tiny_gt, tiny_dt = Path(tmp) / "tiny_gt.json", Path(tmp) / "tiny_dt.json"
        tiny_gt.write_text(json.dumps(dict(gt, images=gt["images"][:1], annotations=[
            a for a in gt["annotations"] if a["image_id"] == 1])))
        tiny_dt.write_text(json.dumps([d for d in dets if d["image_id"] == 1]))
        print(f"synthetic set: {len(gt['images'])} images, {len(gt['annotations'])} "
              f"ground-truth polygons, {len(dets)} detections (seed {args.seed}, "
              f"{gen_s:.1f} s to generate)", flush=True)
        for t in scoring.IOU_TYPES:
            out = Path(tmp) / f"m_{t}.json"
            # The three contenders are interleaved (one of each per round) so that a burst of
            # load on the shared machine hits all of them, then the median of each is taken.
            jobs = {"pycocotools": lambda: plain_pycocotools(gt_path, dt_path, t),
                    "library": lambda: scoring.evaluate_files(gt_path, dt_path, (t,)),
                    "cli": lambda: run_cli(gt_path, dt_path, t, out, "--no-report"),
                    "report": lambda: run_cli(gt_path, dt_path, t,
                                              Path(tmp) / f"r_{t}.json"),
                    "startup": lambda: run_cli(tiny_gt, tiny_dt, t, Path(tmp) / "tiny.json",
                                               "--no-report")}
            wall = {k: [] for k in jobs}
            cpu = {k: [] for k in jobs}
            res = {}
            for _ in range(args.repeat):
                for k, fn in jobs.items():
                    w, c, res[k] = _wall_cpu(fn)
                    wall[k].append(w)
                    cpu[k].append(c)
            E, rep, cli = res["pycocotools"], res["library"], res["cli"]
            ours = [rep.metrics[t][k] for k in scoring.STAT_KEYS]
            assert ours == [float(x) for x in E.stats], (t, ours, list(E.stats))
            assert [[c["AP"], c["AP50"], c["AP75"]] for c in rep.metrics[t]["per_class"]] \
                == per_class_of(E), t
            assert [cli[t][k] for k in scoring.STAT_KEYS] == ours, t
            assert [res["report"][t][k] for k in scoring.STAT_KEYS] == ours, t
            assert "analysis" in res["report"] and "analysis" not in cli, t
            med = {k: float(np.median(v)) for k, v in wall.items()}
            med_cpu = {k: float(np.median(v)) for k, v in cpu.items()}
            speedup_cli = med["pycocotools"] / med["cli"]
            rows.append({
                "iou_type": t,
                "pycocotools_s": round(med["pycocotools"], 3),
                "cli_s": round(med["cli"], 3),
                "speedup_cli": round(speedup_cli, 2),
                "goal": GOAL if t == "segm" else None,
                "goal_met": (speedup_cli >= GOAL) if t == "segm" else None,
                "cli_startup_s": round(med["startup"], 3),
                "cli_with_report_s": round(med["report"], 3),
                "report_s": round(med["report"] - med["cli"], 3),
                "report_fraction": round((med["report"] - med["cli"]) / med["cli"], 3),
                "report_goal": REPORT_GOAL_GT,
                "report_goal_met": (med["report"] - med["cli"]) / med["cli"] <= REPORT_GOAL_GT,
                "library_s": round(med["library"], 3),
                "speedup_library": round(med["pycocotools"] / med["library"], 2),
                "pycocotools_cpu_s": round(med_cpu["pycocotools"], 3),
                "cli_cpu_s": round(med_cpu["cli"], 3),
                "speedup_cli_cpu": round(med_cpu["pycocotools"] / med_cpu["cli"], 2),
                "wall_s_all": {k: [round(x, 3) for x in v] for k, v in wall.items()},
                "AP": ours[0], "identical_stats": True, "identical_per_class": True,
                "backend": rep.backend})

    print(f"\nmedian of {args.repeat} interleaved runs; 'evaluate.py CLI' = the command a user "
          f"runs (fresh Python, imports, read, check, score, write)")
    print("| IoU type | pycocotools (s) | evaluate.py CLI (s) | CLI speedup | goal >= 2.5x "
          "(segm) | of which start-up (s) | library call (s) | library speedup | "
          "CLI speedup, CPU time | AP | 12 stats + per class |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        goal = "-" if r["goal"] is None else ("met" if r["goal_met"] else "MISSED")
        print(f"| {r['iou_type']} | {r['pycocotools_s']:.2f} | {r['cli_s']:.2f} | "
              f"{r['speedup_cli']:.2f}x | {goal} | {r['cli_startup_s']:.2f} | "
              f"{r['library_s']:.2f} | {r['speedup_library']:.2f}x | "
              f"{r['speedup_cli_cpu']:.2f}x | {r['AP']:.4f} | identical |")
    print("\n| IoU type | evaluate.py --no-report (s) | with report.html (s) | report's "
          "cost | goal <= 50% |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['iou_type']} | {r['cli_s']:.2f} | {r['cli_with_report_s']:.2f} | "
              f"{100 * r['report_fraction']:.0f}% | "
              f"{'met' if r['report_goal_met'] else 'MISSED'} |")
    result = {"images": len(gt["images"]), "gt_instances": len(gt["annotations"]),
              "detections": len(dets), "seed": args.seed, "repeat": args.repeat,
              "statistic": "median of interleaved runs", "goal_segm_cli_speedup": GOAL,
              "rows": rows, "machine": {"cpus": os.cpu_count(),
                                        "python": platform.python_version()},
              "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    out = ROOT / "bench" / "results" / "eval.json"
    with atomic_write(out, "w") as f:
        json.dump(result, f, indent=1)
    segm = rows[0]
    print(f"\nbench eval: evaluate.py segm {segm['speedup_cli']:.2f}x plain pycocotools (goal "
          f"{GOAL}x {'met' if segm['goal_met'] else 'MISSED'}), stats identical, "
          f"-> {out.relative_to(ROOT)}")
    return 0


def bench_config(config: str, repeat: int) -> int:
    """The report's cost in `evaluate.py --config`: with and without --no-report,
    interleaved, ``repeat`` rounds, medians."""
    wall = {"no_report": [], "report": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            for k, extra in (("no_report", ["--no-report"]), ("report", [])):
                t0 = time.perf_counter()
                p = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "--config",
                                    config, "--out", str(Path(tmp) / k), "--overwrite",
                                    *extra], capture_output=True, text=True, cwd=ROOT)
                assert p.returncode == 0, p.stderr[-3000:]
                wall[k].append(time.perf_counter() - t0)
        metrics = json.loads((Path(tmp) / "report" / "metrics.json").read_text())
    med = {k: float(np.median(v)) for k, v in wall.items()}
    fraction = (med["report"] - med["no_report"]) / med["no_report"]
    result = {"config": config, "images": metrics["counts"]["images"], "repeat": repeat,
              "statistic": "median of interleaved runs",
              "evaluate_no_report_s": round(med["no_report"], 3),
              "evaluate_with_report_s": round(med["report"], 3),
              "report_fraction": round(fraction, 3), "goal": REPORT_GOAL_CONFIG,
              "goal_met": fraction <= REPORT_GOAL_CONFIG,
              "wall_s_all": {k: [round(x, 3) for x in v] for k, v in wall.items()},
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
              "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    out = ROOT / "bench" / "results" / "eval_report_config.json"
    with atomic_write(out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"bench eval --config: evaluate.py {med['no_report']:.1f} s without the report, "
          f"{med['report']:.1f} s with it: the report costs {100 * fraction:.0f}% (goal <= "
          f"{100 * REPORT_GOAL_CONFIG:.0f}% {'met' if fraction <= REPORT_GOAL_CONFIG else 'MISSED'}"
          f") on {result['images']} images -> {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
