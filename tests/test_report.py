"""report.html: evaluate.py writes it beside metrics.json with metrics.json's numbers, and
it renders in a real browser (headless Chromium) with every picture loaded."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from maskrcnn_toolkit.modeling import scoring
from maskrcnn_toolkit.modeling.eval_outputs import write_outputs
from maskrcnn_toolkit.modeling.report import report_path
from tests.test_evaluation import dataset, det, gt_ann, square

ROOT = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(ROOT / "evaluate.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture()
def scene(tmp_path):
    """Two classes, four images with pictures on disk: a hit, a swapped class, a miss, a
    detection of nothing."""
    from PIL import Image
    gt = dataset(4, [gt_ann(1, 1, 1, square(10, 10)), gt_ann(2, 2, 2, square(30, 30)),
                     gt_ann(3, 3, 1, square(50, 20))], cats=("bolt", "nut"))
    dets = [det(1, 1, square(10, 10), 0.9), det(2, 1, square(30, 30), 0.8),
            det(4, 2, square(5, 50), 0.7)]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dets))
    pics = tmp_path / "pics"
    pics.mkdir()
    rng = np.random.default_rng(0)
    for im in gt["images"]:
        Image.fromarray(rng.integers(60, 200, (im["height"], im["width"], 3), np.uint8)).save(
            pics / im["file_name"])
    return tmp_path


def test_report_path_beside_metrics():
    assert report_path("out/metrics.json") == Path("out/report.html")
    assert report_path("out/dt.metrics.json") == Path("out/dt.report.html")
    assert report_path("out/m.json") == Path("out/m.report.html")


def test_cli_writes_report_with_the_numbers_of_metrics_json(scene):
    p = run_cli("--gt", scene / "gt.json", "--detections", scene / "dt.json",
                "--images", scene / "pics")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert lines[-1].startswith("scored ")
    assert lines[-2] == f"report: {scene / 'dt.report.html'} (open it in a browser)"
    m = json.loads((scene / "dt.metrics.json").read_text())
    a = m["analysis"]
    assert (a["score_threshold"], a["iou_threshold"]) == (0.5, 0.5)
    assert a["segm"]["confusion"]["counts"] == [[1, 0, 1], [1, 0, 0], [0, 1, 0]]
    text = (scene / "dt.report.html").read_text()
    for section in ("summary", "per-class", "curves", "confusion", "errors", "galleries",
                    "size"):
        assert f"id={section}>" in text
    assert "http://" not in text and "https://" not in text  # nothing to fetch
    # the numbers shown are metrics.json's
    assert f"<td>{m['segm']['AP']:.3f}</td>" in text
    bolt = a["segm"]["per_class"][0]
    assert f"<td>{bolt['precision']:.3f}</td><td>{bolt['recall']:.3f}</td>" in text
    # bolt: img 2 (a nut taken for a bolt), img 3 (a missed bolt); nut: img 2 (the nut
    # missed), img 4 (a nut detected on nothing)
    assert re.findall(r'<img class="" alt="image (\d+)"', text) == ["2", "3", "2", "4"]


def test_cli_without_images_says_why_and_no_report_writes_none(scene):
    p = run_cli("--gt", scene / "gt.json", "--detections", scene / "dt.json", "--out",
                scene / "m.json", "--iou-type", "bbox")
    assert p.returncode == 0, p.stderr
    text = (scene / "m.report.html").read_text()
    assert "no --images folder was given" in text
    assert "bbox" in json.loads((scene / "m.json").read_text())["analysis"]
    # an existing report is refused like an existing metrics file
    p = run_cli("--gt", scene / "gt.json", "--detections", scene / "dt.json", "--out",
                scene / "m2.json")
    assert p.returncode == 0
    (scene / "m2.json").unlink()
    p = run_cli("--gt", scene / "gt.json", "--detections", scene / "dt.json", "--out",
                scene / "m2.json")
    assert p.returncode == 2 and "m2.report.html" in p.stderr
    p = run_cli("--gt", scene / "gt.json", "--detections", scene / "dt.json", "--out",
                scene / "m3.json", "--no-report")
    assert p.returncode == 0, p.stderr
    assert "analysis" not in json.loads((scene / "m3.json").read_text())
    assert not (scene / "m3.report.html").exists()
    assert "report:" not in p.stdout


def test_write_outputs_writes_report_and_removes_a_stale_one(tmp_path):
    report = scoring.EvalReport({}, [], "x", {})
    write_outputs(tmp_path, "[]", report, [], "<html>r</html>")
    assert (tmp_path / "report.html").read_text() == "<html>r</html>"
    write_outputs(tmp_path, "[]", report, [])
    assert not (tmp_path / "report.html").exists()


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    message = ("no headless browser (chromium) installed: the report's rendering check "
               "is skipped; install it with `apt-get install chromium` (.ci/run does)")
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _chromium(browser: str, tmp_path: Path, *args) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    return subprocess.run([browser, *flags, *args], capture_output=True, text=True,
                          timeout=120)


def test_report_renders_in_a_browser_with_every_picture(scene, tmp_path):
    browser = _browser()
    p = run_cli("--gt", scene / "gt.json", "--detections", scene / "dt.json",
                "--images", scene / "pics")
    assert p.returncode == 0, p.stderr
    page = scene / "dt.report.html"
    # A copy with a probe: after load, each picture's state goes into the DOM.
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace("</body>", (
        "<script>window.addEventListener('load',()=>{document.body.setAttribute("
        "'data-images',JSON.stringify([...document.images].map(i=>i.complete&&"
        "i.naturalWidth>0)))});</script></body>")))
    dom = _chromium(browser, tmp_path, "--virtual-time-budget=10000", "--dump-dom",
                    probe.as_uri())
    found = re.search(r'data-images="([^"]*)"', dom.stdout)
    assert found, dom.stderr[-2000:]
    loaded = json.loads(found.group(1).replace("&quot;", '"'))
    # 3 plots (PR, F1, areas) + 4 gallery pictures, every one decoded
    assert len(loaded) == page.read_text().count("<img ") == 7 and all(loaded), loaded
    shot = tmp_path / "shot.png"
    _chromium(browser, tmp_path, f"--screenshot={shot}", "--window-size=1200,2400",
              page.as_uri())
    from PIL import Image
    pixels = np.asarray(Image.open(shot).convert("L"), np.float64)
    assert pixels.shape == (2400, 1200)
    assert pixels.std() > 20 and (pixels < 128).mean() > 0.01  # not a blank page
