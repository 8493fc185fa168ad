"""Video annotation throughput: annotate.py's pipeline vs the model alone vs per-frame.

    python bench/video.py --model exported/parts [--frames 200] [--rss-frames 40]

For each clip (../shared/data/video_vtest/vtest.avi when present, and a generated clip with
moving shapes + audio), with the same exported model, in one run:

- limit:     the model alone on the same frames, already decoded, at the best batch size;
- per-frame: what blog posts do (moviepy's ``fl_image``): decode one frame, call the model,
             draw, encode, append, in one thread, with PyAV;
- annotate:  ``inference.annotate_video`` (what annotate.py runs), at the best batch
             size, JSONL included.
They run interleaved in rounds; each keeps its best round (the machine may be shared) and
its CPU time per frame is reported too. Each row says whether the goals are met:
annotate >= 0.95x the limit's fps (on 2 CPU cores) and annotate >= the per-frame fps; it
also gives the median of the per-round ratios annotate / limit (a second reading: on a
shared machine one lucky round of the limit moves the best-of ratio by 10%).

Memory: annotate.py's pipeline in a fresh process on a generated clip and one 10x longer;
RSS is sampled at every model call, and the growth is measured after warm-up (median of the
20 samples after ``--rss-warmup`` frames vs median of the last 20: TensorFlow loading and
tracing the model reach the process's peak before any frame is annotated, so a peak RSS
alone cannot show a leak). Goal: the 10x clip
grows <= 32 MB after warm-up (the trend line's rise: a leaked 640x480 frame every 10 frames
would exceed it), and peak RSS of the 10x clip within 20% of the short one's.
Prints tables, saves bench/results/video.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import av  # noqa: E402
import numpy as np  # noqa: E402

from maskrcnn_toolkit.core.atomic import atomic_write  # noqa: E402
from maskrcnn_toolkit.inference import (  # noqa: E402
    Position,
    Predictor,
    VideoReader,
    annotate_video,
    draw_detections,
)
from maskrcnn_toolkit.inference.video import jsonl_path_for  # noqa: E402

VTEST = ROOT.parent / "shared" / "data" / "video_vtest" / "vtest.avi"
GOAL_VS_LIMIT = 0.95   # annotate.py >= 0.95x the model alone, on 2 CPU cores
GOAL_GROWTH_MB = 32    # RSS growth after warm-up allowed over the 10x clip


def generated_clip(path: Path, frames: int, size=(480, 640), fps: int = 10) -> Path:
    """Moving discs and bars on a textured background, with an AAC tone: uint8 RGB,
    H.264 + AAC in MP4."""
    h, w = size
    rng = np.random.default_rng(0)
    background = (rng.integers(60, 120, (h // 8, w // 8, 3))
                  .repeat(8, 0).repeat(8, 1)).astype(np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    c = av.open(str(path), "w")
    v = c.add_stream("libx264", rate=fps)
    v.width, v.height, v.pix_fmt = w, h, "yuv420p"
    v.options = {"preset": "veryfast"}
    a = c.add_stream("aac", rate=16000)
    a.layout = "mono"
    for i in range(frames):
        img = background.copy()
        for k, color in enumerate([(230, 60, 60), (60, 200, 80), (240, 220, 40)]):
            cy = h * (0.3 + 0.2 * k)
            cx = (w * 0.1 + (i * (6 + 3 * k)) % (w * 0.8))
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < (h * 0.08) ** 2] = color
        img[int(h * 0.8):int(h * 0.86), (i * 5) % (w - 100):(i * 5) % (w - 100) + 100] = 220
        c.mux(v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
    c.mux(v.encode())
    sr, total, pos = 16000, int(16000 * frames / fps), 0
    while pos < total:
        k = min(1024, total - pos)
        t = np.arange(pos, pos + k, dtype=np.float32) / sr
        f = av.AudioFrame.from_ndarray((0.2 * np.sin(2 * np.pi * 330 * t))[None],
                                       format="fltp", layout="mono")
        f.sample_rate, f.pts = sr, pos
        c.mux(a.encode(f))
        pos += k
    c.mux(a.encode())
    c.close()
    return path


def decoded(path: Path, n: int) -> list[np.ndarray]:
    with VideoReader(path) as r:
        return [f.image for f, _ in zip(r.frames(), range(n))]


def model_alone(predictor, frames, batch_size: int) -> float:
    t = time.perf_counter()
    for i in range(0, len(frames), batch_size):
        predictor.predict_batch(frames[i:i + batch_size])
    return len(frames) / (time.perf_counter() - t)


def per_frame(predictor, src: Path, out: Path, n: int) -> float:
    """The blog-post loop: decode a frame, predict, draw, encode, append; one thread."""
    t = time.perf_counter()
    with av.open(str(src)) as inp, av.open(str(out), "w") as o:
        vs = inp.streams.video[0]
        ov = o.add_stream("libx264", rate=vs.average_rate)
        ov.width, ov.height, ov.pix_fmt = vs.codec_context.width, vs.codec_context.height, \
            "yuv420p"
        ov.options = {"preset": "veryfast"}
        count = 0
        for f in inp.decode(vs):
            img = f.to_ndarray(format="rgb24")
            img = draw_detections(img, predictor(img))
            o.mux(ov.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
            count += 1
            if count == n:
                break
        o.mux(ov.encode())
    return count / (time.perf_counter() - t)


def pipeline(predictor, src: Path, out: Path, n: int, batch_size: int) -> float:
    for p in (out, jsonl_path_for(out)):
        p.unlink(missing_ok=True)
    s = annotate_video(predictor, src, out, end=Position(n, "f"), batch_size=batch_size,
                       progress=False)
    assert s.frames == n, s.line()
    return s.fps


def rss_mb() -> float:
    """This process's resident set size now, in MiB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


class RssSampling:
    """A predictor that records (frames seen, RSS MiB) after each model call."""

    def __init__(self, predictor):
        self.predictor, self.seen, self.samples = predictor, 0, []
        self.label_map = predictor.label_map

    def predict_batch(self, images):
        out = self.predictor.predict_batch(images)
        self.seen += len(images)
        self.samples.append((self.seen, rss_mb()))
        return out


def rss_child(args) -> None:
    predictor = RssSampling(Predictor(args.model, score_threshold=args.score_threshold))
    out = Path(args.rss_child[1])
    s = annotate_video(predictor, args.rss_child[0], out, batch_size=args.batch_size,
                       progress=False)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"frames": s.frames, "fps": s.fps, "peak_rss_mb": peak_kb / 1024,
                      **rss_growth(predictor.samples, args.rss_warmup),
                      "samples": predictor.samples}))


def rss_growth(samples: list, warmup: int, window: int = 20) -> dict:
    """RSS growth after warm-up from (frames seen, MiB) samples: the least-squares trend of
    RSS against the frame count over the samples after ``warmup`` frames, times the frames
    it spans. RSS swings by tens of MB from one model call to the next and keeps settling
    for a few dozen frames (session 3: a 10-frame warm-up read +35 MB off a flat curve by
    comparing two medians); a trend line averages that noise out while a leak, which grows
    with the frame count, still shows. The medians of the first and last ``window``
    samples are kept for the table."""
    after = np.array([(n, mb) for n, mb in samples if n >= warmup], dtype=np.float64)
    if len(after) >= 2 and after[-1, 0] > after[0, 0]:
        slope = float(np.polyfit(after[:, 0], after[:, 1], 1)[0])
        growth = slope * float(after[-1, 0] - after[0, 0])
    else:
        growth = 0.0
    start = float(np.median(after[:window, 1]))
    end = float(np.median(after[-window:, 1]))
    return {"warmup_frames": warmup, "window": window, "rss_after_warmup_mb": start,
            "rss_end_mb": end, "max_after_warmup_mb": float(after[:, 1].max()),
            "growth_after_warmup_mb": growth}


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="export folder / SavedModel / frozen graph")
    ap.add_argument("--frames", type=int, default=200, help="frames per clip (default 200)")
    ap.add_argument("--batch-sizes", default="1,2,4", help="tried for the limit")
    ap.add_argument("--rounds", type=int, default=3,
                    help="interleaved rounds of the three; each keeps its best (default 3)")
    ap.add_argument("--score-threshold", type=float, default=0.5,
                    help="default 0.5, annotate.py's; 0 draws and serializes every one of "
                         "the model's detections (100 per frame: the worst case)")
    ap.add_argument("--rss-frames", type=int, default=40,
                    help="frames of the short clip for RSS (the long one has 10x; default 40; "
                         "0 skips RSS and saves nothing: a quick look at the fps)")
    ap.add_argument("--rss-warmup", type=int, default=10,
                    help="frames after which RSS growth is measured (default 10)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "video.json"),
                    help="results JSON (default bench/results/video.json)")
    ap.add_argument("--batch-size", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--rss-child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        return rss_child(args)

    predictor = Predictor(args.model, score_threshold=args.score_threshold)
    tmp = Path(tempfile.mkdtemp(prefix="bench_video_"))
    clips = []
    if VTEST.exists():
        clips.append(("vtest.avi 480x360", VTEST))
    else:
        print(f"skipping {VTEST} (absent)")
    clips.append(("generated 640x480", generated_clip(tmp / "gen.mp4", args.frames)))
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    rows = []
    for name, src in clips:
        frames = decoded(src, args.frames)
        n = len(frames)
        predictor.predict_batch(frames[:max(sizes)])  # trace / warm up
        probe = frames[:min(n, 4 * max(sizes))]
        by_bs = {b: model_alone(predictor, probe, b) for b in sizes}
        best = max(by_bs, key=by_bs.get)
        # The machine is shared: interleave the three in rounds (rotating the order) and
        # keep each one's best round, so a burst of someone else's load hits all alike.
        steps = {
            "limit": lambda: model_alone(predictor, frames, best),
            "per_frame": lambda: per_frame(predictor, src, tmp / "per_frame.mp4", n),
            "annotate": lambda: pipeline(predictor, src, tmp / "annotated.mp4", n, best)}
        runs = {k: [] for k in steps}
        order = list(steps)
        for r in range(args.rounds):
            for key in order[r % len(order):] + order[:r % len(order)]:
                c0 = _cpu()
                fps = steps[key]()
                cpu_ms = (_cpu() - c0) / n * 1000
                runs[key].append({"fps": fps, "cpu_ms_per_frame": cpu_ms,
                                  "load": os.getloadavg()[0]})
        best_of = {k: max(x["fps"] for x in v) for k, v in runs.items()}
        cpu_of = {k: min(x["cpu_ms_per_frame"] for x in v) for k, v in runs.items()}
        dets = sum(len(d) for d in predictor.predict_batch(frames[:4])) / 4
        vs_limit = best_of["annotate"] / best_of["limit"]
        vs_per_frame = best_of["annotate"] / best_of["per_frame"]
        # Also round by round (the same round's annotate / limit, then the median): a
        # second reading that a single lucky round of one of them cannot move.
        paired = float(np.median([a["fps"] / b["fps"]
                                  for a, b in zip(runs["annotate"], runs["limit"])]))
        rows.append({"clip": name, "frames": n, "detections_per_frame": dets,
                     "batch_fps": by_bs, "best_batch": best, "limit_fps": best_of["limit"],
                     "per_frame_fps": best_of["per_frame"], "annotate_fps": best_of["annotate"],
                     "cpu_ms_per_frame": cpu_of, "runs": runs,
                     "annotate_vs_limit": vs_limit, "annotate_vs_per_frame": vs_per_frame,
                     "annotate_vs_limit_paired_median": paired,
                     "goal_vs_limit_met": vs_limit >= GOAL_VS_LIMIT,
                     "goal_vs_per_frame_met": vs_per_frame >= 1.0})
        print(f"{name}: " + ", ".join(f"{k} {v:.2f} fps" for k, v in best_of.items())
              + f" (batch {best})", flush=True)

    # RSS: a fresh process per clip, the same pipeline as annotate.py, sampled per frame.
    rss = []
    for k in ((1, 10) if args.rss_frames > 0 else ()):
        clip = generated_clip(tmp / f"rss{k}.mp4", args.rss_frames * k)
        out = subprocess.run(
            [sys.executable, __file__, "--model", args.model, "--score-threshold",
             str(args.score_threshold), "--rss-warmup", str(args.rss_warmup),
             "--rss-child", str(clip), str(tmp / f"rss{k}_out.mp4")],
            capture_output=True, text=True, check=True)
        rss.append(json.loads(out.stdout.strip().splitlines()[-1]))

    def met(ok: bool) -> str:
        return "met" if ok else "MISSED"

    print()
    print("| clip | frames | dets/frame | limit fps (best batch) | per-frame fps | annotate fps "
          "| annotate / limit (goal >= 0.95) | same, median of per-round ratios "
          "| annotate / per-frame (goal >= 1) | CPU ms/frame limit / per-frame / annotate |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        c = r["cpu_ms_per_frame"]
        print(f"| {r['clip']} | {r['frames']} | {r['detections_per_frame']:.0f} | "
              f"{r['limit_fps']:.2f} ({r['best_batch']}) | {r['per_frame_fps']:.2f} | "
              f"{r['annotate_fps']:.2f} | {r['annotate_vs_limit']:.2f}x "
              f"{met(r['goal_vs_limit_met'])} | {r['annotate_vs_limit_paired_median']:.2f}x | "
              f"{r['annotate_vs_per_frame']:.2f}x "
              f"{met(r['goal_vs_per_frame_met'])} | {c['limit']:.0f} / "
              f"{c['per_frame']:.0f} / {c['annotate']:.0f} |")
    if not rss:
        print("RSS not measured (--rss-frames 0); results not saved")
        return
    print()
    print(f"| annotate.py pipeline, generated 640x480 | frames | peak RSS MB (whole process) | "
          f"median RSS, frames {args.rss_warmup}+ MB | median RSS, last frames MB | "
          f"growth after warm-up MB (trend) |")
    print("|---|---|---|---|---|---|")
    for r in rss:
        print(f"| {'short' if r is rss[0] else '10x longer'} | {r['frames']} | "
              f"{r['peak_rss_mb']:.0f} | {r['rss_after_warmup_mb']:.0f} | "
              f"{r['rss_end_mb']:.0f} | {r['growth_after_warmup_mb']:+.1f} |")
    ratio = rss[1]["peak_rss_mb"] / rss[0]["peak_rss_mb"]
    leak_ok = rss[1]["growth_after_warmup_mb"] <= GOAL_GROWTH_MB
    peak_ok = ratio <= 1.2  # the goal: a 10x longer clip, same peak RSS within 20%
    print(f"RSS growth after warm-up over the 10x clip: "
          f"{rss[1]['growth_after_warmup_mb']:+.1f} MB (goal <= {GOAL_GROWTH_MB} MB): "
          f"{met(leak_ok)}; peak RSS ratio 10x / 1x: {ratio:.3f} (goal <= 1.2): "
          f"{met(peak_ok)}; load average now "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (shared machine)")
    result = {"model": os.path.abspath(args.model), "score_threshold": args.score_threshold,
              "cpus": os.cpu_count(), "load_average_at_end": os.getloadavg(),
              "machine": platform.platform(), "clips": rows, "rss": rss,
              "rss_ratio_10x": ratio, "rss_growth_goal_mb": GOAL_GROWTH_MB,
              "rss_growth_goal_met": leak_ok, "rss_peak_goal_met": peak_ok,
              "goals": {"annotate_vs_limit": GOAL_VS_LIMIT, "annotate_vs_per_frame": 1.0},
              "note": "2 CPU cores shared with other jobs during the run; fps are noisy"}
    out = Path(args.out)
    with atomic_write(out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"saved {out}")


if __name__ == "__main__":
    main()
