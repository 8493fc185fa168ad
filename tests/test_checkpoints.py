"""modeling/checkpoints.py: registry download + cache + sha256, and partial restore."""
import hashlib
import http.server
import io
import re
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.modeling import checkpoints as ck


class Tiny(tf_keras.Model):
    """backbone / decoder / class head, named like Model Garden's Mask R-CNN parts."""

    def __init__(self, num_classes, width=4):
        super().__init__()
        self.backbone = tf_keras.Sequential([tf_keras.layers.Dense(width, name="conv1")])
        self.decoder = tf_keras.layers.Dense(3, name="fpn")
        self.head = tf_keras.layers.Dense(num_classes, name="detection-scores")
        self(tf.zeros([1, 2]))

    def call(self, x):
        return self.head(self.decoder(self.backbone(x)))


def _save(obj_kwargs, prefix):
    return tf.train.Checkpoint(**obj_kwargs).write(str(prefix))


def test_restore_skips_exactly_the_class_dependent_layer(tmp_path, capsys):
    src = Tiny(num_classes=3)
    path = _save({"model": src, "optimizer_step": tf.Variable(3)}, tmp_path / "ckpt")
    dst = Tiny(num_classes=5)
    before = dst.head.kernel.numpy().copy()
    report = ck.restore_partial(dst, path)
    np.testing.assert_array_equal(dst.backbone.layers[0].kernel.numpy(),
                                  src.backbone.layers[0].kernel.numpy())
    np.testing.assert_array_equal(dst.decoder.kernel.numpy(), src.decoder.kernel.numpy())
    np.testing.assert_array_equal(dst.head.kernel.numpy(), before)  # untouched
    assert len(report.restored) == 4  # backbone and decoder kernels + biases
    mismatch = {name for name, *_ in report.shape_mismatch}
    assert mismatch == {"model/head/kernel", "model/head/bias"}
    out = capsys.readouterr().out
    assert "4 variables restored, 2 re-initialized" in out
    assert "model/head/kernel  (class-dependent, shape [3, 3] in checkpoint vs [3, 5]" in out


def test_backbone_only_checkpoint(tmp_path):
    src = Tiny(num_classes=3)
    path = _save({"backbone": src.backbone}, tmp_path / "bb")
    dst = Tiny(num_classes=3)
    report = ck.restore_partial(dst, path, verbose=False)
    assert {n for n, *_ in report.restored} == {"backbone/layer_with_weights-0/kernel",
                                                "backbone/layer_with_weights-0/bias"}
    np.testing.assert_array_equal(dst.backbone.layers[0].kernel.numpy(),
                                  src.backbone.layers[0].kernel.numpy())
    assert len(report.not_in_checkpoint) == 4  # decoder and head variables


def test_checkpoint_that_restores_nothing_is_an_error(tmp_path):
    other = tf_keras.Sequential([tf_keras.layers.Dense(2)])
    other(tf.zeros([1, 2]))
    path = _save({"net": other}, tmp_path / "other")
    with pytest.raises(UserError, match="restores nothing"):
        ck.restore_partial(Tiny(3), path, verbose=False)


def test_local_path_forms(tmp_path):
    path = _save({"model": Tiny(3)}, tmp_path / "run" / "ckpt-7")
    assert ck.resolve_checkpoint(path) == Path(path)
    assert ck.resolve_checkpoint(path + ".index") == Path(path)
    assert ck.resolve_checkpoint(tmp_path / "run") == Path(path)
    with pytest.raises(UserError, match="known names"):
        ck.resolve_checkpoint("no_such_checkpoint")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no TensorFlow checkpoint"):
        ck.resolve_checkpoint(tmp_path / "empty")


def _archive(tmp_path, prefix: str | None = None) -> bytes:
    """A .tar.gz of checkpoint ``prefix``'s folder under ``mymodel/`` (default: a new
    checkpoint of ``Tiny(3)``)."""
    prefix = prefix or _save({"model": Tiny(3)}, tmp_path / "src" / "ckpt-1")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for f in Path(prefix).parent.iterdir():
            tar.add(f, arcname=f"mymodel/{f.name}")
    return buf.getvalue()


class _Server:
    """A real HTTP server on 127.0.0.1 serving one payload, optionally cut short."""

    def __init__(self, payload: bytes, truncate: bool = False):
        outer = self
        self.hits = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload[: len(payload) // 2] if truncate else payload)
                self.wfile.flush()
                if truncate:
                    self.close_connection = True

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/mymodel.tar.gz"

    def __exit__(self, *a):
        self.httpd.shutdown()
        self.httpd.server_close()


def _spec(url, sha=None, name="test_ckpt"):
    spec = ck.CheckpointSpec(name=name, url=url, architecture="tiny", trained_on="nothing",
                             restores="all", sha256={"mymodel.tar.gz": sha} if sha else {})
    ck.register(spec)
    return spec


def test_download_verify_and_cache_over_http(tmp_path):
    payload = _archive(tmp_path)
    cache = tmp_path / "cache"
    with _Server(payload) as url:
        _spec(url, hashlib.sha256(payload).hexdigest())
        prefix = ck.resolve_checkpoint("test_ckpt", cache, progress=False)
        assert prefix.name == "ckpt-1" and Path(str(prefix) + ".index").is_file()
    # Cached: the server is gone and it still resolves, to the same files.
    assert ck.resolve_checkpoint("test_ckpt", cache, progress=False) == prefix
    report = ck.restore_partial(Tiny(3), prefix, verbose=False)
    assert len(report.restored) == 6 and not report.shape_mismatch


def test_wrong_sha256_is_refused_and_nothing_cached(tmp_path):
    payload = _archive(tmp_path)
    cache = tmp_path / "cache"
    with _Server(payload) as url:
        _spec(url, "0" * 64, name="bad_sha")
        with pytest.raises(UserError, match="sha256"):
            ck.resolve_checkpoint("bad_sha", cache, progress=False)
    assert [p.name for p in cache.iterdir()] == []


def test_interrupted_download_leaves_no_cache_entry(tmp_path):
    payload = _archive(tmp_path)
    cache = tmp_path / "cache"
    with _Server(payload, truncate=True) as url:
        _spec(url, name="cut")
        with pytest.raises(UserError, match="broke off|stopped at"):
            ck.resolve_checkpoint("cut", cache, progress=False)
    assert [p.name for p in cache.iterdir()] == []


def test_file_url_prefix_files_and_first_use_digest(tmp_path, capsys):
    prefix = _save({"model": Tiny(3)}, tmp_path / "src" / "ckpt-2")
    spec = ck.CheckpointSpec(name="file_ckpt", url=Path(prefix).as_uri(),
                             files=(".index", ".data-00000-of-00001"), architecture="tiny",
                             trained_on="nothing", restores="all")
    ck.register(spec)
    cache = tmp_path / "cache"
    got = ck.resolve_checkpoint("file_ckpt", cache, progress=False)
    assert got.name == "ckpt-2"
    assert "no pinned sha256" in capsys.readouterr().out
    manifest = (cache / "sha256.json").read_text()
    assert "file_ckpt/ckpt-2.index" in manifest


def test_offline_error_says_where_to_put_the_file(tmp_path):
    _spec("http://127.0.0.1:9/never.tar.gz", name="offline")
    with pytest.raises(UserError, match="put the file"):
        ck.resolve_checkpoint("offline", tmp_path / "cache", progress=False)


def test_first_download_digest_is_trusted_and_later_downloads_must_match(tmp_path):
    cache = tmp_path / "cache"
    with _Server(_archive(tmp_path / "a")) as url:
        _spec(url, name="tofu")
        ck.resolve_checkpoint("tofu", cache, progress=False)
    assert "tofu/mymodel.tar.gz" in (cache / "sha256.json").read_text()
    import shutil
    shutil.rmtree(cache / "tofu")  # cache cleared; upstream now serves other bytes
    with _Server(_archive(tmp_path / "b")) as url:
        _spec(url, name="tofu")
        with pytest.raises(UserError, match="sha256"):
            ck.resolve_checkpoint("tofu", cache, progress=False)
    assert not (cache / "tofu").exists()


def test_one_prefix_resolver_for_model_restore(tmp_path):
    """find_checkpoint: the run dir's latest, a prefix or its .index; before training it
    says to train first (naming the config), and a wrong --checkpoint lists what exists."""
    from types import SimpleNamespace

    from maskrcnn_toolkit.modeling.model import find_checkpoint
    run = SimpleNamespace(run_dir=tmp_path / "run", config_path=tmp_path / "parts.yaml")
    fresh = SimpleNamespace(run_dir=tmp_path / "fresh", config_path=tmp_path / "parts.yaml")
    # Before training, the run dir may not even exist yet: it is the run dir, not a typo.
    with pytest.raises(UserError) as e:
        find_checkpoint(fresh)
    assert str(e.value) == (f"no checkpoint in {str(tmp_path / 'fresh')!r} yet: train first "
                            f"with `python train.py --config {tmp_path / 'parts.yaml'}`")
    with pytest.raises(UserError, match="train first"):
        find_checkpoint(fresh, tmp_path / "fresh" / "ckpt-10")
    _save({"model": Tiny(3)}, tmp_path / "run" / "ckpt-4")
    path = _save({"model": Tiny(3)}, tmp_path / "run" / "ckpt-12")
    assert find_checkpoint(run) == path == find_checkpoint(run, path + ".index")
    assert find_checkpoint(run, tmp_path / "run") == path
    assert find_checkpoint(run, tmp_path / "run" / "ckpt-4").endswith("ckpt-4")
    with pytest.raises(UserError) as e:
        find_checkpoint(run, tmp_path / "run" / "ckpt-5")
    assert "ckpt-5' not found" in str(e.value) and "holds ckpt-4, ckpt-12" in str(e.value)
    # A wrong folder: the run dir's checkpoints are listed instead.
    with pytest.raises(UserError, match=r"the run dir .* holds ckpt-4, ckpt-12"):
        find_checkpoint(run, tmp_path / "nothing" / "ckpt-1")


@pytest.mark.slow
def test_real_mask_rcnn_into_a_label_map_with_more_classes(tiny_run, tmp_path):
    """tiny_run's checkpoint (2 classes) into the same Model Garden Mask R-CNN built for 4
    classes: exactly the class-dependent kernels and biases start fresh."""
    import shutil

    from maskrcnn_toolkit.core.label_map import LabelMap, write_label_map
    from maskrcnn_toolkit.modeling.config import load_run
    from maskrcnn_toolkit.modeling.model import build_model
    data = tmp_path / "data"
    shutil.copytree(tiny_run.data_dir, data)
    write_label_map(data / "label_map.pbtxt",
                    LabelMap.from_names(["box", "disc", "ring", "star"]))
    run = load_run(tiny_run.config_path, {"data": str(data), "run_dir": str(tmp_path / "r")})
    assert run.experiment.task.model.num_classes == 5
    model = build_model(run)
    fresh = {id(v): v.numpy().copy() for v in model.variables}
    report = ck.restore_partial(model, tiny_run.run_dir, verbose=False)

    mismatched = {var_name.split("/")[-2] + "/" + var_name.split("/")[-1].split(":")[0]
                  for *_, var_name in report.shape_mismatch}
    assert mismatched == {f"{layer}/{w}" for layer in ("detection-scores", "detection-boxes",
                                                       "mask-logits")
                          for w in ("kernel", "bias")}
    assert not report.not_in_checkpoint
    assert len(report.restored) + len(report.shape_mismatch) == len(model.variables)
    reader = tf.train.load_checkpoint(report.checkpoint)
    keys = {k: s for k, s in reader.get_variable_to_shape_map().items()
            if k.endswith("VARIABLE_VALUE") and "OPTIMIZER_SLOT" not in k}
    for v in model.variables:
        if any(c in v.name for c in ck.CLASS_DEPENDENT):
            np.testing.assert_array_equal(v.numpy(), fresh[id(v)])  # left as initialized
        else:
            # Restored: equal to a checkpoint tensor of its shape (ties of identical
            # initial values, e.g. BN betas at 0, make this a weak check; the report's
            # count above is the strict one).
            same = [k for k, s in keys.items() if s == v.shape.as_list()]
            assert any(np.array_equal(v.numpy(), reader.get_tensor(k)) for k in same), v.name


def test_state_file_is_read_as_tensorflow_reads_it(tmp_path):
    """checkpoint_prefix reads CheckpointManager's `checkpoint` state file without
    TensorFlow (so commands check checkpoints before importing it): the same prefix as
    tf.train.latest_checkpoint, also in a folder with a non-ASCII name and after the
    latest was deleted (then: the newest that is left, by step, not by string order)."""
    import tensorflow as tf

    from maskrcnn_toolkit.modeling.checkpoints import checkpoint_prefix
    folder = tmp_path / "läufe run"
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=Tiny(3)), str(folder),
                                         max_to_keep=None)
    for step in (4, 12, 9):
        manager.save(checkpoint_number=step)
    assert str(checkpoint_prefix(folder)) == tf.train.latest_checkpoint(str(folder))
    assert checkpoint_prefix(folder).name == "ckpt-9"  # the state file's, not the largest
    for f in folder.glob("ckpt-9.*"):
        f.unlink()
    assert checkpoint_prefix(folder).name == "ckpt-12"


def _model_garden_spinenet49mobile_retinanet(size: int):
    """Model Garden's own RetinaNet (its ``retinanet_mobile_coco`` experiment: Mobile
    SpineNet-49, identity decoder, levels 3-7, the layout of the published
    ``spinenet49mobile.tar.gz``), built by its RetinaNet task at ``size`` px, every variable
    shifted off its initial value so that a restored value cannot be a fresh one by chance."""
    from official.core import exp_factory, task_factory
    from official.vision import registry_imports  # noqa: F401
    exp = exp_factory.get_exp_config("retinanet_mobile_coco")
    exp.override({"task": {"model": {"input_size": [size, size, 3]}}}, is_strict=True)
    model = task_factory.get_task(exp.task).build_model()
    model(tf.zeros([1, size, size, 3]), training=True)  # creates the head's variables
    rng = np.random.default_rng(0)
    for v in model.variables:
        v.assign(v + rng.uniform(0.01, 0.05, v.shape.as_list()).astype(v.dtype.as_numpy_dtype))
    return model


@pytest.mark.slow
def test_spinenet49_mobile_preset_starts_from_the_retinanet_registry_checkpoint(
        tmp_path, monkeypatch, capsys):
    """The CPU-sized pretrained route: a RetinaNet checkpoint of the published layout
    (Model Garden's trainer: global_step, model, optimizer and the model's checkpoint_items
    at the root), served as a .tar.gz over HTTP under the registry name, initializes the
    spinenet49_mobile preset's backbone exactly; everything else starts fresh; Model
    Garden's own MaskRCNNTask.initialize loads it with pipeline.yaml's modules; 2 steps
    train."""
    import dataclasses

    import tf_keras
    from official.core import task_factory

    from maskrcnn_toolkit.modeling.config import load_run
    from maskrcnn_toolkit.modeling.training import Trainer
    from tests.fixtures.model import make_tiny_dataset

    name, size = "retinanet_spinenet49mobile_coco", 128
    retinanet = _model_garden_spinenet49mobile_retinanet(size)
    optimizer = tf_keras.optimizers.SGD(momentum=0.9)
    optimizer.build(retinanet.trainable_variables)  # momentum slots, as a trainer's hold
    prefix = tf.train.Checkpoint(
        global_step=tf.Variable(277200, dtype=tf.int64), model=retinanet, optimizer=optimizer,
        **retinanet.checkpoint_items).save(str(tmp_path / "published" / "ckpt"))
    assert {"backbone", "head"} <= set(retinanet.checkpoint_items)  # no decoder: identity

    data = make_tiny_dataset(tmp_path / "data", num_train=2, num_val=1, size=size)
    cfg = tmp_path / "sn.yaml"
    cfg.write_text(f"data: {data}\nrun_dir: run\nmodel:\n  preset: spinenet49_mobile\n"
                   f"  image_size: {size}\n  init_checkpoint: {name}\ntrain:\n  batch_size: 2\n"
                   f"  steps: 2\n  warmup_steps: 1\n  log_every: 1\n")
    monkeypatch.setenv("MASKRCNN_TOOLKIT_CACHE", str(tmp_path / "cache"))
    with _Server(_archive(tmp_path, prefix)) as url:
        monkeypatch.setitem(ck.REGISTRY, name, dataclasses.replace(ck.REGISTRY[name], url=url))
        run = load_run(cfg)
        assert run.experiment.task.init_checkpoint == ""  # not downloaded yet
        trainer = Trainer(run)
        fresh = [v.numpy().copy() for v in trainer.model.variables]
        assert trainer.restore_or_initialize() == 0  # downloads, then restores by name+shape
    out = capsys.readouterr().out
    assert "no pinned sha256" in out  # trust on first use

    model = trainer.model
    backbone = {v.ref() for v in model.backbone.variables}
    ours, theirs = model.backbone.variables, retinanet.backbone.variables
    assert len(ours) == len(theirs) > 100
    for a, b in zip(ours, theirs):  # same architecture, same creation order
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)
    for v, before in zip(model.variables, fresh):
        if v.ref() not in backbone:  # RPN, box and mask heads: left as initialized
            np.testing.assert_array_equal(v.numpy(), before, err_msg=v.name)
    assert any(c in v.name for v in model.variables if v.ref() not in backbone
               for c in ck.CLASS_DEPENDENT)
    assert f"{len(ours)} variables restored" in out
    assert re.search(rf"restored +backbone +{len(ours)} variables", out)  # one line

    # pipeline.yaml now names the cached checkpoint with the module Model Garden can load,
    # and Model Garden's own MaskRCNNTask.initialize does load it into this model.
    t = run.experiment.task
    assert t.init_checkpoint == str(ck.cached_checkpoint(name)) and t.init_checkpoint != ""
    assert t.init_checkpoint_modules == "backbone"
    for v in ours:
        v.assign(tf.zeros_like(v))
    task_factory.get_task(t).initialize(model)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)

    summary = trainer.fit(evaluate_at_end=False, progress=False)
    assert summary.end_step == 2 and (run.run_dir / "ckpt-2.index").is_file()
