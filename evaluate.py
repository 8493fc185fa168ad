"""COCO mask and box mAP, per class, with pycocotools' numbers.

  python evaluate.py --gt GT.json --detections DT.json [--images DIR] [--iou-type segm|bbox|both]
                     [--out metrics.json] [--backend faster|pycocotools]
  python evaluate.py --config configs/parts.yaml [--checkpoint PATH | --model EXPORT_DIR]
                     [--max-images N] [--iou-type segm|bbox|both] [--out DIR]
  both modes: [--score-threshold 0.5] [--no-report]

Beside metrics.json goes report.html, the page a person reads (docs/evaluate.md).

The work is in modeling/scoring.py (--gt/--detections) and modeling/evaluation.py
(--config); this script parses arguments and prints. The --gt/--detections path imports no
TensorFlow (start-up is part of what a user waits for).
"""
from __future__ import annotations

import argparse
import sys

from maskrcnn_toolkit import core  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
from maskrcnn_toolkit.core.cli import run


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="evaluate.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    files = p.add_argument_group("score a COCO results file (no model)")
    files.add_argument("--gt", help="COCO ground-truth JSON (e.g. DATA/val_annotations.json)")
    files.add_argument("--detections", help="COCO results JSON: a list of {image_id, "
                       "category_id, bbox [x,y,w,h], segmentation (RLE), score}")
    files.add_argument("--images", help="the folder of the ground truth's images "
                       "(file_name); the report's galleries need them")
    p.add_argument("--iou-type", choices=("segm", "bbox", "both"), default="both",
                   help="what to score, in both modes (default: both)")
    model = p.add_argument_group("evaluate a model on the run's validation records")
    model.add_argument("--config", help="the run's YAML config")
    src = model.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="checkpoint path (default: latest in the run dir)")
    src.add_argument("--model", help="an export folder made by export.py")
    model.add_argument("--max-images", type=int, default=None,
                       help="evaluate only the first N validation images")
    p.add_argument("--out", help="--gt mode: metrics JSON path (default: DT.metrics.json "
                   "beside the detections); --config mode: output folder (default: "
                   "RUN_DIR/eval)")
    p.add_argument("--backend", choices=("faster", "pycocotools"), default="faster",
                   help="faster = faster-coco-eval (default; bit-identical to pycocotools, "
                   "tested); pycocotools = the reference implementation")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--score-threshold", type=float, default=0.5,
                   help="the report's operating point: detections kept at this score "
                   "(per-class TP/FP/FN, confusion matrix, galleries; default 0.5)")
    p.add_argument("--no-report", action="store_true",
                   help="write metrics.json without report.html and its analysis")
    args = p.parse_args(argv)
    if bool(args.config) == bool(args.gt or args.detections):
        p.error("give either --gt and --detections, or --config")
    if args.gt and not args.detections or args.detections and not args.gt:
        p.error("--gt and --detections go together")
    if args.gt and (args.checkpoint or args.model or args.max_images):
        p.error("--checkpoint, --model and --max-images need --config")
    if args.images and not args.gt:
        p.error("--images goes with --gt/--detections (--config reads the run's records)")
    if not 0.0 <= args.score_threshold <= 1.0:
        p.error("--score-threshold must be in [0, 1]")
    if args.max_images is not None and args.max_images < 1:
        p.error("--max-images must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    # Every output is written to a temporary and renamed at the end: nothing partial.
    return run(lambda: _evaluate(args), interrupted="no output was left half-written")


def _evaluate(args: argparse.Namespace) -> None:
    from maskrcnn_toolkit.modeling import scoring
    types = scoring.IOU_TYPES if args.iou_type == "both" else (args.iou_type,)
    threshold = None if args.no_report else args.score_threshold
    if args.gt:
        worker = None
        if threshold is not None:
            # matplotlib is imported in a second process while this one scores
            from maskrcnn_toolkit.modeling.report_plots import PlotWorker
            worker = PlotWorker()
        try:
            report, out, html_path = _score_files(args, types, threshold, worker)
        finally:
            if worker is not None:
                worker.close()
    else:
        from maskrcnn_toolkit.modeling.evaluation import evaluate_model
        report, out_dir = evaluate_model(
            args.config, checkpoint=args.checkpoint, model=args.model,
            max_images=args.max_images, out=args.out, overwrite=args.overwrite,
            backend=args.backend, iou_types=types, score_threshold=threshold)
        out = str(out_dir)
        html_path = None if threshold is None else out_dir / "report.html"
    print(scoring.format_report(report))
    if html_path is not None:
        print(f"report: {html_path} (open it in a browser)")
    print(scoring.summary_line(report, out))


def _score_files(args: argparse.Namespace, types, threshold, worker):
    """--gt/--detections: score, write metrics.json and (unless ``threshold`` is None)
    report.html. Returns (report, metrics path, report path or None)."""
    from maskrcnn_toolkit.core.atomic import refuse_existing
    from maskrcnn_toolkit.modeling import scoring
    from maskrcnn_toolkit.modeling.eval_outputs import default_metrics_path, write_json
    out = args.out or str(default_metrics_path(args.detections))
    refuse_existing(out, args.overwrite)
    html_path = html = None
    if threshold is not None:
        from maskrcnn_toolkit.modeling.report import report_path
        html_path = report_path(out)
        refuse_existing(html_path, args.overwrite)
    report = scoring.evaluate_files(args.gt, args.detections, types, args.backend,
                                    analysis_threshold=threshold)
    if html_path is not None:
        html = _gt_mode_report(args, report, worker)
    write_json(out, report.to_json())
    if html_path is not None:
        from maskrcnn_toolkit.modeling.report import write_report
        write_report(html_path, html)
    return report, out, html_path


def _gt_mode_report(args: argparse.Namespace, report, worker) -> str:
    from maskrcnn_toolkit.modeling.report import build_report
    from maskrcnn_toolkit.modeling.report_gallery import images_from_folder
    loader, note = None, ("no --images folder was given: the galleries need the pictures "
                          "(evaluate.py --gt ... --images DIR)")
    if args.images:
        loader = images_from_folder(args.images, report.details.gt)
        note = f"pictures from {args.images}"
    return build_report(report, f"{args.detections} scored against {args.gt}",
                        load_images=loader, gallery_note=note, worker=worker)


if __name__ == "__main__":
    sys.exit(main())
