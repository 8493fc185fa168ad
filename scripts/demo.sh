#!/usr/bin/env bash
# `make demo`: the whole chain on the built-in synthetic parts dataset, on a laptop CPU.
# Re-running it resumes: finished steps are skipped, training continues from its last
# checkpoint. `make clean-demo` starts over.
set -euo pipefail
OUT=${1:-demo_out}
PY=${PY:-.venv/bin/python}
CONFIG=${CONFIG:-configs/parts_demo.yaml}
start=$(date +%s)
step() { printf '\n=== %s (%ds elapsed)\n' "$1" $(( $(date +%s) - start )); }

step "1/6 synthesize the parts dataset (COCO JSON + JPEGs)"
if [ -f "$OUT/synth/annotations.json" ]; then echo "already there: $OUT/synth"; else
  $PY -m dataset_tools synth "$OUT/synth" --images 480 --seed 0
fi

step "2/6 convert it like user data: validated TFRecords + label map + COCO ground truth"
if [ -f "$OUT/data/report.json" ]; then echo "already there: $OUT/data"; else
  $PY -m dataset_tools convert coco "$OUT/synth/annotations.json" "$OUT/data" --val-fraction 0.125 --seed 0
fi

step "3/6 train Mask R-CNN ($CONFIG)"
# --no-eval: step 4 evaluates right after (saves the in-training evaluation pass).
$PY train.py --config "$CONFIG" --no-eval

step "4/6 evaluate: COCO mask and box AP on the held-out images"
$PY evaluate.py --config "$CONFIG"

step "5/6 export: SavedModel + frozen graph"
$PY export.py --config "$CONFIG" --out "$OUT/export" --overwrite

step "6/6 annotate a synthetic conveyor video with the exported model"
$PY -c "
import sys
from maskrcnn_toolkit.dataset_tools.synthetic import conveyor_frames
from maskrcnn_toolkit.inference import write_video
write_video(conveyor_frames(120, seed=1, size=(256, 256), fps=10), sys.argv[1], fps=10, overwrite=True)
" "$OUT/conveyor.mp4"
$PY annotate.py "$OUT/export" "$OUT/conveyor.mp4" --out "$OUT/conveyor_annotated.mp4" --overwrite
$PY -c "import sys; from maskrcnn_toolkit.inference import save_frame; save_frame(sys.argv[1], 60, sys.argv[2], overwrite=True)" \
  "$OUT/conveyor_annotated.mp4" "$OUT/demo_frame.png"

printf '\ndemo done in %ds: data %s/data, run %s/run, metrics %s/run/eval/metrics.json, export %s/export, video %s/conveyor_annotated.mp4 (a frame: %s/demo_frame.png)\n' \
  $(( $(date +%s) - start )) "$OUT" "$OUT" "$OUT" "$OUT" "$OUT" "$OUT"
