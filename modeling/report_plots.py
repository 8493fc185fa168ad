"""The report's plots, drawn with matplotlib's Agg backend into PNG bytes (no pyplot, no
window, no global state). Every function takes plain data (lists, arrays, the dicts of
metrics.json) and returns the PNG of one figure; class colors are core.draw's, so a class
has the same color in the plots and in the gallery pictures.

Drawing costs time that the evaluation's benchmark counts (docs/benchmarks.md): figures
are small, ticks fixed, legends left to the HTML where a class-color key is shown once.
"""
from __future__ import annotations

import io

import numpy as np

from maskrcnn_toolkit.core.draw import class_color

KIND_COLORS = {  # error kinds, as the galleries mark them (RGB 0-255)
    "classification": (255, 140, 0), "localisation": (255, 220, 0), "both": (160, 32, 240),
    "duplicate": (0, 200, 255), "background": (255, 0, 0), "missed": (255, 0, 200)}
TYPE_NAMES = {"segm": "mask", "bbox": "box"}


def _figure(n_panels: int, width: float = 3.2, height: float = 2.6):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width * n_panels, height), dpi=80)
    FigureCanvasAgg(fig)  # Agg, whatever backend the environment selects
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    return fig, list(axes)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout(pad=0.6)
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _rgb(class_id: int) -> tuple[float, float, float]:
    return tuple(v / 255 for v in class_color(class_id))


def _unit_axes(ax, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1])
    ax.set_yticks([0, 0.5, 1])
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    ax.grid(True, alpha=0.3)


def pr_curves(curves: dict[str, dict]) -> bytes:
    """Precision against recall per class: one panel per (IoU type, IoU 0.5 / 0.75).
    ``curves``: {iou_type: error_analysis.Details.curves[iou_type]}; a class without ground
    truth (precision -1) has no line."""
    panels = [(t, k) for t in curves for k in range(2)]
    fig, axes = _figure(len(panels))
    for ax, (t, k) in zip(axes, panels):
        c = curves[t]
        for j, cid in enumerate(c["category_ids"]):
            p = c["precision"][k, :, j]
            if (p >= 0).any():
                ax.plot(c["recall"], np.maximum(p, 0), color=_rgb(cid), lw=1.3)
        _unit_axes(ax, "recall", "precision", f"{TYPE_NAMES[t]}, IoU {(0.5, 0.75)[k]}")
    return _png(fig)


def f1_curves(analysis: dict, iou_types: list[str], names_to_ids: dict[str, int]) -> bytes:
    """F1 against the score threshold per class, one panel per IoU type; the operating
    threshold as a dashed line, each class's F1-maximising threshold as a dot."""
    fig, axes = _figure(len(iou_types))
    thr = analysis["score_threshold"]
    for ax, t in zip(axes, iou_types):
        part = analysis[t]
        x = part["f1_curves"]["thresholds"]
        for row in part["per_class"]:
            y = part["f1_curves"]["f1"].get(row["name"])
            if not y or row["gt_instances"] == 0:
                continue
            color = _rgb(row["category_id"])
            ax.plot(x, y, color=color, lw=1.3)
            if row["best_threshold"] is not None:
                ax.plot([row["best_threshold"]], [row["best_f1"]], "o", color=color, ms=4)
        ax.axvline(thr, color="0.3", ls="--", lw=0.8)
        _unit_axes(ax, "score threshold", "F1", f"{TYPE_NAMES[t]}, IoU 0.5")
    return _png(fig)


def error_bars(analysis: dict, iou_types: list[str]) -> bytes:
    """TIDE's dAP per error kind (AP points, 0-100), mask and box side by side."""
    kinds = list(KIND_COLORS)
    fig, axes = _figure(len(iou_types), width=3.6)
    for ax, t in zip(axes, iou_types):
        d = analysis[t]["errors"]["dAP"]
        values = [100 * d[k] for k in kinds]
        y = np.arange(len(kinds))[::-1]
        ax.barh(y, values, color=[tuple(v / 255 for v in KIND_COLORS[k]) for k in kinds],
                edgecolor="0.3", lw=0.5)
        ax.set_yticks(y)
        ax.set_yticklabels(kinds, fontsize=7)
        ax.tick_params(labelsize=7)
        ax.set_xlim(0, max(values + [1.0]) * 1.25)
        for yy, v in zip(y, values):
            ax.text(v, yy, f" {v:.1f}", va="center", fontsize=7)
        ax.set_xlabel("AP50 points lost (dAP)", fontsize=8)
        ax.set_title(f"{TYPE_NAMES[t]}: TIDE AP50 {100 * analysis[t]['errors']['ap50']:.1f}",
                     fontsize=9)
    return _png(fig)


def size_plots(metrics: dict, areas: dict[str, np.ndarray], ids: dict[str, int]) -> bytes:
    """Left: AP for small / medium / large objects per IoU type (pycocotools' APs, APm,
    APl; a missing bar = no ground truth of that size). Right: histogram of ground-truth
    instance areas (pixels, log scale) per class, with COCO's 32² and 96² bounds."""
    fig, (ax, hx) = _figure(2, width=3.8)
    types = [t for t in ("segm", "bbox") if t in metrics]
    x = np.arange(3)
    for k, t in enumerate(types):
        vals = [metrics[t][s] for s in ("APs", "APm", "APl")]
        ax.bar(x + (k - (len(types) - 1) / 2) * 0.38, [max(v, 0) for v in vals], 0.36,
               label=TYPE_NAMES[t], color=("0.35", "0.7")[k % 2])
    ax.set_xticks(x)
    ax.set_xticklabels(["small", "medium", "large"], fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_yticks([0, 0.5, 1])
    ax.tick_params(labelsize=7)
    ax.set_title("AP by object size", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    nonempty = [v for v in areas.values() if len(v)]
    top = max([float(np.max(v)) for v in nonempty] + [100 ** 2])
    bins = np.logspace(0, np.log10(top) + 0.05, 30)
    for name, v in areas.items():
        if len(v):
            hx.hist(v, bins=bins, histtype="step", color=_rgb(ids[name]), lw=1.3)
    for b in (32 ** 2, 96 ** 2):
        hx.axvline(b, color="0.3", ls="--", lw=0.8)
    hx.set_xscale("log")
    hx.set_xlabel("instance area (pixels)", fontsize=8)
    hx.set_ylabel("instances", fontsize=8)
    hx.set_title("ground-truth areas per class", fontsize=9)
    hx.tick_params(labelsize=7)
    return _png(fig)


def training_curves(scalars: dict[str, list[tuple[int, float]]]) -> bytes | None:
    """The run's TensorBoard scalars against step: each ``loss/*`` component, the learning
    rate, and the APs of the in-training evaluations (``coco/AP``, ``coco/mask_AP``) and
    of evaluate.py (``segm/AP``, ``bbox/AP``). None when there are none."""
    losses = {k: v for k, v in scalars.items() if k.startswith("loss/")}
    lr = scalars.get("learning_rate")
    aps = {k: v for k, v in scalars.items()
           if k in ("coco/AP", "coco/mask_AP", "segm/AP", "bbox/AP")}
    panels = [p for p in (("losses", losses), ("learning rate", {"lr": lr} if lr else {}),
                          ("AP at evaluations", aps)) if p[1]]
    if not panels:
        return None
    fig, axes = _figure(len(panels), width=4.0, height=2.8)
    for ax, (title, series) in zip(axes, panels):
        for k, (name, pts) in enumerate(sorted(series.items())):
            steps = [s for s, _ in pts]
            vals = [v for _, v in pts]
            ax.plot(steps, vals, marker="o" if len(pts) < 12 else None, ms=3, lw=1.2,
                    label=name.split("/")[-1], color=f"C{k % 10}")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        if title == "losses":
            ax.set_yscale("log")
        ax.legend(fontsize=6, loc="best" if len(series) < 8 else "upper right")
    return _png(fig)


def dataset_plots(per_class: dict[str, dict[str, int]], ids: dict[str, int],
                  areas: dict[str, np.ndarray]) -> bytes:
    """Left: instances per class in each split. Right: histogram of instance areas
    (pixels, log scale) per split."""
    fig, (ax, hx) = _figure(2, width=3.8)
    names = list(per_class)
    x = np.arange(len(names))
    splits = sorted({s for c in per_class.values() for s in c})
    for k, s in enumerate(splits):
        ax.bar(x + (k - (len(splits) - 1) / 2) * 0.38, [per_class[n].get(s, 0) for n in names],
               0.36, label=s, color=("0.35", "0.7", "0.5")[k % 3])
    ax.set_xticks(x)
    ax.set_xticklabels(names, fontsize=7, rotation=30 if len(names) > 4 else 0)
    ax.tick_params(labelsize=7)
    ax.set_title("instances per class", fontsize=9)
    ax.legend(fontsize=7)
    nonempty = [v for v in areas.values() if len(v)]
    if nonempty:
        top = max(float(np.max(v)) for v in nonempty)
        bins = np.logspace(0, np.log10(max(top, 100.0)) + 0.05, 30)
        for k, (s, v) in enumerate(areas.items()):
            hx.hist(v, bins=bins, histtype="step", lw=1.3, label=s, color=f"C{k}")
        hx.set_xscale("log")
        hx.legend(fontsize=7)
    hx.set_xlabel("instance area (pixels)", fontsize=8)
    hx.set_title("instance sizes per split", fontsize=9)
    hx.tick_params(labelsize=7)
    return _png(fig)
