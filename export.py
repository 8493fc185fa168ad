"""Export a trained run: SavedModel + OD API-style frozen graph (docs/export.md).

    python export.py --config configs/parts_demo.yaml --out exported/parts
    python export.py --config X --out DIR --checkpoint runs/x/ckpt-1000 --overwrite
    python export.py --config X --out DIR --score-threshold 0.3

Writes DIR/saved_model/, DIR/frozen_graph.pb, DIR/label_map.pbtxt, DIR/metadata.json,
atomically (a failed export leaves no DIR), and prints one summary line. Ctrl-C prints one
line and exits 130, leaving no DIR (or the old one, with --overwrite, untouched).
"""
from __future__ import annotations

import argparse
import sys

from maskrcnn_toolkit import core  # noqa: F401  (TF environment before TensorFlow is imported)
from maskrcnn_toolkit.core.cli import run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="the user YAML the run was trained with")
    ap.add_argument("--out", required=True, help="export folder to create")
    ap.add_argument("--checkpoint", default=None,
                    help="checkpoint to export (default: the latest in the run directory)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    ap.add_argument("--score-threshold", type=float, default=None, metavar="S",
                    help="lowest score the export outputs (pre-NMS threshold); default: "
                         "the config's (Model Garden's 0.05)")
    args = ap.parse_args(argv)
    # The export is built in a temporary sibling folder (core.atomic.atomic_dir), removed on
    # the way out of an interrupt: --out is as it was before (absent, or the old export).
    return run(lambda: _export(args),
               interrupted=f"no export written ({args.out!r} is as it was before)")


def _export(args: argparse.Namespace) -> None:
    from maskrcnn_toolkit.core.atomic import check_replaceable, refuse_existing
    from maskrcnn_toolkit.core.export_folder import is_export_file
    from maskrcnn_toolkit.modeling.config import load_run
    from maskrcnn_toolkit.modeling.model import find_checkpoint
    # The cheap checks first, before TensorFlow is even imported: a mistake costs a second.
    refuse_existing(args.out, args.overwrite, "export folder")
    check_replaceable(args.out, args.overwrite, owned=is_export_file, what="export")
    checkpoint = find_checkpoint(load_run(args.config, experiment=False), args.checkpoint)
    from maskrcnn_toolkit.modeling.exporting import export
    export(load_run(args.config), args.out, checkpoint=checkpoint,
           overwrite=args.overwrite, score_threshold=args.score_threshold)


if __name__ == "__main__":
    sys.exit(main())
