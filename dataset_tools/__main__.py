"""``python -m dataset_tools {convert,synth,preview,inspect} ...`` (thin CLI; logic lives in
convert.py, synthetic.py, preview.py and inspect.py)."""
from __future__ import annotations

import argparse
import sys

from maskrcnn_toolkit.core.cli import run
from maskrcnn_toolkit.dataset_tools.readers import FORMATS


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dataset_tools",
                                description="Annotations -> validated TFRecords, and tools "
                                            "around them.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("convert", help="annotations -> TFRecords + label map + COCO GT",
                       description="Convert annotations into sharded TFRecords, a label map, "
                                   "COCO ground truth and a validation report in OUT.")
    c.add_argument("format", metavar="FORMAT", help=f"one of: {', '.join(FORMATS)}")
    c.add_argument("src", metavar="SRC", help="the annotation file or folder "
                   "(COCO JSON, LabelMe folder, VIA JSON, CVAT XML, VOC root)")
    c.add_argument("out", metavar="OUT", help="output folder")
    c.add_argument("--val-fraction", type=float, default=None, metavar="F",
                   help="share of SRC images for validation (default 0.1; 0 = all train)")
    c.add_argument("--val", metavar="SRC2", default=None,
                   help="take validation from this second source (same format) instead")
    c.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    c.add_argument("--num-shards", type=int, default=None, metavar="N",
                   help="train shards (default: about one per 100 MB)")
    c.add_argument("--label-map", default=None, metavar="FILE",
                   help="label_map.pbtxt or labels.txt fixing class ids and order")
    c.add_argument("--images", default=None, metavar="DIR",
                   help="look for images here instead of where the format puts them")
    c.add_argument("--via-attribute", default=None, metavar="NAME",
                   help="VIA region attribute holding the class name")
    c.add_argument("--default-label", default=None, metavar="NAME",
                   help="class for regions that have none, e.g. VIA regions without "
                        "attributes (default 'object', with a warning)")
    c.add_argument("--box-as-polygon", action="store_true",
                   help="use box-only annotations as rectangle masks instead of refusing them")
    c.add_argument("--voc-image-set", default=None, metavar="NAME",
                   help="VOC image list to read, e.g. train (ImageSets/Segmentation/train.txt)")
    c.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    c.add_argument("--strict", action="store_true",
                   help="any refused image or instance is an error; nothing is written")
    c.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes (default: CPU cores - 1, at most 8; 1 below 64 images)")

    s = sub.add_parser("synth", help="write a synthetic 'parts' dataset (COCO JSON + JPEGs)")
    s.add_argument("out", metavar="OUT")
    s.add_argument("--images", type=int, default=200, metavar="N", help="number of images")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="image size (default 256 256)")
    s.add_argument("--overwrite", action="store_true")

    v = sub.add_parser("preview", help="draw decoded TFRecords (what the model sees) in a grid")
    v.add_argument("data", metavar="OUT", help="a converted dataset folder")
    v.add_argument("--n", type=int, default=16, help="number of images (default 16)")
    v.add_argument("--out", required=True, metavar="IMAGE",
                   help="grid image to write: .png or .jpg")
    v.add_argument("--split", choices=("train", "val"), default="train")
    v.add_argument("--overwrite", action="store_true")

    i = sub.add_parser("inspect", help="class counts, instances per image, mask areas")
    i.add_argument("data", metavar="OUT", help="a converted dataset folder")
    i.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    return run(lambda: _command(args), interrupted="nothing was written")


def _command(args: argparse.Namespace) -> None:
    if args.command == "convert":
        from maskrcnn_toolkit.dataset_tools.convert import convert
        convert(args.format, args.src, args.out, val_fraction=args.val_fraction,
                val=args.val, seed=args.seed, num_shards=args.num_shards,
                label_map=args.label_map, images=args.images,
                via_attribute=args.via_attribute, default_label=args.default_label,
                box_as_polygon=args.box_as_polygon, voc_image_set=args.voc_image_set,
                overwrite=args.overwrite,
                strict=args.strict, workers=args.workers)
    elif args.command == "synth":
        from maskrcnn_toolkit.dataset_tools import synthetic
        kw = {"image_size": tuple(args.size)} if args.size else {}
        synthetic.generate(args.out, args.images, args.seed, overwrite=args.overwrite, **kw)
    elif args.command == "preview":
        from maskrcnn_toolkit.dataset_tools.preview import grid_format, preview
        grid_format(args.out)  # a suffix it cannot write fails before TensorFlow's import
        import tensorflow as tf
        tf.get_logger().setLevel("ERROR")  # Model Garden's decoder warns about map_fn
        preview(args.data, args.out, n=args.n, split=args.split, overwrite=args.overwrite)
    elif args.command == "inspect":
        from maskrcnn_toolkit.dataset_tools.inspect import format_tables, inspect_dataset
        stats = inspect_dataset(args.data)
        if args.json:
            import json
            print(json.dumps(stats, indent=1))
        else:
            print(format_tables(stats))


if __name__ == "__main__":
    sys.exit(main())
