"""Train or evaluate a detector from a LazyConfig (``.py``) config, Detectron2's new style.

Detectron2's tools/lazyconfig_train_net.py flow and flags (--config-file, --resume,
--eval-only, --num-gpus, --num-machines, --machine-rank, --dist-url), trailing
``key=value`` overrides, and weight files loaded safely:

    python tools/lazyconfig_train_net.py --config-file configs/faster_rcnn_X50_32x4d_FPN.py \\
        train.device=cpu

As train_net.py, and with its --coco-dataset NAME JSON IMAGE_DIR: before any process
starts, the run is checked (the device, the datasets and their images and classes, the
weights) and a problem ends it with one line and exit code 2: an override naming a key
the config does not have, a train.init_checkpoint that does not fit the model (its trunk
for training, all of it for --eval-only, which refuses an empty one) or is not a finite,
safe weight file, and an empty one while layers are frozen. The launching process holds
train.output_dir for the run, and a SIGTERM to it ends its workers too.
"""

from detectron2.config import LazyConfig, instantiate
from detectron2.engine import default_setup

from resnext_det.checkpoint import SafeDetectionCheckpointer
from resnext_det.reproduction.data import register_coco_datasets
from resnext_det.reproduction.engine import register_all
from resnext_det.reproduction.engine.lazy_train import (
    apply_overrides,
    check_lazy_run,
    do_test,
    do_train,
)
from resnext_det.reproduction.training.launch import (
    detection_argument_parser,
    launch_holding_output_dir,
)
from resnext_det.reproduction.training.loop import distributed_model
from resnext_det.utils.cli import run_tool, worker_errors


def load_config(args):
    """The LazyConfig with its overrides, each naming a key the config has."""
    return apply_overrides(LazyConfig.load(args.config_file), args.opts)


def main(args):
    # Runs in every process of a launch, so each registers for itself.
    register_all()
    register_coco_datasets(args.coco_dataset)
    cfg = load_config(args)
    default_setup(cfg, args)
    if args.eval_only:
        model = instantiate(cfg.model).to(cfg.train.device)
        SafeDetectionCheckpointer(model).load(cfg.train.init_checkpoint)
        return do_test(cfg, distributed_model(model))
    do_train(cfg, resume=args.resume)


def worker(args):
    with worker_errors():
        return main(args)


def check_and_launch(args) -> None:
    register_all()
    register_coco_datasets(args.coco_dataset)
    cfg = load_config(args)
    check_lazy_run(cfg, eval_only=args.eval_only, resume=args.resume)
    launch_holding_output_dir(
        worker, args, cfg.train.output_dir, "train.output_dir", "lazyconfig_train_net"
    )


def cli() -> None:
    """The command line: ``tools/lazyconfig_train_net.py``, ``resnext-lazyconfig-train-net``."""
    args = detection_argument_parser().parse_args()
    run_tool(lambda: check_and_launch(args))
