"""The report's plots, drawn with matplotlib's Agg backend into PNG bytes (no pyplot, no
window, no global state). Every function takes plain data (lists, arrays, the dicts of
metrics.json) and returns the PNG of one figure; class colors are core.draw's, so a class
has the same color in the plots and in the gallery pictures.

Drawing costs time that the evaluation's benchmark counts (docs/benchmarks.md): figures
are small, margins and ticks fixed, legends left to the HTML where a class-color key is
shown once. :class:`PlotWorker` imports matplotlib (~0.6 s) and draws in a second process
while the first one scores.
"""
from __future__ import annotations

import io
import multiprocessing
import signal
from typing import Callable

import numpy as np

from maskrcnn_toolkit.core.draw import class_color

KIND_COLORS = {  # error kinds, as the galleries mark them (RGB 0-255)
    "classification": (255, 140, 0), "localisation": (255, 220, 0), "both": (160, 32, 240),
    "duplicate": (0, 200, 255), "background": (255, 0, 0), "missed": (255, 0, 200)}
TYPE_NAMES = {"segm": "mask", "bbox": "box"}


def _figure(n_panels: int, width: float = 3.4, height: float = 2.7, left: float = 0.6):
    """A figure of ``n_panels`` side by side, with fixed margins (inches; tight_layout
    would draw every figure twice)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width * n_panels, height), dpi=80)
    FigureCanvasAgg(fig)  # Agg, whatever backend the environment selects
    w = width * n_panels
    fig.subplots_adjust(left=left / w, right=1 - 0.15 / w, bottom=0.5 / height,
                        top=1 - 0.3 / height, wspace=(left + 0.15) / (width - left - 0.15))
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    return fig, list(axes)


def _png(fig) -> bytes:
    buf = io.BytesIO()
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
    """Precision against recall per class, one panel per IoU type: IoU 0.5 solid, 0.75
    dashed. ``curves``: {iou_type: error_analysis.Details.curves[iou_type]}; a class
    without ground truth (precision -1) has no line."""
    fig, axes = _figure(len(curves))
    for ax, (t, c) in zip(axes, curves.items()):
        for k, style in ((0, "-"), (1, "--")):
            for j, cid in enumerate(c["category_ids"]):
                p = c["precision"][k, :, j]
                if (p >= 0).any():
                    ax.plot(c["recall"], np.maximum(p, 0), style, color=_rgb(cid), lw=1.2)
        _unit_axes(ax, "recall", "precision", f"{TYPE_NAMES[t]}: IoU 0.5 (solid), 0.75 (dashed)")
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


def _log_area_axis(ax, top: float) -> None:
    """An x axis of log10(area) labelled in pixels (a log-scale axis costs several times
    more to draw)."""
    ticks = list(range(0, int(np.ceil(np.log10(max(top, 10.0)))) + 1))
    ax.set_xticks(ticks)
    ax.set_xticklabels([("1", "10", "100", "1k", "10k", "100k", "1M", "10M")[t]
                        if t < 8 else f"1e{t}" for t in ticks])
    ax.set_xlabel("instance area (pixels)", fontsize=8)
    ax.tick_params(labelsize=7)


def _log_histograms(ax, series: dict[str, np.ndarray], colors: dict[str, tuple]) -> None:
    nonempty = [v for v in series.values() if len(v)]
    top = max([float(np.max(v)) for v in nonempty] + [100.0 ** 2])
    edges = np.linspace(0, np.log10(top) + 0.05, 31)
    for name, v in series.items():
        if len(v):
            counts, _ = np.histogram(np.log10(np.maximum(v, 1.0)), edges)
            ax.stairs(counts, edges, color=colors[name], lw=1.3)
    _log_area_axis(ax, top)


def area_histogram(areas: dict[str, np.ndarray], ids: dict[str, int]) -> bytes:
    """Histogram of ground-truth instance areas (pixels, log scale) per class, with COCO's
    32² and 96² bounds dashed."""
    fig, (ax,) = _figure(1, width=5.0)
    _log_histograms(ax, areas, {n: _rgb(ids[n]) for n in areas})
    for b in (32 ** 2, 96 ** 2):
        ax.axvline(np.log10(b), color="0.3", ls="--", lw=0.8)
    ax.set_ylabel("instances", fontsize=8)
    ax.set_title("ground-truth areas per class (dashed: COCO's small | medium | large)",
                 fontsize=9)
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
                    label=name.split("/")[-1] if title == "losses" else name,
                    color=f"C{k % 10}")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        if title == "losses":
            ax.set_yscale("log")
        ax.legend(fontsize=6, loc="upper right")  # "best" costs a search per plot
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
    if any(len(v) for v in areas.values()):
        _log_histograms(hx, areas, {s: f"C{k}" for k, s in enumerate(areas)})
        hx.legend(list(areas), fontsize=7)
    hx.set_title("instance sizes per split", fontsize=9)
    hx.tick_params(labelsize=7)
    return _png(fig)


# ----------------------------------------------------------------------------- worker

def _serve(conn, parent_end) -> None:
    """The worker process: import matplotlib, then draw each batch of jobs it is sent
    until the pipe closes. Ctrl-C is the parent's to handle: the worker ends with the
    pipe."""
    parent_end.close()  # a forked copy of the parent's end would keep the pipe open
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    import matplotlib.backends.backend_agg  # noqa: F401  (the slow part, done early)
    import matplotlib.figure  # noqa: F401
    while True:
        try:
            jobs = conn.recv()
        except (EOFError, OSError):
            return
        try:
            conn.send({k: globals()[name](*args) for k, (name, args) in jobs.items()})
        except Exception as e:  # the parent draws in process and so raises it itself
            conn.send(e)


class PlotWorker:
    """A second process that has matplotlib imported by the time the plots are wanted
    (``evaluate.py --gt`` starts it first and scores meanwhile, on the other core).

    ``submit({key: (function name in this module, args)})`` sends a batch;
    ``collect()`` returns {key: PNG bytes}. If the worker cannot be started, dies, or a job
    fails there, the jobs are drawn in this process instead (same functions, same bytes).
    Only for processes without threads that fork would break (no TensorFlow)."""

    def __init__(self):
        self._jobs = None
        try:
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            self._conn, child = ctx.Pipe()
            self._proc = ctx.Process(target=_serve, args=(child, self._conn), daemon=True)
            self._proc.start()
            child.close()
        except OSError:
            self._proc = None

    def submit(self, jobs: dict) -> None:
        self._jobs = jobs
        if self._proc is not None:
            try:
                self._conn.send(jobs)
            except (OSError, ValueError):
                self.close()

    def collect(self) -> dict:
        out = None
        if self._proc is not None:
            try:
                out = self._conn.recv()
            except (EOFError, OSError):
                out = None
        if not isinstance(out, dict):
            out = draw(self._jobs)
        return out

    def close(self) -> None:
        if self._proc is not None:
            self._conn.close()
            self._proc.join(timeout=5)
            if self._proc.is_alive():
                self._proc.terminate()
            self._proc = None


def draw(jobs: dict) -> dict:
    """{key: PNG bytes} of {key: (function name in this module, args)}, in this process."""
    return {k: globals()[name](*args) for k, (name, args) in jobs.items()}


def plotter(worker: PlotWorker | None) -> Callable[[dict], Callable[[], dict]]:
    """``submit(jobs) -> collect()``: through ``worker`` when given, else in process."""
    def submit(jobs: dict) -> Callable[[], dict]:
        if worker is None:
            return lambda: draw(jobs)
        worker.submit(jobs)
        return worker.collect
    return submit
