"""Train Mask R-CNN from a short YAML config (docs/train.md).

    python train.py --config configs/parts_demo.yaml              # train (or resume)
    python train.py --config configs/parts_demo.yaml --print-config   # show pipeline.yaml
    python train.py --config X --set train.steps=3000 --set train.batch_size=4
"""
from __future__ import annotations

import argparse
import sys

from maskrcnn_toolkit import core  # noqa: F401  (TF environment before TensorFlow is imported)
from maskrcnn_toolkit.core.cli import run
from maskrcnn_toolkit.core.errors import UserError


def parse_set(items: list[str]) -> dict:
    """``KEY=VALUE`` pairs (dotted keys; values read as YAML scalars: 3, 0.01, true, null)."""
    import yaml
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set {item!r}: write KEY=VALUE, e.g. --set train.steps=3000")
        out[key.strip()] = yaml.safe_load(value)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="the user YAML (configs/*.yaml)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key (dotted, e.g. train.steps=100); repeatable")
    ap.add_argument("--print-config", nargs="?", const="yaml", choices=("yaml", "od", "user"),
                    help="print the generated Model Garden pipeline.yaml (or 'od': the TF "
                         "OD API pipeline.config; 'user': the resolved user config) and exit")
    ap.add_argument("--no-eval", action="store_true", help="skip the evaluation at the end")
    args = ap.parse_args(argv)
    # Ctrl-C / SIGTERM (preemption) saves a checkpoint first (modeling.training).
    return run(lambda: _train(args), interrupted="")


def _train(args: argparse.Namespace) -> None:
    from maskrcnn_toolkit.modeling.config import load_run
    run_ = load_run(args.config, parse_set(args.set))
    if args.print_config:
        import yaml
        print({"yaml": run_.pipeline_yaml, "od": run_.pipeline_config,
               "user": lambda: yaml.safe_dump(run_.resolved_user_dict(), sort_keys=False)}
              [args.print_config](), end="")
        return
    from maskrcnn_toolkit.modeling.training import train
    summary = train(run_, evaluate_at_end=not args.no_eval)
    print(summary.line())


if __name__ == "__main__":
    sys.exit(main())
