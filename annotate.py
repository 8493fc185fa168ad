"""Annotate a video or images with a detection model: masks, boxes, names and scores drawn,
plus the detections as data.

    python annotate.py MODEL INPUT --out OUT [options]

MODEL: an export folder (export.py), an OD API SavedModel or a TF1 frozen graph.
INPUT: a video (.mp4 .mov .avi .mkv ...), an image, a folder of images or a quoted glob.
Video → OUT (video, same size / frames / timestamps, audio copied), OUT with suffix .jsonl
(one line per processed frame), optionally --coco-results FILE.
Images → OUT/ folder: annotated images, detections.json (COCO results), images.json; with
--gt GT.json, in the ground truth's image and category ids (evaluate.py --gt GT.json
--detections OUT/detections.json scores them). One image with --out NAME.jpg (or .png ...)
→ that one annotated image.
Mistakes in the arguments (unknown class, empty --start/--end range, output suffix,
existing output, classes that differ from --gt's) are answered before the model loads.
Exit codes: 0 done, 2 bad input (message, no traceback), 3 the video could not be decoded
to its end (what was processed is written as OUT.partial.*), 130 interrupted.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from maskrcnn_toolkit.core.cli import run
from maskrcnn_toolkit.core.errors import UserError


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="annotate.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("model", help="export folder, SavedModel folder or frozen graph .pb")
    p.add_argument("input", help="video file, image, folder of images or quoted glob")
    p.add_argument("--out", required=True,
                   help="output video (.mp4/.mov/.mkv/.avi) for a video input, a folder for "
                        "images, or an image file (.jpg/.png/...) for one image")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--label-map", help="label_map.pbtxt (default: the one beside the model)")
    p.add_argument("--score-threshold", type=float, default=0.5,
                   help="keep detections scoring at least this (default 0.5)")
    p.add_argument("--classes", help="comma-separated class names or ids to keep "
                                     "(default all), e.g. bolt,nut or 1,2")
    p.add_argument("--batch-size", type=int, default=1,
                   help="frames per model call (default 1; on a CPU batching gains nothing, "
                        "on a GPU try 4-8)")
    i = p.add_argument_group("images only")
    i.add_argument("--gt", metavar="FILE",
                   help="COCO ground truth (e.g. DATA/val_annotations.json): annotate the "
                        "input images it lists (matched by file name) and write "
                        "detections.json with its image ids and category ids (classes "
                        "matched by name), ready for evaluate.py --gt FILE")
    v = p.add_argument_group("video only")
    v.add_argument("--coco-results", metavar="FILE",
                   help="also write COCO results JSON (image_id = frame index)")
    v.add_argument("--every", type=int, metavar="N",
                   help="run the model on every Nth frame, from the first frame in range "
                        "(default 1: all); the frames in between are drawn with the last "
                        "result (see --fill); the JSONL holds processed frames only")
    v.add_argument("--fill", choices=("last", "none"),
                   help="with --every N: 'last' (default) draws the last result on the frames "
                        "in between, 'none' leaves them untouched")
    v.add_argument("--start", help="first frame: seconds (12.5 or 12.5s) or frame index (300f)")
    v.add_argument("--end", help="stop before this: seconds (20 or 20s) or frame index (600f)")
    v.add_argument("--codec", help="h264 (default), h265, mpeg4 or mjpeg")
    v.add_argument("--crf", type=float,
                   help="h264/h265 quality, lower is better (x264's default 23)")
    v.add_argument("--no-audio", action="store_true",
                   help="drop the audio (default: copy the first audio stream unchanged)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def _classes(text: str | None):
    if not text:
        return None
    items = [c.strip() for c in text.split(",") if c.strip()]
    return [int(c) if c.isdigit() else c for c in items]


# The "video only" options; their defaults are None/False so that giving one (even with
# its default value) on image input is noticed and refused, not silently ignored.
VIDEO_ONLY = ("coco_results", "every", "fill", "start", "end", "codec", "crf", "no_audio")


def main(argv=None) -> int:
    args = parse_args(argv)
    return run(lambda: _annotate(args), interrupted="no output written")


def _annotate(args: argparse.Namespace) -> int:
    # Everything that can be checked without the model is checked first: loading it takes
    # 10-20 s, and a mistake should be answered in about a second.
    from maskrcnn_toolkit.inference import (
        Predictor,
        VideoReader,
        annotate_images,
        annotate_video,
        find_images,
        parse_position,
    )
    from maskrcnn_toolkit.inference.ground_truth import match_ground_truth
    from maskrcnn_toolkit.inference.image_annotation import check_image_outputs
    from maskrcnn_toolkit.inference.predictor import check_classes, model_label_map
    from maskrcnn_toolkit.inference.video import check_video_outputs, check_video_range
    from maskrcnn_toolkit.inference.video_reader import VIDEO_SUFFIXES, is_video
    from maskrcnn_toolkit.inference.video_writer import encoder_name, pixel_format

    video_input = is_video(args.input) and not Path(args.input).is_dir()
    if not video_input:
        given = ["--" + o.replace("_", "-") for o in VIDEO_ONLY
                 if getattr(args, o) not in (None, False)]
        if given:
            raise UserError(f"{', '.join(given)} apply to videos only; {args.input!r} is "
                            f"not a video ({', '.join(VIDEO_SUFFIXES)}); drop "
                            f"{'them' if len(given) > 1 else 'it'} for images")
    elif args.gt:
        raise UserError(f"--gt applies to images only; {args.input!r} is a video (its "
                        f"frames are in no COCO ground truth); drop --gt, or use "
                        f"--coco-results FILE (image_id = frame index)")
    every = 1 if args.every is None else args.every
    if args.batch_size < 1 or every < 1:
        raise UserError(f"--batch-size ({args.batch_size}) and --every ({every}) "
                        f"must be at least 1")
    if not video_input:
        paths = find_images(args.input)
    else:
        start = parse_position(args.start, "--start") if args.start else None
        end = parse_position(args.end, "--end") if args.end else None
        codec = encoder_name(args.codec or "h264")
        with VideoReader(args.input) as reader:
            pixel_format(codec, *reader.info.display_size,
                         f"video {args.input!r} is, as displayed,")
            check_video_range(start, end, reader.info)
    # The label map the Predictor will use, read without loading the model.
    label_map = model_label_map(args.model, args.label_map)
    classes = _classes(args.classes)
    check_classes(classes, label_map, repr(args.model))
    gt = None
    if video_input:
        check_video_outputs(args.input, args.out, coco_results=args.coco_results,
                            codec=args.codec or "h264", crf=args.crf,
                            overwrite=args.overwrite)
    else:
        if args.gt:
            gt = match_ground_truth(args.gt, paths, label_map, classes)
            paths = gt.paths
        check_image_outputs(paths, args.out, overwrite=args.overwrite, gt=gt)
        for w in gt.warnings() if gt is not None else []:
            print(f"warning: {w}")
    predictor = Predictor(args.model, label_map=label_map,
                          score_threshold=args.score_threshold, classes=classes)
    if video_input:
        summary = annotate_video(
            predictor, args.input, args.out, coco_results=args.coco_results,
            batch_size=args.batch_size, every=every, fill=args.fill or "last",
            start=start, end=end, codec=args.codec or "h264", crf=args.crf,
            audio=not args.no_audio, overwrite=args.overwrite, progress=not args.quiet)
        print(summary.line("frames"))
    else:
        summary = annotate_images(predictor, paths, args.out, batch_size=args.batch_size,
                                  overwrite=args.overwrite, progress=not args.quiet, gt=gt)
        print(summary.line("images"))
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
