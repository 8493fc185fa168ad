"""Benchmark: `evaluate.py --gt/--detections` vs plain pycocotools, same files, one run.

  .venv/bin/python bench/eval.py [--images 3000] [--seed 0] [--repeat 1]

Generates (deterministically, from --seed) a COCO ground truth of polygon instances and a
COCO results file (jittered copies of the ground truth with RLE masks, some with the wrong
class, some missed, plus false positives; scores rounded to 5 decimals as
Detections.to_coco writes them, so ties occur), then for segm and bbox times:
  - ours: modeling.evaluation.evaluate_files (read + check + score + per class), default
    backend; and once the whole CLI in a subprocess (Python start-up and imports included);
  - baseline: pycocotools COCO(gt), loadRes(dt), COCOeval evaluate/accumulate/summarize.
Asserts the 12 stats and the per-class AP/AP50/AP75 identical (==), prints a table and
saves bench/results/eval.json. Goal (issue 5): >= 2.5x for segm.
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
sys.path.insert(0, str(ROOT))

from core.atomic import atomic_write  # noqa: E402
from modeling import evaluation as ev  # noqa: E402

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


def timed(fn, repeat):
    """(best wall seconds, best CPU seconds of this process, result of the last call).
    CPU time is reported too: the machine is shared, and wall time swings with its load."""
    best, best_cpu, out = float("inf"), float("inf"), None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best, best_cpu, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=1, help="best of N timings per row")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    gt, dets = make_set(args.images, args.seed)
    gen_s = time.perf_counter() - t0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, dt_path = Path(tmp) / "gt.json", Path(tmp) / "dt.json"
        gt_path.write_text(json.dumps(gt))
        dt_path.write_text(json.dumps(dets))
        print(f"synthetic set: {len(gt['images'])} images, {len(gt['annotations'])} "
              f"ground-truth polygons, {len(dets)} detections (seed {args.seed}, "
              f"{gen_s:.1f} s to generate)", flush=True)
        for t in ev.IOU_TYPES:
            base_s, base_cpu, E = timed(lambda: plain_pycocotools(gt_path, dt_path, t),
                                        args.repeat)
            ours_s, ours_cpu, rep = timed(lambda: ev.evaluate_files(gt_path, dt_path, (t,)),
                                          args.repeat)
            ours = [rep.metrics[t][k] for k in ev.STAT_KEYS]
            assert ours == [float(x) for x in E.stats], (t, ours, list(E.stats))
            assert [[c["AP"], c["AP50"], c["AP75"]] for c in rep.metrics[t]["per_class"]] \
                == per_class_of(E), t
            out = Path(tmp) / f"m_{t}.json"
            c0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
            p = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "--gt", str(gt_path),
                                "--detections", str(dt_path), "--iou-type", t, "--out",
                                str(out)], capture_output=True, text=True, cwd=ROOT)
            cli_s = time.perf_counter() - c0
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cli_cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
            assert p.returncode == 0, p.stderr
            cli = json.loads(out.read_text())
            assert [cli[t][k] for k in ev.STAT_KEYS] == ours, t
            rows.append({"iou_type": t, "pycocotools_s": round(base_s, 3),
                         "ours_s": round(ours_s, 3), "ours_cli_s": round(cli_s, 3),
                         "speedup": round(base_s / ours_s, 2),
                         "speedup_cli": round(base_s / cli_s, 2),
                         "pycocotools_cpu_s": round(base_cpu, 3),
                         "ours_cpu_s": round(ours_cpu, 3), "ours_cli_cpu_s": round(cli_cpu, 3),
                         "speedup_cpu": round(base_cpu / ours_cpu, 2),
                         "speedup_cli_cpu": round(base_cpu / cli_cpu, 2),
                         "AP": ours[0], "identical_stats": True,
                         "identical_per_class": True, "backend": rep.backend})

    print(f"\n| IoU type | time | pycocotools (s) | ours, library (s) | speedup | "
          f"ours, CLI (s) | speedup CLI | AP | 12 stats + per class |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        for kind, sfx in (("wall", ""), ("CPU", "_cpu")):
            print(f"| {r['iou_type']} | {kind} | {r['pycocotools' + sfx + '_s']:.2f} | "
                  f"{r['ours' + sfx + '_s']:.2f} | {r['speedup' + sfx]:.2f}x | "
                  f"{r['ours_cli' + sfx + '_s']:.2f} | {r['speedup_cli' + sfx]:.2f}x | "
                  f"{r['AP']:.4f} | identical |")
    result = {"images": len(gt["images"]), "gt_instances": len(gt["annotations"]),
              "detections": len(dets), "seed": args.seed, "repeat": args.repeat,
              "rows": rows, "machine": {"cpus": os.cpu_count(),
                                        "python": platform.python_version()},
              "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    out = ROOT / "bench" / "results" / "eval.json"
    with atomic_write(out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"\nbench eval: {len(rows)} rows, stats identical, -> {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
