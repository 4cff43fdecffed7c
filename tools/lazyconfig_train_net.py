#!/usr/bin/env python
"""Train or evaluate a detector from a LazyConfig (``.py``) config, Detectron2's new style.

Detectron2's tools/lazyconfig_train_net.py flow and flags (--config-file, --resume,
--eval-only, --num-gpus, --num-machines, --machine-rank, --dist-url), trailing
``key=value`` overrides, and weight files loaded safely:

    python tools/lazyconfig_train_net.py --config-file configs/faster_rcnn_X50_32x4d_FPN.py \\
        train.device=cpu

As train_net.py: train.init_checkpoint (a file, or a published name or URL, downloaded,
checked and converted on first use) must fit the model (its trunk for training, all of
it for --eval-only, which refuses an empty one) and be a finite, safe weight file; the
launching process holds train.output_dir for the run, and a SIGTERM to it ends its
workers too.
"""

from resnext_det.utils.cli import set_tool_policy

set_tool_policy()  # first: Detectron2 warns about its own code when imported

# isort: split

from detectron2.config import LazyConfig, instantiate
from detectron2.engine import default_argument_parser, default_setup
from detectron2.engine.defaults import create_ddp_model

from resnext_det.checkpoint import SafeDetectionCheckpointer
from resnext_det.checkpoint.fit import check_weights_fit
from resnext_det.engine import register_all
from resnext_det.engine.lazy_train import do_test, do_train
from resnext_det.training.launch import launch_holding_output_dir
from resnext_det.utils.cli import run_tool, worker_errors
from resnext_det.utils.errors import ConfigError


def main(args):
    register_all()  # the datasets (demo, COCO 2014 splits) in every process
    cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config_file), args.opts)
    default_setup(cfg, args)
    if args.eval_only:
        if not cfg.train.init_checkpoint:
            raise ConfigError(
                "--eval-only with train.init_checkpoint empty would evaluate random weights; "
                "expected train.init_checkpoint=path/to/model_final.pth"
            )
        model = instantiate(cfg.model).to(cfg.train.device)
        check_weights_fit(model, cfg.train.init_checkpoint, what="train.init_checkpoint")
        model = create_ddp_model(model)
        SafeDetectionCheckpointer(model).load(cfg.train.init_checkpoint)
        return do_test(cfg, model)
    do_train(cfg, resume=args.resume)


def worker(args):
    with worker_errors():
        return main(args)


def check_and_launch(args) -> None:
    cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config_file), args.opts)
    launch_holding_output_dir(
        worker, args, cfg.train.output_dir, "train.output_dir", "lazyconfig_train_net"
    )


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    run_tool(lambda: check_and_launch(args))
