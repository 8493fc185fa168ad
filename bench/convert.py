"""Benchmark: our ``convert`` vs Model Garden's ``create_coco_tf_record.py`` on the same COCO
data with masks, measured in one run; plus our peak RSS at N and 10N images.

    .venv/bin/python bench/convert.py      # 400 synthetic 480x640 images x 3; RSS at 100 / 1000
    .venv/bin/python bench/convert.py --images 100 --repeat 2 --rss-images 50   # quicker

Both tools run as subprocesses, exactly as a user runs them (start-up included, which is
why the dataset must be large enough that start-up does not decide the result: the
synthetic images are repeated ``--repeat`` times with unique bytes). Images/s = images /
wall seconds; each tool's start-up is also measured on a 1-image copy, giving images/s
after start-up = (images - 1) / (wall - start-up). Output bytes/image = total shard bytes /
images. Peak RSS is the
subprocess's ``ru_maxrss`` from ``os.wait4`` (the process and its reaped workers).

The data comes from ``dataset_tools.synthetic`` (parts on textured backgrounds). Its
non-crowd RLE annotations (parts occluded by another part) are removed from the benchmark
JSON that both tools read: Model Garden's converter reads RLE only for ``iscrowd=1`` (for a
non-crowd RLE its ``np.amax(mask, axis=2)`` fails on the 2-D mask).
Prints a table and saves bench/results/convert.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
ENV = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}


def run(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd``; return (wall seconds, peak RSS in MiB). Raises on failure."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"command failed ({p.returncode}): {' '.join(cmd)}\n{err[-3000:]}")
    return wall, ru.ru_maxrss / 1024


def shard_bytes(folder: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in folder.glob(pattern))


def make_dataset(work: Path, n: int, size: tuple[int, int], seed: int) -> Path:
    """Synthetic COCO set with polygon annotations only; returns the JSON path."""
    from maskrcnn_toolkit.dataset_tools.synthetic import generate
    src = work / f"synth_{n}"
    if not (src / "annotations.json").exists():
        generate(src, n, seed=seed, image_size=size, overwrite=True)
    coco = json.loads((src / "annotations.json").read_text())
    coco["annotations"] = [a for a in coco["annotations"]
                           if isinstance(a["segmentation"], list)]
    out = src / "bench.json"
    out.write_text(json.dumps(coco))
    return out


def replicate(src_json: Path, factor: int, dest: Path) -> Path:
    """``factor`` copies of a dataset with unique image bytes (a counter appended after the
    JPEG end marker, which decoders ignore): duplicates would be refused, not converted."""
    coco = json.loads(src_json.read_text())
    img_dir = dest / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    by_image = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    for k in range(factor):
        for im in coco["images"]:
            new_id = len(images) + 1
            name = f"{k:03d}_{im['file_name']}"
            data = (src_json.parent / "images" / im["file_name"]).read_bytes()
            (img_dir / name).write_bytes(data + f"copy{k}".encode())
            images.append({**im, "id": new_id, "file_name": name})
            for a in by_image.get(im["id"], []):
                anns.append({**a, "id": len(anns) + 1, "image_id": new_id})
    out = dest / "annotations.json"
    out.write_text(json.dumps({**coco, "images": images, "annotations": anns}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    ap.add_argument("--rss-images", type=int, default=100,
                    help="N for the peak-RSS check (run at N and 10N, one worker)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="compare on the synthetic images repeated this many times (unique "
                         "bytes), so that start-up does not decide the result")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--work", default=None, help="working folder (default: a temp folder)")
    args = ap.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_convert_"))
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    try:
        synth = make_dataset(work, args.images, tuple(args.size), seed=0)
        ann = replicate(synth, args.repeat, work / f"cmp_{args.images}x{args.repeat}")
        n = len(json.loads(ann.read_text())["images"])
        img_dir = ann.parent / "images"
        # Start-up (imports, pool) measured on a 1-image copy, to also report per-image rates.
        one = json.loads(ann.read_text())
        one["images"] = one["images"][:1]
        one["annotations"] = [a for a in one["annotations"]
                              if a["image_id"] == one["images"][0]["id"]]
        one_ann = ann.parent / "one.json"
        one_ann.write_text(json.dumps(one))
        rows = []
        cores = os.cpu_count() or 1
        def mg_cmd(annotations, out_dir, procs):
            cmd = [py, "-m", "official.vision.data.create_coco_tf_record",
                   f"--image_dir={img_dir}", f"--object_annotations_file={annotations}",
                   f"--output_file_prefix={out_dir}/train", f"--num_shards={args.shards}",
                   "--include_masks=True"]
            return cmd + ([f"--num_processes={procs}"] if procs is not None else [])

        def our_cmd(annotations, out_dir, workers):
            return [py, "-m", "dataset_tools", "convert", "coco", str(annotations),
                    str(out_dir), "--val-fraction", "0", "--num-shards", str(args.shards),
                    "--overwrite"] + (["--workers", str(workers)] if workers else [])

        def fresh(folder: Path) -> Path:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            return folder

        # "defaults": each tool as a user runs it (Model Garden: os.cpu_count() processes;
        # ours: default_workers, one per core, at most 8; in-process below 64 images).
        for label, mg_procs, our_workers in (("defaults", None, None), ("1 process", 0, 1)):
            mg_start, _ = run(mg_cmd(one_ann, fresh(work / "mg_one"), mg_procs))
            mg_out = fresh(work / f"mg_{mg_procs}")
            mg_wall, mg_rss = run(mg_cmd(ann, mg_out, mg_procs))
            our_start, _ = run(our_cmd(one_ann, work / "ours_one", our_workers))
            ours = work / f"ours_{our_workers or 'default'}"
            our_wall, our_rss = run(our_cmd(ann, ours, our_workers))

            def stats(wall, start, rss, folder, pattern):
                return {"seconds": round(wall, 2), "images_per_s": round(n / wall, 2),
                        "startup_seconds": round(start, 2),
                        "images_per_s_after_startup": round((n - 1) / max(wall - start, 1e-9),
                                                            2),
                        "bytes_per_image": shard_bytes(folder, pattern) // n,
                        "peak_rss_mib": round(rss)}

            rows.append({"processes": label,
                         "model_garden": stats(mg_wall, mg_start, mg_rss, mg_out, "train-*"),
                         "ours": stats(our_wall, our_start, our_rss, ours,
                                       "train-*.tfrecord")})
            r = rows[-1]
            r["speedup"] = round(mg_wall / our_wall, 2)
            r["speedup_after_startup"] = round(r["ours"]["images_per_s_after_startup"]
                                               / r["model_garden"]["images_per_s_after_startup"],
                                               2)
            r["bytes_ratio"] = round(r["ours"]["bytes_per_image"]
                                     / r["model_garden"]["bytes_per_image"], 3)

        base = make_dataset(work, args.rss_images, tuple(args.size), seed=1)
        rss = {}
        for factor in (1, 10):
            src = replicate(base, factor, work / f"rss_{factor}")
            k = len(json.loads(src.read_text())["images"])
            wall, peak = run([py, "-m", "dataset_tools", "convert", "coco", str(src),
                              str(work / f"rss_out_{factor}"), "--val-fraction", "0.1",
                              "--workers", "1", "--overwrite"])
            rss[k] = {"seconds": round(wall, 2), "peak_rss_mib": round(peak)}
        ks = sorted(rss)
        result = {"images": n, "synthetic_images": args.images, "repeat": args.repeat,
                  "image_size": list(args.size), "shards": args.shards,
                  "cpu_count": cores, "comparison": rows, "peak_rss": rss,
                  "rss_growth": round(rss[ks[1]]["peak_rss_mib"] / rss[ks[0]]["peak_rss_mib"],
                                      3)}
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)

    print(f"\nconvert vs Model Garden create_coco_tf_record.py: {n} images "
          f"({args.images} synthetic x {args.repeat}) {args.size[0]}x{args.size[1]}, polygon "
          f"masks, {args.shards} shards, {cores} CPU cores")
    print(f"{'processes':<10} {'tool':<13} {'seconds':>8} {'images/s':>9} {'start-up s':>11} "
          f"{'img/s after start-up':>21} {'bytes/image':>12} {'peak RSS MiB':>13}")
    for r in rows:
        for tool in ("model_garden", "ours"):
            m = r[tool]
            print(f"{r['processes']:<10} {tool:<13} {m['seconds']:>8.1f} {m['images_per_s']:>9.1f} "
                  f"{m['startup_seconds']:>11.1f} {m['images_per_s_after_startup']:>21.1f} "
                  f"{m['bytes_per_image']:>12,} {m['peak_rss_mib']:>13,}")
        print(f"{'':<10} {'ours / MG':<13} speedup {r['speedup']:.2f}x "
              f"({r['speedup_after_startup']:.2f}x after start-up), bytes/image "
              f"{r['bytes_ratio']:.3f}x")
    print("\npeak RSS of convert (1 worker): "
          + ", ".join(f"{k} images: {v['peak_rss_mib']} MiB" for k, v in rss.items())
          + f"; 10x images -> {result['rss_growth']:.2f}x peak RSS")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "convert.json").write_text(json.dumps(result, indent=1))
    print(f"saved {RESULTS / 'convert.json'}")


if __name__ == "__main__":
    main()
