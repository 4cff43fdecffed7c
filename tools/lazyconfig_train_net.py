#!/usr/bin/env python
"""Train or evaluate a detector from a LazyConfig (``.py``) config, Detectron2's new style.

Detectron2's tools/lazyconfig_train_net.py flow and flags (--config-file, --resume,
--eval-only, --num-gpus, --num-machines, --machine-rank, --dist-url), trailing
``key=value`` overrides, and weight files loaded safely:

    python tools/lazyconfig_train_net.py --config-file configs/faster_rcnn_X50_32x4d_FPN.py \\
        train.init_checkpoint=/path/to/imagenet_x50_32x4d.pth train.device=cpu
"""

import resnext_det  # noqa: F401 (first: it silences Detectron2's import-time warnings)

# isort: split
from detectron2.config import LazyConfig, instantiate
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.engine.defaults import create_ddp_model

from resnext_det.checkpoint import SafeDetectionCheckpointer
from resnext_det.cli import run_tool, worker_errors
from resnext_det.engine import register_all
from resnext_det.engine.lazy_train import do_test, do_train


def main(args):
    register_all()  # the datasets (demo, COCO 2014 splits) in every process
    cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config_file), args.opts)
    default_setup(cfg, args)
    if args.eval_only:
        model = create_ddp_model(instantiate(cfg.model).to(cfg.train.device))
        SafeDetectionCheckpointer(model).load(cfg.train.init_checkpoint)
        return do_test(cfg, model)
    do_train(cfg, resume=args.resume)


def worker(args):
    with worker_errors():
        return main(args)


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    run_tool(
        lambda: launch(
            worker,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
    )
