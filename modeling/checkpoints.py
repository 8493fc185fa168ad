"""Initial checkpoints: a registry of known public ones, download + cache + sha256 (trust
on first use, see :class:`CheckpointSpec`), and a partial restore that matches variables by
name and shape (docs/DESIGN_NOTES.md, decision 5).

Fine-tuning a Mask R-CNN trained on COCO for your 3 classes means: restore everything whose
path in the checkpoint and shape match this model, re-initialize what does not (the
class-dependent layers: ``detection-scores``, ``detection-boxes`` unless class-agnostic,
``mask-logits``), and say which is which. A checkpoint that restores nothing is an error:
it is the wrong architecture, and training from scratch by accident wastes hours.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from maskrcnn_toolkit.core.atomic import atomic_write, discard
from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.core.label_map import unescape_text_format

CACHE_ENV = "MASKRCNN_TOOLKIT_CACHE"


@dataclass(frozen=True)
class CheckpointSpec:
    """A known public checkpoint.

    url: one file (a .tar.gz archive holding a TF checkpoint) or, for an unpacked TF
      checkpoint, the prefix URL whose ``.index`` and ``.data-00000-of-00001`` files are
      fetched (``files``).
    sha256: hex digest per downloaded file name. An entry with a pinned digest is verified
      from its first download. No shipped entry has one yet (they could not be computed
      offline when the registry was written): for those the check is trust on first use,
      the first download's digest is printed and recorded in the cache's ``sha256.json``,
      and every later download (e.g. after the cache folder was deleted) must match it
      (docs/train.md, "The checkpoint registry").
    restores: what it can initialize in our Mask R-CNN: "all" (a Mask R-CNN of the same
      architecture), "backbone+decoder" (a COCO detector), "backbone" (ImageNet, or a COCO
      detector without a decoder).
    """

    name: str
    url: str
    architecture: str
    trained_on: str
    restores: str
    files: tuple[str, ...] = ()
    sha256: dict = field(default_factory=dict)
    description: str = ""


_GCS = "https://storage.googleapis.com"
REGISTRY: dict[str, CheckpointSpec] = {}


def register(spec: CheckpointSpec) -> None:
    """Add (or replace) a registry entry; tests and users with private mirrors use this."""
    REGISTRY[spec.name] = spec


for _spec in (
    CheckpointSpec(
        name="retinanet_resnet50fpn_coco",
        url=f"{_GCS}/tf_model_garden/vision/retinanet/retinanet-resnet50fpn.tar.gz",
        architecture="resnet50 + fpn", trained_on="COCO 2017 detection (RetinaNet, 36.8 box AP)",
        restores="backbone+decoder",
        description="Model Garden's COCO RetinaNet R50-FPN: backbone and FPN for an R50-FPN "
                    "Mask R-CNN (the heads start fresh)."),
    CheckpointSpec(
        name="retinanet_spinenet49mobile_coco",
        url=f"{_GCS}/tf_model_garden/vision/retinanet/spinenet49mobile.tar.gz",
        architecture="spinenet49 mobile (no decoder)",
        trained_on="COCO 2017 detection (RetinaNet, 384 px, 28.1 box AP)",
        restores="backbone",
        description="Model Garden's COCO RetinaNet with the Mobile SpineNet-49 backbone (2.3 M "
                    "parameters): backbone of the spinenet49_mobile preset, a pretrained start "
                    "sized for a CPU. Its decoder is the identity, so only the backbone "
                    "restores; the heads start fresh."),
    CheckpointSpec(
        name="resnet50_imagenet",
        url=f"{_GCS}/cloud-tpu-checkpoints/vision-2.0/resnet50_imagenet/ckpt-28080",
        files=(".index", ".data-00000-of-00001"),
        architecture="resnet50", trained_on="ImageNet-1k classification",
        restores="backbone",
        description="The ImageNet ResNet-50 that Model Garden's own Mask R-CNN configs start "
                    "from (init_checkpoint_modules: backbone)."),
):
    register(_spec)


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "maskrcnn-toolkit"
                               / "checkpoints"))


def by_step(prefix: str | os.PathLike) -> tuple[int, str]:
    """Sort key for checkpoint prefixes: ``ckpt-12`` after ``ckpt-4`` (a plain string sort
    puts it first); names without a step first."""
    tail = Path(prefix).name.rsplit("-", 1)[-1]
    return (int(tail) if tail.isdigit() else -1, os.fspath(prefix))


def _state_file_latest(folder: Path) -> Path | None:
    """The ``model_checkpoint_path`` of a folder's ``checkpoint`` state file (the text proto
    ``tf.train.CheckpointManager`` writes), when its ``.index`` exists; read without
    TensorFlow, so the commands check checkpoints before paying for its import."""
    try:
        text = (folder / "checkpoint").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    m = re.search(r'^model_checkpoint_path:\s*"((?:[^"\\]|\\.)*)"', text, re.M)
    if not m:
        return None
    prefix = folder / unescape_text_format(m.group(1), str(folder / "checkpoint"))
    return prefix if Path(str(prefix) + ".index").is_file() else None


def checkpoint_prefix(path: str | os.PathLike) -> Path | None:
    """The TF checkpoint prefix for a prefix (``run/ckpt-1000``), its ``.index`` file, or a
    folder (the latest checkpoint of its ``checkpoint`` state file, else the last ``*.index``
    below it, by step); None when there is none. The one prefix resolver (no TensorFlow)."""
    path = Path(path)
    if path.is_dir():
        latest = _state_file_latest(path)
        if latest:
            return latest
        prefixes = sorted((p.with_suffix("") for p in path.rglob("*.index")), key=by_step)
        return prefixes[-1] if prefixes else None
    if path.suffix == ".index" and path.is_file():
        return path.with_suffix("")
    if Path(str(path) + ".index").is_file():
        return path
    return None


def resolve_checkpoint(name_or_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                       progress: bool = True) -> Path:
    """Turn a registry name or a local path into a TF checkpoint prefix on disk.

    A registry name is downloaded once into ``cache_dir`` (default
    ``~/.cache/maskrcnn-toolkit/checkpoints``, or ``$MASKRCNN_TOOLKIT_CACHE``) and its sha256
    checked against the entry's pinned digest or, without one, against the digest recorded
    by the first download (trust on first use); later calls use the cache. A path may be a
    checkpoint prefix, its ``.index`` file, or a folder (its latest checkpoint).
    """
    key = os.fspath(name_or_path)
    if key in REGISTRY:
        return _fetch(REGISTRY[key], Path(cache_dir) if cache_dir else default_cache_dir(),
                      progress)
    path = Path(key).expanduser()
    if path.exists() or Path(key + ".index").exists():
        prefix = checkpoint_prefix(path)
        if prefix is None:
            raise UserError(f"{key!r} holds no TensorFlow checkpoint (no *.index file); give a "
                            f"checkpoint prefix like run/ckpt-1000, or its folder")
        return prefix
    raise UserError(f"checkpoint {key!r} is neither a file nor a known name; known names: "
                    f"{', '.join(sorted(REGISTRY))}")


def cached_checkpoint(name: str, cache_dir: str | os.PathLike | None = None) -> Path | None:
    """The cached prefix of registry entry ``name`` when it was downloaded already, else
    None (never downloads)."""
    if name not in REGISTRY:
        return None
    return checkpoint_prefix(Path(cache_dir or default_cache_dir()) / name)


_MODULES = {"backbone": "backbone", "backbone+decoder": "backbone,decoder"}


def model_garden_init_modules(prefix: str | os.PathLike, num_classes: int,
                              restores: str | None = None) -> str | None:
    """The ``task.init_checkpoint_modules`` with which Model Garden's own trainer
    (``MaskRCNNTask.initialize``) can load ``prefix`` into a model of ``num_classes``
    (background included), or None when it cannot.

    ``restores``: the registry entry's ``restores`` ("backbone", "backbone+decoder",
    "all"), None for a local checkpoint (then the checkpoint's top-level objects decide).
    Model Garden restores modules whole and asserts every existing object matched, so
    "all" is returned only when the checkpoint's class-dependent layers have this model's
    class count; a class-mismatched full checkpoint falls back to "backbone,decoder" when
    it also holds those at its top level (our and Model Garden's trainer checkpoints do),
    else None.
    """
    import tensorflow as tf
    from tensorflow.core.protobuf import trackable_object_graph_pb2
    if restores in _MODULES:
        return _MODULES[restores]
    try:
        reader = tf.train.load_checkpoint(str(prefix))
        graph = trackable_object_graph_pb2.TrackableObjectGraph()
        graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    except (tf.errors.OpError, ValueError) as e:
        raise UserError(f"checkpoint {os.fspath(prefix)!r} cannot be read ({e}); give a "
                        f"complete TensorFlow checkpoint (prefix with .index and .data "
                        f"files)") from None
    top = {r.local_name for r in graph.nodes[0].children}
    if "model" in top:
        # Classifier kernels of the box head: [fc_dims, num_classes].
        classes = {shape[-1] for key, shape in reader.get_variable_to_shape_map().items()
                   if "detection_head" in key and "_classifier/kernel" in key
                   and "OPTIMIZER_SLOT" not in key}
        if classes == {num_classes}:
            return "all"
    if "backbone" in top:
        return "backbone,decoder" if "decoder" in top else "backbone"
    return None


def _manifest_path(cache_dir: Path) -> Path:
    return cache_dir / "sha256.json"


def _load_manifest(cache_dir: Path) -> dict:
    try:
        return json.loads(_manifest_path(cache_dir).read_text())
    except (OSError, ValueError):
        return {}


def _fetch(spec: CheckpointSpec, cache_dir: Path, progress: bool) -> Path:
    target = cache_dir / spec.name
    if target.is_dir():
        prefix = checkpoint_prefix(target)
        if prefix is not None:
            return prefix
    cache_dir.mkdir(parents=True, exist_ok=True)
    urls = ([spec.url + f for f in spec.files] if spec.files else [spec.url])
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}.tmp-", dir=cache_dir))
    try:
        manifest = _load_manifest(cache_dir)
        for url in urls:
            fname = url.rsplit("/", 1)[-1]
            dest = tmp / fname
            digest = _download(url, dest, spec, cache_dir, progress)
            expected = spec.sha256.get(fname) or manifest.get(f"{spec.name}/{fname}")
            if expected and digest != expected:
                raise UserError(
                    f"checkpoint {spec.name!r}: {fname} from {url} has sha256 {digest}, expected "
                    f"{expected}; the download is corrupt or the file changed upstream. Nothing "
                    f"was cached; try again, or put a verified copy at {target / fname}")
            if not expected:
                print(f"note: {spec.name}/{fname} has no pinned sha256; recorded {digest} in "
                      f"{_manifest_path(cache_dir)} (later downloads must match it)")
                manifest[f"{spec.name}/{fname}"] = digest
            if fname.endswith((".tar.gz", ".tgz", ".tar")):
                _extract(dest, tmp, spec)
                dest.unlink()
        prefix = checkpoint_prefix(tmp)
        if prefix is None:
            raise UserError(f"checkpoint {spec.name!r} from {spec.url} holds no *.index file")
        rel = prefix.relative_to(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
        with atomic_write(_manifest_path(cache_dir), "w") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
        return target / rel
    except BaseException:
        discard(tmp)
        raise


def _download(url: str, dest: Path, spec: CheckpointSpec, cache_dir: Path, progress: bool) -> str:
    """Stream ``url`` (http(s):// or file://) into ``dest``, returning its sha256.

    A short read (connection dropped) is an error; the caller removes the partial file.
    """
    from tqdm import tqdm
    try:
        resp = urllib.request.urlopen(url, timeout=60)
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise UserError(
            f"cannot download checkpoint {spec.name!r} from {url} ({reason}). If this machine is "
            f"offline, fetch that URL elsewhere and put the file(s) in "
            f"{cache_dir / spec.name}/ (an archive unpacked there), or pass a local checkpoint "
            f"path instead of the name") from None
    h = hashlib.sha256()
    total = resp.headers.get("Content-Length")
    total = int(total) if total and total.isdigit() else None
    got = 0
    with resp, open(dest, "wb") as f, tqdm(total=total, unit="B", unit_scale=True,
                                         desc=f"download {dest.name}", disable=not progress) as bar:
        try:
            while True:
                chunk = resp.read(1 << 20)
                if not chunk:
                    break
                f.write(chunk)
                h.update(chunk)
                got += len(chunk)
                bar.update(len(chunk))
        except (OSError, urllib.error.URLError, http.client.HTTPException) as e:
            raise UserError(f"download of {url} broke off after {got} bytes ({e}); nothing was "
                            f"cached, run again to retry") from None
    if total is not None and got != total:
        raise UserError(f"download of {url} stopped at {got} of {total} bytes; nothing was "
                        f"cached, run again to retry")
    return h.hexdigest()


def _extract(archive: Path, into: Path, spec: CheckpointSpec) -> None:
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(into, filter="data")
    except (tarfile.TarError, OSError) as e:
        raise UserError(f"checkpoint {spec.name!r}: cannot unpack {archive.name} ({e})") from None


# --------------------------------------------------------------------------- partial restore

# Layers whose shape depends on the number of classes in Model Garden's Mask R-CNN heads
# (official/vision/modeling/heads/instance_heads.py): named in the report.
CLASS_DEPENDENT = ("detection-scores", "detection-boxes", "mask-logits")


@dataclass
class RestoreReport:
    """What a partial restore did.

    restored: (checkpoint object path, shape); shape_mismatch: (path, shape here, shape in
    checkpoint, Keras variable name); not_in_checkpoint: (Keras variable name, shape).
    """

    checkpoint: str
    restored: list = field(default_factory=list)
    shape_mismatch: list = field(default_factory=list)
    not_in_checkpoint: list = field(default_factory=list)
    unused_in_checkpoint: int = 0

    def table(self) -> str:
        lines = [f"initialized from {self.checkpoint}: {len(self.restored)} variables restored, "
                 f"{len(self.shape_mismatch) + len(self.not_in_checkpoint)} re-initialized"]
        groups: dict[tuple[str, str], int] = {}
        for name, *_ in self.restored:
            key = ("restored", _group(name))
            groups[key] = groups.get(key, 0) + 1
        for name, shape, ck, var_name in self.shape_mismatch:
            why = ("class-dependent, shape " if any(c in var_name for c in CLASS_DEPENDENT)
                   else "shape ") + f"{list(ck)} in checkpoint vs {list(shape)} here"
            lines.append(f"  re-initialized  {name}  ({why})")
        for name, *_ in self.not_in_checkpoint:
            key = ("re-initialized (not in checkpoint)", _group(name))
            groups[key] = groups.get(key, 0) + 1
        for (what, grp), n in sorted(groups.items()):
            lines.append(f"  {what:<34} {grp:<40} {n:>5} variables")
        return "\n".join(lines)


def _group(name: str) -> str:
    # Model Garden models keep their parts under a `_config_dict` attribute; the part name
    # (backbone, decoder, rpn_head, detection_head, mask_head) is what a reader wants. A
    # checkpoint's root-level `backbone` / `decoder` is such a part already: one line for
    # it, not one per layer (a SpineNet backbone has ~150 layers with weights).
    parts = [p for p in name.split("/") if p != "_config_dict"]
    if parts[0] in ("backbone", "decoder"):
        return parts[0]
    return "/".join(parts[:2]) if len(parts) > 2 else parts[0]


def restore_partial(model, checkpoint: str | os.PathLike, verbose: bool = True) -> RestoreReport:
    """Assign every variable of ``model`` whose object path and shape match ``checkpoint``.

    The checkpoint may come from Model Garden's trainer or ours (root child ``model``), or be
    a backbone/decoder checkpoint (root children ``backbone`` / ``decoder``, as Model
    Garden's published ImageNet and RetinaNet checkpoints are); paths are matched from there
    through the same attribute names Keras uses to save. Optimizer slots are never read.

    Raises UserError when nothing at all is restored.
    """
    import numpy as np
    import tensorflow as tf
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    prefix = resolve_checkpoint(checkpoint)
    reader = tf.train.load_checkpoint(str(prefix))
    shapes = reader.get_variable_to_shape_map()
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    view = tf.train.TrackableView(model)

    roots = {"model": model}
    for attr in ("backbone", "decoder"):
        if getattr(model, attr, None) is not None:
            roots[attr] = getattr(model, attr)

    report = RestoreReport(str(prefix))
    assigned: set[int] = set()
    mismatched: set[int] = set()
    used_keys: set[str] = set()
    seen: set[tuple[int, int]] = set()

    def children(obj):
        try:
            return view.children(obj)
        except Exception:  # not trackable (plain python values)
            return {}

    def walk(node_id: int, obj, path: str):
        if (node_id, id(obj)) in seen:
            return
        seen.add((node_id, id(obj)))
        node = graph.nodes[node_id]
        if isinstance(obj, tf.Variable):
            for attr in node.attributes:
                if attr.name != "VARIABLE_VALUE":
                    continue
                ck_shape = tuple(shapes.get(attr.checkpoint_key, ()))
                shape = tuple(obj.shape.as_list())
                if ck_shape == shape:
                    obj.assign(np.asarray(reader.get_tensor(attr.checkpoint_key)))
                    assigned.add(id(obj))
                    used_keys.add(attr.checkpoint_key)
                    report.restored.append((path, shape))
                else:
                    mismatched.add(id(obj))
                    report.shape_mismatch.append((path, shape, ck_shape, obj.name))
            return
        ours = children(obj)
        for ref in node.children:
            if ref.local_name in ours:
                walk(ref.node_id, ours[ref.local_name], f"{path}/{ref.local_name}")

    root = graph.nodes[0]
    for ref in root.children:
        if ref.local_name in roots:
            walk(ref.node_id, roots[ref.local_name], ref.local_name)

    for v in model.variables:
        if id(v) not in assigned and id(v) not in mismatched:
            report.not_in_checkpoint.append((v.name, tuple(v.shape.as_list())))
    model_keys = {k for k in shapes if "/.ATTRIBUTES/VARIABLE_VALUE" in k
                  and not k.startswith(("optimizer", "save_counter", "global_step"))}
    report.unused_in_checkpoint = len(model_keys - used_keys)
    if not report.restored:
        raise UserError(
            f"checkpoint {str(prefix)!r} restores nothing into this model: no variable matches "
            f"by name and shape. It was made for another architecture (its top-level objects: "
            f"{sorted(r.local_name for r in root.children)}); pick a checkpoint of the same "
            f"backbone (see the checkpoint registry in docs/train.md) or none to train from "
            f"scratch")
    if verbose:
        print(report.table())
    return report
